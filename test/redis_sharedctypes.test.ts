// The Redis Value and Array against a real redis-server: the bodies of the local sharedctypes
// tests (CPython's _TestValue and _TestArray) with every read and write awaited, run in real
// children of both start methods, plus the typecode limits, first-use rules and errors.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { getContext, InvalidArgumentError, ProcessError, TimeoutError, type RedisContext, type Typecode } from '../src/index.js';
import { dumps, loads } from '../src/reduction/reduction.js';
import { fixture, joinAll, killLeftoverChildren, METHODS, start } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

type Targets = typeof import('./fixtures/redis_values.mjs');
let t: Targets;
let server: RedisServer;

const ctx = (): RedisContext => getContext('redis', { url: server.url, namespace: randomNamespace() });
const code = (c: string) => (e: unknown) => e instanceof ProcessError && e.code === c;

// CPython's codes_values, plus every other typecode (as the local test).
const CODES_VALUES: [Typecode, unknown, unknown][] = [
  ['i', 4343, 24234],
  ['d', 3.625, -4.25],
  ['h', -232, 234],
  ['q', 2n ** 33n, 2n ** 34n],
  ['c', 'x', 'y'],
  ['u', 'é', '😀'],
  ['b', -5, 100],
  ['B', 200, 3],
  ['H', 65535, 1],
  ['I', 4294967295, 7],
  ['l', -(2n ** 40n), 5n],
  ['L', 2n ** 64n - 1n, 0n],
  ['Q', 1n, 2n ** 63n],
  ['f', 1.5, -0.25],
];

