// The README's tour is a program: run it as a reader would (tsx), so the README cannot rot.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { assertNoLeftovers, runNode, tmpDir } from './helpers.js';

const root = path.join(__dirname, '..', '..');

const blocks = [...fs.readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

/** Run a README code block as a reader would: beside the package, under tsx. */
async function runBlock(code: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // It lives beside the package so that `import 'multiproc'` resolves to this checkout.
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'multiproc'));
  const file = path.join(dir, 'block.mts');
  fs.writeFileSync(file, code);
  return runNode(['--import', 'tsx', file], { env: { ...process.env, NODE_PATH: path.join(root, 'node_modules') } });
}

test('the README tour runs and prints what it promises', async () => {
  assert.ok(blocks[0], 'README has a ts block');
  const r = await runBlock(blocks[0]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(
    lines
      .filter((l) => / runs in /.test(l))
      .map((l) => l.replace(/, pid \d+/, ''))
      .sort(),
    ['job1 runs in Process-1', 'job2 runs in Process-2', 'job3 runs in Process-3'],
  );
  assert.deepEqual(lines.slice(-2), ['[ 0, 0, 0 ] 100', '144']);
  await assertNoLeftovers();
});

test("the README's second screen runs: queue, shared value and lock, pool, manager", async () => {
  assert.ok(blocks[1], 'README has a second ts block');
  const r = await runBlock(blocks[1]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['5050', '[ 1, 4, 9 ]', '1']);
  await assertNoLeftovers();
});
