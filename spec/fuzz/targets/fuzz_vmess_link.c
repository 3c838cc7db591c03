/*
 * lua/luaray/link.lua (vmess:// share links: base64 and a flat JSON
 * reader) under LuaJIT, driven from libFuzzer.  libFuzzer cannot see Lua
 * code, so a line hook turns each executed (previous line, line) pair of
 * the module into a hit in __libfuzzer_extra_counters: the fuzzer is
 * guided by the Lua control flow, not only by LuaJIT's C.
 *
 * Input: mode(1) then the bytes.
 *   mode % 4 == 0  parse_vmess_link(bytes)
 *              1   parse_vmess_link("vmess://" .. base64(bytes)) (standard
 *                  or, with mode & 4, URL-safe alphabet without padding)
 *              2   json_decode_object(bytes)
 *              3   base64_decode(bytes)
 * Checked (in Lua, see `checker` below): nothing raises; results are a
 * table or nil plus a string; a decoded object has string keys and string,
 * number or boolean values, and survives json_encode_object -> decode
 * unchanged; base64 round-trips.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz_common.h"

#ifndef FZ_LINK_LUA
#define FZ_LINK_LUA "lua/luaray/link.lua"
#endif

#define FZ_LUA_COUNTERS 8192
#include "fz_lua_cov.h"

static lua_State *L;
static int checker_ref;

static const char checker[] =
    "local M = ...\n"
    "local function same(a, b)\n"
    "  for k, v in pairs(a) do if b[k] ~= v then return false end end\n"
    "  for k, v in pairs(b) do if a[k] ~= v then return false end end\n"
    "  return true\n"
    "end\n"
    "local function check_obj(t, err)\n"
    "  if t == nil then assert(type(err) == 'string', 'error is not a string'); return end\n"
    "  assert(type(t) == 'table', 'result is not a table')\n"
    "  local list, finite = {}, true\n"
    "  for k, v in pairs(t) do\n"
    "    assert(type(k) == 'string', 'non-string key')\n"
    "    local tv = type(v)\n"
    "    assert(tv == 'string' or tv == 'number' or tv == 'boolean', 'bad value type ' .. tv)\n"
    "    if tv == 'number' and (v ~= v or v == math.huge or v == -math.huge) then finite = false end\n"
    "    list[#list + 1] = { k, v }\n"
    "  end\n"
    "  if finite then\n"
    "    local text = M.json_encode_object(list)\n"
    "    local back, e2 = M.json_decode_object(text)\n"
    "    assert(back, 'own JSON refused: ' .. tostring(e2) .. ' in ' .. text)\n"
    "    assert(same(t, back), 'JSON round trip changed the object: ' .. text)\n"
    "  end\n"
    "end\n"
    "return function(mode, s)\n"
    "  local m = mode % 4\n"
    "  if m == 0 then check_obj(M.parse_vmess_link(s))\n"
    "  elseif m == 1 then\n"
    "    local b = M.base64_encode(s)\n"
    "    if mode % 8 >= 4 then b = b:gsub('=+$', ''):gsub('+', '-'):gsub('/', '_') end\n"
    "    check_obj(M.parse_vmess_link('vmess://' .. b))\n"
    "  elseif m == 2 then check_obj(M.json_decode_object(s))\n"
    "  else\n"
    "    local d, err = M.base64_decode(s)\n"
    "    if d == nil then assert(type(err) == 'string', 'error is not a string'); return end\n"
    "    assert(type(d) == 'string', 'decoded is not a string')\n"
    "    assert(M.base64_decode(M.base64_encode(d)) == d, 'base64 round trip failed')\n"
    "  end\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = getenv("FUZZ_LINK_LUA");
    if (!path)
        path = FZ_LINK_LUA;
    L = luaL_newstate();
    FZ_CHECK(L != NULL);
    luaL_openlibs(L);
    if (luaL_loadfile(L, path) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        fprintf(stderr, "fuzz_vmess_link: loading %s: %s\n", path,
                lua_tostring(L, -1));
        abort();
    }
    /* stack: M */
    if (luaL_loadbuffer(L, checker, sizeof(checker) - 1, "=checker") != 0) {
        fprintf(stderr, "fuzz_vmess_link: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pushvalue(L, -2);
    FZ_CHECK(lua_pcall(L, 1, 1, 0) == 0);
    checker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_sethook(L, fz_lua_line_hook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_lua_check(L, checker_ref, data, size, "link.lua");
}
