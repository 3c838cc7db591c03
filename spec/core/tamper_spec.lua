-- Tampering: a single flipped bit anywhere in what the codec authenticates
-- is refused, and no flip ever yields altered payload bytes
-- (vmess-wire.md 7, 9, 11, 15).
--
-- Every byte position is tried with one random bit.  Data comes from
-- math.random under a fixed seed, reseeded per test (the seed is printed and
-- is part of every test name); LURAY_SPEC_SEED=<n> overrides it.
local H = require "helper"
local C, ffi = H.C, H.ffi

local OK, AGAIN, DONE = 0, 1, 2
local SEED_R = H.seeded("tamper_spec.lua", it)
local SEED, rit, fail, rfill, rstr = SEED_R.SEED, SEED_R.it, SEED_R.fail, SEED_R.rfill, SEED_R.rstr
local rkey, pick = SEED_R.rkey, SEED_R.pick

-- `s` with bit `bitno` of byte `pos` (0-based) flipped
local function flip(s, pos, bitno)
  local b = s:byte(pos + 1)
  return s:sub(1, pos) .. string.char(bit.bxor(b, bit.lshift(1, bitno))) .. s:sub(pos + 2)
end

local consumed = ffi.new("size_t[1]")
local outlen = ffi.new("size_t[1]")
local OUTCAP = 70000
local outbuf = ffi.new("uint8_t[?]", OUTCAP)
local T0 = 1795564195

