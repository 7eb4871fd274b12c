// A condition variable on Redis (the local `Condition`, across machines), over a Redis Lock or
// RLock. wait() is one script: check that this process holds the lock, queue a waiter token,
// release the lock (every level of an RLock) and wake the lock's waiters, so no notify can fall
// between the release and the wait. notify(n) hands a signal to the n oldest waiters whose
// process is still alive (its lease), skipping the tokens of dead ones.
//
// Keys: mp:{ns}:cond:<name>:waiters (list of '<owner>:<n>'), mp:{ns}:cond:<name>:sig (hash of
// signalled tokens), channel mp:{ns}:cond:<name>:wake.
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

import { InvalidArgumentError, ProcessError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import { aborted, checkName, closedError, left, POLL_MS, waitArgs } from './client.js';
import type { RedisWaitOptions } from './queues.js';
import { RedisLock } from './synchronize.js';

// Returns -1 when the lock is not this owner's, else the lock's count (released).
const WAIT = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
local c = tonumber(redis.call('HGET', KEYS[1], 'count'))
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], 'r')
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return c
`;

// Returns -1 when the lock is not this owner's, else how many were signalled.
const NOTIFY = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[2])
local k = 0
while k < n do
  local tok = redis.call('LPOP', KEYS[2])
  if not tok then break end
  local owner = string.match(tok, '^[^:]+')
  if redis.call('EXISTS', ARGV[3] .. owner) == 1 then
    redis.call('HSET', KEYS[3], tok, '1')
    k = k + 1
  end
end
if k > 0 then redis.call('PUBLISH', ARGV[4], 'n') end
return k
`;

let seq = 0;

/**
 * A condition variable in Redis over a Redis Lock or RLock (default: a new RLock), as the local
 * `Condition`: `wait`, `waitFor`, `notify` and `notifyAll` need the lock held by this process.
 */
export class RedisCondition {
  /** The condition's name: the same name (over the same lock) in another process is the same condition. */
  readonly name: string;
  readonly #lock: RedisLock;
  readonly #k: { waiters: string; sig: string; wake: string };

  /** @throws InvalidArgumentError when `lock` is not a Redis Lock or RLock, or for a bad name. */
  constructor(lock: RedisLock, options: { name?: string } = {}) {
    if (!(lock instanceof RedisLock)) throw new InvalidArgumentError('Condition(lock): lock must be a Redis Lock or RLock of this context');
    this.#lock = lock;
    this.name = checkName(options.name ?? `${lock.name}.cond`, 'Condition({ name })');
    const base = `${lock._s.prefix}cond:${this.name}`;
    this.#k = { waiters: `${base}:waiters`, sig: `${base}:sig`, wake: `${base}:wake` };
  }

  /** The underlying lock. */
  get lock(): RedisLock {
    return this.#lock;
  }

  /** Acquire the lock. */
  acquire(options?: RedisWaitOptions): Promise<boolean> {
    return this.#lock.acquire(options);
  }

  /** Release the lock. */
  release(): Promise<void> {
    return this.#lock.release();
  }

  /** Acquire the lock and return this object for `await using`. */
  async guard(options?: RedisWaitOptions): Promise<this> {
    await this.#lock.guard(options);
    return this;
  }

  /** Release the lock at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#lock.release();
  }

  /** `with cond:` — acquire the lock, run `fn`, release. */
  withLock<T>(fn: () => T | Promise<T>, options?: RedisWaitOptions): Promise<T> {
    return this.#lock.withLock(fn, options);
  }

  #closed = false;

  /**
   * No more wait or notify from this handle (ProcessError ERR_MP_CLOSED); its wake-up
   * subscription is dropped. The lock stays open. Also `using`.
   */
  close(): void {
    this.#closed = true;
    this.#lock._s.release(this.#k.wake);
  }
  [Symbol.dispose](): void {
    this.close();
  }

  #check(): void {
    if (this.#closed) throw closedError('RedisCondition');
  }

  static #notOwner(what: string): ProcessError {
    return new ProcessError(`cannot ${what} on un-acquired lock`, { code: 'ERR_MP_NOT_OWNER' });
  }

  /**
   * Release the lock, wait for a notify (or `timeout` ms), reacquire the lock. Resolves true when
   * notified, false on timeout.
   * @throws ProcessError ERR_MP_NOT_OWNER when this process does not hold the lock.
   */
  async wait(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    this.#check();
    const o = waitArgs({ timeout, signal: options.signal }, 'Condition.wait');
    const s = this.#lock._s;
    const lk = this.#lock._keys;
    const token = `${s.owner}:${process.pid}.${++seq}.${randomBytes(3).toString('hex')}`;
    return s.run(async () => {
      const l = await s.listen(this.#k.wake);
      let count: number;
      try {
        count = (await s.script(WAIT)([lk.lock, this.#k.waiters, s.ownerKey], [s.owner, token, lk.wake, s.where.leaseMs])) as number;
        if (count < 0) throw RedisCondition.#notOwner('wait');
        s.holding();
        let notified = false;
        for (;;) {
          if ((await s.cmd.hdel(this.#k.sig, token)) === 1) {
            notified = true;
            break;
          }
          if (left(o.deadline) === 0 || o.signal?.aborted) {
            // Not notified yet: leave the queue, unless a notify took the token meanwhile.
            if ((await s.cmd.lrem(this.#k.waiters, 1, token)) === 0) notified = (await s.cmd.hdel(this.#k.sig, token)) === 1;
            break;
          }
          await l.wait(Math.min(left(o.deadline), POLL_MS), o.signal);
        }
        await this.#lock.acquire();
        if (count > 1) await s.cmd.hset(lk.lock, 'count', count);
        if (!notified && o.signal?.aborted) throw aborted(o.signal);
        return notified;
      } finally {
        l.stop();
      }
    });
  }

  /**
   * Wait until `predicate()` is truthy (Python: `wait_for`); resolves its last value, which is
   * falsy when `timeout` ms passed first. The predicate may be async.
   */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number): Promise<T> {
    const o = waitArgs({ timeout }, 'Condition.waitFor');
    let result = await predicate();
    while (!result) {
      const ms = left(o.deadline);
      if (ms === 0) break;
      await this.wait(ms === Infinity ? undefined : ms);
      result = await predicate();
    }
    return result;
  }

  /** Wake up to `n` waiters (default 1). @throws ProcessError ERR_MP_NOT_OWNER when this process does not hold the lock. */
  async notify(n = 1): Promise<void> {
    this.#check();
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`notify(n): n must be an integer >= 0, got ${JSON.stringify(n)}`);
    const s = this.#lock._s;
    const r = (await s.run(() =>
      s.script(NOTIFY)([this.#lock._keys.lock, this.#k.waiters, this.#k.sig], [s.owner, n, s.ownerPrefix, this.#k.wake]),
    )) as number;
    if (r < 0) throw RedisCondition.#notOwner('notify');
  }

  /** Wake every waiter. @throws ProcessError ERR_MP_NOT_OWNER when this process does not hold the lock. */
  notifyAll(): Promise<void> {
    return this.notify(0x7fffffff);
  }

  toString(): string {
    return `<RedisCondition(name=${this.name}, lock=${this.#lock.name})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

registerType(
  RedisCondition,
  {
    reduce: (c) => ({ lock: c.lock, name: c.name }),
    rebuild: (st: { lock: RedisLock; name: string }) => new RedisCondition(st.lock, { name: st.name }),
  },
  'multiproc.RedisCondition',
);
