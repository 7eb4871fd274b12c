// How the pool feeds its workers (src/pool/pool.ts, worker.ts), on both backends: quick tasks
// go to a worker many at a time, and one of them dying still fails only the task it was running,
// every other task running exactly once; messages larger than the pipe stream through it; the
// default chunking and the reading of an array input when the call is made.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { WorkerDiedError, type Process } from '../src/index.js';
import { defaultChunksize, Pool } from '../src/pool/pool.js';
import { describeBackends, fixture, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/pool_targets.mjs');
let t: Targets;
const dir = tmpDir();

before(async () => {
  t = (await import(pathToFileURL(fixture('pool_targets.mjs')).href)) as Targets;
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describeBackends('Pool batching', (ctx, method) => {
  const make = (processes = 2): Pool => new Pool({ processes, context: ctx });
  const killWorker = (p: Process): void => {
    if (method !== 'thread') process.kill(p.pid!, 'SIGKILL');
    else p.kill();
  };

  test('a worker killed with a batch of quick tasks queued behind its task: that task fails, every other one runs exactly once', async () => {
    await using pool = make(2);
    // Quick tasks first: the pool then sends each worker many tasks ahead.
    await pool.map(t.sqr, range(2000), 1);
    const file = path.join(dir, `batch-${method}.txt`);
    const running = ctx.Queue<string>();
    const before = range(40).map((i) => pool.applyAsync(t.touch, [file, String(i)]));
    const victim = pool.applyAsync(t.reportThenHang, [running]);
    const after = range(200).map((i) => pool.applyAsync(t.touch, [file, String(40 + i)]));
    const name = await running.get();
    killWorker(pool._pool.find((p) => p.name === name)!);
    await assert.rejects(victim.get(), (e: unknown) => e instanceof WorkerDiedError && e.worker === name);
    for (const r of [...before, ...after]) await r.get();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map(Number);
    assert.deepEqual(
      lines.sort((a, b) => a - b),
      range(240),
      'each task ran once',
    );
    assert.deepEqual(await pool.map(t.sqr, range(5), 1), [0, 1, 4, 9, 16]);
  });

  test('chunks and replies larger than the pipe stream through it, packed, with odd numbers intact', async () => {
    await using pool = make(2);
    const big = Array.from({ length: 300_000 }, (_, i) => (i % 7 === 0 ? -0 : i % 11 === 0 ? NaN : i % 2 ? i * 0.25 : i));
    const out = await pool.map(t.identity, big, 300_000);
    assert.equal(out.length, big.length);
    for (let i = 0; i < big.length; i++) if (!Object.is(out[i], big[i])) assert.fail(`item ${i}: ${out[i]} is not ${big[i]}`);
    // Many messages in flight at once, more than the ring holds: the writes wait for room.
    const strings = range(24).map((i) => `${i}:`.padEnd(100_000, 'x'));
    assert.deepEqual(await pool.map(t.identity, strings, 1), strings);
  });

  test('the default chunking spreads the items evenly over 4 * processes chunks, none larger than CPython chunksize', async () => {
    await using pool = make(2);
    const r = pool.mapAsync(t.sqr, range(20));
    assert.deepEqual(
      await r.get(),
      range(20).map((x) => x * x),
    );
    const sizes = r.timings.map((x) => x.items).sort((a, b) => b - a);
    assert.deepEqual(sizes, [3, 3, 3, 3, 2, 2, 2, 2]);
    assert.ok(Math.max(...sizes) <= defaultChunksize(20, 2));
    const few = pool.mapAsync(t.sqr, range(3));
    assert.deepEqual(await few.get(), [0, 1, 4]);
    assert.equal(few.timings.length, 3);
  });

  test('replies read in place, one after another: concurrent maps of numbers and mixed results come back exact, in order', async () => {
    await using pool = make(2);
    // Each call's values differ from every other's, and the calls run at once: a chunk's numbers
    // read after the next reply overwrote them would show as another call's.
    const n = 30_000;
    const numbers = range(8).map((k) => range(n).map((i) => (k % 2 ? i * 0.25 + k * 1e6 : (i + k * n) * 46_341)));
    const calls = numbers.map((items, k) => pool.mapAsync(t.sqr, items, k === 0 ? undefined : 211 * k + 64));
    // Results of other kinds after numbers and before them (the results array changes kind).
    const mixed = range(n).map((i) => (i < n / 2 ? i * 1.5 : i % 3 ? `s${i}` : { i }));
    const mixedFirst = pool.mapAsync(t.identity, [...mixed].reverse(), 1000);
    const odd = range(n).map((i) => (i % 5 === 0 ? -0 : i % 7 === 0 ? NaN : i % 11 === 0 ? -Infinity : 2 ** 53 + i * 2));
    const oddOut = pool.mapAsync(t.identity, odd, 4096);
    const unordered = pool.imapUnordered(t.sqr, numbers[3]!, 997);
    const seen: number[] = [];
    for await (const v of unordered) seen.push(v);
    for (let k = 0; k < calls.length; k++) {
      const out = await calls[k]!.get();
      const want = numbers[k]!.map((x) => x * x);
      assert.equal(out.length, n);
      for (let i = 0; i < n; i++) if (out[i] !== want[i]) assert.fail(`call ${k}, item ${i}: ${out[i]} is not ${want[i]}`);
    }
    assert.deepEqual(await mixedFirst.get(), [...mixed].reverse());
    const got = await oddOut.get();
    for (let i = 0; i < n; i++) if (!Object.is(got[i], odd[i])) assert.fail(`item ${i}: ${got[i]} is not ${odd[i]}`);
    assert.deepEqual(
      seen.sort((a, b) => a - b),
      numbers[3]!.map((x) => x * x).sort((a, b) => a - b),
    );
    // The same pool again, with smaller chunks after larger ones (the buffers are reused).
    assert.deepEqual(
      await pool.map(t.sqr, range(3000), 100),
      range(3000).map((x) => x * x),
    );
  });

  test('map reads an array input when called: changing it afterwards changes nothing; holes arrive as undefined', async () => {
    await using pool = make(2);
    const input = range(1000);
    const mapped = pool.map(t.sqr, input);
    input.fill(-1);
    assert.deepEqual(
      await mapped,
      range(1000).map((x) => x * x),
    );
    const objects = range(10).map((i) => ({ i }));
    const same = pool.map(t.identity, objects);
    objects[0]!.i = 99;
    assert.deepEqual(
      await same,
      range(10).map((i) => ({ i })),
    );
    // eslint-disable-next-line no-sparse-arrays -- a hole, as [...input] would read it
    assert.deepEqual(await pool.map(t.identity, [1, , 3]), [1, undefined, 3]);
  });
});
