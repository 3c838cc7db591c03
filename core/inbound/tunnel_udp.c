/*
 * Inbounds for routers, the UDP side: a tunnel's datagrams (all to its
 * fixed destination) and a tproxy inbound's (each to the destination the
 * client used, learnt from IP_ORIGDSTADDR / IPV6_ORIGDSTADDR).
 *
 * A session is one client address (tunnel) or one client address and
 * original destination (tproxy): a connection with a virtual client side
 * (lr_dispatch_datagram), routed and dialled like any other -- a connected
 * UDP socket for the direct outbound, a VMess UDP request (command 2, one
 * datagram per chunk) for a VMess outbound; it ends after udp_timeout
 * without a datagram (the connection's idle timer).  Datagrams that come
 * while its pipe still holds one (dialling, a slow outbound) wait in a
 * small queue (QUEUE_MAX, QUEUE_BYTES), fed to the pipe as it empties.  Sessions count in the
 * inbound's max_connections; a datagram that would open one more is
 * dropped.  The accept hook runs for each new session.
 *
 * Replies: a tunnel answers from its own socket (the listen address); a
 * tproxy session answers from the original destination, through a socket
 * of its own that is IP_TRANSPARENT and bound to that address (opened at
 * its first reply), so the client sees the server it asked for answer.
 *
 * The UDP listener (struct lr_udp_in) belongs to the loop, not to a
 * generation: a reload that keeps the inbound hands it, with its sessions,
 * to the new generation's inbound (new clients get the new rules, open
 * sessions finish on theirs, as TCP connections do).  It is refcounted by
 * its inbound and each session; the socket closes with the last.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/log.h"
#include "inbound/inbound.h"
#include "inbound/tunnel.h"


#define UDP_MAX 65535
#define READS_PER_EVENT 64   /* datagrams taken per readable event */
#define QUEUE_MAX 32         /* datagrams a session holds while it dials / sends */
#define QUEUE_BYTES 65536    /* and their bytes */

struct udp_sess;

/* A datagram waiting for its session's pipe. */
struct qdgram {
    struct qdgram *next;
    size_t len;
    uint8_t data[];
};

struct lr_udp_in {
    int fd;
    ev_io io;
    struct ev_loop *loop;
    struct lr_inbound *ib;       /* the inbound new sessions start on; NULL
                                    once released (no new sessions) */
    int refs;                    /* the inbound's, and one per session */
    int transparent;             /* tproxy: original destinations, replies from them */
    struct udp_sess **tab;       /* sessions by key: open hashing, chained */
    uint32_t tab_size, nsess;
};

struct udp_sess {
    struct udp_sess *next;       /* in its hash chain */
    struct lr_udp_in *u;
    struct lr_conn *conn;
    struct lr_addr client, dst;  /* dst: tproxy's original destination */
    uint32_t hash;
    int rfd;                     /* tproxy: the reply socket (-1 until used) */
    uint8_t reply_failed;        /* the reply socket could not be made: logged once */
    /* datagrams that came while the pipe held one (the session dialling,
     * or the outbound slower than the client): a resolver's A and AAAA
     * queries come back to back from one port, and the second must not be
     * lost while a VMess outbound connects */
    struct qdgram *q_head, *q_tail;
    uint32_t q_n;
    size_t q_bytes;
};

static __thread uint8_t dgram_buf[UDP_MAX + 1]; /* per worker thread */

/* ------------------------------------------------------------ the table */

