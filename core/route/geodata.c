/*
 * Routing data files (geodata.h).
 *
 * A .dat file is mapped and its top level walked by hand (field 1,
 * length-delimited, repeated: the entries), looking only at each entry's
 * country_code (field 1); the one entry named is decoded with protobuf-c
 * (geodata.proto) and compiled, the rest never leaves the page cache.
 * An .mmdb file (MaxMind DB: it ends in a metadata block that starts with
 * "\xab\xcd\xefMaxMind.com") is opened with libmaxminddb and asked for
 * country.iso_code per address.
 *
 * The cache of loaded entries is a list under one mutex; a holder count
 * per entry, the entry freed (and dropped from the list) with its last
 * holder.
 */
#include <errno.h>
#include <fcntl.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <geodata.pb-c.h>

#include "route/cidr_set.h"
#include "route/domain_set.h"
#include "route/geodata.h"

enum { GEO_SITE = 1, GEO_IP = 2, GEO_MMDB = 3 };
#define MAX_ATTRS 16

struct lr_geo {
    struct lr_geo *next;         /* the cache list */
    int kind;
    int reverse;
    unsigned refs;               /* under cache_mu */
    char *key;                   /* kind, path, name, reverse */
    dev_t dev; ino_t ino; off_t size; struct timespec mtime;
    struct lr_dset *dset;        /* GEO_SITE */
    struct lr_cset *cset;        /* GEO_IP */
    MMDB_s mmdb;                 /* GEO_MMDB */
    char code[16];               /* GEO_MMDB: the country code, upper case */
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lr_geo *cache;

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
}

static void geo_free(struct lr_geo *g)
{
    lr_dset_free(g->dset);
    lr_cset_free(g->cset);
    if (g->kind == GEO_MMDB)
        MMDB_close(&g->mmdb);
    free(g->key);
    free(g);
}

/* ---- the protobuf top level ---- */

/* A varint at *p (< end): 0 and the value, or -1. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Skips a field of wire type `wt`: 0, or -1 malformed. */
static int skip_field(const uint8_t **p, const uint8_t *end, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0:
        return varint(p, end, &v);
    case 1:
        if (end - *p < 8)
            return -1;
        *p += 8;
        return 0;
    case 2:
        if (varint(p, end, &v) != 0 || v > (uint64_t)(end - *p))
            return -1;
        *p += v;
        return 0;
    case 5:
        if (end - *p < 4)
            return -1;
        *p += 4;
        return 0;
    default:
        return -1;
    }
}

/* The country_code (field 1) of the entry [p, end): 0 with *s, *n (0 when
 * absent), or -1 malformed. */
static int entry_code(const uint8_t *p, const uint8_t *end, const char **s, size_t *n)
{
    *s = NULL;
    *n = 0;
    while (p < end) {
        uint64_t tag;
        if (varint(&p, end, &tag) != 0)
            return -1;
        if (tag == ((1 << 3) | 2)) {
            uint64_t len;
            if (varint(&p, end, &len) != 0 || len > (uint64_t)(end - p))
                return -1;
            *s = (const char *)p;
            *n = (size_t)len;
            return 0;
        }
        if (skip_field(&p, end, (unsigned)(tag & 7)) != 0)
            return -1;
    }
    return 0;
}

/* The bytes of the first entry of the list [p, end) whose code is `name`
 * (ignoring case): 1 with *ep, *en; 0 not there; -1 malformed (err set). */
static int find_entry(const uint8_t *base, size_t size, const char *name,
                      const uint8_t **ep, size_t *en, const char *path,
                      char *err, size_t errlen)
{
    const uint8_t *p = base, *end = base + size;
    size_t nl = strlen(name);
    while (p < end) {
        const uint8_t *at = p;
        uint64_t tag, len;
        if (varint(&p, end, &tag) != 0)
            goto bad;
        if (tag != ((1 << 3) | 2)) {
            if (skip_field(&p, end, (unsigned)(tag & 7)) != 0)
                goto bad;
            continue;
        }
        if (varint(&p, end, &len) != 0 || len > (uint64_t)(end - p))
            goto bad;
        const char *code;
        size_t cn;
        if (entry_code(p, p + len, &code, &cn) != 0) {
            p = at;
            goto bad;
        }
        if (cn == nl && strncasecmp(code, name, nl) == 0) {
            *ep = p;
            *en = (size_t)len;
            return 1;
        }
        p += len;
        continue;
    bad:
        seterr(err, errlen, "%s: not a v2ray routing data file (malformed at byte %zu)",
               path, (size_t)(at - base));
        return -1;
    }
    return 0;
}

/* ---- loading ---- */

