/*
 * The v2ray API's request side without sockets (core/daemon/v2api_h2.c,
 * v2api_svc.c): HTTP/2 from a client, gRPC message framing, protobuf
 * decoding (protoc-c's code for core/daemon/proto/) and the dispatch into
 * the services, with the daemon's side (live users, system figures) faked
 * here and the counters (base/stats.c) real.
 *
 * Input: ctrl(1) seed(2) then a body whose meaning ctrl & 3 picks:
 *   0  session: the client's bytes (ctrl & 4: the client preface is put in
 *      front; the seeds carry their own), fed to lr_v2api_sess_input in
 *      fuzzer-chosen splits; between them the client reads all, part or
 *      none of the output (seed);
 *   1  one call: method(1) (an index into METHODS, the last ones unknown
 *      or malformed paths) then a request body as a stream's DATA
 *      (prefix and message): lr_grpc_unframe, then lr_v2api_call;
 *   2  AlterInbound, structured so the nested messages are reached: op(1)
 *      (an index into OPS) tag_len(1) tag, then the operation's value: for
 *      AddUserOperation level(1) email_len(1) email acct(1) (an index into
 *      ACCOUNTS) and the rest as the account's bytes; for the others the
 *      rest as the value;
 *   3  one call without framing: method(1) then the rest as the message.
 * The fake live users succeed or fail as the seed says.
 *
 * Checked: lr_grpc_unframe's message is exactly the body after its
 * prefix; a reply is either status 0 with a body that decodes as the
 * method's response message (QueryStats: only v2ray's counters, never
 * luaray_*) and no message, or a known non-zero status with a message and
 * no body; grpc-message encoding leaves only printable bytes; live_add is
 * called only with a parsed id, a non-empty email and a non-empty tag or
 * none; session output waiting is bounded (the server stops reading a
 * client that does not read); after the session is freed no request byte
 * is held (lr_v2api_held_all) and nothing leaks (LeakSanitizer).
 */
#include <protobuf-c/protobuf-c.h>
#include <proxyman_command.pb-c.h>
#include <stats_command.pb-c.h>

#include "base/log.h"
#include "base/stats.h"
#include "daemon/v2api.h"
#include "fuzz_common.h"

static const char *const METHODS[] = {
    "/v2ray.core.app.stats.command.StatsService/GetStats",
    "/v2ray.core.app.stats.command.StatsService/QueryStats",
    "/v2ray.core.app.stats.command.StatsService/GetSysStats",
    "/v2ray.core.app.proxyman.command.HandlerService/AlterInbound",
    "/v2ray.core.app.proxyman.command.HandlerService/AddInbound",
    "/v2ray.core.app.stats.command.StatsService/Nope",
    "/v2ray.core.app.log.command.LoggerService/RestartLogger",
    "/v2ray.core.app.stats.command.StatsService",
    "v2ray.core.app.stats.command.StatsService/GetStats",
    "/a/b/c",
    "/",
    "",
};
#define NMETHODS (sizeof(METHODS) / sizeof(METHODS[0]))

static const char *const OPS[] = {
    "v2ray.core.app.proxyman.command.AddUserOperation",
    "v2ray.core.app.proxyman.command.RemoveUserOperation",
    "v2ray.core.app.proxyman.command.AddUserOperationX",
    "",
};

static const char *const ACCOUNTS[] = {
    "v2ray.core.proxy.vmess.Account",
    "v2ray.core.proxy.vless.Account",
    "",
};

static uint64_t live_rnd;
static unsigned live_calls;

static int f_add(void *ud, const char *tag, const uint8_t id[16], const char *email,
                 uint32_t level, uint32_t alter_id, char *err, size_t errlen)
{
    FZ_CHECK(!tag || *tag);
    FZ_CHECK(email && *email);
    volatile uint8_t x = id[0] ^ id[15];
    (void)x;
    live_calls++;
    if (fz_rand(&live_rnd) & 1) {
        snprintf(err, errlen, "user '%s' already exists", email);
        return -1;
    }
    return 0;
}

static int f_remove(void *ud, const char *tag, const char *email, char *err, size_t errlen)
{
    FZ_CHECK(!tag || *tag);
    FZ_CHECK(email && *email);
    live_calls++;
    if (fz_rand(&live_rnd) & 1) {
        snprintf(err, errlen, "no user '%s'", email);
        return -1;
    }
    return 0;
}

static void f_sys(void *ud, struct lr_v2api_sys *out)
{
    memset(out, 0, sizeof(*out));
    out->uptime = 7;
    out->alloc = 12345;
}

static const struct lr_v2api_env env = {.live_add = f_add, .live_remove = f_remove,
                                        .sys = f_sys};

static int printable(const char *s)
{
    for (; *s; s++)
        if ((uint8_t)*s < 0x20 || (uint8_t)*s > 0x7e)
            return 0;
    return 1;
}

