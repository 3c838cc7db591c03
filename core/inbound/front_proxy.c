/*
 * The front stage "proxy_protocol" (front.h): an inbound with
 * `proxy_protocol = true` sits behind a proxy (HAProxy `send-proxy` /
 * `send-proxy-v2`, nginx `proxy_protocol on`, a load balancer) that puts a
 * PROXY protocol header (stream/proxyproto.h) before the client's bytes.
 *
 * - The header is read from the socket itself, first, before TLS or
 *   anything else, and exactly the header: the bytes after it stay in the
 *   socket for the next stage (TLS reads its ClientHello from there; VMess
 *   reads through lr_conn_read_client), so no stage has to look for bytes
 *   left behind.  The usual header comes whole in one segment: one peek
 *   finds it, one read takes it off.  A header cut into pieces is taken
 *   off as it comes (never more than the header can be: a v1 line is
 *   taken only up to its CRLF, v2 up to its length), so a partial header
 *   never leaves the socket readable with nothing new to read.
 * - Whom to believe (as nginx's `set_real_ip_from`): the header's source
 *   becomes the client (c->src: access log, max_ips, policies, hooks' ctx.src)
 *   only when the TCP peer is in the inbound's trusted_proxies; from any
 *   other peer the header is still required and read, and its addresses
 *   are ignored: the peer stays the client.  LOCAL (v2) and UNKNOWN (v1)
 *   headers keep the peer too, as the spec says (health checks).
 * - A missing or malformed header closes the connection at once, as
 *   HAProxy and nginx do: a PROXY port is never public-facing without its
 *   proxy, so what comes without a header is a misconfigured proxy or a
 *   prober that reached a port it should not see, and the proxy in front
 *   gets a clean close rather than a connection held to the deadline.  It
 *   does not go to the fallback (the header is the proxy's framing, not the
 *   client's bytes).  The header must come within handshake_timeout.
 * - The accept hook of such an inbound runs here, once the header is read,
 *   so its ctx.src is the client too (lr_dispatch_accept_hook skips it at
 *   accept).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"
#include "inbound/front.h"
#include "stream/proxyproto.h"

struct pp_state {
    uint8_t buf[LR_PP_PEEK];     /* a header cut into pieces, so far */
    uint32_t have;
    uint32_t skip;               /* header bytes still to take off (v2 TLVs) */
    uint8_t parsed;              /* the addresses are read: only skipping left */
};

/* recv on the client socket, EINTR retried: > 0, 0 EOF, -errno */
static ssize_t sock_recv(int fd, void *buf, size_t n, int flags)
{
    for (;;) {
        ssize_t r = recv(fd, buf, n, flags);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -errno;
    }
}

static int debugging(void)
{
    return atomic_load_explicit(&lr_log_level, memory_order_relaxed) <= LR_LOG_DEBUG;
}

static void closed(struct lr_conn *c, const char *reason, const char *detail)
{
    if (debugging()) {
        char peer[64];
        lr_addr_str(&c->peer, peer, sizeof(peer));
        lr_debug("conn %llu: %s from %s%s%s", (unsigned long long)c->id, reason, peer,
                 detail ? ": " : "", detail ? detail : "");
    }
    if (detail)
        snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", detail);
    lr_conn_close(c, reason);
}

/* The header is read: believe it or not, then the accept hook. */
static int header_done(struct lr_conn *c, const struct lr_pp_hdr *h)
{
    if (!h->local && lr_front_trusted(c->ib, &c->peer)) {
        lr_addr_from_bytes(h->src_ip, h->ip_len, h->src_port, &c->src);
        if (debugging()) {
            char src[64], peer[64];
            lr_addr_str(&c->src, src, sizeof(src));
            lr_addr_str(&c->peer, peer, sizeof(peer));
            lr_debug("conn %llu: client %s (PROXY v%d header from %s)",
                     (unsigned long long)c->id, src, h->version, peer);
        }
    } else if (!h->local && debugging()) {
        char peer[64];
        lr_addr_str(&c->peer, peer, sizeof(peer));
        lr_debug("conn %llu: PROXY header from %s ignored: not a trusted proxy",
                 (unsigned long long)c->id, peer);
    }
    if (lr_dispatch_accept_hook_conn(c) != 0) {
        lr_conn_close(c, "refused by accept hook");
        return LR_FRONT_CLOSED;
    }
    return LR_FRONT_DONE;
}

