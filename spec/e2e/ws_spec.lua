-- WebSocket and HTTPUpgrade transports (design.md 6; core/stream/ws.c,
-- core/inbound/front_http.c, core/outbound/cfront_http.c), end to end on
-- loopback with real peers:
--   v2ray 4.34 client (ws) -> luaray ws inbound; luaray ws outbound -> v2ray
--   4.34 ws server (also with ?ed=, which v2ray does not take: resent);
--   luaray <-> luaray over ws and httpupgrade, with and without early data;
--   an independent WebSocket peer (spec/e2e/tools/ws_peer.lua, from RFC
--   6455) in both roles: early data in Sec-WebSocket-Protocol and in the
--   path, fragmented messages, pings inside them, the close handshake, and
--   direct checks of the 101, pongs and protocol errors;
--   a real nginx (Debian nginx-light, the README's location block, with
--   proxy_bind 127.0.0.2) in front of a ws inbound: the access log shows the
--   client's address from X-Forwarded-For; an untrusted peer's is ignored;
--   the fallback: another path, a request without the upgrade, another Host
--   reach a real web server; without a fallback, a 404.
-- Transfers move 1 MiB both ways (every byte compared); the v2ray cells also
-- 1 MiB down and 1 MiB up (count and FNV). Every child is started and
-- stopped by PID through the harness.
local E = require "e2e.support"
local W = require "e2e.tools.ws_peer"
local socket = require "socket"
local unistd = require "posix.unistd"

local MiB = 1024 * 1024
local LUAJIT = unistd.readlink("/proc/self/exe") or "luajit"

-- v2ray 4.34 JSON with a ws stream on its VMess outbound / inbound
local function v2ray_ws_client(h, id, server_port, path, host)
  local socks = E.free_port()
  local cfg = E.v2ray_client_config { socks_port = socks, server_port = server_port, id = id }
  cfg.outbounds[1].streamSettings = { network = "ws",
    wsSettings = { path = path, headers = host and { Host = host } or nil } }
  return h:v2ray("v2ray-ws-client", cfg), socks
end

local function v2ray_ws_server(h, id, path)
  local port = E.free_port()
  local cfg = E.v2ray_server_config { port = port, users = { { id = id } } }
  cfg.inbounds[1].streamSettings = { network = "ws", wsSettings = { path = path } }
  return h:v2ray("v2ray-ws-server", cfg), port
end

