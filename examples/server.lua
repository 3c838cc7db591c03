-- A VMess server: clients connect to port 10086 and are relayed to the
-- destinations they ask for.  Run: luaray -c examples/server.lua
luaray.log { level = "info", access = true }

-- users: generate ids with `luaray uuid`; `luaray link -c examples/server.lua
-- -H your.host` prints a vmess:// link per user for v2rayN and friends
luaray.user { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "alice@example.com" }
luaray.user { id = "b831381d-6324-4d53-ad4f-8cda48b30811", email = "bob@example.com",
              alter_id = 4 }            -- bob's old client signs legacy headers

luaray.inbound "vmess-in" {
  type = "vmess", listen = "0.0.0.0:10086",
  allow_legacy = true,                   -- accept MD5/alterId headers too
  allow_private = false,                 -- no loopback/LAN destinations
  handshake_timeout = 60,                -- a bad header is held this long, silently
  idle_timeout = 300,
}

luaray.outbound "direct" { type = "direct" }
luaray.outbound "block" { type = "blackhole" }

luaray.route { domain_suffix = { "ads.example" }, to = "block" }
luaray.route { default = "direct" }
