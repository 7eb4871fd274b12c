// Managers (Python: `multiprocessing.managers`): a server process holds shared objects, and
// proxies in any process — or on another machine — call their methods. This module has
// BaseManager, SyncManager and Manager(); the rest lives in:
//   wire.ts        the wire: framing, JSON / structured-clone encoding, what is refused
//   proxy.ts       the per-process channel to a server, BaseProxy
//   server.ts      the server that holds the objects and answers proxies
//   containers.ts  the served dict, list, Namespace, Value, Array (and KeyError, ...)
//   sync.ts        the served locks, Condition, Event, Barrier and queues
//   pool.ts        the served Pool and its results, with their proxies
//   types.ts       the typed proxies of the SyncManager types
// Everything public is re-exported from here.

import { Pipe, type Connection } from '../ipc/connection.js';
import { InvalidArgumentError, ProcessError } from '../errors.js';
import type { Address, Authkey, Family } from '../ipc/listener.js';
import { ManagedArray, ManagedDict, ManagedList, ManagedNamespace, ManagedValue, type Key } from './containers.js';
import { AsyncResultProxy, ManagedPool, PoolProxy, type ManagedPoolOptions } from './pool.js';
import {
  BaseProxy,
  channelFor,
  checkNoInlineFunctions,
  dropChannels,
  makeProxy,
  MANAGER_MAX_MESSAGE,
  proxyTypeKey,
  unwrapReply,
  type ProxyState,
} from './proxy.js';
import { Server, type ServerEntry, type ServerSpec } from './server.js';
import { LockProxy } from './shared_lock.js';
import {
  ManagedBarrier,
  ManagedBoundedSemaphore,
  ManagedCondition,
  ManagedEvent,
  ManagedJoinableQueue,
  ManagedLock,
  ManagedQueue,
  ManagedRLock,
  ManagedSemaphore,
} from './sync.js';
import {
  AcquirerProxy,
  ArrayProxy,
  BarrierProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  JoinableQueueProxy,
  ListProxy,
  NamespaceProxy,
  QueueProxy,
  SemaphoreProxy,
  ValueProxy,
} from './types.js';
import { currentProcess, parentProcess, Process } from '../process.js';
import { standManagerServers } from '../popen/forkserver.js';
import { chosenStartMethod } from '../popen/methods.js';
import { MAX_MESSAGE } from '../ipc/socket.js';
import { toModuleUrl } from '../reduction/policy.js';
import { registerType } from '../reduction/reduction.js';
import { registeredModule, trustModulesForClients, trustRegisteredForClients } from './wire.js';
import { authkeyBytes, type FunctionOrClass } from '../util.js';

export { BaseProxy, makeProxyType, type Token } from './proxy.js';
export { publicMethods, Server } from './server.js';
export {
  IndexError,
  KeyError,
  ManagedArray,
  ManagedDict,
  ManagedList,
  ManagedNamespace,
  ManagedValue,
  pyCompare,
  ValueError,
} from './containers.js';
export {
  ManagedBarrier,
  ManagedBoundedSemaphore,
  ManagedCondition,
  ManagedEvent,
  ManagedJoinableQueue,
  ManagedLock,
  ManagedQueue,
  ManagedRLock,
  ManagedSemaphore,
  type ProxyWaitOptions,
} from './sync.js';
export {
  AcquirerProxy,
  ArrayProxy,
  BarrierProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  JoinableQueueProxy,
  ListProxy,
  NamespaceProxy,
  QueueProxy,
  SemaphoreProxy,
  ValueProxy,
  type Proxied,
} from './types.js';
export { LockProxy } from './shared_lock.js';
export { AsyncResultProxy, ManagedAsyncResult, ManagedPool, PoolProxy, type ManagedPoolOptions } from './pool.js';

// ---------------------------------------------------------------------------------------------
// BaseManager.

