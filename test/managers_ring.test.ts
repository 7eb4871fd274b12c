// Manager connections over shared-memory rings: a client on the server's machine moves its calls
// to a pipe after the socket's handshake. The same results as over the socket, across processes
// and worker threads; clients and servers that die; upgrade requests that do not name a pipe.
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { currentProcess, Process, ProcessError } from '../src/index.js';
import { offerPipe } from '../src/ipc/offered_pipe.js';
import { Manager, type SyncManager } from '../src/managers/managers.js';
import { transportOf } from '../src/managers/proxy.js';
import { emulated } from '../src/shm/native.js';
import { KIND, Segment } from '../src/shm/segment.js';
import { assertNoLeftovers, describeBackends, fixture, RawPeer, readJson, runScenario, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/manager_ring_targets.mjs');
let t: Targets;
const dir = tmpDir();
let seq = 0;
const out = (): string => `${dir}/out-${++seq}.json`;
const json = (v: unknown): Buffer => Buffer.from(`J${JSON.stringify(v)}`);

before(async () => {
  t = (await import(pathToFileURL(fixture('manager_ring_targets.mjs')).href)) as Targets;
});

// Run `body` with the upgrade on (the default) or turned off, for the children started meanwhile.
async function withRings<T>(on: boolean, body: () => Promise<T>): Promise<T> {
  if (on) return body();
  process.env.MULTIPROC_MANAGER_RINGS = '0';
  try {
    return await body();
  } finally {
    delete process.env.MULTIPROC_MANAGER_RINGS;
  }
}

describeBackends('manager calls over rings', (ctx) => {
  test('a child gets the same results over the ring as over the socket', async () => {
    const results: Record<string, unknown>[] = [];
    for (const on of [true, false]) {
      await using m = await Manager();
      const d = await m.dict();
      const lst = await m.list();
      const lock = await m.Lock();
      const file = out();
      await withRings(on, async () => {
        const p = new ctx.Process({ target: t.workout, args: [d, lst, lock, file] });
        p.start();
        await p.join();
        assert.equal(p.exitcode, 0);
      });
      results.push(readJson(file) as Record<string, unknown>);
    }
    const [ring, socket] = results as [Record<string, unknown>, Record<string, unknown>];
    assert.equal(ring.transport, 'ring');
    assert.equal(socket.transport, 'socket');
    assert.deepEqual({ ...ring, transport: undefined }, { ...socket, transport: undefined });
    assert.deepEqual(ring.error, { cls: 'KeyError', message: "'missing'" });
    assert.deepEqual(ring.list, [3, 4, new Date(0).toISOString()]);
    assert.equal(ring.locked, true);
    assert.equal(ring.again, false);
  });

  test('three clients at once, with messages longer than a ring among small ones: every call answered, in order', async () => {
    await using m = await Manager();
    const d = await m.dict({ count: 0 });
    const lock = await m.Lock();
    const n = 100;
    const files = [0, 1, 2].map(() => out());
    const ps = files.map((file, i) => new ctx.Process({ target: t.crowd, args: [d, lock, i, n, file] }));
    for (const p of ps) p.start();
    for (const p of ps) {
      await p.join();
      assert.equal(p.exitcode, 0);
    }
    assert.equal(await d.get('count'), 3 * n);
    for (const file of files) assert.deepEqual(readJson(file), { transport: emulated() ? 'socket' : 'ring', bigOk: n / 25 });
  });

  test('a Condition: wait in a child, notify from here', async () => {
    await using m = await Manager();
    const cond = await m.Condition();
    const waiting = await m.Event();
    const file = out();
    const p = new ctx.Process({ target: t.condWaiter, args: [cond, waiting, file] });
    p.start();
    assert.equal(await waiting.wait(60_000), true);
    // Granted once the child's wait gave the lock back.
    await cond.acquire();
    await cond.notify();
    await cond.release();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.deepEqual(readJson(file), { notified: true, transport: 'ring' });
    assert.equal(transportOf(cond), 'ring');
  });
});

describe('clients and servers that go', () => {
  afterEach(assertNoLeftovers);

  test('a client killed in the middle of calls: the server serves the others and cancels its wait for the lock', async () => {
    await using m = await Manager();
    const lock = await m.Lock();
    const d = await m.dict<string, number>();
    const started = await m.Event();
    assert.equal(await lock.acquire(), true);
    const p = new Process({ target: t.waitForLock, args: [lock, d, started] });
    p.start();
    assert.equal(await started.wait(60_000), true);
    p.kill();
    await p.join();
    assert.notEqual(p.exitcode, 0);
    // The killed child's queued acquire was dropped: the lock is not handed to it.
    await lock.release();
    assert.equal(await lock.acquire({ block: false }), true);
    await lock.release();
    await d.set('n', -1);
    assert.equal(await d.get('n'), -1);
    assert.equal(transportOf(d), 'ring');
  });

  test('a client killed holding a Lock: a waiter here takes it over (the lock is in shared memory)', { skip: emulated() }, async () => {
    await using m = await Manager();
    const lock = await m.Lock();
    const started = await m.Event();
    const p = new Process({ target: t.holdUntilKilled, args: [lock, started] });
    p.start();
    assert.equal(await started.wait(60_000), true);
    assert.equal(await lock.acquire({ block: false }), false);
    const waiting = lock.acquire({ timeout: 30_000 });
    p.kill();
    await p.join();
    assert.equal(await waiting, true, 'taken over from the dead holder');
    await lock.release();
    assert.equal(transportOf(lock), 'ring');
  });

  test('the server killed: a pending call rejects with the connection error', async () => {
    const m = await Manager();
    try {
      const lock = await m.Lock();
      assert.equal(await lock.acquire(), true);
      assert.equal(transportOf(lock), 'ring');
      // A Lock is not reentrant: this waits until the server is gone.
      const waiting = lock.acquire();
      m.process!.kill();
      await assert.rejects(waiting, (e: Error) => e instanceof ProcessError && e.code === 'ERR_MP_MANAGER_CONNECTION');
    } finally {
      await m.shutdown();
    }
  });

  test('a process that ends holding proxies exits, leaving no segment', async () => {
    await using m = await Manager();
    const key = Buffer.from(currentProcess().authkey).toString('hex');
    const r = await runScenario('manager_ring_client.mjs', [m.address as string, key]);
    assert.deepEqual(r, { value: 99, transport: 'ring' });
  });
});

describe('upgrade requests that name no pipe of the client', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager({ maxMessage: 64 * 1024 });
  });
  after(async () => {
    await m.shutdown();
    await assertNoLeftovers();
  });

  // The server drops the connection that sent `request` and keeps serving the others.
  async function dropped(request: unknown[]): Promise<void> {
    const peer = await RawPeer.connect(m.address as string, currentProcess().authkey);
    await peer.sendFrame(json(request));
    await peer.closed;
    const d = await m.dict<string, number>();
    await d.set('still', 1);
    assert.equal(await d.get('still'), 1);
  }

  // A raw client whose upgrade to `offer`'s pipe the server took (request id 1).
  async function upgraded(offer: ReturnType<typeof offerPipe>): Promise<RawPeer> {
    const peer = await RawPeer.connect(m.address as string, currentProcess().authkey);
    await peer.sendFrame(json([1, 'ring', offer.name]));
    assert.deepEqual(JSON.parse((await peer.recvFrame()).toString('utf8', 1)), [1, 0, true]);
    offer.settle(true);
    return peer;
  }

  test('a random name, a name that is not a segment name, the wrong type', async () => {
    await dropped([1, 'ring', `/mp-zz-1-${crypto.randomBytes(4).toString('hex')}#1`]);
    await dropped([1, 'ring', '/../../etc/passwd']);
    await dropped([1, 'ring', 42]);
    await dropped([0, 'ring', '/mp-zz-1-00000000#1']);
  });

  test('a segment of another kind, or a pipe segment of the wrong size', { skip: emulated() }, async () => {
    for (const [bytes, kind] of [
      [8 << 20, KIND.Queue],
      [4096 * 4, KIND.Pipe],
    ] as const) {
      const seg = Segment.create(bytes, kind);
      try {
        await dropped([1, 'ring', seg.retainForSend()]);
      } finally {
        seg.close();
      }
    }
  });

  test('a second upgrade on the same connection', { skip: emulated() }, async () => {
    const offer = offerPipe(1 << 20);
    try {
      const peer = await upgraded(offer);
      await peer.sendFrame(json([2, 'ring', offer.name]));
      await peer.closed;
    } finally {
      offer.settle();
      offer.end.close();
    }
  });

  test('a message over maxMessage on the ring drops the connection before it is buffered', { skip: emulated() }, async () => {
    const offer = offerPipe(1 << 20);
    try {
      const peer = await upgraded(offer);
      // A ping on the ring is answered on the ring.
      await offer.end.sendBytes(json([2, 'ping']));
      assert.deepEqual(JSON.parse((await offer.end.recvBytes()).toString('utf8', 1)), [2, 0, 'pong']);
      await offer.end.sendBytes(Buffer.alloc(100 * 1024, 0x4a));
      await peer.closed;
      await assert.rejects(offer.end.recvBytes(), /EOF|closed/i);
      const d = await m.dict<string, number>();
      await d.set('after', 2);
      assert.equal(await d.get('after'), 2);
    } finally {
      offer.settle();
      offer.end.close();
    }
  });
});
