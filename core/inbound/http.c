/*
 * HTTP proxy inbound: CONNECT tunnels, and plain requests in absolute form
 * ("GET http://host/path HTTP/1.1").  Optional Basic authentication
 * against the inbound's accounts.
 *
 * A request head is checked before anything is dialled (RFC 9112): CRLF
 * line ends only, no control byte but HTAB, no obs-fold, "name:" with no
 * whitespace before the colon, HTTP/1.0 or HTTP/1.1, and one unambiguous
 * body length (Content-Length values all equal and numeric, or a
 * Transfer-Encoding whose last coding is chunked, never both, none in
 * HTTP/1.0).  Anything else gets 400 and the connection closes.
 *
 * A plain request is rewritten to origin form (in a relay buffer of the
 * thread's pool, never in storage shared by worker threads): Host becomes
 * the URI's authority (RFC 9112 3.2.2), every Proxy-* field and the
 * hop-by-hop fields (Connection and the fields it names, Keep-Alive, TE,
 * Trailer, Upgrade) are removed, Content-Length is written once, and
 * "Connection: close" ends the head.  One request per client connection:
 * the relay passes the head and exactly its body (Content-Length bytes or
 * the chunked body up to its last chunk and trailer, framed by hin_frame)
 * and drops whatever the client sends after it, so a pipelined request
 * never reaches the origin, whatever it names; the origin closes after its
 * response, and the client sees the close and sends that request again on
 * a new connection (RFC 9112 9.3.2).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "inbound/inbound.h"

#define HTTP_HEAD_MAX 16384
/* Room kept free in front of the head while it is read: the rewritten head
 * may be a little longer than the client's (a Host line where there was
 * none, "Connection: close", "/" for an empty path: at most 22 bytes) and
 * is put right in front of the body bytes that came with it. */
#define HEAD_SLACK 64
#define CONN_OPTS_MAX 32      /* names in Connection: */
#define CHUNK_EXT_MAX 4096    /* chunk extensions of one chunk-size line */
#define TRAILER_MAX 16384     /* trailer section of a chunked body */

enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };
enum {                  /* chunked body parser (RFC 9112 7.1) */
    CK_SIZE,            /* chunk-size hex digits */
    CK_EXT,             /* ";" chunk-ext up to CR */
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TR_START,        /* a trailer line, or the final CRLF */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_END_LF
};

struct http_in {
    uint8_t tunnel;
    uint8_t started;     /* the head slack is in place */
    uint8_t body;        /* BODY_*: how the request's body ends */
    uint8_t ck;          /* CK_* */
    uint8_t done;        /* the request ended: later client bytes dropped */
    uint32_t scanned;    /* head bytes checked so far */
    uint32_t head_left;  /* rewritten head bytes still to relay */
    uint32_t line;       /* chunk-size digits, chunk-ext or trailer name bytes */
    uint32_t trailer;    /* trailer bytes */
    uint64_t left;       /* body bytes left: Content-Length, or chunk data */
};

/* What the head says, for the rewrite and the body framing. */
struct req {
    const char *method, *target;
    size_t mlen, tlen;
    int http10;
    int has_cl, has_te;
    int ncl, nte;            /* list elements seen in those fields */
    uint64_t cl;
    int auth_ok;
    int nopts;               /* names listed in Connection: */
    const char *opt[CONN_OPTS_MAX];
    size_t optl[CONN_OPTS_MAX];
};

