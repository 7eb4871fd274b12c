// A pool of 5 workers runs 6 tasks with applyAsync, then close() and join() (tutorial 1 §进程池).
//
// Python:
//     p = Pool(5)
//     for i in range(6):
//         p.apply_async(func, args=(i,))
//     p.close()
//     p.join()      # waits for the queued tasks to finish, then for the workers to exit
//     print("end")
//
// Six tasks on five workers: one worker runs two of them, so at most five pids appear.
import { isMainModule, Pool } from 'multiproc';

export function func(i: number): void {
  console.log(`进程${i} id>>>${process.pid}`);
}

if (isMainModule(import.meta)) {
  const p = new Pool(5);
  for (let i = 0; i < 6; i++) p.applyAsync(func, [i]);
  p.close(); // no more tasks...
  await p.join(); // ...and wait for the queued ones to finish and the workers to exit
  console.log('end');
}
