// Process start-up figures: how long `new Process({ target: noop }).start()` + `join()` takes,
// one after another and 8 at once, for the spawn and thread backends, beside raw Node (the floor
// a library can approach) and CPython's multiprocessing (what users come from).
//
// This file is both the figure definitions (imported by run.ts) and, when run as a script, the
// driver: run.ts starts it in a fresh node process per measurement so that module cache, heap and
// environment (NODE_EXTRA_CA_CERTS) are the same for us and for the raw anchors.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
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
import { type Method, processClass } from './library.js';
import { noop } from './targets.js';

// ---------------------------------------------------------------------------------------------
// Driver side: runs in the fresh node process.
// ---------------------------------------------------------------------------------------------

/** What is started: our Process on a backend, or the raw Node primitive it is built on. */
type Starter = 'multiproc_spawn' | 'multiproc_thread' | 'multiproc_forkserver' | 'multiproc_forkserver_warm' | 'node_fork' | 'node_worker';

interface DriverParams {
  starter: Starter;
  concurrent: boolean; // start n, then join all (else: n times start+join)
  n: number;
  reps: number;
  warmup: number;
}

/** Waits for a started child to end; rejects unless it ended cleanly. */
type Join = () => Promise<void>;
/** Starts one child now and returns how to wait for it. */
type Start = () => Join;

const EMPTY_SCRIPT = path.join(__dirname, 'empty.js');

function startFork(): Join {
  const child = fork(EMPTY_SCRIPT);
  const exited = once(child, 'exit'); // listen now: the child may end before join is called
  return async () => {
    const [code] = (await exited) as [number | null];
    if (code !== 0) throw new Error(`forked child exited with ${code}`);
  };
}

function startWorker(): Join {
  const worker = new Worker('', { eval: true });
  const exited = once(worker, 'exit');
  return async () => {
    const [code] = (await exited) as [number];
    if (code !== 0) throw new Error(`worker exited with ${code}`);
  };
}

function multiprocStarter(method: Method): Start {
  // Loaded here, not at the top of the file: the raw anchors' drivers must not load the library.
  // The default context is spawn; the figure measures exactly what a user writes.
  const P = processClass(method);
  return () => {
    const p = new P({ target: noop });
    p.start();
    return async () => {
      await p.join();
      if (p.exitcode !== 0) throw new Error(`${method} Process exited with ${p.exitcode}`);
      p.close();
    };
  };
}

function starter(name: Starter): Start {
  switch (name) {
    case 'node_fork':
      return startFork;
    case 'node_worker':
      return startWorker;
    case 'multiproc_spawn':
      return multiprocStarter('spawn');
    case 'multiproc_thread':
      return multiprocStarter('thread');
    case 'multiproc_forkserver':
    case 'multiproc_forkserver_warm':
      return multiprocStarter('forkserver');
  }
}

/** ms per child for n sequential start+join. */
async function sequential(start: Start, n: number): Promise<number> {
  const t0 = nowMs();
  for (let i = 0; i < n; i++) await start()();
  return (nowMs() - t0) / n;
}

/**
 * ms per child for n sequential start+join, each started once the forkserver's standing children
 * are booted and idle (the wait is not timed): a hand-over, not a Node start-up.
 */
async function sequentialWarm(start: Start, n: number): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- an internal of the library, loaded in the driver only
  const { standingIdle } = require('../src/popen/forkserver.js') as typeof import('../src/popen/forkserver.js');
  let total = 0;
  for (let i = 0; i < n; i++) {
    await standingIdle();
    const t0 = nowMs();
    await start()();
    total += nowMs() - t0;
  }
  return total / n;
}

/** Wall ms to start n children, then join them all. */
async function concurrent(start: Start, n: number): Promise<number> {
  const t0 = nowMs();
  const joins = Array.from({ length: n }, () => start());
  for (const join of joins) await join();
  return nowMs() - t0;
}

function measureStarts(p: DriverParams): Promise<Measurement> {
  const start = starter(p.starter);
  const rep = p.concurrent ? concurrent : p.starter === 'multiproc_forkserver_warm' ? sequentialWarm : sequential;
  // Warm-up: a few untimed children load the lazy modules and fill the caches first.
  return repeat(
    p.reps,
    () => rep(start, p.n),
    () => sequential(start, p.warmup),
  );
}

// ---------------------------------------------------------------------------------------------
// Orchestrator side: the figures, measured through drivers and bench/anchors/cpython.py.
// ---------------------------------------------------------------------------------------------

function sizes(quick: boolean) {
  return quick ? { seqN: 5, concN: 8, reps: 3, warmup: 2 } : { seqN: 20, concN: 8, reps: 5, warmup: 2 };
}

/** NODE_EXTRA_CA_CERTS makes every node process start ~40-60 ms slower here: report both ways. */
const CA_VAR = 'NODE_EXTRA_CA_CERTS';
const ENV_VARIANTS: { suffix: string; env: NodeJS.ProcessEnv }[] = [
  { suffix: '', env: process.env },
  ...(process.env[CA_VAR] !== undefined ? [{ suffix: '[no-extra-ca]', env: envWithout(CA_VAR) }] : []),
];

interface StartFigure {
  name: string;
  ours: Starter;
  concurrent: boolean;
  node: { name: string; starter: Starter; goal?: number };
  /** CPython start methods compared with. */
  cpython: string[];
  /** A goal against one CPython method: the ratio to reach. */
  cpythonGoal?: { method: string; ratio: number };
  /** What the figure measures, beside its rows. */
  note?: string;
}

