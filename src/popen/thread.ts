// The 'thread' start method: a worker thread running entry/thread_main.js, with the same
// Process API. Exit codes: a thread cannot receive a signal, so terminate() reports -15 and
// kill() -9, as a process would; an uncaught error gives 1 and process.exit(n) in the thread n.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { Liveness, waitExit, type ChildConfig, type Popen } from './popen.js';
import { segmentsForThread } from '../shm/native.js';
import { markThread, threadTable } from '../shm/threads.js';

const THREAD_MAIN = path.join(__dirname, '..', 'entry', `thread_main${path.extname(__filename)}`);

let liveCount = 0;

/** @internal Worker threads started by this thread that have not exited (for leak checks in tests). */
export function liveThreads(): number {
  return liveCount;
}

/** Start a worker thread that rebuilds the Process from `payload` and runs it. */
export function startThread(payload: Uint8Array, config: ChildConfig): Popen {
  return new ThreadPopen(payload, config);
}

class ThreadPopen implements Popen {
  readonly pid = process.pid;
  readonly ident: number;
  readonly exited: Promise<number>;
  #worker: Worker | undefined;
  #returncode: number | null = null;
  #stopCode: number | null = null;
  readonly #liveness: Liveness;

  constructor(payload: Uint8Array, config: ChildConfig) {
    // Without the addon, segments are found by name through a registry of this process (shm/emulated.ts).
    const segments = segmentsForThread();
    const worker = new Worker(THREAD_MAIN, {
      workerData: { config, payload, threads: threadTable(), segments: segments?.data },
      ...(segments ? { transferList: segments.transfer } : {}),
      // No execArgv: a Worker inherits the process's own, and rejects per-process flags
      // (--expose-gc, ...) when they are passed explicitly.
      name: config.name,
    });
    this.#worker = worker;
    this.ident = worker.threadId;
    liveCount++;
    markThread(worker.threadId, true);
    this.exited = new Promise<number>((resolve) => {
      worker.once('exit', (code) => {
        liveCount--;
        markThread(this.ident, false);
        this.#returncode = this.#stopCode ?? code;
        resolve(this.#returncode);
      });
    });
    // A worker may throw anything, undefined included.
    worker.on('error', (err: Error | null | undefined) => {
      // thread_main reports errors from run() itself; this is what escaped it (e.g. an
      // unhandled rejection after run returned). Print it as the thread's own stderr would.
      process.stderr.write(`Process ${config.name}:\n${err?.stack ?? String(err)}\n`);
    });
    this.#liveness = new Liveness(worker);
  }

  get returncode(): number | null {
    return this.#returncode;
  }

  wait(timeoutMs?: number): Promise<boolean> {
    return this.#liveness.hold(waitExit(this.exited, timeoutMs));
  }

  keepAlive(): void {
    this.#liveness.keep();
  }

  terminate(): void {
    this.#stop(-15);
  }

  kill(): void {
    this.#stop(-9);
  }

  #stop(code: number): void {
    if (this.#returncode !== null || !this.#worker) return;
    this.#stopCode ??= code;
    void this.#worker.terminate();
  }

  close(): void {
    this.#worker?.removeAllListeners();
    this.#worker = undefined;
  }
}
