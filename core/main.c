/*
 * The luaray executable.  For now: `luaray version` and `luaray uuid`;
 * the daemon (config scripts, the loop, inbounds and outbounds) arrives
 * with the daemon issue.
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: luaray version | uuid\n");
}

int main(int argc, char **argv)
{
    if (lr_init() != LR_OK) {
        fprintf(stderr, "luaray: crypto libraries failed to initialise\n");
        return 1;
    }
    if (argc >= 2 && (strcmp(argv[1], "version") == 0 ||
                      strcmp(argv[1], "-v") == 0 ||
                      strcmp(argv[1], "--version") == 0)) {
        printf("luaray %s\n", lr_version());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "uuid") == 0) {
        uint8_t id[16];
        char s[37];
        lr_uuid_random(id);
        lr_uuid_format(id, s);
        printf("%s\n", s);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
