// Listener and Client over TCP and Unix sockets: CPython's _TestListener, _TestListenerClient and
// the authentication tests (Lib/test/_test_multiprocessing.py), between real processes on both
// backends, plus what Python leaves implicit: framing that survives garbage, large messages,
// refusal to send a socket connection, and wire compatibility with CPython's own
// multiprocessing.connection (raw bytes, with an authkey).
//
// Children are started from test/fixtures/listener_targets.mts; they report through a Pipe end or
// through the connection under test, never through timing.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
  AbortError,
  AuthenticationError,
  EOFError,
  InvalidArgumentError,
  NotTransferableError,
  Pipe,
  ProcessError,
  TimeoutError,
  wait,
  type Process,
} from '../src/index.js';
import { Client, Listener, SocketConnection, type Address } from '../src/ipc/listener.js';
import { describeBackends, fixture, start, tmpDir } from './helpers.js';

type Targets = typeof import('./fixtures/listener_targets.mjs');
let t: Targets;
const dir = tmpDir();
let seq = 0;
const sockPath = (): string => path.join(dir, `s${++seq}.sock`);

before(async () => {
  t = (await import(pathToFileURL(fixture('listener_targets.mjs')).href)) as Targets;
});

async function joined(p: Process): Promise<void> {
  await p.join();
  assert.equal(p.exitcode, 0, `child exited with ${p.exitcode}`);
}

/** A connected pair inside this process. */
async function pair(address?: Address, authkey?: string): Promise<[SocketConnection, SocketConnection, Listener]> {
  const l = await Listener.create(address, { authkey });
  const [a, b] = await Promise.all([l.accept(), Client(l.address, { authkey })]);
  return [a, b, l];
}

/** A raw socket to `address` that has connected. */
function rawConnect(address: Address): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = typeof address === 'string' ? net.connect(address) : net.connect(address[1], address[0]);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
    // Flowing, so that it sees the end and closes when we drop it.
    s.resume();
  });
}

const frame = (payload: Buffer): Buffer => {
  const h = Buffer.alloc(4);
  h.writeInt32BE(payload.length);
  return Buffer.concat([h, payload]);
};

const ADDRESSES: [string, () => Address | undefined][] = [
  ['TCP', () => undefined],
  ['Unix socket', sockPath],
];

