// Connections and pipes (Python: `multiprocessing.connection`). A Connection sends whole
// messages — objects (structured clone plus multiproc's types) or raw bytes — never merged or
// split. Pipe() makes two connected ends over rings in one shared segment; Listener/Client
// (listener.ts) make socket-backed ones. Both share this base class.
import { inspect } from 'node:util';

import { Ring, RING_HEADER_CELLS } from '../shm/ring.js';
import { emulated } from '../shm/native.js';
import { BASE, forThisProcess, KIND, Segment, sendingToAnotherProcess } from '../shm/segment.js';
import { crossProcessError } from '../shm/native.js';
import { AbortError, BufferTooShort, InvalidArgumentError, ProcessError } from '../errors.js';
import { dumps, loads, loadsSync, registerType } from '../reduction/reduction.js';
import { TRUST_ALL, type ReceivePolicy } from '../reduction/policy.js';
import { deadlineOf, registerExitTask } from '../util.js';

const RESOLVED = Promise.resolve();

/**
 * One end of a connection. `send`/`sendBytes` resolve once the message is in the pipe (at once
 * when there is room); `recv`/`recvBytes` resolve with the next message. Calls on one end are
 * served in order.
 */
export abstract class Connection {
  #reading: Promise<unknown> = Promise.resolve();
  // Reads queued on #reading and not yet done: a read that could answer at once must not pass them.
  #readsPending = 0;
  #writing: Promise<unknown> = Promise.resolve();
  #pendingWrites = 0;

  /** Whether this end can receive. */
  abstract get readable(): boolean;
  /** Whether this end can send. */
  abstract get writable(): boolean;
  /** Whether close() was called. */
  abstract get closed(): boolean;
  /** @internal Write one message now if possible (no wait); true when written. */
  protected abstract _tryWrite(msg: Uint8Array): boolean;
  /** @internal Write one message, waiting for room. */
  protected abstract _write(msg: Uint8Array): Promise<void>;
  /** @internal Read one message; null at the deadline. `spun`: _readNow() just polled for it. */
  protected abstract _read(deadline: number, signal?: AbortSignal, spun?: boolean): Promise<Uint8Array | null>;
  /** @internal The next message if it is there now or within a short poll; null otherwise (the default: never). */
  protected _readNow(): Uint8Array | null {
    return null;
  }
  /** @internal Whether a message is there, waiting up to `timeoutMs`. */
  protected abstract _poll(timeoutMs: number | undefined, signal?: AbortSignal): Promise<boolean>;
  /** @internal Release the transport. */
  protected abstract _close(): void;

