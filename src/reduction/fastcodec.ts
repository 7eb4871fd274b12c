// A compact binary form for the library's own message shapes whose leaves are primitives: the
// Pool's chunks of items and its replies. V8's structured clone costs ~40–70 ns per number each
// way (a heap number per double on the way back); here a run of numbers is a block of int32 or
// float64, written and read in one tight loop, several times faster.
//
// Exactness: every primitive round-trips bit for bit (-0, NaN, lone surrogates, holes). What
// cannot be checked cheaply is whether an array carries named properties besides its elements
// (`a.label = 'x'`), which structured clone keeps; so only arrays the library built itself (a
// slice of the input, a list of results) are written here, to the depth the caller vouches for.
// A user's array below that depth, or any object, makes pack() give up: dumps() sends the message.
import { ProcessError } from '../errors.js';

/** First byte of a packed message (V8's format starts with 0xff, dumps' primitives with 1–6). */
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
const T_INTS = 9; // n int32
const T_DOUBLES = 10; // n float64
const T_HOLE = 11;

const GIVE_UP = -1;

function corrupt(problem: string): ProcessError {
  return new ProcessError(`${problem}: the message is corrupt`, { code: 'ERR_MP_BAD_MESSAGE' });
}

function isInt(v: number): boolean {
  return (v | 0) === v && (v !== 0 || 1 / v > 0);
}

// Bytes `v` takes (GIVE_UP when it cannot be packed). `fresh`: levels of arrays the caller built.
function sizeOf(v: unknown, fresh: number): number {
  switch (typeof v) {
    case 'number':
      return isInt(v) ? 5 : 9;
    case 'boolean':
    case 'undefined':
      return 1;
    case 'string':
      // Upper bound for UTF-8 (3 bytes per UTF-16 unit); the exact length is known when written.
      return 5 + v.length * 3;
    case 'object':
      if (v === null) return 1;
      if (fresh > 0 && Array.isArray(v)) return sizeOfArray(v, fresh - 1);
      return GIVE_UP;
    default:
      return GIVE_UP;
  }
}

// An array whose elements are all numbers is a block; otherwise each element carries its type.
function sizeOfArray(a: unknown[], fresh: number): number {
  const n = a.length;
  let ints = true;
  let numbers = true;
  for (let i = 0; i < n; i++) {
    const v = a[i];
    if (typeof v !== 'number') {
      numbers = false;
      break;
    }
    if (ints && !isInt(v)) ints = false;
  }
  if (numbers) return 5 + n * (ints ? 4 : 8);
  let size = 5;
  for (let i = 0; i < n; i++) {
    const v = a[i];
    const s = v === undefined && !(i in a) ? 1 : sizeOf(v, fresh);
    if (s === GIVE_UP) return GIVE_UP;
    size += s;
  }
  return size;
}

class Writer {
  readonly buf: Buffer;
  readonly dv: DataView;
  at = 1;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
    this.buf[0] = FAST_TAG;
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  value(v: unknown, fresh: number): void {
    const dv = this.dv;
    switch (typeof v) {
      case 'number':
        if (isInt(v)) {
          dv.setUint8(this.at, T_INT);
          dv.setInt32(this.at + 1, v, true);
          this.at += 5;
        } else {
          dv.setUint8(this.at, T_DOUBLE);
          dv.setFloat64(this.at + 1, v, true);
          this.at += 9;
        }
        return;
      case 'boolean':
        dv.setUint8(this.at++, v ? T_TRUE : T_FALSE);
        return;
      case 'undefined':
        dv.setUint8(this.at++, T_UNDEFINED);
        return;
      case 'string':
        this.string(v);
        return;
      default:
        if (v === null) dv.setUint8(this.at++, T_NULL);
        else this.array(v as unknown[], fresh - 1);
    }
  }

