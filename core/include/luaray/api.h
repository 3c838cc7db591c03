/*
 * luaray public C API: the one surface that the LuaJIT FFI, the specs, the
 * daemon's Lua and the examples use.
 *
 * This header is written in the subset that LuaJIT's C parser reads: no
 * macros inside declarations (LR_API is stripped by scripts/gen-cdef), no
 * bitfields, no varargs, fixed-width integers, constants as enum values,
 * opaque handles as incomplete structs.  scripts/gen-cdef turns it into
 * build/lua/luaray/cdef.lua; nobody edits cdefs by hand.
 *
 * Conventions (style.md section 7):
 *  - functions return int: LR_OK (0) on success, LR_AGAIN (1) when an
 *    incremental decoder needs more bytes (nothing was consumed), LR_DONE (2)
 *    when a body decoder met the end-of-stream chunk, and a negative value
 *    on failure (-errno or one of the LR_E* codes below -1000);
 *  - pointer + length in, caller-owned buffers out, sizes via size_t *;
 *  - nothing here takes a lua_State, and nothing here calls Lua.
 * Functions marked "hot path" are called per chunk and neither allocate
 * nor log.
 */
#ifndef LURAY_API_H
#define LURAY_API_H

#include <stddef.h>
#include <stdint.h>

#ifndef LR_API
#define LR_API __attribute__((visibility("default")))
#endif

/* ------------------------------------------------------------------ */
/* Status codes and limits                                             */
/* ------------------------------------------------------------------ */

enum lr_status {
    LR_OK = 0,
    LR_AGAIN = 1,          /* need more input; nothing consumed */
    LR_DONE = 2,           /* end-of-stream chunk decoded */
    LR_EINVAL = -1001,     /* bad argument or malformed field */
    LR_EAUTH = -1002,      /* authentication failed (AEAD tag, FNV) */
    LR_ECHECKSUM = -1003,  /* request header FNV-1a checksum mismatch */
    LR_EREPLAY = -1004,    /* AuthID or session seen before */
    LR_ETIME = -1005,      /* timestamp outside the accepted window */
    LR_ENOUSER = -1006,    /* no user matches the auth value / AuthID */
    LR_ESECURITY = -1007,  /* unknown or forbidden security type */
    LR_EOPTION = -1008,    /* forbidden option combination (0x08 w/o 0x04) */
    LR_EADDR = -1009,      /* unknown address type or invalid domain */
    LR_ETOOBIG = -1010,    /* length beyond protocol or buffer limits */
    LR_ENOMEM = -1011,     /* allocation failed */
    LR_EFULL = -1012,      /* replay filter at its cap: fails closed */
    LR_ETAINTED = -1013,   /* legacy auth value burned by an earlier error */
    LR_ECOMMAND = -1014,   /* unknown request command */
    LR_ECRYPTO = -1015,    /* the crypto library failed (never input-driven) */
    LR_ELEGACY = -1016     /* legacy header while legacy is disabled */
};

enum lr_limits {
    LR_UUID_LEN = 16,
    LR_KEY_LEN = 16,
    LR_AUTHID_LEN = 16,
    LR_MAX_DOMAIN = 255,
    /* largest request header plaintext: 41 fixed + 1 + 255 + 15 + 4 */
    LR_REQ_PLAIN_MAX = 316,
    /* largest request header on the wire (AEAD: 16 + 18 + 8 + 316 + 16) */
    LR_REQ_WIRE_MAX = 374,
    /* largest response header on the wire (AEAD, 255-byte command) */
    LR_RESP_WIRE_MAX = 18 + 4 + 255 + 16,
    /* largest SIZE field value and so the largest chunk body */
    LR_CHUNK_MAX = 65535,
    /* our writers' default payload per chunk (readers accept up to 65535) */
    LR_CHUNK_PAYLOAD_DEFAULT = 16384,
    /* most bytes a chunk adds around its payload: 18 (sealed SIZE) + 16 + 63 */
    LR_CHUNK_OVERHEAD_MAX = 97
};

/* Security byte values as they are on the wire (vmess-wire.md section 6). */
enum lr_security {
    LR_SEC_UNKNOWN = 0,      /* 4.34 servers treat it as aes-128-cfb */
    LR_SEC_AES128_CFB = 1,   /* "legacy" */
    LR_SEC_AUTO = 2,         /* config only, never valid on the wire */
    LR_SEC_AES128_GCM = 3,
    LR_SEC_CHACHA20_POLY1305 = 4,
    LR_SEC_NONE = 5,
    LR_SEC_ZERO = 6          /* config only: sent as NONE with options 0 */
};

/* Request option bits. */
enum lr_option {
    LR_OPT_CHUNK_STREAM = 0x01,
    LR_OPT_CONNECTION_REUSE = 0x02,
    LR_OPT_CHUNK_MASKING = 0x04,
    LR_OPT_GLOBAL_PADDING = 0x08,
    LR_OPT_AUTHENTICATED_LENGTH = 0x10
};

enum lr_command {
    LR_CMD_TCP = 1,
    LR_CMD_UDP = 2,
    LR_CMD_MUX = 3
};

enum lr_addr_type {
    LR_ATYP_NONE = 0,        /* command 3 (mux): no address on the wire */
    LR_ATYP_IPV4 = 1,
    LR_ATYP_DOMAIN = 2,
    LR_ATYP_IPV6 = 3
};

enum lr_header_mode {
    LR_MODE_LEGACY = 1,      /* HMAC-MD5 auth + AES-128-CFB command section */
    LR_MODE_AEAD = 2         /* VMessAEAD: AuthID + sealed length + header */
};

/* lr_body_init flags */
enum lr_body_flags {
    LR_BODY_UDP = 0x01,          /* packet transfer: one datagram per chunk */
    LR_BODY_LEGACY_RESP = 0x02,  /* response direction under a legacy header:
                                    the CFB stream starts before the response
                                    header and a cfb body continues it */
    LR_BODY_ZERO_PADDING = 0x04  /* fill GlobalPadding with zeros, not random
                                    bytes (reproducible output for specs) */
};

/* ------------------------------------------------------------------ */
/* Library                                                             */
/* ------------------------------------------------------------------ */

/* Initialises libsodium and checks that OpenSSL has every algorithm we use.
 * Idempotent; every other function may assume it ran.  Returns LR_OK or
 * LR_ECRYPTO. */
LR_API int lr_init(void);

/* A static string naming the status code `err` (never NULL). */
LR_API const char *lr_strerror(int err);

