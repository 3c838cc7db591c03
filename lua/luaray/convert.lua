-- luaray.convert: v2ray / Xray JSON configs and vmess:// share links to
-- luaray config scripts (`luaray convert FILE.json`, `luaray import LINK`).
--
--   M.convert(text, name) -> lua_text, count_not_converted | nil, "name:line:col: message"
--       text: the JSON (comments // # /* */ allowed, as v2ray reads it);
--       name: the file name for messages and the header.
--   M.import(link) -> lua_text | nil, "message"
--       a client config (SOCKS5 on 127.0.0.1:1080, HTTP on 127.0.0.1:8080)
--       whose VMess outbound is the server of a v2rayN-format vmess:// link.
--   M.json_hint(path) -> message or nil: for `-c FILE` when FILE is JSON
--       (its name ends in .json, or its first byte that is no white space
--       is '{', which no Lua chunk starts with).
--
-- What the JSON asks for and luaray cannot do is never dropped in silence:
-- it becomes a comment "-- not converted: PATH = VALUE (why)" next to the
-- declaration it belongs to, PATH being the JSON path with 0-based array
-- indices (inbounds[1].settings.clients[0].alterId).  Keys nothing reads
-- (an unknown key, a typo) are listed the same way.
--
-- The output uses the DSL of README "The config script", design.md 6
-- (tls, transport) and 9 (geosite, geoip, v2ray's domain forms, tunnel /
-- tproxy / redirect inbounds, mux).  A v2ray rule's domain list is ORed
-- while luaray's filters are ANDed, so a rule whose domains (or IPs) are of
-- several kinds becomes one luaray rule per kind, in order, with the same
-- other filters and outbound: first match wins, so this keeps its meaning.
local json = require "luaray.json"

local M = {}

local fmt, concat = string.format, table.concat

---------------------------------------------------------------------------
-- Lua text

local function lua_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    return fmt("\\%03d", c:byte())
  end) .. '"'
end

local KEYWORDS = {}
for w in ("and break do else elseif end false for function if in local nil not or repeat " ..
          "return then true until while goto"):gmatch("%S+") do KEYWORDS[w] = true end

