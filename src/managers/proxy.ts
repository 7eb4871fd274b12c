// The client half of managers (Python: `BaseProxy` and its connection): the per-process
// channel to a server, tokens and proxy states, and BaseProxy. The wire format and its checks
// are in wire.ts; the server in server.ts.
import { setMaxListeners } from 'node:events';
import { inspect } from 'node:util';

import { AbortError, AuthenticationError, InvalidArgumentError, ProcessError, RemoteError, RemoteTraceback } from '../errors.js';
import { Client, type Address, type SocketConnection } from '../ipc/listener.js';
import { registerExitTask, type FunctionOrClass } from '../util.js';
import type { Connection } from '../ipc/connection.js';
import type { OfferedPipe } from '../ipc/offered_pipe.js';
import { emulated } from '../shm/native.js';
import { offerRing } from './rings.js';
import {
  Batcher,
  checkNoInlineFunctions,
  CLIENT_POLICY,
  encodeWire,
  frameHandler,
  isJsonMessage,
  readMessages,
  RefusedMessage,
} from './wire.js';

export { checkNoInlineFunctions } from './wire.js';

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
  proxytype: string | FunctionOrClass | null;
  grant: boolean;
  /** The longest message the server sends or accepts (its manager's `maxMessage`). */
  maxMessage?: number;
}

/** A manager's `maxMessage` when not given. */
export const MANAGER_MAX_MESSAGE = 512 * 1024 * 1024;

export const OK = 0;
export const THROWN = 1;
export const PROXY = 2;
export const FAILED = 3;
export type Reply = [status: number, value: unknown];

export function addressKey(a: Address): string {
  return typeof a === 'string' ? `unix:${a}` : `tcp:${a[0]}:${a[1]}`;
}

function remoteFailure(info: unknown): RemoteError {
  const i = (info ?? {}) as { name?: string; message?: string; stack?: string; code?: string };
  const err = new RemoteError(`${i.name ?? 'Error'}: ${i.message ?? ''}`, { cause: new RemoteTraceback(i.stack ?? '') });
  Object.assign(err, { remoteName: i.name ?? 'Error', remoteMessage: i.message ?? '', remoteStack: i.stack ?? '', remoteCode: i.code });
  return err;
}

