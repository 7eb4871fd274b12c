// A shared counter, with and without its lock. Tutorial 2 ("进程锁", process lock) shows this race
// on a Manager dict (tmp = m_d['num']; tmp -= 1; m_d['num'] = tmp, under `with l2:`); here it is
// on a shared Value, as Python's docs do it.
//
// Python:
//     v = Value('i', 0)
//     def add(v, n):
//         for _ in range(n):
//             with v.get_lock():     # remove this line and the total comes out short
//                 v.value += 1
//     ps = [Process(target=add, args=(v, N)) for _ in range(4)]
//
// `v.value += 1` is a read followed by a write: two processes that read the same value both
// write value + 1, and one increment is lost. Under the Value's own lock the read and the write
// happen as one step and the total is exact. To make the race show reliably, each increment
// here yields to the event loop between its read and its write (as real code that awaits
// something in the middle would), and a Barrier starts the four processes together.
import { Barrier, isMainModule, Process, Value } from 'multiproc';

const N = 2000; // increments per process
const WORKERS = 4;
const tick = () => new Promise((resolve) => setImmediate(resolve));

export async function add(v: Value<'i'>, n: number, locked: boolean, start: Barrier): Promise<void> {
  await start.wait(); // every process begins at the same moment
  for (let i = 0; i < n; i++) {
    const increment = async () => {
      const x = v.value; // read...
      await tick(); // ...something else runs here...
      v.value = x + 1; // ...write: whatever another process wrote meanwhile is lost
    };
    if (locked)
      await v.withLock(increment); // Python: `with v.get_lock(): v.value += 1`
    else await increment();
  }
}

async function run(locked: boolean): Promise<number> {
  const v = new Value('i', 0);
  const start = new Barrier(WORKERS);
  const ps = Array.from({ length: WORKERS }, () => new Process({ target: add, args: [v, N, locked, start] }));
  for (const p of ps) p.start();
  for (const p of ps) await p.join();
  return v.value;
}

if (isMainModule(import.meta)) {
  const expected = WORKERS * N;
  const withLock = await run(true);
  console.log(`with the lock:    total = ${withLock} (expected ${expected})`);
  const without = await run(false);
  console.log(`without the lock: total = ${without} (expected ${expected}; ${expected - without} increments lost)`);
}
