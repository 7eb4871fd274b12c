// Queues any process or thread holding them can put to and get from (Python:
// `multiprocessing.queues`). One shared segment holds a message ring, a reader lock and a writer
// lock (so many producers and consumers take turns), the item count and, for JoinableQueue, the
// count of unfinished tasks. As Python's feeder thread does, a local feeder writes what put()
// serialized, so an unbounded put() never waits; a process does not exit with items still in its
// feeder (unless cancelJoinThread()). Without the addon, a queue sent to another process is
// served to it by this one (queue_relay.ts).
import { inspect } from 'node:util';

import { mutexIsMine, mutexLock, mutexTryLock, mutexTryLockOrRecover, mutexUnlock, MUTEX_CELLS, waitSeq, wakeAll } from '../shm/cells.js';
import { futexWaitAsync, futexWake } from '../shm/native.js';
import { Ring, RING_HEADER_CELLS } from '../shm/ring.js';
import {
  BASE,
  forAnotherProcess,
  forThisProcess,
  KIND,
  rebuildWith,
  Segment,
  segmentFor,
  sendingToAnotherProcess,
} from '../shm/segment.js';
import { crossProcessError, emulated } from '../shm/native.js';
import type { RelayedEnd } from './connection.js';
import { meOwner, meOwnerStart, ownerAlive } from '../shm/threads.js';
import { AbortError, Empty, Full, InvalidArgumentError, ProcessError } from '../errors.js';
import { bytesTag, fromBytesTag, isBytesTag } from '../reduction/primitives.js';
import { dumps, loads, loadsSync, registerType } from '../reduction/reduction.js';
import type { WaitOptions } from '../sync/synchronize.js';
import { checkTimeout, deadlineOf, registerExitTask, remaining, type Deadline } from '../util.js';

const RLOCK = BASE;
const WLOCK = RLOCK + MUTEX_CELLS;
// Items counted in by put() and taken out of the ring, both wrapping; qsize() is the difference.
// PUTS moves by atomic add (or CAS, for a bounded queue: that is how a place is reserved). TAKES
// is only stored, under the reader lock, with the take journal below: a consumer killed at any
// moment leaves it exact.
const PUTS = WLOCK + MUTEX_CELLS;
const TAKES = PUTS + 1;
const MAXSIZE = PUTS + 2;
const TASKS = PUTS + 3; // JoinableQueue: items put (wrapping); unfinished() subtracts the done ones
const JOINSEQ = PUTS + 4; // bumped when the last unfinished task is done
const PWAIT = PUTS + 5; // producers asleep on TAKES, waiting for a place
// The take journal, written under the reader lock: open while a consumer takes a message, with
// where the ring's tail and the counts stood before. Whoever next holds the reader lock finds it
// still open only if that consumer died; the tail tells whether the message had been taken
// (then it is lost with the consumer, and counted as taken) or not (then it is still there).
const J_OPEN = PUTS + 6;
const J_TAIL = PUTS + 7;
const J_TAKES = PUTS + 8;
const J_ENTRY = PUTS + 9; // the taker's claim entry + 1, 0 for none
const J_ETAKEN = PUTS + 10;
// JoinableQueue: per consumer thread, the items it took and the taskDone() calls counted against
// them, so that the items of a consumer that died count as done (see releaseDeadClaims). Each
// entry: [owner thread id (0 free, -1 being set up, -2 being released), its start time, taken, done].
// Its counts wrap and outlive its owner (a free entry has taken === done): the tasks done are the
// sum of every entry's `done` plus DONE_OTHER (taskDone() for items no entry holds), so that
// taskDone() is a single atomic operation, which a kill cannot cut in half.
const DONE_OTHER = PUTS + 11;
const CLAIMS = PUTS + 12;
const CLAIM_ENTRIES = 64;
const OWNER = 0;
const START = 1;
const TAKEN = 2;
const DONE = 3;
// Set once the queue is served to another process (no addon): every put then serializes for
// another process, since a consumer may be one.
const SERVED = CLAIMS + 4 * CLAIM_ENTRIES;
const RING = SERVED + 1;
// How often join() looks for consumers that died holding items.
const CLAIM_CHECK_MS = 500;
const DATA_OFFSET = Math.ceil(((RING + RING_HEADER_CELLS) * 4) / 64) * 64;
// Items bigger than this stream through the ring in chunks.
const CAPACITY = 4 << 20;

