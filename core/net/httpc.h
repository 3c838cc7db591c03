/*
 * A small HTTP/1.1 client on the loop (luaray.http.request, design.md 7):
 * one request per connection ("Connection: close"), http:// or https://,
 * names resolved by net/dns.h, a non-blocking connect tried on each address
 * in turn, TLS by OpenSSL (the peer verified against the system store, or
 * an extra CA file, unless `insecure`), one deadline for the whole request,
 * the response read by net/http_resp.h within its bounds.
 *
 * The result is always delivered from the loop, never from inside
 * lr_httpc_start.  Used by the main thread only (daemon/control.c); the TLS
 * contexts it caches are that thread's.
 */
#ifndef LR_HTTPC_H
#define LR_HTTPC_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

struct lr_httpc_opts {
    const char *method;          /* "GET", "POST", ... (a token) */
    const char *url;             /* http(s)://host[:port][/path][?query] */
    const char *headers;         /* "Name: value\r\n" lines, or NULL */
    size_t headers_len;
    const char *body;            /* sent with Content-Length, or NULL */
    size_t body_len;
    double timeout;              /* seconds for everything; <= 0: 10 */
    uint64_t max_body;           /* 0: 8 MiB */
    int insecure;                /* https: do not verify the server */
    const char *ca;              /* https: a PEM CA file besides the system store */
};

struct lr_httpc_result {
    const char *err;             /* NULL on success, else what failed */
    int status;
    const char *fields;          /* "name: value\n" lines, names lower case */
    size_t fields_len;
    const char *body;
    size_t body_len;
};

struct lr_httpc;

/* Borrowed: `r` and what it points to are valid during the call only.
 * The request is freed right after the callback returns. */
typedef void (*lr_httpc_fn)(void *ud, const struct lr_httpc_result *r);

/* Starts a request: the handle, or NULL with err set (a bad URL, method or
 * header; out of memory).  Every string of `o` is copied. */
struct lr_httpc *lr_httpc_start(struct ev_loop *loop, const struct lr_httpc_opts *o,
                                lr_httpc_fn cb, void *ud, char *err, size_t errlen);
/* The callback will not be called; everything is freed now. */
void lr_httpc_cancel(struct lr_httpc *h);
/* Frees the cached TLS contexts (at exit). */
void lr_httpc_shutdown(void);

#endif
