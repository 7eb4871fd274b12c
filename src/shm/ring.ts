// A byte ring in shared memory carrying length-prefixed messages from writers to readers: the
// transport under Pipe, Queue and the Pool's channels. Positions only move when a whole message
// (or, for a message larger than the ring, a whole chunk) has been copied, so a process killed in
// the middle of a copy leaves the ring as it was. Each end records the processes holding it, so
// that a reader sees EOF once every writer has closed or died, and a writer sees a broken pipe
// once every reader has.
import { EOFError, ProcessError } from '../errors.js';
import { futexWait, futexWaitAsync, futexWake } from './native.js';
import { IdleWait } from './idle_wait.js';
import { noteReservation } from './segment.js';
import { holderAlive, meTid } from './threads.js';
import { deadlineOf, remaining, type Deadline } from '../util.js';

const HEAD = 0; // bytes committed by writers (wrapping u32)
const TAIL = 1; // bytes released by readers (wrapping u32)
const RWAIT = 2; // readers parked on HEAD
const WWAIT = 3; // writers parked on TAIL
const CAPACITY = 4;
// Where a message larger than the ring ends, on each side, while one is read (written) in
// chunks: the position (a multiple of 4) with its low bit set, 0 when none is. Non-zero when a
// new reader (writer) starts means the previous one died in the middle of it: the new one skips
// (pads) up to there, so one message is lost and the ring stays in step. An end position, not a
// count of bytes left, so that a death between moving TAIL (HEAD) and noting it loses nothing.
const PARTIAL_R = 5;
const PARTIAL_W = 6;
const endMark = (end: number): number => end | 1;
const bytesTo = (mark: number, pos: number): number => ((mark & ~1) - pos) >>> 0;
const SLOTS = 8; // holder slots per end: (pid, thread) pairs, pid 0 when free
const WRITERS = 8; // [WRITERS, WRITERS + 2 * SLOTS): who holds the write end
const OVERFLOW = 2 * SLOTS; // after each slot table: copies in flight and slot-less holders
const READERS = WRITERS + OVERFLOW + 1;
/** Int32 cells of a ring's header, before its data. */
export const RING_HEADER_CELLS = READERS + OVERFLOW + 1;

// A waiting peer re-checks that the other end still has a live holder this often.
const LIVENESS_MS = 500;
// A reader or writer polls the ring this long (µs) before parking on the futex: a peer on the
// other core often answers within microseconds, and parking costs a thread hop each way
// (~10 µs to wake). MULTIPROC_SPIN_US tunes it (0: park at once, kinder to a busy machine).
const SPIN_US = Number(process.env.MULTIPROC_SPIN_US ?? 20);

/**
 * A new array of `n` bytes, every one of which the caller overwrites: not zero-filled first (for
 * a 64 KiB message, the zeroing cost a third of its read).
 */
function fresh(n: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n);
}

/** Poll `ready` for up to SPIN_US microseconds; true as soon as it holds. */
export function spin(ready: () => boolean): boolean {
  if (ready()) return true;
  if (SPIN_US <= 0) return false;
  const end = performance.now() + SPIN_US / 1000;
  for (let n = 1; ; n++) {
    if (ready()) return true;
    // Read the clock only every 64 polls: it costs more than a poll.
    if ((n & 63) === 0 && performance.now() > end) return false;
  }
}

export type End = 'read' | 'write';

/** One direction of messages over `cells` (at `base`) and `data` (capacity bytes, a power of 2). */
export class Ring {
  readonly #c: Int32Array;
  readonly #b: number;
  readonly #data: Uint8Array;
  readonly #mask: number;
  readonly #cap: number;
  readonly #tracked: boolean;
  // The reader's blocking first part of a wait for data (see idle_wait.ts).
  readonly #idle = new IdleWait();
  /** Whether a reader's wait may block the thread first (see idle_wait.ts); off for a reader that watches many rings. */
  idleWaits = true;
  // The longest message the reader takes, checked against its length before anything is copied.
  #limit = Infinity;

