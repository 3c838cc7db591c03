-- The fleet under load (issue 15): two luaray nodes sharing one Redis
-- (Debian's redis-server, started here on loopback without persistence,
-- stopped by PID), 5,000 connections through them (luaray clients, SOCKS5
-- -> VMess, alternating between the nodes), every one echoed.  Reported:
-- the Redis round trips per connection: the commands the nodes sent (from
-- Redis's INFO commandstats: SET for the replay claims, EVAL for each
-- node's once-a-second policy sync) over the connections made, and the
-- commands Redis ran for them (the sync's script runs a dozen or so
-- inside).  Each connection's AuthID is claimed once (SET NX), so the
-- round trips are 1 plus the syncs; checked to stay below 1.5.  Redis here
-- wants a password and the nodes use db 2 (AUTH and SELECT on connect);
-- a third node with a wrong password logs why and serves on its own.
local E = require "e2e.support"

local N = 5000

describe("a fleet of two nodes under load", function()
  local h = E.new("fleet-load")
  local echo, redis_port
  local socks = {}
  local nodes_x

  local PW = "load pw"
  local function redis_cli(...)
    local rc, out = h:exec("redis-cli", { "redis-cli", "-h", "127.0.0.1", "-p", tostring(redis_port),
                                          "--no-auth-warning", "-a", PW, "-n", "2", ... })
    assert(rc == 0, out)
    return out
  end
  local function redis_info(section) return redis_cli("INFO", section) end

  lazy_setup(h:guard(function()
    redis_port = E.free_port()
    local dir = h:path("redis.d")
    require("posix.sys.stat").mkdir(dir, 448)
    h:spawn("redis-server", { "redis-server", "--bind", "127.0.0.1", "--port", tostring(redis_port),
                              "--save", "", "--appendonly", "no", "--dir", dir,
                              "--requirepass", PW },
            { ports = { redis_port } })
    echo = h:echo_server()
    local id = E.uuid()
    for _, name in ipairs { "a", "b", "x" } do
      local port = E.free_port()
      local script, opts = E.luaray_server_script {
        port = port, users = { { id = id, email = "load@e2e" } }, access = false,
        extra = ('luaray.cluster { redis = "127.0.0.1:%d", node = %q, timeout_ms = 200, ' ..
                 'password = %q, db = 2 }\n' ..
                 'luaray.policy("load@e2e", { max_conns = 100000 })')
                :format(redis_port, name, name == "x" and "wrong" or PW) }
      local p = h:luaray("luaray-" .. name, script, opts)
      if name == "x" then
        assert(E.wait_log(p, "cluster: redis 127%.0%.0%.1:%d+ refused the connection's setup: " ..
                             "WRONGPASS", 1, 10), h:tail(p))
        assert(E.wait_log(p, "unreachable %(NOAUTH", 1, 10), h:tail(p))
        nodes_x = { proc = p, port = port }
        break
      end
      assert(E.wait_log(p, "cluster: node " .. name .. " connected to redis", 1, 10), h:tail(p))
      local sp = E.free_port()
      local cscript, copts = E.luaray_client_script { socks_port = sp, server_port = port, id = id,
                                                      access = false }
      h:luaray("client-" .. name, cscript, copts)
      socks[#socks + 1] = sp
    end
    -- both nodes have synced once (the first sync also creates the epoch
    -- key, a SET of its own): what is counted below is the connections'
    local n
    for _ = 1, 100 do
      n = tonumber(redis_cli("ZCARD", "luaray:nodes"):match("%d+"))
      if n == 2 then break end
      E.sleep(0.1)
    end
    assert(n == 2, "the nodes did not sync")
  end))

  lazy_teardown(function() h:cleanup() end)

  it(("%d connections over two nodes: all echoed; Redis round trips per connection reported"):format(N),
    h:guard(function()
      local function calls(cmd)
        return tonumber(redis_info("commandstats"):match("cmdstat_" .. cmd .. ":calls=(%d+)") or "0")
      end
      local c0 = tonumber(redis_info("stats"):match("total_commands_processed:(%d+)"))
      local set0, eval0 = calls("set"), calls("eval")
      local t0, failed = E.now(), {}
      for i = 1, N do
        local s, err = E.socks5_connect("127.0.0.1", socks[i % 2 + 1], "127.0.0.1", echo.port, nil,
                                        nil, 10)
        if s then
          s:settimeout(10)
          s:send("ping\n")
          local line
          line, err = s:receive("*l")
          s:close()
          if line ~= "ping" then s = nil end
        end
        if not s and #failed < 5 then failed[#failed + 1] = ("#%d: %s"):format(i, tostring(err)) end
      end
      local secs = E.now() - t0
      assert.equal(0, #failed, table.concat(failed, "\n"))
      local set1, eval1 = calls("set"), calls("eval")
      local c1 = tonumber(redis_info("stats"):match("total_commands_processed:(%d+)"))
      local per = (set1 - set0 + eval1 - eval0) / N
      -- the INFO calls of this spec count in the total too (5 after c0)
      local ran = (c1 - c0 - 5) / N
      print(("# fleet load: %d connections in %.1f s (%.0f/s); Redis round trips per connection " ..
             "%.3f (%d SET NX, %d EVAL syncs); commands Redis ran per connection %.3f")
            :format(N, secs, N / secs, per, set1 - set0, eval1 - eval0, ran))
      io.stdout:flush()
      -- every connection's AuthID was claimed in Redis, once
      assert.equal(N, set1 - set0)
      assert.is_true(eval1 - eval0 >= 2, "the nodes did not sync")
      assert.is_true(per >= 1 and per < 1.5, ("%.3f round trips per connection"):format(per))
    end))

  it("a node with a wrong password serves on its own, logging the outage once", h:guard(function()
    local s, err = E.socks5_connect("127.0.0.1", socks[1], "127.0.0.1", echo.port)
    assert(s, err)
    s:close()
    assert.is_true(h:alive(nodes_x.proc))
    E.sleep(1)   -- a few reconnects with backoff
    local log = E.read_file(nodes_x.proc.log)
    assert.equal(1, E.count_matches(log, "unreachable", true), log)
    assert.equal(0, E.count_matches(log, "reachable again", true), log)
  end))
end)
