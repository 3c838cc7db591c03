/*
 * core/stream/proxyproto.c: lr_pp_parse, the PROXY protocol v1/v2 header a
 * proxy sends before its client's bytes (inbound/front_proxy.c reads it
 * off the socket of a proxy_protocol inbound).
 *
 * Input: the bytes the proxy sent (no control byte).
 *
 * Checked:
 * - the answer is BAD (with a reason), AGAIN or OK;
 * - OK: version 1 or 2; local exactly when no address was read (ip_len 0,
 *   else 4 or 16, with nothing in the unused address bytes); v1: the line
 *   ends in CRLF within the input and within 107 bytes; a TCP4/TCP6 line
 *   rebuilt from the result parses to the same result, and for TCP4 is
 *   the very line (IPv4 text without leading zeros has one spelling); v2:
 *   the length is 16 + the length field, and the addresses and ports are
 *   the bytes after the fixed part, as given;
 * - answers are stable: every prefix is AGAIN or the same answer (with
 *   the same result), so waiting for more bytes never changes a decision.
 */
#include <arpa/inet.h>

#include "fuzz_common.h"
#include "stream/proxyproto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_ok(const uint8_t *p, size_t n, const struct lr_pp_hdr *h)
{
    FZ_CHECK(h->version == 1 || h->version == 2);
    FZ_CHECK(h->local ? h->ip_len == 0 : (h->ip_len == 4 || h->ip_len == 16));
    for (size_t i = h->ip_len; i < 16; i++)
        FZ_CHECK(h->src_ip[i] == 0 && h->dst_ip[i] == 0);
    if (h->local)
        FZ_CHECK(h->src_port == 0 && h->dst_port == 0);
    if (h->version == 1) {
        FZ_CHECK(h->len >= 15 && h->len <= LR_PP_V1_MAX && h->len <= n);
        FZ_CHECK(p[h->len - 2] == '\r' && p[h->len - 1] == '\n');
        FZ_CHECK(memcmp(p, "PROXY ", 6) == 0);
        if (h->local)
            return;
        /* rebuilt from what was read, it reads the same */
        char a[64], b[64], line[160];
        int af = h->ip_len == 4 ? AF_INET : AF_INET6;
        FZ_CHECK(inet_ntop(af, h->src_ip, a, sizeof(a)) && inet_ntop(af, h->dst_ip, b, sizeof(b)));
        int ln = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n",
                          af == AF_INET ? '4' : '6', a, b, h->src_port, h->dst_port);
        FZ_CHECK(ln > 0 && ln < (int)sizeof(line));
        struct lr_pp_hdr again;
        FZ_CHECK(lr_pp_parse((const uint8_t *)line, (size_t)ln, &again, NULL) == LR_PP_OK);
        FZ_CHECK(again.ip_len == h->ip_len && again.len == (uint32_t)ln);
        FZ_CHECK(memcmp(again.src_ip, h->src_ip, 16) == 0 && memcmp(again.dst_ip, h->dst_ip, 16) == 0);
        FZ_CHECK(again.src_port == h->src_port && again.dst_port == h->dst_port);
        if (af == AF_INET)
            FZ_CHECK((size_t)ln == h->len && memcmp(line, p, (size_t)ln) == 0);
        return;
    }
    FZ_CHECK(n >= LR_PP_V2_FIXED);
    FZ_CHECK(h->len == LR_PP_V2_FIXED + ((size_t)p[14] << 8 | p[15]));
    FZ_CHECK((p[12] >> 4) == 2);
    if (h->local)
        return;
    size_t al = h->ip_len;
    FZ_CHECK(p[12] == 0x21 && p[13] == (al == 4 ? 0x11 : 0x21));
    FZ_CHECK(n >= LR_PP_V2_FIXED + 2 * al + 4 && h->len >= LR_PP_V2_FIXED + 2 * al + 4);
    const uint8_t *a = p + LR_PP_V2_FIXED;
    FZ_CHECK(memcmp(h->src_ip, a, al) == 0 && memcmp(h->dst_ip, a + al, al) == 0);
    FZ_CHECK(h->src_port == (a[2 * al] << 8 | a[2 * al + 1]));
    FZ_CHECK(h->dst_port == (a[2 * al + 2] << 8 | a[2 * al + 3]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly `size` bytes, so ASan sees any read past it */
    uint8_t *p = malloc(size ? size : 1);
    FZ_CHECK(p);
    memcpy(p, data, size);
    struct lr_pp_hdr h;
    const char *why = NULL;
    int rc = lr_pp_parse(p, size, &h, &why);
    FZ_CHECK(rc == LR_PP_OK || rc == LR_PP_AGAIN || rc == LR_PP_BAD);
    FZ_CHECK((rc == LR_PP_BAD) == (why != NULL));
    if (fz_verbose())
        fprintf(stderr, "proxyproto: %zu bytes -> %d v%d local %d len %u %s\n", size, rc,
                h.version, h.local, h.len, why ? why : "");
    if (rc == LR_PP_OK)
        check_ok(p, size, &h);
    /* prefixes: all of them for short inputs, a spread for long ones */
    size_t step = size <= 600 ? 1 : size / 300;
    for (size_t k = 0; k < size; k += step) {
        struct lr_pp_hdr hk;
        uint8_t *q = malloc(k ? k : 1);
        FZ_CHECK(q);
        memcpy(q, p, k);
        int r = lr_pp_parse(q, k, &hk, NULL);
        free(q);
        if (r != LR_PP_AGAIN && r != rc)
            fprintf(stderr, "prefix %zu of %zu: %d, whole: %d\n", k, size, r, rc);
        FZ_CHECK(r == LR_PP_AGAIN || r == rc);
        if (r == LR_PP_OK)
            FZ_CHECK(memcmp(&hk, &h, sizeof(h)) == 0);
    }
    free(p);
    return 0;
}
