/*
 * Mux.Cool over a VMess inbound (vmess-wire.md 13): a v2ray client with
 * mux enabled sends command 3, and the body carries frames
 *   BE16(metaLen <= 512) || BE16(id) || status || opt
 *       [New: network(1 TCP, 2 UDP) || BE16(port) || atyp(1,2,3) || addr]
 *   [opt & 1: BE16(dataLen) || data]
 * status 1 New, 2 Keep, 3 End, 4 KeepAlive; opt 1 data, 2 error.
 *
 * Each session is a connection with a virtual client side: routed and
 * dialled like any other.  The parent connection's remote side is virtual
 * too: its up pipe feeds the frame parser (mux_input), and sessions push
 * Keep/End frames into its down pipe, which the VMess body encoder seals.
 * Backpressure: a session whose input is full stops the parser (and so
 * the parent's reads); a parent whose output is full stops the sessions'
 * replies; each side kicks the other when room returns.
 *
 * Limits: a Mux.Cool connection holds at most the inbound's max_sessions
 * streams at once, and every stream counts in the inbound's session pool
 * (max_connections); a New frame beyond either is answered with an End
 * (error) at once, as v2ray answers a stream it cannot dial.  So is a New
 * frame whose network is neither TCP nor UDP or whose address does not
 * parse: only that stream is refused.
 *
 * XUDP (Xray's UDP over Mux.Cool, `v1.mux.cool:666`): a UDP New frame may
 * carry 8 more meta bytes after the address, the GlobalID, and its Keep
 * frames may carry a per-packet destination after the 4 meta bytes:
 *   network(1: 2 UDP) || BE16(port) || atyp || addr
 * Such a session is XUDP: its replies are Keep frames carrying their
 * source address the same way, and when it is routed to the direct
 * outbound its datagrams leave from one unconnected socket to each
 * packet's destination (full cone, inbound/xudp.c).  A Keep frame of a UDP
 * session whose address does not parse ends that session (End, error).
 * Datagrams of an XUDP session that come while it is still dialled wait,
 * XQ_MAX and XQ_BYTES at most.  A session routed elsewhere (VMess, block)
 * gets only the datagrams meant for its New frame's destination.
 *
 * GlobalID (as Xray's server): a full-cone session with a non-zero
 * GlobalID keeps its socket when its connection is lost, for XUDP_ORPHAN
 * seconds; a New frame with the same GlobalID, from the same user on the
 * same inbound, on any connection of the worker, takes that session over
 * (its old stream, if its connection is still there, gets an End), so a
 * reconnecting client keeps its mapping.  Its data goes to the new New
 * frame's destination.
 */
#include <string.h>

#include "base/log.h"
#include "inbound/inbound.h"

#define META_MAX 512
#define MUX_FRAME_DATA 16384 /* v2ray writes 8 KiB frames; any 16-bit size reads */
#define XQ_MAX 8             /* datagrams an XUDP session holds while dialled */
#define XQ_BYTES 16384       /* ... and their bytes at most */
#define XUDP_ORPHAN 60.0     /* s a mapping outlives its connection */
#define ADDR_MAX (2 + 1 + 1 + 255) /* port, atyp, length, name */

struct xq {                  /* a datagram waiting for its session's dial */
    struct lr_dest d;
    uint8_t has_d;
    size_t len;
    uint8_t data[];
};

enum { ST_LEN = 0, ST_META, ST_DLEN, ST_DATA };

struct mux;

struct mux_sess {
    struct lr_conn *conn;
    struct mux *m;
    uint16_t id;
    uint8_t udp;
    uint8_t blocked;       /* its reply did not fit: kick when room returns */
    uint8_t end_pending;   /* End frame still to send */
    uint8_t end_error;
    uint8_t client_ended;  /* the client sent End: no more data for it */
    uint8_t xudp;          /* per-packet addresses; replies carry the source */
    uint8_t connected;
    uint8_t has_gid;
    uint8_t gid[8];        /* XUDP GlobalID (0: none) */
    uint8_t nq;
    uint32_t qbytes;
    struct xq *q[XQ_MAX];  /* XUDP datagrams before the dial ended */
    struct lr_xudp *x;     /* full cone (direct outbound) */
    struct mux_sess *xprev, *xnext; /* the worker's full-cone sessions with
                                       a GlobalID (xlive) */
    uint8_t xlinked;
    struct lr_dest target; /* the New frame's destination */
    uint8_t taddr[ADDR_MAX]; /* ... as on the wire: port, atyp, address */
    uint16_t taddr_len;
};

