/*
 * The daemon: one per worker thread (struct lr_daemon), each with its
 * runtime (struct lr_worker, dispatch/model.h) as its first member; worker
 * 0 is the main thread.
 */
#ifndef LR_DAEMON_H
#define LR_DAEMON_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "dispatch/model.h"

struct lr_build;
struct lr_metrics;
struct lr_v2api;

#define LR_MAX_WORKERS 64

/* One per worker thread.  Worker 0 is the main thread: it owns the
 * signals, the replay state and the log settings, and passes SIGHUP,
 * SIGTERM/SIGINT and SIGUSR1 on to the others as commands (ev_async).
 * Every worker loads the config into its own Lua state and listens with
 * SO_REUSEPORT on the same addresses; the kernel spreads connections. */
struct lr_daemon {
    struct lr_worker rt;     /* first: what dispatch and inbounds see */
    uint32_t nworkers;       /* main: threads running, itself included */
    struct lr_daemon **workers;   /* main: workers 1..nworkers-1 */
    struct lr_daemon *main;  /* workers: worker 0 */
    pthread_t thread;
    ev_async cmd_w;          /* workers: commands from the main thread */
    _Atomic uint32_t cmds;   /* LR_CMD_* bits pending */
    int start_rc;            /* workers: 0 serving, -1 failed to start */
    uint64_t accepted;       /* connections accepted by this worker */
    ev_timer resume;         /* accepting again after EMFILE */
    uint32_t conf_workers;   /* main: workers the first config asked for */
    uint64_t gen_seq;
    char *config_path;       /* NULL: the embedded default */
    ev_timer tick;           /* legacy table refresh, replay expiry */
    ev_timer trim_w;         /* the idle trim, when a second had not passed */
    uint64_t trim_opened;    /* rt.net.opened at the last idle trim */
    double trim_last;
    ev_signal sigterm, sigint, sigusr1, sighup;
    ev_timer grace;
    int stopping;
    double grace_seconds;
    double stop_deadline;
    /* SIGHUP: the next generation is built by a thread of its own (config
     * script, user tables, listeners) and installed here when ready */
    struct lr_build *build;  /* the reload being built, or NULL */
    ev_async built_w;
    int reload_again;        /* another SIGHUP came meanwhile */
    int hup_pending;         /* main: a SIGHUP no build has taken yet */
    struct lr_metrics *metrics;   /* main: luaray.metrics, or NULL */
    ev_async live_w;              /* main: live users changed: rebuild */
    struct lr_v2api *api;         /* main: luaray.api, or NULL */
    int32_t st_reload_ok, st_reload_failed;   /* main: counter slots */
};

/* The daemon of a worker runtime (its first member). */
static inline struct lr_daemon *lr_daemon_of(struct lr_worker *rt)
{
    return (struct lr_daemon *)rt;
}


#endif
