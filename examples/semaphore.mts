// A semaphore lets at most N processes into a section at once (tutorial 4 "Semaphore(信号量)").
//
// Python:
//     sem = Semaphore(2)
//     def task(name, sem):
//         sem.acquire()        # blocks while 2 others are inside
//         ...                  # use the resource
//         sem.release()
//
// Six processes share a Semaphore(2). Each records itself in a shared counter of current
// occupants (a Value, changed under its own lock) and the largest count seen, so the program
// can show that there were never more than 2 inside. (进来了 = came in, 出去了 = went out.)
import { isMainModule, Process, RawArray, Semaphore, Value } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(name: string, sem: Semaphore, inside: Value<'i'>, most: RawArray<'i'>): Promise<void> {
  await sem.acquire();
  try {
    await inside.withLock(() => {
      inside.value += 1;
      most[0] = Math.max(most[0]!, inside.value);
      console.log(`${name} 进来了 (inside: ${inside.value})`);
    });
    await sleep(200); // the work done while inside
    await inside.withLock(() => {
      inside.value -= 1;
      console.log(`${name} 出去了 (inside: ${inside.value})`);
    });
  } finally {
    sem.release();
  }
}

if (isMainModule(import.meta)) {
  const sem = new Semaphore(2);
  const inside = new Value('i', 0); // who is in the section now
  const most = new RawArray('i', 1); // the most that were ever in it at once
  const ps: Process[] = [];
  for (let i = 1; i <= 6; i++) {
    const p = new Process({ target: task, args: [`进程${i}`, sem, inside, most] });
    p.start();
    ps.push(p);
  }
  for (const p of ps) await p.join();
  console.log(`at most ${most[0]} inside at once (Semaphore(2)); semaphore value now ${sem.getValue()}`);
}
