// The Process class and the process-wide state around it (Python: `multiprocessing.process`).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';

import { channel, channels } from './diagnostics.js';
import { InvalidArgumentError, ProcessError } from './errors.js';
import { pidAlive, signalName } from './platform.js';
import { defaultStartMethod, startChild } from './popen/methods.js';
import type { ChildConfig, Popen, StartMethod } from './popen/popen.js';
import { childImportsOnly } from './reduction/functions.js';
import { dumps, loads } from './reduction/reduction.js';
import { inheritTracker, trackerFdForChild } from './shm/resource_tracker.js';
import { forAnotherProcess } from './shm/segment.js';
import { authkeyBytes, runExitTasks, type Authkey } from './util.js';

export type { StartMethod };

/**
 * Options of `new Process(...)`, as Python's keyword arguments. `A` is the argument list of
 * `target`, inferred from it: `args` must match (`new Process({ target: f, args: [1] })`).
 */
export interface ProcessOptions<A extends readonly unknown[] = readonly unknown[]> {
  /** Function run in the child: exported from a module, or self-contained inline. */
  target?: (...args: A) => unknown;
  /** Arguments for `target`; they cross by structured clone (and library objects by name). */
  args?: A;
  /** Defaults to `Process-N` (`Process-1:2` for the second child of Process-1). */
  name?: string;
  /** A daemon child is terminated when its parent exits and may not start children itself. */
  daemon?: boolean;
}

interface Internal {
  target: ((...args: never[]) => unknown) | undefined;
  args: readonly unknown[];
  name: string;
  daemon: boolean;
  identity: number[];
  parentPid: number;
  parentName: string | null;
  popen: Popen | undefined;
  closed: boolean;
  /** Set on the object that describes the current process (main or rebuilt child). */
  self: { pid: number; ident: number } | undefined;
  counter: number;
  method: StartMethod | undefined;
  /** Python's `authkey`: inherited from the creating process, 32 random bytes in the main one. */
  authkey: Buffer;
}

const internals = new WeakMap<object, Internal>();
/** Started children not yet known to have ended (Python: `_children`). */
const children = new Set<Process>();
let current: Process;
let parent: ParentProcess | null = null;
let bootstrapping = false;
/** How this child was started (undefined in the main process). */
let startedAs: StartMethod | undefined;

function state(p: Process): Internal {
  const s = internals.get(p);
  if (!s)
    throw new ProcessError('Process.__init__ was not called: call super(options) in the subclass constructor', {
      code: 'ERR_MP_NOT_INITIALIZED',
    });
  return s;
}

/**
 * A child process (or thread) running `target(...args)`, or the subclass's `run()`.
 * Mirrors Python's `multiprocessing.Process`; blocking calls return Promises and timeouts are ms.
 */
export class Process<A extends readonly unknown[] = readonly unknown[]> {
  /** @internal The start method of a context's Process class; undefined means the default. */
  static _startMethod: StartMethod | undefined;

