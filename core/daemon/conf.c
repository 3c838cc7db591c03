/*
 * The lr_conf_* API of api.h: lua/luaray/daemon.lua walks the config
 * script's normalized table and declares each item here.  Every string is
 * copied (C never keeps a pointer into Lua memory).  Values were already
 * checked by the Lua DSL; what is checked again here is what C relies on.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/conf.h"
#include "daemon/live.h"
#include "route/cidr_set.h"
#include "route/domain_set.h"
#include "route/geodata.h"
#include "route/route.h"

static int fail(struct lr_conf *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof(c->error), fmt, ap);
    va_end(ap);
    return LR_EINVAL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

#define GROW(arr, n)                                                          \
    ({                                                                        \
        void *p_ = realloc((arr), sizeof(*(arr)) * ((n) + 1));                \
        if (p_) {                                                             \
            (arr) = p_;                                                       \
            memset(&(arr)[n], 0, sizeof(*(arr)));                             \
        }                                                                     \
        p_ != NULL;                                                           \
    })

LR_API struct lr_conf *lr_conf_new(void)
{
    struct lr_conf *c = calloc(1, sizeof(*c));
    if (c) {
        c->log_level = LR_LOG_INFO;
        c->workers = 1;
    }
    return c;
}

static void strv_free(char **v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

LR_API void lr_conf_free(struct lr_conf *c)
{
    if (!c)
        return;
    lr_live_snap_free(c->live_snap);
    free(c->uhash);
    free(c->metrics_host);
    free(c->metrics_token);
    free(c->metrics_where);
    free(c->api_host);
    free(c->api_where);
    lr_cluster_conf_clear(&c->cluster);
    for (uint32_t i = 0; i < c->nusers; i++)
        free(c->users[i].email);
    free(c->users);
    for (uint32_t i = 0; i < c->nib; i++) {
        struct lr_inbound *ib = &c->ib[i].ib;
        free(ib->tag);
        free(ib->host);
        free(ib->to_host);
        for (uint32_t k = 0; k < ib->naccounts; k++) {
            free(ib->accounts[k].user);
            free(ib->accounts[k].pass);
        }
        free(ib->accounts);
        lr_users_free(ib->users);
        free(ib->user_map);
        free(ib->dyn_cmd);
        lr_tls_free(&ib->tls);
        lr_transport_free(&ib->tp);
        free(ib->fallback_host);
        free(ib->trusted);
        strv_free(c->ib[i].users, c->ib[i].nusers);
        free(c->ib[i].where);
    }
    free(c->ib);
    for (uint32_t i = 0; i < c->nob; i++) {
        free(c->ob[i].ob.tag);
        free(c->ob[i].ob.server_host);
        lr_tls_free(&c->ob[i].ob.tls);
        lr_transport_free(&c->ob[i].ob.tp);
        free(c->ob[i].where);
    }
    free(c->ob);
    for (uint32_t i = 0; i < c->nrules; i++) {
        lr_rule_free(&c->rules[i].r);
        free(c->rules[i].to);
        free(c->rules[i].where);
    }
    free(c->rules);
    free(c->default_tag);
    free(c->access);
    free(c->log_where);
    for (uint32_t i = 0; i < c->npolicies; i++)
        free(c->policies[i].email);
    free(c->policies);
    lr_wipe(c, sizeof(*c));
    free(c);
}

LR_API const char *lr_conf_error(const struct lr_conf *c)
{
    return c->error;
}

LR_API int lr_conf_log(struct lr_conf *c, int level, const char *access,
                       const char *where)
{
    if (level < LR_LOG_DEBUG || level > LR_LOG_ERROR)
        return fail(c, "log level out of range");
    c->log_level = level;
    free(c->access);
    c->access = dup_or_null(access);
    c->access_set = 1;
    free(c->log_where);
    c->log_where = dup_or_null(where);
    return LR_OK;
}

LR_API int lr_conf_metrics(struct lr_conf *c, const char *host, uint16_t port,
                           const char *token, const char *where)
{
    if (!host || !port)
        return fail(c, "metrics: listen address missing");
    free(c->metrics_host);
    free(c->metrics_token);
    free(c->metrics_where);
    c->metrics_host = strdup(host);
    c->metrics_token = dup_or_null(token);
    c->metrics_where = dup_or_null(where);
    c->metrics_port = port;
    if (!c->metrics_host || (token && !c->metrics_token))
        return fail(c, "out of memory");
    return LR_OK;
}

LR_API int lr_conf_api(struct lr_conf *c, const char *host, uint16_t port, const char *where)
{
    if (!host || !port)
        return fail(c, "api: listen address missing");
    free(c->api_host);
    free(c->api_where);
    c->api_host = strdup(host);
    c->api_where = dup_or_null(where);
    c->api_port = port;
    if (!c->api_host || (where && !c->api_where))
        return fail(c, "out of memory");
    return LR_OK;
}

LR_API int lr_conf_cluster(struct lr_conf *c, const char *host, uint16_t port,
                           const char *password, int db, const char *prefix,
                           const char *node, int timeout_ms, const char *where)
{
    if (!host || !port || !node || !prefix)
        return fail(c, "cluster: redis address or node missing");
    if (db < 0 || timeout_ms < 1 || timeout_ms > 10000)
        return fail(c, "cluster: db or timeout_ms out of range");
    lr_cluster_conf_clear(&c->cluster);
    struct lr_cluster_conf *k = &c->cluster;
    k->host = strdup(host);
    k->password = dup_or_null(password);
    k->prefix = strdup(prefix);
    k->node = strdup(node);
    k->where = dup_or_null(where);
    k->port = port;
    k->db = db;
    k->timeout_ms = timeout_ms;
    if (!k->host || !k->prefix || !k->node || (password && !k->password) ||
        (where && !k->where)) {
        lr_cluster_conf_clear(k);
        return fail(c, "out of memory");
    }
    return LR_OK;
}

LR_API int lr_conf_workers(struct lr_conf *c, int n)
{
    if (n < 0 || n > LR_MAX_WORKERS)
        return fail(c, "workers out of range");
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus < 1 ? 1 : cpus > LR_MAX_WORKERS ? LR_MAX_WORKERS : (int)cpus;
    }
    c->workers = n;
    return LR_OK;
}

/* The users' emails and IDs, hashed (open addressing over user indices,
 * -1 empty), so declaring n users takes O(n) checks, not n^2/2 string
 * compares (10,000 users: half of the start-up). */
