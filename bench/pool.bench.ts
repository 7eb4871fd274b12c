// Pool figures (issue 5): Pool(2) / ThreadPool(2) beside CPython's Pool(2) and the Node pools
// piscina, tinypool, poolifier and workerpool (2 worker threads each, their documented APIs,
// worker file bench/peer_worker.ts): tiny-task throughput with the default chunking and with
// chunksize 1, warm and on a fresh pool (its first map, its first 2000 calls), the applyAsync round trip, the speed-up of 40 CPU-bound ~20 ms tasks, pool
// creation to the first result, and memory per worker.
//
// This file is the figure definitions (imported by run.ts), the driver (run as a script by
// runDriver), and the module whose exported `square` and `burn` our pool workers import.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  type BenchContext,
  type BenchDef,
  type Measurement,
  type Row,
  type Stats,
  compare,
  driverMain,
  envWithout,
  nowMs,
  repeat,
  runCPython,
  runDriver,
  settled,
  summarize,
} from './harness.js';

export function square(x: number): number {
  return x * x;
}

/** The same loop as bench/peer_worker.ts and cpython.py's pool_burn. */
export function burn(iters: number): number {
  let acc = 0;
  for (let i = 0; i < iters; i++) acc = (acc + i * i) % 1000003;
  return acc;
}

// ---------------------------------------------------------------------------------------------
// Driver side.
// ---------------------------------------------------------------------------------------------

type Ours = 'spawn' | 'thread' | 'forkserver';
type Peer = 'piscina' | 'tinypool' | 'poolifier' | 'workerpool';
type Who = Ours | Peer;
type Figure =
  'map_default' | 'map_chunk1' | 'map_cold' | 'calls_cold' | 'rtt' | 'cpu' | 'startup' | 'startup_warm' | 'memory' | 'memory_private';

interface DriverParams {
  who: Who;
  figure: Figure;
  n: number;
  reps: number;
}

interface Adapter {
  run(name: 'square' | 'burn', arg: number): Promise<number>;
  /** Ours: pool.map with a chunksize (undefined: the default). */
  map?(name: 'square' | 'burn', items: number[], chunksize?: number): Promise<number[]>;
  pids(): number[];
  close(): Promise<void>;
}

const PEER_FILE = path.join(__dirname, 'peer_worker.js');
const FNS = { square, burn };

// Libraries load in the case that uses them: the orchestrator imports this file for its figures,
// and our pool's workers for square and burn, and neither must load more than it needs.
/* eslint-disable @typescript-eslint/no-require-imports -- loaded in the case that uses them, see above */
async function make(who: Who): Promise<Adapter> {
  switch (who) {
    case 'spawn':
    case 'thread':
    case 'forkserver': {
      const mp = require('../src/index.js') as typeof import('../src/index.js');
      const pool = who === 'spawn' ? new mp.Pool(2) : who === 'thread' ? new mp.ThreadPool(2) : mp.getContext('forkserver').Pool(2);
      return {
        run: (name, x) => pool.applyAsync(FNS[name], [x]).get(),
        map: (name, items, chunksize) => pool.map(FNS[name], items, chunksize),
        pids: () => pool._pool.map((p) => p.pid!),
        close: async () => {
          pool.terminate();
          await pool.join();
        },
      };
    }
    case 'piscina': {
      const { Piscina } = require('piscina') as typeof import('piscina');
      const pool = new Piscina({ filename: PEER_FILE, minThreads: 2, maxThreads: 2 });
      return { run: (name, x) => pool.run(x, { name }) as Promise<number>, pids: () => [], close: () => pool.destroy() };
    }
    case 'tinypool': {
      const { Tinypool } = await import('tinypool');
      const pool = new Tinypool({ filename: PEER_FILE, minThreads: 2, maxThreads: 2 });
      return { run: (name, x) => pool.run(x, { name }) as Promise<number>, pids: () => [], close: () => pool.destroy() };
    }
    case 'poolifier': {
      process.env.MP_PEER_LIB = 'poolifier';
      const { FixedThreadPool } = require('poolifier') as typeof import('poolifier');
      const pool = new FixedThreadPool<number, number>(2, PEER_FILE);
      return { run: (name, x) => pool.execute(x, name), pids: () => [], close: () => pool.destroy() };
    }
    case 'workerpool': {
      process.env.MP_PEER_LIB = 'workerpool';
      const workerpool = require('workerpool') as typeof import('workerpool');
      const pool = workerpool.pool(PEER_FILE, { minWorkers: 2, maxWorkers: 2, workerType: 'thread' });
      return {
        run: (name, x) => pool.exec(name, [x]),
        pids: () => [],
        close: async () => {
          await pool.terminate();
        },
      };
    }
  }
}

