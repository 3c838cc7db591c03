-- examples/v2board.lua end to end: a panel node in Lua against a mock
-- V2board / Xboard panel (tools/uniproxy_panel.py, written from the
-- UniProxy API description), pull and push intervals of 1 s.
--
--   * the panel's users serve (luaray clients with their UUIDs), a UUID it
--     does not list is refused;
--   * the traffic pushed per user id equals what moved (within 1%);
--   * users appear and disappear as the panel's list changes, while another
--     user's open connection goes on;
--   * speed_limit: a download through a 1 Mbit/s user takes at least about
--     what the rate allows (a loose lower bound); device_limit 1: a second
--     source address (a v2ray client sending from 127.0.0.2) is refused
--     while the first has a connection, and /alive lists the first;
--   * the panel stopped for a few seconds and started again: the traffic
--     of meanwhile is pushed after, none lost, none twice.
--
-- Every wait is bounded by a count of events (pushes, log lines) with a
-- generous deadline.
local E = require "e2e.support"
local cjson = require "cjson"

local KiB = 1024
local TOKEN, NODE = "e2e-token", "7"
local RATE = 1000000 / 8 -- speed_limit 1 (Mbit/s) in bytes/s

local function python()
  local f = io.open("/usr/bin/python3")
  if f then f:close(); return "/usr/bin/python3" end
  return "python3"
end

