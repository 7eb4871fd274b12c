// The wire protocol of the Redis pool, shared by callers and workers. Every key of a namespace
// carries the hash tag `{ns}`, so a namespace lives on one slot of a Redis Cluster and its
// MULTI blocks stay valid there.
//
// Tasks: one stream per namespace, read by the consumer group `workers`. An entry is one chunk:
//   c: caller id, i: chunk id, k: kind, f: the function as { kind, module, export, name },
//   h: sha256 of the module file, p: the serialized arguments (or items).
// A worker answers into the caller's own reply stream, in the same MULTI as its XACK and XDEL,
// so a result is written exactly when the task leaves the queue (never lost, never twice
// from one delivery). Redeliveries after a lost lease can answer twice: the caller drops the
// second answer by chunk id.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

import { InvalidArgumentError } from '../errors.js';
import type { FunctionRef } from '../reduction/functions.js';
import type { Redis } from 'ioredis';

/** @internal Task kinds (as the local pool's). */
export const APPLY = 0;
export const MAP = 1;
export const STARMAP = 2;

/** @internal The consumer group every worker of a namespace reads tasks through. */
export const GROUP = 'workers';

/** Defaults of the Redis pool and worker. */
export const DEFAULT_LEASE_MS = 5000;
export const DEFAULT_MAX_DELIVERIES = 3;

/** @internal The keys of a namespace. */
export function keys(ns: string): {
  tasks: string;
  reply: (caller: string) => string;
  worker: (id: string) => string;
  workers: string;
  stats: string;
  dead: string;
} {
  const p = `mp:{${ns}}`;
  return {
    tasks: `${p}:tasks`,
    reply: (caller) => `${p}:reply:${caller}`,
    worker: (id) => `${p}:worker:${id}`,
    workers: `${p}:worker:*`,
    stats: `${p}:stats`,
    dead: `${p}:dead`,
  };
}

/** @internal What a task says about its function: the module, by its own name and by content. */
export interface TaskFunction {
  kind: 'cjs' | 'esm';
  /** The module's path (cjs) or URL (esm) on the caller's machine: for messages and matching by name. */
  module: string;
  exportName: string | null;
  name: string;
}

/** @internal The module file of a function reference, as a path. */
export function modulePath(ref: FunctionRef): string {
  if (ref.kind === 'cjs') return ref.file;
  if (ref.kind === 'esm') return ref.url.startsWith('file:') ? fileURLToPath(ref.url) : ref.url;
  throw new InvalidArgumentError('a Redis pool sends functions by reference only (an export of a module file)');
}

const hashes = new Map<string, string>();

/** @internal sha256 of a module file's content (hex), cached per path for the process's life. */
export function moduleHash(file: string): string {
  let h = hashes.get(file);
  if (!h) {
    h = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    hashes.set(file, h);
  }
  return h;
}

/** @internal Forget cached hashes (a worker re-reading its modules). */
export function forgetHashes(): void {
  hashes.clear();
}

/** @internal The namespace, checked: it goes into keys and must not break the hash tag. */
export function checkNamespace(ns: unknown): string {
  if (typeof ns !== 'string' || !/^[A-Za-z0-9_.:-]{1,100}$/.test(ns))
    throw new InvalidArgumentError(`Redis pool: namespace must be 1-100 characters of A-Z a-z 0-9 _ . : -, got ${String(ns)}`);
  return ns;
}

/** @internal Turn a flat [field, value, ...] reply of Redis into a map of Buffers. */
export function fieldsOf(flat: Buffer[]): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(flat[i]!.toString(), flat[i + 1]!);
  return m;
}

/** @internal An XGROUP CREATE that is fine when the group exists already. */
export async function ensureGroup(cmd: Redis, tasks: string): Promise<void> {
  try {
    await cmd.call('XGROUP', 'CREATE', tasks, GROUP, '0', 'MKSTREAM');
  } catch (err) {
    if (!(err as Error).message.includes('BUSYGROUP')) throw err;
  }
}

/** @internal Load ioredis when a Redis pool or worker is first used (`require('multiproc')` does not). */
export function loadRedis(): typeof import('ioredis').Redis {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy: only Redis users pay for it
  return (require('ioredis') as typeof import('ioredis')).Redis;
}
