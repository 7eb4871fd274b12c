// How the pool's reader takes a worker's replies. A packed reply (fastcodec.ts) is read into
// the worker's scratch buffer (shm/scratch.ts), not a new one: the reader is done with it (a
// chunk's numbers copied into the call's results, MapResult and IMapIterator) before it reads
// the next. Anything else is kept as it is, since what is rebuilt from it may refer to it.
import type { Connection } from '../ipc/connection.js';
import { FAST_TAG, unpackViews } from '../reduction/fastcodec.js';
import { loads } from '../reduction/reduction.js';
import type { Scratch } from '../shm/scratch.js';
import type { Worker } from './dispatch.js';
import type { ReplyMsg } from './worker.js';

type Into = (n: number) => Uint8Array;

/** A reply already whole in the worker's ring, or null (the pool's pipes are shared-memory rings). */
export function replyInRing(conn: Connection, scratch: Scratch): Uint8Array | null {
  const m = (conn as Connection & { _tryRecvBytes?: (into: Into) => Uint8Array | null })._tryRecvBytes?.(scratch.take);
  return m ? (m[0] === FAST_TAG ? m : m.slice()) : null;
}

/**
 * The next reply, waiting for it. One larger than the ring streams through it into a buffer of
 * its own.
 * @throws EOFError once the worker's end is closed everywhere and nothing is left.
 */
export async function nextReply(conn: Connection, scratch: Scratch): Promise<Uint8Array> {
  await conn.poll(null);
  return replyInRing(conn, scratch) ?? (await conn.recvBytes());
}

/** What the pool does with what readReplies() reads. */
export interface ReplyHandlers {
  /** One reply (or the failure to rebuild one). */
  reply(w: Worker, msg: ReplyMsg): void;
  /** After each batch of replies: the workers are fed again. */
  read(): void;
  /** The worker is gone and everything it wrote was read. */
  ended(w: Worker): void;
}

/**
 * Read worker `w`'s replies until its end-of-worker marker (or its pipe's end), handing each to
 * `h.reply`, calling `h.read` after each batch and `h.ended` at the end.
 */
export async function readReplies(w: Worker, h: ReplyHandlers): Promise<void> {
  for (;;) {
    // An idle worker is not read: a pending read would keep the event loop alive, and a pool
    // nobody uses must not keep the program running (its daemonic workers end with it).
    while (w.held.length === 0 && w.exitcode === null) {
      await new Promise<void>((r) => (w.wake = r));
      w.wake = undefined;
    }
    let bytes: Uint8Array | null;
    try {
      bytes = await nextReply(w.conn, w.scratch);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_MP_EOF') break;
      bytes = null;
      h.reply(w, [w.held[0]?.id ?? -2, false, err]);
    }
    // Every reply already there is taken before the workers are fed again: one wake-up of
    // this loop answers a batch of tasks.
    let ended = false;
    while (bytes) {
      let msg: ReplyMsg | null;
      try {
        // A chunk's numbers stay a typed array over the reply's bytes: the call copies them
        // straight into its results (MapResult, IMapIterator).
        msg = (bytes[0] === FAST_TAG ? unpackViews(bytes, 1) : await loads(bytes)) as ReplyMsg | null;
      } catch (err) {
        // The reply could not be rebuilt here: that task fails.
        msg = [w.held[0]?.id ?? -2, false, err];
      }
      if (msg === null) {
        ended = true;
        break;
      }
      h.reply(w, msg);
      bytes = replyInRing(w.conn, w.scratch);
    }
    if (ended) break;
    h.read();
  }
  h.ended(w);
}
