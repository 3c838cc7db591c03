-- The tproxy and redirect inbounds (design.md 9) on a router made of
-- network namespaces this spec creates (and deletes):
--
--   client ns  c0 10.213.1.2, fd13:1::2  (default route: the router)
--      |  veth
--   router ns  r0 10.213.1.1, fd13:1::1 | r1 198.51.100.1, 2001:db8:2::1
--      |  veth                            forwarding OFF: only luaray gets
--   outside ns o0 198.51.100.2, 2001:db8:2::2   traffic from the LAN out
--
-- The router runs the README's nftables table, ip rule and ip route lines
-- ("Inbounds for routers", with lan0 = r0) and one luaray with tproxy and
-- redirect inbounds (IPv4 and IPv6) and a direct outbound.  The client
-- (spec/e2e/tools/transparent_client.py) talks to the outside echo server
-- as to any host: before luaray runs it cannot reach it; with it, TCP
-- (3 connections, 256 KiB each way, half-close) and UDP (4 clients, 4
-- rounds, every reply from the address the client asked) work, and the
-- access log shows luaray carried each one to the original destination.
-- Then the same with the README's redirect table (TCP); a connection to
-- the listeners themselves is closed, not dialled round and round.  Then
-- tproxy through a VMess outbound to a luaray server on the outside host.
-- And a tproxy inbound started without CAP_NET_ADMIN stops with an error
-- naming it.
--
-- Needs root (namespaces, nft); without it, or when `ip netns add` fails
-- here, every test is pending with the reason.
local E = require "e2e.support"
local unistd = require "posix.unistd"

local README = E.dir .. "/../../README.md"
local TOOL = E.tools .. "/transparent_client.py"

