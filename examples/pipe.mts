// A Pipe between the parent and a child: messages both ways, then EOF (tutorial 4 "Pipe";
// Python's docs, "Exchanging objects between processes").
//
// Python:
//     def child(conn):
//         msg = conn.recv()
//         print('child got:', msg)
//         conn.send({'reply': 'hello parent', 'n': msg['n'] + 1})
//         conn.send_bytes(b'raw bytes')
//         conn.close()
//     parent_conn, child_conn = Pipe()       # duplex: both ends send and receive
//     p = Process(target=child, args=(child_conn,))
//     p.start()
//     child_conn.close()                     # the parent's copy of the child's end
//     parent_conn.send({'greeting': 'hello child', 'n': 1})
//     print('parent got:', parent_conn.recv())
//     print('parent got bytes:', parent_conn.recv_bytes())
//     parent_conn.recv()                     # EOFError: every copy of the other end is closed
//     p.join()
//
// As tutorial 4 says, recv() raises EOFError only once every process that held the other end has
// closed it: that is why the parent closes its own copy of the child's end after start().
// recv() and poll() return Promises; send() returns one that resolves once the message is in
// the pipe.
import { Connection, EOFError, isMainModule, Pipe, Process } from 'multiproc';

export async function child(conn: Connection): Promise<void> {
  const msg = (await conn.recv()) as { greeting: string; n: number };
  console.log(`child got: ${JSON.stringify(msg)}`);
  await conn.send({ reply: 'hello parent', n: msg.n + 1 });
  await conn.sendBytes(Buffer.from('raw bytes')); // one message of bytes, never merged or split
  conn.close();
}

if (isMainModule(import.meta)) {
  const [parentConn, childConn] = Pipe(); // duplex
  const p = new Process({ target: child, args: [childConn] });
  p.start();
  childConn.close(); // the parent's copy: the child has its own
  console.log(`poll() before sending: ${await parentConn.poll()}`); // nothing to read yet
  await parentConn.send({ greeting: 'hello child', n: 1 });
  console.log(`parent got: ${JSON.stringify(await parentConn.recv())}`);
  console.log(`parent got bytes: ${(await parentConn.recvBytes()).toString()}`);
  try {
    await parentConn.recv();
  } catch (err) {
    if (!(err instanceof EOFError)) throw err;
    console.log('recv(): EOFError (the child closed its end)');
  }
  await p.join();
  parentConn.close();
  console.log(`child exitcode = ${p.exitcode}`);
}
