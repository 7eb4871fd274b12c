// How a function or class crosses a process boundary (Python: pickle's `save_global`).
//
// By reference: a function or class exported from a module crosses as { module, export name },
// found by identity (whichmodule.ts); the receiver imports that module and takes the export, as
// Python's spawn imports the module that defines a target. By value: a self-contained inline
// function (no outer variable) crosses as its source text. Anything else is refused here, before
// a process is started, with the captured identifier named.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as vm from 'node:vm';

import { NotTransferableError } from '../errors.js';
import { isFunctionOrClass, type FunctionOrClass } from '../util.js';
import { findExport, findLoadedExport } from './whichmodule.js';

/** A function or class reduced for transport. */
export type FunctionRef =
  | { kind: 'cjs'; file: string; exportName: string | null; name: string }
  | { kind: 'esm'; url: string; exportName: string; name: string }
  | { kind: 'source'; source: string; name: string };

const cache = new WeakMap<object, FunctionRef>();
// The other way: a ref (its key) → the function, for every ref reduced or rebuilt here.
const loaded = new Map<string, FunctionOrClass>();

/**
 * Reduce `fn` for transport. `byValue` allows self-contained inline functions to cross as source
 * (classes never do). Throws NotTransferableError naming `where` and the fix.
 */
export function reduceFunction(fn: FunctionOrClass, where: string, byValue = true): FunctionRef {
  const hit = cache.get(fn);
  if (hit && (byValue || hit.kind !== 'source')) return hit;
  const ref = findFunction(fn, where, byValue);
  cache.set(fn, ref);
  // Found by identity, so this process rebuilds the ref as `fn` itself, with no import: its
  // module may be the one still running its top-level await (see loadFunction).
  if (ref.kind !== 'source') loaded.set(keyOf(ref), fn);
  return ref;
}