static void respond(struct lr_conn *c, const char *status, const char *extra)
{
    char r[256];
    int n = snprintf(r, sizeof(r), "HTTP/1.1 %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status, extra ? extra : "");
    lr_conn_send_now(c, r, (size_t)n);
}

static void refuse(struct lr_conn *c, const char *status, const char *reason)
{
    respond(c, status, NULL);
    lr_conn_close(c, reason);
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
        if (strspn(pb, "0123456789") != pl)
            return -1; /* strtoul would take "+80" or " 80" */
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

static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
           (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_ctl(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

static int name_is(const char *n, size_t nl, const char *s)
{
    return nl == strlen(s) && strncasecmp(n, s, nl) == 0;
}

/* Checks the head bytes [st->scanned, len): CRLF line ends only, no
 * control byte but HTAB.  1 (and *hlen) once the empty line ending the
 * head is there, 0 to wait for more bytes, -1 (and *why) if malformed. */
static int scan_head(struct http_in *st, const uint8_t *h, size_t len,
                     size_t *hlen, const char **why)
{
    for (size_t i = st->scanned; i < len; i++) {
        uint8_t ch = h[i];
        if ((i && h[i - 1] == '\r' && ch != '\n') ||
            (ch == '\n' && (!i || h[i - 1] != '\r'))) {
            *why = "bare CR or LF in http head";
            return -1;
        }
        if (ch == '\n') {
            if (i >= 3 && h[i - 2] == '\n') {
                *hlen = i + 1;         /* CRLF CRLF */
                return 1;
            }
        } else if (ch != '\r' && is_ctl(ch)) {
            *why = "control byte in http head";
            return -1;
        }
    }
    st->scanned = (uint32_t)len;
    return 0;
}

/* Splits a field line into its name and its value without the whitespace
 * around it; -1 if it is not "token:" (whitespace before the colon, no
 * colon, an obs-fold continuation line starting with SP/HTAB). */
static int split_field(const char *line, size_t ll, size_t *nl,
                       const char **v, size_t *vl)
{
    size_t i = 0;
    while (i < ll && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == ll || line[i] != ':')
        return -1;
    const char *p = line + i + 1, *e = line + ll;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *nl = i;
    *v = p;
    *vl = (size_t)(e - p);
    return 0;
}

/* Calls fn for each non-empty element of a comma-separated list (the
 * whitespace around it removed); stops at the first non-zero return. */
static int each_elem(const char *v, size_t vl,
                     int (*fn)(struct req *r, const char *el, size_t n),
                     struct req *r)
{
    const char *ve = v + vl;
    for (const char *s = v; s <= ve;) {
        const char *comma = memchr(s, ',', (size_t)(ve - s));
        const char *e = comma ? comma : ve, *b = s;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > b) {
            int rc = fn(r, b, (size_t)(e - b));
            if (rc)
                return rc;
        }
        if (!comma)
            break;
        s = comma + 1;
    }
    return 0;
}

static int all_tchar(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return n > 0;
}

static int cl_elem(struct req *r, const char *el, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (el[i] < '0' || el[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(el[i] - '0');
        if (v > 999999999999999999ull)
            return -1;
    }
    if (r->has_cl && r->cl != v)
        return -1;             /* differing lengths */
    r->ncl++;
    r->has_cl = 1;
    r->cl = v;
    return 0;
}

/* has_te: 1 codings seen, 2 the last one seen is chunked */
static int te_elem(struct req *r, const char *el, size_t n)
{
    if (!all_tchar(el, n) || r->has_te == 2)
        return -1;             /* a coding after chunked (or parameters) */
    r->nte++;
    r->has_te = name_is(el, n, "chunked") ? 2 : 1;
    return 0;
}

static int conn_elem(struct req *r, const char *el, size_t n)
{
    if (!all_tchar(el, n) || r->nopts == CONN_OPTS_MAX)
        return -1;
    r->opt[r->nopts] = el;
    r->optl[r->nopts++] = n;
    return 0;
}

/* Parses and checks a complete head [h, h + hlen); NULL, or why it gets
 * a 400. */
static const char *parse_head(const char *h, size_t hlen,
                              struct lr_inbound *ib, struct req *r)
{
    memset(r, 0, sizeof(*r));
    r->auth_ok = ib->naccounts == 0;
    const char *eol = memchr(h, '\r', hlen);
    const char *sp1 = memchr(h, ' ', (size_t)(eol - h));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2)
        return "bad request line";
    r->method = h;
    r->mlen = (size_t)(sp1 - h);
    r->target = sp1 + 1;
    r->tlen = (size_t)(sp2 - sp1 - 1);
    if (!all_tchar(r->method, r->mlen) || r->tlen == 0)
        return "bad request line";
    for (size_t i = 0; i < r->tlen; i++)
        if ((unsigned char)r->target[i] <= ' ' || r->target[i] == 0x7f)
            return "bad request target";
    if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return "unsupported http version";
    r->http10 = sp2[8] == '0';
    for (const char *line = eol + 2; line < h + hlen - 2;) {
        const char *le = memchr(line, '\r', (size_t)(h + hlen - line));
        size_t ll = (size_t)(le - line), nl, vl;
        const char *v;
        if (split_field(line, ll, &nl, &v, &vl) < 0)
            return line[0] == ' ' || line[0] == '\t' ? "obs-fold header line"
                                                     : "malformed header line";
        int had_cl = r->ncl, had_te = r->nte; /* an empty list is no value */
        if (name_is(line, nl, "Content-Length")) {
            if (each_elem(v, vl, cl_elem, r) || r->ncl == had_cl)
                return "bad content-length";
        } else if (name_is(line, nl, "Transfer-Encoding")) {
            if (each_elem(v, vl, te_elem, r) || r->nte == had_te)
                return "bad transfer-encoding";
        } else if (name_is(line, nl, "Connection")) {
            if (each_elem(v, vl, conn_elem, r))
                return "bad connection header";
        } else if (name_is(line, nl, "Proxy-Authorization") && !r->auth_ok) {
            r->auth_ok = authorized(ib, v, vl);
        }
        line = le + 2;
    }
    if (r->has_te && r->has_te != 2)
        return "transfer-encoding not ending in chunked";
    if (r->has_te && r->has_cl)
        return "both content-length and transfer-encoding";
    if (r->has_te && r->http10)
        return "transfer-encoding in http/1.0";
    return NULL;
}

/* A field the origin must not see: every Proxy-* field, the hop-by-hop
 * ones, and those the Connection field names (RFC 9110 7.6.1); Host and
 * Content-Length are written anew.  Naming the framing fields in
 * Connection does not remove them. */
static int dropped(const struct req *r, const char *n, size_t nl)
{
    static const char *const hop[] = {"Host", "Content-Length", "Connection",
                                      "Keep-Alive", "TE", "Trailer", "Upgrade"};
    if (nl >= 6 && strncasecmp(n, "Proxy-", 6) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (name_is(n, nl, hop[i]))
            return 1;
    if (name_is(n, nl, "Transfer-Encoding"))
        return 0;
    for (int i = 0; i < r->nopts; i++)
        if (r->optl[i] == nl && strncasecmp(r->opt[i], n, nl) == 0)
            return 1;
    return 0;
}

struct out {
    char *p;
    size_t n, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->n + n <= o->cap)
        memcpy(o->p + o->n, s, n);
    o->n += n; /* past cap: noticed by the caller */
}

/* The head in origin form into o (see the top of the file). */
static void rewrite(const char *h, size_t hlen, const struct req *r,
                    const char *auth, size_t alen, const char *path,
                    size_t plen, struct out *o)
{
    const char *eol = memchr(h, '\r', hlen);
    put(o, r->method, r->mlen);
    put(o, " ", 1);
    if (plen == 0 || path[0] == '?')
        put(o, "/", 1);
    put(o, path, plen);
    put(o, " ", 1);
    put(o, eol - 8, 8); /* the version */
    put(o, "\r\nHost: ", 8);
    put(o, auth, alen);
    put(o, "\r\n", 2);
    for (const char *line = eol + 2; line < h + hlen - 2;) {
        const char *le = memchr(line, '\r', (size_t)(h + hlen - line));
        size_t nl = (size_t)((const char *)memchr(line, ':', (size_t)(le - line)) - line);
        if (!dropped(r, line, nl))
            put(o, line, (size_t)(le + 2 - line));
        line = le + 2;
    }
    if (r->has_cl) {
        char l[48];
        int n = snprintf(l, sizeof(l), "Content-Length: %llu\r\n",
                         (unsigned long long)r->cl);
        put(o, l, (size_t)n);
    }
    put(o, "Connection: close\r\n\r\n", 21);
}

static int hexval(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The chunked body (RFC 9112 7.1): how many of the n bytes belong to it
 * (all of them until its end, then st->done), or -1 if malformed. */
static ssize_t chunked_scan(struct http_in *st, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t ch = p[i];
        switch (st->ck) {
        case CK_DATA: {
            size_t k = n - i;
            if (k > st->left)
                k = (size_t)st->left;
            i += k;
            st->left -= k;
            if (!st->left)
                st->ck = CK_DATA_CR;
            continue;
        }
        case CK_SIZE: {
            int d = hexval(ch);
            if (d >= 0) {
                if (++st->line > 16 || (st->left >> 60))
                    return -1;
                st->left = st->left << 4 | (uint64_t)d;
            } else if (!st->line) {
                return -1;
            } else if (ch == ';') {
                st->line = 0;
                st->ck = CK_EXT;
            } else if (ch == '\r') {
                st->ck = CK_SIZE_LF;
            } else {
                return -1;
            }
            break;
        }
        case CK_EXT:
            if (ch == '\r')
                st->ck = CK_SIZE_LF;
            else if (is_ctl(ch) || ++st->line > CHUNK_EXT_MAX)
                return -1;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return -1;
            st->line = 0;
            st->ck = st->left ? CK_DATA : CK_TR_START;
            break;
        case CK_DATA_CR:
            if (ch != '\r')
                return -1;
            st->ck = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return -1;
            st->ck = CK_SIZE;
            st->line = 0;
            break;
        case CK_TR_START:
            if (ch == '\r') {
                st->ck = CK_END_LF;
                break;
            }
            st->ck = CK_TR_NAME;
            /* fall through */
        case CK_TR_NAME:
            if (++st->trailer > TRAILER_MAX)
                return -1;
            if (ch == ':' && st->line)
                st->ck = CK_TR_VALUE;
            else if (is_tchar(ch))
                st->line++;
            else
                return -1;
            break;
        case CK_TR_VALUE:
            if (++st->trailer > TRAILER_MAX)
                return -1;
            if (ch == '\r')
                st->ck = CK_TR_LF;
            else if (is_ctl(ch))
                return -1;
            break;
        case CK_TR_LF:
            if (ch != '\n')
                return -1;
            st->line = 0;
            st->ck = CK_TR_START;
            break;
        case CK_END_LF:
            if (ch != '\n')
                return -1;
            st->done = 1;
            return (ssize_t)(i + 1);
        }
        i++;
    }
    return (ssize_t)i;
}

/* The up pipe's framing (net/conn.h): the rewritten head, then the body,
 * then nothing. */
static ssize_t hin_frame(struct lr_conn *c, const uint8_t *in, size_t len,
                         size_t *used)
{
    struct http_in *st = c->ib_state;
    size_t n = 0;
    if (!st->done && st->head_left) {
        n = len < st->head_left ? len : st->head_left;
        st->head_left -= (uint32_t)n;
        if (!st->head_left && st->body == BODY_NONE)
            st->done = 1;
    }
    if (!st->done && !st->head_left && n < len) {
        if (st->body == BODY_LENGTH) {
            size_t k = len - n;
            if (k > st->left)
                k = (size_t)st->left;
            n += k;
            st->left -= k;
            if (!st->left)
                st->done = 1;
        } else {
            ssize_t k = chunked_scan(st, in + n, len - n);
            if (k < 0)
                return -1;
            n += (size_t)k;
        }
    }
    *used = st->done ? len : n;
    return (ssize_t)n;
}

static void hin_readable(struct lr_conn *c)
{
    struct http_in *st = c->ib_state;
    if (!st && !(st = c->ib_state = calloc(1, sizeof(*st)))) {
        lr_conn_close(c, "out of memory");
        return;
    }
    if (!st->started) {
        if (!c->up.in && !(c->up.in = lr_buf_get())) {
            lr_conn_close(c, "out of memory");
            return;
        }
        if (lr_buf_len(c->up.in) == 0)
            c->up.in->rd = c->up.in->wr = HEAD_SLACK;
        st->started = 1;
    }
    ssize_t r = lr_conn_read_client(c);
    if (r == -EAGAIN)
        return;
    if (r <= 0) {
        lr_conn_close(c, r == 0 ? "eof in handshake" : "read failed");
        return;
    }
    char *head = (char *)lr_buf_head(c->up.in);
    size_t len = lr_buf_len(c->up.in), hlen = 0;
    const char *why = NULL;
    int sc = scan_head(st, (const uint8_t *)head, len, &hlen, &why);
    if (sc < 0) {
        refuse(c, "400 Bad Request", why);
        return;
    }
    if (sc == 0 ? len >= HTTP_HEAD_MAX : hlen > HTTP_HEAD_MAX) {
        refuse(c, "431 Request Header Fields Too Large", "http header too large");
        return;
    }
    if (sc == 0)
        return;
    struct req rq;
    why = parse_head(head, hlen, c->ib, &rq);
    if (why) {
        refuse(c, "400 Bad Request", why);
        return;
    }
    if (!rq.auth_ok) {
        respond(c, "407 Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"luaray\"\r\n");
        lr_conn_close(c, "http auth failed");
        return;
    }
    if (rq.mlen == 7 && memcmp(rq.method, "CONNECT", 7) == 0) {
        if (set_dest(c, rq.target, rq.tlen, 443) < 0) {
            refuse(c, "400 Bad Request", "bad connect target");
            return;
        }
        st->tunnel = 1;
        c->up.in->rd += (uint32_t)hlen;
        lr_dispatch(c);
        return;
    }
    const char *target = rq.target;
    size_t tlen = rq.tlen;
    if (tlen < 8 || strncasecmp(target, "http://", 7) != 0) {
        refuse(c, "400 Bad Request", "not a proxy request");
        return;
    }
    if (memchr(target, '#', tlen)) {
        refuse(c, "400 Bad Request", "bad request target");
        return;
    }
    /* the authority ends at the path or the query */
    const char *auth = target + 7, *tend = target + tlen, *path = auth;
    while (path < tend && *path != '/' && *path != '?')
        path++;
    size_t alen = (size_t)(path - auth);
    if (set_dest(c, auth, alen, 80) < 0) {
        refuse(c, "400 Bad Request", "bad request target");
        return;
    }
    /* the head in origin form, built in a relay buffer of this thread's
     * pool (never in storage shared with other workers), then put right in
     * front of the body bytes that came with it */
    struct lr_buf *tmp = lr_buf_get();
    if (!tmp) {
        lr_conn_close(c, "out of memory");
        return;
    }
    struct out o = {(char *)tmp->data, 0, HTTP_HEAD_MAX + HEAD_SLACK};
    rewrite(head, hlen, &rq, auth, alen, path, (size_t)(tend - path), &o);
    struct lr_buf *b = c->up.in;
    if (o.n > o.cap || o.n > b->rd + hlen) {
        /* cannot happen with the slack; refused rather than assumed */
        lr_buf_put(tmp);
        refuse(c, "431 Request Header Fields Too Large", "http header too large");
        return;
    }
    b->rd = (uint32_t)(b->rd + hlen - o.n);
    memcpy(b->data + b->rd, o.p, o.n);
    lr_buf_put(tmp);
    st->head_left = (uint32_t)o.n;
    st->body = rq.has_te ? BODY_CHUNKED : rq.has_cl && rq.cl ? BODY_LENGTH : BODY_NONE;
    st->left = rq.has_te ? 0 : rq.cl;
    c->up.frame = hin_frame;
    lr_dispatch(c);
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

/* A plain request whose upstream ended before a byte of response (the
 * origin closed or reset, or a VMess server closed without its response
 * header because it could not reach the destination) gets 502, not an
 * empty reply.  A tunnel has had its 200 already: it just closes. */
static int hin_no_response(struct lr_conn *c, const char *reason)
{
    struct http_in *st = c->ib_state;
    if (!st || st->tunnel || c->replied)
        return 0;
    respond(c, "502 Bad Gateway", NULL);
    lr_conn_close(c, reason);
    return 1;
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
    .no_response = hin_no_response,
    .free = hin_free,
};
