// Shared memory without the native addon (MULTIPROC_NATIVE=0, or an addon that did not build):
// the same calls as the addon's, served by the JavaScript engine within one process. A segment is
// a SharedArrayBuffer; futex waits are Atomics.wait/waitAsync, which work across the worker
// threads of a process and never across processes. So everything between threads keeps working at
// full speed, and a segment another process created cannot be opened here.
//
// Segment names travel as text (inside messages, through rings), so every thread of the process
// must be able to find a segment by name. Each thread keeps a registry; a creator posts
// `{name, sab}` on a BroadcastChannel before the name can travel anywhere, and a thread that does
// not know a name drains its channel synchronously (receiveMessageOnPort) before giving up. A
// new thread gets a snapshot of its starter's registry, and a port on which the starter passes on
// what it creates and hears until shortly after the new thread has joined the channel: what is
// posted on a channel before a thread joins it never reaches that thread. (A segment a third
// thread made while the new one was booting is found only if the starter heard of it by then,
// which it does whenever its event loop runs.)
import type { BroadcastChannel, MessagePort } from 'node:worker_threads';

import { NativeUnavailableError } from '../errors.js';
import { nativeSupported } from '../platform.js';

type WorkerThreads = typeof import('node:worker_threads');
// Loaded on first use: node:worker_threads costs every child process ~5 ms of start-up.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, see above
const wt = (): WorkerThreads => require('node:worker_threads') as WorkerThreads;

type Note = { name: string; sab: SharedArrayBuffer } | { gone: string };

const CHANNEL = 'multiproc:emulated-segments';
const known = new Map<string, SharedArrayBuffer>();
// Names unlinked here or elsewhere: a late notice of their creation must not bring them back.
const gone = new Set<string>();
const GONE_KEPT = 10_000;
let channel: BroadcastChannel | undefined;
let inbox: MessagePort | undefined;
// Threads this one started that have not joined the channel yet (or only just): their port, the
// flag they set when they join, and when this thread first saw it set.
const booting: { port: MessagePort; joined: Int32Array; seen: number; since: number }[] = [];
// A thread that has not joined by then has died booting.
const BOOT_MS = 60_000;
// What other threads post before a new thread has joined the channel reaches it only through its
// starter, which passes on what it hears for a while after the join (notices from a third thread
// may reach the starter late).
const PASS_ON_MS = 2000;

function note(n: Note): void {
  if ('gone' in n) {
    known.delete(n.gone);
    forget(n.gone);
  } else if (!gone.has(n.name)) known.set(n.name, n.sab);
}

function forget(name: string): void {
  gone.add(name);
  if (gone.size > GONE_KEPT) gone.delete(gone.values().next().value as string);
}

function join(): BroadcastChannel {
  if (channel) return channel;
  const bc = new (wt().BroadcastChannel)(CHANNEL);
  // Notices are taken as they come whenever the event loop runs (so that the buffers they hold
  // are not kept in a queue), and synchronously when a name is looked up.
  bc.onmessage = (e: unknown) => heard((e as { data: Note }).data);
  (bc as unknown as { unref(): void }).unref();
  channel = bc;
  return bc;
}

function post(n: Note): void {
  join().postMessage(n);
  passOn(n);
}

// A notice from the channel: taken here, and passed on to the threads still booting.
function heard(n: Note): void {
  note(n);
  passOn(n);
}

function passOn(n: Note): void {
  for (let i = booting.length - 1; i >= 0; i--) {
    const b = booting[i]!;
    const now = performance.now();
    if (Atomics.load(b.joined, 0) === 1 && b.seen === 0) b.seen = now;
    if ((b.seen > 0 && now - b.seen > PASS_ON_MS) || (b.seen === 0 && now - b.since > BOOT_MS)) {
      b.port.close();
      booting.splice(i, 1);
      continue;
    }
    b.port.postMessage(n);
  }
}

function drain(): void {
  // Node's receiveMessageOnPort takes a BroadcastChannel as well as a MessagePort.
  const receive = wt().receiveMessageOnPort as (port: MessagePort | BroadcastChannel) => { message: unknown } | undefined;
  if (inbox) for (let m = receive(inbox); m; m = receive(inbox)) heard(m.message as Note);
  const bc = join();
  for (let m = receive(bc); m; m = receive(bc)) heard(m.message as Note);
}

