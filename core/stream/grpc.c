/*
 * gRPC "gun" (grpc.h): the gun codec, the HTTP/2 server side that carries
 * many tunnels (lr_h2s) and the one-tunnel client layer (gunc).  HTTP/2
 * itself is nghttp2's, driven by our reads and writes (mem_recv; send
 * callbacks or mem_send), never touching a socket of its own.  What a
 * tunnel means (a VMess connection) is the owner's: inbound/front_grpc.c
 * and outbound/cfront_grpc.c.
 *
 * Sending: a DATA frame is one gun message (or a piece of one when the
 * peer's window is small), produced by a data provider that reads from
 * the caller's buffer during the call (src): nothing is queued here, so
 * a tunnel the peer does not read stops at its stream window, and the
 * caller keeps the bytes not taken.
 * Receiving: DATA bytes go to the tunnel at once as far as it takes them;
 * the rest waits in `held`, still counted against the peer's window (it is
 * consumed only when taken), so held never exceeds one stream window.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "base/base.h"
#include "base/buf.h"
#include "stream/grpc.h"

#define H2_WINDOW 65535                       /* per stream, both roles */
#define MSG_MAX (16384 - LR_GUN_HDR_MAX)      /* one message fills one frame */

/* ------------------------------------------------------------ gun codec */

enum { G_PREFIX = 0, G_TAG, G_LEN, G_VARINT, G_SKIP, G_DATA, G_ERR };

size_t lr_gun_hdr(uint8_t *out, size_t n)
{
    uint8_t v[5];
    size_t vl = 0, x = n;
    do {
        v[vl] = (uint8_t)(x & 0x7f);
        x >>= 7;
        if (x)
            v[vl] |= 0x80;
        vl++;
    } while (x && vl < sizeof(v));
    out[0] = 0; /* not compressed */
    lr_put_be32(out + 1, (uint32_t)(1 + vl + n));
    out[5] = 0x0a; /* field 1, length-delimited */
    memcpy(out + 6, v, vl);
    return 6 + vl;
}

void lr_gun_dec_init(struct lr_gun_dec *d)
{
    memset(d, 0, sizeof(*d));
}

static uint8_t after_field(const struct lr_gun_dec *d)
{
    return d->msg_left ? G_TAG : G_PREFIX;
}

static int gun_next(struct lr_gun_dec *d, const uint8_t *in, size_t len,
                    size_t *skip, size_t *n);

static int gun_fail(struct lr_gun_dec *d)
{
    d->st = G_ERR; /* sticky: a stream that broke stays broken */
    return -EPROTO;
}

int lr_gun_dec_next(struct lr_gun_dec *d, const uint8_t *in, size_t len,
                    size_t *skip, size_t *n)
{
    int rc = gun_next(d, in, len, skip, n);
    return rc < 0 ? gun_fail(d) : rc;
}

static int gun_next(struct lr_gun_dec *d, const uint8_t *in, size_t len,
                    size_t *skip, size_t *n)
{
    size_t i = 0;
    if (d->st == G_ERR)
        return -EPROTO;
    while (i < len) {
        switch (d->st) {
        case G_PREFIX:
            d->hdr[d->hn++] = in[i++];
            if (d->hn < 5)
                break;
            d->hn = 0;
            if (d->hdr[0] != 0)
                return -EPROTO; /* compressed: never negotiated */
            d->msg_left = lr_get_be32(d->hdr + 1);
            d->st = d->msg_left ? G_TAG : G_PREFIX;
            break;
        case G_TAG:
        case G_LEN:
        case G_VARINT: {
            /* msg_left > 0 in these states */
            uint8_t b = in[i++];
            d->msg_left--;
            d->v |= (uint64_t)(b & 0x7f) << (7 * d->vn);
            d->vn++;
            if (b & 0x80) {
                if (d->vn == 10 || d->msg_left == 0)
                    return -EPROTO;
                break;
            }
            uint64_t v = d->v;
            d->v = 0;
            d->vn = 0;
            if (d->st == G_TAG) {
                uint64_t field = v >> 3;
                unsigned wire = (unsigned)(v & 7);
                if (field == 0 || field > 536870911u || d->msg_left == 0)
                    return -EPROTO;
                d->skip_wire = field != 1;
                if (field == 1 && wire != 2)
                    return -EPROTO; /* data must be bytes */
                switch (wire) {
                case 0:
                    d->st = G_VARINT;
                    break;
                case 1:
                case 5:
                    d->field_left = wire == 1 ? 8 : 4;
                    if (d->field_left > d->msg_left)
                        return -EPROTO;
                    d->st = G_SKIP;
                    break;
                case 2:
                    d->st = G_LEN;
                    break;
                default:
                    return -EPROTO; /* groups and unknown wire types */
                }
            } else if (d->st == G_LEN) {
                if (v > d->msg_left)
                    return -EPROTO;
                d->field_left = v;
                d->st = v == 0 ? after_field(d) : d->skip_wire ? G_SKIP : G_DATA;
            } else {
                d->st = after_field(d); /* a varint field skipped */
            }
            break;
        }
        case G_SKIP: {
            size_t k = len - i;
            if (k > d->field_left)
                k = (size_t)d->field_left;
            i += k;
            d->field_left -= k;
            d->msg_left -= k;
            if (d->field_left == 0)
                d->st = after_field(d);
            break;
        }
        case G_DATA: {
            size_t k = len - i;
            if (k > d->field_left)
                k = (size_t)d->field_left;
            *skip = i;
            *n = k;
            return LR_OK;
        }
        default:
            return -EPROTO;
        }
    }
    *skip = len;
    *n = 0;
    return LR_AGAIN;
}

void lr_gun_dec_took(struct lr_gun_dec *d, size_t k)
{
    d->field_left -= k;
    d->msg_left -= k;
    if (d->field_left == 0 && d->st == G_DATA)
        d->st = after_field(d);
}

/* What a sender keeps between DATA frames: the message it is in. */
struct gun_out {
    const uint8_t *src;      /* the caller's bytes, during the call only */
    size_t src_len, src_took;
    uint8_t hdr[LR_GUN_HDR_MAX];
    uint8_t hdr_len, hdr_off;
    size_t msg_left;         /* data bytes of the message still to send */
};

static int gun_out_busy(const struct gun_out *o)
{
    return o->hdr_off < o->hdr_len || o->msg_left;
}

