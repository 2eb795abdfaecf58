#!/usr/bin/env bash
# Run the black-box integration tests against the gateway binary (NHGW_BIN, default
# <repo>/build/nhgw): install the pinned npm dependencies (skipped when node_modules matches
# package-lock.json), generate the test PKI (ops/devcerts.sh → build/test-certs), then run the
# *.test.mjs files with node's test runner. Extra arguments go to `node --test`; test files among
# them (e.g. tls.test.mjs) replace the default set. The exit code is node's.
set -euo pipefail

caller=$PWD
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"

stamp=node_modules/.nhgw-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

"$repo/ops/devcerts.sh" "${NHGW_TEST_CERTS:-$repo/build/test-certs}"

export NHGW_BIN=${NHGW_BIN:-$repo/build/nhgw}
if [ ! -x "$NHGW_BIN" ]; then
  echo "run.sh: gateway binary $NHGW_BIN is missing: build it first (make) or set NHGW_BIN" >&2
fi

# Test files given by the caller may be relative to the caller's directory or to this one.
args=()
files=()
for a in "$@"; do
  case $a in
    *.test.mjs)
      if [ -f "$caller/$a" ]; then files+=("$(cd "$(dirname "$caller/$a")" && pwd)/$(basename "$a")")
      else files+=("$a"); fi ;;
    *) args+=("$a") ;;
  esac
done
[ ${#files[@]} -eq 0 ] && files=(./*.test.mjs)

set +e
node --test --test-concurrency=2 --test-force-exit ${args[@]+"${args[@]}"} "${files[@]}"
exit $?
