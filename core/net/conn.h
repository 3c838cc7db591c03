/*
 * A proxied connection: the client side (accepted by an inbound), the
 * remote side (dialled by an outbound), and two pipes between them.  The
 * pipes move bytes with backpressure; each end of a pipe may transform
 * them through a VMess body codec (lr_body) or pass them raw.
 */
#ifndef LR_CONN_H
#define LR_CONN_H

#include <ev.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/stats.h"
#include "net/dns.h"
#include "net/sock.h"
#include "net/stream.h"
#include "vmess/vmess.h"

struct lr_gen;
struct lr_inbound;
struct lr_outbound;
struct lr_pol;
struct lr_conn_owner;

/* Destination of a connection, as the inbound decoded it. */
struct lr_dest {
    uint8_t network;         /* LR_NET_* */
    uint8_t atyp;            /* LR_ATYP_* (vmess numbering) */
    uint16_t port;
    uint8_t ip[16];          /* atyp IPv4/IPv6 */
    char host[256];          /* domain, or the IP as text */
    uint8_t sniff_proto;     /* LR_PROTO_* from the first client bytes */
    char sniff_host[256];    /* the name sniffed (SNI / Host), or "" */
};


/* One worker's connections: its loop, the live connections and the
 * deferred pumps (lr_conn_kick). */
struct lr_loop {
    struct ev_loop *loop;
    struct lr_conn *conns;       /* all live connections */
    struct lr_conn *kicks;       /* connections to pump again (deferred) */
    ev_prepare kick_w;
    uint32_t nconns;
    uint64_t opened;             /* connections ever opened (the idle trim) */
    uint64_t next_conn_id;
    uint32_t id_step;            /* connection ids: worker + k * id_step */
    uint32_t stats_worker;       /* its values' index in base/stats.h */
    const struct lr_conn_owner *owner;
    struct lr_linger *lingering; /* closed sockets waiting for the peer's end */
    uint32_t nlinger;
};

/* What the layer above does at a connection's events (one table per loop,
 * dispatch/dispatch.c's).  Every member is set. */
struct lr_conn_owner {
    /* about to relay (the connect hook) */
    void (*relaying)(struct lr_conn *c);
    /* `bytes` more payload moved for a connection with c->pol set: 1 to
     * close it (over quota) */
    int (*charge)(struct lr_conn *c, uint64_t bytes);
    /* before reading for a connection with c->pol set: seconds to wait
     * (rate limit), <= 0 none */
    double (*wait)(struct lr_conn *c, double now);
    /* LR_CS_SNIFF: client bytes came, or the wait for them ended */
    void (*sniff_readable)(struct lr_conn *c);
    void (*sniff_deadline)(struct lr_conn *c);
    /* c closes: before its sockets do (the close hook, the policy), and
     * after everything else, just before it is freed (the access line,
     * the counts, the generation it held) */
    void (*closing)(struct lr_conn *c);
    void (*closed)(struct lr_conn *c);
};


enum lr_conn_state {
    LR_CS_HANDSHAKE = 1, /* the inbound reads its protocol header */
    LR_CS_DRAIN,         /* bad VMess header: read and discard until timeout */
    LR_CS_DIAL,          /* routing, resolving, connecting */
    LR_CS_RELAY,
    LR_CS_SNIFF,         /* waiting for the first client bytes to sniff */
    LR_CS_LINGER         /* FIN sent after a drain, waiting for the peer */
};

struct lr_conn;

struct lr_side {
    int fd;              /* -1 for a virtual side (see sink) */
    ev_io rio, wio;
    struct lr_stream tcp; /* the socket, the bottom of the stream stack */
    struct lr_stream *top; /* the stack's top: &tcp, or a layer above it */
    uint8_t dgram;       /* datagrams: one unit per datagram */
    /* a virtual side (SOCKS5 UDP association, Mux.Cool): bytes written to
     * it go to `sink`, which returns how many it took (a datagram sink
     * takes all or drops); `sink_end` replaces the write shutdown; `room`
     * is called when its pipe can take more input (to kick the feeder;
     * it must not pump anything itself) */
    size_t (*sink)(struct lr_conn *c, const uint8_t *data, size_t len);
    void (*sink_end)(struct lr_conn *c);
    void (*room)(struct lr_conn *c);
    /* a virtual stream side whose pipe encodes (a VMess inbound on a gRPC
     * tunnel) gets the encoded bytes through `sink`, end chunk included;
     * `ctx` is the virtual side's owner state, for its callbacks */
    void *ctx;
};

