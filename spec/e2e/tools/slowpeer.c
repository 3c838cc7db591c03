/*
 * slowpeer: slow and hostile TCP peers for spec/e2e/hardening_spec.lua, in
 * C with epoll because luasocket's select() stops at FD_SETSIZE (1024).
 * Loopback only (127.0.0.1).  Every loop is bounded in time: each mode
 * exits by itself (--max-wait, --max-time, --lifetime).  The spec builds
 * it into its temp dir (cc -O2 -o DIR/slowpeer slowpeer.c -lcrypto -lm).
 *
 *   slowpeer slowloris --port P --count N [--interval 0.5] [--max-wait S]
 *            [--batch 100] [--gap 0.01] --out FILE
 *       Opens N connections to 127.0.0.1:P (in batches of --batch every
 *       --gap s), sends each one random byte at once and then every
 *       --interval s, never anything else, and watches each until the
 *       peer closes it or --max-wait s after the last one opened.  Closes
 *       a connection as soon as its peer did.  FILE gets one line per
 *       connection: "INDEX HOW CLOSED_AFTER RECEIVED CONNECT_SECONDS",
 *       HOW = eof (a FIN) | reset (an RST) | errno-N | open | connect-ERR,
 *       CLOSED_AFTER = seconds from the connect() call to the close ("-"
 *       when not closed), RECEIVED = bytes the peer sent back,
 *       CONNECT_SECONDS = until the completion was seen (-1: never).
 *
 *   slowpeer source --port P [--sndbuf BYTES] [--status FILE] [--lifetime S]
 *       Accepts on 127.0.0.1:P; each connection sends a line "SEED\n",
 *       then gets e2e.support's stream(SEED) (xorshift32 words, little
 *       endian) as fast as it takes it, forever; closed when the peer
 *       closes.  FILE (rewritten each second): "conns=C
 *       streaming=S blocked=B bytes=TOTAL accepted=A", blocked = streaming
 *       connections whose socket has been full (EAGAIN, no byte taken) for
 *       >= 1 s.
 *
 *   slowpeer readers --port P --requests FILE --count N [--rate BPS]
 *            [--rcvbuf BYTES] [--mss BYTES] [--concurrency 64]
 *            [--prime BYTES] [--prime-rate BPS] --status FILE
 *            --control FILE [--drain-count K] [--drain-bytes M]
 *            [--drain-time S] [--max-time S]
 *       N VMess clients of the server at 127.0.0.1:P (--rcvbuf and --mss set
 *       on each socket before connecting).  Line i of the requests file is
 *       "HEX_HEADER HEX_BODY_KEY HEX_BODY_IV": a VMessAEAD request header
 *       (aes-128-gcm, option 0x01: chunk stream with plain lengths) made by
 *       the spec, whose destination is a source above.  Reader i sends it
 *       with a first chunk "SEED\n" (seed = 1000 + i - 1).  Once all are
 *       connected, each reads --prime payload bytes at --prime-rate (phase
 *       "prime"), then slowly (phase "run"): --rate bytes/s, and after the
 *       first 10 s not at all 10 s out of every 30 s (staggered over the
 *       readers).  It skips
 *       the 38-byte response header, decrypts every chunk (key and IV:
 *       SHA-256 of the request's, first 16 bytes) and checks the payload
 *       against stream(seed).  When the control file appears, the first K
 *       readers read as fast as they can until each has M more payload
 *       bytes (checked too; at most --drain-time s), then the result is
 *       written and the program exits, closing every connection.  FILE
 *       (rewritten each second, atomically): key=value pairs t,
 *       established (request sent), answered (response header read),
 *       failed, dead (closed by the server), bytes, payload (decrypted and
 *       checked), verified (readers with some payload checked), primed,
 *       mismatches, min_ratio (bytes read in phase run / allowance, the
 *       least over the readers), phase (connect|prime|run|drain|done),
 *       drained (readers that got their M bytes), err (the first failure,
 *       '_' for spaces).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "slowpeer: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* ------------------------------------------------------------ options */

