/*
 * The HTTP proxy inbound (core/inbound/http.c) driven through its ops
 * table, with net/conn.c replaced by fuzz_conn.c (see fuzz_conn.h for the
 * input's control bytes): the request head (request line, the strict
 * framing checks, Proxy-Authorization, CONNECT target, the absolute-form
 * rewrite), then, once connected, the up pipe's framing (hin_frame: the
 * rewritten head, the Content-Length or chunked body, nothing after it)
 * fed the rest of the client's bytes in fuzzer-chosen pieces, the way
 * net/conn.c's decode() calls it.
 *
 * Each input runs twice with different read splits, and both runs must
 * agree: dialled or not, the destination, every byte relayed upstream,
 * whether the body framing failed.  Checked besides: no access after close
 * (ASan), the loops end, a dialled destination is well formed, a dialled
 * client head has CRLF line ends and no control byte but HTAB, and a
 * rewritten head is strict HTTP/1.x with "Host: <the URI's authority>" as
 * its first field and no other Host, no Proxy-* or hop-by-hop field, at
 * most one Content-Length, and "Connection: close" last.  Upstream gets
 * that head and exactly the body: Content-Length bytes, or a chunked body
 * up to its end as the independent parser ref_chunked() sees it (never a
 * byte past the first one it calls malformed); nothing after the body.
 */
#include <errno.h>
#include <strings.h>
#include <sys/types.h>

#include "fuzz_common.h"
#include "fuzz_conn.h"

extern const struct lr_ib_ops lr_http_in_ops;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    return 0;
}

static const int errs[4] = {-ECONNREFUSED, -EACCES, -ETIMEDOUT, -EHOSTUNREACH};

/* what one run did */
struct result {
    int dialed, framed, failed;
    struct lr_dest dst;
    size_t head_len;        /* up.in at the dial */
    size_t relayed;         /* bytes the framing passed upstream */
    uint8_t *out;           /* those bytes */
    uint8_t *stream;        /* up.in at the dial, then the client's later bytes */
    size_t n;
};

static int starts_ci(const uint8_t *p, size_t n, const char *s)
{
    size_t l = strlen(s);
    return n >= l && strncasecmp((const char *)p, s, l) == 0;
}

