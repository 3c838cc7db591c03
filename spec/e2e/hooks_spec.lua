-- Lua hooks end to end (design.md 2, style.md 7; issue "The Lua layer",
-- items 1 and 2): every hook's contract and context, failing hooks,
-- containment (budget, memory cap, restricted environment), and the
-- examples routing.lua and slow_hooks.lua.
--
-- Topology: a luaray server per test (VMess inbound for users alice, level 3,
-- and bob; a SOCKS5 inbound; outbounds direct, direct2 and a blackhole)
-- with the hooks under test, reached either directly through its SOCKS5
-- inbound or through long-lived luaray clients (SOCKS5 -> VMess as alice or
-- bob).  Destinations: the echo server, and recording servers that never
-- answer ("targets": a connection reaching one is counted, so "refused
-- without reaching the target" is observable).
--
-- Hooks report what they saw with print("OBS", ...), which the server
-- writes to a file of its own (h:luaray_obs); the specs read it once
-- the server has stopped, and one spec checks that hook output is written
-- while the daemon runs (not held in a buffer until it exits).
local E = require "e2e.support"
local psignal = require "posix.signal"
local socket = require "socket"

local KiB = 1024

---------------------------------------------------------------------------
-- Helpers

local read_file, count_matches, wait_log = E.read_file, E.count_matches, E.wait_log
local observations = E.observations
-- How long a wait_log below waits for the log: 15 s, more than E.wait_log's
-- default (a reload under AddressSanitizer on a loaded 2-core machine has
-- taken more than 5; what is checked is what the log says)
local LOG_WAIT = 15

-- Access-log lines (one per connection).
local function access_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(" up=%d+ down=%d+ dur=") then out[#out + 1] = line end
  end
  return out
end

-- A TCP connection to ph:pp from source address `src` (any 127/8 address).
local function tcp_from(src, ph, pp)
  local s = socket.tcp4()
  s:settimeout(3)
  assert(s:bind(src, 0))
  local ok, err = s:connect(ph, pp)
  if not ok then s:close(); return nil, err end
  return s
end

-- SOCKS5 greeting on a connected socket: true, or nil, why it failed.
local function socks_greet(s)
  s:settimeout(3)
  local ok, err = s:send("\5\1\0")
  if not ok then return nil, "send: " .. err end
  local r, rerr = s:receive(2)
  if not r then return nil, rerr end
  if r ~= "\5\0" then return nil, "unexpected greeting reply" end
  return true
end

-- Waits until s is closed by the peer (EOF or reset) with no data:
-- "closed", or "data" / "open" (still open after timeout).
local function wait_closed(s, timeout)
  s:settimeout(timeout or 3)
  local d, err, partial = s:receive(1)
  if d or (partial and #partial > 0) then return "data" end
  if err == "timeout" then return "open" end
  return "closed"
end

local function hup(p) assert(psignal.kill(p.pid, psignal.SIGHUP)) end


---------------------------------------------------------------------------

describe("Lua hooks", function()
  local h = E.new("hooks")
  local echo, t1, t2
  local sp, ssocks                 -- the server's VMess and SOCKS5 ports (a server per test)
  local calice, cbob               -- SOCKS5 ports of the clients (alice, bob)
  local ALICE, BOB = E.uuid(), E.uuid()
  local srv

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    t1 = h:capture_server { name = "target1" }
    t2 = h:capture_server { name = "target2" }
    sp, ssocks = E.free_port(), E.free_port()
    calice, cbob = E.free_port(), E.free_port()
    local text, o = E.luaray_client_script { socks_port = calice, server_port = sp, id = ALICE,
                                             security = "aes-128-gcm" }
    h:luaray("client-alice", text, o)
    text, o = E.luaray_client_script { socks_port = cbob, server_port = sp, id = BOB,
                                       security = "chacha20-poly1305" }
    h:luaray("client-bob", text, o)
  end))

  lazy_teardown(function() h:cleanup() end)

  after_each(function()
    if srv then h:stop_luaray(srv); srv = nil end
  end)

  local OBS = [[
local function obs(...)
  local t = { "OBS" }
  for i = 1, select("#", ...) do t[#t + 1] = tostring((select(i, ...))) end
  print(table.concat(t, "\t"))
end
]]

  local function fill(text)
    return (text:gsub("@(%u+%d?)@", function(k)
      local v = ({ ECHO = echo.port, T1 = t1.port, T2 = t2.port, SP = sp, SSOCKS = ssocks })[k]
      assert(v, "unknown placeholder " .. k)
      return tostring(v)
    end))
  end

  -- Starts the server with `hooks` (and `routes`) -> proc.
  local function start(hooks, routes, o)
    o = o or {}
    local lines = {
      ('luaray.log { level = %q, access = true }'):format(o.log_level or "info"),
      ('luaray.user { id = %q, email = "alice@e2e", level = 3 }'):format(ALICE),
      ('luaray.user { id = %q, email = "bob@e2e" }'):format(BOB),
      ('luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true, ' ..
       'handshake_timeout = 2 }'):format(sp),
      ('luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }'):format(ssocks),
      'luaray.outbound "direct" { type = "direct" }',
      'luaray.outbound "block" { type = "blackhole" }',
      'luaray.outbound "direct2" { type = "direct" }',
      fill(routes or ""),
      OBS,
      fill(hooks or ""),
    }
    srv = h:luaray_obs("server", table.concat(lines, "\n") .. "\n", { ports = { sp, ssocks } })
    return srv
  end

  -- Stops the server; -> its log followed by its standard output (flushed
  -- at exit).
  local function finish()
    h:stop_luaray(srv)
    local text = read_file(srv.log) .. "\n" .. read_file(srv.out)
    srv = nil
    return text
  end

  local function echo_via(port, n, dst)
    local s, err = E.socks5_connect("127.0.0.1", port, dst or "127.0.0.1", echo.port)
    if not s then return false, "socks5 connect: " .. tostring(err) end
    return E.transfer_echo(s, n or 16 * KiB, { timeout = 10 })
  end

  -- Opens a connection through the SOCKS5 port `port` to capture server
  -- `cap` (host `host`), sends a line, and waits: true when it reached the
  -- target (within o.wait, 3 s), false when it did not (o.quiet, 0.5 s,
  -- after the refusal).  o.log_pattern: a pattern that appears once more in
  -- the server log when it refuses; "not reached" is judged once it does.
  local function reaches(port, cap, host, o)
    o = o or {}
    local before = cap:count()
    local nlog = o.log_pattern and count_matches(read_file(srv.log), o.log_pattern) or 0
    local s = E.socks5_connect("127.0.0.1", port, host or "127.0.0.1", cap.port, nil, nil, 3)
    if s then s:send("probe\n") end
    local deadline = E.now() + (o.wait or 3)
    local reached = false
    for _ = 1, 1000 do
      if cap:count() > before then reached = true; break end
      if o.log_pattern and count_matches(read_file(srv.log), o.log_pattern) > nlog then break end
      if E.now() >= deadline then break end
      E.sleep(0.02)
    end
    if not reached then
      E.sleep(o.quiet or 0.5)
      reached = cap:count() > before
    end
    if s then s:close() end
    return reached
  end

  local function assert_alive()
    assert.is_true(h:alive(srv), "the luaray server died (" .. tostring(srv.status) .. " " ..
                                 tostring(srv.code) .. ")")
  end

  -------------------------------------------------------------------------
  describe("contracts", function()
    it("a config with no hooks relays on both inbounds and runs no hook", h:guard(function()
      start(nil)
      assert.is_true(echo_via(ssocks, 64 * KiB))
      assert.is_true(echo_via(calice, 64 * KiB))
      assert.is_true(reaches(ssocks, t1))
      local text = finish()
      assert.equal(0, #observations(text))
      assert.is_nil(text:find("hook", 1, true), "the log mentions a hook")
    end))

    it("accept: false refuses a client address before anything is read; ctx has src, inbound, network",
      h:guard(function()
      start [[
luaray.on("accept", function(ctx)
  obs("accept", ctx.src.ip, ctx.src.port, ctx.inbound, ctx.network, type(ctx.id), ctx.user, ctx.dst)
  if ctx.src.ip == "127.0.0.2" then return false, "no .2" end
  return true
end)
]]
      -- refused source: closed at once, the greeting gets no answer
      local s = assert(tcp_from("127.0.0.2", "127.0.0.1", ssocks))
      local _, refused_port = s:getsockname()
      local ok = socks_greet(s)
      assert.is_nil(ok, "a refused client got a SOCKS5 greeting reply")
      s:close()
      -- an allowed source from a chosen address works
      local a = assert(tcp_from("127.0.0.1", "127.0.0.1", ssocks))
      local _, allowed_port = a:getsockname()
      a:close()
      assert.is_true(echo_via(ssocks, 16 * KiB))
      assert.is_true(reaches(ssocks, t1))
      assert.is_true(echo_via(calice, 16 * KiB))   -- the VMess inbound runs it too
      local text = finish()
      local seen = {}
      for _, o in ipairs(observations(text, "accept")) do
        seen[o[2] .. ":" .. o[3]] = o
        assert.equal("tcp", o[5])
        assert.equal("number", o[6])
        assert.equal("nil", o[7], "accept: ctx.user is set")
        assert.equal("nil", o[8], "accept: ctx.dst is set")
      end
      local r = seen["127.0.0.2:" .. refused_port]
      assert.is_truthy(r, "no accept call for the refused client 127.0.0.2:" .. refused_port)
      assert.equal("socks-in", r[4])
      assert.is_truthy(seen["127.0.0.1:" .. allowed_port], "no accept call for 127.0.0.1:" .. allowed_port)
      local vm = false
      for _, o in pairs(seen) do if o[4] == "vmess-in" then vm = true end end
      assert.is_true(vm, "no accept call on the VMess inbound")
      -- the refused client never became a connection
      assert.is_nil(text:find("127.0.0.2:" .. refused_port .. " socks-in", 1, true))
    end))

    it("auth: false refuses a VMess user without reaching the target; ctx has the user and destination",
      h:guard(function()
      start [[
luaray.on("auth", function(ctx)
  local u = ctx.user
  obs("auth", ctx.inbound, u and u.email, u and u.level, ctx.src.ip, type(ctx.src.port),
      ctx.dst.host, ctx.dst.port, ctx.network, ctx.id)
  if u and u.email == "bob@e2e" then return false, "bob is suspended" end
end)
]]
      assert.is_true(echo_via(calice, 32 * KiB))
      assert.is_true(reaches(calice, t1))
      assert.is_false(reaches(cbob, t1, nil, { log_pattern = "bob@e2e tcp [^\n]* up=0" }))
      assert.is_true(echo_via(ssocks, 8 * KiB, "localhost"))   -- no user on SOCKS5
      local text = finish()
      local by = {}
      for _, o in ipairs(observations(text, "auth")) do by[#by + 1] = o end
      local alice, bob, socks
      for _, o in ipairs(by) do
        if o[3] == "alice@e2e" and not alice then alice = o end
        if o[3] == "bob@e2e" then bob = o end
        if o[2] == "socks-in" then socks = o end
      end
      assert.is_truthy(alice, "no auth call for alice")
      assert.same({ "vmess-in", "alice@e2e", "3", "127.0.0.1", "number", "127.0.0.1",
                    tostring(echo.port), "tcp" }, { unpack(alice, 2, 9) })
      assert.is_truthy(tonumber(alice[10]) and tonumber(alice[10]) > 0, "ctx.id " .. tostring(alice[10]))
      assert.is_truthy(bob, "no auth call for bob")
      assert.equal("0", bob[4])
      assert.equal(tostring(t1.port), bob[8])
      assert.is_truthy(socks, "no auth call on the SOCKS5 inbound")
      assert.equal("nil", socks[3])
      assert.equal("localhost", socks[7])
      -- the refusal is in bob's access line
      local line
      for _, l in ipairs(access_lines(text)) do if l:find("bob@e2e", 1, true) then line = l end end
      assert.is_truthy(line, "no access line for bob")
      assert.is_truthy(line:find("refused by auth hook", 1, true), line)
      -- ids are per connection
      local ids = {}
      for _, o in ipairs(by) do
        assert.is_nil(ids[o[10]], "two auth calls with ctx.id " .. o[10])
        ids[o[10]] = true
      end
    end))

    it("refusal reasons reach the access log: auth's reason, the unknown route tag", h:guard(function()
      start [[
luaray.on("auth", function(ctx)
  if ctx.user and ctx.user.email == "bob@e2e" then return false, "bob is suspended" end
end)
luaray.on("route", function(ctx)
  if ctx.dst.host == "nosuch.test" then return "nosuch" end
end)
]]
      assert.is_false(reaches(cbob, t1, nil, { log_pattern = "bob@e2e tcp [^\n]* up=0" }))
      assert.is_false(reaches(ssocks, t1, "nosuch.test", { log_pattern = "nosuch%.test:%d+" }))
      local text = finish()
      local bob, nosuch
      for _, l in ipairs(access_lines(text)) do
        if l:find("bob@e2e", 1, true) then bob = l end
        if l:find("nosuch.test", 1, true) then nosuch = l end
      end
      assert.is_truthy(bob and nosuch, "access lines missing:\n" .. text)
      local problems = {}
      if not bob:find("bob is suspended", 1, true) then
        problems[#problems + 1] = "the auth hook's reason is not in the access line: " .. bob
      end
      local after = nosuch:find("route hook", 1, true)
      if not (after and nosuch:find("nosuch", after, true)) then
        problems[#problems + 1] = "the unknown tag is not named in the access line: " .. nosuch
      end
      assert.are.same({}, problems)
    end))

    it("a refusal on the server closes the client's SOCKS5 connection (luaray client -> server)",
      h:guard(function()
      start [[
luaray.on("auth", function(ctx)
  if ctx.user and ctx.user.email == "bob@e2e" then return false, "bob is suspended" end
end)
]]
      local s = assert(E.socks5_connect("127.0.0.1", cbob, "127.0.0.1", echo.port))
      s:send("hello\n")
      assert(wait_log(srv, "refused by auth hook", 1, LOG_WAIT))
      local how = wait_closed(s, 3)
      s:close()
      assert.equal("closed", how, "the server refused the connection at once, but the luaray " ..
        "client kept the SOCKS5 side open (3 s)")
    end))

    it("route: a tag picks the outbound (over the rules), nil falls through to the rules, " ..
       "an unknown tag or a non-string refuses", h:guard(function()
      start([[
luaray.on("route", function(ctx)
  local u = ctx.user
  obs("route", ctx.id, ctx.inbound, u and u.email, u and u.level, ctx.src.ip, ctx.dst.host, ctx.dst.port,
      ctx.network)
  if ctx.dst.host == "nosuch.test" then return "nosuch" end
  if ctx.dst.host == "number.test" then return 42 end
  if ctx.dst.port == @T1@ then return "direct2" end
  return nil
end)
]], [[
luaray.route { port = "@T1@", to = "block" }
luaray.route { port = "@T2@", to = "block" }
]])
      assert.is_true(reaches(ssocks, t1), "the hook's tag did not override the rule")
      assert.is_false(reaches(ssocks, t2, nil, { log_pattern = ":" .. t2.port .. " block" }),
        "nil did not fall through to the blocking rule")
      assert.is_true(echo_via(ssocks, 16 * KiB), "nil did not fall through to the default")
      assert.is_false(reaches(ssocks, t1, "nosuch.test", { log_pattern = "nosuch%.test:%d+" }))
      assert.is_false(reaches(ssocks, t1, "number.test", { log_pattern = "number%.test:%d+" }))
      assert.is_true(reaches(calice, t1))
      assert_alive()
      local text = finish()
      local lines = access_lines(text)
      local function line_for(pat)
        for _, l in ipairs(lines) do if l:find(pat) then return l end end
      end
      assert.is_truthy(line_for(":" .. t1.port .. " direct2 "), "no connection to target 1 on direct2")
      assert.is_truthy(line_for(":" .. t2.port .. " block "), "target 2 not routed to block by the rule")
      assert.is_truthy(line_for("nosuch%.test.*route hook failed"), "nosuch.test not refused as a route failure")
      assert.is_truthy(text:find("route hook returned number", 1, true))
      local vm
      for _, o in ipairs(observations(text, "route")) do
        if o[3] == "vmess-in" then vm = o end
      end
      assert.is_truthy(vm, "no route call on the VMess inbound")
      assert.same({ "vmess-in", "alice@e2e", "3", "127.0.0.1", "127.0.0.1", tostring(t1.port), "tcp" },
                  { unpack(vm, 3, 9) })
    end))

    it("route: a hook reading ctx.sniffed routes a TLS ClientHello by its SNI; a hook that never " ..
       "mentions it leaves the dial undelayed", h:guard(function()
      local function be16(n) return string.char(math.floor(n / 256), n % 256) end
      local function client_hello(name)
        local entry = "\0" .. be16(#name) .. name
        local list = be16(#entry) .. entry
        local exts = "\0\0" .. be16(#list) .. list
        local body = "\3\3" .. ("r"):rep(32) .. "\0" .. be16(2) .. "\19\1" .. "\1\0" .. be16(#exts) .. exts
        local hs = "\1\0" .. be16(#body) .. body
        return "\22\3\1" .. be16(#hs) .. hs
      end
      -- through the SOCKS5 inbound to target 1 by IP, with this first flight
      local function send_hello(name)
        local before = t1:count()
        local s = assert(E.socks5_connect("127.0.0.1", ssocks, "127.0.0.1", t1.port, nil, nil, 3))
        local hello = client_hello(name)
        assert(s:send(hello))
        local deadline = E.now() + 2
        while t1:count() == before and E.now() < deadline do E.sleep(0.02) end
        E.sleep(0.2)
        s:close()
        if t1:count() == before then return false end
        return t1:bytes(before + 1) == hello
      end
      -- the SOCKS5 reply to a CONNECT to a port nobody listens on
      local closed = E.free_port()
      local function reply_to_closed_port()
        local s, err = E.socks5_connect("127.0.0.1", ssocks, "127.0.0.1", closed, nil, nil, 3)
        if s then s:close(); return "success" end
        return tostring(err)
      end

      start([[
luaray.on("route", function(ctx)
  if ctx.sniffed and ctx.sniffed.host == "blocked.example" then return "block" end
end)
]])
      assert.is_false(send_hello("blocked.example"), "the SNI blocked.example reached the target")
      assert.is_true(send_hello("fine.example"), "the SNI fine.example did not reach the target intact")
      -- sniffing replies success first (the first bytes come after it)
      assert.equal("success", reply_to_closed_port())
      h:stop_luaray(srv)
      srv = nil

      start([[
luaray.on("route", function(ctx) if ctx.dst.port == 1 then return "block" end end)
]])
      -- no sniffing: the dial comes first, and its failure is the reply
      assert.is_truthy(reply_to_closed_port():find("socks5 reply 5", 1, true))
      assert.is_true(send_hello("blocked.example"))
      assert_alive()
    end))

    it("connect and close: same ctx.id, the outbound, and s.up / s.down / s.duration_ms / s.reason",
      h:guard(function()
      start [[
luaray.on("connect", function(ctx)
  obs("connect", ctx.id, ctx.outbound, ctx.inbound, ctx.user and ctx.user.email, ctx.dst.host, ctx.dst.port)
end)
luaray.on("close", function(ctx, s)
  obs("close", ctx.id, ctx.outbound, ctx.inbound, ctx.user and ctx.user.email, s.up, s.down,
      s.duration_ms, type(s.reason), s.reason)
end)
]]
      local N1, N2 = 100000, 54321
      local s = assert(E.socks5_connect("127.0.0.1", calice, "127.0.0.1", echo.port))
      E.sleep(0.3)                                -- held open before any byte
      assert.is_true(E.transfer_echo(s, N1, { timeout = 10 }))
      s = assert(E.socks5_connect("127.0.0.1", ssocks, "localhost", echo.port))
      assert.is_true(E.transfer_echo(s, N2, { timeout = 10, half_close = true }))
      assert(wait_log(srv, " up=%d+ down=%d+ dur=", 2, LOG_WAIT))
      local text = finish()
      local conns = {}
      for _, o in ipairs(observations(text, "connect")) do conns[o[2]] = o end
      local closes = observations(text, "close")
      assert.equal(2, #closes, text)
      local seen_users = {}
      for _, c in ipairs(closes) do
        local id = c[2]
        local cn = conns[id]
        assert.is_truthy(cn, "close without a connect for id " .. id)
        assert.equal("direct", c[3])
        assert.equal("direct", cn[3])
        assert.equal(cn[4], c[4])
        local want = c[4] == "vmess-in" and N1 or N2
        assert.equal(want, tonumber(c[6]), "s.up")
        assert.equal(want, tonumber(c[7]), "s.down")
        local ms = tonumber(c[8])
        assert.is_truthy(ms and ms >= 0 and ms < 10000, "s.duration_ms " .. tostring(c[8]))
        if c[4] == "vmess-in" then
          assert.is_true(ms >= 250, "s.duration_ms " .. ms .. " for a connection held 300 ms")
          assert.equal("alice@e2e", c[5])
        else
          assert.equal("nil", c[5])
          assert.equal("localhost", cn[6])
        end
        assert.equal("string", c[9])
        assert.is_true(#c[10] > 0, "empty s.reason")
        seen_users[c[4]] = true
      end
      assert.is_true(seen_users["vmess-in"] and seen_users["socks-in"])
    end))

    it("reload: called with each new generation number after SIGHUP, not at start", h:guard(function()
      start [[
luaray.on("reload", function(gen) obs("reload", type(gen), gen) end)
]]
      for i = 1, 2 do
        hup(srv)
        assert(wait_log(srv, "reload: generation %d+ serving", i, LOG_WAIT))
      end
      assert.is_true(echo_via(ssocks, 4 * KiB))
      local text = finish()
      local gens = {}
      for g in text:gmatch("reload: generation (%d+) serving") do gens[#gens + 1] = g end
      local calls = observations(text, "reload")
      assert.equal(2, #calls)
      for i, c in ipairs(calls) do
        assert.equal("number", c[2])
        assert.equal(gens[i], c[3])
      end
      assert.same({ "2", "3" }, gens)
    end))

    it("failing hooks: accept/auth/route errors refuse the connection; connect/close errors are only logged",
      h:guard(function()
      start [[
luaray.on("accept", function(ctx)
  if ctx.src.ip == "127.0.0.3" then error("accept boom") end
end)
luaray.on("auth", function(ctx)
  if ctx.user and ctx.user.email == "bob@e2e" then error("auth boom") end
end)
luaray.on("route", function(ctx)
  if ctx.dst.host == "err.test" then error("route boom") end
end)
luaray.on("connect", function(ctx) error("connect boom") end)
luaray.on("close", function(ctx, s) error("close boom") end)
]]
      local s = assert(tcp_from("127.0.0.3", "127.0.0.1", ssocks))
      assert.is_nil(socks_greet(s), "the accept hook failed but the client was served")
      s:close()
      assert.is_false(reaches(cbob, t1, nil, { log_pattern = "auth hook failed" }))
      assert.is_false(reaches(ssocks, t1, "err.test", { log_pattern = "route hook failed" }))
      -- connect and close fail on every connection, which still works
      assert.is_true(echo_via(calice, 64 * KiB))
      assert.is_true(echo_via(ssocks, 64 * KiB))
      assert(wait_log(srv, "close hook failed", 2, LOG_WAIT))
      assert_alive()
      local text = finish()
      for _, what in ipairs { "accept hook failed", "accept boom", "auth boom", "route boom",
                              "connect hook failed", "connect boom", "close hook failed", "close boom" } do
        assert.is_truthy(text:find(what, 1, true), "not in the log: " .. what)
      end
      -- and each hook error names the config line
      assert.is_truthy(text:find("server[-%d]*%.lua:%d+: connect boom"), "no file:line for the connect hook error")
    end))

    it("hook output (print) is written while the daemon runs, not held until it exits", h:guard(function()
      start [[
luaray.on("accept", function(ctx) obs("accept-now", ctx.src.port) end)
]]
      assert.is_true(echo_via(ssocks, 1 * KiB))
      local ok, err = wait_log({ log = srv.out, name = srv.name .. " stdout" }, "OBS\taccept%-now", 1, 3)
      assert.is_truthy(ok, "print output from a hook is not written 3 s later (a block-buffered " ..
        "stdout shows it only when the daemon exits): " .. tostring(err))
    end))
  end)

  -------------------------------------------------------------------------
  describe("containment", function()
    -- Every trigger is a destination host; other connections run the same
    -- hook and must be served.
    local RUNAWAY = [[
luaray.on("route", function(ctx)
  local host = ctx.dst.host
  if host == "spin.test" then while true do end end
  if host == "pspin.test" then
    while true do pcall(function() while true do end end) end
  end
  if host == "xspin.test" then
    while true do xpcall(function() while true do end end, function(e) return e end) end
  end
  if host == "strbomb.test" then local s = "x" while true do s = s .. s end end
  if host == "tblbomb.test" then local t = {} for i = 1, 1e9 do t[i] = { i } end end
  if host == "io.test" then return io.open("/etc/hostname") and "direct" end
  if host == "exec.test" then os.execute("true") end
  if host == "ffi.test" then require("ffi") end
  if host == "loadstring.test" then loadstring("return 1")() end
  if host == "global.test" then stray_global = 1 end
  return nil
end)
luaray.on("accept", function(ctx)
  if ctx.src.ip == "127.0.0.4" then while true do end end
end)
luaray.on("auth", function(ctx)
  if ctx.user and ctx.user.email == "bob@e2e" then while true do pcall(error, "x") end end
end)
]]

    -- A refused trigger, then a normal connection served promptly.
    local function refused_then_served(host, log_pattern)
      local t0 = E.now()
      assert.is_false(reaches(ssocks, t1, host, { log_pattern = log_pattern or (host:gsub("%.", "%%.") .. ":%d+"),
                                                   quiet = 0.2 }),
        host .. " reached the target")
      local refused_after = E.now() - t0
      local t1s = E.now()
      local ok, err = echo_via(ssocks, 16 * KiB)
      if not ok then
        E.sleep(0.2)
        local alive = h:alive(srv)
        error(("the next connection after %s failed (%s); the server %s"):format(host, tostring(err),
          alive and "is running" or ("exited: " .. tostring(srv.status) .. " " .. tostring(srv.code))), 0)
      end
      assert.is_true(E.now() - t1s < 1.0, "the daemon was slow to serve after " .. host)
      assert_alive()
      return refused_after
    end

    it("a runaway route hook (while true do end) is stopped by the budget and refused", h:guard(function()
      start(RUNAWAY)
      local took = refused_then_served("spin.test")
      assert.is_true(took < 2.5, ("refusal took %.2f s"):format(took))
      local text = assert(wait_log(srv, "hook exceeded its budget", 1, LOG_WAIT))
      assert.is_truthy(text:find("server[-%d]*%.lua:%d+: luaray: hook exceeded its budget"))
    end))

    it("a runaway hook cannot catch the budget error: pcall and xpcall in a loop", h:guard(function()
      start(RUNAWAY)
      refused_then_served("pspin.test")
      refused_then_served("xspin.test")
      assert(wait_log(srv, "hook exceeded its budget", 2, LOG_WAIT))
    end))

    it("a runaway accept hook and a runaway auth hook are stopped; the daemon stays responsive",
      h:guard(function()
      start(RUNAWAY)
      local t0 = E.now()
      local s = assert(tcp_from("127.0.0.4", "127.0.0.1", ssocks))
      assert.is_nil(socks_greet(s))
      s:close()
      assert.is_true(E.now() - t0 < 2.5)
      assert.is_true(echo_via(ssocks, 16 * KiB))
      assert.is_false(reaches(cbob, t1, nil, { log_pattern = "auth hook failed" }))
      assert.is_true(echo_via(calice, 16 * KiB))
      assert(wait_log(srv, "hook exceeded its budget", 2, LOG_WAIT))
      assert_alive()
    end))

    it("a memory bomb (doubling a string) hits the 64 MiB cap: refused, the daemon serves on",
      h:guard(function()
      start(RUNAWAY)
      for _ = 1, 3 do refused_then_served("strbomb.test", "route hook failed") end
      assert(wait_log(srv, "not enough memory", 3, LOG_WAIT))
    end))

    it("a memory bomb (a table of tables) hits the 64 MiB cap: refused, the daemon serves on",
      h:guard(function()
      -- filling 64 MiB with small tables takes well under the default
      -- 0.25 s on a quiet machine, but not on a busy one (or under ASan),
      -- where the time budget fired first and "not enough memory" was
      -- never logged: this config gives its hooks 10 s, so the cap is what
      -- stops the bomb (the instruction budget is the default)
      start("luaray.budget { seconds = 10 }\n" .. RUNAWAY)
      refused_then_served("tblbomb.test", "route hook failed")
      for i = 1, 3 do
        local ok, err = echo_via(ssocks, 4 * KiB)
        if not ok then E.sleep(0.2) end
        assert_alive()
        assert.is_true(ok, "connection " .. i .. " after the bomb: " .. tostring(err))
      end
      refused_then_served("tblbomb.test", "route hook failed")
      assert(wait_log(srv, "not enough memory", 2, LOG_WAIT))
    end))

    it("the restricted environment at run time: io, os.execute, require 'ffi', loadstring and " ..
       "new globals fail the hook (refused, file:line logged)", h:guard(function()
      start(RUNAWAY)
      local want = {
        ["io.test"] = "undefined global 'io'",
        ["exec.test"] = "execute",
        ["ffi.test"] = "module 'ffi' is not available",
        ["loadstring.test"] = "undefined global 'loadstring'",
        ["global.test"] = "assignment to undeclared global 'stray_global'",
      }
      for host in pairs(want) do refused_then_served(host, host:gsub("%.", "%%.") .. ":%d+") end
      local text = read_file(srv.log)
      for host, msg in pairs(want) do
        assert.is_truthy(text:find("server[-%d]*%.lua:%d+: [^\n]*" .. msg:gsub("%p", "%%%0")),
          host .. ": no 'server.lua:LINE: ..." .. msg .. "' in the log")
      end
    end))

    it("the restricted environment at load: luaray -t fails with file:line", h:guard(function()
      local cases = {
        { "local f = io.open('/etc/hostname')", "undefined global 'io'" },
        { "os.execute('true')", "execute" },
        { "local ffi = require 'ffi'", "module 'ffi' is not available" },
        { "local f = loadstring('return 1')", "undefined global 'loadstring'" },
        { "stray = 1", "assignment to undeclared global 'stray'" },
        { "local x = undefined_name", "undefined global 'undefined_name'" },
        { "luaray.on('route', function(ctx) end) luaray.on('route', function() end)",
          "hook 'route' is already set" },
        { "luaray.on('routing', function(ctx) end)", "unknown hook" },
      }
      for i, c in ipairs(cases) do
        local file = h:write(("restricted-%d.lua"):format(i), table.concat({
          'luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1" }',
          'luaray.outbound "direct" { type = "direct" }',
          '',
          c[1],
        }, "\n") .. "\n")
        local code, out = h:exec("check", { E.luaray_bin(), "-t", "-c", file })
        assert.equal(1, code, c[1] .. ": exit code\n" .. out)
        local plain = c[2]:gsub("%p", "%%%0")
        assert.is_truthy(out:find("luaray: " .. file:gsub("%p", "%%%0") .. ":4: [^\n]*" .. plain),
          c[1] .. ": want 'luaray: " .. file .. ":4: ..." .. c[2] .. "', got:\n" .. out)
      end
    end))
  end)

  -------------------------------------------------------------------------
  describe("examples", function()
    local function example(name)
      local text = read_file("examples/" .. name)
      assert.is_true(#text > 0, "examples/" .. name .. " is missing")
      return text
    end

    -- Replaces `from` by `to` exactly once (so an edited example fails loudly).
    local function once(text, from, to)
      local n
      text, n = text:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
      assert.equal(1, n, "expected exactly one '" .. from .. "' in the example")
      return text
    end

    it("examples/routing.lua: rules, the denylist hook and the level-0 restriction", h:guard(function()
      local text = example("routing.lua")
      local ex_socks = E.free_port()
      text = once(text, 'listen = "127.0.0.1:1080"', ('listen = "127.0.0.1:%d"'):format(ex_socks))
      text = once(text, 'listen = "0.0.0.0:10086", allow_private = false',
                        ('listen = "127.0.0.1:%d", allow_private = true'):format(sp))
      local alice_id = text:match('id = "([%x%-]+)", email = "alice@example%.com"')
      local guest_id = text:match('id = "([%x%-]+)", email = "guest@example%.com"')
      assert.is_truthy(alice_id and guest_id)
      srv = h:luaray("example-routing", text, { ports = { ex_socks, sp } })
      -- clients as the example's users
      local ca, cg = E.free_port(), E.free_port()
      local ct, co = E.luaray_client_script { socks_port = ca, server_port = sp, id = alice_id }
      local pa = h:luaray("example-client-alice", ct, co)
      ct, co = E.luaray_client_script { socks_port = cg, server_port = sp, id = guest_id }
      local pg = h:luaray("example-client-guest", ct, co)

      assert.is_true(echo_via(ex_socks, 32 * KiB), "plain traffic through the SOCKS5 inbound")
      assert.is_true(echo_via(ex_socks, 32 * KiB, "localhost"))
      local function blocked(port, host, why)
        assert.is_false(reaches(port, t1, host, { log_pattern = host:gsub("%p", "%%%0") .. ":%d+ block" }),
          host .. " reached the target (" .. why .. ")")
      end
      blocked(ex_socks, "x.ads.example", "domain_suffix rule")
      blocked(ex_socks, "www.doubleclick.net", "domain_keyword rule")
      blocked(ex_socks, "MALWARE.example", "hook denylist, case-insensitive")
      blocked(ex_socks, "a.b.phishing.example", "hook denylist, parent domain")
      assert.is_true(reaches(ex_socks, t1, "localhost"), "an allowed name did not reach the target")
      -- the level-0 guest may not reach a non-web port; alice (level 1) may
      assert.is_true(echo_via(ca, 16 * KiB), "alice through the VMess inbound")
      assert.is_false(reaches(cg, t1, nil, { log_pattern = "guest@example%.com tcp [^\n]* block" }),
        "a level-0 user reached a non-web port")
      assert.is_true(h:alive(srv))
      h:stop_luaray(pa)
      h:stop_luaray(pg)
    end))

    it("examples/slow_hooks.lua: slow hook calls are logged with their name; results pass through",
      h:guard(function()
      local text = example("slow_hooks.lua")
      local ex_socks = E.free_port()
      text = once(text, 'listen = "127.0.0.1:1080"', ('listen = "127.0.0.1:%d"'):format(ex_socks))
      srv = h:luaray_obs("example-slow", text, { ports = { ex_socks } })
      -- the route hook scans 2,000 patterns per connection: cheap enough,
      -- so nothing is logged at the example's 20 ms ...
      assert.is_true(echo_via(ex_socks, 8 * KiB, "localhost"))
      assert.is_false(reaches(ex_socks, t1, "ad1999.x.example", { log_pattern = "ad1999%.x%.example:%d+" }),
        "the hook's 'block' did not pass through the wrapper")
      local quiet = finish()
      assert.equal(0, count_matches(quiet, "slow hook:", true), quiet)
      -- ... and every call is logged at 0 ms, with the hook's name
      text = once(text, "local SLOW_MS = 20", "local SLOW_MS = 0")
      srv = h:luaray_obs("example-slow", text, { ports = { ex_socks } })
      assert.is_true(echo_via(ex_socks, 8 * KiB, "localhost"))
      assert.is_false(reaches(ex_socks, t1, "ad7.y.example", { log_pattern = "ad7%.y%.example:%d+" }))
      local log = finish()
      assert.is_truthy(log:find("slow hook: route took [%d.]+ ms %(dst localhost:" .. echo.port .. "%)"), log)
      assert.is_truthy(log:find("slow hook: route took [%d.]+ ms %(dst ad7%.y%.example:"), log)
      assert.is_truthy(log:find("slow hook: connect took [%d.]+ ms"), log)
    end))
  end)
end)
