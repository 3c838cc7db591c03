/*
 * The bench's load generator. Speaks SOCKS5 (RFC 1928, no auth, CONNECT to
 * an IPv4 target) to the client proxy, or connects to the target directly
 * with --socks none. One JSON object per result line on stdout.
 *
 *   load bulk --socks H:P|none --target H:P --bytes N [--timeout S]
 *       one stream: SOCKS handshake, then the bulk protocol of common.h.
 *       Times from the first payload byte sent to the sink's reply; the
 *       sink checks every byte against the pattern.
 *   load conn --socks H:P|none --target H:P [--concurrency C] [--duration S]
 *             [--max N] [--size B] [--timeout S]
 *       new connections, C at a time for S seconds (at most N): each does
 *       the SOCKS handshake, sends B bytes, reads the B-byte echo, checks
 *       it, closes. Latency is from connect() to the last echo byte.
 *       rate = connections completed by the end of the window / window.
 *   load idle --socks H:P|none --target H:P --count N [--concurrency C]
 *             [--hold S] [--timeout S]
 *       opens N connections (each: handshake, 1 byte, its echo) and holds
 *       them; prints a line when all are open, then holds them until stdin
 *       reaches EOF or S seconds pass, prints how many the proxies closed
 *       meanwhile, and exits.
 *
 * Every wait is bounded: per-connection --timeout (default 5 s; bulk: no
 * progress for that long), and the whole run by its window.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static struct sockaddr_in socks_addr, target_addr;
static int use_socks = 1;
static double opt_timeout = 5;

static int parse_hostport(const char *s, struct sockaddr_in *a)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* --name: the CONNECT asks for this name (ATYP 3) at the target's port
 * instead of the target's address (routing rules then see a name). */
static const char *opt_name;

/* The CONNECT request for the target (IPv4, or opt_name): its length. */
static size_t socks_request(uint8_t req[262])
{
    req[0] = 5; req[1] = 1; req[2] = 0;
    if (opt_name) {
        size_t n = strlen(opt_name);
        req[3] = 3;
        req[4] = (uint8_t)n;
        memcpy(req + 5, opt_name, n);
        memcpy(req + 5 + n, &target_addr.sin_port, 2);
        return 7 + n;
    }
    req[3] = 1;
    memcpy(req + 4, &target_addr.sin_addr, 4);
    memcpy(req + 8, &target_addr.sin_port, 2);
    return 10;
}

/* Total size of a SOCKS5 reply from its first 5 bytes (0: malformed). */
static size_t socks_reply_len(const uint8_t *h)
{
    switch (h[3]) {
    case 1: return 10;
    case 4: return 22;
    case 3: return 7 + (size_t)h[4];
    default: return 0;
    }
}

/* ------------------------------------------------------------------ */
/* bulk                                                                 */

