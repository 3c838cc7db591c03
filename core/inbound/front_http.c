/*
 * The front stage "the ws/httpupgrade transport" (front.h): not built yet.
 */
#include "inbound/front.h"

const struct lr_front_stage lr_front_http_stage = {
    .name = "the ws/httpupgrade transport",
};
