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

function send(line: string): void {
  const f = trackerFd();
  const buf = Buffer.from(line);
  for (;;) {
    try {
      fs.writeSync(f, buf);
      return;
    } catch (err) {
      // The pipe may be non-blocking: a full pipe is drained by the tracker within moments.
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      // A tracker that is gone cannot be helped; the segments are still unlinked by their users.
      if ((err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'EBADF') return;
      throw err;
    }
  }
}
