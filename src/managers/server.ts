// A manager's server (Python: `managers.Server`): holds the shared objects, counts their
// references and answers the requests of proxies (the protocol is described in
// proxy.ts). It runs in the process `BaseManager.start()` starts, or in any process that
// calls `getServer().serveForever()`.
import type { SocketConnection } from '../ipc/socket.js';
import { AbortError, ProcessError } from '../errors.js';
import { Listener, type Address, type Family } from '../ipc/listener.js';
import {
  activeServers,
  addressKey,
  describeAddress,
  FAILED,
  failureInfo,
  OK,
  PROXY,
  THROWN,
  type Channel,
  type ProxyState,
  type Reply,
} from './proxy.js';
import type { PipeEnd } from '../ipc/offered_pipe.js';
import { adoptRing, RingHub, ringsServed, type RingReader } from './rings.js';
import {
  Batcher,
  CLIENT_POLICY,
  decodeWire,
  encodeWire,
  frameHandler,
  readMessages,
  RefusedMessage,
  serverPolicy,
  trustModulesForClients,
} from './wire.js';
import type { ReceivePolicy } from '../reduction/policy.js';
import { dumps } from '../reduction/reduction.js';
import type { FunctionOrClass } from '../util.js';

export interface ServerEntry {
  typeid: string;
  callable: FunctionOrClass | null;
  exposed: string[] | null;
  methodToTypeid: Record<string, string> | null;
  proxytype: string | FunctionOrClass | null;
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
  proxytype: string | FunctionOrClass | null;
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
  for (
    let p = obj as object | null;
    p && p !== Object.prototype && p !== Function.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    for (const key of Object.getOwnPropertyNames(p)) {
      if (key === 'constructor' || key.startsWith('_')) continue;
      const d = Object.getOwnPropertyDescriptor(p, key);
      if (d && typeof d.value === 'function') out.add(key);
    }
  }
  return [...out];
}

