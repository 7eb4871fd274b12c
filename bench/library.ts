// What the driver halves of the bench files share: the library, loaded lazily (the orchestrator
// imports every bench file for its figure definitions and must not load it), and starting and
// joining children so that a failed measurement leaves none behind.

export type MP = typeof import('../src/index.js');
export type Method = 'spawn' | 'thread' | 'forkserver';
export type ProcessT = InstanceType<MP['Process']>;

let loaded: MP | undefined;

/** The library, loaded on first use. */
export function mp(): MP {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded lazily, see above
  return (loaded ??= require('../src/index.js') as MP);
}

/** The Process class of a start method. */
export function processClass(method: Method): MP['Process'] {
  return method === 'spawn' ? mp().Process : mp().getContext(method).Process;
}

// Every child started, so that a failed measurement can end them: a child left blocked (say, a
// producer waiting for a consumer that crashed) would outlive the driver and keep its stdout
// open, and the orchestrator waits for that to close.
const started = new Set<ProcessT>();

/** Start `ps`, then wait for each `ready` event (children set it once set up). */
export async function startWait(ps: ProcessT[], readys: { wait(timeout?: number): Promise<boolean> }[] = []): Promise<void> {
  for (const p of ps) {
    p.start();
    started.add(p);
  }
  for (const r of readys) if (!(await r.wait(60_000))) throw new Error('a child did not become ready');
}

/** Join `ps`; rejects unless each exited with 0. */
export async function joinAll(ps: ProcessT[]): Promise<void> {
  for (const p of ps) {
    await p.join();
    started.delete(p);
    if (p.exitcode !== 0) throw new Error(`${p.name} exited with ${p.exitcode}`);
  }
}

/** Run `measure`; if it fails, kill every child still running before rethrowing. */
export async function killingOnFailure<T>(measure: () => Promise<T>): Promise<T> {
  try {
    return await measure();
  } catch (err) {
    for (const c of started) if (c.isAlive()) c.kill();
    throw err;
  }
}
