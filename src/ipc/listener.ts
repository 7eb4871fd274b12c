// Listener and Client: connections over sockets (Python: the socket half of
// `multiprocessing.connection`), the way unrelated processes and other machines talk.
//
// Wire format, as CPython's: every message is a 4-byte big-endian signed length and the bytes;
// a length of -1 is followed by an 8-byte unsigned length (messages over 2 GiB). An authkey turns
// on CPython's HMAC challenge (3.12+: `{sha256}` digest names; legacy HMAC-MD5 peers, Python up to
// 3.11, are answered and accepted as CPython 3.12 does), so a Python Listener or Client with the
// same key exchanges `sendBytes`/`recvBytes` messages with ours (`send` does not interoperate:
// Python pickles, we use structured clone).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';

import { HANDSHAKE_LIMIT, MAX_MESSAGE, SocketConnection, socketRefusal, TRUST_OPT_IN } from './socket.js';
import { AbortError, AuthenticationError, InvalidArgumentError, ProcessError, TimeoutError } from '../errors.js';
import { toModuleUrl, TRUST_ALL, trustModules, type ReceivePolicy } from '../reduction/policy.js';
import { registerType } from '../reduction/reduction.js';
import { authkeyBytes, deadlineOf, parked, type Authkey } from '../util.js';

// Loaded with the socket code: pipe ends relayed to other processes without the addon.
import './relay.js';

export { SocketConnection };

/** A socket address: `[host, port]` (TCP) or a filesystem path (Unix socket; `'\0name'` is Linux's abstract namespace). */
export type Address = [host: string, port: number] | string;
/** Python's address families. `'AF_UNIX'` is a Unix socket, the others TCP. */
export type Family = 'AF_INET' | 'AF_INET6' | 'AF_UNIX';
export type { Authkey };

export interface ListenerOptions {
  /** Inferred from the address when omitted; without an address, `'AF_INET'` on loopback. */
  family?: Family;
  /** Length of the kernel's queue of pending connections (Node's default 511 when omitted). */
  backlog?: number;
  /** When set, every accepted connection must pass the HMAC challenge both ways. Default: none. */
  authkey?: Authkey | null;
  /**
   * Longest message accepted from a peer, in bytes; a longer length prefix breaks that connection
   * (ERR_MP_BAD_MESSAGE) before its body is buffered. Default 64 MiB; at most a Buffer's size.
   */
  maxMessageSize?: number;
  /**
   * What `recv()` on the accepted connections may rebuild besides plain data and errors. Default:
   * nothing — a message naming a function, class or library object is refused with
   * UntrustedMessageError. A list of module paths or URLs: the functions and classes exported
   * from those modules (and instances of those classes) may arrive; receiving one imports its
   * module. `'all'`: anything `send()` can send, functions as source text included — **the peer
   * can then run any code in this process**.
   */
  trust?: Trust;
}

/** What a socket connection's `recv()` may rebuild: module paths or URLs whose exports a peer may name, or `'all'`. */
export type Trust = 'all' | readonly (string | URL)[];

export interface ClientOptions {
  /** Inferred from the address when omitted. */
  family?: Family;
  /** The Listener's authkey, when it has one. */
  authkey?: Authkey | null;
  /** Abandons connecting (and the handshake). */
  signal?: AbortSignal;
  /** Longest message accepted from the listener, in bytes (see ListenerOptions). Default 64 MiB. */
  maxMessageSize?: number;
  /** What `recv()` may rebuild besides plain data and errors (see ListenerOptions). Default: nothing. */
  trust?: Trust;
}

export interface AcceptOptions {
  /** Give up after this many ms (rejects with TimeoutError). Default: wait forever, as Python. */
  timeout?: number;
  signal?: AbortSignal;
}

// Messages up to this size go out as one write with their header (no Nagle stall, one syscall);
// larger ones as header + the caller's bytes, gathered by the kernel, never copied.

// ---------------------------------------------------------------------------------------------
// Authentication: CPython's deliver_challenge / answer_challenge (Lib/multiprocessing/connection.py).

