/*
 * Replay state (vmess-wire.md 14): the AuthIDs and the (user, body key,
 * body IV) sessions already seen.  v2ray keeps AuthIDs in two cuckoo
 * filters rotated every 120 s, which both forgets an AuthID while it can
 * still pass the time check and rejects fresh clients when a filter
 * fills.  Here every entry carries the second after which it can no
 * longer be replayed (an AuthID: its timestamp + 121; a session: now +
 * 180), and entries sit in exact hash sets bucketed by that expiry, 120 s
 * per bucket, so a whole bucket is dropped once its last entry has
 * expired.  The number of entries is capped; at the cap inserts fail
 * closed (LR_EFULL) and are counted.
 *
 * Entries are also counted per owner (the user whose key opened the
 * AuthID, or whose session it is), and one owner may hold at most a
 * quarter of the cap (LR_EFULL for that owner only, counted apart): a
 * single valid user opening AuthID-only connections as fast as it can
 * fills its own share and then locks out itself, not everyone.  Each
 * bucket keeps how many of its entries each owner has, so dropping a
 * bucket gives every owner its entries back.
 *
 * The sets are keyed by a per-process random seed so a client cannot aim
 * keys at one probe run.
 *
 * One replay state serves every worker thread of a daemon (a replay that
 * lands on another worker than the original is still caught), so each
 * public call holds the state's mutex; a check is a few hash probes.
 */
#include <malloc.h>
#include <pthread.h>
#include <string.h>

#include "vmess/vmess.h"

#define BUCKET_SPAN 120
#define NBUCKETS 4   /* live buckets never exceed ceil(241 / 120) + 1 */

/* How many of a bucket's entries one owner holds. */
struct ocount {
    uint32_t owner;      /* index into lr_replay.owners, + 1; 0 = empty */
    uint32_t n;
};

struct bucket {
    int64_t id;          /* expiry / BUCKET_SPAN; -1 unused */
    uint32_t count;
    uint32_t mask;       /* slots - 1; 0 when unallocated */
    uint32_t *tags;      /* hash | 1 of the slot's key; 0 = empty */
    uint8_t *keys;       /* slots * key width */
    struct ocount *oc;   /* open addressing by owner */
    uint32_t omask, on;  /* slots - 1 (0: none), owners in it */
};

struct xset {
    uint32_t kw;         /* key width */
    int which;           /* 0 AuthIDs, 1 sessions: owner.live[which] */
    uint64_t count;
    struct bucket b[NBUCKETS];
};

/* Users seen as owners; never removed (authenticated users only, so the
 * table is as large as the user base at most). */
struct owner {
    uint8_t id[16];
    uint32_t live[2];    /* entries held in the AuthID / session set */
};

struct lr_replay {
    pthread_mutex_t lock;
    uint32_t cap;
    uint32_t owner_cap;
    uint64_t seed[2];
    uint64_t refused;
    uint64_t owner_refused;
    struct xset authid;
    struct xset session;
    struct owner *owners;
    uint32_t nowners, owners_size;
    uint32_t *oidx;      /* hash of id -> owner index + 1; 0 empty */
    uint32_t oidx_mask;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint32_t key_hash(const struct lr_replay *r, const uint8_t *k,
                         size_t n)
{
    uint64_t h = r->seed[0];
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, k + i, n - i < 8 ? n - i : 8);
        h = mix(h ^ w ^ r->seed[1]);
    }
    return (uint32_t)h | 1u;
}

static void bucket_clear(struct lr_replay *r, struct xset *s, struct bucket *b)
{
    s->count -= b->count;
    for (uint32_t i = 0; b->omask && i <= b->omask; i++)
        if (b->oc[i].owner)
            r->owners[b->oc[i].owner - 1].live[s->which] -= b->oc[i].n;
    free(b->tags);
    free(b->keys);
    free(b->oc);
    memset(b, 0, sizeof(*b));
    b->id = -1;
}

/* ------------------------------------------------------------ owners */

/* The owner index (+ 1) of a user ID, added if new; 0 on ENOMEM. */
static uint32_t owner_of(struct lr_replay *r, const uint8_t *id)
{
    uint32_t h = key_hash(r, id, 16);
    for (uint32_t i = h & r->oidx_mask; r->oidx && r->oidx[i];
         i = (i + 1) & r->oidx_mask)
        if (memcmp(r->owners[r->oidx[i] - 1].id, id, 16) == 0)
            return r->oidx[i];
    if (!r->oidx || (r->nowners + 1) * 2 > r->oidx_mask + 1) {
        uint32_t slots = r->oidx ? (r->oidx_mask + 1) * 2 : 64;
        uint32_t *ni = calloc(slots, sizeof(*ni));
        if (!ni)
            return 0;
        for (uint32_t k = 0; k < r->nowners; k++) {
            uint32_t j = key_hash(r, r->owners[k].id, 16) & (slots - 1);
            while (ni[j])
                j = (j + 1) & (slots - 1);
            ni[j] = k + 1;
        }
        free(r->oidx);
        r->oidx = ni;
        r->oidx_mask = slots - 1;
    }
    if (r->nowners == r->owners_size) {
        uint32_t n = r->owners_size ? r->owners_size * 2 : 32;
        struct owner *no = realloc(r->owners, sizeof(*no) * n);
        if (!no)
            return 0;
        r->owners = no;
        r->owners_size = n;
    }
    struct owner *o = &r->owners[r->nowners++];
    memcpy(o->id, id, 16);
    o->live[0] = o->live[1] = 0;
    uint32_t j = h & r->oidx_mask;
    while (r->oidx[j])
        j = (j + 1) & r->oidx_mask;
    r->oidx[j] = r->nowners;
    return r->nowners;
}

