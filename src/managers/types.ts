// The typed proxies of the SyncManager types (Python: DictProxy, ListProxy, AcquirerProxy, ...).
// Every method is a remote call and returns a Promise.
import { TimeoutError } from '../errors.js';
import type { Key } from './containers.js';
import { BaseProxy, registerProxyType } from './proxy.js';
import type { ProxyWaitOptions } from './sync.js';

const RESOLVED = Promise.resolve();

export function splitSignal<T extends { signal?: AbortSignal }>(
  options: T | undefined,
): [Omit<T, 'signal'> | undefined, { signal?: AbortSignal }] {
  if (!options || typeof options !== 'object') return [options, {}];
  const { signal, ...rest } = options;
  return [rest, { signal }];
}

/** Proxy of a shared dict. Keys are primitives (1 and '1' are different keys, as in Python). */
export class DictProxy<K extends Key = Key, V = unknown> extends BaseProxy {
  /** The value at `key`, or undefined when missing (Python: `d.get(k)`). */
  get(key: K): Promise<V | undefined>;
  /** The value at `key`, or `dflt` when missing (Python: `d.get(k, default)`). */
  get<D>(key: K, dflt: D): Promise<V | D>;
  get(key: K, dflt?: unknown): Promise<unknown> {
    return this._callmethod('get', dflt === undefined ? [key] : [key, dflt]);
  }
  /** The value at `key` (Python: `d[k]`). Rejects with KeyError when missing. */
  getItem(key: K): Promise<V> {
    return this._callmethod('getItem', [key]);
  }
  /** Python: `d[k] = v`. */
  set(key: K, value: V): Promise<void> {
    return this._callmethod('set', [key, value]);
  }
  /** Python: `del d[k]`; resolves whether the key was there. */
  delete(key: K): Promise<boolean> {
    return this._callmethod('delete', [key]);
  }
  /** Python: `k in d`. */
  has(key: K): Promise<boolean> {
    return this._callmethod('has', [key]);
  }
  keys(): Promise<K[]> {
    return this._callmethod('keys');
  }
  values(): Promise<V[]> {
    return this._callmethod('values');
  }
  items(): Promise<[K, V][]> {
    return this._callmethod('items');
  }
  /** Merge a Map, an object or [key, value] pairs. */
  update(other: Map<K, V> | Record<string, V> | [K, V][]): Promise<void> {
    return this._callmethod('update', [other]);
  }
  /** Remove `key` and resolve its value; `dflt` when missing, else rejects with KeyError. */
  pop(key: K, ...dflt: [V?]): Promise<V> {
    return this._callmethod('pop', [key, ...dflt]);
  }
  /** Remove and resolve the last inserted [key, value]; KeyError when empty. */
  popitem(): Promise<[K, V]> {
    return this._callmethod('popitem');
  }
  setdefault(key: K, dflt?: V): Promise<V> {
    return this._callmethod('setdefault', [key, dflt]);
  }
  clear(): Promise<void> {
    return this._callmethod('clear');
  }
  /** A copy, as a Map. */
  copy(): Promise<Map<K, V>> {
    return this._callmethod('copy');
  }
  /** A copy as a plain object (keys become strings). */
  toObject(): Promise<Record<string, V>> {
    return this._callmethod('toObject');
  }
  /** Python: `len(d)`. */
  len(): Promise<number> {
    return this._callmethod('len');
  }
  /** The keys, as Python iterates a dict (a snapshot taken when the loop starts). */
  async *[Symbol.asyncIterator](): AsyncGenerator<K, void, undefined> {
    yield* await this.keys();
  }
}

