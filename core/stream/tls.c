/*
 * TLS as a stream layer (tls.h).  Not built yet: the transports issue
 * fills this in.
 */
#include <stdlib.h>

#include "stream/tls.h"

void lr_tls_ctx_free(void *ctx)
{
    free(ctx);
}
