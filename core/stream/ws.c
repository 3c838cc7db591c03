/*
 * WebSocket (RFC 6455) and HTTPUpgrade as a stream layer (ws.h): the
 * HTTP/1.1 upgrade exchange as pure functions over bytes, then the framing
 * layer.
 *
 * The upgrade follows what peers send (design.md 6).  A v2ray / Xray ws
 * client: GET <path> with Upgrade: websocket, Connection: Upgrade,
 * Sec-WebSocket-Key / -Version: 13; with early data (Xray's "?ed=N", v2fly
 * with earlyDataHeaderName) the first bytes of the stream, base64url, in
 * Sec-WebSocket-Protocol, which the server echoes in its 101; or (v2fly
 * with maxEarlyData and no header name) base64url appended to the path.
 * HTTPUpgrade (v2fly, Xray) sends the same request, Upgrade: websocket and
 * Connection: upgrade, and after the 101 the stream is raw; an Xray client
 * with early data sends its first bytes right after the request.
 *
 * The frame layer reads into the caller's buffer and strips headers and
 * unmasks there, in place: a read from below asks for no more than the
 * rest of the current frame plus the largest header (14 bytes), so the next
 * frame's header is at the end of what was read and payload rarely has to
 * move; a header split across reads is gathered in a 14-byte buffer.
 * Control frames (<= 125 bytes) are gathered aside; a ping's pong and a
 * close reply wait for a frame boundary on the write side.  A write sends
 * one frame: on plain TCP as the server, header and payload in one
 * sendmsg() straight from the caller's buffer; otherwise (a client, which
 * must mask, or TLS below, which wants one record) both are built in a
 * per-thread 16 KiB buffer whose address never changes, so a write that
 * must be retried with the same bytes (OpenSSL) is rebuilt identically.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <openssl/rand.h>
#include <openssl/evp.h>

#include "base/base.h"
#include "stream/ws.h"

/* ------------------------------------------------------------ HTTP heads */

