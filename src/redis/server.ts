// What a namespace of the Redis pool holds, for `multiproc status`: workers (their heartbeat
// keys, with the time left before they expire), queue depth, chunks in flight, retried and
// dead-lettered chunks.
import { checkNamespace, GROUP, keys, loadRedis } from './protocol.js';

/** One worker as its heartbeat says. */
export interface RedisWorkerStatus {
  id: string;
  pid: number;
  host: string;
  running: number;
  concurrency: number;
  draining: boolean;
  /** Milliseconds before the heartbeat expires (a worker that died disappears then). */
  ttlMs: number;
}

/** A namespace's state. */
export interface RedisStatus {
  namespace: string;
  workers: RedisWorkerStatus[];
  /** Chunks not yet read by any worker. */
  queued: number;
  /** Chunks read and not yet answered. */
  inFlight: number;
  /** Chunks taken over from a worker whose lease ran out. */
  retried: number;
  /** Chunks given up after maxDeliveries (WorkerLostError). */
  dead: number;
}

/** Read a namespace's state. @throws RedisConnectionError-like errors of ioredis when the server is unreachable. */
export async function redisStatus(url: string, namespace: string): Promise<RedisStatus> {
  const k = keys(checkNamespace(namespace));
  const Redis = loadRedis();
  const r = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const workers: RedisWorkerStatus[] = [];
    let cursor = '0';
    do {
      const [next, found] = await r.scan(cursor, 'MATCH', k.workers, 'COUNT', 1000);
      cursor = next;
      for (const key of found) {
        const [info, ttl] = await Promise.all([r.get(key), r.pttl(key)]);
        if (info) workers.push({ ...(JSON.parse(info) as Omit<RedisWorkerStatus, 'ttlMs'>), ttlMs: ttl });
      }
    } while (cursor !== '0');
    let queued = 0;
    let inFlight = 0;
    try {
      const groups = (await r.call('XINFO', 'GROUPS', k.tasks)) as unknown[][];
      for (const g of groups) {
        const m = new Map<string, unknown>();
        for (let i = 0; i + 1 < g.length; i += 2) m.set(String(g[i]), g[i + 1]);
        if (m.get('name') !== GROUP) continue;
        inFlight = Number(m.get('pending') ?? 0);
        queued = Math.max(0, Number(m.get('lag') ?? 0));
      }
    } catch {
      // no stream yet: nothing queued
    }
    const stats = await r.hgetall(k.stats);
    return { namespace, workers, queued, inFlight, retried: Number(stats.retried ?? 0), dead: Number(stats.dead ?? 0) };
  } finally {
    r.disconnect();
  }
}
