/*
 * SOCKS5 inbound (RFC 1928; user/password auth RFC 1929).  CONNECT is
 * relayed; UDP ASSOCIATE is answered by inbound/socks_udp.c when the
 * inbound has udp = true.  The success reply is sent once the outbound is
 * connected, so a refused destination becomes a SOCKS error, not a reset.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "inbound/inbound.h"

enum { S_GREET = 0, S_AUTH, S_REQUEST, S_WAIT };

struct socks_in {
    uint8_t stage;
};


static int reply(struct lr_conn *c, uint8_t rep)
{
    uint8_t r[10] = {5, rep, 0, 1, 0, 0, 0, 0, 0, 0};
    return lr_conn_send_client(c, r, sizeof(r));
}

/* Parses SOCKS address fields at p (atyp first); returns bytes used,
 * 0 if more bytes are needed, -1 if malformed. */
int lr_socks_parse_addr(const uint8_t *p, size_t n, struct lr_dest *d)
{
    if (n < 1)
        return 0;
    struct lr_addr a;
    switch (p[0]) {
    case 1:
        if (n < 7)
            return 0;
        d->atyp = LR_ATYP_IPV4;
        memcpy(d->ip, p + 1, 4);
        d->port = lr_get_be16(p + 5);
        lr_addr_from_bytes(d->ip, 4, d->port, &a);
        lr_addr_ip_str(&a, d->host, sizeof(d->host));
        return 7;
    case 4:
        if (n < 19)
            return 0;
        d->atyp = LR_ATYP_IPV6;
        memcpy(d->ip, p + 1, 16);
        d->port = lr_get_be16(p + 17);
        lr_addr_from_bytes(d->ip, 16, d->port, &a);
        lr_addr_ip_str(&a, d->host, sizeof(d->host));
        return 19;
    case 3: {
        if (n < 2)
            return 0;
        size_t l = p[1];
        if (l == 0)
            return -1;
        if (n < 2 + l + 2)
            return 0;
        for (size_t i = 0; i < l; i++)
            if (p[2 + i] <= ' ' || p[2 + i] >= 0x7f)
                return -1;
        memcpy(d->host, p + 2, l);
        d->host[l] = 0;
        d->port = lr_get_be16(p + 2 + l);
        /* a literal address sent as a name is still an address */
        if (lr_addr_parse(d->host, d->port, &a) == 0) {
            int len = lr_addr_ip_bytes(&a, d->ip);
            d->atyp = len == 4 ? LR_ATYP_IPV4 : LR_ATYP_IPV6;
        } else {
            d->atyp = LR_ATYP_DOMAIN;
        }
        return (int)(2 + l + 2);
    }
    default:
        return -1;
    }
}

static int check_account(struct lr_inbound *ib, const uint8_t *u, size_t ul,
                         const uint8_t *p, size_t pl)
{
    int ok = 0;
    for (uint32_t i = 0; i < ib->naccounts; i++) {
        struct lr_account *a = &ib->accounts[i];
        ok |= strlen(a->user) == ul && strlen(a->pass) == pl &&
              lr_memeq_ct((const uint8_t *)a->user, u, ul) == 0 &&
              lr_memeq_ct((const uint8_t *)a->pass, p, pl) == 0;
    }
    return ok;
}

