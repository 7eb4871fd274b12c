// Locks, semaphores and events on Redis (the local `Lock`, `RLock`, `Semaphore`,
// `BoundedSemaphore` and `Event`, across machines), found by name.
//
// Keys of an object `name` in namespace `ns` (all under the hash tag `{ns}`):
//   mp:{ns}:lock:<name>         hash: owner (a process's session id), count (RLock), token
//   mp:{ns}:lock:<name>:fence   the fencing counter: one more per acquisition
//   mp:{ns}:sem:<name>          hash: value, max (BoundedSemaphore; -1 unbounded)
//   mp:{ns}:sem:<name>:holders  hash: owner -> units it holds
//   mp:{ns}:ev:<name>           '1' while the event is set
//   ...:wake                    the channel a release or set publishes on
//
// What a process holds is leased (client.ts): while it lives, its lease is renewed; once it has
// died and its lease has run out, the next acquire takes the lock (or the units) over.
import { inspect } from 'node:util';

import { InvalidArgumentError, ProcessError, TimeoutError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import { aborted, checkName, checkWhere, closedError, left, POLL_MS, session, waitArgs, type Session, type Where } from './client.js';
import type { RedisObjectOptions, RedisWaitOptions } from './queues.js';

// Returns {1, token, count} when acquired, or {0, ms} to wait (the holder's lease left).
const LOCK_ACQUIRE = `
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder then
  if holder == ARGV[1] then
    if ARGV[4] == '1' then
      local c = redis.call('HINCRBY', KEYS[1], 'count', 1)
      redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
      return {1, tonumber(redis.call('HGET', KEYS[1], 'token')), c}
    end
    return {0, tonumber(ARGV[2])}
  end
  local ttl = redis.call('PTTL', ARGV[3] .. holder)
  if ttl > 0 then return {0, ttl} end
end
local t = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', t, 'count', 1)
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return {1, t, 1}
`;

// Returns -1 (not locked), -2 (held by another owner), or the count left.
const LOCK_RELEASE = `
local holder = redis.call('HGET', KEYS[1], 'owner')
if not holder then return -1 end
if holder ~= ARGV[1] then
  if redis.call('EXISTS', ARGV[3] .. holder) == 0 then return -1 end
  return -2
end
local c = redis.call('HINCRBY', KEYS[1], 'count', -1)
if c > 0 then return c end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'r')
return 0
`;

// Returns 1 when someone live holds it.
const LOCK_LOCKED = `
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder and redis.call('EXISTS', ARGV[1] .. holder) == 1 then return 1 end
return 0
`;

// Semaphore: first gives back the units of holders whose lease ran out. ARGV[6]: 'acquire',
// 'release' (n in ARGV[7]) or 'peek'. Returns {1} acquired, {0, ms} wait, {2, value} peek,
// {3} released, {-1} released too many.
const SEM = `
if redis.call('HSETNX', KEYS[1], 'value', ARGV[4]) == 1 then
  redis.call('HSET', KEYS[1], 'max', ARGV[5] == '1' and ARGV[4] or '-1')
end
local h = redis.call('HGETALL', KEYS[2])
local freed = 0
local wait = -1
for i = 1, #h, 2 do
  local ttl = redis.call('PTTL', ARGV[3] .. h[i])
  if ttl <= 0 then
    freed = freed + tonumber(h[i + 1])
    redis.call('HDEL', KEYS[2], h[i])
  elseif wait < 0 or ttl < wait then
    wait = ttl
  end
end
local v = redis.call('HINCRBY', KEYS[1], 'value', freed)
if ARGV[6] == 'peek' then return {2, v} end
if ARGV[6] == 'release' then
  local n = tonumber(ARGV[7])
  local max = tonumber(redis.call('HGET', KEYS[1], 'max'))
  if max >= 0 and v + n > max then return {-1} end
  redis.call('HINCRBY', KEYS[1], 'value', n)
  local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  if mine > 0 then
    if mine <= n then redis.call('HDEL', KEYS[2], ARGV[1]) else redis.call('HINCRBY', KEYS[2], ARGV[1], -n) end
  end
  redis.call('PUBLISH', ARGV[8], 'r')
  return {3}
end
if v > 0 then
  redis.call('HINCRBY', KEYS[1], 'value', -1)
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
  return {1}
end
return {0, wait}
`;

const EVENT_SET = `
redis.call('SET', KEYS[1], '1')
redis.call('PUBLISH', ARGV[1], 's')
return 1
`;

const releasedTooMany = (): ProcessError =>
  new ProcessError('semaphore or lock released too many times', { code: 'ERR_MP_RELEASED_TOO_MANY' });

interface State extends Where {
  kind: string;
  name: string;
  value?: number;
}

/** Acquire/release with the `with` forms, as the local lock-likes have them. */
abstract class RedisLockLike {
  /** The object's name: the same name in another process is the same object. */
  readonly name: string;
  /** @internal */
  readonly _where: Where;
  /** @internal */
  readonly _s: Session;

  constructor(options: { name?: string } & RedisObjectOptions, what: string) {
    this._where = checkWhere(options, what);
    this.name = checkName(options.name, `${what}({ name })`);
    this._s = session(this._where);
  }

  /** Acquire; resolves false if `{ block: false }` or the timeout came first. Rejects with AbortError when `signal` aborts. */
  abstract acquire(options?: RedisWaitOptions): Promise<boolean>;
  /** Release (a round trip to Redis). */
  abstract release(): Promise<void>;

  /** @internal Try once; resolves true, or the milliseconds to wait before trying again. */
  abstract _try(): Promise<true | number>;
  /** @internal The wake-up channel. */
  abstract get _wake(): string;

  #closed = false;

  /** @internal Refuse calls after close(). */
  _check(): void {
    if (this.#closed) throw closedError(this.constructor.name);
  }

  /**
   * No more calls from this handle (ProcessError ERR_MP_CLOSED); its wake-up subscription is
   * dropped. What it holds stays held (release first); other handles and processes keep using
   * the object. Also `using lock = ctx.Lock(...)`.
   */
  close(): void {
    this.#closed = true;
    this._s.release(this._wake);
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal The waiting loop every acquire shares. */
  async _acquire(options: RedisWaitOptions | undefined, what: string): Promise<boolean> {
    this._check();
    const o = waitArgs(options, what);
    return this._s.run(async () => {
      let l: Awaited<ReturnType<Session['listen']>> | undefined;
      try {
        for (;;) {
          if (o.signal?.aborted) throw aborted(o.signal);
          const r = await this._try();
          if (r === true) {
            this._s.holding();
            return true;
          }
          if (!o.block || left(o.deadline) === 0) return false;
          if (!l) l = await this._s.listen(this._wake);
          else await l.wait(Math.min(left(o.deadline), r > 0 ? r + 5 : POLL_MS, POLL_MS), o.signal);
        }
      } finally {
        l?.stop();
      }
    });
  }

  /**
   * Python's `with lock:` — acquire, run `fn`, release (also when `fn` throws).
   * @throws TimeoutError when `options.timeout` passes before it is acquired.
   */
  async withLock<T>(fn: () => T | Promise<T>, options?: RedisWaitOptions): Promise<T> {
    if (!(await this.acquire(options))) throw new TimeoutError(`${this.constructor.name}: not acquired within ${options?.timeout ?? 0} ms`);
    try {
      return await fn();
    } finally {
      await this.release();
    }
  }

  /**
   * Acquire and return this object for `await using`: `await using _ = await lock.guard();`.
   * @throws TimeoutError when not acquired within the timeout.
   */
  async guard(options?: RedisWaitOptions): Promise<this> {
    if (!(await this.acquire(options))) throw new TimeoutError(`${this.constructor.name}: not acquired within ${options?.timeout ?? 0} ms`);
    return this;
  }

  /** Release at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** @internal */
  abstract _state(): State;

  toString(): string {
    return `<${this.constructor.name}(name=${this.name}, namespace=${this._where.namespace})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * A non-recursive lock in Redis (the local `Lock`, across machines). Held by a process: it is
 * renewed while that process lives, and taken over by the next acquire once the holder died and
 * its lease ran out. `token` is the fencing token of this handle's last acquisition.
 */
export class RedisLock extends RedisLockLike {
  readonly #k: { lock: string; fence: string; wake: string };
  #token: number | undefined;

  /** @throws InvalidArgumentError for a bad name, url, namespace or leaseMs. */
  constructor(options: { name?: string } & RedisObjectOptions = {}) {
    super(options, new.target.name);
    const lock = `${this._s.prefix}lock:${this.name}`;
    this.#k = { lock, fence: `${lock}:fence`, wake: `${lock}:wake` };
  }

  /** @internal */
  _recursive(): boolean {
    return false;
  }

  /**
   * The fencing token of this handle's last acquisition: it grows with every acquisition of the
   * lock by anyone, so a store that refuses writes with a token lower than one it has seen
   * refuses a holder whose lease ran out. Undefined before the first acquisition.
   */
  get token(): number | undefined {
    return this.#token;
  }

  override get _wake(): string {
    return this.#k.wake;
  }

  /** @internal */
  get _keys(): { lock: string; wake: string } {
    return this.#k;
  }

  override async _try(): Promise<true | number> {
    const s = this._s;
    const r = (await s.script(LOCK_ACQUIRE)(
      [this.#k.lock, this.#k.fence, s.ownerKey],
      [s.owner, this._where.leaseMs, s.ownerPrefix, this._recursive() ? '1' : '0'],
    )) as number[];
    if (r[0] === 1) {
      this.#token = r[1];
      return true;
    }
    return r[1]!;
  }

  acquire(options?: RedisWaitOptions): Promise<boolean> {
    return this._acquire(options, `${this.constructor.name}.acquire`);
  }

  /**
   * Release it. Only the process that holds it may (unlike a local Lock, any process of which
   * may): a process whose lease ran out and whose lock was taken over gets an error, not
   * someone else's lock.
   * @throws ProcessError ERR_MP_RELEASED_TOO_MANY when it is not locked, ERR_MP_NOT_OWNER when
   *   another process holds it (this process never acquired it, or lost it after its lease).
   */
  async release(): Promise<void> {
    this._check();
    const s = this._s;
    const r = (await s.run(() => s.script(LOCK_RELEASE)([this.#k.lock], [s.owner, this.#k.wake, s.ownerPrefix]))) as number;
    if (r === -1) throw releasedTooMany();
    if (r === -2)
      throw new ProcessError(
        `${this.constructor.name} ${this.name} is held by another process: this one never acquired it, or held it longer than its lease without renewing (raise leaseMs)`,
        { code: 'ERR_MP_NOT_OWNER' },
      );
  }

  /** Whether a live process holds it now. */
  async locked(): Promise<boolean> {
    this._check();
    const s = this._s;
    return ((await s.run(() => s.script(LOCK_LOCKED)([this.#k.lock], [s.ownerPrefix]))) as number) === 1;
  }

  override _state(): State {
    return { ...this._where, kind: this._recursive() ? 'rlock' : 'lock', name: this.name };
  }
}

/**
 * A recursive lock in Redis (the local `RLock`): the process that holds it may acquire it again
 * and must release it as often. Every async function of one process (or thread) is one owner.
 */
export class RedisRLock extends RedisLock {
  override _recursive(): boolean {
    return true;
  }
}

/**
 * A counting semaphore in Redis (the local `Semaphore`). The first process that uses the name sets
 * its initial value. Units held by a process that died come back once its lease has run out.
 */
export class RedisSemaphore extends RedisLockLike {
  readonly #k: { sem: string; holders: string; wake: string };
  readonly #value: number;

  /** @throws InvalidArgumentError for a bad value, name, url, namespace or leaseMs. */
  constructor(options: { name?: string; value?: number } & RedisObjectOptions = {}) {
    super(options, new.target.name);
    const value = options.value ?? 1;
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff)
      throw new InvalidArgumentError(`${new.target.name}({ value }): value must be an integer >= 0, got ${JSON.stringify(value)}`);
    this.#value = value;
    const sem = `${this._s.prefix}sem:${this.name}`;
    this.#k = { sem, holders: `${sem}:holders`, wake: `${sem}:wake` };
  }

  /** @internal */
  _bounded(): boolean {
    return false;
  }

  override get _wake(): string {
    return this.#k.wake;
  }

  #run(op: string, n = 1): Promise<number[]> {
    const s = this._s;
    return s.script(SEM)(
      [this.#k.sem, this.#k.holders, s.ownerKey],
      [s.owner, this._where.leaseMs, s.ownerPrefix, this.#value, this._bounded() ? '1' : '0', op, n, this.#k.wake],
    ) as Promise<number[]>;
  }

  override async _try(): Promise<true | number> {
    const r = await this.#run('acquire');
    return r[0] === 1 ? true : r[1]!;
  }

  acquire(options?: RedisWaitOptions): Promise<boolean> {
    return this._acquire(options, `${this.constructor.name}.acquire`);
  }

  /**
   * Add `n` (default 1), waking the waiters.
   * @throws ProcessError ERR_MP_RELEASED_TOO_MANY past a BoundedSemaphore's initial value.
   */
  async release(n = 1): Promise<void> {
    this._check();
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`release(n): n must be an integer >= 1, got ${JSON.stringify(n)}`);
    const r = await this._s.run(() => this.#run('release', n));
    if (r[0] === -1) throw releasedTooMany();
  }

  /** The current value, with the units of dead holders given back (Python: `get_value()`). */
  async getValue(): Promise<number> {
    this._check();
    return (await this._s.run(() => this.#run('peek')))[1]!;
  }

  override _state(): State {
    return { ...this._where, kind: this._bounded() ? 'bsem' : 'sem', name: this.name, value: this.#value };
  }
}

/** A semaphore that may not be released above its initial value (the local `BoundedSemaphore`). */
export class RedisBoundedSemaphore extends RedisSemaphore {
  override _bounded(): boolean {
    return true;
  }
}

/** An event in Redis (the local `Event`): `set`, `clear`, `isSet`, `wait`. */
export class RedisEvent {
  /** The event's name: the same name in another process is the same event. */
  readonly name: string;
  readonly #where: Where;
  readonly #s: Session;
  readonly #key: string;
  #closed = false;

  /** @throws InvalidArgumentError for a bad name, url, namespace or leaseMs. */
  constructor(options: { name?: string } & RedisObjectOptions = {}) {
    this.#where = checkWhere(options, 'RedisEvent');
    this.name = checkName(options.name, 'Event({ name })');
    this.#s = session(this.#where);
    this.#key = `${this.#s.prefix}ev:${this.name}`;
  }

  /** Whether it is set. */
  async isSet(): Promise<boolean> {
    this.#check();
    return (await this.#s.run(() => this.#s.cmd.exists(this.#key))) === 1;
  }

  /** Set it, waking every waiter, in every process. */
  async set(): Promise<void> {
    this.#check();
    await this.#s.run(() => this.#s.script(EVENT_SET)([this.#key], [`${this.#key}:wake`]));
  }

  /** Clear it. */
  async clear(): Promise<void> {
    this.#check();
    await this.#s.run(() => this.#s.cmd.del(this.#key));
  }

  /** Wait until it is set; resolves false if `timeout` ms pass first. Rejects with AbortError when `signal` aborts. */
  async wait(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    this.#check();
    const o = waitArgs({ timeout, signal: options.signal }, 'Event.wait');
    const s = this.#s;
    return s.run(async () => {
      const l = await s.listen(`${this.#key}:wake`);
      try {
        for (;;) {
          if ((await s.cmd.exists(this.#key)) === 1) return true;
          if (left(o.deadline) === 0) return false;
          if (o.signal?.aborted) throw aborted(o.signal);
          await l.wait(Math.min(left(o.deadline), POLL_MS), o.signal);
        }
      } finally {
        l.stop();
      }
    });
  }

  #check(): void {
    if (this.#closed) throw closedError('RedisEvent');
  }

  /** No more calls from this handle (ProcessError ERR_MP_CLOSED); its wake-up subscription is dropped. Also `using`. */
  close(): void {
    this.#closed = true;
    this.#s.release(`${this.#key}:wake`);
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal */
  _state(): State {
    return { ...this.#where, kind: 'event', name: this.name };
  }

  toString(): string {
    return `<RedisEvent(name=${this.name}, namespace=${this.#where.namespace})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** @internal Rebuild an object from its state (another process's handle on the same object). */
function rebuild(s: State): RedisLockLike | RedisEvent {
  const o = { url: s.url, namespace: s.namespace, leaseMs: s.leaseMs, name: s.name };
  switch (s.kind) {
    case 'lock':
      return new RedisLock(o);
    case 'rlock':
      return new RedisRLock(o);
    case 'sem':
      return new RedisSemaphore({ ...o, value: s.value });
    case 'bsem':
      return new RedisBoundedSemaphore({ ...o, value: s.value });
    default:
      return new RedisEvent(o);
  }
}

registerType(RedisLockLike, { reduce: (l) => l._state(), rebuild }, 'multiproc.RedisLock');
registerType(RedisEvent, { reduce: (e) => e._state(), rebuild }, 'multiproc.RedisEvent');
