// `multiproc worker --backend redis://… --module ./tasks.js` and `multiproc status --backend …`:
// a Redis pool worker for any machine, and what a namespace holds.
import { parseArgs } from 'node:util';

import { InvalidArgumentError } from '../errors.js';
import { startRedisWorker } from '../redis/worker.js';
import { redisStatus } from '../redis/server.js';

const WORKER_USAGE = `Usage: multiproc worker --backend redis://[user:password@]host:port --module <file> [--module <file> ...]
                        [--namespace NAME] [--concurrency N] [--lease-ms MS] [--max-deliveries N]
                        [--initializer <file>#<export> [--initargs JSON-ARRAY]]

Runs the exports of the given modules for Redis pools of the same namespace (default 'default').
--initializer runs once, with --initargs, before the first task; if it throws, the worker exits with code 3.
SIGTERM or Ctrl-C: finish the chunks in hand, take no new ones; a second Ctrl-C stops now.
`;

/** `multiproc worker`. */
export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      module: { type: 'string', multiple: true },
      initializer: { type: 'string' },
      initargs: { type: 'string' },
      namespace: { type: 'string' },
      concurrency: { type: 'string' },
      'lease-ms': { type: 'string' },
      'max-deliveries': { type: 'string' },
      parent: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.backend) {
    (values.help ? process.stdout : process.stderr).write(WORKER_USAGE);
    return values.help ? 0 : 2;
  }
  const int = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`multiproc worker: --${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const concurrency = int('concurrency', values.concurrency, 1) ?? 1;
  const leaseMs = int('lease-ms', values['lease-ms'], 50);
  const maxDeliveries = int('max-deliveries', values['max-deliveries'], 1);
  const local = values.parent === true;
  const log = local || values.quiet ? undefined : (line: string): void => void process.stderr.write(`multiproc worker: ${line}\n`);
  let initargs: unknown[] = [];
  if (values.initargs !== undefined) {
    const parsed = JSON.parse(values.initargs) as unknown;
    if (!Array.isArray(parsed))
      throw new InvalidArgumentError(`multiproc worker: --initargs must be a JSON array, got '${values.initargs}'`);
    initargs = parsed;
  }
  let w: Awaited<ReturnType<typeof startRedisWorker>>;
  try {
    w = await startRedisWorker({
      url: values.backend,
      namespace: values.namespace ?? 'default',
      modules: values.module ?? [],
      ...(values.initializer ? { initializer: values.initializer, initargs } : {}),
      concurrency,
      leaseMs,
      maxDeliveries,
      log,
    });
  } catch (err) {
    if (!values.initializer) throw err;
    process.stderr.write(`multiproc worker: the initializer failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 3;
  }
  let interrupts = 0;
  const drain = (): void => {
    log?.('draining: finishing the chunks in hand');
    void w.drain();
  };
  process.on('SIGTERM', drain);
  process.on('SIGINT', () => {
    if (++interrupts === 1) drain();
    else void w.stop().then(() => process.exit(130));
  });
  if (local) {
    // A local worker of a pool: the pool tells it the modules its calls name, and it ends with the pool.
    process.on('message', (m: { allow?: string } | null) => {
      if (typeof m?.allow !== 'string') return;
      try {
        w.allow(m.allow);
      } finally {
        process.send?.({ allowed: m.allow });
      }
    });
    process.on('disconnect', () => void w.stop());
  }
  await w.done;
  if (process.connected) process.disconnect();
  return 0;
}

const STATUS_USAGE = `Usage: multiproc status --backend redis://host:port [--namespace NAME]\n`;

/** `multiproc status`. */
export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { backend: { type: 'string' }, namespace: { type: 'string' }, json: { type: 'boolean' } },
  });
  if (!values.backend) {
    process.stderr.write(STATUS_USAGE);
    return 2;
  }
  const s = await redisStatus(values.backend, values.namespace ?? 'default');
  if (values.json) {
    process.stdout.write(`${JSON.stringify(s)}\n`);
    return 0;
  }
  process.stdout.write(
    `namespace ${s.namespace}: ${s.workers.length} worker(s), queued ${s.queued}, in flight ${s.inFlight}, retried ${s.retried}, dead-lettered ${s.dead}\n`,
  );
  for (const w of s.workers)
    process.stdout.write(
      `  ${w.id}  pid ${w.pid}  running ${w.running}/${w.concurrency}${w.draining ? '  draining' : ''}  heartbeat expires in ${w.ttlMs} ms\n`,
    );
  return 0;
}
