#!/usr/bin/env luajit
-- Captures what real v2ray 4.34 peers send over the WebSocket transport and
-- writes it to spec/fuzz/vectors/ws_v2ray.json (read by spec/fuzz/seeds.lua
-- for the fuzz_ws_frames and fuzz_http_upgrade seeds).
--
--   luajit spec/fuzz/tools/capture_ws.lua [OUT]      (from the repository root)
--
-- 1. A v2ray client (SOCKS5 in, VMess over ws out, path /ray) is pointed at
--    a listener here that answers its upgrade with a 101 (RFC 6455 4.2.2,
--    computed here), sends a ping and later a close frame, and records
--    everything: the upgrade request, the masked frames carrying the VMess
--    request, the pong and the close reply.  One CONNECT with data goes
--    through the SOCKS5 port.
-- 2. A v2ray server (VMess over ws, path /ray) is sent an upgrade request;
--    its 101 reply is recorded.
local socket = require "socket"
local unistd = require "posix.unistd"
local psignal = require "posix.signal"
local pwait = require "posix.sys.wait"
local cjson = require "cjson"

local OUT = arg[1] or "spec/fuzz/vectors/ws_v2ray.json"
local UUID = "de305d54-75b4-431b-adb2-eb6b9e546014"

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function be16(v) return string.char(math.floor(v / 256) % 256, v % 256) end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local pids = {}
local function spawn(argv)
  local pid = assert(unistd.fork())
  if pid == 0 then
    local null = io.open("/dev/null", "w")
    unistd.dup2(require("posix.stdio").fileno(null), 1)
    unistd.exec(argv[1], { select(2, unpack(argv)) })
    os.exit(127)
  end
  pids[#pids + 1] = pid
end
local function stop_all()
  for _, pid in ipairs(pids) do
    psignal.kill(pid, psignal.SIGTERM)
    pwait.wait(pid)
  end
  pids = {}
end

local function wait_port(port)
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(0.1)
    if c:connect("127.0.0.1", port) then c:close(); return end
    c:close()
    socket.sleep(0.1)
  end
  error("port " .. port .. " never opened")
end

-- Sec-WebSocket-Accept: base64(SHA-1(key .. GUID)), SHA-1 by sha1sum(1)
local function accept_of(key)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
  f:close()
  local p = assert(io.popen("sha1sum " .. tmp .. " | cut -c1-40 | xxd -r -p | base64"))
  local v = p:read("*l")
  p:close()
  os.remove(tmp)
  return v
end

-- everything that comes within `secs`
local function drain(c, secs)
  local out = {}
  c:settimeout(0.1)
  local t = socket.gettime() + secs
  while socket.gettime() < t do
    local d, err, part = c:receive(65536)
    d = d or part
    if d and #d > 0 then out[#out + 1] = d end
    if err == "closed" then break end
  end
  return table.concat(out)
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0)
local function write_json(name, t)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  f:write(cjson.encode(t))
  f:close()
  return dir .. "/" .. name
end

-- 1. a v2ray client
local ws_port, socks_port = free_port(), free_port()
local lst = assert(socket.bind("127.0.0.1", ws_port))
spawn({ "/usr/bin/v2ray", "-config", write_json("client.json", {
  log = { loglevel = "warning" },
  inbounds = { { listen = "127.0.0.1", port = socks_port, protocol = "socks",
                 settings = { auth = "noauth" } } },
  outbounds = { { protocol = "vmess",
                  settings = { vnext = { { address = "127.0.0.1", port = ws_port,
                    users = { { id = UUID, alterId = 0, security = "aes-128-gcm" } } } } },
                  streamSettings = { network = "ws", wsSettings = { path = "/ray" } } } },
}) })
wait_port(socks_port)
local s = assert(socket.tcp())
s:settimeout(5)
assert(s:connect("127.0.0.1", socks_port))
assert(s:send("\5\1\0"))
assert(s:receive(2) == "\5\0")
assert(s:send("\5\1\0\3\11example.com" .. be16(80)))
assert(s:receive(10))
assert(s:send("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
lst:settimeout(5)
local c = assert(lst:accept())
c:settimeout(5)
local head = {}
repeat
  local l = assert(c:receive("*l"))
  head[#head + 1] = l .. "\r\n"
until l == ""
local request = table.concat(head)
local key = request:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey:%s*(%S+)")
assert(c:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
              "Sec-WebSocket-Accept: " .. accept_of(key) .. "\r\n\r\n"))
local frames = drain(c, 0.5)
assert(c:send("\137\4ping"))                 -- a ping (server frames are unmasked)
frames = frames .. drain(c, 0.5)
assert(c:send("\136\2\3\232"))               -- close 1000
frames = frames .. drain(c, 1.0)
c:close()
s:close()
stop_all()

-- 2. a v2ray server's 101
local srv_port = free_port()
spawn({ "/usr/bin/v2ray", "-config", write_json("server.json", {
  log = { loglevel = "warning" },
  inbounds = { { listen = "127.0.0.1", port = srv_port, protocol = "vmess",
                 settings = { clients = { { id = UUID, alterId = 0 } } },
                 streamSettings = { network = "ws", wsSettings = { path = "/ray" } } } },
  outbounds = { { protocol = "freedom" } },
}) })
wait_port(srv_port)
local u = assert(socket.tcp())
u:settimeout(5)
assert(u:connect("127.0.0.1", srv_port))
assert(u:send("GET /ray HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
local reply = drain(u, 0.5)
u:close()
stop_all()
os.execute("rm -rf " .. dir)

local f = assert(io.open(OUT, "w"))
f:write(cjson.encode({
  description = "captured by spec/fuzz/tools/capture_ws.lua from v2ray 4.34 (" ..
                os.date("!%Y-%m-%d") .. "): a ws client's upgrade request and frames " ..
                "(VMess request, pong, close reply), a ws server's 101 to the RFC 6455 sample key",
  client_request = request,
  client_frames_hex = hex(frames),
  server_reply = reply,
}))
f:close()
print(("wrote %s: request %d bytes, frames %d bytes, reply %d bytes"):format(OUT, #request, #frames, #reply))
