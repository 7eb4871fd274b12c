// The package as a user gets it: packed as `npm pack` packs it (with the prebuilt addon the
// prepack step adds), installed into a fresh project by a machine with no compiler, make or
// python3 on PATH, and used from CommonJS and from an ES module, plus its command.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import { tmpDir } from './helpers.js';

const root = path.join(__dirname, '..', '..');

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}, ${r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** npm's own script (npm is a Node program), so that it runs with a PATH that has no tools. */
function npmCli(): string {
  const fromEnv = process.env.npm_execpath;
  if (fromEnv?.endsWith('.js') && fs.existsSync(fromEnv)) return fromEnv;
  const found = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  return fs.realpathSync(found);
}

const APP_CJS = `
const { Process, Pool, Lock, Queue, currentProcess } = require('multiproc');
exports.work = async (q, lock) => {
  await lock.withLock(() => q.put('hello from ' + currentProcess().name));
};
exports.square = (x) => x * x;
// Whether a worker loaded the managers' code: this module's top level does not read them.
exports.managersLoaded = () => Object.keys(require.cache).some((f) => /managers[\\/]managers\\.js$/.test(f));
if (require.main === module) (async () => {
  const q = new Queue();
  const lock = new Lock();
  const p = new Process({ target: exports.work, args: [q, lock] });
  p.start();
  console.log(await q.get());
  await p.join();
  console.log('exitcode', p.exitcode);
  const pool = new Pool(2);
  console.log(JSON.stringify(await pool.map(exports.square, [1, 2, 3])));
  console.log('worker loaded managers', await pool.apply(exports.managersLoaded, []));
  pool.terminate();
  await pool.join();
})();
`;

const APP_ESM = `
import { Pool, isMainModule } from 'multiproc';
export const cube = (x) => x ** 3;
if (isMainModule(import.meta)) {
  const pool = new Pool(2);
  try {
    console.log(JSON.stringify(await pool.map(cube, [1, 2, 3])));
  } finally {
    pool.terminate();
    await pool.join();
  }
}
`;

test('npm pack, then install with no compiler and run Process, Pool, Lock and Queue from it', { timeout: 300_000 }, () => {
  // Staged outside the checkout: the prepack step of a real `npm pack` would rebuild build/,
  // which the other test files are using right now. The staged copy has what `files` ships.
  const stage = tmpDir();
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { files: string[]; scripts: Record<string, string> };
  assert.ok(pkg.scripts.prepare?.includes('build'), 'prepare builds the package (npm ci, git installs)');
  assert.ok(pkg.scripts.prepack?.includes('prebuild'), 'prepack puts the prebuilt addon in the tarball');
  for (const f of ['package.json', 'README.md', 'docs', 'build/src', 'native', 'scripts/prebuild.mjs']) {
    fs.cpSync(path.join(root, f), path.join(stage, f), {
      recursive: true,
      filter: (src) => !src.includes(`${path.sep}native${path.sep}build`),
    });
  }
  const npm = npmCli();
  sh(process.execPath, ['scripts/prebuild.mjs'], stage);
  const packed = sh(process.execPath, [npm, 'pack', '--ignore-scripts', '--json'], stage);
  const [{ filename, files }] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
  const paths = files.map((f) => f.path);
  assert.ok(paths.includes('build/src/index.js') && paths.includes('build/src/index.mjs') && paths.includes('build/src/cli/main.js'));
  assert.ok(paths.includes(`native/prebuilds/linux-${os.arch()}/node.napi.glibc.node`), paths.join('\n'));
  assert.ok(!paths.some((p) => p.startsWith('test/') || p.startsWith('native/build/') || p.startsWith('build/test/')));

  // A fresh project, and a PATH with node and sh only: no g++, make or python3.
  const app = tmpDir();
  const bin = path.join(app, '.bin-no-tools');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  sh(process.execPath, [npm, 'install', path.join(stage, filename), '--prefer-offline', '--no-audit', '--no-fund'], app, env);
  assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'multiproc', 'native', 'build')), 'nothing was compiled');

  fs.writeFileSync(path.join(app, 'main.cjs'), APP_CJS);
  const cjs = sh(process.execPath, ['main.cjs'], app, env);
  assert.deepEqual(cjs.stdout.trim().split('\n'), ['hello from Process-1', 'exitcode 0', '[1,4,9]', 'worker loaded managers false']);
  fs.writeFileSync(path.join(app, 'main.mjs'), APP_ESM);
  const esm = sh(process.execPath, ['main.mjs'], app, env);
  assert.equal(esm.stdout.trim(), '[1,8,27]');
  const version = sh(process.execPath, [path.join(app, 'node_modules', '.bin', 'multiproc'), '--version'], app, env);
  assert.match(version.stdout, /^multiproc \d+\.\d+\.\d+ /);
});

test('require(multiproc) loads each part of the library when one of its names is first read', () => {
  const probe = `
    const loaded = (re) => Object.keys(require.cache).some((f) => re.test(f));
    const mp = require(${JSON.stringify(path.join(root, 'build', 'src', 'index.js'))});
    const parts = { managers: /managers[\\/]managers\\.js$/, pool: /pool[\\/]pool\\.js$/, redis: /redis[\\/]/ };
    const before = Object.fromEntries(Object.entries(parts).map(([k, re]) => [k, loaded(re)]));
    const isClass = typeof mp.Pool === 'function' && typeof mp.Manager === 'function';
    const after = Object.fromEntries(Object.entries(parts).map(([k, re]) => [k, loaded(re)]));
    console.log(JSON.stringify({ before, after, isClass, names: Object.keys(mp).length }));
  `;
  const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { before: Record<string, boolean>; after: Record<string, boolean>; isClass: boolean; names: number };
  assert.deepEqual(out.before, { managers: false, pool: false, redis: false });
  assert.deepEqual(out.after, { managers: true, pool: true, redis: false });
  assert.ok(out.isClass);
  // Every public name is there from the start, as the ES module face lists them.
  const esm = fs.readFileSync(path.join(root, 'build', 'src', 'index.mjs'), 'utf8');
  const listed = /export const \{ ([^}]+) \}/.exec(esm)![1]!.split(', ');
  assert.equal(out.names, listed.length);
});
