// Locks, semaphores, conditions, events and barriers that work across processes and threads
// (Python: `multiprocessing.synchronize`). Each object is a few cells of its own shared segment
// (see shm/cells.ts for the algorithms); sending one to a child sends the segment's name.
import { inspect } from 'node:util';

import {
  condEnter,
  condNotify,
  condWaiters,
  condWait,
  COND_CELLS,
  mutexIsMine,
  mutexLock,
  mutexOwner,
  mutexTryLock,
  mutexUnlock,
  MUTEX_CELLS,
  semAcquire,
  semRelease,
  semTryAcquire,
  SEM_CELLS,
  waitSeq,
  wakeAll,
} from '../shm/cells.js';
import { BASE, KIND, rebuildWith, Segment, segmentFor } from '../shm/segment.js';
import { InvalidArgumentError, ProcessError, TimeoutError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import { checkTimeout, deadlineOf, isThenable, remaining, type Deadline } from '../util.js';

/** Options of every call that waits (Python's `block` and `timeout`, in milliseconds). */
export interface WaitOptions {
  /** false: do not wait at all (Python `block=False`). Default true. */
  block?: boolean;
  /** Milliseconds to wait at most; undefined waits forever. */
  timeout?: number;
  /** Abort the wait; the Promise then rejects with AbortError. */
  signal?: AbortSignal;
}

function checkOptions(
  options: WaitOptions | undefined,
  what: string,
): { deadline: Deadline; block: boolean; signal: AbortSignal | undefined } {
  if (options === undefined) return { deadline: Infinity, block: true, signal: undefined };
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(`${what}: options must be an object like { block, timeout, signal }`);
  const { block = true, timeout, signal } = options;
  if (typeof block !== 'boolean') throw new InvalidArgumentError(`${what}: block must be a boolean`);
  if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout)))
    throw new InvalidArgumentError(`${what}: timeout must be a number of milliseconds`);
  return { deadline: block ? deadlineOf(timeout) : performance.now(), block, signal };
}

function ownerName(c: Int32Array, i: number): string {
  return mutexOwner(c, i) ?? 'None';
}

// Settled Promises shared by every fast path: an uncontended acquire allocates nothing.
const RESOLVED_TRUE = Promise.resolve(true);
const RESOLVED_FALSE = Promise.resolve(false);

const releasedTooMany = (): ProcessError =>
  new ProcessError('semaphore or lock released too many times', { code: 'ERR_MP_RELEASED_TOO_MANY' });

/** What Lock, RLock, Semaphore and Condition share: acquire/release plus the `with` forms. */
/** @internal The error a shared object gives after close(). */
export function closedError(what: string): ProcessError {
  return new ProcessError(`${what} is closed: this object gave its shared memory back (create a new one)`, { code: 'ERR_MP_CLOSED' });
}

abstract class LockLike {
  /** Acquire; resolves false if `{ block: false }` or the timeout came first. @throws AbortError when `signal` aborts. */
  abstract acquire(options?: WaitOptions): Promise<boolean>;
  /** Release; never waits. */
  abstract release(): void;

  /**
   * Python's `with lock:` — acquire, run `fn`, release (also when `fn` throws).
   * @throws TimeoutError when `options.timeout` passes before the lock is acquired.
   */
  withLock<T>(fn: () => T | Promise<T>, options?: WaitOptions): Promise<T> {
    // Uncontended and synchronous `fn`: no await at all, so `with lock: v += 1` costs one
    // settled Promise rather than three microtask turns.
    if (options === undefined && this._tryAcquireNow()) {
      let result: T | Promise<T>;
      try {
        result = fn();
      } catch (err) {
        this.release();
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- whatever fn threw, as the async path rejects
        return Promise.reject(err);
      }
      if (!isThenable(result)) {
        this.release();
        return Promise.resolve(result);
      }
      return Promise.resolve(result).finally(() => this.release());
    }
    return this.#withLockSlow(fn, options);
  }

