/*
 * Digests and checksums: MD5, SHA-256 and their HMACs through OpenSSL EVP,
 * FNV-1a-32 (request header and CFB chunk check) and CRC32-IEEE (AuthID),
 * which are not cryptographic and are computed here.  vmess-wire.md 2, 4,
 * 6 and 7.2 say where each is used.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "base/base.h"
#include "crypto/crypto.h"

static int digest(const EVP_MD *md, const uint8_t *in, size_t len,
                  uint8_t *out)
{
    unsigned int n = 0;
    if (EVP_Digest(in, len, out, &n, md, NULL) != 1)
        return LR_ECRYPTO;
    return LR_OK;
}

LR_API int lr_md5(const uint8_t *in, size_t len, uint8_t *out)
{
    return digest(lr_alg_md5(), in, len, out);
}

LR_API int lr_sha256(const uint8_t *in, size_t len, uint8_t *out)
{
    return digest(lr_alg_sha256(), in, len, out);
}

void lr_md5_2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
              uint8_t *out)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    lr_require(c != NULL);
    lr_require(EVP_DigestInit_ex(c, lr_alg_md5(), NULL) == 1);
    lr_require(EVP_DigestUpdate(c, a, alen) == 1);
    lr_require(EVP_DigestUpdate(c, b, blen) == 1);
    lr_require(EVP_DigestFinal_ex(c, out, NULL) == 1);
    EVP_MD_CTX_free(c);
}

static int hmac(const EVP_MD *md, const uint8_t *key, size_t klen,
                const uint8_t *in, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    if (HMAC(md, key, (int)klen, in, len, out, &n) == NULL)
        return LR_ECRYPTO;
    return LR_OK;
}

LR_API int lr_hmac_md5(const uint8_t *key, size_t klen, const uint8_t *in,
                       size_t len, uint8_t *out)
{
    return hmac(lr_alg_md5(), key, klen, in, len, out);
}

LR_API int lr_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *in,
                          size_t len, uint8_t *out)
{
    return hmac(lr_alg_sha256(), key, klen, in, len, out);
}

LR_API int lr_shake128(const uint8_t *in, size_t len, uint8_t *out,
                       size_t outlen)
{
    int rc = LR_ECRYPTO;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL)
        return LR_ENOMEM;
    if (EVP_DigestInit_ex(c, lr_alg_shake128(), NULL) == 1 &&
        EVP_DigestUpdate(c, in, len) == 1 &&
        EVP_DigestFinalXOF(c, out, outlen) == 1)
        rc = LR_OK;
    EVP_MD_CTX_free(c);
    return rc;
}

LR_API uint32_t lr_fnv1a32(const uint8_t *in, size_t len)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < len; i++) {
        h ^= in[i];
        h *= 0x01000193u;
    }
    return h;
}

/* CRC-32/IEEE (zlib's), table built on first use (once, threads). */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

LR_API uint32_t lr_crc32(const uint8_t *in, size_t len)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ in[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Randomness: a handshake takes seven small pieces (key, IV, padding
 * length, padding, ...) and every padded chunk one more; one getrandom(2)
 * each was a third of a client's system calls per connection.  Small
 * requests are served from a pool that libsodium refills 512 bytes at a
 * time; every byte is wiped from the pool as it is handed out, and a fork
 * empties the pool in the child so two processes never share bytes.
 * Large requests go to libsodium directly. */
#define RPOOL 512
static __thread uint8_t rpool[RPOOL];
static __thread size_t rpos = RPOOL;
static pthread_once_t rpool_once = PTHREAD_ONCE_INIT;

static void rpool_after_fork(void)
{
    sodium_memzero(rpool, sizeof(rpool));
    rpos = RPOOL;
}

static void rpool_setup(void)
{
    pthread_atfork(NULL, NULL, rpool_after_fork);
}

LR_API void lr_random(uint8_t *out, size_t len)
{
    if (len > RPOOL / 4) {
        randombytes_buf(out, len);
        return;
    }
    if (RPOOL - rpos < len) {
        pthread_once(&rpool_once, rpool_setup);
        randombytes_buf(rpool, RPOOL);
        rpos = 0;
    }
    memcpy(out, rpool + rpos, len);
    sodium_memzero(rpool + rpos, len);
    rpos += len;
}

/* Non-secret bytes (api.h lr_random_nonsecret): a ChaCha20-IETF
 * keystream, 1 KiB per libsodium call, the 96-bit nonce a block counter.
 * The key comes from lr_random (the system RNG) on a thread's first use,
 * after every LR_NONSECRET_REKEY bytes, and after a fork (the fork
 * generation moves, so parent and child never continue one stream). */
#define NS_BLOCK 1024
#define LR_NONSECRET_REKEY (64u << 20)
struct ns_state {
    uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES];
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
    uint8_t block[NS_BLOCK];
    size_t pos;           /* next unused byte of block */
    size_t since_key;     /* bytes generated under this key */
    unsigned gen;         /* fork generation it was keyed in; 0 unkeyed */
};
static __thread struct ns_state ns = {.pos = NS_BLOCK};
static unsigned ns_fork_gen = 1;
static pthread_once_t ns_once = PTHREAD_ONCE_INIT;

static void ns_after_fork(void)
{
    __atomic_add_fetch(&ns_fork_gen, 1, __ATOMIC_RELAXED);
    /* the forking thread is the child's only thread: wipe its state too */
    sodium_memzero(&ns, sizeof(ns));
    ns.pos = NS_BLOCK;
}

static void ns_setup(void)
{
    pthread_atfork(NULL, NULL, ns_after_fork);
}

static void ns_refill(void)
{
    unsigned gen = __atomic_load_n(&ns_fork_gen, __ATOMIC_RELAXED);
    if (ns.gen != gen || ns.since_key >= LR_NONSECRET_REKEY) {
        pthread_once(&ns_once, ns_setup);
        gen = __atomic_load_n(&ns_fork_gen, __ATOMIC_RELAXED);
        lr_random(ns.key, sizeof(ns.key));
        memset(ns.nonce, 0, sizeof(ns.nonce));
        ns.since_key = 0;
        ns.gen = gen;
    }
    crypto_stream_chacha20_ietf(ns.block, NS_BLOCK, ns.nonce, ns.key);
    sodium_increment(ns.nonce, sizeof(ns.nonce));
    ns.since_key += NS_BLOCK;
    ns.pos = 0;
}

LR_API void lr_random_nonsecret(uint8_t *out, size_t len)
{
    while (len) {
        if (ns.pos == NS_BLOCK ||
            ns.gen != __atomic_load_n(&ns_fork_gen, __ATOMIC_RELAXED))
            ns_refill();
        size_t k = NS_BLOCK - ns.pos < len ? NS_BLOCK - ns.pos : len;
        memcpy(out, ns.block + ns.pos, k);
        /* bytes handed out are not kept */
        memset(ns.block + ns.pos, 0, k);
        ns.pos += k;
        out += k;
        len -= k;
    }
}

LR_API int lr_memeq_ct(const uint8_t *a, const uint8_t *b, size_t len)
{
    return sodium_memcmp(a, b, len);
}

void lr_wipe(void *p, size_t len)
{
    sodium_memzero(p, len);
}
