#!/usr/bin/env luajit
-- Writes the seed corpora spec/fuzz/corpus/<target>/ from the byte-exact vectors
-- in spec/vectors/ (real v2ray 4.34 requests and replies, header and chunk
-- vectors), a real v2ray mux session (spec/fuzz/vectors/mux_v2ray_client.json,
-- from spec/fuzz/tools/capture_mux.lua) plus hand-made structured inputs, in
-- each target's input format
-- (see the comment at the top of spec/fuzz/targets/<target>.c).
--
--   luajit spec/fuzz/seeds.lua            (from the repository root; needs lua-cjson)
--
-- The seeds are committed; run this again after changing an input format
-- or the vectors.  Existing files of the same name are overwritten, others
-- are left alone.
local cjson = require("cjson")
local bit = require("bit")

local function readjson(name)
    local f = assert(io.open("spec/vectors/" .. name .. ".json", "rb"))
    local s = f:read("*a")
    f:close()
    return cjson.decode(s)
end

local function hex(s)
    assert(#s % 2 == 0, "odd hex")
    return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

local function u8(v) return string.char(v % 256) end
local function be16(v) return string.char(math.floor(v / 256) % 256, v % 256) end

local written = 0
local function seed(target, name, bytes)
    os.execute("mkdir -p spec/fuzz/corpus/" .. target)
    local f = assert(io.open("spec/fuzz/corpus/" .. target .. "/" .. name, "wb"))
    f:write(bytes)
    f:close()
    written = written + 1
end

local REQ = {"fuzz_req_aead_1user", "fuzz_req_legacy_1user", "fuzz_req_1000users"}
local function req_seed(name, bytes)
    for _, t in ipairs(REQ) do seed(t, name, bytes) end
end

local SEC_IDX = {[1] = 0, [3] = 1, [4] = 2, [5] = 3}
local KEY = hex("000102030405060708090a0b0c0d0e0f")
local IV = hex("101112131415161718191a1b1c1d1e1f")

---------------------------------------------------------------- requests
-- raw: ctrl 0x00 (replay state on), skew 0 (now = T), the wire bytes
for i, c in ipairs(readjson("sessions_v2ray_client").cases) do
    req_seed(("v2ray-client-%d-%s"):format(i, c.decoded_by_oracle.mode),
             "\0\0" .. hex(c.client_request_wire))
end
for _, c in ipairs(readjson("sessions_v2ray_server").cases) do
    local name = c.description:match("^([%w_]+):")
    req_seed("oracle-" .. name, "\0\0" .. hex(c.header_wire) ..
             hex(c.request_body_wire) .. hex(c.request_eos_wire))
end
for _, f in ipairs({"request_header_aead", "request_header_legacy"}) do
    for i, c in ipairs(readjson(f).cases) do
        req_seed(("%s-%d"):format(f, i), "\0\0" .. hex(c.header_wire))
        -- the same header with the replay state full, and 130 s later
        req_seed(("%s-%d-full"):format(f, i), "\4\0" .. hex(c.header_wire))
        req_seed(("%s-%d-late"):format(f, i), "\0\127" .. hex(c.header_wire))
    end
end

-- structured: ctrl 0x01, skew, mode, user (999: the vectors' user in every
-- table), id index, ts skew, version, V, option, security, padding length,
-- command, port, atyp, address, key, iv, padding, R4, nonce, mutations
-- (atyp % 3: 0 IPv4, 1 domain, 2 IPv6; bit 7: domain bytes used as they are)
local function req_struct(o)
    local addr, kind = nil, o.atyp % 3
    if kind == 0 then addr = "\127\0\0\1"
    elseif kind == 1 then addr = u8(#o.domain) .. o.domain
    else addr = ("\0"):rep(15) .. "\1" end
    local ts = u8(o.ts or 0)
    if o.ts == 0x80 then ts = ts .. "\5"           -- ts = -1 - 5
    elseif o.ts == 127 then ts = ts .. be16(7) end -- ts = T + 100007
    return "\1" .. u8(o.skew or 0) .. u8(o.mode) .. be16(999) .. u8(o.ix or 0) ..
        ts .. u8(o.version or 1) .. u8(o.v or 0x41) ..
        u8(o.option) .. u8(o.sec) .. u8(o.pad or 0) .. u8(o.cmd or 0) ..
        be16(o.port or 41545) .. u8(o.atyp) .. addr .. KEY .. IV ..
        ("\161\162\163\164\165\166\167\168\169\170\171\172\173\174\175"):sub(1, o.pad or 0) ..
        "\192\255\238\1" .. "\1\2\3\4\5\6\7\1" .. u8(o.mut or 0) .. (o.tail or "")
end
local structs = {
    {"aead-gcm-ipv4", {mode = 0, option = 0x0d, sec = 3, pad = 4, atyp = 0}},
    {"aead-chacha-domain", {mode = 0, option = 0x01, sec = 4, atyp = 1, domain = "vmess.test"}},
    {"aead-none-udp-ipv6", {mode = 0, option = 0x05, sec = 5, cmd = 1, atyp = 2}},
    {"aead-mux", {mode = 0, option = 0x0d, sec = 3, cmd = 2, atyp = 0}},
    {"aead-authlen", {mode = 0, option = 0x1d, sec = 4, pad = 15, atyp = 0}},
    {"aead-sec0", {mode = 0, option = 0x01, sec = 0, atyp = 0}},
    {"aead-sec2-refused", {mode = 0, option = 0x01, sec = 2, atyp = 0}},
    {"aead-padding-no-mask", {mode = 0, option = 0x09, sec = 3, atyp = 0}},
    {"aead-bad-domain", {mode = 0, option = 0x01, sec = 3, atyp = 0x82, domain = "a b"}},
    {"aead-bad-command", {mode = 0, option = 0x01, sec = 3, cmd = 0x85, atyp = 0}},
    {"aead-ts-edge", {mode = 0, option = 0x0d, sec = 3, ts = 120, atyp = 0}},
    {"aead-ts-negative", {mode = 0, option = 0x0d, sec = 3, ts = 0x80, atyp = 0}},
    {"aead-ts-far", {mode = 0, option = 0x0d, sec = 3, ts = 127, atyp = 0}},
    {"aead-version0-v2", {mode = 0, version = 0, option = 0x01, sec = 3, atyp = 0}},
    {"aead-mutated", {mode = 0, option = 0x0d, sec = 3, atyp = 0, mut = 0xff}},
    {"aead-with-body", {mode = 0, option = 0x0d, sec = 3, atyp = 0, tail = ("x"):rep(40)}},
    {"legacy-chacha-main", {mode = 1, option = 0x0d, sec = 4, pad = 3, atyp = 0}},
    {"legacy-gcm-alt0", {mode = 1, ix = 1, option = 0x01, sec = 3, atyp = 1, domain = "example.com"}},
    {"legacy-cfb-alt3", {mode = 1, ix = 4, option = 0x01, sec = 1, atyp = 2}},
    {"legacy-alt-out-of-range", {mode = 1, ix = 5, option = 0x01, sec = 1, atyp = 0}},
    {"legacy-ts-out", {mode = 1, ts = 126, option = 0x01, sec = 3, atyp = 0}},
    {"legacy-mux", {mode = 1, option = 0x05, sec = 5, cmd = 2, atyp = 0}},
    {"legacy-long-domain", {mode = 1, option = 0x0d, sec = 3, pad = 15, atyp = 1, domain = ("a"):rep(255)}},
    {"legacy-mutated", {mode = 1, option = 0x0d, sec = 3, atyp = 0, mut = 0xf9}},
}
for _, s in ipairs(structs) do req_seed("struct-" .. s[1], req_struct(s[2])) end
-- forged (ctrl 0x11): mode, user, id index, ts skew, fix-FNV, then AEAD:
-- L, plaintext, R4, nonce / legacy: length, plaintext
local plain = hex(readjson("request_header_aead").cases[1].header_plain)
req_seed("forge-aead-fnv", "\17\0\0" .. be16(999) .. "\0\0\1" .. be16(#plain) .. plain .. "\1\2\3\4" .. ("\9"):rep(8))
req_seed("forge-aead-long", "\17\0\0" .. be16(999) .. "\0\0\1" .. be16(400) .. plain)
req_seed("forge-aead-short", "\17\0\0" .. be16(999) .. "\0\0\1" .. be16(41) .. plain)
req_seed("forge-legacy-fnv", "\17\0\1" .. be16(999) .. "\0\0\1" .. be16(#plain) .. plain)
req_seed("forge-legacy-alt-fnv", "\17\0\1" .. be16(999) .. "\2\0\1" .. be16(#plain) .. plain)

---------------------------------------------------------------- responses
-- raw: ctrl (1 legacy | sec index << 2), expect_v, split seed, option,
-- respKey, respIV, the bytes a server sent
local function resp_raw(legacy, sec, v, opt, key, iv, wire)
    return u8((legacy and 1 or 0) + SEC_IDX[sec] * 4) .. u8(v) .. "\7" ..
        u8(opt) .. key .. iv .. wire
end
for _, c in ipairs(readjson("sessions_v2ray_server").cases) do
    local name = c.description:match("^([%w_]+):")
    seed("fuzz_resp", "v2ray-" .. name,
         resp_raw(c.header_mode == "legacy", c.security_byte, c.response_v,
                  c.option, hex(c.response_body_key), hex(c.response_body_iv),
                  hex(c.v2ray_response_wire)))
end
for _, c in ipairs(readjson("response_header").cases) do
    local legacy = c.description:match("^legacy") ~= nil
    seed("fuzz_resp", legacy and "header-legacy" or "header-aead",
         resp_raw(legacy, 1, 0x42, 0, hex(c.response_key), hex(c.response_iv),
                  hex(c.wire)))
end
for i, c in ipairs(readjson("command_switch_account").cases) do
    seed("fuzz_resp", ("switch-account-%d"):format(i),
         resp_raw(false, 3, 0, 0, KEY, IV, hex(c.bytes)))
end
-- structured: ctrl | 2, then V, c (1 command, (c >> 1) & 3 chunks, 8 end),
-- [command fields], chunk lengths and payloads, mutations
local function resp_struct(ctrl, opt, v, c, fields)
    return u8(ctrl + 2) .. u8(v) .. "\3" .. u8(opt) .. KEY .. IV .. u8(v) ..
        u8(c) .. (fields or "") .. "\0"
end
local sw = u8(9) .. "127.0.0.1" .. be16(10086) .. hex("de305d5475b4431badb2eb6b9e546014") ..
    be16(4) .. "\0\5"
local chunks = be16(4) .. "hello" .. be16(5) .. "world!"   -- 1 + n % 2048 bytes
seed("fuzz_resp", "struct-aead-gcm", resp_struct(4, 0x0d, 0x42, 2 * 2 + 8, chunks))
seed("fuzz_resp", "struct-aead-switch", resp_struct(8, 0x05, 0x43, 1 + 2 + 8, sw .. be16(4) .. "hello"))
seed("fuzz_resp", "struct-legacy-cfb", resp_struct(1, 0x01, 0x44, 2 * 2 + 8, chunks))
seed("fuzz_resp", "struct-legacy-cfb-switch", resp_struct(1, 0x05, 0x45, 1 + 2 * 2 + 8, sw .. chunks))
seed("fuzz_resp", "struct-legacy-none-raw", resp_struct(1 + 12, 0x00, 0x46, 2 * 2, chunks))
seed("fuzz_resp", "struct-wrong-v", resp_struct(0, 0x01, 0x47, 0, "") )
-- forged AEAD headers (c & 0x10): length, then plaintext (V is forced)
local function fnv1a32(s)
    local h = 0x811c9dc5
    for i = 1, #s do
        h = require("bit").bxor(h, s:byte(i)) % 4294967296
        -- h * 16777619 = h * 2^24 + h * 403 (mod 2^32), exact in doubles
        h = ((h % 256) * 16777216 + h * 403) % 4294967296
    end
    return h
end
local function be32(v) return be16(math.floor(v / 65536)) .. be16(v % 65536) end
assert(fnv1a32("") == 0x811c9dc5 and fnv1a32("a") == 0xe40c292c, "fnv1a32")
seed("fuzz_resp", "forge-aead-switch", resp_struct(4, 0x0d, 0x48, 0x10,
     be16(4 + 4 + #sw) .. "\72\0\1" .. u8(4 + #sw) .. be32(fnv1a32(sw)) .. sw))
seed("fuzz_resp", "forge-legacy-switch-fnv", resp_struct(1, 0x01, 0x4a, 0x30,
     be16(4 + 4 + #sw) .. "\74\0\1" .. u8(4 + #sw) .. "\0\0\0\0" .. sw))
seed("fuzz_resp", "forge-aead-max", resp_struct(4, 0x0d, 0x49, 0x10, be16(259) .. "\73\0\1\255"))

---------------------------------------------------------------- body
-- raw: security, option, flags (1 UDP, 0x10 response direction, 0x20
-- legacy keys), split seed, request key, request IV, the wire
local function body_raw(sec, opt, flags, key, iv, wire)
    return u8(sec) .. u8(opt) .. u8(flags) .. "\5" .. key .. iv .. wire
end
for _, f in ipairs({"chunk_aes128gcm", "chunk_chacha20poly1305", "chunk_legacy_cfb", "chunk_none"}) do
    local d = readjson(f)
    for _, c in ipairs(d.cases) do
        seed("fuzz_body", ("%s-opt%02x"):format(f, c.option),
             body_raw(d.security_byte, c.option, 0, hex(c.key), hex(c.iv),
                      hex(c.chunk0) .. hex(c.chunk1) .. hex(c.eos)))
    end
end
for _, c in ipairs(readjson("sessions_v2ray_server").cases) do
    local name = c.description:match("^([%w_]+):")
    local key, iv = hex(c.request_body_key), hex(c.request_body_iv)
    seed("fuzz_body", "request-" .. name,
         body_raw(c.security_byte, c.option, 0, key, iv,
                  hex(c.request_body_wire) .. hex(c.request_eos_wire)))
    -- v2ray's reply body: skip the response header (legacy: 4 bytes
    -- through the body's CFB, so only for non-cfb bodies; AEAD: 38 bytes)
    local legacy = c.header_mode == "legacy"
    if not (legacy and c.security_byte == 1) then
        local wire = hex(c.v2ray_response_wire):sub(legacy and 5 or 39)
        seed("fuzz_body", "response-" .. name,
             body_raw(c.security_byte, c.option, 0x10 + (legacy and 0x20 or 0),
                      key, iv, wire))
    end
end
-- structured: flags | 2, then c (count, 0x40 end chunk, 0x80 big first),
-- lengths and payloads, mutations
local function body_struct(sec, opt, flags, c, parts)
    return u8(sec) .. u8(opt) .. u8(flags + 2) .. "\9" .. KEY .. IV .. u8(c) ..
        parts .. "\0"
end
local two = be16(4) .. "hello" .. be16(5) .. "world!"
for _, s in ipairs({1, 3, 4, 5}) do
    for _, o in ipairs({0x00, 0x01, 0x05, 0x0d, 0x1d}) do
        seed("fuzz_body", ("struct-sec%d-opt%02x-tcp"):format(s, o), body_struct(s, o, 0, 2 + 0x40, two))
        seed("fuzz_body", ("struct-sec%d-opt%02x-udp"):format(s, o), body_struct(s, o, 1, 2 + 0x40, two))
    end
end
seed("fuzz_body", "struct-gcm-big", body_struct(3, 0x0d, 0, 1 + 0x40 + 0x80, be16(65000)))
seed("fuzz_body", "struct-cfb-smallcap", body_struct(1, 0x0d, 8, 2 + 0x40, two))
seed("fuzz_body", "struct-gcm-random-padding", body_struct(3, 0x0d, 4, 2 + 0x40, two))
seed("fuzz_body", "struct-chacha-inplace-resp", body_struct(4, 0x1d, 0x10, 2 + 0x40, two))
-- forged authenticated lengths (flags 0x40): count, then (length, n, bytes)
seed("fuzz_body", "forge-authlen-gcm", body_raw(3, 0x1d, 0x40, KEY, IV,
     "\3" .. be16(65519) .. be16(0) .. be16(0) .. be16(4) .. be16(4) .. "abcd"))
seed("fuzz_body", "forge-authlen-chacha", body_raw(4, 0x11, 0x40, KEY, IV,
     "\2" .. be16(65519) .. be16(0) .. be16(0) .. be16(0)))
seed("fuzz_body", "refused-sec2", body_raw(2, 1, 0, KEY, IV, ""))
seed("fuzz_body", "refused-padding-no-mask", body_raw(3, 9, 0, KEY, IV, ""))

---------------------------------------------------------------- socks
seed("fuzz_socks_addr", "ipv4", "\1\127\0\0\1" .. be16(80))
seed("fuzz_socks_addr", "ipv6", "\4" .. ("\0"):rep(15) .. "\1" .. be16(443))
seed("fuzz_socks_addr", "domain", "\3\11example.com" .. be16(443))
seed("fuzz_socks_addr", "domain-ipv4", "\3\009127.0.0.1" .. be16(53))
seed("fuzz_socks_addr", "domain-ipv6", "\3\14::ffff:1.2.3.4" .. be16(53))
seed("fuzz_socks_addr", "domain-long", "\3\255" .. ("a"):rep(255) .. be16(1))
seed("fuzz_socks_addr", "domain-empty", "\3\0" .. be16(1))
seed("fuzz_socks_addr", "domain-space", "\3\3a b" .. be16(1))
seed("fuzz_socks_addr", "short", "\1\127\0")

-- ctrl (1 account, 2 UDP, (ctrl >> 2) & 3 after the dial, ctrl >> 4 failing
-- reply), split seed, dial error, the client's bytes
local greet, greet_auth = "\5\1\0", "\5\2\0\2"
local auth = "\1\4user\4pass"
seed("fuzz_socks", "connect-ipv4", "\4\1\0" .. greet .. "\5\1\0\1\127\0\0\1" .. be16(80))
seed("fuzz_socks", "connect-domain-auth", "\5\2\1" .. greet_auth .. auth .. "\5\1\0\3\11example.com" .. be16(443))
seed("fuzz_socks", "connect-bad-auth", "\1\3\0" .. greet_auth .. "\1\4user\4nope" .. "\5\1\0\1\1\1\1\1" .. be16(1))
seed("fuzz_socks", "connect-ipv6-failed", "\8\9\2" .. greet .. "\5\1\0\4" .. ("\0"):rep(15) .. "\1" .. be16(22))
seed("fuzz_socks", "udp-associate", "\2\1\0" .. greet .. "\5\3\0\1\0\0\0\0" .. be16(0))
seed("fuzz_socks", "udp-refused", "\0\1\0" .. greet .. "\5\3\0\1\0\0\0\0" .. be16(0))
seed("fuzz_socks", "bind-refused", "\0\1\0" .. greet .. "\5\2\0\1\0\0\0\0" .. be16(0))
seed("fuzz_socks", "reply-fails", "\20\1\0" .. greet .. "\5\1\0\1\127\0\0\1" .. be16(80))

---------------------------------------------------------------- http
seed("fuzz_http", "connect", "\4\1\0CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
seed("fuzz_http", "connect-ipv6", "\4\2\0CONNECT [::1]:8443 HTTP/1.1\r\n\r\n")
seed("fuzz_http", "connect-auth", "\5\3\1CONNECT 10.0.0.1:22 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n")
seed("fuzz_http", "connect-noauth", "\1\1\0CONNECT a.b:1 HTTP/1.1\r\n\r\n")
seed("fuzz_http", "get-absolute", "\4\4\0GET http://example.com/index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n" ..
     "Proxy-Connection: keep-alive\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\nAccept: */*\r\n\r\nbody")
seed("fuzz_http", "get-auth-port", "\9\5\2POST http://127.0.0.1:8080 HTTP/1.0\r\nproxy-authorization: Basic dXNlcjpwYXNz\r\n" ..
     "Content-Length: 4\r\n\r\nabcd")
seed("fuzz_http", "get-origin-form", "\0\6\0GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
seed("fuzz_http", "bad-version", "\0\7\0GET http://a/ FTP/1.1\r\n\r\n")
seed("fuzz_http", "too-large", "\0\8\0GET http://a/ HTTP/1.1\r\nX: " .. ("y"):rep(16400) .. "\r\n\r\n")
-- ctrl 4/5: connected, so the body framing runs on the bytes after the head
local CRED = "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
seed("fuzz_http", "post-length-pipelined", "\4\9\0POST http://example.com/up HTTP/1.1\r\nHost: x\r\n" ..
     "Content-Length: 5\r\n\r\nhelloGET http://other.example/ HTTP/1.1\r\n" .. CRED .. "\r\n")
seed("fuzz_http", "post-chunked-pipelined", "\4\10\0POST http://example.com/c HTTP/1.1\r\n" ..
     "Transfer-Encoding: gzip, chunked\r\n\r\n5;a=\"b\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n" ..
     "GET http://x/ HTTP/1.1\r\n\r\n")
seed("fuzz_http", "post-chunked-bad", "\4\11\0POST http://a/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" ..
     "3\r\nabc\r\nzz\r\n0\r\n\r\n")
seed("fuzz_http", "pipelined-auth-hop", "\5\12\0GET http://a.example/ HTTP/1.1\r\n" .. CRED ..
     "Connection: X-Hop, keep-alive\r\nX-Hop: 1\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\n" ..
     "Proxy-Foo: 1\r\n\r\nGET http://b.example/ HTTP/1.1\r\n" .. CRED .. "\r\n")
seed("fuzz_http", "host-replaced", "\4\13\0GET http://Example.COM:8080?q=1 HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")
seed("fuzz_http", "length-list", "\4\14\0POST http://a/ HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 03\r\n" ..
     "X-A:\tb \r\n\r\nabcdef")
seed("fuzz_http", "bare-lf", "\4\15\0GET http://a/ HTTP/1.1\nHost: a\n\n")
seed("fuzz_http", "obs-fold", "\4\16\0GET http://a/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
seed("fuzz_http", "space-before-colon", "\4\17\0GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n")
seed("fuzz_http", "length-and-chunked", "\4\18\0POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n" ..
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
seed("fuzz_http", "lengths-differ", "\4\19\0POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
seed("fuzz_http", "chunked-not-last", "\4\20\0POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
seed("fuzz_http", "nul-in-header", "\4\21\0GET http://a/ HTTP/1.1\r\nX: a\0b\r\n\r\n")
seed("fuzz_http", "version-1-2", "\4\22\0GET http://a/ HTTP/1.2\r\n\r\n")

---------------------------------------------------------------- sniffing
-- ctrl (1 HTTP, else TLS), cap - 1, the client's first bytes
local function client_hello(name, extra)
    local sni = ""
    if name then
        local entry = "\0" .. be16(#name) .. name
        local list = be16(#entry) .. entry
        sni = "\0\0" .. be16(#list) .. list
    end
    local alpn_data = be16(3) .. "\2h2"
    local alpn = "\0\16" .. be16(#alpn_data) .. alpn_data
    local exts = alpn .. (extra or "") .. sni
    local body = "\3\3" .. ("r"):rep(32) .. "\32" .. ("s"):rep(32) .. be16(4) ..
        "\19\1\19\2" .. "\1\0" .. be16(#exts) .. exts
    local hs = "\1\0" .. be16(#body) .. body
    return "\22\3\1" .. be16(#hs) .. hs
end
seed("fuzz_sniff", "tls-sni", "\0\255" .. client_hello("WWW.Example.COM"))
seed("fuzz_sniff", "tls-sni-small-cap", "\0\4" .. client_hello("www.example.com"))
seed("fuzz_sniff", "tls-no-sni", "\0\255" .. client_hello(nil))
seed("fuzz_sniff", "tls-sni-after-padding", "\0\255" ..
     client_hello("a.example", "\0\21" .. be16(64) .. ("\0"):rep(64)))
seed("fuzz_sniff", "tls-long-name", "\0\255" .. client_hello(("a"):rep(253)))
seed("fuzz_sniff", "http-host", "\1\255GET /x HTTP/1.1\r\nUser-Agent: t\r\nHost: Sub.Example.org:8080\r\n\r\n")
seed("fuzz_sniff", "http-host-tabs", "\1\255POST / HTTP/1.0\r\nhost:\t a.b \t\r\nX: y\r\n\r\nbody")
seed("fuzz_sniff", "http-no-host", "\1\255GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
seed("fuzz_sniff", "http-ipv6-host", "\1\255CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n")

---------------------------------------------------------------- PROXY protocol
-- the bytes a proxy sends first.  haproxy-*: what Debian's HAProxy 2.6 sent
-- (send-proxy, send-proxy-v2, and v2 with proxy-v2-options
-- crc32c,unique-id,authority), client on 127.0.0.1 / ::1, then "hello".
local PP_SIG = "\r\n\r\n\0\r\nQUIT\n"
seed("fuzz_proxyproto", "haproxy-v1-tcp4",
     hex("50524f58592054435034203132372e302e302e31203132372e302e302e312035313635342031383535310d0a68656c6c6f"))
seed("fuzz_proxyproto", "haproxy-v1-tcp6",
     hex("50524f58592054435036203a3a31203a3a312033363235302031383535350d0a68656c6c6f"))
seed("fuzz_proxyproto", "haproxy-v2-tcp4",
     hex("0d0a0d0a000d0a515549540a2111000c7f0000017f000001be8c487868656c6c6f"))
seed("fuzz_proxyproto", "haproxy-v2-tcp4-tlvs",
     hex("0d0a0d0a000d0a515549540a2111003f7f0000017f000001dfc648790300048d02e10805002937463030303030313a44" ..
         "4643365f37463030303030313a343837395f36423136363635435f3030303268656c6c6f"))
seed("fuzz_proxyproto", "haproxy-v2-tcp6",
     hex("0d0a0d0a000d0a515549540a2121002400000000000000000000000000000001000000000000000000000000000000018bc8487a68656c6c6f"))
seed("fuzz_proxyproto", "v1-unknown", "PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n\r\n")
seed("fuzz_proxyproto", "v1-unknown-long", "PROXY UNKNOWN " .. ("ffff:"):rep(7) .. "ffff " ..
     ("ffff:"):rep(7) .. "ffff 65535 65535\r\n")
seed("fuzz_proxyproto", "v1-tcp6-full", "PROXY TCP6 2001:db8:0:0:1:0:0:1 ::ffff:192.0.2.1 0 65535\r\nx")
seed("fuzz_proxyproto", "v1-lf-only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")
seed("fuzz_proxyproto", "v2-local", PP_SIG .. "\32\0\0\0")
seed("fuzz_proxyproto", "v2-udp4", PP_SIG .. "\33\18\0\12" .. ("\1"):rep(12))
seed("fuzz_proxyproto", "v2-unix", PP_SIG .. "\33\49\0\216" .. ("/"):rep(216))
seed("fuzz_proxyproto", "v2-short-block", PP_SIG .. "\33\33\0\35" .. ("\2"):rep(35))

---------------------------------------------------------------- vmess links
-- mode (0 link, 1 link of base64(bytes), 2 JSON, 3 base64), the bytes
local link = dofile("lua/luaray/link.lua")
local user = { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@example.com", alter_id = 4 }
local l = link.vmess_link(user, "vmess.example.com", 443, { security = "aes-128-gcm" })
seed("fuzz_vmess_link", "link", "\0" .. l)
seed("fuzz_vmess_link", "link-urlsafe-ws", "\0  " .. l:gsub("=+$", ""):gsub("%+", "-"):gsub("/", "_") .. "\n")
local json = link.base64_decode(l:sub(9))
seed("fuzz_vmess_link", "json-in-link", "\1" .. json)
seed("fuzz_vmess_link", "json-in-link-urlsafe", "\5" .. json)
seed("fuzz_vmess_link", "json", "\2" .. json)
seed("fuzz_vmess_link", "json-escapes", "\2" .. [[{"a\u00e9\ud83d\ude00":"\"\\\/\b\f\n\r\t","n":-12.5e+3,"t":true,"f":false,"z":null}]])
seed("fuzz_vmess_link", "json-empty", "\2 { } ")
seed("fuzz_vmess_link", "json-lone-surrogate", "\2" .. [[{"a":"\udc00"}]])
seed("fuzz_vmess_link", "base64", "\3" .. l:sub(9))
seed("fuzz_vmess_link", "base64-bad", "\3QUJD=RA==")

---------------------------------------------------------------- convert / import
-- mode (0 convert the JSON, 1 import the link, 2 import vmess://base64(bytes),
-- 3 json.decode_config), the bytes
do
  local D = "/usr/share/v2ray/"
  for _, name in ipairs({ "config.json", "config_vmess.json", "vpoint_socks_vmess.json",
                          "vpoint_vmess_freedom.json" }) do
    local f = io.open(D .. name, "rb")
    if f then
      seed("fuzz_convert", "debian-" .. name, "\0" .. f:read("*a"))
      f:close()
    end
  end
  local id = "de305d54-75b4-431b-adb2-eb6b9e546014"
  seed("fuzz_convert", "server-ws-tls", "\0" .. cjson.encode {
    log = { loglevel = "info", access = "none" }, stats = {},
    api = { tag = "api", services = { "StatsService" } },
    policy = { levels = { ["0"] = { handshake = 4, connIdle = 300, uplinkOnly = 1 } } },
    inbounds = {
      { tag = "api-in", listen = "127.0.0.1", port = 10085, protocol = "dokodemo-door", settings = { address = "127.0.0.1" } },
      { tag = "in", port = 443, protocol = "vmess", settings = { clients = { { id = id, alterId = 4, email = "a@x" } } },
        streamSettings = { network = "ws", security = "tls", wsSettings = { path = "/ray", headers = { Host = "h" } },
          tlsSettings = { alpn = { "http/1.1" }, certificates = { { certificateFile = "/a", keyFile = "/b" } } } } },
      { tag = "t", port = 53, protocol = "dokodemo-door", settings = { address = "1.1.1.1", port = 53, network = "udp" } },
      { port = 12345, protocol = "dokodemo-door", settings = { followRedirect = true },
        streamSettings = { sockopt = { tproxy = "tproxy" } } } },
    outbounds = { { protocol = "freedom", settings = { domainStrategy = "UseIPv4" } },
                  { tag = "block", protocol = "blackhole" } },
    routing = { domainStrategy = "IPIfNonMatch", rules = {
      { type = "field", inboundTag = { "api-in" }, outboundTag = "api" },
      { type = "field", domain = { "geosite:cn", "full:a.b", "domain:c.d", "keyword:e", "regexp:^f", "g" },
        ip = { "geoip:private", "10.0.0.0/8" }, port = "1-1024,8080", network = "tcp,udp",
        user = { "a@x" }, protocol = { "tls" }, outboundTag = "block" } } } })
  seed("fuzz_convert", "client-grpc-mux", "\0" .. cjson.encode {
    inbounds = { { listen = "127.0.0.1", port = 1080, protocol = "socks",
                   settings = { auth = "password", udp = true, accounts = { { user = "u", pass = "p" } } } },
                 { listen = "127.0.0.1", port = 8080, protocol = "http", settings = { timeout = 30 } } },
    outbounds = { { tag = "proxy", protocol = "vmess", mux = { enabled = true, concurrency = 8 },
                    settings = { vnext = { { address = "example.com", port = 443,
                      users = { { id = id, security = "auto", experiments = "AuthenticatedLength" } } } } },
                    streamSettings = { network = "grpc", security = "tls", grpcSettings = { serviceName = "gun", multiMode = true },
                      tlsSettings = { serverName = "example.com", allowInsecure = true,
                                      certificates = { { usage = "verify", certificateFile = "/ca" } } } } } } })
  seed("fuzz_convert", "v3-format", "\0" .. [[
// v3
{ "inbound": { "port": 1, "protocol": "vmess", "settings": { "clients": [ { "id": "]] .. id .. [[" } ] } },
  /* detours */ "inboundDetour": [ { "port": "1000-2000", "protocol": "socks" } ],
  "outbound": { "protocol": "freedom" }, # hash
  "routing": { "strategy": "rules", "settings": { "rules": [ { "type": "field", "ip": [ "1.1.1.1" ], "outboundTag": "x" } ] } } }]])
  local ws = link.vmess_link(user, "vmess.example.com", 443, { security = "auto",
    transport = { type = "ws", path = "/ray", max_early_data = 2048 }, tls = { alpn = { "h2", "http/1.1" } } })
  seed("fuzz_convert", "link-ws-tls", "\1" .. ws)
  seed("fuzz_convert", "link-json-grpc", "\2" .. link.base64_decode(link.vmess_link(user, "10.0.0.1", 80,
    { transport = { type = "grpc", service_name = "gun", multi = true }, tls = { alpn = { "h2" } } }):sub(9)))
  seed("fuzz_convert", "jsonc", "\3" .. '\239\187\191// c\n{ "a": [1, /* x */ "//", # y\n {"b": null}] }')
  seed("fuzz_convert", "jsonc-open-comment", "\3{ /* ")
end

---------------------------------------------------------------- mux (Mux.Cool)
-- ctrl (1 client EOF, 2 hostile, (>> 2) & 3 client speed, (>> 4) & 3 session
-- capacity, 0x40 chatty remotes, 0x80 first read with the header), split
-- seed, event seed (2), then the client's decrypted body: Mux.Cool frames
local function mux_frame(id, status, opt, extra, data)
    local meta = be16(id) .. u8(status) .. u8(opt) .. (extra or "")
    local f = be16(#meta) .. meta
    if opt % 2 == 1 then f = f .. be16(#data) .. data end
    return f
end
local function mux_new(id, net, port, atyp, addr, data)
    local a
    if atyp == 1 then a = addr                 -- 4 bytes
    elseif atyp == 2 then a = u8(#addr) .. addr
    else a = addr end                          -- 16 bytes
    return mux_frame(id, 1, data and 1 or 0, u8(net) .. be16(port) .. u8(atyp) .. a, data)
end
local function mux_keep(id, data) return mux_frame(id, 2, 1, "", data) end
local function mux_end(id, err) return mux_frame(id, 3, err and 2 or 0, "") end
local function mux_seed(name, ctrl, split, ev, stream)
    seed("fuzz_mux", name, u8(ctrl) .. u8(split) .. be16(ev) .. stream)
end
local V6 = ("\0"):rep(15) .. "\1"
local GET = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
local DNS = "\18\52\1\0\0\1\0\0\0\0\0\0\7example\3com\0\0\1\0\1"
mux_seed("tcp-domain-data-keep-end", 1, 3, 1,
         mux_new(1, 1, 80, 2, "example.com", GET) .. mux_keep(1, "more") .. mux_end(1))
mux_seed("tcp-ipv4-nodata-then-keep", 1, 7, 2,
         mux_new(5, 1, 443, 1, "\127\0\0\1") .. mux_keep(5, ("x"):rep(300)) .. mux_end(5))
mux_seed("tcp-ipv6-error-end", 0, 9, 3,
         mux_new(2, 1, 22, 3, V6, "SSH-2.0-x\r\n") .. mux_end(2, true))
mux_seed("udp-dns-datagrams", 1, 4, 4,
         mux_new(3, 2, 53, 1, "\8\8\8\8", DNS) .. mux_keep(3, DNS) .. mux_keep(3, "x") .. mux_end(3))
mux_seed("udp-domain-nodata", 0, 5, 5,
         mux_new(4, 2, 443, 2, "quic.example", nil) .. mux_keep(4, ("q"):rep(1200)))
mux_seed("keepalive", 1, 6, 6,
         mux_frame(0, 4, 0, "") .. mux_new(1, 1, 80, 2, "a.b", "x") ..
         mux_frame(1, 4, 1, "", "discarded") .. mux_frame(0, 4, 1, "", "zz") .. mux_end(1))
mux_seed("interleaved-sessions", 1, 8, 7,
         mux_new(1, 1, 80, 2, "one.example", "a") .. mux_new(2, 2, 53, 1, "\1\1\1\1", DNS) ..
         mux_new(3, 1, 8080, 3, V6, "c") .. mux_keep(1, "aa") .. mux_keep(2, DNS) ..
         mux_keep(3, "cc") .. mux_end(2) .. mux_keep(1, "aaa") .. mux_end(1) .. mux_end(3))
mux_seed("duplicate-new", 1, 2, 8,
         mux_new(7, 1, 80, 2, "dup.example", "first") .. mux_new(7, 1, 81, 2, "dup2.example", "second") ..
         mux_keep(7, "k") .. mux_end(7))
mux_seed("end-then-keep", 1, 2, 9,
         mux_new(9, 1, 80, 2, "e.example", "x") .. mux_end(9) .. mux_keep(9, ("late"):rep(50)))
mux_seed("unknown-status-data", 1, 3, 10,
         mux_new(1, 1, 80, 2, "u.example", "x") .. mux_frame(1, 5, 1, "", "five") ..
         mux_frame(1, 0, 1, "", "zero") .. mux_keep(1, "ok") .. mux_end(1))
mux_seed("end-with-data", 1, 3, 11,
         mux_new(1, 1, 80, 2, "u.example", "x") .. mux_frame(1, 3, 1, "", "after end"))
mux_seed("bad-metalen-short", 0, 1, 12, mux_new(1, 1, 80, 2, "a.b", "x") .. be16(3) .. "\0\1\2")
mux_seed("bad-metalen-long", 0, 1, 13, mux_new(1, 1, 80, 2, "a.b", "x") .. be16(513) .. ("\0"):rep(513))
mux_seed("bad-addresses", 1, 5, 14,
         mux_new(1, 1, 80, 9, "", "x") .. mux_frame(2, 1, 0, "\1\0\80\1\1\2") ..
         mux_new(3, 1, 80, 2, "", "y") .. mux_new(4, 1, 80, 2, "nul\0.evil.test", "z") ..
         mux_new(5, 1, 80, 2, "sp ace", "w") .. mux_new(6, 3, 80, 1, "\1\2\3\4", "v") .. mux_keep(4, "q"))
mux_seed("meta-with-trailing", 1, 6, 15,
         mux_frame(1, 1, 1, "\1\0\80\2\3a.b" .. ("p"):rep(40), "x") .. mux_end(1))
local many = {}
for i = 1, 300 do many[#many + 1] = mux_new(i, 1, 80, 1, "\10\0\0\1") end
mux_seed("300-sessions", 1, 3, 16, table.concat(many))
mux_seed("300-sessions-hostile", 3, 3, 17, table.concat(many))
mux_seed("big-frames", 1, 7, 18,
         mux_new(1, 1, 80, 2, "big.example", ("B"):rep(16384)) .. mux_new(2, 2, 53, 1, "\9\9\9\9", ("U"):rep(8192)) ..
         mux_keep(1, ("b"):rep(4000)) .. mux_end(1) .. mux_end(2))
local base = mux_new(1, 1, 80, 2, "example.com", GET) .. mux_new(2, 2, 53, 1, "\8\8\8\8", DNS) ..
    mux_keep(1, ("d"):rep(2000)) .. mux_keep(2, DNS) .. mux_end(1) .. mux_end(2)
mux_seed("world-slow-client", 0x09, 11, 19, base)
mux_seed("world-stalled-client-tiny-caps", 0x3d, 12, 20, base)
mux_seed("world-small-caps-chatty", 0x61, 13, 21, base)
mux_seed("world-hostile", 0x07, 14, 22, base)
mux_seed("world-header-read", 0x81, 15, 23, base)
mux_seed("world-random-caps-open", 0x14, 16, 24, base)
-- a real session: a v2ray 4.34 client with mux on (spec/fuzz/tools/capture_mux.lua)
local mf = assert(io.open("spec/fuzz/vectors/mux_v2ray_client.json", "rb"))
local cap = cjson.decode(mf:read("*a"))
mf:close()
local real = hex(cap.mux_stream)
mux_seed("v2ray-client-session", 0x01, 5, 26, real)
mux_seed("v2ray-client-session-open", 0x00, 6, 27, real)
mux_seed("v2ray-client-session-slow-hostile", 0x0b, 7, 28, real)
mux_seed("v2ray-client-session-tiny-caps", 0x35, 8, 29, real)
mux_seed("v2ray-client-session-header-read-chatty", 0xc1, 9, 30, real)
-- and its encrypted body for the body decoder
seed("fuzz_body", "request-v2ray-mux", body_raw(cap.security, cap.option, 0, hex(cap.body_key),
     hex(cap.body_iv), hex(cap.client_wire):sub(cap.header_len + 1)))
-- XUDP (Xray): a GlobalID after the New frame's address, a destination in
-- each Keep frame of the UDP session, replies with their source
local GID = "\1\2\3\4\5\6\7\8"
local function xudp_new(id, port, data)
    return mux_frame(id, 1, 1, "\2" .. be16(port) .. "\1\127\0\0\1" .. GID, data)
end
local function xudp_keep(id, port, atyp, addr, data)
    local a = atyp == 2 and u8(#addr) .. addr or addr
    return mux_frame(id, 2, 1, "\2" .. be16(port) .. u8(atyp) .. a, data)
end
local xs = xudp_new(0, 5000, "first") .. xudp_keep(0, 5001, 1, "\127\0\0\2", "second") ..
    xudp_keep(0, 5002, 2, "name.example", "third") .. xudp_keep(0, 5000, 3, V6, "v6") ..
    xudp_keep(0, 5000, 1, "\127\0\0\1", "first-again") .. mux_keep(0, "plain") .. mux_end(0)
mux_seed("xudp-session", 1, 3, 31, xs)
mux_seed("xudp-session-hostile-chatty", 0x47, 4, 32, xs)
mux_seed("xudp-session-open-tiny", 0x30, 5, 33, xs)
mux_seed("xudp-bad-keeps", 1, 4, 34,
         xudp_new(0, 53, "q") .. mux_frame(0, 2, 1, "\2\0\1\9", "bad atyp") ..
         xudp_new(1, 53, "r") .. mux_frame(1, 2, 1, "\3\0\1\1\1\2\3\4", "tcp network") ..
         xudp_new(2, 53, "s") .. mux_frame(2, 2, 1, "\2\0", "cut") ..
         mux_new(3, 1, 80, 2, "t.example", "tcp") .. xudp_keep(3, 81, 1, "\1\2\3\4", "tcp keep with address"))
-- fuzz_mux_client: ctrl (& 7 streams - 1, 8 attach after the carrier is
-- up, 0x10 streams send/end/close midway, 0x20 small pipes), seed (2), then
-- the server's side: Keep/End/KeepAlive frames for stream ids 1..8
local function muxc_seed(name, ctrl, sd, stream)
    seed("fuzz_mux_client", name, u8(ctrl) .. be16(sd) .. stream)
end
local replies = mux_keep(1, ("a"):rep(3000)) .. mux_keep(2, DNS) .. mux_frame(0, 4, 0, "") ..
    mux_keep(3, ("c"):rep(9000)) .. mux_keep(1, "more") .. mux_frame(2, 2, 1, "\2\0\53\1\8\8\8\8", DNS) ..
    mux_end(1) .. mux_keep(1, "after end") .. mux_end(2, true) .. mux_keep(9, "unknown id") ..
    mux_frame(3, 4, 1, "", "keepalive data") .. mux_keep(3, "") .. mux_end(3)
muxc_seed("replies-3", 0x02, 1, replies)
muxc_seed("replies-3-late-attach", 0x0a, 2, replies)
muxc_seed("replies-3-chatty-small", 0x32, 3, replies)
muxc_seed("replies-8", 0x17, 4, replies .. mux_keep(8, ("h"):rep(20000)) .. mux_end(8, true))
muxc_seed("bad-metalen", 0x01, 5, mux_keep(1, "x") .. be16(600) .. ("\0"):rep(600) .. mux_keep(2, "y"))
muxc_seed("partial", 0x01, 6, mux_keep(1, "x") .. be16(4) .. "\0\1\2")
muxc_seed("empty", 0x00, 7, "")
-- fuzz_xudp_client: seed (2), datagrams going up (1, % 40), then the
-- server's side of the XUDP stream: addressed Keep frames of session 0
-- (IPv4, name, IPv6, none), KeepAlive, another session's frames, then an
-- End or a bad address or a bad metaLen
local function xudpc_seed(name, sd, nup, stream)
    seed("fuzz_xudp_client", name, be16(sd) .. u8(nup) .. stream)
end
local xreplies = xudp_keep(0, 5353, 1, "\198\51\100\7", "r1") .. mux_keep(0, "from the first") ..
    mux_frame(0, 4, 1, "", "keepalive") .. xudp_keep(7, 1, 1, "\1\2\3\4", "other session") ..
    xudp_keep(0, 53, 2, "src.example", "r3") .. xudp_keep(0, 9, 3, ("\0"):rep(15) .. "\1", ("r4"):rep(600)) ..
    mux_frame(0, 1, 1, "\2\0\1\1\1\2\3\4", "a New from the server")
xudpc_seed("replies", 1, 7, xreplies)
xudpc_seed("replies-then-end", 2, 39, xreplies .. mux_end(0) .. mux_keep(0, "after the end"))
xudpc_seed("bad-address", 3, 5, xreplies .. mux_frame(0, 2, 1, "\2\0\1\9", "bad atyp") .. mux_keep(0, "x"))
xudpc_seed("bad-metalen", 4, 2, mux_keep(0, "x") .. be16(600) .. ("\0"):rep(600))
xudpc_seed("partial", 5, 1, mux_keep(0, "x") .. be16(4) .. "\0\0\2")
mux_seed("partial-frame", 1, 4, 25, mux_new(1, 1, 80, 2, "p.example", "x") .. be16(4) .. "\0\1\2")
mux_seed("empty", 1, 1, 1, "")

---------------------------------------------------------------- WebSocket
-- fuzz_ws_frames: ctrl(1) seed(2) [pre_n(1)] [raw_out(1)] frames
-- (ctrl & 1 server, & 2 write too, & 4 pre, & 8 raw_out)
local function ws_frame(b0, payload, key, lenform)
  local n = #payload
  local b1 = key and 0x80 or 0
  local h
  if lenform == 64 or n > 65535 then
    h = u8(b0) .. u8(b1 + 127) .. "\0\0\0\0" .. string.char(math.floor(n / 16777216) % 256,
        math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  elseif lenform == 16 or n >= 126 then
    h = u8(b0) .. u8(b1 + 126) .. be16(n)
  else
    h = u8(b0) .. u8(b1 + n)
  end
  if not key then return h .. payload end
  local out = {}
  for i = 1, n do
    out[i] = string.char(bit.bxor(payload:byte(i), key:byte((i - 1) % 4 + 1)))
  end
  return h .. key .. table.concat(out)
end
local function ws_seed(name, ctrl, bytes, pre_n, raw_out)
  local hdr = u8(ctrl) .. be16(#name * 7 + ctrl)
  if ctrl % 8 >= 4 then hdr = hdr .. u8(pre_n or 0) end
  if ctrl % 16 >= 8 then hdr = hdr .. u8(raw_out or 0) end
  seed("fuzz_ws_frames", name, hdr .. bytes)
end
local K = "\55\250\33\61"
local wf = assert(io.open("spec/fuzz/vectors/ws_v2ray.json", "rb"))
local wcap = cjson.decode(wf:read("*a"))
wf:close()
local v2frames = hex(wcap.client_frames_hex)
-- a real v2ray client: the VMess request in a masked frame, a pong, a close
ws_seed("v2ray-client", 1, v2frames)
ws_seed("v2ray-client-then-write", 3, v2frames)
ws_seed("v2ray-client-pre", 5, v2frames, 11)
ws_seed("v2ray-client-raw-out", 0x0b, v2frames, nil, 129)
-- a server's frames as our client reads them (unmasked)
local big = ("0123456789abcdef"):rep(1200)
ws_seed("server-frames", 2, ws_frame(0x82, "hello") .. ws_frame(0x82, big) ..
        ws_frame(0x89, "are you there") .. ws_frame(0x82, "x", nil, 64) .. ws_frame(0x88, "\3\232"))
ws_seed("fragments-and-pings", 1, ws_frame(0x01, "text ", K) .. ws_frame(0x89, "p1", K) ..
        ws_frame(0x00, "and more ", K) .. ws_frame(0x8a, "unasked pong", K) ..
        ws_frame(0x80, "done", K) .. ws_frame(0x82, ("z"):rep(300), K, 16) .. ws_frame(0x89, "", K))
ws_seed("empty-frames", 1, ws_frame(0x82, "", K) .. ws_frame(0x02, "", K) .. ws_frame(0x80, "", K) ..
        ws_frame(0x88, "", K))
ws_seed("write-after-pings", 3, ws_frame(0x89, ("p"):rep(125), K) .. ws_frame(0x89, "second", K))
ws_seed("write-client", 2, ws_frame(0x89, "ping", nil) .. ws_frame(0x82, "data", nil))
ws_seed("cut-header", 1, ws_frame(0x82, "abc", K) .. "\130\254\1")
ws_seed("cut-payload", 2, ws_frame(0x82, big):sub(1, 5000))
ws_seed("err-rsv", 1, ws_frame(0x82, "ok", K) .. ws_frame(0xc2, "rsv1", K))
ws_seed("err-unmasked-to-server", 1, ws_frame(0x82, "no mask"))
ws_seed("err-masked-to-client", 2, ws_frame(0x82, "masked", K))
ws_seed("err-control-too-long", 1, ws_frame(0x89, ("l"):rep(126), K))
ws_seed("err-control-fragmented", 1, ws_frame(0x09, "frag", K))
ws_seed("err-cont-first", 1, ws_frame(0x80, "cont", K))
ws_seed("err-data-inside-message", 1, ws_frame(0x02, "a", K) .. ws_frame(0x82, "b", K))
ws_seed("err-opcode", 1, ws_frame(0x83, "three", K))
ws_seed("err-close-one-byte", 1, ws_frame(0x88, "\3", K))
ws_seed("err-length-msb", 1, "\130\255\128\0\0\0\0\0\0\1" .. K .. "x")
ws_seed("err-too-big", 3, "\130\255\0\0\0\0\1\0\0\1" .. K .. "x")

-- fuzz_http_upgrade: ctrl(1) max_ed(2) path NUL [host NUL] bytes
-- (ctrl & 1 ws, & 2 a reply to check, & 4 host)
local function up_seed(name, ctrl, max_ed, path, host, bytes)
  seed("fuzz_http_upgrade", name, u8(ctrl) .. be16(max_ed) .. path .. "\0" ..
       (host and host .. "\0" or "") .. bytes)
end
local function b64url(s)
  local A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local n = c and 4 or b and 3 or 2
    for k = 1, n do
      local idx = math.floor(v / 2 ^ (18 - 6 * (k - 1))) % 64
      out[#out + 1] = A:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end
local v2req = wcap.client_request
local host = v2req:match("Host: ([^:\r]+)")
local ED = "\1\0\0\0\0\0\0\0early data bytes" .. ("\255"):rep(40)
local WS = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
           "Sec-WebSocket-Version: 13\r\n"
up_seed("v2ray-client", 1, 0, "/ray", nil, v2req)
up_seed("v2ray-client-host", 5, 0, "/ray", host, v2req)
up_seed("v2ray-client-then-frames", 1, 2048, "/ray", nil, v2req .. v2frames)
up_seed("xray-early-data", 1, 2048, "/ray", nil, "GET /ray HTTP/1.1\r\nHost: example.com\r\n" .. WS ..
        "Sec-WebSocket-Protocol: " .. b64url(ED) .. "\r\nUser-Agent: Mozilla/5.0\r\n\r\n")
up_seed("early-data-std-alphabet", 1, 2048, "/ray", nil, "GET /ray?x=1 HTTP/1.1\r\nHost: a\r\n" .. WS ..
        "Sec-WebSocket-Protocol: " .. b64url(ED):gsub("-", "+"):gsub("_", "/") .. "==\r\n\r\n")
up_seed("early-data-too-long", 1, 8, "/ray", nil, "GET /ray HTTP/1.1\r\nHost: a\r\n" .. WS ..
        "Sec-WebSocket-Protocol: " .. b64url(ED) .. "\r\n\r\n")
up_seed("subprotocols-not-early-data", 1, 2048, "/ray", nil, "GET /ray HTTP/1.1\r\nHost: a\r\n" .. WS ..
        "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n")
up_seed("v2fly-path-early-data", 1, 2048, "/ray", nil, "GET /ray" .. b64url(ED) ..
        " HTTP/1.1\r\nHost: a\r\n" .. WS .. "\r\n")
up_seed("httpupgrade-xray", 0, 0, "/up", nil, "GET /up HTTP/1.1\r\nHost: example.com\r\n" ..
        "User-Agent: Mozilla/5.0\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
        "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n" .. ED)
up_seed("httpupgrade-v2fly", 4, 0, "/up", "example.com", "GET /up HTTP/1.1\r\nHost: EXAMPLE.com:443\r\n" ..
        "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n")
up_seed("behind-nginx", 1, 0, "/ray", nil, "GET /ray HTTP/1.1\r\nHost: example.com\r\n" ..
        "X-Real-IP: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n" ..
        "X-Forwarded-For: 10.0.0.2:4431, [2001:db8::1]:443, 10.0.0.4\r\n" .. WS .. "\r\n")
up_seed("xff-junk", 0, 0, "/", nil, "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n" ..
        "Upgrade: foo\r\nX-Forwarded-For: unknown, 10.0.0.2\r\nX-Real-IP: 10.0.0.8\r\n\r\n")
up_seed("browser-other-path", 1, 0, "/ray", nil, "GET /index.html HTTP/1.1\r\nHost: example.com\r\n" ..
        "Accept: text/html\r\nUser-Agent: Mozilla/5.0\r\n\r\n")
up_seed("no-upgrade", 1, 0, "/ray", nil, "GET /ray HTTP/1.1\r\nHost: example.com\r\n\r\n")
up_seed("post", 1, 0, "/ray", nil, "POST /ray HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
up_seed("http10", 0, 0, "/", nil, "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
up_seed("folded-header", 1, 0, "/ray", nil, "GET /ray HTTP/1.1\r\nHost: a\r\n " .. WS .. "\r\n")
up_seed("tls-client-hello", 1, 0, "/ray", nil, "\22\3\1\2\0\1\0\1\252\3\3")
up_seed("reply-v2ray", 3, 0, "", nil, wcap.server_reply)
up_seed("reply-echo", 3, 0, b64url(ED:sub(1, 40)), nil, "HTTP/1.1 101 Switching Protocols\r\n" ..
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" ..
        "Sec-WebSocket-Protocol: " .. b64url(ED:sub(1, 40)) .. "\r\n\r\n\130\5hello")
up_seed("reply-httpupgrade-v2fly", 2, 0, "", nil, "HTTP/1.1 101 Switching Protocols\r\n" ..
        "Connection: upgrade\r\nUpgrade: websocket\r\n\r\nraw bytes")
up_seed("reply-404", 3, 0, "", nil, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

print(("spec/fuzz/seeds.lua: %d seed files written under spec/fuzz/corpus/"):format(written))
