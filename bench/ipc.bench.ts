// Queue and pipe figures: small and 64 KiB items from a producer process to a consumer process,
// JoinableQueue put/taskDone/join, Pipe ping-pong latency and 1 MiB blocks one way, on the spawn
// and thread backends. Each is compared with CPython's multiprocessing doing the same
// (bench/anchors/cpython.py, groups queue, jqueue, pipe: the research script's method, fork
// context).
//
// This file is both the figure definitions (imported by run.ts) and, run as a script, the driver
// (a fresh node process per measurement). Its exported functions are the targets of the
// processes and threads the driver starts: children import this module (its main block is
// guarded) and take them.
import {
  type BenchContext,
  type BenchDef,
  type Measurement,
  type Row,
  type Stats,
  compare,
  driverMain,
  nowMs,
  repeat,
  runCPython,
  runDriver,
  settled,
  summarize,
} from './harness.js';
import { joinAll, killingOnFailure, mp, processClass, startWait, type Method } from './library.js';

type Connection = import('../src/index.js').Connection;
type Event = import('../src/index.js').Event;
type Queue<T> = import('../src/index.js').Queue<T>;
type JoinableQueue<T> = import('../src/index.js').JoinableQueue<T>;
type RawArray<C extends import('../src/index.js').Typecode> = import('../src/index.js').RawArray<C>;

