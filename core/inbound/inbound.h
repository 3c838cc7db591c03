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

#endif
