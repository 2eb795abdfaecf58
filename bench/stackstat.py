#!/usr/bin/env python3
"""The stack side of a LINK=nats bench run (bench/run.sh): what the platform, nats-server and
redis-server cost per link call.

  stackstat.py snap LABEL FILE --pid NAME=PID ... --nats-monitor HOST:PORT [--metrics HOST:PORT]
      appends one sample under LABEL to FILE (JSON): CLOCK_MONOTONIC time; utime + stime of each
      process (NAME ending in -tree: the process and all its descendants) from /proc; nats-server's
      per-connection message counts (/connz?state=all, open and recently closed connections, by
      the client's name: "nhplatform", "nhgw <gateway>/<worker>", "nhbench"); the gateway's
      nhgw_platform_calls_total counters from its /metrics, when it has them.
  stackstat.py report FILE OUT [--bench-json J]
      differences between the samples "before" and "after", written to OUT and summarised on stdout.

Counting link calls: nats-server counts every message it delivers to a client (out_msgs). The
platform's connection receives exactly the gateway's link calls (auth, connect, join, message,
notify requests, disconnect and heartbeat publishes) plus operator API requests; nhbench's own
API requests (its "nhbench" connections' in_msgs) are subtracted. So "link calls answered" is
counted by the server that carried them, independent of either end; the gateway's own counters
(when /metrics exists) break them down by call. Standard library only.
"""
import json
import os
import sys
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def stat_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # fields after the name start at field 3 (state): ppid is 4, utime 14, stime 15
    return int(rest[1]), int(rest[11]) + int(rest[12])


