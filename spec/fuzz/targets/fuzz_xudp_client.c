/*
 * XUDP as a client (core/inbound/xudp_client.c): the server's side of an
 * XUDP stream (its decrypted response body: Mux.Cool frames) fed to the
 * stream's parser in fuzzer-chosen reads, with datagrams going up between
 * them.  net/conn.c and the dispatch are modelled here: the session is
 * made by lr_dispatch_session, "dialled" to an xudp VMess outbound and
 * connected; its up pipe takes a chosen share of each push (the rest waits
 * in the module's buffer until cli.room).
 *
 * Checked against a reference parse of the server's stream, up to the
 * first frame that ends it (a metaLen outside 4..512, an End of session 0,
 * a Keep of session 0 whose address does not parse):
 * - each Keep frame of session 0 with data reaches the client as one
 *   datagram, in order, exactly its bytes, with the frame's address (or
 *   the first destination when it has none); nothing else does (other
 *   sessions, KeepAlive, New, frames after the end);
 * - the stream is doomed exactly at that first ending frame;
 * - what goes up is a well-formed frame stream: one New frame first
 *   (session 0, UDP, the first destination, 8 GlobalID bytes, the first
 *   datagram), then a Keep frame per datagram with its destination and
 *   bytes, none lost while the buffer had room;
 * - nothing leaks (lr_xudpc_free at the end).
 *
 * Input: seed(2) nup(1) then the server's stream.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "dispatch/dispatch.h"
#include "inbound/inbound.h"
#include "route/route.h"

#define NONE ((size_t)-1)
#define MAXR 4096

struct exp_reply {
    size_t off, len;
    uint8_t has_addr;
    struct lr_dest from;
};

static struct world {
    uint64_t rnd;
    const uint8_t *in;
    size_t len, pos;
    size_t cur_end;
    struct lr_loop lp;
    struct lr_inbound ib;
    struct lr_outbound ob;
    struct lr_conn ctl;
    struct lr_conn *c;
    int relay, doomed, closed;
    size_t end_at;                 /* input offset after the ending frame's meta */
    struct exp_reply exp[MAXR];
    size_t nexp, got;
    struct lr_dest first;
    /* up: what the module pushed, parsed as a server would */
    uint8_t up[80000];
    size_t up_len;
    int saw_new;
    size_t keeps_sent, keeps_seen;
} W;

static uint64_t rnd(void)
{
    W.rnd ^= W.rnd << 13;
    W.rnd ^= W.rnd >> 7;
    W.rnd ^= W.rnd << 17;
    return W.rnd;
}

/* port atyp addr in Mux.Cool numbering: bytes, or 0 if it does not parse */
static size_t ref_addr(const uint8_t *p, size_t n, struct lr_dest *d)
{
    memset(d, 0, sizeof(*d));
    if (n < 3)
        return 0;
    d->port = lr_get_be16(p);
    if (p[2] == 1 && n >= 7) {
        d->atyp = LR_ATYP_IPV4;
        memcpy(d->ip, p + 3, 4);
        return 7;
    }
    if (p[2] == 3 && n >= 19) {
        d->atyp = LR_ATYP_IPV6;
        memcpy(d->ip, p + 3, 16);
        return 19;
    }
    if (p[2] == 2 && n >= 4 && p[3] && n >= 4u + p[3]) {
        d->atyp = LR_ATYP_DOMAIN;
        memcpy(d->host, p + 4, p[3]);
        return 4u + p[3];
    }
    return 0;
}

static void ref_parse(void)
{
    size_t pos = 0;
    W.end_at = NONE;
    while (pos + 2 <= W.len) {
        size_t ml = lr_get_be16(W.in + pos);
        if (ml < 4 || ml > 512) {
            W.end_at = pos + 2;
            return;
        }
        if (pos + 2 + ml > W.len)
            return;
        const uint8_t *m = W.in + pos + 2;
        uint16_t id = lr_get_be16(m);
        uint8_t st = m[2], opt = m[3];
        size_t o = pos + 2 + ml;
        struct exp_reply e;
        memset(&e, 0, sizeof(e));
        if (id == 0 && st == 3) {
            W.end_at = o;
            return;
        }
        if (id == 0 && st == 2 && ml > 4) {
            if (m[4] != 2 || !ref_addr(m + 5, ml - 5, &e.from)) {
                W.end_at = o;
                return;
            }
            e.has_addr = 1;
        }
        if (!(opt & 1)) {
            pos = o;
            continue;
        }
        if (o + 2 > W.len)
            return;
        size_t dl = lr_get_be16(W.in + o);
        if (o + 2 + dl > W.len)
            return;
        if (id == 0 && st == 2 && dl && W.nexp < MAXR) {
            e.off = o + 2;
            e.len = dl;
            W.exp[W.nexp++] = e;
        }
        pos = o + 2 + dl;
    }
}

