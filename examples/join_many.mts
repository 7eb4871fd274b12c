// join(): wait for children; they run concurrently (tutorial 3 §3 "join方法等待子进程结束").
//
// Python:
//     for i in range(1, 5):
//         p = Process(target=task, args=('大海%s' % i, i)); p_l.append(p); p.start()
//     for p in p_l: p.join()
//     print('主', time.time() - start)      # ≈ 4 s (the longest task), not 1+2+3+4 = 10 s
//
// Here the tasks sleep 1, 2, 3 and 4 s, as in the tutorial: the total is about the longest task
// (plus the time to start the processes), not the sum of all four.
import { isMainModule, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(name: string, ms: number): Promise<void> {
  console.log(`${name} is running`);
  await sleep(ms);
  console.log(`${name} is done`);
}

if (isMainModule(import.meta)) {
  const start = Date.now();
  const processes: Process[] = [];
  for (let i = 1; i <= 4; i++) {
    const p = new Process({ target: task, args: [`大海${i}`, i * 1000] });
    processes.push(p);
    p.start(); // start them all first...
  }
  for (const p of processes) await p.join(); // ...then wait for each one
  console.log(`主 ${Date.now() - start} ms (sum of the sleeps: 10000 ms, longest: 4000 ms)`);
}
