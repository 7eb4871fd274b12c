// `Value` and `Array` on Redis (the local `sharedctypes`, across machines), found by name. The
// typecodes, ranges and errors are the local ones; every read and write is a round trip, so
// `.value` and `arr[i]` become `await v.get()`, `await v.set(x)`, `await arr.get(i)`,
// `await arr.set(i, x)`.
//
// Keys of an object `name` in namespace `ns` (under the hash tag `{ns}`):
//   mp:{ns}:val:<name>   hash: t (typecode), v (the value)
//   mp:{ns}:arr:<name>   hash: t (typecode), n (length), and one field per element written
//                        ('0', '1', ...); an element never written reads as zero
// An element is stored as the decimal text of its number (a character as its code), so each
// get or set is one Redis command, atomic by itself. The first process that uses a name sets
// its typecode, length and initial values; a handle opened with another typecode or length
// fails on its first call.
import { inspect } from 'node:util';

import { InvalidArgumentError, TimeoutError } from '../errors.js';
import { typeInfo, type ElementOf, type InputOf, type Typecode, type TypeInfo } from '../memory/ctypes.js';
import { registerType } from '../reduction/reduction.js';
import { checkName, checkWhere, closedError, session, type Session, type Where } from './client.js';
import type { RedisObjectOptions, RedisWaitOptions } from './queues.js';
import { RedisLock, RedisRLock, RedisSemaphore } from './synchronize.js';

// Creates the object if it does not exist; returns {typecode, length} of the one that does.
// ARGV: typecode, length ('' for a Value), then field/value pairs to write when creating.
const INIT = `
local t = redis.call('HGET', KEYS[1], 't')
if t then return {t, redis.call('HGET', KEYS[1], 'n') or ''} end
redis.call('HSET', KEYS[1], 't', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'n', ARGV[2]) end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {ARGV[1], ARGV[2]}
`;

/** A lock a Redis Value or Array can use: a Redis Lock, RLock or Semaphore. */
export type RedisLockLike = RedisLock | RedisSemaphore;

/** Options of a Redis Value or Array. */
export interface RedisValueOptions {
  /** Processes (on any machine) that open the same name share the value. Default: a fresh name. */
  name?: string;
  /**
   * true, undefined or null: the RLock named `<name>.lock` (default); false: no lock (a raw
   * value); or a Redis Lock, RLock or Semaphore to use.
   */
  lock?: boolean | null | RedisLockLike;
}

interface State extends Where {
  kind: 'value' | 'array';
  name: string;
  typecode: Typecode;
  length: number;
  /** The initial elements, so that whichever handle creates the object writes the same. */
  init: string[] | undefined;
  lock: RedisLockLike | false;
}

function encodeOne(info: TypeInfo, typecode: Typecode, v: unknown, what: string): string {
  const raw = info.encode(v, what);
  // Stored as the typed array would hold it: a float32 loses its extra digits here too.
  return typecode === 'f' ? String(Math.fround(raw as number)) : String(raw);
}

function decodeOne<C extends Typecode>(info: TypeInfo, typecode: C, s: string | null | undefined): ElementOf<C> {
  const big = typecode === 'l' || typecode === 'L' || typecode === 'q' || typecode === 'Q';
  const raw = big ? BigInt(s ?? '0') : Number(s ?? '0');
  return info.decode(raw) as ElementOf<C>;
}

function chooseLock(lock: unknown, what: string, name: string, where: Where): RedisLockLike | false {
  if (lock === undefined || lock === null || lock === true) return new RedisRLock({ ...where, name: `${name}.lock` });
  if (lock === false) return false;
  if (lock instanceof RedisLock || lock instanceof RedisSemaphore) return lock;
  throw new InvalidArgumentError(
    `${what}: lock must be true, false, null or a Lock, RLock or Semaphore of a Redis context (a local lock does not reach other processes through Redis)`,
  );
}

/** What Redis Values and Arrays share: the key, the first-use check, close and the lock. */
abstract class RedisShared<C extends Typecode> {
  /** The object's name: the same name in another process is the same object. */
  readonly name: string;
  /** The typecode it was opened with. */
  readonly typecode: C;
  /** @internal */
  readonly _where: Where;
  /** @internal */
  readonly _s: Session;
  /** @internal */
  readonly _info: TypeInfo;
  /** @internal */
  readonly _key: string;
  readonly #init: string[] | undefined;
  readonly #lock: RedisLockLike | false;
  #ready: Promise<void> | undefined;
  #closed = false;

