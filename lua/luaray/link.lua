-- luaray.link: vmess:// share links in the v2rayN format.
--
-- A link is "vmess://" followed by the standard base64 (with padding) of a
-- flat JSON object whose values are all strings:
--
--   {"v":"2","ps":<email>,"add":<host>,"port":"<port>","id":<uuid>,
--    "aid":"<alter_id>","scy":<security>,"net":<net>,"type":<type>,
--    "host":<host>,"path":<path>,"tls":<tls>,"sni":<sni>,"alpn":<alpn>}
--
-- always in that key order, so the same input gives the same link.  The
-- transport fields are v2rayN's (its "share link format, version 2"), from
-- the inbound's transport and tls:
--   net   "tcp", "ws", "httpupgrade" or "grpc"
--   type  "none"; for grpc the mode: "gun" (Tun) or "multi" (TunMulti)
--   host  ws/httpupgrade: the Host the server requires ("" when any)
--   path  ws/httpupgrade: the path, a ws one with "?ed=N" when the inbound
--         takes N bytes of early data (Xray clients then send it); grpc:
--         the service name
--   tls   "tls" for a TLS inbound, else ""
--   sni   the name to ask for: transport.host, else the link's host when
--         it is a name; "" for an address or without TLS
--   alpn  the inbound's ALPN protocols the transport can use, comma
--         separated: a ws/httpupgrade client must not offer h2 (a server
--         preferring h2 would pick it and the upgrade would fail), gRPC
--         needs h2; "" without TLS
-- The daemon embeds this file (`luaray link`), so it depends on nothing: the
-- base64 codec and the JSON writer and reader (flat objects only) are here.
--
--   M.vmess_link(user, host, port [, opts]) -> "vmess://..."
--       user: { id = "uuid", email = "...", alter_id = n } (a cfg.users entry)
--       opts.security: the "scy" field, default "auto"
--       opts.ps: the link's name ("ps"), default user.email
--       opts.transport, opts.tls: the inbound's (config.lua's normalised
--       `transport` and `tls` tables); nil: bare TCP, no TLS
--       Raises on misuse (a missing id, a bad port).
--   M.parse_vmess_link(s) -> table of the JSON fields (strings and numbers
--       as they appear), or nil, err.  Accepts standard or URL-safe base64,
--       with or without padding, and ignores whitespace inside it.
--   M.base64_encode(s), M.base64_decode(s) -> string or nil, err
--   M.json_encode_object(list of { key, value }) -> JSON text (strings,
--       numbers, booleans as values)
--   M.json_decode_object(text) -> table or nil, err (flat objects only)

local M = {}

local byte, char, fmt, concat = string.byte, string.char, string.format, table.concat
local floor = math.floor

---------------------------------------------------------------------------
-- base64 (RFC 4648)

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
  local c = ALPHABET:sub(i, i)
  ENC[i - 1] = c
  DEC[byte(c)] = i - 1
end
DEC[byte("-")] = 62 -- URL-safe alphabet (RFC 4648 section 5)
DEC[byte("_")] = 63

function M.base64_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = floor(n / 262144)
    local c2 = floor(n / 4096) % 64
    local c3 = floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = ENC[c1] .. ENC[c2] .. (b and ENC[c3] or "=") .. (c and ENC[c4] or "=")
  end
  return concat(out)
end