struct mux_end {
    uint16_t id;
    uint8_t err;
};

struct mux {
    struct lr_conn *parent;
    struct mux_sess **sess;
    uint32_t nsess, sess_size;
    uint8_t stage;
    uint8_t blocked;       /* parser waits for a session's room */
    uint8_t client_done;
    uint16_t need, have;
    uint8_t hbuf[META_MAX + 4];
    uint16_t meta_len;
    uint16_t cur_id;
    uint8_t cur_status, cur_opt;
    uint8_t cur_deliver;   /* the frame's data goes to session cur_id */
    uint32_t data_left;
    uint8_t *dgram;        /* UDP datagram being collected */
    uint32_t dgram_len;
    struct lr_dest pkt_dst; /* the current Keep frame's XUDP destination */
    uint8_t pkt_has;
    /* End frames that did not fit yet (at most one per stream id the
     * client may have open, so bounded by max_sessions + the refusals of
     * one read; beyond END_QUEUE_MAX the parent is closed) */
    struct mux_end *ends;
    uint32_t nends, ends_size;
};

#define END_QUEUE_MAX 4096

/* The worker's full-cone sessions with a GlobalID, for a re-attach. */
static __thread struct mux_sess *xlive;

static void xlive_unlink(struct mux_sess *s)
{
    if (!s->xlinked)
        return;
    if (s->xprev)
        s->xprev->xnext = s->xnext;
    else
        xlive = s->xnext;
    if (s->xnext)
        s->xnext->xprev = s->xprev;
    s->xprev = s->xnext = NULL;
    s->xlinked = 0;
}

static struct mux_sess *find(struct mux *m, uint16_t id)
{
    for (uint32_t i = 0; i < m->nsess; i++)
        if (m->sess[i]->id == id)
            return m->sess[i];
    return NULL;
}

static int send_end(struct mux *m, uint16_t id, int err)
{
    uint8_t f[6];
    lr_put_be16(f, 4);
    lr_put_be16(f + 2, id);
    f[4] = 3;
    f[5] = err ? 0x02 : 0;
    if (lr_conn_down_room(m->parent) < sizeof(f)) {
        if (m->nends == m->ends_size) {
            uint32_t n = m->ends_size ? m->ends_size * 2 : 16;
            struct mux_end *ne = n <= END_QUEUE_MAX
                                 ? realloc(m->ends, sizeof(*ne) * n) : NULL;
            if (!ne) {
                /* a client that opens streams faster than it reads their
                 * Ends: it is not reading, so stop serving it */
                lr_conn_doom(m->parent, "mux end queue full");
                return 0;
            }
            m->ends = ne;
            m->ends_size = n;
        }
        m->ends[m->nends].id = id;
        m->ends[m->nends++].err = (uint8_t)err;
        return 0;
    }
    lr_conn_push_down(m->parent, f, sizeof(f));
    return 1;
}

/* A Keep frame with data; with alen, the UDP address addr[0..alen) (port,
 * atyp, address) in its meta.  The caller checked the room. */
static void push_keep(struct mux *m, uint16_t id, const uint8_t *addr, size_t alen,
                      const uint8_t *data, size_t n)
{
    uint8_t h[6 + 1 + ADDR_MAX + 2];
    size_t o = 6;
    lr_put_be16(h, (uint16_t)(4 + (alen ? 1 + alen : 0)));
    lr_put_be16(h + 2, id);
    h[4] = 2; /* Keep */
    h[5] = 0x01;
    if (alen) {
        h[o++] = 2; /* UDP */
        memcpy(h + o, addr, alen);
        o += alen;
    }
    lr_put_be16(h + o, (uint16_t)n);
    o += 2;
    lr_conn_push_down(m->parent, h, o);
    lr_conn_push_down(m->parent, data, n);
}

