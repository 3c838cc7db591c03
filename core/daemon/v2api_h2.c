/*
 * The v2ray API's HTTP/2 side (v2api.h, lr_v2api_sess): one connection's
 * gRPC server for unary calls, as grpc-go's insecure clients (v2ctl,
 * panels) speak it: h2c with prior knowledge, a request is HEADERS
 * (:method POST, :path /pkg.Service/Method, content-type
 * application/grpc[+proto]) and DATA carrying one 5-byte length-prefixed
 * message; the reply is HEADERS (:status 200), DATA (one message) and
 * trailers (grpc-status, grpc-message percent-encoded), or for an error
 * one HEADERS with the status in it (Trailers-Only).
 *
 * HTTP/2 itself is nghttp2's, driven by our bytes (mem_recv, mem_send):
 * no socket here.  Bounds: LR_V2API_STREAMS streams at a time; a request
 * of at most 5 + LR_V2API_MSG_MAX bytes, answered RESOURCE_EXHAUSTED as
 * soon as its prefix announces more; request bytes held at once 2 MiB per
 * connection and 32 MiB over all of them (past that, RESOURCE_EXHAUSTED);
 * what waits to be written at most about 64 KiB here (the server stops
 * reading a client that does not read).  A connection that is not HTTP/2
 * or breaks it is closed with a log line saying why; a bad request ends
 * its stream only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "base/base.h"
#include "base/log.h"
#include "daemon/v2api.h"

#define SESS_HELD_MAX (2u << 20)
#define ALL_HELD_MAX (32u << 20)
#define OUT_HIGH 65536
#define PATH_LEN 256
#define LOG_LINES 4              /* nghttp2's complaints logged per connection */

/* request bytes held by every session (main thread only) */
static size_t all_held;

struct stream {
    struct stream *prev, *next;
    int32_t sid;
    char path[PATH_LEN];
    uint8_t path_long, post, grpc, answered, peer_end;
    uint8_t *body;               /* the request's DATA so far */
    size_t len, cap;
    uint8_t *resp;               /* the reply message, framed */
    size_t resp_len, resp_off;
};

struct lr_v2api_sess {
    nghttp2_session *h2;
    const struct lr_v2api_env *env;
    char peer[80];
    struct stream *streams;
    uint32_t nstreams;
    size_t held;                 /* request bytes held by its streams */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    int ready, broken, logged;
};

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
                   NGHTTP2_NV_FLAG_NONE }

static struct stream *stream_of(struct lr_v2api_sess *s, int32_t sid)
{
    return nghttp2_session_get_stream_user_data(s->h2, sid);
}

static void drop_body(struct lr_v2api_sess *s, struct stream *st)
{
    s->held -= st->cap;
    all_held -= st->cap;
    free(st->body);
    st->body = NULL;
    st->len = st->cap = 0;
}

static void stream_free(struct lr_v2api_sess *s, struct stream *st)
{
    drop_body(s, st);
    free(st->resp);
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    s->nstreams--;
    free(st);
}

/* The path as a log line shows it (no control bytes). */
static const char *shown_path(const struct stream *st, char *buf, size_t n)
{
    lr_grpc_msg_encode(buf, n, st->path_long ? "(a path too long)" : st->path);
    return buf;
}

/* ------------------------------------------------------------ replies */

static ssize_t resp_read_cb(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct stream *st = source->ptr;
    size_t k = st->resp_len - st->resp_off;
    if (k > length)
        k = length;
    memcpy(buf, st->resp + st->resp_off, k);
    st->resp_off += k;
    if (st->resp_off == st->resp_len) {
        nghttp2_nv tr[] = {NV("grpc-status", "0")};
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(h2, sid, tr, LR_ARRAY_LEN(tr)) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)k;
}

/* A plain HTTP answer for what is no gRPC request. */
static void answer_http(struct lr_v2api_sess *s, struct stream *st, const char *status)
{
    nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
                        NGHTTP2_NV_FLAG_NONE},
                       NV("content-type", "text/plain")};
    st->answered = 1;
    drop_body(s, st);
    nghttp2_submit_response(s->h2, st->sid, nv, LR_ARRAY_LEN(nv), NULL);
}

/* The reply of st: the message body[0, len) with status 0, or the status
 * and msg alone (Trailers-Only). */
