/*
 * The v2ray API's services (v2api.h): one unary call, from the request
 * message to a reply, as v2ray 4.34 answers it (app/stats/command,
 * app/proxyman/command): the same fields, the same "not found" error, the
 * same status codes (grpc-go turns a plain Go error into 2, UNKNOWN).
 *
 * The messages are core/daemon/proto/NAME.proto, written from v2ray's wire
 * names; protoc-c makes their C under build/gen/proto (the Makefile), so
 * they are included with <> like any header that is not one of core/'s.
 * protobuf-c hands a string field over as a C string: a NUL inside it
 * ends it there, alike for every call (an add and a remove of "a\0b"
 * both name "a").
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>
#include <proxyman_command.pb-c.h>
#include <stats_command.pb-c.h>
#include <vmess_account.pb-c.h>

#include "base/log.h"
#include "base/stats.h"
#include "daemon/v2api.h"

#define STATS_SVC "v2ray.core.app.stats.command.StatsService"
#define HANDLER_SVC "v2ray.core.app.proxyman.command.HandlerService"
#define ADD_USER_OP "v2ray.core.app.proxyman.command.AddUserOperation"
#define REMOVE_USER_OP "v2ray.core.app.proxyman.command.RemoveUserOperation"
#define VMESS_ACCOUNT "v2ray.core.proxy.vmess.Account"

typedef V2ray__Core__App__Stats__Command__GetStatsRequest GetStatsRequest;
typedef V2ray__Core__App__Stats__Command__GetStatsResponse GetStatsResponse;
typedef V2ray__Core__App__Stats__Command__QueryStatsRequest QueryStatsRequest;
typedef V2ray__Core__App__Stats__Command__QueryStatsResponse QueryStatsResponse;
typedef V2ray__Core__App__Stats__Command__SysStatsRequest SysStatsRequest;
typedef V2ray__Core__App__Stats__Command__SysStatsResponse SysStatsResponse;
typedef V2ray__Core__App__Stats__Command__Stat Stat;
typedef V2ray__Core__App__Proxyman__Command__AlterInboundRequest AlterInboundRequest;
typedef V2ray__Core__App__Proxyman__Command__AlterInboundResponse AlterInboundResponse;
typedef V2ray__Core__App__Proxyman__Command__AddUserOperation AddUserOperation;
typedef V2ray__Core__App__Proxyman__Command__RemoveUserOperation RemoveUserOperation;
typedef V2ray__Core__Proxy__Vmess__Account VmessAccount;

/* ------------------------------------------------------------ framing */

int lr_grpc_unframe(const uint8_t *p, size_t n, const uint8_t **msg, size_t *mlen,
                    char *err, size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "grpc: no request message");
        return LR_GRPC_INTERNAL;
    }
    if (n < 5) {
        snprintf(err, errlen, "grpc: request cut short: %zu bytes of a 5-byte message prefix",
                 n);
        return LR_GRPC_INTERNAL;
    }
    if (p[0] == 1) {
        snprintf(err, errlen, "grpc: compressed messages are not supported "
                              "(send them uncompressed: grpc-encoding identity)");
        return LR_GRPC_UNIMPLEMENTED;
    }
    if (p[0] != 0) {
        snprintf(err, errlen, "grpc: bad message flags 0x%02x", p[0]);
        return LR_GRPC_INTERNAL;
    }
    uint32_t len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    if (len > LR_V2API_MSG_MAX) {
        /* grpc-go's words */
        snprintf(err, errlen, "grpc: received message larger than max (%u vs. %u)", len,
                 LR_V2API_MSG_MAX);
        return LR_GRPC_RESOURCE_EXHAUSTED;
    }
    if ((size_t)len > n - 5) {
        snprintf(err, errlen, "grpc: request message cut short: %u bytes announced, %zu came",
                 len, n - 5);
        return LR_GRPC_INTERNAL;
    }
    if ((size_t)len < n - 5) {
        snprintf(err, errlen, "grpc: more than one request message for a unary method");
        return LR_GRPC_INTERNAL;
    }
    *msg = p + 5;
    *mlen = len;
    return LR_GRPC_OK;
}

void lr_grpc_msg_encode(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!cap)
        return;
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            if (o + 1 >= cap)
                break;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= cap)
                break;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
}

/* ------------------------------------------------------------ replies */

