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

/* --- for daemon.c --------------------------------------------------- */
struct lr_conf;
/* The main daemon: where add/remove without one go, and whom they wake. */
void lr_live_set_main(struct lr_daemon *d);
/* Takes the live users into a staging config about to be built: adds the
 * users, and rewrites each VMess inbound's user list.  0, or -1 (ENOMEM). */
int lr_live_merge(struct lr_conf *c, char *err, size_t errlen);
/* What the checks will use once a generation built from c is installed
 * (each VMess inbound's users): made while c still holds its lists. */
struct lr_live_snap;
struct lr_live_snap *lr_live_snapshot(const struct lr_conf *c);
void lr_live_snap_free(struct lr_live_snap *s);
/* After a generation built from c was installed on d's worker: the main
 * thread's snapshot for the checks, and the removed users' connections
 * closed. */
void lr_live_installed(struct lr_daemon *d, struct lr_conf *c);
/* "added|removed\temail\tinbound|*\tlevel\talter_id\tuuid|-\n" lines into out
 * (written only while they fit); returns the bytes they take. */
size_t lr_live_list(char *out, size_t cap);

#endif
