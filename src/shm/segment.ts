// Named shared-memory segments with a holder count, the storage every cross-process object
// (locks, shared values, queues) lives in.
//
// Lifetime: the header records the holders — the pid of each live wrapper, in any process, in a
// slot of its own, plus the serialized copies not yet opened: each has a ticket in the header
// (or, when all tickets are taken, a count, which also counts wrappers that found no free slot).
// Sending a segment takes a ticket, which the receiver adopts, or the sender gives back if the
// copy will never be delivered (whichever comes first; the other finds it gone); a wrapper that is
// closed, garbage-collected, or still alive when its process exits gives its hold back, clears
// the slots of holders that died (a SIGKILLed process gives nothing back), and whoever finds no
// holder left unlinks the name. The resource tracker unlinks what is left when the whole process
// tree is gone (holders that were threads, stopped without their exit hooks, for instance).
import { randomBytes } from 'node:crypto';

import { InvalidArgumentError, ProcessError } from '../errors.js';
import { holderAlive, meTid } from './threads.js';
import * as tracker from './resource_tracker.js';
import { closeSegment, crossProcessError, emulated, openSegment, unlinkSegment, type SegmentBuffer } from './native.js';

/** Bytes reserved at the start of every segment: magic, holder count, kind, holder slots, tickets. */
export const HEADER_BYTES = 256;
/** First Int32 cell after the header. */
export const BASE = HEADER_BYTES / 4;

/** What lives in a segment; checked when a receiver opens it by name. */
export const KIND = {
  Lock: 1,
  RLock: 2,
  Semaphore: 3,
  Condition: 4,
  Event: 5,
  Barrier: 6,
  Value: 7,
  Array: 8,
  Heap: 9,
  Queue: 10,
  Pipe: 11,
} as const;

// A shared object is rebuilt in a receiver through its public constructor; this carries the
// opened segment there, so one constructor serves creating and opening.
let adopting: Segment | undefined;

/** Run `make` (which calls a shared object's constructor) with `seg` as the segment it adopts. */
export function rebuildWith<T>(seg: Segment, make: () => T): T {
  adopting = seg;
  try {
    return make();
  } finally {
    adopting = undefined;
  }
}

/** In a shared object's constructor: the adopted segment, or a new one of `bytes` after the header. */
export function segmentFor(bytes: number, kind: number): [Segment, boolean] {
  const seg = adopting;
  adopting = undefined;
  return seg ? [seg, false] : [Segment.create(bytes, kind), true];
}
const MAGIC = 0x6d70726f; // 'mpro'
const CELL_MAGIC = 0;
const CELL_HOLDERS = 1; // copies in flight + holders without a slot
const CELL_KIND = 2;
const CELL_TICKET = 3; // the last ticket given out
const FIRST_SLOT = 4; // then SLOTS (pid, thread) pairs
const SLOTS = 14;
const FIRST_TICKET = FIRST_SLOT + 2 * SLOTS; // then TICKETS cells: copies in flight, 0 when free
const TICKETS = HEADER_BYTES / 4 - FIRST_TICKET;

let counter = 0;
// MULTIPROC_SHM_TAG (letters and digits, inherited by every child through the environment) ends
// the names of the segments a whole process tree creates, so that a test run or a container can
// tell its own segments from those of other programs sharing /dev/shm.
const TAG = /^[A-Za-z0-9]{1,16}$/.test(process.env.MULTIPROC_SHM_TAG ?? '') ? `-${process.env.MULTIPROC_SHM_TAG}` : '';

/** A fresh segment name of this process: `/mp-<pid>-<infix><n>-<random>[-<tag>]`. */
export function segmentName(infix = ''): string {
  return `/mp-${process.pid.toString(36)}-${infix}${(++counter).toString(36)}-${randomBytes(4).toString('hex')}${TAG}`;
}
/** Every wrapper of this process not yet closed or collected, for the exit hook. */
const live = new Set<WeakRef<Segment>>();
let exitHookInstalled = false;

