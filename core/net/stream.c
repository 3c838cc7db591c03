/*
 * Plain TCP, the bottom of every stream stack (stream.h): recv / send /
 * shutdown on the side's socket, nothing more.
 */
#include <errno.h>
#include <sys/socket.h>

#include "net/stream.h"

static ssize_t tcp_read(struct lr_stream *l, void *buf, size_t n)
{
    ssize_t r = recv(l->fd, buf, n, 0);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return -EAGAIN;
    return -errno;
}

static ssize_t tcp_write(struct lr_stream *l, const void *buf, size_t n)
{
    ssize_t r = send(l->fd, buf, n, MSG_NOSIGNAL);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return -EAGAIN;
    if (errno == EINTR)
        return 0;
    return -errno;
}

static void tcp_shutdown(struct lr_stream *l)
{
    shutdown(l->fd, SHUT_WR);
}

const struct lr_stream_ops lr_stream_tcp = {
    .name = "tcp",
    .read = tcp_read,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
};
