-- nginx terminating TLS in front of a luaray WebSocket inbound (design.md 6:
-- "a server behind nginx", trusted_proxies, ctx.src in the access log), end
-- to end on loopback with real peers:
--   a real nginx (Debian nginx-light, started here as a non-daemon with its
--   own prefix) listens with TLS for example.test (a CA, an intermediate and
--   a leaf made here with the openssl command, the leaf + intermediate as
--   the chain); its /ray location is the README's block, proxy_pass pointed
--   at a plain ws inbound on loopback, with proxy_bind 127.0.0.2 so that the
--   TCP peer luaray sees is nginx's and not the client's address; the
--   inbound trusts only 127.0.0.2/32.
--   * v2ray 4.34 (ws + tls, verifying the CA) -> nginx -> luaray, and a
--     luaray client (tls + ws) -> nginx -> luaray: 1 MiB both ways, 1 MiB
--     down, 1 MiB up; every access line shows the client 127.0.0.1 (from
--     X-Forwarded-For), never nginx's 127.0.0.2, while a close hook sees
--     ctx.peer 127.0.0.2 (nginx's proxy_bind) and ctx.src 127.0.0.1; nginx's
--     own log shows TLS 1.3 with SNI example.test.
--   * A client that forges X-Forwarded-For / X-Real-IP: 203.0.113.9 through
--     nginx (the independent WebSocket peer spec/e2e/tools/ws_peer.lua over
--     Python's TLS, spec/e2e/tools/tls_forward.py): nginx appends the
--     address it saw, luaray reads right to left past its trusted proxies
--     and logs 127.0.0.1, never 203.0.113.9.
--   * The same inbound reached directly (not through nginx) with the forged
--     headers: they are not believed, the access line shows the TCP peer.
--   * curl --cacert to nginx for another path gets the web server behind
--     nginx's `location /` (the fallback page).
-- Every child is started and stopped by PID through the harness.
local E = require "e2e.support"
local unistd = require "posix.unistd"

local MiB = 1024 * 1024
local LUAJIT = unistd.readlink("/proc/self/exe") or "luajit"
local FW = require "e2e.front_watch"
local LOG_WAIT = FW.LOG_WAIT
local FORGED = "203.0.113.9"

local access_lines = FW.access_lines

describe("nginx terminating TLS in front of a ws inbound, X-Forwarded-For", function()
  local h = E.new("nginx_tls")
  local ID = E.uuid()
  local D                        -- the certificates' directory
  local CA                       -- the root the clients trust
  local echo, web, srv, srv_port, nginx_port, nginx_dir
  local readme_loc               -- the README's location block as used

  local function readme_location(port) return E.readme_nginx_location(port, "127.0.0.2") end

  local function start_nginx(port, upstream, web_port)
    nginx_dir = h:path("nginx")
    assert(os.execute(("mkdir -p %s/tmp %s/logs"):format(nginx_dir, nginx_dir)) == 0)
    readme_loc = readme_location(upstream)
    local d = nginx_dir
    local conf = h:write("nginx/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
error_log %s/logs/error.log info;
pid %s/logs/nginx.pid;
events { worker_connections 256; }
http {
    log_format xff '$remote_addr "$request" $status ssl=$ssl_protocol sni=$ssl_server_name '
                   'xff_in="$http_x_forwarded_for" xff_out="$proxy_add_x_forwarded_for"';
    access_log %s/logs/access.log xff;
    client_body_temp_path %s/tmp/body;
    proxy_temp_path %s/tmp/proxy;
    fastcgi_temp_path %s/tmp/fastcgi;
    uwsgi_temp_path %s/tmp/uwsgi;
    scgi_temp_path %s/tmp/scgi;
    server {
        listen 127.0.0.1:%d ssl;
        server_name example.test;
        ssl_certificate %s/example.pem;
        ssl_certificate_key %s/example.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        %s
        location / {
            proxy_pass http://127.0.0.1:%d;
            proxy_set_header Host $host;
        }
    }
}
]]):format(d, d, d, d, d, d, d, d, port, D, D, readme_loc, web_port))
    return h:spawn("nginx", { "/usr/sbin/nginx", "-p", d, "-c", conf, "-e", d .. "/logs/error.log" },
                   { ports = { { "127.0.0.1", port } } })
  end

  -- the server's access lines and close-hook lines (e2e/front_watch.lua)
  local function new_access(a0, n) return FW.new(srv, "user1@e2e"):new_access(a0, n) end
  local function closes() return FW.new(srv, "user1@e2e"):closes() end
  local function new_closes(c0, n) return FW.new(srv, "user1@e2e"):new_closes(c0, n) end

  -- Every new access line names `src` as the client (>= 3 of them the
  -- user's: echo, source, sink), none names nginx or the forged address; the
  -- close hook saw TCP peers matching `peer` (a pattern).
  local function check_access(a0, c0, src, peer, what)
    local every, lines = new_access(a0, 3)
    local all = table.concat(every, "\n")
    assert.is_true(#lines >= 3, ("%s: %d access lines of user1, wanted 3:\n%s"):format(what, #lines, all))
    for _, line in ipairs(every) do
      assert.is_truthy(line:find(" " .. src .. " vmess%-in "), what .. ": not from " .. src .. ": " .. line)
    end
    for _, line in ipairs(lines) do
      assert.is_truthy(line:find(" " .. src .. " vmess%-in user1@e2e tcp 127%.0%.0%.1:%d+ "),
                       what .. ": not from " .. src .. ": " .. line)
    end
    assert.is_nil(all:find("127.0.0.2", 1, true), what .. ": nginx's own address logged:\n" .. all)
    assert.is_nil(all:find(FORGED, 1, true), what .. ": the forged address logged:\n" .. all)
    local dsts = {}
    for _, line in ipairs(lines) do
      dsts[tonumber(line:match(" tcp 127%.0%.0%.1:(%d+) "))] = true
    end
    assert.is_true(dsts[echo.port] and dsts[echo.source_port] and dsts[echo.sink_port] or false,
                   what .. ": access lines for echo, source and sink:\n" .. all)
    local cl = new_closes(c0, 3)
    assert.is_true(#cl >= 3, what .. ": close hook lines:\n" .. table.concat(cl, "\n"))
    for _, line in ipairs(cl) do
      assert.is_truthy(line:find("^127%.0%.0%.1 %d+ " .. peer .. " %d+ ws$"),
                       what .. ": ctx.src / ctx.peer: " .. line)
    end
    return lines
  end

  -- The independent WebSocket peer as a client bridge (plain TCP in from a
  -- v2ray VMess client, WebSocket out to `to`) with extra request headers.
  local function ws_peer_client(to, args)
    local port = E.free_port()
    local argv = { LUAJIT, E.tools .. "/ws_peer.lua", "--role", "client", "--listen", tostring(port),
                   "--to", to, "--path", "/ray", "--lifetime", "600",
                   "--stats", h:path(("ws-peer-%d.stats"):format(port)) }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    h:spawn("ws-peer", argv, { ports = { { "127.0.0.1", port } } })
    return port
  end

  lazy_setup(h:guard(function()
    -- a root, an intermediate it signs, a leaf for example.test the
    -- intermediate signs; nginx serves leaf + intermediate, clients trust
    -- the root
    D = h:test_pki({ { "example", { "example.test" } } }, "nginx")
    CA = D .. "/ca.pem"
    local code, v = h:exec("nginx-V", { "/usr/sbin/nginx", "-V" })
    assert(code == 0 and v:find("--with-http_ssl_module", 1, true), "nginx without the ssl module: " .. v)
    echo = h:echo_server()
    web = h:http_server { name = "web" }
    srv_port, nginx_port = E.free_port(), E.free_port()
    -- a close hook prints ctx.src and ctx.peer (the TCP peer) of every
    -- connection on stdout (srv.out): proof that nginx's proxy_bind took effect
    local text, o = E.luaray_server_script {
      port = srv_port, users = { { id = ID } }, log_level = "debug", access = true,
      transport = { type = "ws", path = "/ray" }, trusted_proxies = { "127.0.0.2/32" },
      extra = [[
luaray.on("close", function(ctx, s)
  print(table.concat({ "OBS", "close", tostring(ctx.inbound), ctx.user and ctx.user.email or "-",
    ctx.src.ip, tostring(ctx.src.port), ctx.peer.ip, tostring(ctx.peer.port),
    tostring(ctx.transport) }, "\t"))
end)]] }
    srv = h:luaray_obs("luaray-server", text, o)
    start_nginx(nginx_port, srv_port, web.port)
  end))
  lazy_teardown(function() h:cleanup() end)

  it("v2ray 4.34 (ws + tls) -> nginx (TLS, proxy_bind 127.0.0.2) -> luaray: 1 MiB both ways, " ..
     "1 MiB down, 1 MiB up; the access log shows the client 127.0.0.1, not nginx", h:guard(function()
    local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
    local socks = E.free_port()
    local cfg = E.v2ray_client_config { socks_port = socks, server_port = nginx_port, id = ID }
    cfg.outbounds[1].streamSettings = {
      network = "ws", security = "tls",
      tlsSettings = { serverName = "example.test", allowInsecure = false,
                      certificates = { { usage = "verify", certificateFile = CA } } },
      wsSettings = { path = "/ray", headers = { Host = "example.test" } } }
    local c = h:v2ray("v2ray-wss-client", cfg)
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
    assert.is_true(ok, err)
    h:stop(c)
    -- through nginx the client's port is unknown: 0
    check_access(a0, c0, "127%.0%.0%.1:0", "127%.0%.0%.2", "v2ray")
    -- and nginx really spoke TLS for example.test to it
    local nlog = E.read_file(nginx_dir .. "/logs/access.log")
    assert.is_truthy(nlog:find('127%.0%.0%.1 "GET /ray HTTP/1%.1" 101 ssl=TLSv1%.[23] sni=example%.test'), nlog)
  end))

  it("a luaray client (tls + ws) -> nginx -> luaray: 1 MiB both ways, 1 MiB down, 1 MiB up; " ..
     "the access log shows the client 127.0.0.1", h:guard(function()
    local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
    local socks = E.free_port()
    local cli = h:luaray("luaray-wss-client", E.luaray_client_script {
      socks_port = socks, server_port = nginx_port, id = ID, log_level = "debug",
      tls = { server_name = "example.test", ca = CA, alpn = { "http/1.1" } },
      transport = { type = "ws", path = "/ray", host = "example.test" } })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
    assert.is_true(ok, err)
    assert.is_truthy(E.wait_log(cli, "tls to upstream: TLSv1%.[23] alpn=http/1%.1"))
    h:stop_luaray(cli)
    check_access(a0, c0, "127%.0%.0%.1:0", "127%.0%.0%.2", "luaray client")
  end))

  it("a client forging X-Forwarded-For / X-Real-IP through nginx: luaray logs the address " ..
     "nginx saw (127.0.0.1), never the forged one", h:guard(function()
    local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
    local n0 = #E.read_file(nginx_dir .. "/logs/access.log")
    -- v2ray (VMess on plain TCP) -> ws_peer (WebSocket, forged headers) ->
    -- tls_forward.py (Python's TLS, verifying example.test) -> nginx -> luaray
    local fwd_port = E.free_port()
    local fwd = h:spawn("tls-forward", { "python3", E.tools .. "/tls_forward.py",
      "--listen", tostring(fwd_port), "--to", "127.0.0.1:" .. nginx_port, "--sni", "example.test",
      "--ca", CA, "--alpn", "http/1.1", "--lifetime", "600" },
      { ports = { { "127.0.0.1", fwd_port } }, timeout = 15 })
    local peer_port = ws_peer_client("127.0.0.1:" .. fwd_port, {
      "--host", "example.test",
      "--header", "X-Forwarded-For: " .. FORGED, "--header", "X-Real-IP: " .. FORGED })
    local socks = E.free_port()
    local c = h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = peer_port, id = ID })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
    assert.is_true(ok, err)
    h:stop(c)
    check_access(a0, c0, "127%.0%.0%.1:0", "127%.0%.0%.2", "forged through nginx")
    assert.is_nil(E.read_file(srv.log):find(FORGED, 1, true), "the forged address in luaray's log")
    -- the forged header did go through TLS and nginx: nginx received it, and
    -- (the README's block appending with $proxy_add_x_forwarded_for) sent
    -- "203.0.113.9, 127.0.0.1" on, so luaray had to skip the forged entry
    assert.is_truthy(E.read_file(fwd.log):find("tls connected version=TLSv1%.[23] alpn=http/1%.1 " ..
                                               "cert_cn=example%.test"))
    local nlog = E.read_file(nginx_dir .. "/logs/access.log"):sub(n0 + 1)
    assert.is_truthy(nlog:find('"GET /ray HTTP/1%.1" 101 [^\n]*xff_in="203%.0%.113%.9"'), nlog)
    if readme_loc:find("$proxy_add_x_forwarded_for", 1, true) then
      assert.is_truthy(nlog:find('xff_out="203%.0%.113%.9, 127%.0%.0%.1"', 1), nlog)
    end
    h:stop(fwd)
  end))

  it("the same inbound reached directly (not through nginx) with forged X-Forwarded-For / " ..
     "X-Real-IP: not believed, the access line shows the TCP peer", h:guard(function()
    local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
    local peer_port = ws_peer_client("127.0.0.1:" .. srv_port, {
      "--host", "example.test",
      "--header", "X-Forwarded-For: " .. FORGED, "--header", "X-Real-IP: " .. FORGED })
    local socks = E.free_port()
    local c = h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = peer_port, id = ID })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
    assert.is_true(ok, err)
    h:stop(c)
    -- the TCP peer, port and all
    check_access(a0, c0, "127%.0%.0%.1:[1-9]%d*", "127%.0%.0%.1", "direct")
    assert.is_nil(E.read_file(srv.log):find(FORGED, 1, true), "the forged address in luaray's log")
  end))

  it("curl --cacert over TLS to nginx for another path gets the web server's page",
    h:guard(function()
      local out = h:path("curl.out")
      local url = ("https://example.test:%d/data/5000/9"):format(nginx_port)
      local code, text = h:exec("curl", { "curl", "-sS", "--max-time", "10", "--cacert", CA,
        "--resolve", ("example.test:%d:127.0.0.1"):format(nginx_port), "-o", out,
        "-w", "%{http_code} verify=%{ssl_verify_result}", url }, { timeout = 15 })
      assert.are.equal(0, code, text)
      assert.is_truthy(text:find("200 verify=0", 1, true), text)
      assert.are.equal(E.pattern(5000, 9), E.read_file(out))
      assert.is_truthy(E.read_file(web.log):find("GET /data/5000/9 host=example.test", 1, true))
    end))
end)
