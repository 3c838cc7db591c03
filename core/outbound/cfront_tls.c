/*
 * The outbound front stage "tls" (front.h): the client side of TLS on the
 * connection to the server, with the outbound's built context
 * (stream/tls.c: verification, SNI, ALPN, the session it resumes).  The
 * front drives it from the remote socket's events within the dial
 * deadline; a failed handshake or verification fails the dial with the
 * reason in the access line ("tls: server certificate not trusted: ...").
 */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "outbound/front.h"
#include "stream/tls.h"

struct ctls_st {
    struct lr_tls_stream *t;
    uint8_t pushed;              /* on the side's stack (the side frees it) */
};

static void ctls_free_st(void *p)
{
    struct ctls_st *st = p;
    if (!st->pushed)
        lr_tls_stream_free(st->t);
    free(st);
}

static int ctls_run(struct lr_conn *c, void **stp, int *want)
{
    struct ctls_st *st = *stp;
    if (!st) {
        if (!(st = calloc(1, sizeof(*st))) ||
            !(st->t = lr_tls_stream_new(c->ob->tls.ctx, c->rem.top, NULL, 0))) {
            free(st);
            snprintf(c->fail_detail, sizeof(c->fail_detail), "tls: out of memory");
            return -2;
        }
        *stp = st;
    }
    int rc = lr_tls_handshake(st->t, want);
    if (rc == 0)
        return LR_FRONT_AGAIN;
    if (rc < 0) {
        snprintf(c->fail_detail, sizeof(c->fail_detail), "tls: %s", lr_tls_error(st->t));
        return -2; /* the dial fails: "transport handshake failed" */
    }
    lr_side_push(&c->rem, lr_tls_layer(st->t));
    st->pushed = 1;
    *want = 0;
    lr_debug("conn %llu: tls to %s: %s alpn=%s%s", (unsigned long long)c->id, c->ob->tag,
             lr_tls_version(st->t), lr_tls_alpn(st->t)[0] ? lr_tls_alpn(st->t) : "-",
             lr_tls_resumed(st->t) ? " resumed" : "");
    return LR_FRONT_DONE;
}

const struct lr_cfront_stage lr_cfront_tls_stage = {
    .name = "tls",
    .run = ctls_run,
    .free_st = ctls_free_st,
};

int lr_cfront_tls_build(struct lr_outbound *ob, char *err, size_t errlen)
{
    if (!ob->tls.on || ob->tls.ctx)
        return 0;
    char why[512];
    ob->tls.ctx = lr_tls_client_new(ob->tls.server_name, ob->server_host, ob->tls.ca,
                                    ob->tls.has_pin ? ob->tls.pin : NULL, ob->tls.alpn,
                                    ob->tls.nalpn, why, sizeof(why));
    if (!ob->tls.ctx) {
        snprintf(err, errlen, "outbound '%s': %s", ob->tag, why);
        return -1;
    }
    return 0;
}
