// A daemon and a normal child side by side (tutorial 2 "守护进程").
//
// Python:
//     def f1(): time.sleep(3); print('xxxx')
//     def f2(): time.sleep(5); print('普通子进程的代码')
//     p = Process(target=f1); p.daemon = True; p.start()
//     p2 = Process(target=f2); p2.start()
//     print('主进程结束')
//
// When the main process's code is finished ('主进程结束', "main process ends"), the daemon
// is terminated, so 'xxxx' never prints; the main process still waits for the normal
// (non-daemon) child, whose line ('普通子进程的代码', "code of the normal child") does print.
import { isMainModule, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function f1(): Promise<void> {
  await sleep(300);
  console.log('xxxx');
}

export async function f2(): Promise<void> {
  await sleep(500);
  console.log('普通子进程的代码');
}

if (isMainModule(import.meta)) {
  const p = new Process({ target: f1 });
  p.daemon = true; // must be set before start()
  p.start();
  const p2 = new Process({ target: f2 });
  p2.start();
  console.log('主进程结束');
  // No join(): the main module's code ends here. As in Python, the daemon is terminated at
  // once and the non-daemon child is waited for.
}
