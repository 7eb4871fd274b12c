// The 'forkserver' start method (Python: `multiprocessing.forkserver`): children that start in
// milliseconds because they were booted ahead of time. Node cannot fork a running process safely
// (see docs/process.md for what was measured), so instead of a server that forks, this process
// keeps a few children ready: each is a `spawn` child that has loaded the library and the preload
// modules (by default the main module, as Python's `__main__`) and waits for its start message.
// start() hands one over and boots a replacement. The children are true children of this process:
// pid, exit code, signals and daemons behave exactly as with `spawn`; they inherit nothing from
// this process but what spawn gives (the target and arguments cross the usual way), and take this
// process's current directory and environment when they are handed over.
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';

import { InvalidArgumentError, ProcessError } from '../errors.js';
import { cpuCount } from '../platform.js';
import { trackerFd } from '../shm/resource_tracker.js';
import type { ChildConfig, Popen } from './popen.js';
import { parentDeathEnv } from './popen.js';
import { bootChild, SPAWN_MAIN, SpawnPopen } from './spawn.js';

/**
 * Children kept ready. MULTIPROC_FORKSERVER_WARM fixes the number (0: boot each child on
 * demand); by default two, and then as many as the most starts asked for at once (a Pool(n)
 * asks for n), up to the number of CPUs.
 */
const FIXED = ((): number | undefined => {
  const v = process.env.MULTIPROC_FORKSERVER_WARM;
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 64 ? n : undefined;
})();
let wanted = FIXED ?? 2;

interface Warm {
  child: ChildProcess;
  ready: boolean;
  /** Done with all it loads while standing (a pool worker's modules, then a manager's): a hand-over finds it idle. */
  idle: boolean;
  /** Ended before it was handed over (or was killed standing). */
  gone: boolean;
  /** Run once, when the child has preloaded (or has ended). */
  onReady: (() => void)[];
}

const standing: Warm[] = [];
/** Run each time a standing child has become idle (see onStandingIdle). */
const idleHooks: (() => void)[] = [];
/** Children handed over before they had preloaded: someone waits for each of them. */
let handedBooting = 0;
/**
 * Children handed over ready whose start is still under way: replacements wait until they have
 * exited, or for refillMs. Booting one beside them takes the CPU they need and blocks this
 * process while Node forks it (~4 ms of its CPU): a hand-over to the pool's first result took
 * 26-28 ms with the replacements booting once the workers ran, 13-15 ms without; a start + join
 * of an empty target 20-22 ms against 11-13 ms. When starts outrun the standing set, though,
 * the next start needs a replacement more than this one needs the CPU: then replacements boot
 * as soon as the children handed over report that their target runs.
 */
const starting = new Set<Warm>();
/** The last start found no child standing ready (it took one still booting, or booted one). */
let outrun = false;
let refillTimer: NodeJS.Timeout | undefined;
let refillMs = 25;
/** Starts asked for since the event loop last turned (one burst). */
let burst = 0;
let preload: string[] = ['__main__'];
/** Whether the children booted from now on also load a manager's server while they stand (see standManagerServers). */
let managerServers = false;
let preloadFailure: string | undefined;
let exitHook = false;

/** The modules to preload, as URLs a child can import or CommonJS paths it can require: `'__main__'` is the main module (if a file). */
function preloadUrls(): string[] {
  const out: string[] = [];
  for (const m of preload) {
    if (m === '__main__') {
      // A test file run by `node --test` is no program to preload: importing it runs its tests.
      const main = process.argv[1];
      if (!main || !path.isAbsolute(main) || process.env.NODE_TEST_CONTEXT !== undefined) continue;
      // A CommonJS main module is required by its path: import() would set up the ES module
      // loader in every child (~12 ms of CPU and 1.6 MB) for nothing.
      out.push(require.main?.filename === path.resolve(main) ? require.main.filename : pathToFileURL(main).href);
      continue;
    }
    if (m.startsWith('file:') || m.startsWith('node:')) out.push(m);
    else if (m.startsWith('.') || path.isAbsolute(m)) out.push(pathToFileURL(path.resolve(m)).href);
    else out.push(pathToFileURL(createRequire(path.join(process.cwd(), 'noop.js')).resolve(m)).href);
  }
  return out;
}

