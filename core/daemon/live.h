/*
 * Live users (design.md 7): users added or removed at run time (the v2ray
 * API's HandlerService.AlterInbound, luaray.users.add/remove) take effect
 * on every worker, stay across reloads until removed, and are gone after a
 * restart.  Removing one closes its open connections.  Main thread only.
 */
#ifndef LR_LIVE_H
#define LR_LIVE_H

#include <stddef.h>
#include <stdint.h>

struct lr_daemon;

/* Adds a user with VMess ID `id` to the VMess inbound `inbound` (NULL:
 * every VMess inbound).  0, or -1 with err set ("no VMess inbound 'x'",
 * "user 'e' already exists", ...).  It serves once the workers have
 * rebuilt their user tables (well under a second at 10,000 users). */
int lr_live_add(struct lr_daemon *d, const char *inbound, const uint8_t id[16],
                const char *email, uint32_t level, uint32_t alter_id, char *err,
                size_t errlen);
/* Removes the user `email` from `inbound` (NULL: every inbound) and closes
 * its connections there.  0, or -1 with err set ("no user 'e'"). */
int lr_live_remove(struct lr_daemon *d, const char *inbound, const char *email, char *err,
                   size_t errlen);

#endif
