// Managers: CPython's _TestContainers, _TestMyManager, _TestRemoteManager, _TestManagerRestart
// and TestSyncManagerTypes, ported; proxies used by children on both backends; the wire's
// security (no code from the wire, fuzzed frames, wrong authkey).
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as v8 from 'node:v8';

import {
  AuthenticationError,
  BrokenBarrierError,
  currentProcess,
  Empty,
  Full,
  NotTransferableError,
  Process,
  RemoteError,
} from '../src/index.js';
import { Client, type Address } from '../src/ipc/listener.js';
import { pidAlive } from '../src/platform.js';
import { IndexError, KeyError, Manager, SyncManager, ValueError, type DictProxy } from '../src/managers/managers.js';
import { dictBody } from './container_bodies.js';
import { assertNoLeftovers, describeBackends, fixture, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/manager_targets.mjs');
let t: Targets;
const dir = tmpDir();
let seq = 0;
const out = (): string => path.join(dir, `out-${++seq}.json`);
const encodeJson = (v: unknown): Buffer => Buffer.from(`J${JSON.stringify(v)}`);
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

before(async () => {
  t = (await import(pathToFileURL(fixture('manager_targets.mjs')).href)) as Targets;
});

describe('SyncManager', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager();
  });
  after(async () => {
    await m.shutdown();
    await assertNoLeftovers();
  });

  test('start, address, state', async () => {
    assert.equal(m.state, 'started');
    assert.equal(typeof m.address, 'string');
    assert.ok(m.process?.isAlive());
    await assert.rejects(m.start(), /Already started server/);
  });

  test('dict (_TestContainers.test_dict)', async () => {
    await dictBody((init) => m.dict(init as never) as never);
  });

  test('list (_TestContainers.test_list)', async () => {
    const a = await m.list([...Array(10).keys()]);
    assert.deepEqual(await a.copy(), [...Array(10).keys()]);
    const b = await m.list<number>();
    assert.deepEqual(await b.copy(), []);
    await b.extend([...Array(5).keys()]);
    assert.deepEqual(await b.copy(), [0, 1, 2, 3, 4]);
    assert.equal(await b.get(2), 2);
    assert.equal(await b.get(-1), 4);
    await assert.rejects(b.get(10), IndexError);
    assert.deepEqual(await b.slice(2, 5), [2, 3, 4]);
    await b.set(0, 10);
    await b.append(-1);
    await b.insert(0, 99);
    assert.deepEqual(await b.copy(), [99, 10, 1, 2, 3, 4, -1]);
    await b.sort();
    assert.deepEqual(await b.copy(), [-1, 1, 2, 3, 4, 10, 99]);
    await b.sort({ reverse: true });
    assert.deepEqual(await b.copy(), [99, 10, 4, 3, 2, 1, -1]);
    await b.reverse();
    assert.equal(await b.index(10), 5);
    assert.equal(await b.count(3), 1);
    await b.remove(3);
    await assert.rejects(b.remove(3), ValueError);
    assert.equal(await b.pop(), 99);
    assert.equal(await b.pop(0), -1);
    assert.equal(await b.at(-1), 10);
    assert.equal(await b.len(), 4);
    const items: number[] = [];
    for await (const x of b) items.push(x);
    assert.deepEqual(items, [1, 2, 4, 10]);
    const mixed = await m.list([1, 'a']);
    await assert.rejects(
      mixed.sort(),
      (e: Error) => e instanceof TypeError && /not supported between instances of 'str' and 'int'/.test(e.message),
    );
    const objs = await m.list([{ a: [1] }, { a: [2] }]);
    assert.equal(await objs.index({ a: [2] }), 1, 'equality is by value, as Python');
  });

  test('nested proxies stay live (test_list_proxy_in_list, test_dict_proxy_nested)', async () => {
    const a = await m.list([0, 0, 0]);
    const outer = await m.list([a]);
    const inner = await outer.get(0);
    await inner.set(0, 5);
    assert.deepEqual(await a.copy(), [5, 0, 0]);
    const pets = await m.dict({ ferrets: 2, hamsters: 4 });
    const supplies = await m.dict({ water: 10, feed: 3 });
    const petsStore = await m.list([pets, supplies]);
    const p0 = await petsStore.get(0);
    assert.equal(await p0.get('ferrets'), 2);
    await pets.set('marmots', 1);
    assert.equal(await p0.get('marmots'), 1);
    const d = await m.dict();
    await d.set('list', a);
    const back = (await d.get('list')) as typeof a;
    await back.append(7);
    assert.equal(await a.len(), 4);
  });

  test('Namespace, Value, Array', async () => {
    const ns = await m.Namespace({ x: 1 });
    await ns.set('name', 'Bob');
    assert.equal(await ns.get('x'), 1);
    assert.equal(await ns.get('name'), 'Bob');
    assert.equal(await ns.get('missing'), undefined);
    assert.deepEqual(await ns.toObject(), { x: 1, name: 'Bob' });
    assert.equal(await ns.delete('x'), true);
    const v = await m.Value('i', 10);
    assert.equal(await v.get(), 10);
    await v.set(11);
    assert.equal(await v.get(), 11);
    const arr = await m.Array('i', [0, 1, 2]);
    assert.equal(await arr.len(), 3);
    await arr.set(1, 5);
    assert.deepEqual(await arr.toArray(), [0, 5, 2]);
    await assert.rejects(arr.set(0, 1.5), TypeError);
    await assert.rejects(arr.get(3), IndexError);
    const z = await m.Array('d', 2);
    assert.deepEqual(await z.toArray(), [0, 0]);
  });

  test('Lock, RLock, Semaphore, BoundedSemaphore (TestSyncManagerTypes)', async () => {
    const lock = await m.Lock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ block: false }), false);
    assert.equal(await lock.acquire({ timeout: 30 }), false);
    await lock.release();
    await assert.rejects(lock.release(), ValueError);
    assert.equal(await lock.withLock(() => 5), 5);
    {
      await using _held = await lock.guard();
      assert.equal(await lock.acquire({ block: false }), false);
    }
    assert.equal(await lock.acquire({ block: false }), true);
    await lock.release();
    const rlock = await m.RLock();
    assert.equal(await rlock.acquire(), true);
    assert.equal(await rlock.acquire(), true, 'reentrant for its owner');
    await rlock.release();
    await rlock.release();
    await assert.rejects(rlock.release(), /un-acquired/);
    const sem = await m.Semaphore(2);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire({ block: false }), false);
    await sem.release();
    assert.equal(await sem.getValue(), 1);
    const bs = await m.BoundedSemaphore(1);
    await assert.rejects(bs.release(), ValueError);
  });

  test('an abort signal cancels a wait in the server', async () => {
    const lock = await m.Lock();
    await lock.acquire();
    const ctl = new AbortController();
    const p = lock.acquire({ signal: ctl.signal });
    setTimeout(() => ctl.abort(), 20);
    await assert.rejects(p, { name: 'AbortError' });
    await lock.release();
    assert.equal(await lock.acquire({ block: false }), true, 'the cancelled waiter did not take the lock');
  });

  test('Condition, Event, Barrier', async () => {
    const cond = await m.Condition();
    await cond.acquire();
    assert.equal(await cond.wait(20), false);
    await cond.notify();
    await cond.release();
    await assert.rejects(cond.wait(1), /un-acquired/);
    const ev = await m.Event();
    assert.equal(await ev.isSet(), false);
    assert.equal(await ev.wait(10), false);
    setTimeout(() => void ev.set(), 10);
    assert.equal(await ev.wait(), true);
    await ev.clear();
    const b = await m.Barrier(2);
    assert.equal(await b.parties, 2);
    const [i, j] = await Promise.all([b.wait(), b.wait()]);
    assert.deepEqual([i, j].sort(), [0, 1]);
    await assert.rejects(b.wait(20), BrokenBarrierError);
    assert.equal(await b.broken, true);
    await b.reset();
    assert.equal(await b.broken, false);
    assert.equal(await b.nWaiting, 0);
  });

  test('Queue, JoinableQueue', async () => {
    const q = await m.Queue<number>(2);
    await q.put(1);
    await q.putNowait(2);
    assert.equal(await q.full(), true);
    await assert.rejects(q.put(3, { timeout: 10 }), Full);
    await assert.rejects(q.put(3, { block: false }), Full);
    assert.equal(await q.qsize(), 2);
    assert.equal(await q.get(), 1);
    assert.equal(await q.getNowait(), 2);
    await assert.rejects(q.get({ timeout: 10 }), Empty);
    await assert.rejects(q.getNowait(), Empty);
    assert.equal(await q.empty(), true);
    const later = q.get();
    await q.put(9);
    assert.equal(await later, 9);
    const jq = await m.JoinableQueue<number>();
    await jq.put(1);
    assert.equal(await jq.join(10), false);
    await jq.get();
    await jq.taskDone();
    assert.equal(await jq.join(), true);
    await assert.rejects(jq.taskDone(), ValueError);
  });

  test('the server survives errors; protocol failures are RemoteError', async () => {
    const d = await m.dict();
    await assert.rejects(d._callmethod('constructor'), (e: Error) => e instanceof RemoteError && /not exposed/.test(e.message));
    await assert.rejects(d._callmethod('_getvalue'), RemoteError);
    await assert.rejects(m._create('nope'), (e: Error) => e instanceof RemoteError && /unknown type id 'nope'/.test(e.message));
    await assert.rejects(d.pop('x'), (e: Error) => {
      assert.ok(e instanceof KeyError);
      assert.match((e.cause as Error).message, /ManagedDict\.pop/, 'the remote stack is the cause');
      return true;
    });
    await d.set('ok', 1);
    assert.equal(await d.get('ok'), 1);
    assert.deepEqual(await d._getvalue(), new Map([['ok', 1]]));
  });

  test('functions never cross by value to a manager', async () => {
    const d = await m.dict();
    await assert.rejects(
      async () => d.set('f', (x: number) => x),
      (e: Error) => e instanceof NotTransferableError && /by value/.test(e.message),
    );
    const l = await m.list([3, 1]);
    await assert.rejects(async () => l.sort({ key: (x) => -x }), NotTransferableError);
  });

  test('refcounts: the server drops an object when its last proxy is gone', async () => {
    // Made in a function of its own: a suspended async frame may keep its temporaries alive.
    const id = await (async () => (await m.dict())._token.id)();
    assert.equal((await m._debugInfo())[id]?.refs, 1);
    for (let i = 0; i < 50 && (await m._debugInfo())[id]; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal((await m._debugInfo())[id], undefined);
  });

  test('concurrent calls are batched in one frame each way, in order, each with its own outcome', async () => {
    const d = await m.dict<string | number>();
    const l = await m.list<number>();
    // Plain (JSON) and structured (V8) messages, errors and results, all in flight together.
    const results = await Promise.allSettled([
      d.set('a', 1),
      d.set('m', new Map([[1, 2]])),
      d.getItem('missing'),
      d.get('a'),
      ...[...Array(200).keys()].map((i) => l.append(i)),
      d.set('big', 'x'.repeat(64 * 1024)),
      d.get('m'),
      l.len(),
      d.set('u', undefined),
      d.get('u', 'dflt'),
      d.set(-0, NaN),
      d.get(0),
    ]);
    assert.equal(results[2].status, 'rejected');
    assert.ok(results[2].reason instanceof KeyError);
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<unknown>).value);
    assert.deepEqual(ok.slice(-6), [new Map([[1, 2]]), 200, undefined, undefined, undefined, NaN]);
    assert.equal(results[3].status === 'fulfilled' && results[3].value, 1);
    assert.deepEqual(await l.copy(), [...Array(200).keys()], 'requests start in the order they were made');
    assert.equal(((await d.get('big')) as string).length, 64 * 1024);
  });

  test('dict set+get round trips (figure)', async () => {
    const d = await m.dict<string, number>();
    const n = 3000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await d.set('k', i);
      await d.get('k');
    }
    const rate = (2 * n) / ((performance.now() - t0) / 1000);
    process.stdout.write(`# manager dict set+get: ${Math.round(rate)} ops/s (CPython 16 k)\n`);
    assert.ok(rate > 1000);
  });
});

