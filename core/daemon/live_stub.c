/*
 * TEMPORARY (branch api only): daemon/live.h's functions, refusing, so
 * this branch links before the real ones (branch main) are merged.
 * Delete this file at the merge.
 */
#include <stdio.h>

#include "daemon/live.h"

int lr_live_add(struct lr_daemon *d, const char *inbound, const uint8_t id[16],
                const char *email, uint32_t level, uint32_t alter_id, char *err, size_t errlen)
{
    snprintf(err, errlen, "live users: not in this build");
    return -1;
}

int lr_live_remove(struct lr_daemon *d, const char *inbound, const char *email, char *err,
                   size_t errlen)
{
    snprintf(err, errlen, "live users: not in this build");
    return -1;
}
