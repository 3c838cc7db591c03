/*
 * The VMess client (outbound).  After the TCP connection to the server is
 * up, the request header goes out first (with whatever payload is already
 * waiting), the request body is sealed with the chosen security, and the
 * response header is decoded before the response body (vmess-wire.md 3-11).
 * alter_id > 0 selects the legacy header signed by a random alternate ID,
 * with v2ray's -30..+29 s timestamp jitter; 0 selects the AEAD header.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "base/log.h"
#include "outbound/front.h"

struct vmess_out {
    uint8_t id[16];          /* the ID this connection signs with */
    uint32_t alter_id;
    int dynamic;             /* dialled the server's dynamic port */
    uint8_t mode;
    uint8_t v;
    uint8_t resp_key[16], resp_iv[16];
    struct lr_resp_dec rdec;
};

static int cpu_has_aes(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("aes");
#else
    return 0;
#endif
}

static int resp_pre(struct lr_conn *c, const uint8_t *in, size_t len,
                    size_t *consumed)
{
    struct vmess_out *st = c->ob_state;
    struct lr_resp resp;
    int rc = lr_resp_decode(&st->rdec, st->mode, st->resp_key, st->resp_iv,
                            c->down.dec, st->v, in, len, consumed, &resp);
    if (rc == LR_OK && resp.has_switch && resp.sw.port && !st->dynamic) {
        /* follow the dynamic-port command: new connections use the
         * announced port and ID while it is valid (vmess-wire.md 10) */
        struct lr_outbound *ob = c->ob;
        int fresh = ob->dyn_port != resp.sw.port ||
                    memcmp(ob->dyn_id, resp.sw.id, 16) != 0;
        ob->dyn_port = resp.sw.port;
        memcpy(ob->dyn_id, resp.sw.id, 16);
        ob->dyn_alter = resp.sw.alter_ids;
        memcpy(ob->dyn_host, resp.sw.host, resp.sw.host_len);
        ob->dyn_host[resp.sw.host_len] = 0;
        ob->dyn_until = ev_now(c->lp->loop) + 60.0 * resp.sw.valid_min;
        if (fresh)
            lr_info("outbound %s: server announced dynamic port %u for %u min",
                    ob->tag, resp.sw.port, resp.sw.valid_min);
    }
    return rc;
}

/* The request header (up.prefix), the body codecs and the response
 * decoder; 0, or -1 (what it made is freed with c).  Once per connection:
 * a gRPC tunnel prepares before it knows which connection carries it. */
static int vmess_prepare(struct lr_conn *c)
{
    struct lr_outbound *ob = c->ob;
    struct vmess_out *st = c->ob_state;
    if (c->up.enc && c->up.prefix)
        return 0;
    struct lr_req req;
    uint8_t wire[LR_REQ_WIRE_MAX];
    size_t n = 0;
    /* an XUDP stream (inbound/xudp_client.c) is a Mux.Cool stream of
     * frames, not VMess UDP */
    int udp = c->dst.network == LR_NET_UDP && !c->xudp;
    memset(&req, 0, sizeof(req));
    lr_req_randomize(&req);
    req.version = 1;
    req.mode = st->alter_id ? LR_MODE_LEGACY : LR_MODE_AEAD;
    req.ts = (int64_t)time(NULL);
    req.id_index = -1;
    if (req.mode == LR_MODE_LEGACY) {
        uint8_t r[3];
        lr_random(r, 3);
        req.ts += (int64_t)(r[0] % 60) - 30;
        req.id_index = (int32_t)(((uint32_t)r[1] << 8 | r[2]) % st->alter_id);
    }
    uint8_t sec = ob->security;
    uint8_t opt = LR_OPT_CHUNK_STREAM;
    if (sec == LR_SEC_AUTO)
        sec = cpu_has_aes() ? LR_SEC_AES128_GCM : LR_SEC_CHACHA20_POLY1305;
    if (sec == LR_SEC_ZERO) {
        sec = LR_SEC_NONE;
        opt = 0;
    } else {
        if (ob->masking)
            opt |= LR_OPT_CHUNK_MASKING;
        if (ob->masking && ob->padding && sec != LR_SEC_NONE)
            opt |= LR_OPT_GLOBAL_PADDING;
        if (ob->auth_len && (sec == LR_SEC_AES128_GCM ||
                             sec == LR_SEC_CHACHA20_POLY1305))
            opt |= LR_OPT_AUTHENTICATED_LENGTH;
    }
    req.security = sec;
    req.option = opt;
    req.command = udp ? LR_CMD_UDP : LR_CMD_TCP;
    if (lr_muxc_is_carrier(c) || c->xudp)
        req.command = LR_CMD_MUX; /* Mux.Cool: no address (outbound/mux_client.c) */
    req.port = c->dst.port;
    req.atyp = c->dst.atyp;
    if (c->dst.atyp == LR_ATYP_IPV4) {
        memcpy(req.addr, c->dst.ip, 4);
        req.addr_len = 4;
    } else if (c->dst.atyp == LR_ATYP_IPV6) {
        memcpy(req.addr, c->dst.ip, 16);
        req.addr_len = 16;
    } else {
        req.addr_len = (uint16_t)strlen(c->dst.host);
        memcpy(req.addr, c->dst.host, req.addr_len);
    }
    int rc = lr_req_encode(&req, st->id, wire, sizeof(wire), &n);
    st->mode = req.mode;
    st->v = req.v;
    lr_resp_keys(req.mode, req.body_key, req.body_iv, st->resp_key, st->resp_iv);
    lr_resp_dec_init(&st->rdec);
    uint32_t flags = udp ? LR_BODY_UDP : 0;
    c->up.enc = lr_body_new();
    c->down.dec = lr_body_new();
    c->up.prefix = malloc(n);
    if (rc != LR_OK || !c->up.enc || !c->down.dec || !c->up.prefix ||
        lr_body_init(c->up.enc, sec, opt, req.body_key, req.body_iv,
                     req.body_key, req.body_iv, flags) != LR_OK ||
        lr_body_init(c->down.dec, sec, opt, st->resp_key, st->resp_iv,
                     req.body_key, req.body_iv,
                     flags | (req.mode == LR_MODE_LEGACY ? LR_BODY_LEGACY_RESP : 0)) != LR_OK) {
        lr_wipe(&req, sizeof(req));
        return -1;
    }
    memcpy(c->up.prefix, wire, n);
    c->up.prefix_len = (uint16_t)n;
    c->down.pre = resp_pre;
    lr_wipe(&req, sizeof(req));
    return 0;
}

