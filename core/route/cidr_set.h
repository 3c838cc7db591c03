/*
 * A compiled set of address blocks, IPv4 and IPv6: each block becomes a
 * range [first, last]; the ranges are sorted and overlapping or adjacent
 * ones merged, and a lookup is a binary search.  An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is looked up as the IPv4 address, and a block
 * inside ::ffff:0:0/96 is stored as the IPv4 block it maps.
 *
 * Built once (lr_cset_add ... lr_cset_build), then only read: any number
 * of threads may call lr_cset_match at once.
 */
#ifndef LR_CIDR_SET_H
#define LR_CIDR_SET_H

#include <stddef.h>
#include <stdint.h>

struct lr_cset;

struct lr_cset *lr_cset_new(void);
/* A block: `len` 4 or 16 bytes at ip, a prefix of `bits` (<= len * 8);
 * bits past the prefix are ignored.  0, or -1 (bad length/prefix, memory). */
int lr_cset_add(struct lr_cset *s, const uint8_t *ip, size_t len, unsigned bits);
/* Sorts and merges: 0, or -1 out of memory.  Building twice does nothing. */
int lr_cset_build(struct lr_cset *s);
/* 1 when the address (4 or 16 bytes) is in a block of the (built) set. */
int lr_cset_match(const struct lr_cset *s, const uint8_t *ip, size_t len);
/* Ranges after merging, IPv4 and IPv6 together. */
size_t lr_cset_count(const struct lr_cset *s);
void lr_cset_free(struct lr_cset *s);

#endif
