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

/* The input of an inbound target (fuzz_socks.c, fuzz_http.c):
 *   ctrl(1) split_seed(1) err(1), then the client's bytes.
 * ctrl & 1: the inbound has an account ("user"/"pass");
 * (ctrl >> 2) & 3: after the dial 0 nothing, 1 connected, 2 failed,
 * 3 early reply (sniffing) then connected or failed;
 * ctrl >> 4: the n-th reply fails (0: none);
 * err & 3: which dial error (the target's table); err & 4: after an early
 * reply, the dial fails.  The other ctrl bits are the target's. */
struct fz_inbound {
    struct lr_inbound ib;    /* tag, type, fd -1, accounts */
    uint8_t ctrl;
    uint64_t seed;           /* read splits: split_seed + 1 */
    int after, err, then_fail;
    unsigned fail_send;
    const uint8_t *in;       /* the client's bytes */
    size_t len;
};

/* Reads the control bytes of `data` into `x` for an inbound of `type`
 * tagged `tag`, with the dial errors `errs`. */
void fz_inbound_parse(struct fz_inbound *x, const uint8_t *data, size_t size,
                      int type, char *tag, const int errs[4]);
/* Resets fz_sim for a run over x's bytes read in splits from `seed`, and
 * opens the connection (ops: the inbound's). */
void fz_inbound_start(struct fz_inbound *x, uint64_t seed,
                      const struct lr_ib_ops *ops);

/* A run in three steps.  fz_conn_feed: the client's bytes until the
 * inbound closes, dials or asks for a UDP association (bounded).
 * fz_conn_settle: after a dial, the outbound's answer: after 0 leave it,
 * 1 call `connected`, 2 call `dial_failed`, 3 call `early_reply`
 * (sniffing) and then `connected` or, with then_fail, `dial_failed`;
 * returns 1 when `connected` was called.  fz_conn_end: closes the
 * connection if still open.  fz_conn_run does all three. */
void fz_conn_feed(void);
int fz_conn_settle(int after, int err, int then_fail);
void fz_conn_end(void);
void fz_conn_run(int after, int err, int then_fail);

/* What every dialled destination of the SOCKS5 and HTTP inbounds holds:
 * TCP, a NUL-terminated, non-empty host, an IPv4, IPv6 or domain atyp. */
void fz_check_dialed(const struct lr_dest *d);

#endif
