/*
 * The luaray executable: command line, then the daemon.
 *
 *   luaray [--ports V,S,H]      run the embedded default config
 *   luaray -c FILE              run with a config script
 *   luaray -t -c FILE           check a config: exit 0, or file:line and exit 1
 *   luaray --check -c FILE      the same (for a unit's ExecStartPre)
 *   luaray --print-default      print the embedded default config
 *   luaray uuid | version | --help
 *   luaray link -c FILE [-H HOST]  vmess:// share links, one per user
 *   luaray convert FILE.json    a v2ray/Xray JSON config as a luaray config
 *   luaray import LINK          a client config from a vmess:// link
 */
#include <ares.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "daemon/daemon_api.h"
#include "daemon/metrics.h"
#include "script/bridge.h"

/* build/gen/commit.c (Makefile): git describe of the tree built */
extern const char lr_build_commit[];

static void usage(FILE *f)
{
    fprintf(f,
            "usage: luaray [-c FILE]                run (no -c: the embedded default)\n"
            "       luaray -t -c FILE               check a config (--check: the same)\n"
            "       luaray link -c FILE [-H HOST]   print vmess:// share links\n"
            "       luaray convert FILE.json        v2ray/Xray JSON -> luaray config\n"
            "       luaray import 'vmess://...'     a client config from a share link\n"
            "       luaray uuid | version | --help\n");
}