/* Fills buf (length: what the windows and the frame size allow) with the
 * next bytes of the message stream; 0 when nothing can go now. */
static size_t gun_out_fill(struct gun_out *o, uint8_t *buf, size_t length)
{
    size_t w = 0;
    if (!gun_out_busy(o)) {
        size_t avail = o->src ? o->src_len - o->src_took : 0;
        if (!avail)
            return 0;
        size_t cap = length >= 2 * LR_GUN_HDR_MAX ? length - LR_GUN_HDR_MAX : MSG_MAX;
        if (cap > MSG_MAX)
            cap = MSG_MAX;
        size_t m = avail < cap ? avail : cap;
        o->hdr_len = (uint8_t)lr_gun_hdr(o->hdr, m);
        o->hdr_off = 0;
        o->msg_left = m;
    }
    size_t h = (size_t)(o->hdr_len - o->hdr_off);
    if (h > length)
        h = length;
    memcpy(buf, o->hdr + o->hdr_off, h);
    o->hdr_off = (uint8_t)(o->hdr_off + h);
    w = h;
    if (o->msg_left && w < length && o->src) {
        size_t k = length - w;
        if (k > o->msg_left)
            k = o->msg_left;
        if (k > o->src_len - o->src_took)
            k = o->src_len - o->src_took;
        memcpy(buf + w, o->src + o->src_took, k);
        o->src_took += k;
        o->msg_left -= k;
        w += k;
    }
    return w;
}

/* Appends n bytes to *held (a buffer from the pool); -1 if they do not
 * fit (more than a window: the peer broke flow control) or on ENOMEM. */
static int held_add(struct lr_buf **held, const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    if (!*held && !(*held = lr_buf_get()))
        return -1;
    lr_buf_compact(*held);
    if (lr_buf_room(*held) < n)
        return -1;
    memcpy(lr_buf_tail(*held), p, n);
    (*held)->wr += (uint32_t)n;
    return 0;
}

static void held_drop(struct lr_buf **held)
{
    if (*held) {
        lr_buf_put(*held);
        *held = NULL;
    }
}

static int is_grpc_type(const uint8_t *v, size_t n)
{
    static const char t[] = "application/grpc";
    size_t tl = sizeof(t) - 1;
    return n >= tl && memcmp(v, t, tl) == 0 &&
           (n == tl || v[tl] == '+' || v[tl] == ';');
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
                   NGHTTP2_NV_FLAG_NONE }

/* ------------------------------------------------------------ server */

struct h2s_stream {
    struct h2s_stream *prev, *next;
    int32_t sid;
    void *t;                 /* the owner's tunnel; NULL: none (any more) */
    struct lr_gun_dec dec;
    struct lr_buf *held;     /* DATA bytes the tunnel did not take yet */
    struct gun_out out;
    uint8_t post, grpc, ours;/* the request: POST, gRPC, our path */
    char real_ip[64], fwd_ip[64]; /* X-Real-IP, X-Forwarded-For's last entry */
    uint8_t tunnel;          /* answered 200 with a data provider */
    uint8_t peer_end, eof_told, end_req, resume_req;
    uint8_t pinned, zombie;  /* inside lr_h2s_send / closed meanwhile */
    int status;              /* grpc-status for the trailers */
};

struct lr_h2s {
    nghttp2_session *h2;
    const struct lr_h2s_ops *ops;
    void *owner;
    char *tun, *multi;       /* "/<service>/Tun", "/<service>/TunMulti" */
    struct h2s_stream *streams;
    int busy;                /* inside nghttp2_session_mem_recv */
    int broken;
    int freeing;
};

static struct h2s_stream *h2s_stream_of(struct lr_h2s *s, int32_t sid)
{
    return s->h2 ? nghttp2_session_get_stream_user_data(s->h2, sid) : NULL;
}

static void h2s_unlink(struct lr_h2s *s, struct h2s_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else if (s->streams == st)
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
}

/* Offers p[0, n) to the tunnel; returns the bytes used (framing and data
 * taken).  A framing error resets the stream and uses everything. */
static size_t h2s_deliver(struct lr_h2s *s, struct h2s_stream *st,
                          const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        size_t skip, k;
        int rc = lr_gun_dec_next(&st->dec, p + used, n - used, &skip, &k);
        if (rc < 0) {
            nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, st->sid,
                                      NGHTTP2_PROTOCOL_ERROR);
            st->end_req = 1;
            return n;
        }
        used += skip;
        if (rc == LR_AGAIN)
            break;
        size_t took = st->t ? s->ops->data(s->owner, st->t, p + used, k) : k;
        lr_gun_dec_took(&st->dec, took);
        used += took;
        if (took < k)
            break;
    }
    return used;
}

static void h2s_maybe_eof(struct lr_h2s *s, struct h2s_stream *st)
{
    if (st->peer_end && st->t && !st->eof_told && !st->held) {
        st->eof_told = 1;
        s->ops->eof(s->owner, st->t);
    }
}

/* What waited for the tunnel, offered again. */
static void h2s_drain_held(struct lr_h2s *s, struct h2s_stream *st)
{
    if (st->held) {
        size_t used = h2s_deliver(s, st, lr_buf_head(st->held), lr_buf_len(st->held));
        st->held->rd += (uint32_t)used;
        nghttp2_session_consume(s->h2, st->sid, used);
        if (lr_buf_len(st->held) == 0 || st->end_req)
            held_drop(&st->held);
    }
    h2s_maybe_eof(s, st);
}

static ssize_t h2s_send_cb(nghttp2_session *h2, const uint8_t *data, size_t length,
                           int flags, void *user)
{
    struct lr_h2s *s = user;
    size_t k = s->ops->out(s->owner, data, length);
    return k ? (ssize_t)k : NGHTTP2_ERR_WOULDBLOCK;
}