function boot(): Warm {
  // Standing, it dies with this process; handed a non-daemon, it stops doing so (spawn_main).
  const child = bootChild(trackerFd(), {
    MULTIPROC_FORKSERVER_PRELOAD: JSON.stringify(preloadUrls()),
    ...(managerServers ? { MULTIPROC_FORKSERVER_MANAGERS: '1' } : {}),
    ...parentDeathEnv(),
  });
  // A standing child never keeps this process alive, and ends when this process does.
  child.unref();
  child.channel?.unref();
  const w: Warm = { child, ready: false, idle: false, gone: false, onReady: [] };
  const settle = (): void => {
    for (const f of w.onReady.splice(0)) f();
  };
  child.on('message', (m: { type?: string; message?: string }) => {
    if (m.type === 'ready') {
      w.ready = true;
      settle();
      checkWaiters();
    } else if (m.type === 'running') {
      if (outrun) started(w);
    } else if (m.type === 'idle') {
      w.idle = true;
      checkWaiters();
      for (const f of idleHooks) f();
    } else if (m.type === 'preload-failed') {
      preloadFailure = m.message ?? 'unknown error';
      // Standing, it would never run anything: end it (one already handed over reports and exits).
      if (standing.includes(w)) {
        drop(w);
        w.child.kill('SIGKILL');
      }
      checkWaiters();
    }
  });
  const end = (): void => {
    w.gone = true;
    drop(w);
    settle();
    started(w);
    // Someone waits for the standing set to be full: replace the one that ended.
    if (waiters.length > 0) afterStarts();
  };
  child.once('exit', end);
  child.once('error', end);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const s of standing.splice(0)) s.child.kill('SIGKILL');
    });
  }
  return w;
}

function drop(w: Warm): void {
  const i = standing.indexOf(w);
  if (i >= 0) standing.splice(i, 1);
}

/**
 * Boot children until the standing set is full. Not while a child handed over is still booting:
 * someone waits for that one, and boots beside it would take the CPU it needs (a cold start took
 * twice as long with two replacements booting beside it); they boot when it has preloaded. Nor
 * while a start is under way (see `starting`).
 */
export function warmUp(): void {
  if (handedBooting > 0 || starting.size > 0) return;
  while (standing.length < wanted && preloadFailure === undefined) standing.push(boot());
}

/** @internal Set how long replacements wait at most for the children handed over (tests); returns the former value. */
export function setRefillDelay(ms: number): number {
  const was = refillMs;
  refillMs = ms;
  return was;
}

/** A child handed over has got going (or has ended): once none is starting, boot the replacements. */
function started(w: Warm): void {
  if (starting.delete(w) && starting.size === 0) refill();
}

/** The starts under way are done (or have had their time): boot the replacements. */
function refill(): void {
  clearTimeout(refillTimer);
  refillTimer = undefined;
  starting.clear();
  afterStarts();
}

let turnScheduled = false;

/**
 * Once the starts of this turn of the event loop have all been asked for: size the standing set
 * to the burst, and boot what is missing. The parent's own start-up (the context made, a pool
 * being set up) goes on meanwhile.
 */
function afterStarts(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(() => {
    turnScheduled = false;
    if (FIXED === undefined && burst > wanted) wanted = Math.min(burst, Math.max(2, cpuCount()));
    burst = 0;
    warmUp();
  });
}

/**
 * @internal Boot the standing children now, in the background (the forkserver context was made,
 * or chosen as the default): the first start() then finds them booted or booting. Only the main
 * thread of a program does: a child or a worker thread that makes the context (a module's top
 * level) starts no standing children of its own.
 */
export function prestart(): void {
  if (process.argv[1] === SPAWN_MAIN || !isMainThread) return;
  afterStarts();
}

/**
 * @internal A manager's server was started on the forkserver: the children booted from now on
 * also load what a manager's server runs while they stand (~15 ms of their CPU), so that the
 * next Manager() starts as fast as a pool. Until then they do not: it cost every pool worker
 * 1-3 MB of memory for a manager it never runs.
 */
