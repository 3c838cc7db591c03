#!/usr/bin/env bash
# One TAP stream: the specs that run a daemon with several worker threads
# (spec/e2e/workers_spec.lua: VMess, policies, luaray.shared, reload;
# spec/e2e/http_workers_spec.lua: the HTTP proxy inbound's rewrite with
# concurrent clients; spec/e2e/live_users_spec.lua: users added and removed
# from hooks on two workers, counters written per worker;
# spec/e2e/geodata_spec.lua: routing lists shared by two workers, a name
# cache per worker; spec/e2e/tunnel_spec.lua: a tunnel's UDP socket per
# worker; spec/e2e/fleet_spec.lua: a node with two workers, each with its
# own Redis connection) against the
# ThreadSanitizer build in
# build/tsan.  Only the daemon binary is instrumented (the spec process does
# not load the library); a "WARNING: ThreadSanitizer" in a daemon's log
# fails the spec file (spec/e2e/support.lua).  Part of `make test`
# (scripts/test.sh) and the whole of `make tsan`.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "# TAP stream: worker-thread specs under ThreadSanitizer"
log=$(mktemp)
start=$SECONDS
if ! make --no-print-directory -s tsan-build >"$log" 2>&1; then
  sed 's/^/# /' "$log"
  echo "not ok 1 - the TSan build failed"
  echo "1..1"
  rm -f "$log"
  exit 0
fi
rm -f "$log"
LURAY_BUILD=build/tsan TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1} \
  bash scripts/busted -o TAP spec/e2e/workers_spec.lua spec/e2e/http_workers_spec.lua \
    spec/e2e/live_users_spec.lua spec/e2e/geodata_spec.lua spec/e2e/tunnel_spec.lua \
    spec/e2e/fleet_spec.lua 2>&1
echo "# specs under TSan: $((SECONDS - start)) s including the build"