const FIGURES: StartFigure[] = [
  {
    name: 'process_start_join_spawn',
    ours: 'multiproc_spawn',
    concurrent: false,
    // The issue's goal: within 10 % of a raw fork of an empty script.
    node: { name: 'node_fork_exit', starter: 'node_fork', goal: 0.9 },
    cpython: ['spawn', 'forkserver'],
  },
  {
    name: 'process_start_join_thread',
    ours: 'multiproc_thread',
    concurrent: false,
    node: { name: 'node_worker_exit', starter: 'node_worker' },
    // Python has no thread context: its fast Linux methods are the comparison.
    cpython: ['fork', 'forkserver'],
  },
  {
    // Children booted ahead of time: a start hands one over. Sequential start+join measures the
    // steady state, where the replacement booted while the previous child ran.
    name: 'process_start_join_forkserver',
    ours: 'multiproc_forkserver',
    concurrent: false,
    node: { name: 'node_fork_exit', starter: 'node_fork' },
    cpython: ['forkserver', 'spawn', 'fork'],
    cpythonGoal: { method: 'forkserver', ratio: 1 },
    note: 'cold: back to back, each start usually finds its replacement still booting (mostly a Node start-up)',
  },
  {
    // The same, each start waiting (untimed) until the standing children are booted and idle:
    // the cost of a hand-over itself.
    name: 'process_start_join_forkserver_warm',
    ours: 'multiproc_forkserver_warm',
    concurrent: false,
    node: { name: 'node_fork_exit', starter: 'node_fork' },
    cpython: ['forkserver', 'spawn', 'fork'],
    cpythonGoal: { method: 'forkserver', ratio: 1 },
    note: 'warm: each start finds a standing child booted and idle (the wait for it not timed)',
  },
  {
    name: 'process_start_8_concurrent_spawn',
    ours: 'multiproc_spawn',
    concurrent: true,
    node: { name: 'node_fork_exit_x8', starter: 'node_fork' },
    cpython: ['spawn', 'forkserver'],
  },
  {
    name: 'process_start_8_concurrent_thread',
    ours: 'multiproc_thread',
    concurrent: true,
    node: { name: 'node_worker_exit_x8', starter: 'node_worker' },
    cpython: ['fork', 'forkserver'],
  },
  {
    // Two children stand ready; the other six boot as with spawn.
    name: 'process_start_8_concurrent_forkserver',
    ours: 'multiproc_forkserver',
    concurrent: true,
    node: { name: 'node_fork_exit_x8', starter: 'node_fork' },
    cpython: ['forkserver', 'spawn'],
  },
];

/** Measures one starter in a fresh driver process (memoized per run). */
function measureNode(
  ctx: BenchContext,
  who: Starter,
  concurrent: boolean,
  env: { suffix: string; env: NodeJS.ProcessEnv },
): Promise<Stats> {
  const s = sizes(ctx.quick);
  const params: DriverParams = { starter: who, concurrent, n: concurrent ? s.concN : s.seqN, reps: s.reps, warmup: s.warmup };
  return ctx.once(`node:${JSON.stringify(params)}${env.suffix}`, async () => {
    await ctx.settle();
    ctx.log(`  ${who}${concurrent ? ` x${params.n}` : ''}${env.suffix}`);
    return summarize(await runDriver(__filename, params, env.env));
  });
}

/** The CPython anchors of one group, all start methods in one run (memoized per run). */
function measureCPython(ctx: BenchContext, concurrent: boolean): Promise<Map<string, Stats>> {
  const s = sizes(ctx.quick);
  const group = concurrent ? 'start_concurrent' : 'start';
  const n = concurrent ? s.concN : s.seqN;
  return ctx.once(`cpython:${group}`, async () => {
    await ctx.settle();
    ctx.log(`  cpython ${group}`);
    return runCPython(group, ['--n', String(n), '--reps', String(s.reps), '--warmup', String(s.warmup)]);
  });
}

function define(f: StartFigure, variant: { suffix: string; env: NodeJS.ProcessEnv }): BenchDef {
  const name = f.name + variant.suffix;
  const unit = f.concurrent ? 'ms' : 'ms/process';
  return {
    name,
    async run(ctx) {
      // Anchor first, then ours, back to back: both see the same machine state.
      const anchor = await settled(measureNode(ctx, f.node.starter, f.concurrent, variant));
      const ours = await measureNode(ctx, f.ours, f.concurrent, variant);
      const py = await settled(measureCPython(ctx, f.concurrent));
      const rows: Row[] = [
        compare(name, unit, 'lower', ours, f.node.name + variant.suffix, anchor, f.node.goal ? { goal: f.node.goal } : {}),
      ];
      for (const method of f.cpython) {
        const key = `cpython_${method}${f.concurrent ? '_x8' : ''}`;
        const stats = py instanceof Error ? py : (py.get(key) ?? new Error(`cpython.py printed no ${key}`));
        // CPython does not read NODE_EXTRA_CA_CERTS: both variants use the same measurement.
        const extra = {
          ...(f.cpythonGoal?.method === method ? { goal: f.cpythonGoal.ratio } : {}),
          ...(f.note !== undefined && method === f.cpython[0] ? { note: f.note } : {}),
        };
        rows.push(compare(name, unit, 'lower', ours, key, stats, extra));
      }
      return rows;
    },
  };
}

export const benches: BenchDef[] = FIGURES.flatMap((f) => ENV_VARIANTS.map((v) => define(f, v)));

if (require.main === module) driverMain<DriverParams>(measureStarts);
