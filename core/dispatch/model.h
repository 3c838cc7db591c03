/*
 * The runtime model: what a config becomes once built (a generation with
 * its inbounds, outbounds, rules, users and Lua state) and what one
 * worker's connections share (struct lr_worker: its loop and connections,
 * the replay state, the dynamic-port clock, the current generation).
 * Dispatch, inbounds and outbounds work on these; the daemon builds,
 * installs and frees them.
 */
#ifndef LR_MODEL_H
#define LR_MODEL_H

#include <ev.h>
#include <stdint.h>

#include "net/conn.h"
#include "net/sock.h"
#include "vmess/vmess.h"

struct lr_rule;
struct lr_script;
struct lr_worker;
struct lr_cidr;
struct lr_udp_in;

/* A transport's settings (design.md 6; lr_conf_transport). */
struct lr_transport {
    uint8_t type;                /* LR_TP_* */
    uint8_t multi;               /* grpc: TunMulti */
    char *path;                  /* ws, httpupgrade (without ?ed=N) */
    char *host;
    uint32_t max_early_data;     /* ws inbound */
    uint32_t early_data;         /* ws outbound */
    char *service_name;          /* grpc */
};

/* TLS settings, and what core/stream/tls.c builds from them. */
struct lr_tls_certs {
    char *cert, *key;            /* file paths (PEM) */
};

struct lr_tls {
    uint8_t on;
    /* an inbound's: certificates (the first is the default for unknown SNI) */
    struct lr_tls_certs *certs;
    uint32_t ncerts;
    /* an outbound's: what it verifies */
    char *server_name, *ca;
    uint8_t pin[32];
    uint8_t has_pin;
    /* both: ALPN protocols, in preference order */
    char **alpn;
    uint32_t nalpn;
    void *ctx;                   /* built (tls.c): an SSL_CTX and what goes with it */
};

enum lr_ib_type { LR_IB_VMESS = 1, LR_IB_SOCKS, LR_IB_HTTP,
                  LR_IB_TUNNEL, LR_IB_TPROXY, LR_IB_REDIRECT };
enum lr_ob_type { LR_OB_DIRECT = 1, LR_OB_BLACKHOLE, LR_OB_VMESS };

struct lr_account {
    char *user, *pass;
};

struct lr_inbound {
    struct lr_gen *gen;          /* the generation that owns it */
    char *tag;
    int type;
    char *host;
    uint16_t port;
    struct lr_addr addr;
    int fd;
    ev_io accept_w;
    struct lr_worker *rt;        /* the worker it accepts on */
    double handshake_timeout, idle_timeout;
    /* client connections, and the sessions inside them (Mux.Cool streams,
     * UDP ASSOCIATE destinations): each pool capped by max_connections,
     * and a client connection holds at most max_sessions sessions */
    uint32_t max_connections, nconns;
    uint32_t max_sessions, nsessions;
    /* vmess */
    int allow_legacy, allow_private;
    struct lr_users *users;      /* the users this inbound accepts */
    int32_t *user_map;           /* inbound user index -> daemon user index */
    /* dynamic port: the announced detour (on the main inbound), or the
     * detour listener itself (is_detour); see "dynamic port" in daemon.c */
    uint16_t dyn_lo, dyn_hi;
    uint32_t dyn_alter, dyn_minutes;
    int is_detour;
    struct lr_cmd_switch *dyn_cmd;
    /* the user table comes from the running generation's inbound with
     * this index when installed (the same users: shared, not rebuilt) */
    int32_t users_from;   /* main: port, alter_ids, valid_min */
    struct lr_inbound *dyn_detour;   /* main: its detour listener */
    int64_t dyn_roll;                /* detour: the roll its IDs are for */
    uint32_t dyn_stale, dyn_fill_at; /* detour: legacy values still to fill */
    int64_t dyn_stale_from;          /* detour: the first epoch waiting */
    /* socks / http */
    int udp;
    struct lr_account *accounts;
    uint32_t naccounts;
    /* transports (design.md 6): TLS, the transport above it, where what is
     * not VMess goes, and the real client address */
    struct lr_tls tls;
    struct lr_transport tp;
    char *fallback_host;         /* NULL: no fallback */
    uint16_t fallback_port;
    uint8_t proxy_protocol;
    struct lr_cidr *trusted;     /* trusted_proxies */
    uint32_t ntrusted;
    /* tunnel / tproxy / redirect (inbound/tunnel.c, tunnel_udp.c) */
    char *to_host;               /* tunnel: the fixed destination */
    uint16_t to_port;
    uint8_t net_tcp, net_udp;    /* what it takes: TCP (a listener in fd), UDP */
    double udp_timeout;          /* a UDP session's idle time */
    int ufd;                     /* its UDP socket until installed (else -1) */
    struct lr_udp_in *uin;       /* installed: the UDP listener and its sessions
                                    (the loop's; carried over on reload) */
    /* counters (base/stats.h), once installed: traffic, open connections,
     * and closes / refused handshakes by reason (a small cache of the
     * reasons seen: they are static strings) */
    int32_t st_up, st_down, st_open;
    struct lr_ib_reason { const char *why; int32_t slot; } st_closed[16], st_refused[16];
};

