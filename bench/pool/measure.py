#!/usr/bin/env python3
"""One benchmark point: wrk against a URL for a fixed time, closed loop with
a fixed number of connections. Prints one JSON line: throughput, latency
percentiles, errors, CPU used by the target's whole process tree and by
wrk, and the tree's memory (RSS and PSS summed) sampled mid-run.

    measure.py --pid PID --url URL --connections 16 --duration 5 [--label k=v ...]
    measure.py --rest PID...   # the trees' memory now, as JSON
    measure.py --tree PID...   # the pids in the trees

A target may be several trees (nginx and PHP-FPM): --pid repeats. CPU of
the trees counts every live process under each PID plus the children it
reaped during the run (cutime), so forked workers and CGI children are in it.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def tree(root):
    """root and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def trees(roots):
    found = []
    for root in roots:
        found.extend(pid for pid in tree(root) if pid not in found)
    return found


def tree_cpu_seconds(roots):
    total = 0
    for pid in trees(roots):
        try:
            f = stat_fields(pid)
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / TICK


def tree_memory_kib(roots):
    rss = pss = 0
    pids = trees(roots)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name == "Rss":
                        rss += int(rest.split()[0])
                    elif name == "Pss":
                        pss += int(rest.split()[0])
        except OSError:
            continue
    return {"processes": len(pids), "rss_kib": rss, "pss_kib": pss}


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--tree":
        print(" ".join(str(pid) for pid in trees([int(pid) for pid in sys.argv[2:]])))
        return
    if len(sys.argv) >= 3 and sys.argv[1] == "--rest":
        print(json.dumps(tree_memory_kib([int(pid) for pid in sys.argv[2:]])))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, action="append", required=True,
                   help="a root of the target's process trees (repeatable)")
    p.add_argument("--url", required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--at-rest", help="the tree's memory before any load, as JSON, kept in the point")
    a = p.parse_args()

    cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{a.duration}s",
           "--timeout", "10s", "-s", os.path.join(HERE, "wrk-report.lua"), a.url]
    load_before = os.getloadavg()[0]
    cpu0, gen0, t0 = tree_cpu_seconds(a.pid), children_cpu_seconds(), time.monotonic()
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    time.sleep(a.duration / 2)
    memory = tree_memory_kib(a.pid)
    out, _ = wrk.communicate()
    wall = time.monotonic() - t0
    cpu1, gen1 = tree_cpu_seconds(a.pid), children_cpu_seconds()
    if wrk.returncode != 0:
        sys.exit(f"wrk failed ({wrk.returncode}): {out}")
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"no result from wrk: {out}")
    r = json.loads(lines[-1])
    seconds = r["duration_us"] / 1e6
    point = dict(kv.split("=", 1) for kv in a.label)
    point.update({
        "connections": a.connections,
        "requests": r["requests"],
        "rps": round(r["requests"] / seconds, 1) if seconds else 0.0,
        "p50_us": r["p50_us"], "p90_us": r["p90_us"], "p99_us": r["p99_us"], "max_us": r["max_us"],
        "errors": sum(r["errors"].values()), "error_detail": r["errors"],
        "target_cpu_s": round(cpu1 - cpu0, 2),
        "loadgen_cpu_s": round(gen1 - gen0, 2),
        "wall_s": round(wall, 2),
        "under_load": memory,
        "loadavg_before": load_before,
    })
    if a.at_rest:
        point["at_rest"] = json.loads(a.at_rest)
    print(json.dumps(point))
    print(f"   {point.get('workload', '')} c={a.connections}: {point['rps']:.1f} req/s, "
          f"p50 {point['p50_us']} µs, p99 {point['p99_us']} µs, errors {point['errors']}", file=sys.stderr)


if __name__ == "__main__":
    main()
