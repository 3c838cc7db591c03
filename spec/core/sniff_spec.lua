-- TLS SNI and HTTP Host sniffing (core/route/sniff.c): real-shaped inputs,
-- every prefix (need more), and garbage (never a name, never a crash).
local H = require "helper"
local C, ffi = H.C, H.ffi

local out = ffi.new("char[256]")

local function be16(n) return string.char(math.floor(n / 256), n % 256) end

-- A minimal but well-formed TLS 1.2 ClientHello carrying `name`.
local function client_hello(name)
  local sni = ""
  if name then
    local entry = "\0" .. be16(#name) .. name
    local list = be16(#entry) .. entry
    sni = "\0\0" .. be16(#list) .. list
  end
  local alpn_data = be16(3) .. "\2h2"
  local alpn = "\0\16" .. be16(#alpn_data) .. alpn_data
  local exts = alpn .. sni
  local body = "\3\3" .. string.rep("r", 32) .. "\0" .. be16(4) .. "\19\1\19\2" .. "\1\0" .. be16(#exts) .. exts
  local hs = "\1\0" .. be16(#body) .. body
  return "\22\3\1" .. be16(#hs) .. hs
end

local function sni(s) local rc = C.lr_sniff_tls_sni(H.buf(s), #s, out, 256); return rc, rc == 1 and ffi.string(out) or nil end
local function host(s) local rc = C.lr_sniff_http_host(H.buf(s), #s, out, 256); return rc, rc == 1 and ffi.string(out) or nil end

describe("sniffing", function()
  it("finds the SNI of a ClientHello, lower-cased, and needs more bytes for every prefix", function()
    local ch = client_hello("WWW.Example.COM")
    assert.same({ 1, "www.example.com" }, { sni(ch) })
    for n = 1, #ch - 1 do
      assert.equal(0, (sni(ch:sub(1, n))), "prefix " .. n)
    end
  end)

  it("says no SNI for a ClientHello without one, and not TLS for other bytes", function()
    assert.equal(-1, (sni(client_hello(nil))))
    assert.equal(-1, (sni("GET / HTTP/1.1\r\n")))
    assert.equal(-1, (sni("\22\2\0\0\5")))
    assert.equal(-1, (sni(client_hello("bad name!"))))
  end)

  it("finds the HTTP Host without its port, and needs more bytes before the header ends", function()
    local req = "GET /x HTTP/1.1\r\nUser-Agent: t\r\nHost: Sub.Example.org:8080\r\n\r\n"
    assert.same({ 1, "sub.example.org" }, { host(req) })
    assert.equal(0, (host("GE")))
    assert.equal(0, (host("GET / HTTP/1.1\r\nUser-Agent: x\r\n")))
    assert.equal(-1, (host("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")))
    assert.equal(-1, (host("\22\3\1\0\5hello")))
  end)

  it("never reports a name for random or truncated-and-mutated input", function()
    math.randomseed(4242)
    local ch = client_hello("a.example")
    for i = 1, 3000 do
      local s
      if i % 2 == 0 then
        local t = {}
        for k = 1, math.random(0, 300) do t[k] = string.char(math.random(0, 255)) end
        s = table.concat(t)
      else
        local pos = math.random(1, #ch)
        s = ch:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. ch:sub(pos + 1)
      end
      local rc, name = sni(s)
      assert.is_true(rc == -1 or rc == 0 or (rc == 1 and name:match("^[%w%-%._]+$") ~= nil))
      host(s)
    end
  end)
end)
