// `multiproc map <module>#<export> [inputs.jsonl|-]`: a pool over JSON-lines input. Each
// non-blank input line is one item; the results are written to stdout as JSON lines in input
// order (one line per item; `null` for an item that failed). Failures are reported on stderr
// with their line number, and the others go on unless --fail-fast. See docs/pool.md.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { Pool, ProgressBar, ThreadPool, type AsyncResult, type Progress } from '../pool/pool.js';

export const MAP_USAGE = `Usage: multiproc map <module>#<export> [inputs.jsonl | -] [options]

Runs <export> of <module> over every line of a JSON-lines file (or stdin, with - or no file)
in a pool of workers, and writes one JSON line per input line to stdout, in input order.
<module> is a file path (relative to the current directory) or a package name, ESM or CommonJS;
without #<export> the default export is used.

Options:
  --processes N   number of workers (default: the number of CPUs)
  --chunksize N   items sent to a worker at a time (default 1)
  --threads       run the workers as threads (a ThreadPool) instead of processes
  --starmap       each line is an array of arguments: fn(...line)
  --fail-fast     stop at the first bad line or failed item
  --no-progress   no progress bar on stderr
  --import M      preload module M in this process and every worker, as node --import does;
                  for a TypeScript module: --import tsx (the tsx package must be installed)
  --trace FILE    write a Chrome trace-event file of the run (open it in chrome://tracing
                  or https://ui.perfetto.dev): one row per worker, one slice per chunk
  --timings       print per worker the chunks it ran and their mean run and queue times, on
                  stderr at the end

A line that is not valid JSON, or an item whose call throws, is reported on stderr with its line
number and gives null in the output; the exit code is then 1.
`;

interface MapArgs {
  target: string;
  input: string;
  processes: number | undefined;
  chunksize: number;
  threads: boolean;
  starmap: boolean;
  failFast: boolean;
  progress: boolean;
  imports: string[];
  trace: string | undefined;
  timings: boolean;
}

class UsageError extends Error {}

function positiveInt(name: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < 1)
    throw new UsageError(`${name} needs an integer >= 1, got ${v === undefined ? 'nothing' : `'${v}'`}`);
  return n;
}

function parse(argv: string[]): MapArgs | 'help' {
  let parsed: ReturnType<typeof parseMapArgs>;
  try {
    parsed = parseMapArgs(argv);
  } catch (err) {
    // parseArgs names the option; its codes (ERR_PARSE_ARGS_*) say nothing a user needs.
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals: pos } = parsed;
  if (v.help) return 'help';
  if (pos.length === 0) throw new UsageError('missing <module>#<export>');
  if (pos.length > 2) throw new UsageError(`too many arguments: ${pos.slice(2).join(' ')}`);
  if (v.trace === '') throw new UsageError('--trace needs a file path');
  return {
    target: pos[0]!,
    input: pos[1] ?? '-',
    processes: v.processes === undefined ? undefined : positiveInt('--processes', v.processes),
    chunksize: v.chunksize === undefined ? 1 : positiveInt('--chunksize', v.chunksize),
    threads: v.threads ?? false,
    starmap: v.starmap ?? false,
    failFast: v['fail-fast'] ?? false,
    progress: !(v['no-progress'] ?? false),
    imports: v.import ?? [],
    trace: v.trace,
    timings: v.timings ?? false,
  };
}

function parseMapArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      processes: { type: 'string', short: 'p' },
      chunksize: { type: 'string', short: 'c' },
      threads: { type: 'boolean' },
      starmap: { type: 'boolean' },
      'fail-fast': { type: 'boolean' },
      'no-progress': { type: 'boolean' },
      import: { type: 'string', multiple: true },
      trace: { type: 'string' },
      timings: { type: 'boolean' },
    },
  });
}

/** `./lib.mjs#square` → the module's URL and the export name (`default` without `#`). */
export function resolveTarget(spec: string, cwd = process.cwd()): { url: string; exportName: string } {
  const hash = spec.lastIndexOf('#');
  const mod = hash >= 0 ? spec.slice(0, hash) : spec;
  const exportName = hash >= 0 && hash < spec.length - 1 ? spec.slice(hash + 1) : 'default';
  if (!mod) throw new UsageError(`no module in '${spec}'`);
  const asFile = path.resolve(cwd, mod);
  if (mod.startsWith('.') || path.isAbsolute(mod) || fs.existsSync(asFile)) {
    if (!fs.existsSync(asFile)) throw new UsageError(`module not found: ${asFile}`);
    return { url: pathToFileURL(asFile).href, exportName };
  }
  try {
    return { url: pathToFileURL(createRequire(path.join(cwd, 'noop.js')).resolve(mod)).href, exportName };
  } catch {
    throw new UsageError(`cannot find module '${mod}' from ${cwd} (a file path needs ./ or an existing file)`);
  }
}

type AnyFn = (...args: unknown[]) => unknown;

