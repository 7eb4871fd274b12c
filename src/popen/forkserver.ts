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

import { InvalidArgumentError, ProcessError } from '../errors.js';
import { trackerFd } from '../shm/resource_tracker.js';
import type { ChildConfig, Popen } from './popen.js';
import { parentDeathEnv } from './popen.js';
import { bootChild, SpawnPopen } from './spawn.js';

/** Children kept ready. MULTIPROC_FORKSERVER_WARM sets it (0: boot each child on demand). */
const WARM = (() => {
  const n = Number(process.env.MULTIPROC_FORKSERVER_WARM ?? 2);
  return Number.isInteger(n) && n >= 0 && n <= 64 ? n : 2;
})();

interface Warm {
  child: ChildProcess;
  ready: boolean;
  /** Run once, when the child has preloaded (or has ended). */
  onReady: (() => void)[];
}

const standing: Warm[] = [];
let preload: string[] = ['__main__'];
let preloadFailure: string | undefined;
let exitHook = false;

/** The modules to preload as URLs a child can import: `'__main__'` is the main module (if a file). */
function preloadUrls(): string[] {
  const out: string[] = [];
  for (const m of preload) {
    if (m === '__main__') {
      // A test file run by `node --test` is no program to preload: importing it runs its tests.
      const main = process.argv[1];
      if (main && path.isAbsolute(main) && process.env.NODE_TEST_CONTEXT === undefined) out.push(pathToFileURL(main).href);
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
  const child = bootChild(trackerFd(), { MULTIPROC_FORKSERVER_PRELOAD: JSON.stringify(preloadUrls()), ...parentDeathEnv() });
  // A standing child never keeps this process alive, and ends when this process does.
  child.unref();
  child.channel?.unref();
  const w: Warm = { child, ready: false, onReady: [] };
  const settle = (): void => {
    for (const f of w.onReady.splice(0)) f();
  };
  child.on('message', (m: { type?: string; message?: string }) => {
    if (m.type === 'ready') {
      w.ready = true;
      settle();
    } else if (m.type === 'preload-failed') {
      preloadFailure = m.message ?? 'unknown error';
      // Standing, it would never run anything: end it (one already handed over reports and exits).
      if (standing.includes(w)) {
        drop(w);
        w.child.kill('SIGKILL');
      }
    }
  });
  child.once('exit', () => {
    drop(w);
    settle();
  });
  child.once('error', () => {
    drop(w);
    settle();
  });
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

/** Boot children until the standing set is full (the first start() does it too). */
export function warmUp(): void {
  while (standing.length < WARM && preloadFailure === undefined) standing.push(boot());
}

/** @internal The children standing ready (booted or booting): their pids, and whether each has preloaded. */
export function standingChildren(): { pid: number; ready: boolean }[] {
  return standing.map((w) => ({ pid: w.child.pid ?? -1, ready: w.ready }));
}

/**
 * Start a child from the standing set (a freshly booted one if it is empty).
 * @throws ProcessError ERR_MP_FORKSERVER_PRELOAD when a preload module failed to load.
 */
export function startForkserver(payload: Uint8Array, config: ChildConfig): Popen {
  if (preloadFailure !== undefined) {
    throw new ProcessError(
      `the forkserver's children could not load their preload modules (fix the module, or change the list with setForkserverPreload()): ${preloadFailure}`,
      { code: 'ERR_MP_FORKSERVER_PRELOAD' },
    );
  }
  const fd = trackerFd();
  const w = standing.shift() ?? boot();
  // Replacements boot once the child handed over has preloaded: booted at the same time, they
  // would take CPU from the start someone is waiting for (a cold start took twice as long).
  if (w.ready) setImmediate(warmUp);
  else w.onReady.push(warmUp);
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