static int recv_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r == 0)
            return -2;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int send_full(int fd, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

static int bulk_fail(const char *what, double t0)
{
    printf("{\"mode\":\"bulk\",\"ok\":false,\"error\":\"%s: %s\",\"seconds\":%.6f}\n", what,
           errno ? strerror(errno) : "closed", now_s() - t0);
    return 1;
}

static int run_bulk(uint64_t bytes)
{
    uint8_t *pat = pattern_new();
    double t_start = now_s();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!pat || fd < 0)
        return bulk_fail("socket", t_start);
    struct timeval tv = { .tv_sec = (time_t)opt_timeout,
                          .tv_usec = (suseconds_t)((opt_timeout - floor(opt_timeout)) * 1e6) };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const struct sockaddr_in *first = use_socks ? &socks_addr : &target_addr;
    errno = 0;
    if (connect(fd, (const struct sockaddr *)first, sizeof(*first)) != 0)
        return bulk_fail("connect", t_start);
    if (use_socks) {
        uint8_t g[3] = { 5, 1, 0 }, m[2], req[262], rep[300];
        size_t reqlen = socks_request(req);
        errno = 0;
        if (send_full(fd, g, 3) || recv_full(fd, m, 2) || m[0] != 5 || m[1] != 0)
            return bulk_fail("socks method", t_start);
        if (send_full(fd, req, reqlen) || recv_full(fd, rep, 5) || rep[1] != 0)
            return bulk_fail("socks connect", t_start);
        size_t rl = socks_reply_len(rep);
        if (rl == 0 || recv_full(fd, rep + 5, rl - 5))
            return bulk_fail("socks reply", t_start);
    }
    double t_conn = now_s();
    uint8_t hdr[BULK_HDR];
    memcpy(hdr, BULK_MAGIC, 8);
    put_le64(hdr + 8, bytes);
    errno = 0;
    if (send_full(fd, hdr, BULK_HDR))
        return bulk_fail("send header", t_start);
    uint64_t sent = 0;
    while (sent < bytes) {
        size_t off = (size_t)(sent % PATTERN_LEN);
        size_t n = 256 * 1024;
        if (n > bytes - sent)
            n = (size_t)(bytes - sent);
        ssize_t w = send(fd, pat + off, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            char what[64];
            snprintf(what, sizeof(what), "send at byte %llu", (unsigned long long)sent);
            return bulk_fail(what, t_start);
        }
        sent += (uint64_t)w;
    }
    double t_sent = now_s();
    uint8_t ack[BULK_ACK];
    errno = 0;
    if (recv_full(fd, ack, BULK_ACK))
        return bulk_fail("sink reply", t_start);
    double t_end = now_s();
    uint64_t got = get_le64(ack), bad = get_le64(ack + 8);
    int ok = got == bytes && bad == UINT64_MAX;
    double secs = t_end - t_conn;
    printf("{\"mode\":\"bulk\",\"ok\":%s,\"bytes\":%llu,\"sink_count\":%llu,\"bad_offset\":%lld,"
           "\"seconds\":%.6f,\"send_seconds\":%.6f,\"setup_ms\":%.3f,\"MBps\":%.2f}\n",
           ok ? "true" : "false", (unsigned long long)bytes, (unsigned long long)got,
           bad == UINT64_MAX ? -1LL : (long long)bad, secs, t_sent - t_conn,
           (t_conn - t_start) * 1e3, (double)bytes / 1e6 / secs);
    close(fd);
    free(pat);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* conn and idle: non-blocking state machines under epoll              */

enum st { S_FREE, S_CONNECT, S_METHOD, S_REPLY_HEAD, S_REPLY_REST, S_ECHO, S_HELD };
enum ek { E_CONNECT, E_SOCKS, E_EOF, E_RESET, E_MISMATCH, E_WRITE,
          /* timeouts, by the state the connection was stuck in */
          E_TO_CONNECT, E_TO_METHOD, E_TO_REPLY, E_TO_ECHO, E_NKINDS };
static const char *ek_name[E_NKINDS] = { "connect", "socks", "eof", "reset", "mismatch", "write",
                                         "timeout-connect", "timeout-socks-method",
                                         "timeout-socks-reply", "timeout-echo" };

static enum ek timeout_kind(enum st st)
{
    switch (st) {
    case S_CONNECT: return E_TO_CONNECT;
    case S_METHOD: return E_TO_METHOD;
    case S_REPLY_HEAD: case S_REPLY_REST: return E_TO_REPLY;
    default: return E_TO_ECHO;
    }
}

struct lc {
    int fd;
    enum st st;
    double t0;
    size_t have, need;
    uint8_t buf[64];
};

static int ep;
static size_t payload = 64;
static uint8_t payload_bytes[64];
static unsigned long errs[E_NKINDS];

static void lc_drop(struct lc *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->st = S_FREE;
}

static void lc_fail(struct lc *c, enum ek k)
{
    errs[k]++;
    lc_drop(c);
}

static void lc_events(struct lc *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static int lc_start(struct lc *c)
{
    c->t0 = now_s();
    c->have = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        errs[E_CONNECT]++;
        c->st = S_FREE;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const struct sockaddr_in *a = use_socks ? &socks_addr : &target_addr;
    if (connect(c->fd, (const struct sockaddr *)a, sizeof(*a)) != 0 && errno != EINPROGRESS) {
        lc_fail(c, E_CONNECT);
        return -1;
    }
    c->st = S_CONNECT;
    struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    return 0;
}

static int lc_send(struct lc *c, const uint8_t *p, size_t n)
{
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w != (ssize_t)n) {
        lc_fail(c, E_WRITE);
        return -1;
    }
    return 0;
}

/* Reads toward c->need; 1 when complete, 0 when more is needed, -1 failed. */
static int lc_fill(struct lc *c)
{
    ssize_t r = recv(c->fd, c->buf + c->have, c->need - c->have, 0);
    if (r == 0) {
        lc_fail(c, E_EOF);
        return -1;
    }
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        lc_fail(c, E_RESET);
        return -1;
    }
    c->have += (size_t)r;
    return c->have == c->need;
}

