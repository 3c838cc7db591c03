-- The tunnel inbound (dokodemo-door, design.md 9) end to end on loopback:
-- TCP connections and UDP datagrams to one fixed destination, dispatched
-- through the same routing, hooks and outbounds as SOCKS/HTTP clients.
--   * TCP to the echo server (both ways, half-close), and to a server that
--     speaks first (the tunnel dials before the client sends anything);
--   * UDP from several clients at once: each gets its own replies, from the
--     tunnel's listen address; datagrams sent back to back by a new client
--     all arrive (they wait while its session dials); one session per client address (the access
--     log has one UDP line per client after udp_timeout), max_connections
--     caps the sessions, 200 sessions give back their descriptors;
--   * the same through a VMess outbound to a luaray server and to Debian's
--     v2ray 4.34 (VMess UDP, command 2);
--   * two worker threads (a UDP socket each on the port, SO_REUSEPORT);
--   * IPv6 (::1) when the host has it;
--   * a SIGHUP keeps the UDP listener and an open session (its client goes
--     on getting replies) while new clients get the new rules.
local E = require "e2e.support"
local socket = require "socket"
local psignal = require "posix.signal"

local KiB = 1024

-- n UDP clients on `bind` (127.0.0.1) sending `rounds` rounds, each client
-- one datagram per round to host:port, then reading its reply.  Every
-- reply must be the client's own datagram echoed, coming from host:port;
-- a reply meant for another client fails.  A datagram lost on a busy
-- machine is sent again (at most 4 times); stale replies of the client's
-- own earlier tries are skipped.  -> true or false, why
local function udp_rounds(host, port, n, rounds, opts)
  opts = opts or {}
  local cs = {}
  for i = 1, n do
    local u = host:find(":", 1, true) and socket.udp6() or socket.udp4()
    assert(u:setsockname(opts.bind or (host:find(":", 1, true) and "::1" or "127.0.0.1"), 0))
    u:settimeout(opts.timeout or 3)
    cs[i] = u
  end
  local function payload(i, r)
    local size = 1 + ((i * 977 + r * 131) % (opts.max or 1200))
    return ("client %d round %d|"):format(i, r) .. E.pattern(size, i * 1000 + r)
  end
  local ok, why = true, nil
  for r = 1, rounds do
    for i, u in ipairs(cs) do assert(u:sendto(payload(i, r), host, port)) end
    for i, u in ipairs(cs) do
      local want, got = payload(i, r), false
      for try = 1, 4 do
        for _ = 1, 20 do
          local d, ip, p = u:receivefrom()
          if not d then break end
          if ip ~= host or p ~= port then
            ok, why = false, ("client %d: reply from %s:%s, wanted %s:%d"):format(i, ip, tostring(p), host, port)
            break
          end
          local who = d:match("^client (%d+) ")
          if tonumber(who) ~= i then
            ok, why = false, ("client %d got a reply for client %s"):format(i, tostring(who))
            break
          end
          if d == want then got = true; break end
        end
        if got or not ok then break end
        if try < 4 then u:sendto(want, host, port) end
      end
      if ok and not got then ok, why = false, ("client %d round %d: no reply"):format(i, r) end
      if not ok then break end
    end
    if not ok then break end
  end
  for _, u in ipairs(cs) do u:close() end
  return ok, why
end

