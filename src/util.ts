// Small helpers shared by the modules (Python: `multiprocessing.util`).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { InvalidArgumentError } from './errors.js';
import { isChild } from './process.js';

/**
 * The main guard for ES modules: true when the module whose `import.meta` is given is the
 * program Node was started with, false in the parent's other modules and in every child.
 * CommonJS code can use `require.main === module`, or pass its `module` here.
 * @throws InvalidArgumentError when given neither an `import.meta` nor a CommonJS module.
 */
export function isMainModule(meta: { url: string } | NodeJS.Module): boolean {
  if (isChild()) return false;
  if (meta && typeof meta === 'object' && 'url' in meta && typeof meta.url === 'string') {
    const main = process.argv[1];
    if (!main) return false;
    return samePath(fileURLToPath(meta.url), path.resolve(main));
  }
  if (meta && typeof meta === 'object' && 'exports' in meta) return require.main === meta;
  throw new InvalidArgumentError('isMainModule(meta): pass import.meta (ES modules) or module (CommonJS)');
}

function samePath(file: string, main: string): boolean {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return p;
    }
  };
  const f = real(file);
  // `node script` may name the file without its extension.
  for (const candidate of [main, `${main}.js`, `${main}.mjs`, `${main}.cjs`, `${main}.ts`, `${main}.mts`]) {
    if (real(candidate) === f) return true;
  }
  return false;
}

/** Whether `x` can be iterated with `for await`. */
export function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return x !== null && typeof x === 'object' && typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

/** Whether `v` is a Promise or another thenable. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}
