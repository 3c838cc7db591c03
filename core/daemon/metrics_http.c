/*
 * luaray.metrics' request parser (metrics_http.h).  One request per
 * connection: the request line and the headers up to the empty line; a
 * body is never read (GET and HEAD have none; other methods get 405).
 */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "daemon/metrics_http.h"

/* The value of header `name` (case-insensitive) in head[0..len), or
 * NULL; its length in *n.  Lines end in CRLF. */
static const char *header(const char *head, size_t len, const char *name, size_t *n)
{
    size_t nl = strlen(name);
    const char *end = head + len;
    const char *l = memmem(head, len, "\r\n", 2);
    while (l && l + 2 < end) {
        l += 2;
        const char *e = memmem(l, (size_t)(end - l), "\r\n", 2);
        if (!e)
            return NULL;
        if ((size_t)(e - l) > nl && strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = e;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *n = (size_t)(ve - v);
            return v;
        }
        l = e;
    }
    return NULL;
}

static int authorized(const char *head, size_t len, const char *token)
{
    if (!token)
        return 1;
    size_t n, tl = strlen(token);
    const char *v = header(head, len, "authorization", &n);
    if (!v || n < 7 || strncasecmp(v, "bearer ", 7) != 0)
        return 0;
    v += 7;
    n -= 7;
    return n == tl && sodium_memcmp(v, token, tl) == 0;
}

static int done(struct lr_mh_req *r, int status)
{
    r->status = status;
    return 1;
}

int lr_mh_parse(const char *buf, size_t len, const char *token, struct lr_mh_req *r)
{
    memset(r, 0, sizeof(*r));
    if (len > LR_MH_HEAD_MAX)
        len = LR_MH_HEAD_MAX;
    /* only the head counts: what follows it is never read */
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (memchr(buf, 0, end ? (size_t)(end - buf) : len))
        return done(r, 400);
    if (!end)
        return len >= LR_MH_HEAD_MAX ? done(r, 431) : 0;
    size_t hl = (size_t)(end - buf) + 2; /* the last header line's CRLF kept */
    const char *eol = memmem(buf, hl, "\r\n", 2);
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == buf || sp2 == sp1 + 1 || (size_t)(eol - sp2 - 1) != 8 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
        return done(r, 400);
    size_t ml = (size_t)(sp1 - buf);
    int get = ml == 3 && memcmp(buf, "GET", 3) == 0;
    int hd = ml == 4 && memcmp(buf, "HEAD", 4) == 0;
    if (!get && !hd)
        return done(r, 405);
    r->head_only = hd;
    if (!authorized(buf, hl, token))
        return done(r, 401);
    const char *path = sp1 + 1;
    size_t pl = (size_t)(sp2 - path);
    const char *q = memchr(path, '?', pl);
    if (q)
        pl = (size_t)(q - path);
    if (pl == 8 && memcmp(path, "/metrics", 8) == 0)
        r->what = LR_MH_METRICS;
    else if (pl == 1 && path[0] == '/')
        r->what = LR_MH_ROOT;
    else
        return done(r, 404);
    return done(r, 200);
}
