/*
 * Outbounds: direct, blackhole and the VMess client, each behind an ops
 * table (net/conn.h's struct lr_ob_ops), working on the runtime model.
 */
#ifndef LR_OUTBOUND_H
#define LR_OUTBOUND_H

#include "dispatch/model.h"

extern const struct lr_ob_ops lr_vmess_out_ops;

/* The ops table for an outbound type (LR_OB_*). */
const struct lr_ob_ops *lr_outbound_ops(int type);

/* Mux.Cool as a client (outbound/mux_client.c): c (routed to a VMess
 * outbound with mux) becomes a stream of the outbound's carrier; 0, or -1
 * when no carrier can be had (c then dials a connection of its own). */
int lr_muxc_attach(struct lr_conn *c);
/* At c's close: 1 if c was a stream (its End sent, it left the carrier). */
int lr_muxc_detach(struct lr_conn *c);
/* Whether c is a carrier (its VMess request says command 3). */
int lr_muxc_is_carrier(const struct lr_conn *c);

#endif
