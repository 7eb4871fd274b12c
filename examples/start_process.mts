// Starting a process, with args and with a name (tutorial 3 §2 "开启进程的方式").
//
// Python:
//     def task(name):
//         print('%s is running' % name); time.sleep(3); print('%s is done' % name)
//     p = Process(target=task, args=('大海',))
//     p.start()
//     print('主')
//
// start() only asks the OS for a new process and returns at once, so '主' (main) is printed
// before the child says anything.
import { currentProcess, isMainModule, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(name: string): Promise<void> {
  console.log(`${name} is running (process name: ${currentProcess().name})`);
  await sleep(300); // the tutorial sleeps 3 s
  console.log(`${name} is done`);
}

if (isMainModule(import.meta)) {
  // Positional arguments go in `args` (Python's args tuple; there are no kwargs).
  const p = new Process({ target: task, args: ['大海'] });
  // A process can also be given a name; otherwise it is Process-N.
  const named = new Process({ target: task, args: ['大海2'], name: 'dahai-2' });
  p.start();
  named.start();
  console.log('主');
  console.log(`names: ${p.name}, ${named.name}`);
  await p.join();
  await named.join();
}
