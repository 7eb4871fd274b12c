// Waits that block briefly while the event loop is idle (src/shm/idle_wait.ts) before parking on
// a waiter thread: no wake-up may be lost at any point of that hand-over. Ping-pongs across real
// processes and threads, with random pauses on both sides so that every wake lands in a different
// phase (the waiter blocked on its cell, its loop busy, parked, or the block just ending), and
// aborts that race with replies. Any lost wake-up hangs a round until the test times out.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { AbortError, Pipe } from '../src/index.js';
import { futexWaitAsync, futexWaitIdle, futexWake } from '../src/shm/native.js';
import { describeBackends, fixture, joinAll, start } from './helpers.js';

type Targets = typeof import('./fixtures/wake_targets.mjs');
let t: Targets;

before(async () => {
  t = (await import(pathToFileURL(fixture('wake_targets.mjs')).href)) as Targets;
});

test('futexWaitIdle: not-equal, busy while the loop has work, timed-out after its bound', async () => {
  const cells = new Int32Array(new SharedArrayBuffer(8));
  assert.equal(futexWaitIdle(cells, 0, 1, 1000), 'not-equal');
  const immediate = new Promise((resolve) => setImmediate(resolve));
  assert.equal(futexWaitIdle(cells, 0, 0, 1000), 'busy');
  await immediate;
  // A timer due before the bound would be delayed by blocking: not taken either.
  const timer = setTimeout(() => undefined, 0);
  await new Promise((resolve) => setImmediate(resolve));
  assert.notEqual(futexWaitIdle(cells, 0, 0, 1_000_000), 'ok');
  clearTimeout(timer);
  // Once the loop has nothing left to do (the test runner may still have a little), it blocks.
  let outcome = futexWaitIdle(cells, 0, 0, 500);
  for (let i = 0; i < 50 && outcome === 'busy'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    outcome = futexWaitIdle(cells, 0, 0, 500);
  }
  assert.equal(outcome, 'timed-out');
});

test('futexWaitIdle: a wake from another thread racing with the end of the block is never lost', async () => {
  const sab = new SharedArrayBuffer(8);
  const cells = new Int32Array(sab);
  const rounds = 2000;
  // The worker bumps the cell after a random stretch around the 200 µs bound, then waits for
  // the main thread to have seen it.
  const w = new Worker(
    `const { workerData } = require('node:worker_threads');
     const { futexWake } = require(workerData.native);
     const c = new Int32Array(workerData.sab);
     for (let i = 1; i <= workerData.rounds; i++) {
       const end = performance.now() + Math.random() * 0.4;
       while (performance.now() < end);
       Atomics.store(c, 0, i);
       futexWake(c, 0);
       while (Atomics.load(c, 1) !== i) Atomics.wait(c, 1, i - 1, 50);
     }`,
    { eval: true, workerData: { sab, rounds, native: require.resolve('../src/shm/native.js') } },
  );
  const outcomes = new Set<string>();
  try {
    for (let i = 1; i <= rounds; i++) {
      for (;;) {
        const v = Atomics.load(cells, 0);
        if (v === i) break;
        const o = futexWaitIdle(cells, 0, v, 200);
        outcomes.add(o);
        // As a caller does: re-check, then park asynchronously for the rest.
        if (o === 'timed-out' || o === 'busy') await futexWaitAsync(cells, 0, v, 10_000);
      }
      Atomics.store(cells, 1, i);
      Atomics.notify(cells, 1);
    }
  } finally {
    await w.terminate();
  }
  assert.ok(outcomes.has('ok') || outcomes.has('not-equal'), `outcomes: ${[...outcomes].join(', ')}`);
});

test('futexWake still wakes an asynchronous wait parked after a blocking one timed out', async () => {
  const cells = new Int32Array(new SharedArrayBuffer(8));
  // The blocking wait only blocks while the event loop has nothing else to do; what the previous
  // test left closing (a worker thread) makes it answer 'busy' until that is done.
  let first = futexWaitIdle(cells, 0, 0, 100);
  for (let i = 0; i < 100 && first === 'busy'; i++) {
    await new Promise((r) => setTimeout(r, 10));
    first = futexWaitIdle(cells, 0, 0, 100);
  }
  assert.equal(first, 'timed-out');
  const p = futexWaitAsync(cells, 0, 0, 10_000);
  setTimeout(() => {
    Atomics.store(cells, 0, 1);
    futexWake(cells, 0);
  }, 5);
  assert.equal(await p, 'ok');
});

describeBackends('wake-ups', (ctx) => {
  test('a Pipe ping-pong with random pauses on both sides loses no message or wake-up', async () => {
    const [a, b] = Pipe(true);
    const n = 1500;
    const p = start(ctx, t.jitterEcho, [b, n] as const);
    b.close();
    for (let i = 0; i < n; i++) {
      await a.send(i);
      if (Math.random() < 0.3) await t.jitter();
      assert.equal(await a.recv(), i);
    }
    await joinAll([p]);
    a.close();
    assert.equal(p.exitcode, 0);
  });

  test('an Event ping-pong with random pauses loses no wake-up', async () => {
    const ping = ctx.Event();
    const pong = ctx.Event();
    const n = 500;
    const p = start(ctx, t.jitterEventPong, [ping, pong, n] as const);
    for (let i = 0; i < n; i++) {
      if (Math.random() < 0.3) await t.jitter();
      ping.set();
      assert.equal(await pong.wait(30_000), true);
      pong.clear();
    }
    await joinAll([p]);
    assert.equal(p.exitcode, 0);
  });

  test('JoinableQueue put/join with random pauses loses no wake-up', async () => {
    const q = ctx.JoinableQueue<number>();
    const n = 300;
    const p = start(ctx, t.jitterConsumer, [q, n] as const);
    for (let i = 0; i < n; i++) {
      await q.put(i);
      await q.join();
    }
    await joinAll([p]);
    assert.equal(p.exitcode, 0);
    q.close();
  });

  test('a poll aborted while its reply is due: the reply is received by the next recv', async () => {
    const [a, b] = Pipe(true);
    const n = 300;
    const p = start(ctx, t.jitterEcho, [b, n] as const);
    b.close();
    for (let i = 0; i < n; i++) {
      await a.send(i);
      try {
        assert.equal(await a.poll(null, { signal: AbortSignal.timeout(Math.random() < 0.5 ? 0 : 1) }), true);
      } catch (err) {
        assert.ok(err instanceof AbortError, String(err));
      }
      assert.equal(await a.recv(), i);
    }
    await joinAll([p]);
    a.close();
    assert.equal(p.exitcode, 0);
  });
});
