#!/usr/bin/env bash
# Runs the libFuzzer targets built by `make fuzz-build` (spec/fuzz/README.md).
#
#   scripts/fuzz.sh ci     [targets]  each target for FUZZ_TIME seconds (20)
#   scripts/fuzz.sh long   [targets]  each target for FUZZ_LONG_RUNS executions
#                                     (2000000; FUZZ_LONG_TIME caps seconds, 0 none)
#   scripts/fuzz.sh replay [targets]  the seed corpora through the engine-less
#                                     builds (FUZZ_REPLAY_WORK=1 adds the corpora
#                                     the fuzzer grew, FUZZ_REPLAY_CRASHES=1 adds
#                                     spec/fuzz/crashes/<target>)
#
# FUZZ_JOBS targets run at once (default: the number of CPUs).  Each run reads
# spec/fuzz/corpus/<target> and writes what it finds to $FUZZ_DIR/work/<target>,
# crashes/leaks/timeouts to $FUZZ_DIR/artifacts/<target>/ and its output to
# $FUZZ_DIR/logs/<target>.log.  Then each saved input of spec/fuzz/crashes/<target>
# is run again ("known": how many still fail, of how many).  Prints one line
# per target; exits 1 on any finding or any saved crash that still fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-ci}
shift || true
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
FUZZ_TIME=${FUZZ_TIME:-20}
FUZZ_LONG_RUNS=${FUZZ_LONG_RUNS:-2000000}
FUZZ_LONG_TIME=${FUZZ_LONG_TIME:-0}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fuzz_req_aead_1user fuzz_req_legacy_1user fuzz_req_1000users
             fuzz_resp fuzz_body fuzz_socks_addr fuzz_socks fuzz_http
             fuzz_sniff fuzz_vmess_link fuzz_mux fuzz_ws_frames fuzz_http_upgrade)
fi

# largest input per target: a request header is <= 374 bytes plus the
# structured fields; HTTP heads go up to the 16 KiB limit and a little past;
# a mux stream holds a few 16 KiB frames
max_len() {
    case $1 in
    fuzz_req_*) echo 1024 ;;
    fuzz_resp) echo 4096 ;;
    fuzz_body) echo 8192 ;;
    fuzz_socks_addr) echo 300 ;;
    fuzz_socks) echo 1024 ;;
    fuzz_vmess_link) echo 2048 ;;
    fuzz_convert) echo 8192 ;;
    fuzz_sniff) echo 9000 ;;
    fuzz_proxyproto) echo 700 ;;
    fuzz_metrics_http) echo 9000 ;;
    fuzz_http) echo 20000 ;;
    fuzz_mux) echo 32768 ;;
    fuzz_mux_client) echo 32768 ;;
    fuzz_xudp_client) echo 32768 ;;
    fuzz_ws_frames) echo 70000 ;;
    fuzz_http_upgrade) echo 20000 ;;
    fuzz_gun) echo 8192 ;;
    fuzz_h2s) echo 16384 ;;
    fuzz_gunc) echo 16384 ;;
    fuzz_h2c) echo 16384 ;;
    fuzz_v2api) echo 32768 ;;
    *) echo 4096 ;;
    esac
}

