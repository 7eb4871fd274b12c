// Layer 1: the native addon, across real processes. Children are `test/fixtures/native_child.ts`
// (compiled next to this file) and talk over stdin/stdout lines; every wait for another process
// is a futex, a pipe or /proc, never a sleep.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Worker } from 'node:worker_threads';
import { AbortError, InvalidArgumentError, ProcessError } from '../src/errors.js';
import {
  closeSegment,
  futexWait,
  futexWaitAsync,
  futexWake,
  hasFutexWaitv,
  isSharedArrayBuffer,
  openSegment,
  unlinkSegment,
  waiterThreads,
} from '../src/shm/native.js';

const PREFIX = `mp-test-${process.pid}-`;
const CHILD = path.join(__dirname, 'fixtures', 'native_child.js');
let counter = 0;
const segName = (tag: string): string => `/${PREFIX}${tag}-${counter++}`;

/** Create a segment, run `body`, and always unlink the name and unmap. */
async function withSegment<T>(tag: string, size: number, body: (cells: Int32Array, name: string) => Promise<T> | T): Promise<T> {
  const name = segName(tag);
  const buf = openSegment(name, size, true);
  try {
    return await body(new Int32Array(buf), name);
  } finally {
    unlinkSegment(name);
    closeSegment(buf);
  }
}

interface Child {
  proc: ChildProcess;
  send(line: string): Promise<unknown>;
  next(): Promise<unknown>;
  exited: Promise<number | null>;
}

