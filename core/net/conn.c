/*
 * Connections and the relay.  A connection is one allocation with its
 * watchers and timer inside it (libev "associating custom data").
 *
 * The relay, per direction (struct lr_pipe): read the source into `in`;
 * decode one unit in place (a VMess chunk, or whatever raw bytes arrived);
 * encode it into `out` as room allows; write `out` to the destination.
 * Backpressure: the source is read only while `in` has room and no decoded
 * payload is waiting for room in `out`; a short write stops the decoding
 * until the destination drains.  Buffers come from the free list and go
 * back as soon as they are empty, so an idle connection holds none.
 *
 * Teardown: every path that can close the connection returns -1 so its
 * caller stops touching it; lr_conn_close stops watchers, cancels DNS and
 * frees at once (no callback of ours runs after that for this object).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/conn.h"
#include "route/route.h"
#include "dispatch/model.h"
#include "outbound/outbound.h"
#include "daemon/policy.h"
#include "script/bridge.h"

#define PIECE 16384 /* our writers' payload per chunk */
#define UDP_LINGER 2.0 /* seconds a UDP session waits for replies after its client ended */

/* Connections open in the whole process (every worker thread). */
static atomic_size_t live_conns;

size_t lr_conn_count(void)
{
    return atomic_load_explicit(&live_conns, memory_order_relaxed);
}

static void cli_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void cli_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void rem_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void rem_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void throttle_cb(struct ev_loop *loop, ev_timer *w, int revents);
static int has_hook(struct lr_conn *c, int kind);
static void sniff_done(struct lr_conn *c);
static void sniff_read(struct lr_conn *c);
static int run_hook(struct lr_conn *c, int kind, struct lr_hook_ctx *x);
static int ensure_in(struct lr_pipe *p);
static int pump(struct lr_conn *c, struct lr_pipe *p, struct lr_side *src,
                struct lr_side *dst);

#define CONN_OF(w, field) \
    ((struct lr_conn *)((char *)(w) - offsetof(struct lr_conn, field)))

static struct lr_conn *conn_new(struct lr_loop *lp, struct lr_inbound *ib,
                                 int fd, const struct lr_addr *src,
                                 const struct lr_ib_ops *ops, int session)
{
    if (session && ib->max_connections && ib->nsessions >= ib->max_connections)
        return NULL; /* the inbound's session pool is full */
    struct lr_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->id = lp->next_conn_id += lp->id_step;
    c->lp = lp;
    c->ib = ib;
    c->gen = ib->gen;
    lr_gen_ref(c->gen);
    c->ibops = ops;
    c->src = *src;
    c->user = -1;
    c->state = LR_CS_HANDSHAKE;
    c->cli.fd = fd;
    c->rem.fd = -1;
    c->dial.fd = -1;
    c->t_start = c->t_last = ev_now(lp->loop);
    c->idle_timeout = ib->idle_timeout;
    ev_io_init(&c->cli.rio, cli_read_cb, fd < 0 ? 0 : fd, EV_READ);
    ev_io_init(&c->cli.wio, cli_write_cb, fd < 0 ? 0 : fd, EV_WRITE);
    ev_init(&c->rem.rio, rem_read_cb);
    ev_init(&c->rem.wio, rem_write_cb);
    ev_init(&c->timer, timer_cb);
    ev_init(&c->throttle, throttle_cb);
    /* the handshake deadline counts from accept; bytes do not extend it */
    c->deadline = c->t_start + ib->handshake_timeout;
    ev_timer_set(&c->timer, ib->handshake_timeout, 0.);
    ev_timer_start(lp->loop, &c->timer);
    if (fd >= 0)
        ev_io_start(lp->loop, &c->cli.rio);
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    c->session = (uint8_t)session;
    if (session)
        ib->nsessions++;
    else
        ib->nconns++;
    atomic_fetch_add_explicit(&live_conns, 1, memory_order_relaxed);
    return c;
}

struct lr_conn *lr_conn_new(struct lr_loop *lp, struct lr_inbound *ib,
                            int fd, const struct lr_addr *src,
                            const struct lr_ib_ops *ops)
{
    return conn_new(lp, ib, fd, src, ops, 0);
}

struct lr_conn *lr_conn_new_virtual(struct lr_loop *lp, struct lr_inbound *ib,
                                    const struct lr_addr *src,
                                    const struct lr_ib_ops *ops,
                                    size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    struct lr_conn *c = conn_new(lp, ib, -1, src, ops, 1);
    if (!c)
        return NULL;
    ev_io_stop(lp->loop, &c->cli.rio);
    c->cli.dgram = 1;
    c->cli.sink = sink;
    c->dst.network = LR_NET_UDP;
    return c;
}

int lr_conn_push_datagram(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct lr_pipe *p = &c->up;
    if (p->pend_len || (p->in && lr_buf_len(p->in)))
        return 0; /* busy: UDP may drop */
    if (ensure_in(p) < 0) {
        lr_conn_close(c, "out of memory");
        return -1;
    }
    lr_buf_compact(p->in);
    if (len > lr_buf_room(p->in))
        return 0;
    memcpy(lr_buf_tail(p->in), data, len);
    p->in->wr += (uint32_t)len;
    c->t_last = ev_now(c->lp->loop);
    if (c->state != LR_CS_RELAY)
        return 0; /* sent when the relay starts */
    return pump(c, p, &c->cli, &c->rem);
}

static size_t push_into(struct lr_conn *c, struct lr_pipe *p,
                        struct lr_side *src, struct lr_side *dst,
                        const uint8_t *data, size_t len)
{
    if (ensure_in(p) < 0)
        return 0;
    if (p->pend_len == 0 && lr_buf_room(p->in) < len)
        lr_buf_compact(p->in);
    size_t n = lr_buf_room(p->in);
    if (n > len)
        n = len;
    memcpy(lr_buf_tail(p->in), data, n);
    p->in->wr += (uint32_t)n;
    if (n && c->state == LR_CS_RELAY)
        lr_conn_kick(c);
    return n;
}

size_t lr_conn_push_stream(struct lr_conn *c, const uint8_t *data, size_t len)
{
    c->t_last = ev_now(c->lp->loop);
    return push_into(c, &c->up, &c->cli, &c->rem, data, len);
}

size_t lr_conn_push_down(struct lr_conn *c, const uint8_t *data, size_t len)
{
    return push_into(c, &c->down, &c->rem, &c->cli, data, len);
}

