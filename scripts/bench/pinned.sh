#!/usr/bin/env bash
# The relay against v2ray 4.34, the lean C relay sketch and ss-libev through
# ../shared/bench (the harness the design targets are judged with), under
# both pinnings in one run:
#   split: load + client proxy on CPU 0, server proxy + sink on CPU 1
#          (v2ray then runs with GOMAXPROCS=1), like two hosts;
#   none:  the scheduler places everything.
# Then the server's system calls per GiB (strace -c, strace_bulk.sh) for an
# upload and a download.  `make bench-pinned` (about 6 minutes).
#
#   scripts/bench/pinned.sh [--runs N] [--bytes 1GiB] [--pins split,none]
#
# Results: build/bench/pinned-<time>/{split,none}/summary.md and
# strace.txt; the summaries are printed at the end.  Each same-round ratio
# is against v2ray-socks (bulk) and ss-libev (connection rate).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
B=${JUDGED_BENCH_DIR:-$root/../shared/bench}
build=${LURAY_BUILD:-$root/build}
runs=3 bytes=1GiB pins=split,none
while [ $# -gt 0 ]; do
  case $1 in
  --runs) runs=$2; shift 2 ;;
  --bytes) bytes=$2; shift 2 ;;
  --pins) pins=$2; shift 2 ;;
  *) echo "usage: $0 [--runs N] [--bytes SIZE] [--pins split,none]" >&2; exit 2 ;;
  esac
done
[ -f "$B/bench.py" ] || { echo "bench-pinned: no $B/bench.py (the shared bench harness)" >&2; exit 2; }
[ -x "$build/luaray" ] || { echo "bench-pinned: no $build/luaray (make all)" >&2; exit 2; }
export LUARAY_BIN=$build/luaray
out=$build/bench/pinned-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
# the harness builds its C tools in place when they are missing
make -s -C "$B/tools" >/dev/null

IFS=, read -r -a pinlist <<<"$pins"
for pin in "${pinlist[@]}"; do
  echo "== pinning: $pin"
  mkdir -p "$out/$pin"
  python3 "$B/bench.py" v2ray-socks-aes-128-gcm luaray-socks-aes-128-gcm minirelay-aes-128-gcm \
      --tests up,down --runs "$runs" --bytes "$bytes" --pin "$pin" --port-base 27000 \
      --max-minutes 20 --out "$out/$pin/aes" >"$out/$pin/aes.log" 2>&1 || echo "(aes run failed: $out/$pin/aes.log)"
  python3 "$B/bench.py" v2ray-socks-chacha20-poly1305 luaray-socks-chacha20-poly1305 \
      minirelay-chacha20-poly1305 --tests up,down --runs "$runs" --bytes "$bytes" --pin "$pin" \
      --port-base 27100 --max-minutes 20 --out "$out/$pin/chacha" >"$out/$pin/chacha.log" 2>&1 ||
    echo "(chacha run failed: $out/$pin/chacha.log)"
  python3 "$B/bench.py" ss-socks-aes-128-gcm luaray-socks-aes-128-gcm v2ray-socks-aes-128-gcm \
      --tests conc --runs "$runs" --pin "$pin" --port-base 27200 --max-minutes 20 \
      --out "$out/$pin/conn" >"$out/$pin/conn.log" 2>&1 || echo "(conn run failed: $out/$pin/conn.log)"
done

echo "== system calls per GiB (strace -c, 256 MiB, aes-128-gcm)"
{
  for d in up down; do
    BENCH=$B PORT_BASE=27300 bash "$here/strace_bulk.sh" "$LUARAY_BIN" "$d" 268435456
  done
} >"$out/strace.txt" 2>&1 || true

for pin in "${pinlist[@]}"; do
  for t in aes chacha conn; do
    f=$out/$pin/$t/summary.md
    echo
    echo "### pinning $pin: $t"
    if [ -f "$f" ]; then sed -n '/^## /,$p' "$f"; else echo "(no summary: see $out/$pin/$t.log)"; fi
  done
done
echo
echo "### server system calls per GiB"
cat "$out/strace.txt"
echo
echo "results: $out"
