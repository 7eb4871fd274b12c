// A daemon process dies with its parent (tutorial 3 §6 "守护进程").
//
// 皇帝和太监不是同生，但是是同死: the emperor (皇帝, the main process) and his eunuch
// (老太监, the daemon child) are not born together, but they die together.
//
// Python:
//     def task(name):
//         print('%s活着' % name); time.sleep(3); print('%s正常死亡' % name)
//     p1 = Process(target=task, args=('老太监',)); p1.daemon = True; p1.start()
//     time.sleep(1)
//     print('皇帝正在死亡')
//
// Output: "老太监活着", "皇帝正在死亡" — and never "老太监正常死亡" (died a natural death):
// when the main process ends, its daemon children are terminated.
import { isMainModule, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(name: string): Promise<void> {
  console.log(`${name}活着 (pid ${process.pid})`); // is alive
  await sleep(2000); // the tutorial sleeps 3 s
  console.log(`${name}正常死亡`); // never printed
}

if (isMainModule(import.meta)) {
  const p1 = new Process({ target: task, args: ['老太监'], daemon: true });
  // or, as in Python: p1.daemon = true before start()
  p1.start();
  await sleep(800); // the tutorial sleeps 1 s
  console.log('皇帝正在死亡'); // the emperor is dying; the eunuch goes with him
}
