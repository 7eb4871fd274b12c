// The loop a pool worker runs (Python: `multiprocessing.pool.worker`). It reads tasks from its
// connection one at a time, in order, runs them and writes one reply per task. Functions arrive
// once with an id and are cached; later tasks name only the id.
import type { Connection } from '../ipc/connection.js';
import { NotTransferableError } from '../errors.js';
import { nowUs } from './progress.js';
import { explainImportError } from '../process.js';
import { FAST_TAG, pack, unpackViews } from '../reduction/fastcodec.js';
import { loads } from '../reduction/reduction.js';
import { isThenable } from '../util.js';
import { Scratch } from '../shm/scratch.js';

/** @internal Task kinds. */
export const APPLY = 0;
export const MAP = 1;
export const STARMAP = 2;
/** @internal Not a task: the function with this id, sent once to each worker. */
export const FUNC = 3;
/** @internal Not a task: several messages in one (see batch()). */
export const BATCH = 4;

// A message to the worker: int32 id, kind, fnId and a spare int32, then the serialized payload
// (8-byte aligned: a packed chunk's numbers are read in place). Empty: exit.
/** @internal Bytes before a task's payload. */
export const HEADER = 16;

/** @internal Write the header of a task into the first HEADER bytes of `out`. */
export function setHeader(out: Uint8Array, id: number, kind: number, fnId: number): Uint8Array {
  const h = new Int32Array(out.buffer, out.byteOffset, 4);
  h[0] = id;
  h[1] = kind;
  h[2] = fnId;
  h[3] = 0;
  return out;
}

/** @internal A message to the worker. */
export function frame(id: number, kind: number, fnId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  out.set(payload, HEADER);
  return setHeader(out, id, kind, fnId);
}

/**
 * @internal Several messages to a worker as one, so that they cost one write to its ring and at
 * most one wake-up: a header (kind BATCH, the count), then each message as its u32 length, 4
 * spare bytes and its bytes, padded to 8 (each message's payload stays 8-byte aligned).
 */
export function batch(msgs: readonly Uint8Array[]): Uint8Array {
  let size = HEADER;
  for (const m of msgs) size += 8 + m.length + ((8 - (m.length & 7)) & 7);
  const out = new Uint8Array(size);
  setHeader(out, 0, BATCH, msgs.length);
  const dv = new DataView(out.buffer, out.byteOffset, out.length);
  let at = HEADER;
  for (const m of msgs) {
    dv.setUint32(at, m.length, true);
    out.set(m, at + 8);
    at += 8 + m.length + ((8 - (m.length & 7)) & 7);
  }
  return out;
}

function unbatch(msg: Buffer, into: Buffer[]): void {
  const n = msg.readInt32LE(8);
  let at = HEADER;
  for (let i = 0; i < n; i++) {
    const len = msg.readUInt32LE(at);
    into.push(msg.subarray(at + 8, at + 8 + len));
    at += 8 + len + ((8 - (len & 7)) & 7);
  }
}

/**
 * @internal A reply: [id, ok, value or error, start, end]; start and end are CLOCK_MONOTONIC µs
 * (the pool's timings and trace). id -1: the initializer failed.
 */
export type ReplyMsg = [id: number, ok: boolean, value: unknown, startUs?: number, endUs?: number];

type AnyFn = (...args: unknown[]) => unknown;

// A chunk's results are gathered in a Float64Array while they are numbers: it crosses as one
// copy (fastcodec.ts), and a large chunk allocates no array on V8's heap (arrays of more than
// ~16k elements go to its large-object space, which costs tens of ns per element).
// The block is the loop's scratch (scratch.ts): the reply is packed, so the block copied, before
// the next task runs.
async function run(kind: number, fn: AnyFn, payload: unknown, scratch: Scratch): Promise<unknown> {
  if (kind === APPLY) return fn(...(payload as unknown[]));
  const items = payload as ArrayLike<unknown>;
  const n = items.length;
  // (A small chunk keeps an array: a Float64Array costs a buffer of its own.)
  let nums: Float64Array | undefined = n >= 64 ? new Float64Array(scratch.take(n * 8).buffer, 0, n) : undefined;
  let out: unknown[] | undefined = nums ? undefined : new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    let v = kind === MAP ? fn(items[i]) : fn(...(items[i] as unknown[]));
    if (isThenable(v)) v = await v;
    if (nums) {
      if (typeof v === 'number') {
        nums[i] = v;
        continue;
      }
      out = new Array<unknown>(n);
      for (let k = 0; k < i; k++) out[k] = nums[k];
      nums = undefined;
    }
    out![i] = v;
  }
  return nums ?? out;
}

