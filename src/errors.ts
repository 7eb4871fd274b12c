// Error classes of multiproc. Python's names where Python has the concept; every class has a
// stable `code` so callers can branch without matching message text.
import { signalName } from './platform.js';

/** Base of every error multiproc raises (Python: `multiprocessing.ProcessError`). */
export class ProcessError extends Error {
  /** Stable machine-readable code, e.g. `ERR_MP_ALREADY_STARTED`. */
  readonly code: string;
  constructor(message: string, options?: { code?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = options?.code ?? 'ERR_MP_PROCESS';
  }
  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * A receive buffer was smaller than the message (Python: `BufferTooShort`). `data` holds the
 * whole message, which was consumed, as Python's `args[0]` does.
 */
export class BufferTooShort extends ProcessError {
  readonly data: Uint8Array | undefined;
  constructor(message = 'buffer too short for the message', options?: { cause?: unknown; data?: Uint8Array }) {
    super(message, { code: 'ERR_MP_BUFFER_TOO_SHORT', cause: options?.cause });
    this.data = options?.data;
  }
}

/** The peer failed the authkey challenge (Python: `AuthenticationError`). */
export class AuthenticationError extends ProcessError {
  constructor(message = 'authentication failed', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_AUTHENTICATION', ...options });
  }
}

/** A wait ran out of time (Python: `multiprocessing.TimeoutError`). */
export class TimeoutError extends ProcessError {
  constructor(message = 'timed out', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_TIMEOUT', ...options });
  }
}

/**
 * No room left in `/dev/shm` for a new shared memory segment (a `SharedMemory`, a queue, a pipe,
 * a lock, a value...). Raised when the segment is created, before anything is written to it:
 * the memory is reserved then, so a full `/dev/shm` never shows up later as a SIGBUS that kills
 * the process. Nothing is left behind. Free segments, or give `/dev/shm` more room (Docker:
 * `docker run --shm-size=1g`).
 */
export class SharedMemoryFullError extends ProcessError {
  constructor(message = 'no room left in /dev/shm for a new shared memory segment', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_SHM_FULL', ...options });
  }
}

/** Nothing to take from a queue (Python: `queue.Empty`). */
export class Empty extends ProcessError {
  constructor(message = 'queue is empty', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_EMPTY', ...options });
  }
}

/** No room in a bounded queue (Python: `queue.Full`). */
export class Full extends ProcessError {
  constructor(message = 'queue is full', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_FULL', ...options });
  }
}

/** A barrier was aborted, reset or timed out while parties waited (Python: `BrokenBarrierError`). */
export class BrokenBarrierError extends ProcessError {
  constructor(message = 'barrier is broken', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_BROKEN_BARRIER', ...options });
  }
}

/** The other end of a connection is closed and nothing is left to read (Python: `EOFError`). */
export class EOFError extends ProcessError {
  constructor(message = 'the other end of the connection is closed', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_EOF', ...options });
  }
}

/**
 * What was asked needs memory shared between processes, which comes from multiproc's native addon,
 * and the addon is not in use here: it was not built for this machine, it failed to load, or
 * `MULTIPROC_NATIVE=0` turned it off. The message says which, how to build it (`npm rebuild
 * multiproc` with a C++ compiler, make and python3) and what works without it: every object
 * between threads (`getContext('thread')`), and a Manager's objects between processes.
 */
export class NativeUnavailableError extends ProcessError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_NATIVE_UNAVAILABLE', ...options });
  }
}

/** An error raised by a manager's referent, carrying its class name, message and stack (Python: `RemoteError`). */
export class RemoteError extends ProcessError {
  constructor(message = 'error in the remote process', options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_REMOTE', ...options });
  }
}

/**
 * A value cannot cross a process boundary (Python: `PicklingError`). `path` names where the value
 * sits in what was sent, e.g. `args[1].cb`.
 */
export class NotTransferableError extends ProcessError {
  readonly path: string;
  constructor(path: string, problem: string, fix: string, options?: { code?: string }) {
    super(`${path}: ${problem}. ${fix}`, { code: options?.code ?? 'ERR_MP_NOT_TRANSFERABLE' });
    this.path = path;
  }
}

/**
 * A message received from a peer named code — a function or class (by value or by reference) or
 * a library object — that the receiver does not trust, so nothing of it was rebuilt. `path` names
 * where it sits in the message; the message names what was refused and the opt-in.
 */
export class UntrustedMessageError extends NotTransferableError {
  constructor(path: string, problem: string, fix: string) {
    super(path, problem, fix, { code: 'ERR_MP_UNTRUSTED' });
  }
}

/**
 * A worker (pool worker or process) died while it held a task. `exitcode` follows `Process.exitcode`:
 * a negative number is the signal that killed it.
 */
