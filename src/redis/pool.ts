// The Pool on Redis: the local Pool's API, with chunks on a Redis stream that workers on any
// number of machines read (worker.ts), and results in this caller's own reply stream.
//
// Every call settles: a result arrives, or the task's error, or WorkerLostError (a chunk that
// kept killing workers), or RedisConnectionError (the server was unreachable longer than
// `giveUpMs`, or lost a chunk more than `maxDeliveries` times), or the call's timeout/signal.
// A watchdog checks every lease that each chunk still waiting is still in the task stream: one
// the server lost (restarted without persistence) is sent again.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

import { InvalidArgumentError, ProcessError, RedisConnectionError } from '../errors.js';
import { reduceFunction } from '../reduction/functions.js';
import { trustModules } from '../reduction/policy.js';
import { dumps, loads } from '../reduction/reduction.js';
import { pack } from '../reduction/fastcodec.js';
import {
  checkCallOptions,
  checkPoolObservers,
  defaultChunksize,
  Tally,
  type AsyncOptions,
  type CallOptions,
  type MapOptions,
  type TaskTiming,
} from '../pool/progress.js';
import {
  APPLY,
  checkNamespace,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_DELIVERIES,
  ensureGroup,
  keys,
  loadRedis,
  MAP,
  moduleHash,
  modulePath,
  cmpId,
  readReply,
  STARMAP,
  type TaskFunction,
} from './protocol.js';
import { initializer, LocalWorkers } from './local.js';
import { collect, RedisAsyncResult, windowed } from './results.js';
import { stopper, type AnyFn, type RedisPoolOptions } from './options.js';
import { bundle, type Chunk, type Owner, type Sent } from './bundles.js';
import type { Redis } from 'ioredis';

export { RedisAsyncResult } from './results.js';
export type { RedisPoolOptions } from './options.js';

type XReply = [Buffer, [Buffer, Buffer[]][]][];
/**
 * Chunks a local worker holds at once. Sync tasks still run one after another; holding a few
 * saves a round trip to Redis per chunk (one read fetches several) at the cost of more chunks
 * waiting for the lease when that worker dies.
 */
const LOCAL_CONCURRENCY = 16;

const enum State {
  RUN,
  CLOSE,
  TERMINATE,
}

function notRunning(): ProcessError {
  return new ProcessError('Pool not running', { code: 'ERR_MP_POOL_NOT_RUNNING' });
}

/**
 * A pool whose workers read tasks from Redis (same API as `Pool`): functions cross as an export
 * of a module (with the module's sha256), arguments and results through the library's serializer.
 * @throws InvalidArgumentError for bad options.
 */