def tree_ticks(root):
    parent = {}
    ticks = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            pp, t = stat_of(int(d))
        except (OSError, ValueError, IndexError):
            continue
        parent[int(d)] = pp
        ticks[int(d)] = t
    keep = {root}
    changed = True
    while changed:
        changed = False
        for p, pp in parent.items():
            if pp in keep and p not in keep:
                keep.add(p)
                changed = True
    return sum(ticks.get(p, 0) for p in keep), len([p for p in keep if p in ticks])


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def snap(argv):
    label, path = argv[0], argv[1]
    pids, monitor, metrics = {}, None, None
    i = 2
    while i < len(argv):
        if argv[i] == "--pid":
            name, pid = argv[i + 1].split("=", 1)
            if pid:
                pids[name] = int(pid)
        elif argv[i] == "--nats-monitor":
            monitor = argv[i + 1]
        elif argv[i] == "--metrics":
            metrics = argv[i + 1]
        else:
            sys.exit(f"stackstat: unknown option {argv[i]}")
        i += 2
    out = {"t": time.monotonic(), "tick_s": 1.0 / TICK, "cpu_ticks": {}, "procs": {}}
    for name, pid in pids.items():
        try:
            if name.endswith("-tree"):
                out["cpu_ticks"][name], out["procs"][name] = tree_ticks(pid)
            else:
                out["cpu_ticks"][name] = stat_of(pid)[1]
                out["procs"][name] = 1
        except OSError:
            out["cpu_ticks"][name] = None
    if monitor:
        cz = json.loads(get(f"http://{monitor}/connz?state=all&limit=100000"))
        out["conns"] = [
            {k: c.get(k) for k in ("cid", "name", "in_msgs", "out_msgs", "in_bytes", "out_bytes")}
            for c in cz.get("connections") or []
        ]
        vz = json.loads(get(f"http://{monitor}/varz"))
        out["varz"] = {k: vz.get(k) for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes", "slow_consumers")}
    if metrics:
        try:
            calls = {}
            for line in get(f"http://{metrics}/metrics").splitlines():
                if line.startswith("nhgw_platform_calls_total{"):
                    lab, val = line.rsplit(" ", 1)
                    call = lab.split('call="', 1)[1].split('"', 1)[0]
                    res = lab.split('result="', 1)[1].split('"', 1)[0]
                    calls.setdefault(call, {})[res] = int(float(val))
            out["gateway_calls"] = calls
        except (OSError, ValueError, IndexError) as e:
            out["gateway_calls_error"] = str(e)
    data = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data[label] = out
    with open(path, "w") as f:
        json.dump(data, f)


def kind(name):
    name = name or ""
    if name == "nhplatform":
        return "platform"
    if name == "nhbench":
        return "nhbench"
    if name.startswith("nhgw "):
        return "gateway"
    return "other"


def conn_delta(a, b):
    """Per kind: messages and bytes in/out between two /connz samples (connections by cid; one
    absent before counts from zero)."""
    before = {c["cid"]: c for c in a.get("conns", [])}
    tot = {}
    for c in b.get("conns", []):
        p = before.get(c["cid"], {})
        k = tot.setdefault(kind(c["name"]), {"conns": 0, "in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0})
        k["conns"] += 1
        for f in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
            k[f] += (c.get(f) or 0) - (p.get(f) or 0)
    return tot


def report(argv):
    src, dst = argv[0], argv[1]
    bench = None
    if len(argv) > 3 and argv[2] == "--bench-json" and os.path.exists(argv[3]):
        with open(argv[3]) as f:
            bench = json.load(f)
    with open(src) as f:
        data = json.load(f)
    a, b = data["before"], data["after"]
    window = b["t"] - a["t"]
    cpu = {}
    for name, t1 in b["cpu_ticks"].items():
        t0 = a["cpu_ticks"].get(name)
        if t0 is not None and t1 is not None:
            cpu[name] = (t1 - t0) * b["tick_s"]
    conns = conn_delta(a, b)
    pf = conns.get("platform", {})
    api = conns.get("nhbench", {}).get("in_msgs", 0)
    calls = max(pf.get("out_msgs", 0) - api, 0)
    res = {
        "window_s": window,
        "cpu_s": cpu,
        "cores": {k: v / window for k, v in cpu.items()} if window > 0 else {},
        "nats_by_client": conns,
        "nhbench_api_requests": api,
        "link_calls_delivered_to_platform": calls,
        "counting": "nats-server /connz: messages delivered to the platform's connection (out_msgs) minus "
                    "nhbench's operator API requests",
    }
    if "gateway_calls" in a and "gateway_calls" in b:
        gc = {}
        for call, r1 in b["gateway_calls"].items():
            r0 = a["gateway_calls"].get(call, {})
            d = {k: v - r0.get(k, 0) for k, v in r1.items() if v - r0.get(k, 0)}
            if d:
                gc[call] = d
        res["gateway_calls"] = gc
        res["gateway_calls_total"] = sum(sum(d.values()) for d in gc.values())
    d = {}
    if calls and cpu.get("platform"):
        d["platform_calls_per_cpu_s"] = calls / cpu["platform"]
        d["platform_cpu_us_per_call"] = cpu["platform"] * 1e6 / calls
    for k in ("nats-server", "redis-server", "gateway-tree"):
        if calls and cpu.get(k) is not None:
            d[k.replace("-tree", "") + "_cpu_us_per_call"] = cpu[k] * 1e6 / calls
    if bench and bench.get("runs"):
        run = bench["runs"][0]
        cnt = run.get("counts_at_end_of_hold") or run.get("counts_at_ramp") or {}
        ready = cnt.get("ready")
        if ready:
            d["sessions_ready"] = ready
            d["calls_per_session"] = calls / ready
    res["derived"] = d
    with open(dst, "w") as f:
        json.dump(res, f, indent=2)
    print(f"stack over {window:.1f} s (nhbench start .. 2 s after its end):")
    for k, v in cpu.items():
        print(f"  {k:14s} {v:8.2f} CPU s = {v / window if window else 0:.2f} cores")
    print(f"  link calls delivered to the platform: {calls} (nats-server; minus {api} nhbench API requests)")
    if "gateway_calls" in res:
        parts = ", ".join(f"{c} {sum(v.values())}" for c, v in sorted(res["gateway_calls"].items()))
        print(f"  the gateway's count: {res['gateway_calls_total']} ({parts})")
    if "platform_calls_per_cpu_s" in d:
        print(f"  platform: {d['platform_calls_per_cpu_s']:.0f} calls per CPU second ({d['platform_cpu_us_per_call']:.1f} us/call);"
              f" nats-server {d.get('nats-server_cpu_us_per_call', 0):.1f} us/call, redis-server"
              f" {d.get('redis-server_cpu_us_per_call', 0):.1f} us/call, gateway {d.get('gateway_cpu_us_per_call', 0):.1f} us/call")
    if "calls_per_session" in d:
        print(f"  {d['calls_per_session']:.2f} calls per session ready ({d['sessions_ready']})")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    if sys.argv[1] == "snap":
        snap(sys.argv[2:])
    elif sys.argv[1] == "report":
        report(sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
