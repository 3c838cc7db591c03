-- A VMess node of a V2board / Xboard panel, written in Lua: it speaks the
-- panel's "UniProxy" node API as XrayR and V2bX do.
--
--   V2BOARD_API=https://panel.example.com V2BOARD_TOKEN=... V2BOARD_NODE_ID=1 \
--     luaray -c examples/v2board.lua
--
-- What it does, every few seconds, from timers on the main thread
-- (luaray.every; the requests are luaray.http.request, which never blocks
-- the loop):
--
--   * every pull_interval: GET {api}/api/v1/server/UniProxy/config and
--     .../user (?node_type=vmess&node_id=N&token=T), each with the ETag of
--     the last answer in If-None-Match (304: unchanged).  The users are
--     applied as a diff with luaray.users.add / remove: a user the panel
--     dropped is removed (its connections close), a new one added, the
--     others are not touched (their connections go on).  speed_limit
--     (Mbit/s) becomes luaray.policy's rate (bytes/s, both directions
--     together) and device_limit its max_ips (source addresses at once).
--   * every push_interval: POST .../push with the traffic of each user
--     since the last push, { "<user id>": [upload, download], ... } (bytes,
--     from luaray.stats.query("user>>>"): what each counter gained since it
--     was last read), and POST .../alive with the source addresses each user has
--     connections from now, { "<user id>": ["ip", ...] } (luaray.online()).
--
-- Users are named "<panel user id>@v2board" (the email luaray keys users,
-- counters and policies by, and that access lines show; never the UUID).
-- A user whose UUID changes in the panel is removed, and added again with
-- the new one at the next pull.
--
-- Nothing is lost when the panel goes away: the traffic read from the
-- counters is added to pending totals kept in luaray.shared (C memory, kept
-- across reloads), a push sends the pending totals, and only an answer of
-- 200 takes what it sent off them; a failed push (refused, a timeout, an
-- error status) keeps them for the next one.  Nothing is counted twice
-- either, except in the case no client of this API can tell apart: the
-- panel took a push but its answer never came (a timeout, or a SIGHUP
-- while the push was in flight): that push is sent again.
--
-- The listening port and the transport are this file's (below): a config
-- declares its inbounds when it loads, so they cannot follow the panel at
-- run time.  The node logs a warning when the panel's server_port or
-- network differs.  One user is declared here because a VMess inbound needs
-- one; nobody can use it (its traffic goes to a blackhole).  A node with
-- many users may need a larger budget for the pull (luaray.budget): 10,000
-- users decode in about 50 ms, inside the default 0.25 s.  Warnings (the
-- panel unreachable, a push kept for later) go to the daemon's log, at most
-- once a minute each.
luaray.log { level = "info", access = true }

-- Settings: the environment, or the values after `or`.
local PANEL = {
  api = os.getenv("V2BOARD_API") or "https://panel.example.com",
  token = os.getenv("V2BOARD_TOKEN") or "change-me",
  node_id = tonumber(os.getenv("V2BOARD_NODE_ID") or "1"),
  listen = os.getenv("V2BOARD_LISTEN") or "0.0.0.0:10086",
  ca = os.getenv("V2BOARD_CA"),           -- a PEM file to trust besides the system store
  -- destinations on loopback and private networks ("1": allowed; for a
  -- node tried out on one machine)
  allow_private = os.getenv("V2BOARD_ALLOW_PRIVATE") == "1",
  timeout = 10,                           -- seconds per request
}
local TAG = "vmess-in"
local SUFFIX = "@v2board"
local PLACEHOLDER = "placeholder" .. SUFFIX

luaray.user { id = "00000000-0000-4000-8000-000000000000", email = PLACEHOLDER }
luaray.inbound(TAG) { type = "vmess", listen = PANEL.listen, allow_private = PANEL.allow_private }
luaray.outbound "direct" { type = "direct" }
luaray.outbound "block" { type = "blackhole" }
luaray.route { user = { PLACEHOLDER }, to = "block" }
luaray.route { default = "direct" }

local json, shared = luaray.json, luaray.shared

---------------------------------------------------------------------------
-- The panel's API

local function url(path)
  return ("%s/api/v1/server/UniProxy/%s?node_type=vmess&node_id=%d&token=%s")
    :format(PANEL.api:gsub("/+$", ""), path, PANEL.node_id, PANEL.token)
end

