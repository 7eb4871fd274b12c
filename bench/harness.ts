// Timing and reporting helpers shared by every bench area (`bench/*.bench.ts`) and by the
// driver processes those areas start. Nothing here imports the library: the orchestrator and
// the raw-anchor drivers must not pay for it.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Whether a smaller value is the better one (ms) or a larger one (tasks/s). */
export type Better = 'lower' | 'higher';

/** A repetition whose foreign CPU share is above this (% of all cores) is called noisy. */
export const NOISY_PCT = 10;

// ---------------------------------------------------------------------------------------------
// Foreign CPU: how much CPU *other* processes used while we measured. This VM is shared with
// other jobs; a figure taken while a neighbour held a core is not comparable to one taken on an
// idle machine, so every repetition records it and noisy ones are dropped or flagged.
// ---------------------------------------------------------------------------------------------

/** CPU counters in clock ticks (USER_HZ, the unit of both /proc/stat and /proc/<pid>/stat). */
export interface CpuSnapshot {
  total: number; // every tick of every CPU
  busy: number; // total minus idle and iowait
  ours: number; // ticks used by this process tree, including reaped children
}

/** A CPU snapshot, or null when /proc is missing (not Linux): the figures then carry no noise. */
export function cpuSnapshot(): CpuSnapshot | null {
  try {
    const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    // user nice system idle iowait irq softirq steal: guest time is already inside user.
    const vals = fields.slice(1, 9).map(Number);
    const total = vals.reduce((a, b) => a + b, 0);
    return { total, busy: total - vals[3]! - vals[4]!, ours: treeTicks(process.pid) };
  } catch {
    return null;
  }
}

/** Below this many ticks between two snapshots (200 ms wall on 2 CPUs) the share is not resolved. */
const MIN_TICKS = 40;

/**
 * % of the whole machine (100 = all cores) used by processes outside our tree between a and b;
 * null when unknown. Counters tick every 10 ms, so intervals shorter than MIN_TICKS give null
 * rather than a share that is all rounding.
 */
export function foreignCpuPct(a: CpuSnapshot | null, b: CpuSnapshot | null): number | null {
  if (!a || !b || b.total - a.total < MIN_TICKS) return null;
  const pct = (100 * (b.busy - a.busy - (b.ours - a.ours))) / (b.total - a.total);
  return Math.round(Math.min(100, Math.max(0, pct)) * 10) / 10;
}

// CPU ticks of `root` and every live descendant. Counting descendants (not only reaped children)
// matters for helpers that outlive a repetition, e.g. Python's fork server, which reaps its own
// children: without this their CPU would look foreign.
function treeTicks(root: number): number {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after "(comm)", which may itself hold spaces: state ppid ... utime(14) stime cutime cstime.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
      stats.set(Number(entry), { ppid: Number(rest[1]), ticks });
    } catch {
      // The process ended while we read /proc.
    }
  }
  let sum = 0;
  const todo = [root];
  const seen = new Set<number>();
  while (todo.length > 0) {
    const pid = todo.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    sum += stats.get(pid)?.ticks ?? 0;
    for (const [child, s] of stats) if (s.ppid === pid) todo.push(child);
  }
  return sum;
}

/** Wait (at most maxMs) until other processes use less than thresholdPct of the CPUs. */
export async function waitQuiet(maxMs: number, thresholdPct = NOISY_PCT): Promise<number | null> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const a = cpuSnapshot();
    await sleep(250);
    const pct = foreignCpuPct(a, cpuSnapshot());
    if (pct === null || pct < thresholdPct || Date.now() >= deadline) return pct;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Repetitions and statistics.
// ---------------------------------------------------------------------------------------------

/** One repetition: its value and the foreign CPU share while it ran. */
export interface Sample {
  value: number;
  foreignPct: number | null;
}

/** The repetitions of one measurement, and the foreign CPU over all of them together. */
export interface Measurement {
  samples: Sample[];
  /** Over the whole timed loop: still known when each repetition is too short to resolve. */
  foreignPct: number | null;
}

/** A timed loop shorter than this gets more repetitions, so that its foreign CPU is resolved. */
export const MIN_LOOP_MS = 300;

/**
 * Runs `warmup` once untimed, then `rep` at least `reps` times, recording each repetition's value
 * (what `rep` returns, e.g. ms per process) with the foreign CPU while it ran. Very fast
 * repetitions are repeated until the loop lasts MIN_LOOP_MS (at most 10x `reps`): their noise is
 * then known, and their median steadier. Runs in driver processes.
 */
