// How a Redis pool's chunks go to the task stream: the chunks sent in one tick travel in
// bundles, one stream entry each, that name every function once.
import type { Tally } from '../pool/progress.js';
import { bundleFields } from './protocol.js';

export interface Chunk {
  id: number;
  done: (ok: boolean, value: unknown) => void;
  kind: number;
  /** JSON of [function, module hash]: the bundle's function table is made of these. */
  fn: string;
  payload: Buffer;
  sends: number;
  /** The entry that carries it (the last one sent). */
  bundle: Sent | undefined;
  owner: Owner;
  /** Input index of its first item, its number of items, and when it was sent (performance.now()). */
  index: number;
  items: number;
  sentAt: number;
}
/** The chunks of one call, and its onProgress/onTask tally. */
export interface Owner {
  ids: Set<number>;
  tally: Tally | undefined;
}
/** One bundle entry as sent. */
export interface Sent {
  entry: string | undefined;
  /** Its stream: the task stream, or the retry stream once a worker split it there. */
  stream: string;
  chunks: Chunk[];
  fields: (string | Buffer)[];
}

/**
 * Chunks of one tick go in bundles of at most this many, and at most BUNDLE_BYTES of arguments:
 * a map's chunks still spread over the workers, each of which reads several entries at a time.
 */
const BUNDLE_CHUNKS = 64;
const BUNDLE_BYTES = 256 * 1024;
/** A tick's chunks are split into at least this many bundles (when there are as many chunks). */
const BUNDLE_SPREAD = 16;

/** The bundles for the chunks of one tick (in order), each chunk counted as sent once more. */
export function bundle(all: readonly Chunk[], tasks: string, caller: string): Sent[] {
  const out: Sent[] = [];
  const per = Math.min(BUNDLE_CHUNKS, Math.max(1, Math.ceil(all.length / BUNDLE_SPREAD)));
  for (let i = 0; i < all.length;) {
    const chunks: Chunk[] = [];
    let bytes = 0;
    while (i < all.length && chunks.length < per && (chunks.length === 0 || bytes + all[i]!.payload.length <= BUNDLE_BYTES)) {
      bytes += all[i]!.payload.length;
      chunks.push(all[i++]!);
    }
    const fns: string[] = [];
    const wire = chunks.map((c) => {
      let fi = fns.indexOf(c.fn);
      if (fi < 0) fi = fns.push(c.fn) - 1;
      return { id: c.id, kind: c.kind, fn: fi, payload: c.payload };
    });
    const sent: Sent = { entry: undefined, stream: tasks, chunks, fields: bundleFields(caller, fns, wire) };
    for (const c of chunks) {
      c.sends++;
      c.bundle = sent;
    }
    out.push(sent);
  }
  return out;
}
