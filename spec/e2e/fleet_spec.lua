-- A fleet (design.md 8, issue 15): several luaray nodes name one Redis in
-- luaray.cluster and share its replay filter.  A real redis-server (Debian's)
-- is started by this spec on a loopback port, in its own temp dir, without
-- persistence, and stopped by PID.
--
-- Requests are captured the way hostile_spec does: a v2ray 4.34 client is
-- pointed at a recording server, and what it sent is replayed to luaray.
-- The destination of every captured request is a second recording server,
-- so anything a node dials shows up there as a connection.
local E = require "e2e.support"
local psignal = require "posix.signal"
local socket = require "socket"

local HT = 2          -- the inbounds' handshake_timeout, seconds
local EARLY = 0.1
local LATE = 1.0
local TIMEOUT_MS = 300

describe("a fleet of luaray nodes sharing one Redis (luaray.cluster)", function()
  local h = E.new("fleet")
  local echo, cap, target, redis, redis_port
  local nodes = {}           -- name -> { proc, port, socks (a v2ray client to it) }
  local v_aead, v_legacy     -- v2ray clients pointed at the capture server
  local ID0, ID4 = E.uuid(), E.uuid()
  local IDM, IDC, IDQ = E.uuid(), E.uuid(), E.uuid()   -- max_ips 1, max_conns 2, quota
  local QUOTA = 1000000
  local v_mi, v_mc           -- capture clients of mi@e2e and mc@e2e
  local q_socks = {}         -- node name -> a v2ray client of q@e2e to it
  local tp_ports, tp_socks = {}, {}   -- "grpc", "ws" -> inbound port, luaray client

  local function start_redis()
    local dir = h:path("redis.d")
    require("posix.sys.stat").mkdir(dir, 448)
    redis = h:spawn("redis-server", { "redis-server", "--bind", "127.0.0.1", "--port",
                                      tostring(redis_port), "--save", "", "--appendonly", "no",
                                      "--dir", dir, "--protected-mode", "no" },
                    { ports = { redis_port } })
  end

  local function redis_cli(...)
    local argv = { "redis-cli", "-h", "127.0.0.1", "-p", tostring(redis_port), ... }
    local rc, out = h:exec("redis-cli", argv)
    assert(rc == 0, "redis-cli failed: " .. tostring(out))
    return out
  end

  local function node(name, extra)
    local port = E.free_port()
    local script, opts = E.luaray_server_script {
      port = port, handshake_timeout = HT, log_level = "debug", allow_legacy = true,
      users = { { id = ID0, alter_id = 0, email = "aead@e2e" },
                { id = ID4, alter_id = 4, email = "legacy@e2e" },
                { id = IDM, email = "mi@e2e" }, { id = IDC, email = "mc@e2e" },
                { id = IDQ, email = "q@e2e" } },
      extra = ("luaray.cluster { redis = \"127.0.0.1:%d\", node = %q, timeout_ms = %d }\n%s\n")
        :format(redis_port, name, TIMEOUT_MS, extra or "")
        .. 'luaray.policy("mi@e2e", { max_ips = 1 })\n'
        .. 'luaray.policy("mc@e2e", { max_conns = 2 })\n'
        .. ('luaray.policy("q@e2e", { quota = %d })\n'):format(QUOTA)
        -- luaray.usage shows the fleet's figures
        .. [[luaray.every(0.5, function()
  for _, e in ipairs { "q@e2e", "mi@e2e", "mc@e2e" } do
    local u = luaray.usage(e)
    if u then print(("OBS\tusage\t%s\t%d\t%d\t%d"):format(e, u.bytes, u.conns, u.ips)) end
  end
end, { first = 0 })
-- luaray.cluster.call: fleet-wide state from a control coroutine; once
local done = false
luaray.every(0.2, function()
  if done then return end
  local v, err = luaray.cluster.call("INCR", "fleet-test:starts")
  if not v then print("OBS\tcallwait\t" .. tostring(err)); return end
  done = true
  local ok = luaray.cluster.call("SET", "fleet-test:last", 42)
  local m = luaray.cluster.call("MGET", "fleet-test:starts", "fleet-test:none")
  local e, eerr = luaray.cluster.call("NOSUCHCOMMAND", "x")
  print(("OBS\tcall\t%d\t%s\t%s\t%s\t%s\t%s"):format(v, tostring(ok), tostring(m[1]),
    tostring(m[2]), tostring(e), tostring(eerr)))
end, { first = 0 })
]] }
    local p = h:luaray_obs("luaray-" .. name, script, opts)
    p.script = script
    local socks = E.free_port()
    h:v2ray("v2ray-to-" .. name, E.v2ray_client_config {
      socks_port = socks, server_port = port, id = ID0, alterId = 0, security = "aes-128-gcm" })
    nodes[name] = { proc = p, port = port, socks = socks }
    if name ~= "c" then
      q_socks[name] = E.free_port()
      h:v2ray("v2ray-q-to-" .. name, E.v2ray_client_config {
        socks_port = q_socks[name], server_port = port, id = IDQ, alterId = 0,
        security = "aes-128-gcm" })
    end
    assert(E.wait_log(p, "cluster: node " .. name .. " connected to redis", 1, 10),
           "node " .. name .. " did not connect to redis\n" .. h:tail(p))
  end

  lazy_setup(h:guard(function()
    redis_port = E.free_port()
    start_redis()
    echo = h:echo_server()
    cap = h:capture_server { name = "capture" }
    target = h:capture_server { name = "target" }
    -- a gRPC inbound at a and a WebSocket one at c: the wait for Redis
    -- under a virtual client side (gRPC) and a stream layer (ws)
    tp_ports.grpc, tp_ports.ws = E.free_port(), E.free_port()
    node("a", ('luaray.inbound "vmess-grpc" { type = "vmess", listen = "127.0.0.1:%d", ' ..
               'allow_private = true, transport = { type = "grpc", service_name = "fleet" } }')
              :format(tp_ports.grpc))
    node("b", "luaray.workers(2)")   -- a replay may land on either worker
    node("c", ('luaray.inbound "vmess-ws" { type = "vmess", listen = "127.0.0.1:%d", ' ..
               'allow_private = true, transport = { type = "ws", path = "/ray" } }')
              :format(tp_ports.ws))
    for kind, tp in pairs { grpc = { type = "grpc", service_name = "fleet" },
                            ws = { type = "ws", path = "/ray" } } do
      local sp = E.free_port()
      local cscript, copts = E.luaray_client_script { socks_port = sp, server_port = tp_ports[kind],
                                                      id = ID0, transport = tp }
      h:luaray("client-" .. kind, cscript, copts)
      tp_socks[kind] = sp
    end
    local function client(port, id, aid)
      local socks = E.free_port()
      h:v2ray("v2ray-capture", E.v2ray_client_config {
        socks_port = socks, server_port = port, id = id, alterId = aid, security = "aes-128-gcm" })
      return socks
    end
    v_aead = client(cap.port, ID0, 0)
    v_legacy = client(cap.port, ID4, 4)
    v_mi = client(cap.port, IDM, 0)
    v_mc = client(cap.port, IDC, 0)
  end))

  lazy_teardown(function() h:cleanup() end)

  local function capture(socks)
    return cap:request_via(socks, target.port)
  end

  local function check_silent(results, labels)
    local bad = E.silent_failures(results, labels, HT - EARLY, HT + LATE)
    assert.is_true(#bad == 0, table.concat(bad, "\n"))
  end

  -- Sends captured bytes to a node as a fresh client; -> whether the
  -- target got the marker (the request was served), with the socket
  -- still open (closed by the caller).
  local function connect_from(src, port)
    if not src then return assert(E.tcp_connect("127.0.0.1", port)) end
    local s = socket.tcp()
    assert(s:bind(src, 0))
    s:settimeout(5)
    assert(s:connect("127.0.0.1", port))
    return s
  end

  local function serve(name, bytes, marker, src)
    local base = target:count()
    local s = connect_from(src, nodes[name].port)
    assert(s:send(bytes))
    local got, err = target:wait_bytes(base + 1, #marker, 0.1, 5)
    assert.is_truthy(got, ("node %s did not serve a fresh request: %s"):format(name, tostring(err)))
    assert.equal(marker, got)
    return s
  end

  -- One echo round trip through node `name` (a v2ray client to it) ->
  -- seconds it took, or nil, err.
  local function echo_rtt_via(socks, timeout)
    local t0 = E.now()
    local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil,
                                    nil, timeout)
    if not s then return nil, err end
    s:settimeout(timeout)
    s:send("ping\n")
    local line, rerr = s:receive("*l")
    s:close()
    if line ~= "ping" then return nil, "echo: " .. tostring(rerr or line) end
    return E.now() - t0
  end
  local function echo_rtt(name, timeout) return echo_rtt_via(nodes[name].socks, timeout) end

  local function replay_refused(bytes, at, label)
    local base = target:count()
    local res = E.probe_many("127.0.0.1", nodes[at].port, { bytes }, { max_wait = HT + LATE + 3 })
    check_silent(res, { label })
    E.sleep(0.2)
    assert.equal(base, target:count(), label .. ": the replay reached the target")
  end

  for _, mode in ipairs { "AEAD", "legacy" } do
    it(("a %s request served at node a is refused at nodes b and c: silent, FIN at the timeout, no dial")
      :format(mode), h:guard(function()
        local bytes, marker = capture(mode == "AEAD" and v_aead or v_legacy)
        local s1 = serve("a", bytes, marker)
        -- b runs two workers: twice, so both are likely asked
        replay_refused(bytes, "b", mode .. " replay at b")
        replay_refused(bytes, "b", mode .. " replay at b, again")
        s1:close()
        replay_refused(bytes, "c", mode .. " replay at c")
        -- and at a, its own local filter
        replay_refused(bytes, "a", mode .. " replay at a")
      end))
  end

  it("a fresh request at any node is served (the shared filter refuses only what it saw)",
    h:guard(function()
      for _, name in ipairs { "b", "c", "a" } do
        local bytes, marker = capture(v_aead)
        serve(name, bytes, marker):close()
      end
      -- the AuthIDs are in Redis, under the prefix, with an expiry of at
      -- most 121 s, and the value names the node
      local keys = redis_cli("--scan", "--pattern", "luaray:a:*")
      local n, one = 0, nil
      for k in keys:gmatch("luaray:a:%x+") do n = n + 1; one = k end
      assert.is_true(n >= 4, "AuthID keys in redis: " .. keys)
      local ttl = tonumber(redis_cli("TTL", one):match("%-?%d+"))
      assert.is_true(ttl and ttl > 0 and ttl <= 121, "TTL " .. tostring(ttl))
      local v = redis_cli("GET", one):match("[%w]+")
      assert.truthy(v == "a" or v == "b" or v == "c", "value " .. tostring(v))
      local slog = redis_cli("--scan", "--pattern", "luaray:s:*")
      assert.truthy(slog:find("luaray:s:%x+"), "a legacy session key in redis: " .. slog)
    end))

  it("through gRPC (at a) and WebSocket (at c) inbounds every handshake is claimed in redis too",
    h:guard(function()
      local function claims()
        local n = 0
        for _ in redis_cli("--scan", "--pattern", "luaray:a:*"):gmatch("luaray:a:%x+") do n = n + 1 end
        return n
      end
      local before = claims()
      for _, kind in ipairs { "grpc", "ws" } do
        for i = 1, 10 do
          local t, err = echo_rtt_via(tp_socks[kind], HT + 3)
          assert.is_truthy(t, ("%s connection %d: %s"):format(kind, i, tostring(err)))
        end
      end
      -- gRPC tunnels share one HTTP/2 connection, each with its own VMess header
      assert.is_true(claims() - before >= 20, ("claims: %d more"):format(claims() - before))
    end))

  -- A fresh request of the user behind `socks`, sent from src to node
  -- `name`: true (served, the socket kept open in `held`) or false
  -- (refused: nothing reached the target, and the node logged `why`).
  local held = {}
  local function try(socks, name, src, why)
    local bytes, marker = capture(socks)
    local base = target:count()
    local nwhy = E.count_matches(E.read_file(nodes[name].proc.log), why, true)
    local s = connect_from(src, nodes[name].port)
    assert(s:send(bytes))
    local got = target:wait_bytes(base + 1, #marker, 0.1, 3)
    if got then
      assert.equal(marker, got)
      held[#held + 1] = s
      return true
    end
    s:close()
    assert(E.wait_log(nodes[name].proc, why, nwhy + 1, 5), ("node %s: neither served nor %q"):format(name, why))
    assert.equal(base, target:count(), "a refused request reached the target")
    return false
  end
  -- The last luaray.usage(email) node `name` printed -> bytes, conns, ips.
  local function usage(name, email)
    local last
    for _, o in ipairs(E.observations(E.read_file(nodes[name].proc.out), "usage")) do
      if o[2] == email then last = o end
    end
    if not last then return nil end
    return tonumber(last[3]), tonumber(last[4]), tonumber(last[5])
  end
  -- Waits (up to 5 s) until node `name`'s usage of email satisfies ok().
  local function wait_usage(name, email, ok, what)
    local b, c, i
    for _ = 1, 50 do
      b, c, i = usage(name, email)
      if b and ok(b, c, i) then return end
      E.sleep(0.1)
    end
    error(("node %s: luaray.usage(%q) never showed %s (last: bytes %s conns %s ips %s)"):format(
      name, email, what, tostring(b), tostring(c), tostring(i)))
  end
  local function close_held()
    for _, s in ipairs(held) do s:close() end
    held = {}
  end
  -- the nodes sync once a second: two syncs (one at each node) and slack
  local SYNC_WAIT = 3

  it("max_ips = 1 holds across nodes, and frees within seconds after the stream closes",
    h:guard(function()
      local why = "too many source addresses"
      assert.is_true(try(v_mi, "a", "127.0.0.2", why), "the first address was refused")
      E.sleep(SYNC_WAIT)
      -- node b counts the connection open at a
      wait_usage("b", "mi@e2e", function(_, c, i) return c == 1 and i == 1 end, "1 conn, 1 ip")
      assert.is_false(try(v_mi, "b", "127.0.0.3", why), "a second address at node b was served")
      assert.is_false(try(v_mi, "c", "127.0.0.3", why), "a second address at node c was served")
      -- the same address is fine at another node
      assert.is_true(try(v_mi, "c", "127.0.0.2", why), "the same address at node c was refused")
      close_held()
      local t0, ok = E.now(), false
      for _ = 1, 20 do
        E.sleep(0.5)
        if try(v_mi, "b", "127.0.0.3", why) then ok = true; break end
      end
      assert.is_true(ok, "the address was not freed")
      assert.is_true(E.now() - t0 < 8, ("freed after %.1f s"):format(E.now() - t0))
      close_held()
    end))

  it("max_conns = 2 holds across nodes", h:guard(function()
    local why = "too many connections"
    E.sleep(SYNC_WAIT)   -- the previous test's connections are gone everywhere
    assert.is_true(try(v_mc, "a", nil, why), "the first connection was refused")
    assert.is_true(try(v_mc, "b", nil, why), "the second connection was refused")
    E.sleep(SYNC_WAIT)
    assert.is_false(try(v_mc, "c", nil, why), "a third connection at node c was served")
    assert.is_false(try(v_mc, "a", nil, why), "a third connection at node a was served")
    held[1]:close()
    table.remove(held, 1)
    E.sleep(SYNC_WAIT)
    assert.is_true(try(v_mc, "c", nil, why), "a connection after one closed was refused")
    close_held()
  end))

  it("a 1,000,000-byte quota holds over traffic split across nodes", h:guard(function()
    -- 300,000 bytes each way through a (600,000), then 150,000 each way
    -- through b (300,000): 900,000 in the fleet, each node below the quota
    local s = assert(E.socks5_connect("127.0.0.1", q_socks.a, "127.0.0.1", echo.port))
    assert(E.transfer_echo(s, 300000, { timeout = 15 }))
    E.sleep(SYNC_WAIT)
    s = assert(E.socks5_connect("127.0.0.1", q_socks.b, "127.0.0.1", echo.port))
    assert(E.transfer_echo(s, 150000, { timeout = 15 }))
    E.sleep(SYNC_WAIT)
    -- 200,000 more each way through b: b alone would have 700,000, the
    -- fleet crosses 1,000,000 and b cuts the connection
    s = assert(E.socks5_connect("127.0.0.1", q_socks.b, "127.0.0.1", echo.port))
    local ok, err = E.transfer_echo(s, 200000, { timeout = 15 })
    assert.is_false(ok, "a transfer past the fleet's quota completed at node b")
    assert(E.wait_log(nodes.b.proc, "q@e2e tcp [^\n]*quota exceeded", 1, 5), tostring(err))
    E.sleep(SYNC_WAIT)
    -- and a new connection at a (which moved only 600,000) is refused
    wait_usage("a", "q@e2e", function(b) return b >= QUOTA end, "the fleet's bytes")
    wait_usage("c", "q@e2e", function(b) return b >= QUOTA end, "the fleet's bytes")
    local rtt = echo_rtt_via(q_socks.a, 3)
    assert.is_nil(rtt, "a connection at node a past the fleet's quota was served")
    assert(E.wait_log(nodes.a.proc, "quota exceeded", 1, 5), "node a did not refuse for the quota")
    -- the fleet's counter in redis: both nodes' bytes, as absolute counts
    local fields = redis_cli("HGETALL", "luaray:q:q@e2e")
    local sum = 0
    for v in fields:gmatch("\n(%d+)") do sum = sum + tonumber(v) end
    assert.is_true(sum >= QUOTA and sum <= QUOTA + 400000, "fleet bytes in redis: " .. fields)
  end))

  it("redis stalled (SIGSTOP): nodes serve new connections after at most timeout_ms, logged once",
    h:guard(function()
      local before_a = E.count_matches(E.read_file(nodes.a.proc.log), "did not answer within", true)
      psignal.kill(redis.pid, psignal.SIGSTOP)
      local ok, err = pcall(function()
        for i = 1, 4 do
          for _, name in ipairs { "a", "b" } do
            local t, e = echo_rtt(name, HT + 3)
            assert.is_truthy(t, ("connection %d via %s with redis stalled: %s"):format(i, name,
                                                                                  tostring(e)))
            -- the wait ends at timeout_ms (plus v2ray's own connect and a
            -- busy machine's slack); without that bound it would last
            -- until the stalled connection is dropped (2 s) or the
            -- handshake timeout
            assert.is_true(t < TIMEOUT_MS / 1000 + 1.5,
                           ("connection %d via %s took %.2f s"):format(i, name, t))
          end
        end
      end)
      psignal.kill(redis.pid, psignal.SIGCONT)
      assert(ok, err)
      local after_a = E.count_matches(E.read_file(nodes.a.proc.log), "did not answer within", true)
      assert.equal(before_a + 1, after_a, "the stall is logged once at node a")
      -- served meanwhile: a fresh request is still refused at another node
      -- once redis answers again
      local bytes, marker = capture(v_aead)
      local s = serve("a", bytes, marker)
      replay_refused(bytes, "c", "replay at c after the stall")
      s:close()
    end))

  it("redis stopped: nodes keep serving with no wait, log the outage once, and converge when it is back",
    h:guard(function()
      local function count(name, what)
        return E.count_matches(E.read_file(nodes[name].proc.log), what, true)
      end
      local down0, up0 = {}, {}
      for _, name in ipairs { "a", "b", "c" } do
        -- every node is connected now (after the stall test too)
        assert(E.wait_log(nodes[name].proc, "reachable again", count(name, "unreachable"), 15),
               name .. " is not connected\n" .. h:tail(nodes[name].proc))
        down0[name], up0[name] = count(name, "unreachable"), count(name, "reachable again")
      end
      local bytes_before, marker_before = capture(v_aead)
      serve("a", bytes_before, marker_before):close()
      h:stop(redis)
      for _, name in ipairs { "a", "b", "c" } do
        assert(E.wait_log(nodes[name].proc, "unreachable", down0[name] + 1, 10),
               name .. " did not notice the outage\n" .. h:tail(nodes[name].proc))
      end
      for i = 1, 5 do
        for _, name in ipairs { "a", "b" } do
          local t, e = echo_rtt(name, HT + 3)
          assert.is_truthy(t, ("connection %d via %s with redis gone: %s"):format(i, name, tostring(e)))
          assert.is_true(t < TIMEOUT_MS / 1000 + 1.5, ("connection %d via %s took %.2f s"):format(i, name, t))
        end
      end
      -- reconnect attempts (with backoff) do not log again
      E.sleep(1.5)
      for _, name in ipairs { "a", "b", "c" } do
        assert.equal(down0[name] + 1, count(name, "unreachable"), name .. ": the outage is logged once")
      end
      -- redis back (empty: no persistence): every node reconnects
      start_redis()
      for _, name in ipairs { "a", "b", "c" } do
        assert(E.wait_log(nodes[name].proc, "reachable again", up0[name] + 1, 15),
               name .. " did not reconnect\n" .. h:tail(nodes[name].proc))
      end
      -- the fleet's byte counts go back into the empty redis (each node's
      -- absolute count), not lost and not doubled
      local sum
      for _ = 1, 50 do
        sum = 0
        for v in redis_cli("HGETALL", "luaray:q:q@e2e"):gmatch("\n(%d+)") do sum = sum + tonumber(v) end
        if sum >= QUOTA then break end
        E.sleep(0.1)
      end
      assert.is_true(sum >= QUOTA and sum <= QUOTA + 400000, "fleet bytes after the restart: " .. sum)
      assert.is_true(E.wait_log(nodes.a.proc, "redis lost the fleet's counts", 1, 5) ~= nil)
      -- the connection and address counts converge again too
      assert.is_true(try(v_mi, "a", "127.0.0.2", "too many source addresses"),
                     "mi@e2e's first address after the restart was refused")
      E.sleep(SYNC_WAIT)
      assert.is_false(try(v_mi, "b", "127.0.0.3", "too many source addresses"),
                      "a second address at b was served after the restart")
      close_held()
      -- a request seen at a before the restart is still refused by a
      -- (its local filter)
      replay_refused(bytes_before, "a", "replay at a of a request from before the restart")
      -- and the shared filter works again
      local bytes, marker = capture(v_legacy)
      local s = serve("b", bytes, marker)
      replay_refused(bytes, "a", "replay at a after the restart")
      replay_refused(bytes, "c", "replay at c after the restart")
      s:close()
    end))

  it("luaray.cluster.call: coroutines of every node share state through redis", h:guard(function()
    local seen = {}
    for _, name in ipairs { "a", "b", "c" } do
      local obs
      for _ = 1, 100 do
        obs = E.observations(E.read_file(nodes[name].proc.out), "call")
        if #obs > 0 then break end
        E.sleep(0.1)
      end
      assert.equal(1, #obs, "node " .. name .. ": one luaray.cluster.call run")
      local o = obs[1]
      seen[#seen + 1] = tonumber(o[2])
      assert.equal("OK", o[3])                       -- a status reply
      assert.truthy(tonumber(o[4]) >= tonumber(o[2]))  -- MGET: a string
      assert.equal("false", o[5])                    -- MGET of a missing key: false
      assert.equal("nil", o[6])                      -- an error reply: nil, "redis: ERR ..."
      assert.truthy(o[7]:find("^redis: ERR unknown command"), o[7])
    end
    table.sort(seen)
    -- every node incremented the same counter: 1, 2, 3 in some order
    assert.same({ 1, 2, 3 }, seen)
  end))

  it("SIGHUP re-reads luaray.cluster; a reset_usage at one node resets the fleet's quota counter",
    h:guard(function()
      local c = nodes.c.proc
      local text = c.script:gsub("timeout_ms = " .. TIMEOUT_MS, "timeout_ms = " .. (TIMEOUT_MS + 50))
      assert(text ~= c.script)
      -- q@e2e's quota was used up over the fleet (the quota test)
      wait_usage("a", "q@e2e", function(b) return b >= QUOTA end, "the fleet's bytes")
      local f = assert(io.open(c.config, "wb"))
      f:write(text .. 'luaray.reset_usage("q@e2e")\n')
      f:close()
      psignal.kill(c.pid, psignal.SIGHUP)
      assert(E.wait_log(c, "cluster: settings changed; reconnecting", 1, 15), h:tail(c))
      assert(E.wait_log(c, "cluster: node c connected to redis", 2, 15), h:tail(c))
      -- the other nodes see the reset within a few seconds, and serve q@e2e again
      wait_usage("a", "q@e2e", function(b) return b < QUOTA / 10 end, "the reset")
      local rtt, err = echo_rtt_via(q_socks.a, HT + 3)
      assert.is_truthy(rtt, "q@e2e after the fleet's reset: " .. tostring(err))
      -- and the shared replay filter works with the new settings
      local bytes, marker = capture(v_aead)
      local s1 = serve("c", bytes, marker)
      replay_refused(bytes, "a", "replay at a of a request served by the reloaded node")
      s1:close()
    end))

  it("all nodes alive; the log never shows a key or a full user ID", h:guard(function()
    for name, n in pairs(nodes) do
      assert.is_true(h:alive(n.proc), "node " .. name .. " died")
      local log = E.read_file(n.proc.log)
      assert.falsy(log:find(ID0, 1, true), "a full UUID in the log of " .. name)
      assert.falsy(log:find(ID4, 1, true), "a full UUID in the log of " .. name)
    end
  end))
end)
