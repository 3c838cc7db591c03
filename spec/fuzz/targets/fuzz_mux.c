/*
 * Mux.Cool over a VMess inbound (core/inbound/mux.c): the frame parser
 * (mux_input, sess_new) fed the client's decrypted body stream in
 * fuzzer-chosen reads, with the sessions' whole life around it.  mux.c
 * talks to net/conn.c through a dozen lr_conn_* functions; this file
 * replaces them with a model of the relay (a parent connection whose
 * remote side is the parser, and one virtual connection per session):
 *
 * - the parent's up pipe hands the parser everything received so far, one
 *   decoded unit (= one read here) at a time, in an exact-size copy, and
 *   calls it again with the rest when it took only part (as emit() does);
 *   when it takes nothing the pipe waits for a kick;
 * - the parent's down pipe is a LR_BUF_CAP buffer that compacts only when
 *   nothing is pending (as net/conn.c), drained by a client at a
 *   fuzzer-chosen speed; mux_room runs when it is empty, as pump() does;
 * - each session dials (closes at once, connects later, fails later),
 *   has an up pipe of fuzzer-chosen capacity drained by its remote, and a
 *   remote that sends stream bytes or datagrams, EOF, or resets;
 * - lr_conn_close frees a connection as the real one does (free hooks,
 *   then free), so a use after close is an ASan report; kicks are
 *   deferred and run from a queue, never re-entrantly; a datagram pushed
 *   into a relaying session is pumped at once (and may close it) as in
 *   net/conn.c.
 *
 * Input: ctrl(1) split_seed(1) event_seed(2) then the client's stream (the
 * VMess body payload: Mux.Cool frames).  ctrl & 1: the client ends its
 * stream (end chunk) after the last byte; & 2: hostile world (dials fail
 * at once, out of memory, resets, send failures, parent reset); (ctrl >> 2)
 * & 3: client read speed (all, random, small, stalled); (ctrl >> 4) & 3:
 * session up capacity (LR_BUF_CAP, random, small, 1..64 bytes); & 0x40:
 * chatty remotes; & 0x80: the first read arrives with the VMess header
 * (the parser runs inside lr_mux_start).
 *
 * Checked against a reference parse of the whole stream:
 * - every byte a TCP session receives is data of a New (that opened it)
 *   or Keep frame with its id, in stream order with nothing skipped inside
 *   a frame; every datagram is exactly one such frame's data; nothing
 *   reaches a session after the client ended it (End, or end of stream);
 * - a session is dialled only for a New frame that ended in the current
 *   read, with its network, port and address; the host is non-empty,
 *   NUL-terminated, without control, space or non-ASCII bytes (as the
 *   SOCKS5 inbound requires: a NUL would cut the name short);
 * - the parent is doomed exactly at the first bad metaLen;
 * - what the mux writes to the client is a well-formed frame stream:
 *   Keep frames (opt 1, 1..16384 bytes for TCP, a whole datagram for UDP)
 *   only from a session's sink with its id and exactly the bytes it was
 *   offered, the sink's return value = bytes framed; End frames (opt 0 or
 *   2) at most once per New frame of that id; every push fits (no frame is
 *   ever truncated); nothing after the mux ended the direction;
 * - liveness: once the world turns friendly (every dial connects, every
 *   remote and the client read everything) the parser consumes the whole
 *   stream and every session's replies reach the client; if the client
 *   ended the stream and the remotes end theirs, the parent closes "done";
 * - closing the parent closes every session; nothing leaks (LSan).
 *
 * XUDP: a UDP session becomes XUDP through a GlobalID after its New
 * frame's address or a Keep frame carrying an address; its replies then
 * carry a UDP address in their meta (network 2, port, atyp, address), and
 * its datagrams that came while it was dialled are pushed when it
 * connects (outside a parser call: each must be the data of an earlier
 * deliverable frame).  The full-cone socket (inbound/xudp.c) needs the
 * direct outbound, which this world has not: lr_xudp_open answers NULL.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "inbound/inbound.h"


#define MAX_LIVE 1024          /* mux.c allows 256 sessions at once */
#define TCP_FRAME_MAX 16384    /* mux.c: MUX_FRAME_DATA */
#define NONE ((size_t)-1)

/* ------------------------------------------------------------ reference */

struct rframe {
    size_t off;          /* the frame's first byte (metaLen) */
    size_t meta_end;     /* after the meta's last byte */
    size_t data_off;     /* first data byte; with no data: end of the meta */
    size_t data_len;     /* declared; may run past the end of the stream */
    uint16_t id;
    uint8_t status, opt, has_data;
};

struct rnew {
    uint16_t id;
    uint16_t news, ends;
};

/* ------------------------------------------------------------ the world */

struct ss {
    struct lr_conn *c;
    int id;              /* learnt from its traffic; -1 until then */
    uint8_t udp, dialed, relay, up_eof, up_closed, down_eof, down_closed;
    uint8_t dgram_busy;  /* a datagram waits for the relay to start */
    uint8_t speed;       /* 0 remote takes all, 1 random, 2 only when asked */
    size_t up_len, up_cap;
    size_t down_len;     /* remote bytes not yet taken by the sink (TCP) */
    uint32_t down_seq;
    size_t last_end;     /* stream offset after its last stream bytes */
    uint64_t got;        /* bytes/datagrams received from the parser */
};

