/*
 * The front stage "the grpc transport" (front.h): not built yet.
 */
#include "inbound/front.h"

const struct lr_front_stage lr_front_grpc_stage = {
    .name = "the grpc transport",
};
