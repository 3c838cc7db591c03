-- Identity, legacy auth, KDF and AuthID against the shared vectors
-- (vmess-wire.md 2, 4, 7.1, 7.2).
local H = require "helper"
local C, ffi = H.C, H.ffi

describe("identity", function()
  it("derives cmdKey and the alterId chain (identity.json)", function()
    H.each_case(H.vectors("identity"), function(c)
      local id = H.uuid(c.uuid)
      assert.equal(c.uuid_bytes, H.hex(id, 16))
      assert.equal(c.cmd_key, H.hex(H.cmd_key(id), 16))
      local n = #c.alter_ids
      local alts = ffi.new("uint8_t[?]", 16 * n)
      assert.equal(0, C.lr_alter_ids(id, n, alts))
      for k = 1, n do
        assert.equal(c.alter_ids[k], H.hex(alts + 16 * (k - 1), 16))
        assert.equal(c.alter_id_cmd_keys[k], H.hex(H.cmd_key(alts + 16 * (k - 1)), 16))
      end
    end)
  end)

  it("parses and formats UUIDs, refusing malformed ones", function()
    local id = H.uuid("DE305D54-75B4-431B-ADB2-EB6B9E546014")
    local s = ffi.new("char[37]")
    C.lr_uuid_format(id, s)
    assert.equal("de305d54-75b4-431b-adb2-eb6b9e546014", ffi.string(s))
    local out = ffi.new("uint8_t[16]")
    assert.equal(0, C.lr_uuid_parse("de305d5475b4431badb2eb6b9e546014", 32, out))
    for _, bad in ipairs { "", "de305d54-75b4-431b-adb2-eb6b9e54601", "de305d54-75b4-431b-adb2-eb6b9e54601g",
                           "de305d54x75b4-431b-adb2-eb6b9e546014", "de305d5475b4431badb2eb6b9e5460144444" } do
      assert.equal(H.S.LR_EINVAL, C.lr_uuid_parse(bad, #bad, out))
    end
  end)

  it("makes random version-4 UUIDs", function()
    local a, b = ffi.new("uint8_t[16]"), ffi.new("uint8_t[16]")
    C.lr_uuid_random(a); C.lr_uuid_random(b)
    assert.not_equal(H.hex(a, 16), H.hex(b, 16))
    assert.equal(0x40, bit.band(a[6], 0xf0))
    assert.equal(0x80, bit.band(a[8], 0xc0))
  end)
end)

describe("legacy auth", function()
  it("matches legacy_auth.json", function()
    H.each_case(H.vectors("legacy_auth"), function(c)
      local idb = H.buf(H.unhex(c.id_bytes))
      local out = ffi.new("uint8_t[16]")
      assert.equal(0, C.lr_legacy_auth(idb, c.timestamp, out))
      assert.equal(c.auth, H.hex(out, 16))
      -- header IV = MD5(BE64(ts) x 4) and the header key is the main cmdKey
      local ts = H.unhex(c.timestamp_be64)
      local iv = ffi.new("uint8_t[16]")
      C.lr_md5(H.buf(ts:rep(4)), 32, iv)
      assert.equal(c.header_iv, H.hex(iv, 16))
      assert.equal(c.header_key, H.hex(H.cmd_key(H.uuid(c.uuid)), 16))
    end)
  end)
end)

describe("KDF", function()
  it("matches kdf.json", function()
    H.each_case(H.vectors("kdf"), function(c)
      local key = c.key_ascii or H.unhex(c.key)
      local n = #c.path_ascii
      local path = ffi.new("const uint8_t *[?]", math.max(n, 1))
      local plen = ffi.new("size_t[?]", math.max(n, 1))
      local keep = {}
      for i, p in ipairs(c.path_ascii) do
        keep[i] = H.buf(p)
        path[i - 1] = keep[i]
        plen[i - 1] = #p
      end
      local out = ffi.new("uint8_t[32]")
      assert.equal(0, C.lr_kdf(H.buf(key), #key, path, plen, n, out))
      if c.kdf then assert.equal(c.kdf, H.hex(out, 32)) end
      if c.kdf16 then assert.equal(c.kdf16, H.hex(out, 16)) end
    end)
  end)

  it("refuses paths deeper than 8", function()
    local path = ffi.new("const uint8_t *[9]")
    local plen = ffi.new("size_t[9]")
    local out = ffi.new("uint8_t[32]")
    assert.equal(H.S.LR_EINVAL, C.lr_kdf(H.buf("k"), 1, path, plen, 9, out))
  end)
end)

describe("AuthID", function()
  it("matches authid.json", function()
    H.each_case(H.vectors("authid"), function(c)
      local ck = H.cmd_key(H.uuid(c.uuid))
      assert.equal(c.cmd_key, H.hex(ck, 16))
      assert.equal(c.crc32, string.format("%08x", C.lr_crc32(H.buf(H.unhex(c.plaintext)), 12)))
      local out = ffi.new("uint8_t[16]")
      assert.equal(0, C.lr_authid_make(ck, c.timestamp, H.buf(H.unhex(c.rand4)), out))
      assert.equal(c.auth_id, H.hex(out, 16))
    end)
  end)
end)
