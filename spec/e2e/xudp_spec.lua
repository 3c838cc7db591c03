-- XUDP (Xray's UDP over Mux.Cool) on luaray's VMess inbound, against an
-- independent client: tools/xudp_peer.py makes the VMessAEAD request and the
-- Mux.Cool/XUDP frames itself from the wire description (its KDF and header
-- sealing are checked against spec/vectors first), never from luaray's code.
--   * one XUDP session (GlobalID set, session id 0 as Xray sends it) reaches
--     two UDP echo servers (one also by the name "localhost", resolved by
--     the server) and a reflector; every reply carries its source;
--     a third address the session never sent to reaches its port (full cone)
--   * the GlobalID: a second connection (same user) takes the mapping over,
--     also after the first was lost; another GlobalID or user gets its own
--   * a per-packet destination that the rules send elsewhere is dropped
--   * bad frames (wrong network, a cut address, a bad Keep address, too many
--     sessions, a cut frame, metaLen > 512) end only their stream or only
--     their connection; a neighbour connection goes on
-- Loopback only; the peer resends a datagram at most 3 times (a busy host).
local E = require "e2e.support"

local TOOL = E.tools .. "/xudp_peer.py"

describe("XUDP on the VMess inbound", function()
  local h = E.new("xudp")
  teardown(function() h:cleanup() end)

  local function peer(name, args, timeout)
    local argv = { "python3", TOOL }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, log = h:exec(name, argv, { timeout = timeout or 90 })
    return code, log
  end

  it("the test peer's VMessAEAD encoder matches the vectors", h:guard(function()
    local code, log = peer("xudp-selftest", { "selftest", E.dir .. "/../vectors" })
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS selftest", 1, true), log)
  end))

  it("one session reaches two echo servers, each reply with its source; full cone", h:guard(function()
    -- echo1 also on ::1 (when there is IPv6): "localhost" reaches it either way
    local e1 = h:echo_server { name = "echo1", ipv6 = E.has_ipv6() }
    local e2 = h:echo_server { name = "echo2", hosts = { "127.0.0.2" } }
    local id, port = E.uuid(), E.free_port()
    local srv = h:luaray("luaray-xudp", E.luaray_server_script {
      port = port, users = { { id = id, email = "xudp@e2e" } } })
    local code, log = peer("xudp-peer", { "xudp", "--server", "127.0.0.1:" .. port, "--id", id,
      "--echo", "127.0.0.1:" .. e1.port, "--echo2", "127.0.0.2:" .. e2.port,
      "--echo-name", "localhost:" .. e1.port })
    print(log)
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS xudp", 1, true), log)
    -- one mux connection, one UDP session, routed once by its New frame
    assert(E.wait_log(srv, "udp 127%.0%.0%.1:" .. e1.port .. " direct", 1, 10))
  end))

  it("a per-packet destination the rules send elsewhere is dropped", h:guard(function()
    local e1 = h:echo_server { name = "echo-ok" }
    local e2 = h:echo_server { name = "echo-blocked", hosts = { "127.0.0.3" } }
    local id, port = E.uuid(), E.free_port()
    local text, o = E.luaray_server_script {
      port = port, users = { { id = id } },
      extra = 'luaray.outbound "block" { type = "blackhole" }\n' ..
              'luaray.route { ip_cidr = "127.0.0.3/32", to = "block" }\n' }
    h:luaray("luaray-xudp-route", text, o)
    -- the second echo sits behind the block rule: its datagrams never leave,
    -- so the peer's check (every reply comes back) must fail on echo2 only
    local code, log = peer("xudp-peer-route", { "xudp", "--server", "127.0.0.1:" .. port,
      "--id", id, "--echo", "127.0.0.1:" .. e1.port, "--echo2", "127.0.0.3:" .. e2.port,
      "--rounds", "3", "--tries", "2" })
    print(log)
    assert.equal(1, code, log)
    assert.truthy(log:find("FAIL xudp: 3 of 7 echoes never came back", 1, true), log)
  end))

  it("a GlobalID takes its mapping over from another connection, also a lost one", h:guard(function()
    local id, id2, port = E.uuid(), E.uuid(), E.free_port()
    local srv = h:luaray("luaray-xudp-gid", E.luaray_server_script {
      port = port, users = { { id = id, email = "a@e2e" }, { id = id2, email = "b@e2e" } } })
    local code, log = peer("xudp-peer-gid", { "reattach", "--server", "127.0.0.1:" .. port,
      "--id", id, "--id2", id2 })
    print(log)
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS reattach", 1, true), log)
    assert.is_true(h:alive(srv))
  end))

  it("v2ray 4.34's mux UDP (no GlobalID, no addresses) works as before beside it", h:guard(function()
    local echo = h:echo_server { name = "echo-v2" }
    local id, port, socks = E.uuid(), E.free_port(), E.free_port()
    h:luaray("luaray-xudp-v2", E.luaray_server_script { port = port, users = { { id = id } } })
    h:v2ray("v2ray-mux-client", E.v2ray_client_config { socks_port = socks, server_port = port,
      id = id, security = "aes-128-gcm", mux = true })
    local ok, err = E.check_socks_udp("127.0.0.1", socks, echo, { recv_timeout = 10 })
    assert.is_true(ok, "v2ray mux UDP: " .. tostring(err))
    local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 10))
    assert(E.transfer_echo(s, 128 * 1024, { timeout = 20 }))
  end))

  it("bad frames end only their stream or their connection", h:guard(function()
    local e1 = h:echo_server { name = "echo-bad" }
    local id, port = E.uuid(), E.free_port()
    local srv = h:luaray("luaray-xudp-bad", E.luaray_server_script {
      port = port, users = { { id = id } }, max_sessions = 4 })
    local code, log = peer("xudp-peer-bad", { "bad", "--server", "127.0.0.1:" .. port, "--id", id,
      "--echo", "127.0.0.1:" .. e1.port, "--max-sessions", "4" })
    print(log)
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS bad", 1, true), log)
    assert(E.wait_log(srv, "bad mux frame", 1, 5))
    assert.is_true(h:alive(srv))
  end))
end)