describe('SyncManager.Pool', () => {
  // The task functions are exported from the fixture module, which the server trusts.
  let m: SyncManager;
  before(async () => {
    m = await Manager({ trustedModules: [fixture('manager_targets.mjs')] });
  });
  after(async () => {
    await m.shutdown();
    await assertNoLeftovers();
  });

  test('apply, map, starmap, applyAsync and mapAsync run in the server process', async () => {
    await using pool = await m.Pool(2);
    assert.equal(await pool.apply(t.addPair, [2, 3]), 5);
    assert.deepEqual(await pool.map(t.square, [1, 2, 3, 4]), [1, 4, 9, 16]);
    assert.deepEqual(
      await pool.map(t.square, [...Array(50).keys()], 7),
      [...Array(50).keys()].map((x) => x * x),
    );
    assert.deepEqual(
      await pool.starmap(t.addPair, [
        [1, 2],
        [3, 4],
      ]),
      [3, 7],
    );
    const r = await pool.applyAsync(t.slowDouble, [21, 50]);
    assert.equal(await r.ready(), false);
    assert.equal(await r.get(), 42);
    assert.equal(await r.ready(), true);
    assert.equal(await r.successful(), true);
    const mr = await pool.mapAsync(t.square, [5, 6]);
    await mr.wait();
    assert.deepEqual(await mr.get(), [25, 36]);
    assert.deepEqual(await (await pool.starmapAsync(t.addPair, [[10, 1]])).get(), [11]);
    const items: number[] = [];
    for await (const x of pool.imap(t.square, [3, 4])) items.push(x);
    assert.deepEqual(items, [9, 16]);
  });

  test('errors of tasks arrive as the same class; timeouts; a function the server does not trust is refused', async () => {
    await using pool = await m.Pool(1);
    await assert.rejects(pool.apply(t.failWith, ['bad']), (e: Error) => e instanceof RangeError && e.message === 'bad');
    const r = await pool.applyAsync(t.failWith, ['later']);
    await assert.rejects(r.get(), (e: Error) => e instanceof RangeError && e.message === 'later');
    assert.equal(await r.successful(), false);
    const slow = await pool.applyAsync(t.slowDouble, [1, 2000]);
    await assert.rejects(slow.get(20), (e: Error) => e.name === 'TimeoutError');
    await assert.rejects(
      async () => pool.map((x: number) => x, [1]),
      (e: Error) => e instanceof NotTransferableError,
    );
    // An export of a module the server does not trust (test/helpers): refused by the server, never imported.
    await assert.rejects(pool.apply(tmpDir, []), (e: Error) => e instanceof RemoteError && /refused/.test(e.message));
    assert.equal(await pool.apply(t.addPair, [1, 1]), 2, 'the pool still serves');
  });

  test('the last proxy gone terminates the pool; shutdown ends its workers', async () => {
    const pool = await m.Pool(1);
    assert.deepEqual(await pool.map(t.square, [2]), [4]);
    await pool.close();
    await pool.join();
    await assert.rejects(pool.map(t.square, [2]), (e: Error) => /not running/i.test(e.message));
    await pool.terminate();
  });
});

