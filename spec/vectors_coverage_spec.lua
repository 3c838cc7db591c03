-- Every vector file copied into spec/vectors must be exercised by a spec:
-- this fails when a file is added but no spec loads it (H.vectors "name").
local H = require "helper"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("spec/vectors", function()
  it("are each loaded by some spec", function()
    local sources = {}
    local p = io.popen("find spec -name '*_spec.lua' | sort")
    for path in p:lines() do sources[#sources + 1] = read(path) end
    p:close()
    local all = table.concat(sources, "\n")
    local files = 0
    local idx = H.vectors("index")
    for _, name in ipairs(idx.files) do
      files = files + 1
      local base = name:gsub("%.json$", "")
      local f = io.open("spec/vectors/" .. name, "rb")
      assert.is_not_nil(f, name .. " is listed in index.json but missing")
      f:close()
      assert.is_truthy(all:find('H.vectors("' .. base .. '")', 1, true)
        or all:find("H.vectors('" .. base .. "')", 1, true),
        name .. " is not loaded by any spec")
    end
    local on_disk = 0
    local d = io.popen("ls spec/vectors/*.json")
    for _ in d:lines() do on_disk = on_disk + 1 end
    d:close()
    assert.equal(on_disk, files + 1) -- index.json itself
  end)
end)
