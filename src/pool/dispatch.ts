// How a pool hands tasks to its workers: a queue of tasks not yet sent, and each worker's share
// of them (at most its depth), written to it in as few messages as possible.
import type { Connection } from '../ipc/connection.js';
import type { Process } from '../process.js';
import type { Scratch } from '../shm/scratch.js';
import type { Job } from './results.js';
import { batch } from './worker.js';

/** Tasks sent to one worker and not yet answered: the running one and one waiting. */
export const DEPTH = 2;
// Quick tasks are sent further ahead, so that a worker finds its next task in its ring instead
// of waiting a round trip for it, and one wake-up of the pool's reader takes a batch of replies:
// as many as run in about QUEUED_US, at most MAX_DEPTH. Long tasks keep DEPTH, so that no worker
// sits on queued work another could start at the end of a call.
const MAX_DEPTH = 32;
/** Messages up to this size go to a worker together (worker.ts batch()); larger ones alone. */
const BATCH_MAX = 4096;
const QUEUED_US = 1000;
export function depthFor(runUs: number): number {
  return Math.max(DEPTH, Math.min(MAX_DEPTH, Math.floor(QUEUED_US / Math.max(1, runUs))));
}

export interface Worker {
  proc: Process;
  /** Its row in the trace. */
  tid: number;
  /** The pool's end. */
  conn: Connection;
  /** The pool's copy of the worker's end: it writes the end-of-worker marker. */
  child: Connection;
  held: Job[];
  /** Messages for it that fill() has not written yet. */
  outbox: Uint8Array[];
  /** How many tasks it may hold: DEPTH, more while its tasks are quick (depthFor). */
  depth: number;
  sent: number;
  known: Set<number>;
  exitcode: number | null;
  stopping: boolean;
  finalized: Promise<void>;
  /** Wakes the reader when a task is sent or the worker ended. */
  wake: (() => void) | undefined;
  /** The cancelled task the pool killed this worker to stop. */
  killing: Job | undefined;
  /** Where its replies are read (replies.ts). */
  scratch: Scratch;
}

/** Tasks not yet sent to a worker, first in first out. */
export class TaskQueue {
  #jobs: Job[] = [];
  #at = 0;

  push(job: Job): void {
    this.#jobs.push(job);
  }

  /** Whether any task is queued (settled calls' tasks included). */
  get waiting(): boolean {
    return this.#at < this.#jobs.length;
  }

  /** Whether a queued task belongs to a call still running. */
  hasLive(): boolean {
    for (let i = this.#at; i < this.#jobs.length; i++) if (!this.#jobs[i]!.owner.settled) return true;
    return false;
  }

  /** The next task of a call still running; the tasks of settled calls give back their holds. */
  next(): Job | undefined {
    while (this.#at < this.#jobs.length) {
      const j = this.#jobs[this.#at++]!;
      if (this.#at > 1024 && this.#at * 2 > this.#jobs.length) {
        this.#jobs = this.#jobs.slice(this.#at);
        this.#at = 0;
      }
      if (!j.owner.settled) return j;
      j.release();
    }
    return undefined;
  }

  /** Tasks a worker held but never started: they go first. */
  putBack(jobs: Job[]): void {
    if (jobs.length) this.#jobs.splice(this.#at, 0, ...jobs);
  }

  /** Drop every queued task, giving back its holds. */
  clear(): void {
    for (let i = this.#at; i < this.#jobs.length; i++) this.#jobs[i]!.release();
    this.#jobs = [];
    this.#at = 0;
  }
}

/**
 * Give each worker queued tasks up to its depth, level by level so that they share the queue;
 * `send` records one task as the worker's and puts it in its outbox.
 */
export function fill(workers: readonly Worker[], queue: TaskQueue, maxtasks: number | null, send: (w: Worker, job: Job) => void): void {
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    let open = false;
    for (const w of workers) {
      if (!queue.waiting) return;
      if (depth < w.depth) open = true;
      if (w.exitcode !== null || w.stopping || w.held.length !== depth || depth >= w.depth) continue;
      if (maxtasks !== null && w.sent >= maxtasks) continue;
      const job = queue.next();
      if (!job) return;
      send(w, job);
    }
    if (!open) return;
  }
}

// What fill() gave each worker goes as one message when it is small (one write, one wake-up).
export function flush(workers: readonly Worker[]): void {
  for (const w of workers) {
    const out = w.outbox;
    if (out.length === 0) continue;
    w.outbox = [];
    let small = out.length > 1;
    for (let i = 0; small && i < out.length; i++) small = out[i]!.length <= BATCH_MAX;
    if (small) void w.conn.sendBytes(batch(out)).catch(() => undefined);
    else for (const m of out) void w.conn.sendBytes(m).catch(() => undefined);
  }
}
