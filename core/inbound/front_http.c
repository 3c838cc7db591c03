/*
 * The front stage "ws/httpupgrade" (front.h, design.md 6): reads the
 * client's HTTP/1.1 request head through the side's stack (inside TLS when
 * the inbound has it), and if it is this inbound's upgrade (GET, the path,
 * the Host when transport.host is set, the WebSocket handshake for ws)
 * replies 101 and hands over: WebSocket pushes the frame layer
 * (stream/ws.c) on the client side; HTTPUpgrade leaves the stream raw.
 * Early data (either form, at most max_early_data) and whatever followed
 * the head are what the VMess inbound reads first.
 *
 * Anything else (another path or Host, a request without the upgrade, or
 * bytes that are no HTTP request) goes to the fallback unchanged, request
 * head included, so a prober talks to the operator's web server; without a
 * fallback it gets a plain 404 and the connection closes.
 *
 * Behind a reverse proxy listed in trusted_proxies, X-Real-IP or
 * X-Forwarded-For name the client (ws.h lr_upgrade_client_addr): c->src
 * becomes it, with port 0 (the headers carry no port; the proxy's own port
 * would be a made-up pair), so the access log, max_ips and every policy see
 * the client.  From any other peer these headers are ignored.
 */
#include <errno.h>
#include <string.h>

#include "base/log.h"
#include "inbound/front.h"
#include "stream/ws.h"

static const char NOT_FOUND[] =
    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

static int is_trusted(const void *ib, const struct lr_addr *a)
{
    return lr_front_trusted(ib, a);
}

static int not_ours(struct lr_conn *c, const char *why)
{
    lr_debug("conn %llu: not a %s upgrade for inbound %s: %s", (unsigned long long)c->id,
             c->ib->tp.type == LR_TP_WS ? "ws" : "httpupgrade", c->ib->tag, why);
    if (c->ib->fallback_host)
        return LR_FRONT_FALLBACK;
    lr_conn_reply_close(c, NOT_FOUND, sizeof(NOT_FOUND) - 1, why);
    return LR_FRONT_CLOSED;
}

static int upgrade(struct lr_conn *c, const struct lr_upgrade_req *r, int ws)
{
    struct lr_inbound *ib = c->ib;
    struct lr_buf *in = c->up.in;
    if (ib->ntrusted && lr_front_trusted(ib, &c->peer)) {
        struct lr_addr a;
        if (lr_upgrade_client_addr(r, is_trusted, ib, &a))
            c->src = a;
    }
    char reply[LR_HTTP_HEAD_MAX + 512]; /* the echo is part of a head we took */
    size_t rl = lr_upgrade_reply(r, ws, reply, sizeof(reply));
    uint8_t *ed = NULL;
    size_t edn = 0;
    if (r->ed_bytes) {
        if (!(ed = malloc(r->ed_bytes))) {
            lr_conn_close(c, "out of memory");
            return LR_FRONT_CLOSED;
        }
        edn = lr_upgrade_early_data(r, ed);
    }
    /* up.in: the early data, then what came after the head (it is shorter
     * than the head that carried it, so it fits where the head was) */
    in->rd += (uint32_t)r->head_len;
    if (edn) {
        size_t rest = lr_buf_len(in);
        lr_buf_compact(in);
        memmove(in->data + edn, in->data, rest);
        memcpy(in->data, ed, edn);
        in->wr += (uint32_t)edn;
    }
    free(ed);
    /* the 101 goes through the stack as it is now (TLS, or the socket);
     * what the socket does not take waits in down.out, and the frame
     * layer lets exactly that much pass unframed */
    if (!rl || lr_conn_send_client(c, reply, rl) < 0) {
        if (!rl)
            lr_conn_close(c, "101 reply too long");
        return LR_FRONT_CLOSED;
    }
    if (ws) {
        uint32_t raw = c->down.out ? (uint32_t)lr_buf_len(c->down.out) : 0;
        struct lr_stream *l = lr_ws_new(1, lr_buf_head(in) + edn, lr_buf_len(in) - edn, raw);
        if (!l) {
            lr_conn_close(c, "out of memory");
            return LR_FRONT_CLOSED;
        }
        in->wr = in->rd + (uint32_t)edn;
        lr_side_push(&c->cli, l);
        /* frames that came with the request: decoded now, so the inbound
         * sees their payload (nothing on the socket would wake it) */
        if (l->ops->pending(l)) {
            lr_buf_compact(in);
            ssize_t k = lr_side_read(&c->cli, lr_buf_tail(in), lr_buf_room(in));
            if (k > 0)
                in->wr += (uint32_t)k;
            else if (k < 0 && k != -EAGAIN) {
                lr_conn_close(c, k == -EPROTO ? "bad websocket frame" : "read failed");
                return LR_FRONT_CLOSED;
            }
        }
    }
    if (LR_LOG_DEBUG >= atomic_load_explicit(&lr_log_level, memory_order_relaxed)) {
        char src[64];
        lr_addr_str(&c->src, src, sizeof(src));
        if (ws)
            lr_debug("conn %llu: ws upgrade for inbound %s from %s, %zu bytes of early data",
                     (unsigned long long)c->id, ib->tag, src, edn);
        else
            lr_debug("conn %llu: httpupgrade upgrade for inbound %s from %s, %zu bytes after the head",
                     (unsigned long long)c->id, ib->tag, src, (size_t)lr_buf_len(in));
    }
    return LR_FRONT_DONE;
}

static int http_run(struct lr_conn *c, void **st)
{
    struct lr_inbound *ib = c->ib;
    ssize_t n = lr_conn_read_client(c);
    if (n < 0 && n != -EAGAIN && n != -ENOBUFS) {
        lr_conn_close(c, n == -ENOMEM ? "out of memory" : "read failed");
        return LR_FRONT_CLOSED;
    }
    size_t len = c->up.in ? lr_buf_len(c->up.in) : 0;
    if (len == 0) {
        if (n == 0) {
            lr_conn_close(c, "eof before a request");
            return LR_FRONT_CLOSED;
        }
        return LR_FRONT_AGAIN; /* (the first run comes before any byte) */
    }
    struct lr_upgrade_cfg cfg = {
        .path = ib->tp.path ? ib->tp.path : "/",
        .host = ib->tp.host,
        .max_early_data = ib->tp.type == LR_TP_WS ? ib->tp.max_early_data : 0,
        .ws = ib->tp.type == LR_TP_WS,
    };
    struct lr_upgrade_req r;
    const char *why = "";
    int rc = lr_upgrade_check(lr_buf_head(c->up.in), len, &cfg, &r, &why);
    if (rc == LR_AGAIN)
        return n == 0 ? not_ours(c, "eof inside the request head") : LR_FRONT_AGAIN;
    if (rc != LR_OK)
        return not_ours(c, why);
    return upgrade(c, &r, cfg.ws);
}

const struct lr_front_stage lr_front_http_stage = {
    .name = "the ws/httpupgrade transport",
    .run = http_run,
};
