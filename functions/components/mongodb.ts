// mongodb (also Amazon DocumentDB): every collection of the configured
// databases as canonical Extended JSON, one NDJSON entry per collection
// (`<db>/<collection>.ndjson`) plus one metadata entry (`_metadata.json`:
// collection options, indexes, views, figures).
//
// Export: cursor (find, batchSize, promoteValues off so Int32/Long/Double/
// Decimal128/Binary/Date/ObjectId keep their exact BSON types) -> one EJSON
// line per document -> ~64 KiB buffers -> writer.writeStream. Nothing is held
// in memory beyond one buffer and the cursor's batch.
//
// Consistency: with `snapshot: auto` (default) or `required` every find runs
// in one snapshot session (startSession({ snapshot: true }), i.e. readConcern
// "snapshot" with the atClusterTime fixed by the first read), so all
// collections are read at one point in time while writers are active. This
// needs MongoDB >= 5.0 on a replica set or sharded cluster; the snapshot must
// stay within the server's minSnapshotHistoryWindowInSeconds (default 300 s),
// so very long dumps need a larger window or `snapshot: off`. Where snapshot
// reads are not supported (standalone mongod, Amazon DocumentDB), `auto` falls
// back to plain reads (each collection consistent only with itself) and says
// so in the manifest (`consistency: "per-collection"`) and in a warning log;
// `required` fails instead.
//
// Checksum per collection: the sum modulo 2^256 of the SHA-256 of each
// document's canonical EJSON line, so it does not depend on the order the
// server returns documents in; validation recomputes it from the restored
// collection, together with the count and the index names.
//
// Restore: with a target `uri` (or `uriEnv`), recreates collections (with
// their options), inserts the documents with insertMany in batches, then
// creates the indexes and views; a non-empty target collection is an error
// unless `dropExisting`. Without a uri the dump is written to target.dir as
// files (mongoimport-compatible canonical EJSON lines).
//
// Tests: no MongoDB server runs in this environment, so the driver is tested
// against an in-memory test double of the MongoClient API it uses
// (test/helpers/mongodb-double.ts), injected with createMongodbDriver({ connect }).
import { withEntries } from '../core/entry-log.ts';
import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { BSON, MongoClient, ClientSession, Document, IndexDescription } from 'mongodb';
import type {
  Driver, DriverBackupContext, DriverBackupResult, DriverRestoreContext, DriverValidateContext, ValidationCheck,
  DrillTargets,
} from './types.ts';
import { report } from './types.ts';
import type { Entry } from '../core/manifest.ts';
import type { Vault } from '../core/vault.ts';
import { readEntry } from '../core/writer.ts';
import { ConfigError, IntegrityError, PermanentError, RetryableError, UsageError } from '../core/errors.ts';
import { safeJoin } from './restore-file.ts';
import { restoreEntriesToDir } from './restore-file.ts';
import { readDatabaseSecret, redactUrlsIn, requireSecretField, SECRET_ARN, SECRET_ARN_MESSAGE } from '../adapters/secrets.ts';

let mongoModule: Promise<typeof import('mongodb')> | undefined;
let EJSON: typeof BSON.EJSON;
/** The MongoDB driver, loaded on first use (every driver entry point awaits it) so other configs never pay its memory. */
function mongoLib(): Promise<typeof import('mongodb')> {
  return (mongoModule ??= import('mongodb').then((m) => {
    EJSON = m.BSON.EJSON;
    return m;
  }));
}

