// The checks of `new Pool(options)`: everything is refused before any worker starts.
import { InvalidArgumentError } from '../errors.js';
import { cpuCount } from '../platform.js';
import { defaultStartMethod, isStartMethod } from '../popen/methods.js';
import { processClassFor, type ContextLike, type StartMethod } from '../process.js';
import { checkPoolObservers, type PoolOptions } from './progress.js';
import type { AnyFn } from './tasks.js';

/** What the pool keeps of its options once they are checked. */
export interface CheckedPoolOptions {
  size: number;
  initializer: AnyFn | null;
  initargs: readonly unknown[];
  maxtasks: number | null;
}

/** @throws InvalidArgumentError for a bad size, initializer, initargs, maxtasksperchild or observer. */
export function checkPoolOptions(o: PoolOptions): CheckedPoolOptions {
  const size = o.processes ?? cpuCount();
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1)
    throw new InvalidArgumentError(`Pool(processes): the number of processes must be an integer >= 1, got ${String(size)}`);
  if (o.initializer != null && typeof o.initializer !== 'function')
    throw new InvalidArgumentError('Pool({ initializer }): initializer must be a function');
  const initargs = o.initargs ?? [];
  if (!Array.isArray(initargs)) throw new InvalidArgumentError('Pool({ initargs }): initargs must be an array');
  const maxtasks = o.maxtasksperchild ?? null;
  if (maxtasks !== null && (typeof maxtasks !== 'number' || !Number.isInteger(maxtasks) || maxtasks < 1))
    throw new InvalidArgumentError('Pool({ maxtasksperchild }): maxtasksperchild must be an integer >= 1');
  checkPoolObservers(o);
  return { size, initializer: o.initializer ?? null, initargs, maxtasks };
}

/**
 * The context a pool starts its workers with: the one given, or one for the start method given,
 * else `fallback` (ThreadPool's 'thread'), else the platform's default.
 * @throws InvalidArgumentError for anything else.
 */
export function resolveContext(c: ContextLike | StartMethod | undefined, fallback: StartMethod | undefined): ContextLike {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof c === 'object' && c !== null && typeof c.getStartMethod === 'function' && typeof c.Process === 'function') return c;
  const method = c ?? fallback ?? defaultStartMethod();
  if (!isStartMethod(method))
    throw new InvalidArgumentError("Pool({ context }): context must be a context (getContext('spawn')) or a start method name");
  return { Process: processClassFor(method), getStartMethod: () => method };
}
