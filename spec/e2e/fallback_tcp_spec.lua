-- The fallback on a bare-TCP VMess inbound (design.md 6: "what is not
-- VMess on this transport goes here"): a browser, curl or a prober that
-- reaches the VMess port gets whatever the web server behind `fallback`
-- answers, byte for byte, while VMess clients use the same port as before.
-- Without `fallback` nothing changes (hostile_spec and security_spec probe
-- that: silence, then a FIN at the handshake timeout; one case here too).
--
-- Topology: luaray VMess inbound with fallback = the harness's HTTP server
-- (tools/http_server.lua: GET /data/N/SEED is 200 with N bytes, anything
-- else 404, a head that is no request 400); a v2ray 4.34 client for the
-- VMess traffic; curl and raw sockets as the non-VMess clients.
local E = require "e2e.support"

local MiB = 1024 * 1024

describe("fallback on a bare-TCP VMess inbound", function()
  local h = E.new("fallback-tcp")
  local ID = E.uuid()
  local echo, web, srv, nofb, VP, NP, socks

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    web = h:http_server { name = "fallback-web" }
    VP, NP, socks = E.free_port(), E.free_port(), E.free_port()
    srv = h:luaray("server", E.luaray_server_script {
      port = VP, users = { { id = ID, email = "alice@e2e" } },
      fallback = "127.0.0.1:" .. web.port })
    -- the same server without a fallback
    nofb = h:luaray("server-nofallback", E.luaray_server_script {
      port = NP, users = { { id = ID, email = "alice@e2e" } }, handshake_timeout = 2 })
    h:v2ray("client", E.v2ray_client_config { socks_port = socks, server_port = VP, id = ID })
  end))

  lazy_teardown(function() h:cleanup() end)

  local function curl(name, url)
    local file = h:path(name .. ".body")
    local code, out = h:exec(name, { "curl", "-sS", "--max-time", "15", "-o", file,
                                     "-w", "%{http_code}", url }, { timeout = 20 })
    return code, out, E.read_file(file)
  end

  -- The bytes a server sends back for `req` on one connection, until it closes.
  local function exchange(port, req, fin)
    local r = E.probe_many("127.0.0.1", port, { req }, { fin = fin, max_wait = 10 })[1]
    return r.received, r.how
  end

  it("curl http://<vmess port>/... gets the fallback web server's pages", h:guard(function()
    local code, out, body = curl("curl-data", ("http://127.0.0.1:%d/data/%d/%d"):format(VP, 100000, 3))
    assert.equal(0, code, out)
    assert.equal("200", out:match("(%d%d%d)%s*$"), out)
    assert.equal(E.pattern(100000, 3), body)
    code, out = curl("curl-x", ("http://127.0.0.1:%d/x"):format(VP))
    assert.equal(0, code, out)
    assert.equal("404", out:match("(%d%d%d)%s*$"), out)
    -- the web server saw both requests, with the Host curl sent to luaray's port
    local log = E.read_file(web.log)
    assert.truthy(log:find("GET /data/100000/3 host=127.0.0.1:" .. VP, 1, true), log)
    assert.truthy(log:find("GET /x host=127.0.0.1:" .. VP, 1, true), log)
  end))

  it("a prober gets exactly what the web server itself answers", h:guard(function()
    local probes = {
      "GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /data/64/9 HTTP/1.0\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
      E.pattern(200, 41) .. "\r\n\r\n",           -- random bytes: no request line (400)
      E.pattern(1000, 42) .. "\r\n\r\n",
      "\22\3\1\0\200" .. E.pattern(300, 43) .. "\r\n\r\n", -- TLS-looking garbage
    }
    for i, p in ipairs(probes) do
      local via, how = exchange(VP, p)
      local direct, dhow = exchange(web.port, p)
      assert.truthy(#direct > 0, "probe " .. i .. ": the web server said nothing")
      assert.equal(direct, via, "probe " .. i)
      assert.equal(dhow, how, "probe " .. i)
    end
    -- random bytes and a FIN: the same (the web server closes on its own terms)
    for i, p in ipairs({ E.pattern(100, 44), E.pattern(3000, 45) }) do
      local via, how = exchange(VP, p, true)
      local direct, dhow = exchange(web.port, p, true)
      assert.equal(direct, via, "fin probe " .. i)
      assert.equal(dhow, how, "fin probe " .. i)
    end
  end))

  it("a real VMess client still works on the same port (v2ray 4.34, 1 MiB)", h:guard(function()
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert(ok, err)
    -- and no VMess connection went to the web server
    local log = E.read_file(srv.log)
    assert.truthy(log:find(" vmess%-in alice@e2e tcp 127%.0%.0%.1:" .. echo.port .. " direct "), log)
  end))

  it("without a fallback, curl gets nothing and a FIN at the handshake timeout", h:guard(function()
    local web0 = #E.read_file(web.log)
    local t0 = E.now()
    local code, out = curl("curl-nofallback", ("http://127.0.0.1:%d/x"):format(NP))
    local took = E.now() - t0
    assert.equal(52, code, out)   -- curl: "Empty reply from server"
    assert.truthy(took > 1.5 and took < 10, ("closed after %.2f s"):format(took))
    assert.equal(web0, #E.read_file(web.log))
  end))

  it("the daemons are still up", h:guard(function()
    assert.is_true(h:alive(srv))
    assert.is_true(h:alive(nofb))
  end))
end)