export const mongodbSchema = z.object({
  /** Connection string. With secretArn, without a password (the secret supplies the credentials). */
  uri: z.string().optional(),
  /** Name of an environment variable holding the connection string (local runtime only: refused for AWS deploys). */
  uriEnv: z.string().optional(),
  /**
   * Secrets Manager secret with the credentials (the way on AWS): JSON with
   * "uri" (a whole connection string), or "username" and "password" (with
   * "host", "port" and "ssl" when uri is not set: the DocumentDB layout).
   */
  secretArn: z.string().regex(SECRET_ARN, SECRET_ARN_MESSAGE).optional(),
  /** Databases to back up. */
  databases: z.array(z.string().min(1)).min(1),
  /** Only these collections (all when absent). */
  collections: z.array(z.string()).optional(),
  /** Documents per cursor batch. @default 1000 */
  batchSize: z.number().int().positive().default(1000),
  /** auto: snapshot session when the server supports it; required: fail without; off: plain reads. @default auto */
  snapshot: z.enum(['auto', 'required', 'off']).default('auto'),
  /** Where verify-drill restores this component: databases <databasePrefix><tag>_<name> per run, dropped after. */
  drill: z.object({
    uri: z.string().optional(),
    uriEnv: z.string().optional(),
    /** Secrets Manager secret holding the connection string (resolved with the component's credentials, see README). */
    secretArn: z.string().optional(),
    /** @default memvault_drill_ */
    databasePrefix: z.string().regex(/^[A-Za-z0-9_-]{1,20}$/, 'expected up to 20 letters, digits, _ or -').default('memvault_drill_'),
  }).strict().refine((d) => d.uri !== undefined || d.uriEnv !== undefined || d.secretArn !== undefined, 'set uri, uriEnv or secretArn: the server drills restore into').optional(),
});
export type MongodbSettings = z.infer<typeof mongodbSchema>;

export interface MongodbDeps {
  /** Returns a connected client (tests inject a test double). */
  connect(uri: string): Promise<MongoClient>;
}

const defaultDeps: MongodbDeps = {
  connect: async (uri) => new (await mongoLib()).MongoClient(uri).connect(),
};

/** Read options keeping every BSON type exact, so canonical EJSON round-trips. */
const EXACT_TYPES = { promoteValues: false, promoteBuffers: false, promoteLongs: false, bsonRegExp: true } as const;
const META_PATH = '_metadata.json';
const BUFFER_BYTES = 64 * 1024;
const MOD = 1n << 256n;

/** Order-independent checksum of a set of documents: sum of SHA-256 per canonical EJSON line, mod 2^256. */
export class CollectionDigest {
  private sum = 0n;
  documents = 0;
  add(line: string): void {
    this.sum = (this.sum + BigInt(`0x${createHash('sha256').update(line).digest('hex')}`)) % MOD;
    this.documents++;
  }
  get hex(): string {
    return this.sum.toString(16).padStart(64, '0');
  }
}

export interface CollectionMeta {
  name: string;
  type: 'collection' | 'view';
  /** listCollections options (validator, capped, viewOn/pipeline for views), canonical EJSON. */
  options: Document;
  /** listIndexes output without the implicit _id_ index, canonical EJSON. */
  indexes: Document[];
  documents?: number;
  checksum?: string;
  /** The NDJSON entry holding the documents. */
  entry?: string;
}

export interface MongodbMetadata {
  format: 'memvault-mongodb/1';
  consistency: 'snapshot' | 'per-collection';
  atClusterTime?: string;
  databases: Record<string, CollectionMeta[]>;
}

/**
 * The connection string of a source or target: `uri` (local: may carry the
 * password), `uriEnv` (local runtime only), or the Secrets Manager secret:
 * its "uri" field as is, else its "username" and "password" put into `uri`
 * (when set, without a password) or into mongodb://host:port/ from its
 * "host" and "port" (the DocumentDB secret layout; "ssl": true adds tls=true).
 */
