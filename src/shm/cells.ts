// The algorithms every synchronization primitive is made of: a mutex, a counting semaphore and a
// condition variable, each a few Int32 cells of a shared segment, driven by Atomics and woken by
// the addon's non-private futex so that any process or thread mapping the cells takes part.
// Waiting is asynchronous (a waiter thread parks it); the uncontended paths are a single CAS.
import { AbortError, ProcessError } from '../errors.js';
import { remaining, type Deadline } from '../util.js';
import { holderAlive, meTid } from './threads.js';
import { futexWaitAsync, futexWake } from './native.js';

// While a mutex's owner is a live process, waiters sleep in slices of this length and then check
// whether the owner died holding it (a SIGKILLed process cannot release anything).
const OWNER_CHECK_MS = 500;
// How long an acquire spins on a contended mutex before parking: a holder in another process
// often releases within microseconds, and parking costs a thread hop each way.
const SPIN = 64;

/** This thread's identity as an owner: pid, and the thread id within the process (from 1). */
export const ME_PID = process.pid;
export { meTid };

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
}

// ---------------------------------------------------------------------------------------------
// Mutex: cells [state, ownerPid, ownerTid]. state 0 free, 1 locked, 2 locked with waiters
// (Drepper, "Futexes Are Tricky", mutex 3). The owner is recorded so that a lock whose holder
// died can be recovered, and so that RLock and Condition can tell who holds it.

export const MUTEX_CELLS = 3;

export function mutexTryLock(c: Int32Array, i: number): boolean {
  if (Atomics.compareExchange(c, i, 0, 1) !== 0) return false;
  Atomics.store(c, i + 1, ME_PID);
  Atomics.store(c, i + 2, meTid());
  return true;
}

/** Acquire; resolves false when the deadline passed first. */
export async function mutexLock(c: Int32Array, i: number, deadline: Deadline, signal?: AbortSignal): Promise<boolean> {
  for (let n = 0; n < SPIN; n++) {
    if (Atomics.load(c, i) === 0 && mutexTryLock(c, i)) return true;
  }
  for (;;) {
    if (signal?.aborted) {
      // An unlock may have woken us as the abort came: pass its wake-up on.
      if (Atomics.load(c, i) === 0) futexWake(c, i, 1);
      throwIfAborted(signal);
    }
    if (Atomics.exchange(c, i, 2) === 0) {
      Atomics.store(c, i + 1, ME_PID);
      Atomics.store(c, i + 2, meTid());
      return true;
    }
    const left = remaining(deadline);
    if (left === 0) return false;
    const slice = left === undefined ? OWNER_CHECK_MS : Math.min(left, OWNER_CHECK_MS);
    const outcome = await futexWaitAsync(c, i, 2, slice, signal);
    if (outcome === 'timed-out' && recoverFromDeadOwner(c, i)) return true;
  }
}

// The owner (a process, or a thread of this one) is gone: take the mutex over, still locked, as
// a robust futex does.
function recoverFromDeadOwner(c: Int32Array, i: number): boolean {
  const pid = Atomics.load(c, i + 1);
  const thread = Atomics.load(c, i + 2);
  if (pid === 0 || Atomics.load(c, i) === 0 || holderAlive(pid, thread)) return false;
  if (pid === ME_PID) {
    // A dead thread of this process: the thread cell decides between recovering threads.
    if (Atomics.compareExchange(c, i + 2, thread, meTid()) !== thread) return false;
  } else {
    if (Atomics.compareExchange(c, i + 1, pid, ME_PID) !== pid) return false;
    Atomics.store(c, i + 2, meTid());
  }
  const who = pid === ME_PID ? `thread ${thread - 1} of this process` : `process ${pid}`;
  process.emitWarning(`multiproc: a lock held by ${who}, which died, was recovered by process ${ME_PID}`, {
    code: 'MULTIPROC_LOCK_RECOVERED',
  });
  return true;
}

/** Release; false when it was not locked. */
export function mutexUnlock(c: Int32Array, i: number): boolean {
  if (Atomics.load(c, i) === 0) return false;
  Atomics.store(c, i + 1, 0);
  Atomics.store(c, i + 2, 0);
  if (Atomics.sub(c, i, 1) !== 1) {
    Atomics.store(c, i, 0);
    futexWake(c, i, 1);
  }
  return true;
}

export function mutexIsMine(c: Int32Array, i: number): boolean {
  return Atomics.load(c, i) !== 0 && Atomics.load(c, i + 1) === ME_PID && Atomics.load(c, i + 2) === meTid();
}

// ---------------------------------------------------------------------------------------------
// Counting semaphore: cells [value, waiters, max]; max 0 means unbounded.

export const SEM_CELLS = 3;

export function semTryAcquire(c: Int32Array, i: number): boolean {
  let v = Atomics.load(c, i);
  while (v > 0) {
    const seen = Atomics.compareExchange(c, i, v, v - 1);
    if (seen === v) return true;
    v = seen;
  }
  return false;
}

export async function semAcquire(c: Int32Array, i: number, deadline: Deadline, signal?: AbortSignal): Promise<boolean> {
  for (let n = 0; n < SPIN; n++) if (semTryAcquire(c, i)) return true;
  for (;;) {
    if (signal?.aborted) {
      // A release may have woken us as the abort came: pass its wake-up on to another waiter.
      if (Atomics.load(c, i) > 0 && Atomics.load(c, i + 1) > 0) futexWake(c, i, 1);
      throwIfAborted(signal);
    }
    if (semTryAcquire(c, i)) return true;
    const left = remaining(deadline);
    if (left === 0) return false;
    Atomics.add(c, i + 1, 1);
    try {
      await futexWaitAsync(c, i, 0, left, signal);
    } finally {
      Atomics.sub(c, i + 1, 1);
    }
  }
}

