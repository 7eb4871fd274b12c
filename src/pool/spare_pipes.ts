// Pipes made ahead of time for the workers of pools on the forkserver. A worker's pipe is a new
// shared-memory segment, mapped twice and registered with the resource tracker: ~1.7 ms of this
// process's CPU each, paid during a hand-over that otherwise takes ~10 ms. One is kept ready per
// standing child, made when that child has become idle.
import { Pipe, type Connection } from '../ipc/connection.js';
import { onStandingIdle, standingChildren } from '../popen/forkserver.js';

const spares: [Connection, Connection][] = [];
let hooked = false;

/** Two connected duplex ends for a pool worker on the forkserver: one made ahead if there is one. */
export function workerPipe(): [Connection, Connection] {
  if (!hooked) {
    hooked = true;
    onStandingIdle(topUp);
  }
  return spares.pop() ?? Pipe(true);
}

function topUp(): void {
  const want = standingChildren().filter((c) => c.idle).length;
  try {
    while (spares.length < want) spares.push(Pipe(true));
  } catch {
    // No room for a segment now (/dev/shm full): a pool makes its pipe when it needs it, and
    // reports the error then.
  }
}

/** @internal How many pipes are kept ready. */
export function sparePipeCount(): number {
  return spares.length;
}

/**
 * @internal Close the pipes kept ready (their segments are unlinked). They are a cache, as the
 * arenas are: a check for segments left behind drops them first. At exit the segments go as
 * every open pipe's do.
 */
export function dropSparePipes(): void {
  for (const [a, b] of spares.splice(0)) {
    a.close();
    b.close();
  }
}
