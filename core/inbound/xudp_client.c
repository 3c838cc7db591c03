/*
 * XUDP as a client (design.md 9, README "Mux.Cool: XUDP, and mux as a
 * client"): a SOCKS5 UDP association whose datagrams are routed to a VMess
 * outbound with `xudp = true` sends them, whatever their destination (ports
 * 53 and 443 apart, as Xray), as ONE Mux.Cool stream, the way Xray's VMess
 * client does: a VMess connection with command 3 (Xray's request names
 * v1.mux.cool:666; command 3 carries no address on the wire) whose body is
 *   New:  BE16(metaLen) 00 00 | 01 01 | 02 | BE16(port) atyp addr | GlobalID(8)
 *         BE16(len) datagram                 (the first datagram)
 *   Keep: BE16(metaLen) 00 00 | 02 01 | 02 | BE16(port) atyp addr
 *         BE16(len) datagram                 (every further one, its own
 *                                             destination)
 * (atyp 1 IPv4, 2 name, 3 IPv6; session id 0).  The server answers with Keep
 * frames carrying the address each datagram came from (full cone: any
 * address that reaches the server's mapping), given to the client with it.
 *
 * The GlobalID, as Xray: a keyed hash of the client's UDP source
 * ("udp:ip:port") under a key drawn once per process, 8 bytes: stable for
 * the association (and for a new association from the same source, so a
 * server keeps the mapping across a reconnect), unlinkable across
 * processes.  Xray uses BLAKE3; this is BLAKE2b (libsodium), which no server
 * can tell apart: it only compares the 8 bytes.
 *
 * The stream is a session of the association (lr_dispatch_session) with
 * the first datagram's destination: routed, hooked, counted and logged
 * once, by it.  A later destination joins the stream only if the routing
 * rules send it to the same outbound (else it takes the association's
 * usual per-destination path).  The stream is not put on a `mux` carrier:
 * it is a VMess connection of its own (as Xray without mux).
 *
 * Bounds: XC_OUT_CAP bytes of frames wait for the connection (a datagram
 * that does not fit is dropped: UDP); a reply is at most 65535 bytes; the
 * server's frames' metaLen must be 4..512 (else the stream ends).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <sodium.h>

#include "base/log.h"
#include "inbound/inbound.h"
#include "route/route.h"

#define XC_OUT_CAP (64 * 1024)
#define XC_META_MAX 512

enum { XS_LEN = 0, XS_META, XS_DLEN, XS_DATA };

struct lr_xudpc {
    struct lr_conn *c;          /* the stream's connection; NULL once gone */
    struct lr_outbound *ob;     /* the outbound the rules picked for it */
    struct lr_gen *gen;         /* the generation ob belongs to */
    lr_xudpc_reply_fn reply;
    lr_xudpc_gone_fn gone;
    void *ctx;
    struct lr_dest first;       /* the New frame's destination */
    uint8_t gid[8];
    uint8_t *out;               /* frames the connection has not taken */
    size_t olen, ocap;
    /* the server's frames */
    uint8_t stage;
    uint16_t need, have;
    uint8_t hbuf[XC_META_MAX + 4];
    uint16_t meta_len;
    uint8_t status, opt, has_from;
    struct lr_dest from;
    uint32_t data_left, dlen;
    uint8_t dgram[65536];
};

static uint8_t gid_key[crypto_generichash_KEYBYTES];
static pthread_once_t gid_once = PTHREAD_ONCE_INIT;

static void gid_key_init(void)
{
    lr_random(gid_key, sizeof(gid_key));
}

void lr_xudpc_global_id(const struct lr_addr *src, uint8_t out[8])
{
    char s[80], msg[90];
    uint8_t h[crypto_generichash_BYTES_MIN];
    pthread_once(&gid_once, gid_key_init);
    lr_addr_str(src, s, sizeof(s));
    int n = snprintf(msg, sizeof(msg), "udp:%s", s);
    crypto_generichash(h, sizeof(h), (const uint8_t *)msg, (size_t)(n > 0 ? n : 0),
                       gid_key, sizeof(gid_key));
    memcpy(out, h, 8);
}

/* port, atyp (mux numbering), address: bytes written (at most 259). */
static size_t put_addr(uint8_t *p, const struct lr_dest *d)
{
    size_t o = 0;
    lr_put_be16(p, d->port);
    o += 2;
    if (d->atyp == LR_ATYP_IPV4) {
        p[o++] = 1;
        memcpy(p + o, d->ip, 4);
        o += 4;
    } else if (d->atyp == LR_ATYP_IPV6) {
        p[o++] = 3;
        memcpy(p + o, d->ip, 16);
        o += 16;
    } else {
        size_t hl = strlen(d->host);
        if (hl > 255)
            hl = 255;
        p[o++] = 2;
        p[o++] = (uint8_t)hl;
        memcpy(p + o, d->host, hl);
        o += hl;
    }
    return o;
}

