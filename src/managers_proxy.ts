// The wire of managers (Python: the server and proxy half of `multiprocessing.managers`): the
// server that holds the shared objects, the per-process channel to it, and BaseProxy.
//
// Protocol. One connection per process and manager address, multiplexed: every request is
// `[reqId, op, ...]`, every reply `[reqId, status, value]`, serialized by `dumps` (structured
// clone plus multiproc's types). Requests start in the order they arrive, so a client's calls
// on one object run in the order it made them; a call that waits (a lock, a queue get) does not
// hold up the others. Ops: call, create, getvalue, incref, decref, cancel, ping, debug, shutdown.
//
// Security. Nothing received is ever run as code. Python's pickle can import and call anything
// its peer names; multiproc's `loads` can rebuild an inline function from source text. Every
// message a manager receives is therefore checked before it is rebuilt (`decodeWire`): a
// function sent by value is refused on both sides; the server rebuilds a function, class or
// error class named by reference only when its module is one it already trusts (loaded in the
// server already, or the module of a registered callable or proxy type, or listed in
// `trustedModules`) — it never imports a module a client names. Error classes it does not trust
// are rebuilt as their nearest built-in ancestor.
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import * as v8 from 'node:v8';

import { Connection } from './connection.js';
import { AbortError, AuthenticationError, InvalidArgumentError, NotTransferableError, ProcessError, RemoteError, RemoteTraceback } from './errors.js';
import { Client, Listener, type Address, type Family } from './listener.js';
import { registerExitTask } from './process.js';
import { dumps, loads, registerType } from './reduction.js';
import { moduleOf, reduceFunction, type FunctionRef } from './whichmodule.js';

// ---------------------------------------------------------------------------------------------
// Decoding what arrives from the wire.

// The markers reduction.ts puts in serialized data (kept in sync with it).
const MARK = '\u0000multiproc';
const ROOT = '\u0000multiproc.root';

/** A message refused by the wire check; `reqId` is known when the rest of it was readable. */
export class RefusedMessage extends Error {
  constructor(
    message: string,
    readonly reqId: number | undefined,
  ) {
    super(message);
  }
}

/** Who decodes: the server trusts only its modules; a client trusts its server's references. */
export interface WirePolicy {
  /** Whether a function or class named by reference may be rebuilt. */
  trustRef(ref: FunctionRef): boolean;
}

export const CLIENT_POLICY: WirePolicy = { trustRef: (ref) => ref.kind !== 'source' };

const LIBRARY_DIR = path.resolve(__dirname);

/** The server's policy: modules it loaded itself, its library, and the ones listed. */
export function serverPolicy(trusted: Iterable<string>): WirePolicy {
  const urls = new Set(trusted);
  return {
    trustRef(ref) {
      if (ref.kind === 'source') return false;
      const url = moduleOf(ref);
      if (url !== undefined && urls.has(url)) return true;
      if (ref.kind === 'cjs') {
        const file = path.resolve(ref.file);
        if (file.startsWith(LIBRARY_DIR + path.sep)) return true;
        // Already loaded here: rebuilding it imports nothing new.
        return require.cache[file] !== undefined;
      }
      return false;
    },
  };
}

function describeRef(ref: FunctionRef): string {
  if (ref.kind === 'source') return `function ${ref.name || '(anonymous)'} sent by value (as source text)`;
  return `${ref.name || 'an export'} from ${moduleOf(ref) ?? '?'}`;
}

/**
 * Deserialize a message from a peer without running anything from it.
 * @throws RefusedMessage when it names code the policy does not trust; the v8 error when the
 * bytes are not a serialized value at all.
 */
