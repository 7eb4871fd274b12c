// The native addon (layer 1), typed: POSIX shared memory segments as buffers, and non-private
// futex wait/wake on their Int32 cells, blocking and asynchronous. Nothing here has policy:
// every lock, queue and condition is built above, in TypeScript, on Atomics plus these waits.
//
// The addon is loaded on first use, so importing this module never fails. Without it
// (MULTIPROC_NATIVE=0, or an addon that does not load) the same calls are served by emulated.ts,
// within this process only: `emulated()` tells which is in use.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, InvalidArgumentError, ProcessError, SharedMemoryFullError } from '../errors.js';
import { nativeDisabled, nativeSupported } from '../platform.js';
import type { MessagePort } from 'node:worker_threads';

import type { RegistryHandoff } from './emulated.js';

/** What a futex wait returned. `'ok'` may be a spurious wake: callers re-check their cell. */
export type WaitOutcome = 'ok' | 'not-equal' | 'timed-out';

/** A mapped segment: a real SharedArrayBuffer where the running Node allows it, else an ArrayBuffer. */
export type SegmentBuffer = SharedArrayBuffer | ArrayBuffer;

interface Binding {
  shmOpen(name: string, size: number | undefined, create: boolean): SegmentBuffer;
  shmUnlink(name: string): void;
  shmClose(buffer: SegmentBuffer): boolean;
  futexWait(cells: Int32Array, index: number, expected: number, timeoutMs?: number): WaitOutcome | 'failed';
  futexWake(cells: Int32Array, index: number, count?: number): number;
  futexWaitIdle(cells: Int32Array, index: number, expected: number, maxUs: number): WaitOutcome | 'busy' | 'failed';
  // Absent from an addon built before it (a stale build): then there is no blocking wait on several cells.
  futexWaitIdleAny?(cells: Int32Array[], indices: number[], expected: number[], maxUs: number): WaitOutcome | 'busy' | 'failed';
  futexWaitAsync(
    cells: Int32Array,
    index: number,
    expected: number,
    timeoutMs?: number,
  ): [Promise<WaitOutcome | 'cancelled' | 'failed'>, number | undefined];
  futexCancel(token: number): boolean;
  waiterThreads(): { total: number; idle: number };
  setParentDeathSignal(signo: number): number;
  readonly isSharedArrayBuffer: boolean;
  readonly hasFutexWaitv: boolean;
}

let binding: Binding | undefined;
let isEmulated = false;
let loadError: ProcessError | undefined;

/** The package root: the nearest ancestor holding native/binding.gyp (build/src/shm or src/shm). */
function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'native', 'binding.gyp'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', '..');
}

function loadAddon(): Binding {
  if (!nativeSupported) {
    loadError = new ProcessError(
      `the multiproc native addon is built for Linux only (futex and POSIX shared memory), not for ${process.platform}. ` +
        'Threads (the thread backend) share memory without it; between processes use a Manager.',
      { code: 'ERR_MP_NATIVE_UNAVAILABLE' },
    );
    throw loadError;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, so that a missing addon fails here, with the message below
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(path.join(packageRoot(), 'native')) as Binding;
  } catch (err) {
    loadError = new ProcessError(
      `the multiproc native addon could not be loaded (${(err as Error | null | undefined)?.message ?? String(err)}). ` +
        'It is compiled when the package is installed, which needs a C++ compiler, make and python3 ' +
        '(Debian/Ubuntu: apt-get install g++ make python3; Fedora: dnf install gcc-c++ make python3), ' +
        'then run: npm rebuild multiproc',
      { code: 'ERR_MP_NATIVE_UNAVAILABLE', cause: err },
    );
    throw loadError;
  }
}

function emulatedModule(): typeof import('./emulated.js') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- only without the addon
  return require('./emulated.js') as typeof import('./emulated.js');
}

