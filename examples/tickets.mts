// Buying tickets (抢票) with a mutex (tutorial 3 §7 "进程互斥锁").
//
// Python:
//     def search(name):                        # 查票: read db.json, look at the count
//         dic = json.load(open('db.json')); time.sleep(1)
//         print('%s 查看到余票为%s' % (name, dic['count']))
//     def get(name):                           # 购票: read, decrement, write back
//         dic = json.load(open('db.json'))
//         if dic['count'] > 0:
//             dic['count'] -= 1; time.sleep(random.randint(1, 3))
//             json.dump(dic, open('db.json', 'w')); print('%s 购票成功' % name)
//         else:
//             print('%s查看到没有票了' % name)
//     def task(name, mutex):
//         search(name)                         # concurrent: reading is harmless
//         mutex.acquire(); get(name); mutex.release()   # serial: one buyer at a time
//     mutex = Lock()
//     for i in range(10): Process(target=task, args=('路人%s' % i, mutex)).start()
//
// Processes share no memory but do share the file system: without the lock, several buyers
// would read count = 1 and all "buy" the last ticket. With it, exactly as many buyers succeed
// as there were tickets. (路人 = passer-by, 查看到余票为 = sees tickets left, 购票成功 = bought
// a ticket, 查看到没有票了 = sees there are no tickets left.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMainModule, Lock, Process } from 'multiproc';

const TICKETS = 2;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const readDb = (db: string) => JSON.parse(fs.readFileSync(db, 'utf8')) as { count: number };

export async function search(name: string, db: string): Promise<void> {
  const dic = readDb(db);
  await sleep(100); // the tutorial sleeps 1 s: "checking" the tickets
  console.log(`${name} 查看到余票为${dic.count}`);
}

export async function get(name: string, db: string): Promise<void> {
  const dic = readDb(db);
  if (dic.count > 0) {
    dic.count -= 1;
    await sleep(100 + Math.floor(Math.random() * 200)); // filling in the form, paying (tutorial: 1-3 s)
    // Written aside and renamed into place: the searches read the file without the lock, and
    // must never see it half-written.
    fs.writeFileSync(`${db}.${process.pid}`, JSON.stringify(dic));
    fs.renameSync(`${db}.${process.pid}`, db);
    console.log(`${name} 购票成功`);
  } else {
    console.log(`${name} 查看到没有票了`);
  }
}

export async function task(name: string, mutex: Lock, db: string): Promise<void> {
  await search(name, db); // concurrent
  await mutex.acquire(); // serial from here: the lock arrived connected to the parent's
  try {
    await get(name, db);
  } finally {
    mutex.release();
  }
  // The same with the callback form (Python's `with mutex:`):
  //     await mutex.withLock(() => get(name, db));
}

if (isMainModule(import.meta)) {
  // db.json lives in a fresh temporary directory, removed at the end.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tickets-'));
  const db = path.join(dir, 'db.json');
  fs.writeFileSync(db, JSON.stringify({ count: TICKETS }));

  const mutex = new Lock();
  const buyers: Process[] = [];
  for (let i = 0; i < 10; i++) {
    const p = new Process({ target: task, args: [`路人${i}`, mutex, db] });
    p.start();
    buyers.push(p);
  }
  for (const p of buyers) await p.join();

  console.log(`最后余票为${readDb(db).count} (${TICKETS} tickets, 10 buyers)`); // tickets left at the end
  fs.rmSync(dir, { recursive: true, force: true });
}
