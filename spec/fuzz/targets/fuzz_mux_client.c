/*
 * Mux.Cool as a client (core/outbound/mux_client.c): the server's side of
 * a carrier (its decrypted response body: Mux.Cool frames) fed to the
 * carrier's parser in fuzzer-chosen reads, with the streams around it.
 * net/conn.c and the VMess outbound are modelled here:
 *
 * - streams (TCP or UDP, fuzzer-chosen) attach before or after the
 *   carrier is up; lr_dispatch_session_of makes the carrier, the VMess
 *   dial is recorded and "connects" at a chosen step;
 * - each stream has a down pipe of chosen capacity, drained at chosen
 *   steps (then its rem.room runs, as the relay's does); the carrier's
 *   up pipe takes a chosen share of each push (the rest waits in the
 *   module's buffer until cli.room);
 * - between reads, streams send bytes (rem.sink), end (rem.sink_end) or
 *   close (lr_muxc_detach, as vmess_free does); a doomed stream closes at
 *   the next step, as lr_conn_doom does.
 *
 * Checked against a reference parse of the server's stream (up to the
 * first bad metaLen):
 * - a TCP stream receives exactly the data of the Keep frames of its id,
 *   in order, nothing after its first End, nothing after it closed; a UDP
 *   stream receives each non-empty Keep frame's data as one datagram;
 * - the first End of an id ends the stream's down direction (push_eof),
 *   or dooms it with the error bit when it had not ended its side; only
 *   after all its data arrived;
 * - the carrier is doomed exactly at the first bad metaLen;
 * - what the module writes to the server is a well-formed frame stream:
 *   one New per stream first (its network, port and address), then Keep
 *   frames (<= 8192 bytes for TCP) with exactly the bytes its sink took,
 *   in order, and at most one End;
 * - liveness: fed everything with room everywhere, every open stream got
 *   all its data; closing the carrier dooms what is left; nothing leaks.
 *
 * Input: ctrl(1) seed(2) then the server's stream.  ctrl & 7: streams - 1;
 * ctrl & 8: attach them after the carrier is up; ctrl & 0x10: streams
 * close and send midway; ctrl & 0x20: small pipes.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "dispatch/dispatch.h"
#include "outbound/outbound.h"

#define MAX_STREAMS 8
#define NONE ((size_t)-1)

struct strm {
    struct lr_conn *c;
    uint16_t id;              /* attach order: 1, 2, ... */
    uint8_t udp, closed, doomed, eof, ended_up, relay;
    size_t cap, down_len;
    /* what it received */
    size_t got;               /* TCP bytes / UDP datagrams */
    /* what its sink took (TCP: bytes of the pattern from offset 0) */
    size_t sent, framed;      /* bytes taken / bytes seen in Keep frames */
    size_t offer;             /* bytes offered by the sink call in progress */
};

static struct world {
    uint64_t rnd;
    uint8_t ctrl;
    const uint8_t *in;
    size_t len, pos;
    size_t cur_end;           /* the end of the read being parsed */
    struct lr_loop lp;
    struct lr_inbound ib;
    struct lr_outbound ob;
    struct lr_conn *parent;
    struct lr_conn *cc;
    int dialed, connected, relay, cc_doomed, cc_kicked;
    struct strm s[MAX_STREAMS];
    int ns;
    /* reference */
    size_t bad_at;
    uint8_t *exp[MAX_STREAMS + 1];   /* expected TCP bytes per id */
    size_t nexp[MAX_STREAMS + 1];
    size_t end_at[MAX_STREAMS + 1];  /* input offset after the first End's meta */
    uint8_t end_err[MAX_STREAMS + 1];
    /* UDP: the expected datagrams per id, as (offset, len) */
    size_t (*dg[MAX_STREAMS + 1])[2];
    size_t ndg[MAX_STREAMS + 1];
    /* the client's frames, as the server parses them */
    uint8_t ob_buf[70000];
    size_t ob_len;
    uint8_t news[MAX_STREAMS + 1], ends[MAX_STREAMS + 1];
} W;

