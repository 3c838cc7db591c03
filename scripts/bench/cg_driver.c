/*
 * A fixed, deterministic workload for scripts/bench/callgrind.sh, linked
 * against build/libluaray.so. Everything the workload does between setup
 * and check happens inside cg_work(), which the script names in
 * --toggle-collect, so only that is counted.
 *
 *   cg_driver relay SECURITY MIB
 *       seals MIB MiB as 16 KiB chunks (ChunkStream + masking + global
 *       padding, as v2ray and luaray send them) and opens them in place, as
 *       one relayed hop does (the client seals, the server opens).
 *   cg_driver server USERS K
 *       the server side of K AEAD handshakes against USERS users, the
 *       client signing as the LAST one: request header decode (AuthID
 *       search, replay checks, header open), response keys, both bodies
 *       set up, response header encoded.
 *   cg_driver client K
 *       the client side of K handshakes: request header encode, both
 *       bodies set up, response header decode.
 *
 * Keys, IVs, timestamps and padding are fixed (LR_BODY_ZERO_PADDING), so
 * the instruction count is the same run after run on one machine. Prints
 * one line: "<what> <units>" (bytes relayed or handshakes done).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaray/api.h"

#define PIECE 16384
#define OPTS (LR_OPT_CHUNK_STREAM | LR_OPT_CHUNK_MASKING | LR_OPT_GLOBAL_PADDING)
#define NOW 1700000000

static int sec_of(const char *s)
{
    if (!strcmp(s, "aes-128-gcm")) return LR_SEC_AES128_GCM;
    if (!strcmp(s, "chacha20-poly1305")) return LR_SEC_CHACHA20_POLY1305;
    if (!strcmp(s, "none")) return LR_SEC_NONE;
    if (!strcmp(s, "aes-128-cfb")) return LR_SEC_AES128_CFB;
    return -1;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "cg_driver: %s: %s\n", what, lr_strerror(rc));
    exit(1);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* ------------------------------------------------------------------ */

struct relay {
    struct lr_body *enc, *dec;
    const uint8_t *in;
    uint8_t *wire;
    size_t cap, chunks;
    uint64_t check;
};

__attribute__((noinline)) void cg_work_relay(struct relay *r);
__attribute__((noinline)) void cg_work_relay(struct relay *r)
{
    for (size_t i = 0; i < r->chunks; i++) {
        size_t wl, consumed, off, plen;
        int rc = lr_body_seal(r->enc, r->in + (i % 8) * PIECE, PIECE, r->wire, r->cap, &wl);
        if (rc != LR_OK)
            die("seal", rc);
        rc = lr_body_open_inplace(r->dec, r->wire, wl, &consumed, &off, &plen);
        if (rc != LR_OK || consumed != wl || plen != PIECE)
            die("open", rc == LR_OK ? LR_EINVAL : rc);
        r->check += r->wire[off] + r->wire[off + plen - 1];
    }
}

static int run_relay(const char *secname, size_t mib)
{
    int sec = sec_of(secname);
    if (sec < 0) {
        fprintf(stderr, "cg_driver: unknown security %s\n", secname);
        return 2;
    }
    uint8_t key[16], iv[16];
    fill(key, 16, 1);
    fill(iv, 16, 2);
    struct relay r = { .enc = lr_body_new(), .dec = lr_body_new() };
    if (!r.enc || !r.dec)
        die("lr_body_new", LR_ENOMEM);
    /* cfb bodies carry no masking or padding (options 0x01 as real peers) */
    uint8_t opt = sec == LR_SEC_AES128_CFB ? LR_OPT_CHUNK_STREAM : OPTS;
    int rc = lr_body_init(r.enc, (uint8_t)sec, opt, key, iv, key, iv, LR_BODY_ZERO_PADDING);
    if (rc == LR_OK)
        rc = lr_body_init(r.dec, (uint8_t)sec, opt, key, iv, key, iv, LR_BODY_ZERO_PADDING);
    if (rc != LR_OK)
        die("lr_body_init", rc);
    uint8_t *in = malloc(8 * PIECE);
    r.cap = lr_body_max_wire(r.enc, PIECE);
    r.wire = malloc(r.cap);
    if (!in || !r.wire)
        die("malloc", LR_ENOMEM);
    fill(in, 8 * PIECE, 3);
    r.in = in;
    r.chunks = mib * 1024 * 1024 / PIECE;
    cg_work_relay(&r);
    printf("relay-%s %zu %llu\n", secname, r.chunks * PIECE, (unsigned long long)r.check);
    lr_body_free(r.enc);
    lr_body_free(r.dec);
    free(in);
    free(r.wire);
    return 0;
}

