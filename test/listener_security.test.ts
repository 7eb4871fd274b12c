// What recv() on a socket connection rebuilds from its peer: by default plain data and errors
// only. Raw peers (written by hand in helpers.ts, with and without the authkey handshake) send
// what the library itself never would — a function as source text that runs when compiled, a
// reference to a module whose top level writes a file, a library object — and nothing of it may
// run; a length prefix over the limit must break the connection before its body is buffered.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as v8 from 'node:v8';

import { InvalidArgumentError, ProcessError, TimeoutError, UntrustedMessageError } from '../src/index.js';
import { Client, Listener } from '../src/ipc/listener.js';
import { crafted, fixture, RawPeer, sideEffects, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/listener_targets.mjs');
let t: Targets;
const dir = tmpDir();
// The side-effect fixtures write their file here when imported.
process.env.MP_SIDE_EFFECT_DIR = dir;
const ESM = fixture('side_effect.mjs');
const CJS = fixture('side_effect_cjs.js');

before(async () => {
  t = (await import(pathToFileURL(fixture('listener_targets.mjs')).href)) as Targets;
});

/** A source text that writes `file` when it is compiled and evaluated, and is then a function. */
const writes = (file: string): string => `(process.getBuiltinModule('fs').writeFileSync(${JSON.stringify(file)}, 'pwned'), (x) => x)`;

const isUntrusted =
  (what: RegExp) =>
  (err: Error): boolean => {
    assert.ok(err instanceof UntrustedMessageError, `${err.name}: ${err.message}`);
    assert.equal(err.code, 'ERR_MP_UNTRUSTED');
    assert.match(err.message, what);
    assert.match(err.message, /trust/, 'the message names the opt-in');
    return true;
  };

describe('recv() on a socket: plain data and errors only, unless the receiver trusts more', () => {
  test('no authkey: a function sent as source text is refused, never compiled; the connection stays usable', async () => {
    await using l = await Listener.create();
    const peer = await RawPeer.connect(l.address);
    await using conn = await l.accept();
    const marker = path.join(dir, 'pwned-source');
    await peer.sendFrame(crafted.message([1, crafted.source(writes(marker))]));
    await peer.sendFrame(v8.serialize({ after: 'the refusal' }));
    await assert.rejects(conn.recv(), isUntrusted(/message\[1\].*sent by value/));
    assert.deepEqual(await conn.recv(), { after: 'the refusal' });
    assert.deepEqual(sideEffects(dir), []);
    assert.equal(fs.existsSync(marker), false, 'the source was not evaluated');
    peer.close();
  });

  test('with an authkey, after the handshake: ES module and CommonJS references are refused, never imported', async () => {
    await using l = await Listener.create(null, { authkey: 'k3y', family: 'AF_UNIX' });
    const [peer, conn] = await Promise.all([RawPeer.connect(l.address, 'k3y'), l.accept()]);
    const messages = [
      [crafted.esm(ESM, 'evil'), /function 'evil'.*side_effect\.mjs/],
      [crafted.cjs(CJS, 'evil'), /function 'evil'.*side_effect_cjs\.js/],
      [crafted.cjs(CJS, null), /side_effect_cjs\.js/],
      [{ deep: [new Map([['k', crafted.instance(crafted.esm(ESM, 'EvilError'), { a: 1 })]])] }, /class of an object.*EvilError/],
      [crafted.cjs('child_process', 'execSync'), /malformed function reference/],
      [crafted.library('multiproc.Lock', 'mp-not-a-segment'), /library object.*multiproc\.Lock/],
    ] as const;
    for (const [value] of messages) await peer.sendFrame(crafted.message(['x', value]));
    for (const [, what] of messages) await assert.rejects(conn.recv(), isUntrusted(what));
    assert.deepEqual(sideEffects(dir), [], 'no module was imported');
    peer.close();
    conn.close();
  });

  test('errors arrive as their nearest built-in or library class, without importing their module', async () => {
    await using l = await Listener.create();
    const [peer, conn] = await Promise.all([RawPeer.connect(l.address), l.accept()]);
    await peer.sendFrame(crafted.message([crafted.error(crafted.esm(ESM, 'EvilError'), 'RangeError', 'EvilError', 'boom')]));
    const [err] = (await conn.recv()) as [Error];
    assert.ok(err instanceof RangeError);
    assert.equal(err.name, 'EvilError');
    assert.equal(err.message, 'boom');
    // A class named only as data ('constructor', '__proto__') is no class: a plain Error.
    await peer.sendFrame(crafted.message([crafted.error({ ref: null }, 'constructor', 'X', 'y')]));
    const [plain] = (await conn.recv()) as [Error];
    assert.equal(Object.getPrototypeOf(plain), Error.prototype);
    assert.deepEqual(sideEffects(dir), []);
    // What the library sends itself: a library error keeps its class.
    await using client = await Client(l.address);
    await using conn2 = await l.accept();
    await client.send({ e: new TimeoutError('late') });
    const { e } = (await conn2.recv()) as { e: Error };
    assert.ok(e instanceof TimeoutError);
    peer.close();
    conn.close();
  });

  test('trust: listed modules may be named; other modules still refused; the Client side too', async () => {
    await using l = await Listener.create(undefined, { trust: [fixture('listener_targets.mjs')] });
    await using client = await Client(l.address);
    await using conn = await l.accept();
    await client.send({ fn: t.echoClient });
    assert.equal(((await conn.recv()) as { fn: unknown }).fn, t.echoClient);
    await client.send(tmpDir);
    await assert.rejects(conn.recv(), isUntrusted(/tmpDir.*helpers\.js/));
    // The default Client refuses what the listener's side sends; trust: 'all' takes it.
    await conn.send(t.echoClient);
    await assert.rejects(client.recv(), isUntrusted(/echoClient/));
    await using l2 = await Listener.create(undefined, { trust: 'all' });
    await using client2 = await Client(l2.address, { trust: 'all' });
    await using conn2 = await l2.accept();
    await client2.send((x: number) => x * 2);
    assert.equal(((await conn2.recv()) as (x: number) => number)(21), 42);
    await conn2.send(t.echoClient);
    assert.equal(await client2.recv(), t.echoClient);
    assert.throws(() => new Listener(undefined, { trust: 'everything' as 'all' }), InvalidArgumentError);
    await assert.rejects(Client(l.address, { trust: [42] as unknown as string[] }), InvalidArgumentError);
  });

  test('a 600 MiB length prefix breaks the connection before any of it is buffered (default limit 64 MiB)', async () => {
    await using l = await Listener.create();
    const [peer, conn] = await Promise.all([RawPeer.connect(l.address), l.accept()]);
    globalThis.gc?.();
    const before = process.memoryUsage();
    const head = Buffer.alloc(4);
    head.writeInt32BE(600 << 20);
    await peer.write(Buffer.concat([head, Buffer.alloc(1 << 20, 0x61)]));
    // Bounded: without the check the receiver would wait for the other 599 MiB.
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the connection is still waiting for the body')), 20_000);
    });
    try {
      await Promise.race([
        assert.rejects(
          conn.recvBytes(),
          (err: ProcessError) => err.code === 'ERR_MP_BAD_MESSAGE' && /too long: 629145600 bytes/.test(err.message),
        ),
        stuck,
      ]);
      await Promise.race([peer.closed, stuck]);
    } finally {
      clearTimeout(timer);
    }
    const after = process.memoryUsage();
    const grew = after.arrayBuffers - before.arrayBuffers;
    assert.ok(grew < 32 << 20, `arrayBuffers grew by ${grew} bytes`);
    // A message at the limit still passes.
    await using l2 = await Listener.create(undefined, { maxMessageSize: 1024 });
    await using client = await Client(l2.address);
    await using conn2 = await l2.accept();
    await client.sendBytes(Buffer.alloc(1024, 1));
    assert.equal((await conn2.recvBytes()).length, 1024);
  });
});
