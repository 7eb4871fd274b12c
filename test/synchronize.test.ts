// Lock, RLock, Semaphore, BoundedSemaphore, Condition and Event on both backends: CPython's
// _TestLock, _TestSemaphore, _TestCondition and _TestEvent (Lib/test/_test_multiprocessing.py),
// with real children contending with the parent and each other, plus what Python lacks or leaves
// unspecified: typed errors, AbortSignal, and a lock whose holder was SIGKILLed.
//
// Children are started from test/fixtures/sync_targets.mts and report through the objects under
// test (mostly a Semaphore(0) used as a counter) or through files; waits for a child are waits on
// those objects, never sleeps. The few timed checks ("nothing woke up within 100 ms") are what
// CPython checks with time.sleep(DELTA).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
  AbortError,
  BoundedSemaphore,
  Condition,
  Event,
  getContext,
  InvalidArgumentError,
  Lock,
  ProcessError,
  RLock,
  Semaphore,
  TimeoutError,
  type StartMethod,
} from '../src/index.js';
import { describeBackends, fixture, joinAll, readJson, start, timed, tmpDir, runScenario, type ScenarioResult } from './helpers.js';

type Targets = typeof import('./fixtures/sync_targets.mjs');
let t: Targets;
const dir = tmpDir();
let seq = 0;
const out = (): string => path.join(dir, `out-${++seq}.json`);

before(async () => {
  t = (await import(pathToFileURL(fixture('sync_targets.mjs')).href)) as Targets;
});

const other = (method: StartMethod): StartMethod => (method === 'thread' ? 'spawn' : 'thread');

/** A timed-out wait took about its timeout: at least most of it, and not absurdly more. */
function assertTookAbout(ms: number, timeout: number): void {
  // The clock starts before the call; a little slack for the waits a child timed itself.
  assert.ok(ms >= timeout - 15, `returned after ${ms.toFixed(1)} ms, before its ${timeout} ms timeout`);
  assert.ok(ms < timeout + 2000, `returned after ${ms.toFixed(1)} ms, long after its ${timeout} ms timeout`);
}

/** Acquire `sem` `n` times (waiting for `n` children to report), each within 20 s. */
async function take(sem: Semaphore, n: number): Promise<void> {
  for (let i = 0; i < n; i++) assert.equal(await sem.acquire({ timeout: 20_000 }), true, `only ${i} of ${n} reported`);
}

/** Poll until `f()` equals `want` (CPython: assertReachesEventually), at most 10 s. */
async function reaches(f: () => number, want: number): Promise<void> {
  const end = Date.now() + 10_000;
  while (f() !== want && Date.now() < end) await t.sleep(5);
  assert.equal(f(), want);
}

const RELEASED_TOO_MANY = { name: 'ProcessError', code: 'ERR_MP_RELEASED_TOO_MANY' };
const NOT_OWNER = { name: 'ProcessError', code: 'ERR_MP_NOT_OWNER' };
const ABORTED = { name: 'AbortError', code: 'ABORT_ERR' };

// ---------------------------------------------------------------------------------------------
// _TestLock

