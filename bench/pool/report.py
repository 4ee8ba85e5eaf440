#!/usr/bin/env python3
"""Turns one run of bench/pool/run into tables: printed, saved as raw JSON,
and (with --docs) written between the markers of the "Executor pool"
section of docs/performance.md. Everything outside the markers, other
sections included, is kept as it is."""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess

BEGIN = "<!-- bench/pool/run: begin (generated, do not edit by hand) -->"
END = "<!-- bench/pool/run: end -->"
SECTION = "## Executor pool"
BASELINE = "in-process"
NAMES = {
    "in-process": "in-process baseline (axum + cached AST)",
    "orchestrator-in-process": "PiCloud orchestrator + in-process executor",
    "shared": "PiCloud shared-worker (records on)",
    "shared-no-records": "PiCloud shared-worker (records off)",
    "per-invocation": "PiCloud per-invocation (records on)",
    "fork-exec": "fork+exec per request",
    "fork-exec-confined": "fork+exec per request, confined like a worker",
    "php-fpm-2": "nginx + PHP-FPM (static, 2 children)",
    "php-fpm-8": "nginx + PHP-FPM (static, 8 children)",
    "fcgiwrap-cgi": "nginx + fcgiwrap (php-cgi per request)",
}


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} vCPU ({model}), {mem_gib:.0f} GiB, Linux {platform.release()}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--points")
    p.add_argument("--probes")
    p.add_argument("--workers", type=int)
    p.add_argument("--duration", type=int)
    p.add_argument("--from-raw", help="re-render a saved run (its --raw file) instead")
    p.add_argument("--load-start", default="")
    p.add_argument("--load-end", default="")
    p.add_argument("--raw")
    p.add_argument("--docs")
    a = p.parse_args()
    if a.from_raw:
        with open(a.from_raw) as f:
            saved = json.load(f)
        text = render(saved["meta"], saved["points"], saved["probes"])
        print(text)
        if a.docs:
            write_docs(a.docs, text)
        return
    points = [json.loads(l) for l in open(a.points) if l.strip()]
    probes = [json.loads(l) for l in open(a.probes) if l.strip()]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "machine": machine(),
        "workers": a.workers,
        "duration_s": a.duration,
        "load_start": a.load_start,
        "load_end": a.load_end,
    }
    if a.raw:
        with open(a.raw, "w") as f:
            json.dump({"meta": meta, "points": points, "probes": probes}, f, indent=1)
            f.write("\n")
    text = render(meta, points, probes)
    print(text)
    if a.docs:
        write_docs(a.docs, text)


