// The layout test/ring.test.ts and its worker fixture share: one untracked ring of 4 KiB in a segment.
import { Ring, RING_HEADER_CELLS } from '../src/shm/ring.js';
import { BASE, type Segment } from '../src/shm/segment.js';

export const RING_BYTES = 4096;
/** Bytes of segment the ring needs after the segment's own header. */
export const SEGMENT_BYTES = RING_HEADER_CELLS * 4 + 8 + RING_BYTES;

export function ringOf(seg: Segment, init: boolean): Ring {
  const dataAt = Math.ceil((seg.byteOffset + (BASE + RING_HEADER_CELLS) * 4) / 8) * 8;
  return new Ring(seg.i32, BASE, new Uint8Array(seg.buffer, dataAt, RING_BYTES), init, false);
}
