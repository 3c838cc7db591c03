-- The HTTP proxy inbound under luaray.workers(2): concurrent clients'
-- absolute-form requests must each reach the origin with their own headers
-- and nobody else's (issue item 1: the origin-form rewrite used a buffer
-- shared by every worker thread, so a request could leave with another
-- client's Cookie or Authorization).
--
-- 16 clients send rounds of absolute-form GETs (48 connections at a time,
-- queued while the proxy is stopped, so both workers start on a backlog
-- together) with ~15 KiB heads of many short lines (the longer a rewrite
-- takes, the more two workers' rewrites overlap) to a recording origin on
-- loopback (tools/capture_server.lua, one file per upstream connection).
-- Every header line a client sends carries its marker (client and request
-- number), so each recorded connection must be exactly one rewritten head
-- whose request line and every header line name the same request, with no
-- line missing.  At 42c43c5 (one static buffer) 176-245 of the 1440
-- requests were wrong in each run on a quiet machine; with both CPUs busy
-- two rewrites rarely run at once (0-54 wrong, 2 runs of 3 caught it),
-- which is why it also runs in the ThreadSanitizer stream
-- (scripts/tsan-specs.sh), where the race is reported every time and a
-- report in the daemon's log fails the spec.
local E = require "e2e.support"
local psignal = require "posix.signal"

local function say(fmt, ...) print(("# http workers: " .. fmt):format(...)); io.stdout:flush() end

local read_file, count_matches, wait_log = E.read_file, E.count_matches, E.wait_log

local CLIENTS, PER_ROUND, ROUNDS = 16, 3, 30 -- 16 clients x 90 requests, 48 at a time
local PAD_LINES = 480                  -- 14-15 KiB heads of short lines: a long rewrite

-- SIGUSR1 -> { [worker] = accepted } (the daemon's "worker N: ..." lines).
local function accepted_by_worker(p, nworkers)
  local before = count_matches(read_file(p.log), "worker %d+: %d+ connections, %d+ accepted")
  assert(psignal.kill(p.pid, psignal.SIGUSR1))
  local text = assert(wait_log(p, "worker %d+: %d+ connections, %d+ accepted", before + nworkers))
  local t = {}
  for w, a in text:gmatch("worker (%d+): %d+ connections, (%d+) accepted") do t[tonumber(w)] = tonumber(a) end
  return t
end

-- Request q of client c: its marker and header lines (each names both).
local function client_headers(c, q, salt)
  local m = ("c%02dq%03d"):format(c, q)
  local tag = m .. "-" .. salt
  local lines = {
    "Cookie: session=" .. tag .. "; theme=" .. m,
    "Authorization: Bearer " .. tag,
    "X-Client: " .. tag,
  }
  for i = 1, PAD_LINES do
    -- a different length per client, so a head built over another's
    -- shows in its length as well
    lines[#lines + 1] = ("X%03d: %s%s"):format(i, m, ("."):rep(c))
  end
  return m, lines
end

describe("HTTP proxy inbound with 2 workers", function()
  local h = E.new("http-workers")
  local cap, proxy, hp

  lazy_setup(h:guard(function()
    cap = h:capture_server { name = "origin" }
    hp = E.free_port()
    local script = table.concat({
      "luaray.workers(2)",
      'luaray.log { level = "info", access = false }',
      ('luaray.inbound "http-in" { type = "http", listen = "127.0.0.1:%d" }'):format(hp),
      'luaray.outbound "direct" { type = "direct" }',
    }, "\n") .. "\n"
    proxy = h:luaray("proxy", script, { ports = { hp } })
    -- a first request goes through: the daemon's loops run, so its signal
    -- handlers (SIGUSR1 below) are in place, not the default action
    local base = cap:count()
    local s = assert(E.tcp_connect("127.0.0.1", hp))
    assert(s:send(("GET http://127.0.0.1:%d/warm-up HTTP/1.1\r\n\r\n"):format(cap.port)))
    assert(cap:wait_bytes(base + 1, 20, 0.05, 10))
    s:close()
  end))

  lazy_teardown(function() h:cleanup() end)

  it(("%d clients x %d absolute-form GETs, %d at a time: every request reaches the origin with only its own headers")
    :format(CLIENTS, PER_ROUND * ROUNDS, CLIENTS * PER_ROUND), h:guard(function()
    local salt = E.uuid():sub(1, 8)
    local before = accepted_by_worker(proxy, 2)
    local bad, wrong, nwrong, seen, total = {}, {}, 0, {}, 0
    -- what went wrong (the first 20 findings), and how many requests
    local function fail(r, m, fmt, ...)
      local key = r .. "/" .. tostring(m)
      if not wrong[key] then wrong[key], nwrong = true, nwrong + 1 end
      if #bad < 20 then bad[#bad + 1] = fmt:format(...) end
    end
    for r = 1, ROUNDS do
      local base = cap:count()
      local socks, want = {}, {}
      -- the round's connections are made and their requests sent while the
      -- proxy is stopped (SIGSTOP: the kernel queues the connections on the
      -- workers' listeners and buffers the bytes), then it continues: both
      -- workers find a backlog of complete heads and rewrite them at the
      -- same time
      local reqs = {}
      assert(psignal.kill(proxy.pid, psignal.SIGSTOP))
      local ok, err = pcall(function()
        for k = 1, PER_ROUND do
          for c = 1, CLIENTS do
            local m, lines = client_headers(c, (r - 1) * PER_ROUND + k, salt)
            want[m] = lines
            reqs[#reqs + 1] = ("GET http://127.0.0.1:%d/%s/index.html HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" ..
                               "%s\r\nProxy-Connection: keep-alive\r\n\r\n"):format(cap.port, m, cap.port,
                               table.concat(lines, "\r\n"))
            socks[#socks + 1] = assert(E.tcp_connect("127.0.0.1", hp))
          end
        end
        for i = 1, #socks do assert(socks[i]:send(reqs[i])) end
      end)
      assert(psignal.kill(proxy.pid, psignal.SIGCONT))
      assert(ok, err)
      -- leave the CPUs to the proxy's workers while they take the backlog
      -- (polling the origin's files right away competes with them); only
      -- how often two rewrites overlap depends on it, not the outcome
      E.sleep(0.05)
      local got = assert(cap:wait_many(base + 1, #socks, 4096, 0.15, 60))
      for _, s in ipairs(socks) do s:close() end
      for i, d in ipairs(got) do
        total = total + 1
        local head_end = d:find("\r\n\r\n", 1, true)
        local m = d:match("^GET /(c%d%dq%d%d%d)/index%.html HTTP/1%.1\r\n")
        if not m or not want[m] then
          fail(r, i, "round %d, connection %d: not one of this round's requests: %q", r, i, d:sub(1, 80))
        elseif not head_end then
          fail(r, m, "round %d, %s: %d bytes without the end of a head", r, m, #d)
        elseif head_end + 3 ~= #d then
          fail(r, m, "round %d, %s: %d bytes after the head", r, m, #d - head_end - 3)
        elseif seen[m] then
          fail(r, m, "round %d, %s: arrived twice", r, m)
        else
          seen[m] = true
          local own, lines = {}, want[m]
          for _, l in ipairs(lines) do own[l] = 0 end
          for line in d:sub(1, head_end + 1):gmatch("([^\r\n]*)\r\n") do
            if line:match("^GET ") then
              -- the request line, checked above
            elseif own[line] then
              own[line] = own[line] + 1
            elseif line ~= "Host: 127.0.0.1:" .. cap.port and line ~= "Connection: close" then
              local other = line:match("c%d%dq%d%d%d")
              fail(r, m, "round %d, %s: a header that is not its own%s: %q", r, m,
                   other and other ~= m and (" (" .. other .. "'s)") or "", line:sub(1, 60))
            end
          end
          for _, l in ipairs(lines) do
            if own[l] ~= 1 then fail(r, m, "round %d, %s: its line %q arrived %d times", r, m, l:sub(1, 40), own[l]) end
          end
        end
      end
    end
    local after = accepted_by_worker(proxy, 2)
    local n0, n1 = after[0] - (before[0] or 0), after[1] - (before[1] or 0)
    say("%d requests, %d wrong; accepted by worker 0: %d, worker 1: %d", total, nwrong, n0, n1)
    assert.is_true(#bad == 0, table.concat(bad, "\n"))
    assert.equal(CLIENTS * PER_ROUND * ROUNDS, total)
    -- both workers rewrote heads (the kernel spreads connections by their
    -- source port)
    assert.is_true(n0 >= total * 0.15 and n1 >= total * 0.15,
      ("worker 0 took %d, worker 1 took %d of %d"):format(n0, n1, total))
    assert.is_true(h:alive(proxy), "the proxy died")
  end))
end)
