/*
 * Connections: one allocation with its watchers and timer inside it
 * (libev "associating custom data"), its two sides and two pipes; its
 * life cycle (handshake, the silent drain of a refused header, timeouts,
 * the deferred pump queue, close) and the I/O callbacks, which hand the
 * relay (net/relay.c) its work.  What a connection means (hooks, policy,
 * routing, the access log) is its owner's (struct lr_conn_owner, set per
 * loop by the dispatch layer).
 *
 * Teardown: every path that can close the connection returns -1 so its
 * caller stops touching it; lr_conn_close stops watchers, cancels DNS and
 * frees at once (no callback of ours runs after that for this object).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/relay.h"

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

struct lr_conn *lr_conn_new(struct lr_loop *lp, int fd, const struct lr_addr *src,
                            const struct lr_ib_ops *ops, double handshake_timeout,
                            double idle_timeout)
{
    struct lr_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->id = lp->next_conn_id += lp->id_step;
    c->lp = lp;
    c->ibops = ops;
    c->src = *src;
    c->user = -1;
    for (int i = 0; i < 6; i++)
        c->st[i] = -1;
    c->state = LR_CS_HANDSHAKE;
    c->cli.fd = fd;
    c->rem.fd = -1;
    c->dial.fd = -1;
    c->t_start = c->t_last = ev_now(lp->loop);
    c->idle_timeout = idle_timeout;
    ev_io_init(&c->cli.rio, cli_read_cb, fd < 0 ? 0 : fd, EV_READ);
    ev_io_init(&c->cli.wio, cli_write_cb, fd < 0 ? 0 : fd, EV_WRITE);
    ev_init(&c->rem.rio, rem_read_cb);
    ev_init(&c->rem.wio, rem_write_cb);
    ev_init(&c->timer, timer_cb);
    ev_init(&c->throttle, lr_relay_throttle_cb);
    /* the handshake deadline counts from accept; bytes do not extend it */
    c->deadline = c->t_start + handshake_timeout;
    ev_timer_set(&c->timer, handshake_timeout, 0.);
    ev_timer_start(lp->loop, &c->timer);
    if (fd >= 0) {
        lr_side_set_fd(&c->cli, fd);
        ev_io_start(lp->loop, &c->cli.rio);
    } else {
        /* a virtual client: datagrams or stream bytes are pushed in */
        c->cli.dgram = 1;
        c->dst.network = LR_NET_UDP;
    }
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    lp->opened++;
    atomic_fetch_add_explicit(&live_conns, 1, memory_order_relaxed);
    return c;
}

