/*
 * Identity and the server's user table (vmess-wire.md 2 and 4): UUIDs,
 * cmdKey, the alterId chain, legacy auth values, and the lookup table of
 * every legacy auth value a user may send in the time window.
 *
 * The legacy table is a ring of one slab per second; each slab holds one
 * entry per ID (main and alternates of every user).  An open-addressing
 * hash index (linear probing, backward-shift deletion, no tombstones) maps
 * an auth value to its entry.  A refresh only computes the seconds that
 * enter the window and unlinks the ones that leave it.
 */
#include <stdatomic.h>
#include <string.h>

#include <openssl/evp.h>

#include "vmess/vmess.h"

#define LEGACY_RING 256 /* > 2 * LR_TIME_WINDOW + 1 seconds */

static const char cmd_key_salt[] = "c48619fe-8f02-49e0-b9e9-edf763e17e21";
static const char alt_salt[] = "16167dc8-16b6-4e6d-b8bb-65dd68113a81";
static const char alt_retry_salt[] = "533eff8a-4113-4b10-b5ce-0f5d76b98cd2";

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

LR_API int lr_uuid_parse(const char *s, size_t len, uint8_t *out)
{
    size_t j = 0;
    if (s == NULL || (len != 36 && len != 32))
        return LR_EINVAL;
    for (size_t i = 0; i < len;) {
        if (len == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (s[i] != '-')
                return LR_EINVAL;
            i++;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0 || j >= 16)
            return LR_EINVAL;
        out[j++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return j == 16 ? LR_OK : LR_EINVAL;
}

LR_API int lr_uuid_format(const uint8_t *id, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[id[i] >> 4];
        *p++ = hex[id[i] & 15];
    }
    *p = '\0';
    return LR_OK;
}

LR_API void lr_uuid_random(uint8_t *out)
{
    lr_random(out, 16);
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

LR_API int lr_cmd_key(const uint8_t *id, uint8_t *out)
{
    lr_md5_2(id, 16, (const uint8_t *)cmd_key_salt, sizeof(cmd_key_salt) - 1,
             out);
    return LR_OK;
}

/* Alternate IDs chain from the main ID; a digest equal to its input is
 * re-fed with the retry salt appended to the same running MD5 (v2ray's
 * common/protocol/id.go nextID). */
LR_API int lr_alter_ids(const uint8_t *id, uint32_t n, uint8_t *out)
{
    uint8_t prev[16];
    memcpy(prev, id, 16);
    for (uint32_t k = 0; k < n; k++) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        uint8_t d[16];
        lr_require(c != NULL);
        lr_require(EVP_DigestInit_ex(c, lr_alg_md5(), NULL) == 1);
        EVP_DigestUpdate(c, prev, 16);
        EVP_DigestUpdate(c, alt_salt, sizeof(alt_salt) - 1);
        for (;;) {
            EVP_MD_CTX *snap = EVP_MD_CTX_new();
            lr_require(snap != NULL && EVP_MD_CTX_copy_ex(snap, c) == 1);
            EVP_DigestFinal_ex(snap, d, NULL);
            EVP_MD_CTX_free(snap);
            if (memcmp(d, prev, 16) != 0)
                break;
            EVP_DigestUpdate(c, alt_retry_salt, sizeof(alt_retry_salt) - 1);
        }
        EVP_MD_CTX_free(c);
        memcpy(out + 16 * k, d, 16);
        memcpy(prev, d, 16);
    }
    return LR_OK;
}

LR_API int lr_legacy_auth(const uint8_t *id16, int64_t ts, uint8_t *out)
{
    uint8_t t[8];
    lr_put_be64(t, (uint64_t)ts);
    return lr_hmac_md5(id16, 16, t, 8, out);
}

/* ---------------------------------------------------------------- users */

LR_API struct lr_users *lr_users_new(void)
{
    struct lr_users *u = calloc(1, sizeof(*u));
    if (u) {
        atomic_init(&u->refs, 1);
        u->lo = 1;
        u->hi = 0;
    }
    return u;
}

void lr_users_ref(struct lr_users *u)
{
    atomic_fetch_add(&u->refs, 1);
}

static void legacy_drop(struct lr_users *u)
{
    if (u->tags)
        lr_wipe(u->tags, sizeof(*u->tags) * (size_t)LEGACY_RING * u->ids);
    free(u->tags);
    free(u->tainted);
    free(u->owner);
    free(u->index);
    u->tags = NULL;
    u->tainted = NULL;
    u->owner = NULL;
    u->index = NULL;
    u->ids = 0;
    u->lo = 1;
    u->hi = 0;
}

LR_API void lr_users_free(struct lr_users *u)
{
    if (!u || atomic_fetch_sub(&u->refs, 1) > 1)
        return;
    for (uint32_t i = 0; i < u->n; i++) {
        lr_aes_block_deinit(&u->v[i].authid);
        free(u->v[i].alt_ids);
        if (u->v[i].hk)
            lr_wipe(u->v[i].hk, sizeof(*u->v[i].hk) * (1 + (size_t)u->v[i].alter_id));
        free(u->v[i].hk);
    }
    legacy_drop(u);
    free(u->byid);
    if (u->v)
        lr_wipe(u->v, sizeof(*u->v) * u->cap);
    free(u->v);
    free(u);
}

static int authid_schedule(const uint8_t *cmd_key, struct lr_aes_block *b);

static uint32_t id_hash(const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id, 8);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return (uint32_t)(h ^ (h >> 32));
}

