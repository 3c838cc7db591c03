/*
 * Shared helpers of the fuzz targets: a reader that takes fields off the
 * front of the fuzzer's bytes (running out yields zeros, never an error),
 * a small deterministic PRNG for read splits, the invariant check, and the
 * fixed identity and time every VMess target uses (the vectors' UUID and
 * T, so the captured v2ray bytes in the seed corpus authenticate).
 *
 * Targets are plain libFuzzer entry points (LLVMFuzzerInitialize +
 * LLVMFuzzerTestOneInput); spec/fuzz/targets/driver.c supplies a main() for
 * the engine-less replay build.
 */
#ifndef LR_FUZZ_COMMON_H
#define LR_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaray/api.h"

/* vmess-wire.md 19: de305d54-75b4-431b-adb2-eb6b9e546014 at T */
#define FZ_T 1795564195LL
static const uint8_t fz_uuid[16] = {0xde, 0x30, 0x5d, 0x54, 0x75, 0xb4,
                                    0x43, 0x1b, 0xad, 0xb2, 0xeb, 0x6b,
                                    0x9e, 0x54, 0x60, 0x14};

/* A broken invariant is a finding: say which, then abort so the engine
 * records the input. */
#define FZ_CHECK(cond)                                                        \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz invariant failed: %s:%d: %s\n", __FILE__,   \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* A check that a known, reported and not yet fixed bug trips can be
 * skipped by naming it in FUZZ_SKIP_KNOWN (e.g. "http-nul"), so the rest
 * of the target can still be explored.  Default: every check is on. */
static inline int fz_skip_known(const char *name)
{
    const char *e = getenv("FUZZ_SKIP_KNOWN");
    return e && strstr(e, name) != NULL;
}

/* FUZZ_VERBOSE=1: targets print what each input decoded to (for checking
 * what seeds reach; never set while fuzzing). */
static inline int fz_verbose(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("FUZZ_VERBOSE") != NULL;
    return v;
}

struct fz {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
    if (!f->n)
        return 0;
    f->n--;
    return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
    uint16_t hi = fz_u8(f);
    return (uint16_t)(hi << 8 | fz_u8(f));
}

static inline uint32_t fz_u32(struct fz *f)
{
    uint32_t hi = fz_u16(f);
    return hi << 16 | fz_u16(f);
}

/* Copies `len` bytes (zeros past the end of the input). */
static inline void fz_bytes(struct fz *f, uint8_t *out, size_t len)
{
    size_t k = len < f->n ? len : f->n;
    memcpy(out, f->p, k);
    memset(out + k, 0, len - k);
    f->p += k;
    f->n -= k;
}

/* Up to `max` bytes straight from the input, by pointer. */
static inline const uint8_t *fz_take(struct fz *f, size_t max, size_t *len)
{
    const uint8_t *p = f->p;
    *len = max < f->n ? max : f->n;
    f->p += *len;
    f->n -= *len;
    return p;
}

/* xorshift64*: read sizes and mutation choices derived from one seed, so
 * the data part of an input stays intact while the splits vary. */
static inline uint64_t fz_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* The next read size: mostly small (1..16), sometimes medium, sometimes
 * everything that is left. */
static inline size_t fz_split(uint64_t *s, size_t left)
{
    uint64_t r = fz_rand(s);
    size_t k;
    switch (r & 3) {
    case 0: k = 1 + (r >> 8) % 16; break;
    case 1: k = 1 + (r >> 8) % 400; break;
    case 2: k = 1 + (r >> 8) % 3; break;
    default: k = left; break;
    }
    return k < left ? k : left;
}

/* Mutations of an encoded buffer: `count` (pos, op, value) triples from
 * the input.  op 0 xor, 1 set, 2 truncate at pos, 3 flip one bit.
 * Returns the new length (never grows). */
static inline size_t fz_mutate(struct fz *f, uint8_t *buf, size_t len,
                               unsigned count)
{
    for (unsigned i = 0; i < count && len; i++) {
        uint16_t pos = fz_u16(f);
        uint8_t op = fz_u8(f), val = fz_u8(f);
        size_t at = pos % len;
        switch (op & 3) {
        case 0: buf[at] ^= (uint8_t)(val ? val : 1); break;
        case 1: buf[at] = val; break;
        case 2: len = at; break;
        default: buf[at] ^= (uint8_t)(1u << (val & 7)); break;
        }
    }
    return len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
