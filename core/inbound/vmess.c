/*
 * The VMess server (inbound).  The request header is decoded incrementally
 * from the bytes the client sends (lr_req_decode); on any failure the
 * connection is drained silently and closed at the handshake deadline, the
 * same way whatever was wrong (design.md 3).  On success the destination
 * is routed and dialled; the response header is queued to go out with the
 * first response payload, as v2ray does.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "crypto/crypto.h"
#include "net/cluster.h"
#include "inbound/dynport.h"
#include "inbound/inbound.h"


struct vmess_in {
    struct lr_req_dec dec;
    struct lr_cluster_wait *wait;   /* the fleet's answer, awaited */
    struct lr_req *req;             /* meanwhile: the decoded header (only
                                       while the fleet is asked) */
    size_t used;
};

/* Whether what is not VMess goes to the fallback here: on bare TCP (or
 * TLS) it is whatever a prober sent; inside a WebSocket, HTTPUpgrade or
 * gRPC stream the transport's own front already sent what was not its
 * upgrade there, and the stream after it is the client's, refused as a
 * bad header is without a fallback. */
static int fallback_ok(const struct lr_inbound *ib)
{
    return ib->fallback_host && ib->tp.type == LR_TP_TCP;
}

/* The header is ours and fresh: set up the body, then dial (or start
 * Mux.Cool).  req is wiped. */
static void vin_accept(struct lr_conn *c, struct lr_req *req, size_t used)
{
    struct lr_inbound *ib = c->ib;
    c->up.in->rd += (uint32_t)used;
    c->user = ib->user_map[req->user];
    int mux = req->command == LR_CMD_MUX;
    c->dst.network = req->command == LR_CMD_UDP ? LR_NET_UDP : LR_NET_TCP;
    c->dst.atyp = req->atyp;
    c->dst.port = req->port;
    if (req->command == LR_CMD_MUX) {
        /* frames follow; sessions are dialled per frame */
    } else if (req->atyp == LR_ATYP_DOMAIN) {
        memcpy(c->dst.host, req->addr, req->addr_len);
        c->dst.host[req->addr_len] = 0;
    } else {
        struct lr_addr a;
        memcpy(c->dst.ip, req->addr, req->addr_len);
        lr_addr_from_bytes(req->addr, req->addr_len, req->port, &a);
        lr_addr_ip_str(&a, c->dst.host, sizeof(c->dst.host));
    }
    uint8_t rk[16], ri[16], hdr[LR_RESP_WIRE_MAX];
    size_t hn = 0;
    /* the dynamic-port command names this user's own detour ID */
    struct lr_cmd_switch sw;
    const struct lr_cmd_switch *cmd = lr_dyn_command(ib, &c->gen->users[c->user], &sw);
    uint32_t flags = c->dst.network == LR_NET_UDP ? LR_BODY_UDP : 0;
    lr_resp_keys(req->mode, req->body_key, req->body_iv, rk, ri);
    c->up.dec = lr_body_new();
    c->down.enc = lr_body_new();
    if (!c->up.dec || !c->down.enc ||
        lr_body_init(c->up.dec, req->security, req->option, req->body_key,
                     req->body_iv, req->body_key, req->body_iv, flags) != LR_OK ||
        lr_body_init(c->down.enc, req->security, req->option, rk, ri,
                     req->body_key, req->body_iv,
                     flags | (req->mode == LR_MODE_LEGACY ? LR_BODY_LEGACY_RESP : 0)) != LR_OK ||
        lr_resp_encode(req->mode, rk, ri, c->down.enc, req->v, cmd, hdr,
                       sizeof(hdr), &hn) != LR_OK ||
        !(c->down.prefix = malloc(hn))) {
        lr_wipe(req, sizeof(*req));
        lr_wipe(&sw, sizeof(sw));
        lr_conn_close(c, "vmess setup failed");
        return;
    }
    memcpy(c->down.prefix, hdr, hn);
    c->down.prefix_len = (uint16_t)hn;
    c->down.lazy_prefix = 1;
    lr_wipe(req, sizeof(*req));
    lr_wipe(&sw, sizeof(sw));
    lr_wipe(rk, sizeof(rk));
    free(c->ib_state);
    c->ib_state = NULL;
    if (mux) {
        lr_mux_start(c);
        return;
    }
    lr_dispatch(c);
}

/* ---------------------------------------------------- the fleet (luaray.cluster)
 *
 * A header that passed the local replay filter is recorded in the
 * fleet's Redis too (SET NX EX): its AuthID (AEAD; until it can no longer
 * pass the time check), or a hash of its session (legacy; 180 s, as the
 * local filter).  While the answer comes the client socket is not read;
 * the wait ends within timeout_ms, and a header another node saw first
 * is refused exactly as a local replay. */
static void vin_refuse(struct lr_conn *c, const char *why)
{
    if (fallback_ok(c->ib))
        lr_dispatch_fallback(c, why);
    else
        lr_conn_drain(c, why);
}

