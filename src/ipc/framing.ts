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
  // Bytes received and not yet cut, joined only once a whole message is there (a large message
  // arrives in many chunks: joining at each would copy it over and over).
  #chunks: Buffer[] = [];
  #bytes = 0;

  /**
   * Add `chunk`, and pass each whole message to `each`. `accept(length)` is asked for every
   * message before its bytes are buffered: false (or a negative length) stops with false, and
   * so does `each` returning false; the caller then closes the stream.
   */
  push(chunk: Buffer, accept: (length: number) => boolean, each: (msg: Buffer) => boolean): boolean {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    for (;;) {
      if (this.#bytes < 4) return true;
      if (this.#chunks[0]!.length < Math.min(12, this.#bytes)) this.#chunks = [Buffer.concat(this.#chunks, this.#bytes)];
      const first = this.#chunks[0]!;
      let len = first.readInt32BE(0);
      let at = 4;
      if (len === -1) {
        if (first.length < 12) return true;
        len = Number(first.readBigUInt64BE(4));
        at = 12;
      }
      if (len < 0 || !accept(len)) return false;
      if (this.#bytes < at + len) return true;
      const all = this.#chunks.length === 1 ? first : Buffer.concat(this.#chunks, this.#bytes);
      const rest = all.subarray(at + len);
      this.#chunks = rest.length ? [rest] : [];
      this.#bytes = rest.length;
      if (!each(all.subarray(at, at + len))) return false;
    }
  }
}

/** Connect to a relay socket (relay.ts) and send `token` first, as its server expects. */
export function connectToken({ relay, token }: { relay: string; token: string }): net.Socket {
  const socket = net.createConnection(relay);
  for (const b of frame(Buffer.from(token, 'hex'))) socket.write(b);
  return socket;
}