  /**
   * `tracked`: readers see EOF and writers a broken pipe when the other end has no live holder
   * (pipes). An untracked ring (queues, whose every holder may read and write) never ends.
   */
  constructor(cells: Int32Array, base: number, data: Uint8Array, init: boolean, tracked = true) {
    this.#tracked = tracked;
    this.#c = cells;
    this.#b = base;
    this.#data = data;
    this.#cap = data.length;
    if ((this.#cap & (this.#cap - 1)) !== 0 || this.#cap < 64) throw new RangeError('ring capacity must be a power of 2 >= 64');
    this.#mask = this.#cap - 1;
    if (init) Atomics.store(cells, base + CAPACITY, this.#cap);
  }

  get capacity(): number {
    return this.#cap;
  }

  /** Whether the header records this ring's capacity (a ring opened from a peer's name is checked with it). */
  wellFormed(): boolean {
    return this.#load(CAPACITY) === this.#cap;
  }

  /**
   * Refuse messages longer than `bytes` (for a reader whose peer is not this program): read()
   * and tryRead() throw ProcessError ERR_MP_BAD_MESSAGE, before buffering any of it.
   */
  limitMessages(bytes: number): void {
    this.#limit = bytes;
  }

  #checkLength(len: number): void {
    if (len > this.#limit)
      throw new ProcessError(`message from the peer is too long: ${len} bytes (at most ${this.#limit})`, {
        code: 'ERR_MP_BAD_MESSAGE',
      });
  }

  #load(i: number): number {
    return Atomics.load(this.#c, this.#b + i);
  }

  /** Bytes waiting to be read. */
  used(): number {
    return (this.#load(HEAD) - this.#load(TAIL)) >>> 0;
  }

  // ---- holders ----------------------------------------------------------------------------

  /**
   * Record this process as a holder of `end`; returns the token to give back on close. With
   * `reserved`, it takes over the hold a sender reserved for it (see reserve()).
   */
  attach(end: End, reserved = false): number {
    const base = this.#b + (end === 'write' ? WRITERS : READERS);
    let token = SLOTS;
    for (let s = 0; s < SLOTS; s++) {
      if (Atomics.compareExchange(this.#c, base + 2 * s, 0, process.pid) === 0) {
        Atomics.store(this.#c, base + 2 * s + 1, meTid());
        token = s;
        break;
      }
    }
    if (token === SLOTS) Atomics.add(this.#c, base + OVERFLOW, 1);
    if (reserved) Atomics.sub(this.#c, base + OVERFLOW, 1);
    return token;
  }

  /**
   * Hold `end` on behalf of a copy being sent to another process, until it attaches with
   * `reserved` — as a descriptor is duplicated when Python sends a connection, so that the
   * sender closing its copy right away does not end the stream.
   */
  reserve(end: End): void {
    const cell = this.#b + (end === 'write' ? WRITERS : READERS) + OVERFLOW;
    const c = this.#c;
    Atomics.add(c, cell, 1);
    noteReservation(() => {
      // A closed end has no mapping left; the segment's own count is given back apart.
      if (c.length === 0) return;
      Atomics.sub(c, cell, 1);
      // The other end may be waiting to learn that nobody holds this one any more.
      futexWake(c, this.#b + (end === 'write' ? HEAD : TAIL));
    });
  }

  /** Give back a holder token from attach(). */
  detach(end: End, token: number): void {
    const base = this.#b + (end === 'write' ? WRITERS : READERS);
    if (token < SLOTS) Atomics.compareExchange(this.#c, base + 2 * token, process.pid, 0);
    else Atomics.sub(this.#c, base + OVERFLOW, 1);
    // Whoever waits on the other end must learn that this end may now be gone.
    futexWake(this.#c, this.#b + (end === 'write' ? HEAD : TAIL));
  }

  /** Whether anyone is recorded as holding `end` (no liveness check: cheap enough for every send). */
  hasHolders(end: End): boolean {
    if (!this.#tracked) return true;
    const base = this.#b + (end === 'write' ? WRITERS : READERS);
    if (Atomics.load(this.#c, base + OVERFLOW) !== 0) return true;
    for (let s = 0; s < SLOTS; s++) if (Atomics.load(this.#c, base + 2 * s) !== 0) return true;
    return false;
  }

  /** Whether a live process or thread still holds `end` (dead holders are cleared on the way). */
  isOpen(end: End): boolean {
    if (!this.#tracked) return true;
    const base = this.#b + (end === 'write' ? WRITERS : READERS);
    if (Atomics.load(this.#c, base + OVERFLOW) > 0) return true;
    let open = false;
    for (let s = 0; s < SLOTS; s++) {
      const pid = Atomics.load(this.#c, base + 2 * s);
      if (pid === 0) continue;
      if (holderAlive(pid, Atomics.load(this.#c, base + 2 * s + 1))) open = true;
      else Atomics.compareExchange(this.#c, base + 2 * s, pid, 0);
    }
    return open;
  }

  // ---- writing ----------------------------------------------------------------------------

  /**
   * Write one message if it fits now; true when written. A message larger than the ring never
   * fits: use write(). With a `tag` (0-255), the message is that byte followed by `msg`.
   */
  tryWrite(msg: Uint8Array, tag = -1): boolean {
    const t = tag < 0 ? 0 : 1;
    const len = t + msg.length;
    const need = 4 + len + ((4 - (len & 3)) & 3);
    if (need > this.#cap) return false;
    const head = this.#load(HEAD);
    if (this.#cap - ((head - this.#load(TAIL)) >>> 0) < need) return false;
    this.#putU32(head, len);
    if (t) this.#data[(head + 4) & this.#mask] = tag;
    this.#copyIn(head + 4 + t, msg, 0, msg.length);
    this.#commit(HEAD, head + need, RWAIT);
    return true;
  }

  /**
   * Write one message, waiting for room; a message larger than the ring streams through it in
   * chunks. The caller serializes writers (one writer per ring at a time).
   * @throws ProcessError ERR_MP_BROKEN_PIPE when every reader has closed or died.
   */
  async write(msg: Uint8Array): Promise<void> {
    if (Atomics.load(this.#c, this.#b + PARTIAL_W) !== 0) await this.#padDeadWriter();
    if (this.tryWrite(msg)) return;
    const need = 4 + msg.length + ((4 - (msg.length & 3)) & 3);
    if (need <= this.#cap) {
      while (!this.tryWrite(msg)) await this.#waitRoom(need);
      return;
    }
    // Streamed: the length, then chunks as room frees up, each committed on its own; the
    // padding that keeps messages 4-byte aligned goes with the last chunk.
    await this.#waitRoom(4);
    let head = this.#load(HEAD);
    const total = msg.length + ((4 - (msg.length & 3)) & 3);
    this.#putU32(head, msg.length);
    Atomics.store(this.#c, this.#b + PARTIAL_W, endMark(head + 4 + total));
    this.#commit(HEAD, (head += 4), RWAIT);
    await this.#stream(head, total, (at, off, n) => this.#copyIn(at, msg, off, Math.max(0, Math.min(n, msg.length - off))));
  }

  // Write `total` bytes produced by `fill` as room frees up; PARTIAL_W is cleared at the end.
  async #stream(head: number, total: number, fill: (at: number, off: number, n: number) => void): Promise<void> {
    for (let off = 0; off < total;) {
      let room = this.#cap - ((head - this.#load(TAIL)) >>> 0);
      if (room === 0) {
        await this.#waitRoom(1);
        room = this.#cap - ((head - this.#load(TAIL)) >>> 0);
      }
      const n = Math.min(room, total - off);
      fill(head, off, n);
      off += n;
      this.#commit(HEAD, (head += n), RWAIT);
    }
    Atomics.store(this.#c, this.#b + PARTIAL_W, 0);
  }

  // The previous writer died part-way through a streamed message: finish it with 0xff bytes,
  // which the reader cannot deserialize, so that one message fails and the next ones are whole.
  async #padDeadWriter(): Promise<void> {
    const head = this.#load(HEAD);
    const rest = bytesTo(Atomics.load(this.#c, this.#b + PARTIAL_W), head);
    const ones = new Uint8Array(Math.min(rest, this.#cap)).fill(0xff);
    await this.#stream(head, rest, (at, _off, n) => this.#copyIn(at, ones, 0, n));
  }

  async #waitRoom(need: number): Promise<void> {
    if (spin(() => this.#cap - this.used() >= need)) return;
    for (;;) {
      if (!this.isOpen('read'))
        throw new ProcessError('the other end of the pipe is closed: nobody will read this message', { code: 'ERR_MP_BROKEN_PIPE' });
      const tail = this.#load(TAIL);
      if (this.#cap - ((this.#load(HEAD) - tail) >>> 0) >= need) return;
      Atomics.add(this.#c, this.#b + WWAIT, 1);
      try {
        await futexWaitAsync(this.#c, this.#b + TAIL, tail, LIVENESS_MS);
      } finally {
        Atomics.sub(this.#c, this.#b + WWAIT, 1);
      }
    }
  }

  // ---- reading ----------------------------------------------------------------------------

  /** Where reading stands (wrapping u32): it moves as soon as a message starts being taken. */
  tail(): number {
    return this.#load(TAIL);
  }

  /** Whether a reader that died part-way through a streamed message left bytes to skip. */
  hasPartialRead(): boolean {
    return Atomics.load(this.#c, this.#b + PARTIAL_R) !== 0;
  }

  /** Skip what is left of a streamed message whose reader died (see read()). */
  async skipPartialRead(): Promise<void> {
    if (this.hasPartialRead()) await this.#skipDeadReader();
  }

  /** Whether a whole message header is there to read. */
  hasMessage(): boolean {
    return this.used() >= 4;
  }

  /**
   * For a reader that watches several rings with one blocking wait (futexWaitIdleAny): counts it
   * as waiting (so that a writer wakes it) and gives the cell to wait on with its value now; or,
   * not counted, undefined when something is there to read already. unwatch() after the wait.
   */
  watch(): [cells: Int32Array, index: number, value: number] | undefined {
    Atomics.add(this.#c, this.#b + RWAIT, 1);
    const head = this.#load(HEAD);
    if ((head - this.#load(TAIL)) >>> 0 >= 4 || this.hasPartialRead()) {
      Atomics.sub(this.#c, this.#b + RWAIT, 1);
      return undefined;
    }
    return [this.#c, this.#b + HEAD, head];
  }

  /** The wait that watch() began is over. */
  unwatch(): void {
    Atomics.sub(this.#c, this.#b + RWAIT, 1);
  }

  /**
   * Read one message if one is complete now (and fits the ring); null otherwise. Streamed
   * messages are read with read(). `into` gives the buffer to copy it to (see Scratch); by
   * default a new one. The first `skip` bytes are left out (read past, not copied).
   */
  tryRead(into?: (n: number) => Uint8Array, skip = 0): Uint8Array | null {
    // A reader died part-way through a streamed message: TAIL is inside that message, not at a
    // header. Only read() may go on from there (it skips the rest first).
    if (this.hasPartialRead()) return null;
    const tail = this.#load(TAIL);
    const used = (this.#load(HEAD) - tail) >>> 0;
    if (used < 4) return null;
    const len = this.#getU32(tail);
    this.#checkLength(len);
    const total = 4 + len + ((4 - (len & 3)) & 3);
    if (total > this.#cap || used < total || len < skip) return null;
    const n = len - skip;
    const out = into ? into(n).subarray(0, n) : fresh(n);
    this.#copyOut(tail + 4 + skip, out, 0, n);
    this.#commit(TAIL, tail + total, WWAIT);
    return out;
  }

  /** The first byte of the next message when tryRead() would read it now (and it has one); else -1. */
  peek(): number {
    if (this.hasPartialRead()) return -1;
    const tail = this.#load(TAIL);
    const used = (this.#load(HEAD) - tail) >>> 0;
    if (used < 4) return -1;
    const len = this.#getU32(tail);
    const total = 4 + len + ((4 - (len & 3)) & 3);
    if (total > this.#cap || used < total || len === 0) return -1;
    return this.#data[(tail + 4) & this.#mask]!;
  }

  /**
   * Read one message, waiting until one is there (or `deadline`: then null).
   * @throws EOFError when the ring is empty and every writer has closed or died.
   */
  async read(deadline: Deadline = Infinity, signal?: AbortSignal, spun = false): Promise<Uint8Array | null> {
    if (this.hasPartialRead()) await this.#skipDeadReader();
    for (;;) {
      const m = this.tryRead();
      if (m) return m;
      // What must be there before tryRead can succeed: a header, then the whole message. (A
      // message that is not whole yet can only come from a peer that died writing it; waiting
      // for its bytes, not spinning on the header, keeps this loop from running hot.)
      let need = 4;
      if (this.used() >= 4) {
        const len = this.#getU32(this.#load(TAIL));
        this.#checkLength(len);
        need = 4 + len + ((4 - (len & 3)) & 3);
        if (need > this.#cap) return this.#readStreamed(len);
      }
      if (!(await this.#waitData(deadline, signal, need, spun))) return null;
      spun = false;
    }
  }

  /**
   * tryRead(), and if nothing is there, the same after polling for a message as a wait would
   * first (read() may then be told it `spun`). For a caller that can answer at once when the
   * peer replies within microseconds.
   */
  tryReadSpinning(): Uint8Array | null {
    const m = this.tryRead();
    if (m || this.used() >= 4 || !spin(() => this.used() >= 4)) return m;
    return this.tryRead();
  }

  /**
   * Wait for a whole message blocking this thread (no event-loop hop on wake-up) for up to
   * `timeoutMs`; null when none came or the next one is too large for the ring (read() it).
   * For a loop that has nothing else to do, such as a pool worker between tasks.
   */
  readBlocking(timeoutMs: number, into?: (n: number) => Uint8Array): Uint8Array | null {
    const end = performance.now() + timeoutMs;
    // As in #waitData: the writer's liveness (a /proc read) is asked after a wait that brought
    // nothing, not before each wait.
    let woken = true;
    for (;;) {
      const m = this.tryRead(into);
      if (m || this.used() >= 4 || this.hasPartialRead()) return m;
      if (spin(() => this.used() >= 4)) continue;
      const left = end - performance.now();
      if (left <= 0 || !(woken ? this.hasHolders('write') : this.isOpen('write'))) return null;
      woken = false;
      const head = this.#load(HEAD);
      if ((head - this.#load(TAIL)) >>> 0 >= 4) continue;
      Atomics.add(this.#c, this.#b + RWAIT, 1);
      try {
        woken = futexWait(this.#c, this.#b + HEAD, head, left) !== 'timed-out';
      } finally {
        Atomics.sub(this.#c, this.#b + RWAIT, 1);
      }
    }
  }

  async #readStreamed(len: number): Promise<Uint8Array> {
    const out = fresh(len);
    const total = len + ((4 - (len & 3)) & 3);
    let tail = this.#load(TAIL);
    Atomics.store(this.#c, this.#b + PARTIAL_R, endMark(tail + 4 + total));
    this.#commit(TAIL, (tail += 4), WWAIT);
    await this.#drain(tail, total, (at, off, n) => this.#copyOut(at, out, off, Math.max(0, Math.min(n, len - off))));
    return out;
  }

  // Consume `total` bytes as they arrive; PARTIAL_R is cleared at the end.
  async #drain(tail: number, total: number, take: (at: number, off: number, n: number) => void): Promise<void> {
    for (let off = 0; off < total;) {
      const avail = (this.#load(HEAD) - tail) >>> 0;
      if (avail === 0) {
        await this.#waitBytes(tail);
        continue;
      }
      const n = Math.min(avail, total - off);
      take(tail, off, n);
      off += n;
      this.#commit(TAIL, (tail += n), WWAIT);
    }
    Atomics.store(this.#c, this.#b + PARTIAL_R, 0);
  }

  // The previous reader died part-way through a streamed message: drop the rest of it.
  async #skipDeadReader(): Promise<void> {
    const tail = this.#load(TAIL);
    await this.#drain(tail, bytesTo(Atomics.load(this.#c, this.#b + PARTIAL_R), tail), () => {});
  }

  // Wait for HEAD to move past `tail` (mid-message: the writer is alive or EOF is an error).
  async #waitBytes(tail: number): Promise<void> {
    if (spin(() => this.#load(HEAD) !== tail)) return;
    const head = this.#load(HEAD);
    if (head !== tail) return;
    if (!this.isOpen('write')) throw new EOFError('the writer closed or died in the middle of a message');
    Atomics.add(this.#c, this.#b + RWAIT, 1);
    try {
      await futexWaitAsync(this.#c, this.#b + HEAD, head, LIVENESS_MS);
    } finally {
      Atomics.sub(this.#c, this.#b + RWAIT, 1);
    }
  }

  /** Resolve true when data may be there, false at the deadline. @throws EOFError at the end. */
  async #waitData(deadline: Deadline, signal?: AbortSignal, need = 4, spun = false): Promise<boolean> {
    if (!spun && spin(() => this.used() >= need)) return true;
    // Whether a writer that holds the end is alive is a /proc read per holder (~10 µs, as much
    // as the rest of a round trip): it is asked before an asynchronous wait, not before the
    // short blocking one, where most answers arrive. A writer that closed is seen at once.
    let idleFirst = true;
    for (;;) {
      const head = this.#load(HEAD);
      if ((head - this.#load(TAIL)) >>> 0 >= need) return true;
      const left = remaining(deadline);
      const idle = this.idleWaits && idleFirst && left !== 0 && !signal?.aborted && this.hasHolders('write');
      idleFirst = false;
      if (!idle && !this.isOpen('write')) {
        // A last message may have landed between the two loads.
        if (this.used() >= need) return true;
        throw new EOFError(this.used() > 0 ? 'the writer closed or died in the middle of a message' : undefined);
      }
      if (left === 0) return false;
      Atomics.add(this.#c, this.#b + RWAIT, 1);
      try {
        if (idle) {
          if (this.#idle.wait(this.#c, this.#b + HEAD, head, left)) idleFirst = true;
          continue;
        }
        await futexWaitAsync(this.#c, this.#b + HEAD, head, left === undefined ? LIVENESS_MS : Math.min(left, LIVENESS_MS), signal);
      } finally {
        Atomics.sub(this.#c, this.#b + RWAIT, 1);
      }
    }
  }

  /** Resolve true once a message is readable, false after `timeoutMs`. @throws EOFError at the end. */
  async poll(timeoutMs: number | undefined, signal?: AbortSignal): Promise<boolean> {
    if (this.used() >= 4) return true;
    try {
      return await this.#waitData(deadlineOf(timeoutMs), signal);
    } catch (err) {
      // poll() answers "would recv() return at once": at EOF it would (with the error).
      if (err instanceof EOFError) return true;
      throw err;
    }
  }

  // ---- bytes ------------------------------------------------------------------------------

  #commit(cell: number, value: number, waiters: number): void {
    Atomics.store(this.#c, this.#b + cell, value | 0);
    if (Atomics.load(this.#c, this.#b + waiters) > 0) futexWake(this.#c, this.#b + cell);
  }

  #putU32(pos: number, v: number): void {
    const d = this.#data;
    for (let k = 0; k < 4; k++) d[(pos + k) & this.#mask] = (v >>> (8 * k)) & 0xff;
  }

  #getU32(pos: number): number {
    const d = this.#data;
    let v = 0;
    for (let k = 0; k < 4; k++) v |= d[(pos + k) & this.#mask]! << (8 * k);
    return v >>> 0;
  }

  #copyIn(pos: number, src: Uint8Array, off: number, n: number): void {
    const at = pos & this.#mask;
    const first = Math.min(n, this.#cap - at);
    this.#data.set(src.subarray(off, off + first), at);
    if (first < n) this.#data.set(src.subarray(off + first, off + n), 0);
  }

  #copyOut(pos: number, dst: Uint8Array, off: number, n: number): void {
    const at = pos & this.#mask;
    const first = Math.min(n, this.#cap - at);
    dst.set(this.#data.subarray(at, at + first), off);
    if (first < n) dst.set(this.#data.subarray(0, n - first), off + first);
  }
}