const CHALLENGE = Buffer.from('#CHALLENGE#');
const WELCOME = Buffer.from('#WELCOME#');
const FAILURE = Buffer.from('#FAILURE#');
const MESSAGE_LENGTH = 40;
// A legacy (Python <= 3.11) challenge is 20 random bytes; a legacy answer a bare 16-byte HMAC-MD5.
const LEGACY_LENGTHS = [20, 16];
const DIGESTS: Record<string, string> = { md5: 'md5', sha256: 'sha256', sha384: 'sha384', sha3_256: 'sha3-256', sha3_384: 'sha3-384' };
const MAX_DIGEST_LEN = Math.max(...Object.keys(DIGESTS).map((d) => d.length));

function digestNameAndPayload(message: Buffer): [string, Buffer] {
  if (LEGACY_LENGTHS.includes(message.length)) return ['', message];
  if (message[0] === 0x7b /* { */) {
    const curly = message.indexOf(0x7d /* } */, 1);
    if (curly > 0 && curly <= MAX_DIGEST_LEN + 1) {
      const name = message.subarray(1, curly).toString('latin1');
      if (Object.prototype.hasOwnProperty.call(DIGESTS, name)) return [name, message.subarray(curly + 1)];
    }
  }
  throw new AuthenticationError(`unsupported message length (${message.length}), missing digest prefix, or unsupported digest`);
}

function hmac(name: string, key: Buffer, message: Buffer): Buffer {
  return crypto.createHmac(DIGESTS[name]!, key).update(message).digest();
}

function createResponse(key: Buffer, message: Buffer): Buffer {
  const [name] = digestNameAndPayload(message);
  // The MAC covers the whole message, digest prefix included. A legacy challenge gets a bare MD5.
  if (!name) return hmac('md5', key, message);
  return Buffer.concat([Buffer.from(`{${name}}`, 'latin1'), hmac(name, key, message)]);
}

function verifyChallenge(key: Buffer, message: Buffer, response: Buffer): void {
  const [name, mac] = digestNameAndPayload(response);
  const expected = hmac(name || 'md5', key, message);
  if (expected.length !== mac.length)
    throw new AuthenticationError(`expected a ${name || 'md5'} digest of ${expected.length} bytes, got ${mac.length}`);
  if (!crypto.timingSafeEqual(expected, mac)) throw new AuthenticationError('digest received was wrong: the peer has a different authkey');
}

/** Python's deliver_challenge: prove the peer knows the key. */
async function deliverChallenge(conn: SocketConnection, key: Buffer, digest = 'sha256'): Promise<void> {
  const message = Buffer.concat([Buffer.from(`{${digest}}`, 'latin1'), crypto.randomBytes(MESSAGE_LENGTH)]);
  await conn.sendBytes(Buffer.concat([CHALLENGE, message]));
  const response = await conn.recvBytes(HANDSHAKE_LIMIT);
  try {
    verifyChallenge(key, message, response);
  } catch (err) {
    await conn.sendBytes(FAILURE).catch(() => undefined);
    throw err;
  }
  await conn.sendBytes(WELCOME);
}

/** Python's answer_challenge: prove we know the key. */
async function answerChallenge(conn: SocketConnection, key: Buffer): Promise<void> {
  const challenge = await conn.recvBytes(HANDSHAKE_LIMIT);
  if (!challenge.subarray(0, CHALLENGE.length).equals(CHALLENGE))
    throw new AuthenticationError(`protocol error: expected a challenge, got a message of ${challenge.length} bytes`);
  const message = challenge.subarray(CHALLENGE.length);
  if (message.length < 20) throw new AuthenticationError(`challenge too short: ${message.length} bytes`);
  await conn.sendBytes(createResponse(key, message));
  const response = await conn.recvBytes(HANDSHAKE_LIMIT);
  if (!response.equals(WELCOME)) throw new AuthenticationError('digest sent was rejected: the peer has a different authkey');
}

function checkMaxMessageSize(n: unknown, what: string): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > MAX_MESSAGE)
    throw new InvalidArgumentError(`${what}: maxMessageSize must be an integer from 0 to ${MAX_MESSAGE}`);
  // The handshake's messages must fit.
  return Math.max(n as number, HANDSHAKE_LIMIT);
}

