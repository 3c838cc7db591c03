/*
 * The fleet's policy counts (luaray.cluster): a once-a-second sync of the
 * policy table with the other nodes through Redis (fleet.c).  Main thread
 * only, on worker 0's cluster client.
 */
#ifndef LR_FLEET_H
#define LR_FLEET_H

#include <ev.h>

#include "net/cluster.h"

/* Starts syncing on cl (replacing a sync that ran on another client). */
void lr_fleet_start(struct ev_loop *loop, struct lr_cluster *cl);
/* Stops; the other nodes' counts are no longer used.  Before cl is freed. */
void lr_fleet_stop(void);

#endif
