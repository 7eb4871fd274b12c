// Kill loops: a child process or thread looping on a lock or a queue, killed at random moments
// again and again; after each kill the parent must still be able to use what the child used. Each
// loop runs in a process of its own (test/fixtures/robust_targets.mts): what a SIGKILLed child
// held is only given back when that whole process tree is gone.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { writeLine } from '../src/shm/resource_tracker.js';
import { holderAlive, markThread } from '../src/shm/threads.js';
import { METHODS, runNode, runScenario, tmpDir } from './helpers.js';

const KILLS = 40;

for (const method of METHODS) {
  test(`[${method}] a Lock whose holder is killed at any moment of acquire()/release() is always recovered`, async () => {
    const r = await runScenario('robust_targets.mjs', ['lock', method, String(KILLS)], 120_000);
    assert.equal(r.kills, KILLS);
    assert.equal(r.stuck, 0, `${r.stuck} of ${KILLS} kills left the lock held for good`);
  });

  test(`[${method}] a bounded Queue whose consumer is killed at any moment keeps an exact qsize() and all its places`, async () => {
    const r = await runScenario('robust_targets.mjs', ['queue', method, String(KILLS)], 120_000);
    assert.deepEqual(r.seen, []);
    assert.deepEqual([r.kills, r.qsize, r.capacity, r.stuck], [KILLS, 0, 0, 0]);
  });

  test(`[${method}] JoinableQueue.join() returns after its consumers are killed at any moment`, async () => {
    const r = await runScenario('robust_targets.mjs', ['joinable-queue', method, String(KILLS)], 120_000);
    assert.deepEqual(r.seen, []);
    assert.deepEqual([r.kills, r.qsize, r.capacity, r.stuck, r.join], [KILLS, 0, 0, 0, 0]);
  });
}

test('a live worker thread is never taken for dead, however many threads started after it', () => {
  // Thread ids far above this process's own, so that its real threads are not disturbed.
  const first = 1_000_000;
  const alive = (threadId: number): boolean => holderAlive(process.pid, threadId + 1);
  markThread(first, true);
  assert.equal(alive(first), true);
  for (let id = first + 1; id < first + 5000; id++) markThread(id, true);
  for (const id of [first, first + 1, first + 4095, first + 4096, first + 4999]) assert.equal(alive(id), true, `thread ${id}`);
  for (let id = first + 1; id < first + 5000; id++) markThread(id, false);
  assert.equal(alive(first), true);
  assert.equal(alive(first + 4096), false);
  markThread(first, false);
  assert.equal(alive(first), false);
});

test('a line for a resource tracker that does not read waits for room without spinning, then gives up; a gone one is given up at once', async () => {
  // A stand-in for a stalled tracker: a child that never reads its stdin (a non-blocking pipe).
  const child = spawn('sleep', ['60'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  const fill = (chunk: Buffer): void => {
    for (;;) {
      try {
        fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return;
        throw err;
      }
    }
  };
  fill(Buffer.alloc(65536));
  fill(Buffer.alloc(1));
  const line = Buffer.from('REGISTER /mp-test-name\n');
  const cpu = process.cpuUsage();
  assert.equal(writeLine(fd, line, 300), 'stalled');
  const used = process.cpuUsage(cpu);
  // Waiting, not spinning: far less CPU than the wait took (a spin would use all of it).
  assert.ok(used.user + used.system < 150_000, `used ${used.user + used.system} µs of CPU while waiting 300 ms`);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  assert.equal(writeLine(fd, line, 300), 'gone');
  child.stdin.destroy();
});

test('a futex wait the kernel refuses (EFAULT) is ProcessError ERR_MP_FUTEX_FAILED, never an endless retry', async (t) => {
  // The refusal is injected into a child by an LD_PRELOAD shim, built here with the C compiler.
  const shim = path.join(tmpDir(), 'futex_fault.so');
  const source = path.join(__dirname, '..', '..', 'test', 'fixtures', 'futex_fault.c');
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', shim, source, '-ldl'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return t.skip(`no C compiler to build the shim: ${cc.error?.message ?? cc.stderr}`);
  const native = path.join(__dirname, '..', 'src', 'shm', 'native.js');
  const script = `
    const n = require(${JSON.stringify(native)});
    const c = new Int32Array(new SharedArrayBuffer(8));
    c[0] = 0x5eed1234;
    const seen = (e) => e.constructor.name + ' ' + e.code;
    let sync;
    try { sync = n.futexWait(c, 0, 0x5eed1234, 60000); } catch (e) { sync = seen(e); }
    n.futexWaitAsync(c, 0, 0x5eed1234, 60000).then(
      (o) => console.log(JSON.stringify({ sync, async: o })),
      (e) => console.log(JSON.stringify({ sync, async: seen(e) })),
    );`;
  const run = await runNode(['-e', script], { timeoutMs: 30_000, env: { ...process.env, LD_PRELOAD: shim } });
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { sync: 'ProcessError ERR_MP_FUTEX_FAILED', async: 'ProcessError ERR_MP_FUTEX_FAILED' });
});