function findFunction(fn: FunctionOrClass, where: string, byValue: boolean): FunctionRef {
  const source = Function.prototype.toString.call(fn);
  const isClass = /^class[\s{]/.test(source);
  const what = isClass ? `class ${fn.name || '(anonymous)'}` : `function ${fn.name || '(anonymous)'}`;
  if (source.endsWith('{ [native code] }')) {
    throw new NotTransferableError(
      where,
      `${what} is a native or bound function and cannot cross a process boundary`,
      'Export a plain function from a module and pass the bound values in `args`.',
    );
  }
  const cjs = findInRequireCache(fn);
  if (cjs) return cjs;
  // An export always has a name (an anonymous default export is called 'default').
  if (fn.name) {
    const esm = findInImported(fn) ?? findInEsmModule(fn);
    if (esm) return esm;
  }
  if (isClass) {
    throw new NotTransferableError(
      where,
      `${what} is not found among the exports of a module, so the other process cannot import it`,
      `Export it from a module file, declared there as \`export class ${fn.name || 'Name'}\` and never assigned again (a decorated class is).`,
    );
  }
  const captured = capturedIdentifiers(source);
  if (byValue && captured.length === 0) return { kind: 'source', source, name: fn.name };
  const problem = captured.length
    ? `${what} uses the outer variable '${captured[0]}'${
        captured.length > 1
          ? ` (and ${captured
              .slice(1)
              .map((c) => `'${c}'`)
              .join(', ')})`
          : ''
      } and is not found among the exports of a module, so it cannot be sent`
    : `${what} is not found among the exports of a module`;
  throw new NotTransferableError(
    where,
    problem,
    captured.length
      ? `Export the function from its module, declared there and never assigned again (the other process imports it), or pass '${captured[0]}' as an argument.`
      : 'Export the function from its module, declared there and never assigned again (the other process imports it).',
  );
}

// ---------------------------------------------------------------------------------------------
// CommonJS: every loaded module is in require.cache, so identity search is cheap.

function findInRequireCache(fn: FunctionOrClass): FunctionRef | undefined {
  const requireCache = createRequire(__filename).cache;
  for (const [file, mod] of Object.entries(requireCache)) {
    const exp: unknown = mod?.exports;
    if (exp === fn) return { kind: 'cjs', file, exportName: null, name: fn.name };
    if ((typeof exp !== 'object' && typeof exp !== 'function') || exp === null) continue;
    for (const key of Object.keys(exp)) {
      // Only data properties: a getter may run user code.
      const desc = Object.getOwnPropertyDescriptor(exp, key);
      if (desc && 'value' in desc && desc.value === fn) return { kind: 'cjs', file, exportName: key, name: fn.name };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// ES modules this library imported (in a child, the target's module): their namespaces are at
// hand, so they too are searched by identity, without the inspector or a parser. A namespace's
// properties are the module's bindings: reading them runs no user code, and a module whose
// import settled has initialized them all.

const namespaces = new Map<string, Record<string, unknown>>();

function findInImported(fn: FunctionOrClass): FunctionRef | undefined {
  for (const [url, ns] of namespaces) {
    for (const key of Object.keys(ns)) if (ns[key] === fn) return { kind: 'esm', url, exportName: key, name: fn.name };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// ES modules: Node offers no registry of loaded modules, and the caller's own module is usually
// still evaluating (so it cannot be required). whichmodule.ts finds the export by identity.

function findInEsmModule(fn: FunctionOrClass): FunctionRef | undefined {
  const requireCache = createRequire(__filename).cache;
  let found: { url: string; exportName: string } | undefined;
  try {
    // A CommonJS module was already searched by identity: its source says nothing more.
    found = findExport(fn, (url) => url.startsWith('file:') && !requireCache[fileURLToPath(url)]);
  } catch {
    return undefined;
  }
  return found && { kind: 'esm', url: found.url, exportName: found.exportName, name: fn.name };
}

// ---------------------------------------------------------------------------------------------
// Free variables of a function's source: the identifiers it reads that it neither declares nor
// finds among the globals every process has.

const ALWAYS_BOUND = new Set(['arguments', 'undefined', 'globalThis', 'NaN', 'Infinity', 'eval', 'new.target']);

/** Identifiers `source` (a function's text) uses but does not declare, less the globals. */
export function capturedIdentifiers(source: string): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when a function may cross by value
  const acorn = require('acorn') as typeof import('acorn');
  let root: import('acorn').Node | undefined;
  // Module code first (import.meta parses only there), then sloppy script code; method shorthand
  // (`run() {}`) parses only inside an object literal.
  for (const text of [`(${source})`, `({${source}})`]) {
    for (const sourceType of ['module', 'script'] as const) {
      try {
        root = acorn.parseExpressionAt(text, 0, { ecmaVersion: 'latest', sourceType, allowAwaitOutsideFunction: true });
        break;
      } catch {
        // Try the next form.
      }
    }
    if (root) break;
  }
  if (!root) return ['(unparsable source)'];
  const declared = new Set<string>();
  const used = new Set<string>();
  walk(root as unknown as AnyNode, declared, used, 0);
  const free: string[] = [];
  for (const name of used) {
    if (declared.has(name) || ALWAYS_BOUND.has(name)) continue;
    if (name !== 'this' && name !== 'super' && name !== 'import.meta' && name in globalThis) continue;
    free.push(name);
  }
  return free;
}

type AnyNode = { type: string; [k: string]: unknown };

function isNode(x: unknown): x is AnyNode {
  return typeof x === 'object' && x !== null && typeof (x as AnyNode).type === 'string';
}

// `depth` counts enclosing non-arrow functions: `this` inside one of them is its own, not captured.
function walk(node: AnyNode, declared: Set<string>, used: Set<string>, depth: number): void {
  const visit = (child: unknown, d = depth): void => {
    if (Array.isArray(child)) for (const c of child) visit(c, d);
    else if (isNode(child)) walk(child, declared, used, d);
  };
  switch (node.type) {
    case 'Identifier':
      used.add(node.name as string);
      return;
    case 'ThisExpression':
      if (depth === 0) used.add('this');
      return;
    case 'Super':
      used.add('super');
      return;
    case 'MetaProperty':
      if ((node.meta as AnyNode).name === 'import') used.add('import.meta');
      return;
    case 'VariableDeclarator':
      bind(node.id, declared, used, visit);
      visit(node.init);
      return;
    case 'FunctionDeclaration':
    case 'FunctionExpression':
    case 'ArrowFunctionExpression': {
      const d = node.type === 'ArrowFunctionExpression' ? depth : depth + 1;
      if (node.id) declared.add((node.id as AnyNode).name as string);
      for (const p of node.params as AnyNode[]) bind(p, declared, used, (c) => visit(c, d));
      visit(node.body, d);
      return;
    }
    case 'ClassDeclaration':
    case 'ClassExpression':
      if (node.id) declared.add((node.id as AnyNode).name as string);
      visit(node.superClass);
      visit(node.body, depth + 1);
      return;
    case 'CatchClause':
      if (node.param) bind(node.param, declared, used, visit);
      visit(node.body);
      return;
    case 'MemberExpression':
      visit(node.object);
      if (node.computed) visit(node.property);
      return;
    case 'Property':
    case 'MethodDefinition':
    case 'PropertyDefinition':
      if (node.computed) visit(node.key);
      // Methods are functions of their own: `this` inside refers to the object.
      visit(node.value, node.type === 'Property' ? depth : depth + 1);
      return;
    case 'LabeledStatement':
      visit(node.body);
      return;
    case 'BreakStatement':
    case 'ContinueStatement':
      return;
    default:
      for (const key of Object.keys(node)) {
        if (key === 'type' || key === 'start' || key === 'end' || key === 'loc' || key === 'range') continue;
        visit(node[key]);
      }
  }
}

// A binding pattern: names it declares, and the expressions (defaults, computed keys) it reads.
function bind(p: unknown, declared: Set<string>, used: Set<string>, visit: (n: unknown) => void): void {
  if (!isNode(p)) return;
  switch (p.type) {
    case 'Identifier':
      declared.add(p.name as string);
      return;
    case 'ObjectPattern':
      for (const prop of p.properties as AnyNode[]) {
        if (prop.type === 'RestElement') bind(prop.argument, declared, used, visit);
        else {
          if (prop.computed) visit(prop.key);
          bind(prop.value, declared, used, visit);
        }
      }
      return;
    case 'ArrayPattern':
      for (const el of p.elements as unknown[]) bind(el, declared, used, visit);
      return;
    case 'RestElement':
      bind(p.argument, declared, used, visit);
      return;
    case 'AssignmentPattern':
      bind(p.left, declared, used, visit);
      visit(p.right);
      return;
    default:
      visit(p);
  }
}

// ---------------------------------------------------------------------------------------------
// The receiving side.

/** Turn a FunctionRef back into the function (importing its module when by reference). */
export async function loadFunction(ref: FunctionRef): Promise<FunctionOrClass> {
  const hit = loadFunctionSync(ref, false);
  if (hit) return hit;
  const esm = ref as Extract<FunctionRef, { kind: 'esm' }>;
  return remember(ref, await importExport(esm), esm.exportName, esm.url);
}

// Whether a module this library did not import itself may be running its top-level code here.
let programModules = true;

/**
 * @internal Called in a child: every user module there is imported by the library (the target's
 * module and what it imports), so none is left running a top-level await of its own.
 */
export function childImportsOnly(): void {
  programModules = false;
}

// import() of a module that is still evaluating waits until it has finished. The README's
// pattern (`if (isMainModule(import.meta)) { await pool.map(...) }`) is such a module: were a
// reply naming one of its classes to wait for that import, the evaluation it waits for would be
// waiting for the reply. So when import() has not settled within a turn (an already finished
// module settles at once, without a loader hook; with one, a few milliseconds later) and the
// module is loaded here, its export is taken as it is now, through the inspector
// (findLoadedExport: exact, by the declaration's position; its cost, a heap walk, is paid once
// per export, since loaded caches the result). A module that is still loading, or an export whose
// declaration has not run yet (a class declared below the top-level await), is waited for.
async function importExport(ref: Extract<FunctionRef, { kind: 'esm' }>): Promise<unknown> {
  const pending = import(ref.url) as Promise<Record<string, unknown>>;
  // Kept once settled, also when the export was taken before (and a failure is someone else's).
  pending.then(
    (ns) => void namespaces.set(ref.url, ns),
    () => undefined,
  );
  if (programModules && !namespaces.has(ref.url)) {
    const settled = await Promise.race([
      pending.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => setImmediate(() => resolve(false))),
    ]);
    if (!settled) {
      let live: FunctionOrClass | undefined;
      try {
        live = findLoadedExport(ref.url, ref.exportName, ref.name);
      } catch {
        live = undefined;
      }
      if (live) return live;
    }
  }
  return ownExport(await pending, ref.exportName);
}

/**
 * The same without waiting: CommonJS and inline functions always, ES modules when already
 * imported here or when Node can require() them (no top-level await). Returns undefined when
 * only an asynchronous import would do (and `tryRequire` is false, or require failed).
 */
export function loadFunctionSync(ref: FunctionRef, tryRequire = true): FunctionOrClass | undefined {
  const hit = loaded.get(keyOf(ref));
  if (hit) return hit;
  if (ref.kind === 'source') {
    // new Function rather than vm: code compiled by vm cannot use import() without an
    // experimental flag, and inline targets may well `await import('node:fs')`.
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- compiling the sent source is what crossing by value means
    return remember(ref, (new Function(`"use strict"; return (${asExpression(ref.source)});`) as () => unknown)(), 'inline', 'source');
  }
  if (ref.kind === 'cjs') {
    const exp = createRequire(ref.file)(ref.file) as Record<string, unknown>;
    return remember(ref, ref.exportName === null ? exp : ownExport(exp, ref.exportName), ref.exportName ?? 'module.exports', ref.file);
  }
  if (!tryRequire) return undefined;
  try {
    const ns = createRequire(__filename)(fileURLToPath(ref.url)) as Record<string, unknown>;
    namespaces.set(ref.url, ns);
    return remember(ref, ownExport(ns, ref.exportName), ref.exportName, ref.url);
  } catch {
    return undefined;
  }
}

// An export is an own property of the module's exports: `constructor`, `call` or `__proto__`
// reached through a prototype are not exports (`Function` is no module's export).
function ownExport(exports: object, name: string): unknown {
  return Object.prototype.hasOwnProperty.call(exports, name) ? (exports as Record<string, unknown>)[name] : undefined;
}

function keyOf(ref: FunctionRef): string {
  return ref.kind === 'cjs'
    ? `cjs:${ref.file}#${ref.exportName}`
    : ref.kind === 'esm'
      ? `${ref.url}#${ref.exportName}`
      : `src:${ref.source}`;
}

function remember(ref: FunctionRef, fn: unknown, exportName: string, where: string): FunctionOrClass {
  if (!isFunctionOrClass(fn)) throw notExported(ref.name, exportName, where);
  loaded.set(keyOf(ref), fn);
  return fn;
}

function asExpression(source: string): string {
  try {
    new vm.Script(`(${source})`);
    return source;
  } catch {
    // Method shorthand: wrap it in an object literal and take the method back out.
    const name = /^\s*(?:async\s*)?\*?\s*([\w$]+)/.exec(source)?.[1] ?? 'm';
    return `({${source}})[${JSON.stringify(name)}]`;
  }
}

function notExported(name: string, exportName: string, where: string): Error {
  return new NotTransferableError(
    `import of ${name || 'a function'}`,
    `${where} has no exported function '${exportName}' in this process`,
    'Export the function from that module at top level, outside the main guard.',
  );
}

/** A module URL or path the receiving side should import first (e.g. a Process subclass's module). */
export function moduleOf(ref: FunctionRef): string | undefined {
  if (ref.kind === 'cjs') return pathToFileURL(path.resolve(ref.file)).href;
  if (ref.kind === 'esm') return ref.url;
  return undefined;
}
