/*
 * The relay, per direction (struct lr_pipe): read the source into `in`;
 * decode one unit in place (a VMess chunk, or whatever raw bytes arrived);
 * encode it into `out` as room allows; write `out` to the destination.
 * Backpressure: the source is read only while `in` has room and no decoded
 * payload is waiting for room in `out`; a short write stops the decoding
 * until the destination drains.  Buffers come from the free list and go
 * back as soon as they are empty, so an idle connection holds none.
 *
 * Every path that can close the connection returns -1 so its caller stops
 * touching it.  Payload moved is charged to the connection's owner
 * (lr_conn_owner: quotas) and its rate limit asked before reading.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/relay.h"

#define PIECE 16384 /* our writers' payload per chunk */
#define UDP_LINGER 2.0 /* seconds a UDP session waits for replies after its client ended */

static int fatal(struct lr_conn *c, const char *reason)
{
    lr_conn_close(c, reason);
    return -1;
}

static int cut(struct lr_conn *c, const char *reason)
{
    lr_conn_abort(c, reason);
    return -1;
}

/* Encodes as much pending payload as `out` can take. */
static int emit(struct lr_conn *c, struct lr_pipe *p, struct lr_side *src,
                struct lr_side *dst)
{
    if (dst->sink && !dst->dgram && !p->enc && !p->prefix) {
        /* a virtual stream: it takes what it can, and kicks us for more
         * (an encoding pipe goes through `out` to it: lr_relay_flush) */
        while (p->pend_len) {
            size_t n = dst->sink(c, p->in->data + p->pend_off, p->pend_len);
            if (n == 0)
                return 1;
            p->pend_off += (uint32_t)n;
            p->pend_len -= (uint32_t)n;
            p->bytes += n;
            c->t_last = ev_now(c->lp->loop);
        }
        return 0;
    }
    if (dst->dgram) {
        /* one decoded unit = one datagram; a full socket drops it */
        if (dst->sink)
            dst->sink(c, p->in->data + p->pend_off, p->pend_len);
        else if (p->pend_len && send(dst->fd, p->in->data + p->pend_off,
                                     p->pend_len, MSG_NOSIGNAL) < 0 &&
                 errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != ECONNREFUSED)
            return fatal(c, "send failed");
        p->bytes += p->pend_len;
        p->pend_len = 0;
        return 0;
    }
    if (!p->out && !(p->out = lr_buf_get()))
        return fatal(c, "out of memory");
    if (p->prefix && p->pend_len) {
        lr_buf_compact(p->out);
        if (lr_buf_room(p->out) < p->prefix_len)
            return 0;
        memcpy(lr_buf_tail(p->out), p->prefix, p->prefix_len);
        p->out->wr += p->prefix_len;
        free(p->prefix);
        p->prefix = NULL;
    }
    while (p->pend_len) {
        size_t room = lr_buf_room(p->out), piece, w = 0;
        if (room < 4096 && p->out->rd) {
            lr_buf_compact(p->out);
            room = lr_buf_room(p->out);
        }
        const uint8_t *data = p->in->data + p->pend_off;
        if (!p->enc) {
            piece = p->pend_len < room ? p->pend_len : room;
            if (!piece)
                return 0;
            memcpy(lr_buf_tail(p->out), data, piece);
            w = piece;
        } else {
            size_t over = lr_body_max_wire(p->enc, 0);
            size_t maxp = lr_body_max_payload(p->enc);
            if (room <= over)
                return 0;
            piece = room - over;
            if (piece > PIECE && !src->dgram)
                piece = PIECE;
            if (piece > maxp)
                piece = maxp;
            if (piece > p->pend_len)
                piece = p->pend_len;
            /* a datagram must stay one chunk: wait for room */
            if (src->dgram && piece < p->pend_len) {
                if (p->pend_len > maxp) { /* cannot ever fit: drop it */
                    p->pend_len = 0;
                    return 0;
                }
                return 0;
            }
            int rc = lr_body_seal(p->enc, data, piece, lr_buf_tail(p->out),
                                  room, &w);
            if (rc != LR_OK)
                return fatal(c, "encode failed");
        }
        p->out->wr += (uint32_t)w;
        p->pend_off += (uint32_t)piece;
        p->pend_len -= (uint32_t)piece;
        p->bytes += piece;
    }
    return 0;
}

