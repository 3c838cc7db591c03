/*
 * luaray.cluster: one hiredis connection per worker thread, on that
 * worker's loop (see cluster.h).  A claim is one SET key node NX EX ttl;
 * its wait has its own ev_timer of timeout_ms: whichever of the reply and
 * the timer comes first decides, the other is ignored.  The wait's memory
 * stays until hiredis hands its reply (or NULL, when the connection goes)
 * to reply_cb, which frees it.
 *
 * Bounds: at most MAX_OPEN commands are in flight per worker (beyond,
 * claims decide locally at once), and a connection that answers nothing
 * for STALL_S seconds while commands are in flight is dropped and
 * reconnected (a Redis stopped with SIGSTOP keeps its socket open).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "base/log.h"
#include "base/stats.h"
#include "net/cluster.h"

#define MAX_OPEN 16384
#define STALL_S 2.0
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0

struct lr_cluster {
    struct ev_loop *loop;
    struct lr_cluster_conf k;
    uint32_t worker;
    redisAsyncContext *ac;
    int connected;
    int down;                    /* counted in outage_workers */
    int slow;                    /* a wait timed out; logged, not again
                                    until an answer comes in time */
    int auth_logged;
    ev_timer retry;              /* reconnect after backoff */
    double backoff;
    ev_timer watch;              /* 1 s: the stall check */
    uint32_t open;               /* commands in flight */
    ev_tstamp progress;          /* last reply, or when open went 0 -> 1 */
    int32_t st_ops, st_new, st_seen, st_timeout, st_local;
};

struct lr_cluster_wait {
    struct lr_cluster *cl;
    lr_cluster_done_fn done;     /* NULL once decided or cancelled */
    void *ud;
    ev_timer tm;
};

/* Workers whose connection is down: the outage is logged when the first
 * goes down and when the last comes back, once per node. */
static _Atomic int outage_workers;

void lr_cluster_conf_clear(struct lr_cluster_conf *k)
{
    free(k->host);
    free(k->password);
    free(k->prefix);
    free(k->node);
    free(k->where);
    memset(k, 0, sizeof(*k));
}

static int streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int lr_cluster_same(const struct lr_cluster *cl, const struct lr_cluster_conf *k)
{
    const struct lr_cluster_conf *m = &cl->k;
    return streq(m->host, k->host) && m->port == k->port && streq(m->password, k->password) &&
           m->db == k->db && streq(m->prefix, k->prefix) && streq(m->node, k->node) &&
           m->timeout_ms == k->timeout_ms;
}

int lr_cluster_up(const struct lr_cluster *cl)
{
    return cl && cl->connected;
}

static void mark_down(struct lr_cluster *cl, const char *why)
{
    if (cl->down)
        return;
    cl->down = 1;
    if (atomic_fetch_add(&outage_workers, 1) == 0)
        lr_warn("cluster: redis %s:%u unreachable (%s); deciding with local state until it is back",
                cl->k.host, cl->k.port, why ? why : "?");
}

static void mark_up(struct lr_cluster *cl)
{
    if (!cl->down) {
        if (cl->worker == 0)
            lr_info("cluster: node %s connected to redis %s:%u", cl->k.node, cl->k.host,
                    cl->k.port);
        return;
    }
    cl->down = 0;
    if (atomic_fetch_sub(&outage_workers, 1) == 1)
        lr_warn("cluster: redis %s:%u reachable again; node %s shares its state again",
                cl->k.host, cl->k.port, cl->k.node);
}

static void connect_now(struct lr_cluster *cl);

static void schedule_retry(struct lr_cluster *cl)
{
    ev_timer_stop(cl->loop, &cl->retry);
    ev_timer_set(&cl->retry, cl->backoff, 0.);
    ev_timer_start(cl->loop, &cl->retry);
    cl->backoff *= 2;
    if (cl->backoff > BACKOFF_MAX)
        cl->backoff = BACKOFF_MAX;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    connect_now(w->data);
}

/* Frees the context (its waits end with LR_CL_LOCAL) and reconnects
 * later; from timers only, never inside a hiredis callback. */