static void reply(void *ctx, const struct lr_dest *from, const uint8_t *data, size_t len)
{
    FZ_CHECK(ctx == &W && !W.doomed);
    FZ_CHECK(W.got < W.nexp);
    struct exp_reply *e = &W.exp[W.got++];
    FZ_CHECK(e->off + e->len <= W.cur_end);
    FZ_CHECK(len == e->len && memcmp(data, W.in + e->off, len) == 0);
    const struct lr_dest *want = e->has_addr ? &e->from : &W.first;
    FZ_CHECK(from->port == want->port && from->atyp == want->atyp);
    if (want->atyp == LR_ATYP_DOMAIN)
        FZ_CHECK(strcmp(from->host, want->host) == 0);
    else
        FZ_CHECK(memcmp(from->ip, want->ip, want->atyp == LR_ATYP_IPV4 ? 4 : 16) == 0);
}

static void gone(void *ctx)
{
    (void)ctx;
    FZ_CHECK(0); /* the stream is only closed by lr_xudpc_free here */
}

/* the frames the module pushes up, as the server parses them */
static void up_check(void)
{
    size_t p = 0;
    while (p + 2 <= W.up_len) {
        size_t ml = lr_get_be16(W.up + p);
        FZ_CHECK(ml >= 4 && ml <= 512);
        if (p + 2 + ml + 2 > W.up_len)
            break;
        const uint8_t *m = W.up + p + 2;
        size_t dl = lr_get_be16(W.up + p + 2 + ml);
        if (p + 4 + ml + dl > W.up_len)
            break;
        FZ_CHECK(lr_get_be16(m) == 0 && m[3] == 1 && m[4] == 2 && dl > 0);
        struct lr_dest d;
        size_t al = ref_addr(m + 5, ml - 5, &d);
        FZ_CHECK(al > 0);
        if (!W.saw_new) {
            FZ_CHECK(m[2] == 1 && ml == 5 + al + 8);
            FZ_CHECK(d.port == W.first.port && memcmp(d.ip, W.first.ip, 4) == 0);
            W.saw_new = 1;
        } else {
            FZ_CHECK(m[2] == 2 && ml == 5 + al);
            /* datagram k goes to port 1000 + k with k bytes of value k */
            size_t k = ++W.keeps_seen;
            FZ_CHECK(d.port == 1000 + k && dl == k * 37 % 1500 + 1);
            for (size_t i = 0; i < dl; i++)
                FZ_CHECK(W.up[p + 4 + ml + i] == (uint8_t)k);
        }
        p += 4 + ml + dl;
    }
    memmove(W.up, W.up + p, W.up_len - p);
    W.up_len -= p;
}

/* ------------------------------------------------------------ net/conn.c, modelled */

ev_tstamp ev_now(struct ev_loop *loop)
{
    (void)loop;
    return 1.0;
}

size_t lr_conn_push_stream(struct lr_conn *c, const uint8_t *data, size_t len)
{
    FZ_CHECK(c == W.c && W.relay && len > 0);
    size_t k = (rnd() & 1) ? len : rnd() % (len + 1);
    if (k > sizeof(W.up) - W.up_len)
        k = sizeof(W.up) - W.up_len;
    memcpy(W.up + W.up_len, data, k);
    W.up_len += k;
    up_check();
    return k;
}

void lr_conn_doom(struct lr_conn *c, const char *reason)
{
    FZ_CHECK(c == W.c && reason);
    FZ_CHECK(W.end_at != NONE && W.cur_end >= W.end_at);
    W.doomed = 1;
    c->doom = reason;
}

void lr_conn_start_relay(struct lr_conn *c)
{
    FZ_CHECK(c == W.c && !W.relay);
    W.relay = 1;
    c->state = LR_CS_RELAY;
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    (void)reason;
    FZ_CHECK(c == W.c && !W.closed);
    W.closed = 1;
    c->ibops->free(c);
    free(c);
    W.c = NULL;
}

