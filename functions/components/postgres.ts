// postgres: a consistent logical backup of a live PostgreSQL database (RDS,
// Aurora PostgreSQL, self-hosted): schema, data, sequences, indexes,
// constraints and extensions, restorable into an empty database.
//
// Two export methods, one snapshot each:
//   pg_dump  (default where a pg_dump at least as new as the server exists, i.e.
//            the CLI, the local runtime, a container task): memvault opens a
//            REPEATABLE READ READ ONLY transaction, exports its snapshot
//            (pg_export_snapshot) and runs `pg_dump --format=custom
//            --compress=0 --snapshot=ID`, streaming its stdout into the vault.
//            pg_dump covers every object type PostgreSQL has; --compress=0
//            leaves compression to the vault (zstd), so unchanged table data
//            dedups between backups. Restore: pg_restore (stdin) into the
//            target database in one transaction.
//   driver   (pure `pg`, for Lambda where no pg_dump binary exists): the same
//            kind of transaction; the schema is rebuilt from pg_catalog in
//            dependency order (pg-schema.ts: types, functions, sequences with
//            their options, tables, partitions, views, materialized views,
//            constraints, indexes, triggers, rules, policies, comments,
//            privileges) and every table's rows stream out through a cursor in
//            COPY text format, one vault entry per table. Objects the driver
//            path cannot rebuild fail the backup, named (use pg_dump for such
//            databases); objects that need a table tables.include leaves out
//            are left out with a warning. Restore: in one transaction, the
//            schema, rows through COPY FROM STDIN, then keys, indexes and the
//            rest; validation compares the restored schema with the
//            description captured at backup time, besides rows and checksums.
//            An include pattern that matches no table is a ConfigError on both
//            methods, before anything is written.
// In both methods the figures recorded in the manifest (per table: rows,
// content checksum, index and constraint counts; sequences; extensions) are
// computed inside the very snapshot the export reads, so a restore is
// validated against exactly what was exported, while writers keep writing.
// The content checksum is order-independent: the sum over rows of the first
// 64 bits of md5(row::text), computed by the server, so no row leaves it.
import { withEntries } from '../core/entry-log.ts';
import { continuousSchema } from '../core/continuous.ts';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type pg from 'pg';
import type { Driver, DriverBackupContext, DriverMaskContext, DriverRestoreContext, DriverValidateContext, DrillTargets, Masking, ValidationCheck, Logger } from './types.ts';
import { maskPostgres, pgColumnsDigest, pgKeptColumns } from './mask-pg.ts';
import type { TableMaskRule } from '../core/mask.ts';
import { report } from './types.ts';
import type { Entry, Manifest } from '../core/manifest.ts';
import type { Vault } from '../core/vault.ts';
import { readEntry } from '../core/writer.ts';
import { ConfigError, IntegrityError, NotFoundError, PermanentError, RetryableError, UsageError } from '../core/errors.ts';
import { restoreEntriesToDir } from './restore-file.ts';
import { captureSchema, copyIn, dependentViews, describeSchema, schemaDifferences, UnsupportedObjectsError, type SchemaItem } from './pg-schema.ts';
import { SCRATCH_DATABASE, scratchDatabaseName } from './drill.ts';
import { readDatabaseSecret, requireSecretField, SECRET_ARN, SECRET_ARN_MESSAGE } from '../adapters/secrets.ts';
import { physicalBackup, physicalRestore, physicalValidate } from './pg-physical.ts';
import { isPhysical, isPhysicalComponent } from './pg-physical-plan.ts';

// ---------------------------------------------------------------- connection

/** Connection settings shared by the postgres and vector drivers. */
export const pgConnectionShape = {
  /** postgres://user[:password]@host:port/database[?sslmode=require] */
  url: z.string().optional(),
  host: z.string().optional(),
  port: z.number().int().positive().optional(),
  user: z.string().optional(),
  database: z.string().optional(),
  /** Name of an environment variable holding the password (local runtime only: refused for AWS deploys). */
  passwordEnv: z.string().optional(),
  /**
   * Secrets Manager secret, read at run time (the way on AWS). JSON in the RDS
   * layout: "password" (required), and "username", "host", "port", "dbname"
   * filling what url/host/user/database leave out; or a "uri"
   * (postgres://user:password@host:port/db) read the same way.
   */
  secretArn: z.string().regex(SECRET_ARN, SECRET_ARN_MESSAGE).optional(),
  /** TLS: disable | require (encrypted, server certificate not verified) | verify-full. @default from the URL's sslmode, else disable */
  sslmode: z.enum(['disable', 'require', 'verify-full']).optional(),
};

export interface PgConnectionSettings {
  url?: string; host?: string; port?: number; user?: string; database?: string;
  passwordEnv?: string; secretArn?: string; sslmode?: 'disable' | 'require' | 'verify-full';
}

export interface PgConnection {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  sslmode: 'disable' | 'require' | 'verify-full';
}

// pg loads on first use, so configs without a PostgreSQL component never pay
// its memory (the Secrets Manager SDK likewise, in adapters/secrets.ts).
let pgModule: Promise<typeof pg> | undefined;
const pgLib = () => (pgModule ??= import('pg').then((m) => m.default));
/** Tests may replace how the Secrets Manager client is built (functions/adapters/secrets.ts). */
export { setSecretsClientFactory } from '../adapters/secrets.ts';

function parsePgUrl(url: string, field: string): Partial<PgConnection> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${field}: expected a URL like postgres://user@host:5432/db, got "${url.replace(/:[^:@/]*@/, ':***@')}"`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new ConfigError(`${field}: expected a postgres:// URL, got ${u.protocol}//...`);
  }
  const ssl = u.searchParams.get('sslmode');
  return {
    host: u.hostname ? decodeURIComponent(u.hostname) : undefined,
    port: u.port ? Number(u.port) : undefined,
    user: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : undefined,
    sslmode: ssl === 'require' || ssl === 'verify-full' || ssl === 'disable' ? ssl : ssl === 'prefer' || ssl === 'allow' || ssl === null ? undefined : 'require',
  };
}

/**
 * Resolves where and as whom to connect: the URL (or host/port/user/database),
 * then the password from passwordEnv or, at run time, from the Secrets Manager
 * secret (which also fills user, host, port and database when left out).
 */