  #check(what: 'read' | 'write'): void {
    if (this.closed) throw new ProcessError('handle is closed: the connection was closed', { code: 'ERR_MP_CLOSED' });
    if (what === 'read' && !this.readable) throw new ProcessError('connection is write-only', { code: 'ERR_MP_WRITE_ONLY' });
    if (what === 'write' && !this.writable) throw new ProcessError('connection is read-only', { code: 'ERR_MP_READ_ONLY' });
  }

  /**
   * Send an object. It is serialized here, so a value that cannot cross throws now.
   * @throws NotTransferableError naming the path of what cannot cross; ProcessError when closed or read-only.
   * The Promise rejects with ProcessError ERR_MP_BROKEN_PIPE if every reader is gone.
   */
  send(obj: unknown): Promise<void> {
    this.#check('write');
    return this.#enqueueWrite(dumps(obj, 'obj'));
  }

  /**
   * Send `size` bytes of `buf` from `offset` as one message (Python: `send_bytes`).
   * @throws InvalidArgumentError for a bad buffer, offset or size.
   */
  sendBytes(buf: ArrayBufferView | ArrayBuffer, offset = 0, size?: number): Promise<void> {
    this.#check('write');
    const bytes = ArrayBuffer.isView(buf)
      ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
      : buf instanceof ArrayBuffer
        ? new Uint8Array(buf)
        : undefined;
    if (!bytes) throw new InvalidArgumentError('sendBytes(buf): buf must be a Buffer, typed array, DataView or ArrayBuffer');
    if (!Number.isInteger(offset) || offset < 0 || offset > bytes.length)
      throw new InvalidArgumentError(`sendBytes: offset ${String(offset)} is outside the buffer (length ${bytes.length})`);
    const n = size ?? bytes.length - offset;
    if (!Number.isInteger(n) || n < 0 || offset + n > bytes.length)
      throw new InvalidArgumentError(
        `sendBytes: size ${String(size)} from offset ${offset} is outside the buffer (length ${bytes.length})`,
      );
    const view = bytes.subarray(offset, offset + n);
    try {
      if (this.#pendingWrites === 0 && this._tryWrite(view)) return RESOLVED;
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what _tryWrite threw (an Error, ours or Node's), as a rejection
      return Promise.reject(err);
    }
    // Queued behind others: copied, since the caller may reuse its buffer once this returns.
    return this.#enqueueWrite(view.slice());
  }

  #enqueueWrite(msg: Uint8Array): Promise<void> {
    try {
      if (this.#pendingWrites === 0 && this._tryWrite(msg)) return RESOLVED;
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what _tryWrite threw (an Error, ours or Node's), as a rejection
      return Promise.reject(err);
    }
    this.#pendingWrites++;
    const p = this.#writing.then(() => this._write(msg));
    this.#writing = p.catch(() => undefined).finally(() => this.#pendingWrites--);
    trackPending(p);
    return p;
  }

  /**
   * Receive the next object (Python: `recv`).
   * @throws EOFError when the other end closed and nothing is left.
   * @throws UntrustedMessageError (socket connections) when the message names a function, class
   *   or library object the connection's `trust` option does not allow; nothing of it is rebuilt.
   */
  recv(): Promise<unknown> {
    const policy = this._receivePolicy();
    let m: Uint8Array | null;
    try {
      m = this.#readNow();
      // A message there now is decoded without a Promise per step (a pipe's peer may name
      // anything, so the synchronous decoding is only for that policy).
      const got = m && policy === TRUST_ALL ? loadsSync(m) : undefined;
      if (got) return Promise.resolve(got.value);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return m ? loads(m, policy) : this.#readOne(true).then((msg) => loads(msg, policy));
  }

  // With no read pending: the next message if it is there now (or within the short poll).
  #readNow(): Uint8Array | null {
    this.#check('read');
    return this.#readsPending === 0 ? this._readNow() : null;
  }

  /** @internal What a received message may name: everything, for a pipe (its peer is this program). */
  protected _receivePolicy(): ReceivePolicy {
    return TRUST_ALL;
  }

  /**
   * Receive the next message as bytes (Python: `recv_bytes`).
   * @throws BufferTooShort (with the message as `data`) when it is longer than `maxlength`.
   * @throws EOFError when the other end closed and nothing is left.
   */
  async recvBytes(maxlength?: number): Promise<Buffer> {
    if (maxlength !== undefined && (!Number.isInteger(maxlength) || maxlength < 0))
      throw new InvalidArgumentError('recvBytes(maxlength): maxlength must be an integer >= 0');
    const m = this.#readNow() ?? (await this.#readOne(true));
    if (maxlength !== undefined && m.length > maxlength)
      throw new BufferTooShort(`message of ${m.length} bytes is longer than maxlength ${maxlength}`, { data: m });
    return Buffer.from(m.buffer, m.byteOffset, m.length);
  }

  /**
   * Receive the next message into `buf` at `offset`; resolves its length (Python: `recv_bytes_into`).
   * @throws BufferTooShort (with the message as `data`) when it does not fit.
   */
  async recvBytesInto(buf: ArrayBufferView, offset = 0): Promise<number> {
    if (!ArrayBuffer.isView(buf)) throw new InvalidArgumentError('recvBytesInto(buf): buf must be a Buffer, typed array or DataView');
    const dst = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (!Number.isInteger(offset) || offset < 0 || offset > dst.length)
      throw new InvalidArgumentError(`recvBytesInto: offset ${String(offset)} is outside the buffer`);
    const m = await this.#readOne();
    if (m.length > dst.length - offset)
      throw new BufferTooShort(`message of ${m.length} bytes does not fit in ${dst.length - offset} bytes`, { data: m });
    dst.set(m, offset);
    return m.length;
  }

  /** @internal The next message, waiting for it without first polling the ring (the caller just looked). */
  _recvParked(): Promise<Uint8Array> {
    return this.#readOne(true);
  }

  #readOne(spun = false): Promise<Uint8Array> {
    this.#check('read');
    this.#readsPending++;
    const p = this.#reading.then(async () => {
      try {
        return (await this._read(Infinity, undefined, spun)) as Uint8Array;
      } finally {
        this.#readsPending--;
      }
    });
    this.#reading = p.catch(() => undefined);
    return p;
  }

  /**
   * Resolve true when a message can be received without waiting (or the other end is gone),
   * false after `timeout` ms (default 0: answer now; null or Infinity: wait).
   */
  async poll(timeout: number | null = 0, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    this.#check('read');
    if (timeout !== null && (typeof timeout !== 'number' || Number.isNaN(timeout)))
      throw new InvalidArgumentError('poll(timeout): timeout must be a number of milliseconds or null');
    return this._poll(timeout === null ? undefined : timeout, options.signal);
  }

  /** Close this end here; the other end sees EOF once every process closed its copies. */
  close(): void {
    if (!this.closed) this._close();
  }

  /** Close at the end of an `await using` block. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that a throw from close() rejects
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** @internal The name of the shared-memory segment under this end, if it has one. */
  _segmentName(): string | undefined {
    return undefined;
  }

  /** @internal For connection.wait(): a wait for readability, cancelled by `signal`. */
  _waitReadable(timeoutMs: number | undefined, signal: AbortSignal): Promise<boolean> {
    return this._poll(timeoutMs, signal);
  }
}

