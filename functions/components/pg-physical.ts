// Physical base backups of a self-managed PostgreSQL and point-in-time restore
// with the WAL archived into the vault (components/pg-wal.ts: archive_command
// = memvault wal-push). The postgres driver takes this path for a component with
// `continuous:` (method physical).
//
// Backup: `pg_basebackup -D - -Ft -X none -c fast` streams the cluster as one
// tar through the backup writer (chunked as it arrives: memory does not grow
// with the cluster). WAL is not in the tar: it comes from the archive. While
// the tar streams by, its backup_label (start WAL location, timeline, label)
// and the tail of its backup_manifest (WAL-Ranges: the end location) are
// picked out; the manifest records them with the segment size, the server's
// bootstrap superuser and its databases. The backup is done when the segment
// holding the end location is archived in the vault (a base backup whose WAL
// never arrives could not be restored), and its `endedAt` is after that.
//
// Restore to a time T (or the latest):
//   1. the newest base backup whose end is at or before T (none: an error
//      naming the first one);
//   2. the WAL plan, from the archived names only: the base's timeline, every
//      segment from the start segment on, contiguous, up to the first one
//      archived after T (or all there are). A segment missing below one that is
//      there is an error naming it (not an earlier state); so is one the base
//      backup itself needs (up to its end);
//   3. the tar is unpacked into the empty target directory (names checked,
//      nothing outside it, the entry's SHA-256 checked at the end), checked
//      with pg_verifybackup when installed;
//   4. recovery.signal, and in postgresql.auto.conf: restore_command = this
//      memvault's wal-fetch for the component and vault, recovery_target_time =
//      T with recovery_target_action = promote (--latest: no target; a base
//      chosen with --backup ID: recovery_target = immediate, its end),
//      recovery_target_timeline = current;
//   5. a private postgres (unix socket in a 0700 directory, trust for local
//      connections only through its own hba file, no TCP, archive_mode off so
//      nothing is archived from the restore) replays and promotes; memvault waits
//      for pg_is_in_recovery() = false, then stops it (fast shutdown) and puts
//      postgresql.auto.conf back as it was: the target is a stopped, promoted
//      data directory for the operator to start. When T lies after the last
//      commit in the archive, PostgreSQL ends recovery "before the target":
//      with the plan's WAL all replayed, the state at T is that end state, and
//      recovery is run again without a target.
//   Validation starts the restored directory once more the same private way:
//   it must answer, not be in recovery, and hold every database of the backup.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import type { Vault } from '../core/vault.ts';
import type { Entry } from '../core/manifest.ts';
import { readEntry } from '../core/writer.ts';
import { withEntries } from '../core/entry-log.ts';
import { listShipped, type PgObjectName } from '../core/continuous.ts';
import { walFetchObject } from './pg-wal.ts';
import { IntegrityError, PermanentError, UsageError, errorMessage } from '../core/errors.ts';
import type { DriverBackupContext, DriverRestoreContext, DriverRestoreResult, DriverValidateContext, ValidationCheck, ValidationReport } from './types.ts';
import { report } from './types.ts';
import { type PhysicalMeta, parseLsn, segmentName, segmentOf, planWal } from './pg-physical-plan.ts';


// ---------------------------------------------------------------- tar (ustar, as pg_basebackup writes it)

interface TarHeader { name: string; size: number; type: string; mode: number; link: string }

