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

/**
 * True when `MULTIPROC_NATIVE=0` is in the environment: the native addon is then neither built at
 * install nor loaded, and shared memory is emulated within the process (see shm/emulated.ts). Read
 * once, when the library loads; children inherit it through the environment.
 */
export const nativeDisabled = process.env.MULTIPROC_NATIVE === '0';

/**
 * True where the native addon can exist at all: it is built on Linux's futex and POSIX shared
 * memory. Elsewhere (macOS) the library runs as without the addon, and the reason given is this.
 */
export const nativeSupported = isLinux;

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

/**
 * The kernel's id of the calling thread (Linux `gettid()`: the pid for a process's main thread).
 * Process and thread ids share one number space, so it names one thread of one process on the
 * whole machine. Elsewhere: the pid. Undefined for a worker thread when /proc is not mounted.
 */
export function currentTaskId(): number | undefined {
  if (!isLinux) return process.pid;
  let link: string;
  try {
    // "<pid>/task/<tid>"
    link = fs.readlinkSync('/proc/thread-self');
  } catch {
    // Without /proc (a chroot, a bare container) the main thread is still known by its pid.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- only on this rare path
    return (require('node:worker_threads') as typeof import('node:worker_threads')).isMainThread ? process.pid : undefined;
  }
  return Number(link.slice(link.lastIndexOf('/') + 1));
}

/**
 * When the thread (or process) `tid` started, in clock ticks since boot, truncated to 32 bits;
 * undefined when no such thread is running (a zombie counts as gone). Together with the id it
 * tells a thread from a later one that was given the same id. Elsewhere: 0 while `tid` is alive.
 */
export function taskStartTime(tid: number): number | undefined {
  if (!isLinux) return pidAlive(tid) ? 0 : undefined;
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${tid}/stat`, 'utf8');
  } catch {
    // Gone, unless there is no /proc to ask: then only whether it exists can be known.
    if (fs.existsSync('/proc/self/stat')) return undefined;
    try {
      process.kill(tid, 0);
      return 0;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? 0 : undefined;
    }
  }
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  // Field 22 of stat, the 20th after the command name.
  return Number(rest[19]) | 0;
}

/** The process (thread group) that thread `tid` belongs to; undefined when it is gone. */
export function taskProcess(tid: number): number | undefined {
  if (!isLinux) return tid;
  try {
    const status = fs.readFileSync(`/proc/${tid}/status`, 'utf8');
    const m = /^Tgid:\s*(\d+)/m.exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
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
