// The packed form of the Pool's chunks and replies (src/reduction/fastcodec.ts): every value it
// takes must come back exactly as structured clone would bring it, in-process and through real
// workers on both backends; anything it cannot vouch for goes the structured-clone way; a
// corrupt packed message is a named error, never a wrong value.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as v8 from 'node:v8';

import { ProcessError } from '../src/index.js';
import { Pool } from '../src/pool/pool.js';
import { FAST_TAG, pack, unpack, unpackViews } from '../src/reduction/fastcodec.js';
import { dumps, loads } from '../src/reduction/reduction.js';
import { describeBackends, fixture } from './helpers.js';

type Targets = typeof import('./fixtures/pool_targets.mjs');
let t: Targets;
before(async () => {
  t = (await import(pathToFileURL(fixture('pool_targets.mjs')).href)) as Targets;
});

// eslint-disable-next-line no-sparse-arrays -- a hole is one of the odd values
const holey = [1, , 3];
const ODD: unknown[] = [
  0,
  -0,
  NaN,
  Infinity,
  -Infinity,
  2 ** 31,
  -(2 ** 31),
  2 ** 31 - 1,
  2 ** 53 + 2,
  Number.MIN_VALUE,
  -1.5,
  '',
  'a\uD800b',
  '\uDC00',
  'x\uD83D',
  '\uD83D\uDE00 ok',
  '\0',
  'é'.repeat(1000),
  'z'.repeat(100_000),
  true,
  false,
  null,
  undefined,
];

/** Structured clone's answer, the reference every packed value must match. */
const cloned = (v: unknown): unknown => v8.deserialize(v8.serialize(v));

