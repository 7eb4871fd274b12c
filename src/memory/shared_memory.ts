// Named shared memory blocks (Python: `multiprocessing.shared_memory`). A SharedMemory is a raw
// POSIX segment with no multiproc header, exactly as Python makes them, so Node and Python
// programs can share one block by name; ShareableList uses CPython's byte layout for the same
// reason. Lifetime is Python's: the creator registers the name with the resource tracker,
// `unlink()` removes it, and the tracker unlinks what crashed programs left behind.
import * as os from 'node:os';
import { inspect } from 'node:util';

import { closeSegment, openSegment, unlinkSegment, type SegmentBuffer } from '../shm/native.js';
import { InvalidArgumentError, ProcessError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import * as tracker from '../shm/resource_tracker.js';
import { checkCanCross, segmentName } from '../shm/segment.js';
import { indexedProxy, type Indexed } from './sharedctypes.js';

/** Options of `new SharedMemory(...)`, as Python's arguments. */
export interface SharedMemoryOptions {
  /** The block's name (with or without the leading '/'); required unless `create` is true. */
  name?: string | null;
  /** Create a new block (fails if the name exists); default false: attach to an existing one. */
  create?: boolean;
  /** Bytes to create (an integer > 0 when creating; ignored when attaching, except as a minimum). */
  size?: number;
  /**
   * Register a created block with the resource tracker, which unlinks it if every process of
   * this program ends without `unlink()` (Python 3.13's `track`). Default true.
   */
  track?: boolean;
}

/**
 * A block of shared memory that any process can attach to by name (Python:
 * `multiprocessing.shared_memory.SharedMemory`), including Python programs. `buf` is a
 * `Uint8Array` over all of it. `close()` unmaps it in this process; `unlink()` (call it once, usually
 * in the creator) removes the name. Crossing to a child or thread sends `{ name, size }`, and the
 * receiver attaches.
 */
export class SharedMemory {
  readonly #name: string;
  readonly #size: number;
  #buffer: SegmentBuffer | undefined;
  #buf: Uint8Array | undefined;

  /**
   * Create (`create: true`) or attach to a shared memory block.
   * @throws InvalidArgumentError for a bad size or name, or no name when attaching.
   * @throws ProcessError with `code` 'ENOENT' (no such block), 'EEXIST' (name taken), 'EACCES', ...
   * @throws SharedMemoryFullError (ERR_MP_SHM_FULL) when /dev/shm has no room for a new block of `size` bytes.
   */
  constructor(options: SharedMemoryOptions = {}) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('SharedMemory(options): options must be an object like { name, create, size }');
    const { name = null, create = false, size = 0, track = true } = options;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0)
      throw new InvalidArgumentError(`SharedMemory: size must be an integer >= 0, got ${String(size)}`);
    if (create && size === 0)
      throw new InvalidArgumentError('SharedMemory: size must be a positive number different from zero when create is true');
    if (name !== null && (typeof name !== 'string' || name.replace(/^\//, '') === '' || name.slice(1).includes('/'))) {
      throw new InvalidArgumentError(
        `SharedMemory: name must be a non-empty string without '/' (a leading one is allowed), got ${inspect(name)}`,
      );
    }
    if (name === null && !create) throw new InvalidArgumentError('SharedMemory: name can only be null if create is true');
    let full: string;
    let buffer: SegmentBuffer;
    if (name === null) {
      // A fresh name, retried on the rare collision (Python does the same). The prefix makes it
      // recognisable as this process's, as the library's other segments are.
      for (;;) {
        full = segmentName('m');
        try {
          buffer = openSegment(full, size, true);
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== 'EEXIST') throw err;
        }
      }
    } else {
      full = name.startsWith('/') ? name : `/${name}`;
      // Attaching takes the segment as it is: CPython ignores `size` then, and so do we.
      buffer = openSegment(full, create ? size : 0, create);
    }
    this.#name = full;
    this.#buffer = buffer;
    this.#size = buffer.byteLength;
    this.#buf = new Uint8Array(buffer);
    if (create && track) tracker.register(full);
  }

  /** The block's name, without the leading '/' (as Python reports it). */
  get name(): string {
    return this.#name.slice(1);
  }

  /** Size in bytes. */
  get size(): number {
    return this.#size;
  }

  /** The block's bytes. @throws ProcessError (ERR_MP_CLOSED) after `close()`. */
  get buf(): Uint8Array {
    if (this.#buf === undefined) throw new ProcessError(`SharedMemory '${this.name}' is closed`, { code: 'ERR_MP_CLOSED' });
    return this.#buf;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#buf === undefined;
  }

  /**
   * Unmap the block in this process; it stays for others until unlinked. Views of `buf` become
   * empty where Node can detach the buffer (Node 20); idempotent.
   */
  close(): void {
    const buffer = this.#buffer;
    if (buffer === undefined) return;
    this.#buffer = undefined;
    this.#buf = undefined;
    closeSegment(buffer);
  }

  /**
   * Remove the block's name (Python: `unlink()`): no new process can attach; the memory goes when
   * every process has closed it. Call it once, across all processes.
   * @throws ProcessError with code 'ENOENT' when it was already unlinked.
   */
  unlink(): void {
    unlinkSegment(this.#name);
    // Also from a process that only attached (a child of the creator, usually): the tracker is
    // shared by the whole process tree, as Python's unlink() always unregisters.
    tracker.unregister(this.#name);
  }

  /** Closes (not unlinks), for `using shm = new SharedMemory(...)`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes (not unlinks), for `await using`. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that a throw from close() rejects
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  toString(): string {
    return `SharedMemory('${this.name}', size=${this.size})`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

registerType(
  SharedMemory,
  {
    reduce: (shm) => {
      checkCanCross('a SharedMemory');
      return { name: shm.name, size: shm.size };
    },
    rebuild: ({ name, size }: { name: string; size: number }) => new SharedMemory({ name, create: false, size }),
  },
  'multiproc.SharedMemory',
);

// ---------------------------------------------------------------------------------------------
// ShareableList, in CPython's layout (Lib/multiprocessing/shared_memory.py), native byte order:
//   8 bytes             number of items N (int64)
//   (N + 1) * 8 bytes   offsets of each item in the data area, and its end (int64)
//   K bytes             the data area: 8 bytes per number, bool or null; strings and bytes get
//                       their UTF-8 length rounded up to a multiple of 8 (at least one NUL spare)
//   N * 8 bytes         each item's struct format, NUL-padded: 'q', 'd', 'xxxxxxx?', 'xxxxxx?x', '<n>s'
//   N bytes             each item's back-transform: 0 as is, 1 str, 2 bytes, 3 None

/** What a ShareableList holds: int (number or bigint), float, bool, str, bytes (Uint8Array), null. */
export type Shareable = number | bigint | boolean | string | Uint8Array | null;

const LE = os.endianness() === 'LE';
const FMT_INT = 'q';
const FMT_FLOAT = 'd';
const FMT_BOOL = 'xxxxxxx?';
const FMT_NONE = 'xxxxxx?x';
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Packed {
  fmt: string;
  code: number;
  /** Bytes for 's' formats. */
  bytes?: Uint8Array;
}

// Which struct format and back-transform a value takes (Python: `_types_mapping`). A JS number
// is an int when it is integral (JS cannot tell 1 from 1.0), else a float.
function pack(value: unknown, what: string): Packed {
  if (value === null) return { fmt: FMT_NONE, code: 3 };
  if (typeof value === 'boolean') return { fmt: FMT_BOOL, code: 0 };
  if (typeof value === 'bigint') {
    if (value < INT64_MIN || value > INT64_MAX) throw new InvalidArgumentError(`${what}: ${value}n does not fit in 64 bits`);
    return { fmt: FMT_INT, code: 0 };
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value) && !Object.is(value, -0)) {
      if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`${what}: ${value} is an integer beyond 2**53; pass it as a bigint`);
      return { fmt: FMT_INT, code: 0 };
    }
    return { fmt: FMT_FLOAT, code: 0 };
  }
  if (typeof value === 'string') return { fmt: 's', code: 1, bytes: encoder.encode(value) };
  if (value instanceof Uint8Array) return { fmt: 's', code: 2, bytes: value };
  throw new InvalidArgumentError(
    `${what}: a ShareableList holds numbers, bigints, booleans, strings, Uint8Arrays and null, got ${inspect(value)}`,
  );
}

/** Options of `new ShareableList(...)`. */
export interface ShareableListOptions {
  /** Name of the block to create (with a sequence) or attach to (with `null`). */
  name?: string | null;
}

/**
 * A fixed-length list of numbers, bigints, booleans, strings, bytes and null in shared memory
 * (Python: `multiprocessing.shared_memory.ShareableList`), in CPython's layout: a Python program
 * can attach to it by name, and the reverse. `sl[i]` reads and writes items; strings and bytes
 * may be replaced only by ones that fit the room allocated at creation. Integers read back as
 * numbers, or as bigints beyond 2**53.
 */
export class ShareableList implements Indexed, Iterable<Shareable> {
  /** The SharedMemory block holding the list. */
  readonly shm: SharedMemory;
  /** Number of items (fixed). */
  readonly length: number;
  /** @internal Offsets of the items in the data area, and its end. */
  readonly _offsets: number[];
  /** @internal */
  readonly _view: DataView;
  [index: number]: Shareable;

  /**
   * `new ShareableList([1, 'a', null])` creates a list (named `options.name` if given);
   * `new ShareableList(null, { name })` attaches to an existing one.
   * @throws InvalidArgumentError for an unsupported item or no name to attach to.
   * @throws ProcessError when the block does not exist (ENOENT) or the name is taken (EEXIST).
   */
  constructor(sequence?: Iterable<Shareable> | null, options: ShareableListOptions = {}) {
    // The default replaces undefined; null or a primitive can still come from JavaScript.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('ShareableList(sequence, options): options must be an object like { name }');
    const name = options.name ?? null;
    if (sequence === null || sequence === undefined) {
      if (name === null) sequence = [];
    }
    if (sequence !== null && sequence !== undefined) {
      const items = [...sequence];
      const packed = items.map((v, k) => pack(v, `ShareableList item ${k}`));
      const offsets = [0];
      for (const p of packed) offsets.push(offsets[offsets.length - 1]! + (p.bytes ? 8 * (Math.floor(p.bytes.length / 8) + 1) : 8));
      const n = items.length;
      const dataStart = (n + 2) * 8;
      const size = dataStart + offsets[n]! + n * 8 + n;
      this.shm = new SharedMemory({ name, create: true, size });
      this._view = new DataView(this.shm.buf.buffer, this.shm.buf.byteOffset, this.shm.size);
      this._view.setBigInt64(0, BigInt(n), LE);
      offsets.forEach((o, k) => this._view.setBigInt64(8 + k * 8, BigInt(o), LE));
      this.length = n;
      this._offsets = offsets;
      packed.forEach((p, k) => this._write(k, items[k], p));
    } else {
      this.shm = new SharedMemory({ name });
      this._view = new DataView(this.shm.buf.buffer, this.shm.buf.byteOffset, this.shm.size);
      const n = Number(this._view.getBigInt64(0, LE));
      if (!(n >= 0 && (n + 2) * 8 <= this.shm.size))
        throw new ProcessError(`shared memory block '${this.shm.name}' does not hold a ShareableList`, {
          code: 'ERR_MP_NOT_SHAREABLE_LIST',
        });
      this.length = n;
      this._offsets = Array.from({ length: n + 1 }, (_, k) => Number(this._view.getBigInt64(8 + k * 8, LE)));
    }
    return indexedProxy(this);
  }

  // No #private members here: methods run with the Proxy as `this`.
  /** @internal */
  get _formatsAt(): number {
    return (this.length + 2) * 8 + this._offsets[this.length]!;
  }

  /** @internal */
  _format(i: number): string {
    const at = this._formatsAt + i * 8;
    const bytes = new Uint8Array(this._view.buffer, this._view.byteOffset + at, 8);
    const end = bytes.indexOf(0);
    return decoder.decode(bytes.subarray(0, end < 0 ? 8 : end));
  }

  /** @internal */
  _check(i: number, what: string): number {
    if (!Number.isInteger(i)) throw new InvalidArgumentError(`ShareableList ${what}: index must be an integer, got ${String(i)}`);
    const k = i < 0 ? i + this.length : i;
    if (k < 0 || k >= this.length) throw new RangeError(`ShareableList ${what}: index ${i} out of range for length ${this.length}`);
    return k;
  }

  /** Item `i` (negative counts from the end). @throws RangeError when out of range. */
  get(i: number): Shareable {
    return this._getAt(this._check(i, 'get'));
  }

  /**
   * Replace item `i` (negative counts from the end).
   * @throws RangeError when out of range; InvalidArgumentError for an unsupported value or a string/bytes too long for the slot.
   */
  set(i: number, value: Shareable): void {
    this._setAt(this._check(i, 'set'), value);
  }

  /** @internal */
  _getAt(i: number): Shareable {
    const fmt = this._format(i);
    const at = (this.length + 2) * 8 + this._offsets[i]!;
    const code = this._view.getInt8(this._formatsAt + this.length * 8 + i);
    if (fmt.endsWith('s')) {
      const n = Number.parseInt(fmt, 10);
      const bytes = new Uint8Array(this._view.buffer, this._view.byteOffset + at, n);
      let end = n;
      while (end > 0 && bytes[end - 1] === 0) end--;
      return code === 1 ? decoder.decode(bytes.subarray(0, end)) : bytes.slice(0, end);
    }
    if (code === 3) return null;
    switch (fmt) {
      case FMT_INT: {
        const v = this._view.getBigInt64(at, LE);
        return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
      }
      case FMT_FLOAT:
        return this._view.getFloat64(at, LE);
      case FMT_BOOL:
        return this._view.getUint8(at + 7) !== 0;
      case FMT_NONE:
        return null;
    }
    throw new ProcessError(`ShareableList item ${i} has an unknown format '${fmt}'`, { code: 'ERR_MP_NOT_SHAREABLE_LIST' });
  }

  /** @internal */
  _setAt(i: number, value: unknown): void {
    const p = pack(value, `ShareableList[${i}]`);
    if (p.bytes) {
      const room = this._offsets[i + 1]! - this._offsets[i]!;
      if (p.bytes.length > room)
        throw new InvalidArgumentError(`ShareableList[${i}]: ${p.bytes.length} bytes exceed the ${room} bytes available to this item`);
    }
    this._write(i, value, p);
  }

  /** @internal Write one item with its format and back-transform code (Python: `__setitem__`). */
  _write(i: number, value: unknown, p: Packed): void {
    const v = this._view;
    const at = (this.length + 2) * 8 + this._offsets[i]!;
    let fmt = p.fmt;
    if (p.bytes) {
      const room = this._offsets[i + 1]! - this._offsets[i]!;
      fmt = `${room}s`;
      const dst = new Uint8Array(v.buffer, v.byteOffset + at, room);
      dst.fill(0);
      dst.set(p.bytes);
    } else if (p.fmt === FMT_INT) v.setBigInt64(at, BigInt(value as number | bigint), LE);
    else if (p.fmt === FMT_FLOAT) v.setFloat64(at, value as number, LE);
    else {
      v.setBigUint64(at, 0n);
      if (p.fmt === FMT_BOOL) v.setUint8(at + 7, value ? 1 : 0);
    }
    const fAt = this._formatsAt + i * 8;
    const fBytes = new Uint8Array(v.buffer, v.byteOffset + fAt, 8);
    fBytes.fill(0);
    fBytes.set(encoder.encode(fmt));
    v.setInt8(this._formatsAt + this.length * 8 + i, p.code);
  }

  /** The struct format of every item, concatenated (Python: `format`). */
  get format(): string {
    let out = '';
    for (let i = 0; i < this.length; i++) out += this._format(i);
    return out;
  }

  /** How many items equal `value` (bytes compare by content). */
  count(value: Shareable): number {
    let n = 0;
    for (const item of this) if (same(item, value)) n++;
    return n;
  }

  /** The first position of `value`. @throws InvalidArgumentError when it is not in the list (Python: ValueError). */
  index(value: Shareable): number {
    for (let i = 0; i < this.length; i++) if (same(this._getAt(i), value)) return i;
    throw new InvalidArgumentError(`${inspect(value)} not in this container`);
  }

  *[Symbol.iterator](): IterableIterator<Shareable> {
    for (let i = 0; i < this.length; i++) yield this._getAt(i);
  }

  /** A copy of the items as a plain array. */
  toArray(): Shareable[] {
    return [...this];
  }

  toString(): string {
    return `ShareableList(${inspect(this.toArray(), { breakLength: Infinity })}, name='${this.shm.name}')`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

// Python's `==` across the types a list holds: 1 == 1n, bytes by content. (bool is an int in
// Python, but JS users rarely want true == 1, so booleans match only booleans.)
function same(a: Shareable, b: Shareable): boolean {
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length && a.every((x, k) => x === b[k]);
  }
  const isInt = (x: Shareable): x is number | bigint => typeof x === 'bigint' || (typeof x === 'number' && Number.isInteger(x));
  if ((typeof a === 'bigint') !== (typeof b === 'bigint')) return isInt(a) && isInt(b) && BigInt(a) === BigInt(b);
  return a === b;
}

registerType(
  ShareableList,
  {
    reduce: (sl) => {
      checkCanCross('a ShareableList');
      return sl.shm.name;
    },
    rebuild: (name: string) => new ShareableList(null, { name }),
  },
  'multiproc.ShareableList',
);