-- The README's router blocks: the ```nft blocks and the `ip rule` / `ip
-- route` lines of the section "Inbounds for routers".
local function readme_router()
  local text = E.read_file(README)
  local sec = text:match("\n## Inbounds for routers\n(.-)\n## ")
  assert(sec, "README has no section 'Inbounds for routers'")
  local nft = {}
  for block in sec:gmatch("```nft\n(.-)```") do nft[#nft + 1] = block end
  local ip, ipt = {}, {}
  for block in sec:gmatch("```sh\n(.-)```") do
    local kind = block:match("^# iptables: (%u+)\n")
    if kind then ipt[kind:lower()] = block end
    for line in block:gmatch("[^\n]+") do
      if line:match("^ip %-?6? ?rule add") or line:match("^ip %-?6? ?route add") then
        ip[#ip + 1] = line
      end
    end
  end
  assert(#nft == 2, "README: wanted the tproxy and the redirect nft tables, found " .. #nft)
  assert(#ip == 4, "README: wanted 4 ip rule/route lines, found " .. #ip)
  assert(ipt.tproxy and ipt.redirect, "README: wanted the iptables TPROXY and REDIRECT blocks")
  return { tproxy = nft[1], redirect = nft[2], ip = ip,
           ["ipt-tproxy"] = ipt.tproxy, ["ipt-redirect"] = ipt.redirect }
end

describe("tproxy and redirect inbounds in network namespaces", function()
  local h = E.new("transparent")
  local sfx = tostring(unistd.getpid())
  local C, R, O = "lrc" .. sfx, "lrr" .. sfx, "lro" .. sfx
  local skip        -- why the namespace tests cannot run here, or nil
  local made = false
  local ASAN = os.getenv("LURAY_ASAN")

  local function sh(name, script) return h:shell(name, h:tmpdir(), script) end
  local function netns(ns, argv)
    local a = { "ip", "netns", "exec", ns }
    for _, x in ipairs(argv) do a[#a + 1] = x end
    return a
  end

  setup(function()
    if unistd.geteuid() ~= 0 then
      skip = "not root (uid " .. unistd.geteuid() .. "): network namespaces and nftables need it"
      return
    end
    for _, tool in ipairs { "/usr/sbin/ip", "/usr/sbin/nft" } do
      if not unistd.access(tool, "x") then
        skip = tool .. " is missing: run scripts/deps.sh (iproute2, nftables)"
        return
      end
    end
    local code, out = h:exec("netns-probe", { "ip", "netns", "add", C })
    if code ~= 0 then
      skip = "ip netns add failed here: " .. out:gsub("%s+$", "")
      return
    end
    made = true
    sh("netns", ([[
C=%s; R=%s; O=%s
ip netns add $R; ip netns add $O
ip link add c0 netns $C type veth peer name r0 netns $R
ip link add o0 netns $O type veth peer name r1 netns $R
ip -n $C addr add 10.213.1.2/24 dev c0; ip -n $C addr add fd13:1::2/64 dev c0 nodad
ip -n $R addr add 10.213.1.1/24 dev r0; ip -n $R addr add fd13:1::1/64 dev r0 nodad
ip -n $R addr add 198.51.100.1/24 dev r1; ip -n $R addr add 2001:db8:2::1/64 dev r1 nodad
ip -n $O addr add 198.51.100.2/24 dev o0; ip -n $O addr add 2001:db8:2::2/64 dev o0 nodad
for n in $C $R $O; do ip -n $n link set lo up; done
ip -n $C link set c0 up; ip -n $R link set r0 up; ip -n $R link set r1 up; ip -n $O link set o0 up
ip -n $C route add default via 10.213.1.1; ip -n $C -6 route add default via fd13:1::1
ip -n $O route add default via 198.51.100.1; ip -n $O -6 route add default via 2001:db8:2::1
# the router forwards nothing itself: what reaches the outside went through luaray
ip netns exec $R sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
]]):format(C, R, O))
  end)

  teardown(function()
    h:cleanup()
    if made then
      for _, ns in ipairs { C, R, O } do os.execute("ip netns del " .. ns .. " 2>/dev/null") end
    end
  end)

  -- The README's table `which` ("tproxy" or "redirect": nft; "ipt-tproxy"
  -- or "ipt-redirect": the iptables lines) on the router, instead of
  -- whatever was there (nft flush ruleset: iptables here is iptables-nft);
  -- the README's ip rule / ip route lines the first time.
  local routed = false
  local function router_table(which)
    local rd = readme_router()
    local lan = function(block) return (block:gsub('"lan0"', '"r0"')) end
    if not routed then
      sh("router-ip", ("ip netns exec %s sh -e <<'EOF'\n%s\nEOF\n"):format(R, table.concat(rd.ip, "\n")))
      routed = true
    end
    local ipt = which:match("^ipt") ~= nil
    local text = ipt and (rd[which]:gsub("%f[%w]lan0%f[%W]", "r0")) or lan(rd[which])
    sh("router-" .. which, ("ip netns exec %s nft flush ruleset\n" ..
       "ip netns exec %s %s <<'EOF'\n%sEOF\n"):format(R, R, ipt and "sh -e" or "nft -f -", text))
  end

  -- An echo server (TCP and UDP on one port) in the outside namespace.
  local function outside_echo(port)
    return h:spawn("echo-outside", netns(O, { unistd.readlink("/proc/self/exe"),
      E.tools .. "/echo_server.lua", "--port", tostring(port), "--host", "198.51.100.2",
      "--host", "2001:db8:2::2", "--lifetime", "600" }))
  end

  -- luaray in namespace ns (the router unless given).
  local function router_luaray(name, script, prefix, ns)
    local file = h:write(name .. ".lua", script)
    local argv = netns(ns or R, prefix or {})
    argv[#argv + 1] = E.luaray_bin()
    argv[#argv + 1] = "-c"
    argv[#argv + 1] = file
    local env = {}
    if ASAN then env.ASAN_OPTIONS = "detect_leaks=1:abort_on_error=1" end
    local p = h:spawn(name, argv, { env = env, keep_preload = true })
    p.luaray = true
    return p
  end

  local CONFIG = [[
luaray.log { level = "info", access = true }
luaray.inbound "tp4" { type = "tproxy", listen = "0.0.0.0:12345", network = "tcp,udp", udp_timeout = 30 }
luaray.inbound "tp6" { type = "tproxy", listen = "[::]:12345", network = "tcp,udp", udp_timeout = 30 }
luaray.inbound "rd4" { type = "redirect", listen = "0.0.0.0:12346" }
luaray.inbound "rd6" { type = "redirect", listen = "[::]:12346" }
luaray.outbound "direct" { type = "direct", connect_timeout = 5 }
]]

  -- The client's checks; -> ok, output
  local function client(...)
    local argv = netns(C, { "python3", TOOL, ... })
    local code, out = h:exec("client", argv, { timeout = 90 })
    return code == 0, out
  end

  it("tproxy catches TCP and UDP from the LAN (IPv4 and IPv6), redirect TCP", h:guard(function()
    if skip then pending(skip) return end
    local port = 7000
    outside_echo(port)
    -- the README's policy routing and TPROXY table on the router
    router_table("tproxy")
    -- without luaray the outside cannot be reached (forwarding is off)
    for _, host in ipairs { "198.51.100.2", "2001:db8:2::2" } do
      for _, proto in ipairs { "tcp", "udp" } do
        local ok, out = client("unreachable", proto .. " " .. host, proto, host, tostring(port))
        assert(ok, out)
      end
    end
    local p = router_luaray("router", CONFIG)
    assert(E.wait_log(p, "inbound rd6 %(redirect%) listening on", 1, 10))
    for _, host in ipairs { "198.51.100.2", "2001:db8:2::2" } do
      local ok, out = client("check", "tproxy tcp " .. host, "tcp", host, tostring(port),
                             tostring(256 * 1024), "3")
      assert(ok, out)
      ok, out = client("check", "tproxy udp " .. host, "udp", host, tostring(port), "4", "4")
      assert(ok, out)
    end
    -- the README's redirect table instead of the TPROXY one
    router_table("redirect")
    for _, host in ipairs { "198.51.100.2", "2001:db8:2::2" } do
      local ok, out = client("check", "redirect tcp " .. host, "tcp", host, tostring(port),
                             tostring(256 * 1024), "3")
      assert(ok, out)
    end
    -- dialled directly (not diverted, not redirected), the listeners close
    -- the connection instead of dialling themselves round and round, and a
    -- datagram sent to the tproxy socket itself is dropped
    local code, out = h:exec("direct-to-listeners", netns(R, { "python3", "-c", [[
import socket
for port in (12345, 12346):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    try:
        print(port, "eof" if s.recv(100) == b"" else "data")
    except ConnectionResetError:
        print(port, "reset")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(1.5)
u.sendto(b"to the listener itself", ("127.0.0.1", 12345))
try:
    u.recvfrom(100)
    print("udp reply")
except socket.timeout:
    print("udp dropped")
]] }), { timeout = 30 })
    assert.equal(0, code, out)
    assert.matches("12345 [er][oe][fs]", out)
    assert.matches("12346 [er][oe][fs]", out)
    assert.matches("udp dropped", out)
    h:stop_luaray(p)
    local log = E.read_file(p.log)
    assert.matches("127%.0%.0%.1:%d+ tp4 %- tcp %- %- up=0 down=0 dur=[%d.]+ not diverted by TPROXY", log)
    assert.matches("127%.0%.0%.1:%d+ rd4 %- tcp %- %- up=0 down=0 dur=[%d.]+ not redirected", log)
    -- every connection and session went through luaray to the address the
    -- client used (one UDP session per client socket: 4 per family)
    local text = E.read_file(p.log)
    local function count(pat) return E.count_matches(text, pat) end
    assert.equal(3, count("10%.213%.1%.2:%d+ tp4 %- tcp 198%.51%.100%.2:7000 direct up=262144 down=262144 "))
    assert.equal(3, count("%[fd13:1::2%]:%d+ tp6 %- tcp %[2001:db8:2::2%]:7000 direct up=262144 down=262144 "))
    assert.equal(4, count("10%.213%.1%.2:%d+ tp4 %- udp 198%.51%.100%.2:7000 direct up=%d+ down=%d+ "))
    assert.equal(4, count("%[fd13:1::2%]:%d+ tp6 %- udp %[2001:db8:2::2%]:7000 direct up=%d+ down=%d+ "))
    assert.equal(3, count("10%.213%.1%.2:%d+ rd4 %- tcp 198%.51%.100%.2:7000 direct up=262144 down=262144 "))
    assert.equal(3, count("%[fd13:1::2%]:%d+ rd6 %- tcp %[2001:db8:2::2%]:7000 direct up=262144 down=262144 "))
  end))

  it("carries what tproxy catches through a VMess outbound (TCP and UDP)", h:guard(function()
    if skip then pending(skip) return end
    local port = 7100
    outside_echo(port)
    router_table("tproxy")
    -- a luaray VMess server on the outside host
    local id = E.uuid()
    local script = E.luaray_server_script { port = 10086, listen = "198.51.100.2", users = { { id = id } } }
    local srv = router_luaray("vmess-server", script, nil, O)
    assert(E.wait_log(srv, "inbound vmess%-in %(vmess%) listening on", 1, 10))
    local p = router_luaray("router-vmess", ([[
luaray.log { level = "info", access = true }
luaray.inbound "tp4" { type = "tproxy", listen = "0.0.0.0:12345", network = "tcp,udp" }
luaray.inbound "tp6" { type = "tproxy", listen = "[::]:12345", network = "tcp,udp" }
luaray.outbound "proxy" { type = "vmess", server = "198.51.100.2:10086", id = %q }
]]):format(id))
    assert(E.wait_log(p, "inbound tp6 %(tproxy%) listening on", 1, 10))
    for _, host in ipairs { "198.51.100.2", "2001:db8:2::2" } do
      local ok, out = client("check", "vmess tcp " .. host, "tcp", host, tostring(port),
                             tostring(256 * 1024), "3")
      assert(ok, out)
      ok, out = client("check", "vmess udp " .. host, "udp", host, tostring(port), "4", "4")
      assert(ok, out)
    end
    h:stop_luaray(p)
    local text = E.read_file(p.log)
    assert.equal(3, E.count_matches(text, "10%.213%.1%.2:%d+ tp4 %- tcp 198%.51%.100%.2:7100 proxy up=262144 down=262144 "))
    assert.equal(3, E.count_matches(text, "%[fd13:1::2%]:%d+ tp6 %- tcp %[2001:db8:2::2%]:7100 proxy up=262144 down=262144 "))
    assert.equal(4, E.count_matches(text, "10%.213%.1%.2:%d+ tp4 %- udp 198%.51%.100%.2:7100 proxy "))
    assert.equal(4, E.count_matches(text, "%[fd13:1::2%]:%d+ tp6 %- udp %[2001:db8:2::2%]:7100 proxy "))
    -- the server saw the router, asking for the addresses the client used
    -- (its lines are written as its connections close: stopped first)
    h:stop_luaray(srv)
    local stext = E.read_file(srv.log)
    assert.is_true(E.count_matches(stext, "198%.51%.100%.1:%d+ vmess%-in user1@e2e udp 198%.51%.100%.2:7100 direct") >= 4)
    assert.is_true(E.count_matches(stext, "198%.51%.100%.1:%d+ vmess%-in user1@e2e tcp %[2001:db8:2::2%]:7100 direct") >= 3)
  end))

  it("works the same behind the README's iptables lines", h:guard(function()
    if skip then pending(skip) return end
    if not unistd.access("/usr/sbin/iptables", "x") then
      pending("/usr/sbin/iptables is missing: run scripts/deps.sh")
      return
    end
    local port = 7200
    outside_echo(port)
    local p = router_luaray("router-iptables", CONFIG)
    assert(E.wait_log(p, "inbound rd6 %(redirect%) listening on", 1, 10))
    router_table("ipt-tproxy")
    for _, host in ipairs { "198.51.100.2", "2001:db8:2::2" } do
      local ok, out = client("check", "iptables tproxy tcp " .. host, "tcp", host, tostring(port),
                             tostring(64 * 1024), "2")
      assert(ok, out)
      ok, out = client("check", "iptables tproxy udp " .. host, "udp", host, tostring(port), "2", "3")
      assert(ok, out)
    end
    router_table("ipt-redirect")
    for _, host in ipairs { "198.51.100.2", "2001:db8:2::2" } do
      local ok, out = client("check", "iptables redirect tcp " .. host, "tcp", host, tostring(port),
                             tostring(64 * 1024), "2")
      assert(ok, out)
    end
    h:stop_luaray(p)
    local text = E.read_file(p.log)
    local function count(pat) return E.count_matches(text, pat) end
    assert.equal(2, count("10%.213%.1%.2:%d+ tp4 %- tcp 198%.51%.100%.2:7200 direct up=65536 down=65536 "))
    assert.equal(2, count("%[fd13:1::2%]:%d+ tp6 %- tcp %[2001:db8:2::2%]:7200 direct up=65536 down=65536 "))
    assert.equal(2, count("10%.213%.1%.2:%d+ tp4 %- udp 198%.51%.100%.2:7200 direct "))
    assert.equal(2, count("%[fd13:1::2%]:%d+ tp6 %- udp %[2001:db8:2::2%]:7200 direct "))
    assert.equal(2, count("10%.213%.1%.2:%d+ rd4 %- tcp 198%.51%.100%.2:7200 direct up=65536 down=65536 "))
    assert.equal(2, count("%[fd13:1::2%]:%d+ rd6 %- tcp %[2001:db8:2::2%]:7200 direct up=65536 down=65536 "))
  end))

  it("refuses to start a tproxy inbound without CAP_NET_ADMIN, naming it", h:guard(function()
    if skip then pending(skip) return end
    local file = h:write("unprivileged.lua", CONFIG)
    -- as nobody: no capabilities at all (the binary and config are readable)
    os.execute("chmod o+rx " .. h:tmpdir() .. "; chmod o+r " .. file)
    local code, out = h:exec("unprivileged", netns(R, { "setpriv", "--reuid=65534", "--regid=65534",
      "--clear-groups", E.luaray_bin(), "-c", file }), { timeout = 20 })
    assert.equal(1, code, out)
    assert.matches("unprivileged.lua:2: inbound 'tp4' %(tproxy%) on 0%.0%.0%.0:12345: cannot make the TCP "
                   .. "socket transparent %(IP_TRANSPARENT%): operation not permitted: tproxy needs "
                   .. "CAP_NET_ADMIN", out)
    -- a check (-t) opens no socket: it passes without the privilege
    code, out = h:exec("unprivileged-check", netns(R, { "setpriv", "--reuid=65534", "--regid=65534",
      "--clear-groups", E.luaray_bin(), "-t", "-c", file }), { timeout = 20 })
    assert.equal(0, code, out)
    assert.matches("configuration OK", out)
  end))
end)
