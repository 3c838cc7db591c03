/*
 * The outbound front stage "the ws/httpupgrade transport" (front.h): not built yet.
 */
#include "outbound/front.h"

const struct lr_cfront_stage lr_cfront_http_stage = {
    .name = "the ws/httpupgrade transport",
};
