// Entry of a 'spawn' child (Python: `multiprocessing.spawn.spawn_main`): receive the start
// message, rebuild the Process, run it, exit with its code.
// Node 22+ can cache compiled code across processes; every child then starts faster.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
import * as nodeModule from 'node:module';

import type { StartMessage } from '../backends/popen_spawn.js';
import { bootstrapChild, currentProcess } from '../process.js';
// The whole library is loaded so that every type registered for transport can be rebuilt.
import '../index.js';

process.once('message', (msg: StartMessage) => {
  // A daemon dies with its parent, also when the parent was killed with SIGKILL: the IPC
  // channel closes when the parent's end of it goes away.
  process.once('disconnect', () => {
    if (currentProcess().daemon) process.kill(process.pid, 'SIGTERM');
  });
  bootstrapChild(msg.config, msg.payload, process.pid).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`multiproc: child bootstrap failed: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
});
