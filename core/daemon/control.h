/*
 * The control plane (design.md 7): luaray.every timers, luaray.spawn
 * coroutines, luaray.sleep and luaray.http.request, on the main thread's
 * loop.  The coroutines themselves live in Lua (lua/luaray/control.lua);
 * this module keeps what they wait on (timers, requests) and hands each
 * outcome to the Lua state it belongs to as an event (lr_scripts->control).
 *
 * Hosts.  Every generation installed on the main thread becomes a host
 * (its state may luaray.spawn from a hook); one of them is the control
 * host, whose luaray.every timers and load-time spawns run: the generation
 * a config load made (the start, or a SIGHUP).  A rebuild that luaray.users
 * causes (live.c: it reads the config again) makes a host but does not move
 * the control host, so a timer that adds users is not restarted by its own
 * change.  A config load stops every other host: their timers and sleeps
 * are stopped, their requests cancelled, and their coroutines dropped.
 * A host keeps its generation (and so its Lua state) alive while it is the
 * control host or has anything pending.
 *
 * Main thread only: the lr_ctl_* API refuses other threads.
 */
#ifndef LR_CONTROL_H
#define LR_CONTROL_H

#include <ev.h>

struct lr_gen;

/* A generation was installed on the main thread (after gen_install);
 * config_load: it came from the start or a SIGHUP (it becomes the control
 * host).  Its state hears LR_CTL_ATTACH from the loop, soon after. */
void lr_ctl_installed(struct ev_loop *loop, struct lr_gen *g, int config_load);
/* The generation is being released: its host goes (main thread; a no-op
 * elsewhere). */
void lr_ctl_forget(struct lr_gen *g);
/* The loop is ending: everything is cancelled and every reference let go. */
void lr_ctl_shutdown(void);

struct lr_cluster;
/* The fleet's Redis client luaray.cluster.call uses (worker 0's), or
 * NULL; calls waiting on a previous client end with an error. */
void lr_ctl_set_cluster(struct lr_cluster *cl);

#endif
