// The worker file of the peer pools in bench/pool.bench.ts (piscina, tinypool, poolifier and
// workerpool need a file name). piscina and tinypool call its exports by name; poolifier and
// workerpool need the file to register its functions, which it does in a worker thread when the
// driver names that library in MP_PEER_LIB. The functions are the same as those our pool runs.
import { isMainThread } from 'node:worker_threads';

export function square(x: number): number {
  return x * x;
}

/** A pure-JS loop; the driver calibrates `iters` to about 20 ms. */
export function burn(iters: number): number {
  let acc = 0;
  for (let i = 0; i < iters; i++) acc = (acc + i * i) % 1000003;
  return acc;
}

if (!isMainThread) {
  const lib = process.env.MP_PEER_LIB;
  if (lib === 'poolifier') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only in this library's workers
    const { ThreadWorker } = require('poolifier') as typeof import('poolifier');
    (module.exports as Record<string, unknown>).worker = new ThreadWorker({
      square: (x?: unknown) => square(x as number),
      burn: (x?: unknown) => burn(x as number),
    });
  } else if (lib === 'workerpool') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only in this library's workers
    (require('workerpool') as typeof import('workerpool')).worker({ square, burn });
  }
}
