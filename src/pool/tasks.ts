// How a pool's calls become task messages: each function crosses to a worker once, under a
// number, and every task names it by that number (worker.ts frame()).
import { dumps } from '../reduction/reduction.js';
import { reduceFunction } from '../reduction/functions.js';
import { pack } from '../reduction/fastcodec.js';
import { forAnotherProcess, withReservations } from '../shm/segment.js';
import type { Job, Owner } from './results.js';
import { APPLY, frame, FUNC, HEADER, setHeader, STARMAP } from './worker.js';

export type AnyFn = (...args: never[]) => unknown;

const NO_RELEASE = (): void => undefined;

/** Numbers the functions of one pool and packs its tasks. */
export class TaskEncoder {
  readonly #fnIds = new Map<unknown, { id: number; bytes: Uint8Array }>();
  readonly #fnBytes: Uint8Array[] = [];
  /** By function number: the name the trace shows for its tasks. */
  readonly fnNames: string[] = [];
  #jobSeq = 0;
  readonly #threads: boolean;

  /** `threads`: the workers are threads of this process (no segment need outlive the sender). */
  constructor(threads: boolean) {
    this.#threads = threads;
  }

  /** The number `fn` goes by in this pool; the same source gets the same number. */
  fnId(fn: AnyFn): number {
    const ref = reduceFunction(fn, 'func');
    const key = ref.kind === 'source' ? `source:${ref.source}` : fn;
    let entry = this.#fnIds.get(key);
    if (!entry) {
      const id = this.#fnIds.size + 1;
      entry = { id, bytes: frame(0, FUNC, id, dumps(fn, 'func')) };
      this.#fnIds.set(key, entry);
      this.#fnBytes[id] = entry.bytes;
      this.fnNames[id] = fn.name || 'anonymous';
    }
    return entry.id;
  }

  /** The message that teaches a worker function `fnId`. */
  fnMessage(fnId: number): Uint8Array {
    return this.#fnBytes[fnId]!;
  }

  // A task over `source[from, to)`: the arguments of an apply, or a chunk of a map's input.
  job(
    owner: Owner,
    kind: number,
    fnId: number,
    source: unknown[],
    from: number,
    to: number,
    index: number,
    where: string,
    first: number,
    at: number,
  ): Job {
    const id = ++this.#jobSeq;
    // Library objects in the payload reserve holds for the copy; a task never sent gives them back.
    // The worker spreads or indexes the payload, so only its elements cross: the arrays it is
    // made of may be packed (fastcodec.ts) whoever built them, straight from the input.
    const packed = pack(source, kind === STARMAP ? 2 : 1, from, to, HEADER);
    let bytes: Uint8Array;
    let release = NO_RELEASE;
    if (packed) bytes = setHeader(packed, id, kind, fnId);
    else {
      const payload = from === 0 && to === source.length ? source : source.slice(from, to);
      [bytes, release] = withReservations(() =>
        this.#threads
          ? frame(id, kind, fnId, dumps(payload, where))
          : forAnotherProcess(() => frame(id, kind, fnId, dumps(payload, where))),
      );
    }
    return { id, fnId, bytes, owner, index, first, items: kind === APPLY ? 1 : to - from, at, release };
  }
}
