/*
 * Inbounds for routers, the TCP side and the sockets: "tunnel"
 * (dokodemo-door: every connection goes to one fixed destination),
 * "tproxy" (Linux TPROXY: the listener is IP_TRANSPARENT, so a connection
 * the kernel diverted to it keeps the destination the client used as its
 * local address) and "redirect" (NAT REDIRECT / DNAT: the destination
 * before the rewrite is read with SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST for
 * IPv6).  A connection knows where it goes as soon as it is accepted, so
 * it is dispatched at once (routing, hooks, policies, the outbound), before
 * the client sends anything: protocols where the server speaks first work.
 *
 * UDP (tunnel and tproxy) is inbound/tunnel_udp.c.  The kernel side of
 * TPROXY (nft/iptables rules, ip rule, a local route table) is the
 * operator's: README "Inbounds for routers".
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


int lr_tunnel_is_type(int type)
{
    return type == LR_IB_TUNNEL || type == LR_IB_TPROXY || type == LR_IB_REDIRECT;
}

/* ------------------------------------------------------------ sockets */

static const char *type_name(int type)
{
    return type == LR_IB_TPROXY ? "tproxy" : type == LR_IB_REDIRECT ? "redirect" : "tunnel";
}

/* IP_TRANSPARENT / IPV6_TRANSPARENT on fd: 0 or -errno. */
static int set_transparent(int fd, int family)
{
    int one = 1;
    int rc = family == AF_INET6
             ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
             : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
    return rc < 0 ? -errno : 0;
}

/* One socket of ib (SOCK_STREAM listening, or SOCK_DGRAM bound); fd or
 * -1 with err set. */
static int open_one(struct lr_inbound *ib, int type, char *err, size_t errlen)
{
    int one = 1, e;
    const char *what = type == SOCK_STREAM ? "TCP" : "UDP";
    char a[80];
    lr_addr_str(&ib->addr, a, sizeof(a));
    int family = ib->addr.ss.ss_family;
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "inbound '%s' (%s): cannot open a %s socket: %s", ib->tag,
                 type_name(ib->type), what, strerror(errno));
        return -1;
    }
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* several workers on one address: the kernel spreads connections, and
     * a UDP client's datagrams by its address (always to the same worker) */
    if (lr_sock_reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        e = errno;
        goto fail;
    }
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (ib->type == LR_IB_TPROXY) {
        /* the kernel hands a transparent socket what TPROXY diverted to it;
         * without CAP_NET_ADMIN this is EPERM */
        if ((e = -set_transparent(fd, family)) != 0) {
            close(fd);
            snprintf(err, errlen, "inbound '%s' (tproxy) on %s: cannot make the %s socket "
                     "transparent (%s): %s", ib->tag, a, what,
                     family == AF_INET6 ? "IPV6_TRANSPARENT" : "IP_TRANSPARENT",
                     e == EPERM ? "operation not permitted: tproxy needs CAP_NET_ADMIN "
                     "(run luaray as root or give it that capability: "
                     "AmbientCapabilities=CAP_NET_ADMIN in its systemd unit)" : strerror(e));
            return -1;
        }
        if (type == SOCK_DGRAM) {
            /* each datagram's original destination, in a control message */
            int rc = family == AF_INET6
                     ? setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one))
                     : setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof(one));
            if (rc < 0) {
                e = errno;
                goto fail;
            }
        }
    }
    if (bind(fd, (const struct sockaddr *)&ib->addr.ss, ib->addr.len) < 0 ||
        (type == SOCK_STREAM && listen(fd, 1024) < 0)) {
        e = errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    snprintf(err, errlen, "cannot listen on %s (%s) for inbound '%s' (%s): %s", a, what,
             ib->tag, type_name(ib->type), strerror(e));
    return -1;
}

