// Options of a Redis pool, and how a call's own options (timeout, signal) stop waiting for it.
import { AbortError, TimeoutError } from '../errors.js';
import type { CallOptions, Progress, TaskTiming } from '../pool/progress.js';

/** Options of a Redis pool. */
export interface RedisPoolOptions {
  /** redis:// or rediss:// URL; user, password and TLS go in it. Default redis://127.0.0.1:6379. */
  url?: string;
  /** Keys live under `mp:{namespace}:`; workers of the same namespace serve this pool. Default 'default'. */
  namespace?: string;
  /** Local worker processes to start (0: only remote workers serve the pool). Default 1. */
  processes?: number;
  /** Modules the local workers import at start (they also learn each module a call names). */
  modules?: readonly (string | URL)[];
  /** A chunk a worker holds longer without renewing goes to another worker. Default 5000 ms. */
  leaseMs?: number;
  /** Deliveries of one chunk before it fails with WorkerLostError. Default 3. */
  maxDeliveries?: number;
  /** How long the server may stay unreachable before waiting calls fail. Default max(4 leases, 10 s). */
  giveUpMs?: number;
  /** Run in each local worker before its first task: an export of a module (JSON `initargs`). */
  initializer?: AnyFn | null;
  /** Arguments for `initializer`: JSON data (they cross on a command line). */
  initargs?: readonly unknown[];
  /** Progress over every call of the pool: `total` is the number of items handed to it so far. */
  onProgress?: ((p: Progress) => void) | null;
  /** Called after every task of every call with its timing. */
  onTask?: ((t: TaskTiming) => void) | null;
}

export type AnyFn = (...args: never[]) => unknown;

/** A call's timeout and signal as a promise that rejects (TimeoutError, AbortError), and what removes them. */
export function stopper(o: CallOptions | undefined): [Promise<never>, () => void] {
  let cleanup = (): void => undefined;
  const guard = new Promise<never>((_, reject) => {
    const t =
      o?.timeout !== undefined
        ? setTimeout(() => reject(new TimeoutError(`the call did not finish within ${o.timeout} ms`)), o.timeout)
        : undefined;
    const onAbort = (): void => reject(new AbortError(undefined, { cause: o?.signal?.reason }));
    if (o?.signal?.aborted) onAbort();
    o?.signal?.addEventListener('abort', onAbort, { once: true });
    cleanup = () => {
      clearTimeout(t);
      o?.signal?.removeEventListener('abort', onAbort);
    };
  });
  return [guard, cleanup];
}