/* The user with ID `id`, or -1. */
static int32_t by_id(const struct lr_users *u, const uint8_t *id)
{
    if (!u->byid)
        return -1;
    for (uint32_t j = id_hash(id) & u->byid_mask; u->byid[j];
         j = (j + 1) & u->byid_mask)
        if (memcmp(u->v[u->byid[j] - 1].id, id, 16) == 0)
            return (int32_t)(u->byid[j] - 1);
    return -1;
}

/* (Re)builds the ID index for `want` users. */
static int byid_rebuild(struct lr_users *u, uint32_t want)
{
    uint32_t slots = 16;
    while (slots < want * 2)
        slots <<= 1;
    uint32_t *t = calloc(slots, sizeof(*t));
    if (!t)
        return LR_ENOMEM;
    for (uint32_t i = 0; i < u->n; i++) {
        uint32_t j = id_hash(u->v[i].id) & (slots - 1);
        while (t[j])
            j = (j + 1) & (slots - 1);
        t[j] = i + 1;
    }
    free(u->byid);
    u->byid = t;
    u->byid_mask = slots - 1;
    return LR_OK;
}

/* The HMAC-MD5 key states of a user's main ID and alternates. */
static void user_keys(struct lr_user *e)
{
    lr_hmac_md5_key16(e->id, &e->hk[0]);
    for (uint32_t a = 0; a < e->alter_id; a++)
        lr_hmac_md5_key16(e->alt_ids + 16 * a, &e->hk[1 + a]);
}

LR_API int lr_users_add(struct lr_users *u, const uint8_t *id,
                        uint32_t alter_id)
{
    int rc;
    if (alter_id > 65535)
        return LR_EINVAL;
    if (by_id(u, id) >= 0)
        return LR_EINVAL;
    if ((u->n + 1) * 2 > (u->byid ? u->byid_mask + 1 : 0) &&
        byid_rebuild(u, u->n + 1) != LR_OK)
        return LR_ENOMEM;
    if (u->n == u->cap) {
        uint32_t ncap = u->cap ? u->cap * 2 : 8;
        struct lr_user *nv = realloc(u->v, sizeof(*nv) * ncap);
        if (!nv)
            return LR_ENOMEM;
        u->v = nv;
        u->cap = ncap;
    }
    struct lr_user *e = &u->v[u->n];
    memset(e, 0, sizeof(*e));
    memcpy(e->id, id, 16);
    lr_cmd_key(id, e->cmd_key);
    e->alter_id = alter_id;
    e->hk = malloc(sizeof(*e->hk) * (1 + (size_t)alter_id));
    if (!e->hk)
        return LR_ENOMEM;
    if (alter_id) {
        e->alt_ids = malloc((size_t)alter_id * 16);
        if (!e->alt_ids) {
            free(e->hk);
            return LR_ENOMEM;
        }
        lr_alter_ids(id, alter_id, e->alt_ids);
    }
    user_keys(e);
    rc = authid_schedule(e->cmd_key, &e->authid);
    if (rc != LR_OK) {
        free(e->alt_ids);
        free(e->hk);
        return rc;
    }
    uint32_t j = id_hash(id) & u->byid_mask;
    while (u->byid[j])
        j = (j + 1) & u->byid_mask;
    u->byid[j] = u->n + 1;
    /* the legacy table is sized by the ID count: rebuild on next refresh */
    legacy_drop(u);
    return (int)u->n++;
}

