// Queues for other processes without the native addon. Without it a queue's ring is memory of
// the process that made it (shm/emulated.ts), which no other process can map. So a queue sent to
// a spawn child is served by the process it was sent from, over that process's relay socket
// (relay.ts: same directory, token and size checks), and the child gets a queue with the same
// API whose calls are requests to it. The server keeps a wrapper of its own, so the queue lives
// as long as that process does; once it has ended, every call elsewhere fails with EOFError.
//
// Each request carries an id, what it waits for, and the item's bytes as put() serialized them:
// the server moves them in and out of the ring as they are, without decoding them, and the
// consumer decodes them as it would from the ring. An item is taken from the ring for one get()
// at a time, so each goes to one consumer; a consumer that ends (or is killed) while its get()
// waits cancels it, and an item the server took for a consumer that is gone before the answer
// went out is put back (at the end). One the consumer was sent is lost with it if it is killed
// before reading it, as when a consumer of a shared queue is killed inside get().
import * as net from 'node:net';
import * as path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { inspect } from 'node:util';

import { frame } from './framing.js';
import type { Command } from './queue_relay_worker.js';
import { serveToken } from './relay.js';
import { installQueueServing, JoinableQueue, Queue, waitOptions, type ServedRef } from './queues.js';
import { AbortError, Empty, EOFError, Full, ProcessError } from '../errors.js';
import { dumps, loads, loadsSync, registerType } from '../reduction/reduction.js';
import { waitsWithoutKeepingAlive } from '../shm/native.js';
import { forAnotherProcess } from '../shm/segment.js';
import type { WaitOptions } from '../sync/synchronize.js';
import { checkTimeout, deadlineOf, registerExitTask, remaining } from '../util.js';

// Requests: [op][id: u32][block: u8][timeout ms: f64, NaN for none][item]. Answers: [status][id][payload].
const PUT = 1;
const GET = 2;
const QSIZE = 3;
const CANCEL = 4;
const TASK_DONE = 5;
const JOIN = 6;
const POLL = 7;
const HEADER = 14;
const OK = 0;
const FAILED = 1;
const NOTHING = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------
// The serving side.

// What this thread serves, by segment name (a queue sent again is served under the same token),
// and the server's own wrapper of each, by token.
const servedByName = new Map<string, ServedRef>();
const servedByToken = new Map<string, Queue>();

function serveQueue(q: Queue): ServedRef {
  const name = q._segment().name;
  const known = servedByName.get(name);
  if (known) return known;
  const own = q._copy();
  own._markServed();
  // A consumer's items not yet marked done, per connection: they count as done once it is gone.
  const peers = new Set<Peer>();
  const where = serveToken({ once: false, attach: (socket) => attachQueue(own, socket, peers) });
  const ref: ServedRef = { ...where, joinable: own instanceof JoinableQueue, maxsize: own.maxsize, pid: process.pid };
  servedByName.set(name, ref);
  servedByToken.set(ref.token, own);
  return ref;
}

interface Peer {
  held: number;
  gone: boolean;
  calls: Map<number, AbortController>;
}

