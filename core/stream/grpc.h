/*
 * gRPC "gun" (design.md 6): VMess inside HTTP/2 streams, as v2fly and Xray
 * carry it.  A tunnel is one HTTP/2 stream `POST /<service>/Tun` (or
 * `/TunMulti`) with `content-type: application/grpc`; each direction is a
 * sequence of gRPC messages, each a 5-byte prefix (flag 0: not compressed,
 * BE32 length) and a protobuf message
 *
 *   message Hunk      { bytes data = 1; }          (Tun)
 *   message MultiHunk { repeated bytes data = 1; } (TunMulti)
 *
 * whose data fields, in order, are the tunnel's bytes.  The server ends a
 * stream with trailers (`grpc-status: 0`, another value for an error).
 *
 * Three parts, all protocol mechanics (HTTP/2 is nghttp2's):
 *   - the gun codec: a message header for n bytes, and an incremental
 *     decoder that finds the data bytes in a message stream cut anywhere
 *     (zero copy: it points into its input);
 *   - lr_h2s, the server side of one HTTP/2 connection carrying many
 *     tunnels, with its owner (inbound/front_grpc.c) behind callbacks, so
 *     it runs (and is fuzzed) without a connection;
 *   - the client layer: one tunnel as a stream layer (net/stream.h) over
 *     the socket or TLS, one HTTP/2 connection per tunnel
 *     (outbound/cfront_grpc.c pushes it).
 *
 * Flow control keeps backpressure: DATA is acknowledged to the peer
 * (nghttp2_session_consume, then WINDOW_UPDATE) only once the tunnel's
 * reader took its bytes, so a peer can never have more than a stream
 * window (64 KiB) outstanding per tunnel; what a tunnel cannot take yet
 * waits, as it came, in a buffer of that size.
 */
#ifndef LR_STREAM_GRPC_H
#define LR_STREAM_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "net/stream.h"

/* ------------------------------------------------------------ gun codec */

/* The longest message header: prefix (5), tag (1), varint length (5). */
#define LR_GUN_HDR_MAX 11

/* Writes the header of a Hunk (or a one-element MultiHunk: the same bytes)
 * carrying n data bytes (n < 2^32 - 16) into out; returns its length. */
size_t lr_gun_hdr(uint8_t *out, size_t n);

/* An incremental reader of a gun message stream (Hunk or MultiHunk; every
 * data field in order; unknown fields are skipped as protobuf says). */
struct lr_gun_dec {
    uint8_t st;
    uint8_t hn;          /* prefix bytes collected */
    uint8_t hdr[5];
    uint8_t vn;          /* varint bytes read */
    uint8_t skip_wire;   /* the field being read is skipped */
    uint64_t v;          /* varint being read */
    uint64_t msg_left;   /* bytes of the current message not yet read */
    uint64_t field_left; /* bytes of the current field not yet read */
};

void lr_gun_dec_init(struct lr_gun_dec *d);
/* Reads framing from in[0, len) up to the next data bytes: LR_OK with
 * *skip framing bytes consumed and *n > 0 data bytes at in + *skip (take
 * any number of them with lr_gun_dec_took, then call again after them);
 * LR_AGAIN when all of it was framing (*skip = len, *n = 0); -EPROTO for a
 * stream that is no gun (a compressed message, a malformed field), and for
 * every call after that. */
int lr_gun_dec_next(struct lr_gun_dec *d, const uint8_t *in, size_t len,
                    size_t *skip, size_t *n);
/* k (<= the *n of the last call) data bytes were taken. */
void lr_gun_dec_took(struct lr_gun_dec *d, size_t k);

/* ------------------------------------------------------------ server */

/* The server side of one HTTP/2 connection (prior knowledge: input starts
 * with the client preface).  Its owner feeds it the client's bytes
 * (lr_h2s_input) and takes its output (ops->out); each accepted stream is
 * a tunnel the owner names with its own pointer.  Callbacks never run
 * from inside an lr_h2s_* call the owner made about a tunnel (send, end,
 * resume), only from lr_h2s_input and lr_h2s_flush; inside a callback the
 * owner must not call lr_h2s_input / lr_h2s_flush (send returns 0 there). */
struct lr_h2s;

struct lr_h2s_ops {
    /* A request for the tunnel's path (POST, application/grpc) on stream
     * sid: the owner's tunnel, or NULL to refuse it (REFUSED_STREAM).
     * client_ip: the request's X-Real-IP, else the last X-Forwarded-For
     * entry (what a proxy in front says; the owner decides whether to
     * believe it), or NULL. */
    void *(*open)(void *owner, int32_t sid, const char *client_ip);
    /* Tunnel bytes for t: returns how many it took; the rest waits until
     * the owner calls lr_h2s_resume. */
    size_t (*data)(void *owner, void *t, const uint8_t *p, size_t n);
    /* The client ended its side of t (after every byte was taken). */
    void (*eof)(void *owner, void *t);
    /* t's stream is gone (reset by the client, a framing error, the
     * connection failing): no callback names t after this. */
    void (*closed)(void *owner, void *t);
    /* Bytes for the client: returns how many it took (0: none now; the
     * owner calls lr_h2s_flush when it has room again). */
    size_t (*out)(void *owner, const uint8_t *p, size_t n);
};

