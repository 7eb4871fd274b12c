// Data is not shared between processes (tutorial 1 "进程间的数据不会共享").
//
// Python:
//     data_list = []
//     def task(arg):
//         data_list.append(arg)
//         print(data_list)
//     for i in range(5): Process(target=task, args=(i,)).start()
//
// Each child appends to its OWN copy of `dataList`, so each prints a one-element list,
// in whatever order the children happen to run: [0] [4] [2] [1] [3] ...
import { isMainModule, Process } from 'multiproc';

export const dataList: number[] = [];

export function task(arg: number): void {
  dataList.push(arg);
  console.log(JSON.stringify(dataList));
}

if (isMainModule(import.meta)) {
  for (let i = 0; i < 5; i++) {
    const p = new Process({ target: task, args: [i] });
    p.start();
  }
  // No join(): like Python, the main process waits for its non-daemon children before exiting.
}
