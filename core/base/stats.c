/*
 * The counter registry (stats.h): names to slots, per-worker values.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/stats.h"

struct lr_stats_seg *lr_stats_segs[LR_STATS_MAX_SEGS];

struct slot {
    char *name;
    uint32_t hash;
    uint8_t kind;
    uint64_t base;               /* the value at the last reset */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;       /* by slot number */
static uint32_t nslots, capslots;
static int32_t *table;           /* open addressing: slot numbers, -1 empty */
static uint32_t tcap;            /* a power of two */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;    /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int32_t find(const char *name, uint32_t h)
{
    if (!tcap)
        return -1;
    for (uint32_t i = h & (tcap - 1);; i = (i + 1) & (tcap - 1)) {
        int32_t s = table[i];
        if (s < 0)
            return -1;
        if (slots[s].hash == h && strcmp(slots[s].name, name) == 0)
            return s;
    }
}

static int grow_table(void)
{
    uint32_t ncap = tcap ? tcap * 2 : 1024;
    int32_t *t = malloc(ncap * sizeof(*t));
    if (!t)
        return -1;
    memset(t, 0xff, ncap * sizeof(*t));
    for (uint32_t s = 0; s < nslots; s++) {
        uint32_t i = slots[s].hash & (ncap - 1);
        while (t[i] >= 0)
            i = (i + 1) & (ncap - 1);
        t[i] = (int32_t)s;
    }
    free(table);
    table = t;
    tcap = ncap;
    return 0;
}

/* The worker's array for the segment of slot s exists (mu held). */
static int writable(uint32_t s, uint32_t worker)
{
    uint32_t k = s >> LR_STATS_SEG_BITS;
    struct lr_stats_seg *seg = lr_stats_segs[k];
    if (!seg) {
        if (!(seg = calloc(1, sizeof(*seg))))
            return -1;
        /* readers find it through a slot number they got under mu */
        lr_stats_segs[k] = seg;
    }
    if (!atomic_load_explicit(&seg->w[worker], memory_order_relaxed)) {
        uint64_t *a = calloc(LR_STATS_SEG, sizeof(uint64_t));
        if (!a)
            return -1;
        atomic_store_explicit(&seg->w[worker], a, memory_order_release);
    }
    return 0;
}

