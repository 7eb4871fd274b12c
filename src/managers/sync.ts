// The synchronization primitives and queues a SyncManager serves (they live in the server
// process): Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier, Queue and
// JoinableQueue. A call that waits returns a Promise; the server answers when it resolves.
import { BrokenBarrierError, Empty, Full, InvalidArgumentError, ProcessError } from '../errors.js';
import { ValueError } from './containers.js';
import { localReferent } from './proxy.js';
import { callContext } from './server.js';
import { parked } from '../util.js';
import { Lock } from '../sync/synchronize.js';

// ---------------------------------------------------------------------------------------------
// Waiting inside the server.

export class WaitList {
  readonly #w = new Set<() => void>();
  wake(): void {
    for (const f of [...this.#w]) f();
  }
  /** true when woken, false at the deadline; rejects with AbortError when `signal` aborts. */
  wait(deadline: number, signal: AbortSignal): Promise<boolean> {
    return parked(deadline, signal, (wake) => {
      this.#w.add(wake);
      return () => void this.#w.delete(wake);
    });
  }
}

export function deadlineOf(timeout: number | null | undefined): number {
  if (timeout === undefined || timeout === null) return Infinity;
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw new InvalidArgumentError('timeout must be a number of milliseconds');
  return performance.now() + Math.max(0, timeout);
}

/** Wait until `claim()` returns true (it runs synchronously, so checking and taking is atomic). */
export async function until(claim: () => boolean, list: WaitList, deadline: number, signal: AbortSignal): Promise<boolean> {
  while (!claim()) {
    if (!(await list.wait(deadline, signal))) return claim();
  }
  return true;
}

/**
 * How long a waiter may be passed over: a release gives the lock (or permit) straight to a
 * waiter that has waited this long, ahead of any caller that asks later.
 */
export const STARVING_MS = 1;

/**
 * Callers waiting for a lock or a permit. A release does not hand the lock to the longest waiter
 * unless it has waited STARVING_MS or more: the lock is left free for whichever acquire the server
 * reads first (as Python's `threading.Lock`, and as Go's mutex outside its starvation mode), so a
 * process taking the lock in a tight loop keeps it without waking a sleeping process for every
 * turn. Should nobody take it before the server's event loop turns, it goes to the longest waiter
 * then. A waiter is therefore passed over for about a millisecond at most, and never forgotten.
 */
export class WaitQueue<T> {
  readonly #q: { item: T; grant: () => void; since: number }[] = [];
  #scheduled = false;
  get size(): number {
    return this.#q.length;
  }
  /** true once a release chose this waiter (the caller's state is set by then); false at the deadline; rejects with AbortError on abort. */
  wait(item: T, deadline: number, signal: AbortSignal): Promise<boolean> {
    return parked(deadline, signal, (grant) => {
      const entry = { item, grant, since: performance.now() };
      this.#q.push(entry);
      return () => {
        const i = this.#q.indexOf(entry);
        if (i >= 0) this.#q.splice(i, 1);
      };
    });
  }
  /**
   * After a release left the lock (or a permit) free: while `free()`, `take(item)` gives it to the
   * longest waiter and wakes it: now for waiters that have starved, else once the loop turns.
   */
  released(free: () => boolean, take: (item: T) => void): void {
    const now = performance.now();
    this.#give(free, take, (e) => now - e.since >= STARVING_MS);
    if (this.#q.length === 0 || this.#scheduled || !free()) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#give(free, take, () => true);
    });
  }
  #give(free: () => boolean, take: (item: T) => void, due: (e: { since: number }) => boolean): void {
    for (let e = this.#q[0]; e && free() && due(e); e = this.#q[0]) {
      take(e.item);
      e.grant();
    }
  }
}

/** Options of a remote call that waits; `signal` asks the server to stop waiting. */
export interface ProxyWaitOptions {
  block?: boolean;
  timeout?: number;
  signal?: AbortSignal;
}

export function blockAndDeadline(options: ProxyWaitOptions | undefined): { block: boolean; deadline: number } {
  const block = options?.block ?? true;
  return { block, deadline: block ? deadlineOf(options?.timeout) : 0 };
}

