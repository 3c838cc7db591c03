/*
 * Non-blocking name resolution: c-ares driven by the libev loop.  Results
 * are always delivered from the loop (never from inside lr_dns_resolve), so
 * a caller may start a lookup from any callback.
 */
#ifndef LR_DNS_H
#define LR_DNS_H

#include <ev.h>

#include "net/sock.h"

#define LR_DNS_MAX_ADDRS 8

/* err: 0 or -errno-like (-EHOSTUNREACH when nothing resolved). */
typedef void (*lr_dns_fn)(void *ud, int err, const struct lr_addr *addrs,
                          int naddrs);

struct lr_dns_req;

int lr_dns_init(struct ev_loop *loop);
void lr_dns_shutdown(void);
/* family: 0 any, 4 or 6 only. */
struct lr_dns_req *lr_dns_resolve(const char *host, uint16_t port, int family,
                                  lr_dns_fn cb, void *ud);
/* The callback will not be called; the request is freed by the module. */
void lr_dns_cancel(struct lr_dns_req *r);

#endif
