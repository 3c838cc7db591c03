-- `luaray convert` and `luaray import` end to end (issue 14, migration):
--   * every v2ray 4.34 JSON config the other specs give v2ray (built here
--     with the same support.lua functions and the same streamSettings the
--     specs add), and Debian's /usr/share/v2ray/*.json, converted by the
--     binary and checked with `luaray -t`;
--   * converted configs run in v2ray's place: a v2ray VMess server config
--     converted serves a v2ray 4.34 client, a v2ray client config converted
--     is a luaray client of a v2ray 4.34 server, over tcp and ws (and the
--     client over ws+tls), with the transfer cases of interop_spec
--     (E.check_socks_tcp: 1 MiB echo, 1 MiB down, 1 MiB up; UDP datagrams);
--   * `luaray import` of the links `luaray link` writes, run against the
--     luaray server the links came from;
--   * `-c FILE.json` refused with the hint.
-- Output that uses the keys of design.md 9 (geoip, geosite, v2ray's domain
-- forms, tunnel/tproxy/redirect inbounds, mux) names them in each case
-- (it_needs): a build that refuses one fails that case with the probe's
-- name (a minimal config with the key, checked with `luaray -t` when this
-- file loads); the geoip/geosite configs get routing data the spec writes.
local E = require "e2e.support"

local MiB = 1024 * 1024
local h = E.new("convert")
local LUARAY = E.luaray_bin()
local ID = E.uuid()

-- runs `luaray ARGS > out`; -> exit code, stdout text, stderr text
local function run_out(name, args)
  local out, err = h:path(name .. ".stdout"), h:path(name .. ".stderr")
  local argv = { "/bin/sh", "-c", 'out="$1"; err="$2"; shift 2; exec "$@" >"$out" 2>"$err"', "sh", out, err,
                 LUARAY }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  -- under `make asan` the commands run with LeakSanitizer on, as daemons do
  local env = os.getenv("LURAY_ASAN") and { ASAN_OPTIONS = "detect_leaks=1:abort_on_error=1" } or nil
  local code = h:exec(name, argv, { keep_preload = true, env = env })
  return code, E.read_file(out), E.read_file(err)
end

