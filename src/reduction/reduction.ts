// What crosses a process boundary (Python: `multiprocessing.reduction`).
//
// Values cross by V8's structured clone. Before cloning, a walk replaces what clone cannot carry
// faithfully: functions and classes (by reference or by value, see functions.ts), instances of
// registered types (library objects reduce to the *name* of their shared resource, never its
// bytes), instances of exported user classes (class by reference + own fields, as pickle does),
// and errors (rebuilt as the same class with the remote stack as `cause`). Plain data skips the
// copy: a first scan decides whether anything needs replacing.
import * as v8 from 'node:v8';

import {
  InvalidArgumentError,
  libraryErrors,
  NotTransferableError,
  registeredErrorNames,
  RemoteTraceback,
  UntrustedMessageError,
} from '../errors.js';
import { isFunctionOrClass, type FunctionOrClass } from '../util.js';
import { loadFunction, loadFunctionSync, reduceFunction, type FunctionRef } from './functions.js';
import { describeRef, isFunctionRef, TRUST_ALL, type ReceivePolicy } from './policy.js';
import { FAST_TAG, unpack } from './fastcodec.js';
import { dumpsPrimitive, loadsPrimitive } from './primitives.js';

/** How a type reduces to transportable state, and how the receiver rebuilds it. */
export interface Reducer<T extends object, S = unknown> {
  /** Return the state to send: structured-cloneable data, or values that reduce in turn. `where` names the value in errors. */
  reduce(obj: T, where?: string): S;
  /** Rebuild the object from the state in the receiving process or thread. */
  rebuild(state: S): T;
}

interface Entry {
  cls: FunctionOrClass;
  tag: string | undefined;
  reducer: Reducer<object>;
}

const byClass = new Map<FunctionOrClass, Entry>();
const byTag = new Map<string, Entry>();

/** Placeholder marker: a key no user object has by accident. */
const MARK = '\u0000multiproc';

type Placeholder =
  | { [MARK]: 'fn'; ref: FunctionRef }
  | { [MARK]: 'lib'; tag: string; state: unknown }
  | { [MARK]: 'obj'; cls: FunctionRef; custom: boolean; state: unknown }
  | {
      [MARK]: 'err';
      cls: FunctionRef | null;
      builtin: string;
      name: string;
      message: string;
      stack: string;
      props: unknown;
      cause: unknown;
    };

/**
 * Teach multiproc how an instance of `cls` crosses a process boundary. Library types pass a
 * `tag`; user classes omit it and must be exported (the receiver imports the class's module,
 * whose top-level `registerType` call then provides `rebuild`).
 * @throws InvalidArgumentError when `cls` is not a class or the reducer lacks reduce/rebuild.
 */
export function registerType<T extends object, S>(cls: abstract new (...args: never[]) => T, reducer: Reducer<T, S>, tag?: string): void {
  if (typeof cls !== 'function') throw new InvalidArgumentError('registerType(cls, reducer): cls must be a class');
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- runtime check for JavaScript callers
  if (typeof reducer?.reduce !== 'function' || typeof reducer?.rebuild !== 'function') {
    throw new InvalidArgumentError('registerType(cls, reducer): reducer must have reduce(obj) and rebuild(state) functions');
  }
  const entry: Entry = { cls, tag, reducer: reducer };
  byClass.set(cls, entry);
  if (tag !== undefined) byTag.set(tag, entry);
}