size_t lr_conn_down_room(struct lr_conn *c)
{
    struct lr_pipe *p = &c->down;
    if (ensure_in(p) < 0)
        return 0;
    if (p->pend_len == 0)
        lr_buf_compact(p->in);
    return lr_buf_room(p->in);
}

void lr_conn_push_eof(struct lr_conn *c, int down)
{
    struct lr_pipe *p = down ? &c->down : &c->up;
    if (!p->src_eof)
        p->src_eof = 1;
    if (c->state == LR_CS_RELAY)
        lr_conn_kick(c);
}

/* One line per connection with its pipes' state (SIGUSR1). */
void lr_conn_dump(struct lr_loop *lp)
{
    for (struct lr_conn *c = lp->conns; c; c = c->next) {
        struct lr_pipe *u = &c->up, *w = &c->down;
        lr_info("conn %llu state=%d cli=%d rem=%d kicked=%d "
                "up[in=%zu pend=%u out=%zu eof=%d end=%d closed=%d rd=%d] "
                "down[in=%zu pend=%u out=%zu eof=%d end=%d closed=%d rd=%d]",
                (unsigned long long)c->id, c->state, c->cli.fd, c->rem.fd,
                c->kicked, u->in ? lr_buf_len(u->in) : 0, u->pend_len,
                u->out ? lr_buf_len(u->out) : 0, u->src_eof, u->end_written,
                u->closed, c->cli.fd >= 0 && ev_is_active(&c->cli.rio),
                w->in ? lr_buf_len(w->in) : 0, w->pend_len,
                w->out ? lr_buf_len(w->out) : 0, w->src_eof, w->end_written,
                w->closed, c->rem.fd >= 0 && ev_is_active(&c->rem.rio));
    }
}

void lr_conn_doom(struct lr_conn *c, const char *reason)
{
    if (!c->doom)
        c->doom = reason;
    lr_conn_kick(c);
}

void lr_conn_kick(struct lr_conn *c)
{
    struct lr_loop *lp = c->lp;
    if (c->kicked)
        return;
    c->kicked = 1;
    c->kick_next = lp->kicks;
    lp->kicks = c;
}

static void update_reads(struct lr_conn *c);

void lr_conn_run_kicks(struct lr_loop *lp)
{
    /* bounded: a kick may queue further kicks; the rest wait a round */
    for (int i = 0; i < 4096 && lp->kicks; i++) {
        struct lr_conn *c = lp->kicks;
        lp->kicks = c->kick_next;
        c->kicked = 0;
        c->kick_next = NULL;
        if (c->doom) {
            lr_conn_close(c, c->doom);
            continue;
        }
        if (c->state != LR_CS_RELAY)
            continue;
        if (pump(c, &c->up, &c->cli, &c->rem) < 0)
            continue;
        if (pump(c, &c->down, &c->rem, &c->cli) < 0)
            continue;
        update_reads(c);
    }
}

static void pipe_free(struct lr_pipe *p)
{
    lr_buf_put(p->in);
    lr_buf_put(p->out);
    lr_body_free(p->dec);
    lr_body_free(p->enc);
    free(p->prefix);
    memset(p, 0, sizeof(*p));
}

static void dest_str(const struct lr_dest *d, char *buf, size_t n)
{
    if (!d->host[0])
        snprintf(buf, n, "-");
    else if (strchr(d->host, ':'))
        snprintf(buf, n, "[%s]:%u", d->host, d->port);
    else
        snprintf(buf, n, "%s:%u", d->host, d->port);
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    struct lr_loop *lp = c->lp;
    struct ev_loop *loop = lp->loop;
    if (!c->reason)
        c->reason = reason;
    ev_io_stop(loop, &c->dial.io);
    ev_timer_stop(loop, &c->throttle);
    if (c->dial.fd >= 0)
        close(c->dial.fd);
    if (c->dialed && has_hook(c, LR_HOOK_CLOSE)) {
        struct lr_hook_ctx x;
        run_hook(c, LR_HOOK_CLOSE, &x); /* failures are only logged */
    }
    if (c->pol) {
        uint8_t ip[16];
        int il = lr_addr_ip_bytes(&c->src, ip);
        lr_policy_charge(c->pol, (double)(c->up.bytes + c->down.bytes - c->charged));
        lr_policy_release(c->pol, ip, il);
        c->pol = NULL;
    }
    ev_io_stop(loop, &c->cli.rio);
    ev_io_stop(loop, &c->cli.wio);
    ev_io_stop(loop, &c->rem.rio);
    ev_io_stop(loop, &c->rem.wio);
    ev_timer_stop(loop, &c->timer);
    if (c->kicked) {
        struct lr_conn **pp = &lp->kicks;
        while (*pp && *pp != c)
            pp = &(*pp)->kick_next;
        if (*pp)
            *pp = c->kick_next;
        c->kicked = 0;
    }
    if (c->dns)
        lr_dns_cancel(c->dns);
    if (c->cli.fd >= 0)
        close(c->cli.fd);
    if (c->rem.fd >= 0)
        close(c->rem.fd);
    if (lr_access_enabled()) {
        char src[64], dst[300];
        lr_addr_str(&c->src, src, sizeof(src));
        dest_str(&c->dst, dst, sizeof(dst));
        lr_access_write("%s %s %s %s %s %s up=%llu down=%llu dur=%.3f %s%s%s",
                        src, c->ib->tag,
                        c->user >= 0 ? c->gen->users[c->user].email : "-",
                        c->dst.network == LR_NET_UDP ? "udp" : "tcp", dst,
                        c->ob ? c->ob->tag : "-",
                        (unsigned long long)c->up.bytes,
                        (unsigned long long)c->down.bytes,
                        ev_now(loop) - c->t_start, c->reason,
                        c->fail_detail[0] ? ": " : "", c->fail_detail);
    }
    if (c->ibops && c->ibops->free)
        c->ibops->free(c);
    if (c->obops && c->obops->free)
        c->obops->free(c);
    pipe_free(&c->up);
    pipe_free(&c->down);
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lp->nconns--;
    if (c->session)
        c->ib->nsessions--;
    else
        c->ib->nconns--;
    atomic_fetch_sub_explicit(&live_conns, 1, memory_order_relaxed);
    struct lr_gen *g = c->gen;
    free(c);
    lr_gen_unref(g);
}

