-- The example configs in examples/ each start and do what they say.
-- (routing, limits, quota and slow_hooks are exercised in hooks_spec and
-- policy_spec; this file covers server.lua and client.lua and checks that
-- every example passes `luaray -t`.)  Loopback only: client.lua's upstream
-- (203.0.113.5, a documentation address) is never dialled, because the
-- test only sends traffic that its rules route direct.
local E = require "e2e.support"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("examples", function()
  local h = E.new("examples")
  local echo
  lazy_setup(function() echo = h:echo_server {} end)
  lazy_teardown(function() h:cleanup() end)

  it("every example passes luaray -t", h:guard(function()
    local p = io.popen("ls examples/*.lua")
    local n = 0
    for file in p:lines() do
      local code, out = h:exec(h:unique("check"), { E.luaray_bin(), "-t", "-c", file },
                               { keep_preload = true })
      assert.equal(0, code, file .. ": " .. tostring(out))
      assert.truthy(out:find("configuration OK", 1, true), file .. ": " .. out)
      n = n + 1
    end
    p:close()
    assert.is_true(n >= 6, "expected at least six examples, found " .. n)
  end))

  it("server.lua serves VMess and, with allow_private = false, refuses a loopback destination",
     h:guard(function()
    local text = read("examples/server.lua")
    local id = text:match('id = "(%x+%-%x+%-%x+%-%x+%-%x+)", email = "alice@example.com"')
    assert.truthy(id, "alice's id in examples/server.lua")
    local port = tonumber(text:match('listen = "0%.0%.0%.0:(%d+)"'))
    local srv = h:spawn("server-example", { E.luaray_bin(), "-c", "examples/server.lua" },
                        { ports = { { "127.0.0.1", port } }, keep_preload = true })
    local socks = E.free_port()
    local script, o = E.luaray_client_script { socks_port = socks, server_port = port, id = id,
                                               security = "aes-128-gcm" }
    local cli = h:luaray("client-for-example", script, o)
    -- a private destination: the server must not relay it
    local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 5))
    s:settimeout(3)
    s:send("hello")
    local data, err = s:receive(5)
    s:close()
    assert.is_nil(data, "the example server relayed to 127.0.0.1")
    assert.truthy(err)
    local deadline = E.now() + 3
    local log
    repeat
      E.sleep(0.1)
      log = read(srv.log)
    until log:find("private destination refused", 1, true) or E.now() > deadline
    assert.truthy(log:find("alice@example.com", 1, true), "alice is not in the access log:\n" .. log)
    assert.truthy(log:find("private destination refused", 1, true), log)
    h:stop(cli)
    h:stop(srv)
  end))

  it("client.lua proxies SOCKS5 and HTTP, routing loopback destinations direct", h:guard(function()
    local cli = h:spawn("client-example", { E.luaray_bin(), "-c", "examples/client.lua" },
                        { ports = { { "127.0.0.1", 1080 }, { "127.0.0.1", 8080 } }, keep_preload = true })
    local ok, err = E.check_socks_tcp("127.0.0.1", 1080, echo, 256 * 1024)
    assert.is_true(ok, err)
    local s = assert(E.http_connect("127.0.0.1", 8080, "127.0.0.1", echo.port, 5))
    assert.is_true(E.transfer_echo(s, 64 * 1024))
    h:stop(cli)
  end))
end)
