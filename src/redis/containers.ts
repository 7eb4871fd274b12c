// The dict and list of a Redis manager (the local manager's, kept in Redis instead of a server
// process; its Namespace and Value are in managers.ts), found by name. Every method is one Redis command,
// or one Lua script where it takes several, so each call is atomic, as a call to the local
// manager's server is.
//
// Keys of a container `name` in namespace `ns` (under the hash tag `{ns}`):
//   mp:{ns}:dict:<name>        hash: one field per key (typed: 's:text', 'n:1', 'i:1' for 1n,
//                              'b:1', 'z:' null, 'u:' undefined), '#' the insertion counter
//   mp:{ns}:dict:<name>:order  sorted set: field -> insertion number (a dict keeps its order)
//   mp:{ns}:list:<name>        list
//   mp:{ns}:ns:<name>          hash: attribute -> value
//   mp:{ns}:mval:<name>        hash: t (typecode), v (value)
// Values are stored as `dumps` makes them and read with the context's `trust`.
import { inspect } from 'node:util';

import { IndexError, KeyError, ValueError, type Key } from '../managers/containers.js';
import type { ReceivePolicy } from '../reduction/policy.js';
import { dumps, loads } from '../reduction/reduction.js';
import { checkName, checkWhere, closedError, policyOf, session, trustState, type RedisTrust, type Session, type Where } from './client.js';
import type { RedisObjectOptions } from './queues.js';

// Lua's unpack() takes a few thousand values at most: commands with many arguments go in chunks.
const LUA_CHUNK = `
local function chunked(cmd, key, list, from)
  for i = from, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
`;

// ARGV: field, value pairs. Returns nothing.
const DICT_UPDATE = `
for i = 1, #ARGV, 2 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[1], '#', 1), ARGV[i])
  end
end
return 1
`;

// Creates the dict (with ARGV's pairs) unless it exists.
const DICT_CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '#', 0)
${DICT_UPDATE}
`;

// ARGV[1]: field, or '' for the last inserted. Returns {field, value} or false.
const DICT_POP = `
local f = ARGV[1]
if f == '' then
  local last = redis.call('ZRANGE', KEYS[2], -1, -1)
  if #last == 0 then return false end
  f = last[1]
end
local v = redis.call('HGET', KEYS[1], f)
if not v then return false end
redis.call('HDEL', KEYS[1], f)
redis.call('ZREM', KEYS[2], f)
return {f, v}
`;

const DICT_SETDEFAULT = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return v end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[1], '#', 1), ARGV[1])
return ARGV[2]
`;

const DICT_DELETE = `
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
`;

// Returns field, value, field, value... in insertion order.
const DICT_ITEMS = `
local fs = redis.call('ZRANGE', KEYS[2], 0, -1)
local out = {}
for i = 1, #fs, 1000 do
  local part = {unpack(fs, i, math.min(i + 999, #fs))}
  local vs = redis.call('HMGET', KEYS[1], unpack(part))
  for j = 1, #part do
    out[#out + 1] = part[j]
    out[#out + 1] = vs[j]
  end
end
return out
`;

const DICT_CLEAR = `
local n = redis.call('HGET', KEYS[1], '#') or '0'
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], '#', n)
return 1
`;

// Creates the list (with ARGV's items) unless it holds items.
const LIST_CREATE = `${LUA_CHUNK}
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
chunked('RPUSH', KEYS[1], ARGV, 1)
return 1
`;

// ARGV[1]: index (Python's insert: clamped), ARGV[2]: the item.
const LIST_INSERT = `${LUA_CHUNK}
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = math.max(0, n + i) else i = math.min(i, n) end
if i == n then return redis.call('RPUSH', KEYS[1], ARGV[2]) end
if i == 0 then return redis.call('LPUSH', KEYS[1], ARGV[2]) end
local tail = redis.call('LRANGE', KEYS[1], i, -1)
redis.call('LTRIM', KEYS[1], 0, i - 1)
redis.call('RPUSH', KEYS[1], ARGV[2])
chunked('RPUSH', KEYS[1], tail, 1)
return 1
`;

// ARGV[1]: index (negative from the end), ARGV[2]: a tombstone no item can equal,
// ARGV[3]: '1' to return the item. Returns {1, item}, {0} (empty), {-1} (out of range).
const LIST_POP = `
local n = redis.call('LLEN', KEYS[1])
if n == 0 then return {0} end
local i = tonumber(ARGV[1])
if i < 0 then i = n + i end
if i < 0 or i >= n then return {-1} end
local v
if i == n - 1 then v = redis.call('RPOP', KEYS[1])
elseif i == 0 then v = redis.call('LPOP', KEYS[1])
else
  v = redis.call('LINDEX', KEYS[1], i)
  redis.call('LSET', KEYS[1], i, ARGV[2])
  redis.call('LREM', KEYS[1], 1, ARGV[2])
end
return {1, v}
`;

