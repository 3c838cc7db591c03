-- One node of a fleet: several luaray servers with the same users behind
-- DNS or a load balancer share one Redis (README "Running a fleet").
--
--   luaray -c examples/fleet.lua
--
-- Shared: the replay filter (a request captured at one node and replayed
-- at another is refused like a local replay), and the counts behind
-- max_conns, max_ips and quota (summed over the nodes; luaray.usage shows
-- the sums).  Not shared: rate limits, luaray.shared.  Redis slow or gone:
-- no handshake waits longer than timeout_ms; the node decides with its own
-- state, logs the outage once and reconnects.
luaray.log { level = "info", access = true }

-- every node names the same Redis (an IP literal) and its own `node`
luaray.cluster { redis = "127.0.0.1:6379", node = "node-a", timeout_ms = 50 }

luaray.user { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@example.com" }
luaray.policy("alice@example.com", { max_ips = 2, max_conns = 16, quota = 100e9 })

luaray.inbound "vmess-in" { type = "vmess", listen = "0.0.0.0:10086" }
luaray.outbound "direct" { type = "direct" }

-- fleet-wide script state: how many nodes started this hour
luaray.spawn(function()
  for _ = 1, 50 do   -- the connection to Redis comes up in the background
    local n = luaray.cluster.call("INCR", "myfleet:starts:" .. os.date("!%Y%m%d%H"))
    if n then
      luaray.cluster.call("EXPIRE", "myfleet:starts:" .. os.date("!%Y%m%d%H"), 7200)
      luaray.log_line("info", ("node-a: start %d of this hour in the fleet"):format(n))
      return
    end
    luaray.sleep(0.2)
  end
end)
