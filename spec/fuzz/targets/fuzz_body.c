/*
 * The body stream decoder: lr_body_open and lr_body_open_inplace for every
 * security (including refused values) x option byte x TCP/UDP, fed in
 * fuzzer-chosen read splits the way the relay feeds it (everything
 * received so far from the last consumed byte on).
 *
 * Input: sec(1) opt(1) flags(1) split_seed(1) key(16) iv(16) then
 *   flags & 2 == 0  raw: the bytes a peer sent;
 *   flags & 2 != 0  structured: up to 7 payloads sealed by an encoder with
 *                   the same parameters, optionally the end chunk, then
 *                   mutations, then trailing bytes.  Unmutated, the decoded
 *                   payloads (chunk by chunk), the chunk count and the end
 *                   must match what was sealed.
 * sec & 7: the security byte as on the wire.  flags & 1: UDP; & 4: random
 * (not zero) GlobalPadding bytes from the encoder; & 8: the copying decoder gets a small output buffer
 * (LR_ETOOBIG, then a retry with a full one); & 0x10: response direction
 * (this direction's key/IV derived from the request's; & 0x20 picks the
 * legacy derivation), which the authenticated-length box must not use.
 *
 * flags & 0x40 with AuthenticatedLength and an AEAD security: a peer that
 * knows the keys (the other end always does) seals any 16-bit length in
 * the length box: up to 7 (length, chunk bytes) pairs from the input.
 *
 * The copying and the in-place decoders see the same bytes and splits and
 * must agree on every payload byte and on how the stream ended.  As api.h
 * says, LR_ETOOBIG only means "the copy's buffer is too small" (never
 * with 65535 bytes, never in place) and a retry with room then works.
 */
#include "fuzz_common.h"
#include "vmess/vmess.h"

#define WIRE_MAX (256 * 1024)
#define PAY_MAX (200 * 1000)
#define MAX_CHUNKS 7

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    return 0;
}

struct params {
    uint8_t sec, opt;
    uint32_t flags;
    uint8_t key[16], iv[16], req_key[16], req_iv[16];
};

struct expect {
    int known, end;
    unsigned nchunks;
    size_t len[MAX_CHUNKS];
    size_t total;
    uint64_t chunks;
};

/* What one decoder made of the stream. */
struct result {
    int rc;              /* LR_DONE, an error, or LR_AGAIN: input ran out */
    size_t pos;          /* bytes consumed */
    size_t got;          /* payload bytes */
    unsigned units;      /* successful calls that returned payload */
    size_t unit_len[MAX_CHUNKS];
    uint64_t chunks;
    int raw;             /* an unframed stream (cfb/none without S) */
};

static uint8_t wire[WIRE_MAX], wire_ip[WIRE_MAX];
/* payload never exceeds the bytes consumed, so WIRE_MAX holds it all */
static uint8_t pay[PAY_MAX], out_copy[WIRE_MAX], out_ip[WIRE_MAX];
static uint8_t scratch[LR_CHUNK_MAX];

static int init_body(struct lr_body *b, const struct params *p)
{
    return lr_body_init(b, p->sec, p->opt, p->key, p->iv, p->req_key,
                        p->req_iv, p->flags);
}

