-- vmess:// share links (lua/luaray/link.lua): the exact v2rayN text, its own
-- base64 and JSON, and the round trip.  lua-cjson is the independent judge
-- of the JSON we write.
local link = require "luaray.link"
local config = require "luaray.config"
local cjson = require "cjson"

local UUID = "de305d54-75b4-431b-adb2-eb6b9e546014"
local ALICE = { id = UUID, email = "alice@example.com", alter_id = 0 }

-- Base64 of the JSON below, computed with Python's json and base64 modules.
local ALICE_LINK = "vmess://eyJ2IjoiMiIsInBzIjoiYWxpY2VAZXhhbXBsZS5jb20iLCJhZGQiOiIyMDMuMC4xMTMu" ..
  "NSIsInBvcnQiOiIxMDA4NiIsImlkIjoiZGUzMDVkNTQtNzViNC00MzFiLWFkYjItZWI2YjllNTQ2MDE0Iiwi" ..
  "YWlkIjoiMCIsInNjeSI6ImFlcy0xMjgtZ2NtIiwibmV0IjoidGNwIiwidHlwZSI6Im5vbmUiLCJob3N0Ijoi" ..
  "IiwicGF0aCI6IiIsInRscyI6IiIsInNuaSI6IiIsImFscG4iOiIifQ=="
local ALICE_JSON = '{"v":"2","ps":"alice@example.com","add":"203.0.113.5","port":"10086",' ..
  '"id":"de305d54-75b4-431b-adb2-eb6b9e546014","aid":"0","scy":"aes-128-gcm","net":"tcp",' ..
  '"type":"none","host":"","path":"","tls":"","sni":"","alpn":""}'
