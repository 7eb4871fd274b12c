// currentProcess() and parentProcess() in the parent and in a child, on both start methods.
//
// Python:
//     print(multiprocessing.current_process())   # <_MainProcess name='MainProcess' ...>
//     print(multiprocessing.parent_process())    # None in the main process
//
// The default start method 'spawn' runs the child in a new Node process; getContext('thread')
// gives the same API on a worker thread (same pid, its own module state).
import { currentProcess, getContext, isMainModule, parentProcess, Process } from 'multiproc';

export function show(where: string): void {
  const parent = parentProcess();
  console.log(`${where}: currentProcess() = ${currentProcess().toString()}`);
  console.log(`${where}: parentProcess() = ${parent ? `${parent.name} (pid ${parent.pid})` : 'null'}, pid = ${process.pid}`);
}

if (isMainModule(import.meta)) {
  show('parent');

  const p = new Process({ target: show, args: ['spawn child'] });
  p.start();
  await p.join();

  // The thread backend: a worker thread in this process, same API.
  const ctx = getContext('thread');
  const t = new ctx.Process({ target: show, args: ['thread child'], name: 'Worker-T' });
  t.start();
  await t.join();

  console.log(`exitcodes: spawn ${p.exitcode}, thread ${t.exitcode}`);
}
