/*
 * Status codes to text.  Negative values above -1000 are -errno; the
 * project's own codes sit below -1000 (see enum lr_status in api.h).
 */
#include <string.h>

#include "base/base.h"

LR_API const char *lr_strerror(int err)
{
    switch (err) {
    case LR_OK: return "ok";
    case LR_AGAIN: return "need more bytes";
    case LR_DONE: return "end of stream";
    case LR_EINVAL: return "invalid argument or field";
    case LR_EAUTH: return "authentication failed";
    case LR_ECHECKSUM: return "header checksum mismatch";
    case LR_EREPLAY: return "replayed request";
    case LR_ETIME: return "timestamp outside the window";
    case LR_ENOUSER: return "no matching user";
    case LR_ESECURITY: return "unsupported security type";
    case LR_EOPTION: return "forbidden option combination";
    case LR_EADDR: return "invalid address";
    case LR_ETOOBIG: return "length out of range";
    case LR_ENOMEM: return "out of memory";
    case LR_EFULL: return "replay filter full";
    case LR_ETAINTED: return "legacy auth value tainted";
    case LR_ECOMMAND: return "unknown command";
    case LR_ECRYPTO: return "crypto library failure";
    case LR_ELEGACY: return "legacy header refused";
    default:
        if (err < 0 && err > -1000)
            return strerror(-err);
        return "unknown error";
    }
}
