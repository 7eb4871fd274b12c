// What crosses a boundary: round trips through dumps/loads (the same code both backends use),
// the free-variable check, and how exports are found.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { InvalidArgumentError, NotTransferableError, registerType, RemoteTraceback, TimeoutError } from '../src/index.js';
import { dumps, loads, loadsSync } from '../src/reduction/reduction.js';
import { capturedIdentifiers, reduceFunction } from '../src/reduction/functions.js';
import { exportPositions, findLoadedExport } from '../src/reduction/whichmodule.js';
import type { FunctionOrClass } from '../src/util.js';
import { fixture, runNode, runScenario } from './helpers.js';

type Types = typeof import('./fixtures/reduction_types.mjs');
let types: Types;
before(async () => {
  types = (await import(pathToFileURL(fixture('reduction_types.mjs')).href)) as Types;
});

const roundTrip = async <T>(v: T): Promise<T> => (await loads(dumps(v))) as T;

describe('reduction', () => {
  test('plain structured data crosses unchanged, cycles and shared references included', async () => {
    const shared = { s: 1 };
    const v: Record<string, unknown> = {
      a: [1, 'x', null, true, 2n],
      d: new Date(5),
      m: new Map([['k', shared]]),
      set: new Set([shared]),
      buf: new Float64Array([1.5]),
    };
    v.self = v;
    const r = await roundTrip(v);
    assert.equal(r.self, r);
    assert.deepEqual(r.a, [1, 'x', null, true, 2n]);
    assert.equal((r.m as Map<string, unknown>).get('k'), [...(r.set as Set<unknown>)][0]);
    assert.ok(r.buf instanceof Float64Array);
  });

  test('numbers and other primitives cross exactly on their one-tag path, synchronously too, from any offset', async () => {
    const odd = [0, -0, NaN, Infinity, -Infinity, Number.MIN_VALUE, -Number.MAX_VALUE, 2 ** 53 + 2, 0.1 + 0.2, -1e-310, 1 / 3];
    const values: unknown[] = [...odd, 'short', '', true, false, null, undefined];
    for (const v of values) {
      const bytes = dumps(v);
      assert.notEqual(bytes[0], 0xff, `${String(v)} takes the one-tag path`);
      // A message read out of a ring is a view at some offset of a larger buffer.
      const shifted = new Uint8Array(bytes.length + 5).subarray(3, 3 + bytes.length);
      shifted.set(bytes);
      assert.ok(Object.is(await loads(shifted), v), `${String(v)} crosses exactly`);
      assert.ok(Object.is(loadsSync(shifted)?.value, v));
    }
    // Each number is read on its own: no value bleeds into the next.
    const back = await Promise.all(odd.map((v) => loads(dumps(v))));
    back.forEach((v, i) => assert.ok(Object.is(v, odd[i])));
    assert.throws(() => loadsSync(dumps(1).subarray(0, 8)), { code: 'ERR_MP_BAD_MESSAGE' });
  });

  test("bytes cross as their own class, only the view's bytes, copied; other views and empty ones go through V8", async () => {
    class Sub extends Uint8Array {}
    const big = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff);
    const view = new Uint8Array(big.buffer, 3, 65_536);
    const buf = Buffer.from('héllo');
    const cases: [unknown, string][] = [
      [view, 'Uint8Array'],
      [buf, 'Buffer'],
      [new Uint8Array(0), 'Uint8Array'],
      [Buffer.alloc(0), 'Buffer'],
      [new Uint8ClampedArray([1, 300]), 'Uint8ClampedArray'],
      [new Int16Array([-1, 2]), 'Int16Array'],
    ];
    for (const [v, cls] of cases) {
      const bytes = dumps(v);
      const back = (await loads(bytes)) as Uint8Array;
      assert.equal(back.constructor.name === 'FastBuffer' ? 'Buffer' : back.constructor.name, cls);
      assert.equal(Buffer.isBuffer(back), cls === 'Buffer');
      assert.deepEqual([...back], [...(v as Uint8Array)]);
      assert.equal(back.byteLength, (v as Uint8Array).byteLength);
    }
    // A copy: changing the message afterwards changes nothing received.
    const msg = dumps(view);
    const got = (await loads(msg)) as Uint8Array;
    msg.fill(0);
    assert.equal(got[1], view[1]);
    assert.equal(got.buffer.byteLength, 65_536, 'no more than its bytes');
    // A subclass keeps what V8 made of it before.
    assert.notEqual(dumps(new Sub([1, 2]))[0], dumps(new Uint8Array([1, 2]))[0]);
  });

  test('functions: exported ones by reference, inline ones by value, inside containers and cycles', async () => {
    const v: Record<string, unknown> = { f: types.double, g: (x: number) => x + 1, list: [types.default] };
    v.me = v;
    const r = await roundTrip(v);
    assert.equal(r.f, types.double);
    assert.equal((r.g as (x: number) => number)(1), 2);
    assert.equal((r.list as unknown[])[0], types.default);
    assert.equal(r.me, r);
    assert.equal(reduceFunction(types.double, 'f').kind, 'esm');
    assert.equal(reduceFunction(types.default, 'f').kind, 'esm');
  });

  test('errors rebuild as their own class with props and the remote stack as cause', async () => {
    const e = new types.ValidationError('bad field', 'age');
    const r = await roundTrip(e);
    assert.ok(r instanceof types.ValidationError);
    assert.equal(r.message, 'bad field');
    assert.equal(r.field, 'age');
    assert.equal(r.name, 'ValidationError');
    assert.ok(r.cause instanceof RemoteTraceback);
    assert.match((r.cause as Error).message, /ValidationError: bad field/);
    const t = await roundTrip(new TimeoutError('slow'));
    assert.ok(t instanceof TimeoutError);
    assert.equal(t.code, 'ERR_MP_TIMEOUT');
    const sys = Object.assign(new RangeError('r'), { code: 'ERR_X' });
    const rs = await roundTrip(sys);
    assert.ok(rs instanceof RangeError);
    assert.equal(rs.code, 'ERR_X');
    class LocalError extends TypeError {}
    const l = await roundTrip(new LocalError('not exported'));
    assert.ok(l instanceof TypeError, 'falls back to the nearest built-in class');
  });

  test('registered and exported user classes cross as themselves', async () => {
    const r = await roundTrip({ t: new types.Temperature(300) });
    assert.ok(r.t instanceof types.Temperature);
    assert.equal(r.t.kelvin, 300);
    assert.throws(() => registerType(types.Temperature, {} as never), InvalidArgumentError);
  });

  test('refusals name the path of the value', () => {
    const k = 1;
    assert.throws(
      () => dumps({ a: [{ b: () => k }] }, 'args'),
      (e: unknown) => e instanceof NotTransferableError && e.path === 'args.a[0].b',
    );
    assert.throws(() => dumps(new Map([['x', Symbol('q')]]), 'v'), { path: 'v.get("x")' });
    assert.throws(() => dumps({ w: new WeakMap() }, ''), { path: 'w' });
    assert.throws(() => dumps(Math.max, ''), /native or bound/);
    assert.throws(() => dumps(types.double.bind(null), ''), /native or bound/);
  });

  test('the free-variable check', () => {
    const cases: [string, string[]][] = [
      ['(x) => x * x', []],
      ['(x) => Math.max(x, y)', ['y']],
      ['function f(a, { b = c, ...rest }, [d]) { let e = a + b + d; return e + rest.z }', ['c']],
      ['async (f) => { const fs = await import("node:fs"); return fs.readFileSync(f) }', []],
      ['() => { n = 0 }', ['n']],
      ['() => this.x', ['this']],
      ['function () { return this.x }', []],
      ['() => { try { q() } catch (err) { return err } }', ['q']],
      ['(o) => o.prop.deep + o[key]', ['key']],
      ['() => ({ a: 1, [k]: 2, b })', ['k', 'b']],
      ['() => { class A extends Base { m() { return this } } return new A() }', ['Base']],
      ['() => { lbl: for (;;) { break lbl } }', []],
      ['() => require("fs")', ['require']],
      ['run(x) { return x }', []],
      ['() => import.meta.url', ['import.meta']],
    ];
    for (const [src, free] of cases) assert.deepEqual(capturedIdentifiers(src).sort(), free.sort(), src);
  });

  test("exports are found by identity: a function that only shares an export's name is not sent as it", async () => {
    const ref = reduceFunction(types.namesake, 'f');
    assert.deepEqual([ref.kind, ref.kind === 'esm' && ref.exportName], ['esm', 'namesake']);
    assert.throws(
      () => reduceFunction(types.makeNamesake('captured'), 'f'),
      (e: unknown) => e instanceof NotTransferableError && /outer variable 'tag'/.test(e.message),
    );
    const pure = types.makeSelfContainedNamesake();
    assert.equal(reduceFunction(pure, 'f').kind, 'source');
    assert.equal((await roundTrip(pure))(), 'inline');
    assert.equal((await roundTrip(types.namesake))(), 'exported');
    // Reassigned by its module: the source cannot say which function the export holds.
    assert.equal(reduceFunction(types.reassigned, 'f').kind, 'source');
  });

  test('every shape of export is found under its exported name and crosses as itself', async () => {
    const shapes: [string, FunctionOrClass][] = [
      ['double', types.double],
      ['default', types.default],
      ['aliased', types.aliased],
      ['arrow', types.arrow],
      ['single', types.single],
      ['ClassExpression', types.ClassExpression],
      ['WithConstructor', types.WithConstructor],
      ['Derived', types.Derived],
      ['ValidationError', types.ValidationError],
    ];
    for (const [name, fn] of shapes) {
      const ref = reduceFunction(fn, 'f', false);
      assert.equal(ref.kind === 'esm' && ref.exportName, name, name);
      assert.equal(await roundTrip(fn), fn, name);
    }
  });

  test("a loaded module's exports are found as they are now, without import()", () => {
    const url = pathToFileURL(fixture('reduction_types.mjs')).href;
    assert.equal(findLoadedExport(url, 'double', 'double'), types.double);
    assert.equal(findLoadedExport(url, 'WithConstructor', 'WithConstructor'), types.WithConstructor);
    assert.equal(findLoadedExport(url, 'reassigned', 'reassigned'), undefined);
    assert.equal(findLoadedExport(url, 'missing', 'missing'), undefined);
    assert.equal(findLoadedExport(pathToFileURL(fixture('never_loaded.mjs')).href, 'x', 'x'), undefined);
  });

  test('export positions in module source: what V8 reports for each exported function or class', () => {
    const src = [
      '#!/usr/bin/env node',
      'export function a(x) {}',
      'export async function* gen /* ( */ (x) {}',
      'export const b = () => 1, zz = 2, one = y => y, asyncOne = async y => y;',
      'function c() {}',
      'function d() {}',
      'export { c, d as dee, c as "string name" };',
      'export default function () {}',
      'export class F {}',
      'export class G extends F { constructor(q) { super() } }',
      'export const H = class {};',
      "export { x } from './other.js';",
      'export let moved = function () {}; moved = null;',
      'export function kept() {} function inner(kept) { kept = 1 } function other() { var kept; kept = 2 }',
      'export const made = make(), { p } = obj;',
      'var __defProp = Object.defineProperty;',
      'var __name = (target, value) => __defProp(target, "name", { value, configurable: true });',
      'const named = __name((z) => z, "named");',
      'class E { static { __name(this, "E") } }',
      'export { named, E };',
      'var notName = (t, v) => t;',
      'export const notHelper = notName(() => 1, "notHelper");',
    ].join('\n');
    const at = (needle: string, from = 0): number => {
      const i = src.indexOf(needle, from);
      assert.ok(i >= 0, needle);
      return i;
    };
    const positions = exportPositions(src);
    assert.deepEqual(Object.fromEntries(positions), {
      a: at('(x) {}'),
      gen: at('(x) {}', at('gen')),
      b: at('() => 1'),
      one: at('y => y'),
      asyncOne: at('async y'),
      c: at('() {}', at('function c')),
      dee: at('() {}', at('function d')),
      'string name': at('() {}', at('function c')),
      default: at('() {}', at('export default')),
      F: at('class F'),
      G: at('(q)'),
      H: at('class {}'),
      kept: at('() {}', at('function kept')),
      named: at('(z) => z'),
      E: at('class E'),
    });
  });

  // The README's pattern: `if (isMainModule(import.meta)) { await … }`. While that await runs, the
  // main module is still evaluating, and import() of it would wait for the very message it waits
  // for. The fixtures print what each step got back; a step that hangs is named by a watchdog.
  test('a main module inside its top-level await gets instances of its own classes back', async () => {
    const r = await runScenario('tla_main.mjs', [], 90_000);
    assert.deepEqual(r, {
      pipe: 'over a pipe',
      pool_spawn: 'MainError 7',
      pool_spawn_after: 42,
      child_spawn: 'spawn',
      pool_thread: 'MainError 7',
      pool_thread_after: 42,
      child_thread: 'thread',
    });
  });

  test('the same under tsx, whose JavaScript is not the file on disk', async () => {
    const r = await runNode(['--import', 'tsx', path.join(__dirname, '..', '..', 'test', 'fixtures', 'tsx_tla_main.mts')], {
      timeoutMs: 90_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), {
      pipe: 'over a pipe',
      pool: 'MainError 7',
      pool_after: 42,
      child: 'spawn',
    });
  });
});

test("a child's table of library types names every type the library registers, and no other", async () => {
  // Every module of the library: each public name read (they load when first read), and the
  // queue relay, which loads by itself only without the addon.
  const lib = (await import('../src/index.js')) as Record<string, unknown>;
  assert.ok(Object.values(lib).every((v) => v !== undefined));
  await import('../src/ipc/queue_relay.js');
  const { knownLibraryTags } = await import('../src/entry/library_types.js');
  const { libraryTags } = await import('../src/reduction/reduction.js');
  assert.deepEqual(knownLibraryTags().sort(), libraryTags().sort());
});
