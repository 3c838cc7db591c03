-- The routing-data words of the config DSL (lua/luaray/config.lua):
-- luaray.geodata { dir }, the route keys geosite / geoip / source, and
-- v2ray's domain string forms in `domain`, with the file:line of every
-- refusal.  Pure Lua (the .dat files are only opened to check they exist;
-- their contents are read by the C side, spec/core/geo_route_spec.lua).
local config = require "luaray.config"

local UUID = "de305d54-75b4-431b-adb2-eb6b9e546014"
local BASE = {
  'luaray.user { id = "' .. UUID .. '", email = "alice@example.com" }',
  'luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:10086" }',
  'luaray.outbound "direct" { type = "direct" }',
}

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/sub") == 0)
for _, f in ipairs { "geosite.dat", "geoip.dat", "extra.dat", "sub/extra.dat", "sub/GeoLite2-Country.mmdb" } do
  local h = assert(io.open(dir .. "/" .. f, "wb"))
  h:write("x")
  h:close()
end

local function load(...)
  local lines = { unpack(BASE) }
  for _, l in ipairs({ ... }) do lines[#lines + 1] = l end
  return config.load_string(table.concat(lines, "\n") .. "\n", "=cfg.lua")
end
local function ok(...)
  local cfg, err = load(...)
  assert(cfg, err)
  return cfg
end
local function fails(expected, ...)
  local cfg, err = load(...)
  assert.is_nil(cfg)
  if expected:sub(1, 1) == "^" then assert.matches(expected, err) else assert.equal(expected, err) end
end
local GD = 'luaray.geodata { dir = "' .. dir .. '" }'

describe("routing data in the config", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("sorts v2ray's domain forms into their filters", function()
    local r = ok(GD, 'luaray.route { domain = { "Plain.Example", "full:A.example.", "domain:.b.example", ' ..
                 '"keyword:TRK", "regexp:^ad\\\\d+\\\\.", "dotless:", "dotless:lan", "geosite:cn@ads", ' ..
                 '"ext:sub/extra.dat:mine", "ext-domain:sub/extra.dat:x" }, to = "direct" }').routes[1]
    assert.same({ "plain.example" }, r.domain)             -- a substring, as in v2ray
    assert.same({ "a.example" }, r.domain_full)
    assert.same({ "b.example" }, r.domain_suffix)
    assert.same({ "trk" }, r.domain_keyword)
    assert.same({ "^ad\\d+\\.", "^[^.]*[^.]*$", "^[^.]*lan[^.]*$" }, r.domain_regexp)
    assert.same({ { list = "cn@ads", file = dir .. "/geosite.dat" },
                  { list = "mine", file = dir .. "/sub/extra.dat" },
                  { list = "x", file = dir .. "/sub/extra.dat" } }, r.geosite)
  end)

  it("geosite, geoip and source keys", function()
    local r = ok(GD, 'luaray.route { geosite = { "category-ads-all", "geosite:cn" }, ' ..
                 'geoip = { "private", "!CN", "geoip:us", "ext:sub/GeoLite2-Country.mmdb:de" }, ' ..
                 'source = { "10.0.0.0/8", "fd00::/8" }, to = "direct" }').routes[1]
    assert.same({ { list = "category-ads-all", file = dir .. "/geosite.dat" },
                  { list = "cn", file = dir .. "/geosite.dat" } }, r.geosite)
    assert.same({ { code = "private", reverse = false, file = dir .. "/geoip.dat" },
                  { code = "CN", reverse = true, file = dir .. "/geoip.dat" },
                  { code = "us", reverse = false, file = dir .. "/geoip.dat" },
                  { code = "de", reverse = false, file = dir .. "/sub/GeoLite2-Country.mmdb" } }, r.geoip)
    assert.equal(2, #r.source)
    assert.equal(8, r.source[1].bits)
    -- the geodata dir may come after the routes; a relative one is the config's
    r = ok('luaray.route { geoip = "cn", to = "direct" }', GD).routes[1]
    assert.equal(dir .. "/geoip.dat", r.geoip[1].file)
  end)

  it("without geoip.dat a MaxMind country database in the dir is used", function()
    local r = ok('luaray.geodata { dir = "' .. dir .. '/sub" }',
                 'luaray.route { geoip = "cn", to = "direct" }').routes[1]
    assert.equal(dir .. "/sub/GeoLite2-Country.mmdb", r.geoip[1].file)
  end)

  it("refuses bad forms and missing files with the route's file:line", function()
    local FORMS = "domain names or v2ray's forms (full:NAME, domain:NAME, keyword:TEXT, " ..
      "regexp:RE, dotless:TEXT, geosite:LIST, ext:FILE:LIST)"
    for i, bad in ipairs { "ful:a.example", "full:", "full:a b", "domain:", "keyword:", "regexp:",
                           "dotless:a.b", "geosite:", "geosite:cn@", "geosite:@ads", "ext:x.dat",
                           "ext:x.dat:", "a b" } do
      fails(("cfg.lua:5: 'domain' in route must be a list of %s; element 2 is string %q"):format(FORMS, bad),
            GD, ('luaray.route { domain = { "ok.example", %q }, to = "direct" }'):format(bad))
      assert(i)
    end
    fails("cfg.lua:5: 'geosite' in route must be a list of geosite list names like \"cn\" or " ..
          "\"category-ads-all@ads\", got string \"c n\"", GD, 'luaray.route { geosite = "c n", to = "direct" }')
    fails("^cfg.lua:5: 'geoip' in route must be a list of country codes",
          GD, 'luaray.route { geoip = { "!" }, to = "direct" }')
    fails("^cfg.lua:5: 'source' in route must be a list of CIDR blocks",
          GD, 'luaray.route { source = { "10.0.0.0/33" }, to = "direct" }')
    fails("cfg.lua:5: 'geosite' in route is an empty list", GD, 'luaray.route { geosite = {}, to = "direct" }')
    fails("cfg.lua:4: geosite in route: cannot read " .. dir .. "/nope.dat (luaray.geodata dir at cfg.lua:5)",
          'luaray.route { domain = "ext:nope.dat:cn", to = "direct" }', GD)
    fails("cfg.lua:4: geoip in route: cannot read /nonexistent/geoip.dat " ..
          "(luaray.geodata dir at cfg.lua:5)",
          'luaray.route { geoip = "cn", to = "direct" }', 'luaray.geodata { dir = "/nonexistent" }')
    fails("cfg.lua:5: luaray.geodata is called twice (first at cfg.lua:4)", GD, GD)
    fails("cfg.lua:4: unknown key 'path' in geodata", 'luaray.geodata { path = "x" }')
    fails("cfg.lua:4: 'dir' in geodata must be a directory path, got number 3", 'luaray.geodata { dir = 3 }')
  end)

  it("domain_strategy: once, for every rule, alone or with the default", function()
    assert.equal("as_is", ok().domain_strategy)
    assert.equal("ip_if_non_match", ok('luaray.route { domain_strategy = "ip_if_non_match" }').domain_strategy)
    local cfg = ok("luaray.outbound 'block' { type = 'blackhole' }",
                   'luaray.route { domain_strategy = "ip_on_demand", default = "block" }')
    assert.equal("ip_on_demand", cfg.domain_strategy)
    assert.equal("block", cfg.default_outbound)
    assert.same({}, cfg.routes)
    fails("cfg.lua:4: 'domain_strategy' in route must be \"as_is\", \"ip_if_non_match\" or " ..
          "\"ip_on_demand\", got string \"IPIfNonMatch\"", 'luaray.route { domain_strategy = "IPIfNonMatch" }')
    fails("cfg.lua:5: 'domain_strategy' cannot be combined with 'geoip' in route (it applies to every rule)",
          GD, 'luaray.route { domain_strategy = "as_is", geoip = "cn", to = "direct" }')
    fails("cfg.lua:5: the routing domain_strategy is set twice (first at cfg.lua:4)",
          'luaray.route { domain_strategy = "as_is" }', 'luaray.route { domain_strategy = "ip_on_demand" }')
  end)

  it("README's routing data block loads (with its dir pointed here)", function()
    local f = assert(io.open("README.md"))
    local readme = f:read("*a")
    f:close()
    local sec = readme:match("\n## Routing data: geosite, geoip and v2ray's domain forms\n(.-)\n## ")
    assert(sec, "README.md has no routing data section")
    local block = assert(sec:match("```lua\n(.-)```"), "no lua block in the section")
    local n
    block, n = block:gsub('dir = "/usr/local/share/luaray"', ("dir = %q"):format(dir))
    assert.equal(1, n)
    local cfg = ok("luaray.outbound 'block' { type = 'blackhole' }",
                   "luaray.outbound 'lan' { type = 'direct' }", block)
    assert.equal(4, #cfg.routes)
    assert.equal("ip_if_non_match", cfg.domain_strategy)
    assert.same({ "^d\\." }, cfg.routes[3].domain_regexp)
  end)
end)
