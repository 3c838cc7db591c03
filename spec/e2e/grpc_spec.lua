-- gRPC "gun" transport (design.md 6; issue 12): HTTP/2 with prior
-- knowledge (h2c) on loopback.
--   - luaray client <-> luaray server, Tun and TunMulti: 1 MiB checked each
--     way, many tunnels at once;
--   - an independent peer written from the wire description (python3-h2,
--     tools/gun_peer.py) with real VMess on both ends of it: Debian's v2ray
--     4.34 (which has no gRPC transport of its own) as the VMess client
--     behind the peer's gun client, many streams on ONE HTTP/2 connection
--     to the luaray server; and v2ray 4.34 as the VMess server behind the
--     peer's gun server, for the luaray client;
--   - backpressure: a tunnel whose reader stalls does not stall the others
--     on the same connection, and loses nothing once it reads again;
--   - what a live session answers for another path (grpc-status 12) or a
--     request that is not gRPC (404), the fallback for what is not HTTP/2,
--     a bad VMess header inside a tunnel (silence to the handshake deadline,
--     the other tunnels untouched), and the max_sessions cap.
local E = require "e2e.support"
local psignal = require "posix.signal"
local socket = require "socket"

local KiB, MiB = 1024, 1024 * 1024
local SERVICE = "gun.Tunnel"

local function python()
  local f = io.open("/usr/bin/python3")
  if f then f:close(); return "/usr/bin/python3" end
  return "python3"
end