-- The independent peer as a bridge (see its header for the options).
local function ws_peer(h, args)
  local port = E.free_port()
  local stats = h:path(("ws-peer-%d.stats"):format(port))
  local argv = { LUAJIT, E.tools .. "/ws_peer.lua", "--listen", tostring(port), "--stats", stats,
                 "--lifetime", "600" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = h:spawn("ws-peer", argv, { ports = { { "127.0.0.1", port } } })
  p.port, p.stats = port, stats
  return p
end

-- The peer's stats lines (one per finished session) as tables, waiting
-- until there are n of them.
local function peer_sessions(p, n, timeout)
  local deadline = E.now() + (timeout or 10)
  local list
  repeat
    list = {}
    for line in E.read_file(p.stats):gmatch("[^\n]+") do
      local t = {}
      for k, v in line:gmatch("(%S+)=(%S+)") do t[k] = tonumber(v) or v end
      if t.end_reason ~= "probe" then list[#list + 1] = t end -- the harness's port probe
    end
    if #list >= n then return list end
    E.sleep(0.05)
  until E.now() > deadline
  return nil, ("%d of %d ws_peer sessions finished"):format(#list, n)
end

-- One SOCKS5 connection through a client, 1 MiB echoed and compared.
local function echo_through(socks, echo, opts)
  local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)
  assert.is_truthy(s, err)
  local ok, terr = E.transfer_echo(s, MiB, opts or { timeout = 30 })
  assert.is_true(ok, terr)
end

-- A blocking WebSocket client of our own to port, through the peer's code:
-- -> sock, reply head, rest; the request is W.request(...) with `extra`.
local function upgrade(port, path, extra, key)
  local s = assert(E.tcp_connect("127.0.0.1", port))
  key = key or W.base64(W.random(16))
  assert(s:send(W.request(path, "example.test", key, extra)))
  local head, rest = W.read_head(s, 5)
  assert.is_truthy(head, rest)
  return s, head, rest, key
end

-- Frames from a blocking socket until `want` (a predicate on a frame) or
-- the connection closes: -> the frames, and "closed" if it did.
local function read_frames(s, parser, want, timeout)
  local got = {}
  s:settimeout(0.2)
  local deadline = E.now() + (timeout or 5)
  while E.now() < deadline do
    local d, err, part = s:receive(65536)
    d = d or part
    if d and #d > 0 then
      local frames = assert(parser:feed(d))
      for _, f in ipairs(frames) do
        got[#got + 1] = f
        if want and want(f) then return got end
      end
    end
    if err == "closed" then return got, "closed" end
  end
  return got, "timeout"
end

describe("ws and httpupgrade with v2ray 4.34", function()
  local h = E.new("ws_v2ray")
  local ID = E.uuid()
  local echo, srv, srv_port

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    srv_port = E.free_port()
    srv = h:luaray("luaray-ws-server", E.luaray_server_script {
      port = srv_port, users = { { id = ID } }, log_level = "debug",
      transport = { type = "ws", path = "/ray" } })
  end))
  lazy_teardown(function() h:cleanup() end)

  it("a v2ray client over ws -> the luaray ws inbound: 1 MiB both ways, 1 MiB down, 1 MiB up",
    h:guard(function()
      local c, socks = v2ray_ws_client(h, ID, srv_port, "/ray")
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
      assert.is_true(ok, err)
      assert.is_truthy(E.wait_log(srv, "ws upgrade for inbound vmess%-in"))
      assert.is_true(h:alive(srv))
      h:stop(c)
    end))

  it("a luaray ws outbound -> a v2ray ws server: 1 MiB both ways, 1 MiB down, 1 MiB up",
    h:guard(function()
      local v, vport = v2ray_ws_server(h, ID, "/v2")
      local socks = E.free_port()
      local cli = h:luaray("luaray-ws-client", E.luaray_client_script {
        socks_port = socks, server_port = vport, id = ID,
        transport = { type = "ws", path = "/v2" } })
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
      assert.is_true(ok, err)
      assert.is_true(h:alive(cli) and h:alive(v))
      h:stop_luaray(cli)
      h:stop(v)
    end))

  it("?ed=2048 against v2ray 4.34, which takes no early data: the bytes go again as a frame",
    h:guard(function()
      local v, vport = v2ray_ws_server(h, ID, "/v2")
      local socks = E.free_port()
      local cli = h:luaray("luaray-ws-ed-client", E.luaray_client_script {
        socks_port = socks, server_port = vport, id = ID, log_level = "debug",
        transport = { type = "ws", path = "/v2?ed=2048" } })
      echo_through(socks, echo)
      assert.is_truthy(E.wait_log(cli, "early data not taken by the server, sent again"))
      h:stop_luaray(cli)
      h:stop(v)
    end))
end)

describe("luaray <-> luaray over ws and httpupgrade", function()
  local h = E.new("ws_luaray")
  local ID = E.uuid()
  local echo, srv, ws_port, hu_port

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    ws_port, hu_port = E.free_port(), E.free_port()
    local text, o = E.luaray_server_script {
      port = ws_port, users = { { id = ID } }, log_level = "debug",
      transport = { type = "ws", path = "/ray", max_early_data = 2048 },
      extra = ([[luaray.inbound "vmess-hu" { type = "vmess", listen = "127.0.0.1:%d",
        allow_private = true, transport = { type = "httpupgrade", path = "/up" } }]]):format(hu_port) }
    o.ports[#o.ports + 1] = { "127.0.0.1", hu_port }
    srv = h:luaray("luaray-server", text, o)
  end))
  lazy_teardown(function() h:cleanup() end)

  local cases = {
    { name = "ws", port = function() return ws_port end, tp = { type = "ws", path = "/ray" },
      log = "ws upgrade for inbound vmess%-in from [^,]*, 0 bytes of early data" },
    { name = "ws with early data (?ed=2048)", port = function() return ws_port end,
      tp = { type = "ws", path = "/ray?ed=2048" },
      log = "ws upgrade for inbound vmess%-in from [^,]*, [1-9]%d* bytes of early data" },
    { name = "httpupgrade", port = function() return hu_port end,
      tp = { type = "httpupgrade", path = "/up" },
      log = "httpupgrade upgrade for inbound vmess%-hu from [^,]*, 0 bytes after the head" },
    { name = "httpupgrade with early data (?ed=1024)", port = function() return hu_port end,
      tp = { type = "httpupgrade", path = "/up?ed=1024" },
      log = "httpupgrade upgrade for inbound vmess%-hu from [^,]*, [1-9]%d* bytes after the head" },
  }
  for _, cs in ipairs(cases) do
    it(cs.name .. ": 1 MiB both ways, 1 MiB down, 1 MiB up", h:guard(function()
      local before = E.count_matches(E.read_file(srv.log), cs.log)
      local socks = E.free_port()
      local cli = h:luaray("luaray-client", E.luaray_client_script {
        socks_port = socks, server_port = cs.port(), id = ID, log_level = "debug",
        transport = cs.tp })
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
      assert.is_true(ok, err)
      assert.is_truthy(E.wait_log(srv, cs.log, before + 1))
      -- the early data was taken: nothing was sent a second time
      assert.is_nil(E.read_file(cli.log):find("sent again", 1, true))
      h:stop_luaray(cli)
    end))
  end

  it("early data carries payload too when it is already waiting (sniffing holds the first bytes)",
    h:guard(function()
      local socks = E.free_port()
      local cli = h:luaray("luaray-client", E.luaray_client_script {
        socks_port = socks, server_port = ws_port, id = ID,
        transport = { type = "ws", path = "/ray?ed=2048" },
        -- a domain rule: the SOCKS5 reply comes before the dial and the
        -- client's first bytes wait in the connection while it dials
        extra = 'luaray.route { domain_suffix = { "never.example" }, to = "upstream" }' })
      local before = E.count_matches(E.read_file(srv.log), "bytes of early data")
      echo_through(socks, echo)
      local log = assert(E.wait_log(srv, "bytes of early data", before + 1))
      local n
      for k in log:gmatch("(%d+) bytes of early data") do n = tonumber(k) end
      -- the VMess request header is < 400 bytes: the rest is sealed payload
      assert.is_true(n >= 1500, "early data " .. tostring(n))
      h:stop_luaray(cli)
    end))

  it("a half-closed connection goes on the other way (ws close frame, socket kept)",
    h:guard(function()
      local socks = E.free_port()
      local cli = h:luaray("luaray-client", E.luaray_client_script {
        socks_port = socks, server_port = ws_port, id = ID,
        transport = { type = "ws", path = "/ray" } })
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      -- send 1 MiB, shut our side down, and still get all of the echo, then EOF
      local ok, err = E.transfer_echo(s, MiB, { timeout = 30, half_close = true })
      assert.is_true(ok, err)
      h:stop_luaray(cli)
    end))

  it("the server's close after a late close frame loses nothing it sent (no RST: it lingers)",
    h:guard(function()
      -- A short request, then the client's end: the VMess end chunk ends
      -- the server's reading, and the close frame after it comes late.
      -- The download is slow, so the server's socket still holds a queue
      -- when the source ends and the server closes.  Closing with that
      -- close frame unread (or answering it once closed) is an RST, and an
      -- RST drops the queue: the client would get a short download.
      local rport = E.free_port()
      h:spawn("relay-tailsplit", { LUAJIT, E.tools .. "/faulty_relay.lua", "--port", tostring(rport),
                                   "--to-port", tostring(ws_port), "--mode", "tailsplit",
                                   "--delay", "0.1", "--gap", "0.01", "--lifetime", "120" },
              { ports = { rport } })
      local socks = E.free_port()
      local cli = h:luaray("luaray-client-tailsplit", E.luaray_client_script {
        socks_port = socks, server_port = rport, id = ID,
        transport = { type = "ws", path = "/ray" } })
      local N = 2 * MiB
      for i = 1, 4 do
        local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.source_port))
        s:settimeout(30)
        assert(s:send(("%d %d\n"):format(N, i)))
        s:shutdown("send")
        local stream, got = E.stream(i), 0
        while got < N do
          local data, err, partial = s:receive(math.min(65536, N - got))
          local d = data or partial or ""
          assert.are.equal(stream:next(#d), d, "download differs near byte " .. got)
          got = got + #d
          if err then break end
        end
        s:close()
        assert.are.equal(N, got, ("download %d: bytes received"):format(i))
      end
      h:stop_luaray(cli)
    end))
end)

