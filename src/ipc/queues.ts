// Queues any process or thread holding them can put to and get from (Python:
// `multiprocessing.queues`). One shared segment holds a message ring, a reader lock and a writer
// lock (so many producers and consumers take turns), the item count and, for JoinableQueue, the
// count of unfinished tasks. As Python's feeder thread does, a local feeder writes what put()
// serialized, so an unbounded put() never waits; a process does not exit with items still in its
// feeder (unless cancelJoinThread()).
import { inspect } from 'node:util';

import {
  mutexIsMine,
  mutexLock,
  mutexTryLock,
  mutexUnlock,
  MUTEX_CELLS,
  semAcquire,
  semRelease,
  semTryAcquire,
  SEM_CELLS,
  waitSeq,
  wakeAll,
} from '../shm/cells.js';
import { Ring, RING_HEADER_CELLS } from '../shm/ring.js';
import { BASE, KIND, rebuildWith, Segment, segmentFor } from '../shm/segment.js';
import { Empty, Full, InvalidArgumentError, ProcessError } from '../errors.js';
import { dumps, loads, loadsSync, registerType } from '../reduction/reduction.js';
import type { WaitOptions } from '../sync/synchronize.js';
import { checkTimeout, deadlineOf, registerExitTask, remaining, type Deadline } from '../util.js';

const RLOCK = BASE;
const WLOCK = RLOCK + MUTEX_CELLS;
const SLOTS = WLOCK + MUTEX_CELLS; // semaphore of free places (bounded queues)
const COUNT = SLOTS + SEM_CELLS; // items put and not yet taken
const MAXSIZE = COUNT + 1;
const UNFINISHED = COUNT + 2; // JoinableQueue: put and not yet taskDone()
const JOINSEQ = COUNT + 3; // bumped when UNFINISHED reaches 0
const RING = COUNT + 4;
const DATA_OFFSET = Math.ceil(((RING + RING_HEADER_CELLS) * 4) / 64) * 64;
// Items bigger than this stream through the ring in chunks.
const CAPACITY = 4 << 20;

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

