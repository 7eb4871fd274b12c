// The Redis objects' figures: queue messages/s, lock acquire+release/s and manager dict ops/s,
// each beside the local object and a peer measured in the same run against the same kind of
// server: BullMQ jobs for the queue, the `redlock` package (one instance) for the lock, and the
// raw Redis commands (LPUSH/RPOP, SET NX PX + a compare-and-delete script, HSET/HGET) as the floor
// of one round trip per call.
//
// Each measurement is a fresh driver process that starts its own redis-server (persistence off,
// loopback, a free port) and stops it. Everything runs in the driver: one process, one client.
import { randomBytes } from 'node:crypto';

import {
  type BenchContext,
  type BenchDef,
  type Measurement,
  type Row,
  type Stats,
  compare,
  driverMain,
  nowMs,
  repeat,
  runDriver,
  settled,
  summarize,
} from './harness.js';
import { mp } from './library.js';

type Redis = import('ioredis').Redis;

type Kind =
  | 'redis-queue'
  | 'local-queue'
  | 'bullmq'
  | 'raw-list'
  | 'redis-lock'
  | 'local-lock'
  | 'redlock'
  | 'raw-setnx'
  | 'redis-dict'
  | 'local-dict'
  | 'raw-hash';

interface Params {
  kind: Kind;
  n: number;
  reps: number;
}

/** Calls in flight for the queue figures (as the queue figures of docs/distributed.md). */
const IN_FLIGHT = 32;

function sizes(quick: boolean): { queue: number; calls: number; reps: number } {
  return quick ? { queue: 2_000, calls: 1_000, reps: 3 } : { queue: 10_000, calls: 5_000, reps: 5 };
}

// ---------------------------------------------------------------------------------------------
// Driver side.

interface Server {
  url: string;
  stop(): Promise<void>;
}

async function startServer(): Promise<Server> {
  // The tests' server starter: the same flags (no persistence, loopback, a free port).
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- compiled beside this file in build/
  const { RedisServer } = require('../test/redis_server.js') as typeof import('../test/redis_server.js');
  const s = await RedisServer.start();
  return { url: s.url, stop: () => s.stop() };
}

function client(url: string): Redis {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a dependency of the library already
  const { Redis } = require('ioredis') as typeof import('ioredis');
  return new Redis(url, { maxRetriesPerRequest: null });
}

/** Run `n` calls of `call(i)` with at most `k` in flight. */
async function inFlight(n: number, k: number, call: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) await call(next++);
  };
  await Promise.all(Array.from({ length: Math.min(k, n) }, lane));
}

/** Messages/s of `put` n items then `get` them, 32 calls in flight each way. */
function queueLoop(p: Params, put: (i: number) => Promise<unknown>, get: () => Promise<unknown>): Promise<Measurement> {
  const once = async (n: number): Promise<number> => {
    const t0 = nowMs();
    await inFlight(n, IN_FLIGHT, put);
    await inFlight(n, IN_FLIGHT, get);
    return (n / (nowMs() - t0)) * 1000;
  };
  return repeat(
    p.reps,
    () => once(p.n),
    () => once(Math.min(p.n, 1000)),
  );
}

/** Calls/s of `one()` awaited one at a time. */
function serialLoop(p: Params, one: (i: number) => Promise<unknown>, perCall = 1): Promise<Measurement> {
  const once = async (n: number): Promise<number> => {
    const t0 = nowMs();
    for (let i = 0; i < n; i++) await one(i);
    return ((n * perCall) / (nowMs() - t0)) * 1000;
  };
  return repeat(
    p.reps,
    () => once(p.n),
    () => once(Math.min(p.n, 500)),
  );
}

const ns = (): string => `bench-${randomBytes(4).toString('hex')}`;

