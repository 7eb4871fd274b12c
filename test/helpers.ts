// Shared by the test files: run one body on both backends, and check that a test leaves no
// child process or worker thread behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as v8 from 'node:v8';

import { standingChildren } from '../src/popen/forkserver.js';
import { liveThreads } from '../src/popen/thread.js';
import { trackerPid } from '../src/shm/resource_tracker.js';
import { trimArenas } from '../src/shm/segment.js';
import { dropSparePipes } from '../src/pool/spare_pipes.js';
import { activeChildren, getContext, type BaseContext, type Process, type StartMethod } from '../src/index.js';
import { childPids, pidAlive } from '../src/platform.js';

/**
 * The start methods every backend-neutral test runs on: spawn and thread by default;
 * MULTIPROC_TEST_METHODS (e.g. `forkserver`) picks others; every backend-neutral test passes on
 * forkserver too, and a selection of them runs on it in `npm test` (scripts/run-tests.mjs).
 */
export const METHODS: StartMethod[] = (process.env.MULTIPROC_TEST_METHODS?.split(',') as StartMethod[] | undefined) ?? ['spawn', 'thread'];

/** Run `body` once per start method, each in its own describe block with a leak check. */
export function describeBackends(name: string, body: (ctx: BaseContext, method: StartMethod) => void): void {
  for (const method of METHODS) {
    describe(`${name} [${method}]`, () => {
      afterEach(assertNoLeftovers);
      body(getContext(method), method);
    });
  }
}

/** Our children, less the resource tracker and the forkserver's standing children (which live until this process ends, by design). */
function ourChildren(): number[] {
  const tracker = trackerPid();
  const standing = new Set(standingChildren().map((c) => c.pid));
  return childPids().filter((p) => p !== tracker && !standing.has(p));
}

/** Segments in /dev/shm that this process created (their names start with its pid). */
export function ourSegments(): string[] {
  if (!fs.existsSync('/dev/shm')) return [];
  const prefix = `mp-${process.pid.toString(36)}-`;
  return fs.readdirSync('/dev/shm').filter((n) => n.startsWith(prefix));
}

/**
 * Fails when this process still has child processes, live worker threads, or shared-memory
 * segments it created that nothing references any more (garbage is collected first: run the
 * tests with --expose-gc, as `npm test` does).
 */
export async function assertNoLeftovers(): Promise<void> {
  // A child that was just reaped by Node may linger in /proc for a moment, and finalizers run
  // a little after a collection.
  const deadline = Date.now() + 2000;
  const collect = async (): Promise<void> => {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 20));
    // Arenas with no block in use are kept for the next small object, pipes made ahead for the
    // next forkserver pool's workers: not leaks.
    trimArenas();
    dropSparePipes();
  };
  await collect();
  while ((ourChildren().length || liveThreads() || ourSegments().length) && Date.now() < deadline) await collect();
  assert.deepEqual(ourChildren(), [], `child processes left behind: ${ourChildren().join(', ')}`);
  assert.equal(liveThreads(), 0, 'worker threads left behind');
  if ((globalThis as { gc?: () => void }).gc) assert.deepEqual(ourSegments(), [], 'shared-memory segments left behind');
}

const tmpDirs: string[] = [];

/** A fresh temporary directory, removed when the process exits. */
export function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-test-'));
  if (tmpDirs.push(dir) === 1) process.on('exit', () => tmpDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  return dir;
}

/** Read a JSON file a child wrote. */
export function readJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

export const fixture = (name: string): string => path.join(__dirname, 'fixtures', name);

/** Run a script in a fresh node process; resolves with its output and exit status. */
export function runNode(
  args: string[],
  options: {
    timeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    onStdout?: (chunk: string, child: import('node:child_process').ChildProcess) => void;
    /** What runs the args instead of this node: a command and its first arguments (which end with a node). */
    command?: readonly string[];
  } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const [cmd = process.execPath, ...pre] = options.command ?? [];
    const child = spawn(cmd, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      options.onStdout?.(d, child);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 30_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, pid: child.pid ?? -1 });
    });
  });
}

