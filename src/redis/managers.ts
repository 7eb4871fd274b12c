// `await ctx.Manager()` in a Redis context: the local `SyncManager`'s methods, with no server
// process — each object it makes keeps its state in Redis (containers.ts, the queues, locks,
// values of the other files) and is found by name. What the manager adds is the local
// lifetime: the objects it made without a name are deleted when it shuts down, as a local
// manager's objects end with its server.
import { inspect } from 'node:util';

import type { Key } from '../managers/containers.js';
import { InvalidArgumentError, ProcessError } from '../errors.js';
import { dumps, registerType } from '../reduction/reduction.js';
import { RedisBarrier } from './barrier.js';
import type { RedisTrust } from './client.js';
import { RedisCondition } from './condition.js';
import { RedisContainer, RedisDict, RedisList, type DictInit, type Kind, type RedisContainerOptions, type State } from './containers.js';
import { RedisJoinableQueue, RedisQueue } from './queues.js';
import { RedisArray } from './sharedctypes.js';
import { RedisBoundedSemaphore, RedisEvent, RedisLock, RedisRLock, RedisSemaphore } from './synchronize.js';

const MVAL_CREATE = `
if redis.call('HSETNX', KEYS[1], 't', ARGV[1]) == 1 then redis.call('HSET', KEYS[1], 'v', ARGV[2]) end
return 1
`;

// Names come from JavaScript callers too: one that is not a string is used as its string form.
const attr = (name: unknown): string => String(name);

/** A Namespace kept in Redis (the local manager's `NamespaceProxy`): `await ns.get('x')`, `await ns.set('x', 1)`. */
export class RedisNamespace extends RedisContainer {
  /** @throws InvalidArgumentError for a bad name, url, namespace, leaseMs or trust. */
  constructor(options: RedisContainerOptions = {}) {
    super('ns', options, 'Namespace');
  }
  override _kind(): Kind {
    return 'ns';
  }
  /** @internal Create it with `init` (only the attributes not set yet). */
  async _create(init: Record<string, unknown> | null | undefined): Promise<this> {
    const entries = Object.entries(init ?? {});
    if (entries.length)
      await this._call(async (s) => {
        const p = s.cmd.pipeline();
        for (const [k, v] of entries) p.hsetnx(this._key, k, dumps(v, `Namespace(init).${k}`));
        await p.exec();
      });
    return this;
  }
  async get<T = unknown>(name: string): Promise<T> {
    return (await this._load(await this._call((s) => s.cmd.hgetBuffer(this._key, attr(name))))) as T;
  }
  async set(name: string, value: unknown): Promise<void> {
    const b = dumps(value, attr(name));
    await this._call((s) => s.cmd.hset(this._key, attr(name), b));
  }
  /** Resolves whether the attribute was there. */
  async delete(name: string): Promise<boolean> {
    return (await this._call((s) => s.cmd.hdel(this._key, attr(name)))) === 1;
  }
  async has(name: string): Promise<boolean> {
    return (await this._call((s) => s.cmd.hexists(this._key, attr(name)))) === 1;
  }
  /** Every attribute, read at once. */
  async toObject(): Promise<Record<string, unknown>> {
    const h = await this._call((s) => s.cmd.hgetallBuffer(this._key));
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(h)) o[k] = await this._load(v);
    return o;
  }
}

/** A manager's Value kept in Redis (the local manager's `ValueProxy`): `await v.get()`, `await v.set(x)`; any value that crosses. */
export class RedisManagedValue<T = unknown> extends RedisContainer {
  /** @throws InvalidArgumentError for a bad name, url, namespace, leaseMs or trust. */
  constructor(options: RedisContainerOptions = {}) {
    super('mval', options, 'Value');
  }
  override _kind(): Kind {
    return 'mval';
  }
  /** @internal Create it unless it exists. */
  async _create(typecode: string, value: unknown): Promise<this> {
    if (typeof typecode !== 'string') throw new InvalidArgumentError(`Value(typecode, value): typecode must be a string`);
    const b = dumps(value, 'value');
    await this._script(MVAL_CREATE, [typecode, b]);
    return this;
  }
  async get(): Promise<T> {
    return (await this._load(await this._call((s) => s.cmd.hgetBuffer(this._key, 'v')))) as T;
  }
  async set(value: T): Promise<void> {
    const b = dumps(value, 'value');
    await this._call((s) => s.cmd.hset(this._key, 'v', b));
  }
  /** The typecode it was made with. */
  async typecode(): Promise<string> {
    return (await this._call((s) => s.cmd.hget(this._key, 't'))) ?? '';
  }
}

/** @internal Rebuild a container from its state (another process's handle on the same one). */
function rebuild(s: State): RedisContainer {
  const o = { url: s.url, namespace: s.namespace, leaseMs: s.leaseMs, name: s.name, trust: s.trust };
  switch (s.kind) {
    case 'dict':
      return new RedisDict(o);
    case 'list':
      return new RedisList(o);
    case 'ns':
      return new RedisNamespace(o);
    default:
      return new RedisManagedValue(o);
  }
}

// (The containers register here, where every kind is known.)
registerType(RedisContainer, { reduce: (c) => c._state(), rebuild }, 'multiproc.RedisContainer');

/** The `{ name }` every manager method takes last: a name opens (or first creates) that object. */
export interface RedisManagedOptions {
  name?: string;
}

interface Base {
  url: string;
  namespace: string;
  leaseMs: number;
  trust: RedisTrust | undefined;
}

