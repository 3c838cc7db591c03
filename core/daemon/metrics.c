/*
 * luaray.metrics: a small HTTP/1.1 server on the main loop for GET
 * /metrics (Prometheus text exposition 0.0.4).  One request per
 * connection (Connection: close), a request head of at most 8 KiB read
 * within 10 s, at most 64 requests at a time (a new one pushes out the
 * oldest); an optional bearer token compared in constant time.
 *
 * What it shows:
 *   v2ray_traffic_{uplink,downlink}_bytes_total{dimension,target}: the
 *     traffic counters (base/stats.h) under v2ray-exporter's names, so the
 *     dashboards made for v2ray work;
 *   luaray_*: what v2ray lacks (connections open and closed by result per
 *     inbound, handshake failures by reason, reloads, hook errors, policy
 *     refusals, per-user connections and source addresses, build info);
 *   process_*: the standard process series, from /proc.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "base/log.h"
#include "base/stats.h"
#include "daemon/metrics.h"
#include "daemon/metrics_http.h"
#include "dispatch/policy.h"
#include "net/sock.h"

const char *lr_metrics_commit = "unknown";

#define REQ_TIMEOUT 10.0
#define MAX_REQS 64

struct req {
    ev_io io;                    /* first: the watcher's address is the request's */
    ev_timer timer;
    struct lr_metrics *m;
    struct req *prev, *next;
    char in[LR_MH_HEAD_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
};

struct lr_metrics {
    struct ev_loop *loop;
    ev_io accept_w;
    int fd;
    char *host;
    uint16_t port;
    char *token;
    struct req *reqs;
    uint32_t nreqs;
};

/* ------------------------------------------------------------ the text */

struct sb {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sb *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

struct series {
    char *name;
    int kind;
    uint64_t value;
};

struct collect {
    struct series *v;
    size_t n, cap;
    int oom;
};

static void collect_fn(void *ud, const char *name, int kind, uint64_t value)
{
    struct collect *c = ud;
    if (c->oom)
        return;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct series *nv = realloc(c->v, ncap * sizeof(*nv));
        if (!nv) {
            c->oom = 1;
            return;
        }
        c->v = nv;
        c->cap = ncap;
    }
    if (!(c->v[c->n].name = strdup(name))) {
        c->oom = 1;
        return;
    }
    c->v[c->n].kind = kind;
    c->v[c->n++].value = value;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct series *)a)->name, ((const struct series *)b)->name);
}

static const struct {
    const char *family, *help;
} HELP[] = {
    {"luaray_connections_open", "Client connections open, by inbound."},
    {"luaray_connections_total", "Client connections closed, by inbound and result (the reason "
                                 "the access log gives)."},
    {"luaray_handshake_failures_total", "Client connections that ended in their handshake "
                                        "(refused, timed out or cut short), by inbound and reason."},
    {"luaray_reloads_total", "Configuration reloads (SIGHUP), by result."},
    {"luaray_hook_errors_total", "Lua hook calls that failed (an error or over budget), by hook."},
    {"luaray_policy_refusals_total", "Connections a user's policy refused, by reason."},
    {"luaray_cluster_ops_total", "Commands sent to the fleet's Redis (luaray.cluster)."},
    {"luaray_cluster_claims_total", "Handshakes recorded in the fleet's replay filter, by "
                                    "result (new, seen: refused as a replay, timeout or "
                                    "unreachable: decided locally)."},
};

static const char *help_of(const char *family)
{
    for (size_t i = 0; i < sizeof(HELP) / sizeof(HELP[0]); i++)
        if (strcmp(HELP[i].family, family) == 0)
            return HELP[i].help;
    return "A luaray counter.";
}

/* "dim>>>target>>>traffic>>>uplink" -> dim, target, up (1) / down (0) */
static int split_traffic(const char *name, char *dim, size_t dn, char *target, size_t tn,
                         int *up)
{
    const char *a = strstr(name, ">>>");
    const char *t = a ? strstr(a + 3, ">>>traffic>>>") : NULL;
    if (!a || !t)
        return -1;
    const char *dir = t + strlen(">>>traffic>>>");
    if (strcmp(dir, "uplink") == 0)
        *up = 1;
    else if (strcmp(dir, "downlink") == 0)
        *up = 0;
    else
        return -1;
    snprintf(dim, dn, "%.*s", (int)(a - name), name);
    char raw[400];
    snprintf(raw, sizeof(raw), "%.*s", (int)(t - (a + 3)), a + 3);
    lr_stats_label(target, tn, raw);
    return 0;
}

