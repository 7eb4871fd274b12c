// Managers on the wire: calls made together keep their order, a lock proxy's release of a lock it
// holds goes without a round trip (and its failure still reaches the caller), a released lock
// passes to a waiter that has waited 1 ms or more, and a Lock on this machine is taken in shared
// memory.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { getContext, ProcessError } from '../src/index.js';
import {
  Manager,
  ManagedCondition,
  ManagedLock,
  ValueError,
  type AcquirerProxy,
  type LockProxy,
  type SyncManager,
} from '../src/managers/managers.js';
import { assertNoLeftovers, fixture } from './helpers.js';

type Targets = typeof import('./fixtures/manager_targets.mjs');
let t: Targets;

before(async () => {
  t = (await import(pathToFileURL(fixture('manager_targets.mjs')).href)) as Targets;
});

describe('manager calls on the wire', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager();
  });
  after(async () => {
    await m.shutdown();
    await assertNoLeftovers();
  });

  test('calls made together run and resolve in order, plain and structured values mixed', async () => {
    const d = await m.dict();
    const calls: Promise<unknown>[] = [];
    const order: number[] = [];
    for (let i = 0; i < 300; i++) {
      // Every 7th value needs the structured decoder (asynchronous): later messages wait for it.
      const v = i % 7 === 0 ? new Map([[i, i]]) : i;
      calls.push(d.set('k', v));
      calls.push(
        d.get('k').then((got) => {
          order.push(i);
          return got;
        }),
      );
    }
    const results = await Promise.all(calls);
    for (let i = 0; i < 300; i++) assert.deepEqual(results[2 * i + 1], i % 7 === 0 ? new Map([[i, i]]) : i);
    assert.deepEqual(order, [...Array(300).keys()], 'replies resolve in the order the calls were made');
  });

  test('a release and a try sent together: a waiter of 1 ms or more gets the lock (or permit) first, a newer one after the try', async () => {
    for (const lock of [await m.Semaphore(1), await m.BoundedSemaphore(1)]) {
      assert.equal(await lock.acquire(), true);
      const waiter = lock.acquire({ timeout: 60_000 });
      // Answered after the server queued the waiter (calls keep their order), so that the time
      // below is counted from then on a loaded machine too.
      assert.equal(await lock.getValue(), 0);
      // Past the bound a waiter may be passed over for (STARVING_MS): the time is the condition tested.
      await new Promise((r) => setTimeout(r, 5));
      // One message: the release, a try to take it back.
      const released = lock.release();
      const again = lock.acquire({ block: false });
      await released;
      assert.deepEqual(await Promise.all([waiter, again]), [true, false]);
      await lock.release();

      // A waiter that has just come: the try sent with the release takes it (as Python's Lock);
      // the waiter gets it at the next release nobody takes back.
      assert.equal(await lock.acquire(), true);
      const fresh = lock.acquire({ timeout: 60_000 });
      const released2 = lock.release();
      assert.equal(await lock.acquire({ block: false }), true);
      await released2;
      await lock.release();
      assert.equal(await fresh, true);
      await lock.release();
    }
  });

  test('a waiter in another process gets the lock before the releaser takes it back', async () => {
    const ctx = getContext('spawn');
    const lock = await m.RLock();
    const started = await m.Event();
    const done = await m.Event();
    assert.equal(await lock.acquire(), true);
    const p = new ctx.Process({ target: t.holdLock, args: [lock, started, done] });
    p.start();
    try {
      // The child's acquire is in the server's queue once it set `started` and then asked again.
      assert.equal(await started.wait(60_000), true);
      // Past the bound a waiter may be passed over for (STARVING_MS): the time is the condition tested.
      await new Promise((r) => setTimeout(r, 5));
      await lock.release();
      // The child holds it now (it was the only waiter): a non-blocking try fails.
      assert.equal(await lock.acquire({ block: false }), false);
      await done.set();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.equal(await lock.acquire({ block: false }), true);
      await lock.release();
    } finally {
      if (p.isAlive()) p.kill();
    }
  });

  test('release of a permit the proxy holds: a failure in the server rejects the next call on it, which does not run', async () => {
    const lock = await m.BoundedSemaphore(1);
    const q = await m.Queue<AcquirerProxy>();
    await q.put(lock);
    const other = await q.get();
    assert.equal(await lock.acquire(), true);
    // Any caller may release a semaphore: `other` does, so `lock`'s own release is one too many.
    await other.release();
    await lock.release();
    await assert.rejects(
      lock.acquire({ block: false }),
      (e: Error) => e instanceof ValueError && /released too many times/.test(e.message),
    );
    assert.equal(await other.acquire({ block: false }), true, 'the failed call did not run: the lock was free');
    await other.release();
    // Reported once.
    assert.equal(await lock.acquire({ block: false }), true);
    await lock.release();
  });

  test('a Lock on this machine: acquire and release in shared memory, seen by the server and by other proxies', async () => {
    const lock = await m.Lock();
    const q = await m.Queue<LockProxy>();
    await q.put(lock);
    const other = await q.get();
    assert.equal(await lock.acquire(), true);
    assert.equal(await other.locked(), true);
    assert.equal(await other.acquire({ block: false }), false);
    assert.equal(await other.acquire({ timeout: 10 }), false);
    // The server's own path (a Condition over it, a remote client) takes the same lock.
    const cond = await m.Condition(lock);
    assert.equal(await cond.acquire({ block: false }), false);
    // Any caller may release a Lock: `other` does, so `lock`'s own release finds it unlocked.
    await other.release();
    await assert.rejects(lock.release(), (e: Error) => e instanceof ValueError && /release unlocked lock/.test(e.message));
    assert.equal(await cond.acquire({ block: false }), true);
    assert.equal(await lock.locked(), true);
    await cond.release();
    assert.equal(await lock.locked(), false);
    // A wait aborted by its signal.
    await lock.acquire();
    const ac = new AbortController();
    const waiting = other.acquire({ signal: ac.signal });
    ac.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    await lock.release();
  });

  test('a Lock dropped by the server while a Condition over it lives keeps its shared memory until the Condition goes', () => {
    const lock = new ManagedLock();
    const cond = new ManagedCondition(lock);
    lock._dispose();
    assert.equal(lock.locked(), false, 'still open: the Condition uses it');
    cond._dispose();
    assert.throws(
      () => lock.locked(),
      (e: Error) => e instanceof ProcessError && e.code === 'ERR_MP_CLOSED',
    );
    const alone = new ManagedLock();
    alone._dispose();
    assert.throws(
      () => alone.locked(),
      (e: Error) => e instanceof ProcessError && e.code === 'ERR_MP_CLOSED',
    );
  });

  test('many Locks in one process: no listener-leak warning, every one still excludes', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const locks = await Promise.all([...Array(15).keys()].map(() => m.Lock()));
      for (const l of locks) assert.equal(await l.acquire(), true);
      // Waits too add a listener each while they wait.
      const waits = locks.map((l) => l.acquire({ timeout: 5 }));
      assert.deepEqual(await Promise.all(waits), Array(15).fill(false));
      for (const l of locks) await l.release();
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(
      warnings.filter((w) => w.includes('MaxListeners')),
      [],
    );
  });

  test('release of what the proxy does not hold is a round trip: its error rejects that call', async () => {
    const lock = await m.Lock();
    await assert.rejects(lock.release(), ValueError);
    const rlock = await m.RLock();
    await rlock.acquire();
    await rlock.acquire();
    await rlock.release();
    await rlock.release();
    await assert.rejects(rlock.release(), (e: Error) => e instanceof ProcessError && /un-acquired/.test(e.message));
    const bs = await m.BoundedSemaphore(2);
    await bs.acquire();
    await assert.rejects(bs.release(2), ValueError, 'more than this proxy holds: answered');
    await bs.release();
    assert.equal(await bs.getValue(), 2);
  });

  test('a child whose last act is a release: the release reaches the server', async () => {
    for (const method of ['spawn', 'thread'] as const) {
      const lock = await m.Lock();
      const p = new (getContext(method).Process)({ target: t.acquireRelease, args: [lock] });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.equal(await lock.acquire({ block: false }), true, method);
      await lock.release();
    }
  });
});