describe('manager lifecycle', () => {
  after(assertNoLeftovers);

  test('await using shuts the server down', async () => {
    let proc: Process | undefined;
    {
      await using m = await Manager();
      proc = m.process;
      const d = await m.dict({ a: 1 });
      assert.equal(await d.get('a'), 1);
    }
    assert.equal(proc!.exitcode, 0);
  });

  test('proxies of a shut-down manager fail; a new manager on the same address works (_TestManagerRestart)', async () => {
    const authkey = crypto.randomBytes(16);
    const m = new SyncManager({ address: ['127.0.0.1', 0], authkey });
    await m.start();
    const address = m.address as Address;
    const q = await m.Queue<string>();
    await q.put('hello world');
    await m.shutdown();
    await assert.rejects(q.get(), /manager/);
    const m2 = new SyncManager({ address, authkey });
    await m2.start();
    assert.deepEqual(m2.address, address);
    const q2 = await m2.Queue<string>();
    await q2.put('again');
    assert.equal(await q2.get(), 'again');
    await m2.shutdown();
    await assert.rejects(m2.start(), /shut down/);
  });

  test('a server that cannot listen fails start()', async () => {
    const m = new SyncManager({ address: ['127.0.0.1', 0] });
    await m.start();
    const taken = new SyncManager({ address: m.address });
    await assert.rejects(taken.start(), /EADDRINUSE/);
    await m.shutdown();
  });
});

