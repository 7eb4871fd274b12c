// The Redis pool's figures: tiny tasks/s with 2 local workers at chunk sizes 1, 10, 100 and the
// default, the one-in-flight round trip, and the Redis server's CPU per task. Anchors, measured
// in the same run against the same kind of server: a raw Streams loop written directly on ioredis
// (one entry per task, workers reading 100 at a time and answering in one MULTI per read: the
// floor of the protocol) and BullMQ (the queue Node users reach for; its jobs/s, results unread).
//
// Each measurement is a fresh driver process that starts its own redis-server (persistence off,
// loopback, a free port) and stops it. This file is also the worker of both anchors when run
// with a `role`.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
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

/** The task of every figure: tiny, as in the local pool's figures. */
export function sq(x: number): number {
  return x * x;
}

type Params =
  | { kind: 'pool'; chunksize: number | null; n: number; reps: number }
  | { kind: 'pool-rtt'; n: number; reps: number }
  | { kind: 'pool-cpu'; n: number; reps: number }
  | { kind: 'raw'; n: number; reps: number }
  | { kind: 'raw-rtt'; n: number; reps: number }
  | { kind: 'raw-cpu'; n: number; reps: number }
  | { kind: 'bullmq'; n: number; reps: number };

function sizes(quick: boolean): { tiny: number; many: number; rtt: number; reps: number } {
  return quick ? { tiny: 2_000, many: 20_000, rtt: 200, reps: 3 } : { tiny: 10_000, many: 200_000, rtt: 1_000, reps: 5 };
}

// ---------------------------------------------------------------------------------------------
// Driver side.

interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startServer(): Promise<Server> {
  // The tests' server starter: the same flags (no persistence, loopback, a free port).
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- compiled beside this file in build/
  const { RedisServer } = require('../test/redis_server.js') as typeof import('../test/redis_server.js');
  const s = await RedisServer.start();
  return { url: s.url, pid: s.proc?.pid ?? -1, stop: () => s.stop() };
}

/** CPU time (µs) the process `pid` has used, from /proc (clock ticks of 10 ms: long runs only). */
function cpuUs(pid: number): number {
  const rest = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 10_000;
}

function client(url: string): Redis {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a devDependency of the library already
  const { Redis } = require('ioredis') as typeof import('ioredis');
  return new Redis(url, { maxRetriesPerRequest: null });
}

async function measurePool(p: Params, srv: Server): Promise<Measurement> {
  const { RedisPool } = mp();
  const pool = new RedisPool({ url: srv.url, namespace: `bench-${randomBytes(4).toString('hex')}`, processes: 2 });
  try {
    const xs = Array.from({ length: p.n }, (_, i) => i);
    const warm = (): Promise<unknown> => pool.map(sq, xs.slice(0, 2000), { chunksize: 1 });
    if (p.kind === 'pool-rtt') {
      return await repeat(
        p.reps,
        async () => {
          const t0 = nowMs();
          for (let i = 0; i < p.n; i++) await pool.apply(sq, [i]);
          return (nowMs() - t0) / p.n;
        },
        warm,
      );
    }
    const chunksize = p.kind === 'pool' ? p.chunksize : 1;
    return await repeat(
      p.reps,
      async () => {
        const c0 = cpuUs(srv.pid);
        const t0 = nowMs();
        const r = await pool.map(sq, xs, chunksize === null ? {} : { chunksize });
        const dt = nowMs() - t0;
        if (r[p.n - 1] !== (p.n - 1) ** 2) throw new Error('wrong result');
        return p.kind === 'pool-cpu' ? (cpuUs(srv.pid) - c0) / p.n : (p.n / dt) * 1000;
      },
      warm,
    );
  } finally {
    pool.terminate();
    await pool.join();
  }
}

/** Start `n` copies of this file in `role`; resolves once each printed 'ready'. */
async function startWorkers(role: string, url: string, key: string, n: number): Promise<ChildProcess[]> {
  const out: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    const c = spawn(process.execPath, [__filename, JSON.stringify({ role, url, key })], { stdio: ['ignore', 'pipe', 'inherit'] });
    out.push(c);
    await new Promise<void>((resolve, reject) => {
      c.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (d.includes('ready')) resolve();
      });
      c.once('exit', (code) => reject(new Error(`${role} exited with ${code}`)));
    });
  }
  return out;
}

