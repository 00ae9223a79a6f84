// vector: embeddings with their ids and metadata from a PostgreSQL table with
// a vector column, in the pgvector layout (`embedding vector(1536)`, text form
// '[1,2,3]') or as a float array (`real[]` / `double precision[]`, '{1,2,3}').
//
// Backup reads the table in one REPEATABLE READ READ ONLY snapshot through a
// cursor (ordered by id, so unchanged ranges produce the same bytes and dedup
// between backups) and writes one binary stream:
//   header  "MVVEC1" | u32 dimensions | u8 bytes per element (4 or 8)
//   record  u32 id length | id (UTF-8 text form) | u32 n (0xFFFFFFFF: NULL vector)
//           | n little-endian floats | u32 metadata length | metadata (JSON array
//           of the metadata columns' text forms, null for NULL)
// Every vector must have exactly `dimensions` elements: the export fails naming
// the row id otherwise, and so does a restore that meets one. The manifest
// records the row count, NULL vectors and an order-independent checksum of
// ids, vector bits and metadata (sum of the records' SHA-256 prefixes, mod
// 2^128); validation recomputes it from the restored table.
// Float arrays are read as their binary send form (array_send), so no float
// text is parsed; pgvector columns as text.
// Restore creates a fresh table (the vector column with the source's type,
// metadata columns with theirs), loads it with COPY in one transaction
// (binary COPY for float arrays when the id and metadata types have a simple
// binary form: the stored bits go in unchanged; text COPY otherwise) and adds
// the id primary key after the data. A pgvector column needs the extension on the target
// (CREATE EXTENSION vector is tried; its absence is a clear error).
import { withEntries } from '../core/entry-log.ts';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type pg from 'pg';
import type { Driver, DriverBackupContext, DriverMaskContext, DriverRestoreContext, DriverValidateContext, DrillTargets, Masking, ValidationCheck } from './types.ts';
import { maskPostgres, pgColumnsDigest, pgKeptColumns } from './mask-pg.ts';
import { type TableMaskRule, describeRule, ruleName } from '../core/mask.ts';
import { report } from './types.ts';
import { readEntry } from '../core/writer.ts';
import { ConfigError, IntegrityError, PermanentError, UsageError } from '../core/errors.ts';
import {
  connectPg, describeConnection, openTarget, pgConnectionShape, qi, qname, rawText, resolvePgConnection,
  pgDrillSchema, restoreOptions as pgRestoreOptions, isPgNetworkTarget, PG_TARGET_FIELDS, pgDrillTarget, dropScratchDatabase,
  copyEscape, type PgConnectionSettings,
} from './postgres.ts';
import { copyIn } from './pg-schema.ts';
import { restoreEntriesToDir } from './restore-file.ts';
import { SECRET_ARN, SECRET_ARN_MESSAGE } from '../adapters/secrets.ts';

export const vectorSchema = z.object({
  ...pgConnectionShape,
  /** Table holding the embeddings: "schema.table" or "table" (schema public). */
  table: z.string().min(1),
  idColumn: z.string().default('id'),
  vectorColumn: z.string().default('embedding'),
  /** Columns kept with each vector (text form, any type). @default [] */
  metadataColumns: z.array(z.string()).default([]),
  /** Number of elements every vector must have. */
  dimensions: z.number({ error: 'expected the vectors\' dimension as a positive integer' }).int().positive(),
  /** Rows fetched per round trip. @default 1000 */
  fetchRows: z.number().int().positive().default(1000),
  /** Where verify-drill restores this component (a scratch database per run, dropped after; as postgres). */
  drill: pgDrillSchema.optional(),
});
export type VectorSettings = z.infer<typeof vectorSchema>;

export type VectorType = 'pgvector' | 'float4[]' | 'float8[]';

export interface VectorMeta {
  source: string;
  table: string;
  idColumn: string;
  vectorColumn: string;
  metadataColumns: string[];
  /** format_type() of every column, to recreate the table. */
  columnTypes: Record<string, string>;
  vectorType: VectorType;
  dimensions: number;
  rows: number;
  nullVectors: number;
  checksum: string;
}

