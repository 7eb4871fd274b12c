// The one place that reads process.platform and /proc: everything else asks here, so that macOS
// and Windows plug in by changing this file only.
import * as fs from 'node:fs';
import * as os from 'node:os';

/** True on Linux, the platform every feature is built and tested on first. */
export const isLinux = process.platform === 'linux';

/**
 * True where the kernel can signal a child when the thread that started it ends (Linux's
 * `PR_SET_PDEATHSIG`): daemons then die with their parent from their first instruction on.
 */
export const hasParentDeathSignal = isLinux;

/** Number of CPUs this process may use (Python: `os.cpu_count()`, here affinity-aware). */
export function cpuCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** The number a signal has on this platform (`SIGTERM` → 15), or undefined when unknown. */
export function signalNumber(name: string): number | undefined {
  return (os.constants.signals as Record<string, number>)[name];
}

/** The name of signal number `signo` (`15` → `SIGTERM`), or the number as text. */
export function signalName(signo: number): string {
  for (const [name, num] of Object.entries(os.constants.signals)) if (num === signo) return name;
  return String(signo);
}

/** Whether a process with this pid exists (a zombie counts as gone on Linux). */
export function pidAlive(pid: number): boolean {
  if (isLinux) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return statState(stat) !== 'Z';
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids of the live (non-zombie) children of `ppid`; Linux only, empty elsewhere. */
export function childPids(ppid: number = process.pid): number[] {
  if (!isLinux) return [];
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name, which may itself hold spaces and parentheses.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid && rest[0] !== 'Z') out.push(Number(entry));
    } catch {
      // The process ended while we read /proc.
    }
  }
  return out;
}

function statState(stat: string): string {
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}