static void drop(struct lr_cluster *cl, const char *why)
{
    redisAsyncContext *ac = cl->ac;
    cl->ac = NULL;
    cl->connected = 0;
    if (ac)
        redisAsyncFree(ac);   /* disconnect_cb sees cl->ac == NULL */
    cl->open = 0;
    mark_down(cl, why);
    schedule_retry(cl);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct lr_cluster *cl = ac->data;
    if (!cl || cl->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        cl->ac = NULL;
        cl->connected = 0;
        cl->open = 0;
        mark_down(cl, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule_retry(cl);
        return;
    }
    /* up once the PING queued after AUTH/SELECT answers (ping_cb): a
     * Redis that accepts and says nothing is no Redis to wait for */
    cl->progress = ev_now(cl->loop);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct lr_cluster *cl = ac->data;
    if (!cl || cl->ac != ac)
        return;   /* dropped or freed by us */
    cl->ac = NULL;
    cl->connected = 0;
    cl->open = 0;
    mark_down(cl, ac->errstr[0] ? ac->errstr : "connection closed");
    schedule_retry(cl);
}

/* AUTH / SELECT: an error reply is logged (once per connection); the
 * commands after it then fail too and decide locally. */
static void setup_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct lr_cluster *cl = priv;
    redisReply *reply = r;
    if (reply && cl->ac == ac && cl->open)
        cl->open--;
    if (reply && reply->type == REDIS_REPLY_ERROR && !cl->auth_logged) {
        cl->auth_logged = 1;
        lr_error("cluster: redis %s:%u refused the connection's setup: %.200s", cl->k.host,
                 cl->k.port, reply->str);
    }
}

static void ping_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct lr_cluster *cl = priv;
    redisReply *reply = r;
    if (!reply || cl->ac != ac)
        return;
    if (cl->open)
        cl->open--;
    cl->progress = ev_now(cl->loop);
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof(why), "%.150s", reply->str);
        drop(cl, why);   /* hiredis frees it once this callback returns */
        return;
    }
    cl->connected = 1;
    cl->backoff = BACKOFF_MIN;
    cl->auth_logged = 0;
    mark_up(cl);
}

static void connect_now(struct lr_cluster *cl)
{
    redisAsyncContext *ac = redisAsyncConnect(cl->k.host, cl->k.port);
    if (!ac) {
        mark_down(cl, "out of memory");
        schedule_retry(cl);
        return;
    }
    if (ac->err) {
        mark_down(cl, ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(cl);
        return;
    }
    ac->data = cl;
    cl->ac = ac;
    redisLibevAttach(cl->loop, ac);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    /* queued now, sent once connected, before anything else */
    if (cl->k.password &&
        redisAsyncCommand(ac, setup_cb, cl, "AUTH %s", cl->k.password) == REDIS_OK)
        cl->open++;
    if (cl->k.db && redisAsyncCommand(ac, setup_cb, cl, "SELECT %d", cl->k.db) == REDIS_OK)
        cl->open++;
    if (redisAsyncCommand(ac, ping_cb, cl, "PING") == REDIS_OK)
        cl->open++;
    cl->progress = ev_now(cl->loop);
}

static void watch_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_cluster *cl = w->data;
    double stall = STALL_S;
    if (stall < 4.0 * cl->k.timeout_ms / 1000.0)
        stall = 4.0 * cl->k.timeout_ms / 1000.0;
    if (cl->ac && (cl->open || !cl->connected) && ev_now(loop) - cl->progress > stall) {
        char why[64];
        snprintf(why, sizeof(why), "no answer for %.1f s", ev_now(loop) - cl->progress);
        drop(cl, why);
    }
}

struct lr_cluster *lr_cluster_new(struct ev_loop *loop, const struct lr_cluster_conf *k,
                                  uint32_t worker)
{
    struct lr_cluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    cl->loop = loop;
    cl->worker = worker;
    cl->k.host = strdup(k->host);
    cl->k.password = k->password ? strdup(k->password) : NULL;
    cl->k.prefix = strdup(k->prefix ? k->prefix : "");
    cl->k.node = strdup(k->node ? k->node : "node");
    cl->k.port = k->port;
    cl->k.db = k->db;
    cl->k.timeout_ms = k->timeout_ms > 0 ? k->timeout_ms : 50;
    if (!cl->k.host || !cl->k.prefix || !cl->k.node || (k->password && !cl->k.password)) {
        lr_cluster_conf_clear(&cl->k);
        free(cl);
        return NULL;
    }
    cl->st_ops = lr_stats_slot("luaray_cluster_ops_total", LR_STAT_COUNTER, worker);
    cl->st_new = lr_stats_slot("luaray_cluster_claims_total{result=\"new\"}", LR_STAT_COUNTER,
                               worker);
    cl->st_seen = lr_stats_slot("luaray_cluster_claims_total{result=\"seen\"}",
                                LR_STAT_COUNTER, worker);
    cl->st_timeout = lr_stats_slot("luaray_cluster_claims_total{result=\"timeout\"}",
                                   LR_STAT_COUNTER, worker);
    cl->st_local = lr_stats_slot("luaray_cluster_claims_total{result=\"unreachable\"}",
                                 LR_STAT_COUNTER, worker);
    cl->backoff = BACKOFF_MIN;
    ev_init(&cl->retry, retry_cb);
    cl->retry.data = cl;
    ev_timer_init(&cl->watch, watch_cb, 1., 1.);
    cl->watch.data = cl;
    ev_timer_start(loop, &cl->watch);
    /* the watch timer alone must not keep a stopping loop alive */
    ev_unref(loop);
    connect_now(cl);
    return cl;
}

