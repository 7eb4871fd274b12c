// A Manager dict decremented by 10 processes under a Lock (tutorial 2 "数据共享 manager"; the
// `with Manager() as m:` of tutorial 4 is `await using`).
//
// Python:
//     def f1(m_d, l2):
//         with l2:
//             tmp = m_d['num']
//             tmp -= 1
//             time.sleep(0.1)
//             m_d['num'] = tmp
//     m = Manager()
//     l2 = Lock()
//     m_d = m.dict({'num': 100})
//     p_list = [Process(target=f1, args=(m_d, l2)) for i in range(10)]   # start each, join each
//     print(m_d['num'])          # 90
//
// A manager does not lock its dict for you: reading, changing and writing back are three calls,
// and two processes in between would both write the same value. Under the Lock the result is
// exactly 90. The tutorial's Lock is a plain multiprocessing.Lock (shared memory); a manager's own
// `await m.Lock()` works the same way, and also across machines.
import { isMainModule, Lock, Manager, Process, type DictProxy } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function f1(mD: DictProxy<string, number>, l2: Lock): Promise<void> {
  await l2.withLock(async () => {
    // Python: with l2:
    let tmp = (await mD.get('num'))!;
    tmp -= 1;
    await sleep(100);
    await mD.set('num', tmp);
  });
}

if (isMainModule(import.meta)) {
  await using m = await Manager(); // Python: with Manager() as m:
  const l2 = new Lock();
  const mD = await m.dict({ num: 100 });
  const pList: Process[] = [];
  for (let i = 0; i < 10; i++) {
    const p = new Process({ target: f1, args: [mD, l2] });
    p.start();
    pList.push(p);
  }
  for (const p of pList) await p.join();
  console.log(await mD.get('num')); // 90
}
