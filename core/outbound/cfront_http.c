/*
 * The outbound front stage "ws/httpupgrade" (front.h, design.md 6): sends
 * the upgrade request through the remote side's stack (inside TLS when the
 * outbound has it), checks the 101, then pushes the WebSocket frame layer
 * (stream/ws.c, client side: masked frames) or, for HTTPUpgrade, leaves
 * the stream raw.  Bytes the server sent right after its 101 are kept (the
 * frame layer's first input, or the relay's first response bytes).
 *
 * Host: transport.host, else tls.server_name, else the server as dialled
 * ("host:port", the port left out when it is the scheme's default).
 *
 * Early data, when the path carries ?ed=N (config.lua sets tp.early_data):
 * the VMess request header (c->up.prefix) and, when the client side is a
 * plain byte stream, as much of the payload already waiting as fits,
 * sealed into its first chunk, up to N bytes.  ws sends them base64url in
 * Sec-WebSocket-Protocol, as Xray does (v2fly reads that form when its
 * earlyDataHeaderName says so); a server that took them echoes the header
 * in its 101, and one that did not (v2ray 4.34, a server without
 * max_early_data) gets the same bytes again as the first frame, so ?ed
 * never loses them.  httpupgrade sends them raw right after the request
 * head, without waiting for the 101, as Xray's client does; that needs a
 * server that keeps bytes after the head (luaray, Xray; not v2fly 5's).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "outbound/front.h"
#include "stream/ws.h"

#define FAILED 3                 /* any other rc: the handshake failed */

struct chttp {
    uint8_t sent;                /* the request is out; reading the reply */
    uint8_t ws;
    char key[25];
    char *out;                   /* the request (httpupgrade: and early data) */
    size_t out_len, out_off;
    uint8_t *ed;                 /* ws: early data sent in the request */
    size_t ed_len;
    char *proto;                 /* ... as the Sec-WebSocket-Protocol sent */
    size_t proto_len;
    uint8_t *in;                 /* the reply as it comes */
    size_t in_len;
};

static void chttp_free(void *p)
{
    struct chttp *s = p;
    if (!s)
        return;
    free(s->out);
    free(s->ed);
    free(s->proto);
    free(s->in);
    free(s);
}

static int failed(struct lr_conn *c, const char *why)
{
    snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", why);
    return FAILED;
}

/* The Host to send. */
static void host_of(const struct lr_outbound *ob, char *out, size_t n)
{
    if (ob->tp.host) {
        snprintf(out, n, "%s", ob->tp.host);
        return;
    }
    if (ob->tls.on && ob->tls.server_name) {
        snprintf(out, n, "%s", ob->tls.server_name);
        return;
    }
    int v6 = strchr(ob->server_host, ':') != NULL;
    uint16_t dflt = ob->tls.on ? 443 : 80;
    if (ob->server_port == dflt)
        snprintf(out, n, v6 ? "[%s]" : "%s", ob->server_host);
    else
        snprintf(out, n, v6 ? "[%s]:%u" : "%s:%u", ob->server_host, ob->server_port);
}

/* Early data: the VMess request header, then payload already waiting,
 * sealed, up to `cap` bytes in all; into *ed (malloc'd), 0 if none. */
static size_t early_data(struct lr_conn *c, size_t cap, uint8_t **ed)
{
    struct lr_pipe *p = &c->up;
    *ed = NULL;
    if (cap > 65535)
        cap = 65535; /* it may have to go back into up.prefix */
    if (!p->prefix || p->prefix_len > cap || !(*ed = malloc(cap)))
        return 0;
    size_t n = p->prefix_len;
    memcpy(*ed, p->prefix, n);
    /* payload too, when up.in holds plain client bytes (no VMess inbound
     * decoding them, no HTTP framing, no datagrams) */
    size_t have = p->in ? lr_buf_len(p->in) : 0;
    if (have && p->enc && !p->dec && !p->frame && !p->pend_len && !c->cli.dgram &&
        !c->cli.sink) {
        size_t over = lr_body_max_wire(p->enc, 0), maxp = lr_body_max_payload(p->enc);
        size_t piece = cap > n + over ? cap - n - over : 0;
        if (piece > have)
            piece = have;
        if (piece > maxp)
            piece = maxp;
        if (piece > LR_CHUNK_PAYLOAD_DEFAULT)
            piece = LR_CHUNK_PAYLOAD_DEFAULT;
        size_t w = 0;
        if (piece && lr_body_max_wire(p->enc, piece) <= cap - n &&
            lr_body_seal(p->enc, lr_buf_head(p->in), piece, *ed + n, cap - n, &w) == LR_OK) {
            p->in->rd += (uint32_t)piece;
            p->bytes += piece;
            n += w;
        }
    }
    free(p->prefix);
    p->prefix = NULL;
    p->prefix_len = 0;
    return n;
}