export async function decodeWire(buf: Uint8Array, policy: WirePolicy): Promise<unknown> {
  const data = v8.deserialize(buf) as unknown;
  if (typeof data !== 'object' || data === null || !Object.prototype.hasOwnProperty.call(data, ROOT)) return data;
  const root = (data as Record<string, unknown>)[ROOT];
  const reqId = Array.isArray(root) && Number.isSafeInteger(root[0]) ? (root[0] as number) : undefined;
  let changed = false;
  const seen = new Set<object>();
  const visit = (v: unknown): void => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) for (const x of v) visit(x);
    else if (v instanceof Map) for (const [k, x] of v) (visit(k), visit(x));
    else if (v instanceof Set) for (const x of v) visit(x);
    else if (!ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer)) {
      const o = v as Record<string, unknown>;
      if (Object.prototype.hasOwnProperty.call(o, MARK)) {
        const kind = o[MARK];
        const ref = (kind === 'fn' ? o.ref : kind === 'obj' || kind === 'err' ? o.cls : undefined) as FunctionRef | null | undefined;
        if (ref && typeof ref === 'object' && !policy.trustRef(ref)) {
          if (kind === 'err') {
            // The error still crosses, as its nearest built-in or library ancestor.
            o.cls = null;
            changed = true;
          } else {
            throw new RefusedMessage(
              `refused: the message names ${describeRef(ref)}; a manager never runs code sent over the wire and imports only the modules it trusts ` +
                '(send plain data, or list the module in the manager\'s trustedModules)',
              reqId,
            );
          }
        }
      }
      for (const key of Object.keys(o)) visit(o[key]);
    }
  };
  visit(root);
  return loads(changed ? v8.serialize(data) : buf);
}

/**
 * Refuse, before anything is sent, a function that would cross by value: a manager would refuse
 * it anyway. Functions exported from a module may cross (by reference).
 */
export function checkNoInlineFunctions(v: unknown, where: string, seen = new Set<object>()): void {
  if (typeof v === 'function') {
    try {
      reduceFunction(v, where, false);
    } catch (err) {
      throw new NotTransferableError(
        where,
        `is a function that is not exported from a module; a manager never accepts functions by value (the server runs no code received over the wire)`,
        'Export it from a module the server imports (the module of a registered type, or one in trustedModules), or send data instead.',
      );
    }
    return;
  }
  if (typeof v !== 'object' || v === null || seen.has(v) || ArrayBuffer.isView(v)) return;
  seen.add(v);
  if (Array.isArray(v)) v.forEach((x, i) => checkNoInlineFunctions(x, `${where}[${i}]`, seen));
  else if (v instanceof Map) for (const [k, x] of v) (checkNoInlineFunctions(k, `${where}.<key>`, seen), checkNoInlineFunctions(x, `${where}.get(…)`, seen));
  else if (v instanceof Set) for (const x of v) checkNoInlineFunctions(x, `${where}.<item>`, seen);
  else {
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto === Object.prototype || proto === null) for (const k of Object.keys(v)) checkNoInlineFunctions((v as Record<string, unknown>)[k], `${where}.${k}`, seen);
  }
}

// ---------------------------------------------------------------------------------------------
// Tokens, states, replies.

/** What identifies a shared object: its type id, its id in the server, the server's address. */
export interface Token {
  readonly typeid: string;
  readonly id: string;
  readonly address: Address;
}

/** What a proxy reduces to. `grant`: the sender counted a reference for the receiver already. */
export interface ProxyState {
  typeid: string;
  id: string;
  address: Address;
  authkey: Uint8Array;
  exposed: string[];
  proxytype: string | Function | null;
  grant: boolean;
}

const OK = 0;
const THROWN = 1;
const PROXY = 2;
const FAILED = 3;
type Reply = [status: number, value: unknown];

export function addressKey(a: Address): string {
  return typeof a === 'string' ? `unix:${a}` : `tcp:${a[0]}:${a[1]}`;
}

function remoteFailure(info: unknown): RemoteError {
  const i = (info ?? {}) as { name?: string; message?: string; stack?: string; code?: string };
  const err = new RemoteError(`${i.name ?? 'Error'}: ${i.message ?? ''}`, { cause: new RemoteTraceback(i.stack ?? '') });
  Object.assign(err, { remoteName: i.name ?? 'Error', remoteMessage: i.message ?? '', remoteStack: i.stack ?? '', remoteCode: i.code });
  return err;
}

function failureInfo(err: unknown): { name: string; message: string; stack: string; code?: string } {
  const e = err as Error & { code?: string };
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), stack: String(e?.stack ?? ''), code: typeof e?.code === 'string' ? e.code : undefined };
}

// ---------------------------------------------------------------------------------------------
// Channels: how a proxy reaches its server.

interface Pending {
  resolve(r: Reply): void;
  reject(err: unknown): void;
}

/** @internal How proxies of one server talk to it from this process. */
export interface Channel {
  readonly address: Address;
  call(msg: unknown[], signal?: AbortSignal): Promise<Reply>;
  /** A proxy in this process now holds a reference the server counted. */
  hold(id: string): void;
  /** A proxy in this process is gone. */
  release(id: string): void;
  /** Count one more reference, for a copy of a proxy being sent elsewhere. */
  incref(id: string): void;
}

