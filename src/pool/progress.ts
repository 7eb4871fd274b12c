// Options of pool calls, and what a pool tells about its work while it runs: progress
// (`onProgress`), per-task timings (`onTask`, `result.timings`), a Chrome trace-event file
// (`trace`), and a terminal progress bar (`ProgressBar`) used by `multiproc map`.
import * as fs from 'node:fs';

import { InvalidArgumentError } from '../errors.js';
import type { ContextLike, StartMethod } from '../process.js';
import { isAsyncIterable } from '../util.js';

type AnyFn = (...args: never[]) => unknown;

/** What `onProgress` receives. */
export interface Progress {
  /** Items finished (successfully or not). A map chunk counts as its number of items. */
  done: number;
  /** Items in all; `undefined` while an async iterable (or an imap input) has not ended. */
  total: number | undefined;
  /** Items that failed among `done`. */
  failed: number;
  /** Items per second since the call started. */
  rate: number;
  /** Milliseconds since the call started. */
  elapsedMs: number;
}

/** The timing of one task (a map chunk is one task): what `onTask` receives and `timings` holds. */
export interface TaskTiming {
  /** The worker that ran it (`SpawnPoolWorker-2`). */
  worker: string;
  /** Index, in the call's input, of the task's first item (0 for apply). */
  index: number;
  /** Number of items in the task (1 for apply). */
  items: number;
  /** Milliseconds between the call handing the task to the pool and a worker starting it. */
  queuedMs: number;
  /** Milliseconds the worker spent running it. */
  runMs: number;
  /** Whether it succeeded. */
  ok: boolean;
}

/** Options of `new Pool({...})`, as Python's keyword arguments plus the observers. */
export interface PoolOptions {
  /** Number of workers; defaults to `cpuCount()`. */
  processes?: number | null;
  /** Run in each worker when it starts (exported, or self-contained inline). */
  initializer?: AnyFn | null;
  /** Arguments for `initializer`. */
  initargs?: readonly unknown[];
  /** A worker is replaced by a fresh one after this many tasks (a map chunk counts as one). */
  maxtasksperchild?: number | null;
  /** The context (or start method) whose Process runs the workers; the default context when omitted. */
  context?: ContextLike | StartMethod;
  /** Progress over every call of the pool: `total` is the number of items handed to it so far. */
  onProgress?: ((p: Progress) => void) | null;
  /** Called after every task of every call with its timing. */
  onTask?: ((t: TaskTiming) => void) | null;
  /** A file path: a Chrome trace-event JSON of the run is written there (one row per worker) by join(), or at exit. */
  trace?: string | null;
}

/** Control of one call beyond Python: a signal or a time limit stops it (see docs/pool.md). */
export interface CallOptions {
  /** Aborting it rejects the call with AbortError; a running task is stopped by replacing its worker. */
  signal?: AbortSignal;
  /** Milliseconds from the call; then the call rejects with TimeoutError, as for `signal`. */
  timeout?: number;
  /** Called as the call's tasks finish: `{ done, total, failed, rate, elapsedMs }`. */
  onProgress?: ((p: Progress) => void) | null;
  /** Called after each of the call's tasks with its timing (queue wait, run time, worker). */
  onTask?: ((t: TaskTiming) => void) | null;
}

/** Options of `applyAsync`, `mapAsync` and `starmapAsync`. */
export interface AsyncOptions<T> extends CallOptions {
  /** Called with the result once it is there, before `get()` resolves. */
  callback?: ((result: T) => void) | null;
  /** Called with the error once the call failed, before `get()` rejects. */
  errorCallback?: ((error: unknown) => void) | null;
}

/** Options of `map`-like calls: Python's `chunksize` plus the call options. */
export interface MapOptions extends CallOptions {
  chunksize?: number | null;
}

// ---- checks shared by the pool's calls ------------------------------------------------------

export function checkFunction(fn: unknown, what: string): asserts fn is AnyFn {
  if (typeof fn !== 'function') throw new InvalidArgumentError(`${what}: func must be a function, got ${fn === null ? 'null' : typeof fn}`);
}

function checkHook(h: unknown, name: string, what: string): void {
  if (h !== undefined && h !== null && typeof h !== 'function') throw new InvalidArgumentError(`${what}: ${name} must be a function`);
}

