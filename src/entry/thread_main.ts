// Entry of a 'thread' child: the same bootstrap as spawn_main, fed by workerData.
import { threadId, workerData } from 'node:worker_threads';

import type { ChildConfig } from '../popen/popen.js';
import { adoptSegments } from '../shm/native.js';
import type { RegistryHandoff } from '../shm/emulated.js';
import { adoptThreadTable } from '../shm/threads.js';
import { bootstrapChild } from '../process.js';
import { setLibraryTypeLoader } from '../reduction/reduction.js';
import { loadLibraryType } from './library_types.js';

// The library's own types (locks, queues, ...) load when a message first holds one, and only the
// module of that type: the whole library cost a pool worker thread ~35 modules it never used.
setLibraryTypeLoader(loadLibraryType);

const { config, payload, threads, segments } = workerData as {
  config: ChildConfig;
  payload: Uint8Array;
  threads: SharedArrayBuffer;
  segments: RegistryHandoff | undefined;
};
adoptThreadTable(threads);
adoptSegments(segments);
bootstrapChild(config, payload, threadId).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`multiproc: thread bootstrap failed: ${(err as Error | null | undefined)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
