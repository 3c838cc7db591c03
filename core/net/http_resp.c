/*
 * The HTTP/1.1 response parser of http_resp.h (RFC 9112 sections 4-7):
 * status line, fields, then a body framed by Transfer-Encoding: chunked,
 * Content-Length, or the close of the connection, in that order of
 * precedence (section 6.3).  Interim 1xx responses are read and dropped.
 *
 * Strict where leniency could smuggle a second response into the body of
 * the first: no whitespace between a field name and its colon, no folded
 * lines, no bare CR, no conflicting Content-Lengths; lenient where peers
 * differ harmlessly (a bare LF ends a line, a missing reason phrase).
 * A field name is kept lower case, its value with the surrounding
 * whitespace removed; a line holds no NUL, so the fields text never does.
 */
#include <string.h>

#include "base/base.h"
#include "net/http_resp.h"

enum {
    S_STATUS, S_FIELDS, S_BODY_LEN, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_END,
    S_TRAILER, S_BODY_EOF, S_DONE, S_ERR
};

#define CHUNK_LINE_MAX 1024

void lr_http_resp_init(struct lr_http_resp *r, size_t head_max, uint64_t body_max,
                       int no_body)
{
    memset(r, 0, sizeof(*r));
    r->head_max = head_max ? head_max : LR_HTTP_HEAD_MAX;
    r->body_max = body_max ? body_max : LR_HTTP_BODY_MAX;
    r->no_body = no_body;
    r->state = S_STATUS;
    r->why = "";
}

void lr_http_resp_deinit(struct lr_http_resp *r)
{
    free(r->line);
    free(r->fields);
    free(r->body);
    memset(r, 0, sizeof(*r));
    r->state = S_ERR;
    r->why = "";
}

const char *lr_http_resp_why(const struct lr_http_resp *r)
{
    return r->why ? r->why : "";
}

static int fail(struct lr_http_resp *r, int rc, const char *why)
{
    r->state = S_ERR;
    r->why = why;
    return rc;
}