// Python's slice indices: ARGV[1], ARGV[2] ('' for none). ARGV[3]: 'range', 'index' (of
// ARGV[4], -1 when absent) or 'count' (of ARGV[4]).
const LIST_SCAN = `
local n = redis.call('LLEN', KEYS[1])
local function norm(x, d)
  if x == '' then return d end
  x = tonumber(x)
  if x < 0 then return math.max(0, n + x) end
  return math.min(x, n)
end
local s = norm(ARGV[1], 0)
local e = norm(ARGV[2], n)
if e <= s then
  if ARGV[3] == 'range' then return {} end
  if ARGV[3] == 'index' then return -1 end
  return 0
end
local items = redis.call('LRANGE', KEYS[1], s, e - 1)
if ARGV[3] == 'range' then return items end
local c = 0
for k = 1, #items do
  if items[k] == ARGV[4] then
    if ARGV[3] == 'index' then return s + k - 1 end
    c = c + 1
  end
end
if ARGV[3] == 'index' then return -1 end
return c
`;

const LIST_REVERSE = `${LUA_CHUNK}
local items = redis.call('LRANGE', KEYS[1], 0, -1)
if #items < 2 then return 0 end
local r = {}
for k = #items, 1, -1 do r[#r + 1] = items[k] end
redis.call('DEL', KEYS[1])
chunked('RPUSH', KEYS[1], r, 1)
return 1
`;

/** @internal */
export type Kind = 'dict' | 'list' | 'ns' | 'mval';

/** @internal */
export interface State extends Where {
  kind: Kind;
  name: string;
  trust: 'all' | string[] | undefined;
}

/** Options of a Redis container: where it lives and its name. */
export interface RedisContainerOptions extends RedisObjectOptions {
  /** Processes (on any machine) that open the same name share it. Default: a fresh name. */
  name?: string;
}

function checkKey(k: unknown): Key {
  if (k !== null && typeof k === 'object')
    throw new TypeError(
      `unhashable type: a dict key must be a primitive (string, number, bigint, boolean, null), got ${Array.isArray(k) ? 'an array' : 'an object'}`,
    );
  if (typeof k === 'function' || typeof k === 'symbol') throw new TypeError(`unhashable type: ${typeof k}`);
  return k as Key;
}

/** @internal A dict key as a hash field: typed, so that 1 and '1' are different keys. */
export function fieldOf(key: unknown): string {
  const k = checkKey(key);
  switch (typeof k) {
    case 'string':
      return `s:${k}`;
    case 'number':
      return `n:${String(k)}`;
    case 'bigint':
      return `i:${k}`;
    case 'boolean':
      return k ? 'b:1' : 'b:0';
    case 'undefined':
      return 'u:';
    default:
      return 'z:';
  }
}

/** @internal The key a hash field stands for. */
export function keyOf(field: string): Key {
  const rest = field.slice(2);
  switch (field[0]) {
    case 's':
      return rest;
    case 'n':
      return Number(rest);
    case 'i':
      return BigInt(rest);
    case 'b':
      return rest === '1';
    case 'u':
      return undefined;
    default:
      return null;
  }
}

const describe = (k: Key): string => (typeof k === 'string' ? `'${k}'` : typeof k === 'bigint' ? `${k}n` : String(k));

/** @internal What the Redis containers share: name, keys, values through `dumps`/`loads`, close. */
export abstract class RedisContainer {
  /** The container's name: the same name in another process is the same container. */
  readonly name: string;
  /** @internal */
  readonly _where: Where;
  /** @internal */
  readonly _s: Session;
  /** @internal */
  readonly _key: string;
  readonly #trust: RedisTrust | undefined;
  readonly #policy: ReceivePolicy;
  #closed = false;

  constructor(kind: Kind, options: RedisContainerOptions, what: string) {
    this._where = checkWhere(options, what);
    this.name = checkName(options.name, `${what}({ name })`);
    this.#trust = options.trust;
    this.#policy = policyOf(options.trust, what);
    this._s = session(this._where);
    this._key = `${this._s.prefix}${kind}:${this.name}`;
  }

