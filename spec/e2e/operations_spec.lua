-- What an operator sees in the daemon's logs (issue "Renovation", section 3):
--
--   * an access log that cannot be opened refuses the start with
--     file:line; on a reload the running log stays and the reload says why;
--   * a reload logs every listener in order: "listening on" for a new one,
--     "kept" for one handed over, "removed" for one closed, then
--     "reload: generation N serving";
--   * a SOCKS or HTTP inbound without accounts on a non-loopback address is
--     an open proxy: a warning at start and at each reload, once per
--     inbound (that daemon runs in a network namespace of its own, so the
--     wildcard listener it opens is reachable from nowhere);
--   * a connect failure through a VMess outbound names the server in the
--     access line, not only the destination.
--
-- Everything is driven by log lines and connection events, with generous
-- deadlines (a busy machine, ASan).
local E = require "e2e.support"
local psignal = require "posix.signal"

local read_file = E.read_file

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

  it("reload logs each listener in order: listening on (new), kept, removed, then serving", h:guard(function()
    local keep, gone, new = E.free_port(), E.free_port(), E.free_port()
    local p = start("reload-msgs", ([[
luaray.inbound "keep-in" { type = "socks", listen = "127.0.0.1:%d" }
luaray.inbound "gone-in" { type = "http", listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
luaray.log { level = "info", access = false }
]]):format(keep, gone), { keep, gone })
    local at_start = lines_of(read_file(p.log))
    assert.truthy(index_of(at_start, ("inbound keep-in (socks) listening on 127.0.0.1:%d"):format(keep)),
                  table.concat(at_start, "\n"))
    assert.truthy(index_of(at_start, ("inbound gone-in (http) listening on 127.0.0.1:%d"):format(gone)),
                  table.concat(at_start, "\n"))

    write(p, ([[
luaray.inbound "keep-in" { type = "socks", listen = "127.0.0.1:%d" }
luaray.inbound "new-in" { type = "http", listen = "127.0.0.1:%d" }
luaray.outbound "direct" { type = "direct" }
luaray.log { level = "info", access = false }
]]):format(keep, new))
    local outcome, text = reload(p)
    assert.equal("ok", outcome, text)
    local l = lines_of(text)
    local kept = index_of(l, ("inbound keep-in on 127.0.0.1:%d kept"):format(keep))
    local opened = index_of(l, ("inbound new-in (http) listening on 127.0.0.1:%d"):format(new))
    local removed = index_of(l, ("inbound gone-in on 127.0.0.1:%d removed"):format(gone))
    local serving = index_of(l, "reload: generation 2 serving")
    assert.truthy(kept and opened and removed and serving, "lines missing after the reload:\n" .. text)
    assert.is_true(kept < opened and opened < removed and removed < serving,
                   "lines out of order after the reload:\n" .. text)
    assert.is_nil(index_of(l, "keep-in (socks) listening on"), "the kept listener is said to open:\n" .. text)
    -- and it is so
    assert(E.wait_port("127.0.0.1", new, 10))
    assert.is_true(E.port_bindable("127.0.0.1", gone), "the removed listener is still open")
  end))

  it("an open SOCKS/HTTP proxy (no accounts, not loopback) is warned about at start and at each reload",
     h:guard(function()
    -- a network namespace of its own: the 0.0.0.0 listener is reachable
    -- from nowhere (and the proxy only blackholes)
    local ns
    for _, flags in ipairs { { "-n" }, { "-r", "-n" } } do
      local argv = { "unshare" }
      for _, f in ipairs(flags) do argv[#argv + 1] = f end
      argv[#argv + 1] = "true"
      if h:exec("unshare-probe", argv) == 0 then ns = flags; break end
    end
    assert(ns, "unshare -n (or -r -n) cannot make a network namespace here; this spec needs one")
    local open, locked, lo = E.free_port(), E.free_port(), E.free_port()
    local file = h:write("open-proxy.lua", ([[
luaray.inbound "socks-open" { type = "socks", listen = "0.0.0.0:%d" }
luaray.inbound "http-locked" { type = "http", listen = "0.0.0.0:%d", accounts = { { user = "u", pass = "p" } } }
luaray.inbound "socks-lo" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "nothing" { type = "blackhole" }
luaray.log { level = "info", access = false }
]]):format(open, locked, lo))
    local argv = { "unshare" }
    for _, f in ipairs(ns) do argv[#argv + 1] = f end
    for _, a in ipairs { E.luaray_bin(), "-c", file } do argv[#argv + 1] = a end
    local env = {}
    if os.getenv("LURAY_ASAN") then env.ASAN_OPTIONS = "detect_leaks=1:abort_on_error=1" end
    local p = h:spawn("open-proxy", argv, { env = env, keep_preload = true })
    p.luaray = true
    assert(E.wait_log(p, "inbound socks%-lo %(socks%) listening on", 1, 20))
    local WARN = "%[warn%] inbound (%S+) %(%a+%) on (%S+) has no accounts: an open proxy"
    local function warned(text)
      local out = {}
      for tag, addr in text:gmatch(WARN) do out[#out + 1] = tag .. " " .. addr end
      return out
    end
    local want = "socks-open 0.0.0.0:" .. open
    assert.same({ want }, warned(read_file(p.log)))
    assert(psignal.kill(p.pid, psignal.SIGHUP))
    local text = assert(E.wait_log(p, "reload: generation 2 serving", 1, 20))
    assert.same({ want, want }, warned(text))
    -- the warning comes with its inbound's line, before the reload is done
    local l = lines_of(text)
    local kept = index_of(l, "inbound socks-open on 0.0.0.0:" .. open .. " kept")
    local second = index_of(l, "has no accounts", index_of(l, "has no accounts") + 1)
    assert.truthy(kept and second and kept < second and second < index_of(l, "reload: generation 2 serving"), text)
  end))

  it("a connect failure through a VMess outbound names the server in the access line", h:guard(function()
    local socks = E.free_port()
    local servers = { { "127.0.0.1", E.free_port() } }
    if E.has_ipv6() then servers[2] = { "::1", E.free_port({ "::1" }) } end
    for i, sv in ipairs(servers) do
      local host = sv[1]:find(":", 1, true) and "[" .. sv[1] .. "]" or sv[1]
      local port = i == 1 and socks or E.free_port()
      local p = start("vmess-fail", ([[
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "upstream" { type = "vmess", server = "%s:%d", id = "%s" }
luaray.log { level = "info", access = true }
]]):format(port, host, sv[2], E.uuid()), { port })
      local s, err = E.socks5_connect("127.0.0.1", port, "127.0.0.1", 9, nil, nil, 10)
      if s then s:close() end
      assert.is_nil(s, "the CONNECT through a refused server succeeded")
      local text = assert(E.wait_log(p, "socks%-in %- tcp 127%.0%.0%.1:9 upstream ", 1, 20))
      local want = ("connect failed: server %s:%d (upstream): Connection refused"):format(host, sv[2])
      assert.truthy(text:find(want, 1, true), ("%q not in the access line (client saw: %s):\n%s")
        :format(want, tostring(err), text))
      h:stop_luaray(p)
    end
  end))
end)
