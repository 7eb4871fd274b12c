// A baker and an eater of 包子 (baozi, steamed buns) around a JoinableQueue(30) (tutorial 2,
// "用队列实现消费者生产者模型", a producer/consumer model with a queue).
//
// Python:
//     def producer(q):
//         for i in range(10):
//             time.sleep(0.2)
//             s = '大包子%s号' % i              # "big bun no. i"
//             print(s + '新鲜出炉')              # "... fresh from the steamer"
//             q.put(s)
//         q.join()        # wait until as many task_done() signals came as items were put
//         print('所有的任务都被处理了')          # "every task has been handled"
//     def consumer(q):
//         while 1:
//             time.sleep(0.5)
//             baozi = q.get()
//             print(baozi + '被吃了')            # "... was eaten"
//             q.task_done()  # tell the queue this item is handled
//     q = JoinableQueue(30)   # a queue of at most 30, like Queue(30)
//     pro_p = Process(target=producer, args=(q,))
//     con_p = Process(target=consumer, args=(q,))
//     pro_p.start()
//     con_p.daemon = True
//     con_p.start()
//     pro_p.join()
//     print('主进程结束')                        # "the main process ends"
//
// Here the producer itself waits in q.join() until every bun was eaten; the main process only
// joins the producer. The consumer never ends on its own: it is a daemon, terminated when the
// main process ends. Sleeps: 20 ms and 50 ms instead of 0.2 s and 0.5 s.
import { isMainModule, JoinableQueue, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function producer(q: JoinableQueue<string>): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await sleep(20);
    const s = `大包子${i}号`;
    console.log(`${s}新鲜出炉`);
    await q.put(s);
  }
  await q.join(); // wait until every bun put has had its taskDone()
  console.log('所有的任务都被处理了');
}

export async function consumer(q: JoinableQueue<string>): Promise<void> {
  for (;;) {
    await sleep(50);
    const baozi = await q.get();
    console.log(`${baozi}被吃了`);
    q.taskDone(); // this bun is handled
  }
}

if (isMainModule(import.meta)) {
  const q = new JoinableQueue<string>(30); // at most 30 buns waiting
  const proP = new Process({ target: producer, args: [q] });
  const conP = new Process({ target: consumer, args: [q] });
  proP.start();
  conP.daemon = true;
  conP.start();
  await proP.join();
  console.log('主进程结束');
}
