// The seam between Process and the ways a child is started (Python: the `Popen` classes).
// Nothing outside popen/ (and entry/, the children's side) touches child_process or worker_threads.

/** How a child is started: a new Node process, a worker thread of this one, or a Node process booted ahead of time. */
export type StartMethod = 'spawn' | 'thread' | 'forkserver';

/** What a child learns about itself before it rebuilds its Process object. */
export interface ChildConfig {
  name: string;
  identity: number[];
  daemon: boolean;
  parentPid: number;
  parentName: string;
  /** Start method of the child itself, for its currentProcess(). */
  method: StartMethod;
  /** The resource tracker's pipe in the child (fd number), when the parent has one. */
  trackerFd?: number;
  /** The child's authkey, hex (it travels on the start channel, never in argv or the environment). */
  authkey: string;
}

/** A started child: a process or a thread. */
export interface Popen {
  /** OS process id (for a thread, the pid of the process it lives in). */
  readonly pid: number;
  /** pid for a process, threadId for a thread. */
  readonly ident: number;
  /** null while running; exit code; -N after signal N (threads: see popen_thread.ts). */
  readonly returncode: number | null;
  /** Settles with the exit code when the child has ended. */
  readonly exited: Promise<number>;
  /** Resolves true when the child ended, false when `timeoutMs` passed first. */
  wait(timeoutMs?: number): Promise<boolean>;
  terminate(): void;
  kill(): void;
  /** Drop handles; the child must have ended. */
  close(): void;
  /** Keep this process alive until the child ends (the exit sequence uses it). */
  keepAlive(): void;
}

/**
 * Who keeps the parent's event loop alive. Children never do by themselves, so that the end of
 * the main code can be noticed ('beforeExit') and daemons terminated before the others are
 * awaited, as Python's exit function does; a pending wait or the exit sequence holds it.
 */
export class Liveness {
  #waits = 0;
  #forever = false;
  readonly #handle: { ref(): void; unref(): void };
  constructor(handle: { ref(): void; unref(): void }) {
    this.#handle = handle;
    handle.unref();
  }
  /** Hold the loop open while `p` is pending. */
  hold<T>(p: Promise<T>): Promise<T> {
    if (this.#waits++ === 0 && !this.#forever) this.#handle.ref();
    return p.finally(() => {
      if (--this.#waits === 0 && !this.#forever) this.#handle.unref();
    });
  }
  /** Hold the loop open until the handle closes. */
  keep(): void {
    this.#forever = true;
    this.#handle.ref();
  }
}

/** Resolve true when `exited` settles, false after `timeoutMs` (undefined: wait forever). */
export function waitExit(exited: Promise<number>, timeoutMs: number | undefined): Promise<boolean> {
  if (timeoutMs === undefined || !Number.isFinite(timeoutMs)) return exited.then(() => true);
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
    void exited.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** The options of this Node process that a child must share (loaders such as tsx), less those that must not repeat. */
export function inheritedExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] as string;
    // -e/-p carry the parent's own program; --inspect would fight over the port; --test and
    // --watch belong to the runner that started the parent.
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') {
      i++;
      continue;
    }
    if (/^--(eval|print|inspect|inspect-brk|inspect-port|debug|test|watch|experimental-test)/.test(a)) continue;
    if (a === '--input-type' || a === '--debug-port') {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}