struct lr_outbound {
    char *tag;
    int type;
    double connect_timeout;
    int family;                  /* direct: 0 any, 4, 6 */
    /* vmess */
    char *server_host;
    uint16_t server_port;
    uint8_t id[16];
    uint32_t alter_id;
    uint8_t security;            /* wire value, or LR_SEC_AUTO / LR_SEC_ZERO */
    int masking, padding, auth_len, udp;
    /* a dynamic port announced by the server, used while valid */
    uint16_t dyn_port;
    char dyn_host[256];
    uint8_t dyn_id[16];
    uint32_t dyn_alter;
    double dyn_until;
    /* transports (design.md 6) */
    struct lr_tls tls;
    struct lr_transport tp;
    /* gRPC: the HTTP/2 connection new tunnels join (outbound/cfront_grpc.c;
     * it holds this generation, and clears this when it goes) */
    void *grpc_carrier;
    /* Mux.Cool as a client (outbound/mux_client.c): streams per carrier
     * connection at once (0: no mux), and the carrier new streams join
     * (it holds this generation, and clears this when it goes) */
    uint32_t mux_concurrency;
    void *mux_carrier;
    /* XUDP as a client (inbound/xudp_client.c): a SOCKS5 UDP association
     * routed here goes as one Mux.Cool/XUDP stream (ports 53/443 apart) */
    uint8_t xudp;
    int32_t st_up, st_down;      /* traffic counters (base/stats.h), once installed */
};

struct lr_user_info {
    uint8_t id[16];
    char *email;
    uint32_t alter_id, level;
    int32_t st_up, st_down;      /* traffic counters (base/stats.h), once installed */
};

/* One loaded configuration: what a config script declared, built into
 * runtime objects, with its Lua state.  Refcounted: the daemon holds the
 * current one, every connection holds the one it started on, so a reload
 * never pulls anything from under an open connection (style.md 10). */
struct lr_gen {
    uint64_t id;
    int refs;
    struct lr_worker *rt;        /* NULL once its worker is gone */
    struct lr_inbound *ib;   uint32_t nib;
    struct lr_outbound *ob;  uint32_t nob;
    struct lr_rule *rules;   uint32_t nrules;
    int32_t default_ob;
    struct lr_user_info *users; uint32_t nusers;
    struct lr_script *script;    /* its Lua state (hooks), may be NULL */
    uint32_t hooks;              /* bit mask of the hooks it defines */
    int sniff;                   /* rules or hooks want the sniffed name */
    uint8_t route_strategy;      /* enum lr_route_strategy (dispatch/route_dns.c) */
    int counted;                 /* its counters' slots are set (installed) */
    struct lr_gen *reap_next;    /* released, queued for the reaper thread */
};

/* What a worker's connections, inbounds and generations share.  The
 * daemon embeds it (struct lr_daemon's first member) and sets `release`. */
struct lr_worker {
    struct lr_loop net;          /* its event loop and connections */
    uint32_t worker;             /* 0: the main thread */
    struct lr_replay *replay;    /* one for every worker of the daemon */
    struct lr_cluster *cluster;  /* luaray.cluster: this worker's own
                                    Redis client (net/cluster.h), or NULL */
    struct lr_gen *gen;          /* the current generation */
    uint32_t old_gens;           /* generations still draining */
    /* dynamic port (inbound/dynport.c): the key of the per-user detour
     * IDs (random per process, never leaves it) and the monotonic time
     * their epochs count from */
    uint8_t dyn_secret[32];
    double dyn_t0;
    ev_timer dyn_fill_w;         /* fills rotated IDs' legacy values a bit at a time */
    /* a generation whose last reference went: the owner frees it (off
     * the loop); NULL: freed at once by lr_gen_free */
    void (*release)(struct lr_gen *g);
};

/* Frees what a transport's / TLS settings own (their built contexts too). */
void lr_transport_free(struct lr_transport *tp);
void lr_tls_free(struct lr_tls *t);

void lr_gen_ref(struct lr_gen *g);
/* Drops a reference; the last hands the generation to its worker's
 * release (or frees it when it has no worker any more). */
void lr_gen_unref(struct lr_gen *g);
/* Frees a generation and everything it owns (its Lua state too). */
void lr_gen_free(struct lr_gen *g);

#endif
