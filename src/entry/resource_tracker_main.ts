// The resource tracker process: read REGISTER/UNREGISTER lines until every writer is gone,
// then unlink what is left. Signals meant for the program are ignored, as in Python.
import { unlinkSegment } from '../shm/native.js';

const names = new Set<string>();
let pending = '';

process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  pending += chunk;
  let nl: number;
  while ((nl = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    const space = line.indexOf(' ');
    const cmd = line.slice(0, space);
    const name = line.slice(space + 1);
    if (cmd === 'REGISTER') names.add(name);
    else if (cmd === 'UNREGISTER') names.delete(name);
  }
});
process.stdin.on('end', () => {
  for (const name of names) {
    try {
      unlinkSegment(name);
    } catch {
      // Already unlinked by its last user.
    }
  }
  if (names.size && process.env.MULTIPROC_DEBUG)
    process.stderr.write(`multiproc resource tracker: unlinked ${names.size} segment(s) left by crashed processes\n`);
  process.exit(0);
});
