// Value, Array, RawValue, RawArray: CPython's _TestValue and _TestArray on both backends, plus the
// typecode limits, the errors, and what crosses to a child (the name, never the bytes).
import assert from 'node:assert/strict';
import { afterEach, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { InvalidArgumentError } from '../src/errors.js';
import { dumps, loads } from '../src/reduction/reduction.js';
import {
  RawArray,
  RawValue,
  SharedArray,
  sizeOf,
  Synchronized,
  SynchronizedArray,
  Value,
  type Typecode,
} from '../src/memory/sharedctypes.js';
import { Lock, RLock } from '../src/sync/synchronize.js';
import { assertNoLeftovers, describeBackends, fixture } from './helpers.js';

type Targets = typeof import('./fixtures/shm_targets.mjs');
let t: Targets;
before(async () => {
  t = (await import(pathToFileURL(fixture('shm_targets.mjs')).href)) as Targets;
});

// CPython's codes_values, plus every other typecode.
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

describeBackends('sharedctypes', (ctx) => {
  for (const raw of [false, true]) {
    test(`${raw ? 'RawValue' : 'Value'}: a child sets every typecode, the parent sees it`, async () => {
      const values = CODES_VALUES.map(([code, v]) => (raw ? new RawValue(code, v as never) : new Value(code, v as never)));
      values.forEach((sv, k) => assert.equal(sv.value, CODES_VALUES[k]![1]));
      const p = new ctx.Process({ target: t.setValues, args: [values, CODES_VALUES.map((cv) => cv[2])] });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      values.forEach((sv, k) => assert.equal(sv.value, CODES_VALUES[k]![2], `typecode ${CODES_VALUES[k]![0]}`));
    });

    test(`${raw ? 'RawArray' : 'Array'}: a child computes a cumulative sum in place`, async () => {
      const seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];
      const arr = raw ? new RawArray('i', seq) : new SharedArray('i', seq);
      assert.equal(arr.length, seq.length);
      assert.equal(arr[3], seq[3]);
      assert.deepEqual(arr.slice(2, 7), seq.slice(2, 7));
      arr.set([1, 2, 3, 4], 4);
      seq.splice(4, 4, 1, 2, 3, 4);
      assert.deepEqual(arr.toArray(), seq);
      for (let i = 1; i < seq.length; i++) seq[i]! += seq[i - 1]!;
      const p = new ctx.Process({ target: t.cumsum, args: [arr] });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.deepEqual([...arr], seq);
    });
  }

  test('4 children x 1000 increments (and 1000 by the parent) under withLock end exact', async () => {
    const counter = new Value('i', 0);
    const procs = Array.from({ length: 4 }, () => new ctx.Process({ target: t.increment, args: [counter, 1000] }));
    for (const p of procs) p.start();
    await t.increment(counter, 1000);
    for (const p of procs) await p.join();
    assert.deepEqual(
      procs.map((p) => p.exitcode),
      [0, 0, 0, 0],
    );
    assert.equal(counter.value, 5000);
  });

  test('children fill slices of one array', async () => {
    const arr = new SharedArray('d', 4000);
    const procs = [0, 1, 2, 3].map((k) => new ctx.Process({ target: t.fillSlice, args: [arr, k * 1000, (k + 1) * 1000, k + 0.5] }));
    for (const p of procs) p.start();
    for (const p of procs) await p.join();
    assert.deepEqual(
      procs.map((p) => p.exitcode),
      [0, 0, 0, 0],
    );
    for (let i = 0; i < 4000; i++) assert.equal(arr[i], Math.floor(i / 1000) + 0.5);
  });

  test("the value's lock crosses with it: a child cannot take it while the parent holds it", async () => {
    const v = new Value('i', 0, { lock: new Lock() });
    const out = new RawValue('i', -1);
    await v.acquire();
    const p = new ctx.Process({ target: t.tryLock, args: [v, out] });
    p.start();
    await p.join();
    v.release();
    assert.equal(out.value, 0);
    const q = new ctx.Process({ target: t.tryLock, args: [v, out] });
    q.start();
    await q.join();
    assert.equal(out.value, 1);
  });

  test('a 100 MB array crosses by name, nested in args', async (tc) => {
    const arr = new RawArray('B', 100_000_000);
    const args: [{ deep: [typeof arr] }] = [{ deep: [arr] }];
    const start = process.hrtime.bigint();
    const wire = dumps(args, 'args');
    const micros = Number(process.hrtime.bigint() - start) / 1000;
    tc.diagnostic(`dumps() of a 100 MB RawArray: ${wire.length} bytes in ${micros.toFixed(1)} µs`);
    assert.ok(wire.length < 1024, `serialized ${wire.length} bytes`);
    await loads(wire); // adopt the count dumps() added, as a receiver would
    const p = new ctx.Process({ target: t.touchLast, args });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.equal(arr[arr.length - 1], 7);
    assert.equal(arr[0], 1);
  });
});