export async function repeat(reps: number, rep: () => Promise<number>, warmup?: () => Promise<unknown>): Promise<Measurement> {
  await warmup?.();
  const samples: Sample[] = [];
  const first = cpuSnapshot();
  const t0 = nowMs();
  for (let i = 0; i < reps || (nowMs() - t0 < MIN_LOOP_MS && i < 10 * reps); i++) {
    const a = cpuSnapshot();
    const value = await rep();
    samples.push({ value, foreignPct: foreignCpuPct(a, cpuSnapshot()) });
  }
  return { samples, foreignPct: foreignCpuPct(first, cpuSnapshot()) };
}

/** High-resolution wall clock in ms. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The summary of a measurement: `value` is the median of the repetitions that were kept. */
export interface Stats {
  value: number;
  min: number;
  max: number;
  n: number; // repetitions kept
  dropped: number; // noisy repetitions left out
  foreignPct: number | null; // median foreign CPU over the kept repetitions
  noisy: boolean; // some kept repetition was noisy: read the figure with care
  samples: number[];
}

/**
 * Median/min/max of the samples. Noisy repetitions (foreign CPU > NOISY_PCT) are dropped as long
 * as at least two clean ones remain; otherwise all are kept and the figure is flagged noisy.
 * Repetitions too short to resolve their own noise are judged by the whole loop's.
 */
export function summarize(m: Measurement): Stats {
  const { samples } = m;
  if (samples.length === 0) throw new Error('no samples');
  const isNoisy = (s: Sample) => (s.foreignPct ?? 0) > NOISY_PCT;
  const clean = samples.filter((s) => !isNoisy(s));
  const kept = clean.length >= 2 ? clean : samples;
  const values = kept.map((s) => s.value);
  const perRep = kept.map((s) => s.foreignPct).filter((p): p is number => p !== null);
  const foreignPct = perRep.length > 0 ? Math.round(median(perRep) * 10) / 10 : m.foreignPct;
  return {
    value: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    n: kept.length,
    dropped: samples.length - kept.length,
    foreignPct,
    noisy: kept.some(isNoisy) || (perRep.length === 0 && (m.foreignPct ?? 0) > NOISY_PCT),
    samples: values.map((v) => round(v)),
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Rounds to 4 significant digits: more would be noise on this machine. */
export function round(x: number): number {
  return Number.isFinite(x) ? Number(x.toPrecision(4)) : x;
}

// ---------------------------------------------------------------------------------------------
// Bench definitions: what an area file (`bench/<area>.bench.ts`) exports for run.ts.
// ---------------------------------------------------------------------------------------------

/** What run.ts hands to every bench definition. */
export interface BenchContext {
  /** --quick: small sizes, the whole run within about a minute. */
  quick: boolean;
  /** Runs `measure` once per key per run: one anchor measurement can feed several figures. */
  once<T>(key: string, measure: () => Promise<T>): Promise<T>;
  /** Call before each measurement: waits (bounded) for other load on the machine to drop. */
  settle(): Promise<void>;
  /** Progress for the human, on stderr. */
  log(message: string): void;
}

/** One figure of ours; `run` measures it and returns one row per anchor it is compared with. */
export interface BenchDef {
  /** The figure's name: JSON `bench` and what the command-line filter matches. */
  name: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

/** The value of a promise, or the Error it rejected with: a failed anchor must not hide our figure. */
export async function settled<T>(p: Promise<T>): Promise<T | Error> {
  try {
    return await p;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

// ---------------------------------------------------------------------------------------------
// Rows: one figure of ours beside one anchor. This is what run.ts prints (table + JSON line).
// ---------------------------------------------------------------------------------------------

export interface Row {
  bench: string;
  value: number;
  unit: string;
  anchor: string;
  anchor_value: number | null;
  /** > 1 means multiproc is better, whatever the unit's direction. */
  ratio: number | null;
  better: Better;
  min: number;
  max: number;
  n: number;
  foreign_cpu_pct: number | null;
  anchor_min?: number;
  anchor_max?: number;
  anchor_foreign_cpu_pct?: number | null;
  /** Either side had noisy repetitions it could not drop. */
  noisy: boolean;
  /** The ratio this figure should reach (e.g. 0.9 = within 10 % of the anchor), when there is one. */
  goal?: number;
  error?: string;
  note?: string;
}

/** A row comparing `ours` with an anchor; `anchor` may be an Error when the anchor failed. */
export function compare(
  bench: string,
  unit: string,
  better: Better,
  ours: Stats,
  anchorName: string,
  anchor: Stats | Error,
  extra: { goal?: number; note?: string } = {},
): Row {
  const row: Row = {
    bench,
    value: round(ours.value),
    unit,
    anchor: anchorName,
    anchor_value: null,
    ratio: null,
    better,
    min: round(ours.min),
    max: round(ours.max),
    n: ours.n,
    foreign_cpu_pct: ours.foreignPct,
    noisy: ours.noisy,
    ...extra,
  };
  if (anchor instanceof Error) return { ...row, error: `anchor failed: ${anchor.message}` };
  const ratio = better === 'lower' ? anchor.value / ours.value : ours.value / anchor.value;
  return {
    ...row,
    anchor_value: round(anchor.value),
    ratio: Number(ratio.toFixed(3)),
    anchor_min: round(anchor.min),
    anchor_max: round(anchor.max),
    anchor_foreign_cpu_pct: anchor.foreignPct,
    noisy: ours.noisy || anchor.noisy,
  };
}

// ---------------------------------------------------------------------------------------------
// Child processes: drivers (fresh node processes that do the timing) and the Python anchors.
// ---------------------------------------------------------------------------------------------

/** `process.env` without `name`: for figures that must not pay e.g. NODE_EXTRA_CA_CERTS. */
export function envWithout(name: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== name));
}

interface RunResult {
  stdout: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // A hung measurement must not hang the whole run.
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    let settled = false;
    const settle = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (code === 0) {
        resolve({ stdout });
        return;
      }
      const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `exit ${code ?? signal}`;
      reject(new Error(`${path.basename(args[0] ?? cmd)} ${why}: ${stderr.trim().slice(-3000)}`));
    };
    child.on('close', settle);
    // A grandchild that outlives the driver keeps its stdout open, so 'close' may never come:
    // settle shortly after the driver itself exited, with what it printed by then.
    child.on('exit', (code, signal) => setTimeout(() => settle(code, signal), 500).unref());
  });
}