static struct world {
    uint8_t ctrl;
    uint64_t split, ev;
    const uint8_t *in;
    size_t len, arrived, consumed;
    size_t *units;       /* ends of the reads, in order */
    uint8_t *ubuf;       /* a copy of the unit being parsed */
    size_t nunits, uix;
    int client_eof;      /* ctrl & 1 and everything arrived */
    int settling;        /* the friendly world of the liveness check */

    struct lr_conn *parent;
    const char *parent_reason;
    int prelay, up_closed, down_eof, down_closed, doomed;
    size_t drd, dwr, dpend;   /* the parent's down pipe */
    uint64_t down_total;

    struct ss *live[MAX_LIVE];
    size_t nlive;
    unsigned created, closed_now, dial_fail_now;
    struct lr_conn *kicks;

    /* the parser call in progress */
    const uint8_t *cur_buf;
    size_t cur_base, cur_len;

    /* the session sink call in progress */
    struct ss *sinking;
    const uint8_t *offered;
    size_t offered_len, sink_pushed;

    /* the client's view of the down stream */
    uint8_t ostage;      /* 0 header, 1 data length, 2 data, 3 UDP address */
    unsigned oskip, oextra; /* UDP address bytes left, seen */
    uint8_t oh[6];
    unsigned ohave;
    size_t oleft;
    struct ss *oowner;
    unsigned keeps, ends;

    struct rframe *rf;
    size_t nrf;
    size_t bad_at;       /* first bad metaLen, or NONE */
    struct rnew *rn;
    size_t nrn;
} W;

static uint8_t pattern[LR_BUF_CAP + 256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 131 + (i >> 8) * 7 + 1);
    return 0;
}

static uint64_t rnd(void)
{
    return fz_rand(&W.ev);
}

static int rnew_cmp(const void *a, const void *b)
{
    const struct rnew *x = a, *y = b;
    return (int)x->id - (int)y->id;
}

/* The whole stream as the mux must parse it (up to the first bad metaLen,
 * after which the parent is closed). */
static void ref_parse(void)
{
    size_t cap = W.len / 6 + 2, pos = 0;
    W.rf = malloc(cap * sizeof(*W.rf));
    W.rn = malloc(cap * sizeof(*W.rn));
    FZ_CHECK(W.rf && W.rn);
    W.nrf = W.nrn = 0;
    W.bad_at = NONE;
    while (pos + 2 <= W.len) {
        size_t ml = lr_get_be16(W.in + pos);
        if (ml < 4 || ml > 512) {
            W.bad_at = pos;
            break;
        }
        if (pos + 2 + ml > W.len)
            break;
        FZ_CHECK(W.nrf < cap);
        struct rframe *f = &W.rf[W.nrf];
        const uint8_t *m = W.in + pos + 2;
        f->off = pos;
        f->id = lr_get_be16(m);
        f->status = m[2];
        f->opt = m[3];
        f->has_data = 0;
        f->meta_end = f->data_off = pos + 2 + ml;
        f->data_len = 0;
        if (f->status == 1) {
            W.rn[W.nrn].id = f->id;
            W.rn[W.nrn].news = 1;
            W.rn[W.nrn++].ends = 0;
        }
        if (f->opt & 1) {
            if (pos + 2 + ml + 2 > W.len) {
                W.nrf++; /* no data length yet: no data to deliver */
                break;
            }
            f->has_data = 1;
            f->data_len = lr_get_be16(W.in + pos + 2 + ml);
            f->data_off = pos + 2 + ml + 2;
        }
        W.nrf++;
        pos = f->data_off + f->data_len;
    }
    /* New ids, merged: a count per id */
    if (W.nrn) {
        qsort(W.rn, W.nrn, sizeof(*W.rn), rnew_cmp);
        size_t k = 0;
        for (size_t i = 1; i < W.nrn; i++) {
            if (W.rn[i].id == W.rn[k].id)
                W.rn[k].news++;
            else
                W.rn[++k] = W.rn[i];
        }
        W.nrn = k + 1;
    }
}

static struct rnew *rnew_find(uint16_t id)
{
    struct rnew key = {id, 0, 0};
    return bsearch(&key, W.rn, W.nrn, sizeof(*W.rn), rnew_cmp);
}

/* The frame whose data holds stream offset o, or NULL. */
static const struct rframe *frame_at(size_t o)
{
    size_t lo = 0, hi = W.nrf;
    while (lo < hi) { /* first frame with data_off > o */
        size_t mid = (lo + hi) / 2;
        if (W.rf[mid].data_off > o)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo == 0)
        return NULL;
    const struct rframe *f = &W.rf[lo - 1];
    if (!f->has_data || o >= f->data_off + f->data_len)
        return NULL;
    return f;
}

/* Frames whose data a session may receive: its New, and Keep. */
static int deliverable(const struct rframe *f)
{
    return f->status == 1 || f->status == 2;
}

static void learn_id(struct ss *s, uint16_t id)
{
    if (s->id < 0)
        s->id = id;
    FZ_CHECK(s->id == id);
}

