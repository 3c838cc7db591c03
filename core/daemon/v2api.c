/*
 * luaray.api's listener and connections (v2api.h), on the main thread's
 * loop, as luaray.metrics serves on it.  Each connection is an
 * lr_v2api_sess fed from its socket.
 *
 * Bounds: at most MAX_CONNS connections (a new one pushes out the oldest
 * idle one, else the oldest); the client preface and SETTINGS within
 * HANDSHAKE_TIMEOUT; a connection with a request open must make progress
 * (bytes in or out) every STALL_TIMEOUT, one with none open is told
 * GOAWAY after IDLE_TIMEOUT (grpc-go clients reconnect on their next
 * call).  A client that does not read its replies is not read from until
 * it does.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/stats.h"
#include "daemon/daemon.h"
#include "daemon/live.h"
#include "daemon/v2api.h"
#include "net/sock.h"

#define MAX_CONNS 64
#define HANDSHAKE_TIMEOUT 10.0
#define STALL_TIMEOUT 30.0
#define IDLE_TIMEOUT 300.0
#define CHECK_EVERY 5.0          /* the timeouts are checked this often */
#define READ_CHUNK 16384

struct conn {
    ev_io io;                    /* first: the watcher's address is the connection's */
    ev_timer timer;
    struct lr_v2api *a;
    struct conn *prev, *next;    /* newest first */
    struct lr_v2api_sess *sess;
    char peer[64];
    ev_tstamp last;              /* bytes last moved */
    int goaway;                  /* told, closing once it is over */
};

struct lr_v2api {
    struct ev_loop *loop;
    struct lr_daemon *d;
    ev_io accept_w;
    int fd;
    char *host;
    uint16_t port;
    struct conn *conns;
    uint32_t nconns;
    struct lr_v2api_env env;
};

/* ------------------------------------------------------------ the daemon's side */

static int env_live_add(void *ud, const char *tag, const uint8_t id[16], const char *email,
                        uint32_t level, uint32_t alter_id, char *err, size_t errlen)
{
    struct lr_v2api *a = ud;
    return lr_live_add(a->d, tag, id, email, level, alter_id, err, errlen);
}

