// The Pool a SyncManager serves (Python: `SyncManager.Pool`): a process pool living in the
// server process, and its proxies. `await m.Pool(2)` makes it; `await pool.map(fn, xs)` runs
// there. Functions cross the manager wire by reference only: `fn` must be exported from a module
// the server trusts (a registered type's module, one listed in `trustedModules`, or one the
// server loaded already); the server never imports a module a client names.
import { InvalidArgumentError } from '../errors.js';
import { BaseProxy, registerProxyType } from './proxy.js';
import type { AsyncResult, Pool, PoolOptions } from '../pool/pool.js';

type AnyFn = (...args: never[]) => unknown;

/** What `m.Pool(...)` takes: a number of processes, or the Pool's options (functions by reference). */
export type ManagedPoolOptions = number | null | Omit<PoolOptions, 'context'>;

function chunkOf(chunksize: unknown): number | undefined {
  if (chunksize === undefined || chunksize === null) return undefined;
  if (typeof chunksize !== 'number' || !Number.isInteger(chunksize) || chunksize < 1)
    throw new InvalidArgumentError('chunksize must be an integer >= 1');
  return chunksize;
}

/** The result of an asynchronous call on a served Pool (Python: the `AsyncResult` the server holds). */
export class ManagedAsyncResult {
  readonly #r: AsyncResult | AsyncResult<unknown[]>;
  constructor(r: AsyncResult | AsyncResult<unknown[]>) {
    this.#r = r;
    // A result nobody asks for must not be an unhandled rejection in the server.
    r.get().catch(() => undefined);
  }
  ready(): boolean {
    return this.#r.ready();
  }
  successful(): boolean {
    return this.#r.successful();
  }
  wait(timeout?: number | null): Promise<void> {
    return this.#r.wait(timeout ?? undefined);
  }
  get(timeout?: number | null): Promise<unknown> {
    return (this.#r as AsyncResult).get(timeout ?? undefined);
  }
}

/** The Pool a SyncManager serves: a `Pool` in the server process. */
export class ManagedPool {
  readonly #pool: Pool;
  constructor(options?: ManagedPoolOptions) {
    // Loaded here: pool.ts imports the contexts, which import the managers.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded here, see above
    const { Pool: P } = require('../pool/pool.js') as typeof import('../pool/pool.js');
    this.#pool = new P(options ?? undefined);
  }
  apply(fn: AnyFn, args: unknown[] = []): Promise<unknown> {
    return this.#pool.apply(fn as (...a: unknown[]) => unknown, args);
  }
  applyAsync(fn: AnyFn, args: unknown[] = []): ManagedAsyncResult {
    return new ManagedAsyncResult(this.#pool.applyAsync(fn as (...a: unknown[]) => unknown, args));
  }
  map(fn: AnyFn, items: unknown[], chunksize?: number | null): Promise<unknown[]> {
    return this.#pool.map(fn as (x: unknown) => unknown, items, chunkOf(chunksize));
  }
  mapAsync(fn: AnyFn, items: unknown[], chunksize?: number | null): ManagedAsyncResult {
    return new ManagedAsyncResult(this.#pool.mapAsync(fn as (x: unknown) => unknown, items, chunkOf(chunksize)));
  }
  starmap(fn: AnyFn, items: unknown[][], chunksize?: number | null): Promise<unknown[]> {
    return this.#pool.starmap(fn as (...a: unknown[]) => unknown, items, chunkOf(chunksize));
  }
  starmapAsync(fn: AnyFn, items: unknown[][], chunksize?: number | null): ManagedAsyncResult {
    return new ManagedAsyncResult(this.#pool.starmapAsync(fn as (...a: unknown[]) => unknown, items, chunkOf(chunksize)));
  }
  close(): void {
    this.#pool.close();
  }
  terminate(): void {
    this.#pool.terminate();
  }
  join(): Promise<void> {
    return this.#pool.join();
  }
  /** @internal The last proxy is gone (or the server stops): end the workers. */
  _dispose(): void {
    this.#pool.terminate();
  }
}

/** Proxy of the result of `applyAsync`/`mapAsync`/`starmapAsync` on a manager's Pool. */
export class AsyncResultProxy<T = unknown> extends BaseProxy {
  /** The result; rejects with the task's error, or TimeoutError after `timeout` ms. */
  get(timeout?: number | null): Promise<T> {
    return this._callmethod('get', [timeout ?? null]);
  }
  /** Resolves once the result is ready, or after `timeout` ms. */
  wait(timeout?: number | null): Promise<void> {
    return this._callmethod('wait', [timeout ?? null]);
  }
  ready(): Promise<boolean> {
    return this._callmethod('ready');
  }
  /** Whether the call completed without error; rejects while it is not ready. */
  successful(): Promise<boolean> {
    return this._callmethod('successful');
  }
}

/**
 * Proxy of a Pool living in a manager's server (Python: the proxy `SyncManager.Pool` returns).
 * Every method is a remote call. `fn` crosses by reference: export it from a module the server
 * trusts (see `trustedModules`). Callbacks are not supported: await the result proxy instead.
 */
export class PoolProxy extends BaseProxy {
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A): Promise<Awaited<R>> {
    return this._callmethod('apply', [fn, args ?? []]);
  }
  applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A): Promise<AsyncResultProxy<Awaited<R>>> {
    return this._callmethod('applyAsync', [fn, args ?? []]);
  }
  map<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number): Promise<Awaited<R>[]> {
    return this._callmethod('map', [fn, [...iterable], chunksize ?? null]);
  }
  mapAsync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number): Promise<AsyncResultProxy<Awaited<R>[]>> {
    return this._callmethod('mapAsync', [fn, [...iterable], chunksize ?? null]);
  }
  starmap<A extends unknown[], R>(fn: (...args: A) => R, iterable: Iterable<A>, chunksize?: number): Promise<Awaited<R>[]> {
    return this._callmethod('starmap', [fn, [...iterable], chunksize ?? null]);
  }
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A>,
    chunksize?: number,
  ): Promise<AsyncResultProxy<Awaited<R>[]>> {
    return this._callmethod('starmapAsync', [fn, [...iterable], chunksize ?? null]);
  }
  /**
   * The results one by one, in order. Not lazy as Python's: the whole map runs in the server
   * (one round trip) and the results are then yielded here.
   */
  async *imap<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number): AsyncGenerator<Awaited<R>, void, undefined> {
    yield* await this.map(fn, iterable, chunksize);
  }
  close(): Promise<void> {
    return this._callmethod('close');
  }
  terminate(): Promise<void> {
    return this._callmethod('terminate');
  }
  join(): Promise<void> {
    return this._callmethod('join');
  }
  /** Terminate at the end of an `await using` block (Python: `with m.Pool() as p:`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.terminate();
  }
}

registerProxyType('multiproc.PoolProxy', PoolProxy);
registerProxyType('multiproc.AsyncResultProxy', AsyncResultProxy);
