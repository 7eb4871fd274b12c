// What pool calls return (Python: `AsyncResult`, `MapResult`, `IMapIterator` of
// `multiprocessing.pool`): results that settle as the pool's workers answer.
import { inspect } from 'node:util';

import { AbortError, InvalidArgumentError, ProcessError, TimeoutError } from '../errors.js';
import type { Pool } from './pool.js';
import { Tally, type CallOptions, type TaskTiming } from './progress.js';
import { isAsyncIterable } from '../util.js';

/** @internal A chunk of work sent to a worker. */
export interface Job {
  id: number;
  fnId: number;
  /** [id, kind, fnId] header + serialized payload. */
  bytes: Uint8Array;
  owner: Owner;
  /** Position of the chunk among the call's chunks. */
  index: number;
  /** Index of the chunk's first item in the call's input, and its number of items. */
  first: number;
  items: number;
  /** When it was handed to the pool (CLOCK_MONOTONIC µs). */
  at: number;
  /** Give back the holds its payload reserved; for a task dropped before it was sent. */
  release: () => void;
}

/** Whatever waits for jobs: an AsyncResult or an imap iterator. */
export interface Owner {
  settled: boolean;
  /** Settled by a signal, timeout or early exit: its running tasks are stopped. */
  cancelled: boolean;
  _onResult(job: Job, ok: boolean, value: unknown): void;
  _fail(err: unknown): void;
  /** The call's progress and onTask observers, when it has any. */
  _tally: Tally | undefined;
  /** A task of the call finished: its timing (before `_onResult`). */
  _timing(t: TaskTiming): void;
}

