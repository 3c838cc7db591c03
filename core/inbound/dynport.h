/*
 * Dynamic port (inbound side): per-user, expiring detour IDs derived from
 * a per-process secret, the detour's user table, its rotation and the
 * SwitchAccount command a main inbound announces.  The daemon builds the
 * tables (lr_dyn_table), rolls them on its tick (lr_dyn_roll) and runs
 * the fill timer (lr_dyn_fill_cb); the VMess inbound asks for the command
 * (lr_dyn_command).
 */
#ifndef LR_DYNPORT_H
#define LR_DYNPORT_H

#include "dispatch/model.h"

/* IDs per user in a detour's table (the previous, current, next epoch). */
#define LR_DYN_SLOTS 3

/* Fills detour `ib`'s table: LR_DYN_SLOTS IDs for each user users[which[j]]
 * (j < n), in slots 3j..3j+2, mapped to that user.  0 or -1. */
int lr_dyn_table(struct lr_worker *rt, struct lr_inbound *ib,
                 const struct lr_user_info *users, const uint32_t *which, uint32_t n);
/* Brings a detour's IDs to the current epoch. */
void lr_dyn_roll(struct lr_inbound *ib);
/* The command announcing user u's detour ID now, in *buf; NULL if none. */
const struct lr_cmd_switch *lr_dyn_command(struct lr_inbound *ib,
                                           const struct lr_user_info *u,
                                           struct lr_cmd_switch *buf);
/* The fill timer's callback (rt->dyn_fill_w, data = rt). */
void lr_dyn_fill_cb(struct ev_loop *loop, ev_timer *w, int revents);

#endif
