/*
 * The OpenSSL algorithms the protocol uses, fetched once.  EVP_aes_128_gcm()
 * and friends make OpenSSL 3 fetch the implementation again on every
 * EVP_CipherInit_ex/EVP_DigestInit_ex (a name lookup under a read lock, then
 * reference counting); with explicitly fetched objects that work is done
 * here, once per process, and a connection's handshake skips it
 * ("Performance" in OpenSSL 3's migration guide).  The fetched objects live
 * until exit.  A fetch failing falls back to the legacy getter, so a
 * provider configuration without a name still gets the same algorithm.
 */
#include <openssl/evp.h>

#include "base/base.h"
#include "crypto/crypto.h"

static const EVP_CIPHER *cipher(const EVP_CIPHER **slot, const char *name,
                                const EVP_CIPHER *(*legacy)(void))
{
    if (!*slot) {
        EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
        *slot = c ? c : legacy();
    }
    return *slot;
}

static const EVP_MD *digest(const EVP_MD **slot, const char *name,
                            const EVP_MD *(*legacy)(void))
{
    if (!*slot) {
        EVP_MD *m = EVP_MD_fetch(NULL, name, NULL);
        *slot = m ? m : legacy();
    }
    return *slot;
}

static const EVP_CIPHER *gcm, *chacha, *cfb, *ecb;
static const EVP_MD *md5, *sha256, *shake128;

const EVP_CIPHER *lr_alg_aes128gcm(void)
{
    return cipher(&gcm, "AES-128-GCM", EVP_aes_128_gcm);
}

const EVP_CIPHER *lr_alg_chacha20poly1305(void)
{
    return cipher(&chacha, "ChaCha20-Poly1305", EVP_chacha20_poly1305);
}

const EVP_CIPHER *lr_alg_aes128cfb(void)
{
    return cipher(&cfb, "AES-128-CFB", EVP_aes_128_cfb128);
}

const EVP_CIPHER *lr_alg_aes128ecb(void)
{
    return cipher(&ecb, "AES-128-ECB", EVP_aes_128_ecb);
}

const EVP_MD *lr_alg_md5(void)
{
    return digest(&md5, "MD5", EVP_md5);
}

const EVP_MD *lr_alg_sha256(void)
{
    return digest(&sha256, "SHA2-256", EVP_sha256);
}

const EVP_MD *lr_alg_shake128(void)
{
    return digest(&shake128, "SHAKE-128", EVP_shake128);
}