/* ------------------------------------------------------------ bookkeeping */

static struct ss *sess_of(const struct lr_conn *c)
{
    for (size_t i = 0; i < W.nlive; i++)
        if (W.live[i]->c == c)
            return W.live[i];
    return NULL;
}

static int is_live(const struct lr_conn *c)
{
    return c && (c == W.parent || sess_of(c) != NULL);
}

static void unkick(struct lr_conn *c)
{
    struct lr_conn **pp = &W.kicks;
    while (*pp && *pp != c)
        pp = &(*pp)->kick_next;
    if (*pp)
        *pp = c->kick_next;
    c->kicked = 0;
    c->kick_next = NULL;
}

/* ------------------------------------------------------------ the client's view */

/* Parses what the mux writes to the client; see the checks above. */
static void out_feed(const uint8_t *p, size_t n)
{
    while (n) {
        if (W.ostage == 0) {
            size_t k = 6 - W.ohave < n ? 6 - W.ohave : n;
            memcpy(W.oh + W.ohave, p, k);
            W.ohave += (unsigned)k;
            p += k;
            n -= k;
            if (W.ohave < 6)
                continue;
            W.ohave = 0;
            size_t ml = lr_get_be16(W.oh);
            uint16_t id = lr_get_be16(W.oh + 2);
            uint8_t st = W.oh[4], opt = W.oh[5];
            /* only an XUDP reply has more meta: its source address */
            FZ_CHECK(ml == 4 || (st == 2 && W.sinking && W.sinking->udp &&
                                 ml >= 4 + 1 + 2 + 1 + 4 && ml <= 4 + 1 + 2 + 1 + 1 + 255));
            if (st == 2) {
                FZ_CHECK(opt == 1);
                FZ_CHECK(W.sinking != NULL); /* data only from a session's sink */
                learn_id(W.sinking, id);
                W.oowner = W.sinking;
                W.ostage = ml > 4 ? 3 : 1;
                W.oskip = (unsigned)(ml - 4);
                W.oextra = 0;
                W.keeps++;
            } else {
                FZ_CHECK(st == 3);
                FZ_CHECK(opt == 0 || opt == 2);
                W.ends++;
                if (!W.doomed) {
                    /* at most one End per New frame of that id */
                    struct rnew *r = rnew_find(id);
                    FZ_CHECK(r != NULL);
                    FZ_CHECK(++r->ends <= r->news);
                }
            }
        } else if (W.ostage == 3) {
            /* network 2 (UDP) first; the address was checked in mux.c */
            if (W.oextra == 0)
                FZ_CHECK(p[0] == 2);
            size_t k = W.oskip < n ? W.oskip : n;
            W.oskip -= (unsigned)k;
            W.oextra += (unsigned)k;
            p += k;
            n -= k;
            if (!W.oskip)
                W.ostage = 1;
        } else if (W.ostage == 1) {
            size_t k = 2 - W.ohave < n ? 2 - W.ohave : n;
            memcpy(W.oh + W.ohave, p, k);
            W.ohave += (unsigned)k;
            p += k;
            n -= k;
            if (W.ohave < 2)
                continue;
            W.ohave = 0;
            size_t dl = lr_get_be16(W.oh);
            FZ_CHECK(W.sinking == W.oowner);
            FZ_CHECK(dl >= 1 && dl <= W.offered_len - W.sink_pushed);
            if (W.oowner->udp)
                FZ_CHECK(dl == W.offered_len); /* a whole datagram */
            else
                FZ_CHECK(dl <= TCP_FRAME_MAX);
            W.oleft = dl;
            W.ostage = 2;
        } else {
            size_t k = W.oleft < n ? W.oleft : n;
            FZ_CHECK(W.sinking == W.oowner);
            FZ_CHECK(memcmp(p, W.offered + W.sink_pushed, k) == 0);
            W.sink_pushed += k;
            W.oleft -= k;
            p += k;
            n -= k;
            if (!W.oleft)
                W.ostage = 0;
        }
    }
}

/* ------------------------------------------------------------ pumps */

static int pump_sess(struct ss *s, size_t take);
static void run_kicks(void);

static size_t client_take(size_t pend)
{
    if (W.settling || !pend)
        return pend;
    uint64_t r = rnd();
    switch ((W.ctrl >> 2) & 3) {
    case 0: return pend;
    case 1: return (r >> 8) % (pend + 1);
    case 2: { size_t k = 1 + (r >> 8) % 64; return k < pend ? k : pend; }
    default: return 0;
    }
}

/* One call of the session's sink with `len` bytes (an exact copy). */
static size_t sink_call(struct ss *s, size_t len)
{
    struct lr_conn *c = s->c;
    uint8_t *buf = malloc(len);
    FZ_CHECK(buf != NULL);
    memcpy(buf, pattern + s->down_seq % 256, len);
    W.sinking = s;
    W.offered = buf;
    W.offered_len = len;
    W.sink_pushed = 0;
    size_t n = c->cli.sink(c, buf, len);
    FZ_CHECK(W.ostage == 0); /* whole frames */
    if (s->udp)
        FZ_CHECK(W.sink_pushed == 0 || (W.sink_pushed == len && n == len));
    else
        FZ_CHECK(n == W.sink_pushed); /* taken = framed */
    FZ_CHECK(n <= len);
    W.sinking = NULL;
    W.offered = NULL;
    free(buf);
    return n;
}