int lr_conn_push_datagram(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct lr_pipe *p = &c->up;
    if (p->pend_len || (p->in && lr_buf_len(p->in)))
        return 0; /* busy: UDP may drop */
    if (lr_pipe_ensure_in(p) < 0) {
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
    return lr_relay_pump(c, p, &c->cli, &c->rem);
}

static size_t push_into(struct lr_conn *c, struct lr_pipe *p,
                        struct lr_side *src, struct lr_side *dst,
                        const uint8_t *data, size_t len)
{
    if (lr_pipe_ensure_in(p) < 0)
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
    if (lr_pipe_ensure_in(p) < 0)
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
        if (lr_relay_pump(c, &c->up, &c->cli, &c->rem) < 0)
            continue;
        if (lr_relay_pump(c, &c->down, &c->rem, &c->cli) < 0)
            continue;
        lr_relay_update_reads(c);
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

/* The layers above a side's socket (TLS, WebSocket...), top down. */
static void side_free_layers(struct lr_side *s)
{
    while (s->top && s->top != &s->tcp) {
        struct lr_stream *l = s->top;
        s->top = l->lower;
        l->ops->free(l);
    }
}

/* ------------------------------------------------------ lingering close */

/* A relayed stream socket closed while its peer may still send (a
 * WebSocket close frame, a TLS close_notify, bytes after a VMess end
 * chunk) answers those bytes with an RST, and the RST makes both kernels
 * drop what we sent that the peer has not read yet: the tail of a
 * download, after the access line said it all went.  So a graceful close
 * first reads what is there; when the peer has not ended, our side is
 * shut (a FIN after everything queued) and the socket lingers, reading
 * and discarding, until the peer's end, an error, LINGER_S seconds or
 * LINGER_BYTES bytes (nginx's lingering_close).  A lingering socket is no
 * connection: it holds no buffer, no generation and no stop. */
#define LINGER_S 2.0
#define LINGER_BYTES (256u * 1024u)
#define LINGER_MAX 4096u

struct lr_linger {
    ev_io io;
    ev_timer t;
    struct lr_loop *lp;
    struct lr_linger *prev, *next;
    uint32_t got;
};

/* Reads and discards: 1 when the peer ended (or failed, or sent too
 * much), 0 while it may send more. */
static int linger_drain(int fd, uint32_t *got)
{
    uint8_t sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n > 0) {
            *got += (uint32_t)n;
            if (*got > LINGER_BYTES)
                return 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
    return 0;
}

static void linger_free(struct lr_linger *l)
{
    struct lr_loop *lp = l->lp;
    ev_io_stop(lp->loop, &l->io);
    ev_timer_stop(lp->loop, &l->t);
    close(l->io.fd);
    if (l->prev)
        l->prev->next = l->next;
    else
        lp->lingering = l->next;
    if (l->next)
        l->next->prev = l->prev;
    lp->nlinger--;
    free(l);
}

static void linger_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_linger *l = (struct lr_linger *)w;
    if (linger_drain(w->fd, &l->got))
        linger_free(l);
}

static void linger_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    linger_free((struct lr_linger *)((char *)w - offsetof(struct lr_linger, t)));
}

/* Closes a relayed stream socket gracefully (see above). */
static void linger_close(struct lr_loop *lp, int fd)
{
    uint32_t got = 0;
    struct lr_linger *l;
    if (linger_drain(fd, &got) || lp->nlinger >= LINGER_MAX ||
        shutdown(fd, SHUT_WR) < 0 || !(l = calloc(1, sizeof(*l)))) {
        close(fd);
        return;
    }
    l->lp = lp;
    l->got = got;
    ev_io_init(&l->io, linger_read_cb, fd, EV_READ);
    ev_timer_init(&l->t, linger_timer_cb, LINGER_S, 0.);
    ev_io_start(lp->loop, &l->io);
    ev_timer_start(lp->loop, &l->t);
    l->next = lp->lingering;
    if (l->next)
        l->next->prev = l;
    lp->lingering = l;
    lp->nlinger++;
}