const MAGIC = Buffer.from('MVVEC1');
const NULL_VECTOR = 0xffffffff;

function splitTable(t: string): [string, string] {
  const i = t.indexOf('.');
  return i < 0 ? ['public', t] : [t.slice(0, i), t.slice(i + 1)];
}

/** Parses '[1,2,3]' (pgvector) or '{1,2,3}' (float array) into numbers. */
export function parseVectorText(text: string, id: string): number[] {
  const open = text[0];
  const close = text[text.length - 1];
  if (!((open === '[' && close === ']') || (open === '{' && close === '}'))) {
    throw new PermanentError(`row id=${id}: cannot read vector "${text.slice(0, 40)}"`);
  }
  const body = text.slice(1, -1).trim();
  if (body === '') return [];
  if (body.includes('{')) throw new PermanentError(`row id=${id}: vector is a multi-dimensional array`);
  return body.split(',').map((s) => {
    const t = s.trim();
    if (t === 'NULL') throw new PermanentError(`row id=${id}: vector has a NULL element`);
    const n = Number(t);
    if (Number.isNaN(n) && !/^nan$/i.test(t)) throw new PermanentError(`row id=${id}: vector element "${t}" is not a number`);
    return n;
  });
}

/** Shortest decimal text that reads back as the same float32 (or float64). */
export function floatText(v: number, bytes: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  if (Object.is(v, -0)) return '-0';
  if (bytes === 8) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(v);
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(n);
  return b;
}

/** One record's bytes (the stream format above). */
export function encodeRecord(id: string, vec: number[] | Buffer | null, meta: (string | null)[], bytes: number): Buffer {
  const idb = Buffer.from(id, 'utf8');
  const mb = Buffer.from(JSON.stringify(meta), 'utf8');
  const n = vec ? (Buffer.isBuffer(vec) ? vec.length / bytes : vec.length) : 0;
  const out = Buffer.allocUnsafe(4 + idb.length + 4 + n * bytes + 4 + mb.length);
  let o = out.writeUInt32LE(idb.length, 0);
  o += idb.copy(out, o);
  o = out.writeUInt32LE(vec ? n : NULL_VECTOR, o);
  if (Buffer.isBuffer(vec)) o += vec.copy(out, o);
  else if (vec) for (const v of vec) o = bytes === 4 ? out.writeFloatLE(v, o) : out.writeDoubleLE(v, o);
  o = out.writeUInt32LE(mb.length, o);
  mb.copy(out, o);
  return out;
}

/** Order-independent checksum: sum of the first 128 bits of each record's SHA-256, mod 2^128. */
export class RecordChecksum {
  private sum = 0n;
  count = 0;
  add(record: Buffer): void {
    this.sum = (this.sum + BigInt(`0x${createHash('sha256').update(record).digest('hex').slice(0, 32)}`)) & ((1n << 128n) - 1n);
    this.count++;
  }
  /** The same as add(record) given the record's SHA-256. */
  addDigest(sha256: Buffer): void {
    this.sum = (this.sum + ((sha256.readBigUInt64BE(0) << 64n) | sha256.readBigUInt64BE(8))) & ((1n << 128n) - 1n);
    this.count++;
  }
  hex(): string {
    return this.sum.toString(16).padStart(32, '0');
  }
}

/** Pulls exact byte counts out of a chunked stream. */
export class ByteReader {
  private bufs: Buffer[] = [];
  private len = 0;
  private it: AsyncIterator<Buffer>;
  private ended = false;
  constructor(src: AsyncIterable<Buffer>) {
    this.it = src[Symbol.asyncIterator]();
  }
  /** Exactly n bytes, or null at a clean end of stream; throws on a truncated stream. */
  async read(n: number): Promise<Buffer | null> {
    while (this.len < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else { this.bufs.push(r.value); this.len += r.value.length; }
    }
    if (this.len === 0 && this.ended) return null;
    if (this.len < n) throw new IntegrityError(`stream ends inside a record (${this.len} of ${n} bytes)`);
    const all = this.bufs.length === 1 ? this.bufs[0] : Buffer.concat(this.bufs);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.bufs = rest.length ? [rest] : [];
    this.len = rest.length;
    return out;
  }
  async u32(): Promise<number | null> {
    const b = await this.read(4);
    return b ? b.readUInt32LE(0) : null;
  }
}