static int is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value octets: visible, space, tab, obs-text; no other control */
static int is_vchar(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int lower_eq(const char *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* The fields after the start line; p[at..len) ends with the empty line. */
static int parse_fields(const uint8_t *p, size_t at, size_t len, struct lr_http_head *h)
{
    h->nfields = 0;
    while (at < len) {
        const uint8_t *e = memchr(p + at, '\r', len - at);
        if (!e || (size_t)(e - p) + 1 >= len || e[1] != '\n')
            return LR_EINVAL;
        size_t end = (size_t)(e - p);
        if (end == at)
            return at + 2 == len ? LR_OK : LR_EINVAL;
        if (h->nfields == LR_HTTP_FIELDS_MAX)
            return LR_EINVAL;
        size_t k = at;
        while (k < end && is_tchar(p[k]))
            k++;
        if (k == at || k == end || p[k] != ':')
            return LR_EINVAL; /* no name, or obsolete line folding */
        struct lr_http_field *f = &h->f[h->nfields++];
        f->name = (const char *)p + at;
        f->nlen = (uint16_t)(k - at);
        k++;
        while (k < end && (p[k] == ' ' || p[k] == '\t'))
            k++;
        size_t ve = end;
        while (ve > k && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
            ve--;
        for (size_t i = k; i < ve; i++)
            if (!is_vchar(p[i]))
                return LR_EINVAL;
        f->value = (const char *)p + k;
        f->vlen = (uint16_t)(ve - k);
        at = end + 2;
    }
    return LR_EINVAL;
}

/* The head's length (through its empty line), 0 if it is not all there. */
static size_t head_end(const uint8_t *p, size_t n)
{
    if (n > LR_HTTP_HEAD_MAX)
        n = LR_HTTP_HEAD_MAX;
    const uint8_t *e = memmem(p, n, "\r\n\r\n", 4);
    return e ? (size_t)(e - p) + 4 : 0;
}

static int version(const uint8_t *p, uint8_t *minor)
{
    if (memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
        return LR_EINVAL;
    *minor = (uint8_t)(p[7] - '0');
    return LR_OK;
}

int lr_http_parse_request(const uint8_t *p, size_t n, struct lr_http_head *h)
{
    memset(h, 0, offsetof(struct lr_http_head, f));
    size_t len = head_end(p, n);
    if (!len) {
        /* what is there must still be able to become a request line */
        size_t k = 0;
        while (k < n && k < 32 && is_tchar(p[k]))
            k++;
        if (k < n && (k == 0 || k == 32 || p[k] != ' '))
            return LR_EINVAL;
        return n >= LR_HTTP_HEAD_MAX ? LR_EINVAL : LR_AGAIN;
    }
    const uint8_t *eol = memchr(p, '\r', len);
    size_t l1 = (size_t)(eol - p); /* the request line (len has a CRLF) */
    if (eol[1] != '\n')
        return LR_EINVAL;
    size_t k = 0;
    while (k < l1 && is_tchar(p[k]))
        k++;
    if (k == 0 || k >= l1 || p[k] != ' ')
        return LR_EINVAL;
    h->method = (const char *)p;
    h->mlen = (uint16_t)k;
    size_t t = ++k;
    while (k < l1 && p[k] > 0x20 && p[k] < 0x7f)
        k++;
    if (k == t || k >= l1 || p[k] != ' ' || l1 - k - 1 != 8 ||
        version(p + k + 1, &h->minor) != LR_OK)
        return LR_EINVAL;
    h->target = (const char *)p + t;
    h->tlen = (uint16_t)(k - t);
    h->len = len;
    return parse_fields(p, l1 + 2, len, h);
}

int lr_http_parse_response(const uint8_t *p, size_t n, struct lr_http_head *h)
{
    memset(h, 0, offsetof(struct lr_http_head, f));
    size_t len = head_end(p, n);
    if (!len) {
        size_t k = n < 7 ? n : 7;
        if (memcmp(p, "HTTP/1.", k) != 0)
            return LR_EINVAL;
        return n >= LR_HTTP_HEAD_MAX ? LR_EINVAL : LR_AGAIN;
    }
    const uint8_t *eol = memchr(p, '\r', len);
    size_t l1 = (size_t)(eol - p);
    if (eol[1] != '\n' || l1 < 12 || version(p, &h->minor) != LR_OK || p[8] != ' ')
        return LR_EINVAL;
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return LR_EINVAL;
    if (l1 > 12 && p[12] != ' ')
        return LR_EINVAL;
    for (size_t i = 13; i < l1; i++)
        if (!is_vchar(p[i]))
            return LR_EINVAL;
    h->status = (uint16_t)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
    h->len = len;
    return parse_fields(p, l1 + 2, len, h);
}

const struct lr_http_field *lr_http_field(const struct lr_http_head *h, const char *name)
{
    for (uint32_t i = 0; i < h->nfields; i++)
        if (lower_eq(h->f[i].name, h->f[i].nlen, name))
            return &h->f[i];
    return NULL;
}

static int field_count(const struct lr_http_head *h, const char *name)
{
    int n = 0;
    for (uint32_t i = 0; i < h->nfields; i++)
        n += lower_eq(h->f[i].name, h->f[i].nlen, name);
    return n;
}

int lr_http_has_token(const char *v, size_t len, const char *tok)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && lower_eq(v + s, e - s, tok))
            return 1;
    }
    return 0;
}

/* Whether any field called `name` holds token `tok`. */
static int fields_have_token(const struct lr_http_head *h, const char *name, const char *tok)
{
    for (uint32_t i = 0; i < h->nfields; i++)
        if (lower_eq(h->f[i].name, h->f[i].nlen, name) &&
            lr_http_has_token(h->f[i].value, h->f[i].vlen, tok))
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- base64 */

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

size_t lr_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[v >> 18];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
        out[o++] = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64URL[v >> 18];
        out[o++] = B64URL[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64URL[v >> 18];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
    }
    return o;
}

int lr_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    const uint8_t *s = (const uint8_t *)in;
    if (n && s[n - 1] == '=')
        n--;
    if (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return LR_EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    /* out may be `in` itself: the write position never passes the read */
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(s[i]);
        if (v < 0)
            return LR_EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out)
                out[o] = (uint8_t)(acc >> bits);
            o++;
        }
    }
    *outlen = o;
    return LR_OK;
}

/* Standard base64 with padding (Sec-WebSocket-Key / -Accept). */
static size_t b64_std(const uint8_t *in, size_t n, char *out)
{
    size_t o = lr_b64url_encode(in, n, out);
    for (size_t i = 0; i < o; i++)
        out[i] = out[i] == '-' ? '+' : out[i] == '_' ? '/' : out[i];
    while (o % 4)
        out[o++] = '=';
    out[o] = 0;
    return o;
}