function assertSame(actual: unknown, expected: unknown, path = 'value'): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path} is an array`);
    assert.equal(actual.length, expected.length, `${path}.length`);
    for (let i = 0; i < expected.length; i++) {
      assert.equal(i in actual, i in expected, `${path}[${i}] hole`);
      assertSame(actual[i], expected[i], `${path}[${i}]`);
    }
    assert.deepEqual(Object.keys(actual), Object.keys(expected), `${path} keys`);
    return;
  }
  assert.ok(Object.is(actual, expected), `${path}: ${String(actual)} is not ${String(expected)}`);
}

test('odd primitives, holes and nested library-built arrays round-trip exactly', async () => {
  const cases: [unknown[], number][] = [
    [ODD, 1],
    [[1, 2, 3, -7, 2 ** 31 - 1], 1],
    [[1.5, -0, NaN, 3], 1],
    [holey, 1],
    [[], 1],
    [[ODD, [1, 2], [0.5], [], holey], 2],
    [[7, true, [1, 'x'], 9.5, 12], 2],
  ];
  for (const [value, fresh] of cases) {
    const bytes = pack(value, fresh);
    assert.ok(bytes, `packs ${JSON.stringify(value).slice(0, 40)}`);
    assert.equal(bytes[0], FAST_TAG);
    assertSame(unpack(bytes), cloned(value));
    assertSame(await loads(bytes), cloned(value));
  }
});

test('a run of numbers changes form where it stops being int32 or numbers, at any position, exactly', () => {
  const breakers: unknown[] = [-0, 0.5, 2 ** 31, -(2 ** 31) - 1, NaN, Infinity, 2 ** 53, 'x', 'a\uDC00', undefined, null, true];
  for (const n of [1, 2, 7, 64, 20_000]) {
    for (const at of [0, Math.floor(n / 2), n - 1]) {
      for (const b of breakers) {
        const a: unknown[] = Array.from({ length: n }, (_, i) => i - 3);
        a[at] = b;
        assertSame(unpack(pack(a)!), cloned(a), `n ${n}, ${String(b)} at ${at}`);
        const holed = new Array<unknown>(n);
        for (let i = 0; i < n; i++) if (i !== (at + 1) % n) holed[i] = a[i];
        assertSame(unpack(pack(holed)!), cloned(holed), `holed n ${n}, ${String(b)} at ${at}`);
      }
    }
  }
});

test('a range of the input, after a reserved header, packs as its slice would', () => {
  const a: unknown[] = [1, 2.5, 'three', -0, NaN, 7, 8, 9, 10, 11];
  for (let from = 0; from <= a.length; from++) {
    for (let to = from; to <= a.length; to++) {
      for (const reserve of [0, 16]) {
        const bytes = pack(a, 1, from, to, reserve)!;
        assert.equal(bytes[reserve], FAST_TAG);
        assertSame(unpack(bytes.subarray(reserve)), cloned(a.slice(from, to)), `[${from}, ${to}) after ${reserve}`);
      }
    }
  }
});

test('number blocks come back as typed arrays over the message where asked, copied when not aligned', () => {
  const ints = [1, -2, 2 ** 31 - 1, -(2 ** 31)];
  const doubles = [0.5, -0, NaN, -Infinity, 2 ** 53, Number.MIN_VALUE];
  const reply = [3, true, doubles, 1.5, 2];
  const top = unpackViews(pack(ints)!, 0);
  assert.ok(top instanceof Int32Array);
  assert.deepEqual([...top], ints);
  const nested = unpackViews(pack(reply, 2)!, 1) as unknown[];
  assert.ok(nested[2] instanceof Float64Array);
  assertSame([...nested[2]], doubles);
  assertSame(unpack(pack(reply, 2)!), cloned(reply));
  // A worker's results gathered in a Float64Array cross as the same block.
  const gathered = [3, true, Float64Array.from(doubles), 1, 2];
  assertSame(unpack(pack(gathered, 2)!), cloned(reply.with(3, 1)));
  // The same bytes at an odd offset: read one by one, the same values.
  for (const bytes of [pack(ints)!, pack(reply, 2)!]) {
    const odd = Buffer.alloc(bytes.length + 1);
    bytes.copy(odd, 1);
    assertSame(unpack(odd.subarray(1)), unpack(bytes));
    const v = unpackViews(odd.subarray(1), 0);
    assert.ok(Array.isArray(v), 'not a typed array at an unaligned offset');
  }
});

test('typed arrays and objects with prototypes among the items are not packed and cross as structured clone does', () => {
  class Point {
    x = 1;
  }
  for (const v of [new Int32Array([1, 2]), new Float64Array([-0]), new Point(), Object.create(null), [1, 2]]) {
    assert.equal(pack([1, v]), undefined, `${Object.prototype.toString.call(v)} is not packed`);
  }
  // Only at a depth the caller vouches for is a Float64Array a block.
  assert.equal(pack([0, true, [new Float64Array([1])], 1, 2], 2), undefined);
});

test('objects, functions, symbols and arrays below the vouched depth are not packed', () => {
  assert.equal(pack([1, { a: 1 }]), undefined);
  assert.equal(pack([1, [2]], 1), undefined);
  assert.equal(pack([1, () => 1]), undefined);
  assert.equal(pack([Symbol('s')]), undefined);
  assert.equal(pack([1n]), undefined);
  assert.equal(pack([new Date(0)]), undefined);
});

test('a truncated or corrupt packed message is ERR_MP_BAD_MESSAGE, never a wrong value', () => {
  const good = pack([1, 'two', [3.5, 4]], 2)!;
  for (let cut = 1; cut < good.length; cut++) {
    assert.throws(
      () => unpack(good.subarray(0, cut)),
      (e: unknown) => e instanceof ProcessError && e.code === 'ERR_MP_BAD_MESSAGE',
      `cut at ${cut}`,
    );
  }
  const unknownType = Buffer.from(good);
  unknownType[6] = 200; // the first element's type
  assert.throws(() => unpack(unknownType), /unknown type 200/);
  const huge = Buffer.from([FAST_TAG, 9, 0xff, 0xff, 0xff, 0x7f]);
  assert.throws(() => unpack(huge), /runs past the end/);
  assert.throws(() => unpack(Buffer.concat([good, Buffer.from([0])])), /trailing bytes/);
});

test('a message with an unknown first byte, or a primitive of the wrong length, is ERR_MP_BAD_MESSAGE, never undefined', async () => {
  for (const v of [0, -1.5, 'short', true, false, null, undefined]) assert.equal(await loads(dumps(v)), v);
  const bad = [[], [0], [7], [200], [1, 0, 0], [3, 0], [6, 6]].map((b) => Uint8Array.from(b));
  for (const b of bad) {
    await assert.rejects(
      Promise.resolve().then(() => loads(b)),
      (e: unknown) => e instanceof ProcessError && e.code === 'ERR_MP_BAD_MESSAGE',
      `bytes [${b.join(', ')}]`,
    );
  }
});

describeBackends('Pool messages', (ctx) => {
  const make = (): Pool => new Pool({ processes: 2, context: ctx });

  test('map, starmap and apply carry odd values to the worker and back exactly', async () => {
    await using pool = make();
    assertSame(await pool.map(t.identity, ODD), cloned(ODD));
    assertSame(await pool.map(t.identity, ODD, 3), cloned(ODD));
    for (const v of ODD) assertSame(await pool.apply(t.identity, [v]), v);
    // A hole in an argument list arrives as undefined, as spreading it does locally.
    assertSame(await pool.starmap(t.argsOf, [[1, -0, 'a\uD800'], holey, []]), [[1, -0, 'a\uD800'], [1, undefined, 3], []]);
    const big = Array.from({ length: 50_000 }, (_, i) => (i % 3 === 0 ? i * 0.5 : i));
    assert.deepEqual(await pool.map(t.identity, big), big);
    // Results that start as numbers and stop being numbers part-way through a chunk.
    const mixed = [1, -0, NaN, 2 ** 40, 'str', 'a\uD800', null, undefined, 7.5, -(2 ** 31)];
    assertSame(await pool.map(t.identity, mixed, 10), cloned(mixed));
    assertSame(
      await pool.starmap(t.argsOf, [
        [-0, NaN],
        [2 ** 31, 'x'],
      ]),
      [
        [-0, NaN],
        [2 ** 31, 'x'],
      ],
    );
    // Items that are not packed (typed arrays, class instances) cross as structured clone does.
    const typed = [new Int32Array([1, -1]), new Float64Array([-0, NaN]), new Uint8Array([255])];
    const back = await pool.map(t.identity, typed);
    for (const [i, v] of typed.entries()) {
      assert.equal(Object.prototype.toString.call(back[i]), Object.prototype.toString.call(v));
      assertSame([...(back[i] as Float64Array)], [...(v as Float64Array)]);
    }
    // imap hands out arrays of numbers one by one, as map does.
    const seen: unknown[] = [];
    for await (const v of pool.imap(t.identity, [-0, NaN, 1.5, 3], 4)) seen.push(v);
    assertSame(seen, [-0, NaN, 1.5, 3]);
  });

  test("a task's own array keeps its named properties (it is not packed)", async () => {
    await using pool = make();
    const [one] = await pool.map(t.labelled, [4]);
    assert.deepEqual(one, Object.assign([4, 4], { label: 'n4' }));
    assert.equal((await pool.apply(t.labelled, [5])).label, 'n5');
  });
});

describeBackends('Pipe and Queue messages', (ctx) => {
  test('every odd value crosses a Pipe and a Queue exactly (short strings with lone surrogates too)', async () => {
    const [a, b] = ctx.Pipe();
    const q = ctx.Queue();
    try {
      for (const v of [...ODD, ODD, holey]) {
        await a.send(v);
        assertSame(await b.recv(), cloned(v));
        await q.put(v);
        assertSame(await q.get(), cloned(v));
      }
    } finally {
      a.close();
      b.close();
      q.close();
    }
  });
});