static void fail(struct lr_v2api_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct lr_v2api_reply *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
    r->status = status;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

/* The response message m, encoded, as the reply. */
static void reply(struct lr_v2api_reply *r, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    r->status = LR_GRPC_OK;
    r->msg[0] = 0;
    r->body = NULL;
    r->len = 0;
    if (n == 0)
        return;
    if (!(r->body = malloc(n))) {
        fail(r, LR_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->len = protobuf_c_message_pack(m, r->body);
}

/* A request that does not decode: grpc-go says INTERNAL. */
static void bad_request(struct lr_v2api_reply *r, const char *what)
{
    fail(r, LR_GRPC_INTERNAL, "grpc: error unmarshalling request: not a valid %s message",
         what);
}

/* ------------------------------------------------------------ StatsService */

/* v2ray's counters, the only ones the API shows: luaray's own (for
 * /metrics) are all named luaray_* (base/stats.h) */
static int v2ray_counter(const char *name)
{
    return strncmp(name, "user>>>", 7) == 0 || strncmp(name, "inbound>>>", 10) == 0 ||
           strncmp(name, "outbound>>>", 11) == 0;
}

static void get_stats(const uint8_t *req, size_t n, struct lr_v2api_reply *r)
{
    GetStatsRequest *q = v2ray__core__app__stats__command__get_stats_request__unpack(NULL, n, req);
    if (!q) {
        bad_request(r, "GetStatsRequest");
        return;
    }
    const char *name = q->name ? q->name : "";
    int32_t found = 0;
    uint64_t v = 0;
    if (v2ray_counter(name))
        v = lr_stats_get(name, q->reset ? 1 : 0, &found);
    if (!found) {
        /* v2ray's error, word for word (panels match "not found") */
        fail(r, LR_GRPC_UNKNOWN, "v2ray.com/core/app/stats/command: %s not found.", name);
    } else {
        Stat st = V2RAY__CORE__APP__STATS__COMMAND__STAT__INIT;
        GetStatsResponse resp = V2RAY__CORE__APP__STATS__COMMAND__GET_STATS_RESPONSE__INIT;
        st.name = (char *)name;
        st.value = (int64_t)v;
        resp.stat = &st;
        reply(r, &resp.base);
    }
    v2ray__core__app__stats__command__get_stats_request__free_unpacked(q, NULL);
}

struct query {
    Stat *st;
    Stat **ptrs;
    size_t n, cap;
    int oom;
};

static void query_fn(void *ud, const char *name, int kind, uint64_t value)
{
    struct query *qs = ud;
    if (qs->oom || !v2ray_counter(name))
        return;
    if (qs->n == qs->cap) {
        size_t ncap = qs->cap ? qs->cap * 2 : 64;
        Stat *nst = realloc(qs->st, ncap * sizeof(*nst));
        if (!nst) {
            qs->oom = 1;
            return;
        }
        qs->st = nst;
        qs->cap = ncap;
    }
    Stat *s = &qs->st[qs->n];
    *s = (Stat)V2RAY__CORE__APP__STATS__COMMAND__STAT__INIT;
    if (!(s->name = strdup(name))) {
        qs->oom = 1;
        return;
    }
    s->value = (int64_t)value;
    qs->n++;
}

static void query_stats(const uint8_t *req, size_t n, struct lr_v2api_reply *r)
{
    QueryStatsRequest *q =
        v2ray__core__app__stats__command__query_stats_request__unpack(NULL, n, req);
    if (!q) {
        bad_request(r, "QueryStatsRequest");
        return;
    }
    /* as v2ray: every counter whose name contains the pattern ("": all);
     * with reset each is taken back to 0 and its value before is shown */
    struct query qs = {0};
    lr_stats_each(LR_STAT_TRAFFIC, q->pattern ? q->pattern : "", q->reset ? 1 : 0, query_fn,
                  &qs);
    if (!qs.oom && qs.n && !(qs.ptrs = malloc(qs.n * sizeof(*qs.ptrs))))
        qs.oom = 1;
    if (qs.oom) {
        fail(r, LR_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < qs.n; i++)
            qs.ptrs[i] = &qs.st[i];
        QueryStatsResponse resp = V2RAY__CORE__APP__STATS__COMMAND__QUERY_STATS_RESPONSE__INIT;
        resp.n_stat = qs.n;
        resp.stat = qs.ptrs;
        reply(r, &resp.base);
    }
    for (size_t i = 0; i < qs.n; i++)
        free(qs.st[i].name);
    free(qs.st);
    free(qs.ptrs);
    v2ray__core__app__stats__command__query_stats_request__free_unpacked(q, NULL);
}

static void get_sys_stats(const struct lr_v2api_env *env, const uint8_t *req, size_t n,
                          struct lr_v2api_reply *r)
{
    SysStatsRequest *q = v2ray__core__app__stats__command__sys_stats_request__unpack(NULL, n, req);
    if (!q) {
        bad_request(r, "SysStatsRequest");
        return;
    }
    v2ray__core__app__stats__command__sys_stats_request__free_unpacked(q, NULL);
    struct lr_v2api_sys s = {0};
    if (env->sys)
        env->sys(env->ud, &s);
    SysStatsResponse resp = V2RAY__CORE__APP__STATS__COMMAND__SYS_STATS_RESPONSE__INIT;
    resp.numgoroutine = s.num_goroutine;
    resp.numgc = s.num_gc;
    resp.alloc = s.alloc;
    resp.totalalloc = s.total_alloc;
    resp.sys = s.sys;
    resp.mallocs = s.mallocs;
    resp.frees = s.frees;
    resp.liveobjects = s.live_objects;
    resp.pausetotalns = s.pause_total_ns;
    resp.uptime = s.uptime;
    reply(r, &resp.base);
}

/* ------------------------------------------------------------ HandlerService */

static void add_user(const struct lr_v2api_env *env, const char *tag, const uint8_t *p,
                     size_t n, struct lr_v2api_reply *r)
{
    AddUserOperation *op =
        v2ray__core__app__proxyman__command__add_user_operation__unpack(NULL, n, p);
    VmessAccount *acc = NULL;
    if (!op) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: the AddUserOperation does not decode");
        return;
    }
    V2ray__Core__Common__Protocol__User *u = op->user;
    const char *email = u && u->email ? u->email : "";
    uint8_t id[16];
    char err[400];
    if (!u || !u->account) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: AddUserOperation: the user has no account");
    } else if (!u->account->type || strcmp(u->account->type, VMESS_ACCOUNT) != 0) {
        fail(r, LR_GRPC_UNKNOWN,
             "AlterInbound: AddUserOperation: account type '%s': luaray serves VMess only "
             "(" VMESS_ACCOUNT ")", u->account->type ? u->account->type : "");
    } else if (!(acc = v2ray__core__proxy__vmess__account__unpack(
                     NULL, u->account->value.len, u->account->value.data))) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: AddUserOperation: the VMess account does not "
                                 "decode");
    } else if (!acc->id || lr_uuid_parse(acc->id, strlen(acc->id), id) != LR_OK) {
        char shown[80];
        lr_grpc_msg_encode(shown, sizeof(shown), acc->id ? acc->id : "");
        fail(r, LR_GRPC_UNKNOWN,
             "AlterInbound: AddUserOperation: account id '%s' is not a UUID "
             "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, or 32 hex digits)", shown);
    } else if (!*email) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: AddUserOperation: the user has no email "
                                 "(luaray names users by email: counters, removal)");
    } else if (!env->live_add ||
               env->live_add(env->ud, tag, id, email, u->level, acc->alter_id, err,
                             sizeof(err)) != 0) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: %s", env->live_add ? err : "no live users");
    } else {
        AlterInboundResponse resp = V2RAY__CORE__APP__PROXYMAN__COMMAND__ALTER_INBOUND_RESPONSE__INIT;
        reply(r, &resp.base);
        char e[200], t[200];
        lr_grpc_msg_encode(e, sizeof(e), email);
        lr_grpc_msg_encode(t, sizeof(t), tag ? tag : "every VMess inbound");
        lr_info("api: user '%s' added (%s)", e, t);
    }
    if (acc)
        v2ray__core__proxy__vmess__account__free_unpacked(acc, NULL);
    v2ray__core__app__proxyman__command__add_user_operation__free_unpacked(op, NULL);
}

