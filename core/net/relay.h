/*
 * What the files of net/ share about a connection's relay (not for
 * outside net/: conn.h is the interface).
 */
#ifndef LR_NET_RELAY_H
#define LR_NET_RELAY_H

#include "net/conn.h"

#define CONN_OF(w, field) \
    ((struct lr_conn *)((char *)(w) - offsetof(struct lr_conn, field)))

/* A pipe's input buffer, taken from the free list if it has none. */
int lr_pipe_ensure_in(struct lr_pipe *p);
/* Moves what can move from src through p to dst; -1 if c was closed. */
int lr_relay_pump(struct lr_conn *c, struct lr_pipe *p, struct lr_side *src,
                  struct lr_side *dst);
/* Writes what p->out holds to dst; -1 if c was closed. */
int lr_relay_flush(struct lr_conn *c, struct lr_pipe *p, struct lr_side *dst);
/* Starts or stops each side's reads (room, backpressure, rate limit). */
void lr_relay_update_reads(struct lr_conn *c);
int lr_relay_charge(struct lr_conn *c);
void lr_relay_side_readable(struct lr_conn *c, struct lr_pipe *p,
                            struct lr_side *src, struct lr_side *dst);
void lr_relay_side_writable(struct lr_conn *c, struct lr_pipe *p,
                            struct lr_side *src, struct lr_side *dst);
/* Client bytes while the outbound connects (read_while_dialing). */
void lr_relay_dial_read(struct lr_conn *c);
void lr_relay_throttle_cb(struct ev_loop *loop, ev_timer *w, int revents);

#endif
