// Entry of a 'spawn' child (Python: `multiprocessing.spawn.spawn_main`): receive the start
// message, rebuild the Process, run it, exit with its code.
import * as nodeModule from 'node:module';

import type { StartMessage } from '../popen/spawn.js';

// Node 22+ can cache compiled code across processes, so every later child starts faster. It
// must be on before the library loads, hence the require()s below instead of imports.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
/* eslint-disable @typescript-eslint/no-require-imports -- after enableCompileCache, see above */
const { bootstrapChild, currentProcess } = require('../process.js') as typeof import('../process.js');
const { setLibraryTypeLoader } = require('../reduction/reduction.js') as typeof import('../reduction/reduction.js');
const { loadLibraryType } = require('./library_types.js') as typeof import('./library_types.js');
/* eslint-enable @typescript-eslint/no-require-imports */

// The library's own types (locks, queues, ...) load when a message first holds one.
setLibraryTypeLoader(loadLibraryType);

process.once('message', (msg: StartMessage) => {
  // A daemon dies with its parent, also when the parent was killed with SIGKILL: the IPC
  // channel closes when the parent's end of it goes away.
  process.once('disconnect', () => {
    if (currentProcess().daemon) process.kill(process.pid, 'SIGTERM');
  });
  bootstrapChild(msg.config, msg.payload, process.pid).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`multiproc: child bootstrap failed: ${(err as Error | null | undefined)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
});