-- n fresh UDP clients each send k datagrams back to back (as a resolver
-- sends its A and AAAA queries from one port), with no resend: every one
-- must come back (those that arrive while the new session dials wait in
-- it).  -> true or false, why
local function udp_burst(host, port, n, k)
  local cs = {}
  for i = 1, n do
    local u = host:find(":", 1, true) and socket.udp6() or socket.udp4()
    assert(u:setsockname(host:find(":", 1, true) and "::1" or "127.0.0.1", 0))
    u:settimeout(5)
    cs[i] = u
  end
  for i, u in ipairs(cs) do
    for j = 1, k do assert(u:sendto(("burst %d.%d|"):format(i, j) .. E.pattern(40 * j, i * 10 + j), host, port)) end
  end
  local ok, why = true, nil
  for i, u in ipairs(cs) do
    local seen = {}
    for _ = 1, k do
      local d = u:receivefrom()
      if not d then ok, why = false, ("client %d: %d of %d replies"):format(i, #seen, k); break end
      local a, b = d:match("^burst (%d+)%.(%d+)|")
      if tonumber(a) ~= i or d ~= ("burst %d.%s|"):format(i, b) .. E.pattern(40 * tonumber(b), i * 10 + tonumber(b)) then
        ok, why = false, ("client %d: a wrong reply"):format(i); break
      end
      seen[#seen + 1] = b
    end
    if not ok then break end
  end
  for _, u in ipairs(cs) do u:close() end
  return ok, why
end

-- A TCP server that sends a banner first, then echoes one line (python3,
-- as an independent peer): where a tunnel must not wait for the client.
local BANNER_SERVER = [[
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(10)
    try:
        c.sendall(b"220 banner first\r\n")
        line = b""
        while not line.endswith(b"\n"):
            d = c.recv(100)
            if not d: break
            line += d
        c.sendall(b"echo " + line)
    except Exception:
        pass
    c.close()
]]

describe("tunnel inbound", function()
  local h = E.new("tunnel")
  local echo

  setup(function() echo = h:echo_server { ipv6 = E.has_ipv6() } end)
  teardown(function() h:cleanup() end)

  it("relays TCP to its fixed destination, dialling before the client speaks", h:guard(function()
    local tp, bp = E.free_port(), E.free_port()
    h:write("banner.py", BANNER_SERVER)
    h:spawn("banner", { "python3", h:path("banner.py"), tostring(bp) }, { ports = { bp } })
    local bt = E.free_port()
    local p = h:luaray("tcp", ([[
luaray.log { level = "info", access = true }
luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d" }
luaray.inbound "b" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d", network = "tcp" }
luaray.outbound "direct" { type = "direct" }
]]):format(tp, echo.port, bt, bp), { ports = { tp, bt } })
    -- three connections at once, 256 KiB each way, and a half-close
    local socks = {}
    for i = 1, 3 do socks[i] = assert(E.tcp_connect("127.0.0.1", tp)) end
    assert(E.transfer_echo_many(socks, 256 * KiB, { timeout = 20 }))
    local s = assert(E.tcp_connect("127.0.0.1", tp))
    assert(E.transfer_echo(s, 64 * KiB, { half_close = true, timeout = 20 }))
    -- the server speaks first: the banner arrives before we send a byte
    s = assert(E.tcp_connect("127.0.0.1", bt))
    s:settimeout(5)
    assert.equal("220 banner first", s:receive("*l"))
    assert(s:send("hello\n"))
    assert.equal("echo hello", s:receive("*l"))
    s:close()
    -- the access log names the inbound, the destination and the outbound
    assert(E.wait_log(p, "127%.0%.0%.1:%d+ t %- tcp 127%.0%.0%.1:" .. echo.port .. " direct", 4))
    assert(E.wait_log(p, "127%.0%.0%.1:%d+ b %- tcp 127%.0%.0%.1:" .. bp .. " direct", 1))
  end))

  it("dials a name, and resets the client when the destination refuses", h:guard(function()
    local tn, tc, closed = E.free_port(), E.free_port(), E.free_port()
    local p = h:luaray("names", ([[
luaray.log { level = "info", access = true }
luaray.inbound "n" { type = "tunnel", listen = "127.0.0.1:%d", to = "localhost:%d", network = "tcp,udp" }
luaray.inbound "x" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct", domain_strategy = "ipv4" }
]]):format(tn, echo.port, tc, closed), { ports = { tn, tc } })
    local s = assert(E.tcp_connect("127.0.0.1", tn))
    assert(E.transfer_echo(s, 32 * KiB, { timeout = 20 }))
    assert(udp_rounds("127.0.0.1", tn, 2, 2))
    assert(E.wait_log(p, "127%.0%.0%.1:%d+ n %- tcp localhost:" .. echo.port .. " direct up=32768"))
    -- nothing listens on `closed`: the client sees what a refused connect
    -- looks like, an RST, not an empty stream that ended well
    local code, out = h:exec("refused-client", { "python3", "-c", ([[
import socket
try:
    # the RST may come before connect() returns, or after
    s = socket.create_connection(("127.0.0.1", %d), timeout=5)
    print("eof" if s.recv(100) == b"" else "data")
except ConnectionResetError:
    print("reset")
]]):format(tc) })
    assert.equal(0, code, out)
    assert.equal("reset", out:match("%a+"))
  end))

  it("keeps one UDP session per client, replying to each from the listen address", h:guard(function()
    local tp = E.free_port()
    local p = h:luaray("udp", ([[
luaray.log { level = "info", access = true }
luaray.inbound "u" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d",
                     network = "tcp,udp", udp_timeout = 1 }
luaray.outbound "direct" { type = "direct" }
]]):format(tp, echo.port), { ports = { tp } })
    -- 6 clients, 5 rounds each, interleaved
    assert(udp_rounds("127.0.0.1", tp, 6, 5))
    -- 3 more, 6 datagrams each sent at once: none lost (9 sessions in all)
    assert(udp_burst("127.0.0.1", tp, 3, 6))
    -- one session per client address: 6 UDP lines once they idle out
    -- (udp_timeout = 1), however many datagrams each sent
    local text = assert(E.wait_log(p, " u %- udp 127%.0%.0%.1:" .. echo.port .. " direct up=%d+ down=%d+", 9))
    local n, up = 0, 0
    for u in text:gmatch(" u %- udp 127%.0%.0%.1:%d+ direct up=(%d+) down=%d+") do
      n, up = n + 1, up + tonumber(u)
    end
    assert.equal(9, n)
    assert.is_true(up > 0)
    -- and TCP on the same port
    local s = assert(E.tcp_connect("127.0.0.1", tp))
    assert(E.transfer_echo(s, 32 * KiB, { timeout = 20 }))
  end))

  it("runs the accept and route hooks for its TCP clients and UDP sessions", h:guard(function()
    local tp, refused = E.free_port(), E.free_port()
    local p = h:luaray("hooks", ([[
luaray.log { level = "info", access = true }
luaray.inbound "hk" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d", network = "tcp,udp" }
luaray.outbound "tcp-out" { type = "direct" }
luaray.outbound "udp-out" { type = "direct" }
luaray.on("accept", function(ctx)
  if ctx.network == "udp" and ctx.src.port == %d then return false end
end)
luaray.on("route", function(ctx)
  if ctx.inbound == "hk" and ctx.dst.host == "127.0.0.1" and ctx.dst.port == %d then
    return ctx.network == "udp" and "udp-out" or "tcp-out"
  end
end)
]]):format(tp, echo.port, refused, echo.port), { ports = { tp } })
    assert(udp_rounds("127.0.0.1", tp, 2, 2))
    local s = assert(E.tcp_connect("127.0.0.1", tp))
    assert(E.transfer_echo(s, 16 * KiB, { timeout = 20 }))
    -- the client the accept hook refuses gets nothing back
    local u = socket.udp4()
    assert(u:setsockname("127.0.0.1", refused))
    u:settimeout(0.5)
    local got
    for _ = 1, 3 do
      u:sendto("client 1 round 1|refused", "127.0.0.1", tp)
      got = u:receivefrom()
      if got then break end
    end
    u:close()
    assert.is_nil(got)
    h:stop_luaray(p)
    local text = E.read_file(p.log)
    assert.equal(2, E.count_matches(text, " hk %- udp 127%.0%.0%.1:" .. echo.port .. " udp%-out "))
    -- (the harness's port probe is a TCP client too: count the transfer)
    assert.equal(1, E.count_matches(text, " hk %- tcp 127%.0%.0%.1:" .. echo.port .. " tcp%-out up=16384 down=16384 "))
    assert.equal(0, E.count_matches(text, "127%.0%.0%.1:" .. refused .. " hk"))
  end))

  it("gives back every session's descriptors when it idles out", h:guard(function()
    local tp = E.free_port()
    local p = h:luaray("churn", ([[
luaray.log { level = "warn", access = false }
luaray.inbound "ch" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d",
                      network = "tcp,udp", udp_timeout = 1 }
luaray.outbound "direct" { type = "direct" }
]]):format(tp, echo.port), { ports = { tp } })
    E.sleep(0.2)
    local base = assert(E.fd_count(p.pid))
    -- 200 clients, one session (and one outbound socket) each
    for _ = 1, 4 do assert(udp_rounds("127.0.0.1", tp, 50, 1)) end
    -- (the last 50 at least are still open: each holds a socket)
    local peak = assert(E.fd_count(p.pid))
    assert.is_true(peak >= base + 40, ("%d descriptors open, %d before"):format(peak, base))
    -- every session ends after udp_timeout; the descriptors go with them
    local n
    local deadline = E.now() + 10
    repeat
      E.sleep(0.2)
      n = E.fd_count(p.pid)
    until n == base or E.now() > deadline
    assert.equal(base, n)
  end))

  it("caps UDP sessions at max_connections", h:guard(function()
    local tp, probe = E.free_port(), E.free_port()
    -- the SOCKS inbound is there to say when the daemon listens
    h:luaray("udp-cap", ([[
luaray.log { level = "info", access = true }
luaray.inbound "c" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d",
                     network = "udp", max_connections = 2 }
luaray.inbound "probe" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
]]):format(tp, echo.port, probe), { ports = { probe } })
    -- two clients get sessions; a third is dropped while they live
    assert(udp_rounds("127.0.0.1", tp, 2, 2))
    local u = socket.udp4()
    assert(u:setsockname("127.0.0.1", 0))
    u:settimeout(0.5)
    local got
    for _ = 1, 3 do
      u:sendto("client 3 round 1|x", "127.0.0.1", tp)
      got = u:receivefrom()
      if got then break end
    end
    u:close()
    assert.is_nil(got)
  end))

  it("carries UDP and TCP through a VMess outbound to luaray and to v2ray 4.34", h:guard(function()
    local id = E.uuid()
    -- a luaray VMess server
    local lport = E.free_port()
    h:luaray("vmess-server", E.luaray_server_script { port = lport, users = { { id = id } } })
    -- a v2ray 4.34 VMess server
    local vport = E.free_port()
    h:v2ray("v2ray-server", E.v2ray_server_config { port = vport, users = { { id = id, alterId = 0 } } })
    local t1, t2 = E.free_port(), E.free_port()
    h:luaray("client", ([[
luaray.log { level = "info", access = true }
luaray.inbound "via-luaray" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d", network = "tcp,udp" }
luaray.inbound "via-v2ray" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d", network = "tcp,udp" }
luaray.outbound "luaray" { type = "vmess", server = "127.0.0.1:%d", id = %q }
luaray.outbound "v2ray" { type = "vmess", server = "127.0.0.1:%d", id = %q, security = "aes-128-gcm" }
luaray.route { inbound = "via-v2ray", to = "v2ray" }
luaray.route { default = "luaray" }
]]):format(t1, echo.port, t2, echo.port, lport, id, vport, id), { ports = { t1, t2 } })
    for _, tp in ipairs { t1, t2 } do
      local socks = {}
      for i = 1, 2 do socks[i] = assert(E.tcp_connect("127.0.0.1", tp)) end
      assert(E.transfer_echo_many(socks, 128 * KiB, { timeout = 30 }))
      local ok, why = udp_rounds("127.0.0.1", tp, 4, 4, { timeout = 3 })
      assert(ok, ("port %d: %s"):format(tp, tostring(why)))
      -- back to back while the VMess connection is made: none lost
      ok, why = udp_burst("127.0.0.1", tp, 3, 6)
      assert(ok, ("port %d: %s"):format(tp, tostring(why)))
    end
  end))

  it("serves UDP and TCP from two worker threads", h:guard(function()
    local tp = E.free_port()
    local p = h:luaray("workers", ([[
luaray.workers(2)
luaray.log { level = "info", access = true }
luaray.inbound "w" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d",
                     network = "tcp,udp", udp_timeout = 1 }
luaray.outbound "direct" { type = "direct" }
]]):format(tp, echo.port), { ports = { tp } })
    -- each worker has its own socket on the port (SO_REUSEPORT): the
    -- kernel keeps a client on one of them, so its session is one session
    -- (once both sockets are there: SIGUSR1's listing shows worker 1 runs)
    assert(psignal.kill(p.pid, psignal.SIGUSR1))
    assert(E.wait_log(p, "worker 1: %d+ connections"))
    assert(udp_rounds("127.0.0.1", tp, 8, 4))
    local socks = {}
    for i = 1, 4 do socks[i] = assert(E.tcp_connect("127.0.0.1", tp)) end
    assert(E.transfer_echo_many(socks, 64 * KiB, { timeout = 20 }))
    local text = assert(E.wait_log(p, " w %- udp 127%.0%.0%.1:" .. echo.port .. " direct up=", 8))
    assert.equal(8, E.count_matches(text, " w %- udp 127%.0%.0%.1:" .. echo.port .. " direct up="))
  end))

  it("works on IPv6", h:guard(function()
    if not E.has_ipv6() then
      pending("no IPv6 on this host (::1 cannot be bound)")
      return
    end
    local tp = E.free_port { "::1" }
    h:luaray("ipv6", ([[
luaray.log { level = "info", access = true }
luaray.inbound "t6" { type = "tunnel", listen = "[::1]:%d", to = "[::1]:%d", network = "tcp,udp" }
luaray.outbound "direct" { type = "direct" }
]]):format(tp, echo.port), { ports = { { "::1", tp } } })
    local s = assert(E.tcp_connect("::1", tp))
    assert(E.transfer_echo(s, 64 * KiB, { timeout = 20 }))
    assert(udp_rounds("::1", tp, 3, 3))
  end))

  it("keeps the UDP listener and open sessions across SIGHUP", h:guard(function()
    local tp = E.free_port()
    local cfg = [[
luaray.log { level = "info", access = true }
luaray.inbound "r" { type = "tunnel", listen = "127.0.0.1:%d", to = "127.0.0.1:%d", network = "udp" }
luaray.outbound "%s" { type = "direct" }
]]
    local p = h:luaray("reload", cfg:format(tp, echo.port, "first"), { timeout = 5 })
    assert(E.wait_log(p, "inbound r %(tunnel%) listening on"))
    local old = socket.udp4()
    assert(old:setsockname("127.0.0.1", 0))
    old:settimeout(3)
    local function ask(u, text)
      for _ = 1, 4 do
        u:sendto(text, "127.0.0.1", tp)
        local d, ip, port = u:receivefrom()
        if d then return d, ip, port end
      end
    end
    assert.equal("before", ask(old, "before"))
    -- the new generation names its outbound differently
    local f = assert(io.open(p.argv[3], "wb"))
    f:write(cfg:format(tp, echo.port, "second"))
    f:close()
    assert(psignal.kill(p.pid, psignal.SIGHUP))
    assert(E.wait_log(p, "reload: generation %d+ serving"))
    assert(E.wait_log(p, "inbound r on 127%.0%.0%.1:%d+ kept"))
    -- the open session goes on (on the generation it started on) ...
    local d, ip, port = ask(old, "after")
    assert.equal("after", d)
    assert.same({ "127.0.0.1", tp }, { ip, port })
    -- ... and a new client gets the new generation's outbound
    local new = socket.udp4()
    assert(new:setsockname("127.0.0.1", 0))
    new:settimeout(3)
    assert.equal("new", ask(new, "new"))
    new:close()
    old:close()
    -- at stop every session's line is written: the old one through
    -- "first", the new one through "second"
    h:stop_luaray(p)
    local text = E.read_file(p.log)
    assert.equal(1, E.count_matches(text, " r %- udp 127%.0%.0%.1:%d+ first "))
    assert.equal(1, E.count_matches(text, " r %- udp 127%.0%.0%.1:%d+ second "))
  end))
end)
