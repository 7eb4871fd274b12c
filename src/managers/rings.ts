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
import { adoptOfferedPipe, offerPipe, setIdleWaits, type Connection, type OfferedPipe, type PipeEnd } from '../ipc/connection.js';
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
 * @internal Let the rings of one server wait as fits their number: with one client, a wait may
 * block the thread for a moment first (the reply to a request comes in microseconds); with more,
 * one ring's blocking wait would hold up the others, so each waits asynchronously.
 */
export function tuneRings(rings: ReadonlySet<Connection>): void {
  for (const r of rings) setIdleWaits(r, rings.size <= 1);
}

/**
 * The server's reading of one client's ring: each frame goes to `handle` (wire.ts frameHandler),
 * in order; `onEnd` once reading ends (the client closed its end or died, an oversized or
 * unreadable message).
 */
export class RingReader {
  #busy: Promise<void> | undefined;
  #stopping = false;
  #ended = false;

  constructor(
    readonly end: PipeEnd,
    readonly handle: (frame: Uint8Array) => Promise<void> | undefined,
    readonly onEnd: () => void,
    /** Send the replies batched so far: the wait for the next request may hold this thread a moment. */
    readonly flush: () => void,
  ) {
    void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      while (!this.#stopping) {
        const frame = await this.end.recvBytes();
        const rest = this.handle(frame);
        if (rest) {
          this.#busy = rest;
          await rest;
          this.#busy = undefined;
        }
        this.flush();
      }
    } catch {
      if (!this.#stopping) this.#end();
    }
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
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
      if (this.#busy) await this.#busy;
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
