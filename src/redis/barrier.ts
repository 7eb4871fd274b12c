// A barrier on Redis (the local `Barrier`, across machines), found by name. Rounds are
// generations: the party that completes a round runs the action and moves the generation on;
// the others wait until the generation has moved, then learn from a field whether their round
// ended released or broken (by a timeout, abort(), reset() or an action that threw).
//
// Key: mp:{ns}:bar:<name> (hash: parties, gen, count, draining, broken, and r<gen> for rounds
// ended by a reset), channel mp:{ns}:bar:<name>:wake.
import { inspect } from 'node:util';

import { BrokenBarrierError, InvalidArgumentError } from '../errors.js';
import { registerType } from '../reduction/reduction.js';
import { aborted, checkName, checkWhere, closedError, left, POLL_MS, session, waitArgs, type Session, type Where } from './client.js';
import type { RedisObjectOptions } from './queues.js';

// {-1} broken, {-2} the last round still drains (wait), else {index, gen, parties}.
const ARRIVE = `
redis.call('HSETNX', KEYS[1], 'parties', ARGV[1])
if redis.call('HGET', KEYS[1], 'broken') == '1' then return {-1} end
if redis.call('HGET', KEYS[1], 'draining') == '1' then return {-2} end
local parties = tonumber(redis.call('HGET', KEYS[1], 'parties'))
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local c = redis.call('HINCRBY', KEYS[1], 'count', 1)
if c == parties then redis.call('HSET', KEYS[1], 'draining', '1') end
return {c - 1, gen, parties}
`;

// ARGV[1]: 'release' (the round is complete), 'break' (only while round ARGV[2] runs), 'reset', 'abort'.
const END = `
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local op = ARGV[1]
if op == 'break' then
  if gen ~= tonumber(ARGV[2]) then return 0 end
  op = 'abort'
end
if op == 'abort' then
  redis.call('HSET', KEYS[1], 'broken', '1')
elseif op == 'reset' then
  if tonumber(redis.call('HGET', KEYS[1], 'count') or '0') > 0 then redis.call('HSET', KEYS[1], 'r' .. gen, '1') end
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'count', 0, 'draining', 0, 'broken', 0)
else
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'count', 0, 'draining', 0)
end
redis.call('PUBLISH', ARGV[3], op)
return 1
`;

// {gen, broken, reset of round ARGV[1], count, draining}
const PEEK = `
local h = redis.call('HMGET', KEYS[1], 'gen', 'broken', 'r' .. ARGV[1], 'count', 'draining')
return {tonumber(h[1] or '0'), h[2] == '1' and 1 or 0, h[3] and 1 or 0, tonumber(h[4] or '0'), h[5] == '1' and 1 or 0}
`;

interface State extends Where {
  name: string;
  parties: number;
  timeout: number | undefined;
  action: (() => unknown) | undefined;
}

/**
 * `parties` processes (on any machines) wait until all have arrived (the local `Barrier`).
 * `action` runs in the last one to arrive, before any is released; `timeout` (ms) is the default
 * for `wait`, and a wait that times out breaks the barrier for everyone.
 */
export class RedisBarrier {
  /** The barrier's name: the same name in another process is the same barrier. */
  readonly name: string;
  readonly #where: Where;
  readonly #s: Session;
  readonly #key: string;
  readonly #parties: number;
  readonly #timeout: number | undefined;
  readonly #action: (() => unknown) | undefined;

  /** @throws InvalidArgumentError when `parties` is not an integer >= 1, `action` not a function or `timeout` not a number >= 0. */
  constructor(options: { name?: string; parties: number; action?: (() => unknown) | null; timeout?: number | null } & RedisObjectOptions) {
    this.#where = checkWhere(options, 'RedisBarrier');
    this.name = checkName(options.name, 'Barrier({ name })');
    const { parties, action, timeout } = options;
    if (!Number.isInteger(parties) || parties < 1)
      throw new InvalidArgumentError(`Barrier(parties): parties must be an integer >= 1, got ${JSON.stringify(parties)}`);
    if (action != null && typeof action !== 'function') throw new InvalidArgumentError('Barrier({ action }): action must be a function');
    if (timeout != null && (typeof timeout !== 'number' || !(timeout >= 0)))
      throw new InvalidArgumentError('Barrier({ timeout }): timeout must be a number of milliseconds >= 0');
    this.#parties = parties;
    this.#action = action ?? undefined;
    this.#timeout = timeout ?? undefined;
    this.#s = session(this.#where);
    this.#key = `${this.#s.prefix}bar:${this.name}`;
  }