static void lc_send_payload(struct lc *c)
{
    if (lc_send(c, payload_bytes, payload))
        return;
    c->st = S_ECHO;
    c->have = 0;
    c->need = payload;
}

/* Advances a connection; returns 1 when its echo is complete and checked. */
static int lc_step(struct lc *c, uint32_t events)
{
    int r;
    (void)events;
    switch (c->st) {
    case S_CONNECT: {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            lc_fail(c, E_CONNECT);
            return 0;
        }
        lc_events(c, EPOLLIN);
        if (use_socks) {
            static const uint8_t g[3] = { 5, 1, 0 };
            if (lc_send(c, g, 3))
                return 0;
            c->st = S_METHOD;
            c->have = 0;
            c->need = 2;
        } else {
            lc_send_payload(c);
        }
        return 0;
    }
    case S_METHOD:
        if ((r = lc_fill(c)) <= 0)
            return 0;
        if (c->buf[0] != 5 || c->buf[1] != 0) {
            lc_fail(c, E_SOCKS);
            return 0;
        }
        {
            uint8_t req[262];
            size_t reqlen = socks_request(req);
            if (lc_send(c, req, reqlen))
                return 0;
        }
        c->st = S_REPLY_HEAD;
        c->have = 0;
        c->need = 5;
        return 0;
    case S_REPLY_HEAD:
        if ((r = lc_fill(c)) <= 0)
            return 0;
        if (c->buf[0] != 5 || c->buf[1] != 0 || socks_reply_len(c->buf) == 0 ||
            socks_reply_len(c->buf) > sizeof(c->buf)) {
            lc_fail(c, E_SOCKS);
            return 0;
        }
        c->need = socks_reply_len(c->buf);
        c->st = S_REPLY_REST;
        /* fall through: maybe the rest is already here */
        /* FALLTHROUGH */
    case S_REPLY_REST:
        if ((r = lc_fill(c)) <= 0)
            return 0;
        lc_send_payload(c);
        return 0;
    case S_ECHO:
        if ((r = lc_fill(c)) <= 0)
            return 0;
        if (memcmp(c->buf, payload_bytes, payload) != 0) {
            lc_fail(c, E_MISMATCH);
            return 0;
        }
        return 1;
    case S_HELD: {
        /* a held connection should stay silent; EOF or error = dropped */
        uint8_t b[64];
        ssize_t n = recv(c->fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            lc_drop(c);
        return 0;
    }
    default:
        return 0;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return v[i - 1];
}

static void print_errs(void)
{
    printf("\"err_kinds\":{");
    int first = 1;
    for (int k = 0; k < E_NKINDS; k++) {
        if (!errs[k])
            continue;
        printf("%s\"%s\":%lu", first ? "" : ",", ek_name[k], errs[k]);
        first = 0;
    }
    printf("}");
}

static unsigned long total_errs(void)
{
    unsigned long t = 0;
    for (int k = 0; k < E_NKINDS; k++)
        t += errs[k];
    return t;
}

static void expire(struct lc *v, size_t n, double now)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].st != S_FREE && v[i].st != S_HELD && now - v[i].t0 > opt_timeout)
            lc_fail(&v[i], timeout_kind(v[i].st));
}

