// A selection of the suite again without the native addon (MULTIPROC_NATIVE=0, as where it failed
// to build), on the thread backend, where shared memory then comes from SharedArrayBuffer alone.
// The switch is read when the library loads, so it is set before the test files are required;
// their tests run here, nested under one suite, and count in the same summary as the rest.
// Spawn without the addon is covered by noaddon.test.ts.
import { describe } from 'node:test';

process.env.MULTIPROC_NATIVE = '0';
process.env.MULTIPROC_TEST_METHODS = 'thread';

describe('without the native addon (MULTIPROC_NATIVE=0, thread backend)', () => {
  /* eslint-disable @typescript-eslint/no-require-imports -- required after the switch above is set, which hoisted imports would not be */
  require('./barrier.test.js');
  require('./connection.test.js');
  require('./queues.test.js');
  require('./sharedctypes.test.js');
  /* eslint-enable @typescript-eslint/no-require-imports */
});