/* A session accepting `/<service>/Tun` and `/<service>/TunMulti`, at most
 * max_streams at once (advertised in SETTINGS).  NULL on ENOMEM. */
struct lr_h2s *lr_h2s_new(const char *service, uint32_t max_streams,
                          const struct lr_h2s_ops *ops, void *owner);
/* Frees it; no callback runs. */
void lr_h2s_free(struct lr_h2s *s);
/* Client bytes (all taken): 0, or < 0 when the connection is broken
 * beyond repair (not HTTP/2, a protocol error, a flood): close it. */
int lr_h2s_input(struct lr_h2s *s, const uint8_t *p, size_t n);
/* Writes what is due through ops->out: 0, or < 0 (close it). */
int lr_h2s_flush(struct lr_h2s *s);
/* Tunnel sid's bytes towards the client: how many were framed into DATA
 * (0: its stream window or the output is full; try again after the next
 * input or flush). */
size_t lr_h2s_send(struct lr_h2s *s, int32_t sid, const uint8_t *p, size_t n);
/* The tunnel is over: after what was sent, trailers with grpc-status
 * `status` (0: done; else an error, or a reset when a message was cut).
 * No callback names its tunnel after this. */
void lr_h2s_end(struct lr_h2s *s, int32_t sid, int status);
/* Tunnel sid can take bytes again: what waited is offered (ops->data). */
void lr_h2s_resume(struct lr_h2s *s, int32_t sid);
/* Whether the session is over (nothing to read or write any more). */
int lr_h2s_over(struct lr_h2s *s);

/* ------------------------------------------------------------ client, many tunnels */

/* The client side of one HTTP/2 connection carrying many tunnels (the
 * owner, outbound/cfront_grpc.c, shares it between the VMess connections
 * of an outbound).  Like lr_h2s: bytes from the server go in through
 * lr_h2c_input, output leaves through ops->out; callbacks run from
 * lr_h2c_* calls and only queue work in the owner. */
struct lr_h2c;

/* Streams one connection carries at most; more open another connection. */
#define LR_H2C_STREAMS 100

struct lr_h2c_ops {
    /* Tunnel bytes for t: how many it took; the rest waits until the
     * owner calls lr_h2c_resume. */
    size_t (*data)(void *owner, void *t, const uint8_t *p, size_t n);
    /* The server ended t cleanly (200, grpc-status 0) after every byte
     * was taken. */
    void (*eof)(void *owner, void *t);
    /* t failed (reset, refused, a status other than 200 / grpc-status 0,
     * bad framing, GOAWAY): no callback names t after this. */
    void (*closed)(void *owner, void *t);
    /* Bytes for the server: how many it took (0: none now; the owner
     * calls lr_h2c_flush when it has room again). */
    size_t (*out)(void *owner, const uint8_t *p, size_t n);
};

/* `POST /<service>/Tun` (TunMulti with multi) requests to `authority`,
 * :scheme https with tls.  NULL on ENOMEM.  The preface and SETTINGS are
 * the first output (lr_h2c_flush). */
struct lr_h2c *lr_h2c_new(const char *authority, const char *service, int multi, int tls,
                          const struct lr_h2c_ops *ops, void *owner);
void lr_h2c_free(struct lr_h2c *c);
/* A new tunnel t: its stream id, or -1 (GOAWAY came, full, broken).  No
 * callback runs inside; the request goes out with the next flush. */
int32_t lr_h2c_open(struct lr_h2c *c, void *t);
/* As lr_h2s_send, towards the server. */
size_t lr_h2c_send(struct lr_h2c *c, int32_t sid, const uint8_t *p, size_t n);
/* The tunnel's upload is over: END_STREAM after what was sent. */
void lr_h2c_end(struct lr_h2c *c, int32_t sid);
/* The tunnel is gone: RST_STREAM CANCEL unless it ended both ways; no
 * callback names it after this. */
void lr_h2c_cancel(struct lr_h2c *c, int32_t sid);
void lr_h2c_resume(struct lr_h2c *c, int32_t sid);
/* Server bytes (all taken): 0, or < 0 when the connection is broken. */
int lr_h2c_input(struct lr_h2c *c, const uint8_t *p, size_t n);
int lr_h2c_flush(struct lr_h2c *c);
/* Whether it can take another tunnel (no GOAWAY, not full, not broken). */
int lr_h2c_usable(struct lr_h2c *c);
/* Whether the session is over (nothing to read or write any more). */
int lr_h2c_over(struct lr_h2c *c);

/* ------------------------------------------------------------ client, one tunnel */

/* A gun tunnel as a stream layer: `POST /<service>/Tun` (TunMulti with
 * multi) to `authority`, over whatever layer it is pushed on.  NULL on
 * ENOMEM.  Push it (lr_side_push), then call lr_gunc_start until it
 * returns 1. */
struct lr_stream *lr_gunc_new(const char *authority, const char *service,
                              int multi, int tls);
/* Sends the preface, SETTINGS and the request: 1 done, 0 waiting for the
 * socket to be writable, < 0 error. */
int lr_gunc_start(struct lr_stream *l);

#endif