struct lr_conn *lr_dispatch_session(struct lr_conn *parent, const struct lr_ib_ops *ops,
                                    size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    FZ_CHECK(!W.c && parent == &W.ctl);
    struct lr_conn *c = calloc(1, sizeof(*c));
    FZ_CHECK(c);
    c->lp = &W.lp;
    c->ib = &W.ib;
    c->ibops = ops;
    c->cli.fd = c->rem.fd = -1;
    c->cli.dgram = 1;
    c->cli.sink = sink;
    c->user = -1;
    W.c = c;
    return c;
}

void lr_dispatch(struct lr_conn *c)
{
    FZ_CHECK(c == W.c && c->xudp && c->dst.network == LR_NET_UDP);
    c->ob = &W.ob; /* routed; the dial completes below */
}

int32_t lr_route_pick(const struct lr_rule *rules, uint32_t n, int32_t def,
                      const struct lr_route_query *q, int *to_sniffed)
{
    (void)rules; (void)n; (void)q; (void)to_sniffed;
    return def;
}

/* ------------------------------------------------------------ the run */

static struct lr_xudpc *X;
static uint8_t dbuf[3001];

static void send_up(size_t k)
{
    struct lr_dest d;
    memset(&d, 0, sizeof(d));
    d.network = LR_NET_UDP;
    d.atyp = LR_ATYP_IPV4;
    d.ip[0] = 192;
    d.ip[3] = (uint8_t)k;
    d.port = (uint16_t)(1000 + k);
    size_t n = k * 37 % 1500 + 1;
    memset(dbuf, (int)(uint8_t)k, n);
    lr_xudpc_send(X, &d, dbuf, n);
    if (W.c && W.c->cli.room)
        W.c->cli.room(W.c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    memset(&W, 0, sizeof(W));
    W.rnd = ((uint64_t)data[0] << 8 | data[1]) * 0x9E3779B97F4A7C15ULL + 1;
    size_t nup = data[2] % 40;
    W.in = data + 3;
    W.len = size - 3;
    W.ib.tag = "fz";
    W.ib.idle_timeout = 300;
    W.ob.tag = "xudp";
    W.ob.type = LR_OB_VMESS;
    W.ob.xudp = 1;
    W.ctl.lp = &W.lp;
    W.ctl.ib = &W.ib;
    W.ctl.user = -1;
    memset(&W.first, 0, sizeof(W.first));
    W.first.network = LR_NET_UDP;
    W.first.atyp = LR_ATYP_IPV4;
    memcpy(W.first.ip, "\xc0\x00\x02\x01", 4);
    snprintf(W.first.host, sizeof(W.first.host), "192.0.2.1");
    W.first.port = 7000;
    ref_parse();
    struct lr_addr client;
    lr_host_numeric("127.0.0.1", &client);
    lr_addr_set_port(&client, 5000);
    X = lr_xudpc_open(&W.ctl, &W.ob, &client, &W.first, (const uint8_t *)"hello", 5,
                      reply, gone, &W);
    FZ_CHECK(X && W.c && !W.relay);
    W.c->ibops->connected(W.c); /* the VMess connection is up */
    FZ_CHECK(W.relay);
    size_t sent = 0;
    while (W.pos < W.len && !W.doomed) {
        size_t chunk = 1 + rnd() % 2048;
        size_t upto = W.pos + chunk < W.len ? W.pos + chunk : W.len;
        W.cur_end = upto;
        size_t k = W.c->cli.sink(W.c, W.in + W.pos, upto - W.pos);
        FZ_CHECK(k <= upto - W.pos);
        FZ_CHECK(k == upto - W.pos || W.doomed);
        W.pos += k;
        if (sent < nup && !W.doomed)
            send_up(++sent);
    }
    while (sent < nup)
        send_up(++sent);
    /* everything the module still holds goes up once there is room */
    for (int i = 0; i < 1000 && W.c && W.c->cli.room; i++)
        W.c->cli.room(W.c);
    FZ_CHECK(W.saw_new);
    FZ_CHECK(W.keeps_seen == nup); /* 40 datagrams of <= 1500 bytes fit in 64 KiB: none dropped */
    if (W.end_at == NONE) {
        FZ_CHECK(!W.doomed);
        FZ_CHECK(W.got == W.nexp);
    } else {
        FZ_CHECK(W.doomed);
    }
    lr_xudpc_free(X);
    FZ_CHECK(W.closed && !W.c);
    return 0;
}
