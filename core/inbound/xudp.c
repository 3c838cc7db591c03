/*
 * XUDP full-cone UDP for a Mux.Cool session (inbound/mux.c): an Xray
 * client sends each datagram of a UDP session with its own destination
 * (Keep frames carrying an address) and expects every reply with the
 * address it came from.  When such a session is routed to the direct
 * outbound, its connected datagram socket is swapped for an unconnected
 * one: datagrams go to each packet's destination from one local port, and
 * whatever reaches that port comes back with its source (endpoint-
 * independent mapping and filtering, "full cone", as Xray's freedom).
 *
 * The session stays an ordinary connection for everything else: routed,
 * hooked and counted once, by the New frame's destination; its remote side
 * becomes virtual (rem.sink sends to that destination).  A packet to
 * another destination is sent only if the routing rules pick the
 * session's outbound for it too (else it is dropped: a rule that blocks an
 * address holds inside a session as well), and obeys the private-address
 * refusal of the direct outbound.  Names are resolved without blocking
 * (c-ares), a few at a time, into a small per-session cache; a packet
 * waits for its name, one per lookup, and is dropped beyond that (UDP).
 *
 * Bounds per session: one socket, XUDP_NAMES cached names, XUDP_PENDING
 * lookups each holding one datagram (XUDP_PENDING_BYTES in all),
 * XUDP_ROUTES remembered verdicts.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "inbound/inbound.h"
#include "net/relay.h"
#include "route/route.h"

#define XUDP_NAMES 8
#define XUDP_PENDING 4
#define XUDP_PENDING_BYTES 16384 /* datagrams waiting for their names, at most */
#define XUDP_ROUTES 16
#define XUDP_NAME_TTL 60.0
#define XUDP_LINGER 2.0 /* as the relay's UDP_LINGER: replies after the client's End */

struct xudp_pend {
    struct lr_xudp *x;
    struct lr_dns_req *req;
    char host[256];
    uint16_t port;
    uint8_t *data;
    size_t len;
};

struct lr_xudp {
    struct lr_conn *c;
    int fd;
    int family;               /* AF_INET6 (dual stack) or AF_INET */
    int forbid_private;
    ev_io io;
    lr_xudp_reply_fn reply;
    struct lr_addr target;    /* the session's destination, as dialled */
    struct { char host[256]; struct lr_addr a; ev_tstamp until; } names[XUDP_NAMES];
    uint32_t next_name;
    struct xudp_pend pend[XUDP_PENDING];
    struct { char key[280]; uint8_t ok; } routes[XUDP_ROUTES];
    uint32_t nroutes, next_route;
    uint8_t paused;
};

static __thread uint8_t rbuf[65536]; /* per worker thread */

/* Payload moved outside the relay: counters, quota, the idle clock. */
static void account(struct lr_conn *c, uint64_t up, uint64_t down)
{
    c->up.bytes += up;
    c->down.bytes += down;
    c->t_last = ev_now(c->lp->loop);
    if (lr_relay_charge(c))
        lr_conn_doom(c, "quota exceeded");
}

/* An address the socket can send to (IPv4 mapped into a dual-stack
 * socket); 0 if it cannot. */
