/*
 * The control plane's C half (control.h): hosts, and the timers and HTTP
 * requests their coroutines wait on.  The Lua half (lua/luaray/control.lua)
 * keeps the coroutines, gives each timer or request a number, and is told
 * of every outcome by an event (struct lr_ctl_event, api.h), delivered
 * through lr_scripts->control from the loop only: a timer's callback, a
 * request's completion, or the "kick" timer that attaches new hosts and
 * lets go of generations no host needs any more.  Nothing here calls Lua
 * from inside an lr_ctl_* call (style.md 4), so a coroutine that starts a
 * request and fails at once hears it as a return value, never as an event
 * in the middle of its own call.
 *
 * Ownership: an object (timer or request) is freed before its event is
 * delivered, so whatever the event's Lua does (cancel, start another with
 * the same number) meets a clean table.  A host holds a reference on its
 * generation while it is the control host or has objects; references are
 * dropped by the kick timer only, so no unref (which may free the host
 * through gen_release -> lr_ctl_forget) ever happens under a caller that
 * still holds the host.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "daemon/control.h"
#include "dispatch/model.h"
#include "net/cluster.h"
#include "net/httpc.h"
#include "script/bridge.h"

#define HTTP_MAX 64
/* timers, sleeps and requests pending at once (all hosts): a runaway
 * spawn loop meets this rather than the memory of the process */
#define OBJ_MAX 16384
#define BODY_LIMIT (64.0 * 1024 * 1024)

enum { OBJ_TIMER = 1, OBJ_HTTP = 2, OBJ_REDIS = 3 };

struct host {
    struct host *next;
    uint32_t id;
    struct lr_gen *g;
    int control;
    int held;                    /* holds a reference on g */
    int attach_pending;          /* LR_CTL_ATTACH not delivered yet */
    int attached;
};

struct obj {
    struct obj *next;
    struct host *h;
    uint32_t id;
    int kind;
    ev_timer t;
    struct lr_httpc *req;
    struct redis_rq *rq;         /* luaray.cluster.call waiting for Redis */
};

static struct {
    struct ev_loop *loop;
    pthread_t main;
    int on;
    struct host *hosts;
    struct obj *objs;
    uint32_t nobjs;
    uint32_t next_host;
    uint32_t nhttp;
    ev_timer kick;
} ctl;

static int on_main(void)
{
    return ctl.on && pthread_equal(pthread_self(), ctl.main);
}

static struct host *host_by_id(uint32_t id)
{
    for (struct host *h = ctl.hosts; h; h = h->next)
        if (h->id == id)
            return h;
    return NULL;
}

static void kick_soon(void)
{
    if (!ev_is_active(&ctl.kick)) {
        ev_timer_set(&ctl.kick, 0., 0.);
        ev_timer_start(ctl.loop, &ctl.kick);
    }
}

static int host_busy(const struct host *h)
{
    for (struct obj *o = ctl.objs; o; o = o->next)
        if (o->h == h)
            return 1;
    return 0;
}

static void hold(struct host *h)
{
    if (!h->held && h->g) {
        lr_gen_ref(h->g);
        h->held = 1;
    }
}

static void redis_forget(struct obj *o);

/* Unlinks an object and frees it; a pending request is cancelled. */
static void obj_free(struct obj *o)
{
    for (struct obj **p = &ctl.objs; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            break;
        }
    ev_timer_stop(ctl.loop, &o->t);
    if (o->req) {
        lr_httpc_cancel(o->req);
        ctl.nhttp--;
    }
    redis_forget(o);
    free(o);
    ctl.nobjs--;
    kick_soon();
}

static struct obj *obj_find(const struct host *h, uint32_t id);

/* A new object of host h (not linked yet; one with the same id is freed
 * first), or NULL with err set. */
