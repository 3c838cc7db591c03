/*
 * TLS (OpenSSL) as a stream layer, server and client (design.md 6): built
 * contexts per inbound / outbound, the handshake steps and the layer.
 *
 * A context is built when a generation is (start, -t, SIGHUP on the
 * reload thread): certificate chains and keys are read then, so a bad file
 * fails that build and the running generation keeps its own.  A
 * connection's layer (struct lr_tls_stream) reads and writes through the
 * layer below it (a custom BIO over `lower`), after the bytes an earlier
 * stage already read (a prefix).  It is driven by its stage until the
 * handshake is done, then pushed on the side's stack; from then on the
 * relay calls it like any layer (stream.h).
 */
#ifndef LR_STREAM_TLS_H
#define LR_STREAM_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "net/stream.h"

/* A certificate chain (PEM, leaf first) and its private key (PEM). */
struct lr_tls_pem {
    const char *cert, *key;
};

/* A server context: the first certificate is the default (no SNI, or an
 * SNI none of them names), the others are chosen when the SNI matches one
 * of their names (SAN DNS names, wildcards; the CN when there is no SAN).
 * ALPN: the server's preference among the client's; no overlap finishes the
 * handshake without ALPN.  TLS 1.2 and 1.3, session tickets with keys made
 * once per process.  NULL with err ("cannot read certificate 'a.pem': No
 * such file or directory") on failure. */
void *lr_tls_server_new(const struct lr_tls_pem *certs, size_t ncerts,
                        char *const *alpn, size_t nalpn, char *err, size_t errlen);

/* A client context.  It always verifies the server: with pin (32 bytes,
 * the SHA-256 of the leaf's DER) only the leaf's hash counts; otherwise the
 * chain against the system store plus `ca` (a PEM file, or NULL) and the
 * name: server_name, or (server_name NULL) `host` as an IP address.
 * server_name is also the SNI.  ALPN offered when nalpn > 0.  Sessions are
 * kept (the newest one) and offered to the next connection. */
void *lr_tls_client_new(const char *server_name, const char *host, const char *ca,
                        const uint8_t *pin, char *const *alpn, size_t nalpn,
                        char *err, size_t errlen);

/* Frees what lr_tls_server_new / lr_tls_client_new made (NULL is fine). */
void lr_tls_ctx_free(void *ctx);

/* One connection's TLS. */
struct lr_tls_stream;

/* A new TLS layer over `lower` (the side's current top, not yet pushed),
 * reading first the `prefix_len` bytes at `prefix` (copied).  NULL when out
 * of memory. */
struct lr_tls_stream *lr_tls_stream_new(void *ctx, struct lr_stream *lower,
                                        const void *prefix, size_t prefix_len);
/* The layer to push on the side (lr_side_push) once the handshake is done. */
struct lr_stream *lr_tls_layer(struct lr_tls_stream *t);
/* Frees a layer that was never pushed (a pushed one is freed by its side). */
void lr_tls_stream_free(struct lr_tls_stream *t);

/* Runs the handshake: 1 done, 0 not yet (*want: LR_STREAM_WANT_READ or
 * _WRITE), -1 failed (lr_tls_error says why; an alert may have gone out). */
int lr_tls_handshake(struct lr_tls_stream *t, int *want);
/* Why the handshake failed: "certificate verify failed: unable to get
 * local issuer certificate", "server certificate does not match
 * pinned_sha256", "wrong version number", ... */
const char *lr_tls_error(const struct lr_tls_stream *t);

/* The TLS layer in a side's stack (from its top down), or NULL: what the
 * access log or the hooks' ctx.tls.sni would ask. */
struct lr_tls_stream *lr_tls_of(struct lr_stream *top);

/* After the handshake. */
const char *lr_tls_sni(const struct lr_tls_stream *t);     /* "" none */
int lr_tls_sni_known(const struct lr_tls_stream *t);       /* sent, and one of ours names it */
const char *lr_tls_alpn(const struct lr_tls_stream *t);    /* "" none */
int lr_tls_alpn_refused(const struct lr_tls_stream *t);    /* offered, none of ours */
int lr_tls_resumed(const struct lr_tls_stream *t);
const char *lr_tls_version(const struct lr_tls_stream *t); /* "TLSv1.3" */
/* The kernel does the record layer (kTLS) in this direction. */
int lr_tls_ktls(const struct lr_tls_stream *t, int send);

/* The ALPN pick (RFC 7301): the first of ours (wire format: length-prefixed
 * names) that the client's list `theirs` holds; 1 and *out / *outlen set,
 * 0 none, -1 when `theirs` is malformed. */
int lr_tls_alpn_select(const uint8_t *ours, size_t ours_len, const uint8_t *theirs,
                       size_t theirs_len, const uint8_t **out, uint8_t *outlen);

/* Turns kTLS on for the contexts built after this (SSL_OP_ENABLE_KTLS;
 * the bench's switch, LURAY_KTLS=1). */
extern int lr_tls_ktls_wanted;

#endif
