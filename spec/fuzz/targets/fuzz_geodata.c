/*
 * core/route/geodata.c: v2fly's geosite.dat / geoip.dat (the top level
 * walked by hand, the named entry decoded by protobuf-c and compiled into
 * domain_set.c / cidr_set.c).  Such files are downloaded from third
 * parties: their bytes are untrusted.
 *
 * Input: the file's bytes, given through a memfd (the loader maps a file).
 * Bytes that carry the MaxMind metadata marker are skipped: the loader
 * hands those to libmaxminddb, whose MMDB_open (Debian's 1.7.1) leaks a
 * few KiB on some malformed metadata -- a finding in the library, not in
 * this code (spec/core/geo_route_spec.lua loads a damaged .mmdb).
 *
 * Checked: every load either fails with a message or gives a matcher; the
 * matchers answer (0 or 1) for names and addresses of every shape; a list
 * loaded twice while held is the same object (the cache).
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "route/geodata.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static const char *NAMES[] = { "a.cn", "x.example.com", "", ".", "CN", "ads.example.", "1.2.3.4" };
static const uint8_t IPS[][16] = {
    { 1, 2, 3, 4 }, { 10, 0, 0, 1 }, { 255, 255, 255, 255 }, { 0 },
    { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 },
    { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4 },
};

static void use(struct lr_geo *g, int site)
{
    if (!g)
        return;
    for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
        int m = lr_geo_match_domain(g, NAMES[i]);
        FZ_CHECK(m == 0 || m == 1);
        FZ_CHECK(site || m == 0);
    }
    for (size_t i = 0; i < sizeof(IPS) / sizeof(IPS[0]); i++) {
        int m = lr_geo_match_ip(g, IPS[i], i < 4 ? 4 : 16);
        FZ_CHECK(m == 0 || m == 1);
    }
    (void)lr_geo_count(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "\xab\xcd\xefMaxMind.com", 14))
        return 0;
    int fd = memfd_create("geodata", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64], err[512];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    err[0] = 0;
    struct lr_geo *s1 = lr_geo_site(path, "cn", err, sizeof(err));
    FZ_CHECK(s1 || err[0]);
    use(s1, 1);
    struct lr_geo *s2 = lr_geo_site(path, "CN", err, sizeof(err));
    FZ_CHECK(!s1 == !s2 && s1 == s2);        /* the held entry, shared */
    err[0] = 0;
    struct lr_geo *s3 = lr_geo_site(path, "cn@ads", err, sizeof(err));
    FZ_CHECK(s3 || err[0]);
    use(s3, 1);
    err[0] = 0;
    struct lr_geo *i1 = lr_geo_ip(path, "cn", 0, err, sizeof(err));
    FZ_CHECK(i1 || err[0]);
    use(i1, 0);
    struct lr_geo *i2 = lr_geo_ip(path, "private", 1, err, sizeof(err));
    use(i2, 0);
    lr_geo_unref(s1);
    lr_geo_unref(s2);
    lr_geo_unref(s3);
    lr_geo_unref(i1);
    lr_geo_unref(i2);
    close(fd);
    return 0;
}
