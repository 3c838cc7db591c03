/*
 * Cipher contexts over OpenSSL EVP: AEAD (AES-128-GCM, ChaCha20-Poly1305)
 * for body chunks and header boxes, AES-128-CFB as a continuous stream for
 * the legacy header and the aes-128-cfb body, and single AES blocks for
 * AuthIDs.  A context is allocated when a stream is set up; sealing or
 * opening a chunk only re-keys the nonce (EVP keeps the key schedule).
 */
#include <string.h>

#include <openssl/evp.h>

#include "base/base.h"
#include "crypto/crypto.h"

#define TAG_LEN 16

static const EVP_CIPHER *aead_cipher(int kind)
{
    return kind == LR_AEAD_GCM ? lr_alg_aes128gcm() : lr_alg_chacha20poly1305();
}

int lr_aead_init(struct lr_aead *a, int kind, const uint8_t *key)
{
    memset(a, 0, sizeof(*a));
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL)
        return LR_ENOMEM;
    a->kind = (uint8_t)kind;
    memcpy(a->key, key, kind == LR_AEAD_GCM ? 16 : 32);
    return LR_OK;
}

void lr_aead_deinit(struct lr_aead *a)
{
    if (a->ctx)
        EVP_CIPHER_CTX_free(a->ctx);
    lr_wipe(a, sizeof(*a));
}

/* Keys the context for one direction the first time it is used that way;
 * after that only the nonce changes per chunk. */
static int aead_key(struct lr_aead *a, int dir)
{
    if (a->dir == dir)
        return LR_OK;
    int enc = dir == 1;
    /* both ciphers' default IV length is the 12 bytes we use (lr_init
     * checks it), so no EVP_CTRL_AEAD_SET_IVLEN: a parameter round trip
     * through the provider per context */
    if (EVP_CipherInit_ex(a->ctx, aead_cipher(a->kind), NULL, a->key, NULL,
                          enc) != 1)
        return LR_ECRYPTO;
    a->dir = (uint8_t)dir;
    return LR_OK;
}

int lr_aead_seal(struct lr_aead *a, const uint8_t *nonce, const uint8_t *aad,
                 size_t aadlen, const uint8_t *in, size_t len, uint8_t *out)
{
    int n = 0, rc = aead_key(a, 1);
    if (rc != LR_OK)
        return rc;
    if (EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1)
        return LR_ECRYPTO;
    if (aadlen && EVP_EncryptUpdate(a->ctx, NULL, &n, aad, (int)aadlen) != 1)
        return LR_ECRYPTO;
    if (len && EVP_EncryptUpdate(a->ctx, out, &n, in, (int)len) != 1)
        return LR_ECRYPTO;
    if (EVP_EncryptFinal_ex(a->ctx, out + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN,
                            out + len) != 1)
        return LR_ECRYPTO;
    return LR_OK;
}

int lr_aead_open(struct lr_aead *a, const uint8_t *nonce, const uint8_t *aad,
                 size_t aadlen, const uint8_t *in, size_t len, uint8_t *out)
{
    int n = 0, rc = aead_key(a, 2);
    uint8_t tag[TAG_LEN];
    if (rc != LR_OK)
        return rc;
    if (len < TAG_LEN)
        return LR_EAUTH;
    size_t clen = len - TAG_LEN;
    /* copy the tag first: `out` may overlap `in` */
    memcpy(tag, in + clen, TAG_LEN);
    if (EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1)
        return LR_ECRYPTO;
    if (aadlen && EVP_DecryptUpdate(a->ctx, NULL, &n, aad, (int)aadlen) != 1)
        return LR_ECRYPTO;
    if (clen && EVP_DecryptUpdate(a->ctx, out, &n, in, (int)clen) != 1)
        return LR_ECRYPTO;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1)
        return LR_ECRYPTO;
    if (EVP_DecryptFinal_ex(a->ctx, out + clen, &n) != 1) {
        lr_wipe(out, clen);
        return LR_EAUTH;
    }
    return LR_OK;
}

