/*
 * lr_req_decode (server side, both header modes) against a fixed users
 * table.  Built three times (see the Makefile's fuzzing section):
 *   fuzz_req_aead_1user    FZ_NUSERS=1    FZ_LEGACY=0
 *   fuzz_req_legacy_1user  FZ_NUSERS=1    FZ_LEGACY=1
 *   fuzz_req_1000users     FZ_NUSERS=1000 FZ_LEGACY=1
 * The vectors' user (alterId 4) is the LAST user, so the captured v2ray
 * requests of the seed corpus make the AuthID scan walk every user; the
 * legacy table is refreshed once at T.
 *
 * Input: ctrl(1) skew(1) then
 *   ctrl & 1 == 0  raw: the bytes a client sent;
 *   ctrl & 1 == 1  structured: fields for lr_req_encode (mode, user, id
 *                  index, ts, version, V, option, security, padding, command,
 *                  port, address, keys, randomness), a mutation count and
 *                  mutations, then trailing body bytes.  Unmutated, the
 *                  outcome is predicted exactly and checked.
 *   ctrl & 0x11 == 0x11  forged: a client that knows its own key (any user,
 *                  or anyone with a leaked UUID) authenticates properly and
 *                  sends any plaintext: AEAD with any length L, legacy with
 *                  any bytes through the header CFB; optionally with a
 *                  correct FNV so the field parser is reached.
 * ctrl & 2: no replay state (NULL);  ctrl & 4: replay state already at
 * its cap (1 AuthID and 1 session held).  now = T + (int8)skew.
 *
 * Every input is decoded (A) whole, (B) as a growing prefix one byte at a
 * time up to the decision, and both must agree; (C) an accepted header is
 * replayed and must be refused; a legacy failure after an auth match must
 * have tainted the auth value, and (D) that value must then be refused.
 * The taint is cleared after each input so runs stay independent.
 */
#include "fuzz_common.h"
#include "vmess/vmess.h"

#ifndef FZ_NUSERS
#define FZ_NUSERS 1
#endif
#ifndef FZ_LEGACY
#define FZ_LEGACY 1
#endif
#define FZ_FIXED_ALTER 4
#define FZ_FIXED_USER (FZ_NUSERS - 1)

static struct lr_users *users;
static uint8_t ids[FZ_NUSERS][16];
static uint32_t alters[FZ_NUSERS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    users = lr_users_new();
    FZ_CHECK(users != NULL);
    for (uint32_t i = 0; i < FZ_NUSERS; i++) {
        if (i == FZ_FIXED_USER) {
            memcpy(ids[i], fz_uuid, 16);
            alters[i] = FZ_FIXED_ALTER;
        } else {
            uint8_t seed[20] = "luaray-fuzz-user";
            seed[16] = (uint8_t)(i >> 24);
            seed[17] = (uint8_t)(i >> 16);
            seed[18] = (uint8_t)(i >> 8);
            seed[19] = (uint8_t)i;
            lr_md5(seed, sizeof(seed), ids[i]);
            alters[i] = i % 3;
        }
        FZ_CHECK(lr_users_add(users, ids[i], alters[i]) == (int)i);
    }
    lr_users_set_legacy(users, FZ_LEGACY);
    FZ_CHECK(lr_users_refresh(users, FZ_T) == LR_OK);
    return 0;
}

static const char dom_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._";

/* What an unmutated structured input must decode to. */
struct expect {
    int known;
    int rc;
    size_t hdr_len;
    uint32_t user;
    struct lr_req req;
};

static int sec_ok(uint8_t s)
{
    return s == 0 || s == 1 || s == 3 || s == 4 || s == 5;
}

static int domain_ok(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!memchr(dom_chars, d[i], sizeof(dom_chars) - 1))
            return 0;
    return n > 0;
}