static uint8_t pattern[65536];

static uint64_t rnd(void)
{
    W.rnd ^= W.rnd << 13;
    W.rnd ^= W.rnd >> 7;
    W.rnd ^= W.rnd << 17;
    return W.rnd;
}

static struct strm *strm_of(const struct lr_conn *c)
{
    for (int i = 0; i < W.ns; i++)
        if (W.s[i].c == c && !W.s[i].closed)
            return &W.s[i];
    return NULL;
}

/* ------------------------------------------------------------ reference */

static void ref_parse(void)
{
    size_t pos = 0;
    W.bad_at = NONE;
    for (int i = 0; i <= MAX_STREAMS; i++) {
        W.nexp[i] = W.ndg[i] = 0;
        W.end_at[i] = NONE;
        W.exp[i] = malloc(W.len + 1);
        W.dg[i] = malloc(sizeof(*W.dg[i]) * (W.len / 6 + 1));
        FZ_CHECK(W.exp[i] && W.dg[i]);
    }
    while (pos + 2 <= W.len) {
        size_t ml = lr_get_be16(W.in + pos);
        if (ml < 4 || ml > 512) {
            W.bad_at = pos + 2;
            break;
        }
        if (pos + 2 + ml > W.len)
            break;
        const uint8_t *m = W.in + pos + 2;
        uint16_t id = lr_get_be16(m);
        uint8_t st = m[2], opt = m[3];
        size_t o = pos + 2 + ml;
        if (st == 3 && id >= 1 && id <= MAX_STREAMS && W.end_at[id] == NONE) {
            W.end_at[id] = o;
            W.end_err[id] = opt & 2;
        }
        if (!(opt & 1)) {
            pos = o;
            continue;
        }
        if (o + 2 > W.len)
            break;
        size_t dl = lr_get_be16(W.in + o);
        size_t n = dl;
        if (o + 2 + n > W.len)
            n = W.len - (o + 2);
        if (st == 2 && id >= 1 && id <= MAX_STREAMS && W.end_at[id] == NONE) {
            memcpy(W.exp[id] + W.nexp[id], W.in + o + 2, n);
            W.nexp[id] += n;
            if (dl && n == dl) {
                W.dg[id][W.ndg[id]][0] = o + 2;
                W.dg[id][W.ndg[id]++][1] = dl;
            }
        }
        pos = o + 2 + dl;
    }
}

/* ------------------------------------------------------------ the server's view */

static void out_check(void)
{
    size_t p = 0;
    while (p + 2 <= W.ob_len) {
        size_t ml = lr_get_be16(W.ob_buf + p);
        FZ_CHECK(ml >= 4 && ml <= 4 + 1 + 2 + 1 + 1 + 255);
        if (p + 2 + ml > W.ob_len)
            break;
        const uint8_t *m = W.ob_buf + p + 2;
        uint16_t id = lr_get_be16(m);
        uint8_t st = m[2], opt = m[3];
        FZ_CHECK(id >= 1 && id <= W.ns);
        struct strm *s = &W.s[id - 1];
        size_t o = p + 2 + ml;
        size_t dl = 0;
        if (opt & 1) {
            if (o + 2 > W.ob_len)
                break;
            dl = lr_get_be16(W.ob_buf + o);
            if (o + 2 + dl > W.ob_len)
                break;
        }
        if (st == 1) {
            FZ_CHECK(!W.news[id] && opt == 0 && ml >= 4 + 1 + 2 + 1 + 4);
            FZ_CHECK(m[4] == (s->udp ? 2 : 1));
            FZ_CHECK(lr_get_be16(m + 5) == 1000 + id);
            FZ_CHECK(m[7] == 1 && m[8] == 127 && m[11] == id);
            W.news[id] = 1;
        } else if (st == 2) {
            FZ_CHECK(W.news[id] && !W.ends[id] && opt == 1 && ml == 4 && dl >= 1);
            if (!s->udp) {
                FZ_CHECK(dl <= 8192);
                FZ_CHECK(s->framed + dl <= s->sent + s->offer);
                FZ_CHECK(memcmp(W.ob_buf + o + 2, pattern + s->framed, dl) == 0);
                s->framed += dl;
            }
        } else {
            FZ_CHECK(st == 3 && W.news[id] && !W.ends[id] && ml == 4);
            W.ends[id] = 1;
        }
        p = o + (opt & 1 ? 2 + dl : 0);
    }
    memmove(W.ob_buf, W.ob_buf + p, W.ob_len - p);
    W.ob_len -= p;
}

