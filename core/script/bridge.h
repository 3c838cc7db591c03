/*
 * The only way C enters Lua (style.md 4).  Functions marked "runs Lua"
 * call into a generation's LuaJIT state, always from the loop and never
 * from inside an API call made by Lua.
 *
 * The bridge (and LuaJIT) is linked into the executable only; the library
 * (libluaray.so: daemon, dispatch) reaches it through struct lr_scripts,
 * the table main.c installs (lr_scripts), so the library has no Lua in it
 * and no undefined lr_ symbol.
 */
#ifndef LR_BRIDGE_H
#define LR_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

struct lr_conf;
struct lr_ctl_event;
struct lr_daemon;
struct lr_gen;
struct lr_hook_ctx;
struct lr_script;

/* A fresh Lua state with the embedded modules and a memory cap; NULL on
 * failure.  `d` may be NULL (link, -t). */
struct lr_script *lr_script_new(struct lr_daemon *d);
void lr_script_free(struct lr_script *s);
/* runs Lua: loads the config script at `path` (NULL: the embedded default)
 * into `conf`.  On error returns -1 with "file:line: message" in err.
 * With announce, the default config keeps its UUID and share link for
 * "announce" (lr_script_daemon_call), once its listeners are open. */
int lr_script_load_config(struct lr_script *s, const char *path,
                          struct lr_conf *conf, int announce, char *err,
                          size_t errlen);
/* The hooks the loaded config defines: bit (1 << LR_HOOK_*), plus
 * LR_HOOKS_SNIFFED (api.h) when config code mentions ctx.sniffed. */
uint32_t lr_script_hooks(const struct lr_script *s);
/* runs Lua: calls a hook; the answer is in ctx->verdict (also returned). */
int lr_script_call(struct lr_script *s, struct lr_hook_ctx *ctx);
/* runs Lua: the reload hook of a freshly installed generation. */
void lr_script_reload_hook(struct lr_gen *g);
/* runs Lua: hands a control-plane event (api.h, daemon/control.c) to
 * require("luaray.daemon").control_event under the hook budget.  0, or -1
 * with err set (the run failed: its budget, its memory cap, or the
 * event's own Lua). */
int lr_script_control(struct lr_script *s, struct lr_ctl_event *ev, char *err,
                      size_t errlen);
/* runs Lua: prints a vmess:// link per user of the config at `path`. */
int lr_script_links(struct lr_script *s, const char *path, const char *host,
                    char *err, size_t errlen);
/* What the library needs of scripts: the functions above, through a
 * table.  lr_scripts is NULL until the executable sets it (a library used
 * without it runs configs without scripts: no hooks). */
struct lr_scripts {
    struct lr_script *(*create)(struct lr_daemon *d);
    void (*destroy)(struct lr_script *s);
    int (*load_config)(struct lr_script *s, const char *path,
                       struct lr_conf *conf, int announce, char *err,
                       size_t errlen);
    uint32_t (*hooks)(const struct lr_script *s);
    int (*call)(struct lr_script *s, struct lr_hook_ctx *ctx);
    void (*reload_hook)(struct lr_gen *g);
    int (*control)(struct lr_script *s, struct lr_ctl_event *ev, char *err,
                   size_t errlen);
};
extern const struct lr_scripts *lr_scripts;
/* The bridge's table (bridge.c), for main.c to install. */
extern const struct lr_scripts lr_bridge_scripts;

/* runs Lua: require("luaray.daemon")[fn](arg) (arg may be NULL), which
 * returns true[, string] or nil, "message".  0 with the string (or "")
 * in out, or -1 with the message in out. */
int lr_script_daemon_call(struct lr_script *s, const char *fn, const char *arg,
                          char *out, size_t outlen);

#endif
