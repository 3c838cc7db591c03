/*
 * Per-user policy (rate, quota, concurrent connections, distinct source
 * IPs), set from Lua, enforced by dispatch (admission) and the relay
 * (charging and rate, through the connection owner).  Entries are keyed by user
 * email and belong to the process: a reload keeps usage and limits.
 */
#ifndef LR_POLICY_H
#define LR_POLICY_H

#include "base/base.h"

struct lr_pol;

/* Admits a connection of `email` from `ip` (4 or 16 bytes): NULL reason
 * and *out set (may be NULL when the user has no policy entry), or the
 * reason it is refused. */
const char *lr_policy_admit(const char *email, const uint8_t *ip, int iplen,
                            struct lr_pol **out);
void lr_policy_release(struct lr_pol *p, const uint8_t *ip, int iplen);
/* Charges bytes; returns 1 when the quota is now exhausted. */
int lr_policy_charge(struct lr_pol *p, double bytes);
/* Seconds to wait before more bytes may flow (0: go on). */
double lr_policy_wait(struct lr_pol *p, double now);

/* Calls fn for every user the policy table knows (every user who
 * connected since the start: the table keeps usage across reloads), under
 * its lock: fn must not call back into it. */
typedef void (*lr_policy_each_fn)(void *ud, const char *email, uint32_t conns,
                                  uint32_t ips);
void lr_policy_each(lr_policy_each_fn fn, void *ud);

/* The fleet (luaray.cluster, daemon/fleet.c).  lr_policy_fleet_each
 * lists what this node publishes: for every user with a policy or usage,
 * its open connections, their source addresses ("a,b"), its absolute byte
 * count in the fleet's counter (-1 while unknown), the reset generation
 * it knows and whether a reset waits to go out.  A sync's answer is put
 * in with begin, remote (per user and other node), bytes (per user) and
 * commit (fresh: the view is used; 0: stale, local counts only). */
typedef void (*lr_policy_fleet_fn)(void *ud, const char *email, uint32_t conns,
                                   const char *ips, double abs, const char *rgen,
                                   int reset);
void lr_policy_fleet_each(lr_policy_fleet_fn fn, void *ud);
void lr_policy_fleet_begin(void);
void lr_policy_fleet_remote(const char *email, uint32_t conns, const char *ips);
void lr_policy_fleet_bytes(const char *email, double remote, const char *rgen, double own,
                           int sent_reset, int epoch_changed);
void lr_policy_fleet_commit(int fresh);

#endif
