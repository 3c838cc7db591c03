-- The hook and config budget end to end (issue "Security", items 4 and 5):
-- everything a hook or a config can reach stays inside its budget.
--
--   * hooks: a backtracking string.match on a 250-dot host sent by one
--     unauthenticated SOCKS5 request, an xpcall handler that loops, a loop
--     of nested xpcalls, an error object (or a refusal reason) whose
--     __tostring loops, a catastrophic string.find, a hook recursing
--     through string.gsub.  Each is refused (or, for a connect hook,
--     logged) as a budget failure or a C-stack failure, the daemon keeps
--     serving, and other connections are served while it happens;
--   * the config: a top-level `while true do end` fails `luaray -t` and the
--     start with file:line and the budget, the same config on SIGHUP fails
--     the reload (the old generation serves on, SIGTERM still stops the
--     daemon), and a gsub recursion in the config on SIGHUP fails the
--     reload instead of crashing the daemon;
--   * the budgeted string functions (our own matcher, bridge.c) and
--     table.sort give exactly LuaJIT's answers: a few thousand random
--     patterns and subjects run through the daemon's functions (in a config
--     checked with `luaray -t`) and through this LuaJIT, compared;
--   * luaray.budget { seconds =, instructions = } is checked like any
--     declaration (file:line) and changes the hook budget.
--
-- Bounds are by events and counts; the time bounds are generous multiples
-- of the budgets (0.25 s per hook call, 5 s per config load), so a loaded
-- machine passes, while a hook that runs to its natural end (2 s and more
-- for the 250-dot match here, forever for the others) does not.
local E = require "e2e.support"
local psignal = require "posix.signal"
local socket = require "socket"

local KiB = 1024
local HOOK_BOUND = 1.5     -- s: a refused over-budget hook call (budget 0.25 s)
local LOAD_WAIT = 60       -- s: a config load over its 5 s budget (ASan, loaded machine)

-- 250 dots and an 'x': 251 bytes, a valid SOCKS5 domain length.  LuaJIT's
-- own matcher spends about 2 s on it with the pattern below.
local DOTS = ("."):rep(250) .. "x"

local function hup(p) assert(psignal.kill(p.pid, psignal.SIGHUP)) end