static ssize_t h2s_read_cb(nghttp2_session *h2, int32_t sid, uint8_t *buf,
                           size_t length, uint32_t *flags,
                           nghttp2_data_source *source, void *user)
{
    struct h2s_stream *st = source->ptr;
    size_t w = gun_out_fill(&st->out, buf, length);
    if (w)
        return (ssize_t)w;
    if (st->end_req && !gun_out_busy(&st->out)) {
        char num[16];
        snprintf(num, sizeof(num), "%d", st->status);
        nghttp2_nv tr[] = {{(uint8_t *)"grpc-status", (uint8_t *)num, 11, strlen(num),
                            NGHTTP2_NV_FLAG_NONE}};
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(h2, sid, tr, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    return NGHTTP2_ERR_DEFERRED;
}

static int h2s_begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                                void *user)
{
    struct lr_h2s *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->sid = frame->hd.stream_id;
    lr_gun_dec_init(&st->dec);
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    nghttp2_session_set_stream_user_data(h2, st->sid, st);
    return 0;
}

/* An address as a header gave it, trimmed; "" when it does not fit. */
static void copy_ip(char *out, size_t cap, const uint8_t *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap || memchr(v, 0, n)) /* a NUL would cut it short: no address */
        n = 0;
    memcpy(out, v, n);
    out[n] = 0;
}

static int h2s_header_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                         const uint8_t *name, size_t namelen, const uint8_t *value,
                         size_t valuelen, uint8_t flags, void *user)
{
    struct lr_h2s *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s_stream *st = h2s_stream_of(s, frame->hd.stream_id);
    if (!st)
        return 0;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0)
        st->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
        st->ours = (valuelen == strlen(s->tun) && memcmp(value, s->tun, valuelen) == 0) ||
                   (valuelen == strlen(s->multi) && memcmp(value, s->multi, valuelen) == 0);
    else if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
        st->grpc = (uint8_t)is_grpc_type(value, valuelen);
    else if (namelen == 9 && memcmp(name, "x-real-ip", 9) == 0)
        copy_ip(st->real_ip, sizeof(st->real_ip), value, valuelen);
    else if (namelen == 15 && memcmp(name, "x-forwarded-for", 15) == 0) {
        /* the last entry is what the proxy in front saw */
        size_t i = valuelen;
        while (i > 0 && value[i - 1] != ',')
            i--;
        copy_ip(st->fwd_ip, sizeof(st->fwd_ip), value + i, valuelen - i);
    }
    return 0;
}

/* A request's headers are complete: a tunnel, or an answer that ends it. */
static void h2s_answer(struct lr_h2s *s, struct h2s_stream *st)
{
    if (!st->post || !st->grpc) {
        /* not gRPC: what an HTTP server says about a path it lacks */
        nghttp2_nv nv[] = {NV(":status", "404")};
        nghttp2_submit_response(s->h2, st->sid, nv, LR_ARRAY_LEN(nv), NULL);
        return;
    }
    if (!st->ours) {
        /* gRPC for another method: what a gRPC server says (Trailers-Only) */
        nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                           NV("grpc-status", "12")};
        nghttp2_submit_response(s->h2, st->sid, nv, LR_ARRAY_LEN(nv), NULL);
        return;
    }
    const char *ip = st->real_ip[0] ? st->real_ip : st->fwd_ip[0] ? st->fwd_ip : NULL;
    st->t = s->ops->open(s->owner, st->sid, ip);
    if (!st->t) {
        nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, st->sid,
                                  NGHTTP2_REFUSED_STREAM);
        return;
    }
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2s_read_cb};
    if (nghttp2_submit_response(s->h2, st->sid, nv, LR_ARRAY_LEN(nv), &prd) != 0) {
        nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, st->sid,
                                  NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->tunnel = 1;
}

static int h2s_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                             void *user)
{
    struct lr_h2s *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2s_stream *st = h2s_stream_of(s, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        h2s_answer(s, st);
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        st->peer_end = 1;
        h2s_maybe_eof(s, st);
    }
    return 0;
}

static int h2s_data_cb(nghttp2_session *h2, uint8_t flags, int32_t sid,
                       const uint8_t *data, size_t len, void *user)
{
    struct lr_h2s *s = user;
    struct h2s_stream *st = h2s_stream_of(s, sid);
    if (!st || !st->t || st->end_req) {
        nghttp2_session_consume(h2, sid, len); /* nobody's: dropped */
        return 0;
    }
    size_t used = 0;
    if (!st->held)
        used = h2s_deliver(s, st, data, len);
    if (used < len && !st->end_req &&
        held_add(&st->held, data + used, len - used) < 0) {
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, sid, NGHTTP2_FLOW_CONTROL_ERROR);
        st->end_req = 1;
        used = len;
    }
    if (st->end_req)
        used = len;
    nghttp2_session_consume(h2, sid, used);
    return 0;
}

static int h2s_frame_send_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                             void *user)
{
    struct lr_h2s *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2s_stream *st = h2s_stream_of(s, frame->hd.stream_id);
    /* our side ended while the client still sends: it may stop now (as
     * gRPC servers do, RST_STREAM NO_ERROR) */
    if (st && !st->peer_end)
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_NO_ERROR);
    return 0;
}

static int h2s_stream_close_cb(nghttp2_session *h2, int32_t sid, uint32_t error_code,
                               void *user)
{
    struct lr_h2s *s = user;
    struct h2s_stream *st = nghttp2_session_get_stream_user_data(h2, sid);
    if (!st || s->freeing)
        return 0;
    nghttp2_session_set_stream_user_data(h2, sid, NULL);
    h2s_unlink(s, st);
    if (st->held) {
        /* the connection window still counts them */
        nghttp2_session_consume_connection(h2, lr_buf_len(st->held));
        held_drop(&st->held);
    }
    void *t = st->t;
    st->t = NULL;
    if (t)
        s->ops->closed(s->owner, t);
    if (st->pinned)
        st->zombie = 1;
    else
        free(st);
    return 0;
}

struct lr_h2s *lr_h2s_new(const char *service, uint32_t max_streams,
                          const struct lr_h2s_ops *ops, void *owner)
{
    struct lr_h2s *s = calloc(1, sizeof(*s));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!s)
        return NULL;
    s->ops = ops;
    s->owner = owner;
    size_t sl = strlen(service);
    s->tun = malloc(sl + 6);
    s->multi = malloc(sl + 11);
    if (!s->tun || !s->multi)
        goto fail;
    snprintf(s->tun, sl + 6, "/%s/Tun", service);
    snprintf(s->multi, sl + 11, "/%s/TunMulti", service);
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_send_callback(cb, h2s_send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2s_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2s_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2s_frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2s_data_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2s_frame_send_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2s_stream_close_cb);
    /* we say when DATA was taken (backpressure) */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (nghttp2_session_server_new2(&s->h2, cb, s, opt) != 0) {
        s->h2 = NULL;
        goto fail;
    }
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    cb = NULL;
    opt = NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
    };
    /* the connection window covers every stream's: one tunnel whose
     * reader stalls holds its own window, never the others' */
    uint64_t conn = (uint64_t)(max_streams + 1) * H2_WINDOW;
    if (conn > 0x7fffffff)
        conn = 0x7fffffff;
    if (nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, iv, LR_ARRAY_LEN(iv)) != 0 ||
        nghttp2_session_set_local_window_size(s->h2, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)conn) != 0)
        goto fail;
    return s;