function registered(obj: object): Entry | undefined {
  for (let p = Object.getPrototypeOf(obj) as object | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    const e = byClass.get((p as { constructor: FunctionOrClass }).constructor);
    if (e) return e;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Sending side.

/**
 * Serialize `value` for another process or thread. `where` names the value in errors
 * (`args` → `args[1].cb`).
 * @throws NotTransferableError naming the path of the first value that cannot cross.
 */
export function dumps(value: unknown, where = 'value'): Buffer {
  const quick = dumpsPrimitive(value);
  if (quick) return quick;
  let special: boolean;
  try {
    special = scan(value, undefined, undefined);
  } catch (err) {
    if (err !== REFUSED) throw err;
    // Walk again, this time keeping paths, to say where the value that cannot cross sits.
    scan(value, undefined, where);
    throw err;
  }
  // Plain data is sent as it is; data with placeholders is wrapped, so loads() knows to rebuild.
  const data = special ? { [ROOT]: reduce(value, where, new Map()) } : value;
  try {
    return v8.serialize(data);
  } catch (err) {
    throw new NotTransferableError(
      where,
      `holds a value structured clone cannot copy (${(err as Error).message})`,
      'Send plain data, or register the type with registerType().',
    );
  }
}

/** Key of the wrapper around data that holds placeholders. */
const ROOT = '\u0000multiproc.root';

const CLONEABLE = [Date, RegExp, ArrayBuffer, DataView, Boolean, Number, String] as const;

function isCloneableLeaf(v: object): boolean {
  if (ArrayBuffer.isView(v)) return true;
  for (const c of CLONEABLE) if (v instanceof c) return true;
  return false;
}

function isPlain(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

// Thrown by the fast scan, which keeps no paths; dumps() then scans again with paths.
const REFUSED = new Error('refused');

// True when the walk must copy the value; throws for what can never cross. Without `where` it
// builds no path strings (the common, fast case) and throws REFUSED instead of the real error.
function scan(v: unknown, seen: Set<object> | undefined, where: string | undefined): boolean {
  if (typeof v !== 'object' || v === null) {
    if (typeof v === 'function') return true;
    if (typeof v === 'symbol') throw where === undefined ? REFUSED : refuse(where, 'is a Symbol', 'Send its description string instead.');
    return false;
  }
  if (ArrayBuffer.isView(v)) return false;
  seen ??= new Set();
  if (seen.has(v)) return false;
  seen.add(v);
  const at = (k: string | number): string | undefined =>
    where === undefined ? undefined : typeof k === 'number' ? `${where}[${k}]` : pathOf(where, k);
  if (Array.isArray(v)) {
    let special = false;
    for (let i = 0; i < v.length; i++) if (scan(v[i], seen, at(i))) special = true;
    return special || Object.getPrototypeOf(v) !== Array.prototype;
  }
  if (isPlain(v)) {
    let special = false;
    for (const key in v)
      if (Object.prototype.hasOwnProperty.call(v, key) && scan((v as Record<string, unknown>)[key], seen, at(key))) special = true;
    return special;
  }
  if (v instanceof Map) {
    let special = Object.getPrototypeOf(v) !== Map.prototype;
    for (const [k, val] of v) {
      if (scan(k, seen, where === undefined ? undefined : `${where}.<key>`)) special = true;
      if (scan(val, seen, where === undefined ? undefined : `${where}.get(${describeKey(k)})`)) special = true;
    }
    return special;
  }
  if (v instanceof Set) {
    let special = Object.getPrototypeOf(v) !== Set.prototype;
    for (const item of v) if (scan(item, seen, where === undefined ? undefined : `${where}.<item>`)) special = true;
    return special;
  }
  if (v instanceof SharedArrayBuffer) {
    throw where === undefined
      ? REFUSED
      : refuse(
          where,
          'is a SharedArrayBuffer, which Node cannot share with another process',
          'Use multiproc SharedMemory, Value or Array: they cross by name.',
        );
  }
  if (isCloneableLeaf(v)) return false;
  if (v instanceof Promise) throw where === undefined ? REFUSED : refuse(where, 'is a Promise', 'Await it and send the result.');
  if (v instanceof WeakMap || v instanceof WeakSet || v instanceof WeakRef)
    throw where === undefined ? REFUSED : refuse(where, `is a ${v.constructor.name}`, 'Send a Map or Set of plain data instead.');
  return true;
}

function reduce(v: unknown, where: string, seen: Map<object, unknown>): unknown {
  if (isFunctionOrClass(v)) return { [MARK]: 'fn', ref: reduceFunction(v, where) } satisfies Placeholder;
  if (typeof v !== 'object' || v === null) return v;
  const done = seen.get(v);
  if (done !== undefined) return done;
  if (Array.isArray(v) && Object.getPrototypeOf(v) === Array.prototype) {
    const out: unknown[] = new Array(v.length);
    seen.set(v, out);
    for (let i = 0; i < v.length; i++) out[i] = reduce(v[i], `${where}[${i}]`, seen);
    return out;
  }
  if (isPlain(v)) {
    const out: Record<string, unknown> = {};
    seen.set(v, out);
    for (const key of Object.keys(v)) out[key] = reduce((v as Record<string, unknown>)[key], pathOf(where, key), seen);
    return out;
  }
  const entry = registered(v);
  if (entry) {
    const ph = (
      entry.tag !== undefined
        ? { [MARK]: 'lib', tag: entry.tag, state: undefined }
        : { [MARK]: 'obj', cls: reduceFunction(entry.cls, `${where} (class ${entry.cls.name})`, false), custom: true, state: undefined }
    ) as Placeholder & { state: unknown };
    seen.set(v, ph);
    ph.state = reduce(entry.reducer.reduce(v, where), where, seen);
    return ph;
  }
  if (v instanceof Error) return reduceError(v, where, seen);
  if (v instanceof Map && Object.getPrototypeOf(v) === Map.prototype) {
    const out = new Map<unknown, unknown>();
    seen.set(v, out);
    for (const [k, val] of v) out.set(reduce(k, `${where}.<key>`, seen), reduce(val, `${where}.get(${describeKey(k)})`, seen));
    return out;
  }
  if (v instanceof Set && Object.getPrototypeOf(v) === Set.prototype) {
    const out = new Set<unknown>();
    seen.set(v, out);
    for (const item of v) out.add(reduce(item, `${where}.<item>`, seen));
    return out;
  }
  if (isCloneableLeaf(v)) return v;
  // An instance of a user class: the class by reference and its own fields, as pickle does.
  const cls = (Object.getPrototypeOf(v) as { constructor?: unknown }).constructor;
  if (!isFunctionOrClass(cls)) throw refuse(where, 'is an object with an unusual prototype', 'Send plain data.');
  let clsRef: FunctionRef;
  try {
    clsRef = reduceFunction(cls, where, false);
  } catch {
    throw refuse(
      where,
      `is an instance of ${cls.name || 'an anonymous class'}, which is not exported from a module`,
      `Export class ${cls.name || '…'} from its module (it then crosses with its own fields), or send plain data.`,
    );
  }
  const ph = { [MARK]: 'obj', cls: clsRef, custom: false, state: undefined } as Placeholder & { state: unknown };
  seen.set(v, ph);
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(v)) fields[key] = reduce((v as Record<string, unknown>)[key], pathOf(where, key), seen);
  ph.state = fields;
  return ph;
}

const BUILTIN_ERRORS: Record<string, new (message?: string) => Error> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
  AggregateError: AggregateError as unknown as new (message?: string) => Error,
};

function reduceError(err: Error, where: string, seen: Map<object, unknown>): Placeholder {
  // The nearest class the receiver can rebuild: the error's own class if exported, else the
  // closest library or built-in ancestor (the name is kept either way).
  let cls: FunctionRef | null = null;
  let builtin = 'Error';
  for (let p = Object.getPrototypeOf(err) as object | null; p; p = Object.getPrototypeOf(p) as object | null) {
    const ctor = (p as { constructor: FunctionOrClass }).constructor;
    if (BUILTIN_ERRORS[ctor.name] === ctor || libraryErrors.get(ctor.name) === ctor) {
      builtin = ctor.name;
      break;
    }
    if (cls === null && Object.prototype.hasOwnProperty.call(p, 'constructor')) {
      try {
        cls = reduceFunction(ctor, where, false);
      } catch {
        // Not exported: fall back to an ancestor.
      }
    }
  }
  const ph = {
    [MARK]: 'err',
    cls,
    builtin,
    name: err.name,
    message: err.message,
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion -- user code may have set any value as the stack
    stack: String(err.stack ?? ''),
    props: undefined,
    cause: undefined,
  } as Placeholder & { props: unknown; cause: unknown };
  seen.set(err, ph);
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(err)) {
    if (key === 'stack' || key === 'message' || key === 'cause') continue;
    try {
      props[key] = reduce((err as unknown as Record<string, unknown>)[key], pathOf(where, key), seen);
    } catch {
      // A field that cannot cross must not hide the error itself.
    }
  }
  ph.props = props;
  if ('cause' in err && err.cause !== undefined) {
    try {
      ph.cause = reduce(err.cause, `${where}.cause`, seen);
    } catch {
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a cause that cannot cross goes as text, even if only '[object Object]'
      ph.cause = String(err.cause);
    }
  }
  return ph;
}

