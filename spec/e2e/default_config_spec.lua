-- The embedded default (design.md 1; issue "The luaray daemon", cell 6):
-- `luaray` with no -c prints a fresh UUID and its share link, and listens on
-- 127.0.0.1:10086 (VMess), 1080 (SOCKS5) and 8080 (HTTP), the proxies
-- routing into its own VMess server. Checked with curl against an HTTP
-- server this spec starts on loopback, bodies compared byte for byte.
local E = require "e2e.support"

local MiB = 1024 * 1024
local PORTS = { 10086, 1080, 8080 }

-- curl must use exactly the proxy it is given
local CURL_ENV = { http_proxy = false, https_proxy = false, HTTP_PROXY = false, HTTPS_PROXY = false,
                   all_proxy = false, ALL_PROXY = false, no_proxy = false, NO_PROXY = false }

describe("the embedded default config (luaray with no -c)", function()
  local h = E.new("default_config")
  local http, d, uuid, out

  lazy_setup(h:guard(function()
    for _, port in ipairs(PORTS) do
      if not E.port_bindable("127.0.0.1", port) then
        error(("127.0.0.1:%d is busy on this machine: the embedded default needs 10086, 1080 and " ..
               "8080 free (see `ss -ltnp 'sport = :%d'`), so this spec cannot run"):format(port, port), 0)
      end
    end
    http = h:http_server { ipv6 = E.has_ipv6() }
    d = h:spawn("luaray-default", { E.luaray_bin() }, { ports = PORTS, keep_preload = true })
    d.luaray = true
    -- the announcement is written (in one write) once the listeners are open
    for _ = 1, 200 do
      out = E.read_file(d.log)
      uuid = out:match("user id:%s*(%x+%-%x+%-%x+%-%x+%-%x+)")
      if uuid then break end
      E.sleep(0.01)
    end
  end))

  lazy_teardown(function() h:cleanup() end)

  local function curl(name, args)
    local file = h:path(name .. ".body")
    local argv = { "curl", "-sS", "--max-time", "15", "-o", file, "-w", "%{http_code}" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, log = h:exec(name, argv, { env = CURL_ENV, timeout = 20 })
    local f = io.open(file, "rb")
    local body = f and f:read("*a")
    if f then f:close() end
    return code, log, body
  end

  local function url(host, n, seed)
    return ("http://%s:%d/data/%d/%d"):format(host, http.port, n, seed)
  end

  it("prints its user UUID, a share link for it and the listening addresses", h:guard(function()
    assert.truthy(uuid, "no 'user id: UUID' line in:\n" .. out)
    assert.truthy(uuid:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"), uuid)
    local link = out:match("(vmess://%S+)")
    assert.truthy(link, "no vmess:// link in:\n" .. out)
    local t = assert(require("luaray.link").parse_vmess_link(link))
    assert.equal(uuid, t.id)
    assert.equal("10086", tostring(t.port))
    assert.equal("127.0.0.1", t.add)
    for _, want in ipairs { "127.0.0.1:10086", "127.0.0.1:1080", "127.0.0.1:8080" } do
      assert.truthy(out:find(want, 1, true), want .. " not announced in:\n" .. out)
    end
  end))

  it("curl -x socks5h://127.0.0.1:1080: GET of 1 MiB, body compared", h:guard(function()
    local code, log, body = curl("curl-socks5h", { "-x", "socks5h://127.0.0.1:1080", url("127.0.0.1", MiB, 41) })
    assert.equal(0, code, log)
    assert.equal("200", log:match("(%d%d%d)%s*$"), log)
    assert.is_true(body == E.pattern(MiB, 41), ("the body differs (%d bytes)"):format(#(body or "")))
    assert.is_true(h:alive(d), "luaray died")
  end))

  it("curl -x socks5h://127.0.0.1:1080 with a host name (localhost, resolved by luaray)", h:guard(function()
    local code, log, body = curl("curl-socks5h-name", { "-x", "socks5h://127.0.0.1:1080", url("localhost", MiB, 42) })
    assert.equal(0, code, log)
    assert.equal("200", log:match("(%d%d%d)%s*$"), log)
    assert.is_true(body == E.pattern(MiB, 42), ("the body differs (%d bytes)"):format(#(body or "")))
  end))

  it("curl -x http://127.0.0.1:8080 (absolute-URI GET): 1 MiB body compared", h:guard(function()
    local code, log, body = curl("curl-http", { "-x", "http://127.0.0.1:8080", url("127.0.0.1", MiB, 43) })
    assert.equal(0, code, log)
    assert.equal("200", log:match("(%d%d%d)%s*$"), log)
    assert.is_true(body == E.pattern(MiB, 43), ("the body differs (%d bytes)"):format(#(body or "")))
  end))

  it("curl -p -x http://127.0.0.1:8080 (CONNECT tunnel): 1 MiB body compared", h:guard(function()
    local code, log, body = curl("curl-connect", { "-p", "-x", "http://127.0.0.1:8080", url("127.0.0.1", MiB, 44) })
    assert.equal(0, code, log)
    assert.equal("200", log:match("(%d%d%d)%s*$"), log)
    assert.is_true(body == E.pattern(MiB, 44), ("the body differs (%d bytes)"):format(#(body or "")))
  end))

  it("its VMess server on 10086 serves a v2ray 4.34 client using the printed UUID", h:guard(function()
    assert.truthy(uuid, "no UUID printed")
    local echo = h:echo_server()
    local socks = E.free_port()
    local c = h:v2ray("v2ray-client", E.v2ray_client_config {
      socks_port = socks, server_port = 10086, id = uuid, security = "aes-128-gcm" })
    local ok, err = E.check_socks_tcp("127.0.0.1", socks, echo, MiB)
    assert.is_true(ok, err)
    h:stop(c)
    h:stop(echo.proc)
  end))

  it("stops on SIGTERM with exit status 0 and frees its ports", h:guard(function()
    local status, code = h:stop(d)
    assert.equal("exited", status)
    assert.equal(0, code)
    for _, port in ipairs(PORTS) do
      assert.is_true(E.port_bindable("127.0.0.1", port), ("127.0.0.1:%d still bound"):format(port))
    end
  end))
end)
