// Pools of worker processes or threads (Python: `multiprocessing.pool`).
//
// Each worker is a daemonic Process with its own duplex Pipe. The pool hands tasks out itself
// (at most DEPTH per worker: one running, one waiting behind it), so it always knows which task
// each worker holds. Replies come back in the order the tasks were sent, so the first task a
// worker holds is the one it is running. When a worker ends, the pool writes a marker into the
// worker's reply ring from its own copy of the worker's end: everything the worker wrote before
// dying is read first, then the marker. The running task then fails with WorkerDiedError, the
// tasks waiting behind it go back to the front of the queue, and a new worker takes its place.
// Every call therefore settles, whatever happens to the workers.
import { inspect } from 'node:util';

import { Pipe } from '../ipc/connection.js';
import { InvalidArgumentError, ProcessError, WorkerDiedError } from '../errors.js';
import { channel, channels } from '../diagnostics.js';
import { isAsyncIterable } from '../util.js';
import {
  checkCallOptions,
  checkChunksize,
  checkFunction,
  checkIterable,
  chunkBounds,
  mapOptions,
  nowUs,
  PoolTrace,
  Tally,
  type AsyncOptions,
  type CallOptions,
  type MapOptions,
  type PoolOptions,
  type TaskTiming,
} from './progress.js';
import { methodTitle, type ContextLike, type Process, type StartMethod } from '../process.js';
import { checkPoolOptions, resolveContext } from './options.js';
import { unlinkSegment } from '../shm/native.js';
import { Scratch } from '../shm/scratch.js';
import { readReplies, type ReplyHandlers } from './replies.js';
import { workerPipe } from './spare_pipes.js';
import { withReservations } from '../shm/segment.js';
import { dumps } from '../reduction/reduction.js';
import { armCall, AsyncResult, IMapIterator, MapResult, type Job, type Owner } from './results.js';
import { DEPTH, depthFor, fill, flush, TaskQueue, type Worker } from './dispatch.js';
import { APPLY, MAP, poolWorker, STARMAP, type ReplyMsg } from './worker.js';

export { AsyncResult, IMapIterator, MapResult } from './results.js';
export {
  defaultChunksize,
  ProgressBar,
  type AsyncOptions,
  type CallOptions,
  type MapOptions,
  type PoolOptions,
  type Progress,
  type ProgressBarOptions,
  type TaskTiming,
} from './progress.js';
import { TaskEncoder, type AnyFn } from './tasks.js';

const EXIT = new Uint8Array(0);

const enum State {
  RUN,
  CLOSE,
  TERMINATE,
}
const STATE_NAMES = ['RUN', 'CLOSE', 'TERMINATE'];

const ARRAY_ITERATOR = Array.prototype[Symbol.iterator];
function isPlainArray(x: unknown): x is unknown[] {
  return Array.isArray(x) && Object.getPrototypeOf(x) === Array.prototype && x[Symbol.iterator] === ARRAY_ITERATOR;
}

function notRunning(): ProcessError {
  return new ProcessError('Pool not running', { code: 'ERR_MP_POOL_NOT_RUNNING' });
}

/**
 * A pool of worker processes (Python: `multiprocessing.Pool`). Results are Promises; a worker
 * that dies fails only the task it was running (WorkerDiedError) and is replaced.
 */
export class Pool {
  readonly #ctx: ContextLike;
  readonly #size: number;
  readonly #initializer: AnyFn | null;
  readonly #initargs: readonly unknown[];
  readonly #maxtasks: number | null;
  #state = State.RUN;
  #workers: Worker[] = [];
  readonly #pending = new TaskQueue();
  readonly #owners = new Set<Owner>();
  readonly #iterators = new Set<IMapIterator>();
  #producers = 0;
  #workerSeq = 0;
  #broken: ProcessError | undefined;
  readonly #prefix: string;
  readonly #ref = new WeakRef(this);
  #hold: ReturnType<typeof setInterval> | undefined;
  /** Pool-wide onProgress/onTask, and the trace; undefined when not asked for. */
  readonly #tally: Tally | undefined;
  readonly #trace: PoolTrace | undefined;
  readonly #tasks: TaskEncoder;