function tarNumber(b: Buffer): number {
  if (b[0] & 0x80) {
    // base-256 (sizes of 8 GiB and more)
    let n = 0n;
    for (let i = 1; i < b.length; i++) n = (n << 8n) | BigInt(b[i]);
    return Number(n);
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim();
  return s ? parseInt(s, 8) : 0;
}

function tarHeader(h: Buffer): TarHeader | null {
  if (h.every((x) => x === 0)) return null;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  if (sum !== tarNumber(h.subarray(148, 156))) throw new IntegrityError('base backup tar: a header fails its checksum');
  const str = (a: number, n: number) => h.subarray(a, a + n).toString('utf8').replace(/\0.*$/s, '');
  const prefix = h.subarray(257, 263).toString('latin1').startsWith('ustar') ? str(345, 155) : '';
  const name = prefix ? `${prefix}/${str(0, 100)}` : str(0, 100);
  return { name, size: tarNumber(h.subarray(124, 136)), type: String.fromCharCode(h[156] || 0x30), mode: tarNumber(h.subarray(100, 108)), link: str(157, 100) };
}

type TarEvent = { kind: 'header'; h: TarHeader } | { kind: 'data'; h: TarHeader; data: Buffer } | { kind: 'end'; h: TarHeader };

/** A tar parser fed buffer by buffer: headers, file data as it comes, ends of files. */
export class TarParser {
  private buf: Buffer = Buffer.alloc(0);
  private cur: TarHeader | null = null;
  private left = 0; // data bytes of cur still to come
  private pad = 0; // padding after them
  ended = false;

  *push(b: Buffer): Generator<TarEvent> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, b]) : b;
    for (;;) {
      if (this.ended) { this.buf = Buffer.alloc(0); break; }
      if (this.cur) {
        if (this.left > 0) {
          if (this.buf.length === 0) break;
          const n = Math.min(this.left, this.buf.length);
          const data = this.buf.subarray(0, n);
          this.buf = this.buf.subarray(n);
          this.left -= n;
          yield { kind: 'data', h: this.cur, data };
          continue;
        }
        if (this.buf.length < this.pad) break;
        this.buf = this.buf.subarray(this.pad);
        const h = this.cur;
        this.cur = null;
        yield { kind: 'end', h };
        continue;
      }
      if (this.buf.length < 512) break;
      const h = tarHeader(this.buf.subarray(0, 512));
      this.buf = this.buf.subarray(512);
      if (!h) { this.ended = true; continue; }
      this.cur = h;
      this.left = h.type === '0' || h.type === '\0' ? h.size : 0;
      this.pad = (512 - (this.left % 512)) % 512;
      yield { kind: 'header', h };
    }
    // Keep only the few bytes of an incomplete header, not the caller's buffer.
    if (this.buf.length) this.buf = Buffer.from(this.buf);
  }

  finish(): void {
    if (!this.ended) throw new IntegrityError('base backup tar: cut short (no end-of-archive marker)');
  }
}

/**
 * Passes pg_basebackup's tar through unchanged and picks out backup_label and
 * the last 8 KiB of backup_manifest (its WAL-Ranges) on the way.
 */
async function* observeTar(src: AsyncIterable<Buffer>, seen: { label?: string; manifestTail?: string }): AsyncGenerator<Buffer> {
  const p = new TarParser();
  let label = '';
  let tail = '';
  for await (const b of src) {
    for (const ev of p.push(b)) {
      if (ev.kind !== 'data') continue;
      if (ev.h.name === 'backup_label') label += ev.data.toString('utf8');
      else if (ev.h.name === 'backup_manifest') tail = (tail + ev.data.toString('utf8')).slice(-8192);
    }
    yield b;
  }
  p.finish();
  seen.label = label || undefined;
  seen.manifestTail = tail || undefined;
}

// ---------------------------------------------------------------- binaries

/**
 * A PostgreSQL program of the server's major version: in `binDir` when set,
 * else /usr/lib/postgresql/<major>/bin, else on PATH when its version matches.
 * pg_basebackup may be newer than the server; postgres must be the same major.
 */
export function findPgBinary(tool: string, major: number, binDir?: string, o: { newerOk?: boolean } = {}): string {
  const versionOf = (bin: string) => {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    const m = /(\d+)(?:\.\d+)?/.exec(r.stdout ?? '');
    return r.status === 0 && m ? Number(m[1]) : undefined;
  };
  const fits = (v: number | undefined) => v !== undefined && (v === major || (o.newerOk === true && v > major));
  const tried: string[] = [];
  const candidates: string[] = [];
  if (binDir) candidates.push(path.join(binDir, tool));
  else {
    const root = '/usr/lib/postgresql';
    candidates.push(path.join(root, String(major), 'bin', tool));
    if (o.newerOk && existsSync(root)) {
      for (const v of readdirSync(root).filter((d) => Number(d) > major).sort((a, b) => Number(a) - Number(b))) candidates.push(path.join(root, v, 'bin', tool));
    }
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) if (dir) candidates.push(path.join(dir, tool));
  }
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    const v = versionOf(c);
    if (fits(v)) return c;
    tried.push(`${c} (version ${v ?? '?'})`);
  }
  throw new PermanentError(`${tool} of PostgreSQL ${major}${o.newerOk ? ' or newer' : ''} not found${tried.length ? ` (found ${tried.join(', ')})` : ''}; install the PostgreSQL ${major} server package or set pgBinDir`);
}

