// Start methods and contexts (Python: `multiprocessing.context`). A context is the whole API
// bound to one start method: `ctx.Process` is a class, everything else a factory method.
import { Barrier } from './sync/barrier.js';
import { InvalidArgumentError, ProcessError } from './errors.js';
import { cpuCount } from './platform.js';
import { chooseStartMethod, chosenStartMethod, defaultStartMethod, isStartMethod, startMethods } from './popen/methods.js';
import { activeChildren, currentProcess, parentProcess, processClassFor, type Process, type StartMethod } from './process.js';
import {
  RawArray,
  RawValue,
  SharedArray,
  Synchronized,
  SynchronizedArray,
  Value,
  type InputOf,
  type LockLike,
  type SyncOptions,
  type Typecode,
} from './memory/sharedctypes.js';
import { BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from './sync/synchronize.js';
import { Pipe, type Connection } from './ipc/connection.js';
import { SyncManager, type ManagerOptions } from './managers/managers.js';
import { Pool, ThreadPool, type PoolOptions } from './pool/pool.js';
import { JoinableQueue, Queue } from './ipc/queues.js';
import { SimpleQueue } from './ipc/simple_queue.js';
import { RedisContext, type RedisContextOptions } from './redis/context.js';

/** The API bound to one start method (Python: `SpawnContext`, ...). */
export class BaseContext {
  /** Process class whose children use this context's start method. */
  readonly Process: typeof Process;
  readonly #method: StartMethod;

  /** @internal use getContext(method). */
  constructor(method: StartMethod) {
    this.#method = method;
    this.Process = processClassFor(method);
    if (method === 'forkserver') prestartForkserver();
  }

  /** The start method of this context. */
  getStartMethod(): StartMethod {
    return this.#method;
  }

  /** The context of `method`; this context itself when omitted. @throws InvalidArgumentError for an unknown method. */
  getContext(method?: StartMethod): BaseContext {
    return method === undefined ? this : getContext(method);
  }

  /** See the top-level `setStartMethod` (it sets the default, as CPython's context method does). */
  setStartMethod(method: StartMethod | null, options?: { force?: boolean }): void {
    setStartMethod(method, options);
  }

  /** Every start method this platform supports. */
  getAllStartMethods(): StartMethod[] {
    return getAllStartMethods();
  }

  /** Number of CPUs this process may use. */
  cpuCount(): number {
    return cpuCount();
  }

  /** See the top-level `currentProcess`. */
  currentProcess(): Process {
    return currentProcess();
  }

  /** See the top-level `parentProcess`. */
  parentProcess(): ReturnType<typeof parentProcess> {
    return parentProcess();
  }

  /** See the top-level `activeChildren`. */
  activeChildren(): Process[] {
    return activeChildren();
  }

  // Factories, as Python's context methods. The shared objects work the same under every start
  // method: processes and threads alike open their segments by name.

  /** A new `Lock`. */
  Lock(): Lock {
    return new Lock();
  }
  /** A new `RLock`. */
  RLock(): RLock {
    return new RLock();
  }
  /** A new `Semaphore(value)`. */
  Semaphore(value = 1): Semaphore {
    return new Semaphore(value);
  }
  /** A new `BoundedSemaphore(value)`. */
  BoundedSemaphore(value = 1): BoundedSemaphore {
    return new BoundedSemaphore(value);
  }
  /** A new `Condition(lock?)`. */
  Condition(lock?: Lock | RLock): Condition {
    return new Condition(lock);
  }
  /** A new `Event`. */
  Event(): Event {
    return new Event();
  }
  /** A new `Barrier(parties, action?, timeout?)`. */
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null): Barrier {
    return new Barrier(parties, action, timeout);
  }

  /** Two connected ends, as `Pipe(duplex)`. */
  Pipe(duplex = true): [Connection, Connection] {
    return Pipe(duplex);
  }
  /** A new `Pool(processes | options)` whose workers use this context's start method. */
  Pool(processes?: number | null | Omit<PoolOptions, 'context'>): Pool {
    return new Pool(typeof processes === 'object' && processes !== null ? { ...processes, context: this } : { processes, context: this });
  }
  /** A new `ThreadPool(processes | options)`: a pool of worker threads. */
  ThreadPool(processes?: number | null | Omit<PoolOptions, 'context'>): ThreadPool {
    return new ThreadPool(typeof processes === 'object' && processes !== null ? processes : { processes });
  }

  /** A started `SyncManager` whose server process uses this context (Python: `ctx.Manager()`). */
  Manager(options: ManagerOptions = {}): Promise<SyncManager> {
    return new SyncManager({ ctx: this, ...options }).start();
  }

  /** A new `Queue(maxsize)`. */
  Queue<T = unknown>(maxsize = 0): Queue<T> {
    return new Queue<T>(maxsize);
  }
  /** A new `JoinableQueue(maxsize)`. */
  JoinableQueue<T = unknown>(maxsize = 0): JoinableQueue<T> {
    return new JoinableQueue<T>(maxsize);
  }
  /** A new `SimpleQueue()`. */
  SimpleQueue<T = unknown>(): SimpleQueue<T> {
    return new SimpleQueue<T>();
  }

  /** A new shared `Value(typecode, value, { lock })`; `{ lock: false }` gives a `RawValue`. @throws InvalidArgumentError for a bad typecode, value or lock. */
  Value<C extends Typecode>(typecode: C, value: InputOf<C> | undefined, options: { lock: false }): RawValue<C>;
  Value<C extends Typecode>(typecode: C, value?: InputOf<C>, options?: { lock?: true | null | LockLike }): Synchronized<C>;
  Value<C extends Typecode>(typecode: C, value?: InputOf<C>, options?: SyncOptions): Synchronized<C> | RawValue<C> {
    return new Value(typecode, value, options as { lock?: true });
  }
  /** A new shared `Array(typecode, sizeOrValues, { lock })`; `{ lock: false }` gives a `RawArray`. @throws InvalidArgumentError for a bad typecode, size, value or lock. */
  Array<C extends Typecode>(typecode: C, sizeOrValues: number | Iterable<InputOf<C>>, options: { lock: false }): RawArray<C>;
  Array<C extends Typecode>(
    typecode: C,
    sizeOrValues: number | Iterable<InputOf<C>>,
    options?: { lock?: true | null | LockLike },
  ): SynchronizedArray<C>;
  Array<C extends Typecode>(
    typecode: C,
    sizeOrValues: number | Iterable<InputOf<C>>,
    options?: SyncOptions,
  ): SynchronizedArray<C> | RawArray<C> {
    return new SharedArray(typecode, sizeOrValues, options as { lock?: true });
  }
  /** A new `RawValue(typecode, value)` (no lock). @throws InvalidArgumentError for a bad typecode or value. */
  RawValue<C extends Typecode>(typecode: C, value?: InputOf<C>): RawValue<C> {
    return new RawValue(typecode, value);
  }
  /** A new `RawArray(typecode, sizeOrValues)` (no lock). @throws InvalidArgumentError for a bad typecode, size or value. */
  RawArray<C extends Typecode>(typecode: C, sizeOrValues: number | Iterable<InputOf<C>>): RawArray<C> {
    return new RawArray(typecode, sizeOrValues);
  }
}

