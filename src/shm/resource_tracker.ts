// The last line of cleanup (Python: `multiprocessing.resource_tracker`): a tiny process that
// records the names of the shared-memory segments this process tree creates and unlinks those
// still there when every process holding its pipe is gone — crashes and SIGKILL included, since
// the kernel closes a dead process's end of the pipe.
//
// The pipe's write end is inherited: spawn children get it as an extra stdio fd, threads share
// the process's fds. Lines are short, so each write() is atomic and lines never interleave.
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { emulated } from './native.js';

const TRACKER_MAIN = path.join(__dirname, '..', 'entry', `resource_tracker_main${path.extname(__filename)}`);

let fd: number | undefined;
let tracker: ChildProcess | undefined;

/** @internal A child uses the tracker of its parent, whose pipe it inherited as `inherited`. */
export function inheritTracker(inherited: number | undefined): void {
  fd ??= inherited;
}

/**
 * @internal The tracker pipe to hand to a child being started, if this process has one. It does
 * not start a tracker: a child that never creates a segment should not cost one.
 */
export function trackerFdForChild(): number | undefined {
  return fd;
}

/** @internal The fd of the tracker pipe, starting the tracker if needed. */
export function trackerFd(): number {
  if (fd !== undefined) return fd;
  // Loaded here, not at the top: a child that never creates a segment need not load it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy on purpose, see above
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const child = spawn(process.execPath, [TRACKER_MAIN], {
    stdio: ['pipe', 'ignore', 'inherit'],
    // Its own process group: a Ctrl-C meant for the program must not end the cleanup.
    detached: true,
  });
  child.unref();
  const stdin = child.stdin as unknown as { _handle?: { fd?: number }; unref?: () => void };
  stdin.unref?.();
  const pipeFd = stdin._handle?.fd;
  if (typeof pipeFd !== 'number' || pipeFd < 0) throw new Error('resource tracker: cannot reach its pipe');
  tracker = child;
  fd = pipeFd;
  return fd;
}

/** @internal pid of the tracker this process started (tests exclude it from leak checks). */
export function trackerPid(): number | undefined {
  return tracker?.pid;
}

/** Record that `name` exists; the tracker unlinks it if nobody else does. */
export function register(name: string): void {
  send(`REGISTER ${name}\n`);
}

/** Forget `name`: it has been unlinked. */
export function unregister(name: string): void {
  send(`UNREGISTER ${name}\n`);
}

// How long a write waits for room in a full tracker pipe before it is given up.
const STALL_MS = 10_000;
const pause = new Int32Array(new SharedArrayBuffer(4));
let stallWarned = false;

function send(line: string): void {
  // Emulated segments are memory of this process, nothing in /dev/shm: they go with it.
  if (emulated()) return;
  if (writeLine(trackerFd(), Buffer.from(line)) === 'stalled' && !stallWarned) {
    stallWarned = true;
    process.emitWarning(
      `multiproc: the resource tracker has not read its pipe for ${STALL_MS / 1000} s; ` +
        'segments this program leaves behind if it is killed may stay in /dev/shm (named mp-*)',
      { code: 'MULTIPROC_TRACKER_STALLED' },
    );
  }
}

/**
 * @internal Write one line (atomic: lines are shorter than PIPE_BUF) to `f`, which may be a
 * non-blocking pipe: while it is full, wait with a growing pause (never a busy loop) for up to
 * `maxWaitMs`. 'gone' when the reader has closed it.
 */
export function writeLine(f: number, buf: Buffer, maxWaitMs = STALL_MS): 'ok' | 'stalled' | 'gone' {
  const end = performance.now() + maxWaitMs;
  for (let wait = 0.1; ; wait = Math.min(wait * 2, 20)) {
    try {
      fs.writeSync(f, buf);
      return 'ok';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A full pipe is normally drained by the tracker within moments.
      if (code === 'EAGAIN') {
        if (performance.now() >= end) return 'stalled';
        Atomics.wait(pause, 0, 0, wait);
        continue;
      }
      // A tracker that is gone cannot be helped; the segments are still unlinked by their users.
      if (code === 'EPIPE' || code === 'EBADF') return 'gone';
      throw err;
    }
  }
}