static int has_attrs(const V2ray__Core__App__Router__Domain *d, char **attrs, size_t nattrs)
{
    for (size_t i = 0; i < nattrs; i++) {
        int found = 0;
        for (size_t j = 0; j < d->n_attribute && !found; j++)
            found = d->attribute[j]->key && strcasecmp(d->attribute[j]->key, attrs[i]) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

static int load_site(struct lr_geo *g, const uint8_t *e, size_t en, char **attrs,
                     size_t nattrs, const char *path, const char *list, char *err, size_t errlen)
{
    V2ray__Core__App__Router__GeoSite *site =
        v2ray__core__app__router__geo_site__unpack(NULL, en, e);
    if (!site) {
        seterr(err, errlen, "%s: list '%s' does not decode as a GeoSite", path, list);
        return -1;
    }
    int rc = -1;
    g->dset = lr_dset_new();
    if (!g->dset) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < site->n_domain; i++) {
        const V2ray__Core__App__Router__Domain *d = site->domain[i];
        if (nattrs && !has_attrs(d, attrs, nattrs))
            continue;
        char why[256];
        const char *v = d->value ? d->value : "";
        if (lr_dset_add(g->dset, (int)d->type, v, strlen(v), why, sizeof(why)) != 0) {
            seterr(err, errlen, "%s: list '%s', entry %zu: %s", path, list, i + 1, why);
            goto out;
        }
    }
    if (lr_dset_build(g->dset) != 0) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    v2ray__core__app__router__geo_site__free_unpacked(site, NULL);
    return rc;
}

static int load_ip(struct lr_geo *g, const uint8_t *e, size_t en, const char *path,
                   const char *code, char *err, size_t errlen)
{
    V2ray__Core__App__Router__GeoIP *gi = v2ray__core__app__router__geo_ip__unpack(NULL, en, e);
    if (!gi) {
        seterr(err, errlen, "%s: '%s' does not decode as a GeoIP", path, code);
        return -1;
    }
    int rc = -1;
    g->cset = lr_cset_new();
    if (!g->cset) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < gi->n_cidr; i++) {
        const V2ray__Core__App__Router__CIDR *c = gi->cidr[i];
        if (lr_cset_add(g->cset, c->ip.data, c->ip.len, c->prefix) != 0) {
            seterr(err, errlen, "%s: '%s', CIDR %zu: bad address (%zu bytes) or prefix /%u",
                   path, code, i + 1, c->ip.len, c->prefix);
            goto out;
        }
    }
    if (lr_cset_build(g->cset) != 0) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    v2ray__core__app__router__geo_ip__free_unpacked(gi, NULL);
    return rc;
}

static const char MMDB_MARK[] = "\xab\xcd\xefMaxMind.com";

static int is_mmdb(const uint8_t *p, size_t n)
{
    size_t ml = sizeof(MMDB_MARK) - 1;
    size_t from = n > 128 * 1024 ? n - 128 * 1024 : 0;
    for (size_t i = n >= ml ? n - ml + 1 : 0; i-- > from;)
        if (memcmp(p + i, MMDB_MARK, ml) == 0)
            return 1;
    return 0;
}

