/*
 * The front stage "grpc" (front.h; design.md 6): gRPC "gun" on a VMess
 * inbound, HTTP/2 with prior knowledge (h2c, or "h2" after TLS).
 *
 * The stage reads the client preface: bytes that are not one (or an end
 * before it) go to the fallback unchanged (a prober or browser speaking
 * HTTP/1 sees the web server).  After the preface the connection is an
 * HTTP/2 session (stream/grpc.c's lr_h2s) that carries many tunnels, and
 * is modelled like Mux.Cool (mux.c): the client connection becomes the
 * parent, relaying its socket (through TLS when there is TLS) to a virtual
 * remote whose sink feeds the session, while the session's output is
 * pushed into the parent's down pipe; each `POST /<service_name>/Tun` (or
 * `/TunMulti`) stream is a session connection (lr_dispatch_session) whose
 * virtual client is that stream, and the VMess inbound runs on it as on
 * a socket: its header, routing, the relay, and a silent drain to the
 * handshake deadline when the header is bad (a tunnel has no fallback).
 *
 * A request on a live session for another path gets what a gRPC server
 * says for a method it lacks (`:status 200`, `grpc-status: 12`), one that
 * is not gRPC (another method or content-type) a plain `:status 404`.
 * A tunnel ends with trailers: `grpc-status: 0` when its connection ended
 * cleanly (or drained), 14 (UNAVAILABLE) on an error, a RST_STREAM when a
 * message was cut.
 *
 * Backpressure: a tunnel's input is offered to its connection
 * (lr_conn_push_stream); what does not fit stays unacknowledged in the
 * session (HTTP/2 flow control stops the client at one stream window)
 * until the connection's room callback resumes it.  A tunnel's output is
 * framed straight from its connection's pipe when the stream window and
 * the parent's down pipe allow; otherwise its pipe waits (blocked) and is
 * kicked when the parent drains or a WINDOW_UPDATE came.
 *
 * The client address: a request's X-Real-IP (else the last entry of its
 * X-Forwarded-For) from a peer in trusted_proxies is the tunnel's src
 * (access log, max_ips, policies); from any other peer it is ignored.
 *
 * Reload: each tunnel runs on the inbound of the same tag in the current
 * generation (its users, rules, timeouts), as a new connection would; the
 * HTTP/2 connection itself stays on the one it began with.
 *
 * Limits: at most the inbound's max_sessions tunnels per connection (the
 * SETTINGS_MAX_CONCURRENT_STREAMS we announce) and its session pool
 * (max_connections sessions per inbound), as Mux.Cool; a stream beyond
 * either is refused with RST_STREAM REFUSED_STREAM.
 */
#include <errno.h>
#include <string.h>

#include "base/log.h"
#include "inbound/front.h"
#include "stream/grpc.h"

static const uint8_t PREFACE[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct gsrv;

struct gtun {
    struct gtun *prev, *next;
    struct gsrv *g;          /* NULL once the parent is gone */
    struct lr_conn *conn;
    int32_t sid;
    uint8_t hs;              /* bytes (or the end) came during the handshake */
    uint8_t held;            /* the session holds bytes it could not take */
    uint8_t blocked;         /* its output waits for the stream or parent */
    uint8_t ended;           /* its stream is over (ended, or reset) */
};

struct gsrv {
    struct lr_conn *parent;
    struct lr_h2s *h2;
    struct gtun *tuns;
    uint32_t ntun;
    uint8_t client_done;
    uint8_t finished;
};

/* ------------------------------------------------------------ tunnels */

static const struct lr_ib_ops *real_ops(struct lr_conn *c)
{
    return lr_inbound_ops(c->ib->type);
}

static size_t tun_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct gtun *t = c->cli.ctx;
    if (!t || !t->g || t->ended)
        return len; /* nobody reads these any more */
    size_t k = lr_h2s_send(t->g->h2, t->sid, data, len);
    if (k < len)
        t->blocked = 1;
    return k;
}

static void tun_sink_end(struct lr_conn *c)
{
    struct gtun *t = c->cli.ctx;
    /* a relay's end of the download is carried by VMess itself (its end
     * chunk); the stream ends with the connection.  A handshake refused
     * or timed out ends it now, as a socket gets its FIN then. */
    if (!t || !t->g || t->ended || c->state == LR_CS_RELAY)
        return;
    t->ended = 1;
    lr_h2s_end(t->g->h2, t->sid, 0);
}

static void tun_room(struct lr_conn *c)
{
    struct gtun *t = c->cli.ctx;
    if (t && t->g && t->held && !t->ended) {
        t->held = 0;
        lr_h2s_resume(t->g->h2, t->sid);
    }
}

static void tun_readable(struct lr_conn *c)
{
    real_ops(c)->readable(c);
}

static void tun_connected(struct lr_conn *c)
{
    real_ops(c)->connected(c);
}