/* A reply as v2api.h promises it, for `path`. */
static void check_reply(const char *path, const struct lr_v2api_reply *r)
{
    FZ_CHECK(memchr(r->msg, 0, sizeof(r->msg)));
    char enc[1024];
    lr_grpc_msg_encode(enc, sizeof(enc), r->msg);
    FZ_CHECK(printable(enc));
    if (r->status != LR_GRPC_OK) {
        FZ_CHECK(r->status == LR_GRPC_UNKNOWN || r->status == LR_GRPC_INTERNAL ||
                 r->status == LR_GRPC_UNIMPLEMENTED || r->status == LR_GRPC_RESOURCE_EXHAUSTED);
        FZ_CHECK(r->msg[0] && !r->body && !r->len);
        return;
    }
    FZ_CHECK(!r->msg[0]);
    FZ_CHECK((r->len == 0) == (r->body == NULL));
    if (strcmp(path, METHODS[0]) == 0) {
        V2ray__Core__App__Stats__Command__GetStatsResponse *m =
            v2ray__core__app__stats__command__get_stats_response__unpack(NULL, r->len, r->body);
        FZ_CHECK(m && m->stat && m->stat->name);
        FZ_CHECK(strncmp(m->stat->name, "luaray_", 7) != 0);
        v2ray__core__app__stats__command__get_stats_response__free_unpacked(m, NULL);
    } else if (strcmp(path, METHODS[1]) == 0) {
        V2ray__Core__App__Stats__Command__QueryStatsResponse *m =
            v2ray__core__app__stats__command__query_stats_response__unpack(NULL, r->len, r->body);
        FZ_CHECK(m);
        for (size_t i = 0; i < m->n_stat; i++)
            FZ_CHECK(m->stat[i]->name && strstr(m->stat[i]->name, ">>>traffic>>>") &&
                     strncmp(m->stat[i]->name, "luaray_", 7) != 0);
        v2ray__core__app__stats__command__query_stats_response__free_unpacked(m, NULL);
    } else if (strcmp(path, METHODS[2]) == 0) {
        V2ray__Core__App__Stats__Command__SysStatsResponse *m =
            v2ray__core__app__stats__command__sys_stats_response__unpack(NULL, r->len, r->body);
        FZ_CHECK(m && m->uptime == 7 && m->alloc == 12345);
        v2ray__core__app__stats__command__sys_stats_response__free_unpacked(m, NULL);
    } else {
        FZ_CHECK(strcmp(path, METHODS[3]) == 0 && r->len == 0);
    }
}

static void call(const char *path, const uint8_t *msg, size_t n)
{
    struct lr_v2api_reply r;
    lr_v2api_call(&env, path, msg, n, &r);
    if (fz_verbose())
        fprintf(stderr, "v2api: %s: %zu bytes -> status %d (%zu bytes) %s\n", path, n, r.status,
                r.len, r.msg);
    check_reply(path, &r);
    free(r.body);
}

static void one_call(struct fz *f)
{
    const char *path = METHODS[fz_u8(f) % NMETHODS];
    size_t n;
    const uint8_t *body = fz_take(f, (size_t)-1, &n);
    const uint8_t *msg;
    size_t mlen;
    char err[300];
    int st = lr_grpc_unframe(body, n, &msg, &mlen, err, sizeof(err));
    if (st != LR_GRPC_OK) {
        FZ_CHECK(err[0]);
        return;
    }
    FZ_CHECK(n >= 5 && msg == body + 5 && mlen == n - 5 && body[0] == 0);
    call(path, msg, mlen);
}

/* A string field from the input: len(1) then that many bytes. */
static char *fz_str(struct fz *f)
{
    size_t n = fz_u8(f);
    char *s = calloc(1, n + 1);
    FZ_CHECK(s);
    fz_bytes(f, (uint8_t *)s, n);
    return s;
}

