// A process lock around a print (tutorial 1 "进程锁").
//
// Python:
//     lock = multiprocessing.Lock()
//     def task(arg):
//         print("进程来了")           # "a process has arrived"
//         lock.acquire()
//         time.sleep(2)
//         print(arg)
//         lock.release()
//     p1 = multiprocessing.Process(target=task, args=(1,)); p1.start()
//     p2 = multiprocessing.Process(target=task, args=(2,)); p2.start()
//
// Both processes arrive at once, but only one at a time holds the lock: the second waits
// until the first has slept and printed. Here the lock is passed as an argument: the tutorial's
// module-level lock is shared only because Linux's default start method, fork, copies the
// parent; under 'spawn' (this library's default, and Python's on macOS and Windows) each child
// re-imports the module and would make a lock of its own.
import { isMainModule, Lock, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(arg: number, lock: Lock): Promise<void> {
  console.log('进程来了');
  await lock.acquire();
  console.log(`进程${arg} 拿到锁`); // "process N got the lock" (not in the tutorial: shows who holds it)
  await sleep(400); // the tutorial sleeps 2 s
  console.log(arg);
  lock.release();
}

if (isMainModule(import.meta)) {
  const lock = new Lock();
  const p1 = new Process({ target: task, args: [1, lock] });
  p1.start();
  const p2 = new Process({ target: task, args: [2, lock] });
  p2.start();
  // No join(), as in the tutorial: the main process waits for its non-daemon children anyway.
}