static void remove_user(const struct lr_v2api_env *env, const char *tag, const uint8_t *p,
                        size_t n, struct lr_v2api_reply *r)
{
    RemoveUserOperation *op =
        v2ray__core__app__proxyman__command__remove_user_operation__unpack(NULL, n, p);
    char err[400];
    if (!op) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: the RemoveUserOperation does not decode");
        return;
    }
    const char *email = op->email ? op->email : "";
    if (!*email) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: RemoveUserOperation: Email must not be empty.");
    } else if (!env->live_remove ||
               env->live_remove(env->ud, tag, email, err, sizeof(err)) != 0) {
        fail(r, LR_GRPC_UNKNOWN, "AlterInbound: %s", env->live_remove ? err : "no live users");
    } else {
        AlterInboundResponse resp = V2RAY__CORE__APP__PROXYMAN__COMMAND__ALTER_INBOUND_RESPONSE__INIT;
        reply(r, &resp.base);
        char e[200], t[200];
        lr_grpc_msg_encode(e, sizeof(e), email);
        lr_grpc_msg_encode(t, sizeof(t), tag ? tag : "every VMess inbound");
        lr_info("api: user '%s' removed (%s)", e, t);
    }
    v2ray__core__app__proxyman__command__remove_user_operation__free_unpacked(op, NULL);
}

