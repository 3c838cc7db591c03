-- Route filters end to end, through the typed calls daemon.lua makes
-- (lr_conf_route_cidr with config.lua's address bytes, lr_conf_route_ports
-- with integer ranges, lr_conf_route_network / lr_conf_route_protocol with
-- api.h's masks, lr_conf_route_string for the rest): one luaray with a
-- SOCKS5 inbound and rules whose outbound tags say which rule matched.
-- Every outbound a correct rule set never picks is a blackhole, so a
-- wrong match fails the transfer, and the access log names the rule's tag.
-- Loopback only: the destinations are the echo server on 127.0.0.1,
-- 127.0.0.2 (blocked, never dialled) and ::1 (when the host has IPv6).
local E = require "e2e.support"

local KiB = 1024

describe("route filters", function()
  local h = E.new("route_filters")

  teardown(function() h:cleanup() end)

  it("CIDR, port, network and sniffed-protocol rules pick the outbound they name", h:guard(function()
    local v6 = E.has_ipv6()
    local echo = h:echo_server { hosts = { "127.0.0.2" }, ipv6 = v6 }
    local P, socks = echo.port, E.free_port()
    -- every port but P (P is an ephemeral port: 1 < P < 65535)
    assert.is_true(P > 1 and P < 65535)
    local others = ("1-%d,%d-65535"):format(P - 1, P + 1)
    local srv = h:luaray("route-filters", ([[
luaray.log { level = "info", access = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d", udp = true }
luaray.outbound "unmatched" { type = "blackhole" }
luaray.outbound "wrong" { type = "blackhole" }
luaray.outbound "by-http" { type = "direct", connect_timeout = 5 }
luaray.outbound "by-udp" { type = "direct", connect_timeout = 5 }
luaray.outbound "by-cidr" { type = "direct", connect_timeout = 5 }
luaray.outbound "by-cidr6" { type = "direct", connect_timeout = 5 }
-- 127.0.0.1 is outside 128.0.0.0/1 and is not 127.0.0.2; ::1 is not ::2
luaray.route { ip_cidr = { "128.0.0.0/1", "127.0.0.2", "::2" }, to = "wrong" }
luaray.route { port = "%s", to = "wrong" }
-- an HTTP request is not a TLS ClientHello
luaray.route { protocol = "tls", to = "wrong" }
luaray.route { protocol = "http", to = "by-http" }
luaray.route { network = "udp", ip_cidr = "127.0.0.0/8", port = %d, to = "by-udp" }
-- 126.0.0.0/7 holds 126/8 and 127/8: a prefix that ends inside a byte
luaray.route { network = "tcp", ip_cidr = "126.0.0.0/7", port = "%d-%d", to = "by-cidr" }
luaray.route { network = "tcp", ip_cidr = "::/127", to = "by-cidr6" }
luaray.route { default = "unmatched" }
]]):format(socks, others, P, P, P), { ports = { socks } })

    local function connect(host, port)
      return assert(E.socks5_connect("127.0.0.1", socks, host, port, nil, nil, 5))
    end
    -- plain bytes to 127.0.0.1:P: the IPv4 CIDR rule (after the rules that must not match)
    local s = connect("127.0.0.1", P)
    assert(E.transfer_echo(s, 16 * KiB, { timeout = 15 }))
    -- an HTTP request: the http protocol rule, not the tls one
    s = connect("127.0.0.1", P)
    local req = "GET /route HTTP/1.1\r\nHost: sniffed.example\r\n\r\n"
    s:settimeout(15)
    assert(s:send(req))
    assert.equal(req, s:receive(#req))
    s:close()
    -- UDP datagrams to 127.0.0.1:P: the network = "udp" rule
    assert(E.check_socks_udp("127.0.0.1", socks, echo, { sizes = { 100, 1000 }, recv_timeout = 10 }))
    -- 127.0.0.2 (a /32 in the first rule) and another port (the port rule):
    -- blocked, never dialled
    for _, dst in ipairs { { "127.0.0.2", P }, { "127.0.0.1", echo.source_port } } do
      s = E.socks5_connect("127.0.0.1", socks, dst[1], dst[2], nil, nil, 5)
      if s then
        assert.is_false(E.transfer_echo(s, 64, { timeout = 3 }), dst[1] .. ":" .. dst[2] .. " was relayed")
      end
    end
    if v6 then
      s = connect("::1", P)
      assert(E.transfer_echo(s, 16 * KiB, { timeout = 15 }))
    end

    -- one access line per connection, naming the outbound its rule chose
    local want = {
      { "tcp 127%.0%.0%.1:" .. P .. " by%-cidr ", 1 },
      { "tcp 127%.0%.0%.1:" .. P .. " by%-http ", 1 },
      { "tcp 127%.0%.0%.2:" .. P .. " wrong ", 1 },
      { "tcp 127%.0%.0%.1:" .. echo.source_port .. " wrong ", 1 },
      { "udp 127%.0%.0%.1:" .. P .. " by%-udp ", 1 },   -- when the association closed
    }
    if v6 then want[#want + 1] = { "tcp %[::1%]:" .. P .. " by%-cidr6 ", 1 } end
    for _, w in ipairs(want) do assert(E.wait_log(srv, w[1], w[2], 15)) end
    h:stop_luaray(srv)
    local log = E.read_file(srv.log)
    for _, w in ipairs(want) do assert.equal(w[2], E.count_matches(log, w[1]), w[1] .. "\n" .. log) end
    assert.equal(0, E.count_matches(log, " unmatched "), log)
    assert.equal(2, E.count_matches(log, " wrong "), log)
  end))
end)
