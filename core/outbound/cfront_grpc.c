/*
 * The outbound front stage "grpc" (front.h; design.md 6): a gun tunnel to
 * the server, `POST /<service_name>/Tun` (`/TunMulti` with multi), as the
 * top layer of the remote side (stream/grpc.c's client layer) over the
 * socket or TLS.  The stage sends the preface, SETTINGS and the request
 * headers and is done: the relay's first write (the VMess request header
 * with the first payload) goes out as DATA right behind them, and the
 * server's answer (a refusal: a status other than 200, or grpc-status
 * other than 0) ends the relay as a reset.
 *
 * First version: one HTTP/2 connection per tunnel (per VMess connection);
 * no connection is shared by several tunnels yet.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "outbound/front.h"
#include "stream/grpc.h"

static const struct lr_ob_ops car_ob_ops;

static int grpc_run(struct lr_conn *c, void **st, int *want)
{
    struct lr_stream *l = *st;
    if (c->obops == &car_ob_ops)
        return LR_FRONT_DONE; /* a shared connection: its HTTP/2 is lr_h2c's */
    if (!l) {
        const struct lr_outbound *ob = c->ob;
        const char *host = ob->tls.server_name ? ob->tls.server_name : ob->server_host;
        char auth[300];
        int v6 = strchr(host, ':') != NULL;
        snprintf(auth, sizeof(auth), "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
                 ob->server_port);
        l = lr_gunc_new(auth, ob->tp.service_name ? ob->tp.service_name : "",
                        ob->tp.multi, ob->tls.on);
        if (!l) {
            lr_conn_dial_failed(c, -ENOMEM, "out of memory");
            return LR_FRONT_CLOSED;
        }
        lr_side_push(&c->rem, l); /* the side owns it from here */
        *st = l;
    }
    int rc = lr_gunc_start(l);
    if (rc < 0) {
        snprintf(c->fail_detail, sizeof(c->fail_detail), "grpc: %s", strerror(-rc));
        return -2; /* the transport handshake failed */
    }
    if (rc == 0) {
        *want = LR_STREAM_WANT_WRITE;
        return LR_FRONT_AGAIN;
    }
    return LR_FRONT_DONE;
}

const struct lr_cfront_stage lr_cfront_grpc_stage = {
    .name = "the grpc transport",
    .run = grpc_run,
};

/* ------------------------------------------------------------ shared connection
 *
 * The VMess connections of a gRPC outbound share HTTP/2 connections to the
 * server, one tunnel (stream) each, as gRPC clients do: the carrier is a
 * connection of its own (a session of the first tunnel's inbound, so the
 * access log and the counts see it), dialled to the server (with TLS when
 * the outbound has it), whose virtual client is the HTTP/2 client session
 * (stream/grpc.c's lr_h2c): the server's bytes go to it, its output is
 * pushed up to the socket.  A tunnel's remote side is virtual: what its
 * relay sends (the VMess request and body) becomes DATA on its stream,
 * what the server sends for it is pushed into its down pipe, with the
 * same flow control as the server side (DATA acknowledged once taken).
 * The outbound's carrier takes tunnels until it is full (LR_H2C_STREAMS),
 * got a GOAWAY or failed; then the next tunnel opens another.  A carrier
 * without tunnels closes after CARRIER_IDLE seconds; when it fails, its
 * tunnels are closed (waiting ones as a failed dial).
 */

#include "base/log.h"
#include "dispatch/dispatch.h"

#define CARRIER_IDLE 30.0

struct gcar;

struct ctun {
    struct ctun *prev, *next;
    struct gcar *car;        /* NULL once the carrier is gone */
    struct lr_conn *c;
    int32_t sid;             /* 0: waiting for the carrier */
    uint8_t held, blocked, ended;
    uint8_t done;            /* the server ended it cleanly */
};

struct gcar {
    struct lr_conn *cc;
    struct lr_outbound *ob;
    struct lr_h2c *h2;       /* once connected */
    struct ctun *tuns;
    uint32_t ntun;
    double idle_timeout;     /* the carrier's with tunnels */
};

static void car_idle_check(struct gcar *g)
{
    double idle = g->idle_timeout < CARRIER_IDLE ? g->idle_timeout : CARRIER_IDLE;
    g->cc->idle_timeout = g->ntun ? g->idle_timeout : idle;
    /* its last tunnel went: the idle timer counts from now, not from
     * whenever the tunnels' timer was set */
    if (!g->ntun && g->cc->state == LR_CS_RELAY)
        lr_conn_set_deadline(g->cc, idle);
}

/* No more tunnels for it (GOAWAY, broken, full): the next one opens another. */
static void car_retire(struct gcar *g)
{
    if (g->ob && g->ob->grpc_carrier == g)
        g->ob->grpc_carrier = NULL;
}

/* --- tunnels: a VMess connection's virtual remote side */

