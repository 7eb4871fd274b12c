// What a manager's server and its clients rebuild from the wire: functions and classes only from
// the modules of the registered types and `trustedModules`, never the library's own modules nor
// whatever is loaded already; and a frame over `maxMessage` is refused at its length prefix.
// Crafted messages come from an authenticated peer: the threat is a client (or a server) that
// holds the key and sends what the library itself never would.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { InvalidArgumentError, ProcessError, RemoteError } from '../src/index.js';
import { Client, Listener } from '../src/ipc/listener.js';
import { Manager, SyncManager } from '../src/managers/managers.js';
import { loadFunctionSync } from '../src/reduction/functions.js';
import { assertNoLeftovers, crafted, fixture, RawPeer, sideEffects, tmpDir } from './helpers.js';

const dir = tmpDir();
// The side-effect fixtures write their file here when imported (the server inherits it).
process.env.MP_SIDE_EFFECT_DIR = dir;
const ESM = fixture('side_effect.mjs');
const CJS = fixture('side_effect_cjs.js');
const LIBRARY = path.join(__dirname, '..', 'src');

/** A source text that writes `file` when it is compiled and evaluated. */
const writes = (file: string): string => `(process.getBuiltinModule('fs').writeFileSync(${JSON.stringify(file)}, 'pwned'), 0)`;

/** Resident memory of process `pid`, in bytes (Linux). */
function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

describe('the manager server rebuilds only what it was told to trust', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager();
  });
  after(async () => {
    await m.shutdown();
    await assertNoLeftovers();
  });

  test('a library export that compiles source, as a sort key, is refused: nothing runs in the server', async () => {
    const marker = path.join(dir, 'pwned-sort');
    // Items loadFunctionSync would compile and run, were it called as the key.
    const l = await m.list([
      { kind: 'source', source: writes(marker), name: 'a' },
      { kind: 'source', source: writes(marker), name: 'b' },
    ]);
    await assert.rejects(
      l.sort({ key: loadFunctionSync as (x: unknown) => unknown }),
      (e: Error) =>
        e instanceof RemoteError && /refused/.test(e.message) && /loadFunctionSync/.test(e.message) && /trustedModules/.test(e.message),
    );
    assert.equal(fs.existsSync(marker), false);
    assert.equal(await l.len(), 2, 'the server keeps serving');
  });

  test('a library entry script, a module not trusted, a built-in module: refused by reference; the server stays up', async () => {
    const l = await m.list([3, 1, 2]);
    await using conn = await Client(m.address!, { authkey: m.authkey });
    const keys = [
      [crafted.cjs(path.join(LIBRARY, 'cli', 'main.js'), null), /main\.js/],
      [crafted.cjs(path.join(LIBRARY, 'entry', 'spawn_main.js'), null), /spawn_main\.js/],
      [crafted.cjs(path.join(LIBRARY, 'reduction', 'reduction.js'), 'loads'), /loads/],
      [crafted.esm(ESM, 'evil'), /side_effect\.mjs/],
      [crafted.cjs(CJS, 'evil'), /side_effect_cjs\.js/],
      [crafted.cjs('child_process', 'execSync'), /malformed/],
      [crafted.source('(x) => x'), /sent by value/],
    ] as const;
    let reqId = 100;
    for (const [key, what] of keys) {
      await conn.sendBytes(crafted.message([++reqId, 'call', l._token.id, 'sort', [{ key }]]));
      const [id, status, info] = (await conn.recv()) as [number, number, { message: string }];
      assert.equal(id, reqId);
      assert.equal(status, 3, 'a failure of the server (RemoteError)');
      assert.match(info.message, /refused/);
      assert.match(info.message, what);
    }
    assert.deepEqual(sideEffects(dir), [], 'nothing was imported');
    assert.ok(m.process!.isAlive());
    assert.deepEqual(await l._getvalue(), [3, 1, 2]);
  });

  test('method names that are not exposed methods reach nothing', async () => {
    const d = await m.dict();
    for (const name of ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', '_getvalue', '_dispose']) {
      await assert.rejects(d._callmethod(name), (e: Error) => e instanceof RemoteError && /not exposed/.test(e.message), name);
    }
  });

  test(
    'a 600 MiB length prefix closes the connection before the frame is buffered; the server does not grow',
    { skip: process.platform !== 'linux' && '/proc' },
    async () => {
      const pid = m.process!.pid!;
      const peer = await RawPeer.connect(m.address as string, m.authkey);
      const before = rssOf(pid);
      const head = Buffer.alloc(4);
      head.writeInt32BE(600 << 20);
      await peer.write(head);
      // Up to 64 MiB of the body, while the server still reads: it must not keep them.
      const chunk = Buffer.alloc(1 << 20, 0x61);
      for (let i = 0; i < 64 && !peer.isClosed; i++) if (!(await peer.write(chunk))) break;
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the server still holds the connection open, reading the frame')), 20_000);
      });
      try {
        await Promise.race([peer.closed, stuck]);
      } finally {
        clearTimeout(timer);
      }
      const grew = rssOf(pid) - before;
      assert.ok(grew < 32 << 20, `the server grew by ${grew} bytes`);
      const d = await m.dict({ still: 'serving' });
      assert.equal(await d.get('still'), 'serving');
    },
  );

  test('maxMessage is checked', () => {
    assert.throws(() => new SyncManager({ maxMessage: -1 }), /maxMessage must be an integer/);
    assert.throws(() => new SyncManager({ trustedModules: 'x' as unknown as string[] }), /trustedModules must be an array/);
  });
});