  /** @internal */
  abstract _kind(): Kind;

  /** @internal Run `fn` with the connection holding the program; refused after close(). */
  async _call<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError(this.constructor.name);
    return this._s.run(() => fn(this._s));
  }

  /** @internal A Lua script on this container's keys. */
  _script(lua: string, args: (string | Buffer | number)[], keys = [this._key]): Promise<unknown> {
    return this._call((s) => s.script(lua)(keys, args));
  }

  /** @internal Read a stored value. */
  async _load(b: Buffer | null | undefined): Promise<unknown> {
    return b === null || b === undefined ? undefined : loads(b, this.#policy);
  }

  /** @internal Read stored values. */
  _loadAll(bs: (Buffer | null)[]): Promise<unknown[]> {
    return Promise.all(bs.map((b) => this._load(b)));
  }

  /** No more calls from this process (others keep using it; it stays in Redis). Also `using`. */
  close(): void {
    this.#closed = true;
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Every key it has. */
  _keys(): string[] {
    return [this._key];
  }

  /** Delete it from Redis, for every process. */
  async destroy(): Promise<void> {
    await this._s.run(() => this._s.cmd.del(...this._keys()));
  }

  /** @internal */
  _state(): State {
    return { ...this._where, kind: this._kind(), name: this.name, trust: trustState(this.#trust) };
  }

  toString(): string {
    return `<${this.constructor.name}(name=${this.name}, namespace=${this._where.namespace})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

type DictInit<K, V> = Map<K, V> | Record<string, V> | [K, V][] | null | undefined;

function pairsOf(init: unknown, what: string): string[] | Buffer[] {
  if (init === undefined || init === null) return [];
  let entries: [unknown, unknown][];
  if (init instanceof Map) entries = [...(init as Map<unknown, unknown>)];
  else if (Array.isArray(init)) {
    entries = init.map((p: unknown, i) => {
      if (!Array.isArray(p) || p.length !== 2) throw new TypeError(`${what}: element ${i} of the sequence is not a [key, value] pair`);
      return [p[0], p[1]] as [unknown, unknown];
    });
  } else if (typeof init === 'object') entries = Object.entries(init);
  else throw new TypeError(`${what}: expected a Map, an object or an array of [key, value] pairs`);
  return entries.flatMap(([k, v]) => [Buffer.from(fieldOf(k)), dumps(v, `${what}[${describe(checkKey(k))}]`)]);
}

/**
 * A dict kept in Redis (the local manager's `DictProxy`): the same methods, each one atomic
 * Redis call. Keys are primitives (1 and '1' are different keys); the insertion order is kept.
 */
export class RedisDict<K extends Key = Key, V = unknown> extends RedisContainer {
  /** @throws InvalidArgumentError for a bad name, url, namespace, leaseMs or trust. */
  constructor(options: RedisContainerOptions = {}) {
    super('dict', options, 'dict');
  }
  override _kind(): Kind {
    return 'dict';
  }
  get #k(): string[] {
    return [this._key, `${this._key}:order`];
  }
  override _keys(): string[] {
    return this.#k;
  }
  /** @internal Create it with `init` unless it exists. */
  async _create(init: unknown): Promise<this> {
    await this._script(DICT_CREATE, pairsOf(init, 'dict(init)'), this.#k);
    return this;
  }

  /** The value at `key`, or undefined when missing (Python: `d.get(k)`). */
  get(key: K): Promise<V | undefined>;
  /** The value at `key`, or `dflt` when missing (Python: `d.get(k, default)`). */
  get<D>(key: K, dflt: D): Promise<V | D>;
  async get(key: K, dflt?: unknown): Promise<unknown> {
    const f = fieldOf(key);
    const b = await this._call((s) => s.cmd.hgetBuffer(this._key, f));
    return b === null ? dflt : this._load(b);
  }
  /** The value at `key` (Python: `d[k]`). Rejects with KeyError when missing. */
  async getItem(key: K): Promise<V> {
    const f = fieldOf(key);
    const b = await this._call((s) => s.cmd.hgetBuffer(this._key, f));
    if (b === null) throw new KeyError(describe(key));
    return (await this._load(b)) as V;
  }
  /** Python: `d[k] = v`. @throws NotTransferableError (synchronously) for a value that cannot be stored. */
  set(key: K, value: V): Promise<void> {
    return this.update([[key, value]]);
  }
  /** Python: `del d[k]`; resolves whether the key was there. */
  async delete(key: K): Promise<boolean> {
    return ((await this._script(DICT_DELETE, [fieldOf(key)], this.#k)) as number) === 1;
  }
  /** Python: `k in d`. */
  async has(key: K): Promise<boolean> {
    const f = fieldOf(key);
    return (await this._call((s) => s.cmd.hexists(this._key, f))) === 1;
  }
  /** The keys, in insertion order. */
  async keys(): Promise<K[]> {
    return (await this._call((s) => s.cmd.zrange(`${this._key}:order`, 0, -1))).map(keyOf) as K[];
  }
  /** The values, in insertion order. */
  async values(): Promise<V[]> {
    return (await this.items()).map((kv) => kv[1]);
  }
  /** The [key, value] pairs, in insertion order, read at once. */
  async items(): Promise<[K, V][]> {
    const r = (await this._script(DICT_ITEMS, [], this.#k)) as Buffer[];
    const out: [K, V][] = [];
    for (let i = 0; i < r.length; i += 2) out.push([keyOf(String(r[i])) as K, (await this._load(r[i + 1])) as V]);
    return out;
  }
  /** Merge a Map, an object or [key, value] pairs, in one atomic call. @throws TypeError for a bad argument. */
  async update(other: Map<K, V> | Record<string, V> | [K, V][]): Promise<void> {
    const pairs = pairsOf(other, 'update');
    if (pairs.length) await this._script(DICT_UPDATE, pairs, this.#k);
  }
  /** Remove `key` and resolve its value; `dflt` when missing, else rejects with KeyError. */
  async pop(key: K, ...dflt: [V?]): Promise<V> {
    const r = (await this._script(DICT_POP, [fieldOf(key)], this.#k)) as Buffer[] | null;
    if (r) return (await this._load(r[1])) as V;
    if (dflt.length) return dflt[0] as V;
    throw new KeyError(describe(key));
  }
  /** Remove and resolve the last inserted [key, value]; KeyError when empty. */
  async popitem(): Promise<[K, V]> {
    const r = (await this._script(DICT_POP, [''], this.#k)) as Buffer[] | null;
    if (!r) throw new KeyError('popitem(): dictionary is empty');
    return [keyOf(String(r[0])) as K, (await this._load(r[1])) as V];
  }
  /** The value at `key`; when missing, sets it to `dflt` first (in one atomic call). */
  async setdefault(key: K, dflt?: V): Promise<V> {
    return (await this._load((await this._script(DICT_SETDEFAULT, [fieldOf(key), dumps(dflt, 'dflt')], this.#k)) as Buffer)) as V;
  }
  /** Remove every key. */
  async clear(): Promise<void> {
    await this._script(DICT_CLEAR, [], this.#k);
  }
  /** A copy, as a Map. */
  async copy(): Promise<Map<K, V>> {
    return new Map(await this.items());
  }
  /** A copy as a plain object (keys become strings). */
  async toObject(): Promise<Record<string, V>> {
    const o: Record<string, V> = {};
    for (const [k, v] of await this.items()) o[String(k)] = v;
    return o;
  }
  /** Python: `len(d)`. */
  len(): Promise<number> {
    return this._call((s) => s.cmd.zcard(`${this._key}:order`));
  }
  /** The keys, as Python iterates a dict (a snapshot taken when the loop starts). */
  async *[Symbol.asyncIterator](): AsyncGenerator<K, void, undefined> {
    yield* await this.keys();
  }
}

let tombs = 0;

/**
 * A list kept in Redis (the local manager's `ListProxy`): the same methods but `sort`, each one
 * atomic Redis call. `remove`, `index` and `count` compare items by their stored form: equal
 * primitives are equal; objects are equal when written the same way (same keys in the same order).
 */
export class RedisList<T = unknown> extends RedisContainer {
  /** @throws InvalidArgumentError for a bad name, url, namespace, leaseMs or trust. */
  constructor(options: RedisContainerOptions = {}) {
    super('list', options, 'list');
  }
  override _kind(): Kind {
    return 'list';
  }
  /** @internal Create it with `init` unless it holds items. */
  async _create(init: Iterable<T> | null | undefined): Promise<this> {
    const items = init === undefined || init === null ? [] : [...init].map((x, i) => dumps(x, `list(init)[${i}]`));
    if (items.length) await this._script(LIST_CREATE, items);
    return this;
  }
  #int(i: unknown, what: string): number {
    if (typeof i !== 'number' || !Number.isInteger(i)) throw new TypeError(`${what}: indices must be integers, got ${String(i)}`);
    return i;
  }
  async append(x: T): Promise<void> {
    const b = dumps(x, 'item');
    await this._call((s) => s.cmd.rpush(this._key, b));
  }
  /** Append every item of `xs`, in one atomic call. */
  async extend(xs: Iterable<T>): Promise<void> {
    const bs = [...xs].map((x, i) => dumps(x, `extend[${i}]`));
    if (bs.length) await this._call((s) => s.cmd.rpush(this._key, ...bs));
  }
  /** Python: `l.insert(i, x)` (an index past either end inserts at that end). */
  async insert(i: number, x: T): Promise<void> {
    await this._script(LIST_INSERT, [this.#int(i, 'insert'), dumps(x, 'item')]);
  }
  /** Remove and resolve the item at `i` (default the last); IndexError when out of range. */
  async pop(i = -1): Promise<T> {
    const r = (await this._script(LIST_POP, [this.#int(i, 'pop'), this.#tomb()])) as [number, Buffer?];
    if (r[0] === 0) throw new IndexError('pop from empty list');
    if (r[0] === -1) throw new IndexError('pop index out of range');
    return (await this._load(r[1])) as T;
  }
  #tomb(): string {
    return `\u0000mp-removed:${this._s.owner}:${tombs++}`;
  }
  /** Remove the first item equal to `x`; ValueError when there is none. */
  async remove(x: T): Promise<void> {
    const b = dumps(x, 'item');
    if ((await this._call((s) => s.cmd.lrem(this._key, 1, b))) === 0) throw new ValueError('list.remove(x): x not in list');
  }
  /** The index of the first item equal to `x` in `[start, stop)`; ValueError when there is none. */
  async index(x: T, start?: number, stop?: number): Promise<number> {
    const r = (await this._script(LIST_SCAN, [start ?? '', stop ?? '', 'index', dumps(x, 'item')])) as number;
    if (r < 0) throw new ValueError(`${typeof x === 'string' ? `'${x}'` : String(x)} is not in list`);
    return r;
  }
  /** How many items equal `x`. */
  async count(x: T): Promise<number> {
    return (await this._script(LIST_SCAN, ['', '', 'count', dumps(x, 'item')])) as number;
  }
  /** Reverse it in place. */
  async reverse(): Promise<void> {
    await this._script(LIST_REVERSE, []);
  }
  /** Items `start` to `end` (Python's slice indices), read at once. */
  async slice(start?: number, end?: number): Promise<T[]> {
    return (await this._loadAll((await this._script(LIST_SCAN, [start ?? '', end ?? '', 'range'])) as Buffer[])) as T[];
  }
  /** Python: `l[i]` with negative indices, undefined when out of range (as Array.at). */
  async at(i: number): Promise<T | undefined> {
    const j = this.#int(i, 'at');
    return (await this._load(await this._call((s) => s.cmd.lindexBuffer(this._key, j)))) as T | undefined;
  }
  /** Python: `l[i]`; IndexError when out of range. */
  async get(i: number): Promise<T> {
    const j = this.#int(i, 'list index');
    const b = await this._call((s) => s.cmd.lindexBuffer(this._key, j));
    if (b === null) throw new IndexError('list index out of range');
    return (await this._load(b)) as T;
  }
  /** Python: `l[i] = x`; IndexError when out of range. */
  async set(i: number, x: T): Promise<void> {
    const j = this.#int(i, 'list assignment index');
    const b = dumps(x, 'item');
    try {
      await this._call((s) => s.cmd.lset(this._key, j, b));
    } catch (err) {
      if (err instanceof Error && /index out of range|no such key/i.test(err.message))
        throw new IndexError('list assignment index out of range');
      throw err;
    }
  }
  /** Python: `del l[i]`; IndexError when out of range. */
  async delete(i: number): Promise<void> {
    const r = (await this._script(LIST_POP, [this.#int(i, 'list assignment index'), this.#tomb()])) as [number];
    if (r[0] !== 1) throw new IndexError('list assignment index out of range');
  }
  async clear(): Promise<void> {
    await this._call((s) => s.cmd.del(this._key));
  }
  /** A copy, as an array, read at once. */
  async copy(): Promise<T[]> {
    return (await this._loadAll(await this._call((s) => s.cmd.lrangeBuffer(this._key, 0, -1)))) as T[];
  }
  len(): Promise<number> {
    return this._call((s) => s.cmd.llen(this._key));
  }
  /** The items (a snapshot taken when the loop starts). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    yield* await this.copy();
  }
}

export type { DictInit };
