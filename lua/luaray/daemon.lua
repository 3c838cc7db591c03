-- The daemon's Lua side: loads a config script (lua/luaray/config.lua) and
-- declares its normalized table to C through the FFI (lr_conf_* in api.h).
-- Called only from core/script/bridge.c.
local ffi = require "ffi"
require "luaray.cdef"
local C = ffi.C
local config = require "luaray.config"
local control = require "luaray.control"

local M = {}

local bit = require "bit"

-- While a config loads, policies are staged and applied only if the whole
-- config is committed; from a hook they apply at once.
local loading, staged = false, {}

-- config.lua's names for api.h's route masks
local NETWORKS = { tcp = C.LR_NET_TCP, udp = C.LR_NET_UDP }
local PROTOCOLS = { tls = C.LR_PROTO_TLS, http = C.LR_PROTO_HTTP }

local LEVELS = { debug = C.LR_LOG_DEBUG, info = C.LR_LOG_INFO, warn = C.LR_LOG_WARN,
                 error = C.LR_LOG_ERROR }

-- The embedded default (design.md 1): a VMess server on 127.0.0.1:10086
-- with one fresh user, and SOCKS5/HTTP inbounds on loopback that reach it
-- through a VMess outbound.  `luaray --ports VMESS,SOCKS,HTTP` (make run
-- PORTS=...) moves the three listeners; `luaray --print-default` prints it.
local DEFAULT = [[
luaray.log { level = "info", access = true }
luaray.user { id = "%s", email = "default@luaray" }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d",
                            allow_private = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d", udp = true }
luaray.inbound "http-in"  { type = "http",  listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
luaray.outbound "local-vmess" { type = "vmess", server = "127.0.0.1:%d",
                                id = "%s", security = "aes-128-gcm" }
luaray.route { inbound = { "socks-in", "http-in" }, to = "local-vmess" }
luaray.route { default = "direct" }
]]
-- what errors in it are attributed to (its line numbers mean nothing to
-- whoever runs it)
local DEFAULT_WHERE = "embedded default config"
local default_ports = { 10086, 1080, 8080 }
local banner -- the default's announcement, printed once it listens

local function default_text(uuid)
  local p = default_ports
  return DEFAULT:format(uuid, p[1], p[2], p[3], p[1], uuid)
end

-- set_default_ports("VMESS,SOCKS,HTTP"): the embedded default's ports.
function M.set_default_ports(s)
  local a, b, c = tostring(s):match("^%s*(%d+)%s*[, ]%s*(%d+)%s*[, ]%s*(%d+)%s*$")
  local p = { tonumber(a), tonumber(b), tonumber(c) }
  for i = 1, 3 do
    if not p[i] or p[i] < 1 or p[i] > 65535 then
      return nil, ("--ports: want VMESS,SOCKS,HTTP, three ports 1-65535 (got '%s')"):format(tostring(s))
    end
  end
  if p[1] == p[2] or p[1] == p[3] or p[2] == p[3] then
    return nil, ("--ports: the three ports must differ (got '%s')"):format(tostring(s))
  end
  default_ports = p
  return true
end

local function fresh_uuid()
  local id = ffi.new("uint8_t[16]")
  local s = ffi.new("char[37]")
  C.lr_uuid_random(id)
  C.lr_uuid_format(id, s)
  return ffi.string(s)
end

local TRANSPORT_TYPES = { tcp = C.LR_TP_TCP, ws = C.LR_TP_WS, httpupgrade = C.LR_TP_HTTPUPGRADE,
                          grpc = C.LR_TP_GRPC }

-- config.lua's transport table -> struct lr_conf_transport (the strings
-- stay referenced by the table while C copies them)
local function transport_struct(tp)
  local t = ffi.new("struct lr_conf_transport")
  t.type = TRANSPORT_TYPES[tp.type]
  t.path, t.host, t.service_name = tp.path, tp.host, tp.service_name
  t.max_early_data = tp.max_early_data or 0
  t.early_data = tp.early_data or 0
  t.multi = tp.multi and 1 or 0
  return t
end

