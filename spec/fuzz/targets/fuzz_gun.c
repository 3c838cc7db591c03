/*
 * core/stream/grpc.c: the gun codec (lr_gun_dec_next / lr_gun_dec_took, the
 * reader of a gRPC message stream of Hunk / MultiHunk messages, and
 * lr_gun_hdr, the writer of a message header).
 *
 * Input: ctrl(1) seed(2) then the body.
 *   ctrl & 1: raw: the body is the stream a peer sent.  It is read whole
 *     (every data byte taken at once) and again in fuzzer-chosen splits
 *     with fuzzer-chosen partial takes (the rest offered again, as the
 *     tunnel owners do): same data bytes, same verdict (error or not), and
 *     a reference parser written here from the protobuf wire format agrees
 *     on both.
 *   else: encode: the body is chunks len(2) || bytes; each is framed with
 *     lr_gun_hdr (ctrl & 2: as a MultiHunk of two fields, as the test peer
 *     sends them, built here) and the stream read back in splits must give
 *     exactly the chunks' bytes, no error.
 * Checked also: *skip + *n <= len, *n > 0 on LR_OK, LR_AGAIN consumes all.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "stream/grpc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Reads `in` in splits; takes at most `take` data bytes a call (0: all);
 * appends data to out.  Returns 0, or the error. */
static int run(const uint8_t *in, size_t len, uint64_t seed, int split, uint8_t *out,
               size_t *outn)
{
    struct lr_gun_dec d;
    lr_gun_dec_init(&d);
    size_t pos = 0;
    *outn = 0;
    while (pos < len) {
        size_t chunk = split ? fz_split(&seed, len - pos) : len - pos;
        size_t used = 0;
        while (used < chunk) {
            size_t skip = 99, n = 99;
            int rc = lr_gun_dec_next(&d, in + pos + used, chunk - used, &skip, &n);
            if (rc < 0) {
                FZ_CHECK(rc == -EPROTO);
                /* sticky: the next call says the same, whatever it gets */
                FZ_CHECK(lr_gun_dec_next(&d, in, len, &skip, &n) == -EPROTO);
                return rc;
            }
            FZ_CHECK(skip + n <= chunk - used);
            if (rc == LR_AGAIN) {
                FZ_CHECK(skip == chunk - used && n == 0);
                used = chunk;
                break;
            }
            FZ_CHECK(rc == LR_OK && n > 0);
            used += skip;
            size_t k = n;
            if (split && (fz_rand(&seed) & 1))
                k = (size_t)(fz_rand(&seed) % (n + 1)); /* a partial take, maybe 0 */
            memcpy(out + *outn, in + pos + used, k);
            *outn += k;
            lr_gun_dec_took(&d, k);
            used += k;
            if (k < n) {
                /* the rest is offered again from here, in a new call */
                break;
            }
        }
        pos += used;
    }
    return 0;
}

/* The reference, written here from the protobuf wire format: message by
 * message, field by field; the data bytes of field 1 go out (as far as the
 * input goes); an input that ends inside a message is no error. */
