/*
 * An outbound's front: what runs on the connection to the server before
 * the relay, after TCP connected (design.md 6), in stages, each writing
 * and reading through the remote side's stream stack and pushing its
 * layer on it:
 *
 *   TLS (tls)                               cfront_tls.c    layer: stream/tls
 *   WebSocket or HTTPUpgrade (transport)    cfront_http.c   layer: stream/ws
 *   gRPC gun (transport)                    cfront_grpc.c   layer: stream/grpc
 *
 * The socket's events reach the current stage through ob_ops.remote_io;
 * the connection's dial deadline (connect_timeout) covers them all.  When
 * the last stage is done the inbound's `connected` runs and the relay
 * starts as over bare TCP.
 */
#ifndef LR_CFRONT_H
#define LR_CFRONT_H

#include "outbound/outbound.h"
#include "inbound/front.h"     /* LR_FRONT_* */

struct lr_cfront_stage {
    const char *name;
    /* runs when the remote socket may have progressed (and once at the
     * start); *st is its state (NULL at first); sets *want to the
     * LR_STREAM_WANT_* it waits for when it returns LR_FRONT_AGAIN */
    int (*run)(struct lr_conn *c, void **st, int *want);
    void (*free_st)(void *st);
};

/* Whether this build can serve outbound ob's front; -1 with err if not. */
int lr_cfront_check(const struct lr_outbound *ob, char *err, size_t errlen);
/* Whether ob has a front at all. */
int lr_cfront_wanted(const struct lr_outbound *ob);
/* The socket fd to the server is connected: attach it, run the stages,
 * then c->ibops->connected.  The outbound's ob_ops must have remote_io =
 * lr_cfront_io and free call lr_cfront_free. */
void lr_cfront_start(struct lr_conn *c, int fd);
void lr_cfront_io(struct lr_conn *c, int revents);
void lr_cfront_free(struct lr_conn *c);

/* Builds outbound ob's TLS context (ob->tls.ctx: verification, ALPN, its
 * session cache) (cfront_tls.c); -1 with err (an unreadable `ca`). */
int lr_cfront_tls_build(struct lr_outbound *ob, char *err, size_t errlen);
/* gRPC: VMess connection c (its request prepared) becomes a tunnel on its
 * outbound's shared HTTP/2 connection, opened if need be; the inbound's
 * `connected` runs once its stream is open.  0, or -1 when no shared
 * connection can be had (c dials one of its own then). */
int lr_grpc_attach(struct lr_conn *c);
/* c closes: its tunnel leaves the shared connection (outbound free). */
void lr_grpc_detach(struct lr_conn *c);

extern const struct lr_cfront_stage lr_cfront_tls_stage;
extern const struct lr_cfront_stage lr_cfront_http_stage;
extern const struct lr_cfront_stage lr_cfront_grpc_stage;

#endif