// Sends still in flight when a process ends are flushed first, as Python's queue feeder is
// joined: a child does not exit with messages only half sent.
const pending = new Set<Promise<unknown>>();
function trackPending(p: Promise<unknown>): void {
  const q = p.catch(() => undefined);
  pending.add(q);
  void q.finally(() => pending.delete(q));
}

/** @internal Resolve when every message this process sent has left (children call it before exiting). */
export async function flushPending(): Promise<void> {
  while (pending.size) await Promise.all([...pending]);
}
registerExitTask(flushPending);

// ---------------------------------------------------------------------------------------------
// Pipe: rings in one shared segment.

// Per direction. Memory is only used as the ring cycles through it.
const PIPE_CAPACITY = 2 << 20;
const CELLS_PER_RING = RING_HEADER_CELLS;
const DATA_OFFSET = Math.ceil(((BASE + 2 * CELLS_PER_RING + 1) * 4) / 64) * 64;

// Live pipe ends of this process: each gives its holds back when the process exits, so that a
// peer sees EOF as it would when a dead process's descriptors close.
const liveEnds = new Set<WeakRef<PipeConnection>>();
let exitHook = false;
const ends = new FinalizationRegistry<() => void>((release) => release());

/** @internal A pipe end over shared-memory rings (Pipe(); offered_pipe.ts makes them too). */
export class PipeConnection extends Connection {
  readonly #seg: Segment;
  readonly #in: Ring | undefined;
  readonly #out: Ring | undefined;
  readonly #role: 0 | 1;
  readonly #duplex: boolean;
  #closed = false;
  readonly #release: () => void;
  /** Aborted by close(): ends the waits of pending recv()/poll() calls. */
  readonly #closer = new AbortController();
  /** How many recv()/poll() waits are pending. */
  #waits = 0;

