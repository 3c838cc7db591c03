/*
 * Response header and the dynamic-port command (vmess-wire.md 8-10).
 *
 * Legacy mode: V || opt || cmd || cmdLen || cmdData runs through
 * AES-128-CFB(respKey, respIV), and an aes-128-cfb body continues that very
 * stream, so the header uses the response body's CFB context.  AEAD mode:
 * two GCM boxes (length, then header) under keys derived from respKey and
 * respIV; a cfb body then starts a fresh stream.
 */
#include <string.h>

#include "vmess/vmess.h"

static const char s_len_key[] = "AEAD Resp Header Len Key";
static const char s_len_iv[] = "AEAD Resp Header Len IV";
static const char s_key[] = "AEAD Resp Header Key";
static const char s_iv[] = "AEAD Resp Header IV";

LR_API int lr_resp_keys(uint8_t mode, const uint8_t *req_key,
                        const uint8_t *req_iv, uint8_t *resp_key,
                        uint8_t *resp_iv)
{
    if (mode == LR_MODE_LEGACY) {
        lr_md5(req_key, 16, resp_key);
        lr_md5(req_iv, 16, resp_iv);
        return LR_OK;
    }
    if (mode != LR_MODE_AEAD)
        return LR_EINVAL;
    uint8_t h[32];
    lr_sha256(req_key, 16, h);
    memcpy(resp_key, h, 16);
    lr_sha256(req_iv, 16, h);
    memcpy(resp_iv, h, 16);
    return LR_OK;
}

static int box_keys(const uint8_t *resp_key, const uint8_t *resp_iv,
                    const char *ksalt, const char *nsalt, uint8_t *key,
                    uint8_t *nonce)
{
    uint8_t n32[32];
    int rc = lr_kdf16_str(resp_key, 16, ksalt, NULL, 0, NULL, 0, key);
    if (rc == LR_OK)
        rc = lr_kdf_str(resp_iv, 16, nsalt, NULL, 0, NULL, 0, n32);
    memcpy(nonce, n32, 12);
    return rc;
}

LR_API int lr_cmd_switch_encode(const struct lr_cmd_switch *c, uint8_t *out,
                                size_t cap, size_t *outlen)
{
    size_t plen = 1 + (size_t)c->host_len + 2 + 16 + 2 + 1 + 1;
    if (4 + plen > 255 || cap < 2 + 4 + plen)
        return LR_ETOOBIG;
    uint8_t *p = out + 6;
    *p++ = c->host_len;
    memcpy(p, c->host, c->host_len);
    p += c->host_len;
    lr_put_be16(p, c->port);
    p += 2;
    memcpy(p, c->id, 16);
    p += 16;
    lr_put_be16(p, c->alter_ids);
    p += 2;
    *p++ = c->level;
    *p++ = c->valid_min;
    out[0] = 0x01;
    out[1] = (uint8_t)(4 + plen);
    lr_put_be32(out + 2, lr_fnv1a32(out + 6, plen));
    *outlen = 6 + plen;
    return LR_OK;
}

LR_API int lr_cmd_switch_decode(const uint8_t *in, size_t len,
                                struct lr_cmd_switch *out)
{
    if (len < 2 || in[0] != 0x01 || in[1] < 4 || len < 2 + (size_t)in[1])
        return LR_EINVAL;
    size_t plen = (size_t)in[1] - 4;
    const uint8_t *p = in + 6;
    if (lr_fnv1a32(p, plen) != lr_get_be32(in + 2))
        return LR_ECHECKSUM;
    if (plen < 1 || plen != 1 + (size_t)p[0] + 2 + 16 + 2 + 1 + 1)
        return LR_EINVAL;
    memset(out, 0, sizeof(*out));
    out->host_len = p[0];
    memcpy(out->host, p + 1, out->host_len);
    p += 1 + out->host_len;
    out->port = lr_get_be16(p);
    memcpy(out->id, p + 2, 16);
    out->alter_ids = lr_get_be16(p + 18);
    out->level = p[20];
    out->valid_min = p[21];
    return LR_OK;
}