/** Proxy of a shared list. */
export class ListProxy<T = unknown> extends BaseProxy {
  append(x: T): Promise<void> {
    return this._callmethod('append', [x]);
  }
  extend(xs: Iterable<T>): Promise<void> {
    return this._callmethod('extend', [[...xs]]);
  }
  insert(i: number, x: T): Promise<void> {
    return this._callmethod('insert', [i, x]);
  }
  /** Remove and resolve the item at `i` (default the last); IndexError when out of range. */
  pop(i?: number): Promise<T> {
    return this._callmethod('pop', i === undefined ? [] : [i]);
  }
  /** Remove the first item equal to `x` (deep equality); ValueError when there is none. */
  remove(x: T): Promise<void> {
    return this._callmethod('remove', [x]);
  }
  index(x: T, start?: number, stop?: number): Promise<number> {
    return this._callmethod('index', [x, ...(start === undefined ? [] : [start]), ...(stop === undefined ? [] : [stop])]);
  }
  count(x: T): Promise<number> {
    return this._callmethod('count', [x]);
  }
  /** Sort in the server with Python's ordering; `key` must be an exported function of a module the server trusts. */
  sort(options: { reverse?: boolean; key?: (x: T) => unknown } = {}): Promise<void> {
    return this._callmethod('sort', [options]);
  }
  reverse(): Promise<void> {
    return this._callmethod('reverse');
  }
  slice(start?: number, end?: number): Promise<T[]> {
    return this._callmethod('slice', [start, end]);
  }
  /** Python: `l[i]` with negative indices, undefined when out of range (as Array.at). */
  at(i: number): Promise<T | undefined> {
    return this._callmethod('at', [i]);
  }
  /** Python: `l[i]`; IndexError when out of range. */
  get(i: number): Promise<T> {
    return this._callmethod('get', [i]);
  }
  /** Python: `l[i] = x`; IndexError when out of range. */
  set(i: number, x: T): Promise<void> {
    return this._callmethod('set', [i, x]);
  }
  /** Python: `del l[i]`. */
  delete(i: number): Promise<void> {
    return this._callmethod('delete', [i]);
  }
  clear(): Promise<void> {
    return this._callmethod('clear');
  }
  /** A copy, as an array. */
  copy(): Promise<T[]> {
    return this._callmethod('copy');
  }
  len(): Promise<number> {
    return this._callmethod('len');
  }
  /** The items (a snapshot taken when the loop starts). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    yield* await this.copy();
  }
}

/** Proxy of a shared Namespace: `await ns.get('x')`, `await ns.set('x', 1)`. */
export class NamespaceProxy extends BaseProxy {
  get<T = unknown>(name: string): Promise<T> {
    return this._callmethod('get', [name]);
  }
  set(name: string, value: unknown): Promise<void> {
    return this._callmethod('set', [name, value]);
  }
  delete(name: string): Promise<boolean> {
    return this._callmethod('delete', [name]);
  }
  has(name: string): Promise<boolean> {
    return this._callmethod('has', [name]);
  }
  toObject(): Promise<Record<string, unknown>> {
    return this._callmethod('toObject');
  }
}

/** Proxy of a shared Value: `await v.get()`, `await v.set(x)`. */
export class ValueProxy<T = unknown> extends BaseProxy {
  get(): Promise<T> {
    return this._callmethod('get');
  }
  set(value: T): Promise<void> {
    return this._callmethod('set', [value]);
  }
}

/** Proxy of a shared Array. */
export class ArrayProxy<T = number> extends BaseProxy {
  len(): Promise<number> {
    return this._callmethod('len');
  }
  get(i: number): Promise<T> {
    return this._callmethod('get', [i]);
  }
  set(i: number, value: T): Promise<void> {
    return this._callmethod('set', [i, value]);
  }
  slice(start?: number, end?: number): Promise<T[]> {
    return this._callmethod('slice', [start, end]);
  }
  toArray(): Promise<T[]> {
    return this._callmethod('toArray');
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    yield* await this.toArray();
  }
}

/** Proxy of a shared Lock, RLock, Semaphore or BoundedSemaphore (Python: `AcquirerProxy`). */
export class AcquirerProxy extends BaseProxy {
  // Acquisitions made through this proxy and not yet released through it.
  #held = 0;

  /** Resolves true once acquired; false with `{ block: false }` or after `timeout` ms. */
  async acquire(options?: ProxyWaitOptions): Promise<boolean> {
    const [rest, opts] = splitSignal(options);
    const ok = await this._callmethod<boolean>('acquire', rest === undefined ? [] : [rest], opts);
    if (ok) this.#held++;
    return ok;
  }

  /**
   * Release. Of a lock this proxy acquired, without waiting for the server (one message, no
   * reply): the release reaches it before any later call of this process to the same manager.
   * Should the server refuse it (another process released the lock meanwhile), the next call
   * on this proxy rejects with that error instead of running. Otherwise a round trip, so that
   * releasing what this proxy does not hold rejects here.
   */
  release(): Promise<void> {
    return this._release([], 1);
  }

