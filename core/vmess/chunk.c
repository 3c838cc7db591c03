/*
 * The body stream codec (vmess-wire.md 11-12), one direction per struct
 * lr_body.  Three independent choices, modelled separately:
 *   - length field: plain BE16, SHAKE128-masked BE16, or an 18-byte AEAD
 *     box (AuthenticatedLength);
 *   - payload seal: none, FNV-1a + AES-128-CFB stream, AES-128-GCM or
 *     ChaCha20-Poly1305 with the 16-bit chunk counter nonce;
 *   - padding: GlobalPadding draws 0..63 random bytes per chunk from the
 *     same SHAKE stream, before the length mask.
 * Which of them a (security, option, TCP/UDP) triple uses follows v2ray's
 * encoding/client.go and server.go exactly, including the odd corners:
 * none+TCP ignores padding, cfb/none without ChunkStream are raw streams,
 * GCM/ChaCha are chunked even without it (but then send no end chunk).
 *
 * The decoder is incremental: a chunk is only decoded once it is complete;
 * until then the SIZE field's state (SHAKE draws, CFB bytes, the length
 * box) is held in the struct so a retry never draws twice.  No allocation
 * after lr_body_init.
 */
#include <string.h>

#include "vmess/vmess.h"

enum len_mode { LEN_PLAIN = 0, LEN_MASK, LEN_AEAD };
enum seal_mode { SEAL_NONE = 0, SEAL_CFB, SEAL_AEAD };

struct lr_body {
    uint8_t security, option;
    uint32_t flags;
    uint8_t raw;          /* no framing: bytes as they are (cfb/none w/o S) */
    uint8_t len_mode;
    uint8_t seal;
    uint8_t padding;      /* GlobalPadding in effect */
    uint8_t end_chunk;    /* ChunkStream: write an end chunk */
    uint8_t finished;     /* decoder saw the end or failed */
    uint8_t overhead;     /* seal overhead: 0, 4 or 16 */
    uint8_t size_len;     /* 2 or 18 */
    uint8_t cfb_dir;      /* 0 unkeyed, 1 encrypt, 2 decrypt */
    uint8_t key[16], iv[16];
    uint16_t ctr;         /* chunk nonce counter (wraps, as peers do) */
    uint16_t len_ctr;     /* authenticated-length nonce counter */
    uint8_t len_iv[16];   /* request IV: the length box's nonce base */
    uint64_t chunks;
    struct lr_aead aead;
    struct lr_aead len_aead;
    struct lr_shake shake;
    struct lr_cfb cfb;
    /* decoder: SIZE already read for the pending chunk */
    uint8_t have_size;
    uint32_t pend_n;      /* the chunk's n (seal + padding) */
    uint32_t pend_p;      /* its padding */
};

LR_API struct lr_body *lr_body_new(void)
{
    return calloc(1, sizeof(struct lr_body));
}

static void body_clear(struct lr_body *b)
{
    if (b->aead.ctx)
        lr_aead_deinit(&b->aead);
    if (b->len_aead.ctx)
        lr_aead_deinit(&b->len_aead);
    lr_cfb_deinit(&b->cfb);
    lr_wipe(b, sizeof(*b));
}

LR_API void lr_body_free(struct lr_body *b)
{
    if (!b)
        return;
    body_clear(b);
    free(b);
}

static void chacha_key(const uint8_t *key16, uint8_t *k32)
{
    lr_md5(key16, 16, k32);
    lr_md5(k32, 16, k32 + 16);
}