/** Resolves on the next turn of the event loop (after its I/O). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// Bytes waiting in a process for room in the ring past which put() resolves a turn later.
const BACKLOG_BYTES = 1 << 20;

// Feeders of this process, flushed before it exits.
const feeders = new Set<Queue>();
registerExitTask(async () => {
  for (const q of feeders) await q._flushForExit();
});
// A feeder cut short at exit (cancelJoinThread) must not take the writer lock with it.
process.on('exit', () => {
  for (const q of feeders) q._releaseWriterLock();
});

function parseMaxsize(maxsize: unknown): number {
  if (maxsize === undefined || maxsize === null) return 0;
  if (typeof maxsize !== 'number' || !Number.isInteger(maxsize) || maxsize > 0x7fffffff)
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a wrong value of any type, shown as String() shows it
    throw new InvalidArgumentError(`Queue(maxsize): maxsize must be an integer (0 or less: unbounded), got ${String(maxsize)}`);
  return Math.max(0, maxsize);
}

/** @internal A queue's put/get options, checked. */
export function waitOptions(
  options: WaitOptions | undefined,
  what: string,
): { block: boolean; deadline: Deadline; signal: AbortSignal | undefined } {
  if (options === undefined) return { block: true, deadline: Infinity, signal: undefined };
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(`${what}: options must be an object like { block, timeout, signal }`);
  const block = options.block ?? true;
  if (typeof block !== 'boolean') throw new InvalidArgumentError(`${what}: block must be a boolean`);
  return { block, deadline: block ? checkTimeout(options.timeout, what) : deadlineOf(0), signal: options.signal };
}

/**
 * A FIFO queue shared by processes and threads (Python: `multiprocessing.Queue(maxsize)`).
 * Items cross as messages do (structured clone plus multiproc's types); any size works.
 */
export class Queue<T = unknown> {
  readonly #seg: Segment;
  readonly #c: Int32Array;
  readonly #ring: Ring;
  // The local feeder: serialized items waiting for the writer lock and room in the ring.
  readonly #buffer: Uint8Array[] = [];
  #buffered = 0; // bytes in #buffer
  #flushing: Promise<void> | undefined;
  #closed = false;
  /** Whether this process put anything on it (its feeder started, in CPython's terms). */
  #used = false;
  #cancelJoin = false;
  // A message taken by getNowait() that needed an asynchronous import: served first.
  #pushback: Uint8Array | undefined;