static void traffic(struct sb *b, const struct collect *c)
{
    for (int up = 1; up >= 0; up--) {
        int head = 0;
        for (size_t i = 0; i < c->n; i++) {
            char dim[64], target[600];
            int u;
            if (c->v[i].kind != LR_STAT_TRAFFIC ||
                split_traffic(c->v[i].name, dim, sizeof(dim), target, sizeof(target), &u) ||
                u != up)
                continue;
            const char *fam = up ? "v2ray_traffic_uplink_bytes_total"
                                 : "v2ray_traffic_downlink_bytes_total";
            if (!head) {
                sb_add(b, "# HELP %s Payload bytes %s, by user, inbound and outbound "
                          "(v2ray's %s counters).\n# TYPE %s counter\n",
                       fam, up ? "from clients" : "to clients", up ? "uplink" : "downlink", fam);
                head = 1;
            }
            sb_add(b, "%s{dimension=\"%s\",target=\"%s\"} %llu\n", fam, dim, target,
                   (unsigned long long)c->v[i].value);
        }
    }
}

static void own(struct sb *b, struct collect *c)
{
    char family[128] = "";
    for (size_t i = 0; i < c->n; i++) {
        const struct series *s = &c->v[i];
        if (s->kind == LR_STAT_TRAFFIC)
            continue;
        const char *brace = strchr(s->name, '{');
        size_t fl = brace ? (size_t)(brace - s->name) : strlen(s->name);
        if (fl >= sizeof(family))
            continue;
        if (strncmp(family, s->name, fl) != 0 || family[fl] != 0) {
            memcpy(family, s->name, fl);
            family[fl] = 0;
            sb_add(b, "# HELP %s %s\n# TYPE %s %s\n", family, help_of(family), family,
                   s->kind == LR_STAT_GAUGE ? "gauge" : "counter");
        }
        if (s->kind == LR_STAT_GAUGE)
            sb_add(b, "%s %lld\n", s->name, (long long)s->value);
        else
            sb_add(b, "%s %llu\n", s->name, (unsigned long long)s->value);
    }
}

struct users {
    struct sb *b;
    int pass;
};

static void user_fn(void *ud, const char *email, uint32_t conns, uint32_t ips)
{
    struct users *u = ud;
    char e[600];
    lr_stats_label(e, sizeof(e), email);
    if (u->pass == 0)
        sb_add(u->b, "luaray_user_connections{user=\"%s\"} %u\n", e, conns);
    else
        sb_add(u->b, "luaray_online_ips{user=\"%s\"} %u\n", e, ips);
}

static void users(struct sb *b)
{
    struct users u = {.b = b};
    sb_add(b, "# HELP luaray_user_connections Connections open, by user (every worker).\n"
              "# TYPE luaray_user_connections gauge\n");
    lr_policy_each(user_fn, &u);
    u.pass = 1;
    sb_add(b, "# HELP luaray_online_ips Distinct client addresses with a connection open, "
              "by user.\n# TYPE luaray_online_ips gauge\n");
    lr_policy_each(user_fn, &u);
}

