/*
 * The outbound front stage "tls" (front.h): not built yet.
 */
#include "outbound/front.h"

const struct lr_cfront_stage lr_cfront_tls_stage = {
    .name = "tls",
};
