-- The config DSL for the inbounds for routers (lua/luaray/config.lua,
-- design.md 9): type = "tunnel" (to, network, udp_timeout), "tproxy"
-- (network, udp_timeout), "redirect" (network = "tcp"): the normalised
-- result and the exact file:line of every error.  Pure Lua.
local config = require "luaray.config"

local BASE = 'luaray.outbound "direct" { type = "direct" }'

local function load(line)
  return config.load_string(BASE .. "\n" .. line .. "\n", "=cfg.lua")
end

local function ok(line)
  local cfg, err = load(line)
  assert(cfg, err)
  return cfg.inbounds[1]
end

local function fails(expected, line)
  local cfg, err = load(line)
  assert.is_nil(cfg)
  assert.equal("cfg.lua:2: " .. expected, err)
end

describe("tunnel inbound config", function()
  it("normalises to, network and udp_timeout", function()
    local ib = ok('luaray.inbound "dns" { type = "tunnel", listen = "127.0.0.1:5353", to = "1.1.1.1:53", network = "udp" }')
    assert.same({ host = "1.1.1.1", port = 53 }, ib.to)
    assert.same({ udp = true }, ib.network)
    assert.equal(60, ib.udp_timeout)
    assert.equal("tunnel", ib.type)
    ib = ok('luaray.inbound "t" { type = "tunnel", listen = "[::1]:15", to = "[2001:db8::1]:22" }')
    assert.same({ host = "2001:db8::1", port = 22 }, ib.to)
    assert.same({ tcp = true }, ib.network)         -- default: TCP
    assert.is_nil(ib.udp_timeout)
    ib = ok('luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "example.com:443", network = "tcp,udp", udp_timeout = 5 }')
    assert.same({ host = "example.com", port = 443 }, ib.to)
    assert.same({ tcp = true, udp = true }, ib.network)
    assert.equal(5, ib.udp_timeout)
    ib = ok('luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.example:1", network = { "udp", "tcp" } }')
    assert.same({ tcp = true, udp = true }, ib.network)
  end)

  it("refuses a bad tunnel with file:line", function()
    fails("missing required key 'to' in inbound 't'",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15" }')
    fails("'to' in inbound 't' must be \"host:port\" (IPv6 in brackets, port 1-65535), got string \"1.1.1.1\"",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "1.1.1.1" }')
    fails("'to' in inbound 't' must be \"host:port\" (IPv6 in brackets, port 1-65535), got number 53",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = 53 }')
    fails("'network' in inbound 't' must be \"tcp\", \"udp\" or \"tcp,udp\", got string \"icmp\"",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.b:1", network = "icmp" }')
    fails("'network' in inbound 't' must be \"tcp\", \"udp\" or \"tcp,udp\", got string \"tcp,tcp\"",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.b:1", network = "tcp,tcp" }')
    fails("'network' in inbound 't' must be \"tcp\", \"udp\" or \"tcp,udp\", got string \"\"",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.b:1", network = "" }')
    fails("'udp_timeout' in inbound 't' needs network = \"udp\" or \"tcp,udp\"",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.b:1", udp_timeout = 3 }')
    fails("unknown key 'proxy_protocol' in inbound 't'",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.b:1", proxy_protocol = true }')
    fails("unknown key 'udp' in inbound 't'",
          'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:15", to = "a.b:1", udp = true }')
  end)
end)

describe("tproxy and redirect inbound config", function()
  it("normalises network", function()
    local ib = ok('luaray.inbound "tp" { type = "tproxy", listen = "0.0.0.0:12345", network = "tcp,udp" }')
    assert.same({ tcp = true, udp = true }, ib.network)
    assert.equal(60, ib.udp_timeout)
    assert.is_nil(ib.to)
    ib = ok('luaray.inbound "tp6" { type = "tproxy", listen = "[::]:12345" }')
    assert.same({ tcp = true }, ib.network)
    ib = ok('luaray.inbound "rd" { type = "redirect", listen = "0.0.0.0:12346" }')
    assert.same({ tcp = true }, ib.network)
    assert.equal("redirect", ib.type)
  end)

  it("refuses bad ones with file:line", function()
    fails("'to' in inbound 'tp': a tproxy inbound relays to the address each client used ('to' is for type = \"tunnel\")",
          'luaray.inbound "tp" { type = "tproxy", listen = "0.0.0.0:1", to = "1.1.1.1:53" }')
    fails("'to' in inbound 'rd': a redirect inbound relays to the address each client used ('to' is for type = \"tunnel\")",
          'luaray.inbound "rd" { type = "redirect", listen = "0.0.0.0:1", to = "1.1.1.1:53" }')
    fails("'network' in inbound 'rd' must be \"tcp\" (redirect is TCP only), got string \"tcp,udp\"",
          'luaray.inbound "rd" { type = "redirect", listen = "0.0.0.0:1", network = "tcp,udp" }')
    fails("'network' in inbound 'rd' must be \"tcp\" (redirect is TCP only), got string \"udp\"",
          'luaray.inbound "rd" { type = "redirect", listen = "0.0.0.0:1", network = "udp" }')
    fails("unknown key 'udp_timeout' in inbound 'rd'",
          'luaray.inbound "rd" { type = "redirect", listen = "0.0.0.0:1", udp_timeout = 3 }')
    fails("'listen' in inbound 'tp' must be an IP address and port (\"0.0.0.0:12345\", \"[::]:12345\"), got string \"localhost:1\"",
          'luaray.inbound "tp" { type = "tproxy", listen = "localhost:1" }')
    fails("'udp_timeout' in inbound 'tp' must be a number of seconds > 0 and <= 2592000, got number 0",
          'luaray.inbound "tp" { type = "tproxy", listen = "0.0.0.0:1", network = "udp", udp_timeout = 0 }')
    fails("unknown key 'trusted_proxies' in inbound 'tp'",
          'luaray.inbound "tp" { type = "tproxy", listen = "0.0.0.0:1", trusted_proxies = { "10.0.0.0/8" } }')
    fails("'type' in inbound 'x' must be one of vmess, socks, http, tunnel, tproxy, redirect, got string \"dokodemo\"",
          'luaray.inbound "x" { type = "dokodemo", listen = "0.0.0.0:1" }')
  end)
end)
