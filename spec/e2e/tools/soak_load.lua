--[==[ e2e.tools.soak_load: the mixed load of spec/e2e/soak_spec.lua.

  local Load = require "e2e.tools.soak_load"
  local load = Load.new { routes = {{name, port}, ...}, echo = {host, port}, ... }
  load:run_until(deadline, on_tick)    starts and pumps transfers until deadline
  load:drain(timeout)                  no new transfers; until none is in flight
  load:inflight()                      TCP transfers + UDP associations open

One socket.select loop (LuaJIT + luasocket; FD_SETSIZE is 1024, and the
load keeps at most tcp_conc + 2 * udp_conc descriptors open) drives, each
through a SOCKS5 proxy port picked from `routes` at random:

  TCP transfers (tcp_conc at a time), sizes log-uniform in [1, max_size]:
    echo   the whole size both ways at once, every echoed byte compared with
           the deterministic pattern (E.stream), then our FIN
    fin    the same, with a FIN after the last byte sent; the echo must then
           be complete and followed by the peer's FIN
    early  our close once `cut` bytes are sent, cut uniform in [0, size],
           whatever has been echoed so far (a FIN, or an RST when echoed
           bytes are still unread, as the kernel does)
    reset  the same with SO_LINGER 0: an RST
    abort  the SOCKS5 handshake cut: a bare connect then close, half a
           greeting then an RST, or a greeting and half a request then close
  UDP associations (udp_conc at a time): SOCKS5 UDP ASSOCIATE, then 1..16
    datagrams of 1..udp_max bytes (log-uniform), one at a time; each reply
    must be the same bytes from the echo server's address. One in seven
    ends early: closed (half of them with an RST on the control
    connection) right after a datagram is sent.

Bytes echoed before an early close or a reset are compared too (a corrupt
prefix is a failure); only completeness is not asked of them.

Every socket operation is non-blocking except the TCP connect and the UDP
ASSOCIATE exchange (loopback, bounded by `connect_timeout`). Every transfer
has a deadline (`transfer_timeout`); a transfer that misses it, is refused,
closed early by the peer, or differs by one byte is a failure: counted by
kind, the first `keep_failures` messages kept. Randomness is math.random
(the spec seeds it).
]==]
local E = require "e2e.support"
local socket = require "socket"

local M = {}
local Load = {}
Load.__index = Load

local MiB = 1024 * 1024
local KINDS = { "echo", "fin", "early", "reset", "abort" }
M.KINDS = KINDS
local DEFAULT_WEIGHTS = { echo = 52, fin = 16, early = 12, reset = 12, abort = 8 }

-- log-uniform integer in [1, max]
local function log_uniform(max)
  local n = math.floor(math.exp(math.random() * math.log(max + 1)))
  if n < 1 then n = 1 elseif n > max then n = max end
  return n
end
M.log_uniform = log_uniform

local function be16(n) return string.char(math.floor(n / 256) % 256, n % 256) end

local function ipv4_bytes(host)
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  assert(a, "soak_load: an IPv4 echo host is needed")
  return string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
end