const channels = new Map<string, SocketChannel>();
const activeServers = new Map<string, Server>();

/** @internal The channel to the server at `address` (the server itself when it runs here). */
export function channelFor(address: Address, authkey: Uint8Array): Channel {
  const server = activeServers.get(addressKey(address));
  // The server runs here: no socket, unless the key differs (which the socket then refuses).
  if (server && Buffer.from(authkey).equals(Buffer.from(server.authkey))) return server.local;
  const key = `${addressKey(address)}#${Buffer.from(authkey).toString('hex')}`;
  let ch = channels.get(key);
  if (!ch) channels.set(key, (ch = new SocketChannel(address, authkey)));
  return ch;
}

/** @internal Forget connections to `address` (its server was shut down). */
export function dropChannels(address: Address): void {
  const prefix = `${addressKey(address)}#`;
  for (const [key, ch] of channels) {
    if (key.startsWith(prefix)) {
      ch.close();
      channels.delete(key);
    }
  }
}

class SocketChannel implements Channel {
  readonly address: Address;
  readonly #authkey: Uint8Array;
  #conn: Connection | undefined;
  #connecting = false;
  #outbox: Uint8Array[] = [];
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #reading = false;
  readonly #held = new Map<string, number>();
  #exiting = false;

  constructor(address: Address, authkey: Uint8Array) {
    this.address = address;
    this.#authkey = authkey;
  }

  #send(bytes: Uint8Array): void {
    const conn = this.#conn;
    if (conn && !conn.closed) {
      conn.sendBytes(bytes).catch((err: unknown) => this.#broken(conn, err));
      return;
    }
    this.#outbox.push(bytes);
    this.#connect();
  }

  #connect(): void {
    if (this.#connecting) return;
    this.#connecting = true;
    Client(this.address, { authkey: this.#authkey }).then(
      (conn) => {
        this.#connecting = false;
        this.#conn = conn;
        const out = this.#outbox;
        this.#outbox = [];
        for (const b of out) conn.sendBytes(b).catch((err: unknown) => this.#broken(conn, err));
        this.#startReading();
      },
      (err: unknown) => {
        this.#connecting = false;
        this.#outbox = [];
        this.#failAll(
          err instanceof AuthenticationError
            ? err
            : new ProcessError(`cannot connect to the manager at ${describeAddress(this.address)}: ${(err as Error)?.message ?? String(err)}`, { code: 'ERR_MP_MANAGER_CONNECTION', cause: err }),
        );
      },
    );
  }

  #failAll(err: unknown): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
  }

