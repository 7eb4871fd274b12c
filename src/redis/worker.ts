// A worker of the Redis pool: the loop behind `multiproc worker --backend redis://…` and behind
// the local workers a Redis pool starts. It reads chunks through the namespace's consumer
// group, runs exports of the modules it was started with (never anything a task carries as
// code), and answers into the caller's reply stream in the same MULTI as its XACK.
//
// Leases: an entry a worker read stays in the group's pending list until acknowledged. Every
// worker runs XAUTOCLAIM over entries idle longer than the lease (their worker died or hangs);
// a worker renews its own running entries (XCLAIM with min-idle 0 resets their idle time).
// The delivery counter Redis keeps per entry turns a task that keeps killing workers into a
// WorkerLostError after `maxDeliveries`, sent to its caller and to the dead-letter stream.
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

import { InvalidArgumentError, ModuleNotAllowedError, StaleModuleError, WorkerLostError } from '../errors.js';
import { loadFunction, type FunctionRef } from '../reduction/functions.js';
import { trustModules } from '../reduction/policy.js';
import { dumps, loads } from '../reduction/reduction.js';
import { pack } from '../reduction/fastcodec.js';
import { isThenable } from '../util.js';
import {
  APPLY,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_DELIVERIES,
  ANSWER_SCRIPT,
  type Bundle,
  bundleFields,
  ensureGroup,
  GROUP,
  keys,
  loadRedis,
  MAP,
  moduleHash,
  readBundle,
  replyFields,
  SPLIT_SCRIPT,
  type TaskFunction,
  type WireChunk,
} from './protocol.js';

/** Options of a Redis pool worker. */
export interface RedisWorkerOptions {
  /** redis:// or rediss:// URL (user, password and TLS go in it). */
  url: string;
  namespace: string;
  /** Module files whose exports this worker may call. */
  modules: readonly string[];
  /** `file#export`: run once with `initargs` before the first task (the file is allowed too). */
  initializer?: string;
  initargs?: readonly unknown[];
  /** Chunks run at the same time in this process (async tasks overlap; sync ones take turns); it may hold more, waiting. */
  concurrency?: number;
  leaseMs?: number;
  maxDeliveries?: number;
  /** A line about what the worker does (start, drain, stop); default: none. */
  log?: (line: string) => void;
}

/** A running worker: drain() finishes the chunks in hand and takes no more; stop() ends now. */
export interface RedisWorkerHandle {
  readonly id: string;
  readonly done: Promise<void>;
  /** Allow one more module (the local pool telling its own workers). */
  allow(file: string): void;
  drain(): Promise<void>;
  stop(): Promise<void>;
}

type AnyFn = (...args: unknown[]) => unknown;
/** A bundle this worker holds: acknowledged once its last chunk is answered. */
interface Held {
  entryId: string;
  /** The stream it came from: the task stream, or the retry stream. */
  stream: string;
  bundle: Bundle;
  left: number;
}
// Fields are null for an entry deleted while pending (Redis 6.2's XAUTOCLAIM lists those).
type Entry = [id: Buffer, fields: Buffer[] | null];

