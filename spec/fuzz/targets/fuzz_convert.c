/*
 * lua/luaray/convert.lua (`luaray convert`: v2ray/Xray JSON with comments
 * to a config script; `luaray import`: a vmess:// link to a client config)
 * with luaray.json and luaray.link under LuaJIT, driven from libFuzzer.  As
 * in fuzz_vmess_link, a line hook turns each executed (previous line, line)
 * pair into a hit in __libfuzzer_extra_counters, so the fuzzer follows the
 * Lua control flow.
 *
 * Input: mode(1) then the bytes.
 *   mode % 4 == 0  convert(bytes, "f.json")
 *              1   import(bytes)
 *              2   import("vmess://" .. base64(bytes))  (bytes: the link's JSON)
 *              3   json.decode_config(bytes)
 * Checked (in Lua, see `checker` below): nothing raises; convert gives Lua
 * text that loads (loadstring) and a count >= 0, or nil and "f.json:..." ;
 * import gives Lua text that loads, or nil and a message; decode_config
 * gives a value, or nil and "line L, column C: ...".
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz_common.h"

#ifndef FZ_LUA_DIR
#define FZ_LUA_DIR "lua"
#endif

#define FZ_LUA_COUNTERS 16384
#include "fz_lua_cov.h"

static lua_State *L;
static int checker_ref;

static const char checker[] =
    "local dir = ...\n"
    "package.path = dir .. '/?.lua;' .. package.path\n"
    "local C = require 'luaray.convert'\n"
    "local J = require 'luaray.json'\n"
    "local link = require 'luaray.link'\n"
    "local function lua_ok(text, err)\n"
    "  if text == nil then assert(type(err) == 'string', 'error is not a string'); return end\n"
    "  assert(type(text) == 'string', 'result is not a string')\n"
    "  local f, e = loadstring(text, '=out')\n"
    "  assert(f, 'output is not Lua: ' .. tostring(e) .. '\\n' .. text)\n"
    "end\n"
    "return function(mode, s)\n"
    "  local m = mode % 4\n"
    "  if m == 0 then\n"
    "    local text, n = C.convert(s, 'f.json')\n"
    "    if text == nil then\n"
    "      assert(type(n) == 'string' and n:sub(1, 7) == 'f.json:', 'bad error ' .. tostring(n))\n"
    "    else\n"
    "      assert(type(n) == 'number' and n >= 0, 'bad count')\n"
    "      lua_ok(text)\n"
    "    end\n"
    "  elseif m == 1 then lua_ok(C.import(s))\n"
    "  elseif m == 2 then lua_ok(C.import('vmess://' .. link.base64_encode(s)))\n"
    "  else\n"
    "    local v, err = J.decode_config(s)\n"
    "    if v == nil and err then\n"
    "      assert(err:match('^line %d+, column %d+: '), 'bad error ' .. err)\n"
    "    end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("FUZZ_LUA_DIR");
    if (!dir)
        dir = FZ_LUA_DIR;
    L = luaL_newstate();
    FZ_CHECK(L != NULL);
    luaL_openlibs(L);
    if (luaL_loadbuffer(L, checker, sizeof(checker) - 1, "=checker") != 0) {
        fprintf(stderr, "fuzz_convert: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pushstring(L, dir);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "fuzz_convert: loading the modules from %s: %s\n", dir,
                lua_tostring(L, -1));
        abort();
    }
    checker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_sethook(L, fz_lua_line_hook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_lua_check(L, checker_ref, data, size, "convert.lua");
}