/* The remote ended before a byte of response came down: 1 if the inbound
 * answered the client itself and closed c (lr_ib_ops.no_response). */
static int no_response(struct lr_conn *c, struct lr_pipe *p, const char *reason)
{
    return p == &c->down && !p->bytes && c->ibops->no_response &&
           c->ibops->no_response(c, reason);
}

/* Decodes the next unit from `in` (in place).  1 = a unit is pending,
 * 0 = need more input, -1 = connection closed. */
static int decode(struct lr_conn *c, struct lr_pipe *p)
{
    if (!p->in || lr_buf_len(p->in) == 0 || p->src_eof == 2)
        return 0;
    uint8_t *head = lr_buf_head(p->in);
    size_t len = lr_buf_len(p->in), consumed = 0, off = 0, plen = 0;
    if (p->pre) {
        int rc = p->pre(c, head, len, &consumed);
        if (rc == LR_AGAIN)
            return 0;
        if (rc != LR_OK)
            return no_response(c, p, "bad response header") ? -1
                   : fatal(c, "bad response header");
        p->pre = NULL;
        p->in->rd += (uint32_t)consumed;
        return decode(c, p);
    }
    int rc;
    if (!p->dec) {
        rc = LR_OK;
        consumed = plen = len;
        if (p->frame) {
            ssize_t k = p->frame(c, head, len, &consumed);
            if (k < 0)
                return fatal(c, "bad framing");
            if (consumed == 0)
                return 0;
            plen = (size_t)k;
        }
    } else {
        rc = lr_body_open_inplace(p->dec, head, len, &consumed, &off, &plen);
        if (rc == LR_AGAIN) {
            /* the source ended inside a chunk: the stream was cut, and a
             * clean FIN would pass the cut transfer off as complete */
            if (p->src_eof == 1)
                return cut(c, "stream cut inside a chunk");
            return 0;
        }
        if (rc < 0)
            return fatal(c, "bad chunk");
    }
    p->pend_off = p->in->rd + (uint32_t)off;
    p->pend_len = (uint32_t)plen;
    p->in->rd += (uint32_t)consumed;
    if (rc == LR_DONE) {
        /* the end chunk: anything after it is ignored */
        p->src_eof = 2;
        p->in->rd = p->in->wr;
    }
    return 1;
}

int lr_relay_flush(struct lr_conn *c, struct lr_pipe *p, struct lr_side *dst)
{
    struct ev_loop *loop = c->lp->loop;
    if (dst->fd < 0) {
        if (!dst->sink || dst->dgram)
            return 0;
        /* a virtual stream taking encoded bytes (VMess in a gRPC tunnel):
         * what it does not take now waits in `out`; it kicks us for more */
        while (p->out && lr_buf_len(p->out)) {
            size_t n = dst->sink(c, lr_buf_head(p->out), lr_buf_len(p->out));
            if (n == 0)
                return 0;
            p->out->rd += (uint32_t)n;
            c->t_last = ev_now(loop);
        }
        if (p->out) {
            lr_buf_put(p->out);
            p->out = NULL;
        }
        return 0;
    }
    while (p->out && lr_buf_len(p->out)) {
        ssize_t n = lr_side_write(dst, lr_buf_head(p->out), lr_buf_len(p->out));
        if (n > 0) {
            p->out->rd += (uint32_t)n;
            c->t_last = ev_now(loop);
            continue;
        }
        if (n == -EAGAIN) {
            /* a layer waiting for the peer rather than for room (its
             * HTTP/2 window) wants a read: the next read of that side
             * pumps this pipe again (retry_writer), not the socket's room */
            if ((dst->top->want & (LR_STREAM_WANT_READ | LR_STREAM_WANT_WRITE)) ==
                LR_STREAM_WANT_READ)
                ev_io_stop(loop, &dst->wio);
            else
                ev_io_start(loop, &dst->wio);
            return 0;
        }
        if (n == 0)
            continue; /* interrupted */
        return fatal(c, n == -EPIPE || n == -ECONNRESET ? "reset" : "write failed");
    }
    ev_io_stop(loop, &dst->wio);
    if (p->out) {
        lr_buf_put(p->out);
        p->out = NULL;
    }
    return 0;
}

