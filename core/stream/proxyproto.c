/*
 * The PROXY protocol parser (proxyproto.h): every length is checked
 * against what is there, nothing is allocated, nothing is read past n.
 */
#include <arpa/inet.h>
#include <string.h>

#include "stream/proxyproto.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static int bad(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return LR_PP_BAD;
}

/* ------------------------------------------------------------ version 2 */

static int parse_v2(const uint8_t *p, size_t n, struct lr_pp_hdr *h, const char **why)
{
    size_t k = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
    if (memcmp(p, v2_sig, k) != 0)
        return bad(why, "not a PROXY protocol header");
    if (n < 13)
        return LR_PP_AGAIN;
    if ((p[12] >> 4) != 2)
        return bad(why, "PROXY v2: version is not 2");
    int cmd = p[12] & 0x0f;
    if (cmd > 1)
        return bad(why, "PROXY v2: unknown command");
    if (n < 14)
        return LR_PP_AGAIN;
    int fam = p[13] >> 4, proto = p[13] & 0x0f;
    /* LOCAL: the proxy's own connection (a health check); the family and
     * whatever follows are ignored */
    if (cmd == 1 && (fam > 3 || proto > 2))
        return bad(why, "PROXY v2: unknown address family or transport");
    if (n < LR_PP_V2_FIXED)
        return LR_PP_AGAIN;
    size_t len = (size_t)p[14] << 8 | p[15];
    h->version = 2;
    h->len = (uint32_t)(LR_PP_V2_FIXED + len);
    if (cmd == 0) {
        h->local = 1;
        return LR_PP_OK;
    }
    static const size_t block[4] = {0, 12, 36, 216};
    if (len < block[fam])
        return bad(why, "PROXY v2: address block shorter than its family's");
    if (!((fam == 1 || fam == 2) && proto == 1)) {
        /* AF_UNSPEC, UNIX, or datagrams: nothing a TCP client address
         * could come from; the connection's own addresses stand */
        h->local = 1;
        return LR_PP_OK;
    }
    size_t alen = fam == 1 ? 4 : 16;
    if (n < LR_PP_V2_FIXED + block[fam])
        return LR_PP_AGAIN;
    const uint8_t *a = p + LR_PP_V2_FIXED;
    h->ip_len = (uint8_t)alen;
    memcpy(h->src_ip, a, alen);
    memcpy(h->dst_ip, a + alen, alen);
    h->src_port = (uint16_t)(a[2 * alen] << 8 | a[2 * alen + 1]);
    h->dst_port = (uint16_t)(a[2 * alen + 2] << 8 | a[2 * alen + 3]);
    return LR_PP_OK;
}

/* ------------------------------------------------------------ version 1 */

/* The field at line[*pos] up to the next space or the end of the line;
 * *pos moves past it (and past one space, which must then be followed by
 * another field).  Its length, or -1 if it is empty. */
static int field(const char *line, size_t len, size_t *pos, const char **f)
{
    size_t i = *pos;
    while (i < len && line[i] != ' ')
        i++;
    if (i == *pos)
        return -1;
    *f = line + *pos;
    int flen = (int)(i - *pos);
    if (i < len) {
        i++; /* exactly one space, then a field */
        if (i == len || line[i] == ' ')
            return -1;
    }
    *pos = i;
    return flen;
}

static int v1_addr(const char *f, int flen, int af, uint8_t *out)
{
    char tmp[64];
    if (flen <= 0 || flen >= (int)sizeof(tmp))
        return -1;
    /* a NUL would end the copy early: "127.0.0.1\0junk" must not pass */
    if (memchr(f, 0, (size_t)flen))
        return -1;
    memcpy(tmp, f, (size_t)flen);
    tmp[flen] = 0;
    /* inet_pton is strict: dotted quads only, no leading zeros, no zone */
    return inet_pton(af, tmp, out) == 1 ? 0 : -1;
}

static int v1_port(const char *f, int flen, uint16_t *out)
{
    if (flen < 1 || flen > 5 || (flen > 1 && f[0] == '0'))
        return -1;
    unsigned v = 0;
    for (int i = 0; i < flen; i++) {
        if (f[i] < '0' || f[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(f[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int parse_v1(const uint8_t *p, size_t n, struct lr_pp_hdr *h, const char **why)
{
    static const char magic[] = "PROXY ";
    size_t k = n < 6 ? n : 6;
    if (memcmp(p, magic, k) != 0)
        return bad(why, "not a PROXY protocol header");
    /* the CRLF, within 107 bytes; a lone CR or LF is no line end */
    size_t lim = n < LR_PP_V1_MAX ? n : LR_PP_V1_MAX, end = 0;
    for (size_t i = 0; i < lim && !end; i++) {
        if (p[i] == '\n') {
            if (i == 0 || p[i - 1] != '\r')
                return bad(why, "PROXY v1: LF without CR");
            end = i + 1;
        } else if (p[i] == '\r' && i + 1 < n && p[i + 1] != '\n') {
            return bad(why, "PROXY v1: CR without LF");
        }
    }
    if (!end) {
        if (n >= LR_PP_V1_MAX)
            return bad(why, "PROXY v1: no CRLF in 107 bytes");
        return LR_PP_AGAIN;
    }
    const char *line = (const char *)p;
    size_t len = end - 2, pos = 6;
    h->version = 1;
    h->len = (uint32_t)end;
    if (len >= 13 && memcmp(line + 6, "UNKNOWN", 7) == 0 && (len == 13 || line[13] == ' ')) {
        /* anything may follow, up to the CRLF: ignored */
        h->local = 1;
        return LR_PP_OK;
    }
    const char *f;
    int fl = field(line, len, &pos, &f);
    int af;
    if (fl == 4 && memcmp(f, "TCP4", 4) == 0)
        af = AF_INET;
    else if (fl == 4 && memcmp(f, "TCP6", 4) == 0)
        af = AF_INET6;
    else
        return bad(why, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
    const char *fs[4];
    int fls[4];
    for (int i = 0; i < 4; i++) {
        if (pos >= len)
            return bad(why, "PROXY v1: missing fields");
        fls[i] = field(line, len, &pos, &fs[i]);
        if (fls[i] < 0)
            return bad(why, "PROXY v1: fields not separated by single spaces");
    }
    if (pos != len)
        return bad(why, "PROXY v1: more than four fields");
    h->ip_len = af == AF_INET ? 4 : 16;
    if (v1_addr(fs[0], fls[0], af, h->src_ip) != 0 ||
        v1_addr(fs[1], fls[1], af, h->dst_ip) != 0)
        return bad(why, "PROXY v1: bad address");
    if (v1_port(fs[2], fls[2], &h->src_port) != 0 ||
        v1_port(fs[3], fls[3], &h->dst_port) != 0)
        return bad(why, "PROXY v1: bad port");
    return LR_PP_OK;
}

LR_API int lr_pp_parse(const uint8_t *p, size_t n, struct lr_pp_hdr *h,
                       const char **why)
{
    memset(h, 0, sizeof(*h));
    if (why)
        *why = NULL;
    if (n == 0)
        return LR_PP_AGAIN;
    int rc;
    if (p[0] == v2_sig[0])
        rc = parse_v2(p, n, h, why);
    else
        rc = parse_v1(p, n, h, why);
    if (rc != LR_PP_OK)
        memset(h, 0, sizeof(*h));
    return rc;
}
