// Manager figures: start and shutdown of a SyncManager, dict set+get round trips, and 2
// processes incrementing a manager dict entry under a manager Lock. Each is compared with
// CPython's multiprocessing doing the same (bench/anchors/cpython.py, group manager: the
// research script's method, fork context).
//
// This file is both the figure definitions (imported by run.ts) and, run as a script, the driver
// (a fresh node process per measurement). Its exported functions are the targets of the children
// the driver starts: children import this module (its main block is guarded) and take them.
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
import { mp, type Method } from './library.js';

type Event = import('../src/index.js').Event;
type RawArray<C extends import('../src/index.js').Typecode> = import('../src/index.js').RawArray<C>;
type DictProxy<K extends string | number, V> = import('../src/index.js').DictProxy<K, V>;
type AcquirerProxy = import('../src/index.js').AcquirerProxy;

/** CLOCK_MONOTONIC in µs: one clock for every process and thread of the machine. */
function monoUs(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

// ---------------------------------------------------------------------------------------------
// Targets: run in the children (spawn processes or worker threads).
// ---------------------------------------------------------------------------------------------

async function incrLoop(d: DictProxy<string, number>, lock: AcquirerProxy, key: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await lock.acquire();
    try {
      await d.set(key, ((await d.get(key)) ?? 0) + 1);
    } finally {
      await lock.release();
    }
  }
}

/**
 * `warm` untimed increments of another key (a fresh child runs unoptimized code at first), say
 * ready, wait for go, then n × `with lock: d.k = d.k + 1` (3 round trips and an unanswered release each); stamps ts.
 */
export async function mgrIncr(
  d: DictProxy<string, number>,
  lock: AcquirerProxy,
  n: number,
  warm: number,
  ready: Event,
  go: Event,
  ts: RawArray<'d'>,
  idx: number,
): Promise<void> {
  await incrLoop(d, lock, `warm${idx}`, warm);
  ready.set();
  await go.wait();
  const t0 = monoUs();
  await incrLoop(d, lock, 'k', n);
  ts.buf[2 * idx] = t0;
  ts.buf[2 * idx + 1] = monoUs();
}

// ---------------------------------------------------------------------------------------------
// Driver side: runs in the fresh node process.
// ---------------------------------------------------------------------------------------------

// Untimed warm-up: calls a fresh process (or child) makes before the timed ones, so that the
// figures are of optimized code, as CPython's interpreter is from the start.
const WARM_PAIRS = 5_000;
// A child's first 1 000 locked increments (3 000 calls) run 2-4× slower than later ones.
const WARM_INCR = 3_000;
const COLD_INCR = 700;

type DriverParams =
  | { kind: 'lifecycle'; what: 'start' | 'shutdown'; method: Method; reps: number; ready?: boolean }
  | { kind: 'dict'; method: Method; n: number; reps: number; inflight?: number }
  | { kind: 'incr'; method: Method; n: number; reps: number; cold?: boolean };

function ctxOf(method: Method) {
  return mp().getContext(method);
}

/**
 * ms of `await new SyncManager({ ctx }).start()` or of `await m.shutdown()` (server on `method`);
 * with `ready`, each start waits (untimed) until the forkserver's standing children are booted.
 */
async function measureLifecycle(p: Extract<DriverParams, { kind: 'lifecycle' }>): Promise<Measurement> {
  const { SyncManager } = mp();
  const ctx = ctxOf(p.method);
  type Forkserver = typeof import('../src/popen/forkserver.js');
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- an internal of the library, loaded in the driver only
  const standingIdle = p.ready ? (require('../src/popen/forkserver.js') as Forkserver).standingIdle : undefined;
  const once = async (): Promise<number> => {
    await standingIdle?.();
    const t0 = nowMs();
    const m = await new SyncManager({ ctx }).start();
    const t1 = nowMs();
    await m.shutdown();
    const t2 = nowMs();
    return p.what === 'start' ? t1 - t0 : t2 - t1;
  };
  return repeat(p.reps, once, once);
}

/**
 * ops/s of `await d.set('k', i); await d.get('k')` (each one round trip) against a server on
 * `method`; with `inflight` k > 1, k sets then k gets at a time (`Promise.all`).
 */
