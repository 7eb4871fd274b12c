// `npm run lint` (part of it): the modules of src/ form layers, and every import — static,
// require() or import(), lazy or not — points to the same layer or one below. Type-only imports
// are erased by the compiler and are not counted. A cycle, or an import that points up, fails.
import * as fs from 'node:fs';
import * as path from 'node:path';

// Lowest first. A module belongs to the first layer whose pattern matches its path under src/.
const LAYERS = [
  ['base', /^(errors|platform|util|diagnostics)\.ts$/],
  ['shm', /^shm\//],
  ['reduction', /^reduction\//],
  ['popen', /^popen\//],
  ['process', /^process\.ts$/],
  ['sync', /^sync\//],
  ['memory', /^memory\//],
  ['ipc', /^ipc\//],
  ['pool', /^pool\//],
  ['managers', /^managers\//],
  ['redis', /^redis\//],
  ['context', /^context\.ts$/],
  ['top', /^(index\.ts|entry\/|cli\/)/],
];

const root = path.resolve('src');
const files = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.ts')) files.push(path.relative(root, p).split(path.sep).join('/'));
  }
})(root);

const layerOf = (f) => {
  const i = LAYERS.findIndex(([, re]) => re.test(f));
  if (i < 0) throw new Error(`scripts/check-layers.mjs: ${f} is in no layer; add it to LAYERS`);
  return i;
};

const edges = new Map();
const problems = [];
for (const f of files) {
  const text = fs.readFileSync(path.join(root, f), 'utf8');
  const out = new Set();
  // Whole statements, so that `import type { X } from` (erased) is told apart from `import { X } from`.
  const re =
    /(?:^|\n)\s*(import|export)\s+(type\s+)?[^;'"]*?from\s+['"](\.[^'"]+)['"]|require\(\s*['"](\.[^'"]+)['"]\s*\)|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) {
    if (m[2]) continue;
    const spec = m[3] ?? m[4] ?? m[5];
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), spec.replace(/\.js$/, '.ts')));
    if (!files.includes(target)) continue;
    out.add(target);
    if (layerOf(target) > layerOf(f))
      problems.push(`${f} (${LAYERS[layerOf(f)][0]}) imports ${target} (${LAYERS[layerOf(target)][0]}), a higher layer`);
  }
  edges.set(f, out);
}

// Cycles, by depth-first search.
const state = new Map();
const stack = [];
function visit(f) {
  state.set(f, 1);
  stack.push(f);
  for (const t of edges.get(f) ?? []) {
    if (state.get(t) === 1) problems.push(`import cycle: ${[...stack.slice(stack.indexOf(t)), t].join(' -> ')}`);
    else if (!state.has(t)) visit(t);
  }
  stack.pop();
  state.set(f, 2);
}
for (const f of files) if (!state.has(f)) visit(f);

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`layers: ${files.length} modules, ${[...edges.values()].reduce((n, s) => n + s.size, 0)} imports, no cycle, none pointing up`);
