/*
 * Relay buffers: fixed-size byte buffers with read/write cursors, handed
 * out by a free list and given back as soon as they are empty, so an idle
 * connection holds none.
 */
#ifndef LR_BUF_H
#define LR_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Holds any VMess chunk (2 + 65535, or 18 + 65535) with room to spare. */
#define LR_BUF_CAP (65536 + 256)

struct lr_buf {
    struct lr_buf *next;  /* free-list link */
    uint32_t rd, wr;      /* data is [rd, wr) */
    uint8_t data[LR_BUF_CAP];
};

struct lr_buf *lr_buf_get(void);
void lr_buf_put(struct lr_buf *b);
/* Buffers in use / in the free list (for stats and leak checks). */
size_t lr_buf_in_use(void);
/* Frees the free list (at exit). */
void lr_buf_trim(void);

static inline size_t lr_buf_len(const struct lr_buf *b) { return b->wr - b->rd; }
static inline size_t lr_buf_room(const struct lr_buf *b) { return LR_BUF_CAP - b->wr; }
static inline uint8_t *lr_buf_head(struct lr_buf *b) { return b->data + b->rd; }
static inline uint8_t *lr_buf_tail(struct lr_buf *b) { return b->data + b->wr; }

/* Moves the unread bytes to the start so the room at the end is largest. */
static inline void lr_buf_compact(struct lr_buf *b)
{
    if (b->rd == 0)
        return;
    size_t n = b->wr - b->rd;
    if (n)
        memmove(b->data, b->data + b->rd, n);
    b->rd = 0;
    b->wr = (uint32_t)n;
}

#endif
