// `npm run bench:scaling`: how cost grows — throughput of a Pipe and a Queue between two processes
// against the message size (8 B … 1 MiB), and of Pool.map against the number of workers (1, 2, 4,
// 8). Prints a Markdown table and writes bench/out/scaling.json and docs/scaling.png (the plot,
// drawn by bench/plot.ts). The figures are this machine's: rerun on yours.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Connection, Queue } from '../src/index.js';
import { plotScaling, type Series } from './plot.js';

const SIZES = [8, 64, 512, 4096, 32_768, 262_144, 1_048_576];
const WORKERS = [1, 2, 4, 8];

export function square(x: number): number {
  return x * x;
}

/** Child side: send `n` messages of `size` bytes, then a 0-byte end marker. */
export async function pipeSender(conn: Connection, size: number, n: number): Promise<void> {
  const msg = new Uint8Array(size).fill(7);
  for (let i = 0; i < n; i++) await conn.sendBytes(msg);
  await conn.sendBytes(new Uint8Array(0));
  conn.close();
}

/** Child side: put `n` items of `size` bytes, then null. */
export async function queueProducer(q: Queue<Uint8Array | null>, size: number, n: number): Promise<void> {
  const msg = new Uint8Array(size).fill(7);
  for (let i = 0; i < n; i++) await q.put(msg);
  await q.put(null);
  q.close();
  await q.joinThread();
}

const count = (size: number, quick: boolean): number =>
  Math.max(quick ? 50 : 200, Math.min(quick ? 20_000 : 100_000, Math.floor(((quick ? 32 : 256) * 2 ** 20) / size)));

async function pipeRate(size: number, quick: boolean): Promise<number> {
  const mp = await import('../src/index.js');
  const n = count(size, quick);
  const [a, b] = mp.Pipe();
  const p = new mp.Process({ target: pipeSender, args: [b, size, n] });
  p.start();
  b.close();
  let got = 0;
  let t0 = 0;
  for (;;) {
    const m = await a.recvBytes();
    if (got === 0) t0 = performance.now();
    if (m.length === 0) break;
    got++;
  }
  const ms = performance.now() - t0;
  await p.join();
  a.close();
  if (got !== n) throw new Error(`pipe: ${got} of ${n} messages`);
  return ((n - 1) * 1000) / ms;
}

async function queueRate(size: number, quick: boolean): Promise<number> {
  const mp = await import('../src/index.js');
  const n = count(size, quick);
  const q = new mp.Queue<Uint8Array | null>();
  const p = new mp.Process({ target: queueProducer, args: [q, size, n] });
  p.start();
  let got = 0;
  let t0 = 0;
  for (let m = await q.get(); m !== null; m = await q.get()) {
    if (got === 0) t0 = performance.now();
    got++;
  }
  const ms = performance.now() - t0;
  await p.join();
  if (got !== n) throw new Error(`queue: ${got} of ${n} items`);
  return ((n - 1) * 1000) / ms;
}

async function poolRate(workers: number, chunksize: number | undefined, quick: boolean): Promise<number> {
  const mp = await import('../src/index.js');
  const n = chunksize === 1 ? (quick ? 5_000 : 20_000) : quick ? 200_000 : 1_000_000;
  const items = Array.from({ length: n }, (_, i) => i);
  const pool = new mp.Pool(workers);
  try {
    await pool.map(square, items.slice(0, 2_000), chunksize); // warm: workers up, JIT warm
    const t0 = performance.now();
    const out = await pool.map(square, items, chunksize);
    const ms = performance.now() - t0;
    if (out.length !== n || out[n - 1] !== (n - 1) * (n - 1)) throw new Error('pool: wrong result');
    return (n * 1000) / ms;
  } finally {
    pool.terminate();
    await pool.join();
  }
}

/** The best of `reps` runs: other work on the machine only ever slows a run down. */
async function best(reps: number, f: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < reps; i++) top = Math.max(top, await f());
  return top;
}

const human = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : x.toFixed(0));
const bytes = (s: number): string => (s >= 2 ** 20 ? `${s / 2 ** 20} MiB` : s >= 1024 ? `${s / 1024} KiB` : `${s} B`);

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const reps = quick ? 1 : 3;
  const pipe: [number, number][] = [];
  const queue: [number, number][] = [];
  const lines = ['| message size | Pipe msgs/s | Pipe MB/s | Queue msgs/s | Queue MB/s |', '|---|---|---|---|---|'];
  for (const size of SIZES) {
    const pr = await best(reps, () => pipeRate(size, quick));
    const qr = await best(reps, () => queueRate(size, quick));
    pipe.push([size, pr]);
    queue.push([size, qr]);
    lines.push(`| ${bytes(size)} | ${human(pr)} | ${((pr * size) / 1e6).toFixed(1)} | ${human(qr)} | ${((qr * size) / 1e6).toFixed(1)} |`);
    process.stderr.write(`size ${bytes(size)}: pipe ${human(pr)}/s, queue ${human(qr)}/s\n`);
  }
  const poolDefault: [number, number][] = [];
  const poolChunk1: [number, number][] = [];
  lines.push('', '| workers | Pool.map tiny tasks/s, default chunksize | Pool.map tiny tasks/s, chunksize 1 |', '|---|---|---|');
  for (const w of WORKERS) {
    const d = await best(reps, () => poolRate(w, undefined, quick));
    const c = await best(reps, () => poolRate(w, 1, quick));
    poolDefault.push([w, d]);
    poolChunk1.push([w, c]);
    lines.push(`| ${w} | ${human(d)} | ${human(c)} |`);
    process.stderr.write(`workers ${w}: default ${human(d)}/s, chunksize 1 ${human(c)}/s\n`);
  }
  const root = path.join(__dirname, '..', '..');
  const out = path.join(root, 'bench', 'out');
  fs.mkdirSync(out, { recursive: true });
  const data = { when: new Date().toISOString(), node: process.version, quick, pipe, queue, poolDefault, poolChunk1 };
  fs.writeFileSync(path.join(out, 'scaling.json'), `${JSON.stringify(data, null, 2)}\n`);
  const bySize: Series[] = [
    { name: 'Pipe (2 processes)', points: pipe.map(([s, r]) => [s, (r * s) / 1e6]) },
    { name: 'Queue (2 processes)', points: queue.map(([s, r]) => [s, (r * s) / 1e6]) },
  ];
  const byWorkers: Series[] = [
    { name: 'default chunksize', points: poolDefault },
    { name: 'chunksize 1', points: poolChunk1 },
  ];
  const png = path.join(root, 'docs', 'scaling.png');
  await plotScaling(png, bySize, byWorkers, `multiproc ${data.node}, ${data.when.slice(0, 10)}`);
  process.stdout.write(`${lines.join('\n')}\n\nwrote ${path.relative(root, png)} and bench/out/scaling.json\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
