// The wire of managers: how requests and replies are framed, encoded and checked. The channel
// and BaseProxy are in proxy.ts, the server in server.ts.
//
// Protocol. One connection per process and manager address, multiplexed: every request is
// `[reqId, op, ...]`, every reply `[reqId, status, value]`, serialized as JSON when they hold
// only plain scalars (`encodeWire`), else by `dumps` (structured clone plus multiproc's types);
// the messages written in one synchronous run share one frame (`Batcher`). Both ends handle a
// message in the task that read it (`readMessages`): no Promise per message. Requests start in
// the order they arrive, so a client's calls on one object run in the order it made them; a
// call that waits (a lock, a queue get) does not hold up the others. Ops: call, create,
// getvalue, incref, decref, cancel, ping, debug, shutdown. A request with id 0 gets no reply;
// a `call` with id 0 (a lock proxy's release of a lock it holds) that fails answers, instead of
// running, the next call on that object from the same connection.
//
// Security. Nothing received is ever run as code. Python's pickle can import and call anything
// its peer names; multiproc's `loads` can rebuild an inline function from source text. Every
// message a manager receives is therefore decoded under a receive policy (reduction/policy.ts),
// which checks the whole message before anything of it is rebuilt: a function sent by value is
// refused on both sides; a function, class or error class named by reference is rebuilt only when
// its module is one the receiver was told to trust — for the server, the modules of its
// registered callables and proxy types (outside the library) and its `trustedModules`; for a
// client, the same for the managers of its own process. Neither imports any other module a peer
// names, nor trusts the library's modules or whatever is loaded already. Error classes not
// trusted are rebuilt as their nearest built-in or library ancestor, by name.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';

import { NotTransferableError, UntrustedMessageError } from '../errors.js';
import { dumps, loads } from '../reduction/reduction.js';
import { moduleOf, reduceFunction } from '../reduction/functions.js';
import { toModuleUrl, trustModules, type ReceivePolicy } from '../reduction/policy.js';
import { isFunctionOrClass, type FunctionOrClass } from '../util.js';
import type { SocketConnection } from '../ipc/socket.js';

// ---------------------------------------------------------------------------------------------
// What a manager trusts.

/** A message refused by the wire check; `reqId` is known when the rest of it was readable. */
export class RefusedMessage extends Error {
  constructor(
    message: string,
    readonly reqId: number | undefined,
  ) {
    super(message);
  }
}

const LIBRARY_DIR = path.resolve(__dirname, '..');

/**
 * The module URL of a registered callable or proxy type, when it is to be trusted: a user's
 * module. The library's own modules are never trusted wholesale (some of their exports load
 * code); its types cross as tags and its errors by name.
 */
export function registeredModule(fn: FunctionOrClass, where: string): string | undefined {
  let url: string | undefined;
  try {
    url = moduleOf(reduceFunction(fn, where, false));
  } catch {
    return undefined;
  }
  if (url?.startsWith('file:') && fileURLToPath(url).startsWith(LIBRARY_DIR + path.sep)) return undefined;
  return url;
}

const SERVER_OPT_IN =
  "Send plain data, or export it from a module the server trusts: the module of a type registered with the manager, or one listed in the manager's trustedModules";

/** The server's policy: the modules it was given (its registered types' and trustedModules), and library objects (proxies, locks). */
export function serverPolicy(trusted: Iterable<string>): ReceivePolicy {
  return trustModules(new Set(trusted), { libraryObjects: true, optIn: SERVER_OPT_IN });
}

// A client's trust: the modules of the types registered with any manager class of this process,
// and the trustedModules of its managers (and of a server running here). Registered code is
// resolved to its module only when a reply first names a function or class.
const clientModules = new Set<string>();
const clientCode: [FunctionOrClass, string][] = [];

/** @internal A type registered with a manager class: its module is trusted by this process's proxies. */
export function trustRegisteredForClients(fn: FunctionOrClass, where: string): void {
  clientCode.push([fn, where]);
}

/** @internal Modules (paths or URLs) this process's proxies trust. */
export function trustModulesForClients(modules: Iterable<string | URL>): void {
  for (const m of modules) clientModules.add(toModuleUrl(m));
}