/* The library version string, e.g. "0.1.0". */
LR_API const char *lr_version(void);

/* ------------------------------------------------------------------ */
/* Crypto primitives (thin wrappers; exposed for specs and tools)      */
/* ------------------------------------------------------------------ */

/* Digests write 16 (MD5) or 32 (SHA-256) bytes into `out`.  Return LR_OK. */
LR_API int lr_md5(const uint8_t *in, size_t len, uint8_t *out);
LR_API int lr_sha256(const uint8_t *in, size_t len, uint8_t *out);
LR_API int lr_hmac_md5(const uint8_t *key, size_t klen, const uint8_t *in,
                       size_t len, uint8_t *out);
LR_API int lr_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *in,
                          size_t len, uint8_t *out);
LR_API uint32_t lr_fnv1a32(const uint8_t *in, size_t len);
LR_API uint32_t lr_crc32(const uint8_t *in, size_t len);

/* SHAKE128(in) squeezed for `outlen` bytes in one go (OpenSSL's one-shot
 * XOF; specs use it to check our incremental sponge, see lr_shake_*). */
LR_API int lr_shake128(const uint8_t *in, size_t len, uint8_t *out,
                       size_t outlen);

/* The VMessAEAD KDF (vmess-wire.md 7.1): `out` (32 bytes) =
 * KDF(key, path[0..npath-1]); path element i is path[i] of plen[i] bytes.
 * npath <= 8. */
LR_API int lr_kdf(const uint8_t *key, size_t klen, const uint8_t *const *path,
                  const size_t *plen, size_t npath, uint8_t *out);

/* Fills `out` with `len` bytes from libsodium's CSPRNG. */
LR_API void lr_random(uint8_t *out, size_t len);

/* Fills `out` with `len` bytes that need to be unpredictable to an
 * observer but protect no secret (VMess GlobalPadding content): a
 * per-thread ChaCha20 keystream, keyed from lr_random on first use, every
 * 64 MiB and in a forked child, so no system call per
 * call.  Never for keys, IVs, nonces or auth IDs: those take lr_random. */
LR_API void lr_random_nonsecret(uint8_t *out, size_t len);

/* Constant-time comparison (libsodium): 0 when equal, -1 otherwise. */
LR_API int lr_memeq_ct(const uint8_t *a, const uint8_t *b, size_t len);

/* ------------------------------------------------------------------ */
/* Identity (vmess-wire.md section 2)                                  */
/* ------------------------------------------------------------------ */

/* Parses a textual UUID (36 chars with dashes, or 32 hex digits) into 16
 * bytes.  LR_EINVAL on anything else. */
LR_API int lr_uuid_parse(const char *s, size_t len, uint8_t *out);

/* Formats 16 bytes as a 36-char lower-case UUID plus NUL into `out` (37). */
LR_API int lr_uuid_format(const uint8_t *id, char *out);

/* A fresh random version-4 UUID (16 bytes). */
LR_API void lr_uuid_random(uint8_t *out);

/* cmdKey = MD5(id || "c48619fe-8f02-49e0-b9e9-edf763e17e21"). */
LR_API int lr_cmd_key(const uint8_t *id, uint8_t *out);

/* The first `n` alternate IDs of `id` (the alterId chain), 16 bytes each,
 * into `out` (n * 16 bytes). */
LR_API int lr_alter_ids(const uint8_t *id, uint32_t n, uint8_t *out);

/* Legacy auth value HMAC-MD5(id16, BE64(ts)) into `out` (16). */
LR_API int lr_legacy_auth(const uint8_t *id16, int64_t ts, uint8_t *out);

/* AuthID (vmess-wire.md 7.2) for `ts` and the 4 random bytes `rand4`. */
LR_API int lr_authid_make(const uint8_t *cmd_key, int64_t ts,
                          const uint8_t *rand4, uint8_t *out);

/* ------------------------------------------------------------------ */
/* Users: the server-side table of accounts                            */
/* ------------------------------------------------------------------ */

/* One generation's user table.  It owns per-user precomputed state: the
 * cmdKey, the AES key schedule of the AuthID key, the alternate IDs and,
 * when legacy is enabled, the hash table of legacy auth values for every
 * ID and every second of the window. */
struct lr_users;

/* Allocates an empty table; NULL on ENOMEM.  Free with lr_users_free (a
 * table shared by several holders is freed with the last). */
LR_API struct lr_users *lr_users_new(void);
LR_API void lr_users_free(struct lr_users *u);

/* Adds a user (copies `id`).  Returns the user's index (>= 0) or a negative
 * error (LR_EINVAL for a duplicate id or alter_id > 65535).  Not hot path. */
LR_API int lr_users_add(struct lr_users *u, const uint8_t *id,
                        uint32_t alter_id);

/* Number of users. */
LR_API uint32_t lr_users_count(const struct lr_users *u);

/* Enables (1) or disables (0) legacy header acceptance.  Enabling builds
 * the auth table at the next lr_users_refresh.  Returns LR_OK. */
LR_API int lr_users_set_legacy(struct lr_users *u, int enabled);

/* Brings the legacy auth table to `now`: adds the seconds up to now+120 and
 * drops the seconds before now-120.  Incremental: only new seconds cost
 * HMACs (two MD5 compressions per ID and second).  The daemon calls it
 * every second, so each call adds one second of every ID; a table
 * refreshed at T accepts [T-120, T+120].  Returns LR_OK or LR_ENOMEM. */
LR_API int lr_users_refresh(struct lr_users *u, int64_t now);

/* ------------------------------------------------------------------ */
/* Replay state (vmess-wire.md section 14)                             */
/* ------------------------------------------------------------------ */

/* Exact sets of AuthIDs and of (user, reqKey, reqIV) sessions, bucketed by
 * expiry so each entry lives exactly as long as it can be replayed, with a
 * hard cap that fails closed (LR_EFULL, counted).  Kept across reloads. */
struct lr_replay;

/* `cap` = most entries of each kind held at once (0: 1,048,576).  NULL on
 * ENOMEM.  One owner (user) may hold at most cap / 4 of each kind. */
LR_API struct lr_replay *lr_replay_new(uint32_t cap);
/* Sets the most entries of each kind one owner may hold (0: cap / 4). */
LR_API void lr_replay_set_owner_cap(struct lr_replay *r, uint32_t cap);
LR_API void lr_replay_free(struct lr_replay *r);

/* Drops expired entries.  Cheap; call at least every few seconds. */
LR_API void lr_replay_expire(struct lr_replay *r, int64_t now);