-- A SOCKS5 CONNECT request for `host` sent without waiting for anything.
local function socks_request_nowait(port, host, dport)
  local s = assert(E.tcp_connect("127.0.0.1", port, 3))
  s:settimeout(3)
  assert(s:send("\5\1\0" .. "\5\1\0\3" .. string.char(#host) .. host ..
                string.char(math.floor(dport / 256), dport % 256)))
  return s
end

-- Reads the SOCKS5 greeting and reply from a request made by
-- socks_request_nowait: the reply code (0 = success), or "closed"/"timeout".
local function socks_reply(s, timeout)
  s:settimeout(timeout)
  local g, err = s:receive(2)
  if not g then return err end
  local r, rerr = s:receive(4)
  if not r then return rerr end
  return r:byte(2)
end

local function wait_exit(h, p, timeout)
  local deadline = E.now() + timeout
  for _ = 1, 100000 do
    if not h:alive(p) then return true end
    if E.now() >= deadline then return false end
    E.sleep(0.02)
  end
  return not h:alive(p)
end

describe("budget", function()
  local h = E.new("budget")
  local echo

  lazy_setup(h:guard(function()
    echo = h:echo_server()
  end))

  lazy_teardown(function() h:cleanup() end)

  local function echo_via(port, n)
    local s, err = E.socks5_connect("127.0.0.1", port, "127.0.0.1", echo.port, nil, nil, 5)
    if not s then return false, "socks5 connect: " .. tostring(err) end
    return E.transfer_echo(s, n or 4 * KiB, { timeout = 10 })
  end

  local function config(port, body)
    return table.concat({
      'luaray.log { level = "info", access = true }',
      ('luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }'):format(port),
      'luaray.outbound "direct" { type = "direct" }',
      body or "",
    }, "\n") .. "\n"
  end

  local function start(body, name)
    local port = E.free_port()
    local p = h:luaray(name or "server", config(port, body), { ports = { port } })
    return p, port
  end

  local function assert_alive(p)
    assert.is_true(h:alive(p), ("the daemon is gone (%s %s)"):format(tostring(p.status), tostring(p.code)))
  end

  -------------------------------------------------------------------------
  describe("hooks", function()
    -- Hooks keyed by destination host; everything else is served.
    local HOOKS = [[
local CDN = "^(.-)%.(.-)%.(.-)%.(.-)%.cdn%.example$"
luaray.on("route", function(ctx)
  local host = ctx.dst.host
  local a = host:match(CDN)        -- a plausible rule: the first labels of a CDN name
  if a then return "direct" end
  if host == "xpcall-loop.test" then
    while true do xpcall(function() error("x") end, function(e) while true do end end) end
  end
  if host == "xpcall-nested.test" then
    while true do
      xpcall(function()
        xpcall(function() error("inner") end, function(e) while true do end end)
      end, function(e) return e end)
    end
  end
  if host == "tostring.test" then
    error(setmetatable({}, { __tostring = function() while true do end end }))
  end
  if host == "find.test" then
    return (("a"):rep(20000)):find(".-.-.-b") and "direct"
  end
  if host == "gsub.test" then
    local function f(s) return (s:gsub(".", f)) end
    f("ab")
  end
  if host == "sort.test" then
    local t = {}
    for i = 1, 3000000 do t[i] = (i * 7919) % 1000003 end
    table.sort(t)
  end
end)
luaray.on("accept", function(ctx)
  if ctx.src.ip == "127.0.0.5" then
    return false, setmetatable({}, { __tostring = function() while true do end end })
  end
end)
]]

    local srv, port
    before_each(h:guard(function() srv, port = start(HOOKS) end))
    after_each(function() if srv then h:stop_luaray(srv); srv = nil end end)

    -- Sends the request for `host`, runs an echo through another connection
    -- while the hook runs, then checks that the request was refused and its
    -- refusal logged with `log_pattern` (a new line each time).
    local function refused_while_serving(host, log_pattern)
      local before = E.count_matches(E.read_file(srv.log), log_pattern)
      local t0 = E.now()
      local bad = socks_request_nowait(port, host, echo.port)
      local ok, err = echo_via(port)
      local echo_done = E.now() - t0
      local reply = socks_reply(bad, 10)
      local refused_after = E.now() - t0
      bad:close()
      assert_alive(srv)
      assert.is_true(ok, host .. ": the concurrent echo failed: " .. tostring(err))
      assert.is_true(reply ~= 0, host .. ": the request was not refused")
      assert(E.wait_log(srv, log_pattern, before + 1, 10))
      assert.is_true(echo_done < HOOK_BOUND,
        ("%s: the concurrent echo took %.2f s (the loop was held)"):format(host, echo_done))
      assert.is_true(refused_after < HOOK_BOUND,
        ("%s: refused after %.2f s"):format(host, refused_after))
      return refused_after
    end

    local BUDGET_LINE = "route hook failed: [^\n]*server[-%d]*%.lua:%d+: luaray: hook exceeded its budget"
    local function budget_line(host)
      return host:gsub("%p", "%%%0") .. ":%d+ %- up=0 down=0 [^\n]*" ..
        "luaray: hook exceeded its budget"
    end

    it("a backtracking match on a 250-dot host (one unauthenticated SOCKS5 request) is cut off; " ..
       "other connections are served meanwhile", h:guard(function()
      for _ = 1, 3 do
        refused_while_serving(DOTS, BUDGET_LINE)
      end
      local text = E.read_file(srv.log)
      assert.equal(3, E.count_matches(text, budget_line(DOTS)), "three access lines with the budget failure")
    end))

    it("an xpcall handler that loops, in a loop: refused as over budget", h:guard(function()
      refused_while_serving("xpcall-loop.test", budget_line("xpcall-loop.test"))
      refused_while_serving("xpcall-loop.test", budget_line("xpcall-loop.test"))
    end))

    it("nested xpcalls whose inner handler loops, in a loop: refused as over budget", h:guard(function()
      refused_while_serving("xpcall-nested.test", budget_line("xpcall-nested.test"))
    end))

    it("an error object or a refusal reason whose __tostring loops: converted inside the budget",
      h:guard(function()
      refused_while_serving("tostring.test", budget_line("tostring.test"))
      -- accept: `return false, reason` with a looping __tostring
      local before = E.count_matches(E.read_file(srv.log), "accept hook failed")
      local s = socket.tcp4()
      s:settimeout(3)
      assert(s:bind("127.0.0.5", 0))
      assert(s:connect("127.0.0.1", port))
      s:send("\5\1\0")
      local got = s:receive(2)
      s:close()
      assert.is_nil(got, "the refused client got a greeting reply")
      local text = assert(E.wait_log(srv, "accept hook failed", before + 1, 10))
      assert.is_truthy(text:find("accept hook failed[^\n]*luaray: hook exceeded its budget"), text)
      assert.is_true(echo_via(port))
      assert_alive(srv)
    end))

    it("a catastrophic string.find is stopped by the budget", h:guard(function()
      refused_while_serving("find.test", budget_line("find.test"))
      refused_while_serving("find.test", budget_line("find.test"))
    end))

    it("a sort of 3 million elements counts against the budget", h:guard(function()
      refused_while_serving("sort.test", budget_line("sort.test"))
    end))

    it("a hook recursing through string.gsub fails with a C-stack error instead of crashing",
      h:guard(function()
      local line = "gsub%.test:%d+ %- up=0 [^\n]*luaray: C stack overflow in string%.gsub"
      for _ = 1, 3 do refused_while_serving("gsub.test", line) end
      assert_alive(srv)
    end))
  end)

  -------------------------------------------------------------------------
  describe("config", function()
    local function config_file(name, port, body)
      return h:write(name .. ".lua", config(port, body))
    end

    it("a top-level infinite loop fails luaray -t and the start with file:line and the budget",
      h:guard(function()
      local file = config_file("loop", 1, "local n = 0\nwhile true do n = n + 1 end")
      local want = "luaray: " .. file:gsub("%p", "%%%0") .. ":5: luaray: config exceeded its budget"
      local t0 = E.now()
      local code, out = h:exec("check-loop", { E.luaray_bin(), "-t", "-c", file }, { timeout = LOAD_WAIT })
      local took = E.now() - t0
      assert.equal(1, code, out)
      assert.is_truthy(out:find(want), out)
      assert.is_true(took >= 4.5, ("luaray -t gave up after %.2f s, before the 5 s budget"):format(took))
      code, out = h:exec("start-loop", { E.luaray_bin(), "-c", file }, { timeout = LOAD_WAIT })
      assert.equal(1, code, out)
      assert.is_truthy(out:find(want), out)
      -- a loop inside an included file names that file
      local inc = h:write("inc-loop.lua", "local x = 1\nrepeat x = x + 1 until false\n")
      file = config_file("incloop", 1, 'luaray.include "inc-loop.lua"')
      code, out = h:exec("check-incloop", { E.luaray_bin(), "-t", "-c", file }, { timeout = LOAD_WAIT })
      assert.equal(1, code, out)
      assert.is_truthy(out:find(inc:gsub("%p", "%%%0") .. ":2: luaray: config exceeded its budget"), out)
    end))

    it("a config that loops on SIGHUP: the reload fails, the old generation serves, SIGTERM stops it",
      h:guard(function()
      local srv, port = start(nil, "reload-loop")
      local file = srv.argv[3]
      assert.is_true(echo_via(port))
      local f = assert(io.open(file, "wb"))
      f:write(config(port, "while true do end"))
      f:close()
      hup(srv)
      local text = assert(E.wait_log(srv, "reload failed, keeping generation 1: [^\n]*:4: " ..
                                          "luaray: config exceeded its budget", 1, LOAD_WAIT))
      assert.is_truthy(text:find(file, 1, true), "the reload error does not name the file")
      assert_alive(srv)
      for _ = 1, 3 do assert.is_true(echo_via(port, 16 * KiB)) end
      -- a second bad reload behaves the same
      hup(srv)
      assert(E.wait_log(srv, "luaray: config exceeded its budget", 2, LOAD_WAIT))
      assert.is_true(echo_via(port))
      assert(psignal.kill(srv.pid, psignal.SIGTERM))
      assert.is_true(wait_exit(h, srv, 20), "SIGTERM did not stop the daemon")
      assert.equal("exited", srv.status)
      assert.equal(0, srv.code)
    end))

    it("a gsub recursion in the config on SIGHUP fails the reload; the daemon serves on", h:guard(function()
      local srv, port = start(nil, "reload-gsub")
      local file = srv.argv[3]
      local f = assert(io.open(file, "wb"))
      f:write(config(port, 'local function f(s) return (s:gsub(".", f)) end\nf("ab")'))
      f:close()
      hup(srv)
      assert(E.wait_log(srv, "reload failed, keeping generation 1: [^\n]*:4: luaray: C stack overflow " ..
                             "in string%.gsub", 1, LOAD_WAIT))
      assert_alive(srv)
      assert.is_true(echo_via(port, 16 * KiB))
      -- and a good config after it loads
      f = assert(io.open(file, "wb"))
      f:write(config(port, ""))
      f:close()
      hup(srv)
      assert(E.wait_log(srv, "reload: generation 2 serving", 1, LOAD_WAIT))
      assert.is_true(echo_via(port))
      h:stop_luaray(srv)
    end))

    it("other recursions through C (sort comparator, print, format, os.time) end in a Lua error",
      h:guard(function()
      -- LuaJIT's Lua stack fills before the C stack on these: "stack overflow"
      local cases = {
        "local function f() table.sort({ 3, 2, 1 }, function(a, b) f() return a < b end) end f()",
        "local o o = setmetatable({}, { __tostring = function() print(o) return 'x' end }) print(o)",
        "local o o = setmetatable({}, { __tostring = function() return string.format('%s', o) end }) " ..
          "local s = tostring(o)",
        "local t = setmetatable({}, { __index = function(t, k) return os.time(t) end }) os.time(t)",
      }
      for i, body in ipairs(cases) do
        local file = config_file("recursion-" .. i, 1, body)
        local code, out = h:exec("recursion", { E.luaray_bin(), "-t", "-c", file }, { timeout = LOAD_WAIT })
        assert.equal(1, code, body .. "\n" .. out)
        assert.is_truthy(out:find(file:gsub("%p", "%%%0") .. ":4: stack overflow"), body .. "\n" .. out)
      end
    end))

    it("luaray.budget is checked with file:line and sets the hook budget", h:guard(function()
      local cases = {
        { "luaray.budget(5)", "luaray.budget expects a table" },
        { "luaray.budget { seconds = 0 }", "'seconds' in budget must be a number of seconds > 0 and <= 10" },
        { "luaray.budget { seconds = 11 }", "'seconds' in budget must be" },
        { "luaray.budget { instructions = 10 }", "'instructions' in budget must be an integer from 1000" },
        { "luaray.budget { instructions = 1.5e3 + 0.5 }", "'instructions' in budget must be an integer" },
        { "luaray.budget { time = 1 }", "unknown key 'time' in budget" },
        { "luaray.budget {} luaray.budget {}", "luaray.budget is called twice" },
      }
      for i, c in ipairs(cases) do
        local file = config_file("budget-decl-" .. i, 1, c[1])
        local code, out = h:exec("check", { E.luaray_bin(), "-t", "-c", file })
        assert.equal(1, code, c[1] .. "\n" .. out)
        assert.is_truthy(out:find(file:gsub("%p", "%%%0") .. ":4: " .. c[2]:gsub("%p", "%%%0")),
          c[1] .. ": want '" .. c[2] .. "', got:\n" .. out)
      end
      -- a smaller instruction budget stops a hook that the default lets finish
      local hooks = ([[
luaray.on("route", function(ctx)
  if ctx.dst.port == %d then local n = 0 for i = 1, 2000000 do n = n + i end end
end)
]]):format(echo.port)
      local srv, port = start("luaray.budget { instructions = 100000, seconds = 10 }\n" .. hooks, "small")
      assert.is_false(echo_via(port))
      assert(E.wait_log(srv, "route hook failed: [^\n]*:%d+: luaray: hook exceeded its budget " ..
                             "%(100000 instructions%)", 1, 10))
      h:stop_luaray(srv)
      srv, port = start(hooks, "default")
      for _ = 1, 3 do assert.is_true(echo_via(port)) end
      assert.equal(0, E.count_matches(E.read_file(srv.log), "exceeded its budget"))
      h:stop_luaray(srv)
    end))
  end)

  -------------------------------------------------------------------------
  describe("budgeted string functions", function()
    -- The same code runs here (LuaJIT's functions) and in a config under
    -- `luaray -t` (the daemon's); it prints one line per case.
    local RUNNER = [=[
local function ser(...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if t == "string" then out[i] = "s" .. table.concat({ string.byte(v, 1, -1) }, ".")
    elseif t == "number" then out[i] = "n" .. string.format("%.17g", v)
    else out[i] = t .. ":" .. tostring(v) end
  end
  return table.concat(out, ",")
end
local function res(ok, ...)
  if ok then return ser(...) end
  local e = tostring((...)):gsub("[^ -~]", "?")
  local p = e:find(": ", 1, true)
  if p and e:sub(1, p - 1):find(":%d+$") then e = e:sub(p + 2) end
  return "E" .. e
end
local TREPL = { a = "<A>", b = false, ab = 7 }
local function frepl(x, y)
  if x == "a" then return nil end
  if x == "b" then return false end
  return "[" .. tostring(x) .. "|" .. tostring(y) .. "]"
end
local function run(c)
  if c.f == "find" then return res(pcall(string.find, c.s, c.p, c.init, c.plain)) end
  if c.f == "match" then return res(pcall(string.match, c.s, c.p, c.init)) end
  if c.f == "gmatch" then
    return res(pcall(function()
      local out = {}
      for a, b in string.gmatch(c.s, c.p) do
        out[#out + 1] = ser(a, b)
        if #out > 40 then break end
      end
      return table.concat(out, ";")
    end))
  end
  if c.f == "gsub" then
    local r = c.repl
    if c.rk == "table" then r = TREPL elseif c.rk == "function" then r = frepl end
    return res(pcall(string.gsub, c.s, c.p, r, c.max))
  end
  if c.f == "sort" then
    return res(pcall(function()
      local t = {}
      for i, v in ipairs(c.t) do t[i] = v end
      if c.desc then table.sort(t, function(a, b) return a > b end) else table.sort(t) end
      local out = {}
      for i, v in ipairs(t) do out[i] = tostring(v) end
      return table.concat(out, " ")
    end))
  end
  error("unknown case " .. tostring(c.f))
end
return run
]=]

    local ATOMS = { "a", "b", "x", ".", "%a", "%d", "%s", "%w", "%p", "%x", "%u", "%l", "%c",
                    "%g", "%z", "%A", "%S", "%D", "%.", "%%", "[ab]", "[^a]", "[a-c]", "[%d.]",
                    "[%a_]", "[]", "[^]", "%b()", "%bab", "%f[%w]", "%f[%W]", "%f[a]", "(", ")",
                    "()", "%1", "%2", "%0", "$", "^", "-", "[a", "%", "%b", "%fa", "\0", "1" }
    local QUANT = { "", "", "", "*", "+", "-", "?" }
    local SUBJ = { "a", "b", "x", ".", "(", ")", " ", "1", "A", "_", "\0", "\n", "\200", "%" }

    local function pick(t) return t[math.random(#t)] end

    local function pattern()
      local out = {}
      if math.random(4) == 1 then out[1] = "^" end
      for _ = 1, math.random(0, 5) do out[#out + 1] = pick(ATOMS) .. pick(QUANT) end
      if math.random(5) == 1 then out[#out + 1] = "$" end
      return table.concat(out)
    end

    local function subject()
      local out = {}
      for i = 1, math.random(0, 14) do out[i] = pick(SUBJ) end
      return table.concat(out)
    end

    local function cases(n)
      math.randomseed(20240519)
      local list = {}
      local fns = { "find", "find", "match", "match", "gmatch", "gsub", "gsub", "gsub" }
      for i = 1, n do
        local c = { f = pick(fns), s = subject(), p = pattern() }
        if c.f == "find" or c.f == "match" then
          if math.random(3) == 1 then c.init = math.random(-4, 16) end
          if c.f == "find" and math.random(4) == 1 then c.plain = true end
        elseif c.f == "gsub" then
          c.rk = pick { "string", "string", "table", "function" }
          if c.rk == "string" then c.repl = pick { "", "-", "%0", "<%1>", "%2%1", "%%", "x%", "%a" } end
          if math.random(3) == 1 then c.max = math.random(0, 3) end
        end
        list[i] = c
      end
      -- table.sort: numbers (with repeats) and strings, both orders
      for i = 1, 200 do
        local t, strings = {}, i % 2 == 0
        for k = 1, math.random(0, 60) do
          local v = math.random(1, 25)
          t[k] = strings and ("k" .. v) or v
        end
        list[#list + 1] = { f = "sort", t = t, desc = i % 3 == 0 }
      end
      return list
    end

    local function literal(v)
      local t = type(v)
      if t == "string" then return ("%q"):format(v):gsub("\n", "n") end
      if t == "table" then
        local parts = {}
        for k, x in pairs(v) do
          parts[#parts + 1] = "[" .. literal(k) .. "]=" .. literal(x)
        end
        return "{" .. table.concat(parts, ",") .. "}"
      end
      return tostring(v)
    end

    it("find, match, gmatch, gsub and table.sort give LuaJIT's answers (4,000 random cases)",
      h:guard(function()
      local list = cases(4000)
      local run = assert(loadstring(RUNNER))()
      local want = {}
      for i, c in ipairs(list) do want[i] = run(c) end
      local lines = { config(1, ""), "local run = (function()", RUNNER, "end)()", "local CASES = {" }
      for _, c in ipairs(list) do lines[#lines + 1] = literal(c) .. "," end
      lines[#lines + 1] = "}"
      lines[#lines + 1] = 'for i, c in ipairs(CASES) do print("R" .. i .. "\\t" .. run(c)) end'
      local file = h:write("strings.lua", table.concat(lines, "\n") .. "\n")
      local code, out = h:exec("strings", { E.luaray_bin(), "-t", "-c", file }, { timeout = 60 })
      assert.equal(0, code, out:sub(1, 2000))
      local got = {}
      for i, r in out:gmatch("R(%d+)\t([^\n]*)") do got[tonumber(i)] = r end
      local diffs = {}
      for i, c in ipairs(list) do
        if got[i] ~= want[i] then
          diffs[#diffs + 1] = ("case %d %s(%s, %s%s): LuaJIT %s, luaray %s"):format(i, c.f,
            literal(c.s), literal(c.p or ""), c.init and (", init " .. c.init) or "", want[i], tostring(got[i]))
          if #diffs >= 10 then break end
        end
      end
      assert.equal(0, #diffs, table.concat(diffs, "\n"))
      -- the cases reach every kind of answer: matches, misses and errors
      local kinds = {}
      for _, r in ipairs(want) do kinds[r:sub(1, 1)] = true end
      assert.is_true(kinds.E and kinds.s and kinds.n, "the random cases miss a kind of result")
    end))
  end)
end)
