/*
 * core/stream/tls.c on the server side: what a TLS client sends, through
 * luaray's layer (OpenSSL parses the records; ours are the SNI callback
 * matching the SNI against the certificates, the ALPN pick, the BIO over
 * the layer below with a prefix, the error mapping), and lr_tls_alpn_select
 * on its own.
 *
 * Input: ctrl(1), then the client's bytes.  ctrl & 1: the bytes are the
 * prefix an earlier stage read (our BIO: prefix, then the socket), else
 * they come through the socket (OpenSSL's socket BIO).  ctrl & 2: the
 * layer below is read in small pieces (the socket pair holds only a part
 * at first).  The server context has two certificates (a.test, *.b.test)
 * and ALPN h2, http/1.1; certificates are made at start (in /tmp).
 *
 * Checked: the handshake ends (done, or failed with a reason) within a
 * bounded number of steps once the client's bytes ran out; after it, reads
 * return > 0, 0, -EAGAIN or -errno only, never more than asked; the SNI
 * and ALPN the layer reports are strings of at most 255 bytes, the ALPN
 * one of ours; lr_tls_alpn_select returns a name of ours that is in the
 * client's list, and -1 only for a malformed list.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "fuzz_common.h"
#include "stream/tls.h"

static void *srv_ctx;
static const uint8_t ours[] = "\x02h2\x08http/1.1";

/* A self-signed P-256 certificate for `san` into a PEM file pair. */
static void make_cert(const char *cn, const char *san, char *certf, char *keyf)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FZ_CHECK(k && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    FZ_CHECK(e && X509_add_ext(x, e, -1));
    X509_EXTENSION_free(e);
    FZ_CHECK(X509_sign(x, k, EVP_sha256()) > 0);
    int fc = mkstemp(certf), fk = mkstemp(keyf);
    FZ_CHECK(fc >= 0 && fk >= 0);
    FILE *c = fdopen(fc, "w"), *kf = fdopen(fk, "w");
    FZ_CHECK(c && kf && PEM_write_X509(c, x) && PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL, NULL));
    fclose(c);
    fclose(kf);
    X509_free(x);
    EVP_PKEY_free(k);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char c1[] = "/tmp/fuzz_tls_a_XXXXXX", k1[] = "/tmp/fuzz_tls_ak_XXXXXX";
    char c2[] = "/tmp/fuzz_tls_b_XXXXXX", k2[] = "/tmp/fuzz_tls_bk_XXXXXX";
    make_cert("a.test", "DNS:a.test", c1, k1);
    make_cert("b.test", "DNS:*.b.test", c2, k2);
    struct lr_tls_pem pem[2] = {{c1, k1}, {c2, k2}};
    char *alpn[] = {"h2", "http/1.1"};
    char err[256];
    srv_ctx = lr_tls_server_new(pem, 2, alpn, 2, err, sizeof(err));
    if (!srv_ctx)
        fprintf(stderr, "fuzz_tls: %s\n", err);
    FZ_CHECK(srv_ctx);
    unlink(c1);
    unlink(k1);
    unlink(c2);
    unlink(k2);
    return 0;
}

static void check_alpn_select(const uint8_t *p, size_t n)
{
    const uint8_t *out = NULL;
    uint8_t olen = 0;
    int rc = lr_tls_alpn_select(ours, sizeof(ours) - 1, p, n, &out, &olen);
    FZ_CHECK(rc == 1 || rc == 0 || rc == -1);
    int wellformed = 1;
    for (size_t j = 0; j < n;) {
        if (p[j] == 0 || j + 1 + p[j] > n) {
            wellformed = 0;
            break;
        }
        j += 1 + (size_t)p[j];
    }
    FZ_CHECK((rc == -1) == !wellformed);
    if (rc == 1) {
        FZ_CHECK(out > p && out + olen <= p + n && out[-1] == olen);
        FZ_CHECK((olen == 2 && memcmp(out, "h2", 2) == 0) ||
                 (olen == 8 && memcmp(out, "http/1.1", 8) == 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    size_t n;
    const uint8_t *p = fz_take(&f, 65536, &n);
    check_alpn_select(p, n);

    int sv[2];
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    struct lr_stream tcp = {&lr_stream_tcp, NULL, sv[0], 0};
    int prefix = ctrl & 1;
    size_t fed = 0, piece = (ctrl & 2) ? 7 : n;
    struct lr_tls_stream *t = lr_tls_stream_new(srv_ctx, &tcp, prefix ? p : NULL,
                                                prefix ? n : 0);
    FZ_CHECK(t);
    if (prefix) {
        fed = n;
        shutdown(sv[1], SHUT_WR);
    }
    int rc = 0, steps = 0, shut = prefix;
    for (;;) {
        if (!prefix && fed < n) {
            size_t k = n - fed < piece ? n - fed : piece;
            ssize_t w = write(sv[1], p + fed, k);
            if (w > 0)
                fed += (size_t)w;
        }
        if (fed == n && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = 1;
        }
        int want = 0;
        rc = lr_tls_handshake(t, &want);
        FZ_CHECK(rc == 1 || rc == 0 || rc == -1);
        if (rc != 0)
            break;
        FZ_CHECK(want == LR_STREAM_WANT_READ || want == LR_STREAM_WANT_WRITE);
        if (fed == n && ++steps > 64)
            break; /* checked below: a handshake that neither ends nor fails */
        if (fed == n && want == LR_STREAM_WANT_READ && steps > 4)
            FZ_CHECK(!"waits to read after the client's end");
    }
    FZ_CHECK(rc != 0);
    if (rc < 0) {
        const char *why = lr_tls_error(t);
        FZ_CHECK(why && *why);
    } else {
        struct lr_stream *l = lr_tls_layer(t);
        FZ_CHECK(strlen(lr_tls_sni(t)) <= 255);
        const char *a = lr_tls_alpn(t);
        FZ_CHECK(!*a || strcmp(a, "h2") == 0 || strcmp(a, "http/1.1") == 0);
        uint8_t buf[4096];
        for (int i = 0; i < 64; i++) {
            ssize_t r = l->ops->read(l, buf, sizeof(buf));
            FZ_CHECK(r <= (ssize_t)sizeof(buf));
            if (r <= 0)
                break;
        }
        (void)l->ops->write(l, "x", 1);
        (void)l->ops->pending(l);
        l->ops->shutdown(l);
    }
    lr_tls_stream_free(t);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