/* Statistics: entries now held, how many inserts were refused at the cap
 * (since creation), for AuthIDs and sessions, and the bytes their tables
 * hold (what RSS owes to the replay state; it plateaus after 361 s). */
struct lr_replay_stats {
    uint64_t authids;
    uint64_t sessions;
    uint64_t full_refusals;     /* at the cap of all entries */
    uint64_t owner_refusals;    /* at one owner's share */
    uint64_t owners;            /* users ever charged with an entry */
    uint64_t bytes;
};
LR_API void lr_replay_stats(struct lr_replay *r, struct lr_replay_stats *out);

/* Checks and records an AuthID seen at `now`.  LR_OK if new (now recorded
 * until now+240), LR_EREPLAY if held, LR_EFULL at the cap. */
LR_API int lr_replay_check_authid(struct lr_replay *r, const uint8_t *authid,
                                  int64_t now);
/* The same, charging the entry to `owner` (the 16-byte main ID of the user
 * whose key opened it; NULL: nobody): LR_EFULL also when that owner holds
 * its share already. */
LR_API int lr_replay_check_authid_for(struct lr_replay *r, const uint8_t *authid,
                                      const uint8_t *owner, int64_t now);

/* ------------------------------------------------------------------ */
/* Request header                                                      */
/* ------------------------------------------------------------------ */

/* The decoded (or to-be-encoded) request header fields. */
struct lr_req {
    uint8_t mode;            /* LR_MODE_* */
    uint8_t version;         /* 1 when encoding; not checked when decoding */
    uint8_t v;               /* response authenticator, echoed by the server */
    uint8_t option;          /* LR_OPT_* bits */
    uint8_t security;        /* LR_SEC_* as on the wire (0 decodes as 1) */
    uint8_t padding_len;     /* header padding P, 0..15 */
    uint8_t command;         /* LR_CMD_* */
    uint8_t atyp;            /* LR_ATYP_* */
    uint16_t port;           /* host order */
    uint16_t addr_len;       /* bytes in addr: 4, 16 or the domain length */
    uint8_t addr[256];       /* IPv4/IPv6 bytes or the domain (NUL-ended) */
    uint8_t body_key[16];
    uint8_t body_iv[16];
    uint8_t padding[15];     /* header padding bytes (encode: caller's) */
    /* identity */
    int32_t user;            /* decode: index in lr_users */
    int32_t id_index;        /* legacy: -1 main ID, k = alternate k */
    int64_t ts;              /* the timestamp the header carries */
    /* AEAD randomness (encode: caller's; decode: what came in) */
    uint8_t auth_rand[4];
    uint8_t conn_nonce[8];
    uint8_t auth[16];        /* AuthID or legacy auth value */
};

/* Fills every random field of `req` (v, body key/IV, padding length and
 * bytes, conn_nonce) from the CSPRNG, and auth_rand from a per-process
 * counter with a random start (unique AuthIDs, see hdr_req.c). */
LR_API void lr_req_randomize(struct lr_req *req);

/* Encodes a request header as a client.  `id` is the main ID (16), and for
 * the legacy mode `req->id_index` picks the ID that signs the auth value
 * (-1 main, k < alter_count an alternate).  `req->ts` is the timestamp to
 * send.  Writes at most LR_REQ_WIRE_MAX bytes; *outlen gets the size.
 * Returns LR_OK or LR_EINVAL / LR_ETOOBIG for bad fields. */
LR_API int lr_req_encode(const struct lr_req *req, const uint8_t *id,
                         uint8_t *out, size_t cap, size_t *outlen);

/* Incremental server-side decoder state.  Caller-owned storage: it holds
 * no pointers to free, so it may live inside a connection. */
struct lr_req_dec {
    uint8_t stage;
    uint8_t mode;
    uint8_t pad_[2];
    int32_t user;
    int32_t id_index;
    uint32_t need;
    int64_t ts;
    uint32_t plain_len;      /* legacy: bytes decrypted so far */
    uint32_t aead_len;       /* AEAD: L from the sealed length */
    uint8_t plain[LR_REQ_PLAIN_MAX];
};

/* Resets `dec` for a new connection. */
LR_API void lr_req_dec_init(struct lr_req_dec *dec);

/* Decodes a request header from the first `len` bytes a client sent
 * (`buf` holds everything received so far on the connection; call again
 * with more bytes after LR_AGAIN).  On LR_OK `req` is filled and
 * *consumed is the header size: the body starts there.  On LR_AGAIN
 * nothing is decided yet.  Errors: LR_ENOUSER, LR_ETIME, LR_EREPLAY,
 * LR_EFULL, LR_ETAINTED, LR_EAUTH, LR_ECHECKSUM, LR_ESECURITY, LR_EOPTION,
 * LR_ECOMMAND, LR_EADDR, LR_ETOOBIG, LR_ELEGACY.  Every failure after a
 * legacy auth match taints that auth value.  `replay` may be NULL (no
 * replay checks; specs only).  Work is bounded: never more than
 * LR_REQ_WIRE_MAX bytes are examined. */
LR_API int lr_req_decode(struct lr_req_dec *dec, struct lr_users *users,
                         struct lr_replay *replay, const uint8_t *buf,
                         size_t len, int64_t now, struct lr_req *req,
                         size_t *consumed);

/* ------------------------------------------------------------------ */
/* Body stream codec (vmess-wire.md section 11)                        */
/* ------------------------------------------------------------------ */

/* One direction of a body: length encoding (plain, SHAKE-masked or
 * AEAD-sealed), payload cipher (none, CFB, GCM, ChaCha20-Poly1305) and
 * padding, chosen independently.  Allocated once per stream; no allocation
 * afterwards. */
struct lr_body;

LR_API struct lr_body *lr_body_new(void);
LR_API void lr_body_free(struct lr_body *b);

/* Sets up a direction.  `key`/`iv` are this direction's body key and IV
 * (reqKey/reqIV for the request, respKey/respIV for the response);
 * `req_key`/`req_iv` are the request's (the authenticated-length box uses
 * them in both directions); they may equal key/iv.  `security` 0 is read as
 * aes-128-cfb.  Returns LR_OK, LR_ESECURITY, LR_EOPTION. */
LR_API int lr_body_init(struct lr_body *b, uint8_t security, uint8_t option,
                        const uint8_t *key, const uint8_t *iv,
                        const uint8_t *req_key, const uint8_t *req_iv,
                        uint32_t flags);

/* Bytes a chunk of `payload` bytes may need at most on the wire. */
LR_API size_t lr_body_max_wire(const struct lr_body *b, size_t payload);