/* ------------------------------------------------------------ net/conn.c, modelled */

ev_tstamp ev_now(struct ev_loop *loop)
{
    (void)loop;
    return 1.0;
}

size_t lr_conn_push_stream(struct lr_conn *c, const uint8_t *data, size_t len)
{
    FZ_CHECK(c == W.cc && len > 0);
    size_t k = len;
    if ((W.ctrl & 0x20) || (rnd() & 1))
        k = rnd() % (len + 1);
    if (k > sizeof(W.ob_buf) - W.ob_len)
        k = sizeof(W.ob_buf) - W.ob_len;
    memcpy(W.ob_buf + W.ob_len, data, k);
    W.ob_len += k;
    out_check();
    return k;
}

size_t lr_conn_push_down(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct strm *s = strm_of(c);
    FZ_CHECK(s && s->relay && !s->eof && !s->doomed && len > 0);
    if (s->udp) {
        FZ_CHECK(s->got < W.ndg[s->id]);
        size_t off = W.dg[s->id][s->got][0], dl = W.dg[s->id][s->got][1];
        FZ_CHECK(len == dl && memcmp(data, W.in + off, dl) == 0);
        s->got++;
        return len;
    }
    size_t room = s->cap - s->down_len;
    size_t k = len < room ? len : room;
    FZ_CHECK(s->got + k <= W.nexp[s->id]);
    FZ_CHECK(memcmp(data, W.exp[s->id] + s->got, k) == 0);
    s->got += k;
    s->down_len += k;
    return k;
}

void lr_conn_push_eof(struct lr_conn *c, int down)
{
    struct strm *s = strm_of(c);
    FZ_CHECK(s && down == 1 && !s->eof);
    FZ_CHECK(W.end_at[s->id] != NONE && W.cur_end >= W.end_at[s->id]);
    FZ_CHECK(!W.end_err[s->id] || s->ended_up);
    if (!s->udp)
        FZ_CHECK(s->got == W.nexp[s->id]);
    s->eof = 1;
}

void lr_conn_doom(struct lr_conn *c, const char *reason)
{
    if (c == W.cc) {
        if (W.cc_doomed)
            return; /* (its last stream leaving a retired carrier) */
        /* only for a bad metaLen (nothing else fails in this world) */
        FZ_CHECK(W.bad_at != NONE && W.cur_end >= W.bad_at);
        FZ_CHECK(strstr(reason, "bad mux frame") != NULL);
        W.cc_doomed = 1;
        return;
    }
    struct strm *s = strm_of(c);
    FZ_CHECK(s != NULL);
    if (!s->doomed && strcmp(reason, "mux stream failed") == 0) {
        FZ_CHECK(W.end_at[s->id] != NONE && W.end_err[s->id] && !s->ended_up);
        if (!s->udp)
            FZ_CHECK(s->got == W.nexp[s->id]);
    }
    s->doomed = 1;
}

void lr_conn_kick(struct lr_conn *c)
{
    if (c == W.cc)
        W.cc_kicked = 1;
}

void lr_conn_set_deadline(struct lr_conn *c, double seconds)
{
    (void)c; (void)seconds;
}

void lr_conn_start_relay(struct lr_conn *c)
{
    FZ_CHECK(c == W.cc && !W.relay);
    W.relay = 1;
}

