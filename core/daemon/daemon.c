/*
 * The daemon: commits a staging config into runtime objects, opens the
 * listeners, accepts connections, runs the periodic tick (legacy auth table
 * refresh every 10 s as v2ray does, replay expiry) and stops gracefully on
 * SIGTERM/SIGINT: listeners close at once, open connections get a grace
 * period to finish.
 *
 * With luaray.workers(n), the main thread starts n - 1 more worker threads
 * after its own config is committed.  Each loads the config into its own
 * Lua state, listens on the same addresses (SO_REUSEPORT) and runs its own
 * loop; the replay state, policies and luaray.shared are shared (locked).
 * Signals reach the main thread only, which passes them on (ev_async).
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/stats.h"
#include "daemon/conf.h"
#include "daemon/control.h"
#include "daemon/fleet.h"
#include "daemon/live.h"
#include "daemon/metrics.h"
#include "daemon/v2api.h"
#include "daemon/daemon_api.h"
#include "net/conn.h"
#include "route/route.h"
#include "script/bridge.h"
#include "dispatch/policy.h"
#include "inbound/dynport.h"
#include "inbound/front.h"
#include "outbound/front.h"
#include "inbound/inbound.h"
#include "inbound/tunnel.h"
#include "dispatch/dispatch.h"
#include "crypto/crypto.h"

enum { LR_CMD_RELOAD = 1, LR_CMD_STOP = 2, LR_CMD_STOP_NOW = 4, LR_CMD_DUMP = 8 };

static void send_cmd(struct lr_daemon *d, uint32_t cmd)
{
    for (uint32_t i = 1; i < d->nworkers; i++) {
        struct lr_daemon *w = d->workers[i];
        atomic_fetch_or(&w->cmds, cmd);
        ev_async_send(w->rt.net.loop, &w->cmd_w);
    }
}

/* "worker 2: " in front of a worker's own log lines (none for a single
 * worker, so those logs read as before). */
static const char *wtag(struct lr_daemon *d, char *buf, size_t n)
{
    const struct lr_daemon *m = d->main ? d->main : d;
    if (m->conf_workers <= 1)
        return "";
    snprintf(buf, n, "worker %u: ", d->rt.worker);
    return buf;
}


static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_inbound *ib = (struct lr_inbound *)((char *)w -
                             offsetof(struct lr_inbound, accept_w));
    for (int i = 0; i < 64; i++) {
        struct lr_addr src;
        src.len = sizeof(src.ss);
        int fd = accept4(ib->fd, (struct sockaddr *)&src.ss, &src.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* out of descriptors: first drop sockets lingering after
                 * their close and refused handshakes whose client has gone
                 * already (held only so their FIN comes at the deadline); else pause accepting briefly instead of
                 * spinning on a listener that stays readable */
                if (lr_conn_shed(&ib->rt->net, NULL, 64) > 0)
                    continue;
                lr_warn("inbound %s: %s; pausing accept", ib->tag, strerror(errno));
                ev_io_stop(loop, w);
                lr_daemon_pause_accept(lr_daemon_of(ib->rt), ib);
            }
            return;
        }
        if (ib->max_connections && ib->nconns >= ib->max_connections &&
            lr_conn_shed(&ib->rt->net, ib, 1) == 0) {
            close(fd);
            continue;
        }
        if (lr_dispatch_accept_hook(ib, &src) != 0) {
            close(fd);
            continue;
        }
        lr_sock_tune(fd);
        if (lr_dispatch_accept(ib, fd, &src, lr_inbound_ops(ib->type)) != 0)
            close(fd);
        else
            lr_daemon_of(ib->rt)->accepted++;
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_daemon *d = w->data;
    for (uint32_t i = 0; i < d->rt.gen->nib; i++)
        if (d->rt.gen->ib[i].fd >= 0 && !d->stopping)
            ev_io_start(loop, &d->rt.gen->ib[i].accept_w);
}

void lr_daemon_pause_accept(struct lr_daemon *d, struct lr_inbound *ib)
{
    ev_timer_stop(d->rt.net.loop, &d->resume);
    ev_timer_init(&d->resume, resume_cb, 0.5, 0.);
    d->resume.data = d;
    ev_timer_start(d->rt.net.loop, &d->resume);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_daemon *d = w->data;
    int64_t now = (int64_t)time(NULL);
    for (uint32_t i = 0; i < d->rt.gen->nib; i++) {
        if (d->rt.gen->ib[i].is_detour)
            lr_dyn_roll(&d->rt.gen->ib[i]);
        if (d->rt.gen->ib[i].users)
            lr_users_refresh(d->rt.gen->ib[i].users, now);
    }
    if (d->rt.worker == 0)
        lr_replay_expire(d->rt.replay, now);
}

static void stop_check_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_daemon *d = w->data;
    char t[32];
    if (d->rt.net.nconns == 0 || ev_now(loop) >= d->stop_deadline) {
        if (d->rt.net.nconns)
            lr_info("%sstopping with %u connections still open",
                    wtag(d, t, sizeof(t)), d->rt.net.nconns);
        ev_break(loop, EVBREAK_ALL);
    }
}

/* Listeners close at once; open connections get the grace period. */
static void begin_stop(struct lr_daemon *d, int signum)
{
    struct ev_loop *loop = d->rt.net.loop;
    char t[32];
    if (d->rt.worker == 0)
        lr_info("signal %d: no longer accepting; %u connections to finish",
                signum, d->rt.net.nconns);
    else
        lr_info("%sno longer accepting; %u connections to finish",
                wtag(d, t, sizeof(t)), d->rt.net.nconns);
    d->stopping = 1;
    for (uint32_t i = 0; i < d->rt.gen->nib; i++) {
        ev_io_stop(loop, &d->rt.gen->ib[i].accept_w);
        if (lr_tunnel_is_type(d->rt.gen->ib[i].type))
            lr_tunnel_release(&d->rt.gen->ib[i], 1);
        if (d->rt.gen->ib[i].fd >= 0) {
            close(d->rt.gen->ib[i].fd);
            d->rt.gen->ib[i].fd = -1;
        }
    }
    /* refused handshakes held to their deadline carry nothing: they do
     * not hold the stop up */
    lr_conn_close_draining(&d->rt.net);
    d->stop_deadline = ev_now(loop) + d->grace_seconds;
    ev_timer_init(&d->grace, stop_check_cb, 0.05, 0.05);
    d->grace.data = d;
    ev_timer_start(loop, &d->grace);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct lr_daemon *d = w->data;
    if (d->stopping) {
        send_cmd(d, LR_CMD_STOP_NOW);
        ev_break(loop, EVBREAK_ALL); /* a second signal: now */
        return;
    }
    begin_stop(d, w->signum);
    send_cmd(d, LR_CMD_STOP);
}

/* The clock of the dynamic-port epochs. */
static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void gen_release(struct lr_gen *g);