interface Held {
  name: string;
  header: Int32Array;
  ref: WeakRef<Segment> | undefined;
  /** The header cell holding this wrapper's pid, or -1 when it is counted in CELL_HOLDERS. */
  slot: number;
  /** What the last holder does: unlink the name (a segment), or free the block (in an arena). */
  lastOut: () => void;
  /** A block lives in its arena's mapping: told when this wrapper lets go, it does not unmap. */
  block: (() => void) | undefined;
}

/** Take a holder slot for this process; -1 (and a count) when all are taken. */
function takeSlot(header: Int32Array): number {
  for (let s = FIRST_SLOT; s < FIRST_SLOT + 2 * SLOTS; s += 2) {
    if (Atomics.compareExchange(header, s, 0, process.pid) === 0) {
      Atomics.store(header, s + 1, meTid());
      return s;
    }
  }
  Atomics.add(header, CELL_HOLDERS, 1);
  return -1;
}

// A wrapper collected without close() gives its count back. The held value must not reference
// the Segment itself (only weakly), or it would never be collected.
const finalizer = new FinalizationRegistry<Held>((held) => release(held));

/** A mapped, named segment; `i32` views the whole of it, header included. */
export class Segment {
  readonly name: string;
  /** Bytes of the segment (or of the block), header included. */
  readonly size: number;
  readonly buffer: SegmentBuffer;
  /** Where the segment's bytes start in `buffer`: 0, or the block's offset in its arena. */
  readonly byteOffset: number;
  /** Int32 cells over the whole segment (or block); the first BASE cells are the header. */
  readonly i32: Int32Array;
  #closed = false;
  readonly #held: Held;

  /** @internal Use create/adopt: this maps nothing and takes the holder slot only. */
  constructor(name: string, buffer: SegmentBuffer, block?: { offset: number; bytes: number; free: () => void; released: () => void }) {
    this.name = name;
    this.buffer = buffer;
    this.byteOffset = block?.offset ?? 0;
    this.size = block?.bytes ?? buffer.byteLength;
    this.i32 = new Int32Array(buffer, this.byteOffset, this.size / 4);
    const ref = new WeakRef(this);
    const header = new Int32Array(buffer, this.byteOffset, HEADER_BYTES / 4);
    this.#held = {
      name,
      header,
      ref,
      slot: takeSlot(header),
      lastOut: block ? block.free : () => unlinkQuietly(name),
      block: block?.released,
    };
    finalizer.register(this, this.#held, this);
    live.add(ref);
    installExitHook();
  }

  /**
   * Create a segment of at least `bytes` usable bytes after the header, zero-filled, with a
   * unique name. `kind` tags what lives in it, checked by `open`.
   */
  static create(bytes: number, kind: number): Segment {
    if (!Number.isInteger(bytes) || bytes < 0) throw new InvalidArgumentError(`segment size must be an integer >= 0, got ${String(bytes)}`);
    const block = kind === KIND.Heap ? undefined : allocBlock(HEADER_BYTES + bytes);
    if (block) {
      Atomics.store(block.i32, CELL_KIND, kind);
      Atomics.store(block.i32, CELL_MAGIC, MAGIC);
      return block;
    }
    const name = segmentName();
    // Whole Int32 cells (and 8-byte alignment for 64-bit views after the header).
    const buffer = openSegment(name, HEADER_BYTES + Math.ceil(bytes / 8) * 8, true);
    tracker.register(name);
    const seg = new Segment(name, buffer);
    Atomics.store(seg.i32, CELL_KIND, kind);
    Atomics.store(seg.i32, CELL_MAGIC, MAGIC);
    return seg;
  }

  /** Open a segment another process created and sent, as `retainForSend()` named it (adopting its ticket). */
  static adopt(sent: string, kind: number): Segment {
    const hash = sent.indexOf('#');
    const name = hash < 0 ? sent : sent.slice(0, hash);
    const seg = name.includes('@') ? openBlock(name) : new Segment(name, openSegment(name, HEADER_BYTES, false));
    // Our slot is taken (constructor); the copy in flight is now us. A ticket the sender already
    // gave back (a copy it said would never arrive) is simply gone.
    if (hash < 0) Atomics.sub(seg.i32, CELL_HOLDERS, 1);
    else takeTicket(seg.i32, Number(sent.slice(hash + 1)));
    if (Atomics.load(seg.i32, CELL_MAGIC) !== MAGIC || Atomics.load(seg.i32, CELL_KIND) !== kind) {
      seg.close();
      throw new InvalidArgumentError(`shared memory segment "${name}" does not hold the expected multiproc object`);
    }
    return seg;
  }

