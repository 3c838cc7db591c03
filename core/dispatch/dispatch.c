/*
 * Dispatch: what a connection means once an inbound has decoded where it
 * wants to go.  The step from destination to outbound: sniff the first
 * client bytes (TLS SNI / HTTP Host) when rules or hooks want them, the
 * auth hook, the user's policy, the route hook, the rules, the outbound's
 * dial.  And the owner side of every connection (struct lr_conn_owner):
 * the connect and close hooks, policy charging and rate limits, the
 * access line, the inbound's counts and the generation a connection holds.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "dispatch/policy.h"
#include "dispatch/dispatch.h"
#include "dispatch/route_dns.h"
#include "inbound/front.h"
#include "outbound/outbound.h"
#include "route/route.h"
#include "script/bridge.h"
#include "stream/tls.h"

/* ------------------------------------------------------------ hooks */

static int has_hook(struct lr_conn *c, int kind)
{
    return c->gen->script && (c->gen->hooks & (1u << kind));
}

/* Text a hook context points into (lives for the call). */
struct hook_text {
    char src[64], peer[64];
};

static const char *const transport_names[] = {
    [LR_TP_TCP] = "tcp", [LR_TP_WS] = "ws", [LR_TP_HTTPUPGRADE] = "httpupgrade",
    [LR_TP_GRPC] = "grpc",
};

static int same_addr(const struct lr_addr *a, const struct lr_addr *b)
{
    uint8_t x[16], y[16];
    int n = lr_addr_ip_bytes(a, x);
    return n == lr_addr_ip_bytes(b, y) && memcmp(x, y, (size_t)n) == 0 &&
           lr_addr_port(a) == lr_addr_port(b);
}

/* What every hook of a client of ib sees about where it came from: the
 * client (src), the TCP peer, the transport and TLS. */
static void hook_where(struct lr_hook_ctx *x, const struct lr_inbound *ib,
                       const struct lr_addr *src, const struct lr_addr *peer,
                       struct hook_text *t)
{
    lr_addr_ip_str(src, t->src, sizeof(t->src));
    x->src_ip = t->src;
    x->src_port = lr_addr_port(src);
    if (same_addr(src, peer)) {
        x->peer_ip = x->src_ip; /* one string for both in Lua */
    } else {
        lr_addr_ip_str(peer, t->peer, sizeof(t->peer));
        x->peer_ip = t->peer;
    }
    x->peer_port = lr_addr_port(peer);
    x->inbound = ib->tag;
    x->transport = ib->tp.type < sizeof(transport_names) / sizeof(*transport_names)
                   ? transport_names[ib->tp.type] : "tcp";
    x->tls = ib->tls.on;
    x->tls_sni = NULL; /* the TLS stage's, once it records what the client sent */
}

static void hook_ctx(struct lr_conn *c, int kind, struct lr_hook_ctx *x,
                     struct hook_text *t)
{
    memset(x, 0, sizeof(*x));
    x->kind = kind;
    x->id = c->id;
    x->generation = c->gen->id;
    hook_where(x, c->ib, &c->src, &c->peer, t);
    /* the SNI the client sent, once the TLS stage is done */
    struct lr_tls_stream *tls = lr_tls_of(c->cli.top);
    if (tls && lr_tls_sni(tls)[0])
        x->tls_sni = lr_tls_sni(tls);
    if (c->user >= 0) {
        x->user_email = c->gen->users[c->user].email;
        x->user_level = (int32_t)c->gen->users[c->user].level;
    }
    if (c->dst.host[0]) {
        x->dst_host = c->dst.host;
        x->dst_port = c->dst.port;
    }
    x->network = c->dst.network == LR_NET_UDP ? "udp" : "tcp";
    x->outbound = c->ob ? c->ob->tag : NULL;
    if (c->dst.sniff_host[0])
        x->sniffed_host = c->dst.sniff_host;
    if (c->dst.sniff_proto)
        x->protocol = c->dst.sniff_proto == LR_PROTO_TLS ? "tls" : "http";
}

/* ------------------------------------------------------------ sniffing */

#define SNIFF_WAIT 0.3    /* seconds to wait for the first client bytes */
#define SNIFF_MAX 16384   /* bytes looked at */