static size_t build(struct fz *f, int64_t now, int replay_on, int full,
                    uint8_t *buf, size_t cap, struct expect *ex)
{
    struct lr_req r;
    memset(&r, 0, sizeof(r));
    uint8_t m = fz_u8(f);
    r.mode = (m & 1) ? LR_MODE_LEGACY : LR_MODE_AEAD;
    uint32_t ui = fz_u16(f) % FZ_NUSERS;
    uint8_t ix = fz_u8(f);
    r.id_index = r.mode == LR_MODE_LEGACY
        ? (int32_t)(ix % (alters[ui] + 2)) - 1 : -1;
    int8_t ts_skew = (int8_t)fz_u8(f);
    if (ts_skew == -128)
        r.ts = -1 - (int64_t)fz_u8(f);             /* negative timestamp */
    else if (ts_skew == 127)
        r.ts = FZ_T + 100000 + fz_u16(f);          /* far future */
    else
        r.ts = FZ_T + ts_skew;
    r.version = fz_u8(f);
    r.v = fz_u8(f);
    r.option = fz_u8(f);
    r.security = fz_u8(f) & 15;
    r.padding_len = fz_u8(f) & 15;
    uint8_t c = fz_u8(f);
    r.command = (c & 0x80) ? (uint8_t)(c & 0x7f) : (uint8_t)(c % 3 + 1);
    r.port = fz_u16(f);
    uint8_t a = fz_u8(f);
    r.atyp = (uint8_t)(a % 3 + 1);
    if (r.atyp == LR_ATYP_IPV4) {
        r.addr_len = 4;
        fz_bytes(f, r.addr, 4);
    } else if (r.atyp == LR_ATYP_IPV6) {
        r.addr_len = 16;
        fz_bytes(f, r.addr, 16);
    } else {
        uint8_t dl = fz_u8(f);
        r.addr_len = dl ? dl : 1;
        fz_bytes(f, r.addr, r.addr_len);
        if (!(a & 0x80))
            for (size_t i = 0; i < r.addr_len; i++)
                r.addr[i] = (uint8_t)dom_chars[r.addr[i] % (sizeof(dom_chars) - 1)];
    }
    fz_bytes(f, r.body_key, 16);
    fz_bytes(f, r.body_iv, 16);
    fz_bytes(f, r.padding, r.padding_len);
    fz_bytes(f, r.auth_rand, 4);
    fz_bytes(f, r.conn_nonce, 8);

    size_t len = 0;
    int rc = lr_req_encode(&r, ids[ui], buf, cap, &len);
    FZ_CHECK(rc == LR_OK);
    FZ_CHECK(len <= LR_REQ_WIRE_MAX);
    uint8_t nm = fz_u8(f);
    unsigned nmut = nm < 96 ? 0 : (nm & 7) + 1;
    size_t hdr = len;
    len = fz_mutate(f, buf, len, nmut);
    /* whatever is left: body bytes after the header */
    size_t tail;
    const uint8_t *t = fz_take(f, cap - len, &tail);
    memcpy(buf + len, t, tail);

    if (nmut)
        return len + tail;
    /* predict the outcome of the unmutated header */
    memset(ex, 0, sizeof(*ex));
    ex->known = 1;
    ex->hdr_len = hdr;
    ex->user = ui;
    ex->req = r;
    int auth_ok;
    if (r.mode == LR_MODE_AEAD)
        auth_ok = r.ts >= 0 && r.ts - now <= 120 && now - r.ts <= 120;
    else
        auth_ok = FZ_LEGACY && r.id_index < (int32_t)alters[ui] &&
                  r.ts >= FZ_T - 120 && r.ts <= FZ_T + 120;
    int mux = r.command == LR_CMD_MUX;
    if (!auth_ok)
        ex->rc = r.mode == LR_MODE_AEAD ? LR_ETIME : LR_ENOUSER;
    else if (r.mode == LR_MODE_AEAD && replay_on && full)
        ex->rc = LR_EFULL;
    else if (!sec_ok(r.security))
        ex->rc = LR_ESECURITY;
    else if ((r.option & LR_OPT_GLOBAL_PADDING) &&
             !(r.option & LR_OPT_CHUNK_MASKING))
        ex->rc = LR_EOPTION;
    else if (r.command != LR_CMD_TCP && r.command != LR_CMD_UDP && !mux)
        ex->rc = LR_ECOMMAND;
    else if (!mux && r.atyp == LR_ATYP_DOMAIN && !domain_ok(r.addr, r.addr_len))
        ex->rc = LR_EADDR;
    else if (replay_on && full)
        ex->rc = LR_EFULL;
    else
        ex->rc = LR_OK;
    return len + tail;
}

/* Where the FNV of a plaintext starting with p[0..n) sits (the decoder's
 * length rules), or 0 when it cannot tell. */
