// pid, ppid and name (tutorial 3 §5 "进程对象其他相关的属性或方法").
//
// Python:
//     print('%s is running爹是 %s' % (os.getpid(), os.getppid()))     # in the child
//     print('%s is running' % current_process().pid)                    # the same pid
//     print(p.name, p.pid)                                              # in the parent
//
// 爹是 = "whose dad is". The child's ppid is the parent's pid; p.pid in the parent is the
// child's process.pid; currentProcess().pid is process.pid wherever it is called.
import { currentProcess, isMainModule, Process } from 'multiproc';

export function task(): void {
  console.log(`child: ${process.pid} is running, 爹是 ${process.ppid}`);
  console.log(`child: currentProcess().pid = ${currentProcess().pid}, name = ${currentProcess().name}`);
}

if (isMainModule(import.meta)) {
  const p = new Process({ target: task });
  p.start();
  console.log(`parent: p.name = ${p.name}, p.pid = ${p.pid}`);
  await p.join();
  console.log(`parent: 主 ${process.pid} 爹是 ${process.ppid}, currentProcess().pid = ${currentProcess().pid}`);
}
