/*
 * Staging configuration: what the config script declared, copied into C,
 * before validation and commit (style.md 10).
 */
#ifndef LR_CONF_H
#define LR_CONF_H

#include "daemon/daemon.h"
#include "route/route.h"
#include "net/cluster.h"

struct lr_conf_ib {
    struct lr_inbound ib;         /* tag, type, host, port, options */
    char **users;                 /* restriction by email */
    uint32_t nusers;
    char *where;
    int32_t detour_of;            /* dynamic-port listener: its main inbound */
    int32_t detour;               /* a main inbound: its dynamic-port listener */
    int32_t share;                /* gen_build: the running generation's inbound
                                     whose user table this one takes over, or -1 */
    uint8_t no_users;             /* live users removed every user it had: none,
                                     not every one (nusers 0) */
};

struct lr_conf_ob {
    struct lr_outbound ob;
    char *where;
};

struct lr_conf_rule {
    struct lr_rule r;
    char *to;
    char *where;
};

/* Adds the dynamic-port listeners (one per inbound with dynamic_port).
 * A listener has no users of its own: gen_build gives it one rotating ID
 * per user of its main inbound (daemon.c, "dynamic port"). */
int lr_conf_expand_dynamic(struct lr_conf *c, char *err, size_t errlen);

struct lr_conf {
    char error[512];
    int log_level;
    int workers;                  /* 1.. (lr_conf_new: 1) */
    char *access;                 /* NULL off, "" stderr */
    int access_set;
    char *log_where;              /* luaray.log's file:line, or NULL */
    struct lr_user_info *users;   uint32_t nusers;
    int32_t *uhash;               /* conf.c: emails and ids, hashed */
    uint32_t uhcap;
    struct lr_conf_ib *ib;        uint32_t nib;
    struct lr_conf_ob *ob;        uint32_t nob;
    struct lr_conf_rule *rules;   uint32_t nrules;
    char *default_tag;
    uint8_t route_strategy;      /* enum lr_route_strategy */
    struct lr_conf_policy *policies;
    uint32_t npolicies;
    struct lr_live_snap *live_snap;   /* gen_build, main thread's: live.c */
    /* luaray.metrics: host NULL when not configured */
    char *metrics_host, *metrics_token, *metrics_where;
    uint16_t metrics_port;
    /* luaray.api: host NULL when not configured */
    char *api_host, *api_where;
    uint16_t api_port;
    /* luaray.cluster: host NULL when not configured (net/cluster.h) */
    struct lr_cluster_conf cluster;
};

struct lr_conf_policy {
    char *email;
    struct lr_policy p;
};

#endif