  constructor(
    kind: 'val' | 'arr',
    typecode: C,
    options: RedisValueOptions & RedisObjectOptions,
    what: string,
    makeInit: (info: TypeInfo) => { length: string; init: string[] | undefined },
  ) {
    this._where = checkWhere(options, what);
    this.name = checkName(options.name, `${what}({ name })`);
    this._info = typeInfo(typecode, what);
    this.typecode = typecode;
    const { length, init } = makeInit(this._info);
    this.#init = init;
    this.#lock = chooseLock(options.lock, what, this.name, this._where);
    this._s = session(this._where);
    this._key = `${this._s.prefix}${kind}:${this.name}`;
    // Sent now, so that the creator's initial values are in Redis before a handle sent to
    // another process can be used there.
    this.#ready = this.#create(length);
    this.#ready.catch(() => undefined);
  }

  async #create(length: string): Promise<void> {
    const fields: string[] = [];
    this.#init?.forEach((v, i) => {
      if (v !== '0') fields.push(this._fieldOf(i), v);
    });
    const r = (await this._s.run(() => this._s.script(INIT)([this._key], [this.typecode, length, ...fields]))) as Buffer[];
    const [t, n] = r.map(String);
    if (t !== this.typecode || n !== length)
      throw new InvalidArgumentError(
        `${this.constructor.name} ${JSON.stringify(this.name)} exists with typecode '${t}'${n ? ` and length ${n}` : ''}: open it with the same, or use another name`,
      );
  }

  /** @internal The field of element `i` (a Value's one element is 'v'). */
  abstract _fieldOf(i: number): string;

  /** @internal Run a call after the first-use check, with the connection holding the program. */
  async _call<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError(this.constructor.name);
    await this.#ready;
    return this._s.run(() => fn(this._s));
  }

  /** @internal The initial elements as stored, for the handle a receiver rebuilds. */
  get _init(): string[] | undefined {
    return this.#init;
  }

  /** @internal */
  get _lock(): RedisLockLike | false {
    return this.#lock;
  }

  #theLock(): RedisLockLike {
    if (this.#lock === false) throw new InvalidArgumentError(`${this.constructor.name} was made with { lock: false }: it has no lock`);
    return this.#lock;
  }

  /** The lock guarding it (Python: `get_lock()`): a Redis RLock unless another lock was given. @throws InvalidArgumentError for one made with `{ lock: false }`. */
  getLock(): RedisLockLike {
    return this.#theLock();
  }

  /** Acquire the lock; resolves false on `{ block: false }` or timeout. Rejects with AbortError when `signal` aborts. */
  acquire(options?: RedisWaitOptions): Promise<boolean> {
    return this.#theLock().acquire(options);
  }

  /** Release the lock. @throws ProcessError ERR_MP_RELEASED_TOO_MANY or ERR_MP_NOT_OWNER, as the lock's release. */
  release(): Promise<void> {
    return this.#theLock().release();
  }

  /**
   * Python's `with v.get_lock():` — acquire, run `fn`, release (also when `fn` throws).
   * @throws TimeoutError when `options.timeout` passes before the lock is acquired.
   */
  withLock<T>(fn: () => T | Promise<T>, options?: RedisWaitOptions): Promise<T> {
    return this.#theLock().withLock(fn, options);
  }

  /** Acquire and return this object for `await using _ = await v.guard()`. @throws TimeoutError when not acquired in time. */
  async guard(options?: RedisWaitOptions): Promise<this> {
    if (!(await this.#theLock().acquire(options)))
      throw new TimeoutError(`${this.constructor.name}: not acquired within ${options?.timeout ?? 0} ms`);
    return this;
  }

  /** Release the lock at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#theLock().release();
  }

  /** No more calls from this process (others keep using it; it stays in Redis). Also `using`. */
  close(): void {
    this.#closed = true;
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** Delete it from Redis (for every process; its lock stays). */
  async destroy(): Promise<void> {
    await this._s.run(() => this._s.cmd.del(this._key));
  }

  /** @internal */
  abstract _state(): State;

  toString(): string {
    return `<${this.constructor.name}('${this.typecode}', name=${this.name}, namespace=${this._where.namespace})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * A value in Redis (the local `Value`, across machines): `await v.get()` and `await v.set(x)`
 * for `.value`, each atomic; `getLock()`, `acquire`, `release`, `withLock`, `guard` for
 * read-modify-write. Crosses to a child as its server, namespace and name.
 */
export class RedisValue<C extends Typecode = Typecode> extends RedisShared<C> {
  /**
   * @throws InvalidArgumentError for an unknown typecode, a value of the wrong type or out of
   *   range, a bad lock, name, url, namespace or leaseMs.
   */
  constructor(typecode: C, value?: InputOf<C>, options: RedisValueOptions & RedisObjectOptions = {}, init?: string[]) {
    super('val', typecode, options, 'Value', (info) => ({
      length: '',
      init: init ?? (value === undefined ? undefined : [encodeOne(info, typecode, value, `Value('${typecode}', value)`)]),
    }));
  }

  override _fieldOf(): string {
    return 'v';
  }

  /** The current value (Python: `v.value`); one atomic read. */
  get(): Promise<ElementOf<C>> {
    return this._call(async (s) => decodeOne(this._info, this.typecode, await s.cmd.hget(this._key, 'v')));
  }

  /** Write it (Python: `v.value = x`); one atomic write. @throws InvalidArgumentError for a value of the wrong type or out of range. */
  async set(value: InputOf<C>): Promise<void> {
    const v = encodeOne(this._info, this.typecode, value, `Value('${this.typecode}').set`);
    await this._call((s) => s.cmd.hset(this._key, 'v', v));
  }

  /** The same value without its lock (Python: `get_obj()`). */
  getObj(): RedisValue<C> {
    return new RedisValue(this.typecode, undefined, { ...this._where, name: this.name, lock: false }, this._init);
  }

  override _state(): State {
    return { ...this._where, kind: 'value', name: this.name, typecode: this.typecode, length: 1, init: this._init, lock: this._lock };
  }
}

// The initial values cross with a handle only up to this many elements; a bigger array relies on
// its creator's first write, sent when it was made.
const MAX_INIT_SENT = 4096;

/**
 * An array in Redis (the local `Array`, across machines): `await arr.get(i)`, `await arr.set(i, x)`,
 * `set(values, offset)`, `at`, `slice`, `toArray`, `for await`, each call atomic; `length` is known
 * at once. Lock as `RedisValue`. Crosses to a child as its server, namespace and name.
 */
export class RedisArray<C extends Typecode = Typecode> extends RedisShared<C> {
  /** Number of elements. */
  readonly length: number;

  /**
   * `sizeOrValues`: a length (zero-filled) or the initial values (a string for 'c' and 'u').
   * @throws InvalidArgumentError for an unknown typecode, a bad size or value, a bad lock, name,
   *   url, namespace or leaseMs.
   */
  constructor(
    typecode: C,
    sizeOrValues: number | Iterable<InputOf<C>> | string,
    options: RedisValueOptions & RedisObjectOptions = {},
    init?: string[],
  ) {
    let length = 0;
    super('arr', typecode, options, 'Array', (info) => {
      const what = `Array('${typecode}', sizeOrValues)`;
      if (typeof sizeOrValues === 'number') {
        if (!Number.isInteger(sizeOrValues) || sizeOrValues < 0 || sizeOrValues > 0x7fffffff)
          throw new InvalidArgumentError(`${what}: size must be an integer >= 0, got ${sizeOrValues}`);
        length = sizeOrValues;
        return { length: String(length), init };
      }
      let values: Iterable<unknown> = sizeOrValues;
      if (typeof sizeOrValues === 'string') {
        if (typecode === 'c') values = Buffer.from(sizeOrValues, 'utf8');
        else if (typecode === 'u') values = Array.from(sizeOrValues);
        else throw new InvalidArgumentError(`${what}: a string initializes only 'c' and 'u' arrays; give a size or an array of values`);
      }
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
      if (values === null || typeof values[Symbol.iterator] !== 'function')
        throw new InvalidArgumentError(`${what}: takes a size or an iterable of values`);
      const enc = Array.from(values, (v, k) => encodeOne(info, typecode, v, `${what}[${k}]`));
      length = enc.length;
      return { length: String(length), init: enc };
    });
    this.length = length;
  }

  override _fieldOf(i: number): string {
    return String(i);
  }

  #index(i: number, what: string): number {
    if (!Number.isInteger(i)) throw new InvalidArgumentError(`${what}: index must be an integer, got ${String(i)}`);
    return i;
  }

  /** Element `i` (Python: `arr[i]`); undefined when out of range, as for the local array. */
  async get(i: number): Promise<ElementOf<C> | undefined> {
    this.#index(i, 'Array.get(i)');
    if (i < 0 || i >= this.length) return undefined;
    return this._call(async (s) => decodeOne(this._info, this.typecode, await s.cmd.hget(this._key, String(i))));
  }

  /** Element `i`; negative counts from the end (Python's `arr[-1]`); undefined when out of range. */
  at(i: number): Promise<ElementOf<C> | undefined> {
    this.#index(i, 'Array.at(i)');
    return this.get(i < 0 ? i + this.length : i);
  }

  /** Python: `arr[i] = x`. @throws RangeError when `i` is out of range; InvalidArgumentError for a bad value. */
  set(i: number, value: InputOf<C>): Promise<void>;
  /** Write `values` from `offset` (as a typed array's `set`), in one atomic write. @throws RangeError past the end. */
  set(values: Iterable<InputOf<C>>, offset?: number): Promise<void>;
  async set(a: number | Iterable<InputOf<C>>, b?: unknown): Promise<void> {
    const what = `Array('${this.typecode}').set`;
    const fields: string[] = [];
    if (typeof a === 'number') {
      this.#index(a, what);
      if (a < 0 || a >= this.length) throw new RangeError(`index ${a} out of range for length ${this.length}`);
      fields.push(String(a), encodeOne(this._info, this.typecode, b, `${what}(${a})`));
    } else {
      const offset = b === undefined ? 0 : this.#index(b as number, what);
      let k = 0;
      for (const v of a) {
        const j = offset + k;
        if (j < 0 || j >= this.length) throw new RangeError(`${what}: offset ${offset} plus the values passes the length ${this.length}`);
        fields.push(String(j), encodeOne(this._info, this.typecode, v, `${what}[${k}]`));
        k++;
      }
      if (!fields.length) return;
    }
    await this._call((s) => s.cmd.hset(this._key, ...fields));
  }

  /** Elements `start` to `end` (as `Array.prototype.slice`), read at once. */
  async slice(start?: number, end?: number): Promise<ElementOf<C>[]> {
    const n = this.length;
    const norm = (x: number | undefined, d: number): number =>
      x === undefined ? d : x < 0 ? Math.max(0, n + Math.trunc(x)) : Math.min(n, Math.trunc(x));
    const s0 = norm(start, 0);
    const e0 = norm(end, n);
    if (e0 <= s0) return [];
    const fields = Array.from({ length: e0 - s0 }, (_, k) => String(s0 + k));
    const r = await this._call((s) => s.cmd.hmget(this._key, ...fields));
    return r.map((x) => decodeOne(this._info, this.typecode, x));
  }

  /** Every element, read at once. */
  async toArray(): Promise<ElementOf<C>[]> {
    const h = await this._call((s) => s.cmd.hgetall(this._key));
    return Array.from({ length: this.length }, (_, i) => decodeOne(this._info, this.typecode, h[String(i)]));
  }

  /** The elements, as one snapshot: `for await (const x of arr)`. */
  async *[Symbol.asyncIterator](): AsyncGenerator<ElementOf<C>, void, undefined> {
    yield* await this.toArray();
  }

  /** The same array without its lock (Python: `get_obj()`). */
  getObj(): RedisArray<C> {
    return new RedisArray(this.typecode, this.length, { ...this._where, name: this.name, lock: false }, this._init);
  }

  override _state(): State {
    const init = this._init && this._init.length <= MAX_INIT_SENT ? this._init : undefined;
    return { ...this._where, kind: 'array', name: this.name, typecode: this.typecode, length: this.length, init, lock: this._lock };
  }
}

registerType(
  RedisShared,
  {
    reduce: (v) => v._state(),
    rebuild: (s: State): RedisShared<Typecode> => {
      const o = { url: s.url, namespace: s.namespace, leaseMs: s.leaseMs, name: s.name, lock: s.lock };
      return s.kind === 'value' ? new RedisValue(s.typecode, undefined, o, s.init) : new RedisArray(s.typecode, s.length, o, s.init);
    },
  },
  'multiproc.RedisValue',
);
