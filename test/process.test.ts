// Process on both backends: CPython's _TestProcess behaviours (exitcodes, terminate/kill, join
// timeout, names, daemon rules, activeChildren) plus what Python lacks (no orphans on SIGKILL).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';

import {
  activeChildren,
  currentProcess,
  getAllStartMethods,
  getContext,
  getStartMethod,
  InvalidArgumentError,
  NotTransferableError,
  parentProcess,
  Process,
  setStartMethod,
} from '../src/index.js';
import { childPids, pidAlive } from '../src/platform.js';
import { assertNoLeftovers, describeBackends, fixture, readJson, runNode, tmpDir, waitGone } from './helpers.js';

type Targets = typeof import('./fixtures/targets.mjs');
let t: Targets;
let cjsTarget: typeof import('./fixtures/targets_cjs.js').cjsTarget;
const dir = tmpDir();
let seq = 0;
const out = (): string => path.join(dir, `out-${++seq}.json`);

before(async () => {
  t = (await import(pathToFileURL(fixture('targets.mjs')).href)) as Targets;
  cjsTarget = (await import('./fixtures/targets_cjs.js')).cjsTarget;
});

describeBackends('Process', (ctx, method) => {
  test('runs an exported target with its args and exits 0', async () => {
    const file = out();
    const args = [1, 'two', { three: [3n, new Date(0)], m: new Map([[1, new Set(['a'])]]) }, new Uint8Array([1, 2]), null, undefined];
    const p = new ctx.Process({ target: t.inspectArgs, args: [file, ...args] });
    assert.equal(p.exitcode, null);
    assert.equal(p.pid, undefined);
    p.start();
    assert.equal(typeof p.pid, 'number');
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.equal(p.isAlive(), false);
    assert.equal(fs.readFileSync(file, 'utf8'), inspect(args, { depth: 10 }));
  });

  test('a CommonJS target and a self-contained inline target', async () => {
    const file = out();
    const a = new ctx.Process({ target: cjsTarget, args: [file, 5] });
    a.start();
    await a.join();
    assert.deepEqual(readJson(file), { format: 'cjs', value: 5 });
    const file2 = out();
    const b = new ctx.Process({
      target: async (f: string, x: number) => {
        const fsm = await import('node:fs');
        fsm.writeFileSync(f, JSON.stringify(x * x));
      },
      args: [file2, 12],
    });
    b.start();
    await b.join();
    assert.equal(b.exitcode, 0);
    assert.equal(readJson(file2), 144);
  });

  test('names: Process-N, nested Process-N:M, subclass name, explicit name', async () => {
    const file = out();
    const p = new ctx.Process({ target: t.startGrandchild, args: [file, method] });
    const m = /^Process-(\d+)$/.exec(p.name);
    assert.ok(m, p.name);
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    const r = readJson(file) as { a: string; b: string; me: string; exit: number[] };
    assert.deepEqual(r, { a: `Process-${m[1]}:1`, b: `Process-${m[1]}:2`, me: p.name, exit: [0, 0] });
    // A grandchild has the main process's authkey too.
    assert.equal((readJson(`${file}.a`) as { authkey: string }).authkey, currentProcess().authkey.toString('hex'));
    const next = new ctx.Process();
    assert.equal(next.name, `Process-${Number(m[1]) + 1}`);
    assert.equal(new ctx.Process({ name: 'worker' }).name, 'worker');
    assert.match(new t.Subclassed(out(), 1).name, /^Subclassed-\d+$/);
  });

  test('the child sees itself and its parent', async () => {
    const file = out();
    const p = new ctx.Process({ target: t.describeSelf, args: [file], name: 'seer' });
    p.start();
    await p.join();
    const r = readJson(file) as Record<string, unknown>;
    assert.equal(r.name, 'seer');
    assert.equal(r.alive, true);
    assert.equal(r.parentPid, process.pid);
    assert.equal(r.parentName, 'MainProcess');
    assert.equal(r.parentAlive, true);
    assert.equal(r.pid, p.pid);
    assert.equal(r.ident, p.ident);
    assert.match(String(r.repr), /^<Process name='seer' parent=\d+ started>$/);
    if (method !== 'thread') assert.equal(r.ppid, process.pid);
    else assert.equal(r.osPid, process.pid);
    assert.equal(r.authkey, currentProcess().authkey.toString('hex'));
  });

  test('authkey: 32 random bytes in the main process, inherited, settable before start', async () => {
    const main = currentProcess().authkey;
    assert.ok(Buffer.isBuffer(main));
    assert.equal(main.length, 32);
    const p = new ctx.Process({ target: t.describeSelf, args: [out()] });
    assert.deepEqual(p.authkey, main);
    p.authkey = 'chosen';
    assert.deepEqual(p.authkey, Buffer.from('chosen'));
    assert.deepEqual(currentProcess().authkey, main);
    const file = out();
    const q = new ctx.Process({ target: t.describeSelf, args: [file] });
    q.authkey = new Uint8Array([1, 2, 3]);
    q.start();
    await q.join();
    assert.equal((readJson(file) as { authkey: string }).authkey, '010203');
    assert.throws(() => {
      p.authkey = 42 as unknown as string;
    }, InvalidArgumentError);
  });

  test('an exported subclass is rebuilt with its own fields and run()', async () => {
    const file = out();
    const p = new t.Subclassed(file, 41);
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.deepEqual(readJson(file), { n: 41, tags: ['x'], name: p.name, isSub: true, current: true });
  });

  test('an instance of an exported class and an exported error cross as themselves', async () => {
    const file = out();
    const p = new ctx.Process({ target: t.usePoint, args: [file, new t.Point(3, 4)] });
    p.start();
    await p.join();
    assert.deepEqual(readJson(file), { isPoint: true, norm: 5 });
    const file2 = out();
    const q = new ctx.Process({ target: t.checkError, args: [file2, new t.CustomError('boom', 3)] });
    q.start();
    await q.join();
    assert.deepEqual(readJson(file2), {
      isCustom: true,
      isError: true,
      name: 'CustomError',
      message: 'boom',
      extra: 3,
      cause: 'RemoteTraceback',
    });
  });

  test('exitcode: 1 after an uncaught error, n after process.exit(n) or process.exitCode = n', async () => {
    const a = new ctx.Process({ target: t.throwCustom, args: ['expected error from a test child'] });
    const b = new ctx.Process({ target: t.exitWith, args: [3] });
    const c = new ctx.Process({ target: t.setExitCode, args: [4] });
    for (const p of [a, b, c]) p.start();
    for (const p of [a, b, c]) await p.join();
    assert.deepEqual([a.exitcode, b.exitcode, c.exitcode], [1, 3, 4]);
  });

  test('terminate() gives -15 and kill() -9; isAlive() stays true until the exit is seen', async () => {
    const a = new ctx.Process({ target: t.sleepForever });
    const b = new ctx.Process({ target: t.sleepForever });
    a.start();
    b.start();
    a.terminate();
    b.kill();
    assert.equal(a.isAlive(), true);
    await a.join();
    await b.join();
    assert.equal(a.exitcode, -15);
    assert.equal(b.exitcode, -9);
    assert.equal(a.isAlive(), false);
    assert.match(String(a), /stopped exitcode=-SIGTERM/);
  });

  test('join(timeout) returns when the time is up, with the child still running', async () => {
    const p = new ctx.Process({ target: t.sleepForever });
    p.start();
    const t0 = Date.now();
    await p.join(100);
    const waited = Date.now() - t0;
    assert.ok(waited >= 95, `join returned after ${waited} ms`);
    assert.equal(p.exitcode, null);
    assert.equal(p.isAlive(), true);
    await p.join(0);
    assert.equal(p.isAlive(), true);
    p.kill();
    await p.join();
    assert.equal(p.exitcode, -9);
  });

  test("Python's rules: start twice, join before start, daemon after start, close while running", async () => {
    const p = new ctx.Process({ target: t.sleep, args: [50] });
    await assert.rejects(p.join(), { code: 'ERR_MP_NOT_STARTED' });
    assert.throws(() => p.terminate(), { code: 'ERR_MP_NOT_STARTED' });
    p.start();
    assert.throws(() => p.start(), { name: 'ProcessError', code: 'ERR_MP_ALREADY_STARTED' });
    assert.throws(() => (p.daemon = true), { code: 'ERR_MP_ALREADY_STARTED' });
    assert.throws(() => p.close(), { code: 'ERR_MP_STILL_RUNNING' });
    await p.join();
    p.close();
    p.close();
    assert.throws(() => p.isAlive(), { code: 'ERR_MP_CLOSED' });
    assert.throws(() => p.exitcode, { code: 'ERR_MP_CLOSED' });
    await assert.rejects(p.join(), { code: 'ERR_MP_CLOSED' });
    assert.throws(() => p.start(), { code: 'ERR_MP_CLOSED' });
    assert.equal(String(p), `<${ctx.Process.name} name='${p.name}' closed>`);
  });

  test('a daemon may not start children', async () => {
    const file = out();
    const p = new ctx.Process({ target: t.daemonStartsChild, args: [file], daemon: true });
    assert.equal(p.daemon, true);
    p.start();
    await p.join();
    assert.deepEqual(readJson(file), { code: 'ERR_MP_DAEMON_CHILD', message: 'daemonic processes are not allowed to have children' });
  });

  test('activeChildren() lists running children and reaps ended ones', async () => {
    const p = new ctx.Process({ target: t.sleepForever });
    p.start();
    assert.ok(activeChildren().includes(p));
    p.terminate();
    await p.join();
    assert.ok(!activeChildren().includes(p));
  });

  test('values that cannot cross are refused at start(), naming their path, before anything starts', () => {
    const before = childPids().length;
    const k = 3;
    assert.throws(
      () => new ctx.Process({ target: () => k }).start(),
      (err: unknown) => {
        assert.ok(err instanceof NotTransferableError);
        assert.match(err.message, /outer variable 'k'/);
        assert.match(err.message, /Export the function/);
        return true;
      },
    );
    assert.throws(() => new ctx.Process({ target: t.writeJson, args: ['x', { cb: () => k }] }).start(), {
      name: 'NotTransferableError',
      path: 'args[1].cb',
    });
    assert.throws(() => new ctx.Process({ target: t.writeJson, args: ['x', [Symbol('s')]] }).start(), { path: 'args[1][0]' });
    class Local {
      v = 1;
    }
    assert.throws(
      () => new ctx.Process({ target: t.writeJson, args: ['x', new Local()] }).start(),
      /instance of Local, which is not exported/,
    );
    assert.throws(() => new ctx.Process({ target: t.writeJson, args: ['x', new SharedArrayBuffer(4)] }).start(), /SharedArrayBuffer/);
    assert.throws(() => new ctx.Process({ target: t.writeJson, args: ['x', Promise.resolve()] }).start(), /Promise/);
    assert.equal(childPids().length, before);
  });

  test('wrong argument types are typed errors', () => {
    assert.throws(() => new ctx.Process({ target: 5 as never }), InvalidArgumentError);
    assert.throws(() => new ctx.Process({ args: 'x' as never }), /args must be an array/);
    assert.throws(() => new ctx.Process({ daemon: 'yes' as never }), InvalidArgumentError);
    assert.throws(() => new ctx.Process(null as never), InvalidArgumentError);
  });
});

