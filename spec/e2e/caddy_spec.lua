-- Caddy terminating TLS in front of a luaray WebSocket inbound: the README's
-- Caddyfile site block ("Behind nginx / Caddy / a CDN") run for real, end to
-- end on loopback:
--   a real Caddy (Debian's caddy 2.6, `caddy run` as a child with HOME and
--   the XDG directories in the test's temp dir, `admin off`, `auto_https
--   off`) listens with TLS for example.test (a CA, an intermediate and a
--   leaf made here with the openssl command, the leaf + intermediate as the
--   chain). Its site block is the README's, with the site address, the
--   upstream port and the root substituted, and only test plumbing added
--   (`bind 127.0.0.1`, `tls <cert> <key>`, a JSON access log). Behind it a
--   plain ws inbound on loopback as in the README (max_early_data 2048),
--   trusting 127.0.0.1/32, with a close hook printing ctx.src and ctx.peer.
--   Caddy dials its upstream from 127.0.0.1, so the clients that must be
--   told apart from Caddy come from 127.0.0.3.
--   * v2ray 4.34 (ws + tls verifying the CA, sendThrough 127.0.0.3) ->
--     Caddy -> luaray: 1 MiB both ways, 1 MiB down, 1 MiB up; the access
--     log names the client 127.0.0.3 (from X-Forwarded-For, port 0), the
--     close hook sees the TCP peer 127.0.0.1 (Caddy); Caddy's own log shows
--     TLS 1.3 with SNI example.test and the 101.
--   * A luaray client (tls + ws, the README's path "/ray?ed=2048") -> Caddy
--     -> luaray: the same transfers, early data in Sec-WebSocket-Protocol
--     through Caddy; src from the header (127.0.0.1, port 0), peer Caddy.
--   * v2fly's early data in the path ("/ray<base64url>": the independent
--     WebSocket peer spec/e2e/tools/ws_peer.lua over Python's TLS,
--     spec/e2e/tools/tls_forward.py) reaches luaray through Caddy.
--   * Forged X-Forwarded-For / X-Real-IP: 203.0.113.9, from v2ray (headers
--     of its wsSettings, from 127.0.0.3) and from ws_peer through
--     tls_forward.py: luaray logs the address Caddy saw, never the forged
--     one; what Caddy sends upstream for such a request (a capture server
--     behind a second site of the same block): one X-Forwarded-For naming
--     the client, X-Real-IP overwritten, no forged address.
--   * curl --cacert gets the site's page from Caddy's file_server root.
-- Every child is started and stopped by PID through the harness.
local E = require "e2e.support"
local cjson = require "cjson"
local unistd = require "posix.unistd"
local stat = require "posix.sys.stat"

local MiB = 1024 * 1024
local LUAJIT = unistd.readlink("/proc/self/exe") or "luajit"
local FW = require "e2e.front_watch"
local LOG_WAIT = FW.LOG_WAIT
local FORGED = "203.0.113.9"
local CLIENT = "127.0.0.3" -- the clients that are not Caddy (Caddy dials from 127.0.0.1)

-- The README's Caddyfile site block: the first ``` block after "Caddy (v2)"
-- in "## Behind nginx / Caddy / a CDN".
local function readme_caddy_block()
  local readme = E.read_file(E.dir .. "/../../README.md")
  local sec = readme:match("\n## Behind nginx / Caddy / a CDN\n(.-)\n## ")
  assert(sec, "README.md has no section Behind nginx / Caddy / a CDN")
  local block = sec:match("\nCaddy %(v2%).-\n```[%w]*\n(.-)```")
  assert(block, "README.md's section has no Caddy block")
  return block
end

-- That block for one site: `addr` for example.com, the upstream port for
-- 10000, `root` for /var/www/html, `extra` (test plumbing) inserted as the
-- block's first lines. Every README directive is kept as written.
local function caddy_site(block, addr, port, root, extra)
  local body = block:match("^example%.com {\n(.*)}%s*$")
  assert(body, "README.md's Caddy block is not one `example.com { ... }` site:\n" .. block)
  local n1, n2
  body, n1 = body:gsub("127%.0%.0%.1:10000", "127.0.0.1:" .. port)
  body, n2 = body:gsub("/var/www/html", root)
  assert(n1 == 1, "README.md's Caddy block does not proxy to 127.0.0.1:10000 once")
  assert(n2 == 1, "README.md's Caddy block has no root /var/www/html")
  assert(body:find("reverse_proxy", 1, true) and body:find("file_server", 1, true),
         "README.md's Caddy block: reverse_proxy and file_server expected")
  return ("%s {\n%s\n%s}\n"):format(addr, extra, body)
end

local access_lines = FW.access_lines

-- Caddy's JSON access log -> its entries (decoded).
local function caddy_entries(path)
  local out = {}
  for line in E.read_file(path):gmatch("[^\n]+") do
    local ok, t = pcall(cjson.decode, line)
    if ok and type(t) == "table" and type(t.request) == "table" then out[#out + 1] = t end
  end
  return out
end

-- A header of a decoded Caddy request (Go's canonical names) -> its values
-- joined with ", ", or nil.
local function req_header(e, name)
  local v = type(e.request.headers) == "table" and e.request.headers[name]
  if type(v) ~= "table" then return nil end
  return table.concat(v, ", ")
end

describe("Caddy (the README's Caddyfile) terminating TLS in front of a ws inbound", function()
  local h = E.new("caddy")
  local ID = E.uuid()
  local D                        -- the certificates' directory
  local CA                       -- the root the clients trust
  local echo, capture, srv, srv_port, caddy_port, cap_port, caddy_dir, www
  local caddy_log                -- Caddy's access log (JSON)
  local PAGE = "<html><body>caddy e2e page " .. E.uuid() .. "</body></html>\n"

  local function start_caddy()
    caddy_dir = h:path("caddy")
    www = caddy_dir .. "-www"
    for _, d in ipairs({ caddy_dir, www, h:path("caddy-home"), h:path("caddy-data"),
                         h:path("caddy-config") }) do
      assert(stat.mkdir(d, 448))
    end
    assert(h:write("caddy-www/index.html", PAGE))
    -- one JSON access log for both sites: a site's own `log` names its
    -- logger after the site's host:port, and a request whose Host has no
    -- port (v2ray's "example.test") is logged by the plain http.log.access
    caddy_log = caddy_dir .. "/access.log"
    local block = readme_caddy_block()
    local plumbing = ([[
    bind 127.0.0.1
    tls %s/example.pem %s/example.key
    log]]):format(D, D)
    local conf = h:write("caddy/Caddyfile", ([[
{
    admin off
    auto_https off
    storage file_system %s
    servers {
        protocols h1 h2
    }
    log access {
        output file %s
        format json
        include http.log.access
    }
}

%s
%s]]):format(h:path("caddy-data"), caddy_log,
      caddy_site(block, "https://example.test:" .. caddy_port, srv_port, www, plumbing),
      caddy_site(block, "https://example.test:" .. cap_port, capture.port, www, plumbing)))
    return h:spawn("caddy", { "/usr/bin/caddy", "run", "--config", conf, "--adapter", "caddyfile" },
                   { env = { HOME = h:path("caddy-home"), XDG_DATA_HOME = h:path("caddy-data"),
                             XDG_CONFIG_HOME = h:path("caddy-config") },
                     ports = { { "127.0.0.1", caddy_port }, { "127.0.0.1", cap_port } },
                     timeout = 30 })
  end

  -- the server's access lines and close-hook lines (e2e/front_watch.lua)
  local function new_access(a0, n) return FW.new(srv, "user1@e2e"):new_access(a0, n) end
  local function closes() return FW.new(srv, "user1@e2e"):closes() end
  local function new_closes(c0, n) return FW.new(srv, "user1@e2e"):new_closes(c0, n) end

  -- Every new access line names `src` (an IP, port 0: from the header) as
  -- the client, at least `n` of them the user's (echo, source, sink by
  -- default), none names the forged address; the close hook saw ctx.src
  -- `src` port 0 and the TCP peer 127.0.0.1 (Caddy) on a ws connection.
  local function check_access(a0, c0, src, what, n)
    n = n or 3
    local every, lines = new_access(a0, n)
    local all = table.concat(every, "\n")
    assert.is_true(#lines >= n, ("%s: %d access lines of user1, wanted %d:\n%s"):format(
      what, #lines, n, all))
    local esc = src:gsub("%.", "%%.")
    for _, line in ipairs(every) do
      if line:find(" vmess%-in %- tcp %- %- up=0 down=0 ") then
        -- a connection that brought no HTTP request at all carries no
        -- header to believe: the harness's port probe of a bridge
        -- (ws_peer) whose upgrade Caddy dialled for and then dropped
        -- when the probe went away; its TCP peer is Caddy
        assert.is_truthy(line:find(" 127%.0%.0%.1:%d+ vmess%-in %- tcp %- %- up=0 down=0 " ..
                                   "dur=[%d.]+ eof before a request$"), what .. ": " .. line)
      else
        assert.is_truthy(line:find(" " .. esc .. ":0 vmess%-in "), what .. ": not from " .. src .. ": " .. line)
      end
    end
    for _, line in ipairs(lines) do
      assert.is_truthy(line:find(" " .. esc .. ":0 vmess%-in user1@e2e tcp 127%.0%.0%.1:%d+ "),
                       what .. ": not from " .. src .. ": " .. line)
    end
    assert.is_nil(all:find(FORGED, 1, true), what .. ": the forged address logged:\n" .. all)
    if n >= 3 then
      local dsts = {}
      for _, line in ipairs(lines) do
        dsts[tonumber(line:match(" tcp 127%.0%.0%.1:(%d+) "))] = true
      end
      assert.is_true(dsts[echo.port] and dsts[echo.source_port] and dsts[echo.sink_port] or false,
                     what .. ": access lines for echo, source and sink:\n" .. all)
    end
    local cl = new_closes(c0, n)
    assert.is_true(#cl >= n, what .. ": close hook lines:\n" .. table.concat(cl, "\n"))
    for _, line in ipairs(cl) do
      assert.is_truthy(line:find("^" .. esc .. " 0 127%.0%.0%.1 %d+ ws$"),
                       what .. ": ctx.src / ctx.peer: " .. line)
    end
    return lines
  end

  -- Caddy's access entries for /ray* upgrades after the first e0 -> the
  -- list, waiting until there are n (Caddy writes one when the request,
  -- i.e. the WebSocket, ends).
  local function caddy_ray(path, e0, n)
    local deadline = E.now() + LOG_WAIT
    local out
    for _ = 1, 100000 do
      out = {}
      local all = caddy_entries(path)
      for i = e0 + 1, #all do
        if all[i].request.uri:sub(1, 4) == "/ray" then out[#out + 1] = all[i] end
      end
      if #out >= n or E.now() >= deadline then break end
      E.sleep(0.05)
    end
    return out
  end

  local function dump(entries)
    local t = {}
    for i, e in ipairs(entries) do t[i] = cjson.encode(e) end
    return table.concat(t, "\n")
  end

  -- A v2ray 4.34 client config: VMess over ws + tls to Caddy, verifying
  -- the test CA, from CLIENT; extra ws request headers.
  local function v2ray_wss(socks, headers)
    local cfg = E.v2ray_client_config { socks_port = socks, server_port = caddy_port, id = ID }
    local hd = { Host = "example.test" }
    for k, v in pairs(headers or {}) do hd[k] = v end
    cfg.outbounds[1].sendThrough = CLIENT
    cfg.outbounds[1].streamSettings = {
      network = "ws", security = "tls",
      tlsSettings = { serverName = "example.test", allowInsecure = false,
                      certificates = { { usage = "verify", certificateFile = CA } } },
      wsSettings = { path = "/ray", headers = hd } }
    return cfg
  end

  -- Python's TLS to Caddy (verifying example.test) as a plain TCP port.
  local function tls_forward()
    local port = E.free_port()
    local p = h:spawn("tls-forward", { "python3", E.tools .. "/tls_forward.py",
      "--listen", tostring(port), "--to", "127.0.0.1:" .. caddy_port, "--sni", "example.test",
      "--ca", CA, "--alpn", "http/1.1", "--lifetime", "600" },
      { ports = { { "127.0.0.1", port } }, timeout = 15 })
    return p, port
  end

  -- The independent WebSocket peer as a client bridge (plain TCP in from a
  -- v2ray VMess client, WebSocket out to `to`) -> its port, its stats file.
  local function ws_peer_client(to, args)
    local port = E.free_port()
    local stats = h:path(("ws-peer-%d.stats"):format(port))
    local argv = { LUAJIT, E.tools .. "/ws_peer.lua", "--role", "client", "--listen", tostring(port),
                   "--to", to, "--path", "/ray", "--host", "example.test", "--lifetime", "600",
                   "--stats", stats }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    h:spawn("ws-peer", argv, { ports = { { "127.0.0.1", port } } })
    return port, stats
  end

  lazy_setup(h:guard(function()
    D = h:test_pki({ { "example", { "example.test" } } }, "caddy")
    CA = D .. "/ca.pem"
    local code, v = h:exec("caddy-version", { "/usr/bin/caddy", "version" },
                           { env = { HOME = h:path("caddy-version-home") } })
    assert(code == 0 and v:find("^v?2%.%d"), "caddy version: " .. tostring(v))
    echo = h:echo_server()
    capture = h:capture_server()
    srv_port, caddy_port, cap_port = E.free_port(), E.free_port(), E.free_port()
    -- the README's inbound (ws, max_early_data 2048, trusting 127.0.0.1/32);
    -- a close hook prints ctx.src and ctx.peer (the TCP peer) of every
    -- connection on stdout (srv.out)
    local text, o = E.luaray_server_script {
      port = srv_port, users = { { id = ID } }, log_level = "debug", access = true,
      transport = { type = "ws", path = "/ray", max_early_data = 2048 },
      trusted_proxies = { "127.0.0.1/32" },
      extra = [[
luaray.on("close", function(ctx, s)
  print(table.concat({ "OBS", "close", tostring(ctx.inbound), ctx.user and ctx.user.email or "-",
    ctx.src.ip, tostring(ctx.src.port), ctx.peer.ip, tostring(ctx.peer.port),
    tostring(ctx.transport) }, "\t"))
end)]] }
    srv = h:luaray_obs("luaray-server", text, o)
    start_caddy()
  end))
  lazy_teardown(function() h:cleanup() end)

  it("v2ray 4.34 (ws + tls, from 127.0.0.3) -> Caddy (TLS) -> luaray: 1 MiB both ways, " ..
     "1 MiB down, 1 MiB up; the access log shows the client 127.0.0.3, the TCP peer is Caddy",
    h:guard(function()
      local a0, c0, e0 = #access_lines(E.read_file(srv.log)), #closes(), #caddy_entries(caddy_log)
      local socks = E.free_port()
      local c = h:v2ray("v2ray-wss-client", v2ray_wss(socks))
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
      assert.is_true(ok, err)
      h:stop(c)
      check_access(a0, c0, CLIENT, "v2ray")
      -- and Caddy spoke TLS 1.3 for example.test to 127.0.0.3 and upgraded
      local ray = caddy_ray(caddy_log, e0, 3)
      assert.is_true(#ray >= 3, "Caddy's access log:\n" .. dump(ray))
      for _, e in ipairs(ray) do
        local r = e.request
        assert.are.equal(CLIENT, r.remote_ip, dump({ e }))
        assert.are.equal("example.test", r.tls and r.tls.server_name, dump({ e }))
        assert.are.equal(0x0304, r.tls and r.tls.version, dump({ e }))
        assert.are.equal("GET", r.method)
        assert.are.equal("/ray", r.uri)
        -- a hijacked (upgraded) request is logged with status 0 by Caddy
        -- 2.6: the 101's headers show the upgrade
        local rh = e.resp_headers or {}
        assert.are.same({ "websocket" }, rh.Upgrade, dump({ e }))
        assert.are.equal(1, rh["Sec-Websocket-Accept"] and #rh["Sec-Websocket-Accept"], dump({ e }))
      end
    end))

  it("a luaray client (tls + ws, the README's path /ray?ed=2048) -> Caddy -> luaray: 1 MiB " ..
     "both ways, 1 MiB down, 1 MiB up; early data through Caddy; src from the header, peer Caddy",
    h:guard(function()
      local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
      local ed0 = E.count_matches(E.read_file(srv.log), "ws upgrade [^\n]*, [1-9]%d* bytes of early data")
      local socks = E.free_port()
      local cli = h:luaray("luaray-wss-client", E.luaray_client_script {
        socks_port = socks, server_port = caddy_port, id = ID, log_level = "debug",
        tls = { server_name = "example.test", ca = CA, alpn = { "http/1.1" } },
        transport = { type = "ws", path = "/ray?ed=2048", host = "example.test" } })
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
      assert.is_true(ok, err)
      assert.is_truthy(E.wait_log(cli, "tls to upstream: TLSv1%.[23] alpn=http/1%.1"))
      h:stop_luaray(cli)
      -- the luaray client cannot choose its source address: it is 127.0.0.1,
      -- like Caddy; port 0 shows it came from X-Forwarded-For
      check_access(a0, c0, "127.0.0.1", "luaray client")
      -- the early data (Sec-WebSocket-Protocol) went through Caddy and was taken
      local log = E.read_file(srv.log)
      assert.is_true(E.count_matches(log, "ws upgrade [^\n]*, [1-9]%d* bytes of early data") >= ed0 + 3,
                     "early data through Caddy")
      assert.is_nil(E.read_file(cli.log):find("early data not taken", 1, true))
    end))

  it("v2fly's early data in the path (/ray<base64url>, ws_peer over Python's TLS) -> Caddy " ..
     "-> luaray: 1 MiB both ways", h:guard(function()
      local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
      local fwd, fwd_port = tls_forward()
      local peer_port, stats = ws_peer_client("127.0.0.1:" .. fwd_port, { "--ed", "path" })
      local socks = E.free_port()
      local c = h:v2ray("v2ray-client", E.v2ray_client_config {
        socks_port = socks, server_port = peer_port, id = ID })
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB,
                                        { timeout = 30, steps = { echo = true } })
      assert.is_true(ok, err)
      h:stop(c)
      check_access(a0, c0, "127.0.0.1", "path early data", 1)
      assert.is_truthy(E.wait_log(srv, "ws upgrade [^\n]*, [1-9]%d* bytes of early data"))
      local st = E.read_file(stats)
      assert.is_truthy(st:find("early_data=[1-9]"), st)
      h:stop(fwd)
    end))

  it("v2ray (from 127.0.0.3) forging X-Forwarded-For / X-Real-IP through Caddy: luaray " ..
     "logs 127.0.0.3, never the forged address", h:guard(function()
      local a0, c0, e0 = #access_lines(E.read_file(srv.log)), #closes(), #caddy_entries(caddy_log)
      local socks = E.free_port()
      local c = h:v2ray("v2ray-forging-client", v2ray_wss(socks, {
        ["X-Forwarded-For"] = FORGED, ["X-Real-IP"] = FORGED }))
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
      assert.is_true(ok, err)
      h:stop(c)
      check_access(a0, c0, CLIENT, "v2ray forging")
      assert.is_nil(E.read_file(srv.log):find(FORGED, 1, true), "the forged address in luaray's log")
      -- the forged headers did reach Caddy
      local ray = caddy_ray(caddy_log, e0, 3)
      assert.is_true(#ray >= 3, "Caddy's access log:\n" .. dump(ray))
      for _, e in ipairs(ray) do
        assert.are.equal(FORGED, req_header(e, "X-Forwarded-For"), dump({ e }))
        assert.are.equal(FORGED, req_header(e, "X-Real-Ip"), dump({ e }))
      end
    end))

  it("ws_peer forging X-Forwarded-For / X-Real-IP through Python's TLS and Caddy: luaray " ..
     "logs the address Caddy saw (127.0.0.1), never the forged one", h:guard(function()
      local a0, c0 = #access_lines(E.read_file(srv.log)), #closes()
      local fwd, fwd_port = tls_forward()
      local peer_port = ws_peer_client("127.0.0.1:" .. fwd_port, {
        "--header", "X-Forwarded-For: " .. FORGED, "--header", "X-Real-IP: " .. FORGED })
      local socks = E.free_port()
      local c = h:v2ray("v2ray-client", E.v2ray_client_config {
        socks_port = socks, server_port = peer_port, id = ID })
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
      assert.is_true(ok, err)
      h:stop(c)
      check_access(a0, c0, "127.0.0.1", "ws_peer forging")
      assert.is_nil(E.read_file(srv.log):find(FORGED, 1, true), "the forged address in luaray's log")
      assert.is_truthy(E.read_file(fwd.log):find("tls connected version=TLSv1%.[23] alpn=http/1%.1 " ..
                                                 "cert_cn=example%.test"))
      h:stop(fwd)
    end))

  it("what Caddy sends upstream for a forged upgrade from 127.0.0.3: X-Forwarded-For and " ..
     "X-Real-IP name 127.0.0.3 only, the forged address nowhere", h:guard(function()
      local n0 = capture:count()
      local code, text = h:exec("curl-forged", { "curl", "-sS", "--http1.1", "--max-time", "5",
        "--interface", CLIENT, "--cacert", CA,
        "--resolve", ("example.test:%d:127.0.0.1"):format(cap_port),
        "-H", "Upgrade: websocket", "-H", "Connection: Upgrade",
        "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", "Sec-WebSocket-Version: 13",
        "-H", "X-Forwarded-For: " .. FORGED, "-H", "X-Real-IP: " .. FORGED,
        ("https://example.test:%d/ray?ed=2048"):format(cap_port) }, { timeout = 20 })
      -- the capture server never answers: curl gives up (28) or Caddy's 502
      assert.is_true(code ~= nil, text)
      local head = assert(capture:wait_bytes(n0 + 1, 20, 0.3, 10))
      head = head:match("^(.-\r\n\r\n)") or head
      assert.is_truthy(head:find("^GET /ray%?ed=2048 HTTP/1%.1\r\n"), head)
      assert.is_truthy(head:find("\r\nHost: example%.test:" .. cap_port .. "\r\n"), head)
      assert.is_nil(head:find(FORGED, 1, true), "the forged address went upstream:\n" .. head)
      local xff, xri = {}, {}
      for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        if name:lower() == "x-forwarded-for" then xff[#xff + 1] = value end
        if name:lower() == "x-real-ip" then xri[#xri + 1] = value end
      end
      assert.are.same({ CLIENT }, xff, head)
      assert.are.same({ CLIENT }, xri, head)
      assert.is_truthy(head:lower():find("\r\nupgrade: websocket\r\n", 1, true), head)
    end))

  it("curl --cacert over TLS to Caddy gets the site's page from the file_server root",
    h:guard(function()
      local out = h:path("curl.out")
      local code, text = h:exec("curl", { "curl", "-sS", "--max-time", "10", "--cacert", CA,
        "--resolve", ("example.test:%d:127.0.0.1"):format(caddy_port), "-o", out,
        "-w", "%{http_code} verify=%{ssl_verify_result}",
        ("https://example.test:%d/"):format(caddy_port) }, { timeout = 15 })
      assert.are.equal(0, code, text)
      assert.is_truthy(text:find("200 verify=0", 1, true), text)
      assert.are.equal(PAGE, E.read_file(out))
    end))
end)
