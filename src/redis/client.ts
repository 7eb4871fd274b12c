// What the Redis queues, locks, semaphores and events of one process share for one server,
// namespace and lease: a command connection, a subscriber connection for wake-ups, and the
// process's lease.
//
// Lease: each session has an owner id; a key `mp:{ns}:owner:<id>` with a TTL of `leaseMs` says
// the owner is alive. Every script that hands something to the owner (a queue item, a lock, a
// semaphore unit) sets that key in the same script, and a timer renews it every third of the
// lease for as long as the process lives. When the process dies, the key expires and whoever
// looks next (a get, an acquire) takes back what it held: one renewal per process, whatever it holds.
//
// Wake-ups: a script that frees something (put, release, set) PUBLISHes on the object's channel;
// a waiter subscribes before it tries, so no wake-up falls between its try and its wait. Messages
// can be lost while the subscriber reconnects, so no wait lasts longer than POLL_MS without
// trying again. A channel stays subscribed while a wait uses it; once idle it is kept (the next
// wait on the same object then costs no SUBSCRIBE) among the IDLE_CHANNELS most recent ones, and
// unsubscribed when more go idle or when its object is closed: a process that waits on many
// objects in turn holds a bounded number of subscriptions.
//
// The connections do not keep a program alive: their sockets are unref'd while no call is
// pending, so a program that used a Redis queue exits as one that used a local one does.
import { randomBytes } from 'node:crypto';

import { AbortError, InvalidArgumentError, ProcessError } from '../errors.js';
import { toModuleUrl, TRUST_ALL, trustModules, type ReceivePolicy } from '../reduction/policy.js';
import { registerExitTask } from '../util.js';
import { checkNamespace, loadRedis } from './protocol.js';
import type { Redis } from 'ioredis';

/** Default lease of a process over what it holds (queue items, locks, semaphore units). */
export const DEFAULT_OBJECT_LEASE_MS = 5000;

/** Longest wait without trying again (a wake-up can be lost while the subscriber reconnects). */
export const POLL_MS = 1000;

/** @internal Idle wake-up channels a session keeps subscribed (the most recently used). */
export const IDLE_CHANNELS = 32;

/** Where a Redis object lives, as it crosses to another process. */
export interface Where {
  url: string;
  namespace: string;
  leaseMs: number;
}

type Script = (keys: string[], args: (string | number | Buffer)[]) => Promise<unknown>;

/** @internal One server, namespace and lease of this process. */
export class Session {
  readonly owner = randomBytes(8).toString('hex');
  readonly prefix: string;
  readonly cmd: Redis;
  #sub: Redis | undefined;
  readonly #subscribed = new Map<string, Promise<unknown>>();
  /** Waits listening, by channel. */
  readonly #users = new Map<string, number>();
  /** Subscribed channels no wait uses, oldest first. */
  readonly #idle = new Set<string>();
  readonly #waiters = new Map<string, Set<() => void>>();
  #pending = 0;
  #renew: ReturnType<typeof setInterval> | undefined;
  readonly #scripts = new Map<string, Script>();
  #acks = new Map<string, Buffer[]>();
  #flushing: Promise<void> | undefined;

  constructor(readonly where: Where) {
    this.prefix = `mp:{${where.namespace}}:`;
    const Redis = loadRedis();
    this.cmd = new Redis(where.url, { maxRetriesPerRequest: null });
    this.#track(this.cmd);
  }

  /** This owner's lease key, and the prefix of every owner's. */
  get ownerKey(): string {
    return `${this.prefix}owner:${this.owner}`;
  }
  get ownerPrefix(): string {
    return `${this.prefix}owner:`;
  }

