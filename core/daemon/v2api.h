/*
 * luaray.api (design.md 7): a gRPC server speaking v2ray 4.34's own API,
 * so Debian's `v2ctl api` and the panels' gRPC clients work unchanged.
 *
 *   /v2ray.core.app.stats.command.StatsService/GetStats, QueryStats,
 *     GetSysStats: the traffic counters (base/stats.h) as v2ray names them;
 *   /v2ray.core.app.proxyman.command.HandlerService/AlterInbound with an
 *     AddUserOperation or RemoveUserOperation: live users (daemon/live.h);
 *   the other HandlerService methods, and any other path: grpc-status 12
 *     (UNIMPLEMENTED) with a message.
 *
 * Three layers, the lower two without a socket (and fuzzed so,
 * spec/fuzz/targets/fuzz_v2api.c):
 *   - lr_v2api_call: one unary call, the request message (protobuf, the
 *     messages in core/daemon/proto/, C from protoc-c at build time) to a
 *     reply: a response message or a gRPC status with its message
 *     (v2api_svc.c);
 *   - lr_v2api_sess: the server side of one HTTP/2 connection (h2c, prior
 *     knowledge, as grpc-go's insecure clients speak it): requests,
 *     5-byte length-prefixed messages, replies with trailers (v2api_h2.c,
 *     nghttp2);
 *   - lr_v2api: the listener and its connections on the main thread's
 *     loop (v2api.c).
 *
 * Like v2ray's, the API has no authentication: listen on loopback.
 */
#ifndef LR_V2API_H
#define LR_V2API_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes used here (grpc's doc/statuscodes.md) */
enum {
    LR_GRPC_OK = 0,
    LR_GRPC_UNKNOWN = 2,
    LR_GRPC_INVALID_ARGUMENT = 3,
    LR_GRPC_RESOURCE_EXHAUSTED = 8,
    LR_GRPC_UNIMPLEMENTED = 12,
    LR_GRPC_INTERNAL = 13,
    LR_GRPC_UNAVAILABLE = 14
};

/* The largest request message taken (grpc-go's servers take 4 MiB). */
#define LR_V2API_MSG_MAX (1u << 20)

/* What GetSysStats reports (v2ray's fields are Go runtime figures; see
 * v2api_svc.c for what each one means here). */
struct lr_v2api_sys {
    uint32_t num_goroutine, num_gc, uptime;
    uint64_t alloc, total_alloc, sys, mallocs, frees, live_objects, pause_total_ns;
};

/* What the services act on: the daemon's live users and the process's
 * figures (a fuzz target passes fakes). */
struct lr_v2api_env {
    void *ud;
    /* daemon/live.h: lr_live_add / lr_live_remove (tag NULL: every VMess
     * inbound); 0, or -1 with err set */
    int (*live_add)(void *ud, const char *tag, const uint8_t id[16], const char *email,
                    uint32_t level, uint32_t alter_id, char *err, size_t errlen);
    int (*live_remove)(void *ud, const char *tag, const char *email, char *err,
                       size_t errlen);
    void (*sys)(void *ud, struct lr_v2api_sys *out);
};

/* A call's outcome: status LR_GRPC_OK with the response message body[0,
 * len) (malloc'd; NULL when len is 0), or another status with msg. */
struct lr_v2api_reply {
    int status;
    char msg[600];
    uint8_t *body;
    size_t len;
};

/* One unary call: path "/package.Service/Method", req the request message
 * (without the 5-byte prefix).  Free r->body after. */
void lr_v2api_call(const struct lr_v2api_env *env, const char *path, const uint8_t *req,
                   size_t n, struct lr_v2api_reply *r);

/* A unary request body (DATA of a stream) as gRPC frames it: exactly one
 * message, prefix (compressed flag 0, BE32 length) and that many bytes.
 * LR_GRPC_OK with *msg, *mlen; else a status, with msg set. */
int lr_grpc_unframe(const uint8_t *p, size_t n, const uint8_t **msg, size_t *mlen,
                    char *err, size_t errlen);

/* grpc-message's value: s percent-encoded as gRPC says (bytes outside
 * 0x20-0x7e, and '%'), cut to fit out[0, cap) whole. */
void lr_grpc_msg_encode(char *out, size_t cap, const char *s);

/* ------------------------------------------------------------ session */

struct lr_v2api_sess;

/* Streams at once per connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
#define LR_V2API_STREAMS 100

/* The server side of one HTTP/2 connection, for a peer named `peer` in
 * log lines.  NULL on ENOMEM. */
struct lr_v2api_sess *lr_v2api_sess_new(const struct lr_v2api_env *env, const char *peer);
void lr_v2api_sess_free(struct lr_v2api_sess *s);
/* The client's bytes (all taken): 0, or -1 when the connection must close
 * (not HTTP/2, a protocol error; logged). */
int lr_v2api_sess_input(struct lr_v2api_sess *s, const uint8_t *p, size_t n);
/* Bytes due to the client (*n of them; NULL/0 when none), then
 * lr_v2api_sess_sent with how many went. */
const uint8_t *lr_v2api_sess_output(struct lr_v2api_sess *s, size_t *n);
void lr_v2api_sess_sent(struct lr_v2api_sess *s, size_t n);
/* Output waiting that the client has not read: stop reading its input
 * until this is 0 (a client that sends without reading). */
size_t lr_v2api_sess_backlog(const struct lr_v2api_sess *s);
/* 1 when it has had its preface and no stream is open. */
int lr_v2api_sess_idle(const struct lr_v2api_sess *s);
/* 1 once the client's preface and SETTINGS came. */
int lr_v2api_sess_ready(const struct lr_v2api_sess *s);
/* Request bytes held by every session at once (for tests: 0 when none
 * is open). */
size_t lr_v2api_held_all(void);
/* GOAWAY (NO_ERROR): finish what is open, take no more. */
void lr_v2api_sess_goaway(struct lr_v2api_sess *s);
/* 1 when nothing is left to read or write. */
int lr_v2api_sess_over(struct lr_v2api_sess *s);

/* ------------------------------------------------------------ server */

struct lr_v2api;
struct lr_daemon;

/* Listens on host:port and serves on loop (the main thread's), acting on
 * d: NULL, with err set, when it cannot. */
struct lr_v2api *lr_v2api_start(struct ev_loop *loop, struct lr_daemon *d, const char *host,
                                uint16_t port, char *err, size_t errlen);
/* 1 if a listens on host:port. */
int lr_v2api_listens_on(const struct lr_v2api *a, const char *host, uint16_t port);
/* Closes the listener and every connection. */
void lr_v2api_stop(struct lr_v2api *a);

#endif
