// The README's tour is a program: run it as a reader would (tsx), so the README cannot rot.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { assertNoLeftovers, runNode, tmpDir } from './helpers.js';

const root = path.join(__dirname, '..', '..');

test('the README tour runs and prints what it promises', async () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(code, 'README has a ts block');
  // The tour lives beside the package so that `import 'multiproc'` resolves to this checkout.
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'multiproc'));
  const file = path.join(dir, 'tour.mts');
  fs.writeFileSync(file, code);
  const r = await runNode(['--import', 'tsx', file], { env: { ...process.env, NODE_PATH: path.join(root, 'node_modules') } });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.filter((l) => / runs in /.test(l)).map((l) => l.replace(/, pid \d+/, '')).sort(), [
    'job1 runs in Process-1',
    'job2 runs in Process-2',
    'job3 runs in Process-3',
  ]);
  assert.deepEqual(lines.slice(-2), ['[ 0, 0, 0 ] 100', '144']);
  await assertNoLeftovers();
});
