-- An independent WebSocket peer for the end-to-end specs (LuaJIT + luasocket),
-- written from RFC 6455 and the early-data conventions of design.md 6 (Xray:
-- base64url in Sec-WebSocket-Protocol, echoed in the 101; v2fly: appended to
-- the path) -- never from luaray's C code.
--
-- As a module (require "e2e.tools.ws_peer"): frames (build, mask, parse),
-- Sec-WebSocket-Accept, base64url, HTTP heads, for the specs' direct checks.
--
-- As a program, a bridge between a plain TCP byte stream and WebSocket:
--   luajit ws_peer.lua --role client --listen PORT --to HOST:PORT [options]
--       accepts TCP (a v2ray VMess client whose outbound is plain tcp) and,
--       per connection, opens a WebSocket to --to and relays both ways
--   luajit ws_peer.lua --role server --listen PORT --to HOST:PORT [options]
--       accepts WebSocket clients (a luaray ws outbound) and, per connection,
--       opens TCP to --to (a v2ray VMess server on plain tcp) and relays
-- Options:
--   --path P          client: the request path; server: the path required
--   --host H          client: the Host sent (default the --to address)
--   --ed header|path  client: the first bytes from TCP (up to --ed-max, 2048)
--                     go as early data, base64url in Sec-WebSocket-Protocol
--                     (Xray) or appended to the path (v2fly)
--   --accept-ed       server: early data in Sec-WebSocket-Protocol is taken,
--                     sent on first, and the header echoed in the 101
--   --fragment N      data goes as fragmented messages of N-byte frames
--                     (first binary, then continuations, the last with FIN)
--   --ping-every N    a ping after every N data frames (in the middle of a
--                     message when fragmenting); each pong must match
--   --ping-until B    no pings once B bytes went to the WebSocket (a ping
--                     after the end of the VMess request may never be read)
--   --header "K: V"   client: one more request header (repeatable)
--   --bind ADDR       client: the WebSocket connection's source address
--   --stats FILE      one line per finished session, "key=value ..."
--   --lifetime S      exit after S seconds (default 600)
-- Checked per session and counted in the stats: the 101 (status, Upgrade,
-- Connection, Sec-WebSocket-Accept for our key, the protocol echo), the
-- request (server: GET, path, Upgrade, Connection, version 13, a 16-byte
-- key), the masking rule (a client's frames masked, a server's not), RSV
-- bits, opcodes, control frame rules, pong payloads, the close handshake.
local ffi = require "ffi"
local bit = require "bit"
local socket = require "socket"

local M = {}

