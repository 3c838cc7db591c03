#!/usr/bin/env bash
# What a change to the connection path costs, in instructions (callgrind Ir,
# deterministic, unlike wall time on a shared 2-core machine): the VMess
# server of a luaray client -> luaray server -> echo chain runs under
# callgrind for 0 and N connections (each echoing SIZE bytes) and for 2
# connections of BULK bytes; per connection and per byte come from the
# differences, for each binary given.
#
#   scripts/bench/counting_cost.sh OLD_BINARY NEW_BINARY [N SIZE BULK]
#
# Loopback only; every process started here is stopped by its PID.
set -euo pipefail
old=$1 new=$2 n=${3:-300} size=${4:-4096} bulk=${5:-8388608}
command -v valgrind >/dev/null || { echo "valgrind missing (scripts/bench-deps.sh)" >&2; exit 2; }
dir=$(mktemp -d /tmp/luaray-cg-XXXXXX)
trap 'rm -rf "$dir"' EXIT
base=23000
cat > "$dir/echo.py" <<'PY'
import socket, threading, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(512)
def h(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()
PY
cat > "$dir/load.py" <<'PY'
import socket, struct, sys
socks, dport, n, size = (int(x) for x in sys.argv[1:5])
payload = bytes(range(256)) * (size // 256)
for i in range(n):
    c = socket.create_connection(("127.0.0.1", socks), timeout=60)
    c.sendall(b"\x05\x01\x00"); assert c.recv(2) == b"\x05\x00"
    c.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", dport))
    r = b""
    while len(r) < 10: r += c.recv(10 - len(r))
    c.sendall(payload); got = 0
    while got < len(payload):
        d = c.recv(65536)
        if not d: raise SystemExit("short echo")
        got += len(d)
    c.close()
PY
cat > "$dir/server.lua" <<LUA
luaray.log { level = "warn", access = false }
luaray.user { id = "de305d54-75b4-431b-adb2-eb6b9e546014", email = "a@x" }
luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:$((base + 86))", allow_private = true }
luaray.outbound "direct" { type = "direct" }
LUA
cat > "$dir/client.lua" <<LUA
luaray.log { level = "warn", access = false }
luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:$((base + 80))" }
luaray.outbound "up" { type = "vmess", server = "127.0.0.1:$((base + 86))",
                       id = "de305d54-75b4-431b-adb2-eb6b9e546014", security = "aes-128-gcm" }
LUA

# one measurement: binary, connections, bytes each -> the server's Ir
measure() {
  local bin=$1 conns=$2 bytes=$3 e s c ir
  python3 "$dir/echo.py" $((base + 200)) & e=$!
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" -c "$dir/server.lua" \
    >"$dir/srv.log" 2>&1 & s=$!
  "$bin" -c "$dir/client.lua" >"$dir/cli.log" 2>&1 & c=$!
  for _ in $(seq 150); do
    python3 -c "import socket;socket.create_connection(('127.0.0.1',$((base + 86)))).close()" \
      2>/dev/null && break
    sleep 0.2
  done
  sleep 1
  python3 "$dir/load.py" $((base + 80)) $((base + 200)) "$conns" "$bytes"
  sleep 2
  kill "$c" "$s"; wait "$s" 2>/dev/null || true; kill "$e"; wait "$c" "$e" 2>/dev/null || true
  ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/srv.log")
  echo "${ir:-0}"
}

printf '%14s %14s %16s   %s\n' "start Ir" "Ir/connection" "Ir/payload byte" binary
for bin in "$old" "$new"; do
  z=$(measure "$bin" 0 "$size")
  k=$(measure "$bin" "$n" "$size")
  b=$(measure "$bin" 2 "$bulk")
  awk -v z="$z" -v k="$k" -v b="$b" -v n="$n" -v bulk="$bulk" -v bin="$bin" 'BEGIN {
    printf "%14d %14.0f %16.3f   %s\n", z, (k - z) / n, (b - z) / (4 * bulk), bin }'
done
echo "(payload bytes: each connection sends and gets back its bytes; per byte counts both ways)"