static struct obj *obj_new(struct host *h, uint32_t id, int kind, char *err, size_t errlen)
{
    struct obj *o = obj_find(h, id);
    if (o)
        obj_free(o);
    if (ctl.nobjs >= OBJ_MAX) {
        snprintf(err, errlen, "too many timers, sleeps and requests pending (%d at most)", OBJ_MAX);
        return NULL;
    }
    if (!(o = calloc(1, sizeof(*o)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->h = h;
    o->id = id;
    o->kind = kind;
    ctl.nobjs++;
    return o;
}

static struct obj *obj_find(const struct host *h, uint32_t id)
{
    for (struct obj *o = ctl.objs; o; o = o->next)
        if (o->h == h && o->id == id)
            return o;
    return NULL;
}

static void host_cancel_all(struct host *h)
{
    for (struct obj *o = ctl.objs, *next; o; o = next) {
        next = o->next;
        if (o->h == h)
            obj_free(o);
    }
}

/* runs Lua: hands an event to the host's state; a run that fails in C
 * (its budget, or an error in the event's own Lua) is told to that state
 * as LR_CTL_ABORT, so it can drop the coroutine it was running. */
static void deliver(struct host *h, struct lr_ctl_event *ev)
{
    if (!h->g || !h->g->script || !lr_scripts || !lr_scripts->control)
        return;
    char err[1024];
    ev->host = h->id;
    if (lr_scripts->control(h->g->script, ev, err, sizeof(err)) == 0)
        return;
    struct lr_ctl_event ab;
    memset(&ab, 0, sizeof(ab));
    ab.kind = LR_CTL_ABORT;
    ab.host = h->id;
    ab.err = err;
    char err2[1024];
    if (lr_scripts->control(h->g->script, &ab, err2, sizeof(err2)) != 0)
        lr_error("control: %s (and then: %s)", err, err2);
}

/* The kick: attach new hosts, then let go of what no host needs. */
static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    for (int again = 1; again;) {
        again = 0;
        for (struct host *h = ctl.hosts; h; h = h->next) {
            if (!h->attach_pending)
                continue;
            h->attach_pending = 0;
            h->attached = 1;
            struct lr_ctl_event ev;
            memset(&ev, 0, sizeof(ev));
            ev.kind = LR_CTL_ATTACH;
            ev.control = h->control;
            ev.generation = h->g ? h->g->id : 0;
            deliver(h, &ev);
            again = 1; /* the list may have changed meanwhile */
            break;
        }
    }
    for (int again = 1; again;) {
        again = 0;
        for (struct host *h = ctl.hosts; h; h = h->next) {
            if (h->held && !h->control && !host_busy(h)) {
                h->held = 0;
                /* may free the generation: gen_release -> lr_ctl_forget(h) */
                lr_gen_unref(h->g);
                again = 1;
                break;
            }
        }
    }
}

static void host_free(struct host *h)
{
    host_cancel_all(h);
    for (struct host **p = &ctl.hosts; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            break;
        }
    free(h);
}

void lr_ctl_installed(struct ev_loop *loop, struct lr_gen *g, int config_load)
{
    if (!g->script)
        return;
    if (!ctl.on) {
        ctl.loop = loop;
        ctl.main = pthread_self();
        ctl.on = 1;
        ev_init(&ctl.kick, kick_cb);
    }
    struct host *nh = calloc(1, sizeof(*nh));
    if (!nh) {
        lr_error("control: out of memory; generation %llu runs no timers",
                 (unsigned long long)g->id);
        return;
    }
    if (config_load) {
        /* a config load: every other host stops (timers, sleeps, requests
         * and coroutines) */
        for (struct host *h = ctl.hosts; h; h = h->next) {
            host_cancel_all(h);
            h->control = 0;
            if (h->attached) {
                struct lr_ctl_event ev;
                memset(&ev, 0, sizeof(ev));
                ev.kind = LR_CTL_STOP;
                deliver(h, &ev);
                /* whatever its STOP handler started is dropped too */
                host_cancel_all(h);
            }
            h->attach_pending = 0;
        }
    }
    nh->id = ++ctl.next_host;
    nh->g = g;
    nh->control = config_load;
    nh->attach_pending = 1;
    if (config_load)
        hold(nh);
    nh->next = ctl.hosts;
    ctl.hosts = nh;
    kick_soon();
}

void lr_ctl_forget(struct lr_gen *g)
{
    if (!on_main())
        return;
    for (struct host *h = ctl.hosts; h; h = h->next)
        if (h->g == g) {
            h->g = NULL;
            h->held = 0;
            host_free(h);
            return;
        }
}

void lr_ctl_shutdown(void)
{
    if (!on_main())
        return;
    while (ctl.objs)
        obj_free(ctl.objs);
    ev_timer_stop(ctl.loop, &ctl.kick);
    while (ctl.hosts) {
        struct host *h = ctl.hosts;
        ctl.hosts = h->next;
        if (h->held && h->g)
            lr_gen_unref(h->g); /* lr_ctl_forget no longer finds it */
        free(h);
    }
    lr_httpc_shutdown();
    ctl.on = 0;
}

/* ------------------------------------------------------------ api.h */

static struct host *api_host(uint32_t id, char *err, size_t errlen)
{
    if (!on_main()) {
        if (err)
            snprintf(err, errlen, "control coroutines run on the main thread only");
        return NULL;
    }
    struct host *h = host_by_id(id);
    if (!h || !h->g) {
        if (err)
            snprintf(err, errlen, "this Lua state is no longer a control host (stopped by a reload)");
        return NULL;
    }
    return h;
}

static void obj_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct obj *o = (struct obj *)((char *)w - offsetof(struct obj, t));
    struct host *h = o->h;
    struct lr_ctl_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = LR_CTL_TIMER;
    ev.id = o->id;
    if (o->t.repeat <= 0)
        obj_free(o);
    deliver(h, &ev);
}

LR_API int lr_ctl_timer(uint32_t host, uint32_t id, double after, double every, char *err,
                        size_t errlen)
{
    struct host *h = api_host(host, err, errlen);
    if (!h)
        return -1;
    if (!(after >= 0 && after <= 1e8) || !(every >= 0 && every <= 1e8)) {
        snprintf(err, errlen, "timer: seconds out of range");
        return -1;
    }
    struct obj *o = obj_new(h, id, OBJ_TIMER, err, errlen);
    if (!o)
        return -1;
    ev_timer_init(&o->t, obj_timer_cb, after, every);
    ev_timer_start(ctl.loop, &o->t);
    o->next = ctl.objs;
    ctl.objs = o;
    hold(h);
    return 0;
}

LR_API int lr_ctl_cancel(uint32_t host, uint32_t id)
{
    struct host *h = api_host(host, NULL, 0);
    struct obj *o = h ? obj_find(h, id) : NULL;
    if (o)
        obj_free(o);
    return 0;
}

static void http_done(void *ud, const struct lr_httpc_result *r)
{
    struct obj *o = ud;
    struct host *h = o->h;
    struct lr_ctl_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = LR_CTL_HTTP;
    ev.id = o->id;
    ev.err = r->err;
    ev.status = r->status;
    ev.fields = r->fields;
    ev.fields_len = r->fields_len;
    ev.body = r->body;
    ev.body_len = r->body_len;
    /* the request frees itself after this callback */
    o->req = NULL;
    ctl.nhttp--;
    obj_free(o);
    deliver(h, &ev);
}

LR_API int lr_ctl_http_start(uint32_t host, uint32_t id, const struct lr_ctl_http *r,
                             char *err, size_t errlen)
{
    struct host *h = api_host(host, err, errlen);
    if (!h)
        return -1;
    if (ctl.nhttp >= HTTP_MAX) {
        snprintf(err, errlen, "too many requests in flight (%d at most)", HTTP_MAX);
        return -1;
    }
    if (!(r->max_body >= 0 && r->max_body <= BODY_LIMIT)) {
        snprintf(err, errlen, "max_body: 0..%.0f bytes", BODY_LIMIT);
        return -1;
    }
    struct obj *o = obj_new(h, id, OBJ_HTTP, err, errlen);
    if (!o)
        return -1;
    ev_init(&o->t, obj_timer_cb); /* unused, stopped by obj_free */
    struct lr_httpc_opts ho = {
        .method = r->method, .url = r->url, .headers = r->headers,
        .headers_len = r->headers_len, .body = r->body, .body_len = r->body_len,
        .timeout = r->timeout, .max_body = (uint64_t)r->max_body,
        .insecure = r->insecure, .ca = r->ca,
    };
    if (!(o->req = lr_httpc_start(ctl.loop, &ho, http_done, o, err, errlen))) {
        free(o);
        ctl.nobjs--;
        return -1;
    }
    ctl.nhttp++;
    o->next = ctl.objs;
    ctl.objs = o;
    hold(h);
    return 0;
}

LR_API uint32_t lr_ctl_http_count(void)
{
    return ctl.nhttp;
}

LR_API uint32_t lr_ctl_http_max(void)
{
    return HTTP_MAX;
}

LR_API void lr_ctl_log(int32_t level, const char *msg)
{
    if (level < LR_LOG_DEBUG || level > LR_LOG_ERROR)
        level = LR_LOG_INFO;
    lr_log(level, "%s", msg ? msg : "");
}

LR_API double lr_ctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ luaray.cluster.call
 *
 * A command goes out on worker 0's cluster client; its answer comes back
 * through a redis_rq that outlives the object if the object goes first
 * (a cancel, a SIGHUP: hiredis cannot take a command back).  A failure
 * (no answer in time, the connection gone, the client freed by a reload)
 * is delivered from a zero timer, so no Lua runs inside hiredis or the
 * reload that freed the client. */
#define REDIS_MAX 256

struct redis_rq {
    struct obj *o;
};

static struct lr_cluster *ctl_cluster;
static uint32_t ctl_nredis;

void lr_ctl_set_cluster(struct lr_cluster *cl)
{
    ctl_cluster = cl;
}

static void redis_forget(struct obj *o)
{
    if (!o->rq)
        return;
    o->rq->o = NULL;
    o->rq = NULL;
    ctl_nredis--;
}

static void redis_event(struct obj *o, const char *err, const char *body, size_t len)
{
    struct host *h = o->h;
    struct lr_ctl_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = LR_CTL_REDIS;
    ev.id = o->id;
    ev.err = err;
    ev.body = body;
    ev.body_len = len;
    obj_free(o);
    deliver(h, &ev);
}

static void redis_fail_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct obj *o = (struct obj *)((char *)w - offsetof(struct obj, t));
    redis_event(o, "no answer from redis in time, or redis unreachable", NULL, 0);
}

