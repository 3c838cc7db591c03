/*
 * Rule matching.  A linear scan with cheap tests; issue "Lua layer" brings
 * the compiled tries and CIDR tables.  Domain comparisons are
 * case-insensitive; a suffix "example.com" matches the name itself and its
 * subdomains, not "badexample.com".
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

#include "route/route.h"

static int suffix_match(const char *host, size_t hl, const char *suf)
{
    size_t sl = strlen(suf);
    if (sl == 0)
        return 0;
    if (suf[0] == '.')
        return hl >= sl && strcasecmp(host + hl - sl, suf) == 0;
    if (hl == sl)
        return strcasecmp(host, suf) == 0;
    return hl > sl && host[hl - sl - 1] == '.' &&
           strcasecmp(host + hl - sl, suf) == 0;
}

static int domain_group(const struct lr_rule *r, const char *host)
{
    size_t hl = strlen(host);
    for (uint32_t i = 0; i < r->ndomain; i++)
        if (strcasecmp(host, r->domain[i]) == 0)
            return 1;
    for (uint32_t i = 0; i < r->nsuffix; i++)
        if (suffix_match(host, hl, r->suffix[i]))
            return 1;
    for (uint32_t i = 0; i < r->nkeyword; i++)
        if (strcasestr(host, r->keyword[i]))
            return 1;
    return 0;
}

static int cidr_match(const struct lr_cidr *c, const uint8_t *ip, int len)
{
    if (c->len != len)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->ip, ip, (size_t)full) != 0)
        return 0;
    if (rest) {
        uint8_t m = (uint8_t)(0xff << (8 - rest));
        return (c->ip[full] & m) == (ip[full] & m);
    }
    return 1;
}

/* 0 no match, 1 match, 2 match through the sniffed name only (the
 * connection must then go to that name). */
static int rule_match(const struct lr_rule *r, const struct lr_route_query *q)
{
    int via_sniff = 0;
    if (r->network && !(r->network & q->network))
        return 0;
    if (r->protocol && !(r->protocol & q->sniff_proto))
        return 0;
    if (r->ndomain + r->nsuffix + r->nkeyword) {
        /* the name the client asked for, else the one it sent in TLS/HTTP */
        int ok = q->atyp == LR_ATYP_DOMAIN && q->host && domain_group(r, q->host);
        if (!ok && q->sniff_host && q->sniff_host[0] && domain_group(r, q->sniff_host))
            ok = via_sniff = 1;
        if (!ok)
            return 0;
    }
    if (r->ncidr) {
        int len = q->atyp == LR_ATYP_IPV4 ? 4 : q->atyp == LR_ATYP_IPV6 ? 16 : 0;
        int ok = 0;
        for (uint32_t i = 0; len && q->ip && i < r->ncidr && !ok; i++)
            ok = cidr_match(&r->cidr[i], q->ip, len);
        if (!ok)
            return 0;
    }
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
    return via_sniff ? 2 : 1;
}

int32_t lr_route_pick(const struct lr_rule *rules, uint32_t n, int32_t def,
                      const struct lr_route_query *q, int *to_sniffed)
{
    *to_sniffed = 0;
    for (uint32_t i = 0; i < n; i++) {
        int m = rule_match(&rules[i], q);
        if (m) {
            *to_sniffed = m == 2;
            return rules[i].to;
        }
    }
    return def;
}

int lr_route_wants_sniff(const struct lr_rule *rules, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (rules[i].protocol || rules[i].ndomain || rules[i].nsuffix || rules[i].nkeyword)
            return 1;
    return 0;
}

static void free_list(char **v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void lr_rule_free(struct lr_rule *r)
{
    free_list(r->domain, r->ndomain);
    free_list(r->suffix, r->nsuffix);
    free_list(r->keyword, r->nkeyword);
    free_list(r->user, r->nuser);
    free_list(r->inbound, r->ninbound);
    free(r->cidr);
    free(r->ports);
    memset(r, 0, sizeof(*r));
}