LR_API uint32_t lr_users_count(const struct lr_users *u)
{
    return u->n;
}

LR_API int lr_users_set_legacy(struct lr_users *u, int enabled)
{
    u->legacy = enabled ? 1 : 0;
    if (!u->legacy)
        legacy_drop(u);
    return LR_OK;
}

/* ------------------------------------------------------------ legacy table
 *
 * Entry e = slot * ids + k holds the first 8 bytes of the auth value of ID
 * slot k (owner[k] is its user; k - slab_off - 1 its alternate index, -1
 * the main ID) for the second t in [lo, hi] with t % LEGACY_RING == slot.
 * A lookup that matches those 8 bytes recomputes the whole value and
 * compares all 16, so the table keeps 8 bytes an entry and the rest of an
 * entry is where it sits. */

static inline uint32_t tag_hash(uint64_t tag)
{
    /* HMAC-MD5 output under secret IDs: already uniform to an attacker */
    return (uint32_t)(tag ^ (tag >> 32));
}

static inline uint64_t tag_of(const uint8_t *auth)
{
    uint64_t t;
    memcpy(&t, auth, 8);
    return t;
}

static void index_insert(struct lr_users *u, uint32_t e)
{
    uint32_t i = tag_hash(u->tags[e]) & u->index_mask;
    while (u->index[i])
        i = (i + 1) & u->index_mask;
    u->index[i] = e + 1;
}

static void index_remove(struct lr_users *u, uint32_t e)
{
    uint32_t m = u->index_mask;
    uint32_t i = tag_hash(u->tags[e]) & m;
    while (u->index[i] && u->index[i] != e + 1)
        i = (i + 1) & m;
    if (!u->index[i])
        return;
    /* backward-shift: pull later members of the probe run into the hole */
    for (uint32_t j = (i + 1) & m; u->index[j]; j = (j + 1) & m) {
        uint32_t home = tag_hash(u->tags[u->index[j] - 1]) & m;
        if (((j - home) & m) >= ((j - i) & m)) {
            u->index[i] = u->index[j];
            i = j;
        }
    }
    u->index[i] = 0;
}

static inline void set_taint(struct lr_users *u, uint32_t e, int on)
{
    if (on)
        u->tainted[e >> 3] |= (uint8_t)(1u << (e & 7));
    else
        u->tainted[e >> 3] &= (uint8_t)~(1u << (e & 7));
}

/* The auth value of ID slot k of user us for second ts, into the table. */
static void entry_put(struct lr_users *u, const struct lr_user *us, uint32_t k,
                      int64_t ts)
{
    uint8_t t[8], auth[16];
    uint32_t e = (uint32_t)(((uint64_t)ts) % LEGACY_RING) * u->ids + k;
    lr_put_be64(t, (uint64_t)ts);
    lr_hmac_md5_8(&us->hk[k - us->slab_off], t, auth);
    u->tags[e] = tag_of(auth);
    set_taint(u, e, 0);
    index_insert(u, e);
}

static void second_add(struct lr_users *u, int64_t ts)
{
    for (uint32_t i = 0; i < u->n; i++) {
        const struct lr_user *us = &u->v[i];
        if (us->legacy_stale)
            continue; /* lr_users_legacy_fill adds its whole window at once */
        for (uint32_t a = 0; a <= us->alter_id; a++)
            entry_put(u, us, us->slab_off + a, ts);
    }
}

