// Which ES module exports a function, by identity (Python: pickle's `whichmodule`, which checks
// `getattr(module, name) is obj`), and the live export of a module that is still running.
//
// Node keeps no registry of ES modules, but the inspector knows every script: where a function
// was defined (its [[FunctionLocation]]: script, line, column), each script's URL, and the
// source the engine ran (under a TypeScript loader such as tsx, the JavaScript it produced, not
// the file on disk). A module's export table is read from that source: for each export name, the
// position V8 reports for the function or class declared under it. A top-level declaration runs
// once per module, so a function *is* that export exactly when its position is the declaration's;
// a function of the same name made elsewhere (by a factory, say) has another position. Exports
// whose binding the module may reassign, or that are bound to anything other than a function or
// class written there (`export const f = make()`), are left out: the source cannot say what they
// hold, and a guess is what this file exists to avoid.
import type * as Inspector from 'node:inspector';

import type { FunctionOrClass } from '../util.js';

let session: Inspector.Session | undefined;

function connect(): Inspector.Session {
  if (!session) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when a function is looked up in ES modules
    const inspector = require('node:inspector') as typeof Inspector;
    session = new inspector.Session();
    session.connect();
  }
  return session;
}

function post(method: string, params: object = {}): unknown {
  const s = connect();
  let out: { err: Error | null; res: unknown } | undefined;
  // An in-thread session answers synchronously, so the callback runs before post() returns.
  s.post(method, params, (err: Error | null, res?: object) => void (out = { err, res }));
  if (!out) throw new Error(`inspector did not answer ${method}`);
  if (out.err) throw out.err;
  return out.res;
}

interface Script {
  url: string;
  /** Export name → "line:column" of its function or class, once the source was read. */
  exports?: Map<string, string>;
}

/** Every script this thread has parsed, by scriptId (ids are never reused). */
const scripts = new Map<string, Script>();

// Enabling the debugger replays scriptParsed for every loaded script and lets getScriptSource
// answer; it is disabled again before returning, so it costs nothing while user code runs.
function withDebugger<T>(body: () => T): T {
  const s = connect();
  const onScript = (m: { params: { scriptId: string; url: string } }): void => {
    if (!scripts.has(m.params.scriptId)) scripts.set(m.params.scriptId, { url: m.params.url });
  };
  s.on('Debugger.scriptParsed', onScript);
  try {
    post('Debugger.enable');
    return body();
  } finally {
    try {
      post('Debugger.disable');
    } finally {
      s.off('Debugger.scriptParsed', onScript);
    }
  }
}

// Called inside withDebugger: the script's source is readable only while the debugger is on.
function readExports(scriptId: string, script: Script): Map<string, string> {
  if (!script.exports) {
    let source: string | undefined;
    try {
      source = (post('Debugger.getScriptSource', { scriptId }) as { scriptSource: string }).scriptSource;
    } catch {
      source = undefined;
    }
    script.exports = new Map();
    if (source !== undefined) {
      const lines = lineStarts(source);
      for (const [name, offset] of exportPositions(source)) script.exports.set(name, lineColumn(lines, offset));
    }
  }
  return script.exports;
}

interface Location {
  scriptId: string;
  lineNumber: number;
  columnNumber: number;
}

/** Where V8 says `fn` was defined, or undefined when it cannot say (native functions). */
function locationOf(fn: FunctionOrClass): Location | undefined {
  const key = `__multiproc_lookup_${process.pid}`;
  const g = globalThis as Record<string, unknown>;
  g[key] = fn;
  try {
    const { result } = post('Runtime.evaluate', { expression: `globalThis.${key}`, objectGroup: GROUP }) as {
      result: { objectId?: string };
    };
    return result.objectId === undefined ? undefined : locationOfObject(result.objectId);
  } finally {
    // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- a global the inspector reads by name, not a dictionary
    delete g[key];
    post('Runtime.releaseObjectGroup', { objectGroup: GROUP });
  }
}

const GROUP = 'multiproc-whichmodule';

