/*
 * Library-wide entry points of api.h: initialisation and version.  The
 * codec, crypto and identity functions live in their modules.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>

#include "base/base.h"
#include "crypto/crypto.h"

#define LURAY_VERSION "0.1.0"

LR_API const char *lr_version(void)
{
    return LURAY_VERSION;
}

static int init_rc = LR_ECRYPTO;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_run(void)
{
    init_rc = LR_ECRYPTO;
    if (sodium_init() < 0)
        return;
    /* fail early if this OpenSSL lacks an algorithm the protocol needs */
    if (!lr_alg_aes128gcm() || !lr_alg_chacha20poly1305() ||
        !lr_alg_aes128cfb() || !lr_alg_aes128ecb() || !lr_alg_md5() ||
        !lr_alg_sha256() || !lr_alg_shake128())
        return;
    /* cipher.c relies on the AEADs' default nonce length */
    if (EVP_CIPHER_get_iv_length(lr_alg_aes128gcm()) != 12 ||
        EVP_CIPHER_get_iv_length(lr_alg_chacha20poly1305()) != 12)
        return;
    init_rc = LR_OK;
}

/* Once per process, whichever thread comes first (the others wait). */
LR_API int lr_init(void)
{
    pthread_once(&init_once, init_run);
    return init_rc;
}
