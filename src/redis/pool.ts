// The Pool on Redis: the local Pool's API, with chunks on a Redis stream that workers on any
// number of machines read (worker.ts), and results in this caller's own reply stream.
//
// Every call settles: a result arrives, or the task's error, or WorkerLostError (a chunk that
// kept killing workers), or RedisConnectionError (the server was unreachable longer than
// `giveUpMs`, or lost a chunk more than `maxDeliveries` times), or the call's timeout/signal.
// A watchdog checks every lease that each chunk still waiting is still in the task stream: one
// the server lost (restarted without persistence) is sent again.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

import { AbortError, InvalidArgumentError, ProcessError, RedisConnectionError, TimeoutError } from '../errors.js';
import { reduceFunction } from '../reduction/functions.js';
import { trustModules } from '../reduction/policy.js';
import { dumps, loads } from '../reduction/reduction.js';
import { inheritedExecArgv } from '../popen/popen.js';
import { isAsyncIterable } from '../util.js';
import { defaultChunksize, type AsyncOptions, type CallOptions, type MapOptions } from '../pool/progress.js';
import {
  APPLY,
  checkNamespace,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_DELIVERIES,
  ensureGroup,
  fieldsOf,
  keys,
  loadRedis,
  MAP,
  moduleHash,
  modulePath,
  STARMAP,
  type TaskFunction,
} from './protocol.js';
import { RedisAsyncResult } from './results.js';
import type { Redis } from 'ioredis';

export { RedisAsyncResult } from './results.js';

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
}