/* 1 when sniffing is over, 0 to wait for more bytes, -1 if c was closed. */
static int sniff_try(struct lr_conn *c)
{
    const uint8_t *data;
    size_t n;
    int framed = 0;
    int r = lr_conn_peek(c, &data, &n, &framed);
    if (r <= 0)
        return r;
    if (r == 2)
        return 1; /* no whole chunk in half a buffer: route as is */
    int t = lr_sniff_tls_sni(data, n, c->dst.sniff_host, sizeof(c->dst.sniff_host));
    if (t == 1) {
        c->dst.sniff_proto = LR_PROTO_TLS;
        return 1;
    }
    int h = lr_sniff_http_host(data, n, c->dst.sniff_host, sizeof(c->dst.sniff_host));
    if (h == 1) {
        c->dst.sniff_proto = LR_PROTO_HTTP;
        return 1;
    }
    c->dst.sniff_host[0] = 0;
    if (t < 0 && n >= 6 && data[0] == 0x16 && data[1] == 0x03 && data[5] == 0x01) {
        c->dst.sniff_proto = LR_PROTO_TLS; /* a ClientHello without SNI */
        return 1;
    }
    if ((t < 0 && h < 0) || n >= SNIFF_MAX || framed)
        return 1; /* a VMess chunk is all we get before dialling */
    return 0;
}

static void sniff_done(struct lr_conn *c)
{
    ev_io_stop(c->lp->loop, &c->cli.rio);
    lr_dispatch(c);
}

static void sniff_readable(struct lr_conn *c)
{
    ssize_t n = lr_conn_read_client(c);
    if (n == -EAGAIN)
        return;
    if (n == 0 || n == -ENOBUFS) {
        if (n == 0)
            c->up.src_eof = 1;
        sniff_done(c);
        return;
    }
    if (n < 0) {
        lr_conn_close(c, "read failed");
        return;
    }
    int r = sniff_try(c);
    if (r > 0)
        sniff_done(c);
}

/* Starts sniffing; 1 if it waits for bytes, 0 if routing goes on now,
 * -1 if c was closed. */
static int sniff_start(struct lr_conn *c)
{
    c->sniffed = 1;
    if (!c->gen->sniff || c->dst.network != LR_NET_TCP || c->cli.fd < 0)
        return 0;
    if (c->ibops->early_reply && c->ibops->early_reply(c) < 0)
        return -1;
    int r = sniff_try(c);
    if (r != 0)
        return r < 0 ? -1 : 0;
    c->state = LR_CS_SNIFF;
    lr_conn_set_deadline(c, SNIFF_WAIT);
    ev_io_start(c->lp->loop, &c->cli.rio);
    return 1;
}

/* A luaray counter `family{label="value"}` (value a static string), +1 on
 * this worker: slots cached per thread by the strings' addresses. */
static void count_one(uint32_t w, const char *family, const char *label, const char *value)
{
    static __thread struct { const char *f, *v; int32_t slot; } cache[32];
    static __thread int n;
    int32_t slot = -1;
    int k = 0;
    for (; k < n; k++)
        if (cache[k].f == family && cache[k].v == value) {
            slot = cache[k].slot;
            break;
        }
    if (k == n) {
        char v[200], name[400];
        lr_stats_label(v, sizeof(v), value);
        snprintf(name, sizeof(name), "%s{%s=\"%s\"}", family, label, v);
        slot = lr_stats_slot(name, LR_STAT_COUNTER, w);
        if (n < 32) {
            cache[n].f = family;
            cache[n].v = value;
            cache[n++].slot = slot;
        }
    }
    lr_stats_add(w, slot, 1);
}

static int run_hook(struct lr_conn *c, int kind, struct lr_hook_ctx *x)
{
    struct hook_text t;
    hook_ctx(c, kind, x, &t);
    if (kind == LR_HOOK_CLOSE) {
        x->up = c->up.bytes;
        x->down = c->down.bytes;
        x->duration_ms = (ev_now(c->lp->loop) - c->t_start) * 1000.0;
        x->reason = c->reason;
    }
    int v = lr_scripts->call(c->gen->script, x);
    if (v == LR_VERDICT_ERROR) {
        const char *hook = kind == LR_HOOK_AUTH ? "auth" : kind == LR_HOOK_ROUTE ? "route"
                           : kind == LR_HOOK_CONNECT ? "connect" : "close";
        lr_warn("conn %llu: %s hook failed: %s", (unsigned long long)c->id, hook,
                x->out_reason);
        count_one(c->lp->stats_worker, "luaray_hook_errors_total", "hook", hook);
    }
    return v;
}