async function measureDict(p: Extract<DriverParams, { kind: 'dict' }>): Promise<Measurement> {
  const { SyncManager } = mp();
  const m = await new SyncManager({ ctx: ctxOf(p.method) }).start();
  try {
    const d = await m.dict<string, number>();
    const k = p.inflight ?? 1;
    const keys = [...Array(k).keys()].map((j) => `k${j}`);
    const once = async (n: number): Promise<number> => {
      const t0 = nowMs();
      if (k === 1) {
        for (let i = 0; i < n; i++) {
          await d.set('k', i);
          await d.get('k');
        }
      } else {
        // k calls in flight at a time, as Promise.all over k keys.
        for (let i = 0; i < n; i += k) {
          await Promise.all(keys.map((key) => d.set(key, i)));
          await Promise.all(keys.map((key) => d.get(key)));
        }
      }
      return (2 * n) / ((nowMs() - t0) / 1e3);
    };
    return await repeat(
      p.reps,
      () => once(p.n),
      () => once(WARM_PAIRS),
    );
  } finally {
    await m.shutdown();
  }
}

/** incr/s: 2 children (processes / worker threads) × n locked increments of a manager dict entry. */
async function measureIncr(p: Extract<DriverParams, { kind: 'incr' }>): Promise<Measurement> {
  const { Event, Manager, RawArray } = mp();
  const P = ctxOf(p.method).Process;
  const m = await Manager();
  try {
    const once = async (n: number): Promise<number> => {
      const d = await m.dict<string, number>({ k: 0 });
      const lock = await m.Lock();
      const ts = new RawArray('d', 4);
      const go = new Event();
      const readys = [new Event(), new Event()];
      const ps = [0, 1].map((i) => new P({ target: mgrIncr, args: [d, lock, n, p.cold ? 0 : WARM_INCR, readys[i]!, go, ts, i] }));
      for (const c of ps) c.start();
      try {
        for (const r of readys) if (!(await r.wait(60_000))) throw new Error('a child did not become ready');
        go.set();
        for (const c of ps) {
          await c.join();
          if (c.exitcode !== 0) throw new Error(`${c.name} exited with ${c.exitcode}`);
        }
      } finally {
        for (const c of ps) if (c.isAlive()) c.kill();
      }
      const got = await d.get('k');
      if (got !== 2 * n) throw new Error(`final count ${got}, expected ${2 * n}`);
      const b = ts.buf;
      return (2 * n) / ((Math.max(b[1]!, b[3]!) - Math.min(b[0]!, b[2]!)) / 1e6);
    };
    return await repeat(
      p.reps,
      () => once(p.n),
      () => once(Math.min(p.n, 100)),
    );
  } finally {
    await m.shutdown();
  }
}

function measure(p: DriverParams): Promise<Measurement> {
  switch (p.kind) {
    case 'lifecycle':
      return measureLifecycle(p);
    case 'dict':
      return measureDict(p);
    case 'incr':
      return measureIncr(p);
  }
}

// ---------------------------------------------------------------------------------------------
// Orchestrator side: the figure definitions run.ts imports.
// ---------------------------------------------------------------------------------------------

function sizes(quick: boolean) {
  return quick ? { pairs: 2_000, incr: 1_000, reps: 3 } : { pairs: 5_000, incr: 3_000, reps: 5 };
}

function ours(ctx: BenchContext, label: string, params: DriverParams): Promise<Stats> {
  return ctx.once(`managers:${JSON.stringify(params)}`, async () => {
    await ctx.settle();
    ctx.log(`  ${label}`);
    return summarize(await runDriver(__filename, params));
  });
}

