/*
 * base: small helpers every module shares -- byte order, assertions, the
 * export macro.  Knows nothing of sockets, protocols or Lua.
 */
#ifndef LR_BASE_H
#define LR_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "luaray/api.h"

#define LR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Always-on invariant check: a broken invariant is a bug, so abort. */
#define lr_require(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "luaray: %s:%d: requirement failed: %s\n",        \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)

static inline uint16_t lr_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t lr_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t lr_get_be64(const uint8_t *p)
{
    return ((uint64_t)lr_get_be32(p) << 32) | lr_get_be32(p + 4);
}

static inline void lr_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void lr_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void lr_put_be64(uint8_t *p, uint64_t v)
{
    lr_put_be32(p, (uint32_t)(v >> 32));
    lr_put_be32(p + 4, (uint32_t)v);
}

#endif
