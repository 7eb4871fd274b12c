// Queues on Redis (the local `Queue`, `JoinableQueue` and `SimpleQueue`, across machines). Items
// cross through the library's serializer, as they do through a local queue.
//
// Keys of a queue `name` in namespace `ns` (all under the hash tag `{ns}`, so one slot):
//   mp:{ns}:q:<name>             the items (a list: put pushes at the tail, get takes the head)
//   mp:{ns}:q:<name>:meta        maxsize, unfinished (JoinableQueue), requeued (a count)
//   mp:{ns}:q:<name>:proc:<id>   items handed to consumer process <id> and not yet acknowledged
//   mp:{ns}:q:<name>:cons        the ids that have a processing list
//   mp:{ns}:q:<name>:wake        the channel a put, get or taskDone publishes on
//
// Crash-safe get (the reliable-queue pattern): one script moves the head item into the
// consumer's processing list and sets the consumer's lease (client.ts); the item leaves that
// list once the consumer has it (Queue) or once it calls taskDone() (JoinableQueue). A get that
// finds the queue empty, and any get every half lease, first moves the processing lists of
// consumers whose lease has expired back to the head of the queue. So an item is never lost to a
// consumer that dies; it can be delivered twice (at-least-once) when a consumer dies after the
// item reached it and before its acknowledgement did, or stalls longer than the lease.
import { inspect } from 'node:util';

import { Empty, Full, InvalidArgumentError, ProcessError } from '../errors.js';
import { dumps, loads, registerType } from '../reduction/reduction.js';
import type { ReceivePolicy } from '../reduction/policy.js';
import {
  aborted,
  checkName,
  checkWhere,
  closedError,
  left,
  policyOf,
  POLL_MS,
  session,
  trustState,
  waitArgs,
  type RedisTrust,
  type Session,
  type Where,
} from './client.js';

/** Options of a Redis queue. */
export interface RedisQueueOptions {
  /** Processes (on any machine) that open the same name, namespace and server share the queue. Default: a fresh name. */
  name?: string;
  /** Bound on the items waiting (0: unbounded). The first process that puts to a name sets it. */
  maxsize?: number;
}

/** Where a Redis object lives and how it reads values (set by the context). */
export interface RedisObjectOptions {
  url?: string;
  namespace?: string;
  /** How long a process that died keeps what it held (queue items, locks, semaphore units). Default 5000 ms. */
  leaseMs?: number;
  /** What values read from Redis may rebuild besides plain data and errors (as a socket Listener's `trust`). */
  trust?: RedisTrust;
}

/** The options of `get`, `put` and `acquire` (the local objects' `WaitOptions`). */
export interface RedisWaitOptions {
  /** false: do not wait at all. Default true. */
  block?: boolean;
  /** Milliseconds to wait at most; undefined waits forever. */
  timeout?: number;
  /** Abort the wait; the Promise then rejects with AbortError. */
  signal?: AbortSignal;
}

const GET = `
local requeued = 0
if ARGV[5] == '1' then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('EXISTS', ARGV[4] .. id) == 0 then
      local p = ARGV[3] .. id
      while redis.call('LMOVE', p, KEYS[1], 'RIGHT', 'LEFT') do requeued = requeued + 1 end
      redis.call('SREM', KEYS[3], id)
    end
  end
  if requeued > 0 then
    redis.call('HINCRBY', KEYS[5], 'requeued', requeued)
    redis.call('PUBLISH', ARGV[6], 'r')
  end
end
local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not v then return false end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[7] == '1' then redis.call('PUBLISH', ARGV[6], 'g') end
return v
`;

const PUT = `
redis.call('HSETNX', KEYS[2], 'maxsize', ARGV[2])
local max = tonumber(redis.call('HGET', KEYS[2], 'maxsize'))
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return -1 end
redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'unfinished', 1) end
redis.call('PUBLISH', ARGV[3], 'p')
return max
`;