int lr_relay_pump(struct lr_conn *c, struct lr_pipe *p, struct lr_side *src,
                struct lr_side *dst)
{
    if (c->doom)
        return fatal(c, c->doom);
    if (c->state != LR_CS_RELAY) {
        /* handshake replies only */
        return p->out ? lr_relay_flush(c, p, dst) : 0;
    }
    if (p->prefix && !p->lazy_prefix) {
        /* the VMess request header goes out at once, with or without
         * payload: server-first protocols must not wait for the client */
        if (!p->out && !(p->out = lr_buf_get()))
            return fatal(c, "out of memory");
        lr_buf_compact(p->out);
        memcpy(lr_buf_tail(p->out), p->prefix, p->prefix_len);
        p->out->wr += p->prefix_len;
        free(p->prefix);
        p->prefix = NULL;
    }
    /* Every complete unit of what was read is decoded into `out` before
     * one write takes them all: a send per chunk was 4 system calls per
     * read of 64 KiB.  `out` is written when it cannot take the pending
     * unit (or is full), and when there is nothing left to decode. */
    for (int round = 0;; round++) {
        int more = 1;
        if (!p->pend_len) {
            more = decode(c, p);
            if (more < 0)
                return -1;
        }
        int blocked = 0;
        if (p->pend_len && (blocked = emit(c, p, src, dst)) < 0)
            return -1;
        int idle = !p->pend_len && (!more || !p->in || lr_buf_len(p->in) == 0);
        if (!blocked && !idle && !p->pend_len && round < 255)
            continue; /* decode the next unit into the same write */
        if (lr_relay_flush(c, p, dst) < 0)
            return -1;
        if (blocked > 0)
            break; /* a virtual destination is full; it kicks us */
        /* stop when the destination is full (its write watcher resumes
         * us) or when there is nothing left to decode */
        if (p->out && lr_buf_len(p->out))
            break;
        if (idle || round >= 255)
            break;
    }
    if (p->in && lr_buf_len(p->in) == 0 && !p->pend_len) {
        lr_buf_put(p->in);
        p->in = NULL;
    }
    /* the server closed before its response header was complete: nothing
     * more can come, so the client must see the close */
    if (p->src_eof && p->pre)
        return no_response(c, p, "closed before the response header") ? -1
               : cut(c, "closed before the response header");
    if (p->src_eof && !p->pend_len && (!p->in || lr_buf_len(p->in) == 0) &&
        !p->end_written && no_response(c, p, "closed without a response"))
        return -1;
    /* the source ended and everything before it went out: end marker */
    if (p->src_eof && !p->pend_len && (!p->in || lr_buf_len(p->in) == 0) &&
        !p->pre && !p->end_written) {
        if (!dst->dgram && (!dst->sink || p->enc)) {
            if (!p->out && !(p->out = lr_buf_get()))
                return fatal(c, "out of memory");
            lr_buf_compact(p->out);
            if (p->prefix) { /* nothing was ever sent: header, then end */
                memcpy(lr_buf_tail(p->out), p->prefix, p->prefix_len);
                p->out->wr += p->prefix_len;
                free(p->prefix);
                p->prefix = NULL;
            }
            if (p->enc) {
                size_t w = 0;
                if (lr_body_seal_end(p->enc, lr_buf_tail(p->out),
                                     lr_buf_room(p->out), &w) != LR_OK)
                    return fatal(c, "encode failed");
                p->out->wr += (uint32_t)w;
            }
        }
        p->end_written = 1;
        if (lr_relay_flush(c, p, dst) < 0)
            return -1;
    }
    if (p->end_written && !p->out && !p->closed) {
        p->closed = 1;
        if (dst->sink_end) {
            dst->sink_end(c);
        } else if (!dst->dgram && dst->fd >= 0) {
            lr_side_shutdown(dst);
        } else if (dst->dgram && dst->fd >= 0 && c->idle_timeout > UDP_LINGER) {
            /* the client's side of a UDP session ended; the datagram
             * socket never will: replies still on their way get
             * UDP_LINGER seconds (v2ray's uplinkOnly), not the whole idle
             * timeout, which held 2 fds per ended session for 300 s */
            c->idle_timeout = UDP_LINGER;
            c->t_last = ev_now(c->lp->loop);
            ev_timer_stop(c->lp->loop, &c->timer);
            ev_timer_set(&c->timer, UDP_LINGER, 0.);
            ev_timer_start(c->lp->loop, &c->timer);
        }
    }
    /* a virtual source can send more now */
    if (src->room && !p->src_eof && !p->pend_len &&
        (!p->in || lr_buf_room(p->in) > 0 || p->in->rd > 0))
        src->room(c);
    if (lr_relay_charge(c))
        return fatal(c, "quota exceeded");
    if (c->doom)
        return fatal(c, c->doom);
    if (c->up.closed && c->down.closed)
        return fatal(c, "done");
    return 0;
}

