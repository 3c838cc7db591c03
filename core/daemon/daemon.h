/*
 * The daemon's runtime objects: inbounds (listeners), outbounds, routing
 * rules, and connections.  One libev loop per process; everything here is
 * touched only from that loop.
 */
#ifndef LR_DAEMON_H
#define LR_DAEMON_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "base/buf.h"
#include "luaray/api.h"
#include "net/dns.h"
#include "net/sock.h"
#include "vmess/vmess.h"

struct lr_conn;
struct lr_daemon;

enum lr_ib_type { LR_IB_VMESS = 1, LR_IB_SOCKS, LR_IB_HTTP };
enum lr_ob_type { LR_OB_DIRECT = 1, LR_OB_BLACKHOLE, LR_OB_VMESS };

struct lr_account {
    char *user, *pass;
};

struct lr_gen;

struct lr_inbound {
    struct lr_gen *gen;          /* the generation that owns it */
    char *tag;
    int type;
    char *host;
    uint16_t port;
    struct lr_addr addr;
    int fd;
    ev_io accept_w;
    struct lr_daemon *d;
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
};

struct lr_user_info {
    uint8_t id[16];
    char *email;
    uint32_t alter_id, level;
};

/* A compiled routing rule (first match wins). */
struct lr_cidr {
    uint8_t ip[16];
    uint8_t len;                 /* 4 or 16 */
    uint8_t bits;
};

struct lr_rule {
    char **domain;      uint32_t ndomain;
    char **suffix;      uint32_t nsuffix;
    char **keyword;     uint32_t nkeyword;
    struct lr_cidr *cidr; uint32_t ncidr;
    uint16_t (*ports)[2]; uint32_t nports;
    char **user;        uint32_t nuser;
    char **inbound;     uint32_t ninbound;
    uint8_t network;    /* bit mask of LR_NET_*, 0 = any */
    uint8_t protocol;   /* bit mask of LR_PROTO_* (sniffed), 0 = any */
    int32_t to;         /* outbound index */
};

struct lr_script;
struct lr_build;

/* One loaded configuration: what a config script declared, built into
 * runtime objects, with its Lua state.  Refcounted: the daemon holds the
 * current one, every connection holds the one it started on, so a reload
 * never pulls anything from under an open connection (style.md 10). */
struct lr_gen {
    uint64_t id;
    int refs;
    struct lr_daemon *d;
    struct lr_inbound *ib;   uint32_t nib;
    struct lr_outbound *ob;  uint32_t nob;
    struct lr_rule *rules;   uint32_t nrules;
    int32_t default_ob;
    struct lr_user_info *users; uint32_t nusers;
    struct lr_script *script;    /* its Lua state (hooks), may be NULL */
    uint32_t hooks;              /* bit mask of the hooks it defines */
    int sniff;                   /* rules or hooks want the sniffed name */
    struct lr_gen *reap_next;    /* released, queued for the reaper thread */
};

#define LR_MAX_WORKERS 64

/* One per worker thread.  Worker 0 is the main thread: it owns the
 * signals, the replay state and the log settings, and passes SIGHUP,
 * SIGTERM/SIGINT and SIGUSR1 on to the others as commands (ev_async).
 * Every worker loads the config into its own Lua state and listens with
 * SO_REUSEPORT on the same addresses; the kernel spreads connections. */
struct lr_daemon {
    struct ev_loop *loop;
    uint32_t worker;         /* 0: the main thread */
    uint32_t nworkers;       /* main: threads running, itself included */
    struct lr_daemon **workers;   /* main: workers 1..nworkers-1 */
    struct lr_daemon *main;  /* workers: worker 0 */
    pthread_t thread;
    ev_async cmd_w;          /* workers: commands from the main thread */
    _Atomic uint32_t cmds;   /* LR_CMD_* bits pending */
    int start_rc;            /* workers: 0 serving, -1 failed to start */
    uint64_t accepted;       /* connections accepted by this worker */
    ev_timer resume;         /* accepting again after EMFILE */
    uint32_t id_step;        /* connection ids: worker + k * id_step */
    uint32_t conf_workers;   /* main: workers the first config asked for */
    struct lr_gen *gen;      /* the current generation */
    uint64_t gen_seq;
    uint32_t old_gens;       /* generations still draining */
    char *config_path;       /* NULL: the embedded default */
    struct lr_replay *replay;
    uint64_t next_conn_id;
    uint32_t nconns;
    struct lr_conn *conns;   /* all live connections */
    struct lr_conn *kicks;   /* connections to pump again (deferred) */
    ev_prepare kick_w;
    ev_timer tick;           /* legacy table refresh, replay expiry */
    ev_signal sigterm, sigint, sigusr1, sighup;
    ev_timer grace;
    int stopping;
    double grace_seconds;
    double stop_deadline;
    /* dynamic port: the key of the per-user detour IDs (random per
     * process, never leaves it) and the monotonic time their epochs
     * count from */
    uint8_t dyn_secret[32];
    double dyn_t0;
    ev_timer dyn_fill_w;     /* fills rotated IDs' legacy values a bit at a time */
    /* SIGHUP: the next generation is built by a thread of its own (config
     * script, user tables, listeners) and installed here when ready */
    struct lr_build *build;  /* the reload being built, or NULL */
    ev_async built_w;
    int reload_again;        /* another SIGHUP came meanwhile */
};

/* Destination of a connection, as the inbound decoded it. */
struct lr_dest {
    uint8_t network;         /* LR_NET_* */
    uint8_t atyp;            /* LR_ATYP_* (vmess numbering) */
    uint16_t port;
    uint8_t ip[16];          /* atyp IPv4/IPv6 */
    char host[256];          /* domain, or the IP as text */
    uint8_t sniff_proto;     /* LR_PROTO_* from the first client bytes */
    char sniff_host[256];    /* the name sniffed (SNI / Host), or "" */
};

#endif