async function measureQueue(p: Params, url: string): Promise<Measurement> {
  if (p.kind === 'redis-queue') {
    const q = mp().getContext('redis', { url, namespace: ns() }).Queue<number>();
    return queueLoop(
      p,
      (i) => q.put(i),
      () => q.get(),
    );
  }
  if (p.kind === 'local-queue') {
    const q = new (mp().Queue)<number>();
    try {
      return await queueLoop(
        p,
        (i) => q.put(i),
        () => q.get(),
      );
    } finally {
      q.close();
    }
  }
  if (p.kind === 'raw-list') {
    const r = client(url);
    const key = ns();
    try {
      // RPOP on an item not yet there would spin: the puts have all resolved before the gets start.
      return await queueLoop(
        p,
        (i) => r.lpush(key, String(i)),
        () => r.rpop(key),
      );
    } finally {
      r.disconnect();
    }
  }
  // BullMQ: add jobs (32 in flight), then a worker in this process (concurrency 32) takes them.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a devDependency, loaded only for this anchor
  const { Queue, Worker } = require('bullmq') as typeof import('bullmq');
  const connection = { host: '127.0.0.1', port: Number(new URL(url).port) };
  const name = ns();
  const queue = new Queue(name, { connection });
  let done = 0;
  let waiters: (() => void)[] = [];
  const worker = new Worker(
    name,
    (job) => {
      done++;
      for (const w of waiters) w();
      waiters = [];
      return Promise.resolve((job.data as { x: number }).x);
    },
    { connection, concurrency: IN_FLIGHT, autorun: false },
  );
  await worker.waitUntilReady();
  void worker.run();
  try {
    const once = async (n: number): Promise<number> => {
      const t0 = nowMs();
      const target = done + n;
      await inFlight(n, IN_FLIGHT, (i) => queue.add('x', { x: i }, { removeOnComplete: true }));
      while (done < target) await new Promise<void>((resolve) => waiters.push(resolve));
      return (n / (nowMs() - t0)) * 1000;
    };
    return await repeat(
      p.reps,
      () => once(p.n),
      () => once(Math.min(p.n, 1000)),
    );
  } finally {
    await worker.close(true);
    await queue.close();
  }
}

// The usual single-instance lock: SET NX PX to take it, delete only if the value is still ours.
const UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

interface RedlockLock {
  unlock(): Promise<void>;
}
type RedlockCtor = new (
  clients: Redis[],
  options: { retryCount: number; retryDelay?: number },
) => {
  lock(resource: string, ttl: number): Promise<RedlockLock>;
};

async function measureLock(p: Params, url: string): Promise<Measurement> {
  if (p.kind === 'redis-lock') {
    const lock = mp().getContext('redis', { url, namespace: ns() }).Lock();
    return serialLoop(p, async () => {
      await lock.acquire();
      await lock.release();
    });
  }
  if (p.kind === 'local-lock') {
    const lock = new (mp().Lock)();
    try {
      return await serialLoop(p, async () => {
        await lock.acquire();
        lock.release();
      });
    } finally {
      lock.close();
    }
  }
  const r = client(url);
  const key = ns();
  try {
    if (p.kind === 'redlock') {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- a devDependency, loaded only for this anchor
      const Redlock = require('redlock') as RedlockCtor;
      const redlock = new Redlock([r], { retryCount: 10, retryDelay: 10 });
      return await serialLoop(p, async () => {
        const l = await redlock.lock(key, 5000);
        await l.unlock();
      });
    }
    const me = randomBytes(8).toString('hex');
    return await serialLoop(p, async () => {
      if ((await r.set(key, me, 'PX', 5000, 'NX')) !== 'OK') throw new Error('lock taken');
      await r.eval(UNLOCK, 1, key, me);
    });
  } finally {
    r.disconnect();
  }
}