static uint32_t fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint32_t email_hash(const char *e)
{
    return fnv(e, strlen(e));
}

static int uhash_grow(struct lr_conf *c)
{
    uint32_t cap = c->uhcap ? c->uhcap * 2 : 256;
    int32_t *t = malloc(sizeof(*t) * cap * 2); /* emails, then ids */
    if (!t)
        return -1;
    memset(t, 0xff, sizeof(*t) * cap * 2);
    for (uint32_t k = 0; k < c->nusers; k++) {
        uint32_t i = email_hash(c->users[k].email) & (cap - 1);
        while (t[i] >= 0)
            i = (i + 1) & (cap - 1);
        t[i] = (int32_t)k;
        i = fnv(c->users[k].id, 16) & (cap - 1);
        while (t[cap + i] >= 0)
            i = (i + 1) & (cap - 1);
        t[cap + i] = (int32_t)k;
    }
    free(c->uhash);
    c->uhash = t;
    c->uhcap = cap;
    return 0;
}

LR_API int lr_conf_user(struct lr_conf *c, const char *uuid,
                        const char *email, uint32_t alter_id, uint32_t level)
{
    uint8_t id[16];
    if (!uuid || lr_uuid_parse(uuid, strlen(uuid), id) != LR_OK)
        return fail(c, "invalid user id");
    if (!email || !*email)
        return fail(c, "user needs an email");
    if (alter_id > 65535)
        return fail(c, "alter_id out of range");
    if ((c->nusers + 1) * 2 > c->uhcap && uhash_grow(c) != 0)
        return LR_ENOMEM;
    uint32_t cap = c->uhcap, ei = email_hash(email) & (cap - 1), ii = fnv(id, 16) & (cap - 1);
    for (; c->uhash[cap + ii] >= 0; ii = (ii + 1) & (cap - 1))
        if (memcmp(c->users[c->uhash[cap + ii]].id, id, 16) == 0)
            return fail(c, "duplicate user id");
    for (; c->uhash[ei] >= 0; ei = (ei + 1) & (cap - 1))
        if (strcmp(c->users[c->uhash[ei]].email, email) == 0)
            return fail(c, "duplicate user email '%s'", email);
    if (!GROW(c->users, c->nusers))
        return LR_ENOMEM;
    c->uhash[ei] = (int32_t)c->nusers;
    c->uhash[cap + ii] = (int32_t)c->nusers;
    struct lr_user_info *u = &c->users[c->nusers];
    memcpy(u->id, id, 16);
    u->email = strdup(email);
    u->alter_id = alter_id;
    u->level = level;
    c->nusers++;
    return LR_OK;
}

