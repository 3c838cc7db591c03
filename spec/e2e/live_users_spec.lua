-- Live users (design.md 7): luaray.users.add / remove / list from a hook.
-- A user added at run time works on every worker at once, stays across
-- SIGHUP until removed, and removing it closes its open connections.  The
-- spec drives the hooks through a control SOCKS inbound on the server: a
-- CONNECT to "add.EMAIL.UUID.ctl", "del.EMAIL.ctl" or "list.x.ctl" runs
-- the operation in the route hook, which prints its result (OBS lines).
local E = require "e2e.support"
local psignal = require "posix.signal"

local KiB = 1024

local CONTROL = [[
luaray.inbound "ctl" { type = "socks", listen = "127.0.0.1:%d" }
luaray.outbound "block" { type = "blackhole" }
luaray.on("route", function(ctx)
  if ctx.inbound ~= "ctl" then return nil end
  local op, email, id = ctx.dst.host:match("^(%%a+)%%.([^.]+)%%.?([^.]*)%%.ctl$")
  local ok, err
  if op == "add" then
    ok, err = luaray.users.add { id = id, email = email, inbound = "vmess-in", level = 1 }
  elseif op == "addnope" then
    ok, err = luaray.users.add { id = id, email = email, inbound = "nope" }
  elseif op == "del" then
    ok, err = luaray.users.remove(email, "vmess-in")
  elseif op == "list" then
    local parts = {}
    for _, u in ipairs(luaray.users.list()) do
      parts[#parts + 1] = u.email .. "=" .. (u.removed and "removed" or (u.id .. "@" .. tostring(u.inbound)))
    end
    ok, err = true, table.concat(parts, ",")
  end
  print(("OBS\tctl\t%%s\t%%s\t%%s"):format(tostring(op), tostring(ok), tostring(err)))
  return "block"
end)
]]

describe("live users (luaray.users)", function()
  local h = E.new("live_users")
  local ID = E.uuid()
  local echo, srv, port, ctl

  -- runs one control operation; its OBS line (ok, err)
  local function control(host)
    local before = #E.observations(E.read_file(srv.out), "ctl")
    local s = E.socks5_connect("127.0.0.1", ctl, host, 80)
    if s then s:close() end
    local deadline = E.now() + 10
    repeat
      local obs = E.observations(E.read_file(srv.out), "ctl")
      if #obs > before then return obs[#obs][3], obs[#obs][4] end
      E.sleep(0.05)
    until E.now() > deadline
    error("no answer to " .. host)
  end

  -- a luaray client for a user id: its SOCKS port
  local function client_for(id)
    local socks = E.free_port()
    h:luaray("luaray-client", E.luaray_client_script { socks_port = socks, server_port = port, id = id })
    return socks
  end

  -- one echo through socks: true, or false and why
  local function works(socks, n)
    local s, err = E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port, nil, nil, 5)
    if not s then return false, err end
    return E.transfer_echo(s, n or 16 * KiB, { timeout = 5 })
  end

  -- waits (bounded) until works() says `want`
  local function until_works(socks, want)
    local ok, err
    for _ = 1, 40 do
      ok, err = works(socks)
      if ok == want then return true end
      E.sleep(0.1)
    end
    return false, ("still %s: %s"):format(tostring(ok), tostring(err))
  end

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    port, ctl = E.free_port(), E.free_port()
    local text, o = E.luaray_server_script {
      port = port, users = { { id = ID, email = "static@e2e" } }, handshake_timeout = 2,
      extra = "luaray.workers(2)\n" .. CONTROL:format(ctl) }
    o.ports[#o.ports + 1] = { "127.0.0.1", ctl }
    srv = h:luaray_obs("luaray-server", text, o)
  end))
  lazy_teardown(function() h:cleanup() end)

  it("a user added from a hook works on both workers, shows in list(), and a second add of the " ..
     "same email is refused", h:guard(function()
    local id = E.uuid()
    local socks = client_for(id)
    local ok, err = works(socks)
    assert.is_false(ok, "not a user yet")
    local r, msg = control(("add.dave.%s.ctl"):format(id))
    assert.are.equal("true", r, msg)
    assert.is_true(until_works(socks, true))
    -- 20 connections: the kernel spreads them over both workers; all work
    for i = 1, 20 do
      local w, why = works(socks, 4 * KiB)
      assert.is_true(w, ("connection %d: %s"):format(i, tostring(why)))
    end
    assert.is_truthy(E.wait_log(srv, " dave tcp "))
    r, msg = control(("add.dave.%s.ctl"):format(E.uuid()))
    assert.are.equal("nil", r)
    assert.is_truthy(msg:find("already exists"), msg)
    r, msg = control("list.x.ctl")
    assert.are.equal("true", r)
    assert.is_truthy(msg:find("dave=" .. id .. "@vmess-in", 1, true), msg)
  end))

  it("stays across SIGHUP; a removal closes the user's open connection and refuses new ones",
    h:guard(function()
      local id = E.uuid()
      local socks = client_for(id)
      assert.are.equal("true", (control(("add.erin.%s.ctl"):format(id))))
      assert.is_true(until_works(socks, true))
      local before = E.count_matches(E.read_file(srv.log), "generation %d+ serving")
      assert(psignal.kill(srv.pid, psignal.SIGHUP))
      assert(E.wait_log(srv, "generation %d+ serving", before + 1))
      assert.is_true(works(socks), "after SIGHUP")
      -- an open connection of erin's
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local ok, err = E.transfer_echo(s, 8 * KiB, { timeout = 5, close = false })
      assert.is_true(ok, err)
      local r, msg = control("del.erin.ctl")
      assert.are.equal("true", r, msg)
      assert(E.wait_log(srv, "erin .- user removed"))
      -- the client sees its connection end
      s:settimeout(5)
      local data, rerr = s:receive(1)
      assert.is_nil(data)
      assert.are.equal("closed", rerr)
      s:close()
      assert.is_true(until_works(socks, false))
      -- the static user was never touched
      local socks2 = client_for(ID)
      assert.is_true(works(socks2))
      -- removing again: no such user
      r, msg = control("del.erin.ctl")
      assert.are.equal("nil", r)
      assert.is_truthy(msg:find("no user 'erin'", 1, true), msg)
    end))

  it("refuses bad input with a reason: a bad UUID, an unknown inbound", h:guard(function()
    local r, msg = control("add.frank.not-a-uuid.ctl")
    assert.are.equal("nil", r)
    assert.is_truthy(msg:find("invalid user id", 1, true), msg)
    r, msg = control(("addnope.frank.%s.ctl"):format(E.uuid()))
    assert.are.equal("nil", r)
    assert.is_truthy(msg:find("no VMess inbound 'nope'", 1, true), msg)
    assert.is_true(h:alive(srv))
  end))
end)