/** Loads the library `make(who)` uses, so that a memory figure counts the workers and not it. */
async function loadLibrary(who: Who): Promise<void> {
  if (who === 'tinypool') await import('tinypool');
  else require(who === 'spawn' || who === 'thread' || who === 'forkserver' ? '../src/index.js' : who);
}

/* eslint-enable @typescript-eslint/no-require-imports */

const RTT_WARM = 5_000;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * A process's resident megabytes and its private ones (pages no other process maps: what one
 * more such process costs the machine). RSS also counts the pages of the `node` binary and shared
 * libraries, shared with every other Node process.
 */
function memMB(pid: number | 'self'): { rss: number; private: number } {
  const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kB = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: kB('Rss') / 1024, private: (kB('Private_Clean') + kB('Private_Dirty')) / 1024 };
}

function gc(): void {
  const g = globalThis as { gc?: () => void };
  if (!g.gc) {
    /* eslint-disable @typescript-eslint/no-require-imports -- loaded only when needed, as the libraries in make() */
    (require('node:v8') as typeof import('node:v8')).setFlagsFromString('--expose-gc');
    g.gc = (require('node:vm') as typeof import('node:vm')).runInNewContext('gc') as () => void;
    /* eslint-enable @typescript-eslint/no-require-imports */
  }
  g.gc();
}

/** Iterations of `burn` that take about `ms` here (after warming the JIT). */
function calibrate(ms: number): number {
  burn(1e6);
  let iters = 1e5;
  for (;;) {
    const t0 = nowMs();
    burn(iters);
    const took = nowMs() - t0;
    if (took > 50) return Math.max(1, Math.round((iters * ms) / took));
    iters *= 2;
  }
}

