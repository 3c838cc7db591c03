/*
 * Client side of the response: lr_resp_decode in both header modes, fed
 * whole and incrementally (fuzzer-chosen read splits), the response body
 * that follows it (an aes-128-cfb body continues the legacy header's CFB
 * stream), and lr_cmd_switch_decode on the raw bytes.
 *
 * Input: ctrl(1) expect_v(1) split_seed(1) option(1) resp_key(16)
 *        resp_iv(16) then
 *   ctrl & 2 == 0  raw: the bytes a server sent;
 *   ctrl & 2 != 0  structured: V, an optional SwitchAccount command and a
 *                  few body chunks, encoded as a server would, then
 *                  mutations, then trailing bytes.  Unmutated, the decoded
 *                  header and body must equal what was encoded.
 *                  With c & 0x10 the header is forged instead: a hostile
 *                  server knows respKey/IV (they derive from the request's
 *                  keys), so it can seal any length (0..65535) and any
 *                  plaintext (legacy: any plaintext through the CFB); the
 *                  harness does the same (AEAD lengths above 511 only with
 *                  c & 0x40), and with c & 0x20 makes a SwitchAccount
 *                  command's FNV right.
 * ctrl & 1: legacy mode (else AEAD); (ctrl >> 2) & 3: body security
 * (cfb, gcm, chacha, none); ctrl & 0x10: UDP body.
 *
 * After an error the decoder is called again with everything: it must not
 * turn the error into success nor write outside struct lr_resp_dec (a
 * guard area follows it; the writes happen inside OpenSSL, which ASan
 * does not see; spec/fuzz/crashes/fuzz_resp/).
 */
#include "fuzz_common.h"
#include "vmess/vmess.h"

#define BUF_MAX (18 + 65535 + 16 + 4096)

static const uint8_t sec_tbl[4] = {LR_SEC_AES128_CFB, LR_SEC_AES128_GCM,
                                   LR_SEC_CHACHA20_POLY1305, LR_SEC_NONE};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    return 0;
}

struct params {
    uint8_t mode, sec, opt, expect_v;
    uint32_t flags;
    uint8_t key[16], iv[16];
};

static struct lr_body *body_for(const struct params *p)
{
    struct lr_body *b = lr_body_new();
    FZ_CHECK(b != NULL);
    FZ_CHECK(lr_body_init(b, p->sec, p->opt, p->key, p->iv, p->key, p->iv,
                          p->flags) == LR_OK);
    return b;
}

/* The structured part; returns the expected payload length (or 0). */
struct expect {
    int known;
    uint8_t v;
    int has_cmd;
    struct lr_cmd_switch sw;
    size_t hdr_len;
    size_t payload_len;
    int end;
    uint8_t payload[4 * 2048];
};

/* A hostile server's response header: any length (AEAD) and any
 * plaintext; c & 0x20 makes a SwitchAccount command's FNV right. */
static size_t forge(struct fz *f, const struct params *p, uint8_t v,
                    uint8_t c, uint8_t *buf, size_t cap)
{
    static uint8_t plain[65535];
    uint8_t k[16], n32[32], lenb[2];
    uint16_t l = fz_u16(f);
    if (p->mode == LR_MODE_LEGACY)
        l %= 300;
    else if (!(c & 0x40)) /* the whole 16-bit range only when asked */
        l %= 512;
    FZ_CHECK(cap >= 18 + (size_t)l + 16);
    fz_bytes(f, plain, l);
    if (l)
        plain[0] = v;
    if ((c & 0x20) && l >= 8 && plain[2] == 1 && plain[3] >= 4 &&
        4 + (size_t)plain[3] <= l)
        lr_put_be32(plain + 4, lr_fnv1a32(plain + 8, plain[3] - 4u));
    size_t len;
    if (p->mode == LR_MODE_LEGACY) {
        /* the server's response body CFB carries the header */
        struct lr_body *srv = body_for(p);
        struct lr_cfb *cfb = lr_body_cfb(srv, 1);
        FZ_CHECK(cfb != NULL && lr_cfb_update(cfb, plain, l, buf) == LR_OK);
        lr_body_free(srv);
        len = l;
    } else {
        lr_put_be16(lenb, l);
        FZ_CHECK(lr_kdf16_str(p->key, 16, "AEAD Resp Header Len Key", NULL, 0,
                              NULL, 0, k) == LR_OK);
        FZ_CHECK(lr_kdf_str(p->iv, 16, "AEAD Resp Header Len IV", NULL, 0,
                            NULL, 0, n32) == LR_OK);
        FZ_CHECK(lr_gcm_seal_once(k, n32, NULL, 0, lenb, 2, buf) == LR_OK);
        FZ_CHECK(lr_kdf16_str(p->key, 16, "AEAD Resp Header Key", NULL, 0,
                              NULL, 0, k) == LR_OK);
        FZ_CHECK(lr_kdf_str(p->iv, 16, "AEAD Resp Header IV", NULL, 0, NULL,
                            0, n32) == LR_OK);
        FZ_CHECK(lr_gcm_seal_once(k, n32, NULL, 0, plain, l, buf + 18) == LR_OK);
        len = 18 + (size_t)l + 16;
    }
    size_t tail;
    const uint8_t *t = fz_take(f, cap - len, &tail);
    memcpy(buf + len, t, tail);
    return len + tail;
}