struct lr_daemon *lr_daemon_new(void)
{
    struct lr_daemon *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->rt.net.loop = EV_DEFAULT;
    d->rt.replay = lr_replay_new(0);
    d->st_reload_ok = lr_stats_slot("luaray_reloads_total{result=\"ok\"}", LR_STAT_COUNTER, 0);
    d->st_reload_failed = lr_stats_slot("luaray_reloads_total{result=\"failed\"}",
                                        LR_STAT_COUNTER, 0);
    d->grace_seconds = 10;
    d->nworkers = 1;
    d->rt.net.id_step = 1;
    d->rt.net.owner = &lr_dispatch_owner;
    d->rt.release = gen_release;
    lr_random(d->rt.dyn_secret, sizeof(d->rt.dyn_secret));
    d->rt.dyn_t0 = mono_now();
    if (!d->rt.replay) {
        free(d);
        return NULL;
    }
    return d;
}

static int errf(char *err, size_t n, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t n, const char *where, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(err, n, "%s%s", where ? where : "", where ? ": " : "");
    if (k < 0 || (size_t)k >= n)
        k = 0;
    va_start(ap, fmt);
    vsnprintf(err + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

static int find_ob(struct lr_conf *c, const char *tag)
{
    for (uint32_t i = 0; i < c->nob; i++)
        if (strcmp(c->ob[i].ob.tag, tag) == 0)
            return (int)i;
    return -1;
}


/* Whether inbound `ci` accepts user `u` (its `users` list, or everyone). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ci->users sorted (gen_build sorts them once) */
static int user_allowed(const struct lr_conf_ib *ci, const struct lr_user_info *u)
{
    if (ci->no_users)
        return 0;
    if (ci->nusers == 0)
        return 1;
    const char *key = u->email;
    return bsearch(&key, ci->users, ci->nusers, sizeof(*ci->users), cmp_str) != NULL;
}

/* The running generation's VMess inbound (not a detour) whose user table
 * holds exactly the users `ci` will accept, in the same order, with the
 * same legacy setting: the new generation shares it instead of building
 * another (no second legacy table, no HMACs).  Reads only what never
 * changes once a table is built, so it runs off the loop. */
static int32_t shareable(const struct lr_gen *old, const struct lr_conf *c,
                         const struct lr_conf_ib *ci)
{
    for (uint32_t j = 0; old && j < old->nib; j++) {
        const struct lr_inbound *o = &old->ib[j];
        const struct lr_users *u = o->users;
        if (o->type != LR_IB_VMESS || o->is_detour || !u ||
            !u->legacy != !ci->ib.allow_legacy)
            continue;
        uint32_t n = 0;
        int same = 1;
        for (uint32_t k = 0; k < c->nusers && same; k++) {
            const struct lr_user_info *x = &c->users[k];
            if (!user_allowed(ci, x))
                continue;
            same = n < u->n && memcmp(u->v[n].id, x->id, 16) == 0 &&
                   u->v[n].alter_id == x->alter_id;
            n++;
        }
        if (same && n == u->n)
            return (int32_t)j;
    }
    return -1;
}

/* ------------------------------------------------------------ generations */

/* The reaper: a thread that frees released generations, so closing a Lua
 * state and freeing 10,000 users' tables never holds a loop. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct lr_gen *head;
    int running, quit;
    pthread_t thread;
} reaper = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0};

static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reaper.lock);
    for (;;) {
        while (!reaper.head && !reaper.quit)
            pthread_cond_wait(&reaper.cond, &reaper.lock);
        struct lr_gen *g = reaper.head;
        if (!g)
            break; /* quit, and nothing left */
        reaper.head = g->reap_next;
        pthread_mutex_unlock(&reaper.lock);
        lr_gen_free(g);
        /* a generation of 10,000 users leaves tens of MB free in the heap */
        malloc_trim(0);
        pthread_mutex_lock(&reaper.lock);
    }
    pthread_mutex_unlock(&reaper.lock);
    lr_cipher_thread_end();
    lr_kdf_thread_end();
    lr_hdr_thread_end();
    return NULL;
}