static int run_conn(size_t conc, double duration, size_t max)
{
    struct lc *v = calloc(conc, sizeof(*v));
    size_t cap = max, n_lat = 0;
    double *lat = malloc(cap * sizeof(double));
    if (!v || !lat)
        return 1;
    for (size_t i = 0; i < conc; i++)
        v[i].fd = -1;
    size_t started = 0, in_window = 0;
    double t0 = now_s(), t_end = t0 + duration, hard_end = t_end + opt_timeout + 1;
    for (size_t i = 0; i < conc && started < max; i++, started++)
        lc_start(&v[i]);
    struct epoll_event evs[256];
    double last_expire = t0;
    for (;;) {
        double now = now_s();
        size_t active = 0;
        for (size_t i = 0; i < conc; i++) {
            if (v[i].st == S_FREE && now < t_end && started < max) {
                started++;
                lc_start(&v[i]);
            }
            if (v[i].st != S_FREE)
                active++;
        }
        if (active == 0 || now > hard_end)
            break;
        int n = epoll_wait(ep, evs, 256, 50);
        now = now_s();
        for (int i = 0; i < n; i++) {
            struct lc *c = evs[i].data.ptr;
            if (c->st == S_FREE)
                continue;
            if (lc_step(c, evs[i].events) == 1) {
                if (n_lat < cap)
                    lat[n_lat++] = now - c->t0;
                if (now <= t_end)
                    in_window++;
                lc_drop(c);
                if (now < t_end && started < max) {
                    started++;
                    lc_start(c);
                }
            }
        }
        if (now - last_expire > 0.05) {
            expire(v, conc, now);
            last_expire = now;
        }
    }
    double window = now_s() - t0;
    if (window > duration)
        window = duration;
    /* stopped early by --max: the window is when the last one finished */
    qsort(lat, n_lat, sizeof(double), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n_lat; i++)
        sum += lat[i];
    printf("{\"mode\":\"conn\",\"concurrency\":%zu,\"started\":%zu,\"ok\":%zu,\"ok_in_window\":%zu,"
           "\"errors\":%lu,",
           conc, started, n_lat, in_window, total_errs());
    print_errs();
    printf(",\"window\":%.6f,\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"mean_ms\":%.3f}\n",
           window, (double)in_window / window, pct(lat, n_lat, 50) * 1e3,
           pct(lat, n_lat, 90) * 1e3, pct(lat, n_lat, 99) * 1e3,
           n_lat ? lat[n_lat - 1] * 1e3 : -1.0, n_lat ? sum / (double)n_lat * 1e3 : -1.0);
    fflush(stdout);
    for (size_t i = 0; i < conc; i++)
        lc_drop(&v[i]);
    return 0;
}