void lr_conn_dial_failed(struct lr_conn *c, int err, const char *reason)
{
    (void)err; (void)reason;
    struct strm *s = strm_of(c);
    FZ_CHECK(s && !s->relay);
    s->doomed = 1;
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    (void)c; (void)reason;
    FZ_CHECK(0); /* the carrier never fails its dial here */
}

struct lr_conn *lr_dispatch_session_of(struct lr_conn *parent, struct lr_inbound *ib,
                                       const struct lr_ib_ops *ops,
                                       size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    FZ_CHECK(!W.cc && parent && ib == &W.ib);
    struct lr_conn *c = calloc(1, sizeof(*c));
    FZ_CHECK(c);
    c->lp = &W.lp;
    c->ib = ib;
    c->ibops = ops;
    c->cli.fd = c->rem.fd = -1;
    c->cli.sink = sink;
    c->idle_timeout = 300;
    c->user = -1;
    W.cc = c;
    return c;
}

static void fake_dial(struct lr_conn *c)
{
    FZ_CHECK(c == W.cc && !W.dialed);
    W.dialed = 1;
}

const struct lr_ob_ops lr_vmess_out_ops = {.dial = fake_dial};

/* ------------------------------------------------------------ the world */

static void stream_connected(struct lr_conn *c)
{
    struct strm *s = strm_of(c);
    FZ_CHECK(s && !s->relay && W.connected);
    s->relay = 1;
}

static const struct lr_ib_ops stream_ops = {.connected = stream_connected};

static void attach(int i)
{
    struct strm *s = &W.s[i];
    struct lr_conn *c = calloc(1, sizeof(*c));
    FZ_CHECK(c);
    c->lp = &W.lp;
    c->ib = &W.ib;
    c->ob = &W.ob;
    c->ibops = &stream_ops;
    c->obops = &lr_vmess_out_ops;
    c->cli.fd = c->rem.fd = -1;
    c->user = -1;
    s->c = c;
    s->id = (uint16_t)(i + 1);
    s->udp = (uint8_t)(rnd() % 3 == 0);
    s->cap = W.ctrl & 0x20 ? 1 + rnd() % 64 : 1 + rnd() % 70000;
    c->dst.network = s->udp ? LR_NET_UDP : LR_NET_TCP;
    c->dst.atyp = LR_ATYP_IPV4;
    c->dst.ip[0] = 127;
    c->dst.ip[3] = (uint8_t)s->id;
    c->dst.port = (uint16_t)(1000 + s->id);
    snprintf(c->dst.host, sizeof(c->dst.host), "127.0.0.%u", s->id);
    if (!W.parent)
        W.parent = c;
    W.ns = i + 1;
    FZ_CHECK(lr_muxc_attach(c) == 0);
    FZ_CHECK(W.cc && W.dialed);
}

static void close_stream(struct strm *s)
{
    FZ_CHECK(lr_muxc_detach(s->c) == 1);
    s->closed = 1;
    if (s->c != W.parent)
        free(s->c);
    else
        s->c->rem.ctx = NULL; /* the carrier's parent: freed at the end */
}

static void drain_all(void)
{
    for (int i = 0; i < W.ns; i++) {
        struct strm *s = &W.s[i];
        if (s->closed || !s->relay)
            continue;
        s->down_len = 0;
        if (s->c->rem.room)
            s->c->rem.room(s->c);
    }
}

