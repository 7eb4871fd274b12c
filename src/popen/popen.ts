// The seam between Process and the ways a child is started (Python: the `Popen` classes).
// Nothing outside popen/ (and entry/, the children's side) touches child_process or worker_threads.
import { hasParentDeathSignal } from '../platform.js';
import { setParentDeathSignal } from '../shm/native.js';

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

// A child that must die with its parent (a daemon, a pool worker, a forkserver child standing
// ready) is told so in its environment, with the parent's pid, and asks the kernel for SIGKILL
// when the parent goes as the first thing it does. The IPC channel also tells a child that its
// parent is gone, but only once its event loop runs, which a child still booting or busy in a
// long synchronous task does not do for seconds.
const PARENT_DEATH_ENV = 'MULTIPROC_DIE_WITH_PARENT';
const SIGKILL = 9;
let parentDeathSet = false;

/** @internal The environment that makes a spawned child die with this process: empty where the platform cannot. */
export function parentDeathEnv(): Record<string, string> {
  return hasParentDeathSignal ? { [PARENT_DEATH_ENV]: String(process.pid) } : {};
}

/**
 * @internal In a child, first thing: if its parent asked for it, die with the parent, and at
 * once if the parent is already gone. The kernel's signal comes when the thread that spawned
 * this process ends: the main thread of the parent, or the worker thread that started it (the
 * channel ends the child then too). Where the addon cannot do it, the channel still does.
 */
export function dieWithParent(): void {
  const parent = process.env[PARENT_DEATH_ENV];
  if (parent === undefined) return;
  // Its own children must not inherit the request.
  Reflect.deleteProperty(process.env, PARENT_DEATH_ENV);
  if (!hasParentDeathSignal) return;
  let ppid: number;
  try {
    ppid = setParentDeathSignal(SIGKILL);
  } catch {
    return;
  }
  parentDeathSet = true;
  if (ppid !== Number(parent)) process.kill(process.pid, 'SIGKILL');
}

/** @internal In a child that was made to die with its parent (a forkserver child): live on after it (a non-daemon). */
export function outliveParent(): void {
  if (!parentDeathSet) return;
  parentDeathSet = false;
  setParentDeathSignal(0);
}
