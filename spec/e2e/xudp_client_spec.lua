-- XUDP as a client: `xudp = true` on luaray's VMess outbound sends a SOCKS5
-- UDP association (ports 53/443 apart) as ONE Mux.Cool/XUDP stream, as
-- Xray's VMess client does.
--   * to luaray's server (its XUDP server): one association reaches two UDP
--     echo servers and a reflector, each reply with its source; the server
--     logs ONE UDP stream for all of them; a third address that was never
--     sent to reaches the client through the server's mapping (full cone);
--     a new association from the same source port gets the same mapping
--     (the same GlobalID: the server hands it over)
--   * the bytes on the wire, against an independent XUDP server peer
--     (tools/xudp_server_peer.py, written from the wire description: it
--     decrypts the VMessAEAD request itself): command 3, the New frame with
--     the GlobalID, Keep frames with each destination, addressed replies,
--     port 53 on a VMess UDP connection of its own, the GlobalID stable per
--     client source
--   * a destination the client's rules send to direct leaves the stream
--   * with mux on too: the XUDP stream is a connection of its own
--   * the config: xudp is a boolean, needs udp
-- xudp = false (the default) is what mux_client_spec, interop_spec and
-- xudp_spec run with. Loopback only.
local E = require "e2e.support"

local TOOL = E.tools .. "/xudp_server_peer.py"

describe("XUDP on the VMess outbound (client)", function()
  local h = E.new("xudp_client")
  teardown(function() h:cleanup() end)

  local function peer(name, args)
    local argv = { "python3", TOOL }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return h:exec(name, argv, { timeout = 90 })
  end

  local function through_luaray(mux, again)
    local e1 = h:echo_server { name = "echo1" .. (mux and "-m" or "") }
    local e2 = h:echo_server { name = "echo2" .. (mux and "-m" or ""), hosts = { "127.0.0.2" } }
    local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
    local srv = h:luaray("luaray-xudp-server" .. (mux and "-m" or ""), E.luaray_server_script {
      port = sp, users = { { id = id, email = "xc@e2e" } } })
    local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
      xudp = true, mux = mux }
    local cli = h:luaray("luaray-xudp-client" .. (mux and "-m" or ""), text, o)
    local code, log = peer("xudp-socks" .. (mux and "-m" or ""), { "socks",
      "--socks", "127.0.0.1:" .. socks, "--echo", "127.0.0.1:" .. e1.port,
      "--echo2", "127.0.0.2:" .. e2.port, "--again", again and "1" or "0" })
    print(log)
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS socks", 1, true), log)
    -- ONE stream per association: the server routed one UDP session, by
    -- the first destination (echo1, echo2 or the reflector, whichever went
    -- first); with `again` the peer made a second association
    -- (access lines are written when the streams end: the client's
    -- association has closed, so the carrier ends, its streams first)
    local stext = assert(E.wait_log(srv, "xc@e2e tcp v1%.mux%.cool", 1, 20))
    local udp = E.count_matches(stext, "xc@e2e udp ", true)
    if again then
      -- the first association's stream was handed to the second (same
      -- GlobalID), which the server keeps for 60 s after its connection
      -- went: at most that one stream has ended by now
      assert.is_true(udp <= 1, "UDP streams on the server:\n" .. stext)
      assert.equal(2, E.count_matches(E.read_file(cli.log), "xudp stream for", true))
    else
      assert.equal(1, udp, "UDP streams on the server:\n" .. stext)
      assert.equal(1, E.count_matches(E.read_file(cli.log), "xudp stream for", true))
    end
    assert.is_true(h:alive(srv))
    assert.is_true(h:alive(cli))
    return cli
  end

  it("to luaray's server: one stream, two echoes and a reflector, full cone", h:guard(function()
    through_luaray(nil, true)
  end))

  it("a destination the rules send elsewhere leaves the stream; the rest stay on it", h:guard(function()
    local e1 = h:echo_server { name = "echo1-r" }
    local e2 = h:echo_server { name = "echo2-r", hosts = { "127.0.0.2" } }
    local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
    local srv = h:luaray("luaray-xudp-server-r", E.luaray_server_script {
      port = sp, users = { { id = id, email = "xc@e2e" } } })
    local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
      xudp = true, extra = 'luaray.outbound "direct" { type = "direct" }\n' ..
                           'luaray.route { ip_cidr = "127.0.0.2/32", to = "direct" }\n' }
    local cli = h:luaray("luaray-xudp-client-r", text, o)
    local code, log = peer("xudp-socks-r", { "socks", "--socks", "127.0.0.1:" .. socks,
      "--echo", "127.0.0.1:" .. e1.port, "--echo2", "127.0.0.2:" .. e2.port })
    print(log)
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS socks", 1, true), log)
    -- echo2 went direct from the client (its own session), the rest on ONE
    -- stream that the server saw; the server never saw echo2
    local ctext = assert(E.wait_log(cli, "udp 127%.0%.0%.2:" .. e2.port .. " direct", 1, 20))
    assert.equal(1, E.count_matches(ctext, "xudp stream for", true))
    local stext = assert(E.wait_log(srv, "xc@e2e tcp v1%.mux%.cool", 1, 20))
    assert.equal(1, E.count_matches(stext, "xc@e2e udp ", true), stext)
    assert.equal(0, E.count_matches(stext, "127.0.0.2:" .. e2.port, true), stext)
  end))

  it("with mux on as well: the XUDP stream is a connection of its own", h:guard(function()
    local cli = through_luaray({ concurrency = 8 })
    assert.equal(0, E.count_matches(E.read_file(cli.log), "new mux connection", true))
  end))

  it("the frames on the wire, byte by byte, against an independent XUDP server", h:guard(function()
    local id, sp, socks = E.uuid(), E.free_port(), E.free_port()
    local text, o = E.luaray_client_script { socks_port = socks, server_port = sp, id = id,
      xudp = true, security = "aes-128-gcm", masking = false }
    h:luaray("luaray-xudp-wire", text, o)
    local code, log = peer("xudp-wire", { "wire", "--listen", tostring(sp), "--id", id,
      "--socks", "127.0.0.1:" .. socks })
    print(log)
    assert.equal(0, code, log)
    assert.truthy(log:find("PASS wire", 1, true), log)
  end))

  it("config: xudp = true passes -t (its errors: spec/lua/config_spec.lua)", h:guard(function()
    local file = h:write("good-xudp.lua", [[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }
luaray.outbound "proxy" { type = "vmess", server = "127.0.0.1:10086",
  id = "b831381d-6324-4d53-ad4f-8cda48b30811", xudp = true, mux = { concurrency = 8 } }
]])
    local code, out = h:exec("luaray-check-xudp", { E.luaray_bin(), "-t", "-c", file })
    assert.equal(0, code, out)
    file = h:write("bad-xudp.lua", [[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }
luaray.outbound "proxy" { type = "vmess", server = "127.0.0.1:10086",
  id = "b831381d-6324-4d53-ad4f-8cda48b30811", xudp = "yes" }
]])
    code, out = h:exec("luaray-check-xudp-bad", { E.luaray_bin(), "-t", "-c", file })
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("bad-xudp.lua:2", 1, true) and out:find("xudp", 1, true), out)
  end))
end)