void lr_ws_accept(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    if (!x || EVP_DigestInit_ex(x, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(x, key, len) != 1 ||
        EVP_DigestUpdate(x, guid, sizeof(guid) - 1) != 1 ||
        EVP_DigestFinal_ex(x, md, &mdlen) != 1 || mdlen != 20) {
        /* no SHA-1 (out of memory): a value no peer will accept */
        memset(md, 0, sizeof(md));
    }
    EVP_MD_CTX_free(x);
    b64_std(md, 20, out);
}

/* Fresh random bytes without a system call each: masking keys, one per
 * frame a client writes (RFC 6455 5.3 wants them unpredictable), come from
 * OpenSSL's user-space DRBG in blocks. */
static __thread uint8_t rnd_pool[256];
static __thread unsigned rnd_left;

static void rnd(uint8_t *out, size_t n)
{
    while (n) {
        if (!rnd_left) {
            if (RAND_bytes(rnd_pool, sizeof(rnd_pool)) != 1)
                lr_random(rnd_pool, sizeof(rnd_pool));
            rnd_left = sizeof(rnd_pool);
        }
        size_t k = n < rnd_left ? n : rnd_left;
        rnd_left -= (unsigned)k;
        memcpy(out, rnd_pool + rnd_left, k);
        out += k;
        n -= k;
    }
}

void lr_ws_new_key(char out[25])
{
    uint8_t k[16];
    rnd(k, sizeof(k));
    b64_std(k, sizeof(k), out);
}

/* ------------------------------------------------------------ the upgrade */

static int is_b64url_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Host matches `want` (case-insensitive), any port ignored. */
static int host_matches(const char *v, size_t n, const char *want)
{
    if (n && v[0] == '[') {
        const char *e = memchr(v, ']', n);
        if (!e)
            return 0;
        size_t hl = (size_t)(e - v) + 1;
        if (hl < n && v[hl] != ':')
            return 0;
        /* "[::1]" matches "::1" and "[::1]" */
        return lower_eq(v, hl, want) || lower_eq(v + 1, hl - 2, want);
    }
    const char *c = memchr(v, ':', n);
    if (c)
        n = (size_t)(c - v);
    return n && lower_eq(v, n, want);
}

static const char *not_ours(const char **why, const char *what)
{
    *why = what;
    return what;
}

int lr_upgrade_check(const uint8_t *p, size_t n, const struct lr_upgrade_cfg *cfg,
                     struct lr_upgrade_req *r, const char **why)
{
    memset(r, 0, sizeof(*r));
    if (memcmp(p, "GET ", n < 4 ? n : 4) != 0) {
        not_ours(why, "not a GET request");
        return LR_EINVAL;
    }
    struct lr_http_head h;
    int rc = lr_http_parse_request(p, n, &h);
    if (rc == LR_AGAIN)
        return LR_AGAIN;
    if (rc != LR_OK || h.minor != 1) {
        not_ours(why, "not an HTTP/1.1 request");
        return LR_EINVAL;
    }
    r->head_len = h.len;
    /* the path, its query ignored; or (ws with early data) the path and a
     * base64url tail: v2fly's early data without a header name */
    size_t plen = strlen(cfg->path);
    const char *q = memchr(h.target, '?', h.tlen);
    size_t tpath = q ? (size_t)(q - h.target) : h.tlen;
    if (!(tpath == plen && memcmp(h.target, cfg->path, plen) == 0)) {
        size_t edn = 0;
        if (!(cfg->ws && cfg->max_early_data && h.tlen > plen &&
              memcmp(h.target, cfg->path, plen) == 0 &&
              is_b64url_text(h.target + plen, h.tlen - plen) &&
              lr_b64url_decode(h.target + plen, h.tlen - plen, NULL, &edn) == LR_OK && edn)) {
            not_ours(why, "another path");
            return LR_EINVAL;
        }
        r->ed = h.target + plen;
        r->ed_len = (uint16_t)(h.tlen - plen);
        r->ed_path = 1;
        r->ed_bytes = edn;
    }
    if (cfg->host) {
        const struct lr_http_field *f = lr_http_field(&h, "host");
        if (!f || field_count(&h, "host") != 1 || !host_matches(f->value, f->vlen, cfg->host)) {
            not_ours(why, "another host");
            return LR_EINVAL;
        }
    }
    const struct lr_http_field *up = lr_http_field(&h, "upgrade");
    if (!up || !up->vlen || !fields_have_token(&h, "connection", "upgrade") ||
        (cfg->ws && !lr_http_has_token(up->value, up->vlen, "websocket"))) {
        not_ours(why, "no upgrade");
        return LR_EINVAL;
    }
    r->upgrade = up->value;
    r->upgrade_len = up->vlen;
    const struct lr_http_field *key = lr_http_field(&h, "sec-websocket-key");
    if (key) {
        r->key = key->value;
        r->key_len = key->vlen;
    }
    if (cfg->ws) {
        /* RFC 6455 4.2.1: version 13, a key of 16 random bytes */
        const struct lr_http_field *v = lr_http_field(&h, "sec-websocket-version");
        size_t kn = 0;
        if (!v || !lower_eq(v->value, v->vlen, "13") || !key || key->vlen != 24 ||
            lr_b64url_decode(key->value, key->vlen, NULL, &kn) != LR_OK || kn != 16) {
            not_ours(why, "not a WebSocket handshake");
            return LR_EINVAL;
        }
        /* early data in Sec-WebSocket-Protocol (Xray; v2fly with that
         * header name): taken when it decodes, echoed in the 101; a value
         * that does not decode is a real subprotocol list, left alone */
        const struct lr_http_field *pr = lr_http_field(&h, "sec-websocket-protocol");
        size_t edn = 0;
        if (cfg->max_early_data && !r->ed_path && pr && pr->vlen &&
            lr_b64url_decode(pr->value, pr->vlen, NULL, &edn) == LR_OK && edn) {
            r->ed = r->proto = pr->value;
            r->ed_len = r->proto_len = pr->vlen;
            r->ed_bytes = edn;
        }
    }
    if (r->ed_bytes > cfg->max_early_data) {
        not_ours(why, "early data over max_early_data");
        return LR_EINVAL;
    }
    const struct lr_http_field *rip = lr_http_field(&h, "x-real-ip");
    if (rip) {
        r->real_ip = rip->value;
        r->real_ip_len = rip->vlen;
    }
    for (uint32_t i = 0; i < h.nfields && r->nxff < LR_ARRAY_LEN(r->xff); i++)
        if (lower_eq(h.f[i].name, h.f[i].nlen, "x-forwarded-for")) {
            r->xff[r->nxff] = h.f[i].value;
            r->xff_len[r->nxff++] = h.f[i].vlen;
        }
    return LR_OK;
}

size_t lr_upgrade_early_data(const struct lr_upgrade_req *r, uint8_t *out)
{
    size_t n = 0;
    if (!r->ed || lr_b64url_decode(r->ed, r->ed_len, out, &n) != LR_OK)
        return 0;
    return n;
}

/* Appends s[0..n) to out at *at if it fits. */
static void put(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n < cap)
        memcpy(out + *at, s, n);
    *at += n;
}