/* The session's pump (net/conn.c pump() for both pipes).  take: how many
 * bytes its remote accepts from the up pipe now.  -1 if it closed. */
static int pump_sess(struct ss *s, size_t take)
{
    struct lr_conn *c = s->c;
    if (!s->relay)
        return 0;
    if (W.settling)
        take = NONE;
    /* up: to the remote */
    if (s->udp) {
        s->dgram_busy = 0;
    } else {
        if (take > s->up_len)
            take = s->up_len;
        s->up_len -= take;
    }
    if (s->up_eof && !s->up_len && !s->dgram_busy && !s->up_closed)
        s->up_closed = 1; /* shutdown(SHUT_WR) */
    if (!s->up_eof && s->up_len < s->up_cap && c->cli.room)
        c->cli.room(c);
    /* down: the remote's stream bytes to the sink, until it takes none */
    for (int i = 0; !s->udp && s->down_len && i < 100000; i++) {
        size_t n = sink_call(s, s->down_len);
        if (!n)
            break;
        s->down_len -= n;
        s->down_seq += (uint32_t)n;
    }
    if (s->down_eof && !s->down_len && !s->down_closed) {
        s->down_closed = 1;
        FZ_CHECK(c->cli.sink_end != NULL);
        c->cli.sink_end(c);
    }
    if (s->up_closed && s->down_closed) {
        lr_conn_close(c, "done");
        return -1;
    }
    return 0;
}

/* The current unit in an exact-size copy (made once per unit), so that
 * ASan sees a read past what the parser was given. */
static void feed_parser(int *blocked)
{
    struct lr_conn *p = W.parent;
    size_t uend = W.units[W.uix];
    size_t ustart = W.uix ? W.units[W.uix - 1] : 0;
    *blocked = 0;
    if (!W.ubuf) {
        W.ubuf = malloc(uend - ustart);
        FZ_CHECK(W.ubuf != NULL);
        memcpy(W.ubuf, W.in + ustart, uend - ustart);
    }
    for (int i = 0; W.consumed < uend; i++) {
        FZ_CHECK(i < 100000);
        size_t k = uend - W.consumed;
        W.cur_buf = W.ubuf + (W.consumed - ustart);
        W.cur_base = W.consumed;
        W.cur_len = k;
        size_t n = p->rem.sink(p, W.cur_buf, k);
        W.cur_buf = NULL;
        FZ_CHECK(W.parent == p && n <= k);
        W.consumed += n;
        if (!n) {
            *blocked = 1;
            break;
        }
    }
    if (W.consumed == uend) {
        W.uix++;
        free(W.ubuf);
        W.ubuf = NULL;
    }
}

/* The parent's pump (both pipes, as a kick runs them).  -1 if closed. */
static int pump_parent(void)
{
    struct lr_conn *p = W.parent;
    if (p->doom) {
        lr_conn_close(p, p->doom);
        return -1;
    }
    if (!W.prelay)
        return 0;
    /* up: the client's units to the parser */
    for (int round = 0; round < 256 && W.consumed < W.arrived; round++) {
        int blocked;
        feed_parser(&blocked);
        if (blocked)
            break;
    }
    if (W.client_eof && W.consumed == W.len && !W.up_closed) {
        W.up_closed = 1;
        FZ_CHECK(p->rem.sink_end != NULL);
        p->rem.sink_end(p);
    }
    /* down: the client reads */
    if (W.drd < W.dwr) {
        W.dpend += W.dwr - W.drd;
        W.drd = W.dwr;
    }
    size_t t = client_take(W.dpend);
    W.dpend -= t;
    W.down_total += t;
    if (!W.dpend)
        W.drd = W.dwr = 0; /* the buffer goes back to the pool */
    if (W.down_eof && !W.dpend && !W.down_closed)
        W.down_closed = 1;
    if (!W.down_eof && !W.dpend && p->rem.room)
        p->rem.room(p);
    if (p->doom) {
        lr_conn_close(p, p->doom);
        return -1;
    }
    if (W.up_closed && W.down_closed) {
        lr_conn_close(p, "done");
        return -1;
    }
    /* the first bad metaLen dooms the parent at once */
    FZ_CHECK(W.bad_at == NONE || W.consumed < W.bad_at + 2);
    return 0;
}

static void run_kicks(void)
{
    for (int i = 0; i < 4096 && W.kicks; i++) {
        struct lr_conn *c = W.kicks;
        W.kicks = c->kick_next;
        c->kicked = 0;
        c->kick_next = NULL;
        if (c == W.parent) {
            pump_parent();
        } else {
            struct ss *s = sess_of(c);
            FZ_CHECK(s != NULL);
            pump_sess(s, s->speed == 0 ? NONE : s->speed == 1 ? (rnd() >> 8) % 4096 : 0);
        }
    }
}

