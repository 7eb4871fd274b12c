// Barrier across processes and threads: Python's threading.Barrier algorithm (which
// multiprocessing.Barrier reuses over shared state), on a mutex and a condition variable kept in
// one shared segment.
import { inspect } from 'node:util';

import { condEnter, condNotify, condWait, COND_CELLS, mutexLock, mutexUnlock, MUTEX_CELLS } from '../shm/cells.js';
import { BASE, KIND, rebuildWith, Segment, segmentFor } from '../shm/segment.js';
import { BrokenBarrierError, InvalidArgumentError } from '../errors.js';
import { closedError } from './synchronize.js';
import { registerType } from '../reduction/reduction.js';
import { checkTimeout, type Deadline } from '../util.js';

const M = BASE;
const C = BASE + MUTEX_CELLS;
const STATE = C + COND_CELLS;
const COUNT = STATE + 1;
const PARTIES = STATE + 2;
const TIMEOUT = STATE + 3;
const CELLS = MUTEX_CELLS + COND_CELLS + 4;
// Python's states: 0 filling, 1 draining, -1 resetting, -2 broken.
const FILLING = 0;
const DRAINING = 1;
const RESETTING = -1;
const BROKEN = -2;

/**
 * `parties` processes or threads wait until all have arrived (Python: `multiprocessing.Barrier`).
 * `action` runs in the last one to arrive, before any is released; `timeout` (ms) is the default
 * for `wait`, and a wait that times out breaks the barrier for everyone.
 */
export class Barrier {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  readonly #action: (() => unknown) | undefined;

  /** @throws InvalidArgumentError when `parties` is not an integer >= 1, `action` not a function or `timeout` not a number. */
  constructor(parties: number, action?: (() => unknown) | null, timeout?: number | null) {
    const [seg, created] = segmentFor(CELLS * 4, KIND.Barrier);
    this.#seg = seg;
    this.#c = seg.i32;
    this.#action = action ?? undefined;
    if (created) {
      if (!Number.isInteger(parties) || parties < 1)
        throw new InvalidArgumentError(`Barrier(parties): parties must be an integer >= 1, got ${String(parties)}`);
      if (action != null && typeof action !== 'function')
        throw new InvalidArgumentError('Barrier(parties, action): action must be a function');
      if (timeout != null && (typeof timeout !== 'number' || !(timeout >= 0)))
        throw new InvalidArgumentError('Barrier(parties, action, timeout): timeout must be a number of milliseconds >= 0');
      Atomics.store(this.#c, PARTIES, parties);
      Atomics.store(this.#c, TIMEOUT, timeout == null ? -1 : Math.min(Math.round(timeout), 0x7fffffff));
    }
  }
  // Every use after close() is refused: the block may hold another object by then.
  get #cells(): Int32Array {
    if (this.#seg.closed) throw closedError('Barrier');
    return this.#c;
  }
  /**
   * Give this process's hold on the shared memory back now, instead of when the object is
   * garbage-collected; copies in other processes keep working. Later calls on this object throw
   * ProcessError ERR_MP_CLOSED. Also `using x = new Barrier(...)`.
   */
  close(): void {
    this.#seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** How many must arrive. */
  get parties(): number {
    return Atomics.load(this.#cells, PARTIES);
  }
  /** How many are waiting now (Python: `n_waiting`). */
  get nWaiting(): number {
    return Atomics.load(this.#cells, STATE) === FILLING ? Atomics.load(this.#cells, COUNT) : 0;
  }
  /** Whether the barrier is broken (by abort(), a timeout, or an action that threw). */
  get broken(): boolean {
    return Atomics.load(this.#cells, STATE) === BROKEN;
  }

  /**
   * Wait for the others; resolves this party's arrival index (0 .. parties-1).
   * @throws BrokenBarrierError when the barrier is or becomes broken, or reset while waiting.
   */
  async wait(timeout?: number): Promise<number> {
    const t = timeout ?? (Atomics.load(this.#cells, TIMEOUT) >= 0 ? Atomics.load(this.#cells, TIMEOUT) : undefined);
    const deadline = checkTimeout(t, 'Barrier.wait');
    const c = this.#cells;
    await mutexLock(c, M, Infinity);
    try {
      // Block while the barrier drains or resets.
      while (c[STATE] === DRAINING || c[STATE] === RESETTING) await this.#condWait(Infinity);
      if (c[STATE]! < 0) throw new BrokenBarrierError();
      const index = c[COUNT]!;
      c[COUNT] = index + 1;
      try {
        if (index + 1 === c[PARTIES]) {
          try {
            await this.#action?.();
            c[STATE] = DRAINING;
            condNotify(c, C, 0x7fffffff);
          } catch (err) {
            this.#break();
            throw err;
          }
        } else {
          while (c[STATE] === FILLING) {
            // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- shared memory: another process may change the state while this one waits
            if (!(await this.#condWait(deadline)) && c[STATE] === FILLING) {
              this.#break();
              throw new BrokenBarrierError('barrier wait timed out; the barrier is now broken');
            }
          }
          if (c[STATE]! < 0) throw new BrokenBarrierError();
        }
        return index;
      } finally {
        c[COUNT] = c[COUNT] - 1;
        // The last one out of a draining or resetting barrier opens it for the next round.
        if (c[COUNT] === 0 && (c[STATE] === DRAINING || c[STATE] === RESETTING)) {
          c[STATE] = FILLING;
          condNotify(c, C, 0x7fffffff);
        }
      }
    } finally {
      mutexUnlock(c, M);
    }
  }

  // Wait on the condition with the mutex held: released while asleep, held again after.
  async #condWait(deadline: Deadline): Promise<boolean> {
    const slot = condEnter(this.#cells, C);
    mutexUnlock(this.#cells, M);
    try {
      return await condWait(this.#cells, C, slot, deadline);
    } finally {
      await mutexLock(this.#cells, M, Infinity);
    }
  }

  #break(): void {
    this.#cells[STATE] = BROKEN;
    condNotify(this.#cells, C, 0x7fffffff);
  }

  /** Return to the initial state; parties waiting now get BrokenBarrierError. */
  async reset(): Promise<void> {
    const c = this.#cells;
    await mutexLock(c, M, Infinity);
    try {
      if (c[COUNT]! > 0) {
        if (c[STATE] === FILLING || c[STATE] === BROKEN) c[STATE] = RESETTING;
      } else {
        c[STATE] = FILLING;
      }
      condNotify(c, C, 0x7fffffff);
    } finally {
      mutexUnlock(c, M);
    }
  }

  /** Break the barrier: waiting and future `wait` calls get BrokenBarrierError until reset(). */
  async abort(): Promise<void> {
    await mutexLock(this.#cells, M, Infinity);
    try {
      this.#break();
    } finally {
      mutexUnlock(this.#cells, M);
    }
  }

  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }
  /** @internal */
  get _action(): (() => unknown) | undefined {
    return this.#action;
  }

  toString(): string {
    if (this.#seg.closed) return `<Barrier(closed)>`;
    return `<Barrier(parties=${this.parties}, waiting=${this.nWaiting}${this.broken ? ', broken' : ''})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

registerType(
  Barrier,
  {
    reduce: (b) => ({ name: b._segment().retainForSend(), action: b._action }),
    rebuild: ({ name, action }: { name: string; action?: () => unknown }) =>
      rebuildWith(Segment.adopt(name, KIND.Barrier), () => new Barrier(1, action)),
  },
  'multiproc.Barrier',
);
