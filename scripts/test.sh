#!/usr/bin/env bash
# Every test, as TAP, summarised for CI by scripts/ci-summary:
#  1. the busted specs (spec/: codec, config DSL, daemon e2e with v2ray, JIT),
#     then the include layering of core/ (scripts/check-layering, one test;
#     known violations are listed in scripts/layering-allow);
#  2. the fuzz corpora and saved findings (spec/fuzz) replayed through
#     engine-less ASan+UBSan builds of every fuzz target;
#  3. every libFuzzer target run for a short budget (`make fuzz`,
#     FUZZ_CI_TIME seconds each, default 10; 0 skips the stream), one test
#     per target with its executions and findings; any finding (crash,
#     leak, timeout, OOM, broken invariant) or a saved crash that fails
#     again makes that target `not ok`, and its input is printed (base64)
#     since CI keeps no files;
#  4. every spec again against the AddressSanitizer + UBSan build, with
#     LeakSanitizer in each daemon (scripts/asan-specs.sh); then the
#     worker-thread specs against the ThreadSanitizer build
#     (scripts/tsan-specs.sh).  LURAY_TEST_ASAN=0 skips both streams.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
status=0
fuzz_time=${FUZZ_CI_TIME:-10}

fuzz_stream() {
  echo "# TAP stream: fuzzing (make fuzz, ${fuzz_time} s per target)"
  if [ "$fuzz_time" = 0 ]; then
    echo "1..0 # SKIP FUZZ_CI_TIME=0"
    return
  fi
  local out start
  out=$(mktemp)
  start=$SECONDS
  FUZZ_TIME=$fuzz_time make --no-print-directory -s fuzz >"$out" 2>&1
  echo "# make fuzz: exit $?, $((SECONDS - start)) s including the build"
  # the table of scripts/fuzz.sh: target executions exec/s cov corpus time
  # findings known status...
  awk '
    { print "# " $0 }
    /^fuzz_[a-z0-9_]+ +[0-9?]+ +[0-9?]+ +[0-9?]+ +[0-9?]+ +[0-9?]+s +[0-9]+ +[0-9?]+\/[0-9?]+ / {
      n++
      st = $9
      for (i = 10; i <= NF; i++) st = st " " $i
      msg = sprintf("fuzz %s: %s executions (%s exec/s, %s), %s findings, saved crashes failing %s",
                    $1, $2, $3, $6, $7, $8)
      if (st == "ok") printf "ok %d - %s\n", n, msg
      else printf "not ok %d - %s: %s\n", n, msg, st
    }
    END {
      if (n == 0) { print "not ok 1 - fuzz: no target ran (build failed? see above)"; n = 1 }
      printf "1..%d\n", n
    }' "$out"
  # what CI cannot keep: each finding's first report lines and input
  local dir=${FUZZ_DIR:-build/fuzz} f t
  for f in "$dir"/artifacts/*/crash-* "$dir"/artifacts/*/leak-* \
           "$dir"/artifacts/*/timeout-* "$dir"/artifacts/*/oom-*; do
    [ -f "$f" ] || continue
    t=$(basename "$(dirname "$f")")
    echo "# finding $t/$(basename "$f") ($(wc -c <"$f") bytes), reproduce:"
    echo "#   build/fuzz/bin/$t <file>   (the input, base64, first 8 KiB:)"
    head -c 8192 "$f" | base64 -w 76 | sed 's/^/#   /'
    grep -m1 -A14 -E 'fuzz invariant failed|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' \
      "$dir/logs/$t.log" 2>/dev/null | sed 's/^/#   /'
  done
  rm -f "$out"
}

{
  bash scripts/busted -o TAP spec 2>&1 || true
  echo "# TAP stream: layering (scripts/check-layering)"
  luajit scripts/check-layering --tap 2>&1
  echo "# TAP stream: fuzz corpus replay"
  FUZZ_REPLAY_CRASHES=1 make --no-print-directory -s fuzz-replay 2>&1 | awk '
    { print "# " $0 }
    /^fuzz_[a-z0-9_]+ +[0-9]+ inputs/ {
      n++
      if ($0 ~ /no finding/) printf "ok %d - fuzz replay %s\n", n, $1
      else printf "not ok %d - fuzz replay %s\n", n, $1
    }
    /^fuzz_[a-z0-9_]+ +FAIL$/ { n++; printf "not ok %d - fuzz replay %s\n", n, $1 }
    END {
      if (n == 0) { print "not ok 1 - fuzz replay: nothing ran (build failed? see above)"; n = 1 }
      printf "1..%d\n", n
    }'
  fuzz_stream
  if [ "${LURAY_TEST_ASAN:-1}" != 0 ]; then
    bash scripts/asan-specs.sh
    bash scripts/tsan-specs.sh
  fi
} | bash scripts/ci-summary || status=$?
exit $status
