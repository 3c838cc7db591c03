#!/usr/bin/env luajit
-- Captures a real Mux.Cool session from a v2ray client and writes it, with
-- its decrypted body, to spec/fuzz/vectors/mux_v2ray_client.json (read by
-- spec/fuzz/seeds.lua for the fuzz_mux seeds).
--
--   make && LUA_PATH="lua/?.lua;build/lua/?.lua;;" luajit spec/fuzz/tools/capture_mux.lua [OUT]
--
-- A v2ray client (`v2ray -config`, SOCKS5 inbound with UDP, VMess outbound
-- with mux enabled, AEAD header, aes-128-gcm) is pointed at
-- spec/e2e/tools/capture_server.lua, which records and never answers (the
-- client writes its frames without waiting for a reply).  Through the
-- SOCKS5 port: three CONNECTs (domain, IPv4, IPv6) with data, one of them
-- closed early (End), and a UDP ASSOCIATE with datagrams to an IPv4 and a
-- domain destination.  The recorded connection is then decoded with the
-- project's codec (lr_req_decode, lr_body_open) under the vectors' UUID.
local ffi = require "ffi"
local socket = require "socket"
local unistd = require "posix.unistd"
local psignal = require "posix.signal"
local pwait = require "posix.sys.wait"
local cjson = require "cjson"
local core = require "luaray.core"
local C = core.C

local OUT = arg[1] or "spec/fuzz/vectors/mux_v2ray_client.json"
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
  return pid
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

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0)
local cap_port, socks_port = free_port(), free_port()
spawn({ "/usr/bin/env", "luajit", "spec/e2e/tools/capture_server.lua", "--port", tostring(cap_port),
        "--dir", dir, "--lifetime", "60" })
local cfg = {
  log = { loglevel = "warning" },
  inbounds = { { tag = "socks-in", listen = "127.0.0.1", port = socks_port, protocol = "socks",
                 settings = { auth = "noauth", udp = true, ip = "127.0.0.1" } } },
  outbounds = { { tag = "vmess-out", protocol = "vmess",
                  settings = { vnext = { { address = "127.0.0.1", port = cap_port,
                    users = { { id = UUID, alterId = 0, security = "aes-128-gcm", level = 0 } } } } },
                  mux = { enabled = true, concurrency = 8 } } },
}
local f = assert(io.open(dir .. "/client.json", "w"))
f:write(cjson.encode(cfg))
f:close()
wait_port(cap_port)
spawn({ "/usr/bin/v2ray", "-config", dir .. "/client.json" })
wait_port(socks_port)
local t_start = os.time()

