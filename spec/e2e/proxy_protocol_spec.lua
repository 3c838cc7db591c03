-- PROXY protocol (design.md 6; README "Behind a TCP proxy: the PROXY
-- protocol"): a luaray VMess inbound with proxy_protocol = true behind a
-- real HAProxy (Debian's haproxy, TCP mode, `send-proxy` and
-- `send-proxy-v2`), with real v2ray 4.34 clients.
--
-- Topology, all on loopback (and a SOCKS5 and an HTTP inbound with
-- proxy_protocol behind their own HAProxy frontends):
--   v2ray client (sendThrough 127.0.0.1 or 127.0.0.3)
--     -> HAProxy frontends on 127.0.0.1: fe-v1 (send-proxy), fe-v2
--        (send-proxy-v2), both dialling from 127.0.0.2; fe-untrusted
--        (send-proxy-v2) dialling from 127.0.0.4
--     -> luaray "pp-in" (proxy_protocol, trusted_proxies = 127.0.0.2/32,
--        fallback = an HTTP server) -> the echo server.
-- Raw sockets bound to chosen loopback addresses stand in for HAProxy where
-- a spec needs bytes HAProxy would never send (pieces, TLVs, garbage).
--
-- Hooks print what they saw (OBS lines, h:luaray_obs): the accept hook (it
-- runs once the header is read) and the close hook give ctx.src, ctx.peer
-- and ctx.transport; the access log gives the source it logged.
local E = require "e2e.support"
local socket = require "socket"

local KiB, MiB = 1024, 1024 * 1024
local LOG_WAIT = 15 -- seconds; generous, a loaded 2-core machine under ASan

local function haproxy_bin()
  local env = os.getenv("LURAY_HAPROXY")
  for _, p in ipairs({ env or "/usr/sbin/haproxy", "/usr/bin/haproxy" }) do
    if require("posix.unistd").access(p, "x") == 0 then return p end
  end
  error("haproxy not found (run scripts/deps.sh, which installs Debian's haproxy)", 2)
end

-- A TCP connection from loopback address `from` to host:port.
local function tcp_from(from, host, port)
  local s = socket.tcp4()
  s:settimeout(3)
  assert(s:bind(from, 0))
  local ok, err = s:connect(host, port)
  if not ok then s:close(); return nil, err end
  return s
end

-- Reads until the peer closes (or timeout): bytes, "eof"/"reset"/"open",
-- seconds waited.
local function until_closed(s, timeout)
  s:settimeout(0)
  local got, t0 = {}, E.now()
  for _ = 1, 100000 do
    local d, state = E.recv_nb(s)
    got[#got + 1] = d
    if state then return table.concat(got), state, E.now() - t0 end
    if E.now() - t0 >= timeout then break end
    socket.select({ s }, nil, 0.05)
  end
  return table.concat(got), "open", E.now() - t0
end

local function be16(n) return string.char(math.floor(n / 256), n % 256) end
local V2_SIG = "\r\n\r\n\0\r\nQUIT\n"

local function access_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(" up=%d+ down=%d+ dur=") then out[#out + 1] = line end
  end
  return out
end

describe("PROXY protocol behind HAProxy", function()
  local h = E.new("proxyproto")
  local ALICE, CAROL = E.uuid(), E.uuid()
  local echo, web, srv, hap, v2
  local SP                          -- luaray's PROXY-protocol VMess port
  local SS, SH                      -- its PROXY-protocol SOCKS5 and HTTP ports
  local H1, H2, H3                  -- HAProxy: send-proxy, send-proxy-v2, untrusted sender
  local HS, HH                      -- HAProxy in front of SS (send-proxy-v2) and SH (send-proxy)
  local socks = {}                  -- v2ray client SOCKS5 ports by name

  local function obs(kind)
    return E.observations(E.read_file(srv.out), kind)
  end

  -- Waits for an OBS line of `kind`, after the first n0, for which pred(fields)
  -- holds -> its fields (nil after LOG_WAIT).  Stray lines (the harness's
  -- port probes through HAProxy, say) never match.
  local function find_obs(kind, n0, pred)
    local deadline = E.now() + LOG_WAIT
    for _ = 1, 100000 do
      local o = obs(kind)
      for i = n0 + 1, #o do
        if pred(o[i]) then return o[i] end
      end
      if E.now() >= deadline then return nil end
      E.sleep(0.05)
    end
  end

  -- Waits for an access line, after the first a0, matching `pattern`.
  local function find_access(a0, pattern)
    local deadline = E.now() + LOG_WAIT
    for _ = 1, 100000 do
      local a = access_lines(E.read_file(srv.log))
      for i = a0 + 1, #a do
        if a[i]:find(pattern) then return a[i] end
      end
      if E.now() >= deadline then return nil, table.concat(a, "\n", a0 + 1) end
      E.sleep(0.05)
    end
  end

  local function wait_access(n)
    local deadline = E.now() + LOG_WAIT
    for _ = 1, 100000 do
      local a = access_lines(E.read_file(srv.log))
      if #a >= n or E.now() >= deadline then return a end
      E.sleep(0.05)
    end
  end

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    web = h:http_server { name = "fallback-web" }
    SP = E.free_port({ "127.0.0.1" })
    H1, H2, H3 = E.free_port(), E.free_port(), E.free_port()
    SS, SH, HS, HH = E.free_port(), E.free_port(), E.free_port(), E.free_port()
    local script = table.concat({
      'luaray.log { level = "debug", access = true }',
      ('luaray.user { id = %q, email = "alice@e2e" }'):format(ALICE),
      ('luaray.user { id = %q, email = "carol@e2e" }'):format(CAROL),
      'luaray.policy("carol@e2e", { max_ips = 1 })',
      ('luaray.inbound "pp-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true, ' ..
       'handshake_timeout = 4, proxy_protocol = true, trusted_proxies = { "127.0.0.2/32" }, ' ..
       'fallback = "127.0.0.1:%d" }'):format(SP, web.port),
      ('luaray.inbound "socks-pp" { type = "socks", listen = "127.0.0.1:%d", proxy_protocol = true, ' ..
       'trusted_proxies = { "127.0.0.2" } }'):format(SS),
      ('luaray.inbound "http-pp" { type = "http", listen = "127.0.0.1:%d", proxy_protocol = true, ' ..
       'trusted_proxies = { "127.0.0.2" } }'):format(SH),
      'luaray.outbound "direct" { type = "direct" }',
      [[
local function obs(...)
  local t = { "OBS" }
  for i = 1, select("#", ...) do t[#t + 1] = tostring((select(i, ...))) end
  print(table.concat(t, "\t"))
end
luaray.on("accept", function(ctx)
  obs("accept", ctx.id, ctx.inbound, ctx.src.ip, ctx.src.port, ctx.peer.ip, ctx.peer.port,
      ctx.transport, tostring(ctx.tls))
  if ctx.src.ip == "192.0.2.66" then return false, "not that one" end
end)
luaray.on("close", function(ctx, s)
  obs("close", ctx.id, ctx.user and ctx.user.email or "-", ctx.src.ip, ctx.src.port,
      ctx.peer.ip, ctx.peer.port, ctx.transport, s.reason)
end)
]],
    }, "\n") .. "\n"
    srv = h:luaray_obs("server", script, { ports = { { "127.0.0.1", SP }, { "127.0.0.1", SS },
                                                      { "127.0.0.1", SH } } })

    local cfg = table.concat({
      "global",
      "    nbthread 1",
      "    maxconn 500",
      "defaults",
      "    mode tcp",
      "    timeout connect 5s",
      "    timeout client 60s",
      "    timeout server 60s",
      ("frontend fe-v1\n    bind 127.0.0.1:%d\n    default_backend be-v1"):format(H1),
      ("backend be-v1\n    server luaray 127.0.0.1:%d send-proxy source 127.0.0.2"):format(SP),
      ("frontend fe-v2\n    bind 127.0.0.1:%d\n    default_backend be-v2"):format(H2),
      ("backend be-v2\n    server luaray 127.0.0.1:%d send-proxy-v2 source 127.0.0.2"):format(SP),
      ("frontend fe-untrusted\n    bind 127.0.0.1:%d\n    default_backend be-untrusted"):format(H3),
      ("backend be-untrusted\n    server luaray 127.0.0.1:%d send-proxy-v2 source 127.0.0.4"):format(SP),
      ("frontend fe-socks\n    bind 127.0.0.1:%d\n    default_backend be-socks"):format(HS),
      ("backend be-socks\n    server luaray 127.0.0.1:%d send-proxy-v2 source 127.0.0.2"):format(SS),
      ("frontend fe-http\n    bind 127.0.0.1:%d\n    default_backend be-http"):format(HH),
      ("backend be-http\n    server luaray 127.0.0.1:%d send-proxy source 127.0.0.2"):format(SH),
    }, "\n") .. "\n"
    local path = h:write("haproxy.cfg", cfg)
    -- -db: foreground, no daemon; stopped by PID like every child
    hap = h:spawn("haproxy", { haproxy_bin(), "-db", "-f", path },
                  { ports = { { "127.0.0.1", H1 }, { "127.0.0.1", H2 }, { "127.0.0.1", H3 },
                              { "127.0.0.1", HS }, { "127.0.0.1", HH } } })

    -- one v2ray 4.34 client, a SOCKS5 inbound per (user, frontend, source address)
    local routes = {
      { "alice-v1", ALICE, H1, "127.0.0.1" }, { "alice-v2", ALICE, H2, "127.0.0.1" },
      { "alice-v2-from3", ALICE, H2, "127.0.0.3" }, { "alice-untrusted", ALICE, H3, "127.0.0.1" },
      { "carol-v2", CAROL, H2, "127.0.0.1" }, { "carol-v2-from3", CAROL, H2, "127.0.0.3" },
    }
    local inbounds, outbounds, rules = {}, {}, {}
    for i, r in ipairs(routes) do
      local port = E.free_port()
      socks[r[1]] = port
      inbounds[i] = { tag = "in-" .. r[1], listen = "127.0.0.1", port = port, protocol = "socks",
                      settings = { auth = "noauth", udp = false } }
      outbounds[i] = { tag = "out-" .. r[1], protocol = "vmess", sendThrough = r[4],
                       settings = { vnext = { { address = "127.0.0.1", port = r[3],
                         users = { { id = r[2], alterId = 0, security = "aes-128-gcm" } } } } } }
      rules[i] = { type = "field", inboundTag = { "in-" .. r[1] }, outboundTag = "out-" .. r[1] }
    end
    v2 = h:v2ray("v2ray-client", { log = { loglevel = "warning" }, inbounds = inbounds,
                                   outbounds = outbounds, routing = { rules = rules } })
  end))

  lazy_teardown(function() h:cleanup() end)

  local function echo_via(name, n, keep)
    local s, err = E.socks5_connect("127.0.0.1", socks[name], "127.0.0.1", echo.port, nil, nil, 5)
    if not s then return false, "socks5 connect: " .. tostring(err) end
    local ok, info = E.transfer_echo(s, n, { timeout = 20, close = not keep })
    return ok, info, s
  end

  -- The close OBS lines after the first `n0` -> list.
  local function closes_after(n0)
    local o, out = obs("close"), {}
    for i = n0 + 1, #o do out[#out + 1] = o[i] end
    return out
  end

  for _, c in ipairs({ { "send-proxy (v1)", "alice-v1" }, { "send-proxy-v2", "alice-v2" } }) do
    it(("v2ray 4.34 through HAProxy %s: 1 MiB each way; the client is 127.0.0.1, the peer 127.0.0.2")
       :format(c[1]), h:guard(function()
      local n0, a0 = #obs("close"), #access_lines(E.read_file(srv.log))
      local ok, err = echo_via(c[2], MiB)
      assert(ok, err)
      -- close, id, user, src.ip, src.port, peer.ip, peer.port, transport, reason
      local f = find_obs("close", n0, function(o) return o[3] == "alice@e2e" end)
      assert(f, "no close hook for the relay")
      assert.equal("127.0.0.1", f[4])
      assert.truthy(tonumber(f[5]) > 0)
      assert.equal("127.0.0.2", f[6])
      assert.truthy(tonumber(f[7]) > 0)
      assert.equal("tcp", f[8])
      local relayed = 0
      for _, o in ipairs(closes_after(n0)) do
        if o[3] == "alice@e2e" then relayed = relayed + 1 end
      end
      assert.equal(1, relayed, "relayed connections")
      -- the access line names the client, port and all, not the proxy
      local line, seen = find_access(a0, " 127%.0%.0%.1:" .. f[5] .. " pp%-in alice@e2e tcp 127%.0%.0%.1:"
                                         .. echo.port)
      assert(line, "no access line for the relay:\n" .. tostring(seen))
      assert.falsy(line:find("127.0.0.2", 1, true), line)
    end))
  end

  it("the client's own address and port, exactly, in the accept hook (it runs after the header)",
     h:guard(function()
    for _, fe in ipairs({ { "v1", H1 }, { "v2", H2 } }) do
      local n0 = #obs("accept")
      local s = assert(tcp_from("127.0.0.3", "127.0.0.1", fe[2]))
      local _, lport = s:getsockname()
      -- accept, id, inbound, src.ip, src.port, peer.ip, peer.port, transport, tls
      local f = find_obs("accept", n0, function(o) return o[4] == "127.0.0.3" end)
      s:close()
      assert(f, fe[1] .. ": no accept hook for 127.0.0.3")
      assert.same({ "pp-in", "127.0.0.3", tostring(lport), "127.0.0.2" }, { f[3], f[4], f[5], f[6] }, fe[1])
      assert.equal("tcp", f[8])
      assert.equal("nil", f[9])   -- ctx.tls: only for a client that came over TLS
    end
  end))

  it("SOCKS5 and HTTP CONNECT inbounds behind HAProxy see the client too", h:guard(function()
    -- SOCKS5 (RFC 1928, no auth) from 127.0.0.3 through HAProxy send-proxy-v2
    local a0 = #access_lines(E.read_file(srv.log))
    local s = assert(tcp_from("127.0.0.3", "127.0.0.1", HS))
    local _, lport = s:getsockname()
    s:settimeout(5)
    assert(s:send("\5\1\0"))
    assert.equal("\5\0", s:receive(2))
    assert(s:send("\5\1\0\1\127\0\0\1" .. be16(echo.port)))
    local rep = assert(s:receive(10))
    assert.equal("\5\0", rep:sub(1, 2))
    local ok, err = E.transfer_echo(s, 256 * KiB, { timeout = 20 })
    assert(ok, err)
    local line, seen = find_access(a0, " 127%.0%.0%.3:" .. lport .. " socks%-pp %- tcp 127%.0%.0%.1:" .. echo.port)
    assert(line, "no access line naming the SOCKS5 client:\n" .. tostring(seen))
    -- HTTP CONNECT from 127.0.0.3 through HAProxy send-proxy
    a0 = #access_lines(E.read_file(srv.log))
    s = assert(tcp_from("127.0.0.3", "127.0.0.1", HH))
    _, lport = s:getsockname()
    s:settimeout(5)
    assert(s:send(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"):format(echo.port, echo.port)))
    local status = assert(s:receive("*l"))
    assert.truthy(status:find("^HTTP/1.1 200"), status)
    for _ = 1, 20 do if s:receive("*l") == "" then break end end
    ok, err = E.transfer_echo(s, 256 * KiB, { timeout = 20 })
    assert(ok, err)
    line, seen = find_access(a0, " 127%.0%.0%.3:" .. lport .. " http%-pp %- tcp 127%.0%.0%.1:" .. echo.port)
    assert(line, "no access line naming the HTTP client:\n" .. tostring(seen))
  end))

  it("two clients behind one proxy are two source addresses for max_ips", h:guard(function()
    -- carol may use one address at a time; every connection comes from
    -- HAProxy's 127.0.0.2, but the clients are 127.0.0.1 and 127.0.0.3
    local ok, err, held = echo_via("carol-v2", 16 * KiB, true)
    assert(ok, err)
    local ok2, err2, held2 = echo_via("carol-v2", 16 * KiB, true)
    assert(ok2, "a second connection from the same client: " .. tostring(err2))
    local a0 = #access_lines(E.read_file(srv.log))
    local ok3 = echo_via("carol-v2-from3", 16 * KiB)
    assert.is_false(ok3, "a second client address was admitted")
    local refused, seen = find_access(a0, " 127%.0%.0%.3:%d+ pp%-in carol@e2e .*too many source addresses")
    assert(refused, "no refusal of 127.0.0.3 logged:\n" .. tostring(seen))
    -- once the first client's connections end, the other one is admitted
    held:close()
    held2:close()
    local deadline, admitted = E.now() + LOG_WAIT, false
    for _ = 1, 200 do
      admitted = echo_via("carol-v2-from3", 16 * KiB)
      if admitted or E.now() >= deadline then break end
      E.sleep(0.2)
    end
    assert.is_true(admitted, "127.0.0.3 never admitted after 127.0.0.1 left")
  end))

  it("a header from a peer not in trusted_proxies is read and ignored: the peer is the client",
     h:guard(function()
    local n0 = #obs("close")
    local ok, err = echo_via("alice-untrusted", 64 * KiB)
    assert(ok, err)
    local f = find_obs("close", n0, function(o) return o[3] == "alice@e2e" end)
    assert(f, "no close hook")
    assert.same({ "127.0.0.4", "127.0.0.4" }, { f[4], f[6] })
    assert.equal(f[5], f[7])   -- src is the peer, port and all
    -- a raw untrusted sender claiming another address is not believed either
    local n1 = #obs("accept")
    local s = assert(tcp_from("127.0.0.5", "127.0.0.1", SP))
    local _, lport = s:getsockname()
    s:send("PROXY TCP4 192.0.2.66 127.0.0.1 1234 " .. SP .. "\r\n")
    local a = find_obs("accept", n1, function(o) return o[6] == "127.0.0.5" end)
    s:close()
    assert(a, "no accept hook for 127.0.0.5")
    assert.same({ "127.0.0.5", tostring(lport) }, { a[4], a[5] })
  end))

  it("a trusted header split into pieces, and a v2 header with TLVs, are believed; what follows goes on",
     h:guard(function()
    -- v1 in three pieces, then an HTTP request for the next stage: not
    -- VMess, so the fallback web server answers it, bytes unchanged
    local n0 = #obs("accept")
    local s = assert(tcp_from("127.0.0.2", "127.0.0.1", SP))
    local line = "PROXY TCP4 198.51.100.7 127.0.0.1 4242 " .. SP .. "\r\n"
    s:send(line:sub(1, 3)); E.sleep(0.1)
    s:send(line:sub(4, 30)); E.sleep(0.1)
    s:send(line:sub(31))
    s:send("GET /data/300/5 HTTP/1.1\r\nHost: fb\r\n\r\n")
    local got, how = until_closed(s, 10)
    s:close()
    assert.equal("eof", how)
    assert.truthy(got:find("^HTTP/1.1 200 OK\r\n"), got:sub(1, 80))
    assert.equal(E.pattern(300, 5), got:sub(-300))
    local acc = find_obs("accept", n0, function(o) return o[4] == "198.51.100.7" end)
    assert(acc, "no accept hook for 198.51.100.7")
    assert.same({ "4242", "127.0.0.2" }, { acc[5], acc[6] })
    -- v2, IPv6 client, 300 bytes of TLVs (past what the stage peeks), in pieces
    local src6 = "\32\1\13\184" .. ("\0"):rep(11) .. "\9"
    local dst6 = ("\0"):rep(15) .. "\1"
    local tlvs = "\4" .. be16(297) .. ("t"):rep(297)     -- PP2_TYPE_NOOP
    local hdr = V2_SIG .. "\33\33" .. be16(36 + #tlvs) .. src6 .. dst6 .. be16(5555) .. be16(SP) .. tlvs
    n0 = #obs("accept")
    s = assert(tcp_from("127.0.0.2", "127.0.0.1", SP))
    s:send(hdr:sub(1, 10)); E.sleep(0.1)
    s:send(hdr:sub(11, 100)); E.sleep(0.1)
    s:send(hdr:sub(101, 200)); E.sleep(0.1)
    s:send(hdr:sub(201) .. "GET /data/77/9 HTTP/1.1\r\nHost: fb\r\n\r\n")
    got, how = until_closed(s, 10)
    s:close()
    assert.equal("eof", how)
    assert.equal(E.pattern(77, 9), got:sub(-77))
    acc = find_obs("accept", n0, function(o) return o[4] == "2001:db8::9" end)
    assert(acc, "no accept hook for 2001:db8::9")
    assert.same({ "5555", "127.0.0.2" }, { acc[5], acc[6] })
    -- LOCAL (a health check) and UNKNOWN keep the peer
    for _, hh in ipairs({ V2_SIG .. "\32\0\0\0", "PROXY UNKNOWN\r\n" }) do
      n0 = #obs("accept")
      s = assert(tcp_from("127.0.0.2", "127.0.0.1", SP))
      local _, lport = s:getsockname()
      s:send(hh)
      acc = find_obs("accept", n0, function(o) return o[5] == tostring(lport) end)
      s:close()
      assert(acc, "no accept hook for port " .. lport)
      assert.same({ "127.0.0.2", "127.0.0.2", tostring(lport) }, { acc[4], acc[6], acc[7] })
    end
  end))

  it("the accept hook judges the client from the header", h:guard(function()
    local a0 = #access_lines(E.read_file(srv.log))
    local s = assert(tcp_from("127.0.0.2", "127.0.0.1", SP))
    s:send("PROXY TCP4 192.0.2.66 127.0.0.1 1234 " .. SP .. "\r\nGET /data/5/1 HTTP/1.1\r\n\r\n")
    local got, how, t = until_closed(s, 10)
    s:close()
    assert.equal("", got)
    -- a FIN, or an RST for the request bytes it never read
    assert.truthy(how == "eof" or how == "reset", how)
    assert.truthy(t < 2, "closed after " .. t .. " s")
    local line, seen = find_access(a0, " 192%.0%.2%.66:1234 pp%-in .*refused by accept hook")
    assert(line, "no refusal logged:\n" .. tostring(seen))
  end))

  it("a missing or malformed header closes the connection at once, never to the fallback",
     h:guard(function()
    local web0 = #E.read_file(web.log)
    local a0 = #access_lines(E.read_file(srv.log))
    local probes = {
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",                                   -- no header (a prober)
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET / HTTP/1.1\r\n\r\n",              -- LF without CR
      "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n",           -- leading zero
      "PROXY UNKNOWN " .. ("x"):rep(120) .. "\r\n",                          -- no CRLF in 107
      V2_SIG .. "\17\17\0\12" .. ("\1"):rep(12) .. "GET / HTTP/1.1\r\n\r\n", -- version 1 in v2
      V2_SIG .. "\33\17\0\11" .. ("\1"):rep(11),                             -- address block short
      "\22\3\1\0\5\1\0\0\1\3",                                               -- TLS (no proxy in front)
    }
    local res = E.probe_many("127.0.0.1", SP, probes, { max_wait = 10 })
    for i, r in ipairs(res) do
      assert.equal("", r.received, "probe " .. i)
      assert.truthy(r.how == "eof" or r.how == "reset", "probe " .. i .. ": " .. r.how)
      assert.truthy(r.closed_after < 2, ("probe %d closed after %.2f s (handshake_timeout is 4)")
                    :format(i, r.closed_after or -1))
    end
    -- a partial header and a FIN: closed at once; a partial header alone
    -- waits for the rest until the handshake timeout
    local fin = E.probe_many("127.0.0.1", SP, { "PROXY TCP4 1.2.3", V2_SIG:sub(1, 7) }, { fin = true })
    for i, r in ipairs(fin) do
      assert.truthy(r.how == "eof" and r.closed_after < 2, "fin probe " .. i .. ": " .. r.how)
    end
    local t0 = E.now()
    local held = E.probe_many("127.0.0.1", SP, { "PROXY TCP6 ::1 " }, { max_wait = 10 })
    assert.equal("eof", held[1].how)
    assert.truthy(held[1].closed_after > 3 and held[1].closed_after < 8,
                  ("partial header closed after %.2f s"):format(held[1].closed_after or E.now() - t0))
    -- reasons in the access log, and nothing reached the fallback web server
    local lines = wait_access(a0 + #probes + 3)
    local text = table.concat(lines, "\n", a0 + 1)
    for _, why in ipairs({ "bad PROXY header: not a PROXY protocol header",
                           "bad PROXY header: PROXY v1: LF without CR",
                           "bad PROXY header: PROXY v1: bad address",
                           "bad PROXY header: PROXY v1: no CRLF in 107 bytes",
                           "bad PROXY header: PROXY v2: version is not 2",
                           "bad PROXY header: PROXY v2: address block shorter than its family's",
                           "eof in the PROXY header", "handshake timeout" }) do
      assert.truthy(text:find(why, 1, true), "no '" .. why .. "' in:\n" .. text)
    end
    assert.equal(web0, #E.read_file(web.log), "a probe reached the fallback web server")
  end))

  it("HAProxy and the daemon are still up", h:guard(function()
    assert.is_true(h:alive(srv))
    assert.is_true(h:alive(hap))
    assert.is_true(h:alive(v2))
  end))
end)
