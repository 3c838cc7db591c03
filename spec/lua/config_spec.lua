-- The config DSL (lua/luaray/config.lua, design.md section 2): the sandbox,
-- every declaration, the normalised result and the exact file:line of every
-- error.  Pure Lua: no FFI, no sockets.
local config = require "luaray.config"

local FIX = "spec/lua/fixtures"
local UUID = "de305d54-75b4-431b-adb2-eb6b9e546014"
local UUID2 = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"

-- The smallest valid config, three lines: lines added by a test start at 4.
local BASE = {
  'luaray.user { id = "' .. UUID .. '", email = "alice@example.com" }',
  'luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:10086" }',
  'luaray.outbound "direct" { type = "direct" }',
}

local function src(...)
  local lines = {}
  for _, l in ipairs(BASE) do lines[#lines + 1] = l end
  for _, l in ipairs({ ... }) do lines[#lines + 1] = l end
  return table.concat(lines, "\n") .. "\n"
end

-- BASE plus the given lines, as "cfg.lua"
local function load(...)
  return config.load_string(src(...), "=cfg.lua")
end

local function ok(...)
  local cfg, err = load(...)
  assert(cfg, err)
  return cfg
end

local function fails(expected, ...)
  local cfg, err = load(...)
  assert.is_nil(cfg)
  assert.equal(expected, err)
end

-- A config without BASE.
local function raw(s, chunkname)
  return config.load_string(s, chunkname or "=cfg.lua")
end

local function raw_fails(expected, s, chunkname)
  local cfg, err = raw(s, chunkname)
  assert.is_nil(cfg)
  assert.equal(expected, err)
end

-- Bytes from hex ("0a000000" -> "\10\0\0\0"): a CIDR's `ip` field.
local function bytes(hex)
  return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

describe("config loading", function()
  it("loads the smallest config and fills in every default", function()
    local cfg = ok()
    assert.same({ level = "info", access = true }, cfg.log)
    assert.same({ { id = UUID, email = "alice@example.com", alter_id = 0, level = 0,
                    where = "cfg.lua:1" } }, cfg.users)
    assert.same({ { tag = "vmess-in", type = "vmess", where = "cfg.lua:2",
                    listen = { host = "127.0.0.1", port = 10086 },
                    handshake_timeout = 60, idle_timeout = 300, max_connections = 0,
                    allow_legacy = false, allow_private = false } }, cfg.inbounds)
    assert.same({ { tag = "direct", type = "direct", where = "cfg.lua:3",
                    connect_timeout = 10, domain_strategy = "as_is" } }, cfg.outbounds)
    assert.same({}, cfg.routes)
    assert.equal("direct", cfg.default_outbound)
    assert.is_nil(cfg.default_where)
    assert.same({}, cfg.hooks)
    assert.same({}, cfg.files) -- a string config reads no file
  end)

  it("parses the design.md example config", function()
    local path = FIX .. "/design_example.lua"
    local cfg, err = config.load(path)
    assert(cfg, err)
    assert.same({ path }, cfg.files)
    assert.same({ level = "info", access = true }, cfg.log)
    assert.equal(1, #cfg.users)
    assert.equal("alice@example.com", cfg.users[1].email)
    assert.equal(path .. ":3", cfg.users[1].where)
    local tags = {}
    for i, ib in ipairs(cfg.inbounds) do tags[i] = ib.tag .. "/" .. ib.type end
    assert.same({ "vmess-in/vmess", "socks-in/socks", "http-in/http" }, tags)
    assert.same({ host = "0.0.0.0", port = 10086 }, cfg.inbounds[1].listen)
    assert.is_true(cfg.inbounds[1].allow_legacy)
    assert.is_false(cfg.inbounds[1].allow_private)
    assert.is_true(cfg.inbounds[2].udp)
    assert.is_nil(cfg.inbounds[3].accounts)
    tags = {}
    for i, ob in ipairs(cfg.outbounds) do tags[i] = ob.tag .. "/" .. ob.type end
    assert.same({ "direct/direct", "block/blackhole", "upstream/vmess" }, tags)
    assert.same({ tag = "upstream", type = "vmess", where = path .. ":14", connect_timeout = 10,
                  server = { host = "203.0.113.5", port = 10086 }, id = UUID, alter_id = 0,
                  security = "aes-128-gcm", masking = true, padding = true,
                  authenticated_length = false, udp = true }, cfg.outbounds[3])
    assert.equal(3, #cfg.routes)
    assert.same({ where = path .. ":20", to = "block", domain_suffix = { "ads.example" } },
                cfg.routes[1])
    assert.same({ where = path .. ":21", to = "block",
                  ip_cidr = { { addr = "10.0.0.0", bits = 8, family = 4, ip = bytes("0a000000") } },
                  port = { { 1, 1024, lo = 1, hi = 1024 } } }, cfg.routes[2])
    assert.same({ where = path .. ":22", to = "direct", user = { "alice@example.com" },
                  inbound = { "vmess-in" }, network = { tcp = true } }, cfg.routes[3])
    assert.equal("direct", cfg.default_outbound)
    assert.equal(path .. ":23", cfg.default_where)
    for _, name in ipairs({ "accept", "auth", "route", "connect", "close", "reload" }) do
      assert.equal("function", type(cfg.hooks[name]), name)
    end
    -- the hooks are real functions over the config's locals
    assert.is_false(cfg.hooks.accept({ src = { ip = "192.0.2.66" } }))
    assert.is_true(cfg.hooks.accept({ src = { ip = "192.0.2.1" } }))
    assert.same({ false, "level too high" }, { cfg.hooks.auth({ user = { level = 10 } }) })
    assert.equal("block", cfg.hooks.route({ dst = { host = "blocked.example" } }))
    assert.is_nil(cfg.hooks.route({ dst = { host = "example.com" } }))
    cfg.hooks.connect({})
    assert.equal(30, cfg.hooks.close({}, { up = 10, down = 20 }))
    assert.same({ 7, 0 }, { cfg.hooks.reload(7) })
  end)

  it("shows the chunk name as the file name", function()
    local bad = src("luaray.bogus()")
    local _, err = config.load_string(bad, "=default")
    assert.equal("default:4: attempt to call field 'bogus' (a nil value)", err)
    _, err = config.load_string(bad, "@default.lua")
    assert.equal("default.lua:4: attempt to call field 'bogus' (a nil value)", err)
    _, err = config.load_string(bad, "plain")
    assert.equal("plain:4: attempt to call field 'bogus' (a nil value)", err)
    _, err = config.load_string(bad)
    assert.equal("config:4: attempt to call field 'bogus' (a nil value)", err)
  end)

  it("keeps long file names whole in Lua's own messages", function()
    local long = string.rep("very-long-directory-name/", 6) .. "config.lua"
    raw_fails(long .. ":2: unexpected symbol near '='", "local a = 1\nlocal b = = 2\n", "@" .. long)
    raw_fails(long .. ":1: attempt to call local 'print' (a string value)",
              "local print = 'x' print()", "@" .. long)
    raw_fails(long .. ":1: undefined global 'nope'", "local x = nope", "@" .. long)
  end)

  it("reports a missing main file without a line", function()
    local cfg, err = config.load(FIX .. "/no-such-file.lua")
    assert.is_nil(cfg)
    assert.equal(FIX .. "/no-such-file.lua: cannot open: No such file or directory", err)
  end)

  it("reports a main file it cannot read", function()
    local cfg, err = config.load(FIX)
    assert.is_nil(cfg)
    assert.equal(FIX .. ": cannot read: Is a directory", err)
  end)

  it("ignores a first line starting with '#', keeping line numbers", function()
    raw_fails("cfg.lua:2: assignment to undeclared global 'x' (use local)", "#!/usr/bin/env luaray\nx = 1\n")
  end)

  it("raises on misuse of its own API", function()
    assert.has_error(function() config.load(nil) end)
    assert.has_error(function() config.load_string(nil) end)
    assert.has_error(function() config.load_string("", 5) end)
  end)

  it("normalises the path it was given", function()
    local cfg, err = config.load("./" .. FIX .. "/include/../design_example.lua")
    assert(cfg, err)
    assert.same({ FIX .. "/design_example.lua" }, cfg.files)
  end)
end)

describe("config errors", function()
  it("reports a syntax error with file and line", function()
    fails("cfg.lua:5: '=' expected near 'oops'", "local a = 1", "a oops")
  end)

  it("reports runtime errors at the failing line", function()
    fails("cfg.lua:4: boom", 'error("boom")')
    fails("cfg.lua:4: boom", 'error("boom", 0)')
    fails("cfg.lua:4: (error object is a table value)", "error({})")
    fails("cfg.lua:4: (error object is a nil value)", "error()")
    fails("cfg.lua:5: attempt to call local 'f' (a nil value)", "local f", "f()")
    fails("cfg.lua:5: assertion failed!", "local function check(v)", "  assert(v)", "end",
          "check(false)")
    -- level 2 blames the caller's line, as in plain Lua
    fails("cfg.lua:7: wrong", "local function check(v)", "  if not v then error('wrong', 2) end",
          "end", "check(false)")
  end)

  it("never repeats the position", function()
    fails("cfg.lua:4: inner", 'error("cfg.lua:4: inner", 0)')
    fails("cfg.lua:5: msg", "local ok, e = pcall(error, 'msg')", "error(e)")
  end)

  it("refuses precompiled chunks", function()
    raw_fails("cfg.lua:1: precompiled (bytecode) configs are refused", string.dump(function() end))
  end)

  it("blames the caller's line through pcall and tail calls", function()
    local cfg = ok(
      "local good, e = pcall(luaray.user, {})",                                         -- 4
      "assert(not good and e == \"cfg.lua:4: missing required key 'id' in user #2\", e)") -- 5
    assert.equal(1, #cfg.users)
    fails("cfg.lua:5: 'id' in user #2 is not a valid UUID",
          "local function f() return luaray.user { id = 'x' } end", "f()")
  end)
end)

describe("config sandbox", function()
  it("hides io, os.execute, loaders, package, debug, ffi and the like", function()
    for _, name in ipairs({ "io", "loadstring", "load", "loadfile", "dofile", "package",
                            "debug", "ffi", "jit", "bit", "module", "setfenv", "getfenv",
                            "collectgarbage", "coroutine", "newproxy", "gcinfo", "_G" }) do
      fails("cfg.lua:4: undefined global '" .. name .. "'", "local x = " .. name)
    end
    fails("cfg.lua:4: attempt to call field 'execute' (a nil value)", "os.execute('true')")
    ok("assert(os.execute == nil and os.remove == nil and os.exit == nil and os.rename == nil)",
       "assert(next({ os.time(), os.clock(), os.date('%Y'), os.getenv('HOME') or '' }))")
  end)

  it("offers the safe standard library", function()
    ok("for _, f in ipairs({ assert, error, ipairs, pairs, next, select, tonumber, tostring,",
       "  type, unpack, pcall, xpcall, setmetatable, getmetatable, rawget, rawset, rawequal,",
       "  print, require, string.format, table.concat, math.floor, os.time }) do",
       "  assert(type(f) == 'function')",
       "end",
       "assert(('%d'):format(3) == '3' and select('#', unpack({ 1, 2 })) == 2)")
  end)

  it("knows only the luaray module", function()
    ok('assert(require "luaray" == luaray and require("luaray").route == luaray.route)')
    fails("cfg.lua:4: module 'ffi' is not available in config scripts (only \"luaray\")",
          'local ffi = require "ffi"')
    fails("cfg.lua:4: module 'io' is not available in config scripts (only \"luaray\")",
          'require "io"')
    fails("cfg.lua:4: module nil is not available in config scripts (only \"luaray\")",
          'require()')
  end)

  it("refuses new globals and assignments to the built-in ones", function()
    fails("cfg.lua:4: assignment to undeclared global 'x' (use local)", "x = 1")
    fails("cfg.lua:5: assignment to undeclared global 'count' (use local)",
          "local function bump()", "  count = 1", "end", "bump()")
    fails("cfg.lua:4: assignment to read-only global 'print'", "print = nil")
    fails("cfg.lua:4: assignment to read-only global 'luaray'", "luaray = {}")
    fails("cfg.lua:4: undefined global 'luaray_typo'", "luaray_typo.route {}")
    ok("local x = 1", "x = x + 1", "local t = {}", "t.field = x")
  end)

  it("gives copies of the library tables", function()
    ok("string.sneaky = true", "table.sneaky = true", "math.sneaky = true")
    assert.is_nil(string.sneaky)
    assert.is_nil(table.sneaky)
    assert.is_nil(math.sneaky)
  end)

  it("keeps the rules inside hooks at run time", function()
    local cfg = ok(
      "luaray.on('connect', function(ctx)",   -- 4
      "  stray = ctx",                        -- 5
      "end)",
      "luaray.on('close', function()",        -- 7
      "  luaray.user { id = '" .. UUID2 .. "' }", -- 8
      "end)",
      "luaray.on('reload', function() return undefined_name end)") -- 10
    local good, err = pcall(cfg.hooks.connect, {})
    assert.is_false(good)
    assert.equal("cfg.lua:5: assignment to undeclared global 'stray' (use local)", err)
    good, err = pcall(cfg.hooks.close)
    assert.is_false(good)
    assert.equal("cfg.lua:8: luaray.user can only be used while the config loads", err)
    good, err = pcall(cfg.hooks.reload)
    assert.is_false(good)
    assert.equal("cfg.lua:10: undefined global 'undefined_name'", err)
  end)

  it("adds the caller's extra luaray fields", function()
    local shared = {}
    local cfg, err = config.load_string(src(
      "assert(luaray.shared)",
      "luaray.on('connect', function() return luaray.shared end)"), "=cfg.lua",
      { luaray = { shared = shared } })
    assert(cfg, err)
    assert.equal(shared, cfg.hooks.connect())
    assert.has_error(function()
      config.load_string(src(), "=cfg.lua", { luaray = { route = print } })
    end)
  end)
end)

describe("luaray.log", function()
  it("takes a level and an access log setting", function()
    for _, level in ipairs({ "debug", "info", "warn", "error" }) do
      assert.equal(level, ok('luaray.log { level = "' .. level .. '" }').log.level)
    end
    assert.same({ level = "info", access = false }, ok("luaray.log { access = false }").log)
    assert.same({ level = "warn", access = "/var/log/luaray.log" },
                ok('luaray.log { level = "warn", access = "/var/log/luaray.log" }').log)
    assert.same({ level = "info", access = true }, ok("luaray.log {}").log)
  end)

  it("refuses bad values, unknown keys and a second call", function()
    fails("cfg.lua:4: 'level' in log must be one of debug, info, warn, error, got string \"verbose\"",
          'luaray.log { level = "verbose" }')
    fails("cfg.lua:4: 'access' in log must be true, false or a file path, got number 1",
          "luaray.log { access = 1 }")
    fails("cfg.lua:4: 'access' in log must be true, false or a file path, got string \"\"",
          'luaray.log { access = "" }')
    fails("cfg.lua:4: unknown key 'levle' in log", 'luaray.log { levle = "info" }')
    fails("cfg.lua:5: luaray.log is called twice (first at cfg.lua:4)",
          "luaray.log {}", "luaray.log {}")
    fails("cfg.lua:4: luaray.log expects a table, got string \"info\"", 'luaray.log "info"')
    fails("cfg.lua:4: unexpected positional value [1] in log (use key = value)",
          'luaray.log { "info" }')
  end)
end)

describe("sniffed_used", function()
  it("is true when any config file mentions sniffed (hooks then get ctx.sniffed)", function()
    assert.is_false(ok().sniffed_used)
    assert.is_false(ok('luaray.on("route", function(ctx) return nil end)').sniffed_used)
    assert.is_true(ok('luaray.on("route", function(ctx) return ctx.sniffed and nil end)').sniffed_used)
    assert.is_true(ok("-- reads ctx.sniffed in a helper").sniffed_used)
  end)
end)

describe("luaray.workers", function()
  it("takes 1..64 or \"auto\"; 1 by default", function()
    assert.equal(1, ok().workers)
    assert.is_nil(ok().workers_where)
    assert.equal(4, ok("luaray.workers(4)").workers)
    assert.equal("cfg.lua:4", ok("luaray.workers(4)").workers_where)
    assert.equal(64, ok("luaray.workers(64)").workers)
    assert.equal("auto", ok('luaray.workers "auto"').workers)
  end)

  it("refuses other values, a second call, and several workers with dynamic_port", function()
    for _, v in ipairs { "0", "65", "1.5", "-1", '"two"', "{}", "nil" } do
      local want = ("cfg.lua:4: luaray.workers expects an integer 1..64 or \"auto\", got %s"):format(
        v == '"two"' and 'string "two"' or v == "{}" and "table" or v == "nil" and "nil"
        or "number " .. v)
      local _, err = load("luaray.workers(" .. v .. ")")
      assert.equal(want, err)
    end
    fails("cfg.lua:5: luaray.workers is called twice (first at cfg.lua:4)",
          "luaray.workers(2)", "luaray.workers(2)")
    local dyn = 'luaray.inbound "dyn" { type = "vmess", listen = "127.0.0.1:10087", ' ..
                'dynamic_port = { port = "40000-40100" } }'
    fails("cfg.lua:5: luaray.workers: inbound 'dyn' (cfg.lua:4) has dynamic_port, " ..
          "which needs a single worker", dyn, "luaray.workers(2)")
    fails("cfg.lua:4: luaray.workers: inbound 'dyn' (cfg.lua:5) has dynamic_port, " ..
          "which needs a single worker", 'luaray.workers "auto"', dyn)
    assert.equal(1, ok(dyn, "luaray.workers(1)").workers)
  end)
end)

describe("luaray.metrics", function()
  it("takes a listen address and an optional bearer token", function()
    assert.is_nil(ok().metrics)
    local m = ok('luaray.metrics { listen = "127.0.0.1:9100" }').metrics
    assert.same({ host = "127.0.0.1", port = 9100, where = "cfg.lua:4", key = "127.0.0.1:9100",
                  listen = "127.0.0.1:9100" }, m)
    m = ok('luaray.metrics { listen = "[::1]:9100", token = "a-b.c_d~e+f/g=" }').metrics
    assert.equal("::1", m.host)
    assert.equal("a-b.c_d~e+f/g=", m.token)
  end)

  it("refuses a missing or bad listen, a bad token, unknown keys, a second call and an " ..
     "address an inbound uses", function()
    fails("cfg.lua:4: missing required key 'listen' in metrics", 'luaray.metrics {}')
    fails('cfg.lua:4: \'listen\' in metrics must be "host:port" (IPv6 in brackets, port 1-65535), ' ..
          'got string "9100"', 'luaray.metrics { listen = "9100" }')
    fails("cfg.lua:4: 'token' in metrics must be 1-256 characters of A-Z a-z 0-9 -._~+/= " ..
          "(a bearer token)", 'luaray.metrics { listen = "127.0.0.1:9100", token = "a b" }')
    fails("cfg.lua:4: 'token' in metrics must be 1-256 characters of A-Z a-z 0-9 -._~+/= " ..
          "(a bearer token)", 'luaray.metrics { listen = "127.0.0.1:9100", token = "" }')
    local _, err = load('luaray.metrics { listen = "127.0.0.1:9100", path = "/m" }')
    assert.matches("^cfg.lua:4: .*path", err)
    fails("cfg.lua:5: luaray.metrics is called twice (first at cfg.lua:4)",
          'luaray.metrics { listen = "127.0.0.1:9100" }', 'luaray.metrics { listen = "127.0.0.1:9101" }')
    fails("cfg.lua:4: metrics listen address '127.0.0.1:10086' is already used by inbound " ..
          "'vmess-in' (cfg.lua:2)", 'luaray.metrics { listen = "127.0.0.1:10086" }')
  end)
end)

describe("luaray.cluster", function()
  it("takes a Redis address and fills in the defaults (design.md 8)", function()
    assert.is_nil(ok().cluster)
    local k = ok('luaray.cluster { redis = "127.0.0.1:6379", node = "node-a" }').cluster
    assert.same({ host = "127.0.0.1", port = 6379, db = 0, prefix = "luaray:", node = "node-a",
                  timeout_ms = 50, where = "cfg.lua:4" }, k)
    k = ok('luaray.cluster { redis = "[::1]:7000", password = "s3cret pw", db = 3, ' ..
           'prefix = "fleet{1}:", node = "n.1_x", timeout_ms = 200 }').cluster
    assert.equal("::1", k.host)
    assert.equal(7000, k.port)
    assert.equal("s3cret pw", k.password)
    assert.equal(3, k.db)
    assert.equal("fleet{1}:", k.prefix)
    assert.equal(200, k.timeout_ms)
    -- without a node name: the host name, made safe
    local n = ok('luaray.cluster { redis = "127.0.0.1:6379" }').cluster.node
    assert.matches("^[%w%-%._]+$", n)
  end)

  it("refuses a host name, bad values, unknown keys and a second call; never echoes the password",
    function()
    fails("cfg.lua:4: missing required key 'redis' in cluster", "luaray.cluster {}")
    fails('cfg.lua:4: \'redis\' in cluster must be "IP:port" (an IPv4 address or [IPv6]; no host ' ..
          'names), got string "redis.local:6379"', 'luaray.cluster { redis = "redis.local:6379" }')
    fails('cfg.lua:4: \'redis\' in cluster must be "IP:port" (an IPv4 address or [IPv6]; no host ' ..
          'names), got string "127.0.0.1"', 'luaray.cluster { redis = "127.0.0.1" }')
    local _, err = load('luaray.cluster { redis = "127.0.0.1:6379", password = "bad\\npw-x" }')
    assert.equal("cfg.lua:4: 'password' in cluster must be a string of 1-512 bytes without " ..
                 "control characters", err)
    assert.falsy(err:find("pw-x", 1, true))
    fails("cfg.lua:4: 'db' in cluster must be an integer from 0 to 65535, got number -1",
          'luaray.cluster { redis = "127.0.0.1:6379", db = -1 }')
    fails("cfg.lua:4: 'timeout_ms' in cluster must be an integer from 1 to 10000, got number 0",
          'luaray.cluster { redis = "127.0.0.1:6379", timeout_ms = 0 }')
    fails("cfg.lua:4: 'node' in cluster must be 1-64 characters of A-Z a-z 0-9 -._, got " ..
          'string "a b"', 'luaray.cluster { redis = "127.0.0.1:6379", node = "a b" }')
    fails("cfg.lua:4: 'prefix' in cluster must be at most 64 characters of A-Z a-z 0-9 -._:/{}, " ..
          'got string "a b"', 'luaray.cluster { redis = "127.0.0.1:6379", prefix = "a b" }')
    fails("cfg.lua:4: unknown key 'host' in cluster", 'luaray.cluster { redis = "127.0.0.1:6379", host = 1 }')
    fails("cfg.lua:5: luaray.cluster is called twice (first at cfg.lua:4)",
          'luaray.cluster { redis = "127.0.0.1:6379" }', 'luaray.cluster { redis = "127.0.0.1:6380" }')
  end)
end)

describe("luaray.user", function()
  it("normalises ids and fills in defaults", function()
    local cfg = ok(
      'luaray.user { id = "0B1C2D3E4F5046178293A4B5C6D7E8F9", alter_id = 64, level = 255 }',
      'luaray.user { id = "11111111-2222-3333-4444-555555555555", email = "carol" }',
      'luaray.user { id = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE" }')
    assert.same({ id = UUID2, email = "user2", alter_id = 64, level = 255, where = "cfg.lua:4" },
                cfg.users[2])
    assert.equal("carol", cfg.users[3].email)
    assert.same({ id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", email = "user4", alter_id = 0,
                  level = 0, where = "cfg.lua:6" }, cfg.users[4])
  end)

  it("requires a valid id and never echoes it", function()
    fails("cfg.lua:4: missing required key 'id' in user #2", 'luaray.user { email = "bob" }')
    for _, bad in ipairs({ "de305d54-75b4-431b-adb2-eb6b9e54601", "de305d54-75b4-431b-adb2-eb6b9e5460145",
                           "de305d5475b4431badb2eb6b9e54601g", "de305d54-75b4-431b-adb2eb6b9e546014a",
                           "de305d5-475b4-431b-adb2-eb6b9e546014", "" }) do
      fails("cfg.lua:4: 'id' in user #2 is not a valid UUID", 'luaray.user { id = "' .. bad .. '" }')
    end
    fails("cfg.lua:4: 'id' in user #2 is not a valid UUID", "luaray.user { id = 42 }")
  end)

  it("checks alter_id, level and email", function()
    local u = 'luaray.user { id = "' .. UUID2 .. '", '
    fails("cfg.lua:4: 'alter_id' in user #2 must be an integer from 0 to 65535, got number 65536",
          u .. "alter_id = 65536 }")
    fails("cfg.lua:4: 'alter_id' in user #2 must be an integer from 0 to 65535, got number -1",
          u .. "alter_id = -1 }")
    fails("cfg.lua:4: 'alter_id' in user #2 must be an integer from 0 to 65535, got number 1.5",
          u .. "alter_id = 1.5 }")
    fails("cfg.lua:4: 'alter_id' in user #2 must be an integer from 0 to 65535, got string \"4\"",
          u .. 'alter_id = "4" }')
    fails("cfg.lua:4: 'level' in user #2 must be an integer from 0 to 255, got number 256",
          u .. "level = 256 }")
    fails("cfg.lua:4: 'email' in user #2 must be a non-empty string (at most 255 bytes, no control characters), got string \"\"",
          u .. 'email = "" }')
    fails("cfg.lua:4: 'email' in user #2 must be a non-empty string (at most 255 bytes, no control characters), got boolean true",
          u .. "email = true }")
    fails("cfg.lua:4: unknown key 'mail' in user #2", u .. 'mail = "bob" }')
    fails("cfg.lua:4: luaray.user expects a table, got string \"bob\"", 'luaray.user "bob"')
  end)

  it("refuses duplicate ids and emails", function()
    fails("cfg.lua:4: user #2 has the same id as user 'alice@example.com' (cfg.lua:1)",
          'luaray.user { id = "' .. UUID:upper() .. '", email = "bob" }')
    fails("cfg.lua:4: duplicate user email 'alice@example.com' (first declared at cfg.lua:1)",
          'luaray.user { id = "' .. UUID2 .. '", email = "alice@example.com" }')
    -- a default email counts too
    fails("cfg.lua:5: duplicate user email 'user2' (first declared at cfg.lua:4)",
          'luaray.user { id = "' .. UUID2 .. '" }',
          'luaray.user { id = "11111111-2222-3333-4444-555555555555", email = "user2" }')
  end)
end)

describe("luaray.inbound", function()
  it("accepts every listen form", function()
    local cases = {
      { "127.0.0.1:1080", "127.0.0.1", 1080 },
      { "0.0.0.0:10087", "0.0.0.0", 10087 },
      { "[::1]:1080", "::1", 1080 },
      { "[::]:10086", "::", 10086 },
      { "localhost:1081", "localhost", 1081 },
      { "[2001:DB8::1]:65535", "2001:DB8::1", 65535 },
      { "[::ffff:192.0.2.1]:1", "::ffff:192.0.2.1", 1 },
      { "proxy-1.example.com:8080", "proxy-1.example.com", 8080 },
    }
    for _, c in ipairs(cases) do
      local cfg = ok('luaray.inbound "in" { type = "socks", listen = "' .. c[1] .. '" }')
      assert.same({ host = c[2], port = c[3] }, cfg.inbounds[2].listen, c[1])
    end
  end)

  it("refuses bad listen addresses", function()
    for _, bad in ipairs({ "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":1080", "::1:1080",
                           "[::1]", "[::1]:", "256.1.1.1:80", "1.2.3:80", "01.2.3.4:80",
                           "[::g]:80", "[1:2:3:4:5:6:7:8:9]:80", "[1::2::3]:80", "a b:80",
                           "host:80x", "host:-1", "[127.0.0.1]:80", "host..x:80" }) do
      fails("cfg.lua:4: 'listen' in inbound 'in' must be \"host:port\" (IPv6 in brackets, port 1-65535), got string \"" .. bad .. "\"",
            'luaray.inbound "in" { type = "socks", listen = "' .. bad .. '" }')
    end
    fails("cfg.lua:4: 'listen' in inbound 'in' must be \"host:port\" (IPv6 in brackets, port 1-65535), got number 1080",
          'luaray.inbound "in" { type = "socks", listen = 1080 }')
    fails("cfg.lua:4: missing required key 'listen' in inbound 'in'",
          'luaray.inbound "in" { type = "socks" }')
  end)

  it("fills in per-type defaults", function()
    local cfg = ok('luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }',
                   'luaray.inbound "http-in" { type = "http", listen = "127.0.0.1:8080" }')
    assert.same({ tag = "socks-in", type = "socks", where = "cfg.lua:4",
                  listen = { host = "127.0.0.1", port = 1080 }, handshake_timeout = 10,
                  idle_timeout = 300, max_connections = 0, udp = false }, cfg.inbounds[2])
    assert.same({ tag = "http-in", type = "http", where = "cfg.lua:5",
                  listen = { host = "127.0.0.1", port = 8080 }, handshake_timeout = 10,
                  idle_timeout = 300, max_connections = 0 }, cfg.inbounds[3])
  end)

  it("takes the vmess keys", function()
    local cfg = ok(
      'luaray.user { id = "' .. UUID2 .. '", email = "bob" }',
      'luaray.inbound "v2" { type = "vmess", listen = "[::]:10086", allow_legacy = false,',
      '  allow_private = true, users = { "bob", "alice@example.com" },',
      '  dynamic_port = { port = "40000-40100", alter_id = 32, minutes = 10 },',
      '  handshake_timeout = 2.5, idle_timeout = 60, max_connections = 100 }',
      'luaray.inbound "v3" { type = "vmess", listen = "[::]:10087", users = "bob",',
      '  dynamic_port = { port = 40200 } }')
    assert.same({ tag = "v2", type = "vmess", where = "cfg.lua:5",
                  listen = { host = "::", port = 10086 }, allow_legacy = false, allow_private = true,
                  users = { "bob", "alice@example.com" },
                  dynamic_port = { port = { 40000, 40100, lo = 40000, hi = 40100 },
                                   alter_id = 32, minutes = 10 },
                  handshake_timeout = 2.5, idle_timeout = 60, max_connections = 100 },
                cfg.inbounds[2])
    assert.same({ "bob" }, cfg.inbounds[3].users)
    assert.same({ port = { 40200, 40200, lo = 40200, hi = 40200 }, alter_id = 0, minutes = 5 },
                cfg.inbounds[3].dynamic_port)
  end)

  it("checks the vmess keys", function()
    local v = 'luaray.inbound "v2" { type = "vmess", listen = "127.0.0.1:10087", '
    fails("cfg.lua:4: 'allow_legacy' in inbound 'v2' must be a boolean, got string \"yes\"",
          v .. 'allow_legacy = "yes" }')
    fails("cfg.lua:4: 'allow_private' in inbound 'v2' must be a boolean, got number 1",
          v .. "allow_private = 1 }")
    fails("cfg.lua:4: 'users' in inbound 'v2' is an empty list", v .. "users = {} }")
    fails("cfg.lua:4: 'users' in inbound 'v2' must be a list of user emails, got number 3",
          v .. "users = 3 }")
    fails("cfg.lua:4: 'users' in inbound 'v2' must be a list of user emails; element 2 is number 5",
          v .. 'users = { "alice@example.com", 5 } }')
    fails("cfg.lua:4: 'users' in inbound 'v2' names unknown user 'bob'", v .. 'users = { "bob" } }')
    fails("cfg.lua:4: 'dynamic_port' in inbound 'v2' must be a table { port = ..., ... }, got string \"1-2\"",
          v .. 'dynamic_port = "1-2" }')
    fails("cfg.lua:4: missing required key 'port' in dynamic_port of inbound 'v2'",
          v .. "dynamic_port = { minutes = 3 } }")
    fails("cfg.lua:4: 'port' in dynamic_port of inbound 'v2' must be a port (1-65535) or a range \"lo-hi\", got string \"5-1\"",
          v .. 'dynamic_port = { port = "5-1" } }')
    fails("cfg.lua:4: 'minutes' in dynamic_port of inbound 'v2' must be an integer from 1 to 255, got number 0",
          v .. "dynamic_port = { port = 40000, minutes = 0 } }")
    fails("cfg.lua:4: 'minutes' in dynamic_port of inbound 'v2' must be an integer from 1 to 255, got number 256",
          v .. "dynamic_port = { port = 40000, minutes = 256 } }")
    fails("cfg.lua:4: 'alter_id' in dynamic_port of inbound 'v2' must be an integer from 0 to 65535, got number -1",
          v .. "dynamic_port = { port = 40000, alter_id = -1 } }")
    fails("cfg.lua:4: unknown key 'ports' in dynamic_port of inbound 'v2'",
          v .. "dynamic_port = { ports = 40000 } }")
    fails("cfg.lua:4: unknown key 'udp' in inbound 'v2'", v .. "udp = true }")
  end)

  it("refuses a vmess inbound when no user exists", function()
    raw_fails("cfg.lua:1: vmess inbound 'v' has no users to accept (declare one with luaray.user)",
              'luaray.inbound "v" { type = "vmess", listen = "127.0.0.1:1" }\n' ..
              'luaray.outbound "d" { type = "direct" }\n')
  end)

  it("takes socks and http accounts", function()
    local cfg = ok(
      'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:1080", udp = true,',
      '  accounts = { { user = "u", pass = "p" }, { user = "v", pass = "q" } } }',
      'luaray.inbound "h" { type = "http", listen = "127.0.0.1:8080",',
      '  accounts = { { user = "u", pass = "p" } }, idle_timeout = 30 }')
    assert.is_true(cfg.inbounds[2].udp)
    assert.same({ { user = "u", pass = "p" }, { user = "v", pass = "q" } }, cfg.inbounds[2].accounts)
    assert.same({ { user = "u", pass = "p" } }, cfg.inbounds[3].accounts)
    assert.equal(30, cfg.inbounds[3].idle_timeout)
  end)

  it("checks accounts and never echoes a password", function()
    local s = 'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:1080", '
    fails("cfg.lua:4: 'udp' in inbound 's' must be a boolean, got string \"true\"", s .. 'udp = "true" }')
    fails("cfg.lua:4: 'accounts' in inbound 's' is an empty list", s .. "accounts = {} }")
    fails("cfg.lua:4: 'accounts' in inbound 's' must be a list of { user = ..., pass = ... }, got string \"u:p\"",
          s .. 'accounts = "u:p" }')
    fails("cfg.lua:4: 'accounts' in inbound 's' must be a list of { user = ..., pass = ... } (no keys or holes), got table",
          s .. 'accounts = { user = "u", pass = "p" } }')
    fails("cfg.lua:4: accounts[1] of inbound 's' must be a table { user = ..., pass = ... }, got string \"u\"",
          s .. 'accounts = { "u" } }')
    fails("cfg.lua:4: missing required key 'pass' in accounts[1] of inbound 's'",
          s .. 'accounts = { { user = "u" } } }')
    fails("cfg.lua:4: missing required key 'user' in accounts[2] of inbound 's'",
          s .. 'accounts = { { user = "u", pass = "p" }, { pass = "p" } } }')
    fails("cfg.lua:4: 'pass' in accounts[1] of inbound 's' must be a string of 1 to 255 bytes",
          s .. 'accounts = { { user = "u", pass = "" } } }')
    fails("cfg.lua:4: 'pass' in accounts[1] of inbound 's' must be a string of 1 to 255 bytes",
          s .. 'accounts = { { user = "u", pass = string.rep("x", 256) } } }')
    fails("cfg.lua:4: 'user' in accounts[1] of inbound 's' must be a non-empty string (at most 255 bytes, no control characters), got number 1",
          s .. 'accounts = { { user = 1, pass = "p" } } }')
    fails("cfg.lua:4: unknown key 'password' in accounts[1] of inbound 's'",
          s .. 'accounts = { { user = "u", password = "p" } } }')
    fails("cfg.lua:4: duplicate account user 'u' in inbound 's'",
          s .. 'accounts = { { user = "u", pass = "p" }, { user = "u", pass = "q" } } }')
    fails("cfg.lua:4: unknown key 'udp' in inbound 'h'",
          'luaray.inbound "h" { type = "http", listen = "127.0.0.1:8080", udp = true }')
    fails("cfg.lua:4: unknown key 'users' in inbound 'h'",
          'luaray.inbound "h" { type = "http", listen = "127.0.0.1:8080", users = "bob" }')
  end)

  it("checks the common keys", function()
    local s = 'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:1080", '
    local secs = "must be a number of seconds > 0 and <= 2592000"
    fails("cfg.lua:4: 'handshake_timeout' in inbound 's' " .. secs .. ", got number 0",
          s .. "handshake_timeout = 0 }")
    fails("cfg.lua:4: 'handshake_timeout' in inbound 's' " .. secs .. ", got string \"10\"",
          s .. 'handshake_timeout = "10" }')
    fails("cfg.lua:4: 'idle_timeout' in inbound 's' " .. secs .. ", got number -1",
          s .. "idle_timeout = -1 }")
    fails("cfg.lua:4: 'idle_timeout' in inbound 's' " .. secs .. ", got number inf",
          s .. "idle_timeout = math.huge }")
    fails("cfg.lua:4: 'max_connections' in inbound 's' must be an integer from 0 to 2147483647, got number -1",
          s .. "max_connections = -1 }")
    fails("cfg.lua:4: 'max_connections' in inbound 's' must be an integer from 0 to 2147483647, got number 1.5",
          s .. "max_connections = 1.5 }")
  end)

  it("checks the declaration itself", function()
    fails("cfg.lua:4: unknown key 'lisen' in inbound 'socks-in'",
          'luaray.inbound "socks-in" { type = "socks", lisen = "127.0.0.1:1080" }')
    fails("cfg.lua:4: missing required key 'type' in inbound 'x'",
          'luaray.inbound "x" { listen = "127.0.0.1:1080" }')
    fails("cfg.lua:4: 'type' in inbound 'x' must be one of vmess, socks, http, tunnel, tproxy, redirect, got string \"ss\"",
          'luaray.inbound "x" { type = "ss", listen = "127.0.0.1:1080" }')
    fails("cfg.lua:4: luaray.inbound expects a tag string first: luaray.inbound \"tag\" { type = ... }, got table",
          'luaray.inbound { type = "socks", listen = "127.0.0.1:1080" }')
    fails("cfg.lua:4: luaray.inbound expects a tag string first: luaray.inbound \"tag\" { type = ... }, got string \"\"",
          'luaray.inbound "" { type = "socks", listen = "127.0.0.1:1080" }')
    fails("cfg.lua:4: luaray.inbound 'x' expects a table, got string \"socks\"", 'luaray.inbound "x" "socks"')
    fails("cfg.lua:4: luaray.inbound 'x' has no table: write luaray.inbound \"x\" { type = ... }",
          'luaray.inbound "x"')
    fails("cfg.lua:5: luaray.inbound 'x' is given a second table",
          'local f = luaray.inbound "x"', 'f { type = "socks", listen = "127.0.0.1:1" } f {}')
  end)

  it("also takes the tag and table as two arguments", function()
    local cfg = ok('luaray.inbound("s", { type = "socks", listen = "127.0.0.1:1080" })')
    assert.equal("s", cfg.inbounds[2].tag)
  end)

  it("records the line where the table starts", function()
    local cfg = ok('luaray.inbound "s"', '{', '  type = "socks",', '  listen = "127.0.0.1:1080",', '}')
    assert.equal("cfg.lua:5", cfg.inbounds[2].where)
  end)

  it("refuses duplicate tags and listen addresses", function()
    fails("cfg.lua:4: duplicate inbound tag 'vmess-in' (first declared at cfg.lua:2)",
          'luaray.inbound "vmess-in" { type = "socks", listen = "127.0.0.1:1080" }')
    fails("cfg.lua:4: listen address '127.0.0.1:10086' of inbound 's' is already used by inbound 'vmess-in' (cfg.lua:2)",
          'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:10086" }')
    fails("cfg.lua:5: listen address '[0:0::1]:1080' of inbound 'b' is already used by inbound 'a' (cfg.lua:4)",
          'luaray.inbound "a" { type = "socks", listen = "[::1]:1080" }',
          'luaray.inbound "b" { type = "http", listen = "[0:0::1]:1080" }')
    fails("cfg.lua:5: listen address 'LOCALHOST:1080' of inbound 'b' is already used by inbound 'a' (cfg.lua:4)",
          'luaray.inbound "a" { type = "socks", listen = "localhost:1080" }',
          'luaray.inbound "b" { type = "http", listen = "LOCALHOST:1080" }')
    -- the same port on other addresses is not a duplicate
    assert.equal(3, #ok('luaray.inbound "a" { type = "socks", listen = "127.0.0.2:10086" }',
                        'luaray.inbound "b" { type = "socks", listen = "[::1]:10086" }').inbounds)
  end)
end)

describe("luaray.outbound", function()
  it("fills in the vmess defaults and normalises", function()
    local cfg = ok('luaray.outbound "up" { type = "vmess", server = "[2001:db8::5]:443",',
                   '  id = "' .. UUID:upper():gsub("-", "") .. '" }')
    assert.same({ tag = "up", type = "vmess", where = "cfg.lua:4", connect_timeout = 10,
                  server = { host = "2001:db8::5", port = 443 }, id = UUID, alter_id = 0,
                  security = "auto", masking = true, padding = true,
                  authenticated_length = false, udp = true }, cfg.outbounds[2])
  end)

  it("takes every vmess key", function()
    for _, sec in ipairs({ "aes-128-gcm", "chacha20-poly1305", "none", "zero", "aes-128-cfb", "auto" }) do
      local cfg = ok('luaray.outbound "up" { type = "vmess", server = "vmess.example:10086",',
                     '  id = "' .. UUID .. '", security = "' .. sec .. '", alter_id = 4,',
                     '  masking = true, padding = false, authenticated_length = true, udp = false,',
                     '  connect_timeout = 3 }')
      local ob = cfg.outbounds[2]
      assert.equal(sec, ob.security)
      assert.same({ 4, true, false, true, false, 3 },
                  { ob.alter_id, ob.masking, ob.padding, ob.authenticated_length, ob.udp,
                    ob.connect_timeout })
      assert.same({ host = "vmess.example", port = 10086 }, ob.server)
    end
    -- padding follows masking unless given
    local ob = ok('luaray.outbound "up" { type = "vmess", server = "h:1", id = "' .. UUID .. '",',
                  '  masking = false }').outbounds[2]
    assert.is_false(ob.masking)
    assert.is_false(ob.padding)
  end)

  it("checks the vmess keys", function()
    local o = 'luaray.outbound "up" { type = "vmess", '
    local id = 'id = "' .. UUID .. '", '
    fails("cfg.lua:4: missing required key 'server' in outbound 'up'", o .. id .. "}")
    fails("cfg.lua:4: missing required key 'id' in outbound 'up'", o .. 'server = "h:1" }')
    fails("cfg.lua:4: 'id' in outbound 'up' is not a valid UUID", o .. 'server = "h:1", id = "nope" }')
    fails("cfg.lua:4: 'server' in outbound 'up' must be \"host:port\" (IPv6 in brackets, port 1-65535), got string \"h\"",
          o .. id .. 'server = "h" }')
    fails("cfg.lua:4: 'security' in outbound 'up' must be one of aes-128-gcm, chacha20-poly1305, none, zero, aes-128-cfb, auto, got string \"aes-256-gcm\"",
          o .. id .. 'server = "h:1", security = "aes-256-gcm" }')
    fails("cfg.lua:4: 'alter_id' in outbound 'up' must be an integer from 0 to 65535, got number 70000",
          o .. id .. 'server = "h:1", alter_id = 70000 }')
    fails("cfg.lua:4: 'masking' in outbound 'up' must be a boolean, got number 1",
          o .. id .. 'server = "h:1", masking = 1 }')
    fails("cfg.lua:4: 'padding' in outbound 'up' needs 'masking' (padding without masking is refused by VMess servers)",
          o .. id .. 'server = "h:1", masking = false, padding = true }')
    fails("cfg.lua:4: 'authenticated_length' in outbound 'up' must be a boolean, got string \"no\"",
          o .. id .. 'server = "h:1", authenticated_length = "no" }')
    fails("cfg.lua:4: 'udp' in outbound 'up' must be a boolean, got number 0",
          o .. id .. 'server = "h:1", udp = 0 }')
    fails("cfg.lua:4: unknown key 'domain_strategy' in outbound 'up'",
          o .. id .. 'server = "h:1", domain_strategy = "ipv4" }')
  end)

  it("takes the direct and blackhole keys", function()
    local cfg = ok('luaray.outbound "d4" { type = "direct", domain_strategy = "ipv4" }',
                   'luaray.outbound "d6" { type = "direct", domain_strategy = "ipv6", connect_timeout = 0.5 }',
                   'luaray.outbound "b" { type = "blackhole" }')
    assert.equal("ipv4", cfg.outbounds[2].domain_strategy)
    assert.same({ tag = "d6", type = "direct", where = "cfg.lua:5", connect_timeout = 0.5,
                  domain_strategy = "ipv6" }, cfg.outbounds[3])
    assert.same({ tag = "b", type = "blackhole", where = "cfg.lua:6", connect_timeout = 10 },
                cfg.outbounds[4])
    fails("cfg.lua:4: 'domain_strategy' in outbound 'd' must be one of as_is, ipv4, ipv6, got string \"prefer_ipv4\"",
          'luaray.outbound "d" { type = "direct", domain_strategy = "prefer_ipv4" }')
    fails("cfg.lua:4: unknown key 'domain_strategy' in outbound 'b'",
          'luaray.outbound "b" { type = "blackhole", domain_strategy = "ipv4" }')
    fails("cfg.lua:4: 'connect_timeout' in outbound 'b' must be a number of seconds > 0 and <= 2592000, got number 0",
          'luaray.outbound "b" { type = "blackhole", connect_timeout = 0 }')
  end)

  it("checks the declaration itself", function()
    fails("cfg.lua:4: missing required key 'type' in outbound 'x'", 'luaray.outbound "x" {}')
    fails("cfg.lua:4: 'type' in outbound 'x' must be one of direct, blackhole, vmess, got string \"freedom\"",
          'luaray.outbound "x" { type = "freedom" }')
    fails("cfg.lua:4: unknown key 'sever' in outbound 'x'", 'luaray.outbound "x" { type = "direct", sever = 1 }')
    fails("cfg.lua:4: luaray.outbound expects a tag string first: luaray.outbound \"tag\" { type = ... }, got nil",
          "luaray.outbound()")
    fails("cfg.lua:4: luaray.outbound 'x' has no table: write luaray.outbound \"x\" { type = ... }",
          'local pending = luaray.outbound "x"')
  end)

  it("keeps outbound tags in their own namespace", function()
    fails("cfg.lua:4: duplicate outbound tag 'direct' (first declared at cfg.lua:3)",
          'luaray.outbound "direct" { type = "blackhole" }')
    local cfg = ok('luaray.outbound "vmess-in" { type = "blackhole" }')
    assert.equal("vmess-in", cfg.outbounds[2].tag)
  end)
end)

describe("luaray.route", function()
  local FORMS = "domain names or v2ray's forms (full:NAME, domain:NAME, keyword:TEXT, " ..
    "regexp:RE, dotless:TEXT, geosite:LIST, ext:FILE:LIST)"
  local function route(filters)
    return ok("luaray.route { " .. filters .. ", to = 'direct' }").routes[1]
  end

  it("normalises domain filters", function()
    assert.same({ "example.com", "a-b_c.example" },
                route('domain = { "Example.COM.", "a-b_c.example" }').domain)
    assert.same({ "ads.example", "example" }, route('domain_suffix = { ".ads.example", "EXAMPLE" }').domain_suffix)
    assert.same({ "track" }, route('domain_keyword = "TRACK"').domain_keyword)
    assert.same({ "192.168.1.1" }, route('domain = "192.168.1.1"').domain)
    for _, bad in ipairs({ "", ".", "a..b", "a b", "bad/name", "x" .. string.rep("y", 63) }) do
      fails("cfg.lua:4: 'domain' in route must be a list of " .. FORMS .. "; element 1 is " ..
            (#bad > 40 and "a string" or string.format("string %q", bad)),
            "luaray.route { domain = { '" .. bad .. "' }, to = 'direct' }")
    end
    -- names outside ASCII must be given in their xn-- form
    fails("cfg.lua:4: 'domain' in route must be a list of " .. FORMS .. "; element 1 is string \"b\195\188cher.example\"",
          "luaray.route { domain = 'b\195\188cher.example', to = 'direct' }")
    assert.same({ "xn--bcher-kva.example" }, route('domain = "xn--bcher-kva.example"').domain)
    fails("cfg.lua:4: 'domain_suffix' in route must be a list of domain names; element 2 is number 3",
          "luaray.route { domain_suffix = { 'a', 3 }, to = 'direct' }")
    fails("cfg.lua:4: 'domain_keyword' in route must be a list of non-empty strings; element 1 is string \"\"",
          "luaray.route { domain_keyword = '', to = 'direct' }")
  end)

  it("parses and normalises ip_cidr", function()
    -- ip: the canonical address as bytes, what daemon.lua hands to C
    assert.same({ { addr = "10.0.0.0", bits = 8, family = 4, ip = bytes("0a000000") },
                  { addr = "192.168.1.0", bits = 24, family = 4, ip = bytes("c0a80100") },
                  { addr = "203.0.113.9", bits = 32, family = 4, ip = bytes("cb007109") },
                  { addr = "0.0.0.0", bits = 0, family = 4, ip = bytes("00000000") },
                  { addr = "2001:db8::", bits = 32, family = 6,
                    ip = bytes("20010db8000000000000000000000000") },
                  { addr = "::1", bits = 128, family = 6,
                    ip = bytes("00000000000000000000000000000001") },
                  { addr = "fe80::", bits = 10, family = 6,
                    ip = bytes("fe800000000000000000000000000000") },
                  { addr = "::ffff:c000:200", bits = 120, family = 6,
                    ip = bytes("00000000000000000000ffffc0000200") },
                  { addr = "2001:db8:0:1::", bits = 64, family = 6,
                    ip = bytes("20010db8000000010000000000000000") },
                  { addr = "::", bits = 0, family = 6,
                    ip = bytes("00000000000000000000000000000000") } },
                route('ip_cidr = { "10.0.0.0/8", "192.168.1.77/24", "203.0.113.9", "1.2.3.4/0", ' ..
                      '"2001:DB8::/32", "::1", "fe80::1/10", "::ffff:192.0.2.1/120", ' ..
                      '"2001:db8:0:1:2:3:4:5/64", "::/0" }').ip_cidr)
    assert.same({ { addr = "10.0.0.0", bits = 8, family = 4, ip = bytes("0a000000") } },
                route('ip_cidr = "10.0.0.0/8"').ip_cidr)
    for _, bad in ipairs({ "10.0.0.0/33", "2001:db8::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/-1",
                           "2001:db8:::/32", "10.0.0.256/8", "/8", "example.com/8", "10.0.0.0/8/8",
                           "1:2:3:4:5:6:7::8:9/64", "10.0.0.0/0008" }) do
      fails("cfg.lua:4: 'ip_cidr' in route must be a list of CIDR blocks like \"10.0.0.0/8\"; element 1 is string \"" .. bad .. "\"",
            "luaray.route { ip_cidr = { '" .. bad .. "' }, to = 'direct' }")
    end
  end)

  it("parses every port form into ranges", function()
    assert.same({ { 80, 80, lo = 80, hi = 80 } }, route("port = 80").port)
    assert.same({ { 80, 80, lo = 80, hi = 80 } }, route('port = "80"').port)
    assert.same({ { 1, 1024, lo = 1, hi = 1024 } }, route('port = "1-1024"').port)
    assert.same({ { 80, 80, lo = 80, hi = 80 }, { 443, 443, lo = 443, hi = 443 },
                  { 8000, 9000, lo = 8000, hi = 9000 } }, route('port = "80,443,8000-9000"').port)
    assert.same({ { 80, 80, lo = 80, hi = 80 }, { 8000, 9000, lo = 8000, hi = 9000 } },
                route('port = " 80 , 8000 - 9000 "').port)
    assert.same({ { 53, 53, lo = 53, hi = 53 }, { 80, 80, lo = 80, hi = 80 },
                  { 443, 443, lo = 443, hi = 443 }, { 1, 2, lo = 1, hi = 2 } },
                route('port = { 53, "80,443", "1-2" }').port)
    assert.same({ { 65535, 65535, lo = 65535, hi = 65535 } }, route('port = "65535-65535"').port)
    local expect = "must be a port (1-65535), a range \"lo-hi\" or a list like \"80,443,8000-9000\""
    for _, bad in ipairs({ '0', '65536', '"0"', '"5-1"', '"a"', '"80,,90"', '""', '"1-"', '"-5"',
                           '"80;443"', '1.5', '{}', 'true', '"1-70000"' }) do
      local got = (loadstring("return " .. bad))()
      local desc = type(got) == "string" and string.format("string %q", got)
                   or type(got) == "table" and "table" or type(got) .. " " .. tostring(got)
      fails("cfg.lua:4: 'port' in route " .. expect .. ", got " .. desc,
            "luaray.route { port = " .. bad .. ", to = 'direct' }")
    end
  end)

  it("takes user, inbound, network and protocol filters", function()
    local r = route('user = "alice@example.com", inbound = { "vmess-in" }, network = "tcp,udp", ' ..
                    'protocol = { "tls", "http" }')
    assert.same({ "alice@example.com" }, r.user)
    assert.same({ "vmess-in" }, r.inbound)
    assert.same({ tcp = true, udp = true }, r.network)
    assert.same({ "tls", "http" }, r.protocol)
    assert.same({ udp = true }, route('network = "udp"').network)
    assert.same({ tcp = true }, route('network = "tcp"').network)
    assert.same({ tcp = true, udp = true }, route('network = "udp, tcp"').network)
    assert.same({ tcp = true, udp = true }, route('network = { "tcp", "udp" }').network)
    assert.same({ "tls" }, route('protocol = "tls"').protocol)
    local expect = "must be \"tcp\", \"udp\" or \"tcp,udp\""
    fails("cfg.lua:4: 'network' in route " .. expect .. ", got string \"sctp\"",
          "luaray.route { network = 'sctp', to = 'direct' }")
    fails("cfg.lua:4: 'network' in route " .. expect .. ", got string \"\"",
          "luaray.route { network = '', to = 'direct' }")
    fails("cfg.lua:4: 'network' in route " .. expect .. ", got table",
          "luaray.route { network = {}, to = 'direct' }")
    fails("cfg.lua:4: 'network' in route " .. expect .. ", got number 6",
          "luaray.route { network = 6, to = 'direct' }")
    fails("cfg.lua:4: 'protocol' in route must be a list of \"tls\" or \"http\"; element 1 is string \"quic\"",
          "luaray.route { protocol = 'quic', to = 'direct' }")
    fails("cfg.lua:4: 'user' in route must be a list of user emails; element 1 is table",
          "luaray.route { user = { {} }, to = 'direct' }")
    fails("cfg.lua:4: 'inbound' in route must be a list of inbound tags (no keys or holes), got table",
          "luaray.route { inbound = { tag = 'vmess-in' }, to = 'direct' }")
  end)

  it("takes a string for every list filter and refuses empty lists", function()
    local r = route('domain = "a.example", domain_suffix = "b.example", domain_keyword = "c", ' ..
                    'ip_cidr = "10.0.0.0/8", user = "alice@example.com", inbound = "vmess-in", ' ..
                    'protocol = "http"')
    assert.same({ "a.example" }, r.domain)
    assert.same({ "b.example" }, r.domain_suffix)
    assert.same({ "c" }, r.domain_keyword)
    assert.same({ { addr = "10.0.0.0", bits = 8, family = 4, ip = bytes("0a000000") } }, r.ip_cidr)
    assert.same({ "alice@example.com" }, r.user)
    assert.same({ "vmess-in" }, r.inbound)
    assert.same({ "http" }, r.protocol)
    for _, k in ipairs({ "domain", "domain_suffix", "domain_keyword", "ip_cidr", "user", "inbound",
                         "protocol" }) do
      fails("cfg.lua:4: '" .. k .. "' in route is an empty list",
            "luaray.route { " .. k .. " = {}, to = 'direct' }")
    end
  end)

  it("keeps the rules in order and leaves absent filters nil", function()
    local cfg = ok("luaray.outbound 'block' { type = 'blackhole' }",
                   "luaray.route { port = 25, to = 'block' }",
                   "luaray.route { domain = 'x.example', to = 'direct' }",
                   "luaray.route { port = 25, to = 'direct' }")
    assert.same({ { where = "cfg.lua:5", to = "block", port = { { 25, 25, lo = 25, hi = 25 } } },
                  { where = "cfg.lua:6", to = "direct", domain = { "x.example" } },
                  { where = "cfg.lua:7", to = "direct", port = { { 25, 25, lo = 25, hi = 25 } } } },
                cfg.routes)
  end)

  it("sets the default outbound once", function()
    local cfg = ok("luaray.outbound 'block' { type = 'blackhole' }", "luaray.route { default = 'block' }")
    assert.equal("block", cfg.default_outbound)
    assert.equal("cfg.lua:5", cfg.default_where)
    assert.same({}, cfg.routes)
    -- without one it is the first outbound declared
    assert.equal("direct", ok("luaray.outbound 'block' { type = 'blackhole' }").default_outbound)
    fails("cfg.lua:5: the default route is set twice (first at cfg.lua:4)",
          "luaray.route { default = 'direct' }", "luaray.route { default = 'direct' }")
    fails("cfg.lua:4: 'default' cannot be combined with 'to' in route (a default route takes no filters)",
          "luaray.route { default = 'direct', to = 'direct' }")
    fails("cfg.lua:4: 'default' cannot be combined with 'port' in route (a default route takes no filters)",
          "luaray.route { default = 'direct', port = 80 }")
    fails("cfg.lua:4: 'default' in route must be a non-empty string (at most 255 bytes, no control characters), got boolean true",
          "luaray.route { default = true }")
    fails("cfg.lua:4: 'default' in route names unknown outbound 'nowhere'",
          "luaray.route { default = 'nowhere' }")
  end)

  it("needs a filter and a target", function()
    fails("cfg.lua:4: route has no filter (use luaray.route { default = \"tag\" } for the default outbound)",
          "luaray.route { to = 'direct' }")
    fails("cfg.lua:4: route has no filter (use luaray.route { default = \"tag\" } for the default outbound)",
          "luaray.route {}")
    fails("cfg.lua:4: missing required key 'to' in route", "luaray.route { port = 80 }")
    fails("cfg.lua:4: 'to' in route must be a non-empty string (at most 255 bytes, no control characters), got number 1",
          "luaray.route { port = 80, to = 1 }")
    fails("cfg.lua:4: unknown key 'domian' in route", "luaray.route { domian = 'x', to = 'direct' }")
    fails("cfg.lua:4: luaray.route expects a table, got nil", "luaray.route()")
  end)

  it("checks the names it refers to after the script ran", function()
    -- forward references are fine
    local cfg = ok("luaray.route { port = 80, inbound = 'later-in', to = 'later' }",
                   "luaray.outbound 'later' { type = 'blackhole' }",
                   "luaray.inbound 'later-in' { type = 'http', listen = '127.0.0.1:8080' }")
    assert.equal("later", cfg.routes[1].to)
    fails("cfg.lua:5: 'to' in route names unknown outbound 'nowhere'",
          "luaray.route { port = 80, to = 'direct' }", "luaray.route { port = 81, to = 'nowhere' }")
    fails("cfg.lua:4: 'to' in route names unknown outbound 'vmess-in'",
          "luaray.route { port = 80, to = 'vmess-in' }")
    fails("cfg.lua:4: 'inbound' in route names unknown inbound 'direct'",
          "luaray.route { port = 80, inbound = { 'vmess-in', 'direct' }, to = 'direct' }")
    fails("cfg.lua:4: 'user' in route names unknown user 'bob'",
          "luaray.route { user = { 'alice@example.com', 'bob' }, to = 'direct' }")
  end)
end)

describe("luaray.on", function()
  it("takes one function per hook name", function()
    local cfg = ok("local function f() end",
                   "for _, n in ipairs({ 'accept', 'auth', 'route', 'connect', 'close', 'reload' }) do",
                   "  luaray.on(n, function() return n end)",
                   "end")
    for _, n in ipairs({ "accept", "auth", "route", "connect", "close", "reload" }) do
      assert.equal(n, cfg.hooks[n]())
    end
  end)

  it("refuses unknown names, non-functions and a second function", function()
    fails("cfg.lua:4: luaray.on: unknown hook string \"acept\" (expected one of accept, auth, route, connect, close, reload)",
          "luaray.on('acept', function() end)")
    fails("cfg.lua:4: luaray.on: unknown hook nil (expected one of accept, auth, route, connect, close, reload)",
          "luaray.on()")
    fails("cfg.lua:4: luaray.on: the hook 'route' must be a function, got string \"direct\"",
          "luaray.on('route', 'direct')")
    fails("cfg.lua:5: luaray.on: hook 'close' is already set (at cfg.lua:4)",
          "luaray.on('close', function() end)", "luaray.on('close', function() end)")
  end)
end)

describe("config cross-checks", function()
  it("needs an inbound and an outbound", function()
    raw_fails("cfg.lua:2: no inbound declared (at least one luaray.inbound is required)",
              "luaray.outbound 'd' { type = 'direct' }\n-- the end\n")
    raw_fails("cfg.lua:1: no outbound declared (at least one luaray.outbound is required)",
              "luaray.inbound 's' { type = 'socks', listen = '127.0.0.1:1080' }")
    raw_fails("cfg.lua:1: no inbound declared (at least one luaray.inbound is required)", "")
  end)
end)

describe("luaray.include", function()
  it("reads files relative to the including file", function()
    local main = FIX .. "/include/main.lua"
    local cfg, err = config.load(main)
    assert(cfg, err)
    assert.same({ main, FIX .. "/include/parts/users.lua", FIX .. "/include/parts/more_users.lua",
                  FIX .. "/include/outbounds.lua" }, cfg.files)
    assert.same({ "alice@example.com", "bob@example.com" }, { cfg.users[1].email, cfg.users[2].email })
    assert.equal(FIX .. "/include/parts/more_users.lua:1", cfg.users[2].where)
    assert.equal(FIX .. "/include/outbounds.lua:2", cfg.outbounds[2].where)
    assert.equal(main .. ":5", cfg.routes[1].where)
    assert.equal("direct", cfg.default_outbound)
  end)

  it("resolves a string config's includes against its chunk name", function()
    local cfg, err = config.load_string(src('luaray.include "benign.lua"'),
                                        "@" .. FIX .. "/include_errors/main.lua")
    assert(cfg, err)
    assert.same({ FIX .. "/include_errors/benign.lua" }, cfg.files)
    cfg, err = config.load_string(src('luaray.include "' .. FIX .. '/include_errors/benign.lua"'), "=default")
    assert(cfg, err)
    assert.equal("block", cfg.outbounds[2].tag)
  end)

  it("refuses include cycles", function()
    local a, b = FIX .. "/cycle/a.lua", FIX .. "/cycle/b.lua"
    local cfg, err = config.load(a)
    assert.is_nil(cfg)
    assert.equal(b .. ":2: include cycle: " .. a .. " -> " .. b .. " -> " .. a, err)
    local self = FIX .. "/cycle/self.lua"
    cfg, err = config.load(self)
    assert.is_nil(cfg)
    assert.equal(self .. ":1: include cycle: " .. self .. " -> " .. self, err)
  end)

  it("refuses a second include of the same file", function()
    local dir = FIX .. "/include_errors"
    raw_fails(dir .. "/main.lua:3: '" .. dir .. "/benign.lua' is already loaded (included at " ..
              dir .. "/main.lua:2); a file is included once",
              'luaray.outbound "d" { type = "direct" }\nluaray.include "benign.lua"\n' ..
              'luaray.include "./benign.lua"\n', "@" .. dir .. "/main.lua")
  end)

  it("reports errors inside included files at their own file:line", function()
    local dir = FIX .. "/include_errors"
    local function inc(name)
      return config.load_string('luaray.outbound "d" { type = "direct" }\nluaray.include "' .. name .. '"\n',
                                "@" .. dir .. "/main.lua")
    end
    local _, err = inc("unknown_key.lua")
    assert.equal(dir .. "/unknown_key.lua:2: unknown key 'lisen' in inbound 'socks-in'", err)
    _, err = inc("nested.lua")
    assert.equal(dir .. "/unknown_key.lua:2: unknown key 'lisen' in inbound 'socks-in'", err)
    _, err = inc("syntax.lua")
    assert.equal(dir .. "/syntax.lua:2: '}' expected near 'to'", err)
    _, err = inc("runtime.lua")
    assert.equal(dir .. "/runtime.lua:2: undefined global 'undefined_thing'", err)
    _, err = inc("missing.lua")
    assert.equal(dir .. "/main.lua:2: luaray.include: cannot open '" .. dir ..
                 "/missing.lua': No such file or directory", err)
    _, err = inc("..")
    assert.equal(dir .. "/main.lua:2: luaray.include: cannot read '" .. FIX .. "': Is a directory", err)
    _, err = inc("")
    assert.equal(dir .. "/main.lua:2: luaray.include expects a file name, got string \"\"", err)
  end)

  it("shares declarations but not locals across files", function()
    local dir = FIX .. "/include_errors"
    local cfg, err = config.load_string(
      'local secret = 1\nluaray.include "benign.lua"\n' ..
      'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:1" }\n' ..
      'luaray.route { port = 1, to = "block" }\n', "@" .. dir .. "/main.lua")
    assert(cfg, err)
    assert.equal("block", cfg.routes[1].to)
    assert.equal("block", cfg.default_outbound)
  end)
end)

describe("transports (design.md 6)", function()
  -- one more inbound / outbound at line 4, with the keys under test
  local function ib(keys)
    return 'luaray.inbound "t" { type = "vmess", listen = "127.0.0.1:20000", ' .. keys .. ' }'
  end
  local function ob(keys)
    return 'luaray.outbound "up" { type = "vmess", server = "Example.COM:443", id = "' .. UUID ..
           '", ' .. keys .. ' }'
  end
  local function inbound(keys) return ok(ib(keys)).inbounds[2] end
  local function outbound(keys) return ok(ob(keys)).outbounds[2] end
  local TLS = 'tls = { cert = "c.pem", key = "k.pem" }'

  it("parses the design.md section 6 config as written", function()
    local path = FIX .. "/design_transports.lua"
    local cfg, err = config.load(path)
    assert(cfg, err)
    local base = { type = "vmess", handshake_timeout = 60, idle_timeout = 300, max_connections = 0,
                   allow_legacy = false, allow_private = false }
    local function with(t)
      for k, v in pairs(base) do t[k] = v end
      return t
    end
    assert.same(with { tag = "vmess-wss", where = path .. ":4", listen = { host = "0.0.0.0", port = 443 },
                       tls = { certs = { { cert = "/etc/luaray/fullchain.pem", key = "/etc/luaray/privkey.pem" } },
                               alpn = { "http/1.1" } },
                       transport = { type = "ws", path = "/ray", max_early_data = 2048 },
                       fallback = { host = "127.0.0.1", port = 8080 } }, cfg.inbounds[1])
    assert.same(with { tag = "vmess-ws", where = path .. ":11", listen = { host = "127.0.0.1", port = 10000 },
                       transport = { type = "ws", path = "/ray", max_early_data = 0 },
                       trusted_proxies = {
                         { addr = "127.0.0.1", bits = 32, family = 4, ip = bytes("7f000001") },
                         { addr = "::1", bits = 128, family = 6, ip = bytes(("00"):rep(15) .. "01") } } },
                cfg.inbounds[2])
    assert.same(with { tag = "vmess-pp", where = path .. ":14", listen = { host = "0.0.0.0", port = 10001 },
                       proxy_protocol = true,
                       trusted_proxies = { { addr = "10.0.0.0", bits = 8, family = 4, ip = bytes("0a000000") } } },
                cfg.inbounds[3])
    assert.same({ tag = "proxy", type = "vmess", where = path .. ":18", connect_timeout = 10,
                  server = { host = "example.com", port = 443 }, id = UUID, alter_id = 0,
                  security = "auto", masking = true, padding = true, authenticated_length = false,
                  udp = true,
                  tls = { server_name = "example.com", alpn = { "http/1.1" } },
                  transport = { type = "ws", path = "/ray?ed=2048", host = "example.com", early_data = 2048 } },
                cfg.outbounds[1])
  end)

  it("takes every inbound transport key and normalises it", function()
    assert.same({ type = "ws", path = "/", max_early_data = 0 }, inbound('transport = { type = "ws" }').transport)
    assert.same({ type = "ws", path = "/ray?x=1", host = "cdn.example.com", max_early_data = 65536 },
                inbound('transport = { type = "ws", path = "/ray?x=1", host = "CDN.Example.com", ' ..
                        'max_early_data = 65536 }').transport)
    assert.same({ type = "httpupgrade", path = "/up", host = "192.0.2.1" },
                inbound('transport = { type = "httpupgrade", path = "/up", host = "192.0.2.1" }').transport)
    assert.same({ type = "grpc", service_name = "pkg.Tunnel_1-x", multi = false },
                inbound('transport = { type = "grpc", service_name = "pkg.Tunnel_1-x" }').transport)
    assert.same({ type = "grpc", service_name = "g", multi = true },
                inbound('transport = { type = "grpc", service_name = "g", multi = true }').transport)
    -- bare TCP, said or not, is no transport
    assert.is_nil(inbound('transport = { type = "tcp" }').transport)
    assert.is_nil(inbound('transport = {}').transport)
    -- TLS: one certificate or several, ALPN (default h2, http/1.1; a string is a one-element list)
    assert.same({ certs = { { cert = "c.pem", key = "k.pem" } }, alpn = { "h2", "http/1.1" } },
                inbound(TLS).tls)
    assert.same({ certs = { { cert = "c.pem", key = "k.pem" }, { cert = "a.pem", key = "a.key" },
                            { cert = "b.pem", key = "b.key" } }, alpn = { "http/1.1" } },
                inbound('tls = { cert = "c.pem", key = "k.pem", alpn = "http/1.1", certs = { ' ..
                        '{ cert = "a.pem", key = "a.key" }, { cert = "b.pem", key = "b.key" } } }').tls)
    assert.same({ certs = { { cert = "a.pem", key = "a.key" } }, alpn = { "h2" } },
                inbound('tls = { certs = { { cert = "a.pem", key = "a.key" } }, alpn = { "h2" } }').tls)
    -- the transports over TLS with the ALPN each needs
    assert.equal("grpc", inbound(TLS .. ', transport = { type = "grpc", service_name = "g" }').transport.type)
    assert.equal("ws", inbound(TLS .. ', transport = { type = "ws" }').transport.type)
    -- fallback, proxy_protocol, trusted_proxies (a string is a one-element list)
    assert.same({ host = "::1", port = 8080 }, inbound('fallback = "[::1]:8080"').fallback)
    assert.same({ host = "web.local", port = 80 }, inbound('fallback = "web.local:80"').fallback)
    local t = inbound('proxy_protocol = true, trusted_proxies = "192.0.2.77/24"')
    assert.is_true(t.proxy_protocol)
    assert.same({ { addr = "192.0.2.0", bits = 24, family = 4, ip = bytes("c0000200") } }, t.trusted_proxies)
    assert.is_false(inbound('proxy_protocol = false').proxy_protocol)
    assert.same({ { addr = "2001:db8::", bits = 32, family = 6, ip = bytes("20010db8" .. ("00"):rep(12)) } },
                inbound('transport = { type = "grpc", service_name = "g" }, trusted_proxies = { "2001:db8::1/32" }')
                  .trusted_proxies)
    -- the PROXY protocol on the other inbound types too
    local cfg = ok('luaray.inbound "s" { type = "socks", listen = "127.0.0.1:20001", proxy_protocol = true, ' ..
                   'trusted_proxies = { "127.0.0.2" } }',
                   'luaray.inbound "h" { type = "http", listen = "127.0.0.1:20002", proxy_protocol = true, ' ..
                   'trusted_proxies = { "127.0.0.2" } }')
    assert.is_true(cfg.inbounds[2].proxy_protocol and cfg.inbounds[3].proxy_protocol)
  end)

  it("takes every outbound transport key and normalises it", function()
    -- TLS: SNI defaults to the server's name (none for an address)
    assert.same({ server_name = "example.com" }, outbound("tls = {}").tls)
    local cfg = ok('luaray.outbound "ip" { type = "vmess", server = "203.0.113.5:443", id = "' .. UUID ..
                   '", tls = {} }')
    assert.same({}, cfg.outbounds[2].tls)
    cfg = ok('luaray.outbound "ip6" { type = "vmess", server = "[2001:db8::1]:443", id = "' .. UUID ..
             '", tls = { server_name = "Vpn.Example.NET" } }')
    assert.same({ server_name = "vpn.example.net" }, cfg.outbounds[2].tls)
    local pin = ("AB:"):rep(31) .. "AB"
    assert.same({ server_name = "front.example", alpn = { "h2", "http/1.1" }, ca = "/etc/ca.pem",
                  pinned_sha256 = ("ab"):rep(32) },
                outbound('tls = { server_name = "front.example", alpn = { "h2", "http/1.1" }, ' ..
                         'ca = "/etc/ca.pem", pinned_sha256 = "' .. pin .. '" }').tls)
    -- ?ed=N in a ws path: early data with the upgrade
    assert.same({ type = "ws", path = "/ray?ed=2048", early_data = 2048 },
                outbound('transport = { type = "ws", path = "/ray?ed=2048" }').transport)
    assert.same({ type = "ws", path = "/ray?a=1&ed=0", host = "h.example" },
                (function()
                  local t = outbound('transport = { type = "ws", path = "/ray?a=1&ed=0", host = "H.example" }').transport
                  assert.equal(0, t.early_data)
                  t.early_data = nil
                  return t
                end)())
    assert.same({ type = "ws", path = "/" }, outbound('transport = { type = "ws" }').transport)
    assert.same({ type = "httpupgrade", path = "/u" }, outbound('transport = { type = "httpupgrade", path = "/u" }').transport)
    assert.same({ type = "grpc", service_name = "s", multi = true },
                outbound('transport = { type = "grpc", service_name = "s", multi = true }').transport)
    assert.equal("grpc", outbound('tls = { alpn = "h2" }, transport = { type = "grpc", service_name = "s" }')
                           .transport.type)
  end)

  it("refuses every bad inbound value with file:line", function()
    local function bad_ib(msg, keys) fails("cfg.lua:4: " .. msg, ib(keys)) end
    local IN = "inbound 't'"
    local TP = "transport of inbound 't'"
    bad_ib("'transport' in " .. IN .. " must be a table { type = ..., ... }, got string \"ws\"", 'transport = "ws"')
    bad_ib("'type' in " .. TP .. " must be one of tcp, ws, httpupgrade, grpc, got string \"quic\"",
           'transport = { type = "quic" }')
    bad_ib("unknown key 'path' in " .. TP, 'transport = { type = "tcp", path = "/" }')
    bad_ib("unknown key 'service_name' in " .. TP, 'transport = { type = "ws", service_name = "x" }')
    bad_ib("unknown key 'max_early_data' in " .. TP, 'transport = { type = "httpupgrade", max_early_data = 1 }')
    bad_ib("unknown key 'path' in " .. TP, 'transport = { type = "grpc", service_name = "g", path = "/g" }')
    bad_ib("unexpected positional value [1] in " .. TP .. " (use key = value)", 'transport = { "ws" }')
    local PATH = "an absolute path (\"/ray\"; no spaces or '#')"
    for _, p in ipairs({ '"ray"', '"/a b"', '"/a#b"', '""', '5', '"/a\\tb"' }) do
      local got = ({ ['"ray"'] = 'string "ray"', ['"/a b"'] = 'string "/a b"', ['"/a#b"'] = 'string "/a#b"',
                     ['""'] = 'string ""', ['5'] = "number 5", ['"/a\\tb"'] = 'string "/a\\9b"' })[p]
      bad_ib("'path' in " .. TP .. " must be " .. PATH .. ", got " .. got, 'transport = { type = "ws", path = ' .. p .. ' }')
    end
    bad_ib("'host' in " .. TP .. " must be a host name, got string \"a b\"", 'transport = { type = "ws", host = "a b" }')
    bad_ib("'host' in " .. TP .. " must be a host name, got string \"cdn.example:443\"",
           'transport = { type = "httpupgrade", host = "cdn.example:443" }')
    for _, v in ipairs({ "-1", "65537", "1.5", '"8"' }) do
      local got = v == '"8"' and 'string "8"' or "number " .. v
      bad_ib("'max_early_data' in " .. TP .. " must be an integer from 0 to 65536, got " .. got,
             'transport = { type = "ws", max_early_data = ' .. v .. ' }')
    end
    bad_ib("missing required key 'service_name' in " .. TP, 'transport = { type = "grpc" }')
    local SVC = "a gRPC service name (no spaces, '/', '?', '#', '%' or non-ASCII)"
    bad_ib("'service_name' in " .. TP .. " must be " .. SVC .. ", got string \"a/b\"",
           'transport = { type = "grpc", service_name = "a/b" }')
    bad_ib("'service_name' in " .. TP .. " must be " .. SVC .. ", got string \"a%20b\"",
           'transport = { type = "grpc", service_name = "a%20b" }')
    bad_ib("'service_name' in " .. TP .. " must be " .. SVC .. ", got string \"t\195\169\"",
           'transport = { type = "grpc", service_name = "t\\195\\169" }')
    bad_ib("'service_name' in " .. TP .. " must be " .. SVC .. ", got string \"\"",
           'transport = { type = "grpc", service_name = "" }')
    bad_ib("'multi' in " .. TP .. " must be a boolean, got string \"yes\"",
           'transport = { type = "grpc", service_name = "g", multi = "yes" }')
    -- TLS
    local TL = "tls of inbound 't'"
    bad_ib("'tls' in " .. IN .. " must be a table { cert = ..., key = ... }, got boolean true", "tls = true")
    bad_ib(TL .. " needs cert and key (or certs)", "tls = {}")
    bad_ib(TL .. " needs cert and key (or certs)", 'tls = { alpn = { "h2" } }')
    bad_ib("missing required key 'key' in " .. TL, 'tls = { cert = "c.pem" }')
    bad_ib("missing required key 'cert' in " .. TL, 'tls = { key = "k.pem" }')
    bad_ib("'cert' in " .. TL .. " must be a file path, got string \"\"", 'tls = { cert = "", key = "k" }')
    bad_ib("'key' in " .. TL .. " must be a file path, got number 1", 'tls = { cert = "c", key = 1 }')
    bad_ib("unknown key 'sni' in " .. TL, 'tls = { cert = "c", key = "k", sni = "x" }')
    bad_ib("unknown key 'insecure' in " .. TL, 'tls = { cert = "c", key = "k", insecure = true }')
    bad_ib("'certs' in " .. TL .. " must be a list of { cert = ..., key = ... }, got table", "tls = { certs = {} }")
    bad_ib("'certs' in " .. TL .. " must be a list of { cert = ..., key = ... }, got string \"a.pem\"",
           'tls = { certs = "a.pem" }')
    bad_ib("'certs' in " .. TL .. " must be a list of { cert = ..., key = ... }, got table",
           'tls = { certs = { "a.pem" } }')
    bad_ib("'certs' in " .. TL .. " must be a list of { cert = ..., key = ... }, got table",
           'tls = { certs = { { cert = "a", key = "b" }, x = { cert = "c", key = "d" } } }')
    bad_ib("missing required key 'key' in certs[2] of " .. TL,
           'tls = { certs = { { cert = "a", key = "b" }, { cert = "c" } } }')
    bad_ib("unknown key 'alpn' in certs[1] of " .. TL, 'tls = { certs = { { cert = "a", key = "b", alpn = "h2" } } }')
    bad_ib("'alpn' in " .. TL .. " is an empty list", 'tls = { cert = "c", key = "k", alpn = {} }')
    bad_ib("'alpn' in " .. TL .. " must be a list of ALPN protocol names; element 1 is string \"h2,http/1.1\"",
           'tls = { cert = "c", key = "k", alpn = "h2,http/1.1" }')
    bad_ib("'alpn' in " .. TL .. " must be a list of ALPN protocol names; element 2 is string \"h 2\"",
           'tls = { cert = "c", key = "k", alpn = { "http/1.1", "h 2" } }')
    bad_ib(IN .. ": a gRPC transport over TLS needs \"h2\" in tls.alpn",
           'tls = { cert = "c", key = "k", alpn = { "http/1.1" } }, transport = { type = "grpc", service_name = "g" }')
    bad_ib(IN .. ": a ws transport over TLS needs \"http/1.1\" in tls.alpn",
           'tls = { cert = "c", key = "k", alpn = { "h2" } }, transport = { type = "ws" }')
    bad_ib(IN .. ": a httpupgrade transport over TLS needs \"http/1.1\" in tls.alpn",
           'tls = { cert = "c", key = "k", alpn = "h2" }, transport = { type = "httpupgrade" }')
    -- fallback, the real client address
    local HP = "\"host:port\" (IPv6 in brackets, port 1-65535)"
    bad_ib("'fallback' in " .. IN .. " must be " .. HP .. ", got string \"nope\"", 'fallback = "nope"')
    bad_ib("'fallback' in " .. IN .. " must be " .. HP .. ", got number 8080", "fallback = 8080")
    bad_ib("'fallback' in " .. IN .. " must be " .. HP .. ", got string \"::1:80\"", 'fallback = "::1:80"')
    bad_ib("'proxy_protocol' in " .. IN .. " must be a boolean, got string \"v2\"", 'proxy_protocol = "v2"')
    bad_ib(IN .. ": proxy_protocol needs trusted_proxies (the proxies whose PROXY header is believed)",
           "proxy_protocol = true")
    bad_ib(IN .. ": trusted_proxies without proxy_protocol or a ws/httpupgrade/grpc transport has nothing to believe",
           'trusted_proxies = { "127.0.0.1" }')
    bad_ib(IN .. ": trusted_proxies without proxy_protocol or a ws/httpupgrade/grpc transport has nothing to believe",
           'proxy_protocol = false, trusted_proxies = { "127.0.0.1" }, transport = { type = "tcp" }')
    bad_ib("'trusted_proxies' in " .. IN .. " must be a list of CIDRs (\"10.0.0.0/8\"); element 1 is string \"10.0.0.0/33\"",
           'proxy_protocol = true, trusted_proxies = { "10.0.0.0/33" }')
    bad_ib("'trusted_proxies' in " .. IN .. " must be a list of CIDRs (\"10.0.0.0/8\"); element 2 is string \"proxy.example\"",
           'proxy_protocol = true, trusted_proxies = { "10.0.0.1", "proxy.example" }')
    bad_ib("'trusted_proxies' in " .. IN .. " is an empty list", "proxy_protocol = true, trusted_proxies = {}")
    bad_ib(IN .. ": dynamic_port works on bare TCP only (no tls, transport or proxy_protocol)",
           'proxy_protocol = true, trusted_proxies = "10.0.0.0/8", dynamic_port = { port = "40000-40010" }')
    bad_ib(IN .. ": dynamic_port works on bare TCP only (no tls, transport or proxy_protocol)",
           'transport = { type = "ws" }, dynamic_port = { port = 40000 }')
    -- what only a VMess inbound has
    for _, k in ipairs({ "tls = {}", "transport = {}", 'fallback = "127.0.0.1:80"' }) do
      fails("cfg.lua:4: unknown key '" .. k:match("^%a+") .. "' in inbound 's'",
            'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:20001", ' .. k .. ' }')
    end
    fails("cfg.lua:4: inbound 's': trusted_proxies without proxy_protocol or a ws/httpupgrade/grpc transport " ..
          "has nothing to believe",
          'luaray.inbound "s" { type = "http", listen = "127.0.0.1:20001", trusted_proxies = "127.0.0.1" }')
  end)

  it("refuses every bad outbound value with file:line", function()
    local function bad_ob(msg, keys) fails("cfg.lua:4: " .. msg, ob(keys)) end
    local OB, TL, TP = "outbound 'up'", "tls of outbound 'up'", "transport of outbound 'up'"
    bad_ob("'tls' in " .. OB .. " must be a table { server_name = ..., ... }, got number 5", "tls = 5")
    bad_ob("unknown key 'insecure' in " .. TL, "tls = { insecure = true }")      -- no such switch
    bad_ob("unknown key 'cert' in " .. TL, 'tls = { cert = "c.pem" }')
    bad_ob("'server_name' in " .. TL .. " must be a host name, got string \"bad name\"",
           'tls = { server_name = "bad name" }')
    bad_ob("'server_name' in " .. TL .. " must be a host name, got string \"::1\"", 'tls = { server_name = "::1" }')
    bad_ob("'pinned_sha256' in " .. TL .. " must be 64 hex digits, got string \"abc\"", 'tls = { pinned_sha256 = "abc" }')
    bad_ob("'pinned_sha256' in " .. TL .. " must be 64 hex digits, got a string",
           'tls = { pinned_sha256 = "' .. ("zz"):rep(32) .. '" }')
    bad_ob("'pinned_sha256' in " .. TL .. " must be 64 hex digits, got a string",
           'tls = { pinned_sha256 = "' .. ("ab"):rep(33) .. '" }')
    bad_ob("'pinned_sha256' in " .. TL .. " must be 64 hex digits, got boolean true", "tls = { pinned_sha256 = true }")
    bad_ob("'ca' in " .. TL .. " must be a file path, got string \"\"", 'tls = { ca = "" }')
    bad_ob("'alpn' in " .. TL .. " is an empty list", "tls = { alpn = {} }")
    bad_ob(OB .. ": a gRPC transport over TLS needs \"h2\" in tls.alpn",
           'tls = { alpn = { "http/1.1" } }, transport = { type = "grpc", service_name = "s" }')
    bad_ob(OB .. ": a ws transport over TLS needs \"http/1.1\" in tls.alpn",
           'tls = { alpn = { "h2" } }, transport = { type = "ws" }')
    bad_ob("'max_early_data' in " .. TP .. " is an inbound's: an outbound sends early data with path = \"...?ed=N\"",
           'transport = { type = "ws", max_early_data = 2048 }')
    -- ?ed=N is early data for ws and httpupgrade (sent right after the
    -- request head, as Xray's client does)
    assert.equal(2048, outbound('transport = { type = "httpupgrade", path = "/u?ed=2048" }').transport.early_data)
    bad_ob("'path' in " .. TP .. ": ?ed= at most 65536", 'transport = { type = "ws", path = "/r?ed=65537" }')
    bad_ob("missing required key 'service_name' in " .. TP, 'transport = { type = "grpc", multi = true }')
    for _, k in ipairs({ "tls = {}", 'transport = { type = "ws" }' }) do
      fails("cfg.lua:4: unknown key '" .. k:match("^%a+") .. "' in outbound 'd2'",
            'luaray.outbound "d2" { type = "direct", ' .. k .. ' }')
    end
  end)
end)

describe("mux on a VMess outbound (design.md 9)", function()
  local o = 'luaray.outbound "up" { type = "vmess", server = "h:1", id = "' .. UUID .. '", '
  it("takes { concurrency = 1..1024 }, 8 by default; false or nothing is no mux", function()
    assert.same({ concurrency = 4 }, ok(o .. "mux = { concurrency = 4 } }").outbounds[2].mux)
    assert.same({ concurrency = 1024 }, ok(o .. "mux = { concurrency = 1024 } }").outbounds[2].mux)
    assert.same({ concurrency = 8 }, ok(o .. "mux = {} }").outbounds[2].mux)
    assert.is_nil(ok(o .. "mux = false }").outbounds[2].mux)
    assert.is_nil(ok(o .. "}").outbounds[2].mux)
  end)
  it("refuses anything else with the file and line", function()
    fails("cfg.lua:4: 'concurrency' in 'mux' in outbound 'up' must be an integer from 1 to 1024, got number 0",
          o .. "mux = { concurrency = 0 } }")
    fails("cfg.lua:4: 'concurrency' in 'mux' in outbound 'up' must be an integer from 1 to 1024, got number 1.5",
          o .. "mux = { concurrency = 1.5 } }")
    fails("cfg.lua:4: unknown key 'conc' in 'mux' in outbound 'up'", o .. "mux = { conc = 8 } }")
    fails("cfg.lua:4: 'mux' in outbound 'up' expects a table, got number 8", o .. "mux = 8 }")
    fails("cfg.lua:4: unknown key 'mux' in outbound 'd'",
          'luaray.outbound "d" { type = "direct", mux = {} }')
  end)
end)

describe("xudp on a VMess outbound (XUDP as a client)", function()
  local o = 'luaray.outbound "up" { type = "vmess", server = "h:1", id = "' .. UUID .. '", '
  it("is a boolean, false (nil in the table) by default", function()
    assert.is_true(ok(o .. "xudp = true }").outbounds[2].xudp)
    assert.is_nil(ok(o .. "xudp = false }").outbounds[2].xudp)
    assert.is_nil(ok(o .. "}").outbounds[2].xudp)
    assert.is_true(ok(o .. "xudp = true, mux = { concurrency = 4 } }").outbounds[2].xudp)
  end)
  it("refuses anything else, and xudp without udp, with the file and line", function()
    fails("cfg.lua:4: 'xudp' in outbound 'up' must be a boolean, got number 1", o .. "xudp = 1 }")
    fails("cfg.lua:4: 'xudp' in outbound 'up' needs 'udp' (xudp carries UDP: it cannot be on with udp = false)",
          o .. "xudp = true, udp = false }")
    fails("cfg.lua:4: unknown key 'xudp' in outbound 'd'",
          'luaray.outbound "d" { type = "direct", xudp = true }')
  end)
end)