/* ------------------------------------------------------------------ */

static void make_req(struct lr_req *req, uint32_t i)
{
    memset(req, 0, sizeof(*req));
    req->mode = LR_MODE_AEAD;
    req->version = 1;
    req->v = (uint8_t)(i * 7 + 1);
    req->option = OPTS;
    req->security = LR_SEC_AES128_GCM;
    req->padding_len = (uint8_t)(i % 16);
    fill(req->padding, sizeof(req->padding), i + 100);
    req->command = LR_CMD_TCP;
    req->atyp = LR_ATYP_IPV4;
    req->port = 443;
    req->addr_len = 4;
    req->addr[0] = 127, req->addr[3] = 1;
    fill(req->body_key, 16, 2 * i + 1000);       /* distinct sessions: no replay */
    fill(req->body_iv, 16, 2 * i + 1001);
    req->id_index = -1;
    req->ts = NOW;
    fill(req->auth_rand, 4, i + 5000);
    req->auth_rand[0] = (uint8_t)i, req->auth_rand[1] = (uint8_t)(i >> 8);
    fill(req->conn_nonce, 8, i + 9000);
}

struct server {
    struct lr_users *users;
    struct lr_replay *replay;
    uint8_t *wires;
    size_t *lens;
    size_t k;
    struct lr_body *up, *down;
    uint64_t check;
};

__attribute__((noinline)) void cg_work_server(struct server *s);
__attribute__((noinline)) void cg_work_server(struct server *s)
{
    for (size_t i = 0; i < s->k; i++) {
        struct lr_req_dec dec;
        struct lr_req req;
        size_t consumed, olen;
        uint8_t rk[16], riv[16], out[LR_RESP_WIRE_MAX];
        lr_req_dec_init(&dec);
        int rc = lr_req_decode(&dec, s->users, s->replay, s->wires + i * LR_REQ_WIRE_MAX,
                               s->lens[i], NOW, &req, &consumed);
        if (rc != LR_OK)
            die("lr_req_decode", rc);
        if ((rc = lr_resp_keys(req.mode, req.body_key, req.body_iv, rk, riv)) ||
            (rc = lr_body_init(s->up, req.security, req.option, req.body_key, req.body_iv,
                               req.body_key, req.body_iv, 0)) ||
            (rc = lr_body_init(s->down, req.security, req.option, rk, riv, req.body_key,
                               req.body_iv, LR_BODY_ZERO_PADDING)) ||
            (rc = lr_resp_encode(req.mode, rk, riv, s->down, req.v, NULL, out, sizeof(out),
                                 &olen)))
            die("response", rc);
        s->check += (uint64_t)req.user + out[0];
    }
}

static struct lr_users *users_with(uint32_t n, uint8_t *last_id)
{
    struct lr_users *u = lr_users_new();
    if (!u)
        die("lr_users_new", LR_ENOMEM);
    lr_users_set_legacy(u, 0);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t id[16];
        fill(id, 16, 77 + i * 3);
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        int rc = lr_users_add(u, id, 0);
        if (rc < 0)
            die("lr_users_add", rc);
        if (i == n - 1)
            memcpy(last_id, id, 16);
    }
    int rc = lr_users_refresh(u, NOW);
    if (rc != LR_OK)
        die("lr_users_refresh", rc);
    return u;
}

