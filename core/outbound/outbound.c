/*
 * Outbounds: direct (resolve without blocking, connect), blackhole (drop),
 * and the ops-table lookup.  The VMess client is in outbound/vmess.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outbound/outbound.h"


static void direct_done(struct lr_conn *c, int fd)
{
    lr_conn_remote_ready(c, fd, 0);
}

/* UDP: a connected datagram socket per destination. */
static void direct_udp_resolved(void *ud, int err, const struct lr_addr *a,
                                int n);

static void direct_dial(struct lr_conn *c)
{
    int forbid = c->ib->type == LR_IB_VMESS && !c->ib->allow_private;
    if (c->dst.network == LR_NET_UDP) {
        c->dial.forbid_private = forbid;
        c->dns = lr_dns_resolve(c->dst.host, c->dst.port, c->ob->family,
                                direct_udp_resolved, c);
        if (!c->dns)
            lr_conn_dial_failed(c, -ENOMEM, "out of memory");
        return;
    }
    lr_conn_connect(c, c->dst.host, c->dst.port, c->ob->family, forbid,
                    direct_done);
}

static void direct_udp_resolved(void *ud, int err, const struct lr_addr *a,
                                int n)
{
    struct lr_conn *c = ud;
    c->dns = NULL;
    if (err || n == 0) {
        lr_conn_dial_failed(c, err ? err : -EHOSTUNREACH, "resolve failed");
        return;
    }
    struct lr_addr dst = a[0];
    lr_addr_set_port(&dst, c->dst.port);
    if (c->dial.forbid_private && lr_addr_is_private(&dst)) {
        lr_conn_dial_failed(c, -EACCES, "private destination refused");
        return;
    }
    int fd = socket(dst.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst.ss, dst.len) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        lr_conn_dial_failed(c, -e, "connect failed");
        return;
    }
    lr_conn_remote_ready(c, fd, 1);
}

static const struct lr_ob_ops direct_ops = {.dial = direct_dial};

static void blackhole_dial(struct lr_conn *c)
{
    lr_conn_close(c, "blackhole");
}

static const struct lr_ob_ops blackhole_ops = {.dial = blackhole_dial};

const struct lr_ob_ops *lr_outbound_ops(int type)
{
    switch (type) {
    case LR_OB_VMESS:
        return &lr_vmess_out_ops;
    case LR_OB_BLACKHOLE:
        return &blackhole_ops;
    default:
        return &direct_ops;
    }
}
