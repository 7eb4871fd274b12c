// Runs every compiled example (build/examples/*.mjs) as its own `node` process and checks its
// output: the lines that matter, in order where the program makes the order certain, as a set
// where it runs children concurrently. Every test also checks that no process the example
// started outlives it (daemons included).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { DEMO_EXAMPLES } from '../src/cli/demo.js';
import { childPids, pidAlive } from '../src/platform.js';

const ROOT = path.resolve(__dirname, '..', '..');
const EXAMPLES = path.resolve(__dirname, '..', 'examples');
const CLI = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const TIMEOUT_MS = 30_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout split into lines, without the empty last one. */
  lines: string[];
  /** pid of the example's main process. */
  pid: number;
  /** Every descendant of the example seen while it ran (sampled from /proc every 20 ms). */
  descendants: Set<number>;
}

function descendantsOf(root: number): number[] {
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    for (const c of childPids(queue.shift())) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** Run `node <args>` in its own process group; resolves once it exited and its stdio closed. */
function runNode(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const pid = child.pid!;
    const descendants = new Set<number>();
    const sample = setInterval(() => {
      for (const p of descendantsOf(pid)) descendants.add(p);
    }, 20);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, 'SIGKILL'); // the whole group: the example and whatever it started
      } catch {
        // already gone
      }
      reject(new Error(`node ${args.join(' ')} did not finish within ${TIMEOUT_MS} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, TIMEOUT_MS);
    child.once('error', reject);
    // 'close' waits for stdout/stderr to close too: a leftover child holding them (a daemon that
    // survived its parent) would keep them open, and its late output would land here.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(sample);
      const lines = stdout.split('\n');
      if (lines.at(-1) === '') lines.pop();
      resolve({ code, signal, stdout, stderr, lines, pid, descendants });
    });
  });
}

/** Every process the example started has ended, and none is left as a child of this one. */
async function assertNothingLeft(run: Run, printed: number[] = []): Promise<void> {
  const watched = [...new Set([...run.descendants, ...printed])].filter((p) => p !== process.pid && p !== run.pid);
  const deadline = Date.now() + 2000;
  let alive = watched.filter(pidAlive);
  while ((alive.length || childPids().length) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    alive = watched.filter(pidAlive);
  }
  assert.deepEqual(alive, [], `processes started by the example still run: ${alive.join(', ')}`);
  assert.deepEqual(childPids(), [], 'the test process has children left');
}

async function runExample(name: string): Promise<Run> {
  const file = path.join(EXAMPLES, `${name}.mjs`);
  assert.ok(fs.existsSync(file), `${file} is missing: build first (npx tsc -p tsconfig.json)`);
  return runNode([file]);
}

function assertOk(run: Run): void {
  assert.equal(run.stderr, '', `unexpected stderr:\n${run.stderr}`);
  assert.equal(run.code, 0, `exit code ${run.code} (signal ${run.signal})\nstdout:\n${run.stdout}`);
}

/** `line` comes before `later` in the output (both present). */
function assertBefore(lines: string[], line: string, later: string): void {
  const a = lines.indexOf(line);
  const b = lines.indexOf(later);
  assert.ok(a >= 0, `missing line ${JSON.stringify(line)} in:\n${lines.join('\n')}`);
  assert.ok(b >= 0, `missing line ${JSON.stringify(later)} in:\n${lines.join('\n')}`);
  assert.ok(a < b, `${JSON.stringify(line)} should come before ${JSON.stringify(later)} in:\n${lines.join('\n')}`);
}

/** The capture groups of the one line matching `re`. */
function match(lines: string[], re: RegExp): RegExpMatchArray {
  const found = lines.map((l) => l.match(re)).filter((m): m is RegExpMatchArray => m !== null);
  assert.equal(found.length, 1, `expected one line matching ${re} in:\n${lines.join('\n')}`);
  return found[0]!;
}

// MULTIPROC_TEST_EXAMPLES (comma-separated names) runs only those examples and none of the other
// tests: noaddon_spawn_selection.test.ts runs the queue examples without the addon.
const only = process.env.MULTIPROC_TEST_EXAMPLES?.split(',');
const selected = only ? 'not in this selection' : false;

const tested = new Set<string>();
function exampleTest(name: string, fn: () => Promise<void>, options: { todo?: string } = {}): void {
  tested.add(name);
  test(`example ${name}`, only && !only.includes(name) ? { skip: 'not in this selection' } : options, fn);
}

exampleTest('isolated_globals', async () => {
  const run = await runExample('isolated_globals');
  assertOk(run);
  // The child changed its own `n`; the parent's is still 100.
  assert.deepEqual(run.lines, ['子进程: n = 0', '主进程: n = 100']);
  await assertNothingLeft(run);
});

exampleTest('data_list', async () => {
  const run = await runExample('data_list');
  assertOk(run);
  // Each child has its own one-element list; the order is up to the OS.
  assert.deepEqual([...run.lines].sort(), ['[0]', '[1]', '[2]', '[3]', '[4]']);
  await assertNothingLeft(run);
});

exampleTest('start_process', async () => {
  const run = await runExample('start_process');
  assertOk(run);
  // start() returns at once: the parent prints before the children do.
  assert.deepEqual(run.lines.slice(0, 2), ['主', 'names: Process-1, dahai-2']);
  assert.equal(run.lines.length, 6);
  assertBefore(run.lines, '大海 is running (process name: Process-1)', '大海 is done');
  assertBefore(run.lines, '大海2 is running (process name: dahai-2)', '大海2 is done');
  await assertNothingLeft(run);
});

exampleTest('join_many', async () => {
  const run = await runExample('join_many');
  assertOk(run);
  assert.equal(run.lines.length, 9);
  for (let i = 1; i <= 4; i++) assertBefore(run.lines, `大海${i} is running`, `大海${i} is done`);
  // All four ran at the same time: about the longest (4 s), well under the sum (10 s).
  // (The 6 s between the two leave room for starting four processes on a very busy machine.)
  const m = match(run.lines, /^主 (\d+) ms \(sum of the sleeps: 10000 ms, longest: 4000 ms\)$/);
  assert.equal(run.lines.at(-1), m[0]);
  const elapsed = Number(m[1]);
  assert.ok(elapsed >= 4000 && elapsed < 10_000, `elapsed ${elapsed} ms should be between the longest (4000) and the sum (10000)`);
  await assertNothingLeft(run);
});

exampleTest('pid_ppid', async () => {
  const run = await runExample('pid_ppid');
  assertOk(run);
  const [, name, childPid] = match(run.lines, /^parent: p\.name = (\S+), p\.pid = (\d+)$/);
  assert.equal(name, 'Process-1');
  assert.equal(run.lines[0], `parent: p.name = Process-1, p.pid = ${childPid}`);
  // The child's ppid is the example's pid; p.pid, process.pid and currentProcess().pid agree.
  assert.deepEqual(run.lines.slice(1), [
    `child: ${childPid} is running, 爹是 ${run.pid}`,
    `child: currentProcess().pid = ${childPid}, name = Process-1`,
    `parent: 主 ${run.pid} 爹是 ${process.pid}, currentProcess().pid = ${run.pid}`,
  ]);
  await assertNothingLeft(run, [Number(childPid)]);
});

exampleTest('current_process', async () => {
  const run = await runExample('current_process');
  assertOk(run);
  const [, spawnPid] = match(run.lines, /^spawn child: parentProcess\(\) = MainProcess \(pid \d+\), pid = (\d+)$/);
  assert.notEqual(Number(spawnPid), run.pid);
  const p = run.pid;
  assert.deepEqual(run.lines, [
    `parent: currentProcess() = <_MainProcess name='MainProcess' parent=None started>`,
    `parent: parentProcess() = null, pid = ${p}`,
    `spawn child: currentProcess() = <Process name='Process-1' parent=${p} started>`,
    `spawn child: parentProcess() = MainProcess (pid ${p}), pid = ${spawnPid}`,
    // The thread child lives in the example's own process.
    `thread child: currentProcess() = <Process name='Worker-T' parent=${p} started>`,
    `thread child: parentProcess() = MainProcess (pid ${p}), pid = ${p}`,
    'exitcodes: spawn 0, thread 0',
  ]);
  await assertNothingLeft(run, [Number(spawnPid)]);
});

exampleTest('subclass_run', async () => {
  const run = await runExample('subclass_run');
  assertOk(run);
  assert.equal(run.lines.length, 4, run.stdout);
  const names = run.lines.map((l) => {
    const m = l.match(/^current process <MyProcess name='(MyProcess-\d)' parent=(\d+) started>$/);
    assert.ok(m, `unexpected line ${JSON.stringify(l)}`);
    assert.equal(Number(m[2]), run.pid);
    return m[1];
  });
  assert.deepEqual(names.sort(), ['MyProcess-1', 'MyProcess-2', 'MyProcess-3', 'MyProcess-4']);
  await assertNothingLeft(run);
});

exampleTest('terminate', async () => {
  const run = await runExample('terminate');
  assertOk(run);
  const [, childPid] = match(run.lines, /^name: Process-1, pid: (\d+)$/);
  // The child is terminated right after start(); should it get to run first, it says so.
  const parentLines = run.lines.filter((l) => l !== `${childPid} is running`);
  assert.ok(run.lines.length - parentLines.length <= 1);
  assert.deepEqual(parentLines, [
    `name: Process-1, pid: ${childPid}`,
    'right after terminate(): isAlive() = true',
    'after join(): isAlive() = false, exitcode = -15',
  ]);
  assert.ok(!run.stdout.includes('is done'));
  await assertNothingLeft(run, [Number(childPid)]);
});

exampleTest('daemon_eunuch', async () => {
  const run = await runExample('daemon_eunuch');
  assertOk(run);
  // 老太监 (the daemon) is alive, 皇帝 (the main process) dies, and the daemon dies with him:
  // '老太监正常死亡' (a natural death) never comes, and its process is gone.
  const [, daemonPid] = match(run.lines, /^老太监活着 \(pid (\d+)\)$/);
  // (The daemon has 800 ms to start and print; on a loaded machine it may print second.)
  assert.deepEqual([...run.lines].sort(), [`老太监活着 (pid ${daemonPid})`, '皇帝正在死亡'].sort());
  assert.ok(!run.stdout.includes('正常死亡'));
  await assertNothingLeft(run, [Number(daemonPid)]);
});

exampleTest('daemon_pair', async () => {
  const run = await runExample('daemon_pair');
  assertOk(run);
  // The daemon is terminated when the main code ends, before its 300 ms are up; the normal
  // child is awaited and prints after '主进程结束'.
  assert.deepEqual(run.lines, ['主进程结束', '普通子进程的代码']);
  await assertNothingLeft(run);
});

exampleTest('main_guard', async () => {
  const run = await runExample('main_guard');
  assertOk(run);
  const [, parentPid] = match(run.lines, /^module loaded in pid (\d+), main guard = true$/);
  const [, childPid] = match(run.lines, /^module loaded in pid (\d+), main guard = false$/);
  assert.equal(Number(parentPid), run.pid);
  assert.notEqual(childPid, parentPid);
  // The module runs twice (the child imports it), but only the parent starts a process.
  assert.equal(run.lines.length, 4);
  assert.equal(run.lines[0], `module loaded in pid ${parentPid}, main guard = true`);
  assertBefore(run.lines, 'Finish', 'this is foo function');
  assertBefore(run.lines, `module loaded in pid ${childPid}, main guard = false`, 'this is foo function');
  assert.ok(run.descendants.size <= 1, `one child expected, saw ${[...run.descendants].join(', ')}`);
  await assertNothingLeft(run, [Number(childPid)]);
});

exampleTest('lock_print', async () => {
  const run = await runExample('lock_print');
  assertOk(run);
  // Both processes arrive ('进程来了') whenever they start; what each does under the lock
  // ('进程N 拿到锁', sleep, 'N') is never interleaved with the other's.
  assert.equal(run.lines.length, 6, run.stdout);
  assert.equal(run.lines.filter((l) => l === '进程来了').length, 2);
  assert.equal(run.lines[0], '进程来了');
  const locked = run.lines.filter((l) => l !== '进程来了');
  const first = locked[1];
  assert.ok(first === '1' || first === '2', run.stdout);
  const second = first === '1' ? '2' : '1';
  assert.deepEqual(locked, [`进程${first} 拿到锁`, first, `进程${second} 拿到锁`, second]);
  await assertNothingLeft(run);
});

exampleTest('tickets', async () => {
  const run = await runExample('tickets');
  assertOk(run);
  assert.equal(run.lines.length, 21, run.stdout);
  const buyers = Array.from({ length: 10 }, (_, i) => `路人${i}`);
  // Each buyer searches once (concurrently: it sees 2, 1 or 0 tickets left, depending on when
  // it read the file), then buys or is told there are none, in that order.
  const outcomes = buyers.map((b) => {
    const [, seen] = match(run.lines, new RegExp(`^${b} 查看到余票为(\\d)$`));
    assert.ok(Number(seen) <= 2, `${b} saw ${seen} tickets`);
    const bought = run.lines.indexOf(`${b} 购票成功`);
    const none = run.lines.indexOf(`${b} 查看到没有票了`);
    assert.ok(bought >= 0 !== none >= 0, `${b} should either buy or see none:\n${run.stdout}`);
    assert.ok(run.lines.indexOf(`${b} 查看到余票为${seen}`) < Math.max(bought, none), `${b} searched after buying`);
    return bought >= 0;
  });
  // Exactly as many buyers succeed as there were tickets: no oversell, none left unsold.
  assert.equal(outcomes.filter(Boolean).length, 2, run.stdout);
  assert.equal(run.lines.at(-1), '最后余票为0 (2 tickets, 10 buyers)');
  // The successful purchases come before every "none left" (the lock makes the purchases serial).
  const lastBought = Math.max(...run.lines.map((l, i) => (l.endsWith(' 购票成功') ? i : -1)));
  const firstNone = run.lines.findIndex((l) => l.endsWith(' 查看到没有票了'));
  assert.ok(lastBought < firstNone, run.stdout);
  await assertNothingLeft(run);
});

exampleTest('semaphore', async () => {
  const run = await runExample('semaphore');
  assertOk(run);
  assert.equal(run.lines.length, 13, run.stdout);
  // Every line is printed under the occupancy counter's lock, so replaying them gives the
  // occupancy at each moment: never above 2, and each process goes in once and out once.
  let inside = 0;
  let most = 0;
  const state = new Map<string, 'in' | 'out'>();
  for (const line of run.lines.slice(0, -1)) {
    const m = line.match(/^(进程[1-6]) (进来了|出去了) \(inside: (\d)\)$/);
    assert.ok(m, `unexpected line ${JSON.stringify(line)}`);
    const [, who, what, n] = m;
    if (what === '进来了') {
      assert.equal(state.get(who!), undefined, `${who} came in twice`);
      state.set(who!, 'in');
      inside += 1;
    } else {
      assert.equal(state.get(who!), 'in', `${who} went out without coming in`);
      state.set(who!, 'out');
      inside -= 1;
    }
    assert.equal(Number(n), inside, `occupancy printed by ${JSON.stringify(line)}`);
    most = Math.max(most, inside);
  }
  assert.equal(state.size, 6);
  assert.ok([...state.values()].every((s) => s === 'out'));
  assert.ok(most >= 1 && most <= 2, `at most 2 inside, saw ${most}`);
  assert.equal(run.lines.at(-1), `at most ${most} inside at once (Semaphore(2)); semaphore value now 2`);
  await assertNothingLeft(run);
});

exampleTest('value_counter', async () => {
  const run = await runExample('value_counter');
  assertOk(run);
  assert.equal(run.lines.length, 2, run.stdout);
  // Under the lock the total is exact; without it increments are lost (usually thousands, but
  // "none lost" is not impossible, so only <= is asserted).
  assert.equal(run.lines[0], 'with the lock:    total = 8000 (expected 8000)');
  const [, total, lost] = match(run.lines, /^without the lock: total = (\d+) \(expected 8000; (\d+) increments lost\)$/);
  assert.ok(Number(total) <= 8000 && Number(total) > 0, `unlocked total ${total}`);
  assert.equal(Number(total) + Number(lost), 8000);
  await assertNothingLeft(run);
});

exampleTest('unguarded_main', async () => {
  const run = await runExample('unguarded_main');
  // The parent itself is fine: it started one child, which failed while importing the module.
  assert.equal(run.code, 0, `exit code ${run.code}\nstderr:\n${run.stderr}`);
  const [, childPid] = match(run.lines, /^started child pid (\d+)$/);
  assert.deepEqual(run.lines, [
    `starting a process from pid ${run.pid}`,
    `started child pid ${childPid}`,
    // The child ran the unguarded top level too, and its start() was refused.
    `starting a process from pid ${childPid}`,
    'child exitcode 1',
  ]);
  assert.ok(!run.stdout.includes('this is foo function'));
  // The child's error explains the bootstrapping phase and the main guard.
  assert.match(
    run.stderr,
    /^Process Process-1:\nProcessError: An attempt has been made to start a new process before the\ncurrent process has finished its bootstrapping phase\./,
  );
  assert.match(run.stderr, /code that starts processes must sit behind the main guard/);
  assert.match(run.stderr, /if \(isMainModule\(import\.meta\)\)/);
  assert.match(run.stderr, /unguarded_main\.mjs/); // the stack points at the offending line
  // No fork bomb: exactly one process was started.
  assert.equal(run.lines.filter((l) => l.startsWith('starting a process')).length, 2);
  assert.ok(run.descendants.size <= 1, `one child expected, saw ${[...run.descendants].join(', ')}`);
  await assertNothingLeft(run, [Number(childPid)]);
});

exampleTest('queue_write_read', async () => {
  const run = await runExample('queue_write_read');
  assertOk(run);
  const [, writerPid] = match(run.lines, /^Process to write: (\d+)$/);
  const [, readerPid] = match(run.lines, /^Process to read: (\d+)$/);
  assert.notEqual(writerPid, readerPid);
  assert.equal(run.lines.length, 9, run.stdout);
  // The two children start concurrently; each value is put before it is got, and got in order.
  const puts = run.lines.filter((l) => l.startsWith('Put '));
  const gets = run.lines.filter((l) => l.startsWith('Get '));
  assert.deepEqual(puts, ['Put A to queue...', 'Put B to queue...', 'Put C to queue...']);
  assert.deepEqual(gets, ['Get A from queue.', 'Get B from queue.', 'Get C from queue.']);
  for (const v of ['A', 'B', 'C']) assertBefore(run.lines, `Put ${v} to queue...`, `Get ${v} from queue.`);
  assertBefore(run.lines, `Process to write: ${writerPid}`, 'Put A to queue...');
  assertBefore(run.lines, `Process to read: ${readerPid}`, 'Get A from queue.');
  // The parent waited (q.join()) until the reader printed all three, then terminated it.
  assert.equal(run.lines.at(-1), 'reader terminated: exitcode = -15');
  await assertNothingLeft(run, [Number(writerPid), Number(readerPid)]);
});

exampleTest('queue_bounded', async () => {
  const run = await runExample('queue_bounded');
  assertOk(run);
  assert.deepEqual(run.lines, [
    '篮子满了',
    'full() = true, qsize() = 3',
    'putNowait: Full',
    'put with a 100 ms timeout: Full',
    'a',
    'b',
    '{ a: 2 }',
    '队列为空',
    'empty() = true, qsize() = 0',
    'get with a 100 ms timeout: Empty',
    'get() waited for: c (from the child)',
  ]);
  await assertNothingLeft(run);
});

const COOKS: [string, string][] = [
  ['大海', '包子'],
  ['中海', '辣椒炒肉'],
  ['小海', '土豆丝'],
];
const DISHES = COOKS.flatMap(([, food]) => Array.from({ length: 10 }, (_, i) => `${food}${i}`));

/**
 * The cooks' and eaters' lines of tutorial 3 §9/§10: every cook produced its 10 dishes in order,
 * every dish was eaten exactly once, and each eater ate each cook's dishes in order (the queue is
 * FIFO per producer). Returns the lines that are neither.
 */
function assertKitchen(lines: string[]): string[] {
  const produced = new Map<string, string[]>();
  const eaten = new Map<string, string[]>();
  const rest: string[] = [];
  for (const line of lines) {
    let m = line.match(/^厨师(大海|中海|小海)生产了(\S+)$/);
    if (m) {
      produced.set(m[1]!, [...(produced.get(m[1]!) ?? []), m[2]!]);
      continue;
    }
    m = line.match(/^吃货(夏洛|西施)吃了(\S+)$/);
    if (m) {
      eaten.set(m[1]!, [...(eaten.get(m[1]!) ?? []), m[2]!]);
      continue;
    }
    rest.push(line);
  }
  for (const [cook, food] of COOKS) {
    assert.deepEqual(
      produced.get(cook),
      Array.from({ length: 10 }, (_, i) => `${food}${i}`),
      `cook ${cook}:\n${lines.join('\n')}`,
    );
  }
  const all = [...eaten.values()].flat();
  assert.deepEqual([...all].sort(), [...DISHES].sort(), `every dish eaten exactly once:\n${lines.join('\n')}`);
  for (const [eater, dishes] of eaten) {
    for (const [, food] of COOKS) {
      const idx = dishes.filter((d) => d.startsWith(food) && /^\d+$/.test(d.slice(food.length))).map((d) => Number(d.slice(food.length)));
      assert.deepEqual(
        idx,
        [...idx].sort((a, b) => a - b),
        `${eater} ate ${food} out of order:\n${lines.join('\n')}`,
      );
    }
  }
  return rest;
}

exampleTest('producer_consumer', async () => {
  const run = await runExample('producer_consumer');
  assertOk(run);
  assert.equal(run.lines.length, 61, run.stdout);
  assert.deepEqual(assertKitchen(run.lines), ['主']);
  // '主' comes once every cook has finished (the parent joined them); eaters may still be eating.
  const main = run.lines.indexOf('主');
  for (const [cook, food] of COOKS) assertBefore(run.lines, `厨师${cook}生产了${food}9`, '主');
  assert.ok(main >= 30, run.stdout);
  await assertNothingLeft(run);
});

exampleTest('joinable_queue', async () => {
  const run = await runExample('joinable_queue');
  assertOk(run);
  assert.equal(run.lines.length, 61, run.stdout);
  const rest = assertKitchen(run.lines);
  // q.join() returned only after every dish was eaten (and taskDone()): '主' is the last line.
  assert.equal(rest.length, 1, run.stdout);
  assert.match(rest[0]!, /^主 \d+\.\d\d s$/);
  assert.equal(run.lines.at(-1), rest[0]);
  // The daemon eaters, still blocked in get(), were terminated when the main module ended.
  await assertNothingLeft(run);
});

exampleTest('baozi', async () => {
  const run = await runExample('baozi');
  assertOk(run);
  assert.equal(run.lines.length, 22, run.stdout);
  const made = run.lines.filter((l) => l.endsWith('新鲜出炉'));
  const eaten = run.lines.filter((l) => l.endsWith('被吃了'));
  assert.deepEqual(
    made,
    Array.from({ length: 10 }, (_, i) => `大包子${i}号新鲜出炉`),
  );
  assert.deepEqual(
    eaten,
    Array.from({ length: 10 }, (_, i) => `大包子${i}号被吃了`),
  );
  // A bun is printed before it is put, so it is always made before it is eaten.
  for (let i = 0; i < 10; i++) assertBefore(run.lines, `大包子${i}号新鲜出炉`, `大包子${i}号被吃了`);
  // The producer's q.join() returns after the last taskDone(); the main process joined it.
  assert.deepEqual(run.lines.slice(-3), ['大包子9号被吃了', '所有的任务都被处理了', '主进程结束']);
  // The daemon eater was terminated when the main process ended.
  await assertNothingLeft(run);
});

exampleTest('pipe', async () => {
  const run = await runExample('pipe');
  assertOk(run);
  assert.deepEqual(run.lines, [
    'poll() before sending: false',
    'child got: {"greeting":"hello child","n":1}',
    'parent got: {"reply":"hello parent","n":2}',
    'parent got bytes: raw bytes',
    'recv(): EOFError (the child closed its end)',
    'child exitcode = 0',
  ]);
  await assertNothingLeft(run);
});

exampleTest('pool_apply_async', async () => {
  const run = await runExample('pool_apply_async');
  assertOk(run);
  const tasks = run.lines.slice(0, -1);
  assert.deepEqual(tasks.map((l) => l.replace(/ id>>>\d+$/, '')).sort(), ['进程0', '进程1', '进程2', '进程3', '进程4', '进程5']);
  // Six tasks on five workers: at most five worker pids, none of them the parent's.
  const pids = new Set(tasks.map((l) => Number(/id>>>(\d+)$/.exec(l)![1])));
  assert.ok(pids.size >= 1 && pids.size <= 5);
  assert.ok(!pids.has(run.pid));
  assert.equal(run.lines.at(-1), 'end');
  await assertNothingLeft(run, [...pids]);
});

exampleTest('pool_callbacks', async () => {
  const run = await runExample('pool_callbacks');
  assertOk(run);
  const [, main] = match(run.lines, /^main pid (\d+)$/);
  for (let i = 0; i < 3; i++) match(run.lines, new RegExp(`^apply: f1\\(${i}\\) ran in \\d+$`));
  // The callbacks run in the parent, before get() returns the same results.
  const callbacks = run.lines.filter((l) => l.startsWith('callback f2'));
  assert.equal(callbacks.length, 3);
  for (const l of callbacks) assert.match(l, new RegExp(`^callback f2 in ${main} got: f1\\([345]\\) ran in \\d+$`));
  assertBefore(run.lines, 'applyAsync returned at once; the main code goes on', callbacks[0]!);
  assert.deepEqual(
    run.lines.filter((l) => l.startsWith('get: ')).map((l) => l.slice(5)),
    ['f1(3)', 'f1(4)', 'f1(5)'].map((f) => callbacks.find((c) => c.includes(f))!.replace(/^.*got: /, '')),
  );
  await assertNothingLeft(run);
});

exampleTest('manager_dict', async () => {
  const run = await runExample('manager_dict');
  assertOk(run);
  assert.equal(run.lines[0], 'Map(10) {');
  for (let n = 0; n < 10; n++)
    assert.ok(
      run.lines.some((l) => new RegExp(`^\\s+${n} => 100,?$`).test(l)),
      `entry ${n}`,
    );
  await assertNothingLeft(run);
});

exampleTest('manager_lock', async () => {
  const run = await runExample('manager_lock');
  assertOk(run);
  assert.equal(run.lines.at(-1), '90');
  await assertNothingLeft(run);
});

exampleTest('manager_remote', async () => {
  const run = await runExample('manager_remote');
  assertOk(run);
  match(run.lines, /^serving on 127\.0\.0\.1:\d+$/);
  assertBefore(
    run.lines,
    run.lines.find((l) => l.startsWith('serving on'))!,
    'crawler: 3 urls done',
  );
  const results = run.lines.slice(run.lines.indexOf('crawler: 3 urls done') + 1);
  assert.deepEqual(results.sort(), ['https://a.example res...', 'https://b.example res...', 'https://c.example res...']);
  await assertNothingLeft(run);
});

test('every compiled example has a test, and the demo runs all but the fixture', { skip: selected }, () => {
  const compiled = fs
    .readdirSync(EXAMPLES)
    .filter((f) => f.endsWith('.mjs'))
    .map((f) => f.slice(0, -'.mjs'.length))
    .sort();
  assert.deepEqual(compiled, [...tested].sort(), 'build/examples/*.mjs and the tests here should match');
  assert.deepEqual(
    DEMO_EXAMPLES.map((e) => e.file).sort(),
    compiled.filter((f) => f !== 'unguarded_main'),
    'the demo should run every example except the unguarded_main fixture',
  );
});

test('cli: help, unknown command, missing command', { skip: selected }, () => {
  const help = spawnSync(process.execPath, [CLI, 'help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: multiproc <command>/);
  assert.match(help.stdout, /demo {4}run the example programs/);
  const unknown = spawnSync(process.execPath, [CLI, 'frobnicate'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.equal(unknown.stdout, '');
  assert.match(unknown.stderr, /^multiproc: unknown command 'frobnicate'\n\nUsage: multiproc <command>/);
  const none = spawnSync(process.execPath, [CLI], { encoding: 'utf8' });
  assert.equal(none.status, 2);
  assert.match(none.stderr, /Usage: multiproc <command>/);
});

// Every example has its own test above; this one checks what only the demo command does: the
// headings, the summary, and the choice of examples (two small ones, to keep it quick).
test('cli: demo runs the chosen examples under a heading each and ends with a summary', { skip: selected }, async () => {
  const chosen = ['start_process', 'pipe'];
  const run = await runNode([CLI, 'demo', ...chosen]);
  assert.equal(run.stderr, '');
  assert.equal(run.code, 0, run.stdout);
  const headings = run.lines.filter((l) => l.startsWith('== '));
  assert.deepEqual(
    headings.map((h) => h.match(/^== (\d+)\/2 (\w+): .+ \(twin of tutorial .+\)$/)?.[2]),
    DEMO_EXAMPLES.map((e) => e.file).filter((f) => chosen.includes(f)),
  );
  assert.match(run.lines.at(-1)!, /^demo: 2\/2 examples ran successfully in \d+\.\d s$/);
  await assertNothingLeft(run);
  const wrong = spawnSync(process.execPath, [CLI, 'demo', 'pipe', 'no_such_example'], { encoding: 'utf8' });
  assert.equal(wrong.status, 2);
  assert.equal(wrong.stdout, '');
  assert.match(wrong.stderr, /^multiproc demo: no example named 'no_such_example'; the examples are:\n {2}start_process\n/);
});
