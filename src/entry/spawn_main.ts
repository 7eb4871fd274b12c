// Entry of a 'spawn' child (Python: `multiprocessing.spawn.spawn_main`): receive the start
// message, rebuild the Process, run it, exit with its code.
import * as nodeModule from 'node:module';
import { inspect } from 'node:util';

import type { StartMessage } from '../popen/spawn.js';

// Node 22+ can cache compiled code across processes, so every later child starts faster. It
// must be on before the library loads, hence the require()s below instead of imports.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
/* eslint-disable @typescript-eslint/no-require-imports -- after enableCompileCache, see above */
// Before anything slow: a daemon whose parent dies from here on is killed by the kernel.
const { dieWithParent, outliveParent } = require('../popen/popen.js') as typeof import('../popen/popen.js');
dieWithParent();
const { bootstrapChild, currentProcess } = require('../process.js') as typeof import('../process.js');
const { setLibraryTypeLoader } = require('../reduction/reduction.js') as typeof import('../reduction/reduction.js');
const { loadLibraryType } = require('./library_types.js') as typeof import('./library_types.js');
/* eslint-enable @typescript-eslint/no-require-imports */

// The library's own types (locks, queues, ...) load when a message first holds one.
setLibraryTypeLoader(loadLibraryType);

/** How long a forkserver child stands unused before it loads more of the library. */
const STANDING_MS = 50;

/* eslint-disable @typescript-eslint/no-require-imports -- only in a forkserver child left standing */
/**
 * What a forkserver child left standing loads once the program has run a manager's server on the
 * forkserver (a pool worker has no use for it): a manager's server, then what the server's first
 * moments would load (~8 ms): node:cluster (net's listen() loads it), and OpenSSL's random
 * source and HMAC (the handshake of the first connection).
 */
const MORE: (() => void)[] = [
  () => {
    require('../managers/managers.js');
  },
  () => {
    require('node:cluster');
    const crypto = require('node:crypto') as typeof import('node:crypto');
    crypto.createHmac('sha256', crypto.randomBytes(32)).update('').digest();
  },
];
/* eslint-enable @typescript-eslint/no-require-imports */

// A child booted ahead of time by the forkserver start method (see popen/forkserver.ts) gets
// the modules to load first in its environment; it then waits, as any child, for its start.
const preload = process.env.MULTIPROC_FORKSERVER_PRELOAD;
let preloaded: Promise<string | undefined> = Promise.resolve(undefined);
if (preload !== undefined) {
  delete process.env.MULTIPROC_FORKSERVER_PRELOAD;
  // Only once the program has run a manager on the forkserver (see standManagerServers).
  const more = process.env.MULTIPROC_FORKSERVER_MANAGERS === '1' ? MORE : [];
  delete process.env.MULTIPROC_FORKSERVER_MANAGERS;
  // Until it is handed a process to run, it ends with the parent's channel.
  const idle = (): never => process.exit(0);
  process.once('disconnect', idle);
  // A child left standing a while also loads what a manager's server runs (~15 ms), so that
  // Manager() on the forkserver starts as fast as a pool; a child handed over at once does not.
  let moreTimer: NodeJS.Timeout | undefined;
  let handed = false;
  // One step a turn: a start message that comes meanwhile waits for one step at most.
  const loadMore = (step: number): void => {
    if (handed) return;
    if (step >= more.length) {
      process.send?.({ type: 'idle' });
      return;
    }
    more[step]!();
    setImmediate(() => loadMore(step + 1));
  };
  process.once('message', () => {
    handed = true;
    process.off('disconnect', idle);
    clearTimeout(moreTimer);
  });
  const { preloadModules } = require('../process.js') as typeof import('../process.js'); // eslint-disable-line @typescript-eslint/no-require-imports -- loaded above already
  // What most children run: a pool worker's loop and its pipe. Not the whole library: it cost
  // every child booted ~40 ms of CPU and 4 MB, and a preload module that imports it loads it.
  require('../pool/worker.js'); // eslint-disable-line @typescript-eslint/no-require-imports -- only in a forkserver child
  require('../ipc/connection.js'); // eslint-disable-line @typescript-eslint/no-require-imports -- the same
  // And the parts of Node a pipe's first use loads (~5 ms, else paid after the hand-over): the
  // clock its waits read, and node:worker_threads for the holder's thread id.
  performance.now();
  (require('../shm/threads.js') as typeof import('../shm/threads.js')).meTid(); // eslint-disable-line @typescript-eslint/no-require-imports -- the same
  preloaded = preloadModules(JSON.parse(preload) as string[]).then(
    () => {
      process.send?.({ type: 'ready' });
      if (!handed) moreTimer = setTimeout(() => loadMore(0), STANDING_MS).unref();
      return undefined;
    },
    (err: unknown) => {
      const message = err instanceof Error ? (err.stack ?? err.message) : inspect(err);
      process.send?.({ type: 'preload-failed', message });
      return message;
    },
  );
}

process.once('message', (msg: StartMessage) => {
  // A forkserver child stood ready as a daemon would; handed a non-daemon, it outlives its parent.
  if (!msg.config.daemon) outliveParent();
  // A daemon dies with its parent, also when the parent was killed with SIGKILL: the IPC
  // channel closes when the parent's end of it goes away.
  process.once('disconnect', () => {
    if (currentProcess().daemon) process.kill(process.pid, 'SIGTERM');
  });
  void preloaded.then((failed) => {
    if (failed) {
      process.stderr.write(`Process ${msg.config.name}:\nthe forkserver could not preload its modules: ${failed}\n`);
      process.exit(1);
    }
    // Booted before the parent started this process: take the parent's directory and environment of now.
    if (msg.cwd !== undefined && msg.cwd !== process.cwd()) process.chdir(msg.cwd);
    if (msg.env) {
      for (const k of Object.keys(process.env)) if (!(k in msg.env)) Reflect.deleteProperty(process.env, k);
      Object.assign(process.env, msg.env);
    }
    // A forkserver child tells its parent when its target starts: a parent whose starts outrun
    // its standing children boots the replacement then (see `starting` in popen/forkserver.ts).
    const running = preload === undefined ? undefined : () => process.send?.({ type: 'running' }, undefined, undefined, () => undefined);
    bootstrapChild(msg.config, msg.payload, process.pid, running).then(
      (code) => process.exit(code),
      (err: unknown) => {
        process.stderr.write(`multiproc: child bootstrap failed: ${(err as Error | null | undefined)?.stack ?? String(err)}\n`);
        process.exit(1);
      },
    );
  });
});