static void second_remove(struct lr_users *u, int64_t ts)
{
    uint32_t base = (uint32_t)(((uint64_t)ts) % LEGACY_RING) * u->ids;
    for (uint32_t k = 0; k < u->ids; k++)
        index_remove(u, base + k);
}

static int legacy_alloc(struct lr_users *u)
{
    uint32_t ids = 0;
    for (uint32_t i = 0; i < u->n; i++) {
        u->v[i].slab_off = ids;
        ids += 1 + u->v[i].alter_id;
    }
    size_t entries = (size_t)ids * LEGACY_RING;
    /* at most 241 of the ring's 256 seconds are held: load <= 0.75 */
    size_t isize = 1;
    while (isize < entries + entries / 4)
        isize <<= 1;
    if (isize > UINT32_MAX || entries >= UINT32_MAX)
        return LR_ENOMEM;
    u->tags = malloc(entries * sizeof(*u->tags));
    u->tainted = calloc((entries + 7) / 8, 1);
    u->owner = malloc((size_t)(ids ? ids : 1) * sizeof(*u->owner));
    u->index = calloc(isize, sizeof(*u->index));
    if (!u->tags || !u->tainted || !u->owner || !u->index) {
        legacy_drop(u);
        return LR_ENOMEM;
    }
    for (uint32_t i = 0; i < u->n; i++)
        for (uint32_t a = 0; a <= u->v[i].alter_id; a++)
            u->owner[u->v[i].slab_off + a] = i;
    u->ids = ids;
    u->index_mask = (uint32_t)(isize - 1);
    u->lo = 1;
    u->hi = 0;
    return LR_OK;
}

LR_API int lr_users_refresh(struct lr_users *u, int64_t now)
{
    if (!u->legacy || u->n == 0)
        return LR_OK;
    int64_t want_lo = now - LR_TIME_WINDOW, want_hi = now + LR_TIME_WINDOW;
    if (now < 0)
        return LR_EINVAL;
    if (!u->tags && legacy_alloc(u) != LR_OK)
        return LR_ENOMEM;
    /* a clock that jumped back, or a gap larger than the window: start over */
    if (u->lo <= u->hi && (want_lo < u->lo || want_lo > u->hi)) {
        for (int64_t t = u->lo; t <= u->hi; t++)
            second_remove(u, t);
        u->lo = 1;
        u->hi = 0;
    }
    if (u->lo > u->hi) {
        for (uint32_t i = 0; i < u->n; i++)
            u->v[i].legacy_stale = 0; /* computed now with everyone */
        /* the seconds nearest to now first: a start-up that computes the
         * window a part at a time (lr_users_refresh_step) serves the
         * clients whose clocks agree with ours soonest */
        u->lo = now;
        u->hi = now - 1;
    }
    for (; u->lo < want_lo; u->lo++)
        second_remove(u, u->lo);
    while (u->hi < want_hi || u->lo > want_lo) {
        if (u->hi < want_hi)
            second_add(u, ++u->hi);
        if (u->lo > want_lo)
            second_add(u, --u->lo);
    }
    return LR_OK;
}

int lr_users_legacy_find(struct lr_users *u, const uint8_t *auth,
                         struct lr_legacy_entry *out)
{
    if (!u->index || u->lo > u->hi)
        return 0;
    uint32_t m = u->index_mask;
    uint64_t tag = tag_of(auth);
    for (uint32_t i = tag_hash(tag) & m; u->index[i]; i = (i + 1) & m) {
        uint32_t e = u->index[i] - 1;
        if (u->tags[e] != tag)
            continue;
        uint32_t slot = e / u->ids, k = e % u->ids;
        int64_t ts = u->lo + (int64_t)((slot + LEGACY_RING -
                                        (uint32_t)(((uint64_t)u->lo) % LEGACY_RING)) %
                                       LEGACY_RING);
        const struct lr_user *us = &u->v[u->owner[k]];
        uint8_t t[8], full[16];
        lr_put_be64(t, (uint64_t)ts);
        lr_hmac_md5_8(&us->hk[k - us->slab_off], t, full);
        int same = lr_memeq_ct(full, auth, 16) == 0;
        lr_wipe(full, sizeof(full));
        if (!same)
            continue;
        out->entry = e;
        out->ts = ts;
        out->user = (int32_t)u->owner[k];
        out->id_index = (int32_t)(k - us->slab_off) - 1;
        out->tainted = (u->tainted[e >> 3] >> (e & 7)) & 1;
        return 1;
    }
    return 0;
}

