-- A monthly traffic quota counted in Lua: a close hook adds each finished
-- connection's bytes to a per-user counter in luaray.shared, and the auth
-- hook refuses users whose counter has reached their quota.
--
--   luaray -c examples/quota.lua
--
-- luaray.shared is a key/value and counter store in C memory that belongs
-- to the process: it survives every reload (SIGHUP), so the counters keep
-- counting across config changes.  Counters reset when a reload happens in
-- a new month (run `kill -HUP` from cron on the 1st, or just let the next
-- reload do it).
--
-- Bytes are counted when a connection closes, so a single long connection
-- can go past the quota; luaray.policy(email, { quota = N }) (see
-- examples/limits.lua) is the hard limit enforced by the relay itself.
luaray.log { level = "info", access = true }

local GB = 1000 * 1000 * 1000

luaray.user { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@example.com" }
luaray.user { id = "b831381d-6324-4d53-ad4f-8cda48b30811", email = "bob@example.com" }

local QUOTA = {
  ["alice@example.com"] = 100 * GB,
  ["bob@example.com"] = 10 * GB,
}

luaray.inbound "vmess-in" { type = "vmess", listen = "0.0.0.0:10086", allow_private = false }
luaray.outbound "direct" { type = "direct" }

local shared = luaray.shared

local function used_key(email) return "quota:used:" .. email end

-- A new month starts the counters again.  This runs at every load (start
-- and each reload); shared keeps "quota:period" from the previous one.
local period = os.date("!%Y-%m")
if shared.get("quota:period") ~= period then
  for email in pairs(QUOTA) do shared.set(used_key(email), 0) end
  shared.set("quota:period", period)
end

luaray.on("auth", function(ctx)
  local email = ctx.user and ctx.user.email
  local limit = email and QUOTA[email]
  if not limit then return true end        -- not a VMess user, or no quota
  local used = shared.get(used_key(email)) or 0
  if used >= limit then
    return false, ("quota of %d bytes used up (%d)"):format(limit, used)
  end
  return true
end)

luaray.on("close", function(ctx, s)
  local email = ctx.user and ctx.user.email
  if email and QUOTA[email] then
    shared.incr(used_key(email), s.up + s.down)
  end
end)