static void reaper_start(void)
{
    pthread_mutex_lock(&reaper.lock);
    if (!reaper.running) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        reaper.quit = 0;
        reaper.running = pthread_create(&reaper.thread, NULL, reaper_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_mutex_unlock(&reaper.lock);
}

/* Frees what is queued and ends the thread (the daemon is done). */
static void reaper_stop(void)
{
    pthread_mutex_lock(&reaper.lock);
    int was = reaper.running;
    reaper.quit = 1;
    pthread_cond_signal(&reaper.cond);
    pthread_mutex_unlock(&reaper.lock);
    if (was)
        pthread_join(reaper.thread, NULL);
    reaper.running = 0;
}

static void reap(struct lr_gen *g)
{
    pthread_mutex_lock(&reaper.lock);
    if (reaper.running) {
        g->reap_next = reaper.head;
        reaper.head = g;
        pthread_cond_signal(&reaper.cond);
        g = NULL;
    }
    pthread_mutex_unlock(&reaper.lock);
    if (g)
        lr_gen_free(g);
}

/* lr_worker.release: a generation whose last connection closed (or that
 * the daemon let go) is freed by the reaper thread. */
static void gen_release(struct lr_gen *g)
{
    lr_ctl_forget(g);
    if (g->rt && g != g->rt->gen) {
        g->rt->old_gens--;
        lr_info("generation %llu released", (unsigned long long)g->id);
    }
    reap(g);
}

/* The old generation's inbound listening on the same address with the same
 * type (and, for a dynamic-port listener, the same tag): its socket is
 * carried over, so clients never see it close. */
static struct lr_inbound *old_listener(struct lr_gen *old, struct lr_inbound *ib)
{
    if (!old)
        return NULL;
    for (uint32_t i = 0; i < old->nib; i++) {
        struct lr_inbound *o = &old->ib[i];
        /* only fields that never change once built: a reload is built
         * off the loop (the socket itself is taken when installed) */
        if (o->type != ib->type || o->is_detour != ib->is_detour)
            continue;
        if (o->net_tcp != ib->net_tcp || o->net_udp != ib->net_udp)
            continue; /* a tunnel's sockets: the same kinds, or new ones */
        if (ib->is_detour) {
            if (strcmp(o->tag, ib->tag) == 0)
                return o;
            continue;
        }
        if (o->addr.len == ib->addr.len &&
            memcmp(&o->addr.ss, &ib->addr.ss, ib->addr.len) == 0)
            return o;
    }
    return NULL;
}

/* What the rules and the default route name exists: *def is the default
 * outbound's index. */
static int gen_validate(struct lr_conf *c, int *def, char *err, size_t errlen)
{
    if (c->nib == 0)
        return errf(err, errlen, NULL, "no inbound declared");
    if (c->nob == 0)
        return errf(err, errlen, NULL, "no outbound declared");
    for (uint32_t i = 0; i < c->nob; i++) {
        char why[256];
        if (lr_cfront_check(&c->ob[i].ob, why, sizeof(why)) != 0)
            return errf(err, errlen, c->ob[i].where, "%s", why);
    }
    *def = c->default_tag ? find_ob(c, c->default_tag) : 0;
    if (*def < 0)
        return errf(err, errlen, NULL, "default route: no outbound '%s'", c->default_tag);
    for (uint32_t i = 0; i < c->nrules; i++) {
        struct lr_conf_rule *r = &c->rules[i];
        r->r.to = find_ob(c, r->to);
        if (r->r.to < 0)
            return errf(err, errlen, r->where, "route to unknown outbound '%s'", r->to);
        if (lr_rule_finish(&r->r) != 0)
            return errf(err, errlen, r->where, "out of memory building the route's tables");
    }
    return 0;
}

/* One VMess inbound's user table: its users (or, for a detour, theirs
 * LR_DYN_SLOTS times), the map to the config's user indices, the legacy
 * table when enabled; or, when its users are the running generation's
 * inbound's, a mark to share that table at install. */
static int inbound_users(struct lr_daemon *d, struct lr_conf *c, struct lr_gen *old,
                         struct lr_conf_ib *ci, int dry_run, int64_t now,
                         char *err, size_t errlen)
{
    struct lr_inbound *ib = &ci->ib;
    if (ci->nusers)
        qsort(ci->users, ci->nusers, sizeof(*ci->users), cmp_str);
    ib->user_map = calloc(c->nusers ? c->nusers * (ib->is_detour ? LR_DYN_SLOTS : 1) : 1,
                          sizeof(int32_t));
    if (!ib->user_map)
        return errf(err, errlen, ci->where, "out of memory");
    if (!dry_run && !ib->is_detour && (ci->share = shareable(old, c, ci)) >= 0) {
        /* the same users as the running generation's inbound: its table
         * is taken over when installed */
        ib->users_from = ci->share;
        uint32_t n = 0;
        for (uint32_t k = 0; k < c->nusers; k++)
            if (user_allowed(ci, &c->users[k]))
                ib->user_map[n++] = (int32_t)k;
        return 0;
    }
    if (!(ib->users = lr_users_new()))
        return errf(err, errlen, ci->where, "out of memory");
    if (ib->is_detour) {
        /* the main inbound's users, LR_DYN_SLOTS IDs each */
        const struct lr_conf_ib *mi = &c->ib[ci->detour_of];
        uint32_t *which = malloc(sizeof(*which) * (c->nusers ? c->nusers : 1)), n = 0;
        for (uint32_t k = 0; which && k < c->nusers; k++)
            if (user_allowed(mi, &c->users[k]))
                which[n++] = k;
        int rc = which ? lr_dyn_table(&d->rt, ib, c->users, which, n) : -1;
        free(which);
        if (rc != 0)
            return errf(err, errlen, ci->where, "cannot build the dynamic-port IDs");
    } else {
        for (uint32_t k = 0; k < c->nusers; k++) {
            if (!user_allowed(ci, &c->users[k]))
                continue;
            int idx = lr_users_add(ib->users, c->users[k].id, c->users[k].alter_id);
            if (idx < 0)
                return errf(err, errlen, ci->where, "cannot add user '%s'", c->users[k].email);
            ib->user_map[idx] = (int32_t)k;
        }
    }
    lr_users_set_legacy(ib->users, ib->allow_legacy);
    if (lr_users_refresh(ib->users, now) != LR_OK)
        return errf(err, errlen, ci->where, "out of memory");
    return 0;
}

/* Every VMess inbound's user table (inbound_users). */
static int gen_users(struct lr_daemon *d, struct lr_conf *c, struct lr_gen *old,
                     int dry_run, char *err, size_t errlen)
{
    int64_t now = (int64_t)time(NULL);
    /* the users' emails, sorted, for the inbounds' `users` lists */
    char **emails = calloc(c->nusers ? c->nusers : 1, sizeof(*emails));
    if (!emails)
        return errf(err, errlen, NULL, "out of memory");
    for (uint32_t k = 0; k < c->nusers; k++)
        emails[k] = c->users[k].email;
    qsort(emails, c->nusers, sizeof(*emails), cmp_str);
    int rc = 0;
    for (uint32_t i = 0; i < c->nib && rc == 0; i++) {
        struct lr_conf_ib *ci = &c->ib[i];
        ci->share = -1;
        ci->ib.users_from = -1;
        char why[256];
        if (lr_front_check(&ci->ib, why, sizeof(why)) != 0) {
            rc = errf(err, errlen, ci->where, "%s", why);
            break;
        }
        if (ci->ib.type != LR_IB_VMESS)
            continue;
        for (uint32_t j = 0; j < ci->nusers && rc == 0; j++)
            if (!bsearch(&ci->users[j], emails, c->nusers, sizeof(*emails), cmp_str))
                rc = errf(err, errlen, ci->where, "unknown user '%s'", ci->users[j]);
        if (rc == 0)
            rc = inbound_users(d, c, old, ci, dry_run, now, err, errlen);
    }
    free(emails);
    return rc;
}

/* Closes the listeners gen_listeners opened (not those carried over). */
static void close_listeners(struct lr_conf *c, struct lr_inbound **carried)
{
    for (uint32_t k = 0; k < c->nib; k++) {
        if (!carried[k] && c->ib[k].ib.fd >= 0) {
            close(c->ib[k].ib.fd);
            c->ib[k].ib.fd = -1;
        }
        if (!carried[k] && c->ib[k].ib.ufd >= 0 && lr_tunnel_is_type(c->ib[k].ib.type)) {
            close(c->ib[k].ib.ufd);
            c->ib[k].ib.ufd = -1;
        }
    }
}

/* Each inbound's listener: the running generation's socket for the same
 * address and type (carried[i], handed over at install), or a new one;
 * on failure nothing it opened stays open. */
static int gen_listeners(struct lr_conf *c, struct lr_gen *old, struct lr_inbound **carried,
                         char *err, size_t errlen)
{
    for (uint32_t i = 0; i < c->nib; i++) {
        struct lr_conf_ib *ci = &c->ib[i];
        int fd = -1;
        struct lr_inbound *o = old_listener(old, &ci->ib);
        if (o) {
            carried[i] = o;
            ci->ib.port = o->port;
            ci->ib.addr = o->addr;
            continue;
        }
        if (ci->ib.is_detour) {
            /* a random free port of the range */
            uint32_t span = (uint32_t)ci->ib.dyn_hi - ci->ib.dyn_lo + 1;
            uint32_t r;
            lr_random((uint8_t *)&r, sizeof(r));
            fd = -EADDRINUSE;
            for (uint32_t t = 0; t < span && t < 64 && fd < 0; t++) {
                ci->ib.port = (uint16_t)(ci->ib.dyn_lo + (r + t) % span);
                lr_addr_set_port(&ci->ib.addr, ci->ib.port);
                fd = lr_sock_listen(&ci->ib.addr, SOCK_STREAM, 1024);
            }
        } else if (lr_tunnel_is_type(ci->ib.type)) {
            /* tunnel / tproxy / redirect: TCP, UDP or both, maybe transparent */
            char why[300];
            if (lr_tunnel_listen(&ci->ib, why, sizeof(why)) != 0) {
                close_listeners(c, carried);
                return errf(err, errlen, ci->where, "%s", why);
            }
            continue;
        } else {
            fd = lr_sock_listen(&ci->ib.addr, SOCK_STREAM, 1024);
        }
        if (fd < 0) {
            char a[80];
            lr_addr_str(&ci->ib.addr, a, sizeof(a));
            close_listeners(c, carried);
            return errf(err, errlen, ci->where, "cannot listen on %s: %s", a,
                        strerror(-fd));
        }
        ci->ib.fd = fd;
    }
    return 0;
}

/* Each main inbound announces its detour's port; the ID is per user and
 * per epoch (lr_dyn_command). */
static int gen_announce(struct lr_conf *c, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < c->nib; i++) {
        struct lr_conf_ib *ci = &c->ib[i];
        if (ci->ib.is_detour || ci->detour < 0)
            continue;
        struct lr_inbound *dt = &c->ib[ci->detour].ib;
        if (!(ci->ib.dyn_cmd = calloc(1, sizeof(*ci->ib.dyn_cmd))))
            return errf(err, errlen, ci->where, "out of memory");
        ci->ib.dyn_cmd->port = dt->port;
        ci->ib.dyn_cmd->alter_ids = (uint16_t)dt->dyn_alter;
        ci->ib.dyn_cmd->valid_min = (uint8_t)dt->dyn_minutes;
    }
    return 0;
}