void lr_conn_abort(struct lr_conn *c, const char *reason)
{
    /* SO_LINGER 0: close() sends an RST instead of a FIN */
    struct linger l = {1, 0};
    if (c->cli.fd >= 0 && !c->cli.dgram)
        setsockopt(c->cli.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    if (c->rem.fd >= 0 && !c->rem.dgram)
        setsockopt(c->rem.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    lr_conn_close(c, reason);
}

void lr_conn_set_deadline(struct lr_conn *c, double seconds)
{
    struct ev_loop *loop = c->lp->loop;
    c->deadline = ev_now(loop) + seconds;
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, seconds, 0.);
    ev_timer_start(loop, &c->timer);
}

/* ------------------------------------------------------------ timers */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, timer);
    ev_tstamp now = ev_now(loop);
    switch (c->state) {
    case LR_CS_HANDSHAKE:
        /* exactly as a refused header: a FIN now, then linger, so an
         * incomplete header and a bad one look the same to a prober */
        c->reason = "handshake timeout";
        lr_buf_put(c->up.in);
        c->up.in = NULL;
        shutdown(c->cli.fd, SHUT_WR);
        c->state = LR_CS_LINGER;
        ev_timer_set(&c->timer, 2., 0.);
        ev_timer_start(loop, &c->timer);
        ev_io_start(loop, &c->cli.rio);
        return;
    case LR_CS_DIAL:
        lr_conn_dial_failed(c, -ETIMEDOUT, "connect timeout");
        return;
    case LR_CS_SNIFF:
        sniff_done(c); /* nothing recognisable in time: route as is */
        return;
    case LR_CS_DRAIN:
        /* FIN now, at the deadline whatever was wrong; then give the peer
         * a moment to close so unread bytes do not turn our close into a
         * reset */
        shutdown(c->cli.fd, SHUT_WR);
        c->state = LR_CS_LINGER;
        ev_timer_set(&c->timer, 2., 0.);
        ev_timer_start(loop, &c->timer);
        /* a peer that already sent its FIN is closed at once (drain_read) */
        ev_io_start(loop, &c->cli.rio);
        return;
    case LR_CS_LINGER:
        lr_conn_close(c, c->reason ? c->reason : "drained");
        return;
    case LR_CS_RELAY: {
        ev_tstamp idle_end = c->t_last + c->idle_timeout;
        if (now >= idle_end) {
            lr_conn_close(c, "idle timeout");
            return;
        }
        ev_timer_set(&c->timer, idle_end - now + 0.01, 0.);
        ev_timer_start(loop, &c->timer);
        return;
    }
    }
}

/* ------------------------------------------------------------ handshake */

static int ensure_in(struct lr_pipe *p)
{
    if (!p->in && !(p->in = lr_buf_get()))
        return -ENOMEM;
    if (lr_buf_room(p->in) == 0 && p->pend_len == 0)
        lr_buf_compact(p->in);
    return 0;
}

ssize_t lr_conn_read_client(struct lr_conn *c)
{
    if (ensure_in(&c->up) < 0)
        return -ENOMEM;
    size_t room = lr_buf_room(c->up.in);
    if (room == 0)
        return -ENOBUFS;
    ssize_t n = read(c->cli.fd, lr_buf_tail(c->up.in), room);
    if (n > 0) {
        c->up.in->wr += (uint32_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    if (errno == EAGAIN || errno == EINTR)
        return -EAGAIN;
    return -errno;
}

int lr_conn_send_client(struct lr_conn *c, const void *data, size_t len)
{
    struct lr_pipe *p = &c->down;
    if (!p->out || lr_buf_len(p->out) == 0) {
        /* nothing queued: try the socket first (a handshake reply almost
         * always fits), which saves arming the write watcher and a trip
         * through the loop.  Errors are left to the write watcher, which
         * closes the connection from its own callback. */
        ssize_t n = send(c->cli.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len)
            return 0;
        if (n > 0) {
            data = (const uint8_t *)data + n;
            len -= (size_t)n;
        }
    }
    if (!p->out && !(p->out = lr_buf_get())) {
        lr_conn_close(c, "out of memory");
        return -1;
    }
    lr_buf_compact(p->out);
    if (lr_buf_room(p->out) < len) {
        lr_conn_close(c, "reply too large");
        return -1;
    }
    memcpy(lr_buf_tail(p->out), data, len);
    p->out->wr += (uint32_t)len;
    /* written by the relay's flush, or right away by the write watcher */
    ev_io_start(c->lp->loop, &c->cli.wio);
    return 0;
}

void lr_conn_reply_close(struct lr_conn *c, const void *data, size_t len,
                         const char *reason)
{
    struct lr_pipe *p = &c->down;
    if (p->out && lr_buf_len(p->out))
        (void)!send(c->cli.fd, lr_buf_head(p->out), lr_buf_len(p->out),
                    MSG_NOSIGNAL | MSG_DONTWAIT);
    if (len)
        (void)!send(c->cli.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    lr_conn_close(c, reason);
}

void lr_conn_drain(struct lr_conn *c, const char *reason)
{
    struct ev_loop *loop = c->lp->loop;
    c->reason = reason;
    c->state = LR_CS_DRAIN;
    lr_buf_put(c->up.in);
    c->up.in = NULL;
    lr_debug("conn %llu: refused silently: %s", (unsigned long long)c->id,
             reason);
    /* keep the handshake deadline: the close time says nothing */
    ev_tstamp left = c->deadline - ev_now(loop);
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, left > 0 ? left : 0.001, 0.);
    ev_timer_start(loop, &c->timer);
    ev_io_start(loop, &c->cli.rio);
}

static void drain_read(struct lr_conn *c)
{
    uint8_t sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(c->cli.fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n == 0) {
            /* the prober gave up; we still say nothing before the deadline */
            c->peer_gone = 1;
            ev_io_stop(c->lp->loop, &c->cli.rio);
            if (c->state == LR_CS_LINGER)
                lr_conn_close(c, c->reason);
            return;
        }
        if (errno != EAGAIN && errno != EINTR) {
            lr_conn_close(c, c->reason);
        }
        return;
    }
}

int lr_conn_shed(struct lr_loop *lp, struct lr_inbound *ib, int max)
{
    int n = 0;
    for (struct lr_conn *c = lp->conns, *next; c && n < max; c = next) {
        next = c->next;
        if (c->peer_gone && (!ib || c->ib == ib) &&
            (c->state == LR_CS_DRAIN || c->state == LR_CS_LINGER)) {
            lr_conn_close(c, c->reason ? c->reason : "drained");
            n++;
        }
    }
    return n;
}

void lr_conn_close_draining(struct lr_loop *lp)
{
    for (struct lr_conn *c = lp->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == LR_CS_DRAIN || c->state == LR_CS_LINGER)
            lr_conn_close(c, c->reason ? c->reason : "drained");
    }
}

