// Starts a throwaway redis-server for integration tests: 127.0.0.1 on a
// random free port, working directory in a fresh temporary directory, no
// persistence (no RDB snapshots, no AOF). stop() shuts it down and removes
// the directory.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createClient, RESP_TYPES } from 'redis';
import { freePort } from './postgres.ts';

export interface RedisHandle {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

export function redisServerBinary(): string {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  throw new Error('redis-server not found (install it: apt-get install -y redis-server)');
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(1000);
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += String(d);
      if (buf.includes('\r\n')) { s.destroy(); resolve(buf.startsWith('+PONG')); }
    });
    s.on('error', () => resolve(false));
    s.on('timeout', () => { s.destroy(); resolve(false); });
  });
}

/** `config`: lines of a redis.conf the server starts from (e.g. rename-command), before the test settings. */
export async function startRedis(opts: { config?: string } = {}): Promise<RedisHandle> {
  const bin = redisServerBinary();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-redis-'));
  const port = await freePort();
  const logs: string[] = [];
  const conf: string[] = [];
  if (opts.config !== undefined) {
    await writeFile(path.join(dir, 'redis.conf'), opts.config);
    conf.push(path.join(dir, 'redis.conf'));
  }
  const proc = spawn(bin, [...conf,
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--protected-mode', 'yes', '--databases', '16', '--loglevel', 'warning',
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (b) => logs.push(String(b)));
  proc.stderr.on('data', (b) => logs.push(String(b)));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  while (!(await ping(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start: ${logs.join('').slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A client that answers strings as Buffers (binary values compared byte for byte). */
export function rawClient(url: string, database = 0) {
  return createClient({ url, RESP: 2, database }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}
export type RawRedis = ReturnType<typeof rawClient>;

/** A connected rawClient; its errors are left to the calls that meet them. */
export async function openRaw(url: string, database = 0): Promise<RawRedis> {
  const c = rawClient(url, database);
  c.on('error', () => undefined);
  await c.connect();
  return c;
}
