// The byte ring under Pipe and Queue, at its own level: a reader that dies part-way through a
// message larger than the ring leaves the ring in the middle of that message.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

import { KIND, Segment } from '../src/shm/segment.js';
import { fixture } from './helpers.js';
import { RING_BYTES, ringOf, SEGMENT_BYTES } from './ring_layout.js';

test('a reader that died inside a large message: no fast read parses its middle, read() skips the rest and gets the next message whole', async () => {
  const seg = Segment.create(SEGMENT_BYTES, KIND.Pipe);
  const ring = ringOf(seg, true);
  const gate = new SharedArrayBuffer(4);
  const start = (role: string): Worker =>
    new Worker(fixture('ring_ends.mjs'), { workerData: { role, name: seg.retainForSend(), size: 64 * RING_BYTES, gate } });
  const reader = start('reader');
  await once(reader, 'message');
  // The writer puts the first part in and stops; the reader takes it and waits for the rest.
  const writer = start('writer');
  while (!ring.hasPartialRead()) await new Promise((r) => setTimeout(r, 1));
  await reader.terminate();
  // The bytes the ring now starts with are the middle of the message (zeros: a length of 0).
  assert.equal(ring.tryRead(), null);
  assert.equal(ring.readBlocking(5), null);
  Atomics.store(new Int32Array(gate), 0, 1);
  Atomics.notify(new Int32Array(gate), 0);
  const next = await ring.read();
  assert.deepEqual([...next!], [1, 2, 3]);
  await once(writer, 'message');
  await writer.terminate();
  seg.close();
});
