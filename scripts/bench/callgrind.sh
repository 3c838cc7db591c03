#!/usr/bin/env bash
# The deterministic figure: instructions (valgrind --tool=callgrind, Ir)
# per relayed byte and per handshake, on a small fixed workload
# (scripts/bench/cg_driver.c, linked against build/libluaray.so), compared
# with scripts/bench/baseline.json.
#
#   scripts/bench/callgrind.sh            measure, print, compare
#   scripts/bench/callgrind.sh --update   ... and record the figures as the
#                                         new baseline
#
# Only cg_work_*() is counted (--toggle-collect): setup, key schedules of
# the user table and the input data are not. Figures:
#   relay/<security>     Ir per payload byte: one seal + one open of 16 KiB
#                        chunks (ChunkStream + masking + global padding; cfb:
#                        ChunkStream only), i.e. one VMess hop
#   server/1 user        Ir per AEAD handshake, server side: request header
#                        decode with replay checks, response header, bodies
#   server/10000 users   the same with the client signing as the LAST user
#   client               Ir per handshake, client side: request header,
#                        bodies, response header decode
# Counts depend on the CPU features valgrind reports (AES-NI, AVX2...) and on
# the OpenSSL build, so compare on the same kind of machine.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${LURAY_BUILD:-$root/build}
out=$build/bench/callgrind
driver=$build/bench/cg_driver
update=0
[ "${1:-}" = "--update" ] && update=1

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind missing (scripts/bench-deps.sh)" >&2; exit 2; }
[ -f "$build/libluaray.so" ] || { echo "callgrind.sh: $build/libluaray.so missing: run make" >&2; exit 2; }

mkdir -p "$out"
if [ ! -x "$driver" ] || [ "$driver" -ot "$here/cg_driver.c" ] || [ "$driver" -ot "$build/libluaray.so" ] ||
   [ "$driver" -ot "$root/core/include/luaray/api.h" ]; then
  ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -I"$root/core/include" \
    -o "$driver" "$here/cg_driver.c" -L"$build" -lluaray -Wl,-rpath,"$build" \
    -Wl,--allow-shlib-undefined  # the library calls back into the executable (lr_script_*)
fi

# name | units | toggle function | driver arguments
runs=(
  "relay/aes-128-gcm|byte|cg_work_relay|relay aes-128-gcm 8"
  "relay/chacha20-poly1305|byte|cg_work_relay|relay chacha20-poly1305 8"
  "relay/none|byte|cg_work_relay|relay none 8"
  "relay/aes-128-cfb|byte|cg_work_relay|relay aes-128-cfb 4"
  "server/1 user|handshake|cg_work_server|server 1 1000"
  "server/10000 users|handshake|cg_work_server|server 10000 20"
  "client|handshake|cg_work_client|client 1000"
)

results=$out/figures.tsv
: >"$results"
for r in "${runs[@]}"; do
  IFS='|' read -r name unit fn args <<<"$r"
  tag=${name//[^A-Za-z0-9._-]/_}
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --toggle-collect="$fn" --callgrind-out-file="$out/$tag.out" \
    --log-file="$out/$tag.log" "$driver" $args >"$out/$tag.stdout"
  ir=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$out/$tag.log")
  units=$(awk '{print $2}' "$out/$tag.stdout")
  if [ -z "$ir" ] || [ -z "$units" ]; then
    echo "callgrind.sh: no count for $name (see $out/$tag.log)" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$unit" "$ir" "$units" >>"$results"
done

python3 - "$results" "$here/baseline.json" "$update" "$root" <<'EOF'
import datetime, json, os, subprocess, sys
results, basefile, update, root = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
figs = {}
for line in open(results):
    name, unit, ir, units = line.rstrip("\n").split("\t")
    figs[name] = {"unit": unit, "per_unit": int(ir) / int(units), "ir": int(ir), "units": int(units)}
try:
    base = json.load(open(basefile))
except (OSError, ValueError):
    base = None
bf = (base or {}).get("figures", {})
print("%-24s %-10s %14s %14s %9s" % ("figure", "Ir per", "now", "baseline", "change"))
for name, f in figs.items():
    b = bf.get(name, {}).get("per_unit")
    fmt = "%14.3f" if f["unit"] == "byte" else "%14.0f"
    now = fmt % f["per_unit"]
    if b:
        print("%-24s %-10s %s %s %+8.2f%%" % (name, f["unit"], now, fmt % b, (f["per_unit"] / b - 1) * 100))
    else:
        print("%-24s %-10s %s %14s %9s" % (name, f["unit"], now, "-", "-"))
if base:
    print("baseline: %s" % base.get("recorded", "?"))
if update:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, cwd=root, timeout=10).stdout.decode().strip()
        except OSError:
            return ""
    commit = out(["git", "rev-parse", "--short", "HEAD"])
    if out(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--", "core", "lua"]):
        commit += "+dirty"
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    rec = {"recorded": "%s, commit %s, %s, %s" % (datetime.date.today().isoformat(), commit, model,
                                                   out(["valgrind", "--version"])),
           "figures": {k: {"unit": v["unit"], "per_unit": round(v["per_unit"], 4)} for k, v in figs.items()}}
    with open(basefile, "w") as f:
        json.dump(rec, f, indent=2)
        f.write("\n")
    print("baseline updated: %s" % os.path.relpath(basefile, root))
EOF