LR_API int lr_conf_inbound(struct lr_conf *c, const struct lr_conf_inbound *s)
{
    int type;
    struct lr_addr a;
    if (!s->tag || !*s->tag)
        return fail(c, "inbound needs a tag");
    if (!s->type)
        return fail(c, "inbound '%s' needs a type", s->tag);
    if (strcmp(s->type, "vmess") == 0)
        type = LR_IB_VMESS;
    else if (strcmp(s->type, "socks") == 0)
        type = LR_IB_SOCKS;
    else if (strcmp(s->type, "http") == 0)
        type = LR_IB_HTTP;
    else if (strcmp(s->type, "tunnel") == 0)
        type = LR_IB_TUNNEL;
    else if (strcmp(s->type, "tproxy") == 0)
        type = LR_IB_TPROXY;
    else if (strcmp(s->type, "redirect") == 0)
        type = LR_IB_REDIRECT;
    else
        return fail(c, "inbound '%s': unknown type '%s'", s->tag, s->type);
    if (!s->host || s->port == 0)
        return fail(c, "inbound '%s' needs listen = \"host:port\"", s->tag);
    const char *host = s->host;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (lr_addr_parse(host, s->port, &a) != 0)
        return fail(c, "inbound '%s': listen host must be an IP address", s->tag);
    for (uint32_t i = 0; i < c->nib; i++)
        if (strcmp(c->ib[i].ib.tag, s->tag) == 0)
            return fail(c, "duplicate inbound tag '%s'", s->tag);
    if (!GROW(c->ib, c->nib))
        return LR_ENOMEM;
    struct lr_conf_ib *ci = &c->ib[c->nib++];
    struct lr_inbound *ib = &ci->ib;
    ib->tag = strdup(s->tag);
    ib->type = type;
    ib->host = strdup(host);
    ib->port = s->port;
    ib->addr = a;
    ib->fd = -1;
    ib->ufd = -1;
    ib->net_tcp = 1;
    ib->allow_legacy = s->allow_legacy;
    ib->allow_private = s->allow_private;
    ib->udp = s->udp;
    ib->handshake_timeout = s->handshake_timeout > 0 ? s->handshake_timeout
                            : type == LR_IB_VMESS ? 60 : 10;
    ib->idle_timeout = s->idle_timeout > 0 ? s->idle_timeout : 300;
    ib->max_connections = s->max_connections;
    ib->proxy_protocol = s->proxy_protocol ? 1 : 0;
    if (s->max_sessions > 1024)
        return fail(c, "inbound '%s': max_sessions out of range", s->tag);
    ib->max_sessions = s->max_sessions ? s->max_sessions : 256;
    ci->where = dup_or_null(s->where);
    return LR_OK;
}

LR_API int lr_conf_inbound_tunnel(struct lr_conf *c, const char *to_host, uint16_t to_port,
                                  int32_t tcp, int32_t udp, double udp_timeout)
{
    if (!c->nib)
        return fail(c, "tunnel settings without an inbound");
    struct lr_inbound *ib = &c->ib[c->nib - 1].ib;
    if (ib->type != LR_IB_TUNNEL && ib->type != LR_IB_TPROXY && ib->type != LR_IB_REDIRECT)
        return fail(c, "inbound '%s': 'to' and 'network' are for tunnel, tproxy and "
                    "redirect inbounds", ib->tag);
    if (ib->type == LR_IB_TUNNEL && (!to_host || !*to_host || strlen(to_host) > 255 ||
                                     to_port == 0))
        return fail(c, "inbound '%s': a tunnel needs to = \"host:port\"", ib->tag);
    if (ib->type != LR_IB_TUNNEL && to_host)
        return fail(c, "inbound '%s': 'to' is for tunnel inbounds", ib->tag);
    if (!tcp && !udp)
        return fail(c, "inbound '%s': network must name tcp, udp or both", ib->tag);
    if (ib->type == LR_IB_REDIRECT && udp)
        return fail(c, "inbound '%s': redirect is TCP only", ib->tag);
    if (ib->type == LR_IB_TUNNEL) {
        free(ib->to_host);
        if (!(ib->to_host = strdup(to_host)))
            return LR_ENOMEM;
        ib->to_port = to_port;
    }
    ib->net_tcp = tcp ? 1 : 0;
    ib->net_udp = udp ? 1 : 0;
    ib->udp_timeout = udp_timeout > 0 ? udp_timeout : 60;
    return LR_OK;
}

LR_API int lr_conf_inbound_account(struct lr_conf *c, const char *user,
                                   const char *pass)
{
    if (!c->nib)
        return fail(c, "account without an inbound");
    struct lr_inbound *ib = &c->ib[c->nib - 1].ib;
    if (!user || !pass || strlen(user) > 255 || strlen(pass) > 255)
        return fail(c, "inbound '%s': bad account", ib->tag);
    if (!GROW(ib->accounts, ib->naccounts))
        return LR_ENOMEM;
    ib->accounts[ib->naccounts].user = strdup(user);
    ib->accounts[ib->naccounts].pass = strdup(pass);
    ib->naccounts++;
    return LR_OK;
}