fail:
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    lr_h2s_free(s);
    return NULL;
}

void lr_h2s_free(struct lr_h2s *s)
{
    if (!s)
        return;
    s->freeing = 1;
    while (s->streams) {
        struct h2s_stream *st = s->streams;
        h2s_unlink(s, st);
        held_drop(&st->held);
        if (s->h2)
            nghttp2_session_set_stream_user_data(s->h2, st->sid, NULL);
        free(st);
    }
    if (s->h2)
        nghttp2_session_del(s->h2);
    free(s->tun);
    free(s->multi);
    free(s);
}

int lr_h2s_flush(struct lr_h2s *s)
{
    if (s->broken)
        return -1;
    if (s->busy)
        return 0;
    if (nghttp2_session_send(s->h2) != 0) {
        s->broken = 1;
        return -1;
    }
    return 0;
}

int lr_h2s_input(struct lr_h2s *s, const uint8_t *p, size_t n)
{
    if (s->broken)
        return -1;
    s->busy++;
    ssize_t rv = nghttp2_session_mem_recv(s->h2, p, n);
    s->busy--;
    if (rv < 0) {
        s->broken = 1;
        return -1;
    }
    /* tunnels that found room while their callbacks ran */
    for (struct h2s_stream *st = s->streams, *next; st; st = next) {
        next = st->next;
        if (st->resume_req) {
            st->resume_req = 0;
            h2s_drain_held(s, st);
        }
    }
    return lr_h2s_flush(s);
}

size_t lr_h2s_send(struct lr_h2s *s, int32_t sid, const uint8_t *p, size_t n)
{
    if (s->busy || s->broken)
        return 0;
    struct h2s_stream *st = h2s_stream_of(s, sid);
    if (!st || !st->tunnel || st->end_req)
        return n; /* the stream is gone: nobody reads these */
    st->out.src = p;
    st->out.src_len = n;
    st->out.src_took = 0;
    st->pinned = 1;
    nghttp2_session_resume_data(s->h2, sid);
    (void)lr_h2s_flush(s);
    size_t took = st->out.src_took;
    st->out.src = NULL;
    st->pinned = 0;
    if (st->zombie)
        free(st);
    return took;
}

void lr_h2s_end(struct lr_h2s *s, int32_t sid, int status)
{
    struct h2s_stream *st = h2s_stream_of(s, sid);
    if (!st)
        return;
    st->t = NULL;
    if (st->held) {
        nghttp2_session_consume(s->h2, sid, lr_buf_len(st->held));
        held_drop(&st->held);
    }
    if (st->end_req)
        return;
    st->end_req = 1;
    st->status = status;
    if (!st->tunnel)
        return; /* answered already */
    if (status != 0 && gun_out_busy(&st->out))
        /* a message cut short must not look like a clean end */
        nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    else
        nghttp2_session_resume_data(s->h2, sid);
    (void)lr_h2s_flush(s);
}

void lr_h2s_resume(struct lr_h2s *s, int32_t sid)
{
    struct h2s_stream *st = h2s_stream_of(s, sid);
    if (!st)
        return;
    if (s->busy) {
        st->resume_req = 1;
        return;
    }
    h2s_drain_held(s, st);
    (void)lr_h2s_flush(s);
}

int lr_h2s_over(struct lr_h2s *s)
{
    return s->broken ||
           (!nghttp2_session_want_read(s->h2) && !nghttp2_session_want_write(s->h2));
}

/* ------------------------------------------------------------ client, many tunnels */

struct h2c_stream {
    struct h2c_stream *prev, *next;
    int32_t sid;
    void *t;                 /* the owner's tunnel; NULL: none (any more) */
    struct lr_gun_dec dec;
    struct lr_buf *held;     /* DATA bytes the tunnel did not take yet */
    struct gun_out out;
    uint8_t status_ok;       /* :status 200 came */
    uint8_t peer_end, end_req, resume_req;
    uint8_t pinned, zombie;
    uint8_t gone;            /* nghttp2 closed it; held bytes still to give */
    int grpc_status;         /* -1: none came */
};

struct lr_h2c {
    nghttp2_session *h2;
    const struct lr_h2c_ops *ops;
    void *owner;
    char *authority, *path;
    uint8_t tls;
    struct h2c_stream *streams;
    uint32_t nstreams;
    int busy, broken, goaway, freeing;
};

static struct h2c_stream *h2c_stream_of(struct lr_h2c *c, int32_t sid)
{
    return c->h2 ? nghttp2_session_get_stream_user_data(c->h2, sid) : NULL;
}

/* Ours, by id: also before nghttp2 opened it (the request is queued) and
 * after it closed it with bytes still held. */
static struct h2c_stream *h2c_find(struct lr_h2c *c, int32_t sid)
{
    for (struct h2c_stream *st = c->streams; st; st = st->next)
        if (st->sid == sid)
            return st;
    return NULL;
}

static void h2c_consume(struct lr_h2c *c, struct h2c_stream *st, size_t n)
{
    if (st->gone)
        nghttp2_session_consume_connection(c->h2, n);
    else
        nghttp2_session_consume(c->h2, st->sid, n);
}


static void h2c_unlink(struct lr_h2c *c, struct h2c_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else if (c->streams == st)
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    c->nstreams--;
}

/* A stream nghttp2 closed, once it has nothing more for its tunnel. */
static void h2c_release(struct lr_h2c *c, struct h2c_stream *st)
{
    h2c_unlink(c, st);
    held_drop(&st->held);
    st->t = NULL;
    if (st->pinned)
        st->zombie = 1;
    else
        free(st);
}

