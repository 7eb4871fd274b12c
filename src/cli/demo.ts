// `multiproc demo`: run the example programs, the TypeScript twins of the tutorial tutorials'
// Process-level programs, one after another, each under a short heading.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One example of the demo: its compiled file, what it shows and the tutorial program it twins. */
export interface DemoExample {
  /** Base name in examples/ (examples/<file>.mts, compiled to build/examples/<file>.mjs). */
  file: string;
  shows: string;
  source: string;
}

/**
 * The examples in the order the demo runs them: first how to start and wait for processes,
 * then what they do not share, who they are, how they end, the main guard, then locks,
 * a semaphore and a shared counter, and finally queues and a pipe.
 * examples/unguarded_main.mts is a fixture for the tests (it fails on purpose) and is left out.
 */
export const DEMO_EXAMPLES: readonly DemoExample[] = [
  { file: 'start_process', shows: 'start a process with args and with a name', source: 'tutorial 3 §2' },
  { file: 'join_many', shows: 'join() four timed tasks: the total is the longest, not the sum', source: 'tutorial 3 §3' },
  {
    file: 'isolated_globals',
    shows: "a child setting a module-level variable leaves the parent's alone",
    source: 'tutorial 3 §4, tutorial 2 f1',
  },
  { file: 'data_list', shows: 'five children append to their own copy of a list', source: 'tutorial 1' },
  { file: 'pid_ppid', shows: 'pid, ppid, name and currentProcess().pid', source: 'tutorial 3 §5' },
  {
    file: 'current_process',
    shows: 'currentProcess()/parentProcess() in the parent, a process child and a thread child',
    source: 'tutorial 1, tutorial 3 §5',
  },
  { file: 'subclass_run', shows: 'a Process subclass overriding run(), started 4 times', source: 'tutorial 1' },
  { file: 'terminate', shows: 'terminate(): isAlive() is true right after, false once it ended', source: 'tutorial 3 §5, tutorial 4' },
  { file: 'daemon_eunuch', shows: 'a daemon child (老太监) dies with the main process (皇帝)', source: 'tutorial 3 §6' },
  { file: 'daemon_pair', shows: 'a daemon and a normal child: only the normal one finishes', source: 'tutorial 2' },
  { file: 'main_guard', shows: 'why code that starts processes sits behind the main guard', source: 'tutorial 4' },
  { file: 'lock_print', shows: 'two processes print under one Lock: the locked prints never interleave', source: 'tutorial 1' },
  { file: 'tickets', shows: '10 buyers, a JSON file and a Lock: no ticket is sold twice', source: 'tutorial 3 §7' },
  { file: 'semaphore', shows: 'Semaphore(2): six processes, never more than two inside', source: 'tutorial 4' },
  { file: 'value_counter', shows: 'a shared Value counter: exact under its lock, short without it', source: 'tutorial 2' },
  { file: 'queue_write_read', shows: 'a writer and an endless reader share a Queue; the reader is terminated', source: 'tutorial 1' },
  { file: 'queue_bounded', shows: 'Queue(3): full, Full, Empty, and a get() that waits for a child', source: 'tutorial 3 §8' },
  { file: 'producer_consumer', shows: 'three cooks, two eaters, one Queue, ended by null sentinels', source: 'tutorial 3 §9' },
  { file: 'joinable_queue', shows: 'the same with a JoinableQueue: daemon eaters, taskDone() and q.join()', source: 'tutorial 3 §10' },
  { file: 'baozi', shows: 'a baker and a daemon eater of 包子 around a JoinableQueue(30)', source: 'tutorial 2' },
  { file: 'pipe', shows: 'a Pipe: messages both ways, bytes, then EOFError once the child closed', source: 'tutorial 4' },
  { file: 'pool_apply_async', shows: 'Pool(5) runs 6 applyAsync tasks, then close() and join()', source: 'tutorial 1' },
  { file: 'pool_callbacks', shows: 'apply (one at a time) vs applyAsync with a callback, on Pool(3)', source: 'tutorial 4, tutorial 5' },
  { file: 'manager_dict', shows: 'a Manager dict written by 10 processes; the parent polls isAlive()', source: 'tutorial 1' },
  { file: 'manager_lock', shows: 'a Manager dict decremented by 10 processes under a Lock: exactly 90', source: 'tutorial 2, tutorial 4' },
  { file: 'manager_remote', shows: 'crawler results stored in a dict served over TCP by another process', source: 'tutorial 1' },
];

/** Where the compiled examples are: build/examples, found from this file (build/src/cli/demo.js). */
export function examplesDir(): string {
  return path.resolve(__dirname, '..', '..', 'examples');
}

function runOne(file: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { stdio: 'inherit' });
    child.once('error', (err) => {
      process.stderr.write(`multiproc demo: cannot run ${file}: ${err.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/**
 * Run the demo — every example, or those named in `only` — and resolve the exit code for the
 * CLI: 0 when every example succeeded, 2 for a name that is not an example.
 */
export async function demo(only: readonly string[] = []): Promise<number> {
  const unknown = only.filter((name) => !DEMO_EXAMPLES.some((e) => e.file === name));
  if (unknown.length) {
    process.stderr.write(
      `multiproc demo: no example named ${unknown.map((n) => `'${n}'`).join(', ')}; the examples are:\n  ${DEMO_EXAMPLES.map((e) => e.file).join('\n  ')}\n`,
    );
    return 2;
  }
  const chosen = only.length ? DEMO_EXAMPLES.filter((e) => only.includes(e.file)) : DEMO_EXAMPLES;
  const dir = examplesDir();
  const missing = chosen.filter((e) => !fs.existsSync(path.join(dir, `${e.file}.mjs`)));
  if (missing.length === chosen.length) {
    process.stderr.write(
      `multiproc demo: the compiled examples were not found in ${dir}.\n` +
        'They are built from the examples/ folder of the source repository and are not part of the\n' +
        'published package. In a checkout of the repository run `npm run build`, then `npm run demo`\n' +
        '(or `npx multiproc demo`).\n',
    );
    return 1;
  }
  const started = Date.now();
  const failed: string[] = [];
  for (const [i, e] of chosen.entries()) {
    const file = path.join(dir, `${e.file}.mjs`);
    process.stdout.write(`\n== ${i + 1}/${chosen.length} ${e.file}: ${e.shows} (twin of ${e.source})\n`);
    if (!fs.existsSync(file)) {
      process.stdout.write(`   (missing: ${file}; run \`npm run build\`)\n`);
      failed.push(e.file);
      continue;
    }
    const code = await runOne(file);
    if (code !== 0) {
      process.stdout.write(`   (${e.file} exited with code ${code})\n`);
      failed.push(e.file);
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const ok = chosen.length - failed.length;
  process.stdout.write(
    `\ndemo: ${ok}/${chosen.length} examples ran successfully in ${secs} s${failed.length ? `; failed: ${failed.join(', ')}` : ''}\n`,
  );
  return failed.length ? 1 : 0;
}
