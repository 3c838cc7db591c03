-- luaray.config: the config DSL (design.md section 2).
--
-- A config is a Lua script that calls luaray.log / user / inbound / outbound /
-- route / on / include.  This module runs it in a restricted environment,
-- checks every call as it happens (unknown keys, wrong types, missing keys,
-- duplicates), cross-checks the whole declaration once the script has run
-- (references between routes, outbounds, inbounds and users), and returns
-- one plain table that the C side copies into its staging config.  It does
-- no I/O beyond reading the config files and uses neither the FFI nor C:
-- turning the result into C structures is conf/'s job.
--
--   local cfg, err = require("luaray.config").load(path [, opts])
--   local cfg, err = require("luaray.config").load_string(src [, chunkname [, opts]])
--
-- On failure both return nil and one line "file:line: message", where file
-- is the config file (or an included one) and line the offending call or
-- declaration.  chunkname follows Lua: "=name" or "@name.lua" both show as
-- the file name in messages; it defaults to "=config".  A main file that
-- cannot be opened or read gives "path: cannot open: <reason>" or "path:
-- cannot read: <reason>" (there is no line).  The line named is that of the
-- config code that made the call (pcall and tail calls are looked through:
-- after `return luaray.user {...}` it is the line of the caller).
--
-- opts (optional): { luaray = { name = value, ... } } adds fields to the
-- `luaray` table the script and its hooks see (the daemon's `shared` store,
-- for instance).  They cannot replace a DSL word.
--
-- The script's globals are the safe standard library (no io, os.execute,
-- loaders, package, debug, ffi), `luaray` and a `require` that knows only
-- "luaray".  The environment is read-only: any global assignment is an
-- error, and so is reading an undefined global.  luaray.include "f.lua"
-- runs another file in the same environment, relative to the including
-- file; a file may be read once per load (a second include, or a cycle, is
-- refused).  Paths are cleaned lexically ("a/./b/../c" is "a/c").
--
-- THE RESULT (the contract with the C side).  Every key below is always
-- present unless marked "or nil".  Durations are seconds (Lua numbers,
-- possibly fractional); "where" is "file:line" of the declaring call.
--
--   cfg.log = { level = "debug"|"info"|"warn"|"error",   -- default "info"
--               access = true | false | "path" }           -- default true (stderr)
--   cfg.log_where = "file:line" or nil   -- of luaray.log; nil when it is not called
--   cfg.sniffed_used = bool          -- some config file mentions "sniffed"
--   cfg.workers = 1..64 | "auto"     -- luaray.workers(n); default 1
--   cfg.budget = { seconds = n, instructions = n, where = "file:line" or nil }
--                                    -- luaray.budget: one hook call's budget;
--                                    -- default 0.25 s, 50 million instructions
--   cfg.workers_where = "file:line" or nil
--   cfg.metrics = { host =, port =, token = "..." or nil, where = "file:line" } or nil
--   cfg.api = { host =, port =, where = "file:line" } or nil
--   cfg.cluster = { host = "IP" (IPv6 without brackets), port =, password = "..." or nil,
--                   db = 0.., prefix = "luaray:", node = "...", timeout_ms = 1..10000,
--                   where = "file:line" } or nil     -- luaray.cluster (design.md 8)
--   cfg.users[i] = { id = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (lower case),
--                    email = "...",          -- default "user" .. i
--                    alter_id = 0..65535, level = 0..255, where = "file:line" }
--   cfg.inbounds[i] = {
--     tag = "...", type = "vmess"|"socks"|"http", where = "file:line",
--     listen = { host = "127.0.0.1" | "::1" (no brackets) | "localhost", port = 1..65535 },
--     handshake_timeout = n,  -- > 0; default 60 (vmess), 10 (socks, http)
--     idle_timeout = n,       -- > 0; default 300
--     max_connections = n,    -- integer >= 0; 0 = unlimited (default)
--     max_sessions = n,       -- vmess, socks: 1..1024 per client connection; nil = 256
--     -- type "vmess":
--     allow_legacy = bool,    -- default false (AEAD only, as v2fly and Xray since 2022)
--     allow_private = bool,   -- default false
--     users = { "email", ... } or nil,   -- nil: every user
--     dynamic_port = { port = PORTRANGE, alter_id = 0..65535 (default 0),
--                      minutes = 1..255 (default 5) } or nil,
--     -- type "socks":
--     udp = bool,             -- default false
--     accounts = { { user = "u", pass = "p" }, ... } or nil,  -- nil: no auth
--     -- type "http":
--     accounts = (as for socks) or nil,
--     -- type "tunnel" (dokodemo-door), "tproxy", "redirect":
--     to = { host = "...", port = 1..65535 } or nil,  -- tunnel only (required there)
--     network = { tcp = true, udp = true },           -- tunnel, tproxy: default tcp;
--                                                     -- redirect: tcp only
--     udp_timeout = n }       -- > 0; default 60: a UDP session's idle time
--   cfg.outbounds[i] = {
--     tag = "...", type = "direct"|"blackhole"|"vmess", where = "file:line",
--     connect_timeout = n,    -- > 0; default 10
--     -- type "direct":
--     domain_strategy = "as_is"|"ipv4"|"ipv6",  -- default "as_is"
--     -- type "vmess":
--     server = { host = "...", port = 1..65535 }, id = "uuid (lower case)",
--     alter_id = 0..65535 (default 0),
--     security = "aes-128-gcm"|"chacha20-poly1305"|"none"|"zero"|"aes-128-cfb"|"auto",
--     masking = bool (default true), padding = bool (default: the value of masking),
--     authenticated_length = bool (default false), udp = bool (default true),
--     mux = { concurrency = 1..1024 } or nil,  -- Mux.Cool: streams per connection
--     xudp = bool (default false) }  -- SOCKS5 UDP associations as one XUDP stream
--   cfg.routes[i] = {       -- in declaration order; the first match wins
--     where = "file:line", to = "outbound tag",
--     domain = { "name", ... } or nil,               -- plain names: substrings, as in
--                                                    -- v2ray; lower case, no trailing dot
--     domain_full = { "exact.name", ... } or nil,    -- from "full:NAME"
--     domain_suffix = { "example.com", ... } or nil, -- lower case, no leading dot (+ "domain:")
--     domain_keyword = { "word", ... } or nil,       -- lower case (+ "keyword:")
--     domain_regexp = { "re", ... } or nil,          -- "regexp:" and "dotless:"
--     geosite = { { list = "cn@ads", file = "/dir/geosite.dat" }, ... } or nil,
--     geoip = { { code = "cn", reverse = bool, file = "/dir/geoip.dat" }, ... } or nil,
--     source = { CIDR as ip_cidr, ... } or nil,      -- the client's address
--     ip_cidr = { { addr = "10.0.0.0", bits = 8, family = 4, ip = "\10\0\0\0" }, ... } or nil,
--               -- addr is canonical (host bits cleared; IPv6 in RFC 5952 form);
--               -- ip is the same address as 4 or 16 bytes (network order);
--               -- a bare address means /32 or /128
--     port = { PORTRANGE, ... } or nil,  -- in the order given, not merged
--     user = { "email", ... } or nil,
--     inbound = { "inbound tag", ... } or nil,
--     network = { tcp = true, udp = true } or nil,   -- only the keys given are set
--     protocol = { "tls"|"http", ... } or nil }
--   cfg.default_outbound = "tag"       -- luaray.route { default = } or the first outbound
--   cfg.domain_strategy = "as_is"|"ip_if_non_match"|"ip_on_demand"  -- luaray.route { domain_strategy = }
--   cfg.default_where = "file:line" or nil  -- nil when it defaulted to the first outbound
--   cfg.hooks = { accept = fn or nil, auth =, route =, connect =, close =, reload = }
--   cfg.files = { "path", ... }        -- every file read from disk, main file first,
--                                      -- then includes in the order they were read
--
--   PORTRANGE = { lo, hi, lo = lo, hi = hi }: both the array slots [1], [2]
--   and the named fields are set, 1 <= lo <= hi <= 65535.
--
-- Lists (users, accounts, route filters) must be non-empty; a string where a
-- list of strings is expected counts as a one-element list.  Hook functions
-- keep the config environment, so at run time they see the same globals and
-- an assignment to an undeclared global inside a hook is an error too.

local M = {}

local getinfo = debug.getinfo
local fmt, concat, sort, char = string.format, table.concat, table.sort, string.char
local floor, huge = math.floor, math.huge

local HOOKS = { "accept", "auth", "route", "connect", "close", "reload" }
local MAX_TIMEOUT = 2592000 -- 30 days: keeps every duration representable in C milliseconds

---------------------------------------------------------------------------
-- Small helpers

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- sort order for keys of mixed types (a named function: no closure per call)
local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  sort(ks, key_order)
  return ks
end

-- Raises "where: message".  Level 0: the position is already in the text,
-- and nothing on the way out (includes, the loader) adds another one.
local function fail(where, msg, ...)
  if select("#", ...) > 0 then msg = fmt(msg, ...) end
  error(where .. ": " .. msg, 0)
end

-- How a wrong value is described in messages.  String values are shown
-- (short ones), except where the caller says the value is a secret.
local function describe(v)
  local tv = type(v)
  if tv == "string" then
    if #v > 40 then return "a string" end
    return fmt("string %q", v)
  elseif tv == "number" or tv == "boolean" then
    return tv .. " " .. tostring(v)
  end
  return tv
end

local function is_int(v)
  return type(v) == "number" and v == v and v > -huge and v < huge and floor(v) == v
end

