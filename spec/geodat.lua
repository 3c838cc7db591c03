--[==[ geodat: routing data files written by the specs, from the formats'
public descriptions (never from luaray's reader):

  v2fly's geosite.dat / geoip.dat: protobuf messages GeoSiteList / GeoIPList
  (v2ray 4.34 app/router/config.proto), encoded here by hand from the
  protobuf wire format (varints, tags = field << 3 | wire type, length-
  delimited submessages):
    GeoSiteList { repeated GeoSite entry = 1 }
    GeoSite     { string country_code = 1; repeated Domain domain = 2 }
    Domain      { Type type = 1 (Plain 0, Regex 1, Domain 2, Full 3);
                  string value = 2; repeated Attribute attribute = 3 }
    Attribute   { string key = 1; bool bool_value = 2 | int64 int_value = 3 }
    GeoIPList   { repeated GeoIP entry = 1 }
    GeoIP       { string country_code = 1; repeated CIDR cidr = 2;
                  bool reverse_match = 3 }
    CIDR        { bytes ip = 1; uint32 prefix = 2 }

  A MaxMind DB (.mmdb, format 2.0: maxmind.github.io/MaxMind-DB): a binary
  search tree over address bits (24-bit records), 16 zero bytes, a data
  section, then "\xab\xcd\xefMaxMind.com" and the metadata map.

  G.geosite{ {code, { {type, value, attrs = {"ads"}}, ... }}, ... } -> bytes
  G.geoip{ {code, { "10.0.0.0/8", "2001:db8::/32", ... }, reverse = bool}, ... } -> bytes
  G.mmdb_v4{ {"1.2.3.0/24", "CN"}, ... } -> bytes (ip_version 4, country.iso_code;
                networks must not nest: a later one replaces what it covers)
  G.cidr_bytes("a.b.c.d/n" | "v6/n") -> ip bytes, prefix
  G.T = { plain = 0, regex = 1, domain = 2, full = 3 }
]==]
local bit = require "bit"

local G = {}
G.T = { plain = 0, regex = 1, domain = 2, full = 3 }

local char, concat = string.char, table.concat

local function varint(n)
  local out = {}
  repeat
    local b = n % 128
    n = (n - b) / 128
    out[#out + 1] = char(n > 0 and b + 128 or b)
  until n == 0
  return concat(out)
end

local function key(field, wt) return varint(field * 8 + wt) end
local function lenf(field, bytes) return key(field, 2) .. varint(#bytes) .. bytes end
local function vint(field, n) return key(field, 0) .. varint(n) end

-- "a.b.c.d[/n]" or an IPv6 literal "x:y::z[/n]" -> 4 or 16 bytes, prefix
function G.cidr_bytes(s)
  local addr, bits = s:match("^([^/]+)/(%d+)$")
  addr = addr or s
  local a, b, c, d = addr:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    return char(tonumber(a), tonumber(b), tonumber(c), tonumber(d)), tonumber(bits or 32)
  end
  -- a dotted quad at the end of an IPv6 literal: its two last groups
  local pre, q1, q2, q3, q4 = addr:match("^(.*:)(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if pre then
    addr = pre .. ("%x:%x"):format(tonumber(q1) * 256 + tonumber(q2), tonumber(q3) * 256 + tonumber(q4))
  end
  local head, tail = addr:match("^(.-)::(.*)$")
  local groups = {}
  local function split(x)
    local t = {}
    for g in x:gmatch("[^:]+") do t[#t + 1] = tonumber(g, 16) end
    return t
  end
  if head then
    local h, t = split(head), split(tail)
    for _, g in ipairs(h) do groups[#groups + 1] = g end
    for _ = 1, 8 - #h - #t do groups[#groups + 1] = 0 end
    for _, g in ipairs(t) do groups[#groups + 1] = g end
  else
    groups = split(addr)
  end
  assert(#groups == 8, "bad address " .. s)
  local out = {}
  for i, g in ipairs(groups) do out[i] = char(bit.rshift(g, 8), bit.band(g, 255)) end
  return concat(out), tonumber(bits or 128)
end

function G.geosite(entries)
  local out = {}
  for _, e in ipairs(entries) do
    local body = { lenf(1, e[1]) }
    for _, d in ipairs(e[2]) do
      local dom = { d[1] ~= 0 and vint(1, d[1]) or "", lenf(2, d[2]) }
      for _, a in ipairs(d.attrs or {}) do
        dom[#dom + 1] = lenf(3, lenf(1, a) .. vint(2, 1))
      end
      body[#body + 1] = lenf(2, concat(dom))
    end
    out[#out + 1] = lenf(1, concat(body))
  end
  return concat(out)
end

function G.geoip(entries)
  local out = {}
  for _, e in ipairs(entries) do
    local body = { lenf(1, e[1]) }
    for _, c in ipairs(e[2]) do
      local ip, prefix = G.cidr_bytes(c)
      body[#body + 1] = lenf(2, lenf(1, ip) .. (prefix > 0 and vint(2, prefix) or ""))
    end
    if e.reverse then body[#body + 1] = vint(3, 1) end
    out[#out + 1] = lenf(1, concat(body))
  end
  return concat(out)
end

---------------------------------------------------------------------------
-- MaxMind DB

-- data section values: strings, unsigned integers (tagged), maps, arrays
local function ctrl(typ, size)
  local ext = typ > 7
  local first = ext and 0 or typ * 32
  local sz
  if size < 29 then first, sz = first + size, ""
  elseif size < 285 then first, sz = first + 29, char(size - 29)
  else first, sz = first + 30, char(bit.rshift(size - 285, 8), bit.band(size - 285, 255)) end
  return char(first) .. (ext and char(typ - 7) or "") .. sz
end

local function uint_bytes(n)
  local out = {}
  while n > 0 do
    table.insert(out, 1, char(n % 256))
    n = math.floor(n / 256)
  end
  return concat(out)
end

local encode
-- v: string -> utf8 string; {u16 = n} / {u32 = n} / {u64 = n}; {array = {...}};
-- other tables -> maps (keys sorted, for stable output)
function encode(v)
  if type(v) == "string" then return ctrl(2, #v) .. v end
  if v.u16 then local b = uint_bytes(v.u16) return ctrl(5, #b) .. b end
  if v.u32 then local b = uint_bytes(v.u32) return ctrl(6, #b) .. b end
  if v.u64 then local b = uint_bytes(v.u64) return ctrl(9, #b) .. b end
  if v.array then
    local parts = { ctrl(11, #v.array) }
    for _, x in ipairs(v.array) do parts[#parts + 1] = encode(x) end
    return concat(parts)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { ctrl(7, #keys) }
  for _, k in ipairs(keys) do parts[#parts + 1] = encode(k) .. encode(v[k]) end
  return concat(parts)
end

local function rec24(n) return char(bit.band(bit.rshift(n, 16), 255), bit.band(bit.rshift(n, 8), 255), bit.band(n, 255)) end

-- networks: { {"a.b.c.d/n", "CC"}, ... } (IPv4, ip_version 4)
function G.mmdb_v4(networks)
  -- the data section: one record per distinct country
  local data, offset_of = {}, {}
  local size = 0
  for _, n in ipairs(networks) do
    local cc = n[2]
    if not offset_of[cc] then
      local rec = encode({ country = { iso_code = cc } })
      offset_of[cc] = size
      data[#data + 1] = rec
      size = size + #rec
    end
  end
  -- the tree: nodes {[0] = child or data, [1] = ...}; child: table or {cc}
  local root = {}
  for _, n in ipairs(networks) do
    local ip, bits = G.cidr_bytes(n[1])
    local node = root
    for i = 0, bits - 1 do
      local byte = ip:byte(math.floor(i / 8) + 1)
      local b = bit.band(bit.rshift(byte, 7 - i % 8), 1)
      if i == bits - 1 then
        node[b] = { leaf = n[2] }
      else
        if not node[b] or node[b].leaf then node[b] = {} end
        node = node[b]
      end
    end
  end
  -- number the nodes breadth first
  local order, index = { root }, { [root] = 0 }
  local i = 1
  while i <= #order do
    local node = order[i]
    for b = 0, 1 do
      local c = node[b]
      if c and not c.leaf then
        index[c] = #order
        order[#order + 1] = c
      end
    end
    i = i + 1
  end
  local count = #order
  local tree = {}
  for _, node in ipairs(order) do
    for b = 0, 1 do
      local c = node[b]
      local v
      if not c then v = count
      elseif c.leaf then v = count + 16 + offset_of[c.leaf]
      else v = index[c] end
      tree[#tree + 1] = rec24(v)
    end
  end
  local meta = encode({
    node_count = { u32 = count }, record_size = { u16 = 24 }, ip_version = { u16 = 4 },
    database_type = "luaray-spec-Country", languages = { array = { "en" } },
    binary_format_major_version = { u16 = 2 }, binary_format_minor_version = { u16 = 0 },
    build_epoch = { u64 = 1700000000 }, description = { en = "luaray spec" },
  })
  return concat(tree) .. string.rep("\0", 16) .. concat(data) ..
         "\171\205\239MaxMind.com" .. meta
end

return G