type AnyFn = (...args: never[]) => unknown;
type XReply = [Buffer, [Buffer, Buffer[]][]][];
interface Chunk {
  id: number;
  done: (ok: boolean, value: unknown) => void;
  entry: string | undefined;
  fields: (string | Buffer)[];
  sends: number;
}

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
  readonly #modules = new Set<string>();
  /** Modules the local workers were told since they started (a replacement starts with them). */
  readonly #localModules = new Set<string>();
  #respawns = 0;
  #stopping = false;
  readonly #allowed = new Set<string>();
  readonly #policy;
  readonly #children: ChildProcess[] = [];
  readonly #ready: Promise<void>;
  #seq = 0;
  #lastId = '0-0';
  #state = State.RUN;
  #downSince: number | undefined;
  #watch: ReturnType<typeof setInterval>;
  #calls = 0;
  #idle: (() => void) | undefined;
  #reading: Promise<void>;

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
    this.#policy = trustModules(this.#allowed, { libraryObjects: false, optIn: 'use the function from a module of this program' });
    for (const m of o.modules ?? []) this.#modules.add(path.resolve(m instanceof URL ? new URL(m).pathname : m));
    const Redis = loadRedis();
    const opts = { maxRetriesPerRequest: null };
    // Commands issued in one tick (a map's chunks) go out in one write, not one syscall each.
    this.#cmd = new Redis(this.#url, { ...opts, enableAutoPipelining: true });
    this.#blk = new Redis(this.#url, opts);
    for (const c of [this.#cmd, this.#blk]) c.on('error', () => undefined);
    this.#cmd.on('close', () => (this.#downSince ??= Date.now()));
    this.#cmd.on('ready', () => (this.#downSince = undefined));
    for (let i = 0; i < size; i++) this.#startLocal();
    this.#ready = ensureGroup(this.#cmd, this.#k.tasks);
    this.#ready.catch(() => undefined);
    this.#reading = this.#read();
    this.#watch = setInterval(() => void this.#watchdog().catch(() => undefined), this.#lease);
  }

  // ---- local workers ------------------------------------------------------------------------

  #startLocal(): void {
    const cli = path.join(__dirname, '..', 'cli', 'main.js');
    const args = [cli, 'worker', '--backend', this.#url, '--namespace', this.#ns, '--lease-ms', String(this.#lease)];
    args.push('--max-deliveries', String(this.#maxDeliveries), '--concurrency', String(LOCAL_CONCURRENCY), '--parent');
    for (const m of this.#modules) args.push('--module', m);
    for (const m of this.#localModules) if (!this.#modules.has(m)) args.push('--module', m);
    // The caller's loaders (`--import tsx`) too, so a TypeScript task module loads as it does here.
    const child = spawn(process.execPath, [...inheritedExecArgv(), ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('error', () => undefined);
    this.#children.push(child);
    // A local worker that died (a task killed it) is replaced, as in the local pool; its chunk
    // goes to another worker when its lease runs out.
    child.once('exit', () => {
      if (this.#state !== State.RUN && this.#state !== State.CLOSE) return;
      if (this.#stopping || this.#respawns++ > 1000) return;
      this.#children.splice(this.#children.indexOf(child), 1);
      this.#startLocal();
    });
  }

  /** Tell the local workers a module (they answer once they can call it). */
  async #allowLocal(file: string): Promise<void> {
    await Promise.all(
      this.#children
        .filter((c) => c.connected)
        .map(
          (c) =>
            new Promise<void>((resolve) => {
              const on = (m: unknown): void => {
                if ((m as { allowed?: string } | null)?.allowed !== file) return;
                c.off('message', on);
                c.off('exit', gone);
                resolve();
              };
              const gone = (): void => resolve();
              c.on('message', on);
              c.once('exit', gone);
              c.send({ allow: file });
            }),
        ),
    );
  }

  // ---- sending and receiving ----------------------------------------------------------------

  async #describe(fn: AnyFn, what: string): Promise<[TaskFunction, string]> {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`${what}: func must be a function, got ${typeof fn}`);
    const ref = reduceFunction(fn, 'the function', false);
    const file = modulePath(ref);
    if (!this.#allowed.has(file)) {
      this.#allowed.add(file);
      if (ref.kind === 'esm') this.#allowed.add(ref.url);
      this.#localModules.add(file);
      await this.#allowLocal(file);
    }
    const f: TaskFunction =
      ref.kind === 'cjs'
        ? { kind: 'cjs', module: file, exportName: ref.exportName, name: ref.name }
        : { kind: 'esm', module: (ref as { url: string }).url, exportName: (ref as { exportName: string }).exportName, name: ref.name };
    return [f, moduleHash(file)];
  }

  /** Send one chunk; resolves with its answer. */
  #send(f: TaskFunction, hash: string, kind: number, payload: unknown[], owner: Set<number>): Promise<unknown> {
    if (this.#state === State.TERMINATE) return Promise.reject(notRunning());
    const id = ++this.#seq;
    owner.add(id);
    const fields = [
      'c',
      this.#caller,
      'i',
      String(id),
      'k',
      String(kind),
      'f',
      JSON.stringify(f),
      'h',
      hash,
      'p',
      dumps(payload, 'argument'),
    ];
    return new Promise((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the task's own error, whatever it threw
      const chunk: Chunk = { id, done: (ok, v) => (ok ? resolve(v) : reject(v)), entry: undefined, fields, sends: 0 };
      this.#chunks.set(id, chunk);
      this.#xadd(chunk);
    });
  }

  #xadd(chunk: Chunk, firstFailure?: number): void {
    if (firstFailure === undefined) chunk.sends++;
    this.#ready
      .then(() => this.#cmd.xadd(this.#k.tasks, '*', ...chunk.fields))
      .then(
        (entry) => (chunk.entry = entry ?? undefined),
        (err: unknown) => {
          if (this.#chunks.get(chunk.id) !== chunk || this.#state === State.TERMINATE) return;
          // The connection dropped with the XADD unanswered: send it again once Redis is back
          // (a copy that did arrive is answered twice and the caller keeps the first answer).
          // A server's refusal (a ReplyError: OOM, ACL) or an outage past giveUpMs fails the call.
          const since = firstFailure ?? Date.now();
          if ((err as Error | null)?.name !== 'ReplyError' && Date.now() - since < this.#giveUp) {
            setTimeout(() => this.#xadd(chunk, since), 100).unref();
            return;
          }
          chunk.done(false, new RedisConnectionError(`could not send a task to ${this.#safeUrl()}: ${String(err)}`, { cause: err }));
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
        const m = fieldsOf(flat);
        const chunk = this.#chunks.get(Number(m.get('i')?.toString()));
        if (!chunk) continue; // answered already (a redelivery), or its call was settled
        this.#chunks.delete(Number(m.get('i')!.toString()));
        try {
          const [ok, value] = (await loads(m.get('r')!, this.#policy)) as [boolean, unknown];
          chunk.done(ok, value);
        } catch (err) {
          chunk.done(false, err);
        }
      }
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
    const waiting = [...this.#chunks].filter(([, c]) => c.entry).slice(0, 500);
    const p = this.#cmd.pipeline();
    for (const [, c] of waiting) p.xrange(this.#k.tasks, c.entry!, c.entry!);
    const r = (await p.exec()) ?? [];
    const lost = waiting.filter((_, i) => Array.isArray(r[i]?.[1]) && (r[i][1] as unknown[]).length === 0);
    if (!lost.length) return;
    const got = await this.#cmd.xreadBuffer('COUNT', 100000, 'STREAMS', this.#k.reply(this.#caller), this.#lastId);
    if (got) await this.#take(got);
    for (const [id, c] of lost) {
      if (!this.#chunks.has(id)) continue;
      if (c.sends >= this.#maxDeliveries) {
        this.#chunks.delete(id);
        c.done(false, new RedisConnectionError(`the Redis server lost a task ${c.sends} times (restarted without persistence?)`));
      } else this.#xadd(c);
    }
  }

  #failAll(err: Error): void {
    const all = [...this.#chunks.values()];
    this.#chunks.clear();
    for (const c of all) c.done(false, err);
  }

  // ---- calls --------------------------------------------------------------------------------

  /** Run a call: its chunks are dropped from the queue when it settles early (error, timeout, signal). */
  #call<T>(o: CallOptions | undefined, body: (owner: Set<number>) => Promise<T>): Promise<T> {
    if (this.#state !== State.RUN) return Promise.reject(notRunning());
    const owner = new Set<number>();
    this.#calls++;
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
    const p = Promise.race([body(owner), guard]).finally(() => {
      cleanup();
      this.#drop(owner);
      if (--this.#calls === 0) this.#idle?.();
    });
    return p;
  }

  #drop(owner: Set<number>): void {
    const entries: string[] = [];
    for (const id of owner) {
      const c = this.#chunks.get(id);
      if (!c) continue;
      this.#chunks.delete(id);
      if (c.entry) entries.push(c.entry);
    }
    if (entries.length) this.#cmd.xdel(this.#k.tasks, ...entries).catch(() => undefined);
  }

  async #items(iterable: Iterable<unknown> | AsyncIterable<unknown>): Promise<unknown[]> {
    if (isAsyncIterable(iterable)) {
      const out: unknown[] = [];
      for await (const x of iterable) out.push(x);
      return out;
    }
    if (typeof (iterable as Partial<Iterable<unknown>> | null | undefined)?.[Symbol.iterator] !== 'function')
      throw new InvalidArgumentError('map(iterable): an iterable or async iterable');
    return Array.from(iterable);
  }

  async #map(
    fn: AnyFn,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    kind: number,
    o: MapOptions,
    owner: Set<number>,
  ): Promise<unknown[]> {
    const [f, hash] = await this.#describe(fn, kind === MAP ? 'map' : 'starmap');
    const items = await this.#items(iterable);
    const size = o.chunksize ?? (defaultChunksize(items.length, Math.max(1, this.#size)) || 1);
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('map(chunksize): an integer >= 1');
    const parts: Promise<unknown>[] = [];
    for (let i = 0; i < items.length; i += size) parts.push(this.#send(f, hash, kind, items.slice(i, i + size), owner));
    return (await Promise.all(parts)).flat(1);
  }

  /** Call `fn(...args)` on a worker (Python: `apply`). Rejects with the task's error, as its class. */
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: CallOptions): Promise<Awaited<R>> {
    return this.#call(options, async (owner) => {
      const [f, hash] = await this.#describe(fn, 'apply');
      return await this.#send(f, hash, APPLY, args ?? [], owner);
    }) as Promise<Awaited<R>>;
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
    const [f, hash] = await this.#describe(fn, 'imap');
    const owner = new Set<number>();
    const window = Math.max(16, 4 * this.#size);
    const it = isAsyncIterable(iterable) ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
    const inflight: { p: Promise<unknown[]>; n: number }[] = [];
    let seq = 0;
    let ended = false;
    const fill = async (): Promise<void> => {
      while (!ended && inflight.length < window) {
        const part: unknown[] = [];
        while (part.length < size) {
          const r = await it.next();
          if (r.done) {
            ended = true;
            break;
          }
          part.push(r.value);
        }
        if (!part.length) break;
        const n = seq++;
        const p = this.#send(f, hash, MAP, part, owner) as Promise<unknown[]>;
        p.catch(() => undefined);
        inflight.push({ p: p.then((v) => (tag.set(p, n), v)), n });
      }
    };
    const tag = new WeakMap<Promise<unknown>, number>();
    this.#calls++;
    try {
      await fill();
      while (inflight.length) {
        let i = 0;
        if (!ordered) {
          const n = await Promise.race(
            inflight.map((x) =>
              x.p.then(
                () => x.n,
                () => x.n,
              ),
            ),
          );
          i = inflight.findIndex((x) => x.n === n);
        }
        const [x] = inflight.splice(i, 1);
        const values = await x!.p;
        await fill();
        yield* values;
      }
    } finally {
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
    this.#stopping = true;
    this.#failAll(notRunning());
    for (const c of this.#children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    this.#idle?.();
  }

  /** Wait for the calls to finish and the local workers to exit (after close or terminate). @throws ProcessError when still running. */
  async join(): Promise<void> {
    if (this.#state === State.RUN)
      throw new ProcessError('Pool is still running: call close() or terminate() first', { code: 'ERR_MP_POOL_RUNNING' });
    if (this.#calls > 0 && (this.#state as State) === State.CLOSE) await new Promise<void>((r) => (this.#idle = r));
    this.#stopping = true;
    for (const c of this.#children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all(
      this.#children.map((c) =>
        c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r())),
      ),
    );
    this.#state = State.TERMINATE;
    clearInterval(this.#watch);
    this.#blk.disconnect();
    await this.#reading;
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
    return this.#children;
  }

  toString(): string {
    return `<RedisPool namespace=${this.#ns} processes=${this.#size} state=${['RUN', 'CLOSE', 'TERMINATE'][this.#state]}>`;
  }
}

function cmpId(a: string, b: string): number {
  const [a1, a2] = a.split('-').map(Number) as [number, number];
  const [b1, b2] = b.split('-').map(Number) as [number, number];
  return a1 - b1 || a2 - b2;
}