function cpython(ctx: BenchContext, quick: boolean): Promise<Map<string, Stats>> {
  return ctx.once('cpython:manager', async () => {
    await ctx.settle();
    ctx.log('  cpython manager');
    const s = sizes(quick);
    return runCPython('manager', ['--n', String(s.pairs), '--n2', String(s.incr), '--reps', String(s.reps)]);
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
  anchor: string;
  goal?: { value: number; text: string };
  /** A goal on the ratio to the anchor (e.g. 0.5: at most twice the anchor's time). */
  ratioGoal?: number;
  note?: string;
}

const METHODS: Method[] = ['spawn', 'thread'];

const FIGURES: Figure[] = [
  ...(['spawn', 'thread', 'forkserver'] as const).flatMap((method): Figure[] =>
    (['start', 'shutdown'] as const).map((what) => ({
      name: `manager_${what}_ms_${method}`,
      unit: 'ms',
      better: 'lower',
      params: (q) => ({ kind: 'lifecycle', what, method, reps: sizes(q).reps }),
      anchor: `cpython_fork_manager_${what}`,
      ...(what === 'start' ? { ratioGoal: 0.5 } : {}),
      note: `server on the ${method} backend${method === 'forkserver' ? ' (back to back: each start usually finds its replacement still booting)' : ''}`,
    })),
  ),
  {
    name: 'manager_start_ms_forkserver_ready',
    unit: 'ms',
    better: 'lower',
    params: (q) => ({ kind: 'lifecycle', what: 'start', method: 'forkserver', reps: sizes(q).reps, ready: true }),
    anchor: 'cpython_fork_manager_start',
    ratioGoal: 0.5,
    note: 'server on the forkserver; each start finds a standing child booted and idle (the wait for it not timed)',
  },
  ...METHODS.map((method): Figure => ({
    name: `manager_dict_set_get_${method}`,
    unit: 'ops/s',
    better: 'higher',
    params: (q) => ({ kind: 'dict', method, n: sizes(q).pairs, reps: sizes(q).reps }),
    anchor: 'cpython_fork_manager_dict_set_get',
    goal: { value: 50_000, text: '>= 50 k ops/s' },
    ratioGoal: 2,
    note: `server on the ${method} backend`,
  })),
  {
    name: 'manager_dict_set_get_50_inflight_spawn',
    unit: 'ops/s',
    better: 'higher',
    params: (q) => ({ kind: 'dict', method: 'spawn', n: 10 * sizes(q).pairs, reps: sizes(q).reps, inflight: 50 }),
    anchor: 'cpython_fork_manager_dict_set_get',
    note: '50 calls in flight (Promise.all): one frame each way per 50; CPython proxies block, one call at a time',
  },
  ...METHODS.map((method): Figure => ({
    name: `manager_lock_incr_2proc_${method}`,
    unit: 'incr/s',
    better: 'higher',
    params: (q) => ({ kind: 'incr', method, n: sizes(q).incr, reps: sizes(q).reps }),
    anchor: 'cpython_fork_manager_lock_incr_2proc',
    ratioGoal: 2,
    note: `children on the ${method} backend, after ${WARM_INCR} untimed incrs each; acquire and release in shared memory, 2 round trips per incr (CPython: 4)`,
  })),
  {
    name: 'manager_lock_incr_2proc_cold_spawn',
    unit: 'incr/s',
    better: 'higher',
    params: (q) => ({ kind: 'incr', method: 'spawn', n: COLD_INCR, reps: sizes(q).reps, cold: true }),
    anchor: 'cpython_fork_manager_lock_incr_2proc',
    note: `fresh children, their first ${COLD_INCR} incrs each (no warm-up; ~${3 * COLD_INCR} calls)`,
  },
];

function define(f: Figure): BenchDef {
  return {
    name: f.name,
    async run(ctx) {
      const stats = await ours(ctx, f.name, f.params(ctx.quick));
      const py = await settled(cpython(ctx, ctx.quick));
      const notes: string[] = [];
      if (f.goal) {
        const met = f.better === 'higher' ? stats.value >= f.goal.value : stats.value <= f.goal.value;
        notes.push(`goal ${f.goal.text}: ${met ? 'met' : 'MISSED'}`);
      }
      if (f.note) notes.push(f.note);
      const extra = { ...(notes.length ? { note: notes.join('; ') } : {}), ...(f.ratioGoal !== undefined ? { goal: f.ratioGoal } : {}) };
      return [compare(f.name, f.unit, f.better, stats, f.anchor, anchorOf(py, f.anchor), extra)] satisfies Row[];
    },
  };
}

export const benches: BenchDef[] = FIGURES.map(define);

if (require.main === module) driverMain<DriverParams>(measure);
