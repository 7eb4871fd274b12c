// The Redis locks, semaphores and events against a real redis-server: the local objects' API,
// mutual exclusion across real processes, fencing tokens, and a holder SIGKILLed (its lock or
// units free after its lease, not before).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { Redis } from 'ioredis';

import { AbortError, BrokenBarrierError, Empty, getContext, ProcessError, TimeoutError } from '../src/index.js';
import { IDLE_CHANNELS } from '../src/redis/client.js';
import type { RedisContext } from '../src/index.js';
import { fixture, joinAll, killLeftoverChildren, METHODS, start, tmpDir } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

type Targets = typeof import('./fixtures/redis_objects.mjs');
let t: Targets;
let server: RedisServer;
const dir = tmpDir();
let files = 0;
const file = (name: string): string => path.join(dir, `${name}-${files++}`);

async function readWhenWritten(f: string): Promise<{ pid: number; token: number | null }> {
  // Another process writes it: polled.
  while (!(fs.existsSync(f) && fs.statSync(f).size > 0)) await new Promise((r) => setTimeout(r, 10));
  return JSON.parse(fs.readFileSync(f, 'utf8')) as { pid: number; token: number | null };
}

async function waitUntil(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 10));
}

const ctx = (leaseMs = 500): RedisContext => getContext('redis', { url: server.url, namespace: randomNamespace(), leaseMs });
const code = (c: string) => (e: unknown) => e instanceof ProcessError && e.code === c;

