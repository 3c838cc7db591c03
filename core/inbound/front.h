/*
 * An inbound's front: what runs on a new client connection before the
 * inbound's own protocol (design.md 6), in stages, each reading through
 * the client side's stream stack and pushing its layer on it:
 *
 *   PROXY protocol v1/v2 (proxy_protocol)   front_proxy.c   c->src
 *   TLS (tls)                               front_tls.c     layer: stream/tls
 *   WebSocket or HTTPUpgrade (transport)    front_http.c    layer: stream/ws
 *   gRPC gun (transport)                    front_grpc.c    sessions, like Mux.Cool
 *
 * dispatch_accept gives a connection of an inbound with any of these the
 * front's ops (lr_front_start); when the last stage is done the inbound's
 * own ops take over with whatever bytes the stages left in up.in.  A stage
 * that finds the client is no VMess client of this transport (another
 * SNI or ALPN, another path, no upgrade) hands the connection to the
 * fallback (lr_dispatch_fallback): what it read is relayed unchanged.
 */
#ifndef LR_FRONT_H
#define LR_FRONT_H

#include "inbound/inbound.h"

enum lr_front_rc {
    LR_FRONT_AGAIN = 0,          /* waiting for bytes (or for the socket) */
    LR_FRONT_DONE = 1,           /* this stage is over: the next one */
    LR_FRONT_CLOSED = -1,        /* it closed c */
    LR_FRONT_FALLBACK = 2        /* not ours: relay to the fallback */
};

#define LR_FRONT_STAGES 4

struct lr_front;

/* A stage: runs when the client side may have progressed (readable, or
 * writable when its layer wants to write); *st is the stage's own state
 * (NULL on its first run), freed by free_st if set. */
struct lr_front_stage {
    const char *name;
    int (*run)(struct lr_conn *c, void **st);
    void (*free_st)(void *st);
};

/* Whether `peer` (the TCP peer) is one of ib's trusted_proxies: only then
 * are its PROXY header, X-Forwarded-For and X-Real-IP believed. */
int lr_front_trusted(const struct lr_inbound *ib, const struct lr_addr *peer);

/* Whether this build can serve inbound ib's front; -1 with err if not. */
int lr_front_check(const struct lr_inbound *ib, char *err, size_t errlen);
/* Puts the front before the inbound's own ops on a new connection, if its
 * inbound has one; 0 (c as it was) or -1 if it closed c. */
int lr_front_start(struct lr_conn *c);

/* Builds inbound ib's TLS context (ib->tls.ctx) from its certificate files
 * (front_tls.c); -1 with err on a missing, bad or mismatched file.  Called
 * when a generation is built. */
int lr_front_tls_build(struct lr_inbound *ib, char *err, size_t errlen);

/* The stages (each in its own file; a stage not built yet says so). */
extern const struct lr_front_stage lr_front_proxy_stage;
extern const struct lr_front_stage lr_front_tls_stage;
extern const struct lr_front_stage lr_front_http_stage;
extern const struct lr_front_stage lr_front_grpc_stage;

#endif