/* A generation that takes over everything the config built; NULL (and
 * the config untouched) when out of memory. */
static struct lr_gen *gen_adopt(struct lr_daemon *d, struct lr_conf *c, struct lr_gen *old,
                                struct lr_inbound **carried, int def)
{
    struct lr_gen *g = calloc(1, sizeof(*g));
    struct lr_outbound *ob = calloc(c->nob ? c->nob : 1, sizeof(*ob));
    struct lr_rule *rules = calloc(c->nrules ? c->nrules : 1, sizeof(*rules));
    struct lr_inbound *ib = calloc(c->nib ? c->nib : 1, sizeof(*ib));
    if (!g || !ob || !rules || !ib) {
        free(g);
        free(ob);
        free(rules);
        free(ib);
        return NULL;
    }
    g->rt = &d->rt;
    g->refs = 1;
    g->users = c->users;
    g->nusers = c->nusers;
    c->users = NULL;
    c->nusers = 0;
    g->ob = ob;
    g->nob = c->nob;
    for (uint32_t i = 0; i < c->nob; i++) {
        g->ob[i] = c->ob[i].ob;
        memset(&c->ob[i].ob, 0, sizeof(c->ob[i].ob));
    }
    g->rules = rules;
    g->nrules = c->nrules;
    for (uint32_t i = 0; i < c->nrules; i++) {
        g->rules[i] = c->rules[i].r;
        memset(&c->rules[i].r, 0, sizeof(c->rules[i].r));
    }
    g->default_ob = def;
    g->sniff = lr_route_wants_sniff(g->rules, g->nrules);
    g->route_strategy = c->route_strategy;
    g->ib = ib;
    g->nib = c->nib;
    for (uint32_t i = 0; i < c->nib; i++) {
        g->ib[i] = c->ib[i].ib;
        memset(&c->ib[i].ib, 0, sizeof(c->ib[i].ib));
        c->ib[i].ib.fd = -1;
        c->ib[i].ib.ufd = -1;
        g->ib[i].gen = g;
        g->ib[i].rt = &d->rt;
        g->ib[i].nconns = 0;
        if (carried[i]) /* the old listener's socket moves here when installed */
            g->ib[i].fd = -2 - (int)(carried[i] - old->ib);
    }
    for (uint32_t i = 0; i < c->nib; i++)
        if (!g->ib[i].is_detour && c->ib[i].detour >= 0)
            g->ib[i].dyn_detour = &g->ib[c->ib[i].detour];
    return g;
}

/* TLS contexts (certificates and keys read now, on this thread): a bad
 * file fails the build, and the running generation keeps its own. */
static int gen_tls(struct lr_conf *c, char *err, size_t errlen)
{
    char why[700];
    for (uint32_t i = 0; i < c->nib; i++)
        if (lr_front_tls_build(&c->ib[i].ib, why, sizeof(why)) != 0)
            return errf(err, errlen, c->ib[i].where, "%s", why);
    for (uint32_t i = 0; i < c->nob; i++)
        if (lr_cfront_tls_build(&c->ob[i].ob, why, sizeof(why)) != 0)
            return errf(err, errlen, c->ob[i].where, "%s", why);
    return 0;
}

/* The counters of a generation about to serve on worker w (base/stats.h):
 * slots found by name, so a reload carries every count on. */
static void gen_count(struct lr_gen *g, uint32_t w)
{
    char name[400], lab[300];
    for (uint32_t i = 0; i < g->nusers; i++) {
        snprintf(name, sizeof(name), "user>>>%s", g->users[i].email);
        g->users[i].st_up = lr_stats_pair(name, w, &g->users[i].st_down);
    }
    for (uint32_t i = 0; i < g->nib; i++) {
        struct lr_inbound *ib = &g->ib[i];
        snprintf(name, sizeof(name), "inbound>>>%s", ib->tag);
        ib->st_up = lr_stats_pair(name, w, &ib->st_down);
        lr_stats_label(lab, sizeof(lab), ib->tag);
        snprintf(name, sizeof(name), "luaray_connections_open{inbound=\"%s\"}", lab);
        ib->st_open = lr_stats_slot(name, LR_STAT_GAUGE, w);
    }
    for (uint32_t i = 0; i < g->nob; i++) {
        snprintf(name, sizeof(name), "outbound>>>%s", g->ob[i].tag);
        g->ob[i].st_up = lr_stats_pair(name, w, &g->ob[i].st_down);
    }
    g->counted = 1;
}

/* Builds a generation from a staging config: validate, user tables, TLS,
 * listeners (not with dry_run), dynamic-port commands, adopt.  On error
 * nothing changes, nothing it opened stays open, and `err` says what and
 * where.  Runs on the reload thread: it reads of the running generation
 * only what never changes. */
static int gen_build(struct lr_daemon *d, struct lr_conf *c, int dry_run,
                     struct lr_gen **out, char *err, size_t errlen)
{
    struct lr_gen *old = d->rt.gen;
    int def = 0;
    if (!dry_run && lr_live_merge(c, err, errlen) != 0)
        return -1;
    if (gen_validate(c, &def, err, errlen) != 0 ||
        lr_conf_expand_dynamic(c, err, errlen) != 0 ||
        gen_users(d, c, old, dry_run, err, errlen) != 0 ||
        gen_tls(c, err, errlen) != 0)
        return -1;
    struct lr_inbound **carried = calloc(c->nib, sizeof(*carried));
    if (!carried)
        return errf(err, errlen, NULL, "out of memory");
    int rc = dry_run ? 0 : gen_listeners(c, old, carried, err, errlen);
    if (rc == 0 && gen_announce(c, err, errlen) != 0)
        rc = -1;
    if (rc == 0 && !dry_run && d->rt.worker == 0 && !(c->live_snap = lr_live_snapshot(c)))
        rc = errf(err, errlen, NULL, "out of memory");
    if (rc == 0 && !(*out = gen_adopt(d, c, old, carried, def)))
        rc = errf(err, errlen, NULL, "out of memory");
    if (rc == 0 && !dry_run)
        gen_count(*out, d->rt.worker);
    if (rc != 0 && !dry_run)
        close_listeners(c, carried);
    free(carried);
    return rc;
}

static const char *ib_type_name(int type)
{
    static const char *names[] = {"?", "vmess", "socks", "http", "tunnel", "tproxy",
                                  "redirect", "?"};
    return names[type & 7];
}

/* A SOCKS or HTTP inbound without accounts on an address other hosts may
 * reach: anyone who reaches it can use it.  Said once per inbound each
 * time a config is checked, started or reloaded. */
