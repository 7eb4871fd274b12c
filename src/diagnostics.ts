// Events for tracing and metrics tools (OpenTelemetry, APM agents, a log line of your own), on
// Node's `diagnostics_channel`: subscribe by name, from any module, without importing multiproc.
// Publishing costs nothing while nobody subscribes (`hasSubscribers`).
import diagnosticsChannel from 'node:diagnostics_channel';

/** Channel names, as `diagnostics_channel.subscribe(name, fn)` takes them. */
export const channels = {
  /** A Process started: `{ name, pid, method }`. */
  processStart: 'multiproc:process:start',
  /** A Process this one started has ended: `{ name, pid, exitcode }`. */
  processExit: 'multiproc:process:exit',
  /** A pool started a worker: `{ pool, worker, pid }`. */
  workerStart: 'multiproc:pool:worker:start',
  /** A pool worker ended: `{ pool, worker, pid, exitcode, failedTask }` (`failedTask`: it died running one). */
  workerExit: 'multiproc:pool:worker:exit',
  /** A pool sent a task to a worker: `{ pool, worker, task, index, items }`. */
  taskStart: 'multiproc:pool:task:start',
  /** A task came back: `{ pool, worker, task, index, items, queuedMs, runMs, ok, error }`. */
  taskEnd: 'multiproc:pool:task:end',
} as const;

const made = new Map<string, diagnosticsChannel.Channel>();

/** @internal The channel named `name`; check `hasSubscribers` before building a message. */
export function channel(name: (typeof channels)[keyof typeof channels]): diagnosticsChannel.Channel {
  let c = made.get(name);
  if (!c) made.set(name, (c = diagnosticsChannel.channel(name)));
  return c;
}
