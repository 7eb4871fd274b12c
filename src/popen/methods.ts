// The registry of start methods (Python: the concrete contexts of `multiprocessing.context` and
// their `_Popen`): each name maps to the module of this folder that starts a child that way,
// loaded on first use (node:worker_threads alone costs a child ~5 ms of start-up). A new start
// method is one file here and one line in METHODS. The default method lives here too, so that
// Process (which starts children) and the contexts (which choose the method) both sit above it.
import type { ChildConfig, Popen, StartMethod } from './popen.js';

type Starter = (payload: Uint8Array, config: ChildConfig) => Popen;

/* eslint-disable @typescript-eslint/no-require-imports -- each method loads when first used, see above */
const METHODS: Readonly<Record<StartMethod, () => Starter>> = {
  spawn: () => (require('./spawn.js') as typeof import('./spawn.js')).startSpawn,
  thread: () => (require('./thread.js') as typeof import('./thread.js')).startThread,
  forkserver: () => (require('./forkserver.js') as typeof import('./forkserver.js')).startForkserver,
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** Every start method this platform supports, the default first. */
export function startMethods(): StartMethod[] {
  return Object.keys(METHODS) as StartMethod[];
}

/** Whether `x` names a start method. */
export function isStartMethod(x: unknown): x is StartMethod {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(METHODS, x);
}

/** Start a child with `method`: it rebuilds its Process from `payload` and runs it. */
export function startChild(method: StartMethod, payload: Uint8Array, config: ChildConfig): Popen {
  return METHODS[method]()(payload, config);
}

let chosen: StartMethod | undefined;

/** The default start method, or undefined while none was chosen or asked for. */
export function chosenStartMethod(): StartMethod | undefined {
  return chosen;
}

/** Set (or with undefined, forget) the default start method. Checks are the caller's. */
export function chooseStartMethod(method: StartMethod | undefined): void {
  chosen = method;
}

/**
 * The method a child of the default context is started with. As in Python, asking fixes it:
 * a later setStartMethod() without `force` then fails.
 */
export function defaultStartMethod(): StartMethod {
  chosen ??= 'spawn';
  return chosen;
}