/* The tunnel is over for the owner: a clean end (eof) or a failure. */
static void h2c_finish(struct lr_h2c *c, struct h2c_stream *st, int clean)
{
    void *t = st->t;
    if (!t)
        return;
    if (clean) {
        c->ops->eof(c->owner, t);
    } else {
        st->t = NULL;
        c->ops->closed(c->owner, t);
    }
}

/* Offers p[0, n) to the tunnel; the bytes used (framing and data taken).
 * A framing error resets the stream and uses everything. */
static size_t h2c_deliver(struct lr_h2c *c, struct h2c_stream *st, const uint8_t *p,
                          size_t n)
{
    size_t used = 0;
    while (used < n && st->t) {
        size_t skip, k;
        int rc = lr_gun_dec_next(&st->dec, p + used, n - used, &skip, &k);
        if (rc < 0) {
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->sid,
                                      NGHTTP2_PROTOCOL_ERROR);
            h2c_finish(c, st, 0);
            return n;
        }
        used += skip;
        if (rc == LR_AGAIN)
            break;
        size_t took = c->ops->data(c->owner, st->t, p + used, k);
        lr_gun_dec_took(&st->dec, took);
        used += took;
        if (took < k)
            break;
    }
    return st->t ? used : n;
}

static void h2c_maybe_end(struct lr_h2c *c, struct h2c_stream *st)
{
    if (st->peer_end && st->t && !st->held)
        h2c_finish(c, st, st->status_ok && st->grpc_status == 0);
}

/* 1 if st was released (it is gone and has nothing more). */
static int h2c_drain_held(struct lr_h2c *c, struct h2c_stream *st)
{
    if (st->held) {
        size_t used = h2c_deliver(c, st, lr_buf_head(st->held), lr_buf_len(st->held));
        st->held->rd += (uint32_t)used;
        h2c_consume(c, st, used);
        if (lr_buf_len(st->held) == 0 || !st->t)
            held_drop(&st->held);
    }
    h2c_maybe_end(c, st);
    if (st->gone && (!st->held || !st->t)) {
        h2c_release(c, st);
        return 1;
    }
    return 0;
}

static ssize_t h2c_send_cb(nghttp2_session *h2, const uint8_t *data, size_t length,
                           int flags, void *user)
{
    struct lr_h2c *c = user;
    size_t k = c->ops->out(c->owner, data, length);
    return k ? (ssize_t)k : NGHTTP2_ERR_WOULDBLOCK;
}

static ssize_t h2c_read_cb(nghttp2_session *h2, int32_t sid, uint8_t *buf,
                           size_t length, uint32_t *flags,
                           nghttp2_data_source *source, void *user)
{
    struct h2c_stream *st = source->ptr;
    size_t w = gun_out_fill(&st->out, buf, length);
    if (w)
        return (ssize_t)w;
    if (st->end_req && !gun_out_busy(&st->out)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    return NGHTTP2_ERR_DEFERRED;
}

static int h2c_header_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                         const uint8_t *name, size_t namelen, const uint8_t *value,
                         size_t valuelen, uint8_t flags, void *user)
{
    struct lr_h2c *c = user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct h2c_stream *st = h2c_stream_of(c, frame->hd.stream_id);
    if (!st)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        st->status_ok = valuelen == 3 && memcmp(value, "200", 3) == 0;
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int v = 0;
        for (size_t i = 0; i < valuelen && i < 6; i++)
            v = value[i] >= '0' && value[i] <= '9' ? v * 10 + (value[i] - '0') : 999;
        st->grpc_status = valuelen ? v : 999;
    }
    return 0;
}

static int h2c_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                             void *user)
{
    struct lr_h2c *c = user;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1; /* streams above last_stream_id are closed by nghttp2 */
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2c_stream *st = h2c_stream_of(c, frame->hd.stream_id);
    if (st && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        st->peer_end = 1;
        h2c_maybe_end(c, st);
    }
    return 0;
}

static int h2c_data_cb(nghttp2_session *h2, uint8_t flags, int32_t sid,
                       const uint8_t *data, size_t len, void *user)
{
    struct lr_h2c *c = user;
    struct h2c_stream *st = h2c_stream_of(c, sid);
    if (!st || !st->t) {
        nghttp2_session_consume(h2, sid, len); /* nobody's: dropped */
        return 0;
    }
    size_t used = 0;
    if (!st->held)
        used = h2c_deliver(c, st, data, len);
    if (used < len && st->t && held_add(&st->held, data + used, len - used) < 0) {
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, sid, NGHTTP2_FLOW_CONTROL_ERROR);
        h2c_finish(c, st, 0);
    }
    if (!st->t) {
        held_drop(&st->held);
        used = len;
    }
    h2c_consume(c, st, used);
    return 0;
}

static int h2c_stream_close_cb(nghttp2_session *h2, int32_t sid, uint32_t error_code,
                               void *user)
{
    struct lr_h2c *c = user;
    struct h2c_stream *st = nghttp2_session_get_stream_user_data(h2, sid);
    if (!st || c->freeing)
        return 0;
    nghttp2_session_set_stream_user_data(h2, sid, NULL);
    st->gone = 1;
    int clean = st->peer_end && st->status_ok && st->grpc_status == 0 &&
                error_code == NGHTTP2_NO_ERROR;
    if (st->t && clean && st->held)
        return 0; /* a clean end whose last bytes wait: given on resume */
    if (st->held) {
        nghttp2_session_consume_connection(h2, lr_buf_len(st->held));
        held_drop(&st->held);
    }
    /* a stream that closes without its clean end (a reset, a refusal,
     * GOAWAY) failed; after a clean end the owner was told already */
    if (st->t && !clean)
        h2c_finish(c, st, 0);
    h2c_release(c, st);
    return 0;
}

struct lr_h2c *lr_h2c_new(const char *authority, const char *service, int multi, int tls,
                          const struct lr_h2c_ops *ops, void *owner)
{
    struct lr_h2c *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!c)
        return NULL;
    c->ops = ops;
    c->owner = owner;
    c->tls = (uint8_t)!!tls;
    size_t pl = strlen(service) + 12;
    c->authority = strdup(authority);
    c->path = malloc(pl);
    if (!c->authority || !c->path)
        goto fail;
    snprintf(c->path, pl, "/%s/%s", service, multi ? "TunMulti" : "Tun");
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_send_callback(cb, h2c_send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2c_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2c_frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2c_data_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2c_stream_close_cb);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (nghttp2_session_client_new2(&c->h2, cb, c, opt) != 0)
        c->h2 = NULL;
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    cb = NULL;
    opt = NULL;
    if (!c->h2)
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
    };
    /* as the server does: one tunnel whose reader stalls holds its own
     * window, never the connection's */
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, LR_ARRAY_LEN(iv)) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)(LR_H2C_STREAMS + 1) * H2_WINDOW) != 0)
        goto fail;
    return c;