static void maybe_finish(struct mux *m)
{
    if (m->client_done && m->nsess == 0 && m->nends == 0)
        lr_conn_push_eof(m->parent, 1);
}

/* ------------------------------------------------------------ sessions */

static size_t sess_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct mux_sess *s = c->ib_state;
    if (!s || !s->m)
        return len; /* parent gone: drop */
    struct mux *m = s->m;
    size_t room = lr_conn_down_room(m->parent);
    size_t n = len;
    if (s->xudp) {
        /* a datagram from the session's destination, which says so */
        size_t hl = 8 + 1 + s->taddr_len;
        if (len > 65535 || hl + len > LR_BUF_CAP)
            return len; /* can never fit: drop */
        if (room < hl + len) {
            s->blocked = 1;
            return 0;
        }
        push_keep(m, s->id, s->taddr, s->taddr_len, data, len);
        return len;
    }
    if (n > MUX_FRAME_DATA && !s->udp)
        n = MUX_FRAME_DATA;
    if (room < 8 + n) {
        if (s->udp || room <= 8) {
            if (s->udp && 8 + len > LR_BUF_CAP)
                return len; /* can never fit: drop */
            s->blocked = 1;
            lr_debug("mux %u: sink blocked room=%zu len=%zu", s->id, room, len);
            return 0;
        }
        n = room - 8;
        s->blocked = 1; /* the rest waits for room: mux_room kicks us */
    }
    push_keep(m, s->id, NULL, 0, data, n);
    return n;
}

static void sess_sink_end(struct lr_conn *c)
{
    struct mux_sess *s = c->ib_state;
    if (!s || !s->m || s->end_pending == 2)
        return;
    s->end_pending = 2; /* sent (or queued) */
    send_end(s->m, s->id, 0);
}

static void sess_room(struct lr_conn *c)
{
    struct mux_sess *s = c->ib_state;
    if (s && s->m && s->m->blocked) {
        s->m->blocked = 0;
        lr_conn_kick(s->m->parent);
    }
}

/* A datagram the full-cone socket received from `from`: 0 if the mux
 * connection has no room for it now. */
static int xudp_reply(struct lr_conn *c, const struct lr_addr *from,
                      const uint8_t *data, size_t len)
{
    struct mux_sess *s = c->ib_state;
    if (!s || !s->m)
        return 1; /* parent gone: drop */
    uint8_t a[ADDR_MAX], ip[16];
    int il = lr_addr_ip_bytes(from, ip);
    lr_put_be16(a, lr_addr_port(from));
    a[2] = il == 4 ? 1 : 3;
    memcpy(a + 3, ip, (size_t)il);
    size_t alen = 3 + (size_t)il;
    if (len > 65535 || 8 + 1 + alen + len > LR_BUF_CAP)
        return 1; /* can never fit: drop */
    if (lr_conn_down_room(s->m->parent) < 8 + 1 + alen + len)
        return 0;
    push_keep(s->m, s->id, a, alen, data, len);
    return 1;
}

static int same_dest(const struct lr_dest *a, const struct lr_dest *b)
{
    if (a->atyp != b->atyp || a->port != b->port)
        return 0;
    if (a->atyp == LR_ATYP_IPV4)
        return memcmp(a->ip, b->ip, 4) == 0;
    if (a->atyp == LR_ATYP_IPV6)
        return memcmp(a->ip, b->ip, 16) == 0;
    return strcmp(a->host, b->host) == 0;
}

static void xq_clear(struct mux_sess *s)
{
    while (s->nq)
        free(s->q[--s->nq]);
    s->qbytes = 0;
}