export function runCallback(what: string, fn: ((v: never) => void) | null | undefined, value: unknown): void {
  if (!fn) return;
  try {
    (fn as (v: unknown) => void)(value);
  } catch (err) {
    // Python's result handler would die here; we report it and go on.
    process.stderr.write(`Exception in pool ${what}:\n${err instanceof Error ? (err.stack ?? String(err)) : inspect(err)}\n`);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * The result of `applyAsync`, `mapAsync` or `starmapAsync` (Python: `AsyncResult`). A failed call
 * never raises an unhandled rejection by itself: the error is kept until `get()` asks for it.
 */
export class AsyncResult<T = unknown> implements Owner {
  /** @internal */ settled = false;
  /** @internal */ cancelled = false;
  #ok = false;
  #value: unknown;
  readonly #promise: Promise<T>;
  #resolve!: (v: T) => void;
  #reject!: (e: unknown) => void;
  readonly #callback: ((result: T) => void) | null | undefined;
  readonly #errorCallback: ((error: unknown) => void) | null | undefined;
  /** @internal Run when the result settles (timers, signal listeners, the pool's bookkeeping). */
  _cleanup: (() => void)[] = [];
  /** @internal The pool, to stop the running tasks of a cancelled call. */
  _pool: Pool | undefined;
  /** @internal */
  _tally: Tally | undefined;
  /**
   * The timing of each task of the call as it finished (one for apply; one per chunk for map):
   * worker, queue wait and run time in ms. A task whose worker died has none.
   */
  readonly timings: TaskTiming[] = [];

  /** @internal Made by the pool. */
  constructor(callback?: ((result: T) => void) | null, errorCallback?: ((error: unknown) => void) | null) {
    this.#callback = callback;
    this.#errorCallback = errorCallback;
    this.#promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#promise.catch(() => undefined);
  }

  /** Whether the call has completed (successfully or not). */
  ready(): boolean {
    return this.settled;
  }

  /** Whether the call completed without an error. @throws ProcessError (ERR_MP_NOT_READY) when not ready yet, as Python's ValueError. */
  successful(): boolean {
    if (!this.settled) throw new ProcessError(`${this.toString()} not ready`, { code: 'ERR_MP_NOT_READY' });
    return this.#ok;
  }

  /** Resolve once the result is ready, or after `timeout` ms (then check `ready()`). */
  async wait(timeout?: number): Promise<void> {
    if (this.settled) return;
    await this.#within(timeout).catch(() => undefined);
  }

  /**
   * The result: resolves with the value, rejects with the task's error (its own class, remote
   * stack as `cause`), or with TimeoutError when not ready within `timeout` ms (the call goes on).
   */
  get(timeout?: number): Promise<T> {
    if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout)))
      throw new InvalidArgumentError('get(timeout): timeout must be a number of milliseconds');
    if (this.settled || timeout === undefined) return this.#promise;
    return this.#within(timeout);
  }

  #within(timeout: number | undefined): Promise<T> {
    if (timeout === undefined) return this.#promise;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TimeoutError(`the result was not ready within ${timeout} ms`)), Math.max(0, timeout));
      this.#promise.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the task's own failure, whatever it threw
          reject(e);
        },
      );
    });
  }

  /** @internal */
  _set(ok: boolean, value: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.#ok = ok;
    this.#value = value;
    for (const c of this._cleanup) c();
    this._cleanup = [];
    if (ok) {
      runCallback('callback', this.#callback, value);
      this.#resolve(value as T);
    } else {
      runCallback('errorCallback', this.#errorCallback, value);
      this.#reject(value);
    }
  }

  /** @internal */
  _onResult(_job: Job, ok: boolean, value: unknown): void {
    this._set(ok, value);
  }

  /** @internal */
  _timing(t: TaskTiming): void {
    if (this.settled) return;
    this.timings.push(t);
    this._tally?.task(t);
  }

  /** @internal */
  _fail(err: unknown): void {
    this._set(false, err);
  }

  /** @internal Settle with `err` and stop the tasks still running for this call. */
  _cancel(err: unknown): void {
    if (this.settled) return;
    this.cancelled = true;
    this._set(false, err);
    this._pool?._stopRunning(this);
  }

  toString(): string {
    return `<${this.constructor.name} ${this.settled ? (this.#ok ? 'successful' : 'failed') : 'pending'}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
  /** @internal for tests */
  get _value(): unknown {
    return this.#value;
  }
}

function copyNumbers(from: Float64Array | Int32Array, to: unknown[], at: number): void {
  for (let i = 0; i < from.length; i++) to[at + i] = from[i];
}

// Up to this length an array of doubles keeps flat storage when its length is set (V8 turns a
// longer one into a dictionary).
const MAX_FLAT_DOUBLES = 1 << 24;

// A large array is made in fresh pages (V8's large-object space), and on Linux every 4 KiB page
// costs a page fault the first time it is written: in a virtual machine that is ~10 µs, more
// than the tasks of a map of small numbers take to run. `new Array(n)` starts as an array of
// small integers, and the first result that is not one (a square above 2^31, a fraction) copies
// it into a new array of doubles: the faults twice over. An array of doubles with its length
// set is allocated once.
function arrayForNumbers(n: number): unknown[] {
  if (n > MAX_FLAT_DOUBLES) return new Array<unknown>(n);
  const a: unknown[] = [0.5];
  a.length = n;
  return a;
}

/** The result of `mapAsync`/`starmapAsync` (Python: `MapResult`): an array in input order. */
export class MapResult<T = unknown> extends AsyncResult<T[]> {
  // Made when the first chunk's results arrive: its kind depends on theirs.
  #results: T[] | undefined;
  #length = 0;
  #left = -1;

  /** @internal The call's chunks are known: `n` chunks of `length` items in all. */
  _setLength(length: number, chunks: number): void {
    this.#length = length;
    this.#left = chunks;
    if (chunks === 0) this._set(true, []);
  }

  /** @internal */
  override _onResult(job: Job, ok: boolean, value: unknown): void {
    if (this.settled) return;
    if (!ok) {
      this._set(false, value);
      return;
    }
    // An array, or a typed array of numbers over the reply's bytes (see Pool's reader): a loop
    // for each, so that each stays monomorphic.
    const start = job.first;
    const numbers = value instanceof Float64Array || value instanceof Int32Array;
    const results = (this.#results ??= (numbers ? arrayForNumbers(this.#length) : new Array<unknown>(this.#length)) as T[]) as unknown[];
    if (numbers) copyNumbers(value, results, start);
    else {
      const values = value as T[];
      for (let i = 0; i < values.length; i++) results[start + i] = values[i];
    }
    if (--this.#left === 0) this._set(true, results);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Results of `imap`/`imapUnordered` as an async iterator (Python: `IMapIterator`). The input is
 * read lazily: at most a window of chunks is sent ahead of what the loop has consumed. Leaving
 * the loop early (`break`) or a failed task stops what is still queued or running.
 */
export class IMapIterator<T = unknown> implements AsyncIterableIterator<T>, Owner {
  /** @internal */ settled = false;
  /** @internal */ cancelled = false;
  readonly #pool: Pool;
  readonly #ordered: boolean;
  readonly #window: number;
  // Chunks that arrived and were not yet handed out: by index (ordered) or in arrival order.
  readonly #arrived = new Map<number, { ok: boolean; value: unknown }>();
  readonly #order: number[] = [];
  #nextIndex = 0;
  #buffer: T[] = [];
  #bufferAt = 0;
  #submitted = 0;
  #consumed = 0;
  #sourceDone = false;
  #sourceError: { err: unknown } | undefined;
  #failure: { err: unknown } | undefined;
  #wakeConsumer: (() => void) | undefined;
  #wakeProducer: (() => void) | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  /** @internal */
  _cleanup: (() => void)[] = [];
  /** @internal */
  _tally: Tally | undefined;

  /** @internal Made by the pool. */
  constructor(pool: Pool, ordered: boolean, window: number) {
    this.#pool = pool;
    this.#ordered = ordered;
    this.#window = window;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next result (input order for imap, completion order for imapUnordered). */
  next(): Promise<IteratorResult<T, undefined>> {
    const p = this.#chain.then(() => this.#next());
    this.#chain = p.catch(() => undefined);
    return p;
  }

  /** Stop early (a `break` calls it): queued tasks are dropped and running ones stopped. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that a throw from _cancel() rejects
  async return(): Promise<IteratorResult<T, undefined>> {
    this._cancel(new AbortError('the imap loop was left before its end'), false);
    return { value: undefined, done: true };
  }

  async #next(): Promise<IteratorResult<T, undefined>> {
    for (;;) {
      if (this.#bufferAt < this.#buffer.length) {
        const value = this.#buffer[this.#bufferAt++]!;
        if (this.#bufferAt === this.#buffer.length) {
          this.#buffer = [];
          this.#bufferAt = 0;
        }
        return { value, done: false };
      }
      if (this.#failure) {
        const f = this.#failure;
        this.#failure = { err: undefined };
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- what ended the loop (a failed task, an abort), whatever value it is
        if (f.err !== undefined) throw f.err;
        return { value: undefined, done: true };
      }
      const idx = this.#ordered ? this.#nextIndex : this.#order[0];
      const got = idx === undefined ? undefined : this.#arrived.get(idx);
      if (got) {
        this.#arrived.delete(idx!);
        if (this.#ordered) this.#nextIndex++;
        else this.#order.shift();
        this.#consumed++;
        this.#wakeProducer?.();
        if (!got.ok) {
          // A failed task ends the iteration: what follows is stopped (see docs/pool.md).
          this._cancel(got.value, true);
          continue;
        }
        this.#buffer = got.value as T[];
        this.#bufferAt = 0;
        continue;
      }
      if (this.#sourceDone && this.#consumed === this.#submitted) {
        this.settled = true;
        this.#finish();
        if (this.#sourceError) {
          const e = this.#sourceError.err;
          this.#failure = { err: undefined };
          this.#sourceError = undefined;
          throw e;
        }
        return { value: undefined, done: true };
      }
      await new Promise<void>((r) => (this.#wakeConsumer = r));
      this.#wakeConsumer = undefined;
    }
  }

  #finish(): void {
    for (const c of this._cleanup) c();
    this._cleanup = [];
  }

  /** @internal */
  _onResult(job: Job, ok: boolean, value: unknown): void {
    if (this.settled) return;
    // A chunk of numbers may be a typed array over the reply's bytes: the loop hands out an array.
    if (ok && ArrayBuffer.isView(value)) value = Array.from(value as Float64Array);
    this.#arrived.set(job.index, { ok, value });
    if (!this.#ordered) this.#order.push(job.index);
    this.#wakeConsumer?.();
  }

  /** @internal Timings are not kept (an imap input may be endless): onTask sees them. */
  _timing(t: TaskTiming): void {
    if (!this.settled) this._tally?.task(t);
  }

  /** @internal A worker died or the pool was terminated. */
  _fail(err: unknown): void {
    this._cancel(err, false);
  }

  /** @internal */
  _cancel(err: unknown, stopRunning: boolean | 'always'): void {
    if (this.settled) return;
    this.settled = true;
    this.cancelled = stopRunning !== false || err instanceof AbortError || err instanceof TimeoutError;
    this.#failure = { err: err instanceof AbortError && /imap loop was left/.test((err as Error).message) ? undefined : err };
    this.#arrived.clear();
    this.#order.length = 0;
    this.#finish();
    this.#wakeConsumer?.();
    this.#wakeProducer?.();
    if (this.cancelled) this.#pool._stopRunning(this);
  }

  /** @internal Feed the pool from `iterable`, `chunksize` items per task, within the window. */
  async _produce(
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksize: number,
    submit: (items: unknown[], index: number) => void,
  ): Promise<void> {
    let it: Iterator<unknown> | AsyncIterator<unknown> | undefined;
    let sync = false;
    let finished = false;
    try {
      if (isAsyncIterable(iterable)) it = iterable[Symbol.asyncIterator]();
      else {
        it = iterable[Symbol.iterator]();
        sync = true;
      }
      for (;;) {
        while (!this.settled && !this.#pool._closing && this.#submitted - this.#consumed >= this.#window) {
          await new Promise<void>((r) => (this.#wakeProducer = r));
          this.#wakeProducer = undefined;
        }
        if (this.settled) break;
        const items: unknown[] = [];
        while (items.length < chunksize) {
          const r = sync ? (it as Iterator<unknown>).next() : await (it as AsyncIterator<unknown>).next();
          if (r.done) {
            finished = true;
            break;
          }
          items.push(r.value);
        }
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the loop may have ended (or failed) while next() was awaited
        if (this.settled) break;
        if (items.length) submit(items, this.#submitted++);
        if (finished) break;
      }
    } catch (err) {
      finished = true;
      this.#sourceError = { err };
    } finally {
      this.#sourceDone = true;
      if (!finished && it?.return) {
        try {
          await it.return();
        } catch {
          // closing the source is best effort
        }
      }
      this.#wakeConsumer?.();
    }
  }

  /** @internal The pool wakes producers when it closes (they then send the rest without waiting). */
  _wake(): void {
    this.#wakeProducer?.();
  }

  toString(): string {
    return `<${this.#ordered ? 'IMapIterator' : 'IMapUnorderedIterator'}${this.settled ? ' done' : ''}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * What a call's options ask of its result: its own onProgress/onTask, and cancellation by
 * `signal` or after `timeout` ms (the running tasks are stopped, see Pool#_stopRunning).
 */
export function armCall<T>(owner: AsyncResult<T> | IMapIterator<T>, o: CallOptions | undefined, total?: number): void {
  if (!o) return;
  if (o.onProgress || o.onTask) owner._tally = new Tally(o.onProgress, o.onTask, total);
  const cancel = (err: unknown): void => (owner instanceof IMapIterator ? owner._cancel(err, true) : owner._cancel(err));
  if (o.signal) {
    const signal = o.signal;
    if (signal.aborted) {
      queueMicrotask(() => cancel(new AbortError('the call was aborted', { cause: signal.reason })));
    } else {
      const onAbort = (): void => cancel(new AbortError('the call was aborted', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      owner._cleanup.push(() => signal.removeEventListener('abort', onAbort));
    }
  }
  if (o.timeout !== undefined) {
    const ms = Math.max(0, o.timeout);
    const timer = setTimeout(() => cancel(new TimeoutError(`the call did not finish within ${ms} ms`)), ms);
    owner._cleanup.push(() => clearTimeout(timer));
  }
}