export function checkCallOptions(o: CallOptions | undefined, what: string): void {
  if (o === undefined) return;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError(`${what}: options must be an object`);
  // A negative timeout is 0 (already late), as for every other wait in the library.
  if (o.timeout !== undefined && (typeof o.timeout !== 'number' || Number.isNaN(o.timeout)))
    throw new InvalidArgumentError(`${what}: timeout must be a number of milliseconds`);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal))
    throw new InvalidArgumentError(`${what}: signal must be an AbortSignal`);
  checkHook(o.onProgress, 'onProgress', what);
  checkHook(o.onTask, 'onTask', what);
}

export function checkPoolObservers(o: PoolOptions): void {
  checkHook(o.onProgress, 'onProgress', 'Pool({ onProgress })');
  checkHook(o.onTask, 'onTask', 'Pool({ onTask })');
  if (o.trace !== undefined && o.trace !== null && (typeof o.trace !== 'string' || o.trace === ''))
    throw new InvalidArgumentError('Pool({ trace }): trace must be a file path');
}

export function mapOptions(arg: number | MapOptions | null | undefined, what: string): MapOptions {
  if (arg === undefined || arg === null) return {};
  if (typeof arg === 'number') return { chunksize: arg };
  checkCallOptions(arg, what);
  return arg;
}

export function checkChunksize(c: unknown, what: string): number | undefined {
  if (c === undefined || c === null) return undefined;
  if (typeof c !== 'number' || !Number.isInteger(c) || c < 1)
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a wrong value of any type, shown as String() shows it
    throw new InvalidArgumentError(`${what}: chunksize must be an integer >= 1, got ${String(c)}`);
  return c;
}

/** CPython's default chunksize for map: divmod(len, 4 * processes), plus one if there is a remainder. */
export function defaultChunksize(length: number, processes: number): number {
  if (length === 0) return 0;
  const q = Math.floor(length / (processes * 4));
  return length % (processes * 4) ? q + 1 : q;
}

/**
 * Where the chunks of a map over `length` items begin and end: chunk c is [b[c], b[c + 1]).
 * Without a chunksize, CPython's, ceil(length / (4 * processes)), with the items spread evenly
 * over 4 * processes chunks: no chunk is larger, and equal tasks end together (CPython's last
 * chunk is short, which leaves a worker idle at the end of a call of few long tasks).
 */
export function chunkBounds(length: number, processes: number, chunksize?: number): number[] {
  const bounds = [0];
  if (length === 0) return bounds;
  if (chunksize !== undefined) {
    for (let i = chunksize; i < length + chunksize; i += chunksize) bounds.push(Math.min(i, length));
    return bounds;
  }
  const chunks = Math.min(length, 4 * processes);
  const small = Math.floor(length / chunks);
  const large = length % chunks;
  for (let c = 0, i = 0; c < chunks; c++) bounds.push((i += c < large ? small + 1 : small));
  return bounds;
}

function isIterable(x: unknown): x is Iterable<unknown> {
  return x !== null && x !== undefined && typeof (x as Iterable<unknown>)[Symbol.iterator] === 'function';
}

export function checkIterable(x: unknown, what: string): void {
  if (!isIterable(x) && !isAsyncIterable(x))
    throw new InvalidArgumentError(`${what}: iterable must be an iterable or async iterable, got ${x === null ? 'null' : typeof x}`);
}

// ---- clock, progress, timings ---------------------------------------------------------------

/**
 * @internal Microseconds of CLOCK_MONOTONIC: one clock for every process and thread of the
 * machine, so a worker's stamps and the pool's can be subtracted.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

/** @internal Counts the items of one call (or of the whole pool) and reports them. */
export class Tally {
  done = 0;
  failed = 0;
  total: number | undefined;
  readonly #start = nowUs();
  readonly #onProgress: ((p: Progress) => void) | null | undefined;
  readonly #onTask: ((t: TaskTiming) => void) | null | undefined;

  constructor(
    onProgress: ((p: Progress) => void) | null | undefined,
    onTask: ((t: TaskTiming) => void) | null | undefined,
    total?: number,
  ) {
    this.#onProgress = onProgress;
    this.#onTask = onTask;
    this.total = total;
  }