LR_API int lr_conf_inbound_dynamic(struct lr_conf *c, uint16_t lo, uint16_t hi,
                                   uint32_t alter_id, uint32_t minutes)
{
    if (!c->nib)
        return fail(c, "dynamic port without an inbound");
    struct lr_inbound *ib = &c->ib[c->nib - 1].ib;
    if (ib->type != LR_IB_VMESS)
        return fail(c, "inbound '%s': dynamic_port needs a vmess inbound", ib->tag);
    if (lo == 0 || hi < lo)
        return fail(c, "inbound '%s': bad dynamic port range", ib->tag);
    if (alter_id > 65535 || minutes < 1 || minutes > 255)
        return fail(c, "inbound '%s': bad dynamic_port alter_id or minutes", ib->tag);
    ib->dyn_lo = lo;
    ib->dyn_hi = hi;
    ib->dyn_alter = alter_id;
    ib->dyn_minutes = minutes;
    return LR_OK;
}

static int push_str(char ***v, uint32_t *n, const char *s);

/* ------------------------------------------------------------ transports */

static struct lr_inbound *last_ib(struct lr_conf *c, const char *what)
{
    if (!c->nib) {
        fail(c, "%s without an inbound", what);
        return NULL;
    }
    return &c->ib[c->nib - 1].ib;
}

static struct lr_outbound *last_ob(struct lr_conf *c, const char *what)
{
    if (!c->nob) {
        fail(c, "%s without an outbound", what);
        return NULL;
    }
    return &c->ob[c->nob - 1].ob;
}

static int set_transport(struct lr_conf *c, struct lr_transport *tp, const char *tag,
                         const struct lr_conf_transport *t)
{
    if (!t || t->type > LR_TP_GRPC)
        return fail(c, "'%s': unknown transport type", tag);
    if ((t->type == LR_TP_WS || t->type == LR_TP_HTTPUPGRADE) && (!t->path || t->path[0] != '/'))
        return fail(c, "'%s': the transport needs an absolute path", tag);
    if (t->max_early_data > 65536 || t->early_data > 65536)
        return fail(c, "'%s': early data at most 65536 bytes", tag);
    lr_transport_free(tp);
    tp->type = (uint8_t)t->type;
    tp->multi = t->multi ? 1 : 0;
    tp->max_early_data = t->max_early_data;
    tp->early_data = t->early_data;
    if (t->path) {
        /* an outbound's ?ed=N is a setting, not part of the path sent */
        size_t n = strcspn(t->path, "?");
        tp->path = strndup(t->path, n);
    }
    tp->host = dup_or_null(t->host);
    tp->service_name = dup_or_null(t->service_name);
    if ((t->path && !tp->path) || (t->host && !tp->host) ||
        (t->service_name && !tp->service_name))
        return LR_ENOMEM;
    return LR_OK;
}

static int push_alpn(struct lr_conf *c, struct lr_tls *tls, const char *proto)
{
    if (!proto || !*proto || strlen(proto) > 255)
        return fail(c, "bad ALPN protocol name");
    return push_str(&tls->alpn, &tls->nalpn, proto);
}

LR_API int lr_conf_inbound_tls_cert(struct lr_conf *c, const char *cert, const char *key)
{
    struct lr_inbound *ib = last_ib(c, "tls");
    if (!ib)
        return LR_EINVAL;
    if (ib->type != LR_IB_VMESS)
        return fail(c, "inbound '%s': tls needs a vmess inbound", ib->tag);
    if (!cert || !*cert || !key || !*key)
        return fail(c, "inbound '%s': tls needs cert and key", ib->tag);
    if (!GROW(ib->tls.certs, ib->tls.ncerts))
        return LR_ENOMEM;
    struct lr_tls_certs *t = &ib->tls.certs[ib->tls.ncerts];
    t->cert = strdup(cert);
    t->key = strdup(key);
    ib->tls.ncerts++;
    if (!t->cert || !t->key)
        return LR_ENOMEM;
    ib->tls.on = 1;
    return LR_OK;
}

LR_API int lr_conf_inbound_alpn(struct lr_conf *c, const char *proto)
{
    struct lr_inbound *ib = last_ib(c, "alpn");
    return ib ? push_alpn(c, &ib->tls, proto) : LR_EINVAL;
}

LR_API int lr_conf_inbound_transport(struct lr_conf *c, const struct lr_conf_transport *t)
{
    struct lr_inbound *ib = last_ib(c, "transport");
    if (!ib)
        return LR_EINVAL;
    if (ib->type != LR_IB_VMESS)
        return fail(c, "inbound '%s': transport needs a vmess inbound", ib->tag);
    return set_transport(c, &ib->tp, ib->tag, t);
}