run_one() {
    local t=$1 bin=$FUZZ_DIR/bin/$1
    local work=$FUZZ_DIR/work/$t art=$FUZZ_DIR/artifacts/$t log=$FUZZ_DIR/logs/$t.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    rm -f "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* "$art"/slow-unit-* \
        "$log.rc" "$log.known" "$log.crashes"
    local budget=()
    if [ "$mode" = long ]; then
        budget=(-runs="$FUZZ_LONG_RUNS")
        [ "$FUZZ_LONG_TIME" != 0 ] && budget+=(-max_total_time="$FUZZ_LONG_TIME")
    else
        budget=(-max_total_time="$FUZZ_TIME")
    fi
    local dict=()
    [ -f "spec/fuzz/dict/$t.dict" ] && dict=(-dict="spec/fuzz/dict/$t.dict")
    local seeds=()
    [ -d "spec/fuzz/corpus/$t" ] && seeds=("spec/fuzz/corpus/$t")
    local start=$SECONDS
    "$bin" "${budget[@]}" "${dict[@]}" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
        "$work" "${seeds[@]}" >"$log" 2>&1
    local rc=$?
    echo "$rc $((SECONDS - start))" >"$log.rc"
    # the saved inputs of bugs found before: how many still fail
    local f k=0 n=0
    for f in spec/fuzz/crashes/"$t"/*; do
        [ -f "$f" ] || continue
        n=$((n + 1))
        "$bin" -artifact_prefix="$FUZZ_DIR/logs/$t-known-" "$f" >>"$log.crashes" 2>&1 ||
            k=$((k + 1))
    done
    echo "$k/$n" >"$log.known"
}

summary() {
    local t=$1 log=$FUZZ_DIR/logs/$1.log art=$FUZZ_DIR/artifacts/$1
    local rc secs execs speed cov corp findings status
    rc='?' secs='?'
    [ -f "$log.rc" ] && read -r rc secs <"$log.rc"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    findings=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
               -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    local known='?'
    [ -f "$log.known" ] && known=$(cat "$log.known")
    status=ok
    if [ "$findings" -gt 0 ] || [ "$rc" != 0 ]; then
        status="FAIL (exit $rc, see $log)"
        [ "$findings" -gt 0 ] || findings=1
    fi
    if [ "${known%%/*}" != 0 ]; then
        status="${status/#ok/FAIL} (saved crashes still fail: spec/fuzz/crashes/$t)"
    fi
    printf '%-24s %10s %8s %6s %7s %5ss %9s %6s  %s\n' "$t" "${execs:-?}" "${speed:-?}" \
        "${cov:-?}" "${corp:-?}" "$secs" "$findings" "$known" "$status"
    [ "$status" = ok ]
}

case $mode in
ci|long)
    for t in "${targets[@]}"; do
        if [ ! -x "$FUZZ_DIR/bin/$t" ]; then
            echo "fuzz.sh: $FUZZ_DIR/bin/$t missing (make fuzz-build)" >&2
            exit 2
        fi
    done
    running=0
    for t in "${targets[@]}"; do
        if [ "$running" -ge "$FUZZ_JOBS" ]; then
            wait -n
            running=$((running - 1))
        fi
        run_one "$t" &
        running=$((running + 1))
    done
    wait
    printf '%-24s %10s %8s %6s %7s %6s %9s %6s  %s\n' target executions exec/s cov corpus \
        time findings known status
    fail=0 total=0
    for t in "${targets[@]}"; do
        summary "$t" || fail=$((fail + 1))
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$FUZZ_DIR/logs/$t.log" | tail -1)
        total=$((total + ${n:-0}))
    done
    echo "${#targets[@]} targets, $total executions, $fail with findings"
    [ "$fail" -eq 0 ]
    ;;
replay)
    fail=0
    for t in "${targets[@]}"; do
        bin=$FUZZ_DIR/replay/$t
        if [ ! -x "$bin" ]; then
            echo "fuzz.sh: $bin missing (make fuzz-replay-build)" >&2
            exit 2
        fi
        dirs=()
        [ -d "spec/fuzz/corpus/$t" ] && dirs+=("spec/fuzz/corpus/$t")
        [ "${FUZZ_REPLAY_WORK:-0}" = 1 ] && [ -d "$FUZZ_DIR/work/$t" ] && dirs+=("$FUZZ_DIR/work/$t")
        [ "${FUZZ_REPLAY_CRASHES:-0}" = 1 ] && [ -d "spec/fuzz/crashes/$t" ] && dirs+=("spec/fuzz/crashes/$t")
        start=$(date +%s.%N)
        if out=$("$bin" "${dirs[@]}" 2>&1); then
            printf '%-24s %s (%.2fs)\n' "$t" "${out##*: }" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
        else
            printf '%-24s FAIL\n%s\n' "$t" "$out"
            fail=$((fail + 1))
        fi
    done
    echo "${#targets[@]} targets replayed, $fail failed"
    [ "$fail" -eq 0 ]
    ;;
*)
    echo "usage: scripts/fuzz.sh ci|long|replay [targets...]" >&2
    exit 2
    ;;
esac