/**
 * A manager whose objects live in Redis (what `await getContext('redis', ...).Manager()`
 * returns): `dict`, `list`, `Namespace`, `Value`, `Array`, `Queue`, `JoinableQueue`, `Lock`,
 * `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, as the local
 * `SyncManager`, each resolving an object whose methods return Promises. Pass `{ name }` to open
 * the object of that name (the first process that uses it creates it with the initial value
 * given). Objects cross to children, and to `Pool` tasks, as their name.
 */
export class RedisManager {
  readonly #base: Base;
  #made: { destroy(): Promise<void> }[] = [];
  #shutdown = false;

  /** @internal Made by the Redis context. */
  constructor(base: Base) {
    this.#base = base;
  }

  async #make<T extends object>(obj: T, options: RedisManagedOptions | undefined, create?: (o: T) => Promise<unknown>): Promise<T> {
    if (this.#shutdown) throw new ProcessError('the Redis manager has been shut down', { code: 'ERR_MP_CLOSED' });
    if (create) await create(obj);
    // Named objects outlive the manager: another process may have opened them by name.
    if (options?.name === undefined && 'destroy' in obj) this.#made.push(obj as unknown as { destroy(): Promise<void> });
    return obj;
  }

  #o(options: RedisManagedOptions | undefined): Base & RedisManagedOptions {
    return { ...this.#base, name: options?.name };
  }

  /** A dict in Redis; `init` (a Map, an object or [key, value] pairs) is written if it does not exist yet. @throws TypeError for a bad `init`. */
  dict<K extends Key = string, V = unknown>(init?: DictInit<K, V>, options?: RedisManagedOptions): Promise<RedisDict<K, V>> {
    return this.#make(new RedisDict<K, V>(this.#o(options)), options, (d) => d._create(init));
  }

  /** A list in Redis; `init` is written if it holds no items yet. */
  list<T = unknown>(init?: Iterable<T> | null, options?: RedisManagedOptions): Promise<RedisList<T>> {
    return this.#make(new RedisList<T>(this.#o(options)), options, (l) => l._create(init));
  }

  /** A Namespace in Redis; the attributes of `init` not set yet are written. */
  Namespace(init?: Record<string, unknown> | null, options?: RedisManagedOptions): Promise<RedisNamespace> {
    return this.#make(new RedisNamespace(this.#o(options)), options, (n) => n._create(init));
  }

  /** A value in Redis (any value that crosses; `typecode` is kept as a label, as in the local manager). */
  Value<T = unknown>(typecode: string, value: T, options?: RedisManagedOptions): Promise<RedisManagedValue<T>> {
    return this.#make(new RedisManagedValue<T>(this.#o(options)), options, (v) => v._create(typecode, value));
  }

  /** A typed array in Redis without a lock (the Redis `RawArray`). @throws InvalidArgumentError for a bad typecode or size. */
  Array<T = number>(typecode: string, sizeOrValues: number | Iterable<T>, options?: RedisManagedOptions): Promise<RedisArray> {
    return this.#make(new RedisArray(typecode as 'i', sizeOrValues as number, { ...this.#o(options), lock: false }), options, (a) =>
      a._call(() => Promise.resolve()),
    );
  }

  /** A queue in Redis (`maxsize` 0: unbounded). */
  Queue<T = unknown>(maxsize = 0, options?: RedisManagedOptions): Promise<RedisQueue<T>> {
    return this.#make(new RedisQueue<T>({ ...this.#o(options), maxsize }), options);
  }

  /** A JoinableQueue in Redis. */
  JoinableQueue<T = unknown>(maxsize = 0, options?: RedisManagedOptions): Promise<RedisJoinableQueue<T>> {
    return this.#make(new RedisJoinableQueue<T>({ ...this.#o(options), maxsize }), options);
  }

  /** A Redis Lock. */
  Lock(options?: RedisManagedOptions): Promise<RedisLock> {
    return this.#make(new RedisLock(this.#o(options)), options);
  }

  /** A Redis RLock. */
  RLock(options?: RedisManagedOptions): Promise<RedisRLock> {
    return this.#make(new RedisRLock(this.#o(options)), options);
  }

  /** A Redis Semaphore. */
  Semaphore(value = 1, options?: RedisManagedOptions): Promise<RedisSemaphore> {
    return this.#make(new RedisSemaphore({ ...this.#o(options), value }), options);
  }

  /** A Redis BoundedSemaphore. */
  BoundedSemaphore(value = 1, options?: RedisManagedOptions): Promise<RedisBoundedSemaphore> {
    return this.#make(new RedisBoundedSemaphore({ ...this.#o(options), value }), options);
  }

  /** A Redis Condition over `lock` (default a new RLock). @throws InvalidArgumentError when `lock` is not a Redis lock. */
  async Condition(lock?: RedisLock | null, options?: RedisManagedOptions): Promise<RedisCondition> {
    return this.#make(new RedisCondition(lock ?? (await this.RLock()), { name: options?.name }), options);
  }

  /** A Redis Event. */
  Event(options?: RedisManagedOptions): Promise<RedisEvent> {
    return this.#make(new RedisEvent(this.#o(options)), options);
  }

  /** A Redis Barrier. @throws InvalidArgumentError for bad parties, action or timeout. */
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null, options?: RedisManagedOptions): Promise<RedisBarrier> {
    return this.#make(new RedisBarrier({ ...this.#o(options), parties, action, timeout }), options);
  }

  /** Delete the objects this manager made without a name (named ones stay in Redis); later calls are refused. */
  async shutdown(): Promise<void> {
    if (this.#shutdown) return;
    this.#shutdown = true;
    const made = this.#made;
    this.#made = [];
    await Promise.all(made.map((o) => o.destroy()));
  }

  /** Shut down at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  toString(): string {
    return `<RedisManager(namespace=${this.#base.namespace}, ${this.#shutdown ? 'shut down' : 'open'})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}