/** What a scenario printed: JSON from another process, whose fields each test knows. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of another process; each test reads its own fields
export type ScenarioResult = Record<string, any>;

/**
 * Run a scenario of a fixture in a process of its own (`node --expose-gc fixtures/<file> ...args`)
 * and resolve its last stdout line, parsed as JSON. The process must exit with 0, and once it
 * has, no segment made by it or by anything it started may be left (they carry a tag of their
 * own, which the resource tracker may need a moment to unlink).
 */
export async function runScenario(file: string, args: string[], timeoutMs = 60_000): Promise<ScenarioResult> {
  const tag = `s${randomBytes(5).toString('hex')}`;
  const run = await runNode(['--expose-gc', fixture(file), ...args], { timeoutMs, env: { ...process.env, MULTIPROC_SHM_TAG: tag } });
  assert.equal(run.code, 0, `${file} ${args.join(' ')} exited with ${run.code} (${run.signal}):\n${run.stderr}`);
  const left = (): string[] => fs.readdirSync('/dev/shm').filter((n) => n.endsWith(`-${tag}`));
  for (let i = 0; i < 250 && left().length; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(left(), [], `segments left after ${file} ${args.join(' ')} ended`);
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as ScenarioResult;
}

/** Poll until `pid` is gone or `ms` passed; resolves with whether it is gone. */
export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

/** Start a child of `ctx` running `target(...args)`. */
export function start<A extends readonly unknown[]>(
  ctx: BaseContext,
  target: (...args: A) => unknown,
  args: A,
  daemon = false,
): Process<A> {
  const p = new ctx.Process<A>({ target, args, daemon });
  p.start();
  return p;
}

/**
 * SIGKILL and reap the children a failed test left running: against a stopped server they would
 * retry for ever and keep the test process, and so the run, from ending.
 */
export async function killLeftoverChildren(): Promise<void> {
  const left = activeChildren();
  for (const p of left) p.kill();
  await Promise.all(left.map((p) => p.join(5000)));
}

/** Join every child (each within `timeout` ms) and assert that all exited with 0. */
export async function joinAll(ps: Process[], timeout = 30_000): Promise<void> {
  for (const p of ps) await p.join(timeout);
  assert.deepEqual(
    ps.map((p) => p.exitcode),
    ps.map(() => 0),
  );
}

/** Resolve `promise` (or what `promise()` returns) and how long it took, in ms. */
export async function timed<T>(promise: Promise<T> | (() => Promise<T>)): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await (typeof promise === 'function' ? promise() : promise);
  return [v, performance.now() - t0];
}

// ---------------------------------------------------------------------------------------------
// A peer that speaks the socket wire by hand (4-byte big-endian length + bytes, and CPython's
// HMAC challenge), for tests that send what the library itself would never send.

/** A raw socket peer: frames out and in, and the handshake of an authkey, written by hand. */
export class RawPeer {
  readonly #socket: net.Socket;
  #buffered = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  /** Resolves once the other side closed the connection (or it broke). */
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffered = Buffer.concat([this.#buffered, d]);
      this.#waiter?.();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.#waiter?.());
  }

  /** Connect to `address`; with `authkey`, answer the listener's challenge and challenge it back. */
  static async connect(address: string | [string, number], authkey?: Uint8Array | string): Promise<RawPeer> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = typeof address === 'string' ? net.connect(address) : net.connect(address[1], address[0]);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const peer = new RawPeer(socket);
    if (authkey !== undefined) {
      const key = typeof authkey === 'string' ? Buffer.from(authkey) : Buffer.from(authkey);
      const mac = (m: Buffer): Buffer => Buffer.concat([Buffer.from('{sha256}'), createHmac('sha256', key).update(m).digest()]);
      const challenge = await peer.recvFrame();
      assert.equal(challenge.subarray(0, 11).toString(), '#CHALLENGE#');
      await peer.sendFrame(mac(challenge.subarray(11)));
      assert.equal((await peer.recvFrame()).toString(), '#WELCOME#');
      const message = Buffer.concat([Buffer.from('{sha256}'), randomBytes(40)]);
      await peer.sendFrame(Buffer.concat([Buffer.from('#CHALLENGE#'), message]));
      assert.deepEqual(await peer.recvFrame(), mac(message));
      await peer.sendFrame(Buffer.from('#WELCOME#'));
    }
    return peer;
  }