function isClass(fn: FunctionOrClass): boolean {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

interface ConnState {
  ctx: { caller: string; gone: boolean };
  inflight: Map<number, AbortController>;
  /** The failure of an unanswered call (request id 0), by object id: it answers the next call on that object. */
  deferred?: Map<string, [status: number, value: unknown]>;
}

interface ServedConn {
  conn: SocketConnection;
  state: ConnState;
  /** Set once the client moved its requests to a ring (rings.ts). */
  ring: RingReader | undefined;
}

/** The context of one call: its AbortController is made on first use (most calls never wait). */
class RunContext implements CallContext {
  ctl: AbortController | undefined;
  constructor(readonly state: ConnState) {}
  get caller(): string {
    return this.state.ctx.caller;
  }
  get signal(): AbortSignal {
    this.ctl ??= new AbortController();
    if (this.state.ctx.gone) this.ctl.abort();
    return this.ctl.signal;
  }
  get gone(): boolean {
    return this.state.ctx.gone;
  }
  set gone(v: boolean) {
    this.state.ctx.gone = v;
  }
}

/**
 * A manager's server (Python: `managers.Server`): listens on its address, holds the shared
 * objects and answers proxies. Made by `manager.getServer()` or in the process `start()` runs.
 */
export class Server {
  readonly #spec: ServerSpec;
  readonly #registry = new Map<string, ServerEntry>();
  readonly #objects = new Map<string, Held>();
  readonly #policy: ReceivePolicy;
  readonly #conns = new Set<ServedConn>();
  readonly #rings = new RingHub();
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
    // The proxies the server's own objects hold (a Condition's lock) read its replies here.
    trustModulesForClients(spec.trusted);
    this.#finished = new Promise<void>((r) => (this.#done = r));
    this.local = new LocalChannel(this);
    this.ready = (async () => {
      const listener = await Listener.create(spec.address, {
        authkey: spec.authkey,
        family: spec.family ?? (spec.address === null ? 'AF_UNIX' : undefined),
        // Checked against each length prefix, before the frame is buffered.
        maxMessageSize: spec.maxMessage,
      });
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
    for (const { conn, state, ring } of this.#conns) {
      state.ctx.gone = true;
      for (const c of state.inflight.values()) c.abort();
      conn.close();
      if (ring) this.#dropRing(ring);
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
      let conn: SocketConnection;
      try {
        conn = await listener.accept();
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- shutdown() may set it while accept() waits
        if (this.#closed || listener.closed) return;
        // A peer that failed the challenge (or vanished during it): serve the others.
        continue;
      }
      this.#serve(conn);
    }
  }

  #serve(conn: SocketConnection): void {
    const state: ConnState = { ctx: { caller: `c${++this.#nextConn}`, gone: false }, inflight: new Map() };
    const entry: ServedConn = { conn, state, ring: undefined };
    this.#conns.add(entry);
    // Replies leave on the ring once the client upgraded (it then reads nothing else).
    const out = new Batcher((frame) => {
      const ring = entry.ring?.end;
      if (ring) {
        if (!ring.closed) ring.sendBytes(frame).catch(() => undefined);
      } else if (!conn.closed) conn.sendBytes(frame).catch(() => undefined);
    });
    // EOF, a broken, oversized or malformed frame: drop this connection, keep serving the others.
    const drop = (): void => {
      if (state.ctx.gone) return;
      state.ctx.gone = true;
      for (const c of state.inflight.values()) c.abort();
      this.#conns.delete(entry);
      conn.close();
      if (entry.ring) this.#dropRing(entry.ring);
    };
    const onMessage = (msg: unknown): void => {
      if (msg instanceof RefusedMessage) {
        this.#reply(out, msg.reqId!, FAILED, failureInfo(msg));
        return;
      }
      if (!Array.isArray(msg) || !Number.isSafeInteger(msg[0]) || (msg[0] as number) < 0 || typeof msg[1] !== 'string') {
        // A peer not speaking the protocol: drop it, keep serving the others.
        drop();
        return;
      }
      const reqId = msg[0] as number;
      if (reqId > 0) this.#dispatch(msg, state, (status, value) => this.#reply(out, reqId, status, value));
      else
        this.#dispatch(msg, state, (status, value) => {
          // A call nobody awaits (a lock proxy's release): only its failure is kept, for the
          // next call on the object. Nothing else of an unanswered request is reported.
          if (msg[1] === 'call' && typeof msg[2] === 'string' && status !== OK && status !== PROXY)
            (state.deferred ??= new Map()).set(msg[2], [status, value]);
        });
    };
    // Messages are handled as they are parsed: those of one read (a batch, or several frames)
    // are dispatched in one synchronous run, so their replies leave as one frame.
    readMessages(
      conn,
      this.#policy,
      (msg) => {
        if (Array.isArray(msg) && msg[1] === 'ring') this.#upgrade(entry, msg, out, onMessage, drop);
        else onMessage(msg);
      },
      // The socket's end is the client's, even when its requests come on a ring.
      () => {
        if (entry.ring) void entry.ring.finish();
        else drop();
      },
    );
  }

  // A client on this machine asks to go on over a pipe it made (see rings.ts). A request that
  // does not name one of its pipes, or comes twice, drops the connection.
  #upgrade(entry: ServedConn, msg: unknown[], out: Batcher, onMessage: (msg: unknown) => void, drop: () => void): void {
    const reqId = msg[0];
    if (entry.ring || typeof reqId !== 'number' || !Number.isSafeInteger(reqId) || reqId <= 0) {
      drop();
      return;
    }
    if (!ringsServed()) {
      this.#reply(out, reqId, FAILED, { name: 'ProcessError', message: 'this server keeps its connections on sockets', stack: '' });
      return;
    }
    let end: PipeEnd;
    try {
      end = adoptRing(msg[2], this.#spec.maxMessage);
    } catch {
      drop();
      return;
    }
    // The answer leaves on the socket, before anything on the ring.
    this.#reply(out, reqId, OK, true);
    out.flush();
    const state = entry.state;
    entry.ring = this.#rings.add(
      end,
      frameHandler(this.#policy, onMessage, drop, () => state.ctx.gone),
      drop,
      out.flush,
    );
  }

  #dropRing(ring: RingReader): void {
    this.#rings.remove(ring);
    ring.end.close();
  }

  #reply(out: Batcher, reqId: number, status: number, value: unknown): void {
    if (reqId === 0) return;
    let bytes: Uint8Array;
    try {
      bytes = encodeWire([reqId, status, value], 'result');
    } catch (err) {
      bytes = dumps([reqId, FAILED, failureInfo(err)]);
    }
    out.push(bytes);
  }

  /** @internal One request from `state`'s connection (or from inside the server). */
  #dispatch(msg: unknown[], state: ConnState, reply: (status: number, value: unknown) => void): void {
    const reqId = msg[0] as number;
    const op = msg[1] as string;
    const fail = (message: string): void => reply(FAILED, { name: 'ProcessError', message, stack: '' });
    try {
      switch (op) {
        case 'call': {
          // A peer is not bound by our types: each field is checked before use.
          const [, , id, method, args] = msg as [number, string, unknown, unknown, unknown[]];
          const h = typeof id === 'string' ? this.#objects.get(id) : undefined;
          if (!h) {
            fail(`no shared object with id ${String(id)} (it was released, or the manager restarted)`);
            return;
          }
          const earlier = reqId > 0 ? state.deferred?.get(id as string) : undefined;
          if (earlier) {
            // An unanswered call on this object failed: this call reports it instead of running.
            state.deferred!.delete(id as string);
            reply(earlier[0], earlier[1]);
            return;
          }
          if (typeof method !== 'string' || !h.exposed.has(method)) {
            fail(`method '${String(method)}' of ${h.typeid} object is not exposed`);
            return;
          }
          if (!Array.isArray(args)) {
            fail('args must be an array');
            return;
          }
          this.#invoke(h, method, args, reqId, state, reply);
          return;
        }
        case 'create': {
          const [, , typeid, args] = msg as [number, string, unknown, unknown[]];
          const e = typeof typeid === 'string' ? this.#registry.get(typeid) : undefined;
          if (!e) {
            fail(`unknown type id '${String(typeid)}'`);
            return;
          }
          if (!e.callable) {
            fail(`type id '${e.typeid}' has no callable in the server`);
            return;
          }
          if (!Array.isArray(args)) {
            fail('args must be an array');
            return;
          }
          const callable = e.callable as (...a: unknown[]) => unknown;
          this.#run(
            () => (isClass(callable) ? new (callable as unknown as new (...a: unknown[]) => unknown)(...args) : callable(...args)),
            reqId,
            state,
            (status, value) => {
              if (status !== OK) reply(status, value);
              else reply(PROXY, this.#register(value, e.typeid, e.exposed, e.methodToTypeid, e.proxytype));
            },
          );
          return;
        }
        case 'getvalue': {
          const h = this.#objects.get(msg[2] as string);
          if (!h) {
            fail(`no shared object with id ${String(msg[2])}`);
            return;
          }
          // A factory may have returned null or undefined.
          const o = h.obj as { _getvalue?: () => unknown } | null | undefined;
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
          fail(`unknown request '${op}'`);
      }
    } catch (err) {
      reply(FAILED, failureInfo(err));
    }
  }

  #invoke(
    h: Held,
    method: string,
    args: unknown[],
    reqId: number,
    state: ConnState,
    reply: (status: number, value: unknown) => void,
  ): void {
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
        const t = h.methodToTypeid && Object.prototype.hasOwnProperty.call(h.methodToTypeid, method) ? h.methodToTypeid[method] : undefined;
        if (status === OK && t) {
          const e = this.#registry.get(t);
          reply(PROXY, this.#register(value, t, e?.exposed ?? null, e?.methodToTypeid ?? null, e?.proxytype ?? null));
        } else reply(status, value);
      },
    );
  }

  // Run `fn` as the caller of `state`, with a cancellation signal; report its outcome.
  #run(fn: () => unknown, reqId: number, state: ConnState, done: (status: number, value: unknown) => void): void {
    const ctx = new RunContext(state);
    let result: unknown;
    const prev = currentCall;
    currentCall = ctx;
    try {
      result = fn();
    } catch (err) {
      done(THROWN, err);
      return;
    } finally {
      currentCall = prev;
    }
    if (
      result === null ||
      (typeof result !== 'object' && typeof result !== 'function') ||
      typeof (result as PromiseLike<unknown>).then !== 'function'
    ) {
      done(OK, result);
      return;
    }
    if (reqId > 0 && ctx.ctl) state.inflight.set(reqId, ctx.ctl);
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

  #register(
    obj: unknown,
    typeid: string,
    exposed: string[] | null,
    methodToTypeid: Record<string, string> | null,
    proxytype: string | FunctionOrClass | null,
  ): ProxyState {
    const list = exposed ?? publicMethods(obj);
    const id = (++this.#nextId).toString(16);
    this.#objects.set(id, { obj, typeid, exposed: new Set(list), exposedList: list, methodToTypeid, proxytype, refs: 1 });
    return {
      typeid,
      id,
      address: this.address,
      authkey: this.#spec.authkey,
      exposed: list,
      proxytype,
      grant: true,
      maxMessage: this.#spec.maxMessage,
    };
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
    // A factory may have returned null or undefined.
    const o = h.obj as { _dispose?: () => void } | null | undefined;
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
  send(): boolean {
    return false;
  }
}