static int accept_verdict(int v, const struct lr_hook_ctx *x, uint32_t w)
{
    if (v == LR_VERDICT_ERROR)
        count_one(w, "luaray_hook_errors_total", "hook", "accept");
    if (v == LR_VERDICT_ERROR)
        lr_warn("accept hook failed (client refused): %s", x->out_reason);
    else if (v == LR_VERDICT_REFUSE)
        lr_debug("client %s refused by the accept hook: %s", x->src_ip, x->out_reason);
    return v == LR_VERDICT_CONTINUE ? 0 : -1;
}

int lr_dispatch_accept_hook(struct lr_inbound *ib, const struct lr_addr *src)
{
    return lr_dispatch_accept_hook_net(ib, src, "tcp");
}

int lr_dispatch_accept_hook_net(struct lr_inbound *ib, const struct lr_addr *src,
                                const char *network)
{
    struct lr_gen *g = ib->gen;
    if (!g->script || !(g->hooks & (1u << LR_HOOK_ACCEPT)))
        return 0;
    /* behind a PROXY-protocol sender the client is known only once its
     * header is read: the front runs the hook then (lr_dispatch_accept_hook_conn) */
    if (ib->proxy_protocol)
        return 0;
    struct lr_hook_ctx x;
    struct hook_text t;
    memset(&x, 0, sizeof(x));
    x.kind = LR_HOOK_ACCEPT;
    x.id = ib->rt->net.next_conn_id + ib->rt->net.id_step; /* the id it will get */
    x.generation = g->id;
    hook_where(&x, ib, src, src, &t);
    x.network = network;
    return accept_verdict(lr_scripts->call(g->script, &x), &x, ib->rt->net.stats_worker);
}

int lr_dispatch_accept_hook_conn(struct lr_conn *c)
{
    if (!has_hook(c, LR_HOOK_ACCEPT))
        return 0;
    struct lr_hook_ctx x;
    struct hook_text t;
    hook_ctx(c, LR_HOOK_ACCEPT, &x, &t);
    return accept_verdict(lr_scripts->call(c->gen->script, &x), &x, c->lp->stats_worker);
}

/* A destination host in a numeric spelling becomes the address it spells
 * (so rules, hooks, the private-range check and the dial all see the same
 * thing); -1 if it looks numeric but is no address. */
static int dest_normalise(struct lr_dest *d)
{
    struct lr_addr a;
    if (d->atyp != LR_ATYP_DOMAIN)
        return 0;
    int r = lr_host_numeric(d->host, &a);
    if (r <= 0)
        return r;
    int len = lr_addr_ip_bytes(&a, d->ip);
    d->atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
    lr_addr_from_bytes(d->ip, len, 0, &a);
    lr_addr_ip_str(&a, d->host, sizeof(d->host));
    return 0;
}

/* The connection's outbound is ob (or none): dial it. */
static void dial_outbound(struct lr_conn *c, int32_t ob)
{
    if (ob < 0) {
        lr_conn_dial_failed(c, -EHOSTUNREACH, "no route");
        return;
    }
    c->ob = &c->gen->ob[ob];
    c->obops = lr_outbound_ops(c->ob->type);
    lr_conn_set_deadline(c, c->ob->connect_timeout);
    c->obops->dial(c);
}

static void route_rules(struct lr_conn *c, const uint8_t *ips, int nips, int resolved);

/* The destination name's addresses, for rules under a domain_strategy. */
static void route_resolved(void *ud, int err, const struct lr_addr *addrs, int naddrs)
{
    struct lr_conn *c = ud;
    uint8_t ips[LR_DNS_MAX_ADDRS * 16];
    c->dns = NULL;
    int n = err ? 0 : lr_route_dns_bytes(addrs, naddrs, ips);
    lr_route_dns_put(c->dst.host, ips, n);
    route_rules(c, ips, n, 1);
}

/* The routing rules (after the route hook left the choice to them), then
 * the dial.  A domain_strategy may need the name's addresses first: from
 * the worker's cache, or resolved (without blocking) and back here. */
