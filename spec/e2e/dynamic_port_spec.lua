-- The dynamic port (issue "security", item 2): each user is told an own
-- detour ID, that ID is that user on the detour listener (policies, user
-- rules, access log, hooks), it expires, and a user removed by a reload
-- loses it at once.  Checked against v2ray 4.34 and luaray clients too.
--
-- luaray servers (VMess in; direct and blackhole out), each with
-- dynamic_port on a free port, minutes = 1 and handshake_timeout = 2:
--   main    a (level 2), b, mc (max_conns 1), q1 and q2 (quota 16 KiB),
--           r (a `user` rule sends r to the sink port to the blackhole); a close hook
--           prints what it saw
--   reload  a and b; a is removed by a SIGHUP
--   clock   a and v, dynamic_port alter_id 2 (legacy alternates); started
--           first, its epochs are checked last so the wait overlaps the
--           other tests
-- Most sessions are made with the codec through the FFI (`open` below), so
-- a test can read the command a user is told and sign with any ID.  An ID
-- the detour does not know gets what any bad header gets: no byte back and
-- a FIN at the handshake timeout.
local E = require "e2e.support"
local core = require "luaray.core"
local psignal = require "posix.signal"
local socket = require "socket"

local ffi, C = core.ffi, core.C
local KiB = 1024
local MINUTE = 60
local GRACE = 30          -- the server's grace after an ID's last valid epoch

local urandom = assert(io.open("/dev/urandom", "rb"))
local function rand(n) return urandom:read(n) end

local function esc(s) return (s:gsub("%p", "%%%0")) end

local function uuid_of(ptr)
  local out = ffi.new("char[37]")
  C.lr_uuid_format(ptr, out)
  return ffi.string(out)
end

local function body(sec, opt, key, iv, rkey, riv, flags)
  local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
  assert(C.lr_body_init(b, sec, opt, key, iv, rkey, riv, flags or 0) == 0)
  return b
end

----------------------------------------------------------------------------
-- A VMess client session made with the codec.

local Session = {}
Session.__index = Session