/* ------------------------------------------------------------ dialling */

/* ------------------------------------------------------------ hooks */

static int has_hook(struct lr_conn *c, int kind)
{
    return c->gen->script && (c->gen->hooks & (1u << kind));
}

static void hook_ctx(struct lr_conn *c, int kind, struct lr_hook_ctx *x,
                     char *srcip, size_t n)
{
    memset(x, 0, sizeof(*x));
    x->kind = kind;
    x->id = c->id;
    x->generation = c->gen->id;
    lr_addr_ip_str(&c->src, srcip, n);
    x->src_ip = srcip;
    x->src_port = lr_addr_port(&c->src);
    x->inbound = c->ib->tag;
    if (c->user >= 0) {
        x->user_email = c->gen->users[c->user].email;
        x->user_level = (int32_t)c->gen->users[c->user].level;
    }
    if (c->dst.host[0]) {
        x->dst_host = c->dst.host;
        x->dst_port = c->dst.port;
    }
    x->network = c->dst.network == LR_NET_UDP ? "udp" : "tcp";
    x->outbound = c->ob ? c->ob->tag : NULL;
    if (c->dst.sniff_host[0])
        x->sniffed_host = c->dst.sniff_host;
    if (c->dst.sniff_proto)
        x->protocol = c->dst.sniff_proto == LR_PROTO_TLS ? "tls" : "http";
}

/* ------------------------------------------------------------ sniffing */

#define SNIFF_WAIT 0.3    /* seconds to wait for the first client bytes */
#define SNIFF_MAX 16384   /* bytes looked at */

static int decode(struct lr_conn *c, struct lr_pipe *p);

/* 1 when sniffing is over (c may have been closed: check c->doom-free
 * return below), 0 to wait for more bytes, -1 if c was closed. */
static int sniff_try(struct lr_conn *c)
{
    struct lr_pipe *p = &c->up;
    const uint8_t *data;
    size_t n;
    if (p->dec) {
        if (!p->pend_len) {
            int r = decode(c, p);
            if (r < 0)
                return -1;
            if (r == 0)
                return (p->in && lr_buf_len(p->in) >= LR_BUF_CAP / 2) ? 1 : 0;
        }
        data = p->in->data + p->pend_off;
        n = p->pend_len;
    } else {
        if (!p->in || !lr_buf_len(p->in))
            return 0;
        data = lr_buf_head(p->in);
        n = lr_buf_len(p->in);
    }
    int t = lr_sniff_tls_sni(data, n, c->dst.sniff_host, sizeof(c->dst.sniff_host));
    if (t == 1) {
        c->dst.sniff_proto = LR_PROTO_TLS;
        return 1;
    }
    int h = lr_sniff_http_host(data, n, c->dst.sniff_host, sizeof(c->dst.sniff_host));
    if (h == 1) {
        c->dst.sniff_proto = LR_PROTO_HTTP;
        return 1;
    }
    c->dst.sniff_host[0] = 0;
    if (t < 0 && n >= 6 && data[0] == 0x16 && data[1] == 0x03 && data[5] == 0x01) {
        c->dst.sniff_proto = LR_PROTO_TLS; /* a ClientHello without SNI */
        return 1;
    }
    if ((t < 0 && h < 0) || n >= SNIFF_MAX || p->dec)
        return 1; /* a VMess chunk is all we get before dialling */
    return 0;
}

static void sniff_done(struct lr_conn *c)
{
    ev_io_stop(c->lp->loop, &c->cli.rio);
    lr_conn_dial(c);
}

static void sniff_read(struct lr_conn *c)
{
    ssize_t n = lr_conn_read_client(c);
    if (n == -EAGAIN)
        return;
    if (n == 0 || n == -ENOBUFS) {
        if (n == 0)
            c->up.src_eof = 1;
        sniff_done(c);
        return;
    }
    if (n < 0) {
        lr_conn_close(c, "read failed");
        return;
    }
    int r = sniff_try(c);
    if (r > 0)
        sniff_done(c);
}

/* Starts sniffing; 1 if it waits for bytes, 0 if routing goes on now,
 * -1 if c was closed. */
static int sniff_start(struct lr_conn *c)
{
    c->sniffed = 1;
    if (!c->gen->sniff || c->dst.network != LR_NET_TCP || c->cli.fd < 0)
        return 0;
    if (c->ibops->early_reply && c->ibops->early_reply(c) < 0)
        return -1;
    int r = sniff_try(c);
    if (r != 0)
        return r < 0 ? -1 : 0;
    c->state = LR_CS_SNIFF;
    lr_conn_set_deadline(c, SNIFF_WAIT);
    ev_io_start(c->lp->loop, &c->cli.rio);
    return 1;
}

static int run_hook(struct lr_conn *c, int kind, struct lr_hook_ctx *x)
{
    char ip[64];
    hook_ctx(c, kind, x, ip, sizeof(ip));
    if (kind == LR_HOOK_CLOSE) {
        x->up = c->up.bytes;
        x->down = c->down.bytes;
        x->duration_ms = (ev_now(c->lp->loop) - c->t_start) * 1000.0;
        x->reason = c->reason;
    }
    int v = lr_script_call(c->gen->script, x);
    if (v == LR_VERDICT_ERROR)
        lr_warn("conn %llu: %s hook failed: %s", (unsigned long long)c->id,
                kind == LR_HOOK_AUTH ? "auth" : kind == LR_HOOK_ROUTE ? "route"
                : kind == LR_HOOK_CONNECT ? "connect" : "close", x->out_reason);
    return v;
}

int lr_conn_accept_hook(struct lr_inbound *ib, const struct lr_addr *src)
{
    struct lr_gen *g = ib->gen;
    if (!g->script || !(g->hooks & (1u << LR_HOOK_ACCEPT)))
        return 0;
    struct lr_hook_ctx x;
    char ip[64];
    memset(&x, 0, sizeof(x));
    x.kind = LR_HOOK_ACCEPT;
    x.id = ib->rt->net.next_conn_id + ib->rt->net.id_step; /* the id it will get */
    x.generation = g->id;
    lr_addr_ip_str(src, ip, sizeof(ip));
    x.src_ip = ip;
    x.src_port = lr_addr_port(src);
    x.inbound = ib->tag;
    x.network = "tcp";
    int v = lr_script_call(g->script, &x);
    if (v == LR_VERDICT_ERROR)
        lr_warn("accept hook failed (client refused): %s", x.out_reason);
    else if (v == LR_VERDICT_REFUSE)
        lr_debug("client %s refused by the accept hook: %s", ip, x.out_reason);
    return v == LR_VERDICT_CONTINUE ? 0 : -1;
}

