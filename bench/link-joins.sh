#!/usr/bin/env bash
# Join round trip through the link, side by side: for each ramp rate, `hold` against a standalone
# gateway (in-process link) and against the whole stack (LINK=nats: nats-server, redis-server,
# nhplatform), one after the other with the same nhbench options, then one table.
#
#   bench/link-joins.sh                         # RATES="500 1000 2000", SECONDS_PER_RATE=10
#   RATES="1000" SECONDS_PER_RATE=20 bench/link-joins.sh --vsn 3
#
# sessions = rate x SECONDS_PER_RATE, so every run ramps for the same time at its rate; --hold
# defaults to 5s. Extra arguments go to nhbench. Environment as for run.sh (NHGW_BIN, GW_CPUS, ...).
# Output: each run's files in build/bench-results/ and build/bench-results/link-joins-<stamp>.json.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
RATES=${RATES:-500 1000 2000}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-10}
RESULTS=${RESULTS:-$repo/build/bench-results}
mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
list=$RESULTS/link-joins-$stamp.list
: >"$list"
for rate in $RATES; do
  sessions=$(( rate * SECONDS_PER_RATE ))
  for link in local nats; do
    echo "link-joins.sh: rate $rate/s, $sessions sessions, link $link" >&2
    out=$(LINK=$link "$here/run.sh" hold --sessions "$sessions" --rate "$rate" --hold 5s \
      --label "link-joins $link $rate/s" --quiet "$@" 2>&1) || true
    json=$(printf '%s\n' "$out" | sed -n 's/^run.sh: results //p' | tail -1)
    printf '%s\n' "$out" | grep -E '^(stack over|  (platform|nats-server|redis-server|gateway-tree|link calls|the gateway)|  FAIL)' >&2 || true
    echo "$rate $link $json" >>"$list"
  done
done
python3 - "$list" "$RESULTS/link-joins-$stamp.json" <<'PY'
import json, os, sys
rows = []
for line in open(sys.argv[1]):
    rate, link, path = line.split()
    r = json.load(open(path))["runs"][0]
    stack = path[:-5] + "-stack.json"
    s = json.load(open(stack)) if os.path.exists(stack) else None
    lat = r["latency_us"]
    row = {"rate": int(rate), "link": link, "file": os.path.basename(path), "pass": r["pass"],
           "ready": r["counts_at_ramp"]["ready"], "sessions": r["config"]["sessions"] if "config" in r else None,
           "setup_per_s": r["derived"]["setup_per_s"], "errors": r["errors_total"]}
    for h in ("join", "extensions_join", "upgrade", "setup"):
        if h in lat:
            row[h] = {k: lat[h][k] / 1000 for k in ("p50", "p90", "p99", "max")}
    if s:
        row["stack"] = {"cpu_s": s["cpu_s"], "calls": s["link_calls_delivered_to_platform"], **s["derived"]}
    rows.append(row)
json.dump(rows, open(sys.argv[2], "w"), indent=2)
print(f"\n{'rate':>5} {'link':5} {'ready':>11} {'set-up/s':>8}  {'join p50/p99 ms':>17}  {'ext join p50/p99':>17}  "
      f"{'upgrade p50/p99':>17}  {'set-up p50/p99':>17}  platform calls/CPU s")
by = {}
for x in rows:
    by[(x["rate"], x["link"])] = x
    f = lambda h: f"{x[h]['p50']:7.2f} /{x[h]['p99']:8.2f}" if h in x else "-"
    st = x.get("stack", {})
    pc = f"{st['platform_calls_per_cpu_s']:.0f} ({st['calls']} calls)" if "platform_calls_per_cpu_s" in st else ""
    print(f"{x['rate']:>5} {x['link']:5} {x['ready']:>5}/{x['sessions'] or 0:<5} {x['setup_per_s']:8.0f}  {f('join'):>17}  "
          f"{f('extensions_join'):>17}  {f('upgrade'):>17}  {f('setup'):>17}  {pc}")
for rate in sorted({x["rate"] for x in rows}):
    a, b = by.get((rate, "local")), by.get((rate, "nats")), 
    if a and b and "join" in a and "join" in b:
        print(f"  {rate}/s: join p50 nats/local {b['join']['p50'] / max(a['join']['p50'], 1e-3):.1f}x, "
              f"p99 {b['join']['p99'] / max(a['join']['p99'], 1e-3):.1f}x")
print(f"\nlink-joins.sh: {sys.argv[2]}")
PY
