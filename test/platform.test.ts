// Off Linux (macOS) the addon does not exist: installing skips it, and the library runs as without
// it. This machine is Linux, so each run reports another platform from the first line of every
// node process (a preload through NODE_OPTIONS, which the library's own children inherit) and goes
// through the same paths a Mac would: platform.ts's portable branches, the emulated shared memory,
// the relayed pipes.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { runNode, runScenario, tmpDir } from './helpers.js';

const root = path.join(__dirname, '..', '..');

function preload(platform: string): string {
  const file = path.join(tmpDir(), `platform-${platform}.cjs`);
  fs.writeFileSync(file, `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} });\n`);
  return file;
}

function envOn(platform: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${preload(platform)}`.trim(),
  };
  delete env.MULTIPROC_NATIVE;
  return env;
}

async function onPlatform(platform: string, scenario: string): Promise<Record<string, unknown>> {
  const saved = { options: process.env.NODE_OPTIONS, native: process.env.MULTIPROC_NATIVE };
  process.env.NODE_OPTIONS = envOn(platform).NODE_OPTIONS;
  delete process.env.MULTIPROC_NATIVE;
  try {
    return await runScenario('noaddon.mjs', [scenario], 90_000);
  } finally {
    if (saved.options === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved.options;
    if (saved.native !== undefined) process.env.MULTIPROC_NATIVE = saved.native;
  }
}

describe('on macOS (darwin)', () => {
  test('installing skips the addon and succeeds', async () => {
    const run = await runNode([path.join(root, 'native', 'install.js')], { env: envOn('darwin') });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /for Linux only; on darwin multiproc runs without it/);
  });

  test('threads share locks, values and queues; a thread Pool works', async () => {
    const r = await onPlatform('darwin', 'threads');
    assert.equal(r.emulated, true);
    assert.equal(r.total, r.expected);
    assert.deepEqual(r.squares, [1, 4, 9, 16]);
    assert.equal(r.applied, 49);
  });

  test('spawn children get relayed pipes, a Pool and a Manager', async () => {
    const r = await onPlatform('darwin', 'spawn-channels');
    assert.equal(r.emulated, true);
    assert.deepEqual(r.echoes, [{ echo: 'a' }, { echo: { b: [1, 2] } }, [1, 2, 3]]);
    assert.equal(r.eof, true);
    assert.equal(r.reported, 50);
    assert.deepEqual(r.exitcodes, [0, 0, 0, 0]);
    assert.deepEqual(r.squares, [1, 4, 9, 16, 25, 36, 49, 64]);
    assert.deepEqual(r.keys, ['x', 'y']);
  });

  test('a shared object sent to a process says the addon is Linux-only, without build advice', async () => {
    const r = (await onPlatform('darwin', 'spawn-shared')) as Record<string, Record<string, unknown>>;
    assert.equal(r.poolAfter, 9);
    const e = r.value!;
    assert.equal(e.code, 'ERR_MP_NATIVE_UNAVAILABLE');
    assert.match(String(e.message), /exists for Linux only .* not for darwin/);
    assert.doesNotMatch(String(e.message), /npm rebuild/);
    assert.match(String(e.message), /getContext\('thread'\)/);
  });
});
