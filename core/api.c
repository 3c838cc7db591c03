/*
 * Library-wide entry points of api.h: initialisation and version.  The
 * codec, crypto and identity functions live in their modules.
 */
#include <openssl/evp.h>
#include <sodium.h>

#include "base/base.h"
#include "crypto/crypto.h"

#define LURAY_VERSION "0.1.0"

LR_API const char *lr_version(void)
{
    return LURAY_VERSION;
}

LR_API int lr_init(void)
{
    static int done;
    if (done)
        return LR_OK;
    if (sodium_init() < 0)
        return LR_ECRYPTO;
    /* fail early if this OpenSSL lacks an algorithm the protocol needs */
    if (!lr_alg_aes128gcm() || !lr_alg_chacha20poly1305() ||
        !lr_alg_aes128cfb() || !lr_alg_aes128ecb() || !lr_alg_md5() ||
        !lr_alg_sha256() || !lr_alg_shake128())
        return LR_ECRYPTO;
    /* cipher.c relies on the AEADs' default nonce length */
    if (EVP_CIPHER_get_iv_length(lr_alg_aes128gcm()) != 12 ||
        EVP_CIPHER_get_iv_length(lr_alg_chacha20poly1305()) != 12)
        return LR_ECRYPTO;
    done = 1;
    return LR_OK;
}
