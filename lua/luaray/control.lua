-- luaray.control: the control plane's Lua half (design.md 7).  Called only
-- from lua/luaray/daemon.lua (the words) and core/script/bridge.c (the
-- events, through daemon.control_event); the C half is core/daemon/control.c.
--
--   luaray.every(seconds, fn [, { first = seconds }])  a timer; fn runs as a coroutine
--   luaray.spawn(fn)                                   a coroutine, once
--   luaray.sleep(seconds)                              inside one: yields on a timer
--   luaray.http.request { method =, url =, headers =, body =, timeout =,
--                         max_body =, insecure =, ca = }
--       inside one: yields until the reply -> { status =, headers =, body = }
--       (header names lower case) or nil, "error"
--   luaray.cluster.call(cmd, ...)
--       inside one: yields until the fleet's Redis answers -> reply or nil, "error"
--   luaray.now()                                       monotonic seconds
--
-- Where they run.  Every Lua state loads the whole config, so every state
-- records its luaray.every / luaray.spawn calls; C starts them in one state
-- only, the "control state" (the main thread's generation of the last
-- config load: the start or a SIGHUP), on the main loop.  The other states
-- (other workers; rebuilds for live users) keep their records and never run
-- them.  At run time (a hook, or a coroutine) spawn works in any state of
-- the main thread: the coroutine starts on the next turn of the loop, in
-- that state; on other workers it raises an error.  A SIGHUP stops every
-- timer and coroutine of the old states (their requests are cancelled) and
-- starts the new config's.
--
-- Each resume runs under the hook budget (instructions, wall clock, the
-- state's memory cap), enforced in C like a hook's.  A timer whose run
-- fails (an error, the budget) is logged with file:line and keeps its
-- schedule; a tick that comes while the timer's previous run still waits
-- (on a request or a sleep) is skipped (logged at debug level).
local ffi = require "ffi"
require "luaray.cdef"
local C = ffi.C

local M = {}

local co_create, co_resume, co_yield, co_status, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running

local ctl_begin, ctl_end
if package.preload["luaray.budget"] then
  local b = require "luaray.budget"
  ctl_begin, ctl_end = b.ctl_begin, b.ctl_end
else
  ctl_begin, ctl_end = function() end, function() end
end

local errbuf = ffi.new("char[512]")

-- this state
local host            -- the number C gave it (LR_CTL_ATTACH), nil before/after
local is_control = false
local stopped = false
local declared = {}   -- luaray.every / spawn calls made while the config loaded
local timers = {}     -- C id -> { seconds, fn, where, label, task }
local starts = {}     -- C id -> spawned fn waiting for its first turn { fn, label }
local waits = {}      -- C id -> task waiting on that timer or request
local tasks = {}      -- coroutine -> task { co, label, timer, wait }
local current         -- the task being resumed (left set if C cut the run short)
local next_id = 0

M.loading = false     -- set by daemon.lua around a config load

local function new_id()
  next_id = next_id + 1
  if next_id >= 4294967295 then next_id = 1 end
  return next_id
end

local function log(level, msg) C.lr_ctl_log(level, msg) end

-- "file:line" of the config code that called a word (our own chunks skipped)
local function caller_where()
  for level = 3, 12 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.currentline and info.currentline > 0 and
       not info.source:find("^@lua/luaray/") and info.what ~= "C" then
      return (info.source:gsub("^[@=]", "")) .. ":" .. info.currentline
    end
  end
  return "?"
end

local function finish(task)
  tasks[task.co] = nil
  if task.wait then
    C.lr_ctl_cancel(host or 0, task.wait)
    waits[task.wait] = nil
    task.wait = nil
  end
  if task.timer then task.timer.task = nil end
end

-- An error object that is not a string becomes text inside the budget (its
-- __tostring may loop too).
local function to_text(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "(error object is a " .. type(v) .. " value)"
end

-- Resumes a task with the values given; logs its failure.  A run cut short
-- in C (its budget) unwinds past this function: LR_CTL_ABORT tidies up.
local function run(task, ...)
  current = task
  ctl_begin()
  local ok, err = co_resume(task.co, ...)
  if not ok and type(err) ~= "string" then err = to_text(err) end
  ctl_end()
  current = nil
  if not ok then
    log(C.LR_LOG_ERROR, ("%s failed: %s"):format(task.label, tostring(err)))
    finish(task)
  elseif co_status(task.co) == "dead" then
    finish(task)
  end
end

local function start_task(fn, label, timer)
  local task = { co = co_create(fn), label = label, timer = timer }
  tasks[task.co] = task
  if timer then timer.task = task end
  run(task)
end

local function start_timer(t)
  local id = new_id()
  if C.lr_ctl_timer(host, id, t.first, t.seconds, errbuf, 512) ~= 0 then
    log(C.LR_LOG_ERROR, ("%s: cannot start: %s"):format(t.label, ffi.string(errbuf)))
    return
  end
  timers[id] = t
end

local function schedule_spawn(fn, label)
  local id = new_id()
  if C.lr_ctl_timer(host, id, 0, 0, errbuf, 512) ~= 0 then
    return nil, ffi.string(errbuf)
  end
  starts[id] = { fn = fn, label = label }
  return true
end

local function check_seconds(name, v, min)
  if type(v) ~= "number" or v ~= v or v < min or v > 2592000 then
    error(("%s: seconds must be a number from %g to 2592000"):format(name, min), 3)
  end
end

---------------------------------------------------------------------------
-- The words

function M.every(seconds, fn, opts)
  check_seconds("luaray.every", seconds, 0.01)
  if type(fn) ~= "function" then error("luaray.every: a function expected second", 2) end
  if opts ~= nil and type(opts) ~= "table" then
    error("luaray.every: options must be a table { first = seconds }", 2)
  end
  local first = seconds
  if opts then
    for k in pairs(opts) do
      if k ~= "first" then error("luaray.every: unknown option '" .. tostring(k) .. "'", 2) end
    end
    if opts.first ~= nil then check_seconds("luaray.every: first", opts.first, 0); first = opts.first end
  end
  local where = caller_where()
  local t = { seconds = seconds, first = first, fn = fn, where = where,
              label = ("timer every %g s (%s)"):format(seconds, where) }
  if M.loading then
    declared[#declared + 1] = t
    return true
  end
  if not host or not is_control then
    error("luaray.every: at run time, timers start only in the control state (the main "
          .. "thread's config); declare them while the config loads", 2)
  end
  start_timer(t)
  return true
end

function M.spawn(fn)
  if type(fn) ~= "function" then error("luaray.spawn: a function expected", 2) end
  local label = ("coroutine spawned at %s"):format(caller_where())
  if M.loading then
    declared[#declared + 1] = { spawn = true, fn = fn, label = label }
    return true
  end
  if not host then
    error(stopped and "luaray.spawn: this state's control plane was stopped by a reload"
          or "luaray.spawn: control coroutines run on the main thread only (this hook runs "
             .. "on another worker); use luaray.shared to hand work over", 2)
  end
  local ok, err = schedule_spawn(fn, label)
  if not ok then error("luaray.spawn: " .. err, 2) end
  return true
end

local function this_task(name)
  local co = co_running()
  local task = co and tasks[co]
  if not task or not host then
    error(name .. " works only inside luaray.every / luaray.spawn functions", 3)
  end
  return task
end

function M.sleep(seconds)
  check_seconds("luaray.sleep", seconds, 0)
  local task = this_task("luaray.sleep")
  local id = new_id()
  if C.lr_ctl_timer(host, id, seconds, 0, errbuf, 512) ~= 0 then
    error("luaray.sleep: " .. ffi.string(errbuf), 2)
  end
  waits[id], task.wait = task, id
  co_yield()
  return true
end

local req = ffi.new("struct lr_ctl_http")
local REQ_KEYS = { method = "string", url = "string", headers = "table", body = "string",
                   timeout = "number", max_body = "number", insecure = "boolean", ca = "string" }

-- Unfolds "name: value\n" lines into a table (a repeated name: the values
-- joined with ", ", as RFC 9110 5.3 allows, but set-cookie keeps the last).
local function parse_fields(s)
  local t = {}
  for name, value in s:gmatch("([^:\n]+): ([^\n]*)\n") do
    local had = t[name]
    if had and name ~= "set-cookie" then t[name] = had .. ", " .. value else t[name] = value end
  end
  return t
end

function M.request(t)
  if type(t) ~= "table" then error("luaray.http.request: a table { url = ... } expected", 2) end
  for k, v in pairs(t) do
    local want = REQ_KEYS[k]
    if not want then error("luaray.http.request: unknown key '" .. tostring(k) .. "'", 2) end
    if type(v) ~= want then
      error(("luaray.http.request: %s must be a %s"):format(k, want), 2)
    end
  end
  if not t.url then error("luaray.http.request: url is required", 2) end
  local task = this_task("luaray.http.request")
  local lines = {}
  if t.headers then
    for name, value in pairs(t.headers) do
      if type(name) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
        error("luaray.http.request: headers are name = value strings", 2)
      end
      lines[#lines + 1] = name .. ": " .. value .. "\r\n"
    end
  end
  local headers = table.concat(lines)
  local timeout = t.timeout or 10
  if timeout <= 0 or timeout > 3600 then error("luaray.http.request: timeout: 0 to 3600 s", 2) end
  req.method = t.method or (t.body and "POST" or "GET")
  req.url = t.url
  req.headers, req.headers_len = headers, #headers
  req.body, req.body_len = t.body, t.body and #t.body or 0
  req.timeout = timeout
  req.max_body = t.max_body or 8388608
  req.insecure = t.insecure and 1 or 0
  req.ca = t.ca
  local id = new_id()
  local rc = C.lr_ctl_http_start(host, id, req, errbuf, 512)
  req.method, req.url, req.headers, req.body, req.ca = nil, nil, nil, nil, nil
  if rc ~= 0 then return nil, ffi.string(errbuf) end
  waits[id], task.wait = task, id
  return co_yield()
end

-- luaray.cluster.call(cmd, ...): a command to the fleet's Redis
-- (luaray.cluster), inside a coroutine -> the reply (string, number,
-- table for an array, false for nil, { err = "..." } for an error inside
-- an array), or nil, "error" (an error reply, no answer in time, Redis
-- unreachable, no luaray.cluster).
local function decode_reply(s, pos)
  local t = s:sub(pos, pos)
  if t == "n" then return false, pos + 1 end
  if t == "i" then
    local e = s:find(";", pos, true)
    return tonumber(s:sub(pos + 1, e - 1)), e + 1
  end
  if t == "a" then
    local e = s:find(";", pos, true)
    local n, arr = tonumber(s:sub(pos + 1, e - 1)), {}
    pos = e + 1
    for i = 1, n do arr[i], pos = decode_reply(s, pos) end
    return arr, pos
  end
  local c = s:find(":", pos, true)
  local n = tonumber(s:sub(pos + 1, c - 1))
  local v = s:sub(c + 1, c + n)
  if t == "e" then v = { err = v } end
  return v, c + n + 1
end

function M.redis_call(...)
  local n = select("#", ...)
  if n < 1 or n > 1024 then error("luaray.cluster.call: a command and up to 1023 arguments", 2) end
  local args = { ... }
  for i = 1, n do
    local a = args[i]
    if type(a) == "number" then
      args[i] = (a == math.floor(a) and a > -2^53 and a < 2^53) and ("%d"):format(a) or ("%.17g"):format(a)
    elseif type(a) ~= "string" then
      error(("luaray.cluster.call: argument %d must be a string or number"):format(i), 2)
    end
  end
  local task = this_task("luaray.cluster.call")
  local argv, argvlen = ffi.new("const char *[?]", n), ffi.new("size_t[?]", n)
  for i = 1, n do argv[i - 1], argvlen[i - 1] = args[i], #args[i] end
  local id = new_id()
  local rc = C.lr_ctl_redis_start(host, id, n, argv, argvlen, errbuf, 512)
  if rc ~= 0 then return nil, ffi.string(errbuf) end
  waits[id], task.wait = task, id
  return co_yield()
end

function M.now() return C.lr_ctl_now() end

---------------------------------------------------------------------------
-- The events (core/daemon/control.c via bridge.c)

local function attach(ev)
  host, is_control, stopped = ev.host, ev.control == 1, false
  if not is_control then return end
  for _, d in ipairs(declared) do
    if d.spawn then
      local ok, err = schedule_spawn(d.fn, d.label)
      if not ok then log(C.LR_LOG_ERROR, d.label .. ": cannot start: " .. err) end
    else
      start_timer(d)
    end
  end
end

local function stop()
  -- C has cancelled every timer and request of this state already
  host, is_control, stopped = nil, false, true
  timers, starts, waits, tasks, current = {}, {}, {}, {}, nil
end

local function tick(t)
  if t.task then
    log(C.LR_LOG_DEBUG, t.label .. ": the previous run still waits; tick skipped")
    return
  end
  start_task(t.fn, t.label, t)
end

function M.event(ptr)
  local ev = ffi.cast("struct lr_ctl_event *", ptr)
  local kind = ev.kind
  if kind == C.LR_CTL_ABORT then
    -- the last run was cut short in C (its budget): its coroutine is dead
    local task = current
    current = nil
    local msg = ev.err ~= nil and ffi.string(ev.err) or "failed"
    if task then
      log(C.LR_LOG_ERROR, ("%s failed: %s"):format(task.label, msg))
      finish(task)
    else
      log(C.LR_LOG_ERROR, "control: " .. msg)
    end
    return
  end
  if current then
    -- a run cut short without an ABORT (cannot happen; be safe)
    finish(current)
    current = nil
  end
  if kind == C.LR_CTL_ATTACH then return attach(ev) end
  if kind == C.LR_CTL_STOP then return stop() end
  local id = ev.id
  if kind == C.LR_CTL_TIMER then
    local t = timers[id]
    if t then return tick(t) end
    local s = starts[id]
    if s then
      starts[id] = nil
      return start_task(s.fn, s.label, nil)
    end
    local task = waits[id]
    if task then
      waits[id], task.wait = nil, nil
      return run(task)
    end
    return
  end
  if kind == C.LR_CTL_REDIS then
    local task = waits[id]
    if not task then return end
    waits[id], task.wait = nil, nil
    if ev.err ~= nil then return run(task, nil, ffi.string(ev.err)) end
    current = task  -- decoding may meet the memory cap: ABORT drops it
    local v = decode_reply(ffi.string(ev.body, ev.body_len), 1)
    current = nil
    return run(task, v)
  end
  if kind == C.LR_CTL_HTTP then
    local task = waits[id]
    if not task then return end
    waits[id], task.wait = nil, nil
    current = task  -- building the reply may meet the memory cap: ABORT drops it
    if ev.err ~= nil then
      local e = ffi.string(ev.err)
      current = nil
      return run(task, nil, e)
    end
    local res = { status = ev.status, headers = parse_fields(ffi.string(ev.fields, ev.fields_len)),
                  body = ffi.string(ev.body, ev.body_len) }
    current = nil
    return run(task, res)
  end
end

-- For specs and the README: how many of this state's timers and tasks live.
function M.counts()
  local nt, nk = 0, 0
  for _ in pairs(timers) do nt = nt + 1 end
  for _ in pairs(tasks) do nk = nk + 1 end
  return nt, nk
end

return M
