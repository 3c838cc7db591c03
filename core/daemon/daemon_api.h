/* The daemon's life cycle, used by main.c and the script bridge. */
#ifndef LR_DAEMON_API_H
#define LR_DAEMON_API_H

#include <stddef.h>

struct lr_daemon;
struct lr_conf;
struct lr_inbound;

struct lr_daemon *lr_daemon_new(void);
struct lr_script;
struct lr_gen;
/* Builds a generation from `c` and makes it current (dry_run: only
 * checks).  The generation takes `script`.  -1 with err on failure. */
int lr_daemon_commit(struct lr_daemon *d, struct lr_conf *c,
                     struct lr_script *script, int dry_run, char *err,
                     size_t errlen);
void lr_gen_ref(struct lr_gen *g);
void lr_gen_unref(struct lr_gen *g);
void lr_daemon_describe(struct lr_daemon *d);
int lr_daemon_run(struct lr_daemon *d);
void lr_daemon_free(struct lr_daemon *d);
void lr_daemon_pause_accept(struct lr_daemon *d, struct lr_inbound *ib);

struct lr_cmd_switch;
struct lr_user_info;
/* Dynamic port.  The command a response of main inbound `ib` to user `u`
 * carries (u's detour ID for the current epoch), written to `buf`; NULL
 * when `ib` has no detour. */
const struct lr_cmd_switch *lr_dyn_command(struct lr_inbound *ib,
                                           const struct lr_user_info *u,
                                           struct lr_cmd_switch *buf);
/* Brings a detour listener's IDs up to the current epoch (cheap when they
 * are); called before each header decode on it and from the tick. */
void lr_dyn_roll(struct lr_inbound *detour);

#endif
