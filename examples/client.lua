-- A VMess client: local SOCKS5 and HTTP proxies carried to a VMess server.
-- Run: luaray -c examples/client.lua, then
--   curl -x socks5h://127.0.0.1:1080 https://example.com/
luaray.log { level = "warn", access = false }

luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:1080", udp = true }
luaray.inbound "http-in"  { type = "http",  listen = "127.0.0.1:8080" }

luaray.outbound "proxy" {
  type = "vmess", server = "203.0.113.5:10086",
  id = "de305d54-75b4-431b-adb2-eb6b9e546014",
  alter_id = 0,                          -- 0: AEAD header (what v2ray sends)
  security = "auto",                     -- AES-GCM with AES-NI, else ChaCha20
  masking = true, padding = true,
}
luaray.outbound "direct" { type = "direct" }

-- keep local and LAN traffic off the tunnel
luaray.route { ip_cidr = { "127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16" }, to = "direct" }
luaray.route { default = "proxy" }
