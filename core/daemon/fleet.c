/*
 * The fleet's policy counts (luaray.cluster, design.md 8): once a second
 * the main thread sends one EVAL (SYNC_LUA below) on its own cluster
 * connection with what this node has: per user its open connections,
 * their source addresses, and its absolute byte count.  The script stores
 * them (the node's hash expires 3 s after its last sync: a node that dies
 * drops out) and answers with the other live nodes' connections and
 * addresses and, per user, the other nodes' bytes.  The policy table
 * (dispatch/policy.c) enforces max_conns, max_ips and quota on local +
 * others; luaray.usage shows the sums.
 *
 * Byte counts are absolute per node (HSET q:<email> <node> <bytes>), so
 * a push repeated after a lost answer counts nothing twice.  A node
 * learns its own earlier count at its first sync (a restarted node goes
 * on from there); a Redis that lost its data (its epoch key changed) gets
 * every node's count again at the next sync; a reset (luaray.reset_usage)
 * deletes the fleet's counter and bumps q_reset:<email>, and the other
 * nodes start counting afresh when they see it.
 *
 * While no sync succeeds for STALE_S seconds, the other nodes' connections
 * and addresses are ignored (local counts only); their bytes are kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/log.h"
#include "crypto/crypto.h"
#include "daemon/fleet.h"
#include "dispatch/policy.h"

#define SYNC_S 1.0
#define STALE_S 3.0
#define NODE_TTL_MS 3000
#define MAX_SYNC_USERS 100000

static const char SYNC_LUA[] =
    "local node, known, cand, ttl, pre = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]\n"
    "local n = tonumber(ARGV[6])\n"
    "local epoch = redis.call('GET', pre .. 'epoch')\n"
    "if not epoch then redis.call('SET', pre .. 'epoch', cand); epoch = cand end\n"
    "local same = known == '' or known == epoch\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local mine = pre .. 'n:' .. node\n"
    "redis.call('DEL', mine)\n"
    "local quota = {}\n"
    "for i = 0, n - 1 do\n"
    "  local b = 7 + i * 6\n"
    "  local email, conns, ips, abs, rgen, reset = ARGV[b], ARGV[b + 1], ARGV[b + 2],\n"
    "    ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]\n"
    "  if conns ~= '0' then redis.call('HSET', mine, email, conns .. ' ' .. ips) end\n"
    "  local qk, rk = pre .. 'q:' .. email, pre .. 'q_reset:' .. email\n"
    "  if same and reset == '1' then redis.call('DEL', qk); redis.call('INCR', rk) end\n"
    "  local g = redis.call('GET', rk) or '0'\n"
    "  local own = redis.call('HGET', qk, node) or '0'\n"
    "  if same and abs ~= '' and (g == rgen or reset == '1') then\n"
    "    redis.call('HSET', qk, node, abs)\n"
    "  end\n"
    "  local all, r = redis.call('HGETALL', qk), 0\n"
    "  for j = 1, #all, 2 do\n"
    "    if all[j] ~= node then r = r + (tonumber(all[j + 1]) or 0) end\n"
    "  end\n"
    "  quota[#quota + 1] = email; quota[#quota + 1] = tostring(r)\n"
    "  quota[#quota + 1] = g; quota[#quota + 1] = own\n"
    "end\n"
    "if redis.call('EXISTS', mine) == 1 then redis.call('PEXPIRE', mine, ttl) end\n"
    "redis.call('ZADD', pre .. 'nodes', now + ttl, node)\n"
    "redis.call('ZREMRANGEBYSCORE', pre .. 'nodes', '-inf', now - 600000)\n"
    "local others = {}\n"
    "for _, o in ipairs(redis.call('ZRANGEBYSCORE', pre .. 'nodes', now, '+inf')) do\n"
    "  if o ~= node then\n"
    "    local h = redis.call('HGETALL', pre .. 'n:' .. o)\n"
    "    for j = 1, #h do others[#others + 1] = h[j] end\n"
    "  end\n"
    "end\n"
    "return { epoch, others, quota }\n";

static struct {
    struct ev_loop *loop;
    struct lr_cluster *cl;
    ev_timer tick;
    int running, inflight;
    char epoch[48];
    double last_ok;
    /* the call being built */
    const char **argv;
    size_t *argvlen;
    char **own;                  /* strings argv points at, freed after send */
    uint32_t argc, cap;
    uint8_t *resets;             /* per user sent: a reset went with it */
    uint32_t nusers, ucap;
    uint8_t *inflight_resets;    /* of the call in flight */
    uint32_t inflight_n;
} F;