describe('user types (_TestMyManager)', () => {
  after(assertNoLeftovers);

  test('register: exposed methods, errors, custom proxy types, methodToTypeid', async () => {
    await using m = await new t.MyManager().start();
    const foo = (await m._create('Foo')) as unknown as {
      f(): Promise<string>;
      g(): Promise<never>;
      _h?: unknown;
      later(x: number): Promise<number>;
    };
    const bar = (await m._create('Bar')) as unknown as { f(): Promise<string>; g?: unknown; _h(): Promise<string> };
    assert.equal(await foo.f(), 'f()');
    await assert.rejects(foo.g(), (e: Error) => e instanceof RangeError && e.message === 'g()');
    assert.equal(foo._h, undefined, 'methods starting with _ are not exposed by default');
    assert.equal(await foo.later(21), 42);
    assert.deepEqual(new Set((foo as unknown as { _exposed: string[] })._exposed), new Set(['f', 'g', 'later']));
    assert.equal(await bar.f(), 'f()');
    assert.equal(await bar._h(), '_h()');
    assert.equal(bar.g, undefined);
    const baz = await (m as unknown as { baz(): Promise<{ _getvalue(): Promise<number[]> }> }).baz();
    assert.deepEqual(await baz._getvalue(), [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    const counter = await (m as unknown as { Counter(): Promise<InstanceType<Targets['IteratorProxy']>> }).Counter();
    assert.ok(counter instanceof t.IteratorProxy);
    assert.equal(await counter.next(), 0);
    assert.equal(await counter.next(), 1);
    const child = await counter._callmethod<{ f(): Promise<string> }>('child');
    assert.equal(await child.f(), 'f()');
  });
});

describe('remote managers (_TestRemoteManager)', () => {
  after(assertNoLeftovers);

  test('serveForever in one process, connect() from another over TCP', async () => {
    const authkey = crypto.randomBytes(16).toString('hex');
    const server = new t.RemoteManager({ address: ['127.0.0.1', 0], authkey });
    const s = server.getServer();
    await s.ready;
    const serving = s.serveForever();
    const address = s.address as [string, number];
    assert.equal(address[0], '127.0.0.1');
    const p = new Process({ target: t.remoteClient, args: [address, authkey, 'http://a'] });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    const client = await new t.RemoteManager({ address, authkey }).connect();
    const d = await client._create<DictProxy<string, string>>('getResults');
    assert.equal(await d.get('http://a'), 'res...');
    await assert.rejects(new t.RemoteManager({ address, authkey: 'wrong' }).connect(), AuthenticationError);
    await client.shutdown();
    await serving;
  });
});

describe('authkey (Python: current_process().authkey)', () => {
  after(assertNoLeftovers);

  test("a manager's default key is the process's authkey: a child connects by address alone", async () => {
    const server = new t.RemoteManager({ address: ['127.0.0.1', 0] });
    assert.deepEqual(server.authkey, currentProcess().authkey);
    const s = server.getServer();
    await s.ready;
    const serving = s.serveForever();
    const address = s.address as [string, number];
    const p = new Process({ target: t.remoteClient, args: [address, null, 'http://b'] });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    const client = await new t.RemoteManager({ address }).connect();
    const d = await client._create<DictProxy<string, string>>('getResults');
    assert.equal(await d.get('http://b'), 'res...');
    // A child given another key is refused, as a stranger would be.
    const q = new Process({ target: t.remoteClient, args: [address, null, 'http://c'] });
    q.authkey = 'another key';
    q.start();
    await q.join();
    assert.equal(q.exitcode, 1);
    assert.equal(await d.get('http://c'), undefined);
    await client.shutdown();
    await serving;
  });
});

describe('the wire', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager();
  });
  after(async () => {
    await m.shutdown();
    await assertNoLeftovers();
  });

  const raw = (): ReturnType<typeof Client> => Client(m.address!, { authkey: m.authkey });

  test('wrong authkey: AuthenticationError, and the server keeps serving', async () => {
    await assert.rejects(Client(m.address!, { authkey: 'not the key' }), AuthenticationError);
    await assert.rejects(new SyncManager({ address: m.address, authkey: 'nope' }).connect(), AuthenticationError);
    const d = await m.dict();
    await d.set('a', 1);
    assert.equal(await d.get('a'), 1);
  });

  test('a function sent by value is refused, never run', async () => {
    const d = await m.dict();
    const marker = path.join(dir, 'pwned');
    const source = `(process.getBuiltinModule('fs').writeFileSync(${JSON.stringify(marker)}, 'pwned'), (x) => x)`;
    const placeholder = { '\u0000multiproc': 'fn', ref: { kind: 'source', source, name: 'x' } };
    const conn = await raw();
    await conn.sendBytes(v8.serialize({ '\u0000multiproc.root': [7, 'call', d._token.id, 'set', ['k', placeholder]] }));
    const reply = v8.deserialize(await conn.recvBytes()) as [number, number, { message: string }];
    assert.equal(reply[0], 7);
    assert.equal(reply[1], 3);
    assert.match(reply[2].message, /sent by value.*nothing of the message was rebuilt/);
    // A module the server never loaded, named by reference, is not imported either.
    const esm = {
      '\u0000multiproc': 'obj',
      cls: { kind: 'esm', url: pathToFileURL(fixture('targets.mjs')).href, exportName: 'X', name: 'X' },
      custom: false,
      state: {},
    };
    await conn.sendBytes(v8.serialize({ '\u0000multiproc.root': [8, 'call', d._token.id, 'set', ['k', esm]] }));
    const reply2 = v8.deserialize(await conn.recvBytes()) as [number, number, { message: string }];
    assert.equal(reply2[1], 3);
    assert.match(reply2[2].message, /refused/);
    conn.close();
    assert.equal(fs.existsSync(marker), false);
    assert.equal(await d.has('k'), false);
  });

  test('malformed batch frames close that connection only', async () => {
    const ping = encodeJson([1, 'ping']);
    const batch = (...parts: [number, Uint8Array][]): Buffer =>
      Buffer.concat([
        Buffer.from([0x42]),
        ...parts.map(([n, b]) => Buffer.concat([Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]), b])),
      ]);
    const frames = [
      Buffer.from([0x42]),
      Buffer.from([0x42, 0, 0]),
      batch([ping.length + 5, ping]),
      batch([0, Buffer.alloc(0)]),
      batch([2, Buffer.from([0x42, 0x42])]),
      batch([ping.length, ping], [3, Buffer.from('J[1')]),
      Buffer.from('J{"a":1}'),
      Buffer.from('J[1,"call","1","get",["a"]'),
    ];
    for (const f of frames) {
      const conn = await raw();
      await conn.sendBytes(f).catch(() => undefined);
      await Promise.race([conn.recvBytes().catch(() => undefined), new Promise((r) => setTimeout(r, 20))]);
      conn.close();
    }
    // A well-formed batch of two pings is answered twice (in one frame or two).
    const conn = await raw();
    await conn.sendBytes(batch([ping.length, ping], [ping.length, encodeJson([2, 'ping'])]));
    const first = await conn.recvBytes();
    assert.equal(first[0], 0x42);
    conn.close();
    assert.ok(m.process!.isAlive());
  });

  test('fuzz: random and malformed frames close that connection only', async () => {
    const d = await m.dict<string, number>();
    await d.set('alive', 1);
    const rnd = (n: number): Buffer => crypto.randomBytes(n);
    const frames: Uint8Array[] = [
      rnd(0),
      rnd(1),
      rnd(17),
      rnd(300),
      v8.serialize('not an array'),
      v8.serialize([1.5, 'call']),
      v8.serialize([1, 42]),
      v8.serialize([-1, 'ping']),
      v8.serialize({ '\u0000multiproc.root': 'x' }),
      Buffer.concat([v8.serialize([1, 'ping']).subarray(0, 3), rnd(5)]),
    ];
    for (let i = 0; i < 40; i++) {
      // A read whose name no one-byte change turns into a write ('get' could become 'set', which
      // the server would rightly run): the check below that 'alive' is untouched then holds.
      const b = v8.serialize([i, 'call', d._token.id, 'copy', []]);
      const k = 2 + Math.floor(Math.random() * (b.length - 2));
      b[k] = Math.floor(Math.random() * 256);
      frames.push(b);
    }
    for (const f of frames) {
      const conn = await raw();
      await conn.sendBytes(f).catch(() => undefined);
      // Whatever the server does with it — answer or hang up — it must not die.
      await Promise.race([conn.recvBytes().catch(() => undefined), new Promise((r) => setTimeout(r, 20))]);
      conn.close();
    }
    // Raw garbage on the socket, before and after authenticating.
    const net = await import('node:net');
    for (const bytes of [rnd(64), Buffer.from([0xff, 0xff, 0xff, 0xfe, 1, 2, 3])]) {
      const s = net.connect(m.address as string);
      await new Promise((r) => s.once('connect', r));
      s.write(bytes);
      await new Promise((r) => setTimeout(r, 20));
      s.destroy();
    }
    // A frame over maxMessage.
    const small = new SyncManager({ maxMessage: 1024 });
    await small.start();
    const sd = await small.dict();
    await assert.rejects(sd.set('big', 'x'.repeat(4096)), /connection/);
    await sd.set('small', 'ok').catch(() => undefined);
    const sd2 = await small.dict();
    await sd2.set('a', 1);
    assert.equal(await sd2.get('a'), 1);
    await small.shutdown();
    assert.ok(m.process!.isAlive());
    assert.equal(await d.get('alive'), 1);
  });
});

