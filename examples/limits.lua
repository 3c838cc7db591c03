-- Per-user limits: rate, concurrent connections, distinct source addresses.
--
--   luaray -c examples/limits.lua
--
-- luaray.policy(email, { rate =, burst =, quota =, max_conns =, max_ips = })
-- sets a user's limits; the C relay enforces them.  Limits and usage belong
-- to the process, not to a config generation: a reload (SIGHUP) that sets
-- new values changes them for every connection, running ones included, and
-- usage is kept.  Only VMess users have policies (they are known by email).
--
--   rate       bytes per second, both directions together (a token bucket
--              shared by all of the user's connections); 0: no limit
--   burst      bucket depth in bytes (default: one second of `rate`)
--   quota      total bytes; at the quota the connection is closed and new
--              ones are refused until luaray.reset_usage(email); 0: none
--   max_conns  connections at once; 0: no limit
--   max_ips    distinct source addresses at once; 0: no limit
--
-- A connection over a limit is refused after the user is known (the VMess
-- header is read, nothing is dialed) and its access line says why.
luaray.log { level = "info", access = true }

local KB, MB = 1000, 1000 * 1000

-- Users and their plans.  alice has the "pro" plan, bob the "basic" one.
local users = {
  { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@example.com", plan = "pro" },
  { id = "b831381d-6324-4d53-ad4f-8cda48b30811", email = "bob@example.com", plan = "basic" },
}

local plans = {
  pro   = { rate = 20 * MB, burst = 2 * MB, max_conns = 64, max_ips = 4 },
  basic = { rate = 1 * MB, burst = 128 * KB, max_conns = 4, max_ips = 1 },
}

for _, u in ipairs(users) do
  luaray.user { id = u.id, email = u.email }
  assert(luaray.policy(u.email, plans[u.plan]), "cannot set the policy of " .. u.email)
end

luaray.inbound "vmess-in" { type = "vmess", listen = "0.0.0.0:10086", allow_private = false }
luaray.outbound "direct" { type = "direct" }

-- Seeing usage from a hook: refuse new connections of a user whose
-- connections are all busy moving bytes, with a clearer reason than the
-- policy's own "too many connections".
luaray.on("auth", function(ctx)
  if not ctx.user then return true end
  local use = luaray.usage(ctx.user.email)    -- { bytes =, conns =, ips = } or nil
  local plan
  for _, u in ipairs(users) do
    if u.email == ctx.user.email then plan = plans[u.plan] end
  end
  if use and plan and use.conns >= plan.max_conns then
    return false, ("%s has %d connections open (plan allows %d)"):format(
      ctx.user.email, use.conns, plan.max_conns)
  end
  return true
end)
