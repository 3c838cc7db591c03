-- Routing on its own (core/route/route.c): rules declared through the typed
-- lr_conf_route_* calls, queries routed through lr_conf_route_pick (the
-- daemon's matcher, lr_route_pick, over the staged rules) -- no daemon, no
-- sockets.  First match wins; within a filter any entry matches; every
-- filter a rule has must match; a domain filter matches the name asked for
-- or, failing that, the sniffed name (and then says so: the connection is
-- dialled to the sniffed name).
local H = require "helper"
local ffi, C = H.ffi, H.C

local function ob(conf, tag, typ)
  local s = ffi.new("struct lr_conf_outbound")
  s.tag, s.type, s.where = tag, typ or "direct", "spec"
  assert.equal(C.LR_OK, C.lr_conf_outbound(conf, s), ffi.string(C.lr_conf_error(conf)))
end

local function ip4(a, b, c, d) return H.buf(string.char(a, b, c, d)) end

describe("routing (lr_route_pick through lr_conf_route_pick)", function()
  local conf, OB
  local keep = {}   -- FFI buffers a query points at

  before_each(function()
    conf = C.lr_conf_new()
    OB = { direct = 0, block = 1, proxy = 2, lan = 3 }
    ob(conf, "direct")
    ob(conf, "block", "blackhole")
    ob(conf, "proxy")
    ob(conf, "lan")
    keep = {}
  end)

  after_each(function() C.lr_conf_free(conf) end)

  local function rule(to) assert.equal(C.LR_OK, C.lr_conf_route(conf, to, "spec")) end
  local function str(kind, v) assert.equal(C.LR_OK, C.lr_conf_route_string(conf, kind, v)) end

  -- q: { host =, ip = bytes, port =, udp =, user =, inbound =, sniff =, proto = }
  local function pick(q)
    local r = ffi.new("struct lr_route_query")
    r.network = q.udp and C.LR_NET_UDP or C.LR_NET_TCP
    r.port = q.port or 443
    if q.ip then
      local b = H.buf(q.ip)
      keep[#keep + 1] = b
      r.ip = b
      r.atyp = #q.ip == 4 and C.LR_ATYP_IPV4 or C.LR_ATYP_IPV6
    else
      r.atyp = C.LR_ATYP_DOMAIN
      r.host = q.host
    end
    r.user = q.user
    r.inbound = q.inbound or "in"
    r.sniff_host = q.sniff
    r.sniff_proto = q.proto or 0
    local sn = ffi.new("int32_t[1]")
    local i = C.lr_conf_route_pick(conf, r, sn)
    assert(i >= 0, ffi.string(C.lr_conf_error(conf)))
    return i, sn[0] == 1
  end

  it("with no rule, the first outbound; with a default, that one", function()
    assert.equal(OB.direct, (pick { host = "a.example" }))
    C.lr_conf_default(conf, "proxy")
    assert.equal(OB.proxy, (pick { host = "a.example" }))
    C.lr_conf_default(conf, "nowhere")
    local r = ffi.new("struct lr_route_query")
    r.atyp, r.host, r.inbound, r.network = C.LR_ATYP_DOMAIN, "a", "in", C.LR_NET_TCP
    assert.equal(-1, C.lr_conf_route_pick(conf, r, nil))
  end)

  it("domain, suffix and keyword: case-insensitive; a suffix matches the name and its " ..
     "subdomains, not names that merely end the same", function()
    rule("block"); str(C.LR_ROUTE_DOMAIN, "exact.example")
    rule("proxy"); str(C.LR_ROUTE_DOMAIN_SUFFIX, "corp.example")
    rule("lan");   str(C.LR_ROUTE_DOMAIN_KEYWORD, "intranet")
    assert.equal(OB.block, (pick { host = "EXACT.example" }))
    assert.equal(OB.direct, (pick { host = "sub.exact.example" }))
    assert.equal(OB.proxy, (pick { host = "corp.example" }))
    assert.equal(OB.proxy, (pick { host = "a.b.CORP.example" }))
    assert.equal(OB.direct, (pick { host = "badcorp.example" }))
    assert.equal(OB.lan, (pick { host = "my-intranet.example" }))
    -- an IP destination never matches a domain filter by itself
    assert.equal(OB.direct, (pick { ip = "\10\0\0\1" }))
  end)

  it("a domain filter matches the sniffed name only when the name asked for does not, " ..
     "and then the connection goes to the sniffed name", function()
    rule("proxy"); str(C.LR_ROUTE_DOMAIN_SUFFIX, "corp.example")
    local i, to_sniffed = pick { host = "corp.example", sniff = "other.example" }
    assert.same({ OB.proxy, false }, { i, to_sniffed })
    i, to_sniffed = pick { ip = "\127\0\0\1", sniff = "www.corp.example", proto = C.LR_PROTO_TLS }
    assert.same({ OB.proxy, true }, { i, to_sniffed })
    i, to_sniffed = pick { host = "localhost", sniff = "corp.example", proto = C.LR_PROTO_HTTP }
    assert.same({ OB.proxy, true }, { i, to_sniffed })
    i, to_sniffed = pick { host = "localhost", sniff = "" }
    assert.same({ OB.direct, false }, { i, to_sniffed })
  end)

  it("CIDRs: prefixes ending inside a byte, /32, IPv6; an IPv4 rule matches IPv4-mapped IPv6 only", function()
    rule("lan");   assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, ip4(10, 0, 0, 0), 4, 8))
    rule("block"); assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, ip4(126, 0, 0, 0), 4, 7))
    rule("proxy"); assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, ip4(192, 0, 2, 7), 4, 32))
    rule("lan")
    assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, H.buf(H.unhex("20010db8000000000000000000000000")), 16, 32))
    assert.equal(OB.lan, (pick { ip = "\10\255\1\2" }))
    assert.equal(OB.block, (pick { ip = "\126\1\2\3" }))
    assert.equal(OB.block, (pick { ip = "\127\255\255\255" }))
    assert.equal(OB.direct, (pick { ip = "\128\0\0\0" }))
    assert.equal(OB.proxy, (pick { ip = "\192\0\2\7" }))
    assert.equal(OB.direct, (pick { ip = "\192\0\2\8" }))
    assert.equal(OB.lan, (pick { ip = H.unhex("20010db8ffff00000000000000000001") }))
    assert.equal(OB.direct, (pick { ip = H.unhex("20010db9000000000000000000000001") }))
    -- ::ffff:10.0.0.1 is 10.0.0.1 to the rules, as in v2ray (whose
    -- net.IPAddress turns an IPv4-mapped address into the IPv4 one)
    assert.equal(OB.lan, (pick { ip = H.unhex("00000000000000000000ffff0a000001") }))
    assert.equal(OB.direct, (pick { ip = H.unhex("00000000000000000000fffe0a000001") }))
  end)

  it("ports, network, user and inbound; every filter of a rule must match, any entry of one", function()
    rule("block")
    assert.equal(C.LR_OK, C.lr_conf_route_ports(conf, 1, 1023))
    assert.equal(C.LR_OK, C.lr_conf_route_network(conf, C.LR_NET_UDP))
    rule("proxy")
    str(C.LR_ROUTE_USER, "alice@x"); str(C.LR_ROUTE_USER, "bob@x")
    str(C.LR_ROUTE_INBOUND, "vmess-in")
    rule("lan"); assert.equal(C.LR_OK, C.lr_conf_route_ports(conf, 8080, 8081))
    assert.equal(OB.block, (pick { host = "a", port = 53, udp = true }))
    assert.equal(OB.direct, (pick { host = "a", port = 53 }))           -- TCP
    assert.equal(OB.direct, (pick { host = "a", port = 5353, udp = true }))
    assert.equal(OB.proxy, (pick { host = "a", user = "bob@x", inbound = "vmess-in" }))
    assert.equal(OB.direct, (pick { host = "a", user = "bob@x", inbound = "socks-in" }))
    assert.equal(OB.direct, (pick { host = "a", inbound = "vmess-in" })) -- no user
    assert.equal(OB.lan, (pick { host = "a", port = 8081 }))
    assert.equal(OB.direct, (pick { host = "a", port = 8082 }))
  end)

  it("protocol: what sniffing saw; the first rule that matches wins", function()
    rule("proxy"); assert.equal(C.LR_OK, C.lr_conf_route_protocol(conf, C.LR_PROTO_TLS))
    rule("block"); str(C.LR_ROUTE_DOMAIN_SUFFIX, "example")
    assert.equal(OB.proxy, (pick { host = "a.example", proto = C.LR_PROTO_TLS }))
    assert.equal(OB.block, (pick { host = "a.example", proto = C.LR_PROTO_HTTP }))
    assert.equal(OB.block, (pick { host = "a.example" }))
  end)

  it("a rule to an outbound that does not exist is an error", function()
    rule("nowhere"); str(C.LR_ROUTE_DOMAIN, "a")
    local r = ffi.new("struct lr_route_query")
    r.atyp, r.host, r.inbound, r.network = C.LR_ATYP_DOMAIN, "a", "in", C.LR_NET_TCP
    assert.equal(-1, C.lr_conf_route_pick(conf, r, nil))
    assert.equal("route to unknown outbound 'nowhere'", ffi.string(C.lr_conf_error(conf)))
  end)
end)
