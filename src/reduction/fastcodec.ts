// A compact binary form for the library's own message shapes whose leaves are primitives: the
// Pool's chunks of items and its replies. V8's structured clone costs ~40–70 ns per number each
// way (a heap number per double on the way back); here a run of numbers is a block of int32 or
// float64, 8-byte aligned in the message, written and read through a typed array in one loop (or
// one copy), several times faster.
//
// Exactness: every primitive round-trips bit for bit (-0, NaN, lone surrogates, holes). What
// cannot be checked cheaply is whether an array carries named properties besides its elements
// (`a.label = 'x'`), which structured clone keeps; so only arrays the library built itself (a
// slice of the input, a list of results) are written here, to the depth the caller vouches for.
// A user's array below that depth, or any object, makes pack() give up: dumps() sends the message.
import { ProcessError } from '../errors.js';

/** First byte of a packed message (V8's format starts with 0xff, dumps' primitives and bytes with 1–6 and 9–10). */
export const FAST_TAG = 7;

const T_UNDEFINED = 0;
const T_NULL = 1;
const T_FALSE = 2;
const T_TRUE = 3;
const T_INT = 4;
const T_DOUBLE = 5;
const T_UTF8 = 6; // a well-formed string
const T_UTF16 = 7; // a string with lone surrogates, as UTF-16 code units
const T_ARRAY = 8; // n values
const T_INTS = 9; // n int32, from the next multiple of 8
const T_DOUBLES = 10; // n float64, from the next multiple of 8
const T_HOLE = 11;

// Strings up to this length are tried as ASCII in a JS loop: a call into Buffer.write costs more.
const SHORT_STRING = 64;

function corrupt(problem: string): ProcessError {
  return new ProcessError(`${problem}: the message is corrupt`, { code: 'ERR_MP_BAD_MESSAGE' });
}

/** Padding before a number block at `at` (offsets count from the message's first byte). */
const pad8 = (at: number): number => (8 - (at & 7)) & 7;

/** Thrown inside the writer when a value cannot be packed; pack() answers undefined. (One instance: no stack to capture per throw.) */
const GIVE_UP = new Error('not packable');

class Writer {
  buf: Buffer;
  dv: DataView;
  at: number;
  // Where the message starts (a multiple of 8): the bytes before it are the caller's.
  readonly base: number;

  // Where the bytes go (see Scratch); by default a new buffer.
  readonly alloc: (n: number) => Buffer;

  constructor(size: number, base: number, alloc: (n: number) => Buffer) {
    this.base = base;
    this.alloc = alloc;
    this.buf = alloc(base + size);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.buf[base] = FAST_TAG;
    this.at = base + 1;
  }

