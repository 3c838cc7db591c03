-- A fault-injecting TCP relay for the hardening specs (LuaJIT + luasocket,
-- one socket.select loop, loopback only).
--
--   luajit faulty_relay.lua --port P --to-port Q --mode MODE [--to-host H]
--          [--delay S] [--gap S] [--reset-after N] [--cut-dir up|down]
--          [--cut-after N] [--lifetime S]
--
-- Every connection accepted on 127.0.0.1:P is relayed to H:Q (127.0.0.1)
-- according to MODE:
--   forward    plain relay
--   blackhole  accepts, reads and discards, never dials, never answers,
--              never closes (until the peer does)
--   reset      relays until N bytes (--reset-after, default 4096) went
--              downstream (Q -> client), then passes nothing more and 0.2 s
--              later closes both sides with an RST (SO_LINGER 0)
--   halfclose  relays upstream; the first downstream bytes are passed on,
--              then the downstream direction is shut (FIN to the client) and
--              nothing more is passed down; the client side stays open
--   slice      every byte written on its own, --gap (0.0005 s) apart
--   delay      every chunk read is written --delay (0.05 s) later
--   tailsplit  upstream, the last 8 bytes of every chunk read (a masked
--              WebSocket close frame, alone or right after the data
--              before it) go --delay later than the rest; downstream is read
--              16 KiB per --gap (0.01 s here), so the server's socket holds
--              a queue when it closes: a close that answers the late bytes
--              with an RST loses that queue
--   cut        relays, but after --cut-after N bytes went in direction
--              --cut-dir (up: client -> Q, down: Q -> client) that direction
--              gets a FIN and nothing more (what follows is read and
--              dropped); the other direction goes on: a stream cut at a
--              chosen byte
-- One line per connection event on stdout ("accept n", "close n ...").
-- Exits by itself after --lifetime seconds (default 600).
local socket = require "socket"

local o = { mode = "forward", to_host = "127.0.0.1", delay = 0.05,
            reset_after = 4096, lifetime = 600, cut_dir = "up", cut_after = 1000 }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i], arg[i + 1]
    if k == "--port" then o.port = tonumber(v)
    elseif k == "--to-port" then o.to_port = tonumber(v)
    elseif k == "--to-host" then o.to_host = v
    elseif k == "--mode" then o.mode = v
    elseif k == "--delay" then o.delay = tonumber(v)
    elseif k == "--gap" then o.gap = tonumber(v)
    elseif k == "--reset-after" then o.reset_after = tonumber(v)
    elseif k == "--cut-dir" then o.cut_dir = v
    elseif k == "--cut-after" then o.cut_after = tonumber(v)
    elseif k == "--lifetime" then o.lifetime = tonumber(v)
    else io.stderr:write("faulty_relay: unknown option ", tostring(k), "\n"); os.exit(2) end
    i = i + 2
  end
end
o.gap = o.gap or (o.mode == "tailsplit" and 0.01 or 0.0005)
assert(o.port and (o.to_port or o.mode == "blackhole"), "--port and --to-port needed")
io.stdout:setvbuf("line")

local srv = assert(socket.tcp4())
assert(srv:setoption("reuseaddr", true))
assert(srv:bind("127.0.0.1", o.port))
assert(srv:listen(256))
srv:settimeout(0)

local now = socket.gettime
local t_end = now() + o.lifetime
local conns, nconn = {}, 0

-- a direction: from `src` to `dst`; q = list of {due, data}; eof when src ended
local function dir(src, dst)
  return { src = src, dst = dst, q = {}, qi = 1, qn = 0, eof = false, shut = false, next_ok = 0,
           next_read = 0, bytes = 0 }
end

local function kill(c, why, rst)
  if c.dead then return end
  c.dead = true
  for _, s in ipairs { c.c, c.u } do
    if s then
      if rst then s:setoption("linger", { on = true, timeout = 0 }) end
      s:close()
    end
  end
  print(("close %d %s up=%d down=%d"):format(c.n, why, c.up and c.up.bytes or 0, c.down and c.down.bytes or 0))
end

