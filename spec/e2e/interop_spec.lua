-- luaray against v2ray 4.34, both ways (issue "The luaray daemon", cells
-- 1, 2, 9 and 10):
--   v2ray client (SOCKS5 in, VMess out) -> luaray VMess server -> echo
--   luaray client (SOCKS5 in, VMess out) -> v2ray VMess server -> echo
-- Every TCP cell moves 1 MiB both ways on one connection (every byte
-- compared), 1 MiB down from the source port and 1 MiB up to the sink port
-- (count and FNV-1a compared): E.check_socks_tcp. Everything is on loopback;
-- every child is started and stopped by PID through the harness.
local E = require "e2e.support"

local MiB = 1024 * 1024

local function cell_name(o)
  local parts = { o.security }
  if o.alter_id and o.alter_id > 0 then
    parts[#parts + 1] = ("alterId %d (legacy header)"):format(o.alter_id)
  elseif o.env then
    parts[#parts + 1] = "alterId 0, legacy header forced by V2RAY_VMESS_AEAD_DISABLED"
  else
    parts[#parts + 1] = "alterId 0 (AEAD header)"
  end
  if o.masking == false then parts[#parts + 1] = "masking off" end
  return table.concat(parts, ", ")
end

describe("interop: v2ray 4.34 client -> luaray VMess server", function()
  local h = E.new("interop_v2ray_client")
  local echo, srv, srv_port
  local ID0, ID4 = E.uuid(), E.uuid()

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    srv_port = E.free_port()
    srv = h:luaray("luaray-server", E.luaray_server_script {
      port = srv_port, allow_legacy = true,   -- the legacy cells need it (default: AEAD only)
      users = { { id = ID0, alter_id = 0, email = "aead@e2e" },
                { id = ID4, alter_id = 4, email = "legacy@e2e" } } })
  end))

  lazy_teardown(function() h:cleanup() end)

  -- A v2ray client whose VMess outbound points at `port` (the luaray server
  -- unless given) -> the proc and its SOCKS5 port.
  local function v2ray_client(o, port)
    local socks = E.free_port()
    local aid = o.alter_id or 0
    local c = h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = port or srv_port, id = aid > 0 and ID4 or ID0,
      alterId = aid, security = o.security, mux = o.mux }, { env = o.env })
    return c, socks
  end

  local function assert_server_alive()
    assert.is_true(h:alive(srv), "the luaray server died")
  end

  local cells = {
    { security = "aes-128-gcm", alter_id = 0 },
    { security = "chacha20-poly1305", alter_id = 0 },
    { security = "none", alter_id = 0 },
    { security = "aes-128-gcm", alter_id = 4 },
    { security = "chacha20-poly1305", alter_id = 4 },
    { security = "aes-128-gcm", alter_id = 0, env = E.V2RAY_LEGACY_ENV },
  }

  for _, o in ipairs(cells) do
    it(cell_name(o) .. ": 1 MiB both ways, 1 MiB down, 1 MiB up", h:guard(function()
      local c, socks = v2ray_client(o)
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
      assert.is_true(ok, err)
      assert_server_alive()
      assert.is_true(h:alive(c), "the v2ray client died")
      h:stop(c)
    end))
  end

  it("the legacy cells really are legacy: a server with allow_legacy = false refuses them",
    h:guard(function()
      -- Without this, a client quietly falling back to AEAD would pass the
      -- legacy cells above.
      local port = E.free_port()
      local strict = h:luaray("luaray-no-legacy", E.luaray_server_script {
        port = port, allow_legacy = false, handshake_timeout = 1,
        users = { { id = ID0, alter_id = 0 }, { id = ID4, alter_id = 4 } } })
      for _, o in ipairs { cells[4], cells[6] } do
        local c, socks = v2ray_client(o, port)
        local s = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port)
        local ok = s and E.transfer_echo(s, 4096, { timeout = 3 })
        assert.is_falsy(ok, cell_name(o) .. " went through a server refusing legacy headers")
        h:stop(c)
      end
      local c, socks = v2ray_client(cells[1], port)
      local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, 64 * 1024, { steps = { echo = true } })
      assert.is_true(ok, "AEAD through the allow_legacy = false server: " .. tostring(err))
      h:stop(c)
      assert.is_true(h:alive(strict), "the allow_legacy = false server died")
      h:stop_luaray(strict)
    end))

  for _, o in ipairs { cells[1], cells[5] } do
    it(cell_name(o) .. ": UDP, 5 datagrams of 1..1400 bytes (SOCKS5 UDP ASSOCIATE on v2ray)",
      h:guard(function()
        local c, socks = v2ray_client(o)
        local ok, err = E.check_socks_udp("127.0.0.1", socks, echo)
        assert.is_true(ok, err)
        assert_server_alive()
        h:stop(c)
      end))
  end

  it("mux (Mux.Cool) from the v2ray client: 1 MiB, then 8 concurrent streams of 64 KiB",
    h:guard(function()
      local c, socks = v2ray_client { security = "aes-128-gcm", alter_id = 0, mux = true }
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local ok, info = E.transfer_echo(s, MiB, { timeout = 10 })
      assert.is_true(ok, "1 MiB over mux: " .. tostring(info))
      local socks8 = {}
      for i = 1, 8 do
        socks8[i] = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      end
      ok, info = E.transfer_echo_many(socks8, 64 * 1024, { timeout = 10 })
      assert.is_true(ok, "8 streams over mux: " .. tostring(info))
      assert_server_alive()
      h:stop(c)
    end))
