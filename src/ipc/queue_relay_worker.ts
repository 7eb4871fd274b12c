// The socket side of the queues this process uses and another one serves (queue_relay.ts), in a
// thread of its own: a synchronous call (getNowait(), qsize(), ...) blocks the thread that makes
// it until the answer is in, which it cannot read from a socket of its own event loop. Every
// call goes through here, asynchronous ones too, so that one queue's calls stay in order.
//
// From the calling thread: `open` (a connection, its relay and token), `send` (a request, and
// its id when the caller waits for it synchronously), `close`. To it: each answer, and `gone`
// once a connection ended; a synchronous call's answer on its own port, with a wake-up on `flag`.
import { constants } from 'node:buffer';
import type * as net from 'node:net';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';

import { connectToken, frame, FrameReader } from './framing.js';

/** @internal What the calling thread asks of this one, in batches. */
export type Command =
  | { t: 'open'; conn: number; relay: string; token: string }
  | { t: 'send'; conn: number; body: Uint8Array; sync?: number }
  | { t: 'close'; conn: number };

const { flag, syncPort } = workerData as { flag: Int32Array; syncPort: MessagePort };
const port = parentPort!;
const sockets = new Map<number, net.Socket>();
const gone = new Set<number>();
// Synchronous calls waiting for their answer, by request id, with their connection.
const waiting = new Map<number, number>();

function wake(msg: unknown): void {
  syncPort.postMessage(msg);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function ended(conn: number): void {
  if (gone.has(conn)) return;
  gone.add(conn);
  sockets.get(conn)?.destroy();
  sockets.delete(conn);
  port.postMessage({ conn, gone: true });
  for (const [id, c] of waiting) {
    if (c !== conn) continue;
    waiting.delete(id);
    wake({ conn, gone: true });
  }
}

port.on('message', (cmds: Command[]) => {
  const touched = new Set<net.Socket>();
  for (const m of cmds) {
    const socket = sockets.get(m.conn);
    if (socket && !touched.has(socket)) {
      touched.add(socket);
      socket.cork();
    }
    run(m);
  }
  for (const socket of touched) socket.uncork();
});

function run(m: Command): void {
  if (m.t === 'open') {
    const socket = connectToken(m);
    sockets.set(m.conn, socket);
    const reader = new FrameReader();
    socket.on('data', (chunk: Buffer) => {
      const bodies: Uint8Array[] = [];
      const ok = reader.push(
        chunk,
        (len) => len <= constants.MAX_LENGTH,
        (body) => {
          const id = body.length >= 5 ? body.readUInt32BE(1) : -1;
          // Copied out of the socket's chunk: a message to a thread copies the whole buffer a view is on.
          const own = new Uint8Array(body);
          if (waiting.delete(id)) wake({ conn: m.conn, body: own });
          else bodies.push(own);
          return true;
        },
      );
      if (bodies.length)
        port.postMessage(
          { conn: m.conn, bodies },
          bodies.map((b) => b.buffer as ArrayBuffer),
        );
      if (!ok) ended(m.conn);
    });
    for (const e of ['error', 'close', 'end']) socket.on(e, () => ended(m.conn));
  } else if (m.t === 'send') {
    const socket = sockets.get(m.conn);
    if (m.sync !== undefined) waiting.set(m.sync, m.conn);
    if (!socket) {
      ended(m.conn);
      if (m.sync !== undefined && waiting.delete(m.sync)) wake({ conn: m.conn, gone: true });
      return;
    }
    for (const b of frame(m.body)) socket.write(b);
  } else {
    sockets.get(m.conn)?.end();
    sockets.delete(m.conn);
    gone.add(m.conn);
  }
}
