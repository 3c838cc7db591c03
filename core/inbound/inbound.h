/*
 * Inbounds: one protocol role each behind an ops table (net/conn.h's
 * struct lr_ib_ops), working on the runtime model.
 */
#ifndef LR_INBOUND_H
#define LR_INBOUND_H

#include "dispatch/dispatch.h"

extern const struct lr_ib_ops lr_vmess_in_ops, lr_socks_in_ops, lr_http_in_ops;
/* tunnel, tproxy and redirect over TCP (inbound/tunnel.c) */
extern const struct lr_ib_ops lr_tunnel_in_ops;

/* The ops table of an inbound type (LR_IB_*). */
const struct lr_ib_ops *lr_inbound_ops(int type);

/* Mux.Cool on a VMess connection whose header asked for it (command 3). */
void lr_mux_start(struct lr_conn *c);
/* SOCKS5 UDP ASSOCIATE: the association for control connection c; -1 if
 * it closed c. */
int lr_socks_udp_associate(struct lr_conn *c);
/* SOCKS5 address (ATYP, address, port) into d; bytes used, or <= 0. */
int lr_socks_parse_addr(const uint8_t *p, size_t n, struct lr_dest *d);

/* XUDP full-cone UDP for a Mux.Cool session (inbound/xudp.c).  `reply`
 * gets each datagram the socket receives, with its source; it returns 0
 * when it had no room (reading pauses until lr_xudp_resume). */
struct lr_xudp;
typedef int (*lr_xudp_reply_fn)(struct lr_conn *c, const struct lr_addr *from,
                                const uint8_t *data, size_t len);
/* For session c just connected by the direct outbound with a datagram
 * socket: makes its remote an unconnected socket (c->rem virtual); NULL if
 * c is not such a session or it failed (c unchanged). */
struct lr_xudp *lr_xudp_open(struct lr_conn *c, lr_xudp_reply_fn reply);
/* One datagram from the client to d (NULL: the session's destination). */
void lr_xudp_send(struct lr_xudp *x, const struct lr_dest *d,
                  const uint8_t *data, size_t len);
void lr_xudp_resume(struct lr_xudp *x);
void lr_xudp_free(struct lr_xudp *x);

/* XUDP as a client (inbound/xudp_client.c): the datagrams of a SOCKS5 UDP
 * association as one Mux.Cool/XUDP stream on a VMess outbound with xudp.
 * `reply` gets each datagram the server sends back, with its source;
 * `gone` is called when the stream's connection closes (the owner then
 * calls lr_xudpc_free). */
struct lr_xudpc;
typedef void (*lr_xudpc_reply_fn)(void *ctx, const struct lr_dest *from,
                                  const uint8_t *data, size_t len);
typedef void (*lr_xudpc_gone_fn)(void *ctx);
/* The outbound the rules pick for UDP to d from ctl's client, if it is a
 * VMess outbound with xudp and d's port is not 53 or 443; else NULL. */
struct lr_outbound *lr_xudpc_route(struct lr_conn *ctl, const struct lr_dest *d);
/* A stream to `ob` whose New frame carries d, the first datagram and the
 * GlobalID of `client` (the association's UDP source); NULL if it could
 * not be had (the session pool is full, or it closed at once). */
struct lr_xudpc *lr_xudpc_open(struct lr_conn *ctl, struct lr_outbound *ob,
                               const struct lr_addr *client, const struct lr_dest *d,
                               const uint8_t *data, size_t len,
                               lr_xudpc_reply_fn reply, lr_xudpc_gone_fn gone, void *ctx);
/* Whether the stream is open and goes to ob. */
int lr_xudpc_takes(const struct lr_xudpc *x, const struct lr_outbound *ob);
/* One datagram to d (a Keep frame); dropped when the server is not reading. */
void lr_xudpc_send(struct lr_xudpc *x, const struct lr_dest *d, const uint8_t *data,
                   size_t len);
/* Closes the stream (if open) and frees x; `gone` is not called. */
void lr_xudpc_free(struct lr_xudpc *x);
/* The 8-byte GlobalID for a client UDP source (a keyed hash, per process). */
void lr_xudpc_global_id(const struct lr_addr *src, uint8_t out[8]);

#endif
