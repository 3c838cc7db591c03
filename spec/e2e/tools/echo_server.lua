-- The end-to-end target server (LuaJIT + luasocket, one socket.select loop).
--
--   luajit echo_server.lua --port P [--source-port P2] [--sink-port P3]
--          [--results FILE] [--host H]... [--lifetime SECONDS]
--
-- On every --host (default 127.0.0.1; ::1 allowed):
--   TCP P   echo: everything read is written back; after the peer's FIN the
--           rest of the echo is sent, then our side closes.
--   UDP P   echo: each datagram is sent back to its sender.
--   TCP P2  source: reads a line "N SEED\n", sends N bytes of
--           e2e.support's stream(SEED), then closes.
--   TCP P3  sink: reads until the peer's FIN, then answers "COUNT FNV\n"
--           (FNV-1a 32 of everything read, hex) and appends the same line
--           to --results (connections that sent nothing, such as port
--           probes, are not recorded). Through v2ray 4.34 the FIN never
--           arrives (it does not propagate half-close): the line is written
--           when v2ray closes the connection, a second or two later.
-- All sockets are non-blocking; reads and writes are interleaved, and a
-- connection stops reading while 1 MiB of its echo is unsent
-- (backpressure). The process exits by itself after --lifetime seconds
-- (default 900), so a leaked server cannot outlive a run by much.
-- --corrupt-at N (for testing the harness itself): the TCP echo alters the
-- byte at offset N (0-based) of every connection.
local root = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../.."
package.path = root .. "/?.lua;" .. package.path
local E = require "e2e.support"
local socket = require "socket"

