// Pipe ends for another process without the native addon. Without it, a pipe's rings are memory
// of the process that made them (shm/emulated.ts), which no other process can map. So a pipe end
// sent to a spawn child stays in the sender: the sender keeps a copy of the end and relays its
// messages to and from the child over a Unix socket, and the child gets a socket connection in
// its place. The pipe lives in the process that made it: when that process ends, so does the
// child's end (it sees EOF).
//
// One server per process, listening in a directory only this user can enter; each relayed end
// has a random token, which the child sends first (it came with the child's start message). The
// relay never keeps the sender alive by itself: its socket is unreferenced and its waits on the
// rings are made without holding the event loop (the child's own receives hold the child's).
// The same server serves queues to other processes (queue_relay.ts), with tokens of their own.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { installRelay, type Connection, type RelayedEnd } from './connection.js';
import { frame, FrameReader } from './framing.js';
import { SocketConnection, MAX_MESSAGE } from './socket.js';
import { TRUST_ALL } from '../reduction/policy.js';
import { waitsWithoutKeepingAlive } from '../shm/native.js';

const TOKEN_BYTES = 16;
let server: { path: string; dir: string; server: net.Server } | undefined;

/**
 * @internal What a token opens: a pipe end (for one connection) or a queue (for any number).
 * `attach` is called once the peer sent the token, with the socket; it says what to do with each
 * later message (false: close the socket) and when the socket is gone (called once).
 */
export interface Served {
  once: boolean;
  attach(socket: net.Socket): { message(msg: Buffer): boolean; gone(): void };
}
const served = new Map<string, Served>();

function listen(): { path: string; server: net.Server } {
  if (server) return server;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'multiproc-relay-'));
  const where = path.join(dir, 's');
  const srv = net.createServer({ allowHalfOpen: true }, (socket) => serve(socket));
  srv.listen(where);
  srv.unref();
  server = { path: where, dir, server: srv };
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return server;
}

/** @internal Serve `what` on this process's relay socket to whoever connects with the token returned. */
export function serveToken(what: Served): RelayedEnd {
  const { path: where } = listen();
  const token = randomBytes(TOKEN_BYTES).toString('hex');
  served.set(token, what);
  return { relay: where, token };
}

/**
 * @internal Relay `end` (a copy of the pipe end being sent, which the relay now owns) to whichever
 * process connects with the token returned.
 */
export function relayEnd(end: Connection): RelayedEnd {
  return serveToken({ once: true, attach: (socket) => attachEnd(end, socket) });
}

/** @internal In the receiving process: the pipe end, as a connection to its relay. */
export function connectRelayed({ relay, token }: RelayedEnd): Connection {
  const conn = new SocketConnection(net.createConnection(relay), { maxMessageSize: MAX_MESSAGE, policy: TRUST_ALL });
  void conn.sendBytes(Buffer.from(token, 'hex'));
  return conn;
}

function serve(socket: net.Socket): void {
  socket.unref();
  const reader = new FrameReader();
  let user: ReturnType<Served['attach']> | undefined;
  let closed = false;
  const finish = (): void => {
    if (closed) return;
    closed = true;
    socket.destroy();
    user?.gone();
  };
  // Checked before buffering: a peer without the token sends 16 bytes and nothing else, and
  // no message may be longer than a socket connection accepts.
  const accept = (len: number): boolean => (user ? len <= MAX_MESSAGE : len === TOKEN_BYTES);
  const each = (msg: Buffer): boolean => {
    if (user) return user.message(msg);
    const token = msg.toString('hex');
    const what = served.get(token);
    if (!what) return false;
    if (what.once) served.delete(token);
    user = what.attach(socket);
    return true;
  };
  socket.on('data', (chunk: Buffer) => {
    if (!closed && !reader.push(chunk, accept, each)) finish();
  });
  socket.on('end', finish);
  socket.on('close', finish);
  socket.on('error', finish);
}

// A pipe end's side of its socket: messages from the child written into the pipe in order, and
// the pipe's messages sent to the child.
function attachEnd(end: Connection, socket: net.Socket): ReturnType<Served['attach']> {
  let writing: Promise<unknown> = Promise.resolve();
  if (end.readable) void pumpOut(end, socket).finally(() => socket.destroy());
  return {
    message: (msg) => {
      writing = writing.then(() => waitsWithoutKeepingAlive(() => end.sendBytes(msg))).catch(() => socket.destroy());
      return true;
    },
    // The pipe end goes once what the child sent is in the ring.
    gone: () => void writing.finally(() => end.close()),
  };
}

// Messages from the pipe to the child, until either side is gone.
async function pumpOut(end: Connection, socket: net.Socket): Promise<void> {
  try {
    for (;;) {
      const msg = await waitsWithoutKeepingAlive(() => end.recvBytes());
      if (socket.destroyed) return;
      const [h, body] = frame(msg);
      socket.write(h!);
      if (!socket.write(body!)) await new Promise((r) => socket.once('drain', r));
    }
  } catch {
    // EOF or closed: the child sees its end close.
  }
}

installRelay({ serve: relayEnd, connect: connectRelayed });
