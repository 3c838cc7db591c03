-- Proves the end-to-end harness (spec/e2e/support.lua) with v2ray 4.34 on
-- both ends: echo server <- v2ray VMess server <- v2ray client <- SOCKS5/HTTP
-- from this process. Nothing here runs luaray; later specs swap either v2ray
-- for h:luaray(...) and reuse the same checks.
local E = require "e2e.support"

local MiB = 1024 * 1024

describe("e2e harness with v2ray 4.34", function()
  local h = E.new("v2ray_sanity")
  local echo
  local pairs_by_case = {}

  lazy_setup(h:guard(function()
    echo = h:echo_server { ipv6 = E.has_ipv6() }
  end))

  lazy_teardown(function() h:cleanup() end)

  -- One v2ray server+client pair per case, started by the first test that
  -- needs it and stopped at teardown.
  local function pair(case)
    if not pairs_by_case[case] then pairs_by_case[case] = h:v2ray_pair(case) end
    return pairs_by_case[case]
  end

  local function assert_alive(p)
    assert.is_true(h:alive(p.server), "v2ray server died")
    assert.is_true(h:alive(p.client), "v2ray client died")
  end

  it("finds v2ray 4.34", h:guard(function()
    local code, out = h:exec("v2ray-version", { E.v2ray_bin(), "-version" })
    assert.equal(0, code, out)
    assert.truthy(out:find("V2Ray 4.34", 1, true), "not v2ray 4.34: " .. out)
  end))

  it("allocates free ports and waits for them, bounded", h:guard(function()
    local a, b = E.free_port(), E.free_port()
    assert.is_number(a)
    assert.are_not.equal(a, b)
    local t = E.now()
    local ok, err = E.wait_port("127.0.0.1", a, 0.3)
    assert.is_nil(ok)
    assert.truthy(err:find("not open", 1, true))
    assert.is_true(E.now() - t < 1.5)
    assert.is_true(E.wait_port("127.0.0.1", echo.port, 1))
  end))

  it("stops children by PID: SIGTERM, then SIGKILL after the grace", h:guard(function()
    local p = h:spawn("sleeper", { "sleep", "30" })
    assert.is_true(h:alive(p))
    assert.equal("killed", (h:stop(p)))
    assert.equal(15, p.code)

    -- ignores TERM (and so does its child, which inherits the disposition)
    local q = h:spawn("stubborn", { "sh", "-c", "trap '' TERM; echo ready; sleep 30 & wait" })
    for _ = 1, 200 do
      if h:tail(q):find("ready", 1, true) then break end
      E.sleep(0.01)
    end
    local t = E.now()
    assert.equal("killed", (h:stop(q, 0.3)))
    assert.equal(9, q.code)
    assert.is_true(q.forced)
    assert.is_true(E.now() - t < 2)
    -- nothing of its process group is left, not even a zombie (we reap orphans)
    local function group_running(pgid)
      for pid in require "posix.dirent".files("/proc") do
        local f = pid:match("^%d+$") and io.open("/proc/" .. pid .. "/stat", "rb")
        if f then
          local st = f:read("*a") or ""
          f:close()
          local pgrp = st:match("%) %S %d+ (%d+)")
          if tonumber(pgrp) == pgid then return true end
        end
      end
      return false
    end
    local gone = false
    for _ = 1, 100 do
      if not group_running(q.pid) then gone = true; break end
      E.sleep(0.01)
    end
    assert.is_true(gone, "process group still running")
  end))

  it("reports a child that dies before its port opens, with its log", h:guard(function()
    local ok, err = pcall(h.spawn, h, "dies", { "sh", "-c", "echo boom-marker >&2; exit 3" },
                          { ports = { E.free_port() }, timeout = 3 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("exited 3", 1, true), err)
    assert.truthy(tostring(err):find("boom-marker", 1, true), err)
  end))

  it("echo server: 8 MiB with half-close, 50 concurrent, UDP, source and sink", h:guard(function()
    local s = assert(E.tcp_connect("127.0.0.1", echo.port))
    local ok, info = E.transfer_echo(s, 8 * MiB, { half_close = true, timeout = 20 })
    assert.is_true(ok, info)

    local socks = {}
    for i = 1, 50 do
      local host = (i % 2 == 0 and E.has_ipv6()) and "::1" or "127.0.0.1"
      socks[i] = assert(E.tcp_connect(host, echo.port))
    end
    ok, info = E.transfer_echo_many(socks, 256 * 1024, { timeout = 20 })
    assert.is_true(ok, info)

    local u = require "socket".udp4()
    assert(u:setpeername("127.0.0.1", echo.port))
    u:settimeout(2)
    u:send(E.pattern(1400, 3))
    assert.equal(E.pattern(1400, 3), (u:receive()))
    u:close()

    assert.is_true(E.source_read(assert(E.tcp_connect("127.0.0.1", echo.source_port)), 3 * MiB))
    local count, fnv = E.sink_send(assert(E.tcp_connect("127.0.0.1", echo.sink_port)), MiB, { seed = 5 })
    assert.equal(MiB, count)
    assert.equal(E.fnv1a32(E.pattern(MiB, 5)), fnv)
    local rec = echo:sink_results()
    assert.same({ count = MiB, fnv = fnv }, rec[#rec])

    -- the check catches one altered byte
    local bad = h:echo_server { name = "echo-corrupt", corrupt_at = 100000 }
    local ok2, err = E.transfer_echo(assert(E.tcp_connect("127.0.0.1", bad.port)), MiB)
    assert.is_false(ok2)
    assert.truthy(err:find("differs at byte 100000", 1, true), err)
    h:stop(bad.proc)
  end))

  local cases = {
    { security = "aes-128-gcm", alter_id = 0, header = "AEAD" },
    { security = "chacha20-poly1305", alter_id = 4, header = "legacy" },
    { security = "none", alter_id = 0, header = "AEAD" },
  }

  for _, case in ipairs(cases) do
    local what = ("VMess %s, alterId %d (%s header)"):format(case.security, case.alter_id, case.header)

    it(what .. ": 1 MiB both ways through SOCKS5", h:guard(function()
      local p = pair(case)
      local s = assert(E.socks5_connect("127.0.0.1", p.socks_port, "127.0.0.1", echo.port))
      local ok, info = E.transfer_echo(s, MiB, { timeout = 10 })
      assert.is_true(ok, info)
      -- upload only, checksummed by the sink (v2ray never forwards the FIN,
      -- so the record appears when it closes the connection)
      local before = #echo:sink_results()
      s = assert(E.socks5_connect("127.0.0.1", p.socks_port, "127.0.0.1", echo.sink_port))
      E.sink_send(s, MiB, { seed = 21 })
      local rec = assert(echo:wait_sink(before + 1, 5))
      assert.same({ count = MiB, fnv = E.fnv1a32(E.pattern(MiB, 21)) }, rec)
      assert_alive(p)
    end))

    it(what .. ": 5 UDP datagrams of 1..1400 bytes through SOCKS5 UDP ASSOCIATE", h:guard(function()
      local p = pair(case)
      local a = assert(E.socks5_udp_associate("127.0.0.1", p.socks_port))
      for i, size in ipairs { 1, 100, 512, 1000, 1400 } do
        local data = E.pattern(size, 100 + i)
        assert(a:send("127.0.0.1", echo.port, data))
        local got, host, port = a:recv(3)
        assert.equal(#data, got and #got, "datagram " .. i .. ": " .. tostring(host))
        assert.equal(data, got)
        assert.equal("127.0.0.1", host)
        assert.equal(echo.port, port)
      end
      a:close()
      assert_alive(p)
    end))
  end

  it("20 concurrent SOCKS5 connections, 64 KiB each", h:guard(function()
    local p = pair(cases[1])
    local socks = {}
    for i = 1, 20 do
      socks[i] = assert(E.socks5_connect("127.0.0.1", p.socks_port, "127.0.0.1", echo.port))
    end
    local ok, info = E.transfer_echo_many(socks, 64 * 1024, { timeout = 15 })
    assert.is_true(ok, info)
    assert_alive(p)
  end))

  it("SOCKS5 user/password, HTTP CONNECT, IPv6 and domain destinations", h:guard(function()
    local p = h:v2ray_pair { name = "auth", security = "aes-128-gcm", http = true,
                             accounts = { { user = "alice", pass = "s3cret" } } }
    local bad = E.socks5_connect("127.0.0.1", p.socks_port, "127.0.0.1", echo.port, "alice", "wrong")
    assert.is_nil(bad)
    local dests = { "127.0.0.1", "localhost" }
    if E.has_ipv6() then dests[#dests + 1] = "::1" end
    for _, dst in ipairs(dests) do
      local s = assert(E.socks5_connect("127.0.0.1", p.socks_port, dst, echo.port, "alice", "s3cret"))
      local ok, info = E.transfer_echo(s, 256 * 1024)
      assert.is_true(ok, dst .. ": " .. tostring(info))
    end
    local s = assert(E.http_connect("127.0.0.1", p.http_port, "127.0.0.1", echo.port))
    local ok, info = E.transfer_echo(s, MiB)
    assert.is_true(ok, info)
    assert_alive(p)
  end))

  it("mux: 1 MiB and 8 concurrent streams; legacy header forced by env", h:guard(function()
    for _, o in ipairs {
      { name = "mux", security = "aes-128-gcm", mux = true },
      { name = "legacy-env", security = "aes-128-gcm", env = E.V2RAY_LEGACY_ENV },
    } do
      local p = h:v2ray_pair(o)
      local s = assert(E.socks5_connect("127.0.0.1", p.socks_port, "127.0.0.1", echo.port))
      local ok, info = E.transfer_echo(s, MiB)
      assert.is_true(ok, o.name .. ": " .. tostring(info))
      local socks = {}
      for i = 1, 8 do
        socks[i] = assert(E.socks5_connect("127.0.0.1", p.socks_port, "127.0.0.1", echo.port))
      end
      ok, info = E.transfer_echo_many(socks, 64 * 1024)
      assert.is_true(ok, o.name .. ": " .. tostring(info))
      assert_alive(p)
      h:stop(p.client); h:stop(p.server)
    end
  end))

  it("luaray config generators emit scripts the real DSL accepts", h:guard(function()
    -- Loads the scripts with lua/luaray/config.lua (what the daemon runs);
    -- the daemon itself is not started here.
    local config = require "luaray.config"
    local id = E.uuid()
    -- allow_legacy is off by default (design.md 2): the generator emits it when asked
    local text0 = E.luaray_server_script { port = 12345, users = { { id = id, alter_id = 4 } } }
    assert.is_false(assert(config.load_string(text0, "=server0")).inbounds[1].allow_legacy)
    local text, opts = E.luaray_server_script { port = 12345, users = { { id = id, alter_id = 4 } },
                                                handshake_timeout = 2, allow_legacy = true }
    local cfg = assert(config.load_string(text, "=server"))
    assert.same({ level = "info", access = true }, cfg.log)
    assert.equal(1, #cfg.users)
    assert.equal(id, cfg.users[1].id)
    assert.equal(4, cfg.users[1].alter_id)
    assert.equal("user1@e2e", cfg.users[1].email)
    local ib = cfg.inbounds[1]
    assert.equal("vmess", ib.type)
    assert.same({ host = "127.0.0.1", port = 12345 }, ib.listen)
    assert.is_true(ib.allow_legacy)
    assert.is_true(ib.allow_private)
    assert.equal(2, ib.handshake_timeout)
    assert.equal("direct", cfg.outbounds[1].type)
    assert.equal("direct", cfg.default_outbound)
    assert.same({ { "127.0.0.1", 12345 } }, opts.ports)

    text, opts = E.luaray_client_script { socks_port = 1, http_port = 2, server_port = 3, id = id,
                                          security = "none", listen = "::1", masking = false,
                                          accounts = { { user = "u", pass = "p" } } }
    cfg = assert(config.load_string(text, "=client"))
    ib = cfg.inbounds[1]
    assert.equal("socks", ib.type)
    assert.same({ host = "::1", port = 1 }, ib.listen)
    assert.is_true(ib.udp)
    assert.same({ { user = "u", pass = "p" } }, ib.accounts)
    assert.equal("http", cfg.inbounds[2].type)
    local ob = cfg.outbounds[1]
    assert.equal("vmess", ob.type)
    assert.same({ host = "127.0.0.1", port = 3 }, ob.server)
    assert.equal(id, ob.id)
    assert.equal(0, ob.alter_id)
    assert.equal("none", ob.security)
    assert.is_false(ob.masking)
    assert.is_false(ob.padding)            -- follows masking
    assert.is_false(ob.authenticated_length)
    assert.equal("upstream", cfg.default_outbound)
    assert.same({ { "::1", 1 }, { "::1", 2 } }, opts.ports)

    -- defaults come from the DSL when a key is not given
    cfg = assert(config.load_string((E.luaray_client_script { socks_port = 1, server_port = 3, id = id }), "=c2"))
    assert.equal("auto", cfg.outbounds[1].security)
    assert.is_true(cfg.outbounds[1].masking)
    assert.is_true(cfg.outbounds[1].padding)
  end))
end)