LR_API int lr_body_init(struct lr_body *b, uint8_t security, uint8_t option,
                        const uint8_t *key, const uint8_t *iv,
                        const uint8_t *req_key, const uint8_t *req_iv,
                        uint32_t flags)
{
    int rc = LR_OK;
    int stream = option & LR_OPT_CHUNK_STREAM;
    int udp = flags & LR_BODY_UDP;
    body_clear(b);
    if (security == LR_SEC_UNKNOWN)
        security = LR_SEC_AES128_CFB;
    if ((option & LR_OPT_GLOBAL_PADDING) && !(option & LR_OPT_CHUNK_MASKING))
        return LR_EOPTION;
    b->security = security;
    b->option = option;
    b->flags = flags;
    memcpy(b->key, key, 16);
    memcpy(b->iv, iv, 16);
    b->len_mode = (option & LR_OPT_CHUNK_MASKING) ? LEN_MASK : LEN_PLAIN;
    b->padding = (option & LR_OPT_GLOBAL_PADDING) ? 1 : 0;
    b->end_chunk = stream ? 1 : 0;
    b->size_len = 2;
    if (b->len_mode == LEN_MASK)
        lr_shake_init(&b->shake, iv, 16);

    switch (security) {
    case LR_SEC_NONE:
        if (!stream)
            b->raw = 1;
        else if (!udp)
            b->padding = 0; /* ChunkStreamWriter: no padding for TCP */
        b->seal = SEAL_NONE;
        break;
    case LR_SEC_AES128_CFB:
        if (!stream)
            b->raw = 1;
        b->seal = SEAL_CFB;
        b->overhead = 4;
        break;
    case LR_SEC_AES128_GCM:
    case LR_SEC_CHACHA20_POLY1305: {
        uint8_t k32[32];
        int kind = security == LR_SEC_AES128_GCM ? LR_AEAD_GCM : LR_AEAD_CHACHA;
        b->seal = SEAL_AEAD;
        b->overhead = 16;
        if (kind == LR_AEAD_CHACHA) {
            chacha_key(key, k32);
            rc = lr_aead_init(&b->aead, kind, k32);
        } else {
            rc = lr_aead_init(&b->aead, kind, key);
        }
        if (rc == LR_OK && (option & LR_OPT_AUTHENTICATED_LENGTH)) {
            uint8_t lk[16];
            rc = lr_kdf16_str(req_key, 16, "auth_len", NULL, 0, NULL, 0, lk);
            if (rc == LR_OK && kind == LR_AEAD_CHACHA) {
                chacha_key(lk, k32);
                rc = lr_aead_init(&b->len_aead, kind, k32);
            } else if (rc == LR_OK) {
                rc = lr_aead_init(&b->len_aead, kind, lk);
            }
            lr_wipe(lk, sizeof(lk));
            memcpy(b->len_iv, req_iv, 16);
            b->len_mode = LEN_AEAD;
            b->size_len = 18;
        }
        lr_wipe(k32, sizeof(k32));
        break;
    }
    default:
        return LR_ESECURITY;
    }
    if (b->raw) {
        b->padding = 0;
        b->end_chunk = 0;
    }
    return rc;
}

struct lr_cfb *lr_body_cfb(struct lr_body *b, int encrypt)
{
    int dir = encrypt ? 1 : 2;
    if (b->cfb_dir != dir) {
        lr_cfb_deinit(&b->cfb);
        if (lr_cfb_init(&b->cfb, b->key, b->iv, encrypt) != LR_OK)
            return NULL;
        b->cfb_dir = (uint8_t)dir;
    }
    return &b->cfb;
}

LR_API size_t lr_body_max_payload(const struct lr_body *b)
{
    if (b->raw)
        return SIZE_MAX;
    return LR_CHUNK_MAX - b->overhead - (b->padding ? 63 : 0);
}

LR_API size_t lr_body_max_wire(const struct lr_body *b, size_t payload)
{
    if (b->raw)
        return payload;
    return b->size_len + b->overhead + payload + (b->padding ? 63 : 0);
}

LR_API uint64_t lr_body_chunks(const struct lr_body *b)
{
    return b->chunks;
}