function startChild(mode: string, name: string): Child {
  const proc = spawn(process.execPath, [CHILD, mode, name], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: unknown[] = [];
  const waiting: ((v: unknown) => void)[] = [];
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    const value = JSON.parse(line) as unknown;
    const w = waiting.shift();
    if (w) w(value);
    else lines.push(value);
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const next = (): Promise<unknown> =>
    lines.length > 0 ? Promise.resolve(lines.shift()) : new Promise((resolve) => waiting.push(resolve));
  return {
    proc,
    next,
    exited,
    send(line: string) {
      proc.stdin.write(`${line}\n`);
      return next();
    },
  };
}

async function stopChild(c: Child): Promise<void> {
  c.proc.stdin!.end('exit\n');
  assert.equal(await c.exited, 0);
}

/**
 * Resolves once `n` of this process's waiter threads sit in the kernel's futex_waitv (syscall 449
 * on x86_64), read from /proc: the moment a wake can only be delivered, not raced.
 */
async function untilParked(n: number): Promise<void> {
  if (!hasFutexWaitv() || process.arch !== 'x64') {
    // Without futex_waitv the threads are not distinguishable this way; give them a moment.
    await new Promise((r) => setTimeout(r, 50));
    return;
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    let parked = 0;
    for (const tid of fs.readdirSync('/proc/self/task')) {
      try {
        if (fs.readFileSync(`/proc/self/task/${tid}/syscall`, 'utf8').startsWith('449 ')) parked++;
      } catch {
        // the thread exited meanwhile
      }
    }
    if (parked >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${parked} of ${n} waits parked`);
    await new Promise((r) => setImmediate(r));
  }
}

function mappedRegions(name: string): number {
  const needle = `/dev/shm${name}`;
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(needle)).length;
}

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

test('a segment opened twice is the same memory, typed as reported', () => {
  const name = segName('basic');
  const a = openSegment(name, 4096, true);
  try {
    const b = openSegment(name.slice(1), 0, false); // the leading '/' is optional
    assert.equal(a.byteLength, 4096);
    assert.equal(b.byteLength, 4096);
    const expected = isSharedArrayBuffer() ? '[object SharedArrayBuffer]' : '[object ArrayBuffer]';
    assert.equal(Object.prototype.toString.call(a), expected);
    const ia = new Int32Array(a);
    const ib = new Int32Array(b);
    assert.equal(ia[5], 0, 'new segments are zeroed');
    Atomics.store(ia, 5, 1234);
    assert.equal(Atomics.load(ib, 5), 1234);
    assert.equal(Atomics.add(ib, 5, 1), 1234);
    assert.equal(ia[5], 1235);
    assert.equal(closeSegment(b), !isSharedArrayBuffer());
    if (!isSharedArrayBuffer()) assert.equal(b.byteLength, 0, 'closed ArrayBuffers are detached');
    assert.equal(Atomics.load(ia, 5), 1235, 'closing one mapping leaves the other');
  } finally {
    unlinkSegment(name);
    closeSegment(a);
  }
});

test('errors are typed and say what went wrong', async () => {
  const missing = segName('missing');
  assert.throws(
    () => openSegment(missing, 0, false),
    (e: ProcessError) => {
      assert.ok(e instanceof ProcessError);
      assert.equal(e.code, 'ENOENT');
      assert.match(e.message, /does not exist/);
      assert.ok(e.message.includes(missing));
      return true;
    },
  );
  assert.throws(() => unlinkSegment(missing), { code: 'ENOENT' });

  await withSegment('exists', 64, (cells, name) => {
    assert.throws(
      () => openSegment(name, 64, true),
      (e: ProcessError) => {
        assert.ok(e instanceof ProcessError);
        assert.equal(e.code, 'EEXIST');
        assert.match(e.message, /already exists/);
        return true;
      },
    );
    assert.throws(() => openSegment(name, 1 << 20, false), { code: 'ERR_MP_SEGMENT_SIZE' });

    const invalid = (fn: () => unknown, re: RegExp): void =>
      assert.throws(fn, (e: InvalidArgumentError) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.ok(e instanceof TypeError);
        assert.equal(e.code, 'ERR_MP_INVALID_ARG');
        assert.match(e.message, re);
        return true;
      });
    invalid(() => openSegment('', 10, true), /empty/);
    invalid(() => openSegment('/', 10, true), /empty/);
    invalid(() => openSegment('/a/b', 10, true), /'\/'/);
    invalid(() => openSegment(`/${'x'.repeat(300)}`, 10, true), /long/);
    invalid(() => openSegment(42 as unknown as string, 10, true), /string/);
    invalid(() => openSegment(segName('bad'), 0, true), /size/);
    invalid(() => openSegment(segName('bad'), -1, true), /size/);
    invalid(() => openSegment(segName('bad'), 1.5, true), /size/);
    invalid(() => openSegment(segName('bad'), NaN, true), /size/);
    invalid(() => openSegment(segName('bad'), '8' as unknown as number, true), /size/);
    invalid(() => futexWait(new Float64Array(4) as unknown as Int32Array, 0, 0, 0), /Int32Array/);
    invalid(() => futexWake([0] as unknown as Int32Array, 0, 1), /Int32Array/);
    invalid(() => futexWait(cells, 16, 0, 0), /out of range/);
    invalid(() => futexWait(cells, -1, 0, 0), /out of range/);
    invalid(() => futexWait(cells, 0.5, 0, 0), /out of range/);
    invalid(() => futexWait(cells, 0, 0, NaN), /NaN/);
    invalid(() => futexWake(cells, 0, -1), /count/);
    return Promise.all([
      assert.rejects(futexWaitAsync(cells, 99, 0), InvalidArgumentError),
      assert.rejects(futexWaitAsync(new Uint32Array(4) as unknown as Int32Array, 0, 0), InvalidArgumentError),
    ]);
  });
});

test('futexWait: value checks, and a timeout returns within a few ms of it', async (t) => {
  await withSegment('timeout', 64, (cells) => {
    Atomics.store(cells, 0, 7);
    assert.equal(futexWait(cells, 0, 6, 1000), 'not-equal');
    assert.equal(futexWait(cells, 0, 7, 0), 'timed-out');
    assert.equal(futexWait(cells, 0, 7, -5), 'timed-out');
    assert.equal(futexWake(cells, 0), 0, 'nobody waits');
    const late: number[] = [];
    for (const ms of [20, 50, 100]) {
      const t0 = performance.now();
      assert.equal(futexWait(cells, 0, 7, ms), 'timed-out');
      const took = performance.now() - t0;
      assert.ok(took >= ms - 0.5, `returned early: ${took} < ${ms}`);
      // Late only by what the scheduler adds (generous: the machine may be busy).
      assert.ok(took < ms + 2000, `returned late: ${took} for ${ms}`);
      late.push(took - ms);
    }
    t.diagnostic(`futexWait timeout overshoot (ms): ${late.map((x) => x.toFixed(2)).join(', ')}`);
  });
});

test('2 processes x 1e6 Atomics.add end exact', { timeout: 60_000 }, async (t) => {
  await withSegment('add', 64, async (cells, name) => {
    const [a, b] = [startChild('serve', name), startChild('serve', name)];
    const N = 1_000_000;
    const replies = [a.send(`add 0 ${N} 1 2`), b.send(`add 0 ${N} 1 2`)];
    // Both children are at the barrier once cell 1 reaches 2; wait for it on the futex.
    let ready: number;
    while ((ready = Atomics.load(cells, 1)) < 2) await futexWaitAsync(cells, 1, ready, 10_000);
    const t0 = performance.now();
    Atomics.store(cells, 2, 1);
    futexWake(cells, 2);
    const ms = (await Promise.all(replies)) as number[];
    const wall = performance.now() - t0;
    assert.equal(Atomics.load(cells, 0), 2 * N);
    t.diagnostic(
      `2 x 1e6 Atomics.add across processes: ${wall.toFixed(0)} ms wall (children ${ms.map((x) => x.toFixed(0)).join(' / ')} ms)`,
    );
    await Promise.all([stopChild(a), stopChild(b)]);
  });
});

test('futexWaitAsync is woken by another process', async () => {
  await withSegment('xwake', 64, async (cells, name) => {
    const c = startChild('serve', name);
    // A wake that changes nothing: only a real cross-process futex wake can settle this 'ok'.
    const p = futexWaitAsync(cells, 3, 0, 10_000);
    await untilParked(1);
    assert.equal(await c.send('wake 3 1'), 1);
    assert.equal(await p, 'ok');
    // The usual pattern: change the value, then wake.
    const q = futexWaitAsync(cells, 4, 0);
    await untilParked(1);
    assert.equal(await c.send('storewake 4 1 1'), 1);
    assert.equal(await q, 'ok');
    assert.equal(await futexWaitAsync(cells, 4, 0), 'not-equal');
    assert.equal(await futexWaitAsync(cells, 4, 1, 0), 'timed-out');
    const t0 = performance.now();
    assert.equal(await futexWaitAsync(cells, 4, 1, 30), 'timed-out');
    assert.ok(performance.now() - t0 >= 29.5);
    await stopChild(c);
  });
});

test('100 concurrent async waits are all woken', { timeout: 30_000 }, async () => {
  await withSegment('many', 4096, async (cells, name) => {
    const c = startChild('serve', name);
    // 100 waits on 100 cells, each woken by its own wake, in an order unrelated to the waits.
    const distinct = Array.from({ length: 100 }, (_, i) => futexWaitAsync(cells, 10 + i, 0));
    await untilParked(100);
    assert.ok(waiterThreads().total >= 100);
    for (let i = 99; i >= 0; i--) assert.equal(await c.send(`wake ${10 + ((i * 37) % 100)} 1`), 1);
    assert.deepEqual(await Promise.all(distinct), Array(100).fill('ok'));

    // 100 waits on one cell: one wake-all reaches exactly all of them.
    const same = Array.from({ length: 100 }, () => futexWaitAsync(cells, 1, 0));
    await untilParked(100);
    assert.equal(await c.send('wake 1 2147483647'), 100);
    assert.deepEqual(await Promise.all(same), Array(100).fill('ok'));
    const threads = waiterThreads();
    assert.ok(threads.total <= 200, `threads are reused: ${threads.total}`);
    await stopChild(c);
  });
});

test('parked async waits leave the event loop, fs and the libuv pool free', { timeout: 30_000 }, async (t) => {
  await withSegment('free', 64, async (cells) => {
    // 8 waits with no timeout: on the libuv pool (4 threads) they would starve fs and crypto forever.
    const parked = Array.from({ length: 8 }, () => futexWaitAsync(cells, 0, 0));
    await untilParked(8);
    const t0 = performance.now();
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const iv = setInterval(() => {
        if (++ticks === 10) {
          clearInterval(iv);
          resolve();
        }
      }, 2);
    });
    const tickMs = performance.now() - t0;
    const t1 = performance.now();
    const [file, ...keys] = await Promise.all([
      fs.promises.readFile(__filename),
      ...Array.from(
        { length: 4 },
        () =>
          new Promise<Buffer>((resolve, reject) => crypto.pbkdf2('pw', 'salt', 1000, 32, 'sha256', (e, k) => (e ? reject(e) : resolve(k)))),
      ),
    ]);
    const poolMs = performance.now() - t1;
    assert.ok(file.length > 0 && keys.length === 4);
    assert.ok(tickMs < 2000, `10 interval ticks took ${tickMs} ms`);
    assert.ok(poolMs < 2000, `fs + 4 x pbkdf2 took ${poolMs} ms`);
    t.diagnostic(`with 8 parked waits: 10 x 2 ms ticks in ${tickMs.toFixed(1)} ms; fs + 4 pbkdf2 in ${poolMs.toFixed(1)} ms`);
    Atomics.store(cells, 0, 1);
    assert.equal(futexWake(cells, 0), 8);
    assert.deepEqual(await Promise.all(parked), Array(8).fill('ok'));
  });
});

test('cross-process round trips, blocking and async: every wake is answered once (and the figures)', { timeout: 60_000 }, async (t) => {
  await withSegment('pingpong', 64, async (cells, name) => {
    const c = startChild('serve', name);
    const rounds = async (n: number, wait: () => Promise<void> | void): Promise<number> => {
      c.proc.stdin!.write(`pong 0 ${n}\n`);
      assert.equal(await c.next(), 'ready');
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        Atomics.store(cells, 0, 1);
        futexWake(cells, 0, 1);
        await wait();
      }
      const us = ((performance.now() - t0) * 1000) / n;
      await c.next();
      return us;
    };
    const sync = await rounds(5000, () => {
      while (Atomics.load(cells, 0) === 1) futexWait(cells, 0, 1);
    });
    const async_ = await rounds(2000, async () => {
      while (Atomics.load(cells, 0) === 1) await futexWaitAsync(cells, 0, 1);
    });
    t.diagnostic(`round trip to another process: blocking ${sync.toFixed(1)} us, async ${async_.toFixed(1)} us`);
    assert.equal(Atomics.load(cells, 1), 5000 + 2000);
    assert.equal(Atomics.load(cells, 0), 0);
    await stopChild(c);
  });
});

test('aborting a parked async wait rejects with AbortError and frees its thread', async () => {
  await withSegment('abort', 64, async (cells) => {
    const before = waiterThreads();
    const ac = new AbortController();
    const p = futexWaitAsync(cells, 0, 0, undefined, ac.signal);
    await untilParked(1);
    const reason = new Error('stop');
    ac.abort(reason);
    await assert.rejects(p, (e: AbortError) => {
      assert.ok(e instanceof AbortError);
      assert.equal(e.code, 'ABORT_ERR');
      assert.equal(e.cause, reason);
      return true;
    });
    await assert.rejects(futexWaitAsync(cells, 0, 0, undefined, ac.signal), AbortError);
    const after = waiterThreads();
    assert.equal(after.total - after.idle, before.total - before.idle, 'no thread stays busy');
    // A signal that never fires changes nothing.
    const quiet = new AbortController();
    assert.equal(await futexWaitAsync(cells, 0, 0, 5, quiet.signal), 'timed-out');
  });
});

test('a process whose async waits have settled exits on its own', { timeout: 30_000 }, async () => {
  await withSegment('lifetime', 64, async (_cells, name) => {
    const c = startChild('lifetime', name);
    c.proc.stdin!.end();
    const result = (await c.next()) as { outcomes: string[]; woken: string; aborted: string };
    assert.deepEqual(result.outcomes, ['timed-out', 'timed-out', 'timed-out']);
    assert.ok(['ok', 'not-equal'].includes(result.woken), result.woken);
    assert.equal(result.aborted, 'AbortError');
    const t0 = performance.now();
    assert.equal(await c.exited, 0);
    assert.ok(performance.now() - t0 < 5000);
  });
});

test('a worker thread can exit while its async wait is parked', { timeout: 30_000 }, async () => {
  await withSegment('worker', 64, async (cells, name) => {
    const nativePath = path.join(__dirname, '..', 'src', 'shm', 'native.js');
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const n = require(workerData.nativePath);
       const cells = new Int32Array(n.openSegment(workerData.name, 0, false));
       n.futexWaitAsync(cells, 0, 0).then((r) => parentPort.postMessage('settled ' + r));
       parentPort.postMessage('parking');`,
      { eval: true, workerData: { nativePath, name } },
    );
    const first = await new Promise((resolve) => worker.once('message', resolve));
    assert.equal(first, 'parking');
    await untilParked(1);
    assert.equal(await worker.terminate(), 1);
    // The cancelled wait gave its thread back, and the main thread's waits still work.
    const p = futexWaitAsync(cells, 0, 0, 10_000);
    await untilParked(1);
    Atomics.store(cells, 0, 1);
    assert.equal(futexWake(cells, 0), 1);
    assert.equal(await p, 'ok');
  });
});

