// Producers and consumers around a Queue, ended with None sentinels (tutorial 3 §9, "生产者与消费者模型").
//
// Python:
//     def producer(name, food, q):
//         for i in range(10):
//             res = '%s%s' % (food, i)
//             time.sleep(random.randint(1, 3))     # time to cook
//             q.put(res)
//             print('厨师%s生产了%s' % (name, res))  # "cook <name> produced <res>"
//     def consumer(name, q):
//         while True:
//             res = q.get()
//             if res is None: break               # the end signal
//             time.sleep(random.randint(1, 3))     # time to eat
//             print('吃货%s吃了%s' % (name, res))    # "foodie <name> ate <res>"
//     q = Queue()
//     p1 = Process(target=producer, args=('大海', '包子', q))      # steamed buns
//     p2 = Process(target=producer, args=('中海', '辣椒炒肉', q))   # pork with chili
//     p3 = Process(target=producer, args=('小海', '土豆丝', q))     # shredded potato
//     c1 = Process(target=consumer, args=('夏洛', q))
//     c2 = Process(target=consumer, args=('西施', q))
//     p1.start(); p2.start(); p3.start(); c1.start(); c2.start()
//     p1.join(); p2.join(); p3.join()              # production is over...
//     q.put(None); q.put(None)                    # ...one end signal per consumer
//     print('主')
//
// The queue decouples the two sides: cooks never wait for eaters, and eaters take whatever is
// ready. Once every cook has finished, the parent puts one `null` (Python's None) per eater;
// each eater stops at the first one it gets. The sleeps are 10-40 ms instead of 1-3 s.
import { isMainModule, Process, Queue } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randint = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

export async function producer(name: string, food: string, q: Queue<string | null>): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const res = `${food}${i}`;
    await sleep(randint(10, 40)); // time to cook
    await q.put(res);
    console.log(`厨师${name}生产了${res}`);
  }
}

export async function consumer(name: string, q: Queue<string | null>): Promise<void> {
  for (;;) {
    const res = await q.get(); // waits while no order is ready
    if (res === null) break; // the end signal
    await sleep(randint(10, 40)); // time to eat
    console.log(`吃货${name}吃了${res}`);
  }
}

if (isMainModule(import.meta)) {
  const q = new Queue<string | null>();
  // producers
  const p1 = new Process({ target: producer, args: ['大海', '包子', q] });
  const p2 = new Process({ target: producer, args: ['中海', '辣椒炒肉', q] });
  const p3 = new Process({ target: producer, args: ['小海', '土豆丝', q] });
  // consumers
  const c1 = new Process({ target: consumer, args: ['夏洛', q] });
  const c2 = new Process({ target: consumer, args: ['西施', q] });
  // producers and consumers run concurrently
  for (const p of [p1, p2, p3, c1, c2]) p.start();
  // production is over
  await p1.join();
  await p2.join();
  await p3.join();
  // one end signal per consumer
  await q.put(null);
  await q.put(null);
  console.log('主');
  // The main module ends here; the eaters (not daemons) are awaited, as in Python.
}
