// The forkserver start method: children booted ahead of time, handed over at start().
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { after, afterEach, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { getContext, ProcessError, setForkserverPreload } from '../src/index.js';
import { standingChildren, standingIdle } from '../src/popen/forkserver.js';
import { pidAlive } from '../src/platform.js';
import { assertNoLeftovers, fixture, runNode, waitGone } from './helpers.js';

type Targets = typeof import('./fixtures/forkserver_targets.mjs');
let t: Targets;
const ctx = getContext('forkserver');

before(async () => {
  t = (await import(pathToFileURL(fixture('forkserver_targets.mjs')).href)) as Targets;
});
after(() => setForkserverPreload(['__main__']));

describe('forkserver', () => {
  afterEach(assertNoLeftovers);

  test('a child runs its target and reports its exit code, as with spawn; standing children are refilled', async () => {
    setForkserverPreload([]);
    const p = new ctx.Process({ target: t.noop });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.notEqual(p.pid, process.pid);
    // After a start, the standing set is booted again in the background.
    await standingIdle();
    const now = standingChildren();
    assert.equal(now.length, 2);
    assert.ok(now.every((c) => c.ready && c.idle && pidAlive(c.pid)));
  });

  test('standingIdle(): resolves once the children stand booted and idle (a start then hands one over), rejects when the preload fails', async () => {
    setForkserverPreload([]);
    await standingIdle(2);
    const [first] = standingChildren();
    const p = new ctx.Process({ target: t.noop });
    p.start();
    // The child handed over is one that stood ready, not a new one.
    assert.equal(p.pid, first!.pid);
    await p.join();
    assert.equal(p.exitcode, 0);
    setForkserverPreload([fixture('forkserver_bad_preload.mjs')]);
    try {
      await assert.rejects(standingIdle(), (e: ProcessError) => e.code === 'ERR_MP_FORKSERVER_PRELOAD');
    } finally {
      setForkserverPreload([]);
    }
  });

  test('preload: the modules are loaded before the child is handed its target', async () => {
    setForkserverPreload([fixture('forkserver_preload.mjs')]);
    const pool = ctx.Pool(1);
    try {
      assert.equal(await pool.apply(t.wasPreloaded, []), true);
    } finally {
      pool.terminate();
      await pool.join();
    }
    setForkserverPreload([]);
    const pool2 = ctx.Pool(1);
    try {
      assert.equal(await pool2.apply(t.wasPreloaded, []), false);
    } finally {
      pool2.terminate();
      await pool2.join();
    }
  });

  test("a child takes the parent's directory and environment of when it was started, not of when it was booted", async () => {
    setForkserverPreload([]);
    const old = process.cwd();
    process.env.MULTIPROC_TEST_FOO = 'now';
    process.chdir(os.tmpdir());
    const pool = ctx.Pool(1);
    try {
      assert.deepEqual(await pool.apply(t.surroundings, []), { cwd: fs.realpathSync(os.tmpdir()), foo: 'now' });
    } finally {
      process.chdir(old);
      delete process.env.MULTIPROC_TEST_FOO;
      pool.terminate();
      await pool.join();
    }
  });

  test('a bad preload module: the child says why it failed, and the next start() throws ERR_MP_FORKSERVER_PRELOAD', async () => {
    setForkserverPreload([fixture('forkserver_bad_preload.mjs')]);
    try {
      const p = new ctx.Process({ target: t.noop });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 1);
      assert.throws(
        () => new ctx.Process({ target: t.noop }).start(),
        (e: ProcessError) =>
          e.code === 'ERR_MP_FORKSERVER_PRELOAD' && /broken on purpose/.test(e.message) && /setForkserverPreload/.test(e.message),
      );
    } finally {
      setForkserverPreload([]);
    }
  });

  test('a child that crashes reports its signal; the next one starts', async () => {
    setForkserverPreload([]);
    const p = new ctx.Process({ target: t.crash });
    p.start();
    await p.join();
    assert.equal(p.exitcode, -11);
    const q = new ctx.Process({ target: t.noop });
    q.start();
    await q.join();
    assert.equal(q.exitcode, 0);
  });

  test('200 starts in a row: every one exits with 0, nothing is left behind', { timeout: 300_000 }, async () => {
    setForkserverPreload([]);
    for (let i = 0; i < 200; i++) {
      const p = new ctx.Process({ target: t.noop });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0, `start ${i}`);
    }
  });
});

test('the standing children and a daemon die within a second of their parent being SIGKILLed', { timeout: 60_000 }, async () => {
  let pids: { daemon: number; standing: number[] } | undefined;
  const killed = await runNode(['--expose-gc', fixture('forkserver_targets.mjs'), 'parent-killed'], {
    onStdout: (chunk, child) => {
      pids = JSON.parse(chunk.trim().split('\n')[0]!) as { daemon: number; standing: number[] };
      child.kill('SIGKILL');
    },
  });
  assert.equal(killed.signal, 'SIGKILL');
  assert.ok(pids);
  for (const pid of [pids.daemon, ...pids.standing]) assert.ok(await waitGone(pid, 1000), `process ${pid} outlived its SIGKILLed parent`);
  assert.ok(![pids.daemon, ...pids.standing].some(pidAlive));
});
