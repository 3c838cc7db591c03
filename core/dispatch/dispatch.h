/*
 * Dispatch (dispatch.c): from a decoded destination to an outbound, and
 * the owner side of every connection.
 */
#ifndef LR_DISPATCH_H
#define LR_DISPATCH_H

#include "dispatch/model.h"

/* The owner table every worker loop uses (net/conn.h). */
extern const struct lr_conn_owner lr_dispatch_owner;

/* A client accepted on inbound ib (its socket fd): counted in the
 * inbound's client connections, holding ib's generation, its front (TLS,
 * transport) first when it has one.  -1 if no connection could be made
 * (the caller closes fd); 0 otherwise (fd is the connection's, even if it
 * closed at once). */
int lr_dispatch_accept(struct lr_inbound *ib, int fd, const struct lr_addr *src,
                       const struct lr_ib_ops *ops);
/* c is not for this inbound's protocol (a prober, a browser, a bad VMess
 * header): with a fallback configured, everything it sent so far and
 * everything after goes unchanged to the fallback address; without one it
 * closes.  `why` goes to the debug log. */
void lr_dispatch_fallback(struct lr_conn *c, const char *why);
/* A session inside client connection `parent` (a Mux.Cool stream, a UDP
 * ASSOCIATE destination): a virtual client side whose replies go to
 * `sink`, counted in the inbound's session pool.  NULL when that pool is at
 * max_connections (or on ENOMEM). */
struct lr_conn *lr_dispatch_session(struct lr_conn *parent, const struct lr_ib_ops *ops,
                                    size_t (*sink)(struct lr_conn *, const uint8_t *, size_t));
/* The same, of inbound ib (which may belong to a newer generation than
 * the parent's: lr_dispatch_current_ib). */
struct lr_conn *lr_dispatch_session_of(struct lr_conn *parent, struct lr_inbound *ib,
                                       const struct lr_ib_ops *ops,
                                       size_t (*sink)(struct lr_conn *, const uint8_t *, size_t));
/* A UDP client of inbound ib with no connection around it (a tunnel or
 * tproxy inbound's session for one client address): a virtual client side
 * whose replies go to `sink`, counted in the inbound's client connections
 * (the caller checks max_connections).  NULL on ENOMEM. */
struct lr_conn *lr_dispatch_datagram(struct lr_inbound *ib, const struct lr_addr *src,
                                     const struct lr_ib_ops *ops,
                                     size_t (*sink)(struct lr_conn *, const uint8_t *, size_t));
/* The inbound of the worker's current generation with ib's tag, type and
 * transport (ib itself when that generation is ib's, or has none such):
 * what a new session on a long-lived connection (a gRPC tunnel) runs on,
 * so a reload's users and rules reach it as they reach new connections. */
struct lr_inbound *lr_dispatch_current_ib(struct lr_inbound *ib);
/* runs Lua: the accept hook for a new client of ib; 0 to go on, -1 refused.
 * An inbound with proxy_protocol skips it here: its front runs
 * lr_dispatch_accept_hook_conn once the PROXY header has said who the
 * client is. */
int lr_dispatch_accept_hook(struct lr_inbound *ib, const struct lr_addr *src);
/* The same for a client of `network` ("tcp" or "udp": a tunnel's or a
 * tproxy inbound's new UDP session). */
int lr_dispatch_accept_hook_net(struct lr_inbound *ib, const struct lr_addr *src,
                                const char *network);
/* The accept hook for connection c as it is now (its src, peer, id). */
int lr_dispatch_accept_hook_conn(struct lr_conn *c);
/* The inbound knows the destination (c->dst, c->user): sniff if wanted,
 * the auth hook, policy, the route hook, the rules, the outbound's dial. */
void lr_dispatch(struct lr_conn *c);

/* The operator's view (SIGUSR1): one info line per connection of lp, each
 * starting with `who` ("" or "worker N: "): id, state, inbound, client,
 * user, network, destination, outbound, age, payload bytes up and down. */
void lr_dispatch_list(struct lr_loop *lp, const char *who);

#endif
