/*
 * Routing: ordered rules, first match wins, else the default outbound.
 * Domain filters (exact, suffix, keyword) form one group; within a group
 * any entry may match; every group a rule has must match.  Pure: a rule
 * table and a query in, an outbound index out (no connection, no daemon),
 * so it is tested on its own (spec/core/route_spec.lua, through
 * lr_conf_route_pick).
 */
#ifndef LR_ROUTE_H
#define LR_ROUTE_H

#include "base/base.h"

/* One address block (the inbounds' trusted-proxy lists use it). */
struct lr_cidr {
    uint8_t ip[16];
    uint8_t len;                 /* 4 or 16 */
    uint8_t bits;
};

struct lr_dset;
struct lr_cset;
struct lr_geo;

/* A compiled routing rule (first match wins).  The domain group (dset and
 * the geosite lists) matches when any of them does; so does the address
 * group (cset and the geoip lists).  dset, cset and src are the rule's
 * own, built by lr_rule_finish; the lr_geo are shared (geodata.h). */
struct lr_rule {
    struct lr_dset *dset;               /* domain strings of every form */
    struct lr_geo **site; uint32_t nsite; /* geosite lists */
    struct lr_cset *cset;               /* ip_cidr */
    struct lr_geo **gip; uint32_t ngip; /* geoip codes (.dat or .mmdb) */
    struct lr_cset *src;                /* source: the client's address */
    uint16_t (*ports)[2]; uint32_t nports;
    char **user;        uint32_t nuser;
    char **inbound;     uint32_t ninbound;
    uint8_t network;    /* bit mask of LR_NET_*, 0 = any */
    uint8_t protocol;   /* bit mask of LR_PROTO_* (sniffed), 0 = any */
    int32_t to;         /* outbound index */
};

/* struct lr_route_query (what a rule looks at) is in api.h. */

/* The outbound index for `q` under rules[0..n) (default `def`).
 * *to_sniffed is set when the rule matched only through the sniffed name:
 * the connection must then be dialled to that name. */
int32_t lr_route_pick(const struct lr_rule *rules, uint32_t n, int32_t def,
                      const struct lr_route_query *q, int *to_sniffed);
/* The same under a routing domain_strategy (enum lr_route_strategy):
 * LR_ROUTE_NEED_IPS when the answer needs the destination name's
 * addresses and q->resolve_done is 0 (resolve, fill q->resolved, ask
 * again). */
int32_t lr_route_pick_ex(const struct lr_rule *rules, uint32_t n, int32_t def,
                         const struct lr_route_query *q, int strategy, int *to_sniffed);
/* Whether any rule needs the sniffed name or protocol. */
int lr_route_wants_sniff(const struct lr_rule *rules, uint32_t n);
/* Builds what the rule's filters were added into (the keyword automaton,
 * sorted ranges): 0, or -1 out of memory.  Again: nothing more to do. */
int lr_rule_finish(struct lr_rule *r);
/* Frees a rule's owned strings and arrays. */
void lr_rule_free(struct lr_rule *r);

#endif
