/*
 * SOCKS5 UDP ASSOCIATE (RFC 1928 section 7).  The association is a UDP
 * socket bound to the inbound's address, alive as long as the client's TCP
 * control connection.  Each destination the client sends to gets its own
 * session: a connection with a virtual client side (lr_dispatch_session)
 * that is routed and dialled like any other -- a connected UDP socket for
 * the direct outbound, a VMess UDP request (command 2, one datagram per
 * chunk) for a VMess outbound.  Replies are wrapped in the SOCKS UDP
 * header and sent to the client's address.  Fragments (FRAG != 0) are
 * dropped, as most servers do.
 *
 * XUDP (inbound/xudp_client.c): datagrams the rules send to a VMess
 * outbound with `xudp = true` (ports 53 and 443 apart) go as one full-cone
 * XUDP stream instead, each with its own destination; replies come back
 * with the address they came from.
 *
 * Limits: an association holds at most the inbound's max_sessions
 * destinations at once, each counted in the inbound's session pool
 * (max_connections); a datagram to a new destination beyond either is
 * dropped.  The association (and its control connection) ends after
 * idle_timeout without a datagram either way.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "inbound/inbound.h"

#define UDP_MAX 65535


struct udp_assoc;

struct udp_sess {
    struct lr_conn *conn;
    struct udp_assoc *a;
    char key[300];             /* "host:port" */
    struct lr_dest dst;
};

struct udp_assoc {
    struct lr_conn *ctl;       /* the TCP control connection */
    int fd;
    ev_io io;
    int have_client;
    struct lr_addr client;
    struct udp_sess **sess;
    uint32_t nsess, sess_size;
    ev_timer idle;             /* idle_timeout without a datagram: end */
    ev_tstamp last;            /* the last datagram, either way */
    struct lr_xudpc *xudp;     /* the association's XUDP stream, if any */
};

/* the socks inbound keeps this as its state once associated */
struct socks_assoc_state {
    uint8_t stage;             /* shares the first byte with struct socks_in */
    struct udp_assoc *a;
};

static __thread uint8_t dgram_buf[UDP_MAX + 300]; /* per worker thread */

/* One datagram to the associated client: the SOCKS5 UDP header (RSV,
 * FRAG 0, the address `d` it comes from), then the payload; dropped when
 * it would not fit. */
static void to_client(struct udp_assoc *a, const struct lr_dest *d, const uint8_t *data,
                      size_t len, struct ev_loop *loop)
{
    size_t o = 0;
    dgram_buf[o++] = 0;
    dgram_buf[o++] = 0;
    dgram_buf[o++] = 0;
    if (d->atyp == LR_ATYP_IPV4) {
        dgram_buf[o++] = 1;
        memcpy(dgram_buf + o, d->ip, 4);
        o += 4;
    } else if (d->atyp == LR_ATYP_IPV6) {
        dgram_buf[o++] = 4;
        memcpy(dgram_buf + o, d->ip, 16);
        o += 16;
    } else {
        size_t hl = strlen(d->host);
        dgram_buf[o++] = 3;
        dgram_buf[o++] = (uint8_t)hl;
        memcpy(dgram_buf + o, d->host, hl);
        o += hl;
    }
    lr_put_be16(dgram_buf + o, d->port);
    o += 2;
    if (len > sizeof(dgram_buf) - o)
        return;
    memcpy(dgram_buf + o, data, len);
    o += len;
    sendto(a->fd, dgram_buf, o, 0, (struct sockaddr *)&a->client.ss, a->client.len);
    a->last = ev_now(loop);
}

static size_t sess_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct udp_sess *s = c->ib_state;
    if (!s || !s->a || !s->a->have_client)
        return len;
    to_client(s->a, &s->dst, data, len, c->lp->loop);
    return len;
}

/* A reply of the XUDP stream: to the client, with its source. */
static void xudp_reply(void *ctx, const struct lr_dest *d, const uint8_t *data, size_t len)
{
    struct udp_assoc *a = ctx;
    if (!a->have_client)
        return;
    to_client(a, d, data, len, a->ctl->lp->loop);
}

static void xudp_gone(void *ctx)
{
    struct udp_assoc *a = ctx;
    struct lr_xudpc *x = a->xudp;
    a->xudp = NULL; /* the next datagram opens another */
    lr_xudpc_free(x);
}