  ensure(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = this.alloc(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
    this.dv = new DataView(next.buffer, next.byteOffset, next.length);
  }

  value(v: unknown, fresh: number): void {
    switch (typeof v) {
      case 'number':
        this.ensure(9);
        if ((v | 0) === v && (v !== 0 || 1 / v > 0)) {
          this.buf[this.at] = T_INT;
          this.dv.setInt32(this.at + 1, v, true);
          this.at += 5;
        } else {
          this.buf[this.at] = T_DOUBLE;
          this.dv.setFloat64(this.at + 1, v, true);
          this.at += 9;
        }
        return;
      case 'boolean':
        this.ensure(1);
        this.buf[this.at++] = v ? T_TRUE : T_FALSE;
        return;
      case 'undefined':
        this.ensure(1);
        this.buf[this.at++] = T_UNDEFINED;
        return;
      case 'string':
        this.string(v);
        return;
      case 'object':
        if (v === null) {
          this.ensure(1);
          this.buf[this.at++] = T_NULL;
          return;
        }
        if (fresh > 0) {
          if (Array.isArray(v)) {
            this.array(v, 0, v.length, fresh - 1);
            return;
          }
          // A block of results a worker gathered as numbers (see worker.ts).
          if (v instanceof Float64Array) {
            this.doubles(v);
            return;
          }
        }
        throw GIVE_UP;
      default:
        throw GIVE_UP;
    }
  }

  string(s: string): void {
    const n = s.length;
    this.ensure(5 + n * 3);
    const buf = this.buf;
    const head = this.at;
    if (n <= SHORT_STRING) {
      let k = 0;
      for (const at = head + 5; k < n; k++) {
        const c = s.charCodeAt(k);
        if (c >= 0x80) break;
        buf[at + k] = c;
      }
      if (k === n) {
        buf[head] = T_UTF8;
        this.dv.setUint32(head + 1, n, true);
        this.at = head + 5 + n;
        return;
      }
    }
    const wellFormed = (s as string & { isWellFormed(): boolean }).isWellFormed();
    buf[head] = wellFormed ? T_UTF8 : T_UTF16;
    const bytes = buf.write(s, head + 5, wellFormed ? 'utf8' : 'utf16le');
    this.dv.setUint32(head + 1, bytes, true);
    this.at = head + 5 + bytes;
  }

  // Elements [from, to) of `a`. One pass in the common case: the elements are written as int32
  // while they are; the first other number turns the block into float64 (the prefix is written
  // again), the first other value into a list of tagged values (likewise).
  array(a: unknown[], from: number, to: number, fresh: number): void {
    const n = to - from;
    const head = this.at;
    const start = head + 5 + pad8(head + 5 - this.base);
    this.ensure(start - head + n * 4);
    let buf = this.buf;
    buf[head] = T_INTS;
    this.dv.setUint32(head + 1, n, true);
    buf.fill(0, head + 5, start);
    let i = from;
    const abs = buf.byteOffset + start;
    if ((abs & 3) === 0) {
      const out = new Int32Array(buf.buffer, abs, n);
      for (; i < to; i++) {
        const v = a[i];
        if (typeof v !== 'number' || (v | 0) !== v || (v === 0 && 1 / v < 0)) break;
        out[i - from] = v;
      }
    }
    if (i === to) {
      this.at = start + n * 4;
      return;
    }
    if (typeof a[i] === 'number' || (abs & 3) !== 0) {
      // (Growing copies the bytes before `at` only: the header is written again.)
      this.ensure(start - head + n * 8);
      buf = this.buf;
      buf[head] = T_DOUBLES;
      this.dv.setUint32(head + 1, n, true);
      buf.fill(0, head + 5, start);
      const absD = buf.byteOffset + start;
      i = from;
      if ((absD & 7) === 0) {
        const out = new Float64Array(buf.buffer, absD, n);
        for (; i < to; i++) {
          const v = a[i];
          if (typeof v !== 'number') break;
          out[i - from] = v;
        }
      } else {
        for (let at = start; i < to; i++, at += 8) {
          const v = a[i];
          if (typeof v !== 'number') break;
          this.dv.setFloat64(at, v, true);
        }
      }
      if (i === to) {
        this.at = start + n * 8;
        return;
      }
    }
    // Not all numbers: each element carries its type (a hole is not an undefined element).
    this.buf[head] = T_ARRAY;
    this.dv.setUint32(head + 1, n, true);
    this.at = head + 5;
    for (i = from; i < to; i++) {
      const v = a[i];
      if (v === undefined && !(i in a)) {
        this.ensure(1);
        this.buf[this.at++] = T_HOLE;
      } else this.value(v, fresh);
    }
  }

  doubles(d: Float64Array): void {
    const n = d.length;
    const head = this.at;
    const start = head + 5 + pad8(head + 5 - this.base);
    this.ensure(start - head + n * 8);
    this.buf[head] = T_DOUBLES;
    this.dv.setUint32(head + 1, n, true);
    this.buf.fill(0, head + 5, start);
    // Bytes, so that neither side needs to be aligned.
    this.buf.set(new Uint8Array(d.buffer, d.byteOffset, n * 8), start);
    this.at = start + n * 8;
  }
}

/**
 * Pack `a` (elements `from` to `to`), an array the library built or whose elements alone cross,
 * whose elements are primitives or (for `fresh` > 1) arrays the library built in turn; undefined
 * when anything else is inside (use dumps()). `reserve` (a multiple of 8) bytes are left free at
 * the start of the buffer for the caller's header; the packed message follows them. `alloc`
 * gives the buffer (at least n bytes, 8-byte aligned) to write to: by default a new one.
 */
export function pack(
  a: unknown[],
  fresh = 1,
  from = 0,
  to = a.length,
  reserve = 0,
  alloc: (n: number) => Buffer = (n) => Buffer.allocUnsafe(n),
): Buffer | undefined {
  const w = new Writer(16 + (to - from) * 5, reserve, alloc);
  try {
    w.array(a, from, to, fresh - 1);
  } catch (err) {
    if (err === GIVE_UP) return undefined;
    throw err;
  }
  return w.at === w.buf.length ? w.buf : w.buf.subarray(0, w.at);
}

type Block = Int32Array | Float64Array;

class Reader {
  readonly dv: DataView;
  readonly buf: Buffer;
  at = 1;
  // Number blocks at this depth come back as typed arrays over the message's own bytes.
  readonly viewDepth: number;
  constructor(bytes: Uint8Array, viewDepth: number) {
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    this.viewDepth = viewDepth;
  }

