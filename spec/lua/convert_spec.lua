-- luaray.convert (v2ray/Xray JSON and vmess:// links to luaray configs) and
-- luaray.json's decode_config (JSON with comments, errors at line:column).
-- Every converted text is loaded by the real DSL (luaray.config) and the
-- result compared (the rules naming geosite/geoip lists with routing data
-- written by spec/geodat.lua).
local convert = require "luaray.convert"
local config = require "luaray.config"
local json = require "luaray.json"
local link = require "luaray.link"
local cjson = require "cjson"

local ID = "de305d54-75b4-431b-adb2-eb6b9e546014"
local ID2 = "b831381d-6324-4d53-ad4f-8cda48b30811"

local function conv(t)
  local text, n = convert.convert(type(t) == "table" and cjson.encode(t) or t, "test.json")
  assert(text, n)
  return text, n
end

local function load(text)
  local cfg, err = config.load_string(text, "=converted")
  assert(cfg, tostring(err) .. "\n" .. text)
  return cfg
end

local function has(text, s) return text:find(s, 1, true) ~= nil end

-- routing data for the converted rules that name geosite/geoip lists
-- (written by spec/geodat.lua; luaray.geodata points at it)
local G = require "geodat"
local GEODIR = os.tmpname()
os.remove(GEODIR)
assert(os.execute("mkdir -p '" .. GEODIR .. "'") == 0)
local function put(name, bytes)
  local f = assert(io.open(GEODIR .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end
put("geosite.dat", G.geosite({ { "cn", { { G.T.domain, "cn.example" } } } }))
put("geoip.dat", G.geoip({ { "private", { "10.0.0.0/8", "192.168.0.0/16" } } }))
local function load_geo(text)
  return load(("luaray.geodata { dir = %q }\n"):format(GEODIR) .. text)
end
teardown(function()
  os.remove(GEODIR .. "/geosite.dat")
  os.remove(GEODIR .. "/geoip.dat")
  os.remove(GEODIR)
end)

describe("json.decode_config", function()
  it("takes // # and /* */ comments between tokens, and a byte order mark", function()
    local v = assert(json.decode_config('\239\187\191// head\n{ # hash\n "a": /* in */ 1, "b": ["//x", "/*y*/", "#z"] }\n// end'))
    assert.equal(1, v.a)
    assert.same({ "//x", "/*y*/", "#z" }, v.b)
  end)

  it("says line and column of an error", function()
    assert.same({ nil, "line 3, column 8: ':' expected" },
                { json.decode_config('{\n "a": 1,\n "bcd" 2 }') })
    assert.same({ nil, "line 2, column 2: unterminated /* comment" },
                { json.decode_config('{\n /* open\n') })
    assert.same({ nil, "line 1, column 10: trailing characters after the value" },
                { json.decode_config('{"a": 1} x') })
    assert.same({ nil, "line 1, column 1: unexpected end" }, { json.decode_config('') })
  end)

  it("leaves json.decode strict (no comments)", function()
    assert.is_nil(json.decode('{"a":1} // x'))
    assert.equal(1, json.decode('{"a":1}').a)
  end)
end)

describe("convert", function()
  it("a v2ray VMess server: users, listen, allow_private, log", function()
    local text, n = conv {
      log = { loglevel = "warning", access = "none" },
      inbounds = { { port = 10086, protocol = "vmess",
                     settings = { clients = { { id = ID, email = "a@x", level = 1, alterId = 4 } } } } },
      outbounds = { { protocol = "freedom", settings = { domainStrategy = "UseIPv4" } } },
    }
    assert.equal(0, n)
    local cfg = load(text)
    assert.same({ level = "warn", access = false }, cfg.log)
    assert.equal(1, #cfg.users)
    assert.same({ ID, "a@x", 4, 1 }, { cfg.users[1].id, cfg.users[1].email, cfg.users[1].alter_id, cfg.users[1].level })
    local ib = cfg.inbounds[1]
    assert.same({ "vmess-in", "vmess", "0.0.0.0", 10086, true, true },
                { ib.tag, ib.type, ib.listen.host, ib.listen.port, ib.allow_legacy, ib.allow_private })
    assert.same({ "direct", "direct", "ipv4" }, { cfg.outbounds[1].tag, cfg.outbounds[1].type,
                                                 cfg.outbounds[1].domain_strategy })
    assert.equal("direct", cfg.default_outbound)
  end)

  it("a v2ray client: socks (udp, accounts), http, VMess with ws+tls, and what it cannot do", function()
    local text, n = conv {
      inbounds = {
        { tag = "socks", listen = "127.0.0.1", port = 1080, protocol = "socks",
          settings = { auth = "password", udp = true, ip = "127.0.0.1", accounts = { { user = "u", pass = "p" } } } },
        { listen = "127.0.0.1", port = 8080, protocol = "http", settings = { timeout = 30 } },
      },
      outbounds = { { tag = "proxy", protocol = "vmess",
        settings = { vnext = { { address = "example.com", port = 443,
          users = { { id = ID, alterId = 0, security = "chacha20-poly1305", experiments = "AuthenticatedLength" } } } } },
        streamSettings = { network = "ws", security = "tls",
          tlsSettings = { serverName = "cdn.example", allowInsecure = true,
                          certificates = { { usage = "verify", certificateFile = "/etc/ca.pem" } } },
          wsSettings = { path = "/ray", maxEarlyData = 2048, earlyDataHeaderName = "Sec-WebSocket-Protocol",
                         headers = { Host = "cdn.example", ["User-Agent"] = "x" } } } } },
    }
    local cfg = load(text)
    local s, hp = cfg.inbounds[1], cfg.inbounds[2]
    assert.same({ "socks", "socks", true, "u" }, { s.tag, s.type, s.udp, s.accounts[1].user })
    assert.same({ "http-in", "http", 30 }, { hp.tag, hp.type, hp.handshake_timeout })
    local ob = cfg.outbounds[1]
    assert.same({ "example.com", 443, ID, "chacha20-poly1305", true },
                { ob.server.host, ob.server.port, ob.id, ob.security, ob.authenticated_length })
    assert.same({ type = "ws", path = "/ray?ed=2048", host = "cdn.example", early_data = 2048 }, ob.transport)
    assert.same({ "cdn.example", "/etc/ca.pem", { "http/1.1" } }, { ob.tls.server_name, ob.tls.ca, ob.tls.alpn })
    assert.equal(2, n)
    assert.truthy(has(text, '-- not converted: outbounds[0].streamSettings.tlsSettings.allowInsecure = true'))
    assert.truthy(has(text, '-- not converted: outbounds[0].streamSettings.wsSettings.headers["User-Agent"] = "x"'))
  end)

  it("servers over tls + grpc, httpupgrade; certificates by file", function()
    local text = conv {
      inbounds = {
        { tag = "g", port = 443, protocol = "vmess", settings = { clients = { { id = ID } } },
          streamSettings = { network = "grpc", security = "tls", grpcSettings = { serverName = "x", serviceName = "gun" },
            tlsSettings = { alpn = { "h2" }, certificates = {
              { certificateFile = "/a.pem", keyFile = "/a.key" }, { certificateFile = "/b.pem", keyFile = "/b.key" } } } } },
        { tag = "u", listen = "127.0.0.1", port = 10001, protocol = "vmess", settings = { clients = { { id = ID2 } } },
          streamSettings = { network = "httpupgrade", httpupgradeSettings = { path = "/up", host = "h.example" } } },
        { tag = "w", listen = "127.0.0.1", port = 10002, protocol = "vmess", settings = { clients = { { id = ID2 } } },
          streamSettings = { network = "ws", wsSettings = { path = "ray", headers = { Host = "w.example" } } } },
        { tag = "x", listen = "127.0.0.1", port = 10003, protocol = "vmess", settings = { clients = { { id = ID2 } } },
          streamSettings = { network = "ws", wsSettings = { path = "/x", host = "x.example" } } },
      },
      outbounds = { { protocol = "blackhole" } },
    }
    local cfg = load(text)
    local g, u = cfg.inbounds[1], cfg.inbounds[2]
    assert.same({ type = "grpc", service_name = "gun", multi = false }, g.transport)
    assert.same({ { cert = "/a.pem", key = "/a.key" }, { cert = "/b.pem", key = "/b.key" } }, g.tls.certs)
    assert.same({ "h2" }, g.tls.alpn)
    assert.same({ type = "httpupgrade", path = "/up", host = "h.example" }, u.transport)
    -- a v2ray server's headers.Host is never checked by v2ray; Xray's host is
    assert.same({ type = "ws", path = "/ray", max_early_data = 2048 }, cfg.inbounds[3].transport)
    assert.same({ type = "ws", path = "/x", host = "x.example", max_early_data = 2048 }, cfg.inbounds[4].transport)
    assert.truthy(has(text, '-- inbounds[2].streamSettings.wsSettings.headers.Host ignored'), text)
    -- two VMess inbounds: each lists its own users
    assert.same({ "user1" }, g.users)
    assert.same({ "user2" }, u.users)
    assert.same({ "user2" }, cfg.inbounds[3].users)
    assert.truthy(has(text, '-- not converted: inbounds[0].streamSettings.grpcSettings.serverName = "x"'))
  end)

  it("what it cannot express is listed with its JSON path, never dropped", function()
    local text, n = conv([[{
      "inbounds": [
        { "port": 1, "protocol": "vmess", "setings": {} },
        { "port": 2, "protocol": "shadowsocks", "settings": { "password": "x" } },
        { "port": 3, "protocol": "vmess", "settings": { "clients": [ { "id": "]] .. ID .. [[" } ] },
          "streamSettings": { "network": "kcp" } },
        { "port": "1000-2000", "protocol": "socks" },
        { "port": 4, "protocol": "socks", "settings": { "auth": "noauth" }, "foo": 1 }
      ],
      "outbounds": [ { "protocol": "freedom" }, { "protocol": "trojan", "tag": "t" } ],
      "routing": { "rules": [ { "type": "field", "ip": ["1.1.1.1"], "outboundTag": "t" },
                              { "type": "field", "ip": ["1.1.1.1"], "balancerTag": "b" } ] },
      "dns": { "servers": [ "1.1.1.1" ] },
      "reverse": {}
    }]])
    for _, line in ipairs({
      '"setings":{}',
      '(a VMess inbound without clients accepts nobody)',
      '-- not converted: inbounds[1].protocol = "shadowsocks"',
      '-- not converted: inbounds[2].streamSettings.network = "kcp"',
      '-- not converted: inbounds[3].port = "1000-2000" (a port range: a luaray inbound listens on one port)',
      '-- not converted: inbounds[4].foo = 1',
      '-- not converted: outbounds[1].protocol = "trojan"',
      '-- not converted: routing.rules[0] = ',
      '(its outbound t was not converted)',
      '(balancers are not supported)',
      '-- not converted: dns = {"servers":["1.1.1.1"]}',
      '-- not converted: reverse = {}',
    }) do
      assert.truthy(has(text, line), line .. "\n" .. text)
    end
    assert.is_true(n >= 12)
    -- the rest still loads: one socks inbound, one outbound
    local cfg = load(text)
    assert.equal(1, #cfg.inbounds)
    assert.equal(1, #cfg.outbounds)
  end)

  it("rules: v2ray's ORed domain/ip kinds become one rule per kind, in order", function()
    local text = conv {
      inbounds = { { tag = "in", port = 1080, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { tag = "direct", protocol = "freedom" }, { tag = "block", protocol = "blackhole" } },
      routing = { rules = {
        { type = "field", domain = { "full:x.example", "domain:ads.example", "keyword:track", "plain", "geosite:cn",
                                     "regexp:^d\\." }, outboundTag = "block" },
        { type = "field", ip = { "10.0.0.0/8", "geoip:private" }, port = "53,443,1000-2000", network = "tcp,udp",
          outboundTag = "block" },
        { type = "field", inboundTag = { "in" }, network = "udp", protocol = { "tls", "bittorrent" },
          outboundTag = "direct" },
        { type = "field", source = { "192.0.2.0/24" }, outboundTag = "direct" },
      } },
    }
    local want = {
      'luaray.route { domain = { "x.example" }, to = "block" }',
      'luaray.route { domain_suffix = { "ads.example" }, to = "block" }',
      'luaray.route { domain_keyword = { "track", "plain" }, to = "block" }',
      'luaray.route { domain = { "regexp:^d\\\\." }, to = "block" }',
      'luaray.route { geosite = { "cn" }, to = "block" }',
      'luaray.route { ip_cidr = { "10.0.0.0/8" }, port = "53,443,1000-2000", to = "block" }',
      'luaray.route { geoip = { "private" }, port = "53,443,1000-2000", to = "block" }',
      '-- not converted: routing.rules[2].protocol[1] = "bittorrent"',
      'luaray.route { network = "udp", inbound = { "in" }, protocol = { "tls" }, to = "direct" }',
      'luaray.route { source = { "192.0.2.0/24" }, to = "direct" }',
      'luaray.route { default = "direct" }',
    }
    local pos = 1
    for _, w in ipairs(want) do
      local s, e = text:find(w, pos, true)
      assert.truthy(s, "missing (or out of order): " .. w .. "\n" .. text)
      pos = e + 1
    end
    load_geo(text)
    -- without the geo forms the rest loads today, and matches as v2ray would
    local plain = conv {
      inbounds = { { tag = "in", port = 1080, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { tag = "direct", protocol = "freedom" }, { tag = "block", protocol = "blackhole" } },
      routing = { rules = { { type = "field", domain = { "full:x.example", "domain:.ads.example", "keyword:Track" },
                              ip = { "10.0.0.0/8" }, outboundTag = "block" } } },
    }
    local cfg = load(plain)
    assert.equal(3, #cfg.routes)
    assert.same({ "x.example" }, cfg.routes[1].domain)
    assert.same({ "ads.example" }, cfg.routes[2].domain_suffix)
    assert.same({ "track" }, cfg.routes[3].domain_keyword)
    for i = 1, 3 do assert.equal("10.0.0.0", cfg.routes[i].ip_cidr[1].addr) end
  end)

  it("the v3 format v2ray 4.34 still reads: inbound/outbound, *Detour, routing.settings.rules", function()
    local text = conv {
      inbound = { port = 10086, protocol = "vmess", settings = { clients = { { id = ID } } } },
      inboundDetour = { { tag = "s", listen = "127.0.0.1", port = 1080, protocol = "socks", settings = { udp = true } } },
      outbound = { protocol = "freedom" },
      outboundDetour = { { tag = "blocked", protocol = "blackhole" }, { tag = "x", protocol = "dns" } },
      routing = { strategy = "rules", settings = { rules = {
        { type = "field", ip = { "10.0.0.0/8" }, outboundTag = "blocked" },
        { type = "field", ip = { "1.1.1.1" }, outboundTag = "x" } } } },
    }
    local cfg = load(text)
    assert.same({ "vmess-in", "s" }, { cfg.inbounds[1].tag, cfg.inbounds[2].tag })
    assert.same({ "direct", "blocked" }, { cfg.outbounds[1].tag, cfg.outbounds[2].tag })
    assert.equal("blocked", cfg.routes[1].to)
    assert.equal("direct", cfg.default_outbound)
    assert.truthy(has(text, '-- not converted: outboundDetour[1].protocol = "dns"'), text)
    assert.truthy(has(text, '-- not converted: routing.settings.rules[1] = '), text)
  end)

  it("what v2rayN writes: port 0-65535, h2 offered over ws, allowTransparent false", function()
    local text = conv {
      inbounds = { { tag = "socks", port = 10808, listen = "127.0.0.1", protocol = "socks",
                     settings = { auth = "noauth", udp = true, allowTransparent = false } } },
      outbounds = { { tag = "proxy", protocol = "vmess",
        settings = { vnext = { { address = "1.2.3.4", port = 443, users = { { id = ID } } } } },
        streamSettings = { network = "ws", security = "tls",
          tlsSettings = { serverName = "cdn.example.com", alpn = { "h2", "http/1.1" } },
          wsSettings = { path = "/ws?ed=2048" } } } },
      routing = { rules = { { type = "field", port = "0-65535", outboundTag = "proxy" },
                            { type = "field", port = 0, outboundTag = "proxy" } } },
    }
    local cfg = load(text)
    assert.same({ "http/1.1" }, cfg.outbounds[1].tls.alpn)
    assert.same({ 1, 65535 }, { cfg.routes[1].port[1].lo, cfg.routes[1].port[1].hi })
    assert.equal(1, #cfg.routes)
    assert.truthy(has(text, "-- not converted: routing.rules[1].port = 0 (no port 1-65535 in it)"), text)
    assert.falsy(has(text, "allowTransparent"))
  end)

  it("tags: JSON tags kept, generated ones never take a JSON tag; the first outbound stays the default", function()
    local text = conv {
      inbounds = { { port = 1, listen = "127.0.0.1", protocol = "socks" }, { tag = "socks-in", port = 2, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { protocol = "freedom" }, { tag = "direct", protocol = "blackhole" } },
    }
    local cfg = load(text)
    assert.same({ "socks-in-2", "socks-in" }, { cfg.inbounds[1].tag, cfg.inbounds[2].tag })
    assert.same({ "direct-2", "direct" }, { cfg.outbounds[1].tag, cfg.outbounds[2].tag })
    assert.equal("direct-2", cfg.default_outbound)
  end)

  it("users are global in luaray: the same id in two inbounds is one user; emails kept unique", function()
    local text = conv {
      inbounds = {
        { tag = "a", port = 1, protocol = "vmess", settings = { clients = { { id = ID, email = "x@y" }, { id = ID2, email = "z" } } } },
        { tag = "b", port = 2, protocol = "vmess", settings = { clients = { { id = ID:upper(), email = "x@y" }, { email = "z", id = "11111111-2222-3333-4444-555555555555" } } } },
      },
      outbounds = { { protocol = "freedom" } },
    }
    local cfg = load(text)
    assert.equal(3, #cfg.users)
    assert.same({ "x@y", "z" }, cfg.inbounds[1].users)
    assert.same({ "x@y", "z-2" }, cfg.inbounds[2].users)
    assert.truthy(has(text, 'the email "z" is taken by another id: renamed'))
  end)

  it("policy levels become the timeouts of the inbounds whose users have that level", function()
    local text, n = conv {
      policy = { levels = { ["0"] = { handshake = 4, connIdle = 120, uplinkOnly = 2, statsUserUplink = true },
                            ["5"] = { connIdle = 30 } },
                 system = { statsInboundUplink = true } },
      inbounds = { { tag = "v", port = 1, protocol = "vmess", settings = { clients = { { id = ID } } } },
                   { tag = "s", port = 2, listen = "127.0.0.1", protocol = "socks", settings = { userLevel = 0 } } },
      outbounds = { { protocol = "freedom" } },
    }
    local cfg = load(text)
    for i = 1, 2 do
      assert.same({ 4, 120 }, { cfg.inbounds[i].handshake_timeout, cfg.inbounds[i].idle_timeout })
    end
    assert.truthy(has(text, '-- not converted: policy.levels["0"].uplinkOnly = 2'))
    assert.truthy(has(text, '-- not converted: policy.levels["5"].connIdle = 30 (no converted inbound has users of this level)'))
    assert.equal(2, n)
  end)

  it("the v2ray API's dokodemo-door inbound and its rule become luaray.api", function()
    local text = conv {
      api = { tag = "api", services = { "StatsService", "HandlerService" } }, stats = {},
      inbounds = { { tag = "api-in", listen = "127.0.0.1", port = 10085, protocol = "dokodemo-door",
                     settings = { address = "127.0.0.1" } },
                   { port = 1, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { protocol = "freedom" } },
      routing = { rules = { { type = "field", inboundTag = { "api-in" }, outboundTag = "api" } } },
    }
    local cfg = load(text)
    assert.same({ "127.0.0.1", 10085 }, { cfg.api.host, cfg.api.port })
    assert.equal(1, #cfg.inbounds)
    assert.equal(0, #cfg.routes)
  end)

  it("dokodemo-door becomes a tunnel; followRedirect a tproxy or redirect inbound (design.md 9)", function()
    local text = conv {
      inbounds = { { tag = "dns", listen = "127.0.0.1", port = 5353, protocol = "dokodemo-door",
                     settings = { address = "1.1.1.1", port = 53, network = "tcp,udp" } },
                   { tag = "tp", port = 12345, protocol = "dokodemo-door",
                     settings = { network = "tcp,udp", followRedirect = true },
                     streamSettings = { sockopt = { tproxy = "tproxy" } } },
                   { tag = "rd", port = 12346, protocol = "dokodemo-door", settings = { followRedirect = true } } },
      outbounds = { { protocol = "freedom" } },
    }
    local dns = text:match('luaray.inbound "dns" (%b{})')
    assert.truthy(dns, text)
    assert.same({ "tunnel", "127.0.0.1:5353", "1.1.1.1:53", "tcp,udp" },
                { dns:match('type = "(.-)"'), dns:match('listen = "(.-)"'), dns:match('to = "(.-)"'),
                  dns:match('network = "(.-)"') })
    assert.truthy(has(text, 'luaray.inbound "tp" { type = "tproxy", listen = "0.0.0.0:12345", network = "tcp,udp" }'), text)
    assert.truthy(has(text, 'luaray.inbound "rd" { type = "redirect", listen = "0.0.0.0:12346" }'), text)
    load(text)
  end)

  it("routing.domainStrategy becomes the route's domain_strategy; an unknown one is listed", function()
    for _, c in ipairs({ { "IPIfNonMatch", "ip_if_non_match" }, { "IPOnDemand", "ip_on_demand" } }) do
      local text = conv {
        inbounds = { { port = 1, listen = "127.0.0.1", protocol = "socks" } },
        outbounds = { { protocol = "freedom" } },
        routing = { domainStrategy = c[1], rules = { { type = "field", ip = { "10.0.0.0/8" }, outboundTag = "direct" } } },
      }
      assert.truthy(has(text, ('luaray.route { domain_strategy = "%s" }'):format(c[2])), text)
      assert.equal(c[2], load(text).domain_strategy)
    end
    local text, n = conv {
      inbounds = { { port = 1, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { protocol = "freedom" } },
      routing = { domainStrategy = "UseIP" },
    }
    assert.truthy(has(text, '-- not converted: routing.domainStrategy = "UseIP"'), text)
    assert.equal(1, n)
    local plain = conv {
      inbounds = { { port = 1, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { protocol = "freedom" } },
      routing = { domainStrategy = "AsIs" },
    }
    assert.falsy(has(plain, "domain_strategy"), plain)
  end)

  it("Xray's mux.xudpConcurrency means an Xray server: UDP goes as XUDP (xudp = true)", function()
    local text = conv {
      inbounds = { { port = 1, listen = "127.0.0.1", protocol = "socks", settings = { udp = true } } },
      outbounds = { { protocol = "vmess", mux = { enabled = true, concurrency = 4, xudpConcurrency = 16 },
                      settings = { vnext = { { address = "1.2.3.4", port = 1, users = { { id = ID } } } } } } },
    }
    assert.truthy(has(text, "xudp = true"), text)
    assert.truthy(has(text, "mux = { concurrency = 4 }"), text)
    assert.equal(true, load(text).outbounds[1].xudp)
  end)

  it("a mux outbound carries mux = { concurrency } (design.md 9)", function()
    local text = conv {
      inbounds = { { port = 1, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { protocol = "vmess", mux = { enabled = true, concurrency = 4 },
                      settings = { vnext = { { address = "1.2.3.4", port = 1, users = { { id = ID } } } } } } },
    }
    assert.truthy(has(text, "mux = { concurrency = 4 }"), text)
  end)

  it("tags and values with quotes, backslashes and newlines stay Lua strings; bad tags are renamed", function()
    local text = conv {
      inbounds = { { tag = "a\"b\\c]]", port = 1, listen = "127.0.0.1", protocol = "socks",
                     settings = { auth = "password", accounts = { { user = "u]]", pass = "p\n\0q" } } } },
                   { tag = "x\ny", port = 2, listen = "127.0.0.1", protocol = "socks" } },
      outbounds = { { protocol = "freedom" } },
    }
    local cfg = load(text)
    assert.equal("a\"b\\c]]", cfg.inbounds[1].tag)
    assert.equal("p\n\0q", cfg.inbounds[1].accounts[1].pass)
    assert.equal("socks-in", cfg.inbounds[2].tag)
    assert.truthy(has(text, '-- not converted: inbounds[1].tag = "x\\ny" (a luaray tag is 1-255 bytes without control characters: renamed)'), text)
  end)

  it("JSON errors name the file, line and column", function()
    assert.same({ nil, "v.json:2:9: ':' expected" }, { convert.convert('{\n  "log" {}\n}', "v.json") })
    assert.same({ nil, "v.json: the top level is not a JSON object" }, { convert.convert('[1]', "v.json") })
  end)

  it("never raises on mangled input, and whatever it writes is Lua", function()
    local base = cjson.encode {
      log = { loglevel = "info" },
      inbounds = { { tag = "v", port = 1, protocol = "vmess", settings = { clients = { { id = ID, level = 2 } } },
                     streamSettings = { network = "ws", security = "tls", wsSettings = { path = "/p" },
                                        tlsSettings = { certificates = { { certificateFile = "/a", keyFile = "/b" } } } } },
                   { tag = "d", port = 2, protocol = "dokodemo-door", settings = { address = "1.1.1.1", port = 53 } } },
      outbounds = { { protocol = "vmess", settings = { vnext = { { address = "a", port = 1, users = { { id = ID } } } } },
                      mux = { enabled = true } }, { protocol = "freedom" } },
      routing = { rules = { { type = "field", domain = { "geosite:cn" }, ip = { "1.1.1.1" }, outboundTag = "x" } } },
      policy = { levels = { ["2"] = { handshake = 3 } } },
    }
    local seed = 12345
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
    local pieces = { "1", "\"x\"", "[]", "{}", "null", "true", "-5", "\"1-2\"", "[1,\"a\",{}]", "{\"a\":[]}" }
    local ok_count = 0
    for _ = 1, 3000 do
      local s = base
      for _ = 1, 1 + rnd(3) do
        local kind = rnd(3)
        local i = 1 + rnd(#s)
        if kind == 0 then
          -- replace a JSON value after a ':' with another of any type
          local c = s:find(":", i, true)
          if c then
            local e = s:find("[,}%]]", c + 1)
            if e then s = s:sub(1, c) .. pieces[1 + rnd(#pieces)] .. s:sub(e) end
          end
        elseif kind == 1 then
          s = s:sub(1, i - 1) .. s:sub(i + 1)
        else
          s = s:sub(1, i - 1) .. string.char(rnd(256)) .. s:sub(i)
        end
      end
      local ok, text, err = pcall(convert.convert, s, "f.json")
      assert.is_true(ok, tostring(text) .. "\n" .. s)
      if text then
        ok_count = ok_count + 1
        assert.truthy(loadstring(text), text)
      else
        assert.truthy(err:match("^f%.json:"), err)
      end
    end
    assert.truthy(ok_count > 300, ok_count)
  end)
end)

describe("import", function()
  local function imported(user, host, port, opts)
    local l = link.vmess_link(user, host, port, opts)
    local text = assert(convert.import(l))
    return load(text), text
  end
  local U = { id = ID, email = "alice@example.com", alter_id = 0 }

  it("a tcp link: SOCKS5 1080, HTTP 8080, one VMess outbound, the default", function()
    local cfg = imported(U, "203.0.113.5", 10086, { security = "aes-128-gcm" })
    assert.same({ "socks", "127.0.0.1", 1080, true }, { cfg.inbounds[1].type, cfg.inbounds[1].listen.host,
                                                       cfg.inbounds[1].listen.port, cfg.inbounds[1].udp })
    assert.same({ "http", 8080 }, { cfg.inbounds[2].type, cfg.inbounds[2].listen.port })
    local ob = cfg.outbounds[1]
    assert.same({ "proxy", "203.0.113.5", 10086, ID, "aes-128-gcm" },
                { ob.tag, ob.server.host, ob.server.port, ob.id, ob.security })
    assert.is_nil(ob.transport)
    assert.is_nil(ob.tls)
    assert.equal("proxy", cfg.default_outbound)
  end)

  it("ws + tls, grpc + tls, httpupgrade: the link's transport and TLS", function()
    local cfg = imported(U, "vpn.example.net", 443, {
      transport = { type = "ws", path = "/ray", max_early_data = 2048 },
      tls = { alpn = { "h2", "http/1.1" } } })
    local ob = cfg.outbounds[1]
    assert.same({ type = "ws", path = "/ray?ed=2048", early_data = 2048 }, ob.transport)
    assert.same({ "vpn.example.net", { "http/1.1" } }, { ob.tls.server_name, ob.tls.alpn })
    cfg = imported(U, "vpn.example.net", 443, { transport = { type = "grpc", service_name = "gun", multi = true },
                                                tls = { alpn = { "h2" } } })
    assert.same({ type = "grpc", service_name = "gun", multi = true }, cfg.outbounds[1].transport)
    assert.same({ "h2" }, cfg.outbounds[1].tls.alpn)
    cfg = imported(U, "10.0.0.1", 80, { transport = { type = "httpupgrade", path = "/up", host = "h.example" } })
    assert.same({ type = "httpupgrade", path = "/up", host = "h.example" }, cfg.outbounds[1].transport)
  end)

  it("refuses what it cannot make a client of, saying why", function()
    local function b64link(t) return "vmess://" .. link.base64_encode(cjson.encode(t)) end
    local base = { v = "2", add = "1.2.3.4", port = "1", id = ID, aid = "0", net = "kcp" }
    assert.same({ nil, "the link's transport is not supported: net = kcp (luaray has tcp, ws, httpupgrade and grpc)" },
                { convert.import(b64link(base)) })
    base.net = "tcp"; base.type = "http"
    assert.same({ nil, "tcp with header type http is not supported" }, { convert.import(b64link(base)) })
    assert.truthy(select(2, convert.import("vless://x@y:1")):find("not a vmess:// link", 1, true))
    base.type = nil; base.port = "0"
    assert.truthy(select(2, convert.import(b64link(base))):find("port is not 1-65535", 1, true))
    base.port = "1"; base.allowInsecure = "1"
    local text = assert(convert.import(b64link(base)))
    assert.truthy(has(text, "-- not converted: allowInsecure"))
  end)
end)

describe("json_hint", function()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0 or true)
  local function file(name, body)
    local p = dir .. "/" .. name
    local f = assert(io.open(p, "wb"))
    f:write(body)
    f:close()
    return p
  end
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("names a .json file or one whose first byte is '{', never a Lua config", function()
    local j = file("a.json", "")
    assert.truthy(convert.json_hint(j):find("run `luaray convert " .. j .. " > config.lua`", 1, true))
    assert.truthy(convert.json_hint(file("a.conf", "\239\187\191  \n{")))
    assert.is_nil(convert.json_hint(file("a.lua", "-- {\nluaray.log {}\n")))
    assert.is_nil(convert.json_hint(dir .. "/missing.lua"))
  end)
end)
