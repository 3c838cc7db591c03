/*
 * An HTTP/1.1 response parser (RFC 9112) for luaray.http.request: fed the
 * bytes a server sends, in pieces of any size, it gives the status, the
 * header fields (names lower-cased) and the body, de-chunked.  Pure: no
 * sockets, no loop; net/httpc.c drives it, spec/fuzz/targets/
 * fuzz_http_resp.c fuzzes it.
 *
 * Bounds: the head (status line and fields, and any 1xx heads before it)
 * and the trailer fields at most head_max bytes, a chunk-size line at most
 * 1 KiB, the body at most body_max bytes: whatever a server sends, the
 * parser holds at most head_max + body_max bytes and a few hundred more.
 */
#ifndef LR_HTTP_RESP_H
#define LR_HTTP_RESP_H

#include <stddef.h>
#include <stdint.h>

#define LR_HTTP_HEAD_MAX (16u << 10)
#define LR_HTTP_BODY_MAX (8u << 20)

struct lr_http_resp {
    /* set by lr_http_resp_init */
    size_t head_max;
    uint64_t body_max;
    int no_body;              /* the request was HEAD: a response has no body */
    /* the answer, once lr_http_resp_feed returned LR_OK */
    int status;               /* 200 ...; the final (non-1xx) status */
    char *fields;             /* "name: value\n" per field, names lower case */
    size_t fields_len;
    char *body;               /* body_len bytes (NUL after them), or NULL */
    size_t body_len;
    /* state */
    int state;
    const char *why;          /* what was wrong (a static string) */
    char *line;               /* the head, or a chunk-size line, being read */
    size_t line_len, line_cap;
    size_t head_total;        /* head bytes so far (1xx heads included) */
    size_t body_cap;
    uint64_t left;            /* Content-Length or chunk bytes still to come */
    int chunked, has_length;
};

/* An empty parser: head_max 0 and body_max 0 mean the defaults above. */
void lr_http_resp_init(struct lr_http_resp *r, size_t head_max, uint64_t body_max,
                       int no_body);
/* Frees what the parser holds (the fields and body too). */
void lr_http_resp_deinit(struct lr_http_resp *r);

/* Takes n bytes at p: LR_OK once the response is complete (*used: the
 * bytes it took; the rest belong to no one), LR_AGAIN while more are
 * needed (all n taken), or LR_EINVAL (malformed), LR_ETOOBIG (over a
 * bound), LR_ENOMEM, with lr_http_resp_why saying what. */
int lr_http_resp_feed(struct lr_http_resp *r, const uint8_t *p, size_t n, size_t *used);
/* The server closed: LR_OK when that ends the response (a body delimited
 * by the close, or a response already complete), else LR_EINVAL
 * ("connection closed before the end of the response"). */
int lr_http_resp_eof(struct lr_http_resp *r);
/* Why the last call failed ("" when it did not). */
const char *lr_http_resp_why(const struct lr_http_resp *r);

#endif
