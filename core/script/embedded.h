/* Lua modules compiled into the executable (scripts/embed-lua). */
#ifndef LR_EMBEDDED_H
#define LR_EMBEDDED_H

#include <stddef.h>

struct lr_embedded {
    const char *name;   /* module name for require */
    const char *chunk;  /* chunk name: "@lua/luaray/x.lua" */
    const char *src;
    size_t len;
};

extern const struct lr_embedded lr_embedded_lua[];

#endif
