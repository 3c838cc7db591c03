/*
 * The inbound ops table for an inbound type.
 */
#include "inbound/inbound.h"

const struct lr_ib_ops *lr_inbound_ops(int type)
{
    switch (type) {
    case LR_IB_VMESS: return &lr_vmess_in_ops;
    case LR_IB_SOCKS: return &lr_socks_in_ops;
    case LR_IB_TUNNEL:
    case LR_IB_TPROXY:
    case LR_IB_REDIRECT: return &lr_tunnel_in_ops;
    default: return &lr_http_in_ops;
    }
}
