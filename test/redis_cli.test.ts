// `multiproc worker` and `multiproc status` against a real redis-server: a remote worker serves
// a pool that starts none of its own, SIGTERM drains it, a stale or unknown module is refused
// with a named error, and status lists workers and counters.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { ModuleNotAllowedError, RedisPool, StaleModuleError } from '../src/index.js';
import { redisStatus } from '../src/redis/server.js';
import { fixture, tmpDir } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

const MAIN = path.join(__dirname, '..', 'src', 'cli', 'main.js');
type Tasks = typeof import('./fixtures/redis_tasks.mjs');
let t: Tasks;
let server: RedisServer;
const dir = tmpDir();

/** Start `multiproc worker`; resolves once its heartbeat is in Redis. */
async function worker(ns: string, module: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, [MAIN, 'worker', '--backend', server.url, '--namespace', ns, '--module', module, '--lease-ms', '500'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const started = new Promise<void>((resolve, reject) => {
    let err = '';
    c.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('reading')) resolve();
    });
    c.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${err}`)));
  });
  await started;
  return c;
}

const exited = (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once('exit', (code) => r(code)));

describe('multiproc worker and status', { skip: redisMissing }, () => {
  before(async () => {
    t = (await import(pathToFileURL(fixture('redis_tasks.mjs')).href)) as Tasks;
    server = await RedisServer.start();
  });
  after(async () => {
    await server.stop();
  });

  test('a remote worker serves a pool with no local worker; status lists it; SIGTERM drains it', async () => {
    const ns = randomNamespace();
    const w = await worker(ns, fixture('redis_tasks.mjs'));
    try {
      await using pool = new RedisPool({ url: server.url, namespace: ns, processes: 0 });
      assert.deepEqual(await pool.map(t.sqr, [1, 2, 3]), [1, 4, 9]);
      const s = await redisStatus(server.url, ns);
      assert.equal(s.workers.length, 1);
      assert.equal(s.workers[0]!.pid, w.pid);
      const out = spawnSync(process.execPath, [MAIN, 'status', '--backend', server.url, '--namespace', ns], { encoding: 'utf8' });
      assert.equal(out.status, 0, out.stderr);
      assert.match(out.stdout, /1 worker\(s\), queued 0, in flight 0, retried 0, dead-lettered 0/);
      // Drain: the chunk in hand finishes, then the worker exits.
      const slow = pool.apply(t.slowSqr, [6, 300]);
      while ((await redisStatus(server.url, ns)).inFlight === 0) await new Promise((r) => setTimeout(r, 10));
      w.kill('SIGTERM');
      assert.equal(await slow, 36);
      assert.equal(await exited(w), 0);
      assert.equal((await redisStatus(server.url, ns)).workers.length, 0);
    } finally {
      w.kill('SIGKILL');
    }
  });

  test('multiproc worker refuses a bad --concurrency by name', () => {
    const r = spawnSync(process.execPath, [MAIN, 'worker', '--backend', server.url, '--concurrency', 'many'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--concurrency must be an integer >= 1, got 'many'/);
  });

  test('a worker refuses a changed module (StaleModuleError) and a module it was not started with (ModuleNotAllowedError)', async () => {
    const ns = randomNamespace();
    const stale = path.join(dir, 'redis_tasks.mjs');
    fs.writeFileSync(stale, `${fs.readFileSync(fixture('redis_tasks.mjs'), 'utf8')}\n// another version\n`);
    const w = await worker(ns, stale);
    try {
      await using pool = new RedisPool({ url: server.url, namespace: ns, processes: 0 });
      await assert.rejects(pool.apply(t.sqr, [2]), (e: unknown) => e instanceof StaleModuleError && e.code === 'ERR_MP_STALE_MODULE');
      const other = (await import(pathToFileURL(fixture('cli_map_targets.mjs')).href)) as Record<string, (...a: unknown[]) => unknown>;
      const fn = Object.values(other).find((f) => typeof f === 'function')!;
      await assert.rejects(pool.apply(fn, [1]), (e: unknown) => e instanceof ModuleNotAllowedError && /--module/.test(e.message));
    } finally {
      w.kill('SIGKILL');
      await exited(w);
    }
  });
});