static void process(struct sb *b)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
    const char *p = strrchr(buf, ')');
    if (p) {
        /* fields from the 3rd (state) on: utime is the 14th */
        char *save = NULL, *tok;
        int field = 3;
        char *rest = strdup(p + 2);
        for (tok = rest ? strtok_r(rest, " ", &save) : NULL; tok;
             tok = strtok_r(NULL, " ", &save), field++) {
            if (field == 14)
                utime = strtoull(tok, NULL, 10);
            else if (field == 15)
                stime = strtoull(tok, NULL, 10);
            else if (field == 22)
                start = strtoull(tok, NULL, 10);
            else if (field == 23)
                vsize = strtoull(tok, NULL, 10);
            else if (field == 24) {
                rss = strtoull(tok, NULL, 10);
                break;
            }
        }
        free(rest);
    }
    unsigned long long btime = 0;
    if ((f = fopen("/proc/stat", "r"))) {
        char line[256];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "btime %llu", &btime) == 1)
                break;
        fclose(f);
    }
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        fds--; /* the directory's own */
    }
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    if (tick <= 0)
        tick = 100;
    sb_add(b, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
              "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
           (double)(utime + stime) / (double)tick);
    sb_add(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
              "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n",
           rss * (unsigned long long)page);
    sb_add(b, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
              "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
           vsize);
    sb_add(b, "# HELP process_open_fds Number of open file descriptors.\n"
              "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", fds);
    sb_add(b, "# HELP process_max_fds Maximum number of open file descriptors.\n"
              "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
           (unsigned long long)rl.rlim_cur);
    sb_add(b, "# HELP process_start_time_seconds Start time of the process since unix epoch "
              "in seconds.\n# TYPE process_start_time_seconds gauge\n"
              "process_start_time_seconds %.2f\n",
           (double)btime + (double)start / (double)tick);
}