function locationOfObject(objectId: string): Location | undefined {
  const props = post('Runtime.getProperties', { objectId, ownProperties: true, objectGroup: GROUP }) as {
    internalProperties?: { name: string; value?: { value?: Location } }[];
  };
  return props.internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value;
}

/**
 * The module that exports `fn` itself and the name it exports it under, when the inspector can
 * prove it (see the top of this file); `accept(url)` says which scripts to read. Undefined
 * otherwise, never a same-named other function.
 */
export function findExport(fn: FunctionOrClass, accept: (url: string) => boolean): { url: string; exportName: string } | undefined {
  const loc = locationOf(fn);
  if (!loc) return undefined;
  const known = scripts.get(loc.scriptId);
  // A script already read needs no debugger: its source never changes.
  const script =
    known?.exports && accept(known.url)
      ? known
      : withDebugger(() => {
          const s = scripts.get(loc.scriptId);
          if (s && accept(s.url)) readExports(loc.scriptId, s);
          return s;
        });
  if (!script?.exports || !accept(script.url)) return undefined;
  const at = `${loc.lineNumber}:${loc.columnNumber}`;
  for (const [name, pos] of script.exports) if (pos === at) return { url: script.url, exportName: name };
  return undefined;
}

/**
 * The export `exportName` (a function or class named `name`) of module `url` as it is now in
 * this thread, found without import(): for a module still running its top-level await, import()
 * would wait for that module to finish. Undefined when the module is not loaded here, does not
 * declare that export where the source can tell, or has not yet run the declaration.
 */
export function findLoadedExport(url: string, exportName: string, name: string): FunctionOrClass | undefined {
  const wanted = withDebugger(() => {
    const found: Location[] = [];
    for (const [scriptId, script] of scripts) {
      if (script.url !== url) continue;
      const pos = readExports(scriptId, script).get(exportName);
      if (pos === undefined) continue;
      const [line = -1, column = -1] = pos.split(':').map(Number);
      found.push({ scriptId, lineNumber: line, columnNumber: column });
    }
    return found;
  });
  if (!wanted.length) return undefined;
  try {
    return functionAt(wanted, name);
  } finally {
    post('Runtime.releaseObjectGroup', { objectGroup: GROUP });
  }
}

// Every function in the heap is listed (Runtime.queryObjects: a full collection and a heap walk,
// tens of milliseconds, done once per export: the caller caches what it finds), narrowed to the
// ones called `name`, and each asked for its position. Exactly one may match.
function functionAt(wanted: Location[], name: string): FunctionOrClass | undefined {
  const proto = post('Runtime.evaluate', { expression: 'Function.prototype', objectGroup: GROUP }) as { result: { objectId: string } };
  const all = post('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId, objectGroup: GROUP }) as {
    objects: { objectId: string };
  };
  // Reading `name` through its descriptor runs no getter; a proxy's trap may throw.
  const named = post('Runtime.callFunctionOn', {
    objectId: all.objects.objectId,
    functionDeclaration: `function (name) {
      return this.filter((f) => {
        try {
          const d = Object.getOwnPropertyDescriptor(f, 'name');
          return !d || !('value' in d) || d.value === name;
        } catch {
          return false;
        }
      });
    }`,
    arguments: [{ value: name }],
    objectGroup: GROUP,
  }) as { result: { objectId: string } };
  const items = post('Runtime.getProperties', { objectId: named.result.objectId, ownProperties: true, objectGroup: GROUP }) as {
    result: { name: string; value?: { objectId?: string } }[];
  };
  const matches: string[] = [];
  for (const item of items.result) {
    const id = item.value?.objectId;
    if (!/^\d+$/.test(item.name) || id === undefined) continue;
    const loc = locationOfObject(id);
    if (loc && wanted.some((w) => w.scriptId === loc.scriptId && w.lineNumber === loc.lineNumber && w.columnNumber === loc.columnNumber)) {
      matches.push(id);
    }
  }
  if (matches.length !== 1) return undefined;
  const key = `__multiproc_found_${process.pid}`;
  const g = globalThis as Record<string, unknown>;
  try {
    post('Runtime.callFunctionOn', {
      objectId: matches[0],
      functionDeclaration: 'function (key) { globalThis[key] = this; }',
      arguments: [{ value: key }],
    });
    const fn = g[key];
    return typeof fn === 'function' ? (fn as FunctionOrClass) : undefined;
  } finally {
    // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- a global the inspector writes by name, not a dictionary
    delete g[key];
  }
}