static void route_rules(struct lr_conn *c, const uint8_t *ips, int nips, int resolved)
{
    int to_sniffed = 0;
    struct lr_route_query q = {
        .network = c->dst.network, .atyp = c->dst.atyp, .port = c->dst.port,
        .ip = c->dst.ip, .host = c->dst.host,
        .user = c->user >= 0 ? c->gen->users[c->user].email : NULL,
        .inbound = c->ib->tag, .sniff_proto = c->dst.sniff_proto,
        .sniff_host = c->dst.sniff_host,
        .resolved = ips, .nresolved = (uint8_t)nips, .resolve_done = (uint8_t)resolved,
    };
    /* the client's address, for `source` rules */
    if (c->src.ss.ss_family == AF_INET) {
        q.src_ip = (const uint8_t *)&((const struct sockaddr_in *)&c->src.ss)->sin_addr;
        q.src_len = 4;
    } else if (c->src.ss.ss_family == AF_INET6) {
        q.src_ip = (const uint8_t *)&((const struct sockaddr_in6 *)&c->src.ss)->sin6_addr;
        q.src_len = 16;
    }
    int32_t ob = lr_route_pick_ex(c->gen->rules, c->gen->nrules, c->gen->default_ob, &q,
                                  c->gen->route_strategy, &to_sniffed);
    if (ob == LR_ROUTE_NEED_IPS) {
        uint8_t cached[LR_DNS_MAX_ADDRS * 16];
        int n = 0;
        if (lr_route_dns_get(c->dst.host, cached, &n)) {
            route_rules(c, cached, n, 1);
            return;
        }
        /* the default outbound's connect timeout bounds the lookup */
        lr_conn_set_deadline(c, c->gen->ob[c->gen->default_ob].connect_timeout);
        c->dns = lr_dns_resolve(c->dst.host, c->dst.port, 0, route_resolved, c);
        if (!c->dns)
            lr_conn_dial_failed(c, -ENOMEM, "out of memory");
        return;
    }
    if (to_sniffed) {
        /* the rule allowed the name the client sent in TLS/HTTP: that
         * name is what gets dialled (v2ray's destOverride) */
        c->dst.atyp = LR_ATYP_DOMAIN;
        memset(c->dst.ip, 0, sizeof(c->dst.ip));
        memcpy(c->dst.host, c->dst.sniff_host, sizeof(c->dst.host));
        if (dest_normalise(&c->dst) < 0) {
            lr_conn_dial_failed(c, -EINVAL, "bad destination address");
            return;
        }
    }
    dial_outbound(c, ob);
}

void lr_dispatch(struct lr_conn *c)
{
    struct lr_loop *lp = c->lp;
    struct lr_hook_ctx x;
    int32_t ob = -1;
    if (!c->sniffed) {
        int r = sniff_start(c);
        if (r != 0)
            return; /* waiting for bytes, or closed */
    }
    if (dest_normalise(&c->dst) < 0) {
        ev_io_stop(lp->loop, &c->cli.rio);
        c->state = LR_CS_DIAL;
        lr_conn_dial_failed(c, -EINVAL, "bad destination address");
        return;
    }
    /* Reading on while the outbound connects saves stopping and re-arming
     * the client's watcher (an epoll_ctl each, and an extra loop pass when
     * bytes arrive meanwhile); dial_read only buffers, so a refusal still
     * drops them. */
    if (!c->ibops->read_while_dialing || c->cli.fd < 0 || c->cli.dgram ||
        c->up.pend_len)
        ev_io_stop(lp->loop, &c->cli.rio);
    c->state = LR_CS_DIAL;
    c->dialed = 1;
    if (has_hook(c, LR_HOOK_AUTH)) {
        int v = run_hook(c, LR_HOOK_AUTH, &x);
        if (v != LR_VERDICT_CONTINUE) {
            snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", x.out_reason);
            lr_conn_dial_failed(c, -EACCES, v == LR_VERDICT_REFUSE
                                ? "refused by auth hook" : "auth hook failed");
            return;
        }
    }
    if (c->user >= 0) {
        uint8_t ip[16];
        int il = lr_addr_ip_bytes(&c->src, ip);
        const char *why = lr_policy_admit(c->gen->users[c->user].email, ip,
                                          il, &c->pol);
        if (why) {
            count_one(c->lp->stats_worker, "luaray_policy_refusals_total", "reason", why);
            lr_conn_dial_failed(c, -EACCES, why);
            return;
        }
    }
    if (has_hook(c, LR_HOOK_ROUTE)) {
        int v = run_hook(c, LR_HOOK_ROUTE, &x);
        if (v == LR_VERDICT_ERROR) {
            snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", x.out_reason);
            lr_conn_dial_failed(c, -EACCES, "route hook failed");
            return;
        }
        if (v == LR_VERDICT_ROUTE) {
            for (uint32_t i = 0; i < c->gen->nob && ob < 0; i++)
                if (strcmp(c->gen->ob[i].tag, x.out_tag) == 0)
                    ob = (int32_t)i;
            if (ob < 0) {
                snprintf(c->fail_detail, sizeof(c->fail_detail),
                         "no outbound '%s'", x.out_tag);
                lr_conn_dial_failed(c, -EACCES, "route hook failed");
                return;
            }
        }
    }
    if (ob < 0) {
        route_rules(c, NULL, 0, 0);
        return;
    }
    dial_outbound(c, ob);
}


