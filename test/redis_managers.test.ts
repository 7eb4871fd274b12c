// The Redis manager against a real redis-server: the local manager tests' bodies (CPython's
// _TestContainers) on dicts, lists, Namespaces and Values kept in Redis, the seed programs'
// children on both start methods, names, and what shutdown deletes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { getContext, IndexError, ProcessError, ValueError, type RedisContext } from '../src/index.js';
import { dictBody } from './container_bodies.js';
import { fixture, joinAll, killLeftoverChildren, METHODS, start } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

type Targets = typeof import('./fixtures/redis_values.mjs');
let t: Targets;
let server: RedisServer;

const ctx = (): RedisContext => getContext('redis', { url: server.url, namespace: randomNamespace() });

describe('Redis manager', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_values.mjs')).href)) as Targets;
    server = await RedisServer.start();
  });
  after(async () => {
    await killLeftoverChildren();
    await server.stop();
  });

  test('dict (_TestContainers.test_dict)', async () => {
    await using m = await ctx().Manager();
    await dictBody((init) => m.dict(init as never) as never);
    const odd = await m.dict();
    for (const k of [1, '1', 1n, true, null, undefined, -0.5, 'n:1']) await odd.set(k as never, String(k));
    assert.deepEqual(await odd.keys(), [1, '1', 1n, true, null, undefined, -0.5, 'n:1']);
  });

  test('list (_TestContainers.test_list, without sort)', async () => {
    await using m = await ctx().Manager();
    const a = await m.list([...Array(10).keys()]);
    assert.deepEqual(await a.copy(), [...Array(10).keys()]);
    const b = await m.list<number>();
    assert.deepEqual(await b.copy(), []);
    await b.extend([...Array(5).keys()]);
    assert.deepEqual(await b.copy(), [0, 1, 2, 3, 4]);
    assert.equal(await b.get(2), 2);
    assert.equal(await b.get(-1), 4);
    await assert.rejects(b.get(10), IndexError);
    assert.deepEqual(await b.slice(2, 5), [2, 3, 4]);
    assert.deepEqual(await b.slice(-2), [3, 4]);
    await b.set(0, 10);
    await assert.rejects(b.set(10, 1), IndexError);
    await b.append(-1);
    await b.insert(0, 99);
    await b.insert(3, 50);
    await b.delete(3);
    assert.deepEqual(await b.copy(), [99, 10, 1, 2, 3, 4, -1]);
    await b.reverse();
    assert.deepEqual(await b.copy(), [-1, 4, 3, 2, 1, 10, 99]);
    assert.equal(await b.index(10), 5);
    await assert.rejects(b.index(10, 0, 5), ValueError);
    assert.equal(await b.count(3), 1);
    await b.remove(3);
    await assert.rejects(b.remove(3), ValueError);
    assert.equal(await b.pop(), 99);
    assert.equal(await b.pop(0), -1);
    assert.equal(await b.pop(1), 2);
    await assert.rejects(b.pop(9), IndexError);
    assert.equal(await b.at(-1), 10);
    assert.equal(await b.at(9), undefined);
    assert.equal(await b.len(), 3);
    const items: number[] = [];
    for await (const x of b) items.push(x);
    assert.deepEqual(items, [4, 1, 10]);
    const objs = await m.list([{ a: [1] }, { a: [2] }]);
    assert.equal(await objs.index({ a: [2] }), 1, 'an object written the same way is equal');
    await b.clear();
    await assert.rejects(b.pop(), (e: Error) => e instanceof IndexError && /empty/.test(e.message));
  });

  test('Namespace, Value, Array, and the sync types', async () => {
    const c = ctx();
    await using m = await c.Manager();
    const ns = await m.Namespace({ x: 1 });
    await ns.set('name', 'Bob');
    assert.equal(await ns.get('x'), 1);
    assert.equal(await ns.get('name'), 'Bob');
    assert.equal(await ns.get('missing'), undefined);
    assert.deepEqual(await ns.toObject(), { x: 1, name: 'Bob' });
    assert.equal(await ns.delete('x'), true);
    assert.equal(await ns.has('x'), false);
    const v = await m.Value('i', 10);
    assert.equal(await v.get(), 10);
    await v.set(11);
    assert.equal(await v.get(), 11);
    assert.equal(await v.typecode(), 'i');
    const arr = await m.Array('i', [0, 1, 2]);
    assert.equal(arr.length, 3);
    await arr.set(1, 5);
    assert.deepEqual(await arr.toArray(), [0, 5, 2]);
    const lock = await m.Lock();
    assert.equal(await lock.acquire(), true);
    await lock.release();
    const sem = await m.Semaphore(2);
    assert.equal(await sem.getValue(), 2);
    const q = await m.Queue<number>();
    await q.put(1);
    assert.equal(await q.get(), 1);
    const ev = await m.Event();
    await ev.set();
    assert.equal(await ev.wait(0), true);
    const cond = await m.Condition();
    await cond.acquire();
    assert.equal(await cond.wait(10), false);
    await cond.release();
  });

  test('names: another manager (or process) opens the same object; shutdown deletes only the unnamed ones', async () => {
    const c = ctx();
    const m1 = await c.Manager();
    const named = await m1.dict({ a: 1 }, { name: 'shared' });
    const anon = await m1.list([1, 2]);
    const m2 = await c.Manager();
    const again = await m2.dict({ a: 99, b: 2 }, { name: 'shared' }); // exists: init not written
    assert.deepEqual(await again.toObject(), { a: 1 });
    await again.set('b', 3);
    assert.equal(await named.get('b'), 3);
    await m1.shutdown();
    assert.equal(await anon.len(), 0, 'the unnamed list was deleted');
    assert.deepEqual(await named.toObject(), { a: 1, b: 3 }, 'the named dict stays');
    await assert.rejects(m1.dict(), (e: unknown) => e instanceof ProcessError && e.code === 'ERR_MP_CLOSED');
    await named.destroy();
    assert.equal(await again.len(), 0);
    await m2.shutdown();
  });

  for (const method of METHODS) {
    test(`[${method}] seed 000: 10 children each set dic[i] = 100; the parent polls isAlive`, async () => {
      await using m = await ctx().Manager();
      const dic = await m.dict<number, number>();
      const procs = [...Array(10).keys()].map((i) => start(getContext(method), t.setHundred, [i, dic]));
      while (procs.some((p) => p.isAlive())) await new Promise((r) => setTimeout(r, 10));
      for (const p of procs) assert.equal(p.exitcode, 0);
      assert.deepEqual(await dic.copy(), new Map([...Array(10).keys()].map((i) => [i, 100])));
    });

    test(`[${method}] a dict and a lock as Pool task arguments: seed 000 and 001 in pool workers`, async () => {
      await using m = await ctx().Manager();
      const dic = await m.dict<number, number>();
      const d = await m.dict({ num: 100 });
      const lock = await m.Lock();
      const pool = getContext(method).Pool(2);
      try {
        await pool.starmap(
          t.setHundred,
          [...Array(10).keys()].map((i) => [i, dic] as const),
        );
        await pool.starmap(
          t.decrement,
          Array.from({ length: 10 }, () => [d, lock] as const),
        );
      } finally {
        pool.close();
        await pool.join();
      }
      assert.deepEqual(
        [...(await dic.copy())].sort((a, b) => a[0] - b[0]),
        [...Array(10).keys()].map((i) => [i, 100]),
      );
      assert.equal(await d.get('num'), 90);
    });

    test(`[${method}] seed 001: 10 children decrement under a manager Lock: exactly 90`, async () => {
      await using m = await ctx().Manager();
      const d = await m.dict({ num: 100 });
      const lock = await m.Lock();
      await joinAll(Array.from({ length: 10 }, () => start(getContext(method), t.decrement, [d, lock])));
      assert.equal(await d.get('num'), 90);
    });

    test(`[${method}] 3 children append to one list at once: every item there, each child's in order`, async () => {
      await using m = await ctx().Manager();
      const l = await m.list<number>();
      const done = await m.Queue<number>();
      const procs = [0, 1000, 2000].map((from) => start(getContext(method), t.appendMany, [l, from, 100, done]));
      for (let k = 0; k < 3; k++) await done.get();
      await joinAll(procs);
      const all = await l.copy();
      assert.equal(all.length, 300);
      for (const from of [0, 1000, 2000])
        assert.deepEqual(
          all.filter((x) => x >= from && x < from + 1000),
          Array.from({ length: 100 }, (_, i) => from + i),
        );
    });
  }
});