  /**
   * Hold the segment for a copy about to be sent; the receiver passes what this returns to
   * `adopt`. A copy that will never be delivered gives its hold back (see withReservations).
   */
  retainForSend(): string {
    // A closed block may already hold another object.
    if (this.#closed) throw new ProcessError('a closed shared object cannot be sent: send one that is open', { code: 'ERR_MP_CLOSED' });
    if (toAnotherProcess > 0 && emulated())
      throw crossProcessError(`a ${kindName(Atomics.load(this.i32, CELL_KIND))} cannot be sent to another process`);
    const { name, i32 } = this;
    const ticket = (Atomics.add(i32, CELL_TICKET, 1) & 0x3fffffff) + 1;
    for (let k = FIRST_TICKET; k < FIRST_TICKET + TICKETS; k++) {
      if (Atomics.compareExchange(i32, k, 0, ticket) === 0) {
        const { lastOut } = this.#held;
        noteReservation(() => giveBackTicket(name, i32, ticket, lastOut));
        return `${name}#${ticket}`;
      }
    }
    // No ticket left: a plain count, which cannot be told apart from an adopted copy, so it is
    // not given back (the resource tracker unlinks the segment when the program ends).
    Atomics.add(i32, CELL_HOLDERS, 1);
    return name;
  }

  /**
   * Remove the name now, for a segment every process that will ever hold it has mapped already:
   * nothing is then left in /dev/shm should they all be killed. The mappings stay valid.
   */
  unlinkName(): void {
    unlinkQuietly(this.name);
  }

  /** Give this wrapper's count back now (unlinking if it was the last) and unmap. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    finalizer.unregister(this);
    release(this.#held);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Replace what this wrapper's release does when it finds no holder left (arenas). */
  setLastOut(f: () => void): void {
    this.#held.lastOut = f;
  }
}

// Above zero while a message for another process (not a thread of this one) is serialized.
let toAnotherProcess = 0;

/**
 * Run `serialize`, which makes a message for another process. Without the addon (see
 * native.ts) a shared object cannot go there: sending one throws NativeUnavailableError here,
 * in the sender, rather than in the receiver when it opens it.
 */
export function forAnotherProcess<T>(serialize: () => T): T {
  toAnotherProcess++;
  try {
    return serialize();
  } finally {
    toAnotherProcess--;
  }
}

/** @internal Run `f`, which makes a copy for this process, within forAnotherProcess (a relay's own copy). */
export function forThisProcess<T>(f: () => T): T {
  const outer = toAnotherProcess;
  toAnotherProcess = 0;
  try {
    return f();
  } finally {
    toAnotherProcess = outer;
  }
}

/** @internal Whether the message being serialized goes to another process (see forAnotherProcess). */
export function sendingToAnotherProcess(): boolean {
  return toAnotherProcess > 0;
}

/**
 * @internal In a reducer of an object whose memory is a segment: throw NativeUnavailableError
 * when it is being sent to another process without the addon (`what`: "a SharedMemory").
 */
export function checkCanCross(what: string): void {
  if (toAnotherProcess > 0 && emulated()) throw crossProcessError(`${what} cannot be sent to another process`);
}

function kindName(kind: number): string {
  const name = Object.entries(KIND).find(([, k]) => k === kind)?.[0];
  return name === undefined ? 'shared object' : name === 'Pipe' ? 'Pipe end' : name === 'Heap' ? 'shared block' : name;
}

// Holds reserved for copies being serialized (retainForSend, Ring.reserve), for a caller that
// may drop the message instead of delivering it (a pool discarding tasks it never ran).
let reservations: (() => void)[] | undefined;

/** @internal Called by whatever reserves a hold for a copy in flight: how to give it back (once). */
export function noteReservation(undo: () => void): void {
  if (!reservations) return;
  let done = false;
  reservations.push(() => {
    if (!done) {
      done = true;
      undo();
    }
  });
}

// Clear `ticket` from the header; false when it was not there (adopted or given back already).
function takeTicket(header: Int32Array, ticket: number): boolean {
  for (let k = FIRST_TICKET; k < FIRST_TICKET + TICKETS; k++) if (Atomics.compareExchange(header, k, ticket, 0) === ticket) return true;
  return false;
}

/**
 * Run `serialize` and return its result with a function that gives back every hold it reserved
 * for the copies it made, to call if the message will never be delivered (at most once).
 */
export function withReservations<T>(serialize: () => T): [T, () => void] {
  const outer = reservations;
  const mine: (() => void)[] = [];
  reservations = mine;
  try {
    return [serialize(), () => mine.splice(0).forEach((undo) => undo())];
  } finally {
    reservations = outer;
    outer?.push(...mine);
  }
}

// Give back the ticket of a copy that will never be delivered. This wrapper may have been closed
// (its mapping gone) meanwhile: then the segment is mapped again for the moment.
function giveBackTicket(name: string, i32: Int32Array, ticket: number, lastOut: () => void): void {
  let header = i32;
  let mapped: SegmentBuffer | undefined;
  if (header.length === 0) {
    // A block is named `<arena>@<offset>.<generation>`: its header is inside the arena's mapping.
    const block = /^(.+)@(\d+)\.\d+$/.exec(name);
    try {
      mapped = openSegment(block ? block[1]! : name, HEADER_BYTES, false);
    } catch {
      return; // unlinked already: nothing is held any more
    }
    header = new Int32Array(mapped, block ? Number(block[2]) : 0, HEADER_BYTES / 4);
  }
  if (takeTicket(header, ticket) && noHoldersLeft(header)) lastOut();
  if (mapped) closeSegment(mapped);
}

function unlinkQuietly(name: string): void {
  try {
    unlinkSegment(name);
  } catch {
    // Someone else unlinked it: nothing to do.
  }
  tracker.unregister(name);
}

/** Holders left for a segment: live slots plus counted copies (for tests and diagnostics). */
export function holders(seg: Segment): number {
  let n = Atomics.load(seg.i32, CELL_HOLDERS);
  for (let s = FIRST_SLOT; s < FIRST_SLOT + 2 * SLOTS; s += 2) if (Atomics.load(seg.i32, s) !== 0) n++;
  for (let k = FIRST_TICKET; k < FIRST_TICKET + TICKETS; k++) if (Atomics.load(seg.i32, k) !== 0) n++;
  return n;
}

// Clear the slots of holders that died; true when no holder of any kind is left.
function noHoldersLeft(header: Int32Array): boolean {
  let left = Atomics.load(header, CELL_HOLDERS) > 0;
  for (let k = FIRST_TICKET; k < FIRST_TICKET + TICKETS && !left; k++) if (Atomics.load(header, k) !== 0) left = true;
  for (let s = FIRST_SLOT; s < FIRST_SLOT + 2 * SLOTS; s += 2) {
    const pid = Atomics.load(header, s);
    if (pid === 0) continue;
    if (holderAlive(pid, Atomics.load(header, s + 1))) left = true;
    else Atomics.compareExchange(header, s, pid, 0);
  }
  return !left;
}

let exiting = false;

function release(held: Held): void {
  const { header } = held;
  if (held.ref) live.delete(held.ref);
  held.ref = undefined;
  if (header.length === 0) return;
  if (held.slot >= 0) Atomics.compareExchange(header, held.slot, process.pid, 0);
  else Atomics.sub(header, CELL_HOLDERS, 1);
  if (noHoldersLeft(header)) held.lastOut();
  // At exit the mapping goes with the process; unmapping now would pull memory from under
  // other exit hooks (a pipe end detaching from its ring). A block's mapping is its arena's.
  if (held.block) held.block();
  else if (!exiting) closeSegment(header.buffer);
}

// Python's Finalize at exit: wrappers still alive when this process or thread exits give their
// counts back, so segments go as soon as their last user has ended.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    exiting = true;
    for (const ref of [...live]) ref.deref()?.close();
  });
}

