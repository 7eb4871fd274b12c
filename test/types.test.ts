// What the types promise, checked by the compiler: each `@ts-expect-error` below must stay an
// error (tsc fails the build when one stops being one), and each plain line must compile.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Process, Pool, Value, type DictProxy } from '../src/index.js';

export function add(a: number, b: number): number {
  return a + b;
}

// Never called: the compiler reads it.
export function typeChecks(d: DictProxy<string, number>, pool: Pool): void {
  new Process({ target: add, args: [1, 2] });
  // @ts-expect-error args must match the target's parameters
  new Process({ target: add, args: ['1', 2] });
  // @ts-expect-error too few arguments for the target
  new Process({ target: add, args: [1] });
  new Process({ name: 'no target' });

  const maybe: Promise<number | undefined> = d.get('k');
  const withDefault: Promise<number> = d.get('k', 0);
  const otherDefault: Promise<number | 'none'> = d.get('k', 'none' as const);
  // @ts-expect-error without a default the value may be missing
  const notMaybe: Promise<number> = d.get('k');

  void pool.apply(add, [1, 2]);
  // @ts-expect-error the pool checks arguments too
  void pool.apply(add, ['1', 2]);

  const i: number = new Value('i', 1).value;
  const q: bigint = new Value('q', 1n).value;
  // @ts-expect-error a 'd' value is a number
  const s: string = new Value('d', 1).value;
  assert.ok([maybe, withDefault, otherDefault, notMaybe, i, q, s]);
}

test('the type checks above compiled (this file would not build otherwise)', () => {
  assert.equal(typeof typeChecks, 'function');
});
