/*
 * crypto: one thin shape for every cipher and hash the protocol needs.
 * OpenSSL EVP does the ciphers and digests; libsodium the randomness,
 * constant-time comparison and wiping.  SHAKE128 is squeezed by our own
 * Keccak sponge (shake.c) because Debian 12's OpenSSL 3.0 cannot squeeze
 * an XOF incrementally (EVP_DigestSqueeze arrived in 3.3).
 *
 * Contexts are set up once per stream; the per-chunk calls do not allocate.
 */
#ifndef LR_CRYPTO_H
#define LR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "luaray/api.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_md_st EVP_MD;

/* --- the algorithms, fetched from OpenSSL once (algs.c); never NULL after
 * lr_init has checked them */
const EVP_CIPHER *lr_alg_aes128gcm(void);
const EVP_CIPHER *lr_alg_chacha20poly1305(void);
const EVP_CIPHER *lr_alg_aes128cfb(void);
const EVP_CIPHER *lr_alg_aes128ecb(void);
const EVP_MD *lr_alg_md5(void);
const EVP_MD *lr_alg_sha256(void);
const EVP_MD *lr_alg_shake128(void);

/* --- AEAD: AES-128-GCM or ChaCha20-Poly1305, 12-byte nonce, 16-byte tag */
enum lr_aead_kind { LR_AEAD_GCM = 1, LR_AEAD_CHACHA = 2 };

struct lr_aead {
    EVP_CIPHER_CTX *ctx;
    uint8_t kind;
    uint8_t dir;          /* 0 not keyed, 1 sealing, 2 opening */
    uint8_t key[32];
};

int lr_aead_init(struct lr_aead *a, int kind, const uint8_t *key);
void lr_aead_deinit(struct lr_aead *a);
/* out = ciphertext(len) || tag(16); out may equal in.  Hot path. */
int lr_aead_seal(struct lr_aead *a, const uint8_t *nonce, const uint8_t *aad,
                 size_t aadlen, const uint8_t *in, size_t len, uint8_t *out);
/* in = ciphertext || tag, len includes the tag; out gets len-16 bytes.
 * LR_EAUTH on a bad tag (out is then wiped).  Hot path. */
int lr_aead_open(struct lr_aead *a, const uint8_t *nonce, const uint8_t *aad,
                 size_t aadlen, const uint8_t *in, size_t len, uint8_t *out);

/* Frees this thread's header-box context (a worker thread ending). */
void lr_cipher_thread_end(void);
/* Frees this thread's KDF contexts (a worker thread ending). */
void lr_kdf_thread_end(void);
/* One-shot AES-128-GCM for the header boxes (allocates a context). */
int lr_gcm_seal_once(const uint8_t *key, const uint8_t *nonce,
                     const uint8_t *aad, size_t aadlen, const uint8_t *in,
                     size_t len, uint8_t *out);
int lr_gcm_open_once(const uint8_t *key, const uint8_t *nonce,
                     const uint8_t *aad, size_t aadlen, const uint8_t *in,
                     size_t len, uint8_t *out);

/* --- AES-128-CFB (full-block feedback) as a continuous stream cipher */
struct lr_cfb {
    EVP_CIPHER_CTX *ctx;
};

int lr_cfb_init(struct lr_cfb *c, const uint8_t *key, const uint8_t *iv,
                int encrypt);
void lr_cfb_deinit(struct lr_cfb *c);
/* Continues the stream; out may equal in.  Hot path. */
int lr_cfb_update(struct lr_cfb *c, const uint8_t *in, size_t len,
                  uint8_t *out);
static inline int lr_cfb_is_set(const struct lr_cfb *c) { return c->ctx != 0; }

/* --- AES-128 single blocks (AuthID) with a key schedule kept per user */
struct lr_aes_block {
    EVP_CIPHER_CTX *ctx;
};

int lr_aes_block_init(struct lr_aes_block *b, const uint8_t *key,
                      int encrypt);
void lr_aes_block_deinit(struct lr_aes_block *b);
int lr_aes_block(struct lr_aes_block *b, const uint8_t *in, uint8_t *out);

/* --- SHAKE128 sponge squeezed two bytes at a time (length masking) */
struct lr_shake {
    uint64_t st[25];
    uint32_t pos;         /* next unread byte of the current block */
};

void lr_shake_init(struct lr_shake *s, const uint8_t *in, size_t len);
void lr_shake_squeeze(struct lr_shake *s, uint8_t *out, size_t len);
static inline uint16_t lr_shake_next16(struct lr_shake *s)
{
    uint8_t b[2];
    lr_shake_squeeze(s, b, 2);
    return (uint16_t)((b[0] << 8) | b[1]);
}

/* --- KDF helpers: KDF16(key, salt string [, raw element ...]) */
int lr_kdf16_str(const uint8_t *key, size_t klen, const char *salt,
                 const uint8_t *e1, size_t l1, const uint8_t *e2, size_t l2,
                 uint8_t *out16);
int lr_kdf_str(const uint8_t *key, size_t klen, const char *salt,
               const uint8_t *e1, size_t l1, const uint8_t *e2, size_t l2,
               uint8_t *out32);

/* --- misc */
void lr_wipe(void *p, size_t len);
/* HMAC-MD5 under a 16-byte key, its padded key blocks hashed once
 * (md5pre.c): the chaining values after ipad and after opad. */
struct lr_hmac_md5_key {
    uint32_t i[4], o[4];
};
void lr_hmac_md5_key16(const uint8_t *key16, struct lr_hmac_md5_key *k);
/* HMAC-MD5(key, msg8) of an 8-byte message: two MD5 compressions. */
void lr_hmac_md5_8(const struct lr_hmac_md5_key *k, const uint8_t *msg8,
                   uint8_t *out16);

void lr_md5_2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
              uint8_t *out);

#endif
