--[==[ e2e.support: the end-to-end harness (processes, sockets, configs).

  local E = require "e2e.support"

Everything is on loopback (127.0.0.1, ::1). Every wait is bounded in time
and in iterations. Children are started only by a harness, recorded by PID,
each in its own process group (pgid = pid), and stopped by that PID:
SIGTERM to the group, then SIGKILL after a grace period. A child also gets
PR_SET_PDEATHSIG=SIGKILL, so it dies if the test runner itself dies, and the
runner becomes a child subreaper, so a child's own orphans are reaped too.

Harness (one per spec file; creating it is cheap, nothing starts yet):
  h = E.new(name)              temp dir /tmp/luaray-e2e-<name>-XXXXXX made on first use
  h:path(file) / h:write(file, text) -> path inside the temp dir
  h:spawn(name, argv, opts)    -> proc {name, pid, log, argv}. stdout+stderr go
                               to <dir>/<name>.log (a reused name gets "-2", ...),
                               stdin is /dev/null, fds > 2
                               closed. opts.env {VAR = "v" | false (unset)};
                               LD_PRELOAD is unset unless opts.keep_preload.
                               opts.ports {port | {host, port}, ...} and
                               opts.timeout (5 s): wait until each accepts a TCP
                               connect; raises with the log tail if the child
                               dies or a port does not open in time.
  h:exec(name, argv [, opts])  runs argv to completion (killed after opts.timeout,
                               10 s) -> exit code (nil if killed by a signal), log text
  h:alive(proc)                true while running (reaps and records proc.status)
  h:stop(proc [, grace])       SIGTERM to the group, SIGKILL after grace (2 s); reaps
  h:stop_luaray(proc [, patience])  SIGTERM (luaray's graceful stop), a second
                               SIGTERM after patience (0.3 s: luaray stops at
                               once), then h:stop(proc, 1). cleanup() uses it
                               for every child started by h:luaray.
  h:cleanup()                  stops every child (reverse start order), then deletes
                               the temp dir unless a guarded test failed or
                               LURAY_E2E_KEEP=1 (the path is printed then)
  h:shell(name, dir, cmd)      runs the sh script cmd in dir (set -e), 30 s at
                               most; raises with its output unless it exits 0 -> output
  h:test_pki(leaves [, label]) a test PKI made with the openssl command in
                               h:tmpdir(): a root (ca.pem, ca.key: what clients
                               trust), an intermediate (int.pem, int.key) and per
                               leaves[i] = {file, {names}} a P-256 leaf for the
                               names (the first is the CN; DNS SANs, "*." too)
                               signed by the intermediate: <file>.pem (leaf +
                               intermediate, a fullchain.pem), <file>.key,
                               <file>.crt (the leaf) -> the dir; h:test_leaf(file,
                               ca, names) makes one more (ca: "int", or a root's
                               file name)
  h:tail(proc [, n])           last n (20) lines of a child's log
  h:logs([n])                  the tails of every child's log, labelled
  h:guard(fn) -> function      wraps a test body: on error, appends h:logs() to
                               the message (busted failures stay failures)
  h:echo_server([opts])        starts tools/echo_server.lua (see that file) ->
                               {host, port, source_port, sink_port, proc, results};
                               TCP echo and UDP echo on the same port. opts.ipv6:
                               also listen on ::1 (same ports); opts.hosts: more
                               IPv4 loopback addresses to listen on. opts.name,
                               opts.corrupt_at (alter that echo byte: a self-test)
                               echo:sink_results() -> {{count, fnv}, ...}
                               echo:wait_sink(n [, timeout]) -> the n-th record
                               (through v2ray, which never forwards the FIN,
                               it appears when v2ray closes, ~1 s later)
  h:v2ray(name, cfg [, opts])  writes cfg (a table) as <name>.json, starts
                               `v2ray -config FILE`, waits for its TCP inbounds
  h:v2ray_pair(opts)           a VMess server and a SOCKS5 (+HTTP) client ->
                               {server, client, server_port, socks_port, http_port, id}
                               opts: security, alter_id, mux, http, accounts, env
  h:luaray(name, script [, opts])  writes the config script, starts
                               `$LURAY_BUILD/luaray -c FILE`, waits for opts.ports.
                               The luaray_*_script generators return (script, opts),
                               so h:luaray(name, E.luaray_server_script{...}) works.
  h:luaray_obs(name, script [, opts])  the same, with the daemon's stdout (hook
                               print() lines) in a file of its own, proc.out;
                               proc.config is the config file (for reloads)
  h:capture_server([opts])     starts tools/capture_server.lua: records every
                               connection's bytes, never answers ->
                               cap {host, port, dir, proc}; cap:count(),
                               cap:bytes(n), cap:wait_bytes(n, minlen [, quiet, timeout]),
                               cap:wait_many(first, n, minlen [, quiet, timeout]),
                               cap:request_via(socks, port): what a client on SOCKS5
                               port `socks` (pointed at the capture) sends for one new
                               connection to 127.0.0.1:port -> bytes, marker.
                               count() includes the harness's own port probe.
  h:http_server([opts])        starts tools/http_server.lua (GET /data/N/SEED,
                               POST /echo; origin or absolute form) ->
                               {host, port, log (one line per request), proc};
                               opts.ipv6 also listens on ::1

Programs and configs:
  E.v2ray_bin()                path of v2ray ($LURAY_V2RAY, /usr/bin/v2ray, PATH);
                               raises "run scripts/deps.sh" when missing
  E.luaray_bin()               $LURAY_BUILD/luaray (raises "run make" when missing)
  E.v2ray_server_config{port, users = {{id, alterId}}, listen, loglevel, access}
  E.v2ray_client_config{socks_port, http_port, server_port, server_host, id, alterId,
                        security, mux, accounts = {{user, pass}}, loglevel, access}
                               both -> tables in v2ray 4.34 JSON shape
  E.V2RAY_LEGACY_ENV           env making a v2ray client send the legacy (MD5)
                               header even with alterId 0; alterId > 0 already does
  E.luaray_server_script{port, users = {{id, alter_id, email}}, listen,
                         handshake_timeout, allow_legacy, ...} -> text, opts
  E.luaray_client_script{socks_port, http_port, server_port, id, alter_id, security,
                         masking, padding, authenticated_length, accounts, ...} -> text, opts
                               config scripts in the real DSL (lua/luaray/config.lua;
                               see the functions for every key). Outbound keys
                               are emitted only when given, so the DSL's own
                               defaults apply otherwise (security "auto").
                               Logs: level "info" and the access log on stderr
                               (the child's log file) unless log_level/access.
  E.uuid()                     a random v4 UUID string
  E.json(t)                    JSON text (lua-cjson)

Network (luasocket; every call takes an optional timeout, default 5 s):
  E.free_port([hosts])         a port free for TCP and UDP on every host
                               (default {"127.0.0.1"}); bind 0, read, close
  E.wait_port(host, port, timeout)  -> true, or nil, err when no connect succeeds
  E.has_ipv6()                 true when ::1 can be bound
  E.tcp_connect(host, port)    -> connected socket, or nil, err
  E.socks5_connect(ph, pp, dh, dp [, user, pass [, timeout]]) -> sock, or nil, err.
                               RFC 1928 CONNECT; RFC 1929 user/password when user
                               is given. dh: IPv4, IPv6 literal or domain name.
  E.http_connect(ph, pp, dh, dp [, timeout]) -> sock, or nil, err (HTTP CONNECT)
  E.socks5_udp_associate(ph, pp [, user, pass [, timeout]]) -> assoc, or nil, err
    assoc:send(dh, dp, data)   one SOCKS5 UDP datagram to the relay
    assoc:recv([timeout])      -> data, src_host, src_port, or nil, err
    assoc:close()              closes the UDP socket and the TCP control connection
  E.transfer_echo(sock, nbytes [, opts]) -> true, info, or false, err. Sends nbytes
                               of pattern data while reading the echo
                               (non-blocking, interleaved) and checks every
                               received byte. opts.timeout (10 s), opts.seed,
                               opts.half_close (shutdown after sending and
                               require EOF after the echo), opts.close (close
                               the socket afterwards, default true).
  E.transfer_echo_many(socks, nbytes [, opts]) the same over many sockets at once
  E.sink_send(sock, nbytes [, opts]) -> count, fnv: sends pattern data (opts.seed,
                               default 7) to the echo server's sink port,
                               half-closes, reads its "count fnv" reply
                               (nil, err when the connection closes first)
  E.source_read(sock, nbytes [, opts]) -> true or false, err: asks the source port
                               for nbytes and checks them
  E.check_socks_tcp(ph, pp, echo, nbytes [, opts]) -> true, or false, "step: err":
                               through a SOCKS5 proxy, nbytes both ways (echo),
                               nbytes down (source), nbytes up (sink, by count
                               and FNV); opts.user/pass, dst, half_close, steps
  E.check_socks_udp(ph, pp, echo [, opts]) -> true, or false, err: UDP ASSOCIATE,
                               5 datagrams of 1..1400 bytes to the UDP echo
  E.http_request(sock, method, target [, opts]) -> code, head, body, or nil, err
                               one HTTP/1.1 exchange (opts.headers, opts.body)
  E.probe_many(host, port, payloads [, opts]) -> {{received, how, closed_after}}:
                               one connection per payload, sent, then watched
                               (never closed first) until the peer closes or
                               opts.max_wait (10 s); opts.fin: a FIN (write
                               shutdown) right after the payload
  E.silent_failures(results, labels, lo, hi) -> list of what broke the silent
                               close in probe_many's results: bytes sent back, an
                               end other than a FIN, a close outside [lo, hi] s
                               (labels[i] names result i; "probe i" without)
  E.recv_nb(sock)              -> bytes, nil | "eof" | "reset" | "errno N": a
                               non-blocking read that tells a FIN from an RST
  E.port_bindable(host, port)  true when host:port can be bound for TCP
Logs:
  E.read_file(path)            a file's whole text ("" when it cannot be read)
  E.count_matches(text, pattern [, plain])  non-overlapping matches
  E.wait_log(proc, pattern [, n [, timeout]]) -> the log text once it has n (1)
                               matches, or nil, err after timeout (10 s)
  E.observations(text [, kind])  the "OBS\t..." lines hooks print (luaray_obs):
                               a list of tab-separated field lists, of `kind` only
Data:
  E.stream(seed)               deterministic byte stream; s:next(n) -> n bytes
  E.pattern(n [, seed])        the first n bytes of E.stream(seed)
  E.fnv1a32(s [, h])           FNV-1a 32 as an unsigned number (chainable)
  E.now(), E.sleep(s)          monotonic seconds; sleep

v2ray 4.34 facts this relies on: `v2ray -config FILE` (also -c, -test,
-version; no `run` subcommand); "access": "none" turns the access log off;
its VMess server dials 127.0.0.1 through freedom without complaint. It does
not forward a half-close: the destination never sees the client's FIN, and
v2ray closes both sides about 1-2 s later, so read the echo by byte count
(transfer_echo's default), not until EOF. With mux on, a client FIN ends the
stream at once and any echo still in flight is lost.

A later luaray spec swaps one side for one call, e.g.
  local text, o = E.luaray_server_script { port = E.free_port(), users = {{ id = id }} }
  local srv = h:luaray("luaray-server", text, o)
]==]

local ffi = require "ffi"
local bit = require "bit"
local socket = require "socket"
local cjson = require "cjson"
local unistd = require "posix.unistd"
local pwait = require "posix.sys.wait"
local psignal = require "posix.signal"
local fcntl = require "posix.fcntl"
local pstdlib = require "posix.stdlib"
local ptime = require "posix.time"
local dirent = require "posix.dirent"

local bxor, lshift, rshift, tobit = bit.bxor, bit.lshift, bit.rshift, bit.tobit

local M = {}

-- Where this file lives: spec/e2e/ (the tools are beside it).
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec/e2e"
if here:sub(1, 1) ~= "/" then here = unistd.getcwd() .. "/" .. here end
M.dir = here
M.tools = here .. "/tools"

local DEFAULT_TIMEOUT = 5

----------------------------------------------------------------------------
-- Logs

-- A file's whole text ("" when it cannot be read).
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local t = f:read("*a") or ""
  f:close()
  return t
end

-- How many non-overlapping matches of `pattern` `text` has (with plain, of
-- the plain string `pattern`).
function M.count_matches(text, pattern, plain)
  local n, init = 0, 1
  for _ = 1, 1000000 do
    local s, e = text:find(pattern, init, plain)
    if not s then break end
    n, init = n + 1, e + 1
  end
  return n
end

-- Waits (timeout s, default 10) until process p's log has n (1) matches of
-- pattern -> the log text, or nil, what was found.
function M.wait_log(p, pattern, n, timeout)
  local deadline = M.now() + (timeout or 10)
  local text
  for _ = 1, 100000 do
    text = M.read_file(p.log)
    if M.count_matches(text, pattern) >= (n or 1) then return text end
    if M.now() >= deadline then break end
    M.sleep(0.02)
  end
  return nil, ("log of %s: %d match(es) of %q, wanted %d"):format(p.name,
    M.count_matches(text or "", pattern), pattern, n or 1)
end

-- The lines "OBS\tkind\tfield..." that hooks print (see H:luaray_obs): a
-- list of field lists, only those of `kind` when given.
function M.observations(text, kind)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, 4) == "OBS\t" then
      local f = {}
      for field in (line:sub(5) .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
      if not kind or f[1] == kind then out[#out + 1] = f end
    end
  end
  return out
end

----------------------------------------------------------------------------
-- Time

function M.now()
  local t = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return t.tv_sec + t.tv_nsec * 1e-9
end

function M.sleep(s)
  if s > 0 then socket.sleep(s) end
end

----------------------------------------------------------------------------
-- Data: a deterministic stream (xorshift32, 4 KiB blocks) and FNV-1a 32.

local BLOCK_WORDS = 1024
local wbuf = ffi.new("int32_t[?]", BLOCK_WORDS)

local function gen_block(x)
  for i = 0, BLOCK_WORDS - 1 do
    x = bxor(x, lshift(x, 13)); x = bxor(x, rshift(x, 17)); x = bxor(x, lshift(x, 5))
    wbuf[i] = x
  end
  return ffi.string(wbuf, BLOCK_WORDS * 4), x
end

local Stream = {}
Stream.__index = Stream

function M.stream(seed)
  local x = tobit(seed or 1)
  if x == 0 then x = tobit(0x9E3779B9) end
  return setmetatable({ x = x, buf = "", pos = 1 }, Stream)
end

function Stream:next(n)
  local parts, got = {}, 0
  while got < n do
    if self.pos > #self.buf then
      self.buf, self.x = gen_block(self.x)
      self.pos = 1
    end
    local take = math.min(n - got, #self.buf - self.pos + 1)
    parts[#parts + 1] = self.buf:sub(self.pos, self.pos + take - 1)
    self.pos = self.pos + take
    got = got + take
  end
  return table.concat(parts)
end

function M.pattern(n, seed)
  return M.stream(seed):next(n)
end

-- FNV prime 16777619 = 2^24 + 403: h * prime mod 2^32 without losing bits.
function M.fnv1a32(s, h)
  h = tobit(h or 0x811c9dc5)
  local p = ffi.cast("const uint8_t *", s)
  for i = 0, #s - 1 do
    h = bxor(h, p[i])
    h = tobit(lshift(h, 24) + h * 403)
  end
  return h % 4294967296
end

local seed_counter = 0
local function next_seed()
  seed_counter = seed_counter + 1
  return seed_counter * 2654435761 % 4294967296 + 1
end

----------------------------------------------------------------------------
-- Sockets

local function is_ipv6(host) return host:find(":", 1, true) ~= nil end
-- A canonical dotted quad (no leading zeros, each part <= 255): anything
-- else ("0177.0.0.1", "127.1") is sent as a name, as a client would.
local function is_ipv4(host)
  local p = { host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #p ~= 4 then return false end
  for _, x in ipairs(p) do
    if tonumber(x) > 255 or (#x > 1 and x:sub(1, 1) == "0") then return false end
  end
  return true
end

local function tcp_for(host)
  return is_ipv6(host) and socket.tcp6() or socket.tcp4()
end

function M.tcp_connect(host, port, timeout)
  local s, err = tcp_for(host)
  if not s then return nil, err end
  s:settimeout(timeout or DEFAULT_TIMEOUT)
  local ok, cerr = s:connect(host, port)
  if not ok then s:close(); return nil, ("connect %s:%d: %s"):format(host, port, cerr) end
  s:setoption("tcp-nodelay", true)
  return s
end

function M.has_ipv6()
  if M._ipv6 == nil then
    local s = socket.tcp6()
    M._ipv6 = s ~= nil and s:bind("::1", 0) == 1
    if s then s:close() end
  end
  return M._ipv6
end

-- A port number that is free for TCP and for UDP on every host in `hosts`,
-- and not handed out before by this process.
local given = {}
function M.free_port(hosts)
  hosts = hosts or { "127.0.0.1" }
  for _ = 1, 50 do
    local first = tcp_for(hosts[1])
    assert(first:setoption("reuseaddr", true))
    local ok, err = first:bind(hosts[1], 0)
    assert(ok, "free_port: bind: " .. tostring(err))
    local _, port = first:getsockname()
    port = tonumber(port)
    local held, good = { first }, true
    for i, h in ipairs(hosts) do
      if i > 1 then
        local t = tcp_for(h)
        held[#held + 1] = t
        if t:bind(h, port) ~= 1 then good = false end
      end
      local u = is_ipv6(h) and socket.udp6() or socket.udp4()
      held[#held + 1] = u
      if u:setsockname(h, port) ~= 1 then good = false end
    end
    for _, s in ipairs(held) do s:close() end
    if good and not given[port] then
      given[port] = true
      return port
    end
  end
  error("free_port: no fresh port free for TCP and UDP after 50 tries")
end

function M.wait_port(host, port, timeout)
  local deadline = M.now() + (timeout or DEFAULT_TIMEOUT)
  local last
  for _ = 1, 10000 do
    local s, err = M.tcp_connect(host, port, 0.25)
    if s then
      -- an RST, not a FIN: a probe of the listener is no client, and a
      -- VMess server holds a FIN'd empty handshake to its deadline
      s:setoption("linger", { on = true, timeout = 0 })
      s:close()
      return true
    end
    last = err
    if M.now() >= deadline then break end
    M.sleep(0.02)
  end
  return nil, ("port %s:%d not open after %.1fs (%s)"):format(host, port, timeout or DEFAULT_TIMEOUT,
    tostring(last))
end

-- Reads exactly n bytes (blocking with the socket's timeout).
local function recv_exact(s, n)
  local data, err, partial = s:receive(n)
  if not data then return nil, err, partial end
  return data
end

----------------------------------------------------------------------------
-- SOCKS5 (RFC 1928, RFC 1929) and HTTP CONNECT

local SOCKS_REPLY = {
  [1] = "general failure", [2] = "not allowed by ruleset", [3] = "network unreachable",
  [4] = "host unreachable", [5] = "connection refused", [6] = "TTL expired",
  [7] = "command not supported", [8] = "address type not supported",
}

local function be16(n) return string.char(rshift(n, 8) % 256, n % 256) end

-- ATYP + address + port.
local function socks_addr(host, port)
  if is_ipv4(host) then
    local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    return string.char(1, tonumber(a), tonumber(b), tonumber(c), tonumber(d)) .. be16(port)
  elseif is_ipv6(host) then
    local raw = assert(M.inet6_pton(host), "bad IPv6 literal " .. host)
    return "\4" .. raw .. be16(port)
  end
  assert(#host <= 255, "domain name too long")
  return "\3" .. string.char(#host) .. host .. be16(port)
end

-- IPv6 text to 16 bytes (handles "::").
function M.inet6_pton(text)
  local head, tail = text:match("^(.-)::(.*)$")
  local function groups(s)
    local g = {}
    if s == "" then return g end
    for part in (s .. ":"):gmatch("([^:]*):") do
      local v = tonumber(part, 16)
      if not v or #part > 4 then return nil end
      g[#g + 1] = v
    end
    return g
  end
  local gs
  if head then
    local a, b = groups(head), groups(tail)
    if not a or not b or #a + #b > 7 then return nil end
    gs = a
    for _ = 1, 8 - #a - #b do gs[#gs + 1] = 0 end
    for _, v in ipairs(b) do gs[#gs + 1] = v end
  else
    gs = groups(text)
    if not gs or #gs ~= 8 then return nil end
  end
  local out = {}
  for _, v in ipairs(gs) do out[#out + 1] = be16(v) end
  return table.concat(out)
end

local function inet6_ntop(raw)
  local g = {}
  for i = 1, 16, 2 do g[#g + 1] = ("%x"):format(raw:byte(i) * 256 + raw:byte(i + 1)) end
  return table.concat(g, ":")
end

-- Reads ATYP + address + port from a stream socket.
local function read_socks_addr(s)
  local atyp, err = recv_exact(s, 1)
  if not atyp then return nil, err end
  local host
  atyp = atyp:byte()
  if atyp == 1 then
    local a = recv_exact(s, 4)
    if not a then return nil, "short address" end
    host = ("%d.%d.%d.%d"):format(a:byte(1, 4))
  elseif atyp == 4 then
    local a = recv_exact(s, 16)
    if not a then return nil, "short address" end
    host = inet6_ntop(a)
  elseif atyp == 3 then
    local l = recv_exact(s, 1)
    host = l and recv_exact(s, l:byte())
    if not host then return nil, "short address" end
  else
    return nil, ("bad ATYP %d"):format(atyp)
  end
  local p = recv_exact(s, 2)
  if not p then return nil, "short port" end
  return host, p:byte(1) * 256 + p:byte(2)
end

-- Greeting and optional RFC 1929 authentication on a fresh connection.
local function socks_greet(s, user, pass)
  if user then
    assert(#user <= 255 and #(pass or "") <= 255, "socks5: user/pass too long")
    s:send("\5\1\2")
  else
    s:send("\5\1\0")
  end
  local r, err = recv_exact(s, 2)
  if not r then return nil, "socks5 greeting: " .. tostring(err) end
  if r:byte(1) ~= 5 then return nil, ("socks5 greeting: version %d"):format(r:byte(1)) end
  local method = r:byte(2)
  if method == 0xff then return nil, "socks5 greeting: no acceptable method" end
  if method == 2 then
    if not user then return nil, "socks5: server wants user/password" end
    pass = pass or ""
    s:send("\1" .. string.char(#user) .. user .. string.char(#pass) .. pass)
    local a, aerr = recv_exact(s, 2)
    if not a then return nil, "socks5 auth: " .. tostring(aerr) end
    if a:byte(2) ~= 0 then return nil, ("socks5 auth: refused (status %d)"):format(a:byte(2)) end
  elseif method ~= 0 then
    return nil, ("socks5 greeting: unexpected method %d"):format(method)
  end
  return true
end

-- Sends a request (cmd 1 CONNECT, 3 UDP ASSOCIATE) and reads the reply.
local function socks_request(s, cmd, host, port)
  s:send("\5" .. string.char(cmd) .. "\0" .. socks_addr(host, port))
  local r, err = recv_exact(s, 3)
  if not r then return nil, "socks5 reply: " .. tostring(err) end
  if r:byte(1) ~= 5 then return nil, ("socks5 reply: version %d"):format(r:byte(1)) end
  if r:byte(2) ~= 0 then
    return nil, ("socks5 reply %d (%s)"):format(r:byte(2), SOCKS_REPLY[r:byte(2)] or "?")
  end
  return read_socks_addr(s)
end

function M.socks5_connect(ph, pp, dh, dp, user, pass, timeout)
  local s, err = M.tcp_connect(ph, pp, timeout)
  if not s then return nil, err end
  local ok, gerr = socks_greet(s, user, pass)
  if not ok then s:close(); return nil, gerr end
  local bh, bp = socks_request(s, 1, dh, dp)
  if not bh then s:close(); return nil, bp end
  return s, bh, bp
end

function M.http_connect(ph, pp, dh, dp, timeout)
  local s, err = M.tcp_connect(ph, pp, timeout)
  if not s then return nil, err end
  local authority = (is_ipv6(dh) and "[" .. dh .. "]" or dh) .. ":" .. dp
  s:send(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"):format(authority, authority))
  local status, serr = s:receive("*l")
  if not status then s:close(); return nil, "http connect: " .. tostring(serr) end
  for _ = 1, 100 do
    local line, lerr = s:receive("*l")
    if not line then s:close(); return nil, "http connect headers: " .. tostring(lerr) end
    if line == "" then
      local code = tonumber(status:match("^HTTP/1%.%d (%d%d%d)"))
      if code ~= 200 then s:close(); return nil, "http connect: " .. status end
      return s
    end
  end
  s:close()
  return nil, "http connect: too many header lines"
end

local Assoc = {}
Assoc.__index = Assoc

function M.socks5_udp_associate(ph, pp, user, pass, timeout)
  local ctl, err = M.tcp_connect(ph, pp, timeout)
  if not ctl then return nil, err end
  local ok, gerr = socks_greet(ctl, user, pass)
  if not ok then ctl:close(); return nil, gerr end
  local udp = is_ipv6(ph) and socket.udp6() or socket.udp4()
  assert(udp:setsockname(is_ipv6(ph) and "::1" or "127.0.0.1", 0))
  local lh, lp = udp:getsockname()
  local rh, rp = socks_request(ctl, 3, lh, tonumber(lp))
  if not rh then ctl:close(); udp:close(); return nil, rp end
  if rh == "0.0.0.0" or rh == "0:0:0:0:0:0:0:0" then rh = ph end
  return setmetatable({ ctl = ctl, udp = udp, relay_host = rh, relay_port = rp }, Assoc)
end

function Assoc:send(dh, dp, data)
  local ok, err = self.udp:sendto("\0\0\0" .. socks_addr(dh, dp) .. data, self.relay_host, self.relay_port)
  if not ok then return nil, err end
  return true
end

function Assoc:recv(timeout)
  self.udp:settimeout(timeout or DEFAULT_TIMEOUT)
  local d, err = self.udp:receivefrom(65535)
  if not d then return nil, err end
  if #d < 10 or d:byte(3) ~= 0 then return nil, "bad SOCKS5 UDP datagram" end
  local atyp, host, off = d:byte(4), nil, nil
  if atyp == 1 then
    host, off = ("%d.%d.%d.%d"):format(d:byte(5, 8)), 9
  elseif atyp == 4 then
    host, off = inet6_ntop(d:sub(5, 20)), 21
  elseif atyp == 3 then
    local l = d:byte(5)
    host, off = d:sub(6, 5 + l), 6 + l
  else
    return nil, "bad ATYP in UDP datagram"
  end
  local port = d:byte(off) * 256 + d:byte(off + 1)
  return d:sub(off + 2), host, port
end

function Assoc:close()
  self.udp:close()
  self.ctl:close()
end

----------------------------------------------------------------------------
-- Echo transfers: send pattern data and check the echo, many sockets at once.

local function first_diff(a, b)
  for i = 1, math.min(#a, #b) do
    if a:byte(i) ~= b:byte(i) then return i end
  end
  return math.min(#a, #b) + 1
end

function M.transfer_echo_many(socks, nbytes, opts)
  opts = opts or {}
  local timeout = opts.timeout or 10
  local chunk = opts.chunk or 65536
  local start = M.now()
  local deadline = start + timeout
  local st, by = {}, {}
  for i, s in ipairs(socks) do
    s:settimeout(0)
    local seed = opts.seed and (opts.seed + i - 1) or next_seed()
    st[i] = { i = i, s = s, tx = M.stream(seed), rx = M.stream(seed), sent = 0, recvd = 0,
              pend = nil, pi = 1, eof = not opts.half_close, shut = false, done = false }
    by[s] = st[i]
  end
  local function fail(c, msg)
    if opts.close ~= false then
      for _, x in ipairs(st) do x.s:close() end
    end
    return false, ("connection %d of %d: %s (sent %d, received %d of %d, %.2fs)"):format(
      c and c.i or 0, #st, msg, c and c.sent or 0, c and c.recvd or 0, nbytes, M.now() - start)
  end
  local remaining = #st
  local iterations = 0
  while remaining > 0 do
    iterations = iterations + 1
    local now = M.now()
    if now >= deadline or iterations > 10000000 then
      for _, c in ipairs(st) do if not c.done then return fail(c, "timed out") end end
    end
    local rset, wset = {}, {}
    for _, c in ipairs(st) do
      if not c.done then
        rset[#rset + 1] = c.s
        if c.sent < nbytes then wset[#wset + 1] = c.s end
      end
    end
    local r, w, serr = socket.select(rset, wset, math.min(0.5, deadline - now))
    if serr and serr ~= "timeout" then return fail(nil, "select: " .. serr) end
    for _, s in ipairs(w) do
      local c = by[s]
      if c.sent < nbytes then
        if not c.pend then
          c.pend = c.tx:next(math.min(chunk, nbytes - c.sent))
          c.pi = 1
        end
        local last, err, lastpart = s:send(c.pend, c.pi)
        local idx = last or lastpart or (c.pi - 1)
        c.sent = c.sent + (idx - c.pi + 1)
        if idx >= #c.pend then c.pend = nil else c.pi = idx + 1 end
        if err and err ~= "timeout" then return fail(c, "send: " .. err) end
        if c.sent == nbytes and opts.half_close and not c.shut then
          s:shutdown("send")
          c.shut = true
        end
      end
    end
    for _, s in ipairs(r) do
      local c = by[s]
      if not c.done then
        local data, err, partial = s:receive(65536)
        local got = data or partial or ""
        if #got > 0 then
          if c.recvd + #got > nbytes then
            return fail(c, ("received %d bytes more than sent"):format(c.recvd + #got - nbytes))
          end
          local exp = c.rx:next(#got)
          if got ~= exp then
            return fail(c, ("echo differs at byte %d"):format(c.recvd + first_diff(got, exp) - 1))
          end
          c.recvd = c.recvd + #got
        end
        if err == "closed" then
          if c.recvd < nbytes then return fail(c, "closed by peer before the whole echo") end
          c.eof = true
        elseif err and err ~= "timeout" then
          return fail(c, "receive: " .. err)
        end
        if c.recvd == nbytes and c.eof then
          c.done = true
          remaining = remaining - 1
        end
      end
    end
  end
  local elapsed = M.now() - start
  if opts.close ~= false then
    for _, c in ipairs(st) do c.s:close() end
  else
    for _, c in ipairs(st) do c.s:settimeout(DEFAULT_TIMEOUT) end
  end
  return true, { bytes = nbytes, connections = #st, seconds = elapsed }
end

function M.transfer_echo(sock, nbytes, opts)
  return M.transfer_echo_many({ sock }, nbytes, opts)
end

-- The echo server's sink port: send nbytes, half-close, read "count fnv".
function M.sink_send(sock, nbytes, opts)
  opts = opts or {}
  local stream = M.stream(opts.seed or 7)
  sock:settimeout(opts.timeout or 10)
  local sent = 0
  while sent < nbytes do
    local part = stream:next(math.min(65536, nbytes - sent))
    local ok, err = sock:send(part)
    if not ok then return nil, "sink send: " .. err end
    sent = sent + #part
  end
  sock:shutdown("send")
  local line, err = sock:receive("*l")
  sock:close()
  if not line then return nil, "sink reply: " .. tostring(err) end
  local count, fnv = line:match("^(%d+) (%x+)$")
  if not count then return nil, "sink reply: " .. line end
  return tonumber(count), tonumber(fnv, 16)
end

-- The echo server's source port: ask for nbytes and check them.
function M.source_read(sock, nbytes, opts)
  opts = opts or {}
  local seed = opts.seed or 11
  sock:settimeout(opts.timeout or 10)
  sock:send(("%d %d\n"):format(nbytes, seed))
  local stream, got = M.stream(seed), 0
  local deadline = M.now() + (opts.timeout or 10)
  while got < nbytes and M.now() < deadline do
    local data, err, partial = sock:receive(math.min(65536, nbytes - got))
    local d = data or partial or ""
    if #d > 0 then
      if d ~= stream:next(#d) then sock:close(); return false, "source data differs near byte " .. got end
      got = got + #d
    end
    if err then break end
  end
  sock:close()
  if got ~= nbytes then return false, ("source: got %d of %d bytes"):format(got, nbytes) end
  return true
end

----------------------------------------------------------------------------
-- Programs and configs

local function exists(path)
  return unistd.access(path, "x") == 0
end

function M.v2ray_bin()
  local env = os.getenv("LURAY_V2RAY")
  if env then
    if exists(env) then return env end
    error("v2ray not found at $LURAY_V2RAY=" .. env .. " (run scripts/deps.sh)", 2)
  end
  if exists("/usr/bin/v2ray") then return "/usr/bin/v2ray" end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if exists(dir .. "/v2ray") then return dir .. "/v2ray" end
  end
  error("v2ray not found (/usr/bin/v2ray, PATH, $LURAY_V2RAY): run scripts/deps.sh, which " ..
        "installs Debian's v2ray 4.34, the interoperability oracle", 2)
end

function M.luaray_bin()
  local path = (os.getenv("LURAY_BUILD") or "build") .. "/luaray"
  if not exists(path) then error(path .. " not found: run make", 2) end
  return path
end

function M.uuid()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = { f:read(16):byte(1, 16) }
  f:close()
  b[7] = b[7] % 16 + 0x40
  b[9] = b[9] % 64 + 0x80
  local h = {}
  for i = 1, 16 do h[i] = ("%02x"):format(b[i]) end
  local s = table.concat(h)
  return ("%s-%s-%s-%s-%s"):format(s:sub(1, 8), s:sub(9, 12), s:sub(13, 16), s:sub(17, 20), s:sub(21))
end

function M.json(t) return cjson.encode(t) end

-- v2ray reads the dotted name first, then V2RAY_VMESS_AEAD_DISABLED
-- (vmess-wire.md 3); the dotted one cannot be set from a shell, so use this.
M.V2RAY_LEGACY_ENV = { V2RAY_VMESS_AEAD_DISABLED = "true" }

local function v2ray_log(o)
  return { loglevel = o.loglevel or "warning", access = o.access or "none" }
end

function M.v2ray_server_config(o)
  assert(o.port and o.users and #o.users > 0, "v2ray_server_config: port and users needed")
  local clients = {}
  for i, u in ipairs(o.users) do
    clients[i] = { id = u.id, alterId = u.alterId or u.alter_id or 0, level = u.level or 0,
                   email = u.email or ("user%d@e2e"):format(i) }
  end
  return {
    log = v2ray_log(o),
    inbounds = { {
      tag = "vmess-in", listen = o.listen or "127.0.0.1", port = o.port, protocol = "vmess",
      settings = { clients = clients },
    } },
    outbounds = { { tag = "direct", protocol = "freedom", settings = {} } },
  }
end

function M.v2ray_client_config(o)
  assert(o.socks_port and o.server_port and o.id, "v2ray_client_config: socks_port, server_port, id")
  local socks = { auth = "noauth", udp = true, ip = o.listen or "127.0.0.1" }
  if o.accounts then
    socks.auth = "password"
    socks.accounts = {}
    for i, a in ipairs(o.accounts) do socks.accounts[i] = { user = a.user, pass = a.pass } end
  end
  local inbounds = { {
    tag = "socks-in", listen = o.listen or "127.0.0.1", port = o.socks_port, protocol = "socks",
    settings = socks,
  } }
  if o.http_port then
    inbounds[2] = { tag = "http-in", listen = o.listen or "127.0.0.1", port = o.http_port,
                    protocol = "http", settings = {} }
  end
  local out = {
    tag = "vmess-out", protocol = "vmess",
    settings = { vnext = { {
      address = o.server_host or "127.0.0.1", port = o.server_port,
      users = { { id = o.id, alterId = o.alterId or o.alter_id or 0,
                  security = o.security or "aes-128-gcm", level = 0 } },
    } } },
  }
  if o.mux then out.mux = { enabled = true, concurrency = o.mux_concurrency or 8 } end
  return { log = v2ray_log(o), inbounds = inbounds, outbounds = { out } }
end

-- A Lua literal for a table of strings, numbers, booleans and tables (sorted keys).
local function lua_literal(v)
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  assert(t == "table", "lua_literal: " .. t)
  local parts, keys = {}, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. lua_literal(k) .. "]"
    if type(k) == "number" and k >= 1 and k <= #v and k == math.floor(k) then
      parts[#parts + 1] = lua_literal(v[k])
    else
      parts[#parts + 1] = key .. " = " .. lua_literal(v[k])
    end
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end
M.lua_literal = lua_literal

local function hostport(host, port)
  return (is_ipv6(host) and "[" .. host .. "]" or host) .. ":" .. port
end

-- Only the keys of `o` named in `keys` that are not nil (so the DSL's own
-- defaults are what a spec exercises unless it says otherwise).
local function pick(o, keys, into)
  into = into or {}
  for _, k in ipairs(keys) do
    if o[k] ~= nil then into[k] = o[k] end
  end
  return into
end

local function log_line(o)
  return "luaray.log " .. lua_literal({ level = o.log_level or "info",
                                        access = o.access == nil and true or o.access })
end

-- A luaray config script (design.md 2, checked against lua/luaray/config.lua):
-- a VMess server that may dial loopback (the echo servers live there).
--   o.port, o.users = {{id, alter_id (or alterId), email, level}}, o.listen,
--   o.allow_legacy, o.allow_private (default true), o.handshake_timeout,
--   o.idle_timeout, o.max_connections, o.max_sessions, o.tls, o.transport, o.fallback,
--   o.trusted_proxies, o.proxy_protocol (design.md 6), o.log_level ("info"), o.access (true:
--   one access line per connection on stderr, i.e. in the child's log),
--   o.extra (more script text, appended)
function M.luaray_server_script(o)
  assert(o.port and o.users, "luaray_server_script: port and users needed")
  local listen = o.listen or "127.0.0.1"
  local l = { "-- generated by e2e.support", log_line(o) }
  for i, u in ipairs(o.users) do
    l[#l + 1] = "luaray.user " .. lua_literal({ id = u.id, alter_id = u.alter_id or u.alterId or 0,
                                                email = u.email or ("user%d@e2e"):format(i),
                                                level = u.level })
  end
  local ib = pick(o, { "allow_legacy", "handshake_timeout", "idle_timeout", "max_connections",
                       "max_sessions", "fallback", "proxy_protocol", "trusted_proxies", "tls",
                       "transport" },
                  { type = "vmess", listen = hostport(listen, o.port),
                    allow_private = o.allow_private == nil and true or o.allow_private })
  l[#l + 1] = 'luaray.inbound "vmess-in" ' .. lua_literal(ib)
  l[#l + 1] = 'luaray.outbound "direct" { type = "direct" }'
  if o.extra then l[#l + 1] = o.extra end
  return table.concat(l, "\n") .. "\n", { ports = { { listen, o.port } } }
end

-- A luaray config script (design.md 2): SOCKS5 (+HTTP) in, VMess out.
--   o.socks_port, o.server_port, o.id; o.server_host (127.0.0.1), o.listen,
--   o.http_port; outbound keys as in the DSL, emitted only when given:
--   o.alter_id (or alterId), o.security, o.masking, o.padding,
--   o.authenticated_length, o.udp, o.mux, o.xudp, o.connect_timeout, o.tls, o.transport; o.socks_udp (default
--   true), o.accounts / o.http_accounts ({{user, pass}}), o.handshake_timeout
--   (both proxy inbounds), o.log_level, o.access, o.extra
function M.luaray_client_script(o)
  assert(o.socks_port and o.server_port and o.id, "luaray_client_script: socks_port, server_port, id")
  local listen = o.listen or "127.0.0.1"
  local ports = { { listen, o.socks_port } }
  local l = { "-- generated by e2e.support", log_line(o) }
  l[#l + 1] = 'luaray.inbound "socks-in" ' .. lua_literal(pick(o, { "accounts", "handshake_timeout" }, {
    type = "socks", listen = hostport(listen, o.socks_port),
    udp = o.socks_udp == nil and true or o.socks_udp }))
  if o.http_port then
    l[#l + 1] = 'luaray.inbound "http-in" ' .. lua_literal(pick(o, { "handshake_timeout" }, {
      type = "http", listen = hostport(listen, o.http_port), accounts = o.http_accounts }))
    ports[#ports + 1] = { listen, o.http_port }
  end
  local ob = pick(o, { "security", "masking", "padding", "authenticated_length", "udp", "mux",
                       "connect_timeout", "tls", "transport", "xudp" },
                  { type = "vmess", server = hostport(o.server_host or "127.0.0.1", o.server_port),
                    id = o.id, alter_id = o.alter_id or o.alterId or 0 })
  l[#l + 1] = 'luaray.outbound "upstream" ' .. lua_literal(ob)
  if o.extra then l[#l + 1] = o.extra end
  return table.concat(l, "\n") .. "\n", { ports = ports }
end

----------------------------------------------------------------------------
-- Processes

local function try_cdef(decl) pcall(ffi.cdef, decl) end
try_cdef "int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);"
try_cdef "int close_range(unsigned int first, unsigned int last, int flags);"

local function has_sym(name) return (pcall(function() return ffi.C[name] end)) end

-- Runs in the forked child; never returns (exec or _exit).
local function child_exec(argv, log, env, parent)
  pcall(function()
    unistd.setpid("p", 0, 0)
    if has_sym("prctl") then ffi.C.prctl(1 --[[PR_SET_PDEATHSIG]], 9, 0, 0, 0) end
    if unistd.getppid() ~= parent then unistd._exit(126) end
    for _, sig in ipairs { psignal.SIGPIPE, psignal.SIGTERM, psignal.SIGINT, psignal.SIGHUP } do
      psignal.signal(sig, psignal.SIG_DFL)
    end
    local fd = fcntl.open(log, bit.bor(fcntl.O_WRONLY, fcntl.O_CREAT, fcntl.O_APPEND), 420)
    if not fd then unistd._exit(125) end
    unistd.dup2(fd, 1); unistd.dup2(fd, 2)
    local null = fcntl.open("/dev/null", fcntl.O_RDONLY)
    if null then unistd.dup2(null, 0) end
    if not (has_sym("close_range") and ffi.C.close_range(3, 0xffffffff, 0) == 0) then
      for i = 3, 1023 do unistd.close(i) end
    end
    for k, v in pairs(env) do
      if v == false then pstdlib.setenv(k, nil) else pstdlib.setenv(k, tostring(v)) end
    end
    local args = { [0] = argv[1] }
    for i = 2, #argv do args[i - 1] = argv[i] end
    local _, err = unistd.execp(argv[1], args)
    io.stderr:write("e2e spawn: exec ", argv[1], ": ", tostring(err), "\n")
  end)
  unistd._exit(127)
end

local H = {}
H.__index = H
local subreaper = false

function M.new(name)
  return setmetatable({ name = name or "e2e", procs = {}, names = {}, failed = false }, H)
end

-- A file-name-safe name not used by an earlier child ("x", "x-2", ...).
function H:unique(name)
  name = name:gsub("[^%w_.-]", "_")
  local n = (self.names[name] or 0) + 1
  self.names[name] = n
  return n == 1 and name or ("%s-%d"):format(name, n)
end

function H:tmpdir()
  if not self.dir then
    local d, err = pstdlib.mkdtemp("/tmp/luaray-e2e-" .. self.name:gsub("[^%w_-]", "_") .. "-XXXXXX")
    assert(d, "mkdtemp: " .. tostring(err))
    self.dir = d
  end
  return self.dir
end

function H:path(file) return self:tmpdir() .. "/" .. file end

function H:write(file, text)
  local p = self:path(file)
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
  return p
end

local function status_text(p)
  if not p.status then return "running" end
  return ("%s %s"):format(p.status, tostring(p.code))
end

-- Reaps without blocking; records proc.status ("exited"/"killed", code).
function H:alive(p)
  if p.status then return false end
  local pid, how, code = pwait.wait(p.pid, pwait.WNOHANG)
  if pid == p.pid then
    p.status, p.code = how, code
    return false
  elseif pid == nil then
    p.status, p.code = "lost", how   -- not our child any more
    return false
  end
  return true
end

function H:spawn(name, argv, opts)
  opts = opts or {}
  if not subreaper and has_sym("prctl") then
    -- Orphans of our children (a shell's background job) come to us, not
    -- to init, so stop() can reap them; init here may never reap.
    ffi.C.prctl(36 --[[PR_SET_CHILD_SUBREAPER]], 1, 0, 0, 0)
    subreaper = true
  end
  assert(type(argv) == "table" and argv[1], "spawn: argv table needed")
  if not opts.unique then name = self:unique(name) end
  local log = self:path(name .. ".log")
  local env = {}
  if not opts.keep_preload then env.LD_PRELOAD = false end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  io.stdout:flush(); io.stderr:flush()
  local parent = unistd.getpid()
  local pid, err = unistd.fork()
  assert(pid, "fork: " .. tostring(err))
  if pid == 0 then child_exec(argv, log, env, parent) end
  unistd.setpid("p", pid, pid)   -- also here, so a signal to -pid never misses
  local p = { name = name, pid = pid, log = log, argv = argv, started = M.now() }
  self.procs[#self.procs + 1] = p
  if opts.ports then self:wait_ports(p, opts.ports, opts.timeout) end
  return p
end

-- Waits until every port accepts a connect, failing early if p dies.
function H:wait_ports(p, ports, timeout)
  local deadline = M.now() + (timeout or DEFAULT_TIMEOUT)
  for _, pt in ipairs(ports) do
    local host, port = "127.0.0.1", pt
    if type(pt) == "table" then host, port = pt[1], pt[2] end
    local up = false
    for _ = 1, 100000 do
      if not self:alive(p) then
        error(("%s (pid %d) exited (%s) before %s:%d opened\n%s"):format(p.name, p.pid,
          status_text(p), host, port, self:tail(p)), 2)
      end
      local s = M.tcp_connect(host, port, 0.25)
      if s then
        -- closed with an RST, as wait_port does: a listener probe is no
        -- client (a VMess server holds a FIN'd empty handshake)
        s:setoption("linger", { on = true, timeout = 0 })
        s:close()
        up = true
        break
      end
      if M.now() >= deadline then break end
      M.sleep(0.01)
    end
    if not up then
      error(("%s (pid %d): %s:%d not open after %.1fs\n%s"):format(p.name, p.pid, host, port,
        timeout or DEFAULT_TIMEOUT, self:tail(p)), 2)
    end
  end
  return p
end

local function sleep_poll(self, p, secs)
  local deadline = M.now() + secs
  for _ = 1, 100000 do
    if not self:alive(p) then return true end
    if M.now() >= deadline then return false end
    M.sleep(0.01)
  end
  return not self:alive(p)
end

function H:stop(p, grace)
  if not p.status then
    psignal.kill(-p.pid, psignal.SIGTERM)
    if not sleep_poll(self, p, grace or 2) then
      psignal.kill(-p.pid, psignal.SIGKILL)
      if not sleep_poll(self, p, 5) then
        io.stderr:write(("e2e: %s (pid %d) survived SIGKILL for 5s\n"):format(p.name, p.pid))
        return nil
      end
      p.forced = true
    end
  end
  -- Anything the child left in its group (the leader is reaped, so the
  -- group id cannot have been reused while members remain). We are a child
  -- subreaper, so those orphans are our children: reap them too.
  if psignal.kill(-p.pid, psignal.SIGKILL) then
    local deadline = M.now() + 1
    for _ = 1, 1000 do
      local pid = pwait.wait(-p.pid, pwait.WNOHANG)
      if pid == nil or M.now() >= deadline then break end
      if pid == 0 then M.sleep(0.005) end
    end
  end
  return p.status, p.code
end

-- For a luaray daemon: SIGTERM starts its graceful stop (open connections
-- get a grace period, 10 s); a second SIGTERM after `patience` (0.3 s) stops
-- it at once; then H:stop as usual (SIGKILL if even that did not work).
function H:stop_luaray(p, patience)
  if not p.status then
    psignal.kill(p.pid, psignal.SIGTERM)
    if not sleep_poll(self, p, patience or 0.3) then psignal.kill(p.pid, psignal.SIGTERM) end
  end
  return self:stop(p, 1)
end

-- Runs argv to completion (a check, a version query): -> exit code or nil
-- when killed, the log text. Killed by PID after opts.timeout (10 s).
function H:exec(name, argv, opts)
  opts = opts or {}
  local p = self:spawn(name, argv, { env = opts.env, keep_preload = opts.keep_preload })
  if not sleep_poll(self, p, opts.timeout or 10) then
    self:stop(p, 0.5)
    error(("%s (pid %d) still running after %.1fs\n%s"):format(name, p.pid, opts.timeout or 10,
      self:tail(p)), 2)
  end
  local f = io.open(p.log, "rb")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  return p.status == "exited" and p.code or nil, text
end

-- The README's nginx location block for the ws path (the first ```nginx
-- block's `location /ray {...}`), its proxy_pass pointed at 127.0.0.1:port
-- and, with `bind`, a `proxy_bind bind;` added (so the TCP peer luaray sees
-- is not the client's address).
function M.readme_nginx_location(port, bind)
  local readme = M.read_file(M.dir .. "/../../README.md")
  local block = readme:match("```nginx\n(.-)```")
  assert(block, "README.md has no nginx block")
  local loc = block:match("(location /ray %b{})")
  assert(loc, "README.md's nginx block has no location /ray")
  assert(loc:find("proxy_pass http://127.0.0.1:10000;", 1, true),
         "README.md's location /ray does not proxy_pass to 127.0.0.1:10000")
  return (loc:gsub("proxy_pass http://127%.0%.0%.1:10000;",
                   ("proxy_pass http://127.0.0.1:%d;%s"):format(port,
                     bind and ("\n        proxy_bind %s;"):format(bind) or "")))
end

function H:shell(name, dir, cmd)
  local code, out = self:exec(name, { "sh", "-c", "set -e; cd '" .. dir .. "'; " .. cmd }, { timeout = 30 })
  assert(code == 0, ("%s failed (%s): %s"):format(name, tostring(code), out))
  return out
end

local function serial() return (M.uuid():gsub("-", ""):sub(1, 16)) end

function H:test_leaf(file, ca, names)
  local dir = self:tmpdir()
  local san = {}
  for i, n in ipairs(names) do san[i] = "DNS:" .. n end
  self:shell("leaf-" .. file, dir, ([[
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=%s" \
      -keyout %s.key -out %s.csr 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > %s.ext
    openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -set_serial 0x%s -days 3 \
      -extfile %s.ext -out %s.crt 2>/dev/null
    cat %s.crt %s.pem > %s.pem]]):format(names[1], file, file, table.concat(san, ","), file,
    file, ca, ca, serial(), file, file, file, ca, file))
  return dir .. "/" .. file .. ".pem", dir .. "/" .. file .. ".key"
end

function H:test_pki(leaves, label)
  local dir = self:tmpdir()
  label = label or self.name
  self:shell("ca", dir, ([[openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -days 3 -subj "/CN=luaray e2e %s ca" -keyout ca.key -out ca.pem 2>/dev/null]]):format(label))
  self:shell("intermediate", dir, ([[openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=luaray e2e %s intermediate" -keyout int.key -out int.csr 2>/dev/null
    printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > int.ext
    openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 0x%s -days 3 \
      -extfile int.ext -out int.pem 2>/dev/null]]):format(label, serial()))
  for _, l in ipairs(leaves) do self:test_leaf(l[1], "int", l[2]) end
  return dir
end

function H:tail(p, n)
  n = n or 20
  local f = io.open(p.log, "rb")
  if not f then return ("---- %s (pid %d, %s): no log file"):format(p.name, p.pid, status_text(p)) end
  local text = f:read("*a")
  f:close()
  local lines = {}
  for line in text:gmatch("[^\n]*\n?") do
    if line ~= "" then lines[#lines + 1] = line:gsub("\n$", "") end
  end
  local from = math.max(1, #lines - n + 1)
  local out = { ("---- %s (pid %d, %s): last %d of %d lines of %s"):format(p.name, p.pid,
    status_text(p), #lines - from + 1, #lines, p.log) }
  for i = from, #lines do out[#out + 1] = lines[i] end
  return table.concat(out, "\n")
end

function H:logs(n)
  local out = {}
  for _, p in ipairs(self.procs) do
    self:alive(p)
    out[#out + 1] = self:tail(p, n)
  end
  return table.concat(out, "\n")
end

function H:guard(fn)
  return function(...)
    local ok, err = xpcall(fn, function(e)
      if type(e) ~= "string" then return e end
      -- the traceback down to this guard (busted's own frames add nothing)
      local tb = debug.traceback(e, 2)
      return (tb:match("^(.-)\n%s*%[C%]: in function 'xpcall'") or tb)
    end, ...)
    if ok then return end
    self.failed = true
    local logs = "\n" .. self:logs(15)
    if type(err) == "table" and err.message ~= nil then
      err.message = tostring(err.message) .. logs
      error(err, 0)
    end
    error(tostring(err) .. logs, 0)
  end
end

function H:cleanup()
  for i = #self.procs, 1, -1 do
    local p = self.procs[i]
    if p.luaray then self:stop_luaray(p) else self:stop(p) end
  end
  -- a daemon's sanitizer report fails the spec file (busted counts a
  -- teardown error as a failure); its logs are kept
  local reports = self:sanitizer_reports()
  if #reports > 0 then self.failed = true end
  if self.dir and (self.failed or os.getenv("LURAY_E2E_KEEP") == "1") then
    io.stderr:write("e2e: logs and configs kept in " .. self.dir .. "\n")
    self.dir = nil
  end
  if #reports > 0 then
    error("sanitizer reports from luaray daemons:\n" .. table.concat(reports, "\n"), 0)
  end
  if not self.dir then return end
  -- files, and the files of subdirectories (a capture server's); depth 2
  local function rm_tree(dir, depth)
    for f in dirent.files(dir) do
      if f ~= "." and f ~= ".." then
        local path = dir .. "/" .. f
        if not os.remove(path) and depth > 0 then rm_tree(path, depth - 1) end
      end
    end
    os.remove(dir)
  end
  rm_tree(self.dir, 2)
  self.dir = nil
end

local function interpreter()
  return unistd.readlink("/proc/self/exe") or "luajit"
end

local Echo = {}
Echo.__index = Echo

function H:echo_server(opts)
  opts = opts or {}
  local hosts = { "127.0.0.1" }
  for _, x in ipairs(opts.hosts or {}) do hosts[#hosts + 1] = x end
  if opts.ipv6 then hosts[#hosts + 1] = "::1" end
  local port, src, sink = M.free_port(hosts), M.free_port(hosts), M.free_port(hosts)
  local name = self:unique(opts.name or "echo")
  local results = self:path(name .. ".results")
  local argv = { interpreter(), M.tools .. "/echo_server.lua", "--port", tostring(port),
                 "--source-port", tostring(src), "--sink-port", tostring(sink),
                 "--results", results, "--lifetime", tostring(opts.lifetime or 900) }
  if opts.corrupt_at then
    argv[#argv + 1] = "--corrupt-at"; argv[#argv + 1] = tostring(opts.corrupt_at)
  end
  for _, h in ipairs(hosts) do argv[#argv + 1] = "--host"; argv[#argv + 1] = h end
  local ports = {}
  for _, h in ipairs(hosts) do
    for _, pt in ipairs { port, src, sink } do ports[#ports + 1] = { h, pt } end
  end
  local p = self:spawn(name, argv, { ports = ports, unique = true })
  return setmetatable({ host = "127.0.0.1", hosts = hosts, port = port, source_port = src,
                        sink_port = sink, results = results, proc = p }, Echo)
end

-- Waits until the sink has recorded at least n connections; -> the n-th
-- record, or nil, err after timeout (5 s).
function Echo:wait_sink(n, timeout)
  local deadline = M.now() + (timeout or DEFAULT_TIMEOUT)
  for _ = 1, 100000 do
    local r = self:sink_results()
    if #r >= n then return r[n] end
    if M.now() >= deadline then break end
    M.sleep(0.01)
  end
  return nil, ("sink: %d records, wanted %d"):format(#self:sink_results(), n)
end

function Echo:sink_results()
  local out = {}
  local f = io.open(self.results, "rb")
  if not f then return out end
  for line in f:lines() do
    local c, h = line:match("^(%d+) (%x+)$")
    if c then out[#out + 1] = { count = tonumber(c), fnv = tonumber(h, 16) } end
  end
  f:close()
  return out
end

-- The TCP ports of a v2ray config's inbounds.
local function v2ray_ports(cfg)
  local ports = {}
  for _, ib in ipairs(cfg.inbounds or {}) do
    ports[#ports + 1] = { ib.listen or "127.0.0.1", ib.port }
  end
  return ports
end

function H:v2ray(name, cfg, opts)
  opts = opts or {}
  local bin = M.v2ray_bin()
  name = self:unique(name)
  local file = self:write(name .. ".json", M.json(cfg))
  return self:spawn(name, { bin, "-config", file }, { env = opts.env, ports = v2ray_ports(cfg),
                                                      timeout = opts.timeout, unique = true })
end

function H:v2ray_pair(o)
  o = o or {}
  self.npairs = (self.npairs or 0) + 1
  local tag = o.name or ("pair" .. self.npairs)
  local id = o.id or M.uuid()
  local aid = o.alter_id or 0
  local sp, cp = M.free_port(), M.free_port()
  local hp = o.http and M.free_port() or nil
  local server = self:v2ray(tag .. "-server", M.v2ray_server_config {
    port = sp, users = { { id = id, alterId = o.server_alter_id or aid } } })
  local client = self:v2ray(tag .. "-client", M.v2ray_client_config {
    socks_port = cp, http_port = hp, server_port = sp, id = id, alterId = aid,
    security = o.security, mux = o.mux, accounts = o.accounts }, { env = o.env })
  return { server = server, client = client, server_port = sp, socks_port = cp,
           http_port = hp, id = id }
end

-- Under `make asan` (LURAY_ASAN) a daemon runs with LeakSanitizer on: at
-- its exit it reports what it never freed. The test process itself keeps
-- leak detection off (LuaJIT's own heap is not scanned, so everything the
-- specs hold through the FFI would look leaked).
local ASAN = os.getenv("LURAY_ASAN")
local SANITIZER_REPORT = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "WARNING: ThreadSanitizer" }

function H:luaray(name, script, opts)
  opts = opts or {}
  local bin = M.luaray_bin()
  name = self:unique(name)
  local file = self:write(name .. ".lua", script)
  local argv = { bin, "-c", file }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  if ASAN and env.ASAN_OPTIONS == nil then
    env.ASAN_OPTIONS = "detect_leaks=1:abort_on_error=1"
  end
  local p = self:spawn(name, argv, { env = env, ports = opts.ports, timeout = opts.timeout,
                                     keep_preload = true, unique = true })
  p.luaray = true
  return p
end

-- Starts luaray like H:luaray, but with its standard output (hook print()
-- lines) in a file of its own, p.out, so that those lines can never be cut
-- into the stderr log (a buffered stdout is written in blocks).  p.config is
-- the config file (rewritten for reloads).
function H:luaray_obs(name, script, opts)
  opts = opts or {}
  name = self:unique(name)
  local file = self:write(name .. ".lua", script)
  local out = self:path(name .. ".out")
  local p = self:spawn(name, { "/bin/sh", "-c", 'exec "$0" -c "$1" >>"$2"', M.luaray_bin(), file, out },
                       { ports = opts.ports, timeout = opts.timeout, keep_preload = true, unique = true })
  p.luaray = true
  p.out = out
  p.config = file
  return p
end

-- Sanitizer reports in the logs of the daemons this harness ran (all
-- stopped first): a list of "name: line".
function H:sanitizer_reports()
  local found = {}
  for _, p in ipairs(self.procs) do
    if p.luaray then
      local f = io.open(p.log, "rb")
      local text = f and f:read("*a") or ""
      if f then f:close() end
      for _, pat in ipairs(SANITIZER_REPORT) do
        local at = text:find(pat, 1, true)
        if at then
          local ls = text:sub(1, at):match(".*()\n") or 1
          found[#found + 1] = ("%s: %s"):format(p.name, text:sub(ls, ls + 200):match("[^\n]+"))
          break
        end
      end
    end
  end
  return found
end


----------------------------------------------------------------------------
-- More targets: a recording (never answering) TCP server and an HTTP server

local Capture = {}
Capture.__index = Capture

-- tools/capture_server.lua on a fresh port -> {host, port, dir, proc}
function H:capture_server(opts)
  opts = opts or {}
  local name = self:unique(opts.name or "capture")
  local dir = self:path(name .. ".d")
  assert(require("posix.sys.stat").mkdir(dir, 448))
  local port = M.free_port()
  local argv = { interpreter(), M.tools .. "/capture_server.lua", "--port", tostring(port),
                 "--dir", dir, "--lifetime", tostring(opts.lifetime or 900) }
  local p = self:spawn(name, argv, { ports = { port }, unique = true })
  return setmetatable({ host = "127.0.0.1", port = port, dir = dir, proc = p, h = self }, Capture)
end

-- Connections accepted so far (the harness's own port probes included: take
-- a baseline with count() before the step a spec measures).
function Capture:count()
  local n = 0
  for f in dirent.files(self.dir) do
    if f:match("^conn%-%d+%.bin$") then n = n + 1 end
  end
  return n
end

-- What connection n sent so far ("" when it has not arrived).
function Capture:bytes(n)
  local f = io.open(("%s/conn-%d.bin"):format(self.dir, n), "rb")
  if not f then return "" end
  local d = f:read("*a") or ""
  f:close()
  return d
end

-- Waits until connection n has sent at least minlen bytes and then nothing
-- more for `quiet` seconds (0.3); -> its bytes, or nil, err after timeout (5 s).
function Capture:wait_bytes(n, minlen, quiet, timeout)
  quiet = quiet or 0.3
  local deadline = M.now() + (timeout or DEFAULT_TIMEOUT)
  local last, since = nil, M.now()
  for _ = 1, 100000 do
    local d = self:bytes(n)
    if d ~= last then last, since = d, M.now() end
    if #d >= (minlen or 1) and M.now() - since >= quiet then return d end
    if M.now() >= deadline then break end
    M.sleep(0.02)
  end
  return nil, ("capture: connection %d sent %d bytes, wanted %d then %.1fs quiet"):format(
    n, #(last or ""), minlen or 1, quiet)
end

-- What a client on SOCKS5 port `socks` (a v2ray or luaray client pointed
-- at this capture server) sends for one new connection to 127.0.0.1:port
-- that starts with a fresh marker line -> bytes, marker.
local capture_seq = 0
function Capture:request_via(socks, port)
  capture_seq = capture_seq + 1
  local marker = ("marker-%d-%s\n"):format(capture_seq, M.uuid())
  local before = self:count()
  local s = assert(M.socks5_connect("127.0.0.1", socks, "127.0.0.1", port))
  assert(s:send(marker))
  local bytes, err = self:wait_bytes(before + 1, 60, 0.3, 5)
  s:close()
  assert(bytes, err)
  return bytes, marker
end

-- The same for connections first .. first+n-1 at once -> list of bytes, or
-- nil, err.
function Capture:wait_many(first, n, minlen, quiet, timeout)
  quiet = quiet or 0.3
  local deadline = M.now() + (timeout or DEFAULT_TIMEOUT)
  local last, since = {}, M.now()
  for _ = 1, 100000 do
    local ready = true
    for i = 1, n do
      local d = self:bytes(first + i - 1)
      if d ~= last[i] then last[i], since = d, M.now() end
      if #d < (minlen or 1) then ready = false end
    end
    if ready and M.now() - since >= quiet then return last end
    if M.now() >= deadline then break end
    M.sleep(0.02)
  end
  local sizes = {}
  for i = 1, n do sizes[i] = #(last[i] or "") end
  return nil, ("capture: connections %d..%d sent %s bytes, wanted >= %d each then %.1fs quiet"):format(
    first, first + n - 1, table.concat(sizes, ","), minlen or 1, quiet)
end

-- tools/http_server.lua on a fresh port -> {host, port, log, proc}.
-- opts.ipv6: also listen on ::1 (same port).
function H:http_server(opts)
  opts = opts or {}
  local hosts = { "127.0.0.1" }
  if opts.ipv6 then hosts[2] = "::1" end
  local name = self:unique(opts.name or "http")
  local port = M.free_port(hosts)
  local log = self:path(name .. ".requests")
  local argv = { interpreter(), M.tools .. "/http_server.lua", "--port", tostring(port),
                 "--log", log, "--lifetime", tostring(opts.lifetime or 900) }
  local ports = {}
  for _, hh in ipairs(hosts) do
    argv[#argv + 1] = "--host"; argv[#argv + 1] = hh
    ports[#ports + 1] = { hh, port }
  end
  local p = self:spawn(name, argv, { ports = ports, unique = true })
  return { host = "127.0.0.1", port = port, log = log, proc = p }
end

-- One HTTP/1.1 request on a connected socket (a proxy or a tunnel): sends
-- "METHOD TARGET", opts.headers ({"Name: value", ...}), opts.body with its
-- Content-Length; reads the response until Content-Length or EOF.
-- -> status code, head text, body; or nil, err. Closes the socket.
function M.http_request(sock, method, target, opts)
  opts = opts or {}
  local timeout = opts.timeout or 10
  local deadline = M.now() + timeout
  sock:settimeout(timeout)
  local lines = { ("%s %s HTTP/1.1"):format(method, target) }
  for _, hl in ipairs(opts.headers or {}) do lines[#lines + 1] = hl end
  if opts.body then lines[#lines + 1] = "Content-Length: " .. #opts.body end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
  local sent = 0
  while sent < #req do
    local last, err, lastpart = sock:send(req, sent + 1)
    sent = last or lastpart or sent
    if err then sock:close(); return nil, "http request: send: " .. err end
    if M.now() >= deadline then sock:close(); return nil, "http request: send timed out" end
  end
  local head = {}
  local status, serr = sock:receive("*l")
  if not status then sock:close(); return nil, "http response: " .. tostring(serr) end
  local code = tonumber(status:match("^HTTP/1%.%d (%d%d%d)"))
  if not code then sock:close(); return nil, "http response: bad status line " .. status end
  head[1] = status
  local len
  for _ = 1, 200 do
    local line, lerr = sock:receive("*l")
    if not line then sock:close(); return nil, "http response headers: " .. tostring(lerr) end
    if line == "" then break end
    head[#head + 1] = line
    local v = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if v then len = tonumber(v) end
  end
  local body, berr, partial
  if len == 0 then
    body = ""
  elseif len then
    body, berr, partial = sock:receive(len)
  else
    body, berr, partial = sock:receive("*a")
  end
  sock:close()
  if not body then
    return nil, ("http response body: %s after %d of %s bytes"):format(tostring(berr),
      #(partial or ""), tostring(len))
  end
  return code, table.concat(head, "\n"), body
end

-- True when nothing listens on host:port and it can be bound for TCP.
function M.port_bindable(host, port)
  local s = tcp_for(host)
  s:setoption("reuseaddr", true)
  local ok = s:bind(host, port)
  s:close()
  return ok == 1
end

----------------------------------------------------------------------------
-- Probing a server with hostile bytes

-- Opens one connection per payload (all at once), sends it (a payload may
-- be "" to send nothing), never closes or half-closes first, and watches
-- every connection until the peer closes it or opts.max_wait (10 s) passes.
-- -> list of { sent = #payload, received = bytes the peer sent back,
--              closed_after = seconds from connect to the close (nil if
--              still open), how = "eof" (a FIN) | "reset" (an RST) |
--              "errno N" | "open" }
pcall(ffi.cdef, "long recv(int fd, void *buf, size_t n, int flags);")
local probe_buf = ffi.new("uint8_t[65536]")

-- Reads what is there without blocking, with recv(2) itself (luasocket
-- reports a reset as "closed", like a FIN) -> bytes, state: nil while the
-- connection is open, "eof" (a FIN), "reset" (an RST) or "errno N".
-- Open descriptors of a process (nil when it is gone).
function M.fd_count(pid)
  local n = 0
  local ok = pcall(function()
    for f in dirent.files(("/proc/%d/fd"):format(pid)) do
      if f ~= "." and f ~= ".." then n = n + 1 end
    end
  end)
  return ok and n or nil
end

function M.recv_nb(s)
  local parts = {}
  for _ = 1, 64 do
    local n = ffi.C.recv(s:getfd(), probe_buf, 65536, 0)
    if n > 0 then
      parts[#parts + 1] = ffi.string(probe_buf, n)
    elseif n == 0 then
      return table.concat(parts), "eof"
    else
      local e = ffi.errno()
      if e == 104 then return table.concat(parts), "reset" end        -- ECONNRESET
      if e ~= 11 and e ~= 4 then return table.concat(parts), "errno " .. e end
      break                                                            -- EAGAIN, EINTR
    end
  end
  return table.concat(parts), nil
end

-- What broke the silent close in probe_many's results: each must have got
-- nothing back and a FIN at a time within [lo, hi] s -> list of messages
-- (empty: all silent).
function M.silent_failures(results, labels, lo, hi)
  local bad = {}
  for i, r in ipairs(results) do
    local what = labels and labels[i] or ("probe %d"):format(i)
    if #r.received > 0 then
      bad[#bad + 1] = ("%s: %d bytes sent back to the prober"):format(what, #r.received)
    end
    if r.how ~= "eof" then
      bad[#bad + 1] = ("%s: closed by %s after %s s (expected a FIN)"):format(what, r.how,
        r.closed_after and ("%.3f"):format(r.closed_after) or "-")
    elseif r.closed_after < lo or r.closed_after > hi then
      bad[#bad + 1] = ("%s: closed after %.3f s (expected %.3f .. %.3f s)"):format(what,
        r.closed_after, lo, hi)
    end
  end
  return bad
end

function M.probe_many(host, port, payloads, opts)
  opts = opts or {}
  local max_wait = opts.max_wait or 10
  local res, by = {}, {}
  for i, data in ipairs(payloads) do
    local s, err = M.tcp_connect(host, port, 2)
    assert(s, "probe: " .. tostring(err))
    local r = { sent = #data, received = "", t0 = M.now(), how = "open", s = s, i = i }
    res[i] = r
    by[s] = r
    if #data > 0 then
      s:settimeout(2)
      local ok, serr = s:send(data)
      if not ok then r.how = "send: " .. tostring(serr) end
    end
    if opts.fin then s:shutdown("send") end
    s:settimeout(0)
  end
  local deadline = M.now() + max_wait
  for _ = 1, 1000000 do
    local open = {}
    for _, r in ipairs(res) do
      if r.how == "open" then open[#open + 1] = r.s end
    end
    if #open == 0 then break end
    local now = M.now()
    if now >= deadline then break end
    local rd = socket.select(open, nil, math.min(0.25, deadline - now))
    for _, s in ipairs(rd) do
      local r = by[s]
      local d, state = M.recv_nb(s)
      r.received = r.received .. d
      if state then r.how, r.closed_after = state, M.now() - r.t0 end
    end
  end
  for _, r in ipairs(res) do r.s:close(); r.s = nil end
  return res
end


----------------------------------------------------------------------------
-- The standard TCP check through a SOCKS5 proxy

-- Through the SOCKS5 proxy at ph:pp to the echo server `echo`:
--   1. nbytes of pattern data both ways at once on one connection, every
--      echoed byte compared (opts.half_close: FIN after sending, and the
--      peer's FIN must come back after the whole echo);
--   2. download only: nbytes from the source port, compared;
--   3. upload only: nbytes to the sink port, checked by the sink's count and
--      FNV-1a (the record appears when the sink sees the FIN, which v2ray
--      may deliver only when it closes, a second or two later).
-- opts.user/opts.pass (RFC 1929), opts.dst (destination host, default
-- 127.0.0.1), opts.timeout (per step, 15 s), opts.steps ({echo=,source=,sink=}).
-- -> true, or false, "which step: what went wrong".
function M.check_socks_tcp(ph, pp, echo, nbytes, opts)
  opts = opts or {}
  local dst = opts.dst or "127.0.0.1"
  local steps = opts.steps or { echo = true, source = true, sink = true }
  local timeout = opts.timeout or 15
  local function conn(port)
    return M.socks5_connect(ph, pp, dst, port, opts.user, opts.pass, 5)
  end
  if steps.echo then
    local s, err = conn(echo.port)
    if not s then return false, "echo: socks5 connect: " .. tostring(err) end
    local ok, info = M.transfer_echo(s, nbytes, { timeout = timeout, half_close = opts.half_close })
    if not ok then return false, "echo (both ways): " .. tostring(info) end
  end
  if steps.source then
    local s, err = conn(echo.source_port)
    if not s then return false, "source: socks5 connect: " .. tostring(err) end
    local seed = next_seed()
    local ok, serr = M.source_read(s, nbytes, { seed = seed, timeout = timeout })
    if not ok then return false, "source (download): " .. tostring(serr) end
  end
  if steps.sink then
    local before = #echo:sink_results()
    local s, err = conn(echo.sink_port)
    if not s then return false, "sink: socks5 connect: " .. tostring(err) end
    local seed = next_seed()
    -- send and half-close, but do not wait for the sink's reply line: v2ray
    -- delivers the FIN only when it closes, and may drop the reply then
    local stream, sent = M.stream(seed), 0
    s:settimeout(timeout)
    while sent < nbytes do
      local part = stream:next(math.min(65536, nbytes - sent))
      local ok, serr = s:send(part)
      if not ok then s:close(); return false, "sink (upload): send: " .. tostring(serr) end
      sent = sent + #part
    end
    s:shutdown("send")
    -- records are matched by content: a late record of an earlier
    -- connection cannot pass for this one
    local want = M.fnv1a32(M.pattern(nbytes, seed))
    local deadline = M.now() + timeout
    local found, seen = false, {}
    for _ = 1, 100000 do
      local recs = echo:sink_results()
      seen = {}
      for i = before + 1, #recs do
        seen[#seen + 1] = ("%d bytes fnv %08x"):format(recs[i].count, recs[i].fnv)
        if recs[i].count == nbytes and recs[i].fnv == want then found = true end
      end
      if found or M.now() >= deadline then break end
      M.sleep(0.02)
    end
    s:close()
    if not found then
      return false, ("sink (upload): sent %d bytes fnv %08x; the sink recorded %s"):format(
        nbytes, want, #seen > 0 and table.concat(seen, ", ") or "nothing")
    end
  end
  return true
end

-- SOCKS5 UDP ASSOCIATE at ph:pp, then datagrams of opts.sizes (1, 100, 512,
-- 1000, 1400 bytes) one at a time to the echo server's UDP port; each reply
-- must be the same bytes from the echo's address (opts.recv_timeout, 3 s).
-- -> true, or false, err.
function M.check_socks_udp(ph, pp, echo, opts)
  opts = opts or {}
  local a, err = M.socks5_udp_associate(ph, pp, opts.user, opts.pass, 5)
  if not a then return false, "udp associate: " .. tostring(err) end
  for i, size in ipairs(opts.sizes or { 1, 100, 512, 1000, 1400 }) do
    local data = M.pattern(size, 100 + i)
    local ok, serr = a:send(opts.dst or "127.0.0.1", echo.port, data)
    if not ok then a:close(); return false, ("datagram %d (%d bytes): send: %s"):format(i, size, serr) end
    local got, host, port = a:recv(opts.recv_timeout or 3)
    if not got then
      a:close()
      return false, ("datagram %d (%d bytes): no reply: %s"):format(i, size, tostring(host))
    end
    if got ~= data then
      a:close()
      return false, ("datagram %d (%d bytes): reply of %d bytes differs"):format(i, size, #got)
    end
    if host ~= (opts.dst or "127.0.0.1") or port ~= echo.port then
      a:close()
      return false, ("datagram %d: reply from %s:%s, not the echo server"):format(i, tostring(host), tostring(port))
    end
  end
  a:close()
  return true
end

return M