fail:
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    lr_h2c_free(c);
    return NULL;
}

void lr_h2c_free(struct lr_h2c *c)
{
    if (!c)
        return;
    c->freeing = 1;
    while (c->streams) {
        struct h2c_stream *st = c->streams;
        h2c_unlink(c, st);
        held_drop(&st->held);
        if (c->h2)
            nghttp2_session_set_stream_user_data(c->h2, st->sid, NULL);
        free(st);
    }
    if (c->h2)
        nghttp2_session_del(c->h2);
    free(c->authority);
    free(c->path);
    free(c);
}

/* Streams it may have open: ours, or fewer when the server says so. */
static uint32_t h2c_cap(struct lr_h2c *c)
{
    uint32_t peer = nghttp2_session_get_remote_settings(c->h2,
                                                        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return peer < LR_H2C_STREAMS ? peer : LR_H2C_STREAMS;
}

int32_t lr_h2c_open(struct lr_h2c *c, void *t)
{
    if (c->broken || c->goaway || c->nstreams >= h2c_cap(c))
        return -1;
    struct h2c_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->t = t;
    st->grpc_status = -1;
    lr_gun_dec_init(&st->dec);
    nghttp2_nv nv[] = {
        NV(":method", "POST"),
        {(uint8_t *)":scheme", (uint8_t *)(c->tls ? "https" : "http"), 7, c->tls ? 5 : 4,
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)c->path, 5, strlen(c->path), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)c->authority, 10, strlen(c->authority),
         NGHTTP2_NV_FLAG_NONE},
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "grpc-go/1.36.1"),
    };
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2c_read_cb};
    int32_t sid = nghttp2_submit_request(c->h2, NULL, nv, LR_ARRAY_LEN(nv), &prd, st);
    if (sid < 0) {
        free(st);
        return -1;
    }
    st->sid = sid;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->nstreams++;
    return sid; /* the request goes out with the next flush (or send) */
}

int lr_h2c_flush(struct lr_h2c *c)
{
    if (c->broken)
        return -1;
    if (c->busy)
        return 0;
    if (nghttp2_session_send(c->h2) != 0) {
        c->broken = 1;
        return -1;
    }
    return 0;
}

int lr_h2c_input(struct lr_h2c *c, const uint8_t *p, size_t n)
{
    if (c->broken)
        return -1;
    c->busy++;
    ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
    c->busy--;
    if (rv < 0) {
        c->broken = 1;
        return -1;
    }
    for (struct h2c_stream *st = c->streams, *next; st; st = next) {
        next = st->next;
        if (st->resume_req) {
            st->resume_req = 0;
            (void)h2c_drain_held(c, st);
        }
    }
    return lr_h2c_flush(c);
}

size_t lr_h2c_send(struct lr_h2c *c, int32_t sid, const uint8_t *p, size_t n)
{
    if (c->busy || c->broken)
        return 0;
    struct h2c_stream *st = h2c_find(c, sid);
    if (!st || st->end_req || st->gone)
        return n; /* the stream is gone: nobody reads these */
    st->out.src = p;
    st->out.src_len = n;
    st->out.src_took = 0;
    st->pinned = 1;
    nghttp2_session_resume_data(c->h2, sid);
    (void)lr_h2c_flush(c);
    size_t took = st->out.src_took;
    st->out.src = NULL;
    st->pinned = 0;
    if (st->zombie)
        free(st);
    return took;
}

void lr_h2c_end(struct lr_h2c *c, int32_t sid)
{
    struct h2c_stream *st = h2c_find(c, sid);
    if (!st || st->end_req || st->gone)
        return;
    st->end_req = 1;
    nghttp2_session_resume_data(c->h2, sid);
    (void)lr_h2c_flush(c);
}

void lr_h2c_cancel(struct lr_h2c *c, int32_t sid)
{
    struct h2c_stream *st = h2c_find(c, sid);
    if (!st)
        return;
    st->t = NULL;
    if (st->held) {
        h2c_consume(c, st, lr_buf_len(st->held));
        held_drop(&st->held);
    }
    if (st->gone) {
        h2c_release(c, st);
        return;
    }
    /* a stream whose request is still queued is dropped by nghttp2 with
     * it (it closes without a frame) */
    if (!(st->peer_end && st->end_req && !gun_out_busy(&st->out)))
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    (void)lr_h2c_flush(c);
}

void lr_h2c_resume(struct lr_h2c *c, int32_t sid)
{
    struct h2c_stream *st = h2c_find(c, sid);
    if (!st)
        return;
    if (c->busy) {
        st->resume_req = 1;
        return;
    }
    (void)h2c_drain_held(c, st);
    (void)lr_h2c_flush(c);
}

int lr_h2c_usable(struct lr_h2c *c)
{
    return !c->broken && !c->goaway && c->nstreams < h2c_cap(c);
}

int lr_h2c_over(struct lr_h2c *c)
{
    return c->broken ||
           (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2));
}

/* ------------------------------------------------------------ client, one tunnel */

struct gunc {
    struct lr_stream s;
    nghttp2_session *h2;
    int32_t sid;
    char *authority, *path;
    uint8_t tls;
    uint8_t started, end_req, peer_end, failed, status_ok, lower_eof;
    uint8_t closed;          /* the stream is gone: nothing can be sent */
    int grpc_status;         /* -1: none came */
    struct lr_gun_dec dec;
    struct gun_out out;
    struct lr_buf *held;     /* DATA bytes not read yet */
    struct lr_buf *obuf;     /* frames not written yet */
    size_t owed;             /* the caller's bytes in obuf's frames */
};

#define GUNC(l) ((struct gunc *)(l))

