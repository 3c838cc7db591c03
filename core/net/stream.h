/*
 * The stream seam: each side of a connection reads and writes through a
 * stack of layers (struct lr_stream), so TLS, WebSocket or gRPC can sit
 * between the socket and the VMess codec without the relay or the codec
 * knowing (HAProxy's xprt_ops is the shape).  The bottom layer is the
 * socket itself, plain TCP (lr_stream_tcp), embedded in the side; a layer
 * above holds its own state after a struct lr_stream and reads and writes
 * through `lower`.  Plain TCP costs what it replaces: one system call per
 * read or write, through one indirect call.
 *
 * Readiness stays with the relay's watchers on the side's socket; a layer
 * that needs the socket in the other direction to make progress (a TLS
 * handshake that must read while the relay wants to write) says so in the
 * top layer's `want` (LR_STREAM_WANT_*), and the relay arms that watcher.
 */
#ifndef LR_STREAM_H
#define LR_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
    LR_STREAM_WANT_READ = 1,     /* progress needs the socket readable */
    LR_STREAM_WANT_WRITE = 2     /* progress needs the socket writable */
};

struct lr_stream;

struct lr_stream_ops {
    const char *name;
    /* > 0 bytes read, 0 end of stream, -EAGAIN nothing now, other -errno */
    ssize_t (*read)(struct lr_stream *l, void *buf, size_t n);
    /* > 0 bytes taken, 0 interrupted (call again), -EAGAIN none now, other
     * -errno (-EPIPE, -ECONNRESET: the peer is gone) */
    ssize_t (*write)(struct lr_stream *l, const void *buf, size_t n);
    /* ends the write direction (a FIN, a close_notify, a close frame) */
    void (*shutdown)(struct lr_stream *l);
    /* frees a layer above the socket (its state; not its lower layers) */
    void (*free)(struct lr_stream *l);
    /* optional: bytes this layer (or one below) holds, already read from
     * the socket, that a read would return without the socket becoming
     * readable again (a TLS record read whole, a WebSocket frame) */
    size_t (*pending)(struct lr_stream *l);
};

/* One layer of a side's stack. */
struct lr_stream {
    const struct lr_stream_ops *ops;
    struct lr_stream *lower;     /* NULL: this is the socket */
    int fd;                      /* the side's socket */
    uint8_t want;                /* LR_STREAM_WANT_* (the top layer's counts) */
};

/* Plain TCP: the side's socket. */
extern const struct lr_stream_ops lr_stream_tcp;

#endif