/* Largest payload one chunk can carry (raw streams: SIZE_MAX). */
LR_API size_t lr_body_max_payload(const struct lr_body *b);

/* Encodes `len` payload bytes as ONE chunk (or raw bytes) into `out`.
 * len <= lr_body_max_payload(); cap >= lr_body_max_wire(len).  Hot path.
 * Returns LR_OK, LR_ETOOBIG, LR_EINVAL. */
LR_API int lr_body_seal(struct lr_body *b, const uint8_t *in, size_t len,
                        uint8_t *out, size_t cap, size_t *outlen);

/* Encodes the end-of-stream chunk (nothing for raw streams and for AEAD
 * bodies without ChunkStream).  Returns LR_OK. */
LR_API int lr_body_seal_end(struct lr_body *b, uint8_t *out, size_t cap,
                            size_t *outlen);

/* Decodes at most one chunk from `in`.  LR_OK: *consumed bytes used and
 * *outlen payload bytes written to `out` (cap >= 65535 always suffices,
 * and raw streams write min(len, cap)).  LR_AGAIN: incomplete chunk,
 * nothing consumed.  LR_DONE: the end-of-stream chunk was consumed.
 * Errors: LR_EAUTH (tag or FNV), LR_EINVAL (SIZE smaller than the
 * overhead), LR_ETOOBIG (cap too small).  After an error or LR_DONE the
 * direction is finished.  Hot path. */
LR_API int lr_body_open(struct lr_body *b, const uint8_t *in, size_t len,
                        size_t *consumed, uint8_t *out, size_t cap,
                        size_t *outlen);

/* Like lr_body_open, but decrypts in place: the payload is left inside
 * `buf` at buf + *plain_off (*plain_len bytes) and nothing is copied.  The
 * chunk's bytes are overwritten; bytes after it are untouched.  Same
 * return values (LR_ETOOBIG cannot happen).  Hot path: the relay uses it. */
LR_API int lr_body_open_inplace(struct lr_body *b, uint8_t *buf, size_t len,
                                size_t *consumed, size_t *plain_off,
                                size_t *plain_len);

/* The chunk count so far (the AEAD nonce counter before wrapping). */
LR_API uint64_t lr_body_chunks(const struct lr_body *b);

/* ------------------------------------------------------------------ */
/* Response header (vmess-wire.md sections 8-10)                       */
/* ------------------------------------------------------------------ */

/* Response body key/IV from the request's: MD5 (legacy) or SHA-256[0:16]
 * (AEAD). */
LR_API int lr_resp_keys(uint8_t mode, const uint8_t *req_key,
                        const uint8_t *req_iv, uint8_t *resp_key,
                        uint8_t *resp_iv);

/* A dynamic-port ("SwitchAccount", cmd 0x01) command. */
struct lr_cmd_switch {
    uint8_t host_len;
    uint8_t host[255];
    uint16_t port;
    uint8_t id[16];
    uint16_t alter_ids;
    uint8_t level;
    uint8_t valid_min;
};

/* The decoded response header. */
struct lr_resp {
    uint8_t v;
    uint8_t option;
    uint8_t command;         /* 0 none, 1 switch account (parsed below) */
    uint8_t command_len;
    uint8_t has_switch;      /* 1 when `sw` holds a valid command 0x01 */
    struct lr_cmd_switch sw;
};

/* Encodes a response header (server).  `down` is the response-direction
 * body, already initialised; in the legacy mode the header runs through
 * its CFB stream.  `cmd` may be NULL (no command).  Returns LR_OK. */
LR_API int lr_resp_encode(uint8_t mode, const uint8_t *resp_key,
                          const uint8_t *resp_iv, struct lr_body *down,
                          uint8_t v, const struct lr_cmd_switch *cmd,
                          uint8_t *out, size_t cap, size_t *outlen);

/* Incremental decoder state for the client side (caller-owned). */
struct lr_resp_dec {
    uint32_t have;           /* legacy: bytes decrypted so far */
    uint32_t len;            /* AEAD: plaintext length */
    uint8_t plain[4 + 255];
};

LR_API void lr_resp_dec_init(struct lr_resp_dec *dec);

/* Decodes the response header from `in` (everything received so far).
 * LR_OK: `out` filled, *consumed = header size; LR_AGAIN: need more.
 * Errors: LR_EAUTH (AEAD tag, or V differs from `expect_v`).  An
 * unparsable command is ignored (has_switch = 0) as v2ray does. */
LR_API int lr_resp_decode(struct lr_resp_dec *dec, uint8_t mode,
                          const uint8_t *resp_key, const uint8_t *resp_iv,
                          struct lr_body *down, uint8_t expect_v,
                          const uint8_t *in, size_t len, size_t *consumed,
                          struct lr_resp *out);

/* Command 0x01 bytes (cmd, len, FNV, payload) to and from a buffer. */
LR_API int lr_cmd_switch_encode(const struct lr_cmd_switch *c, uint8_t *out,
                                size_t cap, size_t *outlen);
LR_API int lr_cmd_switch_decode(const uint8_t *in, size_t len,
                                struct lr_cmd_switch *out);

/* ------------------------------------------------------------------ */
/* Daemon configuration (fed by lua/luaray/daemon.lua from the config   */
/* script's normalized table; validated and committed by the daemon)   */
/* ------------------------------------------------------------------ */

/* A staging configuration.  Every lr_conf_* call copies its strings.
 * Calls return LR_OK or LR_EINVAL with a message in lr_conf_error(). */
struct lr_conf;

LR_API struct lr_conf *lr_conf_new(void);
LR_API void lr_conf_free(struct lr_conf *c);
/* The last error message (empty string when none). */
LR_API const char *lr_conf_error(const struct lr_conf *c);

/* Log levels (lr_conf_log, and the C logger's threshold). */
enum lr_log_level {
    LR_LOG_DEBUG = 0,
    LR_LOG_INFO = 1,
    LR_LOG_WARN = 2,
    LR_LOG_ERROR = 3
};

/* level: LR_LOG_*; access: NULL off, "" stderr, else a file path (opened
 * when the config is committed; an error names `where`, "file:line" of
 * luaray.log, or NULL). */
LR_API int lr_conf_log(struct lr_conf *c, int level, const char *access,
                       const char *where);

/* Worker threads, each with its own loop and SO_REUSEPORT listeners:
 * 1..64, or 0 for one per online CPU. */
LR_API int lr_conf_workers(struct lr_conf *c, int n);