async function measureRaw(p: Params, srv: Server): Promise<Measurement> {
  const r = client(srv.url);
  const key = `raw-${randomBytes(4).toString('hex')}`;
  await r.xgroup('CREATE', `${key}:tasks`, 'g', '$', 'MKSTREAM');
  const workers = await startWorkers('raw-worker', srv.url, key, 2);
  let last = '0-0';
  let seq = 0;
  // Send `n` tasks, wait for their `n` answers.
  const batch = async (n: number): Promise<void> => {
    const pl = r.pipeline();
    for (let i = 0; i < n; i++) pl.xadd(`${key}:tasks`, '*', 'i', String(seq++), 'x', String(i));
    await pl.exec();
    let got = 0;
    while (got < n) {
      const res = await r.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', `${key}:reply`, last);
      for (const [, entries] of res ?? []) {
        got += entries.length;
        last = entries[entries.length - 1]![0];
        await r.xdel(`${key}:reply`, ...entries.map((e) => e[0]));
      }
    }
  };
  try {
    if (p.kind === 'raw-rtt') {
      return await repeat(
        p.reps,
        async () => {
          const t0 = nowMs();
          for (let i = 0; i < p.n; i++) await batch(1);
          return (nowMs() - t0) / p.n;
        },
        () => batch(2000),
      );
    }
    return await repeat(
      p.reps,
      async () => {
        const c0 = cpuUs(srv.pid);
        const t0 = nowMs();
        await batch(p.n);
        const dt = nowMs() - t0;
        return p.kind === 'raw-cpu' ? (cpuUs(srv.pid) - c0) / p.n : (p.n / dt) * 1000;
      },
      () => batch(2000),
    );
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    r.disconnect();
  }
}

async function measureBull(p: Params, srv: Server): Promise<Measurement> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a devDependency, loaded only for this anchor
  const { Queue } = require('bullmq') as typeof import('bullmq');
  const key = `bull-${randomBytes(4).toString('hex')}`;
  const connection = { host: '127.0.0.1', port: Number(new URL(srv.url).port) };
  const queue = new Queue(key, { connection });
  const workers = await startWorkers('bull-worker', srv.url, key, 2);
  let total = 0;
  const batch = async (n: number): Promise<void> => {
    await queue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'sq', data: { x: i } })));
    total += n;
    // Completion events are lossy under load (see docs/distributed.md): count completed jobs instead.
    while ((await queue.getJobCounts('completed')).completed! < total) await new Promise((res) => setTimeout(res, 5));
  };
  try {
    return await repeat(
      p.reps,
      async () => {
        const t0 = nowMs();
        await batch(p.n);
        return (p.n / (nowMs() - t0)) * 1000;
      },
      () => batch(1000),
    );
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await queue.close();
  }
}