static int run_server(uint32_t nusers, size_t k)
{
    uint8_t id[16];
    struct server s = { .users = users_with(nusers, id), .replay = lr_replay_new(0), .k = k,
                        .up = lr_body_new(), .down = lr_body_new() };
    s.wires = malloc(k * LR_REQ_WIRE_MAX);
    s.lens = malloc(k * sizeof(size_t));
    if (!s.replay || !s.wires || !s.lens || !s.up || !s.down)
        die("setup", LR_ENOMEM);
    for (size_t i = 0; i < k; i++) {
        struct lr_req req;
        make_req(&req, (uint32_t)i);
        int rc = lr_req_encode(&req, id, s.wires + i * LR_REQ_WIRE_MAX, LR_REQ_WIRE_MAX, &s.lens[i]);
        if (rc != LR_OK)
            die("lr_req_encode", rc);
    }
    cg_work_server(&s);
    printf("server-%uusers %zu %llu\n", nusers, k, (unsigned long long)s.check);
    lr_users_free(s.users);
    lr_replay_free(s.replay);
    lr_body_free(s.up);
    lr_body_free(s.down);
    free(s.wires);
    free(s.lens);
    return 0;
}

struct client {
    uint8_t id[16];
    size_t k;
    uint8_t *resps;      /* K response headers, as the server would send them */
    size_t *rlens;
    struct lr_body *up, *down;
    uint64_t check;
};

__attribute__((noinline)) void cg_work_client(struct client *c);
__attribute__((noinline)) void cg_work_client(struct client *c)
{
    for (size_t i = 0; i < c->k; i++) {
        struct lr_req req;
        struct lr_resp_dec rdec;
        struct lr_resp resp;
        uint8_t wire[LR_REQ_WIRE_MAX], rk[16], riv[16];
        size_t wl, consumed;
        make_req(&req, (uint32_t)i);
        int rc;
        if ((rc = lr_req_encode(&req, c->id, wire, sizeof(wire), &wl)) ||
            (rc = lr_body_init(c->up, req.security, req.option, req.body_key, req.body_iv,
                               req.body_key, req.body_iv, LR_BODY_ZERO_PADDING)) ||
            (rc = lr_resp_keys(req.mode, req.body_key, req.body_iv, rk, riv)) ||
            (rc = lr_body_init(c->down, req.security, req.option, rk, riv, req.body_key,
                               req.body_iv, 0)))
            die("client request", rc);
        lr_resp_dec_init(&rdec);
        rc = lr_resp_decode(&rdec, req.mode, rk, riv, c->down, req.v,
                            c->resps + i * LR_RESP_WIRE_MAX, c->rlens[i], &consumed, &resp);
        if (rc != LR_OK)
            die("lr_resp_decode", rc);
        c->check += wire[wl - 1] + resp.v;
    }
}

static int run_client(size_t k)
{
    struct client c = { .k = k, .up = lr_body_new(), .down = lr_body_new() };
    fill(c.id, 16, 42);
    c.resps = malloc(k * LR_RESP_WIRE_MAX);
    c.rlens = malloc(k * sizeof(size_t));
    struct lr_body *srv_down = lr_body_new();
    if (!c.resps || !c.rlens || !c.up || !c.down || !srv_down)
        die("setup", LR_ENOMEM);
    for (size_t i = 0; i < k; i++) {
        struct lr_req req;
        uint8_t rk[16], riv[16];
        make_req(&req, (uint32_t)i);
        int rc;
        if ((rc = lr_resp_keys(req.mode, req.body_key, req.body_iv, rk, riv)) ||
            (rc = lr_body_init(srv_down, req.security, req.option, rk, riv, req.body_key,
                               req.body_iv, LR_BODY_ZERO_PADDING)) ||
            (rc = lr_resp_encode(req.mode, rk, riv, srv_down, req.v, NULL,
                                 c.resps + i * LR_RESP_WIRE_MAX, LR_RESP_WIRE_MAX, &c.rlens[i])))
            die("server response", rc);
    }
    cg_work_client(&c);
    printf("client %zu %llu\n", k, (unsigned long long)c.check);
    lr_body_free(c.up);
    lr_body_free(c.down);
    lr_body_free(srv_down);
    free(c.resps);
    free(c.rlens);
    return 0;
}

int main(int argc, char **argv)
{
    if (lr_init() != LR_OK)
        die("lr_init", LR_ECRYPTO);
    if (argc == 4 && !strcmp(argv[1], "relay"))
        return run_relay(argv[2], strtoul(argv[3], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "server"))
        return run_server((uint32_t)strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10));
    if (argc == 3 && !strcmp(argv[1], "client"))
        return run_client(strtoul(argv[2], NULL, 10));
    fprintf(stderr, "usage: cg_driver relay SECURITY MIB | server USERS K | client K\n");
    return 2;
}
