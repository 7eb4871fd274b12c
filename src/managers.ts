// Managers (Python: `multiprocessing.managers`): a server process holds shared objects, and
// proxies in any process — or on another machine — call their methods. The wire, the server and
// BaseProxy are in managers_proxy.ts; this module has BaseManager, SyncManager and its types.
import * as crypto from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';

import { Pipe, type Connection } from './connection.js';
import { AbortError, BrokenBarrierError, Empty, Full, InvalidArgumentError, ProcessError, TimeoutError } from './errors.js';
import type { Address, Authkey, Family } from './listener.js';
import { parentProcess, Process } from './process.js';
import { moduleOf, reduceFunction } from './whichmodule.js';
import {
  BaseProxy,
  callContext,
  channelFor,
  checkNoInlineFunctions,
  dropChannels,
  localReferent,
  makeProxy,
  proxyTypeKey,
  registerProxyType,
  Server,
  toModuleUrl,
  unwrapReply,
  type ProxyState,
  type ServerEntry,
  type ServerSpec,
} from './managers_proxy.js';

export { BaseProxy, makeProxyType, publicMethods, Server, type Token } from './managers_proxy.js';

// ---------------------------------------------------------------------------------------------
// Errors the shared containers raise, as Python's built-in ones.

/** A missing key (Python: `KeyError`). */
export class KeyError extends Error {
  override get name(): string {
    return 'KeyError';
  }
}
/** An index out of range (Python: `IndexError`). */
export class IndexError extends RangeError {
  override get name(): string {
    return 'IndexError';
  }
}
/** A value not found or not allowed (Python: `ValueError`). */
export class ValueError extends Error {
  override get name(): string {
    return 'ValueError';
  }
}

// ---------------------------------------------------------------------------------------------
// Waiting inside the server.