async function connectionString(component: string, o: { uri?: string; uriEnv?: string; secretArn?: string }, field: string): Promise<string> {
  if (o.secretArn) {
    const sf = `${field}.secretArn`;
    const sec = await readDatabaseSecret(o.secretArn, sf);
    if (sec.uri) return sec.uri;
    const why = 'the DocumentDB layout {"username", "password", "host", "port"}, or {"uri": "mongodb://..."}';
    const user = requireSecretField(sec, 'username', o.secretArn, sf, why);
    const password = requireSecretField(sec, 'password', o.secretArn, sf, why);
    let base = o.uri;
    if (!base) {
      const host = requireSecretField(sec, 'host', o.secretArn, sf, `${field} has no uri, so the secret must name the host: ${why}`);
      base = `mongodb://${host}:${sec.port ?? 27017}/${sec.ssl ? '?tls=true' : ''}`;
    }
    const m = /^(mongodb(?:\+srv)?:\/\/)(?:[^@/]*@)?(.*)$/.exec(base);
    if (!m) throw new ConfigError(`${field}.uri: expected mongodb://host:port/... or mongodb+srv://host/...`);
    return `${m[1]}${encodeURIComponent(user)}:${encodeURIComponent(password)}@${m[2]}`;
  }
  if (o.uri) return o.uri;
  if (o.uriEnv) {
    const v = process.env[o.uriEnv];
    if (!v) throw new ConfigError(`${field}.uriEnv: environment variable ${o.uriEnv} is not set (it should hold the MongoDB connection string)`);
    return v;
  }
  throw new ConfigError(`${field}: set secretArn (a Secrets Manager secret with the credentials), uri or uriEnv (the MongoDB connection string) for ${component}`);
}

/** Errors meaning "this server does not do snapshot reads" (standalone, DocumentDB, < 5.0). */
function snapshotUnsupported(err: unknown): boolean {
  const e = err as { code?: number; codeName?: string; message?: string };
  if (e?.code !== undefined && [20, 72, 115, 303].includes(e.code)) return true;
  return /snapshot|readConcern|replica set member or mongos/i.test(e?.message ?? '');
}

function describeMongoError(err: unknown, what: string): Error {
  const e = err as { name?: string; code?: number; codeName?: string; message?: string };
  if (err instanceof PermanentError || err instanceof RetryableError) return err;
  // The driver's messages may quote the connection string (parse errors): never its password.
  if (e?.message) e.message = redactUrlsIn(e.message);
  if (e?.code === 239 || e?.codeName === 'SnapshotTooOld') {
    return new PermanentError(`${what}: the snapshot fell out of the server's history window (SnapshotTooOld); raise minSnapshotHistoryWindowInSeconds or set snapshot: off`, { cause: err });
  }
  if (e?.code === 13 || e?.code === 18 || e?.codeName === 'Unauthorized' || e?.codeName === 'AuthenticationFailed') {
    return new PermanentError(`${what}: not authorized (${e.message}); the user needs the backup or read role`, { cause: err });
  }
  if (e?.name === 'MongoNetworkError' || e?.name === 'MongoServerSelectionError' || e?.name === 'MongoNetworkTimeoutError') {
    return new RetryableError(`${what}: ${e.message}`, { cause: err });
  }
  return new PermanentError(`${what}: ${e?.message ?? String(err)}`, { cause: err });
}

/** Canonical EJSON of a value, parsed back to a plain JSON tree (for the metadata entry). */
function toCanonical(v: unknown): Document {
  return JSON.parse(EJSON.stringify(v, { relaxed: false }));
}

function fromCanonical(v: Document): Document {
  return EJSON.deserialize(v, { relaxed: false }) as Document;
}

async function* ndjson(cursor: AsyncIterable<Document>, digest: CollectionDigest): AsyncGenerator<Buffer> {
  let parts: string[] = [];
  let len = 0;
  for await (const doc of cursor) {
    const line = EJSON.stringify(doc, { relaxed: false });
    digest.add(line);
    parts.push(line, '\n');
    len += line.length + 1;
    if (len >= BUFFER_BYTES) {
      yield Buffer.from(parts.join(''));
      parts = [];
      len = 0;
    }
  }
  if (len > 0) yield Buffer.from(parts.join(''));
}

/** Lines of an NDJSON entry read back from the vault. */
async function* lines(src: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let rest = '';
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for await (const b of src) {
    const text = rest + decoder.decode(b, { stream: true });
    const parts = text.split('\n');
    rest = parts.pop()!;
    for (const l of parts) if (l) yield l;
  }
  rest += decoder.decode();
  if (rest) yield rest;
}

