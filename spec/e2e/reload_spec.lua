-- SIGHUP reload end to end (design.md 3 "Reload", style.md 10; issue "The Lua
-- layer", items 3 and 4):
--
--   * 200 connections keep streaming (each echoing small pieces, checked
--     byte for byte) while the server is reloaded 20 times with configs that
--     change users, routes, hooks and listeners, then once with a syntax
--     error.  No stream may break; the bad reload keeps the old generation
--     and says file:line; new rules apply to new connections only; a removed
--     user is refused on new connections while its open one goes on;
--     unchanged listeners never refuse a connection; an added listener opens
--     and a removed one closes; old generations are released once their
--     connections are gone.
--   * luaray.shared: values set in hooks survive reloads; per-user byte
--     counters kept by a close hook equal the bytes moved, before and after
--     100 reloads under traffic (and agree with luaray.usage).
--
-- Hooks report with print("OBS", ...) into a file of their own (h:luaray_obs),
-- read after the server stops.
local E = require "e2e.support"
local psignal = require "posix.signal"
local socket = require "socket"

local KiB = 1024

local read_file, count_matches, observations = E.read_file, E.count_matches, E.observations




local function write_config(p, text)
  local f = assert(io.open(p.config, "wb"))
  f:write(text)
  f:close()
end

---------------------------------------------------------------------------
-- Many echo streams at once, pumped in small pieces and checked byte for
-- byte.  A stream that errs, closes or differs is "broken" and stays so.

local Streams = {}
Streams.__index = Streams

local OUTSTANDING = 8 * KiB   -- sent but not yet echoed, per stream
local INTERVAL = 0.02         -- at most one piece per stream per interval

local function new_streams() return setmetatable({ list = {}, by = {} }, Streams) end

function Streams:add(sock, label, seed)
  sock:settimeout(0)
  local st = { s = sock, label = label, tx = E.stream(seed), rx = E.stream(seed), sent = 0,
               recvd = 0, n = 0, next_at = 0 }
  self.list[#self.list + 1] = st
  self.by[sock] = st
  return st
end

local function first_diff(a, b)
  for i = 1, math.min(#a, #b) do
    if a:byte(i) ~= b:byte(i) then return i end
  end
  return math.min(#a, #b) + 1
end

-- One select round: send a piece on each stream that may, read what came.
function Streams:round(sending, wait)
  local rset, wset = {}, {}
  local now = E.now()
  for _, st in ipairs(self.list) do
    if not st.err then
      rset[#rset + 1] = st.s
      if st.pend or (sending and st.sent - st.recvd < OUTSTANDING and now >= st.next_at) then
        wset[#wset + 1] = st.s
      end
    end
  end
  if #rset == 0 then return end
  local r, w = socket.select(rset, wset, wait or 0.02)
  for _, s in ipairs(w or {}) do
    local st = self.by[s]
    if not st.err then
      if not st.pend then
        st.n = st.n + 1
        st.pend = st.tx:next((st.n * 7919) % 1024 + 1)
        st.pi = 1
      end
      local last, err, lastpart = s:send(st.pend, st.pi)
      local idx = last or lastpart or (st.pi - 1)
      st.sent = st.sent + (idx - st.pi + 1)
      if idx >= #st.pend then
        st.pend = nil
        st.next_at = now + INTERVAL
      else
        st.pi = idx + 1
      end
      if err and err ~= "timeout" then st.err = "send: " .. err end
    end
  end
  for _, s in ipairs(r or {}) do
    local st = self.by[s]
    if not st.err then
      local data, err, partial = s:receive(65536)
      local got = data or partial or ""
      if #got > 0 then
        if st.recvd + #got > st.sent then
          st.err = "received more than was sent"
        else
          local exp = st.rx:next(#got)
          if got ~= exp then
            st.err = ("echo differs at byte %d"):format(st.recvd + first_diff(got, exp) - 1)
          end
          st.recvd = st.recvd + #got
        end
      end
      if not st.err and err and err ~= "timeout" then
        st.err = err == "closed" and "closed by the peer" or ("receive: " .. err)
      end
    end
  end
end

-- Pumps for `seconds` (or until until() is true), sending.
function Streams:pump(seconds, until_fn)
  local deadline = E.now() + seconds
  for _ = 1, 1000000 do
    self:round(true)
    if until_fn and until_fn() then return true end
    if E.now() >= deadline then break end
  end
  return until_fn == nil
end

-- Stops sending and waits (bounded) until every echo is complete.
function Streams:drain(timeout)
  local deadline = E.now() + (timeout or 10)
  for _ = 1, 1000000 do
    local pending = false
    for _, st in ipairs(self.list) do
      if not st.err and (st.pend or st.recvd < st.sent) then pending = true end
    end
    if not pending or E.now() >= deadline then break end
    self:round(false, 0.05)
  end
end

function Streams:broken()
  local out = {}
  for i, st in ipairs(self.list) do
    if st.err then
      out[#out + 1] = ("stream %d (%s): %s after %d bytes sent, %d echoed"):format(i, st.label,
        st.err, st.sent, st.recvd)
    elseif st.recvd ~= st.sent or st.pend then
      out[#out + 1] = ("stream %d (%s): echo incomplete, %d of %d bytes"):format(i, st.label,
        st.recvd, st.sent)
    end
  end
  return out
end

-- Streams that failed so far (in-flight echo is not a failure).
function Streams:errors()
  local out = {}
  for i, st in ipairs(self.list) do
    if st.err then
      out[#out + 1] = ("stream %d (%s): %s after %d bytes sent, %d echoed"):format(i, st.label,
        st.err, st.sent, st.recvd)
    end
  end
  return out
end

function Streams:close()
  for _, st in ipairs(self.list) do st.s:close() end
end

---------------------------------------------------------------------------

describe("reload (SIGHUP)", function()
  local h = E.new("reload")
  local echo, target

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    target = h:capture_server { name = "target" }
  end))

  lazy_teardown(function() h:cleanup() end)

  local function hup(p) assert(psignal.kill(p.pid, psignal.SIGHUP)) end

  -- Sends SIGHUP and waits (bounded) for the outcome, pumping `streams`
  -- meanwhile; -> true (a new generation serves) or false (failed reload).
  local function reload_and_wait(p, streams, timeout)
    local log = read_file(p.log)
    local ok_n = count_matches(log, "reload: generation %d+ serving")
    local bad_n = count_matches(log, "reload failed")
    hup(p)
    local outcome
    local function done()
      local t = read_file(p.log)
      if count_matches(t, "reload: generation %d+ serving") > ok_n then outcome = true
      elseif count_matches(t, "reload failed") > bad_n then outcome = false end
      return outcome ~= nil
    end
    local deadline = E.now() + (timeout or 5)
    for _ = 1, 100000 do
      if streams then streams:round(true, 0.01) else E.sleep(0.01) end
      if done() or E.now() >= deadline then break end
    end
    assert(outcome ~= nil, "no reload outcome in the log after SIGHUP\n" .. h:tail(p))
    return outcome
  end

  -------------------------------------------------------------------------
  it("200 streams keep echoing through 20 reloads and a bad one; rules, users and listeners change",
    h:guard(function()
    local A, V, X = E.free_port(), E.free_port(), E.free_port()   -- socks-a, vmess-in, socks-extra
    local ALICE, CAROL = E.uuid(), E.uuid()
    local EXTRA = {}
    for j = 1, 3 do EXTRA[j] = E.uuid() end
    local REMOVE_CAROL, EXTRA_FROM, EXTRA_UNTIL, BLOCK_FROM = 8, 5, 10, 12

    -- The config of version k (0: the one started with).
    local function config(k)
      local l = {
        'luaray.log { level = "info", access = true }',
        ('luaray.user { id = %q, email = "alice@e2e", level = %d }'):format(ALICE, k % 3),
      }
      if k < REMOVE_CAROL then
        l[#l + 1] = ('luaray.user { id = %q, email = "carol@e2e" }'):format(CAROL)
      end
      for j = 1, k % 4 do
        l[#l + 1] = ('luaray.user { id = %q, email = "extra%d@e2e" }'):format(EXTRA[j], j)
      end
      l[#l + 1] = ('luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", ' ..
                   'allow_private = true, handshake_timeout = 2, idle_timeout = %d }'):format(V, 60 + k)
      l[#l + 1] = ('luaray.inbound "socks-a" { type = "socks", listen = "127.0.0.1:%d", ' ..
                   'handshake_timeout = %d }'):format(A, 5 + k % 3)
      if k >= EXTRA_FROM and k < EXTRA_UNTIL then
        l[#l + 1] = ('luaray.inbound "socks-extra" { type = "socks", listen = "127.0.0.1:%d" }'):format(X)
      end
      l[#l + 1] = 'luaray.outbound "direct" { type = "direct" }'
      l[#l + 1] = 'luaray.outbound "block" { type = "blackhole" }'
      l[#l + 1] = 'luaray.outbound "direct2" { type = "direct" }'
      if k >= BLOCK_FROM then
        l[#l + 1] = ('luaray.route { port = "%d", to = "block" }'):format(target.port)
      end
      if k % 2 == 1 then
        l[#l + 1] = ('luaray.route { port = "%d", to = "direct2" }'):format(echo.port)
      end
      if k % 3 == 0 then
        l[#l + 1] = 'luaray.on("route", function(ctx) if ctx.dst.host == "127.0.0.9" then return "block" end end)'
      elseif k % 3 == 1 then
        l[#l + 1] = 'luaray.on("connect", function(ctx) luaray.shared.incr("connects") end)'
      end
      l[#l + 1] = ('luaray.on("reload", function(gen) print("OBS\\treload\\t" .. gen .. "\\t%d") end)'):format(k)
      return table.concat(l, "\n") .. "\n"
    end

    local srv = h:luaray_obs("server", config(0), { ports = { A, V } })
    local text, o = E.luaray_client_script { socks_port = E.free_port(), server_port = V, id = ALICE,
                                             security = "aes-128-gcm" }
    local alice_port = o.ports[1][2]
    h:luaray("client-alice", text, o)
    text, o = E.luaray_client_script { socks_port = E.free_port(), server_port = V, id = CAROL,
                                       security = "chacha20-poly1305" }
    local carol_port = o.ports[1][2]
    h:luaray("client-carol", text, o)

    -- through a SOCKS5 port to the target: reached or not (bounded waits)
    local function reaches(port, host, log_pattern, wait)
      local before = target:count()
      local nlog = log_pattern and count_matches(read_file(srv.log), log_pattern) or 0
      local s = E.socks5_connect("127.0.0.1", port, host or "127.0.0.1", target.port, nil, nil, 3)
      if s then s:send("probe\n") end
      local deadline = E.now() + (wait or 3)
      local reached = false
      for _ = 1, 10000 do
        if target:count() > before then reached = true; break end
        if log_pattern and count_matches(read_file(srv.log), log_pattern) > nlog then break end
        if E.now() >= deadline then break end
        E.sleep(0.02)
      end
      if not reached then
        E.sleep(0.3)
        reached = target:count() > before
      end
      if s then s:close() end
      return reached
    end

    -- The outbound the server picks for a new connection to 127.0.0.9
    -- (nothing listens there): "block" while the route hook of versions
    -- 0, 3, 6, ... is loaded, the default otherwise.
    local HOOK_PORT = E.free_port()
    local function outbound_for_hooked()
      local pat = "127%.0%.0%.9:" .. HOOK_PORT .. " (%S+) up="
      local before = count_matches(read_file(srv.log), pat)
      local s = E.socks5_connect("127.0.0.1", A, "127.0.0.9", HOOK_PORT, nil, nil, 3)
      if s then s:send("x") end
      local deadline, tag = E.now() + 3, nil
      for _ = 1, 1000 do
        local log = read_file(srv.log)
        if count_matches(log, pat) > before then
          for t in log:gmatch(pat) do tag = t end
          break
        end
        if E.now() >= deadline then break end
        E.sleep(0.02)
      end
      if s then s:close() end
      return tag
    end

    -- positive controls in version 0
    assert.is_true(reaches(A), "socks-a -> target (version 0)")
    assert.is_true(reaches(carol_port), "carol -> target (version 0)")

    -- 200 streams: 100 through socks-a (SOCKS5 -> direct), 99 as alice
    -- (luaray client -> VMess), and carol's one
    local streams = new_streams()
    for i = 1, 100 do
      local s = assert(E.socks5_connect("127.0.0.1", A, "127.0.0.1", echo.port))
      streams:add(s, "socks-a", 1000 + i)
    end
    for i = 1, 99 do
      local s = assert(E.socks5_connect("127.0.0.1", alice_port, "127.0.0.1", echo.port))
      streams:add(s, "alice", 2000 + i)
    end
    local carol_stream = streams:add(assert(E.socks5_connect("127.0.0.1", carol_port, "127.0.0.1",
                                                             echo.port)), "carol", 3000)
    assert.equal(200, #streams.list)
    streams:pump(0.5)
    assert.are.same({}, streams:errors())

    local refused, probes, new_conn_failures = {}, 0, {}
    local function probe_listeners(k)
      for _, pt in ipairs { A, V } do
        probes = probes + 1
        local s, err = E.tcp_connect("127.0.0.1", pt, 2)
        if s then s:close() else refused[#refused + 1] = ("version %d, port %d: %s"):format(k, pt, err) end
      end
      local ok, err = (function()
        local s, e = E.socks5_connect("127.0.0.1", A, "127.0.0.1", echo.port, nil, nil, 3)
        if not s then return false, e end
        return E.transfer_echo(s, 2 * KiB, { timeout = 5 })
      end)()
      if not ok then new_conn_failures[#new_conn_failures + 1] = ("version %d: %s"):format(k, tostring(err)) end
    end

    local carol_at_removal
    for k = 1, 20 do
      write_config(srv, config(k))
      -- probes race the reload: the listeners must never refuse
      hup(srv)
      probe_listeners(k)
      local log = read_file(srv.log)
      local want = ("reload: generation %d serving"):format(k + 1)
      local deadline = E.now() + 5
      for _ = 1, 100000 do
        if log:find(want, 1, true) or log:find("reload failed", 1, true) then break end
        if E.now() >= deadline then break end
        streams:round(true, 0.01)
        log = read_file(srv.log)
      end
      assert.is_truthy(log:find(want, 1, true), "version " .. k .. ": no '" .. want .. "'\n" .. h:tail(srv))
      assert.is_nil(log:find("reload failed", 1, true), "version " .. k .. " failed to load")
      probe_listeners(k)
      streams:pump(0.15)

      if k == EXTRA_FROM then
        assert(E.wait_port("127.0.0.1", X, 3))
        local s = assert(E.socks5_connect("127.0.0.1", X, "127.0.0.1", echo.port))
        assert(E.transfer_echo(s, 8 * KiB), "the new listener does not relay")
      elseif k == EXTRA_UNTIL then
        local s, err = E.tcp_connect("127.0.0.1", X, 1)
        if s then s:close() end
        assert.is_nil(s, "the removed listener socks-extra still accepts")
        assert.is_truthy(tostring(err):find("refused", 1, true), err)
        assert.is_truthy(log:find("inbound socks-extra on 127.0.0.1:" .. X .. " removed", 1, true))
      elseif k == REMOVE_CAROL then
        carol_at_removal = carol_stream.recvd
        -- carol's new connection: the server no longer knows her, it never dials
        assert.is_false(reaches(carol_port, nil, nil, 1.0), "removed user carol reached the target")
      elseif k == BLOCK_FROM then
        assert.is_false(reaches(A, nil, ":" .. target.port .. " block "),
          "the new block rule did not apply to a new connection")
      end
      if k == BLOCK_FROM - 1 then
        assert.is_true(reaches(A), "target blocked before the rule was added")
      end
      if k >= 3 and k <= 6 then   -- the route hook comes and goes with the versions
        assert.equal(k % 3 == 0 and "block" or "direct", outbound_for_hooked(),
          "version " .. k .. ": the outbound for 127.0.0.9")
      end
    end
    -- carol's open connection went on after she was removed
    streams:pump(0.3)
    assert.is_true(carol_stream.recvd > carol_at_removal + 4 * KiB,
      ("carol's stream stalled after her removal (%d -> %d bytes)"):format(carol_at_removal,
        carol_stream.recvd))

    -- a syntax error: the old generation (21) keeps serving, file:line logged
    local good = config(20)
    local bad_line = count_matches(good, "\n") + 1
    write_config(srv, good .. "local x = = 1\n")
    assert.is_false(reload_and_wait(srv, streams), "a config with a syntax error was installed")
    local log = read_file(srv.log)
    local path = srv.config:gsub("%p", "%%%0")
    assert.is_truthy(log:find("reload failed, keeping generation 21: " .. path .. ":" .. bad_line .. ": "),
      ("want 'reload failed, keeping generation 21: %s:%d: ...' in the log\n%s"):format(srv.config,
        bad_line, h:tail(srv)))
    assert.is_false(reaches(A, nil, ":" .. target.port .. " block "), "version 20's block rule is gone")
    probe_listeners(21)
    streams:pump(0.3)

    -- every stream is intact
    streams:drain(10)
    local broken = streams:broken()
    assert.are.same({}, broken, #broken .. " of 200 streams broke")
    assert.are.same({}, refused, ("%d of %d connects to unchanged listeners refused"):format(#refused, probes))
    assert.are.same({}, new_conn_failures)
    local total = 0
    for _, st in ipairs(streams.list) do total = total + st.recvd end
    assert.is_true(total > 200 * 4 * KiB, "little traffic: " .. total .. " bytes")

    -- once the streams are gone, every older generation is released
    streams:close()
    local released
    local deadline = E.now() + 10
    for _ = 1, 1000 do
      log = read_file(srv.log)
      released = true
      for g = 1, 20 do
        if not log:find("generation " .. g .. " released", 1, true) then released = g; break end
      end
      if released == true or E.now() >= deadline then break end
      E.sleep(0.05)
    end
    assert.equal(true, released, "generation " .. tostring(released) .. " never released")
    assert.is_true(h:alive(srv))

    -- the reload hook ran once per good reload, with the new generation
    h:stop_luaray(srv)
    local calls = observations(read_file(srv.out), "reload")
    assert.equal(20, #calls)
    for i, c in ipairs(calls) do
      assert.same({ tostring(i + 1), tostring(i) }, { c[2], c[3] })
    end
  end))

  -------------------------------------------------------------------------
  describe("luaray.shared", function()
    local srv, S, V, ca, cb
    local ALICE, BOB = E.uuid(), E.uuid()

    local CONFIG = [[
luaray.log { level = "info", access = true }
luaray.user { id = "@ALICE@", email = "alice@e2e" }
luaray.user { id = "@BOB@", email = "bob@e2e" }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:@V@", allow_private = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:@S@" }
luaray.outbound "direct" { type = "direct" }
-- generous limits: with a policy set, the relay keeps per-user usage
luaray.policy("alice@e2e", { max_conns = 1000 })
luaray.policy("bob@e2e", { max_conns = 1000 })
local shared = luaray.shared
luaray.on("connect", function(ctx)
  if not shared.get("first") then
    shared.set("first", "set in generation " .. ctx.generation)
    shared.set("first-id", ctx.id)
  end
end)
luaray.on("close", function(ctx, s)
  local who = ctx.user and ctx.user.email or "socks"
  shared.incr("up:" .. who, s.up)
  shared.incr("down:" .. who, s.down)
  shared.incr("closed")
end)
luaray.on("reload", function(gen)
  local function n(k) return tostring(shared.get(k) or 0) end
  local ua, ub = luaray.usage("alice@e2e"), luaray.usage("bob@e2e")
  print(table.concat({ "OBS", "reload", gen, tostring(shared.get("first")), n("first-id"),
    n("up:alice@e2e"), n("down:alice@e2e"), n("up:bob@e2e"), n("down:bob@e2e"),
    n("up:socks"), n("down:socks"), tostring(ua and ua.bytes), tostring(ub and ub.bytes),
    n("closed") }, "\t"))
end)
]]

    lazy_setup(h:guard(function()
      S, V = E.free_port(), E.free_port()
      local text = CONFIG:gsub("@(%u+)@", { ALICE = ALICE, BOB = BOB, V = tostring(V), S = tostring(S) })
      srv = h:luaray_obs("shared-server", text, { ports = { S, V } })
      local t, o = E.luaray_client_script { socks_port = E.free_port(), server_port = V, id = ALICE }
      ca = o.ports[1][2]
      h:luaray("shared-client-alice", t, o)
      t, o = E.luaray_client_script { socks_port = E.free_port(), server_port = V, id = BOB,
                                      security = "chacha20-poly1305" }
      cb = o.ports[1][2]
      h:luaray("shared-client-bob", t, o)
    end))

    it("values set in hooks survive reloads; close-hook counters equal the bytes moved, " ..
       "before and after 100 reloads under traffic", h:guard(function()
      local expect = { alice = 0, bob = 0, socks = 0 }
      local port = { alice = ca, bob = cb, socks = S }
      local closed = 0

      local function transfer(who, n, seed)
        local s = assert(E.socks5_connect("127.0.0.1", port[who], "127.0.0.1", echo.port))
        assert(E.transfer_echo(s, n, { timeout = 10, seed = seed }))
        expect[who] = expect[who] + n
        closed = closed + 1
      end
      -- the close hooks of everything so far have run once the access lines are there
      local function settle()
        local deadline = E.now() + 10
        for _ = 1, 1000 do
          if count_matches(read_file(srv.log), "up=%d+ down=%d+ dur=[%d.]+ done") >= closed then return end
          if E.now() >= deadline then break end
          E.sleep(0.02)
        end
        error(("settle: %d access lines with 'done', wanted %d"):format(
          count_matches(read_file(srv.log), "up=%d+ down=%d+ dur=[%d.]+ done"), closed))
      end
      local snapshots = {}
      local function snapshot()
        snapshots[#snapshots + 1] = { alice = expect.alice, bob = expect.bob, socks = expect.socks }
      end

      -- before: some traffic, then one reload that reports the counters
      transfer("alice", 100000, 1)
      transfer("bob", 77777, 2)
      transfer("socks", 12345, 3)
      settle()
      snapshot()
      assert.is_true(reload_and_wait(srv))

      -- 100 reloads under traffic: long streams across all of them, and
      -- short connections between them
      local streams = new_streams()
      local long = {}
      for i, who in ipairs { "alice", "alice", "bob", "bob", "socks" } do
        local s = assert(E.socks5_connect("127.0.0.1", port[who], "127.0.0.1", echo.port))
        long[i] = { who = who, st = streams:add(s, who, 500 + i) }
      end
      for i = 1, 100 do
        assert.is_true(reload_and_wait(srv, streams), "reload " .. i .. " failed")
        local who = ({ "alice", "bob", "socks" })[i % 3 + 1]
        transfer(who, 1000 + i * 37, 100 + i)
        streams:round(true, 0)
      end
      streams:drain(10)
      assert.are.same({}, streams:broken())
      for _, l in ipairs(long) do
        expect[l.who] = expect[l.who] + l.st.sent
        closed = closed + 1
      end
      streams:close()
      settle()
      snapshot()
      assert.is_true(reload_and_wait(srv))
      assert.is_true(h:alive(srv))
      h:stop_luaray(srv)

      local obs = observations(read_file(srv.out), "reload")
      assert.equal(102, #obs)
      -- fields: gen, first, first-id, up/down alice, up/down bob, up/down socks, usage alice, usage bob, closed
      local function check(o, want, label)
        assert.equal(tostring(want.alice), o[5], label .. ": up:alice")
        assert.equal(tostring(want.alice), o[6], label .. ": down:alice")
        assert.equal(tostring(want.bob), o[7], label .. ": up:bob")
        assert.equal(tostring(want.bob), o[8], label .. ": down:bob")
        assert.equal(tostring(want.socks), o[9], label .. ": up:socks")
        assert.equal(tostring(want.socks), o[10], label .. ": down:socks")
        -- luaray.usage (the C policy counters) agree: up + down per user
        assert.equal(2 * want.alice, tonumber(o[11]), label .. ": usage alice")
        assert.equal(2 * want.bob, tonumber(o[12]), label .. ": usage bob")
      end
      check(obs[1], snapshots[1], "after the first reload")
      check(obs[102], snapshots[2], "after 100 more reloads")
      -- the string set by the first connection's connect hook, in generation 1
      for i, o in ipairs(obs) do
        assert.equal("set in generation 1", o[3], "reload " .. i .. ": 'first'")
        assert.equal(obs[1][4], o[4], "reload " .. i .. ": 'first-id'")
        assert.equal(tostring(i + 1), o[2], "reload " .. i .. ": generation")
      end
      -- counters never went backwards
      for i = 2, #obs do
        for f = 5, 10 do
          assert.is_true(tonumber(obs[i][f]) >= tonumber(obs[i - 1][f]),
            ("reload %d: field %d went from %s to %s"):format(i, f, obs[i - 1][f], obs[i][f]))
        end
      end
    end))
  end)
end)

---------------------------------------------------------------------------
-- A signal during start-up (a deploy script's SIGHUP as soon as it sees
-- the process, Ctrl-C while a big config loads) must not meet the default
-- action, which kills the process: it is held until the daemon serves, and
-- then handled.  The config spends a second of CPU loading, so that the
-- signal lands in the middle of the start-up however loaded the machine is.

-- -> the mask of signals blocked by pid's main thread, or nil once it is gone
local function sig_blocked(pid)
  local f = io.open("/proc/" .. pid .. "/status", "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local hex = text:match("\nSigBlk:%s*(%x+)")
  return hex and tonumber(hex:sub(-8), 16) or nil
end

local function bit_set(mask, sig) return math.floor(mask / 2 ^ (sig - 1)) % 2 == 1 end

describe("signals during start-up", function()
  local h = E.new("startsig")
  local echo
  setup(function() echo = h:echo_server() end)
  teardown(function() h:cleanup() end)

  for _, case in ipairs {
    { sig = "SIGHUP", want = "reload: generation 2 serving", alive = true },
    { sig = "SIGTERM", want = "%[info%] stopped", alive = false },
  } do
    it(case.sig .. " sent while the config loads is held, then handled (" ..
       (case.alive and "a reload" or "a graceful stop") .. ")", h:guard(function()
      local sp = E.free_port()
      local p = h:luaray("server", ([[
local t0 = os.clock()
while os.clock() - t0 < 1.0 do end   -- a slow start-up: a second of CPU
luaray.log { level = "info", access = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
]]):format(sp))
      local signo = psignal[case.sig]
      local exe = E.luaray_bin()
      local sent = false
      local deadline = E.now() + 30
      -- wait for luaray itself (not the exec before it) to hold the signal
      for _ = 1, 100000 do
        if E.now() > deadline then break end
        local mask = sig_blocked(p.pid)
        if not mask then break end
        local image = require("posix.unistd").readlink("/proc/" .. p.pid .. "/exe")
        if image and image:find(exe:match("[^/]+$"), 1, true) and bit_set(mask, signo) then
          assert(psignal.kill(p.pid, signo))
          sent = true
          break
        end
        if E.wait_port("127.0.0.1", sp, 0) then break end
        E.sleep(0.002)
      end
      assert.is_true(sent, case.sig .. " was not held during start-up")
      assert(E.wait_log(p, case.want, 1, 30))
      if case.alive then
        assert.is_true(h:alive(p), "the daemon died of a " .. case.sig .. " during start-up")
        local s = assert(E.socks5_connect("127.0.0.1", sp, "127.0.0.1", echo.port))
        assert.is_true(E.transfer_echo(s, 4 * KiB))
        s:close()
      else
        for _ = 1, 500 do
          if not h:alive(p) then break end
          E.sleep(0.01)
        end
        assert.is_false(h:alive(p))
        assert.equal("exited", p.status)
        assert.equal(0, p.code)
      end
    end))
  end
end)