export class WorkerDiedError extends ProcessError {
  readonly exitcode: number | null;
  readonly worker: string;
  constructor(worker: string, exitcode: number | null, detail?: string) {
    super(`worker ${worker} died while running this task (${describeExit(exitcode)})${detail ? `: ${detail}` : ''}`, {
      code: 'ERR_MP_WORKER_DIED',
    });
    this.worker = worker;
    this.exitcode = exitcode;
  }
}

/**
 * A task of a Redis pool was delivered `maxDeliveries` times and each time its worker died or lost
 * its lease before answering: it is given up instead of redelivered forever. Fix the task (it
 * kills or hangs its worker), or raise `leaseMs` when it legitimately runs longer than the lease.
 */
export class WorkerLostError extends ProcessError {
  readonly deliveries: number;
  constructor(message: string, deliveries: number) {
    super(message, { code: 'ERR_MP_WORKER_LOST' });
    this.deliveries = deliveries;
  }
}

/**
 * A Redis pool worker has the task's module, but with other content than the caller's (a
 * different sha256): restart the worker with the same version of the module as the caller.
 */
export class StaleModuleError extends ProcessError {
  constructor(message: string) {
    super(message, { code: 'ERR_MP_STALE_MODULE' });
  }
}

/**
 * No Redis pool worker was started with the task's module: start workers with
 * `--module <that file>` (a worker only calls exports of the modules it was started with).
 */
export class ModuleNotAllowedError extends ProcessError {
  constructor(message: string) {
    super(message, { code: 'ERR_MP_MODULE_NOT_ALLOWED' });
  }
}

/**
 * The Redis server could not be reached for longer than the pool waits, or it lost the pool's
 * tasks and results (restarted without persistence): the calls still running fail with this
 * error instead of waiting forever. Check the server; turn on AOF to survive restarts.
 */
export class RedisConnectionError extends ProcessError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { code: 'ERR_MP_REDIS_CONNECTION', ...options });
  }
}

/** A wait was cancelled through an `AbortSignal`; `cause` is the signal's reason. */
export class AbortError extends ProcessError {
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) {
    super(message, { code: 'ABORT_ERR', ...options });
  }
}

/** An argument has the wrong type or value; the message names the argument and what it takes. */
export class InvalidArgumentError extends TypeError {
  readonly code = 'ERR_MP_INVALID_ARG';
  override get name(): string {
    return 'InvalidArgumentError';
  }
}

/**
 * The stack of an error raised in another process or thread, attached as `cause` to the error
 * rebuilt locally (Python: `RemoteTraceback`).
 */
export class RemoteTraceback extends Error {
  readonly code = 'ERR_MP_REMOTE_TRACEBACK';
  constructor(remoteStack: string) {
    super(`\n"""\n${remoteStack}\n"""`);
    // The remote stack is the message; a local stack would only point at the rebuilding code.
    this.stack = `RemoteTraceback: ${this.message}`;
  }
  override get name(): string {
    return 'RemoteTraceback';
  }
}

/** How an exit code reads in messages: `exit code 3`, `signal SIGKILL`. */
export function describeExit(exitcode: number | null): string {
  if (exitcode === null) return 'still running';
  if (exitcode < 0) return `killed by signal ${signalName(-exitcode)}`;
  return `exit code ${exitcode}`;
}

type ErrorClass = new (...args: never[]) => Error;

const errorsByName = new Map<string, ErrorClass>([
  ['ProcessError', ProcessError],
  ['BufferTooShort', BufferTooShort],
  ['AuthenticationError', AuthenticationError],
  ['TimeoutError', TimeoutError],
  ['Empty', Empty],
  ['Full', Full],
  ['BrokenBarrierError', BrokenBarrierError],
  ['EOFError', EOFError],
  ['RemoteError', RemoteError],
  ['NativeUnavailableError', NativeUnavailableError],
  ['NotTransferableError', NotTransferableError],
  ['UntrustedMessageError', UntrustedMessageError],
  ['WorkerDiedError', WorkerDiedError],
  ['WorkerLostError', WorkerLostError],
  ['StaleModuleError', StaleModuleError],
  ['ModuleNotAllowedError', ModuleNotAllowedError],
  ['RedisConnectionError', RedisConnectionError],
  ['AbortError', AbortError],
  ['InvalidArgumentError', InvalidArgumentError],
]);

/**
 * Library error classes by name: an error raised in another process is rebuilt as the same class
 * from its name alone, without importing anything the sender names.
 */
export const libraryErrors: ReadonlyMap<string, ErrorClass> = errorsByName;

const registeredElsewhere: string[] = [];

/** @internal An error class of the library defined outside this file (the managers' KeyError, ...). */
export function registerLibraryError(cls: ErrorClass): void {
  errorsByName.set(cls.name, cls);
  registeredElsewhere.push(cls.name);
}

/** @internal The names registerLibraryError() added (a child loads their module by name, see entry/library_types.ts). */
export function registeredErrorNames(): string[] {
  return [...registeredElsewhere];
}
