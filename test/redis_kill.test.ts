// The Redis pool when things die: a worker SIGKILLed mid-chunk (its chunk goes to another
// worker after the lease, every result arrives once), a task that kills every worker that runs
// it (WorkerLostError after maxDeliveries), and redis-server killed and restarted mid-map.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { RedisConnectionError, RedisPool, WorkerLostError } from '../src/index.js';
import { redisStatus } from '../src/redis/server.js';
import { fixture, tmpDir } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

type Tasks = typeof import('./fixtures/redis_tasks.mjs');
let t: Tasks;
let server: RedisServer;
const dir = tmpDir();
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

async function waitForFile(file: string): Promise<string> {
  // The task writes the file as it starts: polled, since it is another process's write.
  for (;;) {
    if (fs.existsSync(file) && fs.statSync(file).size > 0) return fs.readFileSync(file, 'utf8');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('RedisPool when things die', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_tasks.mjs')).href)) as Tasks;
    server = await RedisServer.start();
  });
  after(async () => {
    await server.stop();
  });

  test('a worker SIGKILLed mid-chunk: every task of a 10 000-task map completes, each result once', async () => {
    const namespace = randomNamespace();
    await using pool = new RedisPool({ url: server.url, namespace, processes: 2, leaseMs: 500 });
    const file = path.join(dir, 'victim.pid');
    const r = pool.starmap(
      t.killedOnce,
      range(10_000).map((x) => [x, file] as [number, string]),
      100,
    );
    process.kill(Number(await waitForFile(file)), 'SIGKILL');
    assert.deepEqual(
      await r,
      range(10_000).map((x) => x * 2),
    );
    const status = await redisStatus(server.url, namespace);
    // The killed worker held its chunk and up to 15 it had fetched ahead: each went to the other worker.
    assert.ok(status.retried >= 1 && status.retried <= 16, `retried ${status.retried}`);
    assert.equal(status.dead, 0);
  });

  test('a task that kills every worker that runs it fails with WorkerLostError after maxDeliveries', async () => {
    await using pool = new RedisPool({ url: server.url, namespace: randomNamespace(), processes: 2, leaseMs: 300, maxDeliveries: 2 });
    await assert.rejects(
      pool.apply(t.poison, []),
      (e: unknown) => e instanceof WorkerLostError && e.code === 'ERR_MP_WORKER_LOST' && e.deliveries === 2,
    );
    // The pool replaced its workers and goes on.
    assert.equal(await pool.apply(t.sqr, [4]), 16);
  });

  test('a poison task sent in the same tick as good ones fails alone: the others of its bundle are answered', async () => {
    // A lease long enough that a busy machine does not make a live worker look dead.
    await using pool = new RedisPool({ url: server.url, namespace: randomNamespace(), processes: 2, leaseMs: 1000, maxDeliveries: 2 });
    // 64 calls in one tick travel in a few bundles; the one holding 7 kills its worker.
    const out = await Promise.allSettled(range(64).map((x) => pool.apply(t.poisonOn, [x])));
    for (const [x, r] of out.entries()) {
      if (x === 7) assert.ok(r.status === 'rejected' && r.reason instanceof WorkerLostError, `task 7: ${r.status}`);
      else assert.deepEqual(r, { status: 'fulfilled', value: x * x });
    }
  });

  test('redis-server killed and restarted mid-map (AOF on): the map completes or fails clearly', async () => {
    const aof = await RedisServer.start(true);
    try {
      const ns = randomNamespace();
      await using pool = new RedisPool({ url: aof.url, namespace: ns, processes: 2, leaseMs: 500, giveUpMs: 5000 });
      // Its outcome is taken at once: the map may fail while the server is down, before the
      // test reaches its await.
      const m = pool
        .starmap(
          t.slowDouble,
          range(2000).map((x) => [x, 1] as [number, number]),
          10,
        )
        .then(
          (v) => v,
          (e: unknown) => e,
        );
      const map = { settled: false };
      void m.then(() => (map.settled = true));
      // Kill it once the workers are on the map (a chunk in flight); a map that ended first
      // (a fast machine) still has the server killed and restarted under a live pool.
      while (!map.settled && (await redisStatus(aof.url, ns)).inFlight === 0) await new Promise((res) => setTimeout(res, 10));
      await aof.kill();
      await aof.restart();
      const out = await m;
      if (out instanceof Error) assert.ok(out instanceof RedisConnectionError, String(out));
      else
        assert.deepEqual(
          out,
          range(2000).map((x) => x * 2),
        );
    } finally {
      await aof.stop();
    }
  });
});
