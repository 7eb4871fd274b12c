// The local workers of a Redis pool: `multiproc worker --parent` children of the caller,
// replaced when they die (as in the local pool), told each module a call names.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import { InvalidArgumentError } from '../errors.js';
import { inheritedExecArgv } from '../popen/popen.js';
import { reduceFunction } from '../reduction/functions.js';
import { modulePath } from './protocol.js';

/** @internal How to start a local worker. */
export interface LocalWorkerSpec {
  url: string;
  namespace: string;
  leaseMs: number;
  maxDeliveries: number;
  concurrency: number;
  /** Modules named at the pool's creation. */
  modules: ReadonlySet<string>;
  /** `file#export` and its arguments (JSON), run by each worker before its first task. */
  initializer?: string;
  initargs?: string;
}

/** @internal The set of local workers of one pool. */
export class LocalWorkers {
  readonly children: ChildProcess[] = [];
  /** Modules the workers were told since they started (a replacement starts with them). */
  readonly #told = new Set<string>();
  readonly #spec: LocalWorkerSpec;
  #respawns = 0;
  #stopping = false;

  constructor(spec: LocalWorkerSpec, n: number) {
    this.#spec = spec;
    for (let i = 0; i < n; i++) this.#start();
  }

  #start(): void {
    const s = this.#spec;
    const cli = path.join(__dirname, '..', 'cli', 'main.js');
    const args = [cli, 'worker', '--backend', s.url, '--namespace', s.namespace, '--lease-ms', String(s.leaseMs)];
    args.push('--max-deliveries', String(s.maxDeliveries), '--concurrency', String(s.concurrency), '--parent');
    for (const m of s.modules) args.push('--module', m);
    if (s.initializer) args.push('--initializer', s.initializer, '--initargs', s.initargs ?? '[]');
    for (const m of this.#told) if (!s.modules.has(m)) args.push('--module', m);
    // The caller's loaders (`--import tsx`) too, so a TypeScript task module loads as it does here.
    const child = spawn(process.execPath, [...inheritedExecArgv(), ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('error', () => undefined);
    this.children.push(child);
    // A local worker that died (a task killed it) is replaced; its chunks go to another worker
    // when their lease runs out.
    child.once('exit', (code) => {
      // An initializer that throws would throw again in a replacement: the worker is not replaced.
      if (code === 3) return;
      if (this.#stopping || this.#respawns++ > 1000) return;
      this.children.splice(this.children.indexOf(child), 1);
      this.#start();
    });
  }

  /** Tell the workers a module (resolves once each can call it). */
  async allow(file: string): Promise<void> {
    this.#told.add(file);
    await Promise.all(
      this.children
        .filter((c) => c.connected)
        .map(
          (c) =>
            new Promise<void>((resolve) => {
              const on = (m: unknown): void => {
                if ((m as { allowed?: string } | null)?.allowed !== file) return;
                c.off('message', on);
                c.off('exit', gone);
                resolve();
              };
              const gone = (): void => resolve();
              c.on('message', on);
              c.once('exit', gone);
              c.send({ allow: file });
            }),
        ),
    );
  }

  /** Replace no more; signal the workers (SIGTERM drains them, SIGKILL stops them). */
  stop(signal: NodeJS.Signals): void {
    this.#stopping = true;
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  }

  /** Resolves once every worker has exited. */
  async exited(): Promise<void> {
    await Promise.all(
      this.children.map((c) =>
        c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r())),
      ),
    );
  }
}

/** @internal The initializer as local workers are told it. @throws InvalidArgumentError, NotTransferableError. */
export function initializer(fn: unknown, args: readonly unknown[] | undefined): { initializer?: string; initargs?: string } {
  if (fn === undefined || fn === null) return {};
  if (typeof fn !== 'function') throw new InvalidArgumentError('RedisPool({ initializer }): initializer must be a function');
  const ref = reduceFunction(fn as (...a: never[]) => unknown, 'the initializer', false);
  const exportName = ref.kind === 'cjs' || ref.kind === 'esm' ? ref.exportName : null;
  if (!exportName) throw new InvalidArgumentError('RedisPool({ initializer }): a named export of a module');
  let initargs: string;
  try {
    initargs = JSON.stringify(args ?? []);
  } catch (err) {
    throw new InvalidArgumentError(`RedisPool({ initargs }): JSON data, got ${String(err)}`);
  }
  return { initializer: `${modulePath(ref)}#${exportName}`, initargs };
}