int lr_tunnel_listen(struct lr_inbound *ib, char *err, size_t errlen)
{
    ib->fd = ib->ufd = -1;
    if (ib->net_tcp && (ib->fd = open_one(ib, SOCK_STREAM, err, errlen)) < 0)
        return -1;
    if (ib->net_udp && (ib->ufd = open_one(ib, SOCK_DGRAM, err, errlen)) < 0) {
        if (ib->fd >= 0)
            close(ib->fd);
        ib->fd = -1;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ TCP */

/* d = a literal address or a name, as a client would have sent it. */
static void dest_host(struct lr_dest *d, const char *host, uint16_t port)
{
    struct lr_addr a;
    memset(d, 0, sizeof(*d));
    d->network = LR_NET_TCP;
    d->port = port;
    snprintf(d->host, sizeof(d->host), "%s", host);
    if (lr_addr_parse(host, port, &a) == 0) {
        int len = lr_addr_ip_bytes(&a, d->ip);
        d->atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
        lr_addr_ip_str(&a, d->host, sizeof(d->host));
    } else {
        d->atyp = LR_ATYP_DOMAIN;
    }
}

/* An IPv4-mapped IPv6 address becomes IPv4 (lr_addr_ip_bytes unmaps). */
static void dest_addr(struct lr_dest *d, const struct lr_addr *a)
{
    memset(d, 0, sizeof(*d));
    d->network = LR_NET_TCP;
    d->port = lr_addr_port(a);
    int len = lr_addr_ip_bytes(a, d->ip);
    d->atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
    struct lr_addr b;
    lr_addr_from_bytes(d->ip, len, 0, &b);
    lr_addr_ip_str(&b, d->host, sizeof(d->host));
}

/* The destination before NAT rewrote it; 0 or -errno. */
static int original_dst(int fd, int family, struct lr_addr *out)
{
    out->len = sizeof(out->ss);
    memset(&out->ss, 0, sizeof(out->ss));
    int rc = family == AF_INET6
             ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &out->ss, &out->len)
             : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &out->ss, &out->len);
    return rc < 0 ? -errno : 0;
}

int lr_tunnel_is_local(const struct lr_addr *a)
{
    struct lr_addr b = *a;
    lr_addr_set_port(&b, 0);
    int fd = socket(b.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int r = bind(fd, (struct sockaddr *)&b.ss, b.len) == 0;
    close(fd);
    return r;
}

static void tin_accepted(struct lr_conn *c)
{
    struct lr_inbound *ib = c->ib;
    if (ib->type == LR_IB_TUNNEL) {
        dest_host(&c->dst, ib->to_host, ib->to_port);
        lr_dispatch(c);
        return;
    }
    struct lr_addr local, dst;
    local.len = sizeof(local.ss);
    if (getsockname(c->cli.fd, (struct sockaddr *)&local.ss, &local.len) < 0) {
        lr_conn_close(c, "no local address");
        return;
    }
    if (ib->type == LR_IB_TPROXY) {
        /* the socket is the one the client aimed at: its local address is
         * the destination.  Someone who dialled the listener itself (not
         * diverted) would make us dial ourselves, round and round. */
        dst = local;
        if (lr_addr_port(&dst) == ib->port && lr_tunnel_is_local(&dst)) {
            lr_conn_close(c, "not diverted by TPROXY (the client dialled the inbound itself)");
            return;
        }
    } else {
        int rc = original_dst(c->cli.fd, ib->addr.ss.ss_family, &dst);
        if (rc < 0) {
            snprintf(c->fail_detail, sizeof(c->fail_detail), "SO_ORIGINAL_DST: %s",
                     strerror(-rc));
            lr_conn_close(c, "no original destination");
            return;
        }
        /* not rewritten: the client dialled the listener itself */
        if (lr_addr_port(&dst) == lr_addr_port(&local)) {
            uint8_t x[16], y[16];
            int n = lr_addr_ip_bytes(&dst, x);
            if (n == lr_addr_ip_bytes(&local, y) && memcmp(x, y, (size_t)n) == 0) {
                lr_conn_close(c, "not redirected (the client dialled the inbound itself)");
                return;
            }
        }
    }
    dest_addr(&c->dst, &dst);
    lr_dispatch(c);
}

/* Bytes before dispatch cannot come (accepted dispatches at once); after
 * it they are relay input.  Anything else is a bug: close. */
static void tin_readable(struct lr_conn *c)
{
    lr_conn_close(c, "unexpected read");
}

static void tin_connected(struct lr_conn *c)
{
    c->replied = 1;
    lr_conn_start_relay(c);
}

static void tin_dial_failed(struct lr_conn *c, int err)
{
    /* a transparent client gets what a refused connect looks like: an RST */
    lr_conn_abort(c, c->reason ? c->reason : "dial failed");
}

static void tin_free(struct lr_conn *c)
{
    (void)c;
}

const struct lr_ib_ops lr_tunnel_in_ops = {
    .readable = tin_readable,
    .connected = tin_connected,
    .dial_failed = tin_dial_failed,
    .free = tin_free,
    .read_while_dialing = 1,
    .accepted = tin_accepted,
};
