/*
 * WebSocket (RFC 6455) and HTTPUpgrade (design.md 6) for the stream
 * stack: the HTTP/1.1 upgrade exchange as pure functions over bytes (the
 * request a server checks, the reply it sends; the request a client sends,
 * the reply it checks), and the WebSocket framing layer that sits on a
 * side's stack after the 101 (struct lr_stream; net/stream.h).
 *
 * What needs the inbound / outbound model (which path, which Host, whether
 * the peer is a trusted proxy, the VMess header as early data) is the
 * front stages' (inbound/front_http.c, outbound/cfront_http.c); this file
 * only sees plain arguments, so the fuzz targets drive it directly
 * (spec/fuzz/targets/fuzz_http_upgrade.c, fuzz_ws_frames.c).
 */
#ifndef LR_STREAM_WS_H
#define LR_STREAM_WS_H

#include <stddef.h>
#include <stdint.h>

#include "net/sock.h"
#include "net/stream.h"

/* ------------------------------------------------------------ HTTP heads */

/* The longest request or reply head we wait for; a head that is not
 * complete within this many bytes is not an upgrade for us. */
#define LR_HTTP_HEAD_MAX 16384
#define LR_HTTP_FIELDS_MAX 64

struct lr_http_field {
    const char *name, *value;    /* into the parsed bytes; value without OWS */
    uint16_t nlen, vlen;
};

struct lr_http_head {
    const char *method, *target; /* a request's */
    uint16_t mlen, tlen;
    uint16_t status;             /* a reply's */
    uint8_t minor;               /* HTTP/1.<minor> */
    size_t len;                  /* bytes of the head, its empty line included */
    uint32_t nfields;
    struct lr_http_field f[LR_HTTP_FIELDS_MAX];
};

/* Parses an HTTP/1.x request head (request line, fields, CRLF line ends,
 * no obsolete folding) at the start of p[0..n).  LR_OK: *h set, h->len
 * bytes are the head; LR_AGAIN: no complete head yet (and what is there
 * may still become one, within LR_HTTP_HEAD_MAX); LR_EINVAL: it is not
 * one (or too long, or more than LR_HTTP_FIELDS_MAX fields). */
int lr_http_parse_request(const uint8_t *p, size_t n, struct lr_http_head *h);
/* The same for a reply head (status line "HTTP/1.x NNN reason"). */
int lr_http_parse_response(const uint8_t *p, size_t n, struct lr_http_head *h);
/* The first field called `name` (case-insensitive), NULL if none. */
const struct lr_http_field *lr_http_field(const struct lr_http_head *h, const char *name);
/* Whether the comma-separated list v[0..len) holds token `tok`
 * (case-insensitive), as in "Connection: keep-alive, Upgrade". */
int lr_http_has_token(const char *v, size_t len, const char *tok);

/* -------------------------------------------------------- the upgrade */

/* What a ws / httpupgrade inbound accepts (its transport settings). */
struct lr_upgrade_cfg {
    const char *path;            /* the request path (its query is ignored) */
    const char *host;            /* NULL: any; else the Host (port ignored) */
    uint32_t max_early_data;     /* ws: most early data bytes accepted, 0 none */
    uint8_t ws;                  /* 1 WebSocket, 0 HTTPUpgrade */
};

/* A request head that asks for this inbound's upgrade; the pointers are
 * into the checked bytes. */
struct lr_upgrade_req {
    size_t head_len;             /* the head's bytes; the client's follow it */
    const char *key;             /* Sec-WebSocket-Key (NULL for httpupgrade without) */
    const char *upgrade;         /* the Upgrade value (httpupgrade echoes it) */
    const char *proto;           /* Sec-WebSocket-Protocol to echo (it carried
                                    early data), or NULL */
    const char *ed;              /* early data, base64url text (either form) */
    const char *real_ip;         /* X-Real-IP, or NULL */
    uint16_t key_len, upgrade_len, proto_len, ed_len, real_ip_len;
    uint8_t ed_path;             /* the early data came as the path's tail */
    uint8_t nxff;                /* X-Forwarded-For fields, in order */
    const char *xff[8];
    uint16_t xff_len[8];
    size_t ed_bytes;             /* early data once decoded (<= max_early_data) */
};

