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

#endif