/** PostgreSQL refuses to run as root; so do restores of physical backups (they run a server). */
function refuseRoot(component: string): void {
  if (process.getuid?.() === 0) {
    throw new UsageError(`${component}: a physical PostgreSQL restore runs a postgres server, which refuses to run as root; run memvault as the user PostgreSQL runs as (e.g. sudo -u postgres memvault restore ...)`);
  }
}

// ---------------------------------------------------------------- backup

export interface PhysicalBackupInput {
  component: string;
  /** libpq environment of the source (pgToolEnv). */
  env: NodeJS.ProcessEnv;
  db: pg.Client;
  source: string;
  database: string;
  binDir?: string;
  /** How long to wait for the end segment to reach the vault. @default 300 s */
  archiveWaitMs?: number;
}

function labelField(label: string, field: string): string | undefined {
  return new RegExp(`^${field}: (.*)$`, 'm').exec(label)?.[1]?.trim();
}

export async function physicalBackup(ctx: DriverBackupContext<unknown>, i: PhysicalBackupInput): Promise<{ entries: Entry[]; meta: PhysicalMeta; warnings: string[] }> {
  const info = (await i.db.query<{ v: string; seg: string; archive: string; su: string; rec: boolean }>(
    `SELECT current_setting('server_version_num') AS v, (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg,
            current_setting('archive_mode') AS archive, (SELECT rolname FROM pg_roles WHERE oid = 10) AS su, pg_is_in_recovery() AS rec`)).rows[0];
  if (info.archive === 'off') {
    throw new PermanentError(`${i.component}: ${i.source} has archive_mode = off; a physical base backup is restored with the WAL archived after it: set archive_mode = on and archive_command = 'memvault wal-push --config FILE --component ${i.component} %p %f' (see README, "Continuous protection")`);
  }
  const databases = (await i.db.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1')).rows.map((r) => r.datname);
  const major = Math.floor(Number(info.v) / 10000);
  const segSize = Number(info.seg);
  const bin = findPgBinary('pg_basebackup', major, i.binDir, { newerOk: true });
  const vault = ctx.writer.vault;
  const startedAt = new Date();
  const label = `memvault ${i.component} ${startedAt.toISOString()}`;
  const child: ChildProcess = spawn(bin, ['-D', '-', '-F', 't', '-X', 'none', '-c', 'fast', '--no-password', '--label', label], { env: i.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b) => { stderr = (stderr + String(b)).slice(-8000); });
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => (code === 0 ? resolve() : reject(new PermanentError(`${i.component}: pg_basebackup failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`))));
  });
  done.catch(() => undefined);
  const seen: { label?: string; manifestTail?: string } = {};
  let r;
  try {
    r = await ctx.writer.writeStream(observeTar(child.stdout as AsyncIterable<Buffer>, seen));
  } catch (err) {
    // pg_basebackup failing (no REPLICATION right, pg_hba, version) ends the tar early: its own
    // message says why, so it wins when it exits by itself; otherwise the writer's error, and stop it.
    const own = await Promise.race([done.then(() => null, (e: unknown) => e), new Promise((res) => setTimeout(() => res(undefined), 2000))]);
    if (own) throw own;
    child.kill('SIGTERM');
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  if (!seen.label) throw new IntegrityError(`${i.component}: pg_basebackup's tar has no backup_label`);
  const start = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(seen.label)?.[1];
  const timeline = Number(labelField(seen.label, 'START TIMELINE'));
  const range = /"Timeline":\s*(\d+),\s*"Start-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)",\s*"End-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)"/.exec(seen.manifestTail ?? '');
  if (!start || !Number.isInteger(timeline) || !range) {
    throw new IntegrityError(`${i.component}: cannot read the WAL range of the base backup (backup_label ${JSON.stringify(seen.label.slice(0, 200))}; backup_manifest ${range ? 'ok' : 'without WAL-Ranges'})`);
  }
  const endLsn = range[3];
  const startSegment = segmentName(timeline, segmentOf(parseLsn(start), segSize), segSize);
  // The end location is the first byte after the backup's last record: a segment boundary belongs to the one before.
  const endSegment = segmentName(timeline, segmentOf(parseLsn(endLsn) - 1n, segSize), segSize);
  // Done when the segment with the backup's end is in the vault: its restore needs every segment from start to end.
  const deadline = Date.now() + (i.archiveWaitMs ?? 300_000);
  for (;;) {
    const { pg: archived } = await listShipped(vault, i.component);
    if (archived.some((p) => p.file === endSegment)) break;
    if (Date.now() > deadline) {
      const st = (await i.db.query<{ w: string | null; f: string | null; n: string }>('SELECT last_archived_wal AS w, last_failed_wal AS f, failed_count::text AS n FROM pg_stat_archiver').catch(() => ({ rows: [] }))).rows[0];
      throw new PermanentError(`${i.component}: WAL segment ${endSegment}, which the base backup ends in, was not archived into ${vault.storage.url} (wal/${i.component}/pg/) within ${Math.round((i.archiveWaitMs ?? 300_000) / 1000)} s; check that archive_command is 'memvault wal-push --config FILE --component ${i.component} %p %f'${st ? ` (pg_stat_archiver: last archived ${st.w ?? 'none'}, last failed ${st.f ?? 'none'}, ${st.n} failures)` : ''}`);
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  const endedAt = new Date();
  const meta: PhysicalMeta = {
    method: 'physical', format: 'memvault-pg-physical/1', source: i.source, database: i.database, serverVersion: info.v,
    label, timeline, startLsn: start, endLsn, startSegment, endSegment, walSegmentSize: segSize,
    startedAt: startedAt.toISOString(), endedAt: endedAt.toISOString(), superuser: info.su, databases, backupLabel: seen.label,
  };
  ctx.log.info('postgres base backup taken', { component: i.component, startLsn: start, endLsn, timeline, bytes: r.size });
  return { entries: [{ path: 'base.tar', type: 'file', mode: 0o600, size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { format: 'pg_basebackup-tar' } }], meta, warnings: [] };
}

// ---------------------------------------------------------------- restore

/** The memvault command that wal-fetch runs as restore_command (this installation's launcher). */
export function memvaultCommand(): string[] {
  const launcher = path.resolve(import.meta.dirname, '../../cli/memvault.mjs');
  if (!existsSync(launcher)) throw new PermanentError(`the memvault launcher ${launcher} is not there; a physical PostgreSQL restore needs the memvault CLI for restore_command`);
  return [process.execPath, launcher];
}

const sq = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
/** A postgresql.conf string: backslashes and quotes escaped (its parser reads both). */
const confString = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;

/** Unpacks the base backup's tar into `dir` (which must be empty), checking names and the entry's checksum. */
async function unpack(vault: Vault, component: string, e: Entry, dir: string): Promise<number> {
  const p = new TarParser();
  const root = path.resolve(dir);
  let fh: fs.FileHandle | null = null;
  let bytes = 0;
  const target = (name: string) => {
    const rel = path.posix.normalize(name.replace(/^\.\//, '').replace(/\/+$/, ''));
    if (!rel || rel === '.' || rel.startsWith('../') || rel === '..' || path.posix.isAbsolute(rel)) throw new IntegrityError(`${component}: base backup tar: unsafe name ${JSON.stringify(name)}`);
    return path.join(root, rel);
  };
  try {
    for await (const b of readEntry(vault, e)) {
      for (const ev of p.push(b)) {
        if (ev.kind === 'header') {
          if (ev.h.type === '5' && /^(\.\/?)?$/.test(ev.h.name)) continue; // the archive's root: the target itself
          const to = target(ev.h.name);
          if (ev.h.type === '5') await fs.mkdir(to, { recursive: true, mode: 0o700 });
          else if (ev.h.type === '0' || ev.h.type === '\0') {
            await fs.mkdir(path.dirname(to), { recursive: true, mode: 0o700 });
            fh = await fs.open(to, 'wx', ev.h.mode & 0o600 ? ev.h.mode & 0o777 : 0o600);
          } else {
            throw new IntegrityError(`${component}: base backup tar: ${ev.h.name} is of type ${JSON.stringify(ev.h.type)} (a tablespace link?); backups with tablespaces outside the data directory are not supported`);
          }
        } else if (ev.kind === 'data') {
          await fh!.write(ev.data);
          bytes += ev.data.length;
        } else if (fh) {
          await fh.close();
          fh = null;
        }
      }
    }
    p.finish();
  } finally {
    await fh?.close().catch(() => undefined);
  }
  await fs.chmod(root, 0o700);
  return bytes;
}

interface Server {
  child: ChildProcess;
  /** WAL files the server said it restored from the archive ("restored log file ... from archive"). */
  restored: Set<string>;
  socketDir: string;
  port: number;
  log(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts postgres on `dataDir` privately: unix socket in a fresh 0700 directory, local trust through its own hba file, no TCP, no archiving. */
async function startPrivate(postgres: string, dataDir: string, restored = new Set<string>()): Promise<Server> {
  const socketDir = await fs.mkdtemp(path.join(os.tmpdir(), 'memvault-pgr-'));
  await fs.chmod(socketDir, 0o700);
  const hba = path.join(socketDir, 'pg_hba.conf');
  await fs.writeFile(hba, 'local all all trust\n', { mode: 0o600 });
  const port = await freePort();
  const child = spawn(postgres, [
    '-D', dataDir, '-p', String(port), '-k', socketDir, '-c', 'listen_addresses=', '-c', `hba_file=${hba}`,
    '-c', 'archive_mode=off', '-c', 'logging_collector=off', '-c', 'log_destination=stderr', '-c', 'log_min_messages=warning', '-c', 'hot_standby=on',
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MEMVAULT_LOG: 'silent' } });
  let log = '';
  let partial = '';
  const keep = (b: Buffer) => {
    log = (log + String(b)).slice(-200_000);
    const lines = (partial + String(b)).split('\n');
    partial = lines.pop()!.slice(-1000);
    for (const l of lines) {
      const m = /restored log file "([0-9A-F]{24})" from archive/.exec(l);
      if (m) restored.add(m[1]);
    }
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const server: Server = {
    child, restored, socketDir, port, log: () => log, exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT'); // fast shutdown: a clean checkpoint, then exit
        const t = setTimeout(() => child.kill('SIGKILL'), 120_000);
        await exited;
        clearTimeout(t);
      }
      await fs.rm(socketDir, { recursive: true, force: true });
    },
  };
  return server;
}

async function connectPrivate(s: Server, user: string, database: string): Promise<pg.Client> {
  const { default: pgLib } = await import('pg');
  const c = new pgLib.Client({ host: s.socketDir, port: s.port, user, database, application_name: 'memvault' });
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (err) {
    await c.end().catch(() => undefined);
    throw err;
  }
  return c;
}

/** Lines of the server log that say why recovery stopped or failed (and what wal-fetch said). */
function logTail(log: string): string {
  return log.split("\n").filter((l) => /FATAL|PANIC|ERROR|memvault|damaged|SHA-256|not archived|parameter|syntax/.test(l)).slice(-8).join(' | ') || log.trim().split('\n').slice(-5).join(' | ');
}

type RecoveryOutcome = { promoted: true; lastCommit: string | null } | { promoted: false; beforeTarget: boolean; log: string };

/** Runs archive recovery on `dataDir` (recovery.signal and settings written by the caller) until promoted or the server stops. */
async function runRecovery(postgres: string, dataDir: string, meta: PhysicalMeta, database: string, restored: Set<string>): Promise<RecoveryOutcome> {
  const s = await startPrivate(postgres, dataDir, restored);
  try {
    for (;;) {
      if (s.child.exitCode !== null || s.child.signalCode !== null) {
        const log = s.log();
        return { promoted: false, beforeTarget: /recovery ended before configured recovery target was reached/.test(log), log };
      }
      let c: pg.Client | undefined;
      try {
        c = await connectPrivate(s, meta.superuser, database);
        const r = (await c.query<{ rec: boolean; last: Date | null }>('SELECT pg_is_in_recovery() AS rec, pg_last_xact_replay_timestamp() AS last')).rows[0];
        if (!r.rec) return { promoted: true, lastCommit: r.last ? r.last.toISOString() : null };
      } catch {
        // starting up, or in recovery without hot standby connections yet
      } finally {
        await c?.end().catch(() => undefined);
      }
      await Promise.race([s.exited, new Promise((res) => setTimeout(res, 250))]);
    }
  } finally {
    await s.stop();
  }
}

/** Planned segments fetched ahead of recovery, at most this many waiting in the spool. */
const PREFETCH_SEGMENTS = 8;

/**
 * Fetches the planned segments, in order, into `spool` ahead of the server (each
 * checked as wal-fetch checks it, written under a temporary name and renamed), keeping
 * at most PREFETCH_SEGMENTS there; restore_command moves a spooled file into place and
 * runs wal-fetch only for what is not spooled. So a segment costs a rename, not a CLI
 * start. A prefetch failure is not an error here: wal-fetch then reports it to the server.
 */
function prefetch(vault: Vault, component: string, segments: PgObjectName[], spool: string, restored: Set<string>, signal: AbortSignal): Promise<void> {
  return (async () => {
    for (const seg of segments) {
      if (signal.aborted) return;
      if (restored.has(seg.file)) continue;
      for (;;) {
        if (signal.aborted) return;
        const waiting = (await fs.readdir(spool)).filter((f) => !f.startsWith('.'));
        // Spooled files recovery went past (it fetched them itself) are dropped.
        for (const f of waiting) if (restored.has(f)) await fs.rm(path.join(spool, f), { force: true });
        if (waiting.filter((f) => !restored.has(f)).length < PREFETCH_SEGMENTS) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      try {
        await walFetchObject(vault, component, seg, path.join(spool, seg.file));
      } catch {
        return;
      }
    }
  })().catch(() => undefined);
}

export interface PhysicalRestoreInput {
  /** "latest", "immediate" (the end of the base backup: its consistent point) or an ISO time. */
  until: string;
  /** The config file and vault side wal-fetch reads (restore_command). */
  configFile: string;
  from: 'primary' | 'secondary';
}

export async function physicalRestore(ctx: DriverRestoreContext<{ pgBinDir?: string }>, i: PhysicalRestoreInput): Promise<DriverRestoreResult> {
  refuseRoot(ctx.component);
  const meta = ctx.manifest.driver as unknown as PhysicalMeta;
  const immediate = i.until === 'immediate';
  const until = i.until === 'latest' || immediate ? null : new Date(i.until);
  if (until && Number.isNaN(until.getTime())) throw new UsageError(`${ctx.component}: not a time: ${i.until}`);
  if (until && Date.parse(meta.endedAt) > until.getTime()) {
    throw new UsageError(`${ctx.component}: base backup ${ctx.manifest.id} ended at ${meta.endedAt}, after ${until.toISOString()}; choose an earlier base (restore --at picks one)`);
  }
  const major = Math.floor(Number(meta.serverVersion) / 10000);
  const postgres = findPgBinary('postgres', major, ctx.settings.pgBinDir);
  // The WAL first: a gap is reported before anything is written.
  const plan = await planWal(ctx.vault, ctx.component, meta, until, { toBackupEnd: immediate });
  const dir = path.resolve(ctx.target.dir);
  const existing = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return [] as string[]; throw err; });
  if (existing.length > 0) throw new UsageError(`${ctx.component}: restore target ${dir} is not empty (${existing.slice(0, 5).join(', ')}${existing.length > 5 ? ', ...' : ''}); a PostgreSQL data directory is restored into an empty directory`);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const m = await withEntries(ctx.vault, ctx.manifest);
  const e = m.entries.find((x) => x.path === 'base.tar');
  if (!e) throw new IntegrityError(`${ctx.component}: backup ${ctx.manifest.id} has no base.tar entry`);
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    const bytes = await unpack(ctx.vault, ctx.component, e, dir);
    // pg_verifybackup: every file against the backup's own manifest (WAL comes from the archive: -n).
    const verify = (() => { try { return findPgBinary('pg_verifybackup', major, ctx.settings.pgBinDir, { newerOk: true }); } catch { return null; } })();
    if (verify) {
      const v = spawnSync(verify, ['-n', '-q', dir], { encoding: 'utf8' });
      if (v.status !== 0) throw new IntegrityError(`${ctx.component}: pg_verifybackup rejects the restored base backup ${ctx.manifest.id}: ${(v.stderr || v.stdout).trim().split('\n').slice(0, 5).join(' | ')}`);
    }
    // A data directory whose configuration lived elsewhere (Debian: /etc/postgresql) gets empty files, so it starts.
    for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) {
      if (!existsSync(path.join(dir, f))) await fs.writeFile(path.join(dir, f), `# written by memvault restore: the source's ${f} was not in its data directory\n`, { mode: 0o600 });
    }
    const autoConf = path.join(dir, 'postgresql.auto.conf');
    const original = await fs.readFile(autoConf, 'utf8').catch(() => '');
    const spool = await fs.mkdtemp(path.join(path.dirname(dir), `.memvault-wal-${ctx.component}-`));
    cleanup.push(() => fs.rm(spool, { recursive: true, force: true }));
    const fetchCli = [...memvaultCommand(), 'wal-fetch', '--config', i.configFile, '--from', i.from, '--component', ctx.component].map(sq).join(' ') + ' "%f" "%p"';
    const fetch = `if [ -f ${sq(spool)}/"%f" ]; then mv -f ${sq(spool)}/"%f" "%p"; else ${fetchCli}; fi`;
    const settings = (target: Date | 'immediate' | null) => [
      '', '# memvault restore (removed again after recovery)',
      `restore_command = ${confString(fetch)}`,
      "recovery_target_timeline = 'current'",
      ...(target === 'immediate' ? ["recovery_target = 'immediate'", "recovery_target_action = 'promote'"] : []),
      ...(target instanceof Date ? [`recovery_target_time = ${confString(target.toISOString().replace('T', ' ').replace('Z', '+00'))}`, "recovery_target_action = 'promote'"] : []),
      '',
    ].join('\n');
    const database = meta.databases.includes('postgres') ? 'postgres' : meta.databases[0] ?? 'template1';
    let outcome: RecoveryOutcome | null = null;
    let targetReached = false;
    const restored = new Set<string>();
    const stop = new AbortController();
    const ahead = prefetch(ctx.vault, ctx.component, plan.segments, spool, restored, stop.signal);
    try {
      const runs: (Date | 'immediate' | null)[] = immediate ? ['immediate'] : plan.reachesPast ? [until, null] : [null];
      for (const target of runs) {
        await fs.writeFile(autoConf, original + settings(target), { mode: 0o600 });
        await fs.writeFile(path.join(dir, 'recovery.signal'), '', { mode: 0o600 });
        outcome = await runRecovery(postgres, dir, meta, database, restored);
        targetReached = outcome.promoted && target !== null;
        if (outcome.promoted) break;
        const damaged = outcome.log.split('\n').find((l) => /is damaged|fails its SHA-256|does not hold what its name says/.test(l));
        if (damaged) throw new IntegrityError(`${ctx.component}: recovery stopped: ${damaged.trim()}`);
        // The time lies after the last commit in the archive: the state at it is where the archive ends.
        if (target && outcome.beforeTarget) continue;
        throw new PermanentError(`${ctx.component}: recovery of base backup ${ctx.manifest.id} failed: ${logTail(outcome.log)}`);
      }
    } finally {
      stop.abort();
      await ahead;
      await fs.writeFile(autoConf, original, { mode: 0o600 });
      await fs.rm(path.join(dir, 'recovery.signal'), { force: true });
    }
    if (!outcome?.promoted) throw new PermanentError(`${ctx.component}: recovery of base backup ${ctx.manifest.id} did not finish`);
    if (!targetReached) {
      // Recovery ran to the end of the archive: it must have replayed every planned segment (one gone
      // since the plan, or refused by wal-fetch, would otherwise end it early and silently).
      const skipped = plan.segments.find((p) => !restored.has(p.file));
      if (skipped) throw new IntegrityError(`${ctx.component}: recovery ended without restoring archived WAL segment ${skipped.file} (${skipped.key}); it is missing or unreadable in ${ctx.vault.storage.url} (restore to an earlier time with --at)`, skipped.key);
    }
    // Recovery point: the time itself when the archive reaches past it; else where the archive ends
    // (when its newest segment was archived; every commit before that segment was switched is in it).
    const last = plan.segments.at(-1);
    const archiveEnd = last ? last.time.toISOString() : meta.endedAt;
    const recoveryPoint = immediate ? undefined
      : until && plan.reachesPast ? until.toISOString()
        : [archiveEnd, outcome.lastCommit ?? meta.endedAt].sort().at(-1)!;
    ctx.log.info('postgres point-in-time restore finished', { component: ctx.component, base: ctx.manifest.id, segments: plan.segments.length, recoveryPoint, lastCommit: outcome.lastCommit });
    return { location: dir, bytes, entries: 1, ...(recoveryPoint ? { recoveryPoint } : {}) };
  } catch (err) {
    // No data directory of an unknown state is left behind.
    for (const f of await fs.readdir(dir).catch(() => [] as string[])) await fs.rm(path.join(dir, f), { recursive: true, force: true });
    throw err;
  } finally {
    for (const c of cleanup) await c();
  }
}

// ---------------------------------------------------------------- validation

export async function physicalValidate(ctx: DriverValidateContext<{ pgBinDir?: string }>): Promise<ValidationReport> {
  const meta = ctx.manifest.driver as unknown as PhysicalMeta;
  const checks: ValidationCheck[] = [];
  let s: Server | undefined;
  try {
    refuseRoot(ctx.component);
    const postgres = findPgBinary('postgres', Math.floor(Number(meta.serverVersion) / 10000), ctx.settings.pgBinDir);
    checks.push({ name: 'no recovery.signal left', ok: !existsSync(path.join(ctx.location, 'recovery.signal')) });
    s = await startPrivate(postgres, ctx.location);
    const deadline = Date.now() + 120_000;
    let c: pg.Client | undefined;
    while (!c) {
      if (s.child.exitCode !== null) throw new Error(`the restored server exited: ${logTail(s.log())}`);
      try {
        c = await connectPrivate(s, meta.superuser, meta.databases.includes('postgres') ? 'postgres' : meta.databases[0]);
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((res) => setTimeout(res, 200));
      }
    }
    try {
      const r = (await c.query<{ rec: boolean; v: string }>("SELECT pg_is_in_recovery() AS rec, current_setting('server_version_num') AS v")).rows[0];
      checks.push({ name: 'the restored server answers, out of recovery', ok: !r.rec, expected: false, actual: r.rec });
      const present = (await c.query<{ datname: string }>('SELECT datname FROM pg_database')).rows.map((x) => x.datname);
      const missing = meta.databases.filter((d) => !present.includes(d));
      checks.push({ name: 'every database of the base backup present', ok: missing.length === 0, expected: meta.databases, actual: missing.length ? { missing } : present.sort() });
    } finally {
      await c.end().catch(() => undefined);
    }
    for (const d of meta.databases) {
      let dc: pg.Client | undefined;
      try {
        dc = await connectPrivate(s, meta.superuser, d);
        const n = (await dc.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_class')).rows[0].n;
        checks.push({ name: `database ${d}: its catalog reads`, ok: Number(n) > 0, actual: `${n} relations` });
      } catch (err) {
        checks.push({ name: `database ${d}: its catalog reads`, ok: false, actual: errorMessage(err) });
      } finally {
        await dc?.end().catch(() => undefined);
      }
    }
  } catch (err) {
    checks.push({ name: 'start the restored data directory', ok: false, actual: errorMessage(err) });
  } finally {
    await s?.stop();
  }
  return report(checks);
}