/* A stream side's I/O through the top of its stack (net/stream.h). */
static inline ssize_t lr_side_read(struct lr_side *s, void *buf, size_t n)
{
    return s->top->ops->read(s->top, buf, n);
}

static inline ssize_t lr_side_write(struct lr_side *s, const void *buf, size_t n)
{
    return s->top->ops->write(s->top, buf, n);
}

static inline void lr_side_shutdown(struct lr_side *s)
{
    s->top->ops->shutdown(s->top);
}

/* Makes `fd` the bottom of side s's stack, plain TCP on top. */
static inline void lr_side_set_fd(struct lr_side *s, int fd)
{
    s->fd = fd;
    s->tcp.ops = &lr_stream_tcp;
    s->tcp.lower = NULL;
    s->tcp.fd = fd;
    s->tcp.want = 0;
    s->top = &s->tcp;
}

/* Puts layer l (its ops and state set) on top of side s's stack. */
static inline void lr_side_push(struct lr_side *s, struct lr_stream *l)
{
    l->lower = s->top;
    l->fd = s->fd;
    s->top = l;
}

/* One direction.  `in` holds bytes from the source; decoded payload that is
 * not yet encoded stays inside `in` at [pend_off, pend_off + pend_len). */
struct lr_pipe {
    struct lr_buf *in, *out;
    struct lr_body *dec, *enc;   /* NULL: raw */
    uint32_t pend_off, pend_len;
    uint8_t src_eof;     /* source finished (EOF or end chunk) */
    uint8_t end_written; /* end marker encoded */
    uint8_t closed;      /* destination's write side shut */
    uint8_t lazy_prefix; /* emit prefix only together with the first output */
    uint16_t prefix_len;
    uint8_t *prefix;     /* bytes to send before anything else */
    /* decodes something before the body (the VMess response header) */
    int (*pre)(struct lr_conn *c, const uint8_t *in, size_t len,
               size_t *consumed);
    /* optional, raw sources only: frames the bytes (the HTTP inbound's
     * request and its body).  Of the `len` unread bytes at `in`, returns
     * how many from the front go on and sets *used (>= that) to how many
     * it took; bytes taken but not going on are dropped.  -1 closes c. */
    ssize_t (*frame)(struct lr_conn *c, const uint8_t *in, size_t len,
                     size_t *used);
    uint64_t bytes;      /* payload relayed */
};

struct lr_ib_ops {
    void (*readable)(struct lr_conn *c);     /* handshake data arrived */
    /* optional: reply success before dialling, so the client sends its
     * first bytes for sniffing; -1 if it closed c */
    int (*early_reply)(struct lr_conn *c);
    void (*connected)(struct lr_conn *c);    /* outbound ready */
    void (*dial_failed)(struct lr_conn *c, int err);
    /* optional: the remote ended (closed, reset, or a VMess response
     * header that did not decode) before a byte came back for the client;
     * 1 if the inbound answered and closed c (an HTTP request: 502), 0 to
     * end the relay as usual */
    int (*no_response)(struct lr_conn *c, const char *reason);
    void (*free)(struct lr_conn *c);
    /* the client's bytes after the handshake are plain relay input: keep
     * reading them (into the up pipe, up to its buffer) while dialling */
    uint8_t read_while_dialing;
    /* optional: called once a client without a front (TLS, transport) is
     * accepted, before any byte is read: an inbound that knows the
     * destination from the socket alone (tunnel, tproxy, redirect) */
    void (*accepted)(struct lr_conn *c);
};

struct lr_ob_ops {
    void (*dial)(struct lr_conn *c);
    void (*failed)(struct lr_conn *c);   /* optional: the dial failed */
    void (*free)(struct lr_conn *c);
    /* optional: the remote socket is readable or writable (EV_READ /
     * EV_WRITE) before the relay runs: the outbound's handshake above the
     * socket (TLS, an HTTP upgrade), after lr_conn_remote_attach */
    void (*remote_io)(struct lr_conn *c, int revents);
};

/* Resolving and connecting to a host, trying each address in turn. */
typedef void (*lr_dial_fn)(struct lr_conn *c, int fd);

