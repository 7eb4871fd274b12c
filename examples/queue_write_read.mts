// A writer and an endless reader sharing a Queue (tutorial 1 "进程间通信", inter-process communication).
//
// Python:
//     def write(q):
//         print("Process to write: %s" % os.getpid())
//         for value in ['A', 'B', 'C']:
//             print(f"Put {value} to queue...")
//             q.put(value)
//             time.sleep(random.random())
//     def read(q):
//         print(f"Process to read: {os.getpid()}")
//         while 1:
//             value = q.get(1)
//             print(f'Get {value} from queue.')
//     q = Queue()
//     pw = Process(target=write, args=(q,)); pr = Process(target=read, args=(q,))
//     pw.start(); pr.start()
//     pw.join()
//     pr.terminate()     # the reader loops forever: it can only be ended by force
//
// The parent creates the queue and passes it to both children, where it arrives connected to the
// same shared memory. In the tutorial, pr.terminate() comes right after the writer ends, so the reader
// may be killed before it printed the last value. Here the queue is a JoinableQueue and the
// reader calls taskDone() after each print: the parent's `await q.join()` waits for that, and the
// output is the same on every run.
import { isMainModule, JoinableQueue, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function write(q: JoinableQueue<string>): Promise<void> {
  console.log(`Process to write: ${process.pid}`);
  for (const value of ['A', 'B', 'C']) {
    console.log(`Put ${value} to queue...`);
    await q.put(value);
    await sleep(50 + Math.random() * 100); // the tutorial sleeps random.random() s
  }
}

export async function read(q: JoinableQueue<string>): Promise<void> {
  console.log(`Process to read: ${process.pid}`);
  for (;;) {
    const value = await q.get(); // Python's q.get(1): block = True
    console.log(`Get ${value} from queue.`);
    q.taskDone(); // not in the tutorial: tells q.join() this value was handled
  }
}

if (isMainModule(import.meta)) {
  // The parent creates the Queue and passes it to each child.
  const q = new JoinableQueue<string>();
  const pw = new Process({ target: write, args: [q] });
  const pr = new Process({ target: read, args: [q] });
  pw.start(); // start the writer
  pr.start(); // start the reader
  await pw.join(); // wait for the writer to end
  await q.join(); // and for the reader to have printed every value
  // The reader loops forever and cannot be joined; end it by force.
  pr.terminate();
  await pr.join();
  console.log(`reader terminated: exitcode = ${pr.exitcode}`);
}
