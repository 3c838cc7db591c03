-- A transparent proxy on a Linux router: what the LAN sends out is caught
-- by TPROXY (TCP and UDP, IPv4 and IPv6) and carried to a VMess server;
-- DNS sent to the router's port 5353 goes to 1.1.1.1 through the same
-- server.  The router's nftables table and ip rule / ip route lines are
-- in README "Inbounds for routers"; tproxy needs CAP_NET_ADMIN.
-- Run: luaray -c examples/router.lua
luaray.log { level = "warn", access = false }

luaray.inbound "tproxy4" { type = "tproxy", listen = "0.0.0.0:12345", network = "tcp,udp" }
luaray.inbound "tproxy6" { type = "tproxy", listen = "[::]:12345", network = "tcp,udp" }
luaray.inbound "dns" { type = "tunnel", listen = "0.0.0.0:5353", to = "1.1.1.1:53",
                       network = "tcp,udp", udp_timeout = 10,
                       max_connections = 4096 }  -- reachable from the LAN: bounded

luaray.outbound "proxy" {
  type = "vmess", server = "203.0.113.5:10086",
  id = "de305d54-75b4-431b-adb2-eb6b9e546014",
  security = "auto",
}
luaray.outbound "direct" { type = "direct" }

-- LAN and private destinations stay local (the nft table skips them too)
luaray.route { ip_cidr = { "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7" },
               to = "direct" }
luaray.route { default = "proxy" }
