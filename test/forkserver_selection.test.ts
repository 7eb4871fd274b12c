// The backend-neutral tests of Process and of the locks, semaphores, conditions and events again
// on the forkserver start method (all of the backend-neutral suite passes there with
// MULTIPROC_TEST_METHODS=forkserver; this selection keeps it so in every run). The method list is
// read when the test helpers load, so it is set before the test files are required.
import { describe } from 'node:test';

process.env.MULTIPROC_TEST_METHODS = 'forkserver';

describe('on the forkserver start method', () => {
  /* eslint-disable @typescript-eslint/no-require-imports -- required after the method list above is set, which hoisted imports would not be */
  require('./process.test.js');
  require('./synchronize.test.js');
  /* eslint-enable @typescript-eslint/no-require-imports */
});