def render(meta, points, probes):
    by = {(p["target"], p["workload"], p["connections"]): p for p in points}
    out = []
    out.append(f"Measured {meta['date']} at commit `{meta['commit']}` with `bench/pool/run` "
               f"({meta['duration_s']} s per point after a 1 s warm-up).\n")
    out.append(f"- Machine: {meta['machine']}. Load average {meta['load_start']} at the start, "
               f"{meta['load_end']} at the end (1/5/15 min): the machine is shared with other "
               "builds, so compare ratios within this run, not absolute numbers across runs.")
    out.append("- CPU placement: wrk (one thread) and the target share both vCPUs. `picloud` runs as "
               "shipped (`PICLOUD_CPU_PINNING` unset: with no more workers than CPUs it pins each worker "
               "to the CPU with the fewest workers and its async threads one per CPU); every other "
               "target, the zygote and wrk are placed by the scheduler. The probe below is run twice, "
               "unpinned and with every process on CPU 0.")
    out.append("- Logging: `picloud` runs with `RUST_LOG=warn`, so a successful invocation writes no log "
               "line (failures still do). As shipped the level is `info`, one line per invocation to "
               "stderr: in alternating runs of hello at 16 connections that cost about 8 % of the "
               "requests per second. The other targets log nothing per request either.")
    out.append(f"- The baseline and PiCloud have {meta['workers']} script threads or workers "
               f"(`PICLOUD_WORKERS={meta['workers']}`, `PICLOUD_SCRIPT_CONCURRENCY={meta['workers']}` so one "
               f"script may use all of them); nginx has {meta['workers']} worker processes, fcgiwrap "
               f"{meta['workers']} children, PHP-FPM the children its name says (`pm = static`, "
               "`pm.max_requests = 1000`, OPcache on as Debian ships it). "
               "Loopback only; closed loop (each connection sends its next request when the "
               "previous one is answered).\n")

    out.append("| workload | conns | target | req/s | × baseline | p50 µs | p99 µs | p99 × baseline | errors | target CPU | CPU µs/request | wrk CPU |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for workload in dict.fromkeys(p["workload"] for p in points):
        for c in sorted({p["connections"] for p in points if p["workload"] == workload}):
            base = by.get((BASELINE, workload, c))
            for target in dict.fromkeys(p["target"] for p in points):
                r = by.get((target, workload, c))
                if not r:
                    continue
                tput = r["rps"] / base["rps"] if base and base["rps"] else None
                p99 = r["p99_us"] / base["p99_us"] if base and base["p99_us"] else None
                cpu = lambda s: f"{100 * s / r['wall_s']:.0f} %"
                out.append(f"| {workload} | {c} | {NAMES.get(target, target)} | {r['rps']:.0f} | {fmt_ratio(tput)} | "
                           f"{r['p50_us']} | {r['p99_us']} | {fmt_ratio(p99)} | {r['errors']} | "
                           f"{cpu(r['target_cpu_s'])} | {per_request(r):.0f} | {cpu(r['loadgen_cpu_s'])} |")
    out.append("\nCPU is the share of one vCPU over the point's wall time (200 % is the whole machine): "
               "the target's whole process tree (server, zygote, workers, CGI children) and wrk. "
               "fcgiwrap does not wait for its php-cgi children in a way that charges their CPU to it, "
               "so its CPU reads low. CPU µs/request is that CPU divided by the requests answered: "
               "unlike req/s it does not depend on how much of the shared machine the point got.\n")

    peers = [t for t in dict.fromkeys(p["target"] for p in points) if t not in ("shared", "shared-no-records")]
    if any(p["target"] == "shared" for p in points) and peers:
        out.append("PiCloud shared-worker (records on) ÷ each target, throughput (and CPU per request, inverted), "
                   "same workload and connections:\n")
        out.append("| workload | conns | " + " | ".join(NAMES.get(t, t) for t in peers) + " |")
        out.append("|---|---|" + "---|" * len(peers))
        for workload in dict.fromkeys(p["workload"] for p in points):
            for c in sorted({p["connections"] for p in points if p["workload"] == workload}):
                ours = by.get(("shared", workload, c))
                if not ours:
                    continue
                cells = []
                for t in peers:
                    r = by.get((t, workload, c))
                    if not r or not r["rps"] or not per_request(ours):
                        cells.append("—")
                    else:
                        cells.append(f"{ours['rps'] / r['rps']:.2f}× ({per_request(r) / per_request(ours):.2f}×)")
                out.append(f"| {workload} | {c} | " + " | ".join(cells) + " |")
        out.append("")

    rest = {}
    for p in points:
        rest.setdefault(p["target"], p.get("at_rest"))
    loaded = {p["target"]: p["under_load"] for p in points if p["connections"] == max(q["connections"] for q in points)
              and p["workload"] == points[0]["workload"]}
    out.append("| target | processes at rest | RSS at rest | PSS at rest | PSS under load (first workload, most connections) |")
    out.append("|---|---|---|---|---|")
    for target, r in rest.items():
        if not r:
            continue
        u = loaded.get(target)
        out.append(f"| {NAMES.get(target, target)} | {r['processes']} | {r['rss_kib'] / 1024:.1f} MiB | "
                   f"{r['pss_kib'] / 1024:.1f} MiB | {u['pss_kib'] / 1024:.1f} MiB ({u['processes']} processes) |"
                   if u else f"| {NAMES.get(target, target)} | {r['processes']} | {r['rss_kib'] / 1024:.1f} MiB | {r['pss_kib'] / 1024:.1f} MiB | — |")
    out.append("")

    if probes:
        out.append("Pool probe (`picloud-bench probe`: the real pool, confined workers, in one process "
                   "that hosts the zygote like `picloud` does):\n")
        out.append("| measure | " + " | ".join(p["placement"] for p in probes) + " |")
        out.append("|---|" + "---|" * len(probes))
        rows = [
            ("fork-to-ready p50 / p99 (spawn request → worker's Hello)",
             lambda p: f"{p['fork_to_ready_us']['spawn']['p50']} / {p['fork_to_ready_us']['spawn']['p99']} µs"),
            ("invocation on a never-used worker (per-invocation, compile included) p50 / p99",
             lambda p: f"{p['fork_to_ready_us']['invoke_on_fresh_worker']['p50']} / {p['fork_to_ready_us']['invoke_on_fresh_worker']['p99']} µs"),
            ("tiny script through the pool p50 / p99",
             lambda p: f"{p['ipc']['pool_invoke_us']['p50']} / {p['ipc']['pool_invoke_us']['p99']} µs"),
            ("… its run inside the worker p50",
             lambda p: f"{p['ipc']['worker_wall_us']['p50']} µs"),
            ("IPC round trip p50 (pool minus the run in the worker)",
             lambda p: f"{p['ipc']['round_trip_p50_us']} µs"),
            ("tiny script on the in-process executor (thread hand-off) p50 / p99",
             lambda p: f"{p['ipc']['in_process_invoke_us']['p50']} / {p['ipc']['in_process_invoke_us']['p99']} µs"),
            ("tiny script run directly on the calling thread p50",
             lambda p: f"{p['ipc']['direct_run_us']['p50']} µs"),
            ("pool overhead over the in-process executor p50 / p99",
             lambda p: f"{p['ipc']['overhead_vs_in_process_p50_us']} / {p['ipc']['overhead_vs_in_process_p99_us']} µs"),
            ("idle never-used worker RSS / PSS / private",
             lambda p: mem(p["memory"]["fresh_idle"])),
            (f"idle worker after {probes[0]['memory']['after_invocations']} hello invocations RSS / PSS / private",
             lambda p: mem(p["memory"]["used_idle"])),
            ("zygote RSS / PSS / private", lambda p: mem(p["memory"]["zygote"])),
        ]
        for label, f in rows:
            out.append(f"| {label} | " + " | ".join(f(p) for p in probes) + " |")
        out.append("")

    out.append("Targets (issue #3; issue #11 where the peers ran), from this run:\n")
    out.append("| target | measured | met |")
    out.append("|---|---|---|")
    for label, value, met in targets(by, probes):
        out.append(f"| {label} | {value} | {'yes' if met else '**no**' if met is not None else '—'} |")
    return "\n".join(out) + "\n"


def per_request(r):
    """CPU microseconds the target's processes spent per answered request."""
    return 1e6 * r["target_cpu_s"] / (r["rps"] * r["wall_s"]) if r["rps"] and r["wall_s"] else 0.0


def mem(m):
    return f"{m['rss_kib']} / {m['pss_kib']} / {m['private_kib']} KiB"


def targets(by, probes):
    def ratio(target, base, workload, c, key="rps"):
        t, b = by.get((target, workload, c)), by.get((base, workload, c))
        if not t or not b or not b[key]:
            return None
        return t[key] / b[key]

    def efficiency(target, base, workload, c):
        """How many of the target's requests fit in the CPU of one of the base's (CPU µs per request, inverted)."""
        t, b = by.get((target, workload, c)), by.get((base, workload, c))
        if not t or not b or not per_request(t):
            return None
        return per_request(b) / per_request(t)

    def at_rest(target):
        p = next((p for p in by.values() if p["target"] == target and p.get("at_rest")), None)
        return p["at_rest"]["pss_kib"] if p else None

    rows = []
    r = ratio("shared", BASELINE, "hello", 16)
    rows.append(("shared hello throughput at 16 ≥ 50 % of the baseline", fmt_ratio(r), None if r is None else r >= 0.5))
    e = efficiency("shared", BASELINE, "hello", 16)
    if e is not None:
        rows.append(("… the same in CPU per request (baseline µs ÷ shared µs; independent of the CPU share each point got)", fmt_ratio(e), e >= 0.5))
    r = ratio("shared", BASELINE, "hello", 16, "p99_us")
    rows.append(("shared hello p99 at 16 ≤ 2 × the baseline's", fmt_ratio(r), None if r is None else r <= 2.0))
    for c in (1, 16, 64):
        r = ratio("shared", BASELINE, "cpu", c)
        e = efficiency("shared", BASELINE, "cpu", c)
        if r is not None:
            rows.append((f"shared cpu throughput at {c} ≥ 85 % of the baseline", fmt_ratio(r), r >= 0.85))
        if e is not None:
            rows.append((f"… in CPU per request at {c}", fmt_ratio(e), e >= 0.85))
    for base, what in (("fork-exec", "fork+exec"), ("fork-exec-confined", "fork+exec confined like a worker")):
        for c in (1, 16, 64):
            r = ratio("per-invocation", base, "hello", c)
            e = efficiency("per-invocation", base, "hello", c)
            if r is not None:
                rows.append((f"per-invocation hello throughput at {c} ≥ 3 × {what}", fmt_ratio(r), r >= 3.0))
            if e is not None:
                rows.append((f"… in CPU per request at {c}", fmt_ratio(e), e >= 3.0))
    r = ratio("shared", "php-fpm-8", "hello", 16)
    if r is not None:
        rows.append(("issue #11: shared hello throughput at 16 ≥ 3 × nginx + PHP-FPM (8 children)", fmt_ratio(r), r >= 3.0))
        e = efficiency("shared", "php-fpm-8", "hello", 16)
        rows.append(("… in CPU per request", fmt_ratio(e), None if e is None else e >= 3.0))
        r = ratio("shared", "php-fpm-8", "hello", 16, "p99_us")
        rows.append(("issue #11: … with a lower p99", fmt_ratio(r), r < 1.0))
    ours, theirs = at_rest("shared"), at_rest("php-fpm-2")
    if ours and theirs:
        rows.append(("issue #11: PiCloud's PSS at rest (server + zygote + workers) below PHP-FPM's with as many workers (+ nginx)",
                     f"{ours / 1024:.1f} vs {theirs / 1024:.1f} MiB", ours < theirs))
    r = ratio("shared", "php-fpm-8", "cpu", 16)
    if r is not None:
        rows.append(("issue #11: cpu at 16, PiCloud shared / PHP-FPM (8 children) (report only)", fmt_ratio(r), None))
    for p in probes:
        v = p["fork_to_ready_us"]["spawn"]["p50"]
        rows.append((f"fork-to-ready p50 < 1 ms ({p['placement']})", f"{v} µs", v < 1000))
        v = p["memory"]["fresh_idle"]["pss_kib"]
        rows.append((f"idle worker PSS < 1 MiB ({p['placement']})", f"{v} KiB", v < 1024))
    return rows


def write_docs(path, generated):
    block = f"{BEGIN}\n{generated}{END}\n"
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = "# Performance\n"
    if BEGIN in doc and END in doc:
        start, end = doc.index(BEGIN), doc.index(END) + len(END)
        doc = doc[:start] + block.rstrip("\n") + doc[end:]
    elif re.search(rf"^{re.escape(SECTION)}\s*$", doc, re.M):
        m = re.search(rf"^{re.escape(SECTION)}\s*$\n?", doc, re.M)
        doc = doc[:m.end()] + "\n" + block + doc[m.end():]
    else:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\n{block}"
    with open(path, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