static void warn_open_proxy(const struct lr_inbound *ib)
{
    uint8_t ip[16];
    static const uint8_t v6_loopback[16] = {[15] = 1};
    if ((ib->type != LR_IB_SOCKS && ib->type != LR_IB_HTTP) || ib->naccounts)
        return;
    int n = lr_addr_ip_bytes(&ib->addr, ip);
    if ((n == 4 && ip[0] == 127) || (n == 16 && memcmp(ip, v6_loopback, 16) == 0))
        return;
    char a[80];
    lr_addr_str(&ib->addr, a, sizeof(a));
    lr_warn("inbound %s (%s) on %s has no accounts: an open proxy for anyone who "
            "can reach that address (set accounts, or listen on 127.0.0.1)",
            ib->tag, ib_type_name(ib->type), a);
}

/* Makes `g` the current generation: moves carried listeners over, closes
 * listeners the new config dropped, starts accepting.  The main thread
 * logs, in this order, each inbound of `g` ("listening on" when its
 * socket is new, "kept" when it was handed over) and each listener
 * closed ("removed"). */
static void gen_install(struct lr_daemon *d, struct lr_gen *g)
{
    struct lr_gen *old = d->rt.gen;
    for (uint32_t i = 0; i < g->nib; i++) {
        struct lr_inbound *ib = &g->ib[i];
        if (ib->users_from >= 0 && old) {
            /* the same users as before: the running table, shared */
            ib->users = old->ib[ib->users_from].users;
            lr_users_ref(ib->users);
        }
        int kept = ib->fd <= -2 && old;
        if (kept) {
            struct lr_inbound *o = &old->ib[-2 - ib->fd];
            ev_io_stop(d->rt.net.loop, &o->accept_w);
            ib->fd = o->fd;
            o->fd = -1;
            if (lr_tunnel_is_type(ib->type))
                lr_tunnel_install(ib, o); /* its UDP listener and sessions */
        } else if (lr_tunnel_is_type(ib->type)) {
            lr_tunnel_install(ib, NULL);
        }
        if (d->rt.worker == 0) {
            char a[80];
            lr_addr_str(&ib->addr, a, sizeof(a));
            if (kept)
                lr_info("inbound %s on %s kept", ib->tag, a);
            else
                lr_info("inbound %s (%s) listening on %s", ib->tag,
                        ib_type_name(ib->type), a);
            warn_open_proxy(ib);
        }
    }
    if (old) {
        for (uint32_t i = 0; i < old->nib; i++) {
            struct lr_inbound *o = &old->ib[i];
            ev_io_stop(d->rt.net.loop, &o->accept_w);
            if (lr_tunnel_is_type(o->type))
                lr_tunnel_release(o, 0); /* a UDP listener not handed over */
            if (o->fd >= 0) {
                char a[80];
                lr_addr_str(&o->addr, a, sizeof(a));
                if (d->rt.worker == 0)
                    lr_info("inbound %s on %s removed", o->tag, a);
                close(o->fd);
                o->fd = -1;
            }
        }
    }
    for (uint32_t i = 0; i < g->nib; i++) {
        struct lr_inbound *ib = &g->ib[i];
        if (ib->fd >= 0) {
            ev_io_init(&ib->accept_w, accept_cb, ib->fd, EV_READ);
            ev_io_start(d->rt.net.loop, &ib->accept_w);
        }
    }
    g->id = ++d->gen_seq;
    d->rt.gen = g;
    if (old) {
        d->rt.old_gens++;
        lr_gen_unref(old);
    }
}

/* The access log a config names, opened (or, for a check, probed) before
 * anything else of the config is built, so a path that cannot be opened
 * refuses the config with luaray.log's file:line, and on a reload the
 * running log stays.  *f: the stream to install (NULL: off).  Each reload
 * reopens the file (log rotation).  The main thread's alone: workers run
 * the same config. */
static int access_prepare(struct lr_daemon *d, struct lr_conf *c, int dry_run,
                          FILE **f, char *err, size_t errlen)
{
    const char *path = c->access_set ? c->access : "";
    *f = NULL;
    if (d->rt.worker != 0 || !path)
        return 0;
    if (!*path) {
        *f = stderr;
        return 0;
    }
    int rc = 0;
    if (dry_run)
        rc = lr_access_check(path);
    else if (!(*f = lr_access_file(path)))
        rc = -errno;
    if (rc)
        return errf(err, errlen, c->log_where, "cannot open access log '%s': %s",
                    path, strerror(-rc));
    return 0;
}

static void apply_logging(struct lr_daemon *d, struct lr_conf *c, FILE *access)
{
    if (d->rt.worker != 0)
        return; /* the main thread's; the same config */
    lr_log_level = c->log_level;
    lr_access_use(access);
}

/* A reload's luaray.metrics (main thread): the same address keeps its
 * listener (a new token applies at once); another one opens first, so a
 * failure keeps the old listener serving; none closes it. */
static void metrics_reload(struct lr_daemon *d, struct lr_conf *c)
{
    char why[300];
    if (!c->metrics_host) {
        if (d->metrics)
            lr_info("metrics: no longer served");
        lr_metrics_stop(d->metrics);
        d->metrics = NULL;
        return;
    }
    if (lr_metrics_listens_on(d->metrics, c->metrics_host, c->metrics_port)) {
        if (lr_metrics_set_token(d->metrics, c->metrics_token) != 0)
            lr_error("reload: metrics: out of memory; the old token stays");
        return;
    }
    struct lr_metrics *m = lr_metrics_start(d->rt.net.loop, c->metrics_host, c->metrics_port,
                                            c->metrics_token, why, sizeof(why));
    if (!m) {
        lr_error("reload: %s: %s; %s", c->metrics_where ? c->metrics_where : "metrics", why,
                 d->metrics ? "the old metrics listener stays" : "no metrics served");
        return;
    }
    lr_metrics_stop(d->metrics);
    d->metrics = m;
}

/* A reload's luaray.api (main thread), as metrics_reload: the same
 * address keeps its listener and connections; another one opens first, so
 * a failure keeps the old one serving; none closes it. */
static void api_reload(struct lr_daemon *d, struct lr_conf *c)
{
    char why[300];
    if (!c->api_host) {
        if (d->api)
            lr_info("api: no longer served");
        lr_v2api_stop(d->api);
        d->api = NULL;
        return;
    }
    if (lr_v2api_listens_on(d->api, c->api_host, c->api_port))
        return;
    struct lr_v2api *a = lr_v2api_start(d->rt.net.loop, d, c->api_host, c->api_port, why,
                                        sizeof(why));
    if (!a) {
        lr_error("reload: %s: %s; %s", c->api_where ? c->api_where : "api", why,
                 d->api ? "the old API listener stays" : "no API served");
        return;
    }
    lr_v2api_stop(d->api);
    d->api = a;
}

/* luaray.cluster (net/cluster.h): each worker keeps its own client while
 * the settings stay the same; changed or removed on a reload, the old one
 * closes (its open waits decide locally) and a new one connects. */