describeBackends('Lock and RLock', (ctx, method) => {
  test('test_lock: acquire, non-blocking acquire, release; releasing twice is an error', async () => {
    const lock = ctx.Lock();
    assert.ok(lock instanceof Lock);
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ block: false }), false);
    assert.match(String(lock), /^<Lock\(owner=me\)>$/);
    assert.equal(lock.release(), undefined);
    assert.match(String(lock), /^<Lock\(owner=None\)>$/);
    assert.throws(
      () => lock.release(),
      (err) => err instanceof ProcessError && err.code === 'ERR_MP_RELEASED_TOO_MANY',
    );
    assert.throws(() => lock.release(), RELEASED_TOO_MANY);
    // Still usable after the error.
    assert.equal(await lock.acquire({ block: false }), true);
    lock.release();
  });

  test('test_rlock: the owner acquires again; one release too many is ERR_MP_NOT_OWNER', async () => {
    const lock = ctx.RLock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ block: false }), true);
    assert.match(String(lock), /^<RLock\(me, 3\)>$/);
    assert.equal(lock.release(), undefined);
    assert.equal(lock.release(), undefined);
    assert.equal(lock.release(), undefined);
    assert.match(String(lock), /^<RLock\(None, 0\)>$/);
    assert.throws(() => lock.release(), NOT_OWNER);
  });

  test('test_lock_context: withLock, guard + await using, and their timeouts', async () => {
    for (const lock of [ctx.Lock(), ctx.RLock()]) {
      assert.equal(await lock.withLock(() => 42), 42);
      assert.equal(await lock.withLock(() => Promise.resolve('async')), 'async');
      await assert.rejects(
        lock.withLock(() => {
          throw new RangeError('inside');
        }),
        RangeError,
      );
      // Released after the throw.
      assert.equal(await lock.acquire({ block: false }), true);
      lock.release();
      {
        await using held = await lock.guard();
        assert.equal(held, lock);
        if (lock instanceof Lock) assert.equal(await lock.acquire({ block: false }), false);
      }
      assert.equal(await lock.acquire({ block: false }), true);
      lock.release();
    }
    // Not acquired within the timeout: TimeoutError, and fn never runs.
    const lock = ctx.Lock();
    await lock.acquire();
    let ran = false;
    await assert.rejects(
      lock.withLock(() => (ran = true), { timeout: 50 }),
      (err) => err instanceof TimeoutError && err.code === 'ERR_MP_TIMEOUT',
    );
    assert.equal(ran, false);
    await assert.rejects(lock.guard({ block: false }), TimeoutError);
    lock.release();
  });

  test('a child holds the lock: the parent waits, times out, then gets it when the child releases', async () => {
    for (const lock of [ctx.Lock(), ctx.RLock()]) {
      const held = ctx.Event();
      const go = ctx.Event();
      assert.equal(lock.locked(), false);
      const p = start(ctx, t.holdUntil, [lock, held, go]);
      assert.equal(await held.wait(20_000), true);
      assert.equal(lock.locked(), true, 'locked() sees the holder in the other process or thread');
      assert.match(String(lock), method !== 'thread' ? /owner=process \d+|\(process \d+, 1\)/ : /owner=thread \d+|\(thread \d+, 1\)/);
      const [nb, nbMs] = await timed(lock.acquire({ block: false }));
      assert.equal(nb, false);
      assert.ok(nbMs < 2000);
      const [got, ms] = await timed(() => lock.acquire({ timeout: 200 }));
      assert.equal(got, false);
      assertTookAbout(ms, 200);
      go.set();
      assert.equal(await lock.acquire({ timeout: 20_000 }), true);
      assert.equal(lock.locked(), true);
      lock.release();
      assert.equal(lock.locked(), false);
      await joinAll([p]);
    }
  });

  test('a Lock may be released by another process or thread (as in Python); an RLock may not', async () => {
    const lock = ctx.Lock();
    await lock.acquire();
    const f1 = out();
    await joinAll([start(ctx, t.tryRelease, [lock, f1])]);
    assert.deepEqual(readJson(f1), { ok: true });
    assert.equal(await lock.acquire({ block: false }), true);
    lock.release();

    const rlock = ctx.RLock();
    await rlock.acquire();
    const f2 = out();
    await joinAll([start(ctx, t.tryRelease, [rlock, f2])]);
    assert.deepEqual(readJson(f2), {
      ok: false,
      name: 'ProcessError',
      code: 'ERR_MP_NOT_OWNER',
      message: 'cannot release un-acquired lock',
    });
    // Still ours, once.
    assert.match(String(rlock), /^<RLock\(me, 1\)>$/);
    rlock.release();
    assert.throws(() => rlock.release(), NOT_OWNER);
  });

  test('RLock: the owner is (process, thread), so two async functions of one thread share it', async () => {
    const rlock = ctx.RLock();
    await rlock.acquire();
    // Another async function of this thread: the same owner, so it "re-enters" at once.
    const other = async (): Promise<boolean> => rlock.acquire({ block: false });
    assert.equal(await other(), true);
    assert.match(String(rlock), /^<RLock\(me, 2\)>$/);
    rlock.release();
    rlock.release();
    // A Lock, having no owner notion for acquire, does exclude them.
    const lock = ctx.Lock();
    await lock.acquire();
    assert.equal(await (async () => lock.acquire({ block: false }))(), false);
    lock.release();
  });

  test('stress: 4 children x 200 read-modify-write increments of a file under a Lock end exact', async () => {
    const n = 200;
    const file = path.join(dir, `counter-${++seq}`);
    fs.writeFileSync(file, '0');
    const lock = ctx.Lock();
    const startLine = ctx.Barrier(4);
    const ps = [0, 1, 2, 3].map(() => start(ctx, t.incrementFile, [lock, file, n, startLine]));
    await joinAll(ps);
    assert.equal(Number(fs.readFileSync(file, 'utf8')), 4 * n);
  });

  test('stress: the parent and 3 children x 100 increments under an RLock taken twice (await using)', async () => {
    const n = 100;
    const file = path.join(dir, `counter-${++seq}`);
    fs.writeFileSync(file, '0');
    const rlock = ctx.RLock();
    const startLine = ctx.Barrier(4);
    const ps = [0, 1, 2].map(() => start(ctx, t.incrementFileGuarded, [rlock, file, n, startLine]));
    await t.incrementFileGuarded(rlock, file, n, startLine);
    await joinAll(ps);
    assert.equal(Number(fs.readFileSync(file, 'utf8')), 4 * n);
    assert.match(String(rlock), /^<RLock\(None, 0\)>$/);
  });

  test('{ signal }: an aborted acquire rejects with AbortError and leaves the lock usable', async () => {
    for (const lock of [ctx.Lock(), ctx.RLock()]) {
      // Held by a child, so that the RLock, too, makes this thread wait.
      const held = ctx.Event();
      const go = ctx.Event();
      const p = start(ctx, t.holdUntil, [lock, held, go]);
      assert.equal(await held.wait(20_000), true);
      const ac = new AbortController();
      const pending = lock.acquire({ signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await assert.rejects(pending, (err) => err instanceof AbortError && err.code === 'ABORT_ERR');
      await assert.rejects(lock.acquire({ signal: AbortSignal.timeout(30) }), ABORTED);
      // An already aborted signal: rejected, even though a non-blocking try would fail anyway.
      await assert.rejects(lock.acquire({ signal: AbortSignal.abort() }), ABORTED);
      go.set();
      await joinAll([p]);
      assert.equal(await lock.acquire({ timeout: 20_000 }), true);
      lock.release();
      // A signal that never fires does not get in the way.
      assert.equal(await lock.acquire({ signal: new AbortController().signal }), true);
      lock.release();
    }
  });

  // A SIGKILLed child never gives back its count of the segments it held, so the scenario runs in
  // a process of its own: the resource tracker unlinks those when that whole tree is gone.
  const scenarios = new Map<string, Promise<ScenarioResult>>();
  function killedHolder(kind: 'Lock' | 'RLock'): Promise<ScenarioResult> {
    if (!scenarios.has(kind)) scenarios.set(kind, runKilledHolder(kind));
    return scenarios.get(kind)!;
  }
  function runKilledHolder(kind: 'Lock' | 'RLock'): Promise<ScenarioResult> {
    return runScenario('sync_targets.mjs', ['killed-holder', method, kind]);
  }

  for (const kind of ['Lock', 'RLock'] as const) {
    test(`${kind}: a live holder is never robbed; a killed holder's lock is recovered with a warning`, async () => {
      const r = await killedHolder(kind);
      assert.match(String(r.heldBy), method !== 'thread' ? /process \d+/ : /thread \d+/);
      assert.equal(r.stolen, false);
      assertTookAbout(Number(r.stolenMs), 1200);
      assert.equal(r.exitcode, -9);
      assert.equal(r.usable, true);
      const recovered = (r.warnings as { code: string; message: string }[]).filter((w) => w.code === 'MULTIPROC_LOCK_RECOVERED');
      // The holder died (a process, or a terminated worker thread): the next waiter takes the
      // lock over within about 0.5 s. CPython leaves it locked forever.
      assert.equal(r.got, true);
      assert.ok(r.gotMs < 2500, `recovered after ${r.gotMs} ms`);
      assert.match(String(r.after), kind === 'Lock' ? /^<Lock\(owner=me\)>$/ : /^<RLock\(me, 1\)>$/);
      if (kind === 'RLock') assert.equal(r.reentered, true);
      assert.equal(recovered.length, 1, JSON.stringify(r.warnings));
      assert.match(
        recovered[0]!.message,
        method !== 'thread'
          ? new RegExp(`held by process ${r.childPid}, which died, was recovered`)
          : /held by thread \d+ of this process, which died, was recovered/,
      );
    });
  }

  test('the segments a killed child held are given back while the parent lives on', async () => {
    const r = await killedHolder('Lock');
    assert.deepEqual(r.segmentsLeft, []);
  });
});

