// What dies with its parent, and when: daemons, pool workers and standing forkserver children die
// with a parent that is killed even while they are busy in a long synchronous task or still
// booting (the kernel's parent-death signal, not their event loop); non-daemon children outlive it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { hasParentDeathSignal, pidAlive } from '../src/platform.js';
import { fixture, runNode, waitGone } from './helpers.js';

// The children's tasks run 30 s; a child that is still there after this long did not die with its parent.
const GONE_WITHIN_MS = 5_000;
const skip = hasParentDeathSignal ? false : 'the parent-death signal is Linux only';

type Child = { role: string; pid: number };

/** Run parent_death.mjs `scenario` with `method`, kill it with `signal` once `count` children are busy; the children. */
async function killParent(scenario: string, method: string, count: number, signal: NodeJS.Signals): Promise<Child[]> {
  const children: Child[] = [];
  let buffer = '';
  let sent = false;
  const run = await runNode([fixture('parent_death.mjs'), scenario, method], {
    onStdout(chunk, parent) {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        children.push(JSON.parse(buffer.slice(0, nl)) as Child);
        buffer = buffer.slice(nl + 1);
      }
      if (!sent && children.length >= count) {
        sent = true;
        parent.kill(signal);
      }
    },
  });
  assert.equal(run.signal, signal, run.stderr);
  assert.equal(children.length, count, run.stderr);
  return children;
}

/** Whether each child is gone within the bound; survivors are killed so that no test leaves one behind. */
async function gone(children: Child[]): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  for (const c of children) {
    out[`${c.role} ${c.pid}`] = await waitGone(c.pid, GONE_WITHIN_MS);
    if (pidAlive(c.pid)) process.kill(c.pid, 'SIGKILL');
  }
  return out;
}

for (const method of ['spawn', 'forkserver']) {
  describe(`parent death (${method})`, { skip }, () => {
    test('a daemon busy in a synchronous task dies with its SIGKILLed parent; a non-daemon lives on', async () => {
      const children = await killParent('process', method, 2, 'SIGKILL');
      const daemon = children.filter((c) => c.role === 'daemon');
      const plain = children.find((c) => c.role === 'plain')!;
      const result = await gone(daemon);
      // Python semantics: the non-daemon child is not killed with its parent; the test ends it.
      const plainAlive = pidAlive(plain.pid);
      process.kill(plain.pid, 'SIGKILL');
      assert.ok(await waitGone(plain.pid, GONE_WITHIN_MS));
      assert.deepEqual(Object.values(result), [true], `daemon outlived its parent: ${JSON.stringify(result)}`);
      assert.ok(plainAlive, 'the non-daemon child died with its parent');
    });

    for (const signal of ['SIGKILL', 'SIGTERM', 'SIGINT'] as const) {
      test(`pool workers busy in a task die with a parent ended by ${signal}`, async () => {
        const result = await gone(await killParent('pool', method, 2, signal));
        assert.deepEqual(Object.values(result), [true, true], `workers outlived their parent: ${JSON.stringify(result)}`);
      });
    }

    test('a daemon still importing its target module dies with its SIGKILLed parent', async () => {
      const result = await gone(await killParent('booting', method, 1, 'SIGKILL'));
      assert.deepEqual(Object.values(result), [true], `booting daemon outlived its parent: ${JSON.stringify(result)}`);
    });
  });
}

test('a child asked to die with a parent that is already gone dies at once', { skip }, async () => {
  // The child's first act is to ask for the signal and check its parent: here the pid it is
  // given is not its parent's, as when the parent died before the child asked. Without the
  // check it would wait for a start message forever.
  const entry = path.join(__dirname, '..', 'src', 'entry', 'spawn_main.js');
  const child = spawn(process.execPath, [entry], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, MULTIPROC_DIE_WITH_PARENT: String(process.pid + 1_000_000) },
  });
  const timer = setTimeout(() => child.kill('SIGTERM'), 20_000);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  assert.deepEqual([code, signal], [null, 'SIGKILL']);
});