static void sess_connected(struct lr_conn *c)
{
    lr_conn_start_relay(c);
}

static void sess_free(struct lr_conn *c)
{
    struct udp_sess *s = c->ib_state;
    if (!s)
        return;
    if (s->a) {
        for (uint32_t i = 0; i < s->a->nsess; i++)
            if (s->a->sess[i] == s) {
                s->a->sess[i] = s->a->sess[--s->a->nsess];
                break;
            }
    }
    free(s);
    c->ib_state = NULL;
}

static const struct lr_ib_ops sess_ops = {
    .connected = sess_connected,
    .free = sess_free,
};

static int same_ip(const struct lr_addr *a, const struct lr_addr *b)
{
    uint8_t x[16], y[16];
    int n = lr_addr_ip_bytes(a, x), m = lr_addr_ip_bytes(b, y);
    return n == m && memcmp(x, y, (size_t)n) == 0;
}

static void assoc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct udp_assoc *a = (struct udp_assoc *)((char *)w -
                          offsetof(struct udp_assoc, io));
    for (int round = 0; round < 32; round++) {
        struct lr_addr from;
        from.len = sizeof(from.ss);
        ssize_t n = recvfrom(a->fd, dgram_buf, sizeof(dgram_buf), 0,
                             (struct sockaddr *)&from.ss, &from.len);
        if (n < 0)
            return;
        a->last = ev_now(loop);
        /* only the client that opened the association may use it */
        if (!same_ip(&from, &a->ctl->peer))
            continue;
        if (!a->have_client) {
            a->client = from;
            a->have_client = 1;
        } else if (lr_addr_port(&from) != lr_addr_port(&a->client)) {
            continue;
        }
        if (n < 4 || dgram_buf[0] || dgram_buf[1] || dgram_buf[2])
            continue; /* malformed or fragmented */
        struct lr_dest d;
        memset(&d, 0, sizeof(d));
        int used = lr_socks_parse_addr(dgram_buf + 3, (size_t)n - 3, &d);
        if (used <= 0)
            continue;
        d.network = LR_NET_UDP;
        const uint8_t *payload = dgram_buf + 3 + used;
        size_t plen = (size_t)n - 3 - (size_t)used;
        if (plen == 0)
            continue;
        char key[300];
        snprintf(key, sizeof(key), "%s:%u", d.host, d.port);
        struct udp_sess *s = NULL;
        for (uint32_t i = 0; i < a->nsess && !s; i++)
            if (strcmp(a->sess[i]->key, key) == 0)
                s = a->sess[i];
        if (!s) {
            /* routed to an XUDP outbound: the association's one stream */
            struct lr_outbound *xob = lr_xudpc_route(a->ctl, &d);
            if (xob && a->xudp && lr_xudpc_takes(a->xudp, xob)) {
                lr_xudpc_send(a->xudp, &d, payload, plen);
                continue;
            }
            if (xob && !a->xudp) {
                a->xudp = lr_xudpc_open(a->ctl, xob, &a->client, &d, payload, plen,
                                        xudp_reply, xudp_gone, a);
                if (a->xudp)
                    continue;
            }
        }
        if (!s) {
            if (a->nsess >= a->ctl->ib->max_sessions)
                continue; /* max_sessions destinations: dropped */
            if (a->nsess == a->sess_size) {
                uint32_t k = a->sess_size ? a->sess_size * 2 : 8;
                struct udp_sess **ns = realloc(a->sess, sizeof(*ns) * k);
                if (!ns)
                    continue;
                a->sess = ns;
                a->sess_size = k;
            }
            s = calloc(1, sizeof(*s));
            if (!s)
                continue;
            struct lr_conn *c = lr_dispatch_session(a->ctl, &sess_ops, sess_sink);
            if (!c) { /* the inbound's session pool is full */
                free(s);
                continue;
            }
            s->conn = c;
            s->a = a;
            s->dst = d;
            snprintf(s->key, sizeof(s->key), "%s", key);
            c->ib_state = s;
            c->dst = d;
            c->idle_timeout = c->ib->idle_timeout;
            a->sess[a->nsess++] = s;
            /* the first datagram waits in the session until it is dialled */
            if (lr_conn_push_datagram(c, payload, plen) < 0)
                continue;
            lr_dispatch(c); /* may close c (no route, blackhole) */
            continue;
        }
        lr_conn_push_datagram(s->conn, payload, plen);
    }
}