local function on_accept(cs)
  nconn = nconn + 1
  cs:settimeout(0)
  cs:setoption("tcp-nodelay", true)
  local c = { n = nconn, c = cs }
  print("accept " .. nconn)
  if o.mode ~= "blackhole" then
    local us = socket.tcp4()
    us:settimeout(2)
    local ok, err = us:connect(o.to_host, o.to_port)
    if not ok then
      us:close()
      c.u = nil
      kill(c, "dial: " .. tostring(err))
      return
    end
    us:settimeout(0)
    us:setoption("tcp-nodelay", true)
    c.u = us
    c.up, c.down = dir(cs, us), dir(us, cs)
    c.up.name, c.down.name = "up", "down"
  end
  conns[#conns + 1] = c
end

local function pending(d) return d.qi <= d.qn end

local function read_into(c, d, t)
  local slow = o.mode == "tailsplit" and d.name == "down"
  local data, err, part = d.src:receive(slow and 16384 or 65536)
  data = data or part
  if slow then d.next_read = t + o.gap end
  if data and #data > 0 then
    if o.mode == "tailsplit" and d.name == "up" then
      if #data > 8 then
        d.qn = d.qn + 1
        d.q[d.qn] = { due = t, data = data:sub(1, -9) }
      end
      d.qn = d.qn + 1
      d.q[d.qn] = { due = t + o.delay, data = data:sub(-8) }
    elseif o.mode == "cut" and d.name == o.cut_dir and d.shut then
      -- cut: dropped
    elseif d.name == "down" and o.mode == "halfclose" and d.bytes > 0 then
      -- after the first downstream bytes nothing more is passed down
    else
      local due = t + (o.mode == "delay" and o.delay or 0)
      d.qn = d.qn + 1
      d.q[d.qn] = { due = due, data = data }
    end
    if d.name == "down" and o.mode == "halfclose" and not d.shut then
      d.hc_pending = true
    end
  end
  if err == "closed" then
    d.eof = true
    -- a client that left before sending anything (a port probe): pass an
    -- RST upstream rather than a FIN, as a probe of the server itself would
    -- (a VMess server holds a FIN'd empty handshake to its deadline)
    if d.name == "up" and d.bytes == 0 and not pending(d) then
      kill(c, "client left before sending", true)
    end
  end
end

local function write_from(c, d, t)
  if c.reset_at then return end
  while pending(d) do
    local e = d.q[d.qi]
    if e.due > t or d.next_ok > t then return end
    local chunk = o.mode == "slice" and e.data:sub(1, 1) or e.data
    if o.mode == "cut" and d.name == o.cut_dir then
      local left = o.cut_after - d.bytes
      if left <= 0 then
        if not d.shut then
          d.dst:shutdown("send")
          d.shut = true
          print(("cut %d %s after %d bytes"):format(c.n, d.name, d.bytes))
        end
        d.q, d.qi, d.qn = {}, 1, 0
        return
      end
      chunk = chunk:sub(1, left)
    end
    local last, err, lastpart = d.dst:send(chunk)
    local n = last or lastpart or 0
    if n > 0 then
      d.bytes = d.bytes + n
      e.data = e.data:sub(n + 1)
      if #e.data == 0 then d.q[d.qi] = nil; d.qi = d.qi + 1 end
      if o.mode == "slice" then d.next_ok = t + o.gap; return end
      if o.mode == "reset" and d.name == "down" and d.bytes >= o.reset_after then
        -- freeze both directions, let what was passed down be read, then RST
        c.reset_at = t + 0.2
        return
      end
    end
    if err == "closed" then kill(c, d.name .. " write closed"); return end
    if err then return end   -- timeout: the socket is full
  end
  if o.mode == "halfclose" and d.name == "down" and d.hc_pending and not d.shut then
    d.dst:shutdown("send")
    d.shut = true
    print(("halfclose %d after %d bytes down"):format(c.n, d.bytes))
  end
  if d.eof and not d.shut then
    d.dst:shutdown("send")
    d.shut = true
  end
end

for _ = 1, 1e9 do
  local t = now()
  if t >= t_end then break end
  -- drop dead connections
  local live = {}
  for _, c in ipairs(conns) do if not c.dead then live[#live + 1] = c end end
  conns = live
  local rd, wr, owner, wait = { srv }, {}, {}, 0.05
  for _, c in ipairs(conns) do
    if o.mode == "blackhole" then
      rd[#rd + 1] = c.c; owner[c.c] = c
    else
      for _, d in ipairs { c.up, c.down } do
        if not d.eof and not (d.name == "down" and d.shut and o.mode == "halfclose") then
          if d.next_read <= t then
            rd[#rd + 1] = d.src; owner[d.src] = c
          else
            wait = math.min(wait, d.next_read - t)
          end
        end
        if pending(d) then
          local due = math.max(d.q[d.qi].due, d.next_ok)
          if due <= t then wr[#wr + 1] = d.dst; owner[d.dst] = c
          else wait = math.min(wait, due - t) end
        end
      end
    end
  end
  local r, w = socket.select(rd, wr, math.max(wait, 0))
  t = now()
  for _, s in ipairs(r) do
    if s == srv then
      for _ = 1, 64 do
        local cs = srv:accept()
        if not cs then break end
        on_accept(cs)
      end
    else
      local c = owner[s]
      if c and not c.dead then
        if o.mode == "blackhole" then
          local _, err = s:receive(65536)
          if err == "closed" then kill(c, "peer closed") end
        else
          read_into(c, s == c.c and c.up or c.down, t)
        end
      end
    end
  end
  for _, c in ipairs(conns) do
    if not c.dead and c.reset_at and t >= c.reset_at then
      kill(c, "reset after " .. c.down.bytes, true)
    end
    if not c.dead and o.mode ~= "blackhole" then
      write_from(c, c.up, t)
      if not c.dead then write_from(c, c.down, t) end
      if not c.dead and c.up.eof and c.down.eof and not pending(c.up) and not pending(c.down) then
        kill(c, "both ends done")
      elseif not c.dead and o.mode == "halfclose" and c.up.eof then
        kill(c, "client closed after halfclose")
      end
    end
  end
end
print("lifetime over")
