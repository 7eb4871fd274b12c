// Which module registers each of the library's own types. A child loads only the module of a
// type a message holds when it first meets it (a pool worker that only ever sees its pipe loads
// the pipe, not the managers or the socket code): start-up time and memory. The receiving side
// requires only modules listed here, whatever a message names. test/reduction.test.ts checks
// that the table matches what the library registers.
/* eslint-disable @typescript-eslint/no-require-imports -- each module loads when first needed, see above */
const MODULES: Readonly<Record<string, () => unknown>> = {
  'multiproc.Lock': () => require('../sync/synchronize.js') as unknown,
  'multiproc.RLock': () => require('../sync/synchronize.js') as unknown,
  'multiproc.Semaphore': () => require('../sync/synchronize.js') as unknown,
  'multiproc.Condition': () => require('../sync/synchronize.js') as unknown,
  'multiproc.Event': () => require('../sync/synchronize.js') as unknown,
  'multiproc.Barrier': () => require('../sync/barrier.js') as unknown,
  'multiproc.Value': () => require('../memory/sharedctypes.js') as unknown,
  'multiproc.RawValue': () => require('../memory/sharedctypes.js') as unknown,
  'multiproc.Array': () => require('../memory/sharedctypes.js') as unknown,
  'multiproc.RawArray': () => require('../memory/sharedctypes.js') as unknown,
  'multiproc.SharedMemory': () => require('../memory/shared_memory.js') as unknown,
  'multiproc.ShareableList': () => require('../memory/shared_memory.js') as unknown,
  // Without the addon a pipe end from another process is a socket to its relay (ipc/relay.ts).
  'multiproc.Connection': () =>
    (require('../shm/native.js') as typeof import('../shm/native.js')).emulated()
      ? (require('../ipc/relay.js') as unknown)
      : (require('../ipc/connection.js') as unknown),
  'multiproc.SocketConnection': () => require('../ipc/socket.js') as unknown,
  'multiproc.Listener': () => require('../ipc/listener.js') as unknown,
  // Without the addon a queue from another process may be one that process serves (ipc/queue_relay.ts).
  'multiproc.Queue': () =>
    (require('../shm/native.js') as typeof import('../shm/native.js')).emulated()
      ? (require('../ipc/queue_relay.js') as unknown)
      : (require('../ipc/queues.js') as unknown),
  'multiproc.ServedQueue': () => require('../ipc/queue_relay.js') as unknown,
  'multiproc.SimpleQueue': () => require('../ipc/simple_queue.js') as unknown,
  'multiproc.RedisQueue': () => require('../redis/queues.js') as unknown,
  'multiproc.RedisLock': () => require('../redis/synchronize.js') as unknown,
  'multiproc.RedisEvent': () => require('../redis/synchronize.js') as unknown,
  'multiproc.RedisBarrier': () => require('../redis/barrier.js') as unknown,
  'multiproc.RedisCondition': () => require('../redis/condition.js') as unknown,
  'multiproc.RedisValue': () => require('../redis/sharedctypes.js') as unknown,
  'multiproc.RedisContainer': () => require('../redis/managers.js') as unknown,
  'multiproc.ManagerProxy': () => require('../managers/managers.js') as unknown,
  // Error classes that cross by name, registered by the module that defines them.
  'error:KeyError': () => require('../managers/containers.js') as unknown,
  'error:IndexError': () => require('../managers/containers.js') as unknown,
  'error:ValueError': () => require('../managers/containers.js') as unknown,
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** Load the module that registers library type `tag`; unknown tags load nothing. */
export function loadLibraryType(tag: string): void {
  if (Object.prototype.hasOwnProperty.call(MODULES, tag)) MODULES[tag]!();
}

/** The tags this table knows (type tags, and `error:<name>` for error classes). */
export function knownLibraryTags(): string[] {
  return Object.keys(MODULES);
}