export function failureInfo(err: unknown): { name: string; message: string; stack: string; code?: string } {
  // Anything can be thrown: null, a string, an object of any shape.
  const e = err as (Error & { code?: unknown }) | null | undefined;
  return {
    name: e?.name ?? 'Error',
    message: e?.message ?? String(err),
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion -- a thrown object's stack may be any value
    stack: String(e?.stack ?? ''),
    code: typeof e?.code === 'string' ? e.code : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Channels: how a proxy reaches its server.

interface Pending {
  resolve(r: Reply): void;
  reject(err: Error): void;
}

/** @internal How proxies of one server talk to it from this process. */
export interface Channel {
  readonly address: Address;
  call(msg: unknown[], signal?: AbortSignal): Promise<Reply>;
  /** A proxy in this process now holds a reference the server counted. */
  hold(id: string): void;
  /** A proxy in this process is gone. */
  release(id: string): void;
  /** Count one more reference, for a copy of a proxy being sent elsewhere (`now`: unbatched). */
  incref(id: string, now?: boolean): void;
  /**
   * Send a request nobody awaits (request id 0), when it can leave at once, in order with this
   * process's other requests; false (nothing sent) otherwise. Its failure answers the next call.
   */
  send(msg: unknown[]): boolean;
}

const channels = new Map<string, SocketChannel>();
/** @internal What a channel needs of a server running in this process. */
export interface LocalServer {
  readonly authkey: Uint8Array;
  readonly local: Channel;
  referent(id: string): unknown;
}

/** @internal Servers running in this process, by address key. */
export const activeServers = new Map<string, LocalServer>();

/** @internal The channel to the server at `address` (the server itself when it runs here). */
export function channelFor(address: Address, authkey: Uint8Array, maxMessage = MANAGER_MAX_MESSAGE): Channel {
  const server = activeServers.get(addressKey(address));
  // The server runs here: no socket, unless the key differs (which the socket then refuses).
  if (server && Buffer.from(authkey).equals(Buffer.from(server.authkey))) return server.local;
  const key = `${addressKey(address)}#${Buffer.from(authkey).toString('hex')}`;
  let ch = channels.get(key);
  if (!ch) channels.set(key, (ch = new SocketChannel(address, authkey, maxMessage)));
  return ch;
}

// What proxies of this process keep open beside their channel (a Lock's shared memory, see
// shared_lock.ts): told when the connection to the server ends, with the error calls get then.
const ends = new Map<string, AbortController>();

/** @internal Aborts, with the error calls get, once this process's connection to `address` closes or breaks. */
export function channelEnd(address: Address): AbortSignal {
  const key = addressKey(address);
  let c = ends.get(key);
  if (!c) {
    ends.set(key, (c = new AbortController()));
    // One listener per live Lock proxy (and per wait on one), by design: no leak warning past 10.
    setMaxListeners(0, c.signal);
  }
  return c.signal;
}

function endChannel(address: Address, err: Error): void {
  const key = addressKey(address);
  const c = ends.get(key);
  ends.delete(key);
  c?.abort(err);
}

/**
 * @internal Whether `proxy` talks to a server of this machine over a socket of its own (a Unix
 * socket, with shared memory that crosses processes): it may then use objects of the server's
 * shared memory directly.
 */
export function sharesMemoryWithServer(proxy: BaseProxy): boolean {
  const { channel } = internalsOf.get(proxy)!;
  return channel instanceof SocketChannel && typeof channel.address === 'string' && !emulated();
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
  #conn: SocketConnection | undefined;
  /** From connecting until requests can leave (authenticated, and the ring upgrade answered). */
  #connecting = false;
  #outbox: Uint8Array[] = [];
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #held = new Map<string, number>();
  #exiting = false;
  readonly #maxMessage: number;
  /** Requests and replies go here once the server took the client's pipe (rings.ts). */
  #ring: Connection | undefined;
  #upgrade: { id: number; offer: OfferedPipe } | undefined;
  #handleRing: ((frame: Uint8Array) => Promise<void> | undefined) | undefined;
  #pumping = false;
  #lastWrite: Promise<void> = Promise.resolve();

  constructor(address: Address, authkey: Uint8Array, maxMessage: number) {
    this.address = address;
    this.#authkey = authkey;
    this.#maxMessage = maxMessage;
  }

  readonly #batcher = new Batcher((frame) => {
    const conn = this.#conn;
    // Gone meanwhile: its calls were failed with the connection.
    if (!conn || conn.closed) return;
    const ring = this.#ring;
    if (!ring) {
      conn.sendBytes(frame).catch((err: unknown) => this.#broken(conn, err));
      return;
    }
    const written = ring.sendBytes(frame);
    written.catch((err: unknown) => this.#broken(conn, err));
    this.#lastWrite = written;
    // Replies are read while some are awaited, and only then: an idle proxy keeps nothing alive.
    if (this.#pending.size && !this.#pumping) void this.#pump(conn, ring);
  });

  #send(bytes: Uint8Array): void {
    const conn = this.#conn;
    if (conn && !conn.closed && !this.#connecting) {
      this.#batcher.push(bytes);
      return;
    }
    this.#outbox.push(bytes);
    this.#connect();
  }

  #connect(): void {
    if (this.#connecting) return;
    this.#connecting = true;
    // A reply's length prefix over the limit breaks the connection before the reply is buffered.
    Client(this.address, { authkey: this.#authkey, maxMessageSize: this.#maxMessage }).then(
      (conn) => {
        this.#conn = conn;
        readMessages(
          conn,
          CLIENT_POLICY,
          // A reply naming code this process does not trust: the server is not to be trusted either.
          (msg) => (msg instanceof RefusedMessage ? this.#broken(conn, msg) : this.#onReply(msg)),
          (err) => this.#broken(conn, err),
        );
        // On this machine: the pipe goes first, so that every request takes one path, in order.
        const offer = offerRing(this.address, this.#maxMessage);
        if (!offer) {
          this.#ready(conn);
          return;
        }
        const id = this.#nextId++;
        this.#upgrade = { id, offer };
        conn._keepAlive(true);
        conn.sendBytes(encodeWire([id, 'ring', offer.name], 'args')).catch((err: unknown) => this.#broken(conn, err));
      },
      (err: unknown) => {
        this.#connecting = false;
        this.#outbox = [];
        this.#failAll(
          err instanceof AuthenticationError
            ? err
            : new ProcessError(
                `cannot connect to the manager at ${describeAddress(this.address)}: ${(err as Error | null | undefined)?.message ?? String(err)}`,
                { code: 'ERR_MP_MANAGER_CONNECTION', cause: err },
              ),
        );
      },
    );
  }

  // The server answered the upgrade: go on over the ring, or (refused) over the socket.
  #upgraded(conn: SocketConnection, status: number): void {
    const { offer } = this.#upgrade!;
    this.#upgrade = undefined;
    offer.settle(status === OK);
    if (status === OK) {
      const ring = offer.end;
      this.#ring = ring;
      this.#handleRing = frameHandler(
        CLIENT_POLICY,
        (msg) => (msg instanceof RefusedMessage ? this.#broken(conn, msg) : this.#onReply(msg)),
        (err) => this.#broken(conn, err),
        () => this.#ring !== ring,
      );
    } else offer.end.close();
    conn._keepAlive(false);
    this.#ready(conn);
  }

  #ready(conn: SocketConnection): void {
    this.#connecting = false;
    if (this.#pending.size) conn._keepAlive(true);
    for (const b of this.#outbox.splice(0)) this.#batcher.push(b);
    this.#batcher.flush();
  }

  /** How requests leave now. */
  get transport(): 'ring' | 'socket' | 'none' {
    return this.#ring ? 'ring' : this.#conn && !this.#connecting ? 'socket' : 'none';
  }

  // Read replies from the ring while calls await them.
  async #pump(conn: SocketConnection, ring: Connection): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#ring === ring && this.#pending.size > 0) {
        const frame = await ring.recvBytes();
        if (this.#ring !== ring) return;
        const rest = this.#handleRing!(frame);
        if (rest) await rest;
      }
    } catch (err) {
      this.#broken(conn, err);
    } finally {
      this.#pumping = false;
    }
  }

  #failAll(err: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#conn?._keepAlive(false);
    for (const p of pending) p.reject(err);
  }

  #broken(conn: SocketConnection, err: unknown): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    conn._keepAlive(false);
    conn.close();
    this.#dropRing();
    const e =
      err instanceof AuthenticationError
        ? err
        : new ProcessError(
            `lost the connection to the manager at ${describeAddress(this.address)}: ${(err as Error | null | undefined)?.message ?? String(err)}`,
            { code: 'ERR_MP_MANAGER_CONNECTION', cause: err },
          );
    this.#failAll(e);
    endChannel(this.address, e);
  }

  #dropRing(): void {
    if (this.#upgrade) {
      this.#upgrade.offer.settle();
      this.#upgrade.offer.end.close();
      this.#upgrade = undefined;
    }
    this.#connecting = false;
    this.#outbox = [];
    this.#ring?.close();
    this.#ring = undefined;
  }

  #onReply(msg: unknown): void {
    const reply = msg as [number, number, unknown];
    if (reply[0] === this.#upgrade?.id) {
      this.#upgraded(this.#conn!, reply[1]);
      return;
    }
    const p = this.#pending.get(reply[0]);
    if (!p) return;
    this.#pending.delete(reply[0]);
    // Only an awaited reply keeps the process alive: an idle proxy does not.
    if (this.#pending.size === 0) this.#conn?._keepAlive(false);
    p.resolve([reply[1], reply[2]]);
  }

  #await(id: number, p: Pending): void {
    this.#pending.set(id, p);
    if (this.#pending.size === 1) this.#conn?._keepAlive(true);
  }

  call(msg: unknown[], signal?: AbortSignal): Promise<Reply> {
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    const id = this.#nextId++;
    msg[0] = id;
    const bytes = encodeWire(msg, 'args');
    return new Promise<Reply>((resolve, reject) => {
      if (!signal) this.#await(id, { resolve, reject });
      else {
        // The server is asked to stop waiting; its answer decides (a call that completed first stands).
        const onAbort = (): void => this.#post([0, 'cancel', id]);
        signal.addEventListener('abort', onAbort, { once: true });
        const done = (): void => signal.removeEventListener('abort', onAbort);
        this.#await(id, {
          resolve: (r) => {
            done();
            resolve(r);
          },
          reject: (e) => {
            done();
            reject(e);
          },
        });
      }
      this.#send(bytes);
    });
  }

  #post(msg: unknown[]): void {
    this.#send(encodeWire(msg, 'message'));
  }

  send(msg: unknown[]): boolean {
    const conn = this.#conn;
    // On a ring, writes are queued in order: it can always leave.
    if (!conn || conn.closed || this.#connecting || (!this.#ring && !conn._writableNow())) return false;
    msg[0] = 0;
    this.#batcher.push(encodeWire(msg, 'args'));
    return true;
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

  /**
   * Count a reference with the server. `now`: written at once rather than at the end of this
   * synchronous run, for a reference handed to another process: that process may start, use it
   * and give it back (decref on its own connection) before a batched incref would have left.
   */
  incref(id: string, now = false): void {
    this.#post([0, 'incref', id, 1]);
    if (now) this.#batcher.flush();
  }

  /** At exit: give back every reference this process holds, and flush. */
  async releaseAll(): Promise<void> {
    this.#exiting = true;
    if (!this.#held.size) return;
    for (const [id, n] of this.#held) this.#post([0, 'decref', id, n]);
    this.#held.clear();
    this.#batcher.flush();
    // Wait until connected and the outbox went out, then until the socket took it.
    for (let i = 0; i < 200 && (this.#connecting || this.#outbox.length); i++) await new Promise((r) => setTimeout(r, 5));
    await this.#conn?._flushed();
    await this.#lastWrite.catch(() => undefined);
  }

  close(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    conn?._keepAlive(false);
    conn?.close();
    this.#dropRing();
    const err = new ProcessError(`the manager at ${describeAddress(this.address)} was shut down`, { code: 'ERR_MP_MANAGER_CONNECTION' });
    this.#failAll(err);
    endChannel(this.address, err);
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

const proxyTypes = new Map<string, FunctionOrClass>();
const proxyTags = new Map<FunctionOrClass, string>();

/** @internal Name a library proxy class, so that it crosses as a tag rather than by reference. */
export function registerProxyType(tag: string, cls: FunctionOrClass): void {
  proxyTypes.set(tag, cls);
  proxyTags.set(cls, tag);
}

/** @internal The tag of a library proxy class, or the class itself. */
export function proxyTypeKey(cls: FunctionOrClass | null | undefined): string | FunctionOrClass | null {
  if (!cls) return null;
  return proxyTags.get(cls) ?? cls;
}

const finalizer = new FinalizationRegistry<{ channel: Channel; id: string }>(({ channel, id }) => channel.release(id));

/** @internal */
export const internalsOf = new WeakMap<BaseProxy, { state: ProxyState; channel: Channel }>();

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
    // Plain arguments hold no function: skip the walk.
    if (!isJsonMessage(args)) checkNoInlineFunctions(args, `${method}() args`);
    const [status, value] = await channel.call([0, 'call', state.id, method, args], options.signal);
    return unwrapReply(status, value) as T;
  }

  /**
   * @internal Call `method` without waiting for the server's answer, when the request can be
   * written at once (then true): it runs in order with this process's later calls to the same
   * server, and if it fails, the next call on this proxy rejects with that failure instead of
   * running. False: nothing was sent.
   */
  _callUnanswered(method: string, args: readonly unknown[] = []): boolean {
    const { state, channel } = internalsOf.get(this)!;
    if (!isJsonMessage(args)) return false;
    return channel.send([0, 'call', state.id, method, args]);
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
    channel.incref(state.id, true);
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
  const pt = state.proxytype;
  const cls =
    (typeof pt === 'string' ? proxyTypes.get(pt) : typeof pt === 'function' ? pt : undefined) ??
    makeProxyType(`AutoProxy[${state.typeid}]`, state.exposed);
  // The state may come from a peer: only a proxy class is called with it.
  if (!(cls.prototype instanceof BaseProxy))
    throw new InvalidArgumentError(`proxy type of '${state.typeid}' is not a BaseProxy subclass: export a class extending BaseProxy`);
  const channel = channelFor(state.address, state.authkey, state.maxMessage);
  const proxy = new (cls as new (s: ProxyState, c: Channel) => BaseProxy)({ ...state, grant: false }, channel);
  if (!state.grant) channel.incref(state.id);
  channel.hold(state.id);
  finalizer.register(proxy, { channel, id: state.id });
  return proxy;
}

// ---------------------------------------------------------------------------------------------

/** @internal How `proxy`'s calls reach its server: a ring, its socket, in this process (`local`), or not connected yet (`none`). */
export function transportOf(proxy: BaseProxy): 'ring' | 'socket' | 'local' | 'none' {
  const { channel } = internalsOf.get(proxy)!;
  return channel instanceof SocketChannel ? channel.transport : 'local';
}

/** @internal The object behind `proxy` when its server runs in this process, else undefined. */
export function localReferent(proxy: unknown): unknown {
  if (!(proxy instanceof BaseProxy)) return undefined;
  const { state } = internalsOf.get(proxy)!;
  return activeServers.get(addressKey(state.address))?.referent(state.id);
}

export { InvalidArgumentError };
