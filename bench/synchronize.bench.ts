// Synchronization and shared-memory figures: uncontended Lock acquire/release, 2 processes
// incrementing a shared value under a Lock, Event/Condition wake-up latency across processes, and
// the time a child takes to attach a 100 MB array it received as an argument. Each is compared
// with CPython's multiprocessing doing the same (bench/anchors/cpython.py, groups lock_uncontended,
// lock_contended, wake, shm_attach).
//
// This file is both the figure definitions (imported by run.ts) and, run as a script, the driver
// (a fresh node process per measurement). Its exported functions are the targets of the
// processes and threads the driver starts: children import this module (its main block is
// guarded) and take them.
import * as path from 'node:path';
import {
  type BenchContext,
  type BenchDef,
  type Measurement,
  type Row,
  type Stats,
  compare,
  driverMain,
  median,
  nowMs,
  repeat,
  runCPython,
  runDriver,
  settled,
  sleep,
  summarize,
} from './harness.js';
import { joinAll, mp, processClass, type Method } from './library.js';

type Lock = import('../src/index.js').Lock;
type Event = import('../src/index.js').Event;
type Condition = import('../src/index.js').Condition;
type RawArray<C extends import('../src/index.js').Typecode> = import('../src/index.js').RawArray<C>;
type RawValue<C extends import('../src/index.js').Typecode> = import('../src/index.js').RawValue<C>;
type Value<C extends import('../src/index.js').Typecode> = import('../src/index.js').Value<C>;

/**
 * CLOCK_MONOTONIC in microseconds. One clock for every process and thread of the machine (Node's
 * hrtime and CPython's CLOCK_MONOTONIC read the same one), so a stamp taken in the parent and one
 * taken in a child can be subtracted.
 */
function monoUs(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

// ---------------------------------------------------------------------------------------------
// Targets: run in the children (spawn processes or worker threads).
// ---------------------------------------------------------------------------------------------

/**
 * Contended increments: say ready, wait for go, then n times `withLock(() => v.value += 1)`;
 * stamps [start, end] (µs) into ts[2*idx], ts[2*idx+1]. `lock` null: the Value's own lock.
 */
export async function incrTarget(
  lock: Lock | null,
  v: RawValue<'i'> | Value<'i'>,
  n: number,
  ready: Event,
  go: Event,
  ts: RawArray<'d'>,
  idx: number,
): Promise<void> {
  ready.set();
  await go.wait();
  const t0 = monoUs();
  if (lock !== null) {
    const raw = v as RawValue<'i'>;
    const incr = (): void => {
      raw.value += 1;
    };
    for (let i = 0; i < n; i++) await lock.withLock(incr);
  } else {
    const value = v as Value<'i'>;
    const incr = (): void => {
      value.value += 1;
    };
    for (let i = 0; i < n; i++) await value.withLock(incr);
  }
  ts.buf[2 * idx] = t0;
  ts.buf[2 * idx + 1] = monoUs();
}

/** Event wake-up: for each round, clear, say "waiting for round i" (flags[0]), wait, stamp. */
export async function eventWaiter(ev: Event, flags: RawArray<'i'>, woke: RawArray<'d'>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    ev.clear();
    Atomics.store(flags.buf, 0, i + 1);
    await ev.wait();
    woke.buf[i] = monoUs();
  }
}

/** Condition wake-up: holding the lock, say "waiting for round i" (flags[0]), wait until flags[1] > i, stamp. */
export async function conditionWaiter(cond: Condition, flags: RawArray<'i'>, woke: RawArray<'d'>, n: number): Promise<void> {
  await cond.acquire();
  try {
    for (let i = 0; i < n; i++) {
      Atomics.store(flags.buf, 0, i + 1);
      while (Atomics.load(flags.buf, 1) <= i) await cond.wait();
      woke.buf[i] = monoUs();
    }
  } finally {
    cond.release();
  }
}

/**
 * A marker argument: rebuilding one in the receiver records the time. Arguments are rebuilt in
 * order, so `[..., new Stamp(), arr, new Stamp()]` brackets exactly the rebuild of `arr`.
 */
