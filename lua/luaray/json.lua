-- luaray.json: JSON (RFC 8259) for config code that talks to HTTP APIs
-- (luaray.http.request), exposed as luaray.json.
--
--   luaray.json.encode(value) -> text, or nil, "error"
--   luaray.json.decode(text)  -> value, or nil, "error at byte N: ..."
--   luaray.json.null          -- what a JSON null in an array decodes to
--                             -- (a null member of an object is left out)
--
-- encode: a table with keys 1..n only (n >= 1) is an array, any other
-- table an object (keys: strings, or numbers written as strings; an empty
-- table is {}); numbers that are whole are written without a fraction;
-- NaN and infinities, functions and cycles are errors.  decode: numbers
-- become Lua numbers (exact up to 2^53), \u escapes become UTF-8 (with
-- surrogate pairs), nesting is limited to 200 levels.
local M = {}

local byte, char, sub, find, fmt, concat = string.byte, string.char, string.sub, string.find,
  string.format, table.concat
local floor, huge = math.floor, math.huge

M.null = setmetatable({}, { __tostring = function() return "null" end,
                            __newindex = function() error("luaray.json.null is read-only", 2) end })

---------------------------------------------------------------------------
-- encode

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function esc_char(c) return ESC[c] or fmt("\\u%04x", byte(c)) end

local function enc_string(s)
  return '"' .. s:gsub('[%c"\\]', esc_char) .. '"'
end

local encode_value

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local k = 0
  for _ in pairs(t) do k = k + 1 end
  return k == n
end

function encode_value(v, out, seen, depth)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = enc_string(v)
  elseif tv == "number" then
    if v ~= v or v == huge or v == -huge then error("cannot encode " .. tostring(v), 0) end
    if v == floor(v) and v > -2^53 and v < 2^53 then
      out[#out + 1] = fmt("%.0f", v)
    else
      out[#out + 1] = fmt("%.17g", v)
    end
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == nil or v == M.null then
    out[#out + 1] = "null"
  elseif tv == "table" then
    if seen[v] then error("cannot encode a table that contains itself", 0) end
    if depth > 200 then error("nesting deeper than 200", 0) end
    seen[v] = true
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, seen, depth + 1)
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "{"
      local first = true
      for k, x in pairs(v) do
        local tk = type(k)
        if tk == "number" then k = fmt(k == floor(k) and "%.0f" or "%.17g", k)
        elseif tk ~= "string" then error("cannot encode an object key of type " .. tk, 0) end
        if not first then out[#out + 1] = "," end
        first = false
        out[#out + 1] = enc_string(k)
        out[#out + 1] = ":"
        encode_value(x, out, seen, depth + 1)
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    error("cannot encode a " .. tv, 0)
  end
end

function M.encode(v)
  local out = {}
  local ok, err = pcall(encode_value, v, out, {}, 0)
  if not ok then return nil, "luaray.json.encode: " .. tostring(err) end
  return concat(out)
end

---------------------------------------------------------------------------
-- decode

local decode_value

local function fail(pos, what) error({ pos = pos, what = what }, 0) end

local function skip(s, pos)
  local _, e = find(s, "^[ \t\r\n]*", pos)
  return e + 1
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

local UNESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                r = "\r", t = "\t" }

local function dec_string(s, pos)
  -- pos is just after the opening quote
  local parts, start = nil, pos
  while true do
    local q = find(s, '["\\%c]', pos)
    if not q then fail(start - 1, "unterminated string") end
    local c = sub(s, q, q)
    if c == '"' then
      local piece = sub(s, pos, q - 1)
      if not parts then return piece, q + 1 end
      parts[#parts + 1] = piece
      return concat(parts), q + 1
    end
    if c ~= "\\" then fail(q, "control character in a string") end
    parts = parts or {}
    parts[#parts + 1] = sub(s, pos, q - 1)
    local e = sub(s, q + 1, q + 1)
    if e == "u" then
      local hex = s:match("^%x%x%x%x", q + 2)
      if not hex then fail(q, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      pos = q + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u([Dd][C-Fc-f]%x%x)", pos)
        if lo then
          cp = 0x10000 + (cp - 0xD800) * 1024 + (tonumber(lo, 16) - 0xDC00)
          pos = pos + 6
        end
      end
      parts[#parts + 1] = utf8(cp)
    else
      local u = UNESC[e]
      if not u then fail(q, "bad escape") end
      parts[#parts + 1] = u
      pos = q + 2
    end
  end
end

function decode_value(s, pos, depth)
  pos = skip(s, pos)
  local c = sub(s, pos, pos)
  if c == "{" then
    if depth >= 200 then fail(pos, "nesting deeper than 200") end
    local t = {}
    pos = skip(s, pos + 1)
    if sub(s, pos, pos) == "}" then return t, pos + 1 end
    while true do
      if sub(s, pos, pos) ~= '"' then fail(pos, "object key expected") end
      local k
      k, pos = dec_string(s, pos + 1)
      pos = skip(s, pos)
      if sub(s, pos, pos) ~= ":" then fail(pos, "':' expected") end
      local v
      v, pos = decode_value(s, pos + 1, depth + 1)
      if v ~= M.null then t[k] = v end
      pos = skip(s, pos)
      local d = sub(s, pos, pos)
      if d == "}" then return t, pos + 1 end
      if d ~= "," then fail(pos, "',' or '}' expected") end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    if depth >= 200 then fail(pos, "nesting deeper than 200") end
    local t, n = {}, 0
    pos = skip(s, pos + 1)
    if sub(s, pos, pos) == "]" then return t, pos + 1 end
    while true do
      local v
      v, pos = decode_value(s, pos, depth + 1)
      n = n + 1
      t[n] = v
      pos = skip(s, pos)
      local d = sub(s, pos, pos)
      if d == "]" then return t, pos + 1 end
      if d ~= "," then fail(pos, "',' or ']' expected") end
      pos = pos + 1
    end
  elseif c == '"' then
    return dec_string(s, pos + 1)
  elseif c == "t" and sub(s, pos, pos + 3) == "true" then
    return true, pos + 4
  elseif c == "f" and sub(s, pos, pos + 4) == "false" then
    return false, pos + 5
  elseif c == "n" and sub(s, pos, pos + 3) == "null" then
    return M.null, pos + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    local v = num and tonumber(num)
    if not v then fail(pos, c == "" and "unexpected end" or "unexpected character") end
    return v, pos + #num
  end
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "luaray.json.decode: a string expected" end
  local ok, v, pos = pcall(decode_value, s, 1, 0)
  if ok then
    pos = skip(s, pos)
    if pos <= #s then return nil, fmt("luaray.json.decode: at byte %d: trailing characters", pos) end
    if v == M.null then return nil end
    return v
  end
  if type(v) == "table" then
    return nil, fmt("luaray.json.decode: at byte %d: %s", v.pos, v.what)
  end
  return nil, "luaray.json.decode: " .. tostring(v)
end

return M
