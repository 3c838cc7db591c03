/*
 * The HTTP/1.1 client of httpc.h.  One request, one connection, one state
 * machine driven by a single ev_io (its events follow what the socket or
 * OpenSSL waits for) and one ev_timer for the whole request's deadline:
 *
 *   resolve (dns.h, always answered from the loop)
 *   -> connect (each address in turn, until one accepts)
 *   -> TLS handshake (https)
 *   -> write the request
 *   -> read the response (http_resp.h) until it is complete or the server
 *      closes
 *
 * and then the callback, once.  What the request sends: the method and
 * the path with its query, Host (unless given), User-Agent (unless given),
 * Content-Length when there is a body (or the method is POST, PUT or
 * PATCH), "Connection: close", and the caller's fields; Content-Length,
 * Transfer-Encoding and Connection are refused from the caller, since the
 * framing is ours.
 *
 * TLS: OpenSSL with TLS 1.2 or newer; the server is verified against the
 * system store (plus `ca`), and its name (or IP address) against the
 * certificate, unless `insecure`.  Contexts are cached per (insecure, ca),
 * a few of them; a close without close_notify ends a body that is
 * delimited by the close, as browsers take it (SSL_OP_IGNORE_UNEXPECTED_EOF).
 */
#include <errno.h>
#include <stdarg.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/base.h"
#include "net/dns.h"
#include "net/http_resp.h"
#include "net/httpc.h"
#include "net/sock.h"

enum { H_RESOLVE, H_CONNECT, H_HANDSHAKE, H_WRITE, H_READ };

struct lr_httpc {
    struct ev_loop *loop;
    lr_httpc_fn cb;
    void *ud;
    char host[256];              /* without brackets */
    uint16_t port;
    int tls, insecure;
    char *req;                   /* the request's bytes */
    size_t req_len, req_off;
    struct lr_dns_req *dns;
    struct lr_addr addrs[LR_DNS_MAX_ADDRS];
    int naddrs, ai;
    int fd;
    int state;
    ev_io io;
    ev_timer timer;
    double timeout;
    SSL_CTX *ctx;
    SSL *ssl;
    struct lr_http_resp resp;
    char why[256];               /* the last connect error */
};

/* ------------------------------------------------------------ TLS contexts */

#define CTX_CACHE 8

static struct {
    SSL_CTX *ctx;
    int insecure;
    char *ca;
} ctx_cache[CTX_CACHE];