LR_API int lr_conf_inbound_fallback(struct lr_conf *c, const char *host, uint16_t port)
{
    struct lr_inbound *ib = last_ib(c, "fallback");
    if (!ib)
        return LR_EINVAL;
    if (!host || !*host || !port)
        return fail(c, "inbound '%s': fallback needs \"host:port\"", ib->tag);
    free(ib->fallback_host);
    if (!(ib->fallback_host = strdup(host)))
        return LR_ENOMEM;
    ib->fallback_port = port;
    return LR_OK;
}

LR_API int lr_conf_inbound_trusted(struct lr_conf *c, const uint8_t *ip, uint32_t len,
                                   uint32_t bits)
{
    struct lr_inbound *ib = last_ib(c, "trusted_proxies");
    if (!ib)
        return LR_EINVAL;
    if (!ip || (len != 4 && len != 16) || bits > len * 8)
        return fail(c, "inbound '%s': bad trusted_proxies CIDR", ib->tag);
    if (!GROW(ib->trusted, ib->ntrusted))
        return LR_ENOMEM;
    struct lr_cidr *cd = &ib->trusted[ib->ntrusted++];
    memcpy(cd->ip, ip, len);
    cd->len = (uint8_t)len;
    cd->bits = (uint8_t)bits;
    return LR_OK;
}

LR_API int lr_conf_outbound_tls(struct lr_conf *c, const struct lr_conf_tls *t)
{
    struct lr_outbound *ob = last_ob(c, "tls");
    if (!ob)
        return LR_EINVAL;
    if (ob->type != LR_OB_VMESS)
        return fail(c, "outbound '%s': tls needs a vmess outbound", ob->tag);
    free(ob->tls.server_name);
    free(ob->tls.ca);
    ob->tls.server_name = dup_or_null(t->server_name);
    ob->tls.ca = dup_or_null(t->ca);
    if ((t->server_name && !ob->tls.server_name) || (t->ca && !ob->tls.ca))
        return LR_ENOMEM;
    ob->tls.has_pin = t->pinned_sha256 != NULL;
    if (t->pinned_sha256)
        memcpy(ob->tls.pin, t->pinned_sha256, 32);
    ob->tls.on = 1;
    return LR_OK;
}

LR_API int lr_conf_outbound_alpn(struct lr_conf *c, const char *proto)
{
    struct lr_outbound *ob = last_ob(c, "alpn");
    return ob ? push_alpn(c, &ob->tls, proto) : LR_EINVAL;
}

LR_API int lr_conf_outbound_transport(struct lr_conf *c, const struct lr_conf_transport *t)
{
    struct lr_outbound *ob = last_ob(c, "transport");
    if (!ob)
        return LR_EINVAL;
    if (ob->type != LR_OB_VMESS)
        return fail(c, "outbound '%s': transport needs a vmess outbound", ob->tag);
    return set_transport(c, &ob->tp, ob->tag, t);
}

LR_API int lr_conf_outbound_mux(struct lr_conf *c, uint32_t concurrency)
{
    struct lr_outbound *ob = last_ob(c, "mux");
    if (!ob)
        return LR_EINVAL;
    if (ob->type != LR_OB_VMESS)
        return fail(c, "outbound '%s': mux needs a vmess outbound", ob->tag);
    if (concurrency < 1 || concurrency > 1024)
        return fail(c, "outbound '%s': mux concurrency must be 1-1024", ob->tag);
    ob->mux_concurrency = concurrency;
    return LR_OK;
}

LR_API int lr_conf_outbound_xudp(struct lr_conf *c, int32_t on)
{
    struct lr_outbound *ob = last_ob(c, "xudp");
    if (!ob)
        return LR_EINVAL;
    if (ob->type != LR_OB_VMESS)
        return fail(c, "outbound '%s': xudp needs a vmess outbound", ob->tag);
    ob->xudp = on ? 1 : 0;
    return LR_OK;
}

LR_API int lr_conf_inbound_user(struct lr_conf *c, const char *email)
{
    if (!c->nib)
        return fail(c, "user restriction without an inbound");
    struct lr_conf_ib *ci = &c->ib[c->nib - 1];
    if (!GROW(ci->users, ci->nusers))
        return LR_ENOMEM;
    ci->users[ci->nusers++] = strdup(email);
    return LR_OK;
}

static int security_value(const char *s)
{
    static const struct { const char *name; int v; } t[] = {
        {"aes-128-gcm", LR_SEC_AES128_GCM},
        {"chacha20-poly1305", LR_SEC_CHACHA20_POLY1305},
        {"none", LR_SEC_NONE},
        {"zero", LR_SEC_ZERO},
        {"aes-128-cfb", LR_SEC_AES128_CFB},
        {"auto", LR_SEC_AUTO},
    };
    if (!s)
        return LR_SEC_AUTO;
    for (size_t i = 0; i < LR_ARRAY_LEN(t); i++)
        if (strcmp(s, t[i].name) == 0)
            return t[i].v;
    return -1;
}