  value(depth: number): unknown {
    const dv = this.dv;
    const t = dv.getUint8(this.at++);
    switch (t) {
      case T_UNDEFINED:
        return undefined;
      case T_NULL:
        return null;
      case T_FALSE:
        return false;
      case T_TRUE:
        return true;
      case T_INT:
        this.at += 4;
        return dv.getInt32(this.at - 4, true);
      case T_DOUBLE:
        this.at += 8;
        return dv.getFloat64(this.at - 8, true);
      case T_UTF8:
      case T_UTF16: {
        const n = dv.getUint32(this.at, true);
        const start = this.at + 4;
        this.at = start + n;
        if (this.at > this.buf.length) throw corrupt('packed message: string runs past the end');
        return this.buf.toString(t === T_UTF8 ? 'utf8' : 'utf16le', start, this.at);
      }
      case T_ARRAY:
      case T_INTS:
      case T_DOUBLES:
        return this.array(t, depth);
      default:
        throw corrupt(`packed message: unknown type ${t} at byte ${this.at - 1}`);
    }
  }

  array(t: number, depth: number): unknown[] | Block {
    const dv = this.dv;
    const n = dv.getUint32(this.at, true);
    let at = this.at + 4;
    if (t === T_ARRAY) {
      // Checked before allocating: a corrupt length must not reserve gigabytes.
      if (at + n > this.buf.length) throw corrupt('packed message: array runs past the end');
      const out = new Array<unknown>(n);
      this.at = at;
      for (let i = 0; i < n; i++) {
        if (dv.getUint8(this.at) === T_HOLE) this.at++;
        else out[i] = this.value(depth + 1);
      }
      return out;
    }
    const width = t === T_INTS ? 4 : 8;
    at += pad8(at);
    if (at + n * width > this.buf.length) throw corrupt('packed message: array runs past the end');
    this.at = at + n * width;
    const abs = this.buf.byteOffset + at;
    if (abs % width !== 0) {
      // Only a caller's odd offset does this: the writer aligned the block within the message.
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++, at += width) out[i] = width === 4 ? dv.getInt32(at, true) : dv.getFloat64(at, true);
      return out;
    }
    const view = width === 4 ? new Int32Array(this.buf.buffer, abs, n) : new Float64Array(this.buf.buffer, abs, n);
    if (depth === this.viewDepth) return view;
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = view[i]!;
    return out;
  }
}

function read(bytes: Uint8Array, viewDepth: number): unknown[] | Block {
  const r = new Reader(bytes, viewDepth);
  let out: unknown[] | Block;
  try {
    const t = r.dv.getUint8(r.at++);
    if (t !== T_ARRAY && t !== T_INTS && t !== T_DOUBLES) throw corrupt('packed message: not an array');
    out = r.array(t, 0);
  } catch (err) {
    // DataView's own bounds check: a length that runs past the end.
    if (err instanceof RangeError) throw corrupt('packed message: a value runs past the end');
    throw err;
  }
  if (r.at !== bytes.length) throw corrupt('packed message: trailing bytes');
  return out;
}

/**
 * Rebuild what pack() wrote.
 * @throws ProcessError ERR_MP_BAD_MESSAGE on a truncated or corrupt message.
 */
export function unpack(bytes: Uint8Array): unknown[] {
  return read(bytes, -1) as unknown[];
}

/**
 * As unpack(), but a run of numbers at nesting `depth` (0: the message itself) comes back as an
 * Int32Array or Float64Array over `bytes` itself, not copied into an array: for a caller that
 * only indexes it (a worker's chunk of items, the results the pool copies into its own array).
 * @throws ProcessError ERR_MP_BAD_MESSAGE on a truncated or corrupt message.
 */
export function unpackViews(bytes: Uint8Array, depth: number): unknown[] | Block {
  return read(bytes, depth);
}
