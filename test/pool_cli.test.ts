// `multiproc map` end to end: a real JSON-lines file and stdin, results in input order, a bad
// line and a failing item reported with their line numbers, --fail-fast, --threads, ESM and
// CommonJS modules, a package name, and the progress lines on stderr.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { ProgressBar } from '../src/index.js';
import { fixture, tmpDir } from './helpers.js';

const MAIN = path.join(__dirname, '..', 'src', 'cli', 'main.js');
/** The .jsonl fixtures are not compiled: they stay in the source tree. */
const INPUT = path.join(__dirname, '..', '..', 'test', 'fixtures', 'cli_map_input.jsonl');
const TARGETS = fixture('cli_map_targets.mjs');
const dir = tmpDir();

function run(
  args: string[],
  opts: { stdin?: string; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'map', ...args], { cwd: opts.cwd ?? dir, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.stdin ?? '');
  });
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l !== '');

for (const backend of [[], ['--threads']]) {
  const tag = backend.length ? 'threads' : 'processes';

  test(`a file with a bad line and a failing item: both reported with line numbers, the rest in order (${tag})`, async () => {
    const r = await run([`${TARGETS}#square`, INPUT, '--processes', '2', ...backend]);
    assert.equal(r.code, 1, r.stderr);
    // Lines 1 2 3(bad) 4(blank) 5 6(7 fails) 7: one output line per item.
    assert.deepEqual(lines(r.stdout), ['1', '4', 'null', '16', 'null', '25']);
    assert.match(r.stderr, /line 3: invalid JSON/);
    assert.match(r.stderr, /line 6: RangeError: seven is not welcome/);
    assert.match(r.stderr, /2 of 6 item\(s\) failed/);
    // Not a TTY: progress as whole lines, ending at 100 %.
    assert.match(r.stderr, /^map 100% 6\/6 2 failed .*$/m);
  });

  test(`stdin, --chunksize 3: results in input order although later items finish first (${tag})`, async () => {
    const input = Array.from({ length: 20 }, (_, i) => `${i}\n`).join('');
    const r = await run([`${path.relative(dir, TARGETS)}#slowFirst`, '-', '--chunksize', '3', '-p', '2', ...backend], { stdin: input });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      lines(r.stdout),
      Array.from({ length: 20 }, (_, i) => String(i * 10)),
    );
  });

  test(`--fail-fast stops at the first failure with a non-zero exit (${tag})`, async () => {
    const input = Array.from({ length: 200 }, (_, i) => (i === 3 ? '{nope\n' : `${i}\n`)).join('');
    const r = await run([`${TARGETS}#square`, '--fail-fast', '-p', '2', ...backend], { stdin: input });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /line 4: invalid JSON/);
    assert.match(r.stderr, /--fail-fast/);
    const out = lines(r.stdout);
    assert.deepEqual(out.slice(0, 3), ['0', '1', '4']);
    assert.ok(out.length < 200);
  });
}

test('objects in and out, --starmap, the default export, a CommonJS module by relative path and a package name', async () => {
  let r = await run([`${TARGETS}#describe`, '--no-progress'], { stdin: '{"name":"a","n":1}\n{"name":"b","n":2}\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), ['"a:1"', '"b:2"']);
  assert.equal(r.stderr, '');
  r = await run([`${TARGETS}#add`, '--starmap', '--no-progress'], { stdin: '[1,2]\n[3,4]\n5\n' });
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.stdout), ['3', '7', 'null']);
  assert.match(r.stderr, /line 3: .*JSON array/);
  r = await run([TARGETS, '--no-progress'], { stdin: '41\n' });
  assert.deepEqual(lines(r.stdout), ['42']);
  // CommonJS, resolved from the working directory.
  const cjsDir = path.join(dir, 'cjs');
  fs.mkdirSync(path.join(cjsDir, 'node_modules', 'tripler'), { recursive: true });
  fs.writeFileSync(path.join(cjsDir, 'lib.cjs'), 'exports.triple = (x) => x * 3;\n');
  fs.writeFileSync(path.join(cjsDir, 'node_modules', 'tripler', 'package.json'), '{"name":"tripler","main":"index.js"}');
  fs.writeFileSync(
    path.join(cjsDir, 'node_modules', 'tripler', 'index.js'),
    'module.exports.triple = function triple(x) { return x * 3; };\n',
  );
  r = await run(['./lib.cjs#triple', '--no-progress', '--threads'], { stdin: '1\n2\n', cwd: cjsDir });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), ['3', '6']);
  r = await run(['tripler#triple', '--no-progress', '-p', '1'], { stdin: '5\n', cwd: cjsDir });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), ['15']);
});

