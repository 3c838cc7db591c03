-- The typed route-filter calls of the staging config (api.h: lr_conf_route_*,
-- core/daemon/conf.c), called through the FFI the way lua/luaray/daemon.lua
-- calls them: good values are taken, bad ones refused with LR_EINVAL and a
-- message in lr_conf_error.  (That the rules then route as they say is
-- spec/e2e/route_filters_spec.lua.)
local H = require "helper"
local ffi, C = H.ffi, H.C

describe("lr_conf_route_* (typed route filters)", function()
  local conf

  before_each(function()
    conf = C.lr_conf_new()
    assert(conf ~= nil)
  end)

  after_each(function()
    C.lr_conf_free(conf)
  end)

  local function err() return ffi.string(C.lr_conf_error(conf)) end

  -- rc of a call that must fail, and its message
  local function refused(rc, msg)
    assert.equal(C.LR_EINVAL, rc)
    assert.equal(msg, err())
  end

  local function with_rule()
    assert.equal(C.LR_OK, C.lr_conf_route(conf, "direct", "cfg.lua:4"))
  end

  local v4 = H.buf("\10\0\0\0")
  local v6 = H.buf(H.unhex("20010db8000000000000000000000000"))

  it("refuses every filter before a route is started", function()
    local no_route = "filter without a route"
    refused(C.lr_conf_route_cidr(conf, v4, 4, 8), no_route)
    refused(C.lr_conf_route_ports(conf, 80, 80), no_route)
    refused(C.lr_conf_route_network(conf, C.LR_NET_TCP), no_route)
    refused(C.lr_conf_route_protocol(conf, C.LR_PROTO_TLS), no_route)
    refused(C.lr_conf_route_string(conf, C.LR_ROUTE_DOMAIN, "a.example"), no_route)
  end)

  it("takes IPv4 and IPv6 blocks up to the address length, and refuses longer prefixes", function()
    with_rule()
    for _, bits in ipairs { 0, 1, 8, 31, 32 } do
      assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, v4, 4, bits))
    end
    for _, bits in ipairs { 0, 32, 127, 128 } do
      assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, v6, 16, bits))
    end
    -- a Lua string of bytes, as daemon.lua passes config.lua's `ip`
    assert.equal(C.LR_OK, C.lr_conf_route_cidr(conf, "\127\0\0\1", 4, 32))
    refused(C.lr_conf_route_cidr(conf, v4, 4, 33), "bad CIDR: /33 is longer than an IPv4 address")
    refused(C.lr_conf_route_cidr(conf, v6, 16, 129), "bad CIDR: /129 is longer than an IPv6 address")
    refused(C.lr_conf_route_cidr(conf, v6, 4, 0xffffffff),
            "bad CIDR: /4294967295 is longer than an IPv4 address")
  end)

  it("refuses an address that is not 4 or 16 bytes", function()
    with_rule()
    for _, len in ipairs { 0, 3, 5, 8, 15, 17 } do
      refused(C.lr_conf_route_cidr(conf, v6, len, 0),
              ("bad CIDR: the address must be 4 or 16 bytes (got %d)"):format(len))
    end
    refused(C.lr_conf_route_cidr(conf, nil, 4, 8), "bad CIDR: the address must be 4 or 16 bytes (got 4)")
  end)

  it("takes port ranges lo <= hi <= 65535 and refuses the rest", function()
    with_rule()
    assert.equal(C.LR_OK, C.lr_conf_route_ports(conf, 80, 80))
    assert.equal(C.LR_OK, C.lr_conf_route_ports(conf, 1, 65535))
    assert.equal(C.LR_OK, C.lr_conf_route_ports(conf, 8000, 9000))
    refused(C.lr_conf_route_ports(conf, 443, 80), "bad port range 443-80")
    refused(C.lr_conf_route_ports(conf, 1, 65536), "bad port range 1-65536")
    refused(C.lr_conf_route_ports(conf, 70000, 70000), "bad port range 70000-70000")
  end)

  it("takes network and protocol masks of api.h's bits only", function()
    with_rule()
    for _, m in ipairs { C.LR_NET_TCP, C.LR_NET_UDP, bit.bor(C.LR_NET_TCP, C.LR_NET_UDP) } do
      assert.equal(C.LR_OK, C.lr_conf_route_network(conf, m))
    end
    for _, m in ipairs { C.LR_PROTO_TLS, C.LR_PROTO_HTTP, bit.bor(C.LR_PROTO_TLS, C.LR_PROTO_HTTP) } do
      assert.equal(C.LR_OK, C.lr_conf_route_protocol(conf, m))
    end
    local all_net = bit.bor(C.LR_NET_TCP, C.LR_NET_UDP)
    local all_proto = bit.bor(C.LR_PROTO_TLS, C.LR_PROTO_HTTP)
    -- nothing, and a bit beyond the known ones (alone or with a known one)
    for _, m in ipairs { 0, all_net + 1, bit.bor(C.LR_NET_TCP, 0x80), 0x80000000 } do
      refused(C.lr_conf_route_network(conf, m),
              ("bad network mask 0x%x (LR_NET_TCP | LR_NET_UDP)"):format(m))
    end
    for _, m in ipairs { 0, all_proto + 1, bit.bor(C.LR_PROTO_HTTP, 0x40), 0x80000000 } do
      refused(C.lr_conf_route_protocol(conf, m),
              ("bad protocol mask 0x%x (LR_PROTO_TLS | LR_PROTO_HTTP)"):format(m))
    end
  end)

  it("takes a string for each string kind and refuses unknown kinds and NULL", function()
    with_rule()
    for _, kind in ipairs { C.LR_ROUTE_DOMAIN, C.LR_ROUTE_DOMAIN_SUFFIX, C.LR_ROUTE_DOMAIN_KEYWORD,
                            C.LR_ROUTE_USER, C.LR_ROUTE_INBOUND, C.LR_ROUTE_DOMAIN_REGEX } do
      assert.equal(C.LR_OK, C.lr_conf_route_string(conf, kind, "x.example"))
    end
    for _, kind in ipairs { 0, C.LR_ROUTE_DOMAIN_REGEX + 1, 0xffffffff } do
      refused(C.lr_conf_route_string(conf, kind, "x.example"),
              ("unknown route filter kind %u"):format(kind))
    end
    refused(C.lr_conf_route_string(conf, C.LR_ROUTE_DOMAIN, nil),
            ("route filter %u without a value"):format(C.LR_ROUTE_DOMAIN))
  end)

  it("api.h's masks are distinct bits, and the sniffed flag is above every hook kind", function()
    -- daemon.lua ORs these together and bridge.c tests them bit by bit
    for _, pair in ipairs { { C.LR_NET_TCP, C.LR_NET_UDP }, { C.LR_PROTO_TLS, C.LR_PROTO_HTTP } } do
      local a, b = pair[1], pair[2]
      assert.equal(0, bit.band(a, a - 1), "not a single bit")
      assert.equal(0, bit.band(b, b - 1), "not a single bit")
      assert.equal(0, bit.band(a, b))
    end
    assert.equal(0, bit.band(C.LR_HOOKS_SNIFFED, C.LR_HOOKS_SNIFFED - 1), "not a single bit")
    assert.is_true(C.LR_HOOKS_SNIFFED >= bit.lshift(1, C.LR_HOOK_COUNT))
  end)
end)