describeBackends('Listener/Client between processes', (ctx, method) => {
  for (const [kind, addr] of ADDRESSES) {
    test(`${kind}: a child connects with Client; objects and bytes both ways, in order`, async () => {
      await using l = await Listener.create(addr(), { authkey: 'secret' });
      if (kind === 'TCP') {
        assert.equal((l.address as [string, number])[0], '127.0.0.1');
        assert.ok((l.address as [string, number])[1] > 0);
      } else assert.equal(typeof l.address, 'string');
      const p = start(ctx, t.echoClient, [l.address, 'secret']);
      await using conn = await l.accept();
      assert.ok(l.lastAccepted !== null);
      const objects = [42, 'text', { a: [1, 2, { b: null }] }, new Map([[1, 'x']]), 12345678901234567890n, new Date(0), [undefined, true]];
      for (const o of objects) await conn.send(o);
      for (const o of objects) assert.deepEqual(await conn.recv(), o);
      // Pipelined: many sends before any receive come back whole and in order.
      const sends = [];
      for (let i = 0; i < 500; i++) sends.push(i % 2 ? conn.send({ i }) : conn.sendBytes(Buffer.from(`bytes ${i}`)));
      await Promise.all(sends);
      for (let i = 0; i < 500; i++) {
        if (i % 2) assert.deepEqual(await conn.recv(), { i });
        else assert.equal((await conn.recvBytes()).toString(), `bytes ${i}`);
      }
      // sendBytes with offset and size; an empty message; recvBytesInto.
      await conn.sendBytes(Buffer.from('0123456789'), 2, 5);
      assert.equal((await conn.recvBytes()).toString(), '23456');
      await conn.sendBytes(new Uint8Array(0));
      assert.equal((await conn.recvBytes()).length, 0);
      await conn.sendBytes(Buffer.from('into'));
      const into = Buffer.alloc(10, 0x2e);
      assert.equal(await conn.recvBytesInto(into, 3), 4);
      assert.equal(into.toString(), '...into...');
      conn.close();
      await joined(p);
    });

    test(`${kind}: our Listener in a child, our Client in the parent, with an authkey`, async () => {
      const [r, w] = Pipe(false);
      const p = start(ctx, t.serveOnce, [addr(), 'k3y', w]);
      w.close();
      const address = (await r.recv()) as Address;
      {
        await using conn = await Client(address, { authkey: 'k3y' });
        for (let i = 0; i < 10; i++) await conn.send(['ping', i]);
        for (let i = 0; i < 10; i++) assert.deepEqual(await conn.recv(), ['ping', i]);
      }
      assert.deepEqual(await r.recv(), { ok: true, echoed: 10 });
      r.close();
      await joined(p);
      // The child closed its listener: a Unix socket file is gone.
      if (typeof address === 'string') assert.equal(fs.existsSync(address), false);
    });
  }

  test('a 20 MB message each way arrives intact', async () => {
    await using l = await Listener.create();
    const size = 20 << 20;
    const p = start(ctx, t.bigClient, [l.address, size]);
    await using conn = await l.accept();
    const big = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    await conn.sendBytes(big);
    assert.deepEqual(await conn.recv(), { size, sha256: createHash('sha256').update(big).digest('hex') });
    const back = await conn.recvBytes();
    assert.equal(back.length, size);
    for (let i = 0; i < size; i += 65537) assert.equal(back[i], (i * 31 + 7) & 0xff, `byte ${i}`);
    assert.equal(back[size - 1], ((size - 1) * 31 + 7) & 0xff);
    await conn.send('ack');
    await joined(p);
  });

  test('EOF after the peer sent and closed: every message first, then EOFError, again and again', async () => {
    await using l = await Listener.create(sockPath());
    const p = start(ctx, t.sendThenClose, [l.address, 100]);
    await using conn = await l.accept();
    for (let i = 0; i < 100; i++) assert.deepEqual(await conn.recv(), { i, text: `message ${i}` });
    assert.equal((await conn.recvBytes()).toString(), 'last');
    await assert.rejects(conn.recv(), EOFError);
    await assert.rejects(conn.recvBytes(), EOFError);
    assert.equal(await conn.poll(), true, 'poll() is true at EOF: recv() would answer at once');
    await joined(p);
  });

  test(`EOF when the peer ${method !== 'thread' ? 'is killed' : 'is terminated'}`, async () => {
    await using l = await Listener.create();
    const p = start(ctx, t.sendThenHang, [l.address]);
    await using conn = await l.accept();
    assert.equal(await conn.recv(), 'hello');
    if (method !== 'thread') p.kill();
    else p.terminate();
    await assert.rejects(conn.recv(), EOFError);
    await p.join();
    // Writing to a dead peer fails (at once or on a later write) with a broken pipe.
    await assert.rejects(
      async () => {
        for (let i = 0; i < 100; i++) await conn.sendBytes(Buffer.alloc(100_000));
      },
      (err: ProcessError) => err.code === 'ERR_MP_BROKEN_PIPE',
    );
  });

  test('wrong authkey, child as Client: AuthenticationError on both sides, and the listener keeps accepting', async () => {
    await using l = await Listener.create(undefined, { authkey: 'right' });
    const [r, w] = Pipe(false);
    const p = start(ctx, t.clientReport, [l.address, 'wrong', w]);
    await assert.rejects(l.accept(), (err: Error) => err instanceof AuthenticationError && /digest received was wrong/.test(err.message));
    const report = (await r.recv()) as { ok: boolean; name: string; message: string };
    assert.equal(report.ok, false);
    assert.equal(report.name, 'AuthenticationError');
    assert.match(report.message, /digest sent was rejected/);
    await joined(p);
    // The right key still gets in.
    const p2 = start(ctx, t.clientReport, [l.address, 'right', w]);
    w.close();
    await using conn = await l.accept();
    assert.equal(await conn.recv(), 'authenticated');
    assert.deepEqual(await r.recv(), { ok: true });
    r.close();
    await joined(p2);
  });

  test('wrong authkey, child as Listener: the parent Client gets AuthenticationError, the child accept() too', async () => {
    const [r, w] = Pipe(false);
    const p = start(ctx, t.serveOnce, [undefined, 'right', w]);
    w.close();
    const address = (await r.recv()) as Address;
    await assert.rejects(
      Client(address, { authkey: 'wrong' }),
      (err: Error) => err instanceof AuthenticationError && /rejected/.test(err.message),
    );
    const report = (await r.recv()) as { ok: boolean; name: string; message: string };
    assert.equal(report.ok, false);
    assert.equal(report.name, 'AuthenticationError');
    r.close();
    await joined(p);
  });

  test('a SocketConnection or Listener cannot be sent to a child: refused at the call, naming the fix', async () => {
    const [a, b, l] = await pair();
    for (const obj of [a, l]) {
      assert.throws(
        // A mistake TypeScript would catch: made on purpose, as a JavaScript caller could.
        () => new ctx.Process({ target: t.echoClient, args: [obj as unknown as string] }).start(),
        (err: Error) =>
          err instanceof NotTransferableError &&
          /cannot be sent to another/.test(err.message) &&
          /Client\(\) in the child/.test(err.message),
      );
    }
    const [x, y] = Pipe();
    assert.throws(() => x.send({ conn: b }), NotTransferableError);
    x.close();
    y.close();
    a.close();
    b.close();
    l.close();
  });
});

