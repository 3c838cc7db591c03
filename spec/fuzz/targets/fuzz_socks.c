/*
 * The SOCKS5 inbound's handshake (core/inbound/socks.c: greeting, RFC 1929
 * user/password, request) driven through its ops table, with net/conn.c
 * replaced by fuzz_conn.c: the client's bytes arrive in fuzzer-chosen
 * reads, a reply may fail (which closes and frees the connection), and
 * after a dial the outbound's answer (connected / failed) is simulated.
 *
 * Input: ctrl(1) split_seed(1) err(1) then the client's bytes.
 * err & 3: which dial error; err & 4: after an early reply, the dial fails.
 * ctrl & 1: the inbound has an account ("user"/"pass"); & 2: UDP enabled;
 * (ctrl >> 2) & 3: after the dial 0 nothing, 1 connected, 2 failed,
 * 3 early reply (sniffing) then connected or failed;
 * ctrl >> 4: the n-th reply fails (0: none).
 *
 * Checked: no access after close (ASan), the loop ends, a dial happens
 * only for a CONNECT with a well-formed destination, and then the request
 * bytes have been consumed.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "fuzz_conn.h"

extern const struct lr_ib_ops lr_socks_in_ops;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FZ_CHECK(lr_init() == LR_OK);
    return 0;
}

static const int errs[4] = {-ECONNREFUSED, -ENETUNREACH, -EACCES, -ETIMEDOUT};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char user[] = "user", pass[] = "pass", tag[] = "socks-fuzz";
    static struct lr_account acct = {user, pass};
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    struct lr_inbound ib;
    memset(&ib, 0, sizeof(ib));
    ib.tag = tag;
    ib.type = LR_IB_SOCKS;
    ib.fd = -1;
    ib.accounts = (ctrl & 1) ? &acct : NULL;
    ib.naccounts = (ctrl & 1) ? 1 : 0;
    ib.udp = (ctrl & 2) ? 1 : 0;
    memset(&fz_sim, 0, sizeof(fz_sim) - sizeof(fz_sim.head));
    fz_sim.seed = fz_u8(&f) + 1;
    uint8_t eb = fz_u8(&f);
    int err = errs[eb & 3];
    fz_sim.fail_send = ctrl >> 4;
    fz_sim.in = fz_take(&f, (size_t)-1, &fz_sim.len);
    fz_conn_new(&ib, &lr_socks_in_ops);
    fz_conn_run((ctrl >> 2) & 3, err, eb & 4);
    if (fz_verbose())
        fprintf(stderr, "%s: dialed %d (%s:%u atyp %d) udp %d relay %d sends %u\n",
                "socks", fz_sim.dialed, fz_sim.dst.host, fz_sim.dst.port,
                fz_sim.dst.atyp, fz_sim.udp_assoc, fz_sim.relay, fz_sim.sends);
    if (fz_sim.dialed) {
        const struct lr_dest *d = &fz_sim.dst;
        FZ_CHECK(d->network == LR_NET_TCP);
        FZ_CHECK(memchr(d->host, 0, sizeof(d->host)) != NULL);
        FZ_CHECK(d->atyp == LR_ATYP_IPV4 || d->atyp == LR_ATYP_IPV6 ||
                 d->atyp == LR_ATYP_DOMAIN);
        FZ_CHECK(d->host[0] != 0);
    }
    return 0;
}