// `fresh`: levels of arrays in the reply this loop built (the reply, and a chunk's results).
// A packed reply is written in `scratch`: sendBytes() has copied it (into the ring, or aside when
// the ring is full) by the time it returns.
function send(conn: Connection, reply: ReplyMsg, fresh = 1, scratch?: Scratch): void {
  const packed = reply[1] ? pack(reply, fresh, 0, reply.length, 0, scratch?.take) : undefined;
  if (packed) {
    void conn.sendBytes(packed);
    return;
  }
  try {
    void conn.send(reply);
  } catch (err) {
    // The value (or the error) cannot cross: that task fails, the worker goes on.
    const e =
      err instanceof NotTransferableError
        ? new NotTransferableError(
            reply[1] ? 'result' : 'error',
            `the task's ${reply[1] ? 'result' : 'error'} cannot be sent back (${err.message})`,
            'Return plain data, or register the type with registerType().',
          )
        : new Error(String(err));
    try {
      void conn.send([reply[0], false, e, reply[3], reply[4]]);
    } catch {
      void conn.send([reply[0], false, new Error(`the task's ${reply[1] ? 'result' : 'error'} cannot be sent back`), reply[3], reply[4]]);
    }
  }
}

// Between tasks a worker has nothing else to do: it waits for the next one blocking its thread
// (woken straight by the futex, one thread hop fewer than an async wait), in slices short
// enough that timers and I/O a task left behind still run in between.
const BLOCK_SLICE_MS = 20;

// A chunk of a map whose items were packed is read into `scratch` and its items in place (the
// loop reads the next task once the chunk is done); any other message is kept as it is.
async function nextTask(conn: Connection, scratch: Scratch): Promise<Buffer> {
  const blocking = (conn as Connection & { _recvBytesBlocking?: (ms: number, into: (n: number) => Uint8Array) => Uint8Array | null })
    ._recvBytesBlocking;
  if (blocking) {
    for (let i = 0; i < 5; i++) {
      const m = blocking.call(conn, BLOCK_SLICE_MS, scratch.take);
      if (m) {
        const b = Buffer.from(m.buffer, m.byteOffset, m.length);
        return b.length > HEADER && b.readInt32LE(4) === MAP && b[HEADER] === FAST_TAG ? b : Buffer.from(b);
      }
      await new Promise((r) => setImmediate(r));
    }
  }
  return conn.recvBytes();
}

/**
 * @internal The target of every pool worker. Returns when told to exit, when `maxtasks` tasks
 * are done, or when the initializer fails (which it reports first).
 */
export async function poolWorker(
  conn: Connection,
  initializer: ((...args: never[]) => unknown) | null,
  initargs: readonly unknown[],
  maxtasks: number | null,
): Promise<void> {
  if (initializer) {
    try {
      // Its arguments were checked against it where the pool was made (initargs: Parameters<...>).
      const r = (initializer as AnyFn)(...initargs);
      if (isThenable(r)) await r;
    } catch (err) {
      send(conn, [-1, false, err]);
      return;
    }
  }
  const fns = new Map<number, AnyFn>();
  // Tasks read, results gathered and replies packed: each reused from one task to the next.
  const tasks = new Scratch();
  const results = new Scratch();
  const replies = new Scratch();
  // Messages of a batch not run yet, in order (each task is still answered on its own, before
  // the next one starts: the pool learns from the replies which task a dead worker was running).
  const queued: Buffer[] = [];
  let next = 0;
  let done = 0;
  while (maxtasks === null || done < maxtasks) {
    let msg: Buffer;
    if (next < queued.length) msg = queued[next++]!;
    else {
      queued.length = next = 0;
      try {
        msg = await nextTask(conn, tasks);
      } catch {
        return; // the pool is gone
      }
      if (msg.length >= HEADER && msg.readInt32LE(4) === BATCH) {
        unbatch(msg, queued);
        continue;
      }
    }
    if (msg.length === 0) return;
    const id = msg.readInt32LE(0);
    const kind = msg.readInt32LE(4);
    const fnId = msg.readInt32LE(8);
    let reply: ReplyMsg;
    let start = 0;
    try {
      const body = msg.subarray(HEADER);
      // A map chunk of numbers is read in place (the function only sees its elements).
      const payload = body[0] === FAST_TAG && kind === MAP ? unpackViews(body, 0) : await loads(body);
      if (kind === FUNC) {
        fns.set(fnId, payload as AnyFn);
        continue;
      }
      const f = fns.get(fnId);
      if (!f) throw new Error(`pool worker: unknown function id ${fnId}`);
      start = nowUs();
      const value = await run(kind, f, payload, results);
      reply = [id, true, value, start, nowUs()];
    } catch (err) {
      reply = [id, false, start ? err : explainImportError(err), start || nowUs(), nowUs()];
    }
    send(conn, reply, kind === APPLY ? 1 : 2, replies);
    done++;
  }
}