static size_t build(struct fz *f, const struct params *p, uint8_t *buf,
                    size_t cap, struct expect *ex)
{
    struct lr_cmd_switch sw;
    memset(&sw, 0, sizeof(sw));
    memset(ex, 0, offsetof(struct expect, payload));
    uint8_t v = fz_u8(f), c = fz_u8(f);
    if (c & 0x10)
        return forge(f, p, v, c, buf, cap);
    if (c & 1) {
        sw.host_len = (uint8_t)(fz_u8(f) % 229);
        fz_bytes(f, sw.host, sw.host_len);
        sw.port = fz_u16(f);
        fz_bytes(f, sw.id, 16);
        sw.alter_ids = fz_u16(f);
        sw.level = fz_u8(f);
        sw.valid_min = fz_u8(f);
    }
    struct lr_body *srv = body_for(p);
    size_t len = 0, n;
    FZ_CHECK(lr_resp_encode(p->mode, p->key, p->iv, srv, v,
                            (c & 1) ? &sw : NULL, buf, cap, &len) == LR_OK);
    ex->hdr_len = len;
    unsigned chunks = (c >> 1) & 3;
    for (unsigned i = 0; i < chunks; i++) {
        size_t pl = 1 + fz_u16(f) % 2048;
        uint8_t *dst = ex->payload + ex->payload_len;
        fz_bytes(f, dst, pl);
        FZ_CHECK(lr_body_seal(srv, dst, pl, buf + len, cap - len, &n) == LR_OK);
        len += n;
        ex->payload_len += pl;
    }
    if (c & 8) {
        FZ_CHECK(lr_body_seal_end(srv, buf + len, cap - len, &n) == LR_OK);
        ex->end = n > 0;
        len += n;
    }
    lr_body_free(srv);
    uint8_t nm = fz_u8(f);
    unsigned nmut = nm < 96 ? 0 : (nm & 7) + 1;
    len = fz_mutate(f, buf, len, nmut);
    size_t tail;
    const uint8_t *t = fz_take(f, cap - len, &tail);
    memcpy(buf + len, t, tail);
    if (!nmut && !tail) {
        ex->known = 1;
        ex->v = v;
        ex->has_cmd = c & 1;
        ex->sw = sw;
    }
    return len + tail;
}

static void check_switch_bytes(const struct lr_cmd_switch *sw,
                               const uint8_t *wire)
{
    uint8_t enc[300];
    size_t el = 0;
    FZ_CHECK(lr_cmd_switch_encode(sw, enc, sizeof(enc), &el) == LR_OK);
    FZ_CHECK(el == 2 + (size_t)wire[1]);
    FZ_CHECK(memcmp(enc, wire, el) == 0);
}

