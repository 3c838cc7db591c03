/*
 * HTTP proxy inbound: CONNECT tunnels, and plain requests in absolute form
 * ("GET http://host/path HTTP/1.1"), which are rewritten to origin form
 * with the proxy headers removed and "Connection: close" (one request per
 * proxied connection, so a keep-alive client cannot switch hosts under
 * us).  Optional Basic authentication against the inbound's accounts.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "net/conn.h"

#define HTTP_HEAD_MAX 16384

struct http_in {
    uint8_t tunnel;
};

static void respond(struct lr_conn *c, const char *status, const char *extra)
{
    char r[256];
    int n = snprintf(r, sizeof(r), "HTTP/1.1 %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status, extra ? extra : "");
    (void)!write(c->cli.fd, r, (size_t)n);
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static int authorized(struct lr_inbound *ib, const char *value, size_t vl)
{
    if (vl < 6 || strncasecmp(value, "Basic ", 6) != 0)
        return 0;
    value += 6;
    vl -= 6;
    while (vl && *value == ' ') {
        value++;
        vl--;
    }
    int ok = 0;
    for (uint32_t i = 0; i < ib->naccounts; i++) {
        char plain[600], enc[820];
        struct lr_account *a = &ib->accounts[i];
        int n = snprintf(plain, sizeof(plain), "%s:%s", a->user, a->pass);
        if (n < 0 || (size_t)n >= sizeof(plain))
            continue;
        size_t el = b64_encode((const uint8_t *)plain, (size_t)n, enc);
        ok |= el == vl && lr_memeq_ct((const uint8_t *)enc,
                                      (const uint8_t *)value, vl) == 0;
    }
    return ok;
}

/* "host:port" or "[v6]:port" into c->dst; port defaults to `defport`. */
static int set_dest(struct lr_conn *c, const char *hp, size_t n,
                    uint16_t defport)
{
    char host[256];
    unsigned long port = defport;
    const char *end = hp + n, *colon = NULL;
    if (n && hp[0] == '[') {
        const char *rb = memchr(hp, ']', n);
        if (!rb || (size_t)(rb - hp - 1) >= sizeof(host))
            return -1;
        memcpy(host, hp + 1, (size_t)(rb - hp - 1));
        host[rb - hp - 1] = 0;
        if (rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
        else if (rb + 1 != end)
            return -1;
    } else {
        colon = memrchr(hp, ':', n);
        size_t hl = colon ? (size_t)(colon - hp) : n;
        if (hl == 0 || hl >= sizeof(host))
            return -1;
        memcpy(host, hp, hl);
        host[hl] = 0;
    }
    if (colon) {
        char *e;
        char pb[8];
        size_t pl = (size_t)(end - colon - 1);
        if (pl == 0 || pl >= sizeof(pb))
            return -1;
        memcpy(pb, colon + 1, pl);
        pb[pl] = 0;
        port = strtoul(pb, &e, 10);
        if (*e || port == 0 || port > 65535)
            return -1;
    }
    for (size_t i = 0, hn = strlen(host); i < sizeof(host) && (i < hn || i == 0); i++)
        if ((unsigned char)host[i] <= ' ' || (unsigned char)host[i] >= 0x7f ||
            host[i] == '/' || host[i] == '@')
            return -1;
    /* a NUL inside the name would cut it short */
    if (memchr(hp, 0, n))
        return -1;
    struct lr_addr a;
    snprintf(c->dst.host, sizeof(c->dst.host), "%s", host);
    c->dst.port = (uint16_t)port;
    c->dst.network = LR_NET_TCP;
    if (lr_addr_parse(host, (uint16_t)port, &a) == 0) {
        int len = lr_addr_ip_bytes(&a, c->dst.ip);
        c->dst.atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
    } else {
        c->dst.atyp = LR_ATYP_DOMAIN;
    }
    return 0;
}

static int header_is(const char *line, size_t n, const char *name)
{
    size_t l = strlen(name);
    return n > l && line[l] == ':' && strncasecmp(line, name, l) == 0;
}

static void hin_readable(struct lr_conn *c)
{
    struct http_in *st = c->ib_state;
    if (!st && !(st = c->ib_state = calloc(1, sizeof(*st)))) {
        lr_conn_close(c, "out of memory");
        return;
    }
    ssize_t r = lr_conn_read_client(c);
    if (r == -EAGAIN)
        return;
    if (r <= 0) {
        lr_conn_close(c, r == 0 ? "eof in handshake" : "read failed");
        return;
    }
    char *head = (char *)lr_buf_head(c->up.in);
    size_t len = lr_buf_len(c->up.in);
    char *end = memmem(head, len, "\r\n\r\n", 4);
    if (!end) {
        if (len >= HTTP_HEAD_MAX) {
            respond(c, "431 Request Header Fields Too Large", NULL);
            lr_conn_close(c, "http header too large");
        }
        return;
    }
    size_t hlen = (size_t)(end - head) + 4;
    if (hlen > HTTP_HEAD_MAX) {
        respond(c, "431 Request Header Fields Too Large", NULL);
        lr_conn_close(c, "http header too large");
        return;
    }
    /* request line */
    char *eol = memmem(head, hlen, "\r\n", 2);
    char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        respond(c, "400 Bad Request", NULL);
        lr_conn_close(c, "bad http request");
        return;
    }
    char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    int is_connect = (size_t)(sp1 - head) == 7 && memcmp(head, "CONNECT", 7) == 0;
    /* headers: authentication */
    int auth_ok = c->ib->naccounts == 0;
    for (char *line = eol + 2; line < head + hlen - 2;) {
        char *le = memmem(line, (size_t)(head + hlen - line), "\r\n", 2);
        size_t ll = (size_t)(le - line);
        if (header_is(line, ll, "Proxy-Authorization") && !auth_ok) {
            char *v = (char *)memchr(line, ':', ll) + 1;
            while (*v == ' ')
                v++;
            auth_ok = authorized(c->ib, v, (size_t)(le - v));
        }
        line = le + 2;
    }
    if (!auth_ok) {
        respond(c, "407 Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"luaray\"\r\n");
        lr_conn_close(c, "http auth failed");
        return;
    }
    if (is_connect) {
        if (set_dest(c, target, tlen, 443) < 0) {
            respond(c, "400 Bad Request", NULL);
            lr_conn_close(c, "bad connect target");
            return;
        }
        st->tunnel = 1;
        c->up.in->rd += (uint32_t)hlen;
        lr_conn_dial(c);
        return;
    }
    if (tlen < 8 || strncasecmp(target, "http://", 7) != 0) {
        respond(c, "400 Bad Request", NULL);
        lr_conn_close(c, "not a proxy request");
        return;
    }
    char *auth = target + 7;
    char *path = memchr(auth, '/', (size_t)(target + tlen - auth));
    size_t alen = path ? (size_t)(path - auth) : (size_t)(target + tlen - auth);
    if (set_dest(c, auth, alen, 80) < 0) {
        respond(c, "400 Bad Request", NULL);
        lr_conn_close(c, "bad request target");
        return;
    }
    /* rebuild the head in origin form, in a relay buffer of this thread's
     * pool: never in storage shared with other workers */
    struct lr_buf *tmp = lr_buf_get();
    if (!tmp) {
        lr_conn_close(c, "out of memory");
        return;
    }
    char *out = (char *)tmp->data;
    const size_t outcap = HTTP_HEAD_MAX + 256;
    size_t o = 0;
    o += (size_t)snprintf(out, outcap, "%.*s %.*s %.*s\r\n",
                          (int)(sp1 - head), head,
                          path ? (int)(target + tlen - path) : 1, path ? path : "/",
                          (int)(eol - sp2 - 1), sp2 + 1);
    for (char *line = eol + 2; line < head + hlen - 2;) {
        char *le = memmem(line, (size_t)(head + hlen - line), "\r\n", 2);
        size_t ll = (size_t)(le - line);
        if (!header_is(line, ll, "Proxy-Connection") &&
            !header_is(line, ll, "Proxy-Authorization") &&
            !header_is(line, ll, "Connection") &&
            !header_is(line, ll, "Keep-Alive") && o + ll + 2 < outcap) {
            memcpy(out + o, line, ll + 2);
            o += ll + 2;
        }
        line = le + 2;
    }
    o += (size_t)snprintf(out + o, outcap - o, "Connection: close\r\n\r\n");
    /* replace the head inside up.in by the rewritten one */
    struct lr_buf *b = c->up.in;
    size_t rest = len - hlen;
    lr_buf_compact(b);
    if (o + rest > LR_BUF_CAP) {
        lr_buf_put(tmp);
        respond(c, "431 Request Header Fields Too Large", NULL);
        lr_conn_close(c, "http header too large");
        return;
    }
    memmove(b->data + o, b->data + hlen, rest);
    memcpy(b->data, out, o);
    lr_buf_put(tmp);
    b->rd = 0;
    b->wr = (uint32_t)(o + rest);
    lr_conn_dial(c);
}

