/*
 * The relay buffer free list, one per thread (one loop per worker
 * thread).  Each list keeps at most LR_BUF_KEEP buffers; beyond that they
 * go back to the allocator so a burst does not pin memory forever.  The
 * count of buffers in use is process-wide.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "base/base.h"
#include "base/buf.h"

#define LR_BUF_KEEP 64

static __thread struct lr_buf *free_list;
static __thread size_t free_count;
static atomic_size_t in_use;

struct lr_buf *lr_buf_get(void)
{
    struct lr_buf *b = free_list;
    if (b) {
        free_list = b->next;
        free_count--;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    b->next = NULL;
    b->rd = b->wr = 0;
    atomic_fetch_add_explicit(&in_use, 1, memory_order_relaxed);
    return b;
}

void lr_buf_put(struct lr_buf *b)
{
    if (!b)
        return;
    atomic_fetch_sub_explicit(&in_use, 1, memory_order_relaxed);
    if (free_count >= LR_BUF_KEEP) {
        free(b);
        return;
    }
    b->next = free_list;
    free_list = b;
    free_count++;
}

size_t lr_buf_in_use(void)
{
    return atomic_load_explicit(&in_use, memory_order_relaxed);
}

void lr_buf_trim(void)
{
    while (free_list) {
        struct lr_buf *b = free_list;
        free_list = b->next;
        free(b);
    }
    free_count = 0;
}
