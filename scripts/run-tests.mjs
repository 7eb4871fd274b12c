// `npm test`: Node's built-in runner over the compiled tests, then a check that the suite left
// no shared-memory segment of ours in /dev/shm. The runner's own summary is what CI reads.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const filter = process.argv.slice(2);
const files = readdirSync('build/test')
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)))
  .map((f) => `build/test/${f}`);
const r = spawnSync(process.execPath, ['--expose-gc', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
let code = r.status ?? 1;
if (existsSync('/dev/shm')) {
  const ours = readdirSync('/dev/shm').filter((n) => /^(multiproc|mp-)/.test(n));
  if (ours.length) {
    console.error(`shared-memory segments left in /dev/shm after the suite: ${ours.join(', ')}`);
    code = code || 1;
  }
}
process.exit(code);
