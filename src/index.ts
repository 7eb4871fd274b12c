// The public surface of multiproc: the default context's API, as Python's
// `multiprocessing/__init__.py` copies it from `context._default_context`.
export { Connection, Pipe, wait, type Waitable } from './ipc/connection.js';
export {
  Client,
  Listener,
  SocketConnection,
  type AcceptOptions,
  type Address,
  type Authkey,
  type ClientOptions,
  type Family,
  type ListenerOptions,
  type Trust,
} from './ipc/listener.js';
export {
  AcquirerProxy,
  ArrayProxy,
  AsyncResultProxy,
  BarrierProxy,
  BaseManager,
  BaseProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  IndexError,
  JoinableQueueProxy,
  KeyError,
  ListProxy,
  LockProxy,
  ManagedArray,
  ManagedBarrier,
  ManagedBoundedSemaphore,
  ManagedCondition,
  ManagedDict,
  ManagedEvent,
  ManagedJoinableQueue,
  ManagedList,
  ManagedLock,
  ManagedNamespace,
  ManagedQueue,
  ManagedRLock,
  ManagedSemaphore,
  ManagedValue,
  Manager,
  makeProxyType,
  NamespaceProxy,
  PoolProxy,
  QueueProxy,
  SemaphoreProxy,
  Server,
  SyncManager,
  ValueError,
  ValueProxy,
  type ManagedPoolOptions,
  type ManagerOptions,
  type Proxied,
  type ProxyWaitOptions,
  type RegisterOptions,
  type Token,
} from './managers/managers.js';
export { BaseContext, getAllStartMethods, getContext, getStartMethod, setForkserverPreload, setStartMethod } from './context.js';
export {
  AbortError,
  AuthenticationError,
  BrokenBarrierError,
  BufferTooShort,
  Empty,
  EOFError,
  Full,
  InvalidArgumentError,
  NativeUnavailableError,
  NotTransferableError,
  ProcessError,
  RemoteError,
  RemoteTraceback,
  SharedMemoryFullError,
  TimeoutError,
  UntrustedMessageError,
  WorkerDiedError,
  WorkerLostError,
  StaleModuleError,
  ModuleNotAllowedError,
  RedisConnectionError,
} from './errors.js';
export { cpuCount } from './platform.js';
export { activeChildren, currentProcess, ParentProcess, parentProcess, Process, type ProcessOptions, type StartMethod } from './process.js';
export { registerType, type Reducer } from './reduction/reduction.js';
export { Barrier } from './sync/barrier.js';
export { BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, type WaitOptions } from './sync/synchronize.js';
export {
  Array,
  RawArray,
  RawValue,
  SharedArray,
  sizeOf,
  Synchronized,
  SynchronizedArray,
  Value,
  type BufOf,
  type ElementOf,
  type InputOf,
  type LockLike,
  type SharedArrayConstructor,
  type SyncOptions,
  type Typecode,
  type ValueConstructor,
} from './memory/sharedctypes.js';
export {
  AsyncResult,
  IMapIterator,
  MapResult,
  Pool,
  ProgressBar,
  ThreadPool,
  type AsyncOptions,
  type CallOptions,
  type MapOptions,
  type PoolOptions,
  type Progress,
  type ProgressBarOptions,
  type TaskTiming,
} from './pool/pool.js';
export { JoinableQueue, Queue } from './ipc/queues.js';
export { SimpleQueue } from './ipc/simple_queue.js';
// Without the addon, queues sent to other processes are served by this one (with it, every
// process maps them itself and the relay's code need not load).
import { emulated } from './shm/native.js';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only where it serves, see above
if (emulated()) require('./ipc/queue_relay.js');
export {
  ShareableList,
  SharedMemory,
  type Shareable,
  type ShareableListOptions,
  type SharedMemoryOptions,
} from './memory/shared_memory.js';
export { isMainModule } from './process.js';
export { channels as diagnosticsChannels } from './diagnostics.js';
export { RedisAsyncResult, RedisPool, type RedisPoolOptions } from './redis/pool.js';
export { RedisContext, type RedisContextOptions } from './redis/context.js';
export type { RedisTrust } from './redis/client.js';
export type {
  RedisJoinableQueue,
  RedisObjectOptions,
  RedisQueue,
  RedisQueueOptions,
  RedisSimpleQueue,
  RedisWaitOptions,
} from './redis/queues.js';
export type { RedisBarrier } from './redis/barrier.js';
export type { RedisCondition } from './redis/condition.js';
export type { RedisContainerOptions, RedisDict, RedisList } from './redis/containers.js';
export type { RedisManagedOptions, RedisManagedValue, RedisManager, RedisNamespace } from './redis/managers.js';
export type { RedisArray, RedisLockLike, RedisValue, RedisValueOptions } from './redis/sharedctypes.js';
export type { RedisBoundedSemaphore, RedisEvent, RedisLock, RedisRLock, RedisSemaphore } from './redis/synchronize.js';
export { startRedisWorker, type RedisWorkerHandle, type RedisWorkerOptions } from './redis/worker.js';
export { redisStatus, type RedisStatus, type RedisWorkerStatus } from './redis/server.js';
