-- Finds and loads the luaray core through the LuaJIT FFI.
-- Inside the daemon the API is already in the process (linked -Wl,-E), so
-- ffi.C is used; elsewhere (specs, tools) the shared library is loaded from
-- $LURAY_LIB, or $LURAY_BUILD/libluaray.so, or build/libluaray.so.
local ffi = require "ffi"
require "luaray.cdef"

local M = {}

local function load()
  local ok = pcall(function() return ffi.C.lr_version end)
  if ok and os.getenv("LURAY_FORCE_LIB") == nil then return ffi.C end
  local path = os.getenv("LURAY_LIB")
  if not path then
    path = (os.getenv("LURAY_BUILD") or "build") .. "/libluaray.so"
  end
  return ffi.load(path)
end

M.C = load()
assert(M.C.lr_init() == 0, "lr_init failed")

M.ffi = ffi

-- Status code to message.
function M.strerror(rc)
  return ffi.string(M.C.lr_strerror(rc))
end

return M