static void help(void)
{
    usage(stdout);
    printf("\n"
           "commands:\n"
           "  (none)          run: the config of -c, else the embedded default (a VMess\n"
           "                  server on 127.0.0.1:10086, SOCKS5 on 1080 and HTTP on 8080\n"
           "                  reaching it; a fresh user UUID at each start)\n"
           "  link            one vmess:// link (v2rayN format) per user of each VMess\n"
           "                  inbound of the -c config\n"
           "  convert FILE    print FILE (v2ray/Xray JSON; - for stdin) as a luaray\n"
           "                  config; what it cannot express becomes comments\n"
           "                  \"not converted: <JSON path> = <value>\"\n"
           "  import LINK     print a client config (SOCKS5 127.0.0.1:1080, HTTP\n"
           "                  127.0.0.1:8080) for the server of a vmess:// link\n"
           "  uuid            print a fresh random UUID\n"
           "  version         the version, the commit built and the library versions\n"
           "\n"
           "options:\n"
           "  -c FILE         the config script\n"
           "  -t, --check     check the config (-c) and exit: 0 and \"configuration OK\",\n"
           "                  or 1 and \"file:line: message\"\n"
           "  -H HOST         link: the address clients dial (default: the listen\n"
           "                  address; needed when that is 0.0.0.0 or [::])\n"
           "  --ports V,S,H   the embedded default's VMess, SOCKS5 and HTTP ports\n"
           "                  (default 10086,1080,8080; `make run PORTS=\"V S H\"`)\n"
           "  --print-default print the embedded default config (with --ports applied\n"
           "                  and a fresh UUID): a starting point for -c\n"
           "  -h, --help      this text\n"
           "\n"
           "signals:\n"
           "  HUP             reload the config and every included file; on any error the\n"
           "                  running one stays and the error is logged; no connection drops\n"
           "  TERM, INT       stop accepting, let open connections finish (10 s), exit;\n"
           "                  a second signal exits at once\n"
           "  USR1            log every connection's state (debugging)\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "luaray: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'luaray --help'.\n");
    return 2;
}

static int version(void)
{
    char lj[128];
    struct lr_script *s = lr_script_new(NULL);
    if (!s || lr_script_daemon_call(s, "luajit_version", NULL, lj, sizeof(lj)) != 0)
        snprintf(lj, sizeof(lj), "LuaJIT (unknown)");
    lr_script_free(s);
    printf("luaray %s (commit %s)\n", lr_version(), lr_build_commit);
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  %s\n", lj);
    printf("  libev %d.%d\n", ev_version_major(), ev_version_minor());
    printf("  libsodium %s\n", sodium_version_string());
    printf("  c-ares %s\n", ares_version(NULL));
    return 0;
}

int main(int argc, char **argv)
{
    lr_metrics_commit = lr_build_commit;
    const char *config = NULL, *host = NULL, *ports = NULL, *check_opt = "-t";
    int check = 0, link = 0, print_default = 0;
    char err[1024];

    /* hooks may print; keep their lines in order with the log */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* the library reaches the Lua bridge, linked here, through this */
    lr_scripts = &lr_bridge_scripts;
    if (lr_init() != LR_OK) {
        fprintf(stderr, "luaray: crypto libraries failed to initialise\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* an option's value: the next argument (--ports=V,S,H also) */
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "version") == 0 || strcmp(a, "-v") == 0 ||
            strcmp(a, "--version") == 0) {
            return version();
        } else if (strcmp(a, "uuid") == 0) {
            uint8_t id[16];
            char s[37];
            lr_uuid_random(id);
            lr_uuid_format(id, s);
            printf("%s\n", s);
            return 0;
        } else if (strcmp(a, "convert") == 0 || strcmp(a, "import") == 0) {
            if (!val)
                return usage_error(a[0] == 'c' ? "%s needs a JSON file (luaray convert FILE.json)"
                                               : "%s needs a vmess:// link", a);
            if (i + 2 < argc)
                return usage_error("%s takes one argument", a);
            struct lr_script *s = lr_script_new(NULL);
            int rc = s ? lr_script_daemon_call(s, a, val, err, sizeof(err)) : -1;
            if (rc != 0)
                fprintf(stderr, "luaray: %s\n", s ? err : "cannot create the Lua state");
            lr_script_free(s);
            return rc ? 1 : 0;
        } else if (strcmp(a, "link") == 0) {
            link = 1;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--check") == 0) {
            check = 1;
            check_opt = a;
        } else if (strcmp(a, "-c") == 0) {
            if (!val)
                return usage_error("option %s needs a config file (-c FILE)", a);
            config = argv[++i];
        } else if (strcmp(a, "-H") == 0) {
            if (!val)
                return usage_error("option %s needs the host clients dial (-H HOST)", a);
            host = argv[++i];
        } else if (strcmp(a, "--ports") == 0 || strncmp(a, "--ports=", 8) == 0) {
            if (a[7] == '=') {
                ports = a + 8;
            } else if (!val) {
                return usage_error("option %s needs VMESS,SOCKS,HTTP (e.g. --ports 10087,1081,8081)", a);
            } else {
                ports = argv[++i];
            }
        } else if (strcmp(a, "--print-default") == 0) {
            print_default = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help();
            return 0;
        } else {
            fprintf(stderr, "luaray: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if ((check || link) && !config) {
        fprintf(stderr, "luaray: %s needs -c FILE\n", check ? check_opt : "link");
        return 2;
    }
    if ((ports || print_default) && (config || link || check))
        return usage_error("%s is about the embedded default: not with -c, -t or link",
                           ports && !print_default ? "--ports" : "--print-default");
    if (link) {
        struct lr_script *s = lr_script_new(NULL);
        int rc = s ? lr_script_links(s, config, host, err, sizeof(err)) : -1;
        if (rc != 0)
            fprintf(stderr, "luaray: %s\n", s ? err : "cannot create the Lua state");
        lr_script_free(s);
        return rc ? 1 : 0;
    }
    if (host)
        return usage_error("%s is for link", "-H");
    /* A signal during start-up (SIGHUP from a deploy script that saw the
     * port open, Ctrl-C while 10,000 users load) must not find the default
     * action: it is held here and handled once lr_daemon_run has its
     * watchers (a SIGHUP then reloads, a SIGTERM stops gracefully).  The
     * threads started meanwhile inherit the mask. */
    if (!check && !print_default) {
        sigset_t held;
        sigemptyset(&held);
        sigaddset(&held, SIGHUP);
        sigaddset(&held, SIGTERM);
        sigaddset(&held, SIGINT);
        sigaddset(&held, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &held, NULL);
    }
    struct lr_conf *conf = lr_conf_new();
    struct lr_daemon *d = lr_daemon_new();
    struct lr_script *script = d ? lr_script_new(d) : NULL;
    int rc = 1;
    if (!conf || !d || !script) {
        fprintf(stderr, "luaray: out of memory\n");
        goto out;
    }
    if (ports && lr_script_daemon_call(script, "set_default_ports", ports, err,
                                       sizeof(err)) != 0) {
        rc = usage_error("%s", err);
        goto out;
    }
    if (print_default) {
        rc = lr_script_daemon_call(script, "print_default", NULL, err, sizeof(err)) ? 1 : 0;
        if (rc)
            fprintf(stderr, "luaray: %s\n", err);
        goto out;
    }
    if (config)
        d->config_path = strdup(config);
    if (lr_script_load_config(script, config, conf, !check, err, sizeof(err)) != 0 ||
        lr_daemon_commit(d, conf, script, check, err, sizeof(err)) != 0) {
        fprintf(stderr, "luaray: %s\n", err);
        if (!config)
            fprintf(stderr, "luaray: other ports for the embedded default: luaray --ports "
                            "VMESS,SOCKS,HTTP (make run PORTS=\"VMESS SOCKS HTTP\"); "
                            "or a config file: luaray -c FILE\n");
        goto out;
    }
    if (check) {
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }
    script = NULL; /* the generation owns it now */
    lr_daemon_describe(d);
    /* the default's UUID, link and addresses: only now that it listens */
    if (!config && d->rt.gen->script &&
        lr_script_daemon_call(d->rt.gen->script, "announce", NULL, err, sizeof(err)) != 0)
        lr_warn("%s", err);
    rc = lr_daemon_run(d);
out:
    lr_script_free(script);
    lr_conf_free(conf);
    lr_daemon_free(d);
    return rc;
}
