-- The server side of the request header: lr_req_decode with a user table
-- (lr_users) and replay state (lr_replay): time windows, the legacy auth
-- table and its refresh, AuthID and session replay, the legacy taint, field
-- validation and bounded work on garbage (vmess-wire.md 4-7, 14, 15).
--
-- Headers with chosen fields come from lr_req_encode.  Headers with fields
-- lr_req_encode cannot write (a bad checksum, an unknown address type, a
-- wrong AEAD length) are built here: the plaintext in Lua, the AEAD boxes
-- and the legacy CFB with OpenSSL's libcrypto through the FFI (independent
-- of the codec's own cipher code), keys from lr_kdf / lr_cmd_key.
--
-- Random data comes from math.random under a fixed seed, reseeded per test
-- (printed, and part of every test name); LURAY_SPEC_SEED=<n> overrides it.
local H = require "helper"
local C, ffi = H.C, H.ffi
local S = H.S

local OK, AGAIN = 0, 1
local SEED_R = H.seeded("request_decode_spec.lua", it)
local SEED, rit, fail, rfill, rstr = SEED_R.SEED, SEED_R.it, SEED_R.fail, SEED_R.rfill, SEED_R.rstr
local function be16(n) return string.char(bit.band(bit.rshift(n, 8), 255), bit.band(n, 255)) end
local function be32(n)
  return string.char(bit.band(bit.rshift(n, 24), 255), bit.band(bit.rshift(n, 16), 255),
                     bit.band(bit.rshift(n, 8), 255), bit.band(n, 255))
end
local function be64(n) return be32(math.floor(n / 2 ^ 32)) .. be32(n % 2 ^ 32) end
local function flip(s, pos, bitno)
  local b = s:byte(pos + 1)
  return s:sub(1, pos) .. string.char(bit.bxor(b, bit.lshift(1, bitno))) .. s:sub(pos + 2)
end

local consumed = ffi.new("size_t[1]")
local outlen = ffi.new("size_t[1]")
local T = 1795564195

-- ------------------------------------------------------------------ OpenSSL

-- one cdef each: another spec file may have declared some already
for _, d in ipairs {
  "typedef struct evp_cipher_st EVP_CIPHER;",
  "typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;",
  "typedef struct engine_st ENGINE;",
  "EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);",
  "void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *c);",
  "const EVP_CIPHER *EVP_aes_128_gcm(void);",
  "const EVP_CIPHER *EVP_aes_128_cfb128(void);",
  "int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, ENGINE *impl, const unsigned char *key, const unsigned char *iv);",
  "int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl);",
  "int EVP_EncryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl);",
  "int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr);",
} do pcall(ffi.cdef, d) end
local ssl = ffi.load("crypto")
local EVP_CTRL_AEAD_SET_IVLEN, EVP_CTRL_AEAD_GET_TAG = 0x9, 0x10