-- The same way: a WebSocket + TLS inbound (design.md 6's "vmess-wss") with -H vpn.example.net.
local WSS_LINK = "vmess://eyJ2IjoiMiIsInBzIjoiYWxpY2VAZXhhbXBsZS5jb20iLCJhZGQiOiJ2cG4uZXhhbXBs" ..
  "ZS5uZXQiLCJwb3J0IjoiNDQzIiwiaWQiOiJkZTMwNWQ1NC03NWI0LTQzMWItYWRiMi1lYjZiOWU1NDYwMTQi" ..
  "LCJhaWQiOiIwIiwic2N5IjoiYXV0byIsIm5ldCI6IndzIiwidHlwZSI6Im5vbmUiLCJob3N0IjoiIiwicGF0" ..
  "aCI6Ii9yYXk/ZWQ9MjA0OCIsInRscyI6InRscyIsInNuaSI6InZwbi5leGFtcGxlLm5ldCIsImFscG4iOiJo" ..
  "dHRwLzEuMSJ9"

describe("vmess_link", function()
  it("writes the v2rayN link exactly", function()
    local s = link.vmess_link(ALICE, "203.0.113.5", 10086, { security = "aes-128-gcm" })
    assert.equal(ALICE_LINK, s)
    assert.equal(ALICE_JSON, link.base64_decode(s:sub(9)))
    -- the port may come as a string; the result is the same
    assert.equal(ALICE_LINK, link.vmess_link(ALICE, "203.0.113.5", "10086", { security = "aes-128-gcm" }))
  end)

  it("defaults security to auto and writes alter_id as aid", function()
    local s = link.vmess_link({ id = UUID, email = "bob", alter_id = 64 }, "::1", 443)
    local t = cjson.decode(link.base64_decode(s:sub(9)))
    assert.same({ v = "2", ps = "bob", add = "::1", port = "443", id = UUID, aid = "64",
                  scy = "auto", net = "tcp", type = "none", host = "", path = "", tls = "",
                  sni = "", alpn = "" }, t)
  end)

  it("round-trips through parse_vmess_link", function()
    local user = { id = UUID, email = 'q"uote\\back/slash\ttab\1ctl \195\169t\195\169 \240\159\152\128',
                   alter_id = 7 }
    local s = link.vmess_link(user, "vmess.example", 65535, { security = "chacha20-poly1305" })
    local t = assert(link.parse_vmess_link(s))
    local expected = { v = "2", ps = user.email, add = "vmess.example", port = "65535", id = UUID,
                       aid = "7", scy = "chacha20-poly1305", net = "tcp", type = "none",
                       host = "", path = "", tls = "", sni = "", alpn = "" }
    assert.same(expected, t)
    assert.same(expected, cjson.decode(link.base64_decode(s:sub(9))))
  end)

  it("makes a link for a user of a loaded config", function()
    local cfg = assert(config.load_string(
      'luaray.user { id = "' .. UUID:upper() .. '", email = "alice@example.com" }\n' ..
      'luaray.inbound "v" { type = "vmess", listen = "0.0.0.0:10086" }\n' ..
      'luaray.outbound "d" { type = "direct" }\n', "=cfg.lua"))
    local s = link.vmess_link(cfg.users[1], "203.0.113.5", cfg.inbounds[1].listen.port,
                              { security = "aes-128-gcm" })
    assert.equal(ALICE_LINK, s)
  end)

  it("writes the transport and TLS of a ws + TLS inbound exactly", function()
    local cfg = assert(config.load("spec/lua/fixtures/design_transports.lua"))
    local wss = cfg.inbounds[1]
    local s = link.vmess_link(cfg.users[1], "vpn.example.net", wss.listen.port,
                              { transport = wss.transport, tls = wss.tls })
    assert.equal(WSS_LINK, s)
  end)

  -- v2rayN's fields for each transport, read back by lua-cjson
  local function fields(host, keys)
    local cfg = assert(config.load_string(
      'luaray.user { id = "' .. UUID .. '", email = "alice@example.com" }\n' ..
      'luaray.inbound "v" { type = "vmess", listen = "0.0.0.0:443", ' .. keys .. ' }\n' ..
      'luaray.outbound "d" { type = "direct" }\n', "=cfg.lua"))
    local ib = cfg.inbounds[1]
    local s = link.vmess_link(cfg.users[1], host, 443, { transport = ib.transport, tls = ib.tls })
    local t = cjson.decode(link.base64_decode(s:sub(9)))
    return { t.net, t.type, t.host, t.path, t.tls, t.sni, t.alpn }
  end
  local TLS = 'tls = { cert = "c.pem", key = "k.pem" }, '

  it("fills net, type, host, path, tls, sni and alpn from the inbound", function()
    -- bare TCP, with and without TLS (default ALPN h2, http/1.1: both usable)
    assert.same({ "tcp", "none", "", "", "", "", "" }, fields("vpn.example.net", ""))
    assert.same({ "tcp", "none", "", "", "tls", "vpn.example.net", "h2,http/1.1" },
                fields("vpn.example.net", TLS:sub(1, -3)))
    -- WebSocket: path, Host (the SNI too), early data as ?ed=N; a ws client must not offer h2
    assert.same({ "ws", "none", "", "/ray", "", "", "" }, fields("203.0.113.5", 'transport = { type = "ws", path = "/ray" }'))
    assert.same({ "ws", "none", "cdn.example.com", "/ray?ed=4096", "tls", "cdn.example.com", "http/1.1" },
                fields("203.0.113.5", TLS .. 'transport = { type = "ws", path = "/ray", host = "cdn.example.com", ' ..
                       'max_early_data = 4096 }'))
    assert.same({ "ws", "none", "", "/r?x=1&ed=10", "tls", "", "http/1.1" },
                fields("203.0.113.5", TLS .. 'transport = { type = "ws", path = "/r?x=1", max_early_data = 10 }'))
    -- HTTPUpgrade
    assert.same({ "httpupgrade", "none", "up.example", "/up", "tls", "up.example", "http/1.1" },
                fields("2001:db8::1", TLS .. 'transport = { type = "httpupgrade", path = "/up", host = "up.example" }'))
    -- gRPC: the service name as path, the mode as type, h2 only
    assert.same({ "grpc", "gun", "", "TunService", "tls", "grpc.example", "h2" },
                fields("grpc.example", TLS .. 'transport = { type = "grpc", service_name = "TunService" }'))
    assert.same({ "grpc", "multi", "", "s", "", "", "" },
                fields("grpc.example", 'transport = { type = "grpc", service_name = "s", multi = true }'))
    -- an address as the link's host: no SNI to give
    assert.same({ "tcp", "none", "", "", "tls", "", "h2,http/1.1" }, fields("198.51.100.4", TLS:sub(1, -3)))
  end)

  it("raises on misuse", function()
    assert.has_error(function() link.vmess_link(nil, "h", 1) end)
    assert.has_error(function() link.vmess_link({}, "h", 1) end)
    assert.has_error(function() link.vmess_link(ALICE, "", 1) end)
    assert.has_error(function() link.vmess_link(ALICE, "h", 0) end)
    assert.has_error(function() link.vmess_link(ALICE, "h", 65536) end)
    assert.has_error(function() link.vmess_link(ALICE, "h", "x") end)
  end)
end)

describe("parse_vmess_link", function()
  it("accepts URL-safe base64, missing padding and surrounding space", function()
    -- a payload whose base64 has '+', '/' and padding
    local json = '{"ps":"~~~>>>???","port":443,"aid":0,"tls":"tls","x":true,"y":null}'
    local std = link.base64_encode(json)
    assert.truthy(std:find("[+/]") and std:find("=$"))
    local url = std:gsub("+", "-"):gsub("/", "_"):gsub("=+$", "")
    for _, s in ipairs({ "vmess://" .. std, "vmess://" .. url, "  VMESS://" .. url .. "\n" }) do
      assert.same({ ps = "~~~>>>???", port = 443, aid = 0, tls = "tls", x = true },
                  link.parse_vmess_link(s))
    end
  end)

  it("refuses what is not a vmess link", function()
    local function refuses(s, err)
      local t, e = link.parse_vmess_link(s)
      assert.is_nil(t)
      assert.equal(err, e)
    end
    refuses("ss://abc", "not a vmess:// link")
    refuses(nil, "not a string")
    refuses("vmess://e", "base64: truncated data")
    refuses("vmess://ab*d", "base64: invalid character \"*\"")
    refuses("vmess://ab=d", "base64: '=' inside the data")
    refuses("vmess://" .. link.base64_encode("[1]"), "JSON: expected an object")
    refuses("vmess://" .. link.base64_encode('{"a":{"b":1}}'), "JSON: unsupported value (flat objects only)")
    refuses("vmess://" .. link.base64_encode('{"a":[1]}'), "JSON: unsupported value (flat objects only)")
    refuses("vmess://" .. link.base64_encode('{"a":"b"} x'), "JSON: trailing data")
    refuses("vmess://" .. link.base64_encode('{"a":"b}'), "JSON: unterminated string")
    refuses("vmess://" .. link.base64_encode('{"a" "b"}'), "JSON: expected ':'")
    refuses("vmess://" .. link.base64_encode('{"a":"b" "c":1}'), "JSON: expected ',' or '}'")
    refuses("vmess://" .. link.base64_encode('{a:1}'), "JSON: expected a key")
    refuses("vmess://" .. link.base64_encode('{"a":"\\x"}'), "JSON: bad escape")
    refuses("vmess://" .. link.base64_encode('{"a":"\\ud83d"}'), "JSON: lone surrogate")
    refuses("vmess://" .. link.base64_encode('{"a":"\n"}'), "JSON: control character in string")
  end)
end)

describe("base64 and JSON helpers", function()
  it("match the RFC 4648 test vectors", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(v) do
      assert.equal(enc, link.base64_encode(plain))
      assert.equal(plain, link.base64_decode(enc))
      assert.equal(plain, link.base64_decode((enc:gsub("=", ""))))
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, link.base64_decode(link.base64_encode(all)))
  end)

  it("writes objects in the given order and reads escapes", function()
    assert.equal('{"b":1,"a":"x","c":true,"d":-2.5}',
                 link.json_encode_object({ { "b", 1 }, { "a", "x" }, { "c", true }, { "d", -2.5 } }))
    assert.equal("{}", link.json_encode_object({}))
    local t = assert(link.json_decode_object(
      ' { "s" : "a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00" , "n" : -1.5e3 , "z":0 } '))
    assert.same({ s = 'a"b\\c/d\b\f\n\r\t\195\169\240\159\152\128', n = -1500, z = 0 }, t)
    assert.same({}, link.json_decode_object("{}"))
  end)
end)
