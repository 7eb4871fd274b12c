// Entry of a 'thread' child: the same bootstrap as spawn_main, fed by workerData.
import { threadId, workerData } from 'node:worker_threads';

import type { ChildConfig } from '../backends/popen.js';
import { adoptThreadTable } from '../backends/threads.js';
import { bootstrapChild } from '../process.js';

const { config, payload, threads } = workerData as { config: ChildConfig; payload: Uint8Array; threads: SharedArrayBuffer };
adoptThreadTable(threads);
bootstrapChild(config, payload, threadId).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`multiproc: thread bootstrap failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