static int run_idle(size_t count, size_t conc, double hold)
{
    struct lc *v = calloc(count, sizeof(*v));
    if (!v)
        return 1;
    for (size_t i = 0; i < count; i++)
        v[i].fd = -1;
    size_t next = 0, opened = 0, inflight = 0, failed_before;
    double t0 = now_s(), hard_end = t0 + 120;
    struct epoll_event evs[256];
    double last_expire = t0;
    /* give up when failures pile up: a broken chain should not take long */
    size_t max_fail = count / 10 + 20;
    for (;;) {
        while (inflight < conc && next < count && total_errs() < max_fail) {
            lc_start(&v[next]);
            if (v[next].st != S_FREE)
                inflight++;
            next++;
        }
        if (inflight == 0 || now_s() > hard_end)
            break;
        int n = epoll_wait(ep, evs, 256, 50);
        double now = now_s();
        for (int i = 0; i < n; i++) {
            struct lc *c = evs[i].data.ptr;
            if (c->st == S_FREE)
                continue;
            enum st before = c->st;
            int done = lc_step(c, evs[i].events);
            if (done == 1) {
                c->st = S_HELD;
                opened++;
                inflight--;
            } else if (c->st == S_FREE && before != S_HELD) {
                inflight--;
            }
        }
        if (now - last_expire > 0.05) {
            for (size_t i = 0; i < next; i++)
                if (v[i].st != S_FREE && v[i].st != S_HELD && now - v[i].t0 > opt_timeout) {
                    lc_fail(&v[i], timeout_kind(v[i].st));
                    inflight--;
                }
            last_expire = now;
        }
    }
    failed_before = total_errs();
    printf("{\"mode\":\"idle\",\"wanted\":%zu,\"opened\":%zu,\"failed\":%zu,\"seconds\":%.3f,",
           count, opened, failed_before, now_s() - t0);
    print_errs();
    printf("}\n");
    fflush(stdout);
    /* hold until stdin closes or the hold time passes; held sockets that
     * close meanwhile are dropped (counted below) */
    double hold_end = now_s() + hold;
    struct pollfd pf = { .fd = 0, .events = POLLIN };
    for (;;) {
        double left = hold_end - now_s();
        if (left <= 0)
            break;
        int pr = poll(&pf, 1, left > 0.2 ? 200 : (int)(left * 1e3) + 1);
        if (pr > 0) {
            char b[256];
            ssize_t r = read(0, b, sizeof(b));
            if (r <= 0)
                break;
        }
    }
    size_t still = 0;
    for (size_t i = 0; i < count; i++) {
        if (v[i].st != S_HELD)
            continue;
        uint8_t b[8];
        ssize_t r = recv(v[i].fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            still++;
    }
    printf("{\"mode\":\"idle-end\",\"opened\":%zu,\"still_open\":%zu}\n", opened, still);
    fflush(stdout);
    for (size_t i = 0; i < count; i++)
        lc_drop(&v[i]);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: load bulk|conn|idle --socks H:P|none --target H:P [--bytes N]\n"
            "            [--concurrency C] [--duration S] [--max N] [--size B]\n"
            "            [--count N] [--hold S] [--timeout S] [--name HOST]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *mode = argv[1], *socks = NULL, *target = NULL;
    uint64_t bytes = 1ull << 30;
    size_t conc = 50, max = 1000000, count = 1000;
    double duration = 3, hold = 60;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--socks")) socks = val;
        else if (!strcmp(a, "--target")) target = val;
        else if (!strcmp(a, "--bytes")) bytes = strtoull(val, NULL, 10);
        else if (!strcmp(a, "--concurrency")) conc = strtoul(val, NULL, 10);
        else if (!strcmp(a, "--duration")) duration = atof(val);
        else if (!strcmp(a, "--max")) max = strtoul(val, NULL, 10);
        else if (!strcmp(a, "--size")) payload = strtoul(val, NULL, 10);
        else if (!strcmp(a, "--count")) count = strtoul(val, NULL, 10);
        else if (!strcmp(a, "--hold")) hold = atof(val);
        else if (!strcmp(a, "--timeout")) opt_timeout = atof(val);
        else if (!strcmp(a, "--name") && strlen(val) < 256) opt_name = val;
        else {
            usage();
            return 2;
        }
    }
    if (!socks || !target || parse_hostport(target, &target_addr) != 0) {
        usage();
        return 2;
    }
    if (!strcmp(socks, "none"))
        use_socks = 0;
    else if (parse_hostport(socks, &socks_addr) != 0) {
        usage();
        return 2;
    }
    if (payload < 1 || payload > sizeof(payload_bytes) || conc < 1 || max < 1 || count < 1) {
        fprintf(stderr, "load: --size 1..64, --concurrency/--max/--count >= 1\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    for (size_t i = 0; i < sizeof(payload_bytes); i++)
        payload_bytes[i] = (uint8_t)(0xA5 ^ (i * 37));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!strcmp(mode, "bulk"))
        return run_bulk(bytes);
    if (!strcmp(mode, "conn"))
        return run_conn(conc, duration, max);
    if (!strcmp(mode, "idle")) {
        if (conc > count)
            conc = count;
        return run_idle(count, conc, hold);
    }
    usage();
    return 2;
}