LR_API int lr_conf_outbound(struct lr_conf *c, const struct lr_conf_outbound *s)
{
    int type;
    if (!s->tag || !*s->tag)
        return fail(c, "outbound needs a tag");
    if (!s->type)
        return fail(c, "outbound '%s' needs a type", s->tag);
    if (strcmp(s->type, "direct") == 0)
        type = LR_OB_DIRECT;
    else if (strcmp(s->type, "blackhole") == 0)
        type = LR_OB_BLACKHOLE;
    else if (strcmp(s->type, "vmess") == 0)
        type = LR_OB_VMESS;
    else
        return fail(c, "outbound '%s': unknown type '%s'", s->tag, s->type);
    for (uint32_t i = 0; i < c->nob; i++)
        if (strcmp(c->ob[i].ob.tag, s->tag) == 0)
            return fail(c, "duplicate outbound tag '%s'", s->tag);
    struct lr_outbound ob;
    memset(&ob, 0, sizeof(ob));
    ob.type = type;
    ob.connect_timeout = s->connect_timeout > 0 ? s->connect_timeout : 10;
    if (s->domain_strategy && strcmp(s->domain_strategy, "ipv4") == 0)
        ob.family = 4;
    else if (s->domain_strategy && strcmp(s->domain_strategy, "ipv6") == 0)
        ob.family = 6;
    if (type == LR_OB_VMESS) {
        int sec = security_value(s->security);
        if (!s->server_host || !*s->server_host || s->server_port == 0)
            return fail(c, "outbound '%s' needs server = \"host:port\"", s->tag);
        if (!s->id || lr_uuid_parse(s->id, strlen(s->id), ob.id) != LR_OK)
            return fail(c, "outbound '%s': invalid id", s->tag);
        if (sec < 0)
            return fail(c, "outbound '%s': unknown security '%s'", s->tag, s->security);
        if (s->alter_id > 65535)
            return fail(c, "outbound '%s': alter_id out of range", s->tag);
        ob.server_port = s->server_port;
        ob.alter_id = s->alter_id;
        ob.security = (uint8_t)sec;
        ob.masking = s->masking;
        ob.padding = s->padding;
        ob.auth_len = s->authenticated_length;
        ob.udp = s->udp;
    }
    if (!GROW(c->ob, c->nob))
        return LR_ENOMEM;
    struct lr_conf_ob *co = &c->ob[c->nob++];
    co->ob = ob;
    co->ob.tag = strdup(s->tag);
    co->ob.server_host = dup_or_null(s->server_host);
    co->where = dup_or_null(s->where);
    return LR_OK;
}

LR_API int lr_conf_route(struct lr_conf *c, const char *to, const char *where)
{
    if (!to || !*to)
        return fail(c, "route needs `to`");
    if (!GROW(c->rules, c->nrules))
        return LR_ENOMEM;
    struct lr_conf_rule *r = &c->rules[c->nrules++];
    r->to = strdup(to);
    r->where = dup_or_null(where);
    r->r.to = -1;
    return LR_OK;
}

static int push_str(char ***v, uint32_t *n, const char *s)
{
    char **nv = realloc(*v, sizeof(char *) * (*n + 1));
    if (!nv)
        return LR_ENOMEM;
    *v = nv;
    nv[(*n)++] = strdup(s);
    return LR_OK;
}

/* The rule filters go to (the last one started), or NULL with the error
 * set. */
static struct lr_rule *last_rule(struct lr_conf *c)
{
    if (!c->nrules) {
        fail(c, "filter without a route");
        return NULL;
    }
    return &c->rules[c->nrules - 1].r;
}

/* Adds the bits of `mask` to a rule's bit set: a non-zero mask of the
 * `known` bits only (`names` spells them for the error). */
static int add_mask(struct lr_conf *c, uint8_t *set, uint32_t mask,
                    uint32_t known, const char *what, const char *names)
{
    if (mask == 0 || (mask & ~known))
        return fail(c, "bad %s mask 0x%x (%s)", what, mask, names);
    *set |= (uint8_t)mask;
    return LR_OK;
}

/* A domain string into the rule's compiled set (core/route/domain_set.c). */
static int route_domain(struct lr_conf *c, struct lr_rule *r, uint32_t kind, const char *value)
{
    static const int type[] = { [LR_ROUTE_DOMAIN] = LR_DOM_FULL,
                                [LR_ROUTE_DOMAIN_SUFFIX] = LR_DOM_DOMAIN,
                                [LR_ROUTE_DOMAIN_KEYWORD] = LR_DOM_PLAIN,
                                [LR_ROUTE_DOMAIN_REGEX] = LR_DOM_REGEX };
    char why[320];
    if (!r->dset && !(r->dset = lr_dset_new()))
        return LR_ENOMEM;
    const char *v = value;
    if (kind == LR_ROUTE_DOMAIN_SUFFIX && v[0] == '.' && v[1])
        v++;                     /* ".a.com": a.com and below, as "a.com" */
    if (lr_dset_add(r->dset, type[kind], v, strlen(v), why, sizeof(why)) != 0)
        return fail(c, "%s", why);
    return LR_OK;
}