describe('SocketConnection in one process', () => {
  test('poll(timeout): false after about the timeout, true once a message is there; wait() sees it', async () => {
    const [a, b, l] = await pair();
    const t0 = performance.now();
    assert.equal(await a.poll(100), false);
    const took = performance.now() - t0;
    assert.ok(took >= 95 && took < 2000, `poll(100) took ${took.toFixed(1)} ms`);
    assert.equal(await a.poll(), false);
    assert.deepEqual(await wait([a, b], 50), []);
    const polled = a.poll(null);
    await b.send('x');
    assert.equal(await polled, true);
    assert.deepEqual(await wait([a, b], 5000), [a]);
    assert.equal(await a.poll(0), true, 'still there: poll does not consume');
    assert.equal(await a.recv(), 'x');
    const ctl = new AbortController();
    const aborted = a.poll(null, { signal: ctl.signal });
    ctl.abort();
    await assert.rejects(aborted, AbortError);
    a.close();
    b.close();
    l.close();
  });

  test('recvBytes(maxlength) raises BufferTooShort with the message; the connection stays usable', async () => {
    const [a, b, l] = await pair();
    await b.sendBytes(Buffer.from('0123456789'));
    await assert.rejects(
      a.recvBytes(5),
      (err: Error & { data?: Uint8Array }) => err.name === 'BufferTooShort' && Buffer.from(err.data!).toString() === '0123456789',
    );
    await b.send('next');
    assert.equal(await a.recv(), 'next');
    for (const c of [a, b]) c.close();
    l.close();
  });

  test('closed: calls on a closed connection fail; a pending recv fails when closed', async () => {
    const [a, b, l] = await pair();
    const pending = a.recv();
    a.close();
    assert.equal(a.closed, true);
    await assert.rejects(pending, (err: ProcessError) => err.code === 'ERR_MP_CLOSED');
    assert.throws(
      () => a.send(1),
      (err: ProcessError) => err.code === 'ERR_MP_CLOSED',
    );
    await assert.rejects(b.recv(), EOFError);
    a.close(); // twice is fine
    b.close();
    l.close();
  });

  for (const [kind, addr] of ADDRESSES) {
    test(`${kind}: garbage and oversized frames close that connection only; the listener keeps accepting`, async () => {
      // maxMessageSize: text read as a length ('GET ' is 1.1 GB) is refused rather than awaited.
      await using l = await Listener.create(addr(), { maxMessageSize: 1 << 20 });
      const cases: [string, Buffer, RegExp][] = [
        ['length 2^31', Buffer.from([0x80, 0, 0, 0, 1, 2, 3]), /length prefix -2147483648/],
        ['ASCII garbage', Buffer.from('GET / HTTP/1.1\r\n\r\n'), /too long: 1195725856 bytes/],
        ['a 64-bit length of 2^40', Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 0]), /too long: 1099511627776 bytes/],
      ];
      for (const [what, bytes, message] of cases) {
        const raw = await rawConnect(l.address);
        const closed = new Promise((r) => raw.once('close', r));
        raw.on('error', () => undefined);
        // A good message first: it is still delivered.
        raw.write(Buffer.concat([frame(Buffer.from('fine')), bytes]));
        const conn = await l.accept();
        assert.equal((await conn.recvBytes()).toString(), 'fine', what);
        await assert.rejects(conn.recvBytes(), (err: ProcessError) => err.code === 'ERR_MP_BAD_MESSAGE' && message.test(err.message), what);
        await assert.rejects(conn.recv(), (err: ProcessError) => err.code === 'ERR_MP_BAD_MESSAGE', 'and stays failed');
        await closed; // we dropped the socket
        conn.close();
      }
      // The listener is unharmed.
      const [c, a] = await Promise.all([Client(l.address), l.accept()]);
      await c.send('still here');
      assert.equal(await a.recv(), 'still here');
      c.close();
      a.close();
    });
  }

  test('the peer closing in the middle of a message is EOFError after the whole messages', async () => {
    await using l = await Listener.create();
    const raw = await rawConnect(l.address);
    const h = Buffer.alloc(4);
    h.writeInt32BE(100);
    raw.end(Buffer.concat([frame(Buffer.from('whole')), h, Buffer.alloc(10)]));
    await using conn = await l.accept();
    assert.equal((await conn.recvBytes()).toString(), 'whole');
    await assert.rejects(conn.recvBytes(), (err: Error) => err instanceof EOFError && /middle of a message/.test(err.message));
  });

  test('with an authkey, a peer that does not speak the protocol gets nothing and accept() says why', async () => {
    await using l = await Listener.create(undefined, { authkey: 'k' });
    // 1. A huge length during the handshake: refused before anything is allocated.
    let raw = await rawConnect(l.address);
    raw.on('error', () => undefined);
    const received: Buffer[] = [];
    raw.on('data', (d: Buffer) => received.push(d));
    let closed = new Promise((r) => raw.once('close', r));
    raw.write(Buffer.from([0x7f, 0xff, 0xff, 0xff]));
    await assert.rejects(
      l.accept(),
      (err: Error) => err instanceof AuthenticationError && /2147483647 bytes during authentication/.test(err.message),
    );
    await closed;
    // All the peer saw is the challenge: no data, no welcome.
    const seen = Buffer.concat(received);
    assert.equal(seen.readInt32BE(0), seen.length - 4);
    assert.ok(seen.subarray(4).toString('latin1').startsWith('#CHALLENGE#{sha256}'));
    // 2. A peer that sends a message instead of answering: its bytes are taken as a (wrong) answer.
    raw = await rawConnect(l.address);
    raw.on('error', () => undefined);
    closed = new Promise((r) => raw.once('close', r));
    raw.write(frame(Buffer.from('hello, is anyone there')));
    await assert.rejects(l.accept(), AuthenticationError);
    await closed;
    // 3. A Client without the key waits for nothing: it receives the challenge as a message.
    const noKey = await Client(l.address);
    const challenge = await noKey.recvBytes();
    assert.ok(challenge.toString('latin1').startsWith('#CHALLENGE#'));
    noKey.close();
    await assert.rejects(l.accept(), EOFError);
    // 4. A proper client still gets in.
    const [c, a] = await Promise.all([Client(l.address, { authkey: Buffer.from('k') }), l.accept()]);
    await a.sendBytes(Buffer.from('welcome'));
    assert.equal((await c.recvBytes()).toString(), 'welcome');
    c.close();
    a.close();
  });

  test('authkey as string, Buffer, Uint8Array or ArrayBuffer: the same key', async () => {
    const key = 'clé';
    const bytes = Buffer.from(key, 'utf8');
    for (const other of [bytes, new Uint8Array(bytes), bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)]) {
      const [a, b, l] = await pair(undefined, key).then(async ([x, y, z]) => {
        x.close();
        y.close();
        const [c, d] = await Promise.all([z.accept(), Client(z.address, { authkey: other as ArrayBuffer })]);
        return [c, d, z] as const;
      });
      await b.send(1);
      assert.equal(await a.recv(), 1);
      a.close();
      b.close();
      l.close();
    }
  });

  test('await using closes the listener (removing its Unix socket file) and connections', async () => {
    const p = sockPath();
    let conn: SocketConnection;
    let listener: Listener;
    {
      await using l = await Listener.create(p);
      listener = l;
      assert.equal(fs.existsSync(p), true);
      await using c = await Client(p);
      conn = c;
      await l.accept();
    }
    assert.equal(listener.closed, true);
    assert.equal(conn.closed, true);
    assert.equal(fs.existsSync(p), false);
    await assert.rejects(listener.accept(), (err: ProcessError) => err.code === 'ERR_MP_CLOSED');
    await assert.rejects(Client(p), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  });

  test('new Listener(): accept() waits for the bind; ready; address; family AF_UNIX without an address', async () => {
    const l = new Listener();
    assert.throws(
      () => l.address,
      (err: ProcessError) => err.code === 'ERR_MP_NOT_BOUND',
    );
    const [a, b] = await Promise.all([l.accept(), l.ready.then(() => Client(l.address))]);
    assert.equal(await l.ready, l);
    a.close();
    b.close();
    l.close();
    await using u = await Listener.create(null, { family: 'AF_UNIX' });
    assert.equal(typeof u.address, 'string');
    assert.equal(u.family, 'AF_UNIX');
    assert.equal(fs.existsSync(u.address as string), true);
    await using v = await Listener.create(['localhost', 0]);
    const [c, d] = await Promise.all([v.accept(), Client(v.address)]);
    await d.send('via localhost');
    assert.equal(await c.recv(), 'via localhost');
    c.close();
    d.close();
  });

  test('a Linux abstract socket (a path starting with NUL) works and leaves no file', { skip: process.platform !== 'linux' }, async () => {
    const name = `\0mp-test-${process.pid}-${++seq}`;
    await using l = await Listener.create(name);
    assert.equal(l.address, name);
    const [a, b] = await Promise.all([l.accept(), Client(name)]);
    await b.send('abstract');
    assert.equal(await a.recv(), 'abstract');
    a.close();
    b.close();
  });

  test('a client that connected, sent and closed before accept() is still accepted (CPython issue 14725)', async () => {
    await using l = await Listener.create(sockPath());
    const c = await Client(l.address);
    await c.send('early');
    c.close();
    await using conn = await l.accept();
    assert.equal(await conn.recv(), 'early');
    await assert.rejects(conn.recv(), EOFError);
  });

  test('bind errors: create() rejects, accept() on new Listener() rejects with it; bad arguments throw', async () => {
    await using l = await Listener.create();
    await assert.rejects(Listener.create(l.address), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE');
    const l2 = new Listener(l.address);
    await assert.rejects(l2.accept(), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE');
    await assert.rejects(l2.ready, (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE');
    assert.throws(
      () => l2.address,
      (err: ProcessError) => err.code === 'ERR_MP_NOT_BOUND',
    );
    assert.throws(() => new Listener(['127.0.0.1', 70000]), InvalidArgumentError);
    assert.throws(() => new Listener('/tmp/x.sock', { family: 'AF_INET' }), InvalidArgumentError);
    // A Windows named pipe (Python's AF_PIPE) is refused, not bound as a file of that name.
    assert.throws(() => new Listener('\\\\.\\pipe\\mp-test'), /Windows named pipe/);
    assert.throws(() => new Listener(undefined, { family: 'AF_PIPE' as never }), /Windows named pipe/);
    await assert.rejects(Client('\\\\.\\pipe\\mp-test'), /Windows named pipe/);
    assert.throws(() => new Listener(undefined, { authkey: 42 as unknown as string }), InvalidArgumentError);
    await assert.rejects(Client(42 as unknown as Address), InvalidArgumentError);
  });

  test('accept({ timeout }) rejects with TimeoutError; accept({ signal }) with AbortError; close() rejects pending accepts', async () => {
    const l = await Listener.create();
    await assert.rejects(l.accept({ timeout: 50 }), TimeoutError);
    const ctl = new AbortController();
    const p = l.accept({ signal: ctl.signal });
    ctl.abort();
    await assert.rejects(p, AbortError);
    const pending = l.accept();
    l.close();
    await assert.rejects(pending, (err: ProcessError) => err.code === 'ERR_MP_CLOSED');
    await assert.rejects(Client(l.address), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
  });

  test('writes wait for the socket: a reader that does not read holds the writer back (backpressure)', async () => {
    const [a, b, l] = await pair();
    // b never reads until the end: a's sends must stop resolving once the buffers are full.
    const chunk = Buffer.alloc(1 << 20);
    let resolved = 0;
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 64; i++)
      sends.push(
        a.sendBytes(chunk).then(() => {
          resolved++;
        }),
      );
    await Promise.race([Promise.all(sends), new Promise((r) => setTimeout(r, 300))]);
    assert.ok(resolved < 64, `all ${resolved} sends of 1 MiB resolved with nobody reading`);
    for (let i = 0; i < 64; i++) assert.equal((await b.recvBytes()).length, chunk.length);
    await Promise.all(sends);
    a.close();
    b.close();
    l.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Interoperability with CPython's multiprocessing.connection: raw bytes, with an authkey.

// python3 (3.11 here: the legacy HMAC-MD5 handshake) and, when one is installed, a CPython 3.12+
// (the {sha256} handshake): on PATH, or under pyenv.
const pyVersion = (py: string): string | undefined => {
  const r = spawnSync(py, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
};
function findPythons(): string[] {
  const pyenv = path.join(process.env.PYENV_ROOT ?? path.join(os.homedir(), '.pyenv'), 'versions');
  const candidates = ['python3', 'python3.13', 'python3.12'];
  if (fs.existsSync(pyenv)) for (const v of fs.readdirSync(pyenv).sort().reverse()) candidates.push(path.join(pyenv, v, 'bin', 'python3'));
  const byVersion = new Map<string, string>();
  for (const py of candidates) {
    const v = pyVersion(py);
    if (v && !byVersion.has(v)) byVersion.set(v, py);
  }
  const modern = [...byVersion].find(([v]) => Number(v.split('.')[0]) === 3 && Number(v.split('.')[1]) >= 12);
  const legacy = byVersion.has(pyVersion('python3') ?? '') ? 'python3' : undefined;
  return [...new Set([legacy, modern?.[1]].filter((x): x is string => x !== undefined))];
}
const PYTHONS = findPythons();

const PY_LISTENER = `
import sys, json
from multiprocessing.connection import Listener
family, key = sys.argv[1], sys.argv[2].encode()
address = ('127.0.0.1', 0) if family == 'tcp' else sys.argv[3]
with Listener(address, authkey=key) as l:
    print(json.dumps(list(l.address) if family == 'tcp' else l.address), flush=True)
    try:
        with l.accept() as c:
            while True:
                try:
                    m = c.recv_bytes()
                except EOFError:
                    break
                c.send_bytes(b'py:' + m[::-1])
        print(json.dumps({'ok': True}), flush=True)
    except Exception as e:
        print(json.dumps({'ok': False, 'error': type(e).__name__, 'message': str(e)}), flush=True)
`;

const PY_CLIENT = `
import sys, json, hashlib
from multiprocessing.connection import Client
address, key = json.loads(sys.argv[1]), sys.argv[2].encode()
address = tuple(address) if isinstance(address, list) else address
try:
    with Client(address, authkey=key) as c:
        c.send_bytes(b'hello from python')
        m = c.recv_bytes()
        big = c.recv_bytes()
        c.send_bytes(hashlib.sha256(big).hexdigest().encode())
        print(json.dumps({'ok': True, 'got': m.decode(), 'big': len(big)}), flush=True)
except Exception as e:
    print(json.dumps({'ok': False, 'error': type(e).__name__, 'message': str(e)}), flush=True)
`;

/** Run python with `code`; resolves its JSON lines as they come, and its exit. */
function runPython(py: string, code: string, args: string[]): { lines: AsyncGenerator; exited: Promise<number | null> } {
  const child = spawn(py, ['-c', code, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  async function* lines(): AsyncGenerator {
    let buf = '';
    for await (const chunk of child.stdout.setEncoding('utf8')) {
      buf += chunk as string;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        yield JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
  }
  return { lines: lines(), exited };
}

describe('interoperability with CPython multiprocessing.connection', { skip: PYTHONS.length === 0 && 'no python3' }, () => {
  for (const py of PYTHONS) {
    const v = pyVersion(py)!;
    const proto = Number(v.split('.')[1]) >= 12 ? 'HMAC-SHA256 protocol' : 'legacy HMAC-MD5 protocol';
    for (const family of ['tcp', 'unix']) {
      test(`Python ${v} Listener (${family}) + our Client, authkey, bytes both ways (${proto})`, async () => {
        const py1 = runPython(py, PY_LISTENER, [family, 'shared key', sockPath()]);
        const address = (await py1.lines.next()).value as Address;
        {
          await using c = await Client(address, { authkey: 'shared key' });
          await c.sendBytes(Buffer.from('abc'));
          assert.equal((await c.recvBytes()).toString(), 'py:cba');
          const big = Buffer.alloc(3 << 20, 0x5a);
          big[0] = 1;
          await c.sendBytes(big);
          const back = await c.recvBytes();
          assert.equal(back.length, big.length + 3);
          assert.equal(back[back.length - 1], 1);
        }
        assert.deepEqual((await py1.lines.next()).value, { ok: true });
        assert.equal(await py1.exited, 0);

        const py2 = runPython(py, PY_LISTENER, [family, 'shared key', sockPath()]);
        const address2 = (await py2.lines.next()).value as Address;
        await assert.rejects(Client(address2, { authkey: 'other key' }), AuthenticationError);
        assert.deepEqual((await py2.lines.next()).value, { ok: false, error: 'AuthenticationError', message: 'digest received was wrong' });
        assert.equal(await py2.exited, 0);
      });

      test(`our Listener (${family}) + Python ${v} Client, authkey, bytes both ways (${proto})`, async () => {
        await using l = await Listener.create(family === 'tcp' ? undefined : sockPath(), { authkey: Buffer.from('shared key') });
        const py1 = runPython(py, PY_CLIENT, [JSON.stringify(l.address), 'shared key']);
        {
          await using conn = await l.accept();
          assert.equal((await conn.recvBytes()).toString(), 'hello from python');
          await conn.sendBytes(Buffer.from('hello from node'));
          const big = Buffer.alloc(3 << 20, 7);
          await conn.sendBytes(big);
          assert.equal((await conn.recvBytes()).toString(), createHash('sha256').update(big).digest('hex'));
        }
        assert.deepEqual((await py1.lines.next()).value, { ok: true, got: 'hello from node', big: 3 << 20 });
        assert.equal(await py1.exited, 0);

        const py2 = runPython(py, PY_CLIENT, [JSON.stringify(l.address), 'other key']);
        await assert.rejects(
          l.accept(),
          (err: Error) => err instanceof AuthenticationError && /digest received was wrong/.test(err.message),
        );
        assert.deepEqual((await py2.lines.next()).value, { ok: false, error: 'AuthenticationError', message: 'digest sent was rejected' });
        assert.equal(await py2.exited, 0);
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------

describeBackends('socket round trip', (ctx, method) => {
  for (const [kind, addr] of ADDRESSES) {
    test(`${kind}: ping-pong with a child (figure printed)`, async (tc) => {
      await using l = await Listener.create(addr());
      const p = start(ctx, t.echoClient, [l.address]);
      await using conn = await l.accept();
      const one = Buffer.from('x');
      for (let i = 0; i < 500; i++) {
        await conn.sendBytes(one);
        await conn.recvBytes();
      }
      const n = 5000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        await conn.sendBytes(one);
        await conn.recvBytes();
      }
      const us = ((performance.now() - t0) * 1000) / n;
      tc.diagnostic(`${kind} [${method}] round trip: ${us.toFixed(1)} µs`);
      conn.close();
      await joined(p);
    });
  }
});
