// How the pool's reader takes a worker's replies. A packed reply (fastcodec.ts) is read into
// the worker's scratch buffer (shm/scratch.ts), not a new one: the reader is done with it (a
// chunk's numbers copied into the call's results, MapResult and IMapIterator) before it reads
// the next. Anything else is kept as it is, since what is rebuilt from it may refer to it.
import type { Connection } from '../ipc/connection.js';
import { FAST_TAG } from '../reduction/fastcodec.js';
import type { Scratch } from '../shm/scratch.js';

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