static size_t ctun_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct ctun *t = c->rem.ctx;
    if (!t || !t->car || !t->car->h2 || t->ended)
        return len;
    size_t k = lr_h2c_send(t->car->h2, t->sid, data, len);
    if (k < len)
        t->blocked = 1;
    return k;
}

static void ctun_sink_end(struct lr_conn *c)
{
    struct ctun *t = c->rem.ctx;
    if (t && t->car && t->car->h2 && !t->ended)
        lr_h2c_end(t->car->h2, t->sid);
}

static void ctun_room(struct lr_conn *c)
{
    struct ctun *t = c->rem.ctx;
    if (t && t->car && t->car->h2 && t->held && !t->ended) {
        t->held = 0;
        lr_h2c_resume(t->car->h2, t->sid);
    }
}

static size_t car_data(void *owner, void *tp, const uint8_t *p, size_t n)
{
    struct ctun *t = tp;
    size_t k = lr_conn_push_down(t->c, p, n);
    if (k < n)
        t->held = 1;
    return k;
}

static void car_eof(void *owner, void *tp)
{
    struct ctun *t = tp;
    t->done = 1;
    lr_conn_push_eof(t->c, 1);
}

static void car_closed(void *owner, void *tp)
{
    struct ctun *t = tp;
    t->ended = 1;
    lr_conn_doom(t->c, "grpc: tunnel reset");
}

static size_t car_out(void *owner, const uint8_t *p, size_t n)
{
    struct gcar *g = owner;
    return lr_conn_push_stream(g->cc, p, n);
}

static const struct lr_h2c_ops car_h2_ops = {
    .data = car_data, .eof = car_eof, .closed = car_closed, .out = car_out,
};

static void unlink_tun(struct gcar *g, struct ctun *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        g->tuns = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    g->ntun--;
    car_idle_check(g);
}

/* The carrier is up: tunnel t gets its stream, and its relay starts. */
static void ctun_go(struct gcar *g, struct ctun *t)
{
    struct lr_conn *c = t->c;
    int32_t sid = lr_h2c_open(g->h2, t);
    if (sid < 0) {
        unlink_tun(g, t);
        t->car = NULL;
        lr_conn_dial_failed(c, -EPROTO, "grpc: no stream");
        return;
    }
    t->sid = sid;
    c->rem.fd = -1;
    c->rem.dgram = 0;
    c->rem.sink = ctun_sink;
    c->rem.sink_end = ctun_sink_end;
    c->rem.room = ctun_room;
    c->ibops->connected(c); /* the inbound's reply; the relay starts */
}

/* --- the carrier connection */

static size_t car_input(struct lr_conn *cc, const uint8_t *data, size_t len)
{
    struct gcar *g = cc->ob_state;
    if (!g || !g->h2)
        return len;
    if (lr_h2c_input(g->h2, data, len) < 0) {
        car_retire(g);
        lr_conn_doom(cc, "grpc: bad http/2 from the server");
        return len;
    }
    if (!lr_h2c_usable(g->h2))
        car_retire(g);
    for (struct ctun *t = g->tuns; t; t = t->next)
        if (t->blocked) {
            t->blocked = 0;
            lr_conn_kick(t->c);
        }
    if (lr_h2c_over(g->h2))
        lr_conn_doom(cc, "grpc: connection over");
    return len;
}

static void car_server_done(struct lr_conn *cc)
{
    struct gcar *g = cc->ob_state;
    if (g)
        car_retire(g);
    lr_conn_doom(cc, "grpc: server closed");
}

static void car_room(struct lr_conn *cc)
{
    struct gcar *g = cc->ob_state;
    if (!g || !g->h2)
        return;
    if (lr_h2c_flush(g->h2) < 0) {
        car_retire(g);
        lr_conn_doom(cc, "grpc: bad http/2");
        return;
    }
    for (struct ctun *t = g->tuns; t; t = t->next)
        if (t->blocked) {
            t->blocked = 0;
            lr_conn_kick(t->c);
        }
}