/* The next read from the client (one decoded unit), within LR_BUF_CAP. */
static void arrive(size_t want)
{
    size_t room = LR_BUF_CAP - (W.arrived - W.consumed);
    size_t k = want < W.len - W.arrived ? want : W.len - W.arrived;
    if (k > room)
        k = room;
    if (k) {
        W.arrived += k;
        W.units[W.nunits++] = W.arrived;
    }
    if (W.arrived == W.len && (W.ctrl & 1))
        W.client_eof = 1; /* the end chunk */
}

/* ------------------------------------------------------------ inbound/xudp.c */

struct lr_xudp *lr_xudp_open(struct lr_conn *c, lr_xudp_reply_fn reply)
{
    FZ_CHECK(sess_of(c) != NULL && reply != NULL);
    return NULL; /* no direct outbound in this world */
}

void lr_xudp_send(struct lr_xudp *x, const struct lr_dest *d, const uint8_t *data,
                  size_t len)
{
    (void)x; (void)d; (void)data; (void)len;
    FZ_CHECK(0);
}

void lr_xudp_resume(struct lr_xudp *x)
{
    (void)x;
    FZ_CHECK(0);
}

void lr_xudp_free(struct lr_xudp *x)
{
    FZ_CHECK(x == NULL);
}

/* only for full-cone sessions (re-attach, orphans): none here */
void lr_conn_set_deadline(struct lr_conn *c, double seconds)
{
    (void)c; (void)seconds;
    FZ_CHECK(0);
}

/* ------------------------------------------------------------ net/conn.c */

struct lr_conn *lr_dispatch_session(struct lr_conn *parent, const struct lr_ib_ops *ops,
                                    size_t (*sink)(struct lr_conn *, const uint8_t *, size_t))
{
    FZ_CHECK(W.cur_buf != NULL && W.parent != NULL); /* while parsing a New */
    FZ_CHECK(parent == W.parent && ops != NULL && sink != NULL);
    struct lr_inbound *ib = parent->ib;
    const struct lr_addr *src = &parent->src;
    if ((W.ctrl & 2) && rnd() % 64 == 0)
        return NULL; /* out of memory */
    FZ_CHECK(W.nlive < MAX_LIVE);
    struct lr_conn *c = calloc(1, sizeof(*c));
    struct ss *s = calloc(1, sizeof(*s));
    FZ_CHECK(c && s);
    c->lp = parent->lp;
    c->ib = ib;
    c->ibops = ops;
    c->src = *src;
    c->user = -1;
    c->cli.fd = c->rem.fd = c->dial.fd = -1;
    c->cli.dgram = 1;
    c->cli.sink = sink;
    c->dst.network = LR_NET_UDP;
    s->c = c;
    s->id = -1;
    s->last_end = NONE;
    uint64_t r = rnd();
    s->speed = (uint8_t)(r % 3);
    switch ((W.ctrl >> 4) & 3) {
    case 0: s->up_cap = LR_BUF_CAP; break;
    case 1: s->up_cap = 1 + (r >> 8) % LR_BUF_CAP; break;
    case 2: s->up_cap = 16 + (r >> 8) % 1009; break;
    default: s->up_cap = 1 + (r >> 8) % 64; break;
    }
    W.live[W.nlive++] = s;
    W.created++;
    return c;
}

/* The New frame a dialled session came from: its meta ended in the
 * parser call in progress, and network, port and address match.  Learns
 * the id (unless identical New frames of several ids end in this call). */
static void dial_frame(struct ss *s)
{
    const struct lr_dest *d = &s->c->dst;
    size_t lo = 0, hi = W.nrf;
    int id = -1, ambiguous = 0;
    FZ_CHECK(W.cur_buf != NULL);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (W.rf[mid].meta_end <= W.cur_base)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < W.nrf && W.rf[i].meta_end <= W.cur_base + W.cur_len; i++) {
        const struct rframe *f = &W.rf[i];
        const uint8_t *m = W.in + f->off + 2, *a = m + 8;
        size_t al = f->meta_end - (f->off + 10);
        if (f->status != 1 || f->meta_end < f->off + 10)
            continue;
        if ((m[4] == 2) != s->udp || lr_get_be16(m + 5) != d->port)
            continue;
        int same;
        switch (m[7]) {
        case 1: same = d->atyp == LR_ATYP_IPV4 && al >= 4 && !memcmp(d->ip, a, 4); break;
        case 3: same = d->atyp == LR_ATYP_IPV6 && al >= 16 && !memcmp(d->ip, a, 16); break;
        case 2:
            same = d->atyp == LR_ATYP_DOMAIN && al >= 1 && a[0] && al >= 1u + a[0] &&
                   strlen(d->host) == a[0] && !memcmp(d->host, a + 1, a[0]);
            break;
        default: same = 0; break;
        }
        if (!same)
            continue;
        ambiguous |= id >= 0 && id != f->id;
        id = f->id;
    }
    FZ_CHECK(id >= 0); /* a session only for a New frame, as it says */
    if (!ambiguous)
        learn_id(s, (uint16_t)id);
}

