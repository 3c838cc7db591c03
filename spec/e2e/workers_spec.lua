-- luaray.workers(n) end to end (issue "Performance": workers = N with
-- SO_REUSEPORT; the replay filter must still catch a replay that lands on
-- another worker).
--
-- A luaray VMess server with 2 workers.  Every test makes many connections,
-- each from a new source port, so the kernel's SO_REUSEPORT hash spreads
-- them over both workers; the SIGUSR1 dump ("worker N: C connections, A
-- accepted") shows that it did.  A state kept per worker would show up as
-- a fraction of the connections getting through where none may: replays
-- (half land on the other worker than their original), a max_conns policy
-- and a luaray.shared counter.
local E = require "e2e.support"
local psignal = require "posix.signal"

local function say(fmt, ...) print(("# workers: " .. fmt):format(...)); io.stdout:flush() end

local read_file, count_matches, wait_log = E.read_file, E.count_matches, E.wait_log

-- SIGUSR1 -> { [worker] = accepted } from the dump it triggers.
local function accepted_by_worker(p, nworkers)
  local before = count_matches(read_file(p.log), "worker %d+: %d+ connections, %d+ accepted")
  assert(psignal.kill(p.pid, psignal.SIGUSR1))
  local text = assert(wait_log(p, "worker %d+: %d+ connections, %d+ accepted", before + nworkers))
  local t = {}
  for w, a in text:gmatch("worker (%d+): %d+ connections, (%d+) accepted") do
    t[tonumber(w)] = tonumber(a) -- the last dump wins
  end
  return t
end

-- Each worker took at least `share` of the `total` new connections.
local function assert_spread(before, after, total, share, what)
  for w = 0, 1 do
    local n = (after[w] or 0) - (before[w] or 0)
    assert.is_true(n >= total * share,
      ("%s: worker %d accepted %d of %d connections"):format(what, w, n, total))
  end
end

describe("workers", function()
  local h = E.new("workers")
  local ID, MC = E.uuid(), E.uuid()
  local HT = 1
  local echo, cap, target, sp, srv, socks_mc

  local function server_config(extra)
    local l = {
      "luaray.workers(2)",
      'luaray.log { level = "info", access = true }',
      ('luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true, ' ..
       'handshake_timeout = %d }'):format(sp, HT),
      'luaray.outbound "direct" { type = "direct" }',
      'luaray.outbound "block" { type = "blackhole" }',
      ('luaray.user { id = %q, email = "w@e2e" }'):format(ID),
      ('luaray.user { id = %q, email = "mc@e2e" }'):format(MC),
      'luaray.policy("mc@e2e", { max_conns = 2 })',
      extra or "",
    }
    return table.concat(l, "\n") .. "\n"
  end

  local function reload(text, want_fail)
    local f = assert(io.open(srv.config, "wb"))
    f:write(text)
    f:close()
    local log = read_file(srv.log)
    local ok_n = count_matches(log, "worker 1: reload: generation %d+ serving")
    local bad_n = count_matches(log, "reload failed")
    assert(psignal.kill(srv.pid, psignal.SIGHUP))
    if want_fail then
      assert(wait_log(srv, "reload failed", bad_n + 1))
      E.sleep(0.3)
    else
      assert(wait_log(srv, "worker 1: reload: generation %d+ serving", ok_n + 1))
    end
  end

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    cap = h:capture_server { name = "capture" }
    target = h:capture_server { name = "target" }
    sp = E.free_port()
    srv = h:luaray("server", server_config(), { ports = { sp } })
    srv.config = srv.argv and srv.argv[3]
    socks_mc = E.free_port()
    local text, o = E.luaray_client_script { socks_port = socks_mc, server_port = sp, id = MC,
                                             security = "aes-128-gcm" }
    h:luaray("client-mc", text, o)
  end))

  lazy_teardown(function() h:cleanup() end)

  it("2 workers serve a v2ray client: 300 connections intact, spread over both", h:guard(function()
    local socks = E.free_port()
    h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = sp, id = ID, alterId = 0, security = "aes-128-gcm" })
    local before = accepted_by_worker(srv, 2)
    local N, conc = 300, 20
    for _ = 1, N / conc do
      local ss = {}
      for i = 1, conc do ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)) end
      local ok, err = E.transfer_echo_many(ss, 16 * 1024, { timeout = 20 })
      assert(ok, err)
    end
    local after = accepted_by_worker(srv, 2)
    say("v2ray client: %d connections intact; accepted by worker 0: %d, worker 1: %d", N,
        after[0] - (before[0] or 0), after[1] - (before[1] or 0))
    assert_spread(before, after, N, 0.2, "v2ray client")
    assert.is_true(h:alive(srv), "the server died")
  end))

  it("replays of recorded v2ray requests are refused on whichever worker they land", h:guard(function()
    local socks = E.free_port()
    h:v2ray("v2ray-recorder", E.v2ray_client_config {
      socks_port = socks, server_port = cap.port, id = ID, alterId = 0, security = "aes-128-gcm" })
    local N = 300
    local before_cap = cap:count()
    local ss, markers = {}, {}
    for i = 1, N do
      markers[i] = ("marker-%04d-%s\n"):format(i, E.uuid())
      ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", target.port))
      assert(ss[i]:send(markers[i]))
    end
    local recs = assert(cap:wait_many(before_cap + 1, N, 60, 0.3, 20))
    for _, s in ipairs(ss) do s:close() end

    local before = accepted_by_worker(srv, 2)
    -- the originals: each reaches the target with its marker
    local base = target:count()
    local os_ = {}
    for i = 1, N do
      os_[i] = assert(E.tcp_connect("127.0.0.1", sp))
      assert(os_[i]:send(recs[i]))
    end
    local got = assert(target:wait_many(base + 1, N, #markers[1], 0.2, 20))
    local want = {}
    for _, m in ipairs(markers) do want[m] = true end
    local served = 0
    for i = 1, N do if want[got[i]] then want[got[i]] = nil; served = served + 1 end end
    for _, s in ipairs(os_) do s:close() end
    assert.equal(N, served, "originals served intact")

    -- the replays: each lands on either worker (half of them on the other
    -- one than their original); every one silent, FIN at the handshake
    -- timeout, no dial
    local base2 = target:count()
    local res = E.probe_many("127.0.0.1", sp, recs, { max_wait = HT + 3 })
    local bad = E.silent_failures(res, nil, HT - 0.1, HT + 1.5)
    E.sleep(0.3)
    local dials = target:count() - base2
    local after = accepted_by_worker(srv, 2)
    say("replay: %d originals served, %d replays, %d not silent, %d dials; accepted by worker 0: %d, "
        .. "worker 1: %d", served, N, #bad, dials, after[0] - (before[0] or 0), after[1] - (before[1] or 0))
    assert.is_true(#bad == 0, table.concat(bad, "\n", 1, math.min(#bad, 20)))
    assert.equal(0, dials, "replayed requests reached the target")
    assert_spread(before, after, 2 * N, 0.2, "originals and replays")
    assert.is_true(h:alive(srv), "the server died")
  end))

  it("max_conns = 2 holds across workers: 30 more attempts refused while two are open", h:guard(function()
    local a = assert(E.socks5_connect("127.0.0.1", socks_mc, "127.0.0.1", echo.port))
    assert(E.transfer_echo(a, 4096, { close = false, timeout = 5 }))
    local b = assert(E.socks5_connect("127.0.0.1", socks_mc, "127.0.0.1", echo.port))
    assert(E.transfer_echo(b, 4096, { close = false, timeout = 5 }))
    local before = accepted_by_worker(srv, 2)
    local nlog = count_matches(read_file(srv.log), "too many connections")
    local base = target:count()
    local N = 30
    local ss = {}
    for i = 1, N do
      ss[i] = E.socks5_connect("127.0.0.1", socks_mc, "127.0.0.1", target.port, nil, nil, 3)
      if ss[i] then ss[i]:send("probe\n") end
    end
    assert(wait_log(srv, "too many connections", nlog + N, 15))
    E.sleep(0.3)
    for _, s in pairs(ss) do s:close() end
    local after = accepted_by_worker(srv, 2)
    local reached = target:count() - base
    say("max_conns 2: %d attempts while 2 open, %d reached the target; accepted by worker 0: %d, "
        .. "worker 1: %d", N, reached, after[0] - (before[0] or 0), after[1] - (before[1] or 0))
    assert.equal(0, reached)
    assert_spread(before, after, N, 0.1, "max_conns attempts")
    -- the two held connections still work
    assert(E.transfer_echo(a, 16 * 1024, { close = false }))
    assert(E.transfer_echo(b, 16 * 1024))
    a:close()
    assert.is_true(h:alive(srv), "the server died")
  end))

  it("SIGHUP reloads every worker; luaray.shared counts across them; a bad script keeps all serving",
    h:guard(function()
    -- a route hook that lets the first 25 connections through, then blocks:
    -- one counter for both workers
    reload(server_config([[
luaray.on("reload", function() luaray.shared.set("passed", 0) end)
luaray.on("route", function(ctx)
  if ctx.user and ctx.user.email == "w@e2e" then
    if luaray.shared.incr("passed") > 25 then return "block" end
  end
end)
]]))
    local socks = E.free_port()
    h:v2ray("v2ray-hook", E.v2ray_client_config {
      socks_port = socks, server_port = sp, id = ID, alterId = 0, security = "aes-128-gcm" })
    local before = accepted_by_worker(srv, 2)
    local base = target:count()
    local N = 60
    for i = 1, N do
      local s = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", target.port, nil, nil, 3)
      if s then s:send(("c%02d\n"):format(i)); E.sleep(0.01); s:close() end
    end
    E.sleep(1)
    local reached = target:count() - base
    local after = accepted_by_worker(srv, 2)
    say("shared counter: %d connections, %d reached the target (limit 25); accepted by worker 0: %d, "
        .. "worker 1: %d", N, reached, after[0] - (before[0] or 0), after[1] - (before[1] or 0))
    -- the reload hook ran on both workers, both setting 0 before any traffic
    assert.equal(25, reached)
    assert_spread(before, after, N, 0.1, "hook connections")

    -- a script that fails to load: the main thread refuses it, no worker
    -- is asked, and everything keeps the generation it had
    local gens = count_matches(read_file(srv.log), "reload: generation %d+ serving")
    reload(server_config("luaray.route { to = }"), true)
    assert.equal(gens, count_matches(read_file(srv.log), "reload: generation %d+ serving"))
    base = target:count()
    for i = 1, 10 do
      local s = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", target.port, nil, nil, 3)
      if s then s:send(("d%02d\n"):format(i)); E.sleep(0.01); s:close() end
    end
    E.sleep(0.5)
    assert.equal(0, target:count() - base, "the old hook (blocking) stopped applying")
    assert.is_true(h:alive(srv), "the server died")
  end))

  it("SIGTERM: every worker stops accepting, open connections finish, exit 0", h:guard(function()
    local p2 = E.free_port()
    local text = server_config():gsub("127%.0%.0%.1:" .. sp, "127.0.0.1:" .. p2)
    local s2 = h:luaray("server-stop", text, { ports = { p2 } })
    local socks = E.free_port()
    local ctext, o = E.luaray_client_script { socks_port = socks, server_port = p2, id = ID }
    h:luaray("client-stop", ctext, o)
    -- open connections on (very likely) both workers
    local held = {}
    for i = 1, 8 do
      held[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      assert(E.transfer_echo(held[i], 1024, { close = false, timeout = 5 }))
    end
    assert(psignal.kill(s2.pid, psignal.SIGTERM))
    assert(wait_log(s2, "worker 1: no longer accepting"))
    -- the held connections still work during the grace period
    for i = 1, 8 do assert(E.transfer_echo(held[i], 8192, { timeout = 5 })) end
    local deadline = E.now() + 8
    while h:alive(s2) and E.now() < deadline do E.sleep(0.05) end
    assert.is_false(h:alive(s2), "the server did not exit after its connections finished")
    assert.equal(0, s2.code)
    assert.is_truthy(read_file(s2.log):find("stopped", 1, true))
  end))
end)