export async function resolvePgConnection(s: PgConnectionSettings, field: string): Promise<PgConnection> {
  const fromUrl = s.url ? parsePgUrl(s.url, `${field}.url`) : {};
  const c: Partial<PgConnection> = {
    ...fromUrl,
    ...(s.host ? { host: s.host } : {}),
    ...(s.port ? { port: s.port } : {}),
    ...(s.user ? { user: s.user } : {}),
    ...(s.database ? { database: s.database } : {}),
  };
  if (s.passwordEnv) {
    const v = process.env[s.passwordEnv];
    if (v === undefined) throw new ConfigError(`${field}.passwordEnv: environment variable ${s.passwordEnv} is not set`);
    c.password = v;
  }
  if (s.secretArn) {
    // The secret fills what the settings leave out; its password always wins
    // (a URL with a password is refused on AWS, see infra/deploy-config.ts).
    const sf = `${field}.secretArn`;
    const sec = await readDatabaseSecret(s.secretArn, sf);
    const fromUri = sec.uri ? parsePgUrl(sec.uri, `${sf} (its "uri" field)`) : {};
    const password = sec.password ?? fromUri.password;
    if (password === undefined) requireSecretField(sec, 'password', s.secretArn, sf, 'the database password, as in the RDS secret layout; or a "uri" with the password');
    c.password = password;
    const user = sec.username ?? fromUri.user;
    const host = sec.host ?? fromUri.host;
    const port = sec.port ?? fromUri.port;
    const database = sec.dbname ?? fromUri.database;
    if (!c.user && user) c.user = user;
    if (!c.host && host) c.host = host;
    if (!c.port && port) c.port = port;
    if (!c.database && database) c.database = database;
    if (!c.sslmode && fromUri.sslmode) c.sslmode = fromUri.sslmode;
  }
  if (s.sslmode) c.sslmode = s.sslmode;
  if (!c.host) throw new ConfigError(`${field}: set url (postgres://user@host:5432/db) or host`);
  if (!c.database) throw new ConfigError(`${field}: no database named; put it in url or set database`);
  return { host: c.host, port: c.port ?? 5432, user: c.user ?? 'postgres', password: c.password, database: c.database, sslmode: c.sslmode ?? 'disable' };
}

export function pgClientConfig(c: PgConnection, database = c.database): pg.ClientConfig {
  return {
    host: c.host, port: c.port, user: c.user, password: c.password, database,
    ssl: c.sslmode === 'disable' ? false : { rejectUnauthorized: c.sslmode === 'verify-full' },
    application_name: 'memvault',
  };
}

/** Environment for libpq tools (pg_dump, pg_restore): the password never appears on a command line. */
export function pgToolEnv(c: PgConnection, database = c.database): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: c.host, PGPORT: String(c.port), PGUSER: c.user, PGDATABASE: database, PGSSLMODE: c.sslmode, PGAPPNAME: 'memvault', PGCONNECT_TIMEOUT: '30' };
  if (c.password !== undefined) env.PGPASSWORD = c.password;
  else delete env.PGPASSWORD;
  return env;
}

export function describeConnection(c: PgConnection, database = c.database): string {
  return `postgres://${encodeURIComponent(c.user)}@${c.host}:${c.port}/${encodeURIComponent(database)}`;
}

/** Settings every memvault session uses, so text forms (and checksums) do not depend on server defaults. */
const SESSION_SETUP = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; SET client_encoding = 'UTF8'";

function mapPgError(err: unknown, what: string): Error {
  const e = err as { code?: string; message?: string };
  const code = e.code ?? '';
  if (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'ECONNRESET' || code === 'EAI_AGAIN' ||
      code.startsWith('08') || code === '57P03' || code === '53300' || code === '40001' || code === '40P01') {
    return new RetryableError(`${what}: ${e.message}`, { cause: err });
  }
  if (code === '28P01' || code === '28000') return new PermanentError(`${what}: authentication failed: ${e.message}`, { cause: err });
  if (code === '3D000') return new NotFoundError(`${what}: ${e.message}`);
  return err instanceof Error ? err : new Error(String(err));
}

export async function connectPg(c: PgConnection, what: string, database = c.database): Promise<pg.Client> {
  const client = new (await pgLib()).Client(pgClientConfig(c, database));
  client.on('error', () => undefined); // surfaced through the failing query
  try {
    await client.connect();
    await client.query(SESSION_SETUP);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw mapPgError(err, `${what}: connecting to ${describeConnection(c, database)}`);
  }
  return client;
}

/** Every value as the server's text form (no JS conversion, nothing lost). */
export const rawText = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

export function qi(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
export function qname(schema: string, name: string): string {
  return `${qi(schema)}.${qi(name)}`;
}
function ql(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

// ---------------------------------------------------------------- settings

/**
 * components.<name>.drill of postgres and vector: a server (and a role) where a
 * drill may CREATE DATABASE memvault_drill_<component>_<tag> and DROP it after;
 * `database` (or the URL's) is the one it connects to for that. @default database postgres
 */
export const pgDrillSchema = z.object(pgConnectionShape).strict().superRefine((d, ctx) => {
  if (!d.url && !d.host && !d.secretArn) ctx.addIssue({ code: 'custom', message: 'set url (postgres://user@scratch-host:5432/postgres), host or secretArn: the server drills restore into' });
});
export type PgDrillSettings = z.infer<typeof pgDrillSchema>;

export const postgresSchema = z.object({
  ...pgConnectionShape,
  /** Where verify-drill restores this component (a scratch database per run, dropped after). */
  drill: pgDrillSchema.optional(),
  /**
   * auto: pg_dump when a new enough one is installed, else the pure driver path; with
   * `continuous`, physical. physical: pg_basebackup base backups of the whole cluster,
   * restored to any second with the WAL archived by `memvault wal-push` (self-managed
   * PostgreSQL, local runtime; needs `continuous`). @default auto
   */
  method: z.enum(['auto', 'pg_dump', 'driver', 'physical']).default('auto'),
  /** Directory of pg_basebackup and postgres (method physical). @default /usr/lib/postgresql/<server major>/bin, else PATH */
  pgBinDir: z.string().optional(),
  /** Path of pg_dump (and pg_restore next to it). @default newest under /usr/lib/postgresql, else PATH */
  pgDumpPath: z.string().optional(),
  /** Tables to back up, as schema.table globs (* and ?); a pattern without a dot matches the table name in any schema. @default all */
  tables: z.object({
    include: z.array(z.string().min(1, 'expected a schema.table glob, got an empty string')).default([]),
    exclude: z.array(z.string().min(1, 'expected a schema.table glob, got an empty string')).default([]),
  }).default({ include: [], exclude: [] }),
  /** Rows fetched per round trip on the driver path. @default 2000 */
  fetchRows: z.number().int().positive().default(2000),
  /** Continuous protection: WAL archived into the vault (archive_command: memvault wal-push), physical base backups. */
  continuous: continuousSchema.optional(),
}).superRefine((s, ctx) => {
  // One shape: continuous protection of PostgreSQL is physical base backups plus the archived WAL.
  const physical = s.method === 'physical' || (s.method === 'auto' && s.continuous !== undefined);
  if (s.continuous !== undefined && !physical) {
    ctx.addIssue({ code: 'custom', path: ['method'], message: `continuous protection restores a physical base backup and replays the archived WAL, which a ${s.method} backup cannot be: set method: physical (or leave method out)` });
  }
  if (s.method === 'physical' && s.continuous === undefined) {
    ctx.addIssue({ code: 'custom', path: ['continuous'], message: "method physical needs continuous: {} : the base backup is restored with the WAL that archive_command = 'memvault wal-push --config FILE --component NAME %p %f' archives" });
  }
  if (!physical) return;
  if (s.tables.include.length > 0 || s.tables.exclude.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['tables'], message: 'a physical base backup holds the whole cluster: tables cannot be selected (remove tables, or use method pg_dump without continuous)' });
  }
  if (s.drill !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['drill'], message: 'a physical postgres component is drilled in the sandbox directory (a restored data directory and a private server), not on a drill server: remove drill' });
  }
});