function attachQueue(q: Queue, socket: net.Socket, peers: Set<Peer>): { message(msg: Buffer): boolean; gone(): void } {
  const peer: Peer = { held: 0, gone: false, calls: new Map() };
  peers.add(peer);
  const joinable = q instanceof JoinableQueue ? q : undefined;
  let corked = false;
  const answer = (id: number, status: number, payload: Uint8Array): void => {
    if (peer.gone || socket.destroyed) return;
    const head = Buffer.alloc(5);
    head[0] = status;
    head.writeUInt32BE(id, 1);
    // The answers to one batch of requests go out in one write.
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(() => {
        corked = false;
        socket.uncork();
      });
    }
    for (const b of frame(Buffer.concat([head, payload]))) socket.write(b);
  };
  // Run a request; its side effects up to its first wait happen now, in the order requests came.
  const run = (id: number, f: (signal: AbortSignal) => Uint8Array | Promise<Uint8Array>): void => {
    const ac = new AbortController();
    peer.calls.set(id, ac);
    void waitsWithoutKeepingAlive(async () => f(ac.signal))
      .then(
        (payload) => answer(id, OK, payload),
        (err: unknown) => answer(id, FAILED, Buffer.from(JSON.stringify(describe(err)))),
      )
      .finally(() => peer.calls.delete(id));
  };
  const taskDone = (): void => {
    joinable!.taskDone();
    // Counted against this consumer's items first, else against another's (an item handed over).
    const from = peer.held > 0 ? peer : [...peers].find((p) => p.held > 0);
    if (from) from.held--;
  };
  return {
    message: (msg) => {
      if (msg.length < HEADER) return false;
      const op = msg[0]!;
      const id = msg.readUInt32BE(1);
      const block = msg[5] !== 0;
      const t = msg.readDoubleBE(6);
      const deadline = block ? deadlineOf(Number.isNaN(t) ? undefined : t) : deadlineOf(0);
      if (op === PUT) {
        const item = msg.subarray(HEADER);
        run(id, (signal) => q._putMessage(item, block, deadline, signal).then(() => NOTHING));
      } else if (op === GET) {
        run(id, async (signal) => {
          const item = block ? await q._getMessage(deadline, signal) : q._getMessageNowait();
          if (!peer.gone) {
            if (joinable) peer.held++;
            return item;
          }
          // Taken for a consumer that is gone: put back (its task done, the new one counted).
          void q._putMessage(item, true, Infinity, undefined).catch(() => undefined);
          if (joinable) joinable.taskDone();
          return NOTHING;
        });
      } else if (op === QSIZE) {
        run(id, () => u32(q.qsize()));
      } else if (op === CANCEL) {
        peer.calls.get(msg.readUInt32BE(HEADER))?.abort();
      } else if (op === TASK_DONE && joinable) {
        run(id, () => (taskDone(), NOTHING));
      } else if (op === JOIN && joinable) {
        run(id, (signal) => joinable.join(remaining(deadline), { signal }).then((done) => Buffer.of(done ? 1 : 0)));
      } else if (op === POLL) {
        run(id, (signal) => q._waitReadable(remaining(deadline), signal).then((ready) => Buffer.of(ready ? 1 : 0)));
      } else return false;
      return true;
    },
    gone: () => {
      peer.gone = true;
      peers.delete(peer);
      for (const ac of peer.calls.values()) ac.abort();
      // The items it took and did not mark done count as done, as for a consumer that died.
      for (; peer.held > 0; peer.held--) {
        try {
          joinable?.taskDone();
        } catch {
          // Marked done elsewhere already.
        }
      }
    },
  };
}

function describe(err: unknown): { name: string; message: string; code?: string } {
  const e = err as { name?: unknown; message?: unknown; code?: unknown };
  return { name: String(e.name), message: String(e.message), code: typeof e.code === 'string' ? e.code : undefined };
}

// ---------------------------------------------------------------------------------------------
// The using side: every call goes through one worker thread per thread (queue_relay_worker.ts).

const WORKER = path.join(__dirname, `queue_relay_worker${path.extname(__filename)}`);

interface Pending {
  resolve(body: Buffer): void;
  reject(err: Error): void;
  // A queue is kept while one of its calls is pending (a get() of a queue no longer referenced).
  q: ServedQueue;
}

// A queue collected closes its connection.
const collected = new FinalizationRegistry<number>((conn) => hub?.close(conn));