static int for_socket(const struct lr_xudp *x, const struct lr_addr *a,
                      struct lr_addr *out)
{
    uint8_t ip[16];
    int n = lr_addr_ip_bytes(a, ip);
    uint16_t port = lr_addr_port(a);
    if (x->family == AF_INET) {
        if (n != 4)
            return 0;
        lr_addr_from_bytes(ip, 4, port, out);
        return 1;
    }
    if (n == 4) {
        uint8_t m[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(m + 12, ip, 4);
        lr_addr_from_bytes(m, 16, port, out);
    } else {
        if (x->c->ob && x->c->ob->family == 4)
            return 0;
        lr_addr_from_bytes(ip, 16, port, out);
    }
    return 1;
}

static void send_to(struct lr_xudp *x, const struct lr_addr *a,
                    const uint8_t *data, size_t len)
{
    struct lr_addr to;
    if (x->forbid_private && lr_addr_is_private(a)) {
        lr_debug("conn %llu: xudp: private destination dropped",
                 (unsigned long long)x->c->id);
        return;
    }
    if (!for_socket(x, a, &to))
        return;
    if (x->c->ob && x->c->ob->family == 6) {
        uint8_t ip[16];
        if (lr_addr_ip_bytes(a, ip) == 4)
            return;
    }
    /* a full socket buffer drops the datagram, as the relay does */
    (void)sendto(x->fd, data, len, MSG_NOSIGNAL, (struct sockaddr *)&to.ss, to.len);
}

/* Whether the rules send destination d where this session goes. */
static int route_ok(struct lr_xudp *x, const struct lr_dest *d)
{
    struct lr_conn *c = x->c;
    char key[280];
    if (!c->gen || !c->ob)
        return 1;
    snprintf(key, sizeof(key), "%u|%s|%u", d->atyp, d->host, d->port);
    for (uint32_t i = 0; i < x->nroutes; i++)
        if (strcmp(x->routes[i].key, key) == 0)
            return x->routes[i].ok;
    int to_sniffed = 0;
    struct lr_route_query q = {
        .network = LR_NET_UDP, .atyp = d->atyp, .port = d->port,
        .ip = d->ip, .host = d->host,
        .user = c->user >= 0 ? c->gen->users[c->user].email : NULL,
        .inbound = c->ib->tag,
    };
    int32_t ob = lr_route_pick(c->gen->rules, c->gen->nrules, c->gen->default_ob,
                               &q, &to_sniffed);
    int ok = ob >= 0 && (uint32_t)ob < c->gen->nob && &c->gen->ob[ob] == c->ob;
    uint32_t k = x->nroutes < XUDP_ROUTES ? x->nroutes++ : x->next_route++ % XUDP_ROUTES;
    snprintf(x->routes[k].key, sizeof(x->routes[k].key), "%s", key);
    x->routes[k].ok = (uint8_t)ok;
    if (!ok)
        lr_debug("conn %llu: xudp: %s:%u routes elsewhere: dropped",
                 (unsigned long long)c->id, d->host, d->port);
    return ok;
}

static void resolved(void *ud, int err, const struct lr_addr *addrs, int n)
{
    struct xudp_pend *p = ud;
    struct lr_xudp *x = p->x;
    p->req = NULL;
    if (!err && n > 0) {
        uint32_t k = x->next_name++ % XUDP_NAMES;
        snprintf(x->names[k].host, sizeof(x->names[k].host), "%s", p->host);
        x->names[k].a = addrs[0];
        x->names[k].until = ev_now(x->c->lp->loop) + XUDP_NAME_TTL;
        struct lr_addr a = addrs[0];
        lr_addr_set_port(&a, p->port);
        send_to(x, &a, p->data, p->len);
    }
    free(p->data);
    p->data = NULL;
}

static void send_dest(struct lr_xudp *x, const struct lr_dest *d,
                      const uint8_t *data, size_t len)
{
    struct lr_addr a;
    if (!d) {
        send_to(x, &x->target, data, len);
        return;
    }
    if (!route_ok(x, d))
        return;
    if (d->atyp == LR_ATYP_IPV4 || d->atyp == LR_ATYP_IPV6) {
        lr_addr_from_bytes(d->ip, d->atyp == LR_ATYP_IPV4 ? 4 : 16, d->port, &a);
        send_to(x, &a, data, len);
        return;
    }
    int num = lr_host_numeric(d->host, &a);
    if (num < 0)
        return;
    if (num > 0) {
        lr_addr_set_port(&a, d->port);
        send_to(x, &a, data, len);
        return;
    }
    ev_tstamp now = ev_now(x->c->lp->loop);
    for (int i = 0; i < XUDP_NAMES; i++)
        if (x->names[i].host[0] && x->names[i].until > now &&
            strcmp(x->names[i].host, d->host) == 0) {
            a = x->names[i].a;
            lr_addr_set_port(&a, d->port);
            send_to(x, &a, data, len);
            return;
        }
    size_t held = 0;
    for (int i = 0; i < XUDP_PENDING; i++)
        held += x->pend[i].data ? x->pend[i].len : 0;
    for (int i = 0; i < XUDP_PENDING && held + len <= XUDP_PENDING_BYTES; i++) {
        struct xudp_pend *p = &x->pend[i];
        if (p->data)
            continue;
        if (!(p->data = malloc(len ? len : 1)))
            return;
        memcpy(p->data, data, len);
        p->len = len;
        p->x = x;
        p->port = d->port;
        snprintf(p->host, sizeof(p->host), "%s", d->host);
        p->req = lr_dns_resolve(d->host, d->port, x->family == AF_INET ? 4 :
                                x->c->ob ? x->c->ob->family : 0, resolved, p);
        if (!p->req) {
            free(p->data);
            p->data = NULL;
        }
        return;
    }
    lr_debug("conn %llu: xudp: lookups pending: datagram for %s dropped",
             (unsigned long long)x->c->id, d->host);
}

void lr_xudp_send(struct lr_xudp *x, const struct lr_dest *d,
                  const uint8_t *data, size_t len)
{
    send_dest(x, d, data, len);
    account(x->c, len, 0);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_xudp *x = w->data;
    for (int round = 0; round < 32 && !x->paused; round++) {
        struct lr_addr from;
        from.len = sizeof(from.ss);
        ssize_t n = recvfrom(x->fd, rbuf, sizeof(rbuf), 0,
                             (struct sockaddr *)&from.ss, &from.len);
        if (n < 0)
            return;
        /* the source as the client knows it: IPv4 unmapped */
        uint8_t ip[16];
        int il = lr_addr_ip_bytes(&from, ip);
        struct lr_addr src;
        lr_addr_from_bytes(ip, il, lr_addr_port(&from), &src);
        if (!x->reply(x->c, &src, rbuf, (size_t)n)) {
            /* the mux connection is full: wait for its room (the
             * datagram is lost, as a full socket would lose it) */
            x->paused = 1;
            ev_io_stop(loop, w);
            return;
        }
        account(x->c, 0, (uint64_t)n);
        if (x->c->doom)
            return;
    }
}

void lr_xudp_resume(struct lr_xudp *x)
{
    if (!x->paused)
        return;
    x->paused = 0;
    ev_io_start(x->c->lp->loop, &x->io);
}

/* The relay's up pipe (datagrams queued before the swap) to the target. */
static size_t rem_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct lr_xudp *x = c->rem.ctx;
    if (x && len)
        send_dest(x, NULL, data, len);
    return len;
}

