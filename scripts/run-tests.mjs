// `npm test`: Node's built-in runner over the compiled tests, then a check that the suite left
// no shared-memory segment of ours in /dev/shm. The runner's own summary is what CI reads.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const filter = process.argv.slice(2);
const files = readdirSync('build/test')
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)))
  .map((f) => `build/test/${f}`);
// Segments from other programs (or earlier, killed runs) are not this run's business.
const shm = () => (existsSync('/dev/shm') ? readdirSync('/dev/shm').filter((n) => /^(multiproc|mp-)/.test(n)) : []);
const before = new Set(shm());
const r = spawnSync(process.execPath, ['--expose-gc', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
let code = r.status ?? 1;
{
  // The resource tracker of the last test process may still be unlinking: give it a moment.
  let ours = shm().filter((n) => !before.has(n));
  for (let i = 0; i < 20 && ours.length; i++) {
    spawnSync('sleep', ['0.1']);
    ours = shm().filter((n) => !before.has(n));
  }
  if (ours.length) {
    console.error(`shared-memory segments left in /dev/shm after the suite: ${ours.join(', ')}`);
    code = code || 1;
  }
}
process.exit(code);