class WaitList {
  readonly #w = new Set<() => void>();
  wake(): void {
    for (const f of [...this.#w]) f();
  }
  /** true when woken, false at the deadline; rejects with AbortError when `signal` aborts. */
  wait(deadline: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    if (deadline <= performance.now()) return Promise.resolve(false);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        this.#w.delete(wake);
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const wake = (): void => (done(), resolve(true));
      const onAbort = (): void => (done(), reject(new AbortError(undefined, { cause: signal.reason })));
      this.#w.add(wake);
      if (deadline !== Infinity) timer = setTimeout(() => (done(), resolve(false)), Math.max(0, deadline - performance.now()));
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function deadlineOf(timeout: number | null | undefined): number {
  if (timeout === undefined || timeout === null) return Infinity;
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw new InvalidArgumentError('timeout must be a number of milliseconds');
  return performance.now() + Math.max(0, timeout);
}

/** Wait until `claim()` returns true (it runs synchronously, so checking and taking is atomic). */
async function until(claim: () => boolean, list: WaitList, deadline: number, signal: AbortSignal): Promise<boolean> {
  while (!claim()) {
    if (!(await list.wait(deadline, signal))) return claim();
  }
  return true;
}

/** Options of a remote call that waits; `signal` asks the server to stop waiting. */
export interface ProxyWaitOptions {
  block?: boolean;
  timeout?: number;
  signal?: AbortSignal;
}

function blockAndDeadline(options: ProxyWaitOptions | undefined): { block: boolean; deadline: number } {
  const block = options?.block ?? true;
  return { block, deadline: block ? deadlineOf(options?.timeout) : 0 };
}

// ---------------------------------------------------------------------------------------------
// The shared objects a SyncManager serves (they live in the server process).

type Key = string | number | bigint | boolean | null | undefined;
function checkKey(k: unknown): Key {
  if (k !== null && typeof k === 'object') throw new TypeError(`unhashable type: a dict key must be a primitive (string, number, bigint, boolean, null), got ${Array.isArray(k) ? 'an array' : 'an object'}`);
  if (typeof k === 'function' || typeof k === 'symbol') throw new TypeError(`unhashable type: ${typeof k}`);
  return k as Key;
}

function entriesOf(init: unknown, what: string): [unknown, unknown][] {
  if (init === undefined || init === null) return [];
  if (init instanceof Map) return [...init];
  if (Array.isArray(init)) {
    return init.map((p, i) => {
      if (!Array.isArray(p) || p.length !== 2) throw new TypeError(`${what}: element ${i} of the sequence is not a [key, value] pair`);
      return [p[0], p[1]];
    });
  }
  if (typeof init === 'object') return Object.entries(init);
  throw new TypeError(`${what}: expected a Map, an object or an array of [key, value] pairs`);
}

/** The dict a SyncManager serves: a Map with Python's dict methods. */
export class ManagedDict {
  readonly #m = new Map<Key, unknown>();
  constructor(init?: unknown) {
    this.update(init);
  }
  get(key: unknown, dflt?: unknown): unknown {
    const k = checkKey(key);
    return this.#m.has(k) ? this.#m.get(k) : dflt;
  }
  getItem(key: unknown): unknown {
    const k = checkKey(key);
    if (!this.#m.has(k)) throw new KeyError(String(describe(k)));
    return this.#m.get(k);
  }
  set(key: unknown, value: unknown): void {
    this.#m.set(checkKey(key), value);
  }
  delete(key: unknown): boolean {
    return this.#m.delete(checkKey(key));
  }
  has(key: unknown): boolean {
    return this.#m.has(checkKey(key));
  }
  keys(): Key[] {
    return [...this.#m.keys()];
  }
  values(): unknown[] {
    return [...this.#m.values()];
  }
  items(): [Key, unknown][] {
    return [...this.#m.entries()];
  }
  update(other?: unknown): void {
    for (const [k, v] of entriesOf(other, 'update')) this.#m.set(checkKey(k), v);
  }
  pop(key: unknown, ...dflt: unknown[]): unknown {
    const k = checkKey(key);
    if (this.#m.has(k)) {
      const v = this.#m.get(k);
      this.#m.delete(k);
      return v;
    }
    if (dflt.length) return dflt[0];
    throw new KeyError(String(describe(k)));
  }
  popitem(): [Key, unknown] {
    const last = [...this.#m.keys()].at(-1);
    if (this.#m.size === 0) throw new KeyError('popitem(): dictionary is empty');
    const v = this.#m.get(last);
    this.#m.delete(last);
    return [last, v];
  }
  setdefault(key: unknown, dflt?: unknown): unknown {
    const k = checkKey(key);
    if (!this.#m.has(k)) this.#m.set(k, dflt);
    return this.#m.get(k);
  }
  clear(): void {
    this.#m.clear();
  }
  copy(): Map<Key, unknown> {
    return new Map(this.#m);
  }
  toObject(): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (const [k, v] of this.#m) o[String(k)] = v;
    return o;
  }
  len(): number {
    return this.#m.size;
  }
  _getvalue(): Map<Key, unknown> {
    return this.copy();
  }
}

function describe(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : typeof v === 'bigint' ? `${v}n` : String(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'string') return 'str';
  return typeof v === 'object' ? ((v as object).constructor?.name ?? 'object') : typeof v;
}

/** Python's `<` for sorting: numbers with numbers, strings with strings, arrays element-wise. */
export function pyCompare(a: unknown, b: unknown): number {
  const num = (x: unknown): boolean => typeof x === 'number' || typeof x === 'bigint' || typeof x === 'boolean';
  if (num(a) && num(b)) {
    const x = typeof a === 'boolean' ? Number(a) : (a as number | bigint);
    const y = typeof b === 'boolean' ? Number(b) : (b as number | bigint);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = pyCompare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  throw new TypeError(`'<' not supported between instances of '${typeName(a)}' and '${typeName(b)}'`);
}

function normIndex(i: unknown, len: number, what: string): number {
  if (typeof i !== 'number' || !Number.isInteger(i)) throw new TypeError(`${what}: indices must be integers, got ${typeName(i)}`);
  const j = i < 0 ? i + len : i;
  if (j < 0 || j >= len) throw new IndexError(`${what}: index out of range`);
  return j;
}

/** The list a SyncManager serves: an array with Python's list methods. */
export class ManagedList {
  #a: unknown[];
  constructor(init?: Iterable<unknown>) {
    this.#a = init === undefined || init === null ? [] : [...init];
  }
  append(x: unknown): void {
    this.#a.push(x);
  }
  extend(xs: Iterable<unknown>): void {
    for (const x of xs) this.#a.push(x);
  }
  insert(i: number, x: unknown): void {
    if (!Number.isInteger(i)) throw new TypeError('insert(i, x): i must be an integer');
    const n = this.#a.length;
    const j = i < 0 ? Math.max(0, n + i) : Math.min(i, n);
    this.#a.splice(j, 0, x);
  }
  pop(i = -1): unknown {
    if (this.#a.length === 0) throw new IndexError('pop from empty list');
    const j = normIndex(i, this.#a.length, 'pop');
    return this.#a.splice(j, 1)[0];
  }
  remove(x: unknown): void {
    const i = this.#a.findIndex((y) => isDeepStrictEqual(y, x));
    if (i < 0) throw new ValueError('list.remove(x): x not in list');
    this.#a.splice(i, 1);
  }
  index(x: unknown, start = 0, stop = this.#a.length): number {
    const n = this.#a.length;
    const s = start < 0 ? Math.max(0, n + start) : start;
    const e = stop < 0 ? n + stop : Math.min(stop, n);
    for (let i = s; i < e; i++) if (isDeepStrictEqual(this.#a[i], x)) return i;
    throw new ValueError(`${describe(x)} is not in list`);
  }
  count(x: unknown): number {
    return this.#a.filter((y) => isDeepStrictEqual(y, x)).length;
  }
  sort(options: { key?: (x: unknown) => unknown; reverse?: boolean } = {}): void {
    const { key, reverse = false } = options ?? {};
    const decorated = this.#a.map((v, i) => ({ v, k: key ? key(v) : v, i }));
    decorated.sort((p, q) => (reverse ? pyCompare(q.k, p.k) : pyCompare(p.k, q.k)) || p.i - q.i);
    this.#a = decorated.map((d) => d.v);
  }
  reverse(): void {
    this.#a.reverse();
  }
  slice(start?: number, end?: number): unknown[] {
    return this.#a.slice(start, end);
  }
  at(i: number): unknown {
    return this.#a.at(i);
  }
  get(i: number): unknown {
    return this.#a[normIndex(i, this.#a.length, 'list index')];
  }
  set(i: number, x: unknown): void {
    this.#a[normIndex(i, this.#a.length, 'list assignment index')] = x;
  }
  delete(i: number): void {
    this.#a.splice(normIndex(i, this.#a.length, 'list assignment index'), 1);
  }
  clear(): void {
    this.#a = [];
  }
  copy(): unknown[] {
    return [...this.#a];
  }
  len(): number {
    return this.#a.length;
  }
  _getvalue(): unknown[] {
    return this.copy();
  }
}

/** The Namespace a SyncManager serves: named attributes. */
export class ManagedNamespace {
  readonly #o: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  constructor(init?: Record<string, unknown>) {
    if (init) for (const [k, v] of Object.entries(init)) this.#o[k] = v;
  }
  get(name: string): unknown {
    return this.#o[String(name)];
  }
  set(name: string, value: unknown): void {
    this.#o[String(name)] = value;
  }
  delete(name: string): boolean {
    const had = String(name) in this.#o;
    delete this.#o[String(name)];
    return had;
  }
  has(name: string): boolean {
    return String(name) in this.#o;
  }
  toObject(): Record<string, unknown> {
    return { ...this.#o };
  }
  _getvalue(): Record<string, unknown> {
    return this.toObject();
  }
}

/** The Value a SyncManager serves (Python: `managers.Value`): a typecode and any value. */
export class ManagedValue {
  readonly #typecode: string;
  #value: unknown;
  constructor(typecode: string, value: unknown) {
    this.#typecode = typecode;
    this.#value = value;
  }
  get(): unknown {
    return this.#value;
  }
  set(value: unknown): void {
    this.#value = value;
  }
  typecode(): string {
    return this.#typecode;
  }
  _getvalue(): unknown {
    return this.#value;
  }
}

const TYPED: Record<string, (new (n: number) => ArrayLike<number | bigint> & { [i: number]: number | bigint }) | undefined> = {
  b: Int8Array, B: Uint8Array, h: Int16Array, H: Uint16Array, i: Int32Array, I: Uint32Array,
  l: BigInt64Array, L: BigUint64Array, q: BigInt64Array, Q: BigUint64Array, f: Float32Array, d: Float64Array,
} as never;

/** The Array a SyncManager serves (Python: `array.array` in the server). */
export class ManagedArray {
  readonly #typecode: string;
  readonly #a: { length: number; [i: number]: unknown };
  constructor(typecode: string, init: number | Iterable<unknown>) {
    const T = TYPED[typecode];
    if (!T && typecode !== 'c' && typecode !== 'u') throw new ValueError(`bad typecode '${typecode}' (must be b, B, h, H, i, I, l, L, q, Q, f, d, c or u)`);
    this.#typecode = typecode;
    const values = typeof init === 'number' ? undefined : [...init];
    const n = typeof init === 'number' ? init : values!.length;
    if (!Number.isInteger(n) || n < 0) throw new ValueError('Array size must be an integer >= 0');
    this.#a = T ? new T(n) : new Array<string>(n).fill(typecode === 'c' ? '\0' : '');
    if (values) values.forEach((v, i) => this.set(i, v));
  }
  #encode(v: unknown): unknown {
    const c = this.#typecode;
    if (c === 'c' || c === 'u') {
      if (typeof v !== 'string' || [...v].length !== 1) throw new TypeError(`array item must be a 1-character string for typecode '${c}'`);
      return v;
    }
    if ('lLqQ'.includes(c)) {
      if (typeof v === 'bigint') return v;
      if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
      throw new TypeError(`array item must be an integer for typecode '${c}'`);
    }
    if (typeof v !== 'number') throw new TypeError(`array item must be a number for typecode '${c}', got ${typeName(v)}`);
    if (c !== 'f' && c !== 'd' && !Number.isInteger(v)) throw new TypeError(`integer argument expected for typecode '${c}', got float`);
    return v;
  }
  len(): number {
    return this.#a.length;
  }
  get(i: number): unknown {
    return this.#a[normIndex(i, this.#a.length, 'array index')];
  }
  set(i: number, v: unknown): void {
    this.#a[normIndex(i, this.#a.length, 'array assignment index')] = this.#encode(v);
  }
  slice(start?: number, end?: number): unknown[] {
    return Array.prototype.slice.call(this.#a, start, end);
  }
  toArray(): unknown[] {
    return Array.from(this.#a as ArrayLike<unknown>);
  }
  typecode(): string {
    return this.#typecode;
  }
  _getvalue(): unknown[] {
    return this.toArray();
  }
}

// Locks. Ownership is per caller (a connection: one process or thread), as Python's server
// serves each client thread on a thread of its own.
interface Owned {
  _isOwned(caller: string): boolean;
  _releaseSave(caller: string): unknown;
  _acquireRestore(caller: string, saved: unknown, signal: AbortSignal): Promise<void>;
}

/** The Lock a SyncManager serves. Any caller may release it, as Python's `threading.Lock`. */
export class ManagedLock implements Owned {
  #holder: string | null = null;
  readonly #list = new WaitList();
  #claim(caller: string): boolean {
    if (this.#holder !== null) return false;
    this.#holder = caller;
    return true;
  }
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    const { caller, signal } = callContext();
    const { block, deadline } = blockAndDeadline(options);
    if (this.#claim(caller)) return true;
    if (!block) return false;
    return until(() => this.#claim(caller), this.#list, deadline, signal);
  }
  release(): void {
    if (this.#holder === null) throw new ValueError('release unlocked lock');
    this.#holder = null;
    this.#list.wake();
  }
  locked(): boolean {
    return this.#holder !== null;
  }
  _isOwned(caller: string): boolean {
    return this.#holder === caller;
  }
  _releaseSave(_caller: string): unknown {
    this.release();
    return null;
  }
  async _acquireRestore(caller: string, _saved: unknown, signal: AbortSignal): Promise<void> {
    await until(() => this.#claim(caller), this.#list, Infinity, signal);
  }
}

/** The RLock a SyncManager serves: reentrant for its owner (a process or thread). */
export class ManagedRLock implements Owned {
  #owner: string | null = null;
  #count = 0;
  readonly #list = new WaitList();
  #claim(caller: string, count = 1): boolean {
    if (this.#owner === caller) {
      this.#count += count;
      return true;
    }
    if (this.#owner !== null) return false;
    this.#owner = caller;
    this.#count = count;
    return true;
  }
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    const { caller, signal } = callContext();
    const { block, deadline } = blockAndDeadline(options);
    if (this.#claim(caller)) return true;
    if (!block) return false;
    return until(() => this.#claim(caller), this.#list, deadline, signal);
  }
  release(): void {
    const { caller } = callContext();
    if (this.#owner !== caller) throw new ProcessError('cannot release un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    if (--this.#count === 0) {
      this.#owner = null;
      this.#list.wake();
    }
  }
  _isOwned(caller: string): boolean {
    return this.#owner === caller;
  }
  _releaseSave(_caller: string): unknown {
    const count = this.#count;
    this.#owner = null;
    this.#count = 0;
    this.#list.wake();
    return count;
  }
  async _acquireRestore(caller: string, saved: unknown, signal: AbortSignal): Promise<void> {
    await until(() => this.#owner === null && this.#claim(caller, saved as number), this.#list, Infinity, signal);
  }
}

/** The Semaphore a SyncManager serves. */
export class ManagedSemaphore {
  #value: number;
  readonly #list = new WaitList();
  constructor(value = 1) {
    if (!Number.isInteger(value) || value < 0) throw new ValueError('semaphore initial value must be an integer >= 0');
    this.#value = value;
  }
  #claim(): boolean {
    if (this.#value <= 0) return false;
    this.#value--;
    return true;
  }
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    const { signal } = callContext();
    const { block, deadline } = blockAndDeadline(options);
    if (this.#claim()) return true;
    if (!block) return false;
    return until(() => this.#claim(), this.#list, deadline, signal);
  }
  release(n = 1): void {
    if (!Number.isInteger(n) || n < 1) throw new ValueError('n must be one or more');
    this.#value += n;
    this.#list.wake();
  }
  getValue(): number {
    return this.#value;
  }
}

/** The BoundedSemaphore a SyncManager serves: releasing above the initial value is an error. */
export class ManagedBoundedSemaphore extends ManagedSemaphore {
  readonly #initial: number;
  constructor(value = 1) {
    super(value);
    this.#initial = value;
  }
  override release(n = 1): void {
    if (this.getValue() + n > this.#initial) throw new ValueError('Semaphore released too many times');
    super.release(n);
  }
}

/** The Condition a SyncManager serves, over a shared Lock or RLock (a new RLock by default). */
export class ManagedCondition {
  readonly #lock: ManagedLock | ManagedRLock;
  readonly #waiters = new Set<{ notified: boolean; wake: () => void }>();
  constructor(lock?: unknown) {
    const ref = lock === undefined || lock === null ? new ManagedRLock() : (localReferent(lock) ?? lock);
    if (!(ref instanceof ManagedLock || ref instanceof ManagedRLock)) throw new TypeError('Condition(lock): lock must be a Lock or RLock of the same manager');
    this.#lock = ref;
  }
  acquire(options?: ProxyWaitOptions): boolean | Promise<boolean> {
    return this.#lock.acquire(options);
  }
  release(): void {
    this.#lock.release();
  }
  async wait(timeout?: number | null): Promise<boolean> {
    const ctx = callContext();
    const { caller, signal } = ctx;
    if (!this.#lock._isOwned(caller)) throw new ProcessError('cannot wait on un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    const deadline = deadlineOf(timeout);
    const saved = this.#lock._releaseSave(caller);
    const list = new WaitList();
    const w = { notified: false, wake: () => list.wake() };
    this.#waiters.add(w);
    let error: unknown;
    try {
      await until(() => w.notified, list, deadline, signal);
    } catch (err) {
      error = err;
    } finally {
      this.#waiters.delete(w);
    }
    // As Python's: the lock is held again when wait returns, also after a timeout or an abort
    // (unless the caller is gone).
    if (!ctx.gone) await this.#lock._acquireRestore(caller, saved, new AbortController().signal);
    if (error) throw error;
    return w.notified;
  }
  notify(n = 1): void {
    const { caller } = callContext();
    if (!this.#lock._isOwned(caller)) throw new ProcessError('cannot notify on un-acquired lock', { code: 'ERR_MP_NOT_OWNER' });
    for (const w of this.#waiters) {
      if (n <= 0) break;
      if (w.notified) continue;
      w.notified = true;
      w.wake();
      n--;
    }
  }
  notifyAll(): void {
    this.notify(Infinity);
  }
}

/** The Event a SyncManager serves. */
export class ManagedEvent {
  #flag = false;
  readonly #list = new WaitList();
  isSet(): boolean {
    return this.#flag;
  }
  set(): void {
    this.#flag = true;
    this.#list.wake();
  }
  clear(): void {
    this.#flag = false;
  }
  wait(timeout?: number | null): boolean | Promise<boolean> {
    if (this.#flag) return true;
    return until(() => this.#flag, this.#list, deadlineOf(timeout), callContext().signal);
  }
}

/** The Barrier a SyncManager serves (Python: `threading.Barrier`). */
export class ManagedBarrier {
  readonly #parties: number;
  readonly #action: (() => unknown) | null;
  readonly #timeout: number | null;
  #count = 0;
  #generation = 0;
  #broken = false;
  readonly #brokenGenerations = new Set<number>();
  readonly #list = new WaitList();
  constructor(parties: number, action?: (() => unknown) | null, timeout?: number | null) {
    if (!Number.isInteger(parties) || parties < 1) throw new ValueError('parties must be an integer >= 1');
    this.#parties = parties;
    this.#action = action ?? null;
    this.#timeout = timeout ?? null;
  }
  async wait(timeout?: number | null): Promise<number> {
    const { signal } = callContext();
    if (this.#broken) throw new BrokenBarrierError();
    const gen = this.#generation;
    const index = this.#count++;
    if (index === this.#parties - 1) {
      try {
        if (this.#action) await this.#action();
      } catch (err) {
        this.#break();
        throw err;
      }
      this.#count = 0;
      this.#generation++;
      this.#list.wake();
      return index;
    }
    let ok: boolean;
    try {
      ok = await until(() => this.#generation !== gen || this.#broken, this.#list, deadlineOf(timeout ?? this.#timeout), signal);
    } catch (err) {
      if (this.#generation === gen) this.#break();
      throw err;
    }
    if (this.#generation !== gen && !this.#brokenGenerations.has(gen)) return index;
    if (!ok) this.#break();
    throw new BrokenBarrierError();
  }
  #break(): void {
    this.#broken = true;
    this.#brokenGenerations.add(this.#generation);
    this.#count = 0;
    this.#list.wake();
  }
  reset(): void {
    if (this.#count > 0) {
      this.#brokenGenerations.add(this.#generation);
      this.#generation++;
    }
    this.#count = 0;
    this.#broken = false;
    this.#list.wake();
  }
  abort(): void {
    this.#break();
  }
  parties(): number {
    return this.#parties;
  }
  nWaiting(): number {
    return this.#count;
  }
  broken(): boolean {
    return this.#broken;
  }
}

/** The Queue a SyncManager serves (Python: `queue.Queue` in the server). */
export class ManagedQueue {
  readonly #items: unknown[] = [];
  readonly #maxsize: number;
  readonly #notEmpty = new WaitList();
  readonly #notFull = new WaitList();
  constructor(maxsize = 0) {
    if (!Number.isInteger(maxsize)) throw new ValueError('maxsize must be an integer');
    this.#maxsize = maxsize;
  }
  #isFull(): boolean {
    return this.#maxsize > 0 && this.#items.length >= this.#maxsize;
  }
  #push(item: unknown): void {
    this.#items.push(item);
    this._added();
    this.#notEmpty.wake();
  }
  /** @internal */
  _added(): void {}
  put(item: unknown, options?: ProxyWaitOptions): void | Promise<void> {
    const { block, deadline } = blockAndDeadline(options);
    if (!this.#isFull()) return this.#push(item);
    if (!block) throw new Full();
    return until(() => !this.#isFull(), this.#notFull, deadline, callContext().signal).then((ok) => {
      if (!ok) throw new Full();
      this.#push(item);
    });
  }
  putNowait(item: unknown): void {
    void this.put(item, { block: false });
  }
  get(options?: ProxyWaitOptions): unknown {
    const { block, deadline } = blockAndDeadline(options);
    const take = (): unknown => {
      const v = this.#items.shift();
      this.#notFull.wake();
      return v;
    };
    if (this.#items.length) return take();
    if (!block) throw new Empty();
    return until(() => this.#items.length > 0, this.#notEmpty, deadline, callContext().signal).then((ok) => {
      if (!ok) throw new Empty();
      return take();
    });
  }
  getNowait(): unknown {
    return this.get({ block: false });
  }
  qsize(): number {
    return this.#items.length;
  }
  empty(): boolean {
    return this.#items.length === 0;
  }
  full(): boolean {
    return this.#isFull();
  }
}

/** The JoinableQueue a SyncManager serves. */
export class ManagedJoinableQueue extends ManagedQueue {
  #unfinished = 0;
  readonly #allDone = new WaitList();
  override _added(): void {
    this.#unfinished++;
  }
  taskDone(): void {
    if (this.#unfinished <= 0) throw new ValueError('task_done() called too many times');
    if (--this.#unfinished === 0) this.#allDone.wake();
  }
  join(timeout?: number | null): boolean | Promise<boolean> {
    if (this.#unfinished === 0) return true;
    return until(() => this.#unfinished === 0, this.#allDone, deadlineOf(timeout), callContext().signal);
  }
}

// ---------------------------------------------------------------------------------------------
// Proxies of the SyncManager types. Every method is a remote call and returns a Promise.

function splitSignal<T extends { signal?: AbortSignal }>(options: T | undefined): [Omit<T, 'signal'> | undefined, { signal?: AbortSignal }] {
  if (!options || typeof options !== 'object') return [options, {}];
  const { signal, ...rest } = options;
  return [rest as Omit<T, 'signal'>, { signal }];
}

/** Proxy of a shared dict. Keys are primitives (1 and '1' are different keys, as in Python). */
export class DictProxy<K extends Key = Key, V = unknown> extends BaseProxy {
  /** The value at `key`, or `dflt` (undefined) when missing (Python: `d.get(k, default)`). */
  get(key: K, dflt?: V): Promise<V | undefined> {
    return this._callmethod('get', dflt === undefined ? [key] : [key, dflt]);
  }
  /** The value at `key` (Python: `d[k]`). Rejects with KeyError when missing. */
  getItem(key: K): Promise<V> {
    return this._callmethod('getItem', [key]);
  }
  /** Python: `d[k] = v`. */
  set(key: K, value: V): Promise<void> {
    return this._callmethod('set', [key, value]);
  }
  /** Python: `del d[k]`; resolves whether the key was there. */
  delete(key: K): Promise<boolean> {
    return this._callmethod('delete', [key]);
  }
  /** Python: `k in d`. */
  has(key: K): Promise<boolean> {
    return this._callmethod('has', [key]);
  }
  keys(): Promise<K[]> {
    return this._callmethod('keys');
  }
  values(): Promise<V[]> {
    return this._callmethod('values');
  }
  items(): Promise<[K, V][]> {
    return this._callmethod('items');
  }
  /** Merge a Map, an object or [key, value] pairs. */
  update(other: Map<K, V> | Record<string, V> | [K, V][]): Promise<void> {
    return this._callmethod('update', [other]);
  }
  /** Remove `key` and resolve its value; `dflt` when missing, else rejects with KeyError. */
  pop(key: K, ...dflt: [V?]): Promise<V> {
    return this._callmethod('pop', [key, ...dflt]);
  }
  /** Remove and resolve the last inserted [key, value]; KeyError when empty. */
  popitem(): Promise<[K, V]> {
    return this._callmethod('popitem');
  }
  setdefault(key: K, dflt?: V): Promise<V> {
    return this._callmethod('setdefault', [key, dflt]);
  }
  clear(): Promise<void> {
    return this._callmethod('clear');
  }
  /** A copy, as a Map. */
  copy(): Promise<Map<K, V>> {
    return this._callmethod('copy');
  }
  /** A copy as a plain object (keys become strings). */
  toObject(): Promise<Record<string, V>> {
    return this._callmethod('toObject');
  }
  /** Python: `len(d)`. */
  len(): Promise<number> {
    return this._callmethod('len');
  }
  /** The keys, as Python iterates a dict (a snapshot taken when the loop starts). */
  async *[Symbol.asyncIterator](): AsyncGenerator<K, void, undefined> {
    yield* await this.keys();
  }
}

/** Proxy of a shared list. */
export class ListProxy<T = unknown> extends BaseProxy {
  append(x: T): Promise<void> {
    return this._callmethod('append', [x]);
  }
  extend(xs: Iterable<T>): Promise<void> {
    return this._callmethod('extend', [[...xs]]);
  }
  insert(i: number, x: T): Promise<void> {
    return this._callmethod('insert', [i, x]);
  }
  /** Remove and resolve the item at `i` (default the last); IndexError when out of range. */
  pop(i?: number): Promise<T> {
    return this._callmethod('pop', i === undefined ? [] : [i]);
  }
  /** Remove the first item equal to `x` (deep equality); ValueError when there is none. */
  remove(x: T): Promise<void> {
    return this._callmethod('remove', [x]);
  }
  index(x: T, start?: number, stop?: number): Promise<number> {
    return this._callmethod('index', [x, ...(start === undefined ? [] : [start]), ...(stop === undefined ? [] : [stop])]);
  }
  count(x: T): Promise<number> {
    return this._callmethod('count', [x]);
  }
  /** Sort in the server with Python's ordering; `key` must be an exported function of a module the server trusts. */
  sort(options: { reverse?: boolean; key?: (x: T) => unknown } = {}): Promise<void> {
    return this._callmethod('sort', [options]);
  }
  reverse(): Promise<void> {
    return this._callmethod('reverse');
  }
  slice(start?: number, end?: number): Promise<T[]> {
    return this._callmethod('slice', [start, end]);
  }
  /** Python: `l[i]` with negative indices, undefined when out of range (as Array.at). */
  at(i: number): Promise<T | undefined> {
    return this._callmethod('at', [i]);
  }
  /** Python: `l[i]`; IndexError when out of range. */
  get(i: number): Promise<T> {
    return this._callmethod('get', [i]);
  }
  /** Python: `l[i] = x`; IndexError when out of range. */
  set(i: number, x: T): Promise<void> {
    return this._callmethod('set', [i, x]);
  }
  /** Python: `del l[i]`. */
  delete(i: number): Promise<void> {
    return this._callmethod('delete', [i]);
  }
  clear(): Promise<void> {
    return this._callmethod('clear');
  }
  /** A copy, as an array. */
  copy(): Promise<T[]> {
    return this._callmethod('copy');
  }
  len(): Promise<number> {
    return this._callmethod('len');
  }
  /** The items (a snapshot taken when the loop starts). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    yield* await this.copy();
  }
}

/** Proxy of a shared Namespace: `await ns.get('x')`, `await ns.set('x', 1)`. */
export class NamespaceProxy extends BaseProxy {
  get<T = unknown>(name: string): Promise<T> {
    return this._callmethod('get', [name]);
  }
  set(name: string, value: unknown): Promise<void> {
    return this._callmethod('set', [name, value]);
  }
  delete(name: string): Promise<boolean> {
    return this._callmethod('delete', [name]);
  }
  has(name: string): Promise<boolean> {
    return this._callmethod('has', [name]);
  }
  toObject(): Promise<Record<string, unknown>> {
    return this._callmethod('toObject');
  }
}

/** Proxy of a shared Value: `await v.get()`, `await v.set(x)`. */
export class ValueProxy<T = unknown> extends BaseProxy {
  get(): Promise<T> {
    return this._callmethod('get');
  }
  set(value: T): Promise<void> {
    return this._callmethod('set', [value]);
  }
}

/** Proxy of a shared Array. */
export class ArrayProxy<T = number> extends BaseProxy {
  len(): Promise<number> {
    return this._callmethod('len');
  }
  get(i: number): Promise<T> {
    return this._callmethod('get', [i]);
  }
  set(i: number, value: T): Promise<void> {
    return this._callmethod('set', [i, value]);
  }
  slice(start?: number, end?: number): Promise<T[]> {
    return this._callmethod('slice', [start, end]);
  }
  toArray(): Promise<T[]> {
    return this._callmethod('toArray');
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    yield* await this.toArray();
  }
}

/** Proxy of a shared Lock, RLock, Semaphore or BoundedSemaphore (Python: `AcquirerProxy`). */
export class AcquirerProxy extends BaseProxy {
  /** Resolves true once acquired; false with `{ block: false }` or after `timeout` ms. */
  acquire(options?: ProxyWaitOptions): Promise<boolean> {
    const [rest, opts] = splitSignal(options);
    return this._callmethod('acquire', rest === undefined ? [] : [rest], opts);
  }
  release(): Promise<void> {
    return this._callmethod('release');
  }
  /** Python's `with lock:` — acquire, run `fn`, release (also when it throws). */
  async withLock<T>(fn: () => T | Promise<T>, options?: ProxyWaitOptions): Promise<T> {
    if (!(await this.acquire(options))) throw new TimeoutError(`not acquired within ${options?.timeout ?? 0} ms`);
    try {
      return await fn();
    } finally {
      await this.release();
    }
  }
  /** Acquire, for `await using _ = await lock.guard()`: released at the end of the block. */
  async guard(options?: ProxyWaitOptions): Promise<AsyncDisposable> {
    if (!(await this.acquire(options))) throw new TimeoutError(`not acquired within ${options?.timeout ?? 0} ms`);
    return { [Symbol.asyncDispose]: () => this.release() };
  }
}

/** Proxy of a shared Semaphore. */
export class SemaphoreProxy extends AcquirerProxy {
  override release(n = 1): Promise<void> {
    return this._callmethod('release', [n]);
  }
  getValue(): Promise<number> {
    return this._callmethod('getValue');
  }
}

/** Proxy of a shared Condition. */
export class ConditionProxy extends AcquirerProxy {
  /** Release the lock, wait for a notify or `timeout` ms, re-acquire; resolves false on timeout. */
  wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    return this._callmethod('wait', [timeout ?? null], options);
  }
  /** Wait until `predicate()` (run here) is truthy, as Python's `wait_for`. */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number | null): Promise<T> {
    const end = timeout === undefined || timeout === null ? Infinity : performance.now() + timeout;
    let r = await predicate();
    while (!r) {
      const left = end - performance.now();
      if (left <= 0) break;
      await this.wait(end === Infinity ? null : left);
      r = await predicate();
    }
    return r;
  }
  notify(n = 1): Promise<void> {
    return this._callmethod('notify', [n]);
  }
  notifyAll(): Promise<void> {
    return this._callmethod('notifyAll');
  }
}

/** Proxy of a shared Event. */
export class EventProxy extends BaseProxy {
  isSet(): Promise<boolean> {
    return this._callmethod('isSet');
  }
  set(): Promise<void> {
    return this._callmethod('set');
  }
  clear(): Promise<void> {
    return this._callmethod('clear');
  }
  wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    return this._callmethod('wait', [timeout ?? null], options);
  }
}

/** Proxy of a shared Barrier; `parties`, `nWaiting` and `broken` resolve the server's values. */
export class BarrierProxy extends BaseProxy {
  wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<number> {
    return this._callmethod('wait', [timeout ?? null], options);
  }
  abort(): Promise<void> {
    return this._callmethod('abort');
  }
  reset(): Promise<void> {
    return this._callmethod('reset');
  }
  get parties(): Promise<number> {
    return this._callmethod('parties');
  }
  get nWaiting(): Promise<number> {
    return this._callmethod('nWaiting');
  }
  get broken(): Promise<boolean> {
    return this._callmethod('broken');
  }
}

/** Proxy of a shared Queue. Empty and Full are the library's classes, as from a local Queue. */
export class QueueProxy<T = unknown> extends BaseProxy {
  put(item: T, options?: ProxyWaitOptions): Promise<void> {
    const [rest, opts] = splitSignal(options);
    return this._callmethod('put', rest === undefined ? [item] : [item, rest], opts);
  }
  get(options?: ProxyWaitOptions): Promise<T> {
    const [rest, opts] = splitSignal(options);
    return this._callmethod('get', rest === undefined ? [] : [rest], opts);
  }
  putNowait(item: T): Promise<void> {
    return this._callmethod('putNowait', [item]);
  }
  getNowait(): Promise<T> {
    return this._callmethod('getNowait');
  }
  qsize(): Promise<number> {
    return this._callmethod('qsize');
  }
  empty(): Promise<boolean> {
    return this._callmethod('empty');
  }
  full(): Promise<boolean> {
    return this._callmethod('full');
  }
}

/** Proxy of a shared JoinableQueue. */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  taskDone(): Promise<void> {
    return this._callmethod('taskDone');
  }
  /** Resolves true once every item put was marked done; false after `timeout` ms. */
  join(timeout?: number | null): Promise<boolean> {
    return this._callmethod('join', [timeout ?? null]);
  }
}

for (const [tag, cls] of Object.entries({
  DictProxy, ListProxy, NamespaceProxy, ValueProxy, ArrayProxy, AcquirerProxy, SemaphoreProxy, ConditionProxy, EventProxy, BarrierProxy, QueueProxy, JoinableQueueProxy,
})) {
  registerProxyType(`multiproc.${tag}`, cls);
}

/** The type of an auto-made proxy of `T`: its methods, each returning a Promise. */
export type Proxied<T> = BaseProxy & {
  [K in keyof T as K extends `_${string}` ? never : T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

// ---------------------------------------------------------------------------------------------
// BaseManager.

/** Options of `BaseManager.register` (Python's keyword arguments). */
export interface RegisterOptions {
  /** Method names proxies may call; default: the referent's public methods. */
  exposed?: readonly string[] | null;
  /** Methods whose result stays in the server and comes back as a proxy of this type id. */
  methodToTypeid?: Record<string, string> | null;
  /** The proxy class (a BaseProxy subclass, exported); default: one made from `exposed`. */
  proxytype?: (new (...args: never[]) => BaseProxy) | null;
  /** Add a method `typeid(...args)` to the manager class. Default true. */
  createMethod?: boolean;
}

interface RegistryEntry {
  typeid: string;
  callable: Function | null;
  exposed: string[] | null;
  methodToTypeid: Record<string, string> | null;
  proxytype: Function | null;
}

/** Options of `new BaseManager(...)`. */
export interface ManagerOptions {
  /** `[host, port]` (TCP) or a socket path. Default: a fresh Unix socket in the temp directory. */
  address?: Address | null;
  /** Shared secret for the HMAC challenge. Default: 32 random bytes (handed to children inside proxies). */
  authkey?: Authkey | null;
  /** The context whose Process runs the server (`getContext('thread')`); default: the default context. */
  ctx?: { Process: typeof Process } | null;
  /** ms to wait for the server process to exit after shutdown before terminating it. Default 1000. */
  shutdownTimeout?: number;
  /** Extra modules whose exported functions and classes messages may name (by reference). */
  trustedModules?: readonly (string | URL)[];
  /** Longest message the server accepts, in bytes; a longer one closes that connection. Default 512 MiB. */
  maxMessage?: number;
}

type State = 'initial' | 'started' | 'connected' | 'shutdown';

const liveManagers = new Set<BaseManager>();
let managerCount = 0;

/**
 * Manages a server process holding shared objects (Python: `BaseManager`). Subclass it and
 * `register` types, then `start()` (a new server process) or `connect()` (to a running one), or
 * serve in this process with `getServer().serveForever()`.
 */
export class BaseManager {
  /** @internal */
  static _registry: Map<string, RegistryEntry> = new Map();
  readonly #authkey: Buffer;
  #address: Address | null;
  readonly #options: ManagerOptions;
  #state: State = 'initial';
  #process: Process | undefined;
  #server: Server | undefined;

  constructor(options: ManagerOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('new BaseManager(options): options must be an object like { address, authkey }');
    this.#options = options;
    this.#address = options.address ?? null;
    const k = options.authkey;
    this.#authkey = k === undefined || k === null ? crypto.randomBytes(32) : typeof k === 'string' ? Buffer.from(k, 'utf8') : Buffer.from(k instanceof ArrayBuffer ? new Uint8Array(k) : k);
  }

  /**
   * Register a type (Python: `BaseManager.register`). `callable` makes the object in the server
   * (a class is called with `new`); it crosses to the server process by reference, so it must be
   * exported from a module. A client that only connects registers the type id without it.
   */
  static register(typeid: string, callable?: Function | null, options: RegisterOptions = {}): void {
    if (typeof typeid !== 'string' || !typeid) throw new InvalidArgumentError('register(typeid): typeid must be a non-empty string');
    if (callable !== undefined && callable !== null && typeof callable !== 'function') throw new InvalidArgumentError('register(typeid, callable): callable must be a function or class');
    if (!Object.prototype.hasOwnProperty.call(this, '_registry')) this._registry = new Map(this._registry);
    const { exposed = null, methodToTypeid = null, proxytype = null, createMethod = true } = options;
    this._registry.set(typeid, {
      typeid,
      callable: callable ?? null,
      exposed: exposed ? [...exposed] : ((proxytype as { _exposed_?: string[] } | null)?._exposed_ ?? null),
      methodToTypeid: methodToTypeid ?? (proxytype as { _methodToTypeid_?: Record<string, string> } | null)?._methodToTypeid_ ?? null,
      proxytype,
    });
    if (createMethod && !(typeid in this.prototype)) {
      Object.defineProperty(this.prototype, typeid, {
        value: function (this: BaseManager, ...args: unknown[]) {
          return this._create(typeid, ...args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  /** The server's address (known after start() or getServer().ready). */
  get address(): Address | null {
    return this.#address;
  }
  /** The authkey proxies present to the server. */
  get authkey(): Buffer {
    return this.#authkey;
  }
  /** 'initial', 'started', 'connected' or 'shutdown'. */
  get state(): State {
    return this.#state;
  }
  /** The server process, after start(). */
  get process(): Process | undefined {
    return this.#process;
  }

  #registry(): Map<string, RegistryEntry> {
    return (this.constructor as typeof BaseManager)._registry;
  }

  #spec(): ServerSpec {
    const registry: ServerEntry[] = [];
    const trusted = new Set<string>((this.#options.trustedModules ?? []).map(toModuleUrl));
    for (const e of this.#registry().values()) {
      for (const [what, fn] of [['callable', e.callable], ['proxytype', e.proxytype]] as const) {
        if (!fn || proxyTypeKey(fn) !== fn) continue;
        // The server imports these modules, so it also trusts them.
        const url = moduleOf(reduceFunction(fn, `register('${e.typeid}') ${what}`, false));
        if (url) trusted.add(url);
      }
      registry.push({ typeid: e.typeid, callable: e.callable, exposed: e.exposed, methodToTypeid: e.methodToTypeid, proxytype: proxyTypeKey(e.proxytype) });
    }
    const maxMessage = this.#options.maxMessage ?? 512 * 1024 * 1024;
    return { registry, address: this.#address, authkey: this.#authkey, trusted: [...trusted], maxMessage };
  }

  /**
   * Start the server process and resolve once it listens (Python: `start`). `initializer(...initargs)`
   * runs in the server process first.
   * @throws ProcessError when already started; the server's error when it cannot listen.
   */
  async start(initializer?: ((...args: never[]) => unknown) | null, initargs: readonly unknown[] = []): Promise<this> {
    if (this.#state !== 'initial') throw new ProcessError(this.#state === 'shutdown' ? 'Manager has shut down' : 'Already started server', { code: 'ERR_MP_MANAGER_STATE' });
    if (initializer !== undefined && initializer !== null && typeof initializer !== 'function') throw new InvalidArgumentError('start(initializer): initializer must be a function');
    const spec = this.#spec();
    const [reader, writer] = Pipe(false);
    const P = this.#options.ctx?.Process ?? Process;
    const proc = new P({ target: runManagerServer, args: [spec, writer, initializer ?? null, initargs], name: `${this.constructor.name}-${++managerCount}` });
    proc.start();
    writer.close();
    this.#process = proc;
    this.#state = 'started';
    liveManagers.add(this);
    let answer: { address?: Address; error?: Error };
    try {
      answer = (await Promise.race([reader.recv(), proc.sentinel.then(() => ({ error: new ProcessError(`the manager process exited with code ${proc.exitcode} before it listened`, { code: 'ERR_MP_MANAGER_START' }) }))])) as typeof answer;
    } finally {
      reader.close();
    }
    if (answer.error) {
      this.#state = 'shutdown';
      liveManagers.delete(this);
      await proc.join(this.#options.shutdownTimeout ?? 1000);
      if (proc.exitcode === null) proc.kill();
      throw answer.error;
    }
    this.#address = answer.address!;
    return this;
  }

  /**
   * Connect to a running server (Python: `connect`); checks the address and the authkey.
   * @throws AuthenticationError for a wrong authkey; the connect error when nothing listens.
   */
  async connect(): Promise<this> {
    if (this.#address === null) throw new InvalidArgumentError('connect(): the manager needs the server address: new BaseManager({ address, authkey })');
    const [status, value] = await channelFor(this.#address, this.#authkey).call([0, 'ping']);
    unwrapReply(status, value);
    if (this.#state === 'initial') this.#state = 'connected';
    return this;
  }

  /**
   * The server, to run in this process: `await manager.getServer().serveForever()` (Python:
   * `get_server`). `await server.ready` tells the bound address.
   */
  getServer(): Server {
    if (this.#state !== 'initial') throw new ProcessError('Already started server', { code: 'ERR_MP_MANAGER_STATE' });
    const server = new Server(this.#spec());
    this.#server = server;
    this.#state = 'started';
    void server.ready.then(
      () => (this.#address = server.address),
      () => undefined,
    );
    return server;
  }

  /** Make a shared object of `typeid` in the server and resolve its proxy (Python: `_create` + the proxy). */
  async _create<P extends BaseProxy = BaseProxy>(typeid: string, ...args: unknown[]): Promise<P> {
    if (this.#state === 'shutdown') throw new ProcessError('Manager has shut down', { code: 'ERR_MP_MANAGER_STATE' });
    if (this.#address === null || this.#state === 'initial') throw new ProcessError('the manager is not started or connected: call start() or connect() first', { code: 'ERR_MP_MANAGER_STATE' });
    checkNoInlineFunctions(args, `${typeid}() args`);
    const [status, value] = await channelFor(this.#address, this.#authkey).call([0, 'create', typeid, args]);
    if (status !== 2) return unwrapReply(status, value) as P;
    const state = value as ProxyState;
    const local = this.#registry().get(typeid);
    if (local?.proxytype) state.proxytype = proxyTypeKey(local.proxytype);
    return makeProxy(state) as P;
  }

  /** Shared objects in the server with their reference counts (Python: `_debug_info`). */
  async _debugInfo(): Promise<Record<string, { typeid: string; refs: number }>> {
    if (this.#address === null) throw new ProcessError('the manager is not started', { code: 'ERR_MP_MANAGER_STATE' });
    const [status, value] = await channelFor(this.#address, this.#authkey).call([0, 'debug']);
    return unwrapReply(status, value) as Record<string, { typeid: string; refs: number }>;
  }

  /** How many shared objects the server holds (Python: `_number_of_objects`). */
  async _numberOfObjects(): Promise<number> {
    return Object.keys(await this._debugInfo()).length;
  }

  /**
   * Shut the server down (Python: `shutdown`): ask it to stop, wait up to `shutdownTimeout` ms for
   * its process, then terminate it. A connected (not started) manager asks the remote server to stop.
   */
  async shutdown(): Promise<void> {
    if (this.#state === 'shutdown' || this.#state === 'initial') return;
    const was = this.#state;
    this.#state = 'shutdown';
    liveManagers.delete(this);
    const address = this.#address;
    if (this.#server) {
      this.#server.shutdown();
      return;
    }
    if (address !== null) {
      try {
        const [status, value] = await channelFor(address, this.#authkey).call([0, 'shutdown']);
        unwrapReply(status, value);
      } catch {
        // Already gone.
      }
      dropChannels(address);
    }
    const proc = this.#process;
    if (was !== 'started' || !proc) return;
    await proc.join(this.#options.shutdownTimeout ?? 1000);
    if (proc.exitcode === null) {
      proc.terminate();
      await proc.join(100);
      if (proc.exitcode === null) {
        proc.kill();
        await proc.join();
      }
    }
  }

  /** Wait for the server process to end (Python: `join`). */
  async join(timeout?: number): Promise<void> {
    await this.#process?.join(timeout);
  }

  /** Shut down at the end of an `await using` block (Python: `with manager:`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  toString(): string {
    const a = this.#address;
    return `<${this.constructor.name} ${this.#state}${a ? ` at ${typeof a === 'string' ? a : `${a[0]}:${a[1]}`}` : ''}>`;
  }
}

// Python's exit function shuts down managers still running before it waits for children.
process.on('beforeExit', () => {
  for (const m of [...liveManagers]) void m.shutdown();
});

/**
 * The server process's target (Python: `BaseManager._run_server`): listen, tell the parent the
 * address, serve until shut down. Also ends when the parent process is gone.
 */
export async function runManagerServer(spec: ServerSpec, writer: Connection, initializer: ((...a: unknown[]) => unknown) | null, initargs: unknown[]): Promise<void> {
  let server: Server;
  try {
    if (initializer) await initializer(...initargs);
    server = new Server(spec);
    await server.ready;
  } catch (err) {
    await writer.send({ error: err });
    writer.close();
    return;
  }
  await writer.send({ address: server.address });
  writer.close();
  const parent = parentProcess();
  const watch = setInterval(() => {
    if (parent && !parent.isAlive()) server.shutdown();
  }, 500);
  watch.unref();
  try {
    await server.serveForever();
  } finally {
    clearInterval(watch);
  }
}

// ---------------------------------------------------------------------------------------------
// SyncManager.

type Init<K extends Key, V> = Map<K, V> | Record<string, V> | [K, V][];

/**
 * The manager `Manager()` starts (Python: `SyncManager`): dict, list, Namespace, Value, Array,
 * the locks, Event, Barrier and the queues, each living in the server process.
 */
export class SyncManager extends BaseManager {
  dict<K extends Key = string, V = unknown>(init?: Init<K, V>): Promise<DictProxy<K, V>> {
    return this._create('dict', ...(init === undefined ? [] : [init]));
  }
  list<T = unknown>(init?: Iterable<T>): Promise<ListProxy<T>> {
    return this._create('list', ...(init === undefined ? [] : [[...init]]));
  }
  Namespace(init?: Record<string, unknown>): Promise<NamespaceProxy> {
    return this._create('Namespace', ...(init === undefined ? [] : [init]));
  }
  Value<T = unknown>(typecode: string, value: T): Promise<ValueProxy<T>> {
    return this._create('Value', typecode, value);
  }
  Array<T = number>(typecode: string, sizeOrValues: number | Iterable<T>): Promise<ArrayProxy<T>> {
    return this._create('Array', typecode, typeof sizeOrValues === 'number' ? sizeOrValues : [...sizeOrValues]);
  }
  Lock(): Promise<AcquirerProxy> {
    return this._create('Lock');
  }
  RLock(): Promise<AcquirerProxy> {
    return this._create('RLock');
  }
  Semaphore(value = 1): Promise<SemaphoreProxy> {
    return this._create('Semaphore', value);
  }
  BoundedSemaphore(value = 1): Promise<SemaphoreProxy> {
    return this._create('BoundedSemaphore', value);
  }
  /** A Condition over `lock` (a Lock or RLock proxy of this manager; default a new RLock). */
  Condition(lock?: AcquirerProxy): Promise<ConditionProxy> {
    return this._create('Condition', ...(lock === undefined ? [] : [lock]));
  }
  Event(): Promise<EventProxy> {
    return this._create('Event');
  }
  /** `action` must be exported from a module the server trusts (see trustedModules). */
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null): Promise<BarrierProxy> {
    return this._create('Barrier', parties, action ?? null, timeout ?? null);
  }
  Queue<T = unknown>(maxsize = 0): Promise<QueueProxy<T>> {
    return this._create('Queue', maxsize);
  }
  JoinableQueue<T = unknown>(maxsize = 0): Promise<JoinableQueueProxy<T>> {
    return this._create('JoinableQueue', maxsize);
  }
}

for (const [typeid, callable, proxytype] of [
  ['dict', ManagedDict, DictProxy],
  ['list', ManagedList, ListProxy],
  ['Namespace', ManagedNamespace, NamespaceProxy],
  ['Value', ManagedValue, ValueProxy],
  ['Array', ManagedArray, ArrayProxy],
  ['Lock', ManagedLock, AcquirerProxy],
  ['RLock', ManagedRLock, AcquirerProxy],
  ['Semaphore', ManagedSemaphore, SemaphoreProxy],
  ['BoundedSemaphore', ManagedBoundedSemaphore, SemaphoreProxy],
  ['Condition', ManagedCondition, ConditionProxy],
  ['Event', ManagedEvent, EventProxy],
  ['Barrier', ManagedBarrier, BarrierProxy],
  ['Queue', ManagedQueue, QueueProxy],
  ['JoinableQueue', ManagedJoinableQueue, JoinableQueueProxy],
] as const) {
  SyncManager.register(typeid, callable, { proxytype: proxytype as never, createMethod: false });
}

/** Start a SyncManager and resolve it (Python: `multiprocessing.Manager()`). Use `await using`. */
export async function Manager(options: ManagerOptions = {}): Promise<SyncManager> {
  return new SyncManager(options).start();
}

export type { Address, Family };
