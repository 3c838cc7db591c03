/*
 * Domain pattern sets (domain_set.h).
 *
 * Full and Domain patterns live in one open-addressed hash table of
 * strings (an arena holds the bytes), each entry flagged with the kinds it
 * was added as.  A name is looked up whole (Full or Domain) and then every
 * suffix that starts after a dot (Domain only): "domain:a.com" matches
 * "a.com" and "x.a.com", never "ba.com".  At most 128 lookups for a
 * 255-byte name, whatever the set's size.
 *
 * Plain patterns go into an Aho-Corasick automaton over bytes: a trie whose
 * edges are one hash table keyed by (node, byte), failure links made
 * breadth first, and an "output" bit per node that also carries its
 * failure chain's.  Matching is one pass over the name.
 *
 * Regex patterns are compiled with PCRE2 and JIT-compiled where the
 * platform allows; a few are expected (geosite lists have a handful), so
 * they are tried one after the other, each under a step limit (a
 * backtracking pattern cannot hold the loop: past the limit it does not
 * match).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/domain_set.h"

#define NAME_MAX_LEN 255
#define REGEX_MATCH_LIMIT 100000
#define REGEX_DEPTH_LIMIT 1000

struct name_ent {
    uint32_t off;                /* in the arena */
    uint32_t hash;
    uint16_t len;
    uint8_t kinds;               /* bit 1 << LR_DOM_FULL, 1 << LR_DOM_DOMAIN */
};

struct ac_edge {
    uint32_t key;                /* node << 8 | byte, +1 (0: free slot) */
    int32_t child;
};

struct lr_dset {
    /* Full / Domain */
    char *arena; size_t arena_len, arena_cap;
    struct name_ent *ents; uint32_t nents, ents_cap;
    uint32_t *slots; uint32_t nslots;        /* entry index + 1, 0: free */
    /* Plain (Aho-Corasick) */
    int32_t *fail; uint8_t *out;             /* per node */
    int32_t *first, *next;                   /* trie children (for building) */
    uint8_t *byte;                           /* the byte into a node */
    uint32_t nnodes, nodes_cap;
    struct ac_edge *edges; uint32_t nedges, edges_cap;
    uint32_t nplain;
    /* Regex */
    pcre2_code **re; uint32_t nre;
    pcre2_match_context *mctx;               /* the step limits (shared, read-only) */
    int built;
};

static int seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;    /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    return h ? h : 1;
}

static inline char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

struct lr_dset *lr_dset_new(void)
{
    struct lr_dset *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    /* the Aho-Corasick root */
    s->nodes_cap = 16;
    s->fail = calloc(s->nodes_cap, sizeof(int32_t));
    s->out = calloc(s->nodes_cap, 1);
    s->first = malloc(s->nodes_cap * sizeof(int32_t));
    s->next = malloc(s->nodes_cap * sizeof(int32_t));
    s->byte = calloc(s->nodes_cap, 1);
    if (!s->fail || !s->out || !s->first || !s->next || !s->byte) {
        lr_dset_free(s);
        return NULL;
    }
    s->nnodes = 1;
    s->first[0] = s->next[0] = -1;
    return s;
}

/* ---- the name table ---- */

static const struct name_ent *name_find(const struct lr_dset *s, const char *p,
                                        size_t n, uint32_t h)
{
    if (!s->nslots)
        return NULL;
    uint32_t mask = s->nslots - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t e = s->slots[i];
        if (!e)
            return NULL;
        const struct name_ent *en = &s->ents[e - 1];
        if (en->hash == h && en->len == n && memcmp(s->arena + en->off, p, n) == 0)
            return en;
    }
}

static int slots_grow(struct lr_dset *s)
{
    uint32_t n = s->nslots ? s->nslots * 2 : 1024;
    uint32_t *sl = calloc(n, sizeof(uint32_t));
    if (!sl)
        return -1;
    for (uint32_t e = 0; e < s->nents; e++) {
        uint32_t i = s->ents[e].hash & (n - 1);
        while (sl[i])
            i = (i + 1) & (n - 1);
        sl[i] = e + 1;
    }
    free(s->slots);
    s->slots = sl;
    s->nslots = n;
    return 0;
}

static int name_add(struct lr_dset *s, const char *p, size_t n, int kind)
{
    uint32_t h = hash_bytes(p, n);
    struct name_ent *en = (struct name_ent *)name_find(s, p, n, h);
    if (en) {
        en->kinds |= (uint8_t)(1u << kind);
        return 0;
    }
    if ((s->nents + 1) * 2 > s->nslots && slots_grow(s) != 0)
        return -1;
    if (s->nents == s->ents_cap) {
        uint32_t cap = s->ents_cap ? s->ents_cap * 2 : 256;
        struct name_ent *ne = realloc(s->ents, cap * sizeof(*ne));
        if (!ne)
            return -1;
        s->ents = ne;
        s->ents_cap = cap;
    }
    if (s->arena_len + n > s->arena_cap) {
        size_t cap = s->arena_cap ? s->arena_cap * 2 : 4096;
        while (cap < s->arena_len + n)
            cap *= 2;
        char *na = realloc(s->arena, cap);
        if (!na)
            return -1;
        s->arena = na;
        s->arena_cap = cap;
    }
    memcpy(s->arena + s->arena_len, p, n);
    struct name_ent *ne = &s->ents[s->nents];
    ne->off = (uint32_t)s->arena_len;
    ne->len = (uint16_t)n;
    ne->hash = h;
    ne->kinds = (uint8_t)(1u << kind);
    s->arena_len += n;
    uint32_t mask = s->nslots - 1, i = h & mask;
    while (s->slots[i])
        i = (i + 1) & mask;
    s->slots[i] = ++s->nents;
    return 0;
}

