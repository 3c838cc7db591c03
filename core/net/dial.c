/*
 * Dialling: resolving a host (c-ares, net/dns.c) and connecting to each of
 * its addresses in turn, without blocking; the private-range refusal; and
 * what happens when the remote side is ready or the dial failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "net/relay.h"

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
    free(c->dial.addrs);
    c->dial.addrs = NULL;
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
    free(dl->addrs);
    dl->addrs = NULL;
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
    free(c->dial.addrs);
    if (!(c->dial.addrs = malloc(sizeof(*addrs) * (size_t)naddrs))) {
        lr_conn_dial_failed(c, -ENOMEM, "out of memory");
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

void lr_conn_remote_attach(struct lr_conn *c, int fd, int dgram)
{
    lr_side_set_fd(&c->rem, fd);
    c->rem.dgram = (uint8_t)dgram;
    ev_io_set(&c->rem.rio, fd, EV_READ);
    ev_io_set(&c->rem.wio, fd, EV_WRITE);
}

void lr_conn_remote_ready(struct lr_conn *c, int fd, int dgram)
{
    lr_conn_remote_attach(c, fd, dgram);
    c->ibops->connected(c);
}

