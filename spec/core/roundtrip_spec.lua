-- Property specs: encode -> decode round trips with random data for every
-- body configuration (security x option x TCP/UDP), the request header in
-- both modes and the response header (vmess-wire.md 6-12).
--
-- All data comes from math.random under a fixed seed, reseeded per test, so
-- a failure reproduces: the seed is printed and is part of every test name.
-- LURAY_SPEC_SEED=<n> overrides it.
local H = require "helper"
local C, ffi = H.C, H.ffi

local OK, AGAIN, DONE = 0, 1, 2
local SEED_R = H.seeded("roundtrip_spec.lua", it)
local SEED, rit, fail, rfill, rstr = SEED_R.SEED, SEED_R.it, SEED_R.fail, SEED_R.rfill, SEED_R.rstr
local rkey, pick = SEED_R.rkey, SEED_R.pick
local function shuffle(t)
  for i = #t, 2, -1 do
    local j = math.random(1, i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end
local function be16(n) return string.char(bit.band(bit.rshift(n, 8), 255), bit.band(n, 255)) end
local function be32(n)
  return string.char(bit.band(bit.rshift(n, 24), 255), bit.band(bit.rshift(n, 16), 255),
                     bit.band(bit.rshift(n, 8), 255), bit.band(n, 255))
end
local function fnv(s) return tonumber(C.lr_fnv1a32(H.buf(s), #s)) end

local consumed = ffi.new("size_t[1]")
local outlen = ffi.new("size_t[1]")
local OUTCAP = 70000
local outbuf = ffi.new("uint8_t[?]", OUTCAP)
local SIZE_MAX = 0xffffffffffffffffULL

local SEC_NAME = {
  [C.LR_SEC_AES128_CFB] = "aes-128-cfb", [C.LR_SEC_NONE] = "none",
  [C.LR_SEC_AES128_GCM] = "aes-128-gcm", [C.LR_SEC_CHACHA20_POLY1305] = "chacha20-poly1305",
}
local SECURITIES = { C.LR_SEC_AES128_CFB, C.LR_SEC_NONE, C.LR_SEC_AES128_GCM, C.LR_SEC_CHACHA20_POLY1305 }
-- every combination of 0x01, 0x04, 0x08, 0x10 with 0x08 only beside 0x04
local OPTIONS = {}
for o = 0, 0x1f do
  if bit.band(o, 0x02) == 0 and (bit.band(o, 0x08) == 0 or bit.band(o, 0x04) ~= 0) then
    OPTIONS[#OPTIONS + 1] = o
  end
end
assert(#OPTIONS == 12)

local function new_body(sec, opt, key, iv, rkey_, riv, flags)
  local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
  local rc = C.lr_body_init(b, sec, opt, key, iv, rkey_, riv, flags or 0)
  if rc ~= 0 then fail("lr_body_init(%d, 0x%02x): %s", sec, opt, H.strerror(rc)) end
  return b
end

-- What a configuration is, computed here from vmess-wire.md 11.6 rather than
-- asked of the codec.
local function model(sec, opt, udp)
  local s = bit.band(opt, 1) ~= 0
  local aead = sec == C.LR_SEC_AES128_GCM or sec == C.LR_SEC_CHACHA20_POLY1305
  local raw = not aead and not s
  local overhead = (sec == C.LR_SEC_AES128_CFB and 4) or (aead and 16) or 0
  local padding = bit.band(opt, 8) ~= 0 and not raw and not (sec == C.LR_SEC_NONE and not udp)
  local size_len = (aead and bit.band(opt, 0x10) ~= 0) and 18 or 2
  return {
    raw = raw, end_chunk = s and not raw, overhead = overhead, size_len = size_len,
    max_payload = raw and nil or (65535 - overhead - (padding and 63 or 0)),
    max_wire = function(n) return raw and n or (size_len + overhead + n + (padding and 63 or 0)) end,
  }
end

-- Feeds the first W bytes of `wire` to `dec` as a growing prefix: every
-- time the decoder answers LR_AGAIN, step() more bytes arrive.  Checks that
-- LR_AGAIN consumes and writes nothing.  Returns the payloads, the last
-- status and the bytes consumed.
local function feed(dec, wire, W, step)
  local avail, off, got = 0, 0, {}
  while true do
    local rc = C.lr_body_open(dec, wire + off, avail - off, consumed, outbuf, OUTCAP, outlen)
    if rc == AGAIN then
      if consumed[0] ~= 0 or outlen[0] ~= 0 then
        fail("LR_AGAIN consumed %d bytes / wrote %d", tonumber(consumed[0]), tonumber(outlen[0]))
      end
      if avail == W then return got, rc, off end
      avail = math.min(W, avail + step())
    elseif rc == OK then
      local c = tonumber(consumed[0])
      if c == 0 or c > avail - off then fail("LR_OK consumed %d of %d", c, avail - off) end
      got[#got + 1] = ffi.string(outbuf, outlen[0])
      off = off + c
    elseif rc == DONE then
      if outlen[0] ~= 0 then fail("the end chunk wrote %d bytes", tonumber(outlen[0])) end
      return got, rc, off + tonumber(consumed[0])
    else
      return got, rc, off
    end
  end
end

local function check_payloads(m, got, payloads, what)
  if m.raw then
    local a, b = table.concat(got), table.concat(payloads)
    if a ~= b then fail("%s: raw stream differs (%d vs %d bytes)", what, #a, #b) end
    return
  end
  if #got ~= #payloads then fail("%s: %d chunks decoded, %d sealed", what, #got, #payloads) end
  for i = 1, #payloads do
    if got[i] ~= payloads[i] then
      fail("%s: payload %d (%d bytes) came back different (%d bytes)", what, i, #payloads[i], #got[i])
    end
  end
end

local function payload_sizes(max)
  local top = math.min(max, 70000)
  local sizes = { 1, top }
  if top >= 16384 then sizes[#sizes + 1] = 16384 end
  for _ = 1, 3 do sizes[#sizes + 1] = math.random(1, 64) end
  for _ = 1, 2 do sizes[#sizes + 1] = math.random(1, 4096) end
  sizes[#sizes + 1] = math.random(1, top)
  return shuffle(sizes)
end

describe("body round trip", function()
  for _, sec in ipairs(SECURITIES) do
    for _, opt in ipairs(OPTIONS) do
      for _, udp in ipairs { false, true } do
        local name = ("%s option 0x%02x %s"):format(SEC_NAME[sec], opt, udp and "UDP" or "TCP")
        rit(name .. ": random payloads survive random splits and byte-at-a-time feeding", function()
          local m = model(sec, opt, udp)
          local key, iv = rkey(), rkey()
          local rk, ri = key, iv
          if math.random(2) == 1 then rk, ri = rkey(), rkey() end -- response direction
          local flags = (udp and C.LR_BODY_UDP or 0)
          if math.random(2) == 1 then flags = bit.bor(flags, C.LR_BODY_ZERO_PADDING) end
          local enc = new_body(sec, opt, key, iv, rk, ri, flags)

          -- limits as the model says
          local maxp = C.lr_body_max_payload(enc)
          if m.raw then
            assert.is_true(maxp == SIZE_MAX, "raw stream max payload")
          else
            assert.equal(m.max_payload, tonumber(maxp))
          end
          for _, n in ipairs { 0, 1, 100, 65535 } do
            assert.equal(m.max_wire(n), tonumber(C.lr_body_max_wire(enc, n)))
          end
          -- refused seals change nothing (the stream below still decodes)
          local big = ffi.new("uint8_t[?]", 70000)
          local scratch = ffi.new("uint8_t[?]", 70200)
          if not m.raw then
            assert.equal(H.S.LR_EINVAL, C.lr_body_seal(enc, big, 0, scratch, 70200, outlen))
            assert.equal(H.S.LR_ETOOBIG, C.lr_body_seal(enc, big, m.max_payload + 1, scratch, 70200, outlen))
            assert.equal(H.S.LR_ETOOBIG, C.lr_body_seal(enc, big, 10, scratch, m.max_wire(10) - 1, outlen))
            assert.equal(0, tonumber(C.lr_body_chunks(enc)))
          else
            assert.equal(0, C.lr_body_seal(enc, big, 0, scratch, 70200, outlen))
            assert.equal(0, tonumber(outlen[0]))
          end

          -- seal
          local sizes = payload_sizes(m.raw and 70000 or m.max_payload)
          local payloads, cap = {}, m.max_wire(0) + 64
          for i, n in ipairs(sizes) do
            payloads[i] = rstr(n)
            cap = cap + m.max_wire(n)
          end
          local wire = ffi.new("uint8_t[?]", cap)
          local pos = 0
          for i, p in ipairs(payloads) do
            local rc = C.lr_body_seal(enc, H.buf(p), #p, wire + pos, cap - pos, outlen)
            if rc ~= 0 then fail("seal %d (%d bytes): %s", i, #p, H.strerror(rc)) end
            local w = tonumber(outlen[0])
            if w > m.max_wire(#p) then fail("chunk of %d bytes is %d on the wire", #p, w) end
            if not m.raw and w < m.size_len + m.overhead + #p then fail("chunk too short: %d", w) end
            pos = pos + w
          end
          local body_len = pos
          assert.equal(0, C.lr_body_seal_end(enc, wire + pos, cap - pos, outlen))
          pos = pos + tonumber(outlen[0])
          if m.end_chunk then
            assert.is_true(pos > body_len, "an end chunk is written")
          else
            assert.equal(body_len, pos)
          end
          if not m.raw then
            assert.equal(#payloads + (m.end_chunk and 1 or 0), tonumber(C.lr_body_chunks(enc)))
          end
          local W = pos

          local function check_decode(step, what)
            local dec = new_body(sec, opt, key, iv, rk, ri, udp and C.LR_BODY_UDP or 0)
            local got, rc, used = feed(dec, wire, W, step)
            if m.end_chunk then
              if rc ~= DONE then fail("%s: ended with %s, not LR_DONE", what, H.strerror(rc)) end
            elseif rc ~= AGAIN then
              fail("%s: ended with %s, not LR_AGAIN", what, H.strerror(rc))
            end
            if used ~= W then fail("%s: consumed %d of %d bytes", what, used, W) end
            check_payloads(m, got, payloads, what)
            if not m.raw then
              assert.equal(#payloads + (m.end_chunk and 1 or 0), tonumber(C.lr_body_chunks(dec)))
            end
            if m.end_chunk then -- the direction is finished after the end
              assert.equal(H.S.LR_EINVAL, C.lr_body_open(dec, wire, W, consumed, outbuf, OUTCAP, outlen))
            end
          end
          check_decode(function()
            local r = math.random(1, 4)
            if r == 1 then return math.random(1, 16) end
            if r == 2 then return math.random(1, 300) end
            return math.random(1, 40000)
          end, "random splits")
          check_decode(function() return 1 end, "byte at a time")
          check_decode(function() return W end, "all at once")

          -- a too-small output buffer: a chunked stream refuses the chunk
          -- (LR_ETOOBIG, nothing consumed) and a retry with room decodes it;
          -- a raw stream fills the buffer and leaves the rest
          local dec = new_body(sec, opt, key, iv, rk, ri, udp and C.LR_BODY_UDP or 0)
          local off, got, rc = 0, {}
          while true do
            if not m.raw and #got < #payloads then
              local small = #payloads[#got + 1] - 1
              rc = C.lr_body_open(dec, wire + off, W - off, consumed, outbuf, small, outlen)
              if rc ~= H.S.LR_ETOOBIG or consumed[0] ~= 0 or outlen[0] ~= 0 then
                fail("chunk %d into %d bytes: %s, consumed %d", #got + 1, small, H.strerror(rc), tonumber(consumed[0]))
              end
            end
            local cap_ = m.raw and math.random(1, 5000) or OUTCAP
            rc = C.lr_body_open(dec, wire + off, W - off, consumed, outbuf, cap_, outlen)
            if rc ~= OK then break end
            if m.raw then assert.equal(math.min(cap_, W - off), tonumber(outlen[0])) end
            got[#got + 1] = ffi.string(outbuf, outlen[0])
            off = off + tonumber(consumed[0])
          end
          assert.equal(m.end_chunk and DONE or AGAIN, rc, H.strerror(rc))
          check_payloads(m, got, payloads, "tight output buffer")
        end)
      end
    end
  end
end)

describe("body set-up", function()
  rit("refuses security 2 and 6..255 and option 0x08 without 0x04; reads security 0 as aes-128-cfb", function()
    local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
    local k, i = rkey(), rkey()
    for sec = 0, 255 do
      local rc = C.lr_body_init(b, sec, 0x01, k, i, k, i, 0)
      if sec == 2 or sec >= 6 then
        assert.equal(H.S.LR_ESECURITY, rc, "security " .. sec)
      else
        assert.equal(OK, rc, "security " .. sec)
      end
    end
    for opt = 0, 0x1f do
      local rc = C.lr_body_init(b, C.LR_SEC_AES128_GCM, opt, k, i, k, i, 0)
      assert.equal(bit.band(opt, 0x0c) == 0x08 and H.S.LR_EOPTION or OK, rc, ("option 0x%02x"):format(opt))
    end
    for _, opt in ipairs { 0x00, 0x01, 0x0d } do
      local zero = new_body(0, opt, k, i, k, i, C.LR_BODY_ZERO_PADDING)
      local cfb = new_body(C.LR_SEC_AES128_CFB, opt, k, i, k, i, C.LR_BODY_ZERO_PADDING)
      local p = rstr(math.random(1, 500))
      local w1, w2 = ffi.new("uint8_t[700]"), ffi.new("uint8_t[700]")
      local n1, n2 = ffi.new("size_t[1]"), ffi.new("size_t[1]")
      assert.equal(0, C.lr_body_seal(zero, H.buf(p), #p, w1, 700, n1))
      assert.equal(0, C.lr_body_seal(cfb, H.buf(p), #p, w2, 700, n2))
      assert.equal(H.hex(w2, n2[0]), H.hex(w1, n1[0]))
    end
  end)
end)

-- ------------------------------------------------------------------ independent reader

-- The round trips above would pass a mistake made the same way on both
-- sides.  So every configuration's wire is also read here by a reader
-- written from vmess-wire.md 11 alone, with OpenSSL (libcrypto through the
-- FFI) for the ciphers and OpenSSL's one-shot SHAKE128 (lr_shake128) for the
-- masks.  It matters most where no captured vector exists: the
-- authenticated length (0x10), and the response direction, whose length box
-- uses the request's key and IV.
local function declare(decls)
  -- one cdef each: another spec file may have declared some already
  for _, d in ipairs(decls) do pcall(ffi.cdef, d) end
end
declare {
  "typedef struct evp_cipher_st EVP_CIPHER;",
  "typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;",
  "typedef struct engine_st ENGINE;",
  "EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);",
  "void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *c);",
  "const EVP_CIPHER *EVP_aes_128_gcm(void);",
  "const EVP_CIPHER *EVP_chacha20_poly1305(void);",
  "const EVP_CIPHER *EVP_aes_128_cfb128(void);",
  "int EVP_DecryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, ENGINE *impl, const unsigned char *key, const unsigned char *iv);",
  "int EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl);",
  "int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl);",
  "int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr);",
}
local ssl = ffi.load("crypto")

-- AEAD open (GCM or ChaCha20-Poly1305, 12-byte nonce, 16-byte tag): the
-- plaintext, or nil when the tag does not verify.
local function ssl_open(cipher, key, nonce, box)
  local ctx = ffi.gc(ssl.EVP_CIPHER_CTX_new(), ssl.EVP_CIPHER_CTX_free)
  local n = ffi.new("int[1]")
  local clen = #box - 16
  local out = ffi.new("uint8_t[?]", clen + 16)
  assert(ssl.EVP_DecryptInit_ex(ctx, cipher, nil, nil, nil) == 1)
  assert(ssl.EVP_CIPHER_CTX_ctrl(ctx, 0x9, 12, nil) == 1)            -- EVP_CTRL_AEAD_SET_IVLEN
  assert(ssl.EVP_DecryptInit_ex(ctx, nil, nil, H.buf(key), (H.buf(nonce))) == 1)
  assert(ssl.EVP_DecryptUpdate(ctx, out, n, H.buf(box), clen) == 1)
  assert(ssl.EVP_CIPHER_CTX_ctrl(ctx, 0x11, 16, (H.buf(box:sub(-16)))) == 1) -- EVP_CTRL_AEAD_SET_TAG
  if ssl.EVP_DecryptFinal_ex(ctx, out + clen, n) ~= 1 then return nil end
  return ffi.string(out, clen)
end

local function ssl_cfb_decrypt(key, iv, s)
  local ctx = ffi.gc(ssl.EVP_CIPHER_CTX_new(), ssl.EVP_CIPHER_CTX_free)
  local n = ffi.new("int[1]")
  local out = ffi.new("uint8_t[?]", #s + 16)
  assert(ssl.EVP_DecryptInit_ex(ctx, ssl.EVP_aes_128_cfb128(), nil, H.buf(key), (H.buf(iv))) == 1)
  assert(ssl.EVP_DecryptUpdate(ctx, out, n, H.buf(s), #s) == 1)
  assert(n[0] == #s)
  return ffi.string(out, #s)
end

local function md5s(s)
  local o = ffi.new("uint8_t[16]")
  C.lr_md5(H.buf(s), #s, o)
  return ffi.string(o, 16)
end

local function kdf16(key, salt)
  local path = ffi.new("const uint8_t *[1]")
  local sb = H.buf(salt)
  path[0] = sb
  local plen = ffi.new("size_t[1]", #salt)
  local out = ffi.new("uint8_t[32]")
  assert(C.lr_kdf(H.buf(key), #key, path, plen, 1, out) == 0)
  return ffi.string(out, 16)
end

-- Reads one direction's wire the way vmess-wire.md 11 describes it.
-- key/iv: this direction's; req_key/req_iv: the request's.  Returns the
-- payloads (one per chunk; raw streams: one string) and whether an end
-- chunk came.
local function reference_read(sec, opt, udp, key, iv, req_key, req_iv, wire)
  local m = model(sec, opt, udp)
  local S = bit.band(opt, 1) ~= 0
  local masking, padding = bit.band(opt, 4) ~= 0, bit.band(opt, 8) ~= 0
  local aead = m.overhead == 16
  if sec == C.LR_SEC_AES128_CFB then wire = ssl_cfb_decrypt(key, iv, wire) end
  if m.raw then return { wire }, false end
  local shake = ffi.new("uint8_t[?]", 8192)
  assert(C.lr_shake128(H.buf(iv), 16, shake, 8192) == 0)
  local sp = 0
  local function draw()
    local v = shake[sp] * 256 + shake[sp + 1]
    sp = sp + 2
    return v
  end
  local cipher, pkey, lkey
  if aead then
    cipher = sec == C.LR_SEC_AES128_GCM and ssl.EVP_aes_128_gcm() or ssl.EVP_chacha20_poly1305()
    local function expand(k) if sec == C.LR_SEC_AES128_GCM then return k end return md5s(k) .. md5s(md5s(k)) end
    pkey = expand(key)
    if m.size_len == 18 then lkey = expand(kdf16(req_key, "auth_len")) end
  end
  local has_pad = padding and masking and not (sec == C.LR_SEC_NONE and not udp)
  local out, pos, i = {}, 1, 0
  while pos <= #wire do
    local p = has_pad and draw() % 64 or 0
    local n
    if m.size_len == 18 then
      local v = ssl_open(cipher, lkey, be16(i) .. req_iv:sub(3, 12), wire:sub(pos, pos + 17))
      if not v then fail("chunk %d: the length box does not open with the request key", i) end
      n = v:byte(1) * 256 + v:byte(2) + 16
    else
      n = wire:byte(pos) * 256 + wire:byte(pos + 1)
      if masking then n = bit.bxor(n, draw()) end
    end
    local body = wire:sub(pos + m.size_len, pos + m.size_len + n - p - 1)
    pos = pos + m.size_len + n
    if pos - 1 > #wire then fail("chunk %d runs past the wire", i) end
    local payload
    if aead then
      payload = ssl_open(cipher, pkey, be16(i) .. iv:sub(3, 12), body)
      if not payload then fail("chunk %d: the payload does not open", i) end
    elseif sec == C.LR_SEC_AES128_CFB then
      payload = body:sub(5)
      if body:sub(1, 4) ~= be32(fnv(payload)) then fail("chunk %d: FNV mismatch", i) end
    else
      payload = body
    end
    i = i + 1
    if #payload == 0 then
      if pos <= #wire then fail("bytes after the end chunk") end
      return out, true
    end
    out[#out + 1] = payload
  end
  return out, false
end

describe("wire format, read independently (OpenSSL)", function()
  for _, sec in ipairs(SECURITIES) do
    for _, opt in ipairs(OPTIONS) do
      for _, udp in ipairs { false, true } do
        rit(("%s option 0x%02x %s, request and response direction"):format(
              SEC_NAME[sec], opt, udp and "UDP" or "TCP"), function()
          local m = model(sec, opt, udp)
          for _, dir in ipairs { "request", "response" } do
            local req_key, req_iv = rstr(16), rstr(16)
            local key, iv = req_key, req_iv
            if dir == "response" then key, iv = rstr(16), rstr(16) end
            local enc = new_body(sec, opt, H.buf(key), H.buf(iv), H.buf(req_key), H.buf(req_iv),
                                 udp and C.LR_BODY_UDP or 0)
            local payloads, parts = {}, {}
            local w = ffi.new("uint8_t[?]", 70000)
            for k = 1, math.random(1, 6) do
              payloads[k] = rstr(k == 1 and 1 or math.random(1, 3000))
              assert.equal(0, C.lr_body_seal(enc, H.buf(payloads[k]), #payloads[k], w, 70000, outlen))
              parts[#parts + 1] = ffi.string(w, outlen[0])
            end
            assert.equal(0, C.lr_body_seal_end(enc, w, 70000, outlen))
            parts[#parts + 1] = ffi.string(w, outlen[0])
            local got, ended = reference_read(sec, opt, udp, key, iv, req_key, req_iv, table.concat(parts))
            if m.raw then
              assert.equal(H.hex(table.concat(payloads)), H.hex(got[1]))
            else
              check_payloads(m, got, payloads, dir)
            end
            assert.equal(m.end_chunk, ended)
          end
        end)
      end
    end
  end
end)

-- ------------------------------------------------------------------ request header

local T0 = 1795564195
local DOMAIN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
local function rdomain(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, #DOMAIN_CHARS)
    t[i] = DOMAIN_CHARS:sub(k, k)
  end
  return table.concat(t)
end

local function users_table(n, now)
  local u = ffi.gc(C.lr_users_new(), C.lr_users_free)
  local ids = {}
  for i = 1, n do
    ids[i] = { id = H.buf(rstr(16)), alter = (i == 2) and 4 or ((i == 3) and 64 or 0) }
    assert.equal(i - 1, C.lr_users_add(u, ids[i].id, ids[i].alter))
  end
  C.lr_users_set_legacy(u, 1)
  assert.equal(0, C.lr_users_refresh(u, now))
  return u, ids
end

local HDR_SECURITIES = { C.LR_SEC_AES128_CFB, C.LR_SEC_AES128_GCM, C.LR_SEC_CHACHA20_POLY1305, C.LR_SEC_NONE }

-- A request with random fields (valid ones: this is the round trip).
local function random_req(mode, command, atyp, padlen, dlen)
  local req = ffi.new("struct lr_req")
  req.mode = mode
  req.version = 1
  req.v = math.random(0, 255)
  req.option = bit.bor(pick(OPTIONS), math.random(0, 1) * 2)
  req.security = pick(HDR_SECURITIES)
  req.padding_len = padlen
  rfill(req.padding, 15)
  rfill(req.body_key, 16)
  rfill(req.body_iv, 16)
  rfill(req.auth_rand, 4)
  rfill(req.conn_nonce, 8)
  req.command = command
  if command == C.LR_CMD_MUX then
    req.atyp = C.LR_ATYP_NONE
  else
    req.port = math.random(0, 65535)
    req.atyp = atyp
    if atyp == C.LR_ATYP_IPV4 then
      req.addr_len = 4; rfill(req.addr, 4)
    elseif atyp == C.LR_ATYP_IPV6 then
      req.addr_len = 16; rfill(req.addr, 16)
    else
      local d = rdomain(dlen)
      req.addr_len = #d
      ffi.copy(req.addr, d, #d)
    end
  end
  return req
end

local function plain_len(req)
  local n = 38
  if req.command ~= C.LR_CMD_MUX then
    n = 41 + ((req.atyp == C.LR_ATYP_IPV4 and 4) or (req.atyp == C.LR_ATYP_IPV6 and 16) or (1 + req.addr_len))
  end
  return n + req.padding_len + 4
end

local function check_req(want, got, user, wire)
  local function eq(field, a, b)
    if a ~= b then fail("field %s: sent %s, decoded %s", field, tostring(a), tostring(b)) end
  end
  eq("mode", want.mode, got.mode)
  eq("version", 1, got.version)
  eq("v", want.v, got.v)
  eq("option", want.option, got.option)
  eq("security", want.security, got.security)
  eq("padding_len", want.padding_len, got.padding_len)
  eq("padding", H.hex(want.padding, want.padding_len), H.hex(got.padding, got.padding_len))
  eq("command", want.command, got.command)
  eq("body_key", H.hex(want.body_key, 16), H.hex(got.body_key, 16))
  eq("body_iv", H.hex(want.body_iv, 16), H.hex(got.body_iv, 16))
  eq("user", user, got.user)
  eq("ts", tonumber(want.ts), tonumber(got.ts))
  eq("auth", H.hex(wire:sub(1, 16)), H.hex(got.auth, 16))
  if want.command == C.LR_CMD_MUX then
    eq("atyp", C.LR_ATYP_NONE, got.atyp)
    eq("port", 0, got.port)
    eq("addr_len", 0, got.addr_len)
  else
    eq("atyp", want.atyp, got.atyp)
    eq("port", want.port, got.port)
    eq("addr_len", want.addr_len, got.addr_len)
    eq("addr", H.hex(want.addr, want.addr_len), H.hex(got.addr, got.addr_len))
    if want.atyp == C.LR_ATYP_DOMAIN then eq("addr NUL", 0, got.addr[got.addr_len]) end
  end
  if want.mode == C.LR_MODE_LEGACY then
    eq("id_index", want.id_index, got.id_index)
  else
    eq("id_index", -1, got.id_index)
    eq("conn_nonce", H.hex(want.conn_nonce, 8), H.hex(got.conn_nonce, 8))
    -- api.h: "AEAD randomness (encode: caller's; decode: what came in)"
    eq("auth_rand", H.hex(want.auth_rand, 4), H.hex(got.auth_rand, 4))
  end
end

local function encode_req(req, id)
  local out = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
  local rc = C.lr_req_encode(req, id, out, C.LR_REQ_WIRE_MAX, outlen)
  if rc ~= 0 then fail("lr_req_encode: %s", H.strerror(rc)) end
  return ffi.string(out, outlen[0])
end

-- Feeds `wire` one byte at a time: LR_AGAIN (nothing consumed) until the
-- last byte, then LR_OK with consumed = the header length.
local function decode_bytewise(users, replay, wire, now)
  local dec = ffi.new("struct lr_req_dec")
  C.lr_req_dec_init(dec)
  local req = ffi.new("struct lr_req")
  local b = H.buf(wire)
  for n = 0, #wire - 1 do
    local rc = C.lr_req_decode(dec, users, replay, b, n, now, req, consumed)
    if rc ~= AGAIN then fail("after %d of %d bytes: %s, not LR_AGAIN", n, #wire, H.strerror(rc)) end
    if consumed[0] ~= 0 then fail("LR_AGAIN consumed %d", tonumber(consumed[0])) end
  end
  local rc = C.lr_req_decode(dec, users, replay, b, #wire, now, req, consumed)
  if rc ~= OK then fail("complete header (%d bytes): %s", #wire, H.strerror(rc)) end
  if tonumber(consumed[0]) ~= #wire then fail("consumed %d of %d", tonumber(consumed[0]), #wire) end
  -- a finished decoder takes nothing more
  assert.equal(H.S.LR_EINVAL, C.lr_req_decode(dec, users, replay, b, #wire, now, req, consumed))
  return req
end

local function decode_once(users, replay, wire, now)
  local dec = ffi.new("struct lr_req_dec")
  C.lr_req_dec_init(dec)
  local req = ffi.new("struct lr_req")
  local rc = C.lr_req_decode(dec, users, replay, H.buf(wire), #wire, now, req, consumed)
  return rc, req, tonumber(consumed[0])
end

describe("request header round trip", function()
  local variants = {
    { "legacy, main ID", C.LR_MODE_LEGACY, "main" },
    { "legacy, alternate IDs", C.LR_MODE_LEGACY, "alt" },
    { "AEAD", C.LR_MODE_AEAD },
  }
  for _, var in ipairs(variants) do
    for _, command in ipairs { C.LR_CMD_TCP, C.LR_CMD_UDP, C.LR_CMD_MUX } do
      local atyps = command == C.LR_CMD_MUX and { C.LR_ATYP_NONE }
        or { C.LR_ATYP_IPV4, C.LR_ATYP_IPV6, C.LR_ATYP_DOMAIN }
      rit(("%s, command %d: every address type and padding 0..15, byte at a time"):format(var[1], command), function()
        local now = T0 + math.random(-1000, 1000)
        local users, ids = users_table(4, now)
        local replay = ffi.gc(C.lr_replay_new(0), C.lr_replay_free)
        local count = 0
        for _, atyp in ipairs(atyps) do
          for padlen = 0, 15 do
            local dlen = (padlen == 0 and 1) or (padlen == 15 and 255) or math.random(1, 255)
            local req = random_req(var[2], command, atyp, padlen, dlen)
            local user
            if var[3] == "alt" then
              user = pick { 1, 2 } -- 0-based: alterId 4 and 64
              req.id_index = math.random(0, ids[user + 1].alter - 1)
              if padlen == 15 then req.id_index = ids[user + 1].alter - 1 end
            else
              user = math.random(0, 3)
              req.id_index = -1
            end
            req.ts = now + math.random(-120, 120)
            if padlen == 0 then req.ts = now - 120 elseif padlen == 1 then req.ts = now + 120 end
            local wire = encode_req(req, ids[user + 1].id)
            local expect = plain_len(req) + (var[2] == C.LR_MODE_AEAD and 16 + 18 + 8 + 16 or 16)
            assert.equal(expect, #wire)
            assert.is_true(#wire <= C.LR_REQ_WIRE_MAX)
            if var[2] == C.LR_MODE_AEAD and atyp == C.LR_ATYP_DOMAIN and padlen == 15 then
              assert.equal(C.LR_REQ_WIRE_MAX, #wire) -- the largest header there is
            end
            local got = decode_bytewise(users, replay, wire, now)
            check_req(req, got, user, wire)
            -- whole, followed by body bytes: the header ends where it should
            local rc, got2, used = decode_once(users, nil, wire .. rstr(math.random(1, 600)), now)
            if rc ~= OK then fail("header + body bytes: %s", H.strerror(rc)) end
            assert.equal(#wire, used)
            check_req(req, got2, user, wire)
            count = count + 1
          end
        end
        assert.equal(#atyps * 16, count)
      end)
    end
  end
end)

-- ------------------------------------------------------------------ response header

local function random_switch()
  local sw = ffi.new("struct lr_cmd_switch")
  local h = math.random(0, 3) == 0 and "" or rdomain(math.random(1, 228))
  sw.host_len = #h
  ffi.copy(sw.host, h, #h)
  sw.port = math.random(0, 65535)
  rfill(sw.id, 16)
  sw.alter_ids = math.random(0, 65535)
  sw.level = math.random(0, 255)
  sw.valid_min = math.random(0, 255)
  return sw, h
end

-- The plaintext the CFB stream of an aes-128-cfb body with option 0x01
-- carries (SIZE || FNV || payload per chunk, then the end chunk).
local function cfb_stream_plain(payloads)
  local t = {}
  for _, p in ipairs(payloads) do t[#t + 1] = be16(#p + 4) .. be32(fnv(p)) .. p end
  t[#t + 1] = be16(4) .. be32(0x811c9dc5)
  return table.concat(t)
end

-- Decrypts `s` as one raw AES-128-CFB stream (a cfb body without
-- ChunkStream is exactly that).
local function cfb_raw_decrypt(key, iv, s)
  local raw = new_body(C.LR_SEC_AES128_CFB, 0, key, iv, key, iv)
  local inb = H.buf(s)
  local out = ffi.new("uint8_t[?]", #s + 1)
  assert.equal(0, C.lr_body_open(raw, inb, #s, consumed, out, #s, outlen))
  assert.equal(#s, tonumber(outlen[0]))
  return ffi.string(out, #s)
end

describe("response header round trip", function()
  local bodies = {
    { C.LR_SEC_AES128_CFB, 0x01 }, { C.LR_SEC_AES128_CFB, 0x00 },
    { C.LR_SEC_AES128_GCM, 0x0d }, { C.LR_SEC_CHACHA20_POLY1305, 0x1d }, { C.LR_SEC_NONE, 0x05 },
  }
  for _, mode in ipairs { C.LR_MODE_LEGACY, C.LR_MODE_AEAD } do
    local mname = mode == C.LR_MODE_LEGACY and "legacy" or "AEAD"
    for _, with_cmd in ipairs { false, true } do
      for _, bd in ipairs(bodies) do
        local sec, opt = bd[1], bd[2]
        rit(("%s mode, %s, %s 0x%02x body: byte at a time, then the body"):format(
              mname, with_cmd and "dynamic-port command" or "no command", SEC_NAME[sec], opt), function()
          for iter = 1, 9 do
            local k, i = rkey(), rkey()
            local rk, ri = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
            assert.equal(0, C.lr_resp_keys(mode, k, i, rk, ri))
            -- the response keys as vmess-wire.md 8 defines them
            local h = ffi.new("uint8_t[32]")
            if mode == C.LR_MODE_LEGACY then C.lr_md5(k, 16, h) else C.lr_sha256(k, 16, h) end
            assert.equal(H.hex(h, 16), H.hex(rk, 16))
            if mode == C.LR_MODE_LEGACY then C.lr_md5(i, 16, h) else C.lr_sha256(i, 16, h) end
            assert.equal(H.hex(h, 16), H.hex(ri, 16))

            local flags = mode == C.LR_MODE_LEGACY and C.LR_BODY_LEGACY_RESP or 0
            local enc = new_body(sec, opt, rk, ri, k, i, flags)
            local v = math.random(0, 255)
            local sw, host
            if with_cmd then sw, host = random_switch() end
            local out = ffi.new("uint8_t[?]", C.LR_RESP_WIRE_MAX)
            assert.equal(0, C.lr_resp_encode(mode, rk, ri, enc, v, sw, out, C.LR_RESP_WIRE_MAX, outlen))
            local hdr = ffi.string(out, outlen[0])
            -- its plaintext
            local plain = string.char(v, 0, 0, 0)
            if with_cmd then
              local cb = ffi.new("uint8_t[300]")
              assert.equal(0, C.lr_cmd_switch_encode(sw, cb, 300, outlen))
              plain = string.char(v, 0) .. ffi.string(cb, outlen[0])
              assert.equal(2 + 4 + 1 + #host + 22, #plain - 2)
            end
            assert.equal(#plain + (mode == C.LR_MODE_AEAD and 34 or 0), #hdr)
            assert.is_true(#hdr <= C.LR_RESP_WIRE_MAX)

            -- body after the header, through the same `enc`
            local payloads = {}
            for n = 1, math.random(1, 4) do payloads[n] = rstr(math.random(1, 3000)) end
            local bw = {}
            local wb = ffi.new("uint8_t[?]", 70000)
            for _, p in ipairs(payloads) do
              assert.equal(0, C.lr_body_seal(enc, H.buf(p), #p, wb, 70000, outlen))
              bw[#bw + 1] = ffi.string(wb, outlen[0])
            end
            assert.equal(0, C.lr_body_seal_end(enc, wb, 70000, outlen))
            bw[#bw + 1] = ffi.string(wb, outlen[0])
            local body = table.concat(bw)
            local wire = hdr .. body

            -- client: the header fed byte at a time, or with the whole
            -- wire at once, or in random pieces that run into the body
            -- (the legacy CFB stream must take exactly the header's bytes)
            local down = new_body(sec, opt, rk, ri, k, i, flags)
            local rdec = ffi.new("struct lr_resp_dec")
            C.lr_resp_dec_init(rdec)
            local resp = ffi.new("struct lr_resp")
            local wbuf = H.buf(wire)
            local how = ({ "byte at a time", "all at once", "random pieces" })[iter % 3 + 1]
            local n, rc = 0
            while true do
              rc = C.lr_resp_decode(rdec, mode, rk, ri, down, v, wbuf, n, consumed, resp)
              if rc ~= AGAIN then break end
              assert.equal(0, tonumber(consumed[0]))
              if n >= #hdr then fail("%s: LR_AGAIN with %d bytes, header %d", how, n, #hdr) end
              n = math.min(#wire, n + ((how == "byte at a time" and 1) or (how == "all at once" and #wire)
                                       or math.random(1, 40)))
            end
            if n < #hdr then fail("%s: %s after %d of %d header bytes", how, H.strerror(rc), n, #hdr) end
            assert.equal(OK, rc, H.strerror(rc))
            assert.equal(#hdr, tonumber(consumed[0]))
            assert.equal(v, resp.v)
            assert.equal(0, resp.option)
            if with_cmd then
              assert.equal(1, resp.command)
              assert.equal(#plain - 4, resp.command_len)
              assert.equal(1, resp.has_switch)
              assert.equal(host, ffi.string(resp.sw.host, resp.sw.host_len))
              assert.equal(sw.port, resp.sw.port)
              assert.equal(H.hex(sw.id, 16), H.hex(resp.sw.id, 16))
              assert.equal(sw.alter_ids, resp.sw.alter_ids)
              assert.equal(sw.level, resp.sw.level)
              assert.equal(sw.valid_min, resp.sw.valid_min)
            else
              assert.equal(0, resp.command)
              assert.equal(0, resp.command_len)
              assert.equal(0, resp.has_switch)
            end
            local m = model(sec, opt, false)
            local got, brc, used = feed(down, wbuf + #hdr, #body, function() return math.random(1, 500) end)
            check_payloads(m, got, payloads, "response body")
            assert.equal(#body, used)
            if m.end_chunk then assert.equal(DONE, brc) end

            -- the CFB stream: legacy mode continues the header's stream into
            -- an aes-128-cfb body; AEAD mode starts a fresh one; other bodies
            -- under a legacy header are not CFB-encrypted at all
            if sec == C.LR_SEC_AES128_CFB then
              local body_plain = opt == 1 and cfb_stream_plain(payloads) or table.concat(payloads)
              if mode == C.LR_MODE_LEGACY then
                assert.equal(H.hex(plain .. body_plain), H.hex(cfb_raw_decrypt(rk, ri, wire)))
              else
                assert.equal(H.hex(body_plain), H.hex(cfb_raw_decrypt(rk, ri, body)))
              end
            else
              local fresh = new_body(sec, opt, rk, ri, k, i, 0)
              local got2, brc2 = feed(fresh, H.buf(body), #body, function() return #body end)
              check_payloads(m, got2, payloads, "body without the header")
              assert.equal(DONE, brc2)
              if mode == C.LR_MODE_LEGACY then
                assert.equal(H.hex(plain), H.hex(cfb_raw_decrypt(rk, ri, hdr)))
              end
            end
          end
        end)
      end
    end
  end
end)
