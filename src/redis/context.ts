// `getContext('redis', { url, namespace })`: a context whose Pool, queues, locks, semaphores and
// events live on a Redis server, so code written against a context moves to Redis by changing
// the getContext call. Objects are found by name: `ctx.Queue({ name: 'jobs' })` in two
// processes, on any machines, is one queue.
import type { InputOf, Typecode } from '../memory/ctypes.js';
import { checkWhere, type RedisTrust } from './client.js';
import { RedisBarrier } from './barrier.js';
import { RedisCondition } from './condition.js';
import { RedisManager } from './managers.js';
import { RedisPool, type RedisPoolOptions } from './pool.js';
import { RedisJoinableQueue, RedisQueue, RedisSimpleQueue, type RedisQueueOptions } from './queues.js';
import { RedisArray, RedisValue, type RedisValueOptions } from './sharedctypes.js';
import { RedisBoundedSemaphore, RedisEvent, RedisLock, RedisRLock, RedisSemaphore } from './synchronize.js';

/** Where a Redis context's pools and objects live. */
export interface RedisContextOptions {
  /** redis:// or rediss:// URL; user, password and TLS go in it. Default redis://127.0.0.1:6379. */
  url?: string;
  /** Default 'default'. */
  namespace?: string;
  /**
   * How long what a process held (a queue item it took, a lock, semaphore units) stays held after
   * the process died: its lease, renewed while it lives. Default 5000 ms.
   */
  leaseMs?: number;
  /**
   * What values read from Redis (queue items) may rebuild besides plain data and errors. Default:
   * nothing more. A list of module paths or URLs: the functions and classes exported from those
   * modules (and instances of those classes). `'all'`: anything, functions as source text and
   * library objects included — **anyone who can write to the namespace can then run code in
   * this process**.
   */
  trust?: RedisTrust;
}

/** A name, or a local-style positional argument. */
function named<O extends { name?: string }>(o: O | undefined): O {
  return o ?? ({} as O);
}

/** The context `getContext('redis', …)` returns. */
export class RedisContext {
  readonly url: string;
  readonly namespace: string;
  readonly leaseMs: number;
  readonly trust: RedisTrust | undefined;
  /** @throws InvalidArgumentError for a bad url, namespace or leaseMs. */
  constructor(o: RedisContextOptions = {}) {
    const w = checkWhere(o, "getContext('redis')");
    this.url = w.url;
    this.namespace = w.namespace;
    this.leaseMs = w.leaseMs;
    this.trust = o.trust;
  }

