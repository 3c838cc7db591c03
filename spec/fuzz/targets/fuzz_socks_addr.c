/*
 * lr_socks_parse_addr (core/inbound/socks.c): the ATYP/address/port part
 * of a SOCKS5 request (and of every SOCKS5 UDP datagram).  Returns the
 * bytes used, 0 for "need more", -1 for malformed.
 *
 * Checked: the result is within the input; an accepted address is the
 * same when parsed from exactly its own bytes, and every shorter prefix
 * asks for more; "need more" is only said while the longest address
 * (2 + 255 + 2 bytes) could still be incomplete; the destination is
 * consistent (NUL-terminated host, port, atyp and IP bytes).
 */
#include "fuzz_common.h"
#include "inbound/inbound.h"


int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_dest(const uint8_t *p, int used, const struct lr_dest *d)
{
    FZ_CHECK(memchr(d->host, 0, sizeof(d->host)) != NULL);
    switch (p[0]) {
    case 1:
        FZ_CHECK(used == 7 && d->atyp == LR_ATYP_IPV4);
        FZ_CHECK(memcmp(d->ip, p + 1, 4) == 0 && d->port == lr_get_be16(p + 5));
        break;
    case 4:
        FZ_CHECK(used == 19 && d->atyp == LR_ATYP_IPV6);
        FZ_CHECK(memcmp(d->ip, p + 1, 16) == 0 &&
                 d->port == lr_get_be16(p + 17));
        break;
    case 3: {
        size_t l = p[1];
        FZ_CHECK(l > 0 && (size_t)used == 4 + l);
        FZ_CHECK(strlen(d->host) == l && memcmp(d->host, p + 2, l) == 0);
        FZ_CHECK(d->port == lr_get_be16(p + 2 + l));
        FZ_CHECK(d->atyp == LR_ATYP_DOMAIN || d->atyp == LR_ATYP_IPV4 ||
                 d->atyp == LR_ATYP_IPV6);
        for (size_t i = 0; i < l; i++)
            FZ_CHECK(p[2 + i] > ' ' && p[2 + i] < 0x7f);
        break;
    }
    default:
        FZ_CHECK(!"accepted an unknown address type");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_dest d, d2;
    memset(&d, 0x5a, sizeof(d));
    int used = lr_socks_parse_addr(data, size, &d);
    FZ_CHECK(used >= -1 && (used < 0 || (size_t)used <= size));
    if (used == 0)
        FZ_CHECK(size < 2 + 255 + 2);
    if (used > 0) {
        check_dest(data, used, &d);
        /* exactly its own bytes: same answer (a copy, so ASan sees the
         * end of the buffer) */
        uint8_t *own = malloc((size_t)used);
        FZ_CHECK(own != NULL);
        memcpy(own, data, (size_t)used);
        memset(&d2, 0xa5, sizeof(d2));
        FZ_CHECK(lr_socks_parse_addr(own, (size_t)used, &d2) == used);
        FZ_CHECK(d2.atyp == d.atyp && d2.port == d.port &&
                 strcmp(d2.host, d.host) == 0);
        if (d.atyp != LR_ATYP_DOMAIN)
            FZ_CHECK(memcmp(d2.ip, d.ip, d.atyp == LR_ATYP_IPV4 ? 4 : 16) == 0);
        /* shorter: always "need more" */
        for (int k = 0; k < used; k++)
            FZ_CHECK(lr_socks_parse_addr(own, (size_t)k, &d2) == 0);
        free(own);
    }
    return 0;
}