export type PostgresSettings = z.infer<typeof postgresSchema>;

// ---------------------------------------------------------------- catalog figures

export interface TableFigures {
  rows: number;
  /** Sum over rows of the first 64 bits of md5(row::text), decimal. */
  checksum: string;
  indexes: number;
  constraints: number;
}

export interface SequenceFigures {
  lastValue: string | null;
  isCalled: boolean;
  /** schema.table.column that uses the sequence (serial or identity), if any. */
  ownedBy?: { schema: string; table: string; column: string };
}

export interface DatabaseFigures {
  tables: Record<string, TableFigures>;
  sequences: Record<string, SequenceFigures>;
  extensions: string[];
}

const USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";
const NOT_EXT = (cls: string, oid: string) => `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${cls}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;

function globToRegExp(glob: string): RegExp {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.');
  return new RegExp(`^${re}$`);
}

export function tableSelected(schema: string, table: string, sel: { include: string[]; exclude: string[] }): boolean {
  const match = (p: string) => (p.includes('.') ? globToRegExp(p).test(`${schema}.${table}`) : globToRegExp(p).test(table));
  if (sel.include.length > 0 && !sel.include.some(match)) return false;
  return !sel.exclude.some(match);
}

export interface TableRef { schema: string; name: string; oid: number }

export async function listTables(db: pg.Client, sel: { include: string[]; exclude: string[] } = { include: [], exclude: [] }): Promise<TableRef[]> {
  // Partitions follow their partitioned table: the selection applies to the root's name.
  const r = await db.query<{ schema: string; name: string; oid: number; rschema: string; rname: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.oid::int8::float8 AS oid, rn.nspname AS rschema, rc.relname AS rname
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid) JOIN pg_namespace rn ON rn.oid = rc.relnamespace
     WHERE c.relkind IN ('r', 'p') AND ${USER_NS} AND ${NOT_EXT('pg_class', 'c.oid')} ORDER BY 1, 2`);
  return r.rows.filter((t) => tableSelected(t.rschema, t.rname, sel)).map((t) => ({ schema: t.schema, name: t.name, oid: t.oid }));
}

/**
 * Every tables.include pattern must match a table of the database: one that
 * matches nothing is a configuration error (a typo would otherwise back up
 * nothing of what was meant, silently).
 */
export async function checkTableSelection(db: pg.Client, sel: { include: string[]; exclude: string[] }, field: string, database: string): Promise<void> {
  if (sel.include.length === 0) return;
  const all = await listTables(db);
  const problems: string[] = [];
  sel.include.forEach((p, i) => {
    if (!all.some((t) => tableSelected(t.schema, t.name, { include: [p], exclude: [] }))) {
      problems.push(`${field}.tables.include.${i}: "${p}" matches no table in database ${database}${all.length ? ` (tables: ${all.slice(0, 8).map((t) => `${t.schema}.${t.name}`).join(', ')}${all.length > 8 ? ', ...' : ''})` : ' (it has no tables)'}`);
    }
  });
  if (problems.length > 0) throw new ConfigError(problems);
}

/** Row counts, checksums, index and constraint counts per table; sequences; extensions. */
export async function databaseFigures(db: pg.Client, tables: TableRef[]): Promise<DatabaseFigures> {
  const out: DatabaseFigures = { tables: {}, sequences: {}, extensions: [] };
  for (const t of tables) {
    const r = await db.query<{ rows: string; checksum: string; indexes: string; constraints: string }>(
      `SELECT count(*)::text AS rows,
              coalesce(sum(('x' || substr(md5(memvault_row_::text), 1, 16))::bit(64)::int8::numeric), 0)::text AS checksum,
              (SELECT count(*) FROM pg_index i WHERE i.indrelid = $1::regclass)::text AS indexes,
              (SELECT count(*) FROM pg_constraint c WHERE c.conrelid = $1::regclass)::text AS constraints
       FROM ONLY ${qname(t.schema, t.name)} AS memvault_row_`, [qname(t.schema, t.name)]);
    const row = r.rows[0];
    out.tables[`${t.schema}.${t.name}`] = { rows: Number(row.rows), checksum: row.checksum, indexes: Number(row.indexes), constraints: Number(row.constraints) };
  }
  const selected = new Set(tables.map((t) => `${t.schema}.${t.name}`));
  const seqs = await db.query<{ schema: string; name: string; last_value: string | null; ots: string | null; otn: string | null; col: string | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, s.last_value::text AS last_value,
            tn.nspname AS ots, t.relname AS otn, a.attname AS col
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
     LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
     LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
     LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE c.relkind = 'S' AND ${USER_NS} AND ${NOT_EXT('pg_class', 'c.oid')} ORDER BY 1, 2`);
  for (const s of seqs.rows) {
    if (s.ots && !selected.has(`${s.ots}.${s.otn}`)) continue;
    out.sequences[`${s.schema}.${s.name}`] = {
      lastValue: s.last_value, isCalled: s.last_value !== null,
      ...(s.ots ? { ownedBy: { schema: s.ots, table: s.otn!, column: s.col! } } : {}),
    };
  }
  out.extensions = (await db.query<{ extname: string }>('SELECT extname FROM pg_extension ORDER BY 1')).rows.map((r) => r.extname);
  return out;
}

/** Counts user objects; a restore target must have none unless forced. */
async function userObjectCount(db: pg.Client): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ${USER_NS} AND ${NOT_EXT('pg_class', 'c.oid')}`);
  return Number(r.rows[0].n);
}

