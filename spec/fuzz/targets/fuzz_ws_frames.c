/*
 * core/stream/ws.c's frame layer (lr_ws_new, lr_stream_ws): the peer's
 * frames read through it in fuzzer-chosen pieces, then (optionally) data
 * written through it, over a fake layer below that delivers the input in
 * chosen splits, says -EAGAIN at chosen times and takes writes partly.
 *
 * Input: ctrl(1) seed(2) [pre_n(1)] [raw_out(1)] then the peer's bytes.
 *   ctrl & 1   the layer is the server (the peer's frames must be masked)
 *   ctrl & 2   after reading, write data through the layer, then shut down
 *   ctrl & 4   the first pre_n bytes are handed over as `pre` (bytes read
 *              before the layer existed), the rest comes from below
 *   ctrl & 8   the first raw_out bytes written pass unframed (a 101's tail)
 *   seed       the PRNG for read splits, buffer sizes, -EAGAIN, partial writes
 *
 * Checked against a reference parser written here from RFC 6455 (not from
 * ws.c): the payload the layer returns is exactly the payload of the data
 * frames (text, binary, continuation; unmasked), fragments and control
 * frames in between or not, however the bytes are split; the end is the
 * same (a close frame or the end at a frame boundary: 0; the end inside a
 * frame: -ECONNRESET; any protocol error: -EPROTO, and what was before it
 * still delivered).  What the layer writes is a well-formed frame stream
 * for its role (a client masks, a server does not): pongs carrying a ping's
 * payload, a close 1002/1009 only after a protocol error, nothing after a
 * close; written data comes out as binary frames whose payloads are
 * exactly the bytes write() said it took, each frame and its header within
 * one 16 KiB record, and a write the layer below refused (-EAGAIN) is
 * offered again with the same bytes (OpenSSL's retry rule).
 */
#include <errno.h>

#include "fuzz_common.h"
#include "stream/ws.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* ------------------------------------------------------- reference parse */

enum { END_CLEAN, END_CLOSE, END_CUT, END_ERR };

struct ref {
    uint8_t *pay;               /* data payload, unmasked, in order */
    size_t plen;
    int end;
    /* the pings' payloads (a pong must carry one of them) */
    uint8_t ping[64][125];
    uint8_t ping_len[64];
    size_t nping;
};

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void ref_parse(const uint8_t *p, size_t n, int server, struct ref *r)
{
    size_t i = 0;
    int msg = 0;
    r->plen = 0;
    r->nping = 0;
    for (;;) {
        if (i == n) {
            r->end = END_CLEAN;
            return;
        }
        size_t left = n - i;
        if (left < 2) {
            r->end = END_CUT;
            return;
        }
        int fin = p[i] >> 7, rsv = (p[i] >> 4) & 7, op = p[i] & 15;
        int masked = p[i + 1] >> 7;
        uint64_t len = p[i + 1] & 127;
        size_t hl = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (masked ? 4 : 0);
        if (left < hl) {
            r->end = END_CUT;
            return;
        }
        if (len == 126)
            len = be(p + i + 2, 2);
        else if (len == 127)
            len = be(p + i + 2, 8);
        const uint8_t *key = masked ? p + i + hl - 4 : NULL;
        int ctl = op >= 8;
        if (rsv || masked != server || (len >> 63) ||
            (op == 0 && !msg) || ((op == 1 || op == 2) && msg) ||
            (op > 2 && op < 8) || op > 10 || (ctl && (!fin || len > 125)) ||
            (!ctl && len > LR_WS_FRAME_MAX)) {
            r->end = END_ERR;
            return;
        }
        i += hl;
        size_t avail = n - i < len ? n - i : (size_t)len;
        if (!ctl) {
            for (size_t k = 0; k < avail; k++)
                r->pay[r->plen++] = p[i + k] ^ (key ? key[k % 4] : 0);
            if (avail < len) {
                r->end = END_CUT;
                return;
            }
            msg = !fin;
        } else {
            if (avail < len) {
                r->end = END_CUT;
                return;
            }
            if (op == 9 && r->nping < 64) {
                for (size_t k = 0; k < len; k++)
                    r->ping[r->nping][k] = p[i + k] ^ (key ? key[k % 4] : 0);
                r->ping_len[r->nping++] = (uint8_t)len;
            }
            if (op == 8) {
                r->end = len == 1 ? END_ERR : END_CLOSE;
                return;
            }
        }
        i += (size_t)len;
    }
}

