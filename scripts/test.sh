#!/usr/bin/env bash
# Every test: the busted specs (spec/), as TAP, summarised for CI.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
status=0
{ bash scripts/busted -o TAP spec 2>&1 || true; } | bash scripts/ci-summary || status=$?
exit $status