describe('the main process and contexts', () => {
  test('currentProcess() is MainProcess and parentProcess() is null in the parent', () => {
    assert.equal(currentProcess().name, 'MainProcess');
    assert.equal(currentProcess().pid, process.pid);
    assert.equal(currentProcess().isAlive(), true);
    assert.equal(parentProcess(), null);
    assert.match(String(currentProcess()), /^<_MainProcess name='MainProcess' parent=None started>$/);
  });

  test('one library for import and require: the ESM face re-exports the CommonJS build', async () => {
    const esm = (await import('multiproc')) as typeof import('../src/index.js');
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- require() itself is what this test checks
    const cjs = require('multiproc') as typeof import('../src/index.js');
    assert.equal(esm.Process, cjs.Process);
    assert.equal(esm.currentProcess(), currentProcess());
    assert.equal(cjs.Process, Process);
  });

  test('start methods: spawn is the default, set once, force to change', () => {
    assert.deepEqual(getAllStartMethods(), ['spawn', 'thread', 'forkserver']);
    setStartMethod(null, { force: true });
    assert.equal(getStartMethod(true), undefined);
    assert.equal(getStartMethod(), 'spawn');
    assert.throws(() => setStartMethod('thread'), { code: 'ERR_MP_CONTEXT_SET' });
    setStartMethod('thread', { force: true });
    assert.equal(getStartMethod(), 'thread');
    assert.equal(getContext().getStartMethod(), 'thread');
    setStartMethod('spawn', { force: true });
    assert.throws(() => getContext('fork' as never), InvalidArgumentError);
    assert.throws(() => setStartMethod('fork' as never, { force: true }), InvalidArgumentError);
    assert.equal(getContext('thread').Process.name, 'ThreadProcess');
    assert.ok(new (getContext('thread').Process)() instanceof Process);
    // A context's getContext() without a method is that context, as in CPython.
    const threads = getContext('thread');
    assert.equal(threads.getContext(), threads);
    assert.equal(threads.getContext('spawn'), getContext('spawn'));
    threads.setStartMethod('forkserver', { force: true });
    assert.equal(getStartMethod(), 'forkserver');
    setStartMethod('spawn', { force: true });
  });

  test('a module that starts processes without the main guard gets the bootstrapping error, not a fork bomb', async () => {
    await assertNoLeftovers();
    const r = await runNode([fixture('unguarded.mjs')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /before the\s+current process has finished its bootstrapping phase/);
    assert.match(r.stderr, /isMainModule\(import\.meta\)/);
    // One child, which failed while importing: the parent reports its exit code once.
    assert.deepEqual(r.stdout.trim().split('\n'), ['child exitcode 1']);
  });

  test('daemon children end with their parent; non-daemon children are awaited', async () => {
    for (const method of ['spawn', 'thread']) {
      const file = out();
      const t0 = Date.now();
      const r = await runNode([fixture('exit_daemon.mjs'), method, file]);
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout) as { daemon: number; plain: number; t: number };
      assert.deepEqual(readJson(file), { done: true }, `${method}: the non-daemon child finished before the parent exited`);
      assert.ok(Date.now() - t0 >= 300);
      if (method === 'spawn') {
        assert.ok(await waitGone(info.daemon, 2000), 'daemon child terminated');
        assert.ok(!pidAlive(info.plain));
      }
    }
  });

  test('a daemon child exits within 1 s when its parent is killed with SIGKILL', async () => {
    let pids: { daemon: number; plain: number } | undefined;
    const killed = await runNode([fixture('parent_killed.mjs')], {
      onStdout(chunk, child) {
        pids = JSON.parse(chunk) as { daemon: number; plain: number };
        child.kill('SIGKILL');
      },
    });
    assert.equal(killed.signal, 'SIGKILL');
    assert.ok(pids);
    const t0 = Date.now();
    const gone = await waitGone(pids.daemon, 3000);
    const ms = Date.now() - t0;
    // The non-daemon child keeps running, as in Python; this test ends it.
    assert.ok(pidAlive(pids.plain), 'non-daemon child survives its parent');
    process.kill(pids.plain, 'SIGKILL');
    assert.ok(await waitGone(pids.plain, 3000));
    assert.ok(gone, 'daemon child outlived its SIGKILLed parent');
    assert.ok(ms < 1000, `daemon noticed its parent's death after ${ms} ms`);
  });

  test('TypeScript run by tsx: targets in .ts files cross and children inherit the loader', async () => {
    const r = await runNode(['--import', 'tsx', path.join(__dirname, '..', '..', 'test', 'fixtures', 'tsx_main.mts')]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['spawn 42']);
    // Node 20 does not apply loader hooks to worker threads: the thread child says so plainly.
    // So does a ThreadPool task: a named error with the fix, not a raw ERR_UNKNOWN_FILE_EXTENSION.
    if (Number(process.versions.node.split('.')[0]) < 22) {
      assert.match(r.stderr, /loader hooks such as tsx\s+do not reach worker threads/);
      assert.match(r.stderr, /^pool: ERR_MP_THREAD_TYPESCRIPT: .*Use the 'spawn' start method \(a Pool instead of a ThreadPool\)/m);
    }
  });
});
