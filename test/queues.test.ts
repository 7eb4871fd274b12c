// Queue, JoinableQueue and SimpleQueue on both backends: CPython's _TestQueue and _TestSimpleQueue
// (Lib/test/_test_multiprocessing.py), with real children putting and getting beside the parent,
// plus what the issue asks beyond Python: nothing lost with 8 producers and 8 consumers, a consumer
// SIGKILLed while blocked in get(), a 100 MB item, feeders flushed at exit, `for await`.
//
// Children are started from test/fixtures/ipc_targets.mts and report through queues or events;
// waits for a child are waits on those, never sleeps. The timed checks ("Empty after 100 ms")
// are CPython's TIMEOUT1..3 checks.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
  AbortError,
  Empty,
  Full,
  InvalidArgumentError,
  JoinableQueue,
  NotTransferableError,
  ProcessError,
  Queue,
  SimpleQueue,
} from '../src/index.js';
import { emulated } from '../src/shm/native.js';
import { describeBackends, fixture, joinAll, start, timed, runScenario, type ScenarioResult } from './helpers.js';

type Targets = typeof import('./fixtures/ipc_targets.mjs');
type StressItem = import('./fixtures/ipc_targets.mjs').StressItem;
type StressReport = import('./fixtures/ipc_targets.mjs').StressReport;
let t: Targets;

before(async () => {
  t = (await import(pathToFileURL(fixture('ipc_targets.mjs')).href)) as Targets;
});

/** Rejects with `cls`, and took about `ms` (0: at once). */
async function rejectsAfter(f: () => Promise<unknown>, cls: new (...a: never[]) => Error, ms: number): Promise<void> {
  const t0 = performance.now();
  await assert.rejects(f(), cls);
  const took = performance.now() - t0;
  assert.ok(took >= ms - 5, `rejected after ${took.toFixed(1)} ms, before its ${ms} ms timeout`);
  assert.ok(took < ms + 1500, `rejected after ${took.toFixed(1)} ms, long after ${ms} ms`);
}

const TIMEOUT1 = 100;
const TIMEOUT2 = 100;
const TIMEOUT3 = 100;
const CLOSED = { name: 'ProcessError', code: 'ERR_MP_CLOSED' };
const TASK_DONE = { name: 'ProcessError', code: 'ERR_MP_TASK_DONE' };

/** A scenario of ipc_targets.mjs in a process of its own (see there); its JSON line. */
const scenario = (name: string, method: string): Promise<ScenarioResult> => runScenario('ipc_targets.mjs', [name, method]);

// ---------------------------------------------------------------------------------------------
// _TestQueue