// The same calls without the addon, within this process (see emulated.ts).
function emulatedBinding(): Binding {
  const e = emulatedModule();
  isEmulated = true;
  return {
    shmOpen: e.shmOpen,
    shmUnlink: e.shmUnlink,
    // A SharedArrayBuffer cannot be detached: it goes when the last thread lets go of it.
    shmClose: () => false,
    futexWait: e.futexWait,
    futexWake: e.futexWake,
    futexWaitIdle: e.futexWaitIdle,
    // As futexWaitIdle: the engine cannot tell whether the event loop is idle.
    futexWaitIdleAny: () => 'busy',
    futexWaitAsync: e.futexWaitAsync,
    futexCancel: e.futexCancel,
    waiterThreads: () => ({ total: 0, idle: 0 }),
    setParentDeathSignal: () => {
      throw e.crossProcessError('asking the kernel to end this process with its parent');
    },
    isSharedArrayBuffer: true,
    hasFutexWaitv: true,
  };
}

function load(): Binding {
  if (binding) return binding;
  if (nativeDisabled) {
    binding = emulatedBinding();
    return binding;
  }
  if (!nativeSupported) {
    binding = emulatedBinding();
    emulatedModule().setUnavailableReason(
      `exists for Linux only (it is built on futex and POSIX shared memory), not for ${process.platform}`,
    );
    return binding;
  }
  try {
    binding = loadAddon();
  } catch (err) {
    binding = emulatedBinding();
    emulatedModule().setUnavailableReason(
      `could not be loaded on this machine (${(err as Error | null | undefined)?.message ?? String(err)})`,
    );
  }
  return binding;
}

