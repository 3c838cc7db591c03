/*
 * The front stage "tls" (front.h): the server side of TLS on a client
 * connection, with the inbound's built context (stream/tls.c).
 *
 * The handshake is driven from the client socket's read events (the
 * front's) and, when OpenSSL must write first and the socket is full, from
 * a write watcher of the stage's own.  Bytes an earlier stage read ahead
 * (after a PROXY header) are the start of the TLS stream.  Once the
 * handshake is done the layer goes on the client side's stack; the stage
 * ends when the first application bytes are there, so a client that waits
 * holds no relay buffer.
 *
 * Fallback (design.md 6), when the inbound has one: a client whose SNI
 * names none of our certificates, or that offered ALPN protocols none of
 * which is ours, is not a VMess client of this inbound: after the
 * handshake its decrypted bytes go to the fallback.  A client without SNI
 * or without ALPN is judged by what it sends, like any other (a bad VMess
 * header goes to the fallback too).  Without a fallback SNI and ALPN
 * decide nothing.  A failed handshake closes at once, as a TLS server
 * does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "inbound/front.h"
#include "stream/tls.h"

struct tls_st {
    struct lr_tls_stream *t;
    struct lr_conn *c;
    struct ev_loop *loop;
    ev_io wio;                   /* the handshake must write first */
    uint8_t pushed;              /* t is on the side's stack (the side frees it) */
};

static void tls_wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tls_st *st = (struct tls_st *)((char *)w - offsetof(struct tls_st, wio));
    struct lr_conn *c = st->c;
    ev_io_stop(loop, w);
    if (c->state != LR_CS_HANDSHAKE)
        return;
    ev_io_start(loop, &c->cli.rio);
    c->ibops->readable(c); /* the front: this stage again */
}

static void tls_free_st(void *p)
{
    struct tls_st *st = p;
    ev_io_stop(st->loop, &st->wio);
    if (!st->pushed)
        lr_tls_stream_free(st->t);
    free(st);
}

static int tls_run(struct lr_conn *c, void **stp)
{
    struct tls_st *st = *stp;
    struct ev_loop *loop = c->lp->loop;
    if (!st) {
        if (!(st = calloc(1, sizeof(*st)))) {
            lr_conn_close(c, "out of memory");
            return LR_FRONT_CLOSED;
        }
        st->c = c;
        st->loop = loop;
        ev_io_init(&st->wio, tls_wio_cb, c->cli.fd, EV_WRITE);
        const uint8_t *pre = NULL;
        size_t plen = 0;
        if (c->up.in && lr_buf_len(c->up.in)) {
            pre = lr_buf_head(c->up.in);
            plen = lr_buf_len(c->up.in);
        }
        st->t = lr_tls_stream_new(c->ib->tls.ctx, c->cli.top, pre, plen);
        if (!st->t) {
            free(st);
            lr_conn_close(c, "out of memory");
            return LR_FRONT_CLOSED;
        }
        *stp = st;
        if (c->up.in) { /* taken: the TLS stream starts with them */
            lr_buf_put(c->up.in);
            c->up.in = NULL;
        }
    }
    if (st->pushed) /* the first application bytes came */
        return LR_FRONT_DONE;
    int want = 0;
    int rc = lr_tls_handshake(st->t, &want);
    if (rc == 0) {
        if (want & LR_STREAM_WANT_WRITE) {
            /* reading on would spin on bytes we cannot take yet */
            ev_io_stop(loop, &c->cli.rio);
            ev_io_start(loop, &st->wio);
        }
        return LR_FRONT_AGAIN;
    }
    if (rc < 0) {
        snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", lr_tls_error(st->t));
        lr_conn_close(c, "tls handshake failed");
        return LR_FRONT_CLOSED;
    }
    ev_io_stop(loop, &st->wio);
    ev_io_start(loop, &c->cli.rio);
    struct lr_stream *l = lr_tls_layer(st->t);
    lr_side_push(&c->cli, l);
    st->pushed = 1;
    const char *sni = lr_tls_sni(st->t);
    int stranger = (sni[0] && !lr_tls_sni_known(st->t)) || lr_tls_alpn_refused(st->t);
    lr_debug("conn %llu: tls %s sni=%s%s alpn=%s%s%s%s", (unsigned long long)c->id,
             lr_tls_version(st->t), sni[0] ? sni : "-",
             sni[0] && !lr_tls_sni_known(st->t) ? " (none of ours)" : "",
             lr_tls_alpn(st->t)[0] ? lr_tls_alpn(st->t) : "-",
             lr_tls_alpn_refused(st->t) ? " (none of ours offered)" : "",
             lr_tls_resumed(st->t) ? " resumed" : "",
             lr_tls_ktls(st->t, 1) ? " ktls" : "");
    if (stranger && c->ib->fallback_host)
        return LR_FRONT_FALLBACK;
    /* wait for the first application bytes (unless OpenSSL holds them) */
    return l->ops->pending(l) ? LR_FRONT_DONE : LR_FRONT_AGAIN;
}

const struct lr_front_stage lr_front_tls_stage = {
    .name = "tls",
    .run = tls_run,
    .free_st = tls_free_st,
};

int lr_front_tls_build(struct lr_inbound *ib, char *err, size_t errlen)
{
    if (!ib->tls.on || ib->tls.ctx)
        return 0;
    struct lr_tls_pem *pem = calloc(ib->tls.ncerts ? ib->tls.ncerts : 1, sizeof(*pem));
    if (!pem) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < ib->tls.ncerts; i++) {
        pem[i].cert = ib->tls.certs[i].cert;
        pem[i].key = ib->tls.certs[i].key;
    }
    char why[512];
    ib->tls.ctx = lr_tls_server_new(pem, ib->tls.ncerts, ib->tls.alpn, ib->tls.nalpn,
                                    why, sizeof(why));
    free(pem);
    if (!ib->tls.ctx) {
        snprintf(err, errlen, "inbound '%s': %s", ib->tag, why);
        return -1;
    }
    return 0;
}
