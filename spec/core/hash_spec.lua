-- Hashes and the SHAKE128 masking stream (vmess-wire.md 11.3).
local H = require "helper"
local C, ffi = H.C, H.ffi

local function shake_stream(iv, n)
  local out = ffi.new("uint8_t[?]", n)
  assert.equal(0, C.lr_shake128(H.buf(iv), #iv, out, n))
  return out
end

describe("hashes", function()
  it("computes FNV-1a-32 and CRC32 check values", function()
    assert.equal(0x811c9dc5, C.lr_fnv1a32(nil, 0))
    assert.equal(0xe40c292c, C.lr_fnv1a32(H.buf("a"), 1))
    assert.equal(0xcbf43926, C.lr_crc32(H.buf("123456789"), 9))
  end)

  it("computes MD5, SHA-256 and their HMACs (RFC 2202 / 4231)", function()
    local out = ffi.new("uint8_t[32]")
    C.lr_md5(H.buf("abc"), 3, out)
    assert.equal("900150983cd24fb0d6963f7d28e17f72", H.hex(out, 16))
    C.lr_sha256(H.buf("abc"), 3, out)
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", H.hex(out, 32))
    C.lr_hmac_md5(H.buf("Jefe"), 4, H.buf("what do ya want for nothing?"), 28, out)
    assert.equal("750c783e6ab0b503eaa86e310a5db738", H.hex(out, 16))
    C.lr_hmac_sha256(H.buf("Jefe"), 4, H.buf("what do ya want for nothing?"), 28, out)
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", H.hex(out, 32))
  end)

  it("compares in constant time", function()
    assert.equal(0, C.lr_memeq_ct(H.buf("abcd"), H.buf("abcd"), 4))
    assert.equal(-1, C.lr_memeq_ct(H.buf("abcd"), H.buf("abce"), 4))
  end)
end)

describe("SHAKE128 masking", function()
  it("matches masking.json", function()
    local v = H.vectors("masking")
    local iv = H.unhex(v.iv)
    local s = shake_stream(iv, 32)
    assert.equal(v.shake128_first_32_bytes, H.hex(s, 32))
    local function u16(i) return s[2 * i] * 256 + s[2 * i + 1] end
    for i, m in ipairs(v.masks_without_padding) do
      assert.equal(m, u16(i - 1))
    end
    for i, c in ipairs(v.per_chunk_with_padding) do
      assert.equal(c.padding_u16, u16(2 * (i - 1)))
      assert.equal(c.padding_len, c.padding_u16 % 64)
      assert.equal(c.mask_u16, u16(2 * (i - 1) + 1))
    end
  end)
end)