// Locks. Ownership is per caller (a connection: one process or thread), as Python's server
// serves each client thread on a thread of its own.
interface Owned {
  _isOwned(caller: string): boolean;
  _releaseSave(caller: string): unknown;
  _acquireRestore(caller: string, saved: unknown, signal: AbortSignal): Promise<void>;
}

/**
 * The Lock a SyncManager serves. Its state is a `multiproc.Lock` (shared memory): proxies on
 * this machine take it there directly (shared_lock.ts), others through these methods, which
 * take it on the caller's behalf. Any caller may release it, as Python's `threading.Lock`.
 */
export class ManagedLock implements Owned {
  readonly #lock = new Lock();
  // Conditions over this lock: its memory stays open while any lives, even once it is dropped.
  #users = 0;
  #dropped = false;
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    const { signal } = callContext();
    const { block, deadline } = blockAndDeadline(options);
    if (this.#lock._tryAcquireNow()) return true;
    if (!block) return false;
    return this.#lock.acquire({ timeout: deadline === Infinity ? undefined : Math.max(0, deadline - performance.now()), signal });
  }
  release(): void {
    try {
      this.#lock.release();
    } catch (err) {
      if (err instanceof ProcessError && err.code === 'ERR_MP_RELEASED_TOO_MANY') throw new ValueError('release unlocked lock');
      throw err;
    }
  }
  locked(): boolean {
    return this.#lock.locked();
  }
  /** The lock's shared memory, for a proxy on this machine. */
  _shared(): Lock {
    return this.#lock;
  }
  /** @internal The server dropped this object. */
  _dispose(): void {
    this.#dropped = true;
    if (this.#users === 0) this.#lock.close();
  }
  /** @internal A Condition uses this lock until the returned function is called. */
  _use(): () => void {
    this.#users++;
    return () => {
      if (--this.#users === 0 && this.#dropped) this.#lock.close();
    };
  }
  // As Python's Condition over a Lock, which cannot tell who holds it: held by anyone counts.
  _isOwned(_caller: string): boolean {
    return this.#lock.locked();
  }
  _releaseSave(_caller: string): unknown {
    this.release();
    return null;
  }
  async _acquireRestore(_caller: string, _saved: unknown, signal: AbortSignal): Promise<void> {
    await this.#lock.acquire({ signal });
  }
}

/** The RLock a SyncManager serves: reentrant for its owner (a process or thread). */
export class ManagedRLock implements Owned {
  #owner: string | null = null;
  #count = 0;
  readonly #waiters = new WaitQueue<{ caller: string; count: number }>();
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    const { caller, signal } = callContext();
    const { block, deadline } = blockAndDeadline(options);
    if (this.#owner === caller) {
      this.#count++;
      return true;
    }
    if (this.#owner === null) {
      this.#owner = caller;
      this.#count = 1;
      return true;
    }
    if (!block) return false;
    return this.#waiters.wait({ caller, count: 1 }, deadline, signal);
  }
  release(): void {
    const { caller } = callContext();
    if (this.#owner !== caller) throw new ProcessError('cannot release un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    if (--this.#count === 0) this.#release();
  }
  #release(): void {
    this.#owner = null;
    this.#count = 0;
    this.#waiters.released(
      () => this.#owner === null,
      (next) => {
        this.#owner = next.caller;
        this.#count = next.count;
      },
    );
  }
  _isOwned(caller: string): boolean {
    return this.#owner === caller;
  }
  _releaseSave(_caller: string): unknown {
    const count = this.#count;
    this.#release();
    return count;
  }
  async _acquireRestore(caller: string, saved: unknown, signal: AbortSignal): Promise<void> {
    if (this.#owner === null) {
      this.#owner = caller;
      this.#count = saved as number;
    } else await this.#waiters.wait({ caller, count: saved as number }, Infinity, signal);
  }
}