struct lr_dial {
    ev_io io;
    int fd;
    int forbid_private;
    int naddrs, next;
    uint16_t port;
    lr_dial_fn done;
    struct lr_addr *addrs;       /* while dialling: the resolved addresses
                                    (freed once connected: an idle
                                    connection keeps none of them) */
};

struct lr_conn {
    struct lr_conn *prev, *next;
    uint64_t id;
    int state;
    struct lr_loop *lp;
    struct lr_gen *gen;          /* held until the connection closes */
    struct lr_inbound *ib;
    struct lr_outbound *ob;
    const struct lr_ib_ops *ibops;
    const struct lr_ob_ops *obops;
    void *ib_state, *ob_state;
    void *front;                 /* the outbound's front while it runs */
    struct lr_side cli, rem;
    struct lr_pipe up, down;     /* up: client -> remote */
    ev_timer timer;
    ev_tstamp t_start, t_last, deadline;
    double idle_timeout;
    struct lr_dns_req *dns;
    struct lr_addr src;          /* the client (after a PROXY header or X-Forwarded-For) */
    struct lr_addr peer;         /* the TCP peer */
    struct lr_dest dst;
    int32_t user;                /* daemon user index, -1 none */
    const char *reason;
    char fail_detail[300];
    struct lr_dial dial;
    const char *doom;            /* close at the next safe point */
    struct lr_pol *pol;          /* the owner's: the user's policy, once admitted */
    uint64_t charged;            /* payload bytes charged to it */
    ev_timer throttle;           /* rate limit: resume reading */
    uint8_t throttled;
    uint8_t dialed;              /* auth/route ran: close hook and policy */
    uint8_t sniffed;             /* sniffing done (or not wanted) */
    uint8_t replied;             /* the inbound's success reply went out */
    struct lr_conn *kick_next;   /* deferred pump queue (lr_conn_kick) */
    uint8_t kicked;
    uint8_t session;             /* a session inside a client connection */
    uint8_t peer_gone;           /* drained, and the client sent its FIN */
    uint8_t aborted;             /* lr_conn_abort: RSTs, no lingering */
    uint8_t no_linger;           /* an idle timeout: a plain close, no lingering */
    uint8_t counted;             /* st[] set: its traffic is counted */
    int32_t st[6];               /* counter slots: user, inbound, outbound
                                    (up, down each; -1 none) */
    uint64_t st_up, st_down;     /* payload bytes counted so far */
    uint8_t handoff;             /* the next lr_conn_read_client returns what
                                    up.in holds (a front handed c over) */
    uint8_t xudp;                /* an XUDP client stream (inbound/xudp_client.c):
                                    its VMess request says command 3, its body
                                    carries Mux.Cool frames the owner makes */
};

/* A new connection of loop lp: a client socket fd, or (fd < 0) a virtual
 * client whose datagrams or stream bytes are pushed in (lr_conn_push_*)
 * and whose replies leave through cli.sink (the sessions of a SOCKS5 UDP
 * association, the streams of a Mux.Cool connection).  Its handshake must
 * end within handshake_timeout of now; NULL on ENOMEM.  The owner layer
 * fills in what it means (dispatch/dispatch.c). */
struct lr_conn *lr_conn_new(struct lr_loop *lp, int fd, const struct lr_addr *src,
                            const struct lr_ib_ops *ops, double handshake_timeout,
                            double idle_timeout);
/* Queues one datagram from the virtual client; dropped when the previous
 * one is still waiting.  Returns -1 if it closed c. */
int lr_conn_push_datagram(struct lr_conn *c, const uint8_t *data, size_t len);
/* Appends stream bytes from a virtual client; returns how many fit. */
size_t lr_conn_push_stream(struct lr_conn *c, const uint8_t *data, size_t len);
/* Appends bytes to the down pipe's input (a virtual remote feeding the
 * client); returns how many fit. */
size_t lr_conn_push_down(struct lr_conn *c, const uint8_t *data, size_t len);
/* Room left in the down pipe's input (compacting first), for all-or-
 * nothing pushes of framed data. */
size_t lr_conn_down_room(struct lr_conn *c);
/* The virtual client (up) or virtual remote (down) finished sending. */
void lr_conn_push_eof(struct lr_conn *c, int down);
void lr_conn_dump(struct lr_loop *lp);
/* Closes the sockets still lingering after their connections closed
 * (lr_conn_close): at the loop's end. */
void lr_loop_close_lingering(struct lr_loop *lp);