static size_t build(struct fz *f, const struct params *p, size_t cap,
                    struct expect *ex)
{
    struct lr_body *enc = lr_body_new();
    FZ_CHECK(enc && init_body(enc, p) == LR_OK);
    memset(ex, 0, sizeof(*ex));
    uint8_t c = fz_u8(f);
    unsigned n = c % (MAX_CHUNKS + 1);
    size_t len = 0, maxp = lr_body_max_payload(enc), o;
    for (unsigned i = 0; i < n; i++) {
        uint16_t r = fz_u16(f);
        size_t pl = (c & 0x80) && i == 0 ? 1 + (size_t)r % 65535
                                         : 1 + (size_t)r % 700;
        if (pl > maxp)
            pl = maxp;
        if (ex->total + pl > PAY_MAX || len + lr_body_max_wire(enc, pl) > cap)
            break;
        fz_bytes(f, pay + ex->total, pl);
        FZ_CHECK(lr_body_seal(enc, pay + ex->total, pl, wire + len, cap - len,
                              &o) == LR_OK);
        FZ_CHECK(o <= lr_body_max_wire(enc, pl));
        len += o;
        ex->len[ex->nchunks++] = pl;
        ex->total += pl;
    }
    if ((c & 0x40) && len + lr_body_max_wire(enc, 0) <= cap) {
        FZ_CHECK(lr_body_seal_end(enc, wire + len, cap - len, &o) == LR_OK);
        ex->end = o > 0;
        len += o;
    }
    ex->chunks = lr_body_chunks(enc);
    lr_body_free(enc);
    uint8_t nm = fz_u8(f);
    unsigned nmut = nm < 96 ? 0 : (nm & 7) + 1;
    len = fz_mutate(f, wire, len, nmut);
    size_t tail;
    const uint8_t *t = fz_take(f, cap - len, &tail);
    memcpy(wire + len, t, tail);
    ex->known = !nmut && !tail;
    return len + tail;
}

/* Sealed length boxes with any value, each followed by any bytes. */
static size_t forge_lengths(struct fz *f, const struct params *p, size_t cap)
{
    uint8_t lk[16], k32[32], nonce[12], v[2];
    struct lr_aead a;
    int chacha = p->sec == LR_SEC_CHACHA20_POLY1305;
    FZ_CHECK(lr_kdf16_str(p->req_key, 16, "auth_len", NULL, 0, NULL, 0, lk) == LR_OK);
    if (chacha) { /* the ChaCha key is MD5(k) || MD5(MD5(k)) */
        lr_md5(lk, 16, k32);
        lr_md5(k32, 16, k32 + 16);
    }
    FZ_CHECK(lr_aead_init(&a, chacha ? LR_AEAD_CHACHA : LR_AEAD_GCM,
                          chacha ? k32 : lk) == LR_OK);
    unsigned n = fz_u8(f) % 8;
    size_t len = 0;
    for (unsigned i = 0; i < n && len + 18 <= cap; i++) {
        lr_put_be16(v, fz_u16(f));
        lr_put_be16(nonce, (uint16_t)i);
        memcpy(nonce + 2, p->req_iv + 2, 10);
        FZ_CHECK(lr_aead_seal(&a, nonce, NULL, 0, v, 2, wire + len) == LR_OK);
        len += 18;
        size_t k = fz_u16(f) % 2048, got;
        if (k > cap - len)
            k = cap - len;
        const uint8_t *b = fz_take(f, k, &got);
        memcpy(wire + len, b, got);
        len += got;
    }
    lr_aead_deinit(&a);
    return len;
}

static void note_unit(struct result *r, size_t n)
{
    if (n && r->units < MAX_CHUNKS)
        r->unit_len[r->units] = n;
    if (n)
        r->units++;
}

