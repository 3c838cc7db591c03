/*
 * TLS as a stream layer (tls.h), on OpenSSL.
 *
 * Contexts.  A server context is one SSL_CTX per certificate, the first
 * the default; the SNI callback switches a connection to the one whose
 * leaf names the SNI (X509_check_host).  All of them share one set of
 * session-ticket keys made once per process, so a ticket issued before a
 * reload, or by another worker, still resumes.  A client context holds its
 * verification (the system store, `ca`, the name; or only a pin) and the
 * newest session the server gave it.
 *
 * The layer.  When the layer below is the socket itself and no earlier
 * stage read ahead, OpenSSL reads and writes the socket directly (a socket
 * BIO: what kTLS needs); otherwise a BIO of ours reads the prefix, then
 * through `lower`.  SSL_read / SSL_write map to the stream ops: WANT_READ
 * while writing or WANT_WRITE while reading set `want` (the direction the
 * relay must wait for besides its own); pending is what OpenSSL holds
 * already decrypted or read, plus the prefix.  Buffers are released when
 * empty (SSL_MODE_RELEASE_BUFFERS), so an idle connection holds only the
 * SSL state.  Renegotiation is refused; a peer's missing close_notify is
 * an end of stream like a FIN (the VMess framing detects a cut).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/log.h"
#include "stream/tls.h"

int lr_tls_ktls_wanted;

/* A TLS 1.3 sender updates its keys after this many bytes (RFC 8446 5.5:
 * AES-GCM keys before about 2^24.5 full records, 2^38.5 bytes; a margin
 * below).  LURAY_TLS_REKEY_BYTES sets it (the specs use a small one). */
static uint64_t rekey_bytes = (uint64_t)1 << 36;

/* ------------------------------------------------------------ contexts */

/* Sessions a client context keeps for resumption (per outbound). */
#define TLS_SESSIONS 64

struct tls_ctx {
    int server;
    SSL_CTX *ssl;                /* the default (server) / the one (client) */
    /* server: one context per certificate, [0] = ssl; their leaves */
    SSL_CTX **by_cert;
    X509 **leaf;
    size_t ncerts;
    /* ALPN, wire format */
    uint8_t *alpn;
    size_t alpn_len;
    /* client */
    char *server_name;           /* SNI and the name verified; NULL: none */
    uint8_t pin[32];
    int has_pin;
    pthread_mutex_t lock;        /* the cached sessions */
    SSL_SESSION *sessions[TLS_SESSIONS]; /* oldest first */
    int nsessions;
};

/* Per SSL: what the callbacks found. */
struct lr_tls_stream {
    struct lr_stream s;          /* first: the layer */
    SSL *ssl;
    struct tls_ctx *ctx;
    uint8_t *prefix;             /* bytes an earlier stage read, not yet taken */
    size_t prefix_len, prefix_off;
    uint8_t sni_known, alpn_refused, shut, ktls;
    uint8_t want_rd, want_wr;    /* read needs WRITE / write needs READ */
    uint64_t sent;               /* bytes written since the last key update */
    uint32_t key_updates;        /* ours, sent */
    char err[160];
};

static int ex_stream = -1;       /* SSL ex_data index: the lr_tls_stream */
static int ex_ctx = -1;          /* SSL_CTX ex_data index: the tls_ctx */
static uint8_t ticket_keys[80];  /* name 16, HMAC 32, AES 32 */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_ok;
static BIO_METHOD *stream_bio;

static BIO_METHOD *stream_bio_method(void);

static void init_once(void)
{
    ex_stream = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ex_ctx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    stream_bio = stream_bio_method();
    once_ok = ex_stream >= 0 && ex_ctx >= 0 && stream_bio &&
              RAND_bytes(ticket_keys, sizeof(ticket_keys)) == 1;
    const char *k = getenv("LURAY_KTLS");
    if (k && *k == '1')
        lr_tls_ktls_wanted = 1;
    const char *rb = getenv("LURAY_TLS_REKEY_BYTES");
    if (rb && *rb) {
        char *end;
        unsigned long long v = strtoull(rb, &end, 10);
        if (*end == 0 && v >= 16384)
            rekey_bytes = v;
    }
}

static int init(char *err, size_t errlen)
{
    pthread_once(&once, init_once);
    if (!once_ok) {
        snprintf(err, errlen, "cannot initialise OpenSSL");
        return -1;
    }
    return 0;
}

