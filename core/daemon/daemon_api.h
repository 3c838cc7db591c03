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
void lr_daemon_describe(struct lr_daemon *d);
int lr_daemon_run(struct lr_daemon *d);
void lr_daemon_free(struct lr_daemon *d);
void lr_daemon_pause_accept(struct lr_daemon *d, struct lr_inbound *ib);

#endif
