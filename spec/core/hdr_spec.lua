-- Request and response headers against the shared vectors, including the
-- complete sessions captured from real v2ray 4.34 peers (vmess-wire.md 6-10).
local H = require "helper"
local C, ffi = H.C, H.ffi

local consumed = ffi.new("size_t[1]")
local outlen = ffi.new("size_t[1]")

local function parse_target(t)
  local host, port = t:match("^(.*):(%d+)$")
  return host, tonumber(port)
end

local function users_for(uuid, alter_id, now, legacy)
  local u = ffi.gc(C.lr_users_new(), C.lr_users_free)
  assert.is_true(C.lr_users_add(u, H.uuid(uuid), alter_id) >= 0)
  C.lr_users_set_legacy(u, legacy and 1 or 0)
  assert.equal(0, C.lr_users_refresh(u, now))
  return u
end

local function decode_header(users, wire, now, replay)
  local dec = ffi.new("struct lr_req_dec")
  C.lr_req_dec_init(dec)
  local req = ffi.new("struct lr_req")
  local b = H.buf(wire)
  local rc = C.lr_req_decode(dec, users, replay, b, #wire, now, req, consumed)
  return rc, req, tonumber(consumed[0])
end

local function ipv4(req)
  return string.format("%d.%d.%d.%d", req.addr[0], req.addr[1], req.addr[2], req.addr[3])
end

-- Body of one direction: decodes all of `s`, returns payload and status.
local function open_all(b, s)
  local inb = H.buf(s)
  local out = ffi.new("uint8_t[65536]")
  local off, parts = 0, {}
  while off < #s do
    local rc = C.lr_body_open(b, inb + off, #s - off, consumed, out, 65536, outlen)
    if rc < 0 or rc == H.S.LR_AGAIN then return table.concat(parts), rc, off end
    parts[#parts + 1] = ffi.string(out, outlen[0])
    off = off + tonumber(consumed[0])
    if rc == H.S.LR_DONE then return table.concat(parts), rc, off end
  end
  return table.concat(parts), H.S.LR_AGAIN, off
end

local function new_body(sec, opt, key, iv, rkey, riv, flags)
  local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
  local rc = C.lr_body_init(b, sec, opt, key, iv, rkey, riv, flags or 0)
  assert.equal(0, rc, H.strerror(rc))
  return b
end

-- Checks a decoded header against a vector case's fields.
local function check_fields(c, req, plain_len)
  assert.equal(c.header_mode == "aead" and C.LR_MODE_AEAD or C.LR_MODE_LEGACY, req.mode)
  assert.equal(c.request_body_key, H.hex(req.body_key, 16))
  assert.equal(c.request_body_iv, H.hex(req.body_iv, 16))
  assert.equal(c.response_v, req.v)
  assert.equal(c.option, req.option)
  assert.equal(c.security_byte, req.security)
  assert.equal(c.command, req.command)
  assert.equal(#c.padding / 2, req.padding_len)
  assert.equal(c.padding, H.hex(req.padding, req.padding_len))
  local host, port = parse_target(c.target)
  assert.equal(C.LR_ATYP_IPV4, req.atyp)
  assert.equal(host, ipv4(req))
  assert.equal(port, req.port)
  assert.equal(c.timestamp, tonumber(req.ts))
end

-- Fills an lr_req from a vector case so it can be encoded again.
local function req_from_case(c)
  local req = ffi.new("struct lr_req")
  req.mode = c.header_mode == "aead" and C.LR_MODE_AEAD or C.LR_MODE_LEGACY
  req.version = 1
  ffi.copy(req.body_key, H.unhex(c.request_body_key), 16)
  ffi.copy(req.body_iv, H.unhex(c.request_body_iv), 16)
  req.v = c.response_v
  req.option = c.option
  req.security = c.security_byte
  req.padding_len = #c.padding / 2
  ffi.copy(req.padding, H.unhex(c.padding), #c.padding / 2)
  req.command = c.command
  local host, port = parse_target(c.target)
  req.port = port
  req.atyp = C.LR_ATYP_IPV4
  local a, b2, c3, d = host:match("(%d+)%.(%d+)%.(%d+)%.(%d+)")
  req.addr[0], req.addr[1], req.addr[2], req.addr[3] = tonumber(a), tonumber(b2), tonumber(c3), tonumber(d)
  req.addr_len = 4
  req.ts = c.timestamp
  req.id_index = -1
  if c.id_used and c.id_used:match("^alt(%d+)$") then
    req.id_index = tonumber(c.id_used:match("^alt(%d+)$"))
  end
  if c.auth_rand then ffi.copy(req.auth_rand, H.unhex(c.auth_rand), 4) end
  if c.connection_nonce then ffi.copy(req.conn_nonce, H.unhex(c.connection_nonce), 8) end
  return req
end

local function encode(req, uuid)
  local out = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
  local rc = C.lr_req_encode(req, H.uuid(uuid), out, C.LR_REQ_WIRE_MAX, outlen)
  assert.equal(0, rc, H.strerror(rc))
  return ffi.string(out, outlen[0])
end

-- A full session as in sessions_v2ray_server.json / request_header_*.json:
-- the server decodes our request, the client decodes v2ray's reply.
local function check_session(c)
  local now = c.timestamp
  local users = users_for(c.uuid, c.alter_id, now, true)
  local replay = ffi.gc(C.lr_replay_new(0), C.lr_replay_free)
  local wire = H.unhex(c.header_wire)
  -- encode: the same randomness gives the same bytes
  assert.equal(c.header_wire, H.hex(encode(req_from_case(c), c.uuid)))
  -- decode the header, followed by the body, as a server
  local body_wire = H.unhex(c.request_body_wire .. c.request_eos_wire)
  local rc, req, used = decode_header(users, wire .. body_wire, now, replay)
  assert.equal(0, rc, H.strerror(rc))
  assert.equal(#wire, used)
  check_fields(c, req)
  if c.auth then assert.equal(c.auth, H.hex(req.auth, 16)) end
  local key, iv = req.body_key, req.body_iv
  local up = new_body(req.security, req.option, key, iv, key, iv)
  local payload, brc, bused = open_all(up, body_wire)
  assert.equal(H.S.LR_DONE, brc)
  assert.equal(#body_wire, bused)
  assert.equal(c.payload_ascii, payload)
  -- our client body encoding reproduces the request body (zero padding)
  local enc = new_body(req.security, req.option, key, iv, key, iv, C.LR_BODY_ZERO_PADDING)
  local w = ffi.new("uint8_t[4096]")
  assert.equal(0, C.lr_body_seal(enc, H.buf(c.payload_ascii), #c.payload_ascii, w, 4096, outlen))
  assert.equal(c.request_body_wire, H.hex(w, outlen[0]))
  assert.equal(0, C.lr_body_seal_end(enc, w, 4096, outlen))
  assert.equal(c.request_eos_wire, H.hex(w, outlen[0]))
  -- response keys, header and body exactly as v2ray sent them
  local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
  assert.equal(0, C.lr_resp_keys(req.mode, key, iv, rk, ri))
  assert.equal(c.response_body_key, H.hex(rk, 16))
  assert.equal(c.response_body_iv, H.hex(ri, 16))
  local flags = req.mode == C.LR_MODE_LEGACY and C.LR_BODY_LEGACY_RESP or 0
  local down = new_body(req.security, req.option, rk, ri, key, iv, flags)
  local rdec = ffi.new("struct lr_resp_dec")
  C.lr_resp_dec_init(rdec)
  local resp = ffi.new("struct lr_resp")
  local rwire = H.unhex(c.v2ray_response_wire)
  rc = C.lr_resp_decode(rdec, req.mode, rk, ri, down, c.response_v, H.buf(rwire), #rwire, consumed, resp)
  assert.equal(0, rc, H.strerror(rc))
  local info = c.v2ray_response_header_info
  assert.equal(info.option, resp.option)
  assert.equal(info.command, resp.command)
  assert.equal(info.command_len, resp.command_len)
  local rest = rwire:sub(tonumber(consumed[0]) + 1)
  local back, brc2, bused2 = open_all(down, rest)
  assert.equal(c.v2ray_response_decoded_ascii, back)
  if c.v2ray_response_had_eos then
    assert.equal(H.S.LR_DONE, brc2)
    assert.equal(#rest, bused2)
  end
end

describe("request header (legacy)", function()
  H.each_case(H.vectors("request_header_legacy"), function(c)
    it(c.description, function()
      assert.equal(c.header_plain:sub(1, 2), "01")
      check_session(c)
    end)
  end)
end)

describe("request header (AEAD)", function()
  H.each_case(H.vectors("request_header_aead"), function(c)
    it(c.description, function()
      assert.equal(c.auth_id, c.header_wire:sub(1, 32))
      assert.equal(c.header_length_wire, c.header_wire:sub(33, 68))
      assert.equal(c.header_payload_wire, c.header_wire:sub(85))
      check_session(c)
    end)
  end)
end)

describe("sessions with a real v2ray 4.34 server", function()
  H.each_case(H.vectors("sessions_v2ray_server"), function(c)
    it(c.description, function() check_session(c) end)
  end)
end)

describe("requests from real v2ray 4.34 clients", function()
  H.each_case(H.vectors("sessions_v2ray_client"), function(c)
    it(c.description, function()
      local d = c.decoded_by_oracle
      local now = c.capture_time
      local users = users_for(c.uuid, c.alter_id, now, true)
      local wire = H.unhex(c.client_request_wire)
      local rc, req, used = decode_header(users, wire, now, nil)
      assert.equal(0, rc, H.strerror(rc))
      assert.equal(d.mode == "aead" and C.LR_MODE_AEAD or C.LR_MODE_LEGACY, req.mode)
      assert.equal(d.security, req.security)
      assert.equal(d.option, req.option)
      assert.equal(d.command, req.command)
      assert.equal(d.padding_len, req.padding_len)
      assert.equal(d.timestamp, tonumber(req.ts))
      local host, port = parse_target(d.target)
      assert.equal(host, ipv4(req))
      assert.equal(port, req.port)
      if type(d.id_used) == "string" then
        assert.equal(tonumber(d.id_used:match("alt(%d+)")), req.id_index)
      end
      local up = new_body(req.security, req.option, req.body_key, req.body_iv, req.body_key, req.body_iv)
      local payload, brc, bused = open_all(up, wire:sub(used + 1))
      assert.equal(c.payload_ascii, payload)
      assert.equal(d.up, #payload)
      assert.equal(d.eos_in, brc == H.S.LR_DONE)
      assert.equal(#wire - used, bused)
    end)
  end)
end)

describe("response header", function()
  H.each_case(H.vectors("response_header"), function(c)
    it(c.description, function()
      local mode = c.len_key and C.LR_MODE_AEAD or C.LR_MODE_LEGACY
      local k, i = H.buf(H.unhex(c.request_key)), H.buf(H.unhex(c.request_iv))
      local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
      C.lr_resp_keys(mode, k, i, rk, ri)
      assert.equal(c.response_key, H.hex(rk, 16))
      assert.equal(c.response_iv, H.hex(ri, 16))
      local flags = mode == C.LR_MODE_LEGACY and C.LR_BODY_LEGACY_RESP or 0
      local down = new_body(C.LR_SEC_AES128_GCM, 1, rk, ri, k, i, flags)
      local out = ffi.new("uint8_t[512]")
      local v = tonumber(c.plain:sub(1, 2), 16)
      assert.equal(0, C.lr_resp_encode(mode, rk, ri, down, v, nil, out, 512, outlen))
      assert.equal(c.wire, H.hex(out, outlen[0]))
      -- and back, one byte at a time
      local dn = new_body(C.LR_SEC_AES128_GCM, 1, rk, ri, k, i, flags)
      local dec = ffi.new("struct lr_resp_dec")
      C.lr_resp_dec_init(dec)
      local resp = ffi.new("struct lr_resp")
      local w = H.unhex(c.wire)
      local rc
      for n = 1, #w do
        rc = C.lr_resp_decode(dec, mode, rk, ri, dn, v, H.buf(w), n, consumed, resp)
        if n < #w then assert.equal(H.S.LR_AGAIN, rc) end
      end
      assert.equal(0, rc)
      assert.equal(#w, tonumber(consumed[0]))
      assert.equal(v, resp.v)
      -- a wrong V is an authentication failure
      C.lr_resp_dec_init(dec)
      local dn2 = new_body(C.LR_SEC_AES128_GCM, 1, rk, ri, k, i, flags)
      assert.equal(H.S.LR_EAUTH, C.lr_resp_decode(dec, mode, rk, ri, dn2, (v + 1) % 256, H.buf(w), #w, consumed, resp))
    end)
  end)
end)

describe("dynamic-port command", function()
  H.each_case(H.vectors("command_switch_account"), function(c)
    it(c.description, function()
      local bytes = H.unhex(c.bytes)
      local sw = ffi.new("struct lr_cmd_switch")
      assert.equal(0, C.lr_cmd_switch_decode(H.buf(bytes), #bytes, sw))
      assert.equal(10086, sw.port)
      assert.equal("de305d5475b4431badb2eb6b9e546014", H.hex(sw.id, 16))
      assert.equal(4, sw.alter_ids)
      local out = ffi.new("uint8_t[300]")
      assert.equal(0, C.lr_cmd_switch_encode(sw, out, 300, outlen))
      assert.equal(c.bytes, H.hex(out, outlen[0]))
      -- a flipped checksum bit is refused
      local bad = H.buf(bytes)
      bad[3] = bit.bxor(bad[3], 1)
      assert.equal(H.S.LR_ECHECKSUM, C.lr_cmd_switch_decode(bad, #bytes, sw))
      -- carried in a response header, in both modes
      for _, mode in ipairs { C.LR_MODE_LEGACY, C.LR_MODE_AEAD } do
        local k, i = H.buf(H.random(16)), H.buf(H.random(16))
        local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
        C.lr_resp_keys(mode, k, i, rk, ri)
        local flags = mode == C.LR_MODE_LEGACY and C.LR_BODY_LEGACY_RESP or 0
        local enc = new_body(C.LR_SEC_AES128_CFB, 1, rk, ri, k, i, flags)
        local dec = new_body(C.LR_SEC_AES128_CFB, 1, rk, ri, k, i, flags)
        assert.equal(0, C.lr_resp_encode(mode, rk, ri, enc, 7, sw, out, 300, outlen))
        local n = tonumber(outlen[0])
        local rd = ffi.new("struct lr_resp_dec")
        C.lr_resp_dec_init(rd)
        local resp = ffi.new("struct lr_resp")
        assert.equal(0, C.lr_resp_decode(rd, mode, rk, ri, dec, 7, out, n, consumed, resp))
        assert.equal(1, resp.command)
        assert.equal(1, resp.has_switch)
        assert.equal(sw.port, resp.sw.port)
        if c.bytes:find("3132372e302e302e31") then
          assert.equal("127.0.0.1", ffi.string(resp.sw.host, resp.sw.host_len))
        end
      end
    end)
  end)
end)

describe("lr_req_randomize", function()
  it("never repeats auth_rand within a process: 200,000 requests, 200,000 distinct AuthIDs' random parts",
    function()
    -- with 4 random bytes each, 200,000 requests would share one about 99%
    -- of the time (birthday bound); a server drains such a request as a
    -- replay when both fall in the same second
    local req = ffi.new("struct lr_req")
    local seen, dup = {}, 0
    for _ = 1, 200000 do
      C.lr_req_randomize(req)
      local k = ffi.string(req.auth_rand, 4)
      if seen[k] then dup = dup + 1 end
      seen[k] = true
    end
    assert.equal(0, dup)
    -- the other fields stay random: 16-byte body keys never repeat either
    local keys = {}
    for _ = 1, 1000 do
      C.lr_req_randomize(req)
      local k = ffi.string(req.body_key, 16)
      assert.is_nil(keys[k])
      keys[k] = true
    end
  end)
end)
