// Shared by the test files: run one body on both backends, and check that a test leaves no
// child process or worker thread behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe } from 'node:test';

import { standingChildren } from '../src/popen/forkserver.js';
import { liveThreads } from '../src/popen/thread.js';
import { trackerPid } from '../src/shm/resource_tracker.js';
import { getContext, type BaseContext, type Process, type StartMethod } from '../src/index.js';
import { childPids, pidAlive } from '../src/platform.js';

export const METHODS: StartMethod[] = ['spawn', 'thread'];

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
  };
  await collect();
  while ((ourChildren().length || liveThreads() || ourSegments().length) && Date.now() < deadline) await collect();
  assert.deepEqual(ourChildren(), [], `child processes left behind: ${ourChildren().join(', ')}`);
  assert.equal(liveThreads(), 0, 'worker threads left behind');
  if ((globalThis as { gc?: () => void }).gc) assert.deepEqual(ourSegments(), [], 'shared-memory segments left behind');
}

/** A fresh temporary directory, removed when the process exits. */
export function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-test-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
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
  } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
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