  /** @internal Release `n` (a Semaphore's argument, else 1) with `args`. */
  protected _release(args: unknown[], n: number): Promise<void> {
    if (Number.isInteger(n) && n > 0 && this.#held >= n && this._callUnanswered('release', args)) {
      this.#held -= n;
      return RESOLVED;
    }
    return this._callmethod<undefined>('release', args).then(() => {
      this.#held = Math.max(0, this.#held - (Number.isInteger(n) && n > 0 ? n : 0));
    });
  }
  /** Python's `with lock:` — acquire, run `fn`, release (also when it throws). */
  async withLock<T>(fn: () => T | Promise<T>, options?: ProxyWaitOptions): Promise<T> {
    if (!(await this.acquire(options))) throw new TimeoutError(`not acquired within ${options?.timeout ?? 0} ms`);
    try {
      return await fn();
    } finally {
      await this.release();
    }
  }
  /** Acquire, for `await using _ = await lock.guard()`: released at the end of the block. */
  async guard(options?: ProxyWaitOptions): Promise<AsyncDisposable> {
    if (!(await this.acquire(options))) throw new TimeoutError(`not acquired within ${options?.timeout ?? 0} ms`);
    return { [Symbol.asyncDispose]: () => this.release() };
  }
}

/** Proxy of a shared Semaphore. */
export class SemaphoreProxy extends AcquirerProxy {
  override release(n = 1): Promise<void> {
    return this._release([n], n);
  }
  getValue(): Promise<number> {
    return this._callmethod('getValue');
  }
}

/** Proxy of a shared Condition. */
export class ConditionProxy extends AcquirerProxy {
  /** Release the lock, wait for a notify or `timeout` ms, re-acquire; resolves false on timeout. */
  wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    return this._callmethod('wait', [timeout ?? null], options);
  }
  /** Wait until `predicate()` (run here) is truthy, as Python's `wait_for`. */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number | null): Promise<T> {
    const end = timeout === undefined || timeout === null ? Infinity : performance.now() + timeout;
    let r = await predicate();
    while (!r) {
      const left = end - performance.now();
      if (left <= 0) break;
      await this.wait(end === Infinity ? null : left);
      r = await predicate();
    }
    return r;
  }
  notify(n = 1): Promise<void> {
    return this._callmethod('notify', [n]);
  }
  notifyAll(): Promise<void> {
    return this._callmethod('notifyAll');
  }
}

/** Proxy of a shared Event. */
export class EventProxy extends BaseProxy {
  isSet(): Promise<boolean> {
    return this._callmethod('isSet');
  }
  set(): Promise<void> {
    return this._callmethod('set');
  }
  clear(): Promise<void> {
    return this._callmethod('clear');
  }
  wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    return this._callmethod('wait', [timeout ?? null], options);
  }
}

/** Proxy of a shared Barrier; `parties`, `nWaiting` and `broken` resolve the server's values. */
export class BarrierProxy extends BaseProxy {
  wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<number> {
    return this._callmethod('wait', [timeout ?? null], options);
  }
  abort(): Promise<void> {
    return this._callmethod('abort');
  }
  reset(): Promise<void> {
    return this._callmethod('reset');
  }
  get parties(): Promise<number> {
    return this._callmethod('parties');
  }
  get nWaiting(): Promise<number> {
    return this._callmethod('nWaiting');
  }
  get broken(): Promise<boolean> {
    return this._callmethod('broken');
  }
}

/** Proxy of a shared Queue. Empty and Full are the library's classes, as from a local Queue. */
export class QueueProxy<T = unknown> extends BaseProxy {
  put(item: T, options?: ProxyWaitOptions): Promise<void> {
    const [rest, opts] = splitSignal(options);
    return this._callmethod('put', rest === undefined ? [item] : [item, rest], opts);
  }
  get(options?: ProxyWaitOptions): Promise<T> {
    const [rest, opts] = splitSignal(options);
    return this._callmethod('get', rest === undefined ? [] : [rest], opts);
  }
  putNowait(item: T): Promise<void> {
    return this._callmethod('putNowait', [item]);
  }
  getNowait(): Promise<T> {
    return this._callmethod('getNowait');
  }
  qsize(): Promise<number> {
    return this._callmethod('qsize');
  }
  empty(): Promise<boolean> {
    return this._callmethod('empty');
  }
  full(): Promise<boolean> {
    return this._callmethod('full');
  }
}

/** Proxy of a shared JoinableQueue. */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  taskDone(): Promise<void> {
    return this._callmethod('taskDone');
  }
  /** Resolves true once every item put was marked done; false after `timeout` ms. */
  join(timeout?: number | null): Promise<boolean> {
    return this._callmethod('join', [timeout ?? null]);
  }
}

for (const [tag, cls] of Object.entries({
  DictProxy,
  ListProxy,
  NamespaceProxy,
  ValueProxy,
  ArrayProxy,
  AcquirerProxy,
  SemaphoreProxy,
  ConditionProxy,
  EventProxy,
  BarrierProxy,
  QueueProxy,
  JoinableQueueProxy,
})) {
  registerProxyType(`multiproc.${tag}`, cls);
}

/** The type of an auto-made proxy of `T`: its methods, each returning a Promise. */
export type Proxied<T> = BaseProxy & {
  [K in keyof T as K extends `_${string}` ? never : T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends (
    ...args: infer A
  ) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};