void lr_dispatch(struct lr_conn *c)
{
    struct ss *s = sess_of(c);
    FZ_CHECK(s != NULL && !s->dialed);
    s->dialed = 1;
    const struct lr_dest *d = &c->dst;
    FZ_CHECK(d->network == LR_NET_TCP || d->network == LR_NET_UDP);
    s->udp = d->network == LR_NET_UDP;
    FZ_CHECK(c->cli.dgram == s->udp);
    FZ_CHECK(c->cli.sink_end != NULL && c->cli.room != NULL);
    FZ_CHECK(d->atyp == LR_ATYP_IPV4 || d->atyp == LR_ATYP_IPV6 ||
             d->atyp == LR_ATYP_DOMAIN);
    const char *nul = memchr(d->host, 0, sizeof(d->host));
    FZ_CHECK(nul != NULL && nul > d->host);
    for (const char *q = d->host; q < nul; q++)
        FZ_CHECK((unsigned char)*q > ' ' && (unsigned char)*q < 0x7f);
    if (!W.doomed)
        dial_frame(s);
    if (fz_verbose())
        fprintf(stderr, "mux: dial %s %s:%u\n", s->udp ? "udp" : "tcp",
                d->host, d->port);
    /* no route, refused by a hook or the policy, blackhole: closed at once
     * (sess_ops has no dial_failed) */
    if ((W.ctrl & 2) && rnd() % 4 == 0) {
        W.dial_fail_now++;
        lr_conn_close(c, rnd() & 1 ? "no route" : "blackhole");
    }
}

void lr_conn_start_relay(struct lr_conn *c)
{
    FZ_CHECK(is_live(c));
    if (c == W.parent) {
        FZ_CHECK(!W.prelay);
        W.prelay = 1;
        pump_parent();
        return;
    }
    struct ss *s = sess_of(c);
    FZ_CHECK(s->dialed && !s->relay);
    s->relay = 1;
    pump_sess(s, NONE);
}

size_t lr_conn_push_stream(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct ss *s = sess_of(c);
    FZ_CHECK(s != NULL && !s->udp);
    FZ_CHECK(!s->up_eof); /* nothing after the client ended it */
    FZ_CHECK(W.cur_buf != NULL && len > 0);
    FZ_CHECK(data >= W.cur_buf && data + len <= W.cur_buf + W.cur_len);
    size_t room = s->up_cap - s->up_len;
    size_t n = len < room ? len : room;
    if (!n)
        return 0;
    size_t o = W.cur_base + (size_t)(data - W.cur_buf);
    if (!W.doomed) {
        const struct rframe *f = frame_at(o);
        FZ_CHECK(f != NULL && deliverable(f));
        FZ_CHECK(o + n <= f->data_off + f->data_len);
        learn_id(s, f->id);
        if (s->last_end != NONE && o != s->last_end) {
            /* a jump: only from the end of one frame's data to the start
             * of another's */
            const struct rframe *g = frame_at(s->last_end - 1);
            FZ_CHECK(g && s->last_end == g->data_off + g->data_len);
            FZ_CHECK(o == f->data_off && o > s->last_end);
        }
        s->last_end = o + n;
    }
    s->up_len += n;
    s->got += n;
    if (s->relay)
        lr_conn_kick(c);
    return n;
}

int lr_conn_push_datagram(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct ss *s = sess_of(c);
    FZ_CHECK(s != NULL && s->udp);
    FZ_CHECK(!s->up_eof);
    FZ_CHECK(data != NULL && len >= 1 && len <= 65535);
    if (!W.cur_buf) {
        /* an XUDP datagram that waited for the dial: the data of an
         * earlier deliverable frame of its id */
        FZ_CHECK(!s->relay);
        int hit = 0;
        for (size_t i = 0; i < W.nrf && !hit && !W.doomed; i++) {
            const struct rframe *f = &W.rf[i];
            hit = f->has_data && deliverable(f) && f->data_len == len &&
                  f->data_off + f->data_len <= W.consumed &&
                  (s->id < 0 || s->id == f->id) &&
                  memcmp(W.in + f->data_off, data, len) == 0;
        }
        FZ_CHECK(hit || W.doomed);
        s->got++;
        if (!s->dgram_busy)
            s->dgram_busy = 1;
        return 0;
    }
    if (!W.doomed) {
        /* exactly the data of a frame that ends in this call */
        size_t lo = 0, hi = W.nrf, hit = 0;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (W.rf[mid].data_off + W.rf[mid].data_len <= W.cur_base)
                lo = mid + 1;
            else
                hi = mid;
        }
        int id = -1, ambiguous = 0;
        for (size_t i = lo; i < W.nrf; i++) {
            const struct rframe *f = &W.rf[i];
            if (f->data_off + f->data_len > W.cur_base + W.cur_len)
                break;
            if (f->has_data && deliverable(f) && f->data_len == len &&
                (s->id < 0 || s->id == f->id) &&
                memcmp(W.in + f->data_off, data, len) == 0) {
                hit = 1;
                ambiguous |= id >= 0 && id != f->id;
                id = f->id;
            }
        }
        FZ_CHECK(hit);
        if (!ambiguous) /* equal datagrams of several ids: learn nothing */
            learn_id(s, (uint16_t)id);
    }
    s->got++;
    if (!s->relay) {
        if (!s->dgram_busy)
            s->dgram_busy = 1; /* sent when the relay starts */
        return 0;              /* else dropped */
    }
    /* relaying: pumped at once; the send may fail */
    if ((W.ctrl & 2) && rnd() % 32 == 0) {
        lr_conn_close(c, "send failed");
        return -1;
    }
    return pump_sess(s, NONE);
}

