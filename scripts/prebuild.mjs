// `npm pack` (prepack): build the addon for every target this machine can build, into
// native/prebuilds/<platform>-<arch>/node.napi.<libc>.node, where node-gyp-build finds it on the
// user's machine — so that installing needs no compiler. The native build (linux-x64 here) always;
// linux-arm64 when Debian's cross compiler is installed (apt-get install g++-aarch64-linux-gnu).
// musl (Alpine) is not built: Debian has no C++ cross toolchain for musl; there the addon compiles
// at install, or the library runs without it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// The package being packed: the current directory (npm runs prepack there).
const root = process.cwd();
const native = path.join(root, 'native');
const out = path.join(native, 'prebuilds');

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

function nodeGyp() {
  for (const c of [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ])
    if (c && fs.existsSync(c)) return c;
  throw new Error('prebuild: node-gyp not found (run through npm, or set npm_config_node_gyp)');
}

function nodedir() {
  const prefix = path.resolve(process.execPath, '..', '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

const targets = [{ arch: os.arch(), env: {} }];
if (os.platform() === 'linux' && os.arch() === 'x64' && which('aarch64-linux-gnu-g++')) {
  targets.push({ arch: 'arm64', env: { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++' } });
}

fs.rmSync(out, { recursive: true, force: true });
for (const t of targets) {
  // A scratch copy of the sources: node-gyp rebuild starts by deleting its build folder, and the
  // developer's native/build must survive a pack.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'multiproc-prebuild-'));
  for (const f of ['binding.gyp', 'multiproc.cc']) fs.copyFileSync(path.join(native, f), path.join(dir, f));
  const args = [nodeGyp(), 'rebuild', `--arch=${t.arch}`, '--loglevel=warn'];
  const nd = nodedir();
  if (nd) args.push(`--nodedir=${nd}`);
  const r = spawnSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...t.env } });
  if (r.status !== 0) throw new Error(`prebuild: the addon did not build for linux-${t.arch}`);
  const dest = path.join(out, `${os.platform()}-${t.arch}`);
  fs.mkdirSync(dest, { recursive: true });
  fs.copyFileSync(path.join(dir, 'build', 'Release', 'multiproc.node'), path.join(dest, 'node.napi.glibc.node'));
  const strip = t.arch === os.arch() ? 'strip' : 'aarch64-linux-gnu-strip';
  if (which(strip)) spawnSync(strip, ['--strip-unneeded', path.join(dest, 'node.napi.glibc.node')]);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`prebuild: ${path.relative(root, path.join(dest, 'node.napi.glibc.node'))}`);
}
