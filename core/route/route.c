/*
 * Rule matching.  Rules are tried in order; within a rule each filter is a
 * compiled set (domain_set.c: hashed names and label suffixes,
 * Aho-Corasick keywords, PCRE2 regexps; cidr_set.c: sorted ranges;
 * geodata.c: shared geosite/geoip entries), so a rule with 100,000 names
 * costs a few hash lookups.  Domain comparisons are case-insensitive; a
 * suffix "example.com" matches the name itself and its subdomains, not
 * "badexample.com".
 *
 * A domain filter matches the name the client asked for or the name it
 * sent in its TLS SNI / HTTP Host (sniffed).  A rule that matched only
 * through the sniffed name sends the connection to that name (v2ray's
 * destOverride), so what a rule allowed is what gets dialled: a client
 * cannot pass an allow-list with SNI "allowed.example" while asking for
 * another host.
 */
#include <string.h>
#include <strings.h>

#include "route/cidr_set.h"
#include "route/domain_set.h"
#include "route/geodata.h"
#include "route/route.h"

static int domain_group(const struct lr_rule *r, const char *host)
{
    if (r->dset && lr_dset_match(r->dset, host))
        return 1;
    for (uint32_t i = 0; i < r->nsite; i++)
        if (lr_geo_match_domain(r->site[i], host))
            return 1;
    return 0;
}

static int ip_group(const struct lr_rule *r, const uint8_t *ip, int len)
{
    if (!ip || !len)
        return 0;
    if (r->cset && lr_cset_match(r->cset, ip, (size_t)len))
        return 1;
    for (uint32_t i = 0; i < r->ngip; i++)
        if (lr_geo_match_ip(r->gip[i], ip, (size_t)len))
            return 1;
    return 0;
}

/* How a rule's address group treats a domain destination (the routing
 * domain_strategy): never matched (as_is, and ip_if_non_match's first
 * pass), matched by the name's resolved addresses, or "resolve first"
 * (ip_on_demand before resolution). */
enum { IP_NO = 0, IP_RESOLVED = 1, IP_ON_DEMAND = 2 };

/* 0 no match, 1 match, 2 match through the sniffed name only (the
 * connection must then go to that name), 3 the rule needs the name's
 * addresses to decide (IP_ON_DEMAND). */
static int rule_match(const struct lr_rule *r, const struct lr_route_query *q, int ipmode)
{
    int via_sniff = 0;
    if (r->network && !(r->network & q->network))
        return 0;
    if (r->protocol && !(r->protocol & q->sniff_proto))
        return 0;
    if (r->dset || r->nsite) {
        /* the name the client asked for, else the one it sent in TLS/HTTP */
        int ok = q->atyp == LR_ATYP_DOMAIN && q->host && domain_group(r, q->host);
        if (!ok && q->sniff_host && q->sniff_host[0] && domain_group(r, q->sniff_host))
            ok = via_sniff = 1;
        if (!ok)
            return 0;
    }
    if (r->src && !(q->src_ip && lr_cset_match(r->src, q->src_ip, q->src_len)))
        return 0;
    if (r->nports) {
        int ok = 0;
        for (uint32_t i = 0; i < r->nports && !ok; i++)
            ok = q->port >= r->ports[i][0] && q->port <= r->ports[i][1];
        if (!ok)
            return 0;
    }
    if (r->nuser) {
        int ok = 0;
        for (uint32_t i = 0; q->user && i < r->nuser && !ok; i++)
            ok = strcmp(q->user, r->user[i]) == 0;
        if (!ok)
            return 0;
    }
    if (r->ninbound) {
        int ok = 0;
        for (uint32_t i = 0; q->inbound && i < r->ninbound && !ok; i++)
            ok = strcmp(q->inbound, r->inbound[i]) == 0;
        if (!ok)
            return 0;
    }
    /* the address group last: only a rule whose other filters all match
     * makes an ip_on_demand lookup */
    if (r->cset || r->ngip) {
        if (q->atyp == LR_ATYP_DOMAIN) {
            if (ipmode == IP_ON_DEMAND)
                return 3;
            int ok = 0;
            for (uint32_t i = 0; ipmode == IP_RESOLVED && q->resolved && i < q->nresolved && !ok; i++)
                ok = ip_group(r, q->resolved + 16 * i, 16);
            if (!ok)
                return 0;
        } else {
            int len = q->atyp == LR_ATYP_IPV4 ? 4 : q->atyp == LR_ATYP_IPV6 ? 16 : 0;
            if (!ip_group(r, q->ip, len))
                return 0;
        }
    }
    return via_sniff ? 2 : 1;
}

static int32_t first_match(const struct lr_rule *rules, uint32_t n, const struct lr_route_query *q,
                           int ipmode, int *to_sniffed)
{
    for (uint32_t i = 0; i < n; i++) {
        int m = rule_match(&rules[i], q, ipmode);
        if (m == 3)
            return LR_ROUTE_NEED_IPS;
        if (m) {
            *to_sniffed = m == 2;
            return rules[i].to;
        }
    }
    return -1;
}

int32_t lr_route_pick_ex(const struct lr_rule *rules, uint32_t n, int32_t def,
                         const struct lr_route_query *q, int strategy, int *to_sniffed)
{
    *to_sniffed = 0;
    int named = q->atyp == LR_ATYP_DOMAIN && q->host && q->host[0];
    int32_t ob;
    switch (named ? strategy : LR_ROUTE_AS_IS) {
    case LR_ROUTE_IP_IF_NON_MATCH:
        /* the rules with the name; then, if none matched, with its addresses */
        ob = first_match(rules, n, q, IP_NO, to_sniffed);
        if (ob >= 0)
            return ob;
        if (!q->resolve_done)
            return LR_ROUTE_NEED_IPS;
        ob = first_match(rules, n, q, IP_RESOLVED, to_sniffed);
        break;
    case LR_ROUTE_IP_ON_DEMAND:
        ob = first_match(rules, n, q, q->resolve_done ? IP_RESOLVED : IP_ON_DEMAND, to_sniffed);
        break;
    default:
        ob = first_match(rules, n, q, IP_NO, to_sniffed);
        break;
    }
    return ob == -1 ? def : ob;
}

int32_t lr_route_pick(const struct lr_rule *rules, uint32_t n, int32_t def,
                      const struct lr_route_query *q, int *to_sniffed)
{
    return lr_route_pick_ex(rules, n, def, q, LR_ROUTE_AS_IS, to_sniffed);
}

int lr_route_wants_sniff(const struct lr_rule *rules, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (rules[i].protocol || rules[i].dset || rules[i].nsite)
            return 1;
    return 0;
}

static void free_list(char **v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int lr_rule_finish(struct lr_rule *r)
{
    if (r->dset && lr_dset_build(r->dset) != 0)
        return -1;
    if (r->cset && lr_cset_build(r->cset) != 0)
        return -1;
    if (r->src && lr_cset_build(r->src) != 0)
        return -1;
    return 0;
}

void lr_rule_free(struct lr_rule *r)
{
    lr_dset_free(r->dset);
    lr_cset_free(r->cset);
    lr_cset_free(r->src);
    for (uint32_t i = 0; i < r->nsite; i++)
        lr_geo_unref(r->site[i]);
    free(r->site);
    for (uint32_t i = 0; i < r->ngip; i++)
        lr_geo_unref(r->gip[i]);
    free(r->gip);
    free_list(r->user, r->nuser);
    free_list(r->inbound, r->ninbound);
    free(r->ports);
    memset(r, 0, sizeof(*r));
}