describe("an independent WebSocket peer (spec/e2e/tools/ws_peer.lua)", function()
  local h = E.new("ws_peer")
  local ID = E.uuid()
  local echo, srv, srv_port

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    srv_port = E.free_port()
    srv = h:luaray("luaray-server", E.luaray_server_script {
      port = srv_port, users = { { id = ID } }, log_level = "debug", handshake_timeout = 3,
      transport = { type = "ws", path = "/ray", max_early_data = 2048 } })
  end))
  lazy_teardown(function() h:cleanup() end)

  -- v2ray (VMess on plain TCP) -> the peer as a ws client -> luaray
  for _, ed in ipairs({ "header", "path" }) do
    it("as a client, early data in the " .. ed .. ", fragmented messages, pings inside them, " ..
       "the close handshake: 1 MiB both ways", h:guard(function()
      local peer = ws_peer(h, { "--role", "client", "--to", "127.0.0.1:" .. srv_port,
                                "--path", "/ray", "--ed", ed, "--fragment", "1000",
                                -- pings well before the end: luaray stops reading a
                                -- client once its VMess request stream has ended
                                "--ping-every", "5", "--ping-until", "900000" })
      local socks = E.free_port()
      local c = h:v2ray("v2ray-client", E.v2ray_client_config {
        socks_port = socks, server_port = peer.port, id = ID })
      echo_through(socks, echo)
      h:stop(c) -- v2ray closes its connection: the peer ends its direction with a close frame
      local list = assert(peer_sessions(peer, 1, 15))
      local st = list[1]
      assert.is_true(st.early_data > 0, "early data sent")
      if ed == "header" then assert.are.equal(1, st.echoed) else assert.are.equal(0, st.echoed) end
      assert.is_true(st.continuations_out > 100, "fragmented messages")
      assert.is_true(st.pings_out > 10)
      -- a pong answers the latest ping (RFC 6455 5.5.3 lets one answer several)
      assert.is_true(st.pongs_in > 0)
      assert.are.equal(st.pings_out, st.last_pong, "the last ping answered")
      assert.are.equal(1, st.close_out)
      assert.are.equal(1, st.close_in, "luaray answered the close")
      assert.are.equal(1000, st.close_code_in)
      for _, bad in ipairs({ "masked_in", "bad_rsv", "bad_control", "bad_opcode", "bad_continuation",
                             "bad_new_message", "pongs_unasked", "bad_reply", "bad_frame" }) do
        assert.is_nil(st[bad], bad)
      end
      assert.is_true(st.bytes_from_ws >= MiB and st.bytes_to_ws >= MiB)
      assert.is_truthy(E.wait_log(srv, "ws upgrade [^\n]*, [1-9]%d* bytes of early data"))
    end))
  end

  it("as a server before a v2ray server: luaray's client masks every frame, answers pings, " ..
     "sends early data, 1 MiB both ways", h:guard(function()
    local vport = E.free_port()
    local v = h:v2ray("v2ray-server", E.v2ray_server_config { port = vport, users = { { id = ID } } })
    local peer = ws_peer(h, { "--role", "server", "--to", "127.0.0.1:" .. vport, "--path", "/x",
                              "--accept-ed", "--fragment", "700", "--ping-every", "4",
                              "--ping-until", "900000" })
    local socks = E.free_port()
    local cli = h:luaray("luaray-client", E.luaray_client_script {
      socks_port = socks, server_port = peer.port, id = ID, log_level = "debug",
      transport = { type = "ws", path = "/x?ed=2048", host = "cdn.example.test" } })
    echo_through(socks, echo)
    h:stop_luaray(cli)
    local st = assert(peer_sessions(peer, 1, 15))[1]
    assert.is_true(st.early_data > 0)
    assert.is_nil(st.unmasked_in, "every client frame masked")
    assert.is_true(st.frames_in > 10)
    assert.is_true(st.pings_out > 10)
    assert.is_true(st.pongs_in > 0)
    assert.are.equal(st.pings_out, st.last_pong, "the last ping answered")
    for _, bad in ipairs({ "bad_rsv", "bad_control", "bad_opcode", "bad_continuation",
                           "bad_new_message", "pongs_unasked", "bad_request", "bad_frame" }) do
      assert.is_nil(st[bad], bad)
    end
    assert.is_nil(E.read_file(cli.log):find("sent again", 1, true))
    h:stop(v)
  end))

  it("the 101: Sec-WebSocket-Accept for the key; early data echoed exactly; a subprotocol list " ..
     "is not early data", h:guard(function()
    local s, head, _, key = upgrade(srv_port, "/ray")
    assert.is_true(W.check_reply(head, key))
    s:close()
    -- base64url in Sec-WebSocket-Protocol: taken (not VMess, so refused after) and echoed
    local proto = W.base64url(("\7"):rep(100))
    s, head, _, key = upgrade(srv_port, "/ray", { "Sec-WebSocket-Protocol: " .. proto })
    local ok, echoed = W.check_reply(head, key, proto)
    assert.is_true(ok, echoed)
    assert.is_true(echoed)
    s:close()
    s, head, _, key = upgrade(srv_port, "/ray", { "Sec-WebSocket-Protocol: chat, superchat" })
    ok, echoed = W.check_reply(head, key, nil)
    assert.is_true(ok, echoed)
    assert.is_false(echoed)
    s:close()
    -- more early data than max_early_data: not an upgrade (no fallback here: 404)
    s, head = upgrade(srv_port, "/ray", { "Sec-WebSocket-Protocol: " .. W.base64url(("x"):rep(3000)) })
    assert.is_truthy(head:match("^HTTP/1%.1 404 "), head)
    s:close()
  end))

  it("a ping gets its pong with the same payload, even while the VMess header is awaited",
    h:guard(function()
      local s = upgrade(srv_port, "/ray")
      assert(s:send(W.frame(9, "are you there?", true, true)))
      local p = W.parser()
      local got = read_frames(s, p, function(f) return f.op == 10 end)
      local pong = got[#got]
      assert.is_truthy(pong and pong.op == 10, "no pong")
      assert.are.equal("are you there?", pong.payload)
      assert.is_false(pong.masked)
      s:close()
    end))

  it("frames sent together with the request are read (a ping in the same packet gets its pong)",
    h:guard(function()
      local s = assert(E.tcp_connect("127.0.0.1", srv_port))
      local key = W.base64(W.random(16))
      assert(s:send(W.request("/ray", "example.test", key) .. W.frame(9, "with the request", true, true)))
      local head, rest = W.read_head(s, 5)
      assert.is_truthy(head, rest)
      assert.is_true(W.check_reply(head, key))
      local p = W.parser()
      local got = assert(p:feed(rest))
      if not (got[1] and got[1].op == 10) then
        got = read_frames(s, p, function(f) return f.op == 10 end)
      end
      assert.is_truthy(got[#got] and got[#got].op == 10, "no pong")
      assert.are.equal("with the request", got[#got].payload)
      s:close()
    end))

  local errors = {
    { "an unmasked frame from a client", function() return W.frame(2, "data", true, false) end, 1002 },
    { "RSV bits without an extension", function() return W.frame(2, "data", true, true, { rsv = 0x40 }) end, 1002 },
    { "a control frame over 125 bytes", function() return W.frame(9, ("p"):rep(126), true, true) end, 1002 },
    { "a fragmented ping", function() return W.frame(9, "p", false, true) end, 1002 },
    { "a continuation without a message", function() return W.frame(0, "c", true, true) end, 1002 },
    { "opcode 3", function() return W.frame(3, "x", true, true) end, 1002 },
    { "a data frame over 16 MiB", function()
        return string.char(0x82, 0xff, 0, 0, 0, 0, 1, 0, 0, 1) .. "\1\2\3\4" .. "x" end, 1009 },
  }
  for _, e in ipairs(errors) do
    it(e[1] .. ": a close frame " .. e[3] .. ", then the connection closes", h:guard(function()
      local s = upgrade(srv_port, "/ray")
      assert(s:send(e[2]()))
      local got, how = read_frames(s, W.parser(), nil, 5)
      assert.are.equal("closed", how)
      local last = got[#got]
      assert.is_truthy(last and last.op == 8, "no close frame")
      assert.are.equal(e[3], last.payload:byte(1) * 256 + last.payload:byte(2))
      s:close()
    end))
  end

  it("a client's close frame: it is answered with a close when our side ends", h:guard(function()
    -- no VMess header comes, so the inbound holds the connection to its
    -- handshake deadline (3 s here) and then ends its side: a close frame
    local s = upgrade(srv_port, "/ray")
    assert(s:send(W.frame(8, "\3\232", true, true)))
    local got, how = read_frames(s, W.parser(), function(f) return f.op == 8 end, 10)
    local last = got[#got]
    assert.is_truthy(last and last.op == 8, "no close frame: " .. tostring(how))
    assert.are.equal(1000, last.payload:byte(1) * 256 + last.payload:byte(2))
    s:close()
  end))
end)

describe("behind a real nginx, X-Forwarded-For, and the fallback", function()
  local h = E.new("ws_nginx")
  local ID = E.uuid()
  local echo, web, srv, srv_port, nofb_port, hosted_port, nginx_port

  local function readme_location(port) return E.readme_nginx_location(port, "127.0.0.2") end

  local function start_nginx(port, upstream)
    local dir = h:path("nginx")
    assert(os.execute(("mkdir -p %s/tmp %s/logs"):format(dir, dir)) == 0)
    local conf = h:write("nginx/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
error_log %s/logs/error.log info;
pid %s/logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log %s/logs/access.log;
    client_body_temp_path %s/tmp/body;
    proxy_temp_path %s/tmp/proxy;
    fastcgi_temp_path %s/tmp/fastcgi;
    uwsgi_temp_path %s/tmp/uwsgi;
    scgi_temp_path %s/tmp/scgi;
    server {
        listen 127.0.0.1:%d;
        server_name example.test;
        %s
        location / {
            return 404;
        }
    }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, dir, port, readme_location(upstream)))
    return h:spawn("nginx", { "/usr/sbin/nginx", "-p", dir, "-c", conf, "-e", dir .. "/logs/error.log" },
                   { ports = { { "127.0.0.1", port } } })
  end

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    web = h:http_server()
    srv_port, nofb_port, hosted_port, nginx_port = E.free_port(), E.free_port(), E.free_port(),
                                                   E.free_port()
    local text, o = E.luaray_server_script {
      port = srv_port, users = { { id = ID } }, log_level = "debug",
      transport = { type = "ws", path = "/ray", max_early_data = 2048 },
      fallback = "127.0.0.1:" .. web.port, trusted_proxies = { "127.0.0.2/32" },
      extra = ([[
luaray.inbound "no-fallback" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true,
  transport = { type = "ws", path = "/ray" } }
luaray.inbound "hosted" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true,
  transport = { type = "ws", path = "/ray", host = "example.test" }, fallback = "127.0.0.1:%d" }
]]):format(nofb_port, hosted_port, web.port) }
    o.ports[#o.ports + 1] = { "127.0.0.1", nofb_port }
    o.ports[#o.ports + 1] = { "127.0.0.1", hosted_port }
    srv = h:luaray("luaray-server", text, o)
    start_nginx(nginx_port, srv_port)
  end))
  lazy_teardown(function() h:cleanup() end)

  it("v2ray -> nginx (proxy_bind 127.0.0.2) -> luaray: 1 MiB both ways; the access log shows " ..
     "the client from X-Forwarded-For, not nginx", h:guard(function()
    local c, socks = v2ray_ws_client(h, ID, nginx_port, "/ray", "example.test")
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert.is_true(ok, err)
    h:stop(c)
    -- every connection through nginx: the client 127.0.0.1 (port unknown: 0)
    local log = assert(E.wait_log(srv, "\n[^\n]* 127%.0%.0%.1:0 vmess%-in ", 3, 15))
    assert.is_nil(log:find(" 127%.0%.0%.2:%d+ vmess%-in "), "nginx's own address in the access log")
  end))

  it("X-Forwarded-For from a peer that is not a trusted proxy is ignored", h:guard(function()
    local before = E.count_matches(E.read_file(srv.log), " 127%.0%.0%.1:[1-9]%d* vmess%-in ")
    local peer = ws_peer(h, { "--role", "client", "--to", "127.0.0.1:" .. srv_port, "--path", "/ray",
                              "--header", "X-Forwarded-For: 203.0.113.9",
                              "--header", "X-Real-IP: 203.0.113.9" })
    local socks = E.free_port()
    local c = h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = peer.port, id = ID })
    echo_through(socks, echo)
    h:stop(c)
    local log = assert(E.wait_log(srv, " 127%.0%.0%.1:[1-9]%d* vmess%-in ", before + 1, 15))
    assert.is_nil(log:find("203.0.113.9", 1, true))
  end))

  it("from a trusted proxy, X-Forwarded-For is read right to left past trusted proxies",
    h:guard(function()
      local peer = ws_peer(h, { "--role", "client", "--to", "127.0.0.1:" .. srv_port, "--path", "/ray",
                                "--bind", "127.0.0.2",
                                "--header", "X-Forwarded-For: 192.0.2.1, 198.51.100.7, 127.0.0.2" })
      local socks = E.free_port()
      local c = h:v2ray("v2ray-client", E.v2ray_client_config {
        socks_port = socks, server_port = peer.port, id = ID })
      echo_through(socks, echo)
      h:stop(c)
      -- 127.0.0.2 is trusted and skipped; 198.51.100.7 is the client (not 192.0.2.1,
      -- which only the client itself claims)
      assert.is_truthy(E.wait_log(srv, " 198%.51%.100%.7:0 vmess%-in ", 1, 15))
    end))

  it("fallback: a browser's GET for another path gets the web server's page", h:guard(function()
    local s = assert(E.tcp_connect("127.0.0.1", srv_port))
    local code, head, body = E.http_request(s, "GET", "/data/5000/9", { headers = {
      "Host: example.test", "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
      "Accept: text/html,application/xhtml+xml", "Accept-Language: en" } })
    assert.are.equal(200, code, head)
    assert.are.equal(E.pattern(5000, 9), body)
    assert.is_truthy(E.read_file(web.log):find("GET /data/5000/9 host=example.test", 1, true))
  end))

  it("fallback: a GET for the ws path without the upgrade, and a POST, reach the web server",
    h:guard(function()
      local s = assert(E.tcp_connect("127.0.0.1", srv_port))
      local code = E.http_request(s, "GET", "/ray", { headers = { "Host: example.test" } })
      assert.are.equal(404, code) -- the web server's own answer for /ray
      s = assert(E.tcp_connect("127.0.0.1", srv_port))
      local code2, _, body = E.http_request(s, "POST", "/echo", { headers = { "Host: example.test" },
                                                                  body = "hello fallback" })
      assert.are.equal(200, code2)
      assert.are.equal("hello fallback", body)
      local log = E.read_file(web.log)
      assert.is_truthy(log:find("GET /ray host=example.test", 1, true))
      assert.is_truthy(log:find("POST /echo", 1, true))
    end))

  it("fallback: an upgrade with another Host (transport.host set) reaches the web server",
    h:guard(function()
      local s = assert(E.tcp_connect("127.0.0.1", hosted_port))
      local code = E.http_request(s, "GET", "/ray", { headers = { "Host: other.test",
        "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13" } })
      assert.are.equal(404, code)
      assert.is_truthy(E.read_file(web.log):find("GET /ray host=other.test", 1, true))
      -- the right Host is upgraded
      local s2 = assert(E.tcp_connect("127.0.0.1", hosted_port))
      local key = W.base64(W.random(16))
      assert(s2:send(W.request("/ray", "EXAMPLE.test:443", key)))
      local head = assert(W.read_head(s2, 5))
      assert.is_true(W.check_reply(head, key))
      s2:close()
    end))

  it("without a fallback: a plain 404, and the connection closes", h:guard(function()
    local s = assert(E.tcp_connect("127.0.0.1", nofb_port))
    local code, head = E.http_request(s, "GET", "/index.html", { headers = { "Host: example.test" } })
    assert.are.equal(404, code)
    assert.is_truthy(head:find("Content-Length: 0", 1, true))
    -- not HTTP at all: the same
    s = assert(E.tcp_connect("127.0.0.1", nofb_port))
    s:send("\22\3\1\0\200\1\0\0\124\3\3")
    s:settimeout(5)
    local data, err, part = s:receive("*a")
    assert.is_truthy((data or part):match("^HTTP/1%.1 404 Not Found\r\n"), tostring(err))
    s:close()
  end))

  it("after the upgrade, bytes that are not VMess are not sent to the fallback", h:guard(function()
    local before = #E.read_file(web.log)
    local s = upgrade(srv_port, "/ray")
    assert(s:send(W.frame(2, "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n" .. ("x"):rep(400), true, true)))
    E.sleep(1)
    assert.are.equal(before, #E.read_file(web.log))
    s:close()
  end))
end)