size_t lr_conn_push_down(struct lr_conn *c, const uint8_t *data, size_t len)
{
    FZ_CHECK(c == W.parent && data != NULL && len > 0);
    FZ_CHECK(!W.down_eof); /* nothing after the mux ended the direction */
    if (!W.dpend && LR_BUF_CAP - W.dwr < len) {
        W.dwr -= W.drd;
        W.drd = 0;
    }
    /* pushed whole: a truncated frame would corrupt the client's stream */
    FZ_CHECK(len <= LR_BUF_CAP - W.dwr);
    W.dwr += len;
    out_feed(data, len);
    if (!W.sinking)
        FZ_CHECK(W.ostage == 0);
    if (W.prelay)
        lr_conn_kick(c);
    return len;
}

size_t lr_conn_down_room(struct lr_conn *c)
{
    FZ_CHECK(c == W.parent);
    if (!W.dpend) {
        W.dwr -= W.drd;
        W.drd = 0;
    }
    return LR_BUF_CAP - W.dwr;
}

void lr_conn_push_eof(struct lr_conn *c, int down)
{
    if (c == W.parent) {
        FZ_CHECK(down == 1);
        W.down_eof = 1;
        if (W.prelay)
            lr_conn_kick(c);
        return;
    }
    struct ss *s = sess_of(c);
    FZ_CHECK(s != NULL && down == 0);
    s->up_eof = 1;
    if (s->relay)
        lr_conn_kick(c);
}

void lr_conn_doom(struct lr_conn *c, const char *reason)
{
    FZ_CHECK(c == W.parent && reason != NULL);
    if (!W.doomed) {
        /* the first bad metaLen, seen in this call */
        FZ_CHECK(W.cur_buf != NULL && W.bad_at != NONE);
        FZ_CHECK(W.bad_at + 2 <= W.cur_base + W.cur_len);
        FZ_CHECK(W.bad_at + 1 >= W.cur_base);
    }
    W.doomed = 1;
    if (!c->doom)
        c->doom = reason;
    lr_conn_kick(c);
}

void lr_conn_kick(struct lr_conn *c)
{
    FZ_CHECK(is_live(c));
    if (c->kicked)
        return;
    c->kicked = 1;
    c->kick_next = W.kicks;
    W.kicks = c;
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    FZ_CHECK(is_live(c) && reason != NULL);
    /* c->dialed (net/conn.c's, unused by mux.c) marks "closing" here: a
     * second close from inside the free hooks is a finding */
    FZ_CHECK(!c->dialed);
    c->dialed = 1;
    if (!c->reason)
        c->reason = reason;
    unkick(c);
    if (c == W.parent) {
        FZ_CHECK(W.cur_buf == NULL); /* the parser never closes its parent */
        if (c->ibops && c->ibops->free)
            c->ibops->free(c);
        if (c->obops && c->obops->free)
            c->obops->free(c);
        FZ_CHECK(W.nlive == 0); /* every session went with it */
        FZ_CHECK(c->ob_state == NULL);
        W.parent_reason = c->reason;
        W.parent = NULL;
        free(c);
        return;
    }
    struct ss *s = sess_of(c);
    FZ_CHECK(W.sinking != s);
    if (c->ibops && c->ibops->free)
        c->ibops->free(c);
    FZ_CHECK(c->ib_state == NULL);
    for (size_t i = 0; i < W.nlive; i++)
        if (W.live[i] == s) {
            W.live[i] = W.live[--W.nlive];
            break;
        }
    W.closed_now++;
    free(s);
    free(c);
}

/* ------------------------------------------------------------ the run */

static void sess_event(void)
{
    struct ss *s = W.live[rnd() % W.nlive];
    struct lr_conn *c = s->c;
    uint64_t r = rnd();
    if (!s->relay) {
        if (r % 8 < 6)
            c->ibops->connected(c);
        else
            lr_conn_close(c, "connect failed");
        return;
    }
    size_t big = (W.ctrl & 0x40) ? 65535 : 2048;
    unsigned what = (unsigned)((r >> 4) % 16);
    if (s->down_eof && what < 12)
        what = 13; /* an ended remote sends nothing more */
    switch (what) {
    case 0: case 1: case 2: case 3: case 4: case 5: {
        uint64_t q = r >> 8;
        size_t l = (q & 3) ? 1 + (q >> 2) % 64 : 1 + (q >> 2) % big;
        if (s->udp) {
            if (l > 65535)
                l = 65535;
            sink_call(s, l); /* one datagram: taken or dropped */
            s->down_seq++;
            pump_sess(s, 0);
        } else {
            if (l > LR_BUF_CAP - s->down_len)
                l = LR_BUF_CAP - s->down_len;
            s->down_len += l;
            pump_sess(s, 0);
        }
        break;
    }
    case 6: case 7: case 8: case 9:
        pump_sess(s, (r >> 8) & 1 ? NONE : (r >> 9) % 2048);
        break;
    case 10: case 11:
        s->down_eof = 1;
        pump_sess(s, 0);
        break;
    case 12:
        if (W.ctrl & 2)
            lr_conn_close(c, (r >> 8) & 1 ? "reset" : "idle timeout");
        break;
    default:
        pump_sess(s, 0);
        break;
    }
}

