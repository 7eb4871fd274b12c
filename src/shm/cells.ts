// The algorithms every synchronization primitive is made of: a mutex, a counting semaphore and a
// condition variable, each a few Int32 cells of a shared segment, driven by Atomics and woken by
// the addon's non-private futex so that any process or thread mapping the cells takes part.
// Waiting is asynchronous (a waiter thread parks it), after a short blocking wait while the event
// loop is idle (idle_wait.ts); the uncontended paths are a single CAS.
import { AbortError, ProcessError } from '../errors.js';
import { remaining, type Deadline } from '../util.js';
import { taskProcess } from '../platform.js';
import { meOwner, meOwnerStart, ownerAlive } from './threads.js';
import { IdleWait } from './idle_wait.js';
import { futexWaitAsync, futexWake } from './native.js';

// While a mutex's owner is alive, waiters sleep in slices and then check whether it died holding
// the mutex (a SIGKILLed process cannot release anything). The first slice is short, so that a
// lock left by a holder that is already dead is taken over quickly; later ones are longer.
const FIRST_OWNER_CHECK_MS = 50;
const OWNER_CHECK_MS = 500;
// How long an acquire spins on a contended mutex before parking: a holder in another process
// often releases within microseconds, and parking costs a thread hop each way.
const SPIN = 64;
// The blocking first part of waits, one per kind of wait (see idle_wait.ts).
const mutexIdle = new IdleWait();
const semIdle = new IdleWait();
const condIdle = new IdleWait();
const seqIdle = new IdleWait();

/** This process's pid (a thread's identity as an owner is its kernel thread id: see threads.ts). */
export const ME_PID = process.pid;

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
}

// ---------------------------------------------------------------------------------------------
// Mutex: cells [word, ownerPid, ownerStart]. The word is 0 when free, else the owner's kernel
// thread id, with WAITERS set once someone sleeps on it: the owner is set by the same CAS that
// takes the lock, as in a robust futex, so a holder killed at any instruction leaves a word that
// names it, and a waiter can tell that it died and take the lock over. ownerPid and ownerStart
// are written after the CAS, ownerPid last, and ownerPid is cleared before the release: when it
// is set, ownerStart is the start time of the word's owner, which tells that thread from a later
// one given the same id. Otherwise the algorithm is Drepper's mutex ("Futexes Are Tricky").

export const MUTEX_CELLS = 3;
const WAITERS = 0x40000000;
const OWNER = 0x3fffffff;

export function mutexTryLock(c: Int32Array, i: number): boolean {
  const me = meOwner();
  if (Atomics.compareExchange(c, i, 0, me) !== 0) return false;
  noteOwner(c, i);
  return true;
}

function noteOwner(c: Int32Array, i: number): void {
  Atomics.store(c, i + 2, meOwnerStart());
  Atomics.store(c, i + 1, ME_PID);
}

/** Acquire; resolves false when the deadline passed first. */
export async function mutexLock(c: Int32Array, i: number, deadline: Deadline, signal?: AbortSignal): Promise<boolean> {
  for (let n = 0; n < SPIN; n++) {
    if (Atomics.load(c, i) === 0 && mutexTryLock(c, i)) return true;
  }
  const me = meOwner();
  let slice = FIRST_OWNER_CHECK_MS;
  for (;;) {
    if (signal?.aborted) {
      // An unlock may have woken us as the abort came: pass its wake-up on.
      if (Atomics.load(c, i) === 0) futexWake(c, i, 1);
      throwIfAborted(signal);
    }
    let v = Atomics.load(c, i);
    if (v === 0) {
      // Taken with WAITERS set: others may be asleep, and our release must wake one.
      if (Atomics.compareExchange(c, i, 0, me | WAITERS) === 0) {
        noteOwner(c, i);
        return true;
      }
      continue;
    }
    if ((v & WAITERS) === 0) {
      if (Atomics.compareExchange(c, i, v, v | WAITERS) !== v) continue;
      v |= WAITERS;
    }
    const left = remaining(deadline);
    if (left === 0) return false;
    if (!signal?.aborted && mutexIdle.wait(c, i, v, left)) continue;
    const wait = left === undefined ? slice : Math.min(left, slice);
    const outcome = await futexWaitAsync(c, i, v, wait, signal);
    if (outcome === 'timed-out') {
      if (recoverFromDeadOwner(c, i, me)) return true;
      slice = OWNER_CHECK_MS;
    }
  }
}

