/*
 * Addresses of destination names for routing (the routing domain_strategy,
 * ip_if_non_match / ip_on_demand): a small cache per worker thread in front
 * of net/dns.c, so a name the rules need resolved is looked up once a
 * minute, not once a connection.
 */
#ifndef LR_ROUTE_DNS_H
#define LR_ROUTE_DNS_H

#include <stdint.h>

#include "net/dns.h"

/* Addresses are 16 bytes each (IPv4 as ::ffff:a.b.c.d), at most
 * LR_DNS_MAX_ADDRS.  1 and out/n filled when `host` has a fresh entry
 * (n may be 0: it did not resolve, remembered for a short while), else 0. */
int lr_route_dns_get(const char *host, uint8_t *out, int *n);
/* Remembers what `host` resolved to (n 0: failed); 60 s, failures 10 s. */
void lr_route_dns_put(const char *host, const uint8_t *ips, int n);
/* The 16-byte forms of addrs[0..n) into out (LR_DNS_MAX_ADDRS * 16 bytes):
 * how many. */
int lr_route_dns_bytes(const struct lr_addr *addrs, int n, uint8_t *out);

#endif