// ---------------------------------------------------------------- pg_dump discovery

export function findPgTool(tool: 'pg_dump' | 'pg_restore', explicit?: string): string | undefined {
  if (explicit) {
    const p = tool === 'pg_dump' ? explicit : path.join(path.dirname(explicit), 'pg_restore');
    return existsSync(p) ? p : undefined;
  }
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', tool))).sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return path.join(root, versions[0], 'bin', tool);
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, tool))) return path.join(dir, tool);
  }
  return undefined;
}

function toolMajor(bin: string): number | undefined {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  const m = /(\d+)(?:\.\d+)?/.exec(r.stdout ?? '');
  return r.status === 0 && m ? Number(m[1]) : undefined;
}

/** Spawns a tool and collects stderr; rejects with the tail of stderr on a non-zero exit. */
function runTool(bin: string, args: string[], env: NodeJS.ProcessEnv, stdin?: AsyncIterable<Buffer>) {
  const child = spawn(bin, args, { env, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b) => { stderr = (stderr + String(b)).slice(-8000); });
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new PermanentError(`${path.basename(bin)} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`));
    });
  });
  done.catch(() => undefined);
  let fed: Promise<void> = Promise.resolve();
  if (stdin) {
    fed = (async () => {
      const sink = child.stdin!;
      sink.on('error', () => undefined); // EPIPE when the tool dies early; its exit status tells why
      for await (const b of stdin) {
        if (child.exitCode !== null) break;
        if (!sink.write(b)) await new Promise<void>((r) => { sink.once('drain', r); child.once('close', r); });
      }
      sink.end();
    })();
  }
  return { child, stdout: child.stdout!, done, fed, stderr: () => stderr };
}

// ---------------------------------------------------------------- driver-path schema

export interface DriverSchema {
  /** 2: labelled statements (pg-schema.ts); 1 (absent): plain statements, no final section. */
  version?: 2;
  /** Before data: schemas, extensions, types, functions, sequences, tables, views (dependency order). */
  pre: (string | SchemaItem)[];
  /** After data: constraints, indexes, foreign keys, triggers, rules, policies. */
  post: (string | SchemaItem)[];
  /** setval() calls, read after the data. */
  sequences: string[];
  /** After the sequences: materialized views refreshed, comments, privileges. */
  final?: SchemaItem[];
}

const asItem = (s: string | SchemaItem): SchemaItem => (typeof s === 'string' ? { label: s.slice(0, 60), sql: s } : s);

interface ColumnInfo { name: string; generated: string; identity: string }

async function tableColumns(db: pg.Client, oid: number): Promise<ColumnInfo[]> {
  const r = await db.query<ColumnInfo>(
    `SELECT a.attname AS name, a.attidentity AS identity, a.attgenerated AS generated FROM pg_attribute a
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, [oid]);
  return r.rows;
}

async function sequenceSetvals(db: pg.Client, figures: DatabaseFigures): Promise<string[]> {
  const out: string[] = [];
  for (const [name] of Object.entries(figures.sequences)) {
    const [schema, ...rest] = name.split('.');
    const q = qname(schema, rest.join('.'));
    const r = await db.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM ${q}`);
    out.push(`SELECT pg_catalog.setval(${ql(q)}, ${r.rows[0].last_value}, ${r.rows[0].is_called})`);
  }
  return out;
}

// ---------------------------------------------------------------- COPY text format

export function copyEscape(v: string | null): string {
  if (v === null) return '\\N';
  return v.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

const UNESCAPE: Record<string, string> = { n: '\n', r: '\r', t: '\t', b: '\b', f: '\f', v: '\v', '\\': '\\' };
export function copyUnescape(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  return field.replace(/\\(.)/g, (_m, c: string) => UNESCAPE[c] ?? c);
}

/** Splits a byte stream into text lines (UTF-8 safe: splits on the \n byte). */
export async function* lines(src: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const b of src) {
    let buf = rest.length ? Buffer.concat([rest, b]) : b;
    let i: number;
    while ((i = buf.indexOf(0x0a)) >= 0) {
      yield buf.subarray(0, i).toString('utf8');
      buf = buf.subarray(i + 1);
    }
    rest = Buffer.from(buf);
  }
  if (rest.length > 0) yield rest.toString('utf8');
}

