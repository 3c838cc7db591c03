/*
 * The VMessAEAD key derivation (vmess-wire.md 7.1): nested HMACs.
 * H0 = HMAC-SHA256 keyed "VMess AEAD KDF"; H_i is RFC 2104 HMAC keyed with
 * path element p_i whose hash function is H_{i-1} (block 64, output 32);
 * KDF(key, p_1..p_n) = H_n(key).  A depth-n KDF costs 2^n H0 calls, and
 * the protocol never goes deeper than 3, so the recursion is kept plain.
 * H0's inner and outer SHA-256 states are computed once per call and
 * copied for every H0 evaluation.
 */
#include <string.h>

#include <openssl/evp.h>

#include "base/base.h"
#include "crypto/crypto.h"

#define KDF_MAX_PATH 8
#define BLOCK 64

struct seg {
    const uint8_t *p;
    size_t n;
};

struct kdf {
    EVP_MD_CTX *inner0, *outer0, *work;
    const uint8_t *const *path;
    const size_t *plen;
};

static int h0(struct kdf *k, const struct seg *msg, size_t nmsg,
              uint8_t out[32])
{
    uint8_t in[32];
    if (EVP_MD_CTX_copy_ex(k->work, k->inner0) != 1)
        return LR_ECRYPTO;
    for (size_t i = 0; i < nmsg; i++)
        if (EVP_DigestUpdate(k->work, msg[i].p, msg[i].n) != 1)
            return LR_ECRYPTO;
    if (EVP_DigestFinal_ex(k->work, in, NULL) != 1 ||
        EVP_MD_CTX_copy_ex(k->work, k->outer0) != 1 ||
        EVP_DigestUpdate(k->work, in, 32) != 1 ||
        EVP_DigestFinal_ex(k->work, out, NULL) != 1)
        return LR_ECRYPTO;
    return LR_OK;
}

static int hn(struct kdf *k, size_t level, const struct seg *msg, size_t nmsg,
              uint8_t out[32])
{
    if (level == 0)
        return h0(k, msg, nmsg, out);

    uint8_t key[32], ipad[BLOCK], opad[BLOCK], inner[32];
    const uint8_t *kp = k->path[level - 1];
    size_t kl = k->plen[level - 1];
    int rc;
    if (kl > BLOCK) { /* HMAC: long keys are hashed with the inner hash */
        struct seg s = {kp, kl};
        if ((rc = hn(k, level - 1, &s, 1, key)) != LR_OK)
            return rc;
        kp = key;
        kl = 32;
    }
    memset(ipad, 0x36, BLOCK);
    memset(opad, 0x5c, BLOCK);
    for (size_t i = 0; i < kl; i++) {
        ipad[i] ^= kp[i];
        opad[i] ^= kp[i];
    }
    struct seg m[KDF_MAX_PATH + 2];
    m[0].p = ipad;
    m[0].n = BLOCK;
    for (size_t i = 0; i < nmsg; i++)
        m[i + 1] = msg[i];
    if ((rc = hn(k, level - 1, m, nmsg + 1, inner)) != LR_OK)
        return rc;
    struct seg o[2] = {{opad, BLOCK}, {inner, 32}};
    return hn(k, level - 1, o, 2, out);
}

static const char kdf_root_key[] = "VMess AEAD KDF";

LR_API int lr_kdf(const uint8_t *key, size_t klen, const uint8_t *const *path,
                  const size_t *plen, size_t npath, uint8_t *out)
{
    uint8_t ipad[BLOCK], opad[BLOCK];
    int rc = LR_ECRYPTO;
    struct kdf k = {0};
    if (npath > KDF_MAX_PATH)
        return LR_EINVAL;
    k.path = path;
    k.plen = plen;
    k.inner0 = EVP_MD_CTX_new();
    k.outer0 = EVP_MD_CTX_new();
    k.work = EVP_MD_CTX_new();
    if (!k.inner0 || !k.outer0 || !k.work) {
        rc = LR_ENOMEM;
        goto free_ctx;
    }
    memset(ipad, 0x36, BLOCK);
    memset(opad, 0x5c, BLOCK);
    for (size_t i = 0; i < sizeof(kdf_root_key) - 1; i++) {
        ipad[i] ^= (uint8_t)kdf_root_key[i];
        opad[i] ^= (uint8_t)kdf_root_key[i];
    }
    if (EVP_DigestInit_ex(k.inner0, lr_alg_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(k.inner0, ipad, BLOCK) != 1 ||
        EVP_DigestInit_ex(k.outer0, lr_alg_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(k.outer0, opad, BLOCK) != 1)
        goto free_ctx;
    struct seg m = {key, klen};
    rc = hn(&k, npath, &m, 1, out);
free_ctx:
    EVP_MD_CTX_free(k.work);
    EVP_MD_CTX_free(k.outer0);
    EVP_MD_CTX_free(k.inner0);
    return rc;
}

int lr_kdf_str(const uint8_t *key, size_t klen, const char *salt,
               const uint8_t *e1, size_t l1, const uint8_t *e2, size_t l2,
               uint8_t *out32)
{
    const uint8_t *path[3] = {(const uint8_t *)salt, e1, e2};
    size_t plen[3] = {strlen(salt), l1, l2};
    size_t n = e2 ? 3 : e1 ? 2 : 1;
    return lr_kdf(key, klen, path, plen, n, out32);
}

int lr_kdf16_str(const uint8_t *key, size_t klen, const char *salt,
                 const uint8_t *e1, size_t l1, const uint8_t *e2, size_t l2,
                 uint8_t *out16)
{
    uint8_t full[32];
    int rc = lr_kdf_str(key, klen, salt, e1, l1, e2, l2, full);
    memcpy(out16, full, 16);
    lr_wipe(full, sizeof(full));
    return rc;
}
