-- scripts/check-layering (the include layering check of `make test`) run on
-- the small trees under spec/lua/fixtures/layering/: a clean tree that uses
-- every allowed kind of include, one with a violation of each kind, one
-- with cycles, and allow-lists over the cycle tree.  Exit codes and the
-- exact lines are checked.
local FIX = "spec/lua/fixtures/layering"

-- Runs the script -> exit code, stdout, stderr.
local function run(args)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("luajit scripts/check-layering %s >%s 2>%s; echo $?"):format(args, out, err)
  local p = assert(io.popen(cmd))
  local rc = tonumber(p:read("*a"))
  p:close()
  local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local t = f:read("*a")
    f:close()
    os.remove(path)
    return t
  end
  return rc, slurp(out), slurp(err)
end

local function lines(...) return table.concat({ ... }, "\n") .. "\n" end

describe("scripts/check-layering", function()
  it("passes a clean tree: own folder, lower ranks, api.h, script/bridge.h from daemon, main.c " ..
     "and dispatch, script/ including anything, dispatch/inbound/outbound including each other", function()
    local rc, out, err = run("--root " .. FIX .. "/clean")
    assert.equal("layering: 20 files, 0 violations\n", out)
    assert.equal("", err)
    assert.equal(0, rc)
  end)

  it("reports each kind of violation with file:line, and fails", function()
    local rc, out, err = run("--root " .. FIX .. "/violation")
    assert.equal(lines(
      'core/base/log.c:2: includes "base/nosuch.h", which names no file',
      "core/stats/stats.c: unknown folder 'stats' (rank it in scripts/check-layering)",
      "core/api.c:2: api.c (-1) includes daemon/daemon.h (daemon, 5: api.c may use only base, crypto, route, vmess)",
      "core/daemon/daemon.c:2: daemon (5) includes script/pattern.h (script internals)",
      "core/include/luaray/api.h:2: api (-1) includes base/base.h (base, 0: api includes no core header)",
      "core/net/conn.c:2: net (3) includes daemon/daemon.h (daemon, 5)",
      "core/route/route.c:3: route (2) includes crypto/crypto.h (crypto, 1: route may use only base)",
      "core/vmess/vmess.c:2: vmess (2) includes script/bridge.h " ..
        "(script: only daemon/, main.c and dispatch/ include script/bridge.h)",
      "cycle: daemon -> net -> daemon (core/daemon/daemon.h:1 includes net/conn.h; " ..
        "core/net/conn.c:2 includes daemon/daemon.h)",
      "layering: 15 files, 9 violations"), out)
    assert.equal("", err)
    assert.equal(1, rc)
  end)

  it("reports cycles: two folders of one rank, and a longer loop through dispatch/inbound/outbound", function()
    local rc, out = run("--root " .. FIX .. "/cycle")
    assert.equal(lines(
      "core/net/n.c:1: net (3) includes outbound/o.h (outbound, 4)",
      "cycle: inbound -> net -> outbound -> inbound (core/inbound/i.h:1 includes net/a.h; " ..
        "core/net/n.c:1 includes outbound/o.h; core/outbound/o.c:1 includes inbound/i.h (+1 more))",
      "cycle: net -> stream -> net (core/net/a.h:2 includes stream/b.h; core/stream/b.h:1 includes net/a.h)",
      "layering: 8 files, 3 violations"), out)
    assert.equal(1, rc)
  end)

  it("passes with every violation allow-listed, warns of a stale entry, and says it all in TAP", function()
    local rc, out, err = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/allow-cycle")
    assert.equal("layering: 8 files, 0 violations (3 known, allow-listed)\n", out)
    assert.equal(FIX .. "/allow-cycle:4: stale entry 'core/base/gone.c:daemon/daemon.h': " ..
                 "no such violation any more (delete the line)", err:match("^warning: (.-)\n$"))
    assert.equal(0, rc)
    rc, out = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/allow-cycle --tap")
    assert.equal(lines(
      "ok 1 - layering: 8 files, 0 violations (3 known, allow-listed)",
      "# warning: " .. FIX .. "/allow-cycle:4: stale entry 'core/base/gone.c:daemon/daemon.h': " ..
        "no such violation any more (delete the line)",
      "# known: core/net/n.c:1: net (3) includes outbound/o.h (outbound, 4)",
      "# known: cycle: inbound -> net -> outbound -> inbound (core/inbound/i.h:1 includes net/a.h; " ..
        "core/net/n.c:1 includes outbound/o.h; core/outbound/o.c:1 includes inbound/i.h (+1 more)) " ..
        "[allow-listed includes]",
      "# known: cycle: net -> stream -> net (core/net/a.h:2 includes stream/b.h; " ..
        "core/stream/b.h:1 includes net/a.h) [allow-listed includes]",
      "1..1"), out)
    assert.equal(0, rc)
  end)

  it("fails on what the allow-list does not name, in plain and TAP form", function()
    local rc, out = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/allow-partial")
    assert.equal(lines(
      "cycle: net -> stream -> net (core/net/a.h:2 includes stream/b.h; core/stream/b.h:1 includes net/a.h)",
      "layering: 8 files, 1 violations (2 known, allow-listed)"), out)
    assert.equal(1, rc)
    rc, out = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/allow-partial --tap")
    assert.equal("not ok 1 - layering: 8 files, 1 violations (2 known, allow-listed)\n" ..
                 "# cycle: net -> stream -> net (core/net/a.h:2 includes stream/b.h; " ..
                 "core/stream/b.h:1 includes net/a.h)\n", out:match("^(.-)# known:"))
    assert.truthy(out:find("\n1..1\n$"))
    assert.equal(1, rc)
    -- errors are never allow-listed
    rc, out = run("--root " .. FIX .. "/violation --allow " .. FIX .. "/allow-partial --tap")
    assert.truthy(out:find("^not ok 1 %- layering: 15 files, 9 violations\n"))
    assert.truthy(out:find("\n# core/stats/stats.c: unknown folder 'stats'", 1, true))
    assert.equal(1, rc)
  end)

  it("refuses an allow-list entry without a reason, a garbled one, and bad arguments (exit 2)", function()
    local rc, out, err = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/allow-noreason")
    assert.equal("check-layering: " .. FIX .. "/allow-noreason:1: 'core/net/n.c:outbound/o.h' " ..
                 "has no reason (`# why` after it)\n", err)
    assert.equal("", out)
    assert.equal(2, rc)
    rc, _, err = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/allow-garbled")
    assert.truthy(err:find("allow-garbled:1: want `core/path/file.c:include/as/written.h  # why`", 1, true))
    assert.equal(2, rc)
    rc, _, err = run("--root " .. FIX .. "/cycle --allow " .. FIX .. "/no-such-file")
    assert.equal("check-layering: cannot read " .. FIX .. "/no-such-file\n", err)
    assert.equal(2, rc)
    rc = run("--frobnicate")
    assert.equal(2, rc)
  end)
end)
