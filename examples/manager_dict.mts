// A dict served by a Manager, written by 10 processes (tutorial 1 "Manager进程间数据共享").
//
// Python:
//     def task(arg, dic):
//         time.sleep(0.5)
//         dic[arg] = 100
//     m = Manager()
//     dic = m.dict()
//     process_list = [Process(target=task, args=(i, dic)) for i in range(10)]   # each p.start()
//     while True:                                  # poll is_alive until all are done
//         if all(not p.is_alive() for p in process_list): break
//     print(dic)
//
// The dict lives in the manager's server process; `dic` here and in every child is a proxy
// whose methods are calls to that server (they return Promises). The tutorial busy-polls; here the
// poll sleeps 10 ms between rounds so that it does not burn a core.
import { isMainModule, Manager, Process, type DictProxy } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(arg: number, dic: DictProxy<number, number>): Promise<void> {
  await sleep(500);
  await dic.set(arg, 100); // Python: dic[arg] = 100
}

if (isMainModule(import.meta)) {
  await using m = await Manager(); // Python: m = Manager()  (shut down at the end of the block)
  const dic = await m.dict<number, number>();
  const processList: Process[] = [];
  for (let i = 0; i < 10; i++) {
    const p = new Process({ target: task, args: [i, dic] });
    p.start();
    processList.push(p);
  }
  while (processList.some((p) => p.isAlive())) await sleep(10);
  console.log(await dic.copy()); // Python prints {0: 100, 1: 100, ..., 9: 100}
}
