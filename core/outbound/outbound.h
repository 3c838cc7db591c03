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

#endif
