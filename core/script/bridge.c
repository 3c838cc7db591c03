/*
 * script/bridge.c: the only C file that includes lua.h.  It owns the Lua
 * state, registers the embedded modules, and enters Lua only through
 * lua_pcall with a traceback handler.  Lua reaches C only through the FFI
 * API of luaray/api.h (the executable exports it with -Wl,-E).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "script/bridge.h"
#include "script/embedded.h"

static lua_State *L;

static int embedded_loader(lua_State *l)
{
    const struct lr_embedded *e = lua_touserdata(l, lua_upvalueindex(1));
    if (luaL_loadbuffer(l, e->src, e->len, e->chunk) != 0)
        return lua_error(l);
    lua_pushstring(l, e->name);
    lua_call(l, 1, 1);
    return 1;
}

static int traceback(lua_State *l)
{
    const char *msg = lua_tostring(l, 1);
    if (!msg)
        msg = "(error object is not a string)";
    /* config errors are already "file:line: message"; keep them short */
    lua_pushstring(l, msg);
    return 1;
}

int lr_script_open(void)
{
    L = luaL_newstate();
    if (!L)
        return -1;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const struct lr_embedded *e = lr_embedded_lua; e->name; e++) {
        lua_pushlightuserdata(L, (void *)e);
        lua_pushcclosure(L, embedded_loader, 1);
        lua_setfield(L, -2, e->name);
    }
    lua_pop(L, 2);
    return 0;
}

void lr_script_close(void)
{
    if (L)
        lua_close(L);
    L = NULL;
}

/* Calls require("luaray.daemon")[fn](...) with nargs already pushed;
 * expects (true) or (nil, err). */
static int call_daemon(const char *fn, int nargs, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luaray.daemon");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return -1;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    /* stack: args..., traceback, function -> function, args */
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);
    int rc = lua_pcall(L, nargs, 2, base + 1);
    if (rc != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return -1;
    }
    if (!lua_toboolean(L, -2)) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", m ? m : "unknown error");
        lua_settop(L, base);
        return -1;
    }
    lua_settop(L, base);
    return 0;
}

int lr_script_load_config(const char *path, struct lr_conf *conf,
                          int announce, char *err, size_t errlen)
{
    if (path)
        lua_pushstring(L, path);
    else
        lua_pushnil(L);
    lua_pushlightuserdata(L, conf);
    lua_pushboolean(L, announce);
    return call_daemon("load", 3, err, errlen);
}

int lr_script_links(const char *path, const char *host, char *err,
                    size_t errlen)
{
    lua_pushstring(L, path);
    if (host)
        lua_pushstring(L, host);
    else
        lua_pushnil(L);
    return call_daemon("links", 2, err, errlen);
}
