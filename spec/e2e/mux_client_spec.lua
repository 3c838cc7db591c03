-- Mux.Cool as a client: `mux = { concurrency = 8 }` on luaray's VMess
-- outbound carries many streams (TCP and UDP) over one VMess connection
-- (command 3), a new one when the current one holds `concurrency` streams.
--   * against Debian's v2ray 4.34 server (a real peer): 50 TCP streams open
--     at once, each echoed byte-exact, over 7 carriers (50 / 8), at most 8
--     on each by v2ray's access log; UDP through the mux (SOCKS5 UDP ASSOCIATE)
--   * against luaray's own server: the same, plus a stream cut midway
--   * the config: bad mux values are refused with file:line
-- Loopback only.
local E = require "e2e.support"

local KiB = 1024
local STREAMS = 50

-- Streams per source port in an access log (pattern captures the port).
local function carriers_of(text, pattern)
  local by, n, streams, max = {}, 0, 0, 0
  for port in text:gmatch(pattern) do
    if not by[port] then by[port], n = 0, n + 1 end
    by[port] = by[port] + 1
    streams = streams + 1
    if by[port] > max then max = by[port] end
  end
  return { n = n, streams = streams, max = max }
end

local function streams_through(socks, echo, n, bytes)
  local socks_list = {}
  for i = 1, n do
    socks_list[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
  end
  return E.transfer_echo_many(socks_list, bytes, { timeout = 60 })
end

describe("mux client (Mux.Cool on the VMess outbound)", function()
  local h = E.new("mux_client")
  teardown(function() h:cleanup() end)

  it("to v2ray 4.34: 50 streams at once, each byte-exact, over ceil(50/8) connections; UDP too",
    h:guard(function()
      local echo = h:echo_server()
      local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
      local access = h:path("v2ray-access.log")
      local cfg = E.v2ray_server_config { port = sp, users = { { id = id } }, access = access,
                                          loglevel = "info" }
      h:v2ray("v2ray-mux-server", cfg)
      local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
        security = "aes-128-gcm", mux = { concurrency = 8 } }
      local cli = h:luaray("luaray-mux-client", text, o)
      local ok, info = streams_through(socks, echo, STREAMS, 64 * KiB)
      assert.is_true(ok, "50 streams over mux: " .. tostring(info))
      -- all 50 were open at once: 7 connections, by luaray's log
      assert.equal(7, E.count_matches(E.read_file(cli.log), "new mux connection", true))
      -- v2ray's access log names each stream with its connection's source
      -- port (v2ray drops log lines under load, so it may show fewer): no
      -- connection carried more than 8, none beyond the 7
      local per = carriers_of(E.read_file(access),
                              "tcp:127%.0%.0%.1:(%d+) accepted tcp:127%.0%.0%.1:" .. echo.port)
      print(("v2ray access log: %d streams over %d mux connections"):format(per.streams, per.n))
      assert.is_true(per.streams >= 1 and per.n <= 7, "v2ray saw " .. per.n .. " connections")
      assert.is_true(per.max <= 8, "a connection carried " .. per.max .. " streams")
      -- UDP: SOCKS5 UDP ASSOCIATE -> a UDP stream of the carrier
      local uok, uerr = E.check_socks_udp("127.0.0.1", socks, echo, { recv_timeout = 10 })
      assert.is_true(uok, "UDP over mux to v2ray: " .. tostring(uerr))
      -- and one more TCP stream after all that, on the carrier still open
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
      assert(E.transfer_echo(s, 256 * KiB, { timeout = 30 }))
      assert.is_true(h:alive(cli))
    end))

  it("to luaray's server: 50 streams, UDP, and a cut stream leaves the others", h:guard(function()
    local echo = h:echo_server { name = "echo-l" }
    local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
    local srv = h:luaray("luaray-mux-server", E.luaray_server_script {
      port = sp, users = { { id = id, email = "mux@e2e" } } })
    local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
      mux = { concurrency = 4 } }
    local cli = h:luaray("luaray-mux-client-l", text, o)
    local ok, info = streams_through(socks, echo, STREAMS, 32 * KiB)
    assert.is_true(ok, "50 streams over mux: " .. tostring(info))
    -- the server saw the streams over ceil(50/4) = 13 Mux.Cool connections
    local pat = "tcp 127%.0%.0%.1:" .. echo.port .. " direct"
    local stext = assert(E.wait_log(srv, pat, STREAMS, 10))
    local per = carriers_of(stext, "127%.0%.0%.1:(%d+) vmess%-in mux@e2e " .. pat)
    print(("luaray server: %d streams over %d mux connections"):format(per.streams, per.n))
    assert.equal(STREAMS, per.streams)
    assert.equal(13, per.n)
    assert.equal(13, E.count_matches(E.read_file(cli.log), "new mux connection", true))
    assert.is_true(per.max <= 4, "a connection carried " .. per.max .. " streams")
    local uok, uerr = E.check_socks_udp("127.0.0.1", socks, echo, { recv_timeout = 10 })
    assert.is_true(uok, "UDP over mux to luaray: " .. tostring(uerr))
    -- a stream reset midway: the stream beside it on the same carrier goes on
    local a = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
    local b = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
    assert(a:send(("x"):rep(10000)))
    a:setoption("linger", { on = true, timeout = 0 })
    a:close()
    assert(E.transfer_echo(b, 512 * KiB, { timeout = 30 }))
    assert.is_true(h:alive(cli))
    assert.is_true(h:alive(srv))
  end))

  it("a carrier that cannot connect fails its streams; one that breaks cuts them; the next works",
    h:guard(function()
      local echo = h:echo_server { name = "echo-f" }
      local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
      local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
        mux = { concurrency = 8 }, connect_timeout = 3 }
      local cli = h:luaray("luaray-mux-client-f", text, o)
      -- nothing listens: three streams waiting on one carrier all fail
      for i = 1, 3 do
        local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10)
        assert.is_nil(s, "stream " .. i .. " through a carrier that cannot connect")
        assert.truthy(tostring(err):find("refused") or tostring(err):find("failure"), tostring(err))
      end
      assert(E.wait_log(cli, "connect failed: mux:", 1, 5))
      -- a server now: a stream works; the server goes away under it
      local srv = h:luaray("luaray-mux-server-f", E.luaray_server_script {
        port = sp, users = { { id = id } } })
      local a = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
      assert(E.transfer_echo(a, 64 * KiB, { timeout = 20, close = false }))
      h:stop_luaray(srv)
      a:settimeout(10)
      local _, rerr = a:receive(1)
      assert.truthy(rerr == "closed" or rerr == "connection reset by peer", tostring(rerr))
      a:close()
      -- back again: the next stream opens a new carrier
      h:luaray("luaray-mux-server-f2", E.luaray_server_script { port = sp, users = { { id = id } } })
      local b = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
      assert(E.transfer_echo(b, 64 * KiB, { timeout = 20 }))
      assert.is_true(h:alive(cli))
    end))

  it("over the ws and grpc transports: 20 streams each, byte-exact", h:guard(function()
    local echo = h:echo_server { name = "echo-t" }
    for _, tp in ipairs { { type = "ws", path = "/mux" }, { type = "grpc", service_name = "MuxTun" } } do
      local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
      h:luaray("luaray-mux-server-" .. tp.type, E.luaray_server_script {
        port = sp, users = { { id = id } }, transport = tp })
      local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
        mux = { concurrency = 8 }, transport = tp }
      local cli = h:luaray("luaray-mux-client-" .. tp.type, text, o)
      local ok, info = streams_through(socks, echo, 20, 32 * KiB)
      assert.is_true(ok, tp.type .. ": 20 streams over mux: " .. tostring(info))
      assert.equal(3, E.count_matches(E.read_file(cli.log), "new mux connection", true))
    end
  end))

  it("refuses bad mux settings with the file and line", h:guard(function()
    local cases = {
      { 'mux = { concurrency = 0 }', "concurrency" },
      { 'mux = { concurrency = 2000 }', "concurrency" },
      { 'mux = { conc = 8 }', "conc" },
      { 'mux = 8', "'mux'" },
    }
    for i, c in ipairs(cases) do
      local file = h:write(("bad-mux-%d.lua"):format(i), ([[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }
luaray.outbound "proxy" { type = "vmess", server = "127.0.0.1:10086",
  id = "b831381d-6324-4d53-ad4f-8cda48b30811", %s }
]]):format(c[1]))
      local code, out = h:exec("luaray-check-" .. i, { E.luaray_bin(), "-t", "-c", file })
      assert.are_not.equal(0, code, out)
      assert.truthy(out:find("bad-mux-" .. i .. ".lua:2", 1, true), out)
      assert.truthy(out:find(c[2], 1, true), out)
    end
    -- mux on a direct outbound is no key of it
    local file = h:write("bad-mux-direct.lua", [[
luaray.outbound "d" { type = "direct", mux = { concurrency = 8 } }
]])
    local code, out = h:exec("luaray-check-direct", { E.luaray_bin(), "-t", "-c", file })
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("bad-mux-direct.lua:1", 1, true), out)
    assert.truthy(out:find("mux", 1, true), out)
    -- and a good one passes
    file = h:write("good-mux.lua", [[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }
luaray.outbound "proxy" { type = "vmess", server = "127.0.0.1:10086",
  id = "b831381d-6324-4d53-ad4f-8cda48b30811", mux = { concurrency = 8 } }
]])
    code, out = h:exec("luaray-check-good", { E.luaray_bin(), "-t", "-c", file })
    assert.equal(0, code, out)
  end))
end)
