// The algorithms every synchronization primitive is made of: a mutex, a counting semaphore and a
// condition variable, each a few Int32 cells of a shared segment, driven by Atomics and woken by
// the addon's non-private futex so that any process or thread mapping the cells takes part.
// Waiting is asynchronous (a waiter thread parks it); the uncontended paths are a single CAS.
import { AbortError, InvalidArgumentError } from '../errors.js';
import { pidAlive } from '../platform.js';
import { futexWaitAsync, futexWake } from './native.js';

/** Where a wait gives up: an absolute time (performance.now()), or Infinity. */
export type Deadline = number;

export function deadlineOf(timeoutMs: number | undefined): Deadline {
  return timeoutMs === undefined || timeoutMs === Infinity ? Infinity : performance.now() + Math.max(0, timeoutMs);
}

/** The deadline of a wait of `timeout` ms. @throws InvalidArgumentError when it is not a number. */
export function checkTimeout(timeout: number | undefined, what: string): Deadline {
  if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout))) throw new InvalidArgumentError(`${what}: timeout must be a number of milliseconds`);
  return deadlineOf(timeout);
}

export function remaining(deadline: Deadline): number | undefined {
  return deadline === Infinity ? undefined : Math.max(0, deadline - performance.now());
}

// While a mutex's owner is a live process, waiters sleep in slices of this length and then check
// whether the owner died holding it (a SIGKILLed process cannot release anything).
const OWNER_CHECK_MS = 500;
// How long an acquire spins on a contended mutex before parking: a holder in another process
// often releases within microseconds, and parking costs a thread hop each way.
const SPIN = 64;

/** This thread's identity as an owner: pid, and the thread id within the process (from 1). */
export const ME_PID = process.pid;
let tid = 0;
export function meTid(): number {
  // Loaded on first use: node:worker_threads costs every child process ~5 ms of start-up.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (tid === 0) tid = (require('node:worker_threads') as typeof import('node:worker_threads')).threadId + 1;
  return tid;
}

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
    throwIfAborted(signal);
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

// The owner process is gone: take the mutex over, still locked, as a robust futex does.
function recoverFromDeadOwner(c: Int32Array, i: number): boolean {
  const pid = Atomics.load(c, i + 1);
  if (pid === 0 || pid === ME_PID || Atomics.load(c, i) === 0 || pidAlive(pid)) return false;
  if (Atomics.compareExchange(c, i + 1, pid, ME_PID) !== pid) return false;
  Atomics.store(c, i + 2, meTid());
  process.emitWarning(`multiproc: a lock held by process ${pid}, which died, was recovered by process ${ME_PID}`, { code: 'MULTIPROC_LOCK_RECOVERED' });
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
    throwIfAborted(signal);
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
// Condition variable: cells [seq, waiters, tokens]. A waiter counts itself in `waiters`; notify(n)
// moves up to n of that count into `tokens` and bumps `seq`; a waiter leaves by taking a token
// (notified) or, on timeout, by taking its count back from `waiters`. waiters + tokens always
// equals the number of waiters, so neither exit can fail for long. A waiter that arrives after a
// notify may take a token meant for an earlier one; the earlier one then waits for the next
// notify, which only looks like a spurious wake-up to the late one.

export const COND_CELLS = 3;

/** Count the caller in; call before releasing the lock that protects the condition. */
export function condEnter(c: Int32Array, i: number): void {
  Atomics.add(c, i + 1, 1);
}

/** After condEnter and releasing the lock: resolves true when notified, false on timeout. */
export async function condWait(c: Int32Array, i: number, deadline: Deadline, signal?: AbortSignal): Promise<boolean> {
  for (;;) {
    const seq = Atomics.load(c, i);
    if (takeOne(c, i + 2)) return true;
    const left = remaining(deadline);
    if (left === 0 || signal?.aborted) {
      // Leave: give our count back, or if a notify already took it, take the token it left.
      // Between a notifier's two steps both can read 0 for a moment: yield, never spin hot.
      for (let n = 0; ; n++) {
        if (takeOne(c, i + 1)) {
          throwIfAborted(signal);
          return false;
        }
        if (takeOne(c, i + 2)) return true;
        if (n > 100) await new Promise((r) => setTimeout(r, 1));
      }
    }
    try {
      await futexWaitAsync(c, i, seq, left, signal);
    } catch (err) {
      // Aborted: the next turn leaves through the timeout path, keeping the counts right.
      if (!(err instanceof AbortError)) throw err;
    }
  }
}

function takeOne(c: Int32Array, j: number): boolean {
  let v = Atomics.load(c, j);
  while (v > 0) {
    const seen = Atomics.compareExchange(c, j, v, v - 1);
    if (seen === v) return true;
    v = seen;
  }
  return false;
}

/** Wake up to `n` waiters (all with Infinity); returns how many were signalled. */
export function condNotify(c: Int32Array, i: number, n: number): number {
  let w = Atomics.load(c, i + 1);
  let k: number;
  for (;;) {
    k = Math.min(n, w);
    if (k <= 0) return 0;
    const seen = Atomics.compareExchange(c, i + 1, w, w - k);
    if (seen === w) break;
    w = seen;
  }
  Atomics.add(c, i + 2, k);
  Atomics.add(c, i, 1);
  futexWake(c, i, k);
  return k;
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
