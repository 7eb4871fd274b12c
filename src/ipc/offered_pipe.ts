// A duplex pipe offered by name to a process that is not a child (a manager's server, see
// managers/rings.ts): the offering process keeps the other end open until the peer has opened
// it (or refused), so that no ring reservation is needed; the segment's ticket is given back if
// the peer never took it. The peer checks that the name is one of a pipe before opening it.
import { InvalidArgumentError } from '../errors.js';
import { HEADER_BYTES, KIND, Segment, withReservations } from '../shm/segment.js';
import { DUPLEX_PIPE_BYTES, PipeConnection, type Connection } from './connection.js';

// segmentName() of a plain segment with its ticket: `/mp-<pid>-<n>-<random>[-<tag>]#<ticket>`.
const OFFERED_NAME = /^\/mp-[0-9a-z]{1,12}-[0-9a-z]{1,12}-[0-9a-f]{8}(?:-[A-Za-z0-9]{1,16})?#[1-9][0-9]{0,9}$/;

/** @internal A pipe end as adoptOfferedPipe opens it. */
export interface PipeEnd extends Connection {
  /** The next message if one is whole in the ring now, else null; never waits. */
  _tryRecvBytes(): Uint8Array | null;
  /** Whether a message (or the start of one) waits in the ring. */
  _hasData(): boolean;
  /** The cell to wait on for data with its value now, counted as a waiter; undefined when there is data. */
  _watch(): [cells: Int32Array, index: number, value: number] | undefined;
  /** The wait _watch() began is over. */
  _unwatch(): void;
}

/**
 * @internal A pipe end (`end`) whose other end another process opens with adoptOfferedPipe(`name`);
 * call settle() once it did (`opened`: then the name is removed, both ends having mapped it) or will not.
 */
export interface OfferedPipe {
  readonly end: Connection;
  readonly name: string;
  settle(opened?: boolean): void;
}

/** @internal Make a duplex pipe to offer to another process by name; `limit`: the longest message `end` accepts. */
export function offerPipe(limit: number): OfferedPipe {
  // As Pipe(true) makes them.
  const seg = Segment.create(DUPLEX_PIPE_BYTES - HEADER_BYTES, KIND.Pipe);
  const mine = new PipeConnection(seg, 0, true, true);
  const theirs = new PipeConnection(Segment.adopt(seg.retainForSend(), KIND.Pipe), 1, true, false);
  mine._tune(limit, true);
  const [name, giveBack] = withReservations(() => theirs._ticket());
  return {
    end: mine,
    name,
    settle: (opened = false) => {
      giveBack();
      if (opened && !mine.closed) mine._unlinkName();
      theirs.close();
    },
  };
}

/**
 * @internal Open the end of a pipe a peer offered (offerPipe) by its name, checking that it is
 * one: a name this library gives to plain segments, the Pipe kind in its header, a duplex pipe's
 * size and ring headers. `limit`: the longest message the end accepts.
 * @throws InvalidArgumentError (or the error of opening the segment) for anything else.
 */
export function adoptOfferedPipe(name: unknown, limit: number): PipeEnd {
  if (typeof name !== 'string' || !OFFERED_NAME.test(name))
    throw new InvalidArgumentError(`"${String(name).slice(0, 80)}" does not name a pipe segment`);
  const seg = Segment.adopt(name, KIND.Pipe);
  if (seg.size !== DUPLEX_PIPE_BYTES) {
    seg.close();
    throw new InvalidArgumentError(`shared memory segment "${seg.name}" has the size of no duplex pipe`);
  }
  const end = new PipeConnection(seg, 1, true, false);
  if (!end._wellFormed()) {
    end.close();
    throw new InvalidArgumentError(`shared memory segment "${seg.name}" does not hold a pipe's rings`);
  }
  end._tune(limit, true);
  return end;
}

/** @internal Let `end`'s waits block the thread first (see idle_wait.ts), or not (a reader watching many ends). */
export function setIdleWaits(end: Connection, on: boolean): void {
  if (end instanceof PipeConnection) end._tune(undefined, on);
}
