// Without the native addon (MULTIPROC_NATIVE=0, as after a failed build): everything between
// threads works; on spawn, Process, Pipe ends (relayed by the process that made them), Pool and
// Manager work (queues too: noaddon_queues.test.ts), and a shared object sent to another process
// is a NativeUnavailableError naming the addon and how to build it. Each scenario runs in a node
// process of its own, since the switch is read when the library loads.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { runNode, runScenario, tmpDir } from './helpers.js';

// runScenario passes its environment down; the addon's switch is added to it for these runs only.
async function withoutAddon(scenario: string): Promise<Record<string, unknown>> {
  const saved = process.env.MULTIPROC_NATIVE;
  process.env.MULTIPROC_NATIVE = '0';
  try {
    return await runScenario('noaddon.mjs', [scenario], 90_000);
  } finally {
    if (saved === undefined) delete process.env.MULTIPROC_NATIVE;
    else process.env.MULTIPROC_NATIVE = saved;
  }
}

describe('without the native addon', () => {
  test('futex waits are Atomics waits: time out, see a changed value, abort, wake, and keep the process alive', async () => {
    const r = await withoutAddon('waits');
    assert.equal(r.emulated, true);
    assert.deepEqual(
      { timedOut: r.timedOut, notEqual: r.notEqual, aborted: r.aborted, woken: r.woken },
      { timedOut: 'timed-out', notEqual: 'not-equal', aborted: 'AbortError', woken: 'ok' },
    );
  });

  test('threads started together: a queue one makes while the other is still booting can be opened by the other', async () => {
    const r = await withoutAddon('siblings');
    assert.equal(r.got, '012'.repeat(10));
  });

  test('between threads: Lock, Value, Queue, Pipe, Process and Pool all work', async () => {
    const r = await withoutAddon('threads');
    assert.equal(r.emulated, true);
    assert.equal(r.total, r.expected, 'the lock kept every increment');
    assert.deepEqual(r.reports, ['done 200', 'done 200']);
    assert.deepEqual(r.echoes, [{ echo: 'hello' }, { echo: 'hello' }]);
    assert.deepEqual(r.exitcodes, [0, 0]);
    assert.deepEqual(r.squares, [1, 4, 9, 16]);
    assert.equal(r.applied, 49);
  });

  test('a spawn Process starts, reports its exit code, and can be terminated', async () => {
    const r = await withoutAddon('spawn-process');
    assert.equal(r.emulated, true);
    assert.equal(r.exitcode, 3);
    assert.equal(r.alive, true);
    assert.equal(r.terminated, -15);
  });

  test('the relay socket closes a peer that announces anything but a token, before buffering it; the token still works', async () => {
    const r = await withoutAddon('relay-guard');
    assert.deepEqual(r, { hugeBeforeToken: true, negative: true, wrongToken: true, got: 'through', emulated: true });
  });

  for (const method of ['spawn', 'thread']) {
    test(`Pipe ends, Pool and a Manager's dict with ${method} children`, async () => {
      const r = await withoutAddon(`${method}-channels`);
      assert.equal(r.emulated, true);
      assert.deepEqual(r.echoes, [{ echo: 'a' }, { echo: { b: [1, 2] } }, [1, 2, 3]]);
      assert.equal(r.eof, true, 'the parent sees EOF once the child closed its end');
      assert.equal(r.reported, 50);
      assert.deepEqual(r.exitcodes, [0, 0, 0, 0]);
      assert.deepEqual(r.squares, [1, 4, 9, 16, 25, 36, 49, 64]);
      assert.equal(r.applied, 49);
      assert.deepEqual(r.keys, ['x', 'y']);
    });
  }

  test('a Value, a Lock or a SharedMemory sent to a spawn child (or a spawn pool task) is NativeUnavailableError naming the addon', async () => {
    const r = (await withoutAddon('spawn-shared')) as Record<string, Record<string, unknown>>;
    assert.equal(r.poolAfter, 9, 'the pool goes on after a task it could not send');
    for (const what of ['value', 'lock', 'sharedMemory', 'poolTask']) {
      const e = r[what]!;
      assert.equal(e.threw, true, what);
      assert.equal(e.typed, true, `${what}: ${String(e.name)}`);
      assert.equal(e.code, 'ERR_MP_NATIVE_UNAVAILABLE');
      assert.match(String(e.message), /native addon/);
      assert.match(String(e.message), /npm rebuild multiproc/);
      assert.match(String(e.message), /MULTIPROC_NATIVE=0/);
    }
  });

  test('an addon that does not load is the same mode, and the error says why it is not in use', async () => {
    // A copy of the compiled library beside a native/ folder with nothing built in it.
    const root = tmpDir();
    fs.cpSync(path.join(__dirname, '..', 'src'), path.join(root, 'build', 'src'), { recursive: true });
    fs.mkdirSync(path.join(root, 'native'));
    fs.writeFileSync(path.join(root, 'native', 'binding.gyp'), '{}');
    fs.symlinkSync(path.join(__dirname, '..', '..', 'node_modules'), path.join(root, 'node_modules'));
    const native = path.join(root, 'build', 'src', 'shm', 'native.js');
    const script = `
      const n = require(${JSON.stringify(native)});
      const b = n.openSegment('noaddon-probe', 64, true);
      console.log(JSON.stringify({
        emulated: n.emulated(), available: n.available(), shared: Object.prototype.toString.call(b),
        message: n.crossProcessError('probing').message, code: n.crossProcessError('probing').code,
      }));`;
    const env = { ...process.env };
    delete env.MULTIPROC_NATIVE;
    const run = await runNode(['-e', script], { env });
    assert.equal(run.code, 0, run.stderr);
    const r = JSON.parse(run.stdout) as Record<string, unknown>;
    assert.equal(r.emulated, true);
    assert.equal(r.available, false);
    assert.equal(r.shared, '[object SharedArrayBuffer]');
    assert.equal(r.code, 'ERR_MP_NATIVE_UNAVAILABLE');
    assert.match(String(r.message), /could not be loaded on this machine/);
    assert.match(String(r.message), /npm rebuild multiproc/);
  });
});
