// Shared values and arrays (Python: `multiprocessing.sharedctypes`): one typed array over a named
// segment. Sending one to a child or thread sends the segment's name (never the bytes), and the
// receiver maps the same memory, so a 100 MB array crosses as fast as a number.
import { kMaxLength } from 'node:buffer';
import { inspect } from 'node:util';

import { HEADER_BYTES, KIND, rebuildWith, Segment, segmentFor } from '../shm/segment.js';
import { InvalidArgumentError, TimeoutError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import {
  describeValue,
  sizeOf,
  typeInfo,
  type AnyTyped,
  type BufOf,
  type CharCode,
  type ElementOf,
  type InputOf,
  type Typecode,
  type TypeInfo,
} from './ctypes.js';
import { closedError, RLock, type WaitOptions } from '../sync/synchronize.js';

export { sizeOf, typeInfo, type BufOf, type ElementOf, type InputOf, type Typecode, type TypeInfo };

/** A lock-like object a synchronized Value or Array can use: Lock, RLock, Semaphore, Condition. */
export interface LockLike {
  acquire(options?: WaitOptions): Promise<boolean>;
  release(): void;
}

/** Options of `Value` and `Array`: `lock` true/undefined/null (a new RLock), false (raw), or a lock to use. */
export interface SyncOptions {
  lock?: boolean | null | LockLike;
}

function chooseLock(options: SyncOptions | undefined, what: string): LockLike | false {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw new InvalidArgumentError(`${what}: options must be an object like { lock }`);
  const lock = options?.lock;
  if (lock === undefined || lock === null || lock === true) return new RLock();
  if (lock === false) return false;
  if (typeof lock === 'object' && typeof lock.acquire === 'function' && typeof lock.release === 'function') return lock;
  throw new InvalidArgumentError(`${what}: lock must be true, false, null or a Lock/RLock, got ${describeValue(lock)}`);
}

// If rebuilding throws (a corrupt or foreign segment), give back the count the sender added.
function adoptInto<T>(name: string, kind: number, make: () => T): T {
  const seg = Segment.adopt(name, kind);
  try {
    return rebuildWith(seg, make);
  } catch (err) {
    seg.close();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Values

/** A single shared C value with no lock (Python: `sharedctypes.RawValue`). */
export class RawValue<C extends Typecode = Typecode> {
  /** The typecode it was created with. */
  readonly typecode: C;
  readonly #info: TypeInfo;
  readonly #view: AnyTyped;
  /** @internal */
  readonly _seg: Segment;

  /**
   * A new shared value of `typecode`, initially `value` (default 0, '\0' for 'c'/'u').
   * @throws InvalidArgumentError for an unknown typecode, or a value of the wrong type or out of range.
   */
  constructor(typecode: C, value?: InputOf<C>) {
    const info = typeInfo(typecode, 'RawValue(typecode, value)');
    const initial = value === undefined ? undefined : info.encode(value, `Value('${typecode}', value)`);
    const [seg, created] = segmentFor(8, KIND.Value);
    this.typecode = typecode;
    this.#info = info;
    this._seg = seg;
    this.#view = new info.ctor(seg.buffer, seg.byteOffset + HEADER_BYTES, 1);
    if (created && initial !== undefined) this.#view[0] = initial;
  }

  /**
   * The current value. Each read or write is one memory access; `v.value += 1` is not atomic: use a lock.
   * @throws ProcessError ERR_MP_CLOSED after close().
   */
  get value(): ElementOf<C> {
    if (this._seg.closed) throw closedError('Value');
    return this.#info.decode(this.#view[0]!) as ElementOf<C>;
  }
  /** @throws InvalidArgumentError for a value of the wrong type or out of range; ProcessError ERR_MP_CLOSED after close(). */
  set value(v: InputOf<C>) {
    if (this._seg.closed) throw closedError('Value');
    this.#view[0] = this.#info.encode(v, `Value('${this.typecode}').value`);
  }
  /**
   * Give this process's hold on the shared memory back now, instead of when the object is
   * garbage-collected; copies in other processes keep working. Later reads and writes of this
   * object throw ProcessError ERR_MP_CLOSED. Also `using v = new RawValue(...)`.
   */
  close(): void {
    this._seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return this._seg.closed ? `RawValue('${this.typecode}', closed)` : `RawValue('${this.typecode}', ${describeValue(this.value)})`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

function sizeOfInfo(info: TypeInfo): number {
  return (info.ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
}

// Set while rebuilding a synchronized wrapper in a receiver: its constructor then wraps these.
let wrapping: { obj: object; lock: LockLike } | undefined;

function takeWrapping(): { obj: object; lock: LockLike } | undefined {
  const w = wrapping;
  wrapping = undefined;
  return w;
}

/** Python's `with lock:` over any lock-like object. */
async function withLockOf<T>(lock: LockLike, fn: () => T | Promise<T>, options?: WaitOptions): Promise<T> {
  if (!(await lock.acquire(options))) throw new TimeoutError(`not acquired within ${options?.timeout ?? 0} ms`);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

async function guardOf<T>(lock: LockLike, self: T, options?: WaitOptions): Promise<T> {
  if (!(await lock.acquire(options))) throw new TimeoutError(`not acquired within ${options?.timeout ?? 0} ms`);
  return self;
}

/**
 * A shared value with a lock (Python: `sharedctypes.Synchronized`, what `Value()` returns).
 * Create it with `new Value(typecode, value, { lock })`.
 */
export class Synchronized<C extends Typecode = Typecode> {
  readonly #obj!: RawValue<C>;
  readonly #lock!: LockLike;
  /** The lock this wrapper made (the default), closed with it. */
  #ownLock: RLock | undefined;

  /** @see Value */
  constructor(typecode: C, value?: InputOf<C>, options?: SyncOptions) {
    const w = takeWrapping();
    if (w) {
      // Set by the Value reducer's rebuild, with the RawValue it rebuilt.
      this.#obj = w.obj as RawValue<C>;
      this.#lock = w.lock;
      return;
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion -- for JavaScript callers: a Symbol typecode would make a bare template throw
    const lock = chooseLock(options, `Value('${String(typecode)}', value, options)`);
    const obj = new RawValue(typecode, value);
    // Python returns the raw ctypes object for lock=False: so does this.
    if (lock === false) return obj as unknown as Synchronized<C>;
    this.#obj = obj;
    this.#lock = lock;
    if (lock instanceof RLock && lock !== options?.lock) this.#ownLock = lock;
  }
  /**
   * Give this process's hold on the value (and on the lock it made for itself; a lock passed in
   * stays open) back now. Later calls throw ProcessError ERR_MP_CLOSED. Also `using v = new Value(...)`.
   */
  close(): void {
    this.#obj.close();
    this.#ownLock?.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  /** The typecode it was created with. */
  get typecode(): C {
    return this.#obj.typecode;
  }
  /** The current value (not locked: hold the lock for read-modify-write). */
  get value(): ElementOf<C> {
    return this.#obj.value;
  }
  /** @throws InvalidArgumentError for a value of the wrong type or out of range. */
  set value(v: InputOf<C>) {
    this.#obj.value = v;
  }
  /** The raw shared value, same memory, no lock (Python: `get_obj()`). */
  getObj(): RawValue<C> {
    return this.#obj;
  }
  /** The lock guarding this value (Python: `get_lock()`). */
  getLock(): LockLike {
    return this.#lock;
  }
  /** Acquire the lock; resolves false on `{ block: false }` or timeout. @throws AbortError when `signal` aborts. */
  acquire(options?: WaitOptions): Promise<boolean> {
    return this.#lock.acquire(options);
  }
  /** Release the lock. @throws ProcessError when it is not held (or, for an RLock, not by the caller). */
  release(): void {
    this.#lock.release();
  }
  /**
   * Python's `with v.get_lock():` — acquire, run `fn`, release (also when `fn` throws).
   * @throws TimeoutError when `options.timeout` passes before the lock is acquired.
   */
  withLock<T>(fn: () => T | Promise<T>, options?: WaitOptions): Promise<T> {
    return withLockOf(this.#lock, fn, options);
  }
  /** Acquire and return this value for `await using _ = await v.guard()`. @throws TimeoutError when not acquired in time. */
  guard(options?: WaitOptions): Promise<this> {
    return guardOf(this.#lock, this, options);
  }
  /** Release the lock at the end of an `await using` block. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that release() throwing (lock not held) rejects
  async [Symbol.asyncDispose](): Promise<void> {
    this.#lock.release();
  }
  toString(): string {
    return this.#obj._seg.closed ? `Value('${this.typecode}', closed)` : `Value('${this.typecode}', ${describeValue(this.value)})`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** Constructor of `Value`: `{ lock: false }` gives a `RawValue`, otherwise a synchronized value. */
export interface ValueConstructor {
  new <C extends Typecode>(typecode: C, value: InputOf<C> | undefined, options: { lock: false }): RawValue<C>;
  new <C extends Typecode>(typecode: C, value?: InputOf<C>, options?: { lock?: true | null | LockLike }): Synchronized<C>;
  readonly prototype: Synchronized;
}

/**
 * A shared value (Python: `multiprocessing.Value(typecode, value, lock=True)`): `new Value('i', 0)`.
 * `.value` reads and writes it. With `{ lock: true }` (default) it has an RLock (`getLock()`,
 * `acquire`, `release`, `withLock`); `{ lock: someLock }` uses that lock; `{ lock: false }`
 * returns a `RawValue`. Crosses to children and threads by name.
 * @throws InvalidArgumentError for an unknown typecode, a bad value or a bad lock.
 */
export const Value = Synchronized as unknown as ValueConstructor;
/** A synchronized shared value (the type of `new Value(...)`). */
export type Value<C extends Typecode = Typecode> = Synchronized<C>;

// ---------------------------------------------------------------------------------------------
// Arrays

// Indexing through a Proxy: integer-like keys go to the element accessors, everything else to the
// object. Keys arrive as strings; parsing digits by hand avoids allocating.
function indexOfKey(p: string | symbol): number {
  if (typeof p !== 'string') return -1;
  const n = p.length;
  if (n === 0 || n > 15) return -1;
  let v = p.charCodeAt(0) - 48;
  if (v < 0 || v > 9 || (v === 0 && n > 1)) return -1;
  for (let k = 1; k < n; k++) {
    const d = p.charCodeAt(k) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** @internal What an object indexed through `indexedProxy` provides. */
export interface Indexed {
  readonly length: number;
  _getAt(i: number): unknown;
  _setAt(i: number, v: unknown): void;
}

const INDEXED: ProxyHandler<Indexed> = {
  get(target, p) {
    const i = indexOfKey(p);
    if (i < 0) return Reflect.get(target, p, target) as unknown;
    return i < target.length ? target._getAt(i) : undefined;
  },
  set(target, p, v) {
    const i = indexOfKey(p);
    if (i < 0) return Reflect.set(target, p, v, target);
    if (i >= target.length) throw new RangeError(`index ${i} out of range for length ${target.length}`);
    target._setAt(i, v);
    return true;
  },
  has(target, p) {
    const i = indexOfKey(p);
    return i < 0 ? Reflect.has(target, p) : i < target.length;
  },
};

/** @internal Make `obj[i]` read and write through `_getAt`/`_setAt`. */
export function indexedProxy<T extends Indexed>(obj: T): T {
  return new Proxy<T>(obj, INDEXED);
}

/** The array part shared by RawArray and SynchronizedArray: indexing, iteration, copies, strings. */
abstract class ArrayBase<C extends Typecode> implements Indexed {
  /** The typecode it was created with. */
  readonly typecode: C;
  /** Number of elements. */
  readonly length: number;
  /**
   * The memory itself as a typed array (no checks, native speed): `Int32Array` for 'i', bytes for 'c',
   * code points for 'u'. Stores through it wrap and coerce as typed arrays do.
   */
  readonly buf: BufOf<C>;
  /** @internal */
  readonly _info: TypeInfo;
  [index: number]: ElementOf<C>;

  constructor(typecode: C, info: TypeInfo, buf: AnyTyped) {
    this.typecode = typecode;
    this._info = info;
    this.buf = buf as BufOf<C>;
    this.length = buf.length;
  }
  /** @internal */
  _getAt(i: number): ElementOf<C> {
    if (this._closed) throw closedError('Array');
    return this._info.decode(this.buf[i]!) as ElementOf<C>;
  }
  /** @internal */
  _setAt(i: number, v: unknown): void {
    if (this._closed) throw closedError('Array');
    this.buf[i] = this._info.encode(v, `Array('${this.typecode}')[${i}]`);
  }
  /** @internal */
  _closed = false;
  /** @internal Give the shared memory (and an own lock) back. */
  protected abstract _release(): void;
  /**
   * Give this process's hold on the shared memory back now, instead of when the object is
   * garbage-collected; copies in other processes keep working. Later calls throw ProcessError
   * ERR_MP_CLOSED and `buf` becomes empty (a `buf` taken before must not be used after: the memory
   * may hold another object by then). Also `using a = new Array(...)`.
   */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    (this as { buf: AnyTyped }).buf = new this._info.ctor(new ArrayBuffer(0), 0, 0);
    this._release();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  /** Element `i`; negative counts from the end (as Python's `a[-1]`); undefined when out of range. */
  at(i: number): ElementOf<C> | undefined {
    const k = i < 0 ? this.length + i : i;
    return k >= 0 && k < this.length ? this._getAt(k) : undefined;
  }
  /** A copy of elements `start` to `end` as a plain array (Python: `a[start:end]`); negative indices count from the end. */
  slice(start?: number, end?: number): ElementOf<C>[] {
    if (this._closed) throw closedError('Array');
    return Array.from(this.buf.subarray(start, end) as ArrayLike<number | bigint>, (x) => this._info.decode(x) as ElementOf<C>);
  }
  /** A copy of every element as a plain array (Python: `a[:]`). */
  toArray(): ElementOf<C>[] {
    return this.slice();
  }
  /**
   * Write `values` starting at `offset` (Python: `a[offset:offset+n] = values`); checks every value first.
   * @throws InvalidArgumentError when a value is wrong or they do not fit.
   */
  set(values: Iterable<InputOf<C>>, offset = 0): void {
    if (this._closed) throw closedError('Array');
    const encoded = encodeAll(this._info, values, `Array('${this.typecode}').set`);
    if (!Number.isInteger(offset) || offset < 0 || offset + encoded.length > this.length) {
      throw new InvalidArgumentError(
        `Array('${this.typecode}').set: ${encoded.length} values at offset ${offset} do not fit in length ${this.length}`,
      );
    }
    for (let k = 0; k < encoded.length; k++) this.buf[offset + k] = encoded[k] as never;
  }
  /**
   * For 'c' and 'u' arrays, the text up to the first NUL ('c': bytes decoded as UTF-8), as Python's
   * `.value`; for others, a copy of every element (as `toArray()`).
   */
  get value(): C extends CharCode ? string : ElementOf<C>[] {
    if (this._closed) throw closedError('Array');
    if (this.typecode === 'c' || this.typecode === 'u') {
      const end = (this.buf as Uint8Array).indexOf(0);
      const used = this.buf.subarray(0, end < 0 ? this.length : end) as Uint8Array | Uint32Array;
      return (
        this.typecode === 'c'
          ? Buffer.from(used.buffer, used.byteOffset, used.length).toString('utf8')
          : codePointsToString(used as Uint32Array)
      ) as never;
    }
    return this.toArray() as never;
  }
  /**
   * For 'c' arrays a string (UTF-8 encoded) or bytes, for 'u' a string, NUL-terminated when shorter
   * than the array (as Python); for others an iterable of exactly `length` values.
   * @throws InvalidArgumentError when the value does not fit or has the wrong length or type.
   */
  set value(v: C extends CharCode ? string | Uint8Array : Iterable<InputOf<C>>) {
    const what = `Array('${this.typecode}').value`;
    if (this._closed) throw closedError('Array');
    if (this.typecode === 'c' || this.typecode === 'u') {
      const units =
        this.typecode === 'c'
          ? typeof v === 'string'
            ? Buffer.from(v, 'utf8')
            : v instanceof Uint8Array
              ? v
              : undefined
          : typeof v === 'string'
            ? Uint32Array.from(v, (ch) => ch.codePointAt(0)!)
            : undefined;
      if (units === undefined)
        throw new InvalidArgumentError(
          `${what}: takes a string${this.typecode === 'c' ? ' or a Uint8Array' : ''}, got ${describeValue(v)}`,
        );
      if (units.length > this.length)
        throw new InvalidArgumentError(
          `${what}: ${units.length} ${this.typecode === 'c' ? 'bytes' : 'characters'} is too long for length ${this.length}`,
        );
      (this.buf as Uint8Array).set(units as Uint8Array);
      if (units.length < this.length) this.buf[units.length] = 0;
      return;
    }
    const encoded = encodeAll(this._info, v as Iterable<unknown>, what);
    if (encoded.length !== this.length)
      throw new InvalidArgumentError(`${what}: got ${encoded.length} values for an array of length ${this.length}`);
    for (let k = 0; k < encoded.length; k++) this.buf[k] = encoded[k] as never;
  }
  /** For 'c' arrays, a copy of all the bytes (Python: `.raw`). */
  get raw(): Uint8Array {
    if (this._closed) throw closedError('Array');
    return (this.buf as Uint8Array).slice();
  }
  /** @throws InvalidArgumentError when more bytes than the array holds, or the array is not 'c'. */
  set raw(bytes: Uint8Array) {
    if (this._closed) throw closedError('Array');
    if (this.typecode !== 'c') throw new InvalidArgumentError(`Array('${this.typecode}').raw: only 'c' arrays have raw bytes`);
    if (!(bytes instanceof Uint8Array) || bytes.length > this.length)
      throw new InvalidArgumentError(`Array('c').raw: takes a Uint8Array of at most ${this.length} bytes`);
    (this.buf as Uint8Array).set(bytes);
  }
  *[Symbol.iterator](): IterableIterator<ElementOf<C>> {
    for (let i = 0; i < this.length; i++) yield this._getAt(i);
  }
  /** The elements, for JSON.stringify. */
  toJSON(): unknown[] {
    return this.toArray().map((x) => (typeof x === 'bigint' ? x.toString() : x));
  }
  protected _describe(cls: string): string {
    if (this._closed) return `${cls}('${this.typecode}', closed)`;
    const shown = this.slice(0, 20).map(describeValue).join(', ');
    return `${cls}('${this.typecode}', [${shown}${this.length > 20 ? `, ... ${this.length - 20} more` : ''}])`;
  }
  abstract toString(): string;
  [inspect.custom](): string {
    return this.toString();
  }
}

// Spreading a long array into fromCodePoint would overflow the stack: go in chunks.
function codePointsToString(units: Uint32Array): string {
  let out = '';
  for (let k = 0; k < units.length; k += 8192) out += String.fromCodePoint(...units.subarray(k, k + 8192));
  return out;
}

function encodeAll(info: TypeInfo, values: Iterable<unknown>, what: string): (number | bigint)[] {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (values === null || typeof values[Symbol.iterator] !== 'function')
    throw new InvalidArgumentError(`${what}: takes an iterable of values, got ${describeValue(values)}`);
  const out: (number | bigint)[] = [];
  let k = 0;
  for (const v of values) out.push(info.encode(v, `${what}[${k++}]`));
  return out;
}

// What Array/RawArray take besides the typecode: a size, or the initial values. Strings give the
// elements of 'c' (as UTF-8 bytes) and 'u' (code points) arrays, as `Array('c', b'abc')` in Python.
function initialValues(
  info: TypeInfo,
  typecode: string,
  sizeOrValues: unknown,
  what: string,
): { length: number; values?: (number | bigint)[] } {
  if (typeof sizeOrValues === 'number') {
    if (!Number.isInteger(sizeOrValues) || sizeOrValues < 0)
      throw new InvalidArgumentError(`${what}: size must be an integer >= 0, got ${sizeOrValues}`);
    // Node maps no block larger than a Buffer may be.
    const bytes = sizeOrValues * info.ctor.BYTES_PER_ELEMENT;
    if (bytes + HEADER_BYTES > kMaxLength)
      throw new InvalidArgumentError(
        `${what}: ${sizeOrValues} elements of '${typecode}' take ${bytes} bytes, more than Node can map (${kMaxLength}); use a smaller size or several arrays`,
      );
    return { length: sizeOrValues };
  }
  if (typeof sizeOrValues === 'string') {
    if (typecode === 'c') sizeOrValues = Buffer.from(sizeOrValues, 'utf8');
    else if (typecode === 'u') sizeOrValues = Array.from(sizeOrValues);
    else throw new InvalidArgumentError(`${what}: a string initializes only 'c' and 'u' arrays; give a size or an array of values`);
  }
  const values = encodeAll(info, sizeOrValues as Iterable<unknown>, what);
  return { length: values.length, values };
}

/** A shared array with no lock (Python: `sharedctypes.RawArray`): `new RawArray('d', 10)`. */
export class RawArray<C extends Typecode = Typecode> extends ArrayBase<C> {
  /** @internal */
  readonly _seg: Segment;

  /**
   * A new shared array of `typecode`: `sizeOrValues` is a length (zero-filled) or the initial
   * values (an iterable; a string for 'c' and 'u'). `arr[i]` reads and writes elements.
   * @throws InvalidArgumentError for an unknown typecode, a bad size, or a value of the wrong type or out of range.
   */
  constructor(typecode: C, sizeOrValues: number | Iterable<InputOf<C>> | (C extends CharCode ? string : never)) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion -- for JavaScript callers: a Symbol typecode would make a bare template throw
    const what = `Array('${String(typecode)}', sizeOrValues)`;
    const info = typeInfo(typecode, what);
    const { length, values } = initialValues(info, typecode, sizeOrValues, what);
    const bytes = length * sizeOfInfo(info);
    // Whole 8-byte words: Segment views the mapping as Int32 cells.
    const [seg, created] = segmentFor(Math.ceil(bytes / 8) * 8, KIND.Array);
    if (seg.size < HEADER_BYTES + bytes)
      throw new InvalidArgumentError(`shared memory segment "${seg.name}" is too small for ${length} elements of '${typecode}'`);
    super(typecode, info, new info.ctor(seg.buffer, seg.byteOffset + HEADER_BYTES, length));
    this._seg = seg;
    if (created && values) for (let k = 0; k < length; k++) this.buf[k] = values[k] as never;
    return indexedProxy(this);
  }
  override toString(): string {
    return this._describe('RawArray');
  }
  protected _release(): void {
    this._seg.close();
  }
}

/** A shared array with a lock (Python: `sharedctypes.SynchronizedArray`, what `Array()` returns). */
export class SynchronizedArray<C extends Typecode = Typecode> extends ArrayBase<C> {
  /** @internal */
  readonly _obj!: RawArray<C>;
  /** @internal */
  readonly _lk!: LockLike;

  /** @see SharedArray */
  constructor(typecode: C, sizeOrValues: number | Iterable<InputOf<C>> | (C extends CharCode ? string : never), options?: SyncOptions) {
    const w = takeWrapping();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion -- for JavaScript callers: a Symbol typecode would make a bare template throw
    const lock = w ? w.lock : chooseLock(options, `Array('${String(typecode)}', sizeOrValues, options)`);
    // Set by the Array reducer's rebuild, with the RawArray it rebuilt.
    const obj = w ? (w.obj as RawArray<C>) : new RawArray(typecode, sizeOrValues);
    // Python returns the raw ctypes array for lock=False: so does this.
    if (lock === false) return obj as unknown as SynchronizedArray<C>;
    super(obj.typecode, obj._info, obj.buf);
    this._obj = obj;
    this._lk = lock;
    if (!w && lock instanceof RLock && lock !== options?.lock) this._ownLock = lock;
    return indexedProxy(this);
  }
  /** @internal The lock this wrapper made (the default), closed with it. */
  _ownLock: RLock | undefined;
  protected _release(): void {
    this._obj.close();
    this._ownLock?.close();
  }
  /** The raw shared array, same memory, no lock (Python: `get_obj()`). */
  getObj(): RawArray<C> {
    return this._obj;
  }
  /** The lock guarding this array (Python: `get_lock()`). */
  getLock(): LockLike {
    return this._lk;
  }
  /** Acquire the lock; resolves false on `{ block: false }` or timeout. @throws AbortError when `signal` aborts. */
  acquire(options?: WaitOptions): Promise<boolean> {
    return this._lk.acquire(options);
  }
  /** Release the lock. @throws ProcessError when it is not held (or, for an RLock, not by the caller). */
  release(): void {
    this._lk.release();
  }
  /**
   * Python's `with arr.get_lock():` — acquire, run `fn`, release (also when `fn` throws).
   * @throws TimeoutError when `options.timeout` passes before the lock is acquired.
   */
  withLock<T>(fn: () => T | Promise<T>, options?: WaitOptions): Promise<T> {
    return withLockOf(this._lk, fn, options);
  }
  /** Acquire and return this array for `await using _ = await arr.guard()`. @throws TimeoutError when not acquired in time. */
  guard(options?: WaitOptions): Promise<this> {
    return guardOf(this._lk, this, options);
  }
  /** Release the lock at the end of an `await using` block. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that release() throwing (lock not held) rejects
  async [Symbol.asyncDispose](): Promise<void> {
    this._lk.release();
  }
  override toString(): string {
    return this._describe('Array');
  }
}
/** Constructor of `Array`/`SharedArray`: `{ lock: false }` gives a `RawArray`, otherwise a synchronized array. */
export interface SharedArrayConstructor {
  new <C extends Typecode>(
    typecode: C,
    sizeOrValues: number | Iterable<InputOf<C>> | (C extends CharCode ? string : never),
    options: { lock: false },
  ): RawArray<C>;
  new <C extends Typecode>(
    typecode: C,
    sizeOrValues: number | Iterable<InputOf<C>> | (C extends CharCode ? string : never),
    options?: { lock?: true | null | LockLike },
  ): SynchronizedArray<C>;
  readonly prototype: SynchronizedArray;
}

/**
 * A shared array (Python: `multiprocessing.Array(typecode, size_or_initializer, lock=True)`):
 * `new SharedArray('i', 10)` or `new SharedArray('d', [1, 2, 3])`. Reads and writes like a typed
 * array (`a[i]`, `length`, iteration, `slice`, `.buf` for native speed); 'c'/'u' arrays have
 * `.value` as a string. Lock options as `Value`. Crosses to children and threads by name.
 * @throws InvalidArgumentError for an unknown typecode, a bad size or value, or a bad lock.
 */
export const SharedArray = SynchronizedArray as unknown as SharedArrayConstructor;
/** A synchronized shared array (the type of `new SharedArray(...)`). */
export type SharedArray<C extends Typecode = Typecode> = SynchronizedArray<C>;
export { SharedArray as Array };

// ---------------------------------------------------------------------------------------------
// Transport: the segment's name plus what the receiver needs to view it; the lock crosses as itself.

registerType(
  RawValue,
  {
    reduce: (v) => ({ name: v._seg.retainForSend(), typecode: v.typecode }),
    rebuild: ({ name, typecode }: { name: string; typecode: Typecode }) => adoptInto(name, KIND.Value, () => new RawValue(typecode)),
  },
  'multiproc.RawValue',
);
registerType(
  Synchronized,
  {
    reduce: (v) => ({ obj: v.getObj(), lock: v.getLock() }),
    rebuild: ({ obj, lock }: { obj: RawValue; lock: LockLike }) => {
      wrapping = { obj, lock };
      return new Synchronized(obj.typecode);
    },
  },
  'multiproc.Value',
);
registerType(
  RawArray,
  {
    reduce: (a) => ({ name: a._seg.retainForSend(), typecode: a.typecode, length: a.length }),
    rebuild: ({ name, typecode, length }: { name: string; typecode: Typecode; length: number }) =>
      adoptInto(name, KIND.Array, () => new RawArray(typecode, length)),
  },
  'multiproc.RawArray',
);
registerType(
  SynchronizedArray,
  {
    reduce: (a) => ({ obj: a.getObj(), lock: a.getLock() }),
    rebuild: ({ obj, lock }: { obj: RawArray; lock: LockLike }) => {
      wrapping = { obj, lock };
      return new SynchronizedArray(obj.typecode, 0);
    },
  },
  'multiproc.Array',
);