-- SOCKS5 CONNECT through the v2ray client; returns the connected socket
local function socks_connect(atyp, addr, port)
  local c = assert(socket.tcp())
  c:settimeout(5)
  assert(c:connect("127.0.0.1", socks_port))
  assert(c:send("\5\1\0"))
  assert(c:receive(2) == "\5\0")
  local a = atyp == 3 and string.char(#addr) .. addr or addr
  assert(c:send("\5\1\0" .. string.char(atyp) .. a .. be16(port)))
  local rep = assert(c:receive(4))
  assert(rep:byte(2) == 0, "socks reply " .. rep:byte(2))
  local skip = rep:byte(4) == 1 and 6 or rep:byte(4) == 4 and 18 or 1 + assert(c:receive(1)):byte()
  assert(c:receive(skip))
  return c
end

local GET = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: capture\r\nAccept: */*\r\n\r\n"
local a = socks_connect(3, "example.com", 80)
assert(a:send(GET))
socket.sleep(0.2)
local b = socks_connect(1, "\93\184\216\34", 443)
assert(b:send("\22\3\1\0\5hello"))
socket.sleep(0.2)

local c = socks_connect(4, "\32\1\13\184" .. ("\0"):rep(11) .. "\1", 8080)
assert(c:send(("0123456789"):rep(30)))
socket.sleep(0.2)
b:close() -- End for that session
socket.sleep(0.2)

-- UDP ASSOCIATE: datagrams to an IPv4 and a domain destination
local ctl = assert(socket.tcp())
ctl:settimeout(5)
assert(ctl:connect("127.0.0.1", socks_port))
assert(ctl:send("\5\1\0"))
assert(ctl:receive(2) == "\5\0")
assert(ctl:send("\5\3\0\1\0\0\0\0\0\0"))
local rep = assert(ctl:receive(10))
assert(rep:byte(2) == 0 and rep:byte(4) == 1, "udp associate refused")
local relay_port = rep:byte(9) * 256 + rep:byte(10)
local u = assert(socket.udp())
assert(u:setpeername("127.0.0.1", relay_port))
local DNS = "\18\52\1\0\0\1\0\0\0\0\0\0\7example\3com\0\0\1\0\1"
assert(u:send("\0\0\0\1\8\8\8\8" .. be16(53) .. DNS))
socket.sleep(0.2)
assert(u:send("\0\0\0\3\15dns.example.net" .. be16(53) .. DNS))
socket.sleep(0.2)
assert(u:send("\0\0\0\1\8\8\8\8" .. be16(53) .. DNS:sub(1, 20) .. "\0\28\0\1"))
socket.sleep(0.2)
assert(a:send("more data on the first session"))
socket.sleep(0.3)
a:close()
c:close()
u:close()
ctl:close()
socket.sleep(1.0)
stop_all()

-- the recorded connection (the others are wait_port's probes): header,
-- then the body chunks
local wire = ""
for n = 1, 20 do
  local rf = io.open(dir .. "/conn-" .. n .. ".bin", "rb")
  if rf then
    local w = rf:read("*a")
    rf:close()
    if #w > #wire then wire = w end
  end
end
os.execute("rm -rf " .. dir)
assert(#wire > 0, "nothing captured")

local users = C.lr_users_new()
local id = ffi.new("uint8_t[16]")
assert(C.lr_uuid_parse(UUID, #UUID, id) == 0)
assert(C.lr_users_add(users, id, 0) >= 0)
local now = os.time()
assert(C.lr_users_refresh(users, now) == 0)
local dec = ffi.new("struct lr_req_dec")
C.lr_req_dec_init(dec)
local req = ffi.new("struct lr_req")
local consumed = ffi.new("size_t[1]")
local buf = ffi.new("uint8_t[?]", #wire)
ffi.copy(buf, wire, #wire)
local rc = C.lr_req_decode(dec, users, nil, buf, #wire, now, req, consumed)
assert(rc == 0, "request header: " .. core.strerror(rc))
assert(req.command == 3, "not a mux request: command " .. req.command)
local hlen = tonumber(consumed[0])
local body = C.lr_body_new()
assert(C.lr_body_init(body, req.security, req.option, req.body_key, req.body_iv,
                      req.body_key, req.body_iv, 0) == 0)
local out = ffi.new("uint8_t[65536]")
local outlen = ffi.new("size_t[1]")
local pos, parts, chunks, ended = hlen, {}, 0, false
while pos < #wire do
  rc = C.lr_body_open(body, buf + pos, #wire - pos, consumed, out, 65536, outlen)
  if rc == 1 then break end -- LR_AGAIN: a partial chunk at the end
  if rc == 2 then ended = true; pos = pos + tonumber(consumed[0]); break end -- LR_DONE
  assert(rc == 0, "body: " .. core.strerror(rc))
  parts[#parts + 1] = ffi.string(out, outlen[0])
  chunks = chunks + 1
  pos = pos + tonumber(consumed[0])
end
local stream = table.concat(parts)

-- a summary of the frames, for the description
local frames, p = {}, 1
while p + 1 <= #stream do
  local ml = stream:byte(p) * 256 + stream:byte(p + 1)
  local m = stream:sub(p + 2, p + 1 + ml)
  if #m < 4 then break end
  local fid, st, opt = m:byte(1) * 256 + m:byte(2), m:byte(3), m:byte(4)
  local s = ({ "new", "keep", "end", "keepalive" })[st] or ("status" .. st)
  if st == 1 then s = s .. (m:byte(5) == 2 and "/udp" or "/tcp") end
  p = p + 2 + ml
  if opt % 2 == 1 then
    local dl = stream:byte(p) * 256 + stream:byte(p + 1)
    s = s .. "+" .. dl
    p = p + 2 + dl
  end
  frames[#frames + 1] = fid .. ":" .. s
end

local doc = {
  description = "A Mux.Cool session captured from a real v2ray 4.34 client (SOCKS5 inbound, " ..
    "VMess outbound with mux, AEAD header, aes-128-gcm) by spec/fuzz/tools/capture_mux.lua: " ..
    "CONNECTs to example.com:80, 93.184.216.34:443 and [2001:db8::1]:8080 with data (the second " ..
    "closed early), then a UDP ASSOCIATE with DNS datagrams to 8.8.8.8:53 and dns.example.net:53. " ..
    "client_wire is the recorded connection; mux_stream is its body decrypted by lr_req_decode " ..
    "and lr_body_open (the frames listed in frames, session:status+data bytes); body_key/body_iv " ..
    "open client_wire from header_len on.",
  v2ray = "4.34.0",
  uuid = UUID,
  capture_time = now,
  security = req.security,
  option = req.option,
  body_key = hex(ffi.string(req.body_key, 16)),
  body_iv = hex(ffi.string(req.body_iv, 16)),
  header_len = hlen,
  chunks = chunks,
  end_chunk = ended,
  frames = table.concat(frames, " "),
  client_wire = hex(wire),
  mux_stream = hex(stream),
}
os.execute("mkdir -p " .. OUT:match("^(.*)/[^/]*$"))
local of = assert(io.open(OUT, "w"))
of:write(cjson.encode(doc), "\n")
of:close()
print(("capture_mux: %d wire bytes (%d header, %d chunks), %d mux bytes, frames: %s -> %s"):format(
  #wire, hlen, chunks, #stream, doc.frames, OUT))
