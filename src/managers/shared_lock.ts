// The proxy of a manager's Lock. The server keeps the lock's state in shared memory (a
// `multiproc.Lock`, see sync.ts ManagedLock); a proxy in a process of the same machine opens that
// memory on its first call and from then on acquires and releases it there, as the processes of
// a `multiproc.Lock` do: no round trip to the server, and a waiter sleeps in the kernel until the
// holder releases. Elsewhere (a TCP address, no native addon) each call goes to the server, which
// takes the same lock on the caller's behalf, so both kinds of clients exclude each other.
import { ProcessError } from '../errors.js';
import { Lock } from '../sync/synchronize.js';
import { ValueError } from './containers.js';
import { channelEnd, registerProxyType, sharesMemoryWithServer } from './proxy.js';
import { blockAndDeadline, type ProxyWaitOptions } from './sync.js';
import { AcquirerProxy } from './types.js';

const RESOLVED = Promise.resolve();
const RESOLVED_TRUE = Promise.resolve(true);
const RESOLVED_FALSE = Promise.resolve(false);
const dropped = new FinalizationRegistry<() => void>((forget) => forget());

// The lock's shared memory as this process opened it, closed when the connection to the server
// ends: calls then reject with the error the server's other calls get.
//
// An answer that the lock is held is asked again of the server (`remote`) before it is given
// without waiting (`locked()`, `{ block: false }`): a release this process sent the server
// without waiting for it (through a Condition proxy over this lock) may not have run yet, and
// Python's order — that release, then this call — must hold. A waiting acquire needs no such
// check: that release wakes it.
class OpenedLock {
  readonly #lock: Lock;
  readonly #end: AbortSignal;
  readonly #remote: <T>(method: string, args: unknown[]) => Promise<T>;
  constructor(owner: LockProxy, lock: Lock, end: AbortSignal, remote: <T>(method: string, args: unknown[]) => Promise<T>) {
    this.#lock = lock;
    this.#end = end;
    this.#remote = remote;
    const close = (): void => lock.close();
    end.addEventListener('abort', close, { once: true });
    // Once the proxy is collected its listener goes too, so that the Lock can be collected and
    // give its hold on the segment back (the server may have dropped it long before).
    dropped.register(owner, () => end.removeEventListener('abort', close));
  }

  acquire(options: ProxyWaitOptions | undefined): Promise<boolean> {
    if (this.#end.aborted) return Promise.reject(this.#end.reason as Error);
    try {
      // The checks the server's path makes, also when the lock is free.
      if (options !== undefined) blockAndDeadline(options);
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the check's InvalidArgumentError, as a rejection
      return Promise.reject(err);
    }
    if (this.#lock._tryAcquireNow()) return RESOLVED_TRUE;
    const { block, signal } = options ?? {};
    // Python's `timeout=None`, which the server's own path accepts too.
    const timeout = options?.timeout as number | null | undefined;
    if (block === false) return this.#remote('acquire', [{ block: false }]);
    const end = this.#end;
    return this.#lock
      .acquire({
        block,
        timeout: timeout === null ? undefined : timeout,
        signal: signal ? AbortSignal.any([signal, end]) : end,
      })
      .catch((err: unknown) => {
        throw end.aborted && !signal?.aborted ? (end.reason as Error) : err;
      });
  }

  release(): Promise<void> {
    if (this.#end.aborted) return Promise.reject(this.#end.reason as Error);
    try {
      this.#lock.release();
      return RESOLVED;
    } catch (err) {
      // The server's own path says it so (Python: ValueError).
      if (err instanceof ProcessError && err.code === 'ERR_MP_RELEASED_TOO_MANY')
        return Promise.reject(new ValueError('release unlocked lock'));
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what release() threw, as a rejection
      return Promise.reject(err);
    }
  }

  locked(): Promise<boolean> {
    if (this.#end.aborted) return Promise.reject(this.#end.reason as Error);
    return this.#lock.locked() ? this.#remote('locked', []) : RESOLVED_FALSE;
  }
}

/**
 * Proxy of a manager's Lock (Python: `AcquirerProxy` of `threading.Lock`). In a process on the
 * server's machine (Unix socket address), acquire and release act on the lock's shared memory
 * directly, a few hundred nanoseconds when nobody else holds it; elsewhere each is a call to the
 * server. Any process may release it, as Python's `Lock`; a holder that dies is noticed by the
 * next waiter, which takes the lock over within about half a second (with a warning).
 */
export class LockProxy extends AcquirerProxy {
  /** @internal The server methods this proxy calls (`_shared`: the lock's shared memory). */
  static readonly _exposed_ = ['acquire', 'release', 'locked', '_shared'];
  // undefined: not asked yet; null: calls go to the server.
  #opened: OpenedLock | null | undefined;
  #opening: Promise<OpenedLock | null> | undefined;

  /**
   * Resolves true once acquired; false with `{ block: false }` or after `timeout` ms.
   * @throws AbortError when `signal` aborts; ProcessError ERR_MP_MANAGER_CONNECTION when the manager is gone.
   */
  override acquire(options?: ProxyWaitOptions): Promise<boolean> {
    const o = this.#opened;
    if (o) return o.acquire(options);
    if (o === null) return super.acquire(options);
    return this.#open().then(() => this.acquire(options));
  }

  /** Release (any process may). @throws ValueError when it is not locked. */
  override release(): Promise<void> {
    const o = this.#opened;
    if (o) return o.release();
    if (o === null) return super.release();
    return this.#open().then(() => this.release());
  }

  /** Whether any process or thread holds it now. */
  locked(): Promise<boolean> {
    const o = this.#opened;
    if (o) return o.locked();
    if (o === null) return this._callmethod('locked');
    return this.#open().then(() => this.locked());
  }

  #open(): Promise<OpenedLock | null> {
    return (this.#opening ??= this.#openShared().then((o) => (this.#opened = o)));
  }

  async #openShared(): Promise<OpenedLock | null> {
    if (!sharesMemoryWithServer(this)) return null;
    // Taken before the call, so that a connection ending meanwhile is not missed.
    const end = channelEnd(this._token.address);
    let lock: unknown;
    try {
      lock = await this._callmethod('_shared');
    } catch {
      // A server without shared memory to give, or memory this process cannot open: the
      // server's path works everywhere.
      return null;
    }
    if (!(lock instanceof Lock)) return null;
    if (end.aborted) {
      lock.close();
      return null;
    }
    return new OpenedLock(this, lock, end, (method, args) => this._callmethod(method, args));
  }
}

registerProxyType('multiproc.LockProxy', LockProxy);
