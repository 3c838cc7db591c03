/*
 * The front stage "tls" (front.h): not built yet.
 */
#include "inbound/front.h"

const struct lr_front_stage lr_front_tls_stage = {
    .name = "tls",
};