// A plain function, not inline in the async test: an async function's suspended frame may keep
// the last buffer of a loop alive until it returns, which would look like a leak.
function cycles(name: string): void {
  for (let i = 0; i < 10_000; i++) {
    const buf = openSegment(name, 4096, false);
    new Int32Array(buf)[1] = i;
    closeSegment(buf);
  }
  for (let i = 0; i < 1000; i++) {
    const other = segName('cycle');
    const buf = openSegment(other, 65536, true);
    unlinkSegment(other);
    closeSegment(buf);
  }
}

test('10 000 open/close cycles leave no mapping behind', { timeout: 60_000 }, async (t) => {
  await withSegment('cycles', 4096, async (_cells, name) => {
    const baseline = mappedRegions(name);
    assert.equal(baseline, 1);
    const rssBefore = process.memoryUsage().rss;
    const t0 = performance.now();
    cycles(name);
    const ms = performance.now() - t0;
    // Finalizers run on the event loop after the buffers are released (and, for a
    // SharedArrayBuffer, collected): let them.
    let regions = mappedRegions(name);
    for (let i = 0; i < 200 && regions !== baseline; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
      regions = mappedRegions(name);
    }
    assert.equal(regions, baseline);
    const growth = (process.memoryUsage().rss - rssBefore) / 1048576;
    t.diagnostic(
      `10 000 open/close + 1 000 create/unlink/close: ${ms.toFixed(0)} ms; mappings back to ${regions}; rss +${growth.toFixed(1)} MiB`,
    );
  });
});

test('every segment made by these tests is unlinked', () => {
  const left = fs.readdirSync('/dev/shm').filter((f) => f.startsWith(PREFIX));
  assert.deepEqual(left, []);
});
