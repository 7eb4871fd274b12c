// What the Redis pool's async calls return: the same surface as the local pool's AsyncResult
// (get, wait, ready, successful, callbacks).
import { inspect } from 'node:util';

import { InvalidArgumentError, ProcessError, TimeoutError } from '../errors.js';
import { isAsyncIterable } from '../util.js';

/** The result of a Redis pool's `applyAsync`, `mapAsync` or `starmapAsync`. */
export class RedisAsyncResult<T = unknown> {
  #settled = false;
  #ok = false;
  readonly #promise: Promise<T>;

  /** @internal Made by the pool from the call's promise. */
  constructor(p: Promise<T>, callback?: ((result: T) => void) | null, errorCallback?: ((error: unknown) => void) | null) {
    this.#promise = p.then(
      (v) => {
        this.#settled = true;
        this.#ok = true;
        report('callback', callback, v);
        return v;
      },
      (err: unknown) => {
        this.#settled = true;
        report('error callback', errorCallback, err);
        throw err;
      },
    );
    this.#promise.catch(() => undefined);
  }

  /** Whether the call has completed (successfully or not). */
  ready(): boolean {
    return this.#settled;
  }

  /** Whether the call completed without an error. @throws ProcessError (ERR_MP_NOT_READY) when not ready yet. */
  successful(): boolean {
    if (!this.#settled) throw new ProcessError('result not ready', { code: 'ERR_MP_NOT_READY' });
    return this.#ok;
  }

  /** Resolve once the result is ready, or after `timeout` ms. */
  async wait(timeout?: number): Promise<void> {
    await this.get(timeout).catch(() => undefined);
  }

  /** The result; rejects with the task's error, or TimeoutError after `timeout` ms (the call goes on). */
  get(timeout?: number): Promise<T> {
    if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout)))
      throw new InvalidArgumentError('get(timeout): timeout must be a number of milliseconds');
    if (timeout === undefined || this.#settled) return this.#promise;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new TimeoutError(`result not ready within ${timeout} ms`)), timeout);
      this.#promise.then(resolve, reject).finally(() => clearTimeout(t));
    });
  }
}

function report(what: string, fn: ((v: never) => void) | null | undefined, value: unknown): void {
  if (!fn) return;
  try {
    (fn as (v: unknown) => void)(value);
  } catch (err) {
    process.stderr.write(`Exception in pool ${what}:\n${err instanceof Error ? (err.stack ?? String(err)) : inspect(err)}\n`);
  }
}

/**
 * @internal imap's results: reads `iterable` lazily, `size` items a chunk, with at most `window`
 * chunks sent and not yet yielded; in input order, or in the order chunks complete.
 */
export async function* windowed(
  iterable: Iterable<unknown> | AsyncIterable<unknown>,
  size: number,
  window: number,
  ordered: boolean,
  send: (part: unknown[], index: number) => Promise<unknown[]>,
  ended?: (total: number) => void,
  guard?: Promise<never>,
): AsyncGenerator {
  // A timeout or signal (guard) ends the wait for a result.
  const until = <T>(p: Promise<T>): Promise<T> => (guard ? Promise.race([p, guard]) : p);
  const it = isAsyncIterable(iterable) ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
  const inflight: { p: Promise<unknown[]>; n: number }[] = [];
  let seq = 0;
  let read = 0;
  let done = false;
  const fill = async (): Promise<void> => {
    while (!done && inflight.length < window) {
      const part: unknown[] = [];
      while (part.length < size) {
        const r = await it.next();
        if (r.done) {
          done = true;
          ended?.(read + part.length);
          break;
        }
        part.push(r.value);
      }
      if (!part.length) break;
      const p = send(part, read);
      read += part.length;
      p.catch(() => undefined);
      inflight.push({ p, n: seq++ });
    }
  };
  await fill();
  while (inflight.length) {
    let i = 0;
    if (!ordered) {
      const n = await until(
        Promise.race(
          inflight.map((x) =>
            x.p.then(
              () => x.n,
              () => x.n,
            ),
          ),
        ),
      );
      i = inflight.findIndex((x) => x.n === n);
    }
    const [x] = inflight.splice(i, 1);
    const values = await until(x!.p);
    await fill();
    yield* values;
  }
}

/** @internal The items of a map's input. @throws InvalidArgumentError for what is not iterable. */
export async function collect(iterable: Iterable<unknown> | AsyncIterable<unknown>): Promise<unknown[]> {
  if (isAsyncIterable(iterable)) {
    const out: unknown[] = [];
    for await (const x of iterable) out.push(x);
    return out;
  }
  if (typeof (iterable as Partial<Iterable<unknown>> | null | undefined)?.[Symbol.iterator] !== 'function')
    throw new InvalidArgumentError('map(iterable): an iterable or async iterable');
  return Array.from(iterable);
}
