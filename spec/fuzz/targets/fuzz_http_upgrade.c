/*
 * core/stream/ws.c's HTTP/1.1 upgrade exchange: lr_upgrade_check (a
 * client's first bytes at a ws / httpupgrade inbound), the 101 it answers
 * with (lr_upgrade_reply), the early data it decodes, the client address
 * behind trusted proxies (lr_upgrade_client_addr), and on the client side
 * lr_upgrade_check_reply (a server's reply), plus lr_http_parse_request /
 * _response and base64url.
 *
 * Input: ctrl(1) max_ed(2) path NUL [host NUL] then the peer's bytes.
 *   ctrl & 1   ws (else httpupgrade)
 *   ctrl & 2   the bytes are a server's reply to our request (client side)
 *   ctrl & 4   the inbound has transport.host (the NUL-terminated string)
 *   path, host at most 64 bytes each (cut there)
 *
 * Checked: every answer is LR_OK / LR_AGAIN / LR_EINVAL with a reason for
 * the last; answers are stable as bytes arrive (a prefix either waits or
 * gives the same answer with the same head), so a slow client is treated
 * as a fast one; an accepted request's head is a whole head inside the
 * bytes, its path is the inbound's (query ignored) or the path and a
 * base64url tail, its early data decodes to exactly ed_bytes <=
 * max_early_data, and its 101 is a reply our own client accepts for the
 * request's key (echoing the early-data protocol exactly when there was
 * one); a parsed head's fields are tokens and clean values; the client
 * address comes back as an IPv4/IPv6 address or not at all; base64url
 * round-trips.
 */
#include <sys/socket.h>

#include "fuzz_common.h"
#include "stream/ws.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void take_str(struct fz *f, char *out, size_t cap)
{
    size_t i = 0;
    while (f->n) {
        uint8_t c = fz_u8(f);
        if (!c)
            break;
        if (i + 1 < cap)
            out[i++] = (char)c;
    }
    out[i] = 0;
}

/* An address is trusted when its last byte is even: deterministic, and
 * both kinds occur. */
static int trusted(const void *ctx, const struct lr_addr *a)
{
    (void)ctx;
    uint8_t ip[16];
    int n = lr_addr_ip_bytes(a, ip);
    FZ_CHECK(n == 4 || n == 16);
    return (ip[n - 1] & 1) == 0;
}

