// Producers and daemon consumers around a JoinableQueue (tutorial 3 §10, "JoinableQueue").
//
// Python:
//     def consumer(name, q):
//         while True:
//             res = q.get()
//             time.sleep(random.randint(1, 3))
//             print('吃货%s吃了%s' % (name, res))
//             q.task_done()                  # one item handled: a signal for q.join()
//     q = JoinableQueue()
//     ... the same three producers and two consumers as tutorial 3 §9 ...
//     c1.daemon = True; c2.daemon = True     # the consumers die with the main process
//     p1.start(); p2.start(); p3.start(); c1.start(); c2.start()
//     p1.join(); p2.join(); p3.join()        # production is over
//     q.join()                              # and every item was task_done()
//     print('主', time.time() - start)
//
// No end signals this time: the consumers loop forever, and each calls taskDone() after
// handling an item. Once the producers have ended, `await q.join()` returns when every item put
// has been marked done, so everything produced was eaten. The consumers are daemons: when the
// main module ends they are terminated, still blocked in get(). Sleeps: 10-40 ms, not 1-3 s.
import { isMainModule, JoinableQueue, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randint = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

export async function producer(name: string, food: string, q: JoinableQueue<string>): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const res = `${food}${i}`;
    await sleep(randint(10, 40)); // time to cook
    await q.put(res);
    console.log(`厨师${name}生产了${res}`);
  }
}

export async function consumer(name: string, q: JoinableQueue<string>): Promise<void> {
  for (;;) {
    const res = await q.get();
    await sleep(randint(10, 40)); // time to eat
    console.log(`吃货${name}吃了${res}`);
    q.taskDone(); // this item is handled
  }
}

if (isMainModule(import.meta)) {
  const start = Date.now();
  const q = new JoinableQueue<string>();
  // producers
  const p1 = new Process({ target: producer, args: ['大海', '包子', q] });
  const p2 = new Process({ target: producer, args: ['中海', '辣椒炒肉', q] });
  const p3 = new Process({ target: producer, args: ['小海', '土豆丝', q] });
  // consumers, as daemons: they die with the main process
  const c1 = new Process({ target: consumer, args: ['夏洛', q] });
  const c2 = new Process({ target: consumer, args: ['西施', q] });
  c1.daemon = true;
  c2.daemon = true;
  for (const p of [p1, p2, p3, c1, c2]) p.start();
  // production is over
  await p1.join();
  await p2.join();
  await p3.join();
  // every item put has had its taskDone()
  await q.join();
  console.log(`主 ${((Date.now() - start) / 1000).toFixed(2)} s`);
  // The main module ends: the daemon consumers are terminated.
}