local opts = { hosts = {}, lifetime = 900 }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i], arg[i + 1]
    if k == "--host" then opts.hosts[#opts.hosts + 1] = v
    elseif k == "--port" then opts.port = tonumber(v)
    elseif k == "--source-port" then opts.source = tonumber(v)
    elseif k == "--sink-port" then opts.sink = tonumber(v)
    elseif k == "--results" then opts.results = v
    elseif k == "--lifetime" then opts.lifetime = tonumber(v)
    elseif k == "--corrupt-at" then opts.corrupt_at = tonumber(v)
    else io.stderr:write("echo_server: unknown option ", tostring(k), "\n"); os.exit(2) end
    i = i + 2
  end
end
assert(opts.port, "--port needed")
if #opts.hosts == 0 then opts.hosts[1] = "127.0.0.1" end

local OUT_LIMIT = 1024 * 1024      -- unsent echo bytes before we stop reading
local MAX_CONNS = 900              -- socket.select uses fd_set (1024)
local IDLE = 300                   -- seconds without progress before a connection is dropped

local listeners, udps = {}, {}     -- listening socket -> mode
local conns = {}                   -- socket -> connection state
local nconns = 0

local function listen(host, port, mode)
  local s = host:find(":", 1, true) and socket.tcp6() or socket.tcp4()
  assert(s:setoption("reuseaddr", true))
  if host:find(":", 1, true) then s:setoption("ipv6-v6only", true) end
  assert(s:bind(host, port))
  assert(s:listen(128))
  s:settimeout(0)
  listeners[s] = mode
end

for _, h in ipairs(opts.hosts) do
  local u = h:find(":", 1, true) and socket.udp6() or socket.udp4()
  if h:find(":", 1, true) then u:setoption("ipv6-v6only", true) end
  assert(u:setsockname(h, opts.port))
  u:settimeout(0)
  udps[#udps + 1] = u
  listen(h, opts.port, "echo")
  if opts.source then listen(h, opts.source, "source") end
  if opts.sink then listen(h, opts.sink, "sink") end
end
print(("echo_server: pid %s, echo %d (tcp+udp), source %s, sink %s on %s"):format(
  tostring(require("posix.unistd").getpid()), opts.port, tostring(opts.source),
  tostring(opts.sink), table.concat(opts.hosts, " ")))
io.stdout:flush()

local function queue(c, data)
  c.out[#c.out + 1] = data
  c.outbytes = c.outbytes + #data
end

local function close(c)
  c.s:close()
  conns[c.s] = nil
  nconns = nconns - 1
end

-- Source mode: keep up to 256 KiB queued until N bytes are produced.
local function produce(c)
  while c.want and c.produced < c.want and c.outbytes < 256 * 1024 do
    local n = math.min(65536, c.want - c.produced)
    queue(c, c.stream:next(n))
    c.produced = c.produced + n
  end
end

local function on_data(c, data)
  if c.mode == "echo" then
    local at = opts.corrupt_at and opts.corrupt_at - c.count
    if at and at >= 0 and at < #data then     -- flip one byte (checks the checkers)
      data = data:sub(1, at) .. string.char((data:byte(at + 1) + 1) % 256) .. data:sub(at + 2)
    end
    c.count = c.count + #data
    queue(c, data)
  elseif c.mode == "sink" then
    c.count = c.count + #data
    c.fnv = E.fnv1a32(data, c.fnv)
  elseif c.mode == "source" and not c.want then
    c.line = c.line .. data
    local n, seed = c.line:match("^(%d+) (%d+)\n")
    if n then
      c.want, c.produced, c.stream = tonumber(n), 0, E.stream(tonumber(seed))
      produce(c)
    elseif #c.line > 64 then
      c.dead = "bad source request"
    end
  end
end

local function on_eof(c)
  c.eof = true
  if c.mode == "sink" then
    local line = ("%d %08x\n"):format(c.count, c.fnv or E.fnv1a32(""))
    queue(c, line)
    if opts.results and c.count > 0 then
      local f = io.open(opts.results, "ab")
      if f then f:write(line); f:close() end
    end
  end
end

-- A connection is finished when nothing is left to send and either the peer
-- has closed its side (echo, sink) or the source has produced everything.
local function finished(c)
  if c.outbytes > 0 then return false end
  if c.mode == "source" then return c.want ~= nil and c.produced >= c.want end
  return c.eof
end

local function do_read(c)
  for _ = 1, 16 do
    local data, err, partial = c.s:receive(65536)
    local d = data or partial
    if d and #d > 0 then c.active = socket.gettime(); on_data(c, d) end
    if err == "closed" then on_eof(c); return end
    if err then
      if err ~= "timeout" then c.dead = err end
      return
    end
    if c.mode == "echo" and c.outbytes >= OUT_LIMIT then return end
  end
end

local function do_write(c)
  for _ = 1, 64 do
    local head = c.out[1]
    if not head then return end
    local last, err, lastpart = c.s:send(head, c.outi)
    local idx = last or lastpart or (c.outi - 1)
    c.outbytes = c.outbytes - (idx - c.outi + 1)
    if idx > c.outi - 1 then c.active = socket.gettime() end
    if idx >= #head then
      table.remove(c.out, 1)
      c.outi = 1
    else
      c.outi = idx + 1
    end
    if err then
      if err ~= "timeout" then c.dead = err end
      return
    end
    if c.mode == "source" then produce(c) end
  end
end

local function accept(ls, mode)
  for _ = 1, 64 do
    local s = ls:accept()
    if not s then return end
    if nconns >= MAX_CONNS then
      s:close()
    else
      s:settimeout(0)
      s:setoption("tcp-nodelay", true)
      conns[s] = { s = s, mode = mode, out = {}, outi = 1, outbytes = 0, eof = false,
                   count = 0, fnv = nil, line = "", active = socket.gettime() }
      nconns = nconns + 1
    end
  end
end

local function udp_echo(u)
  for _ = 1, 256 do
    local d, ip, port = u:receivefrom(65535)
    if not d then return end
    u:sendto(d, ip, port)
  end
end

local stop_at = socket.gettime() + opts.lifetime
local last_sweep = socket.gettime()
while socket.gettime() < stop_at do
  local rset, wset = {}, {}
  for ls in pairs(listeners) do rset[#rset + 1] = ls end
  for _, u in ipairs(udps) do rset[#rset + 1] = u end
  for s, c in pairs(conns) do
    if not c.eof and not (c.mode == "echo" and c.outbytes >= OUT_LIMIT) then rset[#rset + 1] = s end
    if c.outbytes > 0 then wset[#wset + 1] = s end
  end
  local r, w = socket.select(rset, wset, 1.0)
  local isudp = {}
  for _, u in ipairs(udps) do isudp[u] = true end
  for _, s in ipairs(r) do
    if listeners[s] then accept(s, listeners[s])
    elseif isudp[s] then udp_echo(s)
    elseif conns[s] then do_read(conns[s]) end
  end
  for _, s in ipairs(w) do
    local c = conns[s]
    if c and not c.dead then do_write(c) end
  end
  local now = socket.gettime()
  local sweep = now - last_sweep >= 1
  if sweep then last_sweep = now end
  for _, c in pairs(conns) do
    if c.dead then
      close(c)
    elseif finished(c) then
      close(c)
    elseif sweep and now - c.active > IDLE then
      close(c)
    end
  end
end
print("echo_server: lifetime over, exiting")
