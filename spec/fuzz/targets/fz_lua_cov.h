/*
 * Coverage of Lua code for libFuzzer: a line hook turns each pair of
 * consecutive lines run into an edge counter in libFuzzer's extra-counters
 * section, so the engine sees which branches of a Lua parser an input
 * took.  A target defines FZ_LUA_COUNTERS (the table's size) before
 * including this, sets `lua_sethook(L, fz_lua_line_hook, LUA_MASKLINE, 0)`
 * and runs each input through fz_lua_check.
 */
#ifndef FZ_LUA_COV_H
#define FZ_LUA_COV_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>

#ifndef FZ_LUA_COUNTERS
#define FZ_LUA_COUNTERS 8192
#endif

__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t fz_lua_edges[FZ_LUA_COUNTERS];
static int fz_lua_prev_line;

static void fz_lua_line_hook(lua_State *l, lua_Debug *ar)
{
    if (!lua_getinfo(l, "l", ar))
        return;
    unsigned e = ((unsigned)fz_lua_prev_line * 7919u ^ (unsigned)ar->currentline) %
                 FZ_LUA_COUNTERS;
    if (fz_lua_edges[e] < 255)
        fz_lua_edges[e]++;
    fz_lua_prev_line = ar->currentline;
}

/* One input through the checker (a function in the registry at ref):
 * checker(first byte, the rest); a Lua error is a finding (abort). */
static int fz_lua_check(lua_State *L, int ref, const uint8_t *data, size_t size,
                        const char *what)
{
    static unsigned long runs;
    if (size < 1)
        return 0;
    fz_lua_prev_line = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushinteger(L, data[0]);
    lua_pushlstring(L, (const char *)data + 1, size - 1);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        fprintf(stderr, "%s check failed: %s\n", what, lua_tostring(L, -1));
        abort();
    }
    if (++runs % 256 == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

#endif
