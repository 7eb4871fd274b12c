// The loop a pool worker runs (Python: `multiprocessing.pool.worker`). It reads tasks from its
// connection one at a time, in order, runs them and writes one reply per task. Functions arrive
// once with an id and are cached; later tasks name only the id.
import type { Connection } from '../ipc/connection.js';
import { NotTransferableError } from '../errors.js';
import { nowUs } from './progress.js';
import { explainImportError } from '../process.js';
import { pack } from '../reduction/fastcodec.js';
import { loads } from '../reduction/reduction.js';
import { isThenable } from '../util.js';

/** @internal Task kinds. */
export const APPLY = 0;
export const MAP = 1;
export const STARMAP = 2;
/** @internal Not a task: the function with this id, sent once to each worker. */
export const FUNC = 3;

// A message to the worker: int32 id, kind, fnId, then the serialized payload. Empty: exit.
/** @internal A message to the worker. */
export function frame(id: number, kind: number, fnId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + payload.length);
  const h = new Int32Array(out.buffer, 0, 3);
  h[0] = id;
  h[1] = kind;
  h[2] = fnId;
  out.set(payload, 12);
  return out;
}

/**
 * @internal A reply: [id, ok, value or error, start, end]; start and end are CLOCK_MONOTONIC µs
 * (the pool's timings and trace). id -1: the initializer failed.
 */
export type ReplyMsg = [id: number, ok: boolean, value: unknown, startUs?: number, endUs?: number];

type AnyFn = (...args: unknown[]) => unknown;

async function run(kind: number, fn: AnyFn, payload: unknown): Promise<unknown> {
  if (kind === APPLY) return fn(...(payload as unknown[]));
  const items = payload as unknown[];
  const out = new Array<unknown>(items.length);
  for (let i = 0; i < items.length; i++) {
    let v = kind === MAP ? fn(items[i]) : fn(...(items[i] as unknown[]));
    if (isThenable(v)) v = await v;
    out[i] = v;
  }
  return out;
}

// `fresh`: levels of arrays in the reply this loop built (the reply, and a chunk's results).
function send(conn: Connection, reply: ReplyMsg, fresh = 1): void {
  const packed = reply[1] ? pack(reply, fresh) : undefined;
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

async function nextTask(conn: Connection): Promise<Buffer> {
  const blocking = (conn as Connection & { _recvBytesBlocking?: (ms: number) => Uint8Array | null })._recvBytesBlocking;
  if (blocking) {
    for (let i = 0; i < 5; i++) {
      const m = blocking.call(conn, BLOCK_SLICE_MS);
      if (m) return Buffer.from(m.buffer, m.byteOffset, m.length);
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
  let done = 0;
  while (maxtasks === null || done < maxtasks) {
    let msg: Buffer;
    try {
      msg = await nextTask(conn);
    } catch {
      return; // the pool is gone
    }
    if (msg.length === 0) return;
    const id = msg.readInt32LE(0);
    const kind = msg.readInt32LE(4);
    const fnId = msg.readInt32LE(8);
    let reply: ReplyMsg;
    let start = 0;
    try {
      const payload = await loads(msg.subarray(12));
      if (kind === FUNC) {
        fns.set(fnId, payload as AnyFn);
        continue;
      }
      const f = fns.get(fnId);
      if (!f) throw new Error(`pool worker: unknown function id ${fnId}`);
      start = nowUs();
      const value = await run(kind, f, payload);
      reply = [id, true, value, start, nowUs()];
    } catch (err) {
      reply = [id, false, start ? err : explainImportError(err), start || nowUs(), nowUs()];
    }
    send(conn, reply, kind === APPLY ? 1 : 2);
    done++;
  }
}