export function standManagerServers(): void {
  managerServers = true;
}

/** @internal The children standing ready (booted or booting): their pids, and whether each has preloaded. */
export function standingChildren(): { pid: number; ready: boolean; idle: boolean }[] {
  return standing.map((w) => ({ pid: w.child.pid ?? -1, ready: w.ready, idle: w.idle }));
}

/**
 * @internal Run `f` each time a standing child has loaded all it loads while standing: what a
 * hand-over needs beside the child (a pool worker's pipe) is made then, while this process has
 * likely nothing else to do, rather than during the hand-over.
 */
export function onStandingIdle(f: () => void): void {
  idleHooks.push(f);
}

interface Waiter {
  n: number;
  resolve: () => void;
  reject: (err: Error) => void;
}
const waiters: Waiter[] = [];

function preloadError(): ProcessError {
  return new ProcessError(
    `the forkserver's children could not load their preload modules (fix the module, or change the list with setForkserverPreload()): ${preloadFailure}`,
    { code: 'ERR_MP_FORKSERVER_PRELOAD' },
  );
}

function checkWaiters(): void {
  const idle = standing.filter((w) => w.idle).length;
  for (const x of waiters.slice()) {
    if (preloadFailure === undefined && idle < Math.min(x.n, wanted)) continue;
    waiters.splice(waiters.indexOf(x), 1);
    if (preloadFailure === undefined) x.resolve();
    else x.reject(preloadError());
  }
}

/**
 * @internal Resolves once `n` children (at most as many as are kept) stand booted and idle, so
 * that the next starts are hand-overs only (benchmarks, tests). Boots what is missing.
 * @throws ProcessError ERR_MP_FORKSERVER_PRELOAD (rejects) when a preload module failed to load.
 */
export function standingIdle(n: number = wanted): Promise<void> {
  // The standing children keep nothing alive: the wait itself does, until it ends.
  const keep = setInterval(() => undefined, 1 << 30);
  const p = new Promise<void>((resolve, reject) => waiters.push({ n, resolve, reject })).finally(() => clearInterval(keep));
  if (process.argv[1] !== SPAWN_MAIN && isMainThread) afterStarts();
  checkWaiters();
  return p;
}

/** The standing child to hand over: one that has preloaded, else the one booting longest. */
function takeStanding(): Warm | undefined {
  const i = standing.findIndex((w) => w.ready);
  return standing.splice(i < 0 ? 0 : i, 1)[0];
}

/**
 * Start a child from the standing set (a freshly booted one if it is empty).
 * @throws ProcessError ERR_MP_FORKSERVER_PRELOAD when a preload module failed to load.
 */
export function startForkserver(payload: Uint8Array, config: ChildConfig): Popen {
  if (preloadFailure !== undefined) throw preloadError();
  const fd = trackerFd();
  const w = takeStanding() ?? boot();
  outrun = !w.ready || w.gone;
  burst++;
  if (!w.ready && !w.gone) {
    handedBooting++;
    w.onReady.push(() => {
      handedBooting--;
      afterStarts();
    });
  } else if (!w.gone) {
    starting.add(w);
    refillTimer ??= setTimeout(refill, refillMs).unref();
  }
  afterStarts();
  return new SpawnPopen(w.child, {
    type: 'start',
    config: { ...config, trackerFd: fd },
    payload,
    cwd: process.cwd(),
    env: { ...process.env },
  });
}

/**
 * The modules every forkserver child loads before it is handed a process (Python:
 * `set_forkserver_preload`): module names, paths or file URLs; `'__main__'` is the main module.
 * Children already standing are replaced.
 * @throws InvalidArgumentError when `modules` is not an array of non-empty strings.
 */
export function setPreload(modules: readonly string[]): void {
  const list: unknown = modules;
  if (!Array.isArray(list) || !list.every((m: unknown) => typeof m === 'string' && m !== '')) {
    throw new InvalidArgumentError(
      "setForkserverPreload(modules): modules must be an array of module names, paths or URLs (and '__main__')",
    );
  }
  preload = [...modules];
  preloadFailure = undefined;
  for (const w of standing.splice(0)) w.child.kill('SIGKILL');
}