  /** How many must arrive (as this handle was opened; the first process that used the name set the one that applies). */
  get parties(): number {
    return this.#parties;
  }

  /** How many are waiting now (Python: `n_waiting`). */
  async nWaiting(): Promise<number> {
    const p = await this.#peek(-1);
    return p[4] ? 0 : p[3]!;
  }

  /** Whether the barrier is broken (by abort(), a timeout, or an action that threw). */
  async broken(): Promise<boolean> {
    return (await this.#peek(-1))[1] === 1;
  }

  #closed = false;

  /** No more calls from this handle (ProcessError ERR_MP_CLOSED); its wake-up subscription is dropped. Also `using`. */
  close(): void {
    this.#closed = true;
    this.#s.release(`${this.#key}:wake`);
  }
  [Symbol.dispose](): void {
    this.close();
  }

  #check(): void {
    if (this.#closed) throw closedError('RedisBarrier');
  }

  #peek(gen: number): Promise<number[]> {
    this.#check();
    return this.#s.run(() => this.#s.script(PEEK)([this.#key], [gen])) as Promise<number[]>;
  }

  #end(op: string, gen = -1): Promise<unknown> {
    this.#check();
    return this.#s.run(() => this.#s.script(END)([this.#key], [op, gen, `${this.#key}:wake`]));
  }

  /**
   * Wait for the others; resolves this party's arrival index (0 .. parties-1).
   * @throws BrokenBarrierError when the barrier is or becomes broken, or reset while waiting.
   */
  async wait(timeout?: number): Promise<number> {
    this.#check();
    const o = waitArgs({ timeout: timeout ?? this.#timeout }, 'Barrier.wait');
    const s = this.#s;
    return s.run(async () => {
      const l = await s.listen(`${this.#key}:wake`);
      try {
        let r: number[];
        for (;;) {
          r = (await s.script(ARRIVE)([this.#key], [this.#parties])) as number[];
          if (r[0] === -1) throw new BrokenBarrierError();
          if (r[0] !== -2) break;
          await l.wait(POLL_MS); // the last round is still being released
        }
        const [index, gen, parties] = r as [number, number, number];
        if (index + 1 === parties) {
          try {
            await this.#action?.();
          } catch (err) {
            await this.#end('break', gen);
            throw err;
          }
          await this.#end('release');
          return index;
        }
        for (;;) {
          const [g, broken, reset] = (await this.#peek(gen)) as [number, number, number];
          if (g > gen) {
            if (reset) throw new BrokenBarrierError();
            return index;
          }
          if (broken) throw new BrokenBarrierError();
          if (left(o.deadline) === 0) {
            await this.#end('break', gen);
            throw new BrokenBarrierError('barrier wait timed out; the barrier is now broken');
          }
          if (o.signal?.aborted) throw aborted(o.signal);
          await l.wait(Math.min(left(o.deadline), POLL_MS));
        }
      } finally {
        l.stop();
      }
    });
  }

  /** Return to the initial state; parties waiting now get BrokenBarrierError. */
  async reset(): Promise<void> {
    await this.#end('reset');
  }

  /** Break the barrier: waiting and future `wait` calls get BrokenBarrierError until reset(). */
  async abort(): Promise<void> {
    await this.#end('abort');
  }

  /** @internal */
  _state(): State {
    return { ...this.#where, name: this.name, parties: this.#parties, timeout: this.#timeout, action: this.#action };
  }

  toString(): string {
    return `<RedisBarrier(name=${this.name}, parties=${this.#parties})>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

registerType(
  RedisBarrier,
  {
    reduce: (b) => b._state(),
    rebuild: (s: State) =>
      new RedisBarrier({
        url: s.url,
        namespace: s.namespace,
        leaseMs: s.leaseMs,
        name: s.name,
        parties: s.parties,
        action: s.action,
        timeout: s.timeout,
      }),
  },
  'multiproc.RedisBarrier',
);