/* A destination host in a numeric spelling becomes the address it spells
 * (so rules, hooks, the private-range check and the dial all see the same
 * thing); -1 if it looks numeric but is no address. */
static int dest_normalise(struct lr_dest *d)
{
    struct lr_addr a;
    if (d->atyp != LR_ATYP_DOMAIN)
        return 0;
    int r = lr_host_numeric(d->host, &a);
    if (r <= 0)
        return r;
    int len = lr_addr_ip_bytes(&a, d->ip);
    d->atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
    lr_addr_from_bytes(d->ip, len, 0, &a);
    lr_addr_ip_str(&a, d->host, sizeof(d->host));
    return 0;
}

void lr_conn_dial(struct lr_conn *c)
{
    struct lr_loop *lp = c->lp;
    struct lr_hook_ctx x;
    int32_t ob = -1;
    if (!c->sniffed) {
        int r = sniff_start(c);
        if (r != 0)
            return; /* waiting for bytes, or closed */
    }
    if (dest_normalise(&c->dst) < 0) {
        ev_io_stop(lp->loop, &c->cli.rio);
        c->state = LR_CS_DIAL;
        lr_conn_dial_failed(c, -EINVAL, "bad destination address");
        return;
    }
    /* Reading on while the outbound connects saves stopping and re-arming
     * the client's watcher (an epoll_ctl each, and an extra loop pass when
     * bytes arrive meanwhile); dial_read only buffers, so a refusal still
     * drops them. */
    if (!c->ibops->read_while_dialing || c->cli.fd < 0 || c->cli.dgram ||
        c->up.pend_len)
        ev_io_stop(lp->loop, &c->cli.rio);
    c->state = LR_CS_DIAL;
    c->dialed = 1;
    if (has_hook(c, LR_HOOK_AUTH)) {
        int v = run_hook(c, LR_HOOK_AUTH, &x);
        if (v != LR_VERDICT_CONTINUE) {
            snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", x.out_reason);
            lr_conn_dial_failed(c, -EACCES, v == LR_VERDICT_REFUSE
                                ? "refused by auth hook" : "auth hook failed");
            return;
        }
    }
    if (c->user >= 0) {
        uint8_t ip[16];
        int il = lr_addr_ip_bytes(&c->src, ip);
        const char *why = lr_policy_admit(c->gen->users[c->user].email, ip,
                                          il, &c->pol);
        if (why) {
            lr_conn_dial_failed(c, -EACCES, why);
            return;
        }
    }
    if (has_hook(c, LR_HOOK_ROUTE)) {
        int v = run_hook(c, LR_HOOK_ROUTE, &x);
        if (v == LR_VERDICT_ERROR) {
            snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", x.out_reason);
            lr_conn_dial_failed(c, -EACCES, "route hook failed");
            return;
        }
        if (v == LR_VERDICT_ROUTE) {
            for (uint32_t i = 0; i < c->gen->nob && ob < 0; i++)
                if (strcmp(c->gen->ob[i].tag, x.out_tag) == 0)
                    ob = (int32_t)i;
            if (ob < 0) {
                snprintf(c->fail_detail, sizeof(c->fail_detail),
                         "no outbound '%s'", x.out_tag);
                lr_conn_dial_failed(c, -EACCES, "route hook failed");
                return;
            }
        }
    }
    if (ob < 0) {
        int to_sniffed = 0;
        struct lr_route_query q = {
            .network = c->dst.network, .atyp = c->dst.atyp, .port = c->dst.port,
            .ip = c->dst.ip, .host = c->dst.host,
            .user = c->user >= 0 ? c->gen->users[c->user].email : NULL,
            .inbound = c->ib->tag, .sniff_proto = c->dst.sniff_proto,
            .sniff_host = c->dst.sniff_host,
        };
        ob = lr_route_pick(c->gen->rules, c->gen->nrules, c->gen->default_ob, &q,
                           &to_sniffed);
        if (to_sniffed) {
            /* the rule allowed the name the client sent in TLS/HTTP: that
             * name is what gets dialled (v2ray's destOverride) */
            c->dst.atyp = LR_ATYP_DOMAIN;
            memset(c->dst.ip, 0, sizeof(c->dst.ip));
            memcpy(c->dst.host, c->dst.sniff_host, sizeof(c->dst.host));
            if (dest_normalise(&c->dst) < 0) {
                lr_conn_dial_failed(c, -EINVAL, "bad destination address");
                return;
            }
        }
    }
    if (ob < 0) {
        lr_conn_dial_failed(c, -EHOSTUNREACH, "no route");
        return;
    }
    c->ob = &c->gen->ob[ob];
    c->obops = lr_outbound_ops(c->ob->type);
    lr_conn_set_deadline(c, c->ob->connect_timeout);
    c->obops->dial(c);
}

static void try_next(struct lr_conn *c, int last_err);

static void dial_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, dial.io);
    int fd = c->dial.fd;
    int err = lr_sock_connect_result(fd);
    ev_io_stop(loop, w);
    if (err) {
        close(fd);
        c->dial.fd = -1;
        try_next(c, err);
        return;
    }
    c->dial.fd = -1;
    c->dial.done(c, fd);
}

static void try_next(struct lr_conn *c, int last_err)
{
    struct lr_dial *dl = &c->dial;
    while (dl->next < dl->naddrs) {
        struct lr_addr *a = &dl->addrs[dl->next++];
        lr_addr_set_port(a, dl->port);
        if (dl->forbid_private && lr_addr_is_private(a)) {
            last_err = -EACCES;
            continue;
        }
        int fd = lr_sock_connect(a);
        if (fd < 0) {
            last_err = fd;
            continue;
        }
        dl->fd = fd;
        ev_io_init(&dl->io, dial_io_cb, fd, EV_WRITE);
        ev_io_start(c->lp->loop, &dl->io);
        return;
    }
    lr_conn_dial_failed(c, last_err, last_err == -EACCES
                        ? "private destination refused" : "connect failed");
}