static void cluster_apply(struct lr_daemon *d, struct lr_conf *c)
{
    struct lr_cluster *cl = d->rt.cluster;
    if (cl && c->cluster.host && lr_cluster_same(cl, &c->cluster))
        return;
    if (cl && d->rt.worker == 0)
        lr_info("cluster: %s", c->cluster.host ? "settings changed; reconnecting"
                                               : "no longer configured; state is node-local");
    d->rt.cluster = NULL;
    if (d->rt.worker == 0) {
        lr_fleet_stop();
        lr_ctl_set_cluster(NULL);
    }
    lr_cluster_free(cl);
    if (c->cluster.host && !(d->rt.cluster = lr_cluster_new(d->rt.net.loop, &c->cluster,
                                                            d->rt.worker)))
        lr_error("cluster: out of memory; state is node-local");
    if (d->rt.cluster && d->rt.worker == 0) {
        lr_fleet_start(d->rt.net.loop, d->rt.cluster);
        lr_ctl_set_cluster(d->rt.cluster);
    }
}

/* Installs a built generation with its script: logging, listeners,
 * policies (on the loop, or before it runs); on the main thread, the
 * control plane (config_load: the start or a SIGHUP, whose generation
 * runs the timers; see daemon/control.h). */
static void gen_commit(struct lr_daemon *d, struct lr_conf *c, struct lr_gen *g,
                       struct lr_script *script, FILE *access, int config_load)
{
    g->script = script;
    g->hooks = script ? lr_scripts->hooks(script) : 0;
    if ((g->hooks & (1u << LR_HOOK_ROUTE)) && (g->hooks & LR_HOOKS_SNIFFED))
        g->sniff = 1;
    apply_logging(d, c, access);
    cluster_apply(d, c);
    gen_install(d, g);
    lr_live_installed(d, c);
    for (uint32_t i = 0; i < c->npolicies; i++)
        lr_policy_set(c->policies[i].email, &c->policies[i].p);
    if (d->rt.worker == 0)
        lr_ctl_installed(d->rt.net.loop, g, config_load);
}

int lr_daemon_commit(struct lr_daemon *d, struct lr_conf *c,
                     struct lr_script *script, int dry_run, char *err,
                     size_t errlen)
{
    struct lr_gen *g = NULL;
    if (!dry_run && d->rt.worker == 0 && !d->rt.gen) {
        /* the first config fixes the number of workers */
        d->conf_workers = (uint32_t)c->workers;
        lr_sock_reuseport = c->workers > 1;
    }
    FILE *access = NULL;
    if (access_prepare(d, c, dry_run, &access, err, errlen) != 0)
        return -1;
    if (gen_build(d, c, dry_run, &g, err, errlen) != 0) {
        if (access && access != stderr)
            fclose(access);
        return -1;
    }
    if (!dry_run && d->rt.worker == 0 && !d->rt.gen && c->metrics_host) {
        /* the first config: a metrics address that cannot listen stops the
         * start, as an inbound's does */
        char why[300];
        d->metrics = lr_metrics_start(d->rt.net.loop, c->metrics_host, c->metrics_port,
                                      c->metrics_token, why, sizeof(why));
        if (!d->metrics) {
            if (access && access != stderr)
                fclose(access);
            lr_gen_free(g);
            return errf(err, errlen, c->metrics_where, "%s", why);
        }
    }
    if (!dry_run && d->rt.worker == 0 && !d->rt.gen && c->api_host) {
        /* the same for the API's address */
        char why[300];
        d->api = lr_v2api_start(d->rt.net.loop, d, c->api_host, c->api_port, why,
                                sizeof(why));
        if (!d->api) {
            lr_metrics_stop(d->metrics);
            d->metrics = NULL;
            if (access && access != stderr)
                fclose(access);
            lr_gen_free(g);
            return errf(err, errlen, c->api_where, "%s", why);
        }
    }
    if (dry_run) {
        if (d->rt.worker == 0)
            for (uint32_t i = 0; i < g->nib; i++)
                warn_open_proxy(&g->ib[i]);
        lr_gen_free(g);
        return 0;
    }
    gen_commit(d, c, g, script, access, 1);
    return 0;
}

/* ------------------------------------------------------------ reload
 *
 * SIGHUP builds the next generation on a thread of its own: the config
 * script runs in a fresh Lua state, the user tables are built (or, for
 * unchanged users, taken over from the running generation when installed)
 * and new listeners opened, all without the loop, which serves on; then
 * the loop installs it (ev_async), which takes well under a millisecond.
 * One build at a time; a SIGHUP meanwhile builds again after it.  On any
 * error the running generation stays. */
struct lr_build {
    struct lr_daemon *d;
    pthread_t thread;
    struct lr_gen *old;          /* d->rt.gen when the build started */
    struct lr_conf *c;
    struct lr_script *s;
    struct lr_gen *g;
    FILE *access;                /* the access log it names, opened */
    int hup;                     /* a SIGHUP asked for it (not only live users) */
    int rc;
    char err[1024];
};

static void *build_main(void *arg)
{
    struct lr_build *b = arg;
    b->rc = -1;
    b->c = lr_conf_new();
    b->s = lr_scripts->create(b->d);
    if (!b->c || !b->s)
        snprintf(b->err, sizeof(b->err), "out of memory");
    else if (lr_scripts->load_config(b->s, b->d->config_path, b->c, 0, b->err,
                                   sizeof(b->err)) == 0 &&
             access_prepare(b->d, b->c, 0, &b->access, b->err, sizeof(b->err)) == 0 &&
             gen_build(b->d, b->c, 0, &b->g, b->err, sizeof(b->err)) == 0)
        b->rc = 0;
    lr_cipher_thread_end();
    lr_kdf_thread_end();
    lr_hdr_thread_end();
    ev_async_send(b->d->rt.net.loop, &b->d->built_w);
    return NULL;
}

static void build_free(struct lr_build *b)
{
    if (b->g) {
        /* never installed: its new listeners close with it */
        b->g->script = NULL;
        b->g->rt = NULL;
        lr_gen_free(b->g);
    }
    if (b->access && b->access != stderr)
        fclose(b->access);
    lr_conf_free(b->c);
    if (b->s)
        lr_scripts->destroy(b->s);
    free(b);
}

/* Starts building the next generation (SIGHUP, or the main thread's
 * reload command to a worker). */
static void reload_start(struct lr_daemon *d)
{
    char t[32];
    const char *w = wtag(d, t, sizeof(t));
    if (d->stopping)
        return;
    if (!d->config_path) {
        if (d->rt.worker == 0)
            lr_warn("reload: running the embedded default config; nothing to reload");
        return;
    }
    if (d->build) {
        d->reload_again = 1;
        return;
    }
    struct lr_build *b = calloc(1, sizeof(*b));
    if (!b) {
        lr_error("%sreload failed: out of memory; keeping generation %llu", w,
                 (unsigned long long)d->rt.gen->id);
        return;
    }
    b->d = d;
    b->old = d->rt.gen;
    b->hup = d->hup_pending;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&b->thread, NULL, build_main, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        lr_error("%sreload failed: cannot start a thread (%s); keeping generation %llu",
                 w, strerror(rc), (unsigned long long)d->rt.gen->id);
        free(b);
        return;
    }
    d->hup_pending = 0;
    d->build = b;
}

