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

/* H0 of msg, its inner hash resumed from `start` (inner0, or inner0 having
 * absorbed a level-1 pad block already). */
static int h0_from(struct kdf *k, const EVP_MD_CTX *start,
                   const struct seg *msg, size_t nmsg, uint8_t out[32])
{
    uint8_t in[32];
    if (EVP_MD_CTX_copy_ex(k->work, start) != 1)
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

static int h0(struct kdf *k, const struct seg *msg, size_t nmsg,
              uint8_t out[32])
{
    return h0_from(k, k->inner0, msg, nmsg, out);
}

/* Level 1 is keyed by the path's first element, in practice one of a few
 * constant salts ("VMess Header AEAD Key", ...): H0's inner state after
 * that key's ipad and opad blocks is kept per salt, so each H0 call under
 * level 1 starts one compression later. */
#define SALTS 12
static __thread struct salt {
    uint8_t key[BLOCK];
    size_t len;
    EVP_MD_CTX *in1, *out1;
} salts[SALTS];

static void salts_free(void)
{
    for (int i = 0; i < SALTS; i++) {
        EVP_MD_CTX_free(salts[i].in1);
        EVP_MD_CTX_free(salts[i].out1);
    }
    memset(salts, 0, sizeof(salts));
}

static const struct salt *salt_states(struct kdf *k, const uint8_t *kp,
                                      size_t kl)
{
    int i;
    for (i = 0; i < SALTS && salts[i].in1; i++)
        if (salts[i].len == kl && memcmp(salts[i].key, kp, kl) == 0)
            return &salts[i];
    if (i == SALTS)
        return NULL; /* full: the plain path */
    uint8_t ipad[BLOCK], opad[BLOCK];
    memset(ipad, 0x36, BLOCK);
    memset(opad, 0x5c, BLOCK);
    for (size_t j = 0; j < kl; j++) {
        ipad[j] ^= kp[j];
        opad[j] ^= kp[j];
    }
    EVP_MD_CTX *a = EVP_MD_CTX_new(), *b = EVP_MD_CTX_new();
    if (!a || !b || EVP_MD_CTX_copy_ex(a, k->inner0) != 1 ||
        EVP_DigestUpdate(a, ipad, BLOCK) != 1 ||
        EVP_MD_CTX_copy_ex(b, k->inner0) != 1 ||
        EVP_DigestUpdate(b, opad, BLOCK) != 1) {
        EVP_MD_CTX_free(a);
        EVP_MD_CTX_free(b);
        return NULL;
    }
    memcpy(salts[i].key, kp, kl);
    salts[i].len = kl;
    salts[i].in1 = a;
    salts[i].out1 = b;
    return &salts[i];
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
    if (level == 1 && kl <= BLOCK) {
        const struct salt *st = salt_states(k, kp, kl);
        if (st) {
            if ((rc = h0_from(k, st->in1, msg, nmsg, inner)) != LR_OK)
                return rc;
            struct seg o = {inner, 32};
            return h0_from(k, st->out1, &o, 1, out);
        }
    }
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

/* H0's inner and outer states after the root key's padded blocks, and a
 * work context: made once per thread and kept (a handshake runs eight
 * KDFs; allocating and keying three contexts each was a third of their
 * cost).  Worker threads free theirs as they end (lr_kdf_thread_end). */
static __thread struct {
    EVP_MD_CTX *inner0, *outer0, *work;
} tk;

void lr_kdf_thread_end(void)
{
    salts_free();
    EVP_MD_CTX_free(tk.work);
    EVP_MD_CTX_free(tk.outer0);
    EVP_MD_CTX_free(tk.inner0);
    memset(&tk, 0, sizeof(tk));
}

static int kdf_ready(void)
{
    uint8_t ipad[BLOCK], opad[BLOCK];
    if (tk.work)
        return LR_OK;
    EVP_MD_CTX *in = EVP_MD_CTX_new(), *out = EVP_MD_CTX_new(),
               *work = EVP_MD_CTX_new();
    if (!in || !out || !work)
        goto fail;
    memset(ipad, 0x36, BLOCK);
    memset(opad, 0x5c, BLOCK);
    for (size_t i = 0; i < sizeof(kdf_root_key) - 1; i++) {
        ipad[i] ^= (uint8_t)kdf_root_key[i];
        opad[i] ^= (uint8_t)kdf_root_key[i];
    }
    if (EVP_DigestInit_ex(in, lr_alg_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(in, ipad, BLOCK) != 1 ||
        EVP_DigestInit_ex(out, lr_alg_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(out, opad, BLOCK) != 1)
        goto fail;
    tk.inner0 = in;
    tk.outer0 = out;
    tk.work = work;
    return LR_OK;
fail:
    EVP_MD_CTX_free(work);
    EVP_MD_CTX_free(out);
    EVP_MD_CTX_free(in);
    return LR_ECRYPTO;
}

LR_API int lr_kdf(const uint8_t *key, size_t klen, const uint8_t *const *path,
                  const size_t *plen, size_t npath, uint8_t *out)
{
    if (npath > KDF_MAX_PATH)
        return LR_EINVAL;
    int rc = kdf_ready();
    if (rc != LR_OK)
        return rc;
    struct kdf k = {tk.inner0, tk.outer0, tk.work, path, plen};
    struct seg m = {key, klen};
    return hn(&k, npath, &m, 1, out);
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