-- Lexical path clean-up: "a/./b" -> "a/b", "a/x/../b" -> "a/b"; keeps a
-- leading "/" and leading ".." segments.
local function normpath(p)
  local abs = p:sub(1, 1) == "/"
  local out = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      if #out > 0 and out[#out] ~= ".." then out[#out] = nil
      elseif not abs then out[#out + 1] = ".." end
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  local s = concat(out, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

local function dirname(p)
  return p:match("^(.*)/[^/]*$") or ""
end

local function join(dir, rel)
  if rel:sub(1, 1) == "/" or dir == "" then return normpath(rel) end
  return normpath(dir .. "/" .. rel)
end

---------------------------------------------------------------------------
-- Addresses

local function parse_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local out = {}
  for i, part in ipairs({ a, b, c, d }) do
    if #part > 3 or (#part > 1 and part:sub(1, 1) == "0") then return nil end
    local n = tonumber(part)
    if n > 255 then return nil end
    out[i] = n
  end
  return out
end

local function parse_groups(s, allow_v4_tail)
  local groups = {}
  if s == "" then return groups end
  local parts = {}
  for part in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    if i == #parts and allow_v4_tail and part:find(".", 1, true) then
      local v4 = parse_ipv4(part)
      if not v4 then return nil end
      groups[#groups + 1] = v4[1] * 256 + v4[2]
      groups[#groups + 1] = v4[3] * 256 + v4[4]
    else
      if not part:match("^%x%x?%x?%x?$") then return nil end
      groups[#groups + 1] = tonumber(part, 16)
    end
  end
  return groups
end

-- Eight 16-bit groups, or nil.  Accepts "::" compression and a dotted IPv4
-- tail ("::ffff:192.0.2.1"); no zone ids.
local function parse_ipv6(s)
  if not s:find(":", 1, true) or s:find("[^%x:%.]") then return nil end
  local first = s:find("::", 1, true)
  if first then
    if s:find("::", first + 1, true) then return nil end
    local head, tail = s:sub(1, first - 1), s:sub(first + 2)
    local h = parse_groups(head, false)
    local t = parse_groups(tail, true)
    if not h or not t or #h + #t > 7 then return nil end
    local g = {}
    for _, v in ipairs(h) do g[#g + 1] = v end
    for _ = 1, 8 - #h - #t do g[#g + 1] = 0 end
    for _, v in ipairs(t) do g[#g + 1] = v end
    return g
  end
  local g = parse_groups(s, true)
  if not g or #g ~= 8 then return nil end
  return g
end

-- RFC 5952 text: lower case, no leading zeros, the longest run of two or
-- more zero groups (the first one on a tie) written as "::".
local function hex_groups(g, a, b)
  local t = {}
  for k = a, b do t[#t + 1] = fmt("%x", g[k]) end
  return concat(t, ":")
end

local function format_ipv6(g)
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j < 8 and g[j + 1] == 0 do j = j + 1 end
      if j - i + 1 > best_len then best, best_len = i, j - i + 1 end
      i = j + 1
    else
      i = i + 1
    end
  end
  if not best then return hex_groups(g, 1, 8) end
  return hex_groups(g, 1, best - 1) .. "::" .. hex_groups(g, best + best_len, 8)
end

-- A host name: dot-separated labels of letters, digits, '-' and '_'.
-- All-numeric names are refused unless allow_numeric (as a listen or
-- server host "300.1.1.1" is a broken IPv4 address, not a name).
local function is_hostname(s, allow_numeric)
  if #s == 0 or #s > 253 then return false end
  if not allow_numeric and s:match("^[%d%.]+$") then return false end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or label:find("[^%w%-_]") then return false end
  end
  return true
end

local function parse_port(s)
  if type(s) == "number" then
    if is_int(s) and s >= 1 and s <= 65535 then return s end
    return nil
  end
  if type(s) ~= "string" or not s:match("^%d+$") or #s > 5 then return nil end
  local n = tonumber(s)
  if n < 1 or n > 65535 then return nil end
  return n
end

-- "host:port" -> host (brackets removed), port, key (for duplicate checks)
local function parse_hostport(s)
  if type(s) ~= "string" then return nil end
  local host, port = s:match("^%[([^%]]*)%]:([^:]*)$")
  local key
  if host then
    local g = parse_ipv6(host)
    if not g then return nil end
    key = "[" .. format_ipv6(g) .. "]"
  else
    host, port = s:match("^([^:%[%]]*):([^:]*)$")
    if not host then return nil end
    if parse_ipv4(host) then key = host
    elseif is_hostname(host) then key = host:lower()
    else return nil end
  end
  local p = parse_port(port)
  if not p then return nil end
  return host, p, key .. ":" .. p
end

local function range(lo, hi)
  return { lo, hi, lo = lo, hi = hi }
end

-- One port "80" or range "1-1024" (text), or a number.
local function parse_range(v)
  if type(v) == "number" then
    local p = parse_port(v)
    return p and range(p, p)
  end
  if type(v) ~= "string" then return nil end
  v = v:match("^%s*(.-)%s*$")
  local a, b = v:match("^(%d+)%s*%-%s*(%d+)$")
  if a then
    a, b = parse_port(a), parse_port(b)
    if not a or not b or a > b then return nil end
    return range(a, b)
  end
  local p = parse_port(v)
  return p and range(p, p)
end

local function parse_cidr(s)
  if type(s) ~= "string" then return nil end
  local addr, bits = s:match("^([^/]+)/(%d+)$")
  if not addr then addr = s end
  if bits and #bits > 3 then return nil end
  local v4 = parse_ipv4(addr)
  if v4 then
    bits = bits and tonumber(bits) or 32
    if bits > 32 then return nil end
    local n = ((v4[1] * 256 + v4[2]) * 256 + v4[3]) * 256 + v4[4]
    local size = 2 ^ (32 - bits)
    n = n - n % size
    local o = {}
    for i = 4, 1, -1 do o[i] = n % 256; n = (n - o[i]) / 256 end
    return { addr = concat(o, "."), bits = bits, family = 4, ip = char(o[1], o[2], o[3], o[4]) }
  end
  local g = parse_ipv6(addr)
  if not g then return nil end
  bits = bits and tonumber(bits) or 128
  if bits > 128 then return nil end
  for i = 1, 8 do
    local keep = bits - 16 * (i - 1)
    if keep <= 0 then g[i] = 0
    elseif keep < 16 then
      local size = 2 ^ (16 - keep)
      g[i] = g[i] - g[i] % size
    end
  end
  local b = {}
  for i = 1, 8 do b[2 * i - 1], b[2 * i] = (g[i] - g[i] % 256) / 256, g[i] % 256 end
  return { addr = format_ipv6(g), bits = bits, family = 6, ip = char(unpack(b)) }
end

-- "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" or 32 hex digits -> lower-case 36-char form
local function parse_uuid(s)
  if type(s) ~= "string" then return nil end
  local h
  if #s == 36 then
    local a, b, c, d, e = s:match("^(%x+)%-(%x+)%-(%x+)%-(%x+)%-(%x+)$")
    if not a or #a ~= 8 or #b ~= 4 or #c ~= 4 or #d ~= 4 or #e ~= 12 then return nil end
    h = a .. b .. c .. d .. e
  elseif #s == 32 and s:match("^%x+$") then
    h = s
  else
    return nil
  end
  h = h:lower()
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" ..
         h:sub(17, 20) .. "-" .. h:sub(21, 32)
end

local function normalise_domain(s, what)
  if type(s) ~= "string" then return nil end
  s = s:lower()
  if what == "domain_suffix" then s = s:gsub("^%.", "", 1) end
  s = s:gsub("%.$", "", 1)
  if not is_hostname(s, true) then return nil end
  return s
end

---------------------------------------------------------------------------
-- Checking declaration tables

local function check_table(w, v, what)
  if type(v) ~= "table" then
    fail(w, "%s expects a table, got %s", what, describe(v))
  end
end

local function check_keys(w, t, allowed, ctx)
  for _, k in ipairs(sorted_keys(t)) do
    if type(k) ~= "string" then
      fail(w, "unexpected positional value [%s] in %s (use key = value)", tostring(k), ctx)
    elseif not allowed[k] then
      fail(w, "unknown key '%s' in %s", k, ctx)
    end
  end
end

local function bad(w, k, ctx, expect, v)
  fail(w, "'%s' in %s must be %s, got %s", k, ctx, expect, describe(v))
end

local function opt_bool(w, t, k, ctx, default)
  local v = t[k]
  if v == nil then return default end
  if type(v) ~= "boolean" then bad(w, k, ctx, "a boolean", v) end
  return v
end

local function opt_int(w, t, k, ctx, lo, hi, default)
  local v = t[k]
  if v == nil then return default end
  if not is_int(v) or v < lo or v > hi then
    bad(w, k, ctx, fmt("an integer from %d to %d", lo, hi), v)
  end
  return v
end

local function opt_seconds(w, t, k, ctx, default)
  local v = t[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v <= 0 or v > MAX_TIMEOUT then
    bad(w, k, ctx, fmt("a number of seconds > 0 and <= %d", MAX_TIMEOUT), v)
  end
  return v
end

local function opt_enum(w, t, k, ctx, choices, default)
  local v = t[k]
  if v == nil then return default end
  for _, c in ipairs(choices) do
    if v == c then return v end
  end
  bad(w, k, ctx, "one of " .. concat(choices, ", "), v)
end

local function req(w, t, k, ctx)
  local v = t[k]
  if v == nil then fail(w, "missing required key '%s' in %s", k, ctx) end
  return v
end

local function name_string(w, k, ctx, v)
  if type(v) ~= "string" or v == "" or #v > 255 or v:find("%c") then
    bad(w, k, ctx, "a non-empty string (at most 255 bytes, no control characters)", v)
  end
  return v
end

-- A list, or a single string taken as a one-element list.  Each element is
-- passed through conv(v), which returns the normalised value or nil;
-- `expect` describes a valid element for the message.  nil if absent.
local function opt_list(w, t, k, ctx, conv, expect)
  local v = t[k]
  if v == nil then return nil end
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then bad(w, k, ctx, "a list of " .. expect, v) end
  local n = #v
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  if count ~= n then bad(w, k, ctx, "a list of " .. expect .. " (no keys or holes)", v) end
  if n == 0 then fail(w, "'%s' in %s is an empty list", k, ctx) end
  local out = {}
  for i = 1, n do
    local x = conv(v[i])
    if x == nil then
      fail(w, "'%s' in %s must be a list of %s; element %d is %s", k, ctx, expect, i, describe(v[i]))
    end
    out[i] = x
  end
  return out
end

local function as_name(v)
  if type(v) ~= "string" or v == "" or #v > 255 or v:find("%c") then return nil end
  return v
end

local function accounts_list(w, t, ctx)
  local v = t.accounts
  if v == nil then return nil end
  local expect = "a list of { user = ..., pass = ... }"
  if type(v) ~= "table" then bad(w, "accounts", ctx, expect, v) end
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  if count ~= #v then bad(w, "accounts", ctx, expect .. " (no keys or holes)", v) end
  if count == 0 then fail(w, "'accounts' in %s is an empty list", ctx) end
  local out, seen = {}, {}
  for i = 1, #v do
    local a = v[i]
    local actx = fmt("accounts[%d] of %s", i, ctx)
    if type(a) ~= "table" then fail(w, "%s must be a table { user = ..., pass = ... }, got %s", actx, describe(a)) end
    check_keys(w, a, { user = true, pass = true }, actx)
    local user = name_string(w, "user", actx, req(w, a, "user", actx))
    local pass = req(w, a, "pass", actx)
    if type(pass) ~= "string" or pass == "" or #pass > 255 then
      -- never echo a password
      fail(w, "'pass' in %s must be a string of 1 to 255 bytes", actx)
    end
    if seen[user] then fail(w, "duplicate account user '%s' in %s", user, ctx) end
    seen[user] = true
    out[i] = { user = user, pass = pass }
  end
  return out
end

---------------------------------------------------------------------------
-- Declarations.  S is the state of one load.

local LOG_LEVELS = { "debug", "info", "warn", "error" }

local function decl_log(S, w, t)
  check_table(w, t, "luaray.log")
  if S.log_where then fail(w, "luaray.log is called twice (first at %s)", S.log_where) end
  check_keys(w, t, { level = true, access = true }, "log")
  local level = opt_enum(w, t, "level", "log", LOG_LEVELS, "info")
  local access = t.access
  if access == nil then access = true end
  if type(access) ~= "boolean" then
    if type(access) ~= "string" or access == "" or access:find("%c") then
      bad(w, "access", "log", "true, false or a file path", access)
    end
  end
  S.log = { level = level, access = access }
  S.log_where = w
end

-- luaray.workers(n): n worker threads (1..64) or "auto" (one per CPU).
local function decl_workers(S, w, n)
  if S.workers_where then
    fail(w, "luaray.workers is called twice (first at %s)", S.workers_where)
  end
  if n ~= "auto" and not (is_int(n) and n >= 1 and n <= 64) then
    fail(w, "luaray.workers expects an integer 1..64 or \"auto\", got %s", describe(n))
  end
  S.workers, S.workers_where = n, w
end

-- luaray.metrics { listen = "host:port", token = "..." }: GET /metrics in
-- Prometheus text format (design.md 7); with token, only for requests
-- that carry "Authorization: Bearer <token>".
local function decl_metrics(S, w, t)
  check_table(w, t, "luaray.metrics")
  if S.metrics then fail(w, "luaray.metrics is called twice (first at %s)", S.metrics.where) end
  check_keys(w, t, { listen = true, token = true }, "metrics")
  local lv = req(w, t, "listen", "metrics")
  local host, port, key = parse_hostport(lv)
  if not host then
    bad(w, "listen", "metrics", "\"host:port\" (IPv6 in brackets, port 1-65535)", lv)
  end
  local token = t.token
  if token ~= nil and (type(token) ~= "string" or #token < 1 or #token > 256
                       or not token:match("^[%w%-%._~%+/=]+$")) then
    fail(w, "'token' in metrics must be 1-256 characters of A-Z a-z 0-9 -._~+/= (a bearer token)")
  end
  S.metrics = { host = host, port = port, token = token, where = w, key = key, listen = lv }
end

-- luaray.api { listen = "host:port" }: a gRPC server speaking v2ray 4.34's
-- own API (StatsService, HandlerService.AlterInbound), so `v2ctl api` and
-- panels' gRPC clients work unchanged (design.md 7).  Like v2ray's, it has
-- no authentication: listen on loopback (or a private address) only.
local function decl_api(S, w, t)
  check_table(w, t, "luaray.api")
  if S.api then fail(w, "luaray.api is called twice (first at %s)", S.api.where) end
  check_keys(w, t, { listen = true }, "api")
  local lv = req(w, t, "listen", "api")
  local host, port, key = parse_hostport(lv)
  if not host then
    bad(w, "listen", "api", "\"host:port\" (IPv6 in brackets, port 1-65535)", lv)
  end
  S.api = { host = host, port = port, where = w, key = key, listen = lv }
end

-- luaray.cluster { redis = "IP:port", password =, db =, prefix =, node =,
-- timeout_ms = } (design.md 8): the Redis every node of a fleet shares
-- (replay filter).  The address is an IP literal: hiredis would resolve a
-- name with a blocking lookup on the event loop.
local function decl_cluster(S, w, t)
  check_table(w, t, "luaray.cluster")
  if S.cluster then fail(w, "luaray.cluster is called twice (first at %s)", S.cluster.where) end
  check_keys(w, t, { redis = true, password = true, db = true, prefix = true, node = true,
                     timeout_ms = true }, "cluster")
  local rv = req(w, t, "redis", "cluster")
  local host, port = parse_hostport(rv)
  if host and not parse_ipv4(host) and not rv:match("^%[") then host = nil end
  if not host then
    bad(w, "redis", "cluster", "\"IP:port\" (an IPv4 address or [IPv6]; no host names)", rv)
  end
  local pw = t.password
  if pw ~= nil and (type(pw) ~= "string" or #pw < 1 or #pw > 512 or pw:find("%c")) then
    fail(w, "'password' in cluster must be a string of 1-512 bytes without control characters")
  end
  local prefix = t.prefix
  if prefix == nil then prefix = "luaray:" end
  if type(prefix) ~= "string" or #prefix > 64 or not prefix:match("^[%w%-%._:/{}]*$") then
    bad(w, "prefix", "cluster", "at most 64 characters of A-Z a-z 0-9 -._:/{}", prefix)
  end
  local node = t.node
  if node == nil then
    local hn = io.open("/proc/sys/kernel/hostname")
    node = hn and hn:read("*l") or "node"
    if hn then hn:close() end
    node = node:gsub("[^%w%-%._]", "_"):sub(1, 64)
    if node == "" then node = "node" end
  elseif type(node) ~= "string" or #node < 1 or #node > 64 or not node:match("^[%w%-%._]+$") then
    bad(w, "node", "cluster", "1-64 characters of A-Z a-z 0-9 -._", node)
  end
  S.cluster = { host = host, port = port, password = pw,
                db = opt_int(w, t, "db", "cluster", 0, 65535, 0),
                prefix = prefix, node = node,
                timeout_ms = opt_int(w, t, "timeout_ms", "cluster", 1, 10000, 50),
                where = w }
end

-- luaray.budget { seconds = s, instructions = n }: what one hook call may
-- use (default 0.25 s and 50 million instructions); the daemon enforces it.
local BUDGET_DEFAULT = { seconds = 0.25, instructions = 50000000 }
local BUDGET_MAX_SECONDS, BUDGET_MAX_INSTRUCTIONS = 10, 10000000000

local function decl_budget(S, w, t)
  check_table(w, t, "luaray.budget")
  if S.budget_where then fail(w, "luaray.budget is called twice (first at %s)", S.budget_where) end
  check_keys(w, t, { seconds = true, instructions = true }, "budget")
  local sec = t.seconds
  if sec == nil then sec = BUDGET_DEFAULT.seconds
  elseif type(sec) ~= "number" or sec ~= sec or sec <= 0 or sec > BUDGET_MAX_SECONDS then
    bad(w, "seconds", "budget", fmt("a number of seconds > 0 and <= %d", BUDGET_MAX_SECONDS), sec)
  end
  local ins = t.instructions
  if ins == nil then ins = BUDGET_DEFAULT.instructions
  elseif not is_int(ins) or ins < 1000 or ins > BUDGET_MAX_INSTRUCTIONS then
    bad(w, "instructions", "budget", fmt("an integer from 1000 to %.0f", BUDGET_MAX_INSTRUCTIONS), ins)
  end
  S.budget = { seconds = sec, instructions = ins, where = w }
  S.budget_where = w
end

local USER_KEYS = set_of({ "id", "email", "alter_id", "level" })

local function decl_user(S, w, t)
  check_table(w, t, "luaray.user")
  local index = #S.users + 1
  local ctx = "user #" .. index
  check_keys(w, t, USER_KEYS, ctx)
  local id = parse_uuid(req(w, t, "id", ctx))
  -- never echo an id: it is the user's secret
  if not id then fail(w, "'id' in %s is not a valid UUID", ctx) end
  local email = t.email
  if email == nil then email = "user" .. index
  else name_string(w, "email", ctx, email) end
  local u = {
    id = id, email = email,
    alter_id = opt_int(w, t, "alter_id", ctx, 0, 65535, 0),
    level = opt_int(w, t, "level", ctx, 0, 255, 0),
    where = w,
  }
  local other = S.user_by_id[id]
  if other then fail(w, "%s has the same id as user '%s' (%s)", ctx, other.email, other.where) end
  other = S.user_by_email[email]
  if other then fail(w, "duplicate user email '%s' (first declared at %s)", email, other.where) end
  S.users[index] = u
  S.user_by_id[id] = u
  S.user_by_email[email] = u
end

local INBOUND_TYPES = { "vmess", "socks", "http", "tunnel", "tproxy", "redirect" }
local INBOUND_COMMON = { "type", "listen", "handshake_timeout", "idle_timeout", "max_connections",
                         "proxy_protocol", "trusted_proxies" }
local INBOUND_KEYS = {
  vmess = set_of({ "allow_legacy", "allow_private", "users", "dynamic_port", "max_sessions",
                   "tls", "transport", "fallback" }),
  socks = set_of({ "udp", "accounts", "max_sessions" }),
  http = set_of({ "accounts" }),
  tunnel = set_of({ "to", "network", "udp_timeout" }),
  tproxy = set_of({ "network", "udp_timeout" }),
  redirect = set_of({ "network" }),
}
for _, keys in pairs(INBOUND_KEYS) do
  for _, k in ipairs(INBOUND_COMMON) do keys[k] = true end
end
-- what arrives on a tunnel, tproxy or redirect inbound comes straight from
-- its client (the address is the packet's), never through a PROXY sender
for _, typ in ipairs { "tunnel", "tproxy", "redirect" } do
  INBOUND_KEYS[typ].proxy_protocol = nil
  INBOUND_KEYS[typ].trusted_proxies = nil
end

local function dynamic_port(w, t, ctx)
  local v = t.dynamic_port
  if v == nil then return nil end
  local dctx = "dynamic_port of " .. ctx
  if type(v) ~= "table" then bad(w, "dynamic_port", ctx, "a table { port = ..., ... }", v) end
  check_keys(w, v, { port = true, alter_id = true, minutes = true }, dctx)
  local p = req(w, v, "port", dctx)
  local r = parse_range(p)
  if not r then bad(w, "port", dctx, "a port (1-65535) or a range \"lo-hi\"", p) end
  return {
    port = r,
    alter_id = opt_int(w, v, "alter_id", dctx, 0, 65535, 0),
    minutes = opt_int(w, v, "minutes", dctx, 1, 255, 5),
  }
end

---------------------------------------------------------------------------
-- Transports (design.md 6): tls, transport, fallback, trusted_proxies

local TRANSPORTS = { "tcp", "ws", "httpupgrade", "grpc" }
local TRANSPORT_KEYS = {
  tcp = {},
  ws = set_of({ "path", "host", "max_early_data" }),
  httpupgrade = set_of({ "path", "host" }),
  grpc = set_of({ "service_name", "multi" }),
}
for _, keys in pairs(TRANSPORT_KEYS) do keys.type = true end

local function opt_string(w, t, k, ctx, check, expect)
  local v = t[k]
  if v == nil then return nil end
  if type(v) ~= "string" or v == "" or #v > 1024 or v:find("%c") or (check and not check(v)) then
    bad(w, k, ctx, expect or "a non-empty string", v)
  end
  return v
end

local function is_http_path(p) return p:sub(1, 1) == "/" and not p:find("[%s#]") end
-- the name goes into the HTTP/2 :path as it is (/<name>/Tun): nothing a
-- client would percent-encode (v2fly and Xray escape it), nothing that
-- would end or split the path
local function is_service_name(s) return not s:find("[%s/?#%%\128-\255]") end
local function is_host(s) return is_hostname(s) or parse_ipv4(s) ~= nil end

-- transport = { type = ..., ... } -> normalised table, or nil (bare TCP).
-- `outbound`: an outbound's (its path may carry ?ed=N, it has no
-- max_early_data).
local function transport(w, t, ctx, outbound)
  local v = t.transport
  if v == nil then return nil end
  local tctx = "transport of " .. ctx
  if type(v) ~= "table" then bad(w, "transport", ctx, "a table { type = ..., ... }", v) end
  local typ = opt_enum(w, v, "type", tctx, TRANSPORTS, "tcp")
  check_keys(w, v, TRANSPORT_KEYS[typ], tctx)
  if typ == "tcp" then return nil end
  local out = { type = typ }
  if typ == "ws" or typ == "httpupgrade" then
    out.path = opt_string(w, v, "path", tctx, is_http_path,
                          "an absolute path (\"/ray\"; no spaces or '#')") or "/"
    out.host = opt_string(w, v, "host", tctx, is_host, "a host name")
    out.host = out.host and out.host:lower()
    if typ == "ws" then
      if outbound and v.max_early_data ~= nil then
        fail(w, "'max_early_data' in %s is an inbound's: an outbound sends early data with " ..
             "path = \"...?ed=N\"", tctx)
      end
      out.max_early_data = not outbound and opt_int(w, v, "max_early_data", tctx, 0, 65536, 0) or nil
    end
  else
    out.service_name = opt_string(w, v, "service_name", tctx, is_service_name,
                                  "a gRPC service name (no spaces, '/', '?', '#', '%' or non-ASCII)")
    if not out.service_name then req(w, v, "service_name", tctx) end
    out.multi = opt_bool(w, v, "multi", tctx, false)
  end
  return out
end

-- The ALPN a transport over TLS needs: gRPC is HTTP/2, a WebSocket or
-- HTTP upgrade is an HTTP/1.1 request.
local function check_alpn(w, ctx, tp, alpn)
  if not tp or not alpn then return end
  local want = tp.type == "grpc" and "h2" or "http/1.1"
  for _, a in ipairs(alpn) do
    if a == want then return end
  end
  local what = tp.type == "grpc" and "a gRPC transport" or ("a %s transport"):format(tp.type)
  fail(w, "%s: %s over TLS needs %q in tls.alpn", ctx, what, want)
end

local function pem_file(w, k, ctx, v)
  if type(v) ~= "string" or v == "" or #v > 4096 or v:find("%c") then
    bad(w, k, ctx, "a file path", v)
  end
  return v
end

local function as_alpn(v)
  if type(v) ~= "string" or v == "" or #v > 255 or v:find("[%c%s,]") then return nil end
  return v
end

-- An inbound's tls = { cert =, key = } or { certs = { { cert =, key = }, ... } },
-- alpn = { ... } (default h2, http/1.1).
local function tls_server(w, t, ctx)
  local v = t.tls
  if v == nil then return nil end
  local tctx = "tls of " .. ctx
  if type(v) ~= "table" then bad(w, "tls", ctx, "a table { cert = ..., key = ... }", v) end
  check_keys(w, v, { cert = true, key = true, certs = true, alpn = true }, tctx)
  local certs = {}
  if v.cert ~= nil or v.key ~= nil then
    certs[1] = { cert = pem_file(w, "cert", tctx, req(w, v, "cert", tctx)),
                 key = pem_file(w, "key", tctx, req(w, v, "key", tctx)) }
  end
  if v.certs ~= nil then
    local count = 0
    if type(v.certs) == "table" then
      for _ in pairs(v.certs) do count = count + 1 end
    end
    if type(v.certs) ~= "table" or #v.certs == 0 or count ~= #v.certs then
      bad(w, "certs", tctx, "a list of { cert = ..., key = ... }", v.certs)
    end
    for i, c in ipairs(v.certs) do
      local cctx = fmt("certs[%d] of %s", i, tctx)
      if type(c) ~= "table" then bad(w, "certs", tctx, "a list of { cert = ..., key = ... }", v.certs) end
      check_keys(w, c, { cert = true, key = true }, cctx)
      certs[#certs + 1] = { cert = pem_file(w, "cert", cctx, req(w, c, "cert", cctx)),
                            key = pem_file(w, "key", cctx, req(w, c, "key", cctx)) }
    end
  end
  if #certs == 0 then fail(w, "%s needs cert and key (or certs)", tctx) end
  return { certs = certs,
           alpn = opt_list(w, v, "alpn", tctx, as_alpn, "ALPN protocol names") or { "h2", "http/1.1" } }
end

-- An outbound's tls = { server_name =, alpn =, ca =, pinned_sha256 = }.
local function tls_client(w, t, ctx, server_host)
  local v = t.tls
  if v == nil then return nil end
  local tctx = "tls of " .. ctx
  if type(v) ~= "table" then bad(w, "tls", ctx, "a table { server_name = ..., ... }", v) end
  check_keys(w, v, { server_name = true, alpn = true, ca = true, pinned_sha256 = true }, tctx)
  local pin = v.pinned_sha256
  if pin ~= nil then
    if type(pin) ~= "string" then bad(w, "pinned_sha256", tctx, "64 hex digits", pin) end
    pin = pin:gsub(":", ""):lower()
    if not pin:match("^%x+$") or #pin ~= 64 then bad(w, "pinned_sha256", tctx, "64 hex digits", v.pinned_sha256) end
  end
  local sni = opt_string(w, v, "server_name", tctx, is_host, "a host name")
  sni = sni and sni:lower()
  if not sni and server_host and not parse_ipv4(server_host) and not server_host:find(":", 1, true) then
    sni = server_host:lower()
  end
  return { server_name = sni,
           alpn = opt_list(w, v, "alpn", tctx, as_alpn, "ALPN protocol names"),
           ca = v.ca ~= nil and pem_file(w, "ca", tctx, v.ca) or nil,
           pinned_sha256 = pin }
end

-- network = "tcp" | "udp" | "tcp,udp" (or a list) for an inbound -> { tcp =, udp = }
local function inbound_network(w, t, ctx, typ)
  local v = t.network
  if v == nil then return { tcp = true } end
  local expect = typ == "redirect" and "\"tcp\" (redirect is TCP only)" or "\"tcp\", \"udp\" or \"tcp,udp\""
  local items = {}
  if type(v) == "string" then
    for part in (v .. ","):gmatch("([^,]*),") do items[#items + 1] = part:match("^%s*(.-)%s*$") end
  elseif type(v) == "table" and #v > 0 then
    for i = 1, #v do items[i] = v[i] end
  else
    bad(w, "network", ctx, expect, v)
  end
  local out = {}
  for _, n in ipairs(items) do
    if (n ~= "tcp" and n ~= "udp") or out[n] then bad(w, "network", ctx, expect, v) end
    out[n] = true
  end
  if typ == "redirect" and out.udp then bad(w, "network", ctx, expect, v) end
  return out
end

-- The keys of a tunnel (dokodemo-door: every connection and datagram to
-- one fixed destination), tproxy (Linux TPROXY: the destination the client
-- used) or redirect (iptables/nft REDIRECT: SO_ORIGINAL_DST) inbound.
local function transparent_inbound(w, t, ctx, typ, ib)
  if typ == "tunnel" then
    local v = req(w, t, "to", ctx)
    local host, port = parse_hostport(v)
    if not host then
      bad(w, "to", ctx, "\"host:port\" (IPv6 in brackets, port 1-65535)", v)
    end
    ib.to = { host = host, port = port }
  end
  ib.network = inbound_network(w, t, ctx, typ)
  if ib.network.udp then
    ib.udp_timeout = opt_seconds(w, t, "udp_timeout", ctx, 60)
  elseif t.udp_timeout ~= nil then
    fail(w, "'udp_timeout' in %s needs network = \"udp\" or \"tcp,udp\"", ctx)
  end
  if typ ~= "tunnel" and (ib.listen.host == "localhost" or not (parse_ipv4(ib.listen.host) or parse_ipv6(ib.listen.host))) then
    bad(w, "listen", ctx, "an IP address and port (\"0.0.0.0:12345\", \"[::]:12345\")", t.listen)
  end
end

local function decl_inbound(S, w, tag, t)
  check_table(w, t, fmt("luaray.inbound '%s'", tag))
  local ctx = fmt("inbound '%s'", tag)
  local typ = opt_enum(w, t, "type", ctx, INBOUND_TYPES, nil)
  if typ == nil then req(w, t, "type", ctx) end
  if (typ == "tproxy" or typ == "redirect") and t.to ~= nil then
    fail(w, "'to' in %s: a %s inbound relays to the address each client used ('to' is for type = \"tunnel\")",
         ctx, typ)
  end
  check_keys(w, t, INBOUND_KEYS[typ], ctx)
  local lv = req(w, t, "listen", ctx)
  local host, port, key = parse_hostport(lv)
  if not host then
    bad(w, "listen", ctx, "\"host:port\" (IPv6 in brackets, port 1-65535)", lv)
  end
  local ib = {
    tag = tag, type = typ, where = w,
    listen = { host = host, port = port },
    handshake_timeout = opt_seconds(w, t, "handshake_timeout", ctx, typ == "vmess" and 60 or 10),
    idle_timeout = opt_seconds(w, t, "idle_timeout", ctx, 300),
    max_connections = opt_int(w, t, "max_connections", ctx, 0, 2147483647, 0),
    -- sessions one client connection may hold (Mux.Cool streams, UDP
    -- ASSOCIATE destinations); nil: the C default
    max_sessions = opt_int(w, t, "max_sessions", ctx, 1, 1024, nil),
    proxy_protocol = opt_bool(w, t, "proxy_protocol", ctx, nil),   -- nil: false
    trusted_proxies = opt_list(w, t, "trusted_proxies", ctx, parse_cidr, "CIDRs (\"10.0.0.0/8\")"),
  }
  if typ == "vmess" then
    ib.allow_legacy = opt_bool(w, t, "allow_legacy", ctx, false)
    ib.allow_private = opt_bool(w, t, "allow_private", ctx, false)
    ib.users = opt_list(w, t, "users", ctx, as_name, "user emails")
    ib.dynamic_port = dynamic_port(w, t, ctx)
    ib.tls = tls_server(w, t, ctx)
    ib.transport = transport(w, t, ctx)
    if t.fallback ~= nil then
      local fh, fp = parse_hostport(t.fallback)
      if not fh then bad(w, "fallback", ctx, "\"host:port\" (IPv6 in brackets, port 1-65535)", t.fallback) end
      ib.fallback = { host = fh, port = fp }
    end
    check_alpn(w, ctx, ib.transport, ib.tls and ib.tls.alpn)
    if ib.dynamic_port and (ib.tls or ib.transport or ib.proxy_protocol) then
      -- the detour port is dialled directly, with none of these in front
      fail(w, "%s: dynamic_port works on bare TCP only (no tls, transport or proxy_protocol)", ctx)
    end
  elseif typ == "socks" then
    ib.udp = opt_bool(w, t, "udp", ctx, false)
    ib.accounts = accounts_list(w, t, ctx)
  elseif typ == "tunnel" or typ == "tproxy" or typ == "redirect" then
    transparent_inbound(w, t, ctx, typ, ib)
  else
    ib.accounts = accounts_list(w, t, ctx)
  end
  -- the real client address: a PROXY header or X-Forwarded-For is
  -- believed only from trusted_proxies, so each needs the other
  if ib.proxy_protocol and not ib.trusted_proxies then
    fail(w, "%s: proxy_protocol needs trusted_proxies (the proxies whose PROXY header is believed)", ctx)
  end
  if ib.trusted_proxies and not ib.proxy_protocol and not ib.transport then
    fail(w, "%s: trusted_proxies without proxy_protocol or a ws/httpupgrade/grpc transport " ..
         "has nothing to believe", ctx)
  end
  local other = S.inbound_by_tag[tag]
  if other then fail(w, "duplicate inbound tag '%s' (first declared at %s)", tag, other.where) end
  other = S.listen_seen[key]
  if other then
    fail(w, "listen address '%s' of %s is already used by inbound '%s' (%s)",
         lv, ctx, other.tag, other.where)
  end
  S.inbounds[#S.inbounds + 1] = ib
  S.inbound_by_tag[tag] = ib
  S.listen_seen[key] = ib
end

local OUTBOUND_TYPES = { "direct", "blackhole", "vmess" }
local SECURITIES = { "aes-128-gcm", "chacha20-poly1305", "none", "zero", "aes-128-cfb", "auto" }
local OUTBOUND_KEYS = {
  direct = set_of({ "domain_strategy" }),
  blackhole = {},
  vmess = set_of({ "server", "id", "alter_id", "security", "masking", "padding",
                   "authenticated_length", "udp", "tls", "transport", "mux", "xudp" }),
}
for _, keys in pairs(OUTBOUND_KEYS) do
  keys.type = true
  keys.connect_timeout = true
end

-- mux = { concurrency = 1..1024 (default 8) } on a VMess outbound (design.md 9);
-- mux = false or nil: none
local function mux_client(w, t, ctx)
  local m = t.mux
  if m == nil or m == false then return nil end
  local mctx = fmt("'mux' in %s", ctx)
  check_table(w, m, mctx)
  check_keys(w, m, set_of({ "concurrency" }), mctx)
  return { concurrency = opt_int(w, m, "concurrency", mctx, 1, 1024, 8) }
end

local function decl_outbound(S, w, tag, t)
  check_table(w, t, fmt("luaray.outbound '%s'", tag))
  local ctx = fmt("outbound '%s'", tag)
  local typ = opt_enum(w, t, "type", ctx, OUTBOUND_TYPES, nil)
  if typ == nil then req(w, t, "type", ctx) end
  check_keys(w, t, OUTBOUND_KEYS[typ], ctx)
  local ob = {
    tag = tag, type = typ, where = w,
    connect_timeout = opt_seconds(w, t, "connect_timeout", ctx, 10),
  }
  if typ == "direct" then
    ob.domain_strategy = opt_enum(w, t, "domain_strategy", ctx, { "as_is", "ipv4", "ipv6" }, "as_is")
  elseif typ == "vmess" then
    local sv = req(w, t, "server", ctx)
    local host, port = parse_hostport(sv)
    if not host then
      bad(w, "server", ctx, "\"host:port\" (IPv6 in brackets, port 1-65535)", sv)
    end
    ob.server = { host = host, port = port }
    ob.id = parse_uuid(req(w, t, "id", ctx))
    if not ob.id then fail(w, "'id' in %s is not a valid UUID", ctx) end
    ob.alter_id = opt_int(w, t, "alter_id", ctx, 0, 65535, 0)
    ob.security = opt_enum(w, t, "security", ctx, SECURITIES, "auto")
    ob.masking = opt_bool(w, t, "masking", ctx, true)
    ob.padding = opt_bool(w, t, "padding", ctx, ob.masking)
    if ob.padding and not ob.masking then
      -- option 0x08 without 0x04: v2ray 4.34 crashes on it, we refuse it
      fail(w, "'padding' in %s needs 'masking' (padding without masking is refused by VMess servers)", ctx)
    end
    ob.authenticated_length = opt_bool(w, t, "authenticated_length", ctx, false)
    ob.udp = opt_bool(w, t, "udp", ctx, true)
    ob.mux = mux_client(w, t, ctx)
    -- xudp = true: a SOCKS5 UDP association goes as one XUDP stream (Xray's
    -- and luaray's servers speak it, v2ray 4.34 does not: default false)
    ob.xudp = opt_bool(w, t, "xudp", ctx, false) or nil
    if ob.xudp and not ob.udp then
      fail(w, "'xudp' in %s needs 'udp' (xudp carries UDP: it cannot be on with udp = false)", ctx)
    end
    ob.tls = tls_client(w, t, ctx, host)
    ob.transport = transport(w, t, ctx, true)
    check_alpn(w, ctx, ob.transport, ob.tls and ob.tls.alpn)
    if ob.transport and ob.transport.path then
      -- ?ed=N: send up to N bytes of early data with the upgrade request
      local ed = ob.transport.path:match("[?&]ed=(%d+)")
      if ed then
        if ob.transport.type ~= "ws" and ob.transport.type ~= "httpupgrade" then
          fail(w, "'path' in transport of %s: ?ed= early data needs type = \"ws\" or \"httpupgrade\"", ctx)
        end
        ob.transport.early_data = tonumber(ed)
        if ob.transport.early_data > 65536 then
          fail(w, "'path' in transport of %s: ?ed= at most 65536", ctx)
        end
      end
    end
  end
  local other = S.outbound_by_tag[tag]
  if other then fail(w, "duplicate outbound tag '%s' (first declared at %s)", tag, other.where) end
  S.outbounds[#S.outbounds + 1] = ob
  S.outbound_by_tag[tag] = ob
end

local ROUTE_FILTERS = { "domain", "domain_suffix", "domain_keyword", "ip_cidr", "port",
                        "user", "inbound", "network", "protocol",
                        "geosite", "geoip", "source" }
local ROUTE_KEYS = set_of(ROUTE_FILTERS)
ROUTE_KEYS.to = true
ROUTE_KEYS.default = true
ROUTE_KEYS.domain_strategy = true
local DOMAIN_STRATEGIES = set_of({ "as_is", "ip_if_non_match", "ip_on_demand" })

local function port_filter(w, t)
  local v = t.port
  if v == nil then return nil end
  local expect = "a port (1-65535), a range \"lo-hi\" or a list like \"80,443,8000-9000\""
  local items = {}
  if type(v) == "number" then items[1] = v
  elseif type(v) == "string" then
    for part in (v .. ","):gmatch("([^,]*),") do items[#items + 1] = part end
  elseif type(v) == "table" and #v > 0 then
    for i = 1, #v do
      if type(v[i]) == "string" then
        for part in (v[i] .. ","):gmatch("([^,]*),") do items[#items + 1] = part end
      else
        items[#items + 1] = v[i]
      end
    end
  else
    bad(w, "port", "route", expect, v)
  end
  local out = {}
  for i, item in ipairs(items) do
    local r = parse_range(item)
    if not r then bad(w, "port", "route", expect, v) end
    out[i] = r
  end
  return out
end

local function network_filter(w, t)
  local v = t.network
  if v == nil then return nil end
  local items = {}
  if type(v) == "string" then
    for part in (v .. ","):gmatch("([^,]*),") do items[#items + 1] = part:match("^%s*(.-)%s*$") end
  elseif type(v) == "table" and #v > 0 then
    items = v
  end
  local out = {}
  for _, n in ipairs(items) do
    if n ~= "tcp" and n ~= "udp" then items = nil; break end
    out[n] = true
  end
  if not items or next(out) == nil then bad(w, "network", "route", "\"tcp\", \"udp\" or \"tcp,udp\"", v) end
  return out
end

-- per-entry normalisers of the route filters (named: no closure per rule)
local function norm_domain(v) return normalise_domain(v, "domain") end
local function norm_suffix(v) return normalise_domain(v, "domain_suffix") end
local function norm_keyword(v) return as_name(v) and v:lower() end
local function norm_protocol(v) return (v == "tls" or v == "http") and v or nil end

-- Routing data (README "Routing data"): v2ray's domain string forms, and
-- the geosite / geoip / source filters.  Files are resolved against
-- luaray.geodata's dir when the load ends (resolve_geodata).
local GEO_NAME = "^[%w][%w%-_%.!]*$"       -- a geosite list or geoip code
local DOMAIN_FORMS = "domain names or v2ray's forms (full:NAME, domain:NAME, keyword:TEXT, " ..
  "regexp:RE, dotless:TEXT, geosite:LIST, ext:FILE:LIST)"

-- "cn", "cn@ads@!x" (attributes after @): the list part checked
local function geosite_name(v)
  if type(v) ~= "string" or #v > 255 then return nil end
  local list = v:match("^([^@]*)")
  if not list:find(GEO_NAME) or v:find("@@") or v:find("@$") then return nil end
  return v
end

-- "ext:FILE:NAME" / "ext-domain:FILE:NAME": file and name, or nil
local function ext_ref(v, prefix2)
  local rest = v:match("^ext:(.*)$") or (prefix2 and v:match("^" .. prefix2 .. ":(.*)$"))
  if not rest then return nil end
  local file, name = rest:match("^([^:]+):([^:]+)$")
  if not file or file:find("%c") then return false end
  return file, name
end

-- One entry of `domain`: { list key, value } or nil
local function domain_form(d)
  if type(d) ~= "string" or d == "" or #d > 1024 or d:find("%c") then return nil end
  local form, val = d:match("^([%a%-]+):(.*)$")
  if form == "full" or form == "domain" then
    local n = normalise_domain(val, form == "domain" and "domain_suffix" or "domain")
    return n and { form == "full" and "domain_full" or "domain_suffix", n }
  elseif form == "keyword" then
    return val ~= "" and { "domain_keyword", val:lower() } or nil
  elseif form == "regexp" then
    return val ~= "" and { "domain_regexp", val } or nil
  elseif form == "dotless" then
    -- v2ray's dotless: a name without dots (containing the text, itself
    -- a regexp there too)
    if val:find("%.") then return nil end
    return { "domain_regexp", "^[^.]*" .. val .. "[^.]*$" }
  elseif form == "geosite" then
    return geosite_name(val) and { "geosite", { list = val } } or nil
  elseif form == "ext" or form == "ext-domain" then
    local file, name = ext_ref(d, "ext%-domain")
    return file and geosite_name(name) and { "geosite", { file = file, list = name } } or nil
  end
  local n = normalise_domain(d, "domain")
  return n and { "domain", n }
end

local function domain_forms(w, t, r)
  local list = opt_list(w, t, "domain", "route", domain_form, DOMAIN_FORMS)
  for _, e in ipairs(list or {}) do
    r[e[1]] = r[e[1]] or {}
    r[e[1]][#r[e[1]] + 1] = e[2]
  end
end

local function geo_filters(w, t, r)
  if t.geosite ~= nil then
    local v = t.geosite
    if type(v) == "string" then v = { v } end
    local list = opt_list(w, { geosite = v }, "geosite", "route", as_name, "geosite list names")
    r.geosite = r.geosite or {}
    for _, s in ipairs(list) do
      local name = s:match("^geosite:(.*)$") or s
      local file, ext = ext_ref(s, "ext%-domain")
      if file ~= nil then
        if not file or not geosite_name(ext) then bad(w, "geosite", "route", "\"ext:FILE:LIST\"", s) end
        r.geosite[#r.geosite + 1] = { file = file, list = ext }
      elseif geosite_name(name) then
        r.geosite[#r.geosite + 1] = { list = name }
      else
        bad(w, "geosite", "route", "a list of geosite list names like \"cn\" or \"category-ads-all@ads\"", s)
      end
    end
  end
  if t.geoip ~= nil then
    local v = t.geoip
    if type(v) == "string" then v = { v } end
    local list = opt_list(w, { geoip = v }, "geoip", "route", as_name, "geoip codes")
    r.geoip = {}
    for _, s in ipairs(list) do
      local file, code = ext_ref(s, "ext%-ip")
      if file == false then bad(w, "geoip", "route", "\"ext:FILE:CODE\"", s) end
      if not file then code = s:match("^geoip:(.*)$") or s end
      local reverse = code:sub(1, 1) == "!"
      if reverse then code = code:sub(2) end
      if not code:find("^[%w][%w%-_%.]*$") then
        bad(w, "geoip", "route", "a list of country codes like \"cn\", \"private\", \"!cn\" or \"ext:FILE:CODE\"", s)
      end
      r.geoip[#r.geoip + 1] = { file = file or nil, code = code, reverse = reverse }
    end
  end
  r.source = opt_list(w, t, "source", "route", parse_cidr, "CIDR blocks like \"10.0.0.0/8\"")
end

-- luaray.geodata { dir = "..." }: where geosite.dat, geoip.dat and .mmdb
-- files are read from (relative: to the config file's directory).
local GEODATA_DEFAULT_DIR = "/usr/local/share/luaray"
local function decl_geodata(S, w, t, chunk)
  check_table(w, t, "luaray.geodata")
  check_keys(w, t, { dir = true }, "geodata")
  if S.geodata then fail(w, "luaray.geodata is called twice (first at %s)", S.geodata.where) end
  local dir = req(w, t, "dir", "geodata")
  if type(dir) ~= "string" or dir == "" or dir:find("%c") then bad(w, "dir", "geodata", "a directory path", dir) end
  S.geodata = { dir = join(chunk and chunk.dir or "", dir), where = w }
end

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Gives every geosite / geoip entry of the routes its file (an absolute
-- or config-relative path), checking it can be opened.
local function geodata_file(S, dir, r, what, name)
  local path = join(dir, name)
  if not readable(path) then
    fail(r.where, "%s in route: cannot read %s (%s)", what, path,
         S.geodata and ("luaray.geodata dir at " .. S.geodata.where)
         or "set the directory with luaray.geodata { dir = \"...\" }")
  end
  return path
end

local GEOIP_FILES = { "geoip.dat", "GeoLite2-Country.mmdb", "Country.mmdb" }

local function resolve_geodata(S)
  local dir = S.geodata and S.geodata.dir or GEODATA_DEFAULT_DIR
  for _, r in ipairs(S.routes) do
    for _, g in ipairs(r.geosite or {}) do
      g.file = geodata_file(S, dir, r, "geosite", g.file or "geosite.dat")
    end
    for _, g in ipairs(r.geoip or {}) do
      local f = g.file
      if not f then
        -- geoip.dat, else a MaxMind country database under its usual names
        for _, n in ipairs(GEOIP_FILES) do
          if readable(join(dir, n)) then f = n; break end
        end
        f = f or "geoip.dat"
      end
      g.file = geodata_file(S, dir, r, "geoip", f)
    end
  end
end

local function decl_route(S, w, t)
  check_table(w, t, "luaray.route")
  check_keys(w, t, ROUTE_KEYS, "route")
  if t.domain_strategy ~= nil then
    -- luaray.route { domain_strategy = "..." }: for every rule (v2ray's
    -- routing domainStrategy); may share its call with `default` only
    for _, k in ipairs(sorted_keys(t)) do
      if k ~= "default" and k ~= "domain_strategy" then
        fail(w, "'domain_strategy' cannot be combined with '%s' in route (it applies to every rule)", k)
      end
    end
    local v = t.domain_strategy
    if not DOMAIN_STRATEGIES[v] then
      bad(w, "domain_strategy", "route", "\"as_is\", \"ip_if_non_match\" or \"ip_on_demand\"", v)
    end
    if S.domain_strategy_where then
      fail(w, "the routing domain_strategy is set twice (first at %s)", S.domain_strategy_where)
    end
    S.domain_strategy, S.domain_strategy_where = v, w
    if t.default == nil then return end
  end
  if t.default ~= nil then
    for _, k in ipairs(sorted_keys(t)) do
      if k ~= "default" and k ~= "domain_strategy" then
        fail(w, "'default' cannot be combined with '%s' in route (a default route takes no filters)", k)
      end
    end
    name_string(w, "default", "route", t.default)
    if S.default_where then fail(w, "the default route is set twice (first at %s)", S.default_where) end
    S.default, S.default_where = t.default, w
    return
  end
  local r = { where = w }
  local any = false
  for _, k in ipairs(ROUTE_FILTERS) do
    if t[k] ~= nil then any = true end
  end
  if not any then
    fail(w, "route has no filter (use luaray.route { default = \"tag\" } for the default outbound)")
  end
  r.to = name_string(w, "to", "route", req(w, t, "to", "route"))
  r.domain_suffix = opt_list(w, t, "domain_suffix", "route", norm_suffix, "domain names")
  r.domain_keyword = opt_list(w, t, "domain_keyword", "route", norm_keyword,
    "non-empty strings")
  domain_forms(w, t, r)   -- after domain_suffix / domain_keyword: adds to them
  r.ip_cidr = opt_list(w, t, "ip_cidr", "route", parse_cidr, "CIDR blocks like \"10.0.0.0/8\"")
  r.port = port_filter(w, t)
  r.user = opt_list(w, t, "user", "route", as_name, "user emails")
  r.inbound = opt_list(w, t, "inbound", "route", as_name, "inbound tags")
  r.network = network_filter(w, t)
  r.protocol = opt_list(w, t, "protocol", "route", norm_protocol, "\"tls\" or \"http\"")
  geo_filters(w, t, r)
  S.routes[#S.routes + 1] = r
end

local HOOK_SET = set_of(HOOKS)

local function decl_on(S, w, name, fn)
  if type(name) ~= "string" or not HOOK_SET[name] then
    fail(w, "luaray.on: unknown hook %s (expected one of %s)",
         describe(name), concat(HOOKS, ", "))
  end
  if type(fn) ~= "function" then
    fail(w, "luaray.on: the hook '%s' must be a function, got %s", name, describe(fn))
  end
  if S.hooks[name] then
    fail(w, "luaray.on: hook '%s' is already set (at %s)", name, S.hook_where[name])
  end
  S.hooks[name] = fn
  S.hook_where[name] = w
end

---------------------------------------------------------------------------
-- Positions and errors

-- The innermost stack frame running config code (a chunk this load
-- compiled): its "file:line" and its chunk record.  Frames of this module,
-- C functions and tail calls are skipped, so the answer is the config line
-- that called the DSL (or called pcall that called it).
local function config_frame(S)
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then return nil end
    local chunk = info.what ~= "C" and S.chunks[info.source]
    if chunk and info.currentline and info.currentline > 0 then
      return chunk.display .. ":" .. info.currentline, chunk
    end
    level = level + 1
  end
end

local function where(S)
  return (config_frame(S)) or (S.main and S.main.display .. ":1") or "?"
end

-- Registers a chunk name so positions in it are recognised, and works out
-- how Lua itself will print it (long names are shortened to "...tail").
local function add_chunk(S, chunkname, display, dir)
  local probe = assert(loadstring("return", chunkname))
  local short = getinfo(probe, "S").short_src
  local c = { chunkname = chunkname, display = display, dir = dir, short = short }
  S.chunks[chunkname] = c
  S.chunk_list[#S.chunk_list + 1] = c
  return c
end

local function has_position(S, msg)
  for _, c in ipairs(S.chunk_list) do
    local n = #c.display
    if msg:sub(1, n + 1) == c.display .. ":" and msg:find("^%d+: ", n + 2) then
      return true
    end
  end
  return false
end

-- Turns whatever was raised into "file:line: message".
local function error_text(S, e)
  if not S.main then return tostring(e) end -- the main file could not be read
  if type(e) ~= "string" then
    local mt = getmetatable(e)
    if type(e) == "table" and mt and mt.__tostring then e = tostring(e)
    else e = "(error object is a " .. type(e) .. " value)" end
  end
  -- Lua's own messages use the shortened chunk name: put the full one back.
  for _, c in ipairs(S.chunk_list) do
    if c.short ~= c.display and e:sub(1, #c.short + 1) == c.short .. ":" then
      e = c.display .. e:sub(#c.short + 1)
      break
    end
  end
  -- A runtime error inside the DSL's own machinery (the environment's
  -- __index, say, when the user's code recursed until the stack ran out)
  -- carries a position in luaray's module: the error is the user's, and
  -- the config frame below names where.
  local own = e:match("^([^:]*lua/luaray/[%w_]+%.lua:%d+: )")
  if own then e = e:sub(#own + 1) end
  if not has_position(S, e) then
    local w = config_frame(S)
    e = (w or (S.main and S.main.display .. ":1") or "?") .. ": " .. e
  end
  -- "f:1: f:1: msg" -> "f:1: msg"
  while true do
    local p = e:match("^(.-:%d+: )")
    if not p or e:sub(#p + 1, 2 * #p) ~= p then break end
    e = e:sub(#p + 1)
  end
  return e
end

---------------------------------------------------------------------------
-- The environment

-- The daemon's budget errors: "luaray: hook exceeded its budget (...)" and
-- "luaray: config exceeded its budget (...)" (core/script/bridge.c).
local BUDGET_PREFIX, BUDGET_WORDS = "luaray: ", " exceeded its budget"

local SAFE = { "assert", "error", "ipairs", "pairs", "next", "select", "tonumber", "tostring",
               "type", "unpack", "pcall", "xpcall", "setmetatable", "getmetatable",
               "rawget", "rawset", "rawequal", "print" }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function count_lines(src)
  local n = 1
  for _ in src:gmatch("\n") do n = n + 1 end
  if src:sub(-1) == "\n" then n = n - 1 end
  return n > 0 and n or 1
end

local run_chunk -- defined below (include needs it)

local function make_luaray(S, extra)
  local L = {}
  -- Every DSL word checks it runs while the config loads (a hook calling
  -- luaray.user at run time is a mistake, not a declaration).
  -- (every word takes at most two arguments; naming them instead of
  -- passing `...` keeps this wrapper compilable: VARG is NYI in LuaJIT)
  local function word(name, f)
    L[name] = function(a, b)
      local w = where(S)
      if not S.loading then
        fail(w, "luaray.%s can only be used while the config loads", name)
      end
      return f(w, a, b)
    end
  end
  word("log", function(w, t) decl_log(S, w, t) end)
  word("workers", function(w, n) decl_workers(S, w, n) end)
  word("budget", function(w, t) decl_budget(S, w, t) end)
  word("metrics", function(w, t) decl_metrics(S, w, t) end)
  word("api", function(w, t) decl_api(S, w, t) end)
  word("cluster", function(w, t) decl_cluster(S, w, t) end)
  word("user", function(w, t) decl_user(S, w, t) end)
  word("route", function(w, t) decl_route(S, w, t) end)
  word("geodata", function(w, t) decl_geodata(S, w, t, select(2, config_frame(S))) end)
  word("on", function(w, name, fn) decl_on(S, w, name, fn) end)
  for _, kind in ipairs({ "inbound", "outbound" }) do
    local decl = kind == "inbound" and decl_inbound or decl_outbound
    word(kind, function(w, tag, t)
      if type(tag) ~= "string" or tag == "" or #tag > 255 or tag:find("%c") then
        fail(w, "luaray.%s expects a tag string first: luaray.%s \"tag\" { type = ... }, got %s",
             kind, kind, describe(tag))
      end
      if t ~= nil then return decl(S, w, tag, t) end
      -- curried form: remember the half-made declaration until the table comes
      local p = { kind = kind, tag = tag, where = w }
      S.pending[#S.pending + 1] = p
      return function(t2)
        local w2 = where(S)
        if not S.loading then
          fail(w2, "luaray.%s can only be used while the config loads", kind)
        end
        if p.done then fail(w2, "luaray.%s '%s' is given a second table", kind, tag) end
        p.done = true
        return decl(S, w2, tag, t2)
      end
    end)
  end
  word("include", function(w, path)
    if type(path) ~= "string" or path == "" then
      fail(w, "luaray.include expects a file name, got %s", describe(path))
    end
    local _, chunk = config_frame(S)
    local dir = chunk and chunk.dir or ""
    run_chunk(S, join(dir, path), nil, w)
  end)
  local cluster_call
  if extra then
    for k, v in pairs(extra) do
      if k == "cluster_call" then
        cluster_call = v
      else
        if L[k] ~= nil then error("opts.luaray cannot replace luaray." .. tostring(k), 4) end
        L[k] = v
      end
    end
  end
  -- luaray.cluster { ... } declares; luaray.cluster.call(cmd, ...) runs
  -- a command in a control coroutine (the daemon's opts.luaray.cluster_call)
  local decl_cl = L.cluster
  L.cluster = setmetatable({}, {
    __call = function(_, t) return decl_cl(t) end,
    __index = { call = cluster_call or function()
      error("luaray.cluster.call works only in the daemon", 2)
    end },
    __newindex = function() error("luaray.cluster is read-only", 2) end })
  return L
end

local function make_env(S, luaray)
  local base = {}
  for _, name in ipairs(SAFE) do base[name] = _G[name] end
  -- a hook must not be able to swallow the daemon's budget error (its
  -- message starts with BUDGET): pcall/xpcall pass it on
  local function is_budget(e)
    return type(e) == "string" and e:find(BUDGET_WORDS, 1, true) ~= nil
      and e:find(BUDGET_PREFIX, 1, true) ~= nil
  end
  local function pass(ok, ...)
    if not ok and is_budget((...)) then error((...), 0) end
    return ok, ...
  end
  base.pcall = function(f, ...) return pass(pcall(f, ...)) end
  base.xpcall = function(f, h)
    return pass(xpcall(f, function(e)
      if is_budget(e) then return e end
      return h(e)
    end))
  end
  base.os = { time = os.time, clock = os.clock, date = os.date, getenv = os.getenv }
  base.luaray = luaray
  base.require = function(name)
    if name == "luaray" then return luaray end
    local shown = type(name) == "string" and "'" .. name .. "'" or describe(name)
    fail(where(S), "module %s is not available in config scripts (only \"luaray\")", shown)
  end
  -- The environment itself stays empty: reads go to `base`, writes are all
  -- refused, so neither a typo nor `print = nil` slips through.
  local env = setmetatable({}, {
    __index = function(_, k)
      local v = base[k]
      if v == nil then fail(where(S), "undefined global '%s'", tostring(k)) end
      return v
    end,
    __newindex = function(_, k)
      if base[k] ~= nil then
        fail(where(S), "assignment to read-only global '%s'", tostring(k))
      end
      fail(where(S), "assignment to undeclared global '%s' (use local)", tostring(k))
    end,
    __metatable = false,
  })
  -- the libraries are proxies (writes stay in the proxy, reads fall
  -- through), not copies: no loop here whose trace would run into this
  -- function's closures and upvalues (FNEW/UCLO are NYI in LuaJIT)
  base.string = setmetatable({}, { __index = string, __metatable = false })
  base.table = setmetatable({}, { __index = table, __metatable = false })
  base.math = setmetatable({}, { __index = math, __metatable = false })
  return env
end

-- The environment and the DSL words are built once per load and their
-- loops are short: keep them (and the closures they make) in the
-- interpreter, so no trace records into their closure creation and
-- upvalue closing (FNEW/UCLO are NYI in LuaJIT) whatever the hot counters.
if jit then
  jit.off(make_env, true)
  jit.off(make_luaray, true)
end

-- Compiles and runs one config file (path, src == nil) or string (src).
-- inc_where is the position of the luaray.include call, nil for the main chunk.
function run_chunk(S, path, src, inc_where, chunkname)
  local display, dir
  if src then
    chunkname = chunkname or "=config"
    local c1 = chunkname:sub(1, 1)
    if c1 ~= "=" and c1 ~= "@" then chunkname = "=" .. chunkname end
    display = chunkname:sub(2)
    dir = c1 == "@" and dirname(display) or ""
  else
    display = path
    dir = dirname(path)
    chunkname = "@" .. path
    for i, open in ipairs(S.stack) do
      if open == path then
        local cycle = {}
        for j = i, #S.stack do cycle[#cycle + 1] = S.stack[j] end
        cycle[#cycle + 1] = path
        fail(inc_where, "include cycle: %s", concat(cycle, " -> "))
      end
    end
    if S.read[path] then
      fail(inc_where, "'%s' is already loaded (%s); a file is included once", path, S.read[path])
    end
    local f, err = io.open(path, "rb")
    if not f then
      err = (err or "cannot open"):gsub("^" .. path:gsub("%p", "%%%0") .. ": ", "")
      if inc_where then fail(inc_where, "luaray.include: cannot open '%s': %s", path, err) end
      error(path .. ": cannot open: " .. err, 0)
    end
    src, err = f:read("*a")
    f:close()
    if not src then
      err = err or "read error"
      if inc_where then fail(inc_where, "luaray.include: cannot read '%s': %s", path, err) end
      error(path .. ": cannot read: " .. err, 0)
    end
    S.files[#S.files + 1] = path
    S.read[path] = inc_where and ("included at " .. inc_where) or "the main file"
  end
  -- hooks get ctx.sniffed only if some config code can read it: sniffing
  -- holds a SOCKS/HTTP client's dial until its first bytes (up to 0.3 s
  -- for a protocol where the server speaks first)
  if src:find("sniffed", 1, true) then S.mentions_sniffed = true end
  local chunk = S.chunks[chunkname] or add_chunk(S, chunkname, display, dir)
  if not S.main then
    S.main = chunk
    S.main_lines = count_lines(src)
  end
  -- like loadfile: a first line starting with '#' (a shebang) is ignored
  if src:byte(1) == 35 then src = src:gsub("^[^\n]*", "", 1) end
  if src:byte(1) == 27 then
    error(display .. ":1: precompiled (bytecode) configs are refused", 0)
  end
  local fn, err = load(src, chunkname, "t")
  if not fn then error(err, 0) end
  -- Config code (and every function it defines: hooks) stays in the
  -- interpreter, where the daemon's instruction/time budget (a count hook)
  -- can stop a runaway hook; LuaJIT does not run hooks inside compiled
  -- traces.  luaray's own Lua (rules, wrappers) is still compiled.
  if jit then jit.off(fn, true) end
  setfenv(fn, S.env)
  S.stack[#S.stack + 1] = display
  fn()
  S.stack[#S.stack] = nil
end

---------------------------------------------------------------------------
-- After the script: cross-checks and the result

local function finish(S)
  local eof = S.main.display .. ":" .. S.main_lines
  for _, p in ipairs(S.pending) do
    if not p.done then
      fail(p.where, "luaray.%s '%s' has no table: write luaray.%s \"%s\" { type = ... }",
           p.kind, p.tag, p.kind, p.tag)
    end
  end
  if #S.inbounds == 0 then fail(eof, "no inbound declared (at least one luaray.inbound is required)") end
  if #S.outbounds == 0 then fail(eof, "no outbound declared (at least one luaray.outbound is required)") end
  for _, ib in ipairs(S.inbounds) do
    if ib.type == "vmess" then
      if #S.users == 0 then
        fail(ib.where, "vmess inbound '%s' has no users to accept (declare one with luaray.user)", ib.tag)
      end
      for _, email in ipairs(ib.users or {}) do
        if not S.user_by_email[email] then
          fail(ib.where, "'users' in inbound '%s' names unknown user '%s'", ib.tag, email)
        end
      end
    end
  end
  resolve_geodata(S)
  for _, r in ipairs(S.routes) do
    if not S.outbound_by_tag[r.to] then
      fail(r.where, "'to' in route names unknown outbound '%s'", r.to)
    end
    for _, tag in ipairs(r.inbound or {}) do
      if not S.inbound_by_tag[tag] then
        fail(r.where, "'inbound' in route names unknown inbound '%s'", tag)
      end
    end
    for _, email in ipairs(r.user or {}) do
      if not S.user_by_email[email] then
        fail(r.where, "'user' in route names unknown user '%s'", email)
      end
    end
  end
  if S.default then
    if not S.outbound_by_tag[S.default] then
      fail(S.default_where, "'default' in route names unknown outbound '%s'", S.default)
    end
  end
  if S.metrics and S.listen_seen[S.metrics.key] then
    local other = S.listen_seen[S.metrics.key]
    fail(S.metrics.where, "metrics listen address '%s' is already used by inbound '%s' (%s)",
         S.metrics.listen, other.tag, other.where)
  end
  if S.api and S.listen_seen[S.api.key] then
    local other = S.listen_seen[S.api.key]
    fail(S.api.where, "api listen address '%s' is already used by inbound '%s' (%s)",
         S.api.listen, other.tag, other.where)
  end
  if S.api and S.metrics and S.api.key == S.metrics.key then
    fail(S.api.where, "api listen address '%s' is already used by luaray.metrics (%s)",
         S.api.listen, S.metrics.where)
  end
  if S.workers and S.workers ~= 1 then
    -- a dynamic-port listener picks its ports itself; several workers
    -- would each pick others, and a client is told only one of them
    for _, ib in ipairs(S.inbounds) do
      if ib.dynamic_port then
        fail(S.workers_where, "luaray.workers: inbound '%s' (%s) has dynamic_port, "
          .. "which needs a single worker", ib.tag, ib.where)
      end
    end
  end
  return {
    log = S.log or { level = "info", access = true },
    log_where = S.log_where,
    workers = S.workers or 1,
    budget = S.budget or { seconds = BUDGET_DEFAULT.seconds, instructions = BUDGET_DEFAULT.instructions },
    workers_where = S.workers_where,
    metrics = S.metrics,
    api = S.api,
    cluster = S.cluster,
    users = S.users,
    inbounds = S.inbounds,
    outbounds = S.outbounds,
    routes = S.routes,
    default_outbound = S.default or S.outbounds[1].tag,
    domain_strategy = S.domain_strategy or "as_is",
    default_where = S.default_where,
    hooks = S.hooks,
    sniffed_used = S.mentions_sniffed or false,
    files = S.files,
  }
end

local function new_state(opts)
  local S = {
    chunks = {}, chunk_list = {}, stack = {}, files = {}, read = {},
    users = {}, user_by_id = {}, user_by_email = {},
    inbounds = {}, inbound_by_tag = {}, listen_seen = {},
    outbounds = {}, outbound_by_tag = {},
    routes = {}, hooks = {}, hook_where = {}, pending = {},
    loading = true,
  }
  S.luaray = make_luaray(S, opts and opts.luaray)
  S.env = make_env(S, S.luaray)
  return S
end

-- The state whose load is in progress, for the error handler (restored
-- after each load, so a load started from inside another one is fine).
-- No closures are made per load: FNEW is not compiled by LuaJIT 2.1.
local running
local function on_error(e) return error_text(running, e) end
local function load_all(S, path, src, chunkname)
  run_chunk(S, path, src, nil, chunkname)
  return finish(S)
end

local function run(S, path, src, chunkname)
  local outer = running
  running = S
  local ok, res = xpcall(load_all, on_error, S, path, src, chunkname)
  running = outer
  S.loading = false
  if not ok then return nil, res end
  return res
end

-- Loads the config file at `path` (and its includes).
function M.load(path, opts)
  if type(path) ~= "string" or path == "" then
    error("luaray.config.load: path must be a non-empty string", 2)
  end
  return run(new_state(opts), normpath(path), nil, nil)
end

-- Loads a config given as a string; chunkname ("=name" or "@name.lua") is
-- the file name shown in errors, and "@dir/name.lua" also sets the
-- directory relative includes are resolved against (the current one
-- otherwise).
function M.load_string(src, chunkname, opts)
  if type(src) ~= "string" then
    error("luaray.config.load_string: src must be a string", 2)
  end
  if chunkname ~= nil and (type(chunkname) ~= "string" or #chunkname < 2) then
    error("luaray.config.load_string: chunkname must be a string like \"=name\"", 2)
  end
  return run(new_state(opts), nil, src, chunkname)
end

M.HOOKS = HOOKS

return M