  /**
   * @throws InvalidArgumentError when `target` is not a function, `args` not an array, `name`
   * not a string or `daemon` not a boolean.
   */
  constructor(options: ProcessOptions<A> = {}) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('new Process(options): options must be an object like { target, args, name, daemon }');
    const { target, args = [], name, daemon } = options;
    if (target !== undefined && typeof target !== 'function')
      throw new InvalidArgumentError(`new Process({ target }): target must be a function, got ${typeof target}`);
    if (!Array.isArray(args))
      throw new InvalidArgumentError('new Process({ args }): args must be an array (Python\'s args tuple), e.g. args: [1, "a"]');
    if (name !== undefined && typeof name !== 'string') throw new InvalidArgumentError('new Process({ name }): name must be a string');
    if (daemon !== undefined && typeof daemon !== 'boolean')
      throw new InvalidArgumentError('new Process({ daemon }): daemon must be a boolean');
    const cur = state(current);
    const identity = [...cur.identity, ++cur.counter];
    internals.set(this, {
      target,
      args,
      name: name ?? `${defaultNamePrefix(new.target)}-${identity.join(':')}`,
      daemon: daemon ?? false,
      identity,
      parentPid: process.pid,
      parentName: cur.name,
      popen: undefined,
      closed: false,
      self: undefined,
      counter: 0,
      method: new.target._startMethod,
      authkey: Buffer.from(cur.authkey),
    });
  }

  /** Code run in the child. Override it in an exported subclass; the default calls `target(...args)`. */
  run(): unknown {
    const s = state(this);
    if (s.target) return (s.target as (...a: unknown[]) => unknown)(...s.args);
    return undefined;
  }

  /**
   * Start the child. Synchronous, like Python: the arguments are checked and serialized here.
   * @throws ProcessError when already started, closed, called in a daemon process, or called
   * while this process is still importing its modules (the missing main guard).
   * @throws NotTransferableError when `target`, `args` or a subclass field cannot cross, naming its path.
   */
  start(): void {
    const s = state(this);
    checkClosed(s);
    if (s.popen || s.self) throw new ProcessError('cannot start a process twice', { code: 'ERR_MP_ALREADY_STARTED' });
    if (s.parentPid !== process.pid)
      throw new ProcessError('can only start a process object created by the current process', { code: 'ERR_MP_NOT_OWNER' });
    if (state(current).daemon)
      throw new ProcessError('daemonic processes are not allowed to have children', { code: 'ERR_MP_DAEMON_CHILD' });
    if (bootstrapping) throw new ProcessError(BOOTSTRAP_MESSAGE, { code: 'ERR_MP_BOOTSTRAPPING' });
    reapChildren();
    const method = s.method ?? defaultStartMethod();
    const payload = method === 'thread' ? dumps(this.#payload(s), '') : forAnotherProcess(() => dumps(this.#payload(s), ''));
    const config: ChildConfig = {
      name: s.name,
      identity: s.identity,
      daemon: s.daemon,
      parentPid: process.pid,
      parentName: state(current).name,
      method,
      trackerFd: trackerFdForChild(),
      authkey: s.authkey.toString('hex'),
    };
    const popen = (s.popen = startChild(method, payload, config));
    children.add(this);
    const started = channel(channels.processStart);
    if (started.hasSubscribers) started.publish({ name: s.name, pid: popen.pid, method });
    void popen.exited.then((exitcode) => {
      children.delete(this);
      const exited = channel(channels.processExit);
      if (exited.hasSubscribers) exited.publish({ name: s.name, pid: popen.pid, exitcode });
    });
  }

  #payload(s: Internal): ChildPayload {
    const cls = this.constructor as typeof Process;
    const own: Record<string, unknown> = {};
    for (const key of Object.keys(this)) own[key] = (this as unknown as Record<string, unknown>)[key];
    return {
      cls: isLibraryProcessClass(cls) ? null : cls,
      target: s.target,
      args: s.args,
      this: own,
    };
  }

  /**
   * Wait until the child ends, or until `timeout` ms have passed (then check `exitcode`).
   * @throws ProcessError when the process was not started, is closed, or is not our child.
   */
  async join(timeout?: number): Promise<void> {
    const s = state(this);
    checkClosed(s);
    if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout)))
      throw new InvalidArgumentError('join(timeout): timeout must be a number of milliseconds');
    if (s.self) throw new ProcessError('can only join a child process', { code: 'ERR_MP_NOT_CHILD' });
    if (!s.popen) throw new ProcessError('can only join a started process', { code: 'ERR_MP_NOT_STARTED' });
    if (await s.popen.wait(timeout)) children.delete(this);
  }

  /** Whether the child is still running (true for the current process). */
  isAlive(): boolean {
    const s = state(this);
    checkClosed(s);
    if (s.self) return true;
    if (!s.popen) return false;
    if (s.popen.returncode === null) return true;
    children.delete(this);
    return false;
  }

  /** Ask the child to stop: SIGTERM for a process (exitcode -15); a thread is stopped and reports -15. */
  terminate(): void {
    startedPopen(this, 'terminate').terminate();
  }

  /** Stop the child at once: SIGKILL for a process (exitcode -9); a thread is stopped and reports -9. */
  kill(): void {
    startedPopen(this, 'kill').kill();
  }

  /**
   * Release the Process object. Later calls on it throw.
   * @throws ProcessError when the child is still running (join or terminate it first).
   */
  close(): void {
    const s = state(this);
    if (s.closed) return;
    if (s.popen) {
      if (s.popen.returncode === null)
        throw new ProcessError('Cannot close a process while it is still running. You should first call join() or terminate().', {
          code: 'ERR_MP_STILL_RUNNING',
        });
      s.popen.close();
      children.delete(this);
    }
    s.closed = true;
  }

  /** The process name; not unique, settable. */
  get name(): string {
    return state(this).name;
  }
  set name(value: string) {
    if (typeof value !== 'string') throw new InvalidArgumentError('Process.name must be a string');
    state(this).name = value;
  }

  /** Whether this is a daemon child. Set it before start(). */
  get daemon(): boolean {
    return state(this).daemon;
  }
  set daemon(value: boolean) {
    const s = state(this);
    if (typeof value !== 'boolean') throw new InvalidArgumentError('Process.daemon must be a boolean');
    if (s.popen) throw new ProcessError('process has already started', { code: 'ERR_MP_ALREADY_STARTED' });
    s.daemon = value;
  }

  /**
   * The process's authentication key (Python: `authkey`): 32 random bytes in the main process,
   * inherited by every process it creates, and the default key of the managers it starts, so a
   * child reaches its parent's manager by address alone. Setting it (bytes, or a string taken as
   * UTF-8) changes the key of this process and of the Process objects it creates afterwards.
   * @throws InvalidArgumentError when set to something that is neither bytes nor a string.
   */
  get authkey(): Buffer {
    return state(this).authkey;
  }
  set authkey(value: Authkey) {
    const key = authkeyBytes(value, 'Process.authkey');
    if (key === undefined) throw new InvalidArgumentError('Process.authkey must be bytes or a string, not null');
    state(this).authkey = key;
  }

  /** null while running (or before start), 0 on success, 1 after an uncaught error, -N after signal N. */
  get exitcode(): number | null {
    const s = state(this);
    checkClosed(s);
    return s.popen ? s.popen.returncode : null;
  }

  /** OS process id, undefined before start. A thread reports the pid of its process. */
  get pid(): number | undefined {
    const s = state(this);
    checkClosed(s);
    return s.self ? s.self.pid : s.popen?.pid;
  }

  /** pid for a process, thread id for a thread; undefined before start. */
  get ident(): number | undefined {
    const s = state(this);
    checkClosed(s);
    return s.self ? s.self.ident : s.popen?.ident;
  }

  /** Settles (with the exit code) when the child ends; for `connection.wait()`. */
  get sentinel(): Promise<number> {
    return startedPopen(this, 'sentinel').exited;
  }

  /** @internal The Python-style numbering, e.g. [1, 2] for Process-1:2. */
  get _identity(): readonly number[] {
    return state(this).identity;
  }

  toString(): string {
    const s = state(this);
    const cls = this === current && !s.parentName ? '_MainProcess' : this.constructor.name;
    const parts = [`<${cls} name='${s.name}'`];
    if (s.closed) return `${parts[0]} closed>`;
    const pid = s.self?.pid ?? s.popen?.pid;
    if (pid !== undefined && !s.self) parts.push(`pid=${pid}`);
    parts.push(`parent=${s.self ? (s.parentName ? s.parentPid : 'None') : s.parentPid}`);
    const code = s.popen?.returncode;
    if (s.self || (s.popen && code === null)) parts.push('started');
    else if (s.popen) parts.push(code! < 0 ? `stopped exitcode=-${signalName(-code!)}` : `stopped exitcode=${code}`);
    else parts.push('initial');
    if (s.daemon) parts.push('daemon');
    return `${parts.join(' ')}>`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

function defaultNamePrefix(cls: typeof Process): string {
  return isLibraryProcessClass(cls) ? 'Process' : cls.name || 'Process';
}

/** @internal A start method as class names spell it (`Spawn`, `Thread`, `ForkServer`, as CPython's `ForkServerProcess`). */
export function methodTitle(method: StartMethod): string {
  return method === 'forkserver' ? 'ForkServer' : `${method[0]!.toUpperCase()}${method.slice(1)}`;
}

const libraryProcessClasses = new WeakSet<typeof Process>([Process]);
const methodClasses = new Map<StartMethod, typeof Process>();

/**
 * @internal The Process class of a start method (`SpawnProcess`, `ThreadProcess`), as Python's
 * contexts have; its children are named `Process-N` like those of Process itself.
 */
export function processClassFor(method: StartMethod): typeof Process {
  let cls = methodClasses.get(method);
  if (!cls) {
    const name = `${methodTitle(method)}Process`;
    cls = { [name]: class<A extends readonly unknown[] = readonly unknown[]> extends Process<A> {} }[name]!;
    cls._startMethod = method;
    libraryProcessClasses.add(cls);
    methodClasses.set(method, cls);
  }
  return cls;
}

/** What Pool and Manager need of a context: its Process class and start method. */
export interface ContextLike {
  readonly Process: typeof Process;
  getStartMethod(): StartMethod;
}

function isLibraryProcessClass(cls: typeof Process): boolean {
  return libraryProcessClasses.has(cls);
}

function checkClosed(s: Internal): void {
  if (s.closed) throw new ProcessError('process object is closed', { code: 'ERR_MP_CLOSED' });
}

function startedPopen(p: Process, what: string): Popen {
  const s = state(p);
  checkClosed(s);
  if (!s.popen) throw new ProcessError(`cannot ${what} a process that was not started`, { code: 'ERR_MP_NOT_STARTED' });
  return s.popen;
}

function reapChildren(): void {
  for (const c of children) if (state(c).popen?.returncode !== null) children.delete(c);
}

const BOOTSTRAP_MESSAGE = `An attempt has been made to start a new process before the
current process has finished its bootstrapping phase.

This probably means that a module imported by the child starts processes at its top level.
The child imports the module that defines the target, exactly as Python's spawn imports the
main module, so code that starts processes must sit behind the main guard:

    import { isMainModule } from 'multiproc';
    if (isMainModule(import.meta)) {        // CommonJS: if (require.main === module)
      const p = new Process({ target: work });
      p.start();
    }`;

// ---------------------------------------------------------------------------------------------
// The current process, its parent and its children.

/** The Process object of the running code: `MainProcess` in the parent, the rebuilt Process in a child. */
export function currentProcess(): Process {
  return current;
}

/** The parent of the current process, or null in the main process. */
export function parentProcess(): ParentProcess | null {
  return parent;
}

/** Live children of the current process; ended ones are reaped (joined) as a side effect. */
export function activeChildren(): Process[] {
  reapChildren();
  return [...children];
}

/** The parent as seen from a child (Python: `_ParentProcess`): name, pid, isAlive and join. */
export class ParentProcess {
  readonly name: string;
  readonly pid: number;
  readonly #sameProcess: boolean;
  constructor(name: string, pid: number, sameProcess: boolean) {
    this.name = name;
    this.pid = pid;
    this.#sameProcess = sameProcess;
  }
  /** Python's `ident` is the pid. */
  get ident(): number {
    return this.pid;
  }
  /** Whether the parent still runs (a thread's parent always does while the thread runs). */
  isAlive(): boolean {
    return this.#sameProcess || pidAlive(this.pid);
  }
  /** Wait until the parent has ended, or `timeout` ms; polls every 50 ms, as the parent is not ours to wait on. */
  async join(timeout?: number): Promise<void> {
    const end = timeout === undefined ? Infinity : Date.now() + timeout;
    while (this.isAlive() && Date.now() < end) await new Promise((r) => setTimeout(r, Math.min(50, Math.max(0, end - Date.now()))));
  }
  toString(): string {
    return `<_ParentProcess name='${this.name}' parent=None started>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

function makeMain(): Process {
  const main = Object.create(Process.prototype) as Process;
  internals.set(main, {
    target: undefined,
    args: [],
    name: 'MainProcess',
    daemon: false,
    identity: [],
    parentPid: process.pid,
    parentName: null,
    popen: undefined,
    closed: false,
    self: { pid: process.pid, ident: process.pid },
    counter: 0,
    method: undefined,
    // As Python's: random per main process, handed to every descendant at start.
    authkey: crypto.randomBytes(32),
  });
  return main;
}
current = makeMain();

// ---------------------------------------------------------------------------------------------
// The child side: entry/spawn_main.ts and entry/thread_main.ts call this.

/** What start() sends: the target, its args and a subclass's own fields, plus the subclass itself. */
interface ChildPayload {
  cls: typeof Process | null;
  target: unknown;
  args: readonly unknown[];
  this: Record<string, unknown>;
}

/**
 * The main guard for ES modules: true when the module whose `import.meta` is given is the
 * program Node was started with, false in the parent's other modules and in every child.
 * CommonJS code can use `require.main === module`, or pass its `module` here.
 * @throws InvalidArgumentError when given neither an `import.meta` nor a CommonJS module.
 */
export function isMainModule(meta: { url: string } | NodeJS.Module): boolean {
  if (isChild()) return false;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (meta && typeof meta === 'object') {
    if ('url' in meta && typeof meta.url === 'string') {
      const main = process.argv[1];
      if (!main) return false;
      return samePath(fileURLToPath(meta.url), path.resolve(main));
    }
    if ('exports' in meta) return require.main === meta;
  }
  throw new InvalidArgumentError('isMainModule(meta): pass import.meta (ES modules) or module (CommonJS)');
}

function samePath(file: string, main: string): boolean {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return p;
    }
  };
  const f = real(file);
  // `node script` may name the file without its extension.
  for (const candidate of [main, `${main}.js`, `${main}.mjs`, `${main}.cjs`, `${main}.ts`, `${main}.mts`]) {
    if (real(candidate) === f) return true;
  }
  return false;
}

/** True in a child while it imports modules and rebuilds its Process; start() is refused then. */
export function isBootstrapping(): boolean {
  return bootstrapping;
}

const THREAD_TS_HINT =
  "this worker thread cannot import TypeScript: on Node 20 loader hooks such as tsx do not reach worker threads. Use the 'spawn' start method (a Pool instead of a ThreadPool), compile the module to JavaScript, or use Node 22 or later";

/**
 * @internal What a failed import in a child means: in a worker thread, a TypeScript module that
 * Node cannot load there becomes a ProcessError (ERR_MP_THREAD_TYPESCRIPT) saying what to do;
 * other errors are returned as they are.
 */
export function explainImportError(err: unknown): unknown {
  if ((err as { code?: string } | null)?.code !== 'ERR_UNKNOWN_FILE_EXTENSION' || startedAs !== 'thread') return err;
  return new ProcessError(`${THREAD_TS_HINT} (${(err as Error).message})`, { code: 'ERR_MP_THREAD_TYPESCRIPT', cause: err });
}

/**
 * @internal In a child booted ahead of time (the forkserver start method): import `urls` (require
 * a path) before knowing which process it will run, as a child imports its target's module — with the main
 * guard false and starting processes refused (the bootstrapping error).
 */
export async function preloadModules(urls: readonly string[]): Promise<void> {
  parent ??= new ParentProcess('MainProcess', process.ppid, false);
  bootstrapping = true;
  try {
    for (const url of urls) {
      // A URL is imported; an absolute path names a CommonJS module (the parent's main one).
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- required as the parent did
      if (path.isAbsolute(url)) require(url);
      else await import(url);
    }
  } finally {
    bootstrapping = false;
  }
}

/** True in a process or thread started by multiproc. */
export function isChild(): boolean {
  return parent !== null;
}

/**
 * Rebuild the Process object from `payload`, run it and return its exit code (Python:
 * `BaseProcess._bootstrap`). Errors from run() are printed like Python's traceback report.
 * `onRunning` is called once the Process is rebuilt, just before its run() (a forkserver child
 * tells its parent, which then boots its replacement).
 */
export async function bootstrapChild(config: ChildConfig, payload: Uint8Array, ident: number, onRunning?: () => void): Promise<number> {
  parent = new ParentProcess(config.parentName, config.parentPid, config.method === 'thread');
  inheritTracker(config.trackerFd);
  startedAs = config.method;
  const s = state(current);
  s.name = config.name;
  s.identity = config.identity;
  s.daemon = config.daemon;
  s.parentName = config.parentName;
  s.parentPid = config.parentPid;
  s.authkey = Buffer.from(config.authkey, 'hex');
  s.self = { pid: process.pid, ident };
  let proc: Process;
  childImportsOnly();
  bootstrapping = true;
  try {
    const data = (await loads(payload)) as { cls: typeof Process | null; target: unknown; args: unknown[]; this: Record<string, unknown> };
    const cls = data.cls ?? Process;
    proc = Object.create(cls.prototype) as Process;
    Object.assign(proc, data.this);
    internals.set(proc, { ...s, target: data.target as Internal['target'], args: data.args, counter: 0, method: undefined });
  } catch (err) {
    bootstrapping = false;
    reportError(config.name, explainImportError(err));
    return 1;
  }
  bootstrapping = false;
  current = proc;
  children.clear();
  let code = 0;
  onRunning?.();
  try {
    await proc.run();
  } catch (err) {
    reportError(config.name, err);
    code = 1;
  }
  await exitFunction();
  return typeof process.exitCode === 'number' && code === 0 ? process.exitCode : code;
}

function reportError(name: string, err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `Uncaught ${inspect(err)}`;
  process.stderr.write(`Process ${name}:\n${text}\n`);
}

// The main code has ended when the event loop runs dry (children never hold it): then, as
// Python's exit function, terminate daemonic children and wait for all of them.
process.on('beforeExit', () => {
  for (const c of activeChildren()) {
    if (c.daemon) c.terminate();
    state(c).popen?.keepAlive();
  }
});

/** Python's `util._exit_function`: finish the exit tasks, terminate daemonic children, then wait for the others. */
export async function exitFunction(): Promise<void> {
  await runExitTasks();
  for (const c of activeChildren()) if (c.daemon) c.terminate();
  // Whoever owns a child (a pool) may close it while an earlier one is awaited: skip it then.
  for (const c of activeChildren()) if (!state(c).closed) await c.join();
}
