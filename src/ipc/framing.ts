// CPython's framing, as SocketConnection writes it: a 4-byte big-endian length (-1 then an
// 8-byte length for messages over 2 GiB), then the bytes. For the relay sockets (relay.ts,
// queue_relay.ts), whose ends parse it without a Connection, and in a worker thread.
import * as net from 'node:net';

/** The header and body of one message. */
export function frame(msg: Uint8Array): Buffer[] {
  const body = Buffer.from(msg.buffer as ArrayBuffer, msg.byteOffset, msg.length);
  if (msg.length < 0x7fffffff) {
    const h = Buffer.alloc(4);
    h.writeInt32BE(msg.length);
    return [h, body];
  }
  const h = Buffer.alloc(12);
  h.writeInt32BE(-1);
  h.writeBigUInt64BE(BigInt(msg.length), 4);
  return [h, body];
}

/** Cuts a byte stream into messages; a message's length is judged before its bytes are kept. */
export class FrameReader {
  #chunks: Buffer = Buffer.alloc(0);

  /**
   * Add `chunk`, and pass each whole message to `each`. `accept(length)` is asked for every
   * message before its bytes are buffered: false (or a negative length) stops with false, and
   * so does `each` returning false; the caller then closes the stream.
   */
  push(chunk: Buffer, accept: (length: number) => boolean, each: (msg: Buffer) => boolean): boolean {
    this.#chunks = this.#chunks.length ? Buffer.concat([this.#chunks, chunk]) : chunk;
    for (;;) {
      const chunks = this.#chunks;
      if (chunks.length < 4) return true;
      let len = chunks.readInt32BE(0);
      let at = 4;
      if (len === -1) {
        if (chunks.length < 12) return true;
        len = Number(chunks.readBigUInt64BE(4));
        at = 12;
      }
      if (len < 0 || !accept(len)) return false;
      if (chunks.length < at + len) return true;
      const msg = Buffer.from(chunks.subarray(at, at + len));
      this.#chunks = chunks.subarray(at + len);
      if (!each(msg)) return false;
    }
  }
}

/** Connect to a relay socket (relay.ts) and send `token` first, as its server expects. */
export function connectToken({ relay, token }: { relay: string; token: string }): net.Socket {
  const socket = net.createConnection(relay);
  for (const b of frame(Buffer.from(token, 'hex'))) socket.write(b);
  return socket;
}