/* port, atyp, address from the server's Keep frame: bytes used, or 0. */
static size_t get_addr(const uint8_t *p, size_t n, struct lr_dest *d)
{
    memset(d, 0, sizeof(*d));
    d->network = LR_NET_UDP;
    if (n < 3)
        return 0;
    d->port = lr_get_be16(p);
    uint8_t at = p[2];
    if (at == 1 && n >= 7) {
        d->atyp = LR_ATYP_IPV4;
        memcpy(d->ip, p + 3, 4);
        inet_ntop(AF_INET, d->ip, d->host, sizeof(d->host));
        return 7;
    }
    if (at == 3 && n >= 19) {
        d->atyp = LR_ATYP_IPV6;
        memcpy(d->ip, p + 3, 16);
        inet_ntop(AF_INET6, d->ip, d->host, sizeof(d->host));
        return 19;
    }
    if (at == 2 && n >= 4 && p[3] && n >= 4u + p[3]) {
        d->atyp = LR_ATYP_DOMAIN;
        memcpy(d->host, p + 4, p[3]);
        d->host[p[3]] = 0;
        return 4u + p[3];
    }
    return 0;
}

static void flush(struct lr_xudpc *x)
{
    if (!x->olen || !x->c || x->c->state != LR_CS_RELAY)
        return;
    size_t k = lr_conn_push_stream(x->c, x->out, x->olen);
    if (k) {
        memmove(x->out, x->out + k, x->olen - k);
        x->olen -= k;
    }
}

/* One frame (New for the first datagram, Keep after), or dropped when
 * XC_OUT_CAP is full. */
static void put_frame(struct lr_xudpc *x, int is_new, const struct lr_dest *d,
                      const uint8_t *data, size_t len)
{
    uint8_t h[2 + 4 + 1 + 259 + 8 + 2];
    size_t o = 2;
    if (!len || len > 65535)
        return;
    h[o++] = 0; /* session id 0 */
    h[o++] = 0;
    h[o++] = is_new ? 1 : 2;
    h[o++] = 0x01; /* data follows */
    h[o++] = 2;    /* UDP */
    o += put_addr(h + o, d);
    if (is_new) {
        memcpy(h + o, x->gid, 8);
        o += 8;
    }
    lr_put_be16(h, (uint16_t)(o - 2));
    lr_put_be16(h + o, (uint16_t)len);
    o += 2;
    if (x->olen + o + len > XC_OUT_CAP) {
        lr_debug("xudp: a datagram to %s:%u dropped: the server is not reading",
                 d->host, d->port);
        return;
    }
    if (x->olen + o + len > x->ocap) {
        size_t n = x->ocap ? x->ocap : 4096;
        while (n < x->olen + o + len)
            n *= 2;
        uint8_t *no = realloc(x->out, n);
        if (!no)
            return;
        x->out = no;
        x->ocap = n;
    }
    memcpy(x->out + x->olen, h, o);
    memcpy(x->out + x->olen + o, data, len);
    x->olen += o + len;
    flush(x);
}

/* --- the server's frames */

static void frame_meta(struct lr_xudpc *x)
{
    const uint8_t *m = x->hbuf;
    uint16_t id = lr_get_be16(m);
    x->status = m[2];
    x->opt = m[3];
    x->has_from = 0;
    if (id != 0)
        x->status = 0; /* not our stream: its data is skipped */
    if (x->status == 3) {
        if (x->c)
            lr_conn_doom(x->c, (x->opt & 0x02) ? "xudp: the server ended the stream with an error"
                                               : "xudp: the server ended the stream");
        return;
    }
    if (x->status == 2 && x->meta_len > 4) {
        /* network(1) then the datagram's source */
        if (m[4] != 2 || !get_addr(m + 5, x->meta_len - 5u, &x->from)) {
            if (x->c)
                lr_conn_doom(x->c, "xudp: bad address from the server");
            x->status = 0;
            return;
        }
        x->has_from = 1;
    }
}

static size_t xs_sink(struct lr_conn *c, const uint8_t *data, size_t len)
{
    struct lr_xudpc *x = c->cli.ctx;
    size_t used = 0;
    if (!x)
        return len;
    while (used < len) {
        if (x->stage != XS_DATA) {
            size_t want = x->need - x->have;
            size_t k = len - used < want ? len - used : want;
            memcpy(x->hbuf + x->have, data + used, k);
            x->have = (uint16_t)(x->have + k);
            used += k;
            if (x->have < x->need)
                break;
            x->have = 0;
            switch (x->stage) {
            case XS_LEN:
                x->meta_len = lr_get_be16(x->hbuf);
                if (x->meta_len < 4 || x->meta_len > XC_META_MAX) {
                    lr_conn_doom(c, "xudp: bad frame from the server");
                    return len;
                }
                x->stage = XS_META;
                x->need = x->meta_len;
                break;
            case XS_META:
                frame_meta(x);
                if (c->doom)
                    return len; /* ended (End, a bad address): nothing more */
                x->stage = x->opt & 0x01 ? XS_DLEN : XS_LEN;
                x->need = 2;
                break;
            case XS_DLEN:
                x->data_left = lr_get_be16(x->hbuf);
                x->dlen = 0;
                x->stage = x->data_left ? XS_DATA : XS_LEN;
                x->need = 2;
                break;
            }
            continue;
        }
        size_t k = len - used < x->data_left ? len - used : x->data_left;
        memcpy(x->dgram + x->dlen, data + used, k);
        x->dlen += (uint32_t)k;
        x->data_left -= (uint32_t)k;
        used += k;
        if (!x->data_left) {
            x->stage = XS_LEN;
            x->need = 2;
            /* a Keep frame's datagram (KeepAlive and others: skipped); no
             * address: it came from the stream's destination */
            if (x->status == 2 && x->reply)
                x->reply(x->ctx, x->has_from ? &x->from : &x->first, x->dgram, x->dlen);
        }
    }
    return used;
}

