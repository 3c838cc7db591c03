/*
 * The stream seam: each side of a connection reads and writes through a
 * small ops table, so TLS, WebSocket or gRPC can sit between the socket
 * and the VMess codec without the relay or the codec knowing (HAProxy's
 * xprt_ops is the shape).  Plain TCP (lr_stream_tcp) is the first: each
 * call is the one system call it replaces.
 *
 * Readiness stays with the relay's watchers on the side's fd; a layer that
 * needs the other direction to make progress (a TLS handshake reading when
 * the relay wants to write) says so with LR_STREAM_WANT_READ/WRITE in
 * `want`, and the relay arms that watcher too.
 */
#ifndef LR_STREAM_H
#define LR_STREAM_H

#include <stddef.h>
#include <sys/types.h>

struct lr_side;

enum {
    LR_STREAM_WANT_READ = 1,     /* progress needs the socket readable */
    LR_STREAM_WANT_WRITE = 2     /* progress needs the socket writable */
};

struct lr_stream_ops {
    const char *name;
    /* > 0 bytes read, 0 end of stream, -EAGAIN nothing now, other -errno */
    ssize_t (*read)(struct lr_side *s, void *buf, size_t n);
    /* > 0 bytes taken, -EAGAIN none now, other -errno (-EPIPE: reset) */
    ssize_t (*write)(struct lr_side *s, const void *buf, size_t n);
    /* ends the write direction (a FIN, a close_notify, a close frame) */
    void (*shutdown)(struct lr_side *s);
};

/* Plain TCP on the side's socket. */
extern const struct lr_stream_ops lr_stream_tcp;

#endif
