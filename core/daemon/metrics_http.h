/*
 * The request side of luaray.metrics' HTTP server, pure (no socket, no
 * loop): what daemon/metrics.c answers to the bytes a client sent.
 */
#ifndef LR_METRICS_HTTP_H
#define LR_METRICS_HTTP_H

#include <stddef.h>

#define LR_MH_HEAD_MAX 8192      /* a request head longer than this: 431 */

enum lr_mh_what { LR_MH_METRICS = 1, LR_MH_ROOT };

struct lr_mh_req {
    int status;                  /* the answer: 200, 400, 401, 404, 405, 431 */
    int head_only;               /* HEAD: no body */
    int what;                    /* status 200: LR_MH_* */
};

/* Reads the request in buf[0..len) (what came so far, at most
 * LR_MH_HEAD_MAX bytes kept).  0 when the head is not complete yet (read
 * more), else 1 with *r set.  token: the bearer token requests must carry
 * (compared in constant time), or NULL. */
int lr_mh_parse(const char *buf, size_t len, const char *token, struct lr_mh_req *r);

#endif