static int varint(const uint8_t *p, size_t end, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int k = 0; k < 10; k++) {
        if (*i >= end)
            return 1; /* ran out */
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

static int reference(const uint8_t *in, size_t len, uint8_t *out, size_t *outn)
{
    size_t i = 0;
    *outn = 0;
    while (i < len) {
        if (len - i < 5)
            return 0;
        if (in[i] != 0)
            return -1; /* compressed */
        uint64_t ml = (uint64_t)in[i + 1] << 24 | (uint64_t)in[i + 2] << 16 |
                      (uint64_t)in[i + 3] << 8 | in[i + 4];
        i += 5;
        uint64_t dend = (uint64_t)i + ml;             /* the message's end */
        size_t end = dend > len ? len : (size_t)dend; /* what the input has */
        while (i < dend) {
            if (i >= end)
                return 0;
            uint64_t tag, fl;
            int r = varint(in, end, &i, &tag);
            if (r < 0)
                return -1;
            if (r > 0)
                return end == dend ? -1 : 0; /* the message ended inside it */
            uint64_t field = tag >> 3;
            unsigned wire = (unsigned)(tag & 7);
            if (field == 0 || field > 536870911u || i == dend)
                return -1;
            if ((field == 1 && wire != 2) || (wire != 0 && wire != 1 && wire != 2 && wire != 5))
                return -1;
            if (wire == 0 || wire == 2) {
                if (i >= end)
                    return 0;
                r = varint(in, end, &i, &fl);
                if (r < 0)
                    return -1;
                if (r > 0)
                    return end == dend ? -1 : 0;
                if (wire == 0)
                    continue;
            } else {
                fl = wire == 1 ? 8 : 4;
            }
            if (fl > dend - i)
                return -1; /* a field longer than its message */
            size_t have = i + fl > end ? end - i : (size_t)fl;
            if (field == 1) {
                memcpy(out + *outn, in + i, have);
                *outn += have;
            }
            i += have;
            if (have < fl)
                return 0;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = fz_u16(&f) | 0x10000;
    size_t n;
    const uint8_t *body = fz_take(&f, (size_t)-1, &n);
    if (ctrl & 1) {
        uint8_t *a = malloc(n + 1), *b = malloc(n + 1), *r = malloc(n + 1);
        FZ_CHECK(a && b && r);
        size_t an, bn, rn;
        int ra = run(body, n, seed, 0, a, &an);
        int rb = run(body, n, seed, 1, b, &bn);
        int rr = reference(body, n, r, &rn);
        if (fz_verbose())
            fprintf(stderr, "gun raw %zu: whole %d/%zu split %d/%zu ref %d/%zu\n", n, ra,
                    an, rb, bn, rr, rn);
        FZ_CHECK(ra == rb);
        FZ_CHECK((ra < 0) == (rr < 0));
        if (ra == 0) {
            /* without an error the bytes agree exactly */
            FZ_CHECK(an == bn && memcmp(a, b, an) == 0);
            FZ_CHECK(an == rn && memcmp(a, r, an) == 0);
        } else {
            /* with one, each read gives a prefix of the same bytes */
            size_t m = an < bn ? an : bn;
            FZ_CHECK(memcmp(a, b, m) == 0);
        }
        free(a);
        free(b);
        free(r);
        return 0;
    }
    /* encode, then read back */
    uint8_t *enc = malloc(n * 4 + 64), *plain = malloc(n + 1), *got = malloc(n * 4 + 64);
    FZ_CHECK(enc && plain && got);
    size_t en = 0, pn = 0;
    struct fz c = {body, n};
    while (c.n) {
        size_t want = fz_u16(&c), k;
        const uint8_t *p = fz_take(&c, want, &k);
        if ((ctrl & 2) && k > 1) {
            /* a MultiHunk with two data fields */
            size_t h = k / 2;
            uint8_t tmp[LR_GUN_HDR_MAX];
            size_t t1 = lr_gun_hdr(tmp, h) - 5, t2 = lr_gun_hdr(tmp, k - h) - 5;
            enc[en] = 0;
            uint32_t ml = (uint32_t)(t1 + h + t2 + (k - h));
            enc[en + 1] = (uint8_t)(ml >> 24);
            enc[en + 2] = (uint8_t)(ml >> 16);
            enc[en + 3] = (uint8_t)(ml >> 8);
            enc[en + 4] = (uint8_t)ml;
            en += 5;
            size_t hl = lr_gun_hdr(tmp, h);
            memcpy(enc + en, tmp + 5, hl - 5);
            en += hl - 5;
            memcpy(enc + en, p, h);
            en += h;
            hl = lr_gun_hdr(tmp, k - h);
            memcpy(enc + en, tmp + 5, hl - 5);
            en += hl - 5;
            memcpy(enc + en, p + h, k - h);
            en += k - h;
        } else {
            en += lr_gun_hdr(enc + en, k);
            memcpy(enc + en, p, k);
            en += k;
        }
        memcpy(plain + pn, p, k);
        pn += k;
    }
    size_t gn;
    int rc = run(enc, en, seed, 1, got, &gn);
    if (fz_verbose())
        fprintf(stderr, "gun encode %zu bytes: %zu wire, read %d/%zu\n", pn, en, rc, gn);
    FZ_CHECK(rc == 0);
    FZ_CHECK(gn == pn && memcmp(got, plain, pn) == 0);
    free(enc);
    free(plain);
    free(got);
    return 0;
}
