// Why code that starts processes sits behind the main guard (tutorial 4, "Windows下的问题").
//
// Python on Windows (and with the spawn start method everywhere) starts a child by running
// the program again from the top; without `if __name__ == '__main__':` every child would
// start another child: a fork bomb. multiproc works like spawn: the child IMPORTS this module
// to find `foo`, so the code that starts processes must only run in the main program:
//
//     if (isMainModule(import.meta)) { ... }     // Python: if __name__ == '__main__':
//
// Forget the guard and the library stops the child with an error that explains the guard
// (see examples/unguarded_main.mts) instead of starting processes forever.
import { isMainModule, Process } from 'multiproc';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function foo(): Promise<void> {
  await sleep(300); // the tutorial sleeps 3 s
  console.log('this is foo function');
}

// Top-level code outside the guard runs in the parent AND in every child that imports us.
console.log(`module loaded in pid ${process.pid}, main guard = ${isMainModule(import.meta)}`);

if (isMainModule(import.meta)) {
  const p = new Process({ target: foo });
  p.start();
  console.log('Finish');
}
