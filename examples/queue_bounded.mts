// A bounded queue: Queue(3) (tutorial 3 §8, "队列").
//
// Python:
//     q = Queue(3)
//     q.put('a'); q.put('b'); q.put({'a': 2})
//     print('篮子满了')            # "the basket is full"
//     # q.put({'a': 2})          # a fourth put would block: "the queue is full, like a lock"
//     print(q.get()); print(q.get()); print(q.get())
//     print('队列为空')            # "the queue is empty"
//     print(q.get())             # blocks: "waits for something to be put, like a lock"
//
// The tutorial leaves the blocking calls commented out or hanging. Here each is shown without
// hanging: put_nowait on the full queue raises Full, a put with a timeout gives up with Full, a
// get with a timeout on the empty queue gives up with Empty, and a final get blocks until a child
// process puts something. Timeouts are milliseconds (Python's are seconds).
import { Empty, Full, isMainModule, Process, Queue } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Puts one item after a while, into the queue the parent is blocked on. */
export async function latePut(q: Queue): Promise<void> {
  await sleep(200);
  await q.put('c (from the child)');
}

if (isMainModule(import.meta)) {
  const q = new Queue<unknown>(3); // at most 3 items
  await q.put('a');
  await q.put('b');
  await q.put({ a: 2 });
  console.log('篮子满了');
  console.log(`full() = ${q.full()}, qsize() = ${q.qsize()}`);

  // The queue is full: a fourth put would wait for a free place.
  try {
    q.putNowait('d'); // Python: q.put_nowait('d')
  } catch (err) {
    if (!(err instanceof Full)) throw err;
    console.log('putNowait: Full');
  }
  try {
    await q.put('d', { timeout: 100 }); // Python: q.put('d', timeout=0.1)
  } catch (err) {
    if (!(err instanceof Full)) throw err;
    console.log('put with a 100 ms timeout: Full');
  }

  // First in, first out.
  console.log(await q.get());
  console.log(await q.get());
  console.log(await q.get());
  console.log('队列为空');
  console.log(`empty() = ${q.empty()}, qsize() = ${q.qsize()}`);

  // The queue is empty: a get waits for an item.
  try {
    await q.get({ timeout: 100 }); // Python: q.get(timeout=0.1)
  } catch (err) {
    if (!(err instanceof Empty)) throw err;
    console.log('get with a 100 ms timeout: Empty');
  }
  const p = new Process({ target: latePut, args: [q] });
  p.start();
  console.log(`get() waited for: ${String(await q.get())}`); // blocks until the child has put
  await p.join();
}