static void answer(struct lr_v2api_sess *s, struct stream *st, int status, const char *msg,
                   const uint8_t *body, size_t len)
{
    char p[160];
    st->answered = 1;
    drop_body(s, st);
    if (status != LR_GRPC_OK)
        lr_log(status == LR_GRPC_UNKNOWN ? LR_LOG_DEBUG
               : status == LR_GRPC_UNIMPLEMENTED ? LR_LOG_INFO : LR_LOG_WARN,
               "api: %s: %s: grpc-status %d: %s", s->peer, shown_path(st, p, sizeof(p)),
               status, msg);
    if (status == LR_GRPC_OK) {
        if (!(st->resp = malloc(5 + len))) {
            status = LR_GRPC_RESOURCE_EXHAUSTED;
            msg = "out of memory";
        } else {
            st->resp[0] = 0;
            lr_put_be32(st->resp + 1, (uint32_t)len);
            if (len)
                memcpy(st->resp + 5, body, len);
            st->resp_len = 5 + len;
            nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
            nghttp2_data_provider prd = {.source.ptr = st, .read_callback = resp_read_cb};
            if (nghttp2_submit_response(s->h2, st->sid, nv, LR_ARRAY_LEN(nv), &prd) != 0)
                nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, st->sid,
                                          NGHTTP2_INTERNAL_ERROR);
            return;
        }
    }
    char num[16], enc[1024];
    snprintf(num, sizeof(num), "%d", status);
    lr_grpc_msg_encode(enc, sizeof(enc), msg);
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                       {(uint8_t *)"grpc-status", (uint8_t *)num, 11, strlen(num),
                        NGHTTP2_NV_FLAG_NONE},
                       {(uint8_t *)"grpc-message", (uint8_t *)enc, 12, strlen(enc),
                        NGHTTP2_NV_FLAG_NONE}};
    nghttp2_submit_response(s->h2, st->sid, nv, LR_ARRAY_LEN(nv), NULL);
}

/* The request is whole: call it. */
static void finish(struct lr_v2api_sess *s, struct stream *st)
{
    const uint8_t *msg;
    size_t mlen;
    char err[300];
    int status = lr_grpc_unframe(st->body, st->len, &msg, &mlen, err, sizeof(err));
    if (status != LR_GRPC_OK) {
        answer(s, st, status, err, NULL, 0);
        return;
    }
    struct lr_v2api_reply r;
    lr_v2api_call(s->env, st->path, msg, mlen, &r);
    if (r.status == LR_GRPC_OK) {
        char p[160];
        lr_debug("api: %s: %s: ok", s->peer, shown_path(st, p, sizeof(p)));
    }
    answer(s, st, r.status, r.msg, r.body, r.len);
    free(r.body);
}

/* ------------------------------------------------------------ nghttp2 callbacks */

static int begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct lr_v2api_sess *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (s->nstreams >= LR_V2API_STREAMS)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* a reset of this stream */
    struct stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->sid = frame->hd.stream_id;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->nstreams++;
    nghttp2_session_set_stream_user_data(h2, st->sid, st);
    return 0;
}

static int is_grpc_type(const uint8_t *v, size_t n)
{
    static const char t[] = "application/grpc";
    size_t tl = sizeof(t) - 1;
    return n >= tl && memcmp(v, t, tl) == 0 && (n == tl || v[tl] == '+' || v[tl] == ';');
}

static int header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct lr_v2api_sess *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *st = stream_of(s, frame->hd.stream_id);
    if (!st)
        return 0;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        st->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        /* nghttp2 refuses a NUL in a value: the copy is the whole path */
        st->path_long = valuelen >= sizeof(st->path);
        if (!st->path_long) {
            memcpy(st->path, value, valuelen);
            st->path[valuelen] = 0;
        }
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        st->grpc = (uint8_t)is_grpc_type(value, valuelen);
    }
    return 0;
}

static int frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct lr_v2api_sess *s = user;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        s->ready = 1; /* the preface's SETTINGS came */
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct stream *st = stream_of(s, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
        !st->answered) {
        char p[160];
        if (!st->post) {
            lr_info("api: %s: %s: not a POST (405)", s->peer, shown_path(st, p, sizeof(p)));
            answer_http(s, st, "405");
        } else if (!st->grpc) {
            lr_info("api: %s: %s: content-type is not application/grpc (415)", s->peer,
                    shown_path(st, p, sizeof(p)));
            answer_http(s, st, "415");
        } else if (st->path_long) {
            answer(s, st, LR_GRPC_UNIMPLEMENTED, "malformed method name: a path too long",
                   NULL, 0);
        }
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        st->peer_end = 1;
        if (!st->answered)
            finish(s, st);
    }
    return 0;
}