-- the routing data a converted config names (v2ray finds geoip.dat and
-- geosite.dat beside its binary; luaray in luaray.geodata's dir): written
-- by spec/geodat.lua, and given to every config that routes by them
local G = require "geodat"
local GEODIR = h:path("geodata")
os.execute("mkdir -p '" .. GEODIR .. "'")
h:write("geodata/geosite.dat", G.geosite({
  { "category-ads", { { G.T.domain, "ads.example" }, { G.T.full, "tracker.example" } } } }))
h:write("geodata/geoip.dat", G.geoip({
  { "private", { "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7" } } }))

local function check_lua(name, text)
  if text:find("geoip = {", 1, true) or text:find("geosite = {", 1, true) then
    text = ("luaray.geodata { dir = %q }\n"):format(GEODIR) .. text
  end
  local f = h:write(name .. ".lua", text)
  local code, out, err = run_out(name .. "-t", { "-t", "-c", f })
  return code, out .. err
end

-- the features of other branches, each probed with a minimal config (cfg)
-- that differs from one -t passes today (base) only in that feature's key
local SOCKS = 'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:1" }\n'
local DIRECT = 'luaray.outbound "d" { type = "direct" }\n'
local PROBES = {
  geoip = { key = "geoip", branch = "geo", pat = "geoip = {",
    cfg = SOCKS .. DIRECT .. 'luaray.route { geoip = { "private" }, to = "d" }\n',
    base = SOCKS .. DIRECT .. 'luaray.route { ip_cidr = { "10.0.0.0/8" }, to = "d" }\n' },
  geosite = { key = "geosite", branch = "geo", pat = "geosite = {",
    cfg = SOCKS .. DIRECT .. 'luaray.route { geosite = { "category-ads" }, to = "d" }\n',
    base = SOCKS .. DIRECT .. 'luaray.route { domain_suffix = { "ads.example" }, to = "d" }\n' },
  domain_forms = { key = "domain", branch = "geo", pat = 'domain = { "%a+:',
    cfg = SOCKS .. DIRECT .. 'luaray.route { domain = { "regexp:^d\\\\." }, to = "d" }\n',
    base = SOCKS .. DIRECT .. 'luaray.route { domain = { "d.example" }, to = "d" }\n' },
  tunnel = { key = "type", branch = "tunnel", pat = 'type = "tunnel"',
    cfg = 'luaray.inbound "t" { type = "tunnel", listen = "127.0.0.1:1", to = "127.0.0.1:53", network = "udp" }\n' ..
          DIRECT,
    base = 'luaray.inbound "t" { type = "socks", listen = "127.0.0.1:1", udp = true }\n' .. DIRECT },
  mux = { key = "mux", branch = "xudp", pat = "mux = {",
    cfg = SOCKS .. ('luaray.outbound "p" { type = "vmess", server = "127.0.0.1:1", id = "%s", ' ..
           'mux = { concurrency = 8 } }\n'):format(ID),
    base = SOCKS .. ('luaray.outbound "p" { type = "vmess", server = "127.0.0.1:1", id = "%s" }\n'):format(ID) },
}
local HAVE = {}
for name, p in pairs(PROBES) do
  HAVE[name] = check_lua("probe-" .. name, p.cfg) == 0
end

-- the features a converted text needs that this build lacks -> list of "feature (branch)"
local function missing(text)
  local m = {}
  for name, p in pairs(PROBES) do
    if text:find(p.pat) and not HAVE[name] then m[#m + 1] = name .. " (branch " .. p.branch .. ")" end
  end
  table.sort(m)
  return m
end

-- Converted by the binary: -> lua text, stderr
local function convert(name, cfg)
  local json = type(cfg) == "table" and E.json(cfg) or cfg
  local jf = h:write(name .. ".json", json)
  local code, out, err = run_out(name .. "-convert", { "convert", jf })
  assert.equal(0, code, err)
  return out, err
end

-- a test that needs the features `needs` (names in PROBES): every one is
-- merged now, so a feature the build lost fails the case (no pending)
local function it_needs(needs, name, fn)
  it(name, h:guard(function()
    for _, n in ipairs(needs) do
      assert(HAVE[n], "this build refuses " .. n .. " (probe-" .. n .. "-t)")
    end
    fn()
  end))
end

local D -- the test PKI
local function pki()
  if not D then
    D = h:test_pki({ { "localhost", { "localhost" } }, { "example", { "example.test" } } })
  end
  return D
end

-- The v2ray JSON configs of the other specs, by the functions they use.
local function spec_configs()
  local d = pki()
  local list = {}
  local function add(name, cfg) list[#list + 1] = { name, cfg } end
  local p = 20000
  -- interop_spec, v2ray_sanity_spec, ...: servers and clients
  add("server", E.v2ray_server_config { port = p, users = { { id = ID } } })
  add("server-legacy", E.v2ray_server_config { port = p,
    users = { { id = ID, alterId = 0, email = "aead@e2e" }, { id = E.uuid(), alterId = 4, email = "legacy@e2e" } } })
  for _, sec in ipairs({ "aes-128-gcm", "chacha20-poly1305", "none", "auto", "zero" }) do
    add("client-" .. sec, E.v2ray_client_config { socks_port = p + 1, server_port = p, id = ID, security = sec })
  end
  add("client-legacy", E.v2ray_client_config { socks_port = p + 1, server_port = p, id = ID, alterId = 4 })
  add("client-http-accounts", E.v2ray_client_config { socks_port = p + 1, http_port = p + 2, server_port = p,
    id = ID, accounts = { { user = "u", pass = "p" } } })
  add("client-mux", E.v2ray_client_config { socks_port = p + 1, server_port = p, id = ID, mux = true })
  -- ws_spec
  local c = E.v2ray_client_config { socks_port = p + 1, server_port = p, id = ID }
  c.outbounds[1].streamSettings = { network = "ws", wsSettings = { path = "/ray", headers = { Host = "example.test" } } }
  add("ws-client", c)
  c = E.v2ray_server_config { port = p, users = { { id = ID } } }
  c.inbounds[1].streamSettings = { network = "ws", wsSettings = { path = "/ray" } }
  add("ws-server", c)
  -- tls_spec
  c = E.v2ray_client_config { socks_port = p + 1, server_port = p, id = ID, security = "aes-128-gcm" }
  c.outbounds[1].streamSettings = { network = "tcp", security = "tls",
    tlsSettings = { serverName = "example.test", allowInsecure = false,
                    certificates = { { usage = "verify", certificateFile = d .. "/ca.pem" } } } }
  add("tls-client", c)
  c = E.v2ray_server_config { port = p, users = { { id = ID } } }
  c.inbounds[1].streamSettings = { network = "tcp", security = "tls",
    tlsSettings = { alpn = { "h2", "http/1.1" },
                    certificates = { { certificateFile = d .. "/localhost.pem", keyFile = d .. "/localhost.key" } } } }
  add("tls-server", c)
  -- wss_spec, nginx_tls_spec, caddy_spec
  c = E.v2ray_client_config { socks_port = p + 1, server_port = p, id = ID, security = "aes-128-gcm" }
  c.outbounds[1].streamSettings = { network = "ws", security = "tls",
    tlsSettings = { serverName = "example.test", allowInsecure = false,
                    certificates = { { usage = "verify", certificateFile = d .. "/ca.pem" } } },
    wsSettings = { path = "/ray", headers = { Host = "example.test" } } }
  add("wss-client", c)
  c = E.v2ray_server_config { port = p, users = { { id = ID } } }
  c.inbounds[1].streamSettings = { network = "ws", security = "tls",
    tlsSettings = { alpn = { "http/1.1" },
                    certificates = { { certificateFile = d .. "/localhost.pem", keyFile = d .. "/localhost.key" } } },
    wsSettings = { path = "/v2" } }
  add("wss-server", c)
  -- proxy_protocol_spec: one SOCKS5 inbound and VMess outbound per route
  local inbounds, outbounds, rules = {}, {}, {}
  for i, r in ipairs({ { "a", "127.0.0.1" }, { "b", "127.0.0.3" } }) do
    inbounds[i] = { tag = "in-" .. r[1], listen = "127.0.0.1", port = p + 10 + i, protocol = "socks",
                    settings = { auth = "noauth", udp = false } }
    outbounds[i] = { tag = "out-" .. r[1], protocol = "vmess", sendThrough = r[2],
                     settings = { vnext = { { address = "127.0.0.1", port = p,
                       users = { { id = ID, alterId = 0, security = "aes-128-gcm" } } } } } }
    rules[i] = { type = "field", inboundTag = { "in-" .. r[1] }, outboundTag = "out-" .. r[1] }
  end
  add("proxy-protocol-client", { log = { loglevel = "warning" }, inbounds = inbounds, outbounds = outbounds,
                                 routing = { rules = rules } })
  return list
end

describe("migration", function()
lazy_teardown(function() h:cleanup() end)

describe("luaray convert", function()

  it("converts every v2ray config the specs use, and -t accepts each", h:guard(function()
    local n = 0
    for _, c in ipairs(spec_configs()) do
      local text = convert(c[1], c[2])
      assert.truthy(text:find("luaray.inbound", 1, true), c[1])
      if c[1] ~= "client-mux" then
        -- nothing else needs a key of another branch
        assert.same({}, missing(text), c[1])
        local code, log = check_lua(c[1], text)
        assert.equal(0, code, c[1] .. ":\n" .. text .. "\n" .. log)
        assert.truthy(log:find("configuration OK", 1, true))
        n = n + 1
      end
    end
    assert.equal(16, n)
  end))

  it_needs({ "mux" }, "converts the specs' v2ray client with mux; -t accepts it", function()
    for _, c in ipairs(spec_configs()) do
      if c[1] == "client-mux" then
        local text = convert(c[1], c[2])
        assert.truthy(text:find("mux = { concurrency = 8 }", 1, true), text)
        local code, log = check_lua(c[1], text)
        assert.equal(0, code, text .. "\n" .. log)
      end
    end
  end)

  it("keeps what it cannot express as comments with the JSON path (sendThrough, allowInsecure)", h:guard(function()
    local list = spec_configs()
    local text, err
    for _, c in ipairs(list) do
      if c[1] == "proxy-protocol-client" then text, err = convert("pp-notes", c[2]) end
    end
    assert.truthy(text:find('-- not converted: outbounds[0].sendThrough = "127.0.0.1"', 1, true), text)
    assert.truthy(text:find('-- not converted: outbounds[1].sendThrough = "127.0.0.3"', 1, true), text)
    assert.truthy(err:find("2 settings not converted", 1, true), err)
    -- the routing by inbound tag is kept
    assert.truthy(text:find('luaray.route { inbound = { "in-b" }, to = "out-b" }', 1, true), text)
  end))

  -- Debian's v2ray package ships these; config.json and vpoint_vmess_freedom
  -- route geoip:private / geosite:category-ads (branch geo)
  local debian = {
    { "config.json", { "geoip", "geosite" }, {
      'luaray.log { level = "warn" }',
      'luaray.inbound "socks-inbound" { type = "socks", listen = "127.0.0.1:1080" }',
      'luaray.route { geoip = { "private" }, to = "blocked" }',
      'luaray.route { geosite = { "category-ads" }, to = "blocked" }',
      'luaray.route { default = "direct" }',
      'luaray.route { domain_strategy = "ip_on_demand" }',
      '-- not converted: dns = ' } },
    { "config_vmess.json", {}, {
      'alter_id = 64,', 'listen = "0.0.0.0:10086",', 'allow_legacy = true,',
      'luaray.outbound "blocked" { type = "blackhole" }' } },
    { "vpoint_socks_vmess.json", {}, {
      'luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }',
      '-- not converted: policy.levels["0"].uplinkOnly = 0' } },
    { "vpoint_vmess_freedom.json", { "geoip" }, {
      'luaray.route { geoip = { "private" }, to = "blocked" }' } },
  }
  for _, d in ipairs(debian) do
    local path = "/usr/share/v2ray/" .. d[1]
    local function converted()
      local f = assert(io.open(path, "rb"), path .. " missing: run scripts/deps.sh")
      local json = f:read("*a")
      f:close()
      return convert("debian-" .. d[1], json)
    end
    it("converts Debian's " .. path .. " (comments and all)", h:guard(function()
      local text = converted()
      for _, want in ipairs(d[3]) do
        assert.truthy(text:find(want, 1, true), want .. "\n" .. text)
      end
    end))
    it_needs(d[2], "-t accepts the conversion of Debian's " .. path, function()
      local text = converted()
      assert.same({}, missing(text))
      local code, log = check_lua("debian-" .. d[1], text)
      assert.equal(0, code, text .. "\n" .. log)
    end)
  end

  it("a JSON error names file:line:column", h:guard(function()
    local jf = h:write("bad.json", '{\n  // a comment\n  "log": { "loglevel": "info" },\n  "inbounds": [ { "port": 1 } ]x\n}\n')
    local code, out, err = run_out("bad-convert", { "convert", jf })
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal("luaray: " .. jf .. ":4:32: ',' or '}' expected\n", err)
  end))

  it("the feature probes are real: -t passes each probe, and the same config without the new key", h:guard(function()
    for name, p in pairs(PROBES) do
      local code, log = check_lua("probe-base-" .. name, p.base)
      assert.equal(0, code, name .. ": " .. log)
      code, log = check_lua("probe-again-" .. name, p.cfg)
      assert.equal(0, code, name .. ": " .. log)
    end
  end))

  it("usage: convert and import take exactly one argument (exit 2)", h:guard(function()
    local code, out, err = run_out("usage-1", { "convert" })
    assert.equal(2, code)
    assert.truthy(err:find("convert needs a JSON file", 1, true), err)
    code, out, err = run_out("usage-2", { "import" })
    assert.equal(2, code)
    assert.truthy(err:find("import needs a vmess:// link", 1, true), err)
    code, out, err = run_out("usage-3", { "convert", "a.json", "b.json" })
    assert.equal(2, code)
    assert.truthy(err:find("convert takes one argument", 1, true), err)
    code, out, err = run_out("usage-4", { "import", "vless://x" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("^luaray: not a vmess:// link"), err)
  end))

  it("-c with a JSON file is refused with the hint to convert it", h:guard(function()
    local jf = h:write("v2.json", E.json(E.v2ray_server_config { port = 20000, users = { { id = ID } } }))
    local code, out, err = run_out("json-c", { "-t", "-c", jf })
    assert.equal(1, code)
    assert.truthy(err:find("luaray: " .. jf .. ": this looks like a v2ray/Xray JSON config", 1, true), err)
    assert.truthy(err:find("luaray convert " .. jf .. " > config.lua", 1, true), err)
    -- the same for a .conf that holds JSON, and for link -c
    local cf = h:write("v2.conf", " \n{ }")
    code, out, err = run_out("json-c2", { "link", "-c", cf })
    assert.equal(1, code)
    assert.truthy(err:find("run `luaray convert", 1, true), err)
  end))
end)

describe("converted configs in v2ray's place", function()
  local echo
  lazy_setup(h:guard(function() echo = h:echo_server() end))

  local function run_converted(name, json_cfg, ports)
    local text = convert(name, json_cfg)
    return h:luaray(name, text, { ports = ports }), text
  end

  for _, net in ipairs({ "tcp", "ws" }) do
    it("a v2ray 4.34 server config, converted, serves a v2ray 4.34 client over " .. net, h:guard(function()
      local port = E.free_port()
      local scfg = E.v2ray_server_config { port = port, users = { { id = ID, email = "alice@e2e" } } }
      if net == "ws" then scfg.inbounds[1].streamSettings = { network = "ws", wsSettings = { path = "/ray" } } end
      local srv, text = run_converted("srv-" .. net, scfg, { { "127.0.0.1", port } })
      assert.truthy(text:find('email = "alice@e2e"', 1, true))
      local socks = E.free_port()
      local ccfg = E.v2ray_client_config { socks_port = socks, server_port = port, id = ID, security = "aes-128-gcm" }
      if net == "ws" then
        ccfg.outbounds[1].streamSettings = { network = "ws", wsSettings = { path = "/ray" } }
      end
      local cli = h:v2ray("v2ray-client-" .. net, ccfg)
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
      assert.is_true(ok, err)
      ok, err = E.check_socks_udp("127.0.0.1", socks, echo)
      assert.is_true(ok, err)
      -- v2ray's "access": "none" is luaray's access = false
      assert.truthy(text:find('luaray.log { level = "warn", access = false }', 1, true), text)
      assert.is_true(h:alive(srv))
      h:stop(cli)
      h:stop_luaray(srv)
    end))

    it("a v2ray 4.34 client config, converted, is a client of a v2ray 4.34 server over " .. net, h:guard(function()
      local port = E.free_port()
      local scfg = E.v2ray_server_config { port = port, users = { { id = ID } } }
      if net == "ws" then scfg.inbounds[1].streamSettings = { network = "ws", wsSettings = { path = "/ray" } } end
      local v = h:v2ray("v2ray-server-" .. net, scfg)
      local socks, http = E.free_port(), E.free_port()
      local ccfg = E.v2ray_client_config { socks_port = socks, http_port = http, server_port = port, id = ID,
                                           security = "chacha20-poly1305" }
      if net == "ws" then
        ccfg.outbounds[1].streamSettings = { network = "ws",
          wsSettings = { path = "/ray", headers = { Host = "example.test" } } }
      end
      local cli = run_converted("cli-" .. net, ccfg, { { "127.0.0.1", socks }, { "127.0.0.1", http } })
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
      assert.is_true(ok, err)
      ok, err = E.check_socks_udp("127.0.0.1", socks, echo)
      assert.is_true(ok, err)
      -- and the HTTP inbound of the same config
      local s = assert(E.http_connect("127.0.0.1", http, "127.0.0.1", echo.port))
      ok, err = E.transfer_echo(s, 64 * 1024)
      assert.is_true(ok, err)
      assert.is_true(h:alive(cli) and h:alive(v))
      h:stop_luaray(cli)
      h:stop(v)
    end))
  end

  it("a v2ray ws+tls client config, converted, is a client of a v2ray 4.34 ws+tls server", h:guard(function()
    local d = pki()
    local port = E.free_port()
    local scfg = E.v2ray_server_config { port = port, users = { { id = ID } } }
    scfg.inbounds[1].streamSettings = { network = "ws", security = "tls",
      tlsSettings = { alpn = { "http/1.1" },
                      certificates = { { certificateFile = d .. "/localhost.pem", keyFile = d .. "/localhost.key" } } },
      wsSettings = { path = "/v2" } }
    local v = h:v2ray("v2ray-wss-server", scfg)
    local socks = E.free_port()
    local ccfg = E.v2ray_client_config { socks_port = socks, server_port = port, id = ID, security = "aes-128-gcm" }
    ccfg.outbounds[1].settings.vnext[1].address = "localhost"
    ccfg.outbounds[1].streamSettings = { network = "ws", security = "tls",
      tlsSettings = { serverName = "localhost", allowInsecure = false,
                      certificates = { { usage = "verify", certificateFile = d .. "/ca.pem" } } },
      wsSettings = { path = "/v2", headers = { Host = "localhost" } } }
    local cli, text = run_converted("cli-wss", ccfg, { { "127.0.0.1", socks } })
    assert.truthy(text:find('ca = "' .. d .. '/ca.pem"', 1, true), text)
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
    assert.is_true(ok, err)
    assert.is_true(h:alive(cli) and h:alive(v))
    h:stop_luaray(cli)
    h:stop(v)
  end))

  it_needs({ "mux" }, "a v2ray client config with mux, converted, is a client of a v2ray 4.34 server", function()
    local port = E.free_port()
    local v = h:v2ray("v2ray-server-mux", E.v2ray_server_config { port = port, users = { { id = ID } } })
    local socks = E.free_port()
    local cli = run_converted("cli-mux", E.v2ray_client_config { socks_port = socks, server_port = port, id = ID,
                                                                  mux = true }, { { "127.0.0.1", socks } })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB, { timeout = 30 })
    assert.is_true(ok, err)
    h:stop_luaray(cli)
    h:stop(v)
  end)

  it_needs({ "tunnel" }, "a v2ray client's dokodemo-door, converted, tunnels TCP and UDP to its address through a " ..
           "v2ray 4.34 server", function()
    local socket = require "socket"
    local port = E.free_port()
    local v = h:v2ray("v2ray-server-tunnel", E.v2ray_server_config { port = port, users = { { id = ID } } })
    local tport = E.free_port()
    local ccfg = E.v2ray_client_config { socks_port = E.free_port(), server_port = port, id = ID }
    ccfg.inbounds[1] = { tag = "tunnel", listen = "127.0.0.1", port = tport, protocol = "dokodemo-door",
                         settings = { address = "127.0.0.1", port = echo.port, network = "tcp,udp" } }
    local cli, text = run_converted("cli-tunnel", ccfg, { { "127.0.0.1", tport } })
    assert.truthy(text:find('type = "tunnel"', 1, true), text)
    local s = assert(E.tcp_connect("127.0.0.1", tport))
    local ok, err = E.transfer_echo(s, 256 * 1024, { timeout = 30 })
    assert.is_true(ok, err)
    local u = assert(socket.udp())
    assert(u:setpeername("127.0.0.1", tport))
    u:settimeout(1)
    local got
    for i = 1, 5 do
      assert(u:send("datagram " .. i))
      got = u:receive()
      if got then
        assert.equal("datagram " .. i, got)
        break
      end
    end
    u:close()
    assert.truthy(got, "no UDP echo through the tunnel")
    h:stop_luaray(cli)
    h:stop(v)
  end)

  it("luaray import of `luaray link`'s links reaches the server the links came from (tcp, ws, ws+tls, grpc)", h:guard(function()
    local d = pki()
    local p1, p2, p3, p4 = E.free_port(), E.free_port(), E.free_port(), E.free_port()
    local srv = h:luaray("import-server", ([[
luaray.user { id = %q, email = "alice@e2e" }
luaray.inbound "tcp" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true }
luaray.inbound "ws" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true,
  transport = { type = "ws", path = "/ray", max_early_data = 2048 } }
luaray.inbound "wss" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true,
  tls = { cert = %q, key = %q, alpn = { "http/1.1" } },
  transport = { type = "ws", path = "/ray", host = "localhost" } }
luaray.inbound "grpc" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true,
  transport = { type = "grpc", service_name = "gun.Tunnel" } }
luaray.outbound "direct" { type = "direct" }
]]):format(ID, p1, p2, p3, d .. "/localhost.pem", d .. "/localhost.key", p4),
      { ports = { { "127.0.0.1", p1 }, { "127.0.0.1", p2 }, { "127.0.0.1", p3 }, { "127.0.0.1", p4 } } })
    local code, out, err = run_out("links", { "link", "-c", srv.argv[3], "-H", "127.0.0.1" })
    assert.equal(0, code, err)
    local links = {}
    for l in out:gmatch("[^\n]+") do links[#links + 1] = l end
    assert.equal(4, #links)
    for i, l in ipairs(links) do
      local c2, lua, e2 = run_out("import-" .. i, { "import", l })
      assert.equal(0, c2, e2)
      assert.truthy(lua:find('luaray.outbound "proxy"', 1, true), lua)
      -- the imported client on other ports; the wss one trusts the test CA
      local socks = E.free_port()
      lua = lua:gsub('"127%.0%.0%.1:1080"', '"127.0.0.1:' .. socks .. '"')
               :gsub('luaray%.inbound "http"[^\n]*\n', "")
      if i == 3 then lua = lua:gsub('server_name = "localhost"', 'server_name = "localhost", ca = "' .. d .. '/ca.pem"') end
      local cli = h:luaray("import-client-" .. i, lua, { ports = { { "127.0.0.1", socks } } })
      local ok, e3 = E.check_socks_tcp("127.0.0.1", socks, echo, 256 * 1024, { timeout = 30 })
      assert.is_true(ok, "link " .. i .. ": " .. tostring(e3) .. "\n" .. lua)
      h:stop_luaray(cli)
    end
    assert.is_true(h:alive(srv))
  end))
end)
end)