function waitOptions(
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
      Atomics.store(this.#c, SLOTS, max);
      Atomics.store(this.#c, SLOTS + 2, max);
    }
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
    const msg = dumps(item, 'item');
    if (this.maxsize === 0 || semTryAcquire(this.#c, SLOTS)) {
      this.#enqueue(msg);
      return Promise.resolve();
    }
    if (!o.block) return Promise.reject(new Full());
    return semAcquire(this.#c, SLOTS, o.deadline, o.signal).then((ok) => {
      if (!ok) throw new Full();
      this.#enqueue(msg);
    });
  }

  /** Put without waiting (Python: `put_nowait`). @throws Full when a bounded queue has no place. */
  putNowait(item: T): void {
    this.#check();
    const msg = dumps(item, 'item');
    if (this.maxsize !== 0 && !semTryAcquire(this.#c, SLOTS)) throw new Full();
    this.#enqueue(msg);
  }

  #enqueue(msg: Uint8Array): void {
    this.#used = true;
    Atomics.add(this.#c, COUNT, 1);
    this._onPut();
    // Straight into the ring when nothing is queued ahead and the writer lock is free.
    if (this.#buffer.length === 0 && !this.#flushing && mutexTryLock(this.#c, WLOCK)) {
      let done: boolean;
      try {
        done = this.#ring.tryWrite(msg);
      } finally {
        mutexUnlock(this.#c, WLOCK);
      }
      if (done) return;
    }
    this.#buffer.push(msg);
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
            this.#buffer.shift();
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
  async get(options?: WaitOptions): Promise<T> {
    this.#check();
    const o = waitOptions(options, 'get');
    const msg = this.#pushback ?? (await this.#take(o.deadline, o.signal));
    this.#pushback = undefined;
    return (await loads(msg)) as T;
  }

  async #take(deadline: Deadline, signal: AbortSignal | undefined): Promise<Uint8Array> {
    if (!(await mutexLock(this.#c, RLOCK, deadline, signal))) throw new Empty();
    let msg: Uint8Array | null;
    try {
      msg = await this.#ring.read(deadline, signal);
    } finally {
      mutexUnlock(this.#c, RLOCK);
    }
    if (!msg) throw new Empty();
    this.#taken();
    return msg;
  }

  #taken(): void {
    Atomics.sub(this.#c, COUNT, 1);
    if (this.maxsize !== 0) semRelease(this.#c, SLOTS);
  }

  /** Take an item without waiting (Python: `get_nowait`). @throws Empty when none is there now. */
  getNowait(): T {
    this.#check();
    let msg = this.#pushback;
    if (!msg) {
      if (!mutexTryLock(this.#c, RLOCK)) throw new Empty();
      try {
        msg = this.#ring.tryRead() ?? undefined;
      } finally {
        mutexUnlock(this.#c, RLOCK);
      }
      if (!msg) throw new Empty();
      this.#taken();
    }
    const got = loadsSync(msg);
    if (!got) {
      // Its functions need an import that cannot happen synchronously: keep it for get().
      this.#pushback = msg;
      throw new Empty('the next item names a module that must be imported first: use await queue.get()');
    }
    this.#pushback = undefined;
    return got.value as T;
  }

  /** Items put and not yet taken, by every process (Python: `qsize`). */
  qsize(): number {
    return Math.max(0, Atomics.load(this.#c, COUNT));
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
    return this.maxsize > 0 && Atomics.load(this.#c, SLOTS) === 0;
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

/**
 * A Queue whose consumers report each item done (Python: `JoinableQueue`): `join()` waits until
 * every item put has had its `taskDone()`.
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  override _onPut(): void {
    Atomics.add(this._cells, UNFINISHED, 1);
  }

  /** Mark one item taken by get() as done. @throws ProcessError ERR_MP_TASK_DONE when called more often than items were put. */
  taskDone(): void {
    const c = this._cells;
    let v = Atomics.load(c, UNFINISHED);
    for (;;) {
      if (v <= 0) throw new ProcessError('taskDone() called too many times', { code: 'ERR_MP_TASK_DONE' });
      const seen = Atomics.compareExchange(c, UNFINISHED, v, v - 1);
      if (seen === v) break;
      v = seen;
    }
    if (v === 1) wakeAll(c, JOINSEQ);
  }

  /** Wait until every item put has been marked done; resolves false if `timeout` ms pass first. */
  async join(timeout?: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = checkTimeout(timeout, 'JoinableQueue.join');
    const c = this._cells;
    for (;;) {
      const seq = Atomics.load(c, JOINSEQ);
      if (Atomics.load(c, UNFINISHED) === 0) return true;
      if (remaining(deadline) === 0) return false;
      await waitSeq(c, JOINSEQ, seq, deadline, options.signal);
    }
  }
}

/**
 * A queue without a feeder or bound (Python: `SimpleQueue`): put() writes the item itself,
 * under the writer lock, and resolves once it is in the queue.
 */
export class SimpleQueue<T = unknown> {
  readonly #q: Queue<T>;
  #closed = false;
  constructor(inner?: Queue<T>) {
    this.#q = inner ?? new Queue<T>();
  }
  /** Put an item; resolves when it is in the queue. */
  async put(item: T): Promise<void> {
    await this.#q.put(item);
    await this.#q._flushForExit();
  }
  /** Take the next item, waiting for one. */
  get(): Promise<T> {
    return this.#q.get();
  }
  /**
   * Whether no item is waiting.
   * @throws ProcessError ERR_MP_CLOSED after close() in this process.
   */
  empty(): boolean {
    if (this.#closed) throw new ProcessError('SimpleQueue is closed in this process', { code: 'ERR_MP_CLOSED' });
    return this.#q.empty();
  }
  /** No more use of it in this process. */
  close(): void {
    this.#closed = true;
    this.#q.close();
  }
  /** @internal */
  get _queue(): Queue<T> {
    return this.#q;
  }
  /** @internal */
  _waitReadable(timeoutMs: number | undefined, signal: AbortSignal): Promise<boolean> {
    return this.#q._waitReadable(timeoutMs, signal);
  }
  toString(): string {
    return `<SimpleQueue(qsize=${this.#q.qsize()})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

registerType(
  Queue,
  {
    reduce: (q) => ({ name: q._segment().retainForSend(), joinable: q instanceof JoinableQueue }),
    rebuild: ({ name, joinable }: { name: string; joinable: boolean }) =>
      rebuildWith(Segment.adopt(name, KIND.Queue), () => (joinable ? new JoinableQueue() : new Queue())),
  },
  'multiproc.Queue',
);
registerType(SimpleQueue, { reduce: (q) => q._queue, rebuild: (q: Queue) => new SimpleQueue(q) }, 'multiproc.SimpleQueue');