static void alter(struct fz *f)
{
    const char *op = OPS[fz_u8(f) % (sizeof(OPS) / sizeof(OPS[0]))];
    char *tag = fz_str(f);
    uint8_t *value = NULL;
    size_t vlen;
    if (op == OPS[0]) {
        V2ray__Core__Common__Protocol__User u = V2RAY__CORE__COMMON__PROTOCOL__USER__INIT;
        V2ray__Core__Common__Serial__TypedMessage acct =
            V2RAY__CORE__COMMON__SERIAL__TYPED_MESSAGE__INIT;
        V2ray__Core__App__Proxyman__Command__AddUserOperation add =
            V2RAY__CORE__APP__PROXYMAN__COMMAND__ADD_USER_OPERATION__INIT;
        u.level = fz_u8(f);
        u.email = fz_str(f);
        acct.type = (char *)ACCOUNTS[fz_u8(f) % (sizeof(ACCOUNTS) / sizeof(ACCOUNTS[0]))];
        size_t an;
        acct.value.data = (uint8_t *)fz_take(f, (size_t)-1, &an);
        acct.value.len = an;
        u.account = &acct;
        add.user = &u;
        vlen = protobuf_c_message_get_packed_size(&add.base);
        FZ_CHECK((value = malloc(vlen + 1)));
        protobuf_c_message_pack(&add.base, value);
        free(u.email);
    } else {
        size_t n;
        const uint8_t *p = fz_take(f, (size_t)-1, &n);
        FZ_CHECK((value = malloc(n + 1)));
        memcpy(value, p, n);
        vlen = n;
    }
    V2ray__Core__Common__Serial__TypedMessage tm = V2RAY__CORE__COMMON__SERIAL__TYPED_MESSAGE__INIT;
    V2ray__Core__App__Proxyman__Command__AlterInboundRequest req =
        V2RAY__CORE__APP__PROXYMAN__COMMAND__ALTER_INBOUND_REQUEST__INIT;
    tm.type = (char *)op;
    tm.value.data = value;
    tm.value.len = vlen;
    req.tag = tag;
    req.operation = &tm;
    size_t n = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *msg = malloc(n + 1);
    FZ_CHECK(msg);
    protobuf_c_message_pack(&req.base, msg);
    call(METHODS[3], msg, n);
    free(msg);
    free(value);
    free(tag);
}

static void session(struct fz *f, uint8_t ctrl, uint64_t seed)
{
    static const uint8_t preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t n;
    const uint8_t *body = fz_take(f, (size_t)-1, &n);
    struct lr_v2api_sess *s = lr_v2api_sess_new(&env, "fuzz");
    FZ_CHECK(s);
    int broken = 0;
    if (ctrl & 4)
        broken = lr_v2api_sess_input(s, preface, sizeof(preface)) < 0;
    size_t pos = 0, out = 0;
    for (unsigned round = 0; pos < n && !broken && round < 100000; round++) {
        /* the server reads only while the client reads its output */
        if (lr_v2api_sess_backlog(s) < 65536) {
            size_t k = fz_split(&seed, n - pos);
            broken = lr_v2api_sess_input(s, body + pos, k) < 0;
            pos += k;
        }
        size_t w;
        const uint8_t *p = lr_v2api_sess_output(s, &w);
        FZ_CHECK((w == 0) == (p == NULL));
        /* bounded: what nghttp2 gave before the high mark plus one frame */
        FZ_CHECK(w < 65536 + 16384 + 64);
        uint64_t r = fz_rand(&seed);
        size_t take = (r & 3) == 0 ? 0 : (r & 3) == 1 ? w / 2 : w;
        if (pos >= n)
            take = w;
        if (take && w)
            lr_v2api_sess_sent(s, take);
        out += take;
        (void)lr_v2api_sess_idle(s);
        (void)lr_v2api_sess_over(s);
    }
    if (!broken) {
        /* a client that reads everything now */
        for (int i = 0; i < 1000; i++) {
            size_t w;
            lr_v2api_sess_output(s, &w);
            if (!w)
                break;
            lr_v2api_sess_sent(s, w);
            out += w;
        }
        lr_v2api_sess_goaway(s);
        size_t w;
        lr_v2api_sess_output(s, &w);
        lr_v2api_sess_sent(s, w);
    }
    if (fz_verbose())
        fprintf(stderr, "v2api session: %zu bytes in, %s, %zu bytes out, %u live calls\n", n,
                broken ? "broken" : "ok", out, live_calls);
    lr_v2api_sess_free(s);
    FZ_CHECK(lr_v2api_held_all() == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* quiet: the API logs every bad request */
    atomic_store(&lr_log_level, fz_verbose() ? LR_LOG_DEBUG : LR_LOG_ERROR + 1);
    /* counters for the stats calls: v2ray's and one of luaray's own */
    int32_t down, up = lr_stats_pair("user>>>a@b", 0, &down);
    lr_stats_add(0, up, 1234);
    lr_stats_add(0, down, 5678);
    lr_stats_pair("inbound>>>vmess-in", 0, &down);
    lr_stats_add(0, lr_stats_slot("luaray_reloads_total{result=\"ok\"}", LR_STAT_COUNTER, 0), 3);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = fz_u16(&f) | 0x30000;
    live_rnd = seed * 31 + 7;
    live_calls = 0;
    switch (ctrl & 3) {
    case 0:
        session(&f, ctrl, seed);
        break;
    case 1:
        one_call(&f);
        break;
    case 2:
        alter(&f);
        break;
    default: {
        const char *path = METHODS[fz_u8(&f) % NMETHODS];
        size_t n;
        const uint8_t *msg = fz_take(&f, (size_t)-1, &n);
        call(path, msg, n);
        break;
    }
    }
    return 0;
}