static void vmess_connected(struct lr_conn *c, int fd)
{
    struct lr_outbound *ob = c->ob;
    if (vmess_prepare(c) < 0) {
        close(fd);
        lr_conn_dial_failed(c, 0, "vmess setup failed");
        return;
    }
    if (lr_cfront_wanted(ob))
        lr_cfront_start(c, fd); /* TLS, an upgrade: then connected */
    else
        lr_conn_remote_ready(c, fd, 0);
}

static void vmess_dial(struct lr_conn *c)
{
    struct lr_outbound *ob = c->ob;
    /* with mux: a stream of the outbound's carrier, when one can be had */
    /* (an XUDP stream is a connection of its own, as Xray without mux) */
    if (ob->mux_concurrency && !lr_muxc_is_carrier(c) && !c->xudp && lr_muxc_attach(c) == 0)
        return;
    struct vmess_out *st = calloc(1, sizeof(*st));
    if (!st) {
        lr_conn_dial_failed(c, -ENOMEM, "out of memory");
        return;
    }
    c->ob_state = st;
    if (ob->dyn_port && ev_now(c->lp->loop) < ob->dyn_until) {
        st->dynamic = 1;
        memcpy(st->id, ob->dyn_id, 16);
        st->alter_id = ob->dyn_alter;
        lr_conn_connect(c, ob->dyn_host[0] ? ob->dyn_host : ob->server_host,
                        ob->dyn_port, 0, 0, vmess_connected);
        return;
    }
    memcpy(st->id, ob->id, 16);
    st->alter_id = ob->alter_id;
    if (ob->tp.type == LR_TP_GRPC) {
        /* a tunnel on the outbound's shared HTTP/2 connection (its own
         * connection only when none can be had) */
        if (vmess_prepare(c) < 0) {
            lr_conn_dial_failed(c, 0, "vmess setup failed");
            return;
        }
        if (lr_grpc_attach(c) == 0)
            return;
    }
    lr_conn_connect(c, ob->server_host, ob->server_port, 0, 0, vmess_connected);
}

static void vmess_free(struct lr_conn *c)
{
    if (lr_muxc_detach(c))
        return; /* a mux stream: no VMess state of its own */
    lr_grpc_detach(c);
    lr_cfront_free(c);
    if (c->ob_state) {
        lr_wipe(c->ob_state, sizeof(struct vmess_out));
        free(c->ob_state);
        c->ob_state = NULL;
    }
}

static void vmess_failed(struct lr_conn *c)
{
    struct vmess_out *st = c->ob_state;
    struct lr_outbound *ob = c->ob;
    if (st) {
        /* the access line names the server that failed, not only the
         * destination: "connect failed: server 192.0.2.5:10086
         * (upstream): Connection refused" */
        char pre[sizeof(c->fail_detail)];
        const char *host = st->dynamic && ob->dyn_host[0] ? ob->dyn_host : ob->server_host;
        int v6 = strchr(host, ':') != NULL;
        int k = snprintf(pre, sizeof(pre), "server %s%s%s:%u (%s%s)%s", v6 ? "[" : "",
                         host, v6 ? "]" : "",
                         st->dynamic ? ob->dyn_port : ob->server_port, ob->tag,
                         st->dynamic ? ", dynamic port" : "",
                         c->fail_detail[0] ? ": " : "");
        size_t n = k < 0 ? 0 : (size_t)k < sizeof(pre) ? (size_t)k : sizeof(pre) - 1;
        size_t dl = strlen(c->fail_detail);
        if (n + dl >= sizeof(c->fail_detail))
            dl = sizeof(c->fail_detail) - 1 - n;
        memmove(c->fail_detail + n, c->fail_detail, dl);
        memcpy(c->fail_detail, pre, n);
        c->fail_detail[n + dl] = 0;
    }
    if (st && st->dynamic) {
        /* the announced port is gone: back to the main server */
        lr_warn("outbound %s: dynamic port %u failed; using the main port",
                c->ob->tag, c->ob->dyn_port);
        c->ob->dyn_until = 0;
    }
}

const struct lr_ob_ops lr_vmess_out_ops = {
    .dial = vmess_dial,
    .failed = vmess_failed,
    .free = vmess_free,
    .remote_io = lr_cfront_io,
};
