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

static int grpc_run(struct lr_conn *c, void **st, int *want)
{
    struct lr_stream *l = *st;
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
