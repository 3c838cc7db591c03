/*
 * core/stream/grpc.c's client layer (lr_gunc_*): one gun tunnel as a stream
 * layer, fed whatever a server sends (nghttp2 parses the frames; we see its
 * headers, grpc-status, DATA, ends, resets, GOAWAY and window updates).
 *
 * Input: ctrl(1) seed(2) then the server's bytes.
 *   ctrl & 1: TunMulti.  The layer below is modelled here: its reads give
 *   the server's bytes in fuzzer-chosen splits with -EAGAIN between them
 *   (then 0, the end, or -ECONNRESET with ctrl & 2), its writes take all,
 *   part or nothing (-EAGAIN).  The relay's calls are modelled too:
 *   lr_gunc_start until done, then reads into buffers of chosen sizes and
 *   writes of chosen sizes (offered again from where a write stopped, as
 *   the relay does), pending(), and a shutdown at a chosen point.
 * Checked: read returns > 0 (at most what was asked), 0, or a negative
 * errno, and after 0 or an error never data again; write returns at most
 * what was offered, or -EAGAIN / a negative errno; a write taken is never
 * taken twice (the `owed` bookkeeping: the bytes the caller offers again
 * after -EAGAIN are counted once); every byte written below is one the
 * layer produced (ASan), the layer frees all (LeakSanitizer).
 */
#include <errno.h>

#include "fuzz_common.h"
#include "stream/grpc.h"

struct lower {
    struct lr_stream s;
    const uint8_t *in;
    size_t n, pos;
    uint64_t rnd;
    int reset_at_end;
    size_t written;
};

static ssize_t lo_read(struct lr_stream *l, void *buf, size_t n)
{
    struct lower *lo = (struct lower *)l;
    if (lo->pos >= lo->n)
        return lo->reset_at_end ? -ECONNRESET : 0;
    if ((fz_rand(&lo->rnd) & 3) == 0)
        return -EAGAIN;
    size_t k = fz_split(&lo->rnd, lo->n - lo->pos);
    if (k > n)
        k = n;
    memcpy(buf, lo->in + lo->pos, k);
    lo->pos += k;
    return (ssize_t)k;
}

static ssize_t lo_write(struct lr_stream *l, const void *buf, size_t n)
{
    struct lower *lo = (struct lower *)l;
    FZ_CHECK(n > 0);
    volatile uint8_t x = ((const uint8_t *)buf)[0] ^ ((const uint8_t *)buf)[n - 1];
    (void)x;
    uint64_t r = fz_rand(&lo->rnd);
    size_t k = n;
    if ((r & 3) == 0)
        return -EAGAIN;
    if ((r & 3) == 1)
        k = 1 + (size_t)((r >> 8) % n);
    lo->written += k;
    return (ssize_t)k;
}

static void lo_shutdown(struct lr_stream *l)
{
    (void)l;
}

static const struct lr_stream_ops lower_ops = {
    .name = "fuzz", .read = lo_read, .write = lo_write, .shutdown = lo_shutdown,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t payload[70000];
    static uint8_t rbuf[70000];
    struct fz f = {data, size};
    uint8_t ctrl = fz_u8(&f);
    uint64_t seed = fz_u16(&f) | 0x30000;
    struct lower lo;
    memset(&lo, 0, sizeof(lo));
    lo.s.ops = &lower_ops;
    lo.s.fd = -1;
    lo.in = fz_take(&f, (size_t)-1, &lo.n);
    lo.rnd = seed;
    lo.reset_at_end = (ctrl & 2) != 0;
    struct lr_stream *l = lr_gunc_new("example.test:443", "gun.Tunnel", ctrl & 1, 0);
    FZ_CHECK(l);
    l->lower = &lo.s;
    l->fd = -1;
    int rc = 0;
    for (int i = 0; i < 200 && (rc = lr_gunc_start(l)) == 0; i++)
        ;
    FZ_CHECK(rc == 1 || rc == 0 || rc < 0);
    int read_over = 0;   /* read returned 0 or an error */
    int write_over = 0;
    int shut = 0;
    size_t offered_from = 0; /* the relay's position in its output */
    size_t again_n = 0;      /* after -EAGAIN the relay offers at least as much */
    uint64_t r = seed * 7 + 1;
    for (int op = 0; op < 400 && rc == 1; op++) {
        uint64_t x = fz_rand(&r);
        switch (x & 3) {
        case 0:
        case 1: {
            size_t n = 1 + (size_t)((x >> 8) % sizeof(rbuf));
            ssize_t k = l->ops->read(l, rbuf, n);
            FZ_CHECK(k <= (ssize_t)n);
            if (k > 0)
                FZ_CHECK(!read_over);
            else if (k != -EAGAIN)
                read_over = 1;
            break;
        }
        case 2: {
            if (write_over || shut)
                break;
            size_t n = 1 + (size_t)((x >> 8) % 30000);
            if (n < again_n)
                n = again_n;
            if (!again_n && offered_from + n > sizeof(payload))
                offered_from = 0;
            ssize_t k = l->ops->write(l, payload + offered_from, n);
            FZ_CHECK(k <= (ssize_t)n);
            again_n = k == -EAGAIN ? n : 0;
            if (k > 0)
                offered_from += (size_t)k;
            else if (k != -EAGAIN && k != 0)
                write_over = 1;
            break;
        }
        default:
            if (((x >> 8) & 15) == 0 && !shut) {
                shut = 1;
                l->ops->shutdown(l);
            } else {
                (void)l->ops->pending(l);
            }
            break;
        }
        if (lo.pos >= lo.n && read_over)
            break;
    }
    if (fz_verbose())
        fprintf(stderr, "gunc: start %d, %zu of %zu server bytes read, %zu written, read %s\n",
                rc, lo.pos, lo.n, lo.written, read_over ? "over" : "open");
    l->ops->free(l);
    return 0;
}