  constructor(seg: Segment, role: 0 | 1, duplex: boolean, init: boolean, reserved = false) {
    super();
    this.#seg = seg;
    this.#role = role;
    this.#duplex = duplex;
    const c = seg.i32;
    const ring = (k: 0 | 1): Ring =>
      new Ring(c, BASE + 1 + k * CELLS_PER_RING, new Uint8Array(seg.buffer, DATA_OFFSET + k * PIPE_CAPACITY, PIPE_CAPACITY), init);
    // Duplex: end 0 reads ring 0 and writes ring 1, end 1 the reverse. Simplex: end 0 reads, end 1 writes ring 0.
    if (duplex) {
      this.#in = ring(role);
      this.#out = ring(role === 0 ? 1 : 0);
    } else if (role === 0) this.#in = ring(0);
    else this.#out = ring(0);
    const inTok = this.#in?.attach('read', reserved);
    const outTok = this.#out?.attach('write', reserved);
    const input = this.#in;
    const output = this.#out;
    let released = false;
    this.#release = () => {
      if (released) return;
      released = true;
      if (input && inTok !== undefined) input.detach('read', inTok);
      if (output && outTok !== undefined) output.detach('write', outTok);
    };
    ends.register(this, this.#release, this);
    liveEnds.add(new WeakRef(this));
    if (!exitHook) {
      exitHook = true;
      process.on('exit', () => {
        for (const r of liveEnds) r.deref()?.close();
      });
    }
  }