----------------------------------------------------------------------------
-- base64 (RFC 4648), SHA-1 (libcrypto), Sec-WebSocket-Accept (RFC 6455 4.2.2)

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s, url)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local n = c and 4 or b and 3 or 2
    for k = 1, 4 do
      if k <= n then
        local idx = bit.band(bit.rshift(v, 18 - 6 * (k - 1)), 63)
        out[#out + 1] = B64:sub(idx + 1, idx + 1)
      elseif not url then
        out[#out + 1] = "="
      end
    end
  end
  local t = table.concat(out)
  if url then t = t:gsub("+", "-"):gsub("/", "_") end
  return t
end
M.base64 = function(s) return b64(s, false) end
M.base64url = function(s) return b64(s, true) end

function M.unbase64(t)
  t = t:gsub("%-", "+"):gsub("_", "/"):gsub("=+$", "")
  if t:find("[^%w%+/]") or #t % 4 == 1 then return nil end
  local out, acc, bits = {}, 0, 0
  for i = 1, #t do
    local v = B64:find(t:sub(i, i), 1, true) - 1
    acc = bit.bor(bit.lshift(bit.band(acc, 0xffff), 6), v)
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      out[#out + 1] = string.char(bit.band(bit.rshift(acc, bits), 255))
    end
  end
  return table.concat(out)
end

ffi.cdef [[
unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);
int RAND_bytes(unsigned char *buf, int num);
]]
local crypto = ffi.load("crypto")

function M.sha1(s)
  local md = ffi.new("unsigned char[20]")
  crypto.SHA1(s, #s, md)
  return ffi.string(md, 20)
end

function M.random(n)
  local b = ffi.new("unsigned char[?]", n)
  assert(crypto.RAND_bytes(b, n) == 1)
  return ffi.string(b, n)
end

function M.accept(key)
  return M.base64(M.sha1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
end

----------------------------------------------------------------------------
-- frames (RFC 6455 5.2)

local mbuf, mcap = nil, 0
function M.mask(s, key)
  local n = #s
  if n > mcap then
    mcap = math.max(n, 65536)
    mbuf = ffi.new("uint8_t[?]", mcap)
  end
  ffi.copy(mbuf, s, n)
  local k0, k1, k2, k3 = key:byte(1, 4)
  local i = 0
  while i + 3 < n do
    mbuf[i] = bit.bxor(mbuf[i], k0)
    mbuf[i + 1] = bit.bxor(mbuf[i + 1], k1)
    mbuf[i + 2] = bit.bxor(mbuf[i + 2], k2)
    mbuf[i + 3] = bit.bxor(mbuf[i + 3], k3)
    i = i + 4
  end
  local ks = { k0, k1, k2, k3 }
  while i < n do
    mbuf[i] = bit.bxor(mbuf[i], ks[i % 4 + 1])
    i = i + 1
  end
  return ffi.string(mbuf, n)
end

local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

-- One frame: opcode (0 continuation, 1 text, 2 binary, 8 close, 9 ping,
-- 10 pong), payload, fin (default true), masked (a client's frames are).
-- opts.rsv (bits to set), opts.len64 (the 8-byte length form).
function M.frame(op, payload, fin, masked, opts)
  opts = opts or {}
  local n = #payload
  local b0 = (fin == false and 0 or 0x80) + (opts.rsv or 0) + op
  local b1 = masked and 0x80 or 0
  local h
  if opts.len64 or n > 65535 then
    h = string.char(b0, b1 + 127) .. be(n, 8)
  elseif n >= 126 then
    h = string.char(b0, b1 + 126) .. be(n, 2)
  else
    h = string.char(b0, b1 + n)
  end
  if not masked then return h .. payload end
  local key = opts.key or M.random(4)
  return h .. key .. M.mask(payload, key)
end

-- An incremental parser: p:feed(bytes) -> list of frames {fin, op, rsv,
-- masked, payload} (unmasked), or nil, error for a malformed header.
function M.parser()
  local p = { buf = "" }
  function p:feed(data)
    self.buf = self.buf .. data
    local out, pos, b = {}, 1, self.buf
    while true do
      if #b - pos + 1 < 2 then break end
      local b0, b1 = b:byte(pos, pos + 1)
      local len, hl = bit.band(b1, 127), 2
      if len == 126 then
        if #b - pos + 1 < 4 then break end
        local x, y = b:byte(pos + 2, pos + 3)
        len, hl = x * 256 + y, 4
      elseif len == 127 then
        if #b - pos + 1 < 10 then break end
        local hi = b:byte(pos + 2)
        if hi >= 128 then return nil, "64-bit length with its top bit set" end
        len = 0
        for i = 2, 9 do len = len * 256 + b:byte(pos + i) end
        hl = 10
      end
      local masked = b1 >= 128
      if masked then hl = hl + 4 end
      if #b - pos + 1 < hl + len then break end
      local payload = b:sub(pos + hl, pos + hl + len - 1)
      if masked then payload = M.mask(payload, b:sub(pos + hl - 4, pos + hl - 1)) end
      out[#out + 1] = { fin = b0 >= 128, rsv = bit.band(b0, 0x70), op = bit.band(b0, 15),
                        masked = masked, payload = payload }
      pos = pos + hl + len
    end
    self.buf = b:sub(pos)
    return out
  end
  return p
end

----------------------------------------------------------------------------
-- HTTP heads

-- Splits a complete head "start line\r\nK: V\r\n...\r\n\r\n" -> start line,
-- fields {lower-case name = value (first)}, list {{name, value}}.
function M.parse_head(head)
  local lines = {}
  for l in head:gmatch("(.-)\r\n") do lines[#lines + 1] = l end
  local fields, list = {}, {}
  for i = 2, #lines do
    local k, v = lines[i]:match("^([^:]+):%s*(.-)%s*$")
    if k then
      list[#list + 1] = { k, v }
      if fields[k:lower()] == nil then fields[k:lower()] = v end
    end
  end
  return lines[1], fields, list
end

local function has_token(v, tok)
  for t in (v or ""):gmatch("[^,]+") do
    if t:match("^%s*(.-)%s*$"):lower() == tok then return true end
  end
  return false
end
M.has_token = has_token

-- A client's upgrade request.
function M.request(path, host, key, extra)
  local l = { "GET " .. path .. " HTTP/1.1", "Host: " .. host, "Upgrade: websocket",
              "Connection: Upgrade", "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13" }
  for _, h in ipairs(extra or {}) do l[#l + 1] = h end
  return table.concat(l, "\r\n") .. "\r\n\r\n"
end

-- Checks a server's reply head to our key (and the protocol we sent, if
-- any): -> true, echoed; or nil, why.
function M.check_reply(head, key, proto)
  local status, f = M.parse_head(head)
  if not status or not status:match("^HTTP/1%.1 101") then return nil, "status " .. tostring(status) end
  if not has_token(f.upgrade, "websocket") then return nil, "Upgrade" end
  if not has_token(f.connection, "upgrade") then return nil, "Connection" end
  if f["sec-websocket-accept"] ~= M.accept(key) then return nil, "Sec-WebSocket-Accept" end
  local echo = f["sec-websocket-protocol"]
  if echo and echo ~= proto then return nil, "a protocol we did not offer: " .. echo end
  return true, echo ~= nil
end

-- Reads from a blocking socket until a head is complete -> head, rest; or nil, err.
function M.read_head(sock, timeout)
  sock:settimeout(timeout or 5)
  local buf = ""
  while not buf:find("\r\n\r\n", 1, true) do
    local d, err, part = sock:receive(1)
    d = d or part
    if not d or #d == 0 then return nil, err or "closed", buf end
    buf = buf .. d
    if #buf > 65536 then return nil, "head too long" end
  end
  local e = buf:find("\r\n\r\n", 1, true)
  return buf:sub(1, e + 3), buf:sub(e + 4)
end

if not (arg and arg[0] and arg[0]:match("ws_peer%.lua$")) then return M end

----------------------------------------------------------------------------
-- the bridge

local opts = { headers = {}, ed_max = 2048, lifetime = 600 }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i], arg[i + 1]
    local step = 2
    if k == "--role" then opts.role = v
    elseif k == "--listen" then opts.listen = tonumber(v)
    elseif k == "--to" then opts.to_host, opts.to_port = v:match("^(.*):(%d+)$"); opts.to_port = tonumber(opts.to_port)
    elseif k == "--path" then opts.path = v
    elseif k == "--host" then opts.host = v
    elseif k == "--ed" then opts.ed = v
    elseif k == "--ed-max" then opts.ed_max = tonumber(v)
    elseif k == "--accept-ed" then opts.accept_ed = true; step = 1
    elseif k == "--fragment" then opts.fragment = tonumber(v)
    elseif k == "--ping-every" then opts.ping_every = tonumber(v)
    elseif k == "--ping-until" then opts.ping_until = tonumber(v)
    elseif k == "--header" then opts.headers[#opts.headers + 1] = v
    elseif k == "--bind" then opts.bind = v
    elseif k == "--stats" then opts.stats = v
    elseif k == "--lifetime" then opts.lifetime = tonumber(v)
    else io.stderr:write("ws_peer: unknown option ", tostring(k), "\n"); os.exit(2) end
    i = i + step
  end
end
assert(opts.role == "client" or opts.role == "server", "--role client|server")
assert(opts.listen and opts.to_port, "--listen and --to needed")
opts.path = opts.path or "/"

local OUT_LIMIT = 1024 * 1024
local lst = assert(socket.bind("127.0.0.1", opts.listen))
lst:settimeout(0)
local sessions = {}    -- socket -> session
local all = {}         -- session list
local started = socket.gettime()
local nsess = 0

local function log(...) io.stderr:write(table.concat({ ... }, " "), "\n") end

local function stats_line(s)
  local keys = {}
  for k in pairs(s.st) do keys[#keys + 1] = k end
  table.sort(keys)
  local t = { "session=" .. s.id, "role=" .. opts.role }
  for _, k in ipairs(keys) do t[#t + 1] = k .. "=" .. tostring(s.st[k]) end
  return table.concat(t, " ")
end

local function finish(s, why)
  if s.done then return end
  s.done = true
  s.st.end_reason = why:gsub("%s", "_")
  if s.tcp then s.tcp:close(); sessions[s.tcp] = nil end
  if s.ws then s.ws:close(); sessions[s.ws] = nil end
  local line = stats_line(s)
  log(line)
  if opts.stats then
    local f = io.open(opts.stats, "a")
    if f then f:write(line, "\n"); f:close() end
  end
end

local function count(s, k, n) s.st[k] = (s.st[k] or 0) + (n or 1) end

-- queues bytes for a socket
local function queue(s, side, data)
  local q = s[side .. "_out"]
  q[#q + 1] = data
  s[side .. "_pending"] = s[side .. "_pending"] + #data
end

local function flush(s, side)
  local sock, q = s[side], s[side .. "_out"]
  while #q > 0 do
    local data = q[1]
    local last, err, lastpart = sock:send(data, s[side .. "_i"])
    local idx = last or lastpart or (s[side .. "_i"] - 1)
    s[side .. "_pending"] = s[side .. "_pending"] - (idx - s[side .. "_i"] + 1)
    if idx >= #data then
      table.remove(q, 1)
      s[side .. "_i"] = 1
    else
      s[side .. "_i"] = idx + 1
      if err and err ~= "timeout" then return nil, err end
      return true
    end
  end
  if s[side .. "_shut"] == "want" then
    sock:shutdown("send")
    s[side .. "_shut"] = "done"
  end
  return true
end

local our_mask = opts.role == "client"   -- a client masks its frames

local function send_frame(s, op, payload, fin)
  queue(s, "ws", M.frame(op, payload, fin, our_mask))
  if op <= 2 then count(s, "frames_out") end
end

-- data from TCP to the WebSocket, framed as configured
local function ws_data(s, data)
  count(s, "bytes_to_ws", #data)
  local f = opts.fragment
  if not f or #data <= f then
    send_frame(s, 2, data, true)
    s.nframes = s.nframes + 1
    if opts.ping_every and s.nframes % opts.ping_every == 0 and
       (s.st.bytes_to_ws or 0) < (opts.ping_until or math.huge) then
      s.npings = s.npings + 1
      local pl = "ping " .. s.npings
      s.pings[pl] = true
      send_frame(s, 9, pl, true)
      count(s, "pings_out")
    end
    return
  end
  local i, first = 1, true
  while i <= #data do
    local piece = data:sub(i, i + f - 1)
    i = i + f
    send_frame(s, first and 2 or 0, piece, i > #data)
    if not first then count(s, "continuations_out") end
    first = false
    s.nframes = s.nframes + 1
    if opts.ping_every and s.nframes % opts.ping_every == 0 and i <= #data and
       (s.st.bytes_to_ws or 0) < (opts.ping_until or math.huge) then
      s.npings = s.npings + 1
      local pl = "ping " .. s.npings
      s.pings[pl] = true
      send_frame(s, 9, pl, true) -- inside the fragmented message
      count(s, "pings_out")
    end
  end
end

local function ws_close(s, code)
  if s.close_sent then return end
  s.close_sent = true
  count(s, "close_out")
  send_frame(s, 8, string.char(math.floor(code / 256), code % 256), true)
end

local function on_frames(s, frames)
  for _, fr in ipairs(frames) do
    if fr.rsv ~= 0 then count(s, "bad_rsv") end
    if fr.masked ~= (opts.role == "server") then count(s, fr.masked and "masked_in" or "unmasked_in") end
    if fr.op >= 8 and (not fr.fin or #fr.payload > 125) then count(s, "bad_control") end
    if fr.op == 0 or fr.op == 1 or fr.op == 2 then
      count(s, "frames_in")
      if fr.op == 0 and not s.in_msg then count(s, "bad_continuation") end
      if fr.op ~= 0 and s.in_msg then count(s, "bad_new_message") end
      s.in_msg = not fr.fin
      if #fr.payload > 0 then
        count(s, "bytes_from_ws", #fr.payload)
        if s.tcp then queue(s, "tcp", fr.payload) else s.early_down[#s.early_down + 1] = fr.payload end
      end
    elseif fr.op == 9 then
      count(s, "pings_in")
      send_frame(s, 10, fr.payload, true)
    elseif fr.op == 10 then
      -- RFC 6455 5.5.3: a pong may answer only the latest of several pings
      if s.pings[fr.payload] then
        s.pings[fr.payload] = nil
        count(s, "pongs_in")
        local n = tonumber(fr.payload:match("^ping (%d+)$"))
        if n and n > (s.st.last_pong or 0) then s.st.last_pong = n end
      else
        count(s, "pongs_unasked")
      end
    elseif fr.op == 8 then
      count(s, "close_in")
      if #fr.payload >= 2 then
        s.st.close_code_in = fr.payload:byte(1) * 256 + fr.payload:byte(2)
      end
      s.close_rcvd = true
      ws_close(s, 1000)
      if s.tcp then s.tcp_shut = "want" end -- the TCP side gets its FIN after the data
    else
      count(s, "bad_opcode")
    end
  end
end

local function connect_to(host, port, bind)
  local c = socket.tcp()
  if bind then assert(c:bind(bind, 0)) end
  c:settimeout(5)
  local ok, err = c:connect(host, port)
  if not ok then c:close(); return nil, err end
  c:settimeout(0)
  return c
end

local function new_session(sock)
  nsess = nsess + 1
  local s = { id = nsess, st = {}, tcp_out = {}, ws_out = {}, tcp_pending = 0, ws_pending = 0,
              tcp_i = 1, ws_i = 1, nframes = 0, npings = 0, pings = {}, parser = M.parser(),
              head = "", early_up = "", early_down = {}, t0 = socket.gettime() }
  sock:settimeout(0)
  all[#all + 1] = s
  return s
end

-- client role: a TCP connection came; its first bytes may be early data
local function client_open(s)
  local ed = ""
  if opts.ed then
    ed = s.early_up:sub(1, opts.ed_max)
    s.early_up = s.early_up:sub(#ed + 1)
  end
  local ws, err = connect_to(opts.to_host, opts.to_port, opts.bind)
  if not ws then return finish(s, "connect " .. tostring(err)) end
  s.ws = ws
  sessions[ws] = s
  s.key = M.base64(M.random(16))
  local path, extra = opts.path, {}
  for _, h in ipairs(opts.headers) do extra[#extra + 1] = h end
  if #ed > 0 and opts.ed == "header" then
    s.proto = M.base64url(ed)
    extra[#extra + 1] = "Sec-WebSocket-Protocol: " .. s.proto
  elseif #ed > 0 and opts.ed == "path" then
    path = path .. M.base64url(ed)
  end
  s.st.early_data = #ed
  queue(s, "ws", M.request(path, opts.host or (opts.to_host .. ":" .. opts.to_port), s.key, extra))
  s.state = "await101"
end

-- server role: the request head is in
local function server_request(s, head)
  local start, f = M.parse_head(head)
  local method, target, ver = (start or ""):match("^(%S+) (%S+) (HTTP/1%.1)$")
  local reqpath = target and target:match("^[^?]*")
  local key = f["sec-websocket-key"]
  local kraw = key and M.unbase64(key)
  if method ~= "GET" or reqpath ~= opts.path or not has_token(f.upgrade, "websocket") or
     not has_token(f.connection, "upgrade") or f["sec-websocket-version"] ~= "13" or
     not kraw or #kraw ~= 16 then
    count(s, "bad_request")
    s.ws:send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    return finish(s, "bad request")
  end
  local reply = { "HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                  "Sec-WebSocket-Accept: " .. M.accept(key) }
  local ed = ""
  local proto = f["sec-websocket-protocol"]
  if proto then
    s.st.protocol_in = #proto
    if opts.accept_ed then
      ed = M.unbase64(proto) or ""
      if #ed > 0 then reply[#reply + 1] = "Sec-WebSocket-Protocol: " .. proto end
    end
  end
  s.st.early_data = #ed
  queue(s, "ws", table.concat(reply, "\r\n") .. "\r\n\r\n")
  local tcp, err = connect_to(opts.to_host, opts.to_port)
  if not tcp then return finish(s, "connect " .. tostring(err)) end
  s.tcp = tcp
  sessions[tcp] = s
  if #ed > 0 then queue(s, "tcp", ed) end
  for _, d in ipairs(s.early_down) do queue(s, "tcp", d) end
  s.early_down = {}
  s.state = "open"
end

local function on_ws_bytes(s, data)
  if s.state == "await101" or s.state == "awaitreq" then
    s.head = s.head .. data
    local e = s.head:find("\r\n\r\n", 1, true)
    if not e then
      if #s.head > 65536 then finish(s, "head too long") end
      return
    end
    local head, rest = s.head:sub(1, e + 3), s.head:sub(e + 4)
    s.head = nil
    if s.state == "await101" then
      local ok, why = M.check_reply(head, s.key, s.proto)
      if not ok then
        count(s, "bad_reply")
        return finish(s, "bad 101: " .. why)
      end
      s.st.echoed = why and 1 or 0
      s.state = "open"
      if #s.early_up > 0 then ws_data(s, s.early_up); s.early_up = "" end
    else
      server_request(s, head)
      if s.done then return end
    end
    data = rest
  end
  if #data > 0 then
    local frames, err = s.parser:feed(data)
    if not frames then count(s, "bad_frame"); return finish(s, err) end
    on_frames(s, frames)
  end
end

local function on_tcp_bytes(s, data)
  if s.state == "open" then ws_data(s, data) else s.early_up = s.early_up .. data end
end

while socket.gettime() - started < opts.lifetime do
  local rset, wset = { lst }, {}
  local now = socket.gettime()
  for _, s in ipairs(all) do
    if not s.done then
      -- client role: the first bytes (or 1 s) before the WebSocket opens
      if opts.role == "client" and s.state == "wait_ed" and
         (#s.early_up > 0 or now - s.t0 > 1 or not opts.ed) then
        client_open(s)
      end
    end
    if not s.done then
      if s.tcp and not s.tcp_eof and s.ws_pending < OUT_LIMIT then rset[#rset + 1] = s.tcp end
      if s.ws and not s.ws_eof and s.tcp_pending < OUT_LIMIT then rset[#rset + 1] = s.ws end
      if s.tcp and (#s.tcp_out > 0 or s.tcp_shut == "want") then wset[#wset + 1] = s.tcp end
      if s.ws and #s.ws_out > 0 then wset[#wset + 1] = s.ws end
      -- both ways over: the close handshake done, or the peer gone
      if (s.close_rcvd and s.close_sent and #s.ws_out == 0 and #s.tcp_out == 0) or
         (s.ws_eof and #s.tcp_out == 0) or (s.tcp_eof and s.close_sent and now - (s.tcp_eof_at or now) > 5) then
        finish(s, s.ws_eof and not s.close_rcvd and "ws eof without close" or "closed")
      end
    end
  end
  local r, w = socket.select(rset, wset, 0.2)
  for _, sock in ipairs(w or {}) do
    local s = sessions[sock]
    if s and not s.done then
      local side = sock == s.ws and "ws" or "tcp"
      local ok, err = flush(s, side)
      if not ok then finish(s, side .. " send: " .. tostring(err)) end
    end
  end
  for _, sock in ipairs(r or {}) do
    if sock == lst then
      local c = lst:accept()
      if c then
        local s = new_session(c)
        if opts.role == "client" then
          s.tcp = c
          s.state = "wait_ed"
        else
          s.ws = c
          s.state = "awaitreq"
        end
        sessions[c] = s
      end
    else
      local s = sessions[sock]
      if s and not s.done then
        local data, err, part = sock:receive(65536)
        data = data or part
        local side = sock == s.ws and "ws" or "tcp"
        if data and #data > 0 then
          s.got_any = true
          if side == "ws" then on_ws_bytes(s, data) else on_tcp_bytes(s, data) end
        end
        if not s.done and err == "closed" and s.state ~= "open" and not s.got_any and
           (side == "tcp" or s.state == "awaitreq") then
          finish(s, "probe") -- a port probe: connected and closed, nothing sent
        elseif not s.done and err == "closed" then
          if side == "ws" then
            s.ws_eof = true
            if s.tcp then s.tcp_shut = "want" end
          else
            -- the TCP peer is done: our WebSocket direction ends with a close
            s.tcp_eof = true
            s.tcp_eof_at = socket.gettime()
            if s.state == "open" then ws_close(s, 1000) end
          end
        end
      end
    end
  end
end
