/*
 * core/route/sniff.c: lr_sniff_tls_sni (the SNI of a TLS ClientHello) and
 * lr_sniff_http_host (the Host of an HTTP/1 request), pure parsers over the
 * first bytes a client sends.  Returns: 1 and a name, 0 "need more", -1.
 *
 * Input: ctrl(1) cap(1) then the client's bytes.  ctrl & 1: HTTP (else
 * TLS); the name is written to a heap buffer of exactly `cap` bytes (so
 * ASan sees a write past it).
 *
 * Checked: a name is NUL-terminated inside `cap`, at most 253 bytes, lower
 * case letters, digits, '-', '.', '_'; and answers are stable: a shorter
 * prefix either needs more bytes or gives the same answer (same name), so
 * waiting for more data never changes a decision.
 */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

typedef int (*sniff_fn)(const uint8_t *, size_t, char *, size_t);

static void check_name(const char *out, size_t cap)
{
    size_t n = strnlen(out, cap);
    FZ_CHECK(n < cap && n >= 1 && n <= 253);
    for (size_t i = 0; i < n; i++) {
        char c = out[i];
        FZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                 c == '-' || c == '.' || c == '_');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    size_t cap = fz_u8(&f) + 1;
    sniff_fn fn = (ctrl & 1) ? lr_sniff_http_host : lr_sniff_tls_sni;
    size_t n;
    const uint8_t *p = fz_take(&f, (size_t)-1, &n);
    char *out = malloc(cap), *out2 = malloc(cap);
    FZ_CHECK(out && out2);
    memset(out, 0x5a, cap);
    int rc = fn(p, n, out, cap);
    FZ_CHECK(rc == 1 || rc == 0 || rc == -1);
    if (fz_verbose())
        fprintf(stderr, "sniff %s: %zu bytes -> %d %s\n", (ctrl & 1) ? "http" : "tls",
                n, rc, rc == 1 ? out : "");
    if (rc == 1)
        check_name(out, cap);
    /* prefixes: all of them for short inputs, a spread for long ones */
    size_t step = n <= 600 ? 1 : n / 300;
    for (size_t k = 0; k < n; k += step) {
        memset(out2, 0x5a, cap);
        int r = fn(p, k, out2, cap);
        if (r != 0 && r != rc)
            fprintf(stderr, "prefix %zu of %zu: %d, whole: %d\n", k, n, r, rc);
        FZ_CHECK(r == 0 || r == rc);
        if (r == 1)
            FZ_CHECK(strcmp(out, out2) == 0);
    }
    free(out);
    free(out2);
    return 0;
}