/** True when the addon loads on this machine (whether or not it is in use). Never throws. */
export function available(): boolean {
  if (loadError) return false;
  if (binding && !isEmulated) return true;
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

/**
 * True when shared memory is emulated within this process instead of served by the addon
 * (MULTIPROC_NATIVE=0, or an addon that does not load): segments and waits then work between the
 * threads of this process only.
 */
export function emulated(): boolean {
  load();
  return isEmulated;
}

/**
 * @internal Without the addon, what a new worker thread needs to open this process's segments
 * by name (undefined with the addon: the kernel's names serve every thread).
 */
export function segmentsForThread(): { data: RegistryHandoff; transfer: MessagePort[] } | undefined {
  return emulated() ? emulatedModule().registryForThread() : undefined;
}

/** @internal In a new worker thread: adopt what segmentsForThread() handed down. */
export function adoptSegments(data: RegistryHandoff | undefined): void {
  if (data && emulated()) emulatedModule().adoptRegistry(data);
}

/**
 * @internal Run `f`; without the addon, the asynchronous waits it starts (also down the promise
 * chains it makes) do not keep the process alive. With the addon: just `f()`.
 */
export function waitsWithoutKeepingAlive<T>(f: () => T): T {
  return emulated() ? emulatedModule().waitsWithoutKeepingAlive(f) : f();
}

/**
 * The typed error for a shared object that would have to reach another process while memory is
 * emulated; `what` says what was being done.
 */
export function crossProcessError(what: string): ProcessError {
  return emulatedModule().crossProcessError(what);
}

/**
 * True when segments are real SharedArrayBuffers (Node builds exporting
 * `node_api_create_external_sharedarraybuffer`: 22.x and 24.x recent releases, 26+); false when
 * they are ArrayBuffers over the mapping (Node 20). Atomics read-modify-write are exact across
 * processes either way; `Atomics.wait` works only on the former, and never across processes.
 */
export function isSharedArrayBuffer(): boolean {
  return load().isSharedArrayBuffer;
}

/** True when the kernel has futex_waitv (Linux 5.16+): async waits are then cancelled at once. */
export function hasFutexWaitv(): boolean {
  return load().hasFutexWaitv;
}

/** Waiter threads of this process (`total`), and how many of them are parked idle. */
export function waiterThreads(): { total: number; idle: number } {
  return load().waiterThreads();
}

/**
 * Have the kernel send `signo` to this process when the thread that started it ends (0: never).
 * Returns the parent pid as it is after the call: if the parent died before it, this process
 * has been handed to another one and no signal will come. Linux only (see platform.ts).
 */
export function setParentDeathSignal(signo: number): number {
  try {
    return load().setParentDeathSignal(signo);
  } catch (err) {
    throw translate(err);
  }
}

function normalName(name: string): string {
  return typeof name === 'string' && !name.startsWith('/') ? `/${name}` : name;
}

// Native errors carry `code`; give them the library's classes and a message that says what to do.
function translate(err: unknown, name?: string, size?: number): Error {
  const e = err as NodeJS.ErrnoException;
  // Anything can be thrown, null included; a native error is an object with a string `code`.
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  if (code === 'ERR_MP_INVALID_ARG') return new InvalidArgumentError(e.message, { cause: err });
  if (code === 'ERR_MP_NATIVE_UNAVAILABLE') return err as Error;
  if (typeof code !== 'string') return err as Error;
  const seg = name === undefined ? 'shared memory segment' : `shared memory segment "${normalName(name)}"`;
  if (code === 'ENOSPC') {
    const what = size === undefined ? seg : `${seg} of ${size} bytes`;
    return new SharedMemoryFullError(
      `${what}: no room left in /dev/shm (ENOSPC). Free shared memory (close and unlink blocks, close ` +
        'queues and pipes no longer used), or give /dev/shm more room: with Docker, run the container ' +
        'with --shm-size (e.g. docker run --shm-size=1g); on Kubernetes, mount an emptyDir with ' +
        'medium: Memory at /dev/shm; on a host, mount -o remount,size=2G /dev/shm',
      { cause: err },
    );
  }
  const messages: Record<string, string> = {
    ENOENT: `${seg} does not exist (it was never created, or has been unlinked)`,
    EEXIST: `${seg} already exists; open it with create=false or choose another name`,
    EAGAIN: `${seg} exists but has size 0: its creator has not finished creating it`,
    EACCES: `${seg} exists but this user may not open it`,
    ENAMETOOLONG: `${seg}: name is too long`,
    EMFILE: `${seg}: too many open files in this process`,
    ENFILE: `${seg}: too many open files in the system`,
    ENOMEM: `${seg}: out of memory mapping it`,
    EINVAL: `${seg}: invalid size or name`,
  };
  const message = messages[code] ?? `${seg}: ${e.message}`;
  return new ProcessError(`${message} (${code})`, { code, cause: err });
}

/**
 * Create (`create` true: fails with EEXIST if the name is taken) or open a POSIX shared memory
 * segment. `name` gets a leading '/' if it has none; it must not contain another '/'. When
 * creating, `size` is the byte length (an integer >= 1) and the memory starts zeroed. When
 * opening, the whole segment is mapped and must be at least `size` bytes (pass 0 to skip the check).
 * A new segment's memory is reserved at creation: when /dev/shm has no room for it, this throws
 * SharedMemoryFullError (ERR_MP_SHM_FULL) and no segment is left, instead of a SIGBUS on first write.
 * The mapping is released when the buffer is garbage-collected, or at once by `closeSegment`.
 */
export function openSegment(name: string, size: number, create: boolean): SegmentBuffer {
  const b = load();
  let buf: SegmentBuffer;
  try {
    buf = b.shmOpen(name, create ? size : undefined, create);
  } catch (err) {
    throw translate(err, name, create ? size : undefined);
  }
  if (!create) {
    if (!Number.isInteger(size) || size < 0) {
      b.shmClose(buf);
      throw new InvalidArgumentError(`size must be an integer >= 0 when opening, got ${String(size)}`);
    }
    if (buf.byteLength < size) {
      const actual = buf.byteLength;
      b.shmClose(buf);
      throw new ProcessError(`shared memory segment "${normalName(name)}" has ${actual} bytes, fewer than the ${size} expected`, {
        code: 'ERR_MP_SEGMENT_SIZE',
      });
    }
  }
  return buf;
}

/** Remove the segment's name; mappings already open stay valid until closed. */
export function unlinkSegment(name: string): void {
  try {
    load().shmUnlink(name);
  } catch (err) {
    throw translate(err, name);
  }
}

/**
 * Release this process's mapping now. Returns true for an ArrayBuffer, which is detached (views on it
 * then have length 0). A SharedArrayBuffer cannot be detached (other threads may share it): returns
 * false, and the mapping goes when the last reference in any thread is collected.
 */
export function closeSegment(buffer: SegmentBuffer): boolean {
  try {
    return load().shmClose(buffer);
  } catch (err) {
    throw translate(err);
  }
}

/**
 * Block this thread while `cells[index] === expected`, until woken by `futexWake` from any process
 * or thread, or `timeoutMs` passes (undefined or Infinity: forever; negative: 0). Blocks the event
 * loop: use it only where blocking is intended (a worker, a sync API).
 */
export function futexWait(cells: Int32Array, index: number, expected: number, timeoutMs?: number): WaitOutcome {
  let outcome: WaitOutcome | 'failed';
  try {
    outcome = load().futexWait(cells, index, expected, timeoutMs);
  } catch (err) {
    throw translate(err);
  }
  if (outcome === 'failed') throw waitFailed();
  return outcome;
}

// The kernel refused a futex wait for a reason other than a changed value, a timeout or a
// signal: waiting again would fail the same way, so it is an error rather than a hot loop.
function waitFailed(): ProcessError {
  return new ProcessError(
    'the kernel refused to wait on a shared-memory cell (futex failed): the memory may have been unmapped, or this kernel lacks futex support; check that the object was not closed while in use',
    { code: 'ERR_MP_FUTEX_FAILED' },
  );
}

/** Wake up to `count` (default: all) waiters on `cells[index]` in every process; returns how many woke. */
export function futexWake(cells: Int32Array, index: number, count?: number): number {
  try {
    return load().futexWake(cells, index, count);
  } catch (err) {
    throw translate(err);
  }
}

/**
 * A short `futexWait` on the calling thread, taken only while its event loop has nothing else to
 * do (no I/O ready, no callback pending, no timer due within `maxUs`); 'busy' at once otherwise.
 * Woken, it returns in one thread switch where `futexWaitAsync` takes two. See IdleWait.
 */
export function futexWaitIdle(cells: Int32Array, index: number, expected: number, maxUs: number): WaitOutcome | 'busy' {
  let outcome: WaitOutcome | 'busy' | 'failed';
  try {
    outcome = load().futexWaitIdle(cells, index, expected, maxUs);
  } catch (err) {
    throw translate(err);
  }
  if (outcome === 'failed') throw waitFailed();
  return outcome;
}

/**
 * futexWaitIdle on several cells at once: returns when any of them may have changed ('ok' or
 * 'not-equal', without saying which: re-read them all), or 'timed-out' after `maxUs`; 'busy' when
 * the event loop has something to do, or the kernel cannot wait on several cells (before Linux
 * 5.16), or there are more than 128 of them. `cells[k][indices[k]]` is expected to hold `expected[k]`.
 */
export function futexWaitIdleAny(cells: Int32Array[], indices: number[], expected: number[], maxUs: number): WaitOutcome | 'busy' {
  let outcome: WaitOutcome | 'busy' | 'failed';
  try {
    const b = load();
    outcome = b.futexWaitIdleAny ? b.futexWaitIdleAny(cells, indices, expected, maxUs) : 'busy';
  } catch (err) {
    throw translate(err);
  }
  if (outcome === 'failed') throw waitFailed();
  return outcome;
}

/**
 * `futexWait` that never blocks the event loop: the wait is parked on one of this process's
 * dedicated waiter threads (not the libuv pool), and the promise settles on the event loop.
 * While it is pending the process stays alive, as with a timer.
 *
 * With `signal`, an abort cancels the parked wait and rejects with `AbortError` (cause: the
 * signal's reason). A wake that races with the abort is not lost: the promise then resolves `'ok'`
 * even though the signal has fired, so the caller can pass the wake on.
 * Argument errors reject the promise with `InvalidArgumentError`.
 */
export function futexWaitAsync(
  cells: Int32Array,
  index: number,
  expected: number,
  timeoutMs?: number,
  signal?: AbortSignal,
): Promise<WaitOutcome> {
  let b: Binding;
  let pending: Promise<WaitOutcome | 'cancelled' | 'failed'>;
  let token: number | undefined;
  try {
    b = load();
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    [pending, token] = b.futexWaitAsync(cells, index, expected, timeoutMs);
  } catch (err) {
    return Promise.reject(translate(err));
  }
  if (signal === undefined || token === undefined) return (pending as Promise<WaitOutcome | 'failed'>).then(settled);
  const id = token;
  const onAbort = (): void => {
    b.futexCancel(id);
  };
  signal.addEventListener('abort', onAbort, { once: true });
  return pending.then((outcome) => {
    signal.removeEventListener('abort', onAbort);
    if (outcome === 'cancelled') throw new AbortError(undefined, { cause: signal.reason });
    return settled(outcome);
  });
}

function settled(outcome: WaitOutcome | 'failed'): WaitOutcome {
  if (outcome === 'failed') throw waitFailed();
  return outcome;
}