/** CLOCK_MONOTONIC in µs: one clock for every process and thread of the machine (see synchronize.bench.ts). */
function monoUs(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

// ---------------------------------------------------------------------------------------------
// Targets: run in the children (spawn processes or worker threads).
// ---------------------------------------------------------------------------------------------

/**
 * Say ready, wait for go, put n items (the ints 0..n-1, or one `size`-byte Uint8Array n times)
 * and a null; stamps ts[0] = start, ts[1] = when the last put() resolved. The process (thread)
 * then ends, which waits for its feeder to have written everything, as Python's does.
 */
export async function qProducer(q: Queue<unknown>, n: number, size: number, ready: Event, go: Event, ts: RawArray<'d'>): Promise<void> {
  const payload = size > 0 ? new Uint8Array(size).fill(120) : null;
  ready.set();
  await go.wait();
  const t0 = monoUs();
  if (payload === null) for (let i = 0; i < n; i++) await q.put(i);
  else for (let i = 0; i < n; i++) await q.put(payload);
  await q.put(null);
  ts.buf[0] = t0;
  ts.buf[1] = monoUs();
}

/** Say ready, get until null; stamps ts[2] = end, ts[3] = items got. */
export async function qConsumer(q: Queue<unknown>, ready: Event, ts: RawArray<'d'>): Promise<void> {
  ready.set();
  let cnt = 0;
  while ((await q.get()) !== null) cnt++;
  ts.buf[2] = monoUs();
  ts.buf[3] = cnt;
}

/** JoinableQueue consumer: get + taskDone until null (as CPython's jq_consumer). */
export async function jqConsumer(q: JoinableQueue<unknown>, ready: Event): Promise<void> {
  ready.set();
  for (;;) {
    const x = await q.get();
    q.taskDone();
    if (x === null) break;
  }
}

/** Echo n messages back (objects, or bytes when `raw`), then close. */
export async function pipeEcho(conn: Connection, n: number, raw: boolean, ready: Event): Promise<void> {
  ready.set();
  if (raw) for (let i = 0; i < n; i++) await conn.sendBytes(await conn.recvBytes());
  else for (let i = 0; i < n; i++) await conn.send(await conn.recv());
  conn.close();
}

/** Say ready, wait for go, send `blocks` messages of `size` bytes, close. */
export async function pipeBlaster(conn: Connection, blocks: number, size: number, ready: Event, go: Event): Promise<void> {
  const buf = new Uint8Array(size);
  ready.set();
  await go.wait();
  for (let i = 0; i < blocks; i++) await conn.sendBytes(buf);
  conn.close();
}

// ---------------------------------------------------------------------------------------------
// Driver side: runs in the fresh node process.
// ---------------------------------------------------------------------------------------------

type DriverParams =
  | { kind: 'queue'; method: Method; size: number; n: number; reps: number }
  | { kind: 'jqueue'; method: Method; mode: 'throughput' | 'roundtrip'; n: number; reps: number }
  | { kind: 'pingpong'; method: Method; raw: boolean; n: number; reps: number; warm: number }
  | { kind: 'oneway'; method: Method; blocks: number; reps: number };

/** Producer child → consumer child, first put to last get: msgs/s (ints) or MB/s (size > 0). */
async function measureQueue(p: Extract<DriverParams, { kind: 'queue' }>): Promise<Measurement> {
  const { Event, Queue, RawArray } = mp();
  const P = processClass(p.method);
  const once = async (n: number): Promise<number> => {
    const q = new Queue<unknown>();
    const ts = new RawArray('d', 4);
    const r1 = new Event();
    const r2 = new Event();
    const go = new Event();
    const prod = new P({ target: qProducer, args: [q, n, p.size, r1, go, ts] });
    const cons = new P({ target: qConsumer, args: [q, r2, ts] });
    await startWait([cons, prod], [r1, r2]);
    go.set();
    await joinAll([prod, cons]);
    if (ts.buf[3] !== n) throw new Error(`the consumer got ${ts.buf[3]} items, expected ${n}`);
    const secs = (ts.buf[2]! - ts.buf[0]!) / 1e6;
    return p.size > 0 ? (n * p.size) / secs / 1e6 : n / secs;
  };
  return repeat(
    p.reps,
    () => once(p.n),
    () => once(Math.min(p.n, 2_000)),
  );
}

/**
 * JoinableQueue, this process puts, a child gets and calls taskDone(). throughput: n puts, then
 * join(), items/s from the first put to join() resolving. roundtrip: n × (put one; join()), µs
 * per item. A fresh queue and child per repetition, as CPython's.
 */
async function measureJQueue(p: Extract<DriverParams, { kind: 'jqueue' }>): Promise<Measurement> {
  const { Event, JoinableQueue } = mp();
  const P = processClass(p.method);
  const session = async (fn: (q: JoinableQueue<unknown>) => Promise<number>): Promise<number> => {
    const q = new JoinableQueue<unknown>();
    const ready = new Event();
    const c = new P({ target: jqConsumer, args: [q, ready] });
    await startWait([c], [ready]);
    try {
      return await fn(q);
    } finally {
      await q.put(null);
      await q.join();
      await joinAll([c]);
    }
  };
  const throughput = async (q: JoinableQueue<unknown>, n = p.n): Promise<number> => {
    const t0 = nowMs();
    for (let i = 0; i < n; i++) await q.put(i);
    await q.join();
    return n / ((nowMs() - t0) / 1e3);
  };
  const roundtrip = async (q: JoinableQueue<unknown>): Promise<number> => {
    for (let i = 0; i < Math.min(50, p.n); i++) {
      await q.put(i);
      await q.join();
    }
    const t0 = nowMs();
    for (let i = 0; i < p.n; i++) {
      await q.put(i);
      await q.join();
    }
    return ((nowMs() - t0) * 1e3) / p.n;
  };
  return repeat(
    p.reps,
    () => session(p.mode === 'throughput' ? throughput : roundtrip),
    () => session((q) => throughput(q, Math.min(p.n, 2_000))),
  );
}

// Untimed round trips before the timed ones on each fresh child: V8 compiles the path on
// background threads, which on 2 cores compete with both ends for ~3 000 round trips (each
// then costs 50-200 µs); the warm rows are taken after that, the cold rows are the first 2 000.
const PIPE_WARM = 5_000;
const PIPE_COLD = 2_000;

/**
 * µs per round trip with an echoing child: `send(i)`/`recv()`, or 8 bytes with
 * sendBytes/recvBytes; the first `p.warm` round trips with each fresh child are not timed.
 */
async function measurePingPong(p: Extract<DriverParams, { kind: 'pingpong' }>): Promise<Measurement> {
  const { Event, Pipe } = mp();
  const P = processClass(p.method);
  const once = async (n: number): Promise<number> => {
    const [a, b] = Pipe(true);
    const ready = new Event();
    const child = new P({ target: pipeEcho, args: [b, n + p.warm, p.raw, ready] });
    await startWait([child], [ready]);
    b.close();
    let t0 = nowMs();
    if (p.raw) {
      const msg = Buffer.from('12345678');
      for (let i = 0; i < n + p.warm; i++) {
        if (i === p.warm) t0 = nowMs();
        await a.sendBytes(msg);
        await a.recvBytes();
      }
    } else {
      for (let i = 0; i < n + p.warm; i++) {
        if (i === p.warm) t0 = nowMs();
        await a.send(i);
        await a.recv();
      }
    }
    const us = ((nowMs() - t0) * 1e3) / n;
    await joinAll([child]);
    a.close();
    return us;
  };
  // The cold rows take no warm-up: their first repetition is of a fresh driver and child.
  return repeat(p.reps, () => once(p.n), p.warm > 0 ? () => once(Math.min(p.n, 500)) : undefined);
}

/** MB/s of `blocks` 1 MiB messages from a child to this process over a duplex Pipe (go to last recv). */
async function measureOneWay(p: Extract<DriverParams, { kind: 'oneway' }>): Promise<Measurement> {
  const { Event, Pipe } = mp();
  const P = processClass(p.method);
  const size = 1 << 20;
  const once = async (blocks: number): Promise<number> => {
    const [rx, tx] = Pipe(true);
    const ready = new Event();
    const go = new Event();
    const child = new P({ target: pipeBlaster, args: [tx, blocks, size, ready, go] });
    await startWait([child], [ready]);
    tx.close();
    const t0 = nowMs();
    go.set();
    let got = 0;
    for (let i = 0; i < blocks; i++) got += (await rx.recvBytes()).length;
    const secs = (nowMs() - t0) / 1e3;
    if (got !== blocks * size) throw new Error(`got ${got} bytes, expected ${blocks * size}`);
    await joinAll([child]);
    rx.close();
    return got / secs / 1e6;
  };
  return repeat(
    p.reps,
    () => once(p.blocks),
    () => once(Math.min(p.blocks, 64)),
  );
}

function measure(p: DriverParams): Promise<Measurement> {
  return killingOnFailure(() => measureKind(p));
}

function measureKind(p: DriverParams): Promise<Measurement> {
  switch (p.kind) {
    case 'queue':
      return measureQueue(p);
    case 'jqueue':
      return measureJQueue(p);
    case 'pingpong':
      return measurePingPong(p);
    case 'oneway':
      return measureOneWay(p);
  }
}

// ---------------------------------------------------------------------------------------------
// Orchestrator side: the figures.
// ---------------------------------------------------------------------------------------------

function sizes(quick: boolean) {
  return quick
    ? { small: 50_000, big: 5_000, jq: 20_000, jqSync: 500, roundtrips: 2_000, blocks: 256, reps: 3 }
    : { small: 200_000, big: 20_000, jq: 50_000, jqSync: 2_000, roundtrips: 10_000, blocks: 1_024, reps: 5 };
}

/** The ring's spin before parking (µs): the library's default, and the extra ping-pong rows. */
const DEFAULT_SPIN_US = 20;
const EXTRA_SPINS_US = [0, 50];

function ours(ctx: BenchContext, label: string, params: DriverParams, spinUs?: number): Promise<Stats> {
  return ctx.once(`ipc:${JSON.stringify(params)}:${spinUs ?? ''}`, async () => {
    await ctx.settle();
    ctx.log(`  ${label}`);
    const env = spinUs === undefined ? process.env : { ...process.env, MULTIPROC_SPIN_US: String(spinUs) };
    return summarize(await runDriver(__filename, params, env));
  });
}

function cpython(ctx: BenchContext, group: string, args: string[]): Promise<Map<string, Stats>> {
  return ctx.once(`cpython:${group}`, async () => {
    await ctx.settle();
    ctx.log(`  cpython ${group}`);
    return runCPython(group, args);
  });
}

function anchorOf(py: Map<string, Stats> | Error, key: string): Stats | Error {
  return py instanceof Error ? py : (py.get(key) ?? new Error(`cpython.py printed no ${key}`));
}

interface Figure {
  name: string;
  unit: string;
  better: 'lower' | 'higher';
  params(quick: boolean): DriverParams;
  cpython: { group: string; args(quick: boolean): string[]; keys: string[] };
  /** An absolute goal for our value from the issue, reported in the notes. */
  goal?: { value: number; text: string };
  /** A goal on the ratio to the first CPython anchor (4: four times CPython's rate). */
  ratioGoal?: number;
  /** MULTIPROC_SPIN_US for the driver (and its children); unset: the library's default. */
  spinUs?: number;
  note?: string;
}

const queueArgs = (q: boolean) => ['--n', String(sizes(q).small), '--n2', String(sizes(q).big), '--reps', String(sizes(q).reps)];
const jqueueArgs = (q: boolean) => ['--n', String(sizes(q).jq), '--n2', String(sizes(q).jqSync), '--reps', String(sizes(q).reps)];
const pipeArgs = (q: boolean) => ['--n', String(sizes(q).roundtrips), '--n2', String(sizes(q).blocks), '--reps', String(sizes(q).reps)];

const METHODS: Method[] = ['spawn', 'thread'];

const FIGURES: Figure[] = [
  ...METHODS.map((method): Figure => ({
    name: `queue_small_items_1to1_${method}`,
    unit: 'msgs/s',
    better: 'higher',
    params: (q) => ({ kind: 'queue', method, size: 0, n: sizes(q).small, reps: sizes(q).reps }),
    cpython: { group: 'queue', args: queueArgs, keys: ['cpython_fork_queue_int'] },
    goal: { value: 500_000, text: '>= 500 k/s' },
    ratioGoal: 4,
  })),
  ...METHODS.map((method): Figure => ({
    name: `queue_64KiB_items_${method}`,
    unit: 'MB/s',
    better: 'higher',
    params: (q) => ({ kind: 'queue', method, size: 64 * 1024, n: sizes(q).big, reps: sizes(q).reps }),
    cpython: { group: 'queue', args: queueArgs, keys: ['cpython_fork_queue_64KiB'] },
    goal: { value: 4_000, text: '>= 4 GB/s' },
  })),
  ...METHODS.map((method): Figure => ({
    name: `joinable_queue_put_taskdone_join_${method}`,
    unit: 'items/s',
    better: 'higher',
    params: (q) => ({ kind: 'jqueue', method, mode: 'throughput', n: sizes(q).jq, reps: sizes(q).reps }),
    cpython: { group: 'jqueue', args: jqueueArgs, keys: ['cpython_fork_jqueue_put_taskdone_join'] },
  })),
  ...METHODS.map((method): Figure => ({
    name: `joinable_queue_put_join_roundtrip_us_${method}`,
    unit: 'us',
    better: 'lower',
    params: (q) => ({ kind: 'jqueue', method, mode: 'roundtrip', n: sizes(q).jqSync, reps: sizes(q).reps }),
    cpython: { group: 'jqueue', args: jqueueArgs, keys: ['cpython_fork_jqueue_put_join_roundtrip'] },
  })),
  ...METHODS.flatMap((method): Figure[] =>
    ([undefined, ...EXTRA_SPINS_US] as (number | undefined)[]).flatMap((spinUs) =>
      (['int', '8B'] as const).map((what): Figure => ({
        name: `pipe_pingpong_us_${what}_${method}${spinUs === undefined ? '' : `[spin=${spinUs}us]`}`,
        unit: 'us',
        better: 'lower',
        params: (q) => ({ kind: 'pingpong', method, raw: what === '8B', n: sizes(q).roundtrips, reps: sizes(q).reps, warm: PIPE_WARM }),
        cpython: { group: 'pipe', args: pipeArgs, keys: [`cpython_fork_pipe_pingpong_${what}`] },
        goal: { value: 12, text: '<= 12 us' },
        ...(spinUs === undefined ? {} : { spinUs, note: `MULTIPROC_SPIN_US=${spinUs} (default ${DEFAULT_SPIN_US})` }),
      })),
    ),
  ),
  ...METHODS.map((method): Figure => ({
    name: `pipe_pingpong_us_int_cold_${method}`,
    unit: 'us',
    better: 'lower',
    params: (q) => ({ kind: 'pingpong', method, raw: false, n: PIPE_COLD, reps: sizes(q).reps, warm: 0 }),
    cpython: { group: 'pipe', args: pipeArgs, keys: ['cpython_fork_pipe_pingpong_int'] },
    note: `a fresh child's first ${PIPE_COLD} round trips (the warm rows: after ${PIPE_WARM} untimed ones)`,
  })),
  ...METHODS.map((method): Figure => ({
    name: `pipe_1MiB_oneway_${method}`,
    unit: 'MB/s',
    better: 'higher',
    params: (q) => ({ kind: 'oneway', method, blocks: sizes(q).blocks, reps: sizes(q).reps }),
    cpython: { group: 'pipe', args: pipeArgs, keys: ['cpython_fork_pipe_duplex_1MiB', 'cpython_fork_pipe_simplex_1MiB'] },
  })),
];

function define(f: Figure): BenchDef {
  return {
    name: f.name,
    async run(ctx) {
      // The extra spin rows only in full mode: --quick keeps to about a minute.
      if (f.spinUs !== undefined && ctx.quick) return [];
      const stats = await ours(ctx, f.name, f.params(ctx.quick), f.spinUs);
      const py = await settled(cpython(ctx, f.cpython.group, f.cpython.args(ctx.quick)));
      const notes: string[] = [];
      if (f.goal) {
        const met = f.better === 'higher' ? stats.value >= f.goal.value : stats.value <= f.goal.value;
        notes.push(`goal ${f.goal.text}: ${met ? 'met' : 'MISSED'}`);
      }
      if (f.note) notes.push(f.note);
      const extra = notes.length ? { note: notes.join('; ') } : {};
      return f.cpython.keys.map((key, i): Row =>
        compare(
          f.name,
          f.unit,
          f.better,
          stats,
          key,
          anchorOf(py, key),
          i === 0 && f.ratioGoal !== undefined ? { ...extra, goal: f.ratioGoal } : extra,
        ),
      );
    },
  };
}

export const benches: BenchDef[] = FIGURES.map(define);

if (require.main === module) driverMain<DriverParams>(measure);
