#!/usr/bin/env bash
# Checks of the deployment artefacts, without Helm, Docker or a cluster:
#   - helm/nhgw rendered by tests/helm/helmcheck (Go text/template + sprig + sigs.k8s.io/yaml, the
#     subset of Helm the chart uses) for default values and the sets in tests/helm/values, and the
#     manifests checked (kinds, ports/probes vs nhgw.conf, drain vs grace period, selectors,
#     security context, Secrets, sizing; `build/nhgw -t` on the rendered config);
#   - ops/prometheus/nhgw-alerts.yaml: `promtool check rules` and `promtool test rules`;
#   - ops/grafana/nhgw-dashboard.json: JSON, metric names, and its PromQL through promtool;
#   - ops/Dockerfile, statically (tests/helm/check-dockerfile.sh).
# Needs golang-go, golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev and prometheus
# (ops/install-packages.sh). The last line is "N passed, N failed" (", N skipped" when some were).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
B=${BUILD:-build}
out="$repo/$B/helm-test"
mkdir -p "$out"
passed=0
failed=0
skipped=0

count() { # log
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
    passed=$((passed + $(awk '{print $1}' <<<"$line")))
    failed=$((failed + $(awk '{print $3}' <<<"$line")))
    skipped=$((skipped + $(sed -n 's/.* \([0-9][0-9]*\) skipped.*/\1/p' <<<"$line" | grep . || echo 0)))
}
check() { # name command...
    local name=$1; shift
    if "$@" >"$out/step.log" 2>&1; then
        echo "ok   $name"; passed=$((passed + 1))
    else
        echo "FAIL $name"; sed 's/^/     /' "$out/step.log" | head -40; failed=$((failed + 1))
    fi
}

# The renderer/checker: GOPATH mode against Debian's Go packages (sprig v3 is installed without
# its /v3 suffix, so modules cannot resolve it).
if command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/Masterminds/sprig ]; then
    if (cd tests/helm/helmcheck && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
            GOCACHE="$out/gocache" go build -o "$out/helmcheck" .) >"$out/build.log" 2>&1; then
        "$out/helmcheck" check "$repo" >"$out/check.log" 2>&1
        grep -vE '^ok |^[0-9]+ passed|^$' "$out/check.log"
        count "$out/check.log"
    else
        echo "FAIL building tests/helm/helmcheck"; cat "$out/build.log"; failed=$((failed + 1))
    fi
else
    echo "FAIL go or Debian's sprig missing: run ops/install-packages.sh"; failed=$((failed + 1))
fi

if command -v promtool >/dev/null; then
    check "promtool check rules ops/prometheus/nhgw-alerts.yaml" promtool check rules ops/prometheus/nhgw-alerts.yaml
    check "promtool test rules tests/helm/alerts.test.yaml (alerts fire, and stay quiet on look-alikes)" \
        bash -c 'cd tests/helm && promtool test rules alerts.test.yaml'
    if [ -x "$out/helmcheck" ] && "$out/helmcheck" dashboard-exprs ops/grafana/nhgw-dashboard.json >"$out/dashboard-queries.yaml"; then
        check "promtool parses every query of ops/grafana/nhgw-dashboard.json" promtool check rules "$out/dashboard-queries.yaml"
    else
        echo "FAIL extracting the dashboard's queries"; failed=$((failed + 1))
    fi
else
    echo "FAIL promtool missing: run ops/install-packages.sh (Debian package prometheus)"; failed=$((failed + 1))
fi

tests/helm/check-dockerfile.sh >"$out/dockerfile.log" 2>&1
grep -vE '^ok |^[0-9]+ passed' "$out/dockerfile.log"
count "$out/dockerfile.log"

echo
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