  #base(): { url: string; namespace: string; leaseMs: number; trust: RedisTrust | undefined } {
    return { url: this.url, namespace: this.namespace, leaseMs: this.leaseMs, trust: this.trust };
  }

  /**
   * A RedisPool on this context's server and namespace, with `processes` local workers (default 1).
   * @throws InvalidArgumentError for bad options.
   */
  Pool(processes?: number | null, options: Omit<RedisPoolOptions, 'url' | 'namespace' | 'processes'> = {}): RedisPool {
    return new RedisPool({ ...options, url: this.url, namespace: this.namespace, processes: processes ?? 1 });
  }

  /**
   * A queue in Redis: `Queue({ name: 'jobs' })` opens the queue `jobs` (every process that opens
   * it shares it); `Queue(maxsize)` or `Queue()` makes a fresh one.
   * @throws InvalidArgumentError for a bad name or maxsize.
   */
  Queue<T = unknown>(options?: number | RedisQueueOptions): RedisQueue<T> {
    return new RedisQueue<T>({ ...this.#base(), ...(typeof options === 'number' ? { maxsize: options } : named(options)) });
  }

  /** A JoinableQueue in Redis (see Queue). @throws InvalidArgumentError for a bad name or maxsize. */
  JoinableQueue<T = unknown>(options?: number | RedisQueueOptions): RedisJoinableQueue<T> {
    return new RedisJoinableQueue<T>({ ...this.#base(), ...(typeof options === 'number' ? { maxsize: options } : named(options)) });
  }

  /** A SimpleQueue in Redis (see Queue). @throws InvalidArgumentError for a bad name. */
  SimpleQueue<T = unknown>(options?: { name?: string }): RedisSimpleQueue<T> {
    return new RedisSimpleQueue<T>({ ...this.#base(), ...named(options) });
  }

  /** A lock in Redis: `Lock({ name })` opens the lock of that name; `Lock()` makes a fresh one. @throws InvalidArgumentError for a bad name. */
  Lock(options?: { name?: string }): RedisLock {
    return new RedisLock({ ...this.#base(), ...named(options) });
  }

  /** A recursive lock in Redis (see Lock). @throws InvalidArgumentError for a bad name. */
  RLock(options?: { name?: string }): RedisRLock {
    return new RedisRLock({ ...this.#base(), ...named(options) });
  }

  /**
   * A semaphore in Redis: `Semaphore(2)` or `Semaphore({ name, value })` (the first process that
   * uses the name sets its value). @throws InvalidArgumentError for a bad name or value.
   */
  Semaphore(options?: number | { name?: string; value?: number }): RedisSemaphore {
    return new RedisSemaphore({ ...this.#base(), ...(typeof options === 'number' ? { value: options } : named(options)) });
  }

  /** A bounded semaphore in Redis (see Semaphore). @throws InvalidArgumentError for a bad name or value. */
  BoundedSemaphore(options?: number | { name?: string; value?: number }): RedisBoundedSemaphore {
    return new RedisBoundedSemaphore({ ...this.#base(), ...(typeof options === 'number' ? { value: options } : named(options)) });
  }

  /** An event in Redis: `Event({ name })` opens the event of that name. @throws InvalidArgumentError for a bad name. */
  Event(options?: { name?: string }): RedisEvent {
    return new RedisEvent({ ...this.#base(), ...named(options) });
  }

  /**
   * A condition variable in Redis over `lock` (a Redis Lock or RLock; default a new RLock).
   * @throws InvalidArgumentError when `lock` is not a Redis lock, or for a bad name.
   */
  Condition(lock?: RedisLock | null, options?: { name?: string }): RedisCondition {
    return new RedisCondition(lock ?? this.RLock(), named(options));
  }

  /**
   * A barrier in Redis: `Barrier(parties, action?, timeout?)` as the local one, or
   * `Barrier({ name, parties, action, timeout })` to open one by name.
   * @throws InvalidArgumentError for a bad name, parties, action or timeout.
   */
  Barrier(
    parties: number | { name?: string; parties: number; action?: (() => unknown) | null; timeout?: number | null },
    action?: (() => unknown) | null,
    timeout?: number | null,
  ): RedisBarrier {
    return new RedisBarrier({ ...this.#base(), ...(typeof parties === 'number' ? { parties, action, timeout } : parties) });
  }

  /**
   * A value in Redis (the local `Value`): `Value('i', 0)` makes a fresh one; `Value('i', 0, { name })`
   * opens the value of that name (the first process that uses it sets its typecode and value).
   * `{ lock }` as the local one, with a Redis lock. Read and write with `await v.get()` / `await v.set(x)`.
   * @throws InvalidArgumentError for an unknown typecode, a bad value, lock or name.
   */
  Value<C extends Typecode>(typecode: C, value?: InputOf<C>, options?: RedisValueOptions): RedisValue<C> {
    return new RedisValue(typecode, value, { ...this.#base(), ...named(options) });
  }

  /** A value in Redis without a lock (the local `RawValue`; see Value). @throws InvalidArgumentError as Value. */
  RawValue<C extends Typecode>(typecode: C, value?: InputOf<C>, options?: { name?: string }): RedisValue<C> {
    return new RedisValue(typecode, value, { ...this.#base(), ...named(options), lock: false });
  }

  /**
   * An array in Redis (the local `Array`): `Array('d', 10)` or `Array('i', [1, 2, 3], { name })`
   * (the first process that uses the name sets its typecode, length and values). `{ lock }` as Value.
   * @throws InvalidArgumentError for an unknown typecode, a bad size, value, lock or name.
   */
  Array<C extends Typecode>(typecode: C, sizeOrValues: number | Iterable<InputOf<C>> | string, options?: RedisValueOptions): RedisArray<C> {
    return new RedisArray(typecode, sizeOrValues, { ...this.#base(), ...named(options) });
  }

  /** An array in Redis without a lock (the local `RawArray`; see Array). @throws InvalidArgumentError as Array. */
  RawArray<C extends Typecode>(
    typecode: C,
    sizeOrValues: number | Iterable<InputOf<C>> | string,
    options?: { name?: string },
  ): RedisArray<C> {
    return new RedisArray(typecode, sizeOrValues, { ...this.#base(), ...named(options), lock: false });
  }

  /**
   * A manager whose objects keep their state in Redis (Python: `ctx.Manager()`): `await m.dict()`,
   * `m.list()`, `m.Namespace()`, `m.Value()`, `m.Queue()`, `m.Lock()`... as the local manager's,
   * with no server process. Resolves at once (a Promise, as the local `Manager()`).
   */
  // eslint-disable-next-line @typescript-eslint/require-await -- async as the local ctx.Manager()
  async Manager(): Promise<RedisManager> {
    return new RedisManager(this.#base());
  }

  /** 'redis'. */
  getStartMethod(): 'redis' {
    return 'redis';
  }
}
