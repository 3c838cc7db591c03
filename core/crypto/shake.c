/*
 * SHAKE128 as an endless byte stream (vmess-wire.md 11.3: chunk masking
 * and padding lengths).  OpenSSL 3.0 can only squeeze an XOF once, and a
 * body may need millions of 2-byte reads, so the sponge is ours: the
 * Keccak-f[1600] permutation from FIPS 202, rate 168 bytes, domain
 * suffix 0x1f.  The specs check it against OpenSSL's one-shot SHAKE128.
 */
#include <string.h>

#include "base/base.h"
#include "crypto/crypto.h"

#define SHAKE128_RATE 168

static const uint64_t round_consts[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho rotation amounts and pi lane order, walked along the pi cycle */
static const uint8_t rho[24] = {1,  3,  6,  10, 15, 21, 28, 36,
                                45, 55, 2,  14, 27, 41, 56, 8,
                                25, 43, 62, 18, 39, 61, 20, 44};
static const uint8_t pi_lane[24] = {10, 7,  11, 17, 18, 3,  5,  16,
                                    8,  21, 24, 4,  15, 23, 19, 13,
                                    12, 2,  20, 14, 22, 9,  6,  1};

static inline uint64_t rotl(uint64_t x, unsigned n)
{
    return (x << n) | (x >> (64 - n));
}

static void keccak_f1600(uint64_t st[25])
{
    uint64_t bc[5], t;
    for (int round = 0; round < 24; round++) {
        for (int i = 0; i < 5; i++)
            bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
        for (int i = 0; i < 5; i++) {
            t = bc[(i + 4) % 5] ^ rotl(bc[(i + 1) % 5], 1);
            for (int j = 0; j < 25; j += 5)
                st[j + i] ^= t;
        }
        t = st[1];
        for (int i = 0; i < 24; i++) {
            int j = pi_lane[i];
            bc[0] = st[j];
            st[j] = rotl(t, rho[i]);
            t = bc[0];
        }
        for (int j = 0; j < 25; j += 5) {
            for (int i = 0; i < 5; i++)
                bc[i] = st[j + i];
            for (int i = 0; i < 5; i++)
                st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
        }
        st[0] ^= round_consts[round];
    }
}

static inline void xor_byte(uint64_t st[25], size_t i, uint8_t b)
{
    st[i / 8] ^= (uint64_t)b << (8 * (i % 8));
}

static inline uint8_t get_byte(const uint64_t st[25], size_t i)
{
    return (uint8_t)(st[i / 8] >> (8 * (i % 8)));
}

void lr_shake_init(struct lr_shake *s, const uint8_t *in, size_t len)
{
    memset(s->st, 0, sizeof(s->st));
    size_t r = 0;
    for (size_t i = 0; i < len; i++) {
        xor_byte(s->st, r++, in[i]);
        if (r == SHAKE128_RATE) {
            keccak_f1600(s->st);
            r = 0;
        }
    }
    xor_byte(s->st, r, 0x1f);
    xor_byte(s->st, SHAKE128_RATE - 1, 0x80);
    keccak_f1600(s->st);
    s->pos = 0;
}

void lr_shake_squeeze(struct lr_shake *s, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s->pos == SHAKE128_RATE) {
            keccak_f1600(s->st);
            s->pos = 0;
        }
        out[i] = get_byte(s->st, s->pos++);
    }
}