static void tun_dial_failed(struct lr_conn *c, int err)
{
    const struct lr_ib_ops *ops = real_ops(c);
    if (ops->dial_failed)
        ops->dial_failed(c, err);
    else
        lr_conn_close(c, c->reason ? c->reason : "dial failed");
}

static void maybe_finish(struct gsrv *g);

static void tun_free(struct lr_conn *c)
{
    const struct lr_ib_ops *ops = real_ops(c);
    if (ops->free)
        ops->free(c);
    struct gtun *t = c->cli.ctx;
    if (!t)
        return;
    c->cli.ctx = NULL;
    struct gsrv *g = t->g;
    if (g) {
        if (t->prev)
            t->prev->next = t->next;
        else
            g->tuns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        g->ntun--;
        if (!t->ended) {
            /* a clean end, a drained header: 0; anything else: an error */
            int clean = (c->reason && strcmp(c->reason, "done") == 0) ||
                        c->state == LR_CS_DRAIN || c->state == LR_CS_LINGER;
            lr_h2s_end(g->h2, t->sid, clean ? 0 : 14);
        }
        lr_conn_kick(g->parent); /* its output, and maybe its end */
        maybe_finish(g);
    }
    free(t);
}

static const struct lr_ib_ops tun_ops = {
    .readable = tun_readable,
    .connected = tun_connected,
    .dial_failed = tun_dial_failed,
    .free = tun_free,
};

/* ------------------------------------------------------------ session */

static void *srv_open(void *owner, int32_t sid, const char *client_ip)
{
    struct gsrv *g = owner;
    struct lr_conn *p = g->parent;
    if (g->client_done || g->ntun >= p->ib->max_sessions) {
        lr_debug("conn %llu: grpc stream refused: %u open (max_sessions)",
                 (unsigned long long)p->id, g->ntun);
        return NULL;
    }
    /* a tunnel is a new VMess connection: the current generation's users
     * and rules, however long ago its HTTP/2 connection began */
    struct lr_inbound *ib = lr_dispatch_current_ib(p->ib);
    struct gtun *t = calloc(1, sizeof(*t));
    struct lr_conn *c = t ? lr_dispatch_session_of(p, ib, &tun_ops, tun_sink) : NULL;
    if (!c) {
        lr_debug("conn %llu: grpc stream refused: %u sessions on inbound %s",
                 (unsigned long long)p->id, ib->nsessions, ib->tag);
        free(t);
        return NULL;
    }
    t->g = g;
    t->conn = c;
    t->sid = sid;
    /* a proxy in front (nginx's grpc_pass, a CDN) says who the client is:
     * believed from trusted_proxies only */
    struct lr_addr a;
    if (client_ip && lr_front_trusted(ib, &p->peer) && lr_addr_parse(client_ip, 0, &a) == 0)
        c->src = a;
    c->cli.dgram = 0;         /* a stream, not datagrams */
    c->dst.network = LR_NET_TCP;
    c->cli.sink_end = tun_sink_end;
    c->cli.room = tun_room;
    c->cli.ctx = t;
    t->next = g->tuns;
    if (g->tuns)
        g->tuns->prev = t;
    g->tuns = t;
    g->ntun++;
    return t;
}

static size_t srv_data(void *owner, void *tp, const uint8_t *p, size_t n)
{
    struct gtun *t = tp;
    struct lr_conn *c = t->conn;
    if (c->state == LR_CS_DRAIN || c->state == LR_CS_LINGER)
        return n; /* a refused header: read and discarded */
    size_t k = lr_conn_push_stream(c, p, n);
    if (c->state == LR_CS_HANDSHAKE && k)
        t->hs = 1; /* the inbound reads them after this input (after_input) */
    if (k < n)
        t->held = 1;
    return k;
}

static void srv_eof(void *owner, void *tp)
{
    struct gtun *t = tp;
    lr_conn_push_eof(t->conn, 0);
    if (t->conn->state == LR_CS_HANDSHAKE)
        t->hs = 1;
}

static void srv_closed(void *owner, void *tp)
{
    struct gtun *t = tp;
    /* reset by the client (or the session failed): deferred, as we may be
     * inside the session */
    t->ended = 1;
    lr_conn_doom(t->conn, "stream reset");
}

static size_t srv_out(void *owner, const uint8_t *p, size_t n)
{
    struct gsrv *g = owner;
    return lr_conn_push_down(g->parent, p, n);
}

static const struct lr_h2s_ops srv_ops = {
    .open = srv_open,
    .data = srv_data,
    .eof = srv_eof,
    .closed = srv_closed,
    .out = srv_out,
};

/* The client is gone or the session is over: once every tunnel is, the
 * parent ends its output (after what is queued) and closes. */