const contexts = new Map<StartMethod, BaseContext>();
const quoted = (): string =>
  startMethods()
    .map((x) => `'${x}'`)
    .join(', ');

/**
 * The context of a start method: `getContext('thread').Process`, `getContext('spawn').Lock()`.
 * Without an argument, the default context (the method set by setStartMethod, else 'spawn').
 * `getContext('redis', { url, namespace })`: a context whose `Pool` runs on Redis (RedisPool).
 * @throws InvalidArgumentError for a method other than 'spawn', 'thread', 'forkserver' or 'redis'.
 */
export function getContext(method: 'redis', options?: RedisContextOptions): RedisContext;
export function getContext(method?: StartMethod): BaseContext;
export function getContext(method?: StartMethod | 'redis', options?: RedisContextOptions): BaseContext | RedisContext {
  if (method === 'redis') return new RedisContext(options);
  const m = method ?? getStartMethod();
  if (!isStartMethod(m)) throw new InvalidArgumentError(`cannot find context for '${String(m)}': start methods are ${quoted()}`);
  let ctx = contexts.get(m);
  if (!ctx) contexts.set(m, (ctx = new BaseContext(m)));
  return ctx;
}

/**
 * Choose the default start method, once (as in Python), before starting processes.
 * @throws ProcessError (ERR_MP_CONTEXT_SET) when it was already set, unless `force` is true.
 * @throws InvalidArgumentError for an unknown method.
 */
export function setStartMethod(method: StartMethod | null, options: { force?: boolean } = {}): void {
  if (chosenStartMethod() !== undefined && !options.force)
    throw new ProcessError('context has already been set', { code: 'ERR_MP_CONTEXT_SET' });
  if (method === null && options.force) {
    chooseStartMethod(undefined);
    return;
  }
  if (!isStartMethod(method))
    throw new InvalidArgumentError(`setStartMethod: unknown start method '${String(method)}'; use one of ${quoted()}`);
  chooseStartMethod(method);
  if (method === 'forkserver') prestartForkserver();
}

// The forkserver boots its standing children as soon as a program says it will use it, in the
// background, so that the first start() finds them booted or booting. Loaded here, not at the
// top: a program that never uses the forkserver does not load it.
function prestartForkserver(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy on purpose, see above
  (require('./popen/forkserver.js') as typeof import('./popen/forkserver.js')).prestart();
}

/**
 * The default start method. As in Python, asking fixes it to 'spawn' unless `allowNone` is true,
 * in which case undefined means 'not chosen yet'.
 */
export function getStartMethod(allowNone?: false): StartMethod;
export function getStartMethod(allowNone: true): StartMethod | undefined;
export function getStartMethod(allowNone = false): StartMethod | undefined {
  return allowNone ? chosenStartMethod() : defaultStartMethod();
}

/** Every start method this platform supports: ['spawn', 'thread', 'forkserver']. */
export function getAllStartMethods(): StartMethod[] {
  return startMethods();
}

/**
 * The modules every child of the `'forkserver'` start method loads before it is handed a process
 * (Python: `set_forkserver_preload`): module names, paths or file URLs; `'__main__'` (the default)
 * is the main module. Children already standing ready are replaced.
 * @throws InvalidArgumentError when `modules` is not an array of non-empty strings.
 */
export function setForkserverPreload(modules: readonly string[]): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy on purpose, see above
  (require('./popen/forkserver.js') as typeof import('./popen/forkserver.js')).setPreload(modules);
}