/* ---- the keyword automaton ---- */

static int32_t edge_get(const struct lr_dset *s, uint32_t node, uint8_t c)
{
    if (!s->edges_cap)
        return -1;
    uint32_t key = ((node << 8) | c) + 1, mask = s->edges_cap - 1;
    for (uint32_t i = (key * 2654435761u) & mask;; i = (i + 1) & mask) {
        if (s->edges[i].key == key)
            return s->edges[i].child;
        if (!s->edges[i].key)
            return -1;
    }
}

static void edge_put(struct ac_edge *tab, uint32_t cap, uint32_t key, int32_t child)
{
    uint32_t mask = cap - 1, i = (key * 2654435761u) & mask;
    while (tab[i].key)
        i = (i + 1) & mask;
    tab[i].key = key;
    tab[i].child = child;
}

static int edges_grow(struct lr_dset *s)
{
    uint32_t cap = s->edges_cap ? s->edges_cap * 2 : 1024;
    struct ac_edge *t = calloc(cap, sizeof(*t));
    if (!t)
        return -1;
    for (uint32_t i = 0; i < s->edges_cap; i++)
        if (s->edges[i].key)
            edge_put(t, cap, s->edges[i].key, s->edges[i].child);
    free(s->edges);
    s->edges = t;
    s->edges_cap = cap;
    return 0;
}

static int node_new(struct lr_dset *s, uint32_t parent, uint8_t c, int32_t *out)
{
    if (s->nnodes >= (1u << 23))
        return -1;               /* keys are node << 8 in 32 bits */
    if (s->nnodes == s->nodes_cap) {
        uint32_t cap = s->nodes_cap * 2;
        int32_t *f = realloc(s->fail, cap * sizeof(int32_t));
        if (f)
            s->fail = f;
        uint8_t *o = realloc(s->out, cap);
        if (o)
            s->out = o;
        int32_t *fi = realloc(s->first, cap * sizeof(int32_t));
        if (fi)
            s->first = fi;
        int32_t *nx = realloc(s->next, cap * sizeof(int32_t));
        if (nx)
            s->next = nx;
        uint8_t *b = realloc(s->byte, cap);
        if (b)
            s->byte = b;
        if (!f || !o || !fi || !nx || !b)
            return -1;
        s->nodes_cap = cap;
    }
    if ((s->nedges + 1) * 2 > s->edges_cap && edges_grow(s) != 0)
        return -1;
    int32_t n = (int32_t)s->nnodes++;
    s->fail[n] = 0;
    s->out[n] = 0;
    s->first[n] = -1;
    s->byte[n] = c;
    s->next[n] = s->first[parent];
    s->first[parent] = n;
    edge_put(s->edges, s->edges_cap, ((parent << 8) | c) + 1, n);
    s->nedges++;
    *out = n;
    return 0;
}

static int plain_add(struct lr_dset *s, const char *p, size_t n)
{
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t ch = edge_get(s, node, (uint8_t)p[i]);
        if (ch < 0 && node_new(s, node, (uint8_t)p[i], &ch) != 0)
            return -1;
        node = (uint32_t)ch;
    }
    s->out[node] = 1;
    s->nplain++;
    return 0;
}

/* goto(node, c) with failure links; the root loops to itself */
static uint32_t ac_step(const struct lr_dset *s, uint32_t node, uint8_t c)
{
    for (;;) {
        int32_t ch = edge_get(s, node, c);
        if (ch >= 0)
            return (uint32_t)ch;
        if (node == 0)
            return 0;
        node = (uint32_t)s->fail[node];
    }
}

int lr_dset_build(struct lr_dset *s)
{
    if (s->built)
        return 0;
    if (s->nnodes > 1) {
        /* breadth first over the trie: a node's failure link is its
         * parent's failure link stepped by the node's byte */
        int32_t *queue = malloc(s->nnodes * sizeof(int32_t));
        if (!queue)
            return -1;
        uint32_t head = 0, tail = 0;
        for (int32_t c = s->first[0]; c >= 0; c = s->next[c]) {
            s->fail[c] = 0;
            queue[tail++] = c;
        }
        while (head < tail) {
            int32_t n = queue[head++];
            for (int32_t c = s->first[n]; c >= 0; c = s->next[c]) {
                s->fail[c] = (int32_t)ac_step(s, (uint32_t)s->fail[n], s->byte[c]);
                if (s->fail[c] == c)
                    s->fail[c] = 0;
                s->out[c] |= s->out[s->fail[c]];
                queue[tail++] = c;
            }
        }
        free(queue);
    }
    s->built = 1;
    return 0;
}