static void sess_connected(struct lr_conn *c)
{
    struct mux_sess *s = c->ib_state;
    if (s && s->xudp) {
        s->x = lr_xudp_open(c, xudp_reply);
        if (s->x && s->has_gid) {
            s->xnext = xlive;
            if (xlive)
                xlive->xprev = s;
            xlive = s;
            s->xlinked = 1;
        }
        /* what waited for the dial: everything through the full-cone
         * socket, or the datagrams for the destination into the relay */
        for (uint8_t i = 0; i < s->nq; i++) {
            struct xq *e = s->q[i];
            if (s->x)
                lr_xudp_send(s->x, e->has_d ? &e->d : NULL, e->data, e->len);
            else if (!s->client_ended && (!e->has_d || same_dest(&e->d, &s->target)))
                lr_conn_push_datagram(c, e->data, e->len); /* (not after its End) */
        }
        xq_clear(s);
    }
    if (s)
        s->connected = 1;
    lr_conn_start_relay(c);
}

static void sess_free(struct lr_conn *c)
{
    struct mux_sess *s = c->ib_state;
    if (!s)
        return;
    struct mux *m = s->m;
    xlive_unlink(s);
    lr_xudp_free(s->x);
    s->x = NULL;
    xq_clear(s);
    if (m) {
        if (s->end_pending != 2)
            send_end(m, s->id, c->reason && strcmp(c->reason, "done") != 0);
        for (uint32_t i = 0; i < m->nsess; i++)
            if (m->sess[i] == s) {
                m->sess[i] = m->sess[--m->nsess];
                break;
            }
        if (m->blocked) {
            m->blocked = 0;
            lr_conn_kick(m->parent);
        }
        maybe_finish(m);
    }
    free(s);
    c->ib_state = NULL;
}

static const struct lr_ib_ops sess_ops = {
    .connected = sess_connected,
    .free = sess_free,
};

/* A New frame whose GlobalID (after the address, `used` bytes from
 * meta + 5) names a live full-cone session of the same user and inbound:
 * that session becomes this stream (room in m checked); 1 if so. */
static int xudp_reattach(struct mux *m, const uint8_t *meta, size_t used,
                         const struct lr_dest *d)
{
    static const uint8_t zero[8];
    const uint8_t *gid = meta + 5 + used;
    struct lr_conn *p = m->parent;
    if (memcmp(gid, zero, 8) == 0)
        return 0;
    struct mux_sess *s = xlive;
    while (s && (memcmp(s->gid, gid, 8) != 0 || s->conn->user != p->user ||
                 s->conn->ib != p->ib || s->conn->doom))
        s = s->xnext;
    if (!s)
        return 0;
    struct mux *old = s->m;
    if (old) {
        /* its old stream ends there */
        for (uint32_t i = 0; i < old->nsess; i++)
            if (old->sess[i] == s) {
                old->sess[i] = old->sess[--old->nsess];
                break;
            }
        if (s->end_pending != 2)
            send_end(old, s->id, 0);
        if (old != m) {
            lr_conn_kick(old->parent);
            maybe_finish(old);
        }
    }
    struct lr_conn *c = s->conn;
    lr_debug("conn %llu: xudp session %llu re-attached as stream %u",
             (unsigned long long)p->id, (unsigned long long)c->id, lr_get_be16(meta));
    s->m = m;
    s->id = lr_get_be16(meta);
    s->client_ended = 0;
    s->end_pending = 0;
    s->blocked = 0;
    s->target = *d;
    memcpy(s->taddr, meta + 5, used);
    s->taddr_len = (uint16_t)used;
    m->sess[m->nsess++] = s;
    /* its clock is the new stream's; the New frame's data goes to its
     * destination */
    c->idle_timeout = c->ib->idle_timeout;
    lr_conn_set_deadline(c, c->idle_timeout);
    m->pkt_dst = *d;
    m->pkt_dst.network = LR_NET_UDP;
    m->pkt_has = 1;
    return 1;
}

/* port(2) atyp(1) address at p[0..n) into d (its host the text form);
 * the bytes it took, or 0 if they do not parse. */