static inline void chunk_nonce(const uint8_t *iv, uint16_t ctr, uint8_t *n)
{
    lr_put_be16(n, ctr);
    memcpy(n + 2, iv + 2, 10);
}

/* SIZE encoding: the padding draw comes first (vmess-wire.md 11.1). */
static int size_encode(struct lr_body *b, size_t seal_len, uint8_t *out,
                       uint32_t *pad)
{
    *pad = 0;
    if (b->padding)
        *pad = lr_shake_next16(&b->shake) % 64;
    uint32_t n = (uint32_t)seal_len + *pad;
    if (n > LR_CHUNK_MAX)
        return LR_ETOOBIG;
    if (b->len_mode == LEN_AEAD) {
        uint8_t nonce[12], v[2];
        lr_put_be16(v, (uint16_t)(n - 16));
        chunk_nonce(b->len_iv, b->len_ctr++, nonce);
        return lr_aead_seal(&b->len_aead, nonce, NULL, 0, v, 2, out);
    }
    uint16_t wire = (uint16_t)n;
    if (b->len_mode == LEN_MASK)
        wire ^= lr_shake_next16(&b->shake);
    lr_put_be16(out, wire);
    return LR_OK;
}

static int seal_chunk(struct lr_body *b, const uint8_t *in, size_t len,
                      uint8_t *out, size_t *outlen)
{
    uint32_t pad;
    size_t sl = b->size_len;
    int rc = size_encode(b, len + b->overhead, out, &pad);
    if (rc != LR_OK)
        return rc;
    uint8_t *p = out + sl;
    switch (b->seal) {
    case SEAL_NONE:
        if (len)
            memmove(p, in, len);
        break;
    case SEAL_CFB:
        if (len)
            memmove(p + 4, in, len);
        lr_put_be32(p, lr_fnv1a32(p + 4, len));
        break;
    case SEAL_AEAD: {
        uint8_t nonce[12];
        chunk_nonce(b->iv, b->ctr++, nonce);
        if ((rc = lr_aead_seal(&b->aead, nonce, NULL, 0, in, len, p)))
            return rc;
        break;
    }
    }
    p += len + b->overhead;
    if (pad) {
        if (b->flags & LR_BODY_ZERO_PADDING)
            memset(p, 0, pad);
        else
            lr_random_nonsecret(p, pad); /* padding hides lengths, no secret */
    }
    size_t total = sl + len + b->overhead + pad;
    if (b->seal == SEAL_CFB) {
        struct lr_cfb *c = lr_body_cfb(b, 1);
        if (!c || (rc = lr_cfb_update(c, out, total, out)))
            return c ? rc : LR_ECRYPTO;
    }
    b->chunks++;
    *outlen = total;
    return LR_OK;
}

LR_API int lr_body_seal(struct lr_body *b, const uint8_t *in, size_t len,
                        uint8_t *out, size_t cap, size_t *outlen)
{
    *outlen = 0;
    if (b->raw) {
        if (cap < len)
            return LR_ETOOBIG;
        if (b->seal == SEAL_CFB) {
            struct lr_cfb *c = lr_body_cfb(b, 1);
            if (!c)
                return LR_ECRYPTO;
            int rc = lr_cfb_update(c, in, len, out);
            if (rc)
                return rc;
        } else {
            memmove(out, in, len);
        }
        *outlen = len;
        return LR_OK;
    }
    /* an empty chunk would read as the end of the stream */
    if (len == 0)
        return LR_EINVAL;
    if (len > lr_body_max_payload(b) || cap < lr_body_max_wire(b, len))
        return LR_ETOOBIG;
    return seal_chunk(b, in, len, out, outlen);
}

LR_API int lr_body_seal_end(struct lr_body *b, uint8_t *out, size_t cap,
                            size_t *outlen)
{
    *outlen = 0;
    if (b->raw || !b->end_chunk)
        return LR_OK;
    if (cap < lr_body_max_wire(b, 0))
        return LR_ETOOBIG;
    return seal_chunk(b, NULL, 0, out, outlen);
}

