-- Routing data and compiled matchers (core/route/domain_set.c, cidr_set.c,
-- geodata.c), through the typed calls daemon.lua makes and the daemon's
-- matcher (lr_conf_route_pick): v2ray's domain kinds with their edge cases
-- (case, trailing dot, label boundaries, overlapping keywords), CIDR sets
-- (/0, overlaps, adjacency, IPv4-mapped IPv6), source rules, and
-- geosite.dat / geoip.dat / .mmdb files written here by spec/geodat.lua
-- from the formats' descriptions.  No daemon, no sockets.
local H = require "helper"
local G = require "geodat"
local ffi, C = H.ffi, H.C

local function ob(conf, tag, typ)
  local s = ffi.new("struct lr_conf_outbound")
  s.tag, s.type, s.where = tag, typ or "direct", "spec"
  assert.equal(C.LR_OK, C.lr_conf_outbound(conf, s), ffi.string(C.lr_conf_error(conf)))
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp) == 0)
local function write(name, bytes)
  local p = tmp .. "/" .. name
  local f = assert(io.open(p, "wb"))
  f:write(bytes)
  f:close()
  return p
end

describe("compiled route matchers", function()
  local conf
  local keep = {}

  before_each(function()
    conf = C.lr_conf_new()
    ob(conf, "direct")   -- 0, the default
    ob(conf, "hit")      -- 1
    keep = {}
  end)
  after_each(function() C.lr_conf_free(conf) end)
  teardown(function() os.execute("rm -rf " .. tmp) end)

  local function rule() assert.equal(C.LR_OK, C.lr_conf_route(conf, "hit", "spec")) end
  local function str(kind, v)
    assert.equal(C.LR_OK, C.lr_conf_route_string(conf, kind, v), ffi.string(C.lr_conf_error(conf)))
  end
  local function cidr(s, fn)
    local ip, bits = G.cidr_bytes(s)
    assert.equal(C.LR_OK, (fn or C.lr_conf_route_cidr)(conf, H.buf(ip), #ip, bits))
  end
  -- q: a name, or { ip = "a.b.c.d" | v6 literal, src = "..." }
  local function hit(q)
    local r = ffi.new("struct lr_route_query")
    r.network, r.port, r.inbound = C.LR_NET_TCP, 443, "in"
    if type(q) == "string" then
      r.atyp, r.host = C.LR_ATYP_DOMAIN, q
    else
      local ip = G.cidr_bytes(q.ip or "192.0.2.1")
      local b = H.buf(ip)
      keep[#keep + 1] = b
      r.ip, r.atyp = b, #ip == 4 and C.LR_ATYP_IPV4 or C.LR_ATYP_IPV6
      if q.src then
        local s = G.cidr_bytes(q.src)
        local sb = H.buf(s)
        keep[#keep + 1] = sb
        r.src_ip, r.src_len = sb, #s
      end
    end
    local i = C.lr_conf_route_pick(conf, r, nil)
    assert(i >= 0, ffi.string(C.lr_conf_error(conf)))
    return i == 1
  end

  it("full and domain: case, one trailing dot, whole labels only", function()
    rule()
    str(C.LR_ROUTE_DOMAIN, "Exact.Example")
    str(C.LR_ROUTE_DOMAIN_SUFFIX, "a.com")
    str(C.LR_ROUTE_DOMAIN_SUFFIX, "b.org.")
    assert.is_true(hit "exact.example")
    assert.is_true(hit "EXACT.example.")
    assert.is_false(hit "x.exact.example")       -- full: not below
    assert.is_false(hit "exact.example.com")
    assert.is_true(hit "a.com")
    assert.is_true(hit "x.y.A.COM")
    assert.is_true(hit "x.a.com.")
    assert.is_false(hit "ba.com")                -- domain:a.com never matches ba.com
    assert.is_false(hit "a.com.x")
    assert.is_false(hit "com")
    assert.is_true(hit "b.org")
    assert.is_true(hit "q.b.org")
    assert.is_false(hit "")
    assert.is_false(hit ".")
    assert.is_false(hit(("a"):rep(300) .. ".a.com"))   -- longer than any name
  end)

  it("keywords: overlapping patterns (Aho-Corasick failure links), case", function()
    rule()
    for _, k in ipairs { "he", "she", "his", "hers", "Track" } do str(C.LR_ROUTE_DOMAIN_KEYWORD, k) end
    assert.is_true(hit "ushers.example")
    assert.is_true(hit "ahisx")
    assert.is_true(hit "sTRACKer.net")
    assert.is_true(hit "x.the")                -- "he" at the very end
    assert.is_false(hit "xxsh.e.h.e")
    assert.is_false(hit "shx.hx.s")
    assert.is_false(hit "trac.k")
  end)

  it("keywords agree with a plain substring search on random sets", function()
    math.randomseed(14)
    local alphabet = "abc.-"
    local function rnd(lo, hi)
      local t = {}
      for i = 1, math.random(lo, hi) do
        local j = math.random(1, #alphabet)
        t[i] = alphabet:sub(j, j)
      end
      return table.concat(t)
    end
    for _ = 1, 20 do
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      rule()
      local pats = {}
      for i = 1, math.random(1, 40) do
        pats[i] = rnd(1, 5)
        str(C.LR_ROUTE_DOMAIN_KEYWORD, pats[i])
      end
      for _ = 1, 100 do
        local name = rnd(1, 20)
        local want = false
        for _, p in ipairs(pats) do
          if name:find(p, 1, true) then want = true; break end
        end
        assert.equal(want, hit(name), name)
      end
    end
  end)

  it("domain suffixes agree with a label walk on random sets", function()
    math.randomseed(15)
    local labels = { "a", "b", "ab", "ba", "x" }
    local function rname(n)
      local t = {}
      for i = 1, n do t[i] = labels[math.random(1, #labels)] end
      return table.concat(t, ".")
    end
    for _ = 1, 20 do
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      rule()
      local full, dom = {}, {}
      for _ = 1, math.random(1, 10) do
        local p = rname(math.random(1, 3))
        if math.random() < 0.5 then full[p] = true; str(C.LR_ROUTE_DOMAIN, p)
        else dom[p] = true; str(C.LR_ROUTE_DOMAIN_SUFFIX, p) end
      end
      for _ = 1, 100 do
        local name = rname(math.random(1, 5))
        local want = full[name] or dom[name] or false
        for i = 1, #name do
          if name:sub(i, i) == "." and dom[name:sub(i + 1)] then want = true end
        end
        assert.equal(want, hit(name), name)
      end
    end
  end)

  it("regexps run over the lower-case name (PCRE2); a bad one is refused", function()
    rule()
    str(C.LR_ROUTE_DOMAIN_REGEX, "^ad[0-9]+\\.")
    str(C.LR_ROUTE_DOMAIN_REGEX, "\\.cdn$")
    assert.is_true(hit "ad12.example")
    assert.is_true(hit "AD7.example")            -- the name is lowered first
    assert.is_false(hit "xad12.example")
    assert.is_true(hit "img.cdn")
    assert.is_false(hit "img.cdn.x")
    -- catastrophic backtracking is cut off by the step limit: no match, quickly
    rule()
    str(C.LR_ROUTE_DOMAIN_REGEX, "^(a+)+$")
    local t0 = os.clock()
    assert.is_false(hit(("a"):rep(60) .. "b"))
    assert.is_true(os.clock() - t0 < 5)   -- unbounded, this takes hours
    assert.is_true(hit(("a"):rep(60)))
    assert.equal(C.LR_EINVAL, C.lr_conf_route_string(conf, C.LR_ROUTE_DOMAIN_REGEX, "a(b"))
    assert.matches("bad regexp \"a%(b\": .* at offset 3", ffi.string(C.lr_conf_error(conf)))
  end)

  it("CIDR sets: /0, overlaps, adjacent blocks, the top of the space, IPv4-mapped IPv6", function()
    rule()
    cidr "10.0.0.0/8"; cidr "10.1.0.0/16"; cidr "11.0.0.0/8"
    cidr "255.255.255.255/32"; cidr "2001:db8::/32"; cidr "::ffff:192.168.0.0/112"
    assert.is_true(hit { ip = "10.1.2.3" })
    assert.is_true(hit { ip = "11.255.255.255" })
    assert.is_false(hit { ip = "12.0.0.0" })
    assert.is_false(hit { ip = "9.255.255.255" })
    assert.is_true(hit { ip = "255.255.255.255" })
    assert.is_false(hit { ip = "255.255.255.254" })
    assert.is_true(hit { ip = "2001:db8:ffff::1" })
    assert.is_false(hit { ip = "2001:db9::1" })
    assert.is_true(hit { ip = "::ffff:10.9.9.9" })     -- IPv4-mapped: looked up as 10.9.9.9
    assert.is_true(hit { ip = "192.168.3.4" })          -- a mapped block is an IPv4 block
    assert.is_false(hit { ip = "192.169.0.1" })
    assert.is_false(hit "10.1.2.3")                     -- a name is not an address (as_is)
    C.lr_conf_free(conf)
    conf = C.lr_conf_new()
    ob(conf, "direct"); ob(conf, "hit")
    rule()
    cidr "0.0.0.0/0"
    assert.is_true(hit { ip = "0.0.0.0" })
    assert.is_true(hit { ip = "255.255.255.255" })
    assert.is_false(hit { ip = "::1" })                 -- /0 of IPv4 is not IPv6
    rule()
    cidr "::/0"
    assert.is_true(hit { ip = "::1" })
  end)

  it("source CIDRs look at the client's address", function()
    rule()
    cidr("10.0.0.0/8", C.lr_conf_route_source)
    cidr("fd00::/8", C.lr_conf_route_source)
    assert.is_true(hit { src = "10.2.3.4" })
    assert.is_true(hit { src = "::ffff:10.2.3.4" })
    assert.is_true(hit { src = "fd12::1" })
    assert.is_false(hit { src = "11.0.0.1" })
    assert.is_false(hit {})                             -- no client address: no match
    local ip = H.buf("\1\2\3")
    assert.equal(C.LR_EINVAL, C.lr_conf_route_source(conf, ip, 3, 8))
    assert.equal(C.LR_EINVAL, C.lr_conf_route_source(conf, H.buf("\1\2\3\4"), 4, 33))
  end)

  describe("domain_strategy", function()
    -- pick with the name's addresses (16 bytes each) once asked for them
    local function pick(host, ips)
      local r = ffi.new("struct lr_route_query")
      r.network, r.port, r.inbound = C.LR_NET_TCP, 443, "in"
      r.atyp, r.host = C.LR_ATYP_DOMAIN, host
      if ips then
        local b = {}
        for _, a in ipairs(ips) do
          local ip = G.cidr_bytes(a)
          b[#b + 1] = #ip == 4 and ("\0"):rep(10) .. "\255\255" .. ip or ip
        end
        local buf = H.buf(table.concat(b) .. "\0")
        keep[#keep + 1] = buf
        r.resolved, r.nresolved, r.resolve_done = buf, #ips, 1
      end
      return C.lr_conf_route_pick(conf, r, nil)
    end
    local function rules()
      ob(conf, "other")                                   -- 2
      rule(); cidr "10.0.0.0/8"                           -- 10/8 -> hit (1)
      assert.equal(C.LR_OK, C.lr_conf_route(conf, "other", "spec"))
      str(C.LR_ROUTE_DOMAIN_SUFFIX, "named.example")      -- named.example -> other (2)
    end

    it("as_is: address rules never see a name's addresses", function()
      rules()
      assert.equal(0, pick("x.example"))
      assert.equal(2, pick("a.named.example"))
    end)

    it("ip_if_non_match: the name first, then (only when nothing matched) its addresses", function()
      rules()
      assert.equal(C.LR_OK, C.lr_conf_route_strategy(conf, C.LR_ROUTE_IP_IF_NON_MATCH))
      assert.equal(2, pick("a.named.example"))              -- no lookup needed
      assert.equal(C.LR_ROUTE_NEED_IPS, pick("x.example"))
      assert.equal(1, pick("x.example", { "10.1.2.3" }))
      assert.equal(1, pick("x.example", { "192.0.2.1", "::ffff:10.0.0.1" }))
      assert.equal(0, pick("x.example", { "192.0.2.1" }))
      assert.equal(0, pick("x.example", {}))                -- did not resolve: the default
      -- the name rule wins over the address rule before it
      assert.equal(2, pick("a.named.example", { "10.1.2.3" }))
    end)

    it("ip_on_demand: resolved as soon as an address rule is reached", function()
      rules()
      assert.equal(C.LR_OK, C.lr_conf_route_strategy(conf, C.LR_ROUTE_IP_ON_DEMAND))
      assert.equal(C.LR_ROUTE_NEED_IPS, pick("a.named.example"))
      assert.equal(1, pick("a.named.example", { "10.1.2.3" }))   -- the address rule comes first
      assert.equal(2, pick("a.named.example", { "192.0.2.1" }))
      -- a rule whose other filters fail never asks for addresses
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      assert.equal(C.LR_OK, C.lr_conf_route_strategy(conf, C.LR_ROUTE_IP_ON_DEMAND))
      rule(); cidr "10.0.0.0/8"
      assert.equal(C.LR_OK, C.lr_conf_route_ports(conf, 25, 25))
      assert.equal(0, pick("x.example"))
      assert.equal(C.LR_EINVAL, C.lr_conf_route_strategy(conf, 3))
    end)
  end)

  describe("geosite.dat / geoip.dat", function()
    local T = G.T
    local site = write("geosite.dat", G.geosite {
      { "EXAMPLE", {
        { T.full, "full.example" },
        { T.domain, "dom.example" },
        { T.plain, "kw-ads" },
        { T.regex, "^re[0-9]\\." },
        { T.domain, "ads.example", attrs = { "ads" } },
        { T.full, "both.example", attrs = { "ads", "cn" } },
      } },
      { "other", { { T.full, "other.example" } } },
    })
    local ip = write("geoip.dat", G.geoip {
      { "private", { "10.0.0.0/8", "192.168.0.0/16", "fc00::/7" } },
      { "CN", { "1.2.3.0/24", "0.0.0.0/0" }, reverse = true },   -- the file's flag is ignored, as in v2ray
    })

    local function geosite(list) return C.lr_conf_route_geosite(conf, site, list) end
    local function geoip(code, rev) return C.lr_conf_route_geoip(conf, ip, code, rev and 1 or 0) end

    it("a list's four kinds, its name in any case", function()
      rule()
      assert.equal(C.LR_OK, geosite("example"))
      for _, n in ipairs { "full.example", "x.dom.example", "dom.example", "a-kw-ads-b", "re7.x",
                           "ads.example", "both.example" } do
        assert.is_true(hit(n), n)
      end
      for _, n in ipairs { "x.full.example", "undom.example", "kw-ad", "are7.x", "other.example" } do
        assert.is_false(hit(n), n)
      end
    end)

    it("@attributes keep only the entries that have all of them", function()
      rule()
      assert.equal(C.LR_OK, geosite("example@ads"))
      assert.is_true(hit "x.ads.example")
      assert.is_true(hit "both.example")
      assert.is_false(hit "full.example")
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      rule()
      assert.equal(C.LR_OK, geosite("EXAMPLE@ads@cn"))
      assert.is_true(hit "both.example")
      assert.is_false(hit "ads.example")
    end)

    it("geoip codes, reverse matching, and errors that say what is missing", function()
      rule()
      assert.equal(C.LR_OK, geoip("PRIVATE"))
      assert.is_true(hit { ip = "10.0.0.1" })
      assert.is_true(hit { ip = "fd00::1" })
      assert.is_false(hit { ip = "1.2.3.4" })
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      rule()
      assert.equal(C.LR_OK, geoip("cn", true))           -- every address outside cn's blocks
      assert.is_false(hit { ip = "1.2.3.4" })
      assert.is_false(hit { ip = "8.8.8.8" })            -- cn holds 0.0.0.0/0 here
      assert.is_true(hit { ip = "2001:db8::1" })
      assert.equal(C.LR_EINVAL, geoip("xx"))
      assert.matches("geoip 'xx': .*geoip.dat: no code 'xx'", ffi.string(C.lr_conf_error(conf)))
      assert.equal(C.LR_EINVAL, geosite("nope"))
      assert.matches("geosite 'nope': .*geosite.dat: no list 'nope'", ffi.string(C.lr_conf_error(conf)))
      assert.equal(C.LR_EINVAL, C.lr_conf_route_geosite(conf, tmp .. "/missing.dat", "cn"))
      assert.matches("cannot open .*missing.dat: No such file", ffi.string(C.lr_conf_error(conf)))
      -- truncated and garbage files are refused, never read past their end
      local whole = G.geosite { { "cn", { { T.full, "a.cn" } } } }
      for cut = 1, #whole - 1 do
        local p = write("cut.dat", whole:sub(1, cut))
        local rc = C.lr_conf_route_geosite(conf, p, "cn")
        assert.equal(C.LR_EINVAL, rc, "cut at " .. cut)
      end
      local p = write("junk.dat", "\255\255\255\255\255\255\255\255\255\255\255")
      assert.equal(C.LR_EINVAL, C.lr_conf_route_geoip(conf, p, "cn", 0))
      assert.matches("not a v2ray routing data file", ffi.string(C.lr_conf_error(conf)))
    end)

    it("a changed file is read again; an unchanged one is the shared copy", function()
      local p = write("chg.dat", G.geosite { { "l", { { T.full, "one.example" } } } })
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf, p, "l"))
      assert.is_true(hit "one.example")
      -- same file, another conf (a reload): same answers
      local conf2 = C.lr_conf_new()
      ob(conf2, "direct"); ob(conf2, "hit")
      assert.equal(C.LR_OK, C.lr_conf_route(conf2, "hit", "spec"))
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf2, p, "l"))
      -- rewritten with other contents (and another size): the new list
      os.execute("sleep 0.01")
      write("chg.dat", G.geosite { { "l", { { T.full, "two.example" }, { T.full, "three.example" } } } })
      local conf3 = C.lr_conf_new()
      ob(conf3, "direct"); ob(conf3, "hit")
      assert.equal(C.LR_OK, C.lr_conf_route(conf3, "hit", "spec"))
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf3, p, "l"))
      local saved = conf
      conf = conf3
      assert.is_true(hit "two.example")
      assert.is_false(hit "one.example")
      conf = conf2
      assert.is_true(hit "one.example")
      conf = saved
      C.lr_conf_free(conf2)
      C.lr_conf_free(conf3)
    end)

    it("a held entry of an unchanged file is shared, not read again", function()
      local p = write("same.dat", G.geosite { { "l", { { T.full, "one.example" } } } })
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf, p, "l"))
      -- other bytes of the same length, with the old modification time put
      -- back: to the cache this is the same file
      local f = assert(io.popen("stat -c %y " .. p))
      local mtime = f:read("*l")
      f:close()
      local h = assert(io.open(p, "r+b"))      -- same inode
      h:write(G.geosite { { "l", { { T.full, "two.example" } } } })
      h:close()
      assert(os.execute(("touch -d '%s' %s"):format(mtime, p)) == 0)
      local conf2 = C.lr_conf_new()
      ob(conf2, "direct"); ob(conf2, "hit")
      assert.equal(C.LR_OK, C.lr_conf_route(conf2, "hit", "spec"))
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf2, p, "l"))
      local saved = conf
      conf = conf2
      assert.is_true(hit "one.example")       -- the copy conf holds
      assert.is_false(hit "two.example")
      conf = saved
      -- once no conf holds it, the file is read again
      C.lr_conf_free(conf2)
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf, p, "l"))
      assert.is_true(hit "two.example")
      assert.is_false(hit "one.example")
    end)

    it("100,000 names and 20,000 CIDRs load and match", function()
      local doms, cidrs = {}, {}
      for i = 1, 100000 do
        doms[i] = { i % 10 == 0 and T.full or T.domain, ("n%d.s%d.example"):format(i, i % 97) }
      end
      for i = 1, 20000 do
        cidrs[i] = ("%d.%d.%d.0/24"):format(20 + math.floor(i / 65536), math.floor(i / 256) % 256, i % 256)
      end
      local sp = write("big-site.dat", G.geosite { { "big", doms } })
      local ipp = write("big-ip.dat", G.geoip { { "big", cidrs } })
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geosite(conf, sp, "big"))
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geoip(conf, ipp, "big", 0))
      assert.is_true(hit "n1.s1.example")
      assert.is_true(hit "x.n99999.s89.example")
      assert.is_true(hit "n100000.s90.example")
      assert.is_false(hit "x.n100000.s90.example")   -- a full entry
      assert.is_false(hit "n100001.s91.example")
      assert.is_true(hit { ip = "20.0.1.9" })
      assert.is_true(hit { ip = "20.78.32.255" })      -- i = 20000
      assert.is_false(hit { ip = "20.78.33.0" })
      assert.is_false(hit { ip = "20.0.0.1" })         -- i = 0 is not in the list
    end)
  end)

  describe(".mmdb (MaxMind DB)", function()
    local mm = write("Country.mmdb", G.mmdb_v4 {
      { "1.2.3.0/24", "CN" }, { "8.8.8.0/24", "US" }, { "9.0.0.0/8", "CN" },
    })

    it("country codes from country.iso_code, in any case; reverse", function()
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geoip(conf, mm, "cn", 0))
      assert.is_true(hit { ip = "1.2.3.4" })
      assert.is_true(hit { ip = "9.200.0.1" })
      assert.is_true(hit { ip = "::ffff:1.2.3.4" })
      assert.is_false(hit { ip = "8.8.8.8" })
      assert.is_false(hit { ip = "7.7.7.7" })          -- in no network
      assert.is_false(hit { ip = "2001:db8::1" })      -- an IPv4 database
      C.lr_conf_free(conf)
      conf = C.lr_conf_new()
      ob(conf, "direct"); ob(conf, "hit")
      rule()
      assert.equal(C.LR_OK, C.lr_conf_route_geoip(conf, mm, "CN", 1))
      assert.is_false(hit { ip = "1.2.3.4" })
      assert.is_true(hit { ip = "8.8.8.8" })
    end)

    it("a damaged database is refused at load", function()
      rule()
      local whole = G.mmdb_v4 { { "1.2.3.0/24", "CN" } }
      -- the metadata marker kept, the metadata map cut short
      local p = write("bad.mmdb", whole:sub(1, #whole - 20))
      assert.equal(C.LR_EINVAL, C.lr_conf_route_geoip(conf, p, "cn", 0))
      assert.matches("geoip 'cn': .*bad.mmdb", ffi.string(C.lr_conf_error(conf)))
    end)
  end)
end)