// ---------------------------------------------------------------------------------------------
// Arenas (Python: `multiprocessing.heap`). A lock or a small value alone in a segment costs a
// file in /dev/shm, a mapping and at least a page: 5 000 of them made 5 000 segments. Small
// objects are blocks of an arena instead: a segment cut into blocks of one size, each block laid
// out as a segment (its own header, holders and tickets), so that the objects cannot tell. A
// block's last holder frees it (the next allocation of that size here reuses it); the arena is
// mapped by each process that uses one of its blocks until that process ends, and unlinked by
// whoever finds it with neither holders nor blocks in use.
//
// Arena cells after its header: [BASE] block size, [BASE+1] block count, then one cell per block:
// generation * 2 + 1 while in use, generation * 2 when free. A block is sent as
// `<arena>@<offset>.<generation>`, so that a late copy of a freed (and reused) block is refused.

const ARENA_BYTES = 128 * 1024;
const BLOCK_SIZES = [512, 1024, 2048, 4096];
const ARENA_STATE = BASE + 2;

interface Arena {
  seg: Segment;
  blockBytes: number;
  count: number;
  /** Byte offset of block 0. */
  first: number;
  /** Where the next free-block search starts. */
  hint: number;
  /** Block wrappers of this process not yet released. */
  live: number;
  own: boolean;
}

