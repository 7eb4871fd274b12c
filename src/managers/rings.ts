// Shared-memory rings under a manager connection. A client on the server's machine (a Unix socket
// address) makes a duplex pipe once authenticated, and asks the server, over the socket, to open
// its other end by name (`[id, 'ring', name]`); once the server says yes, every request and
// reply travels over the rings, which a process on the same machine writes and wakes in a few
// microseconds where a socket write and the peer's wake-up cost tens. The socket stays open: its
// end is how each side learns that the other is gone (a killed process closes it, as today), and
// it carries the upgrade only. Everything read from a ring goes through the same frame handler
// and receive policy as the socket (wire.ts), and the same size limit, checked before buffering.
//
// MULTIPROC_MANAGER_RINGS=0 keeps every connection on its socket (clients do not offer, servers
// refuse), for comparing the two or for a /dev/shm too small for a pipe per client.
import { adoptOfferedPipe, offerPipe, setIdleWaits, type OfferedPipe, type PipeEnd } from '../ipc/offered_pipe.js';
import { IdleWait } from '../shm/idle_wait.js';
import { futexWaitAsync } from '../shm/native.js';
import { spin } from '../shm/ring.js';
import type { Address } from '../ipc/listener.js';
import { emulated } from '../shm/native.js';

/** Whether this process uses rings: with the addon (other processes can map them), unless turned off (read at each connection). */
export function ringsServed(): boolean {
  return !/^(0|false|no|off)$/i.test(process.env.MULTIPROC_MANAGER_RINGS ?? '') && !emulated();
}

/** @internal A pipe for the server at `address` when it may be on this machine and rings are usable; else undefined (stay on the socket). */
export function offerRing(address: Address, limit: number): OfferedPipe | undefined {
  if (typeof address !== 'string' || !ringsServed()) return undefined;
  try {
    return offerPipe(limit);
  } catch {
    // /dev/shm full, say: the socket still works.
    return undefined;
  }
}

/** @internal Open the ring end a client named; throws for anything that is not one of its pipes. */
export function adoptRing(name: unknown, limit: number): PipeEnd {
  return adoptOfferedPipe(name, limit);
}

/**
 * The server's reading of every client's ring, in one loop: each pass takes the next whole
 * message of each ring (so that one busy client does not hold up the others) and hands it to
 * that client's handler. When no ring has anything, the loop blocks this thread on all their
 * heads at once for a moment (futexWaitIdleAny: a client's request then wakes it in one thread
 * switch, as a socket would, where a wait per ring costs two); when that times out (or cannot be
 * done: the event loop has work, an older kernel), each ring's head is watched on a waiter thread
 * and the first write resumes the loop.
 */
export class RingHub {
  readonly #readers = new Set<RingReader>();
  readonly #idle = new IdleWait();
  #running = false;
  #kick: (() => void) | undefined;

