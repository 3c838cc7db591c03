-- Packaging (issue "Operations"): `make install` / `make uninstall` with
-- DESTDIR and PREFIX, the installed executable on its own (no build tree),
-- `luaray --check` as a unit's ExecStartPre uses it, the systemd unit
-- (packaging/luaray.service: its keys, `systemd-analyze verify`, why
-- MemoryDenyWriteExecute stays off), the man page (packaging/luaray.1,
-- groff warnings as errors) and the default config.
--
-- make runs with `-o $(BUILD)/luaray`: it installs the executable the specs
-- run against (build/, or build/asan under scripts/asan-specs.sh) and never
-- rebuilds it here; `make test` builds it first.
local E = require "e2e.support"
local pstat = require "posix.sys.stat"
local dirent = require "posix.dirent"

local ROOT = assert(E.dir:match("^(.*)/spec/e2e$"), "spec/e2e not found in " .. E.dir)
local BUILD = os.getenv("LURAY_BUILD") or (ROOT .. "/build")
if BUILD:sub(1, 1) ~= "/" then BUILD = ROOT .. "/" .. BUILD end

local UNIT_REL = "usr/lib/systemd/system/luaray.service"
local MAN_REL = "usr/share/man/man1/luaray.1"

-- what `make install DESTDIR=... PREFIX=/usr` must put there: path -> mode
local function expected_tree()
  local t = {
    ["etc"] = "d755", ["etc/luaray"] = "d755", ["etc/luaray/config.lua"] = "f640",
    ["usr"] = "d755", ["usr/bin"] = "d755", ["usr/bin/luaray"] = "f755",
    ["usr/lib"] = "d755", ["usr/lib/systemd"] = "d755", ["usr/lib/systemd/system"] = "d755",
    [UNIT_REL] = "f644",
    ["usr/share"] = "d755", ["usr/share/man"] = "d755", ["usr/share/man/man1"] = "d755",
    [MAN_REL] = "f644",
    ["usr/share/doc"] = "d755", ["usr/share/doc/luaray"] = "d755",
    ["usr/share/doc/luaray/README.md"] = "f644", ["usr/share/doc/luaray/LICENSE"] = "f644",
    ["usr/share/luaray"] = "d755", ["usr/share/luaray/examples"] = "d755",
  }
  for f in dirent.files(ROOT .. "/examples") do
    if f:match("%.lua$") then t["usr/share/luaray/examples/" .. f] = "f644" end
  end
  return t
end

-- every path under dir (relative) -> "d755" / "f644" / "l..." (type, octal mode)
local function tree(dir)
  local out = {}
  local function walk(rel, depth)
    assert(depth < 12, "tree too deep at " .. rel)
    local abs = rel == "" and dir or (dir .. "/" .. rel)
    for f in dirent.files(abs) do
      if f ~= "." and f ~= ".." then
        local r = rel == "" and f or (rel .. "/" .. f)
        local st = assert(pstat.lstat(dir .. "/" .. r))
        local kind = pstat.S_ISDIR(st.st_mode) ~= 0 and "d"
                     or pstat.S_ISREG(st.st_mode) ~= 0 and "f" or "?"
        out[r] = ("%s%o"):format(kind, st.st_mode % 4096)
        if kind == "d" then walk(r, depth + 1) end
      end
    end
  end
  walk("", 0)
  return out
end