async function measure(p: Params): Promise<Measurement> {
  const srv = await startServer();
  try {
    if (p.kind.startsWith('pool')) return await measurePool(p, srv);
    if (p.kind === 'bullmq') return await measureBull(p, srv);
    return await measureRaw(p, srv);
  } finally {
    await srv.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The anchors' workers.

async function rawWorker(url: string, key: string): Promise<void> {
  const blk = client(url);
  const cmd = client(url);
  const id = `w${process.pid}`;
  process.stdout.write('ready\n');
  for (;;) {
    const res = (await blk.xreadgroup('GROUP', 'g', id, 'COUNT', 100, 'BLOCK', 1000, 'STREAMS', `${key}:tasks`, '>')) as
      [string, [string, string[]][]][] | null;
    for (const [, entries] of res ?? []) {
      const m = cmd.multi();
      for (const [, f] of entries) m.xadd(`${key}:reply`, '*', 'i', f[1]!, 'r', String(sq(Number(f[3]))));
      m.xack(`${key}:tasks`, 'g', ...entries.map((e) => e[0]));
      await m.exec();
    }
  }
}

function bullWorker(url: string, key: string): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a devDependency, loaded only for this anchor
  const { Worker } = require('bullmq') as typeof import('bullmq');
  const w = new Worker(key, (job) => Promise.resolve(sq((job.data as { x: number }).x)), {
    connection: { host: '127.0.0.1', port: Number(new URL(url).port) },
    concurrency: 16,
  });
  void w.waitUntilReady().then(() => process.stdout.write('ready\n'));
}

// ---------------------------------------------------------------------------------------------
// Figures.

interface Figure {
  name: string;
  unit: string;
  better: 'lower' | 'higher';
  params(quick: boolean): Params;
  anchors: string[];
  goal?: { value: number; text: string };
  note?: string;
}

function anchorParams(name: string, quick: boolean): Params {
  const s = sizes(quick);
  if (name === 'raw_streams_rtt') return { kind: 'raw-rtt', n: s.rtt, reps: s.reps };
  if (name === 'raw_streams_cpu') return { kind: 'raw-cpu', n: s.tiny, reps: s.reps };
  if (name === 'bullmq') return { kind: 'bullmq', n: s.tiny, reps: s.reps };
  return { kind: 'raw', n: s.tiny, reps: s.reps };
}

const FIGURES: Figure[] = [
  ...([1, 10, 100, null] as const).map((c): Figure => ({
    name: `redis_pool_map_chunksize_${c ?? 'default'}`,
    unit: 'tasks/s',
    better: 'higher',
    params: (q) => ({ kind: 'pool', chunksize: c, n: c === 1 ? sizes(q).tiny : sizes(q).many, reps: sizes(q).reps }),
    anchors: ['raw_streams', 'bullmq'],
    ...(c === 1 ? { goal: { value: 25_000, text: '>= 25 k tasks/s' } } : {}),
    ...(c === null ? { goal: { value: 1_000_000, text: '>= 1 M tasks/s' } } : {}),
    note: '2 local workers; anchors: one entry per task',
  })),
  {
    name: 'redis_pool_apply_rtt_ms',
    unit: 'ms',
    better: 'lower',
    params: (q) => ({ kind: 'pool-rtt', n: sizes(q).rtt, reps: sizes(q).reps }),
    anchors: ['raw_streams_rtt'],
    goal: { value: 0.5, text: '<= 0.5 ms' },
    note: 'one call in flight',
  },
  {
    name: 'redis_pool_server_cpu_us_per_task',
    unit: 'us',
    better: 'lower',
    params: (q) => ({ kind: 'pool-cpu', n: sizes(q).tiny, reps: sizes(q).reps }),
    anchors: ['raw_streams_cpu'],
    note: 'redis-server CPU per task, chunksize 1',
  },
];

function timed(ctx: BenchContext, key: string, params: Params): Promise<Stats> {
  return ctx.once(`redis:${key}:${JSON.stringify(params)}`, async () => {
    await ctx.settle();
    ctx.log(`  ${key}`);
    return summarize(await runDriver(__filename, params));
  });
}

function define(f: Figure): BenchDef {
  return {
    name: f.name,
    async run(ctx) {
      const stats = await timed(ctx, f.name, f.params(ctx.quick));
      const notes: string[] = [];
      if (f.goal) {
        const met = f.better === 'higher' ? stats.value >= f.goal.value : stats.value <= f.goal.value;
        notes.push(`goal ${f.goal.text}: ${met ? 'met' : 'MISSED'}`);
      }
      if (f.note) notes.push(f.note);
      const rows: Row[] = [];
      for (const a of f.anchors) {
        const anchor = await settled(timed(ctx, a, anchorParams(a, ctx.quick)));
        rows.push(compare(f.name, f.unit, f.better, stats, a, anchor, notes.length ? { note: notes.join('; ') } : {}));
      }
      return rows;
    },
  };
}

/** Without redis-server installed, each figure's row carries the error that says so. */
export const benches: BenchDef[] = FIGURES.map(define);

if (require.main === module) {
  const arg = JSON.parse(process.argv[2] ?? '{}') as { role?: string; url: string; key: string };
  if (arg.role === 'raw-worker') void rawWorker(arg.url, arg.key);
  else if (arg.role === 'bull-worker') bullWorker(arg.url, arg.key);
  else driverMain<Params>(measure);
}