/** Streams a table's rows in COPY text format through a cursor (inside the caller's snapshot). */
async function* copyOut(db: pg.Client, t: TableRef, columns: string[], fetchRows: number, counter: { rows: number }): AsyncGenerator<Buffer> {
  const cursor = `memvault_c_${t.oid}`;
  await db.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${columns.map(qi).join(', ')} FROM ONLY ${qname(t.schema, t.name)}`);
  try {
    for (;;) {
      const r = await db.query({ text: `FETCH ${fetchRows} FROM ${cursor}`, rowMode: 'array', types: rawText });
      if (r.rows.length === 0) break;
      let s = '';
      for (const row of r.rows as (string | null)[][]) s += row.map(copyEscape).join('\t') + '\n';
      counter.rows += r.rows.length;
      yield Buffer.from(s, 'utf8');
    }
  } finally {
    await db.query(`CLOSE ${cursor}`);
  }
}

// ---------------------------------------------------------------- restore helpers

export interface PgRestoreOptions {
  /**
   * The database to restore into (created when missing), as connection settings
   * (url, or host/port/user/database, with passwordEnv or secretArn). Without
   * one, dump files are written under target.dir.
   */
  connection?: PgConnectionSettings;
  /** Where the connection settings came from, for messages. */
  field: string;
  /**
   * GRANTs, REVOKEs and default privileges restored (true, the default), or left out
   * (false: for a target without the source's roles); validation then skips them.
   */
  privileges: boolean;
  /** Restore into a database that already holds objects. @default false */
  force?: boolean;
}

/** Restore target option fields of postgres and vector that name the target database. */
export const PG_TARGET_FIELDS = 'url (postgres://user@host:5432/db), or host/port/user/database, with passwordEnv or secretArn';

const CONNECTION_KEYS = ['url', 'host', 'port', 'user', 'database', 'passwordEnv', 'secretArn', 'sslmode'] as const;

export function isPgNetworkTarget(o: Record<string, unknown> | undefined): boolean {
  return !!o && (o.scratchDatabase !== undefined || o.url !== undefined || o.host !== undefined || o.secretArn !== undefined);
}

/**
 * The target of a restore: the options' own connection settings, or (a drill:
 * `scratchDatabase`) the component's drill server with the run's scratch
 * database, so no connection detail travels in the execution input.
 */
export function restoreOptions(target: { options?: Record<string, unknown> }, drill?: PgDrillSettings): PgRestoreOptions {
  const o = target.options ?? {};
  const force = o.force === true;
  if (o.privileges !== undefined && typeof o.privileges !== 'boolean') throw new UsageError(`restore target option privileges: expected true or false, got ${JSON.stringify(o.privileges)}`);
  const privileges = o.privileges !== false;
  if (o.scratchDatabase !== undefined) {
    if (typeof o.scratchDatabase !== 'string' || !SCRATCH_DATABASE.test(o.scratchDatabase)) throw new UsageError(`restore target option scratchDatabase: expected a drill's memvault_drill_<component>_<tag>, got ${JSON.stringify(o.scratchDatabase)}`);
    if (!drill) throw new UsageError('restore target option scratchDatabase: the component has no drill setting (components.<name>.drill)');
    return { connection: { ...drill, database: o.scratchDatabase }, field: 'drill', force, privileges };
  }
  if (!isPgNetworkTarget(o)) return { field: 'restore target', force, privileges };
  const parsed = z.object(pgConnectionShape).safeParse(Object.fromEntries(CONNECTION_KEYS.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])));
  if (!parsed.success) throw new UsageError(`restore target options: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { connection: parsed.data, field: 'restore target', force, privileges };
}

/** Labels of the schema description (pg-schema.ts) that are privileges: left out of restores with privileges: false. */
export const isPrivilegeLabel = (label: string) => /^(default )?privileges /.test(label);

/** Drill target options: the run's scratch database on the drill server. */
export function pgDrillTarget(component: string, drill: PgDrillSettings | undefined, tag: string): Record<string, unknown> | undefined {
  return drill ? { scratchDatabase: scratchDatabaseName(component, tag) } : undefined;
}

/** Drops a drill's scratch database (only a memvault_drill_* one), closing its sessions first. */
export async function dropScratchDatabase(component: string, drill: PgDrillSettings | undefined, options: Record<string, unknown> | undefined): Promise<string> {
  const name = options?.scratchDatabase;
  if (typeof name !== 'string' || !SCRATCH_DATABASE.test(name)) throw new UsageError(`${component}: drill cleanup: target option scratchDatabase ${JSON.stringify(name)} is not a drill's scratch database`);
  if (!drill) throw new UsageError(`${component}: drill cleanup: components.${component}.drill is not set`);
  const field = `components.${component}.drill`;
  // The drill server's own database (settings, URL or secret), else "postgres".
  const conn = await resolvePgConnection(drill, field).catch((err) => {
    if (err instanceof ConfigError && /no database named/.test(err.message)) return resolvePgConnection({ ...drill, database: 'postgres' }, field);
    throw err;
  });
  const admin = await connectPg(conn, `${component}: drill cleanup`);
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${qi(name)} WITH (FORCE)`);
  } catch (err) {
    throw mapPgError(err, `${component}: drill cleanup: DROP DATABASE ${name} on ${describeConnection(conn)}`);
  } finally {
    await admin.end().catch(() => undefined);
  }
  return `database ${name} on ${describeConnection(conn, name)} dropped`;
}

/** Connects to the target database, creating it when it does not exist yet. */
export async function openTarget(c: PgConnection, what: string): Promise<pg.Client> {
  try {
    return await connectPg(c, what);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    const admin = await connectPg(c, what, 'postgres').catch(() => connectPg(c, what, 'template1'));
    try {
      await admin.query(`CREATE DATABASE ${qi(c.database)}`);
    } finally {
      await admin.end();
    }
    return connectPg(c, what);
  }
}


async function readJsonEntry<T>(vault: Vault, e: Entry): Promise<T> {
  const parts: Buffer[] = [];
  for await (const b of readEntry(vault, e)) parts.push(b);
  return JSON.parse(Buffer.concat(parts).toString('utf8')) as T;
}

function rethrowIntegrity(component: string, err: unknown): never {
  if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${err.message}`, err.objectKey);
  throw err;
}

// ---------------------------------------------------------------- the driver

interface TableEntryMeta { schema: string; table: string; columns: string[]; overriding: boolean; rows: number }

function pickMethod(s: PostgresSettings, serverMajor: number, log: Logger): { method: 'pg_dump' | 'driver'; pgDump?: string } {
  if (s.method === 'driver') return { method: 'driver' };
  const bin = findPgTool('pg_dump', s.pgDumpPath);
  const major = bin ? toolMajor(bin) : undefined;
  if (bin && major !== undefined && major >= serverMajor) return { method: 'pg_dump', pgDump: bin };
  const why = !bin ? 'no pg_dump installed' : `pg_dump ${major ?? '?'} is older than the server (${serverMajor})`;
  if (s.method === 'pg_dump') throw new PermanentError(`method pg_dump: ${why}; install the PostgreSQL ${serverMajor} client or set pgDumpPath`);
  log.info('postgres: using the driver path', { reason: why });
  return { method: 'driver' };
}