static size_t parse_addr(const uint8_t *p, size_t n, struct lr_dest *d)
{
    struct lr_addr addr;
    if (n < 2 + 1)
        return 0;
    d->port = lr_get_be16(p);
    const uint8_t *a = p + 3;
    size_t al = n - 3;
    switch (p[2]) {
    case 1:
        if (al < 4)
            return 0;
        d->atyp = LR_ATYP_IPV4;
        memcpy(d->ip, a, 4);
        lr_addr_from_bytes(d->ip, 4, d->port, &addr);
        lr_addr_ip_str(&addr, d->host, sizeof(d->host));
        return 3 + 4;
    case 3:
        if (al < 16)
            return 0;
        d->atyp = LR_ATYP_IPV6;
        memcpy(d->ip, a, 16);
        lr_addr_from_bytes(d->ip, 16, d->port, &addr);
        lr_addr_ip_str(&addr, d->host, sizeof(d->host));
        return 3 + 16;
    case 2:
        if (al < 1 || al < 1 + (size_t)a[0] || a[0] == 0)
            return 0;
        /* as the SOCKS5 inbound: a NUL would cut the name short, and
         * spaces, control and non-ASCII bytes are no part of a host */
        for (size_t i = 1; i <= a[0]; i++)
            if (a[i] <= ' ' || a[i] >= 0x7f)
                return 0;
        memcpy(d->host, a + 1, a[0]);
        d->host[a[0]] = 0;
        memset(d->ip, 0, sizeof(d->ip));
        d->atyp = LR_ATYP_DOMAIN;
        return 3 + 1 + (size_t)a[0];
    default:
        return 0;
    }
}

/* 1 if a session was created for the frame (it may be closed already). */
static int sess_new(struct mux *m, const uint8_t *meta, size_t n)
{
    struct lr_conn *p = m->parent;
    struct lr_dest d;
    memset(&d, 0, sizeof(d));
    size_t used = n >= 5 && (meta[4] == 1 || meta[4] == 2)
                  ? parse_addr(meta + 5, n - 5, &d) : 0;
    if (!used) {
        /* a network other than TCP and UDP, or an address that does not
         * parse: that stream only is refused */
        lr_debug("conn %llu: mux stream %u refused: bad New frame",
                 (unsigned long long)p->id, lr_get_be16(meta));
        send_end(m, lr_get_be16(meta), 1);
        return 0;
    }
    d.network = meta[4] == 2 ? LR_NET_UDP : LR_NET_TCP;
    if (find(m, lr_get_be16(meta)) || m->nsess >= p->ib->max_sessions) {
        if (m->nsess >= p->ib->max_sessions)
            lr_debug("conn %llu: mux stream refused: %u streams open (max_sessions)",
                     (unsigned long long)p->id, m->nsess);
        send_end(m, lr_get_be16(meta), 1);
        return 0;
    }
    if (m->nsess == m->sess_size) {
        uint32_t k = m->sess_size ? m->sess_size * 2 : 8;
        struct mux_sess **ns = realloc(m->sess, sizeof(*ns) * k);
        if (!ns) {
            send_end(m, lr_get_be16(meta), 1);
            return 0;
        }
        m->sess = ns;
        m->sess_size = k;
    }
    if (d.network == LR_NET_UDP && n - 5 - used >= 8 && xudp_reattach(m, meta, used, &d))
        return 1;
    struct mux_sess *s = calloc(1, sizeof(*s));
    struct lr_conn *c = s ? lr_dispatch_session(p, &sess_ops, sess_sink) : NULL;
    if (!c) {
        /* the inbound's session pool is full (max_connections) */
        lr_debug("conn %llu: mux stream refused: %u sessions on inbound %s",
                 (unsigned long long)p->id, p->ib->nsessions, p->ib->tag);
        free(s);
        send_end(m, lr_get_be16(meta), 1);
        return 0;
    }
    s->conn = c;
    s->m = m;
    s->id = lr_get_be16(meta);
    s->udp = d.network == LR_NET_UDP;
    s->target = d;
    memcpy(s->taddr, meta + 5, used);
    s->taddr_len = (uint16_t)used;
    if (s->udp && n - 5 - used >= 8) {
        /* XUDP: the GlobalID follows the address */
        s->xudp = 1;
        memcpy(s->gid, meta + 5 + used, 8);
        static const uint8_t zero[8];
        s->has_gid = memcmp(s->gid, zero, 8) != 0;
    }
    c->ib_state = s;
    c->dst = d;
    c->user = p->user;
    c->cli.dgram = s->udp;
    c->cli.sink_end = sess_sink_end;
    c->cli.room = sess_room;
    m->sess[m->nsess++] = s;
    lr_dispatch(c); /* may close c at once (no route, blackhole) */
    return 1;
}

