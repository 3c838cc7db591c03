-- lr_random_nonsecret: the per-thread ChaCha20 stream for bytes that hide
-- but protect nothing (GlobalPadding content).  Fresh across calls, blocks,
-- rekeys and forks; padded chunks drawn from it still decode.
local H = require "helper"
local C, ffi = H.C, H.ffi
local unistd = require "posix.unistd"
local pwait = require "posix.sys.wait"

local function draw(n)
  local b = ffi.new("uint8_t[?]", n)
  C.lr_random_nonsecret(b, n)
  return ffi.string(b, n)
end

describe("lr_random_nonsecret", function()
  it("hands out fresh bytes, any length, across its 1 KiB blocks", function()
    local seen = {}
    for _, n in ipairs { 1, 7, 63, 1000, 1024, 1500, 5000 } do
      local s = draw(n)
      assert.equal(n, #s)
      if n >= 16 then
        assert.is_nil(seen[s:sub(1, 16)], "a repeated 16-byte prefix")
        seen[s:sub(1, 16)] = true
        -- not stuck on one value (compared as bytes: the first byte used
        -- as a gsub pattern broke on "%", "(", ...)
        local other = false
        for i = 2, n do
          if s:byte(i) ~= s:byte(1) then other = true; break end
        end
        assert.is_true(other, "every byte the same")
      end
    end
    -- within one draw, no 16-byte window of a block repeats in the next
    local s = draw(4096)
    assert.not_equal(s:sub(1, 1024), s:sub(1025, 2048))
    assert.not_equal(s:sub(1, 16), s:sub(1025, 1040))
  end)

  it("keeps going past a rekey (64 MiB) without repeating its start", function()
    local first = draw(64)
    local n = 1048576
    local b = ffi.new("uint8_t[?]", n)
    for _ = 1, 66 do C.lr_random_nonsecret(b, n) end
    local after = draw(64)
    assert.not_equal(first, after)
    assert.not_equal(("\0"):rep(64), after)
  end)

  it("differs between a parent and its forked child", function()
    draw(10) -- the parent's stream is keyed and partly used
    local r, w = assert(unistd.pipe())
    local pid = assert(unistd.fork())
    if pid == 0 then
      unistd.close(r)
      unistd.write(w, draw(64))
      unistd._exit(0)
    end
    unistd.close(w)
    local got = {}
    while true do
      local d = unistd.read(r, 64)
      if not d or #d == 0 then break end
      got[#got + 1] = d
    end
    unistd.close(r)
    pwait.wait(pid)
    local child = table.concat(got)
    assert.equal(64, #child)
    local parent = draw(64)
    assert.not_equal(parent, child)
  end)
end)

describe("GlobalPadding from lr_random_nonsecret", function()
  local opt = C.LR_OPT_CHUNK_STREAM + C.LR_OPT_CHUNK_MASKING + C.LR_OPT_GLOBAL_PADDING
  local key, iv = ("k"):rep(16), ("i"):rep(16)
  local outlen = ffi.new("size_t[1]")
  local consumed = ffi.new("size_t[1]")
  local wire = ffi.new("uint8_t[?]", 70000)
  local plain = ffi.new("uint8_t[?]", 70000)

  local function body(sec)
    local b = ffi.gc(C.lr_body_new(), C.lr_body_free)
    local k, i = H.buf(key), H.buf(iv)
    assert.equal(0, C.lr_body_init(b, sec, opt, k, i, k, i, 0))
    return b
  end

  local function encode(sec, payloads)
    local b, out = body(sec), {}
    for _, s in ipairs(payloads) do
      assert.equal(0, C.lr_body_seal(b, H.buf(s), #s, wire, 70000, outlen))
      out[#out + 1] = ffi.string(wire, outlen[0])
    end
    assert.equal(0, C.lr_body_seal_end(b, wire, 70000, outlen))
    out[#out + 1] = ffi.string(wire, outlen[0])
    return table.concat(out)
  end

  for _, sec in ipairs { C.LR_SEC_AES128_GCM, C.LR_SEC_CHACHA20_POLY1305, C.LR_SEC_AES128_CFB } do
    it("decodes, and only the padding differs between two encodings (security " .. tonumber(sec) .. ")", function()
      local payloads = {}
      for i = 1, 50 do payloads[i] = ("payload %d "):format(i):rep(i) end
      local a, b = encode(sec, payloads), encode(sec, payloads)
      assert.equal(#a, #b) -- lengths come from the SHAKE stream
      if sec ~= C.LR_SEC_AES128_CFB then
        assert.not_equal(a, b) -- the padding bytes are fresh each time
      end
      local d = body(sec)
      local inb, off, out = H.buf(a), 0, {}
      while true do
        local rc = C.lr_body_open(d, inb + off, #a - off, consumed, plain, 70000, outlen)
        assert.is_true(rc >= 0, H.strerror(rc))
        out[#out + 1] = ffi.string(plain, outlen[0])
        off = off + tonumber(consumed[0])
        if rc == H.S.LR_DONE then break end
      end
      assert.equal(#a, off)
      assert.equal(table.concat(payloads), table.concat(out))
    end)
  end
end)