/* Counts one more entry of `owner` in bucket b; LR_ENOMEM if it cannot. */
static int bucket_count_owner(struct bucket *b, uint32_t owner)
{
    if (!b->omask || (b->on + 1) * 2 > b->omask + 1) {
        uint32_t slots = b->omask ? (b->omask + 1) * 2 : 16;
        struct ocount *no = calloc(slots, sizeof(*no));
        if (!no)
            return LR_ENOMEM;
        for (uint32_t i = 0; b->omask && i <= b->omask; i++)
            if (b->oc[i].owner) {
                uint32_t j = (b->oc[i].owner * 0x9E3779B1u) & (slots - 1);
                while (no[j].owner)
                    j = (j + 1) & (slots - 1);
                no[j] = b->oc[i];
            }
        free(b->oc);
        b->oc = no;
        b->omask = slots - 1;
    }
    uint32_t j = (owner * 0x9E3779B1u) & b->omask;
    while (b->oc[j].owner && b->oc[j].owner != owner)
        j = (j + 1) & b->omask;
    if (!b->oc[j].owner) {
        b->oc[j].owner = owner;
        b->on++;
    }
    b->oc[j].n++;
    return LR_OK;
}

static int bucket_has(const struct xset *s, const struct bucket *b,
                      uint32_t h, const uint8_t *k)
{
    if (!b->mask)
        return 0;
    for (uint32_t i = h & b->mask; b->tags[i]; i = (i + 1) & b->mask)
        if (b->tags[i] == h && memcmp(b->keys + (size_t)i * s->kw, k, s->kw) == 0)
            return 1;
    return 0;
}

static void bucket_put(struct xset *s, struct bucket *b, uint32_t h,
                       const uint8_t *k)
{
    uint32_t i = h & b->mask;
    while (b->tags[i])
        i = (i + 1) & b->mask;
    b->tags[i] = h;
    memcpy(b->keys + (size_t)i * s->kw, k, s->kw);
    b->count++;
    s->count++;
}

static int bucket_grow(struct xset *s, struct bucket *b)
{
    uint32_t slots = b->mask ? (b->mask + 1) * 2 : 1024;
    struct bucket nb = *b;
    nb.mask = slots - 1;
    nb.count = 0;
    nb.tags = calloc(slots, sizeof(*nb.tags));
    nb.keys = malloc((size_t)slots * s->kw);
    if (!nb.tags || !nb.keys) {
        free(nb.tags);
        free(nb.keys);
        return LR_ENOMEM;
    }
    uint32_t old = b->count;
    for (uint32_t i = 0; b->mask && i <= b->mask; i++)
        if (b->tags[i]) {
            s->count--;
            bucket_put(s, &nb, b->tags[i], b->keys + (size_t)i * s->kw);
        }
    lr_require(nb.count == old);
    free(b->tags);
    free(b->keys);
    *b = nb;
    return LR_OK;
}

static void xset_expire(struct lr_replay *r, struct xset *s, int64_t now)
{
    int freed = 0;
    for (int i = 0; i < NBUCKETS; i++)
        if (s->b[i].id >= 0 && (s->b[i].id + 1) * BUCKET_SPAN <= now) {
            freed |= s->b[i].mask != 0;
            bucket_clear(r, s, &s->b[i]);
        }
    /* a bucket can hold megabytes after a burst; hand them back to the
     * system (this happens at most every 120 s) */
    if (freed)
        malloc_trim(0);
}

/* LR_OK (inserted), LR_EREPLAY (present), LR_EFULL, LR_ENOMEM.  `owner`
 * (a user's main ID, or NULL) is charged with the entry. */
