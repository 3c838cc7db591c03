/*
 * The net/conn.c functions the SOCKS5 and HTTP inbounds call, simulated
 * (see fuzz_conn.h).  Also lr_socks_udp_associate, which lives in
 * socks_udp.c (sockets): here it only records that it was asked.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "fuzz_conn.h"

struct fz_sim fz_sim;

void lr_conn_reply_close(struct lr_conn *c, const void *data, size_t len,
                         const char *reason);

struct lr_conn *fz_conn_new(struct lr_inbound *ib,
                            const struct lr_ib_ops *ops)
{
    struct lr_conn *c = calloc(1, sizeof(*c));
    FZ_CHECK(c != NULL);
    c->up.in = malloc(sizeof(struct lr_buf));
    FZ_CHECK(c->up.in != NULL);
    c->up.in->rd = c->up.in->wr = 0;
    c->cli.fd = -1;
    c->rem.fd = -1;
    c->dial.fd = -1;
    c->ib = ib;
    c->ibops = ops;
    c->user = -1;
    fz_sim.c = c;
    return c;
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    FZ_CHECK(c == fz_sim.c && reason != NULL);
    if (!c->reason)
        c->reason = reason;
    if (c->ibops && c->ibops->free)
        c->ibops->free(c);
    free(c->up.in);
    free(c->down.out);
    free(c);
    fz_sim.c = NULL;
}

ssize_t lr_conn_read_client(struct lr_conn *c)
{
    FZ_CHECK(c == fz_sim.c);
    struct lr_buf *b = c->up.in;
    FZ_CHECK(b->rd <= b->wr && b->wr <= LR_BUF_CAP);
    size_t room = lr_buf_room(b);
    if (room == 0)
        return -ENOBUFS;
    if (fz_sim.pos == fz_sim.len)
        return 0;
    size_t k = fz_split(&fz_sim.seed, fz_sim.len - fz_sim.pos);
    if (k > room)
        k = room;
    memcpy(lr_buf_tail(b), fz_sim.in + fz_sim.pos, k);
    b->wr += (uint32_t)k;
    fz_sim.pos += k;
    return (ssize_t)k;
}

int lr_conn_send_client(struct lr_conn *c, const void *data, size_t len)
{
    FZ_CHECK(c == fz_sim.c && data != NULL && len > 0 && len <= 4096);
    if (++fz_sim.sends == fz_sim.fail_send) {
        lr_conn_close(c, "reply too large");
        return -1;
    }
    return 0;
}

void lr_conn_reply_close(struct lr_conn *c, const void *data, size_t len,
                         const char *reason)
{
    FZ_CHECK(c == fz_sim.c && (len == 0 || data != NULL) && len <= 4096);
    lr_conn_close(c, reason);
}

void lr_conn_send_now(struct lr_conn *c, const void *data, size_t len)
{
    FZ_CHECK(c == fz_sim.c && data != NULL && len > 0 && len <= 4096);
}

void lr_dispatch(struct lr_conn *c)
{
    FZ_CHECK(c == fz_sim.c && !fz_sim.dialed);
    struct lr_buf *b = c->up.in;
    FZ_CHECK(b->rd <= b->wr && b->wr <= LR_BUF_CAP);
    fz_sim.dialed = 1;
    fz_sim.dst = c->dst;
    fz_sim.head_len = b->wr - b->rd;
    memcpy(fz_sim.head, b->data + b->rd, fz_sim.head_len);
}

void lr_conn_start_relay(struct lr_conn *c)
{
    FZ_CHECK(c == fz_sim.c && fz_sim.dialed);
    fz_sim.relay = 1;
}

int lr_socks_udp_associate(struct lr_conn *c)
{
    FZ_CHECK(c == fz_sim.c);
    fz_sim.udp_assoc = 1;
    return 0;
}

void fz_inbound_parse(struct fz_inbound *x, const uint8_t *data, size_t size,
                      int type, char *tag, const int errs[4])
{
    static char user[] = "user", pass[] = "pass";
    static struct lr_account acct = {user, pass};
    struct fz f = {data, size};
    memset(x, 0, sizeof(*x));
    x->ctrl = fz_u8(&f);
    x->ib.tag = tag;
    x->ib.type = type;
    x->ib.fd = -1;
    x->ib.accounts = (x->ctrl & 1) ? &acct : NULL;
    x->ib.naccounts = (x->ctrl & 1) ? 1 : 0;
    x->seed = fz_u8(&f) + 1;
    uint8_t eb = fz_u8(&f);
    x->err = errs[eb & 3];
    x->then_fail = eb & 4;
    x->after = (x->ctrl >> 2) & 3;
    x->fail_send = x->ctrl >> 4;
    x->in = fz_take(&f, (size_t)-1, &x->len);
}

void fz_inbound_start(struct fz_inbound *x, uint64_t seed,
                      const struct lr_ib_ops *ops)
{
    memset(&fz_sim, 0, sizeof(fz_sim) - sizeof(fz_sim.head));
    fz_sim.seed = seed;
    fz_sim.fail_send = x->fail_send;
    fz_sim.in = x->in;
    fz_sim.len = x->len;
    fz_conn_new(&x->ib, ops);
}

void fz_conn_feed(void)
{
    /* every call reads at least one byte or ends the input (EOF closes) */
    for (size_t i = 0; fz_sim.c && !fz_sim.dialed && !fz_sim.udp_assoc; i++) {
        FZ_CHECK(i <= fz_sim.len + 2);
        fz_sim.c->ibops->readable(fz_sim.c);
    }
}

int fz_conn_settle(int after, int err, int then_fail)
{
    if (!fz_sim.c || !fz_sim.dialed)
        return 0;
    const struct lr_ib_ops *ops = fz_sim.c->ibops;
    /* 3: the early reply sniffing asks for, then the dial's outcome */
    if (after == 3 && ops->early_reply) {
        int rc = ops->early_reply(fz_sim.c);
        FZ_CHECK(rc == 0 || rc == -1);
        FZ_CHECK((rc == -1) == (fz_sim.c == NULL));
        after = then_fail ? 2 : 1;
    }
    if (fz_sim.c && after == 1) {
        ops->connected(fz_sim.c);
        return 1;
    }
    if (fz_sim.c && after == 2)
        ops->dial_failed(fz_sim.c, err);
    return 0;
}

void fz_conn_end(void)
{
    if (fz_sim.c)
        lr_conn_close(fz_sim.c, "fuzz: end of input");
}

void fz_conn_run(int after, int err, int then_fail)
{
    fz_conn_feed();
    fz_conn_settle(after, err, then_fail);
    fz_conn_end();
}

void fz_check_dialed(const struct lr_dest *d)
{
    FZ_CHECK(d->network == LR_NET_TCP);
    FZ_CHECK(memchr(d->host, 0, sizeof(d->host)) != NULL);
    FZ_CHECK(d->atyp == LR_ATYP_IPV4 || d->atyp == LR_ATYP_IPV6 ||
             d->atyp == LR_ATYP_DOMAIN);
    FZ_CHECK(d->host[0] != 0);
}