/** Arenas this process created, by block size: where it allocates. */
const ownArenas = new Map<number, Arena[]>();
/** Every arena this process has mapped, by name; held until the process ends. */
const arenas = new Map<string, Arena>();

function arenaOf(seg: Segment, own: boolean): Arena {
  const blockBytes = Atomics.load(seg.i32, BASE);
  const count = Atomics.load(seg.i32, BASE + 1);
  const first = Math.ceil((HEADER_BYTES + (2 + count) * 4) / 256) * 256;
  if (blockBytes < HEADER_BYTES || blockBytes % 8 !== 0 || count < 1 || first + count * blockBytes > seg.size)
    throw new InvalidArgumentError(`shared memory segment "${seg.name}" is not a well-formed multiproc arena`);
  const a = { seg, blockBytes, count, first, hint: 0, live: 0, own };
  arenas.set(seg.name, a);
  return a;
}

function newArena(blockBytes: number): Arena {
  const count = Math.floor((ARENA_BYTES - HEADER_BYTES - 2 * 4) / (blockBytes + 4));
  const seg = Segment.create(ARENA_BYTES - HEADER_BYTES, KIND.Heap);
  Atomics.store(seg.i32, BASE, blockBytes);
  Atomics.store(seg.i32, BASE + 1, count);
  const a = arenaOf(seg, true);
  seg.setLastOut(() => {
    if (!blocksInUse(a)) unlinkQuietly(seg.name);
  });
  return a;
}

function blocksInUse(a: Arena, cells = a.seg.i32): boolean {
  for (let b = 0; b < a.count; b++) if (Atomics.load(cells, ARENA_STATE + b) & 1) return true;
  return false;
}

// A copy given back after this process let go of the arena (its mapping detached) maps it again
// for the moment; an arena unlinked meanwhile has nothing left to free.
function withArenaCells(a: Arena, use: (cells: Int32Array) => void): void {
  if (a.seg.i32.length > 0) {
    use(a.seg.i32);
    return;
  }
  let buffer: SegmentBuffer;
  try {
    buffer = openSegment(a.seg.name, HEADER_BYTES, false);
  } catch {
    return;
  }
  try {
    use(new Int32Array(buffer));
  } finally {
    closeSegment(buffer);
  }
}

function blockSegment(a: Arena, index: number, generation: number): Segment {
  const offset = a.first + index * a.blockBytes;
  const cell = ARENA_STATE + index;
  const used = generation * 2 + 1;
  a.live++;
  return new Segment(`${a.seg.name}@${offset}.${generation}`, a.seg.buffer, {
    offset,
    bytes: a.blockBytes,
    free: () =>
      withArenaCells(a, (cells) => {
        Atomics.store(cells, offset / 4 + CELL_MAGIC, 0);
        if (Atomics.compareExchange(cells, cell, used, used - 1) !== used) return;
        // The arena's own holders may all be gone (their processes ended): then the last block out unlinks it.
        if (!blocksInUse(a, cells) && noHoldersLeft(cells.subarray(0, BASE))) unlinkQuietly(a.seg.name);
      }),
    released: () => {
      a.live--;
      maybeDrop(a, false);
    },
  });
}

