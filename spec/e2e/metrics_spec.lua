-- Operations (design.md 7): the traffic counters named as v2ray names them,
-- luaray.stats, and luaray.metrics (GET /metrics) scraped by a real
-- Prometheus from Debian, checked with promtool; the HTTP endpoint's
-- answers to bad input.
local E = require "e2e.support"
local socket = require "socket"
local cjson = require "cjson"
local psignal = require "posix.signal"

local KiB, MiB = 1024, 1024 * 1024

local function hup(p) assert(psignal.kill(p.pid, psignal.SIGHUP)) end

-- GET path from the metrics port: code, head, body
local function get(port, path, headers)
  local s = assert(E.tcp_connect("127.0.0.1", port))
  local lines = { "Host: 127.0.0.1:" .. port }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local code, head, body = E.http_request(s, "GET", path, { headers = lines, timeout = 10 })
  s:close()
  return code, head, body
end

local function metrics(port, token)
  local code, _, body = get(port, "/metrics",
                            token and { ["Authorization"] = "Bearer " .. token } or nil)
  assert.are.equal(200, code, "GET /metrics")
  return body
end

-- the value of one exact series line ("name{labels}"), or nil
local function series(text, name)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #name + 1) == name .. " " then return tonumber(line:sub(#name + 2)) end
  end
end

local function user_series(text, dir, email)
  return series(text, ('v2ray_traffic_%s_bytes_total{dimension="user",target="%s"}'):format(dir, email))
end

-- everything a socket sends until it closes (bounded)
local function raw_exchange(port, data, timeout)
  local s = assert(E.tcp_connect("127.0.0.1", port))
  s:settimeout(timeout or 5)
  if data then s:send(data) end
  local got, err, part = s:receive("*a")
  s:close()
  return got or part or "", err
end

