// Barrier on both backends: CPython's _TestBarrier (Lib/test/_test_multiprocessing.py, itself
// adapted from test/lock_tests.py) with N = 5 parties: the parent and N-1 children (processes or
// threads), as CPython's Bunch runs them. Shared counters are Semaphore(0)s (see
// fixtures/sync_targets.mts); a failed assertion in a child makes its exit code 1.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { Barrier, BrokenBarrierError, InvalidArgumentError, type BaseContext, type Process, type Semaphore } from '../src/index.js';
import { describeBackends, fixture, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/sync_targets.mjs');
let t: Targets;
let N: number;
const dir = tmpDir();
let seq = 0;

before(async () => {
  t = (await import(pathToFileURL(fixture('sync_targets.mjs')).href)) as Targets;
  N = t.N;
});

const BROKEN = { name: 'BrokenBarrierError', code: 'ERR_MP_BROKEN_BARRIER' };

describeBackends('Barrier', (ctx: BaseContext) => {
  // CPython: 30 s. Short enough that a hang fails in reasonable time.
  const defaultTimeout = 5_000;
  // CPython's setUp; no tearDown abort is needed, as no test leaves a party waiting.
  const newBarrier = (): Barrier => ctx.Barrier(N, null, defaultTimeout);

  // Barrier waits on the Condition cells of shm/cells.ts: a notify wakes exactly the parties
  // waiting then, so a party that re-enters while the barrier drains cannot take their wake-up
  // (the tests that pass the barrier twice in a row would break by timeout if it could).

  const counter = (): Semaphore => ctx.Semaphore(0);
  const len = (s: Semaphore): number => s.getValue();

  /** CPython's run_threads: `f(...args)` in N-1 children and in the parent, then join them all. */
  async function runThreads<A extends unknown[]>(f: (...args: A) => Promise<void>, args: A): Promise<void> {
    const ps: Process[] = [];
    for (let i = 0; i < N - 1; i++) {
      const p = new ctx.Process({ target: f, args });
      p.start();
      ps.push(p);
    }
    try {
      await f(...args);
    } finally {
      for (const p of ps) await p.join();
    }
    assert.deepEqual(
      ps.map((p) => p.exitcode),
      ps.map(() => 0),
    );
  }

  test('test_barrier: a barrier is passed in lockstep', async () => {
    const barrier = newBarrier();
    await runThreads(t.multipass, [barrier, [counter(), counter()], 1]);
  });

  test('test_barrier_10: 10 consecutive runs', async () => {
    const barrier = newBarrier();
    const results: [Semaphore, Semaphore] = [counter(), counter()];
    await runThreads(t.multipass, [barrier, results, 10]);
    assert.equal(len(results[0]), 10 * N);
    assert.equal(len(results[1]), 10 * N);
  });

  test('test_wait_return: each party gets a distinct index 0..N-1', async () => {
    const barrier = newBarrier();
    const indexes = Array.from({ length: N }, counter);
    await runThreads(t.waitReturnF, [barrier, indexes]);
    assert.deepEqual(
      indexes.map(len),
      indexes.map(() => 1),
    );
  });

  test('test_action: runs once, in the last to arrive, before any is released', async () => {
    const results = counter();
    const b = ctx.Barrier(N, t.appendTrue);
    await runThreads(t.actionF, [b, results]);
    assert.equal(len(results), 1);
  });

  test('an action that throws breaks the barrier; its error goes to the party that ran it', async () => {
    const b = ctx.Barrier(1, t.throwingAction);
    await assert.rejects(b.wait(), { message: 'action failed' });
    assert.equal(b.broken, true);
    await assert.rejects(b.wait(), BROKEN);
    await b.reset();
    assert.equal(b.broken, false);
  });

  test('test_abort: an abort puts the barrier in a broken state', async () => {
    const barrier = newBarrier();
    const results1 = counter();
    const results2 = counter();
    await runThreads(t.abortF, [barrier, results1, results2]);
    assert.equal(len(results1), 0);
    assert.equal(len(results2), N - 1);
    assert.equal(barrier.broken, true);
  });

  test('test_reset: a reset frees the waiting parties, and the barrier works again', async () => {
    const barrier = newBarrier();
    const [r1, r2, r3] = [counter(), counter(), counter()];
    await runThreads(t.resetF, [barrier, r1, r2, r3]);
    assert.equal(len(r1), 0);
    assert.equal(len(r2), N - 1);
    assert.equal(len(r3), N);
  });

  test('test_abort_and_reset: a barrier can be reset after being broken', async () => {
    const [r1, r2, r3] = [counter(), counter(), counter()];
    const barrier = newBarrier();
    const barrier2 = ctx.Barrier(N, null, defaultTimeout);
    await runThreads(t.abortAndResetF, [barrier, barrier2, r1, r2, r3]);
    assert.equal(len(r1), 0);
    assert.equal(len(r2), N - 1);
    assert.equal(len(r3), N);
  });

  test('test_timeout: wait(timeout) breaks the barrier for every party', async () => {
    const barrier = newBarrier();
    const results = counter();
    await runThreads(t.timeoutF, [barrier, results]);
    assert.equal(len(results), barrier.parties);
    assert.equal(barrier.broken, true);
  });

  test('test_default_timeout: the timeout given to the constructor', async () => {
    const b = ctx.Barrier(N, null, 500);
    const results = counter();
    await runThreads(t.defaultTimeoutF, [b, results]);
    assert.equal(len(results), b.parties);
  });

  test('test_single_thread: Barrier(1) never waits', async () => {
    const b = ctx.Barrier(1);
    assert.equal(await b.wait(), 0);
    assert.equal(await b.wait(), 0);
    assert.equal(b.nWaiting, 0);
  });

  test('test_thousand (100 passes): N children pass in lockstep, reporting under a lock', async () => {
    const barrier = newBarrier();
    const passes = 100;
    const lock = ctx.Lock();
    const file = path.join(dir, `thousand-${++seq}`);
    fs.writeFileSync(file, '');
    const ps: Process[] = [];
    for (let j = 0; j < N; j++) {
      const p = new ctx.Process({ target: t.thousandF, args: [barrier, passes, file, lock] });
      p.start();
      ps.push(p);
    }
    for (const p of ps) await p.join();
    assert.deepEqual(
      ps.map((p) => p.exitcode),
      ps.map(() => 0),
    );
    const got = fs.readFileSync(file, 'utf8').trim().split('\n').map(Number);
    assert.deepEqual(
      got,
      Array.from({ length: passes * N }, (_, k) => Math.floor(k / N)),
    );
  });

  test('parties, nWaiting and broken as children arrive; abort wakes them with BrokenBarrierError', async () => {
    const b = ctx.Barrier(3);
    assert.equal(b.parties, 3);
    assert.equal(b.nWaiting, 0);
    assert.equal(b.broken, false);
    assert.match(String(b), /^<Barrier\(parties=3, waiting=0\)>$/);
    const broken = counter();
    const ps = [0, 1].map(() => {
      const p = new ctx.Process({ target: t.waitCountBroken, args: [b, broken] });
      p.start();
      return p;
    });
    // No event says "arrived": poll nWaiting, as CPython's _test_reset_f does.
    const end = Date.now() + 20_000;
    const waiting = (): number => b.nWaiting;
    while (waiting() < 2 && Date.now() < end) await t.sleep(2);
    assert.equal(b.nWaiting, 2);
    await b.abort();
    assert.equal(b.broken, true);
    assert.match(String(b), /broken/);
    for (const p of ps) await p.join();
    assert.deepEqual(
      ps.map((p) => p.exitcode),
      [0, 0],
    );
    assert.equal(len(broken), 2);
    await assert.rejects(b.wait(), (err) => err instanceof BrokenBarrierError && err.code === 'ERR_MP_BROKEN_BARRIER');
    await b.reset();
    assert.equal(b.broken, false);
    assert.equal(b.nWaiting, 0);
  });

  test('a timed-out wait rejects after about its timeout and breaks the barrier', async () => {
    const b = ctx.Barrier(2);
    const t0 = performance.now();
    await assert.rejects(b.wait(150), BROKEN);
    const ms = performance.now() - t0;
    assert.ok(ms >= 145 && ms < 2150, `rejected after ${ms} ms`);
    assert.equal(b.broken, true);
    await assert.rejects(b.wait(0), BROKEN);
  });

  test('wrong arguments are InvalidArgumentError', async () => {
    for (const parties of [0, -1, 1.5, '2', NaN]) assert.throws(() => new Barrier(parties as number), InvalidArgumentError);
    assert.throws(() => ctx.Barrier(2, 'f' as never), { code: 'ERR_MP_INVALID_ARG' });
    assert.throws(() => ctx.Barrier(2, null, -1), { code: 'ERR_MP_INVALID_ARG' });
    assert.throws(() => ctx.Barrier(2, null, '1' as never), { code: 'ERR_MP_INVALID_ARG' });
    await assert.rejects(ctx.Barrier(1).wait('1' as never), { code: 'ERR_MP_INVALID_ARG' });
  });
});
