/*
 * Library-wide entry points of api.h: initialisation and version.  The
 * codec, crypto and identity functions live in their modules.
 */
#include <openssl/evp.h>
#include <sodium.h>

#include "base/base.h"

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
    if (!EVP_aes_128_gcm() || !EVP_chacha20_poly1305() ||
        !EVP_aes_128_cfb128() || !EVP_aes_128_ecb() || !EVP_md5() ||
        !EVP_sha256() || !EVP_shake128())
        return LR_ECRYPTO;
    done = 1;
    return LR_OK;
}