static void assoc_free(struct udp_assoc *a)
{
    ev_io_stop(a->ctl->lp->loop, &a->io);
    ev_timer_stop(a->ctl->lp->loop, &a->idle);
    if (a->fd >= 0)
        close(a->fd);
    if (a->xudp) {
        struct lr_xudpc *x = a->xudp;
        a->xudp = NULL;
        lr_xudpc_free(x);
    }
    while (a->nsess) {
        struct udp_sess *s = a->sess[a->nsess - 1];
        s->a = NULL;
        a->nsess--;
        lr_conn_close(s->conn, "udp association closed");
    }
    free(a->sess);
    free(a);
}

static void assoc_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct udp_assoc *a = w->data;
    struct lr_conn *c = a->ctl;
    ev_tstamp end = a->last + c->idle_timeout;
    if (ev_now(loop) >= end) {
        lr_conn_close(c, "idle timeout");
        return;
    }
    ev_timer_set(w, end - ev_now(loop) + 0.01, 0.);
    ev_timer_start(loop, w);
}

static void ctl_readable(struct lr_conn *c)
{
    uint8_t sink[512];
    ssize_t n = lr_side_read(&c->cli, sink, sizeof(sink));
    if (n > 0 || n == -EAGAIN)
        return;
    lr_conn_close(c, "udp association ended");
}

static void ctl_free(struct lr_conn *c)
{
    struct socks_assoc_state *st = c->ib_state;
    if (st) {
        if (st->a)
            assoc_free(st->a);
        free(st);
        c->ib_state = NULL;
    }
}

static const struct lr_ib_ops ctl_ops = {
    .readable = ctl_readable,
    .free = ctl_free,
};

int lr_socks_udp_associate(struct lr_conn *c)
{
    struct udp_assoc *a = calloc(1, sizeof(*a));
    struct lr_addr bind_addr = c->ib->addr;
    uint8_t r[22];
    size_t rl;
    if (!a) {
        lr_conn_close(c, "out of memory");
        return -1;
    }
    a->ctl = c;
    lr_addr_set_port(&bind_addr, 0);
    a->fd = lr_sock_listen(&bind_addr, SOCK_DGRAM, 0);
    if (a->fd < 0) {
        uint8_t fail[10] = {5, 1, 0, 1, 0, 0, 0, 0, 0, 0};
        free(a);
        lr_conn_reply_close(c, fail, sizeof(fail), "udp bind failed");
        return -1;
    }
    struct lr_addr local;
    local.len = sizeof(local.ss);
    getsockname(a->fd, (struct sockaddr *)&local.ss, &local.len);
    uint8_t ip[16];
    int il = lr_addr_ip_bytes(&local, ip);
    r[0] = 5;
    r[1] = 0;
    r[2] = 0;
    r[3] = il == 4 ? 1 : 4;
    memcpy(r + 4, ip, (size_t)il);
    lr_put_be16(r + 4 + il, lr_addr_port(&local));
    rl = 4 + (size_t)il + 2;
    /* the socks state becomes the association's: swap the ops */
    free(c->ib_state);
    struct socks_assoc_state *st = calloc(1, sizeof(*st));
    if (!st) {
        close(a->fd);
        free(a);
        c->ib_state = NULL;
        lr_conn_close(c, "out of memory");
        return -1;
    }
    st->a = a;
    c->ib_state = st;
    c->ibops = &ctl_ops;
    ev_io_init(&a->io, assoc_read_cb, a->fd, EV_READ);
    ev_io_start(c->lp->loop, &a->io);
    /* the control connection lives until the client closes it, or until
     * idle_timeout passes without a datagram either way */
    ev_timer_stop(c->lp->loop, &c->timer);
    a->last = ev_now(c->lp->loop);
    ev_timer_init(&a->idle, assoc_idle_cb, c->idle_timeout, 0.);
    a->idle.data = a;
    ev_timer_start(c->lp->loop, &a->idle);
    if (lr_conn_send_client(c, r, rl) < 0)
        return -1;
    ev_io_start(c->lp->loop, &c->cli.rio);
    return 0;
}