/* ------------------------------------------------------------ new connections */

/* The generation's counts and reference, set on a new connection of ib. */
static void adopt(struct lr_conn *c, struct lr_inbound *ib, int session)
{
    c->ib = ib;
    c->gen = ib->gen;
    lr_gen_ref(c->gen);
    c->session = (uint8_t)session;
    if (session) {
        ib->nsessions++;
    } else {
        ib->nconns++;
        if (c->gen->counted)
            lr_stats_add(c->lp->stats_worker, ib->st_open, 1);
    }
}

/* The counter of `family{inbound="TAG",label="why"}` for ib, through its
 * cache of the (static) reasons seen; a reason past the cache counts as
 * "other". */
static int32_t reason_slot(struct lr_conn *c, struct lr_ib_reason *cache,
                           const char *family, const char *label, const char *why)
{
    struct lr_inbound *ib = c->ib;
    int k = 0;
    for (; k < 16 && cache[k].why; k++)
        if (cache[k].why == why)
            return cache[k].slot;
    char tag[200], w[200], name[600];
    lr_stats_label(tag, sizeof(tag), ib->tag);
    lr_stats_label(w, sizeof(w), k < 16 ? why : "other");
    snprintf(name, sizeof(name), "%s{inbound=\"%s\",%s=\"%s\"}", family, tag, label, w);
    int32_t slot = lr_stats_slot(name, LR_STAT_COUNTER, c->lp->stats_worker);
    if (k < 16)
        cache[k] = (struct lr_ib_reason){.why = why, .slot = slot};
    return slot;
}

/* At a client connection's close: the open gauge, and its result. */
static void count_close(struct lr_conn *c)
{
    struct lr_inbound *ib = c->ib;
    uint32_t w = c->lp->stats_worker;
    const char *why = c->reason ? c->reason : "closed";
    if (!c->gen->counted || c->session)
        return;
    lr_stats_add(w, ib->st_open, (uint64_t)-1);
    lr_stats_add(w, reason_slot(c, ib->st_closed, "luaray_connections_total", "result", why), 1);
    /* never past its handshake: refused (silently or not) or cut short */
    if (!c->dialed && (c->state == LR_CS_HANDSHAKE || c->state == LR_CS_DRAIN ||
                       c->state == LR_CS_LINGER))
        lr_stats_add(w, reason_slot(c, ib->st_refused, "luaray_handshake_failures_total",
                                    "reason", why), 1);
}

int lr_dispatch_accept(struct lr_inbound *ib, int fd, const struct lr_addr *src,
                       const struct lr_ib_ops *ops)
{
    struct lr_conn *c = lr_conn_new(&ib->rt->net, fd, src, ops, ib->handshake_timeout,
                                    ib->idle_timeout);
    if (!c)
        return -1;
    adopt(c, ib, 0);
    c->peer = *src;
    if (lr_front_start(c) != 0)
        lr_conn_close(c, "out of memory"); /* closes fd too */
    else if (c->ibops->accepted) /* no front: the inbound starts now */
        c->ibops->accepted(c);
    return 0;
}

struct lr_conn *lr_dispatch_datagram(struct lr_inbound *ib, const struct lr_addr *src,
                                     const struct lr_ib_ops *ops,
                                     size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    struct lr_conn *c = lr_conn_new(&ib->rt->net, -1, src, ops, ib->handshake_timeout,
                                    ib->idle_timeout);
    if (!c)
        return NULL;
    c->cli.sink = sink;
    c->peer = *src;
    adopt(c, ib, 0); /* a client of its own: counted as a connection */
    return c;
}

/* ------------------------------------------------------------ fallback */

static void fallback_connected(struct lr_conn *c)
{
    lr_conn_start_relay(c);
}