interface ColumnRow { name: string; type: string; typname: string }

async function describeColumns(db: pg.Client, table: string, s: VectorSettings, field: string): Promise<{ types: Record<string, string>; vectorType: VectorType }> {
  const [schema, name] = splitTable(table);
  const rel = await db.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::int8::text AS oid', [qname(schema, name)]);
  if (!rel.rows[0].oid) throw new ConfigError(`${field}.table: table ${schema}.${name} does not exist`);
  const cols = await db.query<ColumnRow>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped`, [rel.rows[0].oid]);
  const byName = new Map(cols.rows.map((c) => [c.name, c]));
  const need: [string, string][] = [[`${field}.idColumn`, s.idColumn], [`${field}.vectorColumn`, s.vectorColumn], ...s.metadataColumns.map((c, i) => [`${field}.metadataColumns.${i}`, c] as [string, string])];
  const types: Record<string, string> = {};
  for (const [f, c] of need) {
    const col = byName.get(c);
    if (!col) throw new ConfigError(`${f}: ${schema}.${name} has no column "${c}"; columns: ${[...byName.keys()].join(', ')}`);
    types[c] = col.type;
  }
  const v = byName.get(s.vectorColumn)!;
  const vectorType: VectorType | undefined = v.typname === 'vector' ? 'pgvector' : v.typname === '_float4' ? 'float4[]' : v.typname === '_float8' ? 'float8[]' : undefined;
  if (!vectorType) throw new ConfigError(`${field}.vectorColumn: column ${s.vectorColumn} has type ${v.type}; expected vector(n), real[] or double precision[]`);
  const m = /^vector\((\d+)\)$/.exec(v.type);
  if (m && Number(m[1]) !== s.dimensions) {
    throw new ConfigError(`${field}.dimensions: ${s.dimensions}, but column ${s.vectorColumn} is ${v.type}`);
  }
  return { types, vectorType };
}

/**
 * A float4[]/float8[] from array_send's bytea text form ('\\x...'): ndim, has-NULL flag, element type, then per
 * dimension size and lower bound, then per element its length and big-endian bits. Returns the little-endian bits.
 */
export function arrayFromSend(hex: string, bytes: number, id: string): Buffer {
  const b = Buffer.from(hex.slice(2), 'hex');
  const ndim = b.readInt32BE(0);
  if (ndim === 0) return Buffer.alloc(0);
  if (ndim > 1) throw new PermanentError(`row id=${id}: vector is a multi-dimensional array`);
  if (b.readInt32BE(4) !== 0) throw new PermanentError(`row id=${id}: vector has a NULL element`);
  const n = b.readInt32BE(12);
  const out = Buffer.allocUnsafe(n * bytes);
  let o = 20;
  for (let i = 0; i < n; i++) {
    if (b.readInt32BE(o) !== bytes) throw new PermanentError(`row id=${id}: vector element ${i} has ${b.readInt32BE(o)} bytes, expected ${bytes}`);
    o += 4;
    const d = i * bytes;
    for (let k = 0; k < bytes; k++) out[d + k] = b[o + bytes - 1 - k];
    o += bytes;
  }
  return out;
}

/** Reads the table (inside the caller's transaction) as records, checking every vector's dimension. */
async function* readRecords(db: pg.Client, table: string, cols: { id: string; vec: string; meta: string[] }, dims: number, bytes: number, fetchRows: number, what: string, binaryArrays = false): AsyncGenerator<{ record: Buffer; isNull: boolean }> {
  const [schema, name] = splitTable(table);
  // Float arrays come as their binary send form (array_send, hex): no float text to parse.
  const arrays = binaryArrays;
  const select = [cols.id, cols.vec, ...cols.meta].map((c, i) => (i === 1 && arrays ? `array_send(${qi(c)})` : `${qi(c)}::text`)).join(', ');
  const cursor = `memvault_vec_${Date.now()}`;
  await db.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${select} FROM ${qname(schema, name)} ORDER BY ${qi(cols.id)}`);
  try {
    for (;;) {
      const r = await db.query({ text: `FETCH ${fetchRows} FROM ${cursor}`, rowMode: 'array', types: rawText });
      if (r.rows.length === 0) break;
      for (const row of r.rows as (string | null)[][]) {
        const id = row[0];
        if (id === null) throw new PermanentError(`${what}: a row has a NULL ${cols.id}`);
        const vec = row[1] === null ? null : arrays ? arrayFromSend(row[1], bytes, id) : parseVectorText(row[1], id);
        const len = vec ? (Buffer.isBuffer(vec) ? vec.length / bytes : vec.length) : 0;
        if (vec && len !== dims) throw new PermanentError(`${what}: row id=${id}: vector has ${len} dimensions, expected ${dims}`);
        yield { record: encodeRecord(id, vec, row.slice(2), bytes), isNull: vec === null };
      }
    }
  } finally {
    await db.query(`CLOSE ${cursor}`);
  }
}