  async #withLockSlow<T>(fn: () => T | Promise<T>, options?: WaitOptions): Promise<T> {
    if (!(await this.acquire(options))) throw new TimeoutError(`${this.constructor.name}: not acquired within ${options?.timeout ?? 0} ms`);
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** @internal Acquire now if that needs no waiting; false otherwise (then use acquire()). */
  _tryAcquireNow(): boolean {
    return false;
  }

  /**
   * Acquire and return this object for `await using`: `await using _ = await lock.guard();`.
   * @throws TimeoutError when not acquired within the timeout.
   */
  async guard(options?: WaitOptions): Promise<this> {
    if (!(await this.acquire(options))) throw new TimeoutError(`${this.constructor.name}: not acquired within ${options?.timeout ?? 0} ms`);
    return this;
  }

  /** Release at the end of an `await using` block. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that release() throwing (lock not held) rejects
  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * A non-recursive lock shared by processes and threads (Python: `multiprocessing.Lock`). Any
 * process may release it, as in Python. If its holder dies, a waiter takes it over within about
 * half a second (CPython leaves it locked forever) and a warning says so.
 */
export class Lock extends LockLike {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  constructor() {
    super();
    [this.#seg] = segmentFor(MUTEX_CELLS * 4, KIND.Lock);
    this.#c = this.#seg.i32;
  }
  acquire(options?: WaitOptions): Promise<boolean> {
    let o: ReturnType<typeof checkOptions>;
    try {
      o = checkOptions(options, 'Lock.acquire');
      if (this.#seg.closed) throw closedError('Lock');
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- checkOptions' InvalidArgumentError, as a rejection
      return Promise.reject(err);
    }
    if (mutexTryLock(this.#c, BASE)) return RESOLVED_TRUE;
    if (!o.block) return RESOLVED_FALSE;
    return mutexLock(this.#c, BASE, o.deadline, o.signal);
  }
  /** @throws ProcessError ERR_MP_RELEASED_TOO_MANY when it is not locked, ERR_MP_CLOSED after close(). */
  release(): void {
    if (this.#seg.closed) throw closedError('Lock');
    if (!mutexUnlock(this.#c, BASE)) throw releasedTooMany();
  }
  override _tryAcquireNow(): boolean {
    if (this.#seg.closed) throw closedError('Lock');
    return mutexTryLock(this.#c, BASE);
  }
  /**
   * Whether anyone (a process or thread, this one included) holds it now (Python 3.14: `locked()`).
   * @throws ProcessError ERR_MP_CLOSED after close().
   */
  locked(): boolean {
    if (this.#seg.closed) throw closedError('Lock');
    return Atomics.load(this.#c, BASE) !== 0;
  }
  /**
   * Give this process's hold on the lock's shared memory back now, instead of when the object is
   * garbage-collected; other processes' copies keep working. Later calls on this object throw
   * ProcessError ERR_MP_CLOSED. Also `using lock = new Lock()`.
   */
  close(): void {
    this.#seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  /** @internal */
  _isMine(): boolean {
    return mutexIsMine(this.#c, BASE);
  }
  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }
  override toString(): string {
    return this.#seg.closed ? '<Lock(closed)>' : `<Lock(owner=${ownerName(this.#c, BASE)})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * A recursive lock: its owner (a process, or a thread of one) may acquire it again and must
 * release it as often (Python: `multiprocessing.RLock`). Two async functions of one thread are
 * one owner, as two coroutines of one Python thread are.
 */
export class RLock extends LockLike {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  constructor() {
    super();
    [this.#seg] = segmentFor((MUTEX_CELLS + 1) * 4, KIND.RLock);
    this.#c = this.#seg.i32;
  }
  async acquire(options?: WaitOptions): Promise<boolean> {
    const o = checkOptions(options, 'RLock.acquire');
    if (this.#seg.closed) throw closedError('RLock');
    const c = this.#c;
    if (mutexIsMine(c, BASE)) {
      c[BASE + MUTEX_CELLS]!++;
      return true;
    }
    const got = mutexTryLock(c, BASE) || (o.block && (await mutexLock(c, BASE, o.deadline, o.signal)));
    if (got) c[BASE + MUTEX_CELLS] = 1;
    return got;
  }
  override _tryAcquireNow(): boolean {
    if (this.#seg.closed) throw closedError('RLock');
    const c = this.#c;
    if (mutexIsMine(c, BASE)) {
      c[BASE + MUTEX_CELLS]!++;
      return true;
    }
    if (!mutexTryLock(c, BASE)) return false;
    c[BASE + MUTEX_CELLS] = 1;
    return true;
  }
  /**
   * Whether anyone (a process or thread, this one included) holds it now (Python 3.14: `locked()`).
   * @throws ProcessError ERR_MP_CLOSED after close().
   */
  locked(): boolean {
    if (this.#seg.closed) throw closedError('RLock');
    return Atomics.load(this.#c, BASE) !== 0;
  }
  /** As Lock.close(). */
  close(): void {
    this.#seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  /** @throws ProcessError ERR_MP_NOT_OWNER when the caller does not hold it, ERR_MP_CLOSED after close(). */
  release(): void {
    if (this.#seg.closed) throw closedError('RLock');
    const c = this.#c;
    if (!mutexIsMine(c, BASE)) throw new ProcessError('cannot release un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    if (--c[BASE + MUTEX_CELLS]! === 0) mutexUnlock(c, BASE);
  }
  /** @internal */
  _isMine(): boolean {
    return mutexIsMine(this.#c, BASE);
  }
  /** @internal Release every level for Condition.wait; returns the count to restore. */
  _releaseAll(): number {
    const n = this.#c[BASE + MUTEX_CELLS]!;
    this.#c[BASE + MUTEX_CELLS] = 0;
    mutexUnlock(this.#c, BASE);
    return n;
  }
  /** @internal */
  async _reacquire(count: number): Promise<void> {
    await mutexLock(this.#c, BASE, Infinity);
    this.#c[BASE + MUTEX_CELLS] = count;
  }
  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }
  override toString(): string {
    if (this.#seg.closed) return '<RLock(closed)>';
    const owner = ownerName(this.#c, BASE);
    return `<RLock(${owner}, ${owner === 'None' ? 0 : this.#c[BASE + MUTEX_CELLS]})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** A counting semaphore (Python: `multiprocessing.Semaphore(value)`). */
export class Semaphore extends LockLike {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  /** @throws InvalidArgumentError when `value` is not an integer >= 0. */
  constructor(value = 1) {
    super();
    const [seg, created] = segmentFor(SEM_CELLS * 4, KIND.Semaphore);
    this.#seg = seg;
    this.#c = seg.i32;
    if (created) {
      if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff)
        throw new InvalidArgumentError(`${new.target.name}(value): value must be an integer >= 0, got ${String(value)}`);
      Atomics.store(this.#c, BASE, value);
      if (new.target === BoundedSemaphore) Atomics.store(this.#c, BASE + 2, Math.max(value, 1));
    }
  }
  // Every use after close() is refused: the block may hold another object by then.
  get #cells(): Int32Array {
    if (this.#seg.closed) throw closedError('Semaphore');
    return this.#c;
  }
  /**
   * Give this process's hold on the shared memory back now, instead of when the object is
   * garbage-collected; copies in other processes keep working. Later calls on this object throw
   * ProcessError ERR_MP_CLOSED. Also `using x = new Semaphore(...)`.
   */
  close(): void {
    this.#seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  acquire(options?: WaitOptions): Promise<boolean> {
    let o: ReturnType<typeof checkOptions>;
    try {
      o = checkOptions(options, `${this.constructor.name}.acquire`);
      if (this.#seg.closed) throw closedError(this.constructor.name);
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- checkOptions' InvalidArgumentError, as a rejection
      return Promise.reject(err);
    }
    if (semTryAcquire(this.#cells, BASE)) return RESOLVED_TRUE;
    if (!o.block) return RESOLVED_FALSE;
    return semAcquire(this.#cells, BASE, o.deadline, o.signal);
  }
  /** Add `n` (default 1), waking as many waiters. @throws ProcessError ERR_MP_RELEASED_TOO_MANY past a BoundedSemaphore's value. */
  release(n = 1): void {
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`release(n): n must be an integer >= 1, got ${String(n)}`);
    if (!semRelease(this.#cells, BASE, n)) throw releasedTooMany();
  }
  override _tryAcquireNow(): boolean {
    return semTryAcquire(this.#cells, BASE);
  }
  /** The current value (Python: `get_value()`). */
  getValue(): number {
    return Atomics.load(this.#cells, BASE);
  }
  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }
  override toString(): string {
    if (this.#seg.closed) return `<Semaphore(closed)>`;
    const max = Atomics.load(this.#cells, BASE + 2);
    return `<${this.constructor.name}(value=${this.getValue()}${max ? `, maxvalue=${max}` : ''})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** A semaphore whose value may not be released above its initial value (Python: `BoundedSemaphore`). */
export class BoundedSemaphore extends Semaphore {}

/**
 * A condition variable over a Lock or RLock (default: a new RLock), as Python's
 * `multiprocessing.Condition`. `wait`, `waitFor`, `notify` and `notifyAll` need the lock held.
 */
export class Condition extends LockLike {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  readonly #lock: Lock | RLock;
  /** @throws InvalidArgumentError when `lock` is neither a Lock nor an RLock. */
  constructor(lock?: Lock | RLock) {
    super();
    if (lock !== undefined && !(lock instanceof Lock) && !(lock instanceof RLock))
      throw new InvalidArgumentError('Condition(lock): lock must be a Lock or an RLock');
    [this.#seg] = segmentFor(COND_CELLS * 4, KIND.Condition);
    this.#c = this.#seg.i32;
    this.#lock = lock ?? new RLock();
  }
  // Every use after close() is refused: the block may hold another object by then.
  get #cells(): Int32Array {
    if (this.#seg.closed) throw closedError('Condition');
    return this.#c;
  }
  /**
   * Give this process's hold on the shared memory back now, instead of when the object is
   * garbage-collected; copies in other processes keep working. Later calls on this object throw
   * ProcessError ERR_MP_CLOSED. Also `using x = new Condition(...)`.
   */
  close(): void {
    this.#seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  acquire(options?: WaitOptions): Promise<boolean> {
    return this.#lock.acquire(options);
  }
  release(): void {
    this.#lock.release();
  }
  /** The underlying lock. */
  get lock(): Lock | RLock {
    return this.#lock;
  }
  #checkOwned(what: string): void {
    if (!this.#lock._isMine()) throw new ProcessError(`cannot ${what} on un-acquired lock`, { code: 'ERR_MP_NOT_OWNER' });
  }
  /**
   * Release the lock, wait for a notify (or `timeout` ms), reacquire the lock.
   * Resolves true when notified, false on timeout.
   * @throws ProcessError ERR_MP_NOT_OWNER when the lock is not held.
   */
  async wait(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = checkTimeout(timeout, 'Condition.wait');
    this.#checkOwned('wait');
    const slot = condEnter(this.#cells, BASE);
    const lock = this.#lock;
    const count = lock instanceof RLock ? lock._releaseAll() : (lock.release(), 1);
    try {
      return await condWait(this.#cells, BASE, slot, deadline, options.signal);
    } finally {
      if (lock instanceof RLock) await lock._reacquire(count);
      else await lock.acquire();
    }
  }
  /**
   * Wait until `predicate()` is truthy (Python: `wait_for`); resolves its last value, which is
   * falsy when `timeout` ms passed first. The predicate may be async.
   */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number): Promise<T> {
    const deadline = checkTimeout(timeout, 'Condition.waitFor');
    let result = await predicate();
    while (!result) {
      const left = remaining(deadline);
      if (left === 0) break;
      await this.wait(left);
      result = await predicate();
    }
    return result;
  }
  /** Wake up to `n` waiters (default 1). @throws ProcessError ERR_MP_NOT_OWNER when the lock is not held. */
  notify(n = 1): void {
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`notify(n): n must be an integer >= 0, got ${String(n)}`);
    this.#checkOwned('notify');
    condNotify(this.#cells, BASE, n);
  }
  /** Wake every waiter. @throws ProcessError ERR_MP_NOT_OWNER when the lock is not held. */
  notifyAll(): void {
    this.#checkOwned('notify');
    condNotify(this.#cells, BASE, 0x7fffffff);
  }
  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }
  override toString(): string {
    if (this.#seg.closed) return `<Condition(closed)>`;
    return `<Condition(${this.#lock.toString()}, ${condWaiters(this.#cells, BASE)})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** A flag any process can set, clear and wait for (Python: `multiprocessing.Event`). */
export class Event {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  constructor() {
    [this.#seg] = segmentFor(2 * 4, KIND.Event);
    this.#c = this.#seg.i32;
  }
  // Every use after close() is refused: the block may hold another object by then.
  get #cells(): Int32Array {
    if (this.#seg.closed) throw closedError('Event');
    return this.#c;
  }
  /**
   * Give this process's hold on the shared memory back now, instead of when the object is
   * garbage-collected; copies in other processes keep working. Later calls on this object throw
   * ProcessError ERR_MP_CLOSED. Also `using x = new Event(...)`.
   */
  close(): void {
    this.#seg.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  /** Whether the flag is set (Python: `is_set()`). */
  isSet(): boolean {
    return Atomics.load(this.#cells, BASE) === 1;
  }
  /** Set the flag and wake every waiter. */
  set(): void {
    Atomics.store(this.#cells, BASE, 1);
    wakeAll(this.#cells, BASE + 1);
  }
  /** Clear the flag. */
  clear(): void {
    Atomics.store(this.#cells, BASE, 0);
  }
  /** Resolve true once the flag is set, false if `timeout` ms pass first. @throws AbortError when `signal` aborts. */
  async wait(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = checkTimeout(timeout, 'Event.wait');
    for (;;) {
      const seq = Atomics.load(this.#cells, BASE + 1);
      if (this.isSet()) return true;
      if (remaining(deadline) === 0) return false;
      await waitSeq(this.#cells, BASE + 1, seq, deadline, options.signal);
    }
  }
  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }
  toString(): string {
    if (this.#seg.closed) return `<Event(closed)>`;
    return `<Event(${this.isSet() ? 'set' : 'unset'})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

// ---------------------------------------------------------------------------------------------
// Transport: each object crosses as the name of its segment (plus what it is made of).

type WithSegment = { _segment(): Segment };
const send = (o: WithSegment): string => o._segment().retainForSend();

registerType(
  Lock,
  { reduce: send, rebuild: (name: string) => rebuildWith(Segment.adopt(name, KIND.Lock), () => new Lock()) },
  'multiproc.Lock',
);
registerType(
  RLock,
  { reduce: send, rebuild: (name: string) => rebuildWith(Segment.adopt(name, KIND.RLock), () => new RLock()) },
  'multiproc.RLock',
);
registerType(
  Semaphore,
  {
    reduce: (s) => ({ name: send(s), bounded: s instanceof BoundedSemaphore }),
    rebuild: ({ name, bounded }: { name: string; bounded: boolean }) =>
      rebuildWith(Segment.adopt(name, KIND.Semaphore), () => (bounded ? new BoundedSemaphore() : new Semaphore())),
  },
  'multiproc.Semaphore',
);
registerType(
  Condition,
  {
    reduce: (c) => ({ name: send(c), lock: c.lock }),
    rebuild: ({ name, lock }: { name: string; lock: Lock | RLock }) =>
      rebuildWith(Segment.adopt(name, KIND.Condition), () => new Condition(lock)),
  },
  'multiproc.Condition',
);
registerType(
  Event,
  { reduce: send, rebuild: (name: string) => rebuildWith(Segment.adopt(name, KIND.Event), () => new Event()) },
  'multiproc.Event',
);