/* luaray.metrics: GET /metrics on host:port (Prometheus text format);
 * token NULL or a bearer token the requests must carry; where: its
 * "file:line" for errors. */
LR_API int lr_conf_metrics(struct lr_conf *c, const char *host, uint16_t port,
                           const char *token, const char *where);

/* luaray.api: v2ray 4.34's gRPC API (StatsService, HandlerService) on
 * host:port; where: its "file:line" for errors. */
LR_API int lr_conf_api(struct lr_conf *c, const char *host, uint16_t port,
                       const char *where);

/* luaray.cluster (design.md 8): the Redis at host (an IP literal):port
 * the nodes of a fleet share; password NULL for none; keys start with
 * prefix; node names this node; timeout_ms bounds every wait for Redis;
 * where: its "file:line" for errors. */
LR_API int lr_conf_cluster(struct lr_conf *c, const char *host, uint16_t port,
                           const char *password, int db, const char *prefix,
                           const char *node, int timeout_ms, const char *where);

LR_API int lr_conf_user(struct lr_conf *c, const char *uuid,
                        const char *email, uint32_t alter_id, uint32_t level);

struct lr_conf_inbound {
    const char *tag;
    const char *type;             /* "vmess" | "socks" | "http" | "tunnel" | "tproxy" | "redirect" */
    const char *host;
    uint16_t port;
    int32_t allow_legacy;
    int32_t allow_private;
    int32_t udp;
    double handshake_timeout;
    double idle_timeout;
    uint32_t max_connections;
    uint32_t max_sessions;        /* per client connection; 0: 256 */
    int32_t proxy_protocol;       /* a PROXY protocol v1/v2 header first */
    const char *where;            /* "file:line" for later errors */
};

/* Adds an inbound; the two calls after it apply to the last one added. */
LR_API int lr_conf_inbound(struct lr_conf *c, const struct lr_conf_inbound *ib);
LR_API int lr_conf_inbound_account(struct lr_conf *c, const char *user,
                                   const char *pass);
/* Gives the last (VMess) inbound a dynamic port: a second listener on a
 * port drawn from [lo, hi], announced in every response (command 0x01)
 * with the user's own detour ID for the current `minutes`-long epoch
 * (daemon.c, "dynamic port"). */
LR_API int lr_conf_inbound_dynamic(struct lr_conf *c, uint16_t lo, uint16_t hi,
                                   uint32_t alter_id, uint32_t minutes);
/* Restricts a VMess inbound to the named users (default: all users). */
LR_API int lr_conf_inbound_user(struct lr_conf *c, const char *email);
/* The last inbound, of type "tunnel", "tproxy" or "redirect": a tunnel's
 * fixed destination (to_host, numeric or a name, and to_port; NULL for the
 * others), whether it takes TCP and UDP (redirect: TCP only), and how long
 * a UDP session may idle (seconds; 0: 60).  Copies what it keeps; LR_OK, or
 * an error naming the inbound. */
LR_API int lr_conf_inbound_tunnel(struct lr_conf *c, const char *to_host, uint16_t to_port,
                                  int32_t tcp, int32_t udp, double udp_timeout);

struct lr_conf_outbound {
    const char *tag;
    const char *type;             /* "direct" | "blackhole" | "vmess" */
    const char *server_host;
    uint16_t server_port;
    const char *id;
    uint32_t alter_id;
    const char *security;         /* aes-128-gcm|chacha20-poly1305|none|zero|aes-128-cfb|auto */
    int32_t masking;
    int32_t padding;
    int32_t authenticated_length;
    int32_t udp;
    double connect_timeout;
    const char *domain_strategy;  /* "as_is" | "ipv4" | "ipv6" */
    const char *where;
};

LR_API int lr_conf_outbound(struct lr_conf *c, const struct lr_conf_outbound *ob);

/* Transports (design.md 6).  Each applies to the last inbound / outbound
 * declared. */
enum lr_transport_type {
    LR_TP_TCP = 0,               /* bare TCP (with or without TLS) */
    LR_TP_WS = 1,                /* WebSocket (RFC 6455), binary frames */
    LR_TP_HTTPUPGRADE = 2,       /* HTTP/1.1 Upgrade, then raw bytes */
    LR_TP_GRPC = 3               /* gRPC "gun" over HTTP/2 */
};

struct lr_conf_transport {
    uint32_t type;               /* LR_TP_* */
    const char *path;            /* ws, httpupgrade: "/ray" (an outbound's may carry ?ed=N) */
    const char *host;            /* ws, httpupgrade: Host to require / send; NULL: any / the server's */
    uint32_t max_early_data;     /* ws inbound: early data accepted (bytes) */
    uint32_t early_data;         /* ws outbound: early data sent with the upgrade (?ed=N) */
    const char *service_name;    /* grpc */
    int32_t multi;               /* grpc: TunMulti */
};

/* An inbound's TLS certificate (cert chain and key files, PEM); the first
 * one turns TLS on; several are chosen by SNI. */
LR_API int lr_conf_inbound_tls_cert(struct lr_conf *c, const char *cert, const char *key);
/* One ALPN protocol the last TLS inbound offers, in preference order. */
LR_API int lr_conf_inbound_alpn(struct lr_conf *c, const char *proto);
LR_API int lr_conf_inbound_transport(struct lr_conf *c, const struct lr_conf_transport *t);
/* Where what is not VMess on this inbound goes (a real web server). */
LR_API int lr_conf_inbound_fallback(struct lr_conf *c, const char *host, uint16_t port);
/* A peer whose PROXY header / X-Forwarded-For / X-Real-IP is believed. */
LR_API int lr_conf_inbound_trusted(struct lr_conf *c, const uint8_t *ip, uint32_t len,
                                   uint32_t bits);

struct lr_conf_tls {
    const char *server_name;     /* SNI and the name verified; NULL: none (an IP server) */
    const char *ca;              /* extra CA file (PEM); the system store is always used */
    const uint8_t *pinned_sha256; /* NULL, or 32 bytes: the server leaf certificate's SHA-256 */
};

/* TLS on the last (VMess) outbound; it always verifies the server. */
LR_API int lr_conf_outbound_tls(struct lr_conf *c, const struct lr_conf_tls *t);
LR_API int lr_conf_outbound_alpn(struct lr_conf *c, const char *proto);
LR_API int lr_conf_outbound_transport(struct lr_conf *c, const struct lr_conf_transport *t);
/* Mux.Cool on the last (VMess) outbound: up to `concurrency` (1..1024)
 * streams per connection at once (design.md 9). */