/* Everything friendly until nothing moves: the rest of the stream
 * arrives, every dial connects, every remote and the client read all
 * (and with remote_eof every remote ends its side). */
static void settle(int remote_eof)
{
    W.settling = 1;
    for (int round = 0; round < 200000 && W.parent; round++) {
        size_t before = W.consumed + W.arrived + W.down_total + W.closed_now;
        struct lr_conn *dialing[MAX_LIVE];
        size_t nd = 0;
        arrive(W.len);
        for (size_t i = 0; i < W.nlive; i++) {
            W.live[i]->up_cap = LR_BUF_CAP; /* as net/conn.c, not a trickle */
            if (!W.live[i]->relay)
                dialing[nd++] = W.live[i]->c;
        }
        for (size_t i = 0; i < nd && W.parent; i++)
            if (sess_of(dialing[i]))
                dialing[i]->ibops->connected(dialing[i]);
        for (size_t i = 0; i < W.nlive && W.parent;) {
            struct ss *s = W.live[i];
            if (remote_eof)
                s->down_eof = 1;
            if (pump_sess(s, NONE) == 0)
                i++; /* else closed: another took its place */
        }
        if (W.parent)
            pump_parent();
        run_kicks();
        size_t after = W.consumed + W.arrived + W.down_total + W.closed_now;
        if (after == before && !W.kicks && !nd && round > 1)
            break;
    }
    W.settling = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char tag[] = "vmess-mux-fuzz";
    struct fz f = {data, size};
    memset(&W, 0, sizeof(W));
    W.ctrl = fz_u8(&f);
    W.split = fz_u8(&f) + 1;
    W.ev = fz_u16(&f) + 1;
    W.in = fz_take(&f, (size_t)-1, &W.len);
    W.units = malloc((W.len + 2) * sizeof(*W.units));
    FZ_CHECK(W.units != NULL);
    ref_parse();

    struct lr_inbound ib;
    memset(&ib, 0, sizeof(ib));
    ib.tag = tag;
    ib.type = LR_IB_VMESS;
    ib.fd = -1;
    /* the config's default, or (ctrl bit 6) a small cap the client meets */
    ib.max_sessions = (W.ctrl & 0x40) ? 1 + (W.ctrl & 7) : 256;
    struct lr_conn *p = calloc(1, sizeof(*p));
    FZ_CHECK(p != NULL);
    p->ib = &ib;
    p->user = 0;
    p->cli.fd = p->rem.fd = p->dial.fd = -1;
    p->state = LR_CS_DIAL;
    W.parent = p;
    if (W.ctrl & 0x80)
        arrive(fz_split(&W.split, W.len)); /* came with the VMess header */
    lr_mux_start(p);
    run_kicks();

    size_t extra = 0;
    for (int step = 0; step < 4096 && W.parent; step++) {
        if (W.arrived == W.len && ++extra > 16 + 4 * W.nlive)
            break;
        uint64_t r = rnd();
        unsigned sel = (unsigned)(r % 32);
        if (sel < 10 || (sel >= 13 && sel < 28 && !W.nlive)) {
            arrive(fz_split(&W.split, W.len - W.arrived));
            pump_parent();
        } else if (sel < 13) {
            pump_parent();
        } else if (sel < 28) {
            sess_event();
        } else if (sel == 28 && (W.ctrl & 2) && (r >> 8) % 16 == 0) {
            lr_conn_close(W.parent, (r >> 12) & 1 ? "reset" : "bad chunk");
        }
        run_kicks();
    }

    /* liveness: a friendly world moves everything */
    if (W.parent) {
        settle(0);
        if (W.parent) {
            FZ_CHECK(W.consumed == W.len); /* the parser never stalls */
            for (size_t i = 0; i < W.nlive; i++)
                FZ_CHECK(W.live[i]->down_len == 0); /* replies all went out */
            FZ_CHECK(W.dpend == 0 && W.drd == W.dwr);
        }
    }
    if (W.parent && (W.ctrl & 1)) {
        settle(1);
        /* the client ended, every remote ended: the mux finishes */
        FZ_CHECK(W.parent == NULL);
        FZ_CHECK(strcmp(W.parent_reason, "done") == 0);
    }
    if (fz_verbose())
        fprintf(stderr, "mux: %zu bytes, %zu frames%s, %u sessions (%u closed at dial), "
                "%u Keep / %u End out, consumed %zu, parent %s\n",
                W.len, W.nrf, W.bad_at != NONE ? " then a bad metaLen" : "",
                W.created, W.dial_fail_now, W.keeps, W.ends, W.consumed,
                W.parent ? "open" : W.parent_reason);
    if (W.parent)
        lr_conn_close(W.parent, "fuzz: end of input");
    FZ_CHECK(W.nlive == 0 && W.kicks == NULL);
    free(W.units);
    free(W.ubuf);
    free(W.rf);
    free(W.rn);
    return 0;
}