describeBackends('Queue', (ctx, method) => {
  // Without the addon a queue sent to a spawn child is served by this process (queue_relay.ts).
  const served = emulated() && method !== 'thread' ? 'the queue is served by the parent (no addon)' : false;
  // Without the addon (noaddon_spawn_selection.test.ts) an Event cannot reach a spawn child.
  const eventsCross = emulated() && method !== 'thread' ? 'needs an Event shared with a spawn child (native addon)' : false;
  test('test_put: a bounded queue fills up; Full at once or after the timeout; a child empties it', { skip: eventsCross }, async () => {
    const MAXSIZE = 6;
    const queue = ctx.Queue<number>(MAXSIZE);
    assert.ok(queue instanceof Queue);
    assert.equal(queue.maxsize, MAXSIZE);
    const childCanStart = ctx.Event();
    const parentCanContinue = ctx.Event();
    const p = start(ctx, t.getSix, [queue, childCanStart, parentCanContinue], true);
    assert.equal(queue.empty(), true);
    assert.equal(queue.full(), false);
    await queue.put(1);
    await queue.put(2, { block: true });
    await queue.put(3, { block: true, timeout: undefined });
    await queue.put(4, { block: false });
    await queue.put(5, { block: false, timeout: undefined });
    queue.putNowait(6);
    // Counted at put(), even while the feeder still holds them: no sleep needed, unlike CPython.
    assert.equal(queue.empty(), false);
    assert.equal(queue.full(), true);
    assert.equal(queue.qsize(), 6);
    await rejectsAfter(() => queue.put(7, { block: false }), Full, 0);
    await rejectsAfter(() => queue.put(7, { block: false, timeout: undefined }), Full, 0);
    assert.throws(() => queue.putNowait(7), Full);
    await rejectsAfter(() => queue.put(7, { block: true, timeout: TIMEOUT1 }), Full, TIMEOUT1);
    await rejectsAfter(() => queue.put(7, { block: false, timeout: TIMEOUT2 }), Full, 0);
    await rejectsAfter(() => queue.put(7, { timeout: TIMEOUT3 }), Full, TIMEOUT3);
    childCanStart.set();
    assert.equal(await parentCanContinue.wait(20_000), true);
    assert.equal(queue.empty(), true);
    assert.equal(queue.full(), false);
    await joinAll([p]);
    // The places freed by the child's get() are usable here.
    for (let i = 0; i < MAXSIZE; i++) queue.putNowait(i);
    assert.throws(() => queue.putNowait(7), Full);
    for (let i = 0; i < MAXSIZE; i++) assert.equal(await queue.get(), i);
  });

  test('test_get: items a child put; Empty at once or after the timeout', { skip: eventsCross }, async () => {
    const queue = ctx.Queue<number>();
    const childCanStart = ctx.Event();
    const parentCanContinue = ctx.Event();
    const p = start(ctx, t.putLater, [queue, childCanStart, parentCanContinue], true);
    assert.equal(queue.empty(), true);
    childCanStart.set();
    assert.equal(await parentCanContinue.wait(20_000), true);
    assert.equal(queue.empty(), false);
    assert.equal(await queue.get({ block: true, timeout: undefined }), 2);
    assert.equal(await queue.get({ block: true }), 3);
    assert.equal(await queue.get({ timeout: 1000 }), 4);
    // Python's get_nowait() right after: the child's put() has resolved, so the item is there.
    await joinAll([p]);
    assert.equal(queue.getNowait(), 5);
    assert.equal(queue.empty(), true);
    await rejectsAfter(() => queue.get({ block: false }), Empty, 0);
    await rejectsAfter(() => queue.get({ block: false, timeout: undefined }), Empty, 0);
    assert.throws(() => queue.getNowait(), Empty);
    await rejectsAfter(() => queue.get({ block: true, timeout: TIMEOUT1 }), Empty, TIMEOUT1);
    await rejectsAfter(() => queue.get({ block: false, timeout: TIMEOUT2 }), Empty, 0);
    await rejectsAfter(() => queue.get({ timeout: TIMEOUT3 }), Empty, TIMEOUT3);
  });

  test("test_fork: items put before the child started, then the child's, in order", async () => {
    const queue = ctx.Queue<number>();
    for (let i = 0; i < 10; i++) await queue.put(i);
    const p = start(ctx, t.putRange, [queue, 10, 20], true);
    for (let i = 0; i < 20; i++) assert.equal(await queue.get({ timeout: 20_000 }), i);
    await assert.rejects(queue.get({ block: false }), Empty);
    await joinAll([p]);
  });

  test('test_qsize: counts puts and gets, also those of a child', async () => {
    const q = ctx.Queue<number>();
    assert.equal(q.qsize(), 0);
    await q.put(1);
    assert.equal(q.qsize(), 1);
    await q.put(5);
    assert.equal(q.qsize(), 2);
    assert.equal(await q.get(), 1);
    assert.equal(q.qsize(), 1);
    assert.equal(await q.get(), 5);
    assert.equal(q.qsize(), 0);
    const p = start(ctx, t.putRange, [q, 0, 7]);
    await joinAll([p]);
    assert.equal(q.qsize(), 7);
    assert.match(String(q), /^<Queue\(maxsize=0, qsize=7\)>$/);
    for (let i = 0; i < 7; i++) await q.get();
    assert.equal(q.qsize(), 0);
  });

  test('test_task_done: four workers; join() returns once every item is done', async () => {
    const queue = ctx.JoinableQueue<number | null>();
    assert.ok(queue instanceof JoinableQueue);
    // Nothing put: join() returns at once.
    assert.equal(await queue.join(), true);
    await queue.put(-1);
    assert.equal(await queue.join(50), false);
    assert.equal(await queue.get(), -1);
    assert.equal(await queue.join(50), false);
    queue.taskDone();
    assert.equal(await queue.join(50), true);
    const workers = [0, 1, 2, 3].map(() => start(ctx, t.taskWorker, [queue], true));
    for (let i = 0; i < 10; i++) await queue.put(i);
    assert.equal(await queue.join(20_000), true);
    assert.equal(queue.qsize(), 0);
    for (const _ of workers) await queue.put(null);
    await joinAll(workers);
  });

  test('taskDone() called more often than items were put is ERR_MP_TASK_DONE, here and in a child', async () => {
    const queue = ctx.JoinableQueue<string>();
    assert.throws(() => queue.taskDone(), TASK_DONE);
    await queue.put('a');
    await queue.get();
    queue.taskDone();
    assert.throws(
      () => queue.taskDone(),
      (err) => err instanceof ProcessError && err.code === 'ERR_MP_TASK_DONE',
    );
    // Still usable after the error.
    await queue.put('b');
    const report = ctx.Queue<Record<string, unknown>>();
    const p = start(ctx, t.tooManyTaskDone, [queue, report]);
    assert.deepEqual(await report.get({ timeout: 20_000 }), { ok: false, name: 'ProcessError', code: 'ERR_MP_TASK_DONE' });
    await joinAll([p]);
    assert.equal(await queue.join(1000), true);
  });

  test('test_timeout: get() with a timeout rejects with Empty after about that long', async () => {
    const q = ctx.Queue();
    const [, ms] = await timed(() => assert.rejects(q.get({ block: true, timeout: 200 }), Empty));
    // CPython (bpo-30317) tolerates an early return down to half; we do not.
    assert.ok(ms >= 195 && ms < 2000, `${ms} ms`);
  });

  test('test_queue_feeder_donot_stop_onexc: a non-transferable item throws at put(); the queue keeps working', async () => {
    const q = ctx.Queue();
    assert.throws(() => q.put({ fn: Symbol('no') }), NotTransferableError);
    const secret = 42;
    assert.throws(() => q.putNowait([1, () => secret]), /secret/);
    assert.equal(q.qsize(), 0);
    await q.put(true);
    assert.equal(await q.get({ timeout: 5000 }), true);
    // A child still gets what is put after the refusal.
    const b = ctx.JoinableQueue<number | null>();
    assert.throws(() => b.put(new WeakMap() as unknown as number), NotTransferableError);
    const p = start(ctx, t.taskWorker, [b]);
    await b.put(1);
    assert.equal(await b.join(20_000), true);
    await b.put(null);
    await joinAll([p]);
  });

  test('test_closed_queue: put() and get() on a closed queue are ERR_MP_CLOSED; joinThread() waits for the feeder', async () => {
    const q = ctx.Queue<number>();
    await assert.rejects(q.joinThread(), { code: 'ERR_MP_NOT_CLOSED' });
    await q.put(1);
    q.close();
    q.close(); // twice is fine
    await q.joinThread();
    assert.throws(() => q.put(2), CLOSED);
    assert.throws(() => q.putNowait(2), CLOSED);
    await assert.rejects(q.get(), CLOSED);
    assert.throws(() => q.getNowait(), CLOSED);
    // test_closed_queue_empty_exceptions: empty() on a queue this process used and closed raises;
    // on one it never used, it answers. qsize() answers either way.
    assert.throws(() => q.empty(), CLOSED);
    assert.equal(q.qsize(), 1);
    for (const unused of [ctx.Queue(), ctx.JoinableQueue()]) {
      unused.close();
      await unused.joinThread();
      assert.equal(unused.empty(), true);
    }
    const simple = ctx.SimpleQueue();
    simple.close();
    assert.throws(() => simple.empty(), CLOSED);
  });

  test('options are checked; an AbortSignal cancels a blocked get() and put()', async () => {
    assert.throws(() => ctx.Queue(1.5), InvalidArgumentError);
    assert.throws(() => ctx.Queue('3' as unknown as number), InvalidArgumentError);
    assert.equal(ctx.Queue(-1).maxsize, 0);
    const q = ctx.Queue<number>(1);
    assert.throws(() => q.put(1, 'fast' as never), InvalidArgumentError);
    await assert.rejects(async () => q.get({ timeout: 'soon' as never }), InvalidArgumentError);
    const ac = new AbortController();
    const g = q.get({ signal: ac.signal });
    ac.abort();
    await assert.rejects(g, AbortError);
    // The aborted get() took nothing and left the reader lock free.
    await q.put(1);
    const ac2 = new AbortController();
    const pending = q.put(2, { signal: ac2.signal });
    ac2.abort();
    await assert.rejects(pending, AbortError);
    assert.equal(q.qsize(), 1);
    assert.equal(await q.get({ timeout: 1000 }), 1);
    await assert.rejects(q.get({ block: false }), Empty);
    await q.put(3);
    assert.equal(q.getNowait(), 3);
  });

  test('for await: here over items a child put, and in a child over items put here', async () => {
    const q = ctx.Queue<number | null>();
    const p = start(ctx, t.putRange, [q, 0, 100]);
    const got: number[] = [];
    for await (const x of q) {
      got.push(x!);
      if (got.length === 100) break;
    }
    assert.deepEqual(
      got,
      Array.from({ length: 100 }, (_, i) => i),
    );
    await joinAll([p]);
    // The loop's break left the queue usable.
    const report = ctx.Queue<{ sum: number; n: number }>();
    const c = start(ctx, t.iterateQueue, [q, report]);
    for (let i = 1; i <= 100; i++) await q.put(i);
    await q.put(null);
    assert.deepEqual(await report.get({ timeout: 20_000 }), { sum: 5050, n: 100 });
    await joinAll([c]);
  });

  if (method !== 'thread') {
    test('test_no_import_lock_contention: a module that uses a queue while it is imported', async () => {
      assert.deepEqual(await scenario('import', 'spawn'), { got: 'knock knock' });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Nothing lost

  test('nothing lost: 8 producers and 8 consumers, every item exactly once, FIFO per producer', { skip: eventsCross }, async () => {
    const PRODUCERS = 8;
    const CONSUMERS = 8;
    const N = 20_000;
    const q = ctx.Queue<StressItem | null>();
    const results = ctx.Queue<StressReport>();
    const go = ctx.Event();
    const consumers = Array.from({ length: CONSUMERS }, () => start(ctx, t.stressConsumer, [q, results, PRODUCERS, N]));
    const producers = Array.from({ length: PRODUCERS }, (_, p) => start(ctx, t.stressProducer, [q, p, N, go]));
    go.set();
    await joinAll(producers, 60_000);
    for (let c = 0; c < CONSUMERS; c++) await q.put(null);
    const reports = [];
    for (let c = 0; c < CONSUMERS; c++) reports.push(await results.get({ timeout: 60_000 }));
    await joinAll(consumers);
    let expectedSum = 0;
    for (let p = 0; p < PRODUCERS; p++) for (let i = 0; i < N; i++) expectedSum += t.stressValue(p, i);
    const count = reports.reduce((s, r) => s + r.count, 0);
    const sum = reports.reduce((s, r) => s + r.sum, 0);
    assert.equal(
      reports.reduce((s, r) => s + r.bad, 0),
      0,
      'damaged items',
    );
    assert.equal(
      reports.reduce((s, r) => s + r.outOfOrder, 0),
      0,
      'items of one producer out of order',
    );
    assert.equal(count, PRODUCERS * N, 'item count');
    assert.equal(sum, expectedSum, 'checksum');
    // Every item seen exactly once, over all consumers.
    const seen = new Uint8Array(PRODUCERS * N);
    for (const r of reports) for (let k = 0; k < seen.length; k++) seen[k] = seen[k]! + r.seen[k]!;
    const missing = seen.findIndex((x) => x === 0);
    const twice = seen.findIndex((x) => x > 1);
    assert.equal(missing, -1, `item ${missing} lost`);
    assert.equal(twice, -1, `item ${twice} delivered twice`);
    // Each producer's last item reached some consumer.
    for (let p = 0; p < PRODUCERS; p++) assert.equal(Math.max(...reports.map((r) => r.max[p]!)), N - 1);
    // The work was shared (every consumer is a distinct process or thread).
    assert.equal(new Set(reports.map((r) => r.pid)).size, method !== 'thread' ? CONSUMERS : 1);
    assert.equal(q.qsize(), 0);
  });

  test(
    `a consumer killed while blocked in get() does not corrupt the queue; its reader lock is recovered`,
    { skip: eventsCross },
    async () => {
      const r = await scenario('killed-consumer', method);
      assert.equal(r.error, undefined, String(r.error));
      assert.equal(r.heldByVictim, true, 'the victim held the reader lock when it was killed');
      assert.equal(r.exitcode, -9);
      assert.equal(r.count, 2000);
      assert.equal(r.allOnce, true);
      assert.equal(r.inOrder, true);
      // Waiters check the owner every 0.5 s.
      assert.ok(r.recoveredMs < 1500, `the others got an item only ${r.recoveredMs} ms after the kill`);
      assert.deepEqual(r.othersExit, [0, 0]);
    },
  );

  test('a 100 MB item crosses intact', async () => {
    const q = ctx.Queue<Uint8Array | string>();
    const p = start(ctx, t.bigPut, [q, 100 << 20]);
    const big = await q.get({ timeout: 60_000 });
    assert.ok(big instanceof Uint8Array);
    assert.equal(big.length, 100 << 20);
    assert.equal(t.sha256(big), await q.get({ timeout: 20_000 }));
    await joinAll([p]);
    // And back through the same queue, to a child and from it again.
    const b2 = ctx.Queue<Uint8Array | string>();
    const c = start(ctx, t.bigPut, [b2, 5 << 20]);
    const x = (await b2.get({ timeout: 20_000 })) as Uint8Array;
    assert.equal(t.sha256(x), await b2.get({ timeout: 20_000 }));
    await joinAll([c]);
  });

  test('a producer awaiting each put() feeds the ring while it runs, not only after its loop', { skip: served }, async () => {
    // 2 KiB items: the ring holds about 2 000. Items that find no room wait in this process, and
    // only the event loop lets its feeder write them; once 1 MiB waits, put() resolves a turn
    // later, so the consumer gets more than the ring holds before this loop ends. (Without that,
    // the loop would run to its bound with the consumer stopped at the ring's worth.)
    const q = ctx.Queue<Uint8Array | null>();
    const report = ctx.Queue<{ n: number; bytes: number }>();
    const p = start(ctx, t.drainBytes, [q, report]);
    const item = new Uint8Array(2048).fill(7);
    let puts = 0;
    while (puts < 30_000 && puts - q.qsize() < 3_000) {
      await q.put(item);
      puts++;
    }
    const taken = puts - q.qsize();
    await q.put(null);
    assert.deepEqual(await report.get({ timeout: 30_000 }), { n: puts, bytes: puts * 2048 });
    await joinAll([p]);
    assert.ok(puts < 30_000, `the consumer had taken ${taken} items after ${puts} puts`);
  });

  test('byte arrays cross as they were at put(): type, bytes, a view only its own, through the ring and past it', async () => {
    // Byte arrays skip serialization on the way into the ring and out of it; 48 of 256 KiB are
    // more than the ring holds, so most wait in the feeder, and each is overwritten right after
    // its put(): what arrives must be what was put, each way (the child puts them back).
    const q = ctx.Queue();
    const back = ctx.Queue();
    const p = start(ctx, t.relayItems, [q, back]);
    const big = 256 * 1024;
    const backing = new Uint8Array(64).map((_, i) => i);
    const items: Uint8Array[] = [Buffer.from('a buffer'), backing.subarray(10, 20), new Uint8Array(1).fill(9), Buffer.alloc(3, 1)];
    for (const x of items) await q.put(x);
    for (let i = 0; i < 48; i++) {
      const item = i % 2 ? Buffer.alloc(big, i) : new Uint8Array(big).fill(i);
      await q.put(item);
      item.fill(255);
    }
    await q.put(null);
    for (const x of items) {
      const got = (await back.get({ timeout: 30_000 })) as Uint8Array;
      assert.equal(Buffer.isBuffer(got), Buffer.isBuffer(x), 'a Buffer stays a Buffer, a Uint8Array a Uint8Array');
      assert.equal(Object.getPrototypeOf(got), Object.getPrototypeOf(x));
      assert.deepEqual([...got], [...x]);
      // (A small Buffer may sit in Node's shared pool, as Buffer.from() makes them.)
      if (!Buffer.isBuffer(got)) assert.equal(got.buffer.byteLength, got.length, 'a Uint8Array owns its own bytes');
    }
    for (let i = 0; i < 48; i++) {
      const got = (await back.get({ timeout: 30_000 })) as Uint8Array;
      assert.equal(Buffer.isBuffer(got), i % 2 === 1);
      assert.equal(got.length, big);
      assert.ok(
        got.every((b) => b === i),
        `item ${i} changed after put()`,
      );
    }
    assert.equal(await back.get({ timeout: 30_000 }), null);
    await joinAll([p]);
  });

  test('items put just before a child returns are flushed before it exits', async () => {
    // 64 items of 256 KiB: four times what the ring holds, so most wait in the child's feeder.
    const q = ctx.Queue<{ i: number; item: Uint8Array }>();
    const p = start(ctx, t.putManyAndExit, [q, 64, 256 << 10, false]);
    for (let i = 0; i < 64; i++) {
      const x = await q.get({ timeout: 20_000 });
      assert.equal(x.i, i);
      assert.equal(x.item.length, 256 << 10);
      assert.ok(x.item.every((b) => b === (i & 0xff)));
      // The child cannot have exited while its feeder still held items.
      if (i === 0) assert.equal(p.exitcode, null);
    }
    await joinAll([p]);
    assert.equal(q.qsize(), 0);
  });

  // A served queue's puts leave the child in the background (from the next turn of its event loop):
  // with cancelJoinThread() none may have left when it exits, and it holds no lock to recover.
  test('cancelJoinThread() lets a child exit with items still in its feeder; the queue still works', { skip: served }, async () => {
    // In a process of its own: when the writer lock is not given back, the put() below waits for good.
    const r = await scenario('cancel-join', method);
    assert.equal(r.exitcode, 0, 'the child did not exit');
    // What reached the ring is there, whole and in order; the rest is lost, as documented.
    const got = r.got as number[];
    assert.ok(got.length > 0 && got.length < 64, `${got.length} items arrived`);
    assert.deepEqual(
      got,
      Array.from({ length: got.length }, (_, i) => i),
    );
    assert.equal(r.intact, true);
    assert.equal(r.endedWith, 'Empty');
    // The writer lock the child's feeder held is given back (recovered) and the queue works.
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.after, 'after');
  });
});

// ---------------------------------------------------------------------------------------------
// _TestSimpleQueue

describeBackends('SimpleQueue', (ctx) => {
  test('test_empty, put/get across a child, close', async () => {
    const q = ctx.SimpleQueue<number | null>();
    assert.ok(q instanceof SimpleQueue);
    assert.equal(q.empty(), true);
    await q.put(1);
    assert.equal(q.empty(), false);
    assert.equal(await q.get(), 1);
    assert.equal(q.empty(), true);
    assert.match(String(q), /^<SimpleQueue\(qsize=0\)>$/);
    // A child iterates what we put (SimpleQueue crosses as a SimpleQueue) and reports the sum.
    const report = ctx.SimpleQueue<{ sum: number; n: number }>();
    const jq = ctx.Queue<number | null>();
    const c = start(ctx, t.iterateQueue, [jq, report]);
    for (let i = 1; i <= 10; i++) await jq.put(i);
    await jq.put(null);
    assert.deepEqual(await report.get(), { sum: 55, n: 10 });
    await joinAll([c]);
    q.close();
    await assert.rejects(q.put(2), CLOSED);
  });
});