-- An ordered table: { [1] = {k, v}, ... , _map = true }; a list: a plain array.
local function map() return { _map = true } end
local function put(m, k, v)
  if v ~= nil then m[#m + 1] = { k, v } end
  return m
end

local render
local function render_key(k)
  if k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. lua_string(k) .. "]"
end

function render(v)
  local t = type(v)
  if t == "string" then return lua_string(v) end
  if t == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return fmt("%d", v) end
    return fmt("%.17g", v)
  end
  if t == "boolean" then return tostring(v) end
  if t == "table" then
    local parts = {}
    if v._map then
      for i, kv in ipairs(v) do parts[i] = render_key(kv[1]) .. " = " .. render(kv[2]) end
    else
      for i, x in ipairs(v) do parts[i] = render(x) end
    end
    if #parts == 0 then return "{}" end
    return "{ " .. concat(parts, ", ") .. " }"
  end
  error("cannot render a " .. t)
end

-- `head { k = v, ... }` on one line when short, else one key per line.
local function decl(head, m)
  local one = head .. " " .. render(m)
  if #one <= 100 then return one end
  local lines = { head .. " {" }
  for i, kv in ipairs(m) do
    lines[#lines + 1] = "  " .. render_key(kv[1]) .. " = " .. render(kv[2]) .. (i < #m and "," or "")
  end
  lines[#lines + 1] = "}"
  return concat(lines, "\n")
end

---------------------------------------------------------------------------
-- JSON paths and notes

local function is_array(v) return type(v) == "table" and (#v > 0 or next(v) == nil) end
local function is_object(v) return type(v) == "table" and not (#v > 0) end

local function pkey(path, k)
  if type(k) == "number" then return fmt("%s[%d]", path, k) end
  if k:match("^[%a_][%w_]*$") then return path == "" and k or path .. "." .. k end
  return path .. "[" .. lua_string(k) .. "]"
end

local function show(v)
  local s = json.encode(v) or tostring(v)
  s = s:gsub("%c", " ")
  if #s > 120 then s = s:sub(1, 117) .. "..." end
  return s
end

-- A conversion: the output blocks and the count of what was not converted.
local Conv = {}
Conv.__index = Conv

-- A note "not converted" under the current declaration.
function Conv:skip(path, v, why)
  self.skipped = self.skipped + 1
  local line = "-- not converted: " .. path
  if v ~= nil then line = line .. " = " .. show(v) end
  if why then line = line .. " (" .. why .. ")" end
  self.notes[#self.notes + 1] = line
end

-- A plain remark (converted, but worth saying).
function Conv:remark(text) self.notes[#self.notes + 1] = "-- " .. text end

function Conv:emit(text)
  for _, n in ipairs(self.notes) do self.out[#self.out + 1] = n end
  self.notes = {}
  if text then self.out[#self.out + 1] = text end
end

function Conv:section(title)
  self:emit()
  self.out[#self.out + 1] = ""
  self.out[#self.out + 1] = "-- " .. title
end

-- A reader over one JSON object: get(k) marks k as read; done() lists
-- every key nobody read.
local Obj = {}
Obj.__index = Obj
function Conv:obj(t, path)
  if t ~= nil and not is_object(t) then
    self:skip(path, t, "an object expected")
    t = nil
  end
  return setmetatable({ t = t or {}, path = path, c = self, read = {} }, Obj)
end
function Obj:get(k) self.read[k] = true; return self.t[k] end
function Obj:p(k) return pkey(self.path, k) end
function Obj:sub(k) return self.c:obj(self:get(k), self:p(k)) end
function Obj:done(why)
  local keys = {}
  for k in pairs(self.t) do
    if not self.read[k] then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do self.c:skip(self:p(k), self.t[k], why or "luaray has no such setting") end
end
function Obj:str(k)
  local v = self:get(k)
  if v == nil then return nil end
  if type(v) ~= "string" then self.c:skip(self:p(k), v, "a string expected"); return nil end
  return v
end
function Obj:num(k)
  local v = self:get(k)
  if v == nil then return nil end
  if type(v) == "string" and tonumber(v) then return tonumber(v) end
  if type(v) ~= "number" then self.c:skip(self:p(k), v, "a number expected"); return nil end
  return v
end
function Obj:bool(k)
  local v = self:get(k)
  if v == nil then return nil end
  if type(v) ~= "boolean" then self.c:skip(self:p(k), v, "true or false expected"); return nil end
  return v
end
-- a list of strings (a single string is a one-element list)
function Obj:strs(k)
  local v = self:get(k)
  if v == nil then return nil end
  if type(v) == "string" then return { v } end
  if not is_array(v) then self.c:skip(self:p(k), v, "a list of strings expected"); return nil end
  local out = {}
  for i, x in ipairs(v) do
    if type(x) == "string" then out[#out + 1] = x
    else self.c:skip(pkey(self:p(k), i - 1), x, "a string expected") end
  end
  return out
end
function Obj:list(k)
  local v = self:get(k)
  if v == nil then return {} end
  if not is_array(v) then self.c:skip(self:p(k), v, "a list expected"); return {} end
  return v
end

---------------------------------------------------------------------------
-- Small parsers

local function is_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return a and tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256
end
local function is_ipv6(s) return s:find(":", 1, true) and s:match("^[%x:%.]+$") ~= nil end
local function is_hostname(s)
  if #s == 0 or #s > 253 then return false end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or label:find("[^%w%-_]") then return false end
  end
  return true
end

local function hostport(host, port)
  if is_ipv6(host) then return fmt("[%s]:%d", host, port) end
  return fmt("%s:%d", host, port)
end

-- a v2ray port: 1080 or "1080"; nil, why for ranges, env: and bad ones
local function one_port(v)
  if type(v) == "number" and v == math.floor(v) and v >= 1 and v <= 65535 then return v end
  if type(v) == "string" and v:match("^%d+$") then
    local n = tonumber(v)
    if n >= 1 and n <= 65535 then return n end
  end
  if type(v) == "string" and v:match("^%d+%-%d+$") then
    return nil, "a port range: a luaray inbound listens on one port"
  end
  return nil, "not a port 1-65535"
end

local LEVELS = { debug = "debug", info = "info", warning = "warn", error = "error" }

---------------------------------------------------------------------------
-- streamSettings

-- -> { tls = map or nil, transport = map or nil } or nil when the stream
-- cannot be expressed (the reason noted).  side: "in" or "out"; host: the
-- outbound's server address (for the default SNI).
function Conv:stream(o, side, host)
  local ss = o:sub("streamSettings")
  local res = {}
  local net = ss:str("network") or "tcp"
  local ok = true
  local sec = ss:str("security") or "none"
  if net == "tcp" or net == "raw" then
    local tcp = ss:sub(net == "raw" and "rawSettings" or "tcpSettings")
    local hdr = tcp:sub("header")
    local ht = hdr:str("type")
    if ht and ht ~= "none" then
      self:skip(hdr:p("type"), ht, "HTTP header obfuscation is not supported")
      ok = false
    end
    hdr:done()
    if tcp:get("acceptProxyProtocol") then
      self:skip(tcp:p("acceptProxyProtocol"), true,
        "luaray needs the proxies' addresses: add proxy_protocol = true, trusted_proxies = { ... }")
    end
    tcp:done()
  elseif net == "ws" or net == "websocket" then
    local ws = ss:sub("wsSettings")
    local tp = put(map(), "type", "ws")
    local path = ws:str("path") or "/"
    if path:sub(1, 1) ~= "/" then path = "/" .. path end
    local h = ws:sub("headers")
    local hosthdr
    for k in pairs(h.t) do
      if k:lower() == "host" then
        hosthdr = h:str(k)
        if side == "in" then
          -- a v2ray server never checks it (headers are what a client sends)
          self:remark(h:p(k) .. " ignored: a v2ray server does not check the Host")
          hosthdr = nil
        end
      end
    end
    h:done(side == "in" and "a server sends no request headers" or "luaray sends no other headers")
    hosthdr = ws:str("host") or hosthdr   -- Xray's field: a server checks it
    local med = ws:num("maxEarlyData")
    local edh = ws:str("earlyDataHeaderName")
    if edh and edh ~= "Sec-WebSocket-Protocol" then
      self:skip(ws:p("earlyDataHeaderName"), edh, "luaray sends early data in Sec-WebSocket-Protocol")
    end
    if side == "in" then
      path = path:gsub("%?.*$", "")
      put(tp, "path", path)
      if hosthdr then put(tp, "host", hosthdr) end
      -- v2ray and Xray servers take early data from any client; so must we
      put(tp, "max_early_data", med and med > 0 and math.min(med, 65536) or 2048)
    else
      if med and med > 0 and not path:find("[?&]ed=") then
        path = path .. (path:find("?", 1, true) and "&" or "?") .. "ed=" .. math.floor(med)
      end
      put(tp, "path", path)
      if hosthdr then put(tp, "host", hosthdr) end
    end
    if ws:get("acceptProxyProtocol") then
      self:skip(ws:p("acceptProxyProtocol"), true,
        "luaray needs the proxies' addresses: add proxy_protocol = true, trusted_proxies = { ... }")
    end
    ws:done()
    res.transport = tp
  elseif net == "httpupgrade" then
    local hu = ss:sub("httpupgradeSettings")
    local tp = put(map(), "type", "httpupgrade")
    local path = hu:str("path") or "/"
    if path:sub(1, 1) ~= "/" then path = "/" .. path end
    if side == "in" then path = path:gsub("%?.*$", "") end
    put(tp, "path", path)
    put(tp, "host", hu:str("host"))
    hu:done()
    res.transport = tp
  elseif net == "grpc" or net == "gun" then
    local g = ss:sub("grpcSettings")
    local tp = put(map(), "type", "grpc")
    put(tp, "service_name", g:str("serviceName") or "")
    if side == "out" and g:bool("multiMode") then put(tp, "multi", true) end
    if side == "in" then g:bool("multiMode") end -- the server takes both
    g:done()
    res.transport = tp
    local sn = tp[2][2]
    if sn == "" then
      self:skip(g:p("serviceName"), "", "luaray needs a gRPC service name")
      ok = false
    elseif sn:find("[%s/?#%%\128-\255]") then
      self:skip(g:p("serviceName"), sn, "custom gRPC paths are not supported: a plain service name is")
      ok = false
    end
  else
    self:skip(ss:p("network"), net, "transport not supported (tcp, ws, httpupgrade and grpc are)")
    ok = false
  end
  -- settings of transports other than the one in use mean nothing
  for _, k in ipairs({ "tcpSettings", "rawSettings", "wsSettings", "httpupgradeSettings",
                       "grpcSettings", "kcpSettings", "httpSettings", "quicSettings",
                       "dsSettings", "splithttpSettings", "xhttpSettings" }) do
    if ss.t[k] ~= nil and not ss.read[k] then
      ss:get(k)
      self:remark(fmt("%s ignored: the network is %q", ss:p(k), net))
    end
  end
  if sec == "tls" then
    res.tls = self:tls(ss:sub("tlsSettings"), side, host, res.transport)
    if not res.tls then ok = false end
  elseif sec ~= "none" and sec ~= "" then
    self:skip(ss:p("security"), sec, "only tls is supported")
    ok = false
  end
  if ss.t.tlsSettings ~= nil and sec ~= "tls" then
    ss:get("tlsSettings")
    self:remark(ss:p("tlsSettings") .. " ignored: security is not tls")
  end
  local so = ss:sub("sockopt")
  res.sockopt_tproxy = so:str("tproxy")
  so:done()
  ss:done()
  if not ok then return nil end
  return res
end

function Conv:tls(t, side, host, tp)
  local m = map()
  local alpn = t:strs("alpn")
  if side == "in" then
    local certs = {}
    for i, c in ipairs(t:list("certificates")) do
      local co = self:obj(c, pkey(t:p("certificates"), i - 1))
      local usage = co:str("usage") or "encipherment"
      local cf, kf = co:str("certificateFile"), co:str("keyFile")
      if usage ~= "encipherment" then
        self:skip(co.path, c, "a server certificate for " .. usage .. ": luaray serves certificates only")
        co.read = setmetatable({}, { __index = function() return true end })
      elseif cf and kf then
        certs[#certs + 1] = put(put(map(), "cert", cf), "key", kf)
      else
        if co:get("certificate") or co:get("key") then
          self:skip(co.path, "(inline PEM)", "luaray reads certificates from files: write them to files")
        else
          self:skip(co.path, c, "needs certificateFile and keyFile")
        end
      end
      co:done()
    end
    if #certs == 0 then
      self:skip(t:p("certificates"), nil, "a TLS server needs a certificate file and key file")
      t:done()
      return nil
    end
    if #certs == 1 then
      put(m, "cert", certs[1][1][2])
      put(m, "key", certs[1][2][2])
    else
      put(m, "certs", certs)
    end
    local sn = t:str("serverName")
    if sn then self:remark(t:p("serverName") .. " = " .. show(sn) .. ": a server picks its certificate by SNI") end
    if alpn and #alpn > 0 then put(m, "alpn", alpn)
    elseif tp and tp[1][2] ~= "grpc" then put(m, "alpn", { "http/1.1" }) end
  else
    local sn = t:str("serverName")
    if sn then put(m, "server_name", sn) end
    if alpn and #alpn > 0 and tp and tp[1][2] ~= "grpc" then
      -- an HTTP/1.1 upgrade must not offer h2: a server preferring it
      -- would pick it and the upgrade would fail
      local keep = {}
      for _, a in ipairs(alpn) do if a ~= "h2" then keep[#keep + 1] = a end end
      if #keep < #alpn then
        self:remark(t:p("alpn") .. ": h2 left out, a " .. tp[1][2] .. " upgrade is HTTP/1.1")
      end
      alpn = keep
    end
    if not alpn or #alpn == 0 then
      -- what v2ray's own dialers offer: ws/httpupgrade HTTP/1.1, gRPC h2
      if tp and tp[1][2] == "grpc" then alpn = { "h2" }
      elseif tp then alpn = { "http/1.1" } end
    end
    if alpn and #alpn > 0 then put(m, "alpn", alpn) end
    local ca
    for i, c in ipairs(t:list("certificates")) do
      local co = self:obj(c, pkey(t:p("certificates"), i - 1))
      local usage = co:str("usage") or "encipherment"
      local cf = co:str("certificateFile")
      if usage == "verify" and cf and not ca then
        ca = cf
      else
        self:skip(co.path, c, usage == "verify" and "luaray takes one extra CA file (tls.ca)"
                  or "client certificates are not supported")
        co.read = setmetatable({}, { __index = function() return true end })
      end
      co:done()
    end
    if ca then put(m, "ca", ca) end
    if t:get("allowInsecure") == true then
      self:skip(t:p("allowInsecure"), true, "luaray always verifies the server: give tls.ca or " ..
        "tls.pinned_sha256 (the SHA-256 of the server's certificate)")
    end
    local fp = t:str("fingerprint")
    if fp then self:skip(t:p("fingerprint"), fp, "luaray sends OpenSSL's own ClientHello") end
  end
  if t.t.allowInsecure == false then t:get("allowInsecure") end
  t:done()
  return m
end

---------------------------------------------------------------------------
-- Inbounds

-- a tag, email or name the DSL takes: 1-255 bytes, no control characters
local function good_name(s) return type(s) == "string" and s ~= "" and #s <= 255 and not s:find("%c") end

local function uniq(used, base)
  local name, n = base, 1
  while used[name] do
    n = n + 1
    name = base .. "-" .. n
  end
  used[name] = true
  return name
end

-- the user registry: luaray's users are global, v2ray's per inbound
function Conv:user(c, path, inbound_tag)
  local co = self:obj(c, path)
  local id = co:str("id")
  if not id then
    self:skip(path, c, "a client needs an id")
    co.read = setmetatable({}, { __index = function() return true end })
    return nil
  end
  local key = id:lower():gsub("%-", "")
  local level = co:num("level") or 0
  local aid = co:num("alterId") or 0
  local email = co:str("email")
  if email and email ~= "" and not good_name(email) then
    self:remark(fmt("%s.email = %s: not a luaray email (1-255 bytes, no control characters): renamed", path, show(email)))
    email = nil
  end
  co:str("security")
  local flow = co:str("flow")
  if flow and flow ~= "" then self:skip(co:p("flow"), flow, "VLESS flows are not VMess") end
  co:done()
  local u = self.user_by_id[key]
  if u then
    if email and email ~= u.email then
      self:remark(fmt("%s: the same id as user %q (luaray users are global: one user)", path, u.email))
    end
    if aid > u.alter_id then u.alter_id = aid end
    return u, aid
  end
  if not email or email == "" or self.user_by_email[email] then
    if email and email ~= "" then
      self:remark(fmt("%s: the email %q is taken by another id: renamed", path, email))
    end
    local base = email and email ~= "" and email or ("user" .. (#self.users + 1))
    email = base
    local n = 1
    while self.user_by_email[email] do n = n + 1; email = base .. "-" .. n end
  end
  u = { id = id, email = email, level = level, alter_id = aid, tag = inbound_tag }
  self.users[#self.users + 1] = u
  self.user_by_id[key] = u
  self.user_by_email[email] = u
  return u, aid
end

function Conv:accounts(s, m)
  local auth = s:str("auth")
  local list = {}
  for i, a in ipairs(s:list("accounts")) do
    local ao = self:obj(a, pkey(s:p("accounts"), i - 1))
    local user, pass = ao:str("user"), ao:str("pass")
    ao:done()
    if user and pass then list[#list + 1] = put(put(map(), "user", user), "pass", pass) end
  end
  if auth == "password" or (auth == nil and #list > 0) then
    if #list > 0 then put(m, "accounts", list) end
  elseif auth and auth ~= "noauth" then
    self:skip(s:p("auth"), auth, "noauth or password")
  elseif #list > 0 then
    self:remark(s:p("accounts") .. " ignored: auth is noauth")
  end
end

-- The level an inbound's users have (for policy.levels): a set.
function Conv:inbound(ib, path)
  local o = self:obj(ib, path)
  local proto = o:str("protocol") or "?"
  local tag = o:str("tag")
  if tag and not good_name(tag) then
    self:skip(o:p("tag"), tag, "a luaray tag is 1-255 bytes without control characters: renamed")
    tag = nil
  end
  local listen = o:str("listen") or "0.0.0.0"
  local port, why = one_port(o:get("port"))
  local entry = { json_tag = tag, levels = {}, path = path }
  local m = map()
  local function give_up(reason)
    self:skip(path, ib, reason)
    o.read = setmetatable({}, { __index = function() return true end })
    self:emit()
  end
  -- the v2ray API's own inbound becomes luaray.api
  if tag and self.api_inbounds[tag] then
    if proto == "dokodemo-door" and port then
      self.api_listen = hostport(listen, port)
      self:remark(fmt("%s (tag %q) is the v2ray API's inbound: luaray.api listens there", path, tag))
      o.read = setmetatable({}, { __index = function() return true end })
      self:emit()
      return nil
    end
  end
  if not port then
    self:skip(o:p("port"), o:get("port"), why)
    return give_up("so the whole inbound: no single port")
  end
  if listen:sub(1, 1) == "/" or listen:sub(1, 1) == "@" then
    self:skip(o:p("listen"), listen, "Unix sockets are not supported")
    return give_up("so the whole inbound")
  end
  local alloc = o:sub("allocate")
  local strat = alloc:str("strategy")
  if strat and strat ~= "always" then self:skip(alloc:p("strategy"), strat, "luaray listens always") end
  alloc:done()
  local sniff = o:sub("sniffing")
  if sniff:get("enabled") then
    self:remark(sniff.path .. ": luaray reads the TLS SNI / HTTP Host by itself when a rule " ..
                "has a domain filter (or a route hook reads ctx.sniffed)")
  end
  sniff.read = setmetatable({}, { __index = function() return true end })
  local s = o:sub("settings")
  local ltype
  if proto == "vmess" then
    ltype = "vmess"
    local emails, legacy = {}, false
    for j, c in ipairs(s:list("clients")) do
      local u, aid = self:user(c, pkey(s:p("clients"), j - 1), tag)
      if u then
        emails[#emails + 1] = u.email
        entry.levels[u.level] = true
        if aid ~= 0 then legacy = true end
      end
    end
    if #emails == 0 then
      return give_up("a VMess inbound without clients accepts nobody")
    end
    entry.emails = emails
    local def = s:sub("default")
    def.read = setmetatable({}, { __index = function() return true end })
    if next(def.t) then self:remark(def.path .. ": defaults of clients added at run time: see luaray.users.add") end
    local det = s:get("detour")
    if det then self:skip(s:p("detour"), det, "use dynamic_port = { port = \"lo-hi\" } on the inbound") end
    local dis = s:get("disableInsecureEncryption")
    if dis then self:skip(s:p("disableInsecureEncryption"), dis) end
    put(m, "type", "vmess")
    put(m, "listen", hostport(listen, port))
    if legacy then put(m, "allow_legacy", true) end
    entry.allow_private = true
  elseif proto == "socks" or proto == "mixed" then
    ltype = "socks"
    put(m, "type", "socks")
    put(m, "listen", hostport(listen, port))
    if s:bool("udp") then put(m, "udp", true) end
    self:accounts(s, m)
    if s:get("allowTransparent") then self:skip(s:p("allowTransparent"), true) end
    local ip = s:str("ip")
    if ip and ip ~= listen and not (ip == "127.0.0.1" and listen == "0.0.0.0") then
      self:skip(s:p("ip"), ip, "luaray answers UDP ASSOCIATE with the address the client reached")
    end
    entry.levels[s:num("userLevel") or 0] = true
    if proto == "mixed" then
      self:skip(o:p("protocol"), "mixed", "a mixed port is SOCKS5 only here: add an http inbound on another port")
    end
  elseif proto == "http" then
    ltype = "http"
    put(m, "type", "http")
    put(m, "listen", hostport(listen, port))
    self:accounts(s, m)
    local to = s:num("timeout")
    if to and to > 0 then put(m, "handshake_timeout", to) end
    if s:get("allowTransparent") then self:skip(s:p("allowTransparent"), true) end
    entry.levels[s:num("userLevel") or 0] = true
  elseif proto == "dokodemo-door" or proto == "tunnel" then
    local follow = s:bool("followRedirect")
    local addr = s:str("address")
    local dport = s:get("port")
    local net = s:get("network")
    if type(net) == "table" then net = concat(net, ",") end
    net = (net or "tcp"):gsub("%s", "")
    if not (net == "tcp" or net == "udp" or net == "tcp,udp" or net == "udp,tcp") then
      self:skip(s:p("network"), net, "tcp, udp or tcp,udp")
      net = "tcp"
    end
    local sot = type(o.t.streamSettings) == "table" and o.t.streamSettings.sockopt
    local tproxy = type(sot) == "table" and sot.tproxy
    if follow then
      ltype = tproxy == "tproxy" and "tproxy" or "redirect"
      put(m, "type", ltype)
      put(m, "listen", hostport(listen, port))
      if ltype == "tproxy" then put(m, "network", net)
      elseif net ~= "tcp" then self:skip(s:p("network"), net, "redirect carries TCP only; use sockopt.tproxy = \"tproxy\" for UDP") end
      if addr then self:remark(s:p("address") .. " ignored: followRedirect takes the original destination") end
      if dport then self:remark(s:p("port") .. " ignored: followRedirect takes the original destination") end
    else
      local dp = one_port(dport)
      if not addr or not dp then
        self:skip(s.path, s.t, "a dokodemo-door needs address and port")
        return give_up("so the whole inbound")
      end
      ltype = "tunnel"
      put(m, "type", "tunnel")
      put(m, "listen", hostport(listen, port))
      put(m, "to", hostport(addr, dp))
      put(m, "network", net == "udp,tcp" and "tcp,udp" or net)
    end
    local to = s:num("timeout")
    if to and to > 0 then put(m, "idle_timeout", to) end
    entry.levels[s:num("userLevel") or 0] = true
  else
    self:skip(o:p("protocol"), proto, "luaray's inbounds are vmess, socks, http and dokodemo-door")
    return give_up("so the whole inbound")
  end
  s:done()
  local st = self:stream(o, "in")
  if not st then return give_up("so the whole inbound: its stream cannot be expressed") end
  if (st.tls or st.transport) and ltype ~= "vmess" then
    self:skip(o:p("streamSettings"), o.t.streamSettings, "tls and transports are for VMess inbounds")
    return give_up("so the whole inbound")
  end
  if st.sockopt_tproxy and not (ltype == "tproxy" or ltype == "redirect") then
    self:skip(pkey(o:p("streamSettings"), "sockopt") .. ".tproxy", st.sockopt_tproxy, "only with followRedirect")
  end
  if st.tls then put(m, "tls", st.tls) end
  if st.transport then put(m, "transport", st.transport) end
  o:done()
  entry.map = m
  entry.notes = self.notes
  self.notes = {}
  entry.tag = tag or uniq(self.in_tags, ltype .. "-in")
  return entry
end

---------------------------------------------------------------------------
-- Outbounds

local SECURITIES = { ["aes-128-gcm"] = true, ["chacha20-poly1305"] = true, none = true,
                     zero = true, ["aes-128-cfb"] = true, auto = true }

function Conv:outbound(ob, path)
  local o = self:obj(ob, path)
  local proto = o:str("protocol") or "?"
  local tag = o:str("tag")
  if tag and not good_name(tag) then
    self:skip(o:p("tag"), tag, "a luaray tag is 1-255 bytes without control characters: renamed")
    tag = nil
  end
  local m = map()
  local function give_up(reason)
    self:skip(path, ob, reason)
    o.read = setmetatable({}, { __index = function() return true end })
    self:emit()
  end
  local s = o:sub("settings")
  local base
  local host
  if proto == "freedom" or proto == "direct" then
    base = "direct"
    put(m, "type", "direct")
    local ds = s:str("domainStrategy")
    local map_ds = { AsIs = "as_is", UseIPv4 = "ipv4", UseIPv6 = "ipv6", ForceIPv4 = "ipv4",
                     ForceIPv6 = "ipv6" }
    if ds and map_ds[ds] then
      if map_ds[ds] ~= "as_is" then put(m, "domain_strategy", map_ds[ds]) end
    elseif ds then
      self:skip(s:p("domainStrategy"), ds, "luaray resolves with the system's resolver (as_is, ipv4, ipv6)")
    end
    local redir = s:get("redirect")
    if redir then self:skip(s:p("redirect"), redir, "use a route hook") end
    local lvl = s:get("userLevel")
    if lvl then self:remark(s:p("userLevel") .. " ignored") end
  elseif proto == "blackhole" or proto == "block" then
    base = "block"
    put(m, "type", "blackhole")
    local r = s:get("response")
    if r then self:skip(s:p("response"), r, "a luaray blackhole closes without a reply") end
  elseif proto == "vmess" then
    base = "proxy"
    put(m, "type", "vmess")
    local vnext = s:list("vnext")
    if #vnext == 0 then
      self:skip(s:p("vnext"), nil, "a VMess outbound needs a server")
      return give_up("so the whole outbound")
    end
    local v = self:obj(vnext[1], pkey(s:p("vnext"), 0))
    for j = 2, #vnext do self:skip(pkey(s:p("vnext"), j - 1), vnext[j], "luaray dials one server per outbound: make another outbound") end
    host = v:str("address")
    local port = one_port(v:get("port"))
    if not host or not port then
      self:skip(v.path, vnext[1], "needs address and port")
      return give_up("so the whole outbound")
    end
    put(m, "server", hostport(host, port))
    local users = v:list("users")
    if #users == 0 then
      self:skip(v:p("users"), nil, "a VMess outbound needs a user")
      return give_up("so the whole outbound")
    end
    for j = 2, #users do self:skip(pkey(v:p("users"), j - 1), users[j], "one user per outbound") end
    local u = self:obj(users[1], pkey(v:p("users"), 0))
    local id = u:str("id")
    if not id then return give_up("so the whole outbound: no user id") end
    put(m, "id", id)
    local aid = u:num("alterId")
    if aid and aid > 0 then put(m, "alter_id", aid) end
    local sec = u:str("security")
    if sec then
      if SECURITIES[sec] then put(m, "security", sec)
      else self:skip(u:p("security"), sec, "aes-128-gcm, chacha20-poly1305, none, zero, auto") end
    end
    local exp = u:str("experiments") or u:str("experiment")
    if exp and exp:find("AuthenticatedLength", 1, true) then put(m, "authenticated_length", true) end
    if exp and exp:find("NoTerminationSignal", 1, true) then
      self:skip(u:p("experiments"), exp, "luaray always sends the end-of-stream chunk")
    end
    local lvl = u:num("level")
    if lvl and lvl ~= 0 then self:remark(u:p("level") .. " = " .. lvl .. ": client-side levels do nothing in luaray") end
    u:str("email")
    u:done()
    v:done()
  else
    self:skip(o:p("protocol"), proto, "luaray's outbounds are vmess, freedom and blackhole")
    return give_up("so the whole outbound")
  end
  s:done()
  local st = self:stream(o, "out", host)
  if not st then return give_up("so the whole outbound: its stream cannot be expressed") end
  if (st.tls or st.transport) and base ~= "proxy" then
    self:skip(o:p("streamSettings"), o.t.streamSettings, "tls and transports are for VMess outbounds")
  elseif base == "proxy" then
    if st.tls then put(m, "tls", st.tls) end
    if st.transport then put(m, "transport", st.transport) end
  end
  if st.sockopt_tproxy then self:skip(o:p("streamSettings") .. ".sockopt.tproxy", st.sockopt_tproxy) end
  local mux = o:sub("mux")
  if mux:get("enabled") == true then
    local c = mux:num("concurrency") or 8
    if base == "proxy" and c > 0 then put(m, "mux", put(map(), "concurrency", math.min(c, 1024))) end
  else
    mux:get("concurrency")
  end
  mux:get("enabled")
  -- Xray's mux keys for XUDP: the server is Xray, which takes XUDP (what
  -- luaray sends with xudp = true; v2ray 4.34 servers do not)
  local xc = mux:num("xudpConcurrency")
  if xc and xc > 0 and base == "proxy" then
    put(m, "xudp", true)
    self:remark(mux:p("xudpConcurrency") .. " = " .. xc .. ": UDP goes as XUDP (xudp = true), " ..
                "one stream per association")
  elseif xc then
    self:remark(mux:p("xudpConcurrency") .. " = " .. xc .. " ignored")
  end
  mux:get("xudpProxyUDP443")
  mux:done()
  local st_ = o:get("sendThrough")
  if st_ then self:skip(o:p("sendThrough"), st_, "luaray dials from the system's choice of address") end
  local ps = o:get("proxySettings")
  if ps then self:skip(o:p("proxySettings"), ps, "chained proxies are not supported") end
  o:done()
  local entry = { json_tag = tag, map = m, notes = self.notes }
  self.notes = {}
  entry.tag = tag or uniq(self.out_tags, base)
  return entry
end

---------------------------------------------------------------------------
-- Routing

-- -> groups: list of { key, values } (each becomes its own rule)
function Conv:domain_groups(list, path)
  local kinds = { full = {}, suffix = {}, keyword = {}, forms = {}, geosite = {} }
  for j, d in ipairs(list) do
    local p = pkey(path, j - 1)
    local kind, rest = d:match("^(%a+):(.*)$")
    if kind == "geosite" then kinds.geosite[#kinds.geosite + 1] = rest
    elseif kind == "full" then
      if is_hostname(rest:gsub("%.$", "")) then kinds.full[#kinds.full + 1] = rest
      else kinds.forms[#kinds.forms + 1] = d end
    elseif kind == "domain" then
      local r = rest:gsub("^%.", ""):gsub("%.$", "")
      if is_hostname(r) then kinds.suffix[#kinds.suffix + 1] = r
      else kinds.forms[#kinds.forms + 1] = d end
    elseif kind == "keyword" then
      if rest ~= "" then kinds.keyword[#kinds.keyword + 1] = rest:lower()
      else self:skip(p, d, "an empty keyword") end
    elseif kind == "regexp" or kind == "ext" then kinds.forms[#kinds.forms + 1] = d
    elseif kind == "dotless" then self:skip(p, d, "dotless: is not supported")
    elseif d ~= "" then
      -- a plain string: v2ray matches it as a substring
      kinds.keyword[#kinds.keyword + 1] = d:lower()
    end
  end
  local g = {}
  if #kinds.full > 0 then g[#g + 1] = { "domain", kinds.full } end
  if #kinds.suffix > 0 then g[#g + 1] = { "domain_suffix", kinds.suffix } end
  if #kinds.keyword > 0 then g[#g + 1] = { "domain_keyword", kinds.keyword } end
  if #kinds.forms > 0 then g[#g + 1] = { "domain", kinds.forms } end
  if #kinds.geosite > 0 then g[#g + 1] = { "geosite", kinds.geosite } end
  return g
end

function Conv:ip_groups(list, path, key)
  local cidrs, geo = {}, {}
  for j, d in ipairs(list) do
    local p = pkey(path, j - 1)
    local c = d:match("^geoip:(.*)$")
    if c then
      if c:sub(1, 1) == "!" then self:skip(p, d, "negated geoip is not supported")
      else geo[#geo + 1] = c end
    elseif d:match("^ext:") or d:match("^ext%-ip:") then
      self:skip(p, d, "ext: IP files are not supported: put the file in luaray.geodata's dir as geoip.dat")
    else
      cidrs[#cidrs + 1] = d
    end
  end
  local g = {}
  if #cidrs > 0 then g[#g + 1] = { key == "source" and "source" or "ip_cidr", cidrs } end
  if #geo > 0 and key == "ip" then g[#g + 1] = { "geoip", geo } end
  if #geo > 0 and key == "source" then
    self:skip(path, list, "geoip: in source is not supported")
  end
  return g
end

function Conv:rule(r, path, outs_by_json, ins_by_json)
  local o = self:obj(r, path)
  local rtag = o:str("ruleTag")
  local typ = o:str("type") or "field"
  local function give_up(reason)
    self:skip(path, r, reason)
    o.read = setmetatable({}, { __index = function() return true end })
    self:emit()
  end
  if typ ~= "field" then return give_up("rule type " .. typ .. " (only field rules)") end
  local bt = o:get("balancerTag")
  if bt then return give_up("balancers are not supported") end
  local ot = o:str("outboundTag")
  if not ot then return give_up("no outboundTag") end
  if self.api_tag and ot == self.api_tag then
    o.read = setmetatable({}, { __index = function() return true end })
    self:remark(path .. " routes to the v2ray API: luaray.api above")
    return
  end
  local out = outs_by_json[ot]
  if not out then return give_up("its outbound " .. ot .. " was not converted") end
  local common = map()
  local domains = o:strs("domain") or {}
  for _, d in ipairs(o:strs("domains") or {}) do domains[#domains + 1] = d end
  local ips = o:strs("ip") or {}
  local dg = self:domain_groups(domains, o:p(o.t.domain and "domain" or "domains"))
  local ig = self:ip_groups(ips, o:p("ip"), "ip")
  local port = o:get("port")
  local port_json = port
  if type(port) == "number" then port = tostring(math.floor(port)) end
  if type(port) == "string" then
    -- luaray's ports are 1-65535: a range from 0 starts at 1, port 0 alone is no port
    local parts = {}
    for part in (port:gsub("%s", "") .. ","):gmatch("([^,]*),") do
      local a, b = part:match("^(%d+)%-(%d+)$")
      if a and tonumber(a) == 0 then part = "1-" .. b end
      if part ~= "" and tonumber(part) ~= 0 then parts[#parts + 1] = part end
    end
    if #parts > 0 then put(common, "port", concat(parts, ","))
    else self:skip(o:p("port"), port_json, "no port 1-65535 in it") end
  elseif port ~= nil then
    self:skip(o:p("port"), port, "a port or \"a-b,c\" expected")
  end
  local sp = o:get("sourcePort")
  if sp then self:skip(o:p("sourcePort"), sp, "luaray has no source port filter") end
  local src = o:strs("source")
  local sg = src and self:ip_groups(src, o:p("source"), "source") or {}
  if src and #src > 0 and #sg == 0 then return give_up("nothing left of its source filter") end
  if #sg == 1 then put(common, sg[1][1], sg[1][2]) end
  local net = o:get("network")
  if type(net) == "table" then net = concat(net, ",") end
  if type(net) == "string" then
    net = net:gsub("%s", "")
    if net == "tcp" or net == "udp" then put(common, "network", net)
    elseif net ~= "tcp,udp" and net ~= "udp,tcp" then self:skip(o:p("network"), net, "tcp, udp or tcp,udp") end
  end
  local users = o:strs("user")
  if users and #users > 0 then put(common, "user", users) end
  local ins = o:strs("inboundTag")
  if ins and #ins > 0 then
    local keep = {}
    for k, t in ipairs(ins) do
      if ins_by_json[t] then keep[#keep + 1] = ins_by_json[t]
      else self:skip(pkey(o:p("inboundTag"), k - 1), t, "that inbound was not converted") end
    end
    if #keep == 0 then return give_up("none of its inbounds was converted") end
    put(common, "inbound", keep)
  end
  local protos = o:strs("protocol")
  if protos and #protos > 0 then
    local keep = {}
    for k, p in ipairs(protos) do
      if p == "tls" or p == "http" then keep[#keep + 1] = p
      else self:skip(pkey(o:p("protocol"), k - 1), p, "luaray sniffs tls and http only") end
    end
    if #keep == 0 then return give_up("none of its protocols is one luaray sniffs") end
    put(common, "protocol", keep)
  end
  local attrs = o:get("attrs")
  if attrs then return give_up("attrs (HTTP attributes) are not supported") end
  local dom = o:get("domainMatcher")
  if dom then self:remark(o:p("domainMatcher") .. " ignored: luaray builds its own matchers") end
  o:done()
  if #domains > 0 and #dg == 0 then return give_up("nothing left of its domain filter") end
  if #ips > 0 and #ig == 0 then return give_up("nothing left of its ip filter") end
  if #dg == 0 then dg = { false } end
  if #ig == 0 then ig = { false } end
  if not dg[1] and not ig[1] and #common == 0 then return give_up("a rule without filters") end
  if #dg * #ig > 1 then
    self:remark(fmt("%s: one rule per kind of domain/ip entry (v2ray ORs them, luaray ANDs filters)", path))
  end
  if rtag then self:remark(fmt("%s: ruleTag %q", path, rtag)) end
  local rules = {}
  for _, d in ipairs(dg) do
    for _, ip in ipairs(ig) do
      local m = map()
      if d then put(m, d[1], d[2]) end
      if ip then put(m, ip[1], ip[2]) end
      for _, kv in ipairs(common) do put(m, kv[1], kv[2]) end
      put(m, "to", out.tag)
      rules[#rules + 1] = m
    end
  end
  for _, m in ipairs(rules) do self:emit(decl("luaray.route", m)) end
end

---------------------------------------------------------------------------
-- The whole file

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

function M.convert(text, name)
  name = name or "config.json"
  local root, err = json.decode_config(text)
  if root == nil then
    local l, c, msg = (err or ""):match("^line (%d+), column (%d+): (.*)$")
    if l then return nil, fmt("%s:%s:%s: %s", name, l, c, msg) end
    return nil, name .. ": " .. tostring(err)
  end
  if not is_object(root) then return nil, name .. ": the top level is not a JSON object" end
  local self = setmetatable({ out = {}, notes = {}, skipped = 0, users = {}, user_by_id = {},
                              user_by_email = {}, in_tags = {}, out_tags = {},
                              api_inbounds = {} }, Conv)
  local top = self:obj(root, "")
  self.out[1] = "-- luaray config converted from " .. name .. " by `luaray convert`."
  self.out[2] = "-- Check it with `luaray -t -c FILE`. What could not be converted is listed in"
  self.out[3] = "-- comments \"not converted: <JSON path> = <value> (why)\" (0-based array indices)."

  -- the API: its tag, and the inbounds routed to it
  local api = top:sub("api")
  self.api_tag = api:str("tag")
  local routing = top:sub("routing")
  local rsettings = routing:sub("settings")
  local rules, rules_path = routing:list("rules"), "routing.rules"
  if #rules == 0 and rsettings.t.rules then
    rules, rules_path = rsettings:list("rules"), "routing.settings.rules"
  end
  if self.api_tag then
    for _, r in ipairs(rules) do
      if type(r) == "table" and r.outboundTag == self.api_tag and type(r.inboundTag) == "table" then
        for _, t in ipairs(r.inboundTag) do self.api_inbounds[t] = true end
      end
    end
  end

  -- log
  local log = top:sub("log")
  if root.log then
    self:section("log")
    local lm = map()
    local lvl = log:str("loglevel")
    if lvl then
      if LEVELS[lvl] then put(lm, "level", LEVELS[lvl])
      elseif lvl == "none" then
        put(lm, "level", "error")
        self:skip(log:p("loglevel"), "none", "luaray always logs errors")
      else self:skip(log:p("loglevel"), lvl, "debug, info, warning, error") end
    else
      put(lm, "level", "warn")  -- v2ray's default
    end
    local acc = log:str("access")
    if acc == "none" then put(lm, "access", false)
    elseif acc and acc ~= "" then put(lm, "access", acc) end
    local e = log:str("error")
    if e and e ~= "" then self:skip(log:p("error"), e, "luaray's error log is stderr (the journal under systemd)") end
    local dl = log:get("dnsLog")
    if dl then self:skip(log:p("dnsLog"), dl) end
    local mi = log:get("maskAddress")
    if mi then self:skip(log:p("maskAddress"), mi, "luaray's access log names clients") end
    log:done()
    self:emit(decl("luaray.log", lm))
  end

  -- inbounds: converted first (users are declared before them); their
  -- own output (what was given up) is kept aside until after the users.
  -- A JSON tag is kept; a generated one avoids every JSON tag.
  local inbound_entries, ins_by_json = {}, {}
  -- v2ray's v4 lists, and the v3 format's inbound/outbound + *Detour lists
  -- (which v2ray 4.34 still reads): { json, path } in v2ray's order
  local function items(single, list, detour)
    local out = {}
    if root[single] ~= nil then out[1] = { top:get(single), single } end
    for _, name in ipairs({ list, detour }) do
      for i, v in ipairs(top:list(name)) do out[#out + 1] = { v, pkey(name, i - 1) } end
    end
    return out
  end
  local in_list = items("inbound", "inbounds", "inboundDetour")
  local out_list = items("outbound", "outbounds", "outboundDetour")
  for _, it in ipairs(in_list) do
    local ib = it[1]
    if type(ib) == "table" and type(ib.tag) == "string" then self.in_tags[ib.tag] = true end
  end
  for _, it in ipairs(out_list) do
    local ob = it[1]
    if type(ob) == "table" and type(ob.tag) == "string" then self.out_tags[ob.tag] = true end
  end
  local main_out = self.out
  self.out = {}
  for _, it in ipairs(in_list) do
    local e = self:inbound(it[1], it[2])
    if e then
      inbound_entries[#inbound_entries + 1] = e
      if e.json_tag then ins_by_json[e.json_tag] = e.tag end
    end
  end
  local inbound_notes = self.out
  self.out = main_out

  -- policy levels -> the timeouts of the inbounds whose users have them
  local policy = top:sub("policy")
  local levels = policy:sub("levels")
  local level_used = {}
  local pol = {}
  for _, k in ipairs(sorted_keys(levels.t)) do
    local lo = levels:sub(k)
    pol[tostring(tonumber(k) or k)] = lo
  end
  for _, e in ipairs(inbound_entries) do
    for _, key in ipairs({ { "handshake", "handshake_timeout" }, { "connIdle", "idle_timeout" } }) do
      local vals, lvls = {}, {}
      for _, L in ipairs(sorted_keys(e.levels)) do
        local lo = pol[tostring(L)]
        local v = lo and lo.t[key[1]]
        if type(v) == "number" then vals[#vals + 1] = v; lvls[#lvls + 1] = L; level_used[tostring(L)] = true end
      end
      if #vals > 0 then
        local mx = math.max(unpack(vals))
        local mn = math.min(unpack(vals))
        if mx > 0 then
          -- replace a value the settings gave (http timeout) or add it
          local found
          for _, kv in ipairs(e.map) do if kv[1] == key[2] then kv[2] = mx; found = true end end
          if not found then put(e.map, key[2], mx) end
          e.notes[#e.notes + 1] = fmt("-- %s from policy.levels (level %s)", key[2], concat(lvls, ", "))
          if mn ~= mx then
            e.notes[#e.notes + 1] = fmt("-- levels of this inbound's users differ in %s: the longest, %g s, is used", key[1], mx)
          end
        end
      end
    end
  end
  for _, L in ipairs(sorted_keys(pol)) do
    local lo = pol[L]
    for _, k in ipairs({ "handshake", "connIdle" }) do
      if lo.t[k] ~= nil then
        lo:get(k)
        if not level_used[L] then
          self:skip(lo:p(k), lo.t[k], "no converted inbound has users of this level")
        elseif type(lo.t[k]) == "number" and lo.t[k] <= 0 then
          self:skip(lo:p(k), lo.t[k], "luaray timeouts are > 0")
        end
      end
    end
    for _, k in ipairs({ "statsUserUplink", "statsUserDownlink", "statsUserOnline" }) do
      if lo.t[k] ~= nil then lo:get(k) end
    end
    lo:done("luaray has no such per-level setting")
  end
  levels:done()
  local sys = policy:sub("system")
  for k in pairs(sys.t) do
    if k:match("^stats") then sys:get(k) end
  end
  sys:done()
  policy:done()
  local policy_notes = self.notes
  self.notes = {}

  -- stats and API
  local stats_present = root.stats ~= nil
  top:get("stats")
  if self.api_tag or stats_present or self.api_listen or root.api then
    self:section("counters and the v2ray API")
    local services = api:strs("services") or {}
    for k, sv in ipairs(services) do
      if sv ~= "StatsService" and sv ~= "HandlerService" then
        self:skip(pkey(api:p("services"), k - 1), sv, "luaray's API has StatsService and HandlerService")
      end
    end
    api:done()
    if stats_present then self:remark("stats: luaray always counts traffic per user, inbound and outbound") end
    if self.api_listen then
      self:emit(decl("luaray.api", put(map(), "listen", self.api_listen)))
    elseif self.api_tag then
      self:skip("api", root.api, "no dokodemo-door inbound is routed to it")
    end
    self:emit()
  end

  -- users
  if #self.users > 0 then
    self:section("users (luaray's users are global; each VMess inbound lists its own)")
    for _, u in ipairs(self.users) do
      local m = put(put(map(), "id", u.id), "email", u.email)
      if u.alter_id > 0 then put(m, "alter_id", u.alter_id) end
      if u.level > 0 then put(m, "level", u.level) end
      self:emit(decl("luaray.user", m))
    end
  end

  self:section("inbounds")
  for _, l in ipairs(inbound_notes) do self.out[#self.out + 1] = l end
  local vmess_count = 0
  for _, e in ipairs(inbound_entries) do if e.emails then vmess_count = vmess_count + 1 end end
  for _, e in ipairs(inbound_entries) do
    if e.emails and (vmess_count > 1 or #e.emails < #self.users) then put(e.map, "users", e.emails) end
    if e.allow_private then
      put(e.map, "allow_private", true)
      e.notes[#e.notes + 1] = "-- allow_private: v2ray's freedom dials loopback and private addresses; " ..
                              "set false to refuse them"
    end
    for _, n in ipairs(e.notes) do self.out[#self.out + 1] = n end
    self.out[#self.out + 1] = decl(fmt("luaray.inbound %s", lua_string(e.tag)), e.map)
  end
  if #inbound_entries == 0 then self:remark("no inbound could be converted") end
  self:emit()

  -- outbounds
  self:section("outbounds")
  local outs, outs_by_json = {}, {}
  local first_json = out_list[1] and type(out_list[1][1]) == "table" and out_list[1][1] or nil
  for _, it in ipairs(out_list) do
    local ob = it[1]
    local e = self:outbound(ob, it[2])
    if e then
      outs[#outs + 1] = e
      if e.json_tag then outs_by_json[e.json_tag] = e end
      e.first = ob == first_json
      for _, n in ipairs(e.notes) do self.out[#self.out + 1] = n end
      self.out[#self.out + 1] = decl(fmt("luaray.outbound %s", lua_string(e.tag)), e.map)
    end
  end
  if #outs == 0 then
    self:remark("no outbound could be converted: luaray adds none by itself")
  end
  self:emit()

  -- routing
  self:section("routing (first match wins)")
  -- v2ray's routing domainStrategy: whether ip rules see what a domain
  -- destination resolves to (README "Routing data")
  local ds = routing:str("domainStrategy")
  local route_ds = ({ IPIfNonMatch = "ip_if_non_match", IPOnDemand = "ip_on_demand" })[ds]
  if route_ds then
    self:emit(decl("luaray.route", put(map(), "domain_strategy", route_ds)))
  elseif ds and ds ~= "AsIs" then
    self:skip(routing:p("domainStrategy"), ds, "v2ray's strategies are AsIs, IPIfNonMatch and IPOnDemand")
  end
  local dm = routing:str("domainMatcher")
  if dm then self:remark("routing.domainMatcher ignored: luaray builds its own matchers") end
  local bal = routing:get("balancers")
  if bal then self:skip(routing:p("balancers"), bal, "balancers are not supported") end
  routing:get("rules")
  rsettings:get("rules")
  local rds = rsettings:str("domainStrategy")
  local route_rds = ({ IPIfNonMatch = "ip_if_non_match", IPOnDemand = "ip_on_demand" })[rds]
  if route_rds and not route_ds then
    self:emit(decl("luaray.route", put(map(), "domain_strategy", route_rds)))
  elseif rds and rds ~= "AsIs" then
    self:skip(rsettings:p("domainStrategy"), rds, route_rds and "routing.domainStrategy is taken" or
              "v2ray's strategies are AsIs, IPIfNonMatch and IPOnDemand")
  end
  rsettings:done()
  routing:get("strategy")
  routing:done()
  for j, r in ipairs(rules) do self:rule(r, pkey(rules_path, j - 1), outs_by_json, ins_by_json) end
  if #outs > 0 then
    if not outs[1].first then
      self:remark("the first JSON outbound was not converted: the default is the first that was")
    end
    self:emit(decl("luaray.route", put(map(), "default", outs[1].tag)))
  end
  self:emit()

  -- policy notes, then everything else at the top level
  if #policy_notes > 0 then
    self:section("policy")
    for _, l in ipairs(policy_notes) do self.out[#self.out + 1] = l end
  end
  top:get("inbounds"); top:get("outbounds"); top:get("log"); top:get("policy")
  top:get("inboundDetour"); top:get("outboundDetour")
  top:get("routing"); top:get("api")
  self.notes = {}
  top:done("luaray has no such section")
  local other = self.notes
  self.notes = {}
  if #other > 0 then
    self:section("other sections")
    for _, l in ipairs(other) do self.out[#self.out + 1] = l end
  end
  self.out[#self.out + 1] = ""
  return concat(self.out, "\n"), self.skipped
end

---------------------------------------------------------------------------
-- Share links

function M.import(s)
  local link = require "luaray.link"
  local f, err = link.parse_vmess_link(s)
  if not f then return nil, "not a vmess:// link (v2rayN format): " .. tostring(err) end
  local function field(k)
    local v = f[k]
    if v == nil then return nil end
    v = tostring(v)
    if v == "" then return nil end
    return v
  end
  local add, port, id = field("add"), field("port"), field("id")
  if not add or not port or not id then return nil, "the link lacks add, port or id" end
  local p = one_port(port)
  if not p then return nil, "the link's port is not 1-65535: " .. port end
  local m = map()
  put(m, "type", "vmess")
  put(m, "server", hostport(add, p))
  put(m, "id", id)
  local aid = tonumber(field("aid") or "0")
  if aid and aid > 0 then put(m, "alter_id", aid) end
  local scy = field("scy")
  if scy and not SECURITIES[scy] then return nil, "the link's scy is not supported: " .. scy end
  if scy then put(m, "security", scy) end
  local net = field("net") or "tcp"
  local typ = field("type") or "none"
  local host, path = field("host"), field("path")
  local tp
  if net == "tcp" then
    if typ ~= "none" then return nil, "tcp with header type " .. typ .. " is not supported" end
  elseif net == "ws" or net == "httpupgrade" then
    tp = put(put(map(), "type", net), "path", path or "/")
    if host then put(tp, "host", (host:match("^[^,]+"))) end
  elseif net == "grpc" then
    tp = put(put(map(), "type", "grpc"), "service_name", path or "")
    if typ == "multi" then put(tp, "multi", true) end
    if not path then return nil, "a gRPC link without a service name (path)" end
  else
    return nil, "the link's transport is not supported: net = " .. net ..
                " (luaray has tcp, ws, httpupgrade and grpc)"
  end
  local tls = field("tls")
  if tls == "tls" then
    local t = map()
    local sni = field("sni") or (host and host:match("^[^,]+"))
    if sni then put(t, "server_name", sni) end
    local alpn = {}
    for a in (field("alpn") or ""):gmatch("[^,%s]+") do alpn[#alpn + 1] = a end
    if #alpn == 0 and tp then alpn = { tp[1][2] == "grpc" and "h2" or "http/1.1" } end
    if #alpn > 0 then put(t, "alpn", alpn) end
    put(m, "tls", t)
  elseif tls and tls ~= "none" then
    return nil, "the link's security is not supported: tls = " .. tls
  end
  if tp then put(m, "transport", tp) end
  local out = {
    "-- luaray client config imported from a vmess:// link by `luaray import`" ..
      (field("ps") and (": " .. field("ps"):gsub("%c", " ")) or "") .. ".",
    "-- Local SOCKS5 on 127.0.0.1:1080 and HTTP proxy on 127.0.0.1:8080 carry",
    "-- everything to the server. Check it with `luaray -t -c FILE`.",
  }
  if f.allowInsecure == "1" or f.allowInsecure == 1 or f.allowInsecure == true or f.insecure == "1" then
    out[#out + 1] = "-- not converted: allowInsecure (luaray always verifies the server: add " ..
                    "tls.ca or tls.pinned_sha256 for a self-signed one)"
  end
  out[#out + 1] = ""
  out[#out + 1] = decl("luaray.log", put(put(map(), "level", "info"), "access", true))
  out[#out + 1] = decl('luaray.inbound "socks"', put(put(put(map(), "type", "socks"),
                       "listen", "127.0.0.1:1080"), "udp", true))
  out[#out + 1] = decl('luaray.inbound "http"', put(put(map(), "type", "http"), "listen", "127.0.0.1:8080"))
  out[#out + 1] = decl('luaray.outbound "proxy"', m)
  out[#out + 1] = decl("luaray.route", put(map(), "default", "proxy"))
  out[#out + 1] = ""
  return concat(out, "\n")
end

---------------------------------------------------------------------------
-- -c FILE.json

function M.json_hint(path)
  if type(path) ~= "string" then return nil end
  local json_name = path:lower():match("%.json[c5]?$") ~= nil
  local first
  local f = io.open(path, "rb")
  if f then
    local head = f:read(4096) or ""
    f:close()
    head = head:gsub("^\239\187\191", "")
    first = head:match("^%s*(.)")
  end
  if json_name or first == "{" then
    return fmt("%s: this looks like a v2ray/Xray JSON config; luaray's config is a Lua script: " ..
               "run `luaray convert %s > config.lua`, then `luaray -t -c config.lua`", path, path)
  end
  return nil
end

return M
