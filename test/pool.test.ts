// Pool and ThreadPool on both backends: CPython's _TestPool behaviours (apply, map, map_async
// with callbacks, imap, imap with a raising iterable, imap_unordered, starmap, empty iterable,
// terminate, context manager, maxtasksperchild) plus what Python lacks: a worker that dies
// mid-task fails only that task and is replaced, and every call settles.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { AbortError, InvalidArgumentError, NotTransferableError, ProcessError, TimeoutError, WorkerDiedError } from '../src/index.js';
import { AsyncResult, defaultChunksize, Pool, ProgressBar, ThreadPool, type Progress, type TaskTiming } from '../src/pool/pool.js';
import { describeBackends, fixture, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/pool_targets.mjs');
let t: Targets;
const dir = tmpDir();

before(async () => {
  t = (await import(pathToFileURL(fixture('pool_targets.mjs')).href)) as Targets;
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const workerName = (method: string): RegExp =>
  new RegExp(`^${{ spawn: 'Spawn', thread: 'Thread', forkserver: 'ForkServer' }[method] ?? '?'}PoolWorker-\\d+$`);

test('defaultChunksize follows CPython: divmod(len, 4 * processes), +1 on a remainder', () => {
  assert.equal(defaultChunksize(0, 2), 0);
  assert.equal(defaultChunksize(1, 2), 1);
  assert.equal(defaultChunksize(8, 2), 1);
  assert.equal(defaultChunksize(9, 2), 2);
  assert.equal(defaultChunksize(100, 4), 7);
  assert.equal(defaultChunksize(1_000_000, 2), 125_000);
});

test('bad arguments are refused before anything starts', () => {
  assert.throws(() => new Pool(0), InvalidArgumentError);
  assert.throws(() => new Pool({ processes: 1.5 }), InvalidArgumentError);
  assert.throws(() => new Pool({ processes: 1, maxtasksperchild: 0 }), InvalidArgumentError);
  assert.throws(() => new Pool({ processes: 1, initializer: 3 as never }), InvalidArgumentError);
  let outer = 1;
  outer++;
  assert.throws(() => new Pool({ processes: 1, initializer: () => outer }), /outer/);
});

describeBackends('Pool', (ctx, method) => {
  const make = (processes = 2, extra: Record<string, unknown> = {}): Pool => new Pool({ processes, context: ctx, ...extra });

  test('a task is sent as an export only when it is that export, never as a namesake', async () => {
    await using pool = make(1);
    // A factory's function called like an export, using an outer variable: refused, never run as the export.
    await assert.rejects(
      async () => pool.apply(t.makeNamesake('captured'), [1]),
      (e: unknown) => e instanceof NotTransferableError && /outer variable 'label'/.test(e.message),
    );
    // Self-contained: crosses by value and runs as itself.
    assert.equal(await pool.apply(t.makeSelfContainedNamesake(), [2]), 'inline 2');
    assert.equal(await pool.apply(t.namesake, [3]), 'exported 3');
  });

  test('apply and applyAsync (CPython test_apply, test_async)', async () => {
    await using pool = make();
    assert.equal(await pool.apply(t.sqr, [5]), 25);
    assert.equal(await pool.apply(t.mul, [3, 4]), 12);
    const res = pool.applyAsync(t.sqr, [7, 100]);
    assert.equal(res.ready(), false);
    assert.throws(
      () => res.successful(),
      (e: ProcessError) => e.code === 'ERR_MP_NOT_READY',
    );
    assert.equal(await res.get(), 49);
    assert.equal(res.ready(), true);
    assert.equal(res.successful(), true);
    assert.equal(await pool.apply((x: number) => x + 1, [41]), 42);
    assert.equal(await pool.apply(t.sleepThen, [5, 'async ok']), 'async ok');
  });

  test('get(timeout) rejects with TimeoutError when not ready; wait(timeout) just returns (test_async_timeout)', async () => {
    await using pool = make();
    const res = pool.applyAsync(t.sleepThen, [3_000, 'late']);
    const t0 = Date.now();
    await assert.rejects(res.get(50), TimeoutError);
    assert.ok(Date.now() - t0 < 2_500, 'get(50) waited for the result');
    await res.wait(20);
    assert.equal(res.ready(), false);
    await res.wait();
    assert.equal(res.ready(), true);
    assert.equal(await res.get(10), 'late');
  });

  test('callback and errorCallback run before get() settles (test_map_async_callbacks)', async () => {
    await using pool = make();
    const got: unknown[] = [];
    const errs: unknown[] = [];
    const r1 = pool.mapAsync(t.sqr, [1, 2, 3], { callback: (v) => got.push(v), errorCallback: (e) => errs.push(e) });
    assert.deepEqual(await r1.get(), [1, 4, 9]);
    assert.deepEqual([...got], [[1, 4, 9]]);
    const r2 = pool.applyAsync(t.raiseAt, [2, 2], { callback: (v) => void got.push(v), errorCallback: (e) => void errs.push(e) });
    await r2.wait();
    assert.equal(r2.successful(), false);
    assert.equal(errs.length, 1);
    assert.equal((errs[0] as Error).name, 'TaskError');
    await assert.rejects(r2.get(), t.TaskError);
  });

  test('a task error arrives as its own class, with its fields and the remote stack as cause', async () => {
    await using pool = make();
    const err = await pool.apply(t.raiseAt, [3, 3]).then(
      () => assert.fail('resolved'),
      (e: unknown) => e as InstanceType<Targets['TaskError']>,
    );
    assert.ok(err instanceof t.TaskError);
    assert.equal(err.message, 'bad item 3');
    assert.equal(err.item, 3);
    assert.equal(err.code, 'E_TASK');
    assert.equal((err.cause as Error).name, 'RemoteTraceback');
    assert.match((err.cause as Error).message, /raiseAt/);
    // The pool goes on.
    assert.equal(await pool.apply(t.sqr, [3]), 9);
  });

  test('map, starmap, chunksize, empty iterable (test_map, test_starmap, test_empty_iterable)', async () => {
    await using pool = make();
    assert.deepEqual(
      await pool.map(t.sqr, range(10)),
      range(10).map((x) => x * x),
    );
    assert.deepEqual(
      await pool.map(t.sqr, range(100), 53),
      range(100).map((x) => x * x),
    );
    assert.deepEqual(
      await pool.map(t.sqr, range(1000)),
      range(1000).map((x) => x * x),
    );
    assert.deepEqual(await pool.map(t.sqr, new Set([1, 2, 3])), [1, 4, 9]);
    assert.deepEqual(await pool.map(t.sqr, t.asyncRange(5)), [0, 1, 4, 9, 16]);
    assert.deepEqual(await pool.map(t.sqr, []), []);
    assert.deepEqual(await pool.mapAsync(t.sqr, []).get(), []);
    const pairs = range(10).map((i) => [i, i + 1] as [number, number]);
    assert.deepEqual(
      await pool.starmap(t.mul, pairs),
      pairs.map(([a, b]) => a * b),
    );
    assert.deepEqual(
      await pool.starmapAsync(t.mul, pairs, 3).get(),
      pairs.map(([a, b]) => a * b),
    );
    assert.deepEqual(await pool.starmap(t.mul, []), []);
    assert.deepEqual(
      await pool.map(t.sleepSquare, range(6), { chunksize: 2 }),
      range(6).map((x) => x * x),
    );
  });

  test('map rejects with the first task error; map of a raising iterable rejects', async () => {
    await using pool = make();
    assert.throws(() => pool.map(t.raiseAt.bind(null) as never, [1]), NotTransferableError);
    await assert.rejects(
      pool.starmap(
        t.raiseAt,
        range(20).map((i) => [i, 13] as [number, number]),
        2,
      ),
      t.TaskError,
    );
    assert.throws(() => pool.map(t.sqr, t.exceptionThrowingGenerator(10, 3)), t.SayWhenError);
    await assert.rejects(
      pool.map(
        t.sqr,
        // eslint-disable-next-line @typescript-eslint/require-await -- an async iterable that throws is the point
        (async function* () {
          yield 1;
          throw new t.SayWhenError('async when');
        })(),
      ),
      t.SayWhenError,
    );
  });

  test('imap and imapUnordered (test_imap, test_imap_unordered)', async () => {
    await using pool = make();
    const out: number[] = [];
    for await (const v of pool.imap(t.sqr, range(10))) out.push(v);
    assert.deepEqual(
      out,
      range(10).map((x) => x * x),
    );
    const it = pool.imap(t.sqr, range(1000), 100);
    for (let i = 0; i < 1000; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
    assert.deepEqual(await it.next(), { value: undefined, done: true });
    const un: number[] = [];
    for await (const v of pool.imapUnordered(t.sqr, range(100), 7)) un.push(v);
    assert.deepEqual(
      un.sort((a, b) => a - b),
      range(100).map((x) => x * x),
    );
    const none: number[] = [];
    for await (const v of pool.imap(t.sqr, [])) none.push(v);
    assert.deepEqual(none, []);
    const asyncIn: number[] = [];
    for await (const v of pool.imap(t.sqr, t.asyncRange(6, 2), 2)) asyncIn.push(v);
    assert.deepEqual(asyncIn, [0, 1, 4, 9, 16, 25]);
  });

  test('imap with a raising iterable: earlier results, then the error (test_imap_handle_iterable_exception)', async () => {
    await using pool = make();
    const check = async (total: number, when: number, chunksize: number, expected: number): Promise<void> => {
      const it = pool.imap(t.sqr, t.exceptionThrowingGenerator(total, when), chunksize);
      for (let i = 0; i < expected; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
      await assert.rejects(it.next(), t.SayWhenError);
      assert.deepEqual(await it.next(), { value: undefined, done: true });
    };
    await check(1, 0, 1, 0);
    await check(10, 3, 1, 3);
    await check(20, 7, 2, 6);
    await check(20, 7, 4, 4);
    // imapUnordered: every value is expected, then the error.
    const it = pool.imapUnordered(t.sqr, t.exceptionThrowingGenerator(10, 3), 1);
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const v of it) seen.push(v);
    }, t.SayWhenError);
    assert.deepEqual(seen.sort(), [0, 1, 4]);
  });

  test('imap is lazy: it reads a bounded window ahead of the loop, and break stops the rest', async () => {
    await using pool = make();
    let read = 0;
    function* counting(): Generator<number> {
      for (let i = 0; i < 1_000_000; i++) {
        read++;
        yield i;
      }
    }
    const it = pool.imap(t.sqr, counting());
    const got: number[] = [];
    for await (const v of it) {
      got.push(v);
      if (got.length === 5) break;
    }
    // A round trip through the pool gives a producer that did not stop every chance to read on.
    assert.equal(await pool.apply(t.sqr, [2]), 4);
    assert.deepEqual(got, [0, 1, 4, 9, 16]);
    assert.ok(read < 100, `read ${read} items ahead`);
  });

  test('a failed task in imap: the error at its place (after the earlier results)', async () => {
    await using pool = make();
    const it = pool.imap(t.sqr, range(10), 1);
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const v of pool.imap((x: number) => {
        if (x === 4) throw new RangeError('four');
        return x;
      }, range(10)))
        seen.push(v);
    }, RangeError);
    assert.deepEqual(seen, [0, 1, 2, 3]);
    await it.return();
  });

  test('a closed or terminated pool refuses work with ERR_MP_POOL_NOT_RUNNING; join needs close first', async () => {
    const pool = make(1);
    await assert.rejects(pool.join(), (e: ProcessError) => e.code === 'ERR_MP_POOL_RUNNING');
    pool.close();
    for (const call of [
      () => pool.apply(t.sqr, [1]),
      () => pool.applyAsync(t.sqr, [1]),
      () => pool.map(t.sqr, [1]),
      () => pool.imap(t.sqr, [1]),
      () => pool.starmapAsync(t.mul, []),
    ]) {
      assert.throws(
        call,
        (e: ProcessError) => e instanceof ProcessError && e.code === 'ERR_MP_POOL_NOT_RUNNING' && e.message === 'Pool not running',
      );
    }
    await pool.join();
    assert.equal(pool._pool.length, 0);
  });

  test('close() lets queued work finish (seed 000: Pool(5), applyAsync x6, close, join)', async () => {
    const pool = make(5);
    const file = path.join(dir, `seed-${method}.txt`);
    const results = range(6).map((i) => pool.applyAsync(t.touch, [file, `task ${i}`]));
    pool.close();
    await pool.join();
    assert.ok(results.every((r) => r.ready() && r.successful()));
    assert.deepEqual(
      fs.readFileSync(file, 'utf8').trim().split('\n').sort(),
      range(6).map((i) => `task ${i}`),
    );
  });

  test('terminate() while busy rejects every pending call (test_terminate)', async () => {
    const pool = make(2);
    const started = ctx.Queue<string>();
    const results = range(20).map(() => pool.applyAsync(t.reportThenSleep, [started, 5_000, 'never']));
    const mapped = pool.starmap(t.sleepThen, [[5_000, 1]]).catch((e: unknown) => e);
    const it = pool.imap(t.sqr, t.asyncRange(1_000_000));
    // Both workers are running a task.
    await started.get();
    await started.get();
    const t0 = Date.now();
    pool.terminate();
    await pool.join();
    assert.ok(Date.now() - t0 < 2_000);
    for (const r of results) await assert.rejects(r.get(), (e: ProcessError) => e.code === 'ERR_MP_POOL_TERMINATED');
    assert.ok((await mapped) instanceof Error);
    await assert.rejects(
      async () => {
        for await (const _ of it);
      },
      (e: ProcessError) => e.code === 'ERR_MP_POOL_TERMINATED',
    );
  });

  test('await using terminates and joins the pool (test_context)', async () => {
    let kept: Pool;
    {
      await using pool = make(2);
      kept = pool;
      assert.equal(await pool.apply(t.sqr, [4]), 16);
    }
    assert.match(String(kept), /state=TERMINATE/);
    assert.equal(kept._pool.length, 0);
  });

  test('initializer and initargs run in every worker', async () => {
    await using pool = make(2, { initializer: t.init, initargs: [{ hello: 'world' }] });
    const got = await pool.map(t.getInitialized, [1, 2, 3, 4], 1);
    assert.deepEqual(got, [{ hello: 'world' }, { hello: 'world' }, { hello: 'world' }, { hello: 'world' }]);
  });

  test('a failing initializer settles everything instead of respawning forever', async () => {
    const pool = make(2, { initializer: t.failingInit });
    const r = pool.applyAsync(t.sqr, [2]);
    await assert.rejects(
      r.get(),
      (e: ProcessError) => e.code === 'ERR_MP_POOL_INITIALIZER' && /initializer says no/.test((e.cause as Error).message),
    );
    await pool.join();
  });

  test('maxtasksperchild replaces workers (test_pool_worker_lifetime)', async () => {
    await using pool = make(2, { maxtasksperchild: 3 });
    const first = pool._pool.map((p) => p.name);
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const rs = range(4).map(() => pool.applyAsync(t.whoAmI, []));
      for (const r of rs) names.add((await r.get()).name);
    }
    assert.ok(names.size >= 8, `only ${names.size} distinct workers ran 24 tasks`);
    assert.notDeepEqual(
      pool._pool.map((p) => p.name),
      first,
    );
    assert.equal(pool._pool.length <= 2, true);
  });

  test('worker names and workers are Process objects of the chosen backend', async () => {
    await using pool = make(2);
    const who = await pool.apply(t.whoAmI, []);
    assert.match(who.name, workerName(method));
    if (method === 'thread') assert.equal(who.pid, process.pid);
    else assert.notEqual(who.pid, process.pid);
    assert.equal(pool._pool.length, 2);
  });

  test('a result that cannot be sent back fails that task only', async () => {
    await using pool = make(1);
    await assert.rejects(pool.apply(t.unsendable, []), NotTransferableError);
    await assert.rejects(pool.apply(t.returnSymbol, []), NotTransferableError);
    assert.equal(await pool.apply(t.sqr, [6]), 36);
  });

  test('arguments that cannot cross are refused at the call, naming the path', async () => {
    await using pool = make(1);
    assert.throws(
      () => pool.applyAsync(t.identity, [{ cb: Symbol('s') }]),
      (e: NotTransferableError) => e instanceof NotTransferableError && /args\[0\]\.cb/.test(e.message),
    );
    let captured = 3;
    captured++;
    assert.throws(() => pool.applyAsync((x: number) => x + captured, [1]), /captured/);
  });

  // ---- never hang ----------------------------------------------------------------------------

  const killWorker = (p: import('../src/index.js').Process): void => {
    if (method !== 'thread') process.kill(p.pid!, 'SIGKILL');
    else p.kill();
  };

  test('a worker killed mid-task fails exactly that task with WorkerDiedError; the others complete', async () => {
    await using pool = make(2);
    const running = ctx.Queue<string>();
    const victim = pool.applyAsync(t.reportThenHang, [running]);
    // Queued behind the victim (in its worker too) and beside it: none of them may fail.
    const others = range(10).map((i) => pool.applyAsync(t.sleepThen, [20, i]));
    const name = await running.get();
    const worker = pool._pool.find((p) => p.name === name);
    assert.ok(worker, `no worker named ${name}`);
    killWorker(worker);
    const err = await victim.get().then(
      () => assert.fail('resolved'),
      (e: unknown) => e as WorkerDiedError,
    );
    assert.ok(err instanceof WorkerDiedError);
    assert.equal(err.code, 'ERR_MP_WORKER_DIED');
    assert.equal(err.exitcode, -9);
    assert.equal(err.worker, name);
    assert.match(err.message, /PoolWorker-\d+ died while running this task \(killed by signal SIGKILL\)/);
    assert.deepEqual(await Promise.all(others.map((r) => r.get())), range(10));
    assert.equal(await pool.apply(t.sqr, [8]), 64);
    assert.equal(pool._pool.length, 2);
    assert.ok(!pool._pool.some((p) => p.name === name), 'the killed worker was replaced');
  });

  test('process.exit() inside a task: WorkerDiedError with the exit code; map rejects instead of waiting', async () => {
    await using pool = make(2);
    const err = await pool.apply(t.exitNow, [7]).then(
      () => assert.fail('resolved'),
      (e: unknown) => e as WorkerDiedError,
    );
    assert.ok(err instanceof WorkerDiedError);
    assert.equal(err.exitcode, 7);
    assert.match(err.message, /exit code 7/);
    await assert.rejects(
      pool.starmap(
        t.exitIf,
        range(20).map((i) => [i, 11, 3] as [number, number, number]),
        1,
      ),
      (e: WorkerDiedError) => e instanceof WorkerDiedError && e.exitcode === 3,
    );
    assert.deepEqual(await pool.map(t.sqr, range(5)), [0, 1, 4, 9, 16]);
  });

  test(
    'SIGKILL a worker 100 times in a loop of tasks: every call settles, right or with WorkerDiedError, and a kill fails at most one call',
    { timeout: 120_000 },
    async () => {
      await using pool = make(2);
      let died = 0;
      for (let round = 0; round < 100; round++) {
        const calls = range(6).map((i) => pool.applyAsync(t.sleepThen, [15, i]));
        const mapped = pool.mapAsync(t.sqr, range(20), 2);
        // Kill at a point that moves from round to round: after 0, 1 or 2 calls have answered.
        for (const r of calls.slice(0, round % 3)) await r.wait();
        const workers = pool._pool;
        if (workers.length) killWorker(workers[round % workers.length]!);
        const expected: unknown[] = [...range(6), range(20).map((x) => x * x)];
        for (const [k, r] of [...calls, mapped].entries()) {
          try {
            assert.deepEqual(await r.get(20_000), expected[k]);
          } catch (e) {
            assert.ok(e instanceof WorkerDiedError, `unexpected ${String(e)}`);
            died++;
          }
        }
        // One kill, so at most one call of the round failed: the one whose task the worker was running.
        assert.ok(died <= round + 1, `${died} calls failed after ${round + 1} kills`);
      }
      assert.deepEqual(await pool.map(t.sqr, range(4)), [0, 1, 4, 9]);
    },
  );

  // ---- control beyond Python -----------------------------------------------------------------

  test('{ timeout }: a running task is stopped by replacing its worker; a queued one is dropped', async () => {
    await using pool = make(1);
    const t0 = Date.now();
    await assert.rejects(pool.apply(t.hang, [], { timeout: 150 }), TimeoutError);
    // Negative is 0, as for every other wait: a TimeoutError, not an argument error.
    await assert.rejects(pool.apply(t.hang, [], { timeout: -5 }), /within 0 ms/);
    assert.ok(Date.now() - t0 < 2_000);
    const blocker = pool.applyAsync(t.spin, [300], { timeout: 100 });
    const queued = pool.applyAsync(t.sqr, [3], { timeout: 50 });
    await assert.rejects(queued.get(), TimeoutError);
    await assert.rejects(blocker.get(), TimeoutError);
    assert.equal(await pool.apply(t.sqr, [5]), 25);
  });

  test('{ signal }: abort rejects with AbortError; an already aborted signal too', async () => {
    await using pool = make(1);
    const ac = new AbortController();
    const running = ctx.Queue<string>();
    const r = pool.applyAsync(t.reportThenHang, [running], { signal: ac.signal });
    await running.get();
    ac.abort(new Error('stop'));
    const err = await r.get().then(
      () => assert.fail('resolved'),
      (e: unknown) => e as AbortError,
    );
    assert.ok(err instanceof AbortError);
    assert.equal((err.cause as Error).message, 'stop');
    await assert.rejects(pool.map(t.sqr, range(10), { signal: AbortSignal.abort() }), AbortError);
    const ac2 = new AbortController();
    const it = pool.imap(t.spin, [1, 1, 1, 5000, 1, 1], { signal: ac2.signal });
    const got: number[] = [];
    await assert.rejects(async () => {
      for await (const v of it) {
        got.push(v);
        if (got.length === 3) ac2.abort();
      }
    }, AbortError);
    assert.equal(got.length, 3);
    assert.equal(await pool.apply(t.sqr, [5]), 25);
  });

  test('onProgress per call: done/total/rate as chunks finish; total unknown for an imap input until it ends', async () => {
    await using pool = make();
    const seen: Progress[] = [];
    assert.deepEqual(
      await pool.map(t.sqr, range(10), { chunksize: 3, onProgress: (p) => seen.push(p) }),
      range(10).map((x) => x * x),
    );
    // Four chunks (3, 3, 3, 1 items) in completion order: done grows by a chunk at a time.
    assert.equal(seen.length, 4);
    assert.ok(seen.every((p, i) => i === 0 || p.done > seen[i - 1]!.done));
    assert.ok(seen.every((p) => p.total === 10 && p.failed === 0 && p.rate >= 0 && p.elapsedMs >= 0));
    assert.equal(seen.at(-1)!.done, 10);
    // An async input: the total comes when it ends.
    const imapSeen: Progress[] = [];
    const out: number[] = [];
    for await (const x of pool.imap(t.sqr, t.asyncRange(6, 2), { onProgress: (p) => imapSeen.push({ ...p }) })) out.push(x);
    assert.deepEqual(out, [0, 1, 4, 9, 16, 25]);
    assert.equal(imapSeen[0]!.total, undefined);
    const last = imapSeen.at(-1)!;
    assert.equal(last.total, 6);
    assert.equal(last.done, 6);
    // Failures are counted.
    const failures: Progress[] = [];
    await assert.rejects(
      pool.starmap(
        t.raiseAt,
        [
          [1, 2],
          [2, 2],
          [3, 2],
        ],
        { chunksize: 1, onProgress: (p) => failures.push(p) },
      ),
    );
    assert.ok(failures.some((p) => p.failed === 1));
  });

  test('per-task timings: on results (queue wait, run time, worker) and through onTask; pool-wide hooks', async () => {
    const poolTasks: TaskTiming[] = [];
    const poolProgress: Progress[] = [];
    await using pool = make(2, { onTask: (x: TaskTiming) => poolTasks.push(x), onProgress: (p: Progress) => poolProgress.push(p) });
    const r = pool.applyAsync(t.sqr, [3, 30]);
    assert.equal(await r.get(), 9);
    assert.equal(r.timings.length, 1);
    const [one] = r.timings;
    assert.match(one!.worker, workerName(method));
    assert.ok(one!.runMs >= 25 && one!.runMs < 2000, `runMs ${one!.runMs}`);
    assert.ok(one!.queuedMs >= 0);
    assert.deepEqual([one!.index, one!.items, one!.ok], [0, 1, true]);
    const onTask: TaskTiming[] = [];
    const m = pool.mapAsync(t.sqr, range(8), { chunksize: 2, onTask: (x) => onTask.push(x) });
    await m.get();
    assert.deepEqual(
      m.timings.map((x) => x.index).sort((a, b) => a - b),
      [0, 2, 4, 6],
    );
    assert.equal(onTask.length, 4);
    assert.ok(onTask.every((x) => x.items === 2 && x.ok));
    // Two slow tasks on two workers: the third waits in the queue for one of them.
    const slow = await Promise.all(
      [pool.applyAsync(t.sqr, [1, 60]), pool.applyAsync(t.sqr, [1, 60]), pool.applyAsync(t.sqr, [1, 60])].map(
        async (x) => (await x.get(), x.timings[0]!),
      ),
    );
    assert.ok(Math.max(...slow.map((x) => x.queuedMs)) >= 40, `queued ${slow.map((x) => x.queuedMs).join(', ')}`);
    assert.equal(poolTasks.length, 1 + 4 + 3);
    assert.equal(poolProgress.at(-1)!.done, 1 + 8 + 3);
    assert.equal(poolProgress.at(-1)!.total, 1 + 8 + 3);
  });

  test('trace: a Chrome trace-event JSON with one tid per worker, written by join()', async () => {
    const file = path.join(dir, `trace-${method}.json`);
    const pool = make(2, { trace: file });
    await pool.map(t.sqr, range(40), { chunksize: 1 });
    await pool.map(t.sqr, [1, 2], { chunksize: 1 }).catch(() => undefined);
    // A killed worker: a new row for its replacement.
    await assert.rejects(pool.apply(t.exitNow, [3]), WorkerDiedError);
    assert.equal(await pool.apply(t.sqr, [4]), 16);
    pool.close();
    await pool.join();
    const trace = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      traceEvents: { ph: string; name: string; pid: number; tid: number; ts?: number; dur?: number; args?: Record<string, unknown> }[];
    };
    assert.ok(Array.isArray(trace.traceEvents));
    for (const e of trace.traceEvents) {
      assert.equal(typeof e.name, 'string');
      assert.equal(typeof e.ph, 'string');
      assert.equal(typeof e.pid, 'number');
      assert.equal(typeof e.tid, 'number');
      if (e.ph !== 'M') assert.ok(typeof e.ts === 'number' && e.ts >= 0, JSON.stringify(e));
    }
    const slices = trace.traceEvents.filter((e) => e.ph === 'X');
    assert.equal(slices.length, 40 + 2 + 1);
    assert.ok(slices.every((e) => typeof e.dur === 'number' && e.dur >= 0 && e.name === 'sqr'));
    const names = new Map(
      trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => [e.tid, String(e.args!.name)]),
    );
    // One row per worker: 2 at the start, 1 replacement; every slice sits on a worker's row.
    const workerRows = [...names].filter(([tid]) => tid !== 0);
    assert.equal(workerRows.length, 3);
    assert.ok(workerRows.every(([, n]) => /PoolWorker-\d+/.test(n)));
    assert.ok(slices.every((e) => names.has(e.tid) && e.tid !== 0));
    assert.ok(new Set(slices.map((e) => e.tid)).size >= 2);
    assert.ok(trace.traceEvents.some((e) => e.ph === 'i' && /worker ended: exit code 3/.test(e.name)));
  });

  test('a throwing onProgress/onTask hook is reported and does not stop the call', async () => {
    await using pool = make(1);
    const written: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string) => (written.push(chunk), true);
    try {
      assert.deepEqual(
        await pool.map(t.sqr, [1, 2], {
          onProgress: () => {
            throw new Error('hook boom');
          },
        }),
        [1, 4],
      );
    } finally {
      process.stderr.write = orig;
    }
    assert.ok(written.some((w) => /hook boom/.test(w)));
    assert.throws(() => pool.map(t.sqr, [1], { onProgress: 3 as never }), InvalidArgumentError);
  });

  test('AsyncResult is exported for instanceof checks', async () => {
    await using pool = make(1);
    const r = pool.applyAsync(t.sqr, [2]);
    assert.ok(r instanceof AsyncResult);
    assert.equal(await r.get(), 4);
  });
});

