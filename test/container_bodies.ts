// Test bodies shared by the local manager's tests and the Redis manager's: CPython's
// _TestContainers, written once against the surface both dict proxies have.
import assert from 'node:assert/strict';

import { KeyError } from '../src/index.js';

/** What the dict body calls on a dict proxy (local or Redis): every call is a Promise. */
export interface DictLike<K, V> extends AsyncIterable<K> {
  set(k: K, v: V): Promise<unknown>;
  get(k: K, dflt?: V): Promise<V | undefined>;
  getItem(k: K): Promise<V>;
  has(k: K): Promise<boolean>;
  delete(k: K): Promise<boolean>;
  pop(k: K, dflt?: V): Promise<V>;
  popitem(): Promise<[K, V]>;
  setdefault(k: K, v: V): Promise<V>;
  update(other: object): Promise<unknown>;
  copy(): Promise<Map<K, V>>;
  keys(): Promise<K[]>;
  values(): Promise<V[]>;
  items(): Promise<[K, V][]>;
  len(): Promise<number>;
  clear(): Promise<unknown>;
  toObject(): Promise<Record<string, unknown>>;
}

/** _TestContainers.test_dict, on dicts made by `dict` (an empty one, then one from an object). */
export async function dictBody(dict: (init?: object) => Promise<DictLike<never, never>>): Promise<void> {
  const d = (await dict()) as unknown as DictLike<number, number>;
  const indices = [...Array(65).keys()];
  for (const i of indices) await d.set(i, i * i);
  assert.deepEqual(await d.copy(), new Map(indices.map((i) => [i, i * i])));
  assert.deepEqual(await d.keys(), indices);
  assert.deepEqual(
    await d.values(),
    indices.map((i) => i * i),
  );
  assert.deepEqual(
    await d.items(),
    indices.map((i) => [i, i * i]),
  );
  assert.equal(await d.len(), 65);
  assert.equal(await d.get(3), 9);
  assert.equal(await d.get(999), undefined);
  assert.equal(await d.get(999, 7), 7);
  assert.equal(await d.has(3), true);
  assert.equal(await d.has('3' as never), false, "1 and '1' are different keys, as in Python");
  assert.equal(await d.delete(3), true);
  assert.equal(await d.delete(3), false);
  assert.equal(await d.pop(4), 16);
  assert.equal(await d.pop(4, -1), -1);
  await assert.rejects(d.pop(4), KeyError);
  await assert.rejects(d.getItem(4), (e: Error) => e instanceof KeyError && e.message === '4');
  assert.deepEqual(await d.popitem(), [64, 4096]);
  assert.equal(await d.setdefault(100, 1), 1);
  assert.equal(await d.setdefault(100, 2), 1);
  await d.update({ 5: 1 });
  await d.update([[6, 2]]);
  assert.equal(await d.get('5' as never), 1);
  const keys: number[] = [];
  for await (const k of d) keys.push(k);
  assert.equal(keys.length, await d.len());
  await d.clear();
  assert.equal(await d.len(), 0);
  const init = await dict({ num: 100, s: 'x' });
  assert.deepEqual(await init.toObject(), { num: 100, s: 'x' });
  await assert.rejects(init.set({} as never, 1 as never), (e: Error) => e instanceof TypeError && /unhashable/.test(e.message));
}