static void resolved_cb(void *ud, int err, const struct lr_addr *addrs,
                        int naddrs)
{
    struct lr_conn *c = ud;
    c->dns = NULL;
    if (err || naddrs == 0) {
        lr_conn_dial_failed(c, err ? err : -EHOSTUNREACH, "resolve failed");
        return;
    }
    memcpy(c->dial.addrs, addrs, sizeof(*addrs) * (size_t)naddrs);
    c->dial.naddrs = naddrs;
    c->dial.next = 0;
    try_next(c, -EHOSTUNREACH);
}

void lr_conn_connect(struct lr_conn *c, const char *host, uint16_t port,
                     int family, int forbid_private, lr_dial_fn done)
{
    c->dial.fd = -1;
    c->dial.port = port;
    c->dial.done = done;
    c->dial.forbid_private = forbid_private;
    c->dns = lr_dns_resolve(host, port, family, resolved_cb, c);
    if (!c->dns)
        lr_conn_dial_failed(c, -ENOMEM, "out of memory");
}

void lr_conn_dial_failed(struct lr_conn *c, int err, const char *reason)
{
    c->reason = reason;
    if (err && !c->fail_detail[0])
        snprintf(c->fail_detail, sizeof(c->fail_detail), "%s",
                 strerror(err < 0 ? -err : err));
    /* after the detail: the outbound may say where it was dialling */
    if (c->obops && c->obops->failed)
        c->obops->failed(c);
    if (c->ibops->dial_failed)
        c->ibops->dial_failed(c, err); /* may reply, then closes c */
    else
        lr_conn_close(c, reason);
}

void lr_conn_remote_ready(struct lr_conn *c, int fd, int dgram)
{
    c->rem.fd = fd;
    c->rem.dgram = (uint8_t)dgram;
    ev_io_set(&c->rem.rio, fd, EV_READ);
    ev_io_set(&c->rem.wio, fd, EV_WRITE);
    c->ibops->connected(c);
}

static void update_reads(struct lr_conn *c);

void lr_conn_start_relay(struct lr_conn *c)
{
    struct ev_loop *loop = c->lp->loop;
    if (has_hook(c, LR_HOOK_CONNECT)) {
        struct lr_hook_ctx x;
        run_hook(c, LR_HOOK_CONNECT, &x); /* failures are only logged */
    }
    c->state = LR_CS_RELAY;
    c->t_last = ev_now(loop);
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, c->idle_timeout, 0.);
    ev_timer_start(loop, &c->timer);
    c->cli.want_read = c->rem.want_read = 1;
    /* bytes that came with the handshake, and anything queued */
    if (pump(c, &c->up, &c->cli, &c->rem) < 0)
        return;
    if (pump(c, &c->down, &c->rem, &c->cli) < 0)
        return;
    update_reads(c);
}

/* ------------------------------------------------------------ relay */

static int fatal(struct lr_conn *c, const char *reason)
{
    lr_conn_close(c, reason);
    return -1;
}

static int cut(struct lr_conn *c, const char *reason)
{
    lr_conn_abort(c, reason);
    return -1;
}

/* Encodes as much pending payload as `out` can take. */
static int emit(struct lr_conn *c, struct lr_pipe *p, struct lr_side *src,
                struct lr_side *dst)
{
    if (dst->sink && !dst->dgram) {
        /* a virtual stream: it takes what it can, and kicks us for more */
        while (p->pend_len) {
            size_t n = dst->sink(c, p->in->data + p->pend_off, p->pend_len);
            if (n == 0)
                return 1;
            p->pend_off += (uint32_t)n;
            p->pend_len -= (uint32_t)n;
            p->bytes += n;
            c->t_last = ev_now(c->lp->loop);
        }
        return 0;
    }
    if (dst->dgram) {
        /* one decoded unit = one datagram; a full socket drops it */
        if (dst->sink)
            dst->sink(c, p->in->data + p->pend_off, p->pend_len);
        else if (p->pend_len && send(dst->fd, p->in->data + p->pend_off,
                                     p->pend_len, MSG_NOSIGNAL) < 0 &&
                 errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != ECONNREFUSED)
            return fatal(c, "send failed");
        p->bytes += p->pend_len;
        p->pend_len = 0;
        return 0;
    }
    if (!p->out && !(p->out = lr_buf_get()))
        return fatal(c, "out of memory");
    if (p->prefix && p->pend_len) {
        lr_buf_compact(p->out);
        if (lr_buf_room(p->out) < p->prefix_len)
            return 0;
        memcpy(lr_buf_tail(p->out), p->prefix, p->prefix_len);
        p->out->wr += p->prefix_len;
        free(p->prefix);
        p->prefix = NULL;
    }
    while (p->pend_len) {
        size_t room = lr_buf_room(p->out), piece, w = 0;
        if (room < 4096 && p->out->rd) {
            lr_buf_compact(p->out);
            room = lr_buf_room(p->out);
        }
        const uint8_t *data = p->in->data + p->pend_off;
        if (!p->enc) {
            piece = p->pend_len < room ? p->pend_len : room;
            if (!piece)
                return 0;
            memcpy(lr_buf_tail(p->out), data, piece);
            w = piece;
        } else {
            size_t over = lr_body_max_wire(p->enc, 0);
            size_t maxp = lr_body_max_payload(p->enc);
            if (room <= over)
                return 0;
            piece = room - over;
            if (piece > PIECE && !src->dgram)
                piece = PIECE;
            if (piece > maxp)
                piece = maxp;
            if (piece > p->pend_len)
                piece = p->pend_len;
            /* a datagram must stay one chunk: wait for room */
            if (src->dgram && piece < p->pend_len) {
                if (p->pend_len > maxp) { /* cannot ever fit: drop it */
                    p->pend_len = 0;
                    return 0;
                }
                return 0;
            }
            int rc = lr_body_seal(p->enc, data, piece, lr_buf_tail(p->out),
                                  room, &w);
            if (rc != LR_OK)
                return fatal(c, "encode failed");
        }
        p->out->wr += (uint32_t)w;
        p->pend_off += (uint32_t)piece;
        p->pend_len -= (uint32_t)piece;
        p->bytes += piece;
    }
    return 0;
}

/* The remote ended before a byte of response came down: 1 if the inbound
 * answered the client itself and closed c (lr_ib_ops.no_response). */
