// `npm run bench [-- [--quick] [--json] [FILTER]]`: measures every figure beside its anchors in
// one run, prints one JSON line per (figure, anchor) as it goes, then a table. See
// docs/benchmarks.md.
import * as os from 'node:os';
import { type BenchContext, type BenchDef, type Row, NOISY_PCT, round, waitQuiet } from './harness.js';
import { benches as ipcBenches } from './ipc.bench.js';
import { benches as poolBenches } from './pool.bench.js';
import { benches as managersBenches } from './managers.bench.js';
import { benches as processBenches } from './process.bench.js';
import { benches as redisBenches } from './redis.bench.js';
import { benches as redisObjectsBenches } from './redis_objects.bench.js';
import { benches as synchronizeBenches } from './synchronize.bench.js';

/** Every area's figures, in run order. A new area file adds its `benches` here. */
const ALL: BenchDef[] = [
  ...processBenches,
  ...synchronizeBenches,
  ...ipcBenches,
  ...managersBenches,
  ...poolBenches,
  ...redisBenches,
  ...redisObjectsBenches,
];

const USAGE = `usage: npm run bench -- [--quick] [--json] [FILTER]
  --quick   small sizes, the whole run in about a minute
  --json    print only the JSON lines (one per figure and anchor)
  FILTER    regular expression; only figures whose name matches run`;

interface Options {
  quick: boolean;
  json: boolean;
  filter: RegExp | null;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { quick: false, json: false, filter: null };
  for (const arg of argv) {
    if (arg === '--quick') opts.quick = true;
    else if (arg === '--json') opts.json = true;
    else if (arg === '--help' || arg === '-h') exitWith(USAGE, 0);
    else if (arg.startsWith('-')) exitWith(`unknown option ${arg}\n${USAGE}`, 2);
    else if (opts.filter) exitWith(`only one FILTER may be given\n${USAGE}`, 2);
    else opts.filter = new RegExp(arg);
  }
  return opts;
}

function exitWith(message: string, code: number): never {
  (code === 0 ? process.stdout : process.stderr).write(`${message}\n`);
  process.exit(code);
}

function makeContext(opts: Options): BenchContext {
  const memo = new Map<string, Promise<unknown>>();
  return {
    quick: opts.quick,
    once<T>(key: string, measure: () => Promise<T>): Promise<T> {
      if (!memo.has(key)) memo.set(key, measure());
      return memo.get(key) as Promise<T>;
    },
    // Bounded so that a busy neighbour slows the run down only a little; the rows carry the
    // foreign CPU share either way.
    async settle() {
      await waitQuiet(opts.quick ? 1_000 : 5_000);
    },
    log(message: string) {
      if (!opts.json) process.stderr.write(`${message}\n`);
    },
  };
}

/** What a figure that threw prints: the same keys, so that consumers need no special case. */
function errorRow(bench: string, err: unknown): Row {
  const message = err instanceof Error ? err.message : String(err);
  return {
    bench,
    value: NaN,
    unit: '',
    anchor: '',
    anchor_value: null,
    ratio: null,
    better: 'lower',
    min: NaN,
    max: NaN,
    n: 0,
    foreign_cpu_pct: null,
    noisy: false,
    error: message,
  };
}

// ---------------------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------------------

function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (Math.abs(x) >= 10_000) return Math.round(x).toLocaleString('en-US');
  return String(round(x));
}

/** The line of an error (often a child's stderr) that says what went wrong: the first `XxxError: ...`. */
function errorHeadline(error: string): string {
  const lines = error.split('\n').map((l) => l.trim());
  const headline = lines.find((l) => /^\w*Error\b/.test(l)) ?? lines[0]!;
  return headline.slice(0, 140);
}

function notes(row: Row): string {
  const out: string[] = [];
  if (row.error) out.push(`ERROR ${errorHeadline(row.error)} (full text in the JSON line)`);
  const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${x}%`);
  if (row.noisy) out.push(`noisy (foreign CPU ours ${pct(row.foreign_cpu_pct)}, anchor ${pct(row.anchor_foreign_cpu_pct)})`);
  if (row.goal !== undefined && row.ratio !== null) out.push(`goal >= ${row.goal}: ${row.ratio >= row.goal ? 'met' : 'MISSED'}`);
  if (row.note) out.push(row.note);
  return out.join('; ');
}

function printTable(rows: Row[], opts: Options, seconds: number): void {
  const header = ['figure', 'ours', 'min-max', 'unit', 'anchor', 'value', 'min-max', 'ratio', 'notes'];
  const body = rows.map((r) => [
    r.bench,
    fmt(r.value),
    `${fmt(r.min)}-${fmt(r.max)}`,
    r.unit,
    r.anchor,
    fmt(r.anchor_value),
    r.anchor_value === null ? '' : `${fmt(r.anchor_min)}-${fmt(r.anchor_max)}`,
    r.ratio === null ? '-' : r.ratio.toFixed(2),
    notes(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = new Set([1, 2, 5, 6, 7]);
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const mode = opts.quick ? 'quick' : 'full';
  console.log('');
  console.log(`multiproc benchmarks: ${mode} mode, node ${process.version}, ${os.availableParallelism()} CPUs, ${seconds.toFixed(1)} s`);
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const b of body) console.log(line(b));
  console.log('');
  console.log('ours/anchor: median over repetitions, min-max beside it. ratio > 1: multiproc is better');
  console.log('(anchor/ours for times, ours/anchor for rates). noisy: other processes used more than');
  console.log(`${NOISY_PCT}% of the CPUs during repetitions that could not be dropped; rerun before trusting it.`);
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const defs = ALL.filter((d) => !opts.filter || opts.filter.test(d.name));
  if (defs.length === 0) exitWith(`no figure matches ${opts.filter}; figures:\n  ${ALL.map((d) => d.name).join('\n  ')}`, 2);
  const ctx = makeContext(opts);
  const rows: Row[] = [];
  const t0 = Date.now();
  for (const def of defs) {
    ctx.log(def.name);
    let got: Row[];
    try {
      got = await def.run(ctx);
    } catch (err) {
      got = [errorRow(def.name, err)];
    }
    for (const row of got) console.log(JSON.stringify(row));
    rows.push(...got);
  }
  if (!opts.json) printTable(rows, opts, (Date.now() - t0) / 1000);
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

void main();
