// Starts a throwaway PostgreSQL server for integration tests: initdb into a
// fresh temporary directory, postgres on 127.0.0.1 with a random free port,
// fsync off (nothing here needs to survive a crash). PostgreSQL refuses to
// run as root, so when the tests run as root (CI, this machine) initdb and
// postgres run as the `postgres` system user, with the directory handed to it.
// Host connections use SCRAM passwords (the superuser `postgres` with a random
// password, which the returned URL carries), so tests can exercise password
// resolution; the unix socket stays in the temp directory.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface PostgresHandle {
  /** postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  password: string;
  /** Directory of initdb, postgres, pg_dump, pg_restore. */
  binDir: string;
  /** Creates a database (optionally from SQL) and returns its URL. */
  createDatabase(name: string, sql?: string): Promise<string>;
  /** URL of a database on this server (which may not exist yet). */
  urlFor(database: string): string;
  /** The server's data directory. */
  dataDir: string;
  /** The server's log so far. */
  log(): string;
  /** Stops the server (fast shutdown) and removes its directory. */
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory (Debian layout), or the directory of initdb on PATH. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return path.join(root, versions[0], 'bin');
  }
  const r = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return path.dirname(r.stdout.trim());
  throw new Error('PostgreSQL server binaries not found (install postgresql: apt-get install -y postgresql)');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error('running as root but there is no `postgres` user to run PostgreSQL as');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

export interface StartPostgresOptions {
  /** More server settings (-c name=value), e.g. { wal_level: 'replica', archive_mode: 'on', archive_command: '...' }. */
  settings?: Record<string, string>;
  /** Environment of the server (and so of its archive_command). */
  env?: Record<string, string>;
}

export async function startPostgres(o: StartPostgresOptions = {}): Promise<PostgresHandle> {
  const binDir = postgresBinDir();
  const ids = runAs();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-pg-'));
  const data = path.join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  let proc: ChildProcess | undefined;
  try {
    if (ids.uid !== undefined) await chown(dir, ids.uid, ids.gid!);
    const pwfile = path.join(dir, 'pw');
    await writeFile(pwfile, password, { mode: 0o600 });
    if (ids.uid !== undefined) await chown(pwfile, ids.uid, ids.gid!);
    const init = spawnSync(path.join(binDir, 'initdb'), [
      '-D', data, '-U', 'postgres', '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256',
      '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions',
    ], { ...ids, encoding: 'utf8', cwd: dir });
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
    await rm(pwfile, { force: true });
    const port = await freePort();
    const logs: string[] = [];
    proc = spawn(path.join(binDir, 'postgres'), [
      '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
      '-c', 'shared_buffers=16MB', '-c', 'max_connections=30', '-c', 'logging_collector=off',
      ...Object.entries(o.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    ], { ...ids, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    proc.stdout!.on('data', (b) => logs.push(String(b)));
    proc.stderr!.on('data', (b) => logs.push(String(b)));
    const p = proc;
    const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
    const urlFor = (db: string) => `postgres://postgres:${password}@127.0.0.1:${port}/${encodeURIComponent(db)}`;
    const url = urlFor('postgres');
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`postgres exited with ${p.exitCode}: ${logs.join('').slice(-2000)}`);
      const c = new pg.Client({ connectionString: url });
      try {
        await c.connect();
        await c.query('SELECT 1');
        await c.end();
        break;
      } catch (err) {
        await c.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections in 30s: ${(err as Error).message}\n${logs.join('').slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    let stopped = false;
    return {
      url,
      port,
      password,
      binDir,
      urlFor,
      dataDir: data,
      log: () => logs.join(''),
      async createDatabase(name, sql) {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          await c.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
        } finally {
          await c.end();
        }
        const dbUrl = urlFor(name);
        if (sql) {
          const d = new pg.Client({ connectionString: dbUrl });
          await d.connect();
          try {
            await d.query(sql);
          } finally {
            await d.end();
          }
        }
        return dbUrl;
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        if (p.exitCode === null) {
          p.kill('SIGINT'); // fast shutdown: roll back open transactions, disconnect clients
          const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (proc && proc.exitCode === null) proc.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
