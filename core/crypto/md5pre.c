/*
 * HMAC-MD5 of 8-byte messages under a 16-byte key with the key's padded
 * blocks hashed once: the legacy VMess auth value of one ID for one second
 * (vmess-wire.md 4: HMAC-MD5(key = ID, msg = BE64 timestamp)).  The
 * server's legacy table computes one per ID and second; through EVP's
 * HMAC each cost a context set-up and four compressions, here two (the
 * inner block with the message, the outer block with the inner digest).
 *
 * The compression is OpenSSL's (MD5_Update / MD5_Final on an MD5_CTX
 * resumed from the saved chaining values).  These low-level calls are
 * deprecated in OpenSSL 3 in favour of EVP, which has no way to resume a
 * digest from saved chaining values without allocating.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <string.h>

#include <openssl/md5.h>

#include "base/base.h"
#include "crypto/crypto.h"

static void chain_of(const uint8_t *key16, uint8_t pad, uint32_t out[4])
{
    uint8_t block[64];
    MD5_CTX c;
    memset(block, pad, sizeof(block));
    for (int i = 0; i < 16; i++)
        block[i] = (uint8_t)(key16[i] ^ pad);
    MD5_Init(&c);
    MD5_Update(&c, block, sizeof(block));   /* exactly one compression */
    out[0] = c.A;
    out[1] = c.B;
    out[2] = c.C;
    out[3] = c.D;
    lr_wipe(block, sizeof(block));
    lr_wipe(&c, sizeof(c));
}

void lr_hmac_md5_key16(const uint8_t *key16, struct lr_hmac_md5_key *k)
{
    chain_of(key16, 0x36, k->i);
    chain_of(key16, 0x5c, k->o);
}

/* An MD5 resumed after one 64-byte block with chaining values cv. */
static void resume(MD5_CTX *c, const uint32_t cv[4])
{
    memset(c, 0, sizeof(*c));
    c->A = cv[0];
    c->B = cv[1];
    c->C = cv[2];
    c->D = cv[3];
    c->Nl = 512;
}

void lr_hmac_md5_8(const struct lr_hmac_md5_key *k, const uint8_t *msg8,
                   uint8_t *out16)
{
    MD5_CTX c;
    uint8_t inner[16];
    resume(&c, k->i);
    MD5_Update(&c, msg8, 8);
    MD5_Final(inner, &c);
    resume(&c, k->o);
    MD5_Update(&c, inner, 16);
    MD5_Final(out16, &c);
}