describe('a manager client rebuilds only what its process trusts', () => {
  // The server is played by hand, on the socket: the client does not offer a ring.
  before(() => {
    process.env.MULTIPROC_MANAGER_RINGS = '0';
  });
  after(async () => {
    delete process.env.MULTIPROC_MANAGER_RINGS;
    await assertNoLeftovers();
  });

  test('a reply naming a module the client does not trust is refused, never imported', async () => {
    const authkey = 'client-side';
    await using l = await Listener.create(null, { authkey, family: 'AF_UNIX' });
    const replies = [
      [crafted.esm(ESM, 'evil'), /side_effect\.mjs/],
      [crafted.cjs(path.join(LIBRARY, 'reduction', 'functions.js'), 'loadFunctionSync'), /loadFunctionSync/],
    ] as const;
    for (const [value, what] of replies) {
      // The server is played by hand: it answers the client's ping with a crafted reply.
      const connecting = new SyncManager({ address: l.address, authkey }).connect();
      const conn = await l.accept();
      const request = await conn.recvBytes();
      const [id] = JSON.parse(request.toString('utf8', 1)) as [number];
      await conn.sendBytes(crafted.message([id, 0, value]));
      await assert.rejects(connecting, (e: Error) => e instanceof ProcessError && /refused/.test(e.message) && what.test(e.message));
      conn.close();
    }
    assert.deepEqual(sideEffects(dir), []);
  });

  test('a proxy is built only from a BaseProxy subclass, even from a trusted module', async () => {
    // The fixture registers types with a manager class: its module is trusted by this process.
    const targets = fixture('manager_targets.mjs');
    await import(pathToFileURL(targets).href);
    const authkey = 'proxy-type';
    await using l = await Listener.create(null, { authkey, family: 'AF_UNIX' });
    const connecting = new SyncManager({ address: l.address, authkey }).connect();
    await using conn = await l.accept();
    const [id] = JSON.parse((await conn.recvBytes()).toString('utf8', 1)) as [number];
    const state = {
      typeid: 'Foo',
      id: '1',
      address: l.address,
      authkey,
      exposed: [],
      proxytype: crafted.esm(targets, 'FooBar'),
      grant: true,
    };
    await conn.sendBytes(crafted.message([id, 2, state]));
    await assert.rejects(connecting, (e: Error) => e instanceof InvalidArgumentError && /not a BaseProxy subclass/.test(e.message));
  });
});