char *lr_metrics_render(size_t *len)
{
    struct sb b = {0};
    struct collect c = {0};
    lr_stats_each(0, NULL, 0, collect_fn, &c);
    if (!c.oom) {
        qsort(c.v, c.n, sizeof(*c.v), by_name);
        traffic(&b, &c);
        own(&b, &c);
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].name);
    free(c.v);
    users(&b);
    char commit[200], version[64];
    lr_stats_label(commit, sizeof(commit), lr_metrics_commit);
    lr_stats_label(version, sizeof(version), lr_version());
    sb_add(&b, "# HELP luaray_build_info The version and commit luaray was built from.\n"
               "# TYPE luaray_build_info gauge\n"
               "luaray_build_info{version=\"%s\",commit=\"%s\"} 1\n", version, commit);
    process(&b);
    if (b.oom || c.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ------------------------------------------------------------ HTTP */

static void req_free(struct req *r)
{
    struct lr_metrics *m = r->m;
    ev_io_stop(m->loop, &r->io);
    ev_timer_stop(m->loop, &r->timer);
    /* whatever the client still sends is read first: our close then is
     * a FIN, not an RST that could cut the reply short */
    char sink[512];
    for (int i = 0; i < 4 && recv(r->io.fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    close(r->io.fd);
    free(r->out);
    if (r->prev)
        r->prev->next = r->next;
    else
        m->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    m->nreqs--;
    free(r);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct req *r = (struct req *)w;
    while (r->out_off < r->out_len) {
        ssize_t n = send(w->fd, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            r->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    if (r->out_off == r->out_len)
        shutdown(w->fd, SHUT_WR);
    req_free(r);
}

static void respond(struct req *r, int status, const char *reason, const char *type,
                    const char *extra, const char *body, size_t blen, int head_only)
{
    struct sb b = {0};
    sb_add(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n%s\r\n",
           status, reason, type, blen, extra ? extra : "");
    if (!b.oom && !head_only && blen) {
        char *np = realloc(b.p, b.len + blen);
        if (!np) {
            b.oom = 1;
        } else {
            b.p = np;
            memcpy(b.p + b.len, body, blen);
            b.len += blen;
        }
    }
    if (b.oom) {
        free(b.p);
        req_free(r);
        return;
    }
    r->out = b.p;
    r->out_len = b.len;
    ev_io_stop(r->m->loop, &r->io);
    ev_io_set(&r->io, r->io.fd, EV_WRITE);
    ev_set_cb(&r->io, write_cb);
    ev_io_start(r->m->loop, &r->io);
    write_cb(r->m->loop, &r->io, EV_WRITE);
}

static void plain(struct req *r, int status, const char *reason, const char *extra,
                  const char *text, int head_only)
{
    respond(r, status, reason, "text/plain; charset=utf-8", extra, text, strlen(text),
            head_only);
}

static void handle(struct req *r, const struct lr_mh_req *q)
{
    switch (q->status) {
    case 200:
        break;
    case 400:
        plain(r, 400, "Bad Request", NULL, "bad request\n", 0);
        return;
    case 401:
        plain(r, 401, "Unauthorized", "WWW-Authenticate: Bearer realm=\"luaray\"\r\n",
              "a bearer token is needed\n", q->head_only);
        return;
    case 405:
        plain(r, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET\n", 0);
        return;
    case 431:
        plain(r, 431, "Request Header Fields Too Large", NULL, "request head over 8 KiB\n", 0);
        return;
    default:
        plain(r, 404, "Not Found", NULL, "not found\n", q->head_only);
        return;
    }
    if (q->what == LR_MH_METRICS) {
        size_t len;
        char *body = lr_metrics_render(&len);
        if (!body) {
            plain(r, 500, "Internal Server Error", NULL, "out of memory\n", q->head_only);
            return;
        }
        respond(r, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, body, len,
                q->head_only);
        free(body);
    } else {
        plain(r, 200, "OK", NULL, "luaray: the metrics are at /metrics\n", q->head_only);
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct req *r = (struct req *)w;
    for (;;) {
        ssize_t n = recv(w->fd, r->in + r->in_len, sizeof(r->in) - r->in_len, 0);
        if (n > 0) {
            struct lr_mh_req q;
            r->in_len += (size_t)n;
            if (lr_mh_parse(r->in, r->in_len, r->m->token, &q)) {
                handle(r, &q);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        req_free(r); /* gone before a whole head */
        return;
    }
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    req_free((struct req *)((char *)t - offsetof(struct req, timer)));
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_metrics *m = (struct lr_metrics *)((char *)w - offsetof(struct lr_metrics, accept_w));
    for (int i = 0; i < 16; i++) {
        int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (m->nreqs >= MAX_REQS) {
            /* full: the oldest request goes (a client that opens
             * connections and sends nothing cannot keep a scraper out) */
            struct req *old = m->reqs;
            while (old->next)
                old = old->next;
            req_free(old);
        }
        struct req *r = calloc(1, sizeof(*r));
        if (!r) {
            close(fd);
            continue;
        }
        r->m = m;
        ev_io_init(&r->io, read_cb, fd, EV_READ);
        ev_timer_init(&r->timer, timeout_cb, REQ_TIMEOUT, 0.);
        ev_io_start(loop, &r->io);
        ev_timer_start(loop, &r->timer);
        r->next = m->reqs;
        if (r->next)
            r->next->prev = r;
        m->reqs = r;
        m->nreqs++;
    }
}

struct lr_metrics *lr_metrics_start(struct ev_loop *loop, const char *host, uint16_t port,
                                    const char *token, char *err, size_t errlen)
{
    struct lr_addr a;
    if (lr_addr_parse(host, port, &a) != 0) {
        snprintf(err, errlen, "metrics: cannot use address %s", host);
        return NULL;
    }
    int fd = lr_sock_listen(&a, SOCK_STREAM, 64);
    if (fd < 0) {
        snprintf(err, errlen, "metrics: cannot listen on %s:%u: %s", host, port,
                 strerror(-fd));
        return NULL;
    }
    struct lr_metrics *m = calloc(1, sizeof(*m));
    if (!m || !(m->host = strdup(host)) || lr_metrics_set_token(m, token) != 0) {
        if (m)
            free(m->host);
        free(m);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->fd = fd;
    m->port = port;
    ev_io_init(&m->accept_w, accept_cb, fd, EV_READ);
    ev_io_start(loop, &m->accept_w);
    char as[80];
    lr_addr_str(&a, as, sizeof(as));
    lr_info("metrics on http://%s/metrics%s", as, token ? " (bearer token)" : "");
    return m;
}

int lr_metrics_listens_on(const struct lr_metrics *m, const char *host, uint16_t port)
{
    return m && m->port == port && strcmp(m->host, host) == 0;
}

int lr_metrics_set_token(struct lr_metrics *m, const char *token)
{
    char *t = NULL;
    if (token && !(t = strdup(token)))
        return -1;
    if (m->token)
        sodium_memzero(m->token, strlen(m->token));
    free(m->token);
    m->token = t;
    return 0;
}

void lr_metrics_stop(struct lr_metrics *m)
{
    if (!m)
        return;
    while (m->reqs)
        req_free(m->reqs);
    ev_io_stop(m->loop, &m->accept_w);
    close(m->fd);
    lr_metrics_set_token(m, NULL);
    free(m->host);
    free(m);
}
