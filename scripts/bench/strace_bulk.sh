#!/usr/bin/env bash
# System calls per GiB of one bulk transfer through the bench chain
# (connbench -> luaray client (socks) -> luaray server -> sink), each
# daemon under `strace -f -c`: the counts of sendto/recvfrom/getrandom...
#
#   scripts/bench/strace_bulk.sh BINARY [up|down] [BYTES] [SECURITY]
#
# Needs /work/shared/bench (its tools and configs/luaray_config.py).
# Loopback only; every process started here is stopped by its PID.
set -euo pipefail
bin=$(readlink -f "$1") dir_=${2:-up} bytes=${3:-1073741824} sec=${4:-aes-128-gcm}
B=${BENCH:-/work/shared/bench}
d=$(mktemp -d /tmp/luaray-strace-XXXXXX)
base=${PORT_BASE:-24100}
sp=$((base + 1)) cp=$((base + 2)) tp=$((base + 3))
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
python3 "$B/configs/luaray_config.py" --security "$sec" --server-port $sp --client-port $cp \
    --target 127.0.0.1:$tp --out "$d" --luaray "$bin" >/dev/null
"$B/tools/sink" -p $tp -T 600 >/dev/null 2>&1 & pids+=($!)
strace -f -c -o "$d/server.strace" -e trace=network,getrandom "$bin" -c "$d/server.lua" >/dev/null 2>&1 & pids+=($!)
strace -f -c -o "$d/client.strace" -e trace=network,getrandom "$bin" -c "$d/client.lua" >/dev/null 2>&1 & pids+=($!)
sleep 1.5
flag=-B; [ "$dir_" = down ] && flag=-D
"$B/tools/connbench" -p $cp -s 127.0.0.1:$tp $flag "$bytes" -T 300 | tail -1
# SIGTERM the traced daemons themselves (a signal to strace only detaches
# it, and its summary would come at the cleanup, after it is read here);
# strace writes its summary when its tracee exits
for s in "${pids[1]}" "${pids[2]}"; do
    kill -TERM $(pgrep -P "$s") 2>/dev/null || true
done
for i in $(seq 600); do
    if ! kill -0 "${pids[1]}" 2>/dev/null && ! kill -0 "${pids[2]}" 2>/dev/null; then break; fi
    sleep 0.1
done
gib=$(python3 -c "print($bytes/2**30)")
for s in server client; do
    echo "== $s ($dir_, $sec): calls per GiB"
    awk -v g="$gib" '$NF ~ /^(sendto|recvfrom|getrandom|writev|sendmsg|recvmsg|readv|write|read)$/ {
        n = ($4 ~ /^[0-9]+$/) ? $4 : $3; printf "  %-10s %10.0f\n", $NF, n / g }' "$d/$s.strace"
done
[ -n "${KEEP:-}" ] && echo "kept $d" || rm -rf "$d"