local function evp(cipher, key, iv, plain, aad, tag)
  local ctx = ffi.gc(ssl.EVP_CIPHER_CTX_new(), ssl.EVP_CIPHER_CTX_free)
  local n = ffi.new("int[1]")
  local out = ffi.new("uint8_t[?]", #plain + 32)
  assert(ssl.EVP_EncryptInit_ex(ctx, cipher, nil, nil, nil) == 1)
  if tag then assert(ssl.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, #iv, nil) == 1) end
  assert(ssl.EVP_EncryptInit_ex(ctx, nil, nil, H.buf(key), (H.buf(iv))) == 1)
  if aad then assert(ssl.EVP_EncryptUpdate(ctx, nil, n, H.buf(aad), #aad) == 1) end
  assert(ssl.EVP_EncryptUpdate(ctx, out, n, H.buf(plain), #plain) == 1)
  assert(n[0] == #plain)
  assert(ssl.EVP_EncryptFinal_ex(ctx, out + #plain, n) == 1)
  local len = #plain
  if tag then
    assert(ssl.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + #plain) == 1)
    len = len + 16
  end
  return ffi.string(out, len)
end
local function gcm(key, nonce, plain, aad) return evp(ssl.EVP_aes_128_gcm(), key, nonce, plain, aad, true) end
local function cfb(key, iv, plain) return evp(ssl.EVP_aes_128_cfb128(), key, iv, plain) end

-- ------------------------------------------------------------------ crafting

local function cmd_key(id) return ffi.string(H.cmd_key((H.buf(id))), 16) end

local function kdf(key, ...)
  local n = select("#", ...)
  local path = ffi.new("const uint8_t *[?]", n)
  local plen = ffi.new("size_t[?]", n)
  local keep = {}
  for i = 1, n do
    local s = select(i, ...)
    keep[i] = H.buf(s)
    path[i - 1] = keep[i]
    plen[i - 1] = #s
  end
  local out = ffi.new("uint8_t[32]")
  assert(C.lr_kdf(H.buf(key), #key, path, plen, n, out) == 0)
  return ffi.string(out, 32)
end

local function authid(id, ts, rand4)
  local out = ffi.new("uint8_t[16]")
  assert(C.lr_authid_make(H.buf(cmd_key(id)), ts, H.buf(rand4), out) == 0)
  return ffi.string(out, 16)
end

-- Header plaintext (vmess-wire.md 6) from a table of fields; f.addr is the
-- raw address bytes after the type byte (a domain includes its length byte);
-- f.checksum overrides the FNV.
local function plaintext(f)
  local p = string.char(f.version or 1) .. f.iv .. f.key ..
    string.char(f.v, f.option, f.padlen * 16 + f.security, 0, f.command)
  if f.command ~= 3 or f.atyp then p = p .. be16(f.port) .. string.char(f.atyp) .. f.addr end
  p = p .. f.padding
  return p .. be32(f.checksum or tonumber(C.lr_fnv1a32(H.buf(p), #p)))
end

-- VMessAEAD wire (vmess-wire.md 7.3); `len` overrides the sealed length.
local function aead_wire(id, ts, rand4, nonce8, plain, len)
  local ck = cmd_key(id)
  local a = authid(id, ts, rand4)
  local lk = kdf(ck, "VMess Header AEAD Key_Length", a, nonce8):sub(1, 16)
  local ln = kdf(ck, "VMess Header AEAD Nonce_Length", a, nonce8):sub(1, 12)
  local pk = kdf(ck, "VMess Header AEAD Key", a, nonce8):sub(1, 16)
  local pn = kdf(ck, "VMess Header AEAD Nonce", a, nonce8):sub(1, 12)
  return a .. gcm(lk, ln, be16(len or #plain), a) .. nonce8 .. gcm(pk, pn, plain, a)
end

-- Legacy wire (vmess-wire.md 4-5): auth by `signer` (main or alternate ID),
-- header under the main ID's cmdKey.
local function legacy_wire(id, signer, ts, plain)
  local auth = ffi.new("uint8_t[16]")
  assert(C.lr_legacy_auth(H.buf(signer), ts, auth) == 0)
  local iv = ffi.new("uint8_t[16]")
  C.lr_md5(H.buf(be64(ts):rep(4)), 32, iv)
  return ffi.string(auth, 16) .. cfb(cmd_key(id), ffi.string(iv, 16), plain)
end

local function random_fields(over)
  local f = {
    iv = rstr(16), key = rstr(16), v = math.random(0, 255), option = 0x0d, padlen = math.random(0, 15),
    security = 3, command = 1, port = math.random(0, 65535), atyp = 1, addr = rstr(4),
  }
  f.padding = rstr(f.padlen)
  for k, v in pairs(over or {}) do f[k] = v end
  return f
end

-- ------------------------------------------------------------------ codec helpers

local function new_users(ids, now, legacy)
  local u = ffi.gc(C.lr_users_new(), C.lr_users_free)
  for i, e in ipairs(ids) do assert.equal(i - 1, C.lr_users_add(u, H.buf(e.id), e.alter or 0)) end
  C.lr_users_set_legacy(u, legacy == false and 0 or 1)
  if now then assert.equal(0, C.lr_users_refresh(u, now)) end
  return u
end

local function new_replay(cap) return ffi.gc(C.lr_replay_new(cap or 0), C.lr_replay_free) end

local function stats(r)
  local s = ffi.new("struct lr_replay_stats")
  C.lr_replay_stats(r, s)
  return { authids = tonumber(s.authids), sessions = tonumber(s.sessions), refused = tonumber(s.full_refusals) }
end

-- A request for lr_req_encode; `o` overrides fields.
local function req(mode, ts, o)
  o = o or {}
  local r = ffi.new("struct lr_req")
  r.mode = mode
  r.version = 1
  r.v = math.random(0, 255)
  r.option = o.option or 0x0d
  r.security = o.security or 3
  r.padding_len = o.padlen or math.random(0, 15)
  rfill(r.padding, 15)
  ffi.copy(r.body_key, o.key or rstr(16), 16)
  ffi.copy(r.body_iv, o.iv or rstr(16), 16)
  ffi.copy(r.auth_rand, o.rand4 or rstr(4), 4)
  rfill(r.conn_nonce, 8)
  r.command = o.command or 1
  r.port = 443
  r.atyp = o.atyp or 1
  if o.domain then
    r.atyp = 2
    r.addr_len = #o.domain
    ffi.copy(r.addr, o.domain, #o.domain)
  else
    r.addr_len = 4
    rfill(r.addr, 4)
  end
  r.ts = ts
  r.id_index = o.id_index or -1
  return r
end

local function encode(r, id)
  local out = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
  local rc = C.lr_req_encode(r, H.buf(id), out, C.LR_REQ_WIRE_MAX, outlen)
  assert.equal(0, rc, H.strerror(rc))
  return ffi.string(out, outlen[0])
end

-- Decodes `wire` in one call; returns status, the request, bytes consumed.
local function decode(users, replay, wire, now)
  local dec = ffi.new("struct lr_req_dec")
  C.lr_req_dec_init(dec)
  local r = ffi.new("struct lr_req")
  local rc = C.lr_req_decode(dec, users, replay, H.buf(wire), #wire, now, r, consumed)
  local used = tonumber(consumed[0])
  if rc ~= OK and used ~= 0 then fail("%s consumed %d bytes", H.strerror(rc), used) end
  if rc == OK and used ~= #wire then fail("consumed %d of %d", used, #wire) end
  -- a failed decoder keeps its verdict
  if rc < 0 then
    local again = C.lr_req_decode(dec, users, replay, H.buf(wire), #wire, now, r, consumed)
    if again ~= rc then fail("second call after %s gave %s", H.strerror(rc), H.strerror(again)) end
  end
  return rc, r
end

-- assert.equal on status codes, with names in the message
local function expect(want, got, what)
  if want ~= got then
    fail("%s: expected %s (%d), got %s (%d)", what or "status", H.strerror(want), want, H.strerror(got), got)
  end
end

local function id_entry(alter) return { id = rstr(16), alter = alter or 0 } end

-- ------------------------------------------------------------------ specs

describe("crafted headers", function()
  rit("match lr_req_encode byte for byte (so the crafting below is sound)", function()
    for _ = 1, 20 do
      local u = id_entry()
      local f = random_fields({ atyp = 2, addr = "\11example.com", security = math.random(1, 5) })
      local r = req(C.LR_MODE_AEAD, T + math.random(-50, 50), {
        key = f.key, iv = f.iv, padlen = f.padlen, security = f.security, domain = "example.com" })
      r.v = f.v
      r.port = f.port
      ffi.copy(r.padding, f.padding, f.padlen)
      local p = plaintext(f)
      assert.equal(H.hex(aead_wire(u.id, tonumber(r.ts), ffi.string(r.auth_rand, 4), ffi.string(r.conn_nonce, 8), p)),
                   H.hex(encode(r, u.id)))
      r.mode = C.LR_MODE_LEGACY
      assert.equal(H.hex(legacy_wire(u.id, u.id, tonumber(r.ts), p)), H.hex(encode(r, u.id)))
    end
  end)
end)

describe("time window", function()
  rit("AEAD: now-120 .. now+120 accepted, now-121 and now+121 refused with LR_ETIME", function()
    local u = id_entry()
    for _, legacy in ipairs { true, false } do
      local users = new_users({ u }, T, legacy)
      local replay = new_replay()
      for _, d in ipairs { -120, -119, -1, 0, 1, 119, 120 } do
        local rc = decode(users, replay, encode(req(C.LR_MODE_AEAD, T + d), u.id), T)
        expect(OK, rc, "offset " .. d)
      end
      for _, d in ipairs { -121, 121, -122, 122, -1000, 1000 } do
        local rc = decode(users, replay, encode(req(C.LR_MODE_AEAD, T + d), u.id), T)
        expect(S.LR_ETIME, rc, "offset " .. d)
      end
      -- the window is the decoder's `now`, not the table's refresh time
      expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T + 500), u.id), T + 400))
    end
  end)

  rit("legacy: a table refreshed at T accepts [T-120, T+120] and nothing else (LR_ENOUSER)", function()
    local u = id_entry(3)
    local users = new_users({ u }, T)
    local replay = new_replay()
    for _, d in ipairs { -120, -60, 0, 60, 120 } do
      for _, idx in ipairs { -1, 0, 2 } do
        local rc = decode(users, replay, encode(req(C.LR_MODE_LEGACY, T + d, { id_index = idx }), u.id), T)
        expect(OK, rc, ("offset %d, id %d"):format(d, idx))
      end
    end
    for _, d in ipairs { -121, 121, -130, 130, -5000 } do
      local rc = decode(users, replay, encode(req(C.LR_MODE_LEGACY, T + d), u.id), T)
      expect(S.LR_ENOUSER, rc, "offset " .. d)
    end
    -- alternate IDs beyond the user's alterId are unknown
    expect(S.LR_ENOUSER, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T, { id_index = 3 }), u.id), T))
  end)

  rit("lr_users_refresh is incremental: T then T+10 accepts T+130, no longer T-115", function()
    local u = id_entry(1)
    local users = new_users({ u }, T)
    local replay = new_replay()
    local function try(ts, now, idx)
      return decode(users, replay, encode(req(C.LR_MODE_LEGACY, ts, { id_index = idx }), u.id), now or T + 10)
    end
    expect(S.LR_ENOUSER, try(T + 130, T))
    -- taint one second that stays in the window
    local w = encode(req(C.LR_MODE_LEGACY, T + 5), u.id)
    expect(S.LR_ECHECKSUM, decode(users, replay, flip(w, #w - 1, 0), T))
    assert.equal(0, C.lr_users_refresh(users, T + 10))
    expect(OK, try(T + 130))
    expect(OK, try(T + 121))
    expect(OK, try(T - 110))
    expect(OK, try(T - 110, nil, 0))
    expect(S.LR_ENOUSER, try(T - 115))
    expect(S.LR_ENOUSER, try(T - 111))
    expect(S.LR_ENOUSER, try(T + 131))
    -- seconds that stayed were not recomputed: the taint is still there
    expect(S.LR_ETAINTED, try(T + 5))
    expect(OK, try(T + 5, nil, 0))
    -- refreshing at the same time again changes nothing
    assert.equal(0, C.lr_users_refresh(users, T + 10))
    expect(S.LR_ETAINTED, try(T + 5))
    expect(OK, try(T + 130))
    -- the ring of seconds comes round (256 s later the same slot holds
    -- T+261): the taint left with its second
    assert.equal(0, C.lr_users_refresh(users, T + 150))
    expect(S.LR_ENOUSER, try(T + 5, T + 150))
    expect(OK, try(T + 261, T + 150))
    expect(OK, try(T + 261, T + 150, 0))
    -- a jump further than the window, and a clock that went back
    assert.equal(0, C.lr_users_refresh(users, T + 1000))
    expect(OK, try(T + 880, T + 1000))
    expect(OK, try(T + 1120, T + 1000))
    expect(S.LR_ENOUSER, try(T + 879, T + 1000))
    expect(S.LR_ENOUSER, try(T + 130, T + 1000))
    assert.equal(0, C.lr_users_refresh(users, T - 500))
    expect(OK, try(T - 620, T - 500))
    expect(OK, try(T - 380, T - 500))
    expect(S.LR_ENOUSER, try(T + 1000, T - 500))
    expect(S.LR_ENOUSER, try(T - 379, T - 500))
    -- many small steps (every second for 300 s) keep exactly the window
    for now = T - 499, T - 200 do assert.equal(0, C.lr_users_refresh(users, now)) end
    expect(OK, try(T - 320, T - 200))
    expect(OK, try(T - 80, T - 200))
    expect(S.LR_ENOUSER, try(T - 321, T - 200))
    expect(S.LR_ENOUSER, try(T - 79, T - 200))
  end)
end)

describe("replay", function()
  rit("an AuthID seen before is refused (LR_EREPLAY), even with a fresh body key and IV", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    local replay = new_replay()
    local rand4 = rstr(4)
    local first = encode(req(C.LR_MODE_AEAD, T, { rand4 = rand4 }), u.id)
    expect(OK, decode(users, replay, first, T))
    -- byte-identical replay
    expect(S.LR_EREPLAY, decode(users, replay, first, T))
    expect(S.LR_EREPLAY, decode(users, replay, first, T + 100))
    -- same AuthID (same ts and R4), everything else fresh
    local again = encode(req(C.LR_MODE_AEAD, T, { rand4 = rand4 }), u.id)
    assert.equal(first:sub(1, 16), again:sub(1, 16))
    assert.not_equal(first:sub(17), again:sub(17))
    expect(S.LR_EREPLAY, decode(users, replay, again, T))
    -- the same second with other random bytes is a new AuthID
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), u.id), T))
    -- an AuthID is burnt as soon as it matched, even if the header then fails
    local w = encode(req(C.LR_MODE_AEAD, T + 1), u.id)
    expect(S.LR_EAUTH, decode(users, replay, flip(w, #w - 1, 3), T))
    expect(S.LR_EREPLAY, decode(users, replay, w, T))
  end)

  rit("a session (user, body key, body IV) seen before is refused under a new AuthID", function()
    local a, b = id_entry(), id_entry()
    local users = new_users({ a, b }, T)
    local replay = new_replay()
    local key, iv = rstr(16), rstr(16)
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T, { key = key, iv = iv }), a.id), T))
    local rc = decode(users, replay, encode(req(C.LR_MODE_AEAD, T + 1, { key = key, iv = iv }), a.id), T)
    expect(S.LR_EREPLAY, rc)
    -- the same key and IV with a new IV, or a new key, are new sessions
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T, { key = key }), a.id), T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T, { iv = iv }), a.id), T))
    -- sessions are per user
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T, { key = key, iv = iv }), b.id), T))
    -- and shared by both header modes
    rc = decode(users, replay, encode(req(C.LR_MODE_LEGACY, T, { key = key, iv = iv }), a.id), T)
    expect(S.LR_EREPLAY, rc)
    -- without replay state (specs only) nothing is remembered
    expect(OK, decode(users, nil, encode(req(C.LR_MODE_AEAD, T, { key = key, iv = iv }), a.id), T))
  end)

  rit("the replay sets fail closed at their cap (LR_EFULL, counted)", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    local replay = new_replay(3)
    -- one user may fill it all here: the cap of all entries is under test
    -- (one user's share, a quarter by default, is the next spec's)
    C.lr_replay_set_owner_cap(replay, 3)
    for i = 1, 3 do expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), u.id), T), "header " .. i) end
    assert.same({ authids = 3, sessions = 3, refused = 0 }, stats(replay))
    expect(S.LR_EFULL, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), u.id), T))
    assert.same({ authids = 3, sessions = 3, refused = 1 }, stats(replay))
    expect(S.LR_EFULL, C.lr_replay_check_authid(replay, H.buf(rstr(16)), T))
    assert.same({ authids = 3, sessions = 3, refused = 2 }, stats(replay))
    -- a replay is still a replay at the cap
    local a = encode(req(C.LR_MODE_AEAD, T), u.id)
    -- once the entries expire there is room again
    C.lr_replay_expire(replay, T + 1000)
    assert.same({ authids = 0, sessions = 0, refused = 2 }, stats(replay))
    expect(OK, decode(users, replay, a, T + 60))
    expect(S.LR_EREPLAY, decode(users, replay, a, T + 60))

    -- the session set has its own cap: legacy headers insert sessions only
    local r2 = new_replay(2)
    C.lr_replay_set_owner_cap(r2, 2)
    local lu = new_users({ u }, T)
    for i = 1, 2 do expect(OK, decode(lu, r2, encode(req(C.LR_MODE_LEGACY, T + i), u.id), T)) end
    expect(S.LR_EFULL, decode(lu, r2, encode(req(C.LR_MODE_LEGACY, T + 3), u.id), T))
    assert.same({ authids = 0, sessions = 2, refused = 1 }, stats(r2))
    -- and the refusal, like any failure after a legacy match, taints
    expect(S.LR_ETAINTED, decode(lu, r2, encode(req(C.LR_MODE_LEGACY, T + 3), u.id), T))
  end)

  rit("one user cannot fill the replay state for everyone: its share is a quarter of the cap", function()
    local a, b, c = id_entry(), id_entry(), id_entry()
    local users = new_users({ a, b, c }, T)
    local replay = new_replay(8)   -- a user's share: 2 of each kind
    local function owner_refused()
      local s = ffi.new("struct lr_replay_stats")
      C.lr_replay_stats(replay, s)
      return tonumber(s.owner_refusals), tonumber(s.full_refusals), tonumber(s.owners)
    end
    -- a floods AuthIDs: two get in, then a (only a) is refused
    local first = encode(req(C.LR_MODE_AEAD, T), a.id)
    expect(OK, decode(users, replay, first, T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), a.id), T))
    for i = 1, 20 do
      expect(S.LR_EFULL, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), a.id), T), "flood " .. i)
    end
    local o, f, n = owner_refused()
    assert.same({ 20, 0, 1 }, { o, f, n })
    -- b and c are not locked out
    for _, u in ipairs { b, c } do
      for i = 1, 2 do expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), u.id), T), "user header " .. i) end
    end
    -- a replay of a's header is still a replay, not "full"
    expect(S.LR_EREPLAY, decode(users, replay, first, T))
    -- once a's entries expire a gets in again
    C.lr_replay_expire(replay, T + 1000)
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T + 900), a.id), T + 900))
    -- legacy headers fill the session set: the same share per user
    local lusers = new_users({ a, b }, T)
    local r2 = new_replay(8)
    for i = 1, 2 do expect(OK, decode(lusers, r2, encode(req(C.LR_MODE_LEGACY, T + i), a.id), T)) end
    expect(S.LR_EFULL, decode(lusers, r2, encode(req(C.LR_MODE_LEGACY, T + 3), a.id), T))
    for i = 1, 2 do expect(OK, decode(lusers, r2, encode(req(C.LR_MODE_LEGACY, T + i), b.id), T)) end
  end)

  rit("lr_replay_expire drops entries after their time, not before", function()
    local r = new_replay()
    local a = rstr(16)
    expect(OK, C.lr_replay_check_authid(r, H.buf(a), T))
    C.lr_replay_expire(r, T + 200)
    assert.equal(1, stats(r).authids)
    -- an AuthID can pass the time check until T+240: it is held that long
    expect(S.LR_EREPLAY, C.lr_replay_check_authid(r, H.buf(a), T + 240))
    assert.equal(1, stats(r).authids)
    C.lr_replay_expire(r, T + 241 + 120)
    assert.equal(0, stats(r).authids)
    expect(OK, C.lr_replay_check_authid(r, H.buf(a), T + 400))
    -- at every phase of the expiry buckets: held through now+240, gone
    -- (and accepted again) once expired
    for d = 0, 239 do
      local rr = new_replay()
      local now = T + d
      local x = rstr(16)
      expect(OK, C.lr_replay_check_authid(rr, H.buf(x), now))
      C.lr_replay_expire(rr, now + 240)
      expect(S.LR_EREPLAY, C.lr_replay_check_authid(rr, H.buf(x), now + 240), "phase " .. d)
      C.lr_replay_expire(rr, now + 241 + 120)
      assert.equal(0, stats(rr).authids)
    end

    -- sessions: 180 s
    local u = id_entry()
    local users = new_users({ u }, T)
    local r2 = new_replay()
    local key, iv = rstr(16), rstr(16)
    expect(OK, decode(users, r2, encode(req(C.LR_MODE_AEAD, T, { key = key, iv = iv }), u.id), T))
    assert.same({ authids = 1, sessions = 1, refused = 0 }, stats(r2))
    C.lr_replay_expire(r2, T + 100)
    assert.same({ authids = 1, sessions = 1, refused = 0 }, stats(r2))
    expect(S.LR_EREPLAY, decode(users, r2, encode(req(C.LR_MODE_AEAD, T + 179, { key = key, iv = iv }), u.id), T + 179))
    C.lr_replay_expire(r2, T + 180 + 120)
    assert.equal(0, stats(r2).sessions)
    expect(OK, decode(users, r2, encode(req(C.LR_MODE_AEAD, T + 300, { key = key, iv = iv }), u.id), T + 300))
  end)
