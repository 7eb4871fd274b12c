// A full /dev/shm: creating a segment that does not fit throws SharedMemoryFullError at once and
// leaves nothing behind, instead of succeeding and killing the process with SIGBUS on first
// write. Runs in a mount namespace with a private 8 MiB /dev/shm where the machine allows one.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { fixture, runNode } from './helpers.js';

// `unshare -rm`: a user and mount namespace of our own, where /dev/shm can be a small tmpfs.
const MOUNT = 'mount -t tmpfs -o size=8m tmpfs /dev/shm';
const probe = spawnSync('unshare', ['-rm', 'sh', '-c', MOUNT], { encoding: 'utf8' });
const skip =
  probe.status === 0
    ? false
    : `this machine does not allow a private /dev/shm (unshare -rm + mount tmpfs: ${(probe.error?.message ?? probe.stderr).trim() || `exit ${probe.status}`})`;

test('a full /dev/shm gives SharedMemoryFullError at creation, never a SIGBUS, and leaves no segment', { skip }, async () => {
  const run = await runNode([fixture('shm_full.mjs')], {
    // unshare mounts the tmpfs in its namespace, then this node runs the fixture there.
    command: ['unshare', '-rm', 'sh', '-c', `${MOUNT} && exec "$0" "$@"`, process.execPath],
  });
  assert.equal(run.signal, null, `the fixture was killed by ${run.signal}:\n${run.stderr}`);
  assert.equal(run.code, 0, run.stderr);
  const r = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
    big: { code: string; name: string; message: string } | 'created';
    leftAfterBig: string[];
    queue: { code: string; name: string; message: string } | 'created';
    queuesMade: number;
  };
  assert.notEqual(r.big, 'created');
  assert.notEqual(r.queue, 'created');
  if (r.big === 'created' || r.queue === 'created') return;
  for (const e of [r.big, r.queue]) {
    assert.equal(e.code, 'ERR_MP_SHM_FULL');
    assert.equal(e.name, 'SharedMemoryFullError');
    assert.match(e.message, /\/dev\/shm/);
    assert.match(e.message, /--shm-size/);
  }
  assert.match(r.big.message, /of 67108864 bytes/);
  assert.deepEqual(r.leftAfterBig, [], 'the segment that did not fit was left in /dev/shm');
  // 8 MiB holds one 4 MiB queue ring (with its header), not two.
  assert.equal(r.queuesMade, 1);
});
