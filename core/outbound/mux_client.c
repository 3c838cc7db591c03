/*
 * Mux.Cool as a client (design.md 9: `mux = { concurrency = N }` on a VMess
 * outbound; frames as vmess-wire.md 13).  The connections routed to such an
 * outbound become streams of a carrier: one VMess connection with command 3
 * (no address; the server treats it as v1.mux.cool) whose body carries
 * Mux.Cool frames
 *   BE16(metaLen) || BE16(id) || status || opt
 *       [New: network(1 TCP, 2 UDP) || BE16(port) || atyp(1, 2, 3) || addr]
 *   [opt & 1: BE16(dataLen) || data]
 * A stream sends New (no data) when the carrier is up, its bytes in Keep
 * frames (at most MUX_DATA each; a datagram is one frame), and End when
 * its client ends or it closes; the server's Keep frames go to the stream,
 * its End ends the stream's down direction (with the error bit: the stream
 * is cut).  Frames of unknown ids are discarded, as v2ray does.
 *
 * The carrier is a connection of its own (a session of the first stream's
 * inbound, so the access log and the counts see it, as the gRPC carrier),
 * dialled by the VMess outbound itself (TLS and transports included);
 * its virtual client side is this module: the frames the streams write are
 * pushed up to it, and what the server sends is parsed here.  A stream's
 * remote side is virtual: what its relay sends is framed (rem.sink), what
 * the server sends for it is pushed into its down pipe.
 *
 * The outbound's current carrier takes streams until `concurrency` of them
 * are open at once (or its 16-bit ids run out, or CAR_OUT_CAP waits in its
 * buffer: the server is not reading); then the next stream opens
 * another carrier, and the full one serves its streams until they end.  A
 * carrier without streams closes after CAR_IDLE seconds, a full one at once.
 * When the carrier fails, its streams go with it (waiting ones as a failed
 * dial).  Backpressure: a stream's frames wait in the carrier's buffer
 * (CAR_OUT_CAP of data; New and End frames always fit, one each per open
 * stream); a stream whose down pipe is full stops the parser, and so the
 * carrier's reads, until it has room.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "dispatch/dispatch.h"
#include "outbound/front.h"

#define CAR_IDLE 30.0
#define CAR_OUT_CAP (64 * 1024) /* data frames waiting for the carrier */
#define MUX_DATA 8192           /* per Keep frame, as v2ray writes them */
#define META_MAX 512

enum { ST_LEN = 0, ST_META, ST_DLEN, ST_DATA };

struct mcar;

struct mstream {
    struct mstream *prev, *next;
    struct mcar *car;        /* NULL once the carrier is gone */
    struct lr_conn *c;
    uint16_t id;
    uint8_t udp;
    uint8_t started;         /* New sent, relay running */
    uint8_t ended;           /* End sent */
    uint8_t done;            /* the server ended it */
    uint8_t blocked;         /* its data waits for the carrier's room */
    uint8_t held;            /* the parser waits for its down pipe */
};

struct mcar {
    struct lr_conn *cc;
    struct lr_outbound *ob;
    struct mstream *streams;
    uint32_t nstreams;
    uint32_t next_id;
    uint8_t up;              /* the VMess connection is ready */
    uint8_t retired;         /* takes no more streams */
    double idle_timeout;     /* the carrier's with streams */
    uint8_t *out;            /* frames the carrier's up pipe has not taken */
    size_t olen, ocap;
    /* the server's frames */
    uint8_t stage;
    uint16_t need, have;
    uint8_t hbuf[META_MAX + 4];
    uint16_t meta_len;
    uint16_t cur_id;
    uint8_t cur_status, cur_opt;
    uint32_t data_left;
    uint8_t *dgram;          /* a datagram being collected */
    uint32_t dgram_len;
};

static const struct lr_ib_ops car_ib_ops;

int lr_muxc_is_carrier(const struct lr_conn *c)
{
    return c->ibops == &car_ib_ops;
}