static SSL_CTX *ctx_new(int insecure, const char *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot make a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        ERR_clear_error(); /* no system store: only `ca` then */
    if (ca && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        char e[160];
        ERR_error_string_n(ERR_get_error(), e, sizeof(e));
        ERR_clear_error();
        snprintf(err, errlen, "ca: cannot load '%s': %s", ca, e);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* A context for (insecure, ca), with a reference the caller owns. */
static SSL_CTX *ctx_get(int insecure, const char *ca, char *err, size_t errlen)
{
    int free_slot = -1;
    for (int i = 0; i < CTX_CACHE; i++) {
        if (!ctx_cache[i].ctx) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (ctx_cache[i].insecure == insecure &&
            ((!ca && !ctx_cache[i].ca) || (ca && ctx_cache[i].ca && strcmp(ca, ctx_cache[i].ca) == 0))) {
            SSL_CTX_up_ref(ctx_cache[i].ctx);
            return ctx_cache[i].ctx;
        }
    }
    SSL_CTX *ctx = ctx_new(insecure, ca, err, errlen);
    if (ctx && free_slot >= 0) {
        char *c = ca ? strdup(ca) : NULL;
        if (!ca || c) {
            ctx_cache[free_slot].ctx = ctx;
            ctx_cache[free_slot].insecure = insecure;
            ctx_cache[free_slot].ca = c;
            SSL_CTX_up_ref(ctx);
        }
    }
    return ctx;
}

void lr_httpc_shutdown(void)
{
    for (int i = 0; i < CTX_CACHE; i++) {
        SSL_CTX_free(ctx_cache[i].ctx);
        free(ctx_cache[i].ca);
        memset(&ctx_cache[i], 0, sizeof(ctx_cache[i]));
    }
}

/* ------------------------------------------------------------ the request */

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Splits the URL: scheme, host, port, and the request target (path and
 * query).  0, or -1 with err set. */
static int parse_url(const char *url, struct lr_httpc *h, const char **target,
                     size_t *target_len, char *err, size_t errlen)
{
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "url: spaces and control characters are not allowed");
            return -1;
        }
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        h->tls = 0;
        h->port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        h->tls = 1;
        h->port = 443;
    } else {
        snprintf(err, errlen, "url: want http://host[:port]/path or https://...");
        return -1;
    }
    size_t alen = strcspn(p, "/?#");
    if (memchr(p, '@', alen)) {
        snprintf(err, errlen, "url: user information (user@host) is not supported");
        return -1;
    }
    const char *hb = p, *he, *ae = p + alen, *port = NULL;
    if (*p == '[') {
        hb = p + 1;
        he = memchr(hb, ']', (size_t)(ae - hb));
        if (!he) {
            snprintf(err, errlen, "url: unterminated [IPv6 address]");
            return -1;
        }
        if (he + 1 < ae) {
            if (he[1] != ':') {
                snprintf(err, errlen, "url: bad authority");
                return -1;
            }
            port = he + 2;
        }
    } else {
        he = memchr(p, ':', alen);
        if (he)
            port = he + 1;
        else
            he = ae;
    }
    if (he == hb || (size_t)(he - hb) >= sizeof(h->host)) {
        snprintf(err, errlen, "url: %s host", he == hb ? "no" : "too long a");
        return -1;
    }
    memcpy(h->host, hb, (size_t)(he - hb));
    h->host[he - hb] = 0;
    if (port) {
        unsigned long v = 0;
        if (port == ae) {
            snprintf(err, errlen, "url: empty port");
            return -1;
        }
        for (const char *q = port; q < ae; q++) {
            if (*q < '0' || *q > '9' || (v = v * 10 + (unsigned long)(*q - '0')) > 65535) {
                snprintf(err, errlen, "url: bad port");
                return -1;
            }
        }
        if (v == 0) {
            snprintf(err, errlen, "url: bad port");
            return -1;
        }
        h->port = (uint16_t)v;
    }
    *target = ae;
    *target_len = strcspn(ae, "#");
    return 0;
}

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 512;
        while (c < b->len + n + 1)
            c *= 2;
        char *np = realloc(b->p, c);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Checks the caller's "Name: value\r\n" lines; *has_host / *has_ua when
 * they give those.  0, or -1 with err set. */
static int check_headers(const char *s, size_t n, int *has_host, int *has_ua, char *err,
                         size_t errlen)
{
    size_t i = 0;
    while (i < n) {
        const char *line = s + i;
        const char *crlf = NULL;
        for (size_t k = i; k + 1 < n; k++)
            if (s[k] == '\r' && s[k + 1] == '\n') {
                crlf = s + k;
                break;
            }
        if (!crlf) {
            snprintf(err, errlen, "headers: each line must end with CR LF");
            return -1;
        }
        size_t len = (size_t)(crlf - line), k = 0;
        while (k < len && is_tchar((unsigned char)line[k]))
            k++;
        if (k == 0 || k >= len || line[k] != ':') {
            snprintf(err, errlen, "headers: bad field name in '%.*s'", (int)(len > 40 ? 40 : len),
                     line);
            return -1;
        }
        for (size_t v = k + 1; v < len; v++)
            if (((unsigned char)line[v] < 0x20 && line[v] != '\t') || line[v] == 0x7f) {
                snprintf(err, errlen, "headers: control character in the value of '%.*s'",
                         (int)k, line);
                return -1;
            }
        static const char *const ours[] = {"content-length", "transfer-encoding", "connection"};
        for (size_t o = 0; o < LR_ARRAY_LEN(ours); o++)
            if (strlen(ours[o]) == k && strncasecmp(line, ours[o], k) == 0) {
                snprintf(err, errlen, "headers: %s is set by luaray.http.request", ours[o]);
                return -1;
            }
        if (k == 4 && strncasecmp(line, "host", 4) == 0)
            *has_host = 1;
        if (k == 10 && strncasecmp(line, "user-agent", 10) == 0)
            *has_ua = 1;
        i += len + 2;
    }
    return 0;
}