/* Counts what c moved since the last call (the stats counters) and
 * charges it to c's owner (quotas): 1 when that puts c over its quota. */
int lr_relay_charge(struct lr_conn *c)
{
    lr_conn_count_traffic(c);
    if (!c->pol)
        return 0;
    uint64_t total = c->up.bytes + c->down.bytes;
    if (total == c->charged)
        return 0;
    int over = c->lp->owner->charge(c, total - c->charged);
    c->charged = total;
    return over;
}

/* Reads are wanted while a pipe's input has room and nothing waits. */
void lr_relay_update_reads(struct lr_conn *c)
{
    struct ev_loop *loop = c->lp->loop;
    struct lr_pipe *ps[2] = {&c->up, &c->down};
    struct lr_side *ss[2] = {&c->cli, &c->rem};
    if (c->state != LR_CS_RELAY)
        return;
    if (c->pol && !c->throttled) {
        double wait = c->lp->owner->wait(c, ev_now(loop));
        if (wait > 0) {
            /* the user's bucket is in debt: read nothing until it refills */
            c->throttled = 1;
            ev_timer_set(&c->throttle, wait, 0.);
            ev_timer_start(loop, &c->throttle);
        }
    }
    for (int i = 0; i < 2; i++) {
        struct lr_pipe *p = ps[i];
        int want = !p->src_eof && !p->pend_len &&
                   (!p->out || lr_buf_len(p->out) < LR_BUF_CAP / 2) &&
                   (!p->in || lr_buf_room(p->in) > 0 || p->in->rd > 0) &&
                   /* a datagram source reads one datagram per unit */
                   (!ss[i]->dgram || !p->in || lr_buf_len(p->in) == 0);
        if (ss[i]->fd < 0)
            continue;
        if (c->throttled)
            want = 0;
        int pipe_wants = want;
        /* a layer of the stream that needs to read to go on (a TLS
         * handshake, a WebSocket control frame) reads whatever the pipe */
        if (ss[i]->top && (ss[i]->top->want & LR_STREAM_WANT_READ))
            want = 1;
        if (want) {
            ev_io_start(loop, &ss[i]->rio);
            /* bytes a layer already took off the socket will not make it
             * readable again: read them now (when the pipe can take them;
             * else its room brings us back here) */
            struct lr_stream *t = ss[i]->top;
            if (pipe_wants && t && t->ops->pending && t->ops->pending(t))
                ev_feed_event(loop, &ss[i]->rio, EV_READ);
        } else {
            ev_io_stop(loop, &ss[i]->rio);
        }
    }
}

void lr_relay_throttle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lr_conn *c = CONN_OF(w, throttle);
    c->throttled = 0;
    lr_relay_update_reads(c);
}

/* A write to side s that waited for a read of s (lr_relay_flush: its
 * layer's want) may go on after one: 1 if it pumped, -1 if c closed.  A
 * plain socket never waits so (its writes wait on the write watcher). */
static int retry_writer(struct lr_conn *c, struct lr_side *s)
{
    struct lr_pipe *q = s == &c->cli ? &c->down : &c->up;
    struct lr_side *from = s == &c->cli ? &c->rem : &c->cli;
    if (s->fd < 0 || !q->out || !lr_buf_len(q->out) || ev_is_active(&s->wio))
        return 0;
    return lr_relay_pump(c, q, from, s) < 0 ? -1 : 1;
}

