// diagnostics_channel events: what a tracing tool subscribed to multiproc sees, on both backends.
import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { diagnosticsChannels, Pool, WorkerDiedError } from '../src/index.js';
import { describeBackends, fixture } from './helpers.js';

type Targets = typeof import('./fixtures/pool_targets.mjs');
let t: Targets;
before(async () => {
  t = (await import(pathToFileURL(fixture('pool_targets.mjs')).href)) as Targets;
});

/** Collect the messages of every multiproc channel while `body` runs. */
async function recording(body: () => Promise<void>): Promise<[string, Record<string, unknown>][]> {
  const seen: [string, Record<string, unknown>][] = [];
  const subs = Object.values(diagnosticsChannels).map((name) => {
    const fn = (m: unknown): void => void seen.push([name, m as Record<string, unknown>]);
    diagnosticsChannel.subscribe(name, fn);
    return () => diagnosticsChannel.unsubscribe(name, fn);
  });
  try {
    await body();
  } finally {
    for (const off of subs) off();
  }
  return seen;
}

describeBackends('diagnostics channels', (ctx, method) => {
  test('a pool publishes worker start and exit, each task start and end with its timing, and a worker death', async () => {
    let poolObject: Pool | undefined;
    const events = await recording(async () => {
      const pool = new Pool({ processes: 2, context: ctx });
      poolObject = pool;
      assert.deepEqual(await pool.map(t.sqr, [1, 2, 3, 4], 2), [1, 4, 9, 16]);
      await assert.rejects(pool.apply(t.raiseAt, [3, 3]), /bad item 3/);
      await assert.rejects(pool.apply(t.exitNow, [5]), WorkerDiedError);
      pool.terminate();
      await pool.join();
    });
    const of = (name: string): Record<string, unknown>[] => events.filter(([n]) => n === name).map(([, m]) => m);
    const starts = of('multiproc:pool:worker:start');
    assert.ok(starts.length >= 3, 'two workers, and the one that replaced the dead one');
    assert.ok(starts.every((m) => m.pool === poolObject && /PoolWorker-\d+$/.test(String(m.worker)) && typeof m.pid === 'number'));
    const taskEnds = of('multiproc:pool:task:end');
    const mapChunks = taskEnds.filter((m) => m.items === 2);
    assert.deepEqual(mapChunks.map((m) => m.index).sort(), [0, 2]);
    for (const m of taskEnds) {
      assert.ok(typeof m.queuedMs === 'number' && m.queuedMs >= 0 && typeof m.runMs === 'number' && m.runMs >= 0);
      assert.equal(of('multiproc:pool:task:start').filter((s) => s.task === m.task).length, 1, 'each ended task was started once');
    }
    const failed = taskEnds.find((m) => m.ok === false);
    assert.ok(failed && (failed.error as Error).message === 'bad item 3');
    const deaths = of('multiproc:pool:worker:exit').filter((m) => m.failedTask instanceof WorkerDiedError);
    assert.equal(deaths.length, 1);
    assert.equal(deaths[0]!.exitcode, 5);
    // Every worker that started also ended (terminate, join).
    assert.equal(of('multiproc:pool:worker:exit').length, starts.length);
    // The workers are Processes: their start and exit are published too.
    const procStarts = of('multiproc:process:start');
    assert.equal(procStarts.length, starts.length);
    assert.ok(procStarts.every((m) => m.method === method));
  });
});
