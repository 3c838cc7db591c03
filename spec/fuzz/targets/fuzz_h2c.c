/*
 * core/stream/grpc.c's lr_h2c: the client side of one HTTP/2 connection
 * carrying many gun tunnels (the luaray outbound's shared connection), fed
 * whatever a server sends, with its owner (outbound/cfront_grpc.c's role)
 * modelled here.
 *
 * Input: ctrl(1) seed(2) then the server's bytes.
 *   ctrl & 1: TunMulti.  The owner opens 1 + (ctrl >> 1) % 8 tunnels first
 *   (streams 1, 3, 5, ...), then the bytes go in in fuzzer-chosen splits;
 *   between them the owner acts as the PRNG says: opens another tunnel,
 *   sends bytes on one (the rest offered again later), ends one's upload,
 *   cancels one (its connection closed), resumes one that did not take
 *   everything, flushes; its output and its tunnels take all, part or
 *   nothing of what they are offered.
 * Checked: no callback names a tunnel after `closed` or after the owner
 * cancelled it; no data after a tunnel's eof and no second eof; a stream
 * id is odd and new; with a friendly owner at the end, every tunnel takes
 * what was held; lr_h2c_free frees all (LeakSanitizer).
 */
#include <errno.h>

#include "fuzz_common.h"
#include "stream/grpc.h"

#define NT 32

struct tun {
    int live;            /* opened and not closed / cancelled */
    int32_t sid;
    int eof;
    int held;
};

struct owner {
    struct tun t[NT];
    uint64_t rnd;
    int friendly;
    int32_t last_sid;
    size_t out_bytes;
};

static struct tun *live_tun(struct owner *o, void *tp)
{
    struct tun *t = tp;
    FZ_CHECK(t >= o->t && t < o->t + NT);
    FZ_CHECK(t->live);
    return t;
}

static size_t o_data(void *ow, void *tp, const uint8_t *p, size_t n)
{
    struct owner *o = ow;
    struct tun *t = live_tun(o, tp);
    FZ_CHECK(n > 0 && !t->eof);
    volatile uint8_t x = p[0] ^ p[n - 1];
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

static const struct lr_h2c_ops ops = {
    .data = o_data, .eof = o_eof, .closed = o_closed, .out = o_out,
};

static void open_one(struct owner *o, struct lr_h2c *c)
{
    for (int i = 0; i < NT; i++)
        if (!o->t[i].live && !o->t[i].sid) {
            int32_t sid = lr_h2c_open(c, &o->t[i]);
            if (sid < 0)
                return;
            FZ_CHECK(sid > o->last_sid && (sid & 1));
            o->last_sid = sid;
            o->t[i].live = 1;
            o->t[i].sid = sid;
            return;
        }
}

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

static void owner_acts(struct owner *o, struct lr_h2c *c)
{
    static const uint8_t payload[40000] = {2};
    int acts = (int)(fz_rand(&o->rnd) % 4);
    for (int a = 0; a < acts; a++) {
        uint64_t r = fz_rand(&o->rnd);
        struct tun *t = pick_live(o);
        switch (r % 6) {
        case 0:
            open_one(o, c);
            break;
        case 1:
            if (t) {
                size_t n = 1 + (size_t)((r >> 8) % sizeof(payload));
                FZ_CHECK(lr_h2c_send(c, t->sid, payload, n) <= n);
            }
            break;
        case 2:
            if (t)
                lr_h2c_end(c, t->sid);
            break;
        case 3:
            if (t && ((r >> 8) & 3) == 0) {
                t->live = 0; /* its connection closed: no callback after */
                lr_h2c_cancel(c, t->sid);
            }
            break;
        case 4:
            if (t && t->held) {
                t->held = 0;
                lr_h2c_resume(c, t->sid);
            }
            break;
        default:
            (void)lr_h2c_flush(c);
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
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = fz_u16(&f) | 0x40000;
    size_t n;
    const uint8_t *body = fz_take(&f, (size_t)-1, &n);
    struct owner *o = calloc(1, sizeof(*o));
    FZ_CHECK(o);
    o->rnd = seed * 13 + 5;
    struct lr_h2c *c = lr_h2c_new("example.test:443", "gun.Tunnel", ctrl & 1, 1, &ops, o);
    FZ_CHECK(c);
    for (int i = 0; i < 1 + (ctrl >> 1) % 8; i++)
        open_one(o, c);
    (void)lr_h2c_flush(c);
    int broken = 0;
    size_t pos = 0;
    while (pos < n && !broken) {
        size_t k = fz_split(&seed, n - pos);
        broken = lr_h2c_input(c, body + pos, k) < 0;
        pos += k;
        if (!broken)
            owner_acts(o, c);
    }
    if (fz_verbose()) {
        int live = 0;
        for (int i = 0; i < NT; i++)
            live += o->t[i].live;
        fprintf(stderr, "h2c: %zu bytes in, %s, %d tunnels live, %zu bytes out\n", n,
                broken ? "broken" : "ok", live, o->out_bytes);
    }
    if (!broken) {
        o->friendly = 1;
        for (int i = 0; i < NT; i++)
            if (o->t[i].live && o->t[i].held) {
                o->t[i].held = 0;
                lr_h2c_resume(c, o->t[i].sid);
            }
        for (int i = 0; i < NT; i++)
            FZ_CHECK(!o->t[i].live || !o->t[i].held);
        (void)lr_h2c_flush(c);
        (void)lr_h2c_usable(c);
        (void)lr_h2c_over(c);
    }
    lr_h2c_free(c);
    free(o);
    return 0;
}