/* ------------------------------------------------------------ parser */

static void frame_meta(struct mux *m)
{
    const uint8_t *meta = m->hbuf;
    m->cur_id = lr_get_be16(meta);
    m->cur_status = meta[2];
    m->cur_opt = meta[3];
    /* data reaches a session only from its New frame and its Keep frames
     * (as v2ray: KeepAlive, End, unknown statuses and a refused New
     * carry data that is discarded) */
    m->cur_deliver = 0;
    m->pkt_has = 0;
    if (m->cur_status == 1)
        m->cur_deliver = (uint8_t)sess_new(m, meta, m->meta_len);
    else if (m->cur_status == 2) {
        m->cur_deliver = 1;
        struct mux_sess *s = m->meta_len > 4 ? find(m, m->cur_id) : NULL;
        if (s && s->udp && !s->client_ended) {
            /* XUDP: this datagram's destination */
            memset(&m->pkt_dst, 0, sizeof(m->pkt_dst));
            if (m->meta_len < 5 || meta[4] != 2 ||
                !parse_addr(meta + 5, m->meta_len - 5U, &m->pkt_dst)) {
                m->cur_deliver = 0;
                lr_conn_close(s->conn, "bad xudp address"); /* End, error */
            } else {
                m->pkt_dst.network = LR_NET_UDP;
                m->pkt_has = 1;
                s->xudp = 1;
            }
        }
    }
    else if (m->cur_status == 3) {
        struct mux_sess *s = find(m, m->cur_id);
        if (s && !s->client_ended) {
            s->client_ended = 1;
            lr_conn_push_eof(s->conn, 0);
        }
    }
}

/* One whole datagram from the client for UDP session s. */
static void udp_deliver(struct mux *m, struct mux_sess *s, const uint8_t *data,
                        size_t len)
{
    const struct lr_dest *to = m->pkt_has ? &m->pkt_dst : NULL;
    if (s->x) {
        lr_xudp_send(s->x, to, data, len);
        return;
    }
    if (s->xudp && !s->connected) {
        struct xq *e = s->nq < XQ_MAX && s->qbytes + len <= XQ_BYTES
                       ? malloc(sizeof(*e) + len) : NULL;
        if (!e)
            return; /* dropped, as a full socket drops */
        e->has_d = to != NULL;
        if (to)
            e->d = *to;
        e->len = len;
        memcpy(e->data, data, len);
        s->q[s->nq++] = e;
        s->qbytes += (uint32_t)len;
        return;
    }
    if (to && !same_dest(to, &s->target)) {
        lr_debug("mux %u: datagram for %s:%u dropped: the session is not full cone",
                 s->id, to->host, to->port);
        return;
    }
    lr_conn_push_datagram(s->conn, data, len);
}

/* Feeds client frame bytes; returns how many were consumed.  A malformed
 * frame closes the parent (and so every session). */
