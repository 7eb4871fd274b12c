#!/usr/bin/env node
// The `multiproc` command. Usage: multiproc <command>; see USAGE below.
import * as path from 'node:path';

import { demo } from './demo.js';
import { mapCommand } from './map.js';
import { statusCommand, workerCommand } from './worker.js';

const USAGE = `Usage: multiproc <command>   (multiproc --version: the version)

Commands:
  demo    run the example programs (Python multiprocessing tutorials ported to TypeScript):
          multiproc demo [example ...]
  map     run a function over JSON lines in a pool: multiproc map <module>#<export> [inputs.jsonl|-]
          (multiproc map --help for its options)
  worker  serve Redis pools from this machine: multiproc worker --backend redis://… --module <file>
  status  what a Redis pool namespace holds: multiproc status --backend redis://… [--namespace NAME]
  help    show this help
`;

type Command = (args: string[]) => Promise<number> | number;

/** Every command by name. New commands are added here. */
const COMMANDS: Record<string, Command> = {
  demo: (args) => demo(args),
  help: () => {
    process.stdout.write(USAGE);
    return 0;
  },
  map: (args) => mapCommand(args),
  status: (args) => statusCommand(args),
  worker: (args) => workerCommand(args),
};

// `multiproc demo | head`: a closed pipe ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/** The version of this package, from its package.json (two folders above build/src/cli). */
function version(): string {
  for (const up of ['../../..', '../..']) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- read once, only for --version
      const pkg = require(path.join(__dirname, up, 'package.json')) as { name?: string; version?: string };
      if (pkg.name === 'multiproc' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next place
    }
  }
  return 'unknown';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`multiproc ${version()} (node ${process.version})\n`);
    return 0;
  }
  if (name === '--help' || name === '-h') return COMMANDS.help!(rest);
  const command = name === undefined ? undefined : Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(name === undefined ? 'multiproc: missing command\n\n' : `multiproc: unknown command '${name}'\n\n`);
    process.stderr.write(USAGE);
    return 2;
  }
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`multiproc: ${(err as Error | null | undefined)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