static int decode(const struct params *p, const uint8_t *buf, size_t len,
                  uint64_t seed, int incremental, struct lr_resp *out,
                  size_t *consumed, struct lr_resp_dec *dec,
                  struct lr_body *down)
{
    int rc = LR_AGAIN;
    memset(out, 0, sizeof(*out));
    lr_resp_dec_init(dec);
    if (!incremental)
        return lr_resp_decode(dec, p->mode, p->key, p->iv, down, p->expect_v,
                              buf, len, consumed, out);
    size_t have = 0;
    while (rc == LR_AGAIN && have < len) {
        have += fz_split(&seed, len - have);
        rc = lr_resp_decode(dec, p->mode, p->key, p->iv, down, p->expect_v,
                            buf, have, consumed, out);
        FZ_CHECK(rc != LR_AGAIN || *consumed == 0);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[BUF_MAX];
    /* the whole-input decoder, with a guard area after it */
    static struct {
        struct lr_resp_dec dec;
        uint8_t guard[LR_CHUNK_MAX + 16];
    } ga;
    static uint8_t out[LR_CHUNK_MAX];
    static struct expect ex;
    struct fz f = {data, size};
    struct params p;
    uint8_t ctrl = fz_u8(&f);
    p.mode = (ctrl & 1) ? LR_MODE_LEGACY : LR_MODE_AEAD;
    p.sec = sec_tbl[(ctrl >> 2) & 3];
    p.flags = ((ctrl & 0x10) ? LR_BODY_UDP : 0) | LR_BODY_ZERO_PADDING;
    if (p.mode == LR_MODE_LEGACY)
        p.flags |= LR_BODY_LEGACY_RESP;
    p.expect_v = fz_u8(&f);
    uint64_t seed = fz_u8(&f) + 1;
    p.opt = fz_u8(&f) & 0x1f;
    if ((p.opt & LR_OPT_GLOBAL_PADDING) && !(p.opt & LR_OPT_CHUNK_MASKING))
        p.opt &= (uint8_t)~LR_OPT_GLOBAL_PADDING;
    fz_bytes(&f, p.key, 16);
    fz_bytes(&f, p.iv, 16);

    size_t len;
    ex.known = 0;
    if (ctrl & 2) {
        len = build(&f, &p, buf, sizeof(buf), &ex);
    } else {
        const uint8_t *q = fz_take(&f, sizeof(buf), &len);
        memcpy(buf, q, len);
    }

    /* the command parser alone, on the raw bytes */
    struct lr_cmd_switch sw;
    if (lr_cmd_switch_decode(buf, len, &sw) == LR_OK)
        check_switch_bytes(&sw, buf);

    struct lr_resp ra, rb;
    struct lr_resp_dec db;
#define da ga.dec
    size_t ca = 0, cb = 0;
    struct lr_body *downa = body_for(&p), *downb = body_for(&p);
    int rca = decode(&p, buf, len, seed, 0, &ra, &ca, &da, downa);
    int rcb = decode(&p, buf, len, seed, 1, &rb, &cb, &db, downb);
    if (fz_verbose())
        fprintf(stderr, "resp: %s mode %d sec %d len %zu -> %d (%s) consumed %zu cmd %d switch %d\n",
                (ctrl & 2) ? "structured" : "raw", p.mode, p.sec, len, rca,
                lr_strerror(rca), ca, ra.command, ra.has_switch);
    FZ_CHECK(rca == LR_OK || rca == LR_AGAIN || rca < 0);
    FZ_CHECK(rca == rcb);
    if (rca == LR_OK) {
        FZ_CHECK(ca == cb && memcmp(&ra, &rb, sizeof(ra)) == 0);
        FZ_CHECK(ca <= len && ra.v == p.expect_v);
        if (p.mode == LR_MODE_AEAD)
            FZ_CHECK(ca >= 18 + 4 + 16 && ca <= LR_RESP_WIRE_MAX);
        else
            FZ_CHECK(ca == 4 + (size_t)ra.command_len);
        if (ra.has_switch) {
            FZ_CHECK(ra.command == 1 && ra.sw.host_len <= 228);
            check_switch_bytes(&ra.sw, da.plain + 2);
        }
    } else if (rca == LR_AGAIN) {
        FZ_CHECK(ca == 0 && len < LR_RESP_WIRE_MAX);
    }
    /* an error stays an error, and a retry stays inside the decoder */
    if (rca < 0) {
        struct lr_resp r2;
        size_t c2 = 0;
        memset(ga.guard, 0xcc, sizeof(ga.guard));
        int again = lr_resp_decode(&ga.dec, p.mode, p.key, p.iv, downa,
                                   p.expect_v, buf, len, &c2, &r2);
        static uint8_t cc[sizeof(ga.guard)];
        size_t bad = 0;
        if (!cc[0])
            memset(cc, 0xcc, sizeof(cc));
        if (memcmp(ga.guard, cc, sizeof(cc)) != 0)
            for (size_t i = 0; i < sizeof(ga.guard); i++)
                bad += ga.guard[i] != 0xcc;
        if (bad || again >= 0)
            fprintf(stderr, "retry after %d (%s): %d (%s), %zu bytes written "
                    "past struct lr_resp_dec\n", rca, lr_strerror(rca), again,
                    lr_strerror(again), bad);
        FZ_CHECK(bad == 0);
        FZ_CHECK(again < 0);
    }
    if (ex.known) {
        FZ_CHECK(rca == (ex.v == p.expect_v ? LR_OK : LR_EAUTH));
        if (rca == LR_OK) {
            FZ_CHECK(ca == ex.hdr_len && ra.v == ex.v && ra.option == 0);
            FZ_CHECK(ra.command == (ex.has_cmd ? 1 : 0));
            FZ_CHECK(ra.has_switch == ex.has_cmd);
            if (ex.has_cmd)
                FZ_CHECK(memcmp(&ra.sw, &ex.sw, sizeof(ex.sw)) == 0);
        }
    }

    /* the body after the header, through the same `down` context */
    if (rca == LR_OK) {
        size_t off = ca, got = 0, outlen, used;
        int rc = LR_OK;
        for (unsigned i = 0; i < 4096 && rc == LR_OK && off < len; i++) {
            rc = lr_body_open(downa, buf + off, len - off, &used, out,
                              sizeof(out), &outlen);
            FZ_CHECK(used <= len - off && outlen <= sizeof(out));
            if (ex.known && (rc == LR_OK || rc == LR_DONE)) {
                FZ_CHECK(got + outlen <= ex.payload_len);
                FZ_CHECK(memcmp(out, ex.payload + got, outlen) == 0);
            }
            if (rc == LR_OK)
                FZ_CHECK(used > 0);
            off += used;
            got += outlen;
        }
        if (fz_verbose())
            fprintf(stderr, "resp body: %zu payload bytes, last %d (%s)\n",
                    got, rc, lr_strerror(rc));
        if (ex.known) {
            FZ_CHECK(got == ex.payload_len);
            FZ_CHECK(rc == (ex.end ? LR_DONE : LR_OK));
        }
    }
    lr_body_free(downa);
    lr_body_free(downb);
    return 0;
}
