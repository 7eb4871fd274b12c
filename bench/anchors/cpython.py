#!/usr/bin/env python3
"""CPython side of `npm run bench`: the anchor figures multiproc is compared with.

Usage:  python3 cpython.py GROUP [--n N] [--reps R] [--warmup W] [--methods spawn,forkserver,fork]

Groups:
  start             N x (Process().start(); .join()) one after the other -> ms per process
  start_concurrent  start N processes, then join them all                -> ms (wall)
  lock_uncontended  N x lock.acquire(); lock.release() / with lock:      -> pairs/s
  lock_contended    2 fork children x N `with lock: v.value += 1`        -> incr/s
  wake              N rounds: parent sets an Event / notifies a Condition,
                    a fork child wakes                                   -> us (median round)
  shm_attach        a child rebuilds a --n MB Array('d') argument (spawn,
                    forkserver) / attaches SharedMemory by name (fork)   -> ms
  queue             fork producer -> fork consumer, --n ints end to end    -> msgs/s
                    and --n2 items of 64 KiB bytes                       -> MB/s
  jqueue            parent puts --n ints into a JoinableQueue, a fork
                    child get+task_done, parent join()                   -> items/s
                    and --n2 x (put one item; join())                     -> us/item
  pool              Pool(2): map(square) tasks/s with the default chunksize and chunksize=1
                    (--n tasks), apply_async().get() round trip us (--n2), speed-up of --n3
                    ~20 ms CPU tasks, Pool(2) to first result ms and worker RSS MB per method
  pipe              duplex Pipe ping-pong with an echoing fork child, --n
                    round trips of an int / of 8 bytes                   -> us
                    and --n2 blocks of 1 MiB child -> parent (duplex and
                    simplex)                                             -> MB/s
  manager           Manager() start and shutdown (fork)                  -> ms
                    --n x (d['k'] = i; d['k']) on a manager dict         -> ops/s
                    2 fork children x --n2 `with mlock: d['k'] += 1`     -> incr/s

The start groups print one JSON line per start method:
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


# ---------------------------------------------------------------------------------------------
# Synchronization and shared memory (bench/synchronize.bench.ts). Each group times its own
# repetitions and prints one JSON line per variant. Children are started with the start method
# named in the record; their targets are the module-level functions below (spawn and forkserver
# children import this module by name, from the sys.path the parent passes them).
# ---------------------------------------------------------------------------------------------

def mono_us():
    """CLOCK_MONOTONIC in microseconds: the same clock in every process (and in Node's hrtime)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e3


def _median(xs):
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def _repeat(reps, rep):
    """rep() reps times (more while the loop is shorter than MIN_LOOP_S, at most 10x), with the
    foreign CPU of each repetition, as _driver_start does."""
    samples, foreign = [], []
    first = cpu_snapshot()
    t0 = time.perf_counter()
    while len(samples) < reps or (time.perf_counter() - t0 < MIN_LOOP_S and len(samples) < 10 * reps):
        a = cpu_snapshot()
        samples.append(rep())
        foreign.append(foreign_cpu_pct(a, cpu_snapshot()))
    return samples, foreign, foreign_cpu_pct(first, cpu_snapshot())


def _emit(bench, unit, measured, **extra):
    samples, foreign, foreign_all = measured
    s = sorted(samples)
    print(json.dumps({
        "bench": bench,
        "unit": unit,
        "value": round(_median(samples), 4),
        "min": round(s[0], 4),
        "max": round(s[-1], 4),
        "samples": [round(x, 4) for x in samples],
        "foreign_cpu_pct": foreign,
        "foreign_cpu_pct_all": foreign_all,
        "python": sys.version.split()[0],
        **extra,
    }), flush=True)


def _join_all(procs):
    for p in procs:
        p.join(120)
        if p.exitcode != 0:
            raise SystemExit(f"child {p.name} exited with {p.exitcode}")


def _lock_uncontended(cfg):
    import multiprocessing as mp
    lock = mp.get_context("fork").Lock()
    n = cfg["n"]
    acq, rel = lock.acquire, lock.release

    def acquire_release():
        t0 = time.perf_counter()
        for _ in range(n):
            acq()
            rel()
        return n / (time.perf_counter() - t0)

    def with_lock():
        t0 = time.perf_counter()
        for _ in range(n):
            with lock:
                pass
        return n / (time.perf_counter() - t0)

    for name, fn in (("cpython_lock_acquire_release", acquire_release), ("cpython_lock_with", with_lock)):
        fn()    # warm-up
        _emit(name, "pairs/s", _repeat(cfg["reps"], fn), pairs=n)


def lock_incr(lock, counter, n, ready, go, ts, idx):
    """Contended increments (the research script's target): ready, wait for go, n locked incrs."""
    ready.set()
    go.wait()
    t0 = mono_us()
    for _ in range(n):
        with lock:
            counter.value += 1
    ts[2 * idx] = t0
    ts[2 * idx + 1] = mono_us()


def _lock_contended(cfg):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    n = cfg["n"]
    variants = {
        # name: (make counter and lock, the pattern timed)
        "separate_lock_raw_value": (lambda: (ctx.Value("i", 0, lock=False), ctx.Lock()),
                                    "with lock: v.value += 1  (v = Value('i', lock=False))"),
        "separate_lock_synchronized_value": (lambda: (lambda v: (v, ctx.Lock()))(ctx.Value("i", 0)),
                                             "with lock: v.value += 1  (v = Value('i'))"),
        "value_get_lock": (lambda: (lambda v: (v, v.get_lock()))(ctx.Value("i", 0)),
                           "with v.get_lock(): v.value += 1"),
    }
    for variant, (make, pattern) in variants.items():
        def rep(m=n):
            counter, lk = make()
            ts = ctx.RawArray("d", 4)
            go = ctx.Event()
            readys = [ctx.Event() for _ in range(2)]
            ps = [ctx.Process(target=lock_incr, args=(lk, counter, m, readys[i], go, ts, i)) for i in range(2)]
            for p in ps:
                p.start()
            for r in readys:
                if not r.wait(60):
                    raise SystemExit("a child did not become ready")
            go.set()
            _join_all(ps)
            if counter.value != 2 * m:
                raise SystemExit(f"{variant}: final count {counter.value}, expected {2 * m}")
            return 2 * m / ((max(ts[1], ts[3]) - min(ts[0], ts[2])) / 1e6)
        rep(min(n, 2000))   # warm-up
        _emit(f"cpython_fork_{variant}", "incr/s", _repeat(cfg["reps"], rep), per_process=n, pattern=pattern)


def event_waiter(ev, flags, woke, n):
    for i in range(n):
        ev.clear()
        flags[0] = i + 1
        ev.wait()
        woke[i] = mono_us()


def condition_waiter(cond, flags, woke, n):
    with cond:
        for i in range(n):
            flags[0] = i + 1
            while flags[1] <= i:
                cond.wait()
            woke[i] = mono_us()


def _wake(cfg):
    """Median µs from the parent's set()/notify() to the waiting child running again: the same
    protocol as bench/synchronize.bench.ts (the parent waits until the child waits for the round,
    sleeps 1 ms so that it blocks, then stamps and wakes it)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    for primitive in ("event", "condition"):
        def rep(rounds=cfg["n"]):
            flags = ctx.RawArray("i", 2)
            woke = ctx.RawArray("d", rounds)
            sent = [0.0] * rounds
            prim = ctx.Event() if primitive == "event" else ctx.Condition()
            target = event_waiter if primitive == "event" else condition_waiter
            p = ctx.Process(target=target, args=(prim, flags, woke, rounds))
            p.start()
            for i in range(rounds):
                deadline = time.monotonic() + 60
                while flags[0] < i + 1:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the child never waited for round {i}")
                    time.sleep(0.001)
                time.sleep(0.001)
                if primitive == "event":
                    sent[i] = mono_us()
                    prim.set()
                else:
                    with prim:
                        flags[1] = i + 1
                        sent[i] = mono_us()
                        prim.notify()
            _join_all([p])
            return _median([woke[i] - sent[i] for i in range(rounds)])
        rep(5)  # warm-up
        _emit(f"cpython_fork_{primitive}_wake", "us", _repeat(cfg["reps"], rep), rounds=cfg["n"])


_STAMPS = []


def _stamp():
    _STAMPS.append(mono_us())


class Stamp:
    """Unpickling one records the time: args (ts, Stamp(), arr, Stamp()) bracket arr's rebuild."""
    def __reduce__(self):
        return (_stamp, ())


def attach_rebuild_child(ts, _before, arr, _after):
    ts[0] = (_STAMPS[-1] - _STAMPS[-2]) / 1e3
    ts[1] = arr[0] + arr[len(arr) - 1]


def attach_named_child(name, ts):
    from multiprocessing import shared_memory
    t0 = mono_us()
    shm = shared_memory.SharedMemory(name=name)
    mv = shm.buf.cast("d")
    ts[0] = (mono_us() - t0) / 1e3
    ts[1] = mv[0] + mv[len(mv) - 1]
    mv.release()
    shm.close()


def _shm_attach(cfg):
    """ms for a child to get a usable view of a --n MB float64 array. spawn/forkserver: the
    Array('d', lock=False) is a Process argument, timed from the unpickling of a marker just
    before it to one just after (CPython passes the arena's fd through its resource sharer).
    fork inherits the mapping and unpickles nothing, so its row is SharedMemory(name=...) plus a
    cast view, timed in the child (the research script's 0.13-0.38 ms included an Event wake-up)."""
    import ctypes
    import multiprocessing as mp
    from multiprocessing import shared_memory
    n = cfg["n"] * 1_000_000 // 8
    for method in ("spawn", "forkserver"):
        ctx = mp.get_context(method)
        arr = ctx.RawArray("d", n)
        ctypes.memset(ctypes.addressof(arr), 0, n * 8)
        arr[0] = 1.0
        arr[n - 1] = 2.0

        def rep():
            ts = ctx.RawArray("d", 2)
            p = ctx.Process(target=attach_rebuild_child, args=(ts, Stamp(), arr, Stamp()))
            p.start()
            _join_all([p])
            if ts[1] != 3.0:
                raise SystemExit(f"the child read {ts[1]}, expected 3")
            return ts[0]
        rep()   # warm-up (starts the fork server)
        _emit(f"cpython_{method}_Array_arg_rebuild", "ms", _repeat(cfg["reps"], rep), MB=cfg["n"], method=method)
        del arr
    ctx = mp.get_context("fork")
    shm = shared_memory.SharedMemory(create=True, size=n * 8)
    try:
        view = shm.buf.cast("d")
        view[0] = 1.0
        view[n - 1] = 2.0
        view.release()

        def rep():
            ts = ctx.RawArray("d", 2)
            p = ctx.Process(target=attach_named_child, args=(shm.name, ts))
            p.start()
            _join_all([p])
            if ts[1] != 3.0:
                raise SystemExit(f"the child read {ts[1]}, expected 3")
            return ts[0]
        rep()
        _emit("cpython_fork_SharedMemory_attach", "ms", _repeat(cfg["reps"], rep), MB=cfg["n"], method="fork")
    finally:
        shm.close()
        shm.unlink()


# ---------------------------------------------------------------------------------------------
# Queues and pipes (bench/ipc.bench.ts): the research script's method (bench_queue, bench_jqueue,
# bench_pipe) with the fork context, Python 3.11's Linux default. Cross-process times are
# mono_us() stamps, as in bench/ipc.bench.ts.
# ---------------------------------------------------------------------------------------------

def q_producer(q, n, size, ready, go, ts):
    """Say ready, wait for go, put n items (ints, or one `size`-byte bytes object n times) and a
    None; stamps the start and the moment the last put() returned (the feeder may still hold
    items: process exit joins it, i.e. flushes everything)."""
    payload = b"x" * size if size else None
    put = q.put
    ready.set()
    go.wait()
    t0 = mono_us()
    if payload is None:
        for i in range(n):
            put(i)
    else:
        for _ in range(n):
            put(payload)
    put(None)
    ts[0] = t0
    ts[1] = mono_us()


def q_consumer(q, ready, ts):
    """Say ready, get until None; stamps the end and the count."""
    get = q.get
    cnt = 0
    ready.set()
    while True:
        x = get()
        if x is None:
            break
        cnt += 1
    ts[2] = mono_us()
    ts[3] = cnt


def _start_wait(procs, readys):
    for p in procs:
        p.start()
    for r in readys:
        if not r.wait(60):
            raise SystemExit("a child did not become ready")


def _queue(cfg):
    """Producer process -> consumer process, end to end (first put to last get): n ints
    (msgs/s), and n2 items of 64 KiB bytes (MB/s)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    for label, n, size in (("int", cfg["n"], 0), ("64KiB", cfg["n2"], 64 * 1024)):
        def rep(m=n, size=size):
            q = ctx.Queue()
            ts = ctx.RawArray("d", 4)
            r1, r2, go = ctx.Event(), ctx.Event(), ctx.Event()
            prod = ctx.Process(target=q_producer, args=(q, m, size, r1, go, ts))
            cons = ctx.Process(target=q_consumer, args=(q, r2, ts))
            _start_wait([cons, prod], [r1, r2])
            go.set()
            _join_all([prod, cons])
            if int(ts[3]) != m:
                raise SystemExit(f"queue {label}: the consumer got {int(ts[3])} items, expected {m}")
            q.close()
            q.join_thread()
            secs = (ts[2] - ts[0]) / 1e6
            return m * size / secs / 1e6 if size else m / secs
        rep(min(n, 2000))   # warm-up
        if size:
            _emit(f"cpython_fork_queue_{label}", "MB/s", _repeat(cfg["reps"], rep), items=n, item_bytes=size)
        else:
            _emit(f"cpython_fork_queue_{label}", "msgs/s", _repeat(cfg["reps"], rep), items=n)


def jq_consumer(jq, ready):
    get = jq.get
    done = jq.task_done
    ready.set()
    while True:
        x = get()
        done()
        if x is None:
            break


def _jqueue(cfg):
    """JoinableQueue, parent producer -> child consumer (get + task_done): n puts then join()
    (items/s, from the first put to join() returning), and n2 times put(one item); join()
    (us per item)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    n, m = cfg["n"], cfg["n2"]

    def session(fn):
        jq = ctx.JoinableQueue()
        ready = ctx.Event()
        c = ctx.Process(target=jq_consumer, args=(jq, ready))
        _start_wait([c], [ready])
        try:
            return fn(jq)
        finally:
            jq.put(None)
            jq.join()
            _join_all([c])
            jq.close()
            jq.join_thread()

    def throughput(jq, k=n):
        put = jq.put
        t0 = time.perf_counter()
        for i in range(k):
            put(i)
        jq.join()
        return k / (time.perf_counter() - t0)

    def roundtrip(jq, k=m):
        for i in range(min(50, k)):     # warm-up, as the research script
            jq.put(i)
            jq.join()
        t0 = time.perf_counter()
        for i in range(k):
            jq.put(i)
            jq.join()
        return (time.perf_counter() - t0) / k * 1e6

    session(lambda jq: throughput(jq, min(n, 2000)))    # warm-up
    _emit("cpython_fork_jqueue_put_taskdone_join", "items/s", _repeat(cfg["reps"], lambda: session(throughput)), items=n)
    _emit("cpython_fork_jqueue_put_join_roundtrip", "us", _repeat(cfg["reps"], lambda: session(roundtrip)), items=m)


def pipe_echo(conn, n, raw, ready):
    ready.set()
    if raw:
        rb, sb = conn.recv_bytes, conn.send_bytes
        for _ in range(n):
            sb(rb())
    else:
        r, s = conn.recv, conn.send
        for _ in range(n):
            s(r())
    conn.close()


def pipe_blaster(conn, nblocks, size, ready, go):
    buf = bytes(size)
    sb = conn.send_bytes
    ready.set()
    go.wait()
    for _ in range(nblocks):
        sb(buf)
    conn.close()


PIPE_WARM = 200


def _pipe(cfg):
    """Duplex Pipe to an echoing child: us per round trip of send(int)/recv() and of
    send_bytes(8 bytes)/recv_bytes(), n round trips after PIPE_WARM untimed ones; then n2 blocks of
    1 MiB one way, child -> parent, duplex (socketpair) and simplex (os.pipe), MB/s."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    n = cfg["n"]
    for raw, label in ((False, "int"), (True, "8B")):
        def rep(raw=raw):
            a, b = ctx.Pipe(duplex=True)
            ready = ctx.Event()
            p = ctx.Process(target=pipe_echo, args=(b, n + PIPE_WARM, raw, ready))
            _start_wait([p], [ready])
            b.close()
            if raw:
                msg = b"12345678"
                sb, rb = a.send_bytes, a.recv_bytes
                for _ in range(PIPE_WARM):
                    sb(msg)
                    rb()
                t0 = time.perf_counter()
                for _ in range(n):
                    sb(msg)
                    rb()
            else:
                snd, rcv = a.send, a.recv
                for i in range(PIPE_WARM):
                    snd(i)
                    rcv()
                t0 = time.perf_counter()
                for i in range(n):
                    snd(i)
                    rcv()
            us = (time.perf_counter() - t0) / n * 1e6
            _join_all([p])
            a.close()
            return us
        _emit(f"cpython_fork_pipe_pingpong_{label}", "us", _repeat(cfg["reps"], rep), roundtrips=n)
    nb, size = cfg["n2"], 1 << 20
    for duplex in (True, False):
        def rep(duplex=duplex):
            rx, tx = ctx.Pipe(duplex=duplex)
            ready, go = ctx.Event(), ctx.Event()
            p = ctx.Process(target=pipe_blaster, args=(tx, nb, size, ready, go))
            _start_wait([p], [ready])
            tx.close()
            rb = rx.recv_bytes
            t0 = time.perf_counter()
            go.set()
            got = 0
            for _ in range(nb):
                got += len(rb())
            secs = time.perf_counter() - t0
            if got != nb * size:
                raise SystemExit(f"pipe: got {got} bytes, expected {nb * size}")
            _join_all([p])
            rx.close()
            return got / secs / 1e6
        _emit(f"cpython_fork_pipe_{'duplex' if duplex else 'simplex'}_1MiB", "MB/s", _repeat(cfg["reps"], rep),
              blocks=nb, transport="socketpair" if duplex else "os.pipe")


# ---------------------------------------------------------------------------------------------
# Pool (bench/pool.bench.ts): Pool(2) with the research script's tasks.
# ---------------------------------------------------------------------------------------------

def pool_square(x):
    return x * x


def pool_burn(iters):
    """A pure-Python loop, calibrated by _calibrate_burn to about --cpu-ms ms."""
    acc = 0
    for i in range(iters):
        acc = (acc + i * i) % 1000003
    return acc


def _calibrate_burn(ms):
    iters = 10000
    while True:
        t0 = time.perf_counter()
        pool_burn(iters)
        took = (time.perf_counter() - t0) * 1e3
        if took > 50:
            return max(1, int(iters * ms / took))
        iters *= 2


def _mem_mb(pid):
    """(RSS, private) megabytes of a process: private pages are those no other process maps."""
    kb = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    kb[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        return float("nan"), float("nan")
    return kb["Rss"] / 1024, (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024


def _pool(cfg):
    """Pool(2), fork context unless named: tasks/s of map(square, range(n)) with the default
    chunksize and with chunksize=1; us per apply_async(square).get() round trip (--n2 of them);
    the speed-up of --n3 tasks of ~20 ms pure-Python loops (serial in this process / map on a warm
    pool, paired per repetition); Pool(2) creation to the first apply() result, per start method;
    RSS and private memory of a worker process after a few tasks, per start method."""
    import multiprocessing as mp
    n, m, reps = cfg["n"], cfg["n2"] or 2000, cfg["reps"]
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as p:
        p.map(pool_square, range(1000))
        # The default chunksize makes 8 chunks: 100 000 tasks at least, as the research script.
        for chunksize, label, n in ((None, "default_chunksize", max(n, 100000)), (1, "chunksize1", n)):
            def rep(chunksize=chunksize, n=n):
                t0 = time.perf_counter()
                out = p.map(pool_square, range(n), chunksize)
                took = time.perf_counter() - t0
                if len(out) != n:
                    raise SystemExit("short map")
                return n / took
            _emit(f"cpython_fork_pool2_map_square_{label}", "tasks/s", _repeat(reps, rep), tasks=n)

        def rtt():
            for i in range(50):
                p.apply_async(pool_square, (i,)).get()
            t0 = time.perf_counter()
            for i in range(m):
                p.apply_async(pool_square, (i,)).get()
            return (time.perf_counter() - t0) * 1e6 / m
        _emit("cpython_fork_pool2_apply_async_get_roundtrip", "us", _repeat(reps, rtt), tasks=m)

        tasks = cfg.get("n3") or 40
        iters = _calibrate_burn(20)
        p.map(pool_burn, [iters] * 2)

        def speedup():
            t0 = time.perf_counter()
            for _ in range(tasks):
                pool_burn(iters)
            serial = time.perf_counter() - t0
            t0 = time.perf_counter()
            p.map(pool_burn, [iters] * tasks)
            return serial / (time.perf_counter() - t0)
        _emit("cpython_fork_pool2_cpu_speedup", "x", _repeat(min(reps, 3), speedup), tasks=tasks, iters=iters)

    for method in cfg["methods"]:
        mctx = mp.get_context(method)
        mem = []

        def start(mctx=mctx, mem=mem):
            t0 = time.perf_counter()
            pool = mctx.Pool(2)
            pool.apply(pool_square, (3,))
            took = (time.perf_counter() - t0) * 1e3
            pool.map(pool_square, range(100), 1)
            mem.extend(_mem_mb(w.pid) for w in pool._pool)
            pool.terminate()
            pool.join()
            return took
        start()
        mem.clear()
        _emit(f"cpython_{method}_pool2_start_first_result", "ms", _repeat(reps, start), method=method)
        for i, kind in enumerate(("rss", "private")):
            vals = [m[i] for m in mem]
            _emit(f"cpython_{method}_pool_worker_{kind}", "MB", (vals, [None] * len(vals), None), method=method)


# ---------------------------------------------------------------------------------------------
# Managers (bench/managers.bench.ts): the research script's manager figures, fork context.
# ---------------------------------------------------------------------------------------------

def mgr_incr(d, lock, n, ready, go, ts, idx):
    """2 processes increment a manager dict entry under a manager Lock (4 round trips per incr)."""
    ready.set()
    go.wait()
    t0 = mono_us()
    for _ in range(n):
        with lock:
            d["k"] = d["k"] + 1
    ts[2 * idx] = t0
    ts[2 * idx + 1] = mono_us()


def _manager(cfg):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    reps = cfg["reps"]
    shutdowns = []

    def start_shutdown():
        t0 = time.perf_counter()
        m = ctx.Manager()
        t1 = time.perf_counter()
        m.shutdown()
        shutdowns.append((time.perf_counter() - t1) * 1e3)
        return (t1 - t0) * 1e3

    start_shutdown()    # warm-up
    shutdowns.clear()
    samples, foreign, foreign_all = _repeat(reps, start_shutdown)
    _emit("cpython_fork_manager_start", "ms", (samples, foreign, foreign_all))
    _emit("cpython_fork_manager_shutdown", "ms", (shutdowns, foreign, foreign_all))

    n = cfg["n"]
    with ctx.Manager() as m:
        d = m.dict()

        def set_get(k=n):
            t0 = time.perf_counter()
            for i in range(k):
                d["k"] = i
                d["k"]
            return 2 * k / (time.perf_counter() - t0)
        set_get(min(n, 500))    # warm-up
        _emit("cpython_fork_manager_dict_set_get", "ops/s", _repeat(reps, set_get), pairs=n,
              note="each d[k]=v and each d[k] is one proxy round trip (op)")

        m2 = cfg["n2"] or 1000

        def incr(k=m2):
            d = m.dict({"k": 0})
            lock = m.Lock()
            ts = ctx.RawArray("d", 4)
            go = ctx.Event()
            readys = [ctx.Event() for _ in range(2)]
            ps = [ctx.Process(target=mgr_incr, args=(d, lock, k, readys[i], go, ts, i)) for i in range(2)]
            for p in ps:
                p.start()
            for r in readys:
                if not r.wait(60):
                    raise SystemExit("a child did not become ready")
            go.set()
            _join_all(ps)
            if d["k"] != 2 * k:
                raise SystemExit(f"manager incr: final count {d['k']}, expected {2 * k}")
            return 2 * k / ((max(ts[1], ts[3]) - min(ts[0], ts[2])) / 1e6)
        incr(min(m2, 100))  # warm-up
        _emit("cpython_fork_manager_lock_incr_2proc", "incr/s", _repeat(reps, incr), per_process=m2,
              pattern="with mlock: d['k'] = d['k'] + 1  (4 round trips per incr)")


SYNC_GROUPS = {
    "pool": _pool,
    "lock_uncontended": _lock_uncontended,
    "lock_contended": _lock_contended,
    "wake": _wake,
    "shm_attach": _shm_attach,
    "queue": _queue,
    "jqueue": _jqueue,
    "pipe": _pipe,
    "manager": _manager,
}


def driver():
    import multiprocessing as mp
    cfg = json.loads(sys.argv[1])
    if cfg["group"] in SYNC_GROUPS:
        SYNC_GROUPS[cfg["group"]](cfg)
        return
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
    ap.add_argument("group", choices=sorted(GROUPS) + sorted(SYNC_GROUPS))
    ap.add_argument("--n", type=int, default=20,
                    help="processes per repetition (start groups); pairs, increments per process, "
                         "rounds or MB (the others)")
    ap.add_argument("--n2", type=int, default=0,
                    help="second size: 64 KiB items (queue), put+join round trips (jqueue), "
                         "1 MiB blocks (pipe)")
    ap.add_argument("--n3", type=int, default=0, help="third size: CPU-bound tasks (pool)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--methods", default="spawn,forkserver,fork")
    args = ap.parse_args()
    cfg = {"group": args.group, "n": args.n, "n2": args.n2, "n3": args.n3, "reps": args.reps, "warmup": args.warmup,
           "methods": args.methods.split(",")}
    main_program = f"import sys; sys.path.insert(0, {HERE!r}); import cpython; cpython.driver()"
    argv = [sys.executable] + (["-S"] if sys.flags.no_site else []) + ["-c", main_program, json.dumps(cfg)]
    sys.exit(subprocess.run(argv).returncode)


if __name__ == "__main__":
    main()
