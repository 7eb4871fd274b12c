// apply vs applyAsync, and applyAsync(f1, args, { callback: f2 }) on Pool(3) (tutorials 4 and 5).
//
// Python:
//     pool = Pool(3)
//     pool.apply(f1, (i,))                       # blocks until the result is back
//     res = pool.apply_async(func=f1, args=(i,), callback=f2)   # returns at once
//     pool.close(); pool.join()                  # then collect: res.get()
//
// f1 runs in a worker; the callback f2 runs back in the parent (its pid is the main pid) with
// f1's result, before res.get() gives the same result.
import { isMainModule, Pool } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function f1(i: number): Promise<string> {
  await sleep(100);
  return `f1(${i}) ran in ${process.pid}`;
}

if (isMainModule(import.meta)) {
  const pool = new Pool(3);
  console.log(`main pid ${process.pid}`);

  // apply: one at a time, each call waits for its result (3 × 100 ms).
  let start = Date.now();
  for (let i = 0; i < 3; i++) console.log(`apply: ${await pool.apply(f1, [i])}`);
  console.log(`apply x3 took ${Date.now() - start} ms (sequential)`);

  // applyAsync: returns an AsyncResult at once; the three workers run the calls side by side.
  start = Date.now();
  const f2 = (result: string) => console.log(`callback f2 in ${process.pid} got: ${result}`);
  const results = [3, 4, 5].map((i) => pool.applyAsync(f1, [i], { callback: f2 }));
  console.log('applyAsync returned at once; the main code goes on');
  pool.close();
  await pool.join();
  console.log(`applyAsync x3 took ${Date.now() - start} ms (in parallel)`);
  for (const r of results) console.log(`get: ${await r.get()}`);
}