static int push_arg(const char *s, int copy)
{
    if (F.argc == F.cap) {
        uint32_t n = F.cap ? F.cap * 2 : 64;
        const char **a = realloc(F.argv, sizeof(*a) * n);
        if (a)
            F.argv = a;
        size_t *l = realloc(F.argvlen, sizeof(*l) * n);
        if (l)
            F.argvlen = l;
        char **o = realloc(F.own, sizeof(*o) * n);
        if (o)
            F.own = o;
        if (!a || !l || !o)
            return -1;
        F.cap = n;
    }
    char *c = copy ? strdup(s) : NULL;
    if (copy && !c)
        return -1;
    F.own[F.argc] = c;
    F.argv[F.argc] = copy ? c : s;
    F.argvlen[F.argc] = strlen(s);
    F.argc++;
    return 0;
}

static void args_free(void)
{
    for (uint32_t i = 0; i < F.argc; i++)
        free(F.own[i]);
    F.argc = 0;
}

static int failed_build;

static void each_user(void *ud, const char *email, uint32_t conns, const char *ips, double abs,
                      const char *rgen, int reset)
{
    char c[16], a[32];
    if (failed_build || F.nusers >= MAX_SYNC_USERS)
        return;
    if (F.nusers == F.ucap) {
        uint32_t n = F.ucap ? F.ucap * 2 : 64;
        uint8_t *r = realloc(F.resets, n);
        if (!r) {
            failed_build = 1;
            return;
        }
        F.resets = r;
        F.ucap = n;
    }
    snprintf(c, sizeof(c), "%u", conns);
    if (abs >= 0)
        snprintf(a, sizeof(a), "%.0f", abs);
    else
        a[0] = 0;
    if (push_arg(email, 1) || push_arg(c, 1) || push_arg(ips, 1) || push_arg(a, 1) ||
        push_arg(rgen, 1) || push_arg(reset ? "1" : "0", 0)) {
        failed_build = 1;
        return;
    }
    F.resets[F.nusers++] = (uint8_t)reset;
}

static void stale_check(void)
{
    if (ev_now(F.loop) - F.last_ok > STALE_S)
        lr_policy_fleet_commit(0);
}

static const redisReply *elem(const redisReply *r, size_t i, int type)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements || !r->element[i] ||
        r->element[i]->type != type)
        return NULL;
    return r->element[i];
}