static int no_response(struct lr_conn *c, struct lr_pipe *p, const char *reason)
{
    return p == &c->down && !p->bytes && c->ibops->no_response &&
           c->ibops->no_response(c, reason);
}

/* Decodes the next unit from `in` (in place).  1 = a unit is pending,
 * 0 = need more input, -1 = connection closed. */
static int decode(struct lr_conn *c, struct lr_pipe *p)
{
    if (!p->in || lr_buf_len(p->in) == 0 || p->src_eof == 2)
        return 0;
    uint8_t *head = lr_buf_head(p->in);
    size_t len = lr_buf_len(p->in), consumed = 0, off = 0, plen = 0;
    if (p->pre) {
        int rc = p->pre(c, head, len, &consumed);
        if (rc == LR_AGAIN)
            return 0;
        if (rc != LR_OK)
            return no_response(c, p, "bad response header") ? -1
                   : fatal(c, "bad response header");
        p->pre = NULL;
        p->in->rd += (uint32_t)consumed;
        return decode(c, p);
    }
    int rc;
    if (!p->dec) {
        rc = LR_OK;
        consumed = plen = len;
        if (p->frame) {
            ssize_t k = p->frame(c, head, len, &consumed);
            if (k < 0)
                return fatal(c, "bad framing");
            if (consumed == 0)
                return 0;
            plen = (size_t)k;
        }
    } else {
        rc = lr_body_open_inplace(p->dec, head, len, &consumed, &off, &plen);
        if (rc == LR_AGAIN) {
            /* the source ended inside a chunk: the stream was cut, and a
             * clean FIN would pass the cut transfer off as complete */
            if (p->src_eof == 1)
                return cut(c, "stream cut inside a chunk");
            return 0;
        }
        if (rc < 0)
            return fatal(c, "bad chunk");
    }
    p->pend_off = p->in->rd + (uint32_t)off;
    p->pend_len = (uint32_t)plen;
    p->in->rd += (uint32_t)consumed;
    if (rc == LR_DONE) {
        /* the end chunk: anything after it is ignored */
        p->src_eof = 2;
        p->in->rd = p->in->wr;
    }
    return 1;
}

static int flush(struct lr_conn *c, struct lr_pipe *p, struct lr_side *dst)
{
    struct ev_loop *loop = c->lp->loop;
    if (dst->fd < 0)
        return 0;
    while (p->out && lr_buf_len(p->out)) {
        ssize_t n = send(dst->fd, lr_buf_head(p->out), lr_buf_len(p->out),
                         MSG_NOSIGNAL);
        if (n > 0) {
            p->out->rd += (uint32_t)n;
            c->t_last = ev_now(loop);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(loop, &dst->wio);
            return 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return fatal(c, errno == EPIPE || errno == ECONNRESET ? "reset" : "write failed");
    }
    ev_io_stop(loop, &dst->wio);
    if (p->out) {
        lr_buf_put(p->out);
        p->out = NULL;
    }
    return 0;
}

static int ensure_in(struct lr_pipe *p);
static int pump(struct lr_conn *c, struct lr_pipe *p, struct lr_side *src,
                struct lr_side *dst)
{
    if (c->doom)
        return fatal(c, c->doom);
    if (c->state != LR_CS_RELAY) {
        /* handshake replies only */
        return p->out ? flush(c, p, dst) : 0;
    }
    if (p->prefix && !p->lazy_prefix) {
        /* the VMess request header goes out at once, with or without
         * payload: server-first protocols must not wait for the client */
        if (!p->out && !(p->out = lr_buf_get()))
            return fatal(c, "out of memory");
        lr_buf_compact(p->out);
        memcpy(lr_buf_tail(p->out), p->prefix, p->prefix_len);
        p->out->wr += p->prefix_len;
        free(p->prefix);
        p->prefix = NULL;
    }
    for (int round = 0; round < 256; round++) {
        int more = 1;
        if (!p->pend_len) {
            more = decode(c, p);
            if (more < 0)
                return -1;
        }
        int blocked = 0;
        if (p->pend_len && (blocked = emit(c, p, src, dst)) < 0)
            return -1;
        if (flush(c, p, dst) < 0)
            return -1;
        if (blocked > 0)
            break; /* a virtual destination is full; it kicks us */
        /* stop when the destination is full (its write watcher resumes
         * us) or when there is nothing left to decode */
        if (p->out && lr_buf_len(p->out))
            break;
        if (!p->pend_len && (!more || !p->in || lr_buf_len(p->in) == 0))
            break;
    }
    if (p->in && lr_buf_len(p->in) == 0 && !p->pend_len) {
        lr_buf_put(p->in);
        p->in = NULL;
    }
    /* the server closed before its response header was complete: nothing
     * more can come, so the client must see the close */
    if (p->src_eof && p->pre)
        return no_response(c, p, "closed before the response header") ? -1
               : cut(c, "closed before the response header");
    if (p->src_eof && !p->pend_len && (!p->in || lr_buf_len(p->in) == 0) &&
        !p->end_written && no_response(c, p, "closed without a response"))
        return -1;
    /* the source ended and everything before it went out: end marker */
    if (p->src_eof && !p->pend_len && (!p->in || lr_buf_len(p->in) == 0) &&
        !p->pre && !p->end_written) {
        if (!dst->dgram && !dst->sink) {
            if (!p->out && !(p->out = lr_buf_get()))
                return fatal(c, "out of memory");
            lr_buf_compact(p->out);
            if (p->prefix) { /* nothing was ever sent: header, then end */
                memcpy(lr_buf_tail(p->out), p->prefix, p->prefix_len);
                p->out->wr += p->prefix_len;
                free(p->prefix);
                p->prefix = NULL;
            }
            if (p->enc) {
                size_t w = 0;
                if (lr_body_seal_end(p->enc, lr_buf_tail(p->out),
                                     lr_buf_room(p->out), &w) != LR_OK)
                    return fatal(c, "encode failed");
                p->out->wr += (uint32_t)w;
            }
        }
        p->end_written = 1;
        if (flush(c, p, dst) < 0)
            return -1;
    }
    if (p->end_written && !p->out && !p->closed) {
        p->closed = 1;
        if (dst->sink_end) {
            dst->sink_end(c);
        } else if (!dst->dgram && dst->fd >= 0) {
            shutdown(dst->fd, SHUT_WR);
        } else if (dst->dgram && dst->fd >= 0 && c->idle_timeout > UDP_LINGER) {
            /* the client's side of a UDP session ended; the datagram
             * socket never will: replies still on their way get
             * UDP_LINGER seconds (v2ray's uplinkOnly), not the whole idle
             * timeout, which held 2 fds per ended session for 300 s */
            c->idle_timeout = UDP_LINGER;
            c->t_last = ev_now(c->lp->loop);
            ev_timer_stop(c->lp->loop, &c->timer);
            ev_timer_set(&c->timer, UDP_LINGER, 0.);
            ev_timer_start(c->lp->loop, &c->timer);
        }
    }
    /* a virtual source can send more now */
    if (src->room && !p->src_eof && !p->pend_len &&
        (!p->in || lr_buf_room(p->in) > 0 || p->in->rd > 0))
        src->room(c);
    if (c->pol) {
        uint64_t total = c->up.bytes + c->down.bytes;
        if (total != c->charged) {
            int over = lr_policy_charge(c->pol, (double)(total - c->charged));
            c->charged = total;
            if (over)
                return fatal(c, "quota exceeded");
        }
    }
    if (c->doom)
        return fatal(c, c->doom);
    if (c->up.closed && c->down.closed)
        return fatal(c, "done");
    return 0;
}

/* Reads are wanted while a pipe's input has room and nothing waits. */
static void update_reads(struct lr_conn *c)
{
    struct ev_loop *loop = c->lp->loop;
    struct lr_pipe *ps[2] = {&c->up, &c->down};
    struct lr_side *ss[2] = {&c->cli, &c->rem};
    if (c->state != LR_CS_RELAY)
        return;
    if (c->pol && !c->throttled) {
        double wait = lr_policy_wait(c->pol, ev_now(loop));
        if (wait > 0) {
            /* the user's bucket is in debt: read nothing until it refills */
            c->throttled = 1;
            ev_timer_set(&c->throttle, wait, 0.);
            ev_timer_start(loop, &c->throttle);
        }
    }
    for (int i = 0; i < 2; i++) {
        struct lr_pipe *p = ps[i];
        int want = !p->src_eof && !p->pend_len &&
                   (!p->out || lr_buf_len(p->out) < LR_BUF_CAP / 2) &&
                   (!p->in || lr_buf_room(p->in) > 0 || p->in->rd > 0) &&
                   /* a datagram source reads one datagram per unit */
                   (!ss[i]->dgram || !p->in || lr_buf_len(p->in) == 0);
        if (ss[i]->fd < 0)
            continue;
        if (c->throttled)
            want = 0;
        if (want)
            ev_io_start(loop, &ss[i]->rio);
        else
            ev_io_stop(loop, &ss[i]->rio);
    }
}

static void throttle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, throttle);
    c->throttled = 0;
    update_reads(c);
}

