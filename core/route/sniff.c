/*
 * Sniffing: the server name of a TLS ClientHello (SNI) and the Host of an
 * HTTP/1 request, from the first bytes a client sends, so routing rules
 * and hooks see a domain even when the client connected to an IP.  Pure
 * parsers over untrusted bytes: every length is checked against what is
 * there, nothing is allocated.
 */
#include <string.h>
#include <strings.h>

#include "base/base.h"

static int valid_host(const uint8_t *h, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = h[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

static int copy_host(const uint8_t *h, size_t n, char *out, size_t cap)
{
    if (!valid_host(h, n) || n + 1 > cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((h[i] >= 'A' && h[i] <= 'Z') ? h[i] + 32 : h[i]);
    out[n] = 0;
    return 1;
}

LR_API int lr_sniff_tls_sni(const uint8_t *p, size_t n, char *out, size_t cap)
{
    /* record: 0x16, version 0x03 0x0x, length; handshake: 0x01 ClientHello */
    if (n < 1)
        return 0;
    if (p[0] != 0x16)
        return -1;
    if (n < 5)
        return 0;
    if (p[1] != 0x03)
        return -1;
    size_t rec = lr_get_be16(p + 3);
    const uint8_t *h = p + 5;
    size_t hn = n - 5 < rec ? n - 5 : rec;
    if (hn < 4)
        return n - 5 < rec ? 0 : -1;
    if (h[0] != 0x01)
        return -1;
    size_t hlen = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    /* only the first record is parsed; a ClientHello spread over several
     * records is rare and is treated as "no SNI" */
    if (4 + hlen > rec)
        return -1;
    if (hn < 4 + hlen)
        return 0;
    const uint8_t *q = h + 4, *end = h + 4 + hlen;
    if (end - q < 2 + 32 + 1)
        return -1;
    q += 2 + 32;                              /* version, random */
    q += 1 + q[0];                            /* session id */
    if (end - q < 2)
        return -1;
    q += 2 + lr_get_be16(q);                  /* cipher suites */
    if (end - q < 1)
        return -1;
    q += 1 + q[0];                            /* compression methods */
    if (end - q < 2)
        return -1;
    size_t extlen = lr_get_be16(q);
    q += 2;
    if ((size_t)(end - q) < extlen)
        return -1;
    end = q + extlen;
    while (end - q >= 4) {
        uint16_t type = lr_get_be16(q), len = lr_get_be16(q + 2);
        q += 4;
        if ((size_t)(end - q) < len)
            return -1;
        if (type == 0) { /* server_name */
            const uint8_t *s = q, *se = q + len;
            if (se - s < 2)
                return -1;
            s += 2;
            while (se - s >= 3) {
                uint8_t nt = s[0];
                uint16_t nl = lr_get_be16(s + 1);
                s += 3;
                if ((size_t)(se - s) < nl)
                    return -1;
                if (nt == 0)
                    return copy_host(s, nl, out, cap);
                s += nl;
            }
            return -1;
        }
        q += len;
    }
    return -1;
}

static const char *const methods[] = {"GET ", "POST ", "HEAD ", "PUT ", "DELETE ",
                                      "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "};

LR_API int lr_sniff_http_host(const uint8_t *p, size_t n, char *out,
                              size_t cap)
{
    int maybe = 0;
    for (size_t i = 0; i < LR_ARRAY_LEN(methods); i++) {
        size_t ml = strlen(methods[i]);
        size_t k = n < ml ? n : ml;
        if (memcmp(p, methods[i], k) == 0) {
            if (n < ml)
                return 0;
            maybe = 1;
            break;
        }
    }
    if (!maybe)
        return -1;
    size_t lim = n < 8192 ? n : 8192;
    const uint8_t *endh = memmem(p, lim, "\r\n\r\n", 4);
    const uint8_t *stop = endh ? endh + 2 : p + lim;
    const uint8_t *line = memmem(p, (size_t)(stop - p), "\r\n", 2);
    while (line && line + 2 < stop) {
        line += 2;
        const uint8_t *le = memmem(line, (size_t)(stop - line), "\r\n", 2);
        if (!le)
            break;
        size_t ll = (size_t)(le - line);
        if (ll > 5 && strncasecmp((const char *)line, "host:", 5) == 0) {
            const uint8_t *v = line + 5, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            /* strip a port, keep IPv6 literals out (not a domain) */
            const uint8_t *colon = memchr(v, ':', (size_t)(ve - v));
            if (colon)
                ve = colon;
            return copy_host(v, (size_t)(ve - v), out, cap);
        }
        line = le;
    }
    if (endh || n >= 8192)
        return -1;
    return 0;
}