static int tchar(uint8_t ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
           (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int ctl(uint8_t ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

static int hexv(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
        return (ch | 0x20) - 'a' + 10;
    return -1;
}

/* The authority part of the request line's target (CONNECT: all of it;
 * absolute form: between "http://" and the first '/' or '?'). */
static const uint8_t *authority(const uint8_t *h, size_t n, size_t *len)
{
    const uint8_t *eol = memmem(h, n, "\r\n", 2);
    if (!eol)
        return NULL;
    const uint8_t *sp1 = memchr(h, ' ', (size_t)(eol - h));
    if (!sp1)
        return NULL;
    const uint8_t *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (!sp2)
        return NULL;
    const uint8_t *t = sp1 + 1;
    size_t tl = (size_t)(sp2 - t);
    if (!(sp1 - h == 7 && memcmp(h, "CONNECT", 7) == 0)) {
        if (tl < 7)
            return NULL;
        t += 7;
        tl -= 7;
        for (size_t i = 0; i < tl; i++)
            if (t[i] == '/' || t[i] == '?') {
                tl = i;
                break;
            }
    }
    *len = tl;
    return t;
}

/* A client head that was dialled: CRLF line ends only, no control byte
 * but HTAB, up to its empty line. */
static void check_client_head(const uint8_t *h, size_t n)
{
    const uint8_t *end = memmem(h, n, "\r\n\r\n", 4);
    FZ_CHECK(end != NULL);
    size_t hl = (size_t)(end - h) + 4;
    for (size_t i = 0; i < hl; i++) {
        if (h[i] == '\n')
            FZ_CHECK(i > 0 && h[i - 1] == '\r');
        else if (h[i] == '\r')
            FZ_CHECK(i + 1 < hl && h[i + 1] == '\n');
        else
            FZ_CHECK(!ctl(h[i]));
    }
}

/* A rewritten head (see the top); returns its length. */
static size_t check_rewritten(const uint8_t *h, size_t n, const uint8_t *auth,
                              size_t alen, uint64_t *cl, int *chunked)
{
    check_client_head(h, n);
    size_t hl = (size_t)((const uint8_t *)memmem(h, n, "\r\n\r\n", 4) - h) + 4;
    const uint8_t *eol = memmem(h, hl, "\r\n", 2);
    const uint8_t *sp1 = memchr(h, ' ', (size_t)(eol - h));
    FZ_CHECK(sp1 && sp1 + 1 < eol && sp1[1] == '/');
    FZ_CHECK(eol - h > 9 && memcmp(eol - 9, " HTTP/1.", 8) == 0);
    int lines = 0, ncl = 0;
    *cl = 0;
    *chunked = 0;
    const uint8_t *last = NULL;
    for (const uint8_t *line = eol + 2; line < h + hl - 2; lines++) {
        const uint8_t *le = memmem(line, (size_t)(h + hl - line), "\r\n", 2);
        size_t ll = (size_t)(le - line), nl = 0;
        while (nl < ll && tchar(line[nl]))
            nl++;
        FZ_CHECK(nl > 0 && nl < ll && line[nl] == ':');
        if (lines == 0) {
            /* Host: the URI's authority */
            FZ_CHECK(ll == 6 + alen && memcmp(line, "Host: ", 6) == 0 &&
                     memcmp(line + 6, auth, alen) == 0);
        } else {
            FZ_CHECK(!starts_ci(line, ll, "Host:"));
            FZ_CHECK(!starts_ci(line, ll, "Proxy-"));
            FZ_CHECK(!starts_ci(line, ll, "Keep-Alive:"));
            FZ_CHECK(!starts_ci(line, ll, "TE:"));
            FZ_CHECK(!starts_ci(line, ll, "Trailer:"));
            FZ_CHECK(!starts_ci(line, ll, "Upgrade:"));
            if (starts_ci(line, ll, "Connection:"))
                FZ_CHECK(le + 4 == h + hl && ll == 17 &&
                         memcmp(line, "Connection: close", 17) == 0);
            if (starts_ci(line, ll, "Content-Length:")) {
                ncl++;
                for (size_t i = 16; i < ll; i++) {
                    FZ_CHECK(line[i] >= '0' && line[i] <= '9');
                    *cl = *cl * 10 + (uint64_t)(line[i] - '0');
                }
            }
            if (starts_ci(line, ll, "Transfer-Encoding:"))
                *chunked = 1;
        }
        last = line;
        line = le + 2;
    }
    FZ_CHECK(lines >= 2 && ncl <= 1 && !(ncl && *chunked));
    FZ_CHECK(memcmp(last, "Connection: close\r\n\r\n", 21) == 0);
    return hl;
}

#define TRAILER_MAX 16384
#define CHUNK_EXT_MAX 4096

/* An independent reading of a chunked body (RFC 9112 7.1, with the
 * inbound's limits: 16 hex digits, 4 KiB of extensions per line, 16 KiB of
 * trailer field bytes).  0: complete, *pos its length; 1: incomplete;
 * 2: malformed, *pos the first bad byte. */
static int ref_chunked(const uint8_t *b, size_t n, size_t *pos)
{
    size_t i = 0, t = 0;
#define NEED()             \
    do {                   \
        if (i == n)        \
            return 1;      \
    } while (0)
#define BAD()              \
    do {                   \
        *pos = i;          \
        return 2;          \
    } while (0)
    for (;;) {
        uint64_t size = 0;
        size_t d = 0;
        for (; i < n && hexv(b[i]) >= 0; i++) {
            if (++d > 16)
                BAD();
            size = size << 4 | (uint64_t)hexv(b[i]);
        }
        NEED();
        if (d == 0)
            BAD();
        if (b[i] == ';') {
            size_t e = 0;
            for (i++; i < n && b[i] != '\r'; i++)
                if (ctl(b[i]) || ++e > CHUNK_EXT_MAX)
                    BAD();
            NEED();
        }
        if (b[i] != '\r')
            BAD();
        i++;
        NEED();
        if (b[i] != '\n')
            BAD();
        i++;
        if (size == 0)
            break;
        if (n - i <= size)
            return 1;
        i += size;
        if (b[i] != '\r')
            BAD();
        i++;
        NEED();
        if (b[i] != '\n')
            BAD();
        i++;
    }
    for (;;) {
        NEED();
        if (b[i] == '\r') {
            i++;
            NEED();
            if (b[i] != '\n')
                BAD();
            *pos = i + 1;
            return 0;
        }
        size_t nl = 0;
        for (;; i++) {
            NEED();
            if (++t > TRAILER_MAX)
                BAD();
            if (b[i] == ':' && nl) {
                i++;
                break;
            }
            if (!tchar(b[i]))
                BAD();
            nl++;
        }
        for (;; i++) {
            NEED();
            if (++t > TRAILER_MAX)
                BAD();
            if (b[i] == '\r')
                break;
            if (ctl(b[i]))
                BAD();
        }
        i++;
        NEED();
        if (b[i] != '\n')
            BAD();
        i++;
    }
#undef NEED
#undef BAD
}

/* After `connected`: the bytes up.in held at the dial, then the client's
 * later ones in pieces, through the framing as decode() does it. */
static void drive_frame(struct lr_conn *c, struct result *res)
{
    struct lr_pipe *p = &c->up;
    if (!p->frame)
        return;
    res->framed = 1;
    size_t start = 0, end = fz_sim.head_len, n = res->n;
    int dropping = 0;
    for (size_t i = 0;; i++) {
        FZ_CHECK(i <= 2 * n + 2);
        if (start < end) {
            size_t used = (size_t)-1;
            ssize_t k = p->frame(c, res->stream + start, end - start, &used);
            if (k < 0) {
                res->failed = 1;
                return; /* net/conn.c closes the connection */
            }
            FZ_CHECK((size_t)k <= used && used <= end - start);
            /* what goes on is the front of the stream: nothing after a drop */
            FZ_CHECK(!dropping || k == 0);
            memcpy(res->out + res->relayed, res->stream + start, (size_t)k);
            res->relayed += (size_t)k;
            dropping |= (size_t)k < used;
            start += used;
            if (used)
                continue;
        }
        if (end == n)
            break;
        end += fz_split(&fz_sim.seed, n - end);
    }
}

static void run(struct fz_inbound *x, uint64_t seed, struct result *res)
{
    fz_inbound_start(x, seed, &lr_http_in_ops);
    fz_conn_feed();
    res->dialed = fz_sim.dialed;
    res->dst = fz_sim.dst;
    res->head_len = fz_sim.head_len;
    if (fz_sim.dialed) {
        /* up.in at the dial, then what the client sends later */
        res->n = fz_sim.head_len + (fz_sim.len - fz_sim.pos);
        memcpy(res->stream, fz_sim.head, fz_sim.head_len);
        memcpy(res->stream + fz_sim.head_len, fz_sim.in + fz_sim.pos,
               fz_sim.len - fz_sim.pos);
    }
    if (fz_conn_settle(x->after, x->err, x->then_fail) && fz_sim.c && fz_sim.relay)
        drive_frame(fz_sim.c, res);
    fz_conn_end();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char tag[] = "http-fuzz";
    struct fz_inbound x;
    fz_inbound_parse(&x, data, size, LR_IB_HTTP, tag, errs);
    const uint8_t *in = x.in;
    size_t len = x.len;
    uint64_t seed = x.seed;
    /* up.in at the dial plus the rest: at most the input and the rewrite's
     * growth; the framing passes on at most that */
    size_t cap = len + LR_BUF_CAP + 1;
    struct result r[2];
    memset(r, 0, sizeof(r));
    for (int k = 0; k < 2; k++) {
        r[k].stream = malloc(cap);
        r[k].out = malloc(cap);
        FZ_CHECK(r[k].stream && r[k].out);
        /* the second run reads in other pieces */
        run(&x, k ? seed * 0x9e3779b97f4a7c15ULL + 7 : seed, &r[k]);
    }
    if (fz_verbose())
        fprintf(stderr, "http: dialed %d (%s:%u atyp %d) relay %d framed %d "
                "failed %d relayed %zu of %zu\n", r[0].dialed, r[0].dst.host,
                r[0].dst.port, r[0].dst.atyp, fz_sim.relay, r[0].framed,
                r[0].failed, r[0].relayed, r[0].n);
    FZ_CHECK(r[0].dialed == r[1].dialed && r[0].framed == r[1].framed &&
             r[0].failed == r[1].failed);
    /* a failing piece passes nothing on, so how much of what came before
     * the bad byte went on depends on the pieces (never past it: below) */
    FZ_CHECK(r[0].failed || r[0].relayed == r[1].relayed);
    FZ_CHECK(memcmp(r[0].out, r[1].out, r[0].relayed < r[1].relayed
                                            ? r[0].relayed : r[1].relayed) == 0);
    if (r[0].dialed) {
        const struct lr_dest *d = &r[0].dst;
        FZ_CHECK(memcmp(d, &r[1].dst, sizeof(*d)) == 0);
        /* what the relay starts from: the (rewritten) head and the bytes
         * after it, however they were read */
        FZ_CHECK(r[0].n == r[1].n && memcmp(r[0].stream, r[1].stream, r[0].n) == 0);
        fz_check_dialed(d);
        FZ_CHECK(d->port != 0);
        /* the authority a client named is taken whole or refused: a NUL
         * inside it must not cut it short (spec/fuzz/crashes/fuzz_http/) */
        size_t alen;
        const uint8_t *auth = authority(in, len, &alen);
        FZ_CHECK(auth != NULL);
        FZ_CHECK(memchr(auth, 0, alen) == NULL);
        check_client_head(in, len);
        if (len < 8 || memcmp(in, "CONNECT ", 8) != 0) {
            /* a plain request: rewritten, and framed once connected */
            uint64_t cl;
            int chunked;
            size_t hl = check_rewritten(r[0].stream, r[0].n, auth, alen, &cl,
                                        &chunked);
            for (int k = 0; k < 2 && r[0].framed; k++) {
                const uint8_t *s = r[k].stream;
                size_t n = r[k].n, body = n - hl, pos = 0, sent = r[k].relayed;
                FZ_CHECK(sent >= hl || r[k].failed);
                FZ_CHECK(memcmp(r[k].out, s, sent) == 0);
                if (chunked) {
                    int st = ref_chunked(s + hl, body, &pos);
                    FZ_CHECK(r[k].failed == (st == 2));
                    if (st == 0)
                        FZ_CHECK(sent == hl + pos);
                    else if (st == 1)
                        FZ_CHECK(sent == n);
                    else
                        FZ_CHECK(sent <= hl + pos);
                } else {
                    FZ_CHECK(!r[k].failed);
                    FZ_CHECK(sent == hl + (cl < body ? cl : body));
                }
            }
        } else {
            FZ_CHECK(!r[0].framed);
        }
    }
    for (int k = 0; k < 2; k++) {
        free(r[k].stream);
        free(r[k].out);
    }
    return 0;
}
