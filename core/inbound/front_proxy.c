/*
 * The front stage "proxy_protocol" (front.h): not built yet.
 */
#include "inbound/front.h"

const struct lr_front_stage lr_front_proxy_stage = {
    .name = "proxy_protocol",
};