void lr_relay_side_readable(struct lr_conn *c, struct lr_pipe *p,
                          struct lr_side *src, struct lr_side *dst)
{
    if (lr_pipe_ensure_in(p) < 0) {
        lr_conn_close(c, "out of memory");
        return;
    }
    if (p->pend_len == 0 && lr_buf_room(p->in) < 2048)
        lr_buf_compact(p->in);
    size_t room = lr_buf_room(p->in);
    if (room == 0) {
        if (retry_writer(c, src) < 0)
            return;
        lr_relay_update_reads(c);
        return;
    }
    if (p->enc && !src->dgram) {
        /* an encoding pipe reads no more than its sealed chunks can take
         * in one `out` buffer: a full 64 KiB read grew by its chunks'
         * overhead past LR_BUF_CAP, and its tail took a second send */
        size_t over = lr_body_max_wire(p->enc, 0);
        size_t fit = LR_BUF_CAP - over * (LR_BUF_CAP / PIECE + 1);
        if (room > fit)
            room = fit;
    }
    ssize_t n;
    if (src->dgram) {
        /* one datagram (a connected UDP socket) */
        n = recv(src->fd, lr_buf_tail(p->in), room, 0);
        if (n < 0)
            n = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
    } else {
        n = lr_side_read(src, lr_buf_tail(p->in), room);
    }
    if (n > 0) {
        p->in->wr += (uint32_t)n;
        c->t_last = ev_now(c->lp->loop);
    } else if (n == 0) {
        if (!p->src_eof)
            p->src_eof = 1;
    } else if (n == -EAGAIN) {
        int r = retry_writer(c, src);
        if (r > 0)
            lr_relay_update_reads(c);
        return;
    } else {
        const char *why = n == -ECONNRESET ? "reset" : "read failed";
        if (!no_response(c, p, why))
            lr_conn_close(c, why);
        return;
    }
    if (lr_relay_pump(c, p, src, dst) < 0)
        return;
    if (retry_writer(c, src) < 0)
        return;
    lr_relay_update_reads(c);
}

void lr_relay_side_writable(struct lr_conn *c, struct lr_pipe *p,
                          struct lr_side *src, struct lr_side *dst)
{
    if (lr_relay_pump(c, p, src, dst) < 0)
        return;
    lr_relay_update_reads(c);
}

/* Client bytes while the outbound connects (read_while_dialing): buffered
 * in the up pipe for the relay to take; a full buffer or the client's end
 * stops the watcher, and lr_conn_start_relay's update_reads decides again. */
void lr_relay_dial_read(struct lr_conn *c)
{
    struct ev_loop *loop = c->lp->loop;
    struct lr_pipe *p = &c->up;
    if (p->src_eof || p->pend_len || lr_pipe_ensure_in(p) < 0) {
        ev_io_stop(loop, &c->cli.rio);
        return;
    }
    if (lr_buf_room(p->in) < 2048)
        lr_buf_compact(p->in);
    size_t room = lr_buf_room(p->in);
    if (room == 0) {
        ev_io_stop(loop, &c->cli.rio);
        return;
    }
    ssize_t n = lr_side_read(&c->cli, lr_buf_tail(p->in), room);
    if (n > 0) {
        p->in->wr += (uint32_t)n;
        c->t_last = ev_now(loop);
        if (lr_buf_room(p->in) == 0)
            ev_io_stop(loop, &c->cli.rio);
    } else if (n == 0) {
        p->src_eof = 1;
        ev_io_stop(loop, &c->cli.rio);
    } else if (n != -EAGAIN) {
        lr_conn_close(c, n == -ECONNRESET ? "reset" : "read failed");
    }
}


void lr_conn_start_relay(struct lr_conn *c)
{
    struct ev_loop *loop = c->lp->loop;
    if (c->lp->owner->relaying)
        c->lp->owner->relaying(c); /* the connect hook */
    c->state = LR_CS_RELAY;
    c->t_last = ev_now(loop);
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, c->idle_timeout, 0.);
    ev_timer_start(loop, &c->timer);
    /* bytes that came with the handshake, and anything queued */
    if (lr_relay_pump(c, &c->up, &c->cli, &c->rem) < 0)
        return;
    if (lr_relay_pump(c, &c->down, &c->rem, &c->cli) < 0)
        return;
    lr_relay_update_reads(c);
}


int lr_conn_peek(struct lr_conn *c, const uint8_t **data, size_t *n, int *framed)
{
    struct lr_pipe *p = &c->up;
    *framed = p->dec != NULL;
    if (p->dec) {
        if (!p->pend_len) {
            int r = decode(c, p);
            if (r < 0)
                return -1;
            if (r == 0)
                return (p->in && lr_buf_len(p->in) >= LR_BUF_CAP / 2) ? 2 : 0;
        }
        *data = p->in->data + p->pend_off;
        *n = p->pend_len;
        return 1;
    }
    if (!p->in || !lr_buf_len(p->in))
        return 0;
    *data = lr_buf_head(p->in);
    *n = lr_buf_len(p->in);
    return 1;
}