describe("gRPC transport", function()
  local h = E.new("grpc")
  local echo, web, srv, srv_port
  local ID = E.uuid()

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    web = h:http_server()
    srv_port = E.free_port()
    srv = h:luaray("luaray-grpc-server", E.luaray_server_script {
      port = srv_port, handshake_timeout = 3, users = { { id = ID, email = "gun@e2e" } },
      transport = { type = "grpc", service_name = SERVICE },
      fallback = "127.0.0.1:" .. web.port })
  end))

  lazy_teardown(function() h:cleanup() end)

  local function assert_alive(...)
    assert.is_true(h:alive(srv), "the luaray server died")
    for _, p in ipairs { ... } do assert.is_true(h:alive(p), p.name .. " died") end
  end

  -- A luaray client (SOCKS5 in, VMess over gRPC out) -> proc, socks port.
  local function luaray_client(o)
    o = o or {}
    local socks = E.free_port()
    local text, opts = E.luaray_client_script {
      socks_port = socks, server_port = o.server_port or srv_port, id = o.id or ID,
      security = "aes-128-gcm",
      transport = { type = "grpc", service_name = o.service or SERVICE, multi = o.multi } }
    return h:luaray(o.name or "luaray-grpc-client", text, opts), socks
  end

  -- The independent peer: a gun client listening for TCP on a port of its
  -- own, one HTTP/2 connection to the luaray server -> proc, its port.
  local function gun_client(o)
    o = o or {}
    local lport = E.free_port()
    local argv = { python(), E.tools .. "/gun_peer.py", "client", "--listen", "127.0.0.1:" .. lport,
                   "--connect", "127.0.0.1:" .. (o.port or srv_port), "--service", o.service or SERVICE }
    if o.multi then argv[#argv + 1] = "--multi" end
    if o.xff then argv[#argv + 1] = "--xff"; argv[#argv + 1] = o.xff end
    return h:spawn(o.name or "gun-client", argv, { ports = { { "127.0.0.1", lport } } }), lport
  end

  -- A v2ray 4.34 VMess client (SOCKS5 in) whose "server" is port vport.
  local function v2ray_client(vport, id)
    local socks = E.free_port()
    return h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = vport, id = id or ID, security = "aes-128-gcm" }), socks
  end

  local function log_count(p, pattern)
    return E.count_matches(E.read_file(p.log) or "", pattern)
  end

  -- CPU seconds (user + system) process p used over `secs` of wall time.
  local function cpu_over(p, secs)
    local function ticks()
      local stat = E.read_file("/proc/" .. p.pid .. "/stat") or ""
      local rest = stat:match("%) (.*)$") or ""
      local f = {}
      for x in rest:gmatch("%S+") do f[#f + 1] = x end
      return (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0) -- utime, stime (fields 14, 15)
    end
    local t0 = ticks()
    E.sleep(secs)
    return (ticks() - t0) / 100
  end

  -- A tunnel through SOCKS5 port `socks` to the echo server whose reader
  -- stalls: pattern bytes are sent until nothing more is taken for a
  -- second (bounded in bytes and time), nothing is read.
  local function stall(socks)
    local a = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
    a:settimeout(0)
    local st = { a = a, tx = E.stream(4242), sent = 0 }
    local deadline = E.now() + 15
    local idle_since = E.now()
    while st.sent < 64 * MiB and E.now() < deadline do
      st.pend = st.pend or st.tx:next(64 * KiB)
      local last, err, lastpart = a:send(st.pend)
      local n = last or lastpart or 0
      if n > 0 then
        st.sent = st.sent + n
        st.pend = n < #st.pend and st.pend:sub(n + 1) or nil
        idle_since = E.now()
      elseif E.now() - idle_since > 1.0 then
        break -- nothing taken for a second: the path is full
      else
        socket.select(nil, { a }, 0.1)
      end
      assert(err == nil or err == "timeout", err)
    end
    assert.is_true(st.sent < 64 * MiB, "the stalled tunnel never filled up")
    return st
  end

  -- Reads the stalled tunnel: every byte it sent comes back, in order.
  local function unstall(st)
    local a, rx, got = st.a, E.stream(4242), 0
    local deadline = E.now() + 30
    while got < st.sent and E.now() < deadline do
      if st.pend then
        local last, _, lastpart = a:send(st.pend)
        local n = last or lastpart or 0
        if n > 0 then
          st.sent = st.sent + n
          st.pend = n < #st.pend and st.pend:sub(n + 1) or nil
        end
      end
      socket.select({ a }, nil, 0.2)
      local data, rerr, partial = a:receive(65536)
      local d = data or partial or ""
      if #d > 0 then
        assert.are.equal(rx:next(#d), d, "stalled tunnel: echo differs near byte " .. got)
        got = got + #d
      end
      assert(rerr == nil or rerr == "timeout", rerr)
    end
    a:close()
    assert.are.equal(st.sent, got)
  end

  describe("luaray client <-> luaray server", function()
    for _, multi in ipairs { false, true } do
      it(("%s: 1 MiB both ways with half-close, 1 MiB down, 1 MiB up"):format(
           multi and "TunMulti" or "Tun"), h:guard(function()
        local c, socks = luaray_client { multi = multi }
        local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { half_close = true })
        assert.is_true(ok, err)
        assert_alive(c)
        h:stop_luaray(c)
      end))
    end

    it("12 tunnels at once, 256 KiB each way on each", h:guard(function()
      local c, socks = luaray_client()
      local ss = {}
      for i = 1, 12 do
        ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      end
      local ok, err = E.transfer_echo_many(ss, 256 * KiB, { timeout = 30, half_close = true })
      assert.is_true(ok, err)
      assert_alive(c)
      h:stop_luaray(c)
    end))

    it("a server that allows 2 streams a connection: 5 tunnels at once go over 3 shared connections",
      h:guard(function()
        local port = E.free_port()
        local s = h:luaray("luaray-grpc-two-streams", E.luaray_server_script {
          port = port, max_sessions = 2, users = { { id = ID } },
          transport = { type = "grpc", service_name = SERVICE } })
        local c, socks = luaray_client { server_port = port, name = "luaray-grpc-client-5" }
        local ss = {}
        for i = 1, 5 do
          ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
          -- the limit comes in the server's SETTINGS, a round trip after
          -- a new connection: let it arrive (tunnels opened before it may
          -- queue on that connection instead, as with any HTTP/2 client)
          if i % 2 == 1 then E.sleep(0.2) end
        end
        local ok, err = E.transfer_echo_many(ss, 64 * KiB, { timeout = 20 })
        assert.is_true(ok, err)
        h:stop_luaray(c) -- closes the shared connections: the server logs them
        assert.truthy(E.wait_log(s, "vmess%-in %- tcp %- %- up=[1-9]", 3, 10), h:tail(s))
        local text = E.read_file(s.log) or ""
        assert.are.equal(3, E.count_matches(text, "vmess%-in %- tcp %- %- up=[1-9]"), text)
        assert.are.equal(5, E.count_matches(text, "vmess%-in user1@e2e tcp"), text)
        h:stop_luaray(s)
      end))

    it("a client of another service name is refused (grpc-status 12) and its connection closes",
      h:guard(function()
        local c, socks = luaray_client { service = "other.Service", name = "luaray-wrong-service" }
        local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        local ok = E.transfer_echo(s, 4 * KiB, { timeout = 5 })
        assert.is_false(ok)
        assert_alive(c)
        h:stop_luaray(c)
      end))
  end)

  describe("independent gun peer (python3-h2) with v2ray 4.34 as the VMess peer", function()
    it("v2ray client -> gun client -> luaray server: 10 tunnels on one HTTP/2 connection, 1 MiB each way on one",
      h:guard(function()
        local g, gport = gun_client()
        local v, socks = v2ray_client(gport)
        local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { half_close = true })
        assert.is_true(ok, err)
        local ss = {}
        for i = 1, 10 do
          ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        end
        ok, err = E.transfer_echo_many(ss, 256 * KiB, { timeout = 30 })
        assert.is_true(ok, err)
        assert_alive(g, v)
        -- every tunnel went over the one connection the peer opened
        assert.are.equal(1, log_count(g, "h2 connection %d+\n"))
        assert.is_true(log_count(g, "stream %d+ open") >= 13, h:tail(g))
        assert.are.equal(0, log_count(g, "h2 connection %d+ closed"))
        h:stop(v); h:stop(g)
      end))

    it("TunMulti with two data fields per message: 1 MiB both ways", h:guard(function()
      local g, gport = gun_client { multi = true, name = "gun-client-multi" }
      local v, socks = v2ray_client(gport)
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { half_close = true })
      assert.is_true(ok, err)
      assert_alive(g, v)
      h:stop(v); h:stop(g)
    end))

    it("luaray client -> gun server -> v2ray 4.34 VMess server: 1 MiB both ways; the client's tunnels share one HTTP/2 connection",
      h:guard(function()
      local vport = E.free_port()
      local vs = h:v2ray("v2ray-server", E.v2ray_server_config { port = vport, users = { { id = ID } } })
      local gport = E.free_port()
      local gs = h:spawn("gun-server", { python(), E.tools .. "/gun_peer.py", "server",
                                         "--listen", "127.0.0.1:" .. gport,
                                         "--connect", "127.0.0.1:" .. vport, "--service", SERVICE },
                         { ports = { { "127.0.0.1", gport } } })
      for _, multi in ipairs { false, true } do
        local c, socks = luaray_client { server_port = gport, multi = multi }
        local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { half_close = true })
        assert.is_true(ok, err)
        local ss = {}
        for i = 1, 8 do
          ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        end
        ok, err = E.transfer_echo_many(ss, 128 * KiB, { timeout = 30 })
        assert.is_true(ok, "8 at once: " .. tostring(err))
        assert_alive(c, gs, vs)
        h:stop_luaray(c)
      end
      -- the peer saw our requests as gun, Tun then TunMulti, each client's
      -- 11 tunnels (3 one after the other, 8 at once) as streams 1..21 of
      -- one HTTP/2 connection (the first connection is the harness's
      -- port probe)
      local text = E.read_file(gs.log) or ""
      local svc = SERVICE:gsub("%.", "%%.")
      assert.truthy(text:find("stream 21 open /" .. svc .. "/Tun\n"), text)
      assert.truthy(text:find("stream 21 open /" .. svc .. "/TunMulti\n"), text)
      assert.are.equal(3, log_count(gs, "h2 connection %d+\n"))
      h:stop(gs); h:stop(vs)
    end))

    it("a client whose session pool is full gives each tunnel an HTTP/2 connection of its own",
      h:guard(function()
        local vport = E.free_port()
        local vs = h:v2ray("v2ray-server-pool", E.v2ray_server_config { port = vport, users = { { id = ID } } })
        local gport = E.free_port()
        local gs = h:spawn("gun-server-pool", { python(), E.tools .. "/gun_peer.py", "server",
                                                "--listen", "127.0.0.1:" .. gport,
                                                "--connect", "127.0.0.1:" .. vport, "--service", SERVICE },
                           { ports = { { "127.0.0.1", gport } } })
        -- the shared connection is a session of the SOCKS inbound: fill its
        -- pool (max_connections 3) with three UDP destinations sent direct
        local socks = E.free_port()
        local c = h:luaray("luaray-grpc-pool-full", ([[
luaray.log { level = "info", access = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d", udp = true, max_connections = 3 }
luaray.outbound "upstream" { type = "vmess", server = "127.0.0.1:%d", id = %q, security = "aes-128-gcm",
  transport = { type = "grpc", service_name = %q } }
luaray.outbound "direct" { type = "direct" }
luaray.route { network = "udp", to = "direct" }
]]):format(socks, gport, ID, SERVICE), { ports = { { "127.0.0.1", socks } } })
        local assoc = assert(E.socks5_udp_associate("127.0.0.1", socks))
        assert(assoc:send("127.0.0.1", echo.port, "ping"))
        assert.are.equal("ping", (assoc:recv(5)))
        -- two more destinations that take datagrams silently (a port with
        -- nothing on it would answer ICMP and end its session)
        local quiet = {}
        for i = 1, 2 do
          quiet[i] = assert(socket.udp())
          assert(quiet[i]:setsockname("127.0.0.1", 0))
          local _, qport = quiet[i]:getsockname()
          assert(assoc:send("127.0.0.1", qport, "x"))
          quiet[i]:settimeout(5)
          assert.are.equal("x", (quiet[i]:receive()))
        end
        for i = 1, 2 do
          local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
          local ok, err = E.transfer_echo(s, 64 * KiB, { timeout = 10 })
          assert.is_true(ok, ("tunnel %d: %s"):format(i, tostring(err)))
        end
        assoc:close()
        for _, q in ipairs(quiet) do q:close() end
        -- two connections (and the harness's port probe), one stream each
        assert.are.equal(3, log_count(gs, "h2 connection %d+\n"))
        assert.are.equal(0, log_count(gs, "stream 3 open"))
        assert.are.equal(2, log_count(gs, "stream 1 open"))
        assert_alive(c, gs, vs)
        h:stop_luaray(c); h:stop(gs); h:stop(vs)
      end))

    it("backpressure: a tunnel whose reader stalls does not stall the others, and loses nothing",
      h:guard(function()
        local g, gport = gun_client { name = "gun-client-bp" }
        local v, socks = v2ray_client(gport)
        local st = stall(socks)
        -- nobody spins while it waits
        local cpu = cpu_over(srv, 1.0)
        assert.is_true(cpu < 0.3, ("the server used %.2fs of CPU in 1s of a stalled tunnel"):format(cpu))
        -- the others, on the same HTTP/2 connection, move meanwhile
        local ss = {}
        for i = 1, 6 do
          ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        end
        local ok, err = E.transfer_echo_many(ss, 256 * KiB, { timeout = 20 })
        assert.is_true(ok, "while one tunnel stalls: " .. tostring(err))
        unstall(st)
        assert.are.equal(1, log_count(g, "h2 connection %d+\n"))
        assert_alive(g, v)
        h:stop(v); h:stop(g)
      end))
  end)

  it("backpressure through the luaray client: a stalled tunnel waits without spinning, loses nothing",
    h:guard(function()
      local c, socks = luaray_client { name = "luaray-grpc-client-bp" }
      local st = stall(socks)
      local cpu_c, cpu_s = cpu_over(c, 1.0), cpu_over(srv, 0.5)
      assert.is_true(cpu_c < 0.3, ("the client used %.2fs of CPU in 1s of a stalled tunnel"):format(cpu_c))
      assert.is_true(cpu_s < 0.2, ("the server used %.2fs of CPU in 0.5s of a stalled tunnel"):format(cpu_s))
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local ok, err = E.transfer_echo(s, 256 * KiB, { timeout = 20 })
      assert.is_true(ok, "while one tunnel stalls: " .. tostring(err))
      unstall(st)
      assert_alive(c)
      h:stop_luaray(c)
    end))

  -- nginx (Debian's) as the reverse proxy in front, as a CDN's edge or an
  -- origin's nginx is (README "Behind a CDN with gRPC", without TLS): HTTP/2
  -- in, grpc_pass to the luaray inbound from 127.0.0.2, with X-Real-IP.
  local function nginx_front(target_port)
    local bin = "/usr/sbin/nginx"
    local f = io.open(bin)
    if not f then return nil end
    f:close()
    local port = E.free_port()
    local dir = h:path("nginx")
    os.execute("mkdir -p " .. dir .. "/logs " .. dir .. "/tmp")
    local conf = h:write("nginx/nginx.conf", ([[
worker_processes 1;
pid %s/nginx.pid;
error_log %s/logs/error.log info;
events { worker_connections 256; }
http {
  access_log %s/logs/access.log;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fastcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;
  server {
    listen 127.0.0.1:%d http2;
    location /%s/ {
      client_max_body_size 0;           # a tunnel is one long request body
      grpc_set_header X-Real-IP $remote_addr;
      grpc_bind 127.0.0.2;
      grpc_pass grpc://127.0.0.1:%d;
      grpc_read_timeout 300s;
      grpc_send_timeout 300s;
    }
    location / { return 404; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, dir, port, SERVICE, target_port))
    local p = h:spawn("nginx", { bin, "-p", dir, "-c", conf, "-g", "daemon off;" },
                      { ports = { { "127.0.0.1", port } } })
    return p, port
  end

  describe("behind nginx (grpc_pass), as behind a CDN", function()
    it("luaray client and the independent peer through nginx to the luaray server: 1 MiB each way; X-Real-IP believed",
      h:guard(function()
        local port = E.free_port()
        local s = h:luaray("luaray-behind-nginx", E.luaray_server_script {
          port = port, users = { { id = ID, email = "nginx@e2e" } },
          transport = { type = "grpc", service_name = SERVICE },
          trusted_proxies = { "127.0.0.2/32" } })
        local ng, nport = nginx_front(port)
        if not ng then
          pending("nginx is not installed (scripts/deps.sh installs nginx-light)")
          return
        end
        local c, socks = luaray_client { server_port = nport, name = "luaray-via-nginx" }
        local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { half_close = true })
        assert.is_true(ok, "luaray client: " .. tostring(err))
        local g, gport = gun_client { port = nport, name = "gun-via-nginx" }
        local v, vsocks = v2ray_client(gport)
        local ss = {}
        for i = 1, 6 do
          ss[i] = assert(E.socks5_connect("127.0.0.1", vsocks, "127.0.0.1", echo.port))
        end
        ok, err = E.transfer_echo_many(ss, 256 * KiB, { timeout = 30 })
        assert.is_true(ok, "gun peer: " .. tostring(err))
        assert_alive(c, g, v, ng)
        -- the requests really went through nginx (the luaray client's three
        -- are logged; the peer's are still open)
        local acc = E.read_file(h:path("nginx/logs/access.log")) or ""
        assert.is_true(E.count_matches(acc, "POST /" .. SERVICE:gsub("%.", "%%.") .. "/Tun HTTP/2.0\" 200") >= 3, acc)
        -- nginx connects from 127.0.0.2 (trusted): each tunnel's client is
        -- the address nginx saw (127.0.0.1, no port), the HTTP/2 line nginx's
        local text = E.read_file(s.log) or ""
        assert.is_true(E.count_matches(text, " 127%.0%.0%.1:0 vmess%-in nginx@e2e tcp") >= 3, text)
        assert.truthy(text:find(" 127%.0%.0%.2:%d+ vmess%-in %- tcp"), text)
        assert.is_nil(text:find(" 127%.0%.0%.2:%d+ vmess%-in nginx@e2e"), text)
        h:stop(v); h:stop(g); h:stop_luaray(c); h:stop(ng); h:stop_luaray(s)
      end))
  end)

  it("X-Forwarded-For from a trusted proxy is a tunnel's client address; from another peer it is ignored",
    h:guard(function()
      for _, trusted in ipairs { true, false } do
        local port = E.free_port()
        local name = trusted and "luaray-grpc-trusting" or "luaray-grpc-untrusting"
        local s = h:luaray(name, E.luaray_server_script {
          port = port, users = { { id = ID, email = "xff@e2e" } },
          transport = { type = "grpc", service_name = SERVICE },
          trusted_proxies = trusted and { "127.0.0.1/32" } or { "10.0.0.0/8" } })
        local g, gport = gun_client { port = port, xff = "192.0.2.1, 198.51.100.7", name = "gun-" .. name }
        local v, socks = v2ray_client(gport)
        local c = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        local ok, err = E.transfer_echo(c, 4 * KiB, { timeout = 10 })
        assert.is_true(ok, err)
        h:stop(v); h:stop(g)
        assert.truthy(E.wait_log(s, "xff@e2e tcp", 1, 10), h:tail(s))
        local text = E.read_file(s.log) or ""
        local line = text:match("[^\n]* xff@e2e tcp [^\n]*")
        if trusted then
          assert.truthy(line:find(" 198.51.100.7:0 vmess-in xff@e2e", 1, true), line)
        else
          assert.truthy(line:find(" 127.0.0.1:%d+ vmess%-in xff@e2e"), line)
        end
        h:stop_luaray(s)
      end
    end))

  it("reload: a new tunnel on an HTTP/2 connection older than the SIGHUP gets the new users",
    h:guard(function()
      local A, B = E.uuid(), E.uuid()
      local port = E.free_port()
      local function script(id)
        return E.luaray_server_script { port = port, handshake_timeout = 2,
                                        users = { { id = id, email = "reload@e2e" } },
                                        transport = { type = "grpc", service_name = SERVICE } }
      end
      local text, opts = script(A)
      local s = h:luaray_obs("luaray-grpc-reload", text, opts)
      local g, gport = gun_client { port = port, name = "gun-reload" }
      local va, socks_a = v2ray_client(gport, A)
      local vb, socks_b = v2ray_client(gport, B)
      local function works(socks)
        local c = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        return E.transfer_echo(c, 16 * KiB, { timeout = 6 })
      end
      assert.is_true((works(socks_a)), "user A before the reload")
      assert.is_false((works(socks_b)), "user B before the reload")
      local f = assert(io.open(s.config, "w"))
      f:write((script(B)))
      f:close()
      assert(psignal.kill(s.pid, psignal.SIGHUP))
      assert.truthy(E.wait_log(s, "reload: generation 2 serving", 1, 15), h:tail(s))
      assert.is_true((works(socks_b)), "user B after the reload")
      assert.is_false((works(socks_a)), "user A after the reload")
      -- all of it on the one HTTP/2 connection the peer opened first
      assert.are.equal(1, log_count(g, "h2 connection %d+\n"))
      assert.are.equal(0, log_count(g, "h2 connection %d+ closed"))
      h:stop(va); h:stop(vb); h:stop(g); h:stop_luaray(s)
    end))

  describe("what a prober sees", function()
    local function probe(path, ctype, method)
      local code, out = h:exec("gun-probe", { python(), E.tools .. "/gun_peer.py", "probe",
                                              "--connect", "127.0.0.1:" .. srv_port, "--path", path,
                                              "--content-type", ctype or "application/grpc",
                                              "--method", method or "POST" })
      assert.are.equal(0, code, out)
      return out
    end

    it("a gRPC request for another path: :status 200 with grpc-status 12 (a method it lacks)",
      h:guard(function()
        local out = probe("/other.Service/Tun")
        assert.truthy(out:find(":status: 200", 1, true), out)
        assert.truthy(out:find("grpc-status: 12", 1, true), out)
      end))

    it("a request that is not gRPC: 404", h:guard(function()
      local out = probe("/", "text/html", "GET")
      assert.truthy(out:find(":status: 404", 1, true), out)
      out = probe("/" .. SERVICE .. "/Tun", "text/plain")
      assert.truthy(out:find(":status: 404", 1, true), out)
    end))

    it("what is not HTTP/2 goes to the fallback web server, unchanged", h:guard(function()
      local s = assert(E.tcp_connect("127.0.0.1", srv_port))
      local code, head, body = E.http_request(s, "GET", "/data/300/5", { timeout = 5 })
      assert.are.equal(200, code, head)
      assert.are.equal(E.pattern(300, 5), body)
      assert_alive()
    end))

    it("a bad VMess header in a tunnel: silence until the handshake deadline, the other tunnels untouched",
      h:guard(function()
        local g, gport = gun_client { name = "gun-client-bad" }
        local bad = assert(E.tcp_connect("127.0.0.1", gport))
        bad:send(("\1"):rep(200))
        local t0 = E.now()
        -- a good tunnel on the same connection meanwhile
        local v, socks = v2ray_client(gport)
        local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
        local ok, err = E.transfer_echo(s, 64 * KiB, { timeout = 10 })
        assert.is_true(ok, err)
        -- the bad one: nothing, then its end at the deadline (3 s)
        bad:settimeout(10)
        local data, rerr, partial = bad:receive("*a")
        local waited = E.now() - t0
        assert.are.equal("", data or partial or "")
        assert.is_true(rerr == nil or rerr == "closed", rerr)
        assert.is_true(waited >= 2.5 and waited < 8, ("ended after %.2fs"):format(waited))
        bad:close()
        assert.truthy((E.read_file(g.log) or ""):find("end status=0", 1, true), h:tail(g))
        assert_alive(g, v)
        h:stop(v); h:stop(g)
      end))

    -- Three tunnels through the peer to a server capped by `cap` (server
    -- keys): the first two echo, the third is closed at once -> the peer's log.
    local function third_refused(cap, name)
      local port = E.free_port()
      local o = { port = port, users = { { id = ID } },
                  transport = { type = "grpc", service_name = SERVICE } }
      for k, val in pairs(cap) do o[k] = val end
      local capped = h:luaray(name, E.luaray_server_script(o))
      local g, gport = gun_client { port = port, name = "gun-" .. name }
      local v, socks = v2ray_client(gport)
      local a = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local b = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      a:send("x"); b:send("y")
      a:settimeout(5); b:settimeout(5)
      assert.are.equal("x", a:receive(1))
      assert.are.equal("y", b:receive(1))
      local c = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      c:send("z")
      c:settimeout(5)
      local data, err = c:receive(1)
      assert.is_nil(data)
      assert.are.equal("closed", err)
      c:close()
      -- the two open ones still work
      local ok, terr = E.transfer_echo_many({ a, b }, 64 * KiB, { timeout = 10 })
      assert.is_true(ok, terr)
      assert.is_true(h:alive(capped))
      local text = E.read_file(g.log) or ""
      h:stop(v); h:stop(g); h:stop_luaray(capped)
      return text
    end

    it("max_sessions: announced as SETTINGS_MAX_CONCURRENT_STREAMS; a third stream is not opened",
      h:guard(function()
        local text = third_refused({ max_sessions = 2 }, "luaray-grpc-max-sessions")
        -- refused by the peer itself (it honours our SETTINGS) or by us
        assert.truthy(text:find("refused: max concurrent streams 2", 1, true) or
                      text:find("reset 7", 1, true), text)
      end))

    it("the session pool (max_connections): a stream beyond it is refused (REFUSED_STREAM)",
      h:guard(function()
        local text = third_refused({ max_connections = 2 }, "luaray-grpc-pool")
        assert.truthy(text:find("reset 7", 1, true), text) -- REFUSED_STREAM
      end))
  end)
end)