static int build_request(struct lr_httpc *h, const struct lr_httpc_opts *o, const char *target,
                         size_t target_len, char *err, size_t errlen)
{
    const char *m = o->method ? o->method : "GET";
    size_t mlen = strlen(m);
    if (mlen == 0 || mlen > 32) {
        snprintf(err, errlen, "method: a token of 1-32 characters");
        return -1;
    }
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)m[i])) {
            snprintf(err, errlen, "method: a token of 1-32 characters");
            return -1;
        }
    int has_host = 0, has_ua = 0;
    if (o->headers && check_headers(o->headers, o->headers_len, &has_host, &has_ua, err,
                                    errlen) != 0)
        return -1;
    struct sbuf b = {0};
    sb_add(&b, m, mlen);
    sb_str(&b, " ");
    if (target_len == 0 || *target != '/')
        sb_str(&b, "/");
    sb_add(&b, target, target_len);
    sb_str(&b, " HTTP/1.1\r\n");
    if (!has_host) {
        char hb[300];
        int v6 = strchr(h->host, ':') != NULL;
        int dflt = h->port == (h->tls ? 443 : 80);
        if (dflt)
            snprintf(hb, sizeof(hb), "Host: %s%s%s\r\n", v6 ? "[" : "", h->host, v6 ? "]" : "");
        else
            snprintf(hb, sizeof(hb), "Host: %s%s%s:%u\r\n", v6 ? "[" : "", h->host,
                     v6 ? "]" : "", h->port);
        sb_str(&b, hb);
    }
    if (!has_ua) {
        sb_str(&b, "User-Agent: luaray/");
        sb_str(&b, lr_version());
        sb_str(&b, "\r\n");
    }
    if (o->headers)
        sb_add(&b, o->headers, o->headers_len);
    int wants_len = o->body || strcasecmp(m, "POST") == 0 || strcasecmp(m, "PUT") == 0 ||
                    strcasecmp(m, "PATCH") == 0;
    if (wants_len) {
        char cl[48];
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", o->body ? o->body_len : 0);
        sb_str(&b, cl);
    }
    sb_str(&b, "Connection: close\r\n\r\n");
    if (o->body)
        sb_add(&b, o->body, o->body_len);
    if (b.oom) {
        free(b.p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->req = b.p;
    h->req_len = b.len;
    return 0;
}

/* ------------------------------------------------------------ the machine */

static void free_req(struct lr_httpc *h)
{
    ev_io_stop(h->loop, &h->io);
    ev_timer_stop(h->loop, &h->timer);
    if (h->dns)
        lr_dns_cancel(h->dns);
    if (h->ssl)
        SSL_free(h->ssl);
    if (h->ctx)
        SSL_CTX_free(h->ctx);
    if (h->fd >= 0)
        close(h->fd);
    lr_http_resp_deinit(&h->resp);
    free(h->req);
    free(h);
}

/* The end: the callback (err NULL: the response), then free. */
static void finish(struct lr_httpc *h, const char *err)
{
    struct lr_httpc_result r;
    memset(&r, 0, sizeof(r));
    r.err = err;
    if (!err) {
        r.status = h->resp.status;
        r.fields = h->resp.fields ? h->resp.fields : "";
        r.fields_len = h->resp.fields_len;
        r.body = h->resp.body ? h->resp.body : "";
        r.body_len = h->resp.body_len;
    }
    ev_io_stop(h->loop, &h->io);
    ev_timer_stop(h->loop, &h->timer);
    h->cb(h->ud, &r);
    free_req(h);
}

static void finishf(struct lr_httpc *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void finishf(struct lr_httpc *h, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    finish(h, buf);
}

static void watch(struct lr_httpc *h, int events)
{
    if (ev_is_active(&h->io) && (h->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(h->loop, &h->io);
    ev_io_set(&h->io, h->fd, events);
    ev_io_start(h->loop, &h->io);
}

static const char *where(struct lr_httpc *h, char *buf, size_t n)
{
    int v6 = strchr(h->host, ':') != NULL;
    snprintf(buf, n, "%s%s%s:%u", v6 ? "[" : "", h->host, v6 ? "]" : "", h->port);
    return buf;
}

static void try_connect(struct lr_httpc *h);

static void tls_failed(struct lr_httpc *h, const char *stage)
{
    char w[300], e[200];
    long vr = SSL_get_verify_result(h->ssl);
    unsigned long code = ERR_get_error();
    if (!h->insecure && vr != X509_V_OK)
        snprintf(e, sizeof(e), "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (code)
        ERR_error_string_n(code, e, sizeof(e));
    else
        snprintf(e, sizeof(e), "%s", errno ? strerror(errno) : "connection closed");
    ERR_clear_error();
    finishf(h, "TLS %s with %s: %s", stage, where(h, w, sizeof(w)), e);
}

/* 1 done, 0 waiting (io set), -1 finished with an error */
static int ssl_step(struct lr_httpc *h, int rc, const char *stage)
{
    int e = SSL_get_error(h->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        watch(h, EV_READ);
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        watch(h, EV_WRITE);
        return 0;
    }
    tls_failed(h, stage);
    return -1;
}

static void do_read(struct lr_httpc *h)
{
    uint8_t buf[16384];
    for (int round = 0; round < 64; round++) {
        ssize_t n;
        if (h->ssl) {
            ERR_clear_error();
            int r = SSL_read(h->ssl, buf, sizeof(buf));
            if (r <= 0) {
                int e = SSL_get_error(h->ssl, r);
                if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && r == 0)) {
                    n = 0;
                } else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    watch(h, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
                    return;
                } else {
                    tls_failed(h, "read");
                    return;
                }
            } else {
                n = r;
            }
        } else {
            n = read(h->fd, buf, sizeof(buf));
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return;
                char w[300];
                finishf(h, "read from %s: %s", where(h, w, sizeof(w)), strerror(errno));
                return;
            }
        }
        if (n == 0) {
            if (lr_http_resp_eof(&h->resp) == LR_OK)
                finish(h, NULL);
            else
                finishf(h, "%s", lr_http_resp_why(&h->resp));
            return;
        }
        size_t used;
        int rc = lr_http_resp_feed(&h->resp, buf, (size_t)n, &used);
        if (rc == LR_OK) {
            finish(h, NULL);
            return;
        }
        if (rc != LR_AGAIN) {
            finishf(h, "%s", lr_http_resp_why(&h->resp));
            return;
        }
    }
    /* plenty read this round: the loop comes back (the socket stays
     * readable; bytes OpenSSL holds already are handed in as an event) */
    if (h->ssl && SSL_pending(h->ssl) > 0)
        ev_feed_event(h->loop, &h->io, EV_READ);
}

static void do_write(struct lr_httpc *h)
{
    while (h->req_off < h->req_len) {
        size_t left = h->req_len - h->req_off;
        if (h->ssl) {
            ERR_clear_error();
            int r = SSL_write(h->ssl, h->req + h->req_off, left > 65536 ? 65536 : (int)left);
            if (r <= 0) {
                ssl_step(h, r, "write");
                return;
            }
            h->req_off += (size_t)r;
        } else {
            ssize_t r = send(h->fd, h->req + h->req_off, left, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    watch(h, EV_WRITE);
                    return;
                }
                char w[300];
                finishf(h, "write to %s: %s", where(h, w, sizeof(w)), strerror(errno));
                return;
            }
            h->req_off += (size_t)r;
        }
    }
    h->state = H_READ;
    watch(h, EV_READ);
}

static void do_handshake(struct lr_httpc *h)
{
    ERR_clear_error();
    int r = SSL_connect(h->ssl);
    if (r == 1) {
        h->state = H_WRITE;
        do_write(h);
        return;
    }
    ssl_step(h, r, "handshake");
}

static int tls_setup(struct lr_httpc *h)
{
    if (!(h->ssl = SSL_new(h->ctx)) || SSL_set_fd(h->ssl, h->fd) != 1) {
        finish(h, "TLS: out of memory");
        return -1;
    }
    struct lr_addr a;
    int numeric = lr_addr_parse(h->host, 0, &a) == 0;
    if (!numeric)
        SSL_set_tlsext_host_name(h->ssl, h->host);
    if (!h->insecure) {
        int ok = numeric ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h->ssl), h->host)
                         : SSL_set1_host(h->ssl, h->host);
        if (ok != 1) {
            finish(h, "TLS: cannot set the name to verify");
            return -1;
        }
    }
    return 0;
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lr_httpc *h = (struct lr_httpc *)((char *)w - offsetof(struct lr_httpc, io));
    switch (h->state) {
    case H_CONNECT: {
        int rc = lr_sock_connect_result(h->fd);
        if (rc != 0) {
            char a[80];
            lr_addr_str(&h->addrs[h->ai], a, sizeof(a));
            snprintf(h->why, sizeof(h->why), "connect %s: %s", a, strerror(-rc));
            ev_io_stop(loop, &h->io);
            close(h->fd);
            h->fd = -1;
            h->ai++;
            try_connect(h);
            return;
        }
        lr_sock_tune(h->fd);
        if (h->tls) {
            if (tls_setup(h) != 0)
                return;
            h->state = H_HANDSHAKE;
            do_handshake(h);
        } else {
            h->state = H_WRITE;
            do_write(h);
        }
        return;
    }
    case H_HANDSHAKE:
        do_handshake(h);
        return;
    case H_WRITE:
        do_write(h);
        return;
    case H_READ:
        do_read(h);
        return;
    }
}