async function measureDict(p: Params, url: string): Promise<Measurement> {
  // One op = a set or a get; each repetition sets then gets keys k0..k99 in turn.
  if (p.kind === 'redis-dict') {
    await using m = await mp().getContext('redis', { url, namespace: ns() }).Manager();
    const d = await m.dict<string, number>();
    return await serialLoop(
      p,
      async (i) => {
        await d.set(`k${i % 100}`, i);
        await d.get(`k${i % 100}`);
      },
      2,
    );
  }
  if (p.kind === 'local-dict') {
    await using m = await mp().Manager();
    const d = await m.dict<string, number>();
    return await serialLoop(
      p,
      async (i) => {
        await d.set(`k${i % 100}`, i);
        await d.get(`k${i % 100}`);
      },
      2,
    );
  }
  const r = client(url);
  const key = ns();
  try {
    return await serialLoop(
      p,
      async (i) => {
        await r.hset(key, `k${i % 100}`, String(i));
        await r.hget(key, `k${i % 100}`);
      },
      2,
    );
  } finally {
    r.disconnect();
  }
}

async function measure(p: Params): Promise<Measurement> {
  const srv = await startServer();
  try {
    if (['redis-queue', 'local-queue', 'bullmq', 'raw-list'].includes(p.kind)) return await measureQueue(p, srv.url);
    if (['redis-lock', 'local-lock', 'redlock', 'raw-setnx'].includes(p.kind)) return await measureLock(p, srv.url);
    return await measureDict(p, srv.url);
  } finally {
    await srv.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Figures.

interface Figure {
  name: string;
  unit: string;
  kind: Kind;
  size: 'queue' | 'calls';
  anchors: [string, Kind][];
  note: string;
}

const FIGURES: Figure[] = [
  {
    name: 'redis_queue_msgs_per_s',
    unit: 'msgs/s',
    kind: 'redis-queue',
    size: 'queue',
    anchors: [
      ['local_queue', 'local-queue'],
      ['bullmq_jobs', 'bullmq'],
      ['raw_lpush_rpop', 'raw-list'],
    ],
    note: `put n then get n, ${IN_FLIGHT} calls in flight; bullmq: add with ${IN_FLIGHT} in flight, a worker of concurrency ${IN_FLIGHT} in the same process`,
  },
  {
    name: 'redis_lock_acquire_release_per_s',
    unit: 'pairs/s',
    kind: 'redis-lock',
    size: 'calls',
    anchors: [
      ['local_lock', 'local-lock'],
      ['redlock', 'redlock'],
      ['raw_set_nx_px', 'raw-setnx'],
    ],
    note: 'uncontended, one at a time; redlock: the redlock package on one instance',
  },
  {
    name: 'redis_manager_dict_ops_per_s',
    unit: 'ops/s',
    kind: 'redis-dict',
    size: 'calls',
    anchors: [
      ['local_manager_dict', 'local-dict'],
      ['raw_hset_hget', 'raw-hash'],
    ],
    note: 'set then get, one at a time',
  },
];

function timed(ctx: BenchContext, key: string, params: Params): Promise<Stats> {
  return ctx.once(`redis_objects:${key}:${JSON.stringify(params)}`, async () => {
    await ctx.settle();
    ctx.log(`  ${key}`);
    return summarize(await runDriver(__filename, params));
  });
}

function define(f: Figure): BenchDef {
  return {
    name: f.name,
    async run(ctx) {
      const s = sizes(ctx.quick);
      const params = (kind: Kind): Params => ({ kind, n: s[f.size], reps: s.reps });
      const stats = await timed(ctx, f.name, params(f.kind));
      const rows: Row[] = [];
      for (const [name, kind] of f.anchors) {
        const anchor = await settled(timed(ctx, name, params(kind)));
        rows.push(compare(f.name, f.unit, 'higher', stats, name, anchor, { note: f.note }));
      }
      return rows;
    },
  };
}

/** Without redis-server installed, each figure's row carries the error that says so. */
export const benches: BenchDef[] = FIGURES.map(define);

if (require.main === module) driverMain<Params>(measure);