/* Decides on what a client sent first: LR_OK, an upgrade for this inbound
 * (*r set); LR_AGAIN, it may still become one (wait for more bytes);
 * LR_EINVAL, it is not one, and *why says why ("path", "no upgrade"...).
 * A request that cannot be one is refused as soon as that shows (a method
 * other than GET), not only when its head is complete. */
int lr_upgrade_check(const uint8_t *p, size_t n, const struct lr_upgrade_cfg *cfg,
                     struct lr_upgrade_req *r, const char **why);
/* Decodes r's early data into out (room for r->ed_bytes); its length. */
size_t lr_upgrade_early_data(const struct lr_upgrade_req *r, uint8_t *out);
/* The 101 reply to r (Sec-WebSocket-Accept, the protocol echo; for
 * httpupgrade the same, as v2fly and Xray send it); its length, or 0 when
 * it does not fit in cap. */
size_t lr_upgrade_reply(const struct lr_upgrade_req *r, int ws, char *out, size_t cap);

/* Whether an address is one of the inbound's trusted proxies. */
typedef int (*lr_trusted_fn)(const void *ctx, const struct lr_addr *a);
/* The client behind a trusted proxy, from r's X-Real-IP (unless it names
 * a trusted proxy itself) or else X-Forwarded-For read right to left,
 * skipping trusted proxies, up to the first address that is not one.
 * 1 and *out set (port 0: the headers carry none), 0 if they name none
 * (absent, or malformed before any address). */
int lr_upgrade_client_addr(const struct lr_upgrade_req *r, lr_trusted_fn trusted,
                           const void *ctx, struct lr_addr *out);

/* A client's upgrade request: GET path HTTP/1.1 with Host, Upgrade:
 * websocket, Connection: Upgrade, Sec-WebSocket-Key and -Version (for
 * httpupgrade too, as Xray sends them), and Sec-WebSocket-Protocol:
 * base64url(ed) when ed_len > 0.  Its length, or 0 if it does not fit. */
size_t lr_upgrade_request(char *out, size_t cap, const char *path, const char *host,
                          const char *key, const uint8_t *ed, size_t ed_len);
/* Checks the server's reply to lr_upgrade_request (key: the one sent;
 * proto[0..proto_len): the Sec-WebSocket-Protocol sent, if any): LR_OK
 * (*head_len its bytes, *echoed whether the server echoed proto, i.e. took
 * the early data), LR_AGAIN, LR_EINVAL (*why).  The 101 must carry the
 * upgrade back, and the right Sec-WebSocket-Accept for ws (for httpupgrade
 * when it has one). */
int lr_upgrade_check_reply(const uint8_t *p, size_t n, int ws, const char *key,
                           const char *proto, size_t proto_len,
                           size_t *head_len, int *echoed, const char **why);
/* A fresh Sec-WebSocket-Key: 16 random bytes in base64, NUL-terminated. */
void lr_ws_new_key(char out[25]);
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)), NUL-terminated. */
void lr_ws_accept(const char *key, size_t len, char out[29]);

/* base64url without padding (RFC 4648 5), what both forms of early data use. */
size_t lr_b64url_encode(const uint8_t *in, size_t n, char *out);
/* Decodes base64url, also read with the standard alphabet's '+' '/' and
 * trailing '=' (Xray's server does the same); LR_OK and *outlen, or
 * LR_EINVAL.  out may be NULL (just the length); out may equal in. */
int lr_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);

/* ------------------------------------------------------ the frame layer */

/* Largest data frame accepted (its payload).  Frames are streamed, never
 * held whole, so this is a sanity bound, far above what clients send
 * (v2ray and Xray write <= 8 KiB frames, others <= 64 KiB). */
#define LR_WS_FRAME_MAX (16u << 20)

/* A WebSocket layer for a side's stack, server (reads masked frames,
 * writes plain ones) or client (the other way round, a fresh masking key
 * per frame).  pre[0..pre_len): bytes already read from below that come
 * before anything the layer reads (frames that arrived with the request
 * or the reply), copied; raw_out: the first raw_out bytes written go out
 * unframed (the 101's tail, queued before the layer existed).  NULL on
 * ENOMEM.  Push it with lr_side_push; the side frees it. */
struct lr_stream *lr_ws_new(int server, const uint8_t *pre, size_t pre_len,
                            uint32_t raw_out);

extern const struct lr_stream_ops lr_stream_ws;

#endif
