/*
 * TLS (OpenSSL) as a stream layer, server and client (design.md 6): built
 * contexts per inbound / outbound, the handshake steps and the layer.
 * See stream/README for where the transports fit.
 */
#ifndef LR_STREAM_TLS_H
#define LR_STREAM_TLS_H

/* Frees what lr_tls_build made (an inbound's or outbound's ctx). */
void lr_tls_ctx_free(void *ctx);

#endif