static void maybe_finish(struct gsrv *g)
{
    if (g->finished || !(g->client_done || lr_h2s_over(g->h2)) || g->ntun)
        return;
    g->finished = 1;
    lr_conn_push_eof(g->parent, 1);
}

/* Output went out or a window opened: tunnels waiting to send try again. */
static void wake(struct gsrv *g)
{
    for (struct gtun *t = g->tuns; t; t = t->next)
        if (t->blocked) {
            t->blocked = 0;
            lr_conn_kick(t->conn);
        }
}

/* After client bytes: the inbound reads what came during handshakes. */
static void after_input(struct gsrv *g)
{
    for (int again = 1; again;) {
        again = 0;
        for (struct gtun *t = g->tuns; t; t = t->next) {
            if (!t->hs)
                continue;
            t->hs = 0;
            struct lr_conn *c = t->conn;
            if (c->state != LR_CS_HANDSHAKE)
                continue;
            c->handoff = 1;
            c->ibops->readable(c); /* may close c (and unlink t) */
            again = 1;
            break;
        }
    }
    wake(g);
    maybe_finish(g);
}

static size_t parent_input(struct lr_conn *p, const uint8_t *data, size_t len)
{
    struct gsrv *g = p->rem.ctx;
    if (g->finished || lr_h2s_over(g->h2))
        return len;
    if (lr_h2s_input(g->h2, data, len) < 0) {
        lr_debug("conn %llu: grpc: not HTTP/2 any more (protocol error or flood)",
                 (unsigned long long)p->id);
        lr_conn_doom(p, "bad http/2");
        return len;
    }
    after_input(g);
    return len;
}

static void parent_client_done(struct lr_conn *p)
{
    struct gsrv *g = p->rem.ctx;
    /* an HTTP/2 client that closes its side is gone: so are its tunnels */
    g->client_done = 1;
    for (struct gtun *t = g->tuns; t; t = t->next)
        lr_conn_doom(t->conn, "client gone");
    maybe_finish(g);
}

static void parent_room(struct lr_conn *p)
{
    struct gsrv *g = p->rem.ctx;
    if (lr_h2s_flush(g->h2) < 0) {
        lr_conn_doom(p, "bad http/2");
        return;
    }
    wake(g);
    maybe_finish(g);
}

static void parent_free(struct lr_conn *p)
{
    struct gsrv *g = p->ob_state;
    if (!g)
        return;
    p->ob_state = NULL;
    p->rem.ctx = NULL;
    while (g->tuns) {
        struct gtun *t = g->tuns;
        g->tuns = t->next;
        t->g = NULL;
        lr_conn_close(t->conn, "grpc closed");
    }
    lr_h2s_free(g->h2);
    free(g);
}

static const struct lr_ob_ops parent_ops = {.free = parent_free};

/* The preface came: c becomes the session's parent and relays. */
static int take_over(struct lr_conn *c)
{
    struct gsrv *g = calloc(1, sizeof(*g));
    const char *svc = c->ib->tp.service_name ? c->ib->tp.service_name : "";
    if (g)
        g->h2 = lr_h2s_new(svc, c->ib->max_sessions, &srv_ops, g);
    if (!g || !g->h2) {
        free(g);
        lr_conn_close(c, "out of memory");
        return LR_FRONT_CLOSED;
    }
    g->parent = c;
    c->ob_state = g;
    c->obops = &parent_ops;
    c->dst.network = LR_NET_TCP;
    c->rem.fd = -1;
    c->rem.sink = parent_input;
    c->rem.sink_end = parent_client_done;
    c->rem.room = parent_room;
    c->rem.ctx = g;
    /* the preface and whatever followed it are the up pipe's first bytes */
    lr_conn_start_relay(c);
    return LR_FRONT_AGAIN; /* c relays now (or is closed): the front is done with it */
}

static int grpc_run(struct lr_conn *c, void **st)
{
    ssize_t n = lr_conn_read_client(c);
    if (n < 0 && n != -ENOBUFS && n != -EAGAIN) {
        lr_conn_close(c, n == -ECONNRESET ? "reset" : "read failed");
        return LR_FRONT_CLOSED;
    }
    /* nothing new is no reason to wait when an earlier stage (a PROXY
     * header) left the preface in up.in already */
    size_t len = c->up.in ? lr_buf_len(c->up.in) : 0;
    if (n == -EAGAIN && len == 0)
        return LR_FRONT_AGAIN;
    size_t k = len < sizeof(PREFACE) ? len : sizeof(PREFACE);
    if (memcmp(lr_buf_head(c->up.in), PREFACE, k) != 0)
        return LR_FRONT_FALLBACK; /* not HTTP/2 */
    if (len < sizeof(PREFACE))
        return n == 0 ? LR_FRONT_FALLBACK : LR_FRONT_AGAIN;
    return take_over(c);
}

const struct lr_front_stage lr_front_grpc_stage = {
    .name = "the grpc transport",
    .run = grpc_run,
};