static int xset_check(struct lr_replay *r, struct xset *s, const uint8_t *k,
                      const uint8_t *owner_id, int64_t expiry, int64_t now)
{
    uint32_t h = key_hash(r, k, s->kw);
    xset_expire(r, s, now);
    for (int i = 0; i < NBUCKETS; i++)
        if (s->b[i].id >= 0 && bucket_has(s, &s->b[i], h, k))
            return LR_EREPLAY;
    if (s->count >= r->cap) {
        r->refused++;
        return LR_EFULL;
    }
    uint32_t owner = 0;
    if (owner_id) {
        if (!(owner = owner_of(r, owner_id))) {
            r->refused++;
            return LR_ENOMEM;
        }
        if (r->owners[owner - 1].live[s->which] >= r->owner_cap) {
            r->owner_refused++;
            return LR_EFULL;
        }
    }
    int64_t id = expiry / BUCKET_SPAN;
    struct bucket *b = &s->b[id % NBUCKETS];
    if (b->id != id) {
        if (b->id >= 0) /* still live: only if the clock went backwards */
            bucket_clear(r, s, b);
        b->id = id;
    }
    if (!b->mask || (b->count + 1) * 4 > (b->mask + 1) * 3) {
        int rc = bucket_grow(s, b);
        if (rc != LR_OK) {
            r->refused++;
            return rc;
        }
    }
    if (owner) {
        int rc = bucket_count_owner(b, owner);
        if (rc != LR_OK) {
            r->refused++;
            return rc;
        }
        r->owners[owner - 1].live[s->which]++;
    }
    bucket_put(s, b, h, k);
    return LR_OK;
}

LR_API struct lr_replay *lr_replay_new(uint32_t cap)
{
    struct lr_replay *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->cap = cap ? cap : 1u << 20;
    r->owner_cap = r->cap / 4 ? r->cap / 4 : 1;
    lr_random((uint8_t *)r->seed, sizeof(r->seed));
    r->authid.kw = 16;
    r->session.kw = 48;
    r->session.which = 1;
    for (int i = 0; i < NBUCKETS; i++) {
        r->authid.b[i].id = -1;
        r->session.b[i].id = -1;
    }
    return r;
}

LR_API void lr_replay_free(struct lr_replay *r)
{
    if (!r)
        return;
    for (int i = 0; i < NBUCKETS; i++) {
        bucket_clear(r, &r->authid, &r->authid.b[i]);
        bucket_clear(r, &r->session, &r->session.b[i]);
    }
    pthread_mutex_destroy(&r->lock);
    free(r->owners);
    free(r->oidx);
    free(r);
}

LR_API void lr_replay_expire(struct lr_replay *r, int64_t now)
{
    pthread_mutex_lock(&r->lock);
    xset_expire(r, &r->authid, now);
    xset_expire(r, &r->session, now);
    pthread_mutex_unlock(&r->lock);
}

LR_API void lr_replay_stats(struct lr_replay *r, struct lr_replay_stats *out)
{
    pthread_mutex_lock(&r->lock);
    out->authids = r->authid.count;
    out->sessions = r->session.count;
    out->full_refusals = r->refused;
    out->owner_refusals = r->owner_refused;
    out->owners = r->nowners;
    out->bytes = (uint64_t)r->owners_size * sizeof(struct owner) +
                 (r->oidx ? (uint64_t)(r->oidx_mask + 1) * sizeof(uint32_t) : 0);
    const struct xset *sets[2] = {&r->authid, &r->session};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NBUCKETS; i++)
            if (sets[k]->b[i].mask)
                out->bytes += (uint64_t)(sets[k]->b[i].mask + 1) *
                              (sizeof(uint32_t) + sets[k]->kw) +
                              (uint64_t)(sets[k]->b[i].omask + 1) * sizeof(struct ocount);
    pthread_mutex_unlock(&r->lock);
}

LR_API void lr_replay_set_owner_cap(struct lr_replay *r, uint32_t cap)
{
    pthread_mutex_lock(&r->lock);
    r->owner_cap = cap ? cap : r->cap / 4 ? r->cap / 4 : 1;
    pthread_mutex_unlock(&r->lock);
}

LR_API int lr_replay_check_authid(struct lr_replay *r, const uint8_t *authid,
                                  int64_t now)
{
    return lr_replay_check_authid_for(r, authid, NULL, now);
}

LR_API int lr_replay_check_authid_for(struct lr_replay *r, const uint8_t *authid,
                                      const uint8_t *owner, int64_t now)
{
    /* An AuthID passes the time check until its timestamp + 120; the
     * timestamp is inside it, but holding it until now + 241 covers every
     * timestamp the check accepts without decrypting again. */
    pthread_mutex_lock(&r->lock);
    int rc = xset_check(r, &r->authid, authid, owner,
                        now + 2 * LR_TIME_WINDOW + 1, now);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int lr_replay_check_session(struct lr_replay *r, const uint8_t *user_id,
                            const uint8_t *key, const uint8_t *iv,
                            int64_t now)
{
    /* keyed by the user's main ID, not its index: indices change on reload */
    uint8_t k[48];
    memcpy(k, user_id, 16);
    memcpy(k + 16, key, 16);
    memcpy(k + 32, iv, 16);
    pthread_mutex_lock(&r->lock);
    int rc = xset_check(r, &r->session, k, user_id, now + LR_SESSION_TTL, now);
    pthread_mutex_unlock(&r->lock);
    return rc;
}