static int data_cb(nghttp2_session *h2, uint8_t flags, int32_t sid, const uint8_t *data,
                   size_t len, void *user)
{
    struct lr_v2api_sess *s = user;
    struct stream *st = stream_of(s, sid);
    if (!st || st->answered)
        return 0; /* nobody's: dropped (nghttp2 counts it consumed) */
    size_t need = st->len + len;
    if (need > 5 + (size_t)LR_V2API_MSG_MAX) {
        answer(s, st, LR_GRPC_RESOURCE_EXHAUSTED,
               "grpc: received message larger than max (1048576 bytes)", NULL, 0);
        return 0;
    }
    if (need > st->cap) {
        size_t ncap = st->cap ? st->cap : 1024;
        while (ncap < need)
            ncap *= 2;
        if (ncap > 5 + (size_t)LR_V2API_MSG_MAX)
            ncap = 5 + (size_t)LR_V2API_MSG_MAX;
        size_t more = ncap - st->cap;
        if (s->held + more > SESS_HELD_MAX || all_held + more > ALL_HELD_MAX) {
            answer(s, st, LR_GRPC_RESOURCE_EXHAUSTED,
                   s->held + more > SESS_HELD_MAX
                       ? "luaray: too many request bytes at once on this connection"
                       : "luaray: too many request bytes at once on the API",
                   NULL, 0);
            return 0;
        }
        uint8_t *nb = realloc(st->body, ncap);
        if (!nb) {
            answer(s, st, LR_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
            return 0;
        }
        st->body = nb;
        st->cap = ncap;
        s->held += more;
        all_held += more;
    }
    memcpy(st->body + st->len, data, len);
    st->len = need;
    if (st->len >= 5) {
        /* a message announced over the limit is refused before it comes */
        const uint8_t *m;
        size_t ml;
        char err[200];
        uint32_t announced = lr_get_be32(st->body + 1);
        if (announced > LR_V2API_MSG_MAX &&
            lr_grpc_unframe(st->body, 5, &m, &ml, err, sizeof(err)) ==
                LR_GRPC_RESOURCE_EXHAUSTED)
            answer(s, st, LR_GRPC_RESOURCE_EXHAUSTED, err, NULL, 0);
    }
    return 0;
}

static int frame_send_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct lr_v2api_sess *s = user;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct stream *st = stream_of(s, frame->hd.stream_id);
    /* answered while the client still sends (an early error): it may stop
     * now, as gRPC servers say (RST_STREAM NO_ERROR) */
    if (st && !st->peer_end)
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_NO_ERROR);
    return 0;
}

static int stream_close_cb(nghttp2_session *h2, int32_t sid, uint32_t error_code, void *user)
{
    struct lr_v2api_sess *s = user;
    struct stream *st = stream_of(s, sid);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(h2, sid, NULL);
    stream_free(s, st);
    return 0;
}

static int error_cb(nghttp2_session *h2, int lib_error_code, const char *msg, size_t len,
                    void *user)
{
    struct lr_v2api_sess *s = user;
    if (s->logged++ < LOG_LINES)
        lr_warn("api: %s: HTTP/2: %.*s", s->peer, (int)len, msg);
    return 0;
}

/* ------------------------------------------------------------ the session */

struct lr_v2api_sess *lr_v2api_sess_new(const struct lr_v2api_env *env, const char *peer)
{
    struct lr_v2api_sess *s = calloc(1, sizeof(*s));
    nghttp2_session_callbacks *cb = NULL;
    if (!s)
        return NULL;
    s->env = env;
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    if (nghttp2_session_callbacks_new(&cb) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, data_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, frame_send_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, stream_close_cb);
    nghttp2_session_callbacks_set_error_callback2(cb, error_cb);
    int rc = nghttp2_session_server_new(&s->h2, cb, s);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        s->h2 = NULL;
        goto fail;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, LR_V2API_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
    };
    if (nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, iv, LR_ARRAY_LEN(iv)) != 0)
        goto fail;
    return s;