/* Loads (or finds) one entry.  `name` is the list (with @attrs) or the code. */
static struct lr_geo *geo_get(int want, const char *path, const char *name, int reverse,
                              char *err, size_t errlen)
{
    if (!path || !name || !*name) {
        seterr(err, errlen, "no file or no name");
        return NULL;
    }
    size_t kl = strlen(path) + strlen(name) + 8;
    char *key = malloc(kl);
    if (!key) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(key, kl, "%d%d%s\n%s", want, reverse ? 1 : 0, path, name);
    /* names compare ignoring case, as v2ray's do */
    for (char *k = strchr(key, '\n'); *k; k++)
        if (*k >= 'A' && *k <= 'Z')
            *k = (char)(*k + 32);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(key);
        return NULL;
    }
    pthread_mutex_lock(&cache_mu);
    for (struct lr_geo *g = cache; g; g = g->next) {
        if (strcmp(g->key, key) == 0 && g->dev == st.st_dev && g->ino == st.st_ino &&
            g->size == st.st_size && g->mtime.tv_sec == st.st_mtim.tv_sec &&
            g->mtime.tv_nsec == st.st_mtim.tv_nsec) {
            g->refs++;
            pthread_mutex_unlock(&cache_mu);
            close(fd);
            free(key);
            return g;
        }
    }
    pthread_mutex_unlock(&cache_mu);

    struct lr_geo *g = calloc(1, sizeof(*g));
    void *map = MAP_FAILED;
    if (!g) {
        seterr(err, errlen, "out of memory");
        goto fail;
    }
    g->key = key;
    key = NULL;
    g->reverse = reverse;
    g->refs = 1;
    g->dev = st.st_dev;
    g->ino = st.st_ino;
    g->size = st.st_size;
    g->mtime = st.st_mtim;
    if (st.st_size <= 0 || (uint64_t)st.st_size > ((uint64_t)1 << 31)) {
        seterr(err, errlen, "%s: %s", path, st.st_size <= 0 ? "empty file" : "larger than 2 GiB");
        goto fail;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        seterr(err, errlen, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    if (want == GEO_IP && is_mmdb(map, (size_t)st.st_size)) {
        size_t cl = strlen(name);
        if (cl >= sizeof(g->code)) {
            seterr(err, errlen, "%s: country code '%s' too long", path, name);
            goto fail;
        }
        for (size_t i = 0; i <= cl; i++)
            g->code[i] = (name[i] >= 'a' && name[i] <= 'z') ? (char)(name[i] - 32) : name[i];
        int rc = MMDB_open(path, MMDB_MODE_MMAP, &g->mmdb);
        if (rc != MMDB_SUCCESS) {
            seterr(err, errlen, "%s: %s", path, MMDB_strerror(rc));
            goto fail;
        }
        g->kind = GEO_MMDB;
    } else {
        char *attrs[MAX_ATTRS];
        size_t nattrs = 0;
        char *list = strdup(name);
        if (!list) {
            seterr(err, errlen, "out of memory");
            goto fail;
        }
        if (want == GEO_SITE) {
            /* "cn@ads@!x": the list name, then the attributes wanted */
            char *at = strchr(list, '@');
            while (at) {
                *at++ = 0;
                if (nattrs == MAX_ATTRS) {
                    seterr(err, errlen, "'%s': more than %d attributes", name, MAX_ATTRS);
                    free(list);
                    goto fail;
                }
                if (*at)
                    attrs[nattrs++] = at;
                at = strchr(at, '@');
            }
        }
        const uint8_t *e;
        size_t en;
        int f = find_entry(map, (size_t)st.st_size, list, &e, &en, path, err, errlen);
        if (f == 0)
            seterr(err, errlen, "%s: no %s '%s'", path, want == GEO_SITE ? "list" : "code", list);
        int rc = f != 1 ? -1
                 : want == GEO_SITE ? load_site(g, e, en, attrs, nattrs, path, list, err, errlen)
                                    : load_ip(g, e, en, path, list, err, errlen);
        free(list);
        if (rc != 0)
            goto fail;
        g->kind = want;
    }
    munmap(map, (size_t)st.st_size);
    close(fd);
    pthread_mutex_lock(&cache_mu);
    g->next = cache;
    cache = g;
    pthread_mutex_unlock(&cache_mu);
    return g;
fail:
    if (map != MAP_FAILED)
        munmap(map, (size_t)st.st_size);
    close(fd);
    free(key);
    if (g)
        geo_free(g);
    return NULL;
}

struct lr_geo *lr_geo_site(const char *path, const char *list, char *err, size_t errlen)
{
    return geo_get(GEO_SITE, path, list, 0, err, errlen);
}

struct lr_geo *lr_geo_ip(const char *path, const char *code, int reverse,
                         char *err, size_t errlen)
{
    return geo_get(GEO_IP, path, code, reverse, err, errlen);
}

int lr_geo_match_domain(const struct lr_geo *g, const char *host)
{
    return g->kind == GEO_SITE && lr_dset_match(g->dset, host);
}

static int mmdb_match(const struct lr_geo *g, const uint8_t *ip, size_t len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (len == 16 && memcmp(ip, mapped, 12) == 0) {
        ip += 12;
        len = 4;
    }
    if (len == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, ip, 4);
    } else if (len == 16) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, ip, 16);
    } else {
        return 0;
    }
    int merr = 0;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(&g->mmdb, (struct sockaddr *)&ss, &merr);
    if (merr != MMDB_SUCCESS || !r.found_entry)
        return 0;
    MMDB_entry_data_s d;
    if (MMDB_get_value(&r.entry, &d, "country", "iso_code", NULL) != MMDB_SUCCESS ||
        !d.has_data || d.type != MMDB_DATA_TYPE_UTF8_STRING)
        return 0;
    size_t cl = strlen(g->code);
    return d.data_size == cl && strncasecmp(d.utf8_string, g->code, cl) == 0;
}

int lr_geo_match_ip(const struct lr_geo *g, const uint8_t *ip, size_t len)
{
    int in;
    if (!ip || (len != 4 && len != 16))
        return 0;
    if (g->kind == GEO_IP)
        in = lr_cset_match(g->cset, ip, len);
    else if (g->kind == GEO_MMDB)
        in = mmdb_match(g, ip, len);
    else
        return 0;
    return g->reverse ? !in : in;
}

size_t lr_geo_count(const struct lr_geo *g)
{
    return g->kind == GEO_SITE ? lr_dset_count(g->dset)
         : g->kind == GEO_IP ? lr_cset_count(g->cset) : 0;
}

struct lr_geo *lr_geo_ref(struct lr_geo *g)
{
    pthread_mutex_lock(&cache_mu);
    g->refs++;
    pthread_mutex_unlock(&cache_mu);
    return g;
}

void lr_geo_unref(struct lr_geo *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&cache_mu);
    if (--g->refs) {
        pthread_mutex_unlock(&cache_mu);
        return;
    }
    for (struct lr_geo **pp = &cache; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    geo_free(g);
}