/* Adds a slot (mu held): its number, or -1. */
static int32_t add(const char *name, uint32_t h, int kind)
{
    if (nslots >= (uint32_t)LR_STATS_MAX_SEGS * LR_STATS_SEG)
        return -1;
    if ((nslots + 1) * 2 > tcap && grow_table() != 0)
        return -1;
    if (nslots == capslots) {
        uint32_t ncap = capslots ? capslots * 2 : 256;
        struct slot *n = realloc(slots, ncap * sizeof(*n));
        if (!n)
            return -1;
        slots = n;
        capslots = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    uint32_t s = nslots++;
    slots[s] = (struct slot){.name = copy, .hash = h, .kind = (uint8_t)kind};
    uint32_t i = h & (tcap - 1);
    while (table[i] >= 0)
        i = (i + 1) & (tcap - 1);
    table[i] = (int32_t)s;
    return (int32_t)s;
}

int32_t lr_stats_slot(const char *name, int kind, uint32_t worker)
{
    if (worker >= LR_STATS_WORKERS)
        return -1;
    uint32_t h = hash_name(name);
    pthread_mutex_lock(&mu);
    int32_t s = find(name, h);
    if (s < 0)
        s = add(name, h, kind);
    if (s >= 0 && writable((uint32_t)s, worker) != 0)
        s = -1;
    pthread_mutex_unlock(&mu);
    return s;
}

int32_t lr_stats_pair(const char *prefix, uint32_t worker, int32_t *down)
{
    char name[512];
    snprintf(name, sizeof(name), "%s>>>traffic>>>uplink", prefix);
    int32_t up = lr_stats_slot(name, LR_STAT_TRAFFIC, worker);
    snprintf(name, sizeof(name), "%s>>>traffic>>>downlink", prefix);
    *down = up >= 0 ? lr_stats_slot(name, LR_STAT_TRAFFIC, worker) : -1;
    if (*down < 0)
        up = -1;
    return up;
}

/* Summed over the workers (mu held). */
static uint64_t sum(uint32_t s)
{
    struct lr_stats_seg *seg = lr_stats_segs[s >> LR_STATS_SEG_BITS];
    uint64_t v = 0;
    if (!seg)
        return 0;
    for (uint32_t w = 0; w < LR_STATS_WORKERS; w++) {
        uint64_t *a = atomic_load_explicit(&seg->w[w], memory_order_acquire);
        if (a)
            v += atomic_load_explicit(
                (_Atomic uint64_t *)&a[s & (LR_STATS_SEG - 1)], memory_order_relaxed);
    }
    return v;
}

uint64_t lr_stats_value(int32_t slot)
{
    uint64_t v = 0;
    pthread_mutex_lock(&mu);
    if (slot >= 0 && (uint32_t)slot < nslots)
        v = sum((uint32_t)slot) - slots[slot].base;
    pthread_mutex_unlock(&mu);
    return v;
}

LR_API uint64_t lr_stats_get(const char *name, int32_t reset, int32_t *found)
{
    uint64_t v = 0;
    uint32_t h = hash_name(name);
    pthread_mutex_lock(&mu);
    int32_t s = find(name, h);
    if (s >= 0) {
        uint64_t now = sum((uint32_t)s);
        v = now - slots[s].base;
        if (reset)
            slots[s].base = now;
    }
    pthread_mutex_unlock(&mu);
    if (found)
        *found = s >= 0;
    return v;
}

void lr_stats_each(int kind, const char *pattern, int reset, lr_stats_fn fn, void *ud)
{
    pthread_mutex_lock(&mu);
    for (uint32_t s = 0; s < nslots; s++) {
        if (kind && slots[s].kind != kind)
            continue;
        if (pattern && *pattern && !strstr(slots[s].name, pattern))
            continue;
        uint64_t now = sum(s);
        uint64_t v = now - slots[s].base;
        if (reset)
            slots[s].base = now;
        fn(ud, slots[s].name, slots[s].kind, v);
    }
    pthread_mutex_unlock(&mu);
}

uint32_t lr_stats_count(void)
{
    pthread_mutex_lock(&mu);
    uint32_t n = nslots;
    pthread_mutex_unlock(&mu);
    return n;
}

void lr_stats_label(char *out, size_t n, const char *v)
{
    size_t o = 0;
    if (!n)
        return;
    for (; *v; v++) {
        const char *e = NULL;
        char one[2] = {*v, 0};
        if (*v == '\\')
            e = "\\\\";
        else if (*v == '"')
            e = "\\\"";
        else if (*v == '\n')
            e = "\\n";
        else
            e = one;
        size_t k = strlen(e);
        if (o + k >= n)
            break;
        memcpy(out + o, e, k);
        o += k;
    }
    out[o] = 0;
}

LR_API size_t lr_stats_query(const char *pattern, int32_t reset, char *out, size_t cap)
{
    size_t need = 0;
    pthread_mutex_lock(&mu);
    for (int pass = 0; pass < 2; pass++) {
        size_t o = 0;
        for (uint32_t s = 0; s < nslots; s++) {
            if (slots[s].kind != LR_STAT_TRAFFIC ||
                (pattern && *pattern && !strstr(slots[s].name, pattern)))
                continue;
            uint64_t now = sum(s);
            char num[24];
            int k = snprintf(num, sizeof(num), "%llu",
                             (unsigned long long)(now - slots[s].base));
            size_t nl = strlen(slots[s].name);
            if (pass == 1) {
                memcpy(out + o, slots[s].name, nl);
                out[o + nl] = '\t';
                memcpy(out + o + nl + 1, num, (size_t)k);
                out[o + nl + 1 + (size_t)k] = '\n';
                if (reset)
                    slots[s].base = now;
            }
            /* sized for the longest value: a counter may grow between
             * the passes (its workers write on) */
            o += nl + 2 + (pass == 0 ? 20 : (size_t)k);
        }
        need = o;
        if (pass == 0 && need > cap)
            break;
    }
    pthread_mutex_unlock(&mu);
    return need;
}
