-- Hostile input on the luaray VMess inbound (design.md 3 and 5; issue "The
-- luaray daemon", cell 8). Whatever is wrong with what a prober sends --
-- random bytes, a truncated header, a replayed request, one flipped bit --
-- the inbound must never answer a byte, must close only at its handshake
-- timeout (counted from accept, with a FIN), must not dial anything, and
-- must keep serving normal clients.
--
-- Real requests are captured first: a v2ray 4.34 client is pointed at a
-- recording server (tools/capture_server.lua) instead of a VMess server, and
-- what it sends is replayed to luaray. The destination of every captured
-- request is a second recording server, so anything luaray dials shows up
-- there as a connection.
local E = require "e2e.support"
local bit = require "bit"

local MiB = 1024 * 1024
local HT = 2          -- the inbound's handshake_timeout, seconds
local EARLY = 0.1     -- accepted slack before HT (accept happens just after connect)
local LATE = 1.0      -- "not much more" than HT

describe("hostile input on the luaray VMess inbound", function()
  local h = E.new("hostile")
  local echo, srv, srv_port, cap, target
  local v_aead, v_legacy, v_normal     -- SOCKS5 ports of three v2ray clients
  local ID0, ID4 = E.uuid(), E.uuid()

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    cap = h:capture_server { name = "capture" }
    target = h:capture_server { name = "target" }
    srv_port = E.free_port()
    srv = h:luaray("luaray-server", E.luaray_server_script {
      port = srv_port, handshake_timeout = HT, log_level = "debug",
      allow_legacy = true,   -- legacy replays and probes are tested too (default: AEAD only)
      users = { { id = ID0, alter_id = 0, email = "aead@e2e" },
                { id = ID4, alter_id = 4, email = "legacy@e2e" } } })
    local function client(port, id, aid)
      local socks = E.free_port()
      h:v2ray("v2ray-client", E.v2ray_client_config {
        socks_port = socks, server_port = port, id = id, alterId = aid, security = "aes-128-gcm" })
      return socks
    end
    v_aead = client(cap.port, ID0, 0)
    v_legacy = client(cap.port, ID4, 4)
    v_normal = client(srv_port, ID0, 0)
  end))

  lazy_teardown(function() h:cleanup() end)

  local seq = 0
  -- What a v2ray client sends for one new connection to `target` that
  -- starts with a marker payload -> bytes, marker.
  local function capture(socks)
    return cap:request_via(socks, target.port)
  end

  -- n fresh requests at once (each with its own AuthID, or its own legacy
  -- auth/body key), so every probe built from one tests the decoder itself,
  -- not the replay filter -> list of bytes.
  local function capture_many(socks, n)
    local before = cap:count()
    local ss = {}
    for i = 1, n do
      seq = seq + 1
      ss[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", target.port))
      assert(ss[i]:send(("marker-%d-%s\n"):format(seq, E.uuid())))
    end
    local out, err = cap:wait_many(before + 1, n, 60, 0.3, 5)
    for _, s in ipairs(ss) do s:close() end
    assert(out, err)
    return out
  end

  local function flip(bytes, pos, bitn)
    local b = bytes:byte(pos + 1)
    return bytes:sub(1, pos) .. string.char(bit.bxor(b, bit.lshift(1, bitn))) .. bytes:sub(pos + 2)
  end

  -- Every probe result must be: nothing received, a FIN, at HT (+LATE).
  local function check_silent(results, labels)
    local bad = E.silent_failures(results, labels, HT - EARLY, HT + LATE)
    assert.is_true(#bad == 0, table.concat(bad, "\n"))
  end

  local function probe(payloads, labels)
    local res = E.probe_many("127.0.0.1", srv_port, payloads, { max_wait = HT + LATE + 3 })
    check_silent(res, labels)
  end

  -- The daemon is alive and a normal v2ray client still gets through.
  local function check_still_serving()
    assert.is_true(h:alive(srv), "the luaray server died")
    local ok, err = E.check_socks_tcp("127.0.0.1", v_normal, echo, MiB, { steps = { echo = true } })
    assert.is_true(ok, "a normal client after the probes: " .. tostring(err))
  end

  it("the probe check itself flags an answer, an early close and no close", h:guard(function()
    local http = h:http_server()
    -- the HTTP server answers 400 and closes at once; the echo server echoes
    -- and never closes first
    local r1 = E.probe_many("127.0.0.1", http.port, { "x\r\n\r\n" }, { max_wait = 1 })
    local r2 = E.probe_many("127.0.0.1", echo.port, { "hello" }, { max_wait = 0.5 })
    local ok1, err1 = pcall(check_silent, r1, { "http" })
    local ok2, err2 = pcall(check_silent, r2, { "echo" })
    assert.is_false(ok1)
    assert.is_false(ok2)
    local m1, m2 = tostring(err1 and (err1.message or err1)), tostring(err2 and (err2.message or err2))
    assert.truthy(m1:find("bytes sent back", 1, true) and m1:find("%(expected [^)]*%)"), m1)
    assert.truthy(m2:find("bytes sent back", 1, true) and m2:find("closed by open", 1, true), m2)
    h:stop(http.proc)
  end))

  it("random bytes (0, 1, 15, 16, 100, 1000, 5000): no answer, FIN at the handshake timeout", h:guard(function()
    local payloads, labels = {}, {}
    local f = assert(io.open("/dev/urandom", "rb"))
    for _, n in ipairs { 0, 1, 15, 16, 100, 1000, 5000 } do
      payloads[#payloads + 1] = n > 0 and f:read(n) or ""
      labels[#labels + 1] = ("%d random bytes"):format(n)
    end
    -- and the same lengths of all-zero bytes
    for _, n in ipairs { 16, 1000 } do
      payloads[#payloads + 1] = string.rep("\0", n)
      labels[#labels + 1] = ("%d zero bytes"):format(n)
    end
    f:close()
    local before = target:count()
    probe(payloads, labels)
    assert.equal(before, target:count(), "luaray dialled the target")
    check_still_serving()
  end))

  it("bytes trickled in do not extend the handshake deadline", h:guard(function()
    local s = assert(E.tcp_connect("127.0.0.1", srv_port))
    local t0 = E.now()
    s:settimeout(0)
    local received, how, closed_after = "", nil, nil
    local f = assert(io.open("/dev/urandom", "rb"))
    for _ = 1, 40 do   -- one byte every 0.1 s, up to 4 s
      if closed_after then break end
      s:send(f:read(1))
      local r = require("socket").select({ s }, nil, 0.1)
      if #r > 0 then
        local d, state = E.recv_nb(s)
        received = received .. d
        if state then how, closed_after = state, E.now() - t0 end
      end
    end
    f:close()
    s:close()
    check_silent({ { received = received, how = how or "open", closed_after = closed_after } },
                 { "a byte every 0.1 s" })
    check_still_serving()
  end))

  it("truncated valid-looking headers (AEAD and legacy): no answer, FIN at the timeout", h:guard(function()
    local a_lens, l_lens = { 15, 16, 17, 33, 34, 41, 42, 60, 106 }, { 15, 16, 17, 40, 64 }
    local aead, legacy = capture_many(v_aead, #a_lens), capture_many(v_legacy, #l_lens)
    local payloads, labels = {}, {}
    for i, n in ipairs(a_lens) do
      assert.is_true(#aead[i] > 107, ("AEAD capture is only %d bytes"):format(#aead[i]))
      payloads[#payloads + 1] = aead[i]:sub(1, n)
      labels[#labels + 1] = ("first %d bytes of an AEAD request"):format(n)
    end
    for i, n in ipairs(l_lens) do
      assert.is_true(#legacy[i] > 65, ("legacy capture is only %d bytes"):format(#legacy[i]))
      payloads[#payloads + 1] = legacy[i]:sub(1, n)
      labels[#labels + 1] = ("first %d bytes of a legacy request"):format(n)
    end
    local before = target:count()
    probe(payloads, labels)
    assert.equal(before, target:count(), "luaray dialled the target for a truncated header")
    check_still_serving()
  end))

  for _, mode in ipairs { "AEAD", "legacy" } do
    it(("a replayed %s request from v2ray: the first is served, the replay never reaches the target"):format(mode),
      h:guard(function()
        local bytes, marker = capture(mode == "AEAD" and v_aead or v_legacy)
        local base = target:count()
        -- the original: luaray must dial the target and deliver the marker
        local s1 = assert(E.tcp_connect("127.0.0.1", srv_port))
        assert(s1:send(bytes))
        local got, err = target:wait_bytes(base + 1, #marker, 0.1, 3)
        assert.is_truthy(got, "the original request was not served: " .. tostring(err))
        assert.equal(marker, got)
        -- the replay, while the original is still open, then again after it closed
        local res = E.probe_many("127.0.0.1", srv_port, { bytes }, { max_wait = HT + LATE + 3 })
        s1:close()
        local res2 = E.probe_many("127.0.0.1", srv_port, { bytes }, { max_wait = HT + LATE + 3 })
        check_silent({ res[1], res2[1] }, { mode .. " replay (original open)", mode .. " replay (original closed)" })
        E.sleep(0.2)
        assert.equal(base + 1, target:count(), "a replayed request reached the target")
        check_still_serving()
      end))
  end

  it("single-bit flips in AEAD and legacy request headers: no answer, FIN at the timeout", h:guard(function()
    -- AEAD: AuthID 0-15, sealed length 16-33, nonce 34-41, sealed header 42-106+
    local a_pos = { 0, 7, 15, 16, 17, 24, 33, 34, 41, 42, 50, 60, 75, 90, 106 }
    -- legacy: auth 0-15, CFB-encrypted header 16-64+ (FNV-1a checked)
    local l_pos = { 0, 8, 15, 16, 17, 20, 33, 37, 48, 55, 60, 64 }
    local aead, legacy = capture_many(v_aead, #a_pos), capture_many(v_legacy, #l_pos)
    local payloads, labels = {}, {}
    for i, pos in ipairs(a_pos) do
      payloads[#payloads + 1] = flip(aead[i], pos, pos % 8)
      labels[#labels + 1] = ("AEAD request, bit %d of byte %d flipped"):format(pos % 8, pos)
    end
    for i, pos in ipairs(l_pos) do
      payloads[#payloads + 1] = flip(legacy[i], pos, (pos + 3) % 8)
      labels[#labels + 1] = ("legacy request, bit %d of byte %d flipped"):format((pos + 3) % 8, pos)
    end
    local before = target:count()
    probe(payloads, labels)
    E.sleep(0.2)
    assert.equal(before, target:count(), "a request with a flipped bit reached the target")
    check_still_serving()
  end))

  it("after all of it: still alive, still serving, and the log names the reasons", h:guard(function()
    check_still_serving()
    local log = E.read_file(srv.log)
    -- reasons are logged locally (design.md 3), never a key or a full UUID
    assert.truthy(log:find("refused silently", 1, true) or log:find("handshake timeout", 1, true), log:sub(-2000))
    assert.falsy(log:find(ID0, 1, true), "the log contains a full user UUID")
    assert.falsy(log:find(ID4, 1, true), "the log contains a full user UUID")
  end))
end)
