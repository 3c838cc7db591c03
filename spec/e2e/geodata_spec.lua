-- Routing data end to end, with v2ray 4.34 as the oracle: geosite.dat,
-- geoip.dat and an ext: file written by spec/geodat.lua (from the protobuf
-- wire format, not from luaray's reader) are read by Debian's v2ray (from
-- V2RAY_LOCATION_ASSET) and by luaray (luaray.geodata { dir }).  Each case
-- is one SOCKS5 inbound whose one rule sends what it matches to a
-- blackhole; the same destinations go through both proxies, and both must
-- give the expected blocked/direct answer for every case.
-- Loopback only: "localhost" (always in /etc/hosts) and the echo server on
-- 127.0.0.1, 127.0.0.2 and 127.0.0.3.
local E = require "e2e.support"
local G = require "geodat"
local T = G.T

local SITE = {
  { "full-hit", { { T.full, "localhost" } } },
  { "full-miss", { { T.full, "host" }, { T.full, "localhost.x" } } },
  { "dom-hit", { { T.domain, "localhost" } } },
  { "dom-miss", { { T.domain, "host" }, { T.domain, "calhost" } } },      -- label boundaries
  { "kw-hit", { { T.plain, "zzz" }, { T.plain, "calho" } } },
  { "kw-miss", { { T.plain, "hosts" } } },
  { "re-hit", { { T.regex, "^l.*t$" } } },
  { "re-miss", { { T.regex, "^host" } } },
  { "attr", { { T.full, "localhost", attrs = { "ads" } }, { T.full, "x.example", attrs = { "cn" } } } },
}
local IP = {
  { "two", { "127.0.0.2/32", "10.0.0.0/8" } },
  -- (no overlapping blocks here: v2ray 4.34 misses 127.0.0.3 in
  -- { 127.0.0.0/30, 127.0.0.2/32 }; overlaps are checked in geo_route_spec)
  { "wide", { "127.0.0.0/30" } },
}

-- tag, the v2ray rule's condition, the luaray route's filter, the
-- destinations, the expected answer for each ("B" blocked, "D" direct)
local CASES = {
  { "full-hit", { domain = { "geosite:full-hit" } }, 'domain = "geosite:full-hit"', "localhost", "B" },
  { "full-miss", { domain = { "geosite:full-miss" } }, 'geosite = "full-miss"', "localhost", "D" },
  { "dom-hit", { domain = { "geosite:dom-hit" } }, 'geosite = "dom-hit"', "localhost", "B" },
  { "dom-miss", { domain = { "geosite:dom-miss" } }, 'geosite = "dom-miss"', "localhost", "D" },
  { "kw-hit", { domain = { "geosite:kw-hit" } }, 'geosite = "kw-hit"', "localhost", "B" },
  { "kw-miss", { domain = { "geosite:kw-miss" } }, 'geosite = "kw-miss"', "localhost", "D" },
  { "re-hit", { domain = { "geosite:re-hit" } }, 'geosite = "re-hit"', "localhost", "B" },
  { "re-miss", { domain = { "geosite:re-miss" } }, 'geosite = "re-miss"', "localhost", "D" },
  { "attr-ads", { domain = { "geosite:attr@ads" } }, 'geosite = "attr@ads"', "localhost", "B" },
  { "attr-cn", { domain = { "geosite:attr@cn" } }, 'domain = "geosite:attr@cn"', "localhost", "D" },
  { "ext", { domain = { "ext:other.dat:mine" } }, 'domain = "ext:other.dat:mine"', "localhost", "B" },
  -- v2ray's inline forms
  { "plain", { domain = { "calh" } }, 'domain = "calh"', "localhost", "B" },   -- a substring
  { "plain-miss", { domain = { "localhost.com" } }, 'domain = "localhost.com"', "localhost", "D" },
  { "domain-miss", { domain = { "domain:host" } }, 'domain = "domain:host"', "localhost", "D" },
  { "full-inline", { domain = { "full:localhost" } }, 'domain = "full:localhost"', "localhost", "B" },
  { "regexp", { domain = { "regexp:^lo+c" } }, 'domain = "regexp:^lo+c"', "localhost", "B" },
  -- a domain rule never matches an address destination (domainStrategy AsIs)
  { "dom-ip", { domain = { "geosite:wide-none", "keyword:127" } }, 'domain = "keyword:127"', "127.0.0.1", "D" },
  -- geoip
  { "ip-two-1", { ip = { "geoip:two" } }, 'geoip = "two"', "127.0.0.1", "D" },
  { "ip-two-2", { ip = { "geoip:two" } }, 'geoip = "two"', "127.0.0.2", "B" },
  { "ip-wide-3", { ip = { "geoip:wide" } }, 'geoip = "wide"', "127.0.0.3", "B" },
  { "ip-wide-1", { ip = { "geoip:wide" } }, 'geoip = "geoip:wide"', "127.0.0.1", "B" },
  -- (v2ray 4.34 has no "geoip:!code"; luaray's "!code" is checked in
  -- spec/core/geo_route_spec.lua)
  { "ip-ext", { ip = { "ext:other-ip.dat:three" } }, 'geoip = "ext:other-ip.dat:three"', "127.0.0.3", "B" },
  { "ip-ext-miss", { ip = { "ext:other-ip.dat:three" } }, 'geoip = "ext:other-ip.dat:three"', "127.0.0.2", "D" },
  { "ip-name", { ip = { "geoip:wide" } }, 'geoip = "wide"', "localhost", "D" },
}

describe("geosite/geoip routing data, luaray beside v2ray 4.34", function()
  local h = E.new("geodata")
  teardown(function() h:cleanup() end)

  -- "B" or "D" for one connection through the SOCKS5 proxy at port
  local function outcome(port, host, P)
    local s = E.socks5_connect("127.0.0.1", port, host, P, nil, nil, 5)
    if not s then return "B" end
    s:settimeout(5)
    s:send("ping\n")
    local got = s:receive(5)
    s:close()
    return got == "ping\n" and "D" or "B"
  end

  it("blocks and passes the same destinations as v2ray", h:guard(function()
    local echo = h:echo_server { hosts = { "127.0.0.2", "127.0.0.3" } }
    local P = echo.port
    -- the data: a case that names a list missing from the file would fail
    -- to load, so "wide-none" exists (and is empty of what matters)
    local site = { unpack(SITE) }
    site[#site + 1] = { "wide-none", { { T.full, "none.example" } } }
    h:write("geosite.dat", G.geosite(site))
    h:write("geoip.dat", G.geoip(IP))
    h:write("other.dat", G.geosite { { "mine", { { T.domain, "localhost" } } } })
    h:write("other-ip.dat", G.geoip { { "three", { "127.0.0.3/32" } } })
    local dir = h:tmpdir()

    local ports_v, ports_l = {}, {}
    local inbounds, rules = {}, {}
    local lines = {
      "luaray.log { level = 'info', access = true }",
      "luaray.workers(2)",   -- the compiled lists are shared by both workers
      ("luaray.geodata { dir = %q }"):format(dir),
      "luaray.outbound 'direct' { type = 'direct', connect_timeout = 5 }",
      "luaray.outbound 'block' { type = 'blackhole' }",
    }
    for i, c in ipairs(CASES) do
      ports_v[i], ports_l[i] = E.free_port(), E.free_port()
      local tag = "c" .. i
      inbounds[#inbounds + 1] = { tag = tag, port = ports_v[i], listen = "127.0.0.1", protocol = "socks",
                                  settings = { auth = "noauth", udp = false } }
      local rule = { type = "field", inboundTag = { tag }, outboundTag = "block" }
      for k, v in pairs(c[2]) do rule[k] = v end
      rules[#rules + 1] = rule
      lines[#lines + 1] = ("luaray.inbound %q { type = 'socks', listen = '127.0.0.1:%d' }"):format(tag, ports_l[i])
      lines[#lines + 1] = ("luaray.route { inbound = %q, %s, to = 'block' }"):format(tag, c[3])
    end
    h:v2ray("v2ray-geo", {
      log = { loglevel = "warning" },
      inbounds = inbounds,
      outbounds = { { tag = "direct", protocol = "freedom", settings = {} },
                    { tag = "block", protocol = "blackhole", settings = {} } },
      routing = { domainStrategy = "AsIs", rules = rules },
    }, { env = { V2RAY_LOCATION_ASSET = dir } })
    h:luaray("luaray-geo", table.concat(lines, "\n") .. "\n", { ports = ports_l })

    local bad = {}
    for i, c in ipairs(CASES) do
      local v, l = outcome(ports_v[i], c[4], P), outcome(ports_l[i], c[4], P)
      if v ~= c[5] or l ~= c[5] then
        bad[#bad + 1] = ("%s -> %s: expected %s, v2ray %s, luaray %s"):format(c[1], c[4], c[5], v, l)
      end
    end
    assert.same({}, bad)
  end))

  -- domain_strategy: "localhost" (127.0.0.1) against address rules.
  -- Per case the rules in order (to block unless said), then the answer
  -- under ip_if_non_match and under ip_on_demand.
  local STRAT_CASES = {
    { "addr", { { ip = "geoip:wide" } }, "B", "B" },
    { "addr-miss", { { ip = "geoip:two" } }, "D", "D" },
    -- an address rule before a name rule: on demand it is decided first;
    -- if-non-match tries every rule with the name before any address
    { "order", { { ip = "geoip:wide" }, { domain = "full:localhost", to = "direct" } }, "D", "B" },
  }

  it("domain_strategy: resolves names for address rules as v2ray does", h:guard(function()
    local echo = h:echo_server { name = "echo-strat" }
    local P = echo.port
    h:write("geosite.dat", G.geosite(SITE))
    h:write("geoip.dat", G.geoip(IP))
    local dir = h:tmpdir()
    local bad = {}
    for si, strat in ipairs { { "ip_if_non_match", "IPIfNonMatch" }, { "ip_on_demand", "IPOnDemand" } } do
      local ports_v, ports_l, inbounds, rules = {}, {}, {}, {}
      local lines = {
        "luaray.workers(2)",   -- a name cache per worker
        ("luaray.geodata { dir = %q }"):format(dir),
        "luaray.outbound 'direct' { type = 'direct', connect_timeout = 5 }",
        "luaray.outbound 'block' { type = 'blackhole' }",
        ("luaray.route { domain_strategy = %q }"):format(strat[1]),
      }
      for i, c in ipairs(STRAT_CASES) do
        ports_v[i], ports_l[i] = E.free_port(), E.free_port()
        local tag = "s" .. i
        inbounds[#inbounds + 1] = { tag = tag, port = ports_v[i], listen = "127.0.0.1", protocol = "socks",
                                    settings = { auth = "noauth", udp = false } }
        lines[#lines + 1] = ("luaray.inbound %q { type = 'socks', listen = '127.0.0.1:%d' }"):format(tag, ports_l[i])
        for _, r in ipairs(c[2]) do
          local to = r.to or "block"
          rules[#rules + 1] = { type = "field", inboundTag = { tag }, outboundTag = to,
                                ip = r.ip and { r.ip } or nil, domain = r.domain and { r.domain } or nil }
          lines[#lines + 1] = ("luaray.route { inbound = %q, %s = %q, to = %q }"):format(
            tag, r.ip and "geoip" or "domain", r.ip and r.ip:gsub("^geoip:", "") or r.domain, to)
        end
      end
      h:v2ray("v2ray-" .. strat[1], {
        log = { loglevel = "warning" }, inbounds = inbounds,
        outbounds = { { tag = "direct", protocol = "freedom", settings = {} },
                      { tag = "block", protocol = "blackhole", settings = {} } },
        routing = { domainStrategy = strat[2], rules = rules },
      }, { env = { V2RAY_LOCATION_ASSET = dir } })
      h:luaray("luaray-" .. strat[1], table.concat(lines, "\n") .. "\n", { ports = ports_l })
      for i, c in ipairs(STRAT_CASES) do
        local want = c[2 + si]
        -- twice: the second answer comes from luaray's name cache
        for round = 1, 2 do
          local v, l = outcome(ports_v[i], "localhost", P), outcome(ports_l[i], "localhost", P)
          if v ~= want or l ~= want then
            bad[#bad + 1] = ("%s %s (%d): expected %s, v2ray %s, luaray %s"):format(strat[1], c[1], round, want, v, l)
          end
        end
      end
    end
    assert.same({}, bad)
  end))

  it("a reload reads a changed file again and keeps an unchanged one", h:guard(function()
    local psignal = require "posix.signal"
    local echo = h:echo_server { name = "echo-reload", hosts = { "127.0.0.2" } }
    local P = echo.port
    local dir = h:tmpdir() .. "/reload"
    assert(os.execute("mkdir -p " .. dir) == 0)
    local function put(name, bytes)
      local f = assert(io.open(dir .. "/" .. name, "wb"))
      f:write(bytes)
      f:close()
    end
    put("geosite.dat", G.geosite { { "l", { { T.full, "localhost" } } } })
    put("geoip.dat", G.geoip { { "x", { "127.0.0.2/32" } } })
    local port = E.free_port()
    local srv = h:luaray("luaray-reload", table.concat({
      "luaray.log { level = 'info', access = true }",
      ("luaray.geodata { dir = %q }"):format(dir),
      ("luaray.inbound 'in' { type = 'socks', listen = '127.0.0.1:%d' }"):format(port),
      "luaray.outbound 'direct' { type = 'direct', connect_timeout = 5 }",
      "luaray.outbound 'block' { type = 'blackhole' }",
      "luaray.route { geosite = 'l', to = 'block' }",
      "luaray.route { geoip = 'x', to = 'block' }",
    }, "\n") .. "\n", { ports = { port } })
    assert.equal("B", outcome(port, "localhost", P))
    assert.equal("B", outcome(port, "127.0.0.2", P))
    -- geosite.dat now lists another name; geoip.dat is left alone
    put("geosite.dat", G.geosite { { "l", { { T.full, "other.example" } } } })
    local before = E.count_matches(E.read_file(srv.log), "reload: generation %d+ serving")
    assert(psignal.kill(srv.pid, psignal.SIGHUP))
    local text = E.wait_log(srv, "reload: generation %d+ serving", before + 1)
    assert(text, "no reload\n" .. h:tail(srv))
    assert.equal("D", outcome(port, "localhost", P))
    assert.equal("B", outcome(port, "127.0.0.2", P))
    assert.equal("D", outcome(port, "127.0.0.1", P))
    -- a list gone from the file: the reload fails with the route's line and
    -- the running rules stay
    put("geosite.dat", G.geosite { { "other", { { T.full, "localhost" } } } })
    local bad = E.count_matches(E.read_file(srv.log), "reload failed")
    assert(psignal.kill(srv.pid, psignal.SIGHUP))
    text = E.wait_log(srv, "reload failed", bad + 1)
    assert(text, "no failed reload\n" .. h:tail(srv))
    assert.matches("%.lua:6: geosite 'l': .*no list 'l'", text)
    assert.equal("D", outcome(port, "localhost", P))
    assert.equal("B", outcome(port, "127.0.0.2", P))
  end))

  it("geoip from a MaxMind .mmdb when the dir has no geoip.dat", h:guard(function()
    local echo = h:echo_server { name = "echo-mmdb", hosts = { "127.0.0.2" } }
    local P = echo.port
    local dir = h:tmpdir() .. "/mmdb"
    assert(os.execute("mkdir -p " .. dir) == 0)
    local f = assert(io.open(dir .. "/GeoLite2-Country.mmdb", "wb"))
    f:write(G.mmdb_v4 { { "127.0.0.2/32", "CN" }, { "127.0.0.1/32", "US" } })
    f:close()
    local port = E.free_port()
    h:luaray("luaray-mmdb", table.concat({
      ("luaray.geodata { dir = %q }"):format(dir),
      ("luaray.inbound 'in' { type = 'socks', listen = '127.0.0.1:%d' }"):format(port),
      "luaray.outbound 'direct' { type = 'direct', connect_timeout = 5 }",
      "luaray.outbound 'block' { type = 'blackhole' }",
      "luaray.route { geoip = 'cn', to = 'block' }",
    }, "\n") .. "\n", { ports = { port } })
    assert.equal("B", outcome(port, "127.0.0.2", P))
    assert.equal("D", outcome(port, "127.0.0.1", P))
  end))

  it("refuses a list or code missing from the file, naming the route's line", h:guard(function()
    h:write("geosite.dat", G.geosite(SITE))
    h:write("geoip.dat", G.geoip(IP))
    local port = E.free_port()
    local cfg = h:write("missing.lua", table.concat({
      ("luaray.geodata { dir = %q }"):format(h:tmpdir()),
      ("luaray.inbound 'in' { type = 'socks', listen = '127.0.0.1:%d' }"):format(port),
      "luaray.outbound 'direct' { type = 'direct' }",
      "luaray.route { geosite = 'no-such-list', to = 'direct' }",
    }, "\n") .. "\n")
    local code, out = h:exec("luaray-missing", { E.luaray_bin(), "-c", cfg })
    assert.is_not.equal(0, code)
    assert.matches("missing.lua:4: geosite 'no%-such%-list': .*geosite.dat: no list 'no%-such%-list'", out)
    -- and a bad regexp, found when the rule is built
    cfg = h:write("badre.lua", table.concat({
      ("luaray.inbound 'in' { type = 'socks', listen = '127.0.0.1:%d' }"):format(port),
      "luaray.outbound 'direct' { type = 'direct' }",
      "luaray.route { domain = 'regexp:a(b', to = 'direct' }",
    }, "\n") .. "\n")
    code, out = h:exec("luaray-badre", { E.luaray_bin(), "-c", cfg })
    assert.is_not.equal(0, code)
    assert.matches("badre.lua:3: bad regexp \"a%(b\"", out)
  end))
end)
