// The wire of managers: how requests and replies are framed, encoded and checked. The channel
// and BaseProxy are in proxy.ts, the server in server.ts.
//
// Protocol. One connection per process and manager address, multiplexed: every request is
// `[reqId, op, ...]`, every reply `[reqId, status, value]`, serialized as JSON when they hold
// only plain scalars (`encodeWire`), else by `dumps` (structured clone plus multiproc's types);
// the messages written in one synchronous run share one frame (`Batcher`). Requests start in the order they arrive, so a client's calls
// on one object run in the order it made them; a call that waits (a lock, a queue get) does not
// hold up the others. Ops: call, create, getvalue, incref, decref, cancel, ping, debug, shutdown.
//
// Security. Nothing received is ever run as code. Python's pickle can import and call anything
// its peer names; multiproc's `loads` can rebuild an inline function from source text. Every
// message a manager receives is therefore checked before it is rebuilt (`decodeWire`): a
// function sent by value is refused on both sides; the server rebuilds a function, class or
// error class named by reference only when its module is one it already trusts (loaded in the
// server already, or the module of a registered callable or proxy type, or listed in
// `trustedModules`) — it never imports a module a client names. Error classes it does not trust
// are rebuilt as their nearest built-in ancestor.
import * as path from 'node:path';
import * as v8 from 'node:v8';

import { NotTransferableError } from '../errors.js';
import { dumps, loads } from '../reduction/reduction.js';
import { moduleOf, reduceFunction, type FunctionRef } from '../reduction/functions.js';
import { isFunctionOrClass } from '../util.js';

// ---------------------------------------------------------------------------------------------
// Decoding what arrives from the wire.

// The markers reduction.ts puts in serialized data (kept in sync with it).
const MARK = '\u0000multiproc';
const ROOT = '\u0000multiproc.root';

/** A message refused by the wire check; `reqId` is known when the rest of it was readable. */
export class RefusedMessage extends Error {
  constructor(
    message: string,
    readonly reqId: number | undefined,
  ) {
    super(message);
  }
}

/** Who decodes: the server trusts only its modules; a client trusts its server's references. */
export interface WirePolicy {
  /** Whether a function or class named by reference may be rebuilt. */
  trustRef(ref: FunctionRef): boolean;
}

export const CLIENT_POLICY: WirePolicy = { trustRef: (ref) => ref.kind !== 'source' };

const LIBRARY_DIR = path.resolve(__dirname, '..');

/** The server's policy: modules it loaded itself, its library, and the ones listed. */
export function serverPolicy(trusted: Iterable<string>): WirePolicy {
  const urls = new Set(trusted);
  return {
    trustRef(ref) {
      if (ref.kind === 'source') return false;
      const url = moduleOf(ref);
      if (url !== undefined && urls.has(url)) return true;
      if (ref.kind === 'cjs') {
        const file = path.resolve(ref.file);
        if (file.startsWith(LIBRARY_DIR + path.sep)) return true;
        // Already loaded here: rebuilding it imports nothing new.
        return require.cache[file] !== undefined;
      }
      return false;
    },
  };
}

function describeRef(ref: FunctionRef): string {
  if (ref.kind === 'source') return `function ${ref.name || '(anonymous)'} sent by value (as source text)`;
  return `${ref.name || 'an export'} from ${moduleOf(ref) ?? '?'}`;
}

// The common messages — a call with string, number and boolean arguments, a reply with such a
// value — go as JSON after a tag byte: V8's serializer costs a few µs per message each way and
// its format starts with 0xff, so the first byte tells the two apart. JSON carries no code.
const JSON_TAG = 0x4a; // 'J'

function isJsonScalar(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    default:
      return v === null;
  }
}

/** Whether JSON keeps every element of `msg` (scalars, and arrays of scalars) exactly. */
export function isJsonMessage(msg: readonly unknown[]): boolean {
  for (const v of msg) {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) if (!(i in v) || !isJsonScalar(v[i])) return false;
    } else if (!isJsonScalar(v)) return false;
  }
  return true;
}

/**
 * Serialize a request or reply: JSON when it is plain enough, else `dumps`. A trailing undefined
 * (a reply of a method that returns nothing) is dropped and restored by the reader.
 */
export function encodeWire(msg: unknown[], where: string): Buffer {
  const m = msg.length === 3 && msg[2] === undefined ? msg.slice(0, 2) : msg;
  if (isJsonMessage(m)) {
    const text = JSON.stringify(m);
    const buf = Buffer.allocUnsafe(1 + Buffer.byteLength(text));
    buf[0] = JSON_TAG;
    buf.write(text, 1);
    return buf;
  }
  return dumps(msg, where);
}

/** Whether a message is JSON (decode it with decodeJson, synchronously). */
export function isJsonFrame(buf: Uint8Array): boolean {
  return buf[0] === JSON_TAG;
}

export function decodeJson(buf: Uint8Array): unknown {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return JSON.parse(b.toString('utf8', 1)) as unknown;
}

// Messages written in one synchronous run (say, `Promise.all` over 100 calls, or the replies to
// them) go out as one frame: one write and one read instead of a hundred of each. A batch frame
// is the tag byte, then per message a 4-byte big-endian length and the message.
const BATCH_TAG = 0x42; // 'B'
// A message this long is written on its own (never copied into a batch); a batch this long is
// written at once.
const BATCH_LARGE = 16 * 1024;
const BATCH_MAX = 256 * 1024;