end)

describe("legacy taint", function()
  rit("a bad checksum taints the auth value: same user, ID and second refused (LR_ETAINTED)", function()
    local u = id_entry(2)
    local users = new_users({ u }, T)
    local replay = new_replay()
    -- flip a bit of the CFB ciphertext in the checksum (the last 4 bytes)
    local w = encode(req(C.LR_MODE_LEGACY, T), u.id)
    expect(S.LR_ECHECKSUM, decode(users, replay, flip(w, #w - 1 - math.random(0, 3), math.random(0, 7)), T))
    -- the untouched header, and any fresh one with that auth value
    expect(S.LR_ETAINTED, decode(users, replay, w, T))
    expect(S.LR_ETAINTED, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T), u.id), T))
    -- another ID of the same user, or another second, still works
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T, { id_index = 0 }), u.id), T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T + 1), u.id), T))
    -- AEAD is not affected
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_AEAD, T), u.id), T))

    -- a crafted plaintext with a wrong FNV, signed by alternate ID 1
    local alts = ffi.new("uint8_t[32]")
    C.lr_alter_ids(H.buf(u.id), 2, alts)
    local alt1 = ffi.string(alts + 16, 16)
    local f = random_fields()
    f.checksum = 0x12345678
    expect(S.LR_ECHECKSUM, decode(users, replay, legacy_wire(u.id, alt1, T - 7, plaintext(f)), T))
    expect(S.LR_ETAINTED, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T - 7, { id_index = 1 }), u.id), T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T - 7, { id_index = 0 }), u.id), T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T - 7), u.id), T))
  end)

  rit("a duplicate session taints; an untainted auth value may be reused with fresh keys", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    local replay = new_replay()
    local key, iv = rstr(16), rstr(16)
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T, { key = key, iv = iv }), u.id), T))
    -- auth values are not one-shot
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T), u.id), T))
    expect(S.LR_EREPLAY, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T, { key = key, iv = iv }), u.id), T))
    expect(S.LR_ETAINTED, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T), u.id), T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T + 1), u.id), T))
    expect(OK, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T + 1), u.id), T))
    -- the duplicate from another second taints that second
    expect(S.LR_EREPLAY, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T - 1, { key = key, iv = iv }), u.id), T))
    expect(S.LR_ETAINTED, decode(users, replay, encode(req(C.LR_MODE_LEGACY, T - 1), u.id), T))
  end)

  rit("every other failure after a legacy match taints too", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    local cases = {
      { S.LR_ESECURITY, { security = 7 } },
      { S.LR_EOPTION, { option = 0x08 } },
      { S.LR_ECOMMAND, { command = 9 } },
      { S.LR_EADDR, { domain = "bad domain" } },
    }
    for i, c in ipairs(cases) do
      expect(c[1], decode(users, nil, encode(req(C.LR_MODE_LEGACY, T + i, c[2]), u.id), T))
      expect(S.LR_ETAINTED, decode(users, nil, encode(req(C.LR_MODE_LEGACY, T + i), u.id), T))
    end
    local f = random_fields({ atyp = 9 })
    expect(S.LR_EADDR, decode(users, nil, legacy_wire(u.id, u.id, T + 10, plaintext(f)), T))
    expect(S.LR_ETAINTED, decode(users, nil, encode(req(C.LR_MODE_LEGACY, T + 10), u.id), T))
  end)
