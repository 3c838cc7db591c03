/*
 * A compiled set of domain patterns, v2ray's four kinds: a hashed set of
 * names for Full and Domain (a name matches a Domain pattern when it is the
 * pattern or ends in "." + pattern: found by looking up the name and each
 * of its label suffixes), an Aho-Corasick automaton for Plain (substring)
 * patterns, and PCRE2 (JIT) for Regex.  Names and Full/Domain/Plain
 * patterns are compared in lower case, one trailing dot of the name
 * dropped; keywords and regexps run over the lower-case name as given, as
 * v2ray's do.
 *
 * Built once (lr_dset_add ... lr_dset_build), then only read: any number of
 * threads may call lr_dset_match at once.
 */
#ifndef LR_DOMAIN_SET_H
#define LR_DOMAIN_SET_H

#include <stddef.h>
#include <stdint.h>

/* The values are v2ray's Domain.Type (geosite.dat's wire values). */
enum lr_dom_type {
    LR_DOM_PLAIN = 0,            /* a substring of the name */
    LR_DOM_REGEX = 1,            /* a regular expression (PCRE2 syntax) */
    LR_DOM_DOMAIN = 2,           /* the name or any name below it */
    LR_DOM_FULL = 3              /* exactly the name */
};

struct lr_dset;

struct lr_dset *lr_dset_new(void);
/* Adds a pattern of `type` (n bytes at v): 0, or -1 with a message in err
 * (empty pattern, a regexp that does not compile, unknown type, memory). */
int lr_dset_add(struct lr_dset *s, int type, const char *v, size_t n,
                char *err, size_t errlen);
/* Finishes the set (the keyword automaton): 0, or -1 out of memory.
 * Building twice does nothing; adding a keyword after it needs another
 * build (before any lr_dset_match). */
int lr_dset_build(struct lr_dset *s);
/* 1 when `host` matches any pattern (the set must be built). */
int lr_dset_match(const struct lr_dset *s, const char *host);
/* Patterns held (duplicates of Full/Domain counted once). */
size_t lr_dset_count(const struct lr_dset *s);
void lr_dset_free(struct lr_dset *s);

#endif
