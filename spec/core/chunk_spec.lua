-- Body stream codec against the chunk vectors (vmess-wire.md 11), plus the
-- SHAKE stream across many blocks and the nonce counter's wrap.
local H = require "helper"
local C, ffi = H.C, H.ffi

local function body(sec, opt, key, iv, flags)
  local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
  local k, i = H.buf(key), H.buf(iv)
  local rc = C.lr_body_init(b, sec, opt, k, i, k, i, flags or 0)
  assert.equal(0, rc, H.strerror(rc))
  return b
end

local outlen = ffi.new("size_t[1]")
local consumed = ffi.new("size_t[1]")
local wire = ffi.new("uint8_t[?]", 70000)
local plain = ffi.new("uint8_t[?]", 70000)

local function seal(b, s)
  local rc = C.lr_body_seal(b, H.buf(s), #s, wire, 70000, outlen)
  assert.equal(0, rc, H.strerror(rc))
  return ffi.string(wire, outlen[0])
end

local function seal_end(b)
  assert.equal(0, C.lr_body_seal_end(b, wire, 70000, outlen))
  return ffi.string(wire, outlen[0])
end

-- Decodes a whole byte string; returns payload, final status.
local function open_all(b, s)
  local inb = H.buf(s)
  local off, out = 0, {}
  while true do
    local rc = C.lr_body_open(b, inb + off, #s - off, consumed, plain, 70000, outlen)
    if rc < 0 or rc == H.S.LR_AGAIN then return table.concat(out), rc end
    out[#out + 1] = ffi.string(plain, outlen[0])
    off = off + tonumber(consumed[0])
    if rc == H.S.LR_DONE then return table.concat(out), rc, off end
  end
end

local chunk_files = {
  chunk_aes128gcm = H.vectors("chunk_aes128gcm"),
  chunk_chacha20poly1305 = H.vectors("chunk_chacha20poly1305"),
  chunk_legacy_cfb = H.vectors("chunk_legacy_cfb"),
  chunk_none = H.vectors("chunk_none"),
}
for _, name in ipairs { "chunk_aes128gcm", "chunk_chacha20poly1305", "chunk_legacy_cfb", "chunk_none" } do
  describe(name, function()
    local v = chunk_files[name]
    H.each_case(v, function(c)
      local key, iv = H.unhex(c.key), H.unhex(c.iv)
      local expect = c.chunk0 .. c.chunk1 .. c.eos
      it("encodes option " .. c.option .. " byte for byte", function()
        local b = body(v.security_byte, c.option, key, iv, C.LR_BODY_ZERO_PADDING)
        local got = seal(b, c.payloads_ascii[1])
        assert.equal(c.chunk0, H.hex(got))
        assert.equal(c.chunk1, H.hex(seal(b, c.payloads_ascii[2])))
        assert.equal(c.eos, H.hex(seal_end(b)))
      end)
      it("decodes option " .. c.option .. " to the payloads and the end", function()
        local b = body(v.security_byte, c.option, key, iv)
        local got, rc, used = open_all(b, H.unhex(expect))
        assert.equal(H.S.LR_DONE, rc)
        assert.equal(#expect / 2, used)
        assert.equal(table.concat(c.payloads_ascii), got)
      end)
      if c.chacha_key then
        it("expands the ChaCha20 key as MD5(k) || MD5(MD5(k))", function()
          local k32 = ffi.new("uint8_t[32]")
          C.lr_md5(H.buf(key), 16, k32)
          C.lr_md5(k32, 16, k32 + 16)
          assert.equal(c.chacha_key, H.hex(k32, 32))
        end)
      end
    end)
  end)
end

describe("SHAKE128 stream", function()
  it("stays equal to OpenSSL's one-shot XOF over many Keccak blocks", function()
    local iv = H.random(16)
    local b = body(C.LR_SEC_NONE, 0x05, H.random(16), iv)
    local ref = ffi.new("uint8_t[4000]")
    C.lr_shake128(H.buf(iv), 16, ref, 4000)
    for i = 0, 1999 do
      local w = seal(b, "x")
      local size = w:byte(1) * 256 + w:byte(2)
      local mask = ref[2 * i] * 256 + ref[2 * i + 1]
      assert.equal(bit.bxor(1, mask), size)
    end
  end)
end)

describe("chunk nonce", function()
  it("wraps after 65536 chunks the way v2ray's reader expects", function()
    local key, iv = H.random(16), H.random(16)
    local enc = body(C.LR_SEC_AES128_GCM, 0x01, key, iv)
    local dec = body(C.LR_SEC_AES128_GCM, 0x01, key, iv)
    local w
    for _ = 1, 65537 do
      w = seal(enc, "z")
      assert.equal(0, C.lr_body_open(dec, H.buf(w), #w, consumed, plain, 70000, outlen))
    end
    assert.equal(65537, tonumber(C.lr_body_chunks(enc)))
    -- chunk 65536 used counter 0 again: same nonce as the first chunk, so
    -- sealing the same byte gives the same ciphertext
    local first = body(C.LR_SEC_AES128_GCM, 0x01, key, iv)
    local c0 = seal(first, "z")
    local enc2 = body(C.LR_SEC_AES128_GCM, 0x01, key, iv)
    for _ = 1, 65536 do seal(enc2, "q") end
    assert.equal(H.hex(c0), H.hex(seal(enc2, "z")))
  end)
end)