static ssize_t gunc_read_cb(nghttp2_session *h2, int32_t sid, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user)
{
    struct gunc *g = user;
    size_t w = gun_out_fill(&g->out, buf, length);
    if (w)
        return (ssize_t)w;
    if (g->end_req && !gun_out_busy(&g->out)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    return NGHTTP2_ERR_DEFERRED;
}

static int gunc_header_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                          const uint8_t *name, size_t namelen, const uint8_t *value,
                          size_t valuelen, uint8_t flags, void *user)
{
    struct gunc *g = user;
    if (frame->hd.stream_id != g->sid || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        g->status_ok = valuelen == 3 && memcmp(value, "200", 3) == 0;
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int v = 0;
        for (size_t i = 0; i < valuelen && i < 6; i++)
            v = value[i] >= '0' && value[i] <= '9' ? v * 10 + (value[i] - '0') : 999;
        g->grpc_status = valuelen ? v : 999;
    }
    return 0;
}

static int gunc_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                              void *user)
{
    struct gunc *g = user;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.last_stream_id < g->sid)
        g->failed = 1;
    /* a RST_STREAM NO_ERROR after the server's trailers only says it reads
     * no more: what it sent stands */
    if (frame->hd.stream_id == g->sid && frame->hd.type == NGHTTP2_RST_STREAM &&
        !(g->peer_end && frame->rst_stream.error_code == NGHTTP2_NO_ERROR))
        g->failed = 1;
    if (frame->hd.stream_id == g->sid && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS))
        g->peer_end = 1;
    return 0;
}

static int gunc_data_cb(nghttp2_session *h2, uint8_t flags, int32_t sid,
                        const uint8_t *data, size_t len, void *user)
{
    struct gunc *g = user;
    if (sid != g->sid || g->failed) {
        nghttp2_session_consume(h2, sid, len);
        return 0;
    }
    if (held_add(&g->held, data, len) < 0) {
        g->failed = 1;
        nghttp2_session_consume(h2, sid, len);
    }
    return 0;
}

static int gunc_stream_close_cb(nghttp2_session *h2, int32_t sid, uint32_t error_code,
                                void *user)
{
    struct gunc *g = user;
    if (sid != g->sid)
        return 0;
    g->closed = 1;
    if (!g->peer_end || error_code != NGHTTP2_NO_ERROR)
        g->failed = 1;
    return 0;
}

/* Serializes what nghttp2 has to send into obuf (while it has room for a
 * whole frame); 0 or -EPROTO. */
static int gunc_pump(struct gunc *g)
{
    for (int i = 0; i < 64; i++) {
        if (!g->obuf && !(g->obuf = lr_buf_get()))
            return -ENOMEM;
        lr_buf_compact(g->obuf);
        if (lr_buf_room(g->obuf) < 16384 + 512)
            break;
        const uint8_t *d;
        ssize_t k = nghttp2_session_mem_send(g->h2, &d);
        if (k < 0) {
            g->failed = 1;
            return -EPROTO;
        }
        if (k == 0)
            break;
        if ((size_t)k > lr_buf_room(g->obuf)) {
            g->failed = 1; /* cannot happen with our frame sizes */
            return -EPROTO;
        }
        memcpy(lr_buf_tail(g->obuf), d, (size_t)k);
        g->obuf->wr += (uint32_t)k;
    }
    if (g->obuf && lr_buf_len(g->obuf) == 0)
        held_drop(&g->obuf);
    return 0;
}

/* Writes obuf to the layer below: 0 (all written, or the rest waits for
 * room), or -errno. */
static int gunc_flush(struct gunc *g)
{
    struct lr_stream *lo = g->s.lower;
    while (g->obuf && lr_buf_len(g->obuf)) {
        ssize_t r = lo->ops->write(lo, lr_buf_head(g->obuf), lr_buf_len(g->obuf));
        if (r > 0) {
            g->obuf->rd += (uint32_t)r;
            continue;
        }
        if (r == -EAGAIN)
            return 0;
        if (r == 0)
            continue;
        return (int)r;
    }
    held_drop(&g->obuf);
    return 0;
}

/* Reads what the layer below has (until it has nothing now) and lets
 * nghttp2 process it: DATA goes to held, WINDOW_UPDATE opens our window. */
static int gunc_input(struct gunc *g, int rounds)
{
    uint8_t tmp[16384];
    struct lr_stream *lo = g->s.lower;
    for (int i = 0; i < rounds && !g->lower_eof; i++) {
        ssize_t r = lo->ops->read(lo, tmp, sizeof(tmp));
        if (r == -EAGAIN)
            return 0;
        if (r == 0) {
            g->lower_eof = 1;
            return 0;
        }
        if (r < 0)
            return (int)r;
        if (nghttp2_session_mem_recv(g->h2, tmp, (size_t)r) < 0) {
            g->failed = 1;
            return -EPROTO;
        }
    }
    return 0;
}

/* Data bytes from held into buf: how many; -EPROTO for bad framing. */
static ssize_t gunc_take(struct gunc *g, uint8_t *buf, size_t n)
{
    if (!g->held)
        return 0;
    const uint8_t *p = lr_buf_head(g->held);
    size_t len = lr_buf_len(g->held), used = 0, out = 0;
    while (used < len && out < n) {
        size_t skip, k;
        int rc = lr_gun_dec_next(&g->dec, p + used, len - used, &skip, &k);
        if (rc < 0) {
            g->failed = 1;
            return -EPROTO;
        }
        used += skip;
        if (rc == LR_AGAIN)
            break;
        if (k > n - out)
            k = n - out;
        memcpy(buf + out, p + used, k);
        lr_gun_dec_took(&g->dec, k);
        used += k;
        out += k;
    }
    g->held->rd += (uint32_t)used;
    nghttp2_session_consume(g->h2, g->sid, used);
    if (lr_buf_len(g->held) == 0)
        held_drop(&g->held);
    return (ssize_t)out;
}

