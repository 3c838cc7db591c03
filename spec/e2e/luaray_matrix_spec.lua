-- luaray client <-> luaray server (issue "The luaray daemon", cells 3, 4, 5
-- and the luaray <-> luaray part of 9):
--   every security x {masking+padding, masking only, neither} x
--   authenticated_length on/off x alter_id 0/4, 256 KiB per cell (the 1 MiB
--   cells are the v2ray ones in interop_spec.lua); IPv4, IPv6 and domain
--   destinations; the HTTP proxy inbound (CONNECT and absolute-URI
--   requests); SOCKS5 and HTTP accounts; UDP through SOCKS5 UDP ASSOCIATE.
local E = require "e2e.support"

local KiB, MiB = 1024, 1024 * 1024

describe("luaray client <-> luaray server", function()
  local h = E.new("luaray_matrix")
  local echo, http, srv, srv_port
  local ID0, ID4 = E.uuid(), E.uuid()

  lazy_setup(h:guard(function()
    echo = h:echo_server { ipv6 = E.has_ipv6() }
    http = h:http_server()
    srv_port = E.free_port()
    srv = h:luaray("luaray-server", E.luaray_server_script {
      port = srv_port, allow_legacy = true,   -- the alter_id 4 cells (default: AEAD only)
      users = { { id = ID0, alter_id = 0, email = "aead@e2e" },
                { id = ID4, alter_id = 4, email = "legacy@e2e" } } })
  end))

  lazy_teardown(function() h:cleanup() end)

  -- A luaray client towards the luaray server -> proc, socks port, http port.
  local function client(o)
    o = o or {}
    local socks, hp = E.free_port(), o.http and E.free_port() or nil
    local aid = o.alter_id or 0
    local text, opts = E.luaray_client_script {
      socks_port = socks, http_port = hp, server_port = srv_port, id = aid > 0 and ID4 or ID0,
      alter_id = aid, security = o.security or "aes-128-gcm", masking = o.masking,
      padding = o.padding, authenticated_length = o.authenticated_length,
      accounts = o.accounts, http_accounts = o.http_accounts }
    return h:luaray("luaray-client", text, opts), socks, hp
  end

  local function assert_alive(c)
    assert.is_true(h:alive(srv), "the luaray server died")
    if c then assert.is_true(h:alive(c), "the luaray client died") end
  end

  local securities = { "aes-128-gcm", "chacha20-poly1305", "none", "zero", "aes-128-cfb", "auto" }
  local body_opts = {
    { name = "masking+padding", masking = true, padding = true },
    { name = "masking, no padding", masking = true, padding = false },
    { name = "no masking, no padding", masking = false, padding = false },
  }

  for _, sec in ipairs(securities) do
    for _, bo in ipairs(body_opts) do
      for _, al in ipairs { false, true } do
        for _, aid in ipairs { 0, 4 } do
          local name = ("%s, %s, authenticated_length %s, alter_id %d (%s header)"):format(
            sec, bo.name, al and "on" or "off", aid, aid > 0 and "legacy" or "AEAD")
          it(name .. ": 256 KiB both ways with half-close, 256 KiB down, 256 KiB up", h:guard(function()
            local c, socks = client { security = sec, masking = bo.masking, padding = bo.padding,
                                      authenticated_length = al, alter_id = aid }
            local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, 256 * KiB, { half_close = true })
            assert.is_true(ok, err)
            assert_alive(c)
            h:stop_luaray(c)
          end))
        end
      end
    end
  end

  it("alter_id 4 really sends the legacy header: a server with allow_legacy = false refuses it",
    h:guard(function()
      local port = E.free_port()
      local strict = h:luaray("luaray-no-legacy", E.luaray_server_script {
        port = port, allow_legacy = false, handshake_timeout = 1,
        users = { { id = ID0, alter_id = 0 }, { id = ID4, alter_id = 4 } } })
      for _, aid in ipairs { 4, 0 } do
        local socks = E.free_port()
        local text, opts = E.luaray_client_script { socks_port = socks, server_port = port,
          id = aid > 0 and ID4 or ID0, alter_id = aid, security = "aes-128-gcm" }
        local c = h:luaray("luaray-client", text, opts)
        local s = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)
        local ok, err = false, "socks5 connect failed"
        if s then ok, err = E.transfer_echo(s, 4096, { timeout = 3 }) end
        if aid > 0 then
          assert.is_falsy(ok, "alter_id 4 went through a server refusing legacy headers")
        else
          assert.is_true(ok, "alter_id 0 (AEAD) through the allow_legacy = false server: " .. tostring(err))
        end
        h:stop_luaray(c)
      end
      assert.is_true(h:alive(strict), "the allow_legacy = false server died")
      h:stop_luaray(strict)
    end))

  it("a VMess server that closes without answering: the SOCKS5 client sees the close", h:guard(function()
    -- The server refuses the request (a legacy header to allow_legacy =
    -- false), says nothing and sends its FIN at its handshake timeout (1 s).
    -- No response can come after that, so the client must end the SOCKS5
    -- connection too (v2ray does: "failed to read response header > EOF"),
    -- not hold it until its idle timeout.
    local port = E.free_port()
    local strict = h:luaray("luaray-no-legacy", E.luaray_server_script {
      port = port, allow_legacy = false, handshake_timeout = 1, users = { { id = ID4, alter_id = 4 } } })
    local socks = E.free_port()
    local text, opts = E.luaray_client_script { socks_port = socks, server_port = port, id = ID4,
                                                alter_id = 4, security = "aes-128-gcm" }
    local c = h:luaray("luaray-client", text, opts)
    local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
    local t0 = E.now()
    assert(s:send("hello"))
    s:settimeout(0)
    local state
    for _ = 1, 100 do   -- up to 5 s
      if #require("socket").select({ s }, nil, 0.05) > 0 then
        local _, st = E.recv_nb(s)
        state = st
        if state then break end
      end
      if E.now() - t0 > 5 then break end
    end
    s:close()
    local after = E.now() - t0
    assert.truthy(state, ("the SOCKS5 connection was still open %.1f s after the request " ..
                          "(the server sent its FIN at 1 s)"):format(after))
    assert.is_true(after < 3, ("closed only after %.1f s"):format(after))
    assert_alive(c)
    h:stop_luaray(c)
    h:stop_luaray(strict)
  end))

  it("destinations: IPv4, a domain name (resolved by the server) and IPv6", h:guard(function()
    local c, socks = client { security = "chacha20-poly1305" }
    local dests = { "127.0.0.1", "localhost" }
    if E.has_ipv6() then dests[#dests + 1] = "::1" end
    for _, dst in ipairs(dests) do
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, 256 * KiB, { dst = dst, half_close = true })
      assert.is_true(ok, dst .. ": " .. tostring(err))
    end
    assert_alive(c)
    h:stop_luaray(c)
  end))

  it("20 concurrent connections, 64 KiB each", h:guard(function()
    local c, socks = client { security = "aes-128-gcm" }
    local ss = {}
    for i = 1, 20 do ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)) end
    local ok, info = E.transfer_echo_many(ss, 64 * KiB, { timeout = 15 })
    assert.is_true(ok, info)
    assert_alive(c)
    h:stop_luaray(c)
  end))

  describe("HTTP proxy inbound", function()
    local c, hp

    local function proxy()
      if not c then
        local proc, _, port = client { security = "aes-128-gcm", http = true }
        c, hp = proc, port
      end
      return assert(E.tcp_connect("127.0.0.1", hp))
    end

    local function data_path(n, seed) return ("/data/%d/%d"):format(n, seed) end
    local function requests() return E.read_file(http.log) end

    it("CONNECT tunnel to the echo server: 1 MiB both ways", h:guard(function()
      proxy():close()
      local s = assert(E.http_connect("127.0.0.1", hp, "127.0.0.1", echo.port))
      local ok, info = E.transfer_echo(s, MiB, { timeout = 15 })
      assert.is_true(ok, info)
      assert_alive(c)
    end))

    it("CONNECT tunnel to an HTTP server: GET of 1 MiB, body compared", h:guard(function()
      proxy():close()
      local s = assert(E.http_connect("127.0.0.1", hp, "127.0.0.1", http.port))
      local path = data_path(MiB, 31)
      local code, head, body = E.http_request(s, "GET", path, { headers = { "Host: 127.0.0.1:" .. http.port } })
      assert.equal(200, code, head)
      assert.equal(MiB, #body)
      assert.is_true(body == E.pattern(MiB, 31), "the body differs")
      assert_alive(c)
    end))

    it("plain absolute-URI GET: 1 MiB body compared, forwarded in origin form", h:guard(function()
      local s = proxy()
      local path = data_path(MiB, 32)
      local url = ("http://127.0.0.1:%d%s"):format(http.port, path)
      local code, head, body = E.http_request(s, "GET", url, {
        headers = { "Host: 127.0.0.1:" .. http.port, "Proxy-Connection: keep-alive" } })
      assert.equal(200, code, head)
      assert.equal(MiB, #body)
      assert.is_true(body == E.pattern(MiB, 32), "the body differs")
      -- the origin server saw the origin form (RFC 9112 3.2.1)
      assert.truthy(requests():find("GET " .. path .. " host=", 1, true), requests())
      assert_alive(c)
    end))

    it("plain absolute-URI POST of 1 MiB echoed back: 1 MiB both ways", h:guard(function()
      local s = proxy()
      local data = E.pattern(MiB, 33)
      local code, head, body = E.http_request(s, "POST", ("http://127.0.0.1:%d/echo"):format(http.port), {
        headers = { "Host: 127.0.0.1:" .. http.port }, body = data })
      assert.equal(200, code, head)
      assert.equal(MiB, #body)
      assert.is_true(body == data, "the echoed body differs")
      assert_alive(c)
    end))

    it("a request that is not a proxy request gets 400, the inbound keeps working", h:guard(function()
      local s = proxy()
      local code, head = E.http_request(s, "GET", "/data/10/1", { headers = { "Host: x" } })
      assert.equal(400, code, head)
      s = proxy()
      local code2, head2, body = E.http_request(s, "GET", ("http://127.0.0.1:%d%s"):format(http.port, data_path(1000, 5)),
        { headers = { "Host: 127.0.0.1" } })
      assert.equal(200, code2, head2)
      assert.equal(E.pattern(1000, 5), body)
      assert_alive(c)
    end))
  end)

  describe("accounts", function()
    local accounts = { { user = "alice", pass = "s3cret" }, { user = "bob", pass = "hunter2" } }

    it("SOCKS5 user/password: the right password works, wrong ones are refused", h:guard(function()
      local c, socks = client { security = "aes-128-gcm", accounts = accounts }
      for _, a in ipairs(accounts) do
        local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { user = a.user, pass = a.pass,
                                                                           half_close = true })
        assert.is_true(ok, a.user .. ": " .. tostring(err))
      end
      for _, bad in ipairs {
        { "alice", "wrong" }, { "alice", "hunter2" }, { "mallory", "s3cret" }, { "alice", "s3cre" },
        { "alice", "s3cret!" }, { "Alice", "s3cret" },
      } do
        local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, bad[1], bad[2])
        assert.is_nil(s, ("%s/%s was accepted"):format(bad[1], bad[2]))
        assert.truthy(tostring(err):find("socks5 auth: refused", 1, true), err)
      end
      -- a client offering only "no authentication" is refused at the greeting
      local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)
      assert.is_nil(s, "no-auth was accepted")
      assert.truthy(tostring(err):find("no acceptable method", 1, true), err)
      assert_alive(c)
      h:stop_luaray(c)
    end))

    it("SOCKS5 BIND, and UDP ASSOCIATE on an inbound with udp = false, get reply 7", h:guard(function()
      -- RFC 1928 section 6: the reply is sent, then the connection closes
      local socks = E.free_port()
      local text, opts = E.luaray_client_script { socks_port = socks, server_port = srv_port, id = ID0,
                                                  security = "aes-128-gcm", socks_udp = false }
      local c = h:luaray("luaray-client-noudp", text, opts)
      for _, cmd in ipairs { 2, 3 } do
        local s = assert(E.tcp_connect("127.0.0.1", socks))
        s:send("\5\1\0")
        assert.equal("\5\0", s:receive(2))
        s:send("\5" .. string.char(cmd) .. "\0\1\127\0\0\1\0\80")
        local r, err, partial = s:receive(10)
        s:close()
        r = r or partial or ""
        assert.is_true(#r >= 2 and r:byte(1) == 5 and r:byte(2) == 7,
          ("command %d: expected reply 5 7, got %q (%s)"):format(cmd, r, tostring(err)))
      end
      assert_alive(c)
      h:stop_luaray(c)
    end))

    it("HTTP proxy Basic authentication: right works, wrong and missing get 407", h:guard(function()
      local c, _, hp = client { security = "aes-128-gcm", http = true, http_accounts = accounts }
      local b64 = require("luaray.link").base64_encode
      local url = ("http://127.0.0.1:%d/data/4096/7"):format(http.port)
      local function get(cred)
        local headers = { "Host: 127.0.0.1:" .. http.port }
        if cred then headers[2] = "Proxy-Authorization: Basic " .. b64(cred) end
        return E.http_request(assert(E.tcp_connect("127.0.0.1", hp)), "GET", url, { headers = headers })
      end
      local code, head, body = get("bob:hunter2")
      assert.equal(200, code, head)
      assert.equal(E.pattern(4096, 7), body)
      for _, cred in ipairs { "bob:wrong", "mallory:hunter2", false } do
        code, head = get(cred or nil)
        assert.equal(407, code, tostring(cred) .. ": " .. tostring(head))
      end
      assert_alive(c)
      h:stop_luaray(c)
    end))
  end)

  for _, o in ipairs { { security = "aes-128-gcm", alter_id = 0 }, { security = "chacha20-poly1305", alter_id = 4 },
                       { security = "zero", alter_id = 0 } } do
    it(("UDP (%s, alter_id %d): 5 datagrams of 1..1400 bytes through SOCKS5 UDP ASSOCIATE"):format(
      o.security, o.alter_id), h:guard(function()
      local c, socks = client(o)
      local ok, err = E.check_socks_udp("127.0.0.1", socks, echo)
      assert.is_true(ok, err)
      assert_alive(c)
      h:stop_luaray(c)
    end))
  end
end)
