// Which threads of this process are alive. A holder of a lock, a pipe end or a segment is
// recorded as (pid, thread): a process that died is seen from /proc, but a worker thread shares
// its process's pid, and a terminated thread runs no code of its own. So every thread of the
// process shares one table (a SharedArrayBuffer handed to each worker thread at start), and the
// thread that started a worker marks it dead when its 'exit' event comes.
import { ProcessError } from '../errors.js';
import { currentTaskId, pidAlive, taskStartTime } from '../platform.js';

const SLOTS = 4096;
let table: Int32Array | undefined;
let tid = 0;

/** This thread's id as recorded in holder cells: threadId + 1 (0 means "unknown"). */
export function meTid(): number {
  // Loaded on first use: node:worker_threads costs every child process ~5 ms of start-up.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, see above
  if (tid === 0) tid = (require('node:worker_threads') as typeof import('node:worker_threads')).threadId + 1;
  return tid;
}

/** @internal The process-wide table, created on first need (to hand to a new worker thread). */
export function threadTable(): SharedArrayBuffer {
  table ??= new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  return table.buffer as SharedArrayBuffer;
}

/** @internal In a worker thread: use the table its starter handed down. */
export function adoptThreadTable(sab: SharedArrayBuffer | undefined): void {
  if (sab) table = new Int32Array(sab);
}

// A live thread's id sits in slot threadId % SLOTS, or (that slot being taken by another live
// thread: ids grow without bound, slots do not) in the next free one; the last slot counts the
// threads that found no free slot at all, which are then all taken as alive.
const OVERFLOW = SLOTS - 1;

/** @internal The starter of worker thread `threadId` records it alive, then dead at its exit. */
export function markThread(threadId: number, alive: boolean): void {
  const t = new Int32Array(threadTable());
  const id = threadId + 1;
  if (alive) {
    for (let n = 0; n < OVERFLOW; n++) if (Atomics.compareExchange(t, (threadId + n) % OVERFLOW, 0, id) === 0) return;
    Atomics.add(t, OVERFLOW, 1);
  } else {
    const at = findThread(t, id);
    if (at >= 0) Atomics.compareExchange(t, at, id, 0);
    else if (Atomics.load(t, OVERFLOW) > 0) Atomics.sub(t, OVERFLOW, 1);
  }
}

// The slot holding `id`: its own slot first (nearly always), else a scan.
function findThread(t: Int32Array, id: number): number {
  const home = (id - 1) % OVERFLOW;
  if (Atomics.load(t, home) === id) return home;
  for (let n = 1; n < OVERFLOW; n++) if (Atomics.load(t, (home + n) % OVERFLOW) === id) return (home + n) % OVERFLOW;
  return -1;
}

/** Whether the holder (pid, thread as in meTid()) may still be alive. */
export function holderAlive(pid: number, thread: number): boolean {
  if (pid !== process.pid) return pidAlive(pid);
  // The main thread lives as long as the process; so does this thread, and any thread this
  // process never told us about.
  if (thread <= 1 || thread === meTid() || !table) return true;
  return findThread(table, thread) >= 0 || Atomics.load(table, OVERFLOW) > 0;
}

// ---------------------------------------------------------------------------------------------
// Owners of locks. A lock word holds its owner's kernel thread id (see cells.ts): it names one
// thread of one process on the machine, fits in 22 bits (Linux's pid_max is at most 2^22), and
// its liveness is the kernel's to tell, with no table to keep. Ids are reused once freed, so the
// owner's start time is kept next to the word: a live thread with the same id but another start
// time is a newcomer, and the owner is dead.

let ownerId = 0;
let ownerStart = 0;

/** This thread's kernel thread id (the pid for a process's main thread). */
export function meOwner(): number {
  if (ownerId === 0) {
    const id = currentTaskId();
    if (id === undefined)
      throw new ProcessError(
        'a worker thread cannot use shared locks or queues without /proc: mount procfs (Linux) in this container or chroot',
        {
          code: 'ERR_MP_NO_PROC',
        },
      );
    ownerId = id;
    ownerStart = taskStartTime(ownerId) ?? 0;
  }
  return ownerId;
}

/** When this thread started (see taskStartTime), to store next to an owner id. */
export function meOwnerStart(): number {
  meOwner();
  return ownerStart;
}

/**
 * Whether owner `tid` may still be alive. `start` is its start time when known (undefined when
 * not): a thread of that id that started at another time is another thread.
 */
export function ownerAlive(tid: number, start: number | undefined): boolean {
  if (tid === meOwner()) return start === undefined || start === ownerStart;
  const now = taskStartTime(tid);
  if (now === undefined) return false;
  return start === undefined || now === start;
}
