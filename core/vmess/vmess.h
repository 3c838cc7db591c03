/*
 * vmess: the pure codec.  Bytes in, fields or bytes out; no I/O, no libev,
 * no Lua.  The public entry points are declared in luaray/api.h; this
 * header holds what the codec's files share among themselves.
 */
#ifndef LR_VMESS_H
#define LR_VMESS_H

#include "base/base.h"
#include "crypto/crypto.h"

/* vmess-wire.md 4 and 7.2: both header modes accept +-120 s. */
#define LR_TIME_WINDOW 120
/* session history lifetime (vmess-wire.md 14) */
#define LR_SESSION_TTL 180

struct lr_user {
    uint8_t id[16];
    uint8_t cmd_key[16];
    uint32_t alter_id;
    uint8_t *alt_ids;             /* alter_id * 16 bytes */
    struct lr_aes_block authid;   /* AES-128 decrypt schedule of the AuthID key */
    struct lr_hmac_md5_key *hk;   /* 1 + alter_id: legacy auth keys, main ID first */
    uint32_t slab_off;            /* its first ID slot in the legacy table */
    uint8_t legacy_stale;         /* its legacy auth values wait (set_id) */
};

/* A legacy auth value found in the table: which user and ID signed which
 * second, and whether a failed header burnt it. */
struct lr_legacy_entry {
    uint32_t entry;
    int64_t ts;
    int32_t user;
    int32_t id_index;             /* -1: the main ID */
    uint8_t tainted;
};

struct lr_users {
    _Atomic uint32_t refs;        /* generations sharing it (lr_users_ref) */
    struct lr_user *v;
    uint32_t n, cap;
    int legacy;
    uint32_t *byid;               /* ID -> user + 1, open addressing */
    uint32_t byid_mask;
    /* legacy auth table (user.c): per second of the ring, one 8-byte tag per
     * ID slot, indexed by an open-addressing hash of the tag */
    uint64_t *tags;               /* LEGACY_RING * ids */
    uint8_t *tainted;             /* one bit per entry */
    uint32_t *owner;              /* ids: the user of each ID slot */
    uint32_t ids;                 /* sum over users of 1 + alter_id */
    uint32_t *index;              /* entry number + 1, 0 = empty */
    uint32_t index_mask;
    int64_t lo, hi;               /* seconds present: [lo, hi]; lo > hi: none */
};

/* One more holder of u (a generation sharing its predecessor's table);
 * lr_users_free drops one and frees with the last. */
void lr_users_ref(struct lr_users *u);

/* 1 and *out filled if `auth` is a legacy auth value the table holds. */
int lr_users_legacy_find(struct lr_users *u, const uint8_t *auth,
                         struct lr_legacy_entry *out);
/* Marks (on) or clears a found value's taint. */
void lr_users_legacy_taint(struct lr_users *u, const struct lr_legacy_entry *e,
                           int on);
/* Bytes the legacy table holds. */
size_t lr_users_legacy_bytes(const struct lr_users *u);

/* Replaces the ID of user `i` in place (its alter_id count stays): cmdKey,
 * alternates, AuthID key and, when the legacy table is built, that user's
 * auth values for every second it holds.  A decoder that had matched the
 * old ID fails on its next call (the new key does not fit).  The dynamic
 * port rotates its per-user IDs with this.  With `defer_legacy` the old
 * ID's legacy values leave the table at once but the new ID's are only
 * computed by lr_users_legacy_fill (or a rebuild of the table); until then
 * a legacy header under the new ID is not recognised.  LR_OK, LR_EINVAL,
 * or an error of the KDF/cipher: then only the AuthID key is left as it
 * was, so an AEAD header under either ID fails (its AuthID matches the old
 * key, its header opens only under the new cmdKey) until a call succeeds. */
int lr_users_set_id(struct lr_users *u, uint32_t i, const uint8_t *id,
                    int defer_legacy);
/* Computes the legacy auth values user `i` waits for, if any: 1 when it
 * did (about 240 * (1 + alter_id) HMAC-MD5s), 0 when there was nothing to
 * do. */
int lr_users_legacy_fill(struct lr_users *u, uint32_t i);

/* Drops this thread's cached AuthID key schedule (a worker ending). */
void lr_hdr_thread_end(void);
/* Session history check for a decoded header (user, key, iv): LR_OK and
 * recorded, LR_EREPLAY or LR_EFULL. */
int lr_replay_check_session(struct lr_replay *r, const uint8_t *user_id,
                            const uint8_t *key, const uint8_t *iv,
                            int64_t now);

/* The CFB stream of a body, keyed for `encrypt` on first use (the legacy
 * response header runs through it before the body). */
struct lr_cfb *lr_body_cfb(struct lr_body *b, int encrypt);

#endif