// The owner is gone: take the mutex over, still locked, as a robust futex does.
function recoverFromDeadOwner(c: Int32Array, i: number, me: number): boolean {
  let v = Atomics.load(c, i);
  const owner = v & OWNER;
  if (owner === 0) return false;
  const pid = Atomics.load(c, i + 1);
  const start = Atomics.load(c, i + 2);
  if (ownerAlive(owner, pid === 0 ? undefined : start)) return false;
  // What was read must still be what is there (a release and a new owner in between would make
  // the start time another thread's). Clearing ownerPid first keeps a third waiter from reading
  // the dead owner's start time as ours; the CAS decides between recovering waiters. Others may
  // be waiting too: WAITERS stays set so that our release wakes one.
  if (Atomics.load(c, i + 1) !== pid || Atomics.load(c, i + 2) !== start) return false;
  Atomics.store(c, i + 1, 0);
  for (;;) {
    const seen = Atomics.compareExchange(c, i, v, me | WAITERS);
    if (seen === v) break;
    // Only a waiter setting WAITERS may have changed it; anything else: not ours to take.
    if ((seen & OWNER) !== owner) return false;
    v = seen;
  }
  noteOwner(c, i);
  const who = pid === ME_PID && owner !== ME_PID ? `thread ${owner} of this process` : describeOwner(owner, pid);
  process.emitWarning(`multiproc: a lock held by ${who}, which died, was recovered by process ${ME_PID}`, {
    code: 'MULTIPROC_LOCK_RECOVERED',
  });
  return true;
}

// "process P" for a process's main thread, "thread T" for another thread of this process,
// "process P thread T" for one of another process.
function describeOwner(tid: number, pid: number): string {
  if (pid === 0) pid = taskProcess(tid) ?? 0;
  if (pid === ME_PID && tid !== ME_PID) return `thread ${tid}`;
  if (pid === 0 || pid === tid) return `process ${tid}`;
  return `process ${pid} thread ${tid}`;
}

/**
 * Who holds the mutex: undefined when nobody, 'me' for the calling thread, else "process P",
 * "thread T" (of this process) or "process P thread T".
 */
export function mutexOwner(c: Int32Array, i: number): string | undefined {
  const owner = Atomics.load(c, i) & OWNER;
  if (owner === 0) return undefined;
  return owner === meOwner() ? 'me' : describeOwner(owner, Atomics.load(c, i + 1));
}

/**
 * Take the mutex if it is free, or take it over if its owner died (with the warning); never
 * waits. For bookkeeping that must not wait behind a dead holder.
 */
export function mutexTryLockOrRecover(c: Int32Array, i: number): boolean {
  return mutexTryLock(c, i) || recoverFromDeadOwner(c, i, meOwner());
}

/** Release; false when it was not locked. Any thread may release (Lock allows it). */
export function mutexUnlock(c: Int32Array, i: number): boolean {
  const me = meOwner();
  Atomics.store(c, i + 1, 0);
  if (Atomics.compareExchange(c, i, me, 0) === me) return true;
  for (;;) {
    const v = Atomics.load(c, i);
    if (v === 0) return false;
    if (Atomics.compareExchange(c, i, v, 0) !== v) continue;
    if (v & WAITERS) futexWake(c, i, 1);
    return true;
  }
}

export function mutexIsMine(c: Int32Array, i: number): boolean {
  if ((Atomics.load(c, i) & OWNER) !== meOwner()) return false;
  // The same id with another start time: a dead thread that had our id before us.
  return Atomics.load(c, i + 1) === 0 || Atomics.load(c, i + 2) === meOwnerStart();
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
      if (!signal?.aborted && semIdle.wait(c, i, 0, left)) continue;
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
    if (!signal?.aborted && condIdle.wait(c, i, seq, left)) continue;
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
  if (!signal?.aborted && seqIdle.wait(c, i, seen, left)) return true;
  const outcome = await futexWaitAsync(c, i, seen, left, signal);
  return outcome !== 'timed-out' || Atomics.load(c, i) !== seen;
}
