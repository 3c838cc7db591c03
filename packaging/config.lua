-- /etc/luaray/config.lua, written by `make install` when there was none
-- (it never overwrites one): a VMess server on port 10086 for one user
-- whose UUID was generated at install.  The keys: luaray(1) and
-- /usr/local/share/doc/luaray/README.md; more examples in
-- /usr/local/share/luaray/examples/.
--
--   luaray --check -c /etc/luaray/config.lua   check an edit
--   systemctl reload luaray          apply it (SIGHUP: no connection drops)
--   luaray link -c /etc/luaray/config.lua -H your.host   the vmess:// links

-- the log and the access log go to stderr: the journal (journalctl -u luaray)
luaray.log { level = "info", access = true }

-- more users: `luaray uuid` prints a fresh id
luaray.user { id = "@UUID@", email = "user@luaray" }

luaray.inbound "vmess-in" {
  type = "vmess", listen = "0.0.0.0:10086",
  allow_private = false,                 -- no loopback/LAN destinations
}

luaray.outbound "direct" { type = "direct" }
luaray.route { default = "direct" }
