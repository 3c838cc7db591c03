-- What the probe specs send (hardening_spec's probe classes, wss_spec's
-- through TLS + WebSocket): random bytes, bit flips, and VMessAEAD request
-- headers built with the codec (lr_req_encode) for a chosen user, time and
-- destination, as a prober that learnt a header's shape would craft them.
local core = require "luaray.core"
local bit = require "bit"
local C, ffi = core.C, core.ffi

local M = {}

local urandom = assert(io.open("/dev/urandom", "rb"))

-- n random bytes
function M.rand(n) return urandom:read(n) end

-- bytes with bit `bitn` of the byte at 0-based `pos` flipped
function M.flip(bytes, pos, bitn)
  local b = bytes:byte(pos + 1)
  return bytes:sub(1, pos) .. string.char(bit.bxor(b, bit.lshift(1, bitn))) .. bytes:sub(pos + 2)
end

-- A VMessAEAD request header: user `uuid`, timestamp `ts`, destination
-- 127.0.0.1:port, aes-128-gcm, `option` (default 0x05: chunk stream +
-- masking) -> the header, its body key, its body IV.
function M.craft_session(uuid, ts, port, option)
  local id = ffi.new("uint8_t[16]")
  assert(C.lr_uuid_parse(uuid, #uuid, id) == 0)
  local r = ffi.new("struct lr_req")
  local key, iv = M.rand(16), M.rand(16)
  r.mode = C.LR_MODE_AEAD
  r.version = 1
  r.v = 0x5a
  r.option = option or 0x05
  r.security = 3
  r.padding_len = 0
  ffi.copy(r.body_key, key, 16)
  ffi.copy(r.body_iv, iv, 16)
  ffi.copy(r.auth_rand, M.rand(4), 4)
  ffi.copy(r.conn_nonce, M.rand(8), 8)
  r.command = 1
  r.port = port
  r.atyp = 1
  r.addr_len = 4
  ffi.copy(r.addr, "\127\0\0\1", 4)
  r.ts = ts
  r.id_index = -1
  local out = ffi.new("uint8_t[?]", C.LR_REQ_WIRE_MAX)
  local len = ffi.new("size_t[1]")
  local rc = C.lr_req_encode(r, id, out, C.LR_REQ_WIRE_MAX, len)
  assert(rc == 0, "lr_req_encode: " .. core.strerror(rc))
  return ffi.string(out, len[0]), key, iv
end

-- the header alone
function M.craft(uuid, ts, port) return (M.craft_session(uuid, ts, port)) end

return M