/** Add `n`; false (and no change) when a bounded semaphore would exceed its maximum. */
export function semRelease(c: Int32Array, i: number, n = 1): boolean {
  const max = Atomics.load(c, i + 2);
  if (max > 0) {
    let v = Atomics.load(c, i);
    for (;;) {
      if (v + n > max) return false;
      const seen = Atomics.compareExchange(c, i, v, v + n);
      if (seen === v) break;
      v = seen;
    }
  } else {
    Atomics.add(c, i, n);
  }
  if (Atomics.load(c, i + 1) > 0) futexWake(c, i, n);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Condition variable: cells [seq, ticket, then COND_SLOTS x (state, ticket)]. A waiter takes a
// slot while it holds the condition's lock (state WAITING, with the next ticket); notify(n),
// also under the lock, marks the n oldest waiting slots SIGNALLED and wakes everyone on `seq`;
// each waiter checks only its own slot. So a notify wakes exactly the waiters present when it
// was called, oldest first, and a waiter that times out withdraws its slot (a notify cannot be
// spent on it). The price is a bounded number of simultaneous waiters per condition.

/** Most waiters one condition (or barrier) can have at once. */
export const COND_SLOTS = 256;
export const COND_CELLS = 2 + 2 * COND_SLOTS;
const FREE = 0;
const WAITING = 1;
const SIGNALLED = 2;

/**
 * Register as a waiter; call with the lock held, before releasing it. Returns the slot to pass
 * to condWait. @throws ProcessError ERR_MP_TOO_MANY_WAITERS past COND_SLOTS waiters.
 */
export function condEnter(c: Int32Array, i: number): number {
  const ticket = Atomics.add(c, i + 1, 1);
  for (let s = 0; s < COND_SLOTS; s++) {
    const at = i + 2 + 2 * s;
    if (Atomics.compareExchange(c, at, FREE, WAITING) === FREE) {
      Atomics.store(c, at + 1, ticket);
      return at;
    }
  }
  throw new ProcessError(`more than ${COND_SLOTS} waiters on one condition at once`, { code: 'ERR_MP_TOO_MANY_WAITERS' });
}

/** After condEnter and releasing the lock: resolves true when notified, false on timeout. */
export async function condWait(c: Int32Array, i: number, slot: number, deadline: Deadline, signal?: AbortSignal): Promise<boolean> {
  for (;;) {
    const seq = Atomics.load(c, i);
    if (Atomics.load(c, slot) === SIGNALLED) {
      Atomics.store(c, slot, FREE);
      return true;
    }
    const left = remaining(deadline);
    if (left === 0 || signal?.aborted) {
      // Withdraw, unless a notify got there first: then we were notified after all.
      if (Atomics.compareExchange(c, slot, WAITING, FREE) === WAITING) {
        throwIfAborted(signal);
        return false;
      }
      Atomics.store(c, slot, FREE);
      return true;
    }
    try {
      await futexWaitAsync(c, i, seq, left, signal);
    } catch (err) {
      // Aborted: the next turn withdraws through the timeout path.
      if (!(err instanceof AbortError)) throw err;
    }
  }
}

/** How many are waiting on the condition now. */
export function condWaiters(c: Int32Array, i: number): number {
  let n = 0;
  for (let s = 0; s < COND_SLOTS; s++) if (Atomics.load(c, i + 2 + 2 * s) === WAITING) n++;
  return n;
}

/** Wake the `n` longest-waiting waiters (call with the lock held); returns how many. */
export function condNotify(c: Int32Array, i: number, n: number): number {
  if (n <= 0) return 0;
  const waiting: [ticket: number, at: number][] = [];
  for (let s = 0; s < COND_SLOTS; s++) {
    const at = i + 2 + 2 * s;
    if (Atomics.load(c, at) === WAITING) waiting.push([Atomics.load(c, at + 1), at]);
  }
  if (waiting.length === 0) return 0;
  // Oldest first; tickets wrap, so compare by difference.
  waiting.sort((a, b) => (a[0] - b[0]) | 0);
  let woken = 0;
  for (const [, at] of waiting) {
    if (woken >= n) break;
    // A waiter timing out at this moment withdraws first; then the next one is taken.
    if (Atomics.compareExchange(c, at, WAITING, SIGNALLED) === WAITING) woken++;
  }
  if (woken) wakeAll(c, i);
  return woken;
}

/** Bump `seq` and wake everyone waiting on it (for flag-style waits such as Event). */
export function wakeAll(c: Int32Array, i: number): void {
  Atomics.add(c, i, 1);
  futexWake(c, i);
}

/** Wait until `seq` moves past `seen`, or the deadline; false on timeout. */
export async function waitSeq(c: Int32Array, i: number, seen: number, deadline: Deadline, signal?: AbortSignal): Promise<boolean> {
  const left = remaining(deadline);
  if (left === 0) return Atomics.load(c, i) !== seen;
  const outcome = await futexWaitAsync(c, i, seen, left, signal);
  return outcome !== 'timed-out' || Atomics.load(c, i) !== seen;
}