static ssize_t gunc_read(struct lr_stream *l, void *buf, size_t n)
{
    struct gunc *g = GUNC(l);
    for (int round = 0; round < 32; round++) {
        if (g->failed)
            return -ECONNRESET; /* reset, or bad framing: what it held is no good */
        ssize_t k = gunc_take(g, buf, n);
        if (k < 0)
            return k;
        if (g->held || k > 0) {
            /* our WINDOW_UPDATE, best effort (the next call sends it too) */
            if (gunc_pump(g) == 0)
                (void)gunc_flush(g);
            if (k > 0)
                return k;
        }
        if (g->failed)
            return -ECONNRESET;
        if (g->peer_end && !g->held)
            return g->status_ok && g->grpc_status == 0 ? 0 : -ECONNRESET;
        if (g->lower_eof)
            return -ECONNRESET; /* the connection ended inside the tunnel */
        int rc = gunc_pump(g);
        if (rc == 0)
            rc = gunc_flush(g);
        if (rc < 0)
            return rc;
        struct lr_stream *lo = g->s.lower;
        uint8_t tmp[16384];
        ssize_t r = lo->ops->read(lo, tmp, sizeof(tmp));
        if (r == -EAGAIN)
            return -EAGAIN;
        if (r == 0) {
            g->lower_eof = 1;
            continue;
        }
        if (r < 0)
            return r;
        if (nghttp2_session_mem_recv(g->h2, tmp, (size_t)r) < 0) {
            g->failed = 1;
            return -EPROTO;
        }
    }
    return -EAGAIN;
}

static ssize_t gunc_write(struct lr_stream *l, const void *buf, size_t n)
{
    struct gunc *g = GUNC(l);
    int rc;
    if (g->failed || g->closed)
        return -EPIPE; /* the server ended the tunnel: it reads no more */
    if (g->obuf) {
        /* frames of an earlier call still going out */
        if ((rc = gunc_flush(g)) < 0)
            return rc;
        if (g->obuf)
            return -EAGAIN;
    }
    if (g->owed) {
        /* they are out now: the caller's bytes they carried count */
        size_t k = g->owed;
        g->owed = 0;
        return (ssize_t)k;
    }
    size_t k = 0;
    for (int tries = 0; tries < 2 && k == 0; tries++) {
        if (tries) {
            /* our window is closed: read what the server sent (a
             * WINDOW_UPDATE opens it; DATA waits in held) */
            if ((rc = gunc_input(g, 16)) < 0)
                return rc;
            if (g->failed)
                return -EPIPE;
        }
        g->out.src = buf;
        g->out.src_len = n;
        g->out.src_took = 0;
        nghttp2_session_resume_data(g->h2, g->sid);
        rc = gunc_pump(g);
        k = g->out.src_took;
        g->out.src = NULL;
        if (rc < 0)
            return rc;
    }
    if ((rc = gunc_flush(g)) < 0)
        return rc;
    if (k == 0) {
        /* waiting for the server's WINDOW_UPDATE: a read, not room */
        l->want = (uint8_t)(LR_STREAM_WANT_READ | (g->obuf ? LR_STREAM_WANT_WRITE : 0));
        return -EAGAIN;
    }
    l->want = 0;
    if (g->obuf) {
        g->owed = k;
        return -EAGAIN;
    }
    return (ssize_t)k;
}

static void gunc_shutdown(struct lr_stream *l)
{
    struct gunc *g = GUNC(l);
    if (g->end_req || g->failed)
        return;
    g->end_req = 1;
    nghttp2_session_resume_data(g->h2, g->sid);
    if (gunc_pump(g) == 0)
        (void)gunc_flush(g);
}

static size_t gunc_pending(struct lr_stream *l)
{
    struct gunc *g = GUNC(l);
    if (g->held || g->failed || (g->peer_end && g->started))
        return 1;
    struct lr_stream *lo = l->lower;
    return lo && lo->ops->pending ? lo->ops->pending(lo) : 0;
}

static void gunc_free(struct lr_stream *l)
{
    struct gunc *g = GUNC(l);
    if (g->h2)
        nghttp2_session_del(g->h2);
    held_drop(&g->held);
    held_drop(&g->obuf);
    free(g->authority);
    free(g->path);
    free(g);
}

static const struct lr_stream_ops gunc_ops = {
    .name = "grpc",
    .read = gunc_read,
    .write = gunc_write,
    .shutdown = gunc_shutdown,
    .free = gunc_free,
    .pending = gunc_pending,
};

struct lr_stream *lr_gunc_new(const char *authority, const char *service,
                              int multi, int tls)
{
    struct gunc *g = calloc(1, sizeof(*g));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!g)
        return NULL;
    g->s.ops = &gunc_ops;
    g->grpc_status = -1;
    g->tls = (uint8_t)!!tls;
    lr_gun_dec_init(&g->dec);
    size_t pl = strlen(service) + 12;
    g->authority = strdup(authority);
    g->path = malloc(pl);
    if (!g->authority || !g->path)
        goto fail;
    snprintf(g->path, pl, "/%s/%s", service, multi ? "TunMulti" : "Tun");
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_header_callback(cb, gunc_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, gunc_frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, gunc_data_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, gunc_stream_close_cb);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (nghttp2_session_client_new2(&g->h2, cb, g, opt) != 0)
        g->h2 = NULL;
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (!g->h2)
        goto fail_free;
    return &g->s;
fail:
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
fail_free:
    gunc_free(&g->s);
    return NULL;
}

int lr_gunc_start(struct lr_stream *l)
{
    struct gunc *g = GUNC(l);
    if (!g->started) {
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        };
        nghttp2_nv nv[] = {
            NV(":method", "POST"),
            {(uint8_t *)":scheme", (uint8_t *)(g->tls ? "https" : "http"), 7,
             g->tls ? 5 : 4, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)":path", (uint8_t *)g->path, 5, strlen(g->path), NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)":authority", (uint8_t *)g->authority, 10, strlen(g->authority),
             NGHTTP2_NV_FLAG_NONE},
            NV("content-type", "application/grpc"),
            NV("te", "trailers"),
            NV("user-agent", "grpc-go/1.36.1"),
        };
        nghttp2_data_provider prd = {.read_callback = gunc_read_cb};
        if (nghttp2_submit_settings(g->h2, NGHTTP2_FLAG_NONE, iv, LR_ARRAY_LEN(iv)) != 0)
            return -EPROTO;
        g->sid = nghttp2_submit_request(g->h2, NULL, nv, LR_ARRAY_LEN(nv), &prd, NULL);
        if (g->sid < 0)
            return -EPROTO;
        g->started = 1;
    }
    int rc = gunc_pump(g);
    if (rc == 0)
        rc = gunc_flush(g);
    if (rc < 0)
        return rc;
    return g->obuf ? 0 : 1;
}