void lr_cluster_free(struct lr_cluster *cl)
{
    if (!cl)
        return;
    ev_ref(cl->loop);
    ev_timer_stop(cl->loop, &cl->watch);
    ev_timer_stop(cl->loop, &cl->retry);
    redisAsyncContext *ac = cl->ac;
    cl->ac = NULL;
    if (ac)
        redisAsyncFree(ac);
    if (cl->down)
        atomic_fetch_sub(&outage_workers, 1);
    lr_cluster_conf_clear(&cl->k);
    free(cl);
}

static void decide(struct lr_cluster_wait *w, int verdict)
{
    lr_cluster_done_fn fn = w->done;
    w->done = NULL;
    if (fn)
        fn(w->ud, verdict);
}

static void wait_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct lr_cluster_wait *w = t->data;
    struct lr_cluster *cl = w->cl;
    if (!w->done)
        return;
    lr_stats_add(cl->worker, cl->st_timeout, 1);
    if (!cl->slow) {
        cl->slow = 1;
        lr_warn("cluster: redis %s:%u did not answer within %d ms; deciding with local state",
                cl->k.host, cl->k.port, cl->k.timeout_ms);
    }
    decide(w, LR_CL_LOCAL);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct lr_cluster_wait *w = priv;
    struct lr_cluster *cl = w->cl;
    redisReply *reply = r;
    ev_timer_stop(cl->loop, &w->tm);
    if (reply && cl->ac == ac) {
        if (cl->open)
            cl->open--;
        cl->progress = ev_now(cl->loop);
    }
    if (w->done) {
        int v = LR_CL_LOCAL;
        if (reply && reply->type == REDIS_REPLY_STATUS)
            v = LR_CL_NEW;
        else if (reply && reply->type == REDIS_REPLY_NIL)
            v = LR_CL_SEEN;
        lr_stats_add(cl->worker, v == LR_CL_NEW ? cl->st_new : v == LR_CL_SEEN ? cl->st_seen
                                                                         : cl->st_local, 1);
        if (reply)
            cl->slow = 0;
        decide(w, v);
    }
    free(w);
}

struct lr_cluster_wait *lr_cluster_claim(struct lr_cluster *cl, const char *kind,
                                         const uint8_t *key, size_t klen, int ttl,
                                         lr_cluster_done_fn done, void *ud)
{
    static const char hex[] = "0123456789abcdef";
    char name[256];
    if (!cl || !cl->connected || !cl->ac) {
        if (cl)
            lr_stats_add(cl->worker, cl->st_local, 1);
        return NULL;
    }
    if (cl->open >= MAX_OPEN || klen > 64) {
        lr_stats_add(cl->worker, cl->st_local, 1);
        return NULL;
    }
    int n = snprintf(name, sizeof(name), "%s%s", cl->k.prefix, kind);
    if (n < 0 || (size_t)n + klen * 2 >= sizeof(name))
        return NULL;
    for (size_t i = 0; i < klen; i++) {
        name[n++] = hex[key[i] >> 4];
        name[n++] = hex[key[i] & 15];
    }
    name[n] = 0;
    struct lr_cluster_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->cl = cl;
    w->done = done;
    w->ud = ud;
    if (ttl < 1)
        ttl = 1;
    if (redisAsyncCommand(cl->ac, reply_cb, w, "SET %s %s NX EX %d", name, cl->k.node,
                          ttl) != REDIS_OK) {
        free(w);
        lr_stats_add(cl->worker, cl->st_local, 1);
        return NULL;
    }
    if (cl->open++ == 0)
        cl->progress = ev_now(cl->loop);
    lr_stats_add(cl->worker, cl->st_ops, 1);
    ev_timer_init(&w->tm, wait_timeout_cb, cl->k.timeout_ms / 1000.0, 0.);
    w->tm.data = w;
    ev_timer_start(cl->loop, &w->tm);
    return w;
}