LR_API int lr_conf_route_string(struct lr_conf *c, uint32_t kind,
                                const char *value)
{
    struct lr_rule *r = last_rule(c);
    if (!r)
        return LR_EINVAL;
    if (!value)
        return fail(c, "route filter %u without a value", kind);
    switch (kind) {
    case LR_ROUTE_DOMAIN:
    case LR_ROUTE_DOMAIN_SUFFIX:
    case LR_ROUTE_DOMAIN_KEYWORD:
    case LR_ROUTE_DOMAIN_REGEX:
        return route_domain(c, r, kind, value);
    case LR_ROUTE_USER:
        return push_str(&r->user, &r->nuser, value);
    case LR_ROUTE_INBOUND:
        return push_str(&r->inbound, &r->ninbound, value);
    default:
        return fail(c, "unknown route filter kind %u", kind);
    }
}

LR_API int lr_conf_route_cidr(struct lr_conf *c, const uint8_t *ip,
                              uint32_t len, uint32_t bits)
{
    struct lr_rule *r = last_rule(c);
    if (!r)
        return LR_EINVAL;
    if (!ip || (len != 4 && len != 16))
        return fail(c, "bad CIDR: the address must be 4 or 16 bytes (got %u)", len);
    if (bits > len * 8)
        return fail(c, "bad CIDR: /%u is longer than an IPv%c address", bits,
                    len == 4 ? '4' : '6');
    if (!r->cset && !(r->cset = lr_cset_new()))
        return LR_ENOMEM;
    if (lr_cset_add(r->cset, ip, len, bits) != 0)
        return LR_ENOMEM;
    return LR_OK;
}

LR_API int lr_conf_route_source(struct lr_conf *c, const uint8_t *ip,
                                uint32_t len, uint32_t bits)
{
    struct lr_rule *r = last_rule(c);
    if (!r)
        return LR_EINVAL;
    if (!ip || (len != 4 && len != 16))
        return fail(c, "bad source CIDR: the address must be 4 or 16 bytes (got %u)", len);
    if (bits > len * 8)
        return fail(c, "bad source CIDR: /%u is longer than an IPv%c address", bits,
                    len == 4 ? '4' : '6');
    if (!r->src && !(r->src = lr_cset_new()))
        return LR_ENOMEM;
    if (lr_cset_add(r->src, ip, len, bits) != 0)
        return LR_ENOMEM;
    return LR_OK;
}

/* Appends a shared routing data entry to a rule's list. */
static int push_geo(struct lr_geo ***v, uint32_t *n, struct lr_geo *g)
{
    struct lr_geo **nv = realloc(*v, sizeof(*nv) * (*n + 1));
    if (!nv) {
        lr_geo_unref(g);
        return LR_ENOMEM;
    }
    *v = nv;
    nv[(*n)++] = g;
    return LR_OK;
}

LR_API int lr_conf_route_geosite(struct lr_conf *c, const char *path, const char *list)
{
    struct lr_rule *r = last_rule(c);
    if (!r)
        return LR_EINVAL;
    char why[512];
    struct lr_geo *g = lr_geo_site(path, list, why, sizeof(why));
    if (!g)
        return fail(c, "geosite '%s': %s", list ? list : "", why);
    return push_geo(&r->site, &r->nsite, g);
}

LR_API int lr_conf_route_geoip(struct lr_conf *c, const char *path, const char *code,
                               uint32_t reverse)
{
    struct lr_rule *r = last_rule(c);
    if (!r)
        return LR_EINVAL;
    char why[512];
    struct lr_geo *g = lr_geo_ip(path, code, reverse != 0, why, sizeof(why));
    if (!g)
        return fail(c, "geoip '%s': %s", code ? code : "", why);
    return push_geo(&r->gip, &r->ngip, g);
}

LR_API int lr_conf_route_ports(struct lr_conf *c, uint32_t lo, uint32_t hi)
{
    struct lr_rule *r = last_rule(c);
    if (!r)
        return LR_EINVAL;
    if (lo > hi || hi > 65535)
        return fail(c, "bad port range %u-%u", lo, hi);
    if (!GROW(r->ports, r->nports))
        return LR_ENOMEM;
    r->ports[r->nports][0] = (uint16_t)lo;
    r->ports[r->nports][1] = (uint16_t)hi;
    r->nports++;
    return LR_OK;
}

