// Without the native addon (MULTIPROC_NATIVE=0), a Queue, JoinableQueue or SimpleQueue sent to a
// spawn child is served by the process that sent it (ipc/queue_relay.ts): producers and
// consumers in several processes, a grandchild, each call with its errors, a consumer killed
// while it waits, and the owner killed under a waiting child. Each scenario runs in a node
// process of its own, since the switch is read when the library loads.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { runScenario, tmpDir, waitGone } from './helpers.js';

// The scenario's relay sockets are made under a directory of its own, to see them go.
async function withoutAddon(args: string[], tmp: string): Promise<Record<string, unknown>> {
  const saved = { native: process.env.MULTIPROC_NATIVE, tmp: process.env.TMPDIR };
  process.env.MULTIPROC_NATIVE = '0';
  process.env.TMPDIR = tmp;
  try {
    return await runScenario('noaddon_queues.mjs', args, 120_000);
  } finally {
    for (const [k, v] of [
      ['MULTIPROC_NATIVE', saved.native],
      ['TMPDIR', saved.tmp],
    ] as const) {
      if (v === undefined) Reflect.deleteProperty(process.env, k);
      else process.env[k] = v;
    }
  }
}

const relayDirs = (tmp: string): string[] => fs.readdirSync(tmp).filter((n) => n.startsWith('multiproc-relay-'));

describe('queues across spawn processes without the native addon', () => {
  test('producers and consumers in four processes get every item exactly once; JoinableQueue, each call, a grandchild, SimpleQueue', async () => {
    const tmp = tmpDir();
    const r = await withoutAddon(['spawn-queues'], tmp);
    assert.equal(r.emulated, true);
    assert.equal(r.exactlyOnce, true, 'the consumers got the multiset of items put, no more, no less');
    assert.equal(
      (r.counts as number[]).reduce((a, b) => a + b),
      600,
    );
    assert.equal(r.leftInQueue, 0);
    assert.equal(r.joined, true, 'join() returned once two children marked the tasks a third put done');
    assert.equal(r.squares, true);
    assert.equal(r.joinedAfterStop, true);
    assert.deepEqual(r.calls, {
      isQueue: true,
      isJoinable: false,
      getTimeout: 'Empty',
      getNoBlock: 'Empty',
      getNowait: 'Empty',
      emptyBefore: true,
      qsize: 2,
      got: [1, 2],
      maxsize: 1,
      full: true,
      putNowaitFull: 'Full',
      putTimeout: 'Full',
      putNoBlock: 'Full',
      fromBounded: 10,
      aborted: 'AbortError',
      afterAbort: 3,
      closed: 'ProcessError',
    });
    assert.deepEqual(r.grandchild, ['child N', 'grandchild got from the parent']);
    assert.equal(r.simple, 'simple hi');
    assert.deepEqual(r.exitcodes, Array(10).fill(0));
    for (const pid of r.pids as number[]) assert.equal(await waitGone(pid, 10_000), true, `process ${pid} ended`);
    assert.deepEqual(relayDirs(tmp), [], 'every relay socket went with its process');
  });

  test('a consumer killed while it waits in get() takes nothing with it', async () => {
    const tmp = tmpDir();
    const r = await withoutAddon(['killed-consumer'], tmp);
    assert.deepEqual(r, { got: 42, exitcode: -9, pid: r.pid, emulated: true });
    assert.deepEqual(relayDirs(tmp), []);
  });

  test('the owner killed: a child waiting in get() gets EOFError, and so does its next call', async () => {
    const tmp = tmpDir();
    const report = path.join(tmp, 'report');
    const r = await withoutAddon(['owner-death', report], tmp);
    const get = r.get as Record<string, unknown>;
    assert.equal(get.typed, true, String(get.name));
    assert.equal(get.code, 'ERR_MP_EOF');
    assert.match(String(get.message), /owns this queue \(pid \d+\) has ended/);
    assert.equal(r.next, 'ERR_MP_EOF');
    assert.equal(r.ownerExit, -9);
    assert.equal(await waitGone(r.waiterPid as number, 10_000), true, 'the waiter ended');
  });
});
