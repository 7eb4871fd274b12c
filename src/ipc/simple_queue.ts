// Python's SimpleQueue: a Queue without a feeder or bound, whose put() resolves once the item is in.
import { inspect } from 'node:util';

import { ProcessError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import { Queue, type QueueLike } from './queues.js';

/**
 * A queue without a feeder or bound (Python: `SimpleQueue`): put() writes the item itself,
 * under the writer lock, and resolves once it is in the queue.
 */
export class SimpleQueue<T = unknown> {
  readonly #q: QueueLike<T>;
  #closed = false;
  /** @param inner (internal) the queue it wraps */
  constructor(inner?: QueueLike<T>) {
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
  get _queue(): QueueLike<T> {
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

registerType(SimpleQueue, { reduce: (q) => q._queue, rebuild: (q: QueueLike<unknown>) => new SimpleQueue(q) }, 'multiproc.SimpleQueue');