static int pp_run(struct lr_conn *c, void **stp)
{
    struct pp_state *st = *stp;
    int fd = c->cli.fd;
    for (;;) {
        if (st && st->parsed) {
            /* the rest of a v2 header (its TLVs): taken off unread */
            uint8_t scratch[512];
            size_t want = st->skip < sizeof(scratch) ? st->skip : sizeof(scratch);
            ssize_t r = sock_recv(fd, scratch, want, 0);
            if (r == -EAGAIN || r == -EWOULDBLOCK)
                return LR_FRONT_AGAIN;
            if (r <= 0) {
                closed(c, r == 0 ? "eof in the PROXY header" : "read failed", NULL);
                return LR_FRONT_CLOSED;
            }
            st->skip -= (uint32_t)r;
            if (st->skip == 0)
                return LR_FRONT_DONE; /* c->src was set when it was parsed */
            continue;
        }
        /* what is already here, after what earlier pieces brought */
        uint8_t tmp[LR_PP_PEEK];
        uint8_t *buf = st ? st->buf : tmp;
        uint32_t have = st ? st->have : 0;
        if (have >= sizeof(tmp)) {
            /* cannot happen: LR_PP_PEEK bytes always decide */
            closed(c, "bad PROXY header", "too long");
            return LR_FRONT_CLOSED;
        }
        ssize_t r = sock_recv(fd, buf + have, sizeof(tmp) - have, MSG_PEEK);
        if (r == -EAGAIN || r == -EWOULDBLOCK)
            return LR_FRONT_AGAIN;
        if (r <= 0) {
            closed(c, r == 0 ? (have ? "eof in the PROXY header" : "no PROXY header")
                             : "read failed", NULL);
            return LR_FRONT_CLOSED;
        }
        size_t n = have + (size_t)r;
        struct lr_pp_hdr h;
        const char *why = NULL;
        int rc = lr_pp_parse(buf, n, &h, &why);
        if (rc == LR_PP_BAD) {
            closed(c, "bad PROXY header", why);
            return LR_FRONT_CLOSED;
        }
        /* take off the header's bytes among those peeked (all of them
         * while it is incomplete: they are all header) */
        size_t take = (size_t)r;
        if (rc == LR_PP_OK && h.len < n)
            take = h.len - have;
        if (!st && (rc == LR_PP_AGAIN || h.len > n)) {
            /* in pieces: keep them (rare; a header normally comes whole) */
            st = *stp = calloc(1, sizeof(*st));
            if (!st) {
                lr_conn_close(c, "out of memory");
                return LR_FRONT_CLOSED;
            }
            memcpy(st->buf, tmp, n);
            buf = st->buf;
        }
        /* the same bytes again, now taken off the socket */
        ssize_t got = sock_recv(fd, buf + have, take, 0);
        if (got != (ssize_t)take) {
            /* the kernel had these bytes a moment ago */
            closed(c, "read failed", NULL);
            return LR_FRONT_CLOSED;
        }
        if (rc == LR_PP_AGAIN) {
            st->have = (uint32_t)n;
            continue; /* peek again: EAGAIN until the next piece */
        }
        if (h.len <= n)
            return header_done(c, &h);
        /* a v2 header whose TLVs go on past what was here */
        st->parsed = 1;
        st->skip = (uint32_t)(h.len - n);
        int d = header_done(c, &h);
        if (d != LR_FRONT_DONE)
            return d;
    }
}

const struct lr_front_stage lr_front_proxy_stage = {
    .name = "proxy_protocol",
    .run = pp_run,
    .free_st = free,
};
