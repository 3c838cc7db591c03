/*
 * A stand-in for net/conn.c so the SOCKS5 and HTTP inbounds' handshake
 * code (core/inbound/socks.c, http.c) runs without libev or sockets: the
 * client's bytes arrive in fuzzer-chosen reads, replies are recorded, and
 * lr_conn_close frees the connection exactly as the real one does, so a
 * use after close is an AddressSanitizer report.
 */
#ifndef LR_FUZZ_CONN_H
#define LR_FUZZ_CONN_H

#include "inbound/inbound.h"

struct fz_sim {
    const uint8_t *in;       /* the client's bytes */
    size_t len, pos;
    uint64_t seed;           /* read splits */
    unsigned sends;          /* replies queued so far */
    unsigned fail_send;      /* the n-th reply (1-based) fails; 0 never */
    struct lr_conn *c;       /* NULL once closed */
    int dialed, relay, udp_assoc;
    struct lr_dest dst;      /* what the inbound asked to dial */
    size_t head_len;         /* up.in bytes at the dial */
    uint8_t head[LR_BUF_CAP];
};

extern struct fz_sim fz_sim;

/* A connection in the handshake state with an empty up.in buffer. */
struct lr_conn *fz_conn_new(struct lr_inbound *ib,
                            const struct lr_ib_ops *ops);
/* Feeds the client's bytes until the inbound closes or dials (bounded).
 * after: 0 leave it, 1 call `connected`, 2 call `dial_failed`, 3 call
 * `early_reply` (sniffing) and then `connected` or, with then_fail,
 * `dial_failed`; then the connection is closed if still open. */
void fz_conn_run(int after, int err, int then_fail);

#endif
