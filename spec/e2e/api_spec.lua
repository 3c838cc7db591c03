-- luaray.api (design.md 7): v2ray 4.34's own gRPC API, so Debian's
-- `v2ctl api` and the panels' gRPC clients work unchanged.
--   - Debian's v2ctl (v2ray 4.34) against a luaray server: the user's
--     traffic counters after a VMess transfer from a v2ray 4.34 client,
--     GetStats on one name (and v2ray's "not found" for a missing one),
--     QueryStats with reset, GetSysStats;
--   - an independent client (tools/api_client.py: python3-grpcio with
--     messages encoded by hand from v2ray's wire description, python3-h2
--     for what grpcio will not send): UNIMPLEMENTED for the other methods;
--     bad input of every kind (not HTTP/2, lying or oversized length
--     prefixes, compressed messages, truncated or mistyped protobuf, bad
--     AlterInbound operations) gets an error, and v2ctl is answered after;
--   - the config: luaray.api's keys and address conflicts, a start that
--     cannot listen, SIGHUP moving and stopping the listener;
--   - AlterInbound with AddUserOperation / RemoveUserOperation: a user
--     added through the API works at once, one removed is refused and its
--     open connection closed.  That block needs live users (daemon/live.h,
--     from branch main): it is a describe of its own, "v2ray API:
--     AlterInbound (live users)".
local E = require "e2e.support"
local psignal = require "posix.signal"

local KiB = 1024

local function python()
  local f = io.open("/usr/bin/python3")
  if f then f:close(); return "/usr/bin/python3" end
  return "python3"
end

local function v2ctl_bin()
  local f = io.open("/usr/bin/v2ctl")
  if f then f:close(); return "/usr/bin/v2ctl" end
  return "v2ctl"
end

-- The stats of v2ctl's text output: { [name] = value } (proto3 leaves a
-- value of 0 out).
local function parse_stats(text)
  local out, name = {}, nil
  for line in text:gmatch("[^\n]+") do
    local n = line:match('^%s*name:%s*"(.*)"%s*$')
    if n then
      name = n
      out[name] = 0
    elseif name and line:match("^%s*value:") then
      out[name] = tonumber(line:match("value:%s*(%-?%d+)"))
    end
  end
  return out
end

