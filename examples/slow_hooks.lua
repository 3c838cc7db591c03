-- Measuring hooks: every hook is wrapped so that a call slower than
-- SLOW_MS milliseconds prints one line ("slow hook: route took 12.3 ms
-- (dst example.com:443)").
--
--   luaray -c examples/slow_hooks.lua
--
-- Why: hooks run on the daemon's one event loop, so a slow hook delays
-- every connection, not just its own.  Each call also has a hard budget
-- (instructions and wall-clock time, about a quarter of a second): a hook
-- that hits it fails, and a failing accept/auth/route hook refuses its
-- connection.  This wrapper shows the slow calls long before that.
--
-- The wrapper passes the hook's results through unchanged and re-raises
-- its errors, so wrapping changes nothing but the log.  os.clock() is the
-- process's CPU time, which is what a hook spends: hooks cannot block.
-- The lines go to standard output (print).
luaray.log { level = "info", access = true }

luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080" }
luaray.outbound "direct" { type = "direct" }
luaray.outbound "block" { type = "blackhole" }

local SLOW_MS = 20

local clock = os.clock
local fmt = string.format

-- A short description of the connection, for the log line.
local function describe(ctx)
  if type(ctx) ~= "table" then return "generation " .. tostring(ctx) end
  if ctx.dst then return fmt("dst %s:%d", ctx.dst.host, ctx.dst.port) end
  return fmt("src %s:%d", ctx.src.ip, ctx.src.port)
end

local function timed(name, fn)
  return function(ctx, ...)
    local t0 = clock()
    local function done(ok, ...)
      local ms = (clock() - t0) * 1000
      if ms >= SLOW_MS then
        print(fmt("slow hook: %s took %.1f ms (%s)", name, ms, describe(ctx)))
      end
      if not ok then error((...), 0) end   -- the hook's own error, unchanged
      return ...
    end
    return done(pcall(fn, ctx, ...))
  end
end

-- luaray.on, measured.
local function on(name, fn) luaray.on(name, timed(name, fn)) end

-- A deliberately naive route hook: every destination is checked against a
-- list of Lua patterns one by one (a list converted from some other tool's
-- format, say).  It is correct but its cost grows with the list; the
-- wrapper shows by how much.  Compiled rules (luaray.route) or a set
-- lookup would do the same in constant time.
local PATTERNS = {}
for i = 1, 2000 do PATTERNS[i] = "^ad" .. i .. "%.[%w%-]+%.example$" end

on("route", function(ctx)
  local host = ctx.dst and ctx.dst.host
  if not host then return nil end
  for i = 1, #PATTERNS do
    if host:find(PATTERNS[i]) then return "block" end
  end
  return nil
end)

on("connect", function(ctx) end)
