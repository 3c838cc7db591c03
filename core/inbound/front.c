/*
 * An inbound's front (front.h): the stages in order, then the inbound.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "inbound/front.h"
#include "route/route.h"

struct lr_front {
    const struct lr_ib_ops *real;    /* the inbound's own ops */
    const struct lr_front_stage *stages[LR_FRONT_STAGES];
    void *st[LR_FRONT_STAGES];
    uint8_t n, at;
};

static int stages_of(const struct lr_inbound *ib, const struct lr_front_stage **out)
{
    int n = 0;
    if (ib->proxy_protocol)
        out[n++] = &lr_front_proxy_stage;
    if (ib->tls.on)
        out[n++] = &lr_front_tls_stage;
    if (ib->tp.type == LR_TP_WS || ib->tp.type == LR_TP_HTTPUPGRADE)
        out[n++] = &lr_front_http_stage;
    else if (ib->tp.type == LR_TP_GRPC)
        out[n++] = &lr_front_grpc_stage;
    return n;
}

static void front_free(struct lr_conn *c)
{
    struct lr_front *f = c->ib_state;
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        if (f->st[i] && f->stages[i]->free_st)
            f->stages[i]->free_st(f->st[i]);
    free(f);
    c->ib_state = NULL;
}

static void front_readable(struct lr_conn *c)
{
    struct lr_front *f = c->ib_state;
    while (f->at < f->n) {
        int rc = f->stages[f->at]->run(c, &f->st[f->at]);
        if (rc == LR_FRONT_AGAIN || rc == LR_FRONT_CLOSED)
            return;
        if (rc == LR_FRONT_FALLBACK) {
            const char *why = f->stages[f->at]->name;
            const struct lr_ib_ops *real = f->real;
            front_free(c);
            c->ibops = real;
            lr_dispatch_fallback(c, why);
            return;
        }
        f->at++;
    }
    /* every stage done: the inbound's own protocol, with the bytes the
     * stages left over (its readable reads on, and decodes what is there) */
    const struct lr_ib_ops *real = f->real;
    front_free(c);
    c->ibops = real;
    c->handoff = 1;
    real->readable(c);
}

static void front_dial_failed(struct lr_conn *c, int err)
{
    lr_conn_close(c, c->reason ? c->reason : "dial failed");
}

static const struct lr_ib_ops front_ops = {
    .readable = front_readable,
    .dial_failed = front_dial_failed,
    .free = front_free,
};

int lr_front_trusted(const struct lr_inbound *ib, const struct lr_addr *peer)
{
    uint8_t ip[16];
    int len = lr_addr_ip_bytes(peer, ip);
    for (uint32_t i = 0; i < ib->ntrusted; i++) {
        const struct lr_cidr *cd = &ib->trusted[i];
        if (cd->len != len)
            continue;
        int full = cd->bits / 8, rest = cd->bits % 8;
        if (memcmp(cd->ip, ip, (size_t)full) != 0)
            continue;
        if (rest && ((cd->ip[full] ^ ip[full]) & (uint8_t)(0xff << (8 - rest))))
            continue;
        return 1;
    }
    return 0;
}

int lr_front_check(const struct lr_inbound *ib, char *err, size_t errlen)
{
    const struct lr_front_stage *s[LR_FRONT_STAGES];
    int n = stages_of(ib, s);
    for (int i = 0; i < n; i++)
        if (!s[i]->run) {
            snprintf(err, errlen, "inbound '%s': %s is not built into this luaray",
                     ib->tag, s[i]->name);
            return -1;
        }
    return 0;
}

int lr_front_start(struct lr_conn *c)
{
    const struct lr_front_stage *s[LR_FRONT_STAGES];
    int n = stages_of(c->ib, s);
    if (n == 0)
        return 0;
    struct lr_front *f = calloc(1, sizeof(*f));
    if (!f) {
        lr_conn_close(c, "out of memory");
        return -1;
    }
    f->real = c->ibops;
    f->n = (uint8_t)n;
    memcpy(f->stages, s, sizeof(*s) * (size_t)n);
    c->ib_state = f;
    c->ibops = &front_ops;
    return 0;
}

