// SharedMemory and ShareableList: CPython's _TestSharedMemory on both backends, interop with
// Python's own multiprocessing.shared_memory in both directions, and the resource tracker.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { InvalidArgumentError, ProcessError } from '../src/errors.js';
import { dumps, loads } from '../src/reduction/reduction.js';
import { ShareableList, SharedMemory } from '../src/memory/shared_memory.js';
import { assertNoLeftovers, describeBackends, fixture, runNode } from './helpers.js';

type Targets = typeof import('./fixtures/shm_targets.mjs');
let t: Targets;
before(async () => {
  t = (await import(pathToFileURL(fixture('shm_targets.mjs')).href)) as Targets;
});

let seq = 0;
/** A name the leak check recognises as ours. */
const freshName = (tag: string): string => `mp-${process.pid.toString(36)}-${tag}${++seq}${Math.random().toString(36).slice(2, 8)}`;
const hasPython = spawnSync('python3', ['-c', 'import multiprocessing.shared_memory'], { stdio: 'ignore' }).status === 0;

// Python attaching without adopting the block: its resource tracker (before 3.13: always) would
// otherwise unlink our block when the script exits.
const PY_ATTACH = `
from multiprocessing import shared_memory, resource_tracker
def attach(name):
    try:
        return shared_memory.SharedMemory(name=name, track=False)
    except TypeError:
        shm = shared_memory.SharedMemory(name=name)
        resource_tracker.unregister(shm._name, "shared_memory")
        return shm
def attach_list(name):
    sl = shared_memory.ShareableList(name=name)
    try:
        resource_tracker.unregister(sl.shm._name, "shared_memory")
    except Exception:
        pass
    return sl
def create(name, size):
    shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    resource_tracker.unregister(shm._name, "shared_memory")
    return shm
`;
const python = (code: string): string => execFileSync('python3', ['-c', PY_ATTACH + code], { encoding: 'utf8' });