void lr_loop_close_lingering(struct lr_loop *lp)
{
    while (lp->lingering)
        linger_free(lp->lingering);
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    struct lr_loop *lp = c->lp;
    struct ev_loop *loop = lp->loop;
    if (!c->reason)
        c->reason = reason;
    lr_conn_count_traffic(c);
    ev_io_stop(loop, &c->dial.io);
    ev_timer_stop(loop, &c->throttle);
    /* A remote connection that carried nothing of ours (a dial under way,
     * or a VMess server that never got the request header) ends with an
     * RST: a FIN would be an empty handshake, which a VMess server holds
     * to its deadline (as it must for a prober), tying up its descriptor
     * for nothing. */
    struct linger rst = {1, 0};
    if (c->dial.fd >= 0) {
        setsockopt(c->dial.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
        close(c->dial.fd);
    }
    free(c->dial.addrs);
    c->dial.addrs = NULL;
    int rem_rst = c->rem.fd >= 0 && !c->rem.dgram && c->up.prefix;
    if (rem_rst)
        setsockopt(c->rem.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
    if (lp->owner->closing)
        lp->owner->closing(c); /* the close hook, the policy's accounts */
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
    side_free_layers(&c->cli);
    side_free_layers(&c->rem);
    /* a relay's sockets close gracefully; refused handshakes keep their
     * own timing (a prober sees the same close as before), aborts RST */
    int graceful = c->state == LR_CS_RELAY && !c->aborted && !c->no_linger;
    if (c->cli.fd >= 0) {
        if (graceful && !c->cli.dgram)
            linger_close(lp, c->cli.fd);
        else
            close(c->cli.fd);
    }
    if (c->rem.fd >= 0) {
        if (graceful && !c->rem.dgram && !rem_rst)
            linger_close(lp, c->rem.fd);
        else
            close(c->rem.fd);
    }
    if (c->ibops && c->ibops->free)
        c->ibops->free(c);
    if (c->obops && c->obops->free)
        c->obops->free(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lp->nconns--;
    atomic_fetch_sub_explicit(&live_conns, 1, memory_order_relaxed);
    if (lp->owner->closed)
        lp->owner->closed(c); /* the access line, the counts, the generation */
    pipe_free(&c->up);
    pipe_free(&c->down);
    free(c);
}

void lr_conn_abort(struct lr_conn *c, const char *reason)
{
    /* SO_LINGER 0: close() sends an RST instead of a FIN */
    struct linger l = {1, 0};
    if (c->cli.fd >= 0 && !c->cli.dgram)
        setsockopt(c->cli.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    if (c->rem.fd >= 0 && !c->rem.dgram)
        setsockopt(c->rem.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    c->aborted = 1;
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

/* The client side's FIN after a refused or timed-out handshake: a virtual
 * stream client (a gRPC tunnel) ends through its sink_end. */
static void cli_fin(struct lr_conn *c)
{
    if (c->cli.fd >= 0)
        lr_side_shutdown(&c->cli);
    else if (c->cli.sink_end)
        c->cli.sink_end(c);
}

/* Reads on the client socket while draining or lingering (a virtual
 * client has no socket: what it pushes is dropped by its owner). */
static void cli_watch(struct lr_conn *c)
{
    if (c->cli.fd >= 0)
        ev_io_start(c->lp->loop, &c->cli.rio);
}

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
        cli_fin(c);
        c->state = LR_CS_LINGER;
        ev_timer_set(&c->timer, 2., 0.);
        ev_timer_start(loop, &c->timer);
        cli_watch(c);
        return;
    case LR_CS_DIAL:
        lr_conn_dial_failed(c, -ETIMEDOUT, "connect timeout");
        return;
    case LR_CS_SNIFF:
        c->lp->owner->sniff_deadline(c); /* nothing recognisable in time */
        return;
    case LR_CS_DRAIN:
        /* FIN now, at the deadline whatever was wrong; then give the peer
         * a moment to close so unread bytes do not turn our close into a
         * reset */
        cli_fin(c);
        c->state = LR_CS_LINGER;
        ev_timer_set(&c->timer, 2., 0.);
        ev_timer_start(loop, &c->timer);
        /* a peer that already sent its FIN is closed at once (drain_read) */
        cli_watch(c);
        return;
    case LR_CS_LINGER:
        lr_conn_close(c, c->reason ? c->reason : "drained");
        return;
    case LR_CS_RELAY: {
        ev_tstamp idle_end = c->t_last + c->idle_timeout;
        if (now >= idle_end) {
            /* a peer silent for idle_timeout gets no lingering wait for
             * its end either: the sockets close at once (a FIN after what
             * is queued), and the descriptors go with the connection */
            c->no_linger = 1;
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

int lr_pipe_ensure_in(struct lr_pipe *p)
{
    if (!p->in && !(p->in = lr_buf_get()))
        return -ENOMEM;
    if (lr_buf_room(p->in) == 0 && p->pend_len == 0)
        lr_buf_compact(p->in);
    return 0;
}

ssize_t lr_conn_read_client(struct lr_conn *c)
{
    if (c->handoff) {
        /* bytes an earlier stage (a transport's front) left in up.in: the
         * protocol that takes over sees them as its first read */
        c->handoff = 0;
        if (c->up.in && lr_buf_len(c->up.in))
            return (ssize_t)lr_buf_len(c->up.in);
    }
    if (c->cli.fd < 0) {
        /* a virtual stream client: its owner pushes bytes and hands them
         * over (handoff); nothing more comes until it does, or its end */
        return c->up.src_eof ? 0 : -EAGAIN;
    }
    if (lr_pipe_ensure_in(&c->up) < 0)
        return -ENOMEM;
    size_t room = lr_buf_room(c->up.in);
    if (room == 0)
        return -ENOBUFS;
    ssize_t n = lr_side_read(&c->cli, lr_buf_tail(c->up.in), room);
    if (n > 0)
        c->up.in->wr += (uint32_t)n;
    return n;
}

int lr_conn_send_client(struct lr_conn *c, const void *data, size_t len)
{
    struct lr_pipe *p = &c->down;
    if (!p->out || lr_buf_len(p->out) == 0) {
        /* nothing queued: try the socket first (a handshake reply almost
         * always fits), which saves arming the write watcher and a trip
         * through the loop.  Errors are left to the write watcher, which
         * closes the connection from its own callback. */
        ssize_t n = lr_side_write(&c->cli, data, len);
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

void lr_conn_send_now(struct lr_conn *c, const void *data, size_t len)
{
    if (c->cli.fd >= 0 && c->cli.top)
        (void)lr_side_write(&c->cli, data, len);
}

void lr_conn_reply_close(struct lr_conn *c, const void *data, size_t len,
                         const char *reason)
{
    struct lr_pipe *p = &c->down;
    if (p->out && lr_buf_len(p->out))
        lr_conn_send_now(c, lr_buf_head(p->out), lr_buf_len(p->out));
    if (len)
        lr_conn_send_now(c, data, len);
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
    cli_watch(c);
}

static void drain_read(struct lr_conn *c)
{
    uint8_t sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = lr_side_read(&c->cli, sink, sizeof(sink));
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
        if (n != -EAGAIN)
            lr_conn_close(c, c->reason);
        return;
    }
}

int lr_conn_shed(struct lr_loop *lp, struct lr_inbound *ib, int max)
{
    int n = 0;
    /* out of descriptors: sockets lingering after their close go first */
    while (!ib && lp->lingering && n < max) {
        linger_free(lp->lingering);
        n++;
    }
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
        lr_relay_side_readable(c, &c->up, &c->cli, &c->rem);
        return;
    case LR_CS_SNIFF:
        c->lp->owner->sniff_readable(c);
        return;
    case LR_CS_DIAL:
        lr_relay_dial_read(c);
        return;
    default:
        ev_io_stop(loop, w);
    }
}

static void cli_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, cli.wio);
    if (c->state != LR_CS_RELAY) {
        if (lr_relay_flush(c, &c->down, &c->cli) < 0)
            return;
        return;
    }
    lr_relay_side_writable(c, &c->down, &c->rem, &c->cli);
}

static void rem_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, rem.rio);
    if (c->state != LR_CS_RELAY) {
        /* the outbound's own handshake above the socket (TLS, an upgrade) */
        if (c->obops && c->obops->remote_io)
            c->obops->remote_io(c, EV_READ);
        else
            ev_io_stop(loop, w);
        return;
    }
    lr_relay_side_readable(c, &c->down, &c->rem, &c->cli);
}

static void rem_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, rem.wio);
    if (c->state != LR_CS_RELAY) {
        if (c->obops && c->obops->remote_io)
            c->obops->remote_io(c, EV_WRITE);
        else
            ev_io_stop(loop, w);
        return;
    }
    lr_relay_side_writable(c, &c->up, &c->cli, &c->rem);
}

