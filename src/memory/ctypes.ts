// CPython's ctypes typecodes as typed arrays: which typed array stores each code, how a value is
// checked and converted for it, and how it reads back. Shared by the local Value/Array (over
// shared memory) and the Redis ones (over Redis values).
import { InvalidArgumentError } from '../errors.js';

/** CPython's typecodes. 'l'/'L' are 64-bit, as C `long` on Linux and macOS. */
export type Typecode = 'c' | 'u' | 'b' | 'B' | 'h' | 'H' | 'i' | 'I' | 'l' | 'L' | 'q' | 'Q' | 'f' | 'd';
type BigCode = 'l' | 'L' | 'q' | 'Q';
export type CharCode = 'c' | 'u';

/** What reading an element of typecode `C` gives: bigint for 64-bit integers, a 1-char string for 'c'/'u', else number. */
export type ElementOf<C extends Typecode> = C extends BigCode ? bigint : C extends CharCode ? string : number;
/** What an element of typecode `C` accepts: as `ElementOf`, plus safe-integer numbers for 64-bit codes and byte values for 'c'. */
// Written as ElementOf<C> and more, so that what a getter returns is visibly what its setter takes.
export type InputOf<C extends Typecode> = ElementOf<C> | (C extends BigCode ? number : C extends 'c' ? number | Uint8Array : never);
/** The typed array over the memory of typecode `C` (`.buf`). */
export type BufOf<C extends Typecode> = {
  c: Uint8Array;
  u: Uint32Array;
  b: Int8Array;
  B: Uint8Array;
  h: Int16Array;
  H: Uint16Array;
  i: Int32Array;
  I: Uint32Array;
  l: BigInt64Array;
  L: BigUint64Array;
  q: BigInt64Array;
  Q: BigUint64Array;
  f: Float32Array;
  d: Float64Array;
}[C];

export type AnyTyped =
  | Uint8Array
  | Uint32Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array
  | Float32Array
  | Float64Array;
export type TypedCtor = (new (buffer: ArrayBufferLike, byteOffset: number, length: number) => AnyTyped) & {
  readonly BYTES_PER_ELEMENT: number;
};

/** @internal How one typecode is stored, checked and read back (shared with the Redis Value and Array). */
export interface TypeInfo {
  ctor: TypedCtor;
  ctype: string;
  /** Convert and check one element for storing; throws with `what` naming the call. */
  encode(v: unknown, what: string): number | bigint;
  decode(raw: number | bigint): number | bigint | string;
}

/** @internal A value as an error message shows it. */
export const describeValue = (v: unknown): string =>
  typeof v === 'string'
    ? JSON.stringify(v)
    : typeof v === 'bigint'
      ? `${v}n`
      : v instanceof Uint8Array
        ? `Uint8Array(${v.length})`
        : String(v);

function intType(ctor: TypedCtor, ctype: string, min: number, max: number): TypeInfo {
  return {
    ctor,
    ctype,
    encode(v, what) {
      if (typeof v !== 'number' || !Number.isInteger(v))
        throw new InvalidArgumentError(`${what}: ${ctype} takes an integer number, got ${describeValue(v)}`);
      if (v < min || v > max) throw new InvalidArgumentError(`${what}: ${v} is out of range for ${ctype} (${min}..${max})`);
      return v;
    },
    decode: (raw) => raw,
  };
}

function bigType(ctor: TypedCtor, ctype: string, min: bigint, max: bigint): TypeInfo {
  return {
    ctor,
    ctype,
    encode(v, what) {
      let b: bigint;
      if (typeof v === 'bigint') b = v;
      else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
      else throw new InvalidArgumentError(`${what}: ${ctype} takes a bigint (or a safe-integer number), got ${describeValue(v)}`);
      if (b < min || b > max) throw new InvalidArgumentError(`${what}: ${b}n is out of range for ${ctype} (${min}n..${max}n)`);
      return b;
    },
    decode: (raw) => raw,
  };
}

function floatType(ctor: TypedCtor, ctype: string): TypeInfo {
  return {
    ctor,
    ctype,
    encode(v, what) {
      if (typeof v !== 'number') throw new InvalidArgumentError(`${what}: ${ctype} takes a number, got ${describeValue(v)}`);
      return v;
    },
    decode: (raw) => raw,
  };
}

const TYPES: Record<Typecode, TypeInfo> = {
  // 'c' is C char, a byte: Python reads it as bytes of length 1; here a 1-char string whose code
  // is the byte (latin-1), which is what `'x'` in Python source means to most readers.
  c: {
    ctor: Uint8Array,
    ctype: 'c_char (a byte)',
    encode(v, what) {
      if (typeof v === 'string' && v.length === 1 && v.charCodeAt(0) <= 0xff) return v.charCodeAt(0);
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff) return v;
      if (v instanceof Uint8Array && v.length === 1) return v[0]!;
      throw new InvalidArgumentError(
        `${what}: c_char takes a 1-character string with a code below 256, a byte value 0..255 or a 1-byte Uint8Array, got ${describeValue(v)}`,
      );
    },
    decode: (raw) => String.fromCharCode(raw as number),
  },
  // 'u' is wchar_t: 4 bytes (UTF-32) on Linux and macOS, so any code point fits.
  u: {
    ctor: Uint32Array,
    ctype: 'c_wchar (a code point)',
    encode(v, what) {
      const cp = typeof v === 'string' ? v.codePointAt(0) : undefined;
      if (cp === undefined || String.fromCodePoint(cp).length !== (v as string).length)
        throw new InvalidArgumentError(`${what}: c_wchar takes a 1-character string, got ${describeValue(v)}`);
      return cp;
    },
    decode: (raw) => String.fromCodePoint(raw as number),
  },
  b: intType(Int8Array, 'c_byte', -128, 127),
  B: intType(Uint8Array, 'c_ubyte', 0, 255),
  h: intType(Int16Array, 'c_short', -32768, 32767),
  H: intType(Uint16Array, 'c_ushort', 0, 65535),
  i: intType(Int32Array, 'c_int', -2147483648, 2147483647),
  I: intType(Uint32Array, 'c_uint', 0, 4294967295),
  l: bigType(BigInt64Array, 'c_long', -(2n ** 63n), 2n ** 63n - 1n),
  L: bigType(BigUint64Array, 'c_ulong', 0n, 2n ** 64n - 1n),
  q: bigType(BigInt64Array, 'c_longlong', -(2n ** 63n), 2n ** 63n - 1n),
  Q: bigType(BigUint64Array, 'c_ulonglong', 0n, 2n ** 64n - 1n),
  f: floatType(Float32Array, 'c_float'),
  d: floatType(Float64Array, 'c_double'),
};

/** @internal The TypeInfo of `typecode`. @throws InvalidArgumentError for an unknown typecode. */
export function typeInfo(typecode: unknown, what: string): TypeInfo {
  if (typeof typecode !== 'string' || !Object.prototype.hasOwnProperty.call(TYPES, typecode)) {
    throw new InvalidArgumentError(
      `${what}: unknown typecode ${describeValue(typecode)}; use one of ${Object.keys(TYPES)
        .map((c) => `'${c}'`)
        .join(', ')}`,
    );
  }
  return TYPES[typecode as Typecode];
}

/** The element size in bytes of `typecode` (Python: `ctypes.sizeof`). @throws InvalidArgumentError for an unknown typecode. */
export function sizeOf(typecode: Typecode): number {
  return (typeInfo(typecode, 'sizeOf').ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
}