// Let go of an arena this process no longer uses: one it only opened, as soon as none of its
// blocks is held here; one it allocates from, when no block is in use anywhere and `idleToo`
// (or some block is, elsewhere: that holder frees it, and unlinks the arena if it is the last).
function maybeDrop(a: Arena, idleToo: boolean): void {
  if (a.live > 0 || exiting || a.seg.closed) return;
  if (a.own && !idleToo && !blocksInUse(a)) return;
  arenas.delete(a.seg.name);
  const own = ownArenas.get(a.blockBytes);
  if (own?.includes(a)) own.splice(own.indexOf(a), 1);
  a.seg.close();
}

/** @internal Drop the arenas this process holds with no block in use here (tests' leak checks). */
export function trimArenas(): void {
  for (const a of [...arenas.values()]) maybeDrop(a, true);
}

/** A zeroed block of at least `bytes` (header included), or undefined when too big for an arena. */
function allocBlock(bytes: number): Segment | undefined {
  const size = BLOCK_SIZES.find((b) => b >= bytes);
  if (size === undefined) return undefined;
  let own = ownArenas.get(size);
  if (!own) ownArenas.set(size, (own = []));
  for (const a of own) {
    for (let k = 0; k < a.count; k++) {
      const b = (a.hint + k) % a.count;
      const state = Atomics.load(a.seg.i32, ARENA_STATE + b);
      if (state & 1 || Atomics.compareExchange(a.seg.i32, ARENA_STATE + b, state, state + 3) !== state) continue;
      a.hint = (b + 1) % a.count;
      // Generations wrap at 2^30 (a cell holds 2^31 states).
      const generation = ((state >>> 1) + 1) & 0x3fffffff;
      if (generation === 0) Atomics.store(a.seg.i32, ARENA_STATE + b, 1);
      new Int32Array(a.seg.buffer, a.first + b * size, size / 4).fill(0);
      return blockSegment(a, b, generation);
    }
  }
  const a = newArena(size);
  own.push(a);
  return allocBlock(bytes);
}

/** Open the block `<arena>@<offset>.<generation>` another process (or thread) sent. */
function openBlock(name: string): Segment {
  const m = /^(.+)@(\d+)\.(\d+)$/.exec(name);
  if (!m) throw new InvalidArgumentError(`"${name}" is not the name of a multiproc shared object`);
  const [, arenaName, off, gen] = m as unknown as [string, string, string, string];
  let a = arenas.get(arenaName);
  if (!a) {
    const seg = new Segment(arenaName, openSegment(arenaName, HEADER_BYTES, false));
    if (Atomics.load(seg.i32, CELL_MAGIC) !== MAGIC || Atomics.load(seg.i32, CELL_KIND) !== KIND.Heap) {
      seg.close();
      throw new InvalidArgumentError(`shared memory segment "${arenaName}" is not a multiproc arena`);
    }
    a = arenaOf(seg, false);
    const arena = a;
    seg.setLastOut(() => {
      if (!blocksInUse(arena)) unlinkQuietly(arenaName);
    });
  }
  const offset = Number(off);
  const index = (offset - a.first) / a.blockBytes;
  const generation = Number(gen);
  if (!Number.isInteger(index) || index < 0 || index >= a.count || Atomics.load(a.seg.i32, ARENA_STATE + index) !== generation * 2 + 1)
    throw new ProcessError(`the shared object "${name}" no longer exists (every process holding it has released it)`, {
      code: 'ERR_MP_GONE',
    });
  return blockSegment(a, index, generation);
}

/** Arenas and blocks in use in this process's own arenas (for tests and diagnostics). */
export function arenaStats(): { arenas: number; blocksInUse: number } {
  let n = 0;
  let used = 0;
  for (const own of ownArenas.values()) {
    for (const a of own) {
      n++;
      for (let b = 0; b < a.count; b++) if (Atomics.load(a.seg.i32, ARENA_STATE + b) & 1) used++;
    }
  }
  return { arenas: n, blocksInUse: used };
}