static uint32_t addr_hash(const struct lr_addr *a, uint32_t h)
{
    uint8_t ip[16];
    int n = lr_addr_ip_bytes(a, ip);
    uint16_t port = lr_addr_port(a);
    for (int i = 0; i < n; i++)
        h = (h ^ ip[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    return (h ^ (port >> 8)) * 16777619u;
}

static int addr_eq(const struct lr_addr *a, const struct lr_addr *b)
{
    uint8_t x[16], y[16];
    int n = lr_addr_ip_bytes(a, x);
    return n == lr_addr_ip_bytes(b, y) && memcmp(x, y, (size_t)n) == 0 &&
           lr_addr_port(a) == lr_addr_port(b);
}

static uint32_t key_hash(const struct lr_udp_in *u, const struct lr_addr *client,
                         const struct lr_addr *dst)
{
    uint32_t h = addr_hash(client, 2166136261u);
    return u->transparent ? addr_hash(dst, h) : h;
}

static struct udp_sess *find(struct lr_udp_in *u, uint32_t h, const struct lr_addr *client,
                             const struct lr_addr *dst)
{
    if (!u->tab_size)
        return NULL;
    for (struct udp_sess *s = u->tab[h & (u->tab_size - 1)]; s; s = s->next)
        if (s->hash == h && addr_eq(&s->client, client) &&
            (!u->transparent || addr_eq(&s->dst, dst)))
            return s;
    return NULL;
}

/* Room for one more session (the table doubles at load 1); -1 on ENOMEM. */
static int grow(struct lr_udp_in *u)
{
    if (u->nsess < u->tab_size)
        return 0;
    uint32_t n = u->tab_size ? u->tab_size * 2 : 64;
    struct udp_sess **t = calloc(n, sizeof(*t));
    if (!t)
        return -1;
    for (uint32_t i = 0; i < u->tab_size; i++)
        for (struct udp_sess *s = u->tab[i], *nx; s; s = nx) {
            nx = s->next;
            s->next = t[s->hash & (n - 1)];
            t[s->hash & (n - 1)] = s;
        }
    free(u->tab);
    u->tab = t;
    u->tab_size = n;
    return 0;
}

static void unlink_sess(struct lr_udp_in *u, struct udp_sess *s)
{
    struct udp_sess **pp = &u->tab[s->hash & (u->tab_size - 1)];
    for (; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            u->nsess--;
            return;
        }
}

static void uin_unref(struct lr_udp_in *u)
{
    if (--u->refs > 0)
        return;
    ev_io_stop(u->loop, &u->io);
    if (u->fd >= 0)
        close(u->fd);
    free(u->tab);
    free(u);
}

/* ------------------------------------------------------------ sessions */

/* A tproxy reply socket: transparent, bound to the original destination
 * (SO_REUSEADDR: other clients' sessions with the same destination bind
 * it too; it only sends, so the TPROXY rule still delivers the clients'
 * datagrams to the listener).  fd or -errno. */
static int reply_socket(const struct lr_addr *from)
{
    int one = 1, family = from->ss.ss_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = family == AF_INET6
             ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
             : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
    if (rc == 0)
        rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (rc == 0 && family == AF_INET6)
        rc = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (rc == 0)
        rc = bind(fd, (const struct sockaddr *)&from->ss, from->len);
    if (rc < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* A reply datagram for the client (a datagram sink takes all or drops). */
static size_t sess_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct udp_sess *s = c->ib_state;
    if (!s)
        return len;
    int fd = s->u->fd;
    if (s->u->transparent) {
        if (s->rfd < 0 && !s->reply_failed) {
            int r = reply_socket(&s->dst);
            if (r < 0) {
                char a[80];
                lr_addr_str(&s->dst, a, sizeof(a));
                lr_warn("conn %llu: cannot answer from %s: %s (replies dropped)",
                        (unsigned long long)c->id, a, strerror(-r));
                s->reply_failed = 1;
            }
            s->rfd = r;
        }
        fd = s->rfd;
    }
    if (fd >= 0)
        sendto(fd, data, len, 0, (const struct sockaddr *)&s->client.ss, s->client.len);
    return len;
}

/* The session's pipe holds a datagram not yet sent. */
static int pipe_busy(const struct lr_conn *c)
{
    return c->up.pend_len || (c->up.in && lr_buf_len(c->up.in));
}

/* A client datagram for session s: into its pipe, or queued behind the one
 * there (dropped past QUEUE_MAX / QUEUE_BYTES, as UDP may be). */
static void deliver(struct udp_sess *s, const uint8_t *data, size_t len)
{
    /* what waits goes first, in order, while the pipe takes it (a relaying
     * session sends each at once) */
    while (s->q_head && !pipe_busy(s->conn)) {
        struct qdgram *q = s->q_head;
        s->q_head = q->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->q_n--;
        s->q_bytes -= q->len;
        int r = lr_conn_push_datagram(s->conn, q->data, q->len);
        free(q);
        if (r < 0)
            return; /* closed: s is gone */
    }
    if (!s->q_head && !pipe_busy(s->conn)) {
        lr_conn_push_datagram(s->conn, data, len); /* may close the session */
        return;
    }
    if (s->q_n >= QUEUE_MAX || s->q_bytes + len > QUEUE_BYTES)
        return;
    struct qdgram *q = malloc(sizeof(*q) + len);
    if (!q)
        return;
    q->next = NULL;
    q->len = len;
    memcpy(q->data, data, len);
    if (s->q_tail)
        s->q_tail->next = q;
    else
        s->q_head = q;
    s->q_tail = q;
    s->q_n++;
    s->q_bytes += len;
}

/* The relay sent what the pipe held (cli.room): the next queued datagram
 * goes in, and the connection is pumped from the loop (room must not pump
 * itself). */
static void sess_room(struct lr_conn *c)
{
    struct udp_sess *s = c->ib_state;
    if (!s || !s->q_head || pipe_busy(c))
        return;
    if (!c->up.in && !(c->up.in = lr_buf_get()))
        return; /* out of memory: the next datagram tries again */
    struct qdgram *q = s->q_head;
    lr_buf_compact(c->up.in);
    if (q->len <= lr_buf_room(c->up.in)) {
        memcpy(lr_buf_tail(c->up.in), q->data, q->len);
        c->up.in->wr += (uint32_t)q->len;
        c->t_last = ev_now(c->lp->loop);
        lr_conn_kick(c);
    }
    /* one that can never fit is dropped */
    s->q_head = q->next;
    if (!s->q_head)
        s->q_tail = NULL;
    s->q_n--;
    s->q_bytes -= q->len;
    free(q);
}

static void sess_connected(struct lr_conn *c)
{
    c->replied = 1;
    lr_conn_start_relay(c);
}

static void sess_dial_failed(struct lr_conn *c, int err)
{
    (void)err;
    lr_conn_close(c, c->reason ? c->reason : "dial failed");
}

static void sess_free(struct lr_conn *c)
{
    struct udp_sess *s = c->ib_state;
    if (!s)
        return;
    c->ib_state = NULL;
    unlink_sess(s->u, s);
    if (s->rfd >= 0)
        close(s->rfd);
    while (s->q_head) {
        struct qdgram *q = s->q_head;
        s->q_head = q->next;
        free(q);
    }
    struct lr_udp_in *u = s->u;
    free(s);
    uin_unref(u);
}

static const struct lr_ib_ops sess_ops = {
    .connected = sess_connected,
    .dial_failed = sess_dial_failed,
    .free = sess_free,
};

/* The session's destination: the tunnel's `to`, or the original one. */
static void sess_dest(struct lr_udp_in *u, const struct lr_addr *odst, struct lr_dest *d)
{
    struct lr_inbound *ib = u->ib;
    struct lr_addr a;
    memset(d, 0, sizeof(*d));
    d->network = LR_NET_UDP;
    if (!u->transparent) {
        d->port = ib->to_port;
        snprintf(d->host, sizeof(d->host), "%s", ib->to_host);
        if (lr_addr_parse(ib->to_host, ib->to_port, &a) != 0) {
            d->atyp = LR_ATYP_DOMAIN;
            return;
        }
    } else {
        a = *odst;
        d->port = lr_addr_port(odst);
    }
    int len = lr_addr_ip_bytes(&a, d->ip);
    d->atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
    struct lr_addr b;
    lr_addr_from_bytes(d->ip, len, 0, &b);
    lr_addr_ip_str(&b, d->host, sizeof(d->host));
}

/* A datagram for a client without a session: a new one, dispatched with
 * the datagram waiting in it.  Dropped at max_connections, when the
 * accept hook refuses the client, or on ENOMEM. */
static void sess_open(struct lr_udp_in *u, uint32_t h, const struct lr_addr *client,
                      const struct lr_addr *odst, const uint8_t *data, size_t len)
{
    struct lr_inbound *ib = u->ib;
    if (ib->max_connections && ib->nconns >= ib->max_connections)
        return;
    if (u->transparent && lr_addr_port(odst) == ib->port && lr_tunnel_is_local(odst))
        return; /* sent to the listener itself, not diverted: no loop */
    if (lr_dispatch_accept_hook_net(ib, client, "udp") != 0)
        return;
    if (grow(u) != 0)
        return;
    struct udp_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    struct lr_conn *c = lr_dispatch_datagram(ib, client, &sess_ops, sess_sink);
    if (!c) {
        free(s);
        return;
    }
    s->u = u;
    s->conn = c;
    s->client = *client;
    if (odst)
        s->dst = *odst;
    s->hash = h;
    s->rfd = -1;
    s->next = u->tab[h & (u->tab_size - 1)];
    u->tab[h & (u->tab_size - 1)] = s;
    u->nsess++;
    u->refs++;
    c->ib_state = s;
    c->cli.room = sess_room;
    sess_dest(u, odst, &c->dst);
    c->idle_timeout = ib->udp_timeout;
    /* the first datagram waits in the session until it is dialled */
    if (lr_conn_push_datagram(c, data, len) < 0)
        return;
    lr_dispatch(c); /* may close c (no route, blackhole, a hook) */
}

/* The original destination in a tproxy datagram's control messages. */
static int orig_dst(struct msghdr *m, struct lr_addr *out)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_ORIGDSTADDR &&
            cm->cmsg_len >= CMSG_LEN(sizeof(struct sockaddr_in))) {
            memset(out, 0, sizeof(*out));
            memcpy(&out->ss, CMSG_DATA(cm), sizeof(struct sockaddr_in));
            out->len = sizeof(struct sockaddr_in);
            return 0;
        }
        if (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_ORIGDSTADDR &&
            cm->cmsg_len >= CMSG_LEN(sizeof(struct sockaddr_in6))) {
            memset(out, 0, sizeof(*out));
            memcpy(&out->ss, CMSG_DATA(cm), sizeof(struct sockaddr_in6));
            out->len = sizeof(struct sockaddr_in6);
            return 0;
        }
    }
    return -1;
}

