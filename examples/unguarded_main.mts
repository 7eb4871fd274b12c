// FIXTURE, not a demo: the unguarded-main mistake of tutorial 4 (the Windows fork bomb).
//
// This module starts a process at its top level WITHOUT the main guard. The child imports
// this module to find `foo`, reaches `p.start()` again while still bootstrapping, and the
// library refuses it with ProcessError (ERR_MP_BOOTSTRAPPING), whose message explains the
// guard; the child exits with code 1. No fork bomb: one child is started, not infinitely many.
// The fix is in examples/main_guard.mts.
import { Process } from 'multiproc';

export function foo(): void {
  console.log('this is foo function'); // never printed: the child fails while importing
}

console.log(`starting a process from pid ${process.pid}`);
const p = new Process({ target: foo }); // WRONG: no `if (isMainModule(import.meta))`
p.start();
console.log(`started child pid ${p.pid}`);
await p.join();
console.log(`child exitcode ${p.exitcode}`);