function toPolicy(trust: unknown, what: string): ReceivePolicy | undefined {
  if (trust === undefined) return undefined;
  if (trust === 'all') return TRUST_ALL;
  if (!Array.isArray(trust) || !trust.every((m) => typeof m === 'string' || m instanceof URL))
    throw new InvalidArgumentError(`${what}: trust must be 'all' or an array of module paths or URLs`);
  return trustModules(new Set((trust as (string | URL)[]).map(toModuleUrl)), { libraryObjects: false, optIn: TRUST_OPT_IN });
}

// ---------------------------------------------------------------------------------------------
// Addresses

const FAMILIES: readonly Family[] = ['AF_INET', 'AF_INET6', 'AF_UNIX'];

function isAddress(a: unknown): a is Address {
  if (typeof a === 'string') return a.length > 0;
  return (
    Array.isArray(a) &&
    a.length === 2 &&
    typeof a[0] === 'string' &&
    Number.isInteger(a[1]) &&
    (a[1] as number) >= 0 &&
    (a[1] as number) <= 65535
  );
}

/** Python's address_type. */
function addressType(a: Address): Family {
  if (typeof a === 'string') return 'AF_UNIX';
  return net.isIPv6(a[0]) ? 'AF_INET6' : 'AF_INET';
}

function checkFamily(family: unknown, address: Address | undefined, what: string): Family {
  // A Windows named pipe (Python's AF_PIPE) would otherwise bind a file of that odd name here.
  if (family === 'AF_PIPE' || (typeof address === 'string' && address.startsWith('\\\\.\\')))
    throw new InvalidArgumentError(
      `${what}: ${family === 'AF_PIPE' ? 'family AF_PIPE' : `the address ${JSON.stringify(address)}`} is a Windows named pipe, which this platform does not have; use a Unix socket path or [host, port]`,
    );
  if (family !== undefined && !FAMILIES.includes(family as Family))
    throw new InvalidArgumentError(`${what}: family must be one of ${FAMILIES.join(', ')}`);
  const f = (family as Family | undefined) ?? (address === undefined ? 'AF_INET' : addressType(address));
  if (address !== undefined && (f === 'AF_UNIX') !== (typeof address === 'string')) {
    throw new InvalidArgumentError(
      `${what}: family ${f} does not match the address ${JSON.stringify(address)} (a path is AF_UNIX, [host, port] is TCP)`,
    );
  }
  return f;
}

// Sockets at a path of our choosing go in a directory only this user can enter (mkdtemp makes it
// 0700), as CPython's get_temp_dir(): whatever the umask, no other local user can connect.
let privateDir: string | undefined;

