// What a receiver rebuilds from a peer it does not fully trust (Python: the `find_class`
// restriction of pickle's Unpickler). `loads` checks a received message against a policy on the
// decoded structure, before anything of it is rebuilt or imported: a function or class the
// message names (by reference or by value) must be allowed by the policy, and so must a library
// object; an error whose class is not allowed is rebuilt as its nearest built-in or library
// ancestor, from names alone. Pipes and queues between a program and its own children trust
// everything (their peer is the program itself); sockets and managers pass a policy.
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

import { moduleOf, type FunctionRef } from './functions.js';

/** What a receiver accepts besides plain data and errors. */
export interface ReceivePolicy {
  /** Whether a function or class named by `ref` (by reference, or as source text) may be rebuilt. */
  allowRef(ref: FunctionRef): boolean;
  /** Whether the library's own objects (locks, queues, pipe ends, shared memory, proxies) may be rebuilt. */
  readonly libraryObjects: boolean;
  /** How the receiving side opts in, for the refusal's message. */
  readonly optIn: string;
}

/** Everything `dumps` can send: for peers that are the program itself (its pipes, queues, children). */
export const TRUST_ALL: ReceivePolicy = { allowRef: () => true, libraryObjects: true, optIn: '' };

/**
 * A policy that allows the functions and classes exported from `modules` (paths or URLs; the set
 * may grow later), library objects when `libraryObjects`, and never a function sent as source.
 */
export function trustModules(modules: ReadonlySet<string>, options: { libraryObjects: boolean; optIn: string }): ReceivePolicy {
  return {
    allowRef: (ref) => ref.kind !== 'source' && modules.has(moduleOf(ref) ?? ''),
    libraryObjects: options.libraryObjects,
    optIn: options.optIn,
  };
}

/** The file URL of a module given as a path (absolute, or relative to the working directory) or URL. */
export function toModuleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href;
  if (/^[a-z][a-z0-9+.-]+:/i.test(m)) return new URL(m).href;
  return pathToFileURL(path.resolve(m)).href;
}

/** Whether `v`, taken from a peer's message, is a well-formed FunctionRef. */
export function isFunctionRef(v: unknown): v is FunctionRef {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  if (typeof r.name !== 'string') return false;
  switch (r.kind) {
    case 'cjs':
      return typeof r.file === 'string' && path.isAbsolute(r.file) && (r.exportName === null || typeof r.exportName === 'string');
    case 'esm':
      return typeof r.url === 'string' && typeof r.exportName === 'string';
    case 'source':
      return typeof r.source === 'string';
    default:
      return false;
  }
}

/** A FunctionRef in words, for messages. */
export function describeRef(ref: FunctionRef): string {
  const what = ref.name ? `'${ref.name}'` : 'a function';
  if (ref.kind === 'source') return `${what} sent by value (as source text)`;
  const exportName = ref.kind === 'cjs' ? (ref.exportName ?? 'module.exports') : ref.exportName;
  return `${what} (export '${exportName}' of ${moduleOf(ref) ?? '?'})`;
}