describe('sharedctypes in one process', () => {
  afterEach(assertNoLeftovers);

  test('getLock/getObj (CPython test_getobj_getlock)', () => {
    const v1 = new Value('i', 5);
    assert.ok(v1 instanceof Synchronized && v1 instanceof Value);
    assert.ok(v1.getLock() instanceof RLock, 'the default lock is an RLock, as in CPython');
    assert.ok(v1.getObj() instanceof RawValue);
    v1.getObj().value = 6;
    assert.equal(v1.value, 6);
    const v2 = new Value('i', 5, { lock: null });
    assert.ok(v2.getLock() instanceof RLock);
    const lock = new Lock();
    const v3 = new Value('i', 5, { lock });
    assert.equal(v3.getLock(), lock);
    const v4 = new Value('i', 5, { lock: false });
    assert.ok(v4 instanceof RawValue && !(v4 instanceof Synchronized));
    assert.equal('getLock' in v4, false);
    assert.equal('getObj' in v4, false);
    assert.throws(() => new Value('i', 5, { lock: 'navalue' as never }), InvalidArgumentError);
    const v5 = new RawValue('i', 5);
    assert.equal('getLock' in v5, false);

    const a1 = new SharedArray('i', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(a1 instanceof SynchronizedArray && a1.getLock() instanceof RLock);
    assert.ok(a1.getObj() instanceof RawArray);
    a1.getObj()[2] = 20;
    assert.equal(a1[2], 20);
    const a3 = new SharedArray('i', [1, 2], { lock });
    assert.equal(a3.getLock(), lock);
    const a4 = new SharedArray('i', [1, 2], { lock: false });
    assert.ok(a4 instanceof RawArray && !(a4 instanceof SynchronizedArray));
    assert.equal('getLock' in a4, false);
    assert.throws(() => new SharedArray('i', [1], { lock: 'notalock' as never }), InvalidArgumentError);
  });

  test('acquire/release/withLock/guard delegate to the lock', async () => {
    const v = new Value('d', 0);
    assert.equal(await v.acquire(), true);
    assert.equal(await v.acquire(), true, 'an RLock: the owner may acquire again');
    v.release();
    v.release();
    assert.throws(() => v.release(), /un-acquired/);
    assert.equal(await v.withLock(() => (v.value = 2.5)), 2.5);
    const lock = v.getLock();
    assert.ok(lock instanceof RLock);
    {
      await using _held = await v.guard();
      assert.equal(lock._isMine(), true);
    }
    assert.equal(lock._isMine(), false);
    await assert.rejects(
      v.withLock(() => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(lock._isMine(), false, 'released after a throw');
  });

  test('every typecode round-trips its limits; out of range and wrong types are refused', () => {
    const limits: [Typecode, unknown, unknown, unknown[], number][] = [
      ['b', -128, 127, [-129, 128, 1.5, '1'], 1],
      ['B', 0, 255, [-1, 256], 1],
      ['h', -32768, 32767, [-32769, 32768], 2],
      ['H', 0, 65535, [-1, 65536], 2],
      ['i', -(2 ** 31), 2 ** 31 - 1, [-(2 ** 31) - 1, 2 ** 31, 0.5, 1n, NaN], 4],
      ['I', 0, 2 ** 32 - 1, [-1, 2 ** 32], 4],
      ['l', -(2n ** 63n), 2n ** 63n - 1n, [-(2n ** 63n) - 1n, 2n ** 63n, 1.5, 2 ** 60], 8],
      ['L', 0n, 2n ** 64n - 1n, [-1n, 2n ** 64n], 8],
      ['q', -(2n ** 63n), 2n ** 63n - 1n, [2n ** 63n, '5'], 8],
      ['Q', 0n, 2n ** 64n - 1n, [2n ** 64n, -1], 8],
      ['f', -3.4028234663852886e38, 3.4028234663852886e38, ['1', 1n], 4],
      ['d', -Number.MAX_VALUE, Number.MAX_VALUE, [null, '1'], 8],
      ['c', '\0', '\xff', ['ab', '', 'Ā', 256, -1], 1],
      ['u', '\0', '\u{10ffff}', ['ab', '', 65], 4],
    ];
    for (const [code, min, max, bad, bytes] of limits) {
      assert.equal(sizeOf(code), bytes, code);
      for (const make of [(x: unknown) => new RawValue(code, x as never), (x: unknown) => new Value(code, x as never)]) {
        assert.equal(make(min).value, min, `${code} min`);
        const v = make(max);
        assert.equal(v.value, max, `${code} max`);
        for (const b of bad) {
          assert.throws(() => make(b), InvalidArgumentError, `${code} accepted ${String(b)}`);
          assert.throws(() => (v.value = b as never), InvalidArgumentError, `${code}.value accepted ${String(b)}`);
        }
      }
      const arr = new RawArray(code, [min, max] as never);
      assert.deepEqual(arr.toArray(), [min, max]);
      for (const b of bad) assert.throws(() => (arr[0] = b as never), InvalidArgumentError);
      assert.equal(arr[0], min, 'a refused write leaves the element');
    }
    // Safe-integer numbers are taken for 64-bit codes; reads give bigints.
    assert.equal(new Value('q', 5).value, 5n);
    assert.equal(new Value('f', 0.1).value, Math.fround(0.1));
    assert.equal(new Value('c', 120).value, 'x');
    assert.equal(new Value('c', new Uint8Array([121])).value, 'y');
    assert.equal(new Value('i').value, 0);
    assert.equal(new Value('c').value, '\0');
  });

  test('unknown typecodes, bad sizes and size mismatches are InvalidArgumentError', () => {
    assert.throws(() => new Value('x' as 'i', 1), /unknown typecode "x"/);
    assert.throws(() => new RawArray('z' as never, 1), InvalidArgumentError);
    assert.throws(() => new SharedArray('i', -1), /size must be an integer >= 0/);
    // Larger than Node can map: an argument error naming the limit, before any segment is made.
    assert.throws(
      () => new RawArray('d', 2 ** 40),
      (e: unknown) => e instanceof InvalidArgumentError && /more than Node can map/.test(e.message),
    );
    assert.throws(() => new SharedArray('i', 1.5), InvalidArgumentError);
    assert.throws(() => new SharedArray('i', 'abc' as never), /string initializes only 'c' and 'u'/);
    assert.throws(() => new SharedArray('i', null as never), InvalidArgumentError);
    assert.throws(() => new SharedArray('i', [1, 'x' as never]), /\[1\]/);
    const arr = new RawArray('i', 3);
    assert.throws(() => (arr.value = [1, 2]), /got 2 values for an array of length 3/);
    assert.throws(() => arr.set([1, 2, 3], 1), /do not fit/);
    arr.value = [7, 8, 9];
    assert.deepEqual(arr.value, [7, 8, 9]);
    const c = new SharedArray('c', 3);
    assert.throws(() => (c.value = 'abcd'), /too long/);
    assert.throws(() => (c.raw = new Uint8Array(4)), InvalidArgumentError);
    assert.throws(() => (arr.raw = new Uint8Array(1)), /only 'c' arrays/);
  });

  test("'c' and 'u' arrays: .value is text up to the first NUL, .raw the bytes", () => {
    const c = new SharedArray('c', 'hello');
    assert.equal(c.length, 5);
    assert.equal(c.value, 'hello');
    assert.equal(c[1], 'e');
    c[0] = 'j';
    assert.equal(c.value, 'jello');
    c.value = 'hi';
    assert.equal(c.value, 'hi', 'a shorter value is NUL-terminated, as in Python');
    assert.deepEqual([...c.raw], [104, 105, 0, 108, 111]);
    c.value = 'né';
    assert.equal(c.value, 'né', 'strings are UTF-8');
    const big = new SharedArray('c', 10);
    assert.equal(big.value, '');
    big.raw = new Uint8Array([65, 66]);
    assert.equal(big.value, 'AB');
    const u = new RawArray('u', 'añ😀');
    assert.equal(u.length, 3);
    assert.equal(u[2], '😀');
    assert.equal(u.value, 'añ😀');
    u.value = 'z';
    assert.equal(u.value, 'z');
  });

  test('indexing behaves like a typed array; .buf is the memory itself', (tc) => {
    const arr = new SharedArray('i', [1, 2, 3]);
    assert.equal(arr[3], undefined);
    assert.throws(() => (arr[3] = 1), RangeError, 'writes out of range are refused, not dropped');
    assert.equal(arr.at(-1), 3);
    assert.equal(1 in arr, true);
    assert.equal(3 in arr, false);
    assert.deepEqual(Array.from(arr), [1, 2, 3]);
    assert.equal(JSON.stringify(arr), '[1,2,3]');
    assert.ok(arr.buf instanceof Int32Array);
    arr.buf[0] = 10;
    assert.equal(arr[0], 10);
    assert.equal(String(arr), "Array('i', [10, 2, 3])");
    assert.equal(JSON.stringify(new RawArray('q', [1n])), '["1"]');

    // The price of arr[i] (a Proxy) against arr.buf[i]; reported, not asserted.
    const big = new RawArray('d', 1000);
    const buf = big.buf;
    const N = 2_000_000;
    const time = (f: () => void): number => {
      const s = process.hrtime.bigint();
      f();
      return Number(process.hrtime.bigint() - s) / N;
    };
    let sink = 0;
    const viaBuf = time(() => {
      for (let k = 0; k < N; k++) sink += buf[k % 1000]!;
    });
    const viaProxy = time(() => {
      for (let k = 0; k < N; k++) sink += big[k % 1000]!;
    });
    tc.diagnostic(`read: arr.buf[i] ${viaBuf.toFixed(1)} ns, arr[i] ${viaProxy.toFixed(1)} ns (sum ${sink})`);
  });

  test('dumps() sends names: small, and a received copy shares memory', async () => {
    const v = new Value('d', 1.25, { lock: new Lock() });
    const a = new SharedArray('Q', [1n, 2n]);
    const wire = dumps([v, a, v]);
    assert.ok(wire.length < 1024);
    const [v2, a2, v3] = (await loads(wire)) as [Value<'d'>, SharedArray<'Q'>, Value<'d'>];
    assert.equal(v2, v3, 'one object sent twice arrives as one');
    assert.ok(v2 instanceof Synchronized && a2 instanceof SynchronizedArray);
    assert.notEqual(v2, v);
    v2.value = 9.5;
    a2[1] = 2n ** 64n - 1n;
    assert.equal(v.value, 9.5);
    assert.equal(a[1], 2n ** 64n - 1n);
    assert.equal(await v2.acquire({ block: false }), true);
    assert.equal(await v.acquire({ block: false }), false, 'the copy has the same lock');
    v2.release();
  });
});