async function readWhole(vault: Vault, e: Entry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of readEntry(vault, e)) parts.push(b);
  return Buffer.concat(parts);
}

function isSystem(name: string): boolean {
  return name.startsWith('system.');
}

function indexSpecs(indexes: Document[]): IndexDescription[] {
  return indexes.map((ix) => {
    const { v: _v, ns: _ns, ...rest } = fromCanonical(ix);
    return rest as IndexDescription;
  });
}

export interface MongoRestoreOptions {
  uri?: string;
  uriEnv?: string;
  /** Secrets Manager secret of the target, read as a source's secretArn. */
  secretArn?: string;
  /** Restore database A as B: { "memory": "memory_restored" }. */
  databaseMap?: Record<string, string>;
  /** Drop target collections that already hold documents. @default false */
  dropExisting?: boolean;
  /** Documents per insertMany. @default 1000 */
  batchSize?: number;
}

const restoreOptionsSchema = z.object({
  uri: z.string().optional(),
  uriEnv: z.string().optional(),
  secretArn: z.string().regex(SECRET_ARN, SECRET_ARN_MESSAGE).optional(),
  databaseMap: z.record(z.string(), z.string().min(1)).default({}),
  dropExisting: z.boolean().default(false),
  batchSize: z.number().int().positive().default(1000),
}).strict();

type MongodbDrill = NonNullable<MongodbSettings['drill']>;

/** The scratch database of a drill for a backed-up database (MongoDB names: at most 63 bytes here). */
function scratchName(drill: MongodbDrill, tag: string, db: string): string {
  return `${drill.databasePrefix}${tag}_${db}`.slice(0, 63);
}

/**
 * Restore options; a drill's ({"scratch": true, "tag": ...}) become the
 * component's drill server and one scratch database per backed-up database,
 * so no connection string travels in the execution input.
 */
function parseRestoreOptions(component: string, options: Record<string, unknown> | undefined, drill?: MongodbDrill, databases: string[] = []) {
  if (options?.scratch === true) {
    const tag = options.tag;
    if (!drill) throw new UsageError(`restore options for ${component} (mongodb): scratch: the component has no drill setting (components.${component}.drill)`);
    if (typeof tag !== 'string' || !/^d[0-9a-f]{11}$/.test(tag)) throw new UsageError(`restore options for ${component} (mongodb): tag: expected the drill's tag, got ${JSON.stringify(tag)}`);
    return { uri: drill.uri, uriEnv: drill.uriEnv, secretArn: drill.secretArn, databaseMap: Object.fromEntries(databases.map((d) => [d, scratchName(drill, tag, d)])), dropExisting: false, batchSize: 1000, scratch: true as boolean };
  }
  const r = restoreOptionsSchema.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(`restore options for ${component} (mongodb): ${r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}`);
  }
  return { ...r.data, scratch: false as boolean };
}

/** The databases a manifest holds (the configured list at backup time). */
function backedUpDatabases(m: { driver: Record<string, unknown> }): string[] {
  const d = m.driver.databases;
  return Array.isArray(d) ? d.map(String) : [];
}