export const postgresDriver: Driver<PostgresSettings> & DrillTargets<PostgresSettings> & Masking<PostgresSettings> = {
  kind: 'postgres',
  mode: 'stream',
  schema: postgresSchema,
  networkTargetFields: PG_TARGET_FIELDS,
  isNetworkTarget: isPgNetworkTarget,
  // A physical component is drilled in the sandbox directory (no drill server).
  drillTarget: (ctx) => (isPhysicalComponent(ctx.settings) ? undefined : pgDrillTarget(ctx.component, ctx.settings.drill, ctx.tag)),
  cleanupTarget: (ctx) => dropScratchDatabase(ctx.component, ctx.settings.drill, ctx.target.options),

  async backup(ctx: DriverBackupContext<PostgresSettings>) {
    const field = `components.${ctx.component}`;
    const conn = await resolvePgConnection(ctx.settings, field);
    const db = await connectPg(conn, ctx.component);
    const warnings: string[] = [];
    if (isPhysicalComponent(ctx.settings)) {
      try {
        const r = await physicalBackup(ctx, { component: ctx.component, env: pgToolEnv(conn), db, source: describeConnection(conn), database: conn.database, binDir: ctx.settings.pgBinDir });
        return { entries: r.entries, meta: r.meta as unknown as Record<string, unknown>, warnings: r.warnings };
      } catch (err) {
        throw mapPgError(err, `${ctx.component}: base backup of ${describeConnection(conn)}`);
      } finally {
        await db.end().catch(() => undefined);
      }
    }
    try {
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const info = (await db.query<{ v: string; snap: string }>("SELECT current_setting('server_version_num') AS v, pg_export_snapshot() AS snap")).rows[0];
      const serverMajor = Math.floor(Number(info.v) / 10000);
      await checkTableSelection(db, ctx.settings.tables, field, conn.database);
      let tables = await listTables(db, ctx.settings.tables);
      if (tables.length === 0) warnings.push(`${conn.database}: no table matches the configured tables (include/exclude)`);
      const { method, pgDump } = pickMethod(ctx.settings, serverMajor, ctx.log);
      const filtered = ctx.settings.tables.include.length > 0 || ctx.settings.tables.exclude.length > 0;
      const entries: Entry[] = [];
      let figures: DatabaseFigures;
      let description: Record<string, string> | undefined;

      if (method === 'pg_dump') {
        figures = await databaseFigures(db, tables);
        // The same schema description as the driver path, from the same snapshot, so validation after
        // pg_restore compares every object, option, comment and grant too. Objects only pg_dump
        // reproduces (operators, casts, foreign tables...) leave the backup without one (tables, rows and
        // checksums are still compared).
        try {
          description = describeSchema(await captureSchema(db, filtered ? new Set(tables.map((t) => t.oid)) : undefined));
        } catch (err) {
          if (!(err instanceof UnsupportedObjectsError)) throw err;
          ctx.log.info('postgres backup: no schema description (objects only pg_dump reproduces); validation compares tables, rows and checksums', { component: ctx.component, objects: err.message });
        }
        const args = ['--format=custom', '--compress=0', `--snapshot=${info.snap}`, '--no-password'];
        if (filtered) {
          // Exclude the tables left out rather than --table the chosen ones: --table would drop the schemas,
          // types and functions the chosen tables need. Views reading a table left out go with it.
          const chosen = new Set(tables.map((t) => t.oid));
          const left = (await listTables(db)).filter((t) => !chosen.has(t.oid));
          for (const t of left) args.push(`--exclude-table=${qname(t.schema, t.name)}`);
          for (const v of await dependentViews(db, left.map((t) => t.oid))) {
            args.push(`--exclude-table=${v.name}`);
            warnings.push(`view ${v.name} left out: it reads a table that tables.include/exclude leaves out`);
          }
        }
        const run = runTool(pgDump!, args, pgToolEnv(conn));
        let r;
        try {
          r = await ctx.writer.writeStream(run.stdout);
        } catch (err) {
          run.child.kill('SIGTERM');
          throw err;
        }
        await run.done;
        entries.push({ path: `${conn.database}.pgdump`, type: 'file', mode: 0o600, size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { format: 'pg_dump-custom' } });
      } else {
        let captured;
        try {
          captured = await captureSchema(db, filtered ? new Set(tables.map((t) => t.oid)) : undefined);
        } catch (err) {
          if (err instanceof UnsupportedObjectsError) throw new PermanentError(`${ctx.component}: backup of ${describeConnection(conn)} (method driver): ${err.message}`);
          throw err;
        }
        warnings.push(...captured.warnings);
        tables = captured.tables;
        figures = await databaseFigures(db, tables);
        description = describeSchema(captured);
        let n = 0;
        for (const t of tables) {
          const cols = await tableColumns(db, t.oid);
          const dataCols = cols.filter((c) => c.generated !== 's').map((c) => c.name);
          const counter = { rows: 0 };
          const r = await ctx.writer.writeStream(copyOut(db, t, dataCols, ctx.settings.fetchRows, counter));
          const meta: TableEntryMeta = { schema: t.schema, table: t.name, columns: dataCols, overriding: cols.some((c) => c.identity === 'a'), rows: counter.rows };
          entries.push({ path: `tables/${String(++n).padStart(5, '0')}.copy`, type: 'file', mode: 0o600, size: r.size, sha256: r.sha256, chunks: r.chunks, meta: meta as unknown as Record<string, unknown> });
        }
        // Sequences are not transactional: read them after the data, so every restored value is at least what the rows use.
        const full: DriverSchema = { version: 2, pre: captured.pre, post: captured.post, sequences: await sequenceSetvals(db, figures), final: captured.final };
        const r = await ctx.writer.writeBuffer(Buffer.from(JSON.stringify(full), 'utf8'));
        entries.unshift({ path: 'schema.json', type: 'file', mode: 0o600, size: r.size, sha256: r.sha256, chunks: r.chunks });
      }
      await db.query('COMMIT');
      const rows = Object.values(figures.tables).reduce((a, t) => a + t.rows, 0);
      ctx.log.info('postgres backup exported', { component: ctx.component, method, tables: tables.length, rows });
      return {
        entries,
        meta: { method, database: conn.database, source: describeConnection(conn), serverVersion: info.v, ...figures, ...(description ? { schema: description } : {}) },
        warnings,
      };
    } catch (err) {
      throw mapPgError(err, `${ctx.component}: backup of ${describeConnection(conn)}`);
    } finally {
      await db.end().catch(() => undefined);
    }
  },

  async restore(ctx: DriverRestoreContext<PostgresSettings>) {
    if (isPhysical(ctx.manifest)) {
      const o = ctx.target.options ?? {};
      if (typeof o.walConfig !== 'string') throw new UsageError(`${ctx.component}: backup ${ctx.manifest.id} is a physical base backup; it is restored with the archived WAL (memvault restore --latest, --at TIME or --backup ID), which needs components.${ctx.component} configured with continuous: {} (method physical) in a config file, as when it was taken`);
      return physicalRestore(ctx, { until: typeof o.continuousUntil === 'string' ? o.continuousUntil : 'immediate', configFile: o.walConfig, from: o.walFrom === 'secondary' ? 'secondary' : 'primary' });
    }
    const m = await withEntries(ctx.vault, ctx.manifest);
    const method = m.driver.method as 'pg_dump' | 'driver';
    const opts = restoreOptions(ctx.target, ctx.settings.drill);
    try {
      if (!opts.connection) {
        // No database: leave restorable files (pg_restore archive, or a psql script) under the target directory.
        await fs.mkdir(ctx.target.dir, { recursive: true });
        if (method === 'pg_dump') {
          const bytes = await restoreEntriesToDir(ctx.vault, ctx.component, m.entries, ctx.target.dir);
          return { location: path.join(ctx.target.dir, m.entries[0].path), bytes, entries: m.entries.length };
        }
        const dest = path.join(ctx.target.dir, `${m.driver.database as string}.sql`);
        const bytes = await writeSqlScript(ctx.vault, m, dest);
        return { location: dest, bytes, entries: m.entries.length };
      }
      const conn = await resolvePgConnection(opts.connection, opts.field);
      const db = await openTarget(conn, `${ctx.component}: restore`);
      try {
        const existing = await userObjectCount(db);
        if (existing > 0 && !opts.force) {
          throw new UsageError(`restore target ${describeConnection(conn)} already holds ${existing} tables/views/sequences; restore into an empty database or pass force`);
        }
        let bytes = 0;
        if (method === 'pg_dump') {
          await db.end();
          const pgRestore = findPgTool('pg_restore', ctx.settings.pgDumpPath);
          if (!pgRestore) throw new PermanentError(`${ctx.component}: backup ${m.id} is a pg_dump archive and needs pg_restore, which is not installed; restore without a url to get the archive file`);
          const e = m.entries[0];
          const args = ['--no-owner', ...(opts.privileges ? [] : ['--no-acl']), '--exit-on-error', '--single-transaction', `--dbname=${conn.database}`];
          if (opts.force) args.push('--clean', '--if-exists');
          const run = runTool(pgRestore, args, pgToolEnv(conn), readEntry(ctx.vault, e));
          try {
            await Promise.all([run.fed, run.done]);
          } catch (err) {
            const role = /role "([^"]+)" does not exist/.exec((err as Error).message ?? '');
            if (role && opts.privileges) throw new PermanentError(`${ctx.component}: restore into ${describeConnection(conn)}: the backup grants privileges to role "${role[1]}", which the target server does not have; create the role there, or restore without privileges (target option privileges: false)`, { cause: err });
            throw err;
          }
          bytes = e.size;
        } else {
          bytes = await restoreDriverPath(ctx.vault, m, db, `${ctx.component}: restore into ${describeConnection(conn)}`, opts.privileges);
        }
        return { location: describeConnection(conn), bytes, entries: m.entries.length };
      } finally {
        await db.end().catch(() => undefined);
      }
    } catch (err) {
      rethrowIntegrity(ctx.component, err);
    }
  },

  async mask(ctx: DriverMaskContext<PostgresSettings>) {
    if (isPhysical(ctx.manifest)) throw new ConfigError(`components.${ctx.component}.mask: a physical base backup is restored as a stopped data directory; it cannot be masked (remove mask, or mask a pg_dump backup)`);
    const opts = restoreOptions(ctx.target, ctx.settings.drill);
    if (!opts.connection) {
      throw new ConfigError(`components.${ctx.component}.mask: a sanitized restore of a postgres component needs a database target (target option url, or components.${ctx.component}.drill for drills); a dump file cannot be masked`);
    }
    const conn = await resolvePgConnection(opts.connection, opts.field);
    const db = await connectPg(conn, `${ctx.component}: mask`);
    try {
      return await maskPostgres(db, ctx.component, ctx.rules as TableMaskRule[], ctx.key);
    } finally {
      await db.end().catch(() => undefined);
    }
  },

  async validate(ctx: DriverValidateContext<PostgresSettings>) {
    if (isPhysical(ctx.manifest)) return physicalValidate(ctx);
    const m = await withEntries(ctx.vault, ctx.manifest);
    const expected = m.driver as unknown as DatabaseFigures & { method: string; schema?: Record<string, string> };
    const opts = restoreOptions(ctx.target, ctx.settings.drill);
    const checks: ValidationCheck[] = [];
    if (!opts.connection) {
      const st = await fs.stat(ctx.location).catch(() => null);
      checks.push({ name: 'restored file present', ok: !!st?.isFile(), actual: ctx.location });
      if (st?.isFile() && expected.method === 'pg_dump') {
        const bin = findPgTool('pg_restore', ctx.settings.pgDumpPath);
        if (bin) {
          const r = spawnSync(bin, ['--list', ctx.location], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
          const dataEntries = (r.stdout ?? '').split('\n').filter((l) => / TABLE DATA /.test(l)).length;
          checks.push({ name: 'pg_restore --list reads the archive', ok: r.status === 0, actual: r.status === 0 ? 'ok' : r.stderr.trim() });
          const tablesWithRows = Object.keys(expected.tables).length;
          checks.push({ name: 'archive has data for every table', ok: dataEntries >= tablesWithRows, expected: tablesWithRows, actual: dataEntries });
        }
      }
      return report(checks);
    }
    const conn = await resolvePgConnection(opts.connection, opts.field);
    let db: pg.Client | undefined;
    try {
      db = await connectPg(conn, `${ctx.component}: validate`);
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const present = await listTables(db);
      const wanted = Object.keys(expected.tables);
      const refs = present.filter((t) => wanted.includes(`${t.schema}.${t.name}`));
      const missing = wanted.filter((w) => !refs.some((t) => `${t.schema}.${t.name}` === w));
      checks.push({ name: 'every table present', ok: missing.length === 0, expected: wanted.length, actual: missing.length ? { missing } : wanted.length });
      const actual = await databaseFigures(db, refs);
      for (const [name, fig] of Object.entries(expected.tables)) {
        const a = actual.tables[name];
        if (!a) continue;
        checks.push({ name: `table ${name}: rows`, ok: a.rows === fig.rows, expected: fig.rows, actual: a.rows });
        const masked = ctx.masked?.tables?.[name];
        if (masked) {
          // Masked columns differ from the backup by design: the others are compared with their digest
          // taken before masking (when the whole table matched the backup's checksum).
          const d = await pgColumnsDigest(db, name, await pgKeptColumns(db, name, masked.columns));
          checks.push({ name: `table ${name}: unmasked columns (masked: ${masked.columns.join(', ')}; content checksum checked before masking)`, ok: d.sha256 === masked.unmaskedSha256 && d.rows === masked.rows, expected: masked.unmaskedSha256, actual: d.sha256 });
        } else {
          checks.push({ name: `table ${name}: content checksum`, ok: a.checksum === fig.checksum, expected: fig.checksum, actual: a.checksum });
        }
        checks.push({ name: `table ${name}: indexes`, ok: a.indexes === fig.indexes, expected: fig.indexes, actual: a.indexes });
        checks.push({ name: `table ${name}: constraints`, ok: a.constraints === fig.constraints, expected: fig.constraints, actual: a.constraints });
      }
      for (const [name, seq] of Object.entries(expected.sequences)) {
        const a = actual.sequences[name];
        // pg_dump reads sequences a moment after memvault's figures: the restored value may be ahead, never behind.
        const ok = !!a && (seq.lastValue === null || (a.lastValue !== null && BigInt(a.lastValue) >= BigInt(seq.lastValue)));
        checks.push({ name: `sequence ${name}: last value`, ok, expected: seq.lastValue === null ? 'unused' : `>= ${seq.lastValue}`, actual: a?.lastValue ?? 'missing' });
        if (a && seq.ownedBy) {
          const o = seq.ownedBy;
          const r = await db.query<{ max: string | null }>(`SELECT max(${qi(o.column)})::text AS max FROM ${qname(o.schema, o.table)}`);
          const max = r.rows[0].max;
          const safe = max === null || (a.lastValue !== null && BigInt(a.lastValue) >= BigInt(max));
          checks.push({ name: `sequence ${name}: ahead of ${o.table}.${o.column}`, ok: safe, expected: `>= ${max}`, actual: a.lastValue });
        }
      }
      if (expected.schema) {
        // The restored schema, described the same way as the source's at backup time: every object, option,
        // comment and grant of the source must be there, defined the same way.
        let diffs: string[];
        try {
          const wanted = opts.privileges ? expected.schema : Object.fromEntries(Object.entries(expected.schema).filter(([label]) => !isPrivilegeLabel(label)));
          diffs = schemaDifferences(wanted, describeSchema(await captureSchema(db)));
        } catch (err) {
          diffs = [`cannot describe the restored schema: ${(err as Error).message}`];
        }
        checks.push({ name: 'schema: every object, option, comment and privilege as in the source', ok: diffs.length === 0, expected: `${Object.keys(expected.schema).length} objects`, actual: diffs.length ? diffs.slice(0, 30) : `${Object.keys(expected.schema).length} objects` });
      }
      const missingExt = expected.extensions.filter((e) => !actual.extensions.includes(e));
      checks.push({ name: 'extensions installed', ok: missingExt.length === 0, expected: expected.extensions, actual: missingExt.length ? { missing: missingExt } : actual.extensions });
      await db.query('COMMIT');
    } catch (err) {
      checks.push({ name: 'query the restored database', ok: false, actual: (err as Error).message });
    } finally {
      await db?.end().catch(() => undefined);
    }
    return report(checks);
  },
};

