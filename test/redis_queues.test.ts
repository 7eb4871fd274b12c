// The Redis queues against a real redis-server: the local queues' API (FIFO, values through the
// library's serializer, Empty/Full, timeouts, bounded puts that wait, JoinableQueue.join), found
// by name and passed to children and pool workers, producers and consumers in real processes,
// and a consumer SIGKILLed while it holds items (none lost, duplicates counted).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { AbortError, Empty, Full, getContext, InvalidArgumentError, ProcessError, UntrustedMessageError } from '../src/index.js';
import type { RedisContext } from '../src/index.js';
import { fixture, joinAll, killLeftoverChildren, METHODS, start, tmpDir, waitGone } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

type Targets = typeof import('./fixtures/redis_objects.mjs');
let t: Targets;
let server: RedisServer;
const dir = tmpDir();
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
let files = 0;
const file = (name: string): string => path.join(dir, `${name}-${files++}`);

function lines(f: string): number[] {
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map(Number) : [];
}

/** Poll until `cond()` holds: the other side is another process writing files. */
async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ctx = (o: { leaseMs?: number; trust?: 'all' | string[] } = {}): RedisContext =>
  getContext('redis', { url: server.url, namespace: randomNamespace(), leaseMs: 500, ...o });

describe('Redis queues', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_objects.mjs')).href)) as Targets;
    server = await RedisServer.start();
  });
  after(async () => {
    await killLeftoverChildren();
    await server.stop();
  });

  test('FIFO; values cross through the serializer as locally', async () => {
    const q = ctx().Queue();
    const values = [1, 'two', { a: [1, 2] }, new Map([[1, new Set([2])]]), new Date(5), Buffer.from('hi'), undefined, null, 2n];
    for (const v of values) await q.put(v);
    assert.equal(await q.qsize(), values.length);
    const got: unknown[] = [];
    for (let i = 0; i < values.length; i++) got.push(await q.get());
    assert.deepEqual(got.slice(0, 5), values.slice(0, 5));
    assert.ok(Buffer.from(got[5] as Uint8Array).equals(values[5] as Buffer));
    assert.deepEqual(got.slice(6), values.slice(6));
    const err = new RangeError('boom');
    await q.put(err);
    const back = await q.get();
    assert.ok(back instanceof RangeError && back.message === 'boom');
    assert.equal(await q.empty(), true);
  });

  test('Empty, Full, timeouts, a bounded put that waits for a get, signal', async () => {
    const c = ctx();
    const q = c.Queue<number>({ maxsize: 2 });
    await assert.rejects(q.getNowait(), Empty);
    await assert.rejects(q.get({ timeout: 50 }), Empty);
    await q.put(1);
    await q.putNowait(2);
    assert.equal(await q.full(), true);
    await assert.rejects(q.putNowait(3), Full);
    await assert.rejects(q.put(3, { timeout: 50 }), Full);
    const waiting = q.put(3); // resolves once a get makes room
    assert.equal(await q.get(), 1);
    await waiting;
    assert.deepEqual([await q.get(), await q.get()], [2, 3]);
    const ac = new AbortController();
    const g = q.get({ signal: ac.signal });
    ac.abort();
    await assert.rejects(g, AbortError);
    // A get blocked on an empty queue is woken by a put from another handle.
    const other = c.Queue<number>({ name: q.name });
    const blocked = q.get({ timeout: 10_000 });
    await other.put(42);
    assert.equal(await blocked, 42);
    q.close();
    assert.throws(
      () => q.put(1),
      (e: unknown) => e instanceof ProcessError && e.code === 'ERR_MP_CLOSED',
    );
    assert.throws(() => c.Queue({ name: 'a:b' }), InvalidArgumentError);
    assert.throws(() => c.Queue({ maxsize: 1.5 }), InvalidArgumentError);
  });

  test('by default an item naming a class is refused; trust lets it in', async () => {
    const namespace = randomNamespace();
    const url = server.url;
    const sender = getContext('redis', { url, namespace, trust: 'all' }).Queue({ name: 'x' });
    const { TaskFailed } = (await import(pathToFileURL(fixture('redis_tasks.mjs')).href)) as typeof import('./fixtures/redis_tasks.mjs');
    await sender.put({ fn: t.produce });
    await assert.rejects(getContext('redis', { url, namespace }).Queue({ name: 'x' }).get(), UntrustedMessageError);
    await sender.put(new TaskFailed(3));
    const trusting = getContext('redis', { url, namespace, trust: [fixture('redis_tasks.mjs')] }).Queue({ name: 'x' });
    const e = await trusting.get();
    assert.ok(e instanceof TaskFailed && e.item === 3);
  });

  test('JoinableQueue: join waits for every taskDone; too many taskDone throws', async () => {
    const q = ctx().JoinableQueue<number>();
    await q.put(1);
    await q.put(2);
    assert.equal(await q.join(30), false);
    await q.get();
    await q.taskDone();
    assert.equal(await q.join(30), false);
    const joined = q.join();
    await q.get();
    await q.taskDone();
    assert.equal(await joined, true);
    await assert.rejects(q.taskDone(), (e: unknown) => e instanceof ProcessError && e.code === 'ERR_MP_TASK_DONE');
  });

  for (const method of METHODS) {
    test(`[${method}] a queue passed to children, and one opened by name in a child, is the same queue`, async () => {
      const c = ctx();
      const q = c.Queue<number | string>({ name: 'shared' });
      const local = getContext(method);
      const p1 = start(local, t.produce, [q as never, 0, 3]);
      const p2 = start(local, t.putByName, [c.url, c.namespace, 'shared', ['a', 'b']]);
      await joinAll([p1, p2]);
      const got: (number | string)[] = [];
      for (let i = 0; i < 5; i++) got.push(await q.get());
      assert.deepEqual(
        got.sort((a, b) => String(a).localeCompare(String(b))),
        [0, 1, 2, 'a', 'b'],
      );
      // As a task argument of a local pool.
      await using pool = local.Pool(1);
      await pool.apply(t.produce, [q as never, 10, 2]);
      assert.deepEqual([await q.get(), await q.get()], [10, 11]);
    });
  }

  test('2 producers and 2 consumers in child processes: 5 000 items, each once', async () => {
    const q = ctx({ leaseMs: 5000 }).Queue<number | null>();
    const local = getContext('spawn');
    const outs = [file('c'), file('c')];
    const consumers = outs.map((f) => start(local, t.consume, [q as never, f]));
    const producers = [start(local, t.produce, [q as never, 0, 2500]), start(local, t.produce, [q as never, 2500, 2500])];
    await joinAll(producers);
    await q.put(null);
    await q.put(null);
    await joinAll(consumers);
    const got = outs.flatMap(lines);
    assert.equal(got.length, 5000);
    assert.deepEqual(
      got.sort((a, b) => a - b),
      range(5000),
    );
  });

  test('a consumer SIGKILLed with gets in flight: no item lost (duplicates counted)', async () => {
    const q = ctx().Queue<number | null>();
    for (let i = 0; i < 2000; i++) void q.put(i);
    await q.put(-1);
    const local = getContext('spawn');
    const [victimOut, survivorOut, pidFile] = [file('v'), file('s'), file('pid')];
    const victim = start(local, t.consume, [q as never, victimOut, 16, pidFile, 200]);
    await until(() => fs.existsSync(pidFile) && fs.statSync(pidFile).size > 0);
    process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
    await victim.join();
    const survivor = start(local, t.consume, [q as never, survivorOut, 4]);
    const seen = (): Set<number> => new Set([...lines(victimOut), ...lines(survivorOut)]);
    await until(() => seen().size === 2001).catch(async (e: unknown) => {
      const s = seen();
      const missing = [-1, ...range(2000)].filter((x) => !s.has(x));
      console.log('missing', missing.slice(0, 20), missing.length, await q.qsize(), await q.requeued());
      throw e;
    });
    for (let i = 0; i < 4; i++) await q.put(null); // one per get loop of the survivor
    await joinAll([survivor]);
    const all = [...lines(victimOut), ...lines(survivorOut)];
    assert.deepEqual(
      [...seen()].sort((a, b) => a - b),
      [-1, ...range(2000)],
    );
    const requeued = await q.requeued();
    // Each duplicate is an item the victim had and had not acknowledged: it was put back.
    assert.ok(all.length - 2001 <= requeued, `${all.length - 2001} duplicates, ${requeued} requeued`);
    console.log(`# killed consumer: ${requeued} items requeued, ${all.length - 2001} delivered twice`);
  });

  test('8 producers, 8 consumers, 100 000 items, 5 consumers SIGKILLed while taking: none lost, duplicates bounded by requeued', async (tc) => {
    const N = 100_000;
    const [PRODUCERS, CONSUMERS, KILLS, INFLIGHT] = [8, 8, 5, 4];
    const t0 = performance.now();
    const q = ctx().Queue<number | null>();
    const local = getContext('spawn');
    const outs: string[] = [];
    const newConsumer = (): { p: ReturnType<typeof start>; out: string } => {
      const out = file('c');
      outs.push(out);
      return { p: start(local, t.consume, [q as never, out, INFLIGHT]), out };
    };
    const live = range(CONSUMERS).map(newConsumer);
    const per = N / PRODUCERS;
    const producers = range(PRODUCERS).map((i) => start(local, t.produce, [q as never, i * per, per, 16]));
    // When an assertion fails, the children still waiting on the queue must not outlive the test.
    tc.after(() => {
      for (const c of [...producers, ...live.map((l) => l.p)]) if (c.exitcode === null) c.kill();
    });
    const size = (f: string): number => (fs.existsSync(f) ? fs.statSync(f).size : 0);
    const written = (): number => outs.reduce((s, f) => s + size(f), 0);
    // Each kill comes once the consumers together have written a random share of the items
    // (spread over 5%..70% of them), at a random moment of the stream of a random live consumer
    // that is taking items (a replacement still starting is not chosen): once its own output has
    // grown by a random number of bytes from then on.
    const totalBytes = range(N).reduce((s, i) => s + String(i).length + 1, 0);
    const at = range(KILLS)
      .map(() => Math.floor(totalBytes * (0.05 + 0.65 * Math.random())))
      .sort((a, b) => a - b);
    const killed: ReturnType<typeof start>[] = [];
    for (const threshold of at) {
      await until(() => written() >= threshold, 60_000);
      const taking = live.map((_, j) => j).filter((j) => size(live[j]!.out) > 0);
      const i = taking[Math.floor(Math.random() * taking.length)]!;
      const { p: victim, out: victimOut } = live[i]!;
      const from = size(victimOut);
      const grow = 1 + Math.floor(Math.random() * 600);
      await until(() => size(victimOut) >= from + grow, 60_000);
      process.kill(victim.pid!, 'SIGKILL');
      await victim.join();
      assert.equal(victim.exitcode, -9);
      killed.push(victim);
      live.splice(i, 1);
      live.push(newConsumer());
    }
    await joinAll(producers, 60_000);
    const produced = performance.now() - t0;
    const seen = new Set<number>();
    let allSeen = 0;
    let read = outs.map(() => 0);
    const all = (): number[] => outs.flatMap(lines);
    await until(() => {
      // Read only what each file gained since the last look (the files grow to 100 000 lines).
      read = outs.map((f, j) => {
        const n = size(f);
        if (n > (read[j] ?? 0)) {
          const fd = fs.openSync(f, 'r');
          const buf = Buffer.alloc(n - read[j]!);
          fs.readSync(fd, buf, 0, buf.length, read[j]!);
          fs.closeSync(fd);
          const text = buf.toString('utf8');
          const end = text.lastIndexOf('\n') + 1;
          for (const x of text.slice(0, end).split('\n').filter(Boolean)) seen.add(Number(x));
          return read[j]! + Buffer.byteLength(text.slice(0, end));
        }
        return read[j] ?? 0;
      });
      return seen.size === N;
    }, 60_000)
      .then(() => (allSeen = performance.now() - t0))
      .catch(async (e: unknown) => {
        const missing = range(N).filter((x) => !seen.has(x));
        console.log('missing', missing.slice(0, 20), missing.length, await q.qsize(), await q.requeued());
        throw e;
      });
    // Every item was seen; wait until the dead consumers' processing lists are back in the queue
    // and taken again (a live consumer's get puts them back once their lease has run out), so
    // that the duplicates below are all the repeats there will be.
    const s = q._session;
    const k = q._keys;
    const held = async (): Promise<number> => {
      let n = await q.qsize();
      for (const id of await s.cmd.smembers(k.cons)) n += await s.cmd.llen(k.procPrefix + id);
      return n;
    };
    for (let end = Date.now() + 30_000; (await held()) > 0;) {
      if (Date.now() > end) throw new Error(`${await held()} items still held or queued`);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (let i = 0; i < live.length * INFLIGHT; i++) await q.put(null); // one per get loop
    await joinAll(
      live.map((c) => c.p),
      60_000,
    );
    const got = all();
    const counts = new Map<number, number>();
    for (const x of got) counts.set(x, (counts.get(x) ?? 0) + 1);
    assert.deepEqual(
      [...counts.keys()].sort((a, b) => a - b),
      range(N),
    );
    const duplicates = got.length - N;
    const requeued = await q.requeued();
    // Each duplicate is an item a killed consumer had and had not acknowledged: it was put back.
    assert.ok(duplicates <= requeued, `${duplicates} duplicates, ${requeued} requeued`);
    await q.destroy();
    const keys = await s.cmd.keys(`${s.prefix}q:${q.name}*`);
    assert.deepEqual(keys, [], 'keys of the queue left after destroy()');
    for (const c of [...producers, ...killed, ...live.map((l) => l.p)])
      assert.ok(await waitGone(c.pid!, 5000), `child ${c.pid} left behind`);
    console.log(
      `# ${PRODUCERS} producers, ${CONSUMERS} consumers, ${KILLS} SIGKILLed and replaced, ${N} items: 0 lost, ` +
        `${requeued} requeued, ${duplicates} delivered again (at most ${Math.max(...counts.values())} times); all put after ${Math.round(produced)} ms, all seen after ${Math.round(allSeen)} ms, done after ${Math.round(performance.now() - t0)} ms`,
    );
  });

  test('a JoinableQueue consumer SIGKILLed before taskDone: its items go to another consumer after the lease', async () => {
    const q = ctx({ leaseMs: 1000 }).JoinableQueue<number | null>();
    for (const i of range(10)) await q.put(i);
    const local = getContext('spawn');
    const held = file('held');
    const holder = start(local, t.holdItems, [q as never, 3, held]);
    await until(() => fs.existsSync(held) && fs.statSync(held).size > 0);
    const { pid, got } = JSON.parse(fs.readFileSync(held, 'utf8')) as { pid: number; got: number[] };
    assert.deepEqual(got, [0, 1, 2]);
    process.kill(pid, 'SIGKILL');
    await holder.join();
    const out = file('w');
    const worker = start(local, t.work, [q as never, out]);
    // The worker's gets put the dead holder's items back once its lease has run out; the end
    // marker goes in after them.
    while ((await q.requeued()) < 3) await new Promise((r) => setTimeout(r, 20));
    await q.put(null);
    assert.equal(await q.join(20_000), true);
    await joinAll([worker]);
    assert.deepEqual(
      lines(out).sort((a, b) => a - b),
      range(10),
    );
    assert.equal(await q.requeued(), 3);
  });

  test('redis-server killed and restarted (AOF on): items survive, a waiting get and a lock go on', async () => {
    const aof = await RedisServer.start(true);
    try {
      const c = getContext('redis', { url: aof.url, namespace: randomNamespace(), leaseMs: 500 });
      const q = c.Queue<number>();
      for (const i of range(5)) await q.put(i);
      const lock = c.Lock();
      await lock.acquire();
      await aof.kill();
      const got = q.get(); // waits while the server is down
      await aof.restart();
      assert.equal(await got, 0);
      for (const i of range(4)) assert.equal(await q.get(), i + 1);
      const blocked = q.get({ timeout: 20_000 });
      await c.Queue<number>({ name: q.name }).put(9);
      assert.equal(await blocked, 9);
      await lock.release();
      assert.equal(await lock.acquire({ block: false }), true);
      await lock.release();
    } finally {
      await aof.stop();
    }
  });
});
