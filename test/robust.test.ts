// Kill loops: a child process or thread looping on a lock or a queue, killed at random moments
// again and again; after each kill the parent must still be able to use what the child used. Each
// loop runs in a process of its own (test/fixtures/robust_targets.mts): what a SIGKILLed child
// held is only given back when that whole process tree is gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { METHODS, runScenario } from './helpers.js';

const KILLS = 40;

for (const method of METHODS) {
  test(`[${method}] a Lock whose holder is killed at any moment of acquire()/release() is always recovered`, async () => {
    const r = await runScenario('robust_targets.mjs', ['lock', method, String(KILLS)], 120_000);
    assert.equal(r.kills, KILLS);
    assert.equal(r.stuck, 0, `${r.stuck} of ${KILLS} kills left the lock held for good`);
  });

  test(`[${method}] a bounded Queue whose consumer is killed at any moment keeps an exact qsize() and all its places`, async () => {
    const r = await runScenario('robust_targets.mjs', ['queue', method, String(KILLS)], 120_000);
    assert.deepEqual(r.seen, []);
    assert.deepEqual([r.kills, r.qsize, r.capacity, r.stuck], [KILLS, 0, 0, 0]);
  });

  test(`[${method}] JoinableQueue.join() returns after its consumers are killed at any moment`, async () => {
    const r = await runScenario('robust_targets.mjs', ['joinable-queue', method, String(KILLS)], 120_000);
    assert.deepEqual(r.seen, []);
    assert.deepEqual([r.kills, r.qsize, r.capacity, r.stuck, r.join], [KILLS, 0, 0, 0, 0]);
  });
}