/* The client ended the session: replies get XUDP_LINGER more seconds. */
static void rem_sink_end(struct lr_conn *c)
{
    if (c->idle_timeout > XUDP_LINGER) {
        c->idle_timeout = XUDP_LINGER;
        c->t_last = ev_now(c->lp->loop);
        ev_timer_stop(c->lp->loop, &c->timer);
        ev_timer_set(&c->timer, XUDP_LINGER, 0.);
        ev_timer_start(c->lp->loop, &c->timer);
    }
}

struct lr_xudp *lr_xudp_open(struct lr_conn *c, lr_xudp_reply_fn reply)
{
    if (!c->ob || c->ob->type != LR_OB_DIRECT || c->rem.fd < 0 || !c->rem.dgram)
        return NULL;
    struct lr_xudp *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->target.len = sizeof(x->target.ss);
    if (getpeername(c->rem.fd, (struct sockaddr *)&x->target.ss, &x->target.len) < 0) {
        free(x);
        return NULL;
    }
    x->fd = -1;
    if (c->ob->family != 4) {
        x->fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int off = 0;
        if (x->fd >= 0 &&
            setsockopt(x->fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0) {
            close(x->fd);
            x->fd = -1;
        }
        x->family = AF_INET6;
    }
    if (x->fd < 0) {
        x->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        x->family = AF_INET;
    }
    if (x->fd < 0) {
        free(x);
        return NULL;
    }
    /* the target may be IPv6 on an IPv4-only host: keep the connected
     * socket then */
    struct lr_addr probe;
    if (!for_socket(x, &x->target, &probe)) {
        close(x->fd);
        free(x);
        return NULL;
    }
    x->c = c;
    x->reply = reply;
    x->forbid_private = c->dial.forbid_private;
    close(c->rem.fd);
    c->rem.fd = -1;
    c->rem.dgram = 1;
    c->rem.sink = rem_sink;
    c->rem.sink_end = rem_sink_end;
    c->rem.room = NULL;
    c->rem.ctx = x;
    ev_io_init(&x->io, read_cb, x->fd, EV_READ);
    x->io.data = x;
    ev_io_start(c->lp->loop, &x->io);
    return x;
}

void lr_xudp_free(struct lr_xudp *x)
{
    if (!x)
        return;
    for (int i = 0; i < XUDP_PENDING; i++) {
        if (x->pend[i].req)
            lr_dns_cancel(x->pend[i].req);
        free(x->pend[i].data);
    }
    ev_io_stop(x->c->lp->loop, &x->io);
    close(x->fd);
    if (x->c->rem.ctx == x)
        x->c->rem.ctx = NULL;
    free(x);
}
