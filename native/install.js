// `npm install` step: use the prebuilt addon shipped in the package when it loads on this machine,
// else compile it with node-gyp (into native/build). Installing never fails because of the addon:
// without it, the library says what is missing when a feature needs it.
//
// node-gyp downloads Node's headers unless told where they are. Node installs that ship their
// headers next to the binary (Debian's nodejs, nvm, the official tarballs: <prefix>/include/node)
// are used directly when their version matches the running Node, so no network is needed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const here = __dirname;

function say(text) {
  process.stderr.write(`multiproc: ${text}\n`);
}

// The addon is built on Linux's futex and POSIX shared memory; elsewhere the library runs without it.
if (process.platform !== 'linux') {
  say(`the native addon is for Linux only; on ${process.platform} multiproc runs without it (see docs/install.md).`);
  process.exit(0);
}

if (process.env.MULTIPROC_NATIVE === '0') {
  say('MULTIPROC_NATIVE=0: the native addon is not built.');
  process.exit(0);
}

// A build from these sources that is older than them (a source checkout after a change) is stale.
function stale() {
  const built = path.join(here, 'build', 'Release', 'multiproc.node');
  if (!fs.existsSync(built)) return false;
  const t = fs.statSync(built).mtimeMs;
  return ['multiproc.cc', 'binding.gyp'].some((f) => fs.existsSync(path.join(here, f)) && fs.statSync(path.join(here, f)).mtimeMs > t);
}

function loads() {
  try {
    require('node-gyp-build')(here);
    return true;
  } catch {
    return false;
  }
}

if (!process.env.npm_config_build_from_source && !stale() && loads()) process.exit(0);

/** Where node-gyp is: npm tells its scripts; else the one that comes with npm; else PATH. */
function nodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(
      path.join(
        path.dirname(require.resolve('npm/package.json', { paths: [path.dirname(process.execPath)] })),
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      ),
    );
  } catch {
    // npm is not where Node is
  }
  candidates.push(
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  for (const c of candidates) if (c && fs.existsSync(c)) return [process.execPath, c];
  return ['node-gyp'];
}

const env = { ...process.env };
if (!env.npm_config_nodedir) {
  const prefix = path.resolve(process.execPath, '..', '..');
  try {
    const h = fs.readFileSync(path.join(prefix, 'include', 'node', 'node_version.h'), 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => h.match(new RegExp(`#define NODE_${k}_VERSION (\\d+)`))[1]);
    if (`v${v.join('.')}` === process.version) env.npm_config_nodedir = prefix;
  } catch {
    // no local headers: node-gyp fetches them as usual
  }
}
const [cmd, ...args] = nodeGyp();
const r = spawnSync(cmd, [...args, 'rebuild'], { cwd: here, env, stdio: 'inherit' });
if (r.status !== 0) {
  say(
    'the native addon (shared memory and futex waits) was not built, and no prebuilt one fits this machine.\n' +
      'It needs a C++ compiler, make and python3 (Debian/Ubuntu: apt-get install g++ make python3;\n' +
      'Fedora: dnf install gcc-c++ make python3), then `npm rebuild multiproc`. See docs/install.md.',
  );
}
process.exit(0);