  /** Read `end` from now on (see RingReader for the callbacks). */
  add(end: PipeEnd, handle: (frame: Uint8Array) => Promise<void> | undefined, onEnd: () => void, flush: () => void): RingReader {
    // The loop does the blocking waits; a ring's own wait only ever parks.
    setIdleWaits(end, false);
    const r = new RingReader(this, end, handle, onEnd, flush);
    this.#readers.add(r);
    if (this.#running) this.wake();
    else void this.#loop();
    return r;
  }

  /** Stop reading `r` (its end is closed or about to be). */
  remove(r: RingReader): void {
    if (!this.#readers.delete(r)) return;
    // Its end is about to close: no wait may stay on its cells.
    r.disarm();
    this.wake();
  }

  /** @internal Resume a parked loop: a ring's message came, or its handling ended. */
  wake(): void {
    const k = this.#kick;
    this.#kick = undefined;
    k?.();
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      let passes = 0;
      while (this.#readers.size) {
        let served = false;
        for (const r of this.#readers) if (r.step()) served = true;
        if (served) {
          // Let replies and calls finish (microtasks) before the next pass, and every 64
          // passes the event loop turn (sockets, timers).
          await (++passes % 64 === 0 ? new Promise(setImmediate) : null);
          continue;
        }
        passes = 0;
        // A client's next request often follows its reply within microseconds: look for it
        // before blocking.
        if (spin(() => this.#anyData()) || this.#blockingWait()) continue;
        await this.#parked();
      }
    } finally {
      this.#running = false;
    }
  }

  #anyData(): boolean {
    for (const r of this.#readers) if (r.free && r.end._hasData()) return true;
    return false;
  }

  // Wait asynchronously until a ring may have data (each free ring's head watched on a waiter
  // thread), a ring's own read or handling ended, or the rings changed.
  async #parked(): Promise<void> {
    const woken = new Promise<void>((resolve) => (this.#kick = resolve));
    for (const r of this.#readers) if (!r.arm()) break;
    await woken;
  }

  // True when a ring may have data now; false when the rings should park.
  #blockingWait(): boolean {
    const cells: Int32Array[] = [];
    const indices: number[] = [];
    const values: number[] = [];
    const watched: PipeEnd[] = [];
    try {
      for (const r of this.#readers) {
        if (!r.free) continue;
        const w = r.end._watch();
        if (!w) return true;
        watched.push(r.end);
        cells.push(w[0]);
        indices.push(w[1]);
        values.push(w[2]);
      }
      return watched.length > 0 && this.#idle.waitAny(cells, indices, values);
    } finally {
      for (const end of watched) end._unwatch();
    }
  }
}

/**
 * One client's ring as its server's hub reads it: each frame goes to `handle` (wire.ts
 * frameHandler), in order; `onEnd` once reading ends (the client closed its end or died, an
 * oversized or unreadable message); `flush` sends the replies batched so far.
 */
export class RingReader {
  // A frame whose handling is asynchronous (the next waits for it, to keep the order).
  #handling: Promise<void> | undefined;
  // A read of a message that is not whole yet (longer than the ring, or being written), which
  // waits for the rest on its own.
  #reading = false;
  #stopping = false;
  #ended = false;
  // The asynchronous watch of the ring's head that a parked hub left (see arm()).
  #armed: AbortController | undefined;

  constructor(
    readonly hub: RingHub,
    readonly end: PipeEnd,
    readonly handle: (frame: Uint8Array) => Promise<void> | undefined,
    readonly onEnd: () => void,
    readonly flush: () => void,
  ) {}

  /** Whether the hub may read this ring now. */
  get free(): boolean {
    return !this.#handling && !this.#reading && !this.#stopping && !this.#ended && !this.end.closed;
  }

  /**
   * @internal Watch the ring's head on a waiter thread until a client writes (then wake the hub),
   * unless it is watched so already: a watch outlives the hub's park, so that a park costs a new
   * watch only of the rings written since the last. False when there is data already (the hub
   * was woken).
   */
  arm(): boolean {
    if (!this.free || this.#armed) return true;
    const w = this.end._watch();
    if (!w) {
      this.hub.wake();
      return false;
    }
    const armed = new AbortController();
    this.#armed = armed;
    futexWaitAsync(w[0], w[1], w[2], undefined, armed.signal)
      .finally(() => {
        if (this.#armed === armed) this.#armed = undefined;
        this.end._unwatch();
      })
      .then(
        () => this.hub.wake(),
        () => undefined,
      );
    return true;
  }

  /** @internal End the watch arm() left: the end is about to close. */
  disarm(): void {
    this.#armed?.abort();
    this.#armed = undefined;
  }

  /** @internal Take and handle the next message if it is whole now; true if there was one. */
  step(): boolean {
    if (!this.free) return false;
    let m: Uint8Array | null;
    try {
      m = this.end._tryRecvBytes();
    } catch {
      // Over the size limit.
      this.#end();
      return false;
    }
    if (m) {
      this.#take(m);
      return true;
    }
    if (this.end._hasData()) this.#readRest();
    return false;
  }

  // Read the next message as it comes; the hub is woken once it is handled.
  #readRest(): void {
    this.#reading = true;
    this.end._recvParked().then(
      (m) => {
        this.#reading = false;
        if (!this.#ended) this.#take(m);
        this.hub.wake();
      },
      () => {
        this.#reading = false;
        if (!this.#stopping) this.#end();
        this.hub.wake();
      },
    );
  }

  #take(m: Uint8Array): void {
    const rest = this.handle(m);
    if (!rest) {
      this.flush();
      return;
    }
    const done = (): void => {
      this.#handling = undefined;
      this.flush();
      this.hub.wake();
    };
    this.#handling = rest.then(done, done);
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.hub.remove(this);
    this.onEnd();
  }

  /**
   * The socket closed: serve the requests the client wrote before it went (they are whole in the
   * ring, as those a socket delivers before its end), then end.
   */
  async finish(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    try {
      if (this.#handling) await this.#handling;
      for (let m = this.end._tryRecvBytes(); m && !this.#ended; m = this.end._tryRecvBytes()) {
        const rest = this.handle(m);
        if (rest) await rest;
      }
    } catch {
      // An oversized or unreadable message: the end, as for the rest.
    }
    this.#end();
  }
}
