/*
 * The SOCKS5 inbound's handshake (core/inbound/socks.c: greeting, RFC 1929
 * user/password, request) driven through its ops table, with net/conn.c
 * replaced by fuzz_conn.c: the client's bytes arrive in fuzzer-chosen
 * reads, a reply may fail (which closes and frees the connection), and
 * after a dial the outbound's answer (connected / failed) is simulated.
 *
 * Input: as every inbound target's (fuzz_conn.h, struct fz_inbound), and
 * ctrl & 2: UDP enabled.
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
    static char tag[] = "socks-fuzz";
    struct fz_inbound x;
    fz_inbound_parse(&x, data, size, LR_IB_SOCKS, tag, errs);
    x.ib.udp = (x.ctrl & 2) ? 1 : 0;
    fz_inbound_start(&x, x.seed, &lr_socks_in_ops);
    fz_conn_run(x.after, x.err, x.then_fail);
    if (fz_verbose())
        fprintf(stderr, "%s: dialed %d (%s:%u atyp %d) udp %d relay %d sends %u\n",
                "socks", fz_sim.dialed, fz_sim.dst.host, fz_sim.dst.port,
                fz_sim.dst.atyp, fz_sim.udp_assoc, fz_sim.relay, fz_sim.sends);
    if (fz_sim.dialed)
        fz_check_dialed(&fz_sim.dst);
    return 0;
}