/* ------------------------------------------------------- the fake below */

struct fake {
    struct lr_stream s;
    const uint8_t *in;
    size_t in_len, in_off;
    uint64_t rng;
    uint8_t *out;
    size_t out_len, out_cap;
    /* the last write refused with -EAGAIN: must come again unchanged */
    uint8_t *refused;
    size_t refused_len;
    int refused_set;
    int shut;
};

static ssize_t fake_read(struct lr_stream *l, void *buf, size_t n)
{
    struct fake *f = (struct fake *)l;
    FZ_CHECK(n > 0);
    if ((fz_rand(&f->rng) & 7) == 0)
        return -EAGAIN;
    if (f->in_off == f->in_len)
        return 0;
    size_t k = fz_split(&f->rng, f->in_len - f->in_off);
    if (k > n)
        k = n;
    memcpy(buf, f->in + f->in_off, k);
    f->in_off += k;
    return (ssize_t)k;
}

static ssize_t fake_write(struct lr_stream *l, const void *buf, size_t n)
{
    struct fake *f = (struct fake *)l;
    FZ_CHECK(n > 0 && !f->shut);
    if (f->refused_set) {
        FZ_CHECK(n == f->refused_len && memcmp(buf, f->refused, n) == 0);
        f->refused_set = 0;
    }
    uint64_t r = fz_rand(&f->rng);
    if ((r & 7) == 0 || f->out_len + n > f->out_cap) {
        if (f->out_len + n > f->out_cap)
            return -EPIPE; /* the test's own bound */
        free(f->refused);
        f->refused = malloc(n);
        FZ_CHECK(f->refused);
        memcpy(f->refused, buf, n);
        f->refused_len = n;
        f->refused_set = 1;
        return -EAGAIN;
    }
    size_t k = (r >> 8) & 1 ? n : 1 + (size_t)((r >> 16) % n);
    memcpy(f->out + f->out_len, buf, k);
    f->out_len += k;
    return (ssize_t)k;
}

static void fake_shutdown(struct lr_stream *l)
{
    ((struct fake *)l)->shut = 1;
}

static const struct lr_stream_ops fake_ops = {
    .name = "fake", .read = fake_read, .write = fake_write, .shutdown = fake_shutdown,
};

/* ------------------------------------------------- what the layer wrote */

/* Parses the layer's output as frames of role `server`; data payloads go
 * to *data.  Returns the number of close frames; *partial: the output
 * ends inside a frame. */