static struct mstream *find(struct mcar *g, uint16_t id)
{
    for (struct mstream *s = g->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* --- the carrier's output */

static void car_flush(struct mcar *g)
{
    if (!g->olen)
        return;
    size_t k = lr_conn_push_stream(g->cc, g->out, g->olen);
    if (k) {
        memmove(g->out, g->out + k, g->olen - k);
        g->olen -= k;
    }
}

/* Appends a frame (header h, then data); 0 on ENOMEM. */
static int out_put(struct mcar *g, const uint8_t *h, size_t hl, const uint8_t *d, size_t dl)
{
    if (g->olen + hl + dl > g->ocap) {
        size_t n = g->ocap ? g->ocap : 4096;
        while (n < g->olen + hl + dl)
            n *= 2;
        uint8_t *no = realloc(g->out, n);
        if (!no)
            return 0;
        g->out = no;
        g->ocap = n;
    }
    memcpy(g->out + g->olen, h, hl);
    if (dl)
        memcpy(g->out + g->olen + hl, d, dl);
    g->olen += hl + dl;
    return 1;
}

/* A control frame: New (status 1, the stream's destination) or End. */
static void put_ctl(struct mcar *g, struct mstream *s, uint8_t status, uint8_t opt)
{
    uint8_t h[2 + 4 + 1 + 2 + 1 + 1 + 255];
    size_t o = 6;
    h[2] = (uint8_t)(s->id >> 8);
    h[3] = (uint8_t)s->id;
    h[4] = status;
    h[5] = opt;
    if (status == 1) {
        const struct lr_dest *d = &s->c->dst;
        h[o++] = s->udp ? 2 : 1;
        lr_put_be16(h + o, d->port);
        o += 2;
        if (d->atyp == LR_ATYP_IPV4) {
            h[o++] = 1;
            memcpy(h + o, d->ip, 4);
            o += 4;
        } else if (d->atyp == LR_ATYP_IPV6) {
            h[o++] = 3;
            memcpy(h + o, d->ip, 16);
            o += 16;
        } else {
            size_t hl = strlen(d->host);
            h[o++] = 2;
            h[o++] = (uint8_t)hl;
            memcpy(h + o, d->host, hl);
            o += hl;
        }
    }
    lr_put_be16(h, (uint16_t)(o - 2));
    if (!out_put(g, h, o, NULL, 0))
        lr_conn_doom(g->cc, "out of memory");
}

/* --- streams: a connection's virtual remote side */

static size_t ms_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct mstream *s = c->rem.ctx;
    if (!s || !s->car || s->ended)
        return len; /* nowhere to go: dropped */
    struct mcar *g = s->car;
    size_t room = g->olen < CAR_OUT_CAP ? CAR_OUT_CAP - g->olen : 0;
    size_t n = len;
    if (s->udp) {
        if (!len || len > 65535)
            return len; /* cannot be one frame */
        if (room < 8 + len) {
            s->blocked = 1; /* a datagram sink drops it: UDP */
            return len;
        }
    } else {
        if (n > MUX_DATA)
            n = MUX_DATA;
        if (room <= 8) {
            s->blocked = 1;
            return 0;
        }
        if (n > room - 8)
            n = room - 8;
    }
    uint8_t h[8];
    lr_put_be16(h, 4);
    lr_put_be16(h + 2, s->id);
    h[4] = 2; /* Keep */
    h[5] = 0x01;
    lr_put_be16(h + 6, (uint16_t)n);
    if (!out_put(g, h, 8, data, n)) {
        lr_conn_doom(g->cc, "out of memory");
        return len;
    }
    car_flush(g);
    return n;
}

static void ms_sink_end(struct lr_conn *c)
{
    struct mstream *s = c->rem.ctx;
    if (!s || !s->car || s->ended)
        return;
    s->ended = 1;
    put_ctl(s->car, s, 3, 0);
    car_flush(s->car);
}

static void ms_room(struct lr_conn *c)
{
    struct mstream *s = c->rem.ctx;
    if (s && s->car && s->held) {
        s->held = 0;
        lr_conn_kick(s->car->cc); /* the parser goes on */
    }
}

static void car_idle_check(struct mcar *g)
{
    double idle = g->idle_timeout < CAR_IDLE ? g->idle_timeout : CAR_IDLE;
    g->cc->idle_timeout = g->nstreams ? g->idle_timeout : idle;
    if (!g->nstreams && g->cc->state == LR_CS_RELAY) {
        if (g->retired)
            lr_conn_doom(g->cc, "done"); /* full, and its last stream ended */
        else
            lr_conn_set_deadline(g->cc, idle);
    }
}

/* No more streams for it: the next one opens another carrier. */
static void car_retire(struct mcar *g)
{
    g->retired = 1;
    if (g->ob && g->ob->mux_carrier == g)
        g->ob->mux_carrier = NULL;
}

static void unlink_stream(struct mcar *g, struct mstream *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        g->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    g->nstreams--;
    car_idle_check(g);
}

/* The carrier is up: stream s says New, and its relay starts. */
static void ms_go(struct mcar *g, struct mstream *s)
{
    struct lr_conn *c = s->c;
    s->started = 1;
    put_ctl(g, s, 1, 0);
    car_flush(g);
    c->ibops->connected(c); /* the inbound's reply; the relay starts */
}

/* --- the server's frames */

static void frame_meta(struct mcar *g)
{
    g->cur_id = lr_get_be16(g->hbuf);
    g->cur_status = g->hbuf[2];
    g->cur_opt = g->hbuf[3];
    if (g->cur_status != 3)
        return;
    struct mstream *s = find(g, g->cur_id);
    if (!s || s->done)
        return;
    s->done = 1;
    if ((g->cur_opt & 0x02) && !s->ended) {
        /* the server could not serve it (v2ray: the dial failed); after
         * our End, v2ray's error End is only its side closing */
        snprintf(s->c->fail_detail, sizeof(s->c->fail_detail),
                 "the mux server ended the stream with an error");
        lr_conn_doom(s->c, "mux stream failed");
    } else {
        lr_conn_push_eof(s->c, 1);
    }
}

static size_t car_input(struct lr_conn *cc, const uint8_t *data, size_t len)
{
    struct mcar *g = cc->cli.ctx;
    size_t used = 0;
    if (!g)
        return len;
    while (used < len) {
        if (g->stage != ST_DATA) {
            size_t want = g->need - g->have;
            size_t k = len - used < want ? len - used : want;
            memcpy(g->hbuf + g->have, data + used, k);
            g->have = (uint16_t)(g->have + k);
            used += k;
            if (g->have < g->need)
                break;
            g->have = 0;
            switch (g->stage) {
            case ST_LEN:
                g->meta_len = lr_get_be16(g->hbuf);
                if (g->meta_len < 4 || g->meta_len > META_MAX) {
                    car_retire(g);
                    lr_conn_doom(cc, "bad mux frame from the server");
                    return len;
                }
                g->stage = ST_META;
                g->need = g->meta_len;
                break;
            case ST_META:
                frame_meta(g);
                g->stage = g->cur_opt & 0x01 ? ST_DLEN : ST_LEN;
                g->need = 2;
                break;
            case ST_DLEN:
                g->data_left = lr_get_be16(g->hbuf);
                g->dgram_len = 0;
                g->stage = g->data_left ? ST_DATA : ST_LEN;
                g->need = 2;
                break;
            }
            continue;
        }
        size_t k = len - used < g->data_left ? len - used : g->data_left;
        /* data reaches a stream from Keep frames only (as v2ray) */
        struct mstream *s = g->cur_status == 2 ? find(g, g->cur_id) : NULL;
        if (s && (s->done || !s->started))
            s = NULL;
        size_t took = k;
        if (s && s->udp) {
            if (!g->dgram && !(g->dgram = malloc(65536))) {
                s = NULL;
            } else {
                memcpy(g->dgram + g->dgram_len, data + used, k);
                g->dgram_len += (uint32_t)k;
                struct lr_conn *c = s->c;
                /* one datagram per unit: a busy down pipe drops it */
                if (g->data_left == k && !c->down.pend_len &&
                    (!c->down.in || !lr_buf_len(c->down.in))) {
                    lr_conn_push_down(c, g->dgram, g->dgram_len);
                    c->t_last = ev_now(c->lp->loop);
                }
            }
        } else if (s) {
            took = lr_conn_push_down(s->c, data + used, k);
            if (took)
                s->c->t_last = ev_now(s->c->lp->loop);
        }
        used += took;
        g->data_left -= (uint32_t)took;
        if (!g->data_left) {
            g->stage = ST_LEN;
            g->need = 2;
        }
        if (took < k) {
            s->held = 1; /* ms_room kicks us */
            break;
        }
    }
    return used;
}

/* --- the carrier connection */

static void car_server_done(struct lr_conn *cc)
{
    struct mcar *g = cc->cli.ctx;
    if (g)
        car_retire(g);
    lr_conn_doom(cc, "mux: server closed");
}

static void car_room(struct lr_conn *cc)
{
    struct mcar *g = cc->cli.ctx;
    if (!g)
        return;
    car_flush(g);
    if (g->olen >= CAR_OUT_CAP)
        return;
    for (struct mstream *s = g->streams; s; s = s->next)
        if (s->blocked) {
            s->blocked = 0;
            lr_conn_kick(s->c);
        }
}

static void car_ready(struct lr_conn *cc)
{
    struct mcar *g = cc->cli.ctx;
    g->up = 1;
    /* the waiting streams, in turn (one may close another's way); their
     * New frames go out with the VMess request */
    for (int again = 1; again && cc->cli.ctx == g;) {
        again = 0;
        for (struct mstream *s = g->streams; s; s = s->next)
            if (!s->started) {
                ms_go(g, s);
                again = 1;
                break;
            }
    }
    if (cc->cli.ctx == g)
        lr_conn_start_relay(cc);
}

static void car_dial_failed(struct lr_conn *cc, int err)
{
    (void)err;
    lr_conn_close(cc, cc->reason ? cc->reason : "connect failed");
}

static void car_free(struct lr_conn *cc)
{
    struct mcar *g = cc->cli.ctx;
    if (!g)
        return;
    cc->cli.ctx = NULL;
    car_retire(g);
    /* its streams go with it: a waiting one as a failed dial, an open one
     * cut (closed from the loop: we are inside a close) */
    const char *why = cc->reason ? cc->reason : "mux connection lost";
    while (g->streams) {
        struct mstream *s = g->streams;
        g->streams = s->next;
        s->prev = s->next = NULL;
        s->car = NULL;
        if (!s->started) {
            snprintf(s->c->fail_detail, sizeof(s->c->fail_detail), "mux: %.100s%s%.150s", why,
                     cc->fail_detail[0] ? ": " : "", cc->fail_detail);
            lr_conn_dial_failed(s->c, -ECONNREFUSED, "connect failed");
        } else if (!s->done) {
            lr_conn_doom(s->c, "mux connection lost");
        }
    }
    free(g->out);
    free(g->dgram);
    free(g);
}

static const struct lr_ib_ops car_ib_ops = {
    .connected = car_ready,
    .dial_failed = car_dial_failed,
    .free = car_free,
};

/* A new carrier for c's outbound, dialling; NULL when none can be had. */
static struct mcar *car_new(struct lr_conn *c)
{
    struct lr_outbound *ob = c->ob;
    struct mcar *g = calloc(1, sizeof(*g));
    struct lr_conn *cc = g ? lr_dispatch_session_of(c, c->ib, &car_ib_ops, car_input) : NULL;
    if (!cc) {
        free(g);
        return NULL;
    }
    g->cc = cc;
    g->ob = ob;
    g->stage = ST_LEN;
    g->need = 2;
    g->idle_timeout = cc->idle_timeout;
    cc->ob = ob;
    cc->obops = &lr_vmess_out_ops;
    cc->cli.dgram = 0;
    cc->cli.sink_end = car_server_done;
    cc->cli.room = car_room;
    cc->cli.ctx = g;
    memset(&cc->dst, 0, sizeof(cc->dst));
    cc->dst.network = LR_NET_TCP;
    cc->dst.atyp = LR_ATYP_DOMAIN;
    snprintf(cc->dst.host, sizeof(cc->dst.host), "v1.mux.cool");
    cc->state = LR_CS_DIAL;
    lr_conn_set_deadline(cc, ob->connect_timeout);
    ob->mux_carrier = g;
    lr_info("outbound %s: new mux connection %llu (up to %u streams)", ob->tag,
            (unsigned long long)cc->id, ob->mux_concurrency);
    cc->obops->dial(cc); /* the VMess outbound: command 3 (vmess.c) */
    return g;
}

int lr_muxc_attach(struct lr_conn *c)
{
    struct lr_outbound *ob = c->ob;
    struct mcar *g = ob->mux_carrier;
    if (g && (g->nstreams >= ob->mux_concurrency || g->next_id >= 0xffff ||
              g->olen > CAR_OUT_CAP)) {
        /* full (or its server is not reading): it serves its streams to
         * their end, and its buffer holds at most two control frames a
         * stream beyond CAR_OUT_CAP */
        car_retire(g);
        g = NULL;
    }
    struct mstream *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    if (!g && !(g = car_new(c))) {
        free(s);
        return -1; /* the session pool is full: a connection of its own */
    }
    /* car_new's dial may have failed at once (and freed g) */
    if (ob->mux_carrier != g) {
        free(s);
        return -1;
    }
    s->car = g;
    s->c = c;
    s->id = (uint16_t)++g->next_id;
    s->udp = c->dst.network == LR_NET_UDP;
    s->next = g->streams;
    if (g->streams)
        g->streams->prev = s;
    g->streams = s;
    g->nstreams++;
    car_idle_check(g);
    c->rem.fd = -1;
    c->rem.dgram = s->udp;
    c->rem.sink = ms_sink;
    c->rem.sink_end = ms_sink_end;
    c->rem.room = ms_room;
    c->rem.ctx = s;
    if (g->up)
        ms_go(g, s); /* the carrier is up: at once */
    return 0;
}

int lr_muxc_detach(struct lr_conn *c)
{
    if (c->rem.sink != ms_sink)
        return 0;
    struct mstream *s = c->rem.ctx;
    c->rem.ctx = NULL;
    if (!s)
        return 1;
    struct mcar *g = s->car;
    if (g) {
        if (s->started && !s->ended) {
            /* cut before its end: the server's side goes too */
            put_ctl(g, s, 3, c->reason && strcmp(c->reason, "done") != 0 ? 0x02 : 0);
            car_flush(g);
        }
        unlink_stream(g, s);
        lr_conn_kick(g->cc);
    }
    free(s);
    return 1;
}
