/*
 * The fleet's shared state (design.md 8, luaray.cluster): a Redis client
 * on hiredis's libev adapter.  Each worker thread has its own connection
 * on its own loop (no lock, no cross-thread hand-off: a handshake waits
 * on the loop that serves it).  A wait is bounded by timeout_ms; after
 * it, or at once while Redis is unreachable, the caller decides with its
 * local state.  The connection reconnects with backoff (0.1 s doubling to
 * 5 s) and an outage is logged once per node, when it starts and ends.
 */
#ifndef LR_CLUSTER_H
#define LR_CLUSTER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

struct lr_cluster_conf {
    char *host;                 /* NULL: no cluster */
    uint16_t port;
    char *password;             /* NULL: no AUTH */
    int db;
    char *prefix, *node;
    int timeout_ms;
    char *where;
};

void lr_cluster_conf_clear(struct lr_cluster_conf *k);

struct lr_cluster;
struct lr_cluster_wait;

/* What a wait ended with. */
enum {
    LR_CL_LOCAL = 0,  /* no answer within timeout_ms, or Redis unreachable */
    LR_CL_NEW = 1,    /* the key was set here: first seen in the fleet */
    LR_CL_SEEN = 2    /* another request (at any node) set it first */
};

typedef void (*lr_cluster_done_fn)(void *ud, int verdict);

/* A worker's client for `k` on `loop` (copies k); NULL on ENOMEM.  It
 * connects at once, in the background. */
struct lr_cluster *lr_cluster_new(struct ev_loop *loop, const struct lr_cluster_conf *k,
                                  uint32_t worker);
/* Closes the connection; waits still open end with LR_CL_LOCAL first. */
void lr_cluster_free(struct lr_cluster *cl);
/* Whether `cl` was made from settings equal to k's. */
int lr_cluster_same(const struct lr_cluster *cl, const struct lr_cluster_conf *k);

/* Records key (prefix + kind + hex of the bytes) with SET NX EX ttl.
 * NULL when Redis is unreachable (or too many waits are open): decide
 * locally now, `done` is never called.  Otherwise `done` is called once,
 * later (never from inside this call), unless lr_cluster_cancel comes
 * first. */
struct lr_cluster_wait *lr_cluster_claim(struct lr_cluster *cl, const char *kind,
                                         const uint8_t *key, size_t klen, int ttl,
                                         lr_cluster_done_fn done, void *ud);
/* `done` of w is not called any more (the caller went away). */
void lr_cluster_cancel(struct lr_cluster_wait *w);

/* A command of argc arguments (binary-safe: argv[i] of argvlen[i] bytes).
 * fn gets hiredis's redisReply (NULL: no answer within timeout_s, 0 for
 * timeout_ms, or the
 * connection went), once, later; -1 (fn never called) when Redis is
 * unreachable or too many commands are in flight.  Nothing to cancel:
 * the caller's ud must live until fn (or until lr_cluster_free). */
typedef void (*lr_cluster_reply_fn)(void *ud, void *reply);
int lr_cluster_command(struct lr_cluster *cl, int argc, const char **argv,
                       const size_t *argvlen, double timeout_s, lr_cluster_reply_fn fn,
                       void *ud);

/* A hiredis reply in the form lr_ctl_redis_start (api.h) describes:
 * malloc'd, *len set; NULL when out of memory, nested deeper than 32 or
 * larger than 64 MiB. */
char *lr_cluster_encode(const void *reply, size_t *len);

/* The settings it was made from. */
const struct lr_cluster_conf *lr_cluster_settings(const struct lr_cluster *cl);

/* 1 while connected (for logs and tests). */
int lr_cluster_up(const struct lr_cluster *cl);

#endif