describe('SharedMemory in one process', () => {
  afterEach(assertNoLeftovers);

  test('basics (CPython test_shared_memory_basics)', () => {
    const name = freshName('basic');
    const sms = new SharedMemory({ name, create: true, size: 512 });
    try {
      assert.equal(sms.name, name);
      assert.equal(sms.size, 512);
      assert.equal(sms.buf.length, 512);
      assert.equal(String(sms), `SharedMemory('${name}', size=512)`);
      sms.buf[0] = 42;
      assert.equal(sms.buf[0], 42);
      // Attach by name, with or without the leading slash.
      const also = new SharedMemory({ name });
      const slash = new SharedMemory({ name: `/${name}`, size: 100 });
      assert.equal(also.buf[0], 42);
      also.buf[1] = 43;
      assert.equal(sms.buf[1], 43);
      assert.equal(slash.size, 512);
      also.close();
      slash.close();
      // Attaching ignores the size, as CPython does: the block is as large as it was made.
      const larger = new SharedMemory({ name, size: 1024 });
      assert.equal(larger.size, 512);
      assert.equal(larger.buf[1], 43);
      larger.close();
      assert.throws(
        () => new SharedMemory({ name, create: true, size: 512 }),
        (e: ProcessError) => e instanceof ProcessError && e.code === 'EEXIST',
      );
    } finally {
      sms.close();
      sms.close();
      assert.equal(sms.closed, true);
      assert.throws(
        () => sms.buf,
        (e: ProcessError) => e.code === 'ERR_MP_CLOSED',
      );
      sms.unlink();
    }
    assert.throws(
      () => sms.unlink(),
      (e: ProcessError) => e.code === 'ENOENT',
    );
    assert.throws(
      () => new SharedMemory({ name }),
      (e: ProcessError) => e instanceof ProcessError && e.code === 'ENOENT',
    );
  });

  test('argument errors', () => {
    assert.throws(() => new SharedMemory({ create: true, size: -1 }), InvalidArgumentError);
    assert.throws(() => new SharedMemory({ create: true, size: 0 }), /different from zero/);
    assert.throws(() => new SharedMemory({ create: true }), InvalidArgumentError);
    assert.throws(() => new SharedMemory(), /name can only be null if create is true/);
    assert.throws(() => new SharedMemory({ name: 'a/b' }), InvalidArgumentError);
    assert.throws(() => new SharedMemory({ name: 12 as never }), InvalidArgumentError);
  });

  test('a generated name, `using` closes, crossing sends { name, size }', async () => {
    let name: string;
    {
      using shm = new SharedMemory({ create: true, size: 10 });
      name = shm.name;
      assert.match(name, /^mp-/);
      const wire = dumps(shm);
      assert.ok(wire.length < 200);
      const copy = (await loads(wire)) as SharedMemory;
      assert.equal(copy.name, name);
      copy.buf[9] = 5;
      assert.equal(shm.buf[9], 5);
      copy.close();
      shm.unlink();
    }
    assert.ok(!fs.existsSync(path.join('/dev/shm', name)));
  });

  test('ShareableList basics (CPython test_shared_memory_ShareableList_basics)', () => {
    const sl = new ShareableList(['howdy', new Uint8Array([72, 111, 119, 100, 121]), -273.154, 100, null, true, 42n, 2n ** 62n]);
    try {
      assert.equal(sl.length, 8);
      assert.equal(sl.format, '8s8sdqxxxxxx?xxxxxxxx?qq');
      assert.equal(sl[0], 'howdy');
      assert.deepEqual(sl[1], new Uint8Array([72, 111, 119, 100, 121]));
      assert.equal(sl[2], -273.154);
      assert.equal(sl[3], 100);
      assert.equal(sl[4], null);
      assert.equal(sl[5], true);
      assert.equal(sl[6], 42);
      assert.equal(sl[7], 2n ** 62n);
      assert.equal(sl.get(-1), 2n ** 62n);
      assert.equal(sl.index(100), 3);
      assert.equal(sl.index(42n), 6);
      assert.equal(sl.index(new Uint8Array([72, 111, 119, 100, 121])), 1);
      assert.throws(() => sl.index('not there'), /not in this container/);
      assert.equal(sl.count(true), 1);
      assert.equal(sl.count(1), 0, 'booleans are not numbers here');
      // Changing an item's type changes its format.
      sl[3] = 42.0 + 0.5;
      assert.equal(sl.format, '8s8sddxxxxxx?xxxxxxxx?qq');
      sl[4] = 'a';
      assert.equal(sl[4], 'a');
      assert.equal(sl.format, '8s8sdd8sxxxxxxx?qq');
      sl[0] = 'hi';
      assert.equal(sl[0], 'hi');
      assert.throws(() => (sl[0] = 'far too long for 8'), /exceed the 8 bytes/);
      assert.throws(() => sl.set(8, 1), RangeError);
      assert.throws(() => (sl[8] = 1), RangeError);
      assert.equal(sl[8], undefined);
      assert.throws(() => (sl[1] = undefined as never), InvalidArgumentError);
      assert.throws(() => (sl[1] = 2n ** 64n), /64 bits/);
      assert.deepEqual([...sl].length, 8);
      // Attach by name: same items.
      const other = new ShareableList(null, { name: sl.shm.name });
      assert.deepEqual(other.toArray(), sl.toArray());
      other[2] = 1.5;
      assert.equal(sl[2], 1.5);
      other.shm.close();
      assert.match(String(sl), /^ShareableList\(\[ 'hi'/);
    } finally {
      sl.shm.close();
      sl.shm.unlink();
    }
  });

  test('an empty ShareableList, and one with a chosen name', () => {
    const empty = new ShareableList();
    assert.equal(empty.length, 0);
    assert.equal(empty.format, '');
    assert.deepEqual(empty.toArray(), []);
    empty.shm.close();
    empty.shm.unlink();
    const name = freshName('named');
    const named = new ShareableList([1, 'x'], { name });
    assert.equal(named.shm.name, name);
    assert.throws(
      () => new ShareableList([1], { name }),
      (e: ProcessError) => e.code === 'EEXIST',
    );
    named.shm.close();
    named.shm.unlink();
  });
});

describeBackends('SharedMemory', (ctx) => {
  test('a child writes through a SharedMemory passed as an argument, another attaches by name', async () => {
    const shm = new SharedMemory({ create: true, size: 4 });
    try {
      const p = new ctx.Process({ target: t.writeShm, args: [shm, [1, 2, 3, 4]] });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.deepEqual([...shm.buf], [1, 2, 3, 4]);
      const q = new ctx.Process({ target: t.bumpByName, args: [shm.name] });
      q.start();
      await q.join();
      assert.equal(q.exitcode, 0);
      assert.deepEqual([...shm.buf], [2, 3, 4, 5]);
    } finally {
      shm.close();
      shm.unlink();
    }
  });

  test('a child edits a ShareableList passed as an argument', async () => {
    const sl = new ShareableList([21, 'parent', 3.5]);
    try {
      const p = new ctx.Process({ target: t.editList, args: [{ list: sl }.list] });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.deepEqual(sl.toArray(), [42, 'child', null]);
    } finally {
      sl.shm.close();
      sl.shm.unlink();
    }
  });
});

describe('interop with Python multiprocessing.shared_memory', { skip: !hasPython && 'python3 not found' }, () => {
  afterEach(assertNoLeftovers);

  test('Node creates a SharedMemory; Python reads it and writes back', () => {
    const shm = new SharedMemory({ create: true, size: 16 });
    try {
      shm.buf.set([1, 2, 3, 4]);
      const out = python(`
shm = attach(${JSON.stringify(shm.name)})
print(list(shm.buf[:4]), shm.size)
shm.buf[4:8] = bytes([9, 8, 7, 6])
shm.close()`);
      assert.equal(out.trim(), '[1, 2, 3, 4] 16');
      assert.deepEqual([...shm.buf.subarray(0, 8)], [1, 2, 3, 4, 9, 8, 7, 6]);
    } finally {
      shm.close();
      shm.unlink();
    }
  });

  test('Python creates a SharedMemory; Node attaches, reads and writes back', () => {
    const name = freshName('py');
    python(`
shm = create(${JSON.stringify(name)}, 8)
shm.buf[:3] = b'abc'
shm.close()`);
    const shm = new SharedMemory({ name });
    try {
      assert.equal(shm.size, 8);
      assert.equal(Buffer.from(shm.buf.subarray(0, 3)).toString(), 'abc');
      shm.buf.set([120, 121], 3);
      assert.equal(python(`shm = attach(${JSON.stringify(name)}); print(bytes(shm.buf[:5]).decode()); shm.close()`).trim(), 'abcxy');
    } finally {
      shm.close();
      shm.unlink();
    }
  });

  test('ShareableList: Node creates, Python reads and edits; Python creates, Node reads', () => {
    const sl = new ShareableList(['héllo', new Uint8Array([0x61, 0]), 2.5, -7, null, false, 2n ** 60n]);
    try {
      const formatBefore = sl.format;
      const out = python(`
sl = attach_list(${JSON.stringify(sl.shm.name)})
print(repr(list(sl)))
print(sl.format)
sl[0] = 'py'
sl[3] = 1.25
sl[5] = None
sl.shm.close()`);
      const [items, format] = out.trim().split('\n');
      assert.equal(items, "['héllo', b'a', 2.5, -7, None, False, 1152921504606846976]");
      assert.equal(format, formatBefore);
      assert.deepEqual(sl.toArray(), ['py', new Uint8Array([0x61]), 2.5, 1.25, null, null, 2n ** 60n]);
    } finally {
      sl.shm.close();
      sl.shm.unlink();
    }
    const name = freshName('pyl');
    python(`
from multiprocessing.shared_memory import ShareableList
sl = ShareableList(['ab', b'\\x01', 1.5, 3, None, True, -2**63], name=${JSON.stringify(name)})
resource_tracker.unregister(sl.shm._name, "shared_memory")
sl.shm.close()`);
    const back = new ShareableList(null, { name });
    try {
      assert.deepEqual(back.toArray(), ['ab', new Uint8Array([1]), 1.5, 3, null, true, -(2n ** 63n)]);
      assert.equal(back.format, '8s8sdqxxxxxx?xxxxxxxx?q');
    } finally {
      back.shm.close();
      back.shm.unlink();
    }
  });
});

describe('SharedMemory and the resource tracker', () => {
  afterEach(assertNoLeftovers);

  test('a block whose creator is SIGKILLed without unlink() is unlinked by the tracker', async () => {
    const lib = path.join(__dirname, '..', 'src', 'memory', 'shared_memory.js');
    const script = `const { SharedMemory } = require(${JSON.stringify(lib)});
const shm = new SharedMemory({ create: true, size: 64 });
process.stdout.write(shm.name + '\\n', () => process.kill(process.pid, 'SIGKILL'));`;
    const r = await runNode(['-e', script]);
    assert.equal(r.signal, 'SIGKILL');
    const name = r.stdout.trim();
    assert.match(name, /^mp-/);
    // The tracker notices the closed pipe and unlinks; poll the filesystem for its effect.
    const file = path.join('/dev/shm', name);
    const deadline = Date.now() + 5000;
    while (fs.existsSync(file) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!fs.existsSync(file), `${name} is still in /dev/shm`);
  });
});