const clientTrust = trustModules(clientModules, {
  libraryObjects: true,
  optIn:
    'Send plain data, or trust the module in this process too: register the type with a manager class here, or list the module in the trustedModules of a manager made here',
});

/** How proxies decode their server's replies. */
export const CLIENT_POLICY: ReceivePolicy = {
  allowRef(ref) {
    for (const [fn, where] of clientCode.splice(0)) {
      const url = registeredModule(fn, where);
      if (url !== undefined) clientModules.add(url);
    }
    return clientTrust.allowRef(ref);
  },
  libraryObjects: true,
  optIn: clientTrust.optIn,
};

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
 * Deserialize a message from a peer under `policy`, running nothing from it.
 * @throws RefusedMessage when it names code the policy does not trust; the v8 error when the
 * bytes are not a serialized value at all.
 */
export async function decodeWire(buf: Uint8Array, policy: ReceivePolicy): Promise<unknown> {
  if (buf[0] === JSON_TAG) return decodeJson(buf);
  try {
    return await loads(buf, policy);
  } catch (err) {
    if (!(err instanceof UntrustedMessageError)) throw err;
    // Read again for the request id only, so that the refusal answers that request.
    const root = Object.values(v8.deserialize(buf) as object)[0] as unknown;
    const reqId = Array.isArray(root) && Number.isSafeInteger(root[0]) ? (root[0] as number) : undefined;
    throw new RefusedMessage(`refused: ${err.message}`, reqId);
  }
}

/**
 * @internal How readMessages handles a frame, for any transport: each message, decoded under
 * `policy`, goes to `onMessage` in order; the JSON ones in this task. Returns undefined when the
 * whole frame was handled now, else a Promise settled once the rest was (a message needing an
 * asynchronous decode holds the later ones back). A message refused by the policy is handed over
 * as the RefusedMessage (when its request id was readable); anything else unreadable goes to `end`.
 */
export function frameHandler(
  policy: ReceivePolicy,
  onMessage: (msg: unknown) => void,
  end: (err: unknown) => void,
  ended: () => boolean,
): (frame: Uint8Array) => Promise<void> | undefined {
  // Messages from `at` on.
  const run = (parts: Uint8Array[], at: number): Promise<void> | undefined => {
    for (let i = at; i < parts.length && !ended(); i++) {
      const part = parts[i]!;
      if (isJsonFrame(part)) {
        let msg: unknown;
        try {
          msg = decodeJson(part);
        } catch (err) {
          end(err);
          return undefined;
        }
        onMessage(msg);
        continue;
      }
      return decodeWire(part, policy)
        .then(
          (msg) => {
            if (!ended()) onMessage(msg);
          },
          (err: unknown) => {
            if (err instanceof RefusedMessage && err.reqId !== undefined && err.reqId > 0) {
              if (!ended()) onMessage(err);
            } else end(err);
          },
        )
        .then(() => (ended() ? undefined : run(parts, i + 1)));
    }
    return undefined;
  };
  return (frame) => {
    let parts: Uint8Array[];
    try {
      parts = unbatch(frame);
    } catch (err) {
      end(err);
      return undefined;
    }
    return run(parts, 0);
  };
}

/**
 * Read `conn`'s messages as they arrive and hand each, decoded under `policy`, to `onMessage`, in
 * order and in the task that received it: the common (JSON) ones with no Promise or event-loop
 * turn per message (see frameHandler). Anything unreadable ends reading: `onEnd` gets the error,
 * as it gets the connection's own end (EOFError, a frame over the size limit).
 */
export function readMessages(
  conn: SocketConnection,
  policy: ReceivePolicy,
  onMessage: (msg: unknown) => void,
  onEnd: (err: unknown) => void,
): void {
  let ended = false;
  const end = (err: unknown): void => {
    if (ended) return;
    ended = true;
    conn._pauseDelivery(true);
    onEnd(err);
  };
  const handle = frameHandler(policy, onMessage, end, () => ended);
  conn._deliver((frame) => {
    const rest = handle(frame);
    if (!rest) return;
    conn._pauseDelivery(true);
    void rest.then(() => {
      if (!ended) conn._pauseDelivery(false);
    });
  }, end);
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