/* The build is done: install it, or say why not. */
static void built_cb(struct ev_loop *loop, ev_async *aw, int revents)
{
    struct lr_daemon *d = aw->data;
    struct lr_build *b = d->build;
    char t[32];
    const char *w = wtag(d, t, sizeof(t));
    if (!b)
        return;
    pthread_join(b->thread, NULL);
    d->build = NULL;
    if (d->stopping) {
        build_free(b);
        return;
    }
    if (b->rc == 0 && b->old != d->rt.gen) {
        /* cannot happen (one build at a time), but a generation built
         * against another one must not be installed */
        b->rc = -1;
        snprintf(b->err, sizeof(b->err), "the running generation changed meanwhile");
        d->reload_again = 1;
    }
    if (d->rt.worker == 0)
        lr_stats_add(0, b->rc == 0 ? d->st_reload_ok : d->st_reload_failed, 1);
    if (b->rc != 0) {
        lr_error("%sreload failed, keeping generation %llu: %s", w,
                 (unsigned long long)d->rt.gen->id, b->err);
    } else {
        if (d->rt.worker == 0) {
            metrics_reload(d, b->c);
            api_reload(d, b->c);
        }
        struct lr_gen *g = b->g;
        b->g = NULL;
        if ((uint32_t)b->c->workers != d->conf_workers && d->rt.worker == 0)
            lr_warn("reload: workers %d in the config; %u keep running until a restart",
                    b->c->workers, d->conf_workers);
        gen_commit(d, b->c, g, b->s, b->access, b->hup);
        b->s = NULL; /* the generation owns it */
        b->access = NULL; /* the log's now */
        lr_info("%sreload: generation %llu serving; %u connections on older generations",
                w, (unsigned long long)d->rt.gen->id, d->rt.net.nconns);
        lr_scripts->reload_hook(d->rt.gen);
        /* the workers reload only what the main thread accepted */
        if (d->rt.worker == 0)
            send_cmd(d, LR_CMD_RELOAD);
    }
    build_free(b);
    if (d->reload_again) {
        d->reload_again = 0;
        reload_start(d);
    }
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct lr_daemon *d = w->data;
    d->hup_pending = 1; /* the build that takes it moves the control plane */
    reload_start(d);
}

/* Live users changed (live.c): the next generation takes them in. */
static void live_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    lr_info("live users changed: building the next generation (the config is read again)");
    reload_start(w->data);
}

/* (the listeners were logged when the generation was installed) */
void lr_daemon_describe(struct lr_daemon *d)
{
    if (d->conf_workers > 1)
        lr_info("%u workers", d->conf_workers);
}

static void dump(struct lr_daemon *d)
{
    char t[32];
    if (d->conf_workers > 1 || d->main)
        lr_info("%s%u connections, %llu accepted", wtag(d, t, sizeof(t)),
                d->rt.net.nconns, (unsigned long long)d->accepted);
    lr_dispatch_list(&d->rt.net, wtag(d, t, sizeof(t)));
    if (lr_log_level <= LR_LOG_DEBUG)
        lr_conn_dump(&d->rt.net); /* the buffers and flags, for debugging */
}

static void dump_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct lr_daemon *d = w->data;
    struct lr_replay_stats rs;
    lr_replay_stats(d->rt.replay, &rs);
    lr_info("%zu connections, %zu buffers in use", lr_conn_count(),
            lr_buf_in_use());
    lr_info("replay state: %llu authids, %llu sessions, %llu kB; refused at the cap %llu, "
            "at a user's share %llu",
            (unsigned long long)rs.authids, (unsigned long long)rs.sessions,
            (unsigned long long)(rs.bytes + 1023) / 1024,
            (unsigned long long)rs.full_refusals, (unsigned long long)rs.owner_refusals);
    dump(d);
    send_cmd(d, LR_CMD_DUMP);
}

/* The idle trim.  glibc hands freed memory back to the system only from
 * the top of a heap: after a burst of connections, the pages their
 * allocations (buffers, cipher contexts, states) left free in the middle
 * of this thread's arena stay resident for good.  So when a worker's last
 * connection closes, malloc_trim returns every free page (what is in use
 * is not touched): an idle server holds what it uses, not its past peak.
 * At most once a second per worker, and only after connections came and
 * went; a trim due sooner waits on a timer. */
#define IDLE_TRIM_MIN_S 1.0

static void idle_trim(struct lr_daemon *d)
{
    struct ev_loop *loop = d->rt.net.loop;
    if (d->rt.net.nconns || d->rt.net.opened == d->trim_opened)
        return;
    double wait = d->trim_last + IDLE_TRIM_MIN_S - ev_now(loop);
    if (wait > 0) {
        if (!ev_is_active(&d->trim_w)) {
            ev_timer_set(&d->trim_w, wait, 0.);
            ev_timer_start(loop, &d->trim_w);
        }
        return;
    }
    d->trim_opened = d->rt.net.opened;
    malloc_trim(0);
    ev_now_update(loop);
    d->trim_last = ev_now(loop);
}

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    idle_trim(w->data);
}

static void kick_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct lr_daemon *d = w->data;
    lr_conn_run_kicks(&d->rt.net);
    if (!d->rt.net.nconns && d->rt.net.opened != d->trim_opened)
        idle_trim(d);
}

/* Watchers every worker's loop has. */
static int loop_setup(struct lr_daemon *d)
{
    struct ev_loop *loop = d->rt.net.loop;
    if (lr_dns_init(loop) != 0) {
        lr_error("cannot initialise the resolver");
        return -1;
    }
    ev_timer_init(&d->tick, tick_cb, 1., 1.);
    d->tick.data = d;
    ev_timer_start(loop, &d->tick);
    ev_timer_init(&d->rt.dyn_fill_w, lr_dyn_fill_cb, 0., 0.01);
    d->rt.dyn_fill_w.data = d;
    ev_timer_init(&d->trim_w, trim_cb, 0., 0.);
    d->trim_w.data = d;
    d->trim_opened = 0;
    d->trim_last = -IDLE_TRIM_MIN_S;
    ev_prepare_init(&d->rt.net.kick_w, kick_cb);
    d->rt.net.kick_w.data = d;
    ev_prepare_start(loop, &d->rt.net.kick_w);
    ev_unref(loop);
    ev_async_init(&d->built_w, built_cb);
    d->built_w.data = d;
    ev_async_start(loop, &d->built_w);
    ev_unref(loop);
    if (d->rt.worker == 0) {
        ev_async_init(&d->live_w, live_cb);
        d->live_w.data = d;
        ev_async_start(loop, &d->live_w);
        ev_unref(loop);
        lr_live_set_main(d);
    }
    reaper_start();
    return 0;
}

static void loop_finish(struct lr_daemon *d)
{
    if (d->build) {
        /* a reload still building: wait for it, install nothing */
        pthread_join(d->build->thread, NULL);
        build_free(d->build);
        d->build = NULL;
    }
    for (uint32_t i = 0; d->rt.gen && i < d->rt.gen->nib; i++)
        if (lr_tunnel_is_type(d->rt.gen->ib[i].type))
            lr_tunnel_release(&d->rt.gen->ib[i], 1);
    while (d->rt.net.conns)
        lr_conn_close(d->rt.net.conns, "shutdown");
    lr_loop_close_lingering(&d->rt.net);
    lr_metrics_stop(d->metrics);
    d->metrics = NULL;
    lr_v2api_stop(d->api);
    d->api = NULL;
    if (d->rt.worker == 0) {
        lr_fleet_stop();
        lr_ctl_set_cluster(NULL);
    }
    lr_cluster_free(d->rt.cluster);
    d->rt.cluster = NULL;
    if (d->rt.worker == 0) {
        lr_live_set_main(NULL);
        lr_ctl_shutdown();
    }
    lr_dns_shutdown();
}