  /** Write raw bytes; resolves when the socket took them (false once the peer is gone). */
  write(bytes: Uint8Array): Promise<boolean> {
    if (this.#socket.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => this.#socket.write(bytes, (err) => resolve(!err)));
  }

  /** Write one frame: its length, then its bytes. */
  sendFrame(payload: Uint8Array): Promise<boolean> {
    const head = Buffer.alloc(4);
    head.writeInt32BE(payload.length);
    return this.write(Buffer.concat([head, payload]));
  }

  /** The next frame from the other side. @throws Error when it closed first. */
  async recvFrame(): Promise<Buffer> {
    for (;;) {
      if (this.#buffered.length >= 4) {
        const n = this.#buffered.readInt32BE(0);
        if (this.#buffered.length >= 4 + n) {
          const frame = this.#buffered.subarray(4, 4 + n);
          this.#buffered = this.#buffered.subarray(4 + n);
          return frame;
        }
      }
      if (this.#socket.destroyed) throw new Error('the other side closed the connection');
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }

  get isClosed(): boolean {
    return this.#socket.destroyed;
  }

  close(): void {
    this.#socket.destroy();
  }
}

// The markers of the library's serialized data (src/reduction/reduction.ts), for crafted messages.
const MARK = '\u0000multiproc';
const ROOT = '\u0000multiproc.root';

/** Crafted messages: what a peer could send in place of what `send()` produces. */
export const crafted = {
  /** A serialized message holding placeholders. */
  message: (value: unknown): Buffer => v8.serialize({ [ROOT]: value }),
  /** A function sent by value: `source` is evaluated by whoever rebuilds it. */
  source: (source: string): object => ({ [MARK]: 'fn', ref: { kind: 'source', source, name: 'x' } }),
  /** A function named by reference to an ES module. */
  esm: (file: string, exportName: string): object => ({
    [MARK]: 'fn',
    ref: { kind: 'esm', url: pathToFileURL(file).href, exportName, name: exportName },
  }),
  /** A function named by reference to a CommonJS module (`exportName` null: module.exports). */
  cjs: (file: string, exportName: string | null): object => ({
    [MARK]: 'fn',
    ref: { kind: 'cjs', file, exportName, name: exportName ?? '' },
  }),
  /** An instance of the class `cls` (a reference as `esm`/`cjs` make), with `fields`. */
  instance: (cls: object, fields: object): object => ({ [MARK]: 'obj', cls: (cls as { ref: unknown }).ref, custom: false, state: fields }),
  /** An error whose class is `cls` (a reference as `esm`/`cjs` make), its nearest built-in being `builtin`. */
  error: (cls: object, builtin: string, name: string, message: string): object => ({
    [MARK]: 'err',
    cls: (cls as { ref: unknown }).ref,
    builtin,
    name,
    message,
    stack: `${name}: ${message}\n    at somewhere`,
    props: {},
    cause: undefined,
  }),
  /** A library object of type `tag` (a lock, a queue, a proxy...) with its state. */
  library: (tag: string, state: unknown): object => ({ [MARK]: 'lib', tag, state }),
};

/** Files the side-effect fixtures wrote in `dir` (they write one when imported). */
export function sideEffects(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.startsWith('side-effect-'));
}
