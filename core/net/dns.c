/*
 * c-ares on libev.  c-ares tells us which sockets it wants watched
 * (sock_state_cb); we keep one ev_io per socket and a timer for its
 * retransmissions.  Answers go to a pending list that an ev_idle watcher
 * delivers, because ares_getaddrinfo may answer synchronously (numbers,
 * /etc/hosts) and callers must never be re-entered.  A cancelled request
 * stays allocated until c-ares is done with it, then is freed silently.
 * Each worker thread has its own channel on its own loop (thread-local
 * state); the c-ares library itself is initialised and cleaned up under a
 * lock, since ares_library_init is not thread-safe.
 */
#include <ares.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "net/dns.h"

#define MAX_WATCH 16

struct lr_dns_req {
    struct lr_dns_req *next;      /* pending delivery */
    lr_dns_fn cb;
    void *ud;
    int cancelled;
    int err;
    int naddrs;
    struct lr_addr addrs[LR_DNS_MAX_ADDRS];
};

struct watch {
    ev_io io;
    int fd;
};

static __thread struct ev_loop *dns_loop;
static __thread ares_channel channel;
static __thread int ready;
static __thread struct watch watches[MAX_WATCH];
static __thread ev_timer tick;
static __thread ev_idle deliver;
static __thread struct lr_dns_req *pending, **pending_tail;
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct watch *wt = (struct watch *)w;
    ares_process_fd(channel, (revents & EV_READ) ? wt->fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? wt->fd : ARES_SOCKET_BAD);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable,
                          int writable)
{
    struct watch *free_slot = NULL;
    for (int i = 0; i < MAX_WATCH; i++) {
        struct watch *w = &watches[i];
        if (w->fd == fd) {
            ev_io_stop(dns_loop, &w->io);
            if (!readable && !writable) {
                w->fd = -1;
                return;
            }
            ev_io_set(&w->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
            ev_io_start(dns_loop, &w->io);
            return;
        }
        if (w->fd < 0 && !free_slot)
            free_slot = w;
    }
    if ((!readable && !writable) || !free_slot) {
        if (free_slot == NULL && (readable || writable))
            lr_warn("dns: too many resolver sockets");
        return;
    }
    free_slot->fd = fd;
    ev_io_init(&free_slot->io, io_cb, fd,
               (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(dns_loop, &free_slot->io);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static void deliver_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct lr_dns_req *list = pending;
    pending = NULL;
    pending_tail = &pending;
    ev_idle_stop(loop, w);
    while (list) {
        struct lr_dns_req *r = list;
        list = r->next;
        if (!r->cancelled)
            r->cb(r->ud, r->err, r->addrs, r->naddrs);
        free(r);
    }
}

static void queue(struct lr_dns_req *r)
{
    r->next = NULL;
    if (!pending_tail)
        pending_tail = &pending;
    *pending_tail = r;
    pending_tail = &r->next;
    ev_idle_start(dns_loop, &deliver);
}

static void gai_cb(void *arg, int status, int timeouts,
                   struct ares_addrinfo *res)
{
    struct lr_dns_req *r = arg;
    r->naddrs = 0;
    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *n = res->nodes;
             n && r->naddrs < LR_DNS_MAX_ADDRS; n = n->ai_next) {
            struct lr_addr *a = &r->addrs[r->naddrs];
            if (n->ai_addrlen > sizeof(a->ss))
                continue;
            memset(a, 0, sizeof(*a));
            memcpy(&a->ss, n->ai_addr, n->ai_addrlen);
            a->len = n->ai_addrlen;
            r->naddrs++;
        }
    }
    if (res)
        ares_freeaddrinfo(res);
    r->err = r->naddrs ? 0 : -EHOSTUNREACH;
    if (status == ARES_EDESTRUCTION) {
        free(r);
        return;
    }
    queue(r);
}

int lr_dns_init(struct ev_loop *loop)
{
    struct ares_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.sock_state_cb = sock_state_cb;
    opt.timeout = 2000;
    opt.tries = 2;
    pending = NULL;
    pending_tail = &pending;
    pthread_mutex_lock(&lib_lock);
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    pthread_mutex_unlock(&lib_lock);
    if (rc != ARES_SUCCESS)
        return -1;
    if (ares_init_options(&channel, &opt,
                          ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                              ARES_OPT_TRIES) != ARES_SUCCESS) {
        pthread_mutex_lock(&lib_lock);
        ares_library_cleanup();
        pthread_mutex_unlock(&lib_lock);
        return -1;
    }
    dns_loop = loop;
    for (int i = 0; i < MAX_WATCH; i++)
        watches[i].fd = -1;
    ev_timer_init(&tick, tick_cb, 0.5, 0.5);
    ev_timer_start(loop, &tick);
    ev_unref(loop); /* the tick alone must not keep the loop alive */
    ev_idle_init(&deliver, deliver_cb);
    ready = 1;
    return 0;
}

void lr_dns_shutdown(void)
{
    if (!ready)
        return;
    ev_ref(dns_loop);
    ev_timer_stop(dns_loop, &tick);
    ares_destroy(channel);
    for (int i = 0; i < MAX_WATCH; i++)
        if (watches[i].fd >= 0)
            ev_io_stop(dns_loop, &watches[i].io);
    ev_idle_stop(dns_loop, &deliver);
    while (pending) {
        struct lr_dns_req *r = pending;
        pending = r->next;
        free(r);
    }
    pending_tail = &pending;
    pthread_mutex_lock(&lib_lock);
    ares_library_cleanup();
    pthread_mutex_unlock(&lib_lock);
    ready = 0;
}

struct lr_dns_req *lr_dns_resolve(const char *host, uint16_t port, int family,
                                  lr_dns_fn cb, void *ud)
{
    struct lr_dns_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cb = cb;
    r->ud = ud;
    /* numbers never go to the resolver */
    if (lr_addr_parse(host, port, &r->addrs[0]) == 0) {
        r->naddrs = 1;
        queue(r);
        return r;
    }
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    ares_getaddrinfo(channel, host, portstr, &hints, gai_cb, r);
    return r;
}

void lr_dns_cancel(struct lr_dns_req *r)
{
    if (r)
        r->cancelled = 1;
}
