/*
 * core/net/http_resp.c: the HTTP/1.1 response parser of luaray.http.request
 * (a server's bytes: status line, fields, a body framed by chunked,
 * Content-Length or the close).
 *
 * Input: ctrl(1) seed(8) then the server's bytes.  ctrl & 1: the request
 * was HEAD; ctrl & 2: small bounds (head_max 64..1087, body_max 0..4095
 * from the next bytes) instead of the defaults; ctrl & 4: the server
 * closes after the bytes (lr_http_resp_eof).
 *
 * Checked: the same answer whether the bytes come at once or in random
 * pieces (status, fields, body, or the same error); a complete response
 * never took more bytes than it was given; the body is within body_max
 * and NUL-terminated; the fields are "name: value\n" lines with lower-case
 * token names and no control characters but tab; an error always says
 * why.
 */
#include "fuzz_common.h"
#include "net/http_resp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

struct outcome {
    int rc, status;
    size_t used;
};

static int run(struct lr_http_resp *r, const uint8_t *p, size_t n, uint64_t *seed, int split,
               int eof, struct outcome *o)
{
    size_t off = 0;
    int rc = LR_AGAIN;
    while (off < n) {
        size_t k = split ? fz_split(seed, n - off) : n - off;
        size_t used = 0;
        rc = lr_http_resp_feed(r, p + off, k, &used);
        FZ_CHECK(used <= k);
        if (rc == LR_AGAIN)
            FZ_CHECK(used == k);
        off += used;
        if (rc != LR_AGAIN)
            break;
    }
    if (rc == LR_AGAIN && n == 0)
        rc = lr_http_resp_feed(r, p, 0, NULL);
    if (rc == LR_AGAIN && eof)
        rc = lr_http_resp_eof(r);
    o->rc = rc;
    o->status = r->status;
    o->used = off;
    return rc;
}

static void check_fields(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = i;
        while (k < n && s[k] != ':') {
            char c = s[k];
            FZ_CHECK(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z'));
            k++;
        }
        FZ_CHECK(k > i && k + 1 < n && s[k + 1] == ' ');
        size_t e = k + 2;
        while (e < n && s[e] != '\n') {
            FZ_CHECK((unsigned char)s[e] >= 0x20 || s[e] == '\t');
            e++;
        }
        FZ_CHECK(e < n);
        i = e + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = ((uint64_t)fz_u32(&f) << 32) | fz_u32(&f);
    size_t head_max = 0;
    uint64_t body_max = 0;
    if (ctrl & 2) {
        head_max = 64 + fz_u16(&f) % 1024;
        body_max = fz_u16(&f) % 4096;
        if (body_max == 0)
            body_max = 1; /* 0 means the default */
    }
    size_t n;
    const uint8_t *p = fz_take(&f, (size_t)-1, &n);
    struct lr_http_resp a, b;
    struct outcome oa, ob;
    lr_http_resp_init(&a, head_max, body_max, ctrl & 1);
    lr_http_resp_init(&b, head_max, body_max, ctrl & 1);
    run(&a, p, n, &seed, 0, ctrl & 4, &oa);
    run(&b, p, n, &seed, 1, ctrl & 4, &ob);
    if (fz_verbose())
        fprintf(stderr, "http_resp: %zu bytes -> rc %d status %d body %zu (%s)\n", n, oa.rc,
                oa.status, a.body_len, lr_http_resp_why(&a));
    FZ_CHECK(oa.rc == ob.rc);
    FZ_CHECK(oa.rc == LR_OK || oa.rc == LR_AGAIN || oa.rc == LR_EINVAL || oa.rc == LR_ETOOBIG ||
             oa.rc == LR_ENOMEM);
    if (oa.rc < 0)
        FZ_CHECK(*lr_http_resp_why(&a) != 0 && *lr_http_resp_why(&b) != 0);
    if (oa.rc == LR_OK) {
        FZ_CHECK(oa.status == ob.status && oa.status >= 200 && oa.status <= 999);
        FZ_CHECK(oa.used == ob.used && oa.used <= n);
        FZ_CHECK(a.body_len == b.body_len);
        FZ_CHECK(a.body_len <= a.body_max);
        FZ_CHECK(!a.body_len || memcmp(a.body, b.body, a.body_len) == 0);
        FZ_CHECK(!a.body || a.body[a.body_len] == 0);
        FZ_CHECK(a.fields_len == b.fields_len);
        FZ_CHECK(!a.fields_len || memcmp(a.fields, b.fields, a.fields_len) == 0);
        FZ_CHECK(a.fields_len <= a.head_max + 2 * 64);
        check_fields(a.fields, a.fields_len);
        if ((ctrl & 1) || oa.status == 204 || oa.status == 304)
            FZ_CHECK(a.body_len == 0);
    }
    lr_http_resp_deinit(&a);
    lr_http_resp_deinit(&b);
    return 0;
}