static void uin_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_udp_in *u = (struct lr_udp_in *)((char *)w - offsetof(struct lr_udp_in, io));
    (void)loop;
    (void)revents;
    /* a session opened below may be closed at once and drop the last
     * reference but ours: hold one for the loop */
    u->refs++;
    for (int round = 0; round < READS_PER_EVENT && u->ib; round++) {
        struct lr_addr client, odst;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(struct sockaddr_in6)) * 2];
        } ctl;
        struct iovec iov = {.iov_base = dgram_buf, .iov_len = sizeof(dgram_buf)};
        struct msghdr m = {
            .msg_name = &client.ss, .msg_namelen = sizeof(client.ss),
            .msg_iov = &iov, .msg_iovlen = 1,
            .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(u->fd, &m, 0);
        if (n < 0)
            break;
        client.len = m.msg_namelen;
        if (n == 0 || (m.msg_flags & MSG_TRUNC))
            continue;
        if (u->transparent && orig_dst(&m, &odst) != 0)
            continue; /* no original destination: not ours to guess */
        uint32_t h = key_hash(u, &client, &odst);
        struct udp_sess *s = find(u, h, &client, u->transparent ? &odst : NULL);
        if (s)
            deliver(s, dgram_buf, (size_t)n);
        else
            sess_open(u, h, &client, u->transparent ? &odst : NULL, dgram_buf, (size_t)n);
    }
    uin_unref(u);
}