LR_API int lr_resp_encode(uint8_t mode, const uint8_t *resp_key,
                          const uint8_t *resp_iv, struct lr_body *down,
                          uint8_t v, const struct lr_cmd_switch *cmd,
                          uint8_t *out, size_t cap, size_t *outlen)
{
    uint8_t plain[4 + 255];
    size_t n = 4;
    int rc;
    plain[0] = v;
    plain[1] = 0;
    plain[2] = 0;
    plain[3] = 0;
    if (cmd) {
        size_t cl;
        if ((rc = lr_cmd_switch_encode(cmd, plain + 2, sizeof(plain) - 2, &cl)))
            return rc;
        n = 2 + cl;
    }
    if (mode == LR_MODE_LEGACY) {
        struct lr_cfb *c = lr_body_cfb(down, 1);
        if (!c)
            return LR_ECRYPTO;
        if (cap < n)
            return LR_ETOOBIG;
        if ((rc = lr_cfb_update(c, plain, n, out)))
            return rc;
        *outlen = n;
        return LR_OK;
    }
    if (mode != LR_MODE_AEAD)
        return LR_EINVAL;
    uint8_t key[16], nonce[12], lenb[2];
    if (cap < 18 + n + 16)
        return LR_ETOOBIG;
    lr_put_be16(lenb, (uint16_t)n);
    if ((rc = box_keys(resp_key, resp_iv, s_len_key, s_len_iv, key, nonce)) ||
        (rc = lr_gcm_seal_once(key, nonce, NULL, 0, lenb, 2, out)) ||
        (rc = box_keys(resp_key, resp_iv, s_key, s_iv, key, nonce)) ||
        (rc = lr_gcm_seal_once(key, nonce, NULL, 0, plain, n, out + 18)))
        return rc;
    *outlen = 18 + n + 16;
    return LR_OK;
}

LR_API void lr_resp_dec_init(struct lr_resp_dec *dec)
{
    memset(dec, 0, sizeof(*dec));
}

static int resp_parse(const uint8_t *p, size_t n, uint8_t expect_v,
                      struct lr_resp *out)
{
    memset(out, 0, sizeof(*out));
    if (p[0] != expect_v)
        return LR_EAUTH;
    out->v = p[0];
    out->option = p[1];
    out->command = p[2];
    out->command_len = p[3];
    /* an unparsable command is ignored, as v2ray's client does */
    if (out->command == 0x01 && lr_cmd_switch_decode(p + 2, n - 2, &out->sw) == LR_OK)
        out->has_switch = 1;
    return LR_OK;
}

LR_API int lr_resp_decode(struct lr_resp_dec *dec, uint8_t mode,
                          const uint8_t *resp_key, const uint8_t *resp_iv,
                          struct lr_body *down, uint8_t expect_v,
                          const uint8_t *in, size_t len, size_t *consumed,
                          struct lr_resp *out)
{
    int rc;
    *consumed = 0;
    if (mode == LR_MODE_LEGACY) {
        /* decrypt exactly the header's bytes: the CFB stream goes on into
         * a cfb body, so nothing beyond the header may pass through it */
        struct lr_cfb *c = lr_body_cfb(down, 0);
        if (!c)
            return LR_ECRYPTO;
        for (;;) {
            size_t want = dec->have < 4 ? 4 : 4 + (size_t)dec->plain[3];
            if (dec->have == want) {
                rc = resp_parse(dec->plain, want, expect_v, out);
                if (rc == LR_OK)
                    *consumed = want;
                return rc;
            }
            if (len <= dec->have)
                return LR_AGAIN;
            size_t take = (len < want ? len : want) - dec->have;
            if ((rc = lr_cfb_update(c, in + dec->have, take,
                                    dec->plain + dec->have)))
                return rc;
            dec->have += (uint32_t)take;
        }
    }
    if (mode != LR_MODE_AEAD)
        return LR_EINVAL;
    uint8_t key[16], nonce[12];
    if (dec->len == 0) {
        uint8_t lenb[2];
        if (len < 18)
            return LR_AGAIN;
        if ((rc = box_keys(resp_key, resp_iv, s_len_key, s_len_iv, key, nonce)))
            return rc;
        if ((rc = lr_gcm_open_once(key, nonce, NULL, 0, in, 18, lenb)))
            return rc;
        uint16_t l = lr_get_be16(lenb);
        /* checked before it is kept: a retry must never see a length the
         * plaintext buffer cannot hold */
        if (l < 4 || l > 4 + 255)
            return LR_EINVAL;
        dec->len = l;
    }
    if (len < 18 + (size_t)dec->len + 16)
        return LR_AGAIN;
    if ((rc = box_keys(resp_key, resp_iv, s_key, s_iv, key, nonce)) ||
        (rc = lr_gcm_open_once(key, nonce, NULL, 0, in + 18, dec->len + 16,
                               dec->plain)))
        return rc;
    rc = resp_parse(dec->plain, dec->len, expect_v, out);
    if (rc == LR_OK)
        *consumed = 18 + (size_t)dec->len + 16;
    return rc;
}
