/*
 * The outbound front stage "the grpc transport" (front.h): not built yet.
 */
#include "outbound/front.h"

const struct lr_cfront_stage lr_cfront_grpc_stage = {
    .name = "the grpc transport",
};
