/*
 * luaray.metrics (design.md 7): GET /metrics in the Prometheus text
 * exposition format (0.0.4), served by the main thread's loop.
 */
#ifndef LR_METRICS_H
#define LR_METRICS_H

#include <ev.h>
#include <stdint.h>

struct lr_metrics;

/* The commit the binary was built from (main.c sets it). */
extern const char *lr_metrics_commit;

/* Listens on host:port and serves on loop: NULL, with err set, when it
 * cannot. */
struct lr_metrics *lr_metrics_start(struct ev_loop *loop, const char *host, uint16_t port,
                                    const char *token, char *err, size_t errlen);
/* 1 if m listens on host:port (the token may change in place). */
int lr_metrics_listens_on(const struct lr_metrics *m, const char *host, uint16_t port);
/* A new token (NULL: none) for the requests from now on; -1 on ENOMEM. */
int lr_metrics_set_token(struct lr_metrics *m, const char *token);
/* Closes the listener and every request in progress. */
void lr_metrics_stop(struct lr_metrics *m);

/* The exposition text (malloc'd, *len its size); NULL on ENOMEM.  Also
 * what a test reads without a socket. */
char *lr_metrics_render(size_t *len);

#endif
