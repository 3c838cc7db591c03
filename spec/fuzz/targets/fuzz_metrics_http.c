/*
 * core/daemon/metrics_http.c: lr_mh_parse, what luaray.metrics answers to
 * the bytes a client sent (any client that reaches the metrics port).
 *
 * Input: the first byte picks the token (none, or "tok-3n"), the rest is
 * what the client sent.
 *
 * Checked:
 * - the answer is 0 (read more) or one of 200, 400, 401, 404, 405, 431;
 *   0 only while there is no NUL, no end of the head and less than
 *   LR_MH_HEAD_MAX bytes;
 * - 200 only for GET or HEAD of "/metrics" or "/" (a query allowed), and
 *   with a token only when the request carries it;
 * - answers are stable: a prefix that was already answered gets the same
 *   answer when more bytes follow (the server stops reading at an answer),
 *   and no answer depends on bytes past LR_MH_HEAD_MAX.
 */
#include "fuzz_common.h"
#include "daemon/metrics_http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *token = data[0] & 1 ? "tok-3n" : NULL;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    struct lr_mh_req r, r2;
    int got = lr_mh_parse(p, n, token, &r);
    if (!got) {
        FZ_CHECK(!memchr(p, 0, n) && n < LR_MH_HEAD_MAX && !memmem(p, n, "\r\n\r\n", 4));
        return 0;
    }
    FZ_CHECK(r.status == 200 || r.status == 400 || r.status == 401 || r.status == 404 ||
             r.status == 405 || r.status == 431);
    if (r.status == 200) {
        FZ_CHECK(r.what == LR_MH_METRICS || r.what == LR_MH_ROOT);
        FZ_CHECK((n > 4 && memcmp(p, "GET /", 5) == 0) || (n > 5 && memcmp(p, "HEAD /", 6) == 0));
        FZ_CHECK(r.head_only == (p[0] == 'H'));
        const char *path = p + (r.head_only ? 5 : 4);
        if (r.what == LR_MH_METRICS)
            FZ_CHECK(memcmp(path, "/metrics", 8) == 0 && (path[8] == ' ' || path[8] == '?'));
        else
            FZ_CHECK(path[1] == ' ' || path[1] == '?');
        if (token)
            FZ_CHECK(memmem(p, n, "tok-3n", 6) != NULL);
    }
    /* the same answer whatever comes after the byte that decided it */
    size_t cut = n;
    for (size_t k = 1; k < n; k++)
        if (lr_mh_parse(p, k, token, &r2)) {
            cut = k;
            break;
        }
    if (cut < n) {
        FZ_CHECK(lr_mh_parse(p, cut, token, &r2) && r2.status == r.status &&
                 r2.what == r.what && r2.head_only == r.head_only);
    }
    if (n > LR_MH_HEAD_MAX) {
        FZ_CHECK(lr_mh_parse(p, LR_MH_HEAD_MAX, token, &r2) && r2.status == r.status);
    }
    return 0;
}