#define PUTS(s) put(out, cap, &at, (s), strlen(s))

size_t lr_upgrade_reply(const struct lr_upgrade_req *r, int ws, char *out, size_t cap)
{
    size_t at = 0;
    PUTS("HTTP/1.1 101 Switching Protocols\r\n");
    if (ws) {
        PUTS("Upgrade: websocket\r\nConnection: Upgrade\r\n");
    } else {
        /* v2fly's and Xray's httpupgrade clients want these two back */
        PUTS("Connection: Upgrade\r\nUpgrade: ");
        put(out, cap, &at, r->upgrade, r->upgrade_len);
        PUTS("\r\n");
    }
    if (r->key) {
        char acc[29];
        lr_ws_accept(r->key, r->key_len, acc);
        PUTS("Sec-WebSocket-Accept: ");
        PUTS(acc);
        PUTS("\r\n");
    }
    if (r->proto) {
        PUTS("Sec-WebSocket-Protocol: ");
        put(out, cap, &at, r->proto, r->proto_len);
        PUTS("\r\n");
    }
    PUTS("\r\n");
    return at < cap ? at : 0;
}

/* One address of a list element ("1.2.3.4", "1.2.3.4:80", "::1",
 * "[::1]:80"), OWS already trimmed. */
static int parse_ip(const char *s, size_t n, struct lr_addr *out)
{
    char b[64];
    if (n && s[0] == '[') {
        const char *e = memchr(s, ']', n);
        if (!e || (e + 1 < s + n && e[1] != ':'))
            return 0;
        n = (size_t)(e - s) - 1;
        s++;
    } else {
        const char *c = memchr(s, ':', n);
        if (c && !memchr(c + 1, ':', n - (size_t)(c - s) - 1))
            n = (size_t)(c - s); /* IPv4 with a port */
    }
    if (n == 0 || n >= sizeof(b) || memchr(s, 0, n)) /* a NUL would cut it short */
        return 0;
    memcpy(b, s, n);
    b[n] = 0;
    return lr_addr_parse(b, 0, out) == 0;
}

int lr_upgrade_client_addr(const struct lr_upgrade_req *r, lr_trusted_fn trusted,
                           const void *ctx, struct lr_addr *out)
{
    struct lr_addr a, cand;
    int have = 0;
    if (r->real_ip && parse_ip(r->real_ip, r->real_ip_len, &a)) {
        if (!trusted(ctx, &a)) {
            *out = a;
            return 1;
        }
        cand = a; /* a proxy itself: the list may know more */
        have = 1;
    }
    /* right to left: each trusted proxy appended the address it saw */
    for (int i = (int)r->nxff - 1; i >= 0; i--) {
        const char *v = r->xff[i];
        size_t end = r->xff_len[i];
        for (;;) {
            size_t s = end;
            while (s > 0 && v[s - 1] != ',')
                s--;
            size_t a0 = s, a1 = end;
            while (a0 < a1 && (v[a0] == ' ' || v[a0] == '\t'))
                a0++;
            while (a1 > a0 && (v[a1 - 1] == ' ' || v[a1 - 1] == '\t'))
                a1--;
            if (a1 > a0) {
                if (!parse_ip(v + a0, a1 - a0, &a))
                    goto done; /* not an address: believe nothing further left */
                cand = a;
                have = 1;
                if (!trusted(ctx, &a))
                    goto done;
            }
            if (s == 0)
                break;
            end = s - 1;
        }
    }
done:
    if (have)
        *out = cand;
    return have;
}