// ---------------------------------------------------------------------------------------------
// Export table of a module's source.

type AnyNode = { type: string; start: number; end: number; [k: string]: unknown };

function isNode(x: unknown): x is AnyNode {
  return typeof x === 'object' && x !== null && typeof (x as AnyNode).type === 'string';
}

const isFunction = (n: AnyNode): boolean =>
  n.type === 'FunctionDeclaration' || n.type === 'FunctionExpression' || n.type === 'ArrowFunctionExpression';
const isClass = (n: AnyNode): boolean => n.type === 'ClassDeclaration' || n.type === 'ClassExpression';

/**
 * For each name module source `source` exports a function or class under, the offset V8 reports
 * as that function's position: the parameter list of a function, the start of an arrow
 * function, the `constructor`'s parameter list of a class that has one, else the `class`
 * keyword. Left out: re-exports, exports bound to other values, and bindings the module may
 * reassign.
 */
export function exportPositions(source: string): Map<string, number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the parser loads only when a module is searched
  const acorn = require('acorn') as typeof import('acorn');
  let program: AnyNode;
  try {
    program = acorn.parse(source, { ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true }) as unknown as AnyNode;
  } catch {
    return new Map();
  }
  const body = program.body as AnyNode[];
  // Top-level declarations: local name → the initializer or declaration, and how often declared.
  const declared = new Map<string, { node: AnyNode | undefined; count: number }>();
  const declare = (name: string, node: AnyNode | undefined): void => {
    const d = declared.get(name);
    declared.set(name, { node, count: (d?.count ?? 0) + 1 });
  };
  const exported = new Map<string, { local: string } | { node: AnyNode }>();
  for (const stmt of body) {
    const isExport = stmt.type === 'ExportNamedDeclaration' || stmt.type === 'ExportDefaultDeclaration';
    const decl = isExport ? (stmt.declaration as AnyNode | null) : stmt;
    const names = decl ? declareTopLevel(decl, declare) : [];
    if (stmt.type === 'ExportNamedDeclaration') {
      // A re-export: the function's position is in the module that declares it.
      if (stmt.source) continue;
      for (const name of names) exported.set(name, { local: name });
      for (const spec of stmt.specifiers as AnyNode[]) {
        const local = spec.local as AnyNode;
        const ex = spec.exported as AnyNode;
        exported.set(ex.type === 'Identifier' ? (ex.name as string) : String(ex.value), { local: local.name as string });
      }
    } else if (stmt.type === 'ExportDefaultDeclaration' && decl) {
      if (names[0] !== undefined) exported.set('default', { local: names[0] });
      else if (decl.type === 'Identifier') exported.set('default', { local: decl.name as string });
      else exported.set('default', { node: decl });
    }
  }
  const reassigned = reassignedNames(program, new Set(declared.keys()));
  const helpers = nameHelpers(declared, reassigned);
  const out = new Map<string, number>();
  for (const [name, e] of exported) {
    let node: AnyNode | undefined;
    if ('node' in e) node = e.node;
    else {
      const d = declared.get(e.local);
      if (!d || d.count !== 1 || reassigned.has(e.local)) continue;
      node = d.node;
    }
    const value = node && valueOf(node, helpers);
    if (value) out.set(name, positionOf(value, source));
  }
  return out;
}