/* The header boxes are one seal or open each, several per handshake: they
 * share one context per thread, re-keyed each time, instead of allocating,
 * keying and freeing one (EVP keeps the allocation across re-inits).  The
 * last header key's schedule stays in it until the next box re-keys it. */
static __thread EVP_CIPHER_CTX *once_ctx;

static int gcm_once(int seal, const uint8_t *key, const uint8_t *nonce,
                    const uint8_t *aad, size_t aadlen, const uint8_t *in,
                    size_t len, uint8_t *out)
{
    if (!once_ctx && !(once_ctx = EVP_CIPHER_CTX_new()))
        return LR_ENOMEM;
    struct lr_aead a = {.ctx = once_ctx, .kind = LR_AEAD_GCM};
    memcpy(a.key, key, 16);
    int rc = seal ? lr_aead_seal(&a, nonce, aad, aadlen, in, len, out)
                  : lr_aead_open(&a, nonce, aad, aadlen, in, len, out);
    lr_wipe(a.key, sizeof(a.key));
    return rc;
}

/* A worker thread ending frees its context (thread-locals are not). */
void lr_cipher_thread_end(void)
{
    EVP_CIPHER_CTX_free(once_ctx);
    once_ctx = NULL;
}

int lr_gcm_seal_once(const uint8_t *key, const uint8_t *nonce,
                     const uint8_t *aad, size_t aadlen, const uint8_t *in,
                     size_t len, uint8_t *out)
{
    return gcm_once(1, key, nonce, aad, aadlen, in, len, out);
}

int lr_gcm_open_once(const uint8_t *key, const uint8_t *nonce,
                     const uint8_t *aad, size_t aadlen, const uint8_t *in,
                     size_t len, uint8_t *out)
{
    return gcm_once(0, key, nonce, aad, aadlen, in, len, out);
}

int lr_cfb_init(struct lr_cfb *c, const uint8_t *key, const uint8_t *iv,
                int encrypt)
{
    c->ctx = EVP_CIPHER_CTX_new();
    if (c->ctx == NULL)
        return LR_ENOMEM;
    if (EVP_CipherInit_ex(c->ctx, lr_alg_aes128cfb(), NULL, key, iv,
                          encrypt ? 1 : 0) != 1) {
        lr_cfb_deinit(c);
        return LR_ECRYPTO;
    }
    return LR_OK;
}

void lr_cfb_deinit(struct lr_cfb *c)
{
    if (c->ctx)
        EVP_CIPHER_CTX_free(c->ctx);
    c->ctx = NULL;
}

int lr_cfb_update(struct lr_cfb *c, const uint8_t *in, size_t len,
                  uint8_t *out)
{
    int n = 0;
    if (len == 0)
        return LR_OK;
    if (EVP_CipherUpdate(c->ctx, out, &n, in, (int)len) != 1)
        return LR_ECRYPTO;
    return LR_OK;
}

int lr_aes_block_init(struct lr_aes_block *b, const uint8_t *key,
                      int encrypt)
{
    b->ctx = EVP_CIPHER_CTX_new();
    if (b->ctx == NULL)
        return LR_ENOMEM;
    if (EVP_CipherInit_ex(b->ctx, lr_alg_aes128ecb(), NULL, key, NULL,
                          encrypt ? 1 : 0) != 1 ||
        EVP_CIPHER_CTX_set_padding(b->ctx, 0) != 1) {
        lr_aes_block_deinit(b);
        return LR_ECRYPTO;
    }
    return LR_OK;
}

void lr_aes_block_deinit(struct lr_aes_block *b)
{
    if (b->ctx)
        EVP_CIPHER_CTX_free(b->ctx);
    b->ctx = NULL;
}

int lr_aes_block(struct lr_aes_block *b, const uint8_t *in, uint8_t *out)
{
    int n = 0;
    if (EVP_CipherUpdate(b->ctx, out, &n, in, 16) != 1 || n != 16)
        return LR_ECRYPTO;
    return LR_OK;
}
