/*
 * script/bridge.c: the only C file that includes lua.h.  Each generation
 * owns one Lua state made here; it holds the config's hooks.  C enters Lua
 * only through lua_pcall with an error handler, from the loop; Lua reaches
 * C only through the FFI API of luaray/api.h (the executable exports it
 * with -Wl,-E).
 *
 * Containment (the scripts are trusted, but mistakes happen): every state
 * has a memory cap enforced by its allocator, and hook calls run under an
 * instruction and time budget (a count hook set by lua/luaray/daemon.lua;
 * config code is kept out of the JIT so the hook fires, see config.lua).
 * A failing accept/auth/route hook refuses its connection; connect/close
 * failures are logged (style.md 7).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "script/bridge.h"
#include "script/embedded.h"

#define SCRIPT_MEM_LIMIT (64u << 20)

struct lr_script {
    lua_State *L;
    struct lr_daemon *d;
    size_t mem, mem_limit;
    uint32_t hooks;
    int ref_call;            /* daemon.call_hook */
    uint64_t failures;
};

static void *script_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lr_script *s = ud;
    if (nsize == 0) {
        free(ptr);
        s->mem -= osize;
        return NULL;
    }
    /* osize is the old block's size only when ptr is not NULL */
    size_t old = ptr ? osize : 0;
    if (nsize > old && s->mem - old + nsize > s->mem_limit)
        return NULL; /* Lua raises "not enough memory" */
    void *p = realloc(ptr, nsize);
    if (p)
        s->mem = s->mem - old + nsize;
    return p;
}

static int embedded_loader(lua_State *l)
{
    const struct lr_embedded *e = lua_touserdata(l, lua_upvalueindex(1));
    if (luaL_loadbuffer(l, e->src, e->len, e->chunk) != 0)
        return lua_error(l);
    lua_pushstring(l, e->name);
    lua_call(l, 1, 1);
    return 1;
}

/* An error outside any pcall (out of memory while C pushes a value):
 * say so before the process ends, instead of exiting silently. */
static int on_panic(lua_State *l)
{
    const char *m = lua_tostring(l, -1);
    lr_error("Lua panic: %s", m ? m : "unknown error");
    return 0;
}

static int on_error(lua_State *l)
{
    /* config errors are already "file:line: message"; keep them short */
    const char *msg = lua_tostring(l, 1);
    lua_pushstring(l, msg ? msg : "(error object is not a string)");
    return 1;
}

struct lr_script *lr_script_new(struct lr_daemon *d)
{
    struct lr_script *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->d = d;
    s->mem_limit = SCRIPT_MEM_LIMIT;
    s->ref_call = LUA_NOREF;
    s->L = lua_newstate(script_alloc, s);
    if (!s->L) {
        free(s);
        return NULL;
    }
    lua_State *L = s->L;
    lua_atpanic(L, on_panic);
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const struct lr_embedded *e = lr_embedded_lua; e->name; e++) {
        lua_pushlightuserdata(L, (void *)e);
        lua_pushcclosure(L, embedded_loader, 1);
        lua_setfield(L, -2, e->name);
    }
    lua_pop(L, 2);
    return s;
}

void lr_script_free(struct lr_script *s)
{
    if (!s)
        return;
    if (s->L)
        lua_close(s->L);
    free(s);
}

uint32_t lr_script_hooks(const struct lr_script *s)
{
    return s->hooks;
}

/* Calls require("luaray.daemon")[fn] with the nargs values on the stack;
 * the function returns (ok, err_or_value).  0 and the second result left
 * on the stack, or -1 with err filled. */
static int call_daemon(struct lr_script *s, const char *fn, int nargs,
                       char *err, size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, on_error);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luaray.daemon");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return -1;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    /* args..., handler, function  ->  handler, function, args... */
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);
    if (lua_pcall(L, nargs, 2, base + 1) != 0) {
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
    /* keep the second result for the caller */
    lua_remove(L, -2);
    lua_remove(L, base + 1);
    return 0;
}

int lr_script_load_config(struct lr_script *s, const char *path,
                          struct lr_conf *conf, int announce, char *err,
                          size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    if (path)
        lua_pushstring(L, path);
    else
        lua_pushnil(L);
    lua_pushlightuserdata(L, conf);
    lua_pushboolean(L, announce);
    if (call_daemon(s, "load", 3, err, errlen) != 0)
        return -1;
    /* the result is the bit mask of defined hooks */
    s->hooks = (uint32_t)lua_tointeger(L, -1);
    lua_settop(L, base);
    /* remember the hook entry point */
    lua_getglobal(L, "require");
    lua_pushstring(L, "luaray.daemon");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return -1;
    }
    lua_getfield(L, -1, "call_hook");
    s->ref_call = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
    return 0;
}

int lr_script_call(struct lr_script *s, struct lr_hook_ctx *ctx)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    ctx->verdict = LR_VERDICT_CONTINUE;
    ctx->out_tag[0] = ctx->out_reason[0] = 0;
    lua_pushcfunction(L, on_error);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_call);
    lua_pushlightuserdata(L, ctx);
    if (lua_pcall(L, 1, 0, base + 1) != 0) {
        const char *m = lua_tostring(L, -1);
        ctx->verdict = LR_VERDICT_ERROR;
        snprintf(ctx->out_reason, sizeof(ctx->out_reason), "%s",
                 m ? m : "hook failed");
    }
    lua_settop(L, base);
    if (ctx->verdict == LR_VERDICT_ERROR)
        s->failures++;
    /* LuaJIT does not collect before failing an allocation: after a hook
     * that hit the cap (or came close), free its garbage now so the next
     * call starts clean */
    if (ctx->verdict == LR_VERDICT_ERROR || s->mem > s->mem_limit / 2)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return ctx->verdict;
}

void lr_script_reload_hook(struct lr_gen *g)
{
    if (!g->script || !(g->hooks & (1u << LR_HOOK_RELOAD)))
        return;
    struct lr_hook_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.kind = LR_HOOK_RELOAD;
    ctx.generation = g->id;
    if (lr_script_call(g->script, &ctx) == LR_VERDICT_ERROR)
        lr_warn("reload hook failed: %s", ctx.out_reason);
}

int lr_script_links(struct lr_script *s, const char *path, const char *host,
                    char *err, size_t errlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    lua_pushstring(L, path);
    if (host)
        lua_pushstring(L, host);
    else
        lua_pushnil(L);
    int rc = call_daemon(s, "links", 2, err, errlen);
    lua_settop(L, base);
    return rc;
}

int lr_script_daemon_call(struct lr_script *s, const char *fn, const char *arg,
                          char *out, size_t outlen)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    if (arg)
        lua_pushstring(L, arg);
    else
        lua_pushnil(L);
    int rc = call_daemon(s, fn, 1, out, outlen);
    if (rc == 0) {
        const char *r = lua_tostring(L, -1);
        snprintf(out, outlen, "%s", r ? r : "");
    }
    lua_settop(L, base);
    return rc;
}