static void try_connect(struct lr_httpc *h)
{
    while (h->ai < h->naddrs) {
        int fd = lr_sock_connect(&h->addrs[h->ai]);
        if (fd >= 0) {
            h->fd = fd;
            h->state = H_CONNECT;
            ev_io_init(&h->io, io_cb, fd, EV_WRITE);
            ev_io_start(h->loop, &h->io);
            return;
        }
        char a[80];
        lr_addr_str(&h->addrs[h->ai], a, sizeof(a));
        snprintf(h->why, sizeof(h->why), "connect %s: %s", a, strerror(-fd));
        h->ai++;
    }
    finish(h, h->why[0] ? h->why : "no address to connect to");
}

static void dns_cb(void *ud, int err, const struct lr_addr *addrs, int naddrs)
{
    struct lr_httpc *h = ud;
    h->dns = NULL;
    if (err || naddrs <= 0) {
        finishf(h, "cannot resolve %s: %s", h->host, err ? strerror(-err) : "no address");
        return;
    }
    h->naddrs = naddrs > LR_DNS_MAX_ADDRS ? LR_DNS_MAX_ADDRS : naddrs;
    memcpy(h->addrs, addrs, sizeof(*addrs) * (size_t)h->naddrs);
    try_connect(h);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_httpc *h = (struct lr_httpc *)((char *)w - offsetof(struct lr_httpc, timer));
    static const char *const stage[] = {"resolving", "connecting", "in the TLS handshake",
                                        "sending the request", "reading the response"};
    char ws[300];
    finishf(h, "timeout after %g s %s (%s)", h->timeout, stage[h->state],
            where(h, ws, sizeof(ws)));
}

