/*
 * An outbound's front (front.h): the stages in order, then the relay.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "outbound/front.h"

#define CFRONT_STAGES 3

struct lr_cfront {
    const struct lr_cfront_stage *stages[CFRONT_STAGES];
    void *st[CFRONT_STAGES];
    uint8_t n, at;
};

static int stages_of(const struct lr_outbound *ob, const struct lr_cfront_stage **out)
{
    int n = 0;
    if (ob->tls.on)
        out[n++] = &lr_cfront_tls_stage;
    if (ob->tp.type == LR_TP_WS || ob->tp.type == LR_TP_HTTPUPGRADE)
        out[n++] = &lr_cfront_http_stage;
    else if (ob->tp.type == LR_TP_GRPC)
        out[n++] = &lr_cfront_grpc_stage;
    return n;
}

int lr_cfront_wanted(const struct lr_outbound *ob)
{
    const struct lr_cfront_stage *s[CFRONT_STAGES];
    return stages_of(ob, s) > 0;
}

int lr_cfront_check(const struct lr_outbound *ob, char *err, size_t errlen)
{
    const struct lr_cfront_stage *s[CFRONT_STAGES];
    int n = stages_of(ob, s);
    for (int i = 0; i < n; i++)
        if (!s[i]->run) {
            snprintf(err, errlen, "outbound '%s': %s is not built into this luaray",
                     ob->tag, s[i]->name);
            return -1;
        }
    return 0;
}

void lr_cfront_free(struct lr_conn *c)
{
    struct lr_cfront *f = c->front;
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        if (f->st[i] && f->stages[i]->free_st)
            f->stages[i]->free_st(f->st[i]);
    free(f);
    c->front = NULL;
}

void lr_cfront_io(struct lr_conn *c, int revents)
{
    struct lr_cfront *f = c->front;
    struct ev_loop *loop = c->lp->loop;
    if (!f) {
        ev_io_stop(loop, &c->rem.rio);
        ev_io_stop(loop, &c->rem.wio);
        return;
    }
    while (f->at < f->n) {
        int want = 0;
        int rc = f->stages[f->at]->run(c, &f->st[f->at], &want);
        if (rc == LR_FRONT_CLOSED)
            return;
        if (rc == LR_FRONT_AGAIN) {
            if (want & LR_STREAM_WANT_READ)
                ev_io_start(loop, &c->rem.rio);
            else
                ev_io_stop(loop, &c->rem.rio);
            if (want & LR_STREAM_WANT_WRITE)
                ev_io_start(loop, &c->rem.wio);
            else
                ev_io_stop(loop, &c->rem.wio);
            return;
        }
        if (rc != LR_FRONT_DONE) {
            lr_conn_dial_failed(c, -EPROTO, "transport handshake failed");
            return;
        }
        f->at++;
    }
    ev_io_stop(loop, &c->rem.rio);
    ev_io_stop(loop, &c->rem.wio);
    lr_cfront_free(c);
    c->ibops->connected(c);
}

void lr_cfront_start(struct lr_conn *c, int fd)
{
    struct lr_cfront *f = calloc(1, sizeof(*f));
    lr_conn_remote_attach(c, fd, 0);
    if (!f) {
        lr_conn_dial_failed(c, -ENOMEM, "out of memory");
        return;
    }
    f->n = (uint8_t)stages_of(c->ob, f->stages);
    c->front = f;
    lr_cfront_io(c, EV_WRITE); /* connected: the first stage writes first */
}