-- One request -> the response (any status), or nil and why.
local function call(method, path, body, etag)
  local headers = { ["accept"] = "application/json" }
  if body then headers["content-type"] = "application/json" end
  if etag then headers["if-none-match"] = etag end
  return luaray.http.request { method = method, url = url(path), headers = headers, body = body,
                               timeout = PANEL.timeout, ca = PANEL.ca }
end

-- A warning at most once a minute per kind (the panel may be down for long).
local said = {}
local function warn(kind, msg)
  local now = luaray.now()
  if not said[kind] or now - said[kind] >= 60 then
    said[kind] = now
    luaray.log_line("warn", "v2board: " .. msg)
  end
end

local function quiet(kind) said[kind] = nil end

---------------------------------------------------------------------------
-- Pull: node config and users

local pull_interval, push_interval = 60, 60
local config_etag, users_etag
local known = {}      -- panel user id -> { uuid =, speed =, device = }

-- The users added before (this state may be new after a SIGHUP; live users
-- stay across it).
for _, u in ipairs(luaray.users.list()) do
  local uid = u.email:match("^(%d+)" .. SUFFIX .. "$")
  if uid and not u.removed then known[tonumber(uid)] = { uuid = u.id } end
end

local function seconds(v, default)
  v = tonumber(v)
  if not v or v < 1 then return default end
  return v
end

local function pull_config()
  local r, err = call("GET", "config", nil, config_etag)
  if not r then return warn("config", "pull config: " .. err) end
  if r.status == 304 then return end
  if r.status ~= 200 then return warn("config", "pull config: status " .. r.status) end
  local c, jerr = json.decode(r.body)
  if type(c) ~= "table" then return warn("config", "pull config: " .. tostring(jerr)) end
  quiet("config")
  config_etag = r.headers["etag"]
  local base = type(c.base_config) == "table" and c.base_config or {}
  pull_interval = seconds(base.pull_interval, 60)
  push_interval = seconds(base.push_interval, 60)
  local port = tonumber(PANEL.listen:match(":(%d+)$"))
  if tonumber(c.server_port) and tonumber(c.server_port) ~= port then
    warn("port", ("the panel says server_port %s; this node listens on %s (set V2BOARD_LISTEN)")
         :format(tostring(c.server_port), PANEL.listen))
  end
  if c.network and c.network ~= "tcp" then
    warn("network", ("the panel says network %q; this node serves VMess over TCP"):format(c.network))
  end
end

local function policy_of(u)
  local speed, device = tonumber(u.speed_limit) or 0, tonumber(u.device_limit) or 0
  return speed, device
end

-- Applies the panel's list; false when something must be tried again (a
-- user whose removal is not in force yet, an add that failed), so the next
-- pull asks for the whole list again rather than hearing 304.
local function apply_users(list)
  local want = {}
  for _, u in ipairs(list) do
    local id = tonumber(u.id)
    if id and type(u.uuid) == "string" then want[id] = u end
  end
  local added, removed, complete, gone = 0, 0, true, {}
  -- gone, or a new UUID: removed now (a changed one is added at a later
  -- pull, once the removal is in force)
  for id, k in pairs(known) do
    local w = want[id]
    if not w or (k.uuid and w.uuid:lower() ~= k.uuid) then
      local ok, err = luaray.users.remove(id .. SUFFIX, TAG)
      if ok or tostring(err):find("no user", 1, true) then
        known[id] = nil
        gone[id] = true
        removed = removed + 1
      else
        complete = false
        warn("remove", "remove user " .. id .. ": " .. tostring(err))
      end
    end
  end
  for id, u in pairs(want) do
    local email = id .. SUFFIX
    local speed, device = policy_of(u)
    local k = known[id]
    if not k then
      if gone[id] then
        complete = false
      else
        local ok, err = luaray.users.add { id = u.uuid, email = email, inbound = TAG }
        if ok then
          k = { uuid = u.uuid:lower() }
          known[id] = k
          added = added + 1
        else
          complete = false
          warn("add", ("add user %d: %s"):format(id, tostring(err)))
        end
      end
    end
    if k and (k.speed ~= speed or k.device ~= device) then
      luaray.policy(email, { rate = speed * 1000000 / 8, max_ips = math.floor(device) })
      k.speed, k.device = speed, device
    end
  end
  if added + removed > 0 then
    luaray.log_line("info", ("v2board: users: %d added, %d removed"):format(added, removed))
  end
  return complete
