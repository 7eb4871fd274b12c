// A Connection over a stream socket (Python: the socket half of `multiprocessing.connection`):
// CPython's wire format, a 4-byte big-endian signed length and the bytes (-1 and an 8-byte length
// for messages over 2 GiB), with backpressure and bounded buffering. Listener and Client
// (listener.ts) make them.
import { constants as bufferConstants } from 'node:buffer';
import * as net from 'node:net';
import { inspect } from 'node:util';

import { Connection } from './connection.js';
import { AuthenticationError, EOFError, NotTransferableError, ProcessError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import { trustModules, type ReceivePolicy } from '../reduction/policy.js';
import { deadlineOf, parked, registerExitTask } from '../util.js';

// Messages up to this size go out in one write together with their header.
const SMALL = 16384;
// The largest message a Buffer can hold.
export const MAX_MESSAGE = bufferConstants.MAX_LENGTH;
// The longest message accepted unless the receiver says otherwise: a peer can make a connection
// hold this much memory, so it is well below what a Buffer can hold.
export const DEFAULT_MAX_MESSAGE = 64 << 20;
// During the handshake no message may be longer (CPython's recv_bytes(256)).
export const HANDSHAKE_LIMIT = 256;
// Received messages nobody has read yet: stop reading the socket above HIGH, resume below LOW.
const HIGH_WATER = 16 << 20;
const LOW_WATER = 4 << 20;

/** @internal How a socket connection opts in to more than plain data and errors. */
export const TRUST_OPT_IN =
  "Send plain data, or let the receiving side trust the module: new Listener(address, { trust: ['<module path or URL>'] }) " +
  "or Client(address, { trust: [...] }) (trust: 'all' also accepts functions as source text and library objects, and lets the peer run any code in this process)";

// By default a peer sends data: every function, class or library object it names is refused.
const DATA_ONLY = trustModules(new Set(), { libraryObjects: false, optIn: TRUST_OPT_IN });

// Sockets with writes not yet handed to the kernel; a process flushes them before it exits.
const unflushed = new Set<SocketConnection>();
registerExitTask(async () => {
  while (unflushed.size) await Promise.all([...unflushed].map((c) => c._flushed()));
});

/**
 * A connection over a stream socket, made by `Listener.accept()` or `Client()`. Duplex; messages
 * are framed as CPython's. It belongs to this process: it cannot be sent to another one (pass the
 * listener's address and connect with `Client()` there).
 */
export class SocketConnection extends Connection {
  readonly #socket: net.Socket;
  readonly #label: string;
  #closed = false;
  // Whole messages received and not yet read.
  #frames: Uint8Array[] = [];
  #queued = 0;
  // Bytes received and not yet parsed, and the message being filled.
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  #body: Buffer | undefined;
  #bodyFilled = 0;
  // The longest message accepted now (smaller during the handshake) and after the handshake;
  // the size of a message over the limit that stopped parsing.
  #limit: number;
  readonly #max: number;
  #stalled = 0;
  #paused = false;
  #ended = false;
  #failure: Error | undefined;
  #writeError: Error | undefined;
  #inflight = 0;
  #flushWaiters: (() => void)[] = [];
  readonly #waiters = new Set<() => void>();
  #refs = 0;
  readonly #policy: ReceivePolicy;
  // Set by _deliver(): whole messages go to it as they are parsed, not to recv().
  #sink: { onFrame: (frame: Uint8Array) => void; onEnd: (err: Error) => void } | undefined;
  #sinkPaused = false;
  #sinkEnded = false;
  #kept = false;

  /** @internal Made by Listener.accept() and Client(). */
  constructor(
    socket: net.Socket,
    options: { maxMessageSize?: number | undefined; handshake?: boolean; policy?: ReceivePolicy | undefined } = {},
  ) {
    super();
    this.#socket = socket;
    this.#policy = options.policy ?? DATA_ONLY;
    this.#max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE;
    this.#limit = options.handshake ? Math.min(HANDSHAKE_LIMIT, this.#max) : this.#max;
    this.#label = socket.remotePort !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : (socket.localAddress ?? 'unix socket');
    if (socket.remotePort !== undefined) socket.setNoDelay(true);
    // Only a pending receive (or write) keeps the process alive, as with a Pipe.
    socket.unref();
    socket.on('data', (chunk: Buffer) => {
      if (this.#closed || this.#failure) return;
      this.#chunks.push(chunk);
      this.#chunkBytes += chunk.length;
      this.#pump();
    });
    socket.on('end', () => this.#onEnd());
    socket.on('close', () => this.#onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.#writeError ??= err;
      // A reset peer is a peer gone: EOF once the messages already here are read.
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE')
        this.#failure ??= new ProcessError(`socket error: ${err.message}`, { code: 'ERR_MP_SOCKET', cause: err });
      this.#onEnd();
    });
  }

  get readable(): boolean {
    return true;
  }
  get writable(): boolean {
    return true;
  }
  get closed(): boolean {
    return this.#closed;
  }

  #onEnd(): void {
    if (this.#ended) return;
    this.#ended = true;
    if ((this.#chunkBytes > 0 || this.#body) && !this.#stalled) {
      this.#failure ??= new EOFError('the peer closed the connection in the middle of a message');
    }
    this.#notify();
  }

  // Parse what arrived into whole messages.
  #pump(): void {
    for (;;) {
      if (this.#failure || this.#closed) return;
      const body = this.#body;
      if (body) {
        while (this.#chunks.length && this.#bodyFilled < body.length) {
          const c = this.#chunks[0]!;
          const n = Math.min(c.length, body.length - this.#bodyFilled);
          c.copy(body, this.#bodyFilled, 0, n);
          this.#bodyFilled += n;
          this.#advance(n);
        }
        if (this.#bodyFilled < body.length) return;
        this.#body = undefined;
        this.#push(body);
        continue;
      }
      if (this.#chunkBytes < 4) return;
      const head = this.#peek(4);
      let size = head.readInt32BE(0);
      let headerLen = 4;
      if (size === -1) {
        if (this.#chunkBytes < 12) return;
        const big = this.#peek(12).readBigUInt64BE(4);
        size = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
        headerLen = 12;
      } else if (size < 0) {
        this.#fail(`malformed message from the peer: length prefix ${size}`);
        return;
      }
      if (size > this.#limit) {
        if (this.#limit < this.#max) {
          // Handshake: whoever reads next learns of it; parsing resumes if the limit is lifted.
          this.#stalled = size;
          this.#updateFlow();
          this.#notify();
        } else this.#fail(`message from the peer is too long: ${size} bytes (at most ${this.#max})`);
        return;
      }
      this.#advance(headerLen);
      const first = this.#chunks[0];
      if (size === 0) this.#push(new Uint8Array(0));
      else if (first && first.length >= size) {
        // Whole in one chunk: no copy. (Consumed first: a receiver may close the connection.)
        const frame = first.subarray(0, size);
        this.#advance(size);
        this.#push(frame);
      } else {
        // Filled in place as the bytes come: the one copy of a large message.
        try {
          this.#body = Buffer.allocUnsafe(size);
        } catch {
          this.#fail(`message from the peer is too long: ${size} bytes cannot be allocated`);
          return;
        }
        this.#bodyFilled = 0;
      }
    }
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first;
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (const c of this.#chunks) {
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (at === n) break;
    }
    return out;
  }

  #advance(n: number): void {
    this.#chunkBytes -= n;
    while (n > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= n) {
        this.#chunks.shift();
        n -= c.length;
      } else {
        this.#chunks[0] = c.subarray(n);
        n = 0;
      }
    }
  }

  #push(frame: Uint8Array): void {
    const sink = this.#sink;
    if (sink && !this.#sinkPaused && this.#frames.length === 0) {
      sink.onFrame(frame);
      return;
    }
    this.#frames.push(frame);
    this.#queued += frame.length;
    this.#updateFlow();
    this.#notify();
  }

  // A protocol error: this connection is dead (the messages before it can still be read).
  #fail(message: string): void {
    this.#failure = new ProcessError(message, { code: 'ERR_MP_BAD_MESSAGE' });
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#body = undefined;
    this.#socket.destroy();
    this.#notify();
  }

  #updateFlow(): void {
    const pause = this.#stalled > 0 || this.#queued > HIGH_WATER || (this.#paused && this.#queued > LOW_WATER);
    if (pause === this.#paused) return;
    this.#paused = pause;
    if (pause) this.#socket.pause();
    else this.#socket.resume();
  }

  #notify(): void {
    if (this.#sink) this.#drainSink();
    for (const w of [...this.#waiters]) w();
  }

  #drainSink(): void {
    const sink = this.#sink!;
    while (!this.#sinkPaused && !this.#sinkEnded) {
      const m = this.#frames.shift();
      if (m) {
        this.#queued -= m.length;
        this.#updateFlow();
        sink.onFrame(m);
        continue;
      }
      const err = this.#doneError();
      if (err) {
        this.#sinkEnded = true;
        sink.onEnd(err);
      }
      return;
    }
  }

  /**
   * @internal Hand each whole message to `onFrame` as soon as it is parsed, in the same task
   * (no recv() call, Promise or event-loop turn per message), and the error that ends reading
   * to `onEnd`, once (EOFError when the peer closed). Messages already received go first. The
   * same size limit applies: a message over it ends the connection before it is buffered.
   */
  _deliver(onFrame: (frame: Uint8Array) => void, onEnd: (err: Error) => void): void {
    this.#sink = { onFrame, onEnd };
    this.#drainSink();
  }

  /**
   * @internal Hold messages back (while the receiver finishes an asynchronous decode, so that
   * order is kept); they queue, with the usual flow control, until resumed.
   */
  _pauseDelivery(paused: boolean): void {
    this.#sinkPaused = paused;
    if (!paused && this.#sink) this.#drainSink();
  }

  /** @internal Whether a message written now goes to the socket at once (nothing queued before it). */
  _writableNow(): boolean {
    const s = this.#socket;
    return !this.#closed && !s.writableNeedDrain && s.writableLength === 0 && this.#broken() === undefined;
  }

  /** @internal Whether this connection keeps the process alive (a reply is awaited on it). */
  _keepAlive(on: boolean): void {
    if (on === this.#kept) return;
    this.#kept = on;
    if (on) {
      if (this.#refs++ === 0) this.#socket.ref();
    } else if (--this.#refs === 0) this.#socket.unref();
  }

  // Why a read would fail now that nothing is queued, if it would.
  #doneError(): Error | undefined {
    if (this.#closed) return new ProcessError('handle is closed: the connection was closed', { code: 'ERR_MP_CLOSED' });
    if (this.#stalled)
      return new AuthenticationError(
        `message of ${this.#stalled} bytes during authentication (at most ${this.#limit}): the peer is not speaking the protocol`,
      );
    if (this.#failure) return this.#failure;
    if (this.#ended) return new EOFError();
    return undefined;
  }

  // Wait for anything to change; false at the deadline.
  #wait(deadline: number, signal?: AbortSignal): Promise<boolean> {
    return parked(deadline, signal, (wake) => {
      this.#waiters.add(wake);
      if (this.#refs++ === 0) this.#socket.ref();
      return () => {
        this.#waiters.delete(wake);
        if (--this.#refs === 0) this.#socket.unref();
      };
    });
  }

  protected async _read(deadline: number, signal?: AbortSignal): Promise<Uint8Array | null> {
    for (;;) {
      const m = this.#frames.shift();
      if (m) {
        this.#queued -= m.length;
        this.#updateFlow();
        return m;
      }
      const err = this.#doneError();
      if (err) throw err;
      if (!(await this.#wait(deadline, signal))) return null;
    }
  }

  protected async _poll(timeoutMs: number | undefined, signal?: AbortSignal): Promise<boolean> {
    const deadline = deadlineOf(timeoutMs);
    for (;;) {
      // At EOF (or a broken connection) recv() answers at once, with the error.
      if (this.#frames.length || this.#doneError()) return true;
      if (!(await this.#wait(deadline, signal))) return false;
    }
  }

  #broken(): Error | undefined {
    if (this.#writeError || this.#socket.destroyed || this.#socket.writableEnded) {
      return new ProcessError('the peer closed the connection: nobody will read this message', {
        code: 'ERR_MP_BROKEN_PIPE',
        cause: this.#writeError,
      });
    }
    return undefined;
  }

  #header(n: number): Buffer {
    if (n <= 0x7fffffff) {
      const h = Buffer.allocUnsafe(4);
      h.writeInt32BE(n, 0);
      return h;
    }
    const h = Buffer.allocUnsafe(12);
    h.writeInt32BE(-1, 0);
    h.writeBigUInt64BE(BigInt(n), 4);
    return h;
  }

  #written = (err?: Error | null): void => {
    if (err) this.#writeError ??= err;
    if (--this.#inflight === 0) {
      unflushed.delete(this);
      for (const w of this.#flushWaiters.splice(0)) w();
    }
  };

  #send(parts: Uint8Array[], cb?: (err?: Error | null) => void): void {
    this.#inflight += parts.length;
    unflushed.add(this);
    const s = this.#socket;
    if (parts.length > 1) s.cork();
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      s.write(parts[i]!, (err) => {
        this.#written(err);
        if (last) cb?.(err);
      });
    }
    if (parts.length > 1) s.uncork();
  }

  protected _tryWrite(msg: Uint8Array): boolean {
    if (msg.length > SMALL || this.#socket.writableNeedDrain || this.#broken()) return false;
    // Copied with its header: the caller may reuse its buffer at once.
    const frame = Buffer.allocUnsafe(4 + msg.length);
    frame.writeInt32BE(msg.length, 0);
    frame.set(msg, 4);
    this.#send([frame]);
    return true;
  }

  protected _write(msg: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      const broken = this.#broken();
      if (broken) {
        reject(broken);
        return;
      }
      const header = this.#header(msg.length);
      const parts = msg.length <= SMALL ? [Buffer.concat([header, msg])] : [header, msg];
      // Resolved once the socket took the bytes (handed to the kernel): that is the backpressure.
      this.#send(parts, (err) => (err ? reject(this.#broken() ?? err) : resolve()));
    });
  }

  protected _close(): void {
    this.#closed = true;
    this.#frames = [];
    this.#queued = 0;
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#body = undefined;
    this.#notify();
    const s = this.#socket;
    // Drain what still arrives (so that closing does not reset the peer), flush what we wrote,
    // then release the descriptor.
    s.resume();
    if (s.destroyed) return;
    s.end(() => s.destroy());
  }

  /** @internal Resolves when every write was handed to the kernel (or failed). */
  _flushed(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((r) => this.#flushWaiters.push(r));
  }

  protected override _receivePolicy(): ReceivePolicy {
    return this.#policy;
  }

  /** @internal The handshake is over: accept messages up to the connection's limit. */
  _authenticated(): void {
    this.#limit = this.#max;
    this.#stalled = 0;
    this.#updateFlow();
    this.#pump();
  }

  override toString(): string {
    return `<SocketConnection ${this.#label}${this.#closed ? ' closed' : ''}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

export function socketRefusal(what: string, where: string | undefined): NotTransferableError {
  return new NotTransferableError(
    where ?? `<${what}>`,
    `is a ${what}, whose socket belongs to this process and cannot be sent to another one`,
    what === 'Listener'
      ? 'Pass listener.address and connect with Client() in the child.'
      : 'Pass the address and connect with Client() in the child (or use Pipe(), whose ends cross).',
  );
}

// Refused by name rather than tried by reference (the class is exported, so reduction would
// otherwise send an empty instance). `where` is the path of the value in what was sent.
registerType(
  SocketConnection,
  {
    reduce: (_c: SocketConnection, where?: string): never => {
      throw socketRefusal('SocketConnection', where);
    },
    rebuild: (): never => {
      throw socketRefusal('SocketConnection', undefined);
    },
  },
  'multiproc.SocketConnection',
);