static size_t mux_input(struct lr_conn *p, const uint8_t *data, size_t len)
{
    struct mux *m = p->ob_state;
    size_t used = 0;
    while (used < len) {
        if (m->stage != ST_DATA) {
            size_t want = m->need - m->have;
            size_t k = len - used < want ? len - used : want;
            memcpy(m->hbuf + m->have, data + used, k);
            m->have = (uint16_t)(m->have + k);
            used += k;
            if (m->have < m->need)
                break;
            m->have = 0;
            switch (m->stage) {
            case ST_LEN:
                m->meta_len = lr_get_be16(m->hbuf);
                if (m->meta_len < 4 || m->meta_len > META_MAX) {
                    lr_conn_doom(p, "bad mux frame");
                    return len;
                }
                m->stage = ST_META;
                m->need = m->meta_len;
                break;
            case ST_META:
                frame_meta(m);
                if (m->cur_opt & 0x01) {
                    m->stage = ST_DLEN;
                    m->need = 2;
                } else {
                    m->stage = ST_LEN;
                    m->need = 2;
                }
                break;
            case ST_DLEN:
                m->data_left = lr_get_be16(m->hbuf);
                m->dgram_len = 0;
                m->stage = m->data_left ? ST_DATA : ST_LEN;
                m->need = 2;
                break;
            }
            continue;
        }
        /* ST_DATA */
        size_t k = len - used < m->data_left ? len - used : m->data_left;
        struct mux_sess *s = m->cur_deliver ? find(m, m->cur_id) : NULL;
        if (s && s->client_ended)
            s = NULL; /* its End came first: v2ray drops it from then on */
        size_t took = k;
        if (s && s->udp) {
            if (!m->dgram && !(m->dgram = malloc(65536)))
                took = k;
            else {
                memcpy(m->dgram + m->dgram_len, data + used, k);
                m->dgram_len += (uint32_t)k;
                if (m->data_left == k) {
                    udp_deliver(m, s, m->dgram, m->dgram_len);
                    m->dgram_len = 0;
                }
            }
        } else if (s) {
            took = lr_conn_push_stream(s->conn, data + used, k);
        }
        /* unknown or ended sessions, KeepAlive...: the data is discarded */
        used += took;
        m->data_left -= (uint32_t)took;
        if (m->data_left == 0) {
            m->stage = ST_LEN;
            m->need = 2;
        }
        if (took < k) {
            m->blocked = 1;
            break;
        }
    }
    return used;
}

static void mux_client_done(struct lr_conn *p)
{
    struct mux *m = p->ob_state;
    m->client_done = 1;
    for (uint32_t i = 0; i < m->nsess; i++) {
        m->sess[i]->client_ended = 1;
        lr_conn_push_eof(m->sess[i]->conn, 0);
    }
    maybe_finish(m);
}

/* The parent's output has room: flush queued Ends, wake blocked sessions. */
static void mux_room(struct lr_conn *p)
{
    struct mux *m = p->ob_state;
    while (m->nends && lr_conn_down_room(p) >= 6) {
        m->nends--;
        send_end(m, m->ends[m->nends].id, m->ends[m->nends].err);
    }
    for (uint32_t i = 0; i < m->nsess; i++)
        if (m->sess[i]->x)
            lr_xudp_resume(m->sess[i]->x);
    for (uint32_t i = 0; i < m->nsess; i++)
        if (m->sess[i]->blocked) {
            m->sess[i]->blocked = 0;
            lr_conn_kick(m->sess[i]->conn);
        }
    maybe_finish(m);
}

static void mux_free(struct lr_conn *p)
{
    struct mux *m = p->ob_state;
    if (!m)
        return;
    p->ob_state = NULL;
    while (m->nsess) {
        struct mux_sess *s = m->sess[--m->nsess];
        s->m = NULL;
        if (s->xlinked && !s->conn->doom) {
            /* a mapping with a GlobalID waits for its client to come
             * back on another connection */
            s->client_ended = 1;
            s->conn->idle_timeout = XUDP_ORPHAN; /* since its last datagram */
            lr_conn_set_deadline(s->conn, XUDP_ORPHAN);
            continue;
        }
        lr_conn_close(s->conn, "mux closed");
    }
    free(m->dgram);
    free(m->sess);
    free(m->ends);
    free(m);
}

static const struct lr_ob_ops mux_parent_ops = {.free = mux_free};

void lr_mux_start(struct lr_conn *c)
{
    struct mux *m = calloc(1, sizeof(*m));
    if (!m) {
        lr_conn_close(c, "out of memory");
        return;
    }
    m->parent = c;
    m->stage = ST_LEN;
    m->need = 2;
    c->ob_state = m;
    c->obops = &mux_parent_ops;
    snprintf(c->dst.host, sizeof(c->dst.host), "v1.mux.cool");
    c->dst.network = LR_NET_TCP;
    c->rem.fd = -1;
    c->rem.sink = mux_input;
    c->rem.sink_end = mux_client_done;
    c->rem.room = mux_room;
    lr_conn_start_relay(c);
}