async function measure(p: DriverParams): Promise<Measurement> {
  const ours = p.who === 'spawn' || p.who === 'thread' || p.who === 'forkserver';
  if (p.figure === 'startup' || p.figure === 'startup_warm') {
    // startup_warm (forkserver): first, untimed, wait until two children stand booted and idle.
    const standingIdle =
      p.figure === 'startup_warm'
        ? // eslint-disable-next-line @typescript-eslint/no-require-imports -- an internal of the library, loaded in this case only
          (require('../src/popen/forkserver.js') as typeof import('../src/popen/forkserver.js')).standingIdle
        : undefined;
    // The library is loaded; each repetition: constructor to the first result, then close.
    const once = async (): Promise<number> => {
      await standingIdle?.(2);
      const t0 = nowMs();
      const a = await make(p.who);
      await a.run('square', 3);
      const took = nowMs() - t0;
      // poolifier's destroy() right after the first task can stay pending with nothing alive
      // (the research saw it hang; here node then exits with no result): bounded.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([a.close(), new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      return took;
    };
    return repeat(p.reps, once, once);
  }
  if (p.figure === 'memory' || p.figure === 'memory_private') {
    const of = (pid: number | 'self'): number => memMB(pid)[p.figure === 'memory' ? 'rss' : 'private'];
    await loadLibrary(p.who);
    gc();
    const before = of('self');
    const a = await make(p.who);
    await Promise.all(range(2000).map((x) => a.run('square', x)));
    gc();
    await new Promise((r) => setTimeout(r, 200));
    // Our processes are measured themselves; threads (ours and the peers') by this process's growth.
    const inProcesses = p.who === 'spawn' || p.who === 'forkserver';
    const value = inProcesses ? a.pids().reduce((s, pid) => s + of(pid), 0) / 2 : (of('self') - before) / 2;
    await a.close();
    return { samples: [{ value, foreignPct: null }], foreignPct: null };
  }
  if (p.figure === 'map_cold' || p.figure === 'calls_cold') {
    // A fresh pool each repetition, its workers up (one task of another function of the same
    // module), then its first map or first 2000 calls of `square`: what a short program sees.
    const once = async (): Promise<number> => {
      const a = await make(p.who);
      try {
        await a.run('burn', 0);
        const t0 = nowMs();
        const out =
          p.figure === 'map_cold' ? await a.map!('square', range(p.n)) : await Promise.all(range(p.n).map((x) => a.run('square', x)));
        const took = nowMs() - t0;
        if (out.length !== p.n || out[p.n - 1] !== (p.n - 1) ** 2) throw new Error('wrong results');
        return (p.n * 1000) / took;
      } finally {
        await a.close();
      }
    };
    return repeat(p.reps, once);
  }
  const a = await make(p.who);
  try {
    await Promise.all(range(1000).map((x) => a.run('square', x)));
    switch (p.figure) {
      case 'map_default':
      case 'map_chunk1': {
        const chunksize = p.figure === 'map_default' ? undefined : 1;
        const rep = async (): Promise<number> => {
          const t0 = nowMs();
          const out = ours ? await a.map!('square', range(p.n), chunksize) : await Promise.all(range(p.n).map((x) => a.run('square', x)));
          const took = nowMs() - t0;
          if (out.length !== p.n || out[p.n - 1] !== (p.n - 1) ** 2) throw new Error('wrong results');
          return (p.n * 1000) / took;
        };
        // A default-chunked map of 100 000 takes ~15 ms: the JIT needs about ten of them before
        // the figure settles (the cold row has a fresh pool's first); one chunksize-1 map is enough.
        return await repeat(p.reps, rep, async () => {
          for (let i = 0; i < (chunksize === 1 ? 1 : 10); i++) await rep();
        });
      }
      case 'rtt': {
        const rep = async (): Promise<number> => {
          const t0 = nowMs();
          for (let i = 0; i < p.n; i++) await a.run('square', i);
          return ((nowMs() - t0) * 1000) / p.n;
        };
        // Warm: after RTT_WARM untimed calls. V8 compiles the call path on background threads,
        // which on 2 cores compete with the parent and the worker for the first ~3 000 calls
        // (50-300 µs each then); the cold row above has a fresh pool's first 2 000.
        return await repeat(p.reps, rep, async () => {
          for (let i = 0; i < RTT_WARM; i++) await a.run('square', i);
        });
      }
      case 'cpu': {
        const iters = calibrate(20);
        const items = new Array<number>(p.n).fill(iters);
        const parallel = (): Promise<unknown> => (ours ? a.map!('burn', items) : Promise.all(items.map((x) => a.run('burn', x))));
        await parallel();
        // Paired per repetition: serial on this thread, then the same tasks on the pool.
        const rep = async (): Promise<number> => {
          let t0 = nowMs();
          for (const x of items) burn(x);
          const serial = nowMs() - t0;
          t0 = nowMs();
          await parallel();
          return serial / (nowMs() - t0);
        };
        return await repeat(p.reps, rep);
      }
      default:
        throw new Error(`unknown figure ${p.figure as string}`);
    }
  } finally {
    await a.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Orchestrator side.
// ---------------------------------------------------------------------------------------------

const PEERS: Peer[] = ['piscina', 'tinypool', 'poolifier', 'workerpool'];
const CA_VAR = 'NODE_EXTRA_CA_CERTS';

function sizes(quick: boolean) {
  return quick
    ? { mapN: 100_000, chunk1N: 20_000, rttN: 500, cpuN: 20, reps: 3, cpuReps: 2, startReps: 3 }
    : { mapN: 100_000, chunk1N: 100_000, rttN: 2_000, cpuN: 40, reps: 5, cpuReps: 3, startReps: 5 };
}

function size(quick: boolean, figure: Figure): { n: number; reps: number } {
  const s = sizes(quick);
  switch (figure) {
    case 'map_default':
      return { n: s.mapN, reps: s.reps };
    case 'map_chunk1':
      return { n: s.chunk1N, reps: s.reps };
    case 'map_cold':
      return { n: s.mapN, reps: s.reps };
    case 'calls_cold':
      return { n: 2000, reps: s.reps };
    case 'rtt':
      return { n: s.rttN, reps: s.reps };
    case 'cpu':
      return { n: s.cpuN, reps: s.cpuReps };
    case 'startup':
    case 'startup_warm':
      return { n: 1, reps: s.startReps };
    case 'memory':
    case 'memory_private':
      return { n: 1, reps: 1 };
  }
}

function measureNode(ctx: BenchContext, who: Who, figure: Figure): Promise<Stats> {
  const params: DriverParams = { who, figure, ...size(ctx.quick, figure) };
  return ctx.once(`pool:${who}:${figure}`, async () => {
    await ctx.settle();
    ctx.log(`  ${who} ${figure}`);
    // Without the sandbox's CA bundle, as on a normal machine (it slows every node start ~40 ms).
    try {
      return summarize(await runDriver(__filename, params, envWithout(CA_VAR)));
    } catch (err) {
      // A peer that fails once (poolifier's destroy() has been seen to hang) gets one more try.
      if (who === 'spawn' || who === 'thread' || who === 'forkserver') throw err;
      ctx.log(`  ${who} ${figure}: retrying after ${(err as Error).message.slice(0, 120)}`);
      return summarize(await runDriver(__filename, params, envWithout(CA_VAR)));
    }
  });
}

function measureCPython(ctx: BenchContext): Promise<Map<string, Stats>> {
  const s = sizes(ctx.quick);
  return ctx.once('cpython:pool', async () => {
    await ctx.settle();
    ctx.log('  cpython pool');
    const args = [
      '--n',
      String(s.chunk1N),
      '--n2',
      String(s.rttN),
      '--n3',
      String(s.cpuN),
      '--reps',
      String(s.reps),
      '--methods',
      'fork,spawn,forkserver',
    ];
    return runCPython('pool', args);
  });
}

interface PoolFigure {
  name: string;
  figure: Figure;
  unit: string;
  better: 'higher' | 'lower';
  /** CPython records compared with, and the goal ratio against the first. */
  cpython: string[];
  goal?: number;
  /** A goal on our own value (not a ratio): text and test. */
  absolute?: { text: string; met: (v: number) => boolean };
  peers: boolean;
  /** A goal ratio against the best Node pool of the same run. */
  peerGoal?: number;
}

const FIGURES: PoolFigure[] = [
  {
    name: 'pool_map_tiny_default_chunksize',
    figure: 'map_default',
    unit: 'tasks/s',
    better: 'higher',
    cpython: ['cpython_fork_pool2_map_square_default_chunksize'],
    goal: 1.5,
    peers: false,
  },
  {
    name: 'pool_map_tiny_chunksize1',
    figure: 'map_chunk1',
    unit: 'tasks/s',
    better: 'higher',
    cpython: ['cpython_fork_pool2_map_square_chunksize1'],
    goal: 3,
    peers: true,
    peerGoal: 1.2,
  },
  {
    // A fresh pool's first map (its workers up): the figure above is warm.
    name: 'pool_map_tiny_cold_first_map',
    figure: 'map_cold',
    unit: 'tasks/s',
    better: 'higher',
    cpython: ['cpython_fork_pool2_map_square_default_chunksize'],
    peers: false,
  },
  {
    // A fresh pool's first 2000 applyAsync calls (peers: run/execute/exec), its workers up.
    name: 'pool_map_tiny_cold_2000_calls',
    figure: 'calls_cold',
    unit: 'tasks/s',
    better: 'higher',
    cpython: ['cpython_fork_pool2_map_square_chunksize1'],
    peers: true,
  },
  {
    name: 'pool_apply_async_roundtrip',
    figure: 'rtt',
    unit: 'us/task',
    better: 'lower',
    cpython: ['cpython_fork_pool2_apply_async_get_roundtrip'],
    absolute: { text: 'goal <= 15 us', met: (v) => v <= 15 },
    peers: true,
  },
  {
    // 40 tasks (20 in --quick) of a pure-JS loop calibrated to ~20 ms.
    name: 'pool_cpu_speedup_40x20ms',
    figure: 'cpu',
    unit: 'x',
    better: 'higher',
    cpython: ['cpython_fork_pool2_cpu_speedup'],
    absolute: { text: 'goal >= 1.95x', met: (v) => v >= 1.95 },
    peers: true,
  },
  {
    name: 'pool_start_to_first_result',
    figure: 'startup',
    unit: 'ms',
    better: 'lower',
    cpython: [
      'cpython_fork_pool2_start_first_result',
      'cpython_spawn_pool2_start_first_result',
      'cpython_forkserver_pool2_start_first_result',
    ],
    absolute: { text: 'goal <= 10 ms', met: (v) => v <= 10 },
    peers: true,
  },
  {
    // The same, each repetition waiting (untimed) until two standing children are booted and idle.
    name: 'pool_start_to_first_result_warm',
    figure: 'startup_warm',
    unit: 'ms',
    better: 'lower',
    cpython: ['cpython_forkserver_pool2_start_first_result', 'cpython_fork_pool2_start_first_result'],
    absolute: { text: 'goal <= 10 ms', met: (v) => v <= 10 },
    peers: false,
  },
  {
    name: 'pool_memory_per_worker',
    figure: 'memory',
    unit: 'MB',
    better: 'lower',
    cpython: ['cpython_fork_pool_worker_rss', 'cpython_spawn_pool_worker_rss', 'cpython_forkserver_pool_worker_rss'],
    absolute: { text: 'goal <= 35 MB', met: (v) => v <= 35 },
    peers: true,
  },
  {
    // The same workers' private pages: what each added worker costs, RSS less what it shares.
    name: 'pool_memory_private_per_worker',
    figure: 'memory_private',
    unit: 'MB',
    better: 'lower',
    cpython: ['cpython_fork_pool_worker_private', 'cpython_spawn_pool_worker_private', 'cpython_forkserver_pool_worker_private'],
    peers: true,
  },
];

const NOTES: Partial<Record<Figure, string>> = {
  map_cold: 'fresh pool per repetition, workers up, first map of square; the CPython anchor is its warm figure',
  calls_cold: 'fresh pool per repetition, workers up, its first 2000 calls; the CPython anchor is its warm map chunksize 1',
  memory:
    'spawn, forkserver: RSS of a worker process, ~40 MB of it pages every Node process shares (a bare node is 38-41 MB); thread: growth of this process RSS per worker',
  memory_private:
    'private pages (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup): spawn, forkserver: of a worker process; thread: growth of this process per worker',
  startup:
    'library loaded; driver env without NODE_EXTRA_CA_CERTS; forkserver (cold): its standing children booted while the previous pool ran, often not yet done (a pool made in the same turn as the forkserver context pays a spawn start; made later, it finds them booted)',
  startup_warm:
    'forkserver (warm): each repetition first waits, untimed, until two standing children are booted and idle: the cost of the hand-over itself',
};

/** "goal >= 1.2x the fastest Node pool (poolifier): met", from the peers measured in this run. */
function peerGoalNote(f: PoolFigure, ours: Stats, peers: [string, Stats | Error][]): string | undefined {
  if (f.peerGoal === undefined) return undefined;
  let best: [string, number] | undefined;
  for (const [peer, stats] of peers) {
    if (stats instanceof Error) continue;
    const v = f.better === 'higher' ? stats.value : -stats.value;
    if (!best || v > best[1]) best = [peer, v];
  }
  if (!best) return `goal >= ${f.peerGoal}x the fastest Node pool: no peer measured`;
  const bestValue = Math.abs(best[1]);
  const met = f.better === 'higher' ? ours.value >= f.peerGoal * bestValue : ours.value * f.peerGoal <= bestValue;
  return `goal >= ${f.peerGoal}x the fastest Node pool (${best[0]}): ${met ? 'met' : 'MISSED'}`;
}

function define(f: PoolFigure, backend: Ours): BenchDef {
  const name = `${f.name}_${backend}`;
  return {
    name,
    async run(ctx) {
      const ours = await measureNode(ctx, backend, f.figure);
      const py = await settled(measureCPython(ctx));
      const rows: Row[] = [];
      // Peers run on threads: their memory is compared with our thread figure only.
      const peers: [string, Stats | Error][] = [];
      if (f.peers && !((f.figure === 'memory' || f.figure === 'memory_private') && backend !== 'thread'))
        for (const peer of PEERS) peers.push([peer, await settled(measureNode(ctx, peer, f.figure))]);
      const abs = f.absolute ? `${f.absolute.text}: ${f.absolute.met(ours.value) ? 'met' : 'MISSED'}` : undefined;
      const note = [abs, peerGoalNote(f, ours, peers), NOTES[f.figure]].filter(Boolean).join('; ') || undefined;
      for (const [i, key] of f.cpython.entries()) {
        const stats = py instanceof Error ? py : (py.get(key) ?? new Error(`cpython.py printed no ${key}`));
        const extra: { goal?: number; note?: string } = {};
        if (i === 0 && f.goal !== undefined) extra.goal = f.goal;
        if (i === 0 && note) extra.note = note;
        rows.push(compare(name, f.unit, f.better, ours, key, stats, extra));
      }
      for (const [peer, stats] of peers) rows.push(compare(name, f.unit, f.better, ours, `${peer}(2 threads)`, stats));
      return rows;
    },
  };
}

/** The forkserver differs from spawn only in how its workers start: the other figures would repeat spawn's. */
const backendsOf = (f: PoolFigure): Ours[] =>
  f.figure === 'startup_warm'
    ? ['forkserver']
    : f.figure === 'startup' || f.figure === 'memory' || f.figure === 'memory_private'
      ? ['spawn', 'thread', 'forkserver']
      : ['spawn', 'thread'];

export const benches: BenchDef[] = FIGURES.flatMap((f) => backendsOf(f).map((b) => define(f, b)));

if (require.main === module) driverMain<DriverParams>(measure);