/* The first queued OpenSSL error's reason ("no such file", "key values
 * mismatch"), then the queue cleared. */
static const char *ossl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, n, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

static int readable_file(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s '%s': %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static int alpn_wire(struct tls_ctx *t, char *const *alpn, size_t nalpn)
{
    size_t len = 0;
    for (size_t i = 0; i < nalpn; i++)
        len += 1 + strlen(alpn[i]);
    if (!len)
        return 0;
    if (!(t->alpn = malloc(len)))
        return -1;
    for (size_t i = 0; i < nalpn; i++) {
        size_t k = strlen(alpn[i]);
        if (k == 0 || k > 255)
            return -1;
        t->alpn[t->alpn_len++] = (uint8_t)k;
        memcpy(t->alpn + t->alpn_len, alpn[i], k);
        t->alpn_len += k;
    }
    return 0;
}

void lr_tls_ctx_free(void *p)
{
    struct tls_ctx *t = p;
    if (!t)
        return;
    if (t->server) {
        for (size_t i = 0; i < t->ncerts; i++) {
            SSL_CTX_free(t->by_cert[i]);
            X509_free(t->leaf[i]);
        }
    } else {
        SSL_CTX_free(t->ssl);
        for (int i = 0; i < t->nsessions; i++)
            SSL_SESSION_free(t->sessions[i]);
        pthread_mutex_destroy(&t->lock);
    }
    free(t->by_cert);
    free(t->leaf);
    free(t->alpn);
    free(t->server_name);
    free(t);
}

static void common_options(SSL_CTX *s)
{
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION);
    uint64_t op = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF;
#ifdef SSL_OP_ENABLE_KTLS
    if (lr_tls_ktls_wanted)
        op |= SSL_OP_ENABLE_KTLS;
#endif
    SSL_CTX_set_options(s, op);
    /* no buffers while idle; the relay may retry a write from a buffer it
     * compacted meanwhile, and takes what one record carried */
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

int lr_tls_alpn_select(const uint8_t *ours, size_t ours_len, const uint8_t *theirs,
                       size_t theirs_len, const uint8_t **out, uint8_t *outlen)
{
    /* the client's list must be well formed: non-empty names that fill it */
    for (size_t j = 0; j < theirs_len;) {
        size_t k = theirs[j];
        if (k == 0 || j + 1 + k > theirs_len)
            return -1;
        j += 1 + k;
    }
    for (size_t i = 0; i + 1 <= ours_len; i += 1 + (size_t)ours[i]) {
        size_t k = ours[i];
        if (i + 1 + k > ours_len)
            return 0;
        for (size_t j = 0; j < theirs_len; j += 1 + (size_t)theirs[j]) {
            if (theirs[j] == k && memcmp(theirs + j + 1, ours + i + 1, k) == 0) {
                *out = theirs + j + 1;
                *outlen = (uint8_t)k;
                return 1;
            }
        }
    }
    return 0;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    struct tls_ctx *t = arg;
    struct lr_tls_stream *st = SSL_get_ex_data(ssl, ex_stream);
    const uint8_t *o = NULL;
    uint8_t ol = 0;
    int rc = lr_tls_alpn_select(t->alpn, t->alpn_len, in, inlen, &o, &ol);
    if (rc == 1) {
        *out = o;
        *outlen = ol;
        return SSL_TLSEXT_ERR_OK;
    }
    /* no protocol in common: finish without ALPN, as common servers do;
     * the front decides what that client is */
    if (st)
        st->alpn_refused = 1;
    return SSL_TLSEXT_ERR_NOACK;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_ctx *t = arg;
    struct lr_tls_stream *st = SSL_get_ex_data(ssl, ex_stream);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !*name)
        return SSL_TLSEXT_ERR_OK; /* the default certificate */
    for (size_t i = 0; i < t->ncerts; i++) {
        if (X509_check_host(t->leaf[i], name, strlen(name),
                            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1) {
            if (st)
                st->sni_known = 1;
            if (i > 0 && !SSL_set_SSL_CTX(ssl, t->by_cert[i]))
                return SSL_TLSEXT_ERR_ALERT_FATAL;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown: the default certificate */
}

static SSL_CTX *server_ctx(struct tls_ctx *t, const struct lr_tls_pem *pem, X509 **leaf,
                           char *err, size_t errlen)
{
    char why[128];
    if (readable_file("certificate", pem->cert, err, errlen) != 0 ||
        readable_file("key", pem->key, err, errlen) != 0)
        return NULL;
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    if (!s) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ossl_reason(why, sizeof(why)));
        return NULL;
    }
    common_options(s);
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(s, pem->cert) != 1) {
        snprintf(err, errlen, "cannot load certificate '%s': %s", pem->cert,
                 ossl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(s, pem->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errlen, "key '%s' does not match certificate '%s'", pem->key,
                     pem->cert);
        else
            snprintf(err, errlen, "cannot load key '%s': %s", pem->key,
                     ossl_reason(why, sizeof(why)));
        ERR_clear_error();
        goto fail;
    }
    if (SSL_CTX_check_private_key(s) != 1) {
        snprintf(err, errlen, "key '%s' does not match certificate '%s'", pem->key, pem->cert);
        ERR_clear_error();
        goto fail;
    }
    X509 *x = SSL_CTX_get0_certificate(s);
    if (!x || !X509_up_ref(x)) {
        snprintf(err, errlen, "certificate '%s': no leaf", pem->cert);
        goto fail;
    }
    *leaf = x;
    SSL_CTX_set_session_id_context(s, (const uint8_t *)"luaray", 6);
    /* stateless tickets only: no server-side session cache to grow */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    /* two tickets a handshake (OpenSSL's default): a client that offers
     * each ticket once, as ours does, gains one per connection, so a burst
     * of connections finds tickets to resume with */
    SSL_CTX_set_num_tickets(s, 2);
    if (SSL_CTX_set_tlsext_ticket_keys(s, ticket_keys, sizeof(ticket_keys)) != 1) {
        snprintf(err, errlen, "cannot set the session ticket keys");
        goto fail_leaf;
    }
    if (t->alpn_len)
        SSL_CTX_set_alpn_select_cb(s, alpn_cb, t);
    SSL_CTX_set_ex_data(s, ex_ctx, t);
    return s;
fail_leaf:
    X509_free(*leaf);
    *leaf = NULL;
fail:
    SSL_CTX_free(s);
    return NULL;
}

void *lr_tls_server_new(const struct lr_tls_pem *certs, size_t ncerts,
                        char *const *alpn, size_t nalpn, char *err, size_t errlen)
{
    if (init(err, errlen) != 0)
        return NULL;
    if (ncerts == 0) {
        snprintf(err, errlen, "tls needs a certificate");
        return NULL;
    }
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (!t || !(t->by_cert = calloc(ncerts, sizeof(*t->by_cert))) ||
        !(t->leaf = calloc(ncerts, sizeof(*t->leaf))) || alpn_wire(t, alpn, nalpn) != 0) {
        snprintf(err, errlen, "out of memory");
        if (t)
            t->server = 1;
        lr_tls_ctx_free(t);
        return NULL;
    }
    t->server = 1;
    for (size_t i = 0; i < ncerts; i++) {
        if (!(t->by_cert[i] = server_ctx(t, &certs[i], &t->leaf[i], err, errlen))) {
            lr_tls_ctx_free(t);
            return NULL;
        }
        t->ncerts = i + 1;
    }
    t->ssl = t->by_cert[0];
    /* the SNI is looked at even with one certificate: the front asks
     * whether it named us */
    SSL_CTX_set_tlsext_servername_callback(t->ssl, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(t->ssl, t);
    return t;
}

/* A pinned server: the leaf's SHA-256 is all that counts. */
static int pin_verify(X509_STORE_CTX *xs, void *arg)
{
    struct tls_ctx *t = arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (leaf && X509_digest(leaf, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32 &&
        CRYPTO_memcmp(md, t->pin, 32) == 0)
        return 1;
    X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
    return 0;
}

/* The client keeps the TLS_SESSIONS newest sessions the server issued
 * (the oldest goes when a new one comes).  It keeps a copy: OpenSSL marks
 * the session its connection holds last as not resumable when that
 * connection ends without our close_notify (the SSL 3.0 rule; TLS 1.1 and
 * later allow resuming it, RFC 4346 7.2.1), which the relay's ends often
 * are (the peer's FIN first, a reset), and that would spoil every ticket
 * of a resumed connection and the last of a full one. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_ctx *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_ctx);
    if (!t || !(sess = SSL_SESSION_dup(sess)))
        return 0;
    SSL_SESSION *old = NULL;
    pthread_mutex_lock(&t->lock);
    if (t->nsessions == TLS_SESSIONS) {
        old = t->sessions[0];
        memmove(t->sessions, t->sessions + 1, sizeof(t->sessions[0]) * (TLS_SESSIONS - 1));
        t->nsessions--;
    }
    t->sessions[t->nsessions++] = sess;
    pthread_mutex_unlock(&t->lock);
    SSL_SESSION_free(old);
    return 0; /* OpenSSL frees its own; the copy is ours */
}

/* The session a new client connection offers, with a reference of its
 * own, or NULL: the newest resumable one.  A TLS 1.3 session is taken out
 * (a ticket is offered once: RFC 8446 C.4, a reused ticket links the
 * connections that carry it for anyone watching); a TLS 1.2 one stays. */
static SSL_SESSION *take_session(struct tls_ctx *c)
{
    SSL_SESSION *s = NULL;
    pthread_mutex_lock(&c->lock);
    while (c->nsessions > 0) {
        SSL_SESSION *top = c->sessions[c->nsessions - 1];
        if (!SSL_SESSION_is_resumable(top)) {
            c->nsessions--;
            SSL_SESSION_free(top);
            continue;
        }
        if (SSL_SESSION_get_protocol_version(top) == TLS1_3_VERSION) {
            c->nsessions--;
            s = top;                 /* its reference passes to us */
        } else if (SSL_SESSION_up_ref(top)) {
            s = top;
        }
        break;
    }
    pthread_mutex_unlock(&c->lock);
    return s;
}

void *lr_tls_client_new(const char *server_name, const char *host, const char *ca,
                        const uint8_t *pin, char *const *alpn, size_t nalpn,
                        char *err, size_t errlen)
{
    char why[128];
    if (init(err, errlen) != 0)
        return NULL;
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    if (alpn_wire(t, alpn, nalpn) != 0 ||
        (server_name && !(t->server_name = strdup(server_name)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!(t->ssl = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ossl_reason(why, sizeof(why)));
        goto fail;
    }
    SSL_CTX *s = t->ssl;
    common_options(s);
    SSL_CTX_set_ex_data(s, ex_ctx, t);
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
    if (pin) {
        memcpy(t->pin, pin, 32);
        t->has_pin = 1;
        SSL_CTX_set_cert_verify_callback(s, pin_verify, t);
    } else {
        ERR_clear_error();
        if (SSL_CTX_set_default_verify_paths(s) != 1)
            ERR_clear_error(); /* no system store: `ca` may still do */
        if (ca) {
            if (readable_file("CA file", ca, err, errlen) != 0)
                goto fail;
            if (SSL_CTX_load_verify_locations(s, ca, NULL) != 1) {
                snprintf(err, errlen, "cannot load CA file '%s': %s", ca,
                         ossl_reason(why, sizeof(why)));
                goto fail;
            }
        }
        X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(s);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = server_name ? X509_VERIFY_PARAM_set1_host(vp, server_name, 0)
                 : host ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) : 0;
        if (ok != 1) {
            snprintf(err, errlen, "tls: no name to verify the server by (set server_name)");
            ERR_clear_error();
            goto fail;
        }
    }
    if (t->alpn_len && SSL_CTX_set_alpn_protos(s, t->alpn, (unsigned)t->alpn_len) != 0) {
        snprintf(err, errlen, "cannot set ALPN");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s, new_session_cb);
    return t;
fail:
    lr_tls_ctx_free(t);
    return NULL;
}

/* ------------------------------------------------------------ the BIO */

/* Reads the prefix, then through the layer below; writes through it. */
static int sbio_read(BIO *b, char *buf, int n)
{
    struct lr_tls_stream *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (t->prefix) {
        size_t k = t->prefix_len - t->prefix_off;
        if (k > (size_t)n)
            k = (size_t)n;
        memcpy(buf, t->prefix + t->prefix_off, k);
        t->prefix_off += k;
        if (t->prefix_off == t->prefix_len) {
            free(t->prefix);
            t->prefix = NULL;
        }
        return (int)k;
    }
    struct lr_stream *lo = t->s.lower;
    ssize_t r = lo->ops->read(lo, buf, (size_t)n);
    if (r >= 0)
        return (int)r;
    if (r == -EAGAIN) {
        BIO_set_retry_read(b);
        return -1;
    }
    errno = (int)-r;
    return -1;
}

static int sbio_write(BIO *b, const char *buf, int n)
{
    struct lr_tls_stream *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    struct lr_stream *lo = t->s.lower;
    ssize_t r = lo->ops->write(lo, buf, (size_t)n);
    if (r > 0)
        return (int)r;
    if (r == 0 || r == -EAGAIN) {
        BIO_set_retry_write(b);
        return -1;
    }
    errno = (int)-r;
    return -1;
}

static long sbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING: {
        struct lr_tls_stream *t = BIO_get_data(b);
        return t && t->prefix ? (long)(t->prefix_len - t->prefix_off) : 0;
    }
    default:
        return 0;
    }
}

static int sbio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *stream_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "luaray stream");
    if (!m || !BIO_meth_set_read(m, sbio_read) || !BIO_meth_set_write(m, sbio_write) ||
        !BIO_meth_set_ctrl(m, sbio_ctrl) || !BIO_meth_set_create(m, sbio_create)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------ the layer */

static ssize_t ssl_fail(struct lr_tls_stream *t, int r, int writing)
{
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (writing)
            t->want_wr = LR_STREAM_WANT_READ;
        t->s.want = (uint8_t)(t->want_rd | t->want_wr);
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        if (!writing)
            t->want_rd = LR_STREAM_WANT_WRITE;
        t->s.want = (uint8_t)(t->want_rd | t->want_wr);
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return writing ? -EPIPE : 0;
    case SSL_ERROR_SYSCALL: {
        int en = errno;
        ERR_clear_error();
        if (en == EAGAIN || en == EWOULDBLOCK || en == EINTR)
            return -EAGAIN;
        if (!writing && en == 0)
            return 0; /* the peer's end without close_notify */
        return en ? -en : -EPIPE;
    }
    default:
        ossl_reason(t->err, sizeof(t->err));
        return writing ? -EPIPE : -EPROTO;
    }
}