test('ThreadPool runs its workers as threads', async () => {
  await using pool = new ThreadPool(2);
  const who = await pool.apply(t.whoAmI, []);
  assert.match(who.name, /^ThreadPoolWorker-\d+$/);
  assert.equal(who.pid, process.pid);
  assert.deepEqual(await pool.map(t.sqr, [1, 2, 3]), [1, 4, 9]);
});

test('trace and hooks are checked at construction', () => {
  assert.throws(() => new Pool({ processes: 1, trace: 3 as never }), InvalidArgumentError);
  assert.throws(() => new Pool({ processes: 1, onTask: 'x' as never }), InvalidArgumentError);
});

test('ProgressBar: a line every 25 % when not a TTY, in-place redraws on a TTY', () => {
  const out: string[] = [];
  const stream = { isTTY: false, write: (s: string) => (out.push(s), true) } as unknown as NodeJS.WritableStream;
  const bar = new ProgressBar({ stream, label: 'job', everyPct: 25 });
  for (let done = 1; done <= 100; done++) bar.update({ done, total: 100, failed: 0, rate: 50, elapsedMs: done * 20 });
  bar.finish();
  assert.equal(out.length, 5, out.join(''));
  assert.ok(out.every((l) => l.endsWith('\n') && !l.includes('\r')));
  assert.match(out.at(-1)!, /^job 100% 100\/100 50\/s 2s\n$/);
  const tty: string[] = [];
  const ttyStream = { isTTY: true, columns: 80, write: (s: string) => (tty.push(s), true) } as unknown as NodeJS.WritableStream;
  const bar2 = new ProgressBar({ stream: ttyStream, everyMs: 0 });
  bar2.update({ done: 5, total: 10, failed: 1, rate: 2, elapsedMs: 2500 });
  // eslint-disable-next-line no-control-regex -- the bar ends with the terminal's erase-line sequence
  assert.match(tty[0]!, /^\r\[#{15}-{15}\] {2}50% 5\/10 1 failed 2\/s 3s ETA 3s\x1b\[K$/);
  bar2.finish();
  assert.ok(tty.at(-1)!.endsWith('\n'));
  // Total unknown: a count, no bar.
  assert.match(
    new ProgressBar({ stream, tty: false }).line({ done: 7, total: undefined, failed: 0, rate: 3.5, elapsedMs: 2000 }),
    /^7 done 3\.5\/s 2s$/,
  );
});
