-- lr_conf_user (core/daemon/conf.c): the C side's own checks of declared
-- users (the DSL checks first; the FFI API must hold on its own): an email
-- or ID declared twice is refused, found through a hash at any size.
local H = require "helper"
local ffi, C = H.ffi, H.C

describe("lr_conf_user", function()
  local conf
  before_each(function() conf = C.lr_conf_new() end)
  after_each(function() C.lr_conf_free(conf) end)
  local function err() return ffi.string(C.lr_conf_error(conf)) end
  local function uuid(i) return ("%08x-0000-4000-8000-%012x"):format(i, i) end

  it("takes 20,000 distinct users and refuses a repeated email or id at any position", function()
    for i = 1, 20000 do
      assert.equal(0, C.lr_conf_user(conf, uuid(i), "u" .. i .. "@x", 0, 0), err())
    end
    for _, i in ipairs({ 1, 2, 257, 9999, 20000 }) do
      assert.are_not.equal(0, C.lr_conf_user(conf, uuid(i), "new" .. i .. "@x", 0, 0))
      assert.equal("duplicate user id", err())
      assert.are_not.equal(0, C.lr_conf_user(conf, uuid(100000 + i), "u" .. i .. "@x", 0, 0))
      assert.equal(("duplicate user email 'u%d@x'"):format(i), err())
    end
    -- still taking new ones
    assert.equal(0, C.lr_conf_user(conf, uuid(30000), "last@x", 0, 0), err())
  end)
end)
