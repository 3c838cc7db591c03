-- The control plane end to end (design.md 7): luaray.every, luaray.spawn,
-- luaray.sleep and luaray.http.request in a running daemon.
--
--   * timers: one every 0.2 s counts into luaray.shared (a hook reads the
--     count back); with two workers only one copy runs (its own count and
--     the shared one stay equal); one that fails logs file:line and keeps
--     ticking; one that never yields is cut by the budget at every tick
--     while the daemon serves connections; a tick that comes while the
--     previous run still waits on a request is skipped;
--   * luaray.http.request against tools/http_server.lua: GET (Content-Length
--     and chunked bodies, compared by checksum), POST with a body, the
--     request head as sent, a server that never answers (the timeout), a
--     refused connection, a body over max_body, 70 at once (64 go, 6 are
--     told "too many requests in flight"); HTTPS against openssl
--     s_server with a test PKI (ca =, no ca: refused, insecure = true);
--     called from a hook (outside a control coroutine): a clear error;
--     luaray.spawn from a hook: run on the main thread, an error on the
--     other worker;
--   * a rebuild that luaray.users.add causes keeps the control state (the
--     timer that added the user counts on); SIGHUP: the old config's timers
--     stop, the new one's start.
--
-- Waits are bounded by counts of events with generous deadlines, never by
-- tight timing: the machine may be loaded (2 cores, specs in parallel).
local E = require "e2e.support"
local psignal = require "posix.signal"

local KiB = 1024