/** Options of `BaseManager.register` (Python's keyword arguments). */
export interface RegisterOptions {
  /** Method names proxies may call; default: the referent's public methods. */
  exposed?: readonly string[] | null;
  /** Methods whose result stays in the server and comes back as a proxy of this type id. */
  methodToTypeid?: Record<string, string> | null;
  /** The proxy class (a BaseProxy subclass, exported); default: one made from `exposed`. */
  proxytype?: (new (...args: never[]) => BaseProxy) | null;
  /** Add a method `typeid(...args)` to the manager class. Default true. */
  createMethod?: boolean;
}

interface RegistryEntry {
  typeid: string;
  callable: FunctionOrClass | null;
  exposed: string[] | null;
  methodToTypeid: Record<string, string> | null;
  proxytype: (new (...args: never[]) => BaseProxy) | null;
}

/** Options of `new BaseManager(...)`. */
export interface ManagerOptions {
  /** `[host, port]` (TCP) or a socket path. Default: a fresh Unix socket in the temp directory. */
  address?: Address | null;
  /** Shared secret for the HMAC challenge. Default: `currentProcess().authkey` (Python's default). */
  authkey?: Authkey | null;
  /** The context whose Process runs the server (`getContext('thread')`); default: the default context. */
  ctx?: { Process: typeof Process } | null;
  /** ms to wait for the server process to exit after shutdown before terminating it. Default 1000. */
  shutdownTimeout?: number;
  /**
   * Modules (paths or URLs) whose exported functions and classes messages may name, by reference:
   * the server (and this process's proxies) rebuild them, importing the module. The modules of
   * registered types are trusted already. Every export of a listed module becomes callable by any
   * client holding the authkey: list only modules written for that (never the library's own).
   */
  trustedModules?: readonly (string | URL)[];
  /**
   * Longest message the server accepts (and its proxies accept from it), in bytes; a longer
   * length prefix closes that connection before the message is buffered. Default 512 MiB.
   */
  maxMessage?: number;
}

type State = 'initial' | 'started' | 'connected' | 'shutdown';

const liveManagers = new Set<BaseManager>();
let managerCount = 0;

/**
 * Manages a server process holding shared objects (Python: `BaseManager`). Subclass it and
 * `register` types, then `start()` (a new server process) or `connect()` (to a running one), or
 * serve in this process with `getServer().serveForever()`.
 */
export class BaseManager {
  /** @internal */
  static _registry: Map<string, RegistryEntry> = new Map();
  readonly #authkey: Buffer;
  #address: Address | null;
  readonly #options: ManagerOptions;
  #state: State = 'initial';
  #process: Process | undefined;
  #server: Server | undefined;

