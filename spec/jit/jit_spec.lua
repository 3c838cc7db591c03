-- The hot Lua paths stay compiled (style.md 11; issue "The Lua layer").
--
-- The paths are run in this LuaJIT with jit.v writing to a file, and the
-- spec fails on any "NYI" in that log (a trace aborted on something the JIT
-- cannot compile) and on a missing trace (a hot function that never got one).
--
--   * the hook wrapper: lua/luaray/daemon.lua's call_hook for every hook
--     kind, with the luaray.shared / luaray.usage wrappers the hooks call.
--     The daemon enters it from C (bridge.c, lua_pcall) once per event, so
--     here it is driven from a function kept out of the JIT: a compiled Lua
--     loop around it would become the trace root and hide a missing
--     function-entry trace.  The hooks come from a real config loaded by
--     M.load into a conf from C.lr_conf_new(), as in the daemon; the context
--     is a struct lr_hook_ctx filled the way core/net/conn.c fills it.
--   * rule-related Lua: declaring many routing rules (config.lua's DSL and
--     daemon.lua's apply(), which hands every rule to C) -- the work a
--     reload does for a large rule set.  Rules are matched in C, so this
--     is the Lua side of rules.
--
-- The library is loaded with ffi.load(path, true) so that daemon.lua's
-- ffi.C calls find the API, as they do inside the executable (-Wl,-E).
-- Config code (hooks included) is jit.off'ed by config.lua on purpose (the
-- hook budget needs the interpreter); only luaray's own Lua is judged here.
local ffi = require "ffi"

local build = os.getenv("LURAY_BUILD") or "build"
ffi.load(build .. "/libluaray.so", true)
require "luaray.cdef"
local C = ffi.C
assert(C.lr_init() == 0, "lr_init failed")

local daemon = require "luaray.daemon"
local jutil = require "jit.util"

local ROUNDS = 3000          -- calls per scenario: far above the hot counters

-- "file:line" where a function starts, from its definition text in a module.
local function source_of(mod)
  local path = assert(package.searchpath(mod, package.path), "cannot find " .. mod)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return path, text
end

local function line_of(mod, pattern)
  local _, text = source_of(mod)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(pattern) then return n end
  end
  error(("no line matching %q in %s"):format(pattern, mod))
end

local function write_tmp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function read_all(path)
  local f = io.open(path, "rb")
  local t = f and f:read("*a") or ""
  if f then f:close() end
  return t
end

-- Runs fn with jit.v logging to a file -> the log text.
local function traced(fn)
  local v = require "jit.v"
  local out = os.tmpname()
  jit.flush()
  -- every hot counter back to its start (setting hotloop re-initialises
  -- them): each scenario starts from the same state, not from whatever the
  -- scenarios and specs before it left in LuaJIT's address-hashed counters
  jit.opt.start("hotloop=56")
  v.start(out)
  local ok, err = pcall(fn)
  v.off()
  local text = read_all(out)
  os.remove(out)
  assert(ok, err)
  return text
end

-- This LuaJIT names bytecodes by number in NYI messages: add the name.
local bcnames = require("jit.vmdef").bcnames
local function bcname(n)
  n = tonumber(n)
  return (bcnames:sub(n * 6 + 1, n * 6 + 6):gsub("%s+$", ""))
end

local function nyi_lines(log)
  local t = {}
  for line in log:gmatch("[^\n]+") do
    if line:find("NYI", 1, true) then
      t[#t + 1] = line:gsub("NYI: bytecode (%d+)", function(n)
        return ("NYI: bytecode %s (%s)"):format(n, bcname(n))
      end)
    end
  end
  return t
end