/* Reads the SIZE field of the next chunk once enough bytes are there. */
static int size_decode(struct lr_body *b, const uint8_t *in, size_t len)
{
    uint8_t sb[18];
    if (len < b->size_len)
        return LR_AGAIN;
    memcpy(sb, in, b->size_len);
    if (b->seal == SEAL_CFB) {
        struct lr_cfb *c = lr_body_cfb(b, 0);
        if (!c)
            return LR_ECRYPTO;
        int rc = lr_cfb_update(c, sb, b->size_len, sb);
        if (rc)
            return rc;
    }
    uint32_t pad = b->padding ? lr_shake_next16(&b->shake) % 64 : 0;
    uint32_t n;
    if (b->len_mode == LEN_AEAD) {
        uint8_t nonce[12], v[2];
        chunk_nonce(b->len_iv, b->len_ctr++, nonce);
        if (lr_aead_open(&b->len_aead, nonce, NULL, 0, sb, 18, v) != LR_OK)
            return LR_EAUTH;
        n = (uint32_t)lr_get_be16(v) + 16;
        /* a peer's length beyond any chunk is a bad stream (LR_ETOOBIG
         * means only "the caller's buffer is too small") */
        if (n > LR_CHUNK_MAX)
            return LR_EINVAL;
    } else {
        n = lr_get_be16(sb);
        if (b->len_mode == LEN_MASK)
            n ^= lr_shake_next16(&b->shake);
    }
    if (n < b->overhead + pad)
        return LR_EINVAL;
    b->have_size = 1;
    b->pend_n = n;
    b->pend_p = pad;
    return LR_OK;
}

static int open_chunk(struct lr_body *b, const uint8_t *in, uint8_t *out,
                      size_t cap, size_t *outlen)
{
    size_t n = b->pend_n, pad = b->pend_p;
    size_t plen = n - b->overhead - pad;
    int rc = LR_OK;
    if (plen > cap)
        return LR_ETOOBIG;
    switch (b->seal) {
    case SEAL_NONE:
        memcpy(out, in, plen);
        break;
    case SEAL_CFB: {
        uint8_t fnv[4], scratch[64];
        struct lr_cfb *c = lr_body_cfb(b, 0);
        if (!c)
            return LR_ECRYPTO;
        if ((rc = lr_cfb_update(c, in, 4, fnv)) ||
            (rc = lr_cfb_update(c, in + 4, plen, out)) ||
            (rc = lr_cfb_update(c, in + 4 + plen, pad, scratch)))
            return rc;
        if (lr_fnv1a32(out, plen) != lr_get_be32(fnv))
            return LR_EAUTH;
        break;
    }
    case SEAL_AEAD: {
        uint8_t nonce[12];
        chunk_nonce(b->iv, b->ctr++, nonce);
        if ((rc = lr_aead_open(&b->aead, nonce, NULL, 0, in, plen + 16, out)))
            return rc;
        break;
    }
    }
    *outlen = plen;
    return LR_OK;
}

/* The next chunk's SIZE (decoded once, kept across LR_AGAIN): LR_OK when
 * the whole chunk is in the `len` bytes at `in`. */
static int chunk_ready(struct lr_body *b, const uint8_t *in, size_t len)
{
    if (!b->have_size) {
        int rc = size_decode(b, in, len);
        if (rc == LR_AGAIN)
            return rc;
        if (rc != LR_OK) {
            b->finished = 1;
            return rc;
        }
    }
    return len < b->size_len + b->pend_n ? LR_AGAIN : LR_OK;
}

/* Bookkeeping after a chunk was opened with status rc. */
static int chunk_done(struct lr_body *b, int rc, size_t *consumed)
{
    int end = b->pend_n == b->overhead + b->pend_p;
    b->have_size = 0;
    if (rc != LR_OK) {
        b->finished = 1;
        return rc;
    }
    b->chunks++;
    *consumed = b->size_len + b->pend_n;
    if (end) {
        b->finished = 1;
        return LR_DONE;
    }
    return LR_OK;
}

