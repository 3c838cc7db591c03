/*
 * Inbounds for routers (inbound/tunnel.c, tunnel_udp.c): "tunnel"
 * (dokodemo-door: one fixed destination), "tproxy" (Linux TPROXY: the
 * destination the client used, from the socket) and "redirect" (NAT
 * REDIRECT: SO_ORIGINAL_DST).  What the daemon calls to open, hand over
 * and close their sockets; their TCP ops are lr_tunnel_in_ops (inbound.h).
 */
#ifndef LR_TUNNEL_H
#define LR_TUNNEL_H

#include <netinet/in.h>

#include "dispatch/model.h"

/* Linux socket options for transparent proxying, for libcs whose headers
 * lack them (values from linux/in.h, linux/in6.h and netfilter's headers) */
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IP_RECVORIGDSTADDR
#define IP_RECVORIGDSTADDR 20
#endif
#ifndef IP_ORIGDSTADDR
#define IP_ORIGDSTADDR IP_RECVORIGDSTADDR
#endif
#ifndef IPV6_RECVORIGDSTADDR
#define IPV6_RECVORIGDSTADDR 74
#endif
#ifndef IPV6_ORIGDSTADDR
#define IPV6_ORIGDSTADDR IPV6_RECVORIGDSTADDR
#endif
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80       /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80  /* linux/netfilter_ipv6/ip6_tables.h */
#endif

/* Whether inbounds of this type are opened here (lr_tunnel_listen). */
int lr_tunnel_is_type(int type);
/* Opens ib's sockets: the TCP listener (ib->fd) when it takes TCP, the
 * UDP socket (ib->ufd) when it takes UDP; tproxy sockets are transparent
 * (IP_TRANSPARENT, the original destination of each datagram).  0, or -1
 * with nothing left open and `err` saying why (the privilege a tproxy
 * inbound lacks, an address in use). */
int lr_tunnel_listen(struct lr_inbound *ib, char *err, size_t errlen);
/* ib is installed on its worker's loop: its UDP side starts reading.  With
 * `old` (the running generation's inbound whose sockets ib takes over),
 * old's UDP listener and its open sessions move to ib; else ib's own
 * socket (ib->ufd) becomes one.  Loop thread only. */
void lr_tunnel_install(struct lr_inbound *ib, struct lr_inbound *old);
/* ib stops taking new UDP clients.  Removed by a reload: its sessions
 * finish on their own (their replies still go out), the socket closes with
 * the last.  With end_sessions (the daemon stops: UDP has nothing to
 * finish) they close now.  Idempotent; loop thread only. */
void lr_tunnel_release(struct lr_inbound *ib, int end_sessions);

/* Whether address a is one of this host's own (a plain socket may bind
 * it): a "diverted" destination that is the listener itself.  A syscall
 * pair: asked only for destinations with the listener's port. */
int lr_tunnel_is_local(const struct lr_addr *a);
#endif