describe('Redis Value and Array', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_values.mjs')).href)) as Targets;
    server = await RedisServer.start();
  });
  after(async () => {
    await killLeftoverChildren();
    await server.stop();
  });

  for (const method of METHODS) {
    const local = (): ReturnType<typeof getContext> => getContext(method);
    for (const raw of [false, true]) {
      test(`[${method}] ${raw ? 'RawValue' : 'Value'}: a child sets every typecode, the parent sees it`, async () => {
        const c = ctx();
        const values = CODES_VALUES.map(([tc, v]) => (raw ? c.RawValue(tc, v as never) : c.Value(tc, v as never)));
        for (const [k, sv] of values.entries()) assert.equal(await sv.get(), CODES_VALUES[k]![1]);
        await joinAll([start(local(), t.setValues, [values as never, CODES_VALUES.map((cv) => cv[2])])]);
        for (const [k, sv] of values.entries()) assert.equal(await sv.get(), CODES_VALUES[k]![2], `typecode ${CODES_VALUES[k]![0]}`);
      });

      test(`[${method}] ${raw ? 'RawArray' : 'Array'}: a child computes a cumulative sum in place`, async () => {
        const c = ctx();
        const seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];
        const arr = raw ? c.RawArray('i', seq) : c.Array('i', seq);
        assert.equal(arr.length, seq.length);
        assert.equal(await arr.get(3), seq[3]);
        assert.deepEqual(await arr.slice(2, 7), seq.slice(2, 7));
        await arr.set([1, 2, 3, 4], 4);
        seq.splice(4, 4, 1, 2, 3, 4);
        assert.deepEqual(await arr.toArray(), seq);
        for (let i = 1; i < seq.length; i++) seq[i]! += seq[i - 1]!;
        await joinAll([start(local(), t.cumsum, [arr])]);
        const got: number[] = [];
        for await (const x of arr) got.push(x);
        assert.deepEqual(got, seq);
      });
    }

    test(`[${method}] 4 children x 100 increments (and 100 by the parent) under withLock end exact`, async () => {
      const counter = ctx().Value('i', 0);
      const procs = Array.from({ length: 4 }, () => start(local(), t.increment, [counter, 100]));
      await t.increment(counter, 100);
      await joinAll(procs);
      assert.equal(await counter.get(), 500);
    });

    test(`[${method}] children fill slices of one array`, async () => {
      const arr = ctx().Array('d', 400);
      await joinAll([0, 1, 2, 3].map((k) => start(local(), t.fillSlice, [arr, k * 100, (k + 1) * 100, k + 0.5])));
      const all = await arr.toArray();
      for (let i = 0; i < 400; i++) assert.equal(all[i], Math.floor(i / 100) + 0.5);
    });

    test(`[${method}] the value's lock crosses with it: a child cannot take it while the parent holds it`, async () => {
      const c = ctx();
      const v = c.Value('i', 0, { lock: c.Lock() });
      const out = c.RawValue('i', -1);
      await v.acquire();
      await joinAll([start(local(), t.tryLock, [v, out])]);
      await v.release();
      assert.equal(await out.get(), 0);
      await joinAll([start(local(), t.tryLock, [v, out])]);
      assert.equal(await out.get(), 1);
    });
  }

  for (const method of METHODS)
    test(`[${method}] a value and an array as Pool task arguments: the workers write the same objects`, async () => {
      const c = ctx();
      const counter = c.Value('i', 0);
      const arr = c.Array('d', 40);
      const pool = getContext(method).Pool(2);
      try {
        await pool.starmap(t.increment, [
          [counter, 10],
          [counter, 10],
          [counter, 10],
        ]);
        await pool.starmap(
          t.fillSlice,
          [0, 1, 2, 3].map((k) => [arr, k * 10, (k + 1) * 10, k + 0.5] as const),
        );
      } finally {
        pool.close();
        await pool.join();
      }
      assert.equal(await counter.get(), 30);
      assert.deepEqual(
        await arr.toArray(),
        Array.from({ length: 40 }, (_, i) => Math.floor(i / 10) + 0.5),
      );
    });

  test('getLock/getObj, acquire/release/withLock/guard; a value crosses as its name', async () => {
    const c = ctx();
    const v = c.Value('i', 5, { name: 'v' });
    const lock = v.getLock();
    assert.equal(lock.name, 'v.lock');
    assert.equal(await v.getObj().get(), 5);
    assert.throws(() => v.getObj().getLock(), InvalidArgumentError);
    assert.equal(await v.acquire(), true);
    assert.equal(await c.RLock({ name: 'v.lock' }).locked(), true); // the lock is found by name too
    await v.release();
    assert.equal(await v.withLock(() => 7), 7);
    {
      await using held = await v.guard();
      assert.equal(held, v);
      assert.equal(await c.Lock({ name: 'x' }).acquire({ block: false }), true);
    }
    const own = c.Lock({ name: 'x' });
    const guarded = c.Value('i', 0, { lock: own });
    await assert.rejects(guarded.guard({ timeout: 20 }), TimeoutError); // 'x' is held (a Lock is not recursive)
    const wire = dumps([v], 'args');
    assert.ok(wire.length < 1024, `${wire.length} bytes`);
    const [back] = (await loads(wire)) as [typeof v];
    await back.set(9);
    assert.equal(await v.get(), 9);
  });

  test('the same name is the same object; the first process sets typecode, length and values', async () => {
    const c = ctx();
    const a = c.Value('d', 1.5, { name: 'x' });
    const b = c.Value('d', 99, { name: 'x' }); // opened: its initial value is not written
    assert.equal(await b.get(), 1.5);
    await b.set(2.25);
    assert.equal(await a.get(), 2.25);
    await assert.rejects(c.Value('i', 0, { name: 'x' }).get(), (e) => e instanceof InvalidArgumentError && /typecode 'd'/.test(e.message));
    const arr = c.Array('c', 'héllo', { name: 'text' });
    assert.equal(arr.length, 6); // UTF-8 bytes, as the local 'c' array
    assert.deepEqual(await c.Array('c', 6, { name: 'text' }).slice(0, 2), ['h', '\u00c3']);
    await assert.rejects(c.Array('c', 7, { name: 'text' }).get(0), (e) => e instanceof InvalidArgumentError && /length 6/.test(e.message));
    await a.destroy();
    assert.equal(await c.Value('d', 3, { name: 'x' }).get(), 3); // destroyed: the next one creates it
  });

  test('every typecode round-trips its limits; out of range and wrong types are refused', async () => {
    const c = ctx();
    const limits: [Typecode, unknown[], unknown[]][] = [
      ['b', [-128, 127], [128, 1.5, '1']],
      ['B', [0, 255], [-1, 256]],
      ['h', [-32768, 32767], [32768]],
      ['H', [0, 65535], [-1]],
      ['i', [-2147483648, 2147483647], [2147483648]],
      ['I', [0, 4294967295], [-1]],
      ['q', [-(2n ** 63n), 2n ** 63n - 1n], [2n ** 63n, 1.5]],
      ['Q', [0n, 2n ** 64n - 1n], [-1n]],
      ['f', [0.1, -3e38], ['x']],
      ['d', [Number.MAX_VALUE, -0.1, Infinity], [1n]],
      ['c', ['\u00ff', '\u0000'], ['ab', 256]],
      ['u', ['\u{10ffff}', 'a'], ['ab', 1]],
    ];
    for (const [tc, ok, bad] of limits) {
      const v = c.Value(tc);
      assert.equal(await v.get(), tc === 'c' || tc === 'u' ? '\u0000' : 'qQ'.includes(tc) ? 0n : 0); // never written: zero
      for (const x of ok) {
        await v.set(x as never);
        assert.equal(await v.get(), tc === 'f' ? Math.fround(x as number) : x, `${tc} ${String(x)}`);
      }
      for (const x of bad) await assert.rejects(v.set(x as never), InvalidArgumentError, `${tc} ${String(x)}`);
    }
    assert.throws(() => c.Value('z' as never), InvalidArgumentError);
    assert.throws(() => c.Array('i', -1), InvalidArgumentError);
    assert.throws(() => c.Array('i', 'abc'), InvalidArgumentError);
    assert.throws(() => c.Value('i', 0, { lock: {} as never }), InvalidArgumentError);
    const arr = c.Array('i', 3);
    assert.equal(await arr.get(3), undefined);
    assert.equal(await arr.at(-1), 0);
    await assert.rejects(arr.set(3, 1), RangeError);
    await assert.rejects(arr.set([1, 2], 2), RangeError);
    arr.close();
    await assert.rejects(arr.get(0), code('ERR_MP_CLOSED'));
  });
});