static void sin_readable(struct lr_conn *c)
{
    struct socks_in *st = c->ib_state;
    if (!st && !(st = c->ib_state = calloc(1, sizeof(*st)))) {
        lr_conn_close(c, "out of memory");
        return;
    }
    ssize_t n = lr_conn_read_client(c);
    if (n == -EAGAIN)
        return;
    if (n <= 0) {
        lr_conn_close(c, n == 0 ? "eof in handshake" : "read failed");
        return;
    }
    struct lr_inbound *ib = c->ib;
    for (;;) {
        uint8_t *p = lr_buf_head(c->up.in);
        size_t len = lr_buf_len(c->up.in);
        switch (st->stage) {
        case S_GREET: {
            if (len < 2)
                return;
            if (p[0] != 5) {
                lr_conn_close(c, "not socks5");
                return;
            }
            size_t nm = p[1];
            if (len < 2 + nm)
                return;
            uint8_t want = ib->naccounts ? 2 : 0, found = 0;
            for (size_t i = 0; i < nm; i++)
                found |= p[2 + i] == want;
            c->up.in->rd += (uint32_t)(2 + nm);
            uint8_t r[2] = {5, found ? want : 0xff};
            if (!found) {
                lr_conn_reply_close(c, r, 2, "no acceptable auth method");
                return;
            }
            if (lr_conn_send_client(c, r, 2) < 0)
                return;
            st->stage = want == 2 ? S_AUTH : S_REQUEST;
            break;
        }
        case S_AUTH: {
            if (len < 2)
                return;
            size_t ul = p[1];
            if (len < 2 + ul + 1)
                return;
            size_t pl = p[2 + ul];
            if (len < 3 + ul + pl)
                return;
            int ok = p[0] == 1 && check_account(ib, p + 2, ul, p + 3 + ul, pl);
            c->up.in->rd += (uint32_t)(3 + ul + pl);
            uint8_t r[2] = {1, ok ? 0 : 1};
            if (!ok) {
                lr_conn_reply_close(c, r, 2, "bad socks credentials");
                return;
            }
            if (lr_conn_send_client(c, r, 2) < 0)
                return;
            st->stage = S_REQUEST;
            break;
        }
        case S_REQUEST: {
            if (len < 4)
                return;
            if (p[0] != 5) {
                lr_conn_close(c, "bad socks request");
                return;
            }
            int used = lr_socks_parse_addr(p + 3, len - 3, &c->dst);
            if (used == 0)
                return;
            if (used < 0) {
                uint8_t r[10] = {5, 8, 0, 1, 0, 0, 0, 0, 0, 0};
                lr_conn_reply_close(c, r, sizeof(r), "bad socks address");
                return;
            }
            c->up.in->rd += (uint32_t)(3 + used);
            st->stage = S_WAIT;
            if (p[1] == 1) {
                c->dst.network = LR_NET_TCP;
                lr_dispatch(c);
            } else if (p[1] == 3 && ib->udp) {
                lr_socks_udp_associate(c);
            } else {
                uint8_t r[10] = {5, 7, 0, 1, 0, 0, 0, 0, 0, 0};
                lr_conn_reply_close(c, r, sizeof(r), "socks command not supported");
            }
            return;
        }
        default:
            return;
        }
    }
}

static void sin_connected(struct lr_conn *c)
{
    if (!c->replied && reply(c, 0) < 0)
        return;
    c->replied = 1;
    lr_conn_start_relay(c);
}

/* Sniffing wants the client's first bytes before routing: say yes now
 * (as v2ray always does); a failed dial then just closes. */
static int sin_early_reply(struct lr_conn *c)
{
    if (reply(c, 0) < 0)
        return -1;
    c->replied = 1;
    return 0;
}

static void sin_dial_failed(struct lr_conn *c, int err)
{
    if (c->replied) {
        lr_conn_reply_close(c, NULL, 0, c->reason ? c->reason : "dial failed");
        return;
    }
    uint8_t rep = err == -ECONNREFUSED ? 5 : err == -ENETUNREACH ? 3
                : err == -EACCES ? 2 : 4;
    uint8_t r[10] = {5, rep, 0, 1, 0, 0, 0, 0, 0, 0};
    /* best effort, then close: the client learns why */
    lr_conn_reply_close(c, r, sizeof(r), c->reason ? c->reason : "dial failed");
}

static void sin_free(struct lr_conn *c)
{
    free(c->ib_state);
    c->ib_state = NULL;
}

const struct lr_ib_ops lr_socks_in_ops = {
    .readable = sin_readable,
    .early_reply = sin_early_reply,
    .connected = sin_connected,
    .dial_failed = sin_dial_failed,
    .free = sin_free,
    .read_while_dialing = 1,
};