-- Connects to 127.0.0.1:port and sends a request header signed with `uuid`
-- for 127.0.0.1:o.dst_port (aes-128-gcm, chunk stream + masking).
-- o.legacy: the legacy header, signed by the main ID (o.index -1, default)
-- or alternate o.index of `uuid`; otherwise the AEAD header.
local function open(port, uuid, o)
  o = o or {}
  local id = ffi.new("uint8_t[16]")
  assert(C.lr_uuid_parse(uuid, #uuid, id) == 0, "bad uuid " .. tostring(uuid))
  local r = ffi.new("struct lr_req")
  C.lr_req_randomize(r)
  r.version = 1
  r.mode = o.legacy and C.LR_MODE_LEGACY or C.LR_MODE_AEAD
  r.id_index = o.legacy and (o.index or -1) or -1
  r.ts = os.time()
  r.security = 3
  r.option = 0x05
  r.command = 1
  r.port = assert(o.dst_port)
  r.atyp = 1
  r.addr_len = 4
  ffi.copy(r.addr, "\127\0\0\1", 4)
  local wire = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
  local len = ffi.new("size_t[1]")
  local rc = C.lr_req_encode(r, id, wire, C.LR_REQ_WIRE_MAX, len)
  assert(rc == 0, "lr_req_encode: " .. core.strerror(rc))
  local key, iv = ffi.string(r.body_key, 16), ffi.string(r.body_iv, 16)
  local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
  assert(C.lr_resp_keys(r.mode, key, iv, rk, ri) == 0)
  local st = setmetatable({
    mode = r.mode, v = r.v, rk = rk, ri = ri,
    up = body(3, 0x05, key, iv, key, iv),
    down = body(3, 0x05, rk, ri, key, iv, o.legacy and C.LR_BODY_LEGACY_RESP or 0),
    rdec = ffi.new("struct lr_resp_dec"), resp = ffi.new("struct lr_resp"),
    buf = "", off = 0, header = false, t0 = E.now(),
  }, Session)
  C.lr_resp_dec_init(st.rdec)
  local s, err = E.tcp_connect("127.0.0.1", port, 3)
  assert(s, err)
  st.sock = s
  st.prefix = ffi.string(wire, len[0])
  return st
end

-- Sends `payload` (in chunks) and waits (o.wait, 6 s) for its echo.
-- -> res: answered (the header came and the whole echo), sw (the command,
-- when one came), closed ("eof" / "reset" / nil), closed_after (s since
-- open), received (bytes of the wire).
function Session:exchange(payload, wait)
  local out, outlen = ffi.new("uint8_t[?]", 20000), ffi.new("size_t[1]")
  local parts = { self.prefix or "" }
  self.prefix = nil
  for i = 1, #payload, 8192 do
    local p = payload:sub(i, i + 8191)
    assert(C.lr_body_seal(self.up, p, #p, out, 20000, outlen) == 0)
    parts[#parts + 1] = ffi.string(out, outlen[0])
  end
  local res = { received = 0 }
  if self.closed then res.closed = self.closed; return res end
  self.sock:settimeout(5)
  local ok, serr = self.sock:send(table.concat(parts))
  self.sock:settimeout(0)
  if not ok then res.closed = "send: " .. tostring(serr) end
  local echo = {}
  local got = 0
  local consumed = ffi.new("size_t[1]")
  local plain = ffi.new("uint8_t[65536]")
  local deadline = E.now() + (wait or 6)
  for _ = 1, 1000000 do
    if res.closed or E.now() >= deadline then break end
    local rd = socket.select({ self.sock }, nil, math.max(0.01, math.min(0.25, deadline - E.now())))
    if #rd > 0 then
      local d, state = E.recv_nb(self.sock)
      self.buf = self.buf .. d
      self.received = (self.received or 0) + #d
      if not self.header then
        local rc = C.lr_resp_decode(self.rdec, self.mode, self.rk, self.ri, self.down, self.v,
                                    self.buf, #self.buf, consumed, self.resp)
        if rc == 0 then
          self.header = true
          self.off = tonumber(consumed[0])
          if self.resp.has_switch == 1 then
            local sw = self.resp.sw
            self.sw = { port = sw.port, id = uuid_of(sw.id), alter_ids = sw.alter_ids,
                        level = sw.level, valid_min = sw.valid_min, host_len = sw.host_len }
          end
        elseif rc ~= 1 then
          error("response header: " .. core.strerror(rc))
        end
      end
      if self.header then
        for _ = 1, 100000 do
          if self.off >= #self.buf then break end
          local p = ffi.cast("const uint8_t *", self.buf) + self.off
          local rc = C.lr_body_open(self.down, p, #self.buf - self.off, consumed, plain, 65536, outlen)
          if rc ~= 0 then
            assert(rc == 1 or rc == 2, "response body: " .. core.strerror(rc))
            break
          end
          self.off = self.off + tonumber(consumed[0])
          echo[#echo + 1] = ffi.string(plain, outlen[0])
          got = got + tonumber(outlen[0])
        end
        self.buf, self.off = self.buf:sub(self.off + 1), 0
      end
      if state then
        self.closed = state
        res.closed, res.closed_after = state, E.now() - self.t0
      end
      if got >= #payload then break end
    end
  end
  res.sw = self.sw
  res.received = self.received or 0
  res.answered = self.header and table.concat(echo) == payload
  return res
end

function Session:close()
  if self.sock then self.sock:close(); self.sock = nil end
end

-- One exchange of 64 random bytes on a new session -> res (see exchange).
local function try(port, uuid, o)
  o = o or {}
  local s = open(port, uuid, o)
  local res = s:exchange(rand(64), o.wait)
  s:close()
  return res
end

-- The command user `uuid` is told by the main inbound at `port`.
local function announce(port, uuid, dst_port)
  local res = try(port, uuid, { dst_port = dst_port })
  assert(res.answered, "the main inbound did not answer user " .. uuid)
  assert(res.sw, "the response to user " .. uuid .. " carries no dynamic-port command")
  res.sw.received_at = E.now()
  return res.sw
end

-- Refused the way a bad header is: no byte back, closed by a FIN at the
-- handshake timeout (2 s).
local function assert_refused(res, what)
  assert(not res.answered, what .. ": answered")
  assert(res.received == 0, what .. (": %d bytes came back"):format(res.received))
  assert(res.closed == "eof", what .. ": not closed by a FIN (" .. tostring(res.closed) .. ")")
  assert(res.closed_after > 1.5 and res.closed_after < 5,
    what .. (": closed after %.2f s, not at the 2 s handshake timeout"):format(res.closed_after))
end

----------------------------------------------------------------------------
-- Servers

-- A server config: users {{email, id, level}}, main port sp, detour port dp.
local function server_config(o)
  local l = {
    'luaray.log { level = "info", access = true }',
  }
  for _, u in ipairs(o.users) do
    l[#l + 1] = ('luaray.user { id = %q, email = %q, level = %d }'):format(u.id, u.email, u.level or 0)
  end
  -- allow_legacy: the detour's legacy IDs are tested too (default: AEAD only)
  l[#l + 1] = ('luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true, ' ..
               'allow_legacy = true, handshake_timeout = 2, ' ..
               'dynamic_port = { port = "%d", minutes = 1, alter_id = %d } }')
              :format(o.sp, o.dp, o.alter_id or 0)
  l[#l + 1] = 'luaray.outbound "direct" { type = "direct" }'
  l[#l + 1] = 'luaray.outbound "block" { type = "blackhole" }'
  l[#l + 1] = o.extra or ""
  return table.concat(l, "\n") .. "\n"
end

local function reload(h, p, text)
  local f = assert(io.open(p.config, "wb"))
  f:write(text)
  f:close()
  local n = E.count_matches(E.read_file(p.log), "reload: generation %d+ serving")
  assert(psignal.kill(p.pid, psignal.SIGHUP))
  local ok, err = E.wait_log(p, "reload: generation %d+ serving", n + 1)
  assert(ok, tostring(err) .. "\n" .. h:tail(p))
end

-- Access-log lines of `p` for inbound `ib` and user `email` (plain text).
local function access_lines(p, ib, email)
  local out = {}
  for line in E.read_file(p.log):gmatch("[^\n]+") do
    if line:find(" " .. esc(ib) .. " " .. esc(email) .. " tcp ") and line:find(" up=%d+") then
      out[#out + 1] = line
    end
  end
  return out
end

local function wait_access(p, ib, email, n, timeout)
  local pat = " " .. esc(ib) .. " " .. esc(email) .. " tcp [^\n]* up=%d+"
  local ok, err = E.wait_log(p, pat, n, timeout or 10)
  assert(ok, tostring(err))
  return ok
end

describe("dynamic port: per-user detour IDs", function()
  local h = E.new("dynport")
  local echo
  local main, rl, clk          -- servers
  local P = {}                 -- ports: main/detour of each server
  local U = {}                 -- email -> uuid
  for _, e in ipairs { "a", "b", "mc", "q1", "q2", "r", "v" } do U[e] = E.uuid() end
  local function em(e) return e .. "@e2e" end
  local DYN = "vmess-in:dynamic"

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    -- the clock server first: its first epoch starts now
    P.clk, P.clk_d = E.free_port(), E.free_port()
    clk = h:luaray_obs("clock", server_config {
      sp = P.clk, dp = P.clk_d, alter_id = 2,
      users = { { email = em "a", id = U.a }, { email = em "v", id = U.v } } },
      { ports = { P.clk, P.clk_d } })
    P.main, P.main_d = E.free_port(), E.free_port()
    main = h:luaray_obs("main", server_config {
      sp = P.main, dp = P.main_d,
      users = { { email = em "a", id = U.a, level = 2 }, { email = em "b", id = U.b },
                { email = em "mc", id = U.mc }, { email = em "q1", id = U.q1 },
                { email = em "q2", id = U.q2 }, { email = em "r", id = U.r } },
      extra = table.concat({
        ('luaray.route { user = { "r@e2e" }, port = %d, to = "block" }'):format(echo.sink_port),
        'luaray.policy("mc@e2e", { max_conns = 1 })',
        'luaray.policy("q1@e2e", { quota = 16384 })',
        'luaray.policy("q2@e2e", { quota = 16384 })',
        'luaray.on("close", function(ctx, s)',
        '  print(table.concat({ "OBS", "close", ctx.inbound, ctx.user and ctx.user.email or "-",',
        '                       ctx.user and tostring(ctx.user.level) or "-" }, "\\t"))',
        'end)',
      }, "\n") }, { ports = { P.main, P.main_d } })
    P.rl, P.rl_d = E.free_port(), E.free_port()
    rl = h:luaray_obs("reload", server_config {
      sp = P.rl, dp = P.rl_d,
      users = { { email = em "a", id = U.a }, { email = em "b", id = U.b } } },
      { ports = { P.rl, P.rl_d } })
  end))

  lazy_teardown(function() h:cleanup() end)

  it("tells each user an own detour ID, on the detour port, with the user's level", h:guard(function()
    local ca = announce(P.main, U.a, echo.port)
    local cb = announce(P.main, U.b, echo.port)
    assert.are_not.equal(ca.id, cb.id, "users a and b were told the same detour ID")
    assert.equal(P.main_d, ca.port)
    assert.equal(P.main_d, cb.port)
    assert.equal(0, ca.host_len)
    assert.equal(1, ca.valid_min)
    assert.equal(0, ca.alter_ids)
    assert.equal(2, ca.level)
    assert.equal(0, cb.level)
    for _, x in ipairs { ca.id, cb.id } do
      for _, real in pairs(U) do assert.are_not.equal(real, x, "a detour ID is a user's own ID") end
    end
    -- the other server's detour IDs for the same user differ too
    local other = announce(P.rl, U.a, echo.port)
    assert.are_not.equal(ca.id, other.id)
    -- the alternate IDs of a legacy detour are announced as its alter_id
    assert.equal(2, announce(P.clk, U.a, echo.port).alter_ids)
  end))

  it("a detour ID is its user's: access log and hooks see that user, never an internal one", h:guard(function()
    for _, u in ipairs { { "a", 2 }, { "b", 0 } } do
      local e, level = u[1], u[2]
      local sw = announce(P.main, U[e], echo.port)
      local res = try(P.main_d, sw.id, { dst_port = echo.port })
      assert.is_true(res.answered, "user " .. e .. "'s detour ID was not accepted on the detour")
      wait_access(main, DYN, em(e), 1)
      local out, err = E.wait_log({ name = "main stdout", log = main.out },
        "OBS\tclose\t" .. esc(DYN) .. "\t" .. esc(em(e)) .. "\t" .. level .. "\n", 1, 10)
      assert(out, err)
    end
    -- an ID on the wrong listener, or one the server never gave, is refused
    local sw = announce(P.main, U.a, echo.port)
    assert_refused(try(P.main, sw.id, { dst_port = echo.port }), "a's detour ID on the main port")
    assert_refused(try(P.main_d, U.a, { dst_port = echo.port }), "a's own ID on the detour")
    assert_refused(try(P.main_d, E.uuid(), { dst_port = echo.port }), "a made-up ID on the detour")
    -- no internal user shows anywhere a user does
    local log = E.read_file(main.log)
    assert.is_nil(log:find(" " .. esc(DYN) .. " " .. esc(DYN) .. " "), "an access line names an internal user")
    assert.is_nil(log:find(" " .. esc(DYN) .. " %- tcp [^\n]*direct"), "a detour connection was dialled without a user")
    assert.is_nil(E.read_file(main.out):find("\t" .. esc(DYN) .. "\t" .. esc(DYN)), "a hook saw an internal user")
  end))

  it("max_conns holds across the main port and the detour", h:guard(function()
    local sw = announce(P.main, U.mc, echo.port)
    -- the announcement itself was a connection: wait until it is counted out
    wait_access(main, "vmess-in", em "mc", 1)
    -- held on the main port: the detour is refused, and the other way round
    local held = open(P.main, U.mc, { dst_port = echo.port })
    assert.is_true(held:exchange(rand(64)).answered)
    local n = E.count_matches(E.read_file(main.log), "too many connections")
    local res = try(P.main_d, sw.id, { dst_port = echo.port })
    assert.is_false(res.answered, "mc opened a second connection through the detour")
    assert(E.wait_log(main, "too many connections", n + 1))
    assert.is_truthy(E.read_file(main.log):find(" " .. esc(DYN) .. " mc@e2e tcp [^\n]*too many connections"))
    held:close()
    wait_access(main, "vmess-in", em "mc", 2)
    held = open(P.main_d, sw.id, { dst_port = echo.port })
    assert.is_true(held:exchange(rand(64)).answered, "mc alone on the detour was refused")
    res = try(P.main, U.mc, { dst_port = echo.port })
    assert.is_false(res.answered, "mc opened a second connection on the main port beside the detour one")
    assert(E.wait_log(main, "too many connections", n + 2))
    held:close()
  end))

  it("quota holds across the main port and the detour", h:guard(function()
    -- q1 spends its quota on the main port; the detour is refused
    local sw1 = announce(P.main, U.q1, echo.port)
    local s = open(P.main, U.q1, { dst_port = echo.port })
    s:exchange(rand(12 * KiB), 6)      -- 24 KiB of 16: closed beyond the quota
    s:close()
    wait_access(main, "vmess-in", em "q1", 2)
    local n = E.count_matches(E.read_file(main.log), "quota exceeded")
    assert.is_false(try(P.main_d, sw1.id, { dst_port = echo.port }).answered,
      "q1 got through the detour beyond its quota")
    assert(E.wait_log(main, "quota exceeded", n + 1))
    assert.is_truthy(E.read_file(main.log):find(" " .. esc(DYN) .. " q1@e2e tcp [^\n]*quota exceeded"))
    -- q2 spends it on the detour; the main port is refused
    local sw2 = announce(P.main, U.q2, echo.port)
    s = open(P.main_d, sw2.id, { dst_port = echo.port })
    s:exchange(rand(12 * KiB), 6)
    s:close()
    wait_access(main, DYN, em "q2", 1)
    n = E.count_matches(E.read_file(main.log), "quota exceeded")
    assert.is_false(try(P.main, U.q2, { dst_port = echo.port }).answered,
      "q2 spent its quota on the detour and still got through the main port")
    assert(E.wait_log(main, "quota exceeded", n + 1))
  end))

  it("a `user` route rule applies on the detour", h:guard(function()
    -- the rule (r to the sink port -> blackhole) leaves r's announcement alone
    local sw = announce(P.main, U.r, echo.port)
    local sb = announce(P.main, U.b, echo.port)
    assert.equal(P.main_d, sw.port)
    local nb = #access_lines(main, DYN, em "b")
    try(P.main_d, sw.id, { dst_port = echo.sink_port, wait = 1 })
    try(P.main_d, sb.id, { dst_port = echo.sink_port, wait = 1 })
    wait_access(main, DYN, em "r", 1)
    wait_access(main, DYN, em "b", nb + 1)
    local lr, lb = access_lines(main, DYN, em "r"), access_lines(main, DYN, em "b")
    assert.is_truthy(lr[#lr]:find(":" .. echo.sink_port .. " block up=", 1, true),
      "r's detour connection: " .. lr[#lr])
    assert.is_truthy(lb[#lb]:find(":" .. echo.sink_port .. " direct up=", 1, true),
      "b's detour connection: " .. lb[#lb])
  end))

  it("luaray and v2ray 4.34 clients follow the command, as their own user", h:guard(function()
    -- luaray client, AEAD detour (main), legacy detour with alternates (clock)
    for _, c in ipairs { { srv = main, port = P.main, user = "b" }, { srv = clk, port = P.clk, user = "v" } } do
      local sp = E.free_port()
      local text, o = E.luaray_client_script { socks_port = sp, server_port = c.port, id = U[c.user],
                                               security = "aes-128-gcm" }
      local cl = h:luaray("client-" .. c.user, text, o)
      local before = #access_lines(c.srv, DYN, em(c.user))
      for i = 1, 4 do
        local s = assert(E.socks5_connect("127.0.0.1", sp, "127.0.0.1", echo.port))
        assert(E.transfer_echo(s, 8 * KiB, { timeout = 10 }))
        if i == 1 then assert(E.wait_log(cl, "server announced dynamic port")) end
      end
      wait_access(c.srv, DYN, em(c.user), before + 1)
      h:stop_luaray(cl)
    end
    -- v2ray 4.34 (it alternates between the servers it knows; the detour
    -- one uses aes-128-cfb and, with alterIds 2, the legacy header)
    for _, c in ipairs { { srv = main, port = P.main, user = "b" }, { srv = clk, port = P.clk, user = "v" } } do
      local sp = E.free_port()
      local v2 = h:v2ray("v2ray-" .. c.user, E.v2ray_client_config { socks_port = sp, server_port = c.port,
                                                                   id = U[c.user] })
      local before = #access_lines(c.srv, DYN, em(c.user))
      for _ = 1, 6 do
        local s = assert(E.socks5_connect("127.0.0.1", sp, "127.0.0.1", echo.port))
        assert(E.transfer_echo(s, 8 * KiB, { timeout = 10 }))
      end
      wait_access(c.srv, DYN, em(c.user), before + 1, 15)
      h:stop(v2)
    end
    assert.is_nil(E.read_file(main.log):find(" " .. esc(DYN) .. " " .. esc(DYN) .. " "))
    assert.is_nil(E.read_file(clk.log):find(" " .. esc(DYN) .. " " .. esc(DYN) .. " "))
  end))

  it("a user removed by a reload loses the detour at once; the others keep theirs", h:guard(function()
    local sa = announce(P.rl, U.a, echo.port)
    local sb = announce(P.rl, U.b, echo.port)
    assert.is_true(try(P.rl_d, sa.id, { dst_port = echo.port }).answered)
    assert.is_true(try(P.rl_d, sb.id, { dst_port = echo.port }).answered)
    -- a connection of a's open on the detour through the reload
    local held = open(P.rl_d, sa.id, { dst_port = echo.port })
    assert.is_true(held:exchange(rand(64)).answered)
    reload(h, rl, server_config { sp = P.rl, dp = P.rl_d, users = { { email = em "b", id = U.b } } })
    assert_refused(try(P.rl_d, sa.id, { dst_port = echo.port }), "removed user a's detour ID")
    assert_refused(try(P.rl, U.a, { dst_port = echo.port }), "removed user a on the main port")
    assert.is_true(try(P.rl_d, sb.id, { dst_port = echo.port }).answered, "b's detour ID stopped working")
    -- as on the main port, a connection already open finishes on its generation
    assert.is_true(held:exchange(rand(4 * KiB)).answered, "a's open detour connection was cut by the reload")
    held:close()
    -- the detour listener stayed (same port), and b is still told it
    assert.equal(P.rl_d, announce(P.rl, U.b, echo.port).port)
  end))

  it("an ID works for `minutes` after it was last announced, then is refused; the next one works", h:guard(function()
    -- wait for an epoch boundary: the ID a is told changes (minutes = 1)
    local first = announce(P.clk, U.a, echo.port)
    local last, new = first, nil
    local deadline = E.now() + MINUTE + 15
    for _ = 1, 1000 do
      E.sleep(0.5)
      local cur = announce(P.clk, U.a, echo.port)
      if cur.id ~= last.id then new = cur; break end
      last = cur
      assert(E.now() < deadline, "the ID told to a did not change within 75 s (minutes = 1)")
    end
    local t_last = last.received_at     -- the old ID was last announced here
    -- the new one works at once, with the AEAD and the legacy header
    -- (its main ID and its alternates)
    assert.is_true(try(P.clk_d, new.id, { dst_port = echo.port }).answered, "new ID, AEAD")
    for _, k in ipairs { -1, 0, 1 } do
      assert.is_true(try(P.clk_d, new.id, { dst_port = echo.port, legacy = true, index = k }).answered,
        "new ID, legacy header signed by " .. (k < 0 and "its main ID" or "alternate " .. k))
    end
    -- the old one keeps working while a client may still use it (valid_min
    -- from receipt), through the grace after it ...
    local accepted_until, probes = nil, {}
    E.sleep(math.max(0, t_last + 50 - E.now()))
    for _ = 1, 100 do
      local t = E.now() - t_last
      local legacy = #probes % 2 == 1
      local res = try(P.clk_d, last.id, { dst_port = echo.port, legacy = legacy, index = legacy and 1 or nil })
      probes[#probes + 1] = ("%.1f:%s"):format(t, res.answered and "ok" or "refused")
      if not res.answered then
        assert_refused(res, ("the old ID %.1f s after its last announcement"):format(t))
        break
      end
      accepted_until = t
      assert(t < MINUTE + GRACE + 15, "the old ID still works " .. ("%.1f"):format(t) ..
        " s after its last announcement: " .. table.concat(probes, " "))
      E.sleep(t < MINUTE - 5 and 1 or 3)
    end
    local refused_at = E.now() - t_last
    -- ... and is refused from the end of the grace on, for good
    assert(accepted_until and accepted_until >= MINUTE - 5,
      "the old ID was refused before a client's valid_min ran out: " .. table.concat(probes, " "))
    assert_refused(try(P.clk_d, last.id, { dst_port = echo.port }), "the old ID, once more")
    assert.is_true(try(P.clk_d, new.id, { dst_port = echo.port }).answered, "the new ID meanwhile")
    print(("# dynamic port: the old ID was last announced at t; probes at t + %s; refused from %.1f s"):format(
      table.concat(probes, " "), refused_at))
  end))
end)
