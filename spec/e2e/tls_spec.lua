-- TLS on its own (design.md 6; issue 12): VMess inside TLS, server and
-- client, against real peers: Debian's v2ray 4.34 both ways, luaray with
-- itself, curl and Python's ssl module (spec/e2e/tools/tls_probe.py) as TLS
-- clients that are not luaray's code. Certificates are made here with the
-- openssl command: a CA, leaves for localhost and example.test (with SAN),
-- a second CA that signed nothing of ours, a self-signed leaf to pin.
--
--   * v2ray 4.34 client -> luaray server, luaray client -> v2ray 4.34
--     server, luaray <-> luaray: 1 MiB both ways (aes-128-gcm), upload and
--     download checked.
--   * SNI picks the certificate (the client verifies the name it asked
--     for); an unknown or absent SNI gets the first; ALPN is the server's
--     preference among the client's, none when they share none.
--   * A client with a wrong ca, a wrong name or a wrong pin fails, and the
--     access line says which; the right pin reaches a self-signed server.
--   * Fallback: curl --cacert to the TLS port gets the fallback web
--     server's page; an unknown SNI or an ALPN list without ours goes there
--     too, whatever the client sends after the handshake.
--   * Reload: a SIGHUP with new certificate files serves them to new
--     connections; a broken file fails the reload and the old one is still
--     served.  Resumption: a second connection resumes (Python's client,
--     and luaray's own client by its debug log), also across a reload.
--   * Probes through TLS: bad VMess inside TLS is drained silently to the
--     handshake deadline, then close_notify and FIN, like bare TCP.
--   * Idle memory: 1,000 VMess-over-TLS connections held, RSS delta / count
--     on the server (today ~20 KB; bounded at 24 KiB, see the test).
local E = require "e2e.support"
local cjson = require "cjson"
local socket = require "socket"

local MiB = 1024 * 1024
local HT = 2          -- the probed inbound's handshake_timeout, seconds

describe("TLS", function()
  local h = E.new("tls")
  local echo, http
  local ID = E.uuid()
  local D                      -- the temp dir
  local pin_self, pin_other    -- SHA-256 of the self-signed leaf / of the localhost leaf

  local function sh(name, cmd) return h:shell(name, D, cmd) end
  local function leaf(file, ca, names) return h:test_leaf(file, ca, names) end

  local function pin_of(file)
    local out = sh("pin-" .. file, "openssl x509 -in " .. file .. " -outform DER | openssl dgst -sha256 -r")
    return assert(out:match("^(%x+)"))
  end

  -- Python's TLS client: one connection per payload at once -> results
  -- (see tools/tls_probe.py).
  local nprobe = 0
  local function tls_probe(port, payloads, opts)
    opts = opts or {}
    nprobe = nprobe + 1
    local hex = {}
    for i, p in ipairs(payloads) do hex[i] = (p:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
    local pf = h:write(("probe%d.json"):format(nprobe), cjson.encode(hex))
    local argv = { "python3", E.tools .. "/tls_probe.py", "127.0.0.1", tostring(port),
                   tostring(opts.max_wait or 3), pf }
    for _, k in ipairs { "sni", "alpn", "ca", "before" } do
      if opts[k] then argv[#argv + 1] = "--" .. k; argv[#argv + 1] = opts[k] end
    end
    if opts.resume then argv[#argv + 1] = "--resume" end
    local code, out = h:exec("tls-probe", argv, { timeout = (opts.max_wait or 3) + 25 })
    assert(code == 0, "tls_probe: " .. tostring(out))
    local line = out:match("(%[.-%])%s*$")
    return cjson.decode((assert(line, "tls_probe output: " .. out)))
  end

  local function one(port, opts) return tls_probe(port, { "" }, opts)[1] end

  -- A VMess server over TLS.
  local function tls_server(name, o)
    local port = E.free_port()
    local text, so = E.luaray_server_script {
      port = port, users = { { id = ID } }, log_level = o.log_level or "debug",
      handshake_timeout = o.handshake_timeout, tls = o.tls, fallback = o.fallback }
    local p = h:luaray(name, text, so)
    return p, port
  end

  -- A luaray SOCKS5 client whose VMess outbound goes over TLS.
  local function tls_client(name, server_port, tls, o)
    o = o or {}
    local socks = E.free_port()
    local text, co = E.luaray_client_script {
      socks_port = socks, server_port = server_port, id = ID, security = "aes-128-gcm",
      tls = tls, log_level = o.log_level or "debug" }
    return h:luaray(name, text, co), socks
  end

  lazy_setup(h:guard(function()
    -- leaves are signed by an intermediate; a chain file is the leaf and
    -- the intermediate (a "fullchain.pem"), the root is the clients' CA
    D = h:test_pki({ { "localhost", { "localhost" } },
                     { "example", { "example.test", "*.example.test" } } }, "tls")
    sh("other-ca", [[openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -days 3 -subj "/CN=luaray e2e other-ca" -keyout other-ca.key -out other-ca.pem 2>/dev/null]])
    sh("self-signed", [[openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
      -subj "/CN=pinned.test" -addext subjectAltName=DNS:pinned.test \
      -keyout self.key -out self.pem 2>/dev/null]])
    pin_self = pin_of("self.pem")
    pin_other = pin_of("localhost.crt")
    echo = h:echo_server()
    http = h:http_server()
  end))

  lazy_teardown(function() h:cleanup() end)

  local function certs()
    return { certs = { { cert = D .. "/localhost.pem", key = D .. "/localhost.key" },
                       { cert = D .. "/example.pem", key = D .. "/example.key" } } }
  end

  it("v2ray 4.34 client -> luaray server over TLS: 1 MiB each way", h:guard(function()
    local srv, port = tls_server("srv-v2ray-in", { tls = certs() })
    local socks = E.free_port()
    local cfg = E.v2ray_client_config { socks_port = socks, server_port = port, id = ID,
                                        security = "aes-128-gcm" }
    cfg.outbounds[1].streamSettings = {
      network = "tcp", security = "tls",
      tlsSettings = { serverName = "example.test", allowInsecure = false,
                      certificates = { { usage = "verify", certificateFile = D .. "/ca.pem" } } } }
    h:v2ray("v2ray-tls-client", cfg)
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert.is_true(ok, err)
    -- v2ray asked for example.test and verified it: the second certificate
    assert.truthy(E.wait_log(srv, "tls TLSv1%.3 sni=example%.test alpn=h2"))
  end))

  it("luaray client -> v2ray 4.34 server over TLS: 1 MiB each way", h:guard(function()
    local port = E.free_port()
    local cfg = E.v2ray_server_config { port = port, users = { { id = ID } } }
    cfg.inbounds[1].streamSettings = {
      network = "tcp", security = "tls",
      tlsSettings = { alpn = { "h2", "http/1.1" },
                      certificates = { { certificateFile = D .. "/localhost.pem",
                                         keyFile = D .. "/localhost.key" } } } }
    h:v2ray("v2ray-tls-server", cfg)
    local cli, socks = tls_client("cli-v2ray-out", port, { server_name = "localhost", ca = D .. "/ca.pem",
                                                           alpn = { "http/1.1" } })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert.is_true(ok, err)
    assert.truthy(E.wait_log(cli, "tls to upstream: TLSv1%.3 alpn=http/1%.1"))
  end))

  it("luaray <-> luaray over TLS: 1 MiB each way; the second connection resumes", h:guard(function()
    local srv, port = tls_server("srv-pair", { tls = certs() })
    local cli, socks = tls_client("cli-pair", port, { server_name = "example.test", ca = D .. "/ca.pem",
                                                      alpn = { "http/1.1", "h2" } })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert.is_true(ok, err)
    -- three connections (echo, source, sink): the first is a full
    -- handshake, the later ones resume the session it left
    assert.truthy(E.wait_log(cli, "tls to upstream: TLSv1%.3 alpn=h2 resumed", 2))
    assert.truthy(E.wait_log(srv, "sni=example%.test alpn=h2 resumed", 2))
    local text = E.read_file(cli.log)
    assert.equal(1, E.count_matches(text, "tls to upstream: TLSv1%.3 alpn=h2\n"), text)
  end))

  -- RFC 8446 C.4: a client should not offer a ticket twice (a reused one
  -- links the connections carrying it for anyone watching, a tell for a
  -- proxy). tools/tls_hello_tap.py, between client and server, reads the
  -- PSK identities of every ClientHello (written from RFC 8446).
  it("the client offers each session ticket once, and resumes bursts of connections", h:guard(function()
    local srv, port = tls_server("srv-tickets", { tls = certs() })
    local tap_port = E.free_port()
    local tap_log = h:path("tap.log")
    h:spawn("tls-tap", { "python3", E.tools .. "/tls_hello_tap.py", tostring(tap_port), "127.0.0.1",
                         tostring(port), tap_log }, { ports = { { "127.0.0.1", tap_port } } })
    local cli, socks = tls_client("cli-tickets", tap_port, { server_name = "example.test",
                                                             ca = D .. "/ca.pem" })
    -- one connection first (its handshake brings tickets), then 3 bursts
    -- of 20 at once: each SOCKS5 greeting and request sent before any reply
    -- is read, so the client dials all 20 in the same moment
    -- (to the echo server, whose connections our side ends, with a FIN
    -- and then with a reset; then to the source, which ends its own
    -- first: a ticket must survive every end)
    local function burst(n, port, rst)
      local req = "\5\1\0" .. "\5\1\0\1\127\0\0\1" .. string.char(math.floor(port / 256), port % 256)
      local list = {}
      for i = 1, n do
        list[i] = assert(E.tcp_connect("127.0.0.1", socks, 5))
        assert(list[i]:send(req))
      end
      for i = 1, n do
        list[i]:settimeout(10)
        local r, err = list[i]:receive(12)
        assert.is_truthy(r, err)
        assert.equal("\5\0\5\0", r:sub(1, 4))
      end
      if port == echo.port then
        local ok, err = E.transfer_echo_many(list, 4096, { timeout = 30, close = false })
        assert.is_true(ok, err)
        for _, sk in ipairs(list) do
          if rst then sk:setoption("linger", { on = true, timeout = 0 }) end
          sk:close()
        end
      else
        for i, sk in ipairs(list) do
          local ok, err = E.source_read(sk, 4096, { seed = i })
          assert.is_true(ok, err)
        end
      end
    end
    burst(1, echo.port)
    for _ = 1, 3 do burst(20, echo.port) end
    for _ = 1, 3 do burst(20, echo.port, true) end
    for _ = 1, 3 do burst(20, echo.source_port) end
    local hellos, seen, offered, repeats = 0, {}, 0, {}
    local deadline = E.now() + 10
    repeat
      hellos, seen, offered, repeats = 0, {}, 0, {}
      for line in E.read_file(tap_log):gmatch("[^\n]+") do
        local n, ids = line:match("^hello psk=(%d+) ids=(%S+)")
        if n then
          hellos = hellos + 1
          for id in ids:gmatch("[^,]+") do
            if id ~= "-" then
              offered = offered + 1
              if seen[id] then repeats[#repeats + 1] = id end
              seen[id] = true
            end
          end
        end
      end
      if hellos >= 181 then break end
      E.sleep(0.1)
    until E.now() > deadline
    assert.equal(181, hellos, "ClientHellos through the tap")
    assert.equal(0, #repeats, "tickets offered twice: " .. table.concat(repeats, " "))
    -- the first connection's two tickets, then two from each full
    -- handshake and one from each resumed one: from the second burst on,
    -- every connection resumes (2 + 18 fresh, then 8 x 20)
    assert.is_true(offered >= 160, ("only %d of 181 ClientHellos offered a ticket"):format(offered))
    local resumed = E.count_matches(E.read_file(srv.log), "tls TLSv1%.3 sni=example%.test alpn=%S* ?resumed")
    assert.equal(offered, resumed, "every ticket offered resumed on the server")
    assert.is_true(h:alive(cli))
  end))

  it("SNI picks the certificate; ALPN is the server's preference, or none", h:guard(function()
    local _, port = tls_server("srv-sni", { tls = certs() })
    local ca = D .. "/ca.pem"
    local r = one(port, { sni = "example.test", ca = ca, alpn = "http/1.1,h2" })
    assert.is_true(r.handshake, r.error)
    assert.same({ "example.test", "*.example.test" }, r.names)
    assert.equal("h2", r.alpn)  -- ours first: h2, though the client put http/1.1 first
    r = one(port, { sni = "www.example.test", ca = ca })
    assert.same({ "example.test", "*.example.test" }, r.names)
    r = one(port, { sni = "localhost", ca = ca, alpn = "http/1.1" })
    assert.same({ "localhost" }, r.names)
    assert.equal("http/1.1", r.alpn)
    -- an SNI none of ours names, and none at all: the first certificate
    r = one(port, { sni = "unknown.test", ca = ca })
    assert.same({ "localhost" }, r.names)
    r = one(port, { ca = ca, alpn = "spdy/3,acme-tls/1" })
    assert.same({ "localhost" }, r.names)
    assert.equal("", r.alpn)    -- no overlap: the handshake completes without ALPN
    assert.equal("TLSv1.3", r.version)
    -- configured ALPN
    local _, port2 = tls_server("srv-alpn", { tls = { cert = D .. "/localhost.pem", key = D .. "/localhost.key",
                                                      alpn = { "http/1.1" } } })
    r = one(port2, { sni = "localhost", ca = ca, alpn = "h2,http/1.1" })
    assert.equal("http/1.1", r.alpn)
  end))

  it("a client with a wrong ca, name or pin fails and says why; the right pin works", h:guard(function()
    local _, port = tls_server("srv-verify", { tls = certs() })
    local _, pport = tls_server("srv-pinned", { tls = { cert = D .. "/self.pem", key = D .. "/self.key" } })
    local cases = {
      { "wrong-ca", port, { server_name = "localhost", ca = D .. "/other-ca.pem" },
        "tls: server certificate not trusted: unable to get local issuer certificate" },
      { "no-ca", port, { server_name = "localhost" },
        "tls: server certificate not trusted: unable to get local issuer certificate" },
      { "wrong-name", port, { server_name = "wrong.test", ca = D .. "/ca.pem" },
        "tls: server certificate is not for wrong.test" },
      { "wrong-pin", port, { server_name = "localhost", pinned_sha256 = pin_self },
        "tls: server certificate does not match pinned_sha256" },
      { "self-signed-unpinned", pport, { server_name = "pinned.test" },
        "tls: server certificate not trusted: self%-signed certificate" },
      { "pin-other-leaf", pport, { server_name = "pinned.test", pinned_sha256 = pin_other },
        "tls: server certificate does not match pinned_sha256" },
    }
    for _, cs in ipairs(cases) do
      local cli, socks = tls_client("cli-" .. cs[1], cs[2], cs[3])
      local s = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10)
      if s then s:close() end
      assert.is_nil(s, cs[1] .. ": the connection went through")
      local text = assert(E.wait_log(cli, "transport handshake failed: server 127%.0%.0%.1:%d+ %(upstream%): " ..
                                          cs[4]))
      assert.truthy(text)
      h:stop_luaray(cli)
    end
    -- the right pin reaches the self-signed server (no CA, any name)
    local _, socks = tls_client("cli-pinned", pport, { server_name = "pinned.test", pinned_sha256 = pin_self })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, 64 * 1024, { steps = { echo = true } })
    assert.is_true(ok, err)
  end))

  it("fallback: curl --cacert gets the web server's page; so do an unknown SNI and foreign ALPN", h:guard(function()
    local srv, port = tls_server("srv-fallback", {
      tls = { cert = D .. "/localhost.pem", key = D .. "/localhost.key", alpn = { "http/1.1" } },
      fallback = "127.0.0.1:" .. http.port })
    local function curl(name, args)
      local argv = { "curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      local code, out = h:exec("curl-" .. name, argv, { timeout = 15 })
      return code, out
    end
    local url = ("https://localhost:%d/data/100/5"):format(port)
    local code, out = curl("ok", { "--cacert", D .. "/ca.pem", url })
    assert.equal(0, code, out)
    assert.equal(E.pattern(100, 5) .. "\n200", out)
    -- an SNI none of our certificates names (curl -k: it gets the default one)
    code, out = curl("sni", { "-k", "--resolve", "unknown.test:" .. port .. ":127.0.0.1",
                              ("https://unknown.test:%d/data/10/6"):format(port) })
    assert.equal(0, code, out)
    assert.equal(E.pattern(10, 6) .. "\n200", out)
    -- a client offering only h2 (ours is http/1.1): not ours, to the
    -- fallback, whatever it sends (here an HTTP/1.1 request)
    local res = tls_probe(port, { "GET /data/7/8 HTTP/1.1\r\nHost: localhost\r\n\r\n" },
                          { sni = "localhost", alpn = "h2", max_wait = 5 })
    assert.is_true(res[1].handshake, res[1].error)
    assert.equal("", res[1].alpn)
    assert.truthy(res[1].received > 7, "no answer from the fallback")
    assert.truthy(E.wait_log(srv, "to the fallback: tls", 2))
    local text = E.read_file(srv.log)
    assert.truthy(text:find("alpn=- (none of ours offered)", 1, true), text)
    assert.truthy(E.read_file(http.log):find("GET /data/7/8 host=localhost", 1, true))
    -- and a VMess client is not served there: it is no client of ours
    -- without ALPN in common (luaray's client offering h2 only)
    local cli, socks = tls_client("cli-fallback-alpn", port, { server_name = "localhost", ca = D .. "/ca.pem",
                                                               alpn = { "h2" } })
    local s = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10)
    if s then
      local ok = E.transfer_echo(s, 1000, { timeout = 3 })
      assert.is_false(ok, "a VMess client with foreign ALPN was served")
    end
    assert.truthy(E.wait_log(cli, "tls to upstream: TLSv1%.3 alpn=-"))
  end))

  -- TLS 1.3 KeyUpdate (RFC 8446 4.6.3) from the peer, asking for ours in
  -- return: openssl s_client's "K" command, twice, through the relay (a
  -- fallback to the echo server); the bytes after each come back, so our
  -- side read the peer's new keys and answered with its own.
  it("a peer's KeyUpdate (update requested) mid-relay: the bytes after it go through both ways", h:guard(function()
    local _, port = tls_server("srv-keyupdate", {
      tls = { cert = D .. "/localhost.pem", key = D .. "/localhost.key" },
      fallback = "127.0.0.1:" .. echo.port })
    local script = ([[(echo before-any-keyupdate; sleep 0.5; echo K; sleep 0.5; echo after-the-first;
      sleep 0.5; echo K; sleep 0.5; echo after-the-second; sleep 1.5) |
      openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s/ca.pem -verify_return_error 2>&1]])
      :format(port, D)
    local code, out = h:exec("s_client-keyupdate", { "sh", "-c", script }, { timeout = 20 })
    assert.equal(0, code, out)
    assert.truthy(out:find("Verify return code: 0", 1, true), out)
    assert.equal(2, E.count_matches(out, "KEYUPDATE", true), out)
    for _, line in ipairs { "before-any-keyupdate", "after-the-first", "after-the-second" } do
      assert.truthy(out:find("\n" .. line .. "\n", 1, true), line .. " did not come back:\n" .. out)
    end
  end))

  -- Our own KeyUpdate (RFC 8446 4.6.3, 5.5): a TLS 1.3 sender updates its
  -- keys every LURAY_TLS_REKEY_BYTES (default 2^36); here every 256 KiB,
  -- so 1 MiB each way makes several, and the peers (luaray, and v2ray 4.34:
  -- Go's crypto/tls, both ways) must follow them for the bytes to arrive.
  it("our side updates its keys as it sends: luaray, and v2ray 4.34 both ways, follow", h:guard(function()
    local env = { LURAY_TLS_REKEY_BYTES = "262144" }
    local function server(name)
      local port = E.free_port()
      local text, so = E.luaray_server_script {
        port = port, users = { { id = ID } }, log_level = "debug",
        tls = { cert = D .. "/localhost.pem", key = D .. "/localhost.key" } }
      so.env = env
      return h:luaray(name, text, so), port
    end
    local function client(name, port)
      local socks = E.free_port()
      local text, co = E.luaray_client_script {
        socks_port = socks, server_port = port, id = ID, security = "aes-128-gcm", log_level = "debug",
        tls = { server_name = "localhost", ca = D .. "/ca.pem" } }
      co.env = env
      return h:luaray(name, text, co), socks
    end
    local function updates(p) return E.count_matches(E.read_file(p.log), "tls: key update %d+ after") end
    -- luaray <-> luaray
    local srv, port = server("srv-rekey")
    local cli, socks = client("cli-rekey", port)
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert.is_true(ok, err)
    assert.is_true(updates(srv) >= 3, "server: " .. updates(srv) .. " key updates")
    assert.is_true(updates(cli) >= 3, "client: " .. updates(cli) .. " key updates")
    -- v2ray 4.34 client -> luaray server
    local vsocks = E.free_port()
    local cfg = E.v2ray_client_config { socks_port = vsocks, server_port = port, id = ID,
                                        security = "aes-128-gcm" }
    cfg.outbounds[1].streamSettings = {
      network = "tcp", security = "tls",
      tlsSettings = { serverName = "localhost",
                      certificates = { { usage = "verify", certificateFile = D .. "/ca.pem" } } } }
    h:v2ray("v2ray-rekey-client", cfg)
    local before = updates(srv)
    ok, err = E.check_socks_tcp("127.0.0.1", vsocks, echo, MiB)
    assert.is_true(ok, err)
    assert.is_true(updates(srv) - before >= 3, "server to v2ray: " .. (updates(srv) - before) .. " key updates")
    -- luaray client -> v2ray 4.34 server
    local vport = E.free_port()
    local scfg = E.v2ray_server_config { port = vport, users = { { id = ID } } }
    scfg.inbounds[1].streamSettings = {
      network = "tcp", security = "tls",
      tlsSettings = { certificates = { { certificateFile = D .. "/localhost.pem",
                                         keyFile = D .. "/localhost.key" } } } }
    h:v2ray("v2ray-rekey-server", scfg)
    local cli2, socks2 = client("cli-rekey-v2ray", vport)
    ok, err = E.check_socks_tcp("127.0.0.1", socks2, echo, MiB)
    assert.is_true(ok, err)
    assert.is_true(updates(cli2) >= 3, "client to v2ray: " .. updates(cli2) .. " key updates")
  end))

  it("hooks see ctx.tls.sni; behind a PROXY-protocol sender TLS and the fallback still work", h:guard(function()
    local port = E.free_port()
    local text, so = E.luaray_server_script {
      port = port, users = { { id = ID } }, log_level = "debug", tls = certs(),
      extra = [[luaray.on("connect", function(ctx)
  print("OBS", "connect", ctx.tls and (ctx.tls.sni or "nil") or "no tls", ctx.transport)
end)]] }
    local srv = h:luaray_obs("srv-hooks", text, so)
    local _, socks = tls_client("cli-hooks", port, { server_name = "example.test", ca = D .. "/ca.pem" })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, 4096, { steps = { echo = true } })
    assert.is_true(ok, err)
    assert.truthy(E.wait_log({ log = srv.out, name = "srv-hooks stdout" }, "OBS\tconnect", 1))
    assert.same({ { "connect", "example.test", "tcp" } }, E.observations(E.read_file(srv.out), "connect"))
    -- PROXY header first (from a trusted peer), then TLS, then not VMess:
    -- the fallback answers, and the access line names the header's client
    local pport = E.free_port()
    local ptext, po = E.luaray_server_script {
      port = pport, users = { { id = ID } }, log_level = "debug", tls = certs(),
      proxy_protocol = true, trusted_proxies = { "127.0.0.1/32" },
      fallback = "127.0.0.1:" .. http.port }
    local psrv = h:luaray("srv-proxy-tls", ptext, po)
    local res = tls_probe(pport, { "GET /data/9/3 HTTP/1.1\r\nHost: localhost\r\n\r\n" }, {
      sni = "localhost", ca = D .. "/ca.pem", max_wait = 5,
      before = "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\\r\\n" })
    assert.is_true(res[1].handshake, res[1].error)
    assert.same({ "localhost" }, res[1].names)
    assert.truthy(res[1].received > 9, "no answer from the fallback")
    assert.truthy(E.wait_log(psrv, "203%.0%.113%.7:5555 vmess%-in %- tcp 127%.0%.0%.1:%d+ fallback"))
  end))

  it("SIGHUP serves new certificate files; a broken one keeps the old", h:guard(function()
    local cert, key = leaf("reload", "int", { "old.test" })
    local srv, port = tls_server("srv-reload", { tls = { cert = cert, key = key } })
    local ca = D .. "/ca.pem"
    local r = one(port, { sni = "old.test", ca = ca })
    assert.same({ "old.test" }, r.names)
    -- a ticket from before the reload
    local res = tls_probe(port, { "" }, { sni = "old.test", ca = ca, resume = true })
    assert.is_true(res[1].resumed, "no resumption before the reload")
    -- new files at the same paths
    leaf("reload-new", "int", { "new.test" })
    sh("swap", "cp reload-new.pem reload.pem; cp reload-new.key reload.key")
    assert(require("posix.signal").kill(srv.pid, require("posix.signal").SIGHUP) == 0)
    assert.truthy(E.wait_log(srv, "reload: generation 2 serving"))
    r = one(port, { sni = "new.test", ca = ca })
    assert.same({ "new.test" }, r.names)
    -- tickets outlive a reload (keys per process)
    res = tls_probe(port, { "" }, { sni = "new.test", ca = ca, resume = true })
    assert.is_true(res[1].resumed, "no resumption after the reload")
    -- a broken certificate, then a key that does not match: both refused
    sh("break", "printf 'not a certificate\\n' > reload.pem")
    assert(require("posix.signal").kill(srv.pid, require("posix.signal").SIGHUP) == 0)
    assert.truthy(E.wait_log(srv, "reload failed, keeping generation 2: .*srv%-reload%.lua:%d+: " ..
                                  "inbound 'vmess%-in': cannot load certificate '[^']*reload%.pem': no start line"))
    sh("mismatch", "cp reload-new.pem reload.pem; cp example.key reload.key")
    assert(require("posix.signal").kill(srv.pid, require("posix.signal").SIGHUP) == 0)
    assert.truthy(E.wait_log(srv, "reload failed, keeping generation 2: .*key '[^']*reload%.key' does not match"))
    r = one(port, { sni = "new.test", ca = ca })
    assert.is_true(r.handshake, r.error)
    assert.same({ "new.test" }, r.names)
    -- and -t refuses it too, with file:line
    local code, out = h:exec("check-mismatch", { E.luaray_bin(), "-t", "-c", h:path("srv-reload.lua") })
    assert.equal(1, code, out)
    assert.truthy(out:find("srv%-reload%.lua:%d+: inbound 'vmess%-in': key '[^']*' does not match"), out)
  end))

  it("bad VMess inside TLS: no answer, close_notify and FIN at the handshake timeout", h:guard(function()
    local srv, port = tls_server("srv-probe", { tls = certs(), handshake_timeout = HT })
    local f = assert(io.open("/dev/urandom", "rb"))
    local payloads, labels = {}, {}
    for _, n in ipairs { 0, 1, 16, 100, 1000, 5000 } do
      payloads[#payloads + 1] = n > 0 and f:read(n) or ""
      labels[#labels + 1] = ("%d random bytes in TLS"):format(n)
    end
    f:close()
    local res = tls_probe(port, payloads, { sni = "localhost", alpn = "h2,http/1.1", max_wait = HT + 4 })
    local bad = {}
    for i, r in ipairs(res) do
      if not r.handshake then bad[#bad + 1] = labels[i] .. ": no handshake: " .. tostring(r.error) end
      if r.received > 0 then bad[#bad + 1] = ("%s: %d bytes back"):format(labels[i], r.received) end
      if r.how ~= "close_notify" then
        bad[#bad + 1] = ("%s: ended by %s (expected close_notify at %d s)"):format(labels[i], r.how, HT)
      elseif r.closed_after < HT - 0.1 or r.closed_after > HT + 1 then
        bad[#bad + 1] = ("%s: closed after %.2f s (expected %d s)"):format(labels[i], r.closed_after, HT)
      end
    end
    assert.is_true(#bad == 0, table.concat(bad, "\n"))
    assert.truthy(h:alive(srv))
  end))

  it("1,000 idle VMess-over-TLS connections: RSS per connection on the server", h:guard(function()
    local N = 1000
    local srv, port = tls_server("srv-idle", { tls = certs(), log_level = "warn" })
    local _, socks = tls_client("cli-idle", port, { server_name = "localhost", ca = D .. "/ca.pem" },
                                { log_level = "warn" })
    -- the destination: a listener here that accepts and holds
    local lst = assert(socket.bind("127.0.0.1", 0, 2048))
    local _, dport = lst:getsockname()
    lst:settimeout(0)
    local held, accepted = {}, {}
    local function accept_all()
      for _ = 1, N do
        local a = lst:accept()
        if not a then break end
        accepted[#accepted + 1] = a
      end
    end
    local function open(n)
      for _ = 1, n do
        local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", dport, nil, nil, 10))
        assert(s:send("x"))
        held[#held + 1] = s
        accept_all()
      end
    end
    local function rss(pid)
      return tonumber(E.read_file(("/proc/%d/status"):format(pid)):match("VmRSS:%s+(%d+)"))
    end
    -- warm up (allocator arenas, buffer free lists), then measure N more
    open(50)
    E.sleep(0.5)
    local r0 = rss(srv.pid)
    local t0 = E.now()
    open(N)
    local deadline = E.now() + 30
    while #accepted < N + 50 and E.now() < deadline do accept_all(); E.sleep(0.05) end
    assert.equal(N + 50, #accepted, "connections that reached the destination")
    E.sleep(1)
    local r1 = rss(srv.pid)
    local per = (r1 - r0) * 1024 / N
    print(("idle TLS: %d connections in %.1f s; server RSS %d -> %d kB: %.0f B each"):format(
      N, E.now() - t0, r0, r1, per))
    -- measured on Debian 12 (OpenSSL 3.0): ~20 KB per proxied connection,
    -- ~6 KB of it luaray's own (the same figure as bare TCP) and ~14 KB
    -- OpenSSL's TLS 1.3 state with its buffers released (the SSL object
    -- alone is 7.6 KB). The design target is 16 KiB; this bound (24 KiB)
    -- is what holds today and catches a buffer kept per connection (a
    -- TLS record buffer alone is 16 KiB)
    if not os.getenv("LURAY_ASAN") then
      assert.is_true(per <= 24 * 1024, ("%.0f B per idle TLS connection"):format(per))
    end
    for _, s in ipairs(held) do s:close() end
    for _, s in ipairs(accepted) do s:close() end
    lst:close()
  end))
end)