describe("traffic counters and /metrics (design.md 7)", function()
  local h = E.new("metrics")
  local ID, EMAIL = E.uuid(), "carol@e2e"
  local TOKEN = "t0ken-" .. tostring(math.random(1e9))
  local echo, srv, port, mport, cli, socks

  lazy_setup(h:guard(function()
    echo = h:echo_server()
    port, mport = E.free_port(), E.free_port()
    local text, o = E.luaray_server_script {
      port = port, users = { { id = ID, email = EMAIL } }, handshake_timeout = 1,
      extra = ([[
luaray.metrics { listen = "127.0.0.1:%d", token = %q }
luaray.on("close", function(ctx, s)
  if ctx.user and ctx.user.email then
    local e = ctx.user.email
    local q = luaray.stats.query("user>>>" .. e .. ">>>")
    local n = 0
    for _ in pairs(q) do n = n + 1 end
    print(("OBS\tclose\t%%s\t%%d\t%%d\t%%d\t%%d"):format(e, s.up, s.down,
      luaray.stats.get("user>>>" .. e .. ">>>traffic>>>uplink"), n))
  end
end)]]):format(mport, TOKEN) }
    o.ports[#o.ports + 1] = { "127.0.0.1", mport }
    srv = h:luaray_obs("luaray-server", text, o)
    socks = E.free_port()
    cli = h:v2ray("v2ray-client", E.v2ray_client_config { socks_port = socks, server_port = port, id = ID })
  end))
  lazy_teardown(function() h:cleanup() end)

  it("counts a user's, the inbound's and the outbound's payload both ways, as v2ray names them " ..
     "(within 10% of what moved), visible while the connection is open",
    h:guard(function()
      local before = metrics(mport, TOKEN)
      local up0 = user_series(before, "uplink", EMAIL) or 0
      local down0 = user_series(before, "downlink", EMAIL) or 0
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local ok, err = E.transfer_echo(s, MiB, { timeout = 30, close = false })
      assert.is_true(ok, err)
      -- still open: the counters already show it
      local t = metrics(mport, TOKEN)
      local up, down = user_series(t, "uplink", EMAIL) - up0, user_series(t, "downlink", EMAIL) - down0
      assert.is_true(up >= MiB and up <= MiB * 1.1, "uplink " .. up)
      assert.is_true(down >= MiB and down <= MiB * 1.1, "downlink " .. down)
      assert.is_true(series(t, 'luaray_connections_open{inbound="vmess-in"}') >= 1)
      for _, dim in ipairs({ 'dimension="inbound",target="vmess-in"', 'dimension="outbound",target="direct"' }) do
        local u = series(t, "v2ray_traffic_uplink_bytes_total{" .. dim .. "}")
        assert.is_true(u and u >= up, dim .. ": " .. tostring(u))
      end
      s:close()
      -- v2ray closes its side a little later: the close shows up
      local deadline = E.now() + 10
      repeat
        t = metrics(mport, TOKEN)
        if (series(t, 'luaray_connections_open{inbound="vmess-in"}') or 1) == 0 then break end
        E.sleep(0.1)
      until E.now() > deadline
      assert.are.equal(0, series(t, 'luaray_connections_open{inbound="vmess-in"}'))
      assert.is_true((series(t, 'luaray_connections_total{inbound="vmess-in",result="done"}') or 0) >= 1)
      -- luaray.stats in the close hook saw the same counters
      local obs = E.observations(E.read_file(srv.out), "close")
      assert.is_true(#obs >= 1, "a close hook line")
      local last = obs[#obs]
      assert.are.equal(EMAIL, last[2])
      assert.is_true(tonumber(last[5]) >= tonumber(last[3]) + up0, "stats.get uplink")
      assert.are.equal("2", last[6], "stats.query: uplink and downlink")
    end))

  it("counts handshake failures by reason and keeps every counter across SIGHUP; reloads by result",
    h:guard(function()
      -- a prober's garbage: refused silently, held to the 1 s handshake timeout
      local res = E.probe_many("127.0.0.1", port, { string.rep("\1", 64) }, { max_wait = 5 })
      assert.are.equal(1, #res)
      local t0 = metrics(mport, TOKEN)
      local fails = 0
      for name, v in t0:gmatch('(luaray_handshake_failures_total{inbound="vmess%-in",[^}]*}) (%d+)') do
        fails = fails + tonumber(v)
      end
      assert.is_true(fails >= 1, "handshake failures:\n" .. t0)
      local up = user_series(t0, "uplink", EMAIL)
      local reloads = series(t0, 'luaray_reloads_total{result="ok"}')
      hup(srv)
      assert(E.wait_log(srv, "reload: generation 2 serving"))
      local t1 = metrics(mport, TOKEN)
      assert.is_true(user_series(t1, "uplink", EMAIL) >= up, "kept across the reload")
      assert.are.equal(reloads + 1, series(t1, 'luaray_reloads_total{result="ok"}'))
      -- a config that does not load: counted as failed, the old one serves
      local good = E.read_file(srv.config)
      local f = assert(io.open(srv.config, "wb")); f:write(good .. "\nthis is not lua\n"); f:close()
      hup(srv)
      assert(E.wait_log(srv, "reload failed"))
      f = assert(io.open(srv.config, "wb")); f:write(good); f:close()
      local t2 = metrics(mport, TOKEN)
      assert.are.equal(1, series(t2, 'luaray_reloads_total{result="failed"}'))
      assert.is_true(user_series(t2, "uplink", EMAIL) >= up)
    end))

  it("SIGUSR1 lists each connection: user, client, destination, outbound, age and bytes so far",
    h:guard(function()
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local ok, err = E.transfer_echo(s, 64 * KiB, { timeout = 10, close = false })
      assert.is_true(ok, err)
      local before = E.count_matches(E.read_file(srv.log), "connections listed")
      assert(psignal.kill(srv.pid, psignal.SIGUSR1))
      local text = assert(E.wait_log(srv, "connections listed", before + 1))
      local pat = "conn %d+ relay vmess%-in 127%.0%.0%.1:%d+ " .. EMAIL:gsub("%p", "%%%0") ..
                  " tcp 127%.0%.0%.1:" .. echo.port .. " direct age=[%d.]+s up=(%d+) down=(%d+)"
      local up, down
      for u, d in text:gmatch(pat) do up, down = tonumber(u), tonumber(d) end
      assert.is_truthy(up, "a line for the open connection:\n" .. text:sub(-2000))
      assert.is_true(up >= 64 * KiB and down >= 64 * KiB, ("up %d down %d"):format(up, down))
      s:close()
    end))

  it("is clean under promtool check metrics", h:guard(function()
    local path = h:write("scrape.txt", metrics(mport, TOKEN))
    local rc, out = h:exec("promtool", { "/bin/sh", "-c", 'promtool check metrics < "$0" 2>&1', path })
    assert.are.equal(0, rc, out)
  end))

  it("asks for the bearer token: none or a wrong one gets 401, and HEAD, /, other paths and " ..
     "methods get their own answers", h:guard(function()
    local code, head = get(mport, "/metrics")
    assert.are.equal(401, code)
    assert.is_truthy(head:lower():find("www%-authenticate: bearer"))
    assert.are.equal(401, (get(mport, "/metrics", { ["Authorization"] = "Bearer " .. TOKEN .. "x" })))
    assert.are.equal(401, (get(mport, "/metrics", { ["Authorization"] = "Basic " .. TOKEN })))
    assert.are.equal(200, (get(mport, "/metrics?x=1", { ["authorization"] = "bearer " .. TOKEN })))
    assert.are.equal(404, (get(mport, "/nothing", { ["Authorization"] = "Bearer " .. TOKEN })))
    local reply = raw_exchange(mport, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert.is_truthy(reply:find("^HTTP/1.1 405"), reply)
    reply = raw_exchange(mport, "HEAD /metrics HTTP/1.1\r\nAuthorization: Bearer " .. TOKEN .. "\r\n\r\n")
    assert.is_truthy(reply:find("^HTTP/1.1 200"), reply)
    assert.is_nil(reply:find("v2ray_traffic", 1, true), "HEAD: no body")
  end))

  it("answers bad requests clearly and keeps serving: a head over 8 KiB (431), garbage (400), " ..
     "NUL bytes (400), and 100 idle connections do not keep a scraper out", h:guard(function()
    local reply = raw_exchange(mport, "GET /metrics HTTP/1.1\r\nX-Big: " .. string.rep("a", 9 * KiB) .. "\r\n\r\n")
    assert.is_truthy(reply:find("^HTTP/1.1 431"), reply:sub(1, 80))
    reply = raw_exchange(mport, "\22\3\1\0\1\1\0\0\0\r\n\r\n")
    assert.is_truthy(reply:find("^HTTP/1.1 400"), reply:sub(1, 80))
    reply = raw_exchange(mport, "GET /met\0rics HTTP/1.1\r\n\r\n")
    assert.is_truthy(reply:find("^HTTP/1.1 400"), reply:sub(1, 80))
    local idle = {}
    for i = 1, 100 do
      idle[i] = assert(E.tcp_connect("127.0.0.1", mport))
      idle[i]:send("GET /metr")
    end
    E.sleep(0.2)
    local code = get(mport, "/metrics", { ["Authorization"] = "Bearer " .. TOKEN })
    assert.are.equal(200, code)
    for _, s in ipairs(idle) do s:close() end
    assert.is_true(h:alive(srv))
  end))

  it("a real Prometheus scrapes it: up == 1 and the user's series can be queried",
    h:guard(function()
      -- traffic of its own (the test may run alone)
      local s = assert(E.socks5_connect("127.0.0.1", socks, "127.0.0.1", echo.port))
      local ok, err = E.transfer_echo(s, 256 * KiB, { timeout = 30 })
      assert.is_true(ok, err)
      local want = user_series(metrics(mport, TOKEN), "downlink", EMAIL)
      assert.is_true(want >= 256 * KiB)
      local wport = E.free_port()
      local cfg = h:write("prometheus.yml", ([[
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: luaray
    authorization:
      credentials: %s
    static_configs:
      - targets: ['127.0.0.1:%d']
]]):format(TOKEN, mport))
      h:spawn("prometheus", { "prometheus", "--config.file=" .. cfg,
                              "--storage.tsdb.path=" .. h:path("tsdb"),
                              "--web.listen-address=127.0.0.1:" .. wport },
              { ports = { wport }, timeout = 30 })
      local function query(q)
        local enc = q:gsub("[^%w]", function(ch) return ("%%%02X"):format(ch:byte()) end)
        local code, _, body = get(wport, "/api/v1/query?query=" .. enc)
        if code ~= 200 then return nil end
        local ok, doc = pcall(cjson.decode, body)
        if not ok or doc.status ~= "success" then return nil end
        return doc.data.result
      end
      local up, traffic
      local deadline = E.now() + 60
      repeat
        local r = query('up{job="luaray"}')
        up = r and r[1] and r[1].value[2]
        local t = query(('v2ray_traffic_downlink_bytes_total{dimension="user",target="%s"}'):format(EMAIL))
        traffic = t and t[1] and tonumber(t[1].value[2])
        if up == "1" and traffic and traffic >= want then break end
        E.sleep(0.5)
      until E.now() > deadline
      assert.are.equal("1", up, "up{job=luaray}")
      assert.is_true(traffic and traffic >= want,
                     ("the user's downlink in Prometheus: %s (luaray said %d)"):format(tostring(traffic), want))
    end))
end)

describe("a metrics address that cannot be used", function()
  local h = E.new("metrics_bad")
  lazy_teardown(function() h:cleanup() end)

  it("is refused with file:line at the start, and on a reload keeps the old listener serving",
    h:guard(function()
      local busy = assert(socket.bind("127.0.0.1", 0))
      local _, bport = busy:getsockname()
      local port, mport = E.free_port(), E.free_port()
      local base = E.luaray_server_script { port = port, users = { { id = E.uuid() } } }
      local cfg = h:write("bad.lua", base .. ("luaray.metrics { listen = \"127.0.0.1:%d\" }\n"):format(bport))
      local rc, out = h:exec("luaray-bad", { E.luaray_bin(), "-c", cfg }, { timeout = 10 })
      assert.are_not.equal(0, rc)
      assert.is_truthy(out:find("bad%.lua:%d+: metrics: cannot listen on 127%.0%.0%.1:" .. bport), out)
      -- the same address as an inbound: refused when the config is checked
      local clash = h:write("clash.lua", base .. ("luaray.metrics { listen = \"127.0.0.1:%d\" }\n"):format(port))
      rc, out = h:exec("luaray-clash", { E.luaray_bin(), "-t", "-c", clash }, { timeout = 10 })
      assert.are.equal(1, rc)
      assert.is_truthy(out:find("clash%.lua:%d+: metrics listen address", 1, false), out)
      -- running on mport; a reload asks for the busy port: the old one stays
      local text, o = E.luaray_server_script { port = port, users = { { id = E.uuid() } },
        extra = ("luaray.metrics { listen = \"127.0.0.1:%d\" }"):format(mport) }
      o.ports[#o.ports + 1] = { "127.0.0.1", mport }
      local srv = h:luaray_obs("luaray-server", text, o)
      local f = assert(io.open(srv.config, "wb"))
      f:write((text:gsub("127%.0%.0%.1:" .. mport, "127.0.0.1:" .. bport)))
      f:close()
      hup(srv)
      assert(E.wait_log(srv, "the old metrics listener stays"))
      assert.are.equal(200, (get(mport, "/metrics")))
      busy:close()
    end))
end)