static ssize_t tls_read(struct lr_stream *l, void *buf, size_t n)
{
    struct lr_tls_stream *t = (struct lr_tls_stream *)l;
    if (n > INT_MAX)
        n = INT_MAX;
    errno = 0;
    int r = SSL_read(t->ssl, buf, (int)n);
    if (r > 0) {
        if (t->want_rd) {
            t->want_rd = 0;
            l->want = t->want_wr;
        }
        return r;
    }
    return ssl_fail(t, r, 0);
}

static ssize_t tls_write(struct lr_stream *l, const void *buf, size_t n)
{
    struct lr_tls_stream *t = (struct lr_tls_stream *)l;
    if (n > INT_MAX)
        n = INT_MAX;
    if (n == 0)
        return 0;
    errno = 0;
    int r = SSL_write(t->ssl, buf, (int)n);
    if (r > 0) {
        if (t->want_wr) {
            t->want_wr = 0;
            l->want = t->want_rd;
        }
        /* our keys are updated ahead of the next record once they have
         * carried rekey_bytes (TLS 1.3; not with kernel TLS, whose 3.0
         * OpenSSL cannot rekey) */
        t->sent += (uint64_t)r;
        if (t->sent >= rekey_bytes && !t->ktls && SSL_version(t->ssl) == TLS1_3_VERSION &&
            SSL_key_update(t->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1) {
            t->key_updates++;
            lr_debug("tls: key update %u after %llu bytes", (unsigned)t->key_updates,
                     (unsigned long long)t->sent);
            t->sent = 0;
        }
        return r;
    }
    return ssl_fail(t, r, 1);
}

static void tls_shutdown(struct lr_stream *l)
{
    struct lr_tls_stream *t = (struct lr_tls_stream *)l;
    if (!t->shut) {
        /* close_notify (best effort: a full socket loses it), then FIN */
        t->shut = 1;
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
    l->lower->ops->shutdown(l->lower);
}

static size_t tls_pending(struct lr_stream *l)
{
    struct lr_tls_stream *t = (struct lr_tls_stream *)l;
    int p = SSL_pending(t->ssl);
    if (p > 0)
        return (size_t)p;
    if (t->prefix)
        return t->prefix_len - t->prefix_off;
    return SSL_has_pending(t->ssl) ? 1 : 0;
}

void lr_tls_stream_free(struct lr_tls_stream *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t->prefix);
    free(t);
}

static void tls_free(struct lr_stream *l)
{
    lr_tls_stream_free((struct lr_tls_stream *)l);
}

static const struct lr_stream_ops tls_ops = {
    .name = "tls",
    .read = tls_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .free = tls_free,
    .pending = tls_pending,
};

struct lr_tls_stream *lr_tls_stream_new(void *ctx, struct lr_stream *lower,
                                        const void *prefix, size_t prefix_len)
{
    struct tls_ctx *c = ctx;
    struct lr_tls_stream *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->s.ops = &tls_ops;
    t->s.lower = lower;
    t->s.fd = lower->fd;
    t->ctx = c;
    if (!(t->ssl = SSL_new(c->ssl)))
        goto fail;
    SSL_set_ex_data(t->ssl, ex_stream, t);
    if (prefix_len) {
        if (!(t->prefix = malloc(prefix_len)))
            goto fail;
        memcpy(t->prefix, prefix, prefix_len);
        t->prefix_len = prefix_len;
    }
    if (lower->ops == &lr_stream_tcp && !prefix_len) {
        /* straight on the socket: one system call per read, and kTLS can
         * take over the record layer */
        if (SSL_set_fd(t->ssl, lower->fd) != 1)
            goto fail;
    } else {
        BIO *b = BIO_new(stream_bio);
        if (!b)
            goto fail;
        BIO_set_data(b, t);
        SSL_set_bio(t->ssl, b, b);
    }
    if (c->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (c->server_name && SSL_set_tlsext_host_name(t->ssl, c->server_name) != 1)
            goto fail;
        SSL_SESSION *s = take_session(c);
        if (s) {
            SSL_set_session(t->ssl, s); /* takes a reference of its own */
            SSL_SESSION_free(s);
        }
    }
    return t;
fail:
    ERR_clear_error();
    lr_tls_stream_free(t);
    return NULL;
}

struct lr_tls_stream *lr_tls_of(struct lr_stream *top)
{
    for (struct lr_stream *l = top; l; l = l->lower)
        if (l->ops == &tls_ops)
            return (struct lr_tls_stream *)l;
    return NULL;
}

struct lr_stream *lr_tls_layer(struct lr_tls_stream *t)
{
    return &t->s;
}

int lr_tls_handshake(struct lr_tls_stream *t, int *want)
{
    *want = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
#ifdef SSL_OP_ENABLE_KTLS
        t->ktls = (uint8_t)((BIO_get_ktls_send(SSL_get_wbio(t->ssl)) ? 1 : 0) |
                            (BIO_get_ktls_recv(SSL_get_rbio(t->ssl)) ? 2 : 0));
#endif
        return 1;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        *want = LR_STREAM_WANT_READ;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *want = LR_STREAM_WANT_WRITE;
        return 0;
    }
    long v = SSL_get_verify_result(t->ssl);
    if (!t->ctx->server && v != X509_V_OK) {
        if (v == X509_V_ERR_CERT_REJECTED && t->ctx->has_pin)
            snprintf(t->err, sizeof(t->err), "server certificate does not match pinned_sha256");
        else if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            snprintf(t->err, sizeof(t->err), "server certificate is not for %s",
                     t->ctx->server_name ? t->ctx->server_name : "this address");
        else
            snprintf(t->err, sizeof(t->err), "server certificate not trusted: %s",
                     X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL || (e == SSL_ERROR_SSL && !ERR_peek_error())) {
        int en = errno;
        snprintf(t->err, sizeof(t->err), "%s", en ? strerror(en) : "connection closed");
        ERR_clear_error();
    } else {
        ossl_reason(t->err, sizeof(t->err));
    }
    return -1;
}

const char *lr_tls_error(const struct lr_tls_stream *t)
{
    return t->err[0] ? t->err : "handshake failed";
}

const char *lr_tls_sni(const struct lr_tls_stream *t)
{
    const char *n = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    return n ? n : "";
}

int lr_tls_sni_known(const struct lr_tls_stream *t)
{
    return t->sni_known;
}

const char *lr_tls_alpn(const struct lr_tls_stream *t)
{
    /* names are at most 255 bytes; one static buffer per thread */
    static __thread char buf[256];
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (!p || !n)
        return "";
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

int lr_tls_alpn_refused(const struct lr_tls_stream *t)
{
    return t->alpn_refused;
}

int lr_tls_resumed(const struct lr_tls_stream *t)
{
    return SSL_session_reused(t->ssl);
}

const char *lr_tls_version(const struct lr_tls_stream *t)
{
    return SSL_get_version(t->ssl);
}

int lr_tls_ktls(const struct lr_tls_stream *t, int send)
{
    return (t->ktls & (send ? 1 : 2)) != 0;
}