  /**
   * @throws InvalidArgumentError when `maxsize` is not an integer.
   * @throws SharedMemoryFullError (ERR_MP_SHM_FULL) when /dev/shm has no room for the queue's ring.
   */
  constructor(maxsize = 0) {
    const [seg, created] = segmentFor(DATA_OFFSET - BASE * 4 + CAPACITY, KIND.Queue);
    this.#seg = seg;
    this.#c = seg.i32;
    this.#ring = new Ring(this.#c, RING, new Uint8Array(seg.buffer, DATA_OFFSET, CAPACITY), created, false);
    if (created) {
      const max = parseMaxsize(maxsize);
      Atomics.store(this.#c, MAXSIZE, max);
    }
  }

  /** A queue that another process serves to this one (without the addon) is a Queue too. */
  static [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || isServed(this, x);
  }

  /** The bound given at creation (0: unbounded). */
  get maxsize(): number {
    return Atomics.load(this.#c, MAXSIZE);
  }

  #check(): void {
    if (this.#closed) throw new ProcessError(`${this.constructor.name} is closed in this process`, { code: 'ERR_MP_CLOSED' });
  }

  /**
   * Put an item. It is serialized now (a value that cannot cross throws here), counted at once,
   * and written by the feeder; an unbounded queue never waits. A bounded one waits for a free
   * place: with `{ block: false }` or after `timeout` ms it rejects with `Full`.
   * @throws NotTransferableError (synchronously) naming the path of what cannot cross.
   */
  put(item: T, options?: WaitOptions): Promise<void> {
    this.#check();
    const o = waitOptions(options, 'put');
    const tag = bytesTag(item);
    if (tag !== 0 && this.#reserve()) {
      this.#enqueue(item as Uint8Array, tag);
      return this.#buffered > BACKLOG_BYTES ? nextTurn() : Promise.resolve();
    }
    return this._putMessage(this.#dump(item), o.block, o.deadline, o.signal);
  }

  /** @internal put() of an item already serialized. */
  _putMessage(msg: Uint8Array, block: boolean, deadline: Deadline, signal: AbortSignal | undefined): Promise<void> {
    if (this.#reserve()) {
      this.#enqueue(msg);
      // Items wait here for room in the ring, and only a turn of the event loop lets the feeder
      // write them as the consumer makes room. Without one, a producer awaiting each put() in a
      // loop holds all it puts in memory until its loop ends: fresh pages, which cost more to
      // fault in than the copy (a 64 KiB item: 3-4x). The turn never waits for the consumer.
      return this.#buffered > BACKLOG_BYTES ? nextTurn() : Promise.resolve();
    }
    if (!block) return Promise.reject(new Full());
    return this.#waitPlace(deadline, signal).then((ok) => {
      if (!ok) throw new Full();
      this.#enqueue(msg);
    });
  }

  /** Put without waiting (Python: `put_nowait`). @throws Full when a bounded queue has no place. */
  putNowait(item: T): void {
    this.#check();
    const tag = bytesTag(item);
    const msg = tag === 0 ? this.#dump(item) : (item as Uint8Array);
    if (!this.#reserve()) throw new Full();
    this.#enqueue(msg, tag === 0 ? -1 : tag);
  }

  #dump(item: T): Uint8Array {
    return Atomics.load(this.#c, SERVED) !== 0 ? forAnotherProcess(() => dumps(item, 'item')) : dumps(item, 'item');
  }

  /** @internal Another wrapper of this queue in this process (a server's own). */
  _copy(): Queue<T> {
    const name = forThisProcess(() => this.#seg.retainForSend());
    return rebuildWith(Segment.adopt(name, KIND.Queue), () => (this instanceof JoinableQueue ? new JoinableQueue<T>() : new Queue<T>()));
  }

  /** @internal The queue is served to another process from now on. */
  _markServed(): void {
    Atomics.store(this.#c, SERVED, 1);
  }

  // Count an item in: always for an unbounded queue, when a place is free for a bounded one.
  #reserve(): boolean {
    const c = this.#c;
    const max = this.maxsize;
    if (max === 0) {
      Atomics.add(c, PUTS, 1);
      return true;
    }
    for (;;) {
      const p = Atomics.load(c, PUTS);
      if (((p - Atomics.load(c, TAKES)) | 0) >= max) return false;
      if (Atomics.compareExchange(c, PUTS, p, (p + 1) | 0) === p) return true;
    }
  }

  // Wait for a place in a bounded queue and reserve it; false at the deadline.
  async #waitPlace(deadline: Deadline, signal: AbortSignal | undefined): Promise<boolean> {
    const c = this.#c;
    for (;;) {
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
      const taken = Atomics.load(c, TAKES);
      if (this.#reserve()) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      Atomics.add(c, PWAIT, 1);
      try {
        await futexWaitAsync(c, TAKES, taken, left, signal);
      } finally {
        Atomics.sub(c, PWAIT, 1);
      }
    }
  }

  // With a `tag` (bytesTag()), `msg` is the item's bytes, not yet serialized.
  #enqueue(msg: Uint8Array, tag = -1): void {
    this.#used = true;
    this._onPut();
    // Straight into the ring when nothing is queued ahead and the writer lock is free.
    if (this.#buffer.length === 0 && !this.#flushing && mutexTryLock(this.#c, WLOCK)) {
      let done: boolean;
      try {
        done = this.#ring.tryWrite(msg, tag);
      } finally {
        mutexUnlock(this.#c, WLOCK);
      }
      if (done) return;
    }
    // Kept for the feeder: serialized now (a copy), as the caller may change its bytes after put().
    if (tag >= 0) msg = dumps(msg, 'item');
    this.#buffer.push(msg);
    this.#buffered += msg.length;
    this.#flushing ??= this.#feed();
  }

  async #feed(): Promise<void> {
    feeders.add(this);
    try {
      while (this.#buffer.length) {
        await mutexLock(this.#c, WLOCK, Infinity);
        try {
          // Write as many as are waiting while we hold the lock.
          while (this.#buffer.length) {
            await this.#ring.write(this.#buffer[0]!);
            this.#buffered -= this.#buffer.shift()!.length;
          }
        } finally {
          mutexUnlock(this.#c, WLOCK);
        }
      }
    } finally {
      this.#flushing = undefined;
      feeders.delete(this);
    }
  }

  /**
   * Take the next item, waiting for one (Python: `get`). With `{ block: false }`, or when
   * `timeout` ms pass first, rejects with `Empty`.
   */
  get(options?: WaitOptions): Promise<T> {
    try {
      this.#check();
      const o = waitOptions(options, 'get');
      // An item there now is taken and decoded without a Promise per step: most of a get()'s
      // cost when the consumer is behind.
      const now = this.#pushback === undefined && !o.signal?.aborted ? this.#takeNow(true) : null;
      if (now === null) return this.#getWaiting(o.deadline, o.signal);
      if (!(now instanceof Uint8Array)) return Promise.resolve(now.value as T);
      const got = loadsSync(now);
      return got ? Promise.resolve(got.value as T) : (loads(now) as Promise<T>);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async #getWaiting(deadline: Deadline, signal: AbortSignal | undefined): Promise<T> {
    return (await loads(await this._getMessage(deadline, signal))) as T;
  }

  /** @internal get() without decoding the item. */
  async _getMessage(deadline: Deadline, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const msg = this.#pushback ?? (await this.#take(deadline, signal));
    this.#pushback = undefined;
    return msg;
  }

  async #take(deadline: Deadline, signal: AbortSignal | undefined): Promise<Uint8Array> {
    if (!(await mutexLock(this.#c, RLOCK, deadline, signal))) throw new Empty();
    let msg: Uint8Array | null;
    try {
      this.#settleJournal();
      await this.#ring.skipPartialRead();
      this.#openJournal();
      try {
        msg = await this.#ring.read(deadline, signal);
      } finally {
        this.#settleJournal();
      }
    } finally {
      mutexUnlock(this.#c, RLOCK);
    }
    if (!msg) throw new Empty();
    return msg;
  }

  // Under the reader lock, before taking from the ring: note where things stand.
  #openJournal(): void {
    const c = this.#c;
    Atomics.store(c, J_TAIL, this.#ring.tail());
    Atomics.store(c, J_TAKES, Atomics.load(c, TAKES));
    const entry = this._claimEntry();
    Atomics.store(c, J_ENTRY, entry + 1);
    if (entry >= 0) Atomics.store(c, J_ETAKEN, Atomics.load(c, claimAt(entry, TAKEN)));
    Atomics.store(c, J_OPEN, 1);
  }

  // Under the reader lock: count what the take (ours, or that of a consumer that died in it)
  // took, and close the journal. Only stores of values computed from the journal, so that doing
  // it again after a death half-way through gives the same result.
  #settleJournal(): void {
    const c = this.#c;
    if (Atomics.load(c, J_OPEN) === 0) return;
    const took = this.#ring.tail() !== Atomics.load(c, J_TAIL) ? 1 : 0;
    Atomics.store(c, TAKES, (Atomics.load(c, J_TAKES) + took) | 0);
    const entry = Atomics.load(c, J_ENTRY) - 1;
    if (entry >= 0) Atomics.store(c, claimAt(entry, TAKEN), (Atomics.load(c, J_ETAKEN) + took) | 0);
    Atomics.store(c, J_OPEN, 0);
    if (took && Atomics.load(c, PWAIT) > 0) futexWake(c, TAKES);
  }

  /** @internal Settle the take of a consumer that died holding the reader lock, if there is one. */
  _settleDeadTake(): void {
    const c = this.#c;
    if (Atomics.load(c, J_OPEN) === 0 || !mutexTryLockOrRecover(c, RLOCK)) return;
    try {
      this.#settleJournal();
    } finally {
      mutexUnlock(c, RLOCK);
    }
  }

  /** @internal JoinableQueue: this thread's claim entry (-1: none is kept). */
  _claimEntry(): number {
    return -1;
  }

  /** Take an item without waiting (Python: `get_nowait`). @throws Empty when none is there now. */
  getNowait(): T {
    this.#check();
    const msg = this._getMessageNowait();
    const got = loadsSync(msg);
    if (!got) {
      // Its functions need an import that cannot happen synchronously: keep it for get().
      this.#pushback = msg;
      throw new Empty('the next item names a module that must be imported first: use await queue.get()');
    }
    this.#pushback = undefined;
    return got.value as T;
  }

  /** @internal The next message if there is one now. @throws Empty */
  _getMessageNowait(): Uint8Array {
    const back = this.#pushback;
    this.#pushback = undefined;
    if (back) return back;
    if (this.#ring.hasPartialRead()) throw new Empty('a large item was cut short by a consumer that died: use await queue.get()');
    const msg = this.#takeNow();
    if (!msg) throw new Empty();
    return msg;
  }

  // The next message if it is whole in the ring and the reader lock is free now; null otherwise.
  // With `bytes`, an item that is a byte array comes as its value, read straight into the
  // array given to the caller (one fresh buffer and one copy instead of two).
  #takeNow(bytes: true): Uint8Array | { value: unknown } | null;
  #takeNow(bytes?: false): Uint8Array | null;
  #takeNow(bytes = false): Uint8Array | { value: unknown } | null {
    if (!mutexTryLock(this.#c, RLOCK)) return null;
    try {
      this.#settleJournal();
      // The rest of a large message whose reader died must be skipped first: only get() can.
      if (this.#ring.hasPartialRead()) return null;
      this.#openJournal();
      try {
        const tag = bytes ? this.#ring.peek() : -1;
        const body = tag >= 0 && isBytesTag(tag) ? this.#ring.tryRead(undefined, 1) : null;
        return body ? { value: fromBytesTag(tag, body) } : this.#ring.tryRead();
      } finally {
        this.#settleJournal();
      }
    } finally {
      mutexUnlock(this.#c, RLOCK);
    }
  }

  /** Items put and not yet taken, by every process (Python: `qsize`). */
  qsize(): number {
    return Math.max(0, (Atomics.load(this.#c, PUTS) - Atomics.load(this.#c, TAKES)) | 0);
  }
  /**
   * Whether no item is waiting.
   * @throws ProcessError ERR_MP_CLOSED after close() in a process that put items on it (as in
   *   CPython, closing a queue this process never used leaves empty() working).
   */
  empty(): boolean {
    if (this.#used) this.#check();
    return this.qsize() === 0;
  }
  /** Whether a bounded queue has no free place. */
  full(): boolean {
    return this.maxsize > 0 && this.qsize() >= this.maxsize;
  }

  /** No more puts from this process; the feeder still writes what it holds. */
  close(): void {
    this.#closed = true;
  }

  /** Wait until this process's feeder has written everything (Python: `join_thread`). */
  async joinThread(): Promise<void> {
    if (!this.#closed) throw new ProcessError('joinThread() needs close() first', { code: 'ERR_MP_NOT_CLOSED' });
    await this.#flushing;
  }

  /** Let this process exit without waiting for its feeder (items not yet written are lost). */
  cancelJoinThread(): void {
    this.#cancelJoin = true;
  }

  /** @internal */
  async _flushForExit(): Promise<void> {
    if (!this.#cancelJoin) await this.#flushing;
  }

  /** @internal */
  _releaseWriterLock(): void {
    if (mutexIsMine(this.#c, WLOCK)) mutexUnlock(this.#c, WLOCK);
  }

  /** @internal JoinableQueue counts the task. */
  _onPut(): void {}

  /** @internal For connection.wait(): resolves true when an item is there. */
  async _waitReadable(timeoutMs: number | undefined, signal: AbortSignal): Promise<boolean> {
    return this.#ring.poll(timeoutMs, signal);
  }

  /** Take items as they come: `for await (const item of queue)`. It ends only when you break. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) yield await this.get();
  }

  /** @internal */
  get _cells(): Int32Array {
    return this.#c;
  }
  /** @internal */
  _segment(): Segment {
    return this.#seg;
  }

  toString(): string {
    return `<${this.constructor.name}(maxsize=${this.maxsize}, qsize=${this.qsize()})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

const claimAt = (entry: number, field: number): number => CLAIMS + 4 * entry + field;

// Take one unit of the claim of `entry` (an item it took, not yet done); false when it has none.
function takeClaim(c: Int32Array, entry: number): boolean {
  for (;;) {
    const done = Atomics.load(c, claimAt(entry, DONE));
    if (((Atomics.load(c, claimAt(entry, TAKEN)) - done) | 0) <= 0) return false;
    if (Atomics.compareExchange(c, claimAt(entry, DONE), done, (done + 1) | 0) === done) return true;
  }
}

// Tasks put and not yet done.
function unfinished(c: Int32Array): number {
  let done = Atomics.load(c, DONE_OTHER);
  for (let e = 0; e < CLAIM_ENTRIES; e++) done = (done + Atomics.load(c, claimAt(e, DONE))) | 0;
  return Math.max(0, (Atomics.load(c, TASKS) - done) | 0);
}

// The items taken by consumers that died (killed, or ended without taskDone()) count as done: no
// one can mark them done any more, and join() would wait forever. Frees their entries.
function releaseDeadClaims(c: Int32Array): void {
  for (let e = 0; e < CLAIM_ENTRIES; e++) {
    const owner = Atomics.load(c, claimAt(e, OWNER));
    if (owner <= 0 || ownerAlive(owner, Atomics.load(c, claimAt(e, START)))) continue;
    // A take it died in is settled first (by the next reader, or by _settleDeadTake).
    if (Atomics.load(c, J_OPEN) !== 0 && Atomics.load(c, J_ENTRY) === e + 1) continue;
    if (Atomics.compareExchange(c, claimAt(e, OWNER), owner, -2) !== owner) continue;
    // done := taken, by CAS: a taskDone() elsewhere taking one of these at the same time either
    // lands first (and is not counted here) or finds nothing left to take.
    for (;;) {
      const done = Atomics.load(c, claimAt(e, DONE));
      const taken = Atomics.load(c, claimAt(e, TAKEN));
      if (((taken - done) | 0) <= 0 || Atomics.compareExchange(c, claimAt(e, DONE), done, taken) === done) break;
    }
    Atomics.store(c, claimAt(e, OWNER), 0);
  }
  if (unfinished(c) === 0) wakeAll(c, JOINSEQ);
}

/**
 * A Queue whose consumers report each item done (Python: `JoinableQueue`): `join()` waits until
 * every item put has had its `taskDone()`. The items a consumer took and had not marked done
 * when it died (or ended) count as done, so that join() still returns.
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  // This thread's claim entry in the queue's table, once it has taken an item.
  #entry = -1;

  override _onPut(): void {
    Atomics.add(this._cells, TASKS, 1);
  }

  /** @internal */
  override _claimEntry(): number {
    const c = this._cells;
    const me = meOwner();
    const start = meOwnerStart();
    const ours = (e: number): boolean => Atomics.load(c, claimAt(e, OWNER)) === me && Atomics.load(c, claimAt(e, START)) === start;
    if (this.#entry >= 0 && ours(this.#entry)) return this.#entry;
    for (let e = 0; e < CLAIM_ENTRIES; e++) if (ours(e)) return (this.#entry = e);
    for (let round = 0; round < 2; round++) {
      for (let e = 0; e < CLAIM_ENTRIES; e++) {
        if (Atomics.compareExchange(c, claimAt(e, OWNER), 0, -1) !== 0) continue;
        // The start time first: an entry whose owner is set is always complete.
        Atomics.store(c, claimAt(e, START), start);
        Atomics.store(c, claimAt(e, OWNER), me);
        return (this.#entry = e);
      }
      // Full: free the entries of consumers that are gone, then look again.
      releaseDeadClaims(c);
    }
    // More consumer threads than entries: this one's items are not released if it dies.
    return -1;
  }

  /** Mark one item taken by get() as done. @throws ProcessError ERR_MP_TASK_DONE when called more often than items were put. */
  taskDone(): void {
    const c = this._cells;
    // Count it against this thread's items first, else against another consumer's (an item
    // handed over before it was done), else apart.
    let counted = this.#entry >= 0 && takeClaim(c, this.#entry);
    for (let e = 0; !counted && e < CLAIM_ENTRIES; e++) counted = Atomics.load(c, claimAt(e, OWNER)) !== 0 && takeClaim(c, e);
    if (!counted) {
      if (unfinished(c) <= 0) throw new ProcessError('taskDone() called too many times', { code: 'ERR_MP_TASK_DONE' });
      Atomics.add(c, DONE_OTHER, 1);
    }
    if (unfinished(c) === 0) wakeAll(c, JOINSEQ);
  }

  /**
   * Wait until every item put has been marked done; resolves false if `timeout` ms pass first.
   * Items taken by a consumer that has died count as done.
   */
  async join(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = checkTimeout(timeout, 'JoinableQueue.join');
    const c = this._cells;
    for (;;) {
      const seq = Atomics.load(c, JOINSEQ);
      if (unfinished(c) === 0) return true;
      this._settleDeadTake();
      releaseDeadClaims(c);
      if (unfinished(c) === 0) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      // Consumers may die while we wait: look again every so often.
      await waitSeq(c, JOINSEQ, seq, deadlineOf(left === undefined ? CLAIM_CHECK_MS : Math.min(left, CLAIM_CHECK_MS)), options.signal);
    }
  }
}

/** @internal What SimpleQueue needs of the queue it wraps (a Queue, or one another process serves). */
export type QueueLike<T> = Pick<Queue<T>, 'put' | 'get' | 'empty' | 'qsize' | 'close' | '_flushForExit' | '_waitReadable'>;

/** @internal What crosses in place of a queue that another process serves (queue_relay.ts). */
export interface ServedRef extends RelayedEnd {
  joinable: boolean;
  maxsize: number;
  pid: number;
}

// Set by queue_relay.ts when it loads (it sits above this module: it uses the relay's socket).
let serving:
  | {
      serve(q: Queue): ServedRef;
      connect(r: ServedRef): QueueLike<unknown>;
      queue: abstract new (...args: never[]) => unknown;
      joinable: abstract new (...args: never[]) => unknown;
    }
  | undefined;

/** @internal queue_relay.ts installs how a queue is served to another process without the addon. */
export function installQueueServing(s: typeof serving): void {
  serving = s;
}

// A queue served by another process is a Queue (and a JoinableQueue when it is one) to user code.
function isServed(cls: unknown, x: unknown): boolean {
  if (!serving) return false;
  const served = cls === Queue ? serving.queue : cls === JoinableQueue ? serving.joinable : undefined;
  return served !== undefined && Function.prototype[Symbol.hasInstance].call(served, x);
}

registerType<Queue, { name: string; joinable: boolean } | ServedRef>(
  Queue,
  {
    reduce: (q) => {
      // Without the addon another process cannot map the queue: this process serves it.
      if (sendingToAnotherProcess() && emulated() && serving) return serving.serve(q);
      return { name: q._segment().retainForSend(), joinable: q instanceof JoinableQueue };
    },
    rebuild: (r) => {
      if ('relay' in r) {
        if (!serving) throw crossProcessError('a Queue served by another process cannot be opened here');
        return serving.connect(r) as Queue;
      }
      return rebuildWith(Segment.adopt(r.name, KIND.Queue), () => (r.joinable ? new JoinableQueue() : new Queue()));
    },
  },
  'multiproc.Queue',
);
