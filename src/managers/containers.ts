// The shared containers a SyncManager serves (they live in the server process): dict, list,
// Namespace, Value and Array, with the errors Python's built-in ones raise. Their proxies are in
// types.ts; the manager classes in managers.ts.
import { isDeepStrictEqual } from 'node:util';

import { registerLibraryError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Errors the shared containers raise, as Python's built-in ones.

/** A missing key (Python: `KeyError`). */
export class KeyError extends Error {
  override get name(): string {
    return 'KeyError';
  }
}
/** An index out of range (Python: `IndexError`). */
export class IndexError extends RangeError {
  override get name(): string {
    return 'IndexError';
  }
}
/** A value not found or not allowed (Python: `ValueError`). */
export class ValueError extends Error {
  override get name(): string {
    return 'ValueError';
  }
}
// By name, as the library's other errors: a receiver rebuilds them without trusting this module.
for (const cls of [KeyError, IndexError, ValueError]) registerLibraryError(cls);

// ---------------------------------------------------------------------------------------------
// The shared objects a SyncManager serves (they live in the server process).

export type Key = string | number | bigint | boolean | null | undefined;
function checkKey(k: unknown): Key {
  if (k !== null && typeof k === 'object')
    throw new TypeError(
      `unhashable type: a dict key must be a primitive (string, number, bigint, boolean, null), got ${Array.isArray(k) ? 'an array' : 'an object'}`,
    );
  if (typeof k === 'function' || typeof k === 'symbol') throw new TypeError(`unhashable type: ${typeof k}`);
  return k as Key;
}

function entriesOf(init: unknown, what: string): [unknown, unknown][] {
  if (init === undefined || init === null) return [];
  if (init instanceof Map) return [...init];
  if (Array.isArray(init)) {
    return init.map((p, i) => {
      if (!Array.isArray(p) || p.length !== 2) throw new TypeError(`${what}: element ${i} of the sequence is not a [key, value] pair`);
      return [p[0], p[1]];
    });
  }
  if (typeof init === 'object') return Object.entries(init);
  throw new TypeError(`${what}: expected a Map, an object or an array of [key, value] pairs`);
}

/** The dict a SyncManager serves: a Map with Python's dict methods. */
export class ManagedDict {
  readonly #m = new Map<Key, unknown>();
  constructor(init?: unknown) {
    this.update(init);
  }
  get(key: unknown, dflt?: unknown): unknown {
    const k = checkKey(key);
    return this.#m.has(k) ? this.#m.get(k) : dflt;
  }
  getItem(key: unknown): unknown {
    const k = checkKey(key);
    if (!this.#m.has(k)) throw new KeyError(describe(k));
    return this.#m.get(k);
  }
  set(key: unknown, value: unknown): void {
    this.#m.set(checkKey(key), value);
  }
  delete(key: unknown): boolean {
    return this.#m.delete(checkKey(key));
  }
  has(key: unknown): boolean {
    return this.#m.has(checkKey(key));
  }
  keys(): Key[] {
    return [...this.#m.keys()];
  }
  values(): unknown[] {
    return [...this.#m.values()];
  }
  items(): [Key, unknown][] {
    return [...this.#m.entries()];
  }
  update(other?: unknown): void {
    for (const [k, v] of entriesOf(other, 'update')) this.#m.set(checkKey(k), v);
  }
  pop(key: unknown, ...dflt: unknown[]): unknown {
    const k = checkKey(key);
    if (this.#m.has(k)) {
      const v = this.#m.get(k);
      this.#m.delete(k);
      return v;
    }
    if (dflt.length) return dflt[0];
    throw new KeyError(describe(k));
  }
  popitem(): [Key, unknown] {
    const last = [...this.#m.keys()].at(-1);
    if (this.#m.size === 0) throw new KeyError('popitem(): dictionary is empty');
    const v = this.#m.get(last);
    this.#m.delete(last);
    return [last, v];
  }
  setdefault(key: unknown, dflt?: unknown): unknown {
    const k = checkKey(key);
    if (!this.#m.has(k)) this.#m.set(k, dflt);
    return this.#m.get(k);
  }
  clear(): void {
    this.#m.clear();
  }
  copy(): Map<Key, unknown> {
    return new Map(this.#m);
  }
  toObject(): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (const [k, v] of this.#m) o[String(k)] = v;
    return o;
  }
  len(): number {
    return this.#m.size;
  }
  _getvalue(): Map<Key, unknown> {
    return this.copy();
  }
}

export function describe(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : typeof v === 'bigint' ? `${v}n` : String(v);
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'string') return 'str';
  // An object made by Object.create(null) has no constructor.
  return typeof v === 'object' ? ((v as { constructor?: { name: string } }).constructor?.name ?? 'object') : typeof v;
}

/** Python's `<` for sorting: numbers with numbers, strings with strings, arrays element-wise. */
export function pyCompare(a: unknown, b: unknown): number {
  const num = (x: unknown): boolean => typeof x === 'number' || typeof x === 'bigint' || typeof x === 'boolean';
  if (num(a) && num(b)) {
    const x = typeof a === 'boolean' ? Number(a) : (a as number | bigint);
    const y = typeof b === 'boolean' ? Number(b) : (b as number | bigint);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = pyCompare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  throw new TypeError(`'<' not supported between instances of '${typeName(a)}' and '${typeName(b)}'`);
}

function normIndex(i: unknown, len: number, what: string): number {
  if (typeof i !== 'number' || !Number.isInteger(i)) throw new TypeError(`${what}: indices must be integers, got ${typeName(i)}`);
  const j = i < 0 ? i + len : i;
  if (j < 0 || j >= len) throw new IndexError(`${what}: index out of range`);
  return j;
}

/** The list a SyncManager serves: an array with Python's list methods. */
export class ManagedList {
  #a: unknown[];
  // Arguments come from clients, untyped: null is Python's None.
  constructor(init?: Iterable<unknown> | null) {
    this.#a = init === undefined || init === null ? [] : [...init];
  }
  append(x: unknown): void {
    this.#a.push(x);
  }
  extend(xs: Iterable<unknown>): void {
    for (const x of xs) this.#a.push(x);
  }
  insert(i: number, x: unknown): void {
    if (!Number.isInteger(i)) throw new TypeError('insert(i, x): i must be an integer');
    const n = this.#a.length;
    const j = i < 0 ? Math.max(0, n + i) : Math.min(i, n);
    this.#a.splice(j, 0, x);
  }
  pop(i = -1): unknown {
    if (this.#a.length === 0) throw new IndexError('pop from empty list');
    const j = normIndex(i, this.#a.length, 'pop');
    return this.#a.splice(j, 1)[0];
  }
  remove(x: unknown): void {
    const i = this.#a.findIndex((y) => isDeepStrictEqual(y, x));
    if (i < 0) throw new ValueError('list.remove(x): x not in list');
    this.#a.splice(i, 1);
  }
  index(x: unknown, start = 0, stop = this.#a.length): number {
    const n = this.#a.length;
    const s = start < 0 ? Math.max(0, n + start) : start;
    const e = stop < 0 ? n + stop : Math.min(stop, n);
    for (let i = s; i < e; i++) if (isDeepStrictEqual(this.#a[i], x)) return i;
    throw new ValueError(`${describe(x)} is not in list`);
  }
  count(x: unknown): number {
    return this.#a.filter((y) => isDeepStrictEqual(y, x)).length;
  }
  sort(options: { key?: (x: unknown) => unknown; reverse?: boolean } | null = {}): void {
    const { key, reverse = false } = options ?? {};
    const decorated = this.#a.map((v, i) => ({ v, k: key ? key(v) : v, i }));
    decorated.sort((p, q) => (reverse ? pyCompare(q.k, p.k) : pyCompare(p.k, q.k)) || p.i - q.i);
    this.#a = decorated.map((d) => d.v);
  }
  reverse(): void {
    this.#a.reverse();
  }
  slice(start?: number, end?: number): unknown[] {
    return this.#a.slice(start, end);
  }
  at(i: number): unknown {
    return this.#a.at(i);
  }
  get(i: number): unknown {
    return this.#a[normIndex(i, this.#a.length, 'list index')];
  }
  set(i: number, x: unknown): void {
    this.#a[normIndex(i, this.#a.length, 'list assignment index')] = x;
  }
  delete(i: number): void {
    this.#a.splice(normIndex(i, this.#a.length, 'list assignment index'), 1);
  }
  clear(): void {
    this.#a = [];
  }
  copy(): unknown[] {
    return [...this.#a];
  }
  len(): number {
    return this.#a.length;
  }
  _getvalue(): unknown[] {
    return this.copy();
  }
}

/** The Namespace a SyncManager serves: named attributes. */
export class ManagedNamespace {
  readonly #o = new Map<string, unknown>();
  constructor(init?: Record<string, unknown>) {
    if (init) for (const [k, v] of Object.entries(init)) this.#o.set(k, v);
  }
  // Names come from clients, untyped: a name that is not a string is used as its string form.
  get(name: unknown): unknown {
    return this.#o.get(String(name));
  }
  set(name: unknown, value: unknown): void {
    this.#o.set(String(name), value);
  }
  delete(name: unknown): boolean {
    return this.#o.delete(String(name));
  }
  has(name: unknown): boolean {
    return this.#o.has(String(name));
  }
  toObject(): Record<string, unknown> {
    return Object.fromEntries(this.#o);
  }
  _getvalue(): Record<string, unknown> {
    return this.toObject();
  }
}

/** The Value a SyncManager serves (Python: `managers.Value`): a typecode and any value. */
export class ManagedValue {
  readonly #typecode: string;
  #value: unknown;
  constructor(typecode: string, value: unknown) {
    this.#typecode = typecode;
    this.#value = value;
  }
  get(): unknown {
    return this.#value;
  }
  set(value: unknown): void {
    this.#value = value;
  }
  typecode(): string {
    return this.#typecode;
  }
  _getvalue(): unknown {
    return this.#value;
  }
}

const TYPED: Record<string, (new (n: number) => ArrayLike<number | bigint> & { [i: number]: number | bigint }) | undefined> = {
  b: Int8Array,
  B: Uint8Array,
  h: Int16Array,
  H: Uint16Array,
  i: Int32Array,
  I: Uint32Array,
  l: BigInt64Array,
  L: BigUint64Array,
  q: BigInt64Array,
  Q: BigUint64Array,
  f: Float32Array,
  d: Float64Array,
};

/** The Array a SyncManager serves (Python: `array.array` in the server). */
export class ManagedArray {
  readonly #typecode: string;
  readonly #a: { length: number; [i: number]: unknown };
  constructor(typecode: string, init: number | Iterable<unknown>) {
    const T = TYPED[typecode];
    if (!T && typecode !== 'c' && typecode !== 'u')
      throw new ValueError(`bad typecode '${typecode}' (must be b, B, h, H, i, I, l, L, q, Q, f, d, c or u)`);
    this.#typecode = typecode;
    const values = typeof init === 'number' ? undefined : [...init];
    const n = typeof init === 'number' ? init : values!.length;
    if (!Number.isInteger(n) || n < 0) throw new ValueError('Array size must be an integer >= 0');
    this.#a = T ? new T(n) : new Array<string>(n).fill(typecode === 'c' ? '\0' : '');
    if (values) values.forEach((v, i) => this.set(i, v));
  }
  #encode(v: unknown): unknown {
    const c = this.#typecode;
    if (c === 'c' || c === 'u') {
      // eslint-disable-next-line @typescript-eslint/no-misused-spread -- a character is a code point, as Python counts them: what spread counts
      if (typeof v !== 'string' || [...v].length !== 1) throw new TypeError(`array item must be a 1-character string for typecode '${c}'`);
      return v;
    }
    if ('lLqQ'.includes(c)) {
      if (typeof v === 'bigint') return v;
      if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
      throw new TypeError(`array item must be an integer for typecode '${c}'`);
    }
    if (typeof v !== 'number') throw new TypeError(`array item must be a number for typecode '${c}', got ${typeName(v)}`);
    if (c !== 'f' && c !== 'd' && !Number.isInteger(v)) throw new TypeError(`integer argument expected for typecode '${c}', got float`);
    return v;
  }
  len(): number {
    return this.#a.length;
  }
  get(i: number): unknown {
    return this.#a[normIndex(i, this.#a.length, 'array index')];
  }
  set(i: number, v: unknown): void {
    this.#a[normIndex(i, this.#a.length, 'array assignment index')] = this.#encode(v);
  }
  slice(start?: number, end?: number): unknown[] {
    return Array.prototype.slice.call(this.#a, start, end);
  }
  toArray(): unknown[] {
    return Array.from(this.#a as ArrayLike<unknown>);
  }
  typecode(): string {
    return this.#typecode;
  }
  _getvalue(): unknown[] {
    return this.toArray();
  }
}