  #track(c: Redis): void {
    c.on('error', () => undefined);
    c.on('connect', () => this.#applyRef());
    // The timer before reconnecting to a server that went away holds the program as well.
    c.on('reconnecting', () => this.#applyRef());
  }

  #applyRef(): void {
    type Handle = { ref?: () => void; unref?: () => void } | null | undefined;
    for (const c of [this.cmd, this.#sub]) {
      const i = c as unknown as { stream?: Handle; reconnectTimeout?: Handle } | undefined;
      for (const h of [i?.stream, i?.reconnectTimeout]) {
        if (this.#pending > 0) h?.ref?.();
        else h?.unref?.();
      }
    }
  }

  /** Run `fn` with the connections holding the program alive (a pending get, a waiting acquire). */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#pending++ === 0) this.#applyRef();
    try {
      return await fn();
    } finally {
      if (--this.#pending === 0) this.#applyRef();
    }
  }

  /** A Lua script, by SHA after its first call. */
  script(lua: string): Script {
    let s = this.#scripts.get(lua);
    if (!s) {
      const name = `mp${this.#scripts.size}`;
      this.cmd.defineCommand(name, { lua });
      const c = this.cmd as unknown as Record<string, (n: number, ...a: (string | number | Buffer)[]) => Promise<unknown>>;
      s = (keys, args) => c[`${name}Buffer`]!.call(this.cmd, keys.length, ...keys, ...args);
      this.#scripts.set(lua, s);
    }
    return s;
  }

  /**
   * Acknowledge a queue item: it leaves the processing list `proc` on the next turn of the event
   * loop, after the code that awaited the get has run to its first await, so a process killed
   * before that gets the item delivered again rather than lost.
   */
  ack(proc: string, item: Buffer): void {
    let l = this.#acks.get(proc);
    if (!l) this.#acks.set(proc, (l = []));
    l.push(item);
    if (!sessionsWithAcks.has(this)) {
      sessionsWithAcks.add(this);
      setImmediate(() => void this.flushAcks());
    }
  }

  /** Send the acknowledgements waiting (before the process exits, too). */
  async flushAcks(): Promise<void> {
    if (this.#flushing) {
      await this.#flushing;
      // The previous flush ended inside some task, maybe between a get() that queued its ack and
      // the code awaiting that get, which has not run yet: an ack sent now could remove an item
      // its caller never saw, lost if the process dies next. Acks are taken on a turn of their own.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!this.#acks.size) return;
    const acks = this.#acks;
    this.#acks = new Map();
    sessionsWithAcks.delete(this);
    const p = this.cmd.pipeline();
    for (const [proc, items] of acks) for (const item of items) p.lrem(proc, -1, item);
    this.#flushing = this.run(() => p.exec()).then(
      () => undefined,
      () => undefined,
    );
    await this.#flushing;
  }

  /** Renew this owner's lease from now on (called once something was handed to it). */
  holding(): void {
    if (this.#renew) return;
    this.#renew = setInterval(
      () => void this.cmd.set(this.ownerKey, '1', 'PX', this.where.leaseMs).catch(() => undefined),
      Math.max(10, Math.floor(this.where.leaseMs / 3)),
    );
    this.#renew.unref();
  }

  /**
   * Listen on `channel` (subscribing first, so a wake-up sent after this resolves is not missed);
   * returns the wait and a function that stops listening.
   */
  async listen(channel: string): Promise<{ wait: (ms: number, signal?: AbortSignal) => Promise<void>; stop: () => void }> {
    if (!this.#sub) {
      const Redis = loadRedis();
      this.#sub = new Redis(this.where.url, { maxRetriesPerRequest: null });
      this.#track(this.#sub);
      this.#sub.on('message', (ch: string) => {
        const ws = this.#waiters.get(ch);
        if (ws) for (const w of [...ws]) w();
      });
    }
    this.#users.set(channel, (this.#users.get(channel) ?? 0) + 1);
    this.#idle.delete(channel);
    let sub = this.#subscribed.get(channel);
    if (!sub) {
      sub = this.#sub.subscribe(channel);
      this.#subscribed.set(channel, sub);
      sub.catch(() => {
        if (this.#subscribed.get(channel) === sub) this.#subscribed.delete(channel);
      });
    }
    let woken = false;
    let wake: (() => void) | undefined;
    const on = (): void => {
      woken = true;
      wake?.();
    };
    const set = this.#waiters.get(channel) ?? new Set();
    this.#waiters.set(channel, set);
    set.add(on);
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      set.delete(on);
      if (!set.size) this.#waiters.delete(channel);
      const n = (this.#users.get(channel) ?? 1) - 1;
      if (n > 0) {
        this.#users.set(channel, n);
        return;
      }
      this.#users.delete(channel);
      this.#idle.add(channel);
      if (this.#idle.size > IDLE_CHANNELS) this.#unsubscribe(this.#idle.values().next().value!);
    };
    try {
      await sub;
    } catch (err) {
      stop();
      throw err;
    }
    return {
      wait: (ms, signal) => {
        if (woken || signal?.aborted) {
          woken = false;
          return Promise.resolve();
        }
        return new Promise<void>((resolve) => {
          const t = setTimeout(done, Math.max(1, Math.min(ms, POLL_MS)));
          signal?.addEventListener('abort', done, { once: true });
          function done(): void {
            clearTimeout(t);
            signal?.removeEventListener('abort', done);
            wake = undefined;
            woken = false;
            resolve();
          }
          wake = done;
        });
      },
      stop,
    };
  }

  #unsubscribe(channel: string): void {
    this.#idle.delete(channel);
    if (!this.#subscribed.delete(channel)) return;
    // In order after the SUBSCRIBE on the same connection: a later listen() subscribes again.
    this.#sub?.unsubscribe(channel).catch(() => undefined);
  }

  /** An object was closed: drop its channel's subscription unless a wait still uses it. */
  release(channel: string): void {
    if (!this.#users.has(channel)) this.#unsubscribe(channel);
  }
}

const sessions = new Map<string, Session>();
const sessionsWithAcks = new Set<Session>();
const flushAll = async (): Promise<void> => {
  await Promise.all([...sessionsWithAcks].map((s) => s.flushAcks()));
};
// A child flushes before it exits; a main program when its event loop runs dry.
registerExitTask(flushAll);
process.on('beforeExit', () => {
  if (sessionsWithAcks.size) void flushAll();
});

/** @internal The session of this process for a server, namespace and lease. */
export function session(where: Where): Session {
  const key = `${where.url}\u0000${where.namespace}\u0000${where.leaseMs}`;
  let s = sessions.get(key);
  if (!s) sessions.set(key, (s = new Session(where)));
  return s;
}

/** @internal Check the options every Redis object shares; returns where it lives. */
export function checkWhere(o: { url?: string; namespace?: string; leaseMs?: number }, what: string): Where {
  const url = o.url ?? 'redis://127.0.0.1:6379';
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url))
    throw new InvalidArgumentError(`${what}: url must be a redis:// or rediss:// URL, got ${JSON.stringify(url)}`);
  const leaseMs = o.leaseMs ?? DEFAULT_OBJECT_LEASE_MS;
  if (typeof leaseMs !== 'number' || !(leaseMs >= 50) || !Number.isFinite(leaseMs))
    throw new InvalidArgumentError(`${what}: leaseMs must be a number of milliseconds >= 50, got ${String(leaseMs)}`);
  return { url, namespace: checkNamespace(o.namespace ?? 'default'), leaseMs };
}

/** @internal Check an object's name (a fresh random one when none is given): it goes into keys. */
export function checkName(name: unknown, what: string): string {
  if (name === undefined || name === null) return `anon-${randomBytes(8).toString('hex')}`;
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,200}$/.test(name))
    throw new InvalidArgumentError(`${what}: name must be 1-200 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(name)}`);
  return name;
}