/* ---- the set ---- */

int lr_dset_add(struct lr_dset *s, int type, const char *v, size_t n,
                char *err, size_t errlen)
{
    if (!v || n == 0)
        return seterr(err, errlen, "empty domain pattern");
    if (type == LR_DOM_REGEX) {
        int ec;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)v, n, 0, &ec, &off, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof(msg));
            return seterr(err, errlen, "bad regexp \"%.*s\": %s at offset %zu",
                          (int)(n > 200 ? 200 : n), v, (const char *)msg, (size_t)off);
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter otherwise */
        if (!s->mctx) {
            /* a pathological pattern costs at most this much per name:
             * past the limit the match fails (the rule does not match) */
            if (!(s->mctx = pcre2_match_context_create(NULL))) {
                pcre2_code_free(re);
                return seterr(err, errlen, "out of memory");
            }
            pcre2_set_match_limit(s->mctx, REGEX_MATCH_LIMIT);
            pcre2_set_depth_limit(s->mctx, REGEX_DEPTH_LIMIT);
        }
        pcre2_code **nr = realloc(s->re, (s->nre + 1) * sizeof(*nr));
        if (!nr) {
            pcre2_code_free(re);
            return seterr(err, errlen, "out of memory");
        }
        s->re = nr;
        s->re[s->nre++] = re;
        return 0;
    }
    if (type != LR_DOM_PLAIN && type != LR_DOM_DOMAIN && type != LR_DOM_FULL)
        return seterr(err, errlen, "unknown domain pattern type %d", type);
    char buf[NAME_MAX_LEN + 1];
    if (n > 1 && v[n - 1] == '.' && type != LR_DOM_PLAIN)
        n--;                     /* "a.com." is "a.com" */
    if (n > NAME_MAX_LEN) {
        if (type != LR_DOM_PLAIN)
            return seterr(err, errlen, "domain pattern longer than %d bytes", NAME_MAX_LEN);
        return 0;                /* a keyword longer than any name matches nothing */
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = lower(v[i]);
    int rc = type == LR_DOM_PLAIN ? plain_add(s, buf, n) : name_add(s, buf, n, type);
    if (rc == 0 && type == LR_DOM_PLAIN)
        s->built = 0;            /* the automaton's links are made again */
    return rc == 0 ? 0 : seterr(err, errlen, "out of memory");
}

int lr_dset_match(const struct lr_dset *s, const char *host)
{
    char buf[NAME_MAX_LEN + 1];
    size_t n = 0;
    if (!host)
        return 0;
    for (; host[n]; n++) {
        if (n == NAME_MAX_LEN)
            return 0;            /* no name is that long */
        buf[n] = lower(host[n]);
    }
    buf[n] = 0;
    /* keywords and regexps see the name as given (lower case), as v2ray's
     * do; names compare without one trailing dot */
    size_t full = n;
    if (n > 1 && buf[n - 1] == '.')
        n--;
    if (n == 0)
        return 0;
    if (s->nents) {
        const struct name_ent *e = name_find(s, buf, n, hash_bytes(buf, n));
        if (e)
            return 1;
        for (size_t i = 0; i < n; i++) {
            if (buf[i] != '.' || i + 1 >= n)
                continue;
            e = name_find(s, buf + i + 1, n - i - 1, hash_bytes(buf + i + 1, n - i - 1));
            if (e && (e->kinds & (1u << LR_DOM_DOMAIN)))
                return 1;
        }
    }
    if (s->nplain) {
        uint32_t node = 0;
        for (size_t i = 0; i < full; i++) {
            node = ac_step(s, node, (uint8_t)buf[i]);
            if (s->out[node])
                return 1;
        }
    }
    if (s->nre) {
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        if (!md)
            return 0;
        int hit = 0;
        for (uint32_t i = 0; i < s->nre && !hit; i++)
            hit = pcre2_match(s->re[i], (PCRE2_SPTR)buf, full, 0, 0, md, s->mctx) >= 0;
        pcre2_match_data_free(md);
        return hit;
    }
    return 0;
}

size_t lr_dset_count(const struct lr_dset *s)
{
    return s->nents + s->nplain + s->nre;
}

void lr_dset_free(struct lr_dset *s)
{
    if (!s)
        return;
    free(s->arena);
    free(s->ents);
    free(s->slots);
    free(s->fail);
    free(s->out);
    free(s->first);
    free(s->next);
    free(s->byte);
    free(s->edges);
    for (uint32_t i = 0; i < s->nre; i++)
        pcre2_code_free(s->re[i]);
    free(s->re);
    pcre2_match_context_free(s->mctx);
    free(s);
}