void lr_users_legacy_taint(struct lr_users *u, const struct lr_legacy_entry *e,
                           int on)
{
    if (u->tainted && e->entry < (uint32_t)LEGACY_RING * u->ids)
        set_taint(u, e->entry, on);
}

size_t lr_users_legacy_bytes(const struct lr_users *u)
{
    if (!u->tags)
        return 0;
    size_t entries = (size_t)LEGACY_RING * u->ids;
    return entries * sizeof(*u->tags) + (entries + 7) / 8 +
           (size_t)u->ids * sizeof(*u->owner) +
           ((size_t)u->index_mask + 1) * sizeof(*u->index);
}

/* The AuthID decryption schedule of a cmdKey. */
static int authid_schedule(const uint8_t *cmd_key, struct lr_aes_block *b)
{
    uint8_t akey[16];
    int rc = lr_kdf16_str(cmd_key, 16, "AES Auth ID Encryption", NULL, 0,
                          NULL, 0, akey);
    if (rc == LR_OK)
        rc = lr_aes_block_init(b, akey, 0);
    lr_wipe(akey, sizeof(akey));
    return rc;
}

/* User i's entries for every second the table holds. */
static void user_seconds(struct lr_users *u, uint32_t i, int add)
{
    struct lr_user *e = &u->v[i];
    if (!u->tags || u->lo > u->hi)
        return;
    for (int64_t t = u->lo; t <= u->hi; t++) {
        uint32_t base = (uint32_t)(((uint64_t)t) % LEGACY_RING) * u->ids;
        for (uint32_t a = 0; a <= e->alter_id; a++) {
            if (add)
                entry_put(u, e, e->slab_off + a, t);
            else
                index_remove(u, base + e->slab_off + a);
        }
    }
}

int lr_users_set_id(struct lr_users *u, uint32_t i, const uint8_t *id,
                    int defer_legacy)
{
    if (i >= u->n)
        return LR_EINVAL;
    struct lr_user *e = &u->v[i];
    struct lr_aes_block b = {0};
    int32_t other = by_id(u, id);
    if (other >= 0 && (uint32_t)other != i)
        return LR_EINVAL;
    /* the old ID's legacy values leave the index first (it is keyed by
     * them); a user already waiting has none in it */
    if (!e->legacy_stale)
        user_seconds(u, i, 0);
    memcpy(e->id, id, 16);
    lr_cmd_key(id, e->cmd_key);
    if (e->alter_id)
        lr_alter_ids(id, e->alter_id, e->alt_ids);
    user_keys(e);
    byid_rebuild(u, u->n); /* on ENOMEM the old index stays: only dup checks miss */
    if (defer_legacy && u->tags && u->lo <= u->hi) {
        e->legacy_stale = 1;
    } else {
        e->legacy_stale = 0;
        user_seconds(u, i, 1);
    }
    /* Out of memory for the new AuthID schedule: the old one stays, so an
     * AuthID of the old ID still matches, but its header cannot be opened
     * with the new cmdKey and is refused all the same. */
    int rc = authid_schedule(e->cmd_key, &b);
    if (rc != LR_OK)
        return rc;
    lr_aes_block_deinit(&e->authid);
    e->authid = b;
    return LR_OK;
}

int lr_users_legacy_fill(struct lr_users *u, uint32_t i)
{
    if (i >= u->n || !u->v[i].legacy_stale)
        return 0;
    u->v[i].legacy_stale = 0;
    user_seconds(u, i, 1);
    return 1;
}
