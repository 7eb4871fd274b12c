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

import { ModuleNotAllowedError, StaleModuleError, WorkerLostError } from '../errors.js';
import { loadFunction, type FunctionRef } from '../reduction/functions.js';
import { trustModules } from '../reduction/policy.js';
import { dumps, loads } from '../reduction/reduction.js';
import { isThenable } from '../util.js';
import {
  APPLY,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_DELIVERIES,
  ensureGroup,
  fieldsOf,
  GROUP,
  keys,
  loadRedis,
  MAP,
  moduleHash,
  type TaskFunction,
} from './protocol.js';

/** Options of a Redis pool worker. */
export interface RedisWorkerOptions {
  /** redis:// or rediss:// URL (user, password and TLS go in it). */
  url: string;
  namespace: string;
  /** Module files whose exports this worker may call. */
  modules: readonly string[];
  /** Chunks run at the same time in this process (async tasks overlap; sync ones take turns). */
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

  const running = new Map<string, Promise<void>>();
  // Flags the loop reads while drain() and stop() set them.
  const st = { draining: false, stopped: false };
  const halted = (): boolean => st.stopped || st.draining;
  let wake: (() => void) | undefined;
  const done = { resolve: (): void => undefined };
  const donePromise = new Promise<void>((r) => (done.resolve = r));

  const heartbeat = async (): Promise<void> => {
    const info = JSON.stringify({
      id,
      pid: process.pid,
      host: os.hostname(),
      running: running.size,
      concurrency,
      draining: st.draining,
      at: Date.now(),
    });
    await cmd.set(k.worker(id), info, 'PX', lease * 3);
  };

  async function fn(f: TaskFunction, hash: string): Promise<AnyFn> {
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
    return got as AnyFn;
  }

  async function run(fields: Map<string, Buffer>): Promise<unknown> {
    const kind = Number(fields.get('k')!.toString());
    const f = JSON.parse(fields.get('f')!.toString()) as TaskFunction;
    const call = await fn(f, fields.get('h')!.toString());
    const payload = (await loads(fields.get('p')!, policy)) as unknown[];
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

  function encode(ok: boolean, value: unknown): Buffer {
    try {
      return dumps([ok, value], ok ? 'result' : 'error');
    } catch (err) {
      return dumps([false, err instanceof Error ? err : new Error(String(err))], 'error');
    }
  }

  // Answers finished in the same turn of the event loop share one MULTI: each result on its
  // caller's reply stream, then one XACK and one XDEL for all their entries.
  let batch: { entryId: string; fields: Map<string, Buffer>; body: Buffer; dead: boolean; done: () => void; fail: (e: unknown) => void }[] =
    [];
  function flush(): void {
    const b = batch;
    batch = [];
    const m = cmd.multi();
    for (const a of b) {
      const caller = a.fields.get('c')!.toString();
      m.xadd(k.reply(caller), '*', 'i', a.fields.get('i')!, 'r', a.body);
      if (a.dead)
        m.xadd(k.dead, 'MAXLEN', '~', '10000', '*', 'c', caller, 'i', a.fields.get('i')!, 'f', a.fields.get('f')!).hincrby(
          k.stats,
          'dead',
          1,
        );
    }
    const ids = b.map((a) => a.entryId);
    m.xack(k.tasks, GROUP, ...ids).xdel(k.tasks, ...ids);
    m.exec().then(
      () => b.forEach((a) => a.done()),
      (err: unknown) => b.forEach((a) => a.fail(err)),
    );
  }
  function answer(entryId: string, fields: Map<string, Buffer>, body: Buffer, dead = false): Promise<void> {
    return new Promise((done, fail) => {
      if (batch.push({ entryId, fields, body, dead, done, fail }) === 1) setImmediate(flush);
    });
  }

  function start(entryId: string, flat: Buffer[]): void {
    const fields = fieldsOf(flat);
    const p = (async () => {
      let body: Buffer;
      try {
        body = encode(true, await run(fields));
      } catch (err) {
        body = encode(false, err);
      }
      // A chunk whose entry is gone (its caller's namespace was cleared) is not answered twice.
      if (!st.stopped) await answer(entryId, fields, body).catch((err: unknown) => log(`answer failed: ${String(err)}`));
    })().finally(() => {
      running.delete(entryId);
      wake?.();
    });
    running.set(entryId, p);
  }

  // Leases: renew ours, take over the expired ones of others.
  async function leases(): Promise<void> {
    if (running.size) await cmd.xclaim(k.tasks, GROUP, id, 0, ...running.keys(), 'JUSTID');
    if (st.draining || running.size >= concurrency) return;
    const r = (await cmd.callBuffer('XAUTOCLAIM', k.tasks, GROUP, id, lease, '0-0', 'COUNT', concurrency - running.size)) as [
      Buffer,
      Entry[],
    ];
    for (const [eid, flat] of r[1]) {
      if (!flat) continue;
      const entryId = eid.toString();
      // XAUTOCLAIM counted this delivery: the counter says how many workers took it before.
      const pend = (await cmd.xpending(k.tasks, GROUP, entryId, entryId, 1)) as [string, string, number, number][];
      const deliveries = pend[0]?.[3] ?? 1;
      await cmd.hincrby(k.stats, 'retried', 1);
      const fields = fieldsOf(flat);
      if (deliveries > maxDeliveries) {
        const f = JSON.parse(fields.get('f')?.toString() ?? '{}') as TaskFunction;
        const err = new WorkerLostError(
          `a chunk of ${f.name || 'a task'} (${f.module}) was delivered ${deliveries - 1} times and its worker died or lost its lease each time (maxDeliveries ${maxDeliveries}); fix the task, or raise leaseMs if it runs longer than the lease`,
          deliveries - 1,
        );
        await answer(entryId, fields, encode(false, err), true);
        continue;
      }
      log(`redelivered ${entryId} (delivery ${deliveries})`);
      start(entryId, flat);
    }
  }

  await ensureGroup(cmd, k.tasks);
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
      if (running.size > concurrency / 2) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      let got: [Buffer, Entry[]][] | null;
      try {
        got = await blk.xreadgroupBuffer('GROUP', GROUP, id, 'COUNT', concurrency - running.size, 'BLOCK', 500, 'STREAMS', k.tasks, '>');
      } catch (err) {
        if (halted()) break;
        // The server restarted without the stream: make the group again.
        if ((err as Error).message.includes('NOGROUP')) await ensureGroup(cmd, k.tasks).catch(() => undefined);
        else await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      for (const [, entries] of got ?? []) for (const [eid, flat] of entries) if (flat) start(eid.toString(), flat);
    }
    await Promise.allSettled(running.values());
    clearInterval(timer);
    await cmd.del(k.worker(id)).catch(() => undefined);
    // The consumer goes with its pending list: only when it holds nothing.
    if (!st.stopped) await cmd.xgroup('DELCONSUMER', k.tasks, GROUP, id).catch(() => undefined);
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