async function readMetadata(ctx: { component: string; manifest: { id: string; entries: Entry[] }; vault: Vault }): Promise<MongodbMetadata> {
  const e = ctx.manifest.entries.find((x) => x.path === META_PATH);
  if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no ${META_PATH} entry`);
  return JSON.parse((await readWhole(ctx.vault, e)).toString('utf8')) as MongodbMetadata;
}

export function createMongodbDriver(deps: MongodbDeps = defaultDeps): Driver<MongodbSettings> & DrillTargets<MongodbSettings> {
  return {
    kind: 'mongodb',
    mode: 'stream',
    schema: mongodbSchema,
    networkTargetFields: 'uri or uriEnv (the MongoDB connection string); databaseMap ({"memory": "memory_restored"}), dropExisting',
    isNetworkTarget: (o) => !!o && (o.uri !== undefined || o.uriEnv !== undefined || o.scratch === true),
    drillTarget: (ctx) => (ctx.settings.drill ? { scratch: true, tag: ctx.tag } : undefined),

    async cleanupTarget(ctx) {
      await mongoLib();
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill, backedUpDatabases(ctx.manifest));
      if (!o.scratch) throw new UsageError(`${ctx.component}: drill cleanup: the target is not the component's drill target`);
      const client = await deps.connect(await connectionString(ctx.component, o, `components.${ctx.component}.drill`)).catch((err) => {
        throw describeMongoError(err, `${ctx.component}: drill cleanup: connect`);
      });
      try {
        const names = Object.values(o.databaseMap);
        for (const n of names) {
          try {
            await client.db(n).dropDatabase();
          } catch (err) {
            throw describeMongoError(err, `${ctx.component}: drill cleanup: dropDatabase ${n}`);
          }
        }
        return `databases ${names.join(', ')} dropped`;
      } finally {
        await client.close().catch(() => undefined);
      }
    },

    async backup(ctx: DriverBackupContext<MongodbSettings>): Promise<DriverBackupResult> {
      await mongoLib();
      const s = ctx.settings;
      const field = `components.${ctx.component}`;
      const client = await deps.connect(await connectionString(ctx.component, s, field)).catch((err) => {
        throw describeMongoError(err, `${ctx.component}: connect`);
      });
      let session: ClientSession | undefined;
      try {
        const meta: MongodbMetadata = { format: 'memvault-mongodb/1', consistency: 'per-collection', databases: {} };
        const entries: Entry[] = [];
        const warnings: string[] = [];
        const figures: Record<string, { documents: number; checksum: string; indexes: string[] }> = {};
        if (s.snapshot !== 'off') session = client.startSession({ snapshot: true });
        let probed = false;
        for (const dbName of s.databases) {
          const db = client.db(dbName);
          let infos;
          try {
            infos = (await db.listCollections({}, { nameOnly: false }).toArray()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          } catch (err) {
            throw describeMongoError(err, `${ctx.component}: listCollections on ${dbName}`);
          }
          const wanted = s.collections ? new Set(s.collections) : undefined;
          const list: CollectionMeta[] = [];
          for (const info of infos) {
            if (isSystem(info.name) || (wanted && !wanted.has(info.name))) continue;
            if (info.type === 'view') {
              list.push({ name: info.name, type: 'view', options: toCanonical(info.options ?? {}), indexes: [] });
              continue;
            }
            if (info.type && info.type !== 'collection') {
              warnings.push(`${dbName}.${info.name}: ${info.type} collections are not backed up`);
              continue;
            }
            const coll = db.collection(info.name);
            if (session && !probed) {
              // The first read fixes the snapshot's atClusterTime; it also tells whether the server supports it.
              try {
                await coll.find({}, { session, limit: 1, batchSize: 1 }).toArray();
              } catch (err) {
                if (s.snapshot === 'auto' && snapshotUnsupported(err)) {
                  ctx.log.warn('snapshot reads not supported; collections are read one by one (each consistent with itself)', { component: ctx.component });
                  await session.endSession();
                  session = undefined;
                } else if (snapshotUnsupported(err)) {
                  throw new PermanentError(`${field}.snapshot: required, but the server does not support snapshot reads (${(err as Error).message}); use MongoDB >= 5.0 on a replica set, or set snapshot: auto`);
                } else {
                  throw describeMongoError(err, `${ctx.component}: find on ${dbName}.${info.name}`);
                }
              }
              probed = true;
              if (session) {
                meta.consistency = 'snapshot';
                const t = (session as unknown as { snapshotTime?: unknown }).snapshotTime;
                if (t) meta.atClusterTime = EJSON.stringify(t, { relaxed: false });
              }
            }
            let indexes: Document[];
            try {
              indexes = (await coll.indexes()).filter((ix) => ix.name !== '_id_').map(toCanonical);
            } catch (err) {
              throw describeMongoError(err, `${ctx.component}: listIndexes on ${dbName}.${info.name}`);
            }
            const digest = new CollectionDigest();
            const cursor = coll.find({}, { ...EXACT_TYPES, batchSize: s.batchSize, ...(session ? { session } : {}) });
            let r;
            try {
              r = await ctx.writer.writeStream(ndjson(cursor, digest));
            } catch (err) {
              throw describeMongoError(err, `${ctx.component}: reading ${dbName}.${info.name}`);
            } finally {
              await cursor.close().catch(() => undefined);
            }
            const entryPath = `${dbName}/${info.name}.ndjson`;
            entries.push({ path: entryPath, type: 'file', size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { documents: digest.documents, checksum: digest.hex } });
            list.push({ name: info.name, type: 'collection', options: toCanonical(info.options ?? {}), indexes, documents: digest.documents, checksum: digest.hex, entry: entryPath });
            figures[`${dbName}.${info.name}`] = { documents: digest.documents, checksum: digest.hex, indexes: indexes.map((ix) => String(ix.name)).sort() };
          }
          meta.databases[dbName] = list;
        }
        const m = await ctx.writer.writeBuffer(Buffer.from(JSON.stringify(meta)));
        entries.push({ path: META_PATH, type: 'file', size: m.size, sha256: m.sha256, chunks: m.chunks });
        return {
          entries,
          meta: { consistency: meta.consistency, atClusterTime: meta.atClusterTime, databases: s.databases, collections: figures },
          warnings,
        };
      } finally {
        await session?.endSession().catch(() => undefined);
        await client.close().catch(() => undefined);
      }
    },

    async restore(hctx: DriverRestoreContext<MongodbSettings>) {
      const ctx = { ...hctx, manifest: await withEntries(hctx.vault, hctx.manifest) };
      await mongoLib();
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill, backedUpDatabases(ctx.manifest));
      const meta = await readMetadata(ctx);
      if (!o.uri && !o.uriEnv && !o.secretArn) {
        // No database given: the dump as files (canonical EJSON lines, importable with mongoimport).
        const dest = ctx.target.dir;
        const bytes = await restoreEntriesToDir(ctx.vault, ctx.component, ctx.manifest.entries, dest);
        return { location: dest, bytes, entries: ctx.manifest.entries.length };
      }
      const client = await deps.connect(await connectionString(ctx.component, o, 'restore options')).catch((err) => {
        throw describeMongoError(err, `${ctx.component}: connect to the restore target`);
      });
      let bytes = 0;
      let documents = 0;
      try {
        for (const [dbName, list] of Object.entries(meta.databases)) {
          const target = o.databaseMap[dbName] ?? dbName;
          const db = client.db(target);
          const existing = new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
          for (const c of list.filter((x) => x.type === 'collection')) {
            const where = `${target}.${c.name}`;
            if (existing.has(c.name)) {
              const coll = db.collection(c.name);
              if (o.dropExisting) {
                await coll.drop();
                existing.delete(c.name);
              } else if ((await coll.countDocuments({})) > 0) {
                throw new PermanentError(`${ctx.component}: restore target collection ${where} already holds documents; restore into a fresh database (databaseMap) or pass dropExisting: true`);
              }
            }
            if (!existing.has(c.name)) await db.createCollection(c.name, fromCanonical(c.options));
            const coll = db.collection(c.name);
            const e = ctx.manifest.entries.find((x) => x.path === c.entry);
            if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no entry ${c.entry}`);
            let batch: Document[] = [];
            let batchBytes = 0;
            const flush = async () => {
              if (batch.length === 0) return;
              try {
                await coll.insertMany(batch, { ordered: true });
              } catch (err) {
                throw describeMongoError(err, `${ctx.component}: insertMany into ${where}`);
              }
              documents += batch.length;
              batch = [];
              batchBytes = 0;
            };
            try {
              for await (const line of lines(readEntry(ctx.vault, e))) {
                batch.push(EJSON.parse(line, { relaxed: false }) as Document);
                batchBytes += line.length;
                if (batch.length >= o.batchSize || batchBytes >= 8 * 1024 * 1024) await flush();
              }
              await flush();
            } catch (err) {
              if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${e.path}: ${err.message}`, err.objectKey);
              throw err;
            }
            bytes += e.size;
            if (c.indexes.length > 0) {
              try {
                await coll.createIndexes(indexSpecs(c.indexes));
              } catch (err) {
                throw describeMongoError(err, `${ctx.component}: createIndexes on ${where}`);
              }
            }
          }
          for (const v of list.filter((x) => x.type === 'view')) {
            if (existing.has(v.name) && o.dropExisting) await db.collection(v.name).drop();
            await db.createCollection(v.name, fromCanonical(v.options));
          }
        }
      } finally {
        await client.close().catch(() => undefined);
      }
      const dbs = Object.keys(meta.databases).map((d) => o.databaseMap[d] ?? d);
      ctx.log.info('mongodb restore finished', { component: ctx.component, databases: dbs, documents });
      return { location: `mongodb databases ${dbs.join(', ')}`, bytes, entries: ctx.manifest.entries.length };
    },

    async validate(hctx: DriverValidateContext<MongodbSettings>) {
      const ctx = { ...hctx, manifest: await withEntries(hctx.vault, hctx.manifest) };
      await mongoLib();
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill, backedUpDatabases(ctx.manifest));
      const expected = (ctx.manifest.driver.collections ?? {}) as Record<string, { documents: number; checksum: string; indexes: string[] }>;
      const checks: ValidationCheck[] = [];
      const seen = new Set<string>();
      if (!o.uri && !o.uriEnv && !o.secretArn) {
        for (const e of ctx.manifest.entries) {
          if (e.path === META_PATH) continue;
          const key = e.path.replace(/\.ndjson$/, '').replace('/', '.');
          const exp = expected[key];
          seen.add(key);
          const digest = new CollectionDigest();
          try {
            for await (const l of lines(createReadStream(safeJoin(ctx.location, e.path)) as AsyncIterable<Buffer>)) digest.add(l);
          } catch (err) {
            checks.push({ name: `${key}: read restored file`, ok: false, actual: (err as Error).message });
            continue;
          }
          checks.push({ name: `${key}: documents`, ok: digest.documents === exp?.documents, expected: exp?.documents, actual: digest.documents });
          checks.push({ name: `${key}: checksum`, ok: digest.hex === exp?.checksum });
        }
      } else {
        const client = await deps.connect(await connectionString(ctx.component, o, 'restore options'));
        try {
          for (const key of Object.keys(expected)) {
            const dot = key.indexOf('.');
            const dbName = key.slice(0, dot);
            const name = key.slice(dot + 1);
            const exp = expected[key];
            const coll = client.db(o.databaseMap[dbName] ?? dbName).collection(name);
            seen.add(key);
            const count = await coll.countDocuments({});
            checks.push({ name: `${key}: documents`, ok: count === exp.documents, expected: exp.documents, actual: count });
            const digest = new CollectionDigest();
            for await (const doc of coll.find({}, { ...EXACT_TYPES, batchSize: 1000 })) digest.add(EJSON.stringify(doc, { relaxed: false }));
            checks.push({ name: `${key}: checksum`, ok: digest.hex === exp.checksum && digest.documents === exp.documents });
            const names = (await coll.indexes()).map((ix) => String(ix.name)).filter((n) => n !== '_id_').sort();
            checks.push({ name: `${key}: indexes`, ok: JSON.stringify(names) === JSON.stringify(exp.indexes), expected: exp.indexes, actual: names });
          }
        } finally {
          await client.close().catch(() => undefined);
        }
      }
      const missing = Object.keys(expected).filter((k) => !seen.has(k));
      checks.push({ name: 'every collection of the backup restored', ok: missing.length === 0, actual: missing });
      return report(checks);
    },
  };
}

export const mongodbDriver = createMongodbDriver();
