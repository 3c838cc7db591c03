-- Per-user policies end to end (luaray.policy / usage / reset_usage, set from
-- the config, enforced by the relay; issue "The Lua layer", item 5), and
-- the examples limits.lua and quota.lua.
--
-- A luaray VMess server with one user per limit:
--   rl@e2e  rate 2 MiB/s (burst 64 KiB)     mc@e2e  max_conns 2
--   mi@e2e  max_ips 1                        q@e2e   quota 256 KiB
-- reached through luaray clients (SOCKS5 -> VMess), and for max_ips through
-- two v2ray 4.34 clients, one of them sending from 127.0.0.2 (its
-- outbound's sendThrough), so the server sees two source addresses on
-- loopback.  "Refused" means: the server logs the refusal and the
-- destination (a recording server) never sees the connection.
local E = require "e2e.support"
local psignal = require "posix.signal"

local KiB, MiB = 1024, 1024 * 1024

-- (E.wait_log waits 10 s by default; these waits were 5 s)
local read_file, count_matches, wait_log = E.read_file, E.count_matches, E.wait_log

local function hup(p) assert(psignal.kill(p.pid, psignal.SIGHUP)) end


-- Rewrites a luaray's config file and reloads it; waits for the outcome.
local function reload(h, p, text, want_fail)
  local f = assert(io.open(p.config or p.argv[3], "wb"))
  f:write(text)
  f:close()
  local log = read_file(p.log)
  local ok_n = count_matches(log, "reload: generation %d+ serving")
  local bad_n = count_matches(log, "reload failed")
  hup(p)
  if want_fail then
    assert(wait_log(p, "reload failed", bad_n + 1))
  else
    local done, err = wait_log(p, "reload: generation %d+ serving", ok_n + 1)
    assert(done, tostring(err) .. "\n" .. h:tail(p))
  end
end

describe("per-user policies", function()
  local h = E.new("policy")
  local echo, target, srv, sp
  local ID = { rl = E.uuid(), mc = E.uuid(), mi = E.uuid(), q = E.uuid() }
  local socks = {}      -- user -> SOCKS5 port of a luaray client
  local v2_a, v2_b      -- SOCKS5 ports of the v2ray clients for mi@e2e (127.0.0.1, 127.0.0.2)
  local RATE = 2 * MiB
  local QUOTA = 256 * KiB

  local function server_config(extra)
    local l = {
      'luaray.log { level = "info", access = true }',
      ('luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true, ' ..
       'handshake_timeout = 3 }'):format(sp),
      'luaray.outbound "direct" { type = "direct" }',
    }
    for _, u in ipairs { "rl", "mc", "mi", "q" } do
      l[#l + 1] = ('luaray.user { id = %q, email = "%s@e2e" }'):format(ID[u], u)
    end
    l[#l + 1] = ('luaray.policy("rl@e2e", { rate = %d, burst = %d })'):format(RATE, 64 * KiB)
    l[#l + 1] = 'luaray.policy("mc@e2e", { max_conns = 2 })'
    l[#l + 1] = 'luaray.policy("mi@e2e", { max_ips = 1 })'
    l[#l + 1] = ('luaray.policy("q@e2e", { quota = %d })'):format(QUOTA)
    l[#l + 1] = extra or ""
    return table.concat(l, "\n") .. "\n"
  end

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    target = h:capture_server { name = "target" }
    sp = E.free_port()
    srv = h:luaray_obs("server", server_config(), { ports = { sp } })
    for _, u in ipairs { "rl", "mc", "q" } do
      socks[u] = E.free_port()
      local text, o = E.luaray_client_script { socks_port = socks[u], server_port = sp, id = ID[u],
                                               security = "aes-128-gcm" }
      h:luaray("client-" .. u, text, o)
    end
    v2_a, v2_b = E.free_port(), E.free_port()
    h:v2ray("v2ray-mi-a", E.v2ray_client_config { socks_port = v2_a, server_port = sp, id = ID.mi })
    local cfg = E.v2ray_client_config { socks_port = v2_b, server_port = sp, id = ID.mi }
    cfg.outbounds[1].sendThrough = "127.0.0.2"
    h:v2ray("v2ray-mi-b", cfg)
  end))

  lazy_teardown(function() h:cleanup() end)

  local function assert_alive()
    assert.is_true(h:alive(srv), "the luaray server died")
  end

  -- An open, working connection through SOCKS5 port `port` to the echo server.
  local function hold(port)
    local s, err = E.socks5_connect("127.0.0.1", port, "127.0.0.1", echo.port)
    assert(s, err)
    local ok, info = E.transfer_echo(s, 4 * KiB, { close = false, timeout = 5 })
    assert(ok, info)
    return s
  end

  -- True when a connection through `port` reaches the target; false when the
  -- server logs one more match of `refusal` and the target saw nothing.
  local function reaches(port, refusal)
    local before = target:count()
    local nlog = count_matches(read_file(srv.log), refusal)
    local s = E.socks5_connect("127.0.0.1", port, "127.0.0.1", target.port, nil, nil, 3)
    if s then s:send("probe\n") end
    local deadline = E.now() + 5
    local reached = false
    for _ = 1, 1000 do
      if target:count() > before then reached = true; break end
      if count_matches(read_file(srv.log), refusal) > nlog then break end
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

  -- Waits until the server has logged n access lines for `email` in total.
  local function wait_closed(email, n)
    return wait_log(srv, email:gsub("%p", "%%%0") .. " tcp [^\n]* up=%d+", n)
  end

  it("rate: a download through the limited user runs at the configured rate", h:guard(function()
    -- without a rate (mc@e2e), 8 MiB: the control
    local s = assert(E.socks5_connect("127.0.0.1", socks.mc, "127.0.0.1", echo.source_port))
    local t0 = E.now()
    assert(E.source_read(s, 8 * MiB, { timeout = 20 }))
    local free_rate = 8 * MiB / (E.now() - t0)
    -- rate 2 MiB/s, burst 64 KiB: 3 MiB take about 1.47 s
    local N = 3 * MiB
    s = assert(E.socks5_connect("127.0.0.1", socks.rl, "127.0.0.1", echo.source_port))
    t0 = E.now()
    assert(E.source_read(s, N, { timeout = 20 }))
    local elapsed = E.now() - t0
    local rate = N / elapsed
    local expect = RATE * N / (N - 64 * KiB)       -- the burst comes for free
    assert.is_true(free_rate > 3 * RATE,
      ("the unlimited control ran at only %.2f MiB/s"):format(free_rate / MiB))
    assert.is_true(rate > 0.75 * expect and rate < 1.25 * expect,
      ("limited to %.2f MiB/s (burst 64 KiB): expected %.2f MiB/s, measured %.2f MiB/s (%.2f s for %d bytes)"):format(
        RATE / MiB, expect / MiB, rate / MiB, elapsed, N))
    -- uploads count too (both directions share the bucket)
    s = assert(E.socks5_connect("127.0.0.1", socks.rl, "127.0.0.1", echo.sink_port))
    t0 = E.now()
    local count = E.sink_send(s, N, { timeout = 20 })
    elapsed = E.now() - t0
    assert.equal(N, count)
    rate = N / elapsed
    assert.is_true(rate > 0.75 * expect and rate < 1.25 * expect,
      ("upload: expected %.2f MiB/s, measured %.2f MiB/s"):format(expect / MiB, rate / MiB))
    assert_alive()
  end))

  it("max_conns: a third connection is refused while two are open; one closing lets a new one in",
    h:guard(function()
    local a, b = hold(socks.mc), hold(socks.mc)
    assert.is_false(reaches(socks.mc, "too many connections"), "a third connection reached the target")
    -- the two held connections still work
    assert(E.transfer_echo(a, 16 * KiB, { close = false }))
    assert(E.transfer_echo(b, 16 * KiB, { close = false }))
    local closed_before = count_matches(read_file(srv.log), "mc@e2e tcp [^\n]* up=%d+")
    a:close()
    assert(wait_closed("mc@e2e", closed_before + 1))
    assert.is_true(reaches(socks.mc, "too many connections"), "a new connection after one closed was refused")
    b:close()
    assert_alive()
  end))

  it("max_ips: a second source address is refused while the first has a connection", h:guard(function()
    local a = hold(v2_a)                                 -- from 127.0.0.1
    assert.is_false(reaches(v2_b, "too many source addresses"), "127.0.0.2 reached the target")
    local a2 = hold(v2_a)                                -- the same address is fine
    local before = count_matches(read_file(srv.log), "mi@e2e tcp [^\n]* up=%d+")
    a:close()
    a2:close()
    assert(wait_closed("mi@e2e", before + 2))
    -- v2ray closes its server side a little after the client side; the
    -- server has released both once their access lines are there
    assert.is_true(reaches(v2_b, "too many source addresses"), "127.0.0.2 refused after 127.0.0.1 left")
    local text = read_file(srv.log)
    assert.is_truthy(text:find("127%.0%.0%.2:%d+ vmess%-in mi@e2e"), "the server never saw 127.0.0.2")
    assert_alive()
  end))

  it("quota: the connection crossing it is closed, new ones are refused, reset_usage restores",
    h:guard(function()
    -- 96 KiB each way: 192 KiB of the 256 KiB
    local s = assert(E.socks5_connect("127.0.0.1", socks.q, "127.0.0.1", echo.port))
    assert(E.transfer_echo(s, 96 * KiB, { timeout = 10 }))
    -- 128 KiB more each way would be 448 KiB: cut off near 256 KiB
    s = assert(E.socks5_connect("127.0.0.1", socks.q, "127.0.0.1", echo.port))
    local ok, err = E.transfer_echo(s, 128 * KiB, { timeout = 10 })
    assert.is_false(ok, "a transfer past the quota completed")
    -- the close is seen by whichever of the client's reads or writes comes
    -- first (timing: slower under AddressSanitizer)
    assert.is_truthy(tostring(err):find("closed by peer", 1, true) or
                     tostring(err):find("send: closed", 1, true), err)
    local text = assert(wait_log(srv, "q@e2e tcp [^\n]*quota exceeded", 1))
    -- what the cut connection moved: at most the quota left (64 KiB) plus
    -- what was in flight (a few chunks)
    local up, down = text:match("q@e2e tcp [^\n]* up=(%d+) down=(%d+) dur=[%d.]+ quota exceeded")
    assert.is_truthy(up, "no access line for the cut connection")
    local moved = tonumber(up) + tonumber(down)
    assert.is_true(moved >= 64 * KiB and moved <= 64 * KiB + 256 * KiB,
      "the cut connection moved " .. moved .. " bytes")
    -- refused from now on
    assert.is_false(reaches(socks.q, "quota exceeded"), "a connection past the quota reached the target")
    -- a new period: luaray.reset_usage from the reloaded config
    reload(h, srv, server_config('assert(luaray.reset_usage("q@e2e"))\n' ..
      'assert(luaray.usage("q@e2e").bytes == 0, "usage not reset")\n'))
    assert.is_true(reaches(socks.q, "quota exceeded"), "refused after reset_usage")
    s = assert(E.socks5_connect("127.0.0.1", socks.q, "127.0.0.1", echo.port))
    assert(E.transfer_echo(s, 64 * KiB, { timeout = 10 }))
    -- back to the plain config (no reset on the next load)
    reload(h, srv, server_config())
    assert_alive()
  end))

  it("a failed reload changes no policy", h:guard(function()
    -- the bad config sets max_conns = 1 for mc@e2e, then fails (unknown outbound)
    reload(h, srv, server_config('luaray.policy("mc@e2e", { max_conns = 1 })\n' ..
                                 'luaray.route { port = "1", to = "nosuch" }\n'), true)
    assert.is_truthy(read_file(srv.log):find("reload failed, keeping generation %d+: [^\n]*:%d+:"))
    local a = hold(socks.mc)
    local ok = reaches(socks.mc, "too many connections")
    a:close()
    assert.is_true(ok, "a second connection was refused: the failed reload's max_conns = 1 took effect")
    assert_alive()
  end))

  -------------------------------------------------------------------------
  describe("examples", function()
    local function example(name)
      local text = read_file("examples/" .. name)
      assert.is_true(#text > 0, "examples/" .. name .. " is missing")
      return text
    end

    local function once(text, from, to)
      local n
      text, n = text:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
      assert.equal(1, n, "expected exactly one '" .. from .. "' in the example")
      return text
    end

    -- Starts an example as the server on a fresh port (loopback, private
    -- destinations allowed) -> proc, port, the text it runs.
    local function start_example(name, edits)
      local text = example(name)
      local port = E.free_port()
      text = once(text, 'listen = "0.0.0.0:10086", allow_private = false',
                        ('listen = "127.0.0.1:%d", allow_private = true'):format(port))
      for _, e in ipairs(edits or {}) do text = once(text, e[1], e[2]) end
      local p = h:luaray("example-" .. name:gsub("%.lua$", ""), text, { ports = { port } })
      return p, port, text
    end

    local function client_for(port, id)
      local sp2 = E.free_port()
      local text, o = E.luaray_client_script { socks_port = sp2, server_port = port, id = id,
                                               security = "aes-128-gcm" }
      return h:luaray("example-client", text, o), sp2
    end

    local function id_of(text, email)
      local id = text:match('id = "([%x%-]+)", email = "' .. email:gsub("%p", "%%%0") .. '"')
      assert.is_truthy(id, "no user " .. email .. " in the example")
      return id
    end

    it("examples/limits.lua: bob's rate, max_conns (auth hook reading luaray.usage) and max_ips",
      h:guard(function()
      local ex, port, text = start_example("limits.lua")
      local saved = srv
      srv = ex                                       -- reaches() reads this log
      local ok, err = pcall(function()
        local bob = id_of(text, "bob@example.com")
        local _, cb = client_for(port, bob)
        -- rate 1 MB/s, burst 128 kB: 1.5 MB in about 1.37 s
        local N = 1500000
        local s = assert(E.socks5_connect("127.0.0.1", cb, "127.0.0.1", echo.source_port))
        local t0 = E.now()
        assert(E.source_read(s, N, { timeout = 20 }))
        local rate = N / (E.now() - t0)
        local expect = 1e6 * N / (N - 128000)        -- the burst comes for free
        assert.is_true(rate > 0.75 * expect and rate < 1.25 * expect,
          ("bob: 1 MB/s plan (burst 128 kB), expected %.3f MB/s, measured %.3f MB/s"):format(
            expect / 1e6, rate / 1e6))
        -- four connections at once, the fifth is refused by the auth hook
        local held = {}
        for i = 1, 4 do held[i] = hold(cb) end
        local by_hook = "bob@example%.com tcp [^\n]* refused by auth hook"
        local n_hook = count_matches(read_file(ex.log), by_hook)
        assert.is_false(reaches(cb, by_hook), "bob's fifth connection reached the target")
        assert.equal(n_hook + 1, count_matches(read_file(ex.log), by_hook),
          "bob's fifth connection was not refused by the auth hook (luaray.usage saw no connections?)")
        -- a second source address for bob (max_ips = 1)
        local v2 = E.free_port()
        local cfg = E.v2ray_client_config { socks_port = v2, server_port = port, id = bob }
        cfg.outbounds[1].sendThrough = "127.0.0.2"
        h:v2ray("example-v2ray-bob", cfg)
        local pat = "bob@example%.com tcp [^\n]* up=%d+ down=%d+ dur=[%d.]+ done"
        local before = count_matches(read_file(ex.log), pat)
        held[4]:close()
        assert(wait_log(ex, pat, before + 1))
        assert.is_false(reaches(v2, "too many source addresses"), "bob from 127.0.0.2 reached the target")
        for i = 1, 3 do held[i]:close() end
        assert.is_true(h:alive(ex))
      end)
      srv = saved
      h:stop_luaray(ex)
      assert(ok, err)
    end))

    it("examples/quota.lua: counted by the close hook in luaray.shared, kept across a reload, " ..
       "reset in a new month", h:guard(function()
      local ex, port, text = start_example("quota.lua",
        { { '["bob@example.com"] = 10 * GB', '["bob@example.com"] = 100000' } })
      local saved = srv
      srv = ex
      local ok, err = pcall(function()
        local _, ca = client_for(port, id_of(text, "alice@example.com"))
        local _, cb = client_for(port, id_of(text, "bob@example.com"))
        -- 64 KiB each way: 131072 bytes > bob's 100000
        local s = assert(E.socks5_connect("127.0.0.1", cb, "127.0.0.1", echo.port))
        assert(E.transfer_echo(s, 64 * KiB, { timeout = 10 }))
        assert(wait_log(ex, "bob@example%.com tcp [^\n]* up=65536 down=65536", 1))
        local refused = "bob@example%.com tcp [^\n]* refused by auth hook"
        assert.is_false(reaches(cb, refused), "bob reached the target past the quota")
        s = assert(E.socks5_connect("127.0.0.1", ca, "127.0.0.1", echo.port))
        assert(E.transfer_echo(s, 16 * KiB, { timeout = 10 }), "alice was refused")
        -- the counter survives a reload (same month: no reset)
        reload(h, ex, text)
        assert.is_false(reaches(cb, refused), "bob got through after a reload: the counter was lost")
        -- a reload in a "new month" resets the counters
        local new_month = once(text, 'local period = os.date("!%Y-%m")', 'local period = "1999-12"')
        reload(h, ex, new_month)
        assert.is_true(reaches(cb, refused), "bob still refused after the period changed")
        assert.is_true(h:alive(ex))
      end)
      srv = saved
      h:stop_luaray(ex)
      assert(ok, err)
    end))
  end)
end)
