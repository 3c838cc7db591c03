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

#endif
