-- A TCP server that records and never answers (LuaJIT + luasocket).
--
--   luajit capture_server.lua --port P --dir DIR [--host H]... [--lifetime SECONDS]
--
-- Every accepted connection n (1, 2, ...) gets DIR/conn-<n>.bin, created at
-- accept and appended with every byte read (flushed at once), so a test sees
-- both how many connections arrived (the number of files) and what each one
-- sent. Nothing is ever written to a socket. A connection is closed when its
-- peer closes it (or after 300 s without bytes). Uses: capture the bytes a
-- real VMess client sends (point it here instead of at a server), and count
-- what a VMess server dials (make this the destination). The process exits
-- by itself after --lifetime seconds (default 900).
local socket = require "socket"

local opts = { hosts = {}, lifetime = 900 }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i], arg[i + 1]
    if k == "--host" then opts.hosts[#opts.hosts + 1] = v
    elseif k == "--port" then opts.port = tonumber(v)
    elseif k == "--dir" then opts.dir = v
    elseif k == "--lifetime" then opts.lifetime = tonumber(v)
    else io.stderr:write("capture_server: unknown option ", tostring(k), "\n"); os.exit(2) end
    i = i + 2
  end
end
assert(opts.port and opts.dir, "--port and --dir needed")
if #opts.hosts == 0 then opts.hosts[1] = "127.0.0.1" end

local MAX_CONNS = 900
local IDLE = 300
local listeners, conns, nconns, count = {}, {}, 0, 0

for _, h in ipairs(opts.hosts) do
  local s = h:find(":", 1, true) and socket.tcp6() or socket.tcp4()
  assert(s:setoption("reuseaddr", true))
  if h:find(":", 1, true) then s:setoption("ipv6-v6only", true) end
  assert(s:bind(h, opts.port))
  assert(s:listen(128))
  s:settimeout(0)
  listeners[s] = true
end
print(("capture_server: pid %s, port %d, dir %s"):format(
  tostring(require("posix.unistd").getpid()), opts.port, opts.dir))
io.stdout:flush()

local function close(c)
  c.s:close()
  c.f:close()
  conns[c.s] = nil
  nconns = nconns - 1
end

local stop_at = socket.gettime() + opts.lifetime
local last_sweep = socket.gettime()
while socket.gettime() < stop_at do
  local rset = {}
  for s in pairs(listeners) do rset[#rset + 1] = s end
  for s in pairs(conns) do rset[#rset + 1] = s end
  local r = socket.select(rset, nil, 1.0)
  for _, s in ipairs(r) do
    if listeners[s] then
      for _ = 1, 64 do
        local cs = s:accept()
        if not cs then break end
        if nconns >= MAX_CONNS then
          cs:close()
        else
          count = count + 1
          cs:settimeout(0)
          local f = assert(io.open(("%s/conn-%d.bin"):format(opts.dir, count), "wb"))
          f:setvbuf("no")
          conns[cs] = { s = cs, f = f, active = socket.gettime() }
          nconns = nconns + 1
        end
      end
    elseif conns[s] then
      local c = conns[s]
      for _ = 1, 16 do
        local data, err, partial = s:receive(65536)
        local d = data or partial
        if d and #d > 0 then c.f:write(d); c.active = socket.gettime() end
        if err then
          if err ~= "timeout" then close(c) end
          break
        end
      end
    end
  end
  local now = socket.gettime()
  if now - last_sweep >= 1 then
    last_sweep = now
    for _, c in pairs(conns) do
      if now - c.active > IDLE then close(c) end
    end
  end
end
print("capture_server: lifetime over, exiting")
