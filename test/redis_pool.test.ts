// The Redis pool against a real redis-server: the Pool API (results, order, errors as their
// class, callbacks, chunksize, imap laziness, timeout, terminate, await using) and no child
// process left behind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
  AbortError,
  getContext,
  InvalidArgumentError,
  ProcessError,
  RedisPool,
  TimeoutError,
  type Progress,
  type TaskTiming,
} from '../src/index.js';
import { childPids } from '../src/platform.js';
import { redisStatus } from '../src/redis/server.js';
import { fixture } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

type Tasks = typeof import('./fixtures/redis_tasks.mjs');
let t: Tasks;
let server: RedisServer;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Our children other than the redis-server: none may be left after a pool is done. */
async function assertNoWorkersLeft(): Promise<void> {
  const deadline = Date.now() + 2000;
  let left: number[];
  do {
    left = childPids().filter((p) => p !== server.proc?.pid);
    if (!left.length) return;
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < deadline);
  assert.deepEqual(left, [], 'child processes left behind');
}

const pool = (o: Partial<ConstructorParameters<typeof RedisPool>[0] & object> = {}): RedisPool =>
  new RedisPool({ url: server.url, namespace: randomNamespace(), processes: 2, leaseMs: 500, ...o });

describe('RedisPool', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_tasks.mjs')).href)) as Tasks;
    server = await RedisServer.start();
  });
  after(async () => {
    await server.stop();
  });

  test('apply, map, starmap: results in order', async () => {
    await using p = pool();
    assert.equal(await p.apply(t.sqr, [7]), 49);
    assert.deepEqual(
      await p.map(t.sqr, range(1000)),
      range(1000).map((x) => x * x),
    );
    assert.deepEqual(
      await p.map(t.sqr, range(50), 1),
      range(50).map((x) => x * x),
    );
    assert.deepEqual(await p.map(t.sqr, []), []);
    assert.deepEqual(
      await p.starmap(t.mul, [
        [2, 3],
        [4, 5],
      ]),
      [6, 20],
    );
    assert.deepEqual(
      await p.map(
        t.slowSqr,
        (async function* () {
          yield await Promise.resolve(3);
          yield 4;
        })(),
      ),
      [9, 16],
    );
  });

  test('a task error arrives as its class, with the item, and fails the map', async () => {
    await using p = pool();
    await assert.rejects(p.map(t.failOn, range(20), 3), (e: unknown) => e instanceof t.TaskFailed && e.item === 7);
    await assert.rejects(p.apply(t.failOn, [7]), t.TaskFailed);
    // The pool goes on after a failed call.
    assert.equal(await p.apply(t.sqr, [3]), 9);
  });

  test('async results: callbacks, get, ready, successful', async () => {
    await using p = pool();
    let called: unknown;
    let failed: unknown;
    const r = p.mapAsync(t.sqr, [1, 2, 3], { callback: (v) => (called = v) });
    assert.deepEqual(await r.get(), [1, 4, 9]);
    assert.deepEqual(called, [1, 4, 9]);
    assert.equal(r.ready(), true);
    assert.equal(r.successful(), true);
    const e = p.applyAsync(t.failOn, [7], { errorCallback: (err) => (failed = err) });
    await e.wait();
    assert.equal(e.successful(), false);
    assert.ok(failed instanceof t.TaskFailed);
    const s = p.starmapAsync(t.mul, [[3, 3]]);
    assert.deepEqual(await s.get(5000), [9]);
  });

  test('imap keeps order and reads its input lazily; imapUnordered yields every result', async () => {
    await using p = pool();
    let read = 0;
    function* input(): Generator<number> {
      for (let i = 0; i < 1000; i++) {
        read++;
        yield i;
      }
    }
    const it = p.imap(t.sqr, input());
    const first = await it.next();
    assert.equal(first.value, 0);
    assert.ok(read < 1000, `imap read ${read} items before the first result`);
    const rest: number[] = [];
    for await (const v of it) rest.push(v);
    assert.deepEqual(
      [0, ...rest],
      range(1000).map((x) => x * x),
    );
    const un: number[] = [];
    for await (const v of p.imapUnordered(t.slowSqr, range(20), 2)) un.push(v);
    assert.deepEqual(
      un.sort((a, b) => a - b),
      range(20).map((x) => x * x),
    );
  });

  test('timeout and signal settle the call; the pool goes on', async () => {
    await using p = pool();
    await assert.rejects(p.apply(t.slowSqr, [2, 5000], { timeout: 100 }), TimeoutError);
    const ac = new AbortController();
    const call = p.apply(t.slowSqr, [2, 5000], { signal: ac.signal });
    ac.abort();
    await assert.rejects(call, AbortError);
    assert.equal(await p.apply(t.sqr, [5]), 25);
    // imap too: an aborted signal ends the loop; a timeout ends a wait that no worker answers.
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(async () => {
      for await (const v of p.imap(t.sqr, [1, 2], { signal: aborted.signal })) assert.fail(`got ${v}`);
    }, AbortError);
    await using idle = pool({ processes: 0 });
    await assert.rejects(async () => {
      for await (const v of idle.imap(t.sqr, [1], { timeout: 100 })) assert.fail(`got ${v}`);
    }, TimeoutError);
  });

  test('close/join finish the calls; terminate rejects waiting calls; no child left', async () => {
    const p = pool();
    const r = p.map(t.slowSqr, range(10), 1);
    p.close();
    await assert.rejects(p.apply(t.sqr, [1]), ProcessError);
    await p.join();
    assert.deepEqual(
      await r,
      range(10).map((x) => x * x),
    );
    const q = pool({ processes: 0 });
    const waiting = q.apply(t.sqr, [2]); // no worker: it waits
    q.terminate();
    await assert.rejects(waiting, ProcessError);
    await q.join();
    await assertNoWorkersLeft();
  });

  test('calls made in the same tick share stream entries; calls settled early take their entries out of the queue', async () => {
    const namespace = randomNamespace();
    await using p = pool({ namespace, processes: 0 });
    // No worker: the entries stay queued.
    const calls = range(64).map((x) => p.apply(t.sqr, [x], { timeout: 200 }).catch((e: unknown) => e));
    while ((await redisStatus(server.url, namespace)).queued === 0) await new Promise((r) => setTimeout(r, 10));
    const { queued } = await redisStatus(server.url, namespace);
    assert.ok(queued >= 1 && queued <= 16, `64 calls of one tick made ${queued} entries`);
    for (const e of await Promise.all(calls)) assert.ok(e instanceof TimeoutError);
    // Every chunk of every entry was settled: the entries left the stream.
    const { Redis } = await import('ioredis');
    const r = new Redis(server.url);
    try {
      assert.equal(await r.xlen(`mp:{${namespace}}:tasks`), 0);
    } finally {
      r.disconnect();
    }
  });

  test('onProgress and onTask, per call and pool-wide', async () => {
    const poolTasks: TaskTiming[] = [];
    await using p = pool({ onTask: (x) => poolTasks.push(x) });
    const progress: Progress[] = [];
    const tasks: TaskTiming[] = [];
    const r = await p.map(t.sqr, range(10), { chunksize: 3, onProgress: (x) => progress.push(x), onTask: (x) => tasks.push(x) });
    assert.deepEqual(
      r,
      range(10).map((x) => x * x),
    );
    const byIndex = [...tasks].sort((a, b) => a.index - b.index);
    assert.deepEqual(
      byIndex.map((x) => [x.index, x.items, x.ok]),
      [
        [0, 3, true],
        [3, 3, true],
        [6, 3, true],
        [9, 1, true],
      ],
    );
    for (const x of tasks) {
      assert.ok(x.runMs >= 0 && x.queuedMs >= 0, JSON.stringify(x));
      assert.ok(
        p._children.some((c) => x.worker.includes(`-${c.pid}-`)),
        `worker ${x.worker}`,
      );
    }
    assert.deepEqual(progress.map((x) => [x.done, x.total, x.failed]).at(-1), [10, 10, 0]);
    // A failed task counts as failed.
    const failed: Progress[] = [];
    await assert.rejects(p.apply(t.failOn, [7], { onProgress: (x) => failed.push(x) }), t.TaskFailed);
    assert.deepEqual(
      failed.map((x) => [x.done, x.total, x.failed]),
      [[1, 1, 1]],
    );
    // imap: the total is known once the input has ended.
    const im: Progress[] = [];
    for await (const v of p.imap(t.sqr, range(5), { chunksize: 2, onProgress: (x) => im.push(x) })) assert.equal(typeof v, 'number');
    assert.deepEqual([im.at(-1)?.done, im.at(-1)?.total], [5, 5]);
    assert.equal(poolTasks.length, 4 + 1 + 3);
  });

  test('initializer and initargs run in every local worker before its tasks', async () => {
    await using p = pool({ initializer: t.setTag, initargs: ['ready'] });
    const got = await Promise.all(range(40).map(() => p.apply(t.getTag, [])));
    for (const [tag] of got) assert.equal(tag, 'ready');
    assert.throws(() => pool({ initializer: 'nope' as never }), InvalidArgumentError);
  });

  test("getContext('redis') gives the same Pool API", async () => {
    const ctx = getContext('redis', { url: server.url, namespace: randomNamespace() });
    await using p = ctx.Pool(1, { leaseMs: 500 });
    assert.deepEqual(await p.map(t.sqr, [2, 3]), [4, 9]);
  });

  test("require('multiproc') does not load the Redis client", () => {
    const index = path.join(__dirname, '..', 'src', 'index.js');
    const r = spawnSync(
      process.execPath,
      ['-e', `require(${JSON.stringify(index)}); console.log(Object.keys(require.cache).some((k) => k.includes('ioredis')))`],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.stdout.trim(), 'false', r.stderr);
  });

  test('bad arguments are refused', () => {
    assert.throws(() => new RedisPool({ url: server.url, namespace: 'bad ns{' }), InvalidArgumentError);
    assert.throws(() => new RedisPool({ url: server.url, processes: -1 }), InvalidArgumentError);
  });
});
