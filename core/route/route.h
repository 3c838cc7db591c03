/*
 * Routing: ordered rules, first match wins, else the default outbound.
 * Domain filters (exact, suffix, keyword) form one group; within a group
 * any entry may match; every group a rule has must match.
 */
#ifndef LR_ROUTE_H
#define LR_ROUTE_H

#include "daemon/daemon.h"

struct lr_conn;

/* The outbound index for a connection whose destination is known.
 * *to_sniffed is set when the rule matched only through the sniffed name:
 * the connection must then be dialled to that name. */
int32_t lr_route_pick(struct lr_daemon *d, struct lr_conn *c, int *to_sniffed);
/* Frees a rule's owned strings and arrays. */
void lr_rule_free(struct lr_rule *r);

#endif
