/*
 * Coverage of Lua code for libFuzzer: a line hook turns each pair of
 * consecutive lines run into an edge counter in libFuzzer's extra-counters
 * section, so the engine sees which branches of a Lua parser an input
 * took.  A target defines FZ_LUA_COUNTERS (the table's size) before
 * including this, sets `lua_sethook(L, fz_lua_line_hook, LUA_MASKLINE, 0)`
 * and clears fz_lua_prev_line before each input.
 */
#ifndef FZ_LUA_COV_H
#define FZ_LUA_COV_H

#include <stdint.h>

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

#endif