static void car_ready(struct lr_conn *cc)
{
    struct gcar *g = cc->ob_state;
    const struct lr_outbound *ob = g->ob;
    const char *host = ob->tls.server_name ? ob->tls.server_name : ob->server_host;
    char auth[300];
    int v6 = strchr(host, ':') != NULL;
    snprintf(auth, sizeof(auth), "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             ob->server_port);
    g->h2 = lr_h2c_new(auth, ob->tp.service_name ? ob->tp.service_name : "", ob->tp.multi,
                       ob->tls.on, &car_h2_ops, g);
    if (!g->h2) {
        car_retire(g);
        lr_conn_close(cc, "out of memory");
        return;
    }
    lr_conn_start_relay(cc);
    /* the waiting tunnels, in turn (one may close another's way) */
    for (int again = 1; again && cc->ob_state == g;) {
        again = 0;
        for (struct ctun *t = g->tuns; t; t = t->next)
            if (!t->sid) {
                ctun_go(g, t);
                again = 1;
                break;
            }
    }
    if (cc->ob_state == g)
        (void)lr_h2c_flush(g->h2);
}

static void car_dial_failed(struct lr_conn *cc, int err)
{
    lr_conn_close(cc, cc->reason ? cc->reason : "connect failed");
}

static void car_free(struct lr_conn *cc)
{
    struct gcar *g = cc->ob_state;
    lr_cfront_free(cc);
    if (!g)
        return;
    cc->ob_state = NULL;
    car_retire(g);
    /* its tunnels go with it: a waiting one as a failed dial, an open
     * one cut (closed from the loop: we are inside a close) */
    const char *why = cc->reason ? cc->reason : "grpc connection lost";
    while (g->tuns) {
        struct ctun *t = g->tuns;
        g->tuns = t->next;
        t->prev = t->next = NULL;
        t->car = NULL;
        if (!t->sid) {
            snprintf(t->c->fail_detail, sizeof(t->c->fail_detail), "grpc: %s", why);
            lr_conn_dial_failed(t->c, -ECONNREFUSED, "connect failed");
        } else if (!t->done) {
            t->ended = 1;
            lr_conn_doom(t->c, "grpc connection lost");
        } else {
            /* the server ended it cleanly: what it sent still goes out
             * to the client, whatever happens to the connection now */
            t->ended = 1;
        }
    }
    lr_h2c_free(g->h2);
    free(g);
}

static const struct lr_ib_ops car_ib_ops = {
    .connected = car_ready,
    .dial_failed = car_dial_failed,
};

static const struct lr_ob_ops car_ob_ops = {
    .free = car_free,
    .remote_io = lr_cfront_io,
};

static void car_connected(struct lr_conn *cc, int fd)
{
    lr_cfront_start(cc, fd); /* TLS if any; the grpc stage passes: car_ready */
}

/* A new carrier for c's outbound, dialling; NULL when none can be had. */
static struct gcar *car_new(struct lr_conn *c)
{
    struct lr_outbound *ob = c->ob;
    struct gcar *g = calloc(1, sizeof(*g));
    struct lr_conn *cc = g ? lr_dispatch_session_of(c, c->ib, &car_ib_ops, car_input) : NULL;
    if (!cc) {
        free(g);
        return NULL;
    }
    g->cc = cc;
    g->ob = ob;
    g->idle_timeout = cc->idle_timeout;
    cc->ob = ob;
    cc->obops = &car_ob_ops;
    cc->ob_state = g;
    cc->cli.dgram = 0;
    cc->cli.sink_end = car_server_done;
    cc->cli.room = car_room;
    cc->cli.ctx = g;
    memset(&cc->dst, 0, sizeof(cc->dst));
    cc->dst.network = LR_NET_TCP;
    cc->dst.atyp = LR_ATYP_DOMAIN;
    cc->dst.port = ob->server_port;
    snprintf(cc->dst.host, sizeof(cc->dst.host), "%s", ob->server_host);
    cc->state = LR_CS_DIAL;
    lr_conn_set_deadline(cc, ob->connect_timeout);
    ob->grpc_carrier = g;
    lr_conn_connect(cc, ob->server_host, ob->server_port, 0, 0, car_connected);
    return g;
}

int lr_grpc_attach(struct lr_conn *c)
{
    struct lr_outbound *ob = c->ob;
    struct gcar *g = ob->grpc_carrier;
    if (g && g->h2 && !lr_h2c_usable(g->h2)) {
        car_retire(g);
        g = NULL;
    }
    if (g && g->ntun >= LR_H2C_STREAMS) {
        car_retire(g); /* full while still connecting */
        g = NULL;
    }
    struct ctun *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    if (!g && !(g = car_new(c))) {
        free(t);
        return -1; /* the session pool is full: a connection of its own */
    }
    /* car_new may have failed its dial at once (and freed g) */
    if (ob->grpc_carrier != g) {
        free(t);
        return -1;
    }
    t->car = g;
    t->c = c;
    t->next = g->tuns;
    if (g->tuns)
        g->tuns->prev = t;
    g->tuns = t;
    g->ntun++;
    car_idle_check(g);
    c->rem.ctx = t;
    if (g->h2)
        ctun_go(g, t); /* the carrier is up: at once */
    return 0;
}

void lr_grpc_detach(struct lr_conn *c)
{
    struct ctun *t = c->rem.ctx;
    if (!t || c->obops != &lr_vmess_out_ops)
        return;
    c->rem.ctx = NULL;
    struct gcar *g = t->car;
    if (g) {
        unlink_tun(g, t);
        if (g->h2 && t->sid && !t->ended)
            lr_h2c_cancel(g->h2, t->sid);
        lr_conn_kick(g->cc); /* its output (the RST) */
    }
    free(t);
}