static void step(int friendly)
{
    for (int i = 0; i < W.ns; i++) {
        struct strm *s = &W.s[i];
        if (s->closed)
            continue;
        if (s->doomed) {
            close_stream(s);
            continue;
        }
        uint64_t r = rnd();
        if (!friendly && (W.ctrl & 0x10) && s->relay && r % 16 == 0) {
            close_stream(s);
            continue;
        }
        if (s->relay && !s->ended_up && (r >> 8) % 4 == 0) {
            size_t n = 1 + (r >> 16) % (s->udp ? 1500 : 20000);
            if (!s->udp && s->sent + n > sizeof(pattern))
                n = sizeof(pattern) - s->sent;
            if (n) {
                s->offer = n;
                size_t k = s->c->rem.sink(s->c, s->udp ? pattern : pattern + s->sent, n);
                s->offer = 0;
                FZ_CHECK(k <= n);
                if (s->udp)
                    FZ_CHECK(k == n);
                else
                    s->sent += k;
                FZ_CHECK(s->udp || s->framed <= s->sent);
            }
        }
        if (!friendly && (W.ctrl & 0x10) && s->relay && !s->ended_up && (r >> 24) % 16 == 0) {
            s->ended_up = 1;
            s->c->rem.sink_end(s->c);
        }
        if (friendly || (r >> 32) % 3 == 0) {
            s->down_len = 0;
            if (s->relay && s->c->rem.room)
                s->c->rem.room(s->c);
        }
    }
    if (W.relay && W.cc->cli.room)
        W.cc->cli.room(W.cc);
}

static void feed(size_t upto)
{
    for (int guard = 0; W.pos < upto && !W.cc_doomed && guard < 100000; guard++) {
        size_t n = upto - W.pos;
        W.cc_kicked = 0;
        W.cur_end = upto;
        size_t k = W.cc->cli.sink(W.cc, W.in + W.pos, n);
        FZ_CHECK(k <= n);
        W.pos += k;
        if (k < n) {
            /* held on a stream: its room kicks us */
            drain_all();
            step(1);
            FZ_CHECK(W.cc_kicked || W.cc_doomed);
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 131 + (i >> 8) * 7 + 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    memset(&W, 0, sizeof(W));
    W.ctrl = data[0];
    W.rnd = ((uint64_t)data[1] << 8 | data[2]) * 0x9E3779B97F4A7C15ULL + 1;
    W.in = data + 3;
    W.len = size - 3;
    W.ib.tag = "fz";
    W.ib.max_sessions = 256;
    W.ob.tag = "mux";
    W.ob.type = LR_OB_VMESS;
    W.ob.mux_concurrency = 255;
    W.ob.connect_timeout = 10;
    ref_parse();
    int n = (W.ctrl & 7) + 1;
    int early = W.ctrl & 8 ? 1 : n;
    for (int i = 0; i < early; i++)
        attach(i);
    W.connected = 1;
    W.cc->ibops->connected(W.cc); /* the VMess connection is up */
    FZ_CHECK(W.relay);
    for (int i = early; i < n; i++)
        attach(i);
    for (int i = 0; i < W.ns; i++)
        FZ_CHECK(W.s[i].relay || W.s[i].doomed);
    /* the server's bytes in chosen reads, the world moving between them */
    while (W.pos < W.len && !W.cc_doomed) {
        size_t chunk = 1 + rnd() % (W.ctrl & 0x20 ? 64 : 4096);
        size_t upto = W.pos + chunk < W.len ? W.pos + chunk : W.len;
        feed(upto);
        step(0);
    }
    /* liveness: room everywhere, everything read */
    drain_all();
    step(1);
    feed(W.len);
    if (!W.cc_doomed) {
        for (int i = 0; i < W.ns; i++) {
            struct strm *s = &W.s[i];
            if (s->closed || s->doomed)
                continue;
            if (s->udp)
                FZ_CHECK(s->got == W.ndg[s->id]);
            else
                FZ_CHECK(s->got == W.nexp[s->id]);
        }
    }
    /* the carrier goes: what is left is doomed, then closes */
    W.cc->ibops->free(W.cc);
    for (int i = 0; i < W.ns; i++)
        if (!W.s[i].closed)
            close_stream(&W.s[i]);
    free(W.cc);
    if (W.parent)
        free(W.parent);
    for (int i = 0; i <= MAX_STREAMS; i++) {
        free(W.exp[i]);
        free(W.dg[i]);
    }
    return 0;
}
