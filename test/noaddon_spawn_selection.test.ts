// The queue tests and the queue examples again without the native addon (MULTIPROC_NATIVE=0) on
// the spawn backend, where a queue sent to a child is served by the process that sent it
// (ipc/queue_relay.ts). The tests that also send an Event to a child skip here: that needs memory
// shared between processes. The switch is read when the library loads, so it is set before the
// test files are required.
import { describe } from 'node:test';

process.env.MULTIPROC_NATIVE = '0';
process.env.MULTIPROC_TEST_METHODS = 'spawn';
process.env.MULTIPROC_TEST_EXAMPLES = 'baozi,joinable_queue,producer_consumer,queue_bounded,queue_write_read';

describe('without the native addon (MULTIPROC_NATIVE=0, spawn backend)', () => {
  /* eslint-disable @typescript-eslint/no-require-imports -- required after the switch above is set, which hoisted imports would not be */
  require('./queues.test.js');
  require('./examples.test.js');
  /* eslint-enable @typescript-eslint/no-require-imports */
});