/* Closes the connections being drained or lingering after a refused
 * handshake (the daemon is stopping). */
void lr_conn_close_draining(struct lr_loop *lp);
/* Out of descriptors or at an inbound's cap: closes up to `max` refused
 * handshakes held to their deadline whose client already sent its FIN
 * (of inbound `ib`, or any when NULL), before their deadline; with no
 * `ib`, sockets lingering after their close (lr_conn_close) go first.
 * Returns how many it closed. */
int lr_conn_shed(struct lr_loop *lp, struct lr_inbound *ib, int max);
/* Connections open in the process, every worker thread counted. */
size_t lr_conn_count(void);
/* Closes c at the next safe point (from code that must not free it). */
void lr_conn_doom(struct lr_conn *c, const char *reason);
/* Pumps c again from the loop (never re-entrantly). */
void lr_conn_kick(struct lr_conn *c);
/* Runs the queued kicks; called by the daemon's prepare watcher. */
void lr_conn_run_kicks(struct lr_loop *lp);
/* Closes both sides, logs the access line and frees the connection. */
void lr_conn_close(struct lr_conn *c, const char *reason);
/* The same, with an RST on each socket (a cut stream must not look like a
 * complete one). */
void lr_conn_abort(struct lr_conn *c, const char *reason);
/* Reads from the client into up.in during the handshake: > 0 bytes read,
 * 0 EOF, -EAGAIN nothing yet, other < 0 error. */
ssize_t lr_conn_read_client(struct lr_conn *c);
/* Queues bytes for the client (handshake replies); -1 if it closed c. */
int lr_conn_send_client(struct lr_conn *c, const void *data, size_t len);
/* Writes `data` to the client now, best effort (what does not fit is
 * lost): a protocol error reply just before a close. */
void lr_conn_send_now(struct lr_conn *c, const void *data, size_t len);
/* Sends what is queued for the client and `data` (best effort, without
 * waiting), then closes: for protocol error replies. */
void lr_conn_reply_close(struct lr_conn *c, const void *data, size_t len,
                         const char *reason);
/* Bad VMess header: stay silent, discard input, close at the deadline. */
void lr_conn_drain(struct lr_conn *c, const char *reason);
/* The first client bytes after the handshake, for sniffing: 1 and
 * data and n set (a VMess chunk decoded in place when the client side is
 * framed: *framed), 0 when nothing is there yet, 2 when the buffer is half
 * full and still holds no whole chunk, -1 if it closed c. */
int lr_conn_peek(struct lr_conn *c, const uint8_t **data, size_t *n, int *framed);
/* Outbounds call these when the remote side is ready or failed. */
void lr_conn_remote_ready(struct lr_conn *c, int fd, int dgram);
/* The remote socket as c->rem (its watchers set, not started), for an
 * outbound that runs a handshake of its own on it first (ob_ops.remote_io)
 * and then calls c->ibops->connected. */
void lr_conn_remote_attach(struct lr_conn *c, int fd, int dgram);
void lr_conn_dial_failed(struct lr_conn *c, int err, const char *reason);
/* Inbounds call this from `connected` once their reply is queued. */
void lr_conn_start_relay(struct lr_conn *c);
/* Resolves `host` and connects to `port`; calls `done` with the connected
 * fd, or fails the connection (lr_conn_dial_failed).  With forbid_private
 * a destination in a loopback/private/link-local range is refused. */
void lr_conn_connect(struct lr_conn *c, const char *host, uint16_t port,
                     int family, int forbid_private, lr_dial_fn done);

/* Arms the connection timer for `seconds` from now (dial phases). */
void lr_conn_set_deadline(struct lr_conn *c, double seconds);

/* Adds what moved since the last call to the connection's traffic
 * counters (the relay after each pump, and the close). */
static inline void lr_conn_count_traffic(struct lr_conn *c)
{
    uint64_t du = c->up.bytes - c->st_up, dd = c->down.bytes - c->st_down;
    if (!c->counted || (!du && !dd))
        return;
    uint32_t w = c->lp->stats_worker;
    for (int i = 0; i < 6; i += 2) {
        if (du)
            lr_stats_add(w, c->st[i], du);
        if (dd)
            lr_stats_add(w, c->st[i + 1], dd);
    }
    c->st_up = c->up.bytes;
    c->st_down = c->down.bytes;
}

#endif