  constructor(options: ManagerOptions = {}) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('new BaseManager(options): options must be an object like { address, authkey }');
    const { maxMessage, trustedModules } = options;
    if (maxMessage !== undefined && (!Number.isInteger(maxMessage) || maxMessage < 1 || maxMessage > MAX_MESSAGE))
      throw new InvalidArgumentError(`new BaseManager({ maxMessage }): maxMessage must be an integer from 1 to ${MAX_MESSAGE}`);
    if (
      trustedModules !== undefined &&
      (!Array.isArray(trustedModules) || !trustedModules.every((m) => typeof m === 'string' || m instanceof URL))
    )
      throw new InvalidArgumentError('new BaseManager({ trustedModules }): trustedModules must be an array of module paths or URLs');
    this.#options = options;
    this.#address = options.address ?? null;
    if (trustedModules) trustModulesForClients(trustedModules);
    // As Python's: the current process's authkey unless one is given, so that a child (which
    // inherits that key) reaches its parent's manager by address alone.
    this.#authkey = authkeyBytes(options.authkey, 'new BaseManager({ authkey })') ?? Buffer.from(currentProcess().authkey);
  }

  /**
   * Register a type (Python: `BaseManager.register`). `callable` makes the object in the server
   * (a class is called with `new`); it crosses to the server process by reference, so it must be
   * exported from a module. A client that only connects registers the type id without it.
   */
  static register(typeid: string, callable?: FunctionOrClass | null, options: RegisterOptions = {}): void {
    if (typeof typeid !== 'string' || !typeid) throw new InvalidArgumentError('register(typeid): typeid must be a non-empty string');
    if (callable !== undefined && callable !== null && typeof callable !== 'function')
      throw new InvalidArgumentError('register(typeid, callable): callable must be a function or class');
    if (!Object.prototype.hasOwnProperty.call(this, '_registry')) this._registry = new Map(this._registry);
    const { exposed = null, methodToTypeid = null, proxytype = null, createMethod = true } = options;
    // The module of what the server makes, and of its proxy class, may be named in replies.
    for (const fn of [callable, proxytype]) if (fn) trustRegisteredForClients(fn, `register('${typeid}')`);
    this._registry.set(typeid, {
      typeid,
      callable: callable ?? null,
      exposed: exposed ? [...exposed] : ((proxytype as { _exposed_?: string[] } | null)?._exposed_ ?? null),
      methodToTypeid: methodToTypeid ?? (proxytype as { _methodToTypeid_?: Record<string, string> } | null)?._methodToTypeid_ ?? null,
      proxytype,
    });
    if (createMethod && !(typeid in this.prototype)) {
      Object.defineProperty(this.prototype, typeid, {
        value: function (this: BaseManager, ...args: unknown[]) {
          return this._create(typeid, ...args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  /** The server's address (known after start() or getServer().ready). */
  get address(): Address | null {
    return this.#address;
  }
  /** The authkey proxies present to the server. */
  get authkey(): Buffer {
    return this.#authkey;
  }
  /** 'initial', 'started', 'connected' or 'shutdown'. */
  get state(): State {
    return this.#state;
  }
  /** The server process, after start(). */
  get process(): Process | undefined {
    return this.#process;
  }

  #registry(): Map<string, RegistryEntry> {
    return (this.constructor as typeof BaseManager)._registry;
  }

  #spec(): ServerSpec {
    const registry: ServerEntry[] = [];
    const trusted = new Set<string>((this.#options.trustedModules ?? []).map(toModuleUrl));
    for (const e of this.#registry().values()) {
      for (const [what, fn] of [
        ['callable', e.callable],
        ['proxytype', e.proxytype],
      ] as const) {
        if (!fn || proxyTypeKey(fn) !== fn) continue;
        // The server imports these modules, so it also trusts them (the library's excepted).
        const url = registeredModule(fn, `register('${e.typeid}') ${what}`);
        if (url) trusted.add(url);
      }
      registry.push({
        typeid: e.typeid,
        callable: e.callable,
        exposed: e.exposed,
        methodToTypeid: e.methodToTypeid,
        proxytype: proxyTypeKey(e.proxytype),
      });
    }
    const maxMessage = this.#options.maxMessage ?? MANAGER_MAX_MESSAGE;
    return { registry, address: this.#address, authkey: this.#authkey, trusted: [...trusted], maxMessage };
  }

  /**
   * Start the server process and resolve once it listens (Python: `start`). `initializer(...initargs)`
   * runs in the server process first.
   * @throws ProcessError when already started; the server's error when it cannot listen.
   */
  async start(initializer?: ((...args: never[]) => unknown) | null, initargs: readonly unknown[] = []): Promise<this> {
    if (this.#state !== 'initial')
      throw new ProcessError(this.#state === 'shutdown' ? 'Manager has shut down' : 'Already started server', {
        code: 'ERR_MP_MANAGER_STATE',
      });
    if (initializer !== undefined && initializer !== null && typeof initializer !== 'function')
      throw new InvalidArgumentError('start(initializer): initializer must be a function');
    const spec = this.#spec();
    const [reader, writer] = Pipe(false);
    const P = this.#options.ctx?.Process ?? Process;
    const proc = new P({
      target: runManagerServer,
      args: [spec, writer, initializer ?? null, initargs],
      name: `${this.constructor.name}-${++managerCount}`,
    });
    proc.start();
    // Its server runs on the forkserver: the next children there stand with a server loaded.
    const method = (this.#options.ctx as { getStartMethod?: () => string } | null | undefined)?.getStartMethod?.() ?? chosenStartMethod();
    if (method === 'forkserver') standManagerServers();
    writer.close();
    this.#process = proc;
    this.#state = 'started';
    liveManagers.add(this);
    let answer: { address?: Address; error?: Error };
    try {
      answer = (await Promise.race([
        reader.recv(),
        proc.sentinel.then(() => ({
          error: new ProcessError(`the manager process exited with code ${proc.exitcode} before it listened`, {
            code: 'ERR_MP_MANAGER_START',
          }),
        })),
      ])) as typeof answer;
    } finally {
      reader.close();
    }
    if (answer.error) {
      this.#state = 'shutdown';
      liveManagers.delete(this);
      await proc.join(this.#options.shutdownTimeout ?? 1000);
      if (proc.exitcode === null) proc.kill();
      throw answer.error;
    }
    this.#address = answer.address!;
    return this;
  }

  /**
   * Connect to a running server (Python: `connect`); checks the address and the authkey.
   * @throws AuthenticationError for a wrong authkey; the connect error when nothing listens.
   */
  async connect(): Promise<this> {
    if (this.#address === null)
      throw new InvalidArgumentError('connect(): the manager needs the server address: new BaseManager({ address, authkey })');
    const [status, value] = await channelFor(this.#address, this.#authkey, this.#options.maxMessage).call([0, 'ping']);
    unwrapReply(status, value);
    if (this.#state === 'initial') this.#state = 'connected';
    return this;
  }

  /**
   * The server, to run in this process: `await manager.getServer().serveForever()` (Python:
   * `get_server`). `await server.ready` tells the bound address.
   */
  getServer(): Server {
    if (this.#state !== 'initial') throw new ProcessError('Already started server', { code: 'ERR_MP_MANAGER_STATE' });
    const server = new Server(this.#spec());
    this.#server = server;
    this.#state = 'started';
    void server.ready.then(
      () => (this.#address = server.address),
      () => undefined,
    );
    return server;
  }

  /** Make a shared object of `typeid` in the server and resolve its proxy (Python: `_create` + the proxy). */
  async _create<P extends BaseProxy = BaseProxy>(typeid: string, ...args: unknown[]): Promise<P> {
    if (this.#state === 'shutdown') throw new ProcessError('Manager has shut down', { code: 'ERR_MP_MANAGER_STATE' });
    if (this.#address === null || this.#state === 'initial')
      throw new ProcessError('the manager is not started or connected: call start() or connect() first', { code: 'ERR_MP_MANAGER_STATE' });
    checkNoInlineFunctions(args, `${typeid}() args`);
    const [status, value] = await channelFor(this.#address, this.#authkey, this.#options.maxMessage).call([0, 'create', typeid, args]);
    if (status !== 2) return unwrapReply(status, value) as P;
    const state = value as ProxyState;
    const local = this.#registry().get(typeid);
    if (local?.proxytype) state.proxytype = proxyTypeKey(local.proxytype);
    return makeProxy(state) as P;
  }

  /** Shared objects in the server with their reference counts (Python: `_debug_info`). */
  async _debugInfo(): Promise<Record<string, { typeid: string; refs: number }>> {
    if (this.#address === null) throw new ProcessError('the manager is not started', { code: 'ERR_MP_MANAGER_STATE' });
    const [status, value] = await channelFor(this.#address, this.#authkey, this.#options.maxMessage).call([0, 'debug']);
    return unwrapReply(status, value) as Record<string, { typeid: string; refs: number }>;
  }

  /** How many shared objects the server holds (Python: `_number_of_objects`). */
  async _numberOfObjects(): Promise<number> {
    return Object.keys(await this._debugInfo()).length;
  }

  /**
   * Shut the server down (Python: `shutdown`): ask it to stop, wait up to `shutdownTimeout` ms for
   * its process, then terminate it. A connected (not started) manager asks the remote server to stop.
   */
  async shutdown(): Promise<void> {
    if (this.#state === 'shutdown' || this.#state === 'initial') return;
    const was = this.#state;
    this.#state = 'shutdown';
    liveManagers.delete(this);
    const address = this.#address;
    if (this.#server) {
      this.#server.shutdown();
      return;
    }
    if (address !== null) {
      try {
        const [status, value] = await channelFor(address, this.#authkey, this.#options.maxMessage).call([0, 'shutdown']);
        unwrapReply(status, value);
      } catch {
        // Already gone.
      }
      dropChannels(address);
    }
    const proc = this.#process;
    if (was !== 'started' || !proc) return;
    await proc.join(this.#options.shutdownTimeout ?? 1000);
    if (proc.exitcode === null) {
      proc.terminate();
      await proc.join(100);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- join() changes exitcode, a getter narrowing takes as fixed
      if (proc.exitcode === null) {
        proc.kill();
        await proc.join();
      }
    }
  }

  /** Wait for the server process to end (Python: `join`). */
  async join(timeout?: number): Promise<void> {
    await this.#process?.join(timeout);
  }

  /** Shut down at the end of an `await using` block (Python: `with manager:`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  toString(): string {
    const a = this.#address;
    return `<${this.constructor.name} ${this.#state}${a ? ` at ${typeof a === 'string' ? a : `${a[0]}:${a[1]}`}` : ''}>`;
  }
}

// Python's exit function shuts down managers still running before it waits for children.
process.on('beforeExit', () => {
  for (const m of [...liveManagers]) void m.shutdown();
});

/**
 * The server process's target (Python: `BaseManager._run_server`): listen, tell the parent the
 * address, serve until shut down. Also ends when the parent process is gone.
 */
export async function runManagerServer(
  spec: ServerSpec,
  writer: Connection,
  initializer: ((...a: never[]) => unknown) | null,
  initargs: readonly unknown[],
): Promise<void> {
  let server: Server;
  try {
    // Checked against each other by start()'s signature.
    if (initializer) await (initializer as (...a: unknown[]) => unknown)(...initargs);
    server = new Server(spec);
    await server.ready;
  } catch (err) {
    await writer.send({ error: err });
    writer.close();
    return;
  }
  await writer.send({ address: server.address });
  writer.close();
  const parent = parentProcess();
  const watch = setInterval(() => {
    if (parent && !parent.isAlive()) server.shutdown();
  }, 500);
  watch.unref();
  try {
    await server.serveForever();
  } finally {
    clearInterval(watch);
  }
}

// ---------------------------------------------------------------------------------------------
// SyncManager.

type Init<K extends Key, V> = Map<K, V> | Record<string, V> | [K, V][];

/**
 * The manager `Manager()` starts (Python: `SyncManager`): dict, list, Namespace, Value, Array,
 * the locks, Event, Barrier and the queues, each living in the server process.
 */
export class SyncManager extends BaseManager {
  dict<K extends Key = string, V = unknown>(init?: Init<K, V>): Promise<DictProxy<K, V>> {
    return this._create('dict', ...(init === undefined ? [] : [init]));
  }
  list<T = unknown>(init?: Iterable<T>): Promise<ListProxy<T>> {
    return this._create('list', ...(init === undefined ? [] : [[...init]]));
  }
  Namespace(init?: Record<string, unknown>): Promise<NamespaceProxy> {
    return this._create('Namespace', ...(init === undefined ? [] : [init]));
  }
  Value<T = unknown>(typecode: string, value: T): Promise<ValueProxy<T>> {
    return this._create('Value', typecode, value);
  }
  Array<T = number>(typecode: string, sizeOrValues: number | Iterable<T>): Promise<ArrayProxy<T>> {
    return this._create('Array', typecode, typeof sizeOrValues === 'number' ? sizeOrValues : [...sizeOrValues]);
  }
  Lock(): Promise<LockProxy> {
    return this._create('Lock');
  }
  RLock(): Promise<AcquirerProxy> {
    return this._create('RLock');
  }
  Semaphore(value = 1): Promise<SemaphoreProxy> {
    return this._create('Semaphore', value);
  }
  BoundedSemaphore(value = 1): Promise<SemaphoreProxy> {
    return this._create('BoundedSemaphore', value);
  }
  /** A Condition over `lock` (a Lock or RLock proxy of this manager; default a new RLock). */
  Condition(lock?: AcquirerProxy): Promise<ConditionProxy> {
    return this._create('Condition', ...(lock === undefined ? [] : [lock]));
  }
  Event(): Promise<EventProxy> {
    return this._create('Event');
  }
  /** `action` must be exported from a module the server trusts (see trustedModules). */
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null): Promise<BarrierProxy> {
    return this._create('Barrier', parties, action ?? null, timeout ?? null);
  }
  Queue<T = unknown>(maxsize = 0): Promise<QueueProxy<T>> {
    return this._create('Queue', maxsize);
  }
  JoinableQueue<T = unknown>(maxsize = 0): Promise<JoinableQueueProxy<T>> {
    return this._create('JoinableQueue', maxsize);
  }
  /**
   * A process pool living in the server process (Python: `SyncManager.Pool`). The functions its
   * tasks run cross by reference: export them from a module the server trusts (`trustedModules`).
   */
  Pool(processes?: ManagedPoolOptions): Promise<PoolProxy> {
    return this._create('Pool', ...(processes === undefined ? [] : [processes]));
  }
}

// Proxies cross as their state. Registered here rather than in proxy.ts: a process that meets
// a proxy in a message before it loaded this module loads it then (entry/library_types.ts), and
// with it every library proxy class (LockProxy, DictProxy...), which a bare proxy.ts would lack.
registerType(BaseProxy, { reduce: (p) => p._reduce(), rebuild: (s: ProxyState) => makeProxy(s) }, 'multiproc.ManagerProxy');

for (const [typeid, callable, proxytype] of [
  ['dict', ManagedDict, DictProxy],
  ['list', ManagedList, ListProxy],
  ['Namespace', ManagedNamespace, NamespaceProxy],
  ['Value', ManagedValue, ValueProxy],
  ['Array', ManagedArray, ArrayProxy],
  ['Lock', ManagedLock, LockProxy],
  ['RLock', ManagedRLock, AcquirerProxy],
  ['Semaphore', ManagedSemaphore, SemaphoreProxy],
  ['BoundedSemaphore', ManagedBoundedSemaphore, SemaphoreProxy],
  ['Condition', ManagedCondition, ConditionProxy],
  ['Event', ManagedEvent, EventProxy],
  ['Barrier', ManagedBarrier, BarrierProxy],
  ['Queue', ManagedQueue, QueueProxy],
  ['JoinableQueue', ManagedJoinableQueue, JoinableQueueProxy],
] as const) {
  SyncManager.register(typeid, callable, { proxytype: proxytype, createMethod: false });
}
SyncManager.register('Pool', ManagedPool, {
  proxytype: PoolProxy,
  methodToTypeid: { applyAsync: 'AsyncResult', mapAsync: 'AsyncResult', starmapAsync: 'AsyncResult' },
  createMethod: false,
});
// Made only by the Pool's methods (no callable: a client cannot create one).
SyncManager.register('AsyncResult', null, {
  proxytype: AsyncResultProxy,
  exposed: ['get', 'wait', 'ready', 'successful'],
  createMethod: false,
});

/** Start a SyncManager and resolve it (Python: `multiprocessing.Manager()`). Use `await using`. */
export async function Manager(options: ManagerOptions = {}): Promise<SyncManager> {
  return new SyncManager(options).start();
}

export type { Address, Family };
