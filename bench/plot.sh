#!/usr/bin/env bash
# Turn nhbench JSON results into PNG plots with gnuplot (Debian gnuplot-nox), next to the JSON.
#
#   bench/plot.sh RESULT.json [RESULT.json...]
#
# One PNG per run that has a timeline: RESULT.png when the file holds one run, otherwise
# RESULT-<n>-<scenario>.png. Top panel: connection attempts, TLS handshakes, joins and failures per
# second (from nhbench's timeline buckets) and the sessions open (right axis), with the end of the
# ramp, the storm's drop and the moment every device was back marked. Bottom panel: cores busy in
# the gateway, in nhbench and in every other process of the machine (from /proc, sampled about once
# a second), and the gateway's RSS (right axis).
# Prints the PNG paths. Exit status 2 if gnuplot or python3 is missing.
set -euo pipefail

if [ $# -lt 1 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
for tool in gnuplot python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "plot.sh: $tool is missing (ops/install-packages.sh installs gnuplot-nox)" >&2
    exit 2
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for json in "$@"; do
  # Extract each run's curves into data files plus a small gnuplot header with titles and marks.
  python3 - "$json" "$tmp" <<'PY'
import json, os, sys

path, out = sys.argv[1], sys.argv[2]
with open(path) as f:
    res = json.load(f)
runs = [r for r in res.get("runs", []) if r.get("timeline")]
base = os.path.splitext(path)[0]
for f in os.listdir(out):
    os.unlink(os.path.join(out, f))
for i, r in enumerate(runs):
    t = r["timeline"]
    n = len(t["tls"])
    if n == 0:
        continue
    b = t["bucket_ms"] / 1000.0
    tag = "%d" % i
    with open(os.path.join(out, tag + ".dat"), "w") as f:
        for k in range(n):
            f.write("%.3f %.1f %.1f %.1f %.1f %d\n" % (
                (k + 0.5) * b, t["started"][k] / b, t["tls"][k] / b, t["ready"][k] / b,
                t["failed"][k] / b, t["active"][k]))
    ts, cpu, rss = t.get("gateway_t_s", []), t.get("gateway_cpu_s", []), t.get("gateway_rss_kib", [])
    me, busy = t.get("nhbench_cpu_s", []), t.get("machine_busy_cpu_s", [])
    with open(os.path.join(out, tag + "-gw.dat"), "w") as f:
        for k in range(1, len(ts)):
            dt = ts[k] - ts[k - 1]
            if dt > 0 and rss[k] > 0:
                g = (cpu[k] - cpu[k - 1]) / dt
                m = (me[k] - me[k - 1]) / dt if len(me) == len(ts) else float("nan")
                o = (busy[k] - busy[k - 1]) / dt - g - m if len(busy) == len(ts) else float("nan")
                f.write("%.3f %.3f %.1f %.3f %.3f\n" % (ts[k - 1], g, rss[k] / 1024.0, m, max(o, 0.0)))
    c = r.get("config", {})
    what = {"hold": "ramp and hold", "tls-hold": "TLS-only ramp and hold", "storm": "storm"}.get(
        r["scenario"], r["scenario"])
    if c.get("pattern") == "hold":
        title = "%s: %s sessions, %s %s" % (what, c.get("sessions"), c.get("mode"), c.get("target"))
    else:
        title = "%s: concurrency %s, %s %s" % (what, c.get("concurrency"), c.get("mode"), c.get("target"))
    st = r.get("derived", {}).get("storm")
    if st:
        back = ("all back %.1f s after the drop" % st["all_back_s"]) if st["all_back"] else (
            "%d of %d back after %.0f s" % (st["back"], c.get("sessions"), st["waited_s"]))
        title += "; %s backoff, %s" % (st["backoff"], back)
    if r.get("label"):
        title += " (" + r["label"] + ")"
    png = base + ".png" if len(runs) == 1 else "%s-%d-%s.png" % (base, i, r["scenario"])
    marks = t.get("marks_s", {})
    names = {"ramp_end_s": "ramped", "drop_s": "drop", "back_s": "all back", "end_s": ""}
    with open(os.path.join(out, tag + ".gp"), "w") as f:
        f.write("set output %s\n" % json.dumps(png))
        f.write("set title %s noenhanced\n" % json.dumps(title.replace('"', "'")))
        for j, (k, v) in enumerate(sorted(marks.items(), key=lambda kv: kv[1])):
            if not names.get(k):
                continue
            f.write("set arrow from %f, graph 0 to %f, graph 1 nohead dt 2 lc rgb 'gray40'\n" % (v, v))
            f.write("set label %s at %f, graph 0.97 left offset 0.3,0 tc rgb 'gray30' font ',9'\n" % (
                json.dumps(names[k]), v))
        f.write("xmax = %f\n" % (n * b))
    with open(os.path.join(out, "list"), "a") as f:
        f.write(tag + "\n")
PY
  [ -f "$tmp/list" ] || { echo "plot.sh: $json: no run with a timeline" >&2; continue; }
  while read -r tag; do
    gnuplot <<EOF
set terminal pngcairo size 1200,860 font ',10'
load '$tmp/$tag.gp'
set multiplot layout 2,1
set lmargin 11
set rmargin 11
set grid
set key top right opaque box font ',9'
set xrange [0:xmax]
set ylabel 'per second'
set y2label 'sessions open'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot '$tmp/$tag.dat' using 1:2 with lines lw 1 lc rgb '#999999' title 'attempts started/s', \
     '' using 1:3 with lines lw 2 lc rgb '#1f77b4' title 'TLS handshakes/s', \
     '' using 1:4 with lines lw 2 lc rgb '#2ca02c' title 'joined (ready)/s', \
     '' using 1:5 with lines lw 1 lc rgb '#d62728' title 'failed/s', \
     '' using 1:6 axes x1y2 with lines lw 2 lc rgb 'black' title 'sessions open'
unset title
unset arrow
unset label
set xlabel 'seconds since the run started'
set ylabel 'cores busy'
set y2label 'gateway RSS (MiB)'
stats '$tmp/$tag-gw.dat' using 1 nooutput
if (STATS_records > 0) {
  plot '$tmp/$tag-gw.dat' using 1:2 with steps lw 2 lc rgb '#ff7f0e' title 'gateway CPU (cores)', \
       '' using 1:4 with steps lw 1 lc rgb '#17becf' title 'nhbench CPU (cores)', \
       '' using 1:5 with steps lw 1 lc rgb '#7f7f7f' title 'other processes (cores)', \
       '' using 1:3 axes x1y2 with lines lw 2 lc rgb '#9467bd' title 'gateway RSS (MiB)'
} else {
  set label 'no gateway samples' at graph 0.5, graph 0.5 center
  plot NaN notitle
}
unset multiplot
EOF
    sed -n 's/^set output "\(.*\)"$/\1/p' "$tmp/$tag.gp"
  done <"$tmp/list"
done