static void cluster_done(void *ud, int verdict)
{
    struct lr_conn *c = ud;
    struct vmess_in *st = c->ib_state;
    st->wait = NULL;
    if (c->cli.fd >= 0) {
        /* reading again; bytes a stream layer (TLS) read ahead of the
         * socket are taken by the next step as if the socket were
         * readable (a close meanwhile stops the watcher and drops this) */
        ev_io_start(c->lp->loop, &c->cli.rio);
        if (verdict != LR_CL_SEEN)
            ev_feed_event(c->lp->loop, &c->cli.rio, EV_READ);
    }
    struct lr_req req = *st->req;
    lr_wipe(st->req, sizeof(*st->req));
    free(st->req);
    st->req = NULL;
    if (verdict == LR_CL_SEEN) {
        lr_wipe(&req, sizeof(req));
        vin_refuse(c, lr_strerror(LR_EREPLAY));
        return;
    }
    vin_accept(c, &req, st->used);
}

/* 0: the wait started (req copied into st); -1: decide locally now. */
static int cluster_claim(struct lr_conn *c, struct vmess_in *st, const struct lr_req *req,
                         size_t used)
{
    struct lr_cluster *cl = c->ib->rt->cluster;
    if (!cl)
        return -1;
    int64_t now = (int64_t)time(NULL);
    uint8_t key[32];
    const char *kind;
    int ttl;
    if (req->mode == LR_MODE_AEAD) {
        memcpy(key, req->auth, 16);
        kind = "a:";
        ttl = (int)(req->ts + 121 - now);
    } else {
        /* never the body key itself: a hash of (user ID, key, IV) */
        uint8_t in[48];
        unsigned int n = 0;
        memcpy(in, c->ib->users->v[req->user].id, 16);
        memcpy(in + 16, req->body_key, 16);
        memcpy(in + 32, req->body_iv, 16);
        int ok = EVP_Digest(in, sizeof(in), key, &n, lr_alg_sha256(), NULL);
        lr_wipe(in, sizeof(in));
        if (!ok)
            return -1;
        kind = "s:";
        ttl = 180;
    }
    struct lr_cluster_wait *w = lr_cluster_claim(cl, kind, key, 16, ttl < 1 ? 1 : ttl,
                                                 cluster_done, c);
    lr_wipe(key, sizeof(key));
    if (!w)
        return -1;
    if (!(st->req = malloc(sizeof(*st->req)))) {
        lr_cluster_cancel(w);
        return -1;
    }
    st->wait = w;
    *st->req = *req;
    st->used = used;
    if (c->cli.fd >= 0)
        ev_io_stop(c->lp->loop, &c->cli.rio);
    return 0;
}

static void vin_readable(struct lr_conn *c)
{
    struct vmess_in *st = c->ib_state;
    if (!st) {
        st = c->ib_state = calloc(1, sizeof(*st));
        if (!st) {
            lr_conn_close(c, "out of memory");
            return;
        }
        lr_req_dec_init(&st->dec);
    }
    if (st->wait)
        return;   /* a virtual client pushed more: it waits in up.in */
    ssize_t n = lr_conn_read_client(c);
    if (n == -EAGAIN)
        return;
    if (n == 0 || n == -ENOBUFS) {
        /* an early EOF is the prober's own half-close: like a bad header
         * it is held to the handshake deadline and gets its FIN then, so
         * when we close says nothing about how many bytes came first (or,
         * with a fallback, it goes there like any other non-VMess client) */
        if (n == 0)
            c->up.src_eof = 1;
        if (fallback_ok(c->ib))
            lr_dispatch_fallback(c, n == 0 ? "eof in handshake" : "handshake too long");
        else
            lr_conn_drain(c, n == 0 ? "eof in handshake" : "handshake too long");
        return;
    }
    if (n < 0) {
        lr_conn_close(c, "read failed");
        return;
    }
    struct lr_inbound *ib = c->ib;
    struct lr_req req;
    size_t used = 0;
    if (ib->is_detour)
        lr_dyn_roll(ib); /* its per-user IDs, up to the epoch */
    int rc = lr_req_decode(&st->dec, ib->users, c->ib->rt->replay,
                           lr_buf_head(c->up.in), lr_buf_len(c->up.in),
                           (int64_t)time(NULL), &req, &used);
    if (rc == LR_AGAIN)
        return;
    if (rc != LR_OK) {
        /* not a VMess client of ours: silence until the deadline, or, with
         * a fallback, whatever web server the operator put there answers */
        if (fallback_ok(ib))
            lr_dispatch_fallback(c, lr_strerror(rc));
        else
            lr_conn_drain(c, lr_strerror(rc));
        return;
    }
    if (cluster_claim(c, st, &req, used) == 0) {
        lr_wipe(&req, sizeof(req));
        return;   /* the fleet's replay filter answers (or times out) */
    }
    vin_accept(c, &req, used);
}

static void vin_connected(struct lr_conn *c)
{
    lr_conn_start_relay(c);
}

static void vin_free(struct lr_conn *c)
{
    struct vmess_in *st = c->ib_state;
    if (st) {
        lr_cluster_cancel(st->wait);
        if (st->req) {
            lr_wipe(st->req, sizeof(*st->req));
            free(st->req);
        }
    }
    free(c->ib_state);
    c->ib_state = NULL;
}

const struct lr_ib_ops lr_vmess_in_ops = {
    .readable = vin_readable,
    .connected = vin_connected,
    .free = vin_free,
    .read_while_dialing = 1,
};
