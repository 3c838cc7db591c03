/*
 * Shared by the bench load generator (load.c) and target (sink.c).
 *
 * Bulk protocol (the sink's bulk port): the client sends a 16-byte header,
 * "LRBULK01" then the payload size as a little-endian uint64, then that
 * many bytes of the pattern below, starting at pattern offset 0. When the
 * sink has them all it answers 16 bytes: the count it received (LE64) and
 * the first offset where the bytes differed from the pattern (LE64,
 * UINT64_MAX when none did). The reply does not wait for the client's FIN,
 * so it works through proxies that do not forward a half-close (v2ray).
 *
 * Echo port: every byte received is sent back.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BULK_MAGIC "LRBULK01"
#define BULK_HDR 16
#define BULK_ACK 16
/* 1 MiB + 8 KiB - 8: not a multiple of any chunk or buffer size, so a
 * proxy that repeated or dropped a whole buffer would be caught. */
#define PATTERN_LEN ((size_t)(1u << 20) + 8192 - 8)

static inline uint8_t *pattern_new(void)
{
    /* the pattern is stored twice in a row so that any window of up to
     * PATTERN_LEN bytes starting anywhere in it is contiguous */
    uint8_t *p = malloc(2 * PATTERN_LEN);
    if (!p)
        return NULL;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < PATTERN_LEN; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    memcpy(p + PATTERN_LEN, p, PATTERN_LEN);
    return p;
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Raises the soft fd limit to the hard one; returns the new soft limit. */
static inline long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

#endif
