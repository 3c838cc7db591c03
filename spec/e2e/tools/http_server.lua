-- A tiny HTTP/1.1 origin server for the end-to-end specs (LuaJIT + luasocket).
--
--   luajit http_server.lua --port P [--host H]... [--log FILE] [--lifetime SECONDS]
--
-- One request per connection, answered with "Connection: close", then the
-- connection is closed:
--   GET /data/<N>/<SEED>  200, N bytes of e2e.support's stream(SEED)
--   GET /chunked/<N>/<SEED>  the same bytes with Transfer-Encoding: chunked
--                         (chunks of 1 to 9000 bytes, an extension on some
--                         size lines, a trailer field)
--   GET /headers          200, the request's head as it came (text/plain)
--   POST /echo            200, the request body (Content-Length required)
--   anything else         404
-- The request target may be in origin form ("/data/..") or absolute form
-- ("http://host:port/data/.."), as RFC 9112 asks of a server. Each request
-- appends "METHOD TARGET host=<Host header>" to --log. The process exits by
-- itself after --lifetime seconds (default 900).
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
    elseif k == "--log" then opts.log = v
    elseif k == "--lifetime" then opts.lifetime = tonumber(v)
    else io.stderr:write("http_server: unknown option ", tostring(k), "\n"); os.exit(2) end
    i = i + 2
  end
end
assert(opts.port, "--port needed")
if #opts.hosts == 0 then opts.hosts[1] = "127.0.0.1" end

local HEAD_MAX = 65536
local BODY_MAX = 64 * 1024 * 1024
local MAX_CONNS = 900
local IDLE = 120

local listeners, conns, nconns = {}, {}, 0

for _, h in ipairs(opts.hosts) do
  local s = h:find(":", 1, true) and socket.tcp6() or socket.tcp4()
  assert(s:setoption("reuseaddr", true))
  if h:find(":", 1, true) then s:setoption("ipv6-v6only", true) end
  assert(s:bind(h, opts.port))
  assert(s:listen(128))
  s:settimeout(0)
  listeners[s] = true
end
print(("http_server: pid %s, port %d on %s"):format(tostring(require("posix.unistd").getpid()),
  opts.port, table.concat(opts.hosts, " ")))
io.stdout:flush()

local function log(line)
  if not opts.log then return end
  local f = io.open(opts.log, "ab")
  if f then f:write(line, "\n"); f:close() end
end

local function respond(c, status, body, extra)
  c.out = ("HTTP/1.1 %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s" ..
           "Connection: close\r\n\r\n"):format(status, #body, extra or "") .. body
  c.outi = 1
  c.state = "send"
end

-- N bytes of stream(SEED) as chunks of varying sizes, then a trailer.
local function respond_chunked(c, body)
  local parts, i, k = {}, 1, 0
  while i <= #body do
    k = k + 1
    local n = math.min(#body - i + 1, (k * 2654435761) % 9000 + 1)
    parts[#parts + 1] = ("%x%s\r\n"):format(n, k % 3 == 0 and ";ext=1" or "") ..
                        body:sub(i, i + n - 1) .. "\r\n"
    i = i + n
  end
  parts[#parts + 1] = "0\r\nX-Trailer: done\r\n\r\n"
  c.out = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" ..
          "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" .. table.concat(parts)
  c.outi = 1
  c.state = "send"
end

local function on_head(c)
  local head = c.buf:sub(1, c.head_end)
  c.buf = c.buf:sub(c.head_end + 1)
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.%d\r\n")
  if not method then return respond(c, "400 Bad Request", "bad request line\n") end
  local host = head:match("\r\n[Hh][Oo][Ss][Tt]:%s*([^\r]*)\r\n") or "-"
  log(("%s %s host=%s"):format(method, target, host))
  local path = target:match("^[Hh][Tt][Tt][Pp]://[^/]*(/.*)$") or target
  c.method, c.path = method, path
  if method == "POST" then
    local len = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength:%s*(%d+)"))
    if not len or len > BODY_MAX then return respond(c, "411 Length Required", "length\n") end
    c.want = len
    c.state = "body"
    return
  end
  if method == "GET" then
    local n, seed = path:match("^/data/(%d+)/(%d+)$")
    if n then return respond(c, "200 OK", E.pattern(tonumber(n), tonumber(seed))) end
    n, seed = path:match("^/chunked/(%d+)/(%d+)$")
    if n then return respond_chunked(c, E.pattern(tonumber(n), tonumber(seed))) end
    if path == "/headers" then return respond(c, "200 OK", head) end
  end
  respond(c, "404 Not Found", "not found\n")
end

local function on_body(c)
  if #c.buf >= c.want then
    local body = c.buf:sub(1, c.want)
    if c.path == "/echo" then return respond(c, "200 OK", body) end
    respond(c, "404 Not Found", "not found\n")
  end
end

local function close(c)
  c.s:close()
  conns[c.s] = nil
  nconns = nconns - 1
end

local function do_read(c)
  for _ = 1, 64 do
    local data, err, partial = c.s:receive(65536)
    local d = data or partial
    if d and #d > 0 then
      c.active = socket.gettime()
      c.buf = c.buf .. d
      if c.state == "head" then
        local e = c.buf:find("\r\n\r\n", 1, true)
        if e then
          c.head_end = e + 3
          on_head(c)
        elseif #c.buf > HEAD_MAX then
          respond(c, "431 Request Header Fields Too Large", "too large\n")
        end
      end
      if c.state == "body" then on_body(c) end
    end
    if err == "closed" then
      if c.state ~= "send" then c.dead = true end
      c.eof = true
      return
    end
    if err then
      if err ~= "timeout" then c.dead = true end
      return
    end
    if c.state == "send" then return end
  end
end

local function do_write(c)
  for _ = 1, 64 do
    local last, err, lastpart = c.s:send(c.out, c.outi)
    local idx = last or lastpart or (c.outi - 1)
    if idx >= c.outi then c.active = socket.gettime() end
    c.outi = idx + 1
    if c.outi > #c.out then
      c.done = true
      return
    end
    if err then
      if err ~= "timeout" then c.dead = true end
      return
    end
  end
end

local stop_at = socket.gettime() + opts.lifetime
local last_sweep = socket.gettime()
while socket.gettime() < stop_at do
  local rset, wset = {}, {}
  for s in pairs(listeners) do rset[#rset + 1] = s end
  for s, c in pairs(conns) do
    if c.state ~= "send" and not c.eof then rset[#rset + 1] = s end
    if c.state == "send" then wset[#wset + 1] = s end
  end
  local r, w = socket.select(rset, wset, 1.0)
  for _, s in ipairs(r) do
    if listeners[s] then
      for _ = 1, 64 do
        local cs = s:accept()
        if not cs then break end
        if nconns >= MAX_CONNS then
          cs:close()
        else
          cs:settimeout(0)
          cs:setoption("tcp-nodelay", true)
          conns[cs] = { s = cs, buf = "", state = "head", active = socket.gettime() }
          nconns = nconns + 1
        end
      end
    elseif conns[s] then
      do_read(conns[s])
    end
  end
  for _, s in ipairs(w) do
    local c = conns[s]
    if c and not c.dead then do_write(c) end
  end
  local now = socket.gettime()
  local sweep = now - last_sweep >= 1
  if sweep then last_sweep = now end
  for _, c in pairs(conns) do
    if c.dead or c.done or (sweep and now - c.active > IDLE) then close(c) end
  end
end
print("http_server: lifetime over, exiting")
