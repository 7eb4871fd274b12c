// `npm test`: Node's built-in runner over the compiled tests (in one run, so its one summary is
// what CI reads; the selections run without the addon and on forkserver are test files too),
// then a check that the suite left no shared-memory segment in /dev/shm.
//
// Every segment the suite's processes create carries this run's tag (MULTIPROC_SHM_TAG, passed
// down through the environment), so segments of other programs on the machine are not counted.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';

const filter = process.argv.slice(2);
const files = readdirSync('build/test')
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)))
  .map((f) => `build/test/${f}`);
// (With no file, node --test would run every test it finds.)
if (files.length === 0) {
  console.error(`no test file in build/test matches ${filter.join(' or ')}`);
  process.exit(2);
}
const tag = `t${randomBytes(5).toString('hex')}`;
const ours = () => (existsSync('/dev/shm') ? readdirSync('/dev/shm').filter((n) => n.endsWith(`-${tag}`)) : []);
// A test file that hangs fails after 5 minutes instead of stalling the run (the longest, pool.test.js, takes
// ~130 s alone, and came near 3 minutes under load).
const r = spawnSync(process.execPath, ['--expose-gc', '--test', '--test-concurrency=2', '--test-timeout=300000', ...files], {
  stdio: 'inherit',
  env: { ...process.env, MULTIPROC_SHM_TAG: tag },
});
let code = r.status ?? 1;
// The resource tracker of the last test process may still be unlinking: give it a moment.
let left = ours();
for (let i = 0; i < 20 && left.length; i++) {
  spawnSync('sleep', ['0.1']);
  left = ours();
}
if (left.length) {
  console.error(`shared-memory segments left in /dev/shm after the suite: ${left.join(', ')}`);
  code = code || 1;
}
process.exit(code);