static int g_argc;
static char **g_argv;

static const char *opt(const char *name, const char *def)
{
    for (int i = 2; i + 1 < g_argc; i += 2)
        if (strcmp(g_argv[i], name) == 0)
            return g_argv[i + 1];
    return def;
}

static double optn(const char *name, double def)
{
    const char *v = opt(name, NULL);
    return v ? atof(v) : def;
}

static const char *need(const char *name)
{
    const char *v = opt(name, NULL);
    if (!v) {
        fprintf(stderr, "slowpeer %s: %s needed\n", g_argv[1], name);
        exit(2);
    }
    return v;
}

/* ------------------------------------------------------------ the stream */

/* e2e.support's stream(seed): xorshift32 (13, 17, 5) words, each stored as
 * a little-endian int32, from the seed (0 -> 0x9E3779B9). */
struct stream {
    uint32_t x, cur;
    int left;
};

static void stream_init(struct stream *s, uint32_t seed)
{
    s->x = seed ? seed : 0x9E3779B9u;
    s->cur = 0;
    s->left = 0;
}

static void stream_fill(struct stream *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s->left == 0) {
            uint32_t x = s->x;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            s->x = s->cur = x;
            s->left = 4;
        }
        out[i] = (uint8_t)(s->cur & 0xff);
        s->cur >>= 8;
        s->left--;
    }
}

/* ------------------------------------------------------------ sockets */