static void check_head(const struct lr_http_head *h, const uint8_t *p, size_t n)
{
    FZ_CHECK(h->len >= 4 && h->len <= n && h->len <= LR_HTTP_HEAD_MAX);
    FZ_CHECK(memcmp(p + h->len - 4, "\r\n\r\n", 4) == 0);
    FZ_CHECK(h->nfields <= LR_HTTP_FIELDS_MAX);
    for (uint32_t i = 0; i < h->nfields; i++) {
        const struct lr_http_field *f = &h->f[i];
        FZ_CHECK(f->nlen > 0);
        FZ_CHECK((const uint8_t *)f->name >= p && (const uint8_t *)f->value + f->vlen <= p + h->len);
        for (size_t k = 0; k < f->nlen; k++)
            FZ_CHECK(f->name[k] > 0x20 && f->name[k] < 0x7f && f->name[k] != ':');
        for (size_t k = 0; k < f->vlen; k++) {
            uint8_t c = (uint8_t)f->value[k];
            FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (f->vlen)
            FZ_CHECK(f->value[0] != ' ' && f->value[f->vlen - 1] != ' ');
    }
}

static void check_request(const uint8_t *p, size_t n, const struct lr_upgrade_cfg *cfg)
{
    struct lr_upgrade_req r;
    const char *why = NULL;
    int rc = lr_upgrade_check(p, n, cfg, &r, &why);
    FZ_CHECK(rc == LR_OK || rc == LR_AGAIN || rc == LR_EINVAL);
    if (rc == LR_EINVAL)
        FZ_CHECK(why && *why);
    if (fz_verbose())
        fprintf(stderr, "upgrade %s: %zu bytes -> %d %s\n", cfg->ws ? "ws" : "httpupgrade",
                n, rc, rc == LR_EINVAL ? why : "");
    /* stable as bytes arrive */
    size_t step = n <= 400 ? 1 : n / 200;
    for (size_t k = 0; k < n; k += step) {
        struct lr_upgrade_req r2;
        const char *w2 = NULL;
        int rc2 = lr_upgrade_check(p, k, cfg, &r2, &w2);
        if (rc == LR_OK) {
            if (k < r.head_len)
                FZ_CHECK(rc2 == LR_AGAIN);
            else
                FZ_CHECK(rc2 == LR_OK && r2.head_len == r.head_len && r2.ed_bytes == r.ed_bytes);
        } else if (rc == LR_EINVAL) {
            FZ_CHECK(rc2 == LR_AGAIN || rc2 == LR_EINVAL);
        } else {
            FZ_CHECK(rc2 == LR_AGAIN);
        }
    }
    struct lr_http_head h;
    int hr = lr_http_parse_request(p, n, &h);
    if (hr == LR_OK)
        check_head(&h, p, n);
    if (rc != LR_OK)
        return;
    FZ_CHECK(hr == LR_OK && h.len == r.head_len && h.minor == 1);
    FZ_CHECK(h.mlen == 3 && memcmp(h.method, "GET", 3) == 0);
    size_t pl = strlen(cfg->path);
    FZ_CHECK(h.tlen >= pl && memcmp(h.target, cfg->path, pl) == 0);
    if (!r.ed_path)
        FZ_CHECK(h.tlen == pl || h.target[pl] == '?');
    FZ_CHECK(r.ed_bytes <= cfg->max_early_data);
    uint8_t *ed = malloc(r.ed_bytes + 1);
    FZ_CHECK(ed);
    FZ_CHECK(lr_upgrade_early_data(&r, ed) == r.ed_bytes);
    if (r.ed_bytes)
        FZ_CHECK(r.ed && cfg->ws);
    /* the 101: our own client takes it, for this key */
    size_t cap = LR_HTTP_HEAD_MAX + 512;
    char *reply = malloc(cap);
    FZ_CHECK(reply);
    size_t rl = lr_upgrade_reply(&r, cfg->ws, reply, cap);
    FZ_CHECK(rl > 0 && rl < cap);
    if (r.key && r.key_len < 200) {
        char key[200];
        memcpy(key, r.key, r.key_len);
        key[r.key_len] = 0;
        size_t hl = 0;
        int echoed = -1;
        const char *w = NULL;
        int cr = lr_upgrade_check_reply((const uint8_t *)reply, rl, cfg->ws, key,
                                        r.proto, r.proto_len, &hl, &echoed, &w);
        if (cr != LR_OK)
            fprintf(stderr, "reply refused: %s\n%.*s", w, (int)rl, reply);
        FZ_CHECK(cr == LR_OK && hl == rl && echoed == (r.proto != NULL));
    }
    struct lr_addr a;
    if (lr_upgrade_client_addr(&r, trusted, NULL, &a)) {
        FZ_CHECK(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
        FZ_CHECK(lr_addr_port(&a) == 0);
    }
    if (!r.real_ip && !r.nxff)
        FZ_CHECK(!lr_upgrade_client_addr(&r, trusted, NULL, &a));
    free(reply);
    free(ed);
}

static void check_reply(const uint8_t *p, size_t n, int ws, const char *proto)
{
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    size_t plen = strlen(proto), hl = 0;
    int echoed = -1;
    const char *why = NULL;
    int rc = lr_upgrade_check_reply(p, n, ws, key, plen ? proto : NULL, plen, &hl, &echoed, &why);
    FZ_CHECK(rc == LR_OK || rc == LR_AGAIN || rc == LR_EINVAL);
    if (rc == LR_EINVAL)
        FZ_CHECK(why && *why);
    if (fz_verbose())
        fprintf(stderr, "reply %s: %zu bytes -> %d %s%s\n", ws ? "ws" : "httpupgrade", n, rc,
                rc == LR_EINVAL ? why : "", rc == LR_OK && echoed ? "echoed" : "");
    if (rc == LR_OK) {
        FZ_CHECK(hl <= n && hl >= 4 && memcmp(p + hl - 4, "\r\n\r\n", 4) == 0);
        FZ_CHECK(echoed == 0 || echoed == 1);
        if (echoed)
            FZ_CHECK(plen > 0);
    }
    struct lr_http_head h;
    if (lr_http_parse_response(p, n, &h) == LR_OK) {
        check_head(&h, p, n);
        if (rc == LR_OK)
            FZ_CHECK(h.status == 101 && h.len == hl);
    } else {
        FZ_CHECK(rc != LR_OK);
    }
    size_t step = n <= 400 ? 1 : n / 200;
    for (size_t k = 0; k < n; k += step) {
        size_t hl2 = 0;
        int e2 = 0;
        const char *w2 = NULL;
        int rc2 = lr_upgrade_check_reply(p, k, ws, key, plen ? proto : NULL, plen, &hl2, &e2, &w2);
        if (rc == LR_OK && k >= hl)
            FZ_CHECK(rc2 == LR_OK && hl2 == hl && e2 == echoed);
        else if (rc == LR_EINVAL)
            FZ_CHECK(rc2 == LR_AGAIN || rc2 == LR_EINVAL);
        else
            FZ_CHECK(rc2 == LR_AGAIN);
    }
}

static void check_b64(const uint8_t *p, size_t n)
{
    if (n > 3000)
        n = 3000;
    char *t = malloc(n / 3 * 4 + 8);
    uint8_t *d = malloc(n + 8);
    FZ_CHECK(t && d);
    size_t tl = lr_b64url_encode(p, n, t), dl = 0;
    FZ_CHECK(tl == (n * 4 + 2) / 3);
    FZ_CHECK(lr_b64url_decode(t, tl, d, &dl) == LR_OK && dl == n && memcmp(d, p, n) == 0);
    /* and any text: decodes or not, never past 3/4 of it */
    size_t dl2 = 0;
    if (lr_b64url_decode((const char *)p, n, d, &dl2) == LR_OK)
        FZ_CHECK(dl2 <= n * 3 / 4);
    free(t);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint16_t max_ed = fz_u16(&f);
    char path[65], host[65];
    take_str(&f, path, sizeof(path));
    if (ctrl & 4)
        take_str(&f, host, sizeof(host));
    size_t n;
    const uint8_t *p = fz_take(&f, (size_t)-1, &n);
    /* an exact-size copy, so a read past the bytes is an ASan report */
    uint8_t *b = malloc(n ? n : 1);
    FZ_CHECK(b);
    memcpy(b, p, n);
    if (ctrl & 2) {
        check_reply(b, n, ctrl & 1, path);
    } else {
        struct lr_upgrade_cfg cfg = {
            .path = path[0] == '/' ? path : "/",
            .host = (ctrl & 4) ? host : NULL,
            .max_early_data = max_ed,
            .ws = ctrl & 1,
        };
        check_request(b, n, &cfg);
    }
    check_b64(b, n);
    free(b);
    return 0;
}