static void fallback_dial_failed(struct lr_conn *c, int err)
{
    lr_conn_close(c, c->reason ? c->reason : "fallback unreachable");
}

static const struct lr_ib_ops fallback_ib_ops = {
    .connected = fallback_connected,
    .dial_failed = fallback_dial_failed,
};

static void fallback_done(struct lr_conn *c, int fd)
{
    lr_conn_remote_ready(c, fd, 0);
}

static void fallback_dial(struct lr_conn *c)
{
    /* the operator's own web server, usually on loopback */
    lr_conn_connect(c, c->dst.host, c->dst.port, 0, 0, fallback_done);
}

static const struct lr_ob_ops fallback_ob_ops = {.dial = fallback_dial};
static struct lr_outbound fallback_ob = {.tag = (char *)"fallback", .connect_timeout = 10,
                                        .st_up = -1, .st_down = -1};

void lr_dispatch_fallback(struct lr_conn *c, const char *why)
{
    struct lr_inbound *ib = c->ib;
    if (c->cli.fd < 0) {
        /* a session inside another connection (a gRPC tunnel) is past
         * anything a web server could answer: refused silently, as a bad
         * header without a fallback is */
        lr_conn_drain(c, why);
        return;
    }
    if (!ib->fallback_host) {
        lr_conn_close(c, why);
        return;
    }
    lr_debug("conn %llu: to the fallback: %s", (unsigned long long)c->id, why);
    /* whatever the client sent so far goes on as it came: no codec on
     * either side, whatever the inbound had set up */
    lr_body_free(c->up.dec);
    c->up.dec = NULL;
    lr_body_free(c->down.enc);
    c->down.enc = NULL;
    free(c->down.prefix);
    c->down.prefix = NULL;
    c->up.pre = NULL;
    if (c->ibops && c->ibops->free)
        c->ibops->free(c);
    c->ibops = &fallback_ib_ops;
    snprintf(c->fail_detail, sizeof(c->fail_detail), "fallback: %s", why);
    memset(&c->dst, 0, sizeof(c->dst));
    c->dst.network = LR_NET_TCP;
    c->dst.atyp = LR_ATYP_DOMAIN;
    c->dst.port = ib->fallback_port;
    snprintf(c->dst.host, sizeof(c->dst.host), "%s", ib->fallback_host);
    c->user = -1;
    c->state = LR_CS_DIAL;
    c->ob = &fallback_ob;
    c->obops = &fallback_ob_ops;
    /* the client's bytes wait in up.in; read on while dialling */
    ev_io_stop(c->lp->loop, &c->cli.rio);
    lr_conn_set_deadline(c, fallback_ob.connect_timeout);
    fallback_dial(c);
}

struct lr_conn *lr_dispatch_session(struct lr_conn *parent, const struct lr_ib_ops *ops,
                                    size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    return lr_dispatch_session_of(parent, parent->ib, ops, sink);
}

struct lr_inbound *lr_dispatch_current_ib(struct lr_inbound *ib)
{
    struct lr_gen *g = ib->rt ? ib->rt->gen : NULL;
    if (!g || g == ib->gen)
        return ib;
    for (uint32_t i = 0; i < g->nib; i++)
        if (strcmp(g->ib[i].tag, ib->tag) == 0 && g->ib[i].type == ib->type &&
            g->ib[i].tp.type == ib->tp.type)
            return &g->ib[i];
    return ib;
}

struct lr_conn *lr_dispatch_session_of(struct lr_conn *parent, struct lr_inbound *ib,
                                       const struct lr_ib_ops *ops,
                                       size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    if (ib->max_connections && ib->nsessions >= ib->max_connections)
        return NULL; /* the inbound's session pool is full */
    struct lr_conn *c = lr_conn_new(parent->lp, -1, &parent->src, ops, ib->handshake_timeout,
                                    ib->idle_timeout);
    if (!c)
        return NULL;
    c->cli.sink = sink;
    c->peer = parent->peer;
    adopt(c, ib, 1);
    return c;
}

/* ------------------------------------------------------------ the owner */

static void dest_str(const struct lr_dest *d, char *buf, size_t n)
{
    if (!d->host[0])
        snprintf(buf, n, "-");
    else if (strchr(d->host, ':'))
        snprintf(buf, n, "[%s]:%u", d->host, d->port);
    else
        snprintf(buf, n, "%s:%u", d->host, d->port);
}

