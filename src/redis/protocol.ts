// The wire protocol of the Redis pool, shared by callers and workers. Every key of a namespace
// carries the hash tag `{ns}`, so a namespace lives on one slot of a Redis Cluster and its
// MULTI blocks stay valid there.
//
// Tasks: one stream per namespace, read by the consumer group `workers`. An entry is a bundle
// of the chunks one caller sent in the same tick (one entry per task would cost the server, the
// caller and the worker a command each per task):
//   c: caller id, m: JSON { f: [[function, module sha256], ...], t: [[chunk id, kind, index in f], ...] },
//   p: the serialized arguments (or items) of each chunk, in the order of t, each after its length.
// A worker answers into the caller's own reply stream, one entry per caller per batch
// (i: chunk ids joined by commas, r: each chunk's serialized [ok, value] after its length), in the same MULTI as the XACK and XDEL
// of the bundles it finished, so a bundle leaves the queue exactly when its last answer is
// written (never lost, never twice from one delivery). Redeliveries after a lost lease can
// answer twice: the caller drops the second answer by chunk id.
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
  retry: string;
  reply: (caller: string) => string;
  worker: (id: string) => string;
  workers: string;
  stats: string;
  dead: string;
} {
  const p = `mp:{${ns}}`;
  return {
    tasks: `${p}:tasks`,
    retry: `${p}:retry`,
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

/** @internal One chunk of a bundle. */
export interface WireChunk {
  id: number;
  kind: number;
  /** Index of its function in the bundle's table. */
  fn: number;
  payload: Buffer;
}

/** @internal A bundle as a worker reads it. */
export interface Bundle {
  caller: string;
  /** Deliveries before this entry (a redelivered bundle is split into entries that carry its count). */
  before: number;
  fns: [TaskFunction, string][];
  chunks: WireChunk[];
}

/** @internal The fields of a bundle entry; `fns` are JSON texts of [function, hash]. */
export function bundleFields(caller: string, fns: readonly string[], chunks: readonly WireChunk[], before = 0): (string | Buffer)[] {
  let t = '';
  for (const c of chunks) t += `${t ? ',' : ''}[${c.id},${c.kind},${c.fn}]`;
  return ['c', caller, 'm', `{"f":[${fns.join(',')}],"t":[${t}],"d":${before}}`, 'p', frame(chunks.map((c) => c.payload))];
}

// Many buffers as one field, each after its length (u32 LE): the client writes every argument
// of a command separately, so one field per chunk cost a write each.
function frame(bufs: readonly Buffer[]): Buffer {
  let n = 0;
  for (const b of bufs) n += 4 + b.length;
  const out = Buffer.allocUnsafe(n);
  let at = 0;
  for (const b of bufs) {
    out.writeUInt32LE(b.length, at);
    b.copy(out, at + 4);
    at += 4 + b.length;
  }
  return out;
}

function unframe(buf: Buffer, count: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (out.length < count && at + 4 <= buf.length) {
    const n = buf.readUInt32LE(at);
    out.push(buf.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  if (out.length !== count || at !== buf.length) throw new InvalidArgumentError('a task bundle or reply with a damaged payload');
  return out;
}

/** @internal Read a bundle entry. @throws InvalidArgumentError for an entry of another format. */
export function readBundle(flat: Buffer[]): Bundle {
  if (flat.length < 4 || flat[0]!.toString() !== 'c' || flat[2]!.toString() !== 'm')
    throw new InvalidArgumentError('not a task bundle of this version of multiproc');
  const m = JSON.parse(flat[3]!.toString()) as { f: [TaskFunction, string][]; t: [number, number, number][]; d?: number };
  if (flat.length !== 6) throw new InvalidArgumentError('a task bundle without its payload');
  const payloads = unframe(flat[5]!, m.t.length);
  return {
    caller: flat[1]!.toString(),
    before: m.d ?? 0,
    fns: m.f,
    chunks: m.t.map(([id, kind, fn], i) => ({ id, kind, fn, payload: payloads[i]! })),
  };
}

/** @internal One answer as a caller reads it. */
export interface WireAnswer {
  id: number;
  body: Buffer;
  /** Microseconds the worker spent running the chunk. */
  runUs: number;
}

/**
 * @internal The fields of a reply entry: "chunk id/run µs" pairs, each chunk's serialized
 * [ok, value], and the worker that ran them.
 */
export function replyFields(
  worker: string,
  ids: readonly number[],
  runUs: readonly number[],
  bodies: readonly Buffer[],
): (string | Buffer)[] {
  return ['i', ids.map((id, j) => `${id}/${Math.round(runUs[j]!)}`).join(','), 'r', frame(bodies), 'w', worker];
}

/**
 * @internal Split a redelivered bundle, in one script: each chunk becomes an entry of its own in
 * the retry stream (carrying the deliveries so far), the bundle leaves the pending list and the
 * task stream, and the caller learns each chunk's new entry (`m`: "id=entry,..." in its reply
 * stream), so its check for entries the server lost follows them. Workers take retries one at a
 * time, holding nothing else: a chunk that kills its worker no longer costs the others a delivery.
 * KEYS: tasks, retry, reply. ARGV: group, bundle entry id, caller, then (chunk id, meta, payload) per chunk.
 */
export const SPLIT_SCRIPT = `
local moved = {}
for i = 4, #ARGV, 3 do
  local e = redis.call('XADD', KEYS[2], '*', 'c', ARGV[3], 'm', ARGV[i + 1], 'p', ARGV[i + 2])
  moved[#moved + 1] = ARGV[i] .. '=' .. e
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'm', table.concat(moved, ','))
return #moved
`;

/**
 * @internal A worker's answers of one turn, in one command (a MULTI of its five costs the server
 * and both clients more): one reply entry per caller, then the XACK and XDEL of the entries
 * whose last chunk they answer.
 * KEYS: tasks, retry, then each caller's reply stream. ARGV: group, number of task entries,
 * number of retry entries, worker id, then (ids, bodies) per reply stream, then the task
 * entries, then the retry entries.
 */
export const ANSWER_SCRIPT = `
local a = 5
for j = 3, #KEYS do
  redis.call('XADD', KEYS[j], '*', 'i', ARGV[a], 'r', ARGV[a + 1], 'w', ARGV[4])
  a = a + 2
end
for s = 1, 2 do
  local n = tonumber(ARGV[s + 1])
  if n > 0 then
    redis.call('XACK', KEYS[s], ARGV[1], unpack(ARGV, a, a + n - 1))
    redis.call('XDEL', KEYS[s], unpack(ARGV, a, a + n - 1))
    a = a + n
  end
end
return a
`;

/** @internal Read a reply entry: [chunk id, serialized answer] pairs, or the chunks moved by a split. */
export function readReply(flat: Buffer[]): { worker: string; answers: WireAnswer[] } | Map<number, string> {
  if (flat.length === 2 && flat[0]!.toString() === 'm')
    return new Map(
      flat[1]!
        .toString()
        .split(',')
        .map((p) => p.split('=') as [string, string])
        .map(([id, e]) => [Number(id), e] as [number, string]),
    );
  if (flat.length !== 6 || flat[0]!.toString() !== 'i') return { worker: '', answers: [] };
  const ids = flat[1]!.toString().split(',');
  const bodies = unframe(flat[3]!, ids.length);
  return {
    worker: flat[5]!.toString(),
    answers: ids.map((p, j) => {
      const [id, us] = p.split('/');
      return { id: Number(id), body: bodies[j]!, runUs: Number(us) };
    }),
  };
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

/** @internal Compare two stream entry ids. */
export function cmpId(a: string, b: string): number {
  const [a1, a2] = a.split('-').map(Number) as [number, number];
  const [b1, b2] = b.split('-').map(Number) as [number, number];
  return a1 - b1 || a2 - b2;
}