static void run(const struct params *p, int inplace, size_t len,
                uint64_t seed, size_t small_cap, struct result *r)
{
    struct lr_body *b = lr_body_new();
    FZ_CHECK(b && init_body(b, p) == LR_OK);
    memset(r, 0, sizeof(*r));
    uint8_t *out = inplace ? out_ip : out_copy;
    size_t avail = 0, limit = 2 * len + 16;
    /* raw streams hand over whatever is there; chunks carry <= 65535 */
    r->raw = lr_body_max_payload(b) == SIZE_MAX;
    size_t unit_max = r->raw ? WIRE_MAX : LR_CHUNK_MAX;
    int rc = LR_AGAIN;
    if (inplace)
        memcpy(wire_ip, wire, len);
    for (size_t it = 0;; it++) {
        FZ_CHECK(it < limit);
        size_t used = 0, olen = 0, off = 0;
        size_t window = avail - r->pos;
        if (inplace) {
            rc = lr_body_open_inplace(b, wire_ip + r->pos, window, &used,
                                      &off, &olen);
            FZ_CHECK(used <= window);
            /* api.h: "LR_ETOOBIG cannot happen" (known: "body-toobig") */
            if (rc == LR_ETOOBIG && !fz_skip_known("body-toobig"))
                fprintf(stderr, "lr_body_open_inplace: LR_ETOOBIG\n");
            FZ_CHECK(rc != LR_ETOOBIG || fz_skip_known("body-toobig"));
            if (rc == LR_OK || rc == LR_DONE) {
                FZ_CHECK(off + olen <= used && olen <= unit_max);
                /* bytes after the chunk are left alone */
                size_t chk = window - used < 64 ? window - used : 64;
                FZ_CHECK(memcmp(wire_ip + r->pos + used, wire + r->pos + used,
                                chk) == 0);
                FZ_CHECK(r->got + olen <= WIRE_MAX);
                memcpy(out + r->got, wire_ip + r->pos + off, olen);
            } else {
                FZ_CHECK(used == 0 && olen == 0);
                if (rc == LR_AGAIN) {
                    size_t chk = window < 64 ? window : 64;
                    FZ_CHECK(memcmp(wire_ip + r->pos, wire + r->pos, chk) == 0);
                }
            }
        } else {
            size_t cap = small_cap ? small_cap : LR_CHUNK_MAX;
            rc = lr_body_open(b, wire + r->pos, window, &used, scratch, cap,
                              &olen);
            if (rc == LR_ETOOBIG && small_cap) {
                FZ_CHECK(used == 0 && olen == 0);
                rc = lr_body_open(b, wire + r->pos, window, &used, scratch,
                                  LR_CHUNK_MAX, &olen);
                /* the first LR_ETOOBIG was not about the buffer after all:
                 * the direction is finished (known: "body-toobig") */
                if (rc == LR_EINVAL) {
                    if (!fz_skip_known("body-toobig"))
                        fprintf(stderr, "LR_ETOOBIG, then LR_EINVAL on the "
                                "retry with a full buffer\n");
                    FZ_CHECK(fz_skip_known("body-toobig"));
                    rc = LR_ETOOBIG;
                }
            }
            /* api.h: a 65535-byte buffer always suffices */
            if (rc == LR_ETOOBIG && !fz_skip_known("body-toobig"))
                fprintf(stderr, "lr_body_open: LR_ETOOBIG with a full buffer\n");
            FZ_CHECK(rc != LR_ETOOBIG || fz_skip_known("body-toobig"));
            FZ_CHECK(used <= window && olen <= unit_max);
            if (rc == LR_OK || rc == LR_DONE) {
                FZ_CHECK(r->got + olen <= WIRE_MAX);
                memcpy(out + r->got, scratch, olen);
            } else
                FZ_CHECK(used == 0 && olen == 0);
        }
        if (rc == LR_OK)
            FZ_CHECK(used > 0);
        if (rc == LR_OK || rc == LR_DONE) {
            r->pos += used;
            r->got += olen;
            note_unit(r, olen);
        }
        if (rc == LR_OK)
            continue;
        if (rc == LR_AGAIN && avail < len) {
            avail += fz_split(&seed, len - avail);
            continue;
        }
        break;
    }
    FZ_CHECK(rc == LR_AGAIN || rc == LR_DONE || rc < 0);
    /* a finished direction stays finished */
    if (rc != LR_AGAIN) {
        size_t used = 1, olen = 1, off = 1;
        int again = inplace
            ? lr_body_open_inplace(b, wire_ip, 0, &used, &off, &olen)
            : lr_body_open(b, wire, 0, &used, scratch, LR_CHUNK_MAX, &olen);
        FZ_CHECK(again == LR_EINVAL && used == 0 && olen == 0);
    }
    r->rc = rc;
    r->chunks = lr_body_chunks(b);
    lr_body_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    struct params p;
    p.sec = fz_u8(&f) & 7;
    p.opt = fz_u8(&f);
    uint8_t fl = fz_u8(&f);
    uint64_t seed = fz_u8(&f) + 1;
    /* zero padding unless asked: inputs replay the same way */
    p.flags = (fl & 1 ? LR_BODY_UDP : 0) | (fl & 4 ? 0 : LR_BODY_ZERO_PADDING);
    fz_bytes(&f, p.req_key, 16);
    fz_bytes(&f, p.req_iv, 16);
    if (fl & 0x10) {
        uint8_t mode = (fl & 0x20) ? LR_MODE_LEGACY : LR_MODE_AEAD;
        FZ_CHECK(lr_resp_keys(mode, p.req_key, p.req_iv, p.key, p.iv) == LR_OK);
    } else {
        memcpy(p.key, p.req_key, 16);
        memcpy(p.iv, p.req_iv, 16);
    }

    /* refused parameters are refused up front, and only those */
    struct lr_body *b = lr_body_new();
    FZ_CHECK(b != NULL);
    int rc = init_body(b, &p);
    int sec_ok = p.sec <= 5 && p.sec != LR_SEC_AUTO;
    int opt_ok = !((p.opt & LR_OPT_GLOBAL_PADDING) &&
                   !(p.opt & LR_OPT_CHUNK_MASKING));
    FZ_CHECK(rc == (!opt_ok ? LR_EOPTION : !sec_ok ? LR_ESECURITY : LR_OK));
    lr_body_free(b);
    if (rc != LR_OK)
        return 0;

    struct expect ex;
    size_t len;
    ex.known = 0;
    if ((fl & 0x40) && (p.opt & LR_OPT_AUTHENTICATED_LENGTH) &&
        (p.sec == LR_SEC_AES128_GCM || p.sec == LR_SEC_CHACHA20_POLY1305)) {
        len = forge_lengths(&f, &p, WIRE_MAX);
    } else if (fl & 2) {
        len = build(&f, &p, WIRE_MAX, &ex);
    } else {
        const uint8_t *q = fz_take(&f, WIRE_MAX, &len);
        memcpy(wire, q, len);
    }

    struct result rcopy, rip;
    size_t small = (fl & 8) ? 1 + (seed * 7) % 64 : 0;
    run(&p, 0, len, seed, small, &rcopy);
    run(&p, 1, len, seed, 0, &rip);
    if (fz_verbose())
        fprintf(stderr, "body: %s sec %d opt 0x%02x flags 0x%02x len %zu -> %d (%s) payload %zu units %u chunks %llu\n",
                (fl & 2) ? "structured" : "raw", p.sec, p.opt, fl, len, rip.rc,
                lr_strerror(rip.rc), rip.got, rip.units,
                (unsigned long long)rip.chunks);
    if (rcopy.rc != rip.rc)
        fprintf(stderr, "copy: %d (%s), in place: %d (%s)\n", rcopy.rc,
                lr_strerror(rcopy.rc), rip.rc, lr_strerror(rip.rc));
    FZ_CHECK(rcopy.rc == rip.rc);
    FZ_CHECK(rcopy.got == rip.got);
    FZ_CHECK(memcmp(out_copy, out_ip, rcopy.got) == 0);
    FZ_CHECK(rcopy.chunks == rip.chunks && rcopy.pos == rip.pos);
    if (!small && !rip.raw) /* raw: the copy is cut at its buffer size */
        FZ_CHECK(rcopy.units == rip.units);

    if (ex.known) {
        FZ_CHECK(rip.got == ex.total);
        FZ_CHECK(memcmp(out_ip, pay, ex.total) == 0);
        FZ_CHECK(rip.pos == len);
        FZ_CHECK(rip.rc == (ex.end ? LR_DONE : LR_AGAIN));
        FZ_CHECK(rip.chunks == ex.chunks);
        if (ex.chunks) { /* framed: one decoded unit per sealed chunk */
            FZ_CHECK(rip.units == ex.nchunks);
            for (unsigned i = 0; i < ex.nchunks; i++)
                FZ_CHECK(rip.unit_len[i] == ex.len[i]);
        }
    }
    return 0;
}
