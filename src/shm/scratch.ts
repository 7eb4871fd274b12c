// A buffer that a loop reuses from one message to the next: it reads a message into it, or
// writes one there, and is done with it before the next. A fresh buffer for each large message
// costs more than the copy into it: its memory is new to the process, and the kernel maps each
// 4 KiB page on first write (a page fault, ~1 µs on bare metal, ~10 µs in a virtual machine),
// where a buffer used again is already mapped. A pool's map of small numbers moves 8 bytes per
// item each way, so these faults were most of its cost.

/** Buffers above this size are not kept: a rare large message does not pin its memory. */
const MAX_KEPT = 8 << 20;
const MIN_SIZE = 4096;
const EMPTY = Buffer.alloc(0);

export class Scratch {
  #buf: Buffer = EMPTY;

  /**
   * A buffer of at least `n` bytes, from offset 0 of its own ArrayBuffer (8-byte aligned); its
   * contents are whatever was there. It is this scratch's until the next call: the caller must be
   * done with what the previous call returned. Above MAX_KEPT bytes a fresh one is returned.
   */
  readonly take = (n: number): Buffer => {
    if (n <= this.#buf.length) return this.#buf;
    if (n > MAX_KEPT) return Buffer.allocUnsafeSlow(n);
    this.#buf = Buffer.allocUnsafeSlow(Math.min(MAX_KEPT, Math.max(n, MIN_SIZE, this.#buf.length * 2)));
    return this.#buf;
  };
}
