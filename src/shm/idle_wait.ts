// Waiting on a cell whose answer is likely to come soon (the reply right after a request, the
// next message of a stream), without the cost of an asynchronous wait's wake-up: an
// asynchronous wait is parked on a waiter thread, which the waker's FUTEX_WAKE schedules, which
// then wakes the event loop through its eventfd — two thread switches before JavaScript runs.
// Blocking the calling thread in the futex costs one, as a blocking read of a pipe does.
//
// Blocking is only done when it takes nothing from the program: the addon checks that the event
// loop has no I/O ready, no callback pending and no timer due (else it answers 'busy'), and the
// wait is bounded (IDLE_WAIT_US), so that whatever arrives meanwhile waits no longer than that.
// A blocked thread uses no CPU. When the answer did not come within the bound, the next waits
// at this place skip the blocking part (1, 2, 4 ... up to MAX_SKIP of them), so a wait that is
// usually long costs the bound only rarely; one answered in time resets that.
import { futexWaitIdle, futexWaitIdleAny, type WaitOutcome } from './native.js';

/** µs a wait blocks before parking asynchronously; MULTIPROC_IDLE_WAIT_US tunes it (0: never). */
export const IDLE_WAIT_US = idleWaitUs(process.env.MULTIPROC_IDLE_WAIT_US);
const MAX_SKIP = 64;

function idleWaitUs(text: string | undefined): number {
  const n = Number(text ?? 200);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** The blocking first part of waits made at one place (one per ring end or primitive). */
export class IdleWait {
  #skip = 0;
  #backoff = 0;

  /**
   * Block while `cells[index] === expected`, for at most IDLE_WAIT_US and only while this
   * thread's event loop is idle. True when the cell may have changed (re-check it); false when
   * the caller should park its wait asynchronously. `leftMs` (the caller's deadline) caps it.
   */
  wait(cells: Int32Array, index: number, expected: number, leftMs?: number): boolean {
    return (
      !this.#skipping() &&
      this.#settle(futexWaitIdle(cells, index, expected, leftMs === undefined ? IDLE_WAIT_US : Math.min(IDLE_WAIT_US, leftMs * 1000)))
    );
  }

  /**
   * wait() on several cells at once (`cells[k][indices[k]]` holding `expected[k]`): true when
   * any may have changed (re-check them all), false when the caller should park asynchronously
   * (also where the kernel cannot wait on several cells: see futexWaitIdleAny).
   */
  waitAny(cells: Int32Array[], indices: number[], expected: number[]): boolean {
    return !this.#skipping() && this.#settle(futexWaitIdleAny(cells, indices, expected, IDLE_WAIT_US));
  }

  // Whether this wait goes straight to the asynchronous part (off, or backing off after timeouts).
  #skipping(): boolean {
    if (IDLE_WAIT_US === 0) return true;
    if (this.#skip === 0) return false;
    this.#skip--;
    return true;
  }

  #settle(outcome: WaitOutcome | 'busy'): boolean {
    if (outcome === 'ok' || outcome === 'not-equal') {
      this.#backoff = 0;
      return true;
    }
    if (outcome === 'timed-out') {
      this.#backoff = Math.min(MAX_SKIP, this.#backoff * 2 || 1);
      this.#skip = this.#backoff;
    }
    return false;
  }
}