size_t lr_upgrade_request(char *out, size_t cap, const char *path, const char *host,
                          const char *key, const uint8_t *ed, size_t ed_len)
{
    size_t at = 0;
    PUTS("GET ");
    PUTS(path);
    PUTS(" HTTP/1.1\r\nHost: ");
    PUTS(host);
    PUTS("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    PUTS(key);
    PUTS("\r\nSec-WebSocket-Version: 13\r\n");
    if (ed_len) {
        PUTS("Sec-WebSocket-Protocol: ");
        if (at + (ed_len + 2) / 3 * 4 + 4 >= cap)
            return 0;
        at += lr_b64url_encode(ed, ed_len, out + at);
        PUTS("\r\n");
    }
    PUTS("\r\n");
    return at < cap ? at : 0;
}

int lr_upgrade_check_reply(const uint8_t *p, size_t n, int ws, const char *key,
                           const char *proto, size_t proto_len,
                           size_t *head_len, int *echoed, const char **why)
{
    struct lr_http_head h;
    int rc = lr_http_parse_response(p, n, &h);
    *echoed = 0;
    if (rc == LR_AGAIN)
        return LR_AGAIN;
    if (rc != LR_OK) {
        *why = "not an HTTP/1.x reply";
        return LR_EINVAL;
    }
    if (h.status != 101) {
        *why = "no 101 reply";
        return LR_EINVAL;
    }
    const struct lr_http_field *up = lr_http_field(&h, "upgrade");
    if (!up || !fields_have_token(&h, "connection", "upgrade") ||
        (ws && !lr_http_has_token(up->value, up->vlen, "websocket"))) {
        *why = "a 101 without the upgrade";
        return LR_EINVAL;
    }
    const struct lr_http_field *acc = lr_http_field(&h, "sec-websocket-accept");
    if (acc || ws) {
        char want[29];
        lr_ws_accept(key, strlen(key), want);
        if (!acc || acc->vlen != 28 || memcmp(acc->value, want, 28) != 0) {
            *why = "a wrong Sec-WebSocket-Accept";
            return LR_EINVAL;
        }
    }
    const struct lr_http_field *pr = lr_http_field(&h, "sec-websocket-protocol");
    if (pr) {
        /* RFC 6455 4.1: only what we offered may come back */
        if (!proto_len || pr->vlen != proto_len || memcmp(pr->value, proto, proto_len) != 0) {
            *why = "a Sec-WebSocket-Protocol we did not send";
            return LR_EINVAL;
        }
        *echoed = 1;
    }
    *head_len = h.len;
    return LR_OK;
}

/* ------------------------------------------------------- the frame layer */

enum { RS_HDR = 0, RS_DATA, RS_CTL };
enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

#define SCRATCH 16384           /* one TLS record: a frame and its header */
#define FRAME_TCP 65535         /* a server's frames on plain TCP */
#define HDR_MAX 14

struct ws {
    struct lr_stream s;          /* first: the stack sees this */
    uint8_t server;
    /* reading */
    uint8_t rs;                  /* RS_*: a header, a data or a control payload */
    uint8_t hlen;                /* header bytes gathered */
    uint8_t op;                  /* the frame's opcode */
    uint8_t msg;                 /* a fragmented data message is open */
    uint8_t masked;
    uint8_t eof;                 /* a close frame came (or the end below) */
    uint8_t told;                /* the end / error was returned once */
    uint8_t ctl_len;
    uint8_t hbuf[HDR_MAX];
    uint8_t rkey[4];
    int rerr;                    /* a read error to report: -EPROTO... */
    uint32_t roff;               /* payload bytes of the frame so far */
    uint64_t left;               /* payload bytes of the frame still to come */
    uint8_t ctl[125];
    /* writing */
    uint8_t whlen;               /* the frame being written: its header, 0 none */
    uint8_t close_sent;          /* a close frame is queued or out */
    uint8_t cq_len, cq_off;      /* control frames waiting for a frame boundary */
    uint8_t cq_try;              /* bytes of them offered below and refused:
                                    the next write below repeats exactly that */
    uint8_t whdr[HDR_MAX];
    uint8_t wkey[4];
    uint8_t cq[131];             /* the control frame going out (a pong, a close) */
    uint8_t pong_due, pong_len;  /* next: the pong for a ping that came meanwhile */
    uint8_t close_due;           /* ... then our close */
    uint16_t close_code;
    uint8_t pong[125];
    uint32_t wlen, wsent;        /* its payload length; bytes taken below */
    uint32_t raw_left;           /* unframed bytes still to pass (the 101's tail) */
    uint8_t *pre;                /* raw bytes read before the layer existed */
    uint32_t pre_len, pre_off;
};

static __thread uint8_t scratch[SCRATCH];

/* dst[i] = src[i] ^ key[(off + i) % 4]; dst may be src or before it. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4],
                      uint32_t off)
{
    uint8_t k[8];
    for (int i = 0; i < 8; i++)
        k[i] = key[(off + (uint32_t)i) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t v[4];
        memcpy(v, src + i, 32);
        v[0] ^= k64;
        v[1] ^= k64;
        v[2] ^= k64;
        v[3] ^= k64;
        memcpy(dst + i, v, 32);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 3];
}

static int lower_is_tcp(const struct ws *w)
{
    return w->s.lower->ops == &lr_stream_tcp;
}

static ssize_t lower_write(struct ws *w, const void *buf, size_t n)
{
    struct lr_stream *lo = w->s.lower;
    ssize_t r = lo->ops->write(lo, buf, n);
    w->s.want = lo->want;
    return r;
}

static ssize_t lower_read(struct ws *w, void *buf, size_t n)
{
    struct lr_stream *lo = w->s.lower;
    ssize_t r = lo->ops->read(lo, buf, n);
    w->s.want = lo->want;
    return r;
}

/* Builds a control frame into the (empty) cq. */
static void build_ctl(struct ws *w, uint8_t op, const uint8_t *payload, size_t n)
{
    uint8_t *f = w->cq;
    size_t k = 2;
    f[0] = (uint8_t)(0x80 | op);
    f[1] = (uint8_t)n;
    if (w->server) {
        memcpy(f + 2, payload, n);
    } else {
        f[1] |= 0x80;
        rnd(f + 2, 4);
        mask_copy(f + 6, payload, n, f + 2, 0);
        k += 4;
    }
    w->cq_len = (uint8_t)(k + n);
    w->cq_off = w->cq_try = 0;
}

/* Queues a control frame for the next frame boundary: one goes out at a
 * time (cq); a pong for a ping that came while another was going is next
 * (only the latest ping needs one, RFC 6455 5.5.3), our close last, and
 * nothing after it. */
static void queue_ctl(struct ws *w, uint8_t op, const uint8_t *payload, size_t n)
{
    if (w->close_sent)
        return;
    if (op == OP_PONG) {
        if (w->cq_len && (w->cq_off || w->cq_try)) {
            memcpy(w->pong, payload, n);
            w->pong_len = (uint8_t)n;
            w->pong_due = 1;
        } else {
            build_ctl(w, OP_PONG, payload, n); /* an older one not begun: replaced */
        }
        return;
    }
    w->close_sent = 1;
    w->close_code = (uint16_t)(n >= 2 ? lr_get_be16(payload) : 1000);
    if (w->cq_len) {
        w->close_due = 1;
    } else {
        uint8_t c[2];
        lr_put_be16(c, w->close_code);
        build_ctl(w, OP_CLOSE, c, 2);
    }
}

static void queue_close(struct ws *w, uint16_t code)
{
    uint8_t c[2];
    lr_put_be16(c, code);
    queue_ctl(w, OP_CLOSE, c, 2);
}

/* Writes the queued control frames: 0 when all are out, or what the
 * layer below said (-EAGAIN...). */
static int flush_cq(struct ws *w)
{
    for (int round = 0; round < 3 && w->cq_len; round++) {
        for (int tries = 0; w->cq_off < w->cq_len && tries < 8; tries++) {
            size_t n = w->cq_try ? w->cq_try : (size_t)(w->cq_len - w->cq_off);
            ssize_t r = lower_write(w, w->cq + w->cq_off, n);
            w->cq_try = r == -EAGAIN || r == 0 ? (uint8_t)n : 0;
            if (r > 0)
                w->cq_off = (uint8_t)(w->cq_off + r);
            else if (r < 0)
                return (int)r;
        }
        if (w->cq_off < w->cq_len)
            return -EAGAIN;
        w->cq_len = w->cq_off = 0;
        if (w->pong_due) {
            w->pong_due = 0;
            build_ctl(w, OP_PONG, w->pong, w->pong_len);
        } else if (w->close_due) {
            uint8_t c[2];
            w->close_due = 0;
            lr_put_be16(c, w->close_code);
            build_ctl(w, OP_CLOSE, c, 2);
        }
    }
    return w->cq_len ? -EAGAIN : 0;
}

/* From the read side: control frames go out now if the write side is at
 * a frame boundary (a data frame half out must be finished first, and
 * the layer below may want that very write repeated). */
static void flush_cq_now(struct ws *w)
{
    if (w->cq_len && !w->whlen && !w->raw_left)
        (void)flush_cq(w);
}

static void fail(struct ws *w, uint16_t code)
{
    /* RFC 6455 7.1.7: fail the connection, telling the peer why if we can */
    if (!w->rerr) {
        w->rerr = -EPROTO;
        queue_close(w, code);
        flush_cq_now(w);
    }
}

static size_t hdr_size(const uint8_t *h, size_t have)
{
    if (have < 2)
        return 2;
    size_t n = 2;
    uint8_t l = h[1] & 0x7f;
    n += l == 126 ? 2 : l == 127 ? 8 : 0;
    return n + ((h[1] & 0x80) ? 4 : 0);
}

/* A complete header in hbuf: checks it and sets the frame's state. */
static void frame_start(struct ws *w)
{
    const uint8_t *h = w->hbuf;
    size_t at = 2;
    uint64_t len = h[1] & 0x7f;
    int fin = h[0] & 0x80, op = h[0] & 0x0f;
    w->hlen = 0;
    if (len == 126) {
        len = lr_get_be16(h + 2);
        at = 4;
    } else if (len == 127) {
        len = lr_get_be64(h + 2);
        at = 10;
    }
    /* no extension was negotiated: RSV must be 0; a client masks every
     * frame, a server none (RFC 6455 5.1, 5.2) */
    if ((h[0] & 0x70) || !(h[1] & 0x80) != !w->server || (len >> 63)) {
        fail(w, 1002);
        return;
    }
    w->masked = (h[1] & 0x80) != 0;
    if (w->masked)
        memcpy(w->rkey, h + at, 4);
    w->roff = 0;
    w->left = len;
    w->op = (uint8_t)op;
    switch (op) {
    case OP_CONT:
        if (!w->msg) {
            fail(w, 1002);
            return;
        }
        break;
    case OP_TEXT: /* text is data too: v2ray's reader takes either */
    case OP_BIN:
        if (w->msg) {
            fail(w, 1002);
            return;
        }
        break;
    case OP_CLOSE:
    case OP_PING:
    case OP_PONG:
        if (!fin || len > 125) {
            fail(w, 1002);
            return;
        }
        w->ctl_len = 0;
        w->rs = RS_CTL;
        return;
    default:
        fail(w, 1002);
        return;
    }
    if (len > LR_WS_FRAME_MAX) {
        fail(w, 1009);
        return;
    }
    w->msg = !fin;
    w->rs = RS_DATA;
}

/* The frame's payload is all there. */
static void frame_end(struct ws *w)
{
    int was = w->rs;
    w->rs = RS_HDR;
    if (was != RS_CTL)
        return;
    if (w->op == OP_PING) {
        queue_ctl(w, OP_PONG, w->ctl, w->ctl_len);
    } else if (w->op == OP_CLOSE) {
        /* the peer's direction is over: reads end, and nothing it sends
         * after this counts.  Our close goes when our direction ends
         * (ws_shutdown): RFC 6455 5.5.1 lets an endpoint finish what it
         * is sending first, and for a relayed stream that is the rest of
         * the stream (a half-closed connection goes on the other way). */
        if (w->ctl_len == 1) {
            fail(w, 1002);
            return;
        }
        w->eof = 1;
    }
}

/* Decodes raw bytes buf[i..end) in place: payload goes to buf[o..); the
 * new end of the payload. */
static size_t process(struct ws *w, uint8_t *buf, size_t o, size_t i, size_t end)
{
    while (i < end && !w->eof && !w->rerr) {
        if (w->rs == RS_HDR) {
            size_t need = hdr_size(w->hbuf, w->hlen);
            while (w->hlen < need && i < end) {
                w->hbuf[w->hlen++] = buf[i++];
                need = hdr_size(w->hbuf, w->hlen);
            }
            if (w->hlen < need)
                break;
            frame_start(w);
            if (!w->rerr && w->rs != RS_HDR && w->left == 0)
                frame_end(w);
            continue;
        }
        size_t take = end - i;
        if (take > w->left)
            take = (size_t)w->left;
        if (w->rs == RS_DATA) {
            if (w->masked)
                mask_copy(buf + o, buf + i, take, w->rkey, w->roff);
            else if (o != i)
                memmove(buf + o, buf + i, take);
            o += take;
        } else {
            if (w->masked)
                mask_copy(w->ctl + w->ctl_len, buf + i, take, w->rkey, w->roff);
            else
                memcpy(w->ctl + w->ctl_len, buf + i, take);
            w->ctl_len = (uint8_t)(w->ctl_len + take);
        }
        i += take;
        w->left -= take;
        w->roff += (uint32_t)take;
        if (w->left == 0)
            frame_end(w);
    }
    return o;
}

static ssize_t ws_read(struct lr_stream *l, void *vbuf, size_t n)
{
    struct ws *w = (struct ws *)l;
    uint8_t *buf = vbuf;
    size_t got = 0;
    int reads = 0;
    while (got < n && !w->eof && !w->rerr) {
        /* Masked frames (we are the server) are unmasked into place in
         * one pass, which moves them past the headers for free: read all
         * there is room for.  Plain ones would need a memmove for every
         * header in the middle: in a long frame, read no further than the
         * next header; small frames are cheaper moved than read one
         * system call each. */
        size_t want = n - got;
        if (!w->masked && w->rs == RS_DATA && w->left >= 4096 && w->left + HDR_MAX < want)
            want = (size_t)w->left + HDR_MAX;
        size_t r;
        if (w->pre) {
            r = w->pre_len - w->pre_off;
            if (r > want)
                r = want;
            memcpy(buf + got, w->pre + w->pre_off, r);
            w->pre_off += (uint32_t)r;
            if (w->pre_off == w->pre_len) {
                free(w->pre);
                w->pre = NULL;
            }
        } else if (reads == 0 || (got == 0 && reads < 16)) {
            /* one read from below, more only while nothing came out (only
             * control frames or a header), so bytes the layer below
             * already holds (a TLS record) are not left waiting */
            reads++;
            ssize_t k = lower_read(w, buf + got, want);
            if (k == 0) {
                if (w->rs == RS_HDR && !w->hlen)
                    w->eof = 1;
                else
                    w->rerr = -ECONNRESET; /* cut inside a frame */
                break;
            }
            if (k < 0) {
                if (k != -EAGAIN)
                    w->rerr = (int)k;
                break;
            }
            r = (size_t)k;
        } else {
            break;
        }
        got = process(w, buf, got, got, got + r);
    }
    flush_cq_now(w);
    if (got)
        return (ssize_t)got;
    if (w->rerr) {
        w->told = 1;
        return w->rerr;
    }
    if (w->eof) {
        w->told = 1;
        return 0;
    }
    return -EAGAIN;
}

/* Starts a frame for up to n bytes. */
static void frame_begin(struct ws *w, size_t n)
{
    size_t max = w->server && lower_is_tcp(w) ? FRAME_TCP : SCRATCH - 8;
    uint32_t len = (uint32_t)(n < max ? n : max);
    uint8_t *h = w->whdr;
    size_t k;
    h[0] = 0x80 | OP_BIN;
    if (len < 126) {
        h[1] = (uint8_t)len;
        k = 2;
    } else {
        h[1] = 126;
        lr_put_be16(h + 2, (uint16_t)len);
        k = 4;
    }
    if (!w->server) {
        h[1] |= 0x80;
        rnd(w->wkey, 4);
        memcpy(h + k, w->wkey, 4);
        k += 4;
    }
    w->whlen = (uint8_t)k;
    w->wlen = len;
    w->wsent = 0;
}

/* Sends more of the current frame from buf: payload bytes taken (0: only
 * header bytes went, call again), or -errno. */
static ssize_t frame_write(struct ws *w, const uint8_t *buf, size_t n)
{
    size_t hsent = w->wsent < w->whlen ? w->wsent : w->whlen;
    size_t pdone = w->wsent - hsent;
    size_t hrem = w->whlen - hsent, take = w->wlen - pdone;
    if (take > n)
        take = n;
    ssize_t r;
    if (w->server && lower_is_tcp(w)) {
        /* plain TCP: header and payload in one call, no copy */
        struct iovec iov[2] = {{w->whdr + hsent, hrem}, {(void *)buf, take}};
        struct msghdr m = {.msg_iov = hrem ? iov : iov + 1, .msg_iovlen = hrem ? 2 : 1};
        r = sendmsg(w->s.fd, &m, MSG_NOSIGNAL);
        if (r < 0)
            r = errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : errno == EINTR ? 0 : -errno;
    } else {
        if (take > SCRATCH - hrem)
            take = SCRATCH - hrem;
        memcpy(scratch, w->whdr + hsent, hrem);
        if (w->server)
            memcpy(scratch + hrem, buf, take);
        else
            mask_copy(scratch + hrem, buf, take, w->wkey, (uint32_t)pdone);
        r = lower_write(w, scratch, hrem + take);
    }
    if (r <= 0)
        return r;
    w->wsent += (uint32_t)r;
    size_t h2 = w->wsent < w->whlen ? w->wsent : w->whlen;
    size_t pd2 = w->wsent - h2;
    if (w->wsent == w->whlen + w->wlen) {
        w->whlen = 0; /* the frame is out: a pong waiting for it goes now */
        if (w->cq_len)
            (void)flush_cq(w);
    }
    return (ssize_t)(pd2 - pdone);
}

static ssize_t ws_write(struct lr_stream *l, const void *buf, size_t n)
{
    struct ws *w = (struct ws *)l;
    if (w->raw_left) {
        ssize_t r = lower_write(w, buf, n < w->raw_left ? n : w->raw_left);
        if (r > 0)
            w->raw_left -= (uint32_t)r;
        return r;
    }
    if (!w->whlen) {
        if (w->cq_len) {
            int rc = flush_cq(w);
            if (rc < 0)
                return rc;
        }
        if (w->close_sent)
            return -EPIPE; /* no data after a close frame */
        if (n == 0)
            return 0;
        frame_begin(w, n);
    }
    return frame_write(w, buf, n);
}

static void ws_shutdown(struct lr_stream *l)
{
    struct ws *w = (struct ws *)l;
    /* The end of our direction is a close frame (best effort: the relay
     * shuts down only once everything it wrote went out).  WebSocket has
     * no half-close below it: the socket (or TLS) stays open for the
     * peer's direction, which goes on until its close frame or its end,
     * and closes with the connection.  A FIN here would make a proxy in
     * between (nginx) end the tunnel both ways. */
    if (!w->whlen && !w->raw_left) {
        queue_close(w, 1000);
        (void)flush_cq(w);
    }
}

static size_t ws_pending(struct lr_stream *l)
{
    struct ws *w = (struct ws *)l;
    if (w->told)
        return 0; /* the end was read: nothing more will come */
    size_t n = w->pre ? w->pre_len - w->pre_off : 0;
    if (w->eof || w->rerr)
        n++; /* the end, not yet told to the reader */
    struct lr_stream *lo = l->lower;
    if (lo->ops->pending)
        n += lo->ops->pending(lo);
    return n;
}

static void ws_free(struct lr_stream *l)
{
    struct ws *w = (struct ws *)l;
    free(w->pre);
    free(w);
}

const struct lr_stream_ops lr_stream_ws = {
    .name = "ws",
    .read = ws_read,
    .write = ws_write,
    .shutdown = ws_shutdown,
    .free = ws_free,
    .pending = ws_pending,
};

struct lr_stream *lr_ws_new(int server, const uint8_t *pre, size_t pre_len, uint32_t raw_out)
{
    struct ws *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    if (pre_len) {
        if (!(w->pre = malloc(pre_len))) {
            free(w);
            return NULL;
        }
        memcpy(w->pre, pre, pre_len);
        w->pre_len = (uint32_t)pre_len;
    }
    w->s.ops = &lr_stream_ws;
    w->server = server ? 1 : 0;
    w->raw_left = raw_out;
    return &w->s;
}
