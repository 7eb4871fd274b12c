// Processes do not share memory (tutorial 3 §4 "进程之间内存空间互相隔离", tutorial 2's f1).
//
// Python:
//     n = 100
//     def task():
//         global n
//         n = 0
//     if __name__ == '__main__':
//         p = Process(target=task); p.start(); p.join()
//         print(n)          # 100
//
// The child imports this module afresh, so it has its own `n`: setting it to 0 there
// changes nothing in the parent.
import { isMainModule, Process } from 'multiproc';

export let n = 100;

// The target is exported: the child imports this module and takes `task` from it.
export function task(): void {
  n = 0; // changes the child's own copy of the module-level variable
  console.log(`子进程: n = ${n}`);
}

if (isMainModule(import.meta)) {
  const p = new Process({ target: task });
  p.start();
  await p.join();
  console.log(`主进程: n = ${n}`); // still 100
}