void lr_dispatch_list(struct lr_loop *lp, const char *who)
{
    static const char *states[] = {"?", "handshake", "refused", "dialing", "relay", "sniffing",
                                   "refused"};
    ev_tstamp now = ev_now(lp->loop);
    uint32_t n = 0;
    for (struct lr_conn *c = lp->conns; c; c = c->next, n++) {
        char src[64], dst[300];
        lr_addr_str(&c->src, src, sizeof(src));
        dest_str(&c->dst, dst, sizeof(dst));
        lr_info("%sconn %llu %s %s %s %s %s %s %s age=%.1fs up=%llu down=%llu", who,
                (unsigned long long)c->id, states[c->state >= 1 && c->state <= 6 ? c->state : 0],
                c->ib ? c->ib->tag : "-", src,
                c->user >= 0 ? c->gen->users[c->user].email : "-",
                c->dst.network == LR_NET_UDP ? "udp" : "tcp", dst, c->ob ? c->ob->tag : "-",
                now - c->t_start, (unsigned long long)c->up.bytes,
                (unsigned long long)c->down.bytes);
    }
    lr_info("%s%u connections listed", who, n);
}

static void owner_relaying(struct lr_conn *c)
{
    /* traffic is counted where it meets an outbound: a Mux.Cool carrier
     * or a UDP association's control connection carries none of its own
     * (its sessions count theirs) */
    if (c->gen->counted && c->ob) {
        if (c->user >= 0) {
            c->st[0] = c->gen->users[c->user].st_up;
            c->st[1] = c->gen->users[c->user].st_down;
        }
        c->st[2] = c->ib->st_up;
        c->st[3] = c->ib->st_down;
        c->st[4] = c->ob->st_up;
        c->st[5] = c->ob->st_down;
        c->st_up = c->st_down = 0;
        c->counted = 1;
    }
    if (has_hook(c, LR_HOOK_CONNECT)) {
        struct lr_hook_ctx x;
        run_hook(c, LR_HOOK_CONNECT, &x); /* failures are only logged */
    }
}

static int owner_charge(struct lr_conn *c, uint64_t bytes)
{
    return lr_policy_charge(c->pol, (double)bytes);
}

static double owner_wait(struct lr_conn *c, double now)
{
    return lr_policy_wait(c->pol, now);
}

static void owner_sniff_deadline(struct lr_conn *c)
{
    sniff_done(c); /* nothing recognisable in time: route as is */
}

static void owner_closing(struct lr_conn *c)
{
    if (c->dialed && has_hook(c, LR_HOOK_CLOSE)) {
        struct lr_hook_ctx x;
        run_hook(c, LR_HOOK_CLOSE, &x); /* failures are only logged */
    }
    if (c->pol) {
        uint8_t ip[16];
        int il = lr_addr_ip_bytes(&c->src, ip);
        lr_policy_charge(c->pol, (double)(c->up.bytes + c->down.bytes - c->charged));
        lr_policy_release(c->pol, ip, il);
        c->pol = NULL;
    }
}

static void owner_closed(struct lr_conn *c)
{
    count_close(c);
    if (lr_access_enabled()) {
        char src[64], dst[300];
        lr_addr_str(&c->src, src, sizeof(src));
        dest_str(&c->dst, dst, sizeof(dst));
        lr_access_write("%s %s %s %s %s %s up=%llu down=%llu dur=%.3f %s%s%s",
                        src, c->ib->tag,
                        c->user >= 0 ? c->gen->users[c->user].email : "-",
                        c->dst.network == LR_NET_UDP ? "udp" : "tcp", dst,
                        c->ob ? c->ob->tag : "-",
                        (unsigned long long)c->up.bytes,
                        (unsigned long long)c->down.bytes,
                        ev_now(c->lp->loop) - c->t_start, c->reason,
                        c->fail_detail[0] ? ": " : "", c->fail_detail);
    }
    if (c->session)
        c->ib->nsessions--;
    else
        c->ib->nconns--;
    lr_gen_unref(c->gen); /* may hand the generation to its owner */
}

const struct lr_scripts *lr_scripts;

const struct lr_conn_owner lr_dispatch_owner = {
    .relaying = owner_relaying,
    .charge = owner_charge,
    .wait = owner_wait,
    .sniff_readable = sniff_readable,
    .sniff_deadline = owner_sniff_deadline,
    .closing = owner_closing,
    .closed = owner_closed,
};