static void xs_server_done(struct lr_conn *c)
{
    lr_conn_doom(c, "xudp: server closed");
}

static void xs_room(struct lr_conn *c)
{
    struct lr_xudpc *x = c->cli.ctx;
    if (x)
        flush(x);
}

static void xs_connected(struct lr_conn *c)
{
    struct lr_xudpc *x = c->cli.ctx;
    /* a hook may have sent it elsewhere: only an XUDP VMess outbound takes
     * Mux.Cool frames */
    if (!c->ob || c->ob->type != LR_OB_VMESS || !c->ob->xudp) {
        lr_conn_close(c, "xudp: routed to an outbound without xudp");
        return;
    }
    lr_conn_start_relay(c);
    if (c->cli.ctx == x && c->state == LR_CS_RELAY)
        flush(x);
}

static void xs_free(struct lr_conn *c)
{
    struct lr_xudpc *x = c->cli.ctx;
    if (!x)
        return;
    c->cli.ctx = NULL;
    x->c = NULL;
    if (x->gone)
        x->gone(x->ctx); /* the owner lets go of x: lr_xudpc_free */
}

static const struct lr_ib_ops xs_ops = {
    .connected = xs_connected,
    .free = xs_free,
};

struct lr_outbound *lr_xudpc_route(struct lr_conn *ctl, const struct lr_dest *d)
{
    struct lr_gen *g = ctl->gen;
    if (!g || d->port == 53 || d->port == 443)
        return NULL;
    int to_sniffed = 0;
    struct lr_route_query q = {
        .network = LR_NET_UDP, .atyp = d->atyp, .port = d->port,
        .ip = d->ip, .host = d->host,
        .user = ctl->user >= 0 ? g->users[ctl->user].email : NULL,
        .inbound = ctl->ib->tag,
    };
    int32_t i = lr_route_pick(g->rules, g->nrules, g->default_ob, &q, &to_sniffed);
    if (i < 0 || (uint32_t)i >= g->nob)
        return NULL;
    struct lr_outbound *ob = &g->ob[i];
    return ob->type == LR_OB_VMESS && ob->xudp ? ob : NULL;
}

struct lr_xudpc *lr_xudpc_open(struct lr_conn *ctl, struct lr_outbound *ob,
                               const struct lr_addr *client, const struct lr_dest *d,
                               const uint8_t *data, size_t len,
                               lr_xudpc_reply_fn reply, lr_xudpc_gone_fn gone, void *ctx)
{
    struct lr_xudpc *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    struct lr_conn *c = lr_dispatch_session(ctl, &xs_ops, xs_sink);
    if (!c) { /* the inbound's session pool is full */
        free(x);
        return NULL;
    }
    x->c = c;
    x->ob = ob;
    x->gen = ctl->gen;
    x->reply = reply;
    x->ctx = ctx;
    x->first = *d;
    x->stage = XS_LEN;
    x->need = 2;
    lr_xudpc_global_id(client, x->gid);
    c->cli.dgram = 0; /* a stream of frames */
    c->cli.sink_end = xs_server_done;
    c->cli.room = xs_room;
    c->cli.ctx = x;
    c->dst = *d;
    c->dst.network = LR_NET_UDP;
    c->xudp = 1;
    c->idle_timeout = c->ib->idle_timeout;
    put_frame(x, 1, d, data, len); /* waits for the connection */
    lr_info("conn %llu: xudp stream for %s:%u", (unsigned long long)c->id, d->host, d->port);
    lr_dispatch(c); /* may close c (no route, blackhole, a hook) */
    if (!x->c) {
        free(x->out);
        free(x);
        return NULL;
    }
    x->gone = gone;
    return x;
}

int lr_xudpc_takes(const struct lr_xudpc *x, const struct lr_outbound *ob)
{
    return x->c && x->ob == ob;
}

void lr_xudpc_send(struct lr_xudpc *x, const struct lr_dest *d, const uint8_t *data,
                   size_t len)
{
    if (x->c)
        put_frame(x, 0, d, data, len);
}

void lr_xudpc_free(struct lr_xudpc *x)
{
    if (!x)
        return;
    if (x->c) {
        struct lr_conn *c = x->c;
        x->gone = NULL;
        c->cli.ctx = NULL;
        x->c = NULL;
        lr_conn_close(c, "udp association closed");
    }
    free(x->out);
    free(x);
}