  get readable(): boolean {
    return this.#in !== undefined;
  }
  get writable(): boolean {
    return this.#out !== undefined;
  }
  get closed(): boolean {
    return this.#closed;
  }
  protected _tryWrite(msg: Uint8Array): boolean {
    // Closed everywhere: Python's BrokenPipeError (a dead reader is found by write()'s waits).
    if (!this.#out!.hasHolders('read'))
      throw new ProcessError('the other end of the pipe is closed: nobody will read this message', { code: 'ERR_MP_BROKEN_PIPE' });
    return this.#out!.tryWrite(msg);
  }
  protected _write(msg: Uint8Array): Promise<void> {
    return this.#out!.write(msg);
  }
  protected _read(deadline: number, signal?: AbortSignal, spun?: boolean): Promise<Uint8Array | null> {
    return this.#waiting((s) => this.#in!.read(deadline, s, spun), signal);
  }
  protected override _readNow(): Uint8Array | null {
    if (this.#closed || !this.#in) return null;
    return this.#in.tryReadSpinning();
  }
  protected _poll(timeoutMs: number | undefined, signal?: AbortSignal): Promise<boolean> {
    return this.#waiting((s) => this.#in!.poll(timeoutMs, s), signal);
  }

  // A wait on the ring that close() ends at once with the closed error. The mapping stays until
  // the last such wait has let go of the ring's cells.
  #isClosed(): boolean {
    return this.#closed;
  }

  async #waiting<T>(wait: (signal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (this.#closed) throw closedWhileWaiting();
    // One signal for every wait of this end (a controller per recv() cost a microsecond or two
    // of a round trip); one of its own, linked to both, only for a wait with the caller's signal.
    const closer = this.#closer.signal;
    let stop = closer;
    let unlink: (() => void) | undefined;
    if (signal) {
      const own = new AbortController();
      const onAbort = (): void => own.abort(signal.reason);
      const onClose = (): void => own.abort();
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      closer.addEventListener('abort', onClose, { once: true });
      unlink = () => {
        signal.removeEventListener('abort', onAbort);
        closer.removeEventListener('abort', onClose);
      };
      stop = own.signal;
    }
    this.#waits++;
    try {
      return await wait(stop);
    } catch (err) {
      // (Read again: close() may have run while this waited.)
      if (this.#isClosed()) throw closedWhileWaiting();
      throw err;
    } finally {
      unlink?.();
      this.#waits--;
      if (this.#waits === 0 && this.#isClosed()) this.#seg.close();
    }
  }
  /** @internal A message if one arrives within `timeoutMs`, blocking this thread meanwhile (see Ring.readBlocking). */
  _recvBytesBlocking(timeoutMs: number, into?: (n: number) => Uint8Array): Uint8Array | null {
    if (this.#closed || !this.#in) return null;
    return this.#in.readBlocking(timeoutMs, into);
  }
  /** @internal The next message if one is whole in the ring now, else null; never waits. Only with no read pending. */
  _tryRecvBytes(into?: (n: number) => Uint8Array): Uint8Array | null {
    if (this.#closed || !this.#in) return null;
    return this.#in.tryRead(into);
  }
  /** @internal Whether a message (or the start of one, or a dead reader's rest) waits in the ring. */
  _hasData(): boolean {
    return !this.#closed && !!this.#in && (this.#in.hasMessage() || this.#in.hasPartialRead());
  }
  /** @internal See Ring.watch: the cell a reader of many ends waits on, or undefined when there is data (or the end is closed). */
  _watch(): [cells: Int32Array, index: number, value: number] | undefined {
    if (this.#closed || !this.#in) return undefined;
    return this.#in.watch();
  }
  /** @internal The wait _watch() began is over. */
  _unwatch(): void {
    // Closed meanwhile: the cells may be unmapped (and the count no longer matters).
    if (!this.#closed) this.#in?.unwatch();
  }
  /** @internal See offerPipe/adoptOfferedPipe: refuse longer messages; let waits block the thread first or not. */
  _tune(limit: number | undefined, idleWaits: boolean): void {
    if (limit !== undefined) this.#in?.limitMessages(limit);
    if (this.#in) this.#in.idleWaits = idleWaits;
  }
  /** @internal Whether both rings' headers are those of a pipe. */
  _wellFormed(): boolean {
    return (this.#in?.wellFormed() ?? true) && (this.#out?.wellFormed() ?? true);
  }
  /** @internal Remove the segment's name (see offerPipe). */
  _unlinkName(): void {
    this.#seg.unlinkName();
  }
  /** @internal The segment's name with a ticket for one process to open it (see offerPipe). */
  _ticket(): string {
    return this.#seg.retainForSend();
  }
  protected _close(): void {
    this.#closed = true;
    ends.unregister(this);
    this.#release();
    if (this.#waits > 0) this.#closer.abort();
    else this.#seg.close();
  }

  override _segmentName(): string {
    return this.#seg.name;
  }

  /** @internal */
  _reduce(): { name: string; role: 0 | 1; duplex: boolean } {
    if (this.#closed) throw new ProcessError('cannot send a closed connection', { code: 'ERR_MP_CLOSED' });
    this.#in?.reserve('read');
    this.#out?.reserve('write');
    return { name: this.#seg.retainForSend(), role: this.#role, duplex: this.#duplex };
  }

  override toString(): string {
    return `<Connection ${this.#duplex ? 'duplex' : this.readable ? 'read-only' : 'write-only'}${this.#closed ? ' closed' : ''}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * Two connected ends (Python: `Pipe(duplex=True)`). Duplex: both send and receive. Simplex
 * (`Pipe(false)`): the first end only receives, the second only sends.
 * Either end may be passed to a child (as an argument or inside a message) and keeps working.
 */
export function Pipe(duplex = true): [Connection, Connection] {
  if (typeof duplex !== 'boolean') throw new InvalidArgumentError('Pipe(duplex): duplex must be a boolean');
  const seg = Segment.create(DATA_OFFSET - BASE * 4 + (duplex ? 2 : 1) * PIPE_CAPACITY, KIND.Pipe);
  const first = new PipeConnection(seg, 0, duplex, true);
  // Each end maps the segment and counts as a holder on its own, as if it had been sent.
  const second = new PipeConnection(Segment.adopt(seg.retainForSend(), KIND.Pipe), 1, duplex, false);
  return [first, second];
}

/** @internal The size of a duplex pipe's segment, header included (offered_pipe.ts). */
export const DUPLEX_PIPE_BYTES = DATA_OFFSET + 2 * PIPE_CAPACITY;

/** @internal What crosses in place of a pipe end that another process reaches through a relay (relay.ts). */
export interface RelayedEnd {
  relay: string;
  token: string;
}

type ReducedEnd = { name: string; role: 0 | 1; duplex: boolean } | RelayedEnd;

// Set by relay.ts when it loads (it sits above this module: it uses socket connections).
let relay: { serve(end: Connection): RelayedEnd; connect(r: RelayedEnd): Connection } | undefined;

/** @internal relay.ts installs how a pipe end is relayed to another process without the addon. */
export function installRelay(r: typeof relay): void {
  relay = r;
}

// Another end like `c` in this process: the relay's own.
function sameEnd(c: PipeConnection): PipeConnection {
  const { name, role, duplex } = forThisProcess(() => c._reduce());
  return new PipeConnection(Segment.adopt(name, KIND.Pipe), role, duplex, false, true);
}

// Typed over Connection: a relayed end is rebuilt as a socket connection.
registerType<Connection, ReducedEnd>(
  PipeConnection,
  {
    reduce: (c) => {
      if (!(c instanceof PipeConnection)) throw new InvalidArgumentError('not a pipe end');
      // Without the addon another process cannot map the rings: this process relays the end.
      if (!sendingToAnotherProcess() || !emulated()) return c._reduce();
      if (!relay) throw crossProcessError('a Pipe end cannot be sent to another process');
      return relay.serve(sameEnd(c));
    },
    rebuild: (r: ReducedEnd) => {
      if (!('relay' in r)) return new PipeConnection(Segment.adopt(r.name, KIND.Pipe), r.role, r.duplex, false, true);
      if (!relay) throw crossProcessError('a Pipe end relayed from another process cannot be opened here');
      return relay.connect(r);
    },
  },
  'multiproc.Connection',
);

// ---------------------------------------------------------------------------------------------

/** Anything connection.wait() can watch. */
export type Waitable =
  Connection | Promise<unknown> | { _waitReadable(timeoutMs: number | undefined, signal: AbortSignal): Promise<boolean> };

/**
 * Wait until at least one of `objects` is ready — a Connection (or queue) with something to
 * read, or a Process `sentinel` that settled — or `timeout` ms passed; resolve the ready ones
 * (empty on timeout), as Python's `multiprocessing.connection.wait`.
 */
export async function wait<T extends Waitable>(objects: Iterable<T>, timeout?: number | null): Promise<T[]> {
  const list = [...objects];
  if (timeout != null && (typeof timeout !== 'number' || Number.isNaN(timeout)))
    throw new InvalidArgumentError('wait(objects, timeout): timeout must be a number of milliseconds');
  const ctl = new AbortController();
  const ready = new Set<T>();
  const deadline = deadlineOf(timeout ?? undefined);
  const watches = list.map(async (o) => {
    try {
      const ok =
        o instanceof Promise
          ? await o.then(
              () => true,
              () => true,
            )
          : await o._waitReadable(timeout ?? undefined, ctl.signal);
      if (ok) {
        ready.add(o);
        ctl.abort();
      }
    } catch (err) {
      if (!(err instanceof AbortError)) {
        ready.add(o);
        ctl.abort();
      }
    }
  });
  const timer = deadline === Infinity ? undefined : setTimeout(() => ctl.abort(), Math.max(0, timeout ?? 0));
  try {
    await Promise.race([Promise.all(watches), new Promise<void>((r) => ctl.signal.addEventListener('abort', () => r(), { once: true }))]);
    // Let every watch that is already satisfied report, so that all ready objects are returned.
    await new Promise((r) => setImmediate(r));
  } finally {
    if (timer) clearTimeout(timer);
    ctl.abort();
  }
  return list.filter((o) => ready.has(o));
}

function closedWhileWaiting(): ProcessError {
  return new ProcessError('handle is closed: the connection was closed while a recv() or poll() was waiting on it', {
    code: 'ERR_MP_CLOSED',
  });
}