// The names a top-level statement declares; records each with its function or class, if any.
function declareTopLevel(decl: AnyNode, declare: (name: string, node: AnyNode | undefined) => void): string[] {
  if (decl.type === 'FunctionDeclaration' || decl.type === 'ClassDeclaration') {
    const id = decl.id as AnyNode | null;
    if (!id) return [];
    declare(id.name as string, decl);
    return [id.name as string];
  }
  if (decl.type !== 'VariableDeclaration') return [];
  const names: string[] = [];
  for (const d of decl.declarations as AnyNode[]) {
    const id = d.id as AnyNode;
    if (id.type === 'Identifier') {
      declare(id.name as string, (d.init as AnyNode | null) ?? undefined);
      names.push(id.name as string);
    } else {
      // A destructuring declaration: its names hold values the source cannot name.
      bindingNames(id, (n) => {
        declare(n, undefined);
        names.push(n);
      });
    }
  }
  return names;
}

// The function or class an initializer evaluates to, seen through esbuild's `__name(fn, "f")`
// (tsx emits it to keep names), which returns its first argument.
function valueOf(node: AnyNode, helpers: Set<string>): AnyNode | undefined {
  if (isFunction(node) || isClass(node)) return node;
  if (node.type === 'CallExpression') {
    const callee = node.callee as AnyNode;
    const args = node.arguments as AnyNode[];
    if (callee.type === 'Identifier' && helpers.has(callee.name as string) && args[0]) return valueOf(args[0], helpers);
  }
  return undefined;
}

// Top-level `NAME = (target, value) => D(target, "name", …)` where D is Object.defineProperty
// (directly, or through a top-level alias): Object.defineProperty returns the object it changed.
function nameHelpers(declared: Map<string, { node: AnyNode | undefined; count: number }>, reassigned: Set<string>): Set<string> {
  const isDefineProperty = (n: AnyNode): boolean => {
    if (n.type === 'MemberExpression' && !n.computed) {
      const o = n.object as AnyNode;
      const p = n.property as AnyNode;
      return o.type === 'Identifier' && o.name === 'Object' && p.name === 'defineProperty';
    }
    if (n.type !== 'Identifier') return false;
    const d = declared.get(n.name as string);
    return d?.count === 1 && !reassigned.has(n.name as string) && d.node !== undefined && isDefineProperty(d.node);
  };
  const helpers = new Set<string>();
  for (const [name, d] of declared) {
    const fn = d.node;
    if (d.count !== 1 || reassigned.has(name) || fn?.type !== 'ArrowFunctionExpression') continue;
    const param = (fn.params as AnyNode[])[0];
    const call = fn.body as AnyNode;
    if (param?.type !== 'Identifier' || call.type !== 'CallExpression') continue;
    const [target, key] = call.arguments as (AnyNode | undefined)[];
    if (
      isDefineProperty(call.callee as AnyNode) &&
      target?.type === 'Identifier' &&
      target.name === param.name &&
      key?.type === 'Literal' &&
      key.value === 'name'
    ) {
      helpers.add(name);
    }
  }
  return helpers;
}

// V8's position of a function: the `(` of its parameters (an arrow function: its start). For a
// class: its constructor's, else the `class` keyword.
function positionOf(node: AnyNode, source: string): number {
  if (isClass(node)) {
    const members = (node.body as AnyNode).body as AnyNode[];
    const ctor = members.find((m) => m.type === 'MethodDefinition' && m.kind === 'constructor');
    return ctor ? positionOf(ctor.value as AnyNode, source) : node.start;
  }
  // An arrow function's own start: its parameters, or `async` before them.
  if (node.type === 'ArrowFunctionExpression') return node.start;
  const stop = (node.body as AnyNode).start;
  // Between the start and the parameters there are only keywords, a name, `*` and comments.
  for (let i = node.start; i < stop; i++) {
    const c = source[i];
    if (c === '(') return i;
    if (c === '/' && source[i + 1] === '/') {
      const m = /[\n\r\u2028\u2029]/.exec(source.slice(i));
      if (!m) break;
      i += m.index;
    } else if (c === '/' && source[i + 1] === '*') {
      const end = source.indexOf('*/', i + 2);
      if (end < 0) break;
      i = end + 1;
    }
  }
  return stop;
}

function lineStarts(source: string): number[] {
  const starts = [0];
  for (const m of source.matchAll(/\r\n?|[\n\u2028\u2029]/g)) starts.push(m.index + m[0].length);
  return starts;
}