function elementBytes(t: VectorType): number {
  return t === 'float8[]' ? 8 : 4;
}

interface StreamRecord { id: string; vec: Buffer | null; meta: (string | null)[] }

/** The records of a vector stream after its header; the vector as its raw little-endian bytes. */
async function* readStreamRecords(r: ByteReader, dims: number, bytes: number, metaCount: number, component: string): AsyncGenerator<StreamRecord> {
  for (;;) {
    const idLen = await r.u32();
    if (idLen === null) return;
    const id = (await r.read(idLen))!.toString('utf8');
    const n = (await r.u32())!;
    let vec: Buffer | null = null;
    if (n !== NULL_VECTOR) {
      if (n !== dims) throw new IntegrityError(`${component}: row id=${id}: vector has ${n} dimensions, expected ${dims}`);
      vec = (await r.read(n * bytes))!;
    }
    const mLen = (await r.u32())!;
    const meta = JSON.parse((await r.read(mLen))!.toString('utf8')) as (string | null)[];
    if (meta.length !== metaCount) throw new IntegrityError(`${component}: row id=${id}: ${meta.length} metadata values, expected ${metaCount}`);
    yield { id, vec, meta };
  }
}

/**
 * floatText's result (the shortest decimal that reads back as the same float),
 * found by binary search over the precision: reading back is monotone in it.
 */
export function fastFloatText(v: number, bytes: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  if (Object.is(v, -0)) return '-0';
  if (bytes === 8) return String(v);
  let lo = 1;
  let hi = 9;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Math.fround(Number(v.toPrecision(mid))) === v) hi = mid;
    else lo = mid + 1;
  }
  return String(Number(v.toPrecision(lo)));
}

/** COPY text rows, about 1 MiB per chunk. */
async function* textCopyRows(records: AsyncIterable<StreamRecord>, [open, close]: [string, string], bytes: number): AsyncGenerator<Buffer> {
  let out = '';
  for await (const rec of records) {
    let vec = '\\N';
    if (rec.vec) {
      const n = rec.vec.length / bytes;
      const parts: string[] = new Array(n);
      for (let i = 0; i < n; i++) parts[i] = fastFloatText(bytes === 4 ? rec.vec.readFloatLE(i * 4) : rec.vec.readDoubleLE(i * 8), bytes);
      vec = open + parts.join(',') + close;
    }
    out += `${copyEscape(rec.id)}\t${vec}${rec.meta.map((m) => `\t${copyEscape(m)}`).join('')}\n`;
    if (out.length >= 1 << 20) { yield Buffer.from(out, 'utf8'); out = ''; }
  }
  if (out) yield Buffer.from(out, 'utf8');
}

type Encoder = (text: string) => Buffer;

