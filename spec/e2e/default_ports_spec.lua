-- The embedded default on ports of the operator's choice (issue
-- "Renovation", section 3): `luaray --ports VMESS,SOCKS,HTTP`, which
-- `make run PORTS="VMESS SOCKS HTTP"` passes on; its banner (UUID, link,
-- addresses) only once every listener is open; a busy port named as such,
-- with what to do about it, not as "default:5", and no banner.
-- Unlike spec/e2e/default_config_spec.lua it needs none of the fixed
-- ports 10086, 1080 and 8080: every port here is a free one.
local E = require "e2e.support"
local socket = require "socket"

local UUID_PAT = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

describe("the embedded default on other ports", function()
  local h = E.new("default_ports")
  lazy_teardown(function() h:cleanup() end)

  local function env()
    local e = {}
    if os.getenv("LURAY_ASAN") then e.ASAN_OPTIONS = "detect_leaks=1:abort_on_error=1" end
    return e
  end

  -- Waits until p's log has the whole banner -> the log text.
  local function banner_of(p)
    return assert(E.wait_log(p, "  http   127%.0%.0%.1:%d+\n", 1, 20))
  end

  -- What a started default printed and serves: the banner after every
  -- "listening on" line, the link and addresses of these ports, and a
  -- request through its HTTP and SOCKS5 proxies (through its own VMess
  -- server) reaching a server of this spec.
  local function check_serving(p, ports, text)
    local vm, so, ht = ports[1], ports[2], ports[3]
    local banner_at = text:find("luaray default configuration", 1, true)
    assert.truthy(banner_at, "no banner in:\n" .. text)
    for _, l in ipairs { ("inbound vmess%%-in %%(vmess%%) listening on 127%%.0%%.0%%.1:%d"):format(vm),
                         ("inbound socks%%-in %%(socks%%) listening on 127%%.0%%.0%%.1:%d"):format(so),
                         ("inbound http%%-in %%(http%%) listening on 127%%.0%%.0%%.1:%d"):format(ht) } do
      local at = text:find(l)
      assert.truthy(at, l .. " not logged:\n" .. text)
      assert.is_true(at < banner_at, "the banner came before the listeners were open:\n" .. text)
    end
    local uuid = text:match("user id:%s*(%S+)")
    assert.truthy(uuid and uuid:match(UUID_PAT), text)
    local t = assert(require("luaray.link").parse_vmess_link(text:match("vmess://%S+")))
    assert.equal(uuid, t.id)
    assert.equal(tostring(vm), tostring(t.port))
    for _, want in ipairs { ("vmess  127.0.0.1:%d\n"):format(vm), ("socks5 127.0.0.1:%d\n"):format(so),
                            ("http   127.0.0.1:%d\n"):format(ht) } do
      assert.truthy(text:find(want, 1, true), want .. " not in the banner:\n" .. text)
    end
    assert.falsy(text:find("10086", 1, true), "the fixed port is still announced:\n" .. text)
    local web = h:http_server()
    local s = assert(E.tcp_connect("127.0.0.1", ht, 5))
    local code, head, body = E.http_request(s, "GET", ("http://127.0.0.1:%d/data/1000/7"):format(web.port))
    assert.equal(200, code, tostring(head))
    assert.equal(E.pattern(1000, 7), body)
    local echo = h:echo_server()
    assert(E.check_socks_tcp("127.0.0.1", so, echo, 64 * 1024))
  end

  it("luaray --ports VMESS,SOCKS,HTTP runs the default there; the banner comes once they listen",
     h:guard(function()
    local ports = { E.free_port(), E.free_port(), E.free_port() }
    local p = h:spawn("ports", { E.luaray_bin(), "--ports", table.concat(ports, ",") },
                      { ports = ports, env = env(), keep_preload = true, timeout = 20 })
    p.luaray = true
    check_serving(p, ports, banner_of(p))
    h:stop_luaray(p)
  end))

  it("a busy port: no banner; the error names the port and the embedded default and says what to do",
     h:guard(function()
    local ports = { E.free_port(), E.free_port(), E.free_port() }
    local busy = assert(socket.tcp4())
    assert(busy:bind("127.0.0.1", ports[2]))
    assert(busy:listen(4))
    local code, out = h:exec("busy", { E.luaray_bin(), "--ports", table.concat(ports, ",") },
                             { keep_preload = true, timeout = 20 })
    busy:close()
    assert.equal(1, code, out)
    assert.truthy(out:find(("luaray: embedded default config: cannot listen on 127.0.0.1:%d: Address already in use")
                           :format(ports[2]), 1, true), out)
    assert.truthy(out:find("--ports VMESS,SOCKS,HTTP", 1, true), out)
    assert.truthy(out:find("-c FILE", 1, true), out)
    assert.falsy(out:find("default:%d"), out)
    assert.falsy(out:find("user id", 1, true), "a banner for a default that never ran:\n" .. out)
    assert.falsy(out:find("vmess://", 1, true), "a banner for a default that never ran:\n" .. out)
    assert.is_true(E.port_bindable("127.0.0.1", ports[1]), "a listener stayed open")
    assert.is_true(E.port_bindable("127.0.0.1", ports[3]), "a listener stayed open")
  end))

  it("make run PORTS=\"VMESS SOCKS HTTP\" runs the default on those ports", h:guard(function()
    local ports = { E.free_port(), E.free_port(), E.free_port() }
    local build = os.getenv("LURAY_BUILD") or "build"
    -- -o all: run what is built (the build is not this spec's business)
    local p = h:spawn("make-run", { "make", "-s", "--no-print-directory", "-o", "all", "run",
                                    "BUILD=" .. build, "PORTS=" .. table.concat(ports, " ") },
                      { ports = ports, env = env(), keep_preload = true, timeout = 30 })
    p.luaray = true  -- its log is luaray's: scanned for sanitizer reports
    check_serving(p, ports, banner_of(p))
    -- make and luaray are one process group: the harness's SIGTERM reaches
    -- both; luaray stops as usual, make ends on the signal
    local status, code = h:stop(p, 15)
    assert.is_true(status == "exited" or (status == "killed" and code == 15), status .. " " .. tostring(code))
    assert.truthy(E.read_file(p.log):find("%[info%] stopped\n"), "luaray did not stop cleanly:\n" .. h:tail(p))
    for _, port in ipairs(ports) do
      assert.is_true(E.port_bindable("127.0.0.1", port), ("127.0.0.1:%d still bound"):format(port))
    end
  end))
end)