end)

describe("user table", function()
  rit("legacy headers are refused once lr_users_set_legacy(u, 0)", function()
    local u = id_entry(2)
    local users = new_users({ u }, T)
    local w = encode(req(C.LR_MODE_LEGACY, T), u.id)
    expect(OK, decode(users, nil, w, T))
    C.lr_users_set_legacy(users, 0)
    assert.equal(0, C.lr_users_refresh(users, T))
    for _, idx in ipairs { -1, 0, 1 } do
      local rc = decode(users, nil, encode(req(C.LR_MODE_LEGACY, T, { id_index = idx }), u.id), T)
      if rc ~= S.LR_ENOUSER and rc ~= S.LR_ELEGACY then
        fail("legacy header with legacy disabled: %s", H.strerror(rc))
      end
    end
    expect(OK, decode(users, nil, encode(req(C.LR_MODE_AEAD, T), u.id), T))
    C.lr_users_set_legacy(users, 1)
    assert.equal(0, C.lr_users_refresh(users, T))
    expect(OK, decode(users, nil, w, T))
  end)

  rit("an unknown user is LR_ENOUSER in both modes", function()
    local u, other = id_entry(4), id_entry(4)
    local users = new_users({ u }, T)
    expect(S.LR_ENOUSER, decode(users, nil, encode(req(C.LR_MODE_AEAD, T), other.id), T))
    expect(S.LR_ENOUSER, decode(users, nil, encode(req(C.LR_MODE_LEGACY, T), other.id), T))
    expect(S.LR_ENOUSER, decode(users, nil, encode(req(C.LR_MODE_LEGACY, T, { id_index = 1 }), other.id), T))
    -- an empty table knows nobody
    local empty = new_users({}, T)
    expect(S.LR_ENOUSER, decode(empty, nil, encode(req(C.LR_MODE_AEAD, T), u.id), T))
    expect(S.LR_ENOUSER, decode(empty, nil, encode(req(C.LR_MODE_LEGACY, T), u.id), T))
  end)

  rit("the legacy auth table stays exact over many refreshes (index deletions, ring reuse)", function()
    local ids = {}
    for i = 1, 12 do ids[i] = id_entry(math.random(0, 20)) end
    local users = new_users(ids, T)
    local function check(now, ts, want)
      local ui = math.random(1, #ids)
      local idx = math.random(-1, ids[ui].alter - 1)
      local rc, r = decode(users, nil, encode(req(C.LR_MODE_LEGACY, ts, { id_index = idx }), ids[ui].id), now)
      expect(want, rc, ("refreshed at %d: ts %d, user %d, id %d"):format(now, ts, ui - 1, idx))
      if want == OK then
        assert.equal(ui - 1, r.user)
        assert.equal(idx, r.id_index)
        assert.equal(ts, tonumber(r.ts))
      end
    end
    local now = T
    for step = 1, 60 do
      -- mostly forward in small steps, sometimes a jump, rarely backwards
      local r = math.random(1, 20)
      now = now + ((r == 1 and -math.random(1, 300)) or (r == 2 and math.random(200, 600)) or math.random(1, 30))
      assert.equal(0, C.lr_users_refresh(users, now))
      for _ = 1, 25 do check(now, now + math.random(-120, 120), OK) end
      check(now, now - 120, OK)
      check(now, now + 120, OK)
      check(now, now - 121 - math.random(0, 200), S.LR_ENOUSER)
      check(now, now + 121 + math.random(0, 200), S.LR_ENOUSER)
      if step == 60 then
        -- every ID of every user at the edges and in the middle
        for ui, e in ipairs(ids) do
          for idx = -1, e.alter - 1 do
            for _, d in ipairs { -120, 0, 120 } do
              local rc, rq = decode(users, nil, encode(req(C.LR_MODE_LEGACY, now + d, { id_index = idx }), e.id), now)
              expect(OK, rc)
              assert.equal(ui - 1, rq.user)
            end
          end
        end
      end
    end
  end)

  rit("1000 users, the matching one last, in both modes", function()
    local ids = {}
    for i = 1, 1000 do ids[i] = id_entry(i == 1000 and 2 or 0) end
    local users = new_users(ids, T)
    assert.equal(1000, C.lr_users_count(users))
    -- a duplicate ID is refused
    assert.equal(S.LR_EINVAL, C.lr_users_add(users, H.buf(ids[500].id), 0))
    local replay = new_replay()
    local last = ids[1000].id
    for _, m in ipairs { { C.LR_MODE_AEAD, -1 }, { C.LR_MODE_LEGACY, -1 }, { C.LR_MODE_LEGACY, 1 } } do
      local rc, r = decode(users, replay, encode(req(m[1], T - 100, { id_index = m[2] }), last), T)
      expect(OK, rc)
      assert.equal(999, r.user)
      assert.equal(m[1], r.mode)
      assert.equal(m[2], r.id_index)
    end
    local rc, r = decode(users, replay, encode(req(C.LR_MODE_AEAD, T), ids[1].id), T)
    expect(OK, rc)
    assert.equal(0, r.user)
  end)
end)

describe("field validation", function()
  rit("security 2 and 6..15 are LR_ESECURITY; 0 is read as aes-128-cfb", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    for _, mode in ipairs { C.LR_MODE_AEAD, C.LR_MODE_LEGACY } do
      for sec = 0, 15 do
        local rc, r = decode(users, nil, encode(req(mode, T - sec, { security = sec }), u.id), T)
        if sec == 2 or sec >= 6 then
          expect(S.LR_ESECURITY, rc, "security " .. sec)
        else
          expect(OK, rc, "security " .. sec)
          assert.equal(sec == 0 and 1 or sec, r.security)
        end
      end
    end
  end)

  rit("option 0x08 without 0x04 is LR_EOPTION; every other combination is accepted", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    for _, mode in ipairs { C.LR_MODE_AEAD, C.LR_MODE_LEGACY } do
      for opt = 0, 0x1f do
        local rc, r = decode(users, nil, encode(req(mode, T - opt, { option = opt }), u.id), T)
        if bit.band(opt, 0x0c) == 0x08 then
          expect(S.LR_EOPTION, rc, ("option 0x%02x"):format(opt))
        else
          expect(OK, rc, ("option 0x%02x"):format(opt))
          assert.equal(opt, r.option)
        end
      end
    end
  end)

  rit("an unknown command is LR_ECOMMAND", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    for _, mode in ipairs { C.LR_MODE_AEAD, C.LR_MODE_LEGACY } do
      for i, cmd in ipairs { 0, 4, 5, 0x7f, 0xff } do
        expect(S.LR_ECOMMAND, decode(users, nil, encode(req(mode, T - i, { command = cmd }), u.id), T), "command " .. cmd)
      end
      for i, cmd in ipairs { 1, 2, 3 } do
        expect(OK, decode(users, nil, encode(req(mode, T + i, { command = cmd }), u.id), T), "command " .. cmd)
      end
    end
  end)

  rit("an unknown address type or an invalid domain is LR_EADDR", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    local n = 0
    local function both(f, want, what)
      for _, mode in ipairs { C.LR_MODE_AEAD, C.LR_MODE_LEGACY } do
        n = n + 1
        local ts = T - 120 + n
        local p = plaintext(f)
        local w = mode == C.LR_MODE_AEAD and aead_wire(u.id, ts, rstr(4), rstr(8), p) or legacy_wire(u.id, u.id, ts, p)
        expect(want, decode(users, nil, w, T), what)
      end
    end
    for _, atyp in ipairs { 0, 4, 5, 0xff } do
      both(random_fields({ atyp = atyp, addr = rstr(4) }), S.LR_EADDR, "address type " .. atyp)
    end
    both(random_fields({ atyp = 2, addr = "\0" }), S.LR_EADDR, "empty domain")
    both(random_fields({ atyp = 2, addr = "\4a.b_" }), OK, "domain a.b_")
    -- through lr_req_encode, which writes any domain bytes
    for i, d in ipairs { "a b", "exa!mple.com", "a/b", "a\0b", "caf\195\169.fr", "[::1]", "host:80", "a@b", "\255" } do
      for _, mode in ipairs { C.LR_MODE_AEAD, C.LR_MODE_LEGACY } do
        expect(S.LR_EADDR, decode(users, nil, encode(req(mode, T + i, { domain = d }), u.id), T), ("domain %q"):format(d))
      end
    end
    local ok255 = ("a"):rep(250) .. "-._9Z"
    for i, d in ipairs { "example.com", "0.0.0.0", "x", "A-Z_a.z-09", ok255 } do
      for _, mode in ipairs { C.LR_MODE_AEAD, C.LR_MODE_LEGACY } do
        local rc, r = decode(users, nil, encode(req(mode, T + 20 + i, { domain = d }), u.id), T)
        expect(OK, rc, ("domain %q"):format(d))
        assert.equal(d, ffi.string(r.addr, r.addr_len))
      end
    end
  end)

  rit("AEAD: a wrong checksum, or a sealed length out of range or not the header's, is refused", function()
    local u = id_entry()
    local users = new_users({ u }, T)
    local function try(plain, len)
      return decode(users, nil, aead_wire(u.id, T, rstr(4), rstr(8), plain, len), T)
    end
    local f = random_fields()
    local p = plaintext(f)
    expect(OK, try(p))
    f.checksum = bit.bxor(tonumber(C.lr_fnv1a32(H.buf(p), #p - 4)), 1)
    expect(S.LR_ECHECKSUM, try(plaintext(f)))
    -- L says fewer or more bytes than the plaintext has
    f.checksum = nil
    p = plaintext(f)
    expect(S.LR_EINVAL, try(p:sub(1, -2), #p - 1))
    expect(S.LR_EINVAL, try(p .. "x", #p + 1))
    -- L below the smallest header (42: mux, no padding) or above the largest
    expect(S.LR_EINVAL, try(rstr(41), 41))
    expect(S.LR_EINVAL, try("", 0))
    expect(S.LR_ETOOBIG, try(rstr(317), 317))
    expect(S.LR_ETOOBIG, try(rstr(16), 65535))
    -- the smallest and the largest header are fine
    local mux = random_fields({ command = 3, atyp = false, padlen = 0, padding = "" })
    assert.equal(42, #plaintext(mux))
    expect(OK, try(plaintext(mux)))
    local big = random_fields({ atyp = 2, addr = "\255" .. ("q"):rep(255), padlen = 15 })
    big.padding = rstr(15)
    assert.equal(C.LR_REQ_PLAIN_MAX, #plaintext(big))
    expect(OK, try(plaintext(big)))
  end)
end)

describe("bounded work", function()
  rit("2000 random byte strings (0..600 bytes) never decode, and never wait past LR_REQ_WIRE_MAX", function()
    local ids = { id_entry(4), id_entry(), id_entry(16) }
    local users = new_users(ids, T)
    local replay = new_replay()
    local counts = {}
    for _ = 1, 2000 do
      local n = math.random(0, 600)
      local s = rstr(n)
      local rc = decode(users, replay, s, T)
      if rc == OK then fail("%d random bytes decoded", n) end
      if n >= C.LR_REQ_WIRE_MAX and rc == AGAIN then fail("%d random bytes: LR_AGAIN", n) end
      if n < 16 then expect(AGAIN, rc, n .. " bytes") end
      if n >= 16 then assert.is_true(rc < 0, n .. " random bytes: " .. H.strerror(rc)) end
      counts[rc] = (counts[rc] or 0) + 1
    end
    assert.is_true((counts[S.LR_ENOUSER] or 0) > 1800)
    local s = rstr(400)
    expect(S.LR_ENOUSER, decode(users, replay, s, T))
  end)

  rit("a matching AuthID or legacy auth value followed by garbage is decided by LR_REQ_WIRE_MAX bytes", function()
    local u = id_entry()
    for _ = 1, 10 do
      -- AEAD: a valid AuthID, then garbage
      local users = new_users({ u }, T)
      local s = authid(u.id, T, rstr(4)) .. rstr(400 - 16)
      local dec = ffi.new("struct lr_req_dec")
      C.lr_req_dec_init(dec)
      local r = ffi.new("struct lr_req")
      local b = H.buf(s)
      for n = 0, #s do
        local rc = C.lr_req_decode(dec, users, nil, b, n, T, r, consumed)
        if n < 16 + 18 + 8 then expect(AGAIN, rc, n .. " bytes")
        else expect(S.LR_EAUTH, rc, n .. " bytes") end
      end
      -- AEAD: a valid length box saying 316, then a garbage header box
      local ck = cmd_key(u.id)
      local a, nonce = authid(u.id, T + 1, rstr(4)), rstr(8)
      local lk = kdf(ck, "VMess Header AEAD Key_Length", a, nonce):sub(1, 16)
      local ln = kdf(ck, "VMess Header AEAD Nonce_Length", a, nonce):sub(1, 12)
      s = a .. gcm(lk, ln, be16(316), a) .. nonce .. rstr(400)
      C.lr_req_dec_init(dec)
      b = H.buf(s)
      for n = 0, #s do
        local rc = C.lr_req_decode(dec, users, nil, b, n, T, r, consumed)
        if n < C.LR_REQ_WIRE_MAX then expect(AGAIN, rc, n .. " bytes")
        else expect(S.LR_EAUTH, rc, n .. " bytes") end
      end
      -- legacy: a valid auth value, then garbage (it taints, so a new table)
      users = new_users({ u }, T)
      local auth = ffi.new("uint8_t[16]")
      C.lr_legacy_auth(H.buf(u.id), T, auth)
      s = ffi.string(auth, 16) .. rstr(600)
      C.lr_req_dec_init(dec)
      b = H.buf(s)
      local decided
      for n = 0, #s do
        local rc = C.lr_req_decode(dec, users, nil, b, n, T, r, consumed)
        if rc == OK then fail("garbage accepted at %d bytes", n) end
        if rc ~= AGAIN then
          decided = decided or n
          if rc >= 0 then fail("%d bytes: %s", n, H.strerror(rc)) end
        elseif decided then
          fail("LR_AGAIN at %d bytes after an error at %d", n, decided)
        end
      end
      assert.is_true(decided ~= nil and decided <= 16 + C.LR_REQ_PLAIN_MAX, "decided at " .. tostring(decided))
    end
  end)
end)
