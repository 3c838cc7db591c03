/*
 * The luaray executable: command line, then the daemon.
 *
 *   luaray                      run the embedded default config
 *   luaray -c FILE              run with a config script
 *   luaray -t -c FILE           check a config: exit 0, or file:line and exit 1
 *   luaray uuid | version
 *   luaray link -c FILE [-H HOST]  vmess:// share links, one per user
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "daemon/daemon_api.h"
#include "script/bridge.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: luaray [-c FILE]           run (no -c: the embedded default)\n"
            "       luaray -t -c FILE          check a config\n"
            "       luaray link -c FILE [-H HOST]  print vmess:// links\n"
            "       luaray uuid | version\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *host = NULL;
    int check = 0, link = 0;
    char err[1024];

    /* hooks may print; keep their lines in order with the log */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (lr_init() != LR_OK) {
        fprintf(stderr, "luaray: crypto libraries failed to initialise\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "version") == 0 || strcmp(a, "-v") == 0 ||
            strcmp(a, "--version") == 0) {
            printf("luaray %s\n", lr_version());
            return 0;
        } else if (strcmp(a, "uuid") == 0) {
            uint8_t id[16];
            char s[37];
            lr_uuid_random(id);
            lr_uuid_format(id, s);
            printf("%s\n", s);
            return 0;
        } else if (strcmp(a, "link") == 0) {
            link = 1;
        } else if (strcmp(a, "-t") == 0) {
            check = 1;
        } else if (strcmp(a, "-c") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(a, "-H") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "luaray: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if ((check || link) && !config) {
        fprintf(stderr, "luaray: %s needs -c FILE\n", check ? "-t" : "link");
        return 2;
    }
    if (link) {
        struct lr_script *s = lr_script_new(NULL);
        int rc = s ? lr_script_links(s, config, host, err, sizeof(err)) : -1;
        if (rc != 0)
            fprintf(stderr, "luaray: %s\n", s ? err : "cannot create the Lua state");
        lr_script_free(s);
        return rc ? 1 : 0;
    }
    struct lr_conf *conf = lr_conf_new();
    struct lr_daemon *d = lr_daemon_new();
    struct lr_script *script = d ? lr_script_new(d) : NULL;
    int rc = 1;
    if (!conf || !d || !script) {
        fprintf(stderr, "luaray: out of memory\n");
        goto out;
    }
    if (config)
        d->config_path = strdup(config);
    if (lr_script_load_config(script, config, conf, !check, err, sizeof(err)) != 0 ||
        lr_daemon_commit(d, conf, script, check, err, sizeof(err)) != 0) {
        fprintf(stderr, "luaray: %s\n", err);
        goto out;
    }
    if (!check)
        script = NULL; /* the generation owns it now */
    if (check) {
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }
    lr_daemon_describe(d);
    rc = lr_daemon_run(d);
out:
    lr_script_free(script);
    lr_conf_free(conf);
    lr_daemon_free(d);
    return rc;
}