  #broken(conn: Connection, err: unknown): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    conn.close();
    const e =
      err instanceof AuthenticationError
        ? err
        : new ProcessError(`lost the connection to the manager at ${describeAddress(this.address)}: ${(err as Error)?.message ?? String(err)}`, { code: 'ERR_MP_MANAGER_CONNECTION', cause: err });
    this.#failAll(e);
  }

  #startReading(): void {
    if (this.#reading || !this.#conn || this.#pending.size === 0) return;
    this.#reading = true;
    void this.#readLoop(this.#conn);
  }

  async #readLoop(conn: Connection): Promise<void> {
    try {
      // Reading only while something is awaited: an idle proxy keeps no process alive.
      while (this.#pending.size && this.#conn === conn) {
        const buf = await conn.recvBytes();
        const reply = (await decodeWire(buf, CLIENT_POLICY)) as [number, number, unknown];
        const p = this.#pending.get(reply[0]);
        if (!p) continue;
        this.#pending.delete(reply[0]);
        p.resolve([reply[1], reply[2]]);
      }
    } catch (err) {
      this.#broken(conn, err);
    } finally {
      this.#reading = false;
    }
    this.#startReading();
  }

  call(msg: unknown[], signal?: AbortSignal): Promise<Reply> {
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    const id = this.#nextId++;
    msg[0] = id;
    const bytes = dumps(msg, 'args');
    return new Promise<Reply>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      if (signal) {
        // The server is asked to stop waiting; its answer decides (a call that completed first stands).
        onAbort = () => this.#post([0, 'cancel', id]);
        signal.addEventListener('abort', onAbort, { once: true });
      }
      const done = (): void => {
        if (onAbort) signal!.removeEventListener('abort', onAbort);
      };
      this.#pending.set(id, {
        resolve: (r) => (done(), resolve(r)),
        reject: (e) => (done(), reject(e)),
      });
      this.#send(bytes);
      this.#startReading();
    });
  }

  #post(msg: unknown[]): void {
    this.#send(dumps(msg, 'message'));
  }

  hold(id: string): void {
    this.#held.set(id, (this.#held.get(id) ?? 0) + 1);
  }

  release(id: string): void {
    if (this.#exiting) return;
    const n = (this.#held.get(id) ?? 0) - 1;
    if (n <= 0) this.#held.delete(id);
    else this.#held.set(id, n);
    this.#post([0, 'decref', id, 1]);
  }

  incref(id: string): void {
    this.#post([0, 'incref', id, 1]);
  }

  /** At exit: give back every reference this process holds, and flush. */
  async releaseAll(): Promise<void> {
    this.#exiting = true;
    if (!this.#held.size) return;
    for (const [id, n] of this.#held) this.#post([0, 'decref', id, n]);
    this.#held.clear();
    // Wait until connected and the outbox went out, then until the socket took it.
    for (let i = 0; i < 200 && (this.#connecting || this.#outbox.length); i++) await new Promise((r) => setTimeout(r, 5));
    const conn = this.#conn as (Connection & { _flushed?: () => Promise<void> }) | undefined;
    await conn?._flushed?.();
  }

  close(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    conn?.close();
    this.#failAll(new ProcessError(`the manager at ${describeAddress(this.address)} was shut down`, { code: 'ERR_MP_MANAGER_CONNECTION' }));
  }
}

// A child gives its references back before it exits, so that the server can drop the objects.
registerExitTask(async () => {
  await Promise.all([...channels.values()].map((c) => c.releaseAll()));
});

export function describeAddress(a: Address): string {
  return typeof a === 'string' ? a : `${a[0]}:${a[1]}`;
}

// ---------------------------------------------------------------------------------------------
// Proxies.

const proxyTypes = new Map<string, Function>();
const proxyTags = new Map<Function, string>();

/** @internal Name a library proxy class, so that it crosses as a tag rather than by reference. */
export function registerProxyType(tag: string, cls: Function): void {
  proxyTypes.set(tag, cls);
  proxyTags.set(cls, tag);
}

/** @internal The tag of a library proxy class, or the class itself. */
export function proxyTypeKey(cls: Function | null | undefined): string | Function | null {
  if (!cls) return null;
  return proxyTags.get(cls) ?? cls;
}

const finalizer = new FinalizationRegistry<{ channel: Channel; id: string }>(({ channel, id }) => channel.release(id));

const internalsOf = new WeakMap<BaseProxy, { state: ProxyState; channel: Channel }>();

/**
 * A reference to an object living in a manager's server (Python: `BaseProxy`). Every method
 * is a remote call and returns a Promise. A proxy can be passed to other processes (as a
 * Process argument, in a queue, or inside another shared object) and keeps working there.
 */
export class BaseProxy {
  /** @internal Use the manager's methods to make proxies. */
  constructor(state: ProxyState, channel: Channel) {
    internalsOf.set(this, { state, channel });
  }

  /** The token: type id, object id and server address. */
  get _token(): Token {
    const { state } = internalsOf.get(this)!;
    return { typeid: state.typeid, id: state.id, address: state.address };
  }

  /** The methods the server lets this proxy call. */
  get _exposed(): readonly string[] {
    return internalsOf.get(this)!.state.exposed;
  }

  /**
   * Call `method` of the referent with `args` (Python: `_callmethod`). Resolves with a copy of the
   * result (or a proxy, for methods the type maps to a proxy type). An error the referent throws
   * rejects as the same class (its remote stack as `cause`); a failure of the server itself
   * (unknown method, refused message) as RemoteError.
   */
  async _callmethod<T = unknown>(method: string, args: readonly unknown[] = [], options: { signal?: AbortSignal } = {}): Promise<T> {
    const { state, channel } = internalsOf.get(this)!;
    checkNoInlineFunctions(args, `${method}() args`);
    const [status, value] = await channel.call([0, 'call', state.id, method, args], options.signal);
    return unwrapReply(status, value) as T;
  }

  /** A copy of the referent (Python: `_getvalue`). */
  async _getvalue<T = unknown>(): Promise<T> {
    const { state, channel } = internalsOf.get(this)!;
    const [status, value] = await channel.call([0, 'getvalue', state.id]);
    return unwrapReply(status, value) as T;
  }

  /** @internal */
  _reduce(): ProxyState {
    const { state, channel } = internalsOf.get(this)!;
    // The receiver's reference is counted now, by this process, so that it cannot be dropped
    // before the receiver says hello.
    channel.incref(state.id);
    return { ...state, grant: true };
  }

  toString(): string {
    const { state } = internalsOf.get(this)!;
    return `<${this.constructor.name} object, typeid '${state.typeid}' at ${state.id}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** @internal */
export function unwrapReply(status: number, value: unknown): unknown {
  switch (status) {
    case OK:
      return value;
    case PROXY:
      return makeProxy(value as ProxyState);
    case THROWN:
      throw value;
    default:
      throw remoteFailure(value);
  }
}

const autoProxies = new Map<string, typeof BaseProxy>();

/** A proxy class with one method per exposed name (Python: `MakeProxyType`). */
export function makeProxyType(name: string, exposed: readonly string[]): typeof BaseProxy {
  const key = `${name}|${exposed.join(',')}`;
  let cls = autoProxies.get(key);
  if (cls) return cls;
  cls = { [name]: class extends BaseProxy {} }[name]!;
  for (const m of exposed) {
    if (m === 'constructor' || m === 'then' || m in BaseProxy.prototype) continue;
    Object.defineProperty(cls.prototype, m, {
      value: function (this: BaseProxy, ...args: unknown[]) {
        return this._callmethod(m, args);
      },
      writable: true,
      configurable: true,
    });
  }
  autoProxies.set(key, cls);
  return cls;
}

/** @internal Build the proxy a state describes. */
export function makeProxy(state: ProxyState): BaseProxy {
  const channel = channelFor(state.address, state.authkey);
  const pt = state.proxytype;
  const cls = (typeof pt === 'string' ? proxyTypes.get(pt) : typeof pt === 'function' ? pt : undefined) ?? makeProxyType(`AutoProxy[${state.typeid}]`, state.exposed);
  const proxy = new (cls as new (s: ProxyState, c: Channel) => BaseProxy)({ ...state, grant: false }, channel);
  if (!state.grant) channel.incref(state.id);
  channel.hold(state.id);
  finalizer.register(proxy, { channel, id: state.id });
  return proxy;
}

registerType(BaseProxy, { reduce: (p) => p._reduce(), rebuild: (s: ProxyState) => makeProxy(s) }, 'multiproc.ManagerProxy');

// ---------------------------------------------------------------------------------------------
// The server.

/** One registered type as the server sees it. */
export interface ServerEntry {
  typeid: string;
  callable: Function | null;
  exposed: string[] | null;
  methodToTypeid: Record<string, string> | null;
  proxytype: string | Function | null;
}

export interface ServerSpec {
  registry: ServerEntry[];
  address: Address | null;
  family?: Family;
  authkey: Uint8Array;
  trusted: string[];
  maxMessage: number;
}

interface Held {
  obj: unknown;
  typeid: string;
  exposed: Set<string>;
  exposedList: string[];
  methodToTypeid: Record<string, string> | null;
  proxytype: string | Function | null;
  refs: number;
}

interface CallContext {
  /** Who calls: one id per connection (a process or thread), `local` inside the server. */
  readonly caller: string;
  /** Aborted when the caller cancels or its connection is gone. */
  readonly signal: AbortSignal;
  /** True once the caller's connection is gone. */
  gone: boolean;
}

let currentCall: CallContext | undefined;
const NO_CALL: CallContext = { caller: 'local', signal: new AbortController().signal, gone: false };

/**
 * The caller of the method running now, for shared objects whose behaviour depends on who calls
 * (an RLock's owner). Read it synchronously, at the start of the method.
 */
export function callContext(): CallContext {
  return currentCall ?? NO_CALL;
}

/** Public methods of an object: functions on it or its prototypes, not starting with `_`. */
export function publicMethods(obj: unknown): string[] {
  const out = new Set<string>();
  for (let p = obj as object | null; p && p !== Object.prototype && p !== Function.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const key of Object.getOwnPropertyNames(p)) {
      if (key === 'constructor' || key.startsWith('_')) continue;
      const d = Object.getOwnPropertyDescriptor(p, key);
      if (d && typeof d.value === 'function') out.add(key);
    }
  }
  return [...out];
}

function isClass(fn: Function): boolean {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

interface ConnState {
  ctx: { caller: string; gone: boolean };
  inflight: Map<number, AbortController>;
}

/**
 * A manager's server (Python: `managers.Server`): listens on its address, holds the shared
 * objects and answers proxies. Made by `manager.getServer()` or in the process `start()` runs.
 */
export class Server {
  readonly #spec: ServerSpec;
  readonly #registry = new Map<string, ServerEntry>();
  readonly #objects = new Map<string, Held>();
  readonly #policy: WirePolicy;
  readonly #conns = new Set<{ conn: Connection; state: ConnState }>();
  #listener: Listener | undefined;
  #nextId = 0;
  #nextConn = 0;
  #closed = false;
  #done!: () => void;
  readonly #finished: Promise<void>;
  /** Resolves once bound (then `address` is known); rejects with the bind error. */
  readonly ready: Promise<this>;
  /** @internal The channel for proxies inside this process. */
  readonly local: Channel;

  constructor(spec: ServerSpec) {
    this.#spec = spec;
    for (const e of spec.registry) this.#registry.set(e.typeid, e);
    this.#policy = serverPolicy(spec.trusted);
    this.#finished = new Promise<void>((r) => (this.#done = r));
    this.local = new LocalChannel(this);
    this.ready = (async () => {
      const listener = await Listener.create(spec.address, { authkey: spec.authkey, family: spec.family ?? (spec.address === null ? 'AF_UNIX' : undefined) });
      this.#listener = listener;
      if (this.#closed) listener.close();
      else activeServers.set(addressKey(listener.address), this);
      return this;
    })();
    this.ready.catch(() => undefined);
  }

  /** @internal */
  get authkey(): Uint8Array {
    return this.#spec.authkey;
  }

  /** The bound address (after `ready`). */
  get address(): Address {
    if (!this.#listener) throw new ProcessError('the server is not bound yet: await server.ready', { code: 'ERR_MP_NOT_BOUND' });
    return this.#listener.address;
  }

  /** Serve until a client (or `shutdown()`) shuts the server down (Python: `serve_forever`). */
  async serveForever(): Promise<void> {
    await this.ready;
    void this.#acceptLoop();
    await this.#finished;
  }

  /** Stop: close the listener and every connection; waits in progress are cancelled. */
  shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#listener) {
      if (activeServers.get(addressKey(this.#listener.address)) === this) activeServers.delete(addressKey(this.#listener.address));
      this.#listener.close();
    }
    for (const { conn, state } of this.#conns) {
      state.ctx.gone = true;
      for (const c of state.inflight.values()) c.abort();
      conn.close();
    }
    this.#conns.clear();
    for (const h of this.#objects.values()) this.#dispose(h);
    this.#objects.clear();
    this.#done();
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #acceptLoop(): Promise<void> {
    const listener = this.#listener!;
    while (!this.#closed) {
      let conn: Connection;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#closed || listener.closed) return;
        // A peer that failed the challenge (or vanished during it): serve the others.
        continue;
      }
      void this.#serve(conn);
    }
  }

  async #serve(conn: Connection): Promise<void> {
    const state: ConnState = { ctx: { caller: `c${++this.#nextConn}`, gone: false }, inflight: new Map() };
    const entry = { conn, state };
    this.#conns.add(entry);
    try {
      while (!this.#closed) {
        // An oversized or malformed frame ends this connection only.
        const buf = await conn.recvBytes(this.#spec.maxMessage);
        let msg: unknown;
        try {
          msg = await decodeWire(buf, this.#policy);
        } catch (err) {
          if (err instanceof RefusedMessage && err.reqId !== undefined && err.reqId > 0) {
            this.#reply(conn, err.reqId, FAILED, failureInfo(err));
            continue;
          }
          throw err;
        }
        if (!Array.isArray(msg) || !Number.isSafeInteger(msg[0]) || (msg[0] as number) < 0 || typeof msg[1] !== 'string') throw new Error('malformed request');
        this.#dispatch(msg, state, (status, value) => this.#reply(conn, msg[0] as number, status, value));
      }
    } catch {
      // EOF, a broken or malformed frame: drop this connection, keep serving the others.
    } finally {
      state.ctx.gone = true;
      for (const c of state.inflight.values()) c.abort();
      this.#conns.delete(entry);
      conn.close();
    }
  }

  #reply(conn: Connection, reqId: number, status: number, value: unknown): void {
    if (reqId === 0 || conn.closed) return;
    let bytes: Uint8Array;
    try {
      bytes = dumps([reqId, status, value], 'result');
    } catch (err) {
      bytes = dumps([reqId, FAILED, failureInfo(err)]);
    }
    conn.sendBytes(bytes).catch(() => undefined);
  }

  /** @internal One request from `state`'s connection (or from inside the server). */
  #dispatch(msg: unknown[], state: ConnState, reply: (status: number, value: unknown) => void): void {
    const reqId = msg[0] as number;
    const op = msg[1] as string;
    const fail = (message: string): void => reply(FAILED, { name: 'ProcessError', message, stack: '' });
    try {
      switch (op) {
        case 'call': {
          const [, , id, method, args] = msg as [number, string, string, string, unknown[]];
          const h = this.#objects.get(id);
          if (!h) return fail(`no shared object with id ${String(id)} (it was released, or the manager restarted)`);
          if (typeof method !== 'string' || !h.exposed.has(method)) return fail(`method '${String(method)}' of ${h.typeid} object is not exposed`);
          if (!Array.isArray(args)) return fail('args must be an array');
          this.#invoke(h, method, args, reqId, state, reply);
          return;
        }
        case 'create': {
          const [, , typeid, args] = msg as [number, string, string, unknown[]];
          const e = this.#registry.get(typeid);
          if (!e) return fail(`unknown type id '${String(typeid)}'`);
          if (!e.callable) return fail(`type id '${typeid}' has no callable in the server`);
          if (!Array.isArray(args)) return fail('args must be an array');
          const callable = e.callable as (...a: unknown[]) => unknown;
          this.#run(() => (isClass(callable) ? new (callable as unknown as new (...a: unknown[]) => unknown)(...args) : callable(...args)), reqId, state, (status, value) => {
            if (status !== OK) return reply(status, value);
            reply(PROXY, this.#register(value, typeid, e.exposed, e.methodToTypeid, e.proxytype));
          });
          return;
        }
        case 'getvalue': {
          const h = this.#objects.get(msg[2] as string);
          if (!h) return fail(`no shared object with id ${String(msg[2])}`);
          const o = h.obj as { _getvalue?: () => unknown };
          reply(OK, typeof o?._getvalue === 'function' ? o._getvalue() : o);
          return;
        }
        case 'incref':
          this.incref(msg[2] as string, msg[3] as number);
          return;
        case 'decref':
          this.decref(msg[2] as string, msg[3] as number);
          return;
        case 'cancel':
          state.inflight.get(msg[2] as number)?.abort();
          return;
        case 'ping':
          reply(OK, 'pong');
          return;
        case 'debug': {
          const objects: Record<string, { typeid: string; refs: number }> = {};
          for (const [id, h] of this.#objects) objects[id] = { typeid: h.typeid, refs: h.refs };
          reply(OK, objects);
          return;
        }
        case 'shutdown':
          reply(OK, null);
          // After the reply has left.
          setImmediate(() => this.shutdown());
          return;
        default:
          return fail(`unknown request '${op}'`);
      }
    } catch (err) {
      reply(FAILED, failureInfo(err));
    }
  }

  #invoke(h: Held, method: string, args: unknown[], reqId: number, state: ConnState, reply: (status: number, value: unknown) => void): void {
    const obj = h.obj as Record<string, unknown>;
    this.#run(
      () => {
        const f = obj[method];
        if (typeof f === 'function') return (f as (...a: unknown[]) => unknown).apply(obj, args);
        // An exposed attribute that is not a method: its value.
        return f;
      },
      reqId,
      state,
      (status, value) => {
        const t = h.methodToTypeid?.[method];
        if (status === OK && t) {
          const e = this.#registry.get(t);
          return reply(PROXY, this.#register(value, t, e?.exposed ?? null, e?.methodToTypeid ?? null, e?.proxytype ?? null));
        }
        reply(status, value);
      },
    );
  }

  // Run `fn` as the caller of `state`, with a cancellation signal; report its outcome.
  #run(fn: () => unknown, reqId: number, state: ConnState, done: (status: number, value: unknown) => void): void {
    // Made on first use: most calls never wait.
    let ctl: AbortController | undefined;
    const ctx: CallContext = {
      caller: state.ctx.caller,
      get signal() {
        ctl ??= new AbortController();
        if (state.ctx.gone) ctl.abort();
        return ctl.signal;
      },
      get gone() {
        return state.ctx.gone;
      },
      set gone(v) {
        state.ctx.gone = v;
      },
    };
    let result: unknown;
    const prev = currentCall;
    currentCall = ctx;
    try {
      result = fn();
    } catch (err) {
      return done(THROWN, err);
    } finally {
      currentCall = prev;
    }
    if (result === null || (typeof result !== 'object' && typeof result !== 'function') || typeof (result as PromiseLike<unknown>).then !== 'function') return done(OK, result);
    if (reqId > 0 && ctl) state.inflight.set(reqId, ctl);
    (result as PromiseLike<unknown>).then(
      (v) => {
        state.inflight.delete(reqId);
        done(OK, v);
      },
      (err: unknown) => {
        state.inflight.delete(reqId);
        done(THROWN, err);
      },
    );
  }

  #register(obj: unknown, typeid: string, exposed: string[] | null, methodToTypeid: Record<string, string> | null, proxytype: string | Function | null): ProxyState {
    const list = exposed ?? publicMethods(obj);
    const id = (++this.#nextId).toString(16);
    this.#objects.set(id, { obj, typeid, exposed: new Set(list), exposedList: list, methodToTypeid, proxytype, refs: 1 });
    return { typeid, id, address: this.address, authkey: this.#spec.authkey, exposed: list, proxytype, grant: true };
  }

  /** @internal */
  incref(id: string, n = 1): void {
    const h = this.#objects.get(id);
    if (h && Number.isSafeInteger(n) && n > 0) h.refs += n;
  }

  /** @internal */
  decref(id: string, n = 1): void {
    const h = this.#objects.get(id);
    if (!h || !Number.isSafeInteger(n) || n <= 0) return;
    h.refs -= n;
    if (h.refs <= 0) {
      this.#objects.delete(id);
      this.#dispose(h);
    }
  }

  #dispose(h: Held): void {
    const o = h.obj as { _dispose?: () => void };
    try {
      if (typeof o?._dispose === 'function') o._dispose();
    } catch {
      // A shared object failing to clean up must not take the server down.
    }
  }

  /** @internal The object behind a proxy of this server (for objects that take another as argument). */
  referent(id: string): unknown {
    return this.#objects.get(id)?.obj;
  }

  /** @internal A request from inside the server process (a proxy held by a shared object). */
  async _local(bytes: Uint8Array): Promise<Reply> {
    const msg = (await decodeWire(bytes, this.#policy)) as unknown[];
    return new Promise<Reply>((resolve) => {
      this.#dispatch(msg, LOCAL_CONN, (status, value) => {
        // Copied, as over a connection: the caller must not share the server's objects.
        let out: Uint8Array;
        try {
          out = dumps([0, status, value], 'result');
        } catch (err) {
          out = dumps([0, FAILED, failureInfo(err)]);
        }
        void decodeWire(out, CLIENT_POLICY).then((r) => {
          const [, s, v] = r as [number, number, unknown];
          resolve([s, v]);
        });
      });
    });
  }

  /** @internal Number of shared objects held. */
  get _size(): number {
    return this.#objects.size;
  }

  toString(): string {
    return `<Server ${this.#listener ? describeAddress(this.#listener.address) : 'unbound'}${this.#closed ? ' closed' : ''}>`;
  }
}

const LOCAL_CONN: ConnState = { ctx: { caller: 'local', gone: false }, inflight: new Map() };

class LocalChannel implements Channel {
  readonly #server: Server;
  constructor(server: Server) {
    this.#server = server;
  }
  get address(): Address {
    return this.#server.address;
  }
  call(msg: unknown[], signal?: AbortSignal): Promise<Reply> {
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    return this.#server._local(dumps(msg, 'args'));
  }
  hold(): void {}
  release(id: string): void {
    if (!this.#server.closed) this.#server.decref(id);
  }
  incref(id: string): void {
    this.#server.incref(id);
  }
}

/** @internal The object behind `proxy` when its server runs in this process, else undefined. */
export function localReferent(proxy: unknown): unknown {
  if (!(proxy instanceof BaseProxy)) return undefined;
  const { state } = internalsOf.get(proxy)!;
  return activeServers.get(addressKey(state.address))?.referent(state.id);
}

/** @internal File URL of a module path, for trustedModules. */
export function toModuleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href;
  if (/^[a-z]+:/i.test(m) && !/^[a-z]:[\\/]/i.test(m)) return m;
  return pathToFileURL(path.resolve(m)).href;
}

export { InvalidArgumentError };