// eslint-disable-next-line @typescript-eslint/no-extraneous-class -- a marker: registerType needs a class, and a Stamp carries nothing
export class Stamp {}
const stamps: number[] = [];

/** Attach: the array arrived between two stamps; store the rebuild time (ms) and check the data. */
export function attachTarget(ts: RawArray<'d'>, _before: Stamp, arr: RawArray<'d'>, _after: Stamp): void {
  ts.buf[0] = (stamps[stamps.length - 1]! - stamps[stamps.length - 2]!) / 1e3;
  // A usable view: the first and last elements read back what the parent wrote.
  ts.buf[1] = arr.buf[0]! + arr.buf[arr.length - 1]!;
}

// The Stamp type must be registered wherever a Stamp is sent or rebuilt (the driver and its
// children), but not in the orchestrator, which must not load the library.
const inOrchestrator = require.main !== undefined && require.main !== module && path.basename(require.main.filename) === 'run.js';
if (!inOrchestrator) {
  mp().registerType(Stamp, {
    reduce: () => 0,
    rebuild: () => {
      stamps.push(monoUs());
      return new Stamp();
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Driver side: runs in the fresh node process.
// ---------------------------------------------------------------------------------------------

type DriverParams =
  | { kind: 'uncontended'; form: 'acquire_release' | 'with'; n: number; reps: number }
  | { kind: 'contended'; method: Method; variant: 'raw_value' | 'value_lock'; n: number; reps: number }
  | { kind: 'wake'; method: Method; primitive: 'event' | 'condition'; rounds: number; reps: number }
  | { kind: 'attach'; method: Method; mb: number; reps: number };

/** pairs/s of `await lock.acquire(); lock.release()` (or `await lock.withLock(noop)`) in one process. */
async function measureUncontended(p: Extract<DriverParams, { kind: 'uncontended' }>): Promise<Measurement> {
  const lock = new (mp().Lock)();
  const noop = (): void => {};
  const loop =
    p.form === 'acquire_release'
      ? async (n: number) => {
          for (let i = 0; i < n; i++) {
            await lock.acquire();
            lock.release();
          }
        }
      : async (n: number) => {
          for (let i = 0; i < n; i++) await lock.withLock(noop);
        };
  return repeat(
    p.reps,
    async () => {
      const t0 = nowMs();
      await loop(p.n);
      return p.n / ((nowMs() - t0) / 1e3);
    },
    () => loop(Math.min(p.n, 100_000)),
  );
}

/** incr/s of 2 children × n locked increments, wall time from the first start to the last end. */
async function measureContended(p: Extract<DriverParams, { kind: 'contended' }>): Promise<Measurement> {
  const { Event, Lock, RawArray, RawValue, Value } = mp();
  const P = processClass(p.method);
  const once = async (n: number): Promise<number> => {
    const lock = p.variant === 'raw_value' ? new Lock() : null;
    const v = p.variant === 'raw_value' ? new RawValue('i', 0) : new Value('i', 0);
    const ts = new RawArray('d', 4);
    const go = new Event();
    const readys = [new Event(), new Event()];
    const ps = [0, 1].map((i) => new P({ target: incrTarget, args: [lock, v, n, readys[i]!, go, ts, i] }));
    for (const c of ps) c.start();
    for (const r of readys) if (!(await r.wait(60_000))) throw new Error('a child did not become ready');
    go.set();
    await joinAll(ps);
    // The count must be exact, or the figure is meaningless (and the lock broken).
    if (v.value !== 2 * n) throw new Error(`final count ${v.value}, expected ${2 * n}: the lock let increments through`);
    const wallUs = Math.max(ts.buf[1]!, ts.buf[3]!) - Math.min(ts.buf[0]!, ts.buf[2]!);
    return (2 * n) / (wallUs / 1e6);
  };
  return repeat(
    p.reps,
    () => once(p.n),
    () => once(Math.min(p.n, 2_000)),
  );
}

/** Median µs from the parent's set()/notify() to the child running again, over `rounds` rounds. */
async function measureWake(p: Extract<DriverParams, { kind: 'wake' }>): Promise<Measurement> {
  const { Condition, Event, RawArray } = mp();
  const P = processClass(p.method);
  const once = async (rounds: number): Promise<number> => {
    const flags = new RawArray('i', 2); // [child waits for round, round released]
    const woke = new RawArray('d', rounds);
    const sent = new Float64Array(rounds);
    const ev = p.primitive === 'event' ? new Event() : null;
    const cond = p.primitive === 'condition' ? new Condition() : null;
    const child = ev
      ? new P({ target: eventWaiter, args: [ev, flags, woke, rounds] })
      : new P({ target: conditionWaiter, args: [cond!, flags, woke, rounds] });
    child.start();
    for (let i = 0; i < rounds; i++) {
      const deadline = Date.now() + 60_000;
      while (Atomics.load(flags.buf, 0) < i + 1) {
        if (Date.now() > deadline) throw new Error(`the child never waited for round ${i}`);
        await sleep(1);
      }
      await sleep(1); // let it block in wait() (an idle waiter is what is woken)
      if (ev) {
        sent[i] = monoUs();
        ev.set();
      } else {
        await cond!.acquire();
        Atomics.store(flags.buf, 1, i + 1);
        sent[i] = monoUs();
        cond!.notify();
        cond!.release();
      }
    }
    await joinAll([child]);
    return median(Array.from(sent, (s, i) => woke.buf[i]! - s));
  };
  return repeat(
    p.reps,
    () => once(p.rounds),
    () => once(5),
  );
}

/** ms for a child to rebuild a RawArray('d') of `mb` MB passed as an argument (stamp to stamp). */
async function measureAttach(p: Extract<DriverParams, { kind: 'attach' }>): Promise<Measurement> {
  const { RawArray } = mp();
  const P = processClass(p.method);
  const n = Math.floor((p.mb * 1_000_000) / 8);
  const arr = new RawArray('d', n);
  arr.buf.fill(1.5); // real pages, as a real array would have
  arr.buf[0] = 1;
  arr.buf[n - 1] = 2;
  const once = async (): Promise<number> => {
    // ts goes first: the child loads the library's types while rebuilding it, before the stamps.
    const ts = new RawArray('d', 2);
    const child = new P({ target: attachTarget, args: [ts, new Stamp(), arr, new Stamp()] });
    child.start();
    await joinAll([child]);
    if (ts.buf[1] !== 3) throw new Error(`the child read ${ts.buf[1]} from the array, expected 1 + 2`);
    return ts.buf[0]!;
  };
  return repeat(p.reps, once, once);
}

function measure(p: DriverParams): Promise<Measurement> {
  switch (p.kind) {
    case 'uncontended':
      return measureUncontended(p);
    case 'contended':
      return measureContended(p);
    case 'wake':
      return measureWake(p);
    case 'attach':
      return measureAttach(p);
  }
}

// ---------------------------------------------------------------------------------------------
// Orchestrator side: the figures.
// ---------------------------------------------------------------------------------------------

function sizes(quick: boolean) {
  return quick
    ? { uncontended: 200_000, contended: 100_000, rounds: 50, mb: 100, reps: 3 }
    : { uncontended: 1_000_000, contended: 100_000, rounds: 200, mb: 100, reps: 5 };
}

/** The goal for the contended increments: 2 M/s, whatever CPython does. */
const CONTENDED_GOAL_PER_S = 2_000_000;

function ours(ctx: BenchContext, label: string, params: DriverParams): Promise<Stats> {
  return ctx.once(`sync:${JSON.stringify(params)}`, async () => {
    await ctx.settle();
    ctx.log(`  ${label}`);
    return summarize(await runDriver(__filename, params));
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
  /** An absolute goal for our value (higher-is-better units), reported in the notes. */
  goal?: number;
}

const lockArgs = (quick: boolean): string[] => {
  const s = sizes(quick);
  return ['--n', String(s.uncontended), '--reps', String(s.reps)];
};
const contendedArgs = (quick: boolean): string[] => {
  const s = sizes(quick);
  return ['--n', String(s.contended), '--reps', String(s.reps)];
};
const wakeArgs = (quick: boolean): string[] => {
  const s = sizes(quick);
  return ['--n', String(s.rounds), '--reps', String(s.reps)];
};
const attachArgs = (quick: boolean): string[] => {
  const s = sizes(quick);
  return ['--n', String(s.mb), '--reps', String(s.reps)];
};

const METHODS: Method[] = ['spawn', 'thread'];

const FIGURES: Figure[] = [
  {
    name: 'lock_uncontended_acquire_release',
    unit: 'pairs/s',
    better: 'higher',
    params: (q) => ({ kind: 'uncontended', form: 'acquire_release', n: sizes(q).uncontended, reps: sizes(q).reps }),
    cpython: { group: 'lock_uncontended', args: lockArgs, keys: ['cpython_lock_acquire_release'] },
  },
  {
    name: 'lock_uncontended_with',
    unit: 'pairs/s',
    better: 'higher',
    params: (q) => ({ kind: 'uncontended', form: 'with', n: sizes(q).uncontended, reps: sizes(q).reps }),
    cpython: { group: 'lock_uncontended', args: lockArgs, keys: ['cpython_lock_with'] },
  },
  ...METHODS.flatMap((method): Figure[] => [
    {
      name: `lock_contended_2proc_value_incr_${method}`,
      unit: 'incr/s',
      better: 'higher',
      params: (q) => ({ kind: 'contended', method, variant: 'raw_value', n: sizes(q).contended, reps: sizes(q).reps }),
      cpython: {
        group: 'lock_contended',
        args: contendedArgs,
        keys: ['cpython_fork_separate_lock_raw_value', 'cpython_fork_separate_lock_synchronized_value'],
      },
      goal: CONTENDED_GOAL_PER_S,
    },
    {
      name: `lock_contended_2proc_value_get_lock_${method}`,
      unit: 'incr/s',
      better: 'higher',
      params: (q) => ({ kind: 'contended', method, variant: 'value_lock', n: sizes(q).contended, reps: sizes(q).reps }),
      cpython: { group: 'lock_contended', args: contendedArgs, keys: ['cpython_fork_value_get_lock'] },
      goal: CONTENDED_GOAL_PER_S,
    },
  ]),
  ...METHODS.flatMap((method): Figure[] =>
    (['event', 'condition'] as const).map((primitive) => ({
      name: `${primitive}_wake_latency_us_${method}`,
      unit: 'us',
      better: 'lower' as const,
      params: (q: boolean): DriverParams => ({ kind: 'wake', method, primitive, rounds: sizes(q).rounds, reps: sizes(q).reps }),
      cpython: { group: 'wake', args: wakeArgs, keys: [`cpython_fork_${primitive}_wake`] },
    })),
  ),
  ...METHODS.map((method): Figure => ({
    name: `shm_attach_100MB_array_ms_${method}`,
    unit: 'ms',
    better: 'lower',
    params: (q) => ({ kind: 'attach', method, mb: sizes(q).mb, reps: sizes(q).reps }),
    cpython: {
      group: 'shm_attach',
      args: attachArgs,
      keys: ['cpython_spawn_Array_arg_rebuild', 'cpython_forkserver_Array_arg_rebuild', 'cpython_fork_SharedMemory_attach'],
    },
  })),
];

function define(f: Figure): BenchDef {
  return {
    name: f.name,
    async run(ctx) {
      const stats = await ours(ctx, f.name, f.params(ctx.quick));
      const py = await settled(cpython(ctx, f.cpython.group, f.cpython.args(ctx.quick)));
      const extra: { note?: string } = {};
      if (f.goal !== undefined) extra.note = `goal >= ${f.goal / 1e6} M/s: ${stats.value >= f.goal ? 'met' : 'MISSED'}`;
      return f.cpython.keys.map((key): Row => compare(f.name, f.unit, f.better, stats, key, anchorOf(py, key), extra));
    },
  };
}

export const benches: BenchDef[] = FIGURES.map(define);

if (require.main === module) driverMain<DriverParams>(measure);
