-- Soak (issue "Hardening", item "Soak"): mixed load through a luaray client
-- and a luaray server for LURAY_SOAK_MINUTES minutes (5 by default, the CI
-- form; `make soak` runs 30), with a SIGHUP to both once a minute:
--
--   SOCKS5 load (tools/soak_load.lua) -> luaray client (4 SOCKS5 inbounds,
--   each routed to its own VMess outbound: AEAD + aes-128-gcm; AEAD +
--   chacha20-poly1305 + authenticated length, padding toggled by each
--   reload; legacy header (alter_id 4) + aes-128-cfb; AEAD + "zero") ->
--   luaray server (VMess inbound, 2 users, 2 worker threads;
--   LURAY_SOAK_WORKERS) -> echo server (TCP and UDP).
--
--   TCP echo transfers of 1 B .. 4 MiB (log-uniform, seeded), every byte
--   compared; transfers closed early (FIN) or reset (RST) mid-stream by the
--   client; SOCKS5 handshakes cut short; UDP ASSOCIATE datagrams (1 B ..
--   8 KiB) compared.
--
-- Every 15 s the load pauses until nothing is in flight, and the daemons
-- are sampled at that quiescent point: RSS, fds and the SIGUSR1 dump
-- (connections, buffers, replay state).
--
-- Promises: 0 crashes (both processes alive throughout, no sanitizer
-- report or failed requirement in their logs); 100% of the transfers meant
-- to complete do so byte for byte (and no corrupt byte before an early
-- close or a reset either), every UDP datagram of a finished association
-- echoed intact; every reload succeeds; at every quiescent point and at
-- the end, fds are back to baseline and the dump shows 0 connections and
-- the baseline buffer count; RSS drift < 5 MB/h for each process (not
-- under AddressSanitizer, whose quarantine holds freed memory).
--
-- RSS drift: the anonymous part of RSS (RssAnon: heap and anonymous
-- mappings, where a leak lives; the file-backed part is code paged in and
-- out by the kernel) minus the replay state's kB from the dump (it grows by
-- design with each accepted connection for 361 s, then plateaus), at each
-- quiescent point after the first minute; the least squares slope in MB/h
-- over those samples (17 over 4 minutes in the CI form). VmRSS and its
-- slope are printed too. 5 MB/h is 333 kB over those 4 minutes, so the
-- measurement is made steady first:
--   * the warm-up minute runs at twice the concurrency, starts with 4 MiB
--     transfers on every slot, and reloads every 10 s: the allocators meet
--     a higher peak (and the heap layout of reloads under load) than the
--     measured minutes will, so a late peak is not read as growth;
--   * both daemons run with GLIBC_TUNABLES fixing malloc's mmap threshold
--     at 1 KiB (glibc's default starts at 128 KiB and rises after each
--     large free): connections, relay buffers and the replay state's
--     arrays are mmapped and unmapped when freed, so RSS follows what is
--     allocated, the replay state's kB can be subtracted, and freed memory
--     does not hide in the heap -- a leak of anything over 1 KiB shows in
--     RSS at once (LURAY_SOAK_MALLOC=default runs with glibc's defaults);
--   * the RSS is read between two SIGUSR1 dumps that agree on the replay
--     state (a bucket may expire at any second).
-- What stays: objects under 1 KiB live in the threads' malloc arenas, and a
-- page there is resident while any object on it is; the daemons call
-- malloc_trim when a worker goes idle (so at every quiescent point) and when
-- a replay bucket expires, which hands back whole free pages only. Each
-- generation's Lua state has an arena of LuaJIT's own, unmapped with it, so
-- reloads leave no Lua objects behind in the malloc arenas (from glibc's
-- malloc they did: the server drifted 4.4-5.3 MB/h, against 1.2 since).
local E = require "e2e.support"
local H = require "helper"
local Soak = require "e2e.tools.soak_load"
local psignal = require "posix.signal"
local dirent = require "posix.dirent"

local SOAK = os.getenv("LURAY_SOAK") == "1"
local MINUTES = tonumber(os.getenv("LURAY_SOAK_MINUTES") or "") or (SOAK and 30 or 5)
-- worker threads of the server (luaray.workers, 2 by default, so the
-- threaded daemon takes the mixed load and the reloads too); the client
-- runs one, so the single-threaded daemon is soaked as well
local WORKERS = tonumber(os.getenv("LURAY_SOAK_WORKERS") or "") or 2
local ASAN = os.getenv("LURAY_ASAN") and os.getenv("LURAY_ASAN") ~= ""
local SAMPLE_EVERY = 15          -- seconds between quiescent points
local WARMUP = 60                -- seconds; samples before this do not count for the drift
local RELOAD_AT = 37             -- after the warm-up, a SIGHUP at this second of every minute
local WARMUP_RELOADS = 10        -- during the warm-up, a SIGHUP every 10 s
local DRIFT_MB_H = 5             -- the bound
local TCP_CONC, UDP_CONC = 24, 4
local MiB = 1024 * 1024

local MALLOC_ENV = os.getenv("LURAY_SOAK_MALLOC") == "default" and {} or {
  GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=1024:glibc.malloc.trim_threshold=131072" }

local R = H.seeded("soak_spec", it)
local function say(fmt, ...) print(("# soak: " .. fmt):format(...)); io.stdout:flush() end

----------------------------------------------------------------------------
-- process figures

local fd_count = E.fd_count

-- -> {rss, anon, file} in kB (nil when the process is gone)
local function mem_kb(pid)
  local f = io.open(("/proc/%d/status"):format(pid), "rb")
  if not f then return nil end
  local t = f:read("*a")
  f:close()
  local rss = tonumber(t:match("VmRSS:%s*(%d+)"))
  if not rss then return nil end
  return { rss = rss, anon = tonumber(t:match("RssAnon:%s*(%d+)")) or rss,
           file = tonumber(t:match("RssFile:%s*(%d+)")) or 0 }
end

-- Resident kB of the brk heap and of the other anonymous mappings (malloc's
-- mmapped blocks, LuaJIT's arenas), from /proc/PID/smaps -> heap, mmap
local function smaps_kb(pid)
  local f = io.open(("/proc/%d/smaps"):format(pid), "rb")
  if not f then return nil end
  local t = f:read("*a")
  f:close()
  local heap, mmap, kind = 0, 0, nil
  for line in t:gmatch("[^\n]+") do
    local name = line:match("^%x+%-%x+ %S+ %x+ %S+ %d+%s*(.*)$")
    if name then
      kind = name == "[heap]" and "heap" or name == "" and "mmap" or nil
    else
      local kb = tonumber(line:match("^Rss:%s*(%d+)"))
      if kb and kind == "heap" then heap = heap + kb elseif kb and kind == "mmap" then mmap = mmap + kb end
    end
  end
  return heap, mmap
end

local function wait_fds(pid, want, timeout)
  local t0 = E.now()
  local n = fd_count(pid)
  for _ = 1, 1000 do
    n = fd_count(pid)
    if n and n <= want then break end
    if E.now() - t0 >= timeout then break end
    E.sleep(0.05)
  end
  return n
end

-- Least squares slope of ys over xs.
local function slope(xs, ys)
  local n = #xs
  if n < 2 then return 0 end
  local mx, my = 0, 0
  for i = 1, n do mx, my = mx + xs[i], my + ys[i] end
  mx, my = mx / n, my / n
  local sxy, sxx = 0, 0
  for i = 1, n do
    sxy = sxy + (xs[i] - mx) * (ys[i] - my)
    sxx = sxx + (xs[i] - mx) ^ 2
  end
  return sxx > 0 and sxy / sxx or 0
end

----------------------------------------------------------------------------
-- a daemon's log, read as it grows: reloads, dumps, fatal reports

local FATAL = { "AddressSanitizer", "LeakSanitizer", "runtime error", "requirement failed",
                "Segmentation fault", "Aborted" }

local Watch = {}
Watch.__index = Watch

local function watch(h, p)
  return setmetatable({ h = h, p = p, off = 0, reloads = 0, reload_failed = {}, dumps = 0,
                        fatal = {}, errors = 0, error_lines = {}, pending = nil, last = nil }, Watch)
end

function Watch:poll()
  local f = io.open(self.p.log, "rb")
  if not f then return end
  f:seek("set", self.off)
  local t = f:read("*a") or ""
  f:close()
  local cut = t:find("\n[^\n]*$")      -- complete lines only
  if not cut then return end
  self.off = self.off + cut
  for line in t:sub(1, cut):gmatch("[^\n]+") do
    if line:find("reload: generation %d+ serving") then
      self.reloads = self.reloads + 1
    elseif line:find("reload failed", 1, true) then
      self.reload_failed[#self.reload_failed + 1] = line
    end
    local c, b = line:match("(%d+) connections, (%d+) buffers in use")
    if c then self.pending = { conns = tonumber(c), bufs = tonumber(b) } end
    local a, s, kb = line:match("replay state: (%d+) authids, (%d+) sessions, (%d+) kB")
    if a and self.pending then
      self.pending.authids, self.pending.sessions, self.pending.kb = tonumber(a), tonumber(s), tonumber(kb)
      self.last, self.pending = self.pending, nil
      self.dumps = self.dumps + 1
    end
    if line:find("[error]", 1, true) then
      self.errors = self.errors + 1
      if #self.error_lines < 5 then self.error_lines[#self.error_lines + 1] = line end
    end
    for _, pat in ipairs(FATAL) do
      if line:find(pat, 1, true) then self.fatal[#self.fatal + 1] = line; break end
    end
  end
end

-- SIGUSR1 and the dump it logs -> {conns, bufs, authids, sessions, kb} or nil
function Watch:dump()
  self:poll()
  local n0 = self.dumps
  psignal.kill(self.p.pid, psignal.SIGUSR1)
  for _ = 1, 100 do
    E.sleep(0.02)
    self:poll()
    if self.dumps > n0 then return self.last end
  end
end

-- dumps until the daemon holds no connection (or timeout) -> the last dump
function Watch:quiet(timeout)
  local deadline = E.now() + timeout
  local d
  for _ = 1, 1000 do
    d = self:dump()
    if d and d.conns == 0 then return d end
    if E.now() >= deadline then break end
    E.sleep(0.25)
  end
  return d
end

----------------------------------------------------------------------------
-- configs

local function client_script(o, generation)
  local l = { "-- generated by soak_spec, generation " .. generation,
              'luaray.log { level = "info", access = false }' }
  for _, r in ipairs(o.routes) do
    l[#l + 1] = ('luaray.inbound "socks-%s" { type = "socks", listen = "127.0.0.1:%d", udp = true }')
      :format(r.name, r.port)
  end
  local server = ("127.0.0.1:%d"):format(o.server_port)
  l[#l + 1] = ('luaray.outbound "gcm" { type = "vmess", server = %q, id = %q, alter_id = 0, '
    .. 'security = "aes-128-gcm" }'):format(server, o.id0)
  l[#l + 1] = ('luaray.outbound "chacha" { type = "vmess", server = %q, id = %q, alter_id = 0, '
    .. 'security = "chacha20-poly1305", authenticated_length = true, masking = true, padding = %s }')
    :format(server, o.id0, tostring(generation % 2 == 1))
  l[#l + 1] = ('luaray.outbound "legacy" { type = "vmess", server = %q, id = %q, alter_id = 4, '
    .. 'security = "aes-128-cfb" }'):format(server, o.id4)
  l[#l + 1] = ('luaray.outbound "zero" { type = "vmess", server = %q, id = %q, alter_id = 0, '
    .. 'security = "zero" }'):format(server, o.id0)
  for _, r in ipairs(o.routes) do
    l[#l + 1] = ('luaray.route { inbound = { "socks-%s" }, to = %q }'):format(r.name, r.name)
  end
  return table.concat(l, "\n") .. "\n"
end

----------------------------------------------------------------------------

describe("soak", function()
  local h = E.new("soak")
  lazy_teardown(function() h:cleanup() end)

  R.it(("%d minutes of mixed load with a SIGHUP a minute: 0 crashes, 100%% intact, fds and buffers "
        .. "back, RSS drift < %d MB/h"):format(MINUTES, DRIFT_MB_H), h:guard(function()
    local t_wall = E.now()
    local ID0, ID4 = E.uuid(), E.uuid()
    local echo = h:echo_server { lifetime = MINUTES * 60 + 900 }
    local server_port = E.free_port()
    local stext, sopts = E.luaray_server_script {
      port = server_port, access = false, log_level = "info",
      allow_legacy = true,   -- the "legacy" route (default: AEAD only)
      extra = WORKERS > 1 and ("luaray.workers(%d)"):format(WORKERS) or nil,
      users = { { id = ID0, alter_id = 0, email = "aead@soak" },
                { id = ID4, alter_id = 4, email = "legacy@soak" } } }
    sopts.env = MALLOC_ENV
    local srv = h:luaray("luaray-server", stext, sopts)
    local routes = {}
    for _, name in ipairs { "gcm", "chacha", "legacy", "zero" } do
      routes[#routes + 1] = { name = name, port = E.free_port() }
    end
    local co = { routes = routes, server_port = server_port, id0 = ID0, id4 = ID4 }
    local cports = {}
    for _, r in ipairs(routes) do cports[#cports + 1] = { "127.0.0.1", r.port } end
    local cli = h:luaray("luaray-client", client_script(co, 0), { ports = cports, env = MALLOC_ENV })
    local cli_conf = h:path(cli.name .. ".lua")
    -- each worker logs its own reload
    local procs = { { name = "client", p = cli, w = watch(h, cli), workers = 1 },
                    { name = "server", p = srv, w = watch(h, srv), workers = WORKERS } }

    -- baseline: fds and buffers of both, before any load
    E.sleep(0.5)
    for _, pr in ipairs(procs) do
      pr.fd0 = fd_count(pr.p.pid)
      local d = pr.w:quiet(5)
      assert.is_truthy(d, pr.name .. ": no SIGUSR1 dump in its log")
      assert.equal(0, d.conns, pr.name .. ": connections open before the load")
      pr.buf0 = d.bufs
      pr.samples = {}
    end
    say("seed %d; %d minutes, %d TCP + %d UDP at a time, sizes 1 B .. 4 MiB, routes %s; "
        .. "baseline fds client %d server %d, buffers client %d server %d", R.SEED + 1, MINUTES,
        TCP_CONC, UDP_CONC, "gcm, chacha, legacy, zero", procs[1].fd0, procs[2].fd0,
        procs[1].buf0, procs[2].buf0)

    local load = Soak.new {
      routes = routes, echo = { host = "127.0.0.1", port = echo.port },
      tcp_conc = TCP_CONC, udp_conc = UDP_CONC, max_size = 4 * MiB, udp_max = 8192,
      big_first = TCP_CONC,
    }

    -- a SIGHUP to both once a minute (the config rewritten: the client's
    -- chacha outbound toggles padding, new connections only)
    local t0 = E.now()
    local reload_at = {}
    for t = 7, WARMUP - 1, WARMUP_RELOADS do reload_at[#reload_at + 1] = t end
    for t = WARMUP + RELOAD_AT, MINUTES * 60 - 1, 60 do reload_at[#reload_at + 1] = t end
    local reloads, dead = 0, nil
    local function tick()
      for _, pr in ipairs(procs) do
        if not h:alive(pr.p) then
          dead = dead or ("%s (pid %d) died: %s %s"):format(pr.name, pr.p.pid, tostring(pr.p.status),
            tostring(pr.p.code))
        end
      end
      if dead then return false end
      if reload_at[reloads + 1] and E.now() - t0 >= reload_at[reloads + 1] then
        reloads = reloads + 1
        local f = assert(io.open(cli_conf, "wb"))
        f:write(client_script(co, reloads))
        f:close()
        for _, pr in ipairs(procs) do psignal.kill(pr.p.pid, psignal.SIGHUP) end
      end
      return true
    end

    -- a quiescent point: drain, then both daemons at 0 connections
    local drains, drain_max, sample_problems = 0, 0, {}
    local function sample(k)
      local td = E.now()
      local ok, left = load:drain(180, tick)
      local dt = E.now() - td
      drains, drain_max = drains + dt, math.max(drain_max, dt)
      if dead then return false end
      if not ok then
        sample_problems[#sample_problems + 1] = ("sample %d: %s transfers still in flight after 180 s"):format(k, tostring(left))
        return false
      end
      local t = E.now() - t0
      local line = { ("t=%4.0fs (drain %.1fs)"):format(t, dt) }
      for _, pr in ipairs(procs) do
        -- (fds first: a UDP session lingers 2 s for late replies)
        local fds = wait_fds(pr.p.pid, pr.fd0, 5)
        local d = pr.w:quiet(10)
        -- RSS read between two dumps that agree (the replay state may
        -- expire a bucket at any second, even with no traffic)
        local m, heap, mmap
        for _ = 1, 5 do
          m = mem_kb(pr.p.pid)
          heap, mmap = smaps_kb(pr.p.pid)
          local d2 = pr.w:dump()
          if not d2 or (d and d2.kb == d.kb) then break end
          d = d2
        end
        if not d or not m then
          sample_problems[#sample_problems + 1] = ("sample %d: %s gave no dump or no /proc status"):format(k, pr.name)
          return false
        end
        if d.conns ~= 0 or d.bufs ~= pr.buf0 or fds ~= pr.fd0 then
          sample_problems[#sample_problems + 1] = ("sample %d (t=%.0fs): %s at a quiescent point: %d connections, "
            .. "%d buffers (baseline %d), %s fds (baseline %d)"):format(k, t, pr.name, d.conns, d.bufs,
            pr.buf0, tostring(fds), pr.fd0)
        end
        pr.samples[#pr.samples + 1] = { t = t, rss = m.rss, anon = m.anon, file = m.file, kb = d.kb,
                                        fds = fds, bufs = d.bufs, authids = d.authids }
        line[#line + 1] = ("%s RSS %d kB (anon %d: heap %s, mmap %s; file %d), replay %d kB, fds %s, "
          .. "buffers %d"):format(pr.name, m.rss, m.anon, tostring(heap), tostring(mmap), m.file, d.kb,
          tostring(fds), d.bufs)
      end
      local st = load.st
      line[#line + 1] = ("transfers %d ok, %d failed, %.1f MiB echoed"):format(
        st.ok.echo + st.ok.fin, st.nfailures, st.bytes_echoed / MiB)
      say("sample %d: %s", k, table.concat(line, "; "))
      return true
    end

    -- the run: load, a quiescent point every SAMPLE_EVERY s
    local nsamples = math.floor(MINUTES * 60 / SAMPLE_EVERY + 0.5)
    local completed = true
    for k = 1, nsamples do
      -- the warm-up at twice the concurrency: the allocators meet a higher
      -- peak than the measured minutes will
      local warm = (k - 1) * SAMPLE_EVERY < WARMUP
      load.tcp_conc = warm and 2 * TCP_CONC or TCP_CONC
      load.udp_conc = warm and 2 * UDP_CONC or UDP_CONC
      -- (at least 5 s of load, should a quiescent point have taken long)
      if not load:run_until(math.max(t0 + k * SAMPLE_EVERY, E.now() + 5), tick) then
        completed = false
        break
      end
      if not sample(k) then completed = false; break end
    end
    local t_load = E.now() - t0
    load:abort_all()

    -- the end: fds, connections and buffers back; logs read once more
    local final = {}
    for _, pr in ipairs(procs) do
      if h:alive(pr.p) then
        local fds = wait_fds(pr.p.pid, pr.fd0, 5)
        final[pr.name] = { fds = fds, d = pr.w:quiet(10) }
      end
      pr.w:poll()
    end

    -- figures
    local st = load.st
    local kinds = {}
    for _, k in ipairs(Soak.KINDS) do
      kinds[#kinds + 1] = ("%s %d (%d ok, %d cut, %d failed)"):format(k, st.started[k], st.ok[k],
        st.cut[k], st.failed[k])
    end
    local by_route = {}
    for _, r in ipairs(routes) do by_route[#by_route + 1] = ("%s %d"):format(r.name, st.by_route[r.name]) end
    say("load ran %.1f s (%d quiescent points, %.1f s draining in all, longest %.1f s); wall %.1f s",
        t_load, #procs[1].samples, drains, drain_max, E.now() - t_wall)
    say("TCP transfers: %s", table.concat(kinds, "; "))
    say("TCP sizes: %d .. %d bytes, %d of >= 1 MiB, %d of <= 16 B; %.1f MiB sent, %.1f MiB echoed, "
        .. "%.1f MiB in completed transfers checked byte for byte", st.sizes.min, st.sizes.max,
        st.sizes.ge_1mib, st.sizes.le_16, st.bytes_sent / MiB, st.bytes_echoed / MiB,
        st.bytes_verified / MiB)
    say("checksum failures: %d in transfers meant to complete, %d in the prefix of early/reset ones",
        st.checksum_failures, st.prefix_failures)
    say("UDP: %d associations (%d complete, %d ended early, %d failed), %d datagrams sent, %d echoed "
        .. "intact (%.1f KiB), %d differed, %d lost", st.udp_assocs, st.udp_ok_assocs, st.udp_early,
        st.udp_failed, st.udp_sent, st.udp_ok, st.udp_bytes / 1024, st.udp_bad, st.udp_lost)
    say("routes (transfers + associations): %s", table.concat(by_route, ", "))
    say("reloads: %d SIGHUPs; client logged %d reloads, server %d; failed reloads: %d", reloads,
        procs[1].w.reloads, procs[2].w.reloads, #procs[1].w.reload_failed + #procs[2].w.reload_failed)

    -- RSS drift
    local drift = {}
    for _, pr in ipairs(procs) do
      local xs, ya, yr, pts = {}, {}, {}, {}
      for _, s in ipairs(pr.samples) do
        if s.t >= WARMUP - 1 then
          xs[#xs + 1] = s.t / 3600
          ya[#ya + 1] = (s.anon - s.kb) / 1024
          yr[#yr + 1] = (s.rss - s.kb) / 1024
          pts[#pts + 1] = ("%.0f:%d"):format(s.t, s.anon - s.kb)
        end
      end
      local sa, sr = slope(xs, ya), slope(xs, yr)
      local first, last = pr.samples[1], pr.samples[#pr.samples]
      drift[pr.name] = { anon = sa, rss = sr, n = #xs }
      say("%s RSS: %d samples after the %d s warm-up; RssAnon - replay kB (t s:kB) %s", pr.name, #xs,
          WARMUP, table.concat(pts, " "))
      if first then
        say("%s RSS: first sample %d kB (anon %d), last %d kB (anon %d), replay %d -> %d kB; drift "
            .. "%+.2f MB/h (RssAnon - replay), %+.2f MB/h (VmRSS - replay); bound %d MB/h%s", pr.name,
            first.rss, first.anon, last.rss, last.anon, first.kb, last.kb, sa, sr, DRIFT_MB_H,
            ASAN and " (not checked under AddressSanitizer)" or MINUTES < 2 and " (not checked: too short)" or "")
      end
      local f = final[pr.name]
      say("%s at the end: fds %s (baseline %d), connections %s, buffers %s (baseline %d), %d [error] log "
          .. "lines%s", pr.name, f and tostring(f.fds) or "-", pr.fd0, f and f.d and tostring(f.d.conns) or "-",
          f and f.d and tostring(f.d.bufs) or "-", pr.buf0, pr.w.errors,
          #pr.w.error_lines > 0 and (": " .. table.concat(pr.w.error_lines, " | ")) or "")
    end
    if #st.failures > 0 then say("first failures:\n#   %s", table.concat(st.failures, "\n#   ")) end

    -- promises
    assert.is_nil(dead, "a luaray process crashed")
    for _, pr in ipairs(procs) do
      assert.is_true(h:alive(pr.p), pr.name .. " is not running at the end")
      assert.is_true(#pr.w.fatal == 0, pr.name .. " logged: " .. table.concat(pr.w.fatal, "\n"))
    end
    assert.is_true(completed and #sample_problems == 0, "quiescent points: " .. table.concat(sample_problems, "\n"))
    assert.equal(nsamples, #procs[1].samples)
    assert.equal(0, st.nfailures, "failed transfers:\n" .. table.concat(st.failures, "\n"))
    assert.equal(0, st.checksum_failures + st.prefix_failures)
    assert.is_true(st.ok.echo + st.ok.fin > 0 and st.udp_ok > 0, "no load ran")
    assert.equal(st.started.echo + st.started.fin, st.ok.echo + st.ok.fin)
    assert.equal(st.udp_sent - st.udp_early, st.udp_ok)
    assert.equal(#reload_at, reloads, "SIGHUPs sent")
    for _, pr in ipairs(procs) do
      assert.equal(reloads * pr.workers, pr.w.reloads, pr.name .. ": not every SIGHUP gave a reload")
      assert.equal(0, #pr.w.reload_failed, pr.name .. ": " .. table.concat(pr.w.reload_failed, "\n"))
      local f = final[pr.name]
      assert.is_truthy(f and f.d, pr.name .. ": no final dump")
      assert.equal(pr.fd0, f.fds, pr.name .. ": fds not back to baseline")
      assert.equal(0, f.d.conns, pr.name .. ": connections still open at the end")
      assert.equal(pr.buf0, f.d.bufs, pr.name .. ": buffers not back to baseline")
    end
    if not ASAN and MINUTES >= 2 then   -- (a shorter run has no samples after the warm-up to fit)
      for _, pr in ipairs(procs) do
        local d = drift[pr.name]
        assert.is_true(d.n >= 5, pr.name .. ": too few RSS samples for a slope")
        assert.is_true(d.anon < DRIFT_MB_H, ("%s: RSS drift %.2f MB/h >= %d MB/h"):format(pr.name,
          d.anon, DRIFT_MB_H))
      end
    end
  end))
end)
