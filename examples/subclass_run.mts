// A Process subclass that overrides run() (tutorial 1 "通过类创建进程").
//
// Python:
//     class Myprocess(Process):
//         def run(self):
//             print(f"当前进程{multiprocessing.current_process()}")
//     for i in range(4): Myprocess().start()
//
// The subclass must be exported: the child imports this module and rebuilds the object
// from it. start() runs run() in the child.
import { currentProcess, isMainModule, Process } from 'multiproc';

export class MyProcess extends Process {
  override run(): void {
    console.log(`current process ${currentProcess().toString()}`); // 当前进程
  }
}

if (isMainModule(import.meta)) {
  const processes: MyProcess[] = [];
  for (let i = 0; i < 4; i++) {
    const p = new MyProcess(); // named MyProcess-1 ... MyProcess-4
    p.start();
    processes.push(p);
  }
  for (const p of processes) await p.join();
}