/** Binary COPY encoders for the id and metadata column types whose binary form is simple; undefined: use text COPY. */
function binaryEncoder(type: string): Encoder | undefined {
  if (type === 'text' || type === 'name' || type === 'json' || /^character varying(\(\d+\))?$/.test(type)) return (t) => Buffer.from(t, 'utf8');
  if (type === 'jsonb') return (t) => Buffer.concat([Buffer.from([1]), Buffer.from(t, 'utf8')]);
  if (type === 'integer') return (t) => { const b = Buffer.allocUnsafe(4); b.writeInt32BE(Number(t)); return b; };
  if (type === 'bigint') return (t) => { const b = Buffer.allocUnsafe(8); b.writeBigInt64BE(BigInt(t)); return b; };
  if (type === 'smallint') return (t) => { const b = Buffer.allocUnsafe(2); b.writeInt16BE(Number(t)); return b; };
  if (type === 'uuid') return (t) => Buffer.from(t.replaceAll('-', ''), 'hex');
  return undefined;
}

const COPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * COPY binary rows: id, the vector as a one-dimensional float4[]/float8[]
 * (bits copied as they are: NaN payloads, -0 and denormals stay), metadata.
 */
async function* binaryCopyRows(records: AsyncIterable<StreamRecord>, enc: Encoder[], bytes: number): AsyncGenerator<Buffer> {
  const header = Buffer.alloc(COPY_SIGNATURE.length + 8);
  COPY_SIGNATURE.copy(header);
  let parts: Buffer[] = [header];
  let size = header.length;
  const field = (b: Buffer | null) => {
    const len = Buffer.allocUnsafe(4);
    len.writeInt32BE(b ? b.length : -1);
    parts.push(len);
    size += 4;
    if (b) { parts.push(b); size += b.length; }
  };
  for await (const rec of records) {
    const count = Buffer.allocUnsafe(2);
    count.writeInt16BE(2 + rec.meta.length);
    parts.push(count);
    size += 2;
    field(enc[0](rec.id));
    if (rec.vec) {
      const n = rec.vec.length / bytes;
      const arr = Buffer.allocUnsafe(20 + n * (4 + bytes));
      arr.writeInt32BE(1, 0); // dimensions
      arr.writeInt32BE(0, 4); // no NULLs
      arr.writeUInt32BE(bytes === 4 ? 700 : 701, 8); // float4 / float8
      arr.writeInt32BE(n, 12);
      arr.writeInt32BE(1, 16); // lower bound
      let o = 20;
      const v = rec.vec;
      for (let i = 0; i < n; i++) {
        arr.writeInt32BE(bytes, o);
        o += 4;
        const s = i * bytes;
        for (let k = bytes - 1; k >= 0; k--) arr[o++] = v[s + k]; // little- to big-endian
      }
      field(arr);
    } else {
      field(null);
    }
    rec.meta.forEach((m, i) => field(m === null ? null : enc[i + 1](m)));
    if (size >= 1 << 20) { yield Buffer.concat(parts, size); parts = []; size = 0; }
  }
  const trailer = Buffer.allocUnsafe(2);
  trailer.writeInt16BE(-1);
  parts.push(trailer);
  yield Buffer.concat(parts);
}

interface VectorRestoreOptions { connection?: PgConnectionSettings; field: string; table?: string; force?: boolean }

/** The target database as postgres' (url, host..., secretArn, or a drill's scratchDatabase), and the table. */
function restoreOptions(o: Record<string, unknown> | undefined, drill: VectorSettings['drill']): VectorRestoreOptions {
  const opts = o ?? {};
  if (opts.table !== undefined && typeof opts.table !== 'string') throw new UsageError('restore target option table: expected "schema.table" or "table"');
  const { table: _t, ...rest } = opts;
  return { ...pgRestoreOptions({ options: rest }, drill), table: opts.table as string | undefined };
}