static void sync_reply(void *ud, void *reply)
{
    const redisReply *r = reply;
    F.inflight = 0;
    const redisReply *ep = elem(r, 0, REDIS_REPLY_STRING);
    const redisReply *others = elem(r, 1, REDIS_REPLY_ARRAY);
    const redisReply *quota = elem(r, 2, REDIS_REPLY_ARRAY);
    if (!ep || !others || !quota || quota->elements != (size_t)F.inflight_n * 4) {
        if (r && r->type == REDIS_REPLY_ERROR)
            lr_debug("cluster: sync refused: %.200s", r->str);
        stale_check();
        return;
    }
    int epoch_changed = F.epoch[0] && strcmp(F.epoch, ep->str) != 0;
    if (epoch_changed)
        lr_warn("cluster: redis lost the fleet's counts (a restart without persistence); "
                "node counts go out again");
    snprintf(F.epoch, sizeof(F.epoch), "%s", ep->str);
    lr_policy_fleet_begin();
    for (size_t i = 0; i + 1 < others->elements; i += 2) {
        const redisReply *e = others->element[i], *v = others->element[i + 1];
        if (e->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        char *sp = strchr(v->str, ' ');
        lr_policy_fleet_remote(e->str, (uint32_t)strtoul(v->str, NULL, 10), sp ? sp + 1 : "");
    }
    for (size_t i = 0; i < quota->elements; i += 4) {
        const redisReply *e = quota->element[i], *rem = quota->element[i + 1],
                         *g = quota->element[i + 2], *own = quota->element[i + 3];
        if (e->type != REDIS_REPLY_STRING || rem->type != REDIS_REPLY_STRING ||
            g->type != REDIS_REPLY_STRING || own->type != REDIS_REPLY_STRING)
            continue;
        lr_policy_fleet_bytes(e->str, strtod(rem->str, NULL), g->str, strtod(own->str, NULL),
                              F.inflight_resets[i / 4], epoch_changed);
    }
    lr_policy_fleet_commit(1);
    F.last_ok = ev_now(F.loop);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (F.inflight || !lr_cluster_up(F.cl)) {
        stale_check();
        return;
    }
    const struct lr_cluster_conf *k = lr_cluster_settings(F.cl);
    char cand[33], ttl[16], n[16];
    uint8_t rnd[16];
    lr_random(rnd, sizeof(rnd));
    for (int i = 0; i < 16; i++)
        snprintf(cand + 2 * i, 3, "%02x", rnd[i]);
    snprintf(ttl, sizeof(ttl), "%d", NODE_TTL_MS);
    args_free();
    F.nusers = 0;
    failed_build = 0;
    if (push_arg("EVAL", 0) || push_arg(SYNC_LUA, 0) || push_arg("0", 0) ||
        push_arg(k->node, 0) || push_arg(F.epoch, 0) || push_arg(cand, 1) ||
        push_arg(ttl, 1) || push_arg(k->prefix, 0) || push_arg("0", 0)) {
        args_free();
        return;
    }
    uint32_t count_at = F.argc - 1;
    lr_policy_fleet_each(each_user, NULL);
    if (failed_build) {
        args_free();
        return;
    }
    snprintf(n, sizeof(n), "%u", F.nusers);
    free(F.own[count_at]);
    F.own[count_at] = strdup(n);
    if (!F.own[count_at]) {
        args_free();
        return;
    }
    F.argv[count_at] = F.own[count_at];
    F.argvlen[count_at] = strlen(n);
    /* the resets sent with this call, for its answer */
    uint8_t *ir = realloc(F.inflight_resets, F.nusers ? F.nusers : 1);
    if (!ir) {
        args_free();
        return;
    }
    F.inflight_resets = ir;
    memcpy(ir, F.resets, F.nusers);
    F.inflight_n = F.nusers;
    /* a sync may take longer than a handshake's wait: up to STALE_S */
    if (lr_cluster_command(F.cl, (int)F.argc, F.argv, F.argvlen, STALE_S, sync_reply, NULL) == 0)
        F.inflight = 1;
    args_free();
    stale_check();
}

void lr_fleet_start(struct ev_loop *loop, struct lr_cluster *cl)
{
    lr_fleet_stop();
    F.loop = loop;
    F.cl = cl;
    F.last_ok = ev_now(loop);
    ev_timer_init(&F.tick, tick_cb, 0.2, SYNC_S);
    ev_timer_start(loop, &F.tick);
    F.running = 1;
}

void lr_fleet_stop(void)
{
    if (!F.running)
        return;
    ev_timer_stop(F.loop, &F.tick);
    F.running = 0;
    F.cl = NULL;
    lr_policy_fleet_commit(0);
}
