-- What an operator sees in the daemon's logs (issue "Renovation", section 3):
--
--   * an access log that cannot be opened refuses the start with
--     file:line; on a reload the running log stays and the reload says why;
--
-- Everything is driven by log lines and connection events, with generous
-- deadlines (a busy machine, ASan).
local E = require "e2e.support"
local psignal = require "posix.signal"

local function read_file(path) return E.read_file(path) end

local function lines_of(text)
  local out = {}
  for l in text:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- Opens a TCP connection to a SOCKS5 inbound and closes it (a FIN) before
-- any byte: the inbound logs one access line for it, ending in POKED (the
-- harness's port probes end with an RST: "read failed" or "reset").
local POKED = "eof in handshake"
local function poke(port)
  local s = assert(E.tcp_connect("127.0.0.1", port, 5))
  s:close()
end

-- Waits (20 s) until `path` has n lines that contain `needle`.
local function wait_lines(path, needle, n)
  local deadline = E.now() + 20
  local got = 0
  for _ = 1, 100000 do
    got = 0
    for _, l in ipairs(lines_of(read_file(path))) do
      if l:find(needle, 1, true) then got = got + 1 end
    end
    if got >= n then return true end
    if E.now() >= deadline then break end
    E.sleep(0.02)
  end
  return nil, ("%s: %d line(s) with %q, wanted %d:\n%s"):format(path, got, needle, n, read_file(path))
end

-- Index of the first line of `list` (from `from`) containing `needle`.
local function index_of(list, needle, from)
  for i = from or 1, #list do
    if list[i]:find(needle, 1, true) then return i end
  end
end

describe("operations (what an operator sees in the logs)", function()
  local h = E.new("operations")
  lazy_teardown(function() h:cleanup() end)

  local function write(p, text)
    local f = assert(io.open(p.config, "wb"))
    f:write(text)
    f:close()
  end

  local function start(name, text, ports)
    local p = h:luaray(name, text, { ports = ports, timeout = 20 })
    p.config = h:path(p.name .. ".lua")
    return p
  end

  -- HUPs p and waits for the reload's outcome -> "ok" | "failed", the log
  -- text written since the HUP
  local function reload(p)
    local before = read_file(p.log)
    local ok_n = E.count_matches(before, "reload: generation %d+ serving")
    local bad_n = E.count_matches(before, "reload failed")
    assert(psignal.kill(p.pid, psignal.SIGHUP))
    local deadline = E.now() + 20
    for _ = 1, 100000 do
      local t = read_file(p.log)
      if E.count_matches(t, "reload: generation %d+ serving") > ok_n then return "ok", t:sub(#before + 1) end
      if E.count_matches(t, "reload failed") > bad_n then return "failed", t:sub(#before + 1) end
      assert(h:alive(p), "luaray died on SIGHUP")
      if E.now() >= deadline then break end
      E.sleep(0.02)
    end
    error("no reload outcome logged within 20 s")
  end

  it("an access log that cannot be opened refuses the start with file:line; nothing listens",
     h:guard(function()
    local port = E.free_port()
    local bad = h:path("no-such-dir") .. "/access.log"
    local file = h:write("access-start.lua", ([[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
luaray.log { level = "info", access = "%s" }
]]):format(port, bad))
    local code, out = h:exec("access-start", { E.luaray_bin(), "-c", file }, { keep_preload = true, timeout = 20 })
    assert.equal(1, code, out)
    assert.truthy(out:find(("luaray: %s:3: cannot open access log '%s': No such file or directory"):format(file, bad),
                           1, true), out)
    assert.falsy(out:find("listening on", 1, true), out)
    assert.is_true(E.port_bindable("127.0.0.1", port), "the listener was opened")
  end))

  it("reload: an access log that cannot be opened keeps the running one and says why; a good one is used",
     h:guard(function()
    local port = E.free_port()
    local first, second = h:path("first-access.log"), h:path("second-access.log")
    local bad = h:path("still-no-dir") .. "/access.log"
    local function config(access)
      return ([[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
luaray.log { level = "info", access = "%s" }
]]):format(port, access)
    end
    local p = start("access-reload", config(first), { port })
    poke(port)
    assert(wait_lines(first, POKED, 1))

    write(p, config(bad))
    local outcome, text = reload(p)
    assert.equal("failed", outcome, text)
    assert.truthy(text:find(("reload failed, keeping generation 1: %s:3: cannot open access log '%s': " ..
                             "No such file or directory"):format(p.config, bad), 1, true), text)
    -- the running log is still the access log
    poke(port)
    assert(wait_lines(first, POKED, 2))

    write(p, config(second))
    outcome, text = reload(p)
    assert.equal("ok", outcome, text)
    poke(port)
    assert(wait_lines(second, POKED, 1))
    E.sleep(0.2)
    assert.equal(2, E.count_matches(read_file(first), POKED), "a line went to the old log:\n" .. read_file(first))
  end))

end)
