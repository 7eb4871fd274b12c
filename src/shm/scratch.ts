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

/** Free buffers kept at most, and their total size. */
const SPARE_COUNT = 32;
const SPARE_BYTES = 8 << 20;

/**
 * Buffers handed out for messages that live a while (a pool's packed chunks, kept until the
 * worker answers, in case it dies and the chunk goes to another) and given back when they are
 * done with, for the next ones: as Scratch, but for several messages alive at once.
 */
export class Spares {
  readonly #free: Buffer[] = [];
  #bytes = 0;
  readonly #issued = new WeakSet<ArrayBuffer>();

  /** A buffer of at least `n` bytes, from offset 0 of its own ArrayBuffer; its contents are whatever was there. */
  readonly take = (n: number): Buffer => {
    for (let i = this.#free.length - 1; i >= 0; i--) {
      const b = this.#free[i]!;
      if (b.length < n) continue;
      this.#free.splice(i, 1);
      this.#bytes -= b.length;
      return b;
    }
    const b = Buffer.allocUnsafeSlow(Math.max(n, MIN_SIZE));
    this.#issued.add(b.buffer);
    return b;
  };

  /** Give back what take() returned (or a view of it), once nothing uses it; anything else is ignored. */
  give(bytes: Uint8Array): void {
    const ab = bytes.buffer as ArrayBuffer;
    if (!this.#issued.has(ab) || this.#free.length >= SPARE_COUNT || this.#bytes + ab.byteLength > SPARE_BYTES) return;
    for (const b of this.#free) if (b.buffer === ab) return;
    this.#free.push(Buffer.from(ab, 0, ab.byteLength));
    this.#bytes += ab.byteLength;
  }
}