/** @internal Coalesces the messages pushed in one synchronous run into one frame, written in a microtask. */
export class Batcher {
  #parts: Uint8Array[] = [];
  #bytes = 0;
  #queued = false;
  constructor(readonly write: (frame: Uint8Array) => void) {}
  push(msg: Uint8Array): void {
    if (msg.length >= BATCH_LARGE) {
      this.flush();
      this.write(msg);
      return;
    }
    this.#parts.push(msg);
    this.#bytes += msg.length;
    if (this.#bytes >= BATCH_MAX) this.flush();
    else if (!this.#queued) {
      this.#queued = true;
      queueMicrotask(this.flush);
    }
  }
  readonly flush = (): void => {
    this.#queued = false;
    const parts = this.#parts;
    if (parts.length === 0) return;
    this.#parts = [];
    const bytes = this.#bytes;
    this.#bytes = 0;
    if (parts.length === 1) {
      this.write(parts[0]!);
      return;
    }
    const out = Buffer.allocUnsafe(1 + 4 * parts.length + bytes);
    out[0] = BATCH_TAG;
    let at = 1;
    for (const p of parts) {
      out.writeUInt32BE(p.length, at);
      out.set(p, at + 4);
      at += 4 + p.length;
    }
    this.write(out);
  };
}

/** @internal The messages of a frame (one, or those of a batch). @throws Error for a malformed batch. */
export function unbatch(buf: Uint8Array): Uint8Array[] {
  if (buf[0] !== BATCH_TAG) return [buf];
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Uint8Array[] = [];
  let at = 1;
  while (at < b.length) {
    if (at + 4 > b.length) throw new Error('malformed batch: truncated length');
    const n = b.readUInt32BE(at);
    at += 4;
    if (n === 0 || at + n > b.length || b[at] === BATCH_TAG) throw new Error('malformed batch');
    out.push(b.subarray(at, at + n));
    at += n;
  }
  return out;
}

/**
 * Deserialize a message from a peer without running anything from it.
 * @throws RefusedMessage when it names code the policy does not trust; the v8 error when the
 * bytes are not a serialized value at all.
 */
export async function decodeWire(buf: Uint8Array, policy: WirePolicy): Promise<unknown> {
  if (buf[0] === JSON_TAG) return decodeJson(buf);
  const data = v8.deserialize(buf) as unknown;
  if (typeof data !== 'object' || data === null || !Object.prototype.hasOwnProperty.call(data, ROOT)) return data;
  const root = (data as Record<string, unknown>)[ROOT];
  const reqId = Array.isArray(root) && Number.isSafeInteger(root[0]) ? (root[0] as number) : undefined;
  // Widened: visit() sets it, and narrowing does not follow into a closure.
  let changed = false as boolean;
  const seen = new Set<object>();
  const visit = (v: unknown): void => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) for (const x of v) visit(x);
    else if (v instanceof Map) {
      for (const [k, x] of v) {
        visit(k);
        visit(x);
      }
    } else if (v instanceof Set) for (const x of v) visit(x);
    else if (!ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer)) {
      const o = v as Record<string, unknown>;
      if (Object.prototype.hasOwnProperty.call(o, MARK)) {
        const kind = o[MARK];
        const ref = (kind === 'fn' ? o.ref : kind === 'obj' || kind === 'err' ? o.cls : undefined) as FunctionRef | null | undefined;
        if (ref && typeof ref === 'object' && !policy.trustRef(ref)) {
          if (kind === 'err') {
            // The error still crosses, as its nearest built-in or library ancestor.
            o.cls = null;
            changed = true;
          } else {
            throw new RefusedMessage(
              `refused: the message names ${describeRef(ref)}; a manager never runs code sent over the wire and imports only the modules it trusts ` +
                "(send plain data, or list the module in the manager's trustedModules)",
              reqId,
            );
          }
        }
      }
      for (const key of Object.keys(o)) visit(o[key]);
    }
  };
  visit(root);
  return loads(changed ? v8.serialize(data) : buf);
}

/**
 * Refuse, before anything is sent, a function that would cross by value: a manager would refuse
 * it anyway. Functions exported from a module may cross (by reference).
 */
export function checkNoInlineFunctions(v: unknown, where: string, seen = new Set<object>()): void {
  if (isFunctionOrClass(v)) {
    try {
      reduceFunction(v, where, false);
    } catch (err) {
      throw new NotTransferableError(
        where,
        `is a function that is not exported from a module; a manager never accepts functions by value (the server runs no code received over the wire)`,
        'Export it from a module the server imports (the module of a registered type, or one in trustedModules), or send data instead.',
      );
    }
    return;
  }
  if (typeof v !== 'object' || v === null || seen.has(v) || ArrayBuffer.isView(v)) return;
  seen.add(v);
  if (Array.isArray(v)) v.forEach((x, i) => checkNoInlineFunctions(x, `${where}[${i}]`, seen));
  else if (v instanceof Map) {
    for (const [k, x] of v) {
      checkNoInlineFunctions(k, `${where}.<key>`, seen);
      checkNoInlineFunctions(x, `${where}.get(…)`, seen);
    }
  } else if (v instanceof Set) for (const x of v) checkNoInlineFunctions(x, `${where}.<item>`, seen);
  else {
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto === Object.prototype || proto === null)
      for (const k of Object.keys(v)) checkNoInlineFunctions((v as Record<string, unknown>)[k], `${where}.${k}`, seen);
  }
}