static size_t fnv_end(const uint8_t *p, size_t n)
{
    if (n < 38)
        return 0;
    size_t pad = p[35] >> 4;
    if (p[37] == LR_CMD_MUX)
        return 38 + pad + 4;
    if (n < 42)
        return 0;
    switch (p[40]) {
    case LR_ATYP_IPV4: return 45 + pad + 4;
    case LR_ATYP_IPV6: return 57 + pad + 4;
    case LR_ATYP_DOMAIN: return 42 + (size_t)p[41] + pad + 4;
    default: return 0;
    }
}

static void kdf_box(const uint8_t *cmd_key, const uint8_t *authid,
                    const uint8_t *n8, const char *ks, const char *ns,
                    uint8_t *key, uint8_t *nonce)
{
    uint8_t n32[32];
    FZ_CHECK(lr_kdf16_str(cmd_key, 16, ks, authid, 16, n8, 8, key) == LR_OK);
    FZ_CHECK(lr_kdf_str(cmd_key, 16, ns, authid, 16, n8, 8, n32) == LR_OK);
    memcpy(nonce, n32, 12);
}

static size_t forge(struct fz *f, uint8_t *buf, size_t cap)
{
    static uint8_t plain[1024];
    uint8_t m = fz_u8(f), cmd_key[16], key[16], nonce[12];
    uint32_t ui = fz_u16(f) % FZ_NUSERS;
    uint8_t ix = fz_u8(f);
    int64_t ts = FZ_T + (int8_t)fz_u8(f);
    uint8_t fix = fz_u8(f);
    size_t len;
    lr_cmd_key(ids[ui], cmd_key);
    if (!(m & 1)) {
        size_t l = fz_u16(f) % sizeof(plain);
        uint8_t r4[4], n8[8], lenb[2];
        fz_bytes(f, plain, l);
        fz_bytes(f, r4, 4);
        fz_bytes(f, n8, 8);
        if ((fix & 1) && l >= 4)
            lr_put_be32(plain + l - 4, lr_fnv1a32(plain, l - 4));
        FZ_CHECK(cap >= 42 + l + 16);
        FZ_CHECK(lr_authid_make(cmd_key, ts, r4, buf) == LR_OK);
        lr_put_be16(lenb, (uint16_t)l);
        kdf_box(cmd_key, buf, n8, "VMess Header AEAD Key_Length",
                "VMess Header AEAD Nonce_Length", key, nonce);
        FZ_CHECK(lr_gcm_seal_once(key, nonce, buf, 16, lenb, 2, buf + 16) == LR_OK);
        memcpy(buf + 34, n8, 8);
        kdf_box(cmd_key, buf, n8, "VMess Header AEAD Key",
                "VMess Header AEAD Nonce", key, nonce);
        FZ_CHECK(lr_gcm_seal_once(key, nonce, buf, 16, plain, l, buf + 42) == LR_OK);
        len = 42 + l + 16;
    } else {
        int32_t id_index = (int32_t)(ix % (alters[ui] + 2)) - 1;
        size_t l = fz_u16(f) % (LR_REQ_PLAIN_MAX + 64);
        uint8_t signer[16], iv[16], t[32];
        fz_bytes(f, plain, l);
        size_t e = fnv_end(plain, l);
        if ((fix & 1) && e >= 4 && e <= l)
            lr_put_be32(plain + e - 4, lr_fnv1a32(plain, e - 4));
        memcpy(signer, ids[ui], 16);
        if (id_index >= 0) {
            uint8_t chain[16 * 8];
            FZ_CHECK(id_index < 8);
            lr_alter_ids(ids[ui], (uint32_t)id_index + 1, chain);
            memcpy(signer, chain + 16 * id_index, 16);
        }
        FZ_CHECK(cap >= 16 + l);
        FZ_CHECK(lr_legacy_auth(signer, ts, buf) == LR_OK);
        for (int i = 0; i < 4; i++)
            lr_put_be64(t + 8 * i, (uint64_t)ts);
        lr_md5(t, sizeof(t), iv);
        struct lr_cfb c;
        FZ_CHECK(lr_cfb_init(&c, cmd_key, iv, 1) == LR_OK);
        FZ_CHECK(lr_cfb_update(&c, plain, l, buf + 16) == LR_OK);
        lr_cfb_deinit(&c);
        len = 16 + l;
    }
    size_t tail;
    const uint8_t *tp = fz_take(f, cap - len, &tail);
    memcpy(buf + len, tp, tail);
    return len + tail;
}

