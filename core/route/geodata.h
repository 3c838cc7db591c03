/*
 * Routing data files: v2fly's geosite.dat (a GeoSiteList) and geoip.dat (a
 * GeoIPList), and MaxMind DB (.mmdb) country databases.  Only the entry a
 * rule names is decoded and compiled (a domain_set or a cidr_set); an
 * .mmdb is opened (mapped) and asked per address.
 *
 * A loaded entry is shared: loading the same entry of the same file (same
 * path, device, inode, size and modification time) while an earlier load
 * is still held returns that one, so the workers of a generation and the
 * next generation after a reload that leaves the file alone share one
 * copy.  Every lr_geo_* call may be made from any thread; the matchers
 * only read.
 */
#ifndef LR_GEODATA_H
#define LR_GEODATA_H

#include <stddef.h>
#include <stdint.h>

struct lr_geo;

/* The list `list` of the GeoSiteList at `path` (names compared ignoring
 * case); `list` may end in "@attr" parts ("cn@ads"): then only the
 * entries carrying every such attribute.  NULL with a message in err. */
struct lr_geo *lr_geo_site(const char *path, const char *list, char *err, size_t errlen);
/* The country `code` of the GeoIPList or MaxMind DB at `path` (told apart
 * by content); `reverse`: the matcher matches every address NOT in it.
 * NULL with a message in err. */
struct lr_geo *lr_geo_ip(const char *path, const char *code, int reverse,
                         char *err, size_t errlen);
int lr_geo_match_domain(const struct lr_geo *g, const char *host);
int lr_geo_match_ip(const struct lr_geo *g, const uint8_t *ip, size_t len);
/* Patterns or ranges held (0 for an .mmdb). */
size_t lr_geo_count(const struct lr_geo *g);
/* Another holder of g. */
struct lr_geo *lr_geo_ref(struct lr_geo *g);
void lr_geo_unref(struct lr_geo *g);

#endif