-- The checksum the configs compute (h = h * 31 + byte, mod 2^32).
local function sum(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 4294967296 end
  return h
end

local SUM_LUA = [[
local function sum(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 4294967296 end
  return h
end
]]

-- Waits until `p.out` has n observations of `kind` -> the list, or fails.
local function wait_obs(p, kind, n, timeout)
  local deadline = E.now() + (timeout or 20)
  local list
  for _ = 1, 100000 do
    list = E.observations(E.read_file(p.out), kind)
    if #list >= n then return list end
    if E.now() >= deadline then break end
    E.sleep(0.05)
  end
  error(("%s: %d observation(s) of '%s' after %.0f s, wanted %d"):format(p.name, #list, kind,
        timeout or 20, n))
end

local function obs_by_name(p, kind)
  local t = {}
  for _, f in ipairs(E.observations(E.read_file(p.out), kind)) do t[f[2]] = f end
  return t
end

describe("control plane", function()
  local h = E.new("control")
  local echo, http

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    http = h:http_server()
  end))

  lazy_teardown(function() h:cleanup() end)

  local function head(port, workers, level)
    return table.concat({
      ('luaray.log { level = "%s", access = false }'):format(level or "info"),
      workers and ("luaray.workers(%d)"):format(workers) or "",
      ('luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }'):format(port),
      'luaray.outbound "direct" { type = "direct" }',
      SUM_LUA,
    }, "\n") .. "\n"
  end

  local function echo_via(port, n)
    local s, err = E.socks5_connect("127.0.0.1", port, "127.0.0.1", echo.port, nil, nil, 5)
    if not s then return false, "socks5 connect: " .. tostring(err) end
    return E.transfer_echo(s, n or 4 * KiB, { timeout = 10 })
  end

  -------------------------------------------------------------------------
  describe("timers", function()
    local srv, port

    lazy_setup(h:guard(function()
      port = E.free_port()
      srv = h:luaray_obs("timers", head(port, 2) .. [[
local mine = 0
luaray.every(0.2, function()
  mine = mine + 1
  local total = luaray.shared.incr("ticks")
  print(("OBS\ttick\t%d\t%d"):format(mine, total))
end)
luaray.every(0.3, function()
  luaray.shared.incr("failures")
  error("a timer failing on purpose")
end)
luaray.spawn(function() print("OBS\tspawned\tonce") end)
luaray.on("accept", function(ctx)
  print(("OBS\tseen\t%s\t%s"):format(tostring(luaray.shared.get("ticks")),
                                     tostring(luaray.shared.get("failures"))))
  local ok, err = pcall(luaray.spawn, function()
    luaray.sleep(0.05)
    print(("OBS\thookspawn\t%d"):format(luaray.shared.incr("hook-spawns")))
  end)
  print(("OBS\tspawncall\t%s\t%s"):format(tostring(ok), tostring(err)))
end)
]], { ports = { port } })
    end))

    it("a timer every 0.2 s counts into luaray.shared, one copy with two workers", h:guard(function()
      local ticks = wait_obs(srv, "tick", 10)
      for i, f in ipairs(ticks) do
        -- one copy: its own count is the shared count, in order
        assert.equal(tostring(i), f[2], "tick " .. i .. " of the state's own count")
        assert.equal(f[2], f[3], ("tick %d: own count %s, shared count %s (two copies?)")
                     :format(i, f[2], f[3]))
      end
      -- a hook (on whichever worker) reads the count back
      local seen_before = #E.observations(E.read_file(srv.out), "seen")
      assert.is_true(echo_via(port))
      local seen = wait_obs(srv, "seen", seen_before + 1)
      assert.is_true(tonumber(seen[#seen][2]) >= 10, "the hook read " .. seen[#seen][2])
      assert.equal(1, #E.observations(E.read_file(srv.out), "spawned"))
    end))

    it("spawn from a hook: runs on the main thread, an error on the other worker", h:guard(function()
      local before = #E.observations(E.read_file(srv.out), "spawncall")
      for _ = 1, 24 do assert.is_true(echo_via(port, 256)) end
      local calls = wait_obs(srv, "spawncall", before + 24)
      local ok, refused = 0, 0
      for i = before + 1, #calls do
        local f = calls[i]
        if f[2] == "true" then
          ok = ok + 1
        else
          refused = refused + 1
          assert.truthy(f[3]:find("control coroutines run on the main thread only", 1, true), f[3])
        end
      end
      -- SO_REUSEPORT spreads 24 connections over both workers
      assert.is_true(ok > 0 and refused > 0, ("%d spawned, %d refused"):format(ok, refused))
      local spawned_before = 0
      for i = 1, before do if calls[i][2] == "true" then spawned_before = spawned_before + 1 end end
      wait_obs(srv, "hookspawn", spawned_before + ok)
    end))

    it("a failing timer is logged with file:line and keeps its schedule", h:guard(function()
      local log = assert(E.wait_log(srv, "failed: [^\n]*a timer failing on purpose", 4, 20))
      assert.truthy(log:find("timer every 0.3 s %(.-timers[^:]*%.lua:%d+%) failed: .-timers[^:]*%.lua:%d+: "
                             .. "a timer failing on purpose"), log)
      assert.is_true(h:alive(srv))
    end))
  end)

  -------------------------------------------------------------------------
  describe("a timer that never yields", function()
    it("is cut by the budget at every tick; the daemon serves on", h:guard(function()
      local port = E.free_port()
      local srv = h:luaray_obs("spin", head(port) .. [[
luaray.every(0.5, function()
  print("OBS\tspin\tstart")
  while true do end
end)
]], { ports = { port } })
      local log = assert(E.wait_log(srv, "control coroutine exceeded its budget", 3, 30))
      assert.truthy(log:find("timer every 0.5 s %(.-spin[^:]*%.lua:%d+%) failed: .-spin[^:]*%.lua:%d+: "
                             .. "luaray: control coroutine exceeded its budget"), log)
      for _ = 1, 3 do
        local ok, err = echo_via(port, 16 * KiB)
        assert.is_true(ok, err)
      end
      -- and it keeps its schedule
      wait_obs(srv, "spin", 5, 30)
      assert.is_true(h:alive(srv))
      h:stop_luaray(srv)
    end))
  end)

  -------------------------------------------------------------------------
  describe("luaray.http.request", function()
    local srv, cap, refused_port, port

    lazy_setup(h:guard(function()
      cap = h:capture_server()
      refused_port = E.free_port()
      port = E.free_port()
      local base = ("http://127.0.0.1:%d"):format(http.port)
      srv = h:luaray_obs("http", head(port, nil, "debug") .. ([[
local BASE, CAPTURE, REFUSED = %q, %q, %q
local function report(name, r, e)
  if r then
    print(("OBS\thttp\t%%s\t%%d\t%%d\t%%d\t%%s"):format(name, r.status, #r.body, sum(r.body),
          tostring(r.headers["content-length"] or r.headers["transfer-encoding"])))
  else
    print(("OBS\thttp\t%%s\terror\t%%s"):format(name, tostring(e)))
  end
end
luaray.spawn(function()
  report("get", luaray.http.request { url = BASE .. "/data/300000/7" })
  report("chunked", luaray.http.request { url = BASE .. "/chunked/200000/9" })
  local body = ("luaray posts this body. "):rep(4000)
  local r, e = luaray.http.request { method = "POST", url = BASE .. "/echo", body = body,
                                     headers = { ["content-type"] = "text/plain" } }
  report("post", r, e)
  print(("OBS\thttp\tpost-equal\t%%s"):format(tostring(r and r.body == body)))
  r, e = luaray.http.request { url = BASE .. "/headers", headers = { ["X-Luaray-Test"] = "yes 1" } }
  report("headers", r, e)
  if r then
    print(("OBS\thttp\theaders-sent\t%%s\t%%s"):format(tostring(r.body:find("X-Luaray-Test: yes 1", 1, true) ~= nil),
          tostring(r.body:find("Connection: close", 1, true) ~= nil)))
  end
  report("missing", luaray.http.request { url = BASE .. "/nothing-here" })
  local t0 = luaray.now()
  r, e = luaray.http.request { url = CAPTURE .. "/never", timeout = 1.5 }
  report("timeout", r, e)
  print(("OBS\thttp\ttimeout-took\t%%.2f"):format(luaray.now() - t0))
  report("refused", luaray.http.request { url = REFUSED .. "/" })
  report("too-big", luaray.http.request { url = BASE .. "/data/100000/3", max_body = 50000 })
  report("bad-url", luaray.http.request { url = "ftp://127.0.0.1/" })
  luaray.sleep(0.2)
  print("OBS\thttp\tdone")
end)
-- a tick while the previous run still waits on its request is skipped
luaray.every(0.2, function()
  local r, e = luaray.http.request { url = CAPTURE .. "/slow-tick", timeout = 1.2 }
  print(("OBS\tslow\t%%s"):format(tostring(e)))
end)
luaray.on("accept", function(ctx)
  local ok, e = pcall(luaray.http.request, { url = BASE .. "/" })
  print(("OBS\thook\t%%s\t%%s"):format(tostring(ok), tostring(e)))
end)
]]):format(base, ("http://127.0.0.1:%d"):format(cap.port),
           ("http://127.0.0.1:%d"):format(refused_port)), { ports = { port } })
      wait_obs(srv, "http", 1)
      local deadline = E.now() + 30
      repeat
        E.sleep(0.1)
      until obs_by_name(srv, "http").done or E.now() > deadline
    end))

    it("GET with Content-Length and chunked bodies", h:guard(function()
      local o = obs_by_name(srv, "http")
      assert.same({ "get", "200", "300000", tostring(sum(E.pattern(300000, 7))), "300000" },
                  { o.get[2], o.get[3], o.get[4], o.get[5], o.get[6] })
      assert.same({ "chunked", "200", "200000", tostring(sum(E.pattern(200000, 9))), "chunked" },
                  { o.chunked[2], o.chunked[3], o.chunked[4], o.chunked[5], o.chunked[6] })
      assert.equal("404", o.missing[3])
    end))

    it("POST with a body, and the head it sends", h:guard(function()
      local o = obs_by_name(srv, "http")
      assert.equal("200", o.post[3])
      assert.equal(tostring(#("luaray posts this body. "):rep(4000)), o.post[4])
      assert.equal("true", o["post-equal"][3])
      assert.equal("200", o.headers[3])
      assert.same({ "true", "true" }, { o["headers-sent"][3], o["headers-sent"][4] })
      local log = E.read_file(http.log)
      assert.truthy(log:find("POST /echo host=127.0.0.1:" .. http.port, 1, true), log)
    end))

    it("a server that never answers: the timeout", h:guard(function()
      local o = obs_by_name(srv, "http")
      assert.equal("error", o.timeout[3])
      assert.truthy(o.timeout[4]:find("^timeout after 1.5 s reading the response"), o.timeout[4])
      local took = tonumber(o["timeout-took"][3])
      assert.is_true(took >= 1.4 and took < 10, "the timeout took " .. took .. " s")
    end))

    it("refused, over max_body, a bad URL: nil and the reason", h:guard(function()
      local o = obs_by_name(srv, "http")
      assert.equal("error", o.refused[3])
      assert.truthy(o.refused[4]:find("connect 127.0.0.1:" .. refused_port .. ": Connection refused", 1, true),
                    o.refused[4])
      assert.equal("error", o["too-big"][3])
      assert.truthy(o["too-big"][4]:find("over max_body", 1, true), o["too-big"][4])
      assert.equal("error", o["bad-url"][3])
      assert.truthy(o["bad-url"][4]:find("url:", 1, true), o["bad-url"][4])
    end))

    it("a tick comes while the previous run waits: skipped, not a second copy", h:guard(function()
      -- each run waits 1.2 s for a server that never answers; ticks every 0.2 s
      local slow = wait_obs(srv, "slow", 3, 30)
      local t_log = E.read_file(srv.log)
      assert.truthy(t_log:find("the previous run still waits; tick skipped", 1, true))
      for _, f in ipairs(slow) do assert.truthy(f[2]:find("^timeout"), f[2]) end
      -- never two at once: connections to the capture server (minus the
      -- harness probe, the spawn's /never and the runs so far) stay at most
      -- one ahead of the runs that ended
      local ended = #E.observations(E.read_file(srv.out), "slow")
      local conns = cap:count() - 2
      assert.is_true(conns <= ended + 1, ("%d requests for %d ended runs"):format(conns, ended))
    end))

    it("called from a hook: a clear error", h:guard(function()
      assert.is_true(echo_via(port))
      local hook = wait_obs(srv, "hook", 1)
      assert.equal("false", hook[1][2])
      assert.truthy(hook[1][3]:find("luaray.http.request works only inside luaray.every / luaray.spawn functions",
                                    1, true), hook[1][3])
    end))
  end)

  -------------------------------------------------------------------------
  describe("requests in flight", function()
    it("at most 64 at once: the next ones get nil and the reason", h:guard(function()
      -- a listener that never accepts: connects complete in its backlog and
      -- the requests wait for their timeout
      local socket = require "socket"
      local l = assert(socket.tcp4())
      assert(l:bind("127.0.0.1", 0))
      assert(l:listen(256))
      local _, lport = l:getsockname()
      local port = E.free_port()
      local srv = h:luaray_obs("inflight", head(port) .. ([[
for i = 1, 70 do
  luaray.spawn(function()
    local r, e = luaray.http.request { url = "http://127.0.0.1:%d/", timeout = 3 }
    print(("OBS\tflight\t%%d\t%%s"):format(i, tostring(e)))
  end)
end
]]):format(tonumber(lport)), { ports = { port } })
      local list = wait_obs(srv, "flight", 70, 40)
      local busy, timeouts = 0, 0
      for _, f in ipairs(list) do
        if f[3]:find("too many requests in flight (64 at most)", 1, true) then busy = busy + 1
        elseif f[3]:find("^timeout after 3 s") then timeouts = timeouts + 1 end
      end
      assert.same({ 6, 64 }, { busy, timeouts })
      l:close()
      h:stop_luaray(srv)
    end))
  end)

  -------------------------------------------------------------------------
  describe("HTTPS", function()
    it("verifies the server with ca =, refuses it without, and insecure = true skips it",
       h:guard(function()
      local dir = h:test_pki({ { "server", { "localhost" } } })
      local f = assert(io.open(dir .. "/hello.txt", "wb"))
      f:write("hello over TLS\n")
      f:close()
      local tls_port = E.free_port()
      h:spawn("s_server", { "sh", "-c", ('cd "%s" && exec openssl s_server -quiet -accept 127.0.0.1:%d '
        .. '-cert server.crt -key server.key -cert_chain int.pem -WWW'):format(dir, tls_port) },
        { ports = { tls_port } })
      local port = E.free_port()
      local url = ("https://localhost:%d/hello.txt"):format(tls_port)
      local srv = h:luaray_obs("https", head(port) .. ([[
local URL, CA = %q, %q
luaray.spawn(function()
  for _, case in ipairs { { "ca", { ca = CA } }, { "no-ca", {} }, { "insecure", { insecure = true } } } do
    local t = case[2]
    t.url, t.timeout = URL, 10
    local r, e = luaray.http.request(t)
    print(("OBS\ttls\t%%s\t%%s\t%%s"):format(case[1], r and r.status or "error",
          r and r.body:gsub("\n", "") or tostring(e)))
  end
end)
]]):format(url, dir .. "/ca.pem"), { ports = { port } })
      wait_obs(srv, "tls", 3, 40)
      local o = obs_by_name(srv, "tls")
      assert.same({ "200", "hello over TLS" }, { o.ca[3], o.ca[4] })
      assert.equal("error", o["no-ca"][3])
      assert.truthy(o["no-ca"][4]:find("certificate verify failed", 1, true), o["no-ca"][4])
      assert.same({ "200", "hello over TLS" }, { o.insecure[3], o.insecure[4] })
      h:stop_luaray(srv)
    end))
  end)

  -------------------------------------------------------------------------
  describe("a rebuild for luaray.users", function()
    it("keeps the control state: the timer that added a user goes on", h:guard(function()
      local port, vport = E.free_port(), E.free_port()
      local srv = h:luaray_obs("users", head(port) .. ([[
luaray.user { id = %q, email = "first@e2e" }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d" }
local n = 0
luaray.every(0.2, function()
  n = n + 1
  if n == 3 then
    print(("OBS\tadd\t%%s"):format(tostring(luaray.users.add { id = %q, email = "added@e2e" })))
  end
  print(("OBS\tn\t%%d"):format(n))
end)
]]):format(E.uuid(), vport, E.uuid()), { ports = { port, vport } })
      wait_obs(srv, "add", 1)
      assert(E.wait_log(srv, "reload: generation 2 serving", 1, 30))
      local after = #E.observations(E.read_file(srv.out), "n")
      local list = wait_obs(srv, "n", after + 5)
      for i, f in ipairs(list) do
        assert.equal(tostring(i), f[2], "the timer's own count restarted at tick " .. i)
      end
      h:stop_luaray(srv)
    end))
  end)

  -------------------------------------------------------------------------
  describe("SIGHUP", function()
    it("stops the old config's timers and starts the new one's", h:guard(function()
      local port = E.free_port()
      local function cfg(label)
        return head(port) .. ([[
luaray.every(0.2, function() print("OBS\tgen\t%s") end)
]]):format(label)
      end
      local srv = h:luaray_obs("hup", cfg("old"), { ports = { port } })
      wait_obs(srv, "gen", 3)
      h:write(srv.config:match("[^/]+$"), cfg("new"))
      assert(psignal.kill(srv.pid, psignal.SIGHUP))
      assert(E.wait_log(srv, "reload: generation 2 serving", 1, 30))
      local function count(label)
        local n = 0
        for _, f in ipairs(E.observations(E.read_file(srv.out), "gen")) do
          if f[2] == label then n = n + 1 end
        end
        return n
      end
      local deadline = E.now() + 30
      while count("new") < 5 and E.now() < deadline do E.sleep(0.1) end
      assert.is_true(count("new") >= 5, "new timer ticks: " .. count("new"))
      local old = count("old")
      -- a few more new ticks, and no old one among them
      local target = count("new") + 3
      deadline = E.now() + 30
      while count("new") < target and E.now() < deadline do E.sleep(0.1) end
      assert.equal(old, count("old"))
      local lines = E.observations(E.read_file(srv.out), "gen")
      local seen_new = false
      for _, f in ipairs(lines) do
        if f[2] == "new" then seen_new = true end
        assert.is_false(seen_new and f[2] == "old", "an old tick after the new timer started")
      end
      h:stop_luaray(srv)
    end))
  end)
end)
