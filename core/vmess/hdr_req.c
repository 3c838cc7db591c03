/*
 * Request header, both modes (vmess-wire.md 4-7): the plaintext fields of
 * section 6, the legacy wire form (HMAC-MD5 auth || AES-128-CFB) and the
 * VMessAEAD wire form (AuthID || sealed length || nonce || sealed header).
 *
 * The server-side decoder is incremental and restartable: the caller keeps
 * every byte the client has sent and calls again when more arrive.  The
 * expensive, stateful steps (user lookup, replay insert, the sealed length)
 * run once and are remembered in struct lr_req_dec; the legacy CFB prefix
 * is simply decrypted again from the start (at most 316 bytes), so the
 * decoder owns no cipher context and needs no cleanup.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "vmess/vmess.h"

enum { ST_AUTH = 0, ST_AEAD_LEN, ST_AEAD_BODY, ST_LEGACY, ST_DONE, ST_FAIL };

#define AEAD_PREFIX (16 + 18 + 8)
#define FIXED_TCP 41 /* through the address type */
#define FIXED_MUX 38 /* mux: no port, no address */

static const char s_len_key[] = "VMess Header AEAD Key_Length";
static const char s_len_nonce[] = "VMess Header AEAD Nonce_Length";
static const char s_key[] = "VMess Header AEAD Key";
static const char s_nonce[] = "VMess Header AEAD Nonce";

/* A client makes an AuthID per connection, nearly always with the same
 * user: the last user's AES key schedule is kept (per thread), so only a
 * change of user costs the KDF and a new context. */
static __thread struct {
    uint8_t cmd_key[16];
    struct lr_aes_block b;
} authid_last;

void lr_hdr_thread_end(void)
{
    lr_aes_block_deinit(&authid_last.b);
    lr_wipe(authid_last.cmd_key, sizeof(authid_last.cmd_key));
}

LR_API int lr_authid_make(const uint8_t *cmd_key, int64_t ts,
                          const uint8_t *rand4, uint8_t *out)
{
    uint8_t key[16], plain[16];
    int rc;
    lr_put_be64(plain, (uint64_t)ts);
    memcpy(plain + 8, rand4, 4);
    lr_put_be32(plain + 12, lr_crc32(plain, 12));
    if (!authid_last.b.ctx || memcmp(authid_last.cmd_key, cmd_key, 16) != 0) {
        lr_aes_block_deinit(&authid_last.b);
        if ((rc = lr_kdf16_str(cmd_key, 16, "AES Auth ID Encryption", NULL, 0,
                               NULL, 0, key)) != LR_OK)
            return rc;
        rc = lr_aes_block_init(&authid_last.b, key, 1);
        lr_wipe(key, sizeof(key));
        if (rc != LR_OK)
            return rc;
        memcpy(authid_last.cmd_key, cmd_key, 16);
    }
    return lr_aes_block(&authid_last.b, plain, out);
}

/* The 4 "random" bytes of an AuthID only have to make it unique: the
 * server refuses an AuthID it has seen within the time window, and the
 * timestamp moves once a second, so with 4 random bytes a client opening
 * thousands of connections a second sends a colliding AuthID about once a
 * minute (birthday bound), which a v2ray or luaray server drains as a
 * replay.  They are a counter from a random start instead: no two
 * connections of this process share them until 2^32 have been made.  (They
 * travel AES-encrypted under the user's key, like the random bytes did.)
 * A forked child starts its own sequence. */
static _Atomic uint32_t auth_seq;
static pthread_once_t auth_seq_once = PTHREAD_ONCE_INIT;

static void auth_seq_reseed(void)
{
    uint32_t r;
    lr_random((uint8_t *)&r, sizeof(r));
    atomic_store(&auth_seq, r);
}

static void auth_seq_init(void)
{
    auth_seq_reseed();
    pthread_atfork(NULL, NULL, auth_seq_reseed);
}

LR_API void lr_req_randomize(struct lr_req *req)
{
    lr_random(&req->v, 1);
    lr_random(req->body_key, 16);
    lr_random(req->body_iv, 16);
    lr_random(&req->padding_len, 1);
    req->padding_len &= 15;
    lr_random(req->padding, sizeof(req->padding));
    pthread_once(&auth_seq_once, auth_seq_init);
    lr_put_be32(req->auth_rand, atomic_fetch_add(&auth_seq, 1));
    lr_random(req->conn_nonce, 8);
}

