-- The daemon's Lua side: loads a config script (lua/luaray/config.lua) and
-- declares its normalized table to C through the FFI (lr_conf_* in api.h).
-- Called only from core/script/bridge.c.
local ffi = require "ffi"
require "luaray.cdef"
local C = ffi.C
local config = require "luaray.config"

local M = {}

local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }

-- The embedded default (design.md 1): a VMess server on 127.0.0.1:10086
-- with one fresh user, and SOCKS5/HTTP inbounds on loopback that reach it
-- through a VMess outbound.
local DEFAULT = [[
luaray.log { level = "info", access = true }
luaray.user { id = "%s", email = "default@luaray" }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:10086",
                            allow_private = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080", udp = true }
luaray.inbound "http-in"  { type = "http",  listen = "127.0.0.1:8080" }
luaray.outbound "direct" { type = "direct" }
luaray.outbound "local-vmess" { type = "vmess", server = "127.0.0.1:10086",
                                id = "%s", security = "aes-128-gcm" }
luaray.route { inbound = { "socks-in", "http-in" }, to = "local-vmess" }
luaray.route { default = "direct" }
]]

local function fresh_uuid()
  local id = ffi.new("uint8_t[16]")
  local s = ffi.new("char[37]")
  C.lr_uuid_random(id)
  C.lr_uuid_format(id, s)
  return ffi.string(s)
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
  check(C.lr_conf_log(conf, LEVELS[cfg.log.level] or 1, access))
  for _, u in ipairs(cfg.users) do
    check(C.lr_conf_user(conf, u.id, u.email, u.alter_id or 0, u.level or 0), u.where)
  end
  for _, ib in ipairs(cfg.inbounds) do
    local s = ffi.new("struct lr_conf_inbound")
    s.tag, s.type, s.host, s.port = ib.tag, ib.type, ib.listen.host, ib.listen.port
    s.allow_legacy = ib.allow_legacy == false and 0 or 1
    s.allow_private = ib.allow_private and 1 or 0
    s.udp = ib.udp and 1 or 0
    s.handshake_timeout = ib.handshake_timeout or 0
    s.idle_timeout = ib.idle_timeout or 0
    s.max_connections = ib.max_connections or 0
    s.where = ib.where
    check(C.lr_conf_inbound(conf, s), ib.where)
    for _, a in ipairs(ib.accounts or {}) do
      check(C.lr_conf_inbound_account(conf, a.user, a.pass), ib.where)
    end
    for _, email in ipairs(ib.users or {}) do
      check(C.lr_conf_inbound_user(conf, email), ib.where)
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
  end
  for _, r in ipairs(cfg.routes) do
    if r.protocol then
      error(r.where .. ": route filter 'protocol' needs traffic sniffing, which this version does not do yet", 0)
    end
    check(C.lr_conf_route(conf, r.to, r.where), r.where)
    local function each(kind, list)
      for _, v in ipairs(list or {}) do check(C.lr_conf_route_filter(conf, kind, v), r.where) end
    end
    each("domain", r.domain)
    each("domain_suffix", r.domain_suffix)
    each("domain_keyword", r.domain_keyword)
    each("user", r.user)
    each("inbound", r.inbound)
    for _, c in ipairs(r.ip_cidr or {}) do
      check(C.lr_conf_route_filter(conf, "ip_cidr", c.addr .. "/" .. c.bits), r.where)
    end
    for _, p in ipairs(r.port or {}) do
      check(C.lr_conf_route_filter(conf, "port", p[1] .. "-" .. p[2]), r.where)
    end
    if r.network then
      for net in pairs(r.network) do check(C.lr_conf_route_filter(conf, "network", net), r.where) end
    end
  end
  check(C.lr_conf_default(conf, cfg.default_outbound))
  for name in pairs(cfg.hooks or {}) do
    io.stderr:write(("luaray: warning: hook '%s' is declared but this version does not run hooks yet\n"):format(name))
  end
end

-- load(path or nil, conf lightuserdata, announce) -> true | nil, "file:line: msg"
function M.load(path, conf_ud, announce)
  local cfg, err, uuid
  if path then
    cfg, err = config.load(path)
  else
    uuid = fresh_uuid()
    cfg, err = config.load_string(DEFAULT:format(uuid, uuid), "=default")
  end
  if not cfg then return nil, err end
  local ok, e = pcall(apply, cfg, ffi.cast("struct lr_conf *", conf_ud))
  if not ok then return nil, tostring(e) end
  if announce and not path then
    local link = require "luaray.link"
    io.stdout:write("luaray default configuration\n",
      "  user id:    ", uuid, "\n",
      "  share link: ", link.vmess_link(cfg.users[1], "127.0.0.1", 10086, {}), "\n",
      "  vmess  127.0.0.1:10086\n  socks5 127.0.0.1:1080\n  http   127.0.0.1:8080\n")
    io.stdout:flush()
  end
  return true
end

-- links(path, host) prints one vmess:// link per user of each VMess inbound.
function M.links(path, host)
  local cfg, err = config.load(path)
  if not cfg then return nil, err end
  local link = require "luaray.link"
  local n = 0
  for _, ib in ipairs(cfg.inbounds) do
    if ib.type == "vmess" then
      local allowed
      if ib.users then
        allowed = {}
        for _, e in ipairs(ib.users) do allowed[e] = true end
      end
      local h = host or ib.listen.host
      for _, u in ipairs(cfg.users) do
        if not allowed or allowed[u.email] then
          io.stdout:write(link.vmess_link(u, h, ib.listen.port, {}), "\n")
          n = n + 1
        end
      end
    end
  end
  if n == 0 then return nil, path .. ": no VMess inbound with users" end
  return true
end

return M
