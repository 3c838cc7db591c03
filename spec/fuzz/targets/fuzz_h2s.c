/*
 * core/stream/grpc.c's lr_h2s: the server side of one HTTP/2 connection
 * carrying gun tunnels, fed whatever a client sends (nghttp2 parses the
 * frames; we see what it hands us: headers, DATA, ends, resets) with its
 * owner modelled here as inbound/front_grpc.c uses it.
 *
 * Input: ctrl(1) seed(2) then the client's bytes.
 *   ctrl & 1: the client preface is put in front (the seeds carry it too).
 *   The bytes go in in fuzzer-chosen splits (seed).  Between them, the
 *   owner acts as the PRNG says: sends bytes on an open tunnel (as its
 *   connection's relay would, the rest offered again later), ends one
 *   (grpc-status 0 or 14), resumes one that did not take everything,
 *   flushes; its output takes all, part or nothing of what it is offered;
 *   a tunnel takes all, part or none of the bytes offered; the owner
 *   refuses some new streams.
 * Checked: no callback names a tunnel after its `closed` or after the
 * owner ended it; stream ids of live tunnels are distinct and odd; no data
 * after a tunnel's eof and no second eof; every byte a tunnel takes is
 * one it was offered (counted), and after the last input, with a friendly
 * owner, everything held is offered and taken; lr_h2s_free frees all
 * (LeakSanitizer).
 */
#include <errno.h>

#include "fuzz_common.h"
#include "stream/grpc.h"

#define NT 64

struct tun {
    int live;            /* between open and closed/end */
    int32_t sid;
    int eof;
    int held;            /* did not take everything offered */
    size_t took;
};

struct owner {
    struct tun t[NT];
    uint64_t rnd;
    int friendly;        /* take everything (the end of the input) */
    int in_cb;
    size_t out_bytes;
};

static struct tun *live_tun(struct owner *o, void *tp)
{
    struct tun *t = tp;
    FZ_CHECK(t >= o->t && t < o->t + NT);
    FZ_CHECK(t->live);
    return t;
}

static void *o_open(void *ow, int32_t sid, const char *ip)
{
    struct owner *o = ow;
    if (ip)
        FZ_CHECK(strlen(ip) < 64);
    FZ_CHECK(sid > 0 && (sid & 1));
    for (int i = 0; i < NT; i++)
        FZ_CHECK(!o->t[i].live || o->t[i].sid != sid);
    if (!o->friendly && (fz_rand(&o->rnd) & 7) == 0)
        return NULL; /* refused (a full session pool) */
    for (int i = 0; i < NT; i++)
        if (!o->t[i].live) {
            memset(&o->t[i], 0, sizeof(o->t[i]));
            o->t[i].live = 1;
            o->t[i].sid = sid;
            return &o->t[i];
        }
    return NULL;
}

static size_t o_data(void *ow, void *tp, const uint8_t *p, size_t n)
{
    struct owner *o = ow;
    struct tun *t = live_tun(o, tp);
    FZ_CHECK(n > 0 && !t->eof);
    volatile uint8_t x = p[0] ^ p[n - 1]; /* readable, all of it */
    (void)x;
    size_t k = n;
    if (!o->friendly) {
        uint64_t r = fz_rand(&o->rnd);
        if ((r & 3) == 0)
            k = 0;
        else if ((r & 3) == 1)
            k = (size_t)((r >> 8) % n);
    }
    if (k < n)
        t->held = 1;
    t->took += k;
    return k;
}

static void o_eof(void *ow, void *tp)
{
    struct owner *o = ow;
    struct tun *t = live_tun(o, tp);
    FZ_CHECK(!t->eof);
    t->eof = 1;
}

static void o_closed(void *ow, void *tp)
{
    struct owner *o = ow;
    struct tun *t = live_tun(o, tp);
    t->live = 0;
}

static size_t o_out(void *ow, const uint8_t *p, size_t n)
{
    struct owner *o = ow;
    FZ_CHECK(n > 0);
    volatile uint8_t x = p[0] ^ p[n - 1];
    (void)x;
    size_t k = n;
    if (!o->friendly) {
        uint64_t r = fz_rand(&o->rnd);
        if ((r & 3) == 0)
            k = 0;
        else if ((r & 3) == 1)
            k = 1 + (size_t)((r >> 8) % n);
    }
    o->out_bytes += k;
    return k;
}

static const struct lr_h2s_ops ops = {
    .open = o_open, .data = o_data, .eof = o_eof, .closed = o_closed, .out = o_out,
};

static struct tun *pick_live(struct owner *o)
{
    int start = (int)(fz_rand(&o->rnd) % NT);
    for (int i = 0; i < NT; i++) {
        struct tun *t = &o->t[(start + i) % NT];
        if (t->live)
            return t;
    }
    return NULL;
}

static void owner_acts(struct owner *o, struct lr_h2s *s)
{
    static const uint8_t payload[40000] = {1};
    int acts = (int)(fz_rand(&o->rnd) % 4);
    for (int a = 0; a < acts; a++) {
        uint64_t r = fz_rand(&o->rnd);
        struct tun *t = pick_live(o);
        switch (r & 3) {
        case 0:
            if (t) {
                size_t n = 1 + (size_t)((r >> 8) % sizeof(payload));
                size_t k = lr_h2s_send(s, t->sid, payload, n);
                FZ_CHECK(k <= n);
            }
            break;
        case 1:
            if (t && ((r >> 8) & 3) == 0) {
                t->live = 0; /* ended: no callback names it after this */
                lr_h2s_end(s, t->sid, (r >> 10) & 1 ? 14 : 0);
            }
            break;
        case 2:
            if (t && t->held) {
                t->held = 0;
                lr_h2s_resume(s, t->sid);
            }
            break;
        default:
            (void)lr_h2s_flush(s);
            break;
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = fz_u16(&f) | 0x20000;
    size_t n;
    const uint8_t *body = fz_take(&f, (size_t)-1, &n);
    struct owner *o = calloc(1, sizeof(*o));
    FZ_CHECK(o);
    o->rnd = seed * 31 + 7;
    struct lr_h2s *s = lr_h2s_new("gun.Tunnel", 8, &ops, o);
    FZ_CHECK(s);
    int broken = 0;
    if (ctrl & 1)
        broken = lr_h2s_input(s, preface, sizeof(preface)) < 0;
    size_t pos = 0;
    while (pos < n && !broken) {
        size_t k = fz_split(&seed, n - pos);
        broken = lr_h2s_input(s, body + pos, k) < 0;
        pos += k;
        if (!broken)
            owner_acts(o, s);
    }
    if (fz_verbose()) {
        int live = 0;
        for (int i = 0; i < NT; i++)
            live += o->t[i].live;
        fprintf(stderr, "h2s: %zu bytes in, %s, %d tunnels live, %zu bytes out\n", n,
                broken ? "broken" : "ok", live, o->out_bytes);
    }
    if (!broken) {
        /* a friendly owner now: what waited is taken, output drains */
        o->friendly = 1;
        for (int i = 0; i < NT; i++)
            if (o->t[i].live && o->t[i].held) {
                o->t[i].held = 0;
                lr_h2s_resume(s, o->t[i].sid);
            }
        for (int i = 0; i < NT; i++)
            FZ_CHECK(!o->t[i].live || !o->t[i].held);
        (void)lr_h2s_flush(s);
        (void)lr_h2s_over(s);
    }
    lr_h2s_free(s);
    free(o);
    return 0;
}
