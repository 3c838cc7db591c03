#!/usr/bin/env bash
# Every test, as TAP, summarised for CI by scripts/ci-summary:
#  1. the busted specs (spec/: codec, config DSL, daemon e2e with v2ray, JIT);
#  2. the fuzz corpora and saved findings (spec/fuzz) replayed through
#     engine-less ASan+UBSan builds of every fuzz target.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
status=0
{
  bash scripts/busted -o TAP spec 2>&1 || true
  echo "# TAP stream: fuzz corpus replay"
  FUZZ_REPLAY_CRASHES=1 make --no-print-directory -s fuzz-replay 2>&1 | awk '
    { print "# " $0 }
    /^fuzz_[a-z0-9_]+ +[0-9]+ inputs/ {
      n++
      if ($0 ~ /no finding/) printf "ok %d - fuzz replay %s\n", n, $1
      else printf "not ok %d - fuzz replay %s\n", n, $1
    }
    END { if (n > 0) printf "1..%d\n", n }'
} | bash scripts/ci-summary || status=$?
exit $status
