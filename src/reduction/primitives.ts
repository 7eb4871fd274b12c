// The short form of a message, which reduction.ts's dumps() and loads() use for the values that need
// nothing of V8's serializer.
import { ProcessError } from '../errors.js';

// Numbers, short strings, booleans, null and undefined skip V8's serializer (about a
// microsecond each way): one tag byte, then the value. V8's own format starts with 0xff, so the
// first byte tells the two apart.
const P_NUMBER = 1;
const P_STRING = 2;
const P_TRUE = 3;
const P_FALSE = 4;
const P_NULL = 5;
const P_UNDEFINED = 6;
// Bytes: a Uint8Array or a Buffer (exactly those classes; subclasses and other views go through
// V8), copied once each way instead of through the serializer's growing buffer.
const P_BYTES = 9;
const P_BUFFER = 10;

export function dumpsPrimitive(v: unknown): Buffer | undefined {
  switch (typeof v) {
    case 'number': {
      const b = Buffer.allocUnsafe(9);
      b[0] = P_NUMBER;
      b.writeDoubleLE(v, 1);
      return b;
    }
    case 'string': {
      // A lone surrogate has no UTF-8 form: structured clone carries it exactly.
      if (v.length > 256 || !(v as string & { isWellFormed(): boolean }).isWellFormed()) return undefined;
      const b = Buffer.allocUnsafe(1 + Buffer.byteLength(v));
      b[0] = P_STRING;
      b.write(v, 1, 'utf8');
      return b;
    }
    case 'boolean':
      return Buffer.from([v ? P_TRUE : P_FALSE]);
    case 'undefined':
      return Buffer.from([P_UNDEFINED]);
    case 'object': {
      if (v === null) return Buffer.from([P_NULL]);
      const c = v.constructor;
      if (c !== Uint8Array && c !== Buffer) return undefined;
      const bytes = v as Uint8Array;
      // (Empty ones, detached ones among them, are left to V8, which knows a detached buffer.)
      if (bytes.byteLength === 0) return undefined;
      const b = Buffer.allocUnsafe(1 + bytes.byteLength);
      b[0] = c === Buffer ? P_BUFFER : P_BYTES;
      b.set(bytes, 1);
      return b;
    }
    default:
      return undefined;
  }
}

/**
 * @internal The first byte dumps() gives `v` when `v` is a non-empty Uint8Array or Buffer sent
 * as its bytes (the rest of that message is `v`'s bytes), else 0. A writer can put that byte and
 * then `v` where dumps(v) would go, without dumps()'s copy (a fresh buffer's pages cost more to
 * fault in than the copy).
 */
export function bytesTag(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  const c = v.constructor;
  if (c !== Uint8Array && c !== Buffer) return 0;
  return (v as Uint8Array).byteLength === 0 ? 0 : c === Buffer ? P_BUFFER : P_BYTES;
}

/** @internal Whether a message's first byte says it is a byte array's (see bytesTag). */
export function isBytesTag(tag: number): boolean {
  return tag === P_BYTES || tag === P_BUFFER;
}

/**
 * @internal What loads() makes of a message of `tag` (a bytesTag() value: else undefined) whose
 * other bytes are `body`: `body` itself, which becomes the caller's value.
 */
export function fromBytesTag(tag: number, body: Uint8Array): Uint8Array | undefined {
  if (tag === P_BYTES) return body;
  if (tag === P_BUFFER) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return undefined;
}

const NUMBER_BYTES = new Uint8Array(8);
const NUMBER_VIEW = new DataView(NUMBER_BYTES.buffer);

export function loadsPrimitive(buf: Uint8Array): unknown {
  const tag = buf[0];
  // Each form has one length (a string: any); anything else did not come from dumps().
  const fits = tag === P_STRING || tag === P_BYTES || tag === P_BUFFER || (tag === P_NUMBER ? buf.length === 9 : buf.length === 1);
  if (fits) {
    switch (tag) {
      case P_NUMBER:
        // Through a scratch view: a Buffer or DataView over the message per number cost more
        // than the rest of a queue's get().
        for (let i = 0; i < 8; i++) NUMBER_BYTES[i] = buf[i + 1]!;
        return NUMBER_VIEW.getFloat64(0, true);
      case P_STRING:
        return Buffer.from(buf.buffer, buf.byteOffset, buf.length).toString('utf8', 1);
      case P_TRUE:
        return true;
      case P_FALSE:
        return false;
      case P_NULL:
        return null;
      case P_UNDEFINED:
        return undefined;
      case P_BYTES: {
        const out = new Uint8Array(buf.length - 1);
        out.set(buf.subarray(1));
        return out;
      }
      case P_BUFFER:
        return Buffer.from(buf.subarray(1));
    }
  }
  const what = buf.length === 0 ? 'an empty message' : `a message of ${buf.length} bytes starting with byte ${String(tag)}`;
  throw new ProcessError(`${what} is not one multiproc writes: the message is corrupt`, { code: 'ERR_MP_BAD_MESSAGE' });
}