/** COPY's column list; none for a table without columns (`COPY t ()` is not valid; its rows are empty lines). */
const copyColumns = (cols: string[]) => (cols.length ? ` (${cols.map(qi).join(', ')})` : '');

/** An error of a restore step, naming the component, target and object (the class kept for retry decisions). */
function restoreError(err: unknown, what: string): Error {
  const mapped = mapPgError(err, what);
  if (mapped !== err) return mapped;
  const e = err as Error;
  if (e instanceof IntegrityError) return new IntegrityError(`${what}: ${e.message}`, e.objectKey);
  if (e instanceof RetryableError) return new RetryableError(`${what}: ${e.message}`, { cause: e });
  return new PermanentError(`${what}: ${e?.message ?? String(err)}`, { cause: err });
}

async function restoreDriverPath(vault: Vault, m: Manifest, db: pg.Client, what: string, privileges = true): Promise<number> {
  const schemaEntry = m.entries.find((e) => e.path === 'schema.json');
  if (!schemaEntry) throw new IntegrityError(`manifest ${m.id} has no schema.json entry`);
  const schema = await readJsonEntry<DriverSchema>(vault, schemaEntry);
  let bytes = schemaEntry.size;
  const run = async (items: (string | SchemaItem)[]) => {
    for (const raw of items) {
      const it = asItem(raw);
      if (!privileges && isPrivilegeLabel(it.label)) continue;
      try {
        await db.query(it.sql);
      } catch (err) {
        throw restoreError(err, `${what}: ${it.label}`);
      }
    }
  };
  await db.query('BEGIN');
  try {
    await db.query('SET LOCAL check_function_bodies = off');
    await run(schema.pre);
    // Rows go in through COPY before any index, key or trigger exists; the entries are COPY text already.
    for (const e of m.entries) {
      if (e.path === 'schema.json') continue;
      const meta = e.meta as unknown as TableEntryMeta;
      const table = qname(meta.schema, meta.table);
      let restored: number;
      try {
        restored = await copyIn(db, `COPY ${table}${copyColumns(meta.columns)} FROM STDIN`, readEntry(vault, e));
      } catch (err) {
        throw restoreError(err, `${what}: rows of table ${table}`);
      }
      if (restored !== meta.rows) throw new IntegrityError(`${what}: ${e.path}: restored ${restored} rows of ${meta.schema}.${meta.table}, backup has ${meta.rows}`);
      bytes += e.size;
    }
    await run(schema.post);
    await run(schema.sequences);
    await run(schema.final ?? []);
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return bytes;
}

/** Writes a driver-path backup as one psql script (DDL, COPY ... FROM stdin blocks, constraints, setval). */
async function writeSqlScript(vault: Vault, m: Manifest, dest: string): Promise<number> {
  const schemaEntry = m.entries.find((e) => e.path === 'schema.json');
  if (!schemaEntry) throw new IntegrityError(`manifest ${m.id} has no schema.json entry`);
  const schema = await readJsonEntry<DriverSchema>(vault, schemaEntry);
  const fh = await fs.open(`${dest}.memvault-partial`, 'w', 0o600);
  let bytes = 0;
  const put = async (s: string | Buffer) => { const b = typeof s === 'string' ? Buffer.from(s) : s; bytes += b.length; await fh.write(b); };
  try {
    await put(`-- memvault backup ${m.id} of ${m.component} (${m.startedAt}); restore with: psql --single-transaction -v ON_ERROR_STOP=1 -f this-file\n`);
    await put("SET check_function_bodies = false;\nSET client_encoding = 'UTF8';\n\n");
    for (const s of schema.pre) await put(`${asItem(s).sql};\n\n`);
    for (const e of m.entries) {
      if (e.path === 'schema.json') continue;
      const meta = e.meta as unknown as TableEntryMeta;
      await put(`COPY ${qname(meta.schema, meta.table)}${copyColumns(meta.columns)} FROM stdin;\n`);
      for await (const b of readEntry(vault, e)) await put(b);
      await put('\\.\n\n');
    }
    for (const s of [...schema.post, ...schema.sequences, ...(schema.final ?? [])]) await put(`${asItem(s).sql};\n\n`);
  } finally {
    await fh.close();
  }
  await fs.rename(`${dest}.memvault-partial`, dest);
  return bytes;
}