function M.new(o)
  assert(o.routes and #o.routes > 0 and o.echo, "soak_load: routes and echo needed")
  local self = setmetatable({
    routes = o.routes,
    echo = o.echo,
    proxy_host = o.proxy_host or "127.0.0.1",
    tcp_conc = o.tcp_conc or 24,
    udp_conc = o.udp_conc or 4,
    max_size = o.max_size or 4 * MiB,
    udp_max = o.udp_max or 8192,
    chunk = o.chunk or 65536,
    weights = o.weights or DEFAULT_WEIGHTS,
    transfer_timeout = o.transfer_timeout or 120,
    connect_timeout = o.connect_timeout or 10,
    udp_timeout = o.udp_timeout or 30,
    keep_failures = o.keep_failures or 20,
    -- the first `big_first` transfers are echo transfers of max_size (the
    -- allocators see the peak load early, in the warm-up)
    big_first = o.big_first or 0,
    starting = true,
    tcp = {},          -- socket -> transfer
    ntcp = 0,
    udp = {},          -- udp socket -> association
    nudp = 0,
    seq = 0,
    st = {
      started = {}, ok = {}, cut = {}, failed = {},
      bytes_sent = 0, bytes_echoed = 0, bytes_verified = 0,
      by_route = {}, sizes = { min = math.huge, max = 0, ge_1mib = 0, le_16 = 0 },
      checksum_failures = 0, prefix_failures = 0,
      udp_assocs = 0, udp_ok_assocs = 0, udp_early = 0, udp_sent = 0, udp_ok = 0,
      udp_bad = 0, udp_lost = 0, udp_failed = 0, udp_bytes = 0,
      failures = {}, nfailures = 0,
    },
  }, Load)
  for _, k in ipairs(KINDS) do
    self.st.started[k], self.st.ok[k], self.st.cut[k], self.st.failed[k] = 0, 0, 0, 0
  end
  for _, r in ipairs(self.routes) do self.st.by_route[r.name] = 0 end
  self.total_weight = 0
  for _, k in ipairs(KINDS) do self.total_weight = self.total_weight + (self.weights[k] or 0) end
  self.dst = "\1" .. ipv4_bytes(self.echo.host) .. be16(self.echo.port)
  return self
end

function Load:inflight() return self.ntcp + self.nudp end

function Load:failure(kind, msg)
  local st = self.st
  st.nfailures = st.nfailures + 1
  if #st.failures < self.keep_failures then
    st.failures[#st.failures + 1] = ("[%.1fs] %s: %s"):format(E.now() - (self.t0 or E.now()), kind, msg)
  end
end

local function pick_kind(self)
  local x = math.random() * self.total_weight
  for _, k in ipairs(KINDS) do
    x = x - (self.weights[k] or 0)
    if x < 0 then return k end
  end
  return "echo"
end

----------------------------------------------------------------------------
-- TCP

local function tcp_close(self, c, how)
  if c.closed then return end
  c.closed = true
  if how == "reset" then c.s:setoption("linger", { on = true, timeout = 0 }) end
  c.s:close()
  self.tcp[c.s] = nil
  self.ntcp = self.ntcp - 1
end

local function tcp_fail(self, c, msg)
  self.st.failed[c.kind] = self.st.failed[c.kind] + 1
  self:failure(c.kind, ("transfer %d via %s, %d bytes: %s (sent %d, echoed %d, %.2fs)"):format(
    c.id, c.route.name, c.size, msg, c.sent, c.recvd, E.now() - c.t0))
  tcp_close(self, c, "reset")
end

-- the deliberate end of an early / reset transfer
local function tcp_cut(self, c)
  self.st.cut[c.kind] = self.st.cut[c.kind] + 1
  tcp_close(self, c, c.kind == "reset" and "reset" or "close")
end

local function tcp_ok(self, c)
  self.st.ok[c.kind] = self.st.ok[c.kind] + 1
  self.st.bytes_verified = self.st.bytes_verified + c.size
  tcp_close(self, c, "close")
end

local function abort_one(self, route)
  local s = E.tcp_connect(self.proxy_host, route.port, self.connect_timeout)
  if not s then
    self.st.failed.abort = self.st.failed.abort + 1
    self:failure("abort", "connect to the SOCKS5 port failed")
    return
  end
  local v = math.random(1, 3)
  if v == 2 then
    s:send("\5\1")
    s:setoption("linger", { on = true, timeout = 0 })
  elseif v == 3 then
    s:send("\5\1\0\5\1\0\1\127")
  end
  s:close()
  self.st.ok.abort = self.st.ok.abort + 1
end

local function start_tcp(self)
  self.seq = self.seq + 1
  local kind = self.seq <= self.big_first and "echo" or pick_kind(self)
  local route = self.routes[math.random(1, #self.routes)]
  self.st.started[kind] = self.st.started[kind] + 1
  self.st.by_route[route.name] = self.st.by_route[route.name] + 1
  if kind == "abort" then return abort_one(self, route) end
  local size = self.seq <= self.big_first and self.max_size or log_uniform(self.max_size)
  local sz = self.st.sizes
  if size < sz.min then sz.min = size end
  if size > sz.max then sz.max = size end
  if size >= MiB then sz.ge_1mib = sz.ge_1mib + 1 end
  if size <= 16 then sz.le_16 = sz.le_16 + 1 end
  local seed = math.random(1, 2147483646)
  local c = { id = self.seq, kind = kind, route = route, size = size, sent = 0, recvd = 0,
              tx = E.stream(seed), rx = E.stream(seed), t0 = E.now(), phase = "greet", hb = "" }
  c.deadline = c.t0 + self.transfer_timeout
  if kind == "early" or kind == "reset" then c.cut = math.random(0, size) end
  local s, err = E.tcp_connect(self.proxy_host, route.port, self.connect_timeout)
  if not s then
    self.st.failed[kind] = self.st.failed[kind] + 1
    self:failure(kind, ("transfer %d via %s: %s"):format(c.id, route.name, tostring(err)))
    return
  end
  c.s = s
  self.tcp[s] = c
  self.ntcp = self.ntcp + 1
  s:settimeout(0)
  local ok, serr = s:send("\5\1\0")   -- 3 bytes into an empty send buffer
  if not ok then return tcp_fail(self, c, "socks greeting: " .. tostring(serr)) end
end

-- handshake bytes: the method reply, then the CONNECT reply
local function tcp_handshake(self, c, data)
  c.hb = c.hb .. data
  if c.phase == "greet" then
    if #c.hb < 2 then return end
    if c.hb:sub(1, 2) ~= "\5\0" then
      return tcp_fail(self, c, ("socks greeting reply %q"):format(c.hb:sub(1, 2)))
    end
    c.hb = c.hb:sub(3)
    c.phase = "req"
    local ok, err = c.s:send("\5\1\0" .. self.dst)
    if not ok then return tcp_fail(self, c, "socks request: " .. tostring(err)) end
  end
  if c.phase == "req" then
    if #c.hb < 5 then return end
    if c.hb:byte(1) ~= 5 or c.hb:byte(2) ~= 0 then
      return tcp_fail(self, c, ("socks reply %d"):format(c.hb:byte(2)))
    end
    local atyp, need = c.hb:byte(4), nil
    if atyp == 1 then need = 10 elseif atyp == 4 then need = 22
    elseif atyp == 3 then need = 7 + c.hb:byte(5)
    else return tcp_fail(self, c, ("socks reply ATYP %d"):format(atyp)) end
    if #c.hb < need then return end
    if #c.hb > need then return tcp_fail(self, c, "bytes before any data was sent") end
    c.hb = nil
    c.phase = "data"
    if c.cut and c.cut == 0 then return tcp_cut(self, c) end
  end
end

local function first_diff(a, b)
  for i = 1, math.min(#a, #b) do
    if a:byte(i) ~= b:byte(i) then return i end
  end
  return math.min(#a, #b) + 1
end

local function tcp_read(self, c)
  for _ = 1, 8 do
    if c.closed then return end
    local data, err, partial = c.s:receive(65536)
    local got = data or partial or ""
    if #got > 0 then
      if c.phase ~= "data" then
        tcp_handshake(self, c, got)
      else
        if c.recvd + #got > c.sent then
          self.st.checksum_failures = self.st.checksum_failures + 1
          return tcp_fail(self, c, ("%d bytes echoed beyond what was sent"):format(c.recvd + #got - c.sent))
        end
        local exp = c.rx:next(#got)
        if got ~= exp then
          if c.cut then self.st.prefix_failures = self.st.prefix_failures + 1
          else self.st.checksum_failures = self.st.checksum_failures + 1 end
          return tcp_fail(self, c, ("echo differs at byte %d"):format(c.recvd + first_diff(got, exp) - 1))
        end
        c.recvd = c.recvd + #got
        self.st.bytes_echoed = self.st.bytes_echoed + #got
      end
    end
    if err == "closed" then
      if c.phase == "data" and c.kind == "fin" and c.recvd == c.size then
        return tcp_ok(self, c)
      end
      return tcp_fail(self, c, c.phase == "data" and "closed by the peer before the whole echo"
                                or ("closed by the proxy during the SOCKS5 " .. c.phase))
    elseif err and err ~= "timeout" then
      return tcp_fail(self, c, "receive: " .. err)
    end
    if c.phase == "data" and c.recvd == c.size and c.kind == "echo" then
      return tcp_ok(self, c)
    end
    if err == "timeout" then return end
  end
end

local function tcp_write(self, c)
  if c.closed or c.phase ~= "data" then return end
  for _ = 1, 4 do
    if c.sent >= c.size then return end
    if not c.pend then
      local n = math.min(self.chunk, c.size - c.sent)
      if c.cut and c.cut > c.sent then n = math.min(n, c.cut - c.sent) end
      c.pend, c.pi = c.tx:next(n), 1
    end
    local last, err, lastpart = c.s:send(c.pend, c.pi)
    local idx = last or lastpart or (c.pi - 1)
    local n = idx - c.pi + 1
    c.sent = c.sent + n
    self.st.bytes_sent = self.st.bytes_sent + n
    if idx >= #c.pend then c.pend = nil else c.pi = idx + 1 end
    if err and err ~= "timeout" then return tcp_fail(self, c, "send: " .. err) end
    if c.cut and c.sent >= c.cut then return tcp_cut(self, c) end
    if c.sent == c.size and c.kind == "fin" then c.s:shutdown("send") end
    if err == "timeout" or c.pend then return end
  end
end

----------------------------------------------------------------------------
-- UDP

local function udp_close(self, a, how)
  if a.closed then return end
  a.closed = true
  if how == "reset" then a.assoc.ctl:setoption("linger", { on = true, timeout = 0 }) end
  a.assoc:close()
  self.udp[a.assoc.udp] = nil
  self.nudp = self.nudp - 1
end

local function udp_fail(self, a, msg)
  self.st.udp_failed = self.st.udp_failed + 1
  self:failure("udp", ("association %d via %s: %s (datagram %d of %d)"):format(a.id, a.route.name,
    msg, a.i, a.n))
  udp_close(self, a, "close")
end

local function udp_send_next(self, a)
  a.i = a.i + 1
  a.data = E.pattern(log_uniform(self.udp_max), math.random(1, 2147483646))
  local ok, err = a.assoc:send(self.echo.host, self.echo.port, a.data)
  if not ok then return udp_fail(self, a, "send: " .. tostring(err)) end
  self.st.udp_sent = self.st.udp_sent + 1
  a.deadline = E.now() + self.udp_timeout
  if a.early_at == a.i then
    self.st.udp_early = self.st.udp_early + 1
    udp_close(self, a, math.random(1, 2) == 1 and "reset" or "close")
  end
end

local function start_udp(self)
  self.seq = self.seq + 1
  local route = self.routes[math.random(1, #self.routes)]
  self.st.udp_assocs = self.st.udp_assocs + 1
  self.st.by_route[route.name] = self.st.by_route[route.name] + 1
  local n = math.random(1, 16)
  local a = { id = self.seq, route = route, n = n, i = 0, t0 = E.now(),
              early_at = math.random(1, 7) == 1 and math.random(1, n) or nil }
  local assoc, err = E.socks5_udp_associate(self.proxy_host, route.port, nil, nil, self.connect_timeout)
  if not assoc then
    self.st.udp_failed = self.st.udp_failed + 1
    self:failure("udp", ("association %d via %s: %s"):format(a.id, route.name, tostring(err)))
    return
  end
  a.assoc = assoc
  assoc.udp:settimeout(0)
  self.udp[assoc.udp] = a
  self.nudp = self.nudp + 1
  udp_send_next(self, a)
end

local function udp_read(self, a)
  for _ = 1, 4 do
    if a.closed then return end
    local d, host, port = a.assoc:recv(0)
    if not d then
      if host ~= "timeout" then return udp_fail(self, a, "receive: " .. tostring(host)) end
      return
    end
    if d ~= a.data then
      self.st.udp_bad = self.st.udp_bad + 1
      return udp_fail(self, a, ("reply of %d bytes differs from the %d sent"):format(#d, #a.data))
    end
    if host ~= self.echo.host or port ~= self.echo.port then
      self.st.udp_bad = self.st.udp_bad + 1
      return udp_fail(self, a, ("reply from %s:%s"):format(tostring(host), tostring(port)))
    end
    self.st.udp_ok = self.st.udp_ok + 1
    self.st.udp_bytes = self.st.udp_bytes + #d
    if a.i >= a.n then
      self.st.udp_ok_assocs = self.st.udp_ok_assocs + 1
      return udp_close(self, a, "close")
    end
    udp_send_next(self, a)
  end
end

----------------------------------------------------------------------------
-- The loop

-- One select round (at most `wait` seconds).
function Load:step(wait)
  if self.starting then
    for _ = 1, self.tcp_conc do
      if self.ntcp >= self.tcp_conc then break end
      start_tcp(self)
    end
    for _ = 1, self.udp_conc do
      if self.nudp >= self.udp_conc then break end
      start_udp(self)
    end
  end
  local rset, wset = {}, {}
  for s, c in pairs(self.tcp) do
    rset[#rset + 1] = s
    if c.phase == "data" and c.sent < c.size then wset[#wset + 1] = s end
  end
  for s in pairs(self.udp) do rset[#rset + 1] = s end
  if #rset == 0 then
    E.sleep(math.min(wait, 0.01))
    return
  end
  local r, w = socket.select(rset, wset, wait)
  for _, s in ipairs(w or {}) do
    local c = self.tcp[s]
    if c then tcp_write(self, c) end
  end
  for _, s in ipairs(r or {}) do
    local c = self.tcp[s]
    if c then
      tcp_read(self, c)
    else
      local a = self.udp[s]
      if a then udp_read(self, a) end
    end
  end
  local now = E.now()
  for _, c in pairs(self.tcp) do
    if now > c.deadline then tcp_fail(self, c, "timed out") end
  end
  for _, a in pairs(self.udp) do
    if now > a.deadline then
      self.st.udp_lost = self.st.udp_lost + 1
      udp_fail(self, a, ("no reply to a datagram of %d bytes within %d s (association open %.1f s)")
        :format(#a.data, self.udp_timeout, now - a.t0))
    end
  end
end

-- Starts and pumps transfers until `deadline` (E.now() time); on_tick(),
-- when given, runs about every 0.2 s and stops the run when it returns false.
function Load:run_until(deadline, on_tick)
  self.t0 = self.t0 or E.now()
  self.starting = true
  local next_tick = 0
  for _ = 1, 100000000 do
    local now = E.now()
    if now >= deadline then break end
    self:step(math.min(0.05, deadline - now))
    if on_tick and E.now() >= next_tick then
      next_tick = E.now() + 0.2
      if on_tick() == false then return false end
    end
  end
  return true
end

-- Starts nothing new and pumps until nothing is in flight, or timeout;
-- -> true, or false and how many were still in flight.
function Load:drain(timeout, on_tick)
  self.starting = false
  local deadline = E.now() + timeout
  local next_tick = 0
  for _ = 1, 100000000 do
    if self:inflight() == 0 then return true end
    if E.now() >= deadline then break end
    self:step(0.05)
    if on_tick and E.now() >= next_tick then
      next_tick = E.now() + 0.2
      if on_tick() == false then break end
    end
  end
  return self:inflight() == 0, self:inflight()
end

-- Closes whatever is still open (after a failure).
function Load:abort_all()
  for _, c in pairs(self.tcp) do tcp_close(self, c, "reset") end
  for _, a in pairs(self.udp) do udp_close(self, a, "close") end
end

M.Load = Load
return M