struct lr_httpc *lr_httpc_start(struct ev_loop *loop, const struct lr_httpc_opts *o,
                                lr_httpc_fn cb, void *ud, char *err, size_t errlen)
{
    struct lr_httpc *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->loop = loop;
    h->cb = cb;
    h->ud = ud;
    h->fd = -1;
    h->insecure = o->insecure;
    h->timeout = o->timeout > 0 ? o->timeout : 10;
    lr_http_resp_init(&h->resp, 0, o->max_body,
                      o->method && strcasecmp(o->method, "HEAD") == 0);
    const char *target;
    size_t target_len;
    if (!o->url || parse_url(o->url, h, &target, &target_len, err, errlen) != 0 ||
        build_request(h, o, target, target_len, err, errlen) != 0)
        goto fail;
    if (h->tls && !(h->ctx = ctx_get(o->insecure, o->ca, err, errlen)))
        goto fail;
    /* the deadline counts from now, not from the start of this loop turn
     * (a control coroutine may have run for a while in it) */
    ev_now_update(loop);
    ev_timer_init(&h->timer, timer_cb, h->timeout, 0.);
    ev_timer_start(loop, &h->timer);
    ev_init(&h->io, io_cb);
    h->state = H_RESOLVE;
    if (!(h->dns = lr_dns_resolve(h->host, h->port, 0, dns_cb, h))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return h;
fail:
    free_req(h);
    return NULL;
}

void lr_httpc_cancel(struct lr_httpc *h)
{
    if (h)
        free_req(h);
}