-- Calls for one API address on harness h.
local function api_of(h, port)
  local A = {}
  -- v2ctl api METHOD REQUEST -> exit code, output
  function A.v2ctl(method, req)
    return h:exec("v2ctl", { v2ctl_bin(), "api", "--server=127.0.0.1:" .. port, method, req or "" },
                  { timeout = 15 })
  end
  -- QueryStats through v2ctl -> { [name] = value }
  function A.query(pattern, reset)
    local rc, out = A.v2ctl("StatsService.QueryStats",
                            ('pattern: "%s" reset: %s'):format(pattern or "", reset and "true" or "false"))
    assert(rc == 0, "v2ctl QueryStats failed: " .. tostring(out))
    return parse_stats(out)
  end
  -- tools/api_client.py ARGS... -> its answer line
  function A.py(...)
    local argv = { python(), E.tools .. "/api_client.py", "127.0.0.1:" .. port, ... }
    local rc, out = h:exec("api-client", argv, { timeout = 20 })
    assert(rc == 0, "api_client.py failed: " .. tostring(out))
    for line in out:gmatch("[^\n]+") do
      for _, w in ipairs { "OK", "ERR", "STATUS", "HTTP", "RESET", "CLOSED", "TIMEOUT" } do
        if line:sub(1, #w + 1) == w .. " " or line == w then return line end
      end
    end
    return out
  end
  return A
end

-- Waits until fn() is true (timeout s) -> true, or nil.
local function eventually(fn, timeout)
  local deadline = E.now() + (timeout or 10)
  for _ = 1, 100000 do
    if fn() then return true end
    if E.now() >= deadline then return nil end
    E.sleep(0.1)
  end
end

-- Waits until the peer closes s (timeout s) -> "eof" / "reset" / "errno N", or nil.
local function wait_closed(s, timeout)
  s:settimeout(0)
  local deadline = E.now() + (timeout or 5)
  for _ = 1, 100000 do
    local _, how = E.recv_nb(s)
    if how then return how end
    if E.now() >= deadline then return nil end
    E.sleep(0.05)
  end
end

local STATS = "/v2ray.core.app.stats.command.StatsService/"
local HANDLER = "/v2ray.core.app.proxyman.command.HandlerService/"

describe("v2ray API (luaray.api)", function()
  local h = E.new("api")
  local echo, srv, srv_port, api_port, socks, api
  local ID, EMAIL = E.uuid(), "alice@e2e"
  local UP = "user>>>" .. EMAIL .. ">>>traffic>>>uplink"
  local DOWN = "user>>>" .. EMAIL .. ">>>traffic>>>downlink"
  local N = 300 * KiB

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    srv_port, api_port = E.free_port(), E.free_port()
    local text, opts = E.luaray_server_script {
      port = srv_port, users = { { id = ID, email = EMAIL } },
      extra = ('luaray.api { listen = "127.0.0.1:%d" }'):format(api_port) }
    opts.ports[#opts.ports + 1] = { "127.0.0.1", api_port }
    srv = h:luaray("luaray-api-server", text, opts)
    socks = E.free_port()
    h:v2ray("v2ray-client", E.v2ray_client_config { socks_port = socks, server_port = srv_port, id = ID })
    api = api_of(h, api_port)
  end))

  lazy_teardown(function() h:cleanup() end)

  it("v2ctl QueryStats shows the user's traffic after a VMess transfer from v2ray 4.34 (N bytes, within 10%)",
     h:guard(function()
    local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
    assert(E.transfer_echo(s, N))
    local st
    assert.is_truthy(eventually(function()
      st = api.query("", false)
      return (st[UP] or 0) >= N and (st[DOWN] or 0) >= N
    end), "counters did not reach " .. N .. ": " .. E.json(st or {}))
    assert.is_true(st[UP] <= N * 1.1, "uplink " .. st[UP] .. " over N + 10%")
    assert.is_true(st[DOWN] <= N * 1.1, "downlink " .. st[DOWN] .. " over N + 10%")
    -- the inbound's and the outbound's counters too, as v2ray names them
    assert.is_true(st["inbound>>>vmess-in>>>traffic>>>uplink"] >= N)
    assert.is_true(st["outbound>>>direct>>>traffic>>>downlink"] >= N)
    -- a pattern is a substring of the names
    local only = api.query("downlink", false)
    for name in pairs(only) do assert.truthy(name:find("downlink", 1, true)) end
    assert.is_not_nil(only[DOWN])
    assert.is_nil(only[UP])
    -- luaray's own counters (for /metrics) are not v2ray's: never shown
    for name in pairs(st) do assert.falsy(name:find("^luaray_"), name) end
  end))

  it("v2ctl GetStats reads one counter; a missing name is v2ray's 'not found' error", h:guard(function()
    local rc, out = api.v2ctl("StatsService.GetStats", ('name: "%s" reset: false'):format(UP))
    assert.are.equal(0, rc, out)
    local st = parse_stats(out)
    assert.is_true((st[UP] or 0) >= N, out)
    rc, out = api.v2ctl("StatsService.GetStats", 'name: "user>>>nobody@e2e>>>traffic>>>uplink" reset: false')
    assert.are_not.equal(0, rc)
    assert.truthy(out:find("user>>>nobody@e2e>>>traffic>>>uplink not found", 1, true), out)
    assert.truthy(out:find("code = Unknown", 1, true), out)
  end))

  it("v2ctl QueryStats with reset: true returns the values, then they read 0", h:guard(function()
    local before = api.query(EMAIL, true)
    assert.is_true((before[UP] or 0) >= N, E.json(before))
    local after = api.query(EMAIL, false)
    assert.are.equal(0, after[UP])
    assert.are.equal(0, after[DOWN])
    -- the others were not reset
    local all = api.query("", false)
    assert.is_true(all["inbound>>>vmess-in>>>traffic>>>uplink"] >= N)
    -- GetStats with reset returns the value before it
    local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
    assert(E.transfer_echo(s, 10 * KiB))
    assert.is_truthy(eventually(function() return (api.query(UP, false)[UP] or 0) >= 10 * KiB end))
    local rc, out = api.v2ctl("StatsService.GetStats", ('name: "%s" reset: true'):format(UP))
    assert.are.equal(0, rc, out)
    assert.is_true((parse_stats(out)[UP] or 0) >= 10 * KiB, out)
    assert.are.equal("OK 0 " .. UP, api.py("get", UP))
  end))

  it("v2ctl GetSysStats answers (Uptime, Alloc, Sys)", h:guard(function()
    E.sleep(1.1)
    local rc, out = api.v2ctl("StatsService.GetSysStats", "")
    assert.are.equal(0, rc, out)
    assert.is_true((tonumber(out:match("Uptime:%s*(%d+)")) or 0) >= 1, out)
    assert.is_true((tonumber(out:match("Alloc:%s*(%d+)")) or 0) > 0, out)
    assert.is_true((tonumber(out:match("Sys:%s*(%d+)")) or 0) > 0, out)
  end))

  it("an independent client (grpcio, hand-encoded protobuf) reads the same counters", h:guard(function()
    local line = api.py("query", "vmess-in")
    assert.truthy(line:find("^OK "), line)
    assert.truthy(line:find("inbound>>>vmess%-in>>>traffic>>>uplink=%d+"), line)
    assert.truthy(api.py("sys"):find("Alloc=%d+"))
    assert.truthy(api.py("get", "nope"):find("^ERR 2 .*nope not found%."))
  end))

  it("the other HandlerService methods, other services and methods answer UNIMPLEMENTED (12)", h:guard(function()
    for _, m in ipairs { "AddInbound", "RemoveInbound", "AddOutbound", "RemoveOutbound", "AlterOutbound" } do
      local line = api.py("call", HANDLER .. m, "")
      assert.truthy(line:find("^ERR 12 luaray does not serve HandlerService%." .. m), line)
    end
    assert.truthy(api.py("call", STATS .. "GetFoo", ""):find("^ERR 12 unknown method"))
    assert.truthy(api.py("call", "/no.Such/Thing", ""):find("^ERR 12 unknown service no%.Such"))
    local rc, out = api.v2ctl("LoggerService.RestartLogger", "")
    assert.are_not.equal(0, rc)
    assert.truthy(out:find("code = Unimplemented", 1, true), out)
  end))

  it("300 calls at once on one connection are all answered", h:guard(function()
    assert.are.equal("OK 300", api.py("many", "300"))
  end))

  it("with two workers the counters are the sum over both", h:guard(function()
    local port, aport = E.free_port(), E.free_port()
    local text, opts = E.luaray_server_script {
      port = port, users = { { id = ID, email = "wk@e2e" } },
      extra = ('luaray.workers(2)\nluaray.api { listen = "127.0.0.1:%d" }'):format(aport) }
    opts.ports[#opts.ports + 1] = { "127.0.0.1", aport }
    h:luaray("luaray-api-workers", text, opts)
    local vs = E.free_port()
    h:v2ray("v2ray-client-workers", E.v2ray_client_config { socks_port = vs, server_port = port, id = ID })
    local socks_list = {}
    for i = 1, 8 do
      socks_list[i] = assert(E.socks5_connect("127.0.0.1", vs, "127.0.0.1", echo.port))
    end
    assert(E.transfer_echo_many(socks_list, 32 * KiB))
    local a, st = api_of(h, aport), nil
    assert.is_truthy(eventually(function()
      st = a.query("wk@e2e", false)
      return (st["user>>>wk@e2e>>>traffic>>>uplink"] or 0) >= 8 * 32 * KiB and
             (st["user>>>wk@e2e>>>traffic>>>downlink"] or 0) >= 8 * 32 * KiB
    end), E.json(st or {}))
    assert.is_true(st["user>>>wk@e2e>>>traffic>>>uplink"] <= 8 * 32 * KiB * 1.1)
  end))

  describe("bad input", function()
    -- after each: the server still answers v2ctl
    local function still_answers()
      assert.is_true(h:alive(srv), "the luaray server died")
      local rc, out = api.v2ctl("StatsService.QueryStats", 'pattern: "" reset: false')
      assert.are.equal(0, rc, out)
      assert.truthy(out:find(UP, 1, true), out)
    end

    it("garbage instead of the HTTP/2 preface: the connection is closed, with a log line", h:guard(function()
      for _, junk in ipairs { "hello, this is not HTTP/2 at all\r\n\r\n" .. ("x"):rep(100),
                              "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\22\3\1\0\5\1\0\0\1\0" } do
        local s = assert(E.tcp_connect("127.0.0.1", api_port))
        assert(s:send(junk))
        assert.is_truthy(wait_closed(s, 5), "not closed after " .. ("%q"):format(junk))
        s:close()
      end
      assert(E.wait_log(srv, "not the HTTP/2 client preface; closed"))
      assert(E.wait_log(srv, "an HTTP/1 request: the API is gRPC"))
      assert(E.wait_log(srv, "a TLS handshake: the API speaks h2c"))
      still_answers()
    end))

    it("a connection that sends nothing, or half a preface, is closed after the handshake timeout", h:guard(function()
      local s = assert(E.tcp_connect("127.0.0.1", api_port))
      assert(s:send("PRI * HTTP/2.0\r\n"))
      assert.is_truthy(wait_closed(s, 20), "still open after 20 s")
      s:close()
      assert(E.wait_log(srv, "no HTTP/2 preface within 10 s; closed"))
      still_answers()
    end))

    it("gRPC framing: a lying length prefix, over 1 MiB, compressed, no message, two messages", h:guard(function()
      local P = STATS .. "QueryStats"
      -- announces 100 bytes, 3 come
      assert.truthy(api.py("raw", P, "0000000064" .. "0a0178"):find("^STATUS 13 grpc: request message cut short"))
      -- announces 2 MiB: refused before it comes
      assert.truthy(api.py("raw", P, "0000200000"):find("^STATUS 8 grpc: received message larger than max"))
      -- announces and sends 1 MiB + 1
      assert.truthy(api.py("raw", P, "0000100001", tostring(1024 * 1024 + 1)):find("^STATUS 8 "))
      -- announces 10, sends 1 MiB + 10 (more than any message may be)
      assert.truthy(api.py("raw", P, "000000000a", tostring(1024 * 1024 + 10)):find("^STATUS 8 "))
      -- compressed flag (no grpc-encoding was negotiated)
      assert.truthy(api.py("raw", P, "0100000002" .. "0a00"):find("^STATUS 12 grpc: compressed"))
      assert.truthy(api.py("raw", P, "0200000002" .. "0a00"):find("^STATUS 13 grpc: bad message flags"))
      assert.truthy(api.py("raw", P, ""):find("^STATUS 13 grpc: no request message"))
      assert.truthy(api.py("raw", P, "0000"):find("^STATUS 13 grpc: request cut short"))
      assert.truthy(api.py("raw", P, "0000000000" .. "0000000000"):find("^STATUS 13 grpc: more than one"))
      -- and a good one the same way
      assert.truthy(api.py("raw", P, "0000000000"):find("^STATUS 0"))
      still_answers()
    end))

    it("protobuf: truncated, mistyped, garbage: INTERNAL (13), as grpc-go says", h:guard(function()
      local G = STATS .. "GetStats"
      -- name announced as 16 bytes, 3 follow
      assert.truthy(api.py("call", G, "0a10616263"):find("^ERR 13 grpc: error unmarshalling request"))
      -- name (a string) sent as a varint
      assert.truthy(api.py("call", G, "0810"):find("^ERR 13 "))
      -- name sent as a fixed32
      assert.truthy(api.py("call", G, "0d01020304"):find("^ERR 13 "))
      -- field number 0, a bad wire type, a varint that never ends
      assert.truthy(api.py("call", G, "0000"):find("^ERR 13 "))
      assert.truthy(api.py("call", G, "0f"):find("^ERR 13 "))
      assert.truthy(api.py("call", G, "08ffffffffffffffffffff"):find("^ERR 13 "))
      assert.truthy(api.py("call", HANDLER .. "AlterInbound", "1205"):find("^ERR 13 "))
      -- unknown fields are skipped, as protobuf says
      assert.truthy(api.py("call", STATS .. "QueryStats", "a80601"):find("^OK"))
      still_answers()
    end))

    it("AlterInbound operations that cannot be: UNKNOWN (2) with what is wrong", h:guard(function()
      local line = api.py("add", "vmess-in", "not-a-uuid", "bob@e2e")
      assert.truthy(line:find("^ERR 2 .*account id 'not%-a%-uuid' is not a UUID"), line)
      line = api.py("add", "vmess-in", E.uuid():sub(1, 30), "bob@e2e")
      assert.truthy(line:find("^ERR 2 .*is not a UUID"), line)
      line = api.py("add", "vmess-in", E.uuid(), "")
      assert.truthy(line:find("^ERR 2 .*the user has no email"), line)
      line = api.py("add", "vmess-in", E.uuid(), "bob@e2e", "0", "0", "v2ray.core.proxy.vless.Account")
      assert.truthy(line:find("^ERR 2 .*luaray serves VMess only"), line)
      line = api.py("remove", "vmess-in", "")
      assert.truthy(line:find("^ERR 2 .*Email must not be empty"), line)
      line = api.py("op", "vmess-in", "v2ray.core.app.proxyman.command.Nope", "")
      assert.truthy(line:find("^ERR 2 AlterInbound: unknown operation"), line)
      line = api.py("op", "vmess-in", "", "")
      assert.truthy(line:find("^ERR 2 AlterInbound: unknown operation"), line)
      -- an AddUserOperation whose bytes are no message / a user without account
      line = api.py("op", "vmess-in", "v2ray.core.app.proxyman.command.AddUserOperation", "0a05")
      assert.truthy(line:find("^ERR 2 AlterInbound: the AddUserOperation does not decode"), line)
      line = api.py("op", "vmess-in", "v2ray.core.app.proxyman.command.AddUserOperation", "0a00")
      assert.truthy(line:find("^ERR 2 .*the user has no account"), line)
      still_answers()
    end))

    it("a client over the connection cap pushes out the oldest idle one; the API still answers", h:guard(function()
      local PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" .. "\0\0\0\4\0\0\0\0\0"
      local conns = {}
      for i = 1, 70 do
        conns[i] = assert(E.tcp_connect("127.0.0.1", api_port))
        assert(conns[i]:send(PREFACE))
      end
      assert(E.wait_log(srv, "64 connections; "))
      -- the first ones went
      assert.is_truthy(wait_closed(conns[1], 5), "the oldest connection stayed open")
      still_answers()
      for _, s in ipairs(conns) do s:close() end
    end))
  end)

  describe("config", function()
    local function check(extra)
      local text = E.luaray_server_script { port = srv_port, users = { { id = ID } }, extra = extra }
      local file = h:write("check-" .. E.uuid():sub(1, 8) .. ".lua", text)
      return h:exec("luaray-check", { E.luaray_bin(), "-t", "-c", file })
    end

    it("luaray -t refuses a bad luaray.api with file:line", h:guard(function()
      local cases = {
        { "luaray.api { }", "'listen'" },
        { 'luaray.api { listen = "nowhere" }', "listen" },
        { 'luaray.api { listen = "127.0.0.1:1", token = "x" }', "token" },
        { 'luaray.api { listen = "127.0.0.1:1" }\nluaray.api { listen = "127.0.0.1:2" }', "called twice" },
        { ('luaray.api { listen = "127.0.0.1:%d" }'):format(srv_port), "already used by inbound 'vmess-in'" },
        { 'luaray.metrics { listen = "127.0.0.1:3" }\nluaray.api { listen = "127.0.0.1:3" }',
          "already used by luaray.metrics" },
      }
      for _, c in ipairs(cases) do
        local rc, out = check(c[1])
        assert.are.equal(1, rc, c[1] .. ": " .. out)
        assert.truthy(out:find(c[2], 1, true), c[1] .. ": " .. out)
        assert.truthy(out:find("%.lua:%d+:"), "no file:line: " .. out)
      end
      assert.are.equal(0, (check('luaray.api { listen = "127.0.0.1:4" }')))
    end))

    it("a start whose API address cannot listen fails with file:line", h:guard(function()
      local text = E.luaray_server_script {
        port = E.free_port(), users = { { id = ID } },
        extra = ('luaray.api { listen = "127.0.0.1:%d" }'):format(api_port) } -- taken
      local file = h:write("taken.lua", text)
      local rc, out = h:exec("luaray-taken", { E.luaray_bin(), "-c", file })
      assert.are_not.equal(0, rc, out)
      assert.truthy(out:find("taken%.lua:%d+: api: cannot listen on 127%.0%.0%.1:" .. api_port), out)
    end))

    it("SIGHUP moves the API to a new address, and stops it when luaray.api is gone", h:guard(function()
      local port = E.free_port()
      local a1, a2 = E.free_port(), E.free_port()
      local function script(extra)
        return (E.luaray_server_script { port = port, users = { { id = ID, email = EMAIL } }, extra = extra })
      end
      local text, opts = E.luaray_server_script { port = port, users = { { id = ID, email = EMAIL } },
                                                  extra = ('luaray.api { listen = "127.0.0.1:%d" }'):format(a1) }
      opts.ports[#opts.ports + 1] = { "127.0.0.1", a1 }
      local p = h:luaray_obs("luaray-api-reload", text, opts)
      assert.truthy(api_of(h, a1).py("sys"):find("^OK"))
      local function reload(extra, n)
        local f = assert(io.open(p.config, "w"))
        f:write(script(extra))
        f:close()
        assert(psignal.kill(p.pid, psignal.SIGHUP))
        assert(E.wait_log(p, "reload: generation %d+ serving", n, 15))
      end
      reload(('luaray.api { listen = "127.0.0.1:%d" }'):format(a2), 1)
      assert.truthy(E.wait_port("127.0.0.1", a2, 5))
      assert.truthy(api_of(h, a2).py("sys"):find("^OK"))
      assert.is_falsy(E.wait_port("127.0.0.1", a1, 0.5))
      -- the same address: the listener stays
      reload(('luaray.api { listen = "127.0.0.1:%d" }'):format(a2), 2)
      assert.truthy(api_of(h, a2).py("sys"):find("^OK"))
      reload("", 3)
      assert(E.wait_log(p, "api: no longer served"))
      assert.is_falsy(E.wait_port("127.0.0.1", a2, 0.5))
      assert.is_true(h:alive(p))
    end))
  end)
end)

describe("v2ray API: AlterInbound (live users)", function()
  -- needs daemon/live.h's lr_live_add / lr_live_remove (branch main)
  local h = E.new("api-live")
  local echo, srv_port, api_port, api
  local ID, NEW_ID = E.uuid(), E.uuid()
  local NEW = "carol@e2e"

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    srv_port, api_port = E.free_port(), E.free_port()
    local text, opts = E.luaray_server_script {
      port = srv_port, users = { { id = ID, email = "alice@e2e" } },
      extra = ('luaray.api { listen = "127.0.0.1:%d" }'):format(api_port) }
    opts.ports[#opts.ports + 1] = { "127.0.0.1", api_port }
    h:luaray("luaray-api-live", text, opts)
    api = api_of(h, api_port)
  end))

  lazy_teardown(function() h:cleanup() end)

  -- through SOCKS port `socks`: an echo of n bytes works -> true, or false, err
  local function works(socks, n)
    local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)
    if not s then return false, err end
    return E.transfer_echo(s, n or 4 * KiB, { timeout = 5 })
  end

  it("AddUserOperation: the new user works at once (luaray and v2ray 4.34 clients); " ..
     "RemoveUserOperation: refused, its open connection closed", h:guard(function()
    local csocks = E.free_port()
    local ctext, copts = E.luaray_client_script { socks_port = csocks, server_port = srv_port, id = NEW_ID }
    h:luaray("luaray-client", ctext, copts)
    local vsocks = E.free_port()
    h:v2ray("v2ray-client", E.v2ray_client_config { socks_port = vsocks, server_port = srv_port, id = NEW_ID })
    -- not a user yet
    assert.is_false((works(csocks)))

    local line = api.py("add", "vmess-in", NEW_ID, NEW, "0", "0")
    assert.are.equal("OK ", line)
    assert.is_truthy(eventually(function() return works(csocks) end, 5), "the added user was refused")
    assert.is_truthy(works(vsocks, 64 * KiB))
    -- counted under its email, read through v2ctl
    assert.is_truthy(eventually(function()
      return (api.query(NEW, false)["user>>>" .. NEW .. ">>>traffic>>>uplink"] or 0) >= 64 * KiB
    end))
    -- twice: v2ray's "already exists"
    assert.truthy(api.py("add", "vmess-in", E.uuid(), NEW):find("^ERR 2 .*already exists"))
    -- an inbound that is not there
    assert.truthy(api.py("add", "no-such-inbound", E.uuid(), "dave@e2e"):find("^ERR 2 "))

    -- an open connection of the user, then the removal
    local open = assert(E.socks5_connect("127.0.0.1", csocks, "127.0.0.1", echo.port))
    assert(E.transfer_echo(open, 1024, { close = false }))
    assert.are.equal("OK ", api.py("remove", "vmess-in", NEW))
    assert.is_truthy(wait_closed(open, 10), "the removed user's connection stayed open")
    open:close()
    assert.is_truthy(eventually(function() return not works(csocks) end, 5), "the removed user still works")
    assert.is_false((works(vsocks)))
    -- removed already: v2ray's "not found"
    assert.truthy(api.py("remove", "vmess-in", NEW):find("^ERR 2 "))
    -- an empty tag names every VMess inbound
    assert.are.equal("OK ", api.py("add", "", NEW_ID, NEW))
    assert.is_truthy(eventually(function() return works(csocks) end, 5))
    assert.are.equal("OK ", api.py("remove", "", NEW))
  end))
end)