  /**
   * @throws InvalidArgumentError for a bad size, initializer, initargs, maxtasksperchild or context.
   * @throws NotTransferableError when the initializer or its arguments cannot cross.
   */
  constructor(processes?: number | null | PoolOptions) {
    const o: PoolOptions = typeof processes === 'object' && processes !== null ? processes : { processes };
    const { size, initializer, initargs, maxtasks } = checkPoolOptions(o);
    this.#ctx = resolveContext(o.context, this._defaultMethod());
    this.#size = size;
    this.#initializer = initializer;
    this.#initargs = initargs;
    this.#maxtasks = maxtasks;
    this.#tasks = new TaskEncoder(this.#ctx.getStartMethod() === 'thread');
    this.#prefix = `${methodTitle(this.#ctx.getStartMethod())}PoolWorker`;
    const tally = new Tally(o.onProgress, o.onTask, 0);
    this.#tally = tally.active ? tally : undefined;
    this.#trace = o.trace ? new PoolTrace(o.trace, `${this.constructor.name}(${size})`) : undefined;
    // Refuse an initializer that cannot cross before anything starts.
    if (this.#initializer) withReservations(() => dumps([this.#initializer, initargs], 'initializer'))[1]();
    for (let i = 0; i < size; i++) this.#spawn();
  }

  /** @internal ThreadPool answers 'thread'. */
  protected _defaultMethod(): StartMethod | undefined {
    return undefined;
  }

  // ---- workers ------------------------------------------------------------------------------

  #spawn(): void {
    live.add(this.#ref);
    const [conn, child] = this.#ctx.getStartMethod() === 'forkserver' ? workerPipe() : Pipe(true);
    const tid = ++this.#workerSeq;
    const proc = new this.#ctx.Process({
      target: poolWorker,
      args: [child, this.#initializer, this.#initargs, this.#maxtasks],
      daemon: true,
      name: `${this.#prefix}-${tid}`,
    });
    try {
      proc.start();
    } catch (err) {
      conn.close();
      child.close();
      throw err;
    }
    this.#trace?.worker(tid, proc.name, proc.pid);
    const started = channel(channels.workerStart);
    if (started.hasSubscribers) started.publish({ pool: this, worker: proc.name, pid: proc.pid });
    const w: Worker = {
      proc,
      tid,
      conn,
      child,
      held: [],
      outbox: [],
      depth: DEPTH,
      sent: 0,
      known: new Set(),
      exitcode: null,
      stopping: false,
      finalized: undefined as unknown as Promise<void>,
      wake: undefined,
      killing: undefined,
      scratch: new Scratch(),
    };
    this.#workers.push(w);
    void proc.sentinel.then((code) => {
      w.exitcode = code;
      // After everything the worker wrote: the marker that it is gone.
      void w.child.send(null).catch(() => undefined);
      w.wake?.();
    });
    w.finalized = readReplies(w, this.#readers);
  }

  #reply(w: Worker, msg: ReplyMsg): void {
    const [id, ok, value, t0, t1] = msg;
    if (id === -1) {
      this.#breakPool(value);
      return;
    }
    const job = w.held.shift();
    if (job) {
      // The worker took over what the payload held (or never will): nothing is reserved now.
      job.release();
      if (t0 !== undefined) w.depth = depthFor(t1! - t0);
      if (this.#owners.has(job.owner)) {
        if (t0 !== undefined) this.#observe(w, job, ok, value, t0, t1!);
        job.owner._onResult(job, ok, value);
      }
      if (job.owner.settled) this.#owners.delete(job.owner);
    }
    // The next task is running now: stop it if its call was cancelled meanwhile.
    if (w.held[0]?.owner.cancelled) this.#kill(w);
  }

