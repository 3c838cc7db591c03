-- What a luaray server behind a front (nginx, Caddy in nginx_tls_spec and
-- caddy_spec) saw of its clients: its access lines, and the lines of the
-- close hook those specs install (print("close", inbound, user, src ip,
-- src port, peer ip, peer port, transport), read from srv.out).
--   local W = require("e2e.front_watch").new(srv, "user1@e2e")
--   W:access_count(), W:new_access(a0, n), W:closes(), W:new_closes(c0, n)
local E = require "e2e.support"

local M = {}
M.LOG_WAIT = 20     -- seconds for an access line (written when a connection ends)

-- The access lines (one per connection: "... src inbound user tcp dst ...
-- up=N down=N dur=...") of the VMess inbound "vmess-in".
function M.access_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(" up=%d+ down=%d+ dur=") and line:find(" vmess%-in ") then out[#out + 1] = line end
  end
  return out
end

local W = {}
W.__index = W

function M.new(srv, user)
  return setmetatable({ srv = srv, user = user,
                        mark = " vmess%-in " .. user:gsub("%p", "%%%0") .. " " }, W)
end

function W:access_count() return #M.access_lines(E.read_file(self.srv.log)) end

-- Waits until, after the first a0 access lines, n of them are the user's
-- connections -> all the new lines (with those of connections that never
-- sent a VMess request, such as a harness's port probe), the user's lines.
function W:new_access(a0, n)
  local deadline = E.now() + M.LOG_WAIT
  local all, mine
  for _ = 1, 100000 do
    local a = M.access_lines(E.read_file(self.srv.log))
    all, mine = {}, {}
    for i = a0 + 1, #a do
      all[#all + 1] = a[i]
      if a[i]:find(self.mark) then mine[#mine + 1] = a[i] end
    end
    if #mine >= n or E.now() >= deadline then break end
    E.sleep(0.05)
  end
  return all, mine
end

-- The close hook's lines for the user's connections: {src ip, src port,
-- peer ip, peer port, transport}.
function W:closes()
  local out = {}
  for _, f in ipairs(E.observations(E.read_file(self.srv.out), "close")) do
    if f[2] == "vmess-in" and f[3] == self.user then out[#out + 1] = { unpack(f, 4, 8) } end
  end
  return out
end

-- Waits until there are at least c0 + n close lines -> the new ones, each
-- as one string "src port peer port transport".
function W:new_closes(c0, n)
  local deadline = E.now() + M.LOG_WAIT
  local c
  for _ = 1, 100000 do
    c = self:closes()
    if #c >= c0 + n or E.now() >= deadline then break end
    E.sleep(0.05)
  end
  local out = {}
  for i = c0 + 1, #c do out[#out + 1] = table.concat(c[i], " ") end
  return out
end

return M