// ---------------------------------------------------------------------------------------------
// _TestSemaphore

describeBackends('Semaphore and BoundedSemaphore', (ctx) => {
  async function checkSemaphore(sem: Semaphore): Promise<void> {
    assert.equal(sem.getValue(), 2);
    assert.equal(await sem.acquire(), true);
    assert.equal(sem.getValue(), 1);
    assert.equal(await sem.acquire(), true);
    assert.equal(sem.getValue(), 0);
    assert.equal(await sem.acquire({ block: false }), false);
    assert.equal(sem.getValue(), 0);
    assert.equal(sem.release(), undefined);
    assert.equal(sem.getValue(), 1);
    assert.equal(sem.release(), undefined);
    assert.equal(sem.getValue(), 2);
  }

  test('test_semaphore', async () => {
    const sem = ctx.Semaphore(2);
    assert.ok(sem instanceof Semaphore && !(sem instanceof BoundedSemaphore));
    await checkSemaphore(sem);
    assert.equal(sem.release(), undefined);
    assert.equal(sem.getValue(), 3);
    assert.equal(sem.release(), undefined);
    assert.equal(sem.getValue(), 4);
    sem.release(3);
    assert.equal(sem.getValue(), 7);
    assert.equal(String(sem), '<Semaphore(value=7)>');
    assert.equal(new Semaphore().getValue(), 1);
  });

  test('test_bounded_semaphore: releasing past the initial value is ERR_MP_RELEASED_TOO_MANY', async () => {
    const sem = ctx.BoundedSemaphore(2);
    assert.ok(sem instanceof BoundedSemaphore);
    await checkSemaphore(sem);
    assert.throws(() => sem.release(), RELEASED_TOO_MANY);
    assert.equal(sem.getValue(), 2);
    await sem.acquire();
    assert.throws(() => sem.release(2), RELEASED_TOO_MANY);
    assert.equal(sem.getValue(), 1);
    sem.release();
    assert.equal(String(sem), '<BoundedSemaphore(value=2, maxvalue=2)>');
    // It stays bounded in a child.
    const f = out();
    await joinAll([start(ctx, t.tryRelease, [sem, f])]);
    assert.deepEqual(readJson(f), {
      ok: false,
      name: 'ProcessError',
      code: 'ERR_MP_RELEASED_TOO_MANY',
      message: 'semaphore or lock released too many times',
    });
    assert.equal(sem.getValue(), 2);
  });

  test('test_timeout: block false returns at once, timeouts take their time', async () => {
    const sem = ctx.Semaphore(0);
    let [r, ms] = await timed(sem.acquire({ block: false }));
    assert.equal(r, false);
    assert.ok(ms < 2000);
    [r, ms] = await timed(sem.acquire({ block: false, timeout: 5_000 }));
    assert.equal(r, false);
    // block: false ignores the timeout (5 s): no wait at all (2 s of slack for a busy machine).
    assert.ok(ms < 2000, `block: false waited ${ms} ms`);
    [r, ms] = await timed(() => sem.acquire({ block: true, timeout: 200 }));
    assert.equal(r, false);
    assertTookAbout(ms, 200);
    [r, ms] = await timed(() => sem.acquire({ timeout: 100 }));
    assert.equal(r, false);
    assertTookAbout(ms, 100);
    [r] = await timed(sem.acquire({ timeout: 0 }));
    assert.equal(r, false);
    [r] = await timed(sem.acquire({ timeout: -5 }));
    assert.equal(r, false);
  });

  test('Semaphore(2) shared by 3 children: two inside at once, the third when one leaves', async () => {
    const sem = ctx.Semaphore(2);
    const inside = ctx.Semaphore(0);
    const go = ctx.Event();
    const ps = [0, 1, 2].map(() => start(ctx, t.semaphoreWorker, [sem, inside, go]));
    await take(inside, 2);
    assert.equal(sem.getValue(), 0);
    // The third is blocked (CPython would check this with a sleep).
    assert.equal(await inside.acquire({ timeout: 150 }), false);
    assert.equal(await sem.acquire({ block: false }), false);
    go.set();
    await take(inside, 1);
    await joinAll(ps);
    assert.equal(sem.getValue(), 2);
  });

  test('release(n) wakes n waiters in children', async () => {
    const sem = ctx.Semaphore(0);
    const inside = ctx.Semaphore(0);
    const go = ctx.Event();
    go.set();
    const ps = [0, 1, 2].map(() => start(ctx, t.semaphoreWorker, [sem, inside, go]));
    assert.equal(await inside.acquire({ timeout: 150 }), false);
    sem.release(3);
    await take(inside, 3);
    await joinAll(ps);
    assert.equal(sem.getValue(), 3);
  });

  test('{ signal } aborts a semaphore wait and leaves it usable', async () => {
    const sem = ctx.BoundedSemaphore(1);
    await sem.acquire();
    const ac = new AbortController();
    const pending = sem.acquire({ signal: ac.signal });
    setTimeout(() => ac.abort(new Error('enough')), 30);
    await assert.rejects(pending, (err) => err instanceof AbortError && (err.cause as Error).message === 'enough');
    assert.equal(sem.getValue(), 0);
    sem.release();
    // The signal aborts a wait: an acquire that needs none succeeds even with an aborted signal.
    assert.equal(await sem.acquire({ signal: ac.signal }), true);
    await assert.rejects(sem.acquire({ signal: ac.signal }), ABORTED);
    sem.release();
    assert.equal(await sem.acquire({ timeout: 1000 }), true);
    sem.release();
  });

  test('an abort that races with a release does not lose the wake-up', async () => {
    const sem = ctx.Semaphore(0);
    const ready = ctx.Semaphore(0);
    const inside = ctx.Semaphore(0);
    const ac = new AbortController();
    // A (here) parks first, then B (a child).
    const a = sem.acquire({ signal: ac.signal }).then(
      (v) => v,
      () => 'aborted',
    );
    const p = start(ctx, t.readyThenAcquire, [sem, ready, inside]);
    try {
      await take(ready, 1);
      await t.sleep(100); // B parks (nothing can tell when it has)
      sem.release();
      ac.abort(); // in the same tick: the wake goes to A, which then sees the abort
      const ra = await a;
      // Either A took the unit, or B must get it.
      if (ra !== true)
        assert.equal(await inside.acquire({ timeout: 1500 }), true, `A ${String(ra)}, B never woke, value ${sem.getValue()}`);
    } finally {
      // Let B out (killing it would leave its segments behind, see above).
      if (inside.getValue() === 0) sem.release(2);
      await p.join();
    }
  });

  test('a semaphore is not owned: a child releases what the parent acquired', async () => {
    const sem = ctx.Semaphore(1);
    await sem.acquire();
    const f = out();
    await joinAll([start(ctx, t.tryRelease, [sem, f])]);
    assert.deepEqual(readJson(f), { ok: true });
    assert.equal(sem.getValue(), 1);
  });
});

