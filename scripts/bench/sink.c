/*
 * The bench's target: a bulk sink that checks every byte, and an echo
 * server (protocols in common.h). One thread, epoll, loopback.
 *
 *   sink [--host 127.0.0.1] [--bulk-port N] [--echo-port N] [--lifetime S]
 *
 * Ports default to 0 (the kernel picks); the sink prints
 * "ports BULK ECHO" on stdout once both listen. It exits on SIGTERM/SIGINT
 * or after --lifetime seconds (default 1800), printing its counters on
 * stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

enum kind { K_BULK_LISTEN, K_ECHO_LISTEN, K_BULK, K_ECHO };

struct conn {
    enum kind kind;
    int fd;
    /* bulk */
    uint8_t hdr[BULK_HDR];
    unsigned hdr_have;
    uint64_t total, got, bad_off;
    int acked;
    /* echo: bytes that could not be written yet */
    uint8_t *pend;
    size_t pend_len, pend_off;
};

static volatile sig_atomic_t stop;
static uint8_t *pat;
static uint8_t rbuf[512 * 1024];
static int ep;
static unsigned long n_bulk_ok, n_bulk_bad, n_echo, n_open, n_open_max;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int listen_on(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4096) != 0) {
        perror("sink: bind/listen");
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    return ntohs(a.sin_port);
}

static void conn_close(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pend);
    free(c);
    n_open--;
}

static void set_events(struct conn *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void do_accept(int lfd, enum kind kind)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                perror("sink: accept");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->kind = kind;
        c->fd = fd;
        c->bad_off = UINT64_MAX;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        if (++n_open > n_open_max)
            n_open_max = n_open;
    }
}

/* Checks n received payload bytes at stream offset c->got. */
static void bulk_check(struct conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t take = n;
        if (c->got >= c->total) {
            if (c->bad_off == UINT64_MAX)
                c->bad_off = c->got;     /* more bytes than announced */
            c->got += n;
            return;
        }
        if (take > c->total - c->got)
            take = (size_t)(c->total - c->got);
        if (c->bad_off == UINT64_MAX &&
            memcmp(p, pat + (size_t)(c->got % PATTERN_LEN), take) != 0) {
            const uint8_t *q = pat + (size_t)(c->got % PATTERN_LEN);
            size_t i = 0;
            while (i < take && p[i] == q[i])
                i++;
            c->bad_off = c->got + i;
        }
        c->got += take;
        p += take;
        n -= take;
    }
}

static void bulk_read(struct conn *c)
{
    for (int round = 0; round < 8; round++) {
        ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            if (!c->acked && c->hdr_have == BULK_HDR)
                fprintf(stderr, "sink: bulk stream closed after %llu of %llu bytes\n",
                        (unsigned long long)c->got, (unsigned long long)c->total);
            conn_close(c);
            return;
        }
        if (r < 0)
            return;
        size_t off = 0, n = (size_t)r;
        if (c->hdr_have < BULK_HDR) {
            size_t take = BULK_HDR - c->hdr_have;
            if (take > n)
                take = n;
            memcpy(c->hdr + c->hdr_have, rbuf, take);
            c->hdr_have += (unsigned)take;
            off = take;
            if (c->hdr_have == BULK_HDR) {
                if (memcmp(c->hdr, BULK_MAGIC, 8) != 0) {
                    fprintf(stderr, "sink: bad bulk header\n");
                    n_bulk_bad++;
                    conn_close(c);
                    return;
                }
                c->total = get_le64(c->hdr + 8);
            }
        }
        if (c->hdr_have == BULK_HDR)
            bulk_check(c, rbuf + off, n - off);
        if (c->hdr_have == BULK_HDR && !c->acked && c->got >= c->total) {
            uint8_t ack[BULK_ACK];
            put_le64(ack, c->got);
            put_le64(ack + 8, c->bad_off);
            c->acked = 1;
            if (c->bad_off == UINT64_MAX)
                n_bulk_ok++;
            else {
                n_bulk_bad++;
                fprintf(stderr, "sink: bulk bytes differ at offset %llu\n",
                        (unsigned long long)c->bad_off);
            }
            if (send(c->fd, ack, sizeof(ack), MSG_NOSIGNAL) != (ssize_t)sizeof(ack)) {
                conn_close(c);
                return;
            }
        }
        if ((size_t)r < sizeof(rbuf))
            return;
    }
}

static void echo_flush(struct conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t w = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off,
                         MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            conn_close(c);
            return;
        }
        c->pend_off += (size_t)w;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_off = 0;
    set_events(c, EPOLLIN);
}

static void echo_read(struct conn *c)
{
    ssize_t r = recv(c->fd, rbuf, 65536, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (r < 0)
        return;
    n_echo += (unsigned long)r;
    ssize_t w = send(c->fd, rbuf, (size_t)r, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
        conn_close(c);
        return;
    }
    if (w < 0)
        w = 0;
    if (w < r) {
        c->pend_len = (size_t)(r - w);
        c->pend = malloc(c->pend_len);
        if (!c->pend) {
            conn_close(c);
            return;
        }
        memcpy(c->pend, rbuf + w, c->pend_len);
        c->pend_off = 0;
        set_events(c, EPOLLOUT);
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int bport = 0, eport = 0;
    double lifetime = 1800;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--bulk-port") && i + 1 < argc)
            bport = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--echo-port") && i + 1 < argc)
            eport = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--lifetime") && i + 1 < argc)
            lifetime = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: sink [--host H] [--bulk-port N] [--echo-port N] [--lifetime S]\n");
            return 2;
        }
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pat = pattern_new();
    ep = epoll_create1(EPOLL_CLOEXEC);
    int lb = listen_on(host, bport), le = listen_on(host, eport);
    if (!pat || ep < 0 || lb < 0 || le < 0)
        return 1;
    static struct conn lbc = { .kind = K_BULK_LISTEN }, lec = { .kind = K_ECHO_LISTEN };
    lbc.fd = lb;
    lec.fd = le;
    struct epoll_event e1 = { .events = EPOLLIN, .data.ptr = &lbc };
    struct epoll_event e2 = { .events = EPOLLIN, .data.ptr = &lec };
    epoll_ctl(ep, EPOLL_CTL_ADD, lb, &e1);
    epoll_ctl(ep, EPOLL_CTL_ADD, le, &e2);
    printf("ports %d %d\n", bound_port(lb), bound_port(le));
    fflush(stdout);

    double end = now_s() + lifetime;
    struct epoll_event evs[256];
    while (!stop && now_s() < end) {
        int n = epoll_wait(ep, evs, 256, 500);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            switch (c->kind) {
            case K_BULK_LISTEN: do_accept(c->fd, K_BULK); break;
            case K_ECHO_LISTEN: do_accept(c->fd, K_ECHO); break;
            case K_BULK: bulk_read(c); break;
            case K_ECHO:
                if (evs[i].events & EPOLLOUT)
                    echo_flush(c);
                else
                    echo_read(c);
                break;
            }
        }
    }
    fprintf(stderr, "sink: bulk ok %lu bad %lu, echoed %lu bytes, most open %lu\n",
            n_bulk_ok, n_bulk_bad, n_echo, n_open_max);
    return 0;
}