describe("v2board panel node (examples/v2board.lua)", function()
  local h = E.new("panel")
  local U = { E.uuid(), E.uuid(), E.uuid(), E.uuid(), E.uuid() }
  local echo, dir, panel_port, node_port, node, panel
  local socks = {}          -- user index -> SOCKS port of its luaray client
  local moved = {}          -- user id -> { up, down } moved through the node

  local function write_users(list)
    local f = assert(io.open(dir .. "/users.json.tmp", "wb"))
    f:write(cjson.encode(list))
    f:close()
    assert(os.rename(dir .. "/users.json.tmp", dir .. "/users.json"))
  end

  local function start_panel()
    panel = h:spawn("panel", { python(), E.tools .. "/uniproxy_panel.py", "--port", tostring(panel_port),
                               "--dir", dir, "--token", TOKEN, "--node-id", NODE,
                               "--server-port", tostring(node_port) },
                    { ports = { panel_port }, timeout = 15 })
  end

  -- Sums of every push so far: { [id] = { up, down } }, and the count.
  local function pushed()
    local sums, n = {}, 0
    for line in E.read_file(dir .. "/push.jsonl"):gmatch("[^\n]+") do
      n = n + 1
      for id, v in pairs(cjson.decode(line)) do
        local s = sums[id] or { 0, 0 }
        sums[id] = s
        s[1], s[2] = s[1] + v[1], s[2] + v[2]
      end
    end
    return sums, n
  end

  local function add_moved(id, up, down)
    local m = moved[id] or { 0, 0 }
    moved[id] = m
    m[1], m[2] = m[1] + up, m[2] + down
  end

  -- The node's pulls of the config so far (one a second): its clock.
  local function pulls()
    return E.count_matches(E.read_file(dir .. "/requests.log"), "GET /api/v1/server/UniProxy/config")
  end

  -- Waits until the pushes for `id` reach what moved (less 1%), then for
  -- three more pull cycles (so a push that would count twice had its
  -- chance), and checks they are within 1% (and 200 bytes) of it.
  local function assert_pushed(id, timeout)
    local want = moved[id]
    local deadline = E.now() + (timeout or 30)
    local got
    repeat
      E.sleep(0.2)
      got = pushed()[id] or { 0, 0 }
    until (got[1] >= want[1] * 0.99 and got[2] >= want[2] * 0.99) or E.now() > deadline
    local n = pulls()
    deadline = E.now() + 20
    repeat E.sleep(0.2) until pulls() >= n + 3 or E.now() > deadline
    got = pushed()[id] or { 0, 0 }
    for i, dir_name in ipairs { "upload", "download" } do
      local tol = want[i] * 0.01 + 200
      assert.is_true(math.abs(got[i] - want[i]) <= tol,
        ("user %s %s: pushed %d, moved %d"):format(id, dir_name, got[i], want[i]))
    end
  end

  local function client(i)
    if socks[i] then return socks[i] end
    socks[i] = E.free_port()
    local text, o = E.luaray_client_script { socks_port = socks[i], server_port = node_port, id = U[i],
                                             security = "aes-128-gcm" }
    h:luaray("client-" .. i, text, o)
    return socks[i]
  end

  -- An echo of n bytes through user i's client -> true, or false, err.
  local function echo_as(i, n, opts)
    local s, err = E.socks5_connect("127.0.0.1", client(i), "127.0.0.1", echo.port, nil, nil, 5)
    if not s then return false, "socks5: " .. tostring(err) end
    return E.transfer_echo(s, n, opts or { timeout = 10 })
  end

  -- Does user i get through within a few tries (users change asynchronously)?
  local function works(i, tries)
    for _ = 1, tries or 1 do
      if echo_as(i, 512) then return true end
      E.sleep(0.5)
    end
    return false
  end

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    dir = h:tmpdir() .. "/panel"
    assert(require("posix.sys.stat").mkdir(dir, 448))
    panel_port, node_port = E.free_port(), E.free_port()
    write_users {
      { id = 1, uuid = U[1], speed_limit = 0, device_limit = 0 },
      { id = 2, uuid = U[2], speed_limit = 0, device_limit = 0 },
      { id = 3, uuid = U[3], speed_limit = 1, device_limit = 0 },
      { id = 4, uuid = U[4], speed_limit = 0, device_limit = 1 },
    }
    start_panel()
    node = h:luaray("node", E.read_file("examples/v2board.lua"), {
      ports = { node_port },
      env = { V2BOARD_API = ("http://127.0.0.1:%d"):format(panel_port), V2BOARD_TOKEN = TOKEN,
              V2BOARD_NODE_ID = NODE, V2BOARD_LISTEN = ("127.0.0.1:%d"):format(node_port),
              V2BOARD_ALLOW_PRIVATE = "1" } })
    assert(E.wait_log(node, "v2board: users: 4 added, 0 removed", 1, 30))
  end))

  lazy_teardown(function() h:cleanup() end)

  it("the panel's users serve; a UUID it does not list is refused", h:guard(function()
    assert.is_true(works(1, 10), "user 1 does not get through")
    add_moved("1", 512, 512)
    assert.is_false(works(5), "user 5 (not in the panel) got through")
    local text = E.read_file(node.log)
    assert.truthy(text:find("1@v2board", 1, true), "no access line names 1@v2board")
    assert.falsy(text:find(U[1], 1, true), "the node logged a full UUID")
  end))

  it("pushes the traffic each user moved (within 1%)", h:guard(function()
    assert.is_true(echo_as(2, 300 * KiB))
    add_moved("2", 300 * KiB, 300 * KiB)
    local s = assert(E.socks5_connect("127.0.0.1", client(2), "127.0.0.1", echo.sink_port, nil, nil, 5))
    assert(E.sink_send(s, 200 * KiB))
    add_moved("2", 200 * KiB, 0)
    s = assert(E.socks5_connect("127.0.0.1", client(2), "127.0.0.1", echo.source_port, nil, nil, 5))
    assert(E.source_read(s, 500 * KiB))
    add_moved("2", 0, 500 * KiB)
    assert_pushed("2")
    assert_pushed("1")
  end))

  it("users appear and disappear with the panel's list; other connections go on", h:guard(function()
    -- user 1 holds a connection open across the change
    local held = assert(E.socks5_connect("127.0.0.1", client(1), "127.0.0.1", echo.port, nil, nil, 5))
    assert(E.transfer_echo(held, 8 * KiB, { close = false, timeout = 10 }))
    add_moved("1", 8 * KiB, 8 * KiB)
    local nlog = E.count_matches(E.read_file(node.log), "v2board: users: 1 added, 1 removed")
    write_users {
      { id = 1, uuid = U[1], speed_limit = 0, device_limit = 0 },
      { id = 3, uuid = U[3], speed_limit = 1, device_limit = 0 },
      { id = 4, uuid = U[4], speed_limit = 0, device_limit = 1 },
      { id = 5, uuid = U[5], speed_limit = 0, device_limit = 0 },
    }
    assert(E.wait_log(node, "v2board: users: 1 added, 1 removed", nlog + 1, 30))
    assert.is_true(works(5, 10), "user 5 (added) does not get through")
    add_moved("5", 512, 512)
    local refused = false
    for _ = 1, 10 do
      if not echo_as(2, 512) then refused = true; break end
      add_moved("2", 512, 512)
      E.sleep(0.5)
    end
    assert.is_true(refused, "user 2 (removed) still gets through")
    -- the held connection of user 1 was not touched
    assert(E.transfer_echo(held, 8 * KiB, { timeout = 10 }))
    add_moved("1", 8 * KiB, 8 * KiB)
    assert_pushed("5")
  end))

  it("speed_limit becomes a rate: 1 Mbit/s holds a download back", h:guard(function()
    local n = 500 * 1000
    local s = assert(E.socks5_connect("127.0.0.1", client(3), "127.0.0.1", echo.source_port, nil, nil, 5))
    local t0 = E.now()
    assert(E.source_read(s, n, { timeout = 60 }))
    local took = E.now() - t0
    add_moved("3", 0, n)
    -- a bucket of one second's bytes, then the rate: >= (n - RATE) / RATE
    -- seconds; half of that is the (loose) bound
    local floor = (n - RATE) / RATE * 0.5
    assert.is_true(took >= floor, ("%d bytes in %.2f s at a %d B/s limit"):format(n, took, RATE))
    assert_pushed("3")
  end))

  it("device_limit 1: a second source address is refused; /alive lists the first", h:guard(function()
    local a_port, b_port = E.free_port(), E.free_port()
    h:v2ray("v2ray-a", E.v2ray_client_config { socks_port = a_port, server_port = node_port, id = U[4] })
    local cfg = E.v2ray_client_config { socks_port = b_port, server_port = node_port, id = U[4] }
    cfg.outbounds[1].sendThrough = "127.0.0.2"
    h:v2ray("v2ray-b", cfg)
    local a = assert(E.socks5_connect("127.0.0.1", a_port, "127.0.0.1", echo.port, nil, nil, 5))
    assert(E.transfer_echo(a, 4 * KiB, { close = false, timeout = 10 }))
    local nref = E.count_matches(E.read_file(node.log), "too many source addresses")
    local b = E.socks5_connect("127.0.0.1", b_port, "127.0.0.1", echo.port, nil, nil, 5)
    local ok = b and E.transfer_echo(b, 512, { timeout = 3 })
    assert.is_falsy(ok, "127.0.0.2 got through while 127.0.0.1 had a connection")
    assert(E.wait_log(node, "too many source addresses", nref + 1, 10))
    -- the alive push names user 4 at 127.0.0.1
    local deadline, seen = E.now() + 20, false
    repeat
      E.sleep(0.3)
      for line in E.read_file(dir .. "/alive.jsonl"):gmatch("[^\n]+") do
        local ips = cjson.decode(line)["4"]
        if ips and #ips == 1 and ips[1] == "127.0.0.1" then seen = true end
      end
    until seen or E.now() > deadline
    assert.is_true(seen, "no /alive push listed user 4 at 127.0.0.1")
    a:close()
  end))

  it("the panel away for a few seconds: the traffic of meanwhile is pushed after, none lost",
     h:guard(function()
    -- everything so far has been pushed
    assert_pushed("1")
    h:stop(panel)
    local nfail = E.count_matches(E.read_file(node.log), "kept for the next push")
    assert.is_true(echo_as(1, 400 * KiB))
    add_moved("1", 400 * KiB, 400 * KiB)
    -- the node tries, fails, keeps it (logged once a minute at most)
    assert(E.wait_log(node, "push: [^\n]*kept for the next push", nfail + 1, 20))
    E.sleep(2)
    start_panel()
    assert_pushed("1", 40)
    assert.is_true(h:alive(node))
    -- and the users still serve (the panel came back with the same list)
    assert.is_true(works(1, 5))
    add_moved("1", 512, 512)
  end))
end)
