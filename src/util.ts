// Small helpers shared by every layer (Python: `multiprocessing.util`): deadlines, the work a
// process finishes before it exits, and type guards. It imports nothing of the library but errors.
import { AbortError, InvalidArgumentError } from './errors.js';

/** An authkey: bytes, or a string taken as its UTF-8 bytes. */
export type Authkey = Uint8Array | ArrayBuffer | string;

/**
 * The bytes of `authkey` (a copy), or undefined for undefined/null.
 * @throws InvalidArgumentError when it is neither bytes nor a string; `what` names the caller.
 */
export function authkeyBytes(authkey: Authkey | null | undefined, what: string): Buffer | undefined {
  if (authkey === undefined || authkey === null) return undefined;
  if (typeof authkey === 'string') return Buffer.from(authkey, 'utf8');
  if (authkey instanceof Uint8Array) return Buffer.from(authkey);
  if (authkey instanceof ArrayBuffer) return Buffer.from(new Uint8Array(authkey));
  throw new InvalidArgumentError(`${what}: authkey must be bytes (Buffer, Uint8Array, ArrayBuffer) or a string`);
}

/** Whether `x` can be iterated with `for await`. */
export function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return x !== null && typeof x === 'object' && typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

/**
 * A function or a class: what crosses a process boundary by reference (a target, a registered
 * type, a proxy type). Classes have no call signature, so neither half alone covers both.
 */
export type FunctionOrClass = ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown);

/** Whether `x` is a function or a class (both are `typeof 'function'`). */
export function isFunctionOrClass(x: unknown): x is FunctionOrClass {
  return typeof x === 'function';
}

/** Whether `v` is a Promise or another thenable. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

// ---------------------------------------------------------------------------------------------
// Deadlines: every wait converts its timeout (ms) once, then asks how much is left.

/** Where a wait gives up: an absolute time (performance.now()), or Infinity. */
export type Deadline = number;

/** The deadline of a wait of `timeoutMs` (undefined or Infinity: never; negative: now). */
export function deadlineOf(timeoutMs: number | undefined): Deadline {
  return timeoutMs === undefined || timeoutMs === Infinity ? Infinity : performance.now() + Math.max(0, timeoutMs);
}

/** The deadline of a wait of `timeout` ms. @throws InvalidArgumentError when it is not a number. */
export function checkTimeout(timeout: number | undefined, what: string): Deadline {
  if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout)))
    throw new InvalidArgumentError(`${what}: timeout must be a number of milliseconds`);
  return deadlineOf(timeout);
}

/** Milliseconds left before `deadline` (0 when past), or undefined for no deadline. */
export function remaining(deadline: Deadline): number | undefined {
  return deadline === Infinity ? undefined : Math.max(0, deadline - performance.now());
}

/**
 * @internal Park a caller on an event-loop wait list: `enter(wake)` registers it and returns how
 * to unregister it (run once, whichever way the wait ends). Resolves true once `wake` runs, false
 * at the deadline; rejects with AbortError (cause: the reason) when `signal` aborts.
 */
export function parked(deadline: Deadline, signal: AbortSignal | undefined, enter: (wake: () => void) => () => void): Promise<boolean> {
  if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
  if (deadline <= performance.now()) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      leave();
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      done();
      reject(new AbortError(undefined, { cause: signal!.reason }));
    };
    const leave = enter(() => {
      done();
      resolve(true);
    });
    if (deadline !== Infinity) {
      timer = setTimeout(
        () => {
          done();
          resolve(false);
        },
        Math.max(0, deadline - performance.now()),
      );
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Exit tasks (Python: the finalizers `util._exit_function` runs): work a child finishes before
// it exits, such as flushing messages still being sent.

const exitTasks: (() => Promise<void>)[] = [];

/** @internal Run `task` (and wait for it) before this process or thread exits. */
export function registerExitTask(task: () => Promise<void>): void {
  exitTasks.push(task);
}

/** @internal Run every exit task, in the order they were registered. */
export async function runExitTasks(): Promise<void> {
  for (const task of exitTasks) await task();
}