static void check_fields(const struct expect *ex, const struct lr_req *d,
                         size_t consumed)
{
    const struct lr_req *r = &ex->req;
    FZ_CHECK(consumed == ex->hdr_len);
    FZ_CHECK(d->mode == r->mode);
    FZ_CHECK(d->version == (r->version ? r->version : 1));
    FZ_CHECK(d->v == r->v);
    FZ_CHECK(d->option == r->option);
    FZ_CHECK(d->security == (r->security ? r->security : LR_SEC_AES128_CFB));
    FZ_CHECK(d->padding_len == r->padding_len);
    FZ_CHECK(memcmp(d->padding, r->padding, r->padding_len) == 0);
    FZ_CHECK(d->command == r->command);
    if (r->command == LR_CMD_MUX) {
        FZ_CHECK(d->atyp == LR_ATYP_NONE && d->port == 0 && d->addr_len == 0);
    } else {
        FZ_CHECK(d->atyp == r->atyp && d->port == r->port);
        FZ_CHECK(d->addr_len == r->addr_len);
        FZ_CHECK(memcmp(d->addr, r->addr, r->addr_len) == 0);
    }
    FZ_CHECK(memcmp(d->body_key, r->body_key, 16) == 0);
    FZ_CHECK(memcmp(d->body_iv, r->body_iv, 16) == 0);
    FZ_CHECK(d->user == (int32_t)ex->user);
    FZ_CHECK(d->ts == r->ts);
    if (r->mode == LR_MODE_AEAD) {
        FZ_CHECK(d->id_index == -1);
        FZ_CHECK(memcmp(d->auth_rand, r->auth_rand, 4) == 0);
        FZ_CHECK(memcmp(d->conn_nonce, r->conn_nonce, 8) == 0);
    } else {
        FZ_CHECK(d->id_index == r->id_index);
    }
}

/* Invariants of any accepted header. */
static void check_ok(const struct lr_req *d, size_t consumed, size_t len)
{
    FZ_CHECK(consumed > 16 && consumed <= len && consumed <= LR_REQ_WIRE_MAX);
    FZ_CHECK(d->mode == LR_MODE_AEAD || d->mode == LR_MODE_LEGACY);
    FZ_CHECK(sec_ok(d->security) && d->security != 0);
    FZ_CHECK(!((d->option & LR_OPT_GLOBAL_PADDING) &&
               !(d->option & LR_OPT_CHUNK_MASKING)));
    FZ_CHECK(d->padding_len <= 15);
    FZ_CHECK(d->user >= 0 && d->user < FZ_NUSERS);
    if (d->mode == LR_MODE_LEGACY)
        FZ_CHECK(d->id_index >= -1 && d->id_index < (int32_t)alters[d->user]);
    switch (d->command) {
    case LR_CMD_MUX:
        FZ_CHECK(d->atyp == LR_ATYP_NONE && d->addr_len == 0);
        break;
    case LR_CMD_TCP:
    case LR_CMD_UDP:
        if (d->atyp == LR_ATYP_IPV4)
            FZ_CHECK(d->addr_len == 4);
        else if (d->atyp == LR_ATYP_IPV6)
            FZ_CHECK(d->addr_len == 16);
        else {
            FZ_CHECK(d->atyp == LR_ATYP_DOMAIN);
            FZ_CHECK(domain_ok(d->addr, d->addr_len));
            FZ_CHECK(d->addr[d->addr_len] == 0);
        }
        break;
    default:
        FZ_CHECK(!"unknown command accepted");
    }
}

static struct lr_replay *replay_new(int full, int64_t now)
{
    struct lr_replay *rp = lr_replay_new(full ? 1 : 64);
    FZ_CHECK(rp != NULL);
    if (full) {
        static const uint8_t z[16];
        FZ_CHECK(lr_replay_check_authid(rp, z, now) == LR_OK);
        FZ_CHECK(lr_replay_check_session(rp, z, z, z, now) == LR_OK);
    }
    return rp;
}

static struct lr_legacy_entry found;

static struct lr_legacy_entry *entry_of(const uint8_t *buf, size_t len)
{
    return len >= 16 && lr_users_legacy_find(users, buf, &found) ? &found : NULL;
}

