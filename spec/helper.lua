-- Shared spec helpers: the core through the FFI, hex and buffer helpers,
-- and the vector loader.  Every spec file starts with
--   local H = require "helper"
local core = require "luaray.core"
local cjson = require "cjson"
local ffi = core.ffi

local H = { C = core.C, ffi = ffi, core = core }
local C = core.C

local root = os.getenv("LURAY_ROOT") or "."

function H.unhex(s)
  assert(#s % 2 == 0, "odd hex length")
  return (s:gsub("..", function(b) return string.char(tonumber(b, 16)) end))
end

-- hex of a Lua string, or of n bytes of a cdata pointer
function H.hex(p, n)
  if type(p) == "string" then
    return (p:gsub(".", function(c) return string.format("%02x", c:byte()) end))
  end
  return H.hex(ffi.string(p, n))
end

-- A fresh uint8_t array holding the bytes of string s (plus `extra` zeros).
function H.buf(s, extra)
  local n = #s + (extra or 0)
  local b = ffi.new("uint8_t[?]", n > 0 and n or 1)
  ffi.copy(b, s, #s)
  return b, #s
end

function H.uuid(s)
  local id = ffi.new("uint8_t[16]")
  local rc = C.lr_uuid_parse(s, #s, id)
  assert(rc == 0, "bad uuid " .. s)
  return id
end

function H.cmd_key(id)
  local k = ffi.new("uint8_t[16]")
  assert(C.lr_cmd_key(id, k) == 0)
  return k
end

function H.random(n)
  local b = ffi.new("uint8_t[?]", n)
  C.lr_random(b, n)
  return ffi.string(b, n)
end

function H.strerror(rc) return core.strerror(rc) end

-- Loads spec/vectors/<name>.json.  Every file in spec/vectors must be loaded
-- by some spec (vectors_coverage_spec checks the spec sources), and a file
-- whose cases are missing fails here.
function H.vectors(name)
  local f = assert(io.open(root .. "/spec/vectors/" .. name .. ".json", "rb"))
  local v = cjson.decode(f:read("*a"))
  f:close()
  return v
end

-- Calls fn(case, i) for every case and checks that all ran.
function H.each_case(v, fn)
  assert(type(v.cases) == "table" and #v.cases > 0, "vector file has no cases")
  local n = 0
  for i, c in ipairs(v.cases) do fn(c, i); n = n + 1 end
  assert(n == #v.cases)
end

-- Reproducible randomness for property specs: `it` reseeded per test from
-- a base seed (printed; LURAY_SPEC_SEED=<n> overrides), and random bytes
-- drawn from math.random.  Pass busted's `it` (spec files run in their own
-- environment).
function H.seeded(file, it)
  local R = {}
  R.SEED = tonumber(os.getenv("LURAY_SPEC_SEED") or "") or 20240611
  print(("# %s: math.randomseed base %d (LURAY_SPEC_SEED overrides)"):format(file, R.SEED))
  local ntests = 0
  function R.it(name, fn)
    ntests = ntests + 1
    local k = ntests
    it(("%s [seed %d+%d]"):format(name, R.SEED, k), function()
      math.randomseed(R.SEED + k)
      fn()
    end)
  end
  function R.fail(fmt, ...) error(string.format(fmt, ...), 2) end
  function R.rfill(b, n) for i = 0, n - 1 do b[i] = math.random(0, 255) end end
  function R.rstr(n)
    local b = ffi.new("uint8_t[?]", n > 0 and n or 1)
    R.rfill(b, n)
    return ffi.string(b, n)
  end
  function R.rkey() return (H.buf(R.rstr(16))) end
  function R.pick(t) return t[math.random(1, #t)] end
  return R
end

-- The status constants by name, e.g. H.S.LR_AGAIN.
H.S = setmetatable({}, { __index = function(_, k) return tonumber(C[k]) end })

return H
