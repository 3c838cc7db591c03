/*
 * Address block sets (cidr_set.h): sorted, merged ranges.  IPv6 ranges are
 * 128-bit integers (GCC's unsigned __int128).
 */
#include <stdlib.h>
#include <string.h>

#include "route/cidr_set.h"

typedef unsigned __int128 u128;

struct r4 { uint32_t lo, hi; };
struct r6 { u128 lo, hi; };

struct lr_cset {
    struct r4 *v4; size_t n4, cap4;
    struct r6 *v6; size_t n6, cap6;
    int built;
};

static const uint8_t MAPPED[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

struct lr_cset *lr_cset_new(void)
{
    return calloc(1, sizeof(struct lr_cset));
}

static int add4(struct lr_cset *s, uint32_t a, unsigned bits)
{
    uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    if (s->n4 == s->cap4) {
        size_t cap = s->cap4 ? s->cap4 * 2 : 64;
        struct r4 *n = realloc(s->v4, cap * sizeof(*n));
        if (!n)
            return -1;
        s->v4 = n;
        s->cap4 = cap;
    }
    s->v4[s->n4].lo = a & mask;
    s->v4[s->n4].hi = (a & mask) | ~mask;
    s->n4++;
    return 0;
}

static u128 load128(const uint8_t *p)
{
    u128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | p[i];
    return v;
}

int lr_cset_add(struct lr_cset *s, const uint8_t *ip, size_t len, unsigned bits)
{
    if (s->built || !ip || (len != 4 && len != 16) || bits > len * 8)
        return -1;
    if (len == 4)
        return add4(s, (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 |
                       (uint32_t)ip[2] << 8 | ip[3], bits);
    if (bits >= 96 && memcmp(ip, MAPPED, 12) == 0)
        return add4(s, (uint32_t)ip[12] << 24 | (uint32_t)ip[13] << 16 |
                       (uint32_t)ip[14] << 8 | ip[15], bits - 96);
    u128 a = load128(ip);
    u128 mask = bits == 0 ? 0 : ~(u128)0 << (128 - bits);
    if (s->n6 == s->cap6) {
        size_t cap = s->cap6 ? s->cap6 * 2 : 64;
        struct r6 *n = realloc(s->v6, cap * sizeof(*n));
        if (!n)
            return -1;
        s->v6 = n;
        s->cap6 = cap;
    }
    s->v6[s->n6].lo = a & mask;
    s->v6[s->n6].hi = (a & mask) | ~mask;
    s->n6++;
    return 0;
}

static int cmp4(const void *a, const void *b)
{
    const struct r4 *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int cmp6(const void *a, const void *b)
{
    const struct r6 *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int lr_cset_build(struct lr_cset *s)
{
    if (s->built)
        return 0;
    if (s->n4) {
        qsort(s->v4, s->n4, sizeof(*s->v4), cmp4);
        size_t o = 0;
        for (size_t i = 1; i < s->n4; i++) {
            /* overlapping or adjacent (hi + 1 == lo, without overflow) */
            if (s->v4[i].lo <= s->v4[o].hi ||
                (s->v4[o].hi != 0xffffffffu && s->v4[i].lo == s->v4[o].hi + 1)) {
                if (s->v4[i].hi > s->v4[o].hi)
                    s->v4[o].hi = s->v4[i].hi;
            } else {
                s->v4[++o] = s->v4[i];
            }
        }
        s->n4 = o + 1;
    }
    if (s->n6) {
        qsort(s->v6, s->n6, sizeof(*s->v6), cmp6);
        size_t o = 0;
        for (size_t i = 1; i < s->n6; i++) {
            if (s->v6[i].lo <= s->v6[o].hi ||
                (s->v6[o].hi != ~(u128)0 && s->v6[i].lo == s->v6[o].hi + 1)) {
                if (s->v6[i].hi > s->v6[o].hi)
                    s->v6[o].hi = s->v6[i].hi;
            } else {
                s->v6[++o] = s->v6[i];
            }
        }
        s->n6 = o + 1;
    }
    s->built = 1;
    return 0;
}

static int find4(const struct lr_cset *s, uint32_t a)
{
    size_t lo = 0, hi = s->n4;   /* the last range with .lo <= a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v4[mid].lo <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && a <= s->v4[lo - 1].hi;
}

static int find6(const struct lr_cset *s, u128 a)
{
    size_t lo = 0, hi = s->n6;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v6[mid].lo <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && a <= s->v6[lo - 1].hi;
}

int lr_cset_match(const struct lr_cset *s, const uint8_t *ip, size_t len)
{
    if (!ip)
        return 0;
    if (len == 16 && memcmp(ip, MAPPED, 12) == 0) {
        ip += 12;
        len = 4;
    }
    if (len == 4)
        return s->n4 && find4(s, (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 |
                                 (uint32_t)ip[2] << 8 | ip[3]);
    if (len == 16)
        return s->n6 && find6(s, load128(ip));
    return 0;
}

size_t lr_cset_count(const struct lr_cset *s)
{
    return s->n4 + s->n6;
}

void lr_cset_free(struct lr_cset *s)
{
    if (!s)
        return;
    free(s->v4);
    free(s->v6);
    free(s);
}