local SEC_NAME = {
  [C.LR_SEC_AES128_CFB] = "aes-128-cfb", [C.LR_SEC_AES128_GCM] = "aes-128-gcm",
  [C.LR_SEC_CHACHA20_POLY1305] = "chacha20-poly1305",
}
local OPTIONS = {}
for o = 0, 0x1f do
  if bit.band(o, 0x02) == 0 and (bit.band(o, 0x08) == 0 or bit.band(o, 0x04) ~= 0) then
    OPTIONS[#OPTIONS + 1] = o
  end
end

local function new_body(sec, opt, key, iv, rk, ri, flags)
  local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
  local rc = C.lr_body_init(b, sec, opt, key, iv, rk, ri, flags or 0)
  if rc ~= 0 then fail("lr_body_init: %s", H.strerror(rc)) end
  return b
end

-- ------------------------------------------------------------------ request header

local DOMAIN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-."
local function random_req(mode, ts)
  local req = ffi.new("struct lr_req")
  req.mode = mode
  req.version = 1
  req.v = math.random(0, 255)
  req.option = pick { 0x01, 0x05, 0x0d, 0x1d }
  req.security = pick { 1, 3, 4, 5 }
  req.padding_len = math.random(0, 15)
  rfill(req.padding, 15)
  rfill(req.body_key, 16)
  rfill(req.body_iv, 16)
  rfill(req.auth_rand, 4)
  rfill(req.conn_nonce, 8)
  req.command = pick { 1, 2, 3 }
  req.id_index = -1
  req.ts = ts
  if req.command ~= 3 then
    req.port = math.random(0, 65535)
    req.atyp = pick { 1, 2, 3 }
    if req.atyp == 1 then req.addr_len = 4; rfill(req.addr, 4)
    elseif req.atyp == 3 then req.addr_len = 16; rfill(req.addr, 16)
    else
      local n = math.random(1, 60)
      req.addr_len = n
      for i = 0, n - 1 do
        local k = math.random(1, #DOMAIN_CHARS)
        req.addr[i] = DOMAIN_CHARS:byte(k)
      end
    end
  end
  return req
end

local function encode(req, id)
  local out = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
  local rc = C.lr_req_encode(req, id, out, C.LR_REQ_WIRE_MAX, outlen)
  assert.equal(0, rc, H.strerror(rc))
  return ffi.string(out, outlen[0])
end

local function users_for(id, now, alter)
  local u = ffi.gc(C.lr_users_new(), C.lr_users_free)
  assert.is_true(C.lr_users_add(u, id, alter or 0) >= 0)
  C.lr_users_set_legacy(u, 1)
  assert.equal(0, C.lr_users_refresh(u, now))
  return u
end

local function decode(users, wire, now, replay)
  local dec = ffi.new("struct lr_req_dec")
  C.lr_req_dec_init(dec)
  local req = ffi.new("struct lr_req")
  local rc = C.lr_req_decode(dec, users, replay, H.buf(wire), #wire, now, req, consumed)
  return rc, tonumber(consumed[0])
end

describe("request header tampering", function()
  rit("AEAD: any flipped bit (every byte position, one random bit) is an error", function()
    local now = T0
    local id = rkey()
    -- a second user whose table also answers legacy lookups
    local users = users_for(id, now, 2)
    assert.is_true(C.lr_users_add(users, rkey(), 0) >= 0)
    assert.equal(0, C.lr_users_refresh(users, now))
    local tried = 0
    for _ = 1, 12 do
      local req = random_req(C.LR_MODE_AEAD, now + math.random(-120, 120))
      local wire = encode(req, id)
      local body = rstr(math.random(0, 64)) -- body bytes may follow
      -- untouched, it decodes
      local rc, used = decode(users, wire .. body, now, nil)
      assert.equal(OK, rc, H.strerror(rc))
      assert.equal(#wire, used)
      for pos = 0, #wire - 1 do
        local bitno = math.random(0, 7)
        -- with a fresh replay filter, so a refusal is the tamper's doing
        local replay = ffi.gc(C.lr_replay_new(0), C.lr_replay_free)
        rc, used = decode(users, flip(wire, pos, bitno) .. body, now, replay)
        if rc >= 0 then
          fail("bit %d of byte %d (of %d) flipped: %s", bitno, pos, #wire, H.strerror(rc))
        end
        assert.equal(0, used)
        -- which check catches it: the AuthID, the length box, the header box
        if pos < 16 then
          assert.equal(H.S.LR_ENOUSER, rc)
        else
          assert.equal(H.S.LR_EAUTH, rc)
        end
        tried = tried + 1
      end
    end
    assert.is_true(tried > 12 * 60)
  end)

  rit("legacy: any flipped bit is refused, never LR_OK", function()
    local now = T0
    local id = rkey()
    local tried = 0
    for _ = 1, 6 do
      local req = random_req(C.LR_MODE_LEGACY, now + math.random(-120, 120))
      local alter = math.random(0, 1) * 3
      if alter > 0 then req.id_index = math.random(0, alter - 1) end
      local wire = encode(req, id)
      local body = rstr(math.random(0, 400))
      local rc = decode(users_for(id, now, alter), wire .. body, now, nil)
      assert.equal(OK, rc, H.strerror(rc))
      for pos = 0, #wire - 1 do
        local bitno = math.random(0, 7)
        -- a fresh table each time: a refusal taints the auth value
        local users = users_for(id, now, alter)
        local bad = flip(wire, pos, bitno) .. body
        local used
        rc, used = decode(users, bad, now, nil)
        -- without integrity of its own, a flip may lengthen the header
        -- (LR_AGAIN while bytes are missing), but it is never accepted
        if rc == OK then fail("bit %d of byte %d flipped: accepted", bitno, pos) end
        if rc == AGAIN then
          assert.is_true(#bad < 16 + C.LR_REQ_PLAIN_MAX)
        else
          assert.equal(0, used)
        end
        if pos < 16 then assert.equal(H.S.LR_ENOUSER, rc) end
        tried = tried + 1
      end
    end
    assert.is_true(tried > 6 * 50)
  end)
end)

-- ------------------------------------------------------------------ body chunks

-- Seals payloads and the end chunk; returns the wire and each chunk's
-- layout {start, size_len, seal_len, total} (0-based offsets).
local function seal_stream(enc, payloads, size_len, overhead)
  local parts, layout, pos = {}, {}, 0
  local w = ffi.new("uint8_t[?]", 70000)
  local function add(n)
    parts[#parts + 1] = ffi.string(w, outlen[0])
    local total = tonumber(outlen[0])
    layout[#layout + 1] = { start = pos, size_len = size_len, seal_len = n + overhead, total = total }
    pos = pos + total
  end
  for _, p in ipairs(payloads) do
    assert.equal(0, C.lr_body_seal(enc, H.buf(p), #p, w, 70000, outlen))
    add(#p)
  end
  assert.equal(0, C.lr_body_seal_end(enc, w, 70000, outlen))
  if outlen[0] > 0 then add(0) end
  return table.concat(parts), layout
end

-- Decodes all of `s`: the payloads returned with LR_OK and the last status.
local function open_all(dec, s)
  local inb = H.buf(s)
  local off, got = 0, {}
  while true do
    local rc = C.lr_body_open(dec, inb + off, #s - off, consumed, outbuf, OUTCAP, outlen)
    if rc == OK then
      got[#got + 1] = ffi.string(outbuf, outlen[0])
      off = off + tonumber(consumed[0])
    else
      if rc < 0 then
        if outlen[0] ~= 0 or consumed[0] ~= 0 then fail("an error wrote or consumed bytes") end
        -- after an error the direction is finished: nothing more comes out
        local again = C.lr_body_open(dec, inb + off, #s - off, consumed, outbuf, OUTCAP, outlen)
        if again >= 0 or outlen[0] ~= 0 then fail("after %s the decoder gave %s", H.strerror(rc), H.strerror(again)) end
      end
      return got, rc
    end
  end
end

-- The rule every flip must obey: whatever the decoder returns with LR_OK is
-- exactly the original payload in that place.  Returns the chunks delivered.
local function no_altered_output(got, payloads, where)
  for i, g in ipairs(got) do
    if g ~= payloads[i] then fail("%s: payload %d delivered altered", where, i) end
  end
  return #got
end

local function region(layout, pos)
  for ci, l in ipairs(layout) do
    if pos < l.start + l.total then
      local o = pos - l.start
      if o < l.size_len then return ci, "size" end
      if o < l.size_len + l.seal_len then return ci, "seal" end
      return ci, "padding"
    end
  end
end

describe("AEAD chunk tampering", function()
  for _, sec in ipairs { C.LR_SEC_AES128_GCM, C.LR_SEC_CHACHA20_POLY1305 } do
    for _, opt in ipairs(OPTIONS) do
      for _, udp in ipairs { false, true } do
        rit(("%s option 0x%02x %s: a flip in SIZE, payload or tag never yields payload bytes"):format(
              SEC_NAME[sec], opt, udp and "UDP" or "TCP"), function()
          local authlen = bit.band(opt, 0x10) ~= 0
          local key, iv, rk, ri = rkey(), rkey(), rkey(), rkey()
          local flags = udp and C.LR_BODY_UDP or 0
          local enc = new_body(sec, opt, key, iv, rk, ri, bit.bor(flags, C.LR_BODY_ZERO_PADDING))
          local payloads = {}
          for i = 1, 3 do payloads[i] = rstr(math.random(1, 120)) end
          local wire, layout = seal_stream(enc, payloads, authlen and 18 or 2, 16)
          assert.equal(#payloads + (bit.band(opt, 1) ~= 0 and 1 or 0), #layout)
          local got, rc = open_all(new_body(sec, opt, key, iv, rk, ri, flags), wire)
          assert.equal(#payloads, no_altered_output(got, payloads, "untouched"))
          assert.equal(bit.band(opt, 1) ~= 0 and DONE or AGAIN, rc)
          local seen = {}
          for pos = 0, #wire - 1 do
            local bitno = math.random(0, 7)
            local ci, what = region(layout, pos)
            seen[what] = true
            local dec = new_body(sec, opt, key, iv, rk, ri, flags)
            local where = ("bit %d of byte %d (%s of chunk %d)"):format(bitno, pos, what, ci)
            got, rc = open_all(dec, flip(wire, pos, bitno))
            local n = no_altered_output(got, payloads, where)
            if what == "padding" then
              -- padding is outside every tag (vmess-wire.md 11.1): ignored
              assert.equal(#payloads, n, where)
              assert.equal(bit.band(opt, 1) ~= 0 and DONE or AGAIN, rc, where)
            else
              -- the chunk with the flip delivers nothing, and nothing after it
              if n ~= ci - 1 then fail("%s: %d chunks delivered", where, n) end
              if rc == OK or rc == DONE then fail("%s: ended with %s", where, H.strerror(rc)) end
              if rc == AGAIN then
                -- only a plain or masked SIZE can ask for more: a larger size
                if authlen or what ~= "size" then fail("%s: LR_AGAIN", where) end
              end
            end
          end
          assert.is_true(seen.size and seen.seal)
          if authlen then
            -- the authenticated-length box alone: every bit of it
            for ci, l in ipairs(layout) do
              for o = 0, 17 do
                local dec = new_body(sec, opt, key, iv, rk, ri, flags)
                got, rc = open_all(dec, flip(wire, l.start + o, math.random(0, 7)))
                assert.equal(ci - 1, no_altered_output(got, payloads, "length box"))
                assert.equal(H.S.LR_EAUTH, rc)
              end
            end
          end
        end)
      end
    end
  end
end)

describe("aes-128-cfb chunk tampering", function()
  for _, opt in ipairs { 0x01, 0x05, 0x0d, 0x11, 0x15, 0x1d } do
    for _, udp in ipairs { false, true } do
      rit(("option 0x%02x %s: the FNV check catches flips, no payload is altered silently"):format(
            opt, udp and "UDP" or "TCP"), function()
        local key, iv = rkey(), rkey()
        local flags = udp and C.LR_BODY_UDP or 0
        local enc = new_body(C.LR_SEC_AES128_CFB, opt, key, iv, key, iv, bit.bor(flags, C.LR_BODY_ZERO_PADDING))
        local payloads = {}
        for i = 1, 4 do payloads[i] = rstr(math.random(1, 150)) end
        local wire, layout = seal_stream(enc, payloads, 2, 4)
        local got, rc = open_all(new_body(C.LR_SEC_AES128_CFB, opt, key, iv, key, iv, flags), wire)
        assert.equal(#payloads, no_altered_output(got, payloads, "untouched"))
        assert.equal(DONE, rc)
        for pos = 0, #wire - 1 do
          local bitno = math.random(0, 7)
          local ci, what = region(layout, pos)
          local where = ("bit %d of byte %d (%s of chunk %d)"):format(bitno, pos, what, ci)
          local dec = new_body(C.LR_SEC_AES128_CFB, opt, key, iv, key, iv, flags)
          got, rc = open_all(dec, flip(wire, pos, bitno))
          local n = no_altered_output(got, payloads, where)
          if what ~= "padding" then
            -- SIZE, FNV or payload: the chunk is refused (or, for a larger
            -- SIZE, more bytes are awaited); never delivered
            if n ~= ci - 1 then fail("%s: %d chunks delivered", where, n) end
            if rc == OK or rc == DONE then fail("%s: ended with %s", where, H.strerror(rc)) end
          else
            -- padding content is ignored, but in CFB a flip garbles the next
            -- block, which may be the next chunk: delivered chunks are intact
            -- (chunk ci itself and those before it always come through)
            assert.is_true(n >= math.min(ci, #payloads), where)
            if rc == DONE then assert.equal(#payloads, n, where) end
          end
        end
      end)
    end
  end
end)

describe("SIZE fields forged to small values", function()
  rit("below the seal overhead plus padding: LR_EINVAL; exactly that: an end chunk that must authenticate", function()
    for _, sec in ipairs { C.LR_SEC_AES128_GCM, C.LR_SEC_CHACHA20_POLY1305, C.LR_SEC_AES128_CFB } do
      local overhead = sec == C.LR_SEC_AES128_CFB and 4 or 16
      for _, opt in ipairs { 0x01, 0x05, 0x0d } do
        for _ = 1, 4 do
          local key, iv = rkey(), rkey()
          local enc = new_body(sec, opt, key, iv, key, iv, C.LR_BODY_ZERO_PADDING)
          local payload = rstr(math.random(1, 100))
          local wire, layout = seal_stream(enc, { payload }, 2, overhead)
          local l = layout[1]
          local pad = l.total - 2 - l.seal_len
          local n = l.seal_len + pad
          -- plain, masked and CFB-encrypted SIZE fields are all value XOR a
          -- keystream, so XOR-ing the wire sets the value the reader sees
          local function forged(k)
            local d = bit.bxor(n, k)
            return string.char(bit.bxor(wire:byte(1), bit.rshift(d, 8)), bit.bxor(wire:byte(2), bit.band(d, 255)))
              .. wire:sub(3)
          end
          for k = 0, overhead + pad - 1 do
            local got, rc = open_all(new_body(sec, opt, key, iv, key, iv), forged(k))
            assert.equal(0, #got)
            assert.equal(H.S.LR_EINVAL, rc, ("%s 0x%02x: SIZE %d (overhead %d, padding %d)"):format(
              SEC_NAME[sec], opt, k, overhead, pad))
          end
          local got, rc = open_all(new_body(sec, opt, key, iv, key, iv), forged(overhead + pad))
          assert.equal(0, #got)
          assert.equal(H.S.LR_EAUTH, rc)
        end
      end
    end
  end)
end)

-- ------------------------------------------------------------------ response header

describe("response header tampering", function()
  for _, with_cmd in ipairs { false, true } do
    rit(("AEAD mode%s: any flipped bit is an error"):format(with_cmd and ", with a dynamic-port command" or ""), function()
      for _ = 1, 10 do
        local k, i = rkey(), rkey()
        local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
        C.lr_resp_keys(C.LR_MODE_AEAD, k, i, rk, ri)
        local sw
        if with_cmd then
          sw = ffi.new("struct lr_cmd_switch")
          sw.host_len = math.random(0, 30)
          for j = 0, sw.host_len - 1 do sw.host[j] = math.random(97, 122) end
          sw.port = math.random(0, 65535)
          rfill(sw.id, 16)
        end
        local v = math.random(0, 255)
        local enc = new_body(C.LR_SEC_AES128_GCM, 1, rk, ri, k, i)
        local out = ffi.new("uint8_t[?]", C.LR_RESP_WIRE_MAX)
        assert.equal(0, C.lr_resp_encode(C.LR_MODE_AEAD, rk, ri, enc, v, sw, out, C.LR_RESP_WIRE_MAX, outlen))
        local hdr = ffi.string(out, outlen[0])
        local tail = rstr(math.random(0, 40))
        local function try(s)
          local down = new_body(C.LR_SEC_AES128_GCM, 1, rk, ri, k, i)
          local dec = ffi.new("struct lr_resp_dec")
          C.lr_resp_dec_init(dec)
          local resp = ffi.new("struct lr_resp")
          return C.lr_resp_decode(dec, C.LR_MODE_AEAD, rk, ri, down, v, H.buf(s), #s, consumed, resp)
        end
        assert.equal(OK, try(hdr .. tail))
        for pos = 0, #hdr - 1 do
          local bitno = math.random(0, 7)
          local rc = try(flip(hdr, pos, bitno) .. tail)
          if rc >= 0 then fail("bit %d of byte %d flipped: %s", bitno, pos, H.strerror(rc)) end
          assert.equal(H.S.LR_EAUTH, rc)
          assert.equal(0, tonumber(consumed[0]))
        end
      end
    end)
  end

  rit("legacy mode: a flipped V bit is refused", function()
    for _ = 1, 20 do
      local k, i = rkey(), rkey()
      local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
      C.lr_resp_keys(C.LR_MODE_LEGACY, k, i, rk, ri)
      local v = math.random(0, 255)
      local enc = new_body(C.LR_SEC_AES128_CFB, 1, rk, ri, k, i, C.LR_BODY_LEGACY_RESP)
      local out = ffi.new("uint8_t[?]", C.LR_RESP_WIRE_MAX)
      assert.equal(0, C.lr_resp_encode(C.LR_MODE_LEGACY, rk, ri, enc, v, nil, out, C.LR_RESP_WIRE_MAX, outlen))
      local hdr = ffi.string(out, outlen[0])
      for bitno = 0, 7 do
        local down = new_body(C.LR_SEC_AES128_CFB, 1, rk, ri, k, i, C.LR_BODY_LEGACY_RESP)
        local dec = ffi.new("struct lr_resp_dec")
        C.lr_resp_dec_init(dec)
        local resp = ffi.new("struct lr_resp")
        local s = flip(hdr, 0, bitno)
        assert.equal(H.S.LR_EAUTH, C.lr_resp_decode(dec, C.LR_MODE_LEGACY, rk, ri, down, v, H.buf(s), #s, consumed, resp))
      end
    end
  end)
end)