test('usage errors exit with 2 and say what is wrong', async () => {
  let r = await run([`${TARGETS}#nothere`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no exported function 'nothere'/);
  r = await run(['./missing.mjs#f']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /module not found/);
  r = await run([`${TARGETS}#square`, '--processes', '0']);
  assert.equal(r.code, 2);
  r = await run([`${TARGETS}#square`, path.join(dir, 'no-such.jsonl')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /input file not found/);
  r = await run(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--fail-fast/);
});

test('--version prints the package version', () => {
  const r = spawnSync(process.execPath, [MAIN, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(r.stdout, `multiproc ${pkg.version} (node ${process.version})\n`);
});

test('a TypeScript module: refused with the fix named, then run with --import tsx in every worker', async () => {
  const source = path.join(__dirname, '..', '..', 'test', 'fixtures', 'cli_map_targets.mts');
  const root = path.join(__dirname, '..', '..');
  const plain = await run([`${source}#add`, '-', '--starmap', '--no-progress'], { stdin: '[1,2]\n', cwd: root });
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /for TypeScript add --import tsx/);
  const r = await run([`${source}#add`, '-', '--starmap', '--no-progress', '--import', 'tsx', '-p', '2'], {
    stdin: '[1,2]\n[3,4]\n[5,6]\n',
    cwd: root,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), ['3', '7', '11']);
});

test('--trace writes a Chrome trace with a slice per chunk; --timings reports each worker', async () => {
  const trace = path.join(dir, 'map-trace.json');
  const input = Array.from({ length: 12 }, (_, i) => `${i}\n`).join('');
  const r = await run([`${TARGETS}#slowFirst`, '-', '-p', '2', '-c', '2', '--no-progress', '--trace', trace, '--timings'], {
    stdin: input,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(lines(r.stdout).length, 12);
  const events = (JSON.parse(fs.readFileSync(trace, 'utf8')) as { traceEvents: { ph: string; name: string }[] }).traceEvents;
  assert.equal(events.filter((e) => e.ph === 'X').length, 6, 'one complete slice per chunk of 2');
  assert.match(r.stderr, /^worker +chunks +run ms \(mean\) +queued ms \(mean\)$/m);
  const rows = r.stderr.split('\n').filter((l) => /PoolWorker-\d+ +\d+ +\d/.test(l));
  assert.ok(rows.length >= 1 && rows.length <= 2, r.stderr);
  const chunks = rows.map((l) => Number(l.trim().split(/ +/)[1])).reduce((a, b) => a + b, 0);
  assert.equal(chunks, 6);
  assert.match(r.stderr, /trace written to /);
});

test('progress on a terminal that reports 0 columns is drawn for 80, not clipped', () => {
  const out: string[] = [];
  const stream = Object.assign(new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) }), { isTTY: true, columns: 0 });
  const bar = new ProgressBar({ stream, everyMs: 0, label: 'map' });
  bar.update({ done: 5, total: 10, failed: 0, rate: 2, elapsedMs: 2500 });
  assert.match(out.join(''), /\[#+-+\] +50% 5\/10/);
});