static void side_readable(struct lr_conn *c, struct lr_pipe *p,
                          struct lr_side *src, struct lr_side *dst)
{
    if (ensure_in(p) < 0) {
        lr_conn_close(c, "out of memory");
        return;
    }
    if (p->pend_len == 0 && lr_buf_room(p->in) < 2048)
        lr_buf_compact(p->in);
    size_t room = lr_buf_room(p->in);
    if (room == 0) {
        update_reads(c);
        return;
    }
    ssize_t n = recv(src->fd, lr_buf_tail(p->in), room, 0);
    if (n > 0) {
        p->in->wr += (uint32_t)n;
        c->t_last = ev_now(c->lp->loop);
    } else if (n == 0) {
        if (!p->src_eof)
            p->src_eof = 1;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return;
    } else {
        const char *why = errno == ECONNRESET ? "reset" : "read failed";
        if (!no_response(c, p, why))
            lr_conn_close(c, why);
        return;
    }
    if (pump(c, p, src, dst) < 0)
        return;
    update_reads(c);
}

static void side_writable(struct lr_conn *c, struct lr_pipe *p,
                          struct lr_side *src, struct lr_side *dst)
{
    if (pump(c, p, src, dst) < 0)
        return;
    update_reads(c);
}

/* Client bytes while the outbound connects (read_while_dialing): buffered
 * in the up pipe for the relay to take; a full buffer or the client's end
 * stops the watcher, and lr_conn_start_relay's update_reads decides again. */
static void dial_read(struct lr_conn *c)
{
    struct ev_loop *loop = c->lp->loop;
    struct lr_pipe *p = &c->up;
    if (p->src_eof || p->pend_len || ensure_in(p) < 0) {
        ev_io_stop(loop, &c->cli.rio);
        return;
    }
    if (lr_buf_room(p->in) < 2048)
        lr_buf_compact(p->in);
    size_t room = lr_buf_room(p->in);
    if (room == 0) {
        ev_io_stop(loop, &c->cli.rio);
        return;
    }
    ssize_t n = recv(c->cli.fd, lr_buf_tail(p->in), room, 0);
    if (n > 0) {
        p->in->wr += (uint32_t)n;
        c->t_last = ev_now(loop);
        if (lr_buf_room(p->in) == 0)
            ev_io_stop(loop, &c->cli.rio);
    } else if (n == 0) {
        p->src_eof = 1;
        ev_io_stop(loop, &c->cli.rio);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        lr_conn_close(c, errno == ECONNRESET ? "reset" : "read failed");
    }
}

static void cli_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, cli.rio);
    switch (c->state) {
    case LR_CS_HANDSHAKE:
        c->ibops->readable(c);
        return;
    case LR_CS_DRAIN:
    case LR_CS_LINGER:
        drain_read(c);
        return;
    case LR_CS_RELAY:
        side_readable(c, &c->up, &c->cli, &c->rem);
        return;
    case LR_CS_SNIFF:
        sniff_read(c);
        return;
    case LR_CS_DIAL:
        dial_read(c);
        return;
    default:
        ev_io_stop(loop, w);
    }
}

static void cli_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, cli.wio);
    if (c->state != LR_CS_RELAY) {
        if (flush(c, &c->down, &c->cli) < 0)
            return;
        return;
    }
    side_writable(c, &c->down, &c->rem, &c->cli);
}

static void rem_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, rem.rio);
    if (c->state != LR_CS_RELAY) {
        ev_io_stop(loop, w);
        return;
    }
    side_readable(c, &c->down, &c->rem, &c->cli);
}

static void rem_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, rem.wio);
    if (c->state != LR_CS_RELAY) {
        ev_io_stop(loop, w);
        return;
    }
    side_writable(c, &c->up, &c->cli, &c->rem);
}