end)

describe("interop: luaray client -> v2ray 4.34 VMess server", function()
  local h = E.new("interop_luaray_client")
  local echo, v2srv, v2port
  local ID0, ID4 = E.uuid(), E.uuid()

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    v2port = E.free_port()
    v2srv = h:v2ray("v2ray-server", E.v2ray_server_config {
      port = v2port, users = { { id = ID0, alterId = 0 }, { id = ID4, alterId = 4 } } })
  end))

  lazy_teardown(function() h:cleanup() end)

  local function luaray_client(o)
    local socks = E.free_port()
    local text, opts = E.luaray_client_script {
      socks_port = socks, server_port = v2port, id = o.alter_id > 0 and ID4 or ID0,
      alter_id = o.alter_id, security = o.security, masking = o.masking }
    return h:luaray("luaray-client", text, opts), socks
  end

  -- authenticated_length is never set here: v2ray 4.34 does not know the
  -- option (luaray <-> luaray only, in luaray_matrix_spec.lua).
  local securities = { "aes-128-gcm", "chacha20-poly1305", "none", "zero", "aes-128-cfb", "auto" }
  for _, sec in ipairs(securities) do
    for _, aid in ipairs { 0, 4 } do
      for _, masking in ipairs { true, false } do
        local o = { security = sec, alter_id = aid }
        if not masking then o.masking = false end
        it(cell_name(o) .. ": 1 MiB both ways, 1 MiB down, 1 MiB up", h:guard(function()
          local c, socks = luaray_client(o)
          local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
          assert.is_true(ok, err)
          assert.is_true(h:alive(c), "the luaray client died")
          assert.is_true(h:alive(v2srv), "the v2ray server died")
          h:stop_luaray(c)
        end))
      end
    end
  end

  for _, o in ipairs { { security = "aes-128-gcm", alter_id = 0 },
                       { security = "chacha20-poly1305", alter_id = 4 } } do
    it(cell_name(o) .. ": UDP, 5 datagrams of 1..1400 bytes (SOCKS5 UDP ASSOCIATE on luaray)",
      h:guard(function()
        local c, socks = luaray_client(o)
        local ok, err = E.check_socks_udp("127.0.0.1", socks, echo)
        assert.is_true(ok, err)
        assert.is_true(h:alive(c), "the luaray client died")
        h:stop_luaray(c)
      end))
  end
end)