LR_API int lr_conf_route_network(struct lr_conf *c, uint32_t mask)
{
    struct lr_rule *r = last_rule(c);
    return r ? add_mask(c, &r->network, mask, LR_NET_TCP | LR_NET_UDP, "network",
                        "LR_NET_TCP | LR_NET_UDP")
             : LR_EINVAL;
}

LR_API int lr_conf_route_protocol(struct lr_conf *c, uint32_t mask)
{
    struct lr_rule *r = last_rule(c);
    return r ? add_mask(c, &r->protocol, mask, LR_PROTO_TLS | LR_PROTO_HTTP,
                        "protocol", "LR_PROTO_TLS | LR_PROTO_HTTP")
             : LR_EINVAL;
}

LR_API int lr_conf_policy(struct lr_conf *c, const char *email,
                          const struct lr_policy *p)
{
    if (!email || !p)
        return fail(c, "bad policy");
    if (!GROW(c->policies, c->npolicies))
        return LR_ENOMEM;
    c->policies[c->npolicies].email = strdup(email);
    c->policies[c->npolicies].p = *p;
    c->npolicies++;
    return LR_OK;
}

static int32_t ob_index(const struct lr_conf *c, const char *tag)
{
    for (uint32_t i = 0; i < c->nob; i++)
        if (strcmp(c->ob[i].ob.tag, tag) == 0)
            return (int32_t)i;
    return -1;
}

LR_API int32_t lr_conf_route_pick(struct lr_conf *c, const struct lr_route_query *q,
                                  int32_t *to_sniffed)
{
    int32_t def = c->default_tag ? ob_index(c, c->default_tag) : 0;
    if (c->nob == 0 || def < 0) {
        fail(c, "no default outbound");
        return -1;
    }
    for (uint32_t i = 0; i < c->nrules; i++) {
        c->rules[i].r.to = ob_index(c, c->rules[i].to);
        if (c->rules[i].r.to < 0) {
            fail(c, "route to unknown outbound '%s'", c->rules[i].to);
            return -1;
        }
    }
    struct lr_rule *rules = malloc(sizeof(*rules) * (c->nrules ? c->nrules : 1));
    if (!rules) {
        fail(c, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < c->nrules; i++) {
        if (lr_rule_finish(&c->rules[i].r) != 0) {
            free(rules);
            fail(c, "out of memory");
            return -1;
        }
        rules[i] = c->rules[i].r;
    }
    int sn = 0;
    int32_t ob = lr_route_pick_ex(rules, c->nrules, def, q, c->route_strategy, &sn);
    free(rules);
    if (to_sniffed)
        *to_sniffed = sn;
    return ob;
}

LR_API int lr_conf_route_strategy(struct lr_conf *c, uint32_t strategy)
{
    if (strategy > LR_ROUTE_IP_ON_DEMAND)
        return fail(c, "bad routing domain_strategy %u", strategy);
    c->route_strategy = (uint8_t)strategy;
    return LR_OK;
}

LR_API int lr_conf_default(struct lr_conf *c, const char *tag)
{
    free(c->default_tag);
    c->default_tag = dup_or_null(tag);
    return LR_OK;
}

int lr_conf_expand_dynamic(struct lr_conf *c, char *err, size_t errlen)
{
    uint32_t n = c->nib;
    for (uint32_t i = 0; i < n; i++)
        if (!c->ib[i].ib.is_detour)
            c->ib[i].detour = c->ib[i].detour_of = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (!c->ib[i].ib.dyn_lo || c->ib[i].ib.is_detour)
            continue;
        char tag[300];
        snprintf(tag, sizeof(tag), "%s:dynamic", c->ib[i].ib.tag);
        if (!GROW(c->ib, c->nib)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        struct lr_conf_ib *main_ib = &c->ib[i], *d = &c->ib[c->nib];
        d->ib = main_ib->ib;            /* same host and options */
        d->ib.tag = strdup(tag);
        d->ib.host = strdup(main_ib->ib.host);
        d->ib.accounts = NULL;
        d->ib.naccounts = 0;
        d->ib.is_detour = 1;
        /* bare TCP (config.lua refuses tls/transport with dynamic_port),
         * no PROXY header, no fallback */
        memset(&d->ib.tls, 0, sizeof(d->ib.tls));
        memset(&d->ib.tp, 0, sizeof(d->ib.tp));
        d->ib.fallback_host = NULL;
        d->ib.trusted = NULL;
        d->ib.ntrusted = 0;
        d->ib.proxy_protocol = 0;
        d->ib.users = NULL;
        d->ib.user_map = NULL;
        d->ib.dyn_cmd = NULL;
        d->where = main_ib->where ? strdup(main_ib->where) : NULL;
        d->detour_of = (int32_t)i;
        d->detour = -1;
        main_ib->detour = (int32_t)c->nib;
        c->nib++;
        if (!d->ib.tag || !d->ib.host) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}