  string(s: string): void {
    const wellFormed = (s as string & { isWellFormed(): boolean }).isWellFormed();
    this.dv.setUint8(this.at, wellFormed ? T_UTF8 : T_UTF16);
    const n = this.buf.write(s, this.at + 5, wellFormed ? 'utf8' : 'utf16le');
    this.dv.setUint32(this.at + 1, n, true);
    this.at += 5 + n;
  }

  array(a: unknown[], fresh: number): void {
    const dv = this.dv;
    const n = a.length;
    let ints = true;
    let numbers = true;
    for (let i = 0; i < n; i++) {
      const v = a[i];
      if (typeof v !== 'number') {
        numbers = false;
        break;
      }
      if (ints && !isInt(v)) ints = false;
    }
    dv.setUint8(this.at, numbers ? (ints ? T_INTS : T_DOUBLES) : T_ARRAY);
    dv.setUint32(this.at + 1, n, true);
    let at = this.at + 5;
    if (numbers && ints) {
      for (let i = 0; i < n; i++, at += 4) dv.setInt32(at, a[i] as number, true);
    } else if (numbers) {
      for (let i = 0; i < n; i++, at += 8) dv.setFloat64(at, a[i] as number, true);
    }
    this.at = at;
    if (numbers) return;
    for (let i = 0; i < n; i++) {
      const v = a[i];
      if (v === undefined && !(i in a)) dv.setUint8(this.at++, T_HOLE);
      else this.value(v, fresh);
    }
  }
}

/**
 * Pack `a`, an array the library built, whose elements are primitives or (for `fresh` > 1)
 * arrays the library built in turn; undefined when anything else is inside (use dumps()).
 */
export function pack(a: unknown[], fresh = 1): Buffer | undefined {
  const size = sizeOfArray(a, fresh - 1);
  if (size === GIVE_UP) return undefined;
  const w = new Writer(1 + size);
  w.array(a, fresh - 1);
  return w.at === w.buf.length ? w.buf : w.buf.subarray(0, w.at);
}

class Reader {
  readonly dv: DataView;
  readonly buf: Buffer;
  at = 1;
  constructor(bytes: Uint8Array) {
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  value(): unknown {
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
        return this.array(t);
      default:
        throw corrupt(`packed message: unknown type ${t} at byte ${this.at - 1}`);
    }
  }

  array(t: number): unknown[] {
    const dv = this.dv;
    const n = dv.getUint32(this.at, true);
    let at = this.at + 4;
    const width = t === T_INTS ? 4 : t === T_DOUBLES ? 8 : 1;
    // Checked before allocating: a corrupt length must not reserve gigabytes.
    if (at + n * width > this.buf.length) throw corrupt('packed message: array runs past the end');
    const out = new Array<unknown>(n);
    if (t === T_INTS) {
      for (let i = 0; i < n; i++, at += 4) out[i] = dv.getInt32(at, true);
      this.at = at;
    } else if (t === T_DOUBLES) {
      for (let i = 0; i < n; i++, at += 8) out[i] = dv.getFloat64(at, true);
      this.at = at;
    } else {
      this.at = at;
      for (let i = 0; i < n; i++) {
        if (dv.getUint8(this.at) === T_HOLE) this.at++;
        else out[i] = this.value();
      }
    }
    return out;
  }
}

/**
 * Rebuild what pack() wrote.
 * @throws ProcessError ERR_MP_BAD_MESSAGE on a truncated or corrupt message.
 */
export function unpack(bytes: Uint8Array): unknown[] {
  const r = new Reader(bytes);
  let out: unknown[];
  try {
    const t = r.dv.getUint8(r.at++);
    if (t !== T_ARRAY && t !== T_INTS && t !== T_DOUBLES) throw corrupt('packed message: not an array');
    out = r.array(t);
  } catch (err) {
    // DataView's own bounds check: a length that runs past the end.
    if (err instanceof RangeError) throw corrupt('packed message: a value runs past the end');
    throw err;
  }
  if (r.at !== bytes.length) throw corrupt('packed message: trailing bytes');
  return out;
}