end

local function pull_users()
  local r, err = call("GET", "user", nil, users_etag)
  if not r then return warn("users", "pull users: " .. err) end
  if r.status == 304 then return end
  if r.status ~= 200 then return warn("users", "pull users: status " .. r.status) end
  local body, jerr = json.decode(r.body)
  if type(body) ~= "table" or type(body.users) ~= "table" then
    return warn("users", "pull users: " .. tostring(jerr or "no users list"))
  end
  quiet("users")
  if apply_users(body.users) then users_etag = r.headers["etag"] else users_etag = nil end
end

---------------------------------------------------------------------------
-- Push: traffic and online addresses
--
-- Pending totals in luaray.shared: "v2board:up:<id>", "v2board:down:<id>",
-- and the index "v2board:pending" (",<id>,<id>,") of the ids that have some;
-- and per counter the value it had when last read ("v2board:seen:<name>"):
-- the counters are read, never reset, so /metrics and the v2ray API still
-- see totals that only grow.

local P_INDEX = "v2board:pending"

local function pending_add(id, up, down)
  shared.incr("v2board:up:" .. id, up)
  shared.incr("v2board:down:" .. id, down)
  local index = shared.get(P_INDEX) or ","
  if not index:find("," .. id .. ",", 1, true) then shared.set(P_INDEX, index .. id .. ",") end
end

-- What the counters gained since they were last read, into the pending
-- totals.
local function collect()
  local per = {}
  for name, total in pairs(luaray.stats.query("user>>>")) do
    local id, dir = name:match("^user>>>(%d+)" .. SUFFIX .. ">>>traffic>>>(%a+)$")
    if id then
      local key = "v2board:seen:" .. name
      local seen = shared.get(key) or 0
      -- (a counter reset by someone else starts again from 0)
      local bytes = total >= seen and total - seen or total
      if bytes > 0 then
        shared.set(key, total)
        local t = per[id] or { 0, 0 }
        per[id] = t
        if dir == "uplink" then t[1] = t[1] + bytes else t[2] = t[2] + bytes end
      end
    end
  end
  for id, t in pairs(per) do pending_add(id, t[1], t[2]) end
end

local function push_traffic()
  collect()
  local sent, n = {}, 0
  for id in (shared.get(P_INDEX) or ""):gmatch("(%d+)") do
    local up = shared.get("v2board:up:" .. id) or 0
    local down = shared.get("v2board:down:" .. id) or 0
    if up > 0 or down > 0 then
      sent[id] = { up, down }
      n = n + 1
    end
  end
  if n == 0 then
    shared.set(P_INDEX, ",")
    return
  end
  local r, err = call("POST", "push", json.encode(sent))
  if not r or r.status ~= 200 then
    return warn("push", ("push: %s; the traffic of %d user(s) kept for the next push")
                :format(r and ("status " .. r.status) or err, n))
  end
  quiet("push")
  -- what was sent comes off the totals; what came meanwhile stays
  local index = ","
  for id, t in pairs(sent) do
    local up = shared.incr("v2board:up:" .. id, -t[1])
    local down = shared.incr("v2board:down:" .. id, -t[2])
    if up > 0 or down > 0 then index = index .. id .. "," end
  end
  shared.set(P_INDEX, index)
end

local function push_alive()
  local alive, n = {}, 0
  for email, ips in pairs(luaray.online()) do
    local id = email:match("^(%d+)" .. SUFFIX .. "$")
    if id then
      alive[id] = ips
      n = n + 1
    end
  end
  if n == 0 then return end
  local r, err = call("POST", "alive", json.encode(alive))
  if not r or r.status ~= 200 then
    return warn("alive", "alive: " .. (r and ("status " .. r.status) or err))
  end
  quiet("alive")
end

---------------------------------------------------------------------------
-- The schedule: two timers, each checking its own interval every second
-- (a run that waits on the panel makes its timer skip ticks, not pile up;
-- an error in one run is logged and the next tick tries again).

local last_pull, last_push = -math.huge, luaray.now()

luaray.every(1, function()
  if luaray.now() - last_pull < pull_interval then return end
  last_pull = luaray.now()
  pull_config()
  pull_users()
end, { first = 0 })

luaray.every(1, function()
  if luaray.now() - last_push < push_interval then return end
  last_push = luaray.now()
  push_traffic()
  push_alive()
end)
