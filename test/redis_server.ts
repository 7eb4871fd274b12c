// A real redis-server for the tests: started on a free loopback port with persistence off (or
// AOF on, for the restart test), answered PING before use, stopped at the end. No mock.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => fs.existsSync(p));

/** Why the Redis tests cannot run here, or undefined when redis-server is installed. */
export const redisMissing: string | undefined = BIN
  ? undefined
  : 'redis-server is not installed (apt-get install -y --no-install-recommends redis-server; .ci/run does it)';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('error', () => resolve(false));
    c.once('connect', () => c.write('PING\r\n'));
    c.once('data', (d) => {
      c.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
  });
}

/** A running redis-server owned by the test. */
export class RedisServer {
  proc: ChildProcess | undefined;
  readonly dir: string;
  private constructor(
    readonly port: number,
    readonly aof: boolean,
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-redis-'));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Start a server on a free port; `aof` turns on the append-only file (fsync every write). */
  static async start(aof = false): Promise<RedisServer> {
    const s = new RedisServer(await freePort(), aof);
    await s.restart();
    return s;
  }

  /** Start (again) on the same port and data directory. */
  async restart(): Promise<void> {
    if (!BIN) throw new Error(redisMissing);
    const args = ['--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--daemonize', 'no', '--dir', this.dir];
    args.push('--appendonly', this.aof ? 'yes' : 'no');
    if (this.aof) args.push('--appendfsync', 'always');
    const p = spawn(BIN, args, { stdio: 'ignore' });
    this.proc = p;
    const deadline = Date.now() + 10_000;
    while (!(await ping(this.port))) {
      if (p.exitCode !== null) throw new Error(`redis-server exited with ${p.exitCode} on port ${this.port}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${this.port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGKILL the server (for crash tests); resolves once it has exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await gone;
  }

  /** Stop the server and remove its data directory. */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A fresh namespace, so tests sharing a server never see each other's keys. */
export function randomNamespace(): string {
  return `t${randomBytes(6).toString('hex')}`;
}

/** The installed redis-server's version line (for skip messages and reports). */
export function redisVersion(): string {
  return BIN ? spawnSync(BIN, ['--version'], { encoding: 'utf8' }).stdout.trim() : 'none';
}