static void untaint(const uint8_t *buf, size_t len)
{
    struct lr_legacy_entry *e = entry_of(buf, len);
    if (e)
        lr_users_legacy_taint(users, e, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[LR_REQ_WIRE_MAX + 1024];
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    int64_t now = FZ_T + (int8_t)fz_u8(&f);
    int replay_on = !(ctrl & 2), full = (ctrl & 4) != 0;
    struct expect ex;
    size_t len;
    ex.known = 0;
    if ((ctrl & 0x11) == 0x11) {
        len = forge(&f, buf, sizeof(buf));
    } else if (ctrl & 1) {
        len = build(&f, now, replay_on, full, buf, sizeof(buf), &ex);
    } else {
        const uint8_t *p = fz_take(&f, sizeof(buf), &len);
        memcpy(buf, p, len);
    }

    /* (A) everything at once */
    struct lr_req_dec da;
    struct lr_req ra;
    size_t ca = 0;
    struct lr_replay *rpa = replay_on ? replay_new(full, now) : NULL;
    memset(&ra, 0, sizeof(ra));
    lr_req_dec_init(&da);
    int rca = lr_req_decode(&da, users, rpa, buf, len, now, &ra, &ca);
    FZ_CHECK(rca == LR_OK || rca == LR_AGAIN || rca < 0);
    if (rca == LR_AGAIN)
        FZ_CHECK(len < LR_REQ_WIRE_MAX && ca == 0);
    else if (rca == LR_OK)
        check_ok(&ra, ca, len);
    else
        FZ_CHECK(ca == 0);
    if (fz_verbose())
        fprintf(stderr, "req: %s mode %d len %zu -> %d (%s) consumed %zu user %d sec %d opt 0x%02x cmd %d\n",
                (ctrl & 1) ? "structured" : "raw", da.mode, len, rca,
                lr_strerror(rca), ca, ra.user, ra.security, ra.option,
                ra.command);
    if (ex.known) {
        if (rca != ex.rc)
            fprintf(stderr, "expected %d (%s), got %d (%s)\n", ex.rc,
                    lr_strerror(ex.rc), rca, lr_strerror(rca));
        FZ_CHECK(rca == ex.rc);
        if (rca == LR_OK)
            check_fields(&ex, &ra, ca);
    }
    /* a decided decoder keeps its answer */
    if (rca != LR_AGAIN) {
        size_t c2 = 7;
        struct lr_req r2;
        int again = lr_req_decode(&da, users, rpa, buf, len, now, &r2, &c2);
        FZ_CHECK(again == (rca == LR_OK ? LR_EINVAL : rca) && c2 == 0);
    }
    /* every failure after a legacy auth match taints the auth value */
    struct lr_legacy_entry *e = entry_of(buf, len);
    if (rca < 0 && da.mode == LR_MODE_LEGACY && rca != LR_ECRYPTO) {
        FZ_CHECK(e != NULL && e->tainted);
        /* (D) and a tainted value is refused whatever follows it */
        struct lr_req_dec dd;
        struct lr_req rd;
        size_t cd;
        lr_req_dec_init(&dd);
        FZ_CHECK(lr_req_decode(&dd, users, NULL, buf, len, now, &rd, &cd) ==
                 LR_ETAINTED);
    }
    untaint(buf, len);

    /* (B) a growing prefix, one byte at a time, up to the decision */
    struct lr_req_dec db;
    struct lr_req rb;
    size_t cb = 0, lim = len < LR_REQ_WIRE_MAX ? len : LR_REQ_WIRE_MAX;
    int rcb = LR_AGAIN;
    struct lr_replay *rpb = replay_on ? replay_new(full, now) : NULL;
    memset(&rb, 0, sizeof(rb));
    lr_req_dec_init(&db);
    for (size_t l = 1; l <= lim && rcb == LR_AGAIN; l++)
        rcb = lr_req_decode(&db, users, rpb, buf, l, now, &rb, &cb);
    if (rcb != rca)
        fprintf(stderr, "whole: %d (%s), prefix: %d (%s)\n", rca,
                lr_strerror(rca), rcb, lr_strerror(rcb));
    FZ_CHECK(rcb == rca);
    if (rca == LR_OK) {
        FZ_CHECK(cb == ca);
        FZ_CHECK(memcmp(&ra, &rb, sizeof(ra)) == 0);
    }
    untaint(buf, len);

    /* (C) an accepted header, sent again, is a replay */
    if (rca == LR_OK && rpa) {
        struct lr_req_dec dc;
        struct lr_req rc_;
        size_t cc;
        lr_req_dec_init(&dc);
        int rcc = lr_req_decode(&dc, users, rpa, buf, len, now, &rc_, &cc);
        FZ_CHECK(rcc == LR_EREPLAY);
        untaint(buf, len);
    }
    lr_replay_free(rpa);
    lr_replay_free(rpb);
    return 0;
}