static void redis_done(void *ud, void *reply)
{
    struct redis_rq *rq = ud;
    struct obj *o = rq->o;
    free(rq);
    if (!o)
        return;   /* cancelled meanwhile */
    o->rq = NULL;
    ctl_nredis--;
    const redisReply *r = reply;
    if (!r) {
        ev_timer_init(&o->t, redis_fail_cb, 0., 0.);
        ev_timer_start(ctl.loop, &o->t);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char e[512];
        snprintf(e, sizeof(e), "redis: %.480s", r->str);
        redis_event(o, e, NULL, 0);
        return;
    }
    size_t n = 0;
    char *b = lr_cluster_encode(r, &n);
    redis_event(o, b ? NULL : "redis reply too large or too deep", b, n);
    free(b);
}

LR_API int lr_ctl_redis_start(uint32_t host, uint32_t id, int32_t argc, const char **argv,
                              const size_t *argvlen, char *err, size_t errlen)
{
    struct host *h = api_host(host, err, errlen);
    if (!h)
        return -1;
    if (!ctl_cluster) {
        snprintf(err, errlen, "luaray.cluster is not configured");
        return -1;
    }
    if (argc < 1 || argc > 1024) {
        snprintf(err, errlen, "1 to 1024 arguments");
        return -1;
    }
    if (ctl_nredis >= REDIS_MAX) {
        snprintf(err, errlen, "too many calls in flight (%d at most)", REDIS_MAX);
        return -1;
    }
    struct obj *o = obj_new(h, id, OBJ_REDIS, err, errlen);
    if (!o)
        return -1;
    ev_init(&o->t, obj_timer_cb);
    struct redis_rq *rq = calloc(1, sizeof(*rq));
    double t = lr_cluster_settings(ctl_cluster)->timeout_ms / 1000.0;
    if (!rq || lr_cluster_command(ctl_cluster, argc, argv, argvlen, t > 2.0 ? t : 2.0,
                                  redis_done, rq) != 0) {
        free(rq);
        free(o);
        ctl.nobjs--;
        snprintf(err, errlen, "redis unreachable");
        return -1;
    }
    rq->o = o;
    o->rq = rq;
    ctl_nredis++;
    o->next = ctl.objs;
    ctl.objs = o;
    hold(h);
    return 0;
}