static int check_output(const uint8_t *o, size_t n, int server, const struct ref *r,
                        uint8_t *data, size_t *dlen, uint16_t *close_code, int *partial)
{
    size_t i = 0;
    int closes = 0;
    *dlen = 0;
    *partial = 0;
    while (i < n) {
        FZ_CHECK(closes == 0); /* nothing after a close */
        if (n - i < 2) {
            *partial = 1;
            return closes;
        }
        uint8_t b0 = o[i], b1 = o[i + 1];
        FZ_CHECK((b0 & 0xf0) == 0x80); /* FIN, no RSV: we never fragment */
        FZ_CHECK(!(b1 & 0x80) == !!server);
        uint64_t len = b1 & 127;
        size_t hl = 2 + (len == 126 ? 2 : 0) + (server ? 0 : 4);
        FZ_CHECK(len != 127);
        if (n - i < hl) {
            *partial = 1;
            return closes;
        }
        if (len == 126) {
            len = be(o + i + 2, 2);
            FZ_CHECK(len >= 126); /* the shortest form */
        }
        const uint8_t *key = server ? NULL : o + i + hl - 4;
        if (n - i - hl < len) {
            *partial = 1;
            return closes;
        }
        const uint8_t *pl = o + i + hl;
        int op = b0 & 15;
        if (op == 2) {
            FZ_CHECK(hl + len <= 16384); /* one frame, one record */
            for (size_t k = 0; k < len; k++)
                data[(*dlen)++] = pl[k] ^ (key ? key[k % 4] : 0);
        } else if (op == 10) {
            uint8_t u[125];
            FZ_CHECK(len <= 125);
            for (size_t k = 0; k < len; k++)
                u[k] = pl[k] ^ (key ? key[k % 4] : 0);
            int found = r->nping == 64; /* more pings than we recorded */
            for (size_t q = 0; q < r->nping && !found; q++)
                found = r->ping_len[q] == len && memcmp(r->ping[q], u, len) == 0;
            FZ_CHECK(found);
        } else {
            FZ_CHECK(op == 8 && len == 2);
            *close_code = (uint16_t)((pl[0] ^ (key ? key[0] : 0)) << 8 |
                                     (pl[1] ^ (key ? key[1] : 0)));
            closes++;
        }
        i += hl + (size_t)len;
    }
    return closes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = fz_u16(&f) + 1;
    int server = ctrl & 1;
    size_t pre_n = (ctrl & 4) ? fz_u8(&f) : 0;
    uint32_t raw_out = (ctrl & 8) ? fz_u8(&f) : 0;
    size_t n;
    const uint8_t *p = fz_take(&f, (size_t)-1, &n);
    if (pre_n > n)
        pre_n = n;

    static struct ref r;
    r.pay = malloc(n + 1);
    FZ_CHECK(r.pay);
    ref_parse(p, n, server, &r);

    struct fake lo;
    memset(&lo, 0, sizeof(lo));
    lo.s.ops = &fake_ops;
    lo.s.fd = -1;
    lo.in = p + pre_n;
    lo.in_len = n - pre_n;
    lo.rng = seed;
    lo.out_cap = 1 << 20;
    lo.out = malloc(lo.out_cap);
    FZ_CHECK(lo.out);

    struct lr_stream *l = lr_ws_new(server, p, pre_n, raw_out);
    FZ_CHECK(l);
    l->lower = &lo.s;
    l->fd = -1;

    /* read until the end, in buffers of chosen sizes */
    uint8_t *buf = malloc(70000), *got = malloc(n + 1);
    FZ_CHECK(buf && got);
    size_t glen = 0;
    ssize_t last = -EAGAIN;
    for (size_t it = 0; it < 8 * n + 1000 && last != 0 && (last > 0 || last == -EAGAIN); it++) {
        size_t want = 1 + fz_split(&lo.rng, 69999);
        last = l->ops->read(l, buf, want);
        FZ_CHECK(last <= (ssize_t)want);
        if (last > 0) {
            FZ_CHECK(glen + (size_t)last <= r.plen);
            FZ_CHECK(memcmp(buf, r.pay + glen, (size_t)last) == 0);
            glen += (size_t)last;
        }
    }
    FZ_CHECK(glen == r.plen);
    switch (r.end) {
    case END_CLEAN:
    case END_CLOSE: FZ_CHECK(last == 0); break;
    case END_CUT: FZ_CHECK(last == -ECONNRESET); break;
    default: FZ_CHECK(last == -EPROTO); break;
    }
    /* the end is sticky */
    FZ_CHECK(l->ops->read(l, buf, 100) == last);
    FZ_CHECK(l->ops->pending(l) == 0);
    if (fz_verbose())
        fprintf(stderr, "ws %s: %zu bytes -> %zu payload, end %d (%zd)\n",
                server ? "server" : "client", n, glen, r.end, last);

    /* write: chosen pieces of a pattern, each offered until taken */
    size_t wlen = 0;
    uint8_t *wdata = malloc(1 << 18);
    FZ_CHECK(wdata);
    int wfail = 0;
    if (ctrl & 2) {
        size_t total = fz_rand(&lo.rng) % 65536;
        for (size_t k = 0; k < total; k++)
            wdata[k] = (uint8_t)(k * 31 + (k >> 8));
        for (size_t it = 0; it < 100000 && wlen < total && !wfail; it++) {
            uint64_t pr = fz_rand(&lo.rng);
            size_t piece = (pr & 3) ? 1 + (size_t)((pr >> 8) % 40000) : fz_split(&lo.rng, 64);
            if (piece > total - wlen)
                piece = total - wlen;
            ssize_t w = l->ops->write(l, wdata + wlen, piece);
            FZ_CHECK(w <= (ssize_t)piece);
            if (w > 0) {
                wlen += (size_t)w;
            } else if (w < 0 && w != -EAGAIN) {
                /* after a protocol error the layer sent its close: no
                 * data after it; or the test's own output bound */
                FZ_CHECK(w == -EPIPE);
                wfail = 1;
            } else if (w == -EAGAIN) {
                /* offered again as it was: the next write must repeat it */
                ssize_t w2;
                int tries = 0;
                do {
                    w2 = l->ops->write(l, wdata + wlen, piece);
                } while (w2 == -EAGAIN && ++tries < 64);
                if (w2 > 0)
                    wlen += (size_t)w2;
                else if (w2 < 0 && w2 != -EAGAIN)
                    wfail = 1;
            }
        }
        if (r.end == END_ERR)
            FZ_CHECK(wlen <= raw_out); /* nothing framed after its close */
        l->ops->shutdown(l);
        FZ_CHECK(!lo.shut); /* no half-close below a WebSocket */
    }

    /* what went out: the raw part, then frames */
    size_t raw = lo.out_len < raw_out ? lo.out_len : raw_out;
    if (ctrl & 2) {
        size_t rawn = wlen < raw_out ? wlen : raw_out;
        FZ_CHECK(raw >= rawn && memcmp(lo.out, wdata, rawn) == 0);
    } else {
        FZ_CHECK(raw == 0);
        raw = 0;
    }
    uint8_t *odata = malloc(lo.out_len + 1);
    FZ_CHECK(odata);
    size_t olen = 0;
    uint16_t code = 0;
    int partial = 0;
    int closes = check_output(lo.out + raw, lo.out_len - raw, server, &r, odata, &olen,
                              &code, &partial);
    if (closes) {
        if (!(ctrl & 2))
            FZ_CHECK(r.end == END_ERR);
        if (r.end == END_ERR && !(ctrl & 2))
            FZ_CHECK(code == 1002 || code == 1009);
        else
            FZ_CHECK(code == 1000 || code == 1002 || code == 1009);
        if (code != 1000)
            FZ_CHECK(r.end == END_ERR);
    }
    if (ctrl & 2) {
        size_t framed = wlen > raw_out ? wlen - raw_out : 0;
        /* every byte write() took is in a frame that went out whole; a
         * frame half out at the end may hold a few more it has not said */
        if (!partial)
            FZ_CHECK(olen == framed);
        FZ_CHECK(olen <= framed || partial);
        FZ_CHECK(memcmp(odata, wdata + (wlen < raw_out ? wlen : raw_out), olen < framed ? olen : framed) == 0);
    } else {
        FZ_CHECK(olen == 0);
    }
    l->ops->free(l);
    free(odata);
    free(wdata);
    free(buf);
    free(got);
    free(lo.out);
    free(lo.refused);
    free(r.pay);
    return 0;
}