LR_API int lr_conf_outbound_mux(struct lr_conf *c, uint32_t concurrency);
/* XUDP as a client on the last (VMess) outbound: a SOCKS5 UDP association
 * routed to it goes as one Mux.Cool/XUDP stream (ports 53/443 apart). */
LR_API int lr_conf_outbound_xudp(struct lr_conf *c, int32_t on);

/* Bit masks of the route filters on a connection's network and on the
 * protocol sniffed from its first client bytes (also the values the
 * daemon stores per connection). */
enum lr_net {
    LR_NET_TCP = 1,
    LR_NET_UDP = 2
};
enum lr_proto {
    LR_PROTO_TLS = 1,
    LR_PROTO_HTTP = 2
};

/* The route filters that take a string (lr_conf_route_string). */
enum lr_route_kind {
    LR_ROUTE_DOMAIN = 1,         /* exact name, lower case */
    LR_ROUTE_DOMAIN_SUFFIX = 2,  /* the name or any name below it */
    LR_ROUTE_DOMAIN_KEYWORD = 3, /* a substring of the name */
    LR_ROUTE_USER = 4,           /* a user's email */
    LR_ROUTE_INBOUND = 5,        /* an inbound's tag */
    LR_ROUTE_DOMAIN_REGEX = 6    /* a PCRE2 regexp over the lower-case name */
};

/* Starts a routing rule to outbound `to`; the lr_conf_route_* calls after
 * it add filters to the last rule started.  Every call adds to what the
 * rule has (a list grows, a mask gains bits). */
LR_API int lr_conf_route(struct lr_conf *c, const char *to, const char *where);
/* A string filter of `kind` (enum lr_route_kind). */
LR_API int lr_conf_route_string(struct lr_conf *c, uint32_t kind,
                                const char *value);
/* An address block: `len` 4 (IPv4) or 16 (IPv6) bytes at `ip`, network
 * order, and a prefix of `bits` (<= len * 8); bits past the prefix are
 * ignored when matching. */
LR_API int lr_conf_route_cidr(struct lr_conf *c, const uint8_t *ip,
                              uint32_t len, uint32_t bits);
/* Routing data (core/route/geodata.c): the list `list` ("cn", "cn@ads")
 * of the geosite.dat at `path`; the country `code` of the geoip.dat or
 * .mmdb at `path`, `reverse` 1 for every address outside it.  The file is
 * read here: a missing file, list or code is an error. */
LR_API int lr_conf_route_geosite(struct lr_conf *c, const char *path, const char *list);
LR_API int lr_conf_route_geoip(struct lr_conf *c, const char *path, const char *code,
                               uint32_t reverse);
/* A block of client (source) addresses, as lr_conf_route_cidr. */
LR_API int lr_conf_route_source(struct lr_conf *c, const uint8_t *ip,
                                uint32_t len, uint32_t bits);
/* A destination port range [lo, hi], lo <= hi <= 65535. */
LR_API int lr_conf_route_ports(struct lr_conf *c, uint32_t lo, uint32_t hi);
/* Networks: a non-zero mask of LR_NET_* bits. */
LR_API int lr_conf_route_network(struct lr_conf *c, uint32_t mask);
/* Sniffed protocols: a non-zero mask of LR_PROTO_* bits. */
LR_API int lr_conf_route_protocol(struct lr_conf *c, uint32_t mask);
LR_API int lr_conf_default(struct lr_conf *c, const char *tag);

/* What a routing rule looks at: the destination as the client asked for
 * it, who asked (user email or NULL, inbound tag), and what sniffing saw. */
struct lr_route_query {
    uint8_t network;             /* LR_NET_* */
    uint8_t atyp;                /* LR_ATYP_* of host / ip */
    uint16_t port;
    const uint8_t *ip;           /* 4 or 16 bytes for an IP destination */
    const char *host;            /* the name, for LR_ATYP_DOMAIN */
    const char *user;            /* NULL: no user */
    const char *inbound;
    uint8_t sniff_proto;         /* LR_PROTO_*, 0: none */
    const char *sniff_host;      /* NULL or "": none */
    const uint8_t *src_ip;       /* the client's address (4 or 16 bytes), NULL: unknown */
    uint8_t src_len;             /* 4 or 16 */
    /* the addresses `host` resolved to (domain_strategy other than as_is):
     * nresolved of 16 bytes each, IPv4 as ::ffff:a.b.c.d; resolve_done 1
     * once resolution was tried (nresolved may then be 0) */
    const uint8_t *resolved;
    uint8_t nresolved;
    uint8_t resolve_done;
};

/* The routing domain_strategy (v2ray's domainStrategy): whether and when
 * address rules see a domain destination's resolved addresses. */
enum lr_route_strategy {
    LR_ROUTE_AS_IS = 0,          /* never: address rules match addresses only */
    LR_ROUTE_IP_IF_NON_MATCH = 1, /* when no rule matched the name: again with its addresses */
    LR_ROUTE_IP_ON_DEMAND = 2    /* as soon as an address rule is reached */
};
/* lr_conf_route_pick's answer when it needs the name's addresses. */
enum lr_route_answer { LR_ROUTE_NEED_IPS = -2 };
LR_API int lr_conf_route_strategy(struct lr_conf *c, uint32_t strategy);

/* Routes `q` through the rules declared so far (the daemon's matcher):
 * the index of the outbound (in declaration order), or -1 with
 * lr_conf_error set (a rule or the default names no outbound), or
 * LR_ROUTE_NEED_IPS (domain_strategy: fill q->resolved, ask again).  *to_sniffed
 * is 1 when the rule matched only through the sniffed name (the connection
 * is then dialled to that name).  For specs and tools. */
LR_API int32_t lr_conf_route_pick(struct lr_conf *c, const struct lr_route_query *q,
                                  int32_t *to_sniffed);

/* ------------------------------------------------------------------ */
/* Sniffing (pure parsers over the first client bytes)                 */
/* ------------------------------------------------------------------ */

/* The SNI of a TLS ClientHello at p: 1 and the lower-case name in `out`,
 * 0 when more bytes are needed, -1 when it is not TLS or has no SNI. */
LR_API int lr_sniff_tls_sni(const uint8_t *p, size_t n, char *out, size_t cap);
/* The Host header of an HTTP/1 request at p (port stripped): same
 * returns. */
LR_API int lr_sniff_http_host(const uint8_t *p, size_t n, char *out,
                              size_t cap);