describeBackends('proxies in children', (ctx, method) => {
  test('seed 000: 10 children each set dic[i] = 100; the parent polls isAlive', async () => {
    await using m = await Manager();
    const dic = await m.dict<number, number>();
    const procs = [...Array(10).keys()].map((i) => new ctx.Process({ target: t.setHundred, args: [i, dic] }));
    for (const p of procs) p.start();
    while (procs.some((p) => p.isAlive())) await new Promise((r) => setTimeout(r, 10));
    for (const p of procs) assert.equal(p.exitcode, 0);
    assert.deepEqual(await dic.copy(), new Map([...Array(10).keys()].map((i) => [i, 100])));
  });

  test('seed 001: 10 children decrement under a manager Lock: exactly 90', async () => {
    await using m = await Manager();
    const d = await m.dict({ num: 100 });
    const lock = await m.Lock();
    const procs = Array.from({ length: 10 }, () => new ctx.Process({ target: t.decrement, args: [d, lock] }));
    for (const p of procs) p.start();
    for (const p of procs) await p.join();
    assert.equal(await d.get('num'), 90);
  });

  test('a child that uses a proxy and ends while the parent is still busy leaves the referent alive', async () => {
    // The parent counts the child's reference when it sends the proxy; the child gives it back
    // when it ends, on its own connection. That count must reach the server before the child
    // can exist, not at the end of the parent's synchronous run.
    await using m = await Manager();
    const d = await m.dict<string, number>({ num: 1 });
    for (let round = 0; round < 3; round++) {
      const p = new ctx.Process({ target: t.useAndEnd, args: [d] });
      p.start();
      if (method !== 'thread') {
        // Busy here (no microtask runs) until the child has ended.
        const until = Date.now() + 20_000;
        while (pidAlive(p.pid!) && Date.now() < until);
      }
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.equal(await d.get('num'), 1);
    }
  });

  test('a proxy nested in a dict, sent through a manager queue, stays live', async () => {
    await using m = await Manager();
    const inner = await m.list<number>();
    const d = await m.dict<string, typeof inner>({ inner });
    const q = await m.Queue<typeof d>();
    await q.put(d);
    const p = new ctx.Process({ target: t.nestedWriter, args: [q] });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.deepEqual(await inner.copy(), [42]);
  });

  test('errors of the referent arrive in a child as the same class', async () => {
    await using m = await Manager();
    const d = await m.dict<string, number>();
    const file = out();
    const p = new ctx.Process({ target: t.reportError, args: [d, file] });
    p.start();
    await p.join();
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { name: 'KeyError', isKeyError: true, message: "'missing'" });
  });

  test('a child gives its references back when it exits', async () => {
    await using m = await Manager();
    const id = await (async () => {
      const d = await m.dict<string, number>();
      const p = new ctx.Process({ target: t.setAndExit, args: [d, 'x'] });
      p.start();
      await p.join();
      assert.equal(await d.get('x'), 1);
      assert.equal((await m._debugInfo())[d._token.id]?.refs, 1, 'only the parent holds it now');
      return d._token.id;
    })();
    assert.ok(id);
    for (let i = 0; i < 50 && (await m._numberOfObjects()) > 0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await m._numberOfObjects(), 0);
  });

  test('a Pool of the manager, used from a child', async () => {
    await using m = await Manager({ trustedModules: [fixture('manager_targets.mjs')] });
    await using pool = await m.Pool(2);
    const file = out();
    const p = new ctx.Process({ target: t.usePool, args: [pool, file] });
    p.start();
    await p.join();
    assert.equal(p.exitcode, 0);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { map: [1, 4, 9], starmap: [3, 7], async: 42 });
  });

  test(`the server itself on the ${method} backend`, async () => {
    await using m = await new SyncManager({ ctx }).start();
    const l = await m.list([1]);
    await l.append(2);
    assert.deepEqual(await l.copy(), [1, 2]);
  });
});