/* In-place variant of open_chunk: `p` points at the chunk's seal. */
static int open_chunk_inplace(struct lr_body *b, uint8_t *p, size_t *off)
{
    size_t n = b->pend_n, pad = b->pend_p;
    size_t plen = n - b->overhead - pad;
    int rc = LR_OK;
    *off = 0;
    switch (b->seal) {
    case SEAL_NONE:
        break;
    case SEAL_CFB: {
        uint8_t scratch[64];
        struct lr_cfb *c = lr_body_cfb(b, 0);
        if (!c)
            return LR_ECRYPTO;
        if ((rc = lr_cfb_update(c, p, 4, p)) ||
            (rc = lr_cfb_update(c, p + 4, plen, p + 4)) ||
            (rc = lr_cfb_update(c, p + 4 + plen, pad, scratch)))
            return rc;
        if (lr_fnv1a32(p + 4, plen) != lr_get_be32(p))
            return LR_EAUTH;
        *off = 4;
        break;
    }
    case SEAL_AEAD: {
        uint8_t nonce[12];
        chunk_nonce(b->iv, b->ctr++, nonce);
        if ((rc = lr_aead_open(&b->aead, nonce, NULL, 0, p, plen + 16, p)))
            return rc;
        break;
    }
    }
    return LR_OK;
}

LR_API int lr_body_open_inplace(struct lr_body *b, uint8_t *buf, size_t len,
                                size_t *consumed, size_t *plain_off,
                                size_t *plain_len)
{
    int rc;
    *consumed = 0;
    *plain_off = 0;
    *plain_len = 0;
    if (b->finished)
        return LR_EINVAL;
    if (b->raw) {
        if (len == 0)
            return LR_AGAIN;
        if (b->seal == SEAL_CFB) {
            struct lr_cfb *c = lr_body_cfb(b, 0);
            if (!c)
                return LR_ECRYPTO;
            if ((rc = lr_cfb_update(c, buf, len, buf)))
                return rc;
        }
        *consumed = *plain_len = len;
        return LR_OK;
    }
    if ((rc = chunk_ready(b, buf, len)) != LR_OK)
        return rc;
    size_t off;
    rc = open_chunk_inplace(b, buf + b->size_len, &off);
    *plain_off = b->size_len + off;
    *plain_len = b->pend_n - b->overhead - b->pend_p;
    rc = chunk_done(b, rc, consumed);
    if (rc < 0)
        *plain_len = 0;
    return rc;
}

LR_API int lr_body_open(struct lr_body *b, const uint8_t *in, size_t len,
                        size_t *consumed, uint8_t *out, size_t cap,
                        size_t *outlen)
{
    int rc;
    *consumed = 0;
    *outlen = 0;
    if (b->finished)
        return LR_EINVAL;
    if (b->raw) {
        size_t n = len < cap ? len : cap;
        if (b->seal == SEAL_CFB) {
            struct lr_cfb *c = lr_body_cfb(b, 0);
            if (!c)
                return LR_ECRYPTO;
            if ((rc = lr_cfb_update(c, in, n, out)))
                return rc;
        } else {
            memcpy(out, in, n);
        }
        *consumed = *outlen = n;
        return n ? LR_OK : LR_AGAIN;
    }
    if ((rc = chunk_ready(b, in, len)) != LR_OK)
        return rc;
    rc = open_chunk(b, in + b->size_len, out, cap, outlen);
    if (rc == LR_ETOOBIG)
        return rc; /* caller's buffer: retry possible, nothing consumed */
    rc = chunk_done(b, rc, consumed);
    if (rc < 0)
        *outlen = 0;
    return rc;
}
