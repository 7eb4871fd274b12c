// How the forkserver keeps its standing children: when they boot, which one a start takes, how
// many stand, and pool workers started and replaced from them.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { getContext, setForkserverPreload, WorkerDiedError } from '../src/index.js';
import { setRefillDelay, standingChildren, standingIdle, warmUp } from '../src/popen/forkserver.js';
import { cpuCount } from '../src/platform.js';
import { sparePipeCount } from '../src/pool/spare_pipes.js';
import { assertNoLeftovers, fixture, runNode, runScenario } from './helpers.js';

type Targets = typeof import('./fixtures/forkserver_targets.mjs');
let t: Targets;
const ctx = getContext('forkserver');

before(async () => {
  t = (await import(pathToFileURL(fixture('forkserver_targets.mjs')).href)) as Targets;
});
after(() => setForkserverPreload(['__main__']));

describe('forkserver standing children', () => {
  afterEach(assertNoLeftovers);

  test('replacements wait until the child handed over has preloaded: nothing boots beside it', async () => {
    setForkserverPreload([]);
    const p = new ctx.Process({ target: t.noop });
    p.start();
    // The turn after start() is when replacements would boot; the child cannot have booted yet.
    await new Promise((r) => setImmediate(r));
    assert.equal(standingChildren().length, 0);
    await p.join();
    assert.equal(p.exitcode, 0);
    while (standingChildren().filter((c) => c.ready).length < 2) await new Promise((r) => setTimeout(r, 20));
  });

  test('replacements wait while a child handed over ready is still under way, and boot once it has exited', async () => {
    setForkserverPreload([]);
    await standingIdle(2);
    const go = ctx.Event();
    const p = new ctx.Process({ target: t.untilSet, args: [go] });
    p.start();
    // The turn after start() is when replacements would boot: the child runs, none boots beside it.
    await new Promise((r) => setImmediate(r));
    assert.equal(standingChildren().length, 1);
    go.set();
    await p.join();
    assert.equal(p.exitcode, 0);
    await standingIdle(2);
    assert.equal(standingChildren().length, 2);
  });

  test('when starts outrun the standing set, replacements boot once the children handed over report that their target runs', async () => {
    setForkserverPreload([]);
    await standingIdle(2);
    // Only the children's reports can start them: the fallback delay is out of reach.
    const was = setRefillDelay(3_600_000);
    const go = ctx.Event();
    // Two take the standing children, the third finds none ready: starts outrun the set.
    const ps = [0, 1, 2].map(() => new ctx.Process({ target: t.untilSet, args: [go] }));
    try {
      for (const p of ps) p.start();
      let guard: NodeJS.Timeout | undefined;
      const hang = new Promise((_, reject) => (guard = setTimeout(() => reject(new Error('no replacement booted')), 60_000)));
      await Promise.race([standingIdle(2), hang]).finally(() => clearTimeout(guard));
      assert.deepEqual(
        ps.map((p) => p.exitcode),
        [null, null, null],
        'the children handed over still run',
      );
      assert.equal(standingChildren().length, 2);
    } finally {
      setRefillDelay(was);
      go.set();
      for (const p of ps) await p.join();
    }
    assert.deepEqual(
      ps.map((p) => p.exitcode),
      [0, 0, 0],
    );
  });

  test("a pool's workers take pipes made ahead, one per standing child, once a pool has run on the forkserver", async () => {
    setForkserverPreload([]);
    const first = ctx.Pool(1);
    try {
      assert.equal(await first.apply(t.pid, []), first._pool[0]!.pid);
    } finally {
      first.terminate();
      await first.join();
    }
    // Made when a standing child reports that it is idle: by the time both are.
    await standingIdle(2);
    assert.equal(sparePipeCount(), 2);
    const pool = ctx.Pool(2);
    try {
      assert.equal(sparePipeCount(), 0);
      const pids = new Set(await Promise.all([0, 1, 2, 3].map(() => pool.apply(t.pid, []))));
      assert.ok(pids.size >= 1 && [...pids].every((pid) => pool._pool.some((p) => p.pid === pid)));
    } finally {
      pool.terminate();
      await pool.join();
    }
  });

  test('once a manager has run on the forkserver, a child left standing has also loaded what a manager server and a pipe load first', async () => {
    const m = await ctx.Manager();
    await m.shutdown();
    // Children booted from now on (these replace the standing ones) load it.
    setForkserverPreload([]);
    await standingIdle(2);
    const pool = ctx.Pool(1);
    try {
      // Nothing a pool worker runs loads node:cluster: the child loaded it while standing.
      assert.deepEqual(await pool.apply(t.loadedBuiltins, [['cluster', 'worker_threads', 'perf_hooks']]), [
        'cluster',
        'worker_threads',
        'perf_hooks',
      ]);
    } finally {
      pool.terminate();
      await pool.join();
    }
  });

  test('a Pool(4) started while the standing children boot gets 4 workers running at once; the standing set grows to the burst', async () => {
    setForkserverPreload([]);
    warmUp();
    const booting = standingChildren().map((c) => c.pid);
    assert.equal(booting.length, 2);
    const pool = ctx.Pool(4);
    try {
      // The booting children were handed over, not left to stand beside on-demand boots.
      assert.deepEqual(standingChildren(), []);
      const pids = pool._pool.map((p) => p.pid);
      for (const pid of booting) assert.ok(pids.includes(pid), `booting child ${pid} was not handed over`);
      // One task per worker (the pool gives each worker one before any a second), all at the barrier together.
      const barrier = ctx.Barrier(4);
      const ran = await Promise.all([0, 1, 2, 3].map(() => pool.apply(t.pidAtBarrier, [barrier])));
      assert.deepEqual(new Set(ran), new Set(pids));
    } finally {
      pool.terminate();
      await pool.join();
    }
    const expected = Math.min(4, Math.max(2, cpuCount()));
    while (standingChildren().filter((c) => c.ready).length < expected) await new Promise((r) => setTimeout(r, 20));
    assert.equal(standingChildren().length, expected);
  });

  test('pool workers are replaced on the forkserver: after a crash, and after maxtasksperchild', async () => {
    setForkserverPreload([]);
    const pool = ctx.Pool(2);
    try {
      const before = pool._pool.map((p) => p.pid);
      await assert.rejects(pool.apply(t.crash, []), (e: unknown) => e instanceof WorkerDiedError && e.exitcode === -11);
      const pids = new Set(await Promise.all([0, 1, 2, 3].map(() => pool.apply(t.pid, []))));
      const after = pool._pool.map((p) => p.pid);
      assert.equal(after.length, 2);
      assert.equal(after.filter((pid) => !before.includes(pid)).length, 1, 'exactly the crashed worker was replaced');
      for (const pid of pids) assert.ok(after.includes(pid));
    } finally {
      pool.terminate();
      await pool.join();
    }
    const once = ctx.Pool({ processes: 2, maxtasksperchild: 1 });
    try {
      const pids: number[] = [];
      for (let i = 0; i < 4; i++) pids.push(await once.apply(t.pid, []));
      assert.equal(new Set(pids).size, 4, 'each task ran in a fresh worker');
    } finally {
      once.terminate();
      await once.join();
    }
  });

  test('a child whose module makes the forkserver context at its top level boots no standing children of its own', async () => {
    setForkserverPreload([]);
    for (const c of [ctx, getContext('spawn')]) {
      const pool = c.Pool(1);
      try {
        assert.equal(await pool.apply(t.standingAfterATurn, []), 0);
      } finally {
        pool.terminate();
        await pool.join();
      }
    }
  });
});

test('making the forkserver context boots the standing children in the background', async () => {
  const r = await runNode([fixture('forkserver_targets.mjs'), 'prestart']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '2');
});

test('a pool worker on the forkserver loads no manager code until the program has run a manager there', async () => {
  const r = await runScenario('forkserver_targets.mjs', ['manager-code']);
  assert.deepEqual(r, { before: false, after: true });
});

test('pipes made ahead and never used are unlinked when the program ends', async () => {
  const r = await runScenario('forkserver_targets.mjs', ['spare-pipes']);
  assert.equal(r.spares, 2);
});

test('a CommonJS main module is preloaded with require, once, with its main guard false', async () => {
  const r = await runNode([fixture('forkserver_cjs_main.js')]);
  assert.equal(r.code, 0, r.stderr);
  // Its worker loaded the library's parts that the module's top level reads, not the managers.
  assert.deepEqual(JSON.parse(r.stdout), { loads: 1, esmLoader: false, managerCode: false });
});