  /** Whether anybody listens. */
  get active(): boolean {
    return !!(this.#onProgress || this.#onTask);
  }

  /** The call's input ended with `total` items (an imap input, an async iterable). */
  setTotal(total: number, report = true): void {
    if (this.total === total) return;
    this.total = total;
    if (report) this.#report();
  }

  /** More items were handed to the pool (the pool-wide tally: total grows). */
  add(items: number): void {
    this.total = (this.total ?? 0) + items;
  }

  task(t: TaskTiming): void {
    this.done += t.items;
    if (!t.ok) this.failed += t.items;
    if (this.#onTask) safeCall('onTask', this.#onTask, t);
    this.#report();
  }

  progress(): Progress {
    const elapsedMs = (nowUs() - this.#start) / 1000;
    return { done: this.done, total: this.total, failed: this.failed, rate: elapsedMs > 0 ? (this.done * 1000) / elapsedMs : 0, elapsedMs };
  }

  #report(): void {
    if (this.#onProgress) safeCall('onProgress', this.#onProgress, this.progress());
  }
}

function safeCall<T>(what: string, fn: (v: T) => void, v: T): void {
  try {
    fn(v);
  } catch (err) {
    // As for callbacks: reported, and the pool goes on.
    process.stderr.write(`Exception in pool ${what}:\n${err instanceof Error ? (err.stack ?? String(err)) : String(err)}\n`);
  }
}

// ---- trace ----------------------------------------------------------------------------------

interface TraceEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  cat?: string;
  s?: string;
  args?: Record<string, unknown>;
}

const unwritten = new Set<PoolTrace>();
let exitHook = false;

/**
 * @internal The events of a pool's run, written as Chrome trace-event JSON (open it in
 * https://ui.perfetto.dev or chrome://tracing): one row (tid) per worker, one slice per task.
 */
export class PoolTrace {
  readonly #file: string;
  readonly #origin = nowUs();
  readonly #events: TraceEvent[] = [];
  readonly #pid = process.pid;

  constructor(file: string, label: string) {
    this.#file = file;
    this.#events.push({ name: 'process_name', ph: 'M', pid: this.#pid, tid: 0, args: { name: `${label} (pid ${process.pid})` } });
    this.#events.push({ name: 'thread_name', ph: 'M', pid: this.#pid, tid: 0, args: { name: 'pool' } });
    unwritten.add(this);
    if (!exitHook) {
      exitHook = true;
      process.on('exit', () => {
        for (const t of unwritten) t.write();
      });
    }
  }

  /** A worker started: its row. */
  worker(tid: number, name: string, pid: number | undefined): void {
    this.#events.push({ name: 'thread_name', ph: 'M', pid: this.#pid, tid, args: { name: pid ? `${name} (pid ${pid})` : name } });
    this.#events.push({ name: 'thread_sort_index', ph: 'M', pid: this.#pid, tid, args: { sort_index: tid } });
    this.#events.push({ name: 'worker started', ph: 'i', s: 't', pid: this.#pid, tid, ts: this.#ts(nowUs()) });
  }

  /** A task ran on worker `tid` from `startUs` to `endUs` (monotonic µs). */
  task(tid: number, fn: string, startUs: number, endUs: number, t: TaskTiming): void {
    this.#events.push({
      name: fn,
      cat: t.ok ? 'task' : 'task,error',
      ph: 'X',
      pid: this.#pid,
      tid,
      ts: this.#ts(startUs),
      dur: Math.max(0, Math.round((endUs - startUs) * 1000) / 1000),
      args: { index: t.index, items: t.items, queuedMs: round3(t.queuedMs), ok: t.ok },
    });
  }

  /** A worker ended (`reason`: an exit code or signal). */
  ended(tid: number, reason: string): void {
    this.#events.push({ name: `worker ended: ${reason}`, ph: 'i', s: 't', pid: this.#pid, tid, ts: this.#ts(nowUs()) });
  }