/* ------------------------------------------------------------------ */
/* The PROXY protocol (HAProxy's proxy-protocol.txt, v1 and v2): a pure */
/* parser over the first bytes a proxy sends (core/stream/proxyproto.c) */
/* ------------------------------------------------------------------ */

enum lr_pp_status {
    LR_PP_BAD = -1,              /* cannot be a PROXY header */
    LR_PP_AGAIN = 0,             /* a prefix of one: more bytes needed */
    LR_PP_OK = 1                 /* a header (struct lr_pp_hdr) */
};

enum lr_pp_limits {
    LR_PP_V1_MAX = 107,          /* a version 1 line, CRLF included */
    LR_PP_V2_FIXED = 16,         /* signature, version/command, family, length */
    LR_PP_PEEK = 108             /* bytes that always decide: a v1 line, or v2's
                                    fixed part and its IPv6 addresses */
};

struct lr_pp_hdr {
    uint8_t version;             /* 1 or 2 */
    uint8_t local;               /* 1: use the connection's own addresses (v2
                                    LOCAL, v1 UNKNOWN, or a family/transport
                                    other than TCP over IPv4/IPv6) */
    uint8_t ip_len;              /* 4 or 16; 0 when local */
    uint8_t src_ip[16], dst_ip[16];
    uint16_t src_port, dst_port;
    uint32_t len;                /* the header's bytes on the wire (v2: 16 + its
                                    length field, TLVs included: may be more
                                    than were given) */
};

/* Reads a PROXY header at p[0..n): LR_PP_OK with *h set once the addresses
 * are there (the v1 line up to its CRLF; v2's fixed part and address
 * block: its TLVs may follow, h->len counts them), LR_PP_AGAIN while p is a
 * prefix of a header, LR_PP_BAD when it cannot be one.  The answer for a
 * prefix is AGAIN or the answer for the whole.  *why (optional) says what
 * was wrong. */
LR_API int lr_pp_parse(const uint8_t *p, size_t n, struct lr_pp_hdr *h,
                       const char **why);

/* ------------------------------------------------------------------ */
/* Hooks: the context C fills before a hook runs (read by               */
/* lua/luaray/daemon.lua through the FFI; borrowed for the call only)   */
/* ------------------------------------------------------------------ */

enum lr_hook_kind {
    LR_HOOK_ACCEPT = 0,
    LR_HOOK_AUTH = 1,
    LR_HOOK_ROUTE = 2,
    LR_HOOK_CONNECT = 3,
    LR_HOOK_CLOSE = 4,
    LR_HOOK_RELOAD = 5,
    LR_HOOK_COUNT = 6
};

/* The hook mask a loaded config reports (lua/luaray/daemon.lua's load):
 * bit (1 << LR_HOOK_*) per hook defined, plus this bit when config code
 * mentions ctx.sniffed (only then does a route hook make connections wait
 * for their first bytes to sniff). */
enum lr_hook_mask {
    LR_HOOKS_SNIFFED = 1 << 6
};

/* What a hook answered (lr_hook_ctx.verdict). */
enum lr_hook_verdict {
    LR_VERDICT_CONTINUE = 0,   /* allow / use the rules */
    LR_VERDICT_REFUSE = 1,     /* accept/auth returned false */
    LR_VERDICT_ROUTE = 2,      /* route returned a tag (in out_tag) */
    LR_VERDICT_ERROR = 3       /* the hook failed: see out_reason */
};

struct lr_hook_ctx {
    int32_t kind;              /* enum lr_hook_kind */
    uint64_t id;               /* connection number */
    uint64_t generation;
    const char *src_ip;
    uint16_t src_port;
    const char *inbound;
    const char *user_email;    /* NULL when no user is known */
    int32_t user_level;
    const char *dst_host;      /* NULL before the destination is known */
    uint16_t dst_port;
    const char *network;       /* "tcp" | "udp" */
    const char *outbound;      /* connect/close: the outbound tag */
    const char *sniffed_host;  /* TLS SNI / HTTP Host, NULL if none */
    const char *protocol;      /* "tls" | "http" | NULL (sniffed) */
    const char *peer_ip;       /* the TCP peer: a proxy when src came from a PROXY
                                  header or X-Forwarded-For; else src's address
                                  (the same pointer as src_ip) */
    uint16_t peer_port;
    const char *transport;     /* the inbound's: "tcp" | "ws" | "httpupgrade" | "grpc" */
    uint8_t tls;               /* 1: the client came over TLS (ctx.tls) */
    const char *tls_sni;       /* the server name it asked for, NULL if none */
    uint64_t up, down;         /* close: payload bytes */
    double duration_ms;        /* close */
    const char *reason;        /* close: why it closed */
    int32_t verdict;           /* set by the hook wrapper */
    char out_tag[128];
    char out_reason[256];
};

/* ------------------------------------------------------------------ */
/* luaray.shared: a key/value and counter store in C memory that        */
/* survives reloads.  Keys and values are copied.                       */
/* ------------------------------------------------------------------ */

/* Sets key to a string value.  LR_OK, LR_ETOOBIG (key > 256, value >
 * 64 KiB, or the store over its 64 MiB cap), LR_ENOMEM. */
LR_API int lr_shared_set(const char *key, size_t klen, const char *val,
                         size_t vlen);
/* Copies the value into out (cap bytes); *vlen gets its size (even when
 * cap is too small: then LR_ETOOBIG).  LR_EINVAL when absent; a counter
 * reads as its decimal text.  *is_num = 1 for a counter. */
LR_API int lr_shared_get(const char *key, size_t klen, char *out, size_t cap,
                         size_t *vlen, int32_t *is_num);
/* Adds delta to a counter (created at 0) and returns the new value in
 * *result.  LR_EINVAL if the key holds a string. */
LR_API int lr_shared_incr(const char *key, size_t klen, double delta,
                          double *result);
/* Removes a key; LR_OK even when absent. */
LR_API int lr_shared_delete(const char *key, size_t klen);
/* Number of keys. */
LR_API uint32_t lr_shared_count(void);

/* ------------------------------------------------------------------ */
/* Live users (design.md 7; luaray.users): added or removed at run time,*/
/* on every worker, kept across reloads until removed.  0, or -1 with   */
/* err set.  inbound NULL: every VMess inbound.                         */
/* ------------------------------------------------------------------ */
LR_API int lr_live_user_add(const char *inbound, const char *uuid, const char *email,
                            uint32_t level, uint32_t alter_id, char *err, size_t errlen);
LR_API int lr_live_user_remove(const char *inbound, const char *email, char *err,
                               size_t errlen);
