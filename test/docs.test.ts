// Every TypeScript block in docs/ is a program a reader may copy: each one is type-checked and run
// as the reader would run it (tsx, beside the package), unless the line before its fence marks it
// `<!-- fragment: why -->` (a piece of a larger program, or one that needs another machine).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { runNode, tmpDir } from './helpers.js';

const root = path.join(__dirname, '..', '..');
const docs = path.join(root, 'docs');

interface Block {
  where: string;
  code: string;
  fragment: boolean;
}

function blocks(): Block[] {
  const out: Block[] = [];
  for (const file of fs.readdirSync(docs).filter((f) => f.endsWith('.md'))) {
    const lines = fs.readFileSync(path.join(docs, file), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!/^```(ts|typescript|js|javascript|mts)\s*$/.test(lines[i]!)) continue;
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
      const before =
        lines
          .slice(0, start)
          .reverse()
          .find((l) => l.trim() !== '') ?? '';
      out.push({ where: `docs/${file}:${start + 1}`, code: `${body.join('\n')}\n`, fragment: /^<!-- fragment\b/.test(before) });
    }
  }
  return out;
}

/** A project beside the package, as a reader's: `import 'multiproc'` resolves to this checkout. */
function project(): string {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'multiproc'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'docs-blocks', private: true, type: 'module' }));
  return dir;
}

const all = blocks();
const runnable = all.filter((b) => !b.fragment);

test('docs: every TypeScript block is a whole program or marked as a fragment', () => {
  assert.ok(runnable.length >= 10, `only ${runnable.length} runnable blocks found`);
  for (const b of all) {
    if (b.fragment) continue;
    assert.match(b.code, /^import .* from 'multiproc';$/m, `${b.where}: a runnable block imports what it uses from 'multiproc'`);
  }
});

test('docs: the blocks type-check (strict)', { timeout: 120_000 }, () => {
  const dir = project();
  const files = runnable.map((b, i) => {
    const name = `block${i}.mts`;
    fs.writeFileSync(path.join(dir, name), `// ${b.where}\n${b.code}`);
    return name;
  });
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2023', 'ESNext.Disposable'],
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
        strict: true,
        noEmit: true,
        skipLibCheck: true,
      },
      files,
    }),
  );
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
  const where = (line: string): string =>
    line.replace(/block(\d+)\.mts\((\d+),/, (_, n: string, l: string) => `${runnable[Number(n)]!.where} (+${Number(l) - 1},`);
  assert.equal(r.status, 0, r.stdout.split('\n').map(where).join('\n'));
});

for (const b of runnable) {
  test(`docs: ${b.where} runs`, { timeout: 90_000 }, async () => {
    const dir = project();
    const file = path.join(dir, 'block.mts');
    fs.writeFileSync(file, b.code);
    const r = await runNode(['--import', 'tsx', file], {
      timeoutMs: 60_000,
      env: { ...process.env, NODE_PATH: path.join(root, 'node_modules') },
    });
    assert.equal(r.code, 0, `${b.where} exited with ${r.code}:\n${r.stderr}`);
    // Only a block that writes to stderr itself (a progress bar, console.error) may leave text there.
    if (!/ProgressBar|console\.error|process\.stderr/.test(b.code)) assert.equal(r.stderr, '', `${b.where} wrote to stderr`);
  });
}