describe('Redis locks, semaphores and events', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_objects.mjs')).href)) as Targets;
    server = await RedisServer.start();
  });
  after(async () => {
    await killLeftoverChildren();
    await server.stop();
  });

  test('Lock: acquire, release, locked, block/timeout, fencing tokens, await using', async () => {
    const c = ctx();
    const a = c.Lock({ name: 'l' });
    const b = c.Lock({ name: 'l' });
    assert.equal(a.token, undefined);
    assert.equal(await a.acquire(), true);
    const first = a.token!;
    assert.equal(await a.locked(), true);
    assert.equal(await b.acquire({ block: false }), false);
    assert.equal(await b.acquire({ timeout: 50 }), false);
    const waiting = b.acquire(); // the same name is the same lock, in this process too
    await a.release();
    assert.equal(await waiting, true);
    assert.ok(b.token! > first, `token ${b.token} after ${first}`);
    await b.release();
    assert.equal(await a.locked(), false);
    await assert.rejects(a.release(), code('ERR_MP_RELEASED_TOO_MANY'));
    {
      await using _ = await a.guard();
      assert.equal(await b.acquire({ block: false }), false);
    }
    assert.equal(await a.withLock(() => 7), 7);
    assert.equal(await a.locked(), false);
    await a.acquire();
    await assert.rejects(b.guard({ timeout: 30 }), TimeoutError);
    const ac = new AbortController();
    const aborted = b.acquire({ signal: ac.signal });
    ac.abort();
    await assert.rejects(aborted, AbortError);
    await a.release();
  });

  test('RLock: its owner acquires it again and releases it as often', async () => {
    const r = ctx().RLock();
    await r.acquire();
    await r.acquire();
    await r.release();
    assert.equal(await r.locked(), true);
    await r.release();
    assert.equal(await r.locked(), false);
    await assert.rejects(r.release(), code('ERR_MP_RELEASED_TOO_MANY'));
  });

  for (const method of METHODS) {
    test(`[${method}] mutual exclusion across children: 2 x 50 increments of a file counter, none lost`, async () => {
      const lock = ctx(5000).Lock();
      const counter = file('counter');
      fs.writeFileSync(counter, '0');
      const local = getContext(method);
      await joinAll([
        start(local, t.countUnderLock, [lock as never, counter, 50]),
        start(local, t.countUnderLock, [lock as never, counter, 50]),
      ]);
      assert.equal(fs.readFileSync(counter, 'utf8'), '100');
    });
  }

  test('a lock holder SIGKILLed: the lock stays held while its lease runs, then the next acquire gets it with a higher token', async () => {
    const lock = ctx(400).Lock();
    const f = file('holder');
    const holder = start(getContext('spawn'), t.holdLock, [lock as never, f]);
    const { pid, token } = await readWhenWritten(f);
    assert.equal(await lock.acquire({ block: false }), false);
    process.kill(pid, 'SIGKILL');
    await holder.join();
    assert.equal(await lock.acquire({ timeout: 10_000 }), true);
    assert.ok(lock.token! > token!, `token ${lock.token} after the dead holder's ${token}`);
    await lock.release();
  });

  test('Semaphore and BoundedSemaphore: value, acquire, release, too many releases', async () => {
    const c = ctx();
    const s = c.Semaphore({ name: 's', value: 2 });
    assert.equal(await s.acquire(), true);
    assert.equal(await s.acquire(), true);
    assert.equal(await s.acquire({ block: false }), false);
    assert.equal(await s.getValue(), 0);
    const waiting = c.Semaphore({ name: 's' }).acquire();
    await s.release();
    assert.equal(await waiting, true);
    await s.release(2);
    assert.equal(await s.getValue(), 2);
    await s.release(); // unbounded: past its initial value
    assert.equal(await s.getValue(), 3);
    const b = c.BoundedSemaphore(1);
    await b.acquire();
    await b.release();
    await assert.rejects(b.release(), code('ERR_MP_RELEASED_TOO_MANY'));
  });

  test('a semaphore holder SIGKILLed: its unit comes back after its lease', async () => {
    const s = ctx(400).Semaphore(1);
    const f = file('sem');
    const holder = start(getContext('spawn'), t.holdLock, [s as never, f]);
    const { pid } = await readWhenWritten(f);
    assert.equal(await s.getValue(), 0);
    process.kill(pid, 'SIGKILL');
    await holder.join();
    assert.equal(await s.acquire({ timeout: 10_000 }), true);
    assert.equal(await s.getValue(), 0);
    await s.release();
    assert.equal(await s.getValue(), 1);
  });

  for (const method of METHODS) {
    test(`[${method}] Event: set in a child wakes a wait here; clear, isSet, timeout`, async () => {
      const c = ctx();
      const go = c.Event();
      const done = c.Event({ name: 'done' });
      assert.equal(await done.isSet(), false);
      assert.equal(await done.wait(30), false);
      const p = start(getContext(method), t.relay, [go as never, done as never]);
      await go.set();
      assert.equal(await done.wait(20_000), true);
      await joinAll([p]);
      assert.equal(await c.Event({ name: 'done' }).isSet(), true);
      await done.clear();
      assert.equal(await done.isSet(), false);
    });
  }

  test('Barrier: 3 children and this process pass together, with distinct indexes; timeout breaks it; reset repairs it', async () => {
    const c = ctx(5000);
    const b = c.Barrier(4);
    const f = file('bar');
    const local = getContext('spawn');
    const ps = [0, 1, 2].map(() => start(local, t.atBarrier, [b as never, f]));
    const mine = await b.wait();
    await joinAll(ps);
    const all = [mine, ...fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map(Number)];
    assert.deepEqual(
      all.sort((x, y) => x - y),
      [0, 1, 2, 3],
    );
    // Twice in a row: the rounds do not mix.
    const two = c.Barrier({ name: 'two', parties: 2 });
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all([two.wait(), c.Barrier({ name: 'two', parties: 2 }).wait()]);
      assert.deepEqual(
        got.sort((x, y) => x - y),
        [0, 1],
      );
    }
    const lone = c.Barrier(2);
    await assert.rejects(lone.wait(50), BrokenBarrierError);
    assert.equal(await lone.broken(), true);
    await assert.rejects(lone.wait(), BrokenBarrierError);
    await lone.reset();
    assert.equal(await lone.broken(), false);
    const waiting = lone.wait();
    await waitUntil(async () => (await lone.nWaiting()) === 1);
    await lone.abort();
    await assert.rejects(waiting, BrokenBarrierError);
    // An action that throws breaks the barrier for the others.
    const failing = c.Barrier(2, () => {
      throw new Error('action failed');
    });
    const other = failing.wait();
    await assert.rejects(failing.wait(), /action failed/);
    await assert.rejects(other, BrokenBarrierError);
  });

  for (const method of METHODS) {
    test(`[${method}] Condition: children wait, notify wakes one, notifyAll the rest; wait needs the lock; timeout`, async () => {
      const c = ctx(5000);
      const cond = c.Condition();
      const ready = c.Semaphore(0);
      const f = file('cond');
      const local = getContext(method);
      const ps = [0, 1, 2].map(() => start(local, t.waitOnCondition, [cond as never, ready as never, f]));
      // Each child released `ready` while holding the lock, just before wait() released it: once
      // this process holds the lock after 3 releases, all 3 wait.
      for (let i = 0; i < 3; i++) assert.equal(await ready.acquire({ timeout: 20_000 }), true);
      await cond.withLock(() => cond.notify());
      const woken = (): number => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0);
      while (woken() < 1) await new Promise((r) => setTimeout(r, 10));
      await cond.withLock(() => cond.notifyAll());
      await joinAll(ps);
      assert.equal(woken(), 3);
      await assert.rejects(cond.wait(10), code('ERR_MP_NOT_OWNER'));
      await assert.rejects(cond.notify(), code('ERR_MP_NOT_OWNER'));
      await cond.acquire();
      assert.equal(await cond.wait(30), false);
      assert.equal(await cond.lock.locked(), true);
      assert.equal(await cond.waitFor(() => 5), 5);
      await cond.release();
    });
  }

  test("wake-up subscriptions: close() drops an object's; waiting on 120 objects in turn keeps at most IDLE_CHANNELS; an evicted one wakes again", async () => {
    const c = ctx();
    const p = `mp:{${c.namespace}}:`;
    const redis = new Redis(server.url);
    let flushes = 0;
    // The channels this process has subscribed, as the server sees them. A wait on a fresh event
    // first: its SUBSCRIBE is answered after every earlier (UN)SUBSCRIBE of the connection.
    const subscribed = async (): Promise<string[]> => {
      const f = c.Event({ name: `flush${flushes++}` });
      assert.equal(await f.wait(1), false);
      f.close();
      return ((await redis.pubsub('CHANNELS', `${p}*`)) as string[]).filter((ch) => !ch.startsWith(`${p}ev:flush`)).sort();
    };
    try {
      const ev = c.Event({ name: 'one' });
      assert.equal(await ev.wait(1), false);
      assert.deepEqual(await subscribed(), [`${p}ev:one:wake`], 'kept while idle: the next wait costs no SUBSCRIBE');
      ev.close();
      assert.deepEqual(await subscribed(), []);
      await assert.rejects(ev.wait(1), code('ERR_MP_CLOSED'));
      await assert.rejects(ev.set(), code('ERR_MP_CLOSED'));

      for (let i = 0; i < 40; i++) {
        assert.equal(await c.Event({ name: `e${i}` }).wait(1), false);
        const l = c.Lock({ name: `l${i}` });
        await l.acquire();
        assert.equal(await c.Lock({ name: `l${i}` }).acquire({ timeout: 20 }), false); // long enough to wait: subscribes
        await l.release();
        await assert.rejects(c.Queue({ name: `q${i}` }).get({ timeout: 20 }), Empty);
      }
      const after120 = await subscribed();
      assert.ok(after120.length <= IDLE_CHANNELS, `${after120.length} channels subscribed after waiting on 120 objects`);
      assert.ok(!after120.includes(`${p}ev:e0:wake`), 'the oldest idle channels went first');

      const e0 = c.Event({ name: 'e0' });
      const waiting = e0.wait(10_000);
      await waitUntil(async () => ((await redis.pubsub('CHANNELS', `${p}ev:e0:wake`)) as string[]).length === 1);
      await c.Event({ name: 'e0' }).set();
      assert.equal(await waiting, true);

      const lock = c.Lock();
      const q = c.Queue();
      const cond = c.Condition(c.Lock());
      const bar = c.Barrier(2, null, 1);
      await lock.acquire();
      assert.equal(await c.Lock({ name: lock.name }).acquire({ timeout: 20 }), false);
      await lock.release();
      await assert.rejects(q.get({ timeout: 20 }), Empty);
      await cond.acquire();
      assert.equal(await cond.wait(1), false);
      await cond.release();
      await assert.rejects(bar.wait(), BrokenBarrierError);
      const mine = [`${p}lock:${lock.name}:wake`, `${p}q:${q.name}:wake`, `${p}cond:${cond.name}:wake`, `${p}bar:${bar.name}:wake`];
      for (const ch of mine) assert.ok((await subscribed()).includes(ch), ch);
      for (const o of [lock, q, cond, bar]) o.close();
      const left = await subscribed();
      for (const ch of mine) assert.ok(!left.includes(ch), `${ch} still subscribed after close()`);
      await assert.rejects(lock.acquire(), code('ERR_MP_CLOSED'));
      await assert.rejects(async () => q.get(), code('ERR_MP_CLOSED'));
      await assert.rejects(cond.notify(), code('ERR_MP_CLOSED'));
      await assert.rejects(bar.wait(), code('ERR_MP_CLOSED'));
    } finally {
      redis.disconnect();
    }
  });
});