static struct sockaddr_in loop_addr(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* a non-blocking connect to 127.0.0.1:port -> fd (connecting), or -errno */
static int start_connect(int port, int rcvbuf, int mss)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (mss > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
    struct sockaddr_in a = loop_addr(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int sock_error(int fd)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        return errno;
    return err;
}

static void ep_set(int ep, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        die("epoll_ctl");
}

static void write_atomic(const char *path, const char *text)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

/* ------------------------------------------------------------ slowloris */

struct lpeer {
    int fd;
    int state;          /* 0 connecting, 1 open, 2 done */
    double t_start, t0, next, closed_after, tconn;
    long received;
    char how[40];
};

static int slowloris(void)
{
    int port = atoi(need("--port"));
    int n = atoi(need("--count"));
    double interval = optn("--interval", 0.5);
    double max_wait = optn("--max-wait", 10);
    int batch = (int)optn("--batch", 100);
    double gap = optn("--gap", 0.01);
    const char *out = need("--out");
    struct lpeer *p = calloc((size_t)n, sizeof(*p));
    if (!p)
        die("calloc");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    uint32_t rnd = (uint32_t)getpid() * 2654435761u + 1;
    int opened = 0, live = 0;
    double t_begin = now(), next_batch = t_begin, deadline = 0;
    struct epoll_event evs[512];
    uint8_t buf[4096];
    for (long iter = 0; iter < 100000000L; iter++) {
        double t = now();
        if (opened == n && live == 0)
            break;
        if (opened == n && t >= deadline)
            break;
        if (t - t_begin > max_wait + 120) /* hard stop whatever happens */
            break;
        /* open the next batch */
        if (opened < n && t >= next_batch) {
            for (int k = 0; k < batch && opened < n; k++, opened++) {
                struct lpeer *c = &p[opened];
                /* the clock starts as connect() is called: the server
                 * cannot accept earlier, and may accept at once, however
                 * late we see the completion */
                c->t_start = c->t0 = c->next = now();
                c->fd = start_connect(port, 0, 0);
                if (c->fd < 0) {
                    snprintf(c->how, sizeof(c->how), "connect-errno-%d", -c->fd);
                    c->state = 2;
                    continue;
                }
                ep_set(ep, EPOLL_CTL_ADD, c->fd, EPOLLOUT, (uint64_t)opened);
                live++;
            }
            next_batch = t + gap;
            if (opened == n)
                deadline = now() + max_wait;
        }
        /* the slow bytes */
        t = now();
        double due = t + 0.005;
        for (int i = 0; i < opened; i++) {
            struct lpeer *c = &p[i];
            if (c->state == 0 && t - c->t_start > 5) {
                snprintf(c->how, sizeof(c->how), "connect-timeout");
                close(c->fd);
                c->state = 2;
                live--;
                continue;
            }
            if (c->state != 1)
                continue;
            if (t >= c->next) {
                rnd ^= rnd << 13; rnd ^= rnd >> 17; rnd ^= rnd << 5;
                uint8_t b = (uint8_t)rnd;
                (void)!send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                c->next += interval;
            }
            if (c->next < due)
                due = c->next;
        }
        int wait_ms = (int)((due - now()) * 1000.0);
        if (opened < n) {
            int wb = (int)((next_batch - now()) * 1000.0);
            if (wb < wait_ms)
                wait_ms = wb;
        }
        if (wait_ms < 0)
            wait_ms = 0;
        if (wait_ms > 5)
            wait_ms = 5;
        int ne = epoll_wait(ep, evs, 512, wait_ms);
        if (ne < 0 && errno != EINTR)
            die("epoll_wait");
        double te = now();
        for (int e = 0; e < ne; e++) {
            struct lpeer *c = &p[evs[e].data.u64];
            if (c->state == 0) {
                int err = sock_error(c->fd);
                if (err) {
                    snprintf(c->how, sizeof(c->how), "connect-errno-%d", err);
                    close(c->fd);
                    c->state = 2;
                    live--;
                    continue;
                }
                c->state = 1;
                c->tconn = te - c->t_start;
                snprintf(c->how, sizeof(c->how), "open");
                ep_set(ep, EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLRDHUP, evs[e].data.u64);
                continue;
            }
            if (c->state != 1)
                continue;
            for (int k = 0; k < 64; k++) {
                ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (r > 0) {
                    c->received += r;
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                if (r == 0)
                    snprintf(c->how, sizeof(c->how), "eof");
                else if (errno == ECONNRESET)
                    snprintf(c->how, sizeof(c->how), "reset");
                else
                    snprintf(c->how, sizeof(c->how), "errno-%d", errno);
                c->closed_after = te - c->t0;
                c->state = 2;
                close(c->fd);
                live--;
                break;
            }
        }
    }
    FILE *f = fopen(out, "w");
    if (!f)
        die(out);
    int closed = 0;
    for (int i = 0; i < n; i++) {
        struct lpeer *c = &p[i];
        if (c->state == 2 && c->closed_after > 0) {
            closed++;
            fprintf(f, "%d %s %.6f %ld %.6f\n", i + 1, c->how, c->closed_after, c->received, c->tconn);
        } else {
            fprintf(f, "%d %s - %ld %.6f\n", i + 1, c->how[0] ? c->how : "open", c->received,
                    c->tconn > 0 ? c->tconn : -1.0);
        }
        if (c->state == 1)
            close(c->fd);
    }
    fclose(f);
    printf("slowloris: %d connections, %d closed by the peer, %.2f s\n", n, closed, now() - t_begin);
    return 0;
}

/* ------------------------------------------------------------ source */

#define SRC_PIECE 16384

struct sconn {
    int fd;
    int streaming;
    int hlen;
    char hdr[40];
    struct stream st;
    uint8_t pend[SRC_PIECE];
    int poff, plen;
    int full;           /* the last send met EAGAIN */
    double last_progress;
};

/* Sends what the socket takes (at most 64 pieces); -1 if the peer is gone. */
static int src_push(struct sconn *c, unsigned long long *total)
{
    for (int k = 0; k < 64; k++) {
        if (c->plen == 0) {
            stream_fill(&c->st, c->pend, SRC_PIECE);
            c->poff = 0;
            c->plen = SRC_PIECE;
        }
        ssize_t w = send(c->fd, c->pend + c->poff, (size_t)c->plen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            c->poff += (int)w;
            c->plen -= (int)w;
            *total += (unsigned long long)w;
            c->full = 0;
            c->last_progress = now();
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (errno == EAGAIN)
                c->full = 1;
            return 0;
        }
        return -1;
    }
    return 0;
}

static int source(void)
{
    int port = atoi(need("--port"));
    int sndbuf = (int)optn("--sndbuf", 0);
    const char *status = opt("--status", NULL);
    double lifetime = optn("--lifetime", 900);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = loop_addr(port);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0)
        die("bind/listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    ep_set(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, (uint64_t)-1);
    int cap = 65536;
    struct sconn **cs = calloc((size_t)cap, sizeof(*cs));
    if (!cs)
        die("calloc");
    int nconns = 0;
    unsigned long long total = 0, accepted = 0;
    double t_begin = now(), next_status = 0;
    struct epoll_event evs[256];
    uint8_t sink[4096];
    for (long iter = 0; iter < 1000000000L; iter++) {
        double t = now();
        if (t - t_begin > lifetime)
            break;
        if (status && t >= next_status) {
            int streaming = 0, blocked = 0;
            for (int fd = 0; fd < cap; fd++) {
                struct sconn *c = cs[fd];
                if (!c || !c->streaming)
                    continue;
                streaming++;
                if (c->full && t - c->last_progress >= 1.0)
                    blocked++;
            }
            char text[256];
            snprintf(text, sizeof(text), "conns=%d streaming=%d blocked=%d bytes=%llu accepted=%llu\n",
                     nconns, streaming, blocked, total, accepted);
            write_atomic(status, text);
            next_status = t + 1.0;
        }
        int ne = epoll_wait(ep, evs, 256, 200);
        if (ne < 0 && errno != EINTR)
            die("epoll_wait");
        for (int e = 0; e < ne; e++) {
            if (evs[e].data.u64 == (uint64_t)-1) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    if (fd >= cap) {
                        close(fd);
                        continue;
                    }
                    if (sndbuf > 0)
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
                    struct sconn *c = calloc(1, sizeof(*c));
                    if (!c)
                        die("calloc");
                    c->fd = fd;
                    cs[fd] = c;
                    nconns++;
                    accepted++;
                    ep_set(ep, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, (uint64_t)fd);
                }
                continue;
            }
            int fd = (int)evs[e].data.u64;
            struct sconn *c = cs[fd];
            if (!c)
                continue;
            int dead = 0;
            if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                for (int k = 0; k < 16 && !dead; k++) {
                    ssize_t r = c->streaming ? recv(fd, sink, sizeof(sink), 0)
                                             : recv(fd, c->hdr + c->hlen, 1, 0);
                    if (r > 0) {
                        if (c->streaming)
                            continue;
                        c->hlen++;
                        if (c->hdr[c->hlen - 1] == '\n') {
                            c->hdr[c->hlen] = 0;
                            stream_init(&c->st, (uint32_t)strtoul(c->hdr, NULL, 10));
                            c->streaming = 1;
                            c->last_progress = now();
                            ep_set(ep, EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                                   (uint64_t)fd);
                        } else if (c->hlen >= (int)sizeof(c->hdr) - 1) {
                            dead = 1;
                        }
                        continue;
                    }
                    if (r < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                    dead = 1; /* EOF or error: the peer is gone */
                }
            }
            if (!dead && c->streaming && (evs[e].events & EPOLLOUT))
                dead = src_push(c, &total) < 0;
            if (dead) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                free(c);
                cs[fd] = NULL;
                nconns--;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ readers */

/* AES-128-GCM of one VMess chunk (option 0x01: plain BE16 length, no
 * masking): nonce = BE16(counter) || iv[2..12]. */
static int gcm(int enc, const uint8_t *key, const uint8_t *iv, uint16_t ctr,
               const uint8_t *in, int len, uint8_t *out, uint8_t *tag)
{
    static EVP_CIPHER_CTX *ctx;
    uint8_t nonce[12];
    int l = 0, ok;
    nonce[0] = (uint8_t)(ctr >> 8);
    nonce[1] = (uint8_t)ctr;
    memcpy(nonce + 2, iv + 2, 10);
    if (!ctx && !(ctx = EVP_CIPHER_CTX_new()))
        return -1;
    if (enc) {
        ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, nonce) == 1 &&
             (len == 0 || EVP_EncryptUpdate(ctx, out, &l, in, len) == 1) &&
             EVP_EncryptFinal_ex(ctx, out + l, &l) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    } else {
        ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, nonce) == 1 &&
             (len == 0 || EVP_DecryptUpdate(ctx, out, &l, in, len) == 1) &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
             EVP_DecryptFinal_ex(ctx, out + l, &l) == 1;
    }
    return ok ? 0 : -1;
}

static int unhex(const char *h, uint8_t *out, int max)
{
    int n = 0;
    while (h[0] && h[1] && n < max) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

#define RESP_HEADER 38  /* AEAD response header without a command: 18 + 20 */

struct reader {
    int fd;
    int state;          /* 0 connecting, 3 reading, 4 dead */
    int draining, drained, answered, priming;
    uint8_t req[400];
    int reqlen;
    uint8_t key[16], iv[16], rkey[16], riv[16];
    uint16_t ctr;
    int skip;           /* response header bytes still to skip */
    uint8_t *cbuf;      /* the chunk being assembled */
    int clen, ccap;
    struct stream st;
    unsigned long long wire, payload, drain_target, run_bytes;
    double allowance, expected, t_state;
};

/* the readers' state (one run per process) */
static struct reader *r;
static int n, established, answered, failed, dead, mismatches, drained, verified, primed;
static double rate, t_begin;
static unsigned long long total, payload;
static char err[200] = "-";
static const char *status;
static uint8_t want[65536], plain[65536];

#define FAIL(i, ...) do { \
    if (strcmp(err, "-") == 0) { \
        int k_ = snprintf(err, sizeof(err), "reader-%d:", (i) + 1); \
        snprintf(err + k_, sizeof(err) - (size_t)k_, __VA_ARGS__); \
        for (char *p_ = err; *p_; p_++) if (*p_ == ' ') *p_ = '_'; \
    } } while (0)
#define KILL(i) do { close(r[i].fd); r[i].state = 4; dead++; } while (0)

/* reads at most `max` bytes of reader i, decrypts and checks every
 * complete chunk: > 0 bytes read, 0 nothing there, -1 it died */
static int read_some(int i, size_t max)
{
    struct reader *c = &r[i];
    size_t room = (size_t)(c->ccap - c->clen);
    if (max > room)
        max = room;
    if (max == 0)
        max = 1; /* cannot happen: the buffer grows to a whole chunk */
    ssize_t k = recv(c->fd, c->cbuf + c->clen, max, MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (k <= 0) {
        FAIL(i, "closed by the server (%s) after %llu bytes", k == 0 ? "eof" : strerror(errno), c->wire);
        KILL(i);
        return -1;
    }
    c->wire += (unsigned long long)k;
    total += (unsigned long long)k;
    c->clen += (int)k;
    int off = 0;
    if (c->skip) {
        int s = c->clen < c->skip ? c->clen : c->skip;
        c->skip -= s;
        off = s;
        if (c->skip == 0 && !c->answered) {
            c->answered = 1;
            answered++;
        }
    }
    for (int guard = 0; guard < 64; guard++) {
        if (c->clen - off < 2)
            break;
        int size = (c->cbuf[off] << 8) | c->cbuf[off + 1];
        if (size < 16) {
            mismatches++;
            FAIL(i, "bad chunk size %d at payload byte %llu", size, c->payload);
            KILL(i);
            return -1;
        }
        if (2 + size > c->ccap) {
            uint8_t *nb = malloc((size_t)(2 + size));
            if (!nb)
                die("malloc");
            memcpy(nb, c->cbuf + off, (size_t)(c->clen - off));
            free(c->cbuf);
            c->cbuf = nb;
            c->ccap = 2 + size;
            c->clen -= off;
            off = 0;
        }
        if (c->clen - off < 2 + size)
            break;
        int plen = size - 16;
        if (plen == 0) {
            mismatches++;
            FAIL(i, "end chunk from the server after %llu payload bytes", c->payload);
            KILL(i);
            return -1;
        }
        if (gcm(0, c->rkey, c->riv, c->ctr++, c->cbuf + off + 2, plen, plain,
                c->cbuf + off + 2 + plen) != 0) {
            mismatches++;
            FAIL(i, "chunk %u fails authentication (payload byte %llu)", (unsigned)(c->ctr - 1), c->payload);
            KILL(i);
            return -1;
        }
        stream_fill(&c->st, want, (size_t)plen);
        if (memcmp(plain, want, (size_t)plen) != 0) {
            mismatches++;
            FAIL(i, "data differs within payload bytes %llu..%llu", c->payload,
                 c->payload + (unsigned long long)plen);
            KILL(i);
            return -1;
        }
        if (c->payload == 0)
            verified++;
        c->payload += (unsigned long long)plen;
        payload += (unsigned long long)plen;
        off += 2 + size;
    }
    if (off) {
        memmove(c->cbuf, c->cbuf + off, (size_t)(c->clen - off));
        c->clen -= off;
    }
    return (int)k;
}

static double min_ratio_now(void)
{
    double m = 1e9;
    for (int i = 0; i < n; i++)
        if (r[i].state == 3 && r[i].expected >= rate * 5) {
            double q = (double)r[i].run_bytes / r[i].expected;
            if (q < m)
                m = q;
        }
    return m > 1e8 ? -1.0 : m;
}

static void write_status(const char *ph)
{
    char text[700];
    snprintf(text, sizeof(text),
             "t=%.1f established=%d answered=%d failed=%d dead=%d bytes=%llu payload=%llu "
             "verified=%d primed=%d mismatches=%d min_ratio=%.3f phase=%s drained=%d err=%s\n",
             now() - t_begin, established, answered, failed, dead, total, payload, verified, primed,
             mismatches, min_ratio_now(), ph, drained, err);
    write_atomic(status, text);
    if (strcmp(ph, "done") == 0)
        fputs(text, stdout);
}

static int readers(void)
{
    int port = atoi(need("--port"));
    const char *reqs = need("--requests");
    n = atoi(need("--count"));
    rate = optn("--rate", 400);
    int rcvbuf = (int)optn("--rcvbuf", 4096);
    int mss = (int)optn("--mss", 0);
    int conc = (int)optn("--concurrency", 64);
    status = need("--status");
    const char *control = need("--control");
    int dcount = (int)optn("--drain-count", 0);
    double dbytes = optn("--drain-bytes", 1 << 20);
    double dtime = optn("--drain-time", 60);
    double max_time = optn("--max-time", 900);
    double prime = optn("--prime", 0);
    double prime_rate = optn("--prime-rate", 65536);
    signal(SIGPIPE, SIG_IGN);
    r = calloc((size_t)n, sizeof(*r));
    if (!r)
        die("calloc");
    FILE *rf = fopen(reqs, "r");
    if (!rf)
        die(reqs);
    static char line[2048];
    for (int i = 0; i < n; i++) {
        char *hr, *hk, *hi, *save = NULL;
        if (!fgets(line, sizeof(line), rf) || !(hr = strtok_r(line, " \n", &save)) ||
            !(hk = strtok_r(NULL, " \n", &save)) || !(hi = strtok_r(NULL, " \n", &save))) {
            fprintf(stderr, "slowpeer readers: %s: line %d: want HEX_REQUEST HEX_KEY HEX_IV\n", reqs, i + 1);
            return 2;
        }
        struct reader *c = &r[i];
        c->reqlen = unhex(hr, c->req, (int)sizeof(c->req));
        if (unhex(hk, c->key, 16) != 16 || unhex(hi, c->iv, 16) != 16 || c->reqlen < 40) {
            fprintf(stderr, "slowpeer readers: %s: line %d: bad hex\n", reqs, i + 1);
            return 2;
        }
        uint8_t h[32];
        SHA256(c->key, 16, h);
        memcpy(c->rkey, h, 16);
        SHA256(c->iv, 16, h);
        memcpy(c->riv, h, 16);
        c->skip = RESP_HEADER;
        c->ccap = 2 + 16384 + 16;
        if (!(c->cbuf = malloc((size_t)c->ccap)))
            die("malloc");
        stream_init(&c->st, (uint32_t)(1000 + i));
    }
    fclose(rf);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    int next = 0, inflight = 0, drain_on = 0;
    t_begin = now();
    double t_last = t_begin, next_status = 0, drain_deadline = 0, t_run = t_begin;
    const char *phase = "connect";
    struct epoll_event evs[256];
    for (long iter = 0; iter < 100000000L; iter++) {
        double t = now();
        double dt = t - t_last;
        t_last = t;
        if (t - t_begin > max_time) {
            FAIL(-1, "max-time reached");
            break;
        }
        /* start connections, --concurrency connects at a time */
        while (next < n && inflight < conc) {
            struct reader *c = &r[next];
            c->t_state = t;
            c->fd = start_connect(port, rcvbuf, mss);
            if (c->fd < 0) {
                FAIL(next, "connect: %s", strerror(-c->fd));
                c->state = 4;
                failed++;
            } else {
                ep_set(ep, EPOLL_CTL_ADD, c->fd, EPOLLOUT, (uint64_t)next);
                inflight++;
            }
            next++;
        }
        if (next == n && inflight == 0 && strcmp(phase, "connect") == 0)
            phase = "prime";
        if (strcmp(phase, "prime") == 0) {
            int priming = 0;
            for (int i = 0; i < n; i++)
                if (r[i].state == 3 && r[i].priming)
                    priming++;
            if (priming == 0) {
                phase = "run";
                t_run = t;
            }
        }
        for (int i = 0; i < next; i++) {
            struct reader *c = &r[i];
            if (c->state == 0 && t - c->t_state > 20) {
                FAIL(i, "connect timed out");
                close(c->fd);
                c->state = 4;
                failed++;
                inflight--;
            }
        }
        /* the control file starts the drain */
        if (!drain_on && strcmp(phase, "run") == 0 && access(control, F_OK) == 0) {
            drain_on = 1;
            phase = "drain";
            drain_deadline = t + dtime;
            for (int i = 0; i < n && i < dcount; i++) {
                struct reader *c = &r[i];
                if (c->state != 3)
                    continue;
                c->draining = 1;
                c->drain_target = c->payload + (unsigned long long)dbytes;
                ep_set(ep, EPOLL_CTL_ADD, c->fd, EPOLLIN | EPOLLRDHUP, (uint64_t)i);
            }
        }
        if (drain_on) {
            int pending = 0;
            for (int i = 0; i < n && i < dcount; i++)
                if (r[i].draining && !r[i].drained && r[i].state == 3)
                    pending++;
            if (pending == 0 || t >= drain_deadline) {
                if (pending)
                    FAIL(-1, "drain: %d readers short after %.0f s", pending, dtime);
                break;
            }
        } else if (strcmp(phase, "prime") == 0) {
            /* priming: every reader takes --prime bytes at --prime-rate */
            for (int i = 0; i < next; i++) {
                struct reader *c = &r[i];
                if (c->state != 3 || !c->priming)
                    continue;
                c->allowance += prime_rate * dt;
                if (c->allowance > 2 * prime_rate)
                    c->allowance = 2 * prime_rate;
                if (c->allowance < 1)
                    continue;
                int k = read_some(i, (size_t)c->allowance);
                if (k > 0)
                    c->allowance -= k;
                if (c->state == 3 && c->payload >= (unsigned long long)prime) {
                    c->priming = 0;
                    c->allowance = 0;
                    primed++;
                }
            }
        } else if (strcmp(phase, "run") == 0) {
            /* the slow reads: --rate while active; after the first 10 s,
             * 10 s of every 30 s paused */
            for (int i = 0; i < next; i++) {
                struct reader *c = &r[i];
                if (c->state != 3)
                    continue;
                double ph = fmod(t - t_run + 30.0 * i / n, 30.0);
                if (t - t_run >= 10.0 && ph < 10.0)
                    continue;
                c->allowance += rate * dt;
                c->expected += rate * dt;
                if (c->allowance > 2 * rate)
                    c->allowance = 2 * rate;
                if (c->allowance < 1)
                    continue;
                int k = read_some(i, (size_t)c->allowance);
                if (k > 0) {
                    c->allowance -= k;
                    c->run_bytes += (unsigned long long)k;
                }
            }
        }
        if (t >= next_status) {
            write_status(phase);
            next_status = t + 1.0;
        }
        int ne = epoll_wait(ep, evs, 256, 100);
        if (ne < 0 && errno != EINTR)
            die("epoll_wait");
        for (int e = 0; e < ne; e++) {
            int i = (int)evs[e].data.u64;
            struct reader *c = &r[i];
            if (c->state == 4)
                continue;
            if (c->state == 3) {
                /* a drained reader: read all there is */
                for (int k = 0; k < 64 && c->state == 3 && c->draining && !c->drained; k++) {
                    if (read_some(i, 1 << 20) <= 0)
                        break;
                    if (c->payload >= c->drain_target) {
                        c->drained = 1;
                        drained++;
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    }
                }
                continue;
            }
            /* connected: the request header and the first chunk ("SEED\n") */
            inflight--;
            int se = sock_error(c->fd);
            if (se) {
                FAIL(i, "connect: %s", strerror(se));
                close(c->fd);
                c->state = 4;
                failed++;
                continue;
            }
            uint8_t msg[512], seed[32], tag[16];
            int sl = snprintf((char *)seed, sizeof(seed), "%d\n", 1000 + i);
            int m = c->reqlen;
            memcpy(msg, c->req, (size_t)m);
            msg[m] = (uint8_t)((sl + 16) >> 8);
            msg[m + 1] = (uint8_t)(sl + 16);
            if (gcm(1, c->key, c->iv, 0, seed, sl, msg + m + 2, tag) != 0) {
                FAIL(i, "encrypting the first chunk failed");
                close(c->fd);
                c->state = 4;
                failed++;
                continue;
            }
            memcpy(msg + m + 2 + sl, tag, 16);
            m += 2 + sl + 16;
            if (send(c->fd, msg, (size_t)m, MSG_NOSIGNAL) != m) {
                FAIL(i, "sending the request: %s", strerror(errno));
                close(c->fd);
                c->state = 4;
                failed++;
                continue;
            }
            c->state = 3;
            c->t_state = now();
            established++;
            c->priming = prime > 0;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
    }
    for (int i = 0; i < n; i++)
        if (r[i].state != 4 && r[i].fd > 0)
            close(r[i].fd);
    write_status("done");
    return 0;
}

int main(int argc, char **argv)
{
    g_argc = argc;
    g_argv = argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "slowloris") == 0)
        return slowloris();
    if (argc >= 2 && strcmp(argv[1], "source") == 0)
        return source();
    if (argc >= 2 && strcmp(argv[1], "readers") == 0)
        return readers();
    fprintf(stderr, "usage: slowpeer slowloris|source|readers --option value ...\n");
    return 2;
}