/* Appends n bytes to a growing buffer (one byte more kept for a NUL). */
static int grow_append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static int is_tchar(unsigned char c)
{
    /* RFC 9110 5.6.2 token characters */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ows(char c) { return c == ' ' || c == '\t'; }

/* A line's bytes, without its CR LF (or LF): -1 when a CR stands inside. */
static int line_end(char *s, size_t *n)
{
    if (*n && s[*n - 1] == '\r')
        (*n)--;
    return memchr(s, '\r', *n) ? -1 : 0;
}

static int status_line(struct lr_http_resp *r, char *s, size_t n)
{
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return fail(r, LR_EINVAL, "not an HTTP/1.x status line");
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return fail(r, LR_EINVAL, "bad status code");
    if (n > 12 && s[12] != ' ')
        return fail(r, LR_EINVAL, "bad status line");
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (r->status < 100)
        return fail(r, LR_EINVAL, "bad status code");
    if (r->status == 101)
        return fail(r, LR_EINVAL, "101 Switching Protocols (never asked for)");
    r->fields_len = 0;
    r->chunked = r->has_length = 0;
    r->left = 0;
    return LR_OK;
}

/* Case-insensitive: does the comma list `v` end with the coding "chunked"? */
static int ends_chunked(const char *v, size_t n)
{
    while (n && (ows(v[n - 1]) || v[n - 1] == ','))
        n--;
    size_t b = n;
    while (b && v[b - 1] != ',')
        b--;
    while (b < n && ows(v[b]))
        b++;
    return n - b == 7 && strncasecmp(v + b, "chunked", 7) == 0;
}

static int field_line(struct lr_http_resp *r, char *s, size_t n)
{
    if (ows(s[0]))
        return fail(r, LR_EINVAL, "folded field line");
    size_t k = 0;
    while (k < n && s[k] != ':') {
        if (!is_tchar((unsigned char)s[k]))
            return fail(r, LR_EINVAL, "bad field name");
        s[k] = (char)((s[k] >= 'A' && s[k] <= 'Z') ? s[k] + 32 : s[k]);
        k++;
    }
    if (k == 0 || k == n)
        return fail(r, LR_EINVAL, "field line without a name and colon");
    size_t vb = k + 1, ve = n;
    while (vb < ve && ows(s[vb]))
        vb++;
    while (ve > vb && ows(s[ve - 1]))
        ve--;
    for (size_t i = vb; i < ve; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return fail(r, LR_EINVAL, "control character in a field value");
    if (r->state == S_FIELDS) {
        if (k == 17 && memcmp(s, "transfer-encoding", 17) == 0) {
            /* the last transfer coding decides (a later field line adds
             * to the list) */
            r->chunked = ends_chunked(s + vb, ve - vb);
            r->has_length = 2; /* framing by the coding: Content-Length ignored */
        } else if (k == 14 && memcmp(s, "content-length", 14) == 0 && r->has_length != 2) {
            uint64_t v = 0;
            if (ve == vb)
                return fail(r, LR_EINVAL, "empty Content-Length");
            for (size_t i = vb; i < ve; i++) {
                if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
                    return fail(r, LR_EINVAL, "bad Content-Length");
                v = v * 10 + (uint64_t)(s[i] - '0');
            }
            if (r->has_length == 1 && r->left != v)
                return fail(r, LR_EINVAL, "conflicting Content-Length fields");
            r->has_length = 1;
            r->left = v;
        }
    }
    /* "name: value\n" (trailer fields are kept too); at most head_max
     * bytes in all, so growing by each line is cheap enough */
    char *nf = realloc(r->fields, r->fields_len + k + 2 + (ve - vb) + 2);
    if (!nf)
        return fail(r, LR_ENOMEM, "out of memory");
    r->fields = nf;
    memcpy(nf + r->fields_len, s, k);
    r->fields_len += k;
    memcpy(nf + r->fields_len, ": ", 2);
    r->fields_len += 2;
    memcpy(nf + r->fields_len, s + vb, ve - vb);
    r->fields_len += ve - vb;
    nf[r->fields_len++] = '\n';
    nf[r->fields_len] = 0;
    return LR_OK;
}

/* The head is over: how is the body framed? */
static int head_done(struct lr_http_resp *r)
{
    if (r->status < 200) {
        /* an interim response: the real one follows */
        r->state = S_STATUS;
        return LR_OK;
    }
    if (r->no_body || r->status == 204 || r->status == 304) {
        r->state = S_DONE;
        return LR_OK;
    }
    if (r->has_length == 2) {
        r->state = r->chunked ? S_CHUNK_SIZE : S_BODY_EOF;
    } else if (r->has_length == 1) {
        if (r->left > r->body_max)
            return fail(r, LR_ETOOBIG, "response body over max_body");
        r->state = r->left ? S_BODY_LEN : S_DONE;
    } else {
        r->state = S_BODY_EOF;
    }
    /* an empty body is "" rather than nil */
    if (!r->body && grow_append(&r->body, &r->body_len, &r->body_cap, "", 0) != 0)
        return fail(r, LR_ENOMEM, "out of memory");
    return LR_OK;
}

static int chunk_size_line(struct lr_http_resp *r, char *s, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            break;
        if (v > (UINT64_MAX >> 4))
            return fail(r, LR_ETOOBIG, "chunk size too large");
        v = (v << 4) | (uint64_t)d;
    }
    if (i == 0)
        return fail(r, LR_EINVAL, "bad chunk size");
    while (i < n && ows(s[i]))
        i++;
    if (i < n && s[i] != ';')
        return fail(r, LR_EINVAL, "bad chunk size");
    if (v > r->body_max - r->body_len)
        return fail(r, LR_ETOOBIG, "response body over max_body");
    r->left = v;
    r->state = v ? S_CHUNK_DATA : S_TRAILER;
    return LR_OK;
}

/* Takes a whole line (without its LF) for the current state. */
static int on_line(struct lr_http_resp *r)
{
    size_t n = r->line_len;
    char *s = r->line;
    if (line_end(s, &n) != 0)
        return fail(r, LR_EINVAL, "bare CR in a line");
    if (memchr(s, 0, n))
        return fail(r, LR_EINVAL, "NUL in a line");
    switch (r->state) {
    case S_STATUS:
        if (n == 0)
            return LR_OK; /* RFC 9112 2.2: empty lines before a status line may be ignored
                             (they count against the head's bound) */
        if (status_line(r, s, n) != LR_OK)
            return LR_EINVAL;
        r->state = S_FIELDS;
        return LR_OK;
    case S_FIELDS:
        if (n == 0)
            return head_done(r);
        return field_line(r, s, n);
    case S_CHUNK_SIZE:
        return chunk_size_line(r, s, n);
    case S_CHUNK_END:
        if (n != 0)
            return fail(r, LR_EINVAL, "chunk data longer than its size");
        r->state = S_CHUNK_SIZE;
        return LR_OK;
    case S_TRAILER:
        if (n == 0) {
            r->state = S_DONE;
            return LR_OK;
        }
        return field_line(r, s, n);
    }
    return fail(r, LR_EINVAL, "internal state");
}

static int is_line_state(int st)
{
    return st == S_STATUS || st == S_FIELDS || st == S_CHUNK_SIZE || st == S_CHUNK_END ||
           st == S_TRAILER;
}

int lr_http_resp_feed(struct lr_http_resp *r, const uint8_t *p, size_t n, size_t *used)
{
    size_t i = 0;
    int rc = LR_AGAIN;
    while (i < n) {
        if (r->state == S_ERR) {
            rc = LR_EINVAL;
            break;
        }
        if (r->state == S_DONE)
            break;
        if (is_line_state(r->state)) {
            const uint8_t *nl = memchr(p + i, '\n', n - i);
            size_t take = nl ? (size_t)(nl - (p + i)) : n - i;
            int head = r->state == S_STATUS || r->state == S_FIELDS || r->state == S_TRAILER;
            size_t cap = head ? r->head_max : CHUNK_LINE_MAX;
            size_t had = head ? r->head_total : r->line_len;
            if (had + take + 1 > cap) {
                rc = fail(r, LR_ETOOBIG, head ? "response head over 16 KiB"
                                              : "chunk size line too long");
                if (head && r->head_max != LR_HTTP_HEAD_MAX)
                    r->why = "response head over its limit";
                break;
            }
            if (grow_append(&r->line, &r->line_len, &r->line_cap, p + i, take) != 0) {
                rc = fail(r, LR_ENOMEM, "out of memory");
                break;
            }
            if (head)
                r->head_total += take + (nl ? 1 : 0);
            i += take;
            if (!nl)
                break;
            i++; /* the LF */
            int lrc = on_line(r);
            r->line_len = 0;
            if (lrc != LR_OK) {
                rc = lrc;
                break;
            }
            continue;
        }
        /* body bytes */
        size_t take = n - i;
        if (r->state == S_BODY_LEN || r->state == S_CHUNK_DATA) {
            if (take > r->left)
                take = (size_t)r->left;
        } else if (r->body_len + take > r->body_max) { /* S_BODY_EOF */
            rc = fail(r, LR_ETOOBIG, "response body over max_body");
            break;
        }
        if (grow_append(&r->body, &r->body_len, &r->body_cap, p + i, take) != 0) {
            rc = fail(r, LR_ENOMEM, "out of memory");
            break;
        }
        i += take;
        if (r->state == S_BODY_LEN || r->state == S_CHUNK_DATA) {
            r->left -= take;
            if (r->left == 0)
                r->state = r->state == S_BODY_LEN ? S_DONE : S_CHUNK_END;
        }
    }
    if (used)
        *used = i;
    if (r->state == S_DONE)
        return LR_OK;
    if (r->state == S_ERR)
        return rc < 0 ? rc : LR_EINVAL;
    return LR_AGAIN;
}

int lr_http_resp_eof(struct lr_http_resp *r)
{
    if (r->state == S_DONE)
        return LR_OK;
    if (r->state == S_BODY_EOF) {
        r->state = S_DONE;
        return LR_OK;
    }
    if (r->state == S_ERR)
        return LR_EINVAL;
    return fail(r, LR_EINVAL, "connection closed before the end of the response");
}