export class RedisPool {
  readonly #url: string;
  readonly #ns: string;
  readonly #k: ReturnType<typeof keys>;
  readonly #size: number;
  readonly #lease: number;
  readonly #maxDeliveries: number;
  readonly #giveUp: number;
  readonly #caller = randomBytes(8).toString('hex');
  readonly #cmd: Redis;
  readonly #blk: Redis;
  readonly #chunks = new Map<number, Chunk>();
  readonly #allowed = new Set<string>();
  readonly #policy;
  /** Pool-wide onProgress/onTask; undefined when not asked for. */
  readonly #tally: Tally | undefined;
  readonly #local: LocalWorkers;
  readonly #ready: Promise<void>;
  #seq = 0;
  /** Chunks sent in this tick, bundled when it ends. */
  #pending: Chunk[] = [];
  #lastId = '0-0';
  #state = State.RUN;
  #downSince: number | undefined;
  #watch: ReturnType<typeof setInterval>;
  #calls = 0;
  #idle: (() => void) | undefined;
  #reading: Promise<void>;
  /** Reply entries read and not yet deleted. */
  #replied: string[] = [];
  #trimTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(processes?: number | null | RedisPoolOptions, options: RedisPoolOptions = {}) {
    const o: RedisPoolOptions =
      typeof processes === 'object' && processes !== null ? processes : { ...options, processes: processes ?? options.processes };
    const size = o.processes ?? 1;
    if (!Number.isInteger(size) || size < 0) throw new InvalidArgumentError(`RedisPool(processes): an integer >= 0, got ${String(size)}`);
    this.#size = size;
    this.#url = o.url ?? 'redis://127.0.0.1:6379';
    this.#ns = checkNamespace(o.namespace ?? 'default');
    this.#k = keys(this.#ns);
    this.#lease = o.leaseMs ?? DEFAULT_LEASE_MS;
    this.#maxDeliveries = o.maxDeliveries ?? DEFAULT_MAX_DELIVERIES;
    this.#giveUp = o.giveUpMs ?? Math.max(4 * this.#lease, 10_000);
    if (!(this.#lease >= 50)) throw new InvalidArgumentError('RedisPool({ leaseMs }): at least 50 ms');
    if (!Number.isInteger(this.#maxDeliveries) || this.#maxDeliveries < 1)
      throw new InvalidArgumentError('RedisPool({ maxDeliveries }): an integer >= 1');
    checkPoolObservers(o);
    this.#tally = o.onProgress || o.onTask ? new Tally(o.onProgress, o.onTask, 0) : undefined;
    this.#policy = trustModules(this.#allowed, { libraryObjects: false, optIn: 'use the function from a module of this program' });
    const modules = new Set((o.modules ?? []).map((m) => path.resolve(m instanceof URL ? new URL(m).pathname : m)));
    // Checked before any connection is made: a pool that throws here leaves nothing open.
    const init = initializer(o.initializer, o.initargs);
    const Redis = loadRedis();
    const opts = { maxRetriesPerRequest: null };
    // No auto-pipelining: the chunks of a tick already go out as bundles, and its setImmediate
    // would add a turn of the event loop to every round trip.
    this.#cmd = new Redis(this.#url, opts);
    this.#blk = new Redis(this.#url, opts);
    for (const c of [this.#cmd, this.#blk]) c.on('error', () => undefined);
    this.#cmd.on('close', () => (this.#downSince ??= Date.now()));
    this.#cmd.on('ready', () => (this.#downSince = undefined));
    const spec = { url: this.#url, namespace: this.#ns, leaseMs: this.#lease, maxDeliveries: this.#maxDeliveries };
    this.#local = new LocalWorkers({ ...spec, concurrency: LOCAL_CONCURRENCY, modules, ...init }, size);
    this.#ready = ensureGroup(this.#cmd, this.#k.tasks);
    this.#ready.catch(() => undefined);
    this.#reading = this.#read();
    this.#watch = setInterval(() => void this.#watchdog().catch(() => undefined), this.#lease);
  }

  // ---- sending and receiving ----------------------------------------------------------------

  /** The function as a bundle names it: JSON of [function, module sha256]. */
  async #describe(fn: AnyFn, what: string): Promise<string> {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`${what}: func must be a function, got ${typeof fn}`);
    const ref = reduceFunction(fn, 'the function', false);
    const file = modulePath(ref);
    if (!this.#allowed.has(file)) {
      this.#allowed.add(file);
      if (ref.kind === 'esm') this.#allowed.add(ref.url);
      await this.#local.allow(file);
    }
    const f: TaskFunction =
      ref.kind === 'cjs'
        ? { kind: 'cjs', module: file, exportName: ref.exportName, name: ref.name }
        : { kind: 'esm', module: (ref as { url: string }).url, exportName: (ref as { exportName: string }).exportName, name: ref.name };
    return JSON.stringify([f, moduleHash(file)]);
  }

  /** Send one chunk (in this tick's bundle); resolves with its answer. */
  #send(fn: string, kind: number, payload: unknown[], owner: Owner, index = 0): Promise<unknown> {
    if (this.#state === State.TERMINATE) return Promise.reject(notRunning());
    const id = ++this.#seq;
    owner.ids.add(id);
    const items = kind === APPLY ? 1 : payload.length;
    this.#tally?.add(items);
    // The payload array is ours (a slice of the input, or apply's args): its primitives pack
    // without V8's serializer, as in the local pool.
    const body = pack(payload, kind === STARMAP ? 2 : 1) ?? dumps(payload, 'argument');
    return new Promise((resolve, reject) => {
      const chunk: Chunk = {
        id,
        done: (ok, v) => {
          owner.ids.delete(id);
          if (ok) resolve(v);
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the task's own error, whatever it threw
          else reject(v);
        },
        kind,
        fn,
        payload: body,
        sends: 0,
        bundle: undefined,
        owner,
        index,
        items,
        sentAt: performance.now(),
      };
      this.#chunks.set(id, chunk);
      this.#queue(chunk);
    });
  }

  #queue(chunk: Chunk): void {
    if (this.#pending.push(chunk) === 1) process.nextTick(() => this.#flush());
  }

  /** Bundle the chunks of this tick: one stream entry per bundle. */
  #flush(): void {
    const all = this.#pending.filter((c) => this.#chunks.get(c.id) === c);
    this.#pending = [];
    for (const sent of bundle(all, this.#k.tasks, this.#caller)) this.#xadd(sent);
  }

  /** Whether a bundle still carries a chunk waiting for its answer. */
  #live(sent: Sent): boolean {
    return sent.chunks.some((c) => this.#chunks.get(c.id) === c && c.bundle === sent);
  }

  #xadd(sent: Sent, firstFailure?: number): void {
    this.#ready
      .then(() => this.#cmd.xadd(this.#k.tasks, '*', ...sent.fields))
      .then(
        (entry) => {
          sent.entry = entry ?? undefined;
          // Every chunk of it was settled (its calls ended early) before Redis answered.
          if (entry && !this.#live(sent)) this.#cmd.xdel(this.#k.tasks, entry).catch(() => undefined);
        },
        (err: unknown) => {
          if (!this.#live(sent) || this.#state === State.TERMINATE) return;
          // The connection dropped with the XADD unanswered: send it again once Redis is back
          // (a copy that did arrive is answered twice and the caller keeps the first answer).
          // A server's refusal (a ReplyError: OOM, ACL) or an outage past giveUpMs fails the calls.
          const since = firstFailure ?? Date.now();
          if ((err as Error | null)?.name !== 'ReplyError' && Date.now() - since < this.#giveUp) {
            setTimeout(() => this.#xadd(sent, since), 100).unref();
            return;
          }
          const e = new RedisConnectionError(`could not send a task to ${this.#safeUrl()}: ${String(err)}`, { cause: err });
          for (const c of sent.chunks)
            if (this.#chunks.get(c.id) === c && c.bundle === sent) {
              this.#chunks.delete(c.id);
              c.done(false, e);
            }
        },
      );
  }

  #safeUrl(): string {
    return this.#url.replace(/\/\/[^@/]*@/, '//***@');
  }

  async #read(): Promise<void> {
    const reply = this.#k.reply(this.#caller);
    while (this.#state !== State.TERMINATE) {
      let got: XReply | null;
      try {
        got = await this.#blk.xreadBuffer('COUNT', 1000, 'BLOCK', 500, 'STREAMS', reply, this.#lastId);
      } catch {
        if ((this.#state as State) === State.TERMINATE) return;
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (got) await this.#take(got);
    }
  }

  async #take(got: XReply): Promise<void> {
    const ids: string[] = [];
    for (const [, entries] of got)
      for (const [eid, flat] of entries) {
        const e = eid.toString();
        ids.push(e);
        if (cmpId(e, this.#lastId) > 0) this.#lastId = e;
        let r: ReturnType<typeof readReply>;
        try {
          r = readReply(flat);
        } catch {
          continue; // not a reply of this version: its chunks are sent again when their entry is gone
        }
        if (r instanceof Map) {
          // A worker split a redelivered bundle: each chunk now has an entry of its own.
          for (const [id, entry] of r) {
            const c = this.#chunks.get(id);
            if (c) c.bundle = { entry, stream: this.#k.retry, chunks: [c], fields: [] };
          }
          continue;
        }
        for (const { id, body, runUs } of r.answers) {
          const chunk = this.#chunks.get(id);
          if (!chunk) continue; // answered already (a redelivery), or its call was settled
          this.#chunks.delete(id);
          let ok = false;
          let value: unknown;
          try {
            [ok, value] = (await loads(body, this.#policy)) as [boolean, unknown];
          } catch (err) {
            value = err;
          }
          if (chunk.owner.tally || this.#tally) this.#observe(chunk, r.worker, ok, runUs);
          chunk.done(ok, value);
        }
      }
    if (!ids.length) return;
    // Read answers leave the reply stream in batches: a command per read would add a round
    // trip's work for the server and this process to every call when one is in flight.
    this.#replied.push(...ids);
    if (this.#replied.length >= 256) this.#trimReplies();
    else this.#trimTimer ??= setTimeout(() => this.#trimReplies(), 50).unref();
  }

  /**
   * A chunk's timing for onTask/onProgress. The worker's clock may be another machine's: the
   * queue wait is the time since sending less the run time the worker measured.
   */
  #observe(c: Chunk, worker: string, ok: boolean, runUs: number): void {
    const runMs = runUs / 1000;
    const t: TaskTiming = {
      worker,
      index: c.index,
      items: c.items,
      queuedMs: Math.max(0, performance.now() - c.sentAt - runMs),
      runMs,
      ok,
    };
    c.owner.tally?.task(t);
    this.#tally?.task(t);
  }

  #trimReplies(): void {
    if (this.#trimTimer) clearTimeout(this.#trimTimer);
    this.#trimTimer = undefined;
    const ids = this.#replied;
    this.#replied = [];
    if (ids.length) this.#cmd.xdel(this.#k.reply(this.#caller), ...ids).catch(() => undefined);
  }

  async #watchdog(): Promise<void> {
    if (this.#downSince !== undefined && Date.now() - this.#downSince > this.#giveUp) {
      this.#failAll(
        new RedisConnectionError(`the Redis server ${this.#safeUrl()} was unreachable for more than ${this.#giveUp} ms (giveUpMs)`),
      );
      return;
    }
    if (this.#downSince !== undefined || !this.#chunks.size) return;
    // Chunks the server no longer has (it restarted without persistence): first take the
    // answers already written (an answer is written in the same MULTI as the entry's removal).
    const sent = new Set<Sent>();
    for (const c of this.#chunks.values()) if (c.bundle?.entry && sent.size < 500) sent.add(c.bundle);
    const waiting = [...sent];
    const p = this.#cmd.pipeline();
    for (const b of waiting) p.xrange(b.stream, b.entry!, b.entry!);
    const r = (await p.exec()) ?? [];
    const lost = waiting.filter((_, i) => Array.isArray(r[i]?.[1]) && (r[i][1] as unknown[]).length === 0);
    if (!lost.length) return;
    const got = await this.#cmd.xreadBuffer('COUNT', 100000, 'STREAMS', this.#k.reply(this.#caller), this.#lastId);
    if (got) await this.#take(got);
    for (const b of lost)
      for (const c of b.chunks) {
        if (this.#chunks.get(c.id) !== c || c.bundle !== b) continue;
        if (c.sends >= this.#maxDeliveries) {
          this.#chunks.delete(c.id);
          c.done(false, new RedisConnectionError(`the Redis server lost a task ${c.sends} times (restarted without persistence?)`));
        } else this.#queue(c);
      }
  }

  #failAll(err: Error): void {
    const all = [...this.#chunks.values()];
    this.#chunks.clear();
    for (const c of all) c.done(false, err);
  }

  // ---- calls --------------------------------------------------------------------------------

  /** Run a call: its chunks are dropped from the queue when it settles early (error, timeout, signal). */
  #call<T>(o: CallOptions | undefined, body: (owner: Owner) => Promise<T>, total?: number): Promise<T> {
    if (this.#state !== State.RUN) return Promise.reject(notRunning());
    let owner: Owner;
    try {
      checkCallOptions(o, 'RedisPool');
      owner = this.#owner(o, total);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#calls++;
    const [guard, cleanup] = stopper(o);
    const p = Promise.race([body(owner), guard]).finally(() => {
      cleanup();
      this.#drop(owner);
      if (--this.#calls === 0) this.#idle?.();
    });
    return p;
  }

  #owner(o: CallOptions | undefined, total?: number): Owner {
    return { ids: new Set(), tally: o?.onProgress || o?.onTask ? new Tally(o.onProgress, o.onTask, total) : undefined };
  }

  #drop(owner: Owner): void {
    const touched = new Set<Sent>();
    for (const id of owner.ids) {
      const c = this.#chunks.get(id);
      if (!c) continue;
      this.#chunks.delete(id);
      if (c.bundle) touched.add(c.bundle);
    }
    // A bundle leaves the queue once none of its chunks is waiting (others' chunks still run).
    for (const stream of [this.#k.tasks, this.#k.retry]) {
      const entries = [...touched].filter((b) => b.stream === stream && b.entry && !this.#live(b)).map((b) => b.entry!);
      if (entries.length) this.#cmd.xdel(stream, ...entries).catch(() => undefined);
    }
  }

  async #map(
    fn: AnyFn,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    kind: number,
    o: MapOptions,
    owner: Owner,
  ): Promise<unknown[]> {
    const f = await this.#describe(fn, kind === MAP ? 'map' : 'starmap');
    const items = await collect(iterable);
    const size = o.chunksize ?? (defaultChunksize(items.length, Math.max(1, this.#size)) || 1);
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('map(chunksize): an integer >= 1');
    const parts: Promise<unknown>[] = [];
    owner.tally?.setTotal(items.length, false);
    for (let i = 0; i < items.length; i += size) parts.push(this.#send(f, kind, items.slice(i, i + size), owner, i));
    return (await Promise.all(parts)).flat(1);
  }

  /** Call `fn(...args)` on a worker (Python: `apply`). Rejects with the task's error, as its class. */
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: CallOptions): Promise<Awaited<R>> {
    return this.#call(
      options,
      async (owner) => {
        const f = await this.#describe(fn, 'apply');
        return await this.#send(f, APPLY, args ?? [], owner);
      },
      1,
    ) as Promise<Awaited<R>>;
  }

  /** `apply` returning a RedisAsyncResult; `callback`/`errorCallback` run when it settles. */
  applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: AsyncOptions<Awaited<R>>): RedisAsyncResult<Awaited<R>> {
    return new RedisAsyncResult(this.apply(fn, args, options), options?.callback, options?.errorCallback);
  }

  /** `fn` over every item, results in order (Python: `map`); chunks of `chunksize` items. */
  map<T, R>(fn: (item: T) => R, iterable: Iterable<T> | AsyncIterable<T>, chunksize?: number | MapOptions | null): Promise<Awaited<R>[]> {
    const o = typeof chunksize === 'object' && chunksize !== null ? chunksize : { chunksize };
    return this.#call(o, (owner) => this.#map(fn as AnyFn, iterable, MAP, o, owner)) as Promise<Awaited<R>[]>;
  }

  /** `map` returning a RedisAsyncResult. */
  mapAsync<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    options?: MapOptions & AsyncOptions<Awaited<R>[]>,
  ): RedisAsyncResult<Awaited<R>[]> {
    return new RedisAsyncResult(this.map(fn, iterable, options ?? {}), options?.callback, options?.errorCallback);
  }

  /** `fn(...args)` for every args array (Python: `starmap`). */
  starmap<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | MapOptions | null,
  ): Promise<Awaited<R>[]> {
    const o = typeof chunksize === 'object' && chunksize !== null ? chunksize : { chunksize };
    return this.#call(o, (owner) => this.#map(fn as AnyFn, iterable, STARMAP, o, owner)) as Promise<Awaited<R>[]>;
  }

  /** `starmap` returning a RedisAsyncResult. */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    options?: MapOptions & AsyncOptions<Awaited<R>[]>,
  ): RedisAsyncResult<Awaited<R>[]> {
    return new RedisAsyncResult(this.starmap(fn, iterable, options ?? {}), options?.callback, options?.errorCallback);
  }

  /** Results in order as they come (Python: `imap`); reads the input lazily, a window of chunks ahead. */
  imap<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions | null,
  ): AsyncGenerator<Awaited<R>> {
    return this.#imap(fn, iterable, chunksize, true) as AsyncGenerator<Awaited<R>>;
  }

  /** Results in completion order (Python: `imap_unordered`). */
  imapUnordered<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions | null,
  ): AsyncGenerator<Awaited<R>> {
    return this.#imap(fn, iterable, chunksize, false) as AsyncGenerator<Awaited<R>>;
  }

  async *#imap(
    fn: AnyFn,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksize: number | MapOptions | null | undefined,
    ordered: boolean,
  ): AsyncGenerator {
    const o = typeof chunksize === 'object' && chunksize !== null ? chunksize : { chunksize };
    const size = o.chunksize ?? 1;
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('imap(chunksize): an integer >= 1');
    if (this.#state !== State.RUN) throw notRunning();
    const f = await this.#describe(fn, 'imap');
    checkCallOptions(o, 'RedisPool.imap');
    const owner = this.#owner(o);
    this.#calls++;
    const [guard, cleanup] = stopper(o);
    guard.catch(() => undefined);
    try {
      yield* windowed(
        iterable,
        size,
        Math.max(16, 4 * this.#size),
        ordered,
        (part, index) => this.#send(f, MAP, part, owner, index) as Promise<unknown[]>,
        (total) => owner.tally?.setTotal(total),
        guard,
      );
    } finally {
      cleanup();
      this.#drop(owner);
      if (--this.#calls === 0) this.#idle?.();
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** No more calls; the calls made still finish (Python: `close`). */
  close(): void {
    if (this.#state === State.RUN) this.#state = State.CLOSE;
  }

  /** Stop now: waiting calls reject with ProcessError (ERR_MP_POOL_NOT_RUNNING), local workers are killed. */
  terminate(): void {
    if (this.#state === State.TERMINATE) return;
    this.#state = State.TERMINATE;
    this.#failAll(notRunning());
    this.#local.stop('SIGKILL');
    this.#idle?.();
  }

  /** Wait for the calls to finish and the local workers to exit (after close or terminate). @throws ProcessError when still running. */
  async join(): Promise<void> {
    if (this.#state === State.RUN)
      throw new ProcessError('Pool is still running: call close() or terminate() first', { code: 'ERR_MP_POOL_RUNNING' });
    if (this.#calls > 0 && (this.#state as State) === State.CLOSE) await new Promise<void>((r) => (this.#idle = r));
    this.#local.stop('SIGTERM');
    await this.#local.exited();
    this.#state = State.TERMINATE;
    clearInterval(this.#watch);
    this.#blk.disconnect();
    await this.#reading;
    clearTimeout(this.#trimTimer);
    await this.#cmd.del(this.#k.reply(this.#caller)).catch(() => undefined);
    this.#cmd.disconnect();
  }

  /** `await using pool = new RedisPool(...)`: terminate and join. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }

  /** @internal The local worker processes (tests). */
  get _children(): readonly ChildProcess[] {
    return this.#local.children;
  }

  toString(): string {
    return `<RedisPool namespace=${this.#ns} processes=${this.#size} state=${['RUN', 'CLOSE', 'TERMINATE'][this.#state]}>`;
  }
}