function errno(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** What a new worker thread needs to find this process's segments (see adoptRegistry). */
export interface RegistryHandoff {
  segments: [string, SharedArrayBuffer][];
  port: MessagePort;
  joined: SharedArrayBuffer;
}

/** @internal For a thread about to be started: the registry now, and a port for what comes next. */
export function registryForThread(): { data: RegistryHandoff; transfer: MessagePort[] } {
  join();
  drain();
  const { port1, port2 } = new (wt().MessageChannel)();
  const joined = new Int32Array(new SharedArrayBuffer(4));
  booting.push({ port: port1, joined, seen: 0, since: performance.now() });
  return { data: { segments: [...known], port: port2, joined: joined.buffer }, transfer: [port2] };
}

/** @internal In a new worker thread: take its starter's registry, join the channel, then say so. */
export function adoptRegistry(h: RegistryHandoff): void {
  for (const [name, sab] of h.segments) known.set(name, sab);
  join();
  inbox = h.port;
  inbox.on('message', (n: Note) => heard(n));
  inbox.unref();
  Atomics.store(new Int32Array(h.joined), 0, 1);
}

function normal(name: string): string {
  return name.startsWith('/') ? name : `/${name}`;
}

// Names made by segment.ts start with the creator's pid: `/mp-<pid base 36>-...`.
function creatorPid(name: string): number | undefined {
  const m = /^\/mp-([0-9a-z]+)-/.exec(name);
  return m ? parseInt(m[1]!, 36) : undefined;
}

/**
 * The error for a segment another process made: without the addon, no memory is shared between
 * processes. `what` says what was being done.
 */
export function crossProcessError(what: string): NativeUnavailableError {
  return new NativeUnavailableError(
    `${what}: memory shared between processes needs multiproc's native addon, which ${unavailableReason()}. ` +
      (nativeSupported
        ? 'To use it, build it: install a C++ compiler, make and python3 (Debian/Ubuntu: apt-get install g++ make python3; ' +
          'Fedora: dnf install gcc-c++ make python3; Alpine: apk add g++ make python3), then run: npm rebuild multiproc ' +
          '(and leave MULTIPROC_NATIVE unset). '
        : '') +
      'Without it, shared objects work between the threads of one process: ' +
      "use getContext('thread') (or ThreadPool) for the children that share them, " +
      "or between processes a Manager's objects (manager.Queue(), manager.Lock(), manager.Value(), ...)",
  );
}

let reason = 'is turned off here (MULTIPROC_NATIVE=0)';

/** @internal Why the addon is not in use, for messages. */
export function setUnavailableReason(r: string): void {
  reason = r;
}

/** @internal Why the addon is not in use, for messages ("is turned off here ..."). */
export function unavailableReason(): string {
  return reason;
}

// How long an opener waits for the notice of a segment of this process it does not know yet.
const LATE_NOTICE_MS = 500;

/** The addon's shmOpen, over the registry. */
export function shmOpen(rawName: string, size: number | undefined, create: boolean): SharedArrayBuffer {
  const name = normal(rawName);
  if (name.length > 255 || name.indexOf('/', 1) >= 0) throw errno('EINVAL', 'invalid name');
  if (create) {
    if (!Number.isInteger(size) || (size as number) < 1) throw errno('EINVAL', 'invalid size');
    drain();
    if (known.has(name)) throw errno('EEXIST', 'exists');
    let sab: SharedArrayBuffer;
    try {
      sab = new SharedArrayBuffer(size);
    } catch (err) {
      throw Object.assign(errno('ENOMEM', (err as Error).message), { cause: err });
    }
    known.set(name, sab);
    post({ name, sab });
    return sab;
  }
  let sab = known.get(name);
  if (!sab) {
    drain();
    sab = known.get(name);
  }
  if (sab) return sab;
  // A name of this process that is not known is gone, unless its notice is still on its way
  // (through the starter of this thread, see passOn); any other may be another process's.
  const pid = creatorPid(name);
  if (pid === process.pid && !gone.has(name)) {
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (const end = performance.now() + LATE_NOTICE_MS; !sab && performance.now() < end;) {
      Atomics.wait(pause, 0, 0, 2);
      drain();
      sab = known.get(name);
    }
    if (sab) return sab;
  }
  if (gone.has(name) || pid === process.pid) throw errno('ENOENT', 'no such segment');
  throw crossProcessError(
    pid === undefined
      ? `shared memory segment "${name}" does not exist in this process (another process may have made it)`
      : `shared memory segment "${name}" was made by process ${pid}`,
  );
}

/** The addon's shmUnlink: the name is gone from every thread's registry. */
export function shmUnlink(rawName: string): void {
  const name = normal(rawName);
  if (!known.has(name)) drain();
  if (!known.delete(name)) throw errno('ENOENT', 'no such segment');
  forget(name);
  post({ gone: name });
}

// Atomics.waitAsync (ES2024; in V8 since Node 16), typed here as the target library predates it.
type WaitAsync = (
  cells: Int32Array,
  index: number,
  value: number,
  timeoutMs?: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

// Pending asynchronous waits keep the process alive, as the addon's waiter threads do; a wait
// of the engine's own (Atomics.waitAsync) does not. Those started (directly or down a promise
// chain) within waitsWithoutKeepingAlive() do not.
let pendingWaits = 0;
let weak: import('node:async_hooks').AsyncLocalStorage<boolean> | undefined;

/** Run `f`; the asynchronous waits it starts, now or in the promises it chains, do not keep the process alive. */
export function waitsWithoutKeepingAlive<T>(f: () => T): T {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- only where a relay runs
  weak ??= new (require('node:async_hooks') as typeof import('node:async_hooks')).AsyncLocalStorage<boolean>();
  return weak.run(true, f);
}
let keeper: ReturnType<typeof setInterval> | undefined;
const cancels = new Map<number, () => void>();
let nextToken = 0;

function checkCell(cells: Int32Array, index: number): void {
  if (!(cells instanceof Int32Array) || !(cells.buffer instanceof SharedArrayBuffer))
    throw errno('ERR_MP_INVALID_ARG', 'cells must be an Int32Array over a SharedArrayBuffer');
  if (!Number.isInteger(index) || index < 0 || index >= cells.length)
    throw errno('ERR_MP_INVALID_ARG', `index ${String(index)} is outside the ${cells.length} cells`);
}

/** The addon's futexWait: Atomics.wait. */
export function futexWait(cells: Int32Array, index: number, expected: number, timeoutMs?: number): 'ok' | 'not-equal' | 'timed-out' {
  checkCell(cells, index);
  return Atomics.wait(cells, index, expected, timeoutMs);
}

/** The addon's futexWake: Atomics.notify (undefined: every waiter). */
export function futexWake(cells: Int32Array, index: number, count?: number): number {
  checkCell(cells, index);
  return Atomics.notify(cells, index, count);
}

/**
 * The addon's futexWaitIdle. The engine cannot tell whether this thread's event loop has
 * anything to do, so there is no short blocking wait here: always 'busy'.
 */
export function futexWaitIdle(cells: Int32Array, index: number): 'busy' {
  checkCell(cells, index);
  return 'busy';
}

/**
 * The addon's futexWaitAsync: Atomics.waitAsync. A cancel wakes every waiter on the cell (the
 * engine has no way to withdraw one wait); the others see a spurious wake and re-check their cell.
 */
export function futexWaitAsync(
  cells: Int32Array,
  index: number,
  expected: number,
  timeoutMs?: number,
): [Promise<'ok' | 'not-equal' | 'timed-out' | 'cancelled'>, number | undefined] {
  checkCell(cells, index);
  const r = waitAsync(cells, index, expected, timeoutMs);
  if (!r.async) return [Promise.resolve(r.value), undefined];
  const token = ++nextToken;
  let cancelled = false;
  cancels.set(token, () => {
    cancelled = true;
    Atomics.notify(cells, index);
  });
  const held = weak?.getStore() !== true;
  // One timer, referenced while any wait is pending: making one per wait costs a round trip ~10%.
  keeper ??= setInterval(() => undefined, 2 ** 31 - 1).unref();
  if (held && pendingWaits++ === 0) keeper.ref();
  const settled = r.value.then((outcome): 'ok' | 'timed-out' | 'cancelled' => {
    cancels.delete(token);
    if (held && --pendingWaits === 0) keeper?.unref();
    return cancelled ? 'cancelled' : outcome;
  });
  return [settled, token];
}

/** The addon's futexCancel. */
export function futexCancel(token: number): boolean {
  const cancel = cancels.get(token);
  cancels.delete(token);
  cancel?.();
  return cancel !== undefined;
}