  #ts(us: number): number {
    return Math.round((us - this.#origin) * 1000) / 1000;
  }

  /** Write the file (again, with everything so far). Errors are reported on stderr, not thrown. */
  write(): void {
    unwritten.delete(this);
    try {
      fs.writeFileSync(this.#file, JSON.stringify({ traceEvents: this.#events, displayTimeUnit: 'ms' }));
    } catch (err) {
      process.stderr.write(`multiproc: cannot write the pool trace to ${this.#file}: ${(err as Error).message}\n`);
    }
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

// ---- progress bar ---------------------------------------------------------------------------

/** Options of `ProgressBar`. */
export interface ProgressBarOptions {
  /** Where it draws; default `process.stderr`. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Text before the bar. */
  label?: string;
  /** Width of the bar in characters (TTY); default 30. */
  width?: number;
  /** Not a TTY: a line every this many percent (default 10), or every `everyMs` when the total is unknown. */
  everyPct?: number;
  /** Not a TTY and total unknown: a line at most this often (default 5000 ms). On a TTY: redraws at most this often (default 100 ms). */
  everyMs?: number;
  /** Force (or forbid) in-place redrawing; default: whether `stream` is a TTY. */
  tty?: boolean;
}

function human(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n >= 100 ? String(Math.round(n)) : String(Math.round(n * 10) / 10);
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * A terminal progress bar: `bar.update(progress)` is an `onProgress` hook. On a TTY it redraws
 * one line in place; otherwise (a log file, CI) it prints a line every `everyPct` percent.
 *
 *   const bar = new ProgressBar({ label: 'squares' });
 *   await pool.map(square, items, { onProgress: bar.update });
 *   bar.finish();
 */
export class ProgressBar {
  readonly #stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly #label: string;
  readonly #width: number;
  readonly #tty: boolean;
  readonly #everyPct: number;
  readonly #everyMs: number;
  #lastDraw = 0;
  #lastStep = -1;
  #last: Progress | undefined;
  #finished = false;

  constructor(o: ProgressBarOptions = {}) {
    this.#stream = o.stream ?? process.stderr;
    this.#label = o.label ?? '';
    this.#width = o.width ?? 30;
    this.#tty = o.tty ?? !!this.#stream.isTTY;
    this.#everyPct = o.everyPct ?? 10;
    this.#everyMs = o.everyMs ?? (this.#tty ? 100 : 5000);
  }

  /** The `onProgress` hook (bound: pass it as it is). */
  readonly update = (p: Progress): void => {
    if (this.#finished) return;
    this.#last = p;
    const now = Date.now();
    const complete = p.total !== undefined && p.done >= p.total;
    if (this.#tty) {
      if (complete || now - this.#lastDraw >= this.#everyMs) {
        this.#lastDraw = now;
        // A terminal may report 0 (or nothing) for its width: draw for 80 columns then.
        const cols = this.#stream.columns !== undefined && this.#stream.columns >= 20 ? this.#stream.columns : 80;
        this.#stream.write(`\r${this.line(p).slice(0, Math.max(10, cols - 1))}\x1b[K`);
      }
      return;
    }
    if (p.total !== undefined && p.total > 0) {
      const step = Math.floor((100 * p.done) / p.total / this.#everyPct);
      if (step > this.#lastStep) {
        this.#lastStep = step;
        this.#stream.write(`${this.line(p)}\n`);
      }
    } else if (now - this.#lastDraw >= this.#everyMs) {
      this.#lastDraw = now;
      this.#stream.write(`${this.line(p)}\n`);
    }
  };

  /** The text of one line: `label [#####-----]  50% 500/1000 1.2k/s 0s ETA 1s`. */
  line(p: Progress): string {
    const label = this.#label ? `${this.#label} ` : '';
    const failed = p.failed ? ` ${p.failed} failed` : '';
    const rate = `${human(p.rate)}/s`;
    if (p.total === undefined || p.total === 0) return `${label}${p.done} done${failed} ${rate} ${duration(p.elapsedMs)}`;
    const frac = Math.min(1, p.done / p.total);
    const fill = Math.round(frac * this.#width);
    const bar = this.#tty ? `[${'#'.repeat(fill)}${'-'.repeat(this.#width - fill)}] ` : '';
    const eta = p.rate > 0 && p.done < p.total ? ` ETA ${duration(((p.total - p.done) / p.rate) * 1000)}` : '';
    return `${label}${bar}${String(Math.floor(frac * 100)).padStart(3)}% ${p.done}/${p.total}${failed} ${rate} ${duration(p.elapsedMs)}${eta}`;
  }

  /** Draw the last state once more and end the line. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    const p = this.#last;
    if (!p) return;
    if (this.#tty) this.#stream.write(`\r${this.line(p)}\x1b[K\n`);
    else if (
      p.total === undefined ||
      p.total === 0 ||
      Math.floor((100 * p.done) / p.total / this.#everyPct) > this.#lastStep ||
      p.done < p.total
    )
      this.#stream.write(`${this.line(p)}\n`);
  }
}