static int build(struct lr_conn *c, struct chttp *s)
{
    struct lr_outbound *ob = c->ob;
    char host[300];
    const char *path = ob->tp.path ? ob->tp.path : "/";
    s->ws = ob->tp.type == LR_TP_WS;
    host_of(ob, host, sizeof(host));
    lr_ws_new_key(s->key);
    uint8_t *ed = NULL;
    size_t edn = ob->tp.early_data ? early_data(c, ob->tp.early_data, &ed) : 0;
    size_t cap = 512 + strlen(path) + strlen(host) + edn * 2;
    if (!(s->out = malloc(cap))) {
        free(ed);
        return -1;
    }
    if (s->ws) {
        s->out_len = lr_upgrade_request(s->out, cap, path, host, s->key, ed, edn);
        if (edn) {
            /* kept until the 101 says whether the server took them */
            s->ed = ed;
            s->ed_len = edn;
            ed = NULL;
            s->proto = malloc((edn + 2) / 3 * 4);
            if (!s->proto)
                return -1;
            s->proto_len = lr_b64url_encode(s->ed, s->ed_len, s->proto);
        }
    } else {
        s->out_len = lr_upgrade_request(s->out, cap, path, host, s->key, NULL, 0);
        if (s->out_len && edn) {
            memcpy(s->out + s->out_len, ed, edn);
            s->out_len += edn;
        }
    }
    free(ed);
    return s->out_len ? 0 : -1;
}

/* The 101 is in: hand over to the relay. */
static int upgraded(struct lr_conn *c, struct chttp *s, size_t head_len, int echoed)
{
    const uint8_t *extra = s->in + head_len;
    size_t nextra = s->in_len - head_len;
    if (!s->ws) {
        /* raw from here: the first response bytes, if any came */
        if (nextra && lr_conn_push_down(c, extra, nextra) != nextra)
            return failed(c, "out of memory");
        return LR_FRONT_DONE;
    }
    if (s->ed_len && !echoed) {
        /* the server did not take the early data: it goes again, first */
        if (!(c->up.prefix = malloc(s->ed_len)))
            return failed(c, "out of memory");
        memcpy(c->up.prefix, s->ed, s->ed_len);
        c->up.prefix_len = (uint16_t)s->ed_len;
        c->up.lazy_prefix = 0;
        lr_debug("conn %llu: early data not taken by the server, sent again",
                 (unsigned long long)c->id);
    }
    struct lr_stream *l = lr_ws_new(0, extra, nextra, 0);
    if (!l)
        return failed(c, "out of memory");
    lr_side_push(&c->rem, l);
    return LR_FRONT_DONE;
}

static int chttp_run(struct lr_conn *c, void **st, int *want)
{
    struct chttp *s = *st;
    if (!s) {
        if (!(s = *st = calloc(1, sizeof(*s))) || build(c, s) < 0)
            return failed(c, "out of memory");
    }
    for (int tries = 0; !s->sent; tries++) {
        ssize_t r = lr_side_write(&c->rem, s->out + s->out_off, s->out_len - s->out_off);
        if (r > 0 && (s->out_off += (size_t)r) == s->out_len) {
            s->sent = 1;
            free(s->out);
            s->out = NULL;
        } else if (r == -EAGAIN || (r == 0 && tries >= 8)) {
            *want = LR_STREAM_WANT_WRITE | c->rem.top->want;
            return LR_FRONT_AGAIN;
        } else if (r < 0) {
            return failed(c, "write failed");
        }
    }
    if (!s->in && !(s->in = malloc(LR_HTTP_HEAD_MAX)))
        return failed(c, "out of memory");
    for (;;) {
        if (s->in_len == LR_HTTP_HEAD_MAX)
            return failed(c, "reply head too long");
        ssize_t r = lr_side_read(&c->rem, s->in + s->in_len, LR_HTTP_HEAD_MAX - s->in_len);
        if (r == -EAGAIN) {
            *want = LR_STREAM_WANT_READ | c->rem.top->want;
            return LR_FRONT_AGAIN;
        }
        if (r == 0)
            return failed(c, "closed before the 101");
        if (r < 0)
            return failed(c, "read failed");
        s->in_len += (size_t)r;
        size_t hl = 0;
        int echoed = 0;
        const char *why = "";
        int rc = lr_upgrade_check_reply(s->in, s->in_len, s->ws, s->key, s->proto,
                                        s->proto_len, &hl, &echoed, &why);
        if (rc == LR_OK)
            return upgraded(c, s, hl, echoed);
        if (rc != LR_AGAIN)
            return failed(c, why);
    }
}

const struct lr_cfront_stage lr_cfront_http_stage = {
    .name = "the ws/httpupgrade transport",
    .run = chttp_run,
    .free_st = chttp_free,
};