local function diff_trees(want, got)
  local lines = {}
  for p, m in pairs(want) do
    if got[p] ~= m then lines[#lines + 1] = ("  %s: want %s, got %s"):format(p, m, tostring(got[p])) end
  end
  for p, m in pairs(got) do
    if want[p] == nil then lines[#lines + 1] = ("  %s: not expected (%s)"):format(p, m) end
  end
  table.sort(lines)
  return table.concat(lines, "\n")
end

local function exists(path) return pstat.lstat(path) ~= nil end

local function on_path(prog)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    if exists(dir .. "/" .. prog) then return dir .. "/" .. prog end
  end
end

describe("make install / uninstall, the unit, the man page", function()
  local h = E.new("install")
  local stage, prefix   -- DESTDIR tree (PREFIX=/usr); a PREFIX install (no DESTDIR)
  lazy_teardown(function()
    -- h:cleanup removes two levels of files; these trees are deeper
    if stage and not h.failed and os.getenv("LURAY_E2E_KEEP") ~= "1" then
      h:exec("rm-trees", { "rm", "-rf", "--", stage, prefix })
    end
    h:cleanup()
  end)

  local function make(name, args)
    -- umask 022: the directories install -d makes on the way get 0755
    local argv = { "sh", "-c", 'umask 022 && exec "$@"', "sh", "make", "--no-print-directory",
                   "-C", ROOT, "BUILD=" .. BUILD, "-o", BUILD .. "/luaray" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, out = h:exec(name, argv, { timeout = 60 })
    assert.equal(0, code, ("make %s failed:\n%s"):format(table.concat(args, " "), out))
    return out
  end

  -- the installed executable, run from / (not the repository), with
  -- LURAY_BUILD pointing nowhere
  local function run_installed(name, args, opts)
    opts = opts or {}
    local argv = { "sh", "-c", 'cd / && exec "$@"', "sh", stage .. "/usr/bin/luaray" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return h:exec(name, argv, { keep_preload = true, timeout = opts.timeout,
                                env = { LURAY_BUILD = "/nonexistent/build", LUA_PATH = false } })
  end

  local function unit_text() return E.read_file(stage .. "/" .. UNIT_REL) end

  -- key -> { values } of the [Service] section (and the others)
  local function unit_keys()
    local keys = {}
    for line in unit_text():gmatch("[^\n]+") do
      local k, v = line:match("^([%w]+)=(.*)$")
      if k then
        keys[k] = keys[k] or {}
        table.insert(keys[k], v)
      end
    end
    return keys
  end

  it("make install DESTDIR=... PREFIX=/usr installs exactly the binary, examples, man page, unit, docs and config",
     h:guard(function()
    stage = h:path("stage")
    local out = make("install", { "install", "DESTDIR=" .. stage, "PREFIX=/usr" })
    assert.truthy(out:find("wrote " .. stage .. "/etc/luaray/config.lua", 1, true), out)
    local d = diff_trees(expected_tree(), tree(stage))
    assert.equal("", d, "installed tree differs:\n" .. d)
    -- copies, byte for byte
    for f in dirent.files(ROOT .. "/examples") do
      if f:match("%.lua$") then
        assert.equal(E.read_file(ROOT .. "/examples/" .. f),
                     E.read_file(stage .. "/usr/share/luaray/examples/" .. f), f)
      end
    end
    assert.equal(E.read_file(ROOT .. "/README.md"), E.read_file(stage .. "/usr/share/doc/luaray/README.md"))
    local license = E.read_file(stage .. "/usr/share/doc/luaray/LICENSE")
    assert.equal(E.read_file(ROOT .. "/LICENSE"), license)
    assert.truthy(license:find("MIT License", 1, true) and license:find("2026 the luaray authors", 1, true))
    assert.equal(E.read_file(BUILD .. "/luaray"), E.read_file(stage .. "/usr/bin/luaray"))
    -- the paths in the unit, the man page and the config are PREFIX's
    for _, rel in ipairs { UNIT_REL, MAN_REL, "etc/luaray/config.lua" } do
      local text = E.read_file(stage .. "/" .. rel)
      for l in text:gmatch("[^\n]*/usr/local/[^\n]*") do
        error(("%s still names /usr/local: %s"):format(rel, l))
      end
    end
    assert.truthy(E.read_file(stage .. "/" .. MAN_REL):find("/usr/share/luaray/examples", 1, true))
  end))

  it("the installed binary needs nothing from the build tree (no libluaray.so, no RPATH)", h:guard(function()
    assert.truthy(stage, "needs the install above")
    local code, out = h:exec("readelf", { "readelf", "-d", stage .. "/usr/bin/luaray" })
    assert.equal(0, code, out)
    assert.falsy(out:find("libluaray", 1, true), out)
    assert.falsy(out:find("RPATH", 1, true) or out:find("RUNPATH", 1, true), out)
    -- and runs with the repository hidden, when a private mount namespace
    -- can be had (root, unshare): a tmpfs over the checkout
    local unshare = on_path("unshare")
    if not unshare or require("posix.unistd").geteuid() ~= 0 then
      print("# install_spec: not root or no unshare: the run with the checkout hidden is skipped")
      return
    end
    local code2, out2 = h:exec("hidden-tree", { unshare, "-m", "sh", "-c",
      'mount -t tmpfs none "$1" || exit 77; test ! -e "$1/Makefile" || exit 78; cd / && ' ..
      '"$2" -t -c "$3" && "$2" version && "$2" --check -c "$4"',
      "sh", ROOT, stage .. "/usr/bin/luaray", stage .. "/usr/share/luaray/examples/server.lua",
      stage .. "/etc/luaray/config.lua" }, { keep_preload = true })
    if code2 == 77 then
      print("# install_spec: no private mount namespace here: the run with the checkout hidden is skipped")
      return
    end
    assert.equal(0, code2, out2)
    assert.equal(2, E.count_matches(out2, "configuration OK", true), out2)
    assert.truthy(out2:find("\nluaray %d+%.%d+%.%d+ %(commit "), out2)
  end))

  it("installed: version, -t on an example, --check on the default config", h:guard(function()
    assert.truthy(stage, "needs the install above")
    local code, out = run_installed("version", { "version" })
    assert.equal(0, code, out)
    assert.truthy(out:match("^luaray %d+%.%d+%.%d+ %(commit [^)]+%)\n"), out)
    for _, ex in ipairs { "server.lua", "client.lua" } do
      code, out = run_installed("t-" .. ex, { "-t", "-c", stage .. "/usr/share/luaray/examples/" .. ex })
      assert.equal(0, code, out)
      assert.truthy(out:find("configuration OK", 1, true), out)
    end
    -- the default config: valid, one user with a fresh UUID, not the template's marker
    local conf = stage .. "/etc/luaray/config.lua"
    code, out = run_installed("check-default", { "--check", "-c", conf })
    assert.equal(0, code, out)
    assert.truthy(out:find("configuration OK", 1, true), out)
    local text = E.read_file(conf)
    assert.falsy(text:find("@UUID@", 1, true), text)
    assert.truthy(text:find('id = "%x+%-%x+%-4%x+%-[89ab]%x+%-%x+"'), text)
    code, out = run_installed("link-default", { "link", "-c", conf, "-H", "vpn.example.net" })
    assert.equal(0, code, out)
    assert.equal(1, E.count_matches(out, "vmess://", true), out)
  end))

  it("--check: exit 0 and 'configuration OK', or exit 1 and file:line; in --help; without -c exit 2",
     h:guard(function()
    assert.truthy(stage, "needs the install above")
    local good = h:write("good.lua", ([[
luaray.log { level = "warn" }
luaray.user { id = "%s" }
luaray.inbound "v" { type = "vmess", listen = "127.0.0.1:%d" }
luaray.outbound "d" { type = "direct" }
]]):format(E.uuid(), E.free_port()))
    local bad = h:write("bad.lua", 'luaray.log { level = "warn" }\n\nluaray.user { id = "not-a-uuid" }\n')
    for _, flag in ipairs { "--check", "-t" } do
      local code, out = run_installed("good" .. flag, { flag, "-c", good })
      assert.equal(0, code, out)
      assert.truthy(out:find("configuration OK", 1, true), out)
      code, out = run_installed("bad" .. flag, { flag, "-c", bad })
      assert.equal(1, code, out)
      assert.truthy(out:find("luaray: " .. bad .. ":3: ", 1, true), "no file:line in:\n" .. out)
      assert.falsy(out:find("configuration OK", 1, true), out)
    end
    local code, out = run_installed("check-no-c", { "--check" })
    assert.equal(2, code, out)
    assert.truthy(out:find("--check needs -c FILE", 1, true), out)
    code, out = run_installed("help", { "--help" })
    assert.equal(0, code, out)
    assert.truthy(out:find("-t, --check", 1, true), out)
  end))

  it("the unit: ExecStartPre checks, ExecReload sends HUP, the limits and the hardening", h:guard(function()
    assert.truthy(stage, "needs the install above")
    local k = unit_keys()
    local function one(key)
      assert.truthy(k[key], key .. "= missing from the unit:\n" .. unit_text())
      return k[key][#k[key]]
    end
    assert.truthy(one("Type") == "exec" or one("Type") == "simple", one("Type"))
    assert.truthy(one("User") == "luaray" or one("DynamicUser") == "yes")
    local pre = one("ExecStartPre")
    assert.truthy(pre == "/usr/bin/luaray --check -c /etc/luaray/config.lua" or
                  pre == "/usr/bin/luaray -t -c /etc/luaray/config.lua", pre)
    assert.equal("/usr/bin/luaray -c /etc/luaray/config.lua", one("ExecStart"))
    assert.equal("/bin/kill -HUP $MAINPID", one("ExecReload"))
    assert.equal("on-failure", one("Restart"))
    assert.equal("1048576", one("LimitNOFILE"))
    assert.equal("CAP_NET_BIND_SERVICE", one("AmbientCapabilities"))
    local want = {
      NoNewPrivileges = "yes", ProtectSystem = "strict", ProtectHome = "yes", PrivateTmp = "yes",
      PrivateDevices = "yes", ProtectKernelTunables = "yes", ProtectKernelModules = "yes",
      ProtectKernelLogs = "yes", ProtectControlGroups = "yes", RestrictNamespaces = "yes",
      LockPersonality = "yes", RestrictAddressFamilies = "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
      ReadOnlyPaths = "/etc/luaray",
    }
    for key, v in pairs(want) do assert.equal(v, one(key), key) end
    assert.equal("@system-service", k.SystemCallFilter and k.SystemCallFilter[1], "SystemCallFilter")
    -- LuaJIT's JIT makes code executable with mprotect: see the next test
    assert.is_nil(k.MemoryDenyWriteExecute, "MemoryDenyWriteExecute= set: LuaJIT's JIT cannot run under it")
  end))

  it("MemoryDenyWriteExecute would stop luaray: under prctl(PR_SET_MDWE) -t fails in LuaJIT's JIT",
     h:guard(function()
    assert.truthy(stage, "needs the install above")
    local cc = on_path("cc")
    if not cc then return pending("no cc to build the PR_SET_MDWE helper") end
    local src = h:write("mdwe.c", [[
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    (void)argc;
    /* PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1): Linux 6.3+, what
     * systemd's MemoryDenyWriteExecute=yes does with seccomp */
    if (prctl(65, 1UL, 0UL, 0UL, 0UL) != 0) { perror("prctl PR_SET_MDWE"); return 77; }
    execv(argv[1], argv + 1);
    perror("execv");
    return 127;
}
]])
    local bin = h:path("mdwe")
    local code, out = h:exec("cc-mdwe", { cc, "-o", bin, src })
    assert.equal(0, code, out)
    -- a config that runs a loop hot enough for LuaJIT to compile it
    local hot = h:write("hot.lua", ([[
local x = 0
for i = 1, 200000 do x = x + i %% 7 end
luaray.log { level = "warn" }
luaray.user { id = "%s" }
luaray.inbound "v" { type = "vmess", listen = "127.0.0.1:%d" }
luaray.outbound "d" { type = "direct" }
]]):format(E.uuid(), E.free_port()))
    code, out = run_installed("hot-plain", { "-t", "-c", hot })
    assert.equal(0, code, out)
    code, out = h:exec("hot-mdwe", { bin, stage .. "/usr/bin/luaray", "-t", "-c", hot }, { keep_preload = true })
    if code == 77 then return pending("no PR_SET_MDWE in this kernel (Linux 6.3+): " .. out) end
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("runtime code generation failed", 1, true), out)
  end))

  it("systemd-analyze verify: the unit of a PREFIX install is clean", h:guard(function()
    local sa = on_path("systemd-analyze")
    if not sa then
      print("# install_spec: systemd-analyze is not installed: the unit is not verified")
      return pending("systemd-analyze is not installed (package systemd)")
    end
    -- a real PREFIX (no DESTDIR), so the unit's commands exist where it says
    prefix = h:path("prefix")
    make("install-prefix", { "install", "PREFIX=" .. prefix .. "/usr", "SYSCONFDIR=" .. prefix .. "/etc" })
    local unit = prefix .. "/" .. UNIT_REL
    assert.truthy(E.read_file(unit):find("ExecStartPre=" .. prefix .. "/usr/bin/luaray --check -c " ..
                                         prefix .. "/etc/luaray/config.lua", 1, true))
    -- Documentation=man:luaray(1) is looked up too: MANPATH has the one installed
    local code, out = h:exec("verify", { sa, "verify", unit },
                             { env = { MANPATH = prefix .. "/usr/share/man" }, timeout = 30 })
    assert.equal(0, code, out)
    assert.equal("", out, "systemd-analyze verify said:\n" .. out)
  end))

  it("the man page: groff -man -ww has no warning; it covers the commands, signals, keys and files",
     h:guard(function()
    assert.truthy(stage, "needs the install above")
    local page = stage .. "/" .. MAN_REL
    local code, out = h:exec("groff-lint", { "groff", "-man", "-Tutf8", "-ww", "-z", page })
    assert.equal(0, code, out)
    assert.equal("", out, "groff warnings:\n" .. out)
    local mandoc = on_path("mandoc")
    if mandoc then
      code, out = h:exec("mandoc-lint", { mandoc, "-Tlint", "-W", "warning", page })
      assert.equal(0, code, out)
      assert.equal("", out, "mandoc -Tlint:\n" .. out)
    end
    local text
    code, text = h:exec("groff-text", { "groff", "-man", "-Tascii", "-P-cbou", page })
    assert.equal(0, code, text)
    for _, sect in ipairs { "NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "CONFIGURATION",
                            "SIGNALS", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO" } do
      assert.truthy(text:find("\n" .. sect .. "\n", 1, true), "no section " .. sect)
    end
    for _, w in ipairs { "-t, --check", "link", "uuid", "version", "--ports", "--print-default",
                         "SIGHUP", "SIGTERM, SIGINT", "SIGUSR1", "luaray.log", "luaray.user",
                         "luaray.inbound", "luaray.outbound", "luaray.route", "luaray.on(",
                         "luaray.shared", "luaray.include", "tls", "transport",
                         "/etc/luaray/config.lua", "/usr/share/luaray/examples/",
                         "/usr/lib/systemd/system/luaray.service", "configuration OK" } do
      -- (words are filled and justified: any run of blanks is one space)
      assert.truthy(text:gsub("%s+", " "):find(w, 1, true), ("the man page does not mention %q"):format(w))
    end
  end))

  it("make install again keeps an edited config", h:guard(function()
    assert.truthy(stage, "needs the install above")
    local conf = stage .. "/etc/luaray/config.lua"
    local edited = E.read_file(conf) .. "-- edited by the operator\n"
    local f = assert(io.open(conf, "wb")); f:write(edited); f:close()
    local out = make("reinstall", { "install", "DESTDIR=" .. stage, "PREFIX=/usr" })
    assert.truthy(out:find("exists: kept", 1, true), out)
    assert.equal(edited, E.read_file(conf))
    local d = diff_trees(expected_tree(), tree(stage))
    assert.equal("", d, "tree after a second install:\n" .. d)
  end))

  it("make uninstall DESTDIR=... PREFIX=/usr removes what install put there but the config", h:guard(function()
    assert.truthy(stage, "needs the install above")
    local out = make("uninstall", { "uninstall", "DESTDIR=" .. stage, "PREFIX=/usr" })
    assert.truthy(out:find("config.lua kept", 1, true), out)
    -- left: the config, its directory, and the generic directories
    local want = {
      ["etc"] = "d755", ["etc/luaray"] = "d755", ["etc/luaray/config.lua"] = "f640",
      ["usr"] = "d755", ["usr/bin"] = "d755", ["usr/lib"] = "d755", ["usr/lib/systemd"] = "d755",
      ["usr/lib/systemd/system"] = "d755", ["usr/share"] = "d755", ["usr/share/man"] = "d755",
      ["usr/share/man/man1"] = "d755", ["usr/share/doc"] = "d755",
    }
    local d = diff_trees(want, tree(stage))
    assert.equal("", d, "left after uninstall:\n" .. d)
  end))
end)
