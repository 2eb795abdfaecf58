#!/usr/bin/env bash
# The body of `make test`: unit tests (optimised and ASan+UBSan), fuzz corpus replay, and the
# integration suite against the optimised gateway and against the ASan+UBSan gateway. Every
# stage runs even if an earlier one failed; the last line is the total "N passed, N failed".
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
B=${BUILD:-build}
passed=0
failed=0
failures=()

# Adds the counts from a stage's own summary line to the totals.
count_unit() { # log
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
    passed=$((passed + $(echo "$line" | awk '{print $1}')))
    failed=$((failed + $(echo "$line" | awk '{print $3}')))
}
count_node() { # log
    local p f
    p=$(grep -E '^# pass [0-9]+' "$1" | tail -1 | awk '{print $3}')
    f=$(grep -E '^# fail [0-9]+' "$1" | tail -1 | awk '{print $3}')
    if [ -z "$p" ]; then failed=$((failed + 1)); return; fi
    passed=$((passed + p))
    failed=$((failed + ${f:-0}))
}
stage() { # name
    echo
    echo "=== $1"
}

mkdir -p "$B/test-logs"
rm -rf "$B/test-logs/"*

stage "unit tests (optimised)"
"$B/unit" 2>&1 | tee "$B/test-logs/unit.log" | grep -vE '^ok ' || true
count_unit "$B/test-logs/unit.log"
[ "${PIPESTATUS[0]}" = 0 ] || failures+=("unit")

stage "unit tests (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$B/unit-asan" 2>&1 | tee "$B/test-logs/unit-asan.log" | grep -vE '^ok ' || true
count_unit "$B/test-logs/unit-asan.log"

# Component tests: natsc against real nats-servers, the registry against real redis-servers.
for comp in natsc registry; do
    stage "$comp tests (optimised)"
    "$B/$comp-test" 2>&1 | tee "$B/test-logs/$comp.log" | grep -vE '^ok ' || true
    count_unit "$B/test-logs/$comp.log"
    stage "$comp tests (ASan+UBSan)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$B/$comp-test-asan" 2>&1 | tee "$B/test-logs/$comp-asan.log" | grep -vE '^ok ' || true
    count_unit "$B/test-logs/$comp-asan.log"
done

stage "deployment: Helm chart, alert rules, Grafana dashboard, Dockerfile"
tests/helm/run.sh 2>&1 | tee "$B/test-logs/helm.log" | grep -vE '^ok ' || true
count_unit "$B/test-logs/helm.log"

stage "fuzz corpus replay (libFuzzer, ASan+UBSan)"
for f in "$B"/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=${f##*/fuzz_}
    n=$(find "tests/fuzz/corpus/$name" -type f | wc -l)
    if "$f" -runs=0 "tests/fuzz/corpus/$name" > "$B/test-logs/fuzz-$name.log" 2>&1; then
        echo "ok   fuzz replay $name ($n inputs)"
        passed=$((passed + 1))
    else
        echo "FAIL fuzz replay $name"
        tail -30 "$B/test-logs/fuzz-$name.log"
        failed=$((failed + 1))
        failures+=("fuzz-$name")
    fi
done

stage "integration tests (optimised gateway)"
NHGW_BIN="$repo/$B/nhgw" tests/integration/run.sh > "$B/test-logs/integration.log" 2>&1
rc=$?
grep -E '^# (tests|pass|fail)|^not ok|^ +not ok' "$B/test-logs/integration.log"
count_node "$B/test-logs/integration.log"
[ $rc = 0 ] || failures+=("integration")

stage "integration tests (ASan+UBSan gateway)"
asan_logs="$repo/$B/test-logs/asan"
mkdir -p "$asan_logs"
# Leak checking is off for the daemon: workers exit with their connections' memory still held
# on purpose. Memory errors and undefined behaviour abort the worker and are reported here.
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$asan_logs/asan" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$asan_logs/ubsan" \
NHGW_BIN="$repo/$B/nhgw-asan" tests/integration/run.sh > "$B/test-logs/integration-asan.log" 2>&1
rc=$?
grep -E '^# (tests|pass|fail)|^not ok|^ +not ok' "$B/test-logs/integration-asan.log"
count_node "$B/test-logs/integration-asan.log"
[ $rc = 0 ] || failures+=("integration-asan")
if ls "$asan_logs"/* >/dev/null 2>&1; then
    echo "sanitizer reports from the gateway:"
    cat "$asan_logs"/* | head -80
    failed=$((failed + 1))
    failures+=("sanitizer-reports")
fi

echo
[ ${#failures[@]} -eq 0 ] || echo "failed stages: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