/* ------------------------------------------------------------ plaintext */

/* Total plaintext length implied by the first `n` bytes, or LR_AGAIN-style
 * 0 when more bytes are needed to tell, or a negative error. */
static int plain_total(const uint8_t *p, size_t n, size_t *total)
{
    if (n < FIXED_MUX) {
        *total = FIXED_MUX;
        return LR_AGAIN;
    }
    size_t pad = p[35] >> 4;
    if (p[37] == LR_CMD_MUX) {
        *total = FIXED_MUX + pad + 4;
        return LR_OK;
    }
    if (n < FIXED_TCP) {
        *total = FIXED_TCP;
        return LR_AGAIN;
    }
    switch (p[40]) {
    case LR_ATYP_IPV4:
        *total = FIXED_TCP + 4 + pad + 4;
        return LR_OK;
    case LR_ATYP_IPV6:
        *total = FIXED_TCP + 16 + pad + 4;
        return LR_OK;
    case LR_ATYP_DOMAIN:
        if (n < FIXED_TCP + 1) {
            *total = FIXED_TCP + 1;
            return LR_AGAIN;
        }
        *total = FIXED_TCP + 1 + p[41] + pad + 4;
        return LR_OK;
    default:
        return LR_EADDR;
    }
}

static int domain_ok(const uint8_t *d, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

/* Parses a complete plaintext of `n` bytes (checksum first, as v2ray). */
static int plain_parse(const uint8_t *p, size_t n, struct lr_req *req)
{
    size_t total;
    int rc = plain_total(p, n, &total);
    if (rc == LR_AGAIN || (rc == LR_OK && total != n))
        return LR_EINVAL;
    if (rc != LR_OK)
        return rc;
    if (lr_fnv1a32(p, n - 4) != lr_get_be32(p + n - 4))
        return LR_ECHECKSUM;
    req->version = p[0];
    memcpy(req->body_iv, p + 1, 16);
    memcpy(req->body_key, p + 17, 16);
    req->v = p[33];
    req->option = p[34];
    req->padding_len = p[35] >> 4;
    req->security = p[35] & 15;
    req->command = p[37];
    if (req->security == LR_SEC_UNKNOWN) /* 4.34's backward-compatible rule */
        req->security = LR_SEC_AES128_CFB;
    if (req->security != LR_SEC_AES128_CFB &&
        req->security != LR_SEC_AES128_GCM &&
        req->security != LR_SEC_CHACHA20_POLY1305 &&
        req->security != LR_SEC_NONE)
        return LR_ESECURITY;
    /* GlobalPadding draws its length from the masking stream; without it
     * v2ray 4.34 panics.  Refuse it. */
    if ((req->option & LR_OPT_GLOBAL_PADDING) &&
        !(req->option & LR_OPT_CHUNK_MASKING))
        return LR_EOPTION;
    size_t off;
    memset(req->addr, 0, sizeof(req->addr));
    switch (req->command) {
    case LR_CMD_MUX:
        req->port = 0;
        req->atyp = LR_ATYP_NONE;
        req->addr_len = 0;
        off = FIXED_MUX;
        break;
    case LR_CMD_TCP:
    case LR_CMD_UDP:
        req->port = lr_get_be16(p + 38);
        req->atyp = p[40];
        if (req->atyp == LR_ATYP_IPV4) {
            req->addr_len = 4;
            memcpy(req->addr, p + 41, 4);
            off = 45;
        } else if (req->atyp == LR_ATYP_IPV6) {
            req->addr_len = 16;
            memcpy(req->addr, p + 41, 16);
            off = 57;
        } else {
            req->addr_len = p[41];
            memcpy(req->addr, p + 42, req->addr_len);
            if (!domain_ok(req->addr, req->addr_len))
                return LR_EADDR;
            off = 42 + (size_t)req->addr_len;
        }
        break;
    default:
        return LR_ECOMMAND;
    }
    memcpy(req->padding, p + off, req->padding_len);
    return LR_OK;
}

static int plain_build(const struct lr_req *req, uint8_t *p, size_t *len)
{
    size_t o = 0;
    if (req->padding_len > 15)
        return LR_EINVAL;
    p[o++] = req->version ? req->version : 1;
    memcpy(p + o, req->body_iv, 16);
    o += 16;
    memcpy(p + o, req->body_key, 16);
    o += 16;
    p[o++] = req->v;
    p[o++] = req->option;
    p[o++] = (uint8_t)(req->padding_len << 4 | (req->security & 15));
    p[o++] = 0;
    p[o++] = req->command;
    if (req->command != LR_CMD_MUX) {
        lr_put_be16(p + o, req->port);
        o += 2;
        p[o++] = req->atyp;
        switch (req->atyp) {
        case LR_ATYP_IPV4:
            memcpy(p + o, req->addr, 4);
            o += 4;
            break;
        case LR_ATYP_IPV6:
            memcpy(p + o, req->addr, 16);
            o += 16;
            break;
        case LR_ATYP_DOMAIN:
            if (req->addr_len == 0 || req->addr_len > LR_MAX_DOMAIN)
                return LR_EINVAL;
            p[o++] = (uint8_t)req->addr_len;
            memcpy(p + o, req->addr, req->addr_len);
            o += req->addr_len;
            break;
        default:
            return LR_EINVAL;
        }
    }
    memcpy(p + o, req->padding, req->padding_len);
    o += req->padding_len;
    lr_put_be32(p + o, lr_fnv1a32(p, o));
    *len = o + 4;
    return LR_OK;
}

/* ------------------------------------------------------------ keys */

static void header_iv(int64_t ts, uint8_t *iv)
{
    uint8_t t[32];
    for (int i = 0; i < 4; i++)
        lr_put_be64(t + 8 * i, (uint64_t)ts);
    lr_md5(t, sizeof(t), iv);
}

static int aead_box_keys(const uint8_t *cmd_key, const uint8_t *authid,
                         const uint8_t *nonce8, const char *ksalt,
                         const char *nsalt, uint8_t *key, uint8_t *nonce)
{
    uint8_t n32[32];
    int rc = lr_kdf16_str(cmd_key, 16, ksalt, authid, 16, nonce8, 8, key);
    if (rc == LR_OK)
        rc = lr_kdf_str(cmd_key, 16, nsalt, authid, 16, nonce8, 8, n32);
    memcpy(nonce, n32, 12);
    return rc;
}

/* ------------------------------------------------------------ encode */

LR_API int lr_req_encode(const struct lr_req *req, const uint8_t *id,
                         uint8_t *out, size_t cap, size_t *outlen)
{
    uint8_t plain[LR_REQ_PLAIN_MAX], cmd_key[16];
    size_t n;
    int rc = plain_build(req, plain, &n);
    if (rc != LR_OK)
        return rc;
    lr_cmd_key(id, cmd_key);
    if (req->mode == LR_MODE_AEAD) {
        uint8_t key[16], nonce[12], lenb[2];
        if (cap < AEAD_PREFIX + n + 16)
            return LR_ETOOBIG;
        if ((rc = lr_authid_make(cmd_key, req->ts, req->auth_rand, out)))
            return rc;
        lr_put_be16(lenb, (uint16_t)n);
        if ((rc = aead_box_keys(cmd_key, out, req->conn_nonce, s_len_key,
                                s_len_nonce, key, nonce)) ||
            (rc = lr_gcm_seal_once(key, nonce, out, 16, lenb, 2, out + 16)))
            return rc;
        memcpy(out + 34, req->conn_nonce, 8);
        if ((rc = aead_box_keys(cmd_key, out, req->conn_nonce, s_key,
                                s_nonce, key, nonce)) ||
            (rc = lr_gcm_seal_once(key, nonce, out, 16, plain, n,
                                   out + AEAD_PREFIX)))
            return rc;
        lr_wipe(key, sizeof(key));
        *outlen = AEAD_PREFIX + n + 16;
    } else if (req->mode == LR_MODE_LEGACY) {
        uint8_t iv[16], alt[16];
        const uint8_t *signer = id;
        struct lr_cfb c;
        if (cap < 16 + n)
            return LR_ETOOBIG;
        if (req->id_index >= 0) {
            uint8_t *chain = malloc(16 * ((size_t)req->id_index + 1));
            if (!chain)
                return LR_ENOMEM;
            lr_alter_ids(id, (uint32_t)req->id_index + 1, chain);
            memcpy(alt, chain + 16 * req->id_index, 16);
            free(chain);
            signer = alt;
        }
        lr_legacy_auth(signer, req->ts, out);
        header_iv(req->ts, iv);
        if ((rc = lr_cfb_init(&c, cmd_key, iv, 1)) != LR_OK)
            return rc;
        rc = lr_cfb_update(&c, plain, n, out + 16);
        lr_cfb_deinit(&c);
        if (rc)
            return rc;
        *outlen = 16 + n;
    } else {
        return LR_EINVAL;
    }
    lr_wipe(plain, sizeof(plain));
    lr_wipe(cmd_key, sizeof(cmd_key));
    return LR_OK;
}

/* ------------------------------------------------------------ decode */

LR_API void lr_req_dec_init(struct lr_req_dec *dec)
{
    memset(dec, 0, sizeof(*dec));
    dec->user = -1;
    dec->id_index = -1;
}

/* Tries the 16 bytes as an AuthID under every user's key. */
static int match_authid(struct lr_users *users, const uint8_t *a, int64_t now,
                        int32_t *user, int64_t *ts)
{
    int rc = LR_ENOUSER;
    for (uint32_t i = 0; i < users->n; i++) {
        uint8_t p[16];
        if (lr_aes_block(&users->v[i].authid, a, p) != LR_OK)
            return LR_ECRYPTO;
        if (lr_crc32(p, 12) != lr_get_be32(p + 12))
            continue;
        int64_t t = (int64_t)lr_get_be64(p);
        if (t < 0 || t - now > LR_TIME_WINDOW || now - t > LR_TIME_WINDOW) {
            rc = LR_ETIME;
            continue;
        }
        *user = (int32_t)i;
        *ts = t;
        return LR_OK;
    }
    return rc;
}

static void taint(struct lr_users *users, const uint8_t *auth)
{
    struct lr_legacy_entry e;
    if (lr_users_legacy_find(users, auth, &e))
        lr_users_legacy_taint(users, &e, 1);
}

static int fail(struct lr_req_dec *dec, int rc)
{
    dec->stage = ST_FAIL;
    dec->need = (uint32_t)-rc; /* remembered for repeated calls */
    return rc;
}

static int finish(struct lr_req_dec *dec, struct lr_users *users,
                  struct lr_replay *replay, const uint8_t *buf,
                  const uint8_t *plain, size_t n, int64_t now,
                  struct lr_req *req)
{
    int rc = plain_parse(plain, n, req);
    if (rc == LR_OK && replay)
        rc = lr_replay_check_session(replay, users->v[dec->user].id,
                                     req->body_key, req->body_iv, now);
    if (rc != LR_OK) {
        if (dec->mode == LR_MODE_LEGACY)
            taint(users, buf);
        return fail(dec, rc);
    }
    req->mode = dec->mode;
    req->user = dec->user;
    req->id_index = dec->id_index;
    req->ts = dec->ts;
    memcpy(req->auth, buf, 16);
    if (dec->mode == LR_MODE_AEAD) {
        /* api.h promises the AEAD randomness "that came in": the nonce is
         * in clear, R4 sits inside the AuthID (BE64 ts || R4 || CRC), which
         * match_authid already opened once; open it again (one AES block)
         * rather than keep it in the caller-visible struct lr_req_dec. */
        uint8_t a[16];
        memcpy(req->conn_nonce, buf + 34, 8);
        if (lr_aes_block(&users->v[dec->user].authid, buf, a) != LR_OK)
            return fail(dec, LR_ECRYPTO);
        memcpy(req->auth_rand, a + 8, 4);
        lr_wipe(a, sizeof(a));
    }
    dec->stage = ST_DONE;
    return LR_OK;
}

LR_API int lr_req_decode(struct lr_req_dec *dec, struct lr_users *users,
                         struct lr_replay *replay, const uint8_t *buf,
                         size_t len, int64_t now, struct lr_req *req,
                         size_t *consumed)
{
    int rc;
    *consumed = 0;
    if (dec->stage == ST_FAIL)
        return -(int)dec->need;
    if (dec->stage == ST_DONE)
        return LR_EINVAL;

    if (dec->stage == ST_AUTH) {
        if (len < 16)
            return LR_AGAIN;
        rc = match_authid(users, buf, now, &dec->user, &dec->ts);
        if (rc == LR_OK) {
            /* recorded at match time, like v2ray: a header that then fails
             * still burns its AuthID */
            if (replay && (rc = lr_replay_check_authid_for(replay, buf,
                                                           users->v[dec->user].id, now)))
                return fail(dec, rc);
            dec->mode = LR_MODE_AEAD;
            dec->stage = ST_AEAD_LEN;
        } else if (rc == LR_ECRYPTO) {
            return fail(dec, rc);
        } else {
            struct lr_legacy_entry e;
            if (!users->legacy || !lr_users_legacy_find(users, buf, &e))
                return fail(dec, rc);
            if (e.tainted)
                return fail(dec, LR_ETAINTED);
            dec->mode = LR_MODE_LEGACY;
            dec->user = e.user;
            dec->id_index = e.id_index;
            dec->ts = e.ts;
            dec->stage = ST_LEGACY;
        }
    }

    if (dec->stage == ST_LEGACY) {
        uint8_t iv[16];
        struct lr_cfb c;
        size_t avail, total = 0;
        if (len < 16) /* a caller must pass a growing prefix */
            return LR_AGAIN;
        avail = len - 16;
        if (avail > LR_REQ_PLAIN_MAX)
            avail = LR_REQ_PLAIN_MAX;
        if (avail <= dec->plain_len)
            return LR_AGAIN;
        header_iv(dec->ts, iv);
        if ((rc = lr_cfb_init(&c, users->v[dec->user].cmd_key, iv, 0)))
            return fail(dec, rc);
        rc = lr_cfb_update(&c, buf + 16, avail, dec->plain);
        lr_cfb_deinit(&c);
        if (rc)
            return fail(dec, rc);
        dec->plain_len = (uint32_t)avail;
        rc = plain_total(dec->plain, avail, &total);
        if (rc == LR_AGAIN || (rc == LR_OK && total > avail))
            return LR_AGAIN;
        if (rc != LR_OK) {
            taint(users, buf);
            return fail(dec, rc);
        }
        rc = finish(dec, users, replay, buf, dec->plain, total, now, req);
        if (rc == LR_OK)
            *consumed = 16 + total;
        return rc;
    }

    const uint8_t *cmd_key = users->v[dec->user].cmd_key;
    uint8_t key[16], nonce[12];
    if (dec->stage == ST_AEAD_LEN) {
        uint8_t lenb[2];
        if (len < AEAD_PREFIX)
            return LR_AGAIN;
        if ((rc = aead_box_keys(cmd_key, buf, buf + 34, s_len_key,
                                s_len_nonce, key, nonce)))
            return fail(dec, rc);
        rc = lr_gcm_open_once(key, nonce, buf, 16, buf + 16, 18, lenb);
        if (rc != LR_OK)
            return fail(dec, rc);
        dec->aead_len = lr_get_be16(lenb);
        if (dec->aead_len > LR_REQ_PLAIN_MAX)
            return fail(dec, LR_ETOOBIG);
        if (dec->aead_len < FIXED_MUX + 4)
            return fail(dec, LR_EINVAL);
        dec->stage = ST_AEAD_BODY;
    }
    /* ST_AEAD_BODY */
    size_t total = AEAD_PREFIX + dec->aead_len + 16;
    if (len < total)
        return LR_AGAIN;
    if ((rc = aead_box_keys(cmd_key, buf, buf + 34, s_key, s_nonce, key,
                            nonce)))
        return fail(dec, rc);
    rc = lr_gcm_open_once(key, nonce, buf, 16, buf + AEAD_PREFIX,
                          dec->aead_len + 16, dec->plain);
    lr_wipe(key, sizeof(key));
    if (rc != LR_OK)
        return fail(dec, rc);
    rc = finish(dec, users, replay, buf, dec->plain, dec->aead_len, now, req);
    if (rc == LR_OK)
        *consumed = total;
    return rc;
}
