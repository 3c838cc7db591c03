-- The PROXY protocol parser (core/stream/proxyproto.c, lr_pp_parse) on
-- headers built here from HAProxy's doc/proxy-protocol.txt: versions 1 and
-- 2, every prefix (need more, never another answer), and what must be
-- refused.  Real HAProxy bytes go through it in spec/e2e/proxy_protocol_spec.lua.
local H = require "helper"
local C, ffi = H.C, H.ffi

local hdr = ffi.new("struct lr_pp_hdr")
local why = ffi.new("const char *[1]")

local function ip_text(h, which)
  local raw = ffi.string(which == "src" and h.src_ip or h.dst_ip, h.ip_len)
  if h.ip_len == 4 then return table.concat({ raw:byte(1, 4) }, ".") end
  local g = {}
  for i = 1, 16, 2 do g[#g + 1] = ("%x"):format(raw:byte(i) * 256 + raw:byte(i + 1)) end
  return table.concat(g, ":")
end

-- -> rc, a table of what was parsed (or the reason for LR_PP_BAD)
local function parse(s)
  local b = H.buf(s)
  local rc = C.lr_pp_parse(b, #s, hdr, why)
  if rc == C.LR_PP_BAD then return rc, ffi.string(why[0]) end
  if rc ~= C.LR_PP_OK then return rc end
  local t = { version = hdr.version, len = hdr.len, ["local"] = hdr["local"] == 1 }
  if hdr.ip_len > 0 then
    t.src, t.dst = ip_text(hdr, "src"), ip_text(hdr, "dst")
    t.sport, t.dport = hdr.src_port, hdr.dst_port
  end
  return rc, t
end

-- Every proper prefix needs more bytes or gives the whole's answer.
local function prefixes_agree(s)
  local whole = parse(s)
  for n = 0, #s - 1 do
    local rc = parse(s:sub(1, n))
    assert(rc == C.LR_PP_AGAIN or rc == whole,
           ("prefix %d of %d: %d, whole: %d"):format(n, #s, rc, whole))
  end
end

local function be16(n) return string.char(math.floor(n / 256), n % 256) end
local SIG = "\r\n\r\n\0\r\nQUIT\n"
local function v2(ver_cmd, fam, body) return SIG .. string.char(ver_cmd, fam) .. be16(#body) .. body end
local function ip4(a, b, c, d) return string.char(a, b, c, d) end

describe("PROXY protocol v1", function()
  it("reads TCP4 and TCP6 lines and leaves what follows alone", function()
    local line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    local rc, t = parse(line .. "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n")
    assert.equal(C.LR_PP_OK, rc)
    assert.same({ version = 1, len = #line, ["local"] = false, src = "192.168.0.1",
                  dst = "192.168.0.11", sport = 56324, dport = 443 }, t)
    line = "PROXY TCP6 2001:db8::1 2001:db8:0:0:0:0:0:2 0 65535\r\n"
    rc, t = parse(line .. "\22\3\1")
    assert.equal(C.LR_PP_OK, rc)
    assert.same({ version = 1, len = #line, ["local"] = false, src = "2001:db8:0:0:0:0:0:1",
                  dst = "2001:db8:0:0:0:0:0:2", sport = 0, dport = 65535 }, t)
  end)

  it("takes the longest lines the spec allows (104 and 107 bytes)", function()
    local f = ("ffff:"):rep(7) .. "ffff"
    local tcp6 = ("PROXY TCP6 %s %s 65535 65535\r\n"):format(f, f)
    assert.equal(104, #tcp6)
    local rc, t = parse(tcp6)
    assert.equal(C.LR_PP_OK, rc)
    assert.equal(104, t.len)
    assert.equal("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", t.src)
    local unknown = ("PROXY UNKNOWN %s %s 65535 65535\r\n"):format(f, f)
    assert.equal(107, #unknown)
    rc, t = parse(unknown)
    assert.equal(C.LR_PP_OK, rc)
    assert.same({ version = 1, len = 107, ["local"] = true }, t)
    prefixes_agree(tcp6)
    prefixes_agree(unknown)
  end)

  it("takes UNKNOWN with or without the rest of the line: the connection's own addresses", function()
    for _, s in ipairs({ "PROXY UNKNOWN\r\n", "PROXY UNKNOWN 1.2.3.4 x y z\r\n", "PROXY UNKNOWN \r\n" }) do
      local rc, t = parse(s .. "rest")
      assert.equal(C.LR_PP_OK, rc, s)
      assert.same({ version = 1, len = #s, ["local"] = true }, t)
      prefixes_agree(s)
    end
  end)

  it("needs more bytes for every prefix of a line", function()
    prefixes_agree("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
    assert.equal(C.LR_PP_AGAIN, (parse("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r")))
    assert.equal(C.LR_PP_AGAIN, (parse("")))
    assert.equal(C.LR_PP_AGAIN, (parse("PRO")))
  end)

  it("refuses anything that does not match exactly", function()
    local cases = {
      { "GET / HTTP/1.1\r\n\r\n", "not a PROXY protocol header" },
      { "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY protocol header" },
      { "PROXY\r\n", "not a PROXY protocol header" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1: LF without CR" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n", "PROXY v1: CR without LF" },
      { "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN" },
      { "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN" },
      { "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "PROXY v1: fields not separated by single spaces" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "PROXY v1: fields not separated by single spaces" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY v1: missing fields" },
      { "PROXY TCP4\r\n", "PROXY v1: missing fields" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "PROXY v1: more than four fields" },
      { "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: bad address" },
      { "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "PROXY v1: bad address" },
      { "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: bad address" },
      { "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "PROXY v1: bad address" },
      { "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY v1: bad address" },
      { "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "PROXY v1: bad address" },
      -- a NUL inside an address field (fuzz_proxyproto found it read as "127.0.0.1")
      { "PROXY TCP4 127.0.0.1\0\0x 127.0.0.1 51654 18551\r\n", "PROXY v1: bad address" },
      { "PROXY TCP6 ::1 ::1\0 1 2\r\n", "PROXY v1: bad address" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROXY v1: bad port" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "PROXY v1: bad port" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "PROXY v1: bad port" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", "PROXY v1: bad port" },
      { "PROXY UNKNOWNX\r\n", "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN" },
      { "PROXY UNKNOWN " .. ("x"):rep(93) .. "\r\n", "PROXY v1: no CRLF in 107 bytes" },
    }
    for _, c in ipairs(cases) do
      local rc, reason = parse(c[1])
      assert.equal(C.LR_PP_BAD, rc, c[1])
      assert.equal(c[2], reason, c[1])
      prefixes_agree(c[1])
    end
    -- 107 bytes without a CRLF decide: the line is too long
    assert.equal(C.LR_PP_BAD, (parse("PROXY UNKNOWN " .. ("x"):rep(93))))
    assert.equal(C.LR_PP_AGAIN, (parse("PROXY UNKNOWN " .. ("x"):rep(92))))
  end)
end)

describe("PROXY headers Debian's HAProxy 2.6 sent", function()
  -- captured on loopback (the seeds of spec/fuzz/corpus/fuzz_proxyproto):
  -- the client, then "hello"
  it("reads send-proxy, send-proxy-v2 and v2 with TLVs (crc32c, unique-id)", function()
    local cases = {
      { "50524f58592054435034203132372e302e302e31203132372e302e302e312035313635342031383535310d0a",
        { version = 1, src = "127.0.0.1", dst = "127.0.0.1", sport = 51654, dport = 18551 } },
      { "50524f58592054435036203a3a31203a3a312033363235302031383535350d0a",
        { version = 1, src = "0:0:0:0:0:0:0:1", dst = "0:0:0:0:0:0:0:1", sport = 36250, dport = 18555 } },
      { "0d0a0d0a000d0a515549540a2111000c7f0000017f000001be8c4878",
        { version = 2, src = "127.0.0.1", dst = "127.0.0.1", sport = 48780, dport = 18552 } },
      { "0d0a0d0a000d0a515549540a2111003f7f0000017f000001dfc648790300048d02e10805002937463030303030313a44" ..
        "4643365f37463030303030313a343837395f36423136363635435f30303032",
        { version = 2, src = "127.0.0.1", dst = "127.0.0.1", sport = 57286, dport = 18553 } },
      { "0d0a0d0a000d0a515549540a2121002400000000000000000000000000000001000000000000000000000000000000018bc8487a",
        { version = 2, src = "0:0:0:0:0:0:0:1", dst = "0:0:0:0:0:0:0:1", sport = 35784, dport = 18554 } },
    }
    for i, c in ipairs(cases) do
      local bytes = H.unhex(c[1])
      local rc, t = parse(bytes .. "hello")
      assert.equal(C.LR_PP_OK, rc, "case " .. i)
      c[2].len, c[2]["local"] = #bytes, false
      assert.same(c[2], t, "case " .. i)
      prefixes_agree(bytes)
    end
  end)
end)

describe("PROXY protocol v2", function()
  it("reads TCP over IPv4 and IPv6, and counts the TLVs after the addresses", function()
    local body = ip4(198, 51, 100, 7) .. ip4(203, 0, 113, 9) .. be16(40000) .. be16(443)
    local h = v2(0x21, 0x11, body)
    local rc, t = parse(h .. "\22\3\1\0\5")
    assert.equal(C.LR_PP_OK, rc)
    assert.same({ version = 2, len = 28, ["local"] = false, src = "198.51.100.7",
                  dst = "203.0.113.9", sport = 40000, dport = 443 }, t)
    prefixes_agree(h)
    -- IPv6, with a 7-byte TLV (type 0x01 ALPN "http/1"... skipped unread)
    local a6 = ("\32\1\13\184" .. ("\0"):rep(11) .. "\1")
    local b6 = ("\32\1\13\184" .. ("\0"):rep(11) .. "\2")
    local tlv = "\1" .. be16(4) .. "h2h2"
    h = v2(0x21, 0x21, a6 .. b6 .. be16(1) .. be16(2) .. tlv)
    rc, t = parse(h)
    assert.equal(C.LR_PP_OK, rc)
    assert.same({ version = 2, len = 16 + 36 + 7, ["local"] = false, src = "2001:db8:0:0:0:0:0:1",
                  dst = "2001:db8:0:0:0:0:0:2", sport = 1, dport = 2 }, t)
    -- the addresses decide; the TLVs need not be there yet
    rc, t = parse(h:sub(1, 16 + 36))
    assert.equal(C.LR_PP_OK, rc)
    assert.equal(16 + 36 + 7, t.len)
    assert.equal(C.LR_PP_AGAIN, (parse(h:sub(1, 16 + 35))))
    prefixes_agree(h)
  end)

  it("takes LOCAL, UNSPEC, UNIX and datagrams as the connection's own addresses", function()
    local unix = ("/run/x"):rep(1) .. ("\0"):rep(102)
    local cases = {
      { v2(0x20, 0x00, ""), 16 },                             -- LOCAL, as HAProxy's health checks
      { v2(0x20, 0xff, "anything"), 24 },                     -- LOCAL: the family is ignored
      { v2(0x21, 0x00, ""), 16 },                             -- PROXY over AF_UNSPEC
      { v2(0x21, 0x12, ip4(1, 2, 3, 4) .. ip4(5, 6, 7, 8) .. be16(1) .. be16(2)), 28 }, -- UDP
      { v2(0x21, 0x22, ("\0"):rep(36)), 52 },                 -- UDP over IPv6
      { v2(0x21, 0x31, unix .. unix), 232 },                  -- UNIX stream
      { v2(0x21, 0x10, ("\0"):rep(12)), 28 },                 -- IPv4, transport unspecified
    }
    for i, c in ipairs(cases) do
      local rc, t = parse(c[1])
      assert.equal(C.LR_PP_OK, rc, "case " .. i)
      assert.same({ version = 2, len = c[2], ["local"] = true }, t, "case " .. i)
      prefixes_agree(c[1])
    end
  end)

  it("refuses other versions, commands, families, transports and short address blocks", function()
    local a4 = ip4(1, 2, 3, 4) .. ip4(5, 6, 7, 8) .. be16(1) .. be16(2)
    local cases = {
      { v2(0x11, 0x11, a4), "PROXY v2: version is not 2" },
      { v2(0x31, 0x11, a4), "PROXY v2: version is not 2" },
      { v2(0x22, 0x11, a4), "PROXY v2: unknown command" },
      { v2(0x2f, 0x11, a4), "PROXY v2: unknown command" },
      { v2(0x21, 0x41, a4), "PROXY v2: unknown address family or transport" },
      { v2(0x21, 0x13, a4), "PROXY v2: unknown address family or transport" },
      { v2(0x21, 0x11, a4:sub(1, 11)), "PROXY v2: address block shorter than its family's" },
      { v2(0x21, 0x21, a4), "PROXY v2: address block shorter than its family's" },
      { v2(0x21, 0x31, ("\0"):rep(215)), "PROXY v2: address block shorter than its family's" },
      { "\r\n\r\n\0\r\nQUIT!" .. "\33\17\0\12" .. a4, "not a PROXY protocol header" },
      { "\r\nGET / HTTP/1.1\r\n", "not a PROXY protocol header" },
    }
    for i, c in ipairs(cases) do
      local rc, reason = parse(c[1])
      assert.equal(C.LR_PP_BAD, rc, "case " .. i)
      assert.equal(c[2], reason, "case " .. i)
      prefixes_agree(c[1])
    end
  end)

  it("never says more than it was given, on random and mutated bytes", function()
    local base = v2(0x21, 0x11, ip4(10, 0, 0, 1) .. ip4(10, 0, 0, 2) .. be16(80) .. be16(81))
    local line = "PROXY TCP4 10.0.0.1 10.0.0.2 80 81\r\n"
    local seed = 12345
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
    for _ = 1, 3000 do
      local s = (rnd(2) == 0 and base or line)
      local b = { s:byte(1, -1) }
      for _ = 1, 1 + rnd(3) do b[1 + rnd(#b)] = rnd(256) end
      s = string.char(unpack(b))
      local rc, t = parse(s)
      assert.truthy(rc == C.LR_PP_OK or rc == C.LR_PP_AGAIN or rc == C.LR_PP_BAD)
      if rc == C.LR_PP_OK and t.version == 1 then
        assert.truthy(t.len <= #s and s:sub(t.len - 1, t.len) == "\r\n")
      end
    end
  end)
end)