const RESULT_KEY = 'driver_result';

/**
 * Runs `script` (a compiled bench module whose main block calls `driverMain`) in a fresh node
 * process with `params`, and returns its samples. Fresh processes keep each measurement's module
 * cache, heap and environment under control.
 */
export async function runDriver(
  script: string,
  params: object,
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 180_000,
): Promise<Measurement> {
  const { stdout } = await run(process.execPath, [script, JSON.stringify(params)], env, timeoutMs);
  // Children started by the driver share its stdout, so look for our line among any others.
  const line = stdout.split('\n').find((l) => l.startsWith(`{"${RESULT_KEY}"`));
  if (!line) throw new Error(`driver printed no result: ${stdout.slice(-400)}`);
  return (JSON.parse(line) as Record<string, Measurement>)[RESULT_KEY]!;
}

/** The main block of a driver: runs `measure(params from argv)` and prints its samples. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- P says what the parent sent as JSON; each driver names it
export function driverMain<P>(measure: (params: P) => Promise<Measurement>): void {
  const params = JSON.parse(process.argv[2] ?? '{}') as P;
  measure(params).then(
    (result) => {
      process.stdout.write(`${JSON.stringify({ [RESULT_KEY]: result })}\n`);
      // Exit even if a handle the measurement opened is still referenced.
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** A JSON line printed by bench/anchors/cpython.py. */
export interface PythonRecord {
  bench: string;
  samples: number[];
  foreign_cpu_pct: (number | null)[];
  foreign_cpu_pct_all: number | null;
  [key: string]: unknown;
}

/** Path of a file under the source tree's bench/ (this file runs from build/bench/). */
export function benchSource(...parts: string[]): string {
  return path.join(__dirname, '..', '..', 'bench', ...parts);
}

/** Runs bench/anchors/cpython.py with a group and sizes; returns its records by bench name. */
export async function runCPython(group: string, args: string[], timeoutMs = 300_000): Promise<Map<string, Stats>> {
  const python = process.env.PYTHON ?? 'python3';
  const script = benchSource('anchors', 'cpython.py');
  const { stdout } = await run(python, [script, group, ...args], process.env, timeoutMs);
  const out = new Map<string, Stats>();
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const rec = JSON.parse(line) as PythonRecord;
    const samples = rec.samples.map((value, i) => ({ value, foreignPct: rec.foreign_cpu_pct[i] ?? null }));
    out.set(rec.bench, summarize({ samples, foreignPct: rec.foreign_cpu_pct_all }));
  }
  return out;
}