/** Start a worker; resolves once it is connected and reading. */
export async function startRedisWorker(o: RedisWorkerOptions): Promise<RedisWorkerHandle> {
  const Redis = loadRedis();
  const k = keys(o.namespace);
  const lease = o.leaseMs ?? DEFAULT_LEASE_MS;
  const maxDeliveries = o.maxDeliveries ?? DEFAULT_MAX_DELIVERIES;
  const concurrency = o.concurrency ?? 1;
  const id = `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const log = o.log ?? (() => undefined);
  const opts = { maxRetriesPerRequest: null, lazyConnect: false };
  // No auto-pipelining here: with it, ioredis never answered XAUTOCLAIM (sent through callBuffer).
  const cmd = new Redis(o.url, opts);
  const blk = new Redis(o.url, opts);
  cmd.on('error', () => undefined);
  // EVALSHA, falling back to EVAL when the server does not have the script yet.
  cmd.defineCommand('mpAnswer', { lua: ANSWER_SCRIPT });
  const answerScript = (...args: (string | number | Buffer)[]): Promise<unknown> =>
    (cmd as unknown as { mpAnswer(...a: (string | number | Buffer)[]): Promise<unknown> }).mpAnswer(...args);
  blk.on('error', () => undefined);

  // Modules by content hash, and by file name (to tell a stale module from an unknown one).
  const byHash = new Map<string, string>();
  const byName = new Map<string, string>();
  const allowed = new Set<string>();
  const allow = (file: string): void => {
    const abs = path.resolve(file);
    const h = moduleHash(abs);
    byHash.set(h, abs);
    byName.set(path.basename(abs), abs);
    allowed.add(abs).add(pathToFileURL(abs).href);
  };
  for (const m of o.modules) allow(m);
  const policy = trustModules(allowed, { libraryObjects: false, optIn: 'start the worker with --module <file>' });

  // Bundles held (their leases are renewed), chunks running, and the promises drain waits for.
  const held = new Map<string, Held>();
  let active = 0;
  // Chunks of held bundles waiting for a slot: at most `concurrency` chunks run at once.
  const waiting: [Held, WireChunk][] = [];
  const inflight = new Set<Promise<void>>();
  // Flags the loop reads while drain() and stop() set them.
  const st = { draining: false, stopped: false, pausing: false };
  const halted = (): boolean => st.stopped || st.draining;
  const paused = (): boolean => st.pausing;
  let wake: (() => void) | undefined;
  const done = { resolve: (): void => undefined };
  const donePromise = new Promise<void>((r) => (done.resolve = r));

  const heartbeat = async (): Promise<void> => {
    const info = JSON.stringify({
      id,
      pid: process.pid,
      host: os.hostname(),
      running: active,
      concurrency,
      draining: st.draining,
      at: Date.now(),
    });
    await cmd.set(k.worker(id), info, 'PX', lease * 3);
  };

  // Functions by hash and export: a bundle names its functions, and loading one is not free.
  const fnCache = new Map<string, AnyFn>();
  async function fn(f: TaskFunction, hash: string): Promise<AnyFn> {
    const key = `${hash}\0${f.exportName ?? ''}`;
    const hit = fnCache.get(key);
    if (hit) return hit;
    const file = byHash.get(hash);
    const shown = `${f.exportName ?? 'module.exports'} of ${f.module}`;
    if (!file) {
      if (byName.has(path.basename(f.module)))
        throw new StaleModuleError(
          `worker ${id} has ${byName.get(path.basename(f.module))} with other content than the caller's ${f.module} (sha256 ${hash.slice(0, 12)}…): restart the worker with the caller's version of the module`,
        );
      throw new ModuleNotAllowedError(
        `worker ${id} was not started with the module of ${shown}: start it with --module <that file> (a worker only calls exports of its own modules)`,
      );
    }
    const ref: FunctionRef =
      f.kind === 'cjs'
        ? { kind: 'cjs', file, exportName: f.exportName, name: f.name }
        : { kind: 'esm', url: pathToFileURL(file).href, exportName: f.exportName ?? 'default', name: f.name };
    const got = await loadFunction(ref);
    if (typeof got !== 'function') throw new ModuleNotAllowedError(`${shown} is not a function`);
    fnCache.set(key, got as AnyFn);
    return got as AnyFn;
  }

  async function run(b: Bundle, c: WireChunk): Promise<unknown> {
    const kind = c.kind;
    const [f, hash] = b.fns[c.fn]!;
    const call = await fn(f, hash);
    const payload = (await loads(c.payload, policy)) as unknown[];
    if (kind === APPLY) {
      const v = call(...payload);
      return isThenable(v) ? await v : v;
    }
    const out = new Array<unknown>(payload.length);
    for (let i = 0; i < payload.length; i++) {
      let v = kind === MAP ? call(payload[i]) : call(...(payload[i] as unknown[]));
      if (isThenable(v)) v = await v;
      out[i] = v;
    }
    return out;
  }

  function encode(ok: boolean, value: unknown, fresh = 1): Buffer {
    try {
      // [ok, value] is ours, and so is a chunk's list of results (fresh 2).
      return (ok ? pack([ok, value], fresh) : undefined) ?? dumps([ok, value], ok ? 'result' : 'error');
    } catch (err) {
      return dumps([false, err instanceof Error ? err : new Error(String(err))], 'error');
    }
  }

  // Answers finished in the same turn of the event loop share one MULTI: one reply entry per
  // caller, then one XACK and one XDEL for the bundles whose last chunk they answer.
  interface Answer {
    h: Held;
    chunk: WireChunk;
    body: Buffer;
    runUs: number;
    dead: boolean;
    done: () => void;
    fail: (e: unknown) => void;
  }
  let batch: Answer[] = [];
  function flush(): void {
    const b = batch;
    batch = [];
    if (!b.some((a) => a.dead)) {
      flushScript(b);
      return;
    }
    const m = cmd.multi();
    const byCaller = new Map<string, Answer[]>();
    for (const a of b) {
      const list = byCaller.get(a.h.bundle.caller);
      if (list) list.push(a);
      else byCaller.set(a.h.bundle.caller, [a]);
      if (a.dead) {
        const [f] = a.h.bundle.fns[a.chunk.fn]!;
        m.xadd(k.dead, 'MAXLEN', '~', '10000', '*', 'c', a.h.bundle.caller, 'i', String(a.chunk.id), 'f', JSON.stringify(f));
        m.hincrby(k.stats, 'dead', 1);
      }
    }
    for (const [caller, list] of byCaller)
      m.xadd(
        k.reply(caller),
        '*',
        ...replyFields(
          id,
          list.map((a) => a.chunk.id),
          list.map((a) => a.runUs),
          list.map((a) => a.body),
        ),
      );
    for (const stream of [k.tasks, k.retry]) {
      const finished = [...new Set(b.filter((a) => a.h.stream === stream && --a.h.left === 0).map((a) => a.h.entryId))];
      if (finished.length) m.xack(stream, GROUP, ...finished).xdel(stream, ...finished);
      for (const e of finished) held.delete(e);
    }
    m.exec().then(
      () => b.forEach((a) => a.done()),
      (err: unknown) => b.forEach((a) => a.fail(err)),
    );
  }
  function flushScript(b: Answer[]): void {
    const byCaller = new Map<string, Answer[]>();
    for (const a of b) {
      const list = byCaller.get(a.h.bundle.caller);
      if (list) list.push(a);
      else byCaller.set(a.h.bundle.caller, [a]);
    }
    const keys = [k.tasks, k.retry];
    const argv: (string | Buffer)[] = [GROUP, '', '', id];
    for (const [caller, list] of byCaller) {
      keys.push(k.reply(caller));
      const f = replyFields(
        id,
        list.map((a) => a.chunk.id),
        list.map((a) => a.runUs),
        list.map((a) => a.body),
      );
      argv.push(f[1]!, f[3]!);
    }
    [k.tasks, k.retry].forEach((stream, i) => {
      const finished = [...new Set(b.filter((a) => a.h.stream === stream && --a.h.left === 0).map((a) => a.h.entryId))];
      argv[i + 1] = String(finished.length);
      argv.push(...finished);
      for (const e of finished) held.delete(e);
    });
    answerScript(keys.length, ...keys, ...argv).then(
      () => b.forEach((a) => a.done()),
      (err: unknown) => b.forEach((a) => a.fail(err)),
    );
  }
  function answer(h: Held, chunk: WireChunk, body: Buffer, runUs: number, dead = false): Promise<void> {
    return new Promise((done, fail) => {
      if (batch.push({ h, chunk, body, runUs, dead, done, fail }) === 1) process.nextTick(flush);
    });
  }

  function startChunk(h: Held, chunk: WireChunk): void {
    if (active >= concurrency) {
      waiting.push([h, chunk]);
      return;
    }
    active++;
    const p = (async () => {
      let body: Buffer;
      const t0 = performance.now();
      try {
        body = encode(true, await run(h.bundle, chunk), chunk.kind === APPLY ? 1 : 2);
      } catch (err) {
        body = encode(false, err);
      }
      const runUs = (performance.now() - t0) * 1000;
      // A chunk whose entry is gone (its caller's namespace was cleared) is not answered twice.
      if (!st.stopped) await answer(h, chunk, body, runUs).catch((err: unknown) => log(`answer failed: ${String(err)}`));
    })().finally(() => {
      active--;
      inflight.delete(p);
      const next = st.stopped ? undefined : waiting.shift();
      if (next) startChunk(...next);
      else if (st.pausing && active === 0) recovery ??= recover();
      wake?.();
    });
    inflight.add(p);
  }

  /** Hold a bundle entry; a malformed one (another version's) leaves the queue with a line in the log. */
  function parse(entryId: string, flat: Buffer[], stream = k.tasks): Held | undefined {
    try {
      const bundle = readBundle(flat);
      const h: Held = { entryId, stream, bundle, left: bundle.chunks.length };
      held.set(entryId, h);
      return h;
    } catch (err) {
      log(`dropped entry ${entryId}: ${String(err)}`);
      cmd
        .multi()
        .xack(stream, GROUP, entryId)
        .xdel(stream, entryId)
        .exec()
        .catch(() => undefined);
      return undefined;
    }
  }

  /** The deliveries of an entry this worker now holds, before this one. */
  async function deliveriesBefore(stream: string, h: Held): Promise<number> {
    const pend = (await cmd.xpending(stream, GROUP, h.entryId, h.entryId, 1)) as [string, string, number, number][];
    return h.bundle.before + (pend[0]?.[3] ?? 1) - 1;
  }

  /** Fail every chunk of an entry delivered maxDeliveries times: WorkerLostError, and the dead-letter stream. */
  async function giveUp(h: Held, before: number): Promise<void> {
    await Promise.all(
      h.bundle.chunks.map((c) => {
        const [f] = h.bundle.fns[c.fn]!;
        const err = new WorkerLostError(
          `a chunk of ${f.name || 'a task'} (${f.module}) was delivered ${before} times and its worker died or lost its lease each time (maxDeliveries ${maxDeliveries}); fix the task, or raise leaseMs if it runs longer than the lease`,
          before,
        );
        return answer(h, c, encode(false, err), 0, true);
      }),
    );
  }

  // Leases: renew ours; when another worker's ran out, or chunks wait to be retried, recover.
  async function leases(): Promise<void> {
    for (const stream of [k.tasks, k.retry]) {
      const mine = [...held.values()].filter((h) => h.stream === stream).map((h) => h.entryId);
      if (mine.length) await cmd.xclaim(stream, GROUP, id, 0, ...mine, 'JUSTID');
    }
    if (st.draining || st.pausing) return;
    const expired = await cmd.xpending(k.tasks, GROUP, 'IDLE', lease, '-', '+', 1);
    if (expired.length || (await cmd.xlen(k.retry)) > 0) pause();
  }

  // An entry delivered before must not be held while another chunk runs: if that chunk killed
  // this worker, the entry would count a delivery it never ran. So recovery waits for a moment
  // when nothing runs here, and nothing starts until it ends (entries read meanwhile wait).
  let recovery: Promise<void> | undefined;
  const deferred: Held[] = [];
  function pause(): void {
    st.pausing = true;
    if (active === 0 && waiting.length === 0) recovery ??= recover();
  }
  async function recover(): Promise<void> {
    try {
      if (!halted()) await takeOver();
      if (!halted()) await retries();
    } catch (err) {
      log(`recovery failed: ${String(err)}`);
    } finally {
      st.pausing = false;
      recovery = undefined;
      for (const h of deferred.splice(0)) for (const c of h.bundle.chunks) startChunk(h, c);
      wake?.();
    }
  }

  async function takeOver(): Promise<void> {
    const r = (await cmd.callBuffer('XAUTOCLAIM', k.tasks, GROUP, id, lease, '0-0', 'COUNT', concurrency)) as [Buffer, Entry[]];
    for (const [eid, flat] of r[1]) {
      if (!flat) continue;
      const entryId = eid.toString();
      await cmd.hincrby(k.stats, 'retried', 1);
      const h = parse(entryId, flat);
      if (!h) continue;
      // XAUTOCLAIM counted this delivery: the counter says how many workers took it before.
      const before = await deliveriesBefore(k.tasks, h);
      if (before >= maxDeliveries) {
        await giveUp(h, before);
        continue;
      }
      // Which chunk of the bundle killed its worker (or took its worker's whole lease) is
      // unknown: each goes to the retry stream, where a worker runs it alone.
      held.delete(entryId);
      const argv: (string | Buffer)[] = [GROUP, entryId, h.bundle.caller];
      for (const c of h.bundle.chunks) {
        const fields = bundleFields(h.bundle.caller, [JSON.stringify(h.bundle.fns[c.fn])], [{ ...c, fn: 0 }], before);
        argv.push(String(c.id), fields[3]!, fields[5]!);
      }
      await cmd.eval(SPLIT_SCRIPT, 3, k.tasks, k.retry, k.reply(h.bundle.caller), ...argv);
      log(`redelivered ${entryId} (delivery ${before + 1}): ${h.bundle.chunks.length} chunk(s) to the retry stream`);
    }
  }

  // Retried chunks run one at a time, alone, so that one that kills its worker takes no other
  // chunk with it.
  async function retries(): Promise<void> {
    while (!halted()) {
      let reclaimed = true;
      let got = ((await cmd.callBuffer('XAUTOCLAIM', k.retry, GROUP, id, lease, '0-0', 'COUNT', 1)) as [Buffer, Entry[]])[1];
      if (!got.some(([, f]) => f)) {
        reclaimed = false;
        const r = await cmd.xreadgroupBuffer('GROUP', GROUP, id, 'COUNT', 1, 'STREAMS', k.retry, '>');
        got = r?.[0]?.[1] ?? [];
      }
      const [eid, flat] = got.find(([, f]) => f) ?? [];
      if (!eid || !flat) return;
      if (reclaimed) await cmd.hincrby(k.stats, 'retried', 1);
      const h = parse(eid.toString(), flat, k.retry);
      if (!h) continue;
      const before = await deliveriesBefore(k.retry, h);
      if (before >= maxDeliveries) {
        await giveUp(h, before);
        continue;
      }
      log(`retrying ${h.entryId} (delivery ${before + 1})`);
      for (const c of h.bundle.chunks) startChunk(h, c);
      while (inflight.size) await Promise.allSettled([...inflight]);
    }
  }

  if (o.initializer)
    await initialize(o.initializer, o.initargs ?? [], allow).catch((err: unknown) => {
      cmd.disconnect();
      blk.disconnect();
      throw err;
    });
  await ensureGroup(cmd, k.tasks);
  await ensureGroup(cmd, k.retry);
  await heartbeat();
  const timer = setInterval(
    () => {
      heartbeat().catch(() => undefined);
      leases().catch((err: unknown) => log(`lease check failed: ${String(err)}`));
    },
    Math.max(50, Math.floor(lease / 3)),
  );

  void (async () => {
    while (!st.stopped && !st.draining) {
      // Read again once half the slots are free, not at the first: a read per freed slot would
      // cost a round trip per task when tasks are tiny.
      if (active + waiting.length > concurrency / 2 || st.pausing) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      let got: [Buffer, Entry[]][] | null;
      try {
        got = await blk.xreadgroupBuffer(
          'GROUP',
          GROUP,
          id,
          'COUNT',
          Math.max(1, concurrency - active - waiting.length),
          'BLOCK',
          500,
          'STREAMS',
          k.tasks,
          '>',
        );
      } catch (err) {
        if (halted()) break;
        // The server restarted without the stream: make the group again.
        if ((err as Error).message.includes('NOGROUP'))
          await Promise.all([ensureGroup(cmd, k.tasks), ensureGroup(cmd, k.retry)]).catch(() => undefined);
        else await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      for (const [, entries] of got ?? [])
        for (const [eid, flat] of entries) {
          const h = flat ? parse(eid.toString(), flat) : undefined;
          // Read while a recovery began: they wait for its end.
          if (h && paused()) deferred.push(h);
          else if (h) for (const c of h.bundle.chunks) startChunk(h, c);
        }
      // Nothing new: a moment to take over expired entries and run retried chunks.
      if (!got && !halted()) pause();
    }
    while (inflight.size || recovery) await Promise.allSettled([...inflight, recovery]);
    clearInterval(timer);
    await cmd.del(k.worker(id)).catch(() => undefined);
    // The consumer goes with its pending list: only when it holds nothing.
    if (!st.stopped && held.size === 0)
      for (const stream of [k.tasks, k.retry]) await cmd.xgroup('DELCONSUMER', stream, GROUP, id).catch(() => undefined);
    cmd.disconnect();
    blk.disconnect();
    done.resolve();
  })();
  log(`worker ${id} reading ${k.tasks} (concurrency ${concurrency}, lease ${lease} ms)`);

  return {
    id,
    done: donePromise,
    allow,
    drain: async () => {
      st.draining = true;
      wake?.();
      blk.disconnect();
      await donePromise;
    },
    stop: async () => {
      st.stopped = true;
      wake?.();
      blk.disconnect();
      cmd.disconnect();
      clearInterval(timer);
      done.resolve();
      await donePromise;
    },
  };
}

/** Run a worker's initializer (`file#export`), importing the file as its tasks import it. @throws what it throws. */
async function initialize(spec: string, args: readonly unknown[], allow: (file: string) => void): Promise<void> {
  const at = spec.lastIndexOf('#');
  if (at <= 0) throw new InvalidArgumentError(`initializer: 'file#export', got '${spec}'`);
  const file = path.resolve(spec.slice(0, at));
  const name = spec.slice(at + 1);
  allow(file);
  // import() gives a CommonJS file's exports too, from the same instance require() loads.
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown> & { default?: Record<string, unknown> };
  const f = mod[name] ?? mod.default?.[name];
  if (typeof f !== 'function') throw new InvalidArgumentError(`initializer: ${name} of ${file} is not a function`);
  const r = (f as AnyFn)(...args);
  if (isThenable(r)) await r;
}