  /** A task finished: its timing goes to the call, the pool's hooks and the trace. */
  #observe(w: Worker, job: Job, ok: boolean, value: unknown, t0: number, t1: number): void {
    const t: TaskTiming = {
      worker: w.proc.name,
      index: job.first,
      items: job.items,
      queuedMs: Math.max(0, (t0 - job.at) / 1000),
      runMs: (t1 - t0) / 1000,
      ok,
    };
    job.owner._timing(t);
    this.#tally?.task(t);
    this.#trace?.task(w.tid, this.#tasks.fnNames[job.fnId] ?? 'task', t0, t1, t);
    const ended = channel(channels.taskEnd);
    if (ended.hasSubscribers) ended.publish({ pool: this, task: job.id, ...t, error: ok ? undefined : value });
  }

  #finalize(w: Worker): void {
    this.#trace?.ended(w.tid, w.exitcode === null ? 'closed' : w.exitcode < 0 ? `signal ${-w.exitcode}` : `exit code ${w.exitcode}`);
    const i = this.#workers.indexOf(w);
    if (i >= 0) this.#workers.splice(i, 1);
    const held = w.held;
    w.held = [];
    // Killed by the pool to stop a cancelled task that had already finished: the task running
    // then did not cause the death, and runs again elsewhere.
    const innocent = w.killing !== undefined && held[0] !== w.killing;
    const head = innocent ? undefined : held.shift();
    const died = head && !head.owner.settled ? new WorkerDiedError(w.proc.name, w.exitcode) : undefined;
    if (head) {
      head.release();
      if (died) {
        head.owner._fail(died);
        this.#owners.delete(head.owner);
      }
    }
    const exited = channel(channels.workerExit);
    if (exited.hasSubscribers) exited.publish({ pool: this, worker: w.proc.name, pid: w.proc.pid, exitcode: w.exitcode, failedTask: died });
    // The tasks waiting behind it never started: another worker runs them.
    const rest: Job[] = [];
    for (const j of held) {
      if (j.owner.settled) j.release();
      else rest.push(j);
    }
    this.#pending.putBack(rest);
    // A worker that was killed never gave back its hold on the pipe's segment: nobody will open
    // it again, so its name goes now (the mappings go with the two ends closed below).
    const name = w.child._segmentName();
    try {
      if (name !== undefined) unlinkSegment(name);
    } catch {
      // already gone
    }
    w.conn.close();
    w.child.close();
    try {
      w.proc.close();
    } catch {
      // still reported running: nothing to release yet
    }
    if (this.#state === State.RUN || (this.#state === State.CLOSE && this.#hasWork())) {
      try {
        this.#spawn();
      } catch (err) {
        this.#breakPool(err);
      }
    }
    this.#pump();
    this.#maybeStop();
    this.#updateHold();
  }

  // Stop the task `w` runs now (its call was cancelled) by killing the worker; it gets no more tasks.
  #kill(w: Worker): void {
    if (w.exitcode !== null || w.killing) return;
    w.killing = w.held[0];
    w.stopping = true;
    try {
      w.proc.kill();
    } catch {
      // already closed
    }
  }

  #breakPool(err: unknown): void {
    if (this.#state === State.TERMINATE) return;
    this.#broken = new ProcessError('the pool initializer failed in a worker; the pool was terminated', {
      code: 'ERR_MP_POOL_INITIALIZER',
      cause: err,
    });
    this.#terminate(this.#broken);
  }

  // ---- dispatch -----------------------------------------------------------------------------

  // Worker exits never hold the event loop (children do not), and idle readers do not read: while
  // tasks are queued or running, this timer keeps the program alive until they settle.
  #updateHold(): void {
    const busy = this.#state !== State.TERMINATE && (this.#pending.waiting || this.#workers.some((w) => w.held.length > 0));
    // One timer, ref'd while busy: making and clearing one per call (an applyAsync round trip
    // goes busy and idle each time) costs ~0.5 µs, a ref toggle ~0.03.
    if (busy) {
      if (!this.#hold) this.#hold = setInterval(() => undefined, 1 << 30);
      else if (!this.#hold.hasRef()) this.#hold.ref();
    } else if (this.#hold) {
      if (this.#state === State.RUN) this.#hold.unref();
      else {
        clearInterval(this.#hold);
        this.#hold = undefined;
      }
    }
  }

  #hasWork(): boolean {
    if (this.#producers > 0) return true;
    if (this.#pending.hasLive()) return true;
    return this.#workers.some((w) => w.held.length > 0);
  }

  #pump(): void {
    if (this.#state === State.TERMINATE) return;
    fill(this.#workers, this.#pending, this.#maxtasks, this.#sendTo);
    flush(this.#workers);
  }

  readonly #sendTo = (w: Worker, job: Job): void => this.#send(w, job);
  readonly #readers: ReplyHandlers = {
    reply: (w, msg) => this.#reply(w, msg),
    read: () => {
      this.#pump();
      this.#maybeStop();
      this.#updateHold();
    },
    ended: (w) => this.#finalize(w),
  };
  #send(w: Worker, job: Job): void {
    if (!w.known.has(job.fnId)) {
      w.known.add(job.fnId);
      w.outbox.push(this.#tasks.fnMessage(job.fnId));
    }
    w.held.push(job);
    w.sent++;
    w.wake?.();
    const started = channel(channels.taskStart);
    if (started.hasSubscribers) started.publish({ pool: this, worker: w.proc.name, task: job.id, index: job.first, items: job.items });
    w.outbox.push(job.bytes);
  }

  #submit(jobs: Job[]): void {
    for (const j of jobs) {
      this.#pending.push(j);
      this.#tally?.add(j.items);
    }
    this.#pump();
    this.#updateHold();
  }

  /** @internal Stop the tasks of a cancelled call that workers are running now. */
  _stopRunning(owner: Owner): void {
    this.#owners.delete(owner);
    for (const w of this.#workers) if (w.held[0]?.owner === owner) this.#kill(w);
    this.#maybeStop();
  }

  #check(): void {
    if (this.#state !== State.RUN) {
      if (this.#broken)
        throw new ProcessError('Pool not running: its initializer failed', { code: 'ERR_MP_POOL_NOT_RUNNING', cause: this.#broken.cause });
      throw notRunning();
    }
  }

  // ---- the API ------------------------------------------------------------------------------

  /**
   * Run `fn(...args)` in a worker and resolve with its result (Python: `apply`).
   * @throws ProcessError (ERR_MP_POOL_NOT_RUNNING) when the pool was closed or terminated.
   */
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: CallOptions): Promise<Awaited<R>> {
    return this.applyAsync(fn, args, options).get();
  }

  /**
   * Start `fn(...args)` in a worker; the AsyncResult settles with its result (Python: `apply_async`).
   * @throws ProcessError (ERR_MP_POOL_NOT_RUNNING) when the pool was closed or terminated.
   * @throws NotTransferableError when `fn` or `args` cannot cross, naming the path.
   */
  applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: AsyncOptions<Awaited<R>>): AsyncResult<Awaited<R>> {
    this.#check();
    checkFunction(fn, 'applyAsync');
    const a = args ?? [];
    if (!Array.isArray(a)) throw new InvalidArgumentError("applyAsync(func, args): args must be an array (Python's args tuple)");
    checkCallOptions(options, 'applyAsync');
    const fnId = this.#tasks.fnId(fn);
    const result = new AsyncResult<Awaited<R>>(options?.callback, options?.errorCallback);
    result._pool = this;
    const job = this.#tasks.job(result, APPLY, fnId, a, 0, a.length, 0, 'args', 0, nowUs());
    this.#owners.add(result);
    armCall(result, options, 1);
    this.#submit([job]);
    return result;
  }

  /**
   * `fn` applied to every item, in input order (Python: `map`). The iterable may be sync or
   * async; it is read to its end first, as Python does. Default chunksize as CPython's.
   */
  map<T, R>(fn: (item: T) => R, iterable: Iterable<T> | AsyncIterable<T>, chunksize?: number | MapOptions | null): Promise<Awaited<R>[]> {
    return this.#mapAsync(fn, iterable, mapOptions(chunksize, 'map'), MAP, 'map').get() as Promise<Awaited<R>[]>;
  }

  /** As `map`, returning a MapResult (Python: `map_async`). */
  mapAsync<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | (MapOptions & AsyncOptions<Awaited<R>[]>) | null,
  ): MapResult<Awaited<R>> {
    return this.#mapAsync(fn, iterable, mapOptions(chunksize, 'mapAsync'), MAP, 'mapAsync') as MapResult<Awaited<R>>;
  }

  /** `fn(...args)` for every args array, in input order (Python: `starmap`). */
  starmap<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | MapOptions | null,
  ): Promise<Awaited<R>[]> {
    return this.#mapAsync(fn, iterable, mapOptions(chunksize, 'starmap'), STARMAP, 'starmap').get() as Promise<Awaited<R>[]>;
  }

  /** As `starmap`, returning a MapResult (Python: `starmap_async`). */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | (MapOptions & AsyncOptions<Awaited<R>[]>) | null,
  ): MapResult<Awaited<R>> {
    return this.#mapAsync(fn, iterable, mapOptions(chunksize, 'starmapAsync'), STARMAP, 'starmapAsync') as MapResult<Awaited<R>>;
  }

  #mapAsync(fn: AnyFn, iterable: unknown, o: MapOptions & AsyncOptions<unknown[]>, kind: number, what: string): MapResult {
    this.#check();
    checkFunction(fn, what);
    checkIterable(iterable, what);
    const chunksize = checkChunksize(o.chunksize, what);
    const fnId = this.#tasks.fnId(fn);
    const result = new MapResult<unknown>(o.callback, o.errorCallback);
    result._pool = this;
    this.#owners.add(result);
    armCall(result, o);
    const start = (items: unknown[]): void => {
      if (result.settled) return;
      const bounds = chunkBounds(items.length, this.#size, chunksize);
      const count = bounds.length - 1;
      result._tally?.setTotal(items.length, false);
      // Each chunk goes as soon as it is packed: the workers start on the first ones while the
      // rest are packed. A chunk that cannot be sent fails the call (those sent are dropped).
      const at = nowUs();
      try {
        for (let c = 0; c < count; c++)
          this.#submit([this.#tasks.job(result, kind, fnId, items, bounds[c]!, bounds[c + 1]!, c, 'iterable', bounds[c]!, at)]);
      } catch (err) {
        result._fail(err);
        throw err;
      }
      // (No reply is read before this returns.)
      result._setLength(items.length, count);
    };
    if (isAsyncIterable(iterable)) {
      this.#producers++;
      void (async () => {
        const items: unknown[] = [];
        try {
          for await (const x of iterable) {
            if (result.settled) break;
            items.push(x);
          }
          start(items);
        } catch (err) {
          result._fail(err);
        } finally {
          this.#producers--;
          this.#maybeStop();
        }
      })();
    } else {
      // The input is packed now, before map returns: an array need not be copied first (unless
      // its iteration is not the built-in one).
      start(isPlainArray(iterable) ? iterable : [...(iterable as Iterable<unknown>)]);
    }
    return result;
  }

  /**
   * Results of `fn` over `iterable` as an async iterable, in input order (Python: `imap`). Lazy:
   * the input is read as results are consumed. Default chunksize 1.
   */
  imap<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions | null,
  ): IMapIterator<Awaited<R>> {
    return this.#imap(fn, iterable, mapOptions(chunksize, 'imap'), true) as IMapIterator<Awaited<R>>;
  }

  /** As `imap`, in completion order (Python: `imap_unordered`). */
  imapUnordered<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | MapOptions | null,
  ): IMapIterator<Awaited<R>> {
    return this.#imap(fn, iterable, mapOptions(chunksize, 'imapUnordered'), false) as IMapIterator<Awaited<R>>;
  }

  #imap(fn: AnyFn, iterable: unknown, o: MapOptions, ordered: boolean): IMapIterator {
    const what = ordered ? 'imap' : 'imapUnordered';
    this.#check();
    checkFunction(fn, what);
    checkIterable(iterable, what);
    const chunksize = checkChunksize(o.chunksize, what) ?? 1;
    const fnId = this.#tasks.fnId(fn);
    const it = new IMapIterator<unknown>(this, ordered, Math.max(4, this.#size * DEPTH * 2));
    this.#owners.add(it);
    armCall(it, o);
    this.#iterators.add(it);
    this.#producers++;
    let first = 0;
    const submit = (items: unknown[], index: number): void => {
      const job = this.#tasks.job(it, MAP, fnId, items, 0, items.length, index, 'iterable', first, nowUs());
      first += items.length;
      this.#submit([job]);
    };
    void it._produce(iterable as Iterable<unknown>, chunksize, submit).finally(() => {
      if (!it.settled) it._tally?.setTotal(first);
      this.#producers--;
      this.#iterators.delete(it);
      this.#maybeStop();
    });
    return it;
  }

  /** @internal Whether close() was called: imap producers then stop waiting for the consumer. */
  get _closing(): boolean {
    return this.#state !== State.RUN;
  }

  /** No more tasks: the workers exit once the queued work is done (Python: `close`). */
  close(): void {
    if (this.#state === State.RUN) {
      this.#state = State.CLOSE;
      for (const it of this.#iterators) it._wake();
      this.#maybeStop();
    }
  }

  #maybeStop(): void {
    if (this.#state !== State.CLOSE || this.#hasWork()) return;
    for (const w of this.#workers) {
      if (w.stopping) continue;
      w.stopping = true;
      void w.conn.sendBytes(EXIT).catch(() => undefined);
    }
  }

  /**
   * Stop the workers now (Python: `terminate`). Unlike Python, every call still pending settles:
   * it rejects with ProcessError (ERR_MP_POOL_TERMINATED).
   */
  terminate(): void {
    this.#terminate(new ProcessError('the pool was terminated before this call finished', { code: 'ERR_MP_POOL_TERMINATED' }));
  }

  #terminate(err: ProcessError): void {
    if (this.#state === State.TERMINATE) return;
    this.#state = State.TERMINATE;
    this.#pending.clear();
    for (const w of this.#workers) for (const j of w.held) j.release();
    for (const o of [...this.#owners]) o._fail(err);
    this.#owners.clear();
    this.#updateHold();
    for (const w of this.#workers) {
      w.stopping = true;
      if (w.exitcode === null) {
        try {
          w.proc.terminate();
        } catch {
          // already closed
        }
      }
    }
  }

  /**
   * Wait until every worker has exited (Python: `join`).
   * @throws ProcessError (ERR_MP_POOL_RUNNING) when neither close() nor terminate() was called.
   */
  async join(): Promise<void> {
    if (this.#state === State.RUN)
      throw new ProcessError('the pool is still running: call close() or terminate() before join()', { code: 'ERR_MP_POOL_RUNNING' });
    // Process.join holds the event loop while the workers exit; the readers then finish.
    while (this.#workers.length)
      await Promise.all(
        this.#workers.map((w) =>
          w.proc
            .join()
            .catch(() => undefined)
            .then(() => w.finalized),
        ),
      );
    this.#trace?.write();
  }

  /** `await using pool = new Pool()`: terminate and join at the end of the block, as Python's `with`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }

  /** @internal The worker Process objects (Python: `pool._pool`), for tests and diagnostics. */
  get _pool(): Process[] {
    return this.#workers.map((w) => w.proc);
  }

  /** @internal Number of workers the pool keeps. */
  get _processes(): number {
    return this.#size;
  }

  toString(): string {
    return `<${this.constructor.name} state=${STATE_NAMES[this.#state]} pool_size=${this.#size}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

// Python's pool finalizer at exit: when the main code has ended (the event loop ran dry), an
// idle pool that was never closed is terminated, so that its workers are not replaced as the
// exit sequence stops them. (A pool with work still running keeps the loop alive itself.)
const live = new Set<WeakRef<Pool>>();
process.on('beforeExit', () => {
  for (const ref of live) {
    const pool = ref.deref();
    live.delete(ref);
    pool?.terminate();
  }
});

/** A Pool whose workers are threads of this process (Python: `multiprocessing.pool.ThreadPool`). */
export class ThreadPool extends Pool {
  constructor(processes?: number | null | Omit<PoolOptions, 'context'>) {
    super(typeof processes === 'object' && processes !== null ? { ...processes, context: 'thread' } : { processes, context: 'thread' });
  }
  protected override _defaultMethod(): StartMethod {
    return 'thread';
  }
}