class Hub {
  readonly #worker: Worker;
  readonly #flag = new Int32Array(new SharedArrayBuffer(4));
  readonly #syncPort: MessagePort;
  readonly #pending = new Map<number, Pending>();
  readonly #byConn = new Map<number, WeakRef<ServedQueue>>();
  #nextId = 0;
  #nextConn = 0;
  #dead: Error | undefined;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.#syncPort = port1;
    this.#worker = new Worker(WORKER, { workerData: { flag: this.#flag, syncPort: port2 }, transferList: [port2] });
    this.#worker.unref();
    this.#worker.on('message', (m: { conn: number; bodies?: Uint8Array[]; gone?: boolean }) => {
      if (m.gone) this.#byConn.get(m.conn)?.deref()?._ended();
      for (const body of m.bodies ?? []) this.#answer(Buffer.from(body.buffer, body.byteOffset, body.length));
    });
    const died = (err?: Error): void => {
      this.#dead ??= err ?? new ProcessError('the thread that carries served queues ended', { code: 'ERR_MP_WORKER_DIED' });
      for (const ref of this.#byConn.values()) ref.deref()?._ended();
    };
    this.#worker.on('error', died);
    this.#worker.on('exit', () => died());
  }

  open(q: ServedQueue, ref: ServedRef): number {
    const conn = ++this.#nextConn;
    this.#byConn.set(conn, new WeakRef(q));
    collected.register(q, conn);
    this.#post({ t: 'open', conn, relay: ref.relay, token: ref.token });
    return conn;
  }

  // Commands for the worker, posted together once per turn of the event loop (a loop of puts).
  #outbox: Command[] = [];

  #post(cmd: Command): void {
    if (this.#outbox.push(cmd) === 1) setImmediate(() => this.#flush());
  }

  #flush(): void {
    if (this.#outbox.length === 0) return;
    const cmds = this.#outbox;
    this.#outbox = [];
    this.#worker.postMessage(
      cmds,
      cmds.flatMap((c) => (c.t === 'send' ? [c.body.buffer as ArrayBuffer] : [])),
    );
  }

  #id(): number {
    this.#nextId = (this.#nextId + 1) >>> 0;
    return this.#nextId;
  }

  #answer(body: Buffer): void {
    const id = body.readUInt32BE(1);
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#worker.unref();
    if (body[0] === OK) p.resolve(body.subarray(5));
    else p.reject(rebuildError(body.subarray(5)));
  }

  /** Every pending call of `conn` fails with `err`. */
  fail(conn: number, ids: Set<number>, err: Error): void {
    for (const id of ids) {
      const p = this.#pending.get(id);
      this.#pending.delete(id);
      p?.reject(err);
    }
    if (this.#pending.size === 0) this.#worker.unref();
    this.#byConn.delete(conn);
  }

  call(
    q: ServedQueue,
    [conn, ids]: [number, Set<number>],
    op: number,
    block: boolean,
    timeout: number | undefined,
    item: Uint8Array,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    const id = this.#id();
    const done = new Promise<Buffer>((resolve, reject) => this.#pending.set(id, { resolve, reject, q }));
    ids.add(id);
    if (this.#pending.size === 1) this.#worker.ref();
    this.#post({ t: 'send', conn, body: request(op, id, block, timeout, item) });
    if (signal) {
      // The server decides: an item it took before the cancel came is still delivered.
      const cancel = (): void => this.#post({ t: 'send', conn, body: request(CANCEL, this.#id(), false, 0, u32(id)) });
      signal.addEventListener('abort', cancel, { once: true });
      void done.finally(() => signal.removeEventListener('abort', cancel)).catch(() => undefined);
    }
    return done.finally(() => ids.delete(id));
  }

  /** A call this thread waits for, blocked: its answer's payload, or undefined when the connection is gone. */
  callSync(conn: number, op: number, block: boolean, item: Uint8Array): Buffer | undefined {
    if (this.#dead) return undefined;
    const id = this.#id();
    Atomics.store(this.#flag, 0, 0);
    this.#post({ t: 'send', conn, body: request(op, id, block, 0, item), sync: id });
    this.#flush();
    Atomics.wait(this.#flag, 0, 0);
    const m = receiveMessageOnPort(this.#syncPort)?.message as { body?: Uint8Array } | undefined;
    if (!m?.body) return undefined;
    const body = Buffer.from(m.body.buffer, m.body.byteOffset, m.body.length);
    if (body[0] !== OK) throw rebuildError(body.subarray(5));
    return body.subarray(5);
  }

  close(conn: number): void {
    this.#byConn.delete(conn);
    this.#post({ t: 'close', conn });
  }
}

let hub: Hub | undefined;

// In a buffer of its own: a message to a thread copies the whole buffer a view is on.
function request(op: number, id: number, block: boolean, timeout: number | undefined, item: Uint8Array): Uint8Array {
  const body = new Uint8Array(HEADER + item.length);
  const view = new DataView(body.buffer);
  body[0] = op;
  view.setUint32(1, id);
  body[5] = block ? 1 : 0;
  view.setFloat64(6, timeout ?? NaN);
  body.set(item, HEADER);
  return body;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

// The errors a queue's calls raise, as their own classes; anything else as a ProcessError.
function rebuildError(payload: Buffer): Error {
  const { name, message, code } = JSON.parse(payload.toString()) as { name: string; message: string; code?: string };
  if (name === 'Empty') return new Empty(message);
  if (name === 'Full') return new Full(message);
  if (name === 'AbortError') return new AbortError(message);
  return new ProcessError(message, { code: code ?? 'ERR_MP_REMOTE' });
}

// Queues of this thread with puts not yet in the queue, flushed before the process exits.
const putting = new Set<ServedQueue>();
registerExitTask(async () => {
  for (const q of putting) await q._flushForExit();
});

/**
 * A queue that another process serves to this one (no addon). `instanceof Queue` holds for it; its
 * calls are those of Queue, each a request to the process that owns the queue.
 */
class ServedQueue<T = unknown> {
  readonly #ref: ServedRef;
  readonly #conn: number;
  // Requests not yet answered; unbounded puts not yet in the queue.
  readonly #ids = new Set<number>();
  readonly #puts = new Set<Promise<unknown>>();
  #gone: EOFError | undefined;
  #closed = false;
  #used = false;
  #cancelJoin = false;
  #pushback: Uint8Array | undefined;

  constructor(ref: ServedRef) {
    this.#ref = ref;
    this.#conn = (hub ??= new Hub()).open(this, ref);
  }

  /** @internal The owner's connection closed: this and every later call fail. */
  _ended(): void {
    this.#gone = new EOFError(
      `the process that owns this queue (pid ${this.#ref.pid}) has ended, and the queue with it: ` +
        'without the native addon a queue sent to another process is served by the process it came from',
    );
    hub!.fail(this.#conn, this.#ids, this.#gone);
  }

  get maxsize(): number {
    return this.#ref.maxsize;
  }

  #check(): void {
    if (this.#closed) throw new ProcessError(`${this.#name} is closed in this process`, { code: 'ERR_MP_CLOSED' });
    if (this.#gone) throw this.#gone;
  }

  get #name(): string {
    return this.#ref.joinable ? 'JoinableQueue' : 'Queue';
  }

  /** @internal */
  _call(op: number, block: boolean, timeout: number | undefined, item: Uint8Array, signal?: AbortSignal): Promise<Buffer> {
    if (this.#gone) return Promise.reject(this.#gone);
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    return hub!.call(this, [this.#conn, this.#ids], op, block, timeout, item, signal);
  }

  /** @internal */
  _callSync(op: number, block: boolean, item: Uint8Array = NOTHING): Buffer {
    if (this.#gone) throw this.#gone;
    const got = hub!.callSync(this.#conn, op, block, item);
    if (got) return got;
    this._ended();
    throw this.#gone!;
  }

  /** As Queue.put(): an unbounded queue takes it at once (it is sent in the background). */
  put(item: T, options?: WaitOptions): Promise<void> {
    this.#check();
    const o = waitOptions(options, 'put');
    const msg = forAnotherProcess(() => dumps(item, 'item'));
    this.#used = true;
    if (this.maxsize === 0) {
      this.#send(msg);
      return Promise.resolve();
    }
    return this._call(PUT, o.block, remaining(o.deadline), msg, o.signal).then(() => undefined);
  }

  #send(msg: Uint8Array): void {
    const sent = this._call(PUT, true, undefined, msg).catch(() => undefined);
    this.#puts.add(sent);
    putting.add(this);
    void sent.finally(() => {
      this.#puts.delete(sent);
      if (this.#puts.size === 0) putting.delete(this);
    });
  }

  /** As Queue.putNowait(). */
  putNowait(item: T): void {
    this.#check();
    const msg = forAnotherProcess(() => dumps(item, 'item'));
    this.#used = true;
    if (this.maxsize === 0) this.#send(msg);
    else this._callSync(PUT, false, msg);
  }

  /** As Queue.get(). */
  async get(options?: WaitOptions): Promise<T> {
    this.#check();
    const o = waitOptions(options, 'get');
    const back = this.#pushback;
    this.#pushback = undefined;
    return (await loads(back ?? (await this._call(GET, o.block, remaining(o.deadline), NOTHING, o.signal)))) as T;
  }

  /** As Queue.getNowait(): a synchronous request to the owner. */
  getNowait(): T {
    this.#check();
    const msg = this.#pushback ?? this._callSync(GET, false);
    const got = loadsSync(msg);
    if (!got) {
      this.#pushback = msg;
      throw new Empty('the next item names a module that must be imported first: use await queue.get()');
    }
    this.#pushback = undefined;
    return got.value as T;
  }

  /** As Queue.qsize(): a synchronous request to the owner. */
  qsize(): number {
    if (this.#gone) throw this.#gone;
    return this._callSync(QSIZE, false).readUInt32BE(0) + (this.#pushback ? 1 : 0);
  }
  /** As Queue.empty(). */
  empty(): boolean {
    if (this.#used) this.#check();
    return this.qsize() === 0;
  }
  /** As Queue.full(). */
  full(): boolean {
    return this.maxsize > 0 && this.qsize() >= this.maxsize;
  }

  /** As Queue.close(): no more puts from this process; those sent still go in. */
  close(): void {
    this.#closed = true;
  }
  /** As Queue.joinThread(): wait until the owner has every item this process put. */
  async joinThread(): Promise<void> {
    if (!this.#closed) throw new ProcessError('joinThread() needs close() first', { code: 'ERR_MP_NOT_CLOSED' });
    await this._flushForExit();
  }
  /** As Queue.cancelJoinThread(). */
  cancelJoinThread(): void {
    this.#cancelJoin = true;
  }
  /** @internal */
  async _flushForExit(): Promise<void> {
    if (!this.#cancelJoin) while (this.#puts.size) await Promise.all(this.#puts);
  }
  /** @internal For connection.wait(). */
  async _waitReadable(timeoutMs: number | undefined, signal: AbortSignal): Promise<boolean> {
    return (await this._call(POLL, true, timeoutMs, NOTHING, signal))[0] === 1;
  }
  /** @internal */
  get _ref(): ServedRef {
    return this.#ref;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) yield await this.get();
  }
  toString(): string {
    return `<${this.#name}(maxsize=${this.maxsize}, served by pid ${this.#ref.pid})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** A JoinableQueue that another process serves to this one (no addon). */
class ServedJoinableQueue<T = unknown> extends ServedQueue<T> {
  /** As JoinableQueue.taskDone(): a synchronous request to the owner. */
  taskDone(): void {
    this._callSync(TASK_DONE, false);
  }
  /** As JoinableQueue.join(). */
  async join(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = checkTimeout(timeout, 'JoinableQueue.join');
    return (await this._call(JOIN, true, remaining(deadline), NOTHING, options.signal))[0] === 1;
  }
}

function connectQueue(ref: ServedRef): Queue | ServedQueue {
  // Served by this very thread (it came back): its own wrapper, not a request to itself.
  const own = ref.pid === process.pid ? servedByToken.get(ref.token) : undefined;
  if (own) return own._copy();
  return ref.joinable ? new ServedJoinableQueue(ref) : new ServedQueue(ref);
}

registerType<ServedQueue, ServedRef>(
  ServedQueue,
  { reduce: (q) => q._ref, rebuild: connectQueue as (r: ServedRef) => ServedQueue },
  'multiproc.ServedQueue',
);
installQueueServing({ serve: serveQueue, connect: connectQueue, queue: ServedQueue, joinable: ServedJoinableQueue });