function M.base64_decode(s)
  if type(s) ~= "string" then return nil, "base64: not a string" end
  s = s:gsub("%s+", "")
  s = s:gsub("=+$", "", 1)
  if s:find("=", 1, true) then return nil, "base64: '=' inside the data" end
  if #s % 4 == 1 then return nil, "base64: truncated data" end
  local out = {}
  for i = 1, #s, 4 do
    local n, k = 0, 0
    for j = i, i + 3 do
      local cb = byte(s, j)
      if cb then
        local d = DEC[cb]
        if not d then return nil, fmt("base64: invalid character %q", char(cb)) end
        n = n * 64 + d
        k = k + 1
      end
    end
    for _ = k + 1, 4 do n = n * 64 end
    local b1 = floor(n / 65536)
    local b2 = floor(n / 256) % 256
    local b3 = n % 256
    if k == 4 then out[#out + 1] = char(b1, b2, b3)
    elseif k == 3 then out[#out + 1] = char(b1, b2)
    else out[#out + 1] = char(b1) end
  end
  return concat(out)
end

---------------------------------------------------------------------------
-- JSON, flat objects only

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or fmt("\\u%04x", byte(c))
  end) .. '"'
end

local function json_value(v)
  local tv = type(v)
  if tv == "string" then return json_string(v) end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("JSON: number out of range", 3) end
    if floor(v) == v and v > -1e15 and v < 1e15 then return fmt("%d", v) end
    return fmt("%.17g", v)
  end
  error("JSON: unsupported value of type " .. tv, 3)
end

-- list: { { "key", value }, ... } in the order wanted
function M.json_encode_object(list)
  local out = {}
  for i, kv in ipairs(list) do
    out[i] = json_string(kv[1]) .. ":" .. json_value(kv[2])
  end
  return "{" .. concat(out, ",") .. "}"
end

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
              0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local UNESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                n = "\n", r = "\r", t = "\t" }

-- Reads a JSON string starting at the opening quote at i; returns the
-- value and the index after the closing quote, or nil, err.
local function read_string(s, i)
  local out = {}
  i = i + 1
  while true do
    local j = s:find('["\\%c]', i)
    if not j then return nil, "JSON: unterminated string" end
    out[#out + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return concat(out), j + 1 end
    if c ~= "\\" then return nil, "JSON: control character in string" end
    local e = s:sub(j + 1, j + 1)
    if UNESC[e] then
      out[#out + 1] = UNESC[e]
      i = j + 2
    elseif e == "u" then
      local h = s:match("^%x%x%x%x", j + 2)
      if not h then return nil, "JSON: bad \\u escape" end
      local cp = tonumber(h, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", i)
        lo = lo and tonumber(lo, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then return nil, "JSON: lone surrogate" end
        cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        return nil, "JSON: lone surrogate"
      end
      out[#out + 1] = utf8(cp)
    else
      return nil, "JSON: bad escape"
    end
  end
end

function M.json_decode_object(s)
  if type(s) ~= "string" then return nil, "JSON: not a string" end
  local obj = {}
  local i = s:find("%S") or #s + 1
  if s:sub(i, i) ~= "{" then return nil, "JSON: expected an object" end
  i = s:find("%S", i + 1) or #s + 1
  if s:sub(i, i) == "}" then
    i = i + 1
  else
    while true do
      if s:sub(i, i) ~= '"' then return nil, "JSON: expected a key" end
      local key, err
      key, i = read_string(s, i)
      if not key then return nil, i end
      i = s:find("%S", i) or #s + 1
      if s:sub(i, i) ~= ":" then return nil, "JSON: expected ':'" end
      i = s:find("%S", i + 1) or #s + 1
      local c = s:sub(i, i)
      local v
      if c == '"' then
        v, err = read_string(s, i)
        if not v then return nil, err end
        i = err
      elseif s:find("^true", i) then v, i = true, i + 4
      elseif s:find("^false", i) then v, i = false, i + 5
      elseif s:find("^null", i) then v, i = nil, i + 4
      else
        local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
        if not num or not tonumber(num) then return nil, "JSON: unsupported value (flat objects only)" end
        v, i = tonumber(num), i + #num
      end
      obj[key] = v
      i = s:find("%S", i) or #s + 1
      c = s:sub(i, i)
      i = i + 1
      if c == "}" then break end
      if c ~= "," then return nil, "JSON: expected ',' or '}'" end
      i = s:find("%S", i) or #s + 1
    end
  end
  if s:find("%S", i) then return nil, "JSON: trailing data" end
  return obj
end

---------------------------------------------------------------------------
-- Links

-- net, type, host, path of an inbound's transport (nil: bare TCP)
local function transport_fields(tp)
  if not tp or tp.type == "tcp" then return "tcp", "none", "", "" end
  if tp.type == "grpc" then
    return "grpc", tp.multi and "multi" or "gun", "", tp.service_name or ""
  end
  local path = tp.path or "/"
  if tp.type == "ws" and (tp.max_early_data or 0) > 0 then
    path = path .. (path:find("?", 1, true) and "&" or "?") .. "ed=" .. fmt("%d", tp.max_early_data)
  end
  return tp.type, "none", tp.host or "", path
end

-- an address, not a name (IPv4 digits and dots, or IPv6)
local function is_address(h)
  return h:find(":", 1, true) ~= nil or h:match("^[%d.]+$") ~= nil
end

-- the inbound's ALPN list, less what the transport cannot speak
local function alpn_field(tls, net)
  local out = {}
  for _, a in ipairs(tls.alpn or {}) do
    if (net == "grpc" and a == "h2") or ((net == "ws" or net == "httpupgrade") and a ~= "h2")
       or net == "tcp" then
      out[#out + 1] = a
    end
  end
  return concat(out, ",")
end

function M.vmess_link(user, host, port, opts)
  if type(user) ~= "table" or type(user.id) ~= "string" then
    error("vmess_link: user must be a table with an id", 2)
  end
  if type(host) ~= "string" or host == "" then error("vmess_link: host must be a string", 2) end
  local p = tonumber(port)
  if not p or p < 1 or p > 65535 or floor(p) ~= p then error("vmess_link: bad port", 2) end
  opts = opts or {}
  local security = opts.security or "auto"
  local net, typ, thost, path = transport_fields(opts.transport)
  local tls, sni, alpn = "", "", ""
  if opts.tls then
    tls = "tls"
    if thost ~= "" then sni = thost elseif not is_address(host) then sni = host end
    alpn = alpn_field(opts.tls, net)
  end
  return "vmess://" .. M.base64_encode(M.json_encode_object({
    { "v", "2" },
    { "ps", opts.ps or user.email or "" },
    { "add", host },
    { "port", tostring(p) },
    { "id", user.id },
    { "aid", tostring(user.alter_id or 0) },
    { "scy", security },
    { "net", net },
    { "type", typ },
    { "host", thost },
    { "path", path },
    { "tls", tls },
    { "sni", sni },
    { "alpn", alpn },
  }))
end

function M.parse_vmess_link(s)
  if type(s) ~= "string" then return nil, "not a string" end
  s = s:match("^%s*(.-)%s*$")
  if s:sub(1, 8):lower() ~= "vmess://" then return nil, "not a vmess:// link" end
  local json, err = M.base64_decode(s:sub(9))
  if not json then return nil, err end
  return M.json_decode_object(json)
end

return M