// Counts an item done only if this process still holds one: an item put back after its
// holder's lease ran out is counted by the consumer that gets it next, not twice.
const TASK_DONE = `
if not redis.call('LPOP', KEYS[2]) then return -1 end
local u = redis.call('HINCRBY', KEYS[1], 'unfinished', -1)
if u <= 0 then redis.call('PUBLISH', ARGV[1], 'j') end
return u
`;

type Kind = 'queue' | 'joinable' | 'simple';

interface QueueKeys {
  q: string;
  meta: string;
  cons: string;
  proc: string;
  procPrefix: string;
  wake: string;
}

interface QueueState extends Where {
  name: string;
  maxsize: number;
  kind: Kind;
  trust: 'all' | string[] | undefined;
}

function parseMaxsize(maxsize: unknown): number {
  if (maxsize === undefined || maxsize === null) return 0;
  if (typeof maxsize !== 'number' || !Number.isInteger(maxsize) || maxsize > 0x7fffffff)
    throw new InvalidArgumentError(`Queue({ maxsize }): maxsize must be an integer (0 or less: unbounded), got ${JSON.stringify(maxsize)}`);
  return Math.max(0, maxsize);
}

/**
 * A FIFO queue kept in Redis, shared by every process that opens its name (same API as the local
 * `Queue`, every call returning a Promise). `get` is crash-safe: an item taken by a consumer that
 * dies before it has it goes back to the queue after the consumer's lease (at-least-once).
 */
export class RedisQueue<T = unknown> {
  /** The queue's name: `Queue({ name })` in another process opens the same queue. */
  readonly name: string;
  readonly #where: Where;
  readonly #s: Session;
  readonly #maxsize: number;
  readonly #trust: RedisTrust | undefined;
  readonly #policy: ReceivePolicy;
  readonly #k: QueueKeys;
  #closed = false;
  #lastRecover = 0;

