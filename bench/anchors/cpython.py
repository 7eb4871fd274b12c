#!/usr/bin/env python3
"""CPython side of `npm run bench`: the anchor figures multiproc is compared with.

Usage:  python3 cpython.py GROUP [--n N] [--reps R] [--warmup W] [--methods spawn,forkserver,fork]

Groups:
  start             N x (Process().start(); .join()) one after the other -> ms per process
  start_concurrent  start N processes, then join them all                -> ms (wall)

Prints one JSON line per start method:
  {"bench": "cpython_spawn", "unit": "ms/process", "value": <median>, "min", "max",
   "samples": [per repetition], "foreign_cpu_pct": [per repetition], "foreign_cpu_pct_all", ...}
foreign_cpu_pct is the share of the whole machine (100 = all cores) used by processes outside
this process tree while the repetition ran (null when a repetition is too short to resolve;
foreign_cpu_pct_all covers all repetitions); bench/harness.ts drops or flags noisy repetitions.

Why a second interpreter: 'spawn' children (and on 3.11 'forkserver' children, CPython
gh-98552/gh-126631) re-run the parent's __main__ script from source. The timing therefore runs in
a fresh interpreter whose __main__ is a one-line `-c` program that imports this file as a module,
so there is nothing to re-run and the figure is the start method's own cost. Process() without a
target is the empty target.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------
# Foreign CPU, computed the same way as bench/harness.ts (ticks of /proc/stat vs our tree).
# ---------------------------------------------------------------------------------------------

def _tree_ticks(root):
    """CPU ticks of root and its live descendants, each including its reaped children. Live
    descendants matter: the fork server reaps its own children, so their CPU is in its cutime."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue            # ended while we read /proc
        rest = stat[stat.rindex(")") + 2:].split()
        stats[int(entry)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats.get(pid, (0, 0))[1]
        todo.extend(c for c, (ppid, _) in stats.items() if ppid == pid)
    return total


def cpu_snapshot():
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except OSError:         # not Linux: no noise figure
        return None
    total = sum(vals)
    return total, total - vals[3] - vals[4], _tree_ticks(os.getpid())


MIN_TICKS = 40      # 200 ms wall on 2 CPUs: below this the 10 ms ticks do not resolve a share
MIN_LOOP_S = 0.3


def foreign_cpu_pct(a, b):
    if a is None or b is None or b[0] - a[0] < MIN_TICKS:
        return None
    pct = 100.0 * ((b[1] - a[1]) - (b[2] - a[2])) / (b[0] - a[0])
    return round(min(100.0, max(0.0, pct)), 1)


# ---------------------------------------------------------------------------------------------
# The timing, run inside the fresh `-c` interpreter (see the module docstring).
# ---------------------------------------------------------------------------------------------

def _start_seq(ctx, n):
    """ms per process for n sequential start+join."""
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process()
        p.start()
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"child exited with {p.exitcode}")
        p.close()
    return (time.perf_counter() - t0) * 1e3 / n


def _start_concurrent(ctx, n):
    """wall ms to start n processes, then join them all."""
    t0 = time.perf_counter()
    procs = [ctx.Process() for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    ms = (time.perf_counter() - t0) * 1e3
    for p in procs:
        if p.exitcode != 0:
            raise SystemExit(f"child exited with {p.exitcode}")
        p.close()
    return ms


GROUPS = {
    # group: (timing function, bench name suffix, unit)
    "start": (_start_seq, "", "ms/process"),
    "start_concurrent": (_start_concurrent, "_x{n}", "ms"),
}


def driver():
    import multiprocessing as mp
    cfg = json.loads(sys.argv[1])
    fn, suffix, unit = GROUPS[cfg["group"]]
    n = cfg["n"]
    for method in cfg["methods"]:
        ctx = mp.get_context(method)
        for _ in range(cfg["warmup"]):      # also starts the fork server
            fn(ctx, 1)
        samples, foreign = [], []
        first = cpu_snapshot()
        t0 = time.perf_counter()
        reps = cfg["reps"]
        # Very fast methods (fork) get more repetitions until the loop lasts MIN_LOOP_S, so that its
        # foreign CPU is resolved (bench/harness.ts does the same).
        while len(samples) < reps or (time.perf_counter() - t0 < MIN_LOOP_S and len(samples) < 10 * reps):
            a = cpu_snapshot()
            samples.append(fn(ctx, n))
            foreign.append(foreign_cpu_pct(a, cpu_snapshot()))
        s = sorted(samples)
        print(json.dumps({
            "bench": f"cpython_{method}" + suffix.format(n=n),
            "unit": unit,
            "value": round(s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2, 4),
            "min": round(s[0], 4),
            "max": round(s[-1], 4),
            "samples": [round(x, 4) for x in samples],
            "foreign_cpu_pct": foreign,
            "foreign_cpu_pct_all": foreign_cpu_pct(first, cpu_snapshot()),
            "group": cfg["group"],
            "method": method,
            "processes": n,
            "python": sys.version.split()[0],
        }), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("group", choices=sorted(GROUPS))
    ap.add_argument("--n", type=int, default=20, help="processes per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--methods", default="spawn,forkserver,fork")
    args = ap.parse_args()
    cfg = {"group": args.group, "n": args.n, "reps": args.reps, "warmup": args.warmup,
           "methods": args.methods.split(",")}
    main_program = f"import sys; sys.path.insert(0, {HERE!r}); import cpython; cpython.driver()"
    argv = [sys.executable] + (["-S"] if sys.flags.no_site else []) + ["-c", main_program, json.dumps(cfg)]
    sys.exit(subprocess.run(argv).returncode)


if __name__ == "__main__":
    main()
