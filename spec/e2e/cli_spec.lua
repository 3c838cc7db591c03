-- The luaray command line (design.md 1; issue "The luaray daemon", cell 7):
-- -t -c FILE, link -c FILE [-H HOST], uuid, version; and (issue
-- "Renovation", section 3) what a missing option argument says, --help
-- with the signals, version with the commit and the libraries, links for
-- wildcard listeners and several inbounds, --print-default, an access log
-- that cannot be opened and open proxies at -t.
local E = require "e2e.support"
local link = require "luaray.link"

local UUID_PAT = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

describe("luaray command line", function()
  local h = E.new("cli")
  lazy_teardown(function() h:cleanup() end)

  local function run(name, args, opts)
    local argv = { E.luaray_bin() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    opts = opts or {}
    opts.keep_preload = true
    return h:exec(name, argv, opts)
  end

  local ID1, ID2 = E.uuid(), E.uuid()
  local PORT = E.free_port()  -- never opened: -t and link do not listen

  local GOOD = ([[
-- a server and a client in one file
luaray.log { level = "warn", access = false }
luaray.user { id = "%s", email = "alice@example.com", alter_id = 4 }
luaray.user { id = "%s", email = "bob@example.com" }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:31087", udp = true }
luaray.outbound "direct" { type = "direct" }
luaray.outbound "block" { type = "blackhole" }
luaray.route { domain_suffix = { "ads.example" }, to = "block" }
luaray.route { default = "direct" }
]]):format(ID1, ID2, PORT)

  it("-t -c GOOD exits 0 and prints 'configuration OK'", h:guard(function()
    local file = h:write("good.lua", GOOD)
    local code, out = run("check-good", { "-t", "-c", file })
    assert.equal(0, code, out)
    assert.truthy(out:find("configuration OK", 1, true), out)
    assert.is_true(E.port_bindable("127.0.0.1", PORT), "-t opened the listener")
  end))

  -- (file text, line the error must name)
  local bad = {
    { "syntax error", 'luaray.log { level = "info" }\nluaray.user { id = "%s" \nluaray.inbound "x" { }\n', 3 },
    { "unknown key", 'luaray.user { id = "%s" }\n\nluaray.inbound "v" { type = "vmess", listen = "127.0.0.1:1", colour = 1 }\n' ..
                     'luaray.outbound "d" { type = "direct" }\n', 3 },
    { "bad UUID", 'luaray.log { level = "info" }\nluaray.user { id = "not-a-uuid" }\n', 2 },
    { "route to an unknown outbound", 'luaray.user { id = "%s" }\nluaray.inbound "v" { type = "vmess", listen = "127.0.0.1:1" }\n' ..
                     'luaray.outbound "d" { type = "direct" }\nluaray.route { port = "80", to = "nowhere" }\n', 4 },
    { "padding without masking", 'luaray.inbound "s" { type = "socks", listen = "127.0.0.1:1" }\n' ..
                     'luaray.outbound "u" { type = "vmess", server = "127.0.0.1:2", id = "%s",\n' ..
                     '  masking = false, padding = true }\n', 2 },  -- the line the declaration starts on
  }
  for i, b in ipairs(bad) do
    it(("-t -c BAD (%s) exits 1 with file:%d:"):format(b[1], b[3]), h:guard(function()
      local file = h:write(("bad%d.lua"):format(i), b[2]:format(ID1))
      local code, out = run("check-bad", { "-t", "-c", file })
      assert.equal(1, code, out)
      assert.truthy(out:find(file .. ":" .. b[3] .. ":", 1, true),
        ("expected %s:%d: in:\n%s"):format(file, b[3], out))
      assert.falsy(out:find("configuration OK", 1, true), out)
    end))
  end

  it("-t -c MISSING exits 1 naming the file", h:guard(function()
    local file = h:path("does-not-exist.lua")
    local code, out = run("check-missing", { "-t", "-c", file })
    assert.equal(1, code, out)
    assert.truthy(out:find(file, 1, true), out)
  end))

  it("link -c FILE prints one vmess:// link per user that decodes to its id and port", h:guard(function()
    local file = h:write("link.lua", GOOD)
    local code, out = run("link", { "link", "-c", file })
    assert.equal(0, code, out)
    local links = {}
    for l in out:gmatch("vmess://%S+") do links[#links + 1] = l end
    assert.equal(2, #links, out)
    local want = { { id = ID1, aid = "4", ps = "alice@example.com" }, { id = ID2, aid = "0", ps = "bob@example.com" } }
    for i, l in ipairs(links) do
      local t, err = link.parse_vmess_link(l)
      assert.truthy(t, err)
      assert.equal(want[i].id, t.id)
      assert.equal(tostring(PORT), tostring(t.port))
      assert.equal("127.0.0.1", t.add)
      assert.equal(want[i].aid, tostring(t.aid))
      assert.equal(want[i].ps, t.ps)
    end
  end))

  it("link -c FILE -H HOST puts HOST in the links", h:guard(function()
    local file = h:write("link-h.lua", GOOD)
    local code, out = run("link-host", { "link", "-c", file, "-H", "vpn.example.net" })
    assert.equal(0, code, out)
    local l = out:match("vmess://%S+")
    local t = assert(link.parse_vmess_link(l))
    assert.equal("vpn.example.net", t.add)
    assert.equal(ID1, t.id)
  end))

  it("link writes each inbound's transport and TLS into its links (design.md 6)", h:guard(function()
    local code, out = run("link-transports", { "link", "-c", "spec/lua/fixtures/design_transports.lua",
                                               "-H", "vpn.example.net" })
    assert.equal(0, code, out)
    local got = {}
    for l in out:gmatch("vmess://%S+") do
      local t = assert(link.parse_vmess_link(l))
      got[#got + 1] = { t.ps, t.port, t.net, t.type, t.host, t.path, t.tls, t.sni, t.alpn }
    end
    assert.same({
      { "alice@example.com (vmess-wss)", "443", "ws", "none", "", "/ray?ed=2048", "tls", "vpn.example.net", "http/1.1" },
      { "alice@example.com (vmess-ws)", "10000", "ws", "none", "", "/ray", "", "", "" },
      { "alice@example.com (vmess-pp)", "10001", "tcp", "none", "", "", "", "", "" },
    }, got)
  end))

  it("link -c BAD exits 1 with file:line:", h:guard(function()
    local file = h:write("link-bad.lua", 'luaray.log { level = "loud" }\n')
    local code, out = run("link-bad", { "link", "-c", file })
    assert.equal(1, code, out)
    assert.truthy(out:find(file .. ":1:", 1, true), out)
  end))

  it("uuid prints a fresh UUID each time", h:guard(function()
    local code1, out1 = run("uuid", { "uuid" })
    local code2, out2 = run("uuid", { "uuid" })
    assert.equal(0, code1, out1)
    assert.equal(0, code2, out2)
    out1, out2 = out1:gsub("%s+$", ""), out2:gsub("%s+$", "")
    assert.truthy(out1:match(UUID_PAT), out1)
    assert.truthy(out2:match(UUID_PAT), out2)
    assert.are_not.equal(out1, out2)
  end))

  it("version prints 'luaray X.Y.Z'", h:guard(function()
    local code, out = run("version", { "version" })
    assert.equal(0, code, out)
    assert.truthy(out:match("^luaray %d+%.%d+%.%d+"), out)
  end))

  it("-t without -c is a usage error", h:guard(function()
    local code, out = run("usage", { "-t" })
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("-c", 1, true), out)
  end))

  -- (arguments, what the message must say)
  local missing = {
    { { "-c" }, "option -c needs a config file" },
    { { "-t", "-c" }, "option -c needs a config file" },
    { { "link", "-c", "x.lua", "-H" }, "option -H needs the host" },
    { { "--ports" }, "option --ports needs VMESS,SOCKS,HTTP" },
  }
  for _, m in ipairs(missing) do
    local args = table.concat(m[1], " ")
    it(("'luaray %s' says what is missing and exits 2"):format(args), h:guard(function()
      local code, out = run("missing-arg", m[1])
      assert.equal(2, code, out)
      assert.truthy(out:find("luaray: " .. m[2], 1, true), out)
      assert.truthy(out:find("--help", 1, true), "no hint at --help:\n" .. out)
      assert.falsy(out:find("unknown argument", 1, true), out)
    end))
  end

  it("--help and -h: usage, commands, options and the signals; exit 0", h:guard(function()
    for _, flag in ipairs { "--help", "-h" } do
      local code, out = run("help", { flag })
      assert.equal(0, code, out)
      for _, want in ipairs { "usage: luaray", "-t -c FILE", "link -c FILE [-H HOST]", "uuid",
                              "version", "--ports", "--print-default" } do
        assert.truthy(out:find(want, 1, true), ("%s: no %q in:\n%s"):format(flag, want, out))
      end
      -- each signal on a line of its own, with what it does
      for _, sig in ipairs { { "HUP", "reload" }, { "TERM, INT", "stop" }, { "USR1", "connection" } } do
        local line = out:match("\n%s*" .. sig[1]:gsub("%p", "%%%0") .. "%s+([^\n]+)")
        assert.truthy(line and line:find(sig[2], 1, true),
                      ("%s: signal %s (%s) not listed in:\n%s"):format(flag, sig[1], sig[2], out))
      end
    end
  end))

  it("version: the commit built and the OpenSSL, LuaJIT, libev, libsodium and c-ares versions",
     h:guard(function()
    local code, out = run("version-libs", { "version" })
    assert.equal(0, code, out)
    local commit = out:match("^luaray %d+%.%d+%.%d+ %(commit ([%w%.%-]+)%)\n")
    assert.truthy(commit, "first line is not 'luaray X.Y.Z (commit C)':\n" .. out)
    -- in a git checkout it names a commit of this repository
    local root = (os.getenv("LURAY_BUILD") or "build"):match("^(.*)/build[^/]*$") or "."
    local git_ok = os.execute(("git -C '%s' rev-parse --git-dir >/dev/null 2>&1"):format(root))
    if git_ok == 0 or git_ok == true then
      local hash = commit:match("^(%x+)") or commit:match("%-g(%x+)")
      assert.truthy(hash and #hash >= 7, "no commit hash in " .. commit)
      local known = os.execute(("git -C '%s' cat-file -e '%s^{commit}' 2>/dev/null"):format(root, hash))
      assert.is_true(known == 0 or known == true, hash .. " is no commit of " .. root)
    end
    for _, lib in ipairs { "OpenSSL %d+%.%d+", "LuaJIT %d+%.%d+", "libev %d+%.%d+",
                           "libsodium %d+%.%d+", "c%-ares %d+%.%d+" } do
      assert.truthy(out:find("\n%s*" .. lib), ("no %q line in:\n%s"):format(lib, out))
    end
    -- the LuaJIT line is the runtime's own (this spec runs on the same one)
    assert.truthy(out:find(jit.version, 1, true), jit.version .. " not in:\n" .. out)
  end))

  -- a VMess inbound on a wildcard address: the link needs -H
  for _, wild in ipairs { { "0.0.0.0", "0.0.0.0" }, { "[::]", "[::]" } } do
    it(("link on a %s listener without -H refuses, naming the inbound; with -H it works"):format(wild[1]),
       h:guard(function()
      local file = h:write("link-wild.lua", ([[
luaray.user { id = "%s", email = "alice@example.com" }
luaray.inbound "public-in" { type = "vmess", listen = "%s:%d" }
luaray.outbound "direct" { type = "direct" }
]]):format(ID1, wild[1], PORT))
      local code, out = run("link-wild", { "link", "-c", file })
      assert.equal(1, code, out)
      assert.falsy(out:find("vmess://", 1, true), "a link was printed:\n" .. out)
      assert.truthy(out:find(file .. ":2: inbound 'public-in' listens on " .. wild[2], 1, true), out)
      assert.truthy(out:find("-H HOST", 1, true), out)
      code, out = run("link-wild-h", { "link", "-c", file, "-H", "vpn.example.net" })
      assert.equal(0, code, out)
      local t = assert(link.parse_vmess_link(out:match("vmess://%S+")))
      assert.equal("vpn.example.net", t.add)
      assert.equal(tostring(PORT), tostring(t.port))
    end))
  end

  it("link with several VMess inbounds: every link has its own name, 'email (inbound)'", h:guard(function()
    local file = h:write("link-multi.lua", ([[
luaray.user { id = "%s", email = "alice@example.com" }
luaray.user { id = "%s", email = "bob@example.com" }
luaray.inbound "vmess-a" { type = "vmess", listen = "127.0.0.1:%d" }
luaray.inbound "vmess-b" { type = "vmess", listen = "127.0.0.1:%d", users = { "alice@example.com" } }
luaray.outbound "direct" { type = "direct" }
]]):format(ID1, ID2, PORT, PORT + 1))
    local code, out = run("link-multi", { "link", "-c", file })
    assert.equal(0, code, out)
    local got, names = {}, {}
    for l in out:gmatch("vmess://%S+") do
      local t = assert(link.parse_vmess_link(l))
      assert.is_nil(names[t.ps], "two links named " .. tostring(t.ps) .. ":\n" .. out)
      names[t.ps] = true
      got[#got + 1] = { t.ps, t.id, tostring(t.port) }
    end
    assert.same({ { "alice@example.com (vmess-a)", ID1, tostring(PORT) },
                  { "bob@example.com (vmess-a)", ID2, tostring(PORT) },
                  { "alice@example.com (vmess-b)", ID1, tostring(PORT + 1) } }, got)
  end))

  it("--print-default prints the embedded default, which -t accepts; --ports moves its ports",
     h:guard(function()
    local code, out = run("print-default", { "--print-default" })
    assert.equal(0, code, out)
    for _, want in ipairs { '"127.0.0.1:10086"', '"127.0.0.1:1080"', '"127.0.0.1:8080"',
                            'type = "vmess"', 'type = "socks"', 'type = "http"' } do
      assert.truthy(out:find(want, 1, true), want .. " not in:\n" .. out)
    end
    local id = out:match('luaray%.user { id = "([%x%-]+)"')
    assert.truthy(id and id:match(UUID_PAT), "no fresh UUID in:\n" .. out)
    local file = h:write("printed-default.lua", out)
    code, out = run("check-printed", { "-t", "-c", file })
    assert.equal(0, code, out)
    assert.truthy(out:find("configuration OK", 1, true), out)
    local p1, p2, p3 = E.free_port(), E.free_port(), E.free_port()
    code, out = run("print-default-ports", { "--ports", ("%d,%d,%d"):format(p1, p2, p3), "--print-default" })
    assert.equal(0, code, out)
    for _, p in ipairs { p1, p2, p3 } do
      assert.truthy(out:find(('"127.0.0.1:%d"'):format(p), 1, true), p .. " not in:\n" .. out)
    end
    assert.falsy(out:find("10086", 1, true), out)
    -- --ports is for the default only
    code, out = run("ports-with-c", { "--ports", "1,2,3", "-c", file })
    assert.equal(2, code, out)
  end))

  it("-t: an access log that cannot be opened fails with file:line; -t creates no file", h:guard(function()
    local missing_dir = h:path("no-such-dir") .. "/access.log"
    local file = h:write("access-bad.lua", ([[
luaray.user { id = "%s" }

luaray.log { level = "info", access = "%s" }
luaray.inbound "v" { type = "vmess", listen = "127.0.0.1:%d" }
luaray.outbound "d" { type = "direct" }
]]):format(ID1, missing_dir, PORT))
    local code, out = run("check-access-bad", { "-t", "-c", file })
    assert.equal(1, code, out)
    assert.truthy(out:find(("%s:3: cannot open access log '%s': No such file or directory"):format(file, missing_dir),
                           1, true), out)
    assert.falsy(out:find("configuration OK", 1, true), out)
    -- a file that is not there yet but can be made: OK, and -t leaves it alone
    local fresh = h:path("fresh-access.log")
    file = h:write("access-fresh.lua", ([[
luaray.user { id = "%s" }
luaray.log { level = "info", access = "%s" }
luaray.inbound "v" { type = "vmess", listen = "127.0.0.1:%d" }
luaray.outbound "d" { type = "direct" }
]]):format(ID1, fresh, PORT))
    code, out = run("check-access-fresh", { "-t", "-c", file })
    assert.equal(0, code, out)
    assert.is_nil(io.open(fresh, "rb"), "-t created " .. fresh)
  end))

  it("-t warns once per SOCKS/HTTP inbound without accounts on a non-loopback address", h:guard(function()
    local file = h:write("open-proxy.lua", ([[
luaray.user { id = "%s" }
luaray.inbound "socks-any" { type = "socks", listen = "0.0.0.0:%d" }
luaray.inbound "http-v6any" { type = "http", listen = "[::]:%d" }
luaray.inbound "socks-lan" { type = "socks", listen = "192.0.2.1:%d" }
luaray.inbound "http-locked" { type = "http", listen = "0.0.0.0:%d", accounts = { { user = "u", pass = "p" } } }
luaray.inbound "socks-lo" { type = "socks", listen = "127.0.0.1:%d" }
luaray.inbound "socks-lo2" { type = "socks", listen = "127.0.0.2:%d" }
luaray.inbound "http-lo6" { type = "http", listen = "[::1]:%d" }
luaray.inbound "http-localhost" { type = "http", listen = "localhost:%d" }
luaray.inbound "vmess-any" { type = "vmess", listen = "0.0.0.0:%d" }
luaray.outbound "d" { type = "direct" }
]]):format(ID1, PORT, PORT, PORT, PORT + 1, PORT, PORT, PORT + 1, PORT + 2, PORT + 3))
    local code, out = run("check-open-proxy", { "-t", "-c", file })
    assert.equal(0, code, out)
    assert.truthy(out:find("configuration OK", 1, true), out)
    local warned = {}
    for tag in out:gmatch("%[warn%] inbound (%S+) %(%a+%) on [^\n]* has no accounts: an open proxy") do
      warned[#warned + 1] = tag
    end
    assert.same({ "socks-any", "http-v6any", "socks-lan" }, warned)
  end))
end)