local function apply(cfg, conf)
  local function check(rc, where)
    if rc ~= 0 then
      local msg = ffi.string(C.lr_conf_error(conf))
      error((where and (where .. ": ") or "") .. msg, 0)
    end
  end
  local access = cfg.log.access
  if access == true then access = "" elseif access == false then access = nil end
  check(C.lr_conf_log(conf, LEVELS[cfg.log.level] or C.LR_LOG_INFO, access, cfg.log_where))
  check(C.lr_conf_workers(conf, cfg.workers == "auto" and 0 or cfg.workers), cfg.workers_where)
  if cfg.metrics then
    local m = cfg.metrics
    check(C.lr_conf_metrics(conf, m.host, m.port, m.token, m.where), m.where)
  end
  if cfg.api then
    local a = cfg.api
    check(C.lr_conf_api(conf, a.host, a.port, a.where), a.where)
  end
  if cfg.cluster then
    local k = cfg.cluster
    check(C.lr_conf_cluster(conf, k.host, k.port, k.password, k.db, k.prefix, k.node,
                            k.timeout_ms, k.where), k.where)
  end
  for _, u in ipairs(cfg.users) do
    check(C.lr_conf_user(conf, u.id, u.email, u.alter_id or 0, u.level or 0), u.where)
  end
  for _, ib in ipairs(cfg.inbounds) do
    local s = ffi.new("struct lr_conf_inbound")
    s.tag, s.type, s.host, s.port = ib.tag, ib.type, ib.listen.host, ib.listen.port
    s.allow_legacy = ib.allow_legacy and 1 or 0
    s.allow_private = ib.allow_private and 1 or 0
    s.udp = ib.udp and 1 or 0
    s.handshake_timeout = ib.handshake_timeout or 0
    s.idle_timeout = ib.idle_timeout or 0
    s.max_connections = ib.max_connections or 0
    s.max_sessions = ib.max_sessions or 0
    s.proxy_protocol = ib.proxy_protocol and 1 or 0
    s.where = ib.where
    check(C.lr_conf_inbound(conf, s), ib.where)
    if ib.tls then
      for _, cert in ipairs(ib.tls.certs) do
        check(C.lr_conf_inbound_tls_cert(conf, cert.cert, cert.key), ib.where)
      end
      for _, a in ipairs(ib.tls.alpn) do check(C.lr_conf_inbound_alpn(conf, a), ib.where) end
    end
    if ib.transport then check(C.lr_conf_inbound_transport(conf, transport_struct(ib.transport)), ib.where) end
    if ib.fallback then
      check(C.lr_conf_inbound_fallback(conf, ib.fallback.host, ib.fallback.port), ib.where)
    end
    for _, c in ipairs(ib.trusted_proxies or {}) do
      check(C.lr_conf_inbound_trusted(conf, c.ip, #c.ip, c.bits), ib.where)
    end
    for _, a in ipairs(ib.accounts or {}) do
      check(C.lr_conf_inbound_account(conf, a.user, a.pass), ib.where)
    end
    for _, email in ipairs(ib.users or {}) do
      check(C.lr_conf_inbound_user(conf, email), ib.where)
    end
    if ib.network then -- tunnel, tproxy, redirect
      local to = ib.to or {}
      check(C.lr_conf_inbound_tunnel(conf, to.host, to.port or 0, ib.network.tcp and 1 or 0,
                                     ib.network.udp and 1 or 0, ib.udp_timeout or 0), ib.where)
    end
    local dp = ib.dynamic_port
    if dp then
      check(C.lr_conf_inbound_dynamic(conf, dp.port[1], dp.port[2], dp.alter_id or 0,
                                      dp.minutes or 5), ib.where)
    end
  end
  for _, ob in ipairs(cfg.outbounds) do
    local s = ffi.new("struct lr_conf_outbound")
    s.tag, s.type, s.where = ob.tag, ob.type, ob.where
    if ob.server then s.server_host, s.server_port = ob.server.host, ob.server.port end
    s.id = ob.id
    s.alter_id = ob.alter_id or 0
    s.security = ob.security
    s.masking = ob.masking == false and 0 or 1
    s.padding = ob.padding == false and 0 or 1
    s.authenticated_length = ob.authenticated_length and 1 or 0
    s.udp = ob.udp == false and 0 or 1
    s.connect_timeout = ob.connect_timeout or 0
    s.domain_strategy = ob.domain_strategy
    check(C.lr_conf_outbound(conf, s), ob.where)
    if ob.tls then
      local t = ffi.new("struct lr_conf_tls")
      t.server_name, t.ca = ob.tls.server_name, ob.tls.ca
      local pin
      if ob.tls.pinned_sha256 then
        pin = ob.tls.pinned_sha256:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
        t.pinned_sha256 = pin
      end
      check(C.lr_conf_outbound_tls(conf, t), ob.where)
      for _, a in ipairs(ob.tls.alpn or {}) do check(C.lr_conf_outbound_alpn(conf, a), ob.where) end
    end
    if ob.transport then check(C.lr_conf_outbound_transport(conf, transport_struct(ob.transport)), ob.where) end
    if ob.mux then check(C.lr_conf_outbound_mux(conf, ob.mux.concurrency), ob.where) end
    if ob.xudp then check(C.lr_conf_outbound_xudp(conf, 1), ob.where) end
  end
  local function each(kind, list, where)
    if not list then return end
    for _, v in ipairs(list) do check(C.lr_conf_route_string(conf, kind, v), where) end
  end
  for _, r in ipairs(cfg.routes) do
    local w = r.where
    check(C.lr_conf_route(conf, r.to, w), w)
    -- a plain name in `domain` is a substring, as in v2ray; full: is exact
    each(C.LR_ROUTE_DOMAIN_KEYWORD, r.domain, w)
    each(C.LR_ROUTE_DOMAIN, r.domain_full, w)
    each(C.LR_ROUTE_DOMAIN_REGEX, r.domain_regexp, w)
    each(C.LR_ROUTE_DOMAIN_SUFFIX, r.domain_suffix, w)
    each(C.LR_ROUTE_DOMAIN_KEYWORD, r.domain_keyword, w)
    each(C.LR_ROUTE_USER, r.user, w)
    each(C.LR_ROUTE_INBOUND, r.inbound, w)
    for _, c in ipairs(r.ip_cidr or {}) do
      check(C.lr_conf_route_cidr(conf, c.ip, #c.ip, c.bits), w)
    end
    for _, p in ipairs(r.port or {}) do
      check(C.lr_conf_route_ports(conf, p[1], p[2]), w)
    end
    for _, g in ipairs(r.geosite or {}) do check(C.lr_conf_route_geosite(conf, g.file, g.list), w) end
    for _, g in ipairs(r.geoip or {}) do
      check(C.lr_conf_route_geoip(conf, g.file, g.code, g.reverse and 1 or 0), w)
    end
    for _, c in ipairs(r.source or {}) do
      check(C.lr_conf_route_source(conf, c.ip, #c.ip, c.bits), w)
    end
    if r.network then
      local mask = 0
      for net in pairs(r.network) do mask = bit.bor(mask, NETWORKS[net]) end
      check(C.lr_conf_route_network(conf, mask), w)
    end
    if r.protocol then
      local mask = 0
      for _, proto in ipairs(r.protocol) do mask = bit.bor(mask, PROTOCOLS[proto]) end
      check(C.lr_conf_route_protocol(conf, mask), w)
    end
  end
  check(C.lr_conf_default(conf, cfg.default_outbound))
  check(C.lr_conf_route_strategy(conf, cfg.domain_strategy == "ip_if_non_match" and C.LR_ROUTE_IP_IF_NON_MATCH
    or cfg.domain_strategy == "ip_on_demand" and C.LR_ROUTE_IP_ON_DEMAND or C.LR_ROUTE_AS_IS))
  for _, sp in ipairs(staged) do check(C.lr_conf_policy(conf, sp[1], sp[2])) end
end

---------------------------------------------------------------------------
-- luaray.shared and luaray.policy: thin wrappers over C state that lives
-- in the daemon, not in this Lua state, so it survives reloads.

local kbuf = ffi.new("char[?]", 65536)
local vlen = ffi.new("size_t[1]")
local isnum = ffi.new("int32_t[1]")
local dres = ffi.new("double[1]")

local shared = {}

-- Keys that are strings (every hot call) skip this helper: a helper called
-- once per event can win call_hook's hashed hot counter and, if its trace
-- aborts, keep the wrapper interpreted (see "Optional C strings" below).
local function key(k)
  if type(k) ~= "string" and type(k) ~= "number" then
    error("luaray.shared: key must be a string or number", 3)
  end
  return tostring(k)
end

function shared.get(k)
  if type(k) ~= "string" then k = key(k) end
  local rc = C.lr_shared_get(k, #k, kbuf, 65536, vlen, isnum)
  if rc ~= 0 then return nil end
  local v = ffi.string(kbuf, vlen[0])
  -- no tail call: the caller is a hook, which the JIT does not compile,
  -- and a trace may not return into it
  if isnum[0] == 1 then
    local n = tonumber(v)
    return n
  end
  return v
end

function shared.set(k, v)
  if type(k) ~= "string" then k = key(k) end
  if v == nil then C.lr_shared_delete(k, #k); return true end
  if type(v) == "number" then
    C.lr_shared_delete(k, #k)
    C.lr_shared_incr(k, #k, v, dres)
    return true
  end
  if type(v) ~= "string" then error("luaray.shared.set: value must be a string or number", 2) end
  local rc = C.lr_shared_set(k, #k, v, #v)
  if rc ~= 0 then return nil, ffi.string(C.lr_strerror(rc)) end
  return true
end

function shared.incr(k, n)
  if type(k) ~= "string" then k = key(k) end
  local rc = C.lr_shared_incr(k, #k, n or 1, dres)
  if rc ~= 0 then return nil, "luaray.shared.incr: key holds a string" end
  return dres[0]
end

function shared.delete(k)
  if type(k) ~= "string" then k = key(k) end
  C.lr_shared_delete(k, #k)
  return true
end

function shared.count() return tonumber(C.lr_shared_count()) end

local pol = ffi.new("struct lr_policy")
local use = ffi.new("struct lr_policy_usage")


-- luaray.policy(email, { rate =, burst =, quota =, max_conns =, max_ips = })
local function policy(email, t)
  if type(email) ~= "string" then error("luaray.policy: email must be a string", 2) end
  t = t or {}
  for k in pairs(t) do
    if k ~= "rate" and k ~= "burst" and k ~= "quota" and k ~= "max_conns" and k ~= "max_ips" then
      error("luaray.policy: unknown key '" .. tostring(k) .. "'", 2)
    end
  end
  pol.rate, pol.burst, pol.quota = t.rate or 0, t.burst or 0, t.quota or 0
  pol.max_conns, pol.max_ips = t.max_conns or 0, t.max_ips or 0
  if loading then
    staged[#staged + 1] = { email, ffi.new("struct lr_policy", pol) }
    return true
  end
  return C.lr_policy_set(email, pol) == 0
end

-- luaray.usage(email) -> { bytes =, conns =, ips = } or nil
local function usage(email)
  if C.lr_policy_usage(email, use) ~= 0 then return nil end
  return { bytes = use.bytes, conns = use.conns, ips = use.ips }
end

local function reset(email) return C.lr_policy_reset(email) == 0 end

-- luaray.users (design.md 7): users added or removed at run time, on
-- every worker, kept across reloads until removed (a restart forgets them).
--   add { id = "uuid", email = "...", level = 0, alter_id = 0, inbound = "tag" or nil }
--   remove(email [, inbound]) -- closes the user's open connections too
--   list() -> { { email =, inbound = "tag" or nil, level =, alter_id =, id =,
--                removed = bool }, ... }: the changes made at run time
-- add and remove return true, or nil and the reason; they take effect once
-- every worker has rebuilt its user tables (well under a second).
local users
do
  local errbuf = ffi.new("char[512]")
  local function run_time(what)
    if loading then
      error("luaray.users." .. what .. " works at run time (a hook); a config declares "
            .. "users with luaray.user", 3)
    end
  end
  local function add(t)
    run_time("add")
    if type(t) ~= "table" then error("luaray.users.add: a table { id =, email = } expected", 2) end
    if type(t.id) ~= "string" or type(t.email) ~= "string" then
      error("luaray.users.add: id and email must be strings", 2)
    end
    if t.inbound ~= nil and type(t.inbound) ~= "string" then
      error("luaray.users.add: inbound must be a tag (a string)", 2)
    end
    local level, alter = t.level or 0, t.alter_id or 0
    if type(level) ~= "number" or level < 0 or level > 255 or level % 1 ~= 0 or
       type(alter) ~= "number" or alter < 0 or alter > 65535 or alter % 1 ~= 0 then
      error("luaray.users.add: level must be 0..255 and alter_id 0..65535", 2)
    end
    if C.lr_live_user_add(t.inbound, t.id, t.email, level, alter, errbuf, 512) ~= 0 then
      return nil, ffi.string(errbuf)
    end
    return true
  end
  local function remove(email, inbound)
    run_time("remove")
    if type(email) ~= "string" or (inbound ~= nil and type(inbound) ~= "string") then
      error("luaray.users.remove: an email (and optionally an inbound tag) expected", 2)
    end
    if C.lr_live_user_remove(inbound, email, errbuf, 512) ~= 0 then
      return nil, ffi.string(errbuf)
    end
    return true
  end
  local function list()
    local cap, n, buf = 4096
    for _ = 1, 8 do
      buf = ffi.new("char[?]", cap)
      n = tonumber(C.lr_live_user_list(buf, cap))
      if n <= cap then break end
      cap = n * 2
    end
    local out = {}
    for kind, email, ib, level, alter, id in
        ffi.string(buf, math.min(n, cap)):gmatch("(%a+)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)\t([^\n]*)\n") do
      out[#out + 1] = { email = email, inbound = ib ~= "*" and ib or nil, level = tonumber(level),
                        alter_id = tonumber(alter), id = id ~= "-" and id or nil,
                        removed = kind == "removed" }
    end
    return out
  end
  users = setmetatable({}, { __index = { add = add, remove = remove, list = list },
                             __newindex = function() error("luaray.users is read-only", 2) end })
end

-- luaray.stats (design.md 7): the traffic counters, named as v2ray names
-- them.  get(name [, reset]) -> number (0 when there is no such counter);
-- query(pattern [, reset]) -> { [name] = number } for every name that
-- contains pattern ("" or nil: all)
local stats
do
  local found = ffi.new("int32_t[1]")
  local cap, buf = 16384, nil
  local function get(name, rst)
    if type(name) ~= "string" then error("luaray.stats.get: a counter name expected", 2) end
    return tonumber(C.lr_stats_get(name, rst and 1 or 0, found))
  end
  local function query(pattern, rst)
    if pattern ~= nil and type(pattern) ~= "string" then
      error("luaray.stats.query: a pattern string expected", 2)
    end
    local n
    for _ = 1, 8 do
      buf = buf or ffi.new("char[?]", cap)
      n = tonumber(C.lr_stats_query(pattern or "", rst and 1 or 0, buf, cap))
      if n <= cap then break end
      cap, buf = n * 2, nil
    end
    local out = {}
    if n > cap then return out end
    for name, v in ffi.string(buf, n):gmatch("([^\t\n]+)\t(%d+)\n") do out[name] = tonumber(v) end
    return out
  end
  stats = setmetatable({}, { __index = { get = get, query = query },
                             __newindex = function() error("luaray.stats is read-only", 2) end })
end

-- luaray.online([email]) -> { [email] = { "ip", ... } }: the source
-- addresses with connections open now, per user (all users, or one).
local online
do
  local cap, buf = 16384, nil
  function online(email)
    if email ~= nil and type(email) ~= "string" then
      error("luaray.online: an email (or nothing) expected", 2)
    end
    local n
    for _ = 1, 8 do
      buf = buf or ffi.new("char[?]", cap)
      n = tonumber(C.lr_policy_online(email, buf, cap))
      if n <= cap then break end
      cap, buf = n * 2, nil
    end
    local out = {}
    if n > cap then return out end
    for e, ip in ffi.string(buf, n):gmatch("([^\t\n]+)\t([^\n]+)\n") do
      local l = out[e]
      if not l then l = {}; out[e] = l end
      l[#l + 1] = ip
    end
    return out
  end
end

-- The control plane's words (lua/luaray/control.lua, design.md 7).
local http = setmetatable({}, { __index = { request = control.request },
                                __newindex = function() error("luaray.http is read-only", 2) end })

-- luaray.log_line(level, text): a line in the daemon's log (level "debug",
-- "info", "warn" or "error"), from a hook or a control coroutine.
local function log_line(level, text)
  local l = LEVELS[level]
  if not l then error("luaray.log_line: level must be debug, info, warn or error", 2) end
  C.lr_ctl_log(l, tostring(text))
end

-- The run-time fields of `luaray` (opts.luaray of config.load).
local function run_time_words()
  return { shared = shared, policy = policy, usage = usage, reset_usage = reset,
           stats = stats, users = users, online = online, log_line = log_line,
           every = control.every, spawn = control.spawn, sleep = control.sleep,
           http = http, now = control.now, json = require "luaray.json",
           cluster_call = control.redis_call }
end

-- Called by core/script/bridge.c with a struct lr_ctl_event *.
M.control_event = control.event

---------------------------------------------------------------------------
-- Hooks

-- hook name -> enum lr_hook_kind, and back (ctx.kind)
local HOOK_KINDS = { accept = C.LR_HOOK_ACCEPT, auth = C.LR_HOOK_AUTH, route = C.LR_HOOK_ROUTE,
                     connect = C.LR_HOOK_CONNECT, close = C.LR_HOOK_CLOSE, reload = C.LR_HOOK_RELOAD }
local HOOK_NAMES = {}
for name, kind in pairs(HOOK_KINDS) do HOOK_NAMES[kind] = name end
local hooks = {}

-- the sizes of the hook context's answer buffers
local OUT_TAG_SIZE, OUT_REASON_SIZE
do
  local ctx = ffi.new("struct lr_hook_ctx")
  OUT_TAG_SIZE, OUT_REASON_SIZE = ffi.sizeof(ctx.out_tag), ffi.sizeof(ctx.out_reason)
end

-- Budget per hook call (and per config load).  In the daemon it is
-- enforced in C (core/script/bridge.c, module "luaray.budget"): a count
-- hook set by this thread, a watchdog thread for the wall clock, budgeted
-- string/table functions and a C-stack guard; an over-budget run is
-- poisoned (the error is raised again at every instruction) and unwinds
-- to C, which reports it.  Under plain LuaJIT (specs that load this
-- module through the FFI) a count hook with a clock stands in.
-- budgeted() only brackets the hook function itself, so call_hook stays
-- compiled (LuaJIT does not start traces while a count hook is set).
local BUDGET_MSG = "luaray: hook exceeded its budget"
M.BUDGET_MSG = BUDGET_MSG
M.budget = { instructions = 50000000, seconds = 0.25, load_seconds = 5 }

local hook_begin, hook_end, load_begin, load_end, set_budget
if package.preload["luaray.budget"] then
  local cb = require "luaray.budget"
  hook_begin, hook_end, load_begin, load_end = cb.hook_begin, cb.hook_end, cb.load_begin, cb.load_end
  set_budget = cb.set
  M.budget = { instructions = cb.hook_instructions, seconds = cb.hook_seconds,
               load_seconds = cb.load_seconds }
else
  pcall(ffi.cdef, [[
    typedef struct { long tv_sec; long tv_nsec; } lr_timespec_t;
    int clock_gettime(int clk, lr_timespec_t *ts);
  ]])
  local ts = ffi.new("lr_timespec_t")
  local function now()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
  local count, deadline, max_count = 0, 0, 0
  local function on_count()
    count = count + 1
    if count > max_count or now() > deadline then
      error(BUDGET_MSG, 2)
    end
  end
  local function on_load_count()
    if now() > deadline then error("luaray: config exceeded its budget", 2) end
  end
  hook_begin = function()
    count = 0
    max_count = M.budget.instructions / 1000
    deadline = now() + M.budget.seconds
    debug.sethook(on_count, "", 1000)
  end
  load_begin = function()
    deadline = now() + M.budget.load_seconds
    debug.sethook(on_load_count, "", 1000)
  end
  hook_end = function() debug.sethook() end
  load_end = hook_end
  set_budget = function(seconds, instructions)
    M.budget.seconds, M.budget.instructions = seconds, instructions
  end
end

-- An error object or a reason that is not a string becomes one inside
-- the budget (a __tostring can loop too).
local function to_text(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "(error object is a " .. type(v) .. " value)"
end

local function budgeted(fn, a, b)
  hook_begin()
  local ok, r1, r2 = pcall(fn, a, b)
  if not ok then
    if type(r1) ~= "string" then r1 = to_text(r1) end
  elseif r2 ~= nil and type(r2) ~= "string" and type(r2) ~= "number" then
    r2 = to_text(r2)   -- accept/auth: the refusal reason
  end
  hook_end()
  return ok, r1, r2
end

-- Optional C strings are read inline (p ~= nil and ffi.string(p) or nil)
-- rather than through a helper: a tiny helper called several times per
-- event competes with call_hook for LuaJIT's address-hashed hot counters,
-- and its root traces abort on the return into call_hook, which could keep
-- call_hook itself from ever being compiled.

local function copy_out(dst, size, s)
  s = tostring(s)
  if #s >= size then s = s:sub(1, size - 1) end
  ffi.copy(dst, s)
end

-- Called by core/script/bridge.c with a struct lr_hook_ctx *.
function M.call_hook(ptr)
  local ctx = ffi.cast("struct lr_hook_ctx *", ptr)
  local name = HOOK_NAMES[ctx.kind]
  local fn = hooks[name]
  if not fn then return end
  local ok, r1, r2
  if name == "reload" then
    ok, r1, r2 = budgeted(fn, tonumber(ctx.generation))
  else
    local src_ip = ctx.src_ip ~= nil and ffi.string(ctx.src_ip) or nil
    local t = {
      id = tonumber(ctx.id),
      generation = tonumber(ctx.generation),
      src = { ip = src_ip, port = ctx.src_port },
      -- the TCP peer: C passes src's own string when they are the same
      peer = { ip = (ctx.peer_ip == ctx.src_ip and src_ip
                     or (ctx.peer_ip ~= nil and ffi.string(ctx.peer_ip) or nil)),
               port = ctx.peer_port },
      inbound = (ctx.inbound ~= nil and ffi.string(ctx.inbound) or nil),
      network = (ctx.network ~= nil and ffi.string(ctx.network) or nil),
      transport = (ctx.transport ~= nil and ffi.string(ctx.transport) or nil),
    }
    if ctx.tls ~= 0 then
      t.tls = { sni = ctx.tls_sni ~= nil and ffi.string(ctx.tls_sni) or nil }
    end
    if ctx.user_email ~= nil then
      t.user = { email = ffi.string(ctx.user_email), level = ctx.user_level }
    end
    if ctx.dst_host ~= nil then
      t.dst = { host = ffi.string(ctx.dst_host), port = ctx.dst_port }
    end
    if ctx.outbound ~= nil then t.outbound = ffi.string(ctx.outbound) end
    if ctx.sniffed_host ~= nil or ctx.protocol ~= nil then
      t.sniffed = {
        host = ctx.sniffed_host ~= nil and ffi.string(ctx.sniffed_host) or nil,
        protocol = ctx.protocol ~= nil and ffi.string(ctx.protocol) or nil,
      }
    end
    if name == "close" then
      ok, r1, r2 = budgeted(fn, t, { up = tonumber(ctx.up), down = tonumber(ctx.down),
                                     duration_ms = ctx.duration_ms,
                                     reason = ctx.reason ~= nil and ffi.string(ctx.reason) or nil })
    else
      ok, r1, r2 = budgeted(fn, t)
    end
  end
  if not ok then
    ctx.verdict = C.LR_VERDICT_ERROR
    copy_out(ctx.out_reason, OUT_REASON_SIZE, r1)
    return
  end
  if name == "accept" or name == "auth" then
    if r1 == false then
      ctx.verdict = C.LR_VERDICT_REFUSE
      copy_out(ctx.out_reason, OUT_REASON_SIZE, r2 or ("refused by the " .. name .. " hook"))
    elseif r1 ~= nil and r1 ~= true then
      ctx.verdict = C.LR_VERDICT_ERROR
      copy_out(ctx.out_reason, OUT_REASON_SIZE, name .. " hook returned " .. type(r1) .. " (want true, false or nil)")
    end
  elseif name == "route" then
    if r1 ~= nil then
      if type(r1) ~= "string" or #r1 == 0 or #r1 >= OUT_TAG_SIZE then
        ctx.verdict = C.LR_VERDICT_ERROR
        copy_out(ctx.out_reason, OUT_REASON_SIZE, "route hook returned " .. type(r1) .. " (want an outbound tag or nil)")
      else
        ctx.verdict = C.LR_VERDICT_ROUTE
        copy_out(ctx.out_tag, OUT_TAG_SIZE, r1)
      end
    end
  end
end

-- load(path or nil, conf lightuserdata, announce) -> true, hook mask | nil, "file:line: msg"
-- (mask: 1 << kind per hook defined, plus C.LR_HOOKS_SNIFFED when config
-- code mentions ctx.sniffed)
function M.load(path, conf_ud, announce)
  local cfg, err, uuid
  -- a v2ray/Xray JSON file: say how to convert it
  local hint = path and require("luaray.convert").json_hint(path)
  if hint then return nil, hint end
  local opts = { luaray = run_time_words() }
  loading, staged = true, {}
  control.loading = true
  if not path then uuid = fresh_uuid() end
  -- the config runs under the load budget (a runaway top level fails the
  -- load like any other error; see budgeted above)
  load_begin()
  if path then
    cfg, err = config.load(path, opts)
  else
    cfg, err = config.load_string(default_text(uuid), "=default", opts)
    if cfg then
      cfg.log_where = DEFAULT_WHERE
      for _, list in ipairs { cfg.users, cfg.inbounds, cfg.outbounds, cfg.routes } do
        for _, item in ipairs(list) do item.where = DEFAULT_WHERE end
      end
    end
  end
  load_end()
  loading = false
  control.loading = false
  if not cfg then return nil, err end
  set_budget(cfg.budget.seconds, cfg.budget.instructions)
  local ok, e = pcall(apply, cfg, ffi.cast("struct lr_conf *", conf_ud))
  if not ok then return nil, tostring(e) end
  hooks = cfg.hooks or {}
  local mask = 0
  for name in pairs(hooks) do mask = bit.bor(mask, bit.lshift(1, HOOK_KINDS[name])) end
  if cfg.sniffed_used then mask = bit.bor(mask, C.LR_HOOKS_SNIFFED) end
  if announce and not path then
    local link = require "luaray.link"
    local p = default_ports
    banner = table.concat {
      "luaray default configuration\n",
      "  user id:    ", uuid, "\n",
      "  share link: ", link.vmess_link(cfg.users[1], "127.0.0.1", p[1], {}), "\n",
      ("  vmess  127.0.0.1:%d\n  socks5 127.0.0.1:%d\n  http   127.0.0.1:%d\n"):format(p[1], p[2], p[3]) }
  end
  return true, mask
end

-- announce(): the embedded default's UUID, share link and addresses, once
-- its listeners are open (main.c calls it after the commit).
function M.announce()
  if banner then
    -- in one write, so that whoever reads the output never sees half of it
    io.stdout:setvbuf("full")
    io.stdout:write(banner)
    io.stdout:flush()
    io.stdout:setvbuf("line")
    banner = nil
  end
  return true
end

-- print_default(): the embedded default as a config file (with the ports
-- of --ports), with a fresh UUID: `luaray -c` runs it as it is.
function M.print_default()
  io.stdout:write("-- luaray's embedded default config (what `luaray` runs without -c).\n",
    "-- The UUID here is a fresh one; `luaray` itself makes another at each start.\n",
    default_text(fresh_uuid()))
  io.stdout:flush()
  return true
end

-- luajit_version(): the LuaJIT this state runs on ("LuaJIT 2.1.0-beta3").
function M.luajit_version()
  return true, jit and jit.version or _VERSION
end

-- A listen host that means "every address" (0.0.0.0, ::): no client can
-- dial it.
local function wildcard(h)
  return h == "0.0.0.0" or (h:find(":", 1, true) and h:match("^[0:]+$")) ~= nil
end

-- links(path, host) prints one vmess:// link per user of each VMess inbound.
-- Without host, an inbound listening on a wildcard address is an error
-- (the link needs the address clients dial).  With several VMess inbounds
-- each link is named "email (inbound tag)", so a client that imports them
-- all can tell them apart; with one, just the email.
function M.links(path, host)
  local hint = require("luaray.convert").json_hint(path)
  if hint then return nil, hint end
  load_begin()
  control.loading = true
  local cfg, err = config.load(path, { luaray = run_time_words() })
  control.loading = false
  load_end()
  if not cfg then return nil, err end
  local link = require "luaray.link"
  local vmess = {}
  for _, ib in ipairs(cfg.inbounds) do
    if ib.type == "vmess" then vmess[#vmess + 1] = ib end
  end
  local out = {}
  for _, ib in ipairs(vmess) do
    local allowed
    if ib.users then
      allowed = {}
      for _, e in ipairs(ib.users) do allowed[e] = true end
    end
    local h = host or ib.listen.host
    if wildcard(h) then
      return nil, ("%s: inbound '%s' listens on %s: give the address clients dial with -H HOST")
        :format(ib.where, ib.tag, h:find(":", 1, true) and "[" .. h .. "]" or h)
    end
    for _, u in ipairs(cfg.users) do
      if not allowed or allowed[u.email] then
        local name = #vmess > 1 and ("%s (%s)"):format(u.email, ib.tag) or u.email
        out[#out + 1] = link.vmess_link(u, h, ib.listen.port,
                                        { ps = name, transport = ib.transport, tls = ib.tls })
      end
    end
  end
  if #out == 0 then return nil, path .. ": no VMess inbound with users" end
  io.stdout:write(table.concat(out, "\n"), "\n")
  return true
end

-- convert(path): `luaray convert FILE.json` (path "-": standard input)
-- writes the Lua config to stdout; the count of what was not converted
-- goes to stderr.
function M.convert(path)
  local text, f, e
  if path == "-" then
    text = io.stdin:read("*a")
  else
    f, e = io.open(path, "rb")
    if not f then return nil, "cannot open " .. tostring(e) end
    text, e = f:read("*a")
    f:close()
    if not text then return nil, path .. ": cannot read: " .. tostring(e) end
  end
  local lua, n = require("luaray.convert").convert(text, path == "-" and "stdin" or path)
  if not lua then return nil, n end
  io.stdout:write(lua)
  io.stdout:flush()
  if n > 0 then
    io.stderr:write(("luaray convert: %d setting%s not converted: see the \"not converted\" " ..
                     "comments in the output\n"):format(n, n == 1 and "" or "s"))
  end
  return true
end

-- import(link): `luaray import 'vmess://...'`: a client config on stdout.
function M.import(s)
  local lua, err = require("luaray.convert").import(s)
  if not lua then return nil, err end
  io.stdout:write(lua)
  io.stdout:flush()
  return true
end

return M
