/*
 * Counters for the whole process (design.md 7): traffic named as v2ray
 * names it ("user>>>EMAIL>>>traffic>>>uplink", "inbound>>>TAG>>>...",
 * "outbound>>>TAG>>>..."), and luaray's own counters and gauges for
 * /metrics.
 *
 * A registry maps names to slots (a mutex, only when a config is built or
 * the counters are read).  Each worker thread has its own array of values
 * and is the only writer of it: the relay path adds with a plain load and
 * store (no lock, no atomic read-modify-write, no Lua); a reader sums the
 * workers' values.  Slots are never freed, so counters survive reloads,
 * and a reset moves a per-slot base rather than touching a worker's value.
 */
#ifndef LR_STATS_H
#define LR_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "luaray/api.h"

#define LR_STATS_WORKERS 64      /* = LR_MAX_WORKERS */
#define LR_STATS_SEG_BITS 8
#define LR_STATS_SEG (1u << LR_STATS_SEG_BITS)
#define LR_STATS_MAX_SEGS 4096   /* 1,048,576 slots */

/* What a slot is, for the readers. */
enum lr_stat_kind {
    LR_STAT_TRAFFIC = 1,         /* v2ray's: StatsService, /metrics v2ray_traffic_* */
    LR_STAT_COUNTER,             /* luaray's: a Prometheus counter */
    LR_STAT_GAUGE                /* luaray's: a sum of +/- deltas (int64) */
};

struct lr_stats_seg {
    /* one array per worker, allocated when a worker first registers a
     * slot of this segment (published with release; read with acquire) */
    _Atomic(uint64_t *) w[LR_STATS_WORKERS];
};

extern struct lr_stats_seg *lr_stats_segs[LR_STATS_MAX_SEGS];

/* The slot of `name` (created, with its kind, if new), made writable by
 * `worker`; -1 when out of memory or slots.  A traffic pair
 * (lr_stats_pair) takes two slots: uplink, then downlink. */
int32_t lr_stats_slot(const char *name, int kind, uint32_t worker);
/* "PREFIX>>>traffic>>>uplink" and "...downlink" (PREFIX: "user>>>EMAIL",
 * "inbound>>>TAG", "outbound>>>TAG"): the uplink slot; downlink is it + 1
 * when both were new, so always look both up through this. */
int32_t lr_stats_pair(const char *prefix, uint32_t worker, int32_t *down);

/* Adds n to a slot of the calling worker (its own array: see above). */
static inline void lr_stats_add(uint32_t worker, int32_t slot, uint64_t n)
{
    if (slot < 0)
        return;
    uint64_t *a = atomic_load_explicit(
        &lr_stats_segs[(uint32_t)slot >> LR_STATS_SEG_BITS]->w[worker],
        memory_order_relaxed);
    _Atomic uint64_t *v = (_Atomic uint64_t *)&a[(uint32_t)slot & (LR_STATS_SEG - 1)];
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* The value of a slot (summed over workers, minus its reset base). */
uint64_t lr_stats_value(int32_t slot);
/* lr_stats_get, lr_stats_query: api.h */

/* Calls fn for every slot of `kind` (0: all) whose name contains
 * `pattern` (NULL or "": all), in registration order; with reset, each
 * value reported is also taken back to 0.  The registry stays locked
 * during the walk: fn must not call back into it. */
typedef void (*lr_stats_fn)(void *ud, const char *name, int kind, uint64_t value);
void lr_stats_each(int kind, const char *pattern, int reset, lr_stats_fn fn, void *ud);

/* A Prometheus label value: `v` with \\, " and newlines escaped (cut
 * to fit, never inside an escape). */
void lr_stats_label(char *out, size_t n, const char *v);

/* Slots in use (for tests and the metrics' own size). */
uint32_t lr_stats_count(void);

#endif