/** @internal A wait's options, checked as the local objects check them. */
export function waitArgs(
  options: { block?: boolean; timeout?: number; signal?: AbortSignal } | undefined,
  what: string,
): { block: boolean; deadline: number; signal: AbortSignal | undefined } {
  if (options === undefined) return { block: true, deadline: Infinity, signal: undefined };
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(`${what}: options must be an object like { block, timeout, signal }`);
  const block = options.block ?? true;
  if (typeof block !== 'boolean') throw new InvalidArgumentError(`${what}: block must be a boolean`);
  const t = options.timeout;
  if (t !== undefined && (typeof t !== 'number' || Number.isNaN(t)))
    throw new InvalidArgumentError(`${what}: timeout must be a number of milliseconds`);
  const deadline = !block ? 0 : t === undefined || t === Infinity ? Infinity : performance.now() + Math.max(0, t);
  return { block, deadline, signal: options.signal };
}

/** @internal Milliseconds left before `deadline` (Infinity for none). */
export function left(deadline: number): number {
  return deadline === Infinity ? Infinity : Math.max(0, deadline - performance.now());
}

/** @internal The error of a call on an object closed in this process. */
export function closedError(what: string): ProcessError {
  return new ProcessError(`${what} is closed in this process`, { code: 'ERR_MP_CLOSED' });
}

/** What values read from Redis may rebuild besides plain data and errors: module paths or URLs whose exports may arrive, or `'all'`. */
export type RedisTrust = 'all' | readonly (string | URL)[];

const TRUST_OPT_IN =
  "send plain data, or trust the module: getContext('redis', { trust: ['<module path or URL>'] }) (trust: 'all' also accepts functions as source text and library objects, and lets anyone who can write to the Redis namespace run code in this process)";

/** @internal The receive policy of a `trust` option (default: plain data and errors only). */
export function policyOf(trust: RedisTrust | undefined, what: string): ReceivePolicy {
  if (trust === 'all') return TRUST_ALL;
  if (trust === undefined) return trustModules(new Set(), { libraryObjects: false, optIn: TRUST_OPT_IN });
  if (!Array.isArray(trust) || !trust.every((m) => typeof m === 'string' || m instanceof URL))
    throw new InvalidArgumentError(`${what}: trust must be 'all' or an array of module paths or URLs`);
  return trustModules(new Set((trust as (string | URL)[]).map(toModuleUrl)), { libraryObjects: false, optIn: TRUST_OPT_IN });
}

/** @internal A `trust` option as it crosses to a child (URLs as strings). */
export function trustState(trust: RedisTrust | undefined): 'all' | string[] | undefined {
  return trust === undefined || trust === 'all' ? trust : trust.map(toModuleUrl);
}

/** @internal The error of a wait its signal aborted. */
export function aborted(signal: AbortSignal | undefined): AbortError {
  return new AbortError(undefined, { cause: signal?.reason });
}