static void alter_inbound(const struct lr_v2api_env *env, const uint8_t *req, size_t n,
                          struct lr_v2api_reply *r)
{
    AlterInboundRequest *q =
        v2ray__core__app__proxyman__command__alter_inbound_request__unpack(NULL, n, req);
    if (!q) {
        bad_request(r, "AlterInboundRequest");
        return;
    }
    /* an empty tag (v2ray would find no inbound) names every VMess inbound */
    const char *tag = q->tag && *q->tag ? q->tag : NULL;
    const char *type = q->operation && q->operation->type ? q->operation->type : "";
    if (strcmp(type, ADD_USER_OP) == 0) {
        add_user(env, tag, q->operation->value.data, q->operation->value.len, r);
    } else if (strcmp(type, REMOVE_USER_OP) == 0) {
        remove_user(env, tag, q->operation->value.data, q->operation->value.len, r);
    } else {
        char shown[200];
        lr_grpc_msg_encode(shown, sizeof(shown), type);
        fail(r, LR_GRPC_UNKNOWN,
             "AlterInbound: unknown operation '%s' (luaray takes " ADD_USER_OP " and "
             REMOVE_USER_OP ")", shown);
    }
    v2ray__core__app__proxyman__command__alter_inbound_request__free_unpacked(q, NULL);
}

/* ------------------------------------------------------------ dispatch */

void lr_v2api_call(const struct lr_v2api_env *env, const char *path, const uint8_t *req,
                   size_t n, struct lr_v2api_reply *r)
{
    memset(r, 0, sizeof(*r));
    /* "/service/method" */
    const char *svc = path[0] == '/' ? path + 1 : path;
    const char *slash = strchr(svc, '/');
    size_t sl = slash ? (size_t)(slash - svc) : strlen(svc);
    const char *method = slash ? slash + 1 : "";
    char shown[300];
    lr_grpc_msg_encode(shown, sizeof(shown), path);
    if (path[0] != '/' || !slash || !*method || strchr(method, '/')) {
        fail(r, LR_GRPC_UNIMPLEMENTED, "malformed method name: '%s'", shown);
        return;
    }
    if (sl == strlen(STATS_SVC) && memcmp(svc, STATS_SVC, sl) == 0) {
        if (strcmp(method, "GetStats") == 0)
            get_stats(req, n, r);
        else if (strcmp(method, "QueryStats") == 0)
            query_stats(req, n, r);
        else if (strcmp(method, "GetSysStats") == 0)
            get_sys_stats(env, req, n, r);
        else
            fail(r, LR_GRPC_UNIMPLEMENTED, "unknown method in '%s' (StatsService has "
                                           "GetStats, QueryStats, GetSysStats)", shown);
    } else if (sl == strlen(HANDLER_SVC) && memcmp(svc, HANDLER_SVC, sl) == 0) {
        if (strcmp(method, "AlterInbound") == 0)
            alter_inbound(env, req, n, r);
        else if (strcmp(method, "AddInbound") == 0 || strcmp(method, "RemoveInbound") == 0 ||
                 strcmp(method, "AddOutbound") == 0 || strcmp(method, "RemoveOutbound") == 0 ||
                 strcmp(method, "AlterOutbound") == 0)
            fail(r, LR_GRPC_UNIMPLEMENTED,
                 "luaray does not serve HandlerService.%s: inbounds and outbounds come from "
                 "the config script (SIGHUP reloads it); AlterInbound adds and removes users",
                 method);
        else
            fail(r, LR_GRPC_UNIMPLEMENTED, "unknown method in '%s'", shown);
    } else {
        /* grpc-go's words for a service it does not have */
        char svcs[300];
        snprintf(svcs, sizeof(svcs), "%.*s", (int)sl, svc);
        lr_grpc_msg_encode(shown, sizeof(shown), svcs);
        fail(r, LR_GRPC_UNIMPLEMENTED, "unknown service %s (luaray serves " STATS_SVC " and "
                                       HANDLER_SVC ".AlterInbound)", shown);
    }
}
