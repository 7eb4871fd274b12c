// The 'spawn' start method: a fresh Node process running entry/spawn_main.js, like Python's
// spawn runs a fresh interpreter. The child's stdout/stderr are the parent's.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import { signalNumber } from '../platform.js';
import { inheritedExecArgv, Liveness, parentDeathEnv, waitExit, type ChildConfig, type Popen } from './popen.js';

/** @internal The entry of every spawned child (process.argv[1] there). */
export const SPAWN_MAIN = path.join(__dirname, '..', 'entry', `spawn_main${path.extname(__filename)}`);

/** Message the parent sends once, right after spawning (or when it hands over a warm child). */
export interface StartMessage {
  type: 'start';
  config: ChildConfig;
  payload: Uint8Array;
  /** For a child booted ahead of time (forkserver): the parent's directory and environment now. */
  cwd?: string;
  env?: Record<string, string | undefined>;
}

const live = new Set<SpawnPopen>();
let exitHookInstalled = false;

/**
 * @internal A new node running entry/spawn_main.js, waiting for its start message. The resource
 * tracker's pipe, if this process has one, is handed down as fd 4. `env` adds to this process's.
 */
export function bootChild(trackerFd: number | undefined, env?: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...inheritedExecArgv(), SPAWN_MAIN], {
    stdio: trackerFd === undefined ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'inherit', 'inherit', 'ipc', trackerFd],
    serialization: 'advanced',
    windowsHide: true,
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
}

/** Start a child process that rebuilds the Process from `payload` and runs it; a daemon dies with this process. */
export function startSpawn(payload: Uint8Array, config: ChildConfig): Popen {
  return new SpawnPopen(bootChild(config.trackerFd, config.daemon ? parentDeathEnv() : undefined), { type: 'start', config, payload });
}

/** @internal A child process of this one, started by handing `start` to `child` (spawn_main). */
export class SpawnPopen implements Popen {
  readonly pid: number;
  readonly exited: Promise<number>;
  #child: ChildProcess | undefined;
  #returncode: number | null = null;
  readonly #liveness: Liveness;

  constructor(child: ChildProcess, start: StartMessage) {
    // The child has the tracker's pipe as its fd 4 (see bootChild).
    if (start.config.trackerFd !== undefined) start = { ...start, config: { ...start.config, trackerFd: 4 } };
    this.#child = child;
    this.pid = child.pid ?? -1;
    this.exited = new Promise<number>((resolve) => {
      const settle = (code: number): void => {
        if (this.#returncode !== null) return;
        this.#returncode = code;
        live.delete(this);
        resolve(code);
      };
      // A child handed over after it ended (a warm child that died) reports at once.
      if (child.exitCode !== null || child.signalCode !== null) {
        settle(child.exitCode ?? -(child.signalCode ? (signalNumber(child.signalCode) ?? 1) : 1));
        return;
      }
      child.once('exit', (code, signal) => settle(code ?? -(signal ? (signalNumber(signal) ?? 1) : 1)));
      // spawn itself failed (e.g. EAGAIN): report it as an exit so that join() never hangs.
      child.once('error', () => settle(1));
    });
    // The channel only carries the start message; once sent it must not keep the parent alive.
    if (child.connected) child.send(start, () => child.channel?.unref());
    this.#liveness = new Liveness(child);
    if (start.config.daemon) {
      // If this process ends abruptly (process.exit), daemons are terminated on 'exit'.
      live.add(this);
      installExitHook();
    }
  }

  get ident(): number {
    return this.pid;
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
    this.#signal('SIGTERM');
  }

  kill(): void {
    this.#signal('SIGKILL');
  }

  #signal(sig: NodeJS.Signals): void {
    if (this.#returncode !== null || !this.#child) return;
    try {
      this.#child.kill(sig);
    } catch {
      // Already gone: the exit event will report it.
    }
  }

  close(): void {
    this.#child?.removeAllListeners();
    this.#child = undefined;
  }
}

// Python's _exit_function terminates daemonic children when the parent exits. The children also
// die with it when it is killed (see dieWithParent in popen.ts), and watch their IPC channel.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.terminate();
  });
}
