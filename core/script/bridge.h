/*
 * The only way C enters Lua (style.md 4).  Functions marked "runs Lua"
 * call into the embedded LuaJIT state.
 */
#ifndef LR_BRIDGE_H
#define LR_BRIDGE_H

#include <stddef.h>

struct lr_conf;

/* Creates the Lua state with the embedded modules.  0 or -1. */
int lr_script_open(void);
void lr_script_close(void);
/* runs Lua: loads the config script at `path` (NULL: the embedded default)
 * into `conf`.  On error returns -1 with "file:line: message" in err.
 * With announce, the default config prints its UUID and share link. */
int lr_script_load_config(const char *path, struct lr_conf *conf,
                          int announce, char *err, size_t errlen);
/* runs Lua: prints a vmess:// link per user of the config at `path`. */
int lr_script_links(const char *path, const char *host, char *err,
                    size_t errlen);

#endif