-- True when the log has a trace (root or side) that starts at file:line.
local function has_trace_at(log, file, line)
  for l in log:gmatch("[^\n]+") do
    -- [TRACE   3 daemon.lua:246 return]  /  [TRACE   5 (2/22) daemon.lua:273 return]
    local n, rest = l:match("^%[TRACE%s+(%d+)%s+(.*)%]$")
    if n then
      rest = rest:gsub("^%(%S+%)%s+", "")
      local src, ln = rest:match("^(%S-):(%d+)")
      if src and tonumber(ln) == line and (src == file or src:sub(-#file - 1) == "/" .. file) then
        return true
      end
    end
  end
  return false
end

local function explain(log)
  return "\njit.v log:\n" .. log
end

describe("jit: hot Lua paths stay compiled", function()
  local cfg_path, conf

  -- Hooks in the shape the examples and the e2e specs use them.
  local CONFIG = [[
luaray.user { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@e2e", level = 1 }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:1" }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:2" }
luaray.outbound "direct" { type = "direct" }
luaray.outbound "block" { type = "blackhole" }
local blocked = { ["ads.example"] = true }
luaray.on("accept", function(ctx) return ctx.src.ip ~= "192.0.2.1" end)
luaray.on("auth", function(ctx)
  if ctx.user and (luaray.shared.get("used:" .. ctx.user.email) or 0) > 1e15 then
    return false, "quota"
  end
  local u = ctx.user and luaray.usage(ctx.user.email)
  if u and u.conns > 1e9 then return false, "too many" end
end)
luaray.on("route", function(ctx)
  if blocked[ctx.dst.host] then return "block" end
  if ctx.dst.port == 25 then return "block" end
  return nil
end)
luaray.on("connect", function(ctx) luaray.shared.incr("conns") end)
luaray.on("close", function(ctx, s)
  if ctx.user then luaray.shared.incr("used:" .. ctx.user.email, s.up + s.down) end
end)
luaray.on("reload", function(gen) luaray.shared.set("gen", gen) end)
]]

  lazy_setup(function()
    cfg_path = write_tmp(CONFIG)
    conf = C.lr_conf_new()
    assert(conf ~= nil)
    local ok, mask = daemon.load(cfg_path, conf, false)
    assert(ok, mask)
    assert.equal(63, mask) -- all six hooks
  end)

  lazy_teardown(function()
    if conf then C.lr_conf_free(conf) end
    if cfg_path then os.remove(cfg_path) end
  end)

  -- A context as core/net/conn.c fills it; strings are kept alive here.
  local keep = {}
  local function cstr(s)
    local b = ffi.new("char[?]", #s + 1, s)
    keep[#keep + 1] = b
    return b
  end
  local S = {
    ip = cstr("127.0.0.1"), vmess = cstr("vmess-in"), socks = cstr("socks-in"),
    tcp = cstr("tcp"), email = cstr("alice@e2e"), direct = cstr("direct"),
    ads = cstr("ads.example"), host = cstr("example.com"), done = cstr("done"),
    proxy = cstr("127.0.0.2"), ws = cstr("ws"),
  }
  local ctx = ffi.new("struct lr_hook_ctx")

  local function fill(kind, i)
    ffi.fill(ctx, ffi.sizeof(ctx))
    ctx.kind = kind
    ctx.id = i
    ctx.generation = 1
    ctx.src_ip = S.ip
    ctx.src_port = 40000 + i % 1000
    -- the TCP peer: the client itself (C passes the same string), or a
    -- proxy that sent a PROXY header
    if i % 2 == 0 then
      ctx.peer_ip, ctx.peer_port = S.ip, ctx.src_port
    else
      ctx.peer_ip, ctx.peer_port = S.proxy, 50000
    end
    ctx.inbound = (i % 3 == 0) and S.socks or S.vmess
    ctx.network = S.tcp
    ctx.transport = (i % 3 == 0) and S.tcp or S.ws
    if i % 3 == 1 then
      ctx.tls = 1
      ctx.tls_sni = (i % 2 == 0) and S.host or nil
    end
    if kind ~= 0 then
      if i % 3 ~= 0 then
        ctx.user_email = S.email
        ctx.user_level = 1
      end
      ctx.dst_host = (i % 4 == 0) and S.ads or S.host
      ctx.dst_port = (i % 5 == 0) and 25 or 443
    end
    if kind == 3 or kind == 4 then ctx.outbound = S.direct end
    if kind == 4 then
      ctx.up, ctx.down, ctx.duration_ms, ctx.reason = 1000 + i, 2000 + i, 12.5, S.done
    end
  end

  -- The daemon's view: one call from C per event.  Kept out of the JIT
  -- (see the top of this file).
  local function drive(kind, n)
    local verdicts = {}
    for i = 1, n do
      fill(kind, i)
      daemon.call_hook(ctx)
      local v = tonumber(ctx.verdict)
      verdicts[v] = (verdicts[v] or 0) + 1
    end
    return verdicts
  end
  jit.off(drive)
  jit.off(fill)

  local DAEMON = "daemon.lua"
  local call_hook_line = line_of("luaray.daemon", "^function M%.call_hook%(")
  local copy_out_line = line_of("luaray.daemon", "^local function copy_out%(")

  local kinds = {
    { name = "accept", kind = 0, want = { [0] = ROUNDS } },
    { name = "auth", kind = 1 },
    { name = "route", kind = 2, copy_out = true },   -- tags for ads.example / port 25
    { name = "connect", kind = 3 },
    { name = "close", kind = 4 },
  }

  it("luaray.shared and luaray.usage wrappers called from hooks have traces", function()
    -- first in this file: a function whose traces keep aborting is
    -- blacklisted for the rest of the process, so an earlier scenario would
    -- decide this one.  The quota counter exists, as it does in a daemon
    -- that has served traffic (shared.get then returns a number).
    local key = "used:alice@e2e"
    C.lr_shared_delete(key, #key)
    C.lr_shared_incr(key, #key, 12345, ffi.new("double[1]"))
    local log = traced(function()
      drive(1, ROUNDS)   -- auth: shared.get + usage
      drive(4, ROUNDS)   -- close: shared.incr
    end)
    assert.are.same({}, nyi_lines(log), "NYI in the shared/usage wrappers" .. explain(log))
    for _, pat in ipairs { "^function shared%.get%(", "^function shared%.incr%(",
                           "^local function usage%(" } do
      local line = line_of("luaray.daemon", pat)
      assert.is_true(has_trace_at(log, DAEMON, line),
        ("no trace for %s (%s:%d)"):format(pat, DAEMON, line) .. explain(log))
    end
  end)

  for _, k in ipairs(kinds) do
    it(k.name .. " hook: call_hook has a trace from its entry and no NYI", function()
      local verdicts
      local log = traced(function() verdicts = drive(k.kind, ROUNDS) end)
      assert.is_nil(verdicts[3], "hook failures: the scenario itself is broken")
      local nyi = nyi_lines(log)
      assert.are.same({}, nyi, "NYI in the hook path" .. explain(log))
      assert.is_true(has_trace_at(log, DAEMON, call_hook_line),
        ("no trace starts at call_hook (%s:%d)"):format(DAEMON, call_hook_line) .. explain(log))
      if k.copy_out then
        assert.is_true((verdicts[2] or 0) > 0, "route scenario never returned a tag")
        assert.is_true(has_trace_at(log, DAEMON, copy_out_line),
          ("no trace for copy_out (%s:%d)"):format(DAEMON, copy_out_line) .. explain(log))
      end
    end)
  end

  it("reload hook: call_hook and luaray.shared.set compile, no NYI", function()
    local log = traced(function() drive(5, ROUNDS) end)
    assert.are.same({}, nyi_lines(log), "NYI in the reload hook path" .. explain(log))
    assert.is_true(has_trace_at(log, DAEMON, call_hook_line), "no trace at call_hook" .. explain(log))
    local set_line = line_of("luaray.daemon", "^function shared%.set%(")
    assert.is_true(has_trace_at(log, DAEMON, set_line),
      ("no trace for shared.set (%s:%d)"):format(DAEMON, set_line) .. explain(log))
  end)

  it("the hook wrapper gives the same answers compiled as interpreted", function()
    -- a compiled wrapper must not change verdicts: compare with the JIT off
    local on = drive(2, ROUNDS)
    jit.off(daemon.call_hook, true)
    local off = drive(2, ROUNDS)
    jit.on(daemon.call_hook, true)
    assert.are.same(off, on)
    -- ads.example (i % 4 == 0) or port 25 (i % 5 == 0) -> block
    local tagged = 0
    for i = 1, ROUNDS do if i % 4 == 0 or i % 5 == 0 then tagged = tagged + 1 end end
    assert.equal(tagged, on[2])
  end)

  it("rule-related Lua: declaring 2,000 routing rules has no NYI and the rule loops compile", function()
    local lines = {
      'luaray.user { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@e2e" }',
      'luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:1" }',
      'luaray.outbound "direct" { type = "direct" }',
      'luaray.outbound "block" { type = "blackhole" }',
    }
    for i = 1, 2000 do
      lines[#lines + 1] = ('luaray.route { domain_suffix = { "ads%d.example", "Track%d.Example." }, ' ..
        'domain_keyword = { "kw%d" }, ip_cidr = { "10.%d.%d.0/24", "2001:db8:%x::/48" }, ' ..
        'port = "%d-%d,443", user = "alice@e2e", inbound = "vmess-in", network = "tcp", to = "block" }'):format(
        i, i, i, i % 256, i % 200, i, 1000 + i, 1010 + i)
    end
    lines[#lines + 1] = 'luaray.route { default = "direct" }'
    local path = write_tmp(table.concat(lines, "\n") .. "\n")
    local c = C.lr_conf_new()
    local ok, err
    local log = traced(function() ok, err = daemon.load(path, c, false) end)
    C.lr_conf_free(c)
    os.remove(path)
    assert.is_true(ok, err)
    local nyi = nyi_lines(log)
    assert.are.same({}, nyi, "NYI while declaring rules:\n" .. table.concat(nyi, "\n"))
    -- the per-rule loop has a loop per filter inside it, so where LuaJIT
    -- roots its traces (the filter loops, the per-rule body) depends on its
    -- hot counters: require compiled code somewhere in apply()'s rule part
    local from = line_of("luaray.daemon", "^%s*local function each%(kind, list, where%)")
    local to = line_of("luaray.daemon", "^%s*check%(C%.lr_conf_default%(conf")
    local found = false
    for ln = from, to do
      if has_trace_at(log, DAEMON, ln) then found = true break end
    end
    assert.is_true(found, ("no trace in the rule part of apply() (%s:%d-%d)"):format(DAEMON, from, to)
      .. explain(log))
  end)

  it("jit.util sees call_hook as a Lua function the JIT may compile", function()
    -- a guard for the setup above: if call_hook were jit.off'ed (like config
    -- code), every trace check would be meaningless
    local info = jutil.funcinfo(daemon.call_hook)
    assert.is_truthy(info.source and info.source:find("daemon.lua", 1, true))
    assert.equal(call_hook_line, info.linedefined)
  end)
end)