function arbitraryUnixPath(): string {
  if (privateDir === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mp-${process.pid}-`));
    privateDir = dir;
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return path.join(privateDir, `listener-${crypto.randomBytes(6).toString('hex')}.sock`);
}

// Unix socket files of live listeners are removed when the process exits, as Python's Finalize does.
const liveUnixPaths = new Set<string>();
let exitHook = false;

/**
 * A bound socket accepting connections (Python: `multiprocessing.connection.Listener`).
 *
 * Binding is asynchronous in Node: `new Listener(...)` starts it and `accept()` waits for it;
 * `await listener.ready` (or `await Listener.create(...)`) waits for it explicitly and rejects if
 * the address cannot be bound. `address` is known once bound.
 */
export class Listener {
  readonly #server: net.Server;
  readonly #authkey: Buffer | undefined;
  readonly #maxMessageSize: number | undefined;
  readonly #policy: ReceivePolicy | undefined;
  readonly #family: Family;
  readonly #requested: Address;
  #bound: Address | undefined;
  #bindError: Error | undefined;
  #closed = false;
  #lastAccepted: Address | null = null;
  readonly #results: ({ conn: SocketConnection; from: Address } | { err: Error })[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #handshaking = new Set<SocketConnection>();
  #unixPath: string | undefined;
  /** Resolves (with the listener) once it is bound; rejects with the bind error. */
  readonly ready: Promise<this>;

  /**
   * @param address `[host, port]` (TCP; port 0 picks a free one) or a path (Unix socket).
   *   Default: `['127.0.0.1', 0]`, or a fresh path in the temp directory with `family: 'AF_UNIX'`.
   * @throws InvalidArgumentError for a bad address or option.
   */
  constructor(address?: Address | null, options: ListenerOptions = {}) {
    if (address !== undefined && address !== null && !isAddress(address)) {
      throw new InvalidArgumentError('Listener(address): address must be [host, port] (port 0..65535) or a socket path');
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('Listener(address, options): options must be an object');
    const { backlog } = options;
    if (backlog !== undefined && (!Number.isInteger(backlog) || backlog < 0))
      throw new InvalidArgumentError('Listener: backlog must be an integer >= 0');
    this.#maxMessageSize = checkMaxMessageSize(options.maxMessageSize, 'Listener');
    this.#policy = toPolicy(options.trust, 'Listener');
    this.#family = checkFamily(options.family, address ?? undefined, 'Listener');
    this.#authkey = authkeyBytes(options.authkey, 'Listener');
    const addr: Address =
      address ?? (this.#family === 'AF_UNIX' ? arbitraryUnixPath() : this.#family === 'AF_INET6' ? ['::1', 0] : ['127.0.0.1', 0]);
    this.#requested = addr;
    const server = (this.#server = net.createServer());
    server.on('connection', (s) => this.#onConnection(s));
    this.ready = new Promise<this>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.#bindError = err;
        this.#closed = true;
        this.#wake();
        reject(err);
      };
      server.once('error', onError);
      const listening = (): void => {
        server.off('error', onError);
        // Later errors (rare: accept failures) must not crash the process.
        server.on('error', () => undefined);
        const a = server.address();
        if (typeof addr === 'string') {
          this.#bound = addr;
          if (!addr.startsWith('\0')) {
            this.#unixPath = addr;
            liveUnixPaths.add(addr);
            if (!exitHook) {
              exitHook = true;
              process.on('exit', () => {
                for (const p of liveUnixPaths) fs.rmSync(p, { force: true });
              });
            }
          }
        } else if (a && typeof a === 'object') this.#bound = [a.address, a.port];
        if (this.#closed) this.#shutdown();
        else this.#updateRef();
        resolve(this);
      };
      if (typeof addr === 'string') server.listen({ path: addr, backlog }, listening);
      else server.listen({ host: addr[0], port: addr[1], backlog }, listening);
    });
    this.ready.catch(() => undefined);
  }

  /** Bind and resolve the listener once it listens. @throws the bind error (EADDRINUSE, EACCES, ...). */
  static async create(address?: Address | null, options: ListenerOptions = {}): Promise<Listener> {
    return new Listener(address, options).ready;
  }

  /**
   * The bound address: `[host, port]` with the real port, or the socket path.
   * @throws ProcessError ERR_MP_NOT_BOUND before a TCP listener is bound (await `ready`).
   */
  get address(): Address {
    if (this.#bound) return typeof this.#bound === 'string' ? this.#bound : [this.#bound[0], this.#bound[1]];
    if (typeof this.#requested === 'string' && !this.#bindError) return this.#requested;
    throw new ProcessError(
      this.#bindError
        ? `the listener could not bind: ${this.#bindError.message}`
        : 'the listener is not bound yet: await listener.ready first',
      { code: 'ERR_MP_NOT_BOUND', cause: this.#bindError },
    );
  }

  /** The address family (`'AF_INET'`, `'AF_INET6'` or `'AF_UNIX'`). */
  get family(): Family {
    return this.#family;
  }

  /** The peer address of the last accepted connection (`[host, port]`; `''` for Unix sockets), null before any. */
  get lastAccepted(): Address | null {
    return this.#lastAccepted;
  }

  /** Whether close() was called (or binding failed). */
  get closed(): boolean {
    return this.#closed;
  }

  #onConnection(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const from: Address = socket.remotePort !== undefined ? [socket.remoteAddress ?? '', socket.remotePort] : '';
    const key = this.#authkey;
    if (!key) {
      this.#results.push({ conn: new SocketConnection(socket, { maxMessageSize: this.#maxMessageSize, policy: this.#policy }), from });
      this.#wake();
      return;
    }
    // Each handshake runs on its own, so that a silent peer delays nobody else.
    const conn = new SocketConnection(socket, { maxMessageSize: this.#maxMessageSize, handshake: true, policy: this.#policy });
    this.#handshaking.add(conn);
    (async () => {
      await deliverChallenge(conn, key);
      await answerChallenge(conn, key);
    })().then(
      () => {
        this.#handshaking.delete(conn);
        if (this.#closed) {
          conn.close();
          return;
        }
        conn._authenticated();
        this.#results.push({ conn, from });
        this.#wake();
      },
      (err: unknown) => {
        this.#handshaking.delete(conn);
        conn.close();
        if (this.#closed) return;
        this.#results.push({ err: err as Error });
        this.#wake();
      },
    );
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  #updateRef(): void {
    // Listening alone does not keep the process alive; a pending accept() does.
    if (this.#waiters.size) this.#server.ref();
    else this.#server.unref();
  }

  /**
   * The next connection (Python: `accept`), authenticated when the listener has an authkey.
   * @throws AuthenticationError when that peer failed the challenge (the listener keeps
   *   listening; call accept() again); ProcessError ERR_MP_CLOSED once closed; the bind error.
   */
  async accept(options: AcceptOptions = {}): Promise<SocketConnection> {
    const { timeout, signal } = options;
    if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout)))
      throw new InvalidArgumentError('accept({ timeout }): timeout must be a number of milliseconds');
    const deadline = deadlineOf(timeout);
    for (;;) {
      if (this.#bindError) throw this.#bindError;
      if (this.#closed) throw new ProcessError('listener is closed', { code: 'ERR_MP_CLOSED' });
      const r = this.#results.shift();
      if (r) {
        if ('err' in r) throw r.err;
        this.#lastAccepted = r.from;
        return r.conn;
      }
      const woke = await parked(deadline, signal, (wake) => {
        this.#waiters.add(wake);
        if (this.#bound) this.#updateRef();
        return () => {
          this.#waiters.delete(wake);
          if (!this.#closed) this.#updateRef();
        };
      });
      if (!woke) throw new TimeoutError(`no connection within ${timeout} ms`);
    }
  }

  /** Stop listening (Python: `close`): pending accept() calls reject; a Unix socket file is removed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#bound) this.#shutdown();
    this.#wake();
  }

  #shutdown(): void {
    this.#server.close();
    this.#server.unref();
    for (const c of this.#handshaking) c.close();
    this.#handshaking.clear();
    for (const r of this.#results.splice(0)) if ('conn' in r) r.conn.close();
    if (this.#unixPath) {
      liveUnixPaths.delete(this.#unixPath);
      fs.rmSync(this.#unixPath, { force: true });
      this.#unixPath = undefined;
    }
  }

  /** Close at the end of an `await using` block. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async, so that a throw from close() rejects
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  toString(): string {
    const a = this.#bound ?? this.#requested;
    return `<Listener ${typeof a === 'string' ? a : `${a[0]}:${a[1]}`}${this.#authkey ? ' authkey' : ''}${this.#closed ? ' closed' : ''}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

registerType(
  Listener,
  {
    reduce: (_l: Listener, where?: string): never => {
      throw socketRefusal('Listener', where);
    },
    rebuild: (): never => {
      throw socketRefusal('Listener', undefined);
    },
  },
  'multiproc.Listener',
);

/**
 * Connect to a Listener (Python: `multiprocessing.connection.Client`); with `authkey`, answer its
 * challenge and challenge it in turn, as Python does.
 * @throws AuthenticationError when the keys differ; the connect error (ECONNREFUSED, ENOENT, ...).
 */
export async function Client(address: Address, options: ClientOptions = {}): Promise<SocketConnection> {
  if (!isAddress(address)) throw new InvalidArgumentError('Client(address): address must be [host, port] or a socket path');
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('Client(address, options): options must be an object');
  checkFamily(options.family, address, 'Client');
  const key = authkeyBytes(options.authkey, 'Client');
  const maxMessageSize = checkMaxMessageSize(options.maxMessageSize, 'Client');
  const policy = toPolicy(options.trust, 'Client');
  const { signal } = options;
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = typeof address === 'string' ? net.connect({ path: address }) : net.connect({ host: address[0], port: address[1] });
    const onAbort = (): void => {
      s.destroy();
      reject(new AbortError(undefined, { cause: signal!.reason }));
    };
    s.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  const conn = new SocketConnection(socket, { maxMessageSize, handshake: key !== undefined, policy });
  if (key) {
    const onAbort = (): void => conn.close();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await answerChallenge(conn, key);
      await deliverChallenge(conn, key);
    } catch (err) {
      conn.close();
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    conn._authenticated();
  }
  return conn;
}