function lineColumn(starts: number[], offset: number): string {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return `${lo}:${offset - (starts[lo] ?? 0)}`;
}

// ---------------------------------------------------------------------------------------------
// Which top-level bindings the module may assign again after declaring them.

function children(node: AnyNode, visit: (n: AnyNode) => void): void {
  for (const key of Object.keys(node)) {
    if (key === 'type' || key === 'start' || key === 'end' || key === 'loc' || key === 'range') continue;
    const v = node[key];
    if (Array.isArray(v)) {
      for (const c of v) if (isNode(c)) visit(c);
    } else if (isNode(v)) visit(v);
  }
}

function bindingNames(p: AnyNode | null | undefined, add: (name: string) => void): void {
  if (!p) return;
  switch (p.type) {
    case 'Identifier':
      add(p.name as string);
      return;
    case 'ObjectPattern':
      for (const prop of p.properties as AnyNode[])
        bindingNames(prop.type === 'RestElement' ? (prop.argument as AnyNode) : (prop.value as AnyNode), add);
      return;
    case 'ArrayPattern':
      for (const el of p.elements as (AnyNode | null)[]) bindingNames(el, add);
      return;
    case 'RestElement':
      bindingNames(p.argument as AnyNode, add);
      return;
    case 'AssignmentPattern':
      bindingNames(p.left as AnyNode, add);
      return;
    default:
    // A member expression (`o.x = …`) assigns no binding.
  }
}

function assigned(node: AnyNode, add: (name: string) => void): void {
  if (node.type === 'AssignmentExpression') bindingNames(node.left as AnyNode, add);
  else if (node.type === 'UpdateExpression') bindingNames(node.argument as AnyNode, add);
  else if ((node.type === 'ForInStatement' || node.type === 'ForOfStatement') && (node.left as AnyNode).type !== 'VariableDeclaration') {
    bindingNames(node.left as AnyNode, add);
  }
}

// Names a function declares for its whole body: parameters, its own name, `var`s anywhere in
// it, and what its body declares at its top. (A block's `let`, a catch parameter: not counted,
// so an assignment there is taken as one to the module's binding — refusing, never guessing.)
function declaredIn(fn: AnyNode): Set<string> {
  const names = new Set<string>();
  const add = (n: string): void => void names.add(n);
  for (const p of fn.params as AnyNode[]) bindingNames(p, add);
  if (fn.type === 'FunctionExpression' && fn.id) add((fn.id as AnyNode).name as string);
  const body = fn.body as AnyNode;
  if (body.type !== 'BlockStatement') return names;
  for (const stmt of body.body as AnyNode[]) {
    if ((stmt.type === 'FunctionDeclaration' || stmt.type === 'ClassDeclaration') && stmt.id) add((stmt.id as AnyNode).name as string);
    if (stmt.type === 'VariableDeclaration') for (const d of stmt.declarations as AnyNode[]) bindingNames(d.id as AnyNode, add);
  }
  const vars = (n: AnyNode): void => {
    if (isFunction(n)) return;
    if (n.type === 'VariableDeclaration' && n.kind === 'var')
      for (const d of n.declarations as AnyNode[]) bindingNames(d.id as AnyNode, add);
    children(n, vars);
  };
  vars(body);
  return names;
}

function reassignedNames(program: AnyNode, names: Set<string>): Set<string> {
  // First, any assignment to such a name in any scope: usually none, and then nothing else to do.
  const suspects = new Set<string>();
  const scan = (n: AnyNode): void => {
    assigned(n, (name) => {
      if (names.has(name)) suspects.add(name);
    });
    children(n, scan);
  };
  scan(program);
  const out = new Set<string>();
  if (!suspects.size) return out;
  const visit = (n: AnyNode, live: Set<string>): void => {
    if (isFunction(n)) {
      const shadow = declaredIn(n);
      live = new Set([...live].filter((name) => !shadow.has(name)));
      if (!live.size) return;
    }
    assigned(n, (name) => {
      if (live.has(name)) out.add(name);
    });
    children(n, (c) => visit(c, live));
  };
  visit(program, suspects);
  return out;
}