/** The Semaphore a SyncManager serves. */
export class ManagedSemaphore {
  #value: number;
  readonly #waiters = new WaitQueue<null>();
  constructor(value = 1) {
    if (!Number.isInteger(value) || value < 0) throw new ValueError('semaphore initial value must be an integer >= 0');
    this.#value = value;
  }
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    const { signal } = callContext();
    const { block, deadline } = blockAndDeadline(options);
    if (this.#value > 0) {
      this.#value--;
      return true;
    }
    if (!block) return false;
    return this.#waiters.wait(null, deadline, signal);
  }
  release(n = 1): void {
    if (!Number.isInteger(n) || n < 1) throw new ValueError('n must be one or more');
    this.#value += n;
    this.#waiters.released(
      () => this.#value > 0,
      () => {
        this.#value--;
      },
    );
  }
  getValue(): number {
    return this.#value;
  }
}

/** The BoundedSemaphore a SyncManager serves: releasing above the initial value is an error. */
export class ManagedBoundedSemaphore extends ManagedSemaphore {
  readonly #initial: number;
  constructor(value = 1) {
    super(value);
    this.#initial = value;
  }
  override release(n = 1): void {
    if (this.getValue() + n > this.#initial) throw new ValueError('Semaphore released too many times');
    super.release(n);
  }
}

/** The Condition a SyncManager serves, over a shared Lock or RLock (a new RLock by default). */
export class ManagedCondition {
  readonly #lock: ManagedLock | ManagedRLock;
  readonly #waiters = new Set<{ notified: boolean; wake: () => void }>();
  #unuse: (() => void) | undefined;
  constructor(lock?: unknown) {
    const ref = lock === undefined || lock === null ? new ManagedRLock() : (localReferent(lock) ?? lock);
    if (!(ref instanceof ManagedLock || ref instanceof ManagedRLock))
      throw new TypeError('Condition(lock): lock must be a Lock or RLock of the same manager');
    this.#lock = ref;
    if (ref instanceof ManagedLock) this.#unuse = ref._use();
  }
  /** @internal The server dropped this object. */
  _dispose(): void {
    this.#unuse?.();
    this.#unuse = undefined;
  }
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    return this.#lock.acquire(options);
  }
  release(): void {
    this.#lock.release();
  }
  async wait(timeout?: number | null): Promise<boolean> {
    const ctx = callContext();
    const { caller, signal } = ctx;
    if (!this.#lock._isOwned(caller)) throw new ProcessError('cannot wait on un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    const deadline = deadlineOf(timeout);
    const saved = this.#lock._releaseSave(caller);
    const list = new WaitList();
    const w = { notified: false, wake: () => list.wake() };
    this.#waiters.add(w);
    let failure: { err: unknown } | undefined;
    try {
      await until(() => w.notified, list, deadline, signal);
    } catch (err) {
      failure = { err };
    } finally {
      this.#waiters.delete(w);
    }
    // As Python's: the lock is held again when wait returns, also after a timeout or an abort
    // (unless the caller is gone).
    if (!ctx.gone) await this.#lock._acquireRestore(caller, saved, new AbortController().signal);
    if (failure) throw failure.err;
    return w.notified;
  }
  notify(n = 1): void {
    const { caller } = callContext();
    if (!this.#lock._isOwned(caller)) throw new ProcessError('cannot notify on un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    for (const w of this.#waiters) {
      if (n <= 0) break;
      if (w.notified) continue;
      w.notified = true;
      w.wake();
      n--;
    }
  }
  notifyAll(): void {
    this.notify(Infinity);
  }
}

/** The Event a SyncManager serves. */
export class ManagedEvent {
  #flag = false;
  readonly #list = new WaitList();
  isSet(): boolean {
    return this.#flag;
  }
  set(): void {
    this.#flag = true;
    this.#list.wake();
  }
  clear(): void {
    this.#flag = false;
  }
  wait(timeout?: number | null): boolean | Promise<boolean> {
    if (this.#flag) return true;
    return until(() => this.#flag, this.#list, deadlineOf(timeout), callContext().signal);
  }
}

/** The Barrier a SyncManager serves (Python: `threading.Barrier`). */
export class ManagedBarrier {
  readonly #parties: number;
  readonly #action: (() => unknown) | null;
  readonly #timeout: number | null;
  #count = 0;
  #generation = 0;
  #broken = false;
  readonly #brokenGenerations = new Set<number>();
  readonly #list = new WaitList();
  constructor(parties: number, action?: (() => unknown) | null, timeout?: number | null) {
    if (!Number.isInteger(parties) || parties < 1) throw new ValueError('parties must be an integer >= 1');
    this.#parties = parties;
    this.#action = action ?? null;
    this.#timeout = timeout ?? null;
  }
  async wait(timeout?: number | null): Promise<number> {
    const { signal } = callContext();
    if (this.#broken) throw new BrokenBarrierError();
    const gen = this.#generation;
    const index = this.#count++;
    if (index === this.#parties - 1) {
      try {
        if (this.#action) await this.#action();
      } catch (err) {
        this.#break();
        throw err;
      }
      this.#count = 0;
      this.#generation++;
      this.#list.wake();
      return index;
    }
    let ok: boolean;
    try {
      ok = await until(() => this.#generation !== gen || this.#broken, this.#list, deadlineOf(timeout ?? this.#timeout), signal);
    } catch (err) {
      if (this.#generation === gen) this.#break();
      throw err;
    }
    if (this.#generation !== gen && !this.#brokenGenerations.has(gen)) return index;
    if (!ok) this.#break();
    throw new BrokenBarrierError();
  }
  #break(): void {
    this.#broken = true;
    this.#brokenGenerations.add(this.#generation);
    this.#count = 0;
    this.#list.wake();
  }
  reset(): void {
    if (this.#count > 0) {
      this.#brokenGenerations.add(this.#generation);
      this.#generation++;
    }
    this.#count = 0;
    this.#broken = false;
    this.#list.wake();
  }
  abort(): void {
    this.#break();
  }
  parties(): number {
    return this.#parties;
  }
  nWaiting(): number {
    return this.#count;
  }
  broken(): boolean {
    return this.#broken;
  }
}

/** The Queue a SyncManager serves (Python: `queue.Queue` in the server). */
export class ManagedQueue {
  readonly #items: unknown[] = [];
  readonly #maxsize: number;
  readonly #notEmpty = new WaitList();
  readonly #notFull = new WaitList();
  constructor(maxsize = 0) {
    if (!Number.isInteger(maxsize)) throw new ValueError('maxsize must be an integer');
    this.#maxsize = maxsize;
  }
  #isFull(): boolean {
    return this.#maxsize > 0 && this.#items.length >= this.#maxsize;
  }
  #push(item: unknown): void {
    this.#items.push(item);
    this._added();
    this.#notEmpty.wake();
  }
  /** @internal */
  _added(): void {}
  put(item: unknown, options?: ProxyWaitOptions): void | Promise<void> {
    const { block, deadline } = blockAndDeadline(options);
    if (!this.#isFull()) {
      this.#push(item);
      return;
    }
    if (!block) throw new Full();
    return until(() => !this.#isFull(), this.#notFull, deadline, callContext().signal).then((ok) => {
      if (!ok) throw new Full();
      this.#push(item);
    });
  }
  putNowait(item: unknown): void {
    void this.put(item, { block: false });
  }
  get(options?: ProxyWaitOptions): unknown {
    const { block, deadline } = blockAndDeadline(options);
    const take = (): unknown => {
      const v = this.#items.shift();
      this.#notFull.wake();
      return v;
    };
    if (this.#items.length) return take();
    if (!block) throw new Empty();
    return until(() => this.#items.length > 0, this.#notEmpty, deadline, callContext().signal).then((ok) => {
      if (!ok) throw new Empty();
      return take();
    });
  }
  getNowait(): unknown {
    return this.get({ block: false });
  }
  qsize(): number {
    return this.#items.length;
  }
  empty(): boolean {
    return this.#items.length === 0;
  }
  full(): boolean {
    return this.#isFull();
  }
}

/** The JoinableQueue a SyncManager serves. */
export class ManagedJoinableQueue extends ManagedQueue {
  #unfinished = 0;
  readonly #allDone = new WaitList();
  override _added(): void {
    this.#unfinished++;
  }
  taskDone(): void {
    if (this.#unfinished <= 0) throw new ValueError('task_done() called too many times');
    if (--this.#unfinished === 0) this.#allDone.wake();
  }
  join(timeout?: number | null): boolean | Promise<boolean> {
    if (this.#unfinished === 0) return true;
    return until(() => this.#unfinished === 0, this.#allDone, deadlineOf(timeout), callContext().signal);
  }
}