function refuse(where: string, problem: string, fix: string): NotTransferableError {
  return new NotTransferableError(where, problem, fix);
}

function pathOf(where: string, key: string): string {
  if (where === '') return key;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${where}.${key}` : `${where}[${JSON.stringify(key)}]`;
}

function describeKey(k: unknown): string {
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- objects are '{…}'; what is left (numbers, symbols, functions) prints as itself
  return typeof k === 'string' ? JSON.stringify(k) : typeof k === 'object' ? '{…}' : String(k);
}

// ---------------------------------------------------------------------------------------------
// Receiving side.

/**
 * Deserialize what `dumps` produced, importing the modules of functions and classes it names.
 * `policy` says what a peer may name (default: anything, for the program's own pipes and
 * queues); the whole message is checked before anything is rebuilt or imported.
 * @throws UntrustedMessageError when the message names what `policy` does not allow.
 */
export async function loads(buf: Uint8Array, policy: ReceivePolicy = TRUST_ALL): Promise<unknown> {
  if (buf[0] === FAST_TAG) return unpack(buf);
  if (buf[0] !== 0xff) return loadsPrimitive(buf);
  const data = v8.deserialize(buf) as unknown;
  if (!isWrapped(data)) return data;
  const root = data[ROOT];
  const refs = collectRefs(root, policy);
  const fns = new Map<FunctionRef, FunctionOrClass>();
  await Promise.all(refs.map((ref) => loadFunction(ref).then((f) => void fns.set(ref, f))));
  return rebuild(root, fns, new Map());
}

function isWrapped(data: unknown): data is { [ROOT]: unknown } {
  return typeof data === 'object' && data !== null && Object.prototype.hasOwnProperty.call(data, ROOT);
}

/**
 * `loads` without waiting, for calls that must not (Queue.getNowait). Returns undefined when a
 * function or class it names needs an asynchronous import first; use `loads` then.
 */
export function loadsSync(buf: Uint8Array): { value: unknown } | undefined {
  if (buf[0] === FAST_TAG) return { value: unpack(buf) };
  if (buf[0] !== 0xff) return { value: loadsPrimitive(buf) };
  const data = v8.deserialize(buf) as unknown;
  if (!isWrapped(data)) return { value: data };
  const root = data[ROOT];
  const fns = new Map<FunctionRef, FunctionOrClass>();
  let missing = false;
  for (const ref of collectRefs(root, TRUST_ALL)) {
    const f = loadFunctionSync(ref);
    if (f) fns.set(ref, f);
    else missing = true;
  }
  return missing ? undefined : { value: rebuild(root, fns, new Map()) };
}

// A child loads the library's own types (locks, queues, ...) only when a message holds one:
// requiring all of it up front would slow every process start. The children's entries (the top
// of the library) say how; in a program that imported the library, every type is registered.
let loadLibraryType: (tag: string) => void = () => undefined;

/** @internal How to load the module that registers the library type `tag` (called when one is first needed). */
export function setLibraryTypeLoader(load: (tag: string) => void): void {
  loadLibraryType = load;
}

/** @internal The tags of the library types registered in this process, and `error:<name>` for the error classes registered outside errors.ts (tests compare them with the loader's table). */
export function libraryTags(): string[] {
  return [...byTag.keys()].filter((t) => t.startsWith('multiproc.')).concat(registeredErrorNames().map((n) => `error:${n}`));
}

function isPlaceholder(v: object): v is Placeholder {
  return Object.prototype.hasOwnProperty.call(v, MARK);
}

/**
 * The functions and classes a received message names, each checked against `policy` before any
 * is loaded; an error class the policy does not allow is dropped (the error is then rebuilt from
 * its built-in or library ancestor's name). Throws UntrustedMessageError for what is refused.
 */
function collectRefs(root: unknown, policy: ReceivePolicy): FunctionRef[] {
  const refs: FunctionRef[] = [];
  if (policy === TRUST_ALL) {
    walkPlaceholders(root, new Set(), undefined, (p) => {
      if (p[MARK] === 'fn') refs.push(p.ref);
      else if (p[MARK] === 'obj') refs.push(p.cls);
      else if (p[MARK] === 'err' && p.cls) refs.push(p.cls);
    });
    return refs;
  }
  const check = (p: Placeholder, where: string | undefined): void => {
    switch (p[MARK]) {
      case 'fn':
      case 'obj': {
        const ref = p[MARK] === 'fn' ? p.ref : p.cls;
        if (!isFunctionRef(ref)) throw untrusted(where, 'holds a malformed function reference', policy);
        if (!policy.allowRef(ref))
          throw untrusted(where, `names ${p[MARK] === 'fn' ? 'function' : 'the class of an object,'} ${describeRef(ref)}`, policy);
        refs.push(ref);
        return;
      }
      case 'err':
        if (p.cls !== null && (!isFunctionRef(p.cls) || !policy.allowRef(p.cls))) (p as { cls: FunctionRef | null }).cls = null;
        else if (p.cls) refs.push(p.cls);
        return;
      case 'lib':
        if (!policy.libraryObjects) throw untrusted(where, `holds a library object (${JSON.stringify(p.tag)})`, policy);
        return;
    }
  };
  try {
    walkPlaceholders(root, new Set(), undefined, (p) => check(p, undefined));
  } catch (err) {
    if (err !== REFUSED) throw err;
    // Walk again, keeping paths, to say where the refused value sits.
    refs.length = 0;
    walkPlaceholders(root, new Set(), 'message', check);
    throw err;
  }
  return refs;
}

function untrusted(where: string | undefined, problem: string, policy: ReceivePolicy): Error {
  if (where === undefined) return REFUSED;
  return new UntrustedMessageError(
    where,
    `${problem}: this receiver does not rebuild code a peer names, so nothing of the message was rebuilt`,
    policy.optIn,
  );
}

function walkPlaceholders(
  v: unknown,
  seen: Set<object>,
  where: string | undefined,
  visit: (p: Placeholder, where: string | undefined) => void,
): void {
  if (typeof v !== 'object' || v === null || seen.has(v)) return;
  seen.add(v);
  const at = (k: string | number): string | undefined =>
    where === undefined ? undefined : typeof k === 'number' ? `${where}[${k}]` : pathOf(where, k);
  if (Array.isArray(v)) v.forEach((x, i) => walkPlaceholders(x, seen, at(i), visit));
  else if (v instanceof Map) {
    for (const [k, x] of v) {
      walkPlaceholders(k, seen, where === undefined ? undefined : `${where}.<key>`, visit);
      walkPlaceholders(x, seen, where === undefined ? undefined : `${where}.get(${describeKey(k)})`, visit);
    }
  } else if (v instanceof Set) for (const x of v) walkPlaceholders(x, seen, where === undefined ? undefined : `${where}.<item>`, visit);
  else if (isPlain(v)) {
    if (isPlaceholder(v)) visit(v, where);
    for (const key of Object.keys(v)) walkPlaceholders((v as Record<string, unknown>)[key], seen, at(key), visit);
  }
}

// In place where possible: the deserialized data is ours.
function rebuild(v: unknown, fns: Map<FunctionRef, FunctionOrClass>, seen: Map<object, unknown>): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (seen.has(v)) return seen.get(v);
  if (Array.isArray(v)) {
    seen.set(v, v);
    for (let i = 0; i < v.length; i++) v[i] = rebuild(v[i], fns, seen);
    return v;
  }
  if (v instanceof Map) {
    const entries = [...v];
    seen.set(v, v);
    v.clear();
    for (const [k, x] of entries) v.set(rebuild(k, fns, seen), rebuild(x, fns, seen));
    return v;
  }
  if (v instanceof Set) {
    const items = [...v];
    seen.set(v, v);
    v.clear();
    for (const x of items) v.add(rebuild(x, fns, seen));
    return v;
  }
  if (!isPlain(v)) return v;
  if (!isPlaceholder(v)) {
    seen.set(v, v);
    const o = v as Record<string, unknown>;
    for (const key of Object.keys(o)) o[key] = rebuild(o[key], fns, seen);
    return v;
  }
  switch (v[MARK]) {
    case 'fn': {
      const f = fns.get(v.ref);
      seen.set(v, f);
      return f;
    }
    case 'lib': {
      const entry = byTag.get(v.tag) ?? (loadLibraryType(v.tag), byTag.get(v.tag));
      if (!entry)
        throw new NotTransferableError(`rebuild of ${v.tag}`, 'this process does not know the type', 'Import the module that defines it.');
      const obj = entry.reducer.rebuild(rebuild(v.state, fns, seen));
      seen.set(v, obj);
      return obj;
    }
    case 'obj': {
      const cls = fns.get(v.cls)!;
      if (v.custom) {
        const entry = byClass.get(cls);
        if (!entry)
          throw new NotTransferableError(
            `rebuild of ${v.cls.name}`,
            'the class has no registerType() call at the top level of its module',
            'Call registerType() at module top level, outside the main guard.',
          );
        const obj = entry.reducer.rebuild(rebuild(v.state, fns, seen));
        seen.set(v, obj);
        return obj;
      }
      const obj = Object.create(cls.prototype as object) as Record<string, unknown>;
      seen.set(v, obj);
      const fields = v.state as Record<string, unknown>;
      // Own fields, as pickle sets __dict__: no setter of the class runs, and a field named
      // __proto__ stays a field.
      for (const key of Object.keys(fields)) defineField(obj, key, rebuild(fields[key], fns, seen));
      return obj;
    }
    case 'err':
      return rebuildError(v, fns, seen);
  }
}

function rebuildError(
  p: Extract<Placeholder, { [MARK]: 'err' }>,
  fns: Map<FunctionRef, FunctionOrClass>,
  seen: Map<object, unknown>,
): Error {
  const cls = (p.cls && fns.get(p.cls)) || errorClassNamed(p.builtin);
  const err = Object.create(cls.prototype as object) as Error & Record<string, unknown>;
  seen.set(p, err);
  Object.defineProperty(err, 'message', { value: p.message, writable: true, configurable: true, enumerable: false });
  Object.defineProperty(err, 'stack', { value: p.stack, writable: true, configurable: true, enumerable: false });
  if (err.name !== p.name) Object.defineProperty(err, 'name', { value: p.name, writable: true, configurable: true, enumerable: false });
  const props = rebuild(p.props, fns, seen);
  if (typeof props === 'object' && props !== null)
    for (const key of Object.keys(props)) defineField(err, key, (props as Record<string, unknown>)[key]);
  const remote = new RemoteTraceback(p.stack);
  if (p.cause !== undefined)
    Object.defineProperty(remote, 'cause', { value: rebuild(p.cause, fns, seen), configurable: true, writable: true });
  Object.defineProperty(err, 'cause', { value: remote, writable: true, configurable: true, enumerable: false });
  return err;
}

function defineField(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, configurable: true, enumerable: true });
}

// A built-in or library error class from its name alone (the sender's name is data: only own
// entries count, so '__proto__' or 'constructor' name nothing).
function errorClassNamed(name: unknown): new (message?: string) => Error {
  if (typeof name !== 'string') return Error;
  if (Object.prototype.hasOwnProperty.call(BUILTIN_ERRORS, name)) return BUILTIN_ERRORS[name]!;
  const lib = libraryErrors.get(name) ?? (loadLibraryType(`error:${name}`), libraryErrors.get(name));
  return (lib as (new (message?: string) => Error) | undefined) ?? Error;
}