void lr_cluster_cancel(struct lr_cluster_wait *w)
{
    if (!w)
        return;
    w->done = NULL;
    ev_timer_stop(w->cl->loop, &w->tm);
}

/* ------------------------------------------------------------ commands */

struct cmd_wait {
    struct lr_cluster *cl;
    lr_cluster_reply_fn fn;      /* NULL once answered (or timed out) */
    void *ud;
    ev_timer tm;
};

static void cmd_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cmd_wait *w = t->data;
    lr_cluster_reply_fn fn = w->fn;
    w->fn = NULL;
    if (fn)
        fn(w->ud, NULL);
}

static void cmd_reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct cmd_wait *w = priv;
    struct lr_cluster *cl = w->cl;
    ev_timer_stop(cl->loop, &w->tm);
    if (r && cl->ac == ac) {
        if (cl->open)
            cl->open--;
        cl->progress = ev_now(cl->loop);
    }
    lr_cluster_reply_fn fn = w->fn;
    w->fn = NULL;
    if (fn)
        fn(w->ud, r);
    free(w);
}

int lr_cluster_command(struct lr_cluster *cl, int argc, const char **argv,
                       const size_t *argvlen, double timeout_s, lr_cluster_reply_fn fn,
                       void *ud)
{
    if (!cl || !cl->connected || !cl->ac || cl->open >= MAX_OPEN)
        return -1;
    struct cmd_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return -1;
    w->cl = cl;
    w->fn = fn;
    w->ud = ud;
    if (redisAsyncCommandArgv(cl->ac, cmd_reply_cb, w, argc, argv, argvlen) != REDIS_OK) {
        free(w);
        return -1;
    }
    if (cl->open++ == 0)
        cl->progress = ev_now(cl->loop);
    lr_stats_add(cl->worker, cl->st_ops, 1);
    ev_timer_init(&w->tm, cmd_timeout_cb, timeout_s > 0 ? timeout_s : cl->k.timeout_ms / 1000.0,
                  0.);
    w->tm.data = w;
    ev_timer_start(cl->loop, &w->tm);
    return 0;
}

const struct lr_cluster_conf *lr_cluster_settings(const struct lr_cluster *cl)
{
    return &cl->k;
}

/* ------------------------------------------------------------ encoding */

struct enc {
    char *b;
    size_t n, cap;
    int bad;
};

static void put(struct enc *e, const char *p, size_t n)
{
    if (e->bad)
        return;
    if (e->n + n > ((size_t)64 << 20)) {
        e->bad = 1;
        return;
    }
    if (e->n + n > e->cap) {
        size_t c = e->cap ? e->cap : 256;
        while (c < e->n + n)
            c *= 2;
        char *nb = realloc(e->b, c);
        if (!nb) {
            e->bad = 1;
            return;
        }
        e->b = nb;
        e->cap = c;
    }
    memcpy(e->b + e->n, p, n);
    e->n += n;
}

static void enc_reply(struct enc *e, const redisReply *r, int depth)
{
    char h[40];
    int k;
    if (depth > 32) {
        e->bad = 1;
        return;
    }
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        k = snprintf(h, sizeof(h), "i%lld;", (long long)r->integer);
        put(e, h, (size_t)k);
        return;
    case REDIS_REPLY_ARRAY:
        k = snprintf(h, sizeof(h), "a%zu;", r->elements);
        put(e, h, (size_t)k);
        for (size_t i = 0; i < r->elements && !e->bad; i++) {
            if (r->element[i])
                enc_reply(e, r->element[i], depth + 1);
            else
                put(e, "n", 1);
        }
        return;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        k = snprintf(h, sizeof(h), "%c%zu:", r->type == REDIS_REPLY_STRING ? 's' :
                     r->type == REDIS_REPLY_STATUS ? 'o' : 'e', (size_t)r->len);
        put(e, h, (size_t)k);
        put(e, r->str, (size_t)r->len);
        return;
    default:
        put(e, "n", 1);
    }
}

char *lr_cluster_encode(const void *reply, size_t *len)
{
    struct enc e = { 0 };
    enc_reply(&e, reply, 0);
    if (e.bad) {
        free(e.b);
        return NULL;
    }
    *len = e.n;
    return e.b ? e.b : calloc(1, 1);
}
