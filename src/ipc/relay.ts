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
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { installRelay, type Connection, type RelayedEnd } from './connection.js';
import { SocketConnection, MAX_MESSAGE } from './socket.js';
import { TRUST_ALL } from '../reduction/policy.js';
import { waitsWithoutKeepingAlive } from '../shm/native.js';

const TOKEN_BYTES = 16;
let server: { path: string; dir: string; server: net.Server } | undefined;
const ends = new Map<string, Connection>();

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

/**
 * @internal Relay `end` (a copy of the pipe end being sent, which the relay now owns) to whichever
 * process connects with the token returned.
 */
export function relayEnd(end: Connection): RelayedEnd {
  const { path: where } = listen();
  const token = randomBytes(TOKEN_BYTES).toString('hex');
  ends.set(token, end);
  return { relay: where, token };
}

/** @internal In the receiving process: the pipe end, as a connection to its relay. */
export function connectRelayed({ relay, token }: RelayedEnd): Connection {
  const conn = new SocketConnection(net.createConnection(relay), { maxMessageSize: MAX_MESSAGE, policy: TRUST_ALL });
  void conn.sendBytes(Buffer.from(token, 'hex'));
  return conn;
}

// CPython's framing, as SocketConnection writes it: a 4-byte big-endian length (-1 then an
// 8-byte length for messages over 2 GiB), then the bytes.
function frame(msg: Uint8Array): Buffer[] {
  if (msg.length < 0x7fffffff) {
    const h = Buffer.alloc(4);
    h.writeInt32BE(msg.length);
    return [h, Buffer.from(msg.buffer as ArrayBuffer, msg.byteOffset, msg.length)];
  }
  const h = Buffer.alloc(12);
  h.writeInt32BE(-1);
  h.writeBigUInt64BE(BigInt(msg.length), 4);
  return [h, Buffer.from(msg.buffer as ArrayBuffer, msg.byteOffset, msg.length)];
}

function serve(socket: net.Socket): void {
  socket.unref();
  let chunks: Buffer = Buffer.alloc(0);
  let end: Connection | undefined;
  let closed = false;
  // Messages from the child, written into the pipe in order.
  let writing: Promise<unknown> = Promise.resolve();
  const finish = (): void => {
    if (closed) return;
    closed = true;
    socket.destroy();
    // The pipe end goes once what the child sent is in the ring.
    void writing.finally(() => end?.close());
  };
  socket.on('data', (chunk: Buffer) => {
    chunks = chunks.length ? Buffer.concat([chunks, chunk]) : chunk;
    for (;;) {
      if (chunks.length < 4) return;
      let len = chunks.readInt32BE(0);
      let at = 4;
      if (len === -1) {
        if (chunks.length < 12) return;
        len = Number(chunks.readBigUInt64BE(4));
        at = 12;
      }
      // Checked before buffering: a peer without the token sends 16 bytes and nothing else, and
      // no message may be longer than a socket connection accepts.
      if (len < 0 || (!end && len !== TOKEN_BYTES) || len > MAX_MESSAGE) {
        finish();
        return;
      }
      if (chunks.length < at + len) return;
      const msg = Buffer.from(chunks.subarray(at, at + len));
      chunks = chunks.subarray(at + len);
      if (!end) {
        end = ends.get(msg.toString('hex'));
        ends.delete(msg.toString('hex'));
        if (!end) {
          finish();
          return;
        }
        if (end.readable) void pumpOut(end, socket).finally(finish);
        continue;
      }
      const to = end;
      writing = writing.then(() => waitsWithoutKeepingAlive(() => to.sendBytes(msg))).catch(finish);
    }
  });
  socket.on('end', finish);
  socket.on('close', finish);
  socket.on('error', finish);
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