fail:
    lr_v2api_sess_free(s);
    return NULL;
}

void lr_v2api_sess_free(struct lr_v2api_sess *s)
{
    if (!s)
        return;
    while (s->streams) {
        struct stream *st = s->streams;
        if (s->h2)
            nghttp2_session_set_stream_user_data(s->h2, st->sid, NULL);
        stream_free(s, st);
    }
    if (s->h2)
        nghttp2_session_del(s->h2);
    free(s->out);
    free(s);
}

/* Why bytes that should start with the preface did not (for the log). */
static const char *not_h2(const uint8_t *p, size_t n)
{
    if (n >= 1 && p[0] == 0x16)
        return "a TLS handshake: the API speaks h2c, without TLS";
    if (n >= 4 && (memcmp(p, "GET ", 4) == 0 || memcmp(p, "POST", 4) == 0 ||
                   memcmp(p, "HEAD", 4) == 0 || memcmp(p, "PUT ", 4) == 0))
        return "an HTTP/1 request: the API is gRPC, HTTP/2 with prior knowledge";
    return "not the HTTP/2 client preface";
}

int lr_v2api_sess_input(struct lr_v2api_sess *s, const uint8_t *p, size_t n)
{
    if (s->broken)
        return -1;
    ssize_t rv = nghttp2_session_mem_recv(s->h2, p, n);
    if (rv < 0) {
        s->broken = 1;
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            lr_warn("api: %s: %s; closed", s->peer, not_h2(p, n));
        else
            lr_warn("api: %s: HTTP/2: %s; closed", s->peer, nghttp2_strerror((int)rv));
        return -1;
    }
    return 0;
}

const uint8_t *lr_v2api_sess_output(struct lr_v2api_sess *s, size_t *n)
{
    while (!s->broken && s->out_len - s->out_off < OUT_HIGH) {
        const uint8_t *d;
        ssize_t k = nghttp2_session_mem_send(s->h2, &d);
        if (k < 0) {
            lr_warn("api: %s: HTTP/2: %s; closed", s->peer, nghttp2_strerror((int)k));
            s->broken = 1;
            break;
        }
        if (k == 0)
            break;
        if (s->out_off && s->out_off == s->out_len)
            s->out_off = s->out_len = 0;
        if (s->out_len + (size_t)k > s->out_cap) {
            if (s->out_off) {
                memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
                s->out_len -= s->out_off;
                s->out_off = 0;
            }
            size_t ncap = s->out_cap ? s->out_cap : 16384;
            while (ncap < s->out_len + (size_t)k)
                ncap *= 2;
            if (ncap != s->out_cap) {
                uint8_t *no = realloc(s->out, ncap);
                if (!no) {
                    lr_error("api: %s: out of memory; closed", s->peer);
                    s->broken = 1;
                    break;
                }
                s->out = no;
                s->out_cap = ncap;
            }
        }
        memcpy(s->out + s->out_len, d, (size_t)k);
        s->out_len += (size_t)k;
    }
    *n = s->out_len - s->out_off;
    return *n ? s->out + s->out_off : NULL;
}

void lr_v2api_sess_sent(struct lr_v2api_sess *s, size_t n)
{
    s->out_off += n;
    if (s->out_off >= s->out_len)
        s->out_off = s->out_len = 0;
}

size_t lr_v2api_sess_backlog(const struct lr_v2api_sess *s)
{
    return s->out_len - s->out_off;
}

int lr_v2api_sess_idle(const struct lr_v2api_sess *s)
{
    return s->ready && s->nstreams == 0;
}

int lr_v2api_sess_ready(const struct lr_v2api_sess *s)
{
    return s->ready;
}

size_t lr_v2api_held_all(void)
{
    return all_held;
}

void lr_v2api_sess_goaway(struct lr_v2api_sess *s)
{
    if (!s->broken)
        nghttp2_session_terminate_session(s->h2, NGHTTP2_NO_ERROR);
}

int lr_v2api_sess_over(struct lr_v2api_sess *s)
{
    if (s->broken)
        return 1;
    return !nghttp2_session_want_read(s->h2) && !nghttp2_session_want_write(s->h2) &&
           s->out_len == s->out_off;
}
