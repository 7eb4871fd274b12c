// Small shared objects live in arenas (Python: multiprocessing.heap): thousands of locks and
// values take a few segments, each object is still shared as before, and close() gives an
// object's memory back at once, never from under a copy another process still uses.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { ProcessError } from '../src/errors.js';
import { RawArray, RawValue, SharedArray, Value } from '../src/memory/sharedctypes.js';
import { dumps, loads } from '../src/reduction/reduction.js';
import { arenaStats, withReservations } from '../src/shm/segment.js';
import { Barrier } from '../src/sync/barrier.js';
import { Condition, Event, Lock, RLock, Semaphore } from '../src/sync/synchronize.js';
import { describeBackends, fixture, ourSegments } from './helpers.js';

type Targets = typeof import('./fixtures/shm_targets.mjs');
let t: Targets;
before(async () => {
  t = (await import(pathToFileURL(fixture('shm_targets.mjs')).href)) as Targets;
});

const isClosed = (err: unknown): boolean => err instanceof ProcessError && err.code === 'ERR_MP_CLOSED';

describeBackends('arenas', (ctx) => {
  test('5 000 locks and values take a few segments, and each still works in a child', async () => {
    const before = ourSegments().length;
    const values = Array.from({ length: 2000 }, (_, k) => new Value('i', k));
    const locks = Array.from({ length: 2000 }, () => new Lock());
    const rlocks = Array.from({ length: 500 }, () => new RLock());
    const arrays = Array.from({ length: 500 }, (_, k) => new RawArray('d', [k, k + 0.5]));
    const made = ourSegments().length - before;
    assert.ok(made <= 40, `5 000 small objects made ${made} segments`);
    assert.ok(arenaStats().blocksInUse >= 5000 + 2000); // each Value has its own RLock too
    // Every object has its own memory.
    for (const l of locks.slice(0, 50)) assert.equal(await l.acquire({ block: false }), true);
    assert.equal(locks[50]!.locked(), false);
    assert.deepEqual(arrays[499]!.toArray(), [499, 499.5]);
    const sample = values.filter((_, k) => k % 97 === 0);
    const p = new ctx.Process({ target: t.bumpAll, args: [sample] });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    for (const [k, v] of values.entries()) assert.equal(v.value, k % 97 === 0 ? k + 1 : k);
    for (const l of locks.slice(0, 50)) l.release();
    for (const r of rlocks) r.close();
  });

  test('close() gives the memory back at once; a copy in a child keeps working', async () => {
    const v = new Value('i', 10);
    const out = new RawValue('i', 0);
    const go = new Event();
    const p = new ctx.Process({ target: t.bumpAfter, args: [go, v, out] });
    p.start();
    v.close();
    v.close(); // twice is fine
    assert.throws(() => v.value, isClosed);
    assert.throws(() => (v.value = 1), isClosed);
    assert.equal(String(v), "Value('i', closed)");
    assert.throws(() => dumps(v, ''), isClosed);
    go.set();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.equal(out.value, 15);
  });

  test('closed locks and arrays refuse every use with ERR_MP_CLOSED', async () => {
    const l = new Lock();
    l.close();
    await assert.rejects(l.acquire(), isClosed);
    assert.throws(() => l.release(), isClosed);
    assert.throws(() => l.locked(), isClosed);
    assert.equal(String(l), '<Lock(closed)>');
    const r = new RLock();
    r.close();
    await assert.rejects(r.acquire(), isClosed);
    const a = new SharedArray('i', [1, 2, 3]);
    {
      using b = new RawArray('i', 3);
      b[0] = 1;
    }
    a.close();
    assert.throws(() => a[0], isClosed);
    assert.throws(() => (a[1] = 2), isClosed);
    assert.throws(() => a.toArray(), isClosed);
    assert.equal(a.buf.length, 0);
    await assert.rejects(a.getLock().acquire(), isClosed); // the lock it made closes with it
    const sem = new Semaphore(2);
    sem.close();
    await assert.rejects(sem.acquire(), isClosed);
    assert.throws(() => sem.getValue(), isClosed);
    const ev = new Event();
    ev.close();
    assert.throws(() => ev.isSet(), isClosed);
    assert.throws(() => ev.set(), isClosed);
    await assert.rejects(ev.wait(), isClosed);
    const cond = new Condition();
    await cond.acquire();
    cond.close();
    assert.throws(() => cond.notify(), isClosed);
    cond.release();
    {
      using b = new Barrier(2);
      assert.equal(b.parties, 2);
    }
    const b2 = new Barrier(1);
    b2.close();
    await assert.rejects(b2.wait(), isClosed);
    assert.equal(String(b2), '<Barrier(closed)>');
    const shared = new Lock();
    const c = new Value('i', 1, { lock: shared });
    c.close();
    assert.equal(await shared.acquire({ block: false }), true); // a lock passed in stays open
    shared.release();
  });
});

test('a freed block is reused, and a late copy of the old object is refused, never attached to the new one', async () => {
  const v = new RawValue('i', 1);
  // A message that carried `v` and was then dropped: its hold is given back.
  const [bytes, giveBack] = withReservations(() => dumps(v, ''));
  giveBack();
  const used = arenaStats().blocksInUse;
  const block = v._seg.name.slice(0, v._seg.name.lastIndexOf('.')); // <arena>@<offset>
  v.close();
  assert.equal(arenaStats().blocksInUse, used - 1);
  // Allocate until the very same block holds a new object.
  const others: RawValue<'i'>[] = [];
  let w: RawValue<'i'>;
  do others.push((w = new RawValue('i', 2)));
  while (!w._seg.name.startsWith(`${block}.`) && others.length < 5000);
  assert.ok(w._seg.name.startsWith(`${block}.`), 'the freed block was never reused');
  await assert.rejects(loads(bytes), (err: unknown) => err instanceof ProcessError && err.code === 'ERR_MP_GONE');
  assert.equal(w.value, 2);
  for (const o of others) o.close();
});