/* --- worker threads ------------------------------------------------- */

static void cmd_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct lr_daemon *d = w->data;
    uint32_t cmds = atomic_exchange(&d->cmds, 0);
    if (cmds & LR_CMD_STOP_NOW) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if ((cmds & LR_CMD_STOP) && !d->stopping)
        begin_stop(d, 0);
    if ((cmds & LR_CMD_RELOAD) && !d->stopping)
        reload_start(d);
    if (cmds & LR_CMD_DUMP)
        dump(d);
}

/* Start-up handshake: the main thread starts every worker, then waits for
 * each to be serving (or to have failed). */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;

static void started(struct lr_daemon *w, int rc)
{
    pthread_mutex_lock(&start_lock);
    w->start_rc = rc;
    pthread_cond_broadcast(&start_cond);
    pthread_mutex_unlock(&start_lock);
}

static void *worker_main(void *arg)
{
    struct lr_daemon *d = arg;
    char err[1024], t[32];
    struct lr_conf *c = lr_conf_new();
    struct lr_script *s = lr_scripts->create(d);
    if (!c || !s) {
        lr_error("%sout of memory", wtag(d, t, sizeof(t)));
        goto fail;
    }
    if (lr_scripts->load_config(s, d->config_path, c, 0, err, sizeof(err)) != 0 ||
        lr_daemon_commit(d, c, s, 0, err, sizeof(err)) != 0) {
        lr_error("%s%s", wtag(d, t, sizeof(t)), err);
        goto fail;
    }
    s = NULL; /* the generation owns it */
    lr_conf_free(c);
    c = NULL;
    if (loop_setup(d) != 0)
        goto fail;
    ev_async_init(&d->cmd_w, cmd_cb);
    d->cmd_w.data = d;
    ev_async_start(d->rt.net.loop, &d->cmd_w);
    started(d, 0);
    ev_run(d->rt.net.loop, 0);
    loop_finish(d);
    goto out;
fail:
    if (s)
        lr_scripts->destroy(s);
    lr_conf_free(c);
    started(d, -1);
out:
    if (d->rt.gen) {
        struct lr_gen *g = d->rt.gen;
        d->rt.gen = NULL;
        g->rt = NULL;
        lr_gen_unref(g);
    }
    lr_buf_trim();
    lr_cipher_thread_end();
    lr_kdf_thread_end();
    lr_hdr_thread_end();
    return NULL;
}

static void worker_free(struct lr_daemon *w)
{
    if (!w)
        return;
    lr_wipe(w->rt.dyn_secret, sizeof(w->rt.dyn_secret));
    ev_loop_destroy(w->rt.net.loop);
    free(w->config_path);
    free(w);
}

/* Starts workers 1..conf_workers-1; -1 (and none left running) if one
 * cannot start. */
static int start_workers(struct lr_daemon *d)
{
    uint32_t n = d->conf_workers;
    d->workers = calloc(n, sizeof(*d->workers));
    if (!d->workers)
        return -1;
    d->workers[0] = d;
    d->rt.net.id_step = n;
    /* only the main thread takes signals */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (uint32_t i = 1; i < n && rc == 0; i++) {
        struct lr_daemon *w = calloc(1, sizeof(*w));
        if (!w || !(w->rt.net.loop = ev_loop_new(EVFLAG_AUTO))) {
            free(w);
            rc = -1;
            break;
        }
        w->rt.worker = i;
        w->main = d;
        w->rt.replay = d->rt.replay;
        w->grace_seconds = d->grace_seconds;
        memcpy(w->rt.dyn_secret, d->rt.dyn_secret, sizeof(w->rt.dyn_secret));
        w->rt.dyn_t0 = d->rt.dyn_t0;
        w->rt.net.id_step = n;
        w->rt.net.stats_worker = i;
        w->rt.net.owner = &lr_dispatch_owner;
        w->rt.release = gen_release;
        w->rt.net.next_conn_id = i;
        w->start_rc = 1; /* starting */
        if (d->config_path && !(w->config_path = strdup(d->config_path))) {
            worker_free(w);
            rc = -1;
            break;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            lr_error("cannot start worker %u: %s", i, strerror(errno));
            worker_free(w);
            rc = -1;
            break;
        }
        d->workers[i] = w;
        d->nworkers = i + 1;
    }
    /* they load the config at the same time; wait for every one */
    pthread_mutex_lock(&start_lock);
    for (uint32_t i = 1; i < d->nworkers; i++) {
        while (d->workers[i]->start_rc == 1)
            pthread_cond_wait(&start_cond, &start_lock);
        if (d->workers[i]->start_rc != 0)
            rc = -1;
    }
    pthread_mutex_unlock(&start_lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Tells the workers to stop (at once with `now`) and waits for them. */
static void join_workers(struct lr_daemon *d, int now)
{
    if (d->nworkers > 1)
        send_cmd(d, now ? LR_CMD_STOP_NOW : LR_CMD_STOP);
    for (uint32_t i = 1; i < d->nworkers; i++) {
        pthread_join(d->workers[i]->thread, NULL);
        worker_free(d->workers[i]);
        d->workers[i] = NULL;
    }
    d->nworkers = 1;
}

int lr_daemon_run(struct lr_daemon *d)
{
    struct ev_loop *loop = d->rt.net.loop;
    signal(SIGPIPE, SIG_IGN);
    if (loop_setup(d) != 0)
        return 1;
    ev_signal_init(&d->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&d->sigint, signal_cb, SIGINT);
    d->sigterm.data = d->sigint.data = d;
    ev_signal_start(loop, &d->sigterm);
    ev_signal_start(loop, &d->sigint);
    ev_signal_init(&d->sighup, hup_cb, SIGHUP);
    d->sighup.data = d;
    ev_signal_start(loop, &d->sighup);
    ev_signal_init(&d->sigusr1, dump_cb, SIGUSR1);
    d->sigusr1.data = d;
    ev_signal_start(loop, &d->sigusr1);
    /* main() holds these during start-up; the watchers take them now
     * (one that came meanwhile is delivered here, and handled) */
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGHUP);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &held, NULL);
    if (d->conf_workers > 1 && start_workers(d) != 0) {
        lr_error("not all %u workers started; stopping", d->conf_workers);
        join_workers(d, 1);
        loop_finish(d);
        return 1;
    }
    ev_run(loop, 0);
    /* the main loop ended (its connections done, or the grace over, or a
     * second signal): the workers get the rest of their own grace */
    join_workers(d, 0);
    loop_finish(d);
    lr_info("stopped");
    return 0;
}

void lr_daemon_free(struct lr_daemon *d)
{
    if (!d)
        return;
    join_workers(d, 1);
    free(d->workers);
    if (d->rt.gen) {
        struct lr_gen *g = d->rt.gen;
        d->rt.gen = NULL;
        g->rt = NULL;
        lr_gen_unref(g);
    }
    reaper_stop();
    lr_replay_free(d->rt.replay);
    free(d->config_path);
    lr_wipe(d->rt.dyn_secret, sizeof(d->rt.dyn_secret));
    free(d);
    lr_buf_trim();
}