  /** @throws InvalidArgumentError for a bad name, maxsize, url, namespace, leaseMs or trust. */
  constructor(options: RedisQueueOptions & RedisObjectOptions = {}) {
    this.#where = checkWhere(options, this.constructor.name);
    this.name = checkName(options.name, `${this.constructor.name}({ name })`);
    this.#maxsize = parseMaxsize(options.maxsize);
    this.#trust = options.trust;
    this.#policy = policyOf(options.trust, this.constructor.name);
    this.#s = session(this.#where);
    const q = `${this.#s.prefix}q:${this.name}`;
    this.#k = {
      q,
      meta: `${q}:meta`,
      cons: `${q}:cons`,
      proc: `${q}:proc:${this.#s.owner}`,
      procPrefix: `${q}:proc:`,
      wake: `${q}:wake`,
    };
  }

  /** The bound this handle was opened with (0: unbounded); the first process that put to the name set the one that applies. */
  get maxsize(): number {
    return this.#maxsize;
  }

  #check(): void {
    if (this.#closed) throw closedError(this.constructor.name);
  }

  /** @internal */
  _kind(): Kind {
    return 'queue';
  }

  /**
   * Put an item; resolves once it is in Redis. A bounded queue waits for a free place: with
   * `{ block: false }` or after `timeout` ms it rejects with `Full`.
   * @throws NotTransferableError (synchronously) naming the path of what cannot cross.
   */
  put(item: T, options?: RedisWaitOptions): Promise<void> {
    this.#check();
    const o = waitArgs(options, 'put');
    const msg = dumps(item, 'item');
    const put = this.#s.script(PUT);
    const args = [msg, this.#maxsize, this.#k.wake, this._kind() === 'joinable' ? '1' : '0'];
    return this.#s.run(async () => {
      let l: Awaited<ReturnType<Session['listen']>> | undefined;
      try {
        for (;;) {
          if (((await put([this.#k.q, this.#k.meta], args)) as number) >= 0) return;
          if (!o.block || left(o.deadline) === 0) throw new Full();
          if (o.signal?.aborted) throw aborted(o.signal);
          if (!l) l = await this.#s.listen(this.#k.wake);
          else await l.wait(Math.min(left(o.deadline), POLL_MS), o.signal);
        }
      } finally {
        l?.stop();
      }
    });
  }

  /** Put without waiting (Python: `put_nowait`). Rejects with `Full` when a bounded queue has no place. */
  putNowait(item: T): Promise<void> {
    return this.put(item, { block: false });
  }

  /** One try at taking the head item into this process's processing list. */
  async #take(recover: boolean): Promise<Buffer | null> {
    const now = performance.now();
    if (!recover && now - this.#lastRecover >= this.#where.leaseMs / 2) recover = true;
    if (recover) this.#lastRecover = now;
    const k = this.#k;
    const v = (await this.#s.script(GET)(
      [k.q, k.proc, k.cons, this.#s.ownerKey, k.meta],
      [this.#where.leaseMs, this.#s.owner, k.procPrefix, this.#s.ownerPrefix, recover ? '1' : '0', k.wake, this.#maxsize > 0 ? '1' : '0'],
    )) as Buffer | null;
    if (v) this.#s.holding();
    return v;
  }

  /**
   * Take the next item, waiting for one (Python: `get`). With `{ block: false }`, or when
   * `timeout` ms pass first, rejects with `Empty`; with `signal` aborted, with AbortError.
   * @throws UntrustedMessageError when the item names a function or class `trust` does not allow.
   */
  get(options?: RedisWaitOptions): Promise<T> {
    this.#check();
    const o = waitArgs(options, 'get');
    return this.#s.run(async () => {
      let l: Awaited<ReturnType<Session['listen']>> | undefined;
      let recover = false;
      try {
        for (;;) {
          if (o.signal?.aborted) throw aborted(o.signal);
          const v = await this.#take(recover);
          if (v) return await this.#deliver(v);
          if (!o.block || left(o.deadline) === 0) throw new Empty();
          recover = true;
          if (!l) l = await this.#s.listen(this.#k.wake);
          else await l.wait(Math.min(left(o.deadline), POLL_MS), o.signal);
        }
      } finally {
        l?.stop();
      }
    });
  }

  async #deliver(v: Buffer): Promise<T> {
    // A JoinableQueue keeps the item until taskDone(); a Queue acknowledges it once the caller
    // has it (on the next turn of the event loop: see Session.ack).
    try {
      return (await loads(v, this.#policy)) as T;
    } finally {
      if (this._kind() !== 'joinable') this.#s.ack(this.#k.proc, v);
    }
  }

  /** Take an item without waiting (Python: `get_nowait`). Rejects with `Empty` when none is there now. */
  getNowait(): Promise<T> {
    return this.get({ block: false });
  }

  /** Items waiting (not counting those held by consumers), from every process (Python: `qsize`). */
  async qsize(): Promise<number> {
    this.#check();
    return this.#s.run(() => this.#s.cmd.llen(this.#k.q));
  }

  /** Whether no item is waiting. */
  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  /** Whether a bounded queue has no free place. */
  async full(): Promise<boolean> {
    return this.#maxsize > 0 && (await this.qsize()) >= this.#maxsize;
  }

  /** How many items were put back after their consumer's lease ran out (deliveries that may repeat). */
  async requeued(): Promise<number> {
    return Number((await this.#s.run(() => this.#s.cmd.hget(this.#k.meta, 'requeued'))) ?? 0);
  }

  /** No more calls from this handle (others keep using the queue; its items stay in Redis); its wake-up subscription is dropped. Also `using`. */
  close(): void {
    this.#closed = true;
    this.#s.release(this.#k.wake);
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** Resolves at once after close(): a put resolves only when its item is in Redis, so there is no feeder to wait for. */
  async joinThread(): Promise<void> {
    if (!this.#closed) throw new ProcessError('joinThread() needs close() first', { code: 'ERR_MP_NOT_CLOSED' });
    return Promise.resolve();
  }

  /** Nothing to cancel (there is no feeder); kept for the local Queue's API. */
  cancelJoinThread(): void {}

  /** Delete the queue's keys from Redis: its items, counts and processing lists (for every process). */
  async destroy(): Promise<void> {
    const k = this.#k;
    await this.#s.run(async () => {
      const ids = await this.#s.cmd.smembers(k.cons);
      await this.#s.cmd.del(k.q, k.meta, k.cons, ...ids.map((id) => k.procPrefix + id));
    });
  }

  /** Take items as they come: `for await (const item of queue)`. It ends only when you break. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) yield await this.get();
  }

  /** @internal What crosses to another process. */
  _state(): QueueState {
    return { ...this.#where, name: this.name, maxsize: this.#maxsize, kind: this._kind(), trust: trustState(this.#trust) };
  }

  /** @internal */
  get _session(): Session {
    return this.#s;
  }
  /** @internal */
  get _keys(): QueueKeys {
    return this.#k;
  }

  toString(): string {
    return `<${this.constructor.name}(name=${this.name}, namespace=${this.#where.namespace}, maxsize=${this.#maxsize})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * A Redis queue whose consumers report each item done (the local `JoinableQueue`): `join()` waits
 * until every item put has had its `taskDone()`. An item stays in its consumer's processing list
 * until its `taskDone()`, so one whose consumer dies before finishing goes back to the queue.
 */
export class RedisJoinableQueue<T = unknown> extends RedisQueue<T> {
  override _kind(): Kind {
    return 'joinable';
  }

  /**
   * Mark the oldest item this process took and has not marked yet as done.
   * @throws ProcessError ERR_MP_TASK_DONE when this process holds no item waiting for it: it
   *   called taskDone() more often than it took items, or its lease ran out and its items went
   *   back to the queue (another consumer gets them and counts them).
   */
  async taskDone(): Promise<void> {
    const s = this._session;
    const k = this._keys;
    const u = (await s.run(() => s.script(TASK_DONE)([k.meta, k.proc], [k.wake]))) as number;
    if (u < 0)
      throw new ProcessError(
        'taskDone() called too many times: this process holds no item taken by get() (or held them longer than leaseMs, and they went back to the queue)',
        { code: 'ERR_MP_TASK_DONE' },
      );
  }

  /** Wait until every item put has been marked done; resolves false if `timeout` ms pass first. */
  async join(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const o = waitArgs({ timeout, signal: options.signal }, 'JoinableQueue.join');
    const s = this._session;
    const k = this._keys;
    return s.run(async () => {
      const l = await s.listen(k.wake);
      try {
        for (;;) {
          if (Number((await s.cmd.hget(k.meta, 'unfinished')) ?? 0) <= 0) return true;
          if (left(o.deadline) === 0) return false;
          if (o.signal?.aborted) throw aborted(o.signal);
          await l.wait(Math.min(left(o.deadline), POLL_MS), o.signal);
        }
      } finally {
        l.stop();
      }
    });
  }
}

/** A Redis queue without a bound (the local `SimpleQueue`): `put`, `get`, `empty`, `close`. */
export class RedisSimpleQueue<T = unknown> extends RedisQueue<T> {
  /** @throws InvalidArgumentError for a bad name, url, namespace or trust. */
  constructor(options: Omit<RedisQueueOptions, 'maxsize'> & RedisObjectOptions = {}) {
    super({ ...options, maxsize: 0 });
  }
  override _kind(): Kind {
    return 'simple';
  }
}

/** @internal Rebuild a queue from its state (another process's handle on the same queue). */
export function rebuildQueue(s: QueueState): RedisQueue {
  const o = { url: s.url, namespace: s.namespace, leaseMs: s.leaseMs, name: s.name, trust: s.trust };
  if (s.kind === 'joinable') return new RedisJoinableQueue({ ...o, maxsize: s.maxsize });
  if (s.kind === 'simple') return new RedisSimpleQueue(o);
  return new RedisQueue({ ...o, maxsize: s.maxsize });
}

registerType(RedisQueue, { reduce: (q) => q._state(), rebuild: rebuildQueue }, 'multiproc.RedisQueue');