/* ------------------------------------------------------------ the daemon's */

void lr_tunnel_install(struct lr_inbound *ib, struct lr_inbound *old)
{
    struct ev_loop *loop = ib->rt->net.loop;
    if (old && old->uin) {
        /* the same socket, its sessions and reference move on */
        ib->uin = old->uin;
        old->uin = NULL;
        ib->uin->ib = ib;
        return;
    }
    if (ib->ufd < 0)
        return;
    struct lr_udp_in *u = calloc(1, sizeof(*u));
    if (!u) {
        lr_error("inbound %s: out of memory: no UDP", ib->tag);
        close(ib->ufd);
        ib->ufd = -1;
        return;
    }
    u->fd = ib->ufd;
    ib->ufd = -1;
    u->loop = loop;
    u->ib = ib;
    u->refs = 1;
    u->transparent = ib->type == LR_IB_TPROXY;
    ev_io_init(&u->io, uin_read_cb, u->fd, EV_READ);
    ev_io_start(loop, &u->io);
    ib->uin = u;
}

void lr_tunnel_release(struct lr_inbound *ib, int end_sessions)
{
    struct lr_udp_in *u = ib->uin;
    if (!u)
        return;
    ib->uin = NULL;
    u->ib = NULL;
    ev_io_stop(u->loop, &u->io);
    u->refs++; /* the table changes under us as sessions close */
    for (uint32_t i = 0; end_sessions && i < u->tab_size; i++)
        while (u->tab[i])
            lr_conn_close(u->tab[i]->conn, "shutdown");
    u->refs--;
    uin_unref(u);
}
