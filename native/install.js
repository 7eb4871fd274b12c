// `npm install` step: load the addon if it is already built, else compile it with node-gyp
// (through node-gyp-build, run from this folder so the build lands in native/build).
//
// node-gyp downloads Node's headers unless told where they are. Node installs that ship their
// headers next to the binary (Debian's nodejs, nvm, the official tarballs: <prefix>/include/node)
// are used directly when their version matches the running Node, so no network is needed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

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
const bin = require.resolve('node-gyp-build/bin.js');
const r = spawnSync(process.execPath, [bin], { cwd: __dirname, env, stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(
    '\nmultiproc: the native addon (shared memory and futex waits) did not build.\n' +
      'It needs a C++ compiler, make and python3: on Debian/Ubuntu `apt-get install g++ make python3`,\n' +
      'on Fedora `dnf install gcc-c++ make python3`, on macOS `xcode-select --install`.\n' +
      'Then run `npm rebuild multiproc` (or `npm ci` again).\n',
  );
}
process.exit(r.status ?? 1);
