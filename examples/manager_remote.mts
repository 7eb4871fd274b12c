// Sharing data between computers (tutorial 1 "进程间的数据通信,其他电脑"): a crawler whose
// workers store what they fetched in a dict served over TCP by another process.
//
// Python (two programs, usually on two machines):
//     # server.py
//     results = {}
//     class CrawlManager(BaseManager): pass
//     CrawlManager.register('get_results', callable=lambda: results, proxytype=DictProxy)
//     m = CrawlManager(address=('', 50000), authkey=b'abracadabra')
//     m.get_server().serve_forever()
//     # crawler.py
//     CrawlManager.register('get_results')
//     m = CrawlManager(address=('server-host', 50000), authkey=b'abracadabra'); m.connect()
//     dic = m.get_results()
//     def task(url, dic): dic[url] = "res..."        # pretend we crawled url
//     for url in urls: Process(target=task, args=(url, dic)).start()
//
// Here both programs are one file, run as two processes on 127.0.0.1: the main process serves
// (getServer().serveForever()), and a child plays the crawler machine: it connects with the
// address and the authkey, and starts one process per URL. Only the address and the key cross
// between the two; everything else goes over the manager's TCP connection. The wire carries
// data only: the server runs no code it receives, and refuses a peer without the authkey.
import { BaseManager, DictProxy, isMainModule, ManagedDict, Process } from 'multiproc';

const AUTHKEY = 'abracadabra';

let results: ManagedDict | undefined;
/** The one dict the server hands out (Python's `lambda: results`); it runs in the server. */
export function getResults(): ManagedDict {
  return (results ??= new ManagedDict());
}

export class CrawlManager extends BaseManager {
  declare getResults: () => Promise<DictProxy<string, string>>;
}
CrawlManager.register('getResults', getResults, { proxytype: DictProxy });

/** One crawl: pretend to fetch `url`, store the result. */
export async function task(url: string, dic: DictProxy<string, string>): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  await dic.set(url, 'res...');
}

/** The crawler machine: connect to the server, crawl every URL in a process of its own. */
export async function crawler(address: [string, number], urls: string[]): Promise<void> {
  const m = new CrawlManager({ address, authkey: AUTHKEY });
  await m.connect();
  const dic = await m.getResults();
  const ps = urls.map((url) => new Process({ target: task, args: [url, dic] }));
  for (const p of ps) p.start();
  for (const p of ps) await p.join();
  console.log(`crawler: ${urls.length} urls done`);
}

if (isMainModule(import.meta)) {
  const server = new CrawlManager({ address: ['127.0.0.1', 0], authkey: AUTHKEY }).getServer();
  await server.ready;
  const serving = server.serveForever();
  const address = server.address as [string, number];
  console.log(`serving on ${address[0]}:${address[1]}`);
  const machine = new Process({ target: crawler, args: [address, ['https://a.example', 'https://b.example', 'https://c.example']] });
  machine.start();
  await machine.join();
  for (const [url, res] of getResults().items()) console.log(url, res);
  server.shutdown();
  await serving;
}