export const vectorDriver: Driver<VectorSettings> & DrillTargets<VectorSettings> & Masking<VectorSettings> = {
  kind: 'vector',
  mode: 'stream',
  schema: vectorSchema,
  networkTargetFields: `${PG_TARGET_FIELDS}; table`,
  isNetworkTarget: isPgNetworkTarget,
  drillTarget: (ctx) => pgDrillTarget(ctx.component, ctx.settings.drill, ctx.tag),
  cleanupTarget: (ctx) => dropScratchDatabase(ctx.component, ctx.settings.drill, ctx.target.options),

  async backup(ctx: DriverBackupContext<VectorSettings>) {
    const s = ctx.settings;
    const field = `components.${ctx.component}`;
    const conn = await resolvePgConnection(s, field);
    const db = await connectPg(conn, ctx.component);
    try {
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { types, vectorType } = await describeColumns(db, s.table, s, field);
      const bytes = elementBytes(vectorType);
      const sum = new RecordChecksum();
      let nulls = 0;
      const header = Buffer.concat([MAGIC, u32(s.dimensions), Buffer.from([bytes])]);
      const records = readRecords(db, s.table, { id: s.idColumn, vec: s.vectorColumn, meta: s.metadataColumns }, s.dimensions, bytes, s.fetchRows, `${ctx.component}: ${s.table}`, vectorType !== 'pgvector');
      async function* stream(): AsyncGenerator<Buffer> {
        yield header;
        let batch: Buffer[] = [];
        let size = 0;
        for await (const r of records) {
          sum.add(r.record);
          if (r.isNull) nulls++;
          batch.push(r.record);
          size += r.record.length;
          if (size >= 1 << 20) { yield Buffer.concat(batch); batch = []; size = 0; }
        }
        if (batch.length) yield Buffer.concat(batch);
      }
      const w = await ctx.writer.writeStream(stream());
      await db.query('COMMIT');
      const [schema, name] = splitTable(s.table);
      const meta: VectorMeta = {
        source: describeConnection(conn), table: `${schema}.${name}`, idColumn: s.idColumn, vectorColumn: s.vectorColumn,
        metadataColumns: s.metadataColumns, columnTypes: types, vectorType, dimensions: s.dimensions,
        rows: sum.count, nullVectors: nulls, checksum: sum.hex(),
      };
      return {
        entries: [{ path: `${schema}.${name}.vectors`, type: 'file' as const, mode: 0o600, size: w.size, sha256: w.sha256, chunks: w.chunks }],
        meta: meta as unknown as Record<string, unknown>,
        warnings: [],
      };
    } finally {
      await db.end().catch(() => undefined);
    }
  },

  async restore(ctx: DriverRestoreContext<VectorSettings>) {
    const meta = ctx.manifest.driver as unknown as VectorMeta;
    const e = (await withEntries(ctx.vault, ctx.manifest)).entries[0];
    if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no vectors entry`);
    if (ctx.settings.dimensions !== undefined && ctx.settings.dimensions !== meta.dimensions) {
      throw new PermanentError(`${ctx.component}: backup ${ctx.manifest.id} holds ${meta.dimensions}-dimensional vectors, the component is configured for ${ctx.settings.dimensions}`);
    }
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    if (!opts.connection) {
      await restoreEntriesToDir(ctx.vault, ctx.component, [e], ctx.target.dir);
      const dest = path.join(ctx.target.dir, e.path);
      return { location: dest, bytes: e.size, entries: 1 };
    }
    const conn = await resolvePgConnection(opts.connection, opts.field);
    const table = opts.table ?? meta.table;
    const [schema, name] = splitTable(table);
    const db = await openTarget(conn, `${ctx.component}: restore`);
    try {
      const exists = (await db.query<{ oid: string | null }>('SELECT to_regclass($1)::text AS oid', [qname(schema, name)])).rows[0].oid;
      if (exists && !opts.force) throw new UsageError(`restore target table ${schema}.${name} already exists in ${describeConnection(conn)}; choose another table or pass force to add to it`);
      await db.query('BEGIN');
      if (meta.vectorType === 'pgvector') {
        try {
          await db.query('SAVEPOINT ext');
          await db.query('CREATE EXTENSION IF NOT EXISTS vector');
        } catch (err) {
          await db.query('ROLLBACK TO SAVEPOINT ext');
          const has = (await db.query("SELECT 1 FROM pg_type WHERE typname = 'vector'")).rows.length > 0;
          if (!has) throw new PermanentError(`${ctx.component}: the backup has pgvector columns and ${describeConnection(conn)} cannot create the vector extension: ${(err as Error).message}`);
        }
      }
      const cols = [meta.idColumn, meta.vectorColumn, ...meta.metadataColumns];
      if (!exists) {
        await db.query(`CREATE SCHEMA IF NOT EXISTS ${qi(schema)}`);
        await db.query(`CREATE TABLE ${qname(schema, name)} (${cols.map((c) => `${qi(c)} ${meta.columnTypes[c]}`).join(', ')})`);
      }
      const bytes = elementBytes(meta.vectorType);
      const r = new ByteReader(readEntry(ctx.vault, e));
      const head = await r.read(MAGIC.length + 5);
      if (!head || !head.subarray(0, MAGIC.length).equals(MAGIC)) throw new IntegrityError(`${e.path}: not a memvault vector stream`);
      const dims = head.readUInt32LE(MAGIC.length);
      if (dims !== meta.dimensions || head[MAGIC.length + 4] !== bytes) {
        throw new IntegrityError(`${e.path}: stream holds ${dims}-dimensional vectors of ${head[MAGIC.length + 4]}-byte floats, manifest says ${meta.dimensions} of ${bytes}`);
      }
      // Rows go in through COPY (binary where every column's binary form is known here: float arrays with
      // text-like or integer ids and metadata; else text), the primary key after the data.
      const binary = meta.vectorType !== 'pgvector' && [meta.idColumn, ...meta.metadataColumns].every((c) => binaryEncoder(meta.columnTypes[c]) !== undefined);
      const records = readStreamRecords(r, dims, bytes, meta.metadataColumns.length, ctx.component);
      const source = binary
        ? binaryCopyRows(records, [meta.idColumn, ...meta.metadataColumns].map((c) => binaryEncoder(meta.columnTypes[c])!), bytes)
        : textCopyRows(records, meta.vectorType === 'pgvector' ? ['[', ']'] : ['{', '}'], bytes);
      let restored: number;
      const copy = `COPY ${qname(schema, name)} (${cols.map(qi).join(', ')}) FROM STDIN${binary ? ' WITH (FORMAT binary)' : ''}`;
      try {
        restored = await copyIn(db, copy, source);
      } catch (err) {
        if (err instanceof IntegrityError || err instanceof PermanentError) throw err;
        throw new PermanentError(`${ctx.component}: restore into ${describeConnection(conn)}: rows of ${schema}.${name}: ${(err as Error).message}`, { cause: err });
      }
      if (restored !== meta.rows) throw new IntegrityError(`${ctx.component}: restored ${restored} vectors, backup has ${meta.rows}`);
      if (!exists) await db.query(`ALTER TABLE ${qname(schema, name)} ADD PRIMARY KEY (${qi(meta.idColumn)})`);
      await db.query('COMMIT');
      return { location: `${describeConnection(conn)}#${schema}.${name}`, bytes: e.size, entries: 1 };
    } catch (err) {
      await db.query('ROLLBACK').catch(() => undefined);
      if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${err.message}`, err.objectKey);
      throw err;
    } finally {
      await db.end().catch(() => undefined);
    }
  },

  async validate(ctx: DriverValidateContext<VectorSettings>) {
    const meta = ctx.manifest.driver as unknown as VectorMeta;
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    const checks: ValidationCheck[] = [];
    if (!opts.connection) {
      const st = await fs.stat(ctx.location).catch(() => null);
      const size = (await withEntries(ctx.vault, ctx.manifest)).entries[0]?.size;
      checks.push({ name: 'vector stream file restored', ok: st?.size === size, expected: size, actual: st?.size });
      return report(checks);
    }
    const conn = await resolvePgConnection(opts.connection, opts.field);
    const table = opts.table ?? meta.table;
    let db: pg.Client | undefined;
    try {
      db = await connectPg(conn, `${ctx.component}: validate`);
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const settings = { ...ctx.settings, table, idColumn: meta.idColumn, vectorColumn: meta.vectorColumn, metadataColumns: meta.metadataColumns, dimensions: meta.dimensions };
      const { types, vectorType } = await describeColumns(db, table, settings as VectorSettings, 'restore target');
      checks.push({ name: 'vector column type', ok: vectorType === meta.vectorType && types[meta.vectorColumn] === meta.columnTypes[meta.vectorColumn], expected: meta.columnTypes[meta.vectorColumn], actual: types[meta.vectorColumn] });
      const sum = new RecordChecksum();
      let nulls = 0;
      let dimError: string | undefined;
      try {
        for await (const r of readRecords(db, table, { id: meta.idColumn, vec: meta.vectorColumn, meta: meta.metadataColumns }, meta.dimensions, elementBytes(meta.vectorType), 1000, table, meta.vectorType !== 'pgvector')) {
          sum.add(r.record);
          if (r.isNull) nulls++;
        }
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        dimError = err.message;
      }
      checks.push({ name: `every vector has ${meta.dimensions} dimensions`, ok: dimError === undefined, actual: dimError ?? meta.dimensions });
      const masked = Object.entries(ctx.masked?.tables ?? {})[0];
      if (dimError === undefined) {
        checks.push({ name: 'vectors: count', ok: sum.count === meta.rows, expected: meta.rows, actual: sum.count });
        checks.push({ name: 'vectors: NULL vectors', ok: nulls === meta.nullVectors, expected: meta.nullVectors, actual: nulls });
        if (masked) {
          // Masked metadata columns differ from the backup by design: ids, vectors and the other
          // columns are compared with their digest taken before masking (after the checksum matched).
          const [t, m] = masked;
          const d = await pgColumnsDigest(db, t, await pgKeptColumns(db, t, m.columns));
          checks.push({ name: `vectors: ids, vectors and unmasked metadata (masked: ${m.columns.join(', ')}; checksum checked before masking)`, ok: d.sha256 === m.unmaskedSha256 && d.rows === m.rows, expected: m.unmaskedSha256, actual: d.sha256 });
        } else {
          checks.push({ name: 'vectors: checksum of ids, vectors and metadata', ok: sum.hex() === meta.checksum, expected: meta.checksum, actual: sum.hex() });
        }
      }
      await db.query('COMMIT');
    } catch (err) {
      checks.push({ name: 'read the restored table', ok: false, actual: (err as Error).message });
    } finally {
      await db?.end().catch(() => undefined);
    }
    return report(checks);
  },

  async mask(ctx: DriverMaskContext<VectorSettings>) {
    const meta = ctx.manifest.driver as unknown as VectorMeta;
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    if (!opts.connection) {
      throw new ConfigError(`components.${ctx.component}.mask: a sanitized restore of a vector component needs a database target (target option url, or components.${ctx.component}.drill for drills); a vector stream file cannot be masked`);
    }
    // The rules name the component's table; the restore may have put it under another name (option table).
    const restored = opts.table ?? meta.table;
    const bare = (t: string) => (t.includes('.') ? t : `public.${t}`);
    const problems: string[] = [];
    const rules = (ctx.rules as TableMaskRule[]).map((r, i) => {
      const where = `${ruleName(ctx.component, i)} (${describeRule(r)})`;
      if (bare(r.table) !== bare(meta.table) && bare(r.table) !== bare(ctx.settings.table)) problems.push(`${where}: a vector component holds one table, ${meta.table}`);
      else if (r.column === meta.idColumn || r.column === meta.vectorColumn) problems.push(`${where}: only metadata columns can be masked (${meta.metadataColumns.join(', ') || 'none'}), not the id or vector column`);
      else if (!meta.metadataColumns.includes(r.column)) problems.push(`${where}: ${meta.table} has no metadata column "${r.column}" (metadata columns: ${meta.metadataColumns.join(', ') || 'none'})`);
      return { ...r, table: restored };
    });
    if (problems.length) throw new ConfigError(problems);
    const conn = await resolvePgConnection(opts.connection, opts.field);
    const db = await connectPg(conn, `${ctx.component}: mask`);
    try {
      return await maskPostgres(db, ctx.component, rules, ctx.key);
    } finally {
      await db.end().catch(() => undefined);
    }
  },
};