async function loadTarget(url: string, exportName: string): Promise<AnyFn> {
  let mod: Record<string, unknown> & { default?: Record<string, unknown> };
  try {
    mod = (await import(url)) as typeof mod;
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_UNKNOWN_FILE_EXTENSION')
      throw new UsageError(
        `${url}: Node cannot import this file type by itself; for TypeScript add --import tsx (with the tsx package installed)`,
      );
    throw err;
  }
  let fn = mod[exportName];
  // A CommonJS module imported from here: its module.exports is the default export.
  if (fn === undefined && mod.default && typeof mod.default === 'object') fn = mod.default[exportName];
  if (typeof fn !== 'function')
    throw new UsageError(`${url} has no exported function '${exportName}' (found ${fn === undefined ? 'nothing' : typeof fn})`);
  return fn as AnyFn;
}

// ---- worker side: the pool's initializer and task (exported: the workers import this module) ----

let target: AnyFn | undefined;

/** @internal Pool initializer: import the user's function once per worker. */
export async function mapInit(url: string, exportName: string): Promise<void> {
  target = await loadTarget(url, exportName);
}

/** @internal One chunk: each item's result or error, so that a failing item fails only itself. */
export async function mapChunk(items: unknown[], star: boolean): Promise<[ok: boolean, value: unknown][]> {
  const out: [boolean, unknown][] = [];
  for (const item of items) {
    try {
      out.push([true, await (star ? target!(...(item as unknown[])) : target!(item))]);
    } catch (err) {
      out.push([false, err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${String(err)}`]);
    }
  }
  return out;
}

// ---- the command --------------------------------------------------------------------------

interface Chunk {
  lines: number[];
  /** Per item: a parse error, or the position of the item in the chunk's request. */
  bad: (string | undefined)[];
  result: AsyncResult<[boolean, unknown][]> | undefined;
}

/** Lines of a file: counted first for the progress bar's total (stdin's total comes at its end). */
function countLines(file: string): number | undefined {
  try {
    const fd = fs.openSync(file, 'r');
    const buf = Buffer.allocUnsafe(1 << 16);
    let n = 0;
    let last = 10;
    for (let got; (got = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) {
      for (let i = 0; i < got; i++) if (buf[i] === 10) n++;
      last = buf[got - 1]!;
    }
    fs.closeSync(fd);
    return last === 10 ? n : n + 1;
  } catch {
    return undefined;
  }
}

/** Run `multiproc map`; resolves with the exit code (0 ok, 1 some item failed, 2 usage). */
export async function mapCommand(argv: string[]): Promise<number> {
  let a: MapArgs | 'help';
  let fnUrl: { url: string; exportName: string };
  try {
    a = parse(argv);
    if (a === 'help') {
      process.stdout.write(MAP_USAGE);
      return 0;
    }
    fnUrl = resolveTarget(a.target);
    if (a.imports.every((m) => hasImport(process.execArgv, m))) await loadTarget(fnUrl.url, fnUrl.exportName);
    if (a.input !== '-' && !fs.existsSync(a.input)) throw new UsageError(`input file not found: ${a.input}`);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`multiproc map: ${err.message}\n\n${MAP_USAGE}`);
    return 2;
  }
  const args = a;
  // Preloads must be in this process (to import the module) and reach every worker: workers
  // start with this process's execArgv, so the command runs again with them added.
  const missing = args.imports.filter((m) => !hasImport(process.execArgv, m));
  if (missing.length) return rerunWith(missing);
  const stdout = process.stdout;
  const err = (msg: string): void => void process.stderr.write(`multiproc map: ${msg}\n`);
  const lineTotal = args.input === '-' ? undefined : countLines(args.input);
  const bar = args.progress ? new ProgressBar({ label: 'map' }) : undefined;
  const started = Date.now();
  let done = 0;
  let failed = 0;
  let total: number | undefined;
  const report = (): void => {
    if (!bar) return;
    const elapsedMs = Date.now() - started;
    const p: Progress = { done, failed, total: total ?? lineTotal, rate: elapsedMs > 0 ? (done * 1000) / elapsedMs : 0, elapsedMs };
    bar.update(p);
  };

  const P = args.threads ? ThreadPool : Pool;
  const timings = args.timings ? new Map<string, { tasks: number; runMs: number; queuedMs: number }>() : undefined;
  const pool = new P({
    processes: args.processes ?? null,
    initializer: mapInit,
    initargs: [fnUrl.url, fnUrl.exportName],
    trace: args.trace ?? null,
    onTask: timings
      ? (t) => {
          const w = timings.get(t.worker) ?? { tasks: 0, runMs: 0, queuedMs: 0 };
          w.tasks++;
          w.runMs += t.runMs;
          w.queuedMs += t.queuedMs;
          timings.set(t.worker, w);
        }
      : null,
  });
  const input = args.input === '-' ? process.stdin : fs.createReadStream(args.input);
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  const window = Math.max(4, pool._processes * 4);
  const queue: Chunk[] = [];
  // Widened: fail() sets it (--fail-fast), and narrowing does not follow into a closure.
  let stop = false as boolean;
  let wake: (() => void) | undefined;

  const write = async (s: string): Promise<void> => {
    if (!stdout.write(s)) await new Promise((r) => stdout.once('drain', r));
  };
  const fail = (line: number, why: string): void => {
    failed++;
    err(`line ${line}: ${why}`);
    if (args.failFast) stop = true;
  };
  // Writes the chunks at the head of the queue once they settled, in order.
  const drain = async (all: boolean): Promise<void> => {
    while (queue.length && (all || queue.length >= window || queue[0]!.result?.ready() !== false)) {
      const c = queue.shift()!;
      let results: [boolean, unknown][] = [];
      let chunkError: string | undefined;
      if (c.result) {
        try {
          results = await c.result.get();
        } catch (e) {
          chunkError = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        }
      }
      let k = 0;
      let out = '';
      for (let i = 0; i < c.lines.length; i++) {
        if (stop) break;
        done++;
        const bad = c.bad[i];
        if (bad !== undefined) {
          fail(c.lines[i]!, bad);
          out += 'null\n';
          continue;
        }
        const r = chunkError === undefined ? results[k++] : undefined;
        if (!r || !r[0]) {
          fail(c.lines[i]!, r ? String(r[1]) : chunkError!);
          out += 'null\n';
        } else {
          // JSON.stringify gives undefined for undefined and functions, which its type leaves out.
          out += `${(JSON.stringify(r[1]) as string | undefined) ?? 'null'}\n`;
        }
      }
      if (out) await write(out);
      report();
      if (stop) return;
    }
  };

  let lineNo = 0;
  let cur: Chunk = { lines: [], bad: [], result: undefined };
  let items: unknown[] = [];
  const flush = (): void => {
    if (!cur.lines.length) return;
    if (items.length) {
      cur.result = pool.applyAsync(mapChunk, [items, args.starmap]);
      // Settles the writer's wait for the head of the queue.
      void cur.result.wait().then(() => wake?.());
    }
    queue.push(cur);
    cur = { lines: [], bad: [], result: undefined };
    items = [];
  };
  try {
    for await (const text of rl) {
      lineNo++;
      if (!text.trim()) continue;
      cur.lines.push(lineNo);
      try {
        const v: unknown = JSON.parse(text);
        if (args.starmap && !Array.isArray(v)) throw new Error('with --starmap each line must be a JSON array of arguments');
        items.push(v);
        cur.bad.push(undefined);
      } catch (e) {
        cur.bad.push(`invalid JSON: ${(e as Error).message}`);
      }
      if (cur.lines.length >= args.chunksize) flush();
      if (queue.length >= window) {
        // Wait for the oldest chunk, then write what is ready.
        while (queue.length >= window && !stop) {
          if (queue[0]!.result?.ready() === false) await new Promise<void>((r) => (wake = r));
          await drain(false);
        }
      } else if (queue[0]?.result?.ready() !== false) await drain(false);
      if (stop) break;
    }
    if (!stop) {
      flush();
      total = done + queue.reduce((n, c) => n + c.lines.length, 0);
      await drain(true);
    }
  } finally {
    rl.close();
    if (args.input === '-') process.stdin.destroy();
    else input.destroy();
    pool.terminate();
    await pool.join();
  }
  if (stop) {
    bar?.finish();
    err(`stopped at the first failure (--fail-fast) after ${done} item(s)`);
    return 1;
  }
  report();
  bar?.finish();
  if (timings) printTimings(timings);
  if (args.trace) err(`trace written to ${args.trace}`);
  if (failed) err(`${failed} of ${done} item(s) failed`);
  return failed ? 1 : 0;
}

function printTimings(timings: Map<string, { tasks: number; runMs: number; queuedMs: number }>): void {
  const rows = [...timings].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  // A task is one chunk (--chunksize lines).
  const lines = ['worker                      chunks   run ms (mean)   queued ms (mean)'];
  for (const [name, w] of rows) {
    lines.push(
      `${name.padEnd(26)} ${String(w.tasks).padStart(7)} ${(w.runMs / w.tasks).toFixed(2).padStart(15)} ${(w.queuedMs / w.tasks).toFixed(2).padStart(18)}`,
    );
  }
  process.stderr.write(`${lines.join('\n')}\n`);
}

function hasImport(execArgv: readonly string[], module: string): boolean {
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if ((a === '--import' && execArgv[i + 1] === module) || a === `--import=${module}`) return true;
  }
  return false;
}

/** Run this command again in a Node started with `--import` for each of `modules`; its exit code. */
function rerunWith(modules: string[]): Promise<number> {
  const argv = [...process.execArgv, ...modules.flatMap((m) => ['--import', m]), ...process.argv.slice(1)];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { stdio: 'inherit' });
    child.once('error', (e) => {
      process.stderr.write(`multiproc map: cannot start node with --import ${modules.join(', ')}: ${e.message}\n`);
      resolve(2);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