static int hin_early_reply(struct lr_conn *c)
{
    struct http_in *st = c->ib_state;
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (!st || !st->tunnel)
        return 0; /* a plain request is sniffed as it is */
    if (lr_conn_send_client(c, ok, sizeof(ok) - 1) < 0)
        return -1;
    c->replied = 1;
    return 0;
}

static void hin_connected(struct lr_conn *c)
{
    struct http_in *st = c->ib_state;
    if (st && st->tunnel && !c->replied) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (lr_conn_send_client(c, ok, sizeof(ok) - 1) < 0)
            return;
    }
    lr_conn_start_relay(c);
}

static void hin_dial_failed(struct lr_conn *c, int err)
{
    if (c->replied) {
        lr_conn_reply_close(c, NULL, 0, c->reason ? c->reason : "dial failed");
        return;
    }
    respond(c, err == -EACCES ? "403 Forbidden" : err == -ETIMEDOUT
            ? "504 Gateway Timeout" : "502 Bad Gateway", NULL);
    lr_conn_close(c, c->reason ? c->reason : "dial failed");
}

static void hin_free(struct lr_conn *c)
{
    free(c->ib_state);
    c->ib_state = NULL;
}

const struct lr_ib_ops lr_http_in_ops = {
    .readable = hin_readable,
    .early_reply = hin_early_reply,
    .connected = hin_connected,
    .dial_failed = hin_dial_failed,
    .free = hin_free,
};
