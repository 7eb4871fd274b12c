// terminate() and isAlive() (tutorial 3 §5 "杀死子进程", tutorial 4 on p.terminate()).
//
// Python:
//     p = Process(target=task); p.start()
//     print(p.name)
//     p.terminate()          # sends SIGTERM; the process does not die at once
//     time.sleep(0.1)        # 需要时间 (it takes a moment)
//     print(p.is_alive())    # False
//
// Tutorial 4: right after terminate(), is_alive() is still True; once the child has ended it
// is False. The child here is killed before it gets to print anything.
import { isMainModule, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function task(): Promise<void> {
  console.log(`${process.pid} is running`);
  await sleep(30_000); // the tutorial sleeps 30 s: we never get there
  console.log(`${process.pid} is done`);
}

if (isMainModule(import.meta)) {
  const p = new Process({ target: task });
  p.start();
  console.log(`name: ${p.name}, pid: ${p.pid}`);
  p.terminate(); // kill the child (SIGTERM)
  console.log(`right after terminate(): isAlive() = ${p.isAlive()}`); // true: not dead yet
  await p.join(); // Python sleeps 0.1 s; join() waits exactly as long as needed
  console.log(`after join(): isAlive() = ${p.isAlive()}, exitcode = ${p.exitcode}`); // false, -15 (SIGTERM)
}