static int env_live_remove(void *ud, const char *tag, const char *email, char *err,
                           size_t errlen)
{
    struct lr_v2api *a = ud;
    return lr_live_remove(a->d, tag, email, err, errlen);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* when the process started serving its API (the first lr_v2api_start) */
static double t0;

static void open_conns_fn(void *ud, const char *name, int kind, uint64_t value)
{
    if (strncmp(name, "luaray_connections_open{", 24) == 0)
        *(int64_t *)ud += (int64_t)value; /* a gauge: a sum of +/- deltas */
}

/* GetSysStats.  v2ray's fields are Go runtime figures; luaray has no Go
 * runtime, so each is what comes closest, or 0:
 *   Uptime        seconds since the API first started (v2ray: since its
 *                 stats service started, i.e. the process);
 *   NumGoroutine  client connections open over every inbound and worker
 *                 (v2ray's goroutines grow with its connections);
 *   Alloc         bytes malloc has handed out and not had back (mallinfo2:
 *                 uordblks + hblkhd, every arena); when another malloc is
 *                 in (a preloaded one, a sanitizer's) and mallinfo2 says
 *                 0, the data segment's size (/proc/self/statm);
 *   Sys           resident memory of the process (/proc/self/statm), what
 *                 it holds from the OS;
 *   NumGC, TotalAlloc, Mallocs, Frees, LiveObjects, PauseTotalNs: 0 (no
 *                 garbage collector, and malloc keeps no such counts). */
static void env_sys(void *ud, struct lr_v2api_sys *out)
{
    memset(out, 0, sizeof(*out));
    double up = mono() - t0;
    out->uptime = up > 0 ? (uint32_t)up : 0;
    int64_t open = 0;
    lr_stats_each(LR_STAT_GAUGE, "luaray_connections_open{", 0, open_conns_fn, &open);
    out->num_goroutine = open > 0 ? (uint32_t)open : 0;
    struct mallinfo2 mi = mallinfo2();
    out->alloc = (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
    /* pages: size resident shared text lib data dt */
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, rss = 0, shared = 0, text = 0, lib = 0, data = 0;
    if (f) {
        if (fscanf(f, "%llu %llu %llu %llu %llu %llu", &size, &rss, &shared, &text, &lib,
                   &data) != 6)
            rss = data = 0;
        fclose(f);
    }
    uint64_t page = (uint64_t)(sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096);
    out->sys = rss * page;
    if (!out->alloc)
        out->alloc = data * page;
}

/* ------------------------------------------------------------ connections */

static void conn_free(struct conn *c)
{
    struct lr_v2api *a = c->a;
    ev_io_stop(a->loop, &c->io);
    ev_timer_stop(a->loop, &c->timer);
    /* what the client still sends is read first: the close is then a
     * FIN, not an RST that could cut the last reply short */
    char sink[512];
    for (int i = 0; i < 4 && recv(c->io.fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    close(c->io.fd);
    lr_v2api_sess_free(c->sess);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    free(c);
}

/* The events the connection waits for now. */
static void conn_watch(struct conn *c)
{
    int ev = 0;
    if (lr_v2api_sess_backlog(c->sess) < 65536)
        ev |= EV_READ;
    if (lr_v2api_sess_backlog(c->sess))
        ev |= EV_WRITE;
    if ((c->io.events & (EV_READ | EV_WRITE)) != ev) {
        ev_io_stop(c->a->loop, &c->io);
        ev_io_set(&c->io, c->io.fd, ev);
        ev_io_start(c->a->loop, &c->io);
    }
}

/* Writes what is due: 0, or -1 when the connection is gone. */
static int conn_flush(struct conn *c)
{
    for (;;) {
        size_t n;
        const uint8_t *p = lr_v2api_sess_output(c->sess, &n);
        if (!n)
            break;
        ssize_t k = send(c->io.fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            lr_v2api_sess_sent(c->sess, (size_t)k);
            c->last = ev_now(c->a->loop);
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        lr_debug("api: %s: %s; closed", c->peer, k < 0 ? strerror(errno) : "write failed");
        return -1;
    }
    if (lr_v2api_sess_over(c->sess)) {
        if (lr_v2api_sess_backlog(c->sess) == 0)
            shutdown(c->io.fd, SHUT_WR);
        return -1;
    }
    conn_watch(c);
    return 0;
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    if (revents & EV_READ) {
        uint8_t buf[READ_CHUNK];
        for (int i = 0; i < 16 && lr_v2api_sess_backlog(c->sess) < 65536; i++) {
            ssize_t n = recv(w->fd, buf, sizeof(buf), 0);
            if (n > 0) {
                c->last = ev_now(loop);
                if (lr_v2api_sess_input(c->sess, buf, (size_t)n) != 0) {
                    conn_free(c); /* logged by the session */
                    return;
                }
                if (conn_flush(c) != 0) {
                    conn_free(c);
                    return;
                }
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            /* the client is gone (or closed its side: a gRPC client
             * reads its replies on an open connection) */
            if (n == 0 && !lr_v2api_sess_ready(c->sess))
                lr_info("api: %s: closed before its HTTP/2 preface", c->peer);
            conn_free(c);
            return;
        }
    }
    if (conn_flush(c) != 0)
        conn_free(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    ev_tstamp now = ev_now(loop), idle = now - c->last;
    if (!lr_v2api_sess_ready(c->sess)) {
        lr_info("api: %s: no HTTP/2 preface within %.0f s; closed", c->peer,
                HANDSHAKE_TIMEOUT);
        conn_free(c);
        return;
    }
    int open = !lr_v2api_sess_idle(c->sess);
    if ((open || c->goaway) && idle >= STALL_TIMEOUT) {
        lr_info("api: %s: %s for %.0f s; closed", c->peer,
                c->goaway ? "no end after GOAWAY" : "a request stalled", idle);
        conn_free(c);
    } else if (!open && !c->goaway && idle >= IDLE_TIMEOUT) {
        /* idle: GOAWAY, then the close once it is out */
        lr_debug("api: %s: idle for %.0f s; GOAWAY", c->peer, idle);
        c->goaway = 1;
        c->last = now;
        lr_v2api_sess_goaway(c->sess);
        if (conn_flush(c) != 0)
            conn_free(c);
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_v2api *a = (struct lr_v2api *)((char *)w - offsetof(struct lr_v2api, accept_w));
    for (int i = 0; i < 16; i++) {
        struct lr_addr pa = {.len = sizeof(pa.ss)};
        int fd = accept4(a->fd, (struct sockaddr *)&pa.ss, &pa.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (a->nconns >= MAX_CONNS) {
            /* full: the oldest idle connection goes, else the oldest (a
             * client that opens connections and sends nothing cannot keep
             * an operator out) */
            struct conn *old = NULL, *any = NULL;
            for (struct conn *c = a->conns; c; c = c->next) {
                any = c;
                if (lr_v2api_sess_idle(c->sess) || !lr_v2api_sess_ready(c->sess))
                    old = c;
            }
            old = old ? old : any;
            lr_info("api: %d connections; %s, the oldest %s, closed", MAX_CONNS, old->peer,
                    old == any ? "one" : "idle one");
            conn_free(old);
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (c)
            lr_addr_str(&pa, c->peer, sizeof(c->peer));
        if (!c || !(c->sess = lr_v2api_sess_new(&a->env, c->peer))) {
            free(c);
            close(fd);
            continue;
        }
        c->a = a;
        c->last = ev_now(loop);
        ev_io_init(&c->io, io_cb, fd, EV_READ);
        ev_timer_init(&c->timer, timer_cb, HANDSHAKE_TIMEOUT, CHECK_EVERY);
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timer);
        c->next = a->conns;
        if (c->next)
            c->next->prev = c;
        a->conns = c;
        a->nconns++;
        /* our SETTINGS go first */
        if (conn_flush(c) != 0)
            conn_free(c);
    }
}

/* ------------------------------------------------------------ the server */

struct lr_v2api *lr_v2api_start(struct ev_loop *loop, struct lr_daemon *d, const char *host,
                                uint16_t port, char *err, size_t errlen)
{
    struct lr_addr addr;
    if (lr_addr_parse(host, port, &addr) != 0) {
        snprintf(err, errlen, "api: cannot use address %s", host);
        return NULL;
    }
    int fd = lr_sock_listen(&addr, SOCK_STREAM, 64);
    if (fd < 0) {
        snprintf(err, errlen, "api: cannot listen on %s:%u: %s", host, port, strerror(-fd));
        return NULL;
    }
    struct lr_v2api *a = calloc(1, sizeof(*a));
    if (!a || !(a->host = strdup(host))) {
        free(a);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (t0 == 0)
        t0 = mono();
    a->loop = loop;
    a->d = d;
    a->fd = fd;
    a->port = port;
    a->env = (struct lr_v2api_env){.ud = a, .live_add = env_live_add,
                                   .live_remove = env_live_remove, .sys = env_sys};
    ev_io_init(&a->accept_w, accept_cb, fd, EV_READ);
    ev_io_start(loop, &a->accept_w);
    char as[80];
    lr_addr_str(&addr, as, sizeof(as));
    lr_info("api: v2ray's gRPC API (StatsService, HandlerService.AlterInbound) on %s", as);
    return a;
}

int lr_v2api_listens_on(const struct lr_v2api *a, const char *host, uint16_t port)
{
    return a && a->port == port && strcmp(a->host, host) == 0;
}

void lr_v2api_stop(struct lr_v2api *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_free(a->conns);
    ev_io_stop(a->loop, &a->accept_w);
    close(a->fd);
    free(a->host);
    free(a);
}