// ---------------------------------------------------------------------------------------------
// _TestCondition

describeBackends('Condition', (ctx, method) => {
  const otherCtx = getContext(other(method));

  test('test_notify: one child of each backend; each notify wakes one', async () => {
    const cond = ctx.Condition();
    const sleeping = ctx.Semaphore(0);
    const woken = ctx.Semaphore(0);
    const ps = [start(ctx, t.condF, [cond, sleeping, woken]), start(otherCtx, t.condF, [cond, sleeping, woken])];
    // Wait for both children to start sleeping.
    await take(sleeping, 2);
    // Check no process/thread has woken up.
    assert.equal(await woken.acquire({ timeout: 100 }), false);
    // Wake up one process/thread.
    await cond.withLock(() => cond.notify());
    await take(woken, 1);
    assert.equal(await woken.acquire({ timeout: 100 }), false);
    // Wake up another.
    await cond.withLock(() => cond.notify());
    await take(woken, 1);
    await joinAll(ps);
    assert.match(String(cond), /^<Condition\(<RLock\(None, 0\)>, 0\)>$/);
  });

  test('test_notify_all: timed-out waiters leave no trace; notifyAll wakes all', async () => {
    const cond = ctx.Condition();
    const sleeping = ctx.Semaphore(0);
    const woken = ctx.Semaphore(0);
    // Start some children which will time out.
    let ps = [0, 1, 2].map(() => start(ctx, t.condF, [cond, sleeping, woken, 100]));
    await take(sleeping, 3);
    // Check they have all timed out.
    await take(woken, 3);
    await joinAll(ps);
    assert.equal(woken.getValue(), 0);
    assert.match(String(cond), /, 0\)>$/); // no sleepers counted
    // Start some more.
    ps = [0, 1, 2].map(() => start(ctx, t.condF, [cond, sleeping, woken]));
    await take(sleeping, 3);
    assert.equal(await woken.acquire({ timeout: 100 }), false);
    // Wake them all up.
    await cond.withLock(() => cond.notifyAll());
    await reaches(() => woken.getValue(), 3);
    await joinAll(ps);
    assert.match(String(cond), /, 0\)>$/);
  });

  test('test_notify_n', async () => {
    const cond = ctx.Condition();
    const sleeping = ctx.Semaphore(0);
    const woken = ctx.Semaphore(0);
    const ps = [0, 1, 2, 3].map(() => start(ctx, t.condF, [cond, sleeping, woken]));
    await take(sleeping, 4);
    assert.equal(await woken.acquire({ timeout: 100 }), false);
    // Wake some of them up.
    await cond.withLock(() => cond.notify(2));
    await reaches(() => woken.getValue(), 2);
    assert.equal(await cond.withLock(() => String(cond)), `<Condition(<RLock(me, 1)>, 2)>`);
    // Wake the rest of them.
    await cond.withLock(() => cond.notify(4));
    await reaches(() => woken.getValue(), 4);
    // Doesn't do anything more.
    await cond.withLock(() => cond.notify(3));
    await joinAll(ps);
    assert.equal(woken.getValue(), 4);
    await cond.withLock(() => cond.notify(0));
  });

  test('notifyAll wakes every waiter present, even when a new waiter arrives right after', async () => {
    const cond = ctx.Condition();
    const sleeping = ctx.Semaphore(0);
    const woken = ctx.Semaphore(0);
    const p = start(ctx, t.condF, [cond, sleeping, woken]);
    await take(sleeping, 1);
    await cond.acquire();
    cond.notifyAll(); // the child was waiting: it must wake
    const late = await cond.wait(200); // a waiter that arrived after the notify: may only time out
    cond.release();
    const childWoke = await woken.acquire({ timeout: 2000 });
    if (!childWoke) await cond.withLock(() => cond.notifyAll()); // let it out
    await joinAll([p]);
    assert.equal(childWoke, true, 'the waiter present at notifyAll() was never woken');
    assert.equal(late, false, 'a waiter that arrived after notifyAll() was woken by it');
  });

  test('test_timeout', async () => {
    const cond = ctx.Condition();
    await cond.acquire();
    const [res, ms] = await timed(() => cond.wait(100));
    cond.release();
    assert.equal(res, false);
    assertTookAbout(ms, 100);
  });

  test('test_waitfor: a child waits for a state the parent advances', async () => {
    const cond = ctx.Condition();
    const state = out();
    t.writeState(state, -1);
    const p = start(ctx, t.waitforF, [cond, state]);
    await cond.withLock(async () => {
      const result = await cond.waitFor(() => fs.readFileSync(state, 'utf8') === '0');
      assert.equal(result, true);
    });
    for (let i = 1; i <= 4; i++) {
      await t.sleep(10);
      await cond.withLock(() => {
        t.writeState(state, i);
        cond.notify();
      });
    }
    await p.join(20_000);
    assert.equal(p.isAlive(), false);
    assert.equal(p.exitcode, 0);
  });

  test('test_waitfor_timeout: a predicate that never holds returns false after the timeout', async () => {
    const cond = ctx.Condition();
    const state = out();
    t.writeState(state, 0);
    const result = out();
    const sem = ctx.Semaphore(0);
    const p = start(ctx, t.waitforTimeoutF, [cond, state, result, sem]);
    assert.equal(await sem.acquire({ timeout: 20_000 }), true);
    // Only increment 3 times, so state == 4 is never reached.
    for (let i = 1; i <= 3; i++) {
      await t.sleep(10);
      await cond.withLock(() => {
        t.writeState(state, i);
        cond.notify();
      });
    }
    await joinAll([p]);
    const r = readJson(result) as { result: boolean; elapsed: number };
    assert.equal(r.result, false);
    assertTookAbout(r.elapsed, 300);
  });

  test('waitFor in one thread: an async predicate, its last value, and timeout 0', async () => {
    const cond = ctx.Condition(ctx.Lock());
    await cond.acquire();
    assert.equal(await cond.waitFor(() => Promise.resolve('yes')), 'yes');
    const [v, ms] = await timed(() => cond.waitFor(() => 0, 100));
    assert.equal(v, 0);
    assertTookAbout(ms, 100);
    assert.equal(await cond.waitFor(() => null, 0), null);
    cond.release();
  });

  test('test_wait_result: false on timeout, true when a child notifies', async () => {
    const c = ctx.Condition();
    await c.withLock(async () => {
      assert.equal(await c.wait(0), false);
      assert.equal(await c.wait(100), false);
      const p = start(ctx, t.waitResultF, [c]);
      assert.equal(await c.wait(20_000), true);
      await joinAll([p]);
    });
  });

  test('over a Lock, and over an RLock taken several times (wait releases every level)', async () => {
    for (const lock of [ctx.Lock(), ctx.RLock()]) {
      const cond = ctx.Condition(lock);
      assert.equal(cond.lock, lock);
      const sleeping = ctx.Semaphore(0);
      const woken = ctx.Semaphore(0);
      const p = start(ctx, t.condF, [cond, sleeping, woken]);
      await take(sleeping, 1);
      await cond.acquire();
      if (lock instanceof RLock) await cond.acquire();
      // The child is waiting; it holds nothing: the lock is ours.
      cond.notify();
      cond.release();
      if (lock instanceof RLock) cond.release();
      await take(woken, 1);
      await joinAll([p]);
    }
    // An RLock held twice is held twice again after the wait.
    const r = ctx.RLock();
    const cond = ctx.Condition(r);
    await r.acquire();
    await r.acquire();
    assert.equal(await cond.wait(10), false);
    assert.match(String(r), /^<RLock\(me, 2\)>$/);
    r.release();
    r.release();
  });

  test('wait and notify without the lock: ERR_MP_NOT_OWNER, also when another process holds it', async () => {
    const cond = ctx.Condition();
    await assert.rejects(cond.wait(10), NOT_OWNER);
    assert.throws(() => cond.notify(), NOT_OWNER);
    assert.throws(() => cond.notifyAll(), NOT_OWNER);
    await assert.rejects(
      cond.waitFor(() => false, 10),
      NOT_OWNER,
    );
    const held = ctx.Event();
    const go = ctx.Event();
    const p = start(ctx, t.holdUntil, [cond, held, go]);
    assert.equal(await held.wait(20_000), true);
    await assert.rejects(cond.wait(10), NOT_OWNER);
    assert.throws(() => cond.notify(), NOT_OWNER);
    go.set();
    await joinAll([p]);
    // Over a plain Lock too.
    const c2 = ctx.Condition(ctx.Lock());
    await assert.rejects(c2.wait(10), NOT_OWNER);
    assert.throws(() => c2.notify(), NOT_OWNER);
  });

  test('{ signal } aborts a wait: AbortError, the lock held again, the condition usable', async () => {
    const cond = ctx.Condition();
    await cond.acquire();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(cond.wait(undefined, { signal: ac.signal }), ABORTED);
    assert.match(String(cond), /^<Condition\(<RLock\(me, 1\)>, 0\)>$/);
    await assert.rejects(cond.wait(1000, { signal: AbortSignal.abort() }), ABORTED);
    assert.match(String(cond), /^<Condition\(<RLock\(me, 1\)>, 0\)>$/);
    cond.release();
    // A child's notify still reaches a later wait.
    await cond.withLock(async () => {
      const p = start(ctx, t.waitResultF, [cond]);
      assert.equal(await cond.wait(20_000), true);
      await joinAll([p]);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// _TestEvent

describeBackends('Event', (ctx) => {
  test('test_event', async () => {
    const event = ctx.Event();
    assert.equal(event.isSet(), false);
    let [r, ms] = await timed(event.wait(0));
    assert.equal(r, false);
    assert.ok(ms < 2000);
    [r, ms] = await timed(() => event.wait(100));
    assert.equal(r, false);
    assertTookAbout(ms, 100);
    event.set();
    assert.equal(event.isSet(), true);
    assert.equal(String(event), '<Event(set)>');
    assert.equal(await event.wait(), true);
    assert.equal(await event.wait(100), true);
    event.set(); // idempotent
    event.clear();
    assert.equal(event.isSet(), false);
    assert.equal(String(event), '<Event(unset)>');
    const p = start(ctx, t.setLater, [event, 200]);
    [r] = await timed(event.wait());
    assert.equal(r, true);
    await joinAll([p]);
    assert.equal(event.isSet(), true);
  });

  test('set() wakes every waiting child; waiters that timed out do not count', async () => {
    const ev = ctx.Event();
    const ready = ctx.Semaphore(0);
    const woken = ctx.Semaphore(0);
    const late = [0, 1].map(() => start(ctx, t.eventWaiter, [ev, ready, woken, 100]));
    await joinAll(late);
    await take(ready, 2);
    assert.equal(woken.getValue(), 0);
    const ps = [0, 1, 2].map(() => start(ctx, t.eventWaiter, [ev, ready, woken]));
    await take(ready, 3);
    assert.equal(await woken.acquire({ timeout: 100 }), false);
    ev.set();
    await take(woken, 3);
    await joinAll(ps);
  });

  test('{ signal } aborts a wait and the event still works', async () => {
    const ev = ctx.Event();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(ev.wait(undefined, { signal: ac.signal }), ABORTED);
    await assert.rejects(ev.wait(5000, { signal: AbortSignal.timeout(20) }), ABORTED);
    const p = start(ctx, t.setLater, [ev, 0]);
    assert.equal(await ev.wait(20_000), true);
    await joinAll([p]);
  });
});

// ---------------------------------------------------------------------------------------------
// Arguments

describeBackends('argument checks', (ctx) => {
  const bad = { code: 'ERR_MP_INVALID_ARG' };

  test('wrong types are InvalidArgumentError', async () => {
    const lock = ctx.Lock();
    const rlock = ctx.RLock();
    const sem = ctx.Semaphore(1);
    for (const l of [lock, rlock, sem] as const) {
      for (const o of [5, 'x', { block: 'no' }, { timeout: '10' }, { timeout: NaN }]) {
        await assert.rejects(
          async () => l.acquire(o as never),
          (err) => err instanceof InvalidArgumentError && err instanceof TypeError,
        );
      }
    }
    for (const v of [-1, 1.5, '2', NaN]) {
      assert.throws(() => new Semaphore(v as number), bad);
      assert.throws(() => ctx.BoundedSemaphore(v as number), bad);
    }
    assert.throws(() => sem.release(0), bad);
    assert.throws(() => sem.release('1' as never), bad);
    assert.throws(() => new Condition({} as never), bad);
    assert.throws(() => new Condition(sem as never), bad);
    const cond = ctx.Condition();
    await cond.acquire();
    await assert.rejects(cond.wait('1' as never), bad);
    await assert.rejects(
      cond.waitFor(() => false, '1' as never),
      bad,
    );
    assert.throws(() => cond.notify(-1), bad);
    assert.throws(() => cond.notify(1.5), bad);
    cond.release();
    const ev = new Event();
    await assert.rejects(ev.wait('1' as never), bad);
    await assert.rejects(ev.wait(NaN), bad);
    // Nothing was left half-made.
    assert.equal(sem.getValue(), 1);
    assert.equal(await lock.acquire({ block: false }), true);
    lock.release();
  });

  test('a bad argument to a Promise-returning call rejects; it never throws synchronously', async () => {
    for (const l of [ctx.Lock(), ctx.RLock(), ctx.Semaphore(1)]) {
      let p: Promise<boolean> | undefined;
      let threw: unknown;
      try {
        p = l.acquire({ timeout: 'x' } as never);
      } catch (err) {
        threw = (err as Error).message;
      }
      assert.equal(threw, undefined, `${l.constructor.name}.acquire threw synchronously`);
      await assert.rejects(p!, { code: 'ERR_MP_INVALID_ARG' });
    }
  });
});
