/*
 * The HTTP proxy inbound's request head (core/inbound/http.c: request
 * line, Proxy-Authorization, CONNECT target, absolute-form rewrite to
 * origin form) driven through its ops table, with net/conn.c replaced by
 * fuzz_conn.c (see fuzz_socks.c for the input's control bytes).
 *
 * Checked: no access after close (ASan), the loop ends, and on a dial:
 * the destination is consistent, the port is not 0, and a rewritten
 * (non-CONNECT) head ends its header block with "Connection: close" and
 * carries no Proxy-Authorization / Proxy-Connection line upstream.
 */
#include <errno.h>
#include <strings.h>

#include "fuzz_common.h"
#include "fuzz_conn.h"

extern const struct lr_ib_ops lr_http_in_ops;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    return 0;
}

static const int errs[4] = {-ECONNREFUSED, -EACCES, -ETIMEDOUT, -EHOSTUNREACH};

static int starts_ci(const uint8_t *p, size_t n, const char *s)
{
    size_t l = strlen(s);
    return n >= l && strncasecmp((const char *)p, s, l) == 0;
}

static void check_rewritten(const uint8_t *h, size_t n)
{
    const uint8_t *end = memmem(h, n, "\r\n\r\n", 4);
    FZ_CHECK(end != NULL);
    size_t hl = (size_t)(end - h) + 4;
    static const char tailc[] = "Connection: close\r\n\r\n";
    FZ_CHECK(hl >= sizeof(tailc) - 1 &&
             memcmp(end + 4 - (sizeof(tailc) - 1), tailc, sizeof(tailc) - 1) == 0);
    const uint8_t *line = (const uint8_t *)memmem(h, hl, "\r\n", 2) + 2;
    while (line < end + 2) {
        const uint8_t *le = memmem(line, (size_t)(end + 4 - line), "\r\n", 2);
        size_t ll = (size_t)(le - line);
        FZ_CHECK(!starts_ci(line, ll, "Proxy-Authorization:"));
        FZ_CHECK(!starts_ci(line, ll, "Proxy-Connection:"));
        line = le + 2;
    }
}

/* The authority part of the request line's target (CONNECT: all of it;
 * absolute form: between "http://" and the first '/'). */
static const uint8_t *authority(const uint8_t *h, size_t n, size_t *len)
{
    const uint8_t *eol = memmem(h, n, "\r\n", 2);
    if (!eol)
        return NULL;
    const uint8_t *sp1 = memchr(h, ' ', (size_t)(eol - h));
    if (!sp1)
        return NULL;
    const uint8_t *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (!sp2)
        return NULL;
    const uint8_t *t = sp1 + 1;
    size_t tl = (size_t)(sp2 - t);
    if (!(sp1 - h == 7 && memcmp(h, "CONNECT", 7) == 0)) {
        if (tl < 7)
            return NULL;
        t += 7;
        tl -= 7;
        const uint8_t *slash = memchr(t, '/', tl);
        if (slash)
            tl = (size_t)(slash - t);
    }
    *len = tl;
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char user[] = "user", pass[] = "pass", tag[] = "http-fuzz";
    static struct lr_account acct = {user, pass};
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    struct lr_inbound ib;
    memset(&ib, 0, sizeof(ib));
    ib.tag = tag;
    ib.type = LR_IB_HTTP;
    ib.fd = -1;
    ib.accounts = (ctrl & 1) ? &acct : NULL;
    ib.naccounts = (ctrl & 1) ? 1 : 0;
    memset(&fz_sim, 0, sizeof(fz_sim) - sizeof(fz_sim.head));
    fz_sim.seed = fz_u8(&f) + 1;
    uint8_t eb = fz_u8(&f);
    int err = errs[eb & 3];
    fz_sim.fail_send = ctrl >> 4;
    fz_sim.in = fz_take(&f, (size_t)-1, &fz_sim.len);
    fz_conn_new(&ib, &lr_http_in_ops);
    fz_conn_run((ctrl >> 2) & 3, err, eb & 4);
    if (fz_verbose())
        fprintf(stderr, "%s: dialed %d (%s:%u atyp %d) udp %d relay %d sends %u\n",
                "http", fz_sim.dialed, fz_sim.dst.host, fz_sim.dst.port,
                fz_sim.dst.atyp, fz_sim.udp_assoc, fz_sim.relay, fz_sim.sends);
    if (fz_sim.dialed) {
        const struct lr_dest *d = &fz_sim.dst;
        FZ_CHECK(d->network == LR_NET_TCP && d->port != 0);
        FZ_CHECK(memchr(d->host, 0, sizeof(d->host)) != NULL);
        /* the authority a client named is taken whole or refused: a NUL
         * inside it must not cut it short (spec/fuzz/crashes/fuzz_http/) */
        size_t alen;
        const uint8_t *auth = authority(data + 3, size - 3, &alen);
        FZ_CHECK(auth != NULL);
        FZ_CHECK(memchr(auth, 0, alen) == NULL);
        FZ_CHECK(d->host[0] != 0);
        FZ_CHECK(d->atyp == LR_ATYP_IPV4 || d->atyp == LR_ATYP_IPV6 ||
                 d->atyp == LR_ATYP_DOMAIN);
        /* a plain request was rewritten in place; CONNECT left the rest */
        if (size < 3 + 8 || memcmp(data + 3, "CONNECT ", 8) != 0)
            check_rewritten(fz_sim.head, fz_sim.head_len);
    }
    return 0;
}