/* "added|removed\temail\tinbound|*\tlevel\talter_id\tuuid|-\n" per change
 * (written while they fit); returns the bytes they take. */
LR_API size_t lr_live_user_list(char *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Traffic counters (design.md 7): payload bytes, named as v2ray names  */
/* them ("user>>>EMAIL>>>traffic>>>uplink", "inbound>>>TAG>>>...",      */
/* "outbound>>>TAG>>>..."), for the whole process, kept across reloads. */
/* ------------------------------------------------------------------ */

/* The counter's value (0, *found = 0 when there is none); with reset it
 * starts again from 0. */
LR_API uint64_t lr_stats_get(const char *name, int32_t reset, int32_t *found);
/* Writes "name\tvalue\n" for every traffic counter whose name contains
 * `pattern` ("" all) into out and returns the bytes written; when the
 * room it may take (20 digits a value) is more than cap, nothing is
 * written or reset and that room is returned (> cap: call again). */
LR_API size_t lr_stats_query(const char *pattern, int32_t reset, char *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Per-user policy, set from Lua, enforced in C (kept across reloads)   */
/* ------------------------------------------------------------------ */

struct lr_policy {
    double rate;               /* bytes/s, both directions together; 0 = none */
    double burst;              /* token bucket depth in bytes (0: rate) */
    double quota;              /* total bytes allowed; 0 = none */
    uint32_t max_conns;        /* concurrent connections; 0 = none */
    uint32_t max_ips;          /* distinct source IPs at once; 0 = none */
};

/* Sets (or with all zero, clears) the policy of the user with this email. */
LR_API int lr_policy_set(const char *email, const struct lr_policy *p);
/* A policy declared while a config loads: applied only if that config is
 * committed (a failed reload changes no policy). */
LR_API int lr_conf_policy(struct lr_conf *c, const char *email,
                          const struct lr_policy *p);
/* Usage so far: bytes, live connections, distinct IPs. */
struct lr_policy_usage {
    double bytes;
    uint32_t conns;
    uint32_t ips;
};
LR_API int lr_policy_usage(const char *email, struct lr_policy_usage *out);
/* Resets the byte count of a user (a new quota period). */
LR_API int lr_policy_reset(const char *email);


/* Who is online: "email\tip\n" for every source address with an open
 * connection of a user (every user when email is NULL), written while the
 * lines fit; returns the bytes they take (> cap: call again with more). */
LR_API size_t lr_policy_online(const char *email, char *out, size_t cap);

/* ------------------------------------------------------------------ */
/* The control plane (design.md 7; daemon/control.c): luaray.every,     */
/* luaray.spawn, luaray.sleep and luaray.http.request, run as coroutines*/
/* on the main thread.  A Lua state there is a "host" (a number C gives */
/* it); timers and requests belong to a host, carry the number Lua gave */
/* them, and end in an event C hands to that state (lr_ctl_event, read */
/* by lua/luaray/control.lua through the FFI, borrowed for the call).   */
/* Each call returns 0, or -1 with err set (not the main thread, no such*/
/* host, too many requests, a bad URL...).                              */
/* ------------------------------------------------------------------ */

enum lr_ctl_kind {
    LR_CTL_ATTACH = 1,         /* the state became a host (control: its timers start) */
    LR_CTL_STOP = 2,           /* the host is stopped: everything of it was cancelled */
    LR_CTL_TIMER = 3,          /* timer `id` fired (a repeating one stays) */
    LR_CTL_HTTP = 4,           /* request `id` is done */
    LR_CTL_ABORT = 5,          /* the last event's run failed in C (err: why) */
    LR_CTL_REDIS = 6           /* luaray.cluster.call `id` is done: err, or the reply
                                  encoded in body (lr_ctl_redis_start) */
};

struct lr_ctl_event {
    int32_t kind;              /* enum lr_ctl_kind */
    uint32_t host;
    uint32_t id;
    int32_t control;           /* ATTACH: 1 for the control state (it runs luaray.every) */
    uint64_t generation;       /* ATTACH: the generation of this state */
    const char *err;           /* HTTP: NULL or what failed; ABORT: the error */
    int32_t status;            /* HTTP */
    const char *fields;        /* HTTP: "name: value\n" lines, names lower case */
    size_t fields_len;
    const char *body;          /* HTTP */
    size_t body_len;
};

struct lr_ctl_http {
    const char *method;
    const char *url;
    const char *headers;       /* "Name: value\r\n" lines, or NULL */
    size_t headers_len;
    const char *body;          /* NULL: none */
    size_t body_len;
    double timeout;            /* seconds for the whole request */
    double max_body;           /* bytes */
    int32_t insecure;
    const char *ca;            /* NULL or a PEM file */
};

/* A timer of `host`: first after `after` s, then every `every` s (0:
 * once).  An id in use is replaced. */
LR_API int lr_ctl_timer(uint32_t host, uint32_t id, double after, double every,
                        char *err, size_t errlen);
/* Stops timer or request `id` of `host` (no event follows); 0 even when
 * there is none. */
LR_API int lr_ctl_cancel(uint32_t host, uint32_t id);
/* Starts an HTTP request of `host`; its LR_CTL_HTTP event comes from the
 * loop, never from inside this call. */
LR_API int lr_ctl_http_start(uint32_t host, uint32_t id, const struct lr_ctl_http *r,
                             char *err, size_t errlen);
/* luaray.cluster.call: sends a command of argc (1..1024) binary-safe
 * arguments to the fleet's Redis (luaray.cluster) for `host`; its
 * LR_CTL_REDIS event comes from the loop.  err (of the event) for an
 * error reply, no answer in time (timeout_ms, at least 2 s) or Redis
 * unreachable; else body holds the reply: "n" nil, "i<n>;" integer,
 * "s<len>:<bytes>" string, "o<len>:<bytes>" status, "e<len>:<bytes>"
 * error (inside an array), "a<count>;" then the elements. */
LR_API int lr_ctl_redis_start(uint32_t host, uint32_t id, int32_t argc, const char **argv,
                              const size_t *argvlen, char *err, size_t errlen);

/* Requests in flight now, and the most there may be. */
LR_API uint32_t lr_ctl_http_count(void);
LR_API uint32_t lr_ctl_http_max(void);
/* A line in the daemon's log at `level` (LR_LOG_*). */
LR_API void lr_ctl_log(int32_t level, const char *msg);
/* Monotonic seconds (the main loop's clock: ev_now). */
LR_API double lr_ctl_now(void);

#endif
