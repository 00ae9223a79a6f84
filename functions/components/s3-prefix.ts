// s3-prefix: the objects under a bucket prefix (model weights, checkpoints, log
// archives), on AWS S3 or any S3-compatible endpoint.
//
// Backup, per object (entry path = key relative to the prefix):
//   - ETag and size equal to the entry of the component's previous backup
//     (not on a `full` backup): reuse that entry's chunk list, no GetObject;
//   - otherwise GetObject and stream the body through the vault. The ETag and
//     size recorded are the ones of the GetObject response, so they always
//     describe the bytes that were read, even if the object changed after the
//     listing.
// Objects that disappear between listing and reading are warnings, not errors.
//
// Partitions: planPartitions() lists the prefix once and cuts it into
// contiguous key ranges (startAfter, endKey] of at most maxObjectsPerPartition
// objects; the first starts at the beginning, the last is open-ended, so keys
// created after planning still land in exactly one partition. The backup-run
// state machine can fan out backupPartition() over the ranges (Map state) and
// concatenate the entries; backup() runs them one after another for the CLI.
//
// Restore: to a bucket/prefix (target options bucket, prefix, endpoint, region,
// forcePathStyle), large objects with a multipart upload; without a bucket,
// into target.dir as files. Validation reads every restored object back and
// compares count, size and SHA-256 with the manifest.
import { loadEntries } from '../core/entry-log.ts';
import { promises as fs, createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { z } from 'zod';
import type { S3Client } from '@aws-sdk/client-s3';
import type {
  Driver, DriverBackupContext, DriverBackupResult, DriverRestoreContext, DriverValidateContext, DrillTargets, Logger, ValidationCheck,
} from './types.ts';
import { report } from './types.ts';
import type { BackupType, Entry, Manifest } from '../core/manifest.ts';
import { readEntry, type BackupWriter } from '../core/writer.ts';
import { appendAll } from '../core/arrays.ts';
import {
  ConfigError, IntegrityError, MemvaultError, NotFoundError, PermanentError, ThrottledError, TransientStorageError, UsageError,
} from '../core/errors.ts';
import { restoreEntryFile, safeJoin } from './restore-file.ts';

export const s3PrefixSchema = z.object({
  /** Source bucket. */
  bucket: z.string().min(1),
  /** Key prefix of the objects, e.g. "models/" ('' for the whole bucket). */
  prefix: z.string().default(''),
  region: z.string().optional(),
  /** An S3-compatible endpoint, e.g. http://127.0.0.1:9000. */
  endpoint: z.string().url().optional(),
  /** @default true with an endpoint */
  forcePathStyle: z.boolean().optional(),
  /**
   * The customer-managed KMS key the objects are encrypted with (SSE-KMS), if
   * any: an AWS deploy grants the backup handlers kms:Decrypt on it through S3.
   * S3 names the key itself on GetObject; this only feeds IAM.
   * @default none (SSE-S3 or the AWS managed aws/s3 key)
   */
  kmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/, 'expected a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)').optional(),
  /** Objects per partition of a backup run (fan-out unit of the state machine). @default 10000 */
  maxObjectsPerPartition: z.number().int().positive().default(10_000),
  /** Where verify-drill restores this component: objects under <prefix><tag>/ per run, deleted after. */
  drill: z.object({
    bucket: z.string().min(1),
    /** @default memvault-drill/ */
    prefix: z.string().default('memvault-drill/'),
    region: z.string().optional(),
    endpoint: z.string().url().optional(),
    forcePathStyle: z.boolean().optional(),
  }).strict().optional(),
});
export type S3PrefixSettings = z.infer<typeof s3PrefixSchema>;

/** A contiguous key range: keys k with startAfter < k <= endKey (open at either end when absent). */
export interface Partition {
  index: number;
  startAfter?: string;
  endKey?: string;
  /** Objects in the range when it was planned. */
  objects: number;
  bytes: number;
}

export interface S3PrefixDeps {
  /** Builds the S3 client for a source or restore target (tests pass an s3rver client). */
  clientFor(o: { region?: string; endpoint?: string; forcePathStyle?: boolean }): S3Client | Promise<S3Client>;
}

// The S3 SDK loads on first use, so other configs never pay its memory.
let s3Module: Promise<typeof import('@aws-sdk/client-s3')> | undefined;
const s3Sdk = () => (s3Module ??= import('@aws-sdk/client-s3'));

const defaultDeps: S3PrefixDeps = {
  clientFor: async (o) => (await import('../adapters/storage/s3.ts')).createS3Client(o),
};

interface SdkErrorLike {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Maps an SDK error onto memvault's error families, naming the bucket/key and the action. */
function s3Error(err: unknown, action: string, where: string): Error {
  if (err instanceof MemvaultError) return err;
  const e = (err ?? {}) as SdkErrorLike;
  const code = e.$metadata?.httpStatusCode;
  const detail = `${e.name ?? 'Error'}${code ? ` (HTTP ${code})` : ''}: ${e.message ?? String(err)}`;
  if (e.name === 'NoSuchBucket') return new NotFoundError(`${action} ${where}: the bucket does not exist`);
  if (e.name === 'NoSuchKey' || code === 404) return new NotFoundError(`${action} ${where}: not found`);
  if (e.name === 'AccessDenied' || code === 403) return new PermanentError(`${action} ${where}: access denied; check the credentials and the bucket policy (${detail})`, { cause: err });
  if (e.name === 'SlowDown' || code === 429 || code === 503) return new ThrottledError(`${action} ${where}: ${detail}`, { cause: err });
  if (code !== undefined && code >= 500) return new TransientStorageError(`${action} ${where}: ${detail}`, { cause: err });
  return new PermanentError(`${action} ${where}: ${detail}`, { cause: err });
}

/** 'models' and '/models/' both mean the keys under 'models/'; '' is the whole bucket. */
export function normPrefix(p: string): string {
  const t = p.replace(/^\/+/, '');
  return t === '' || t.endsWith('/') ? t : `${t}/`;
}

function sourceClient(settings: S3PrefixSettings, deps: S3PrefixDeps): S3Client | Promise<S3Client> {
  return deps.clientFor({ region: settings.region, endpoint: settings.endpoint, forcePathStyle: settings.forcePathStyle });
}

interface Listed { key: string; size: number; etag: string }

/** Lists the objects of a range in key order (ListObjectsV2 returns keys in UTF-8 binary order). */
async function* listRange(client: S3Client, bucket: string, prefix: string, startAfter?: string, endKey?: string): AsyncGenerator<Listed> {
  let ContinuationToken: string | undefined;
  let first = true;
  do {
    let page;
    try {
      page = await client.send(new (await s3Sdk()).ListObjectsV2Command({
        Bucket: bucket, Prefix: prefix || undefined, ContinuationToken, StartAfter: first && startAfter ? startAfter : undefined,
      }));
    } catch (err) {
      throw s3Error(err, 's3:ListBucket', `s3://${bucket}/${prefix}`);
    }
    first = false;
    for (const o of page.Contents ?? []) {
      if (!o.Key) continue;
      if (endKey !== undefined && o.Key > endKey) return;
      if (o.Key.endsWith('/') && (o.Size ?? 0) === 0) continue; // folder markers made by consoles
      yield { key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? '' };
    }
    if (page.IsTruncated && !page.NextContinuationToken) {
      throw new PermanentError(`s3:ListBucket s3://${bucket}/${prefix}: truncated listing without a continuation token`);
    }
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (ContinuationToken);
}

/** Cuts the prefix into contiguous key ranges of at most maxObjectsPerPartition objects each. */
export async function planPartitions(
  settings: Pick<S3PrefixSettings, 'bucket' | 'prefix'>,
  client: S3Client,
  o: { maxObjectsPerPartition: number },
): Promise<Partition[]> {
  if (!(o.maxObjectsPerPartition >= 1)) throw new UsageError(`maxObjectsPerPartition: expected a positive integer, got ${o.maxObjectsPerPartition}`);
  const parts: Partition[] = [];
  let cur: Partition = { index: 0, objects: 0, bytes: 0 };
  let lastKey: string | undefined;
  for await (const obj of listRange(client, settings.bucket, normPrefix(settings.prefix))) {
    if (cur.objects === o.maxObjectsPerPartition) {
      cur.endKey = lastKey;
      parts.push(cur);
      cur = { index: parts.length, startAfter: lastKey, objects: 0, bytes: 0 };
    }
    cur.objects++;
    cur.bytes += obj.size;
    lastKey = obj.key;
  }
  parts.push(cur); // the last range stays open-ended (endKey undefined)
  return parts;
}

export interface PartitionContext {
  component: string;
  type: BackupType;
  parent?: Manifest;
  writer: BackupWriter;
  log: Logger;
}

export interface PartitionResult {
  entries: Entry[];
  warnings: string[];
  objects: number;
  unchanged: number;
  bytes: number;
}

/** Entries of a previous backup by path, for reuse of unchanged objects. */
function previousEntries(parent: Manifest | undefined, type: BackupType): Map<string, Entry> {
  const m = new Map<string, Entry>();
  if (parent && type !== 'full') for (const e of parent.entries) m.set(e.path, e);
  return m;
}

/** Backs up one partition: unchanged objects reuse the parent's chunks, the others are read. */
export async function backupPartition(
  settings: Pick<S3PrefixSettings, 'bucket' | 'prefix'>,
  client: S3Client,
  partition: Pick<Partition, 'startAfter' | 'endKey'>,
  ctx: PartitionContext,
  previous = previousEntries(ctx.parent, ctx.type),
): Promise<PartitionResult> {
  const prefix = normPrefix(settings.prefix);
  const out: PartitionResult = { entries: [], warnings: [], objects: 0, unchanged: 0, bytes: 0 };
  for await (const obj of listRange(client, settings.bucket, prefix, partition.startAfter, partition.endKey)) {
    const rel = obj.key.slice(prefix.length);
    const prev = previous.get(rel);
    if (prev && prev.type === 'file' && prev.chunks && prev.size === obj.size && prev.meta?.etag === obj.etag) {
      out.entries.push(prev);
      ctx.writer.reuse(prev);
      out.objects++;
      out.unchanged++;
      out.bytes += prev.size;
      continue;
    }
    let res;
    try {
      res = await client.send(new (await s3Sdk()).GetObjectCommand({ Bucket: settings.bucket, Key: obj.key }));
    } catch (err) {
      const e = s3Error(err, 's3:GetObject', `s3://${settings.bucket}/${obj.key}`);
      if (e instanceof NotFoundError) { out.warnings.push(`${rel}: vanished during the backup`); continue; }
      throw e;
    }
    const body = res.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
    let r;
    try {
      r = await ctx.writer.writeStream(body ?? Readable.from([]));
    } catch (err) {
      body?.destroy?.();
      throw err;
    }
    if (res.ContentLength !== undefined && r.size !== res.ContentLength) {
      throw new TransientStorageError(`s3:GetObject s3://${settings.bucket}/${obj.key}: body ended after ${r.size} of ${res.ContentLength} bytes`);
    }
    const mtime = res.LastModified ? String(BigInt(res.LastModified.getTime()) * 1_000_000n) : undefined;
    const meta: Record<string, unknown> = { etag: res.ETag ?? obj.etag };
    if (res.ContentType) meta.contentType = res.ContentType;
    if (res.Metadata && Object.keys(res.Metadata).length > 0) meta.metadata = res.Metadata;
    out.entries.push({ path: rel, type: 'file', size: r.size, sha256: r.sha256, chunks: r.chunks, mtimeNs: mtime, meta });
    out.objects++;
    out.bytes += r.size;
  }
  return out;
}

/** Per-object figures recorded in the manifest meta and checked by validate. */
function figures(entries: Entry[]) {
  return { objects: entries.length, bytes: entries.reduce((a, e) => a + e.size, 0) };
}

export interface S3RestoreOptions {
  bucket?: string;
  prefix?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Objects larger than this go up in parts. @default 64 MiB */
  multipartThreshold?: number;
  /** @default 16 MiB (S3's minimum is 5 MiB) */
  partSize?: number;
}

const restoreOptionsSchema = z.object({
  bucket: z.string().min(1).optional(),
  prefix: z.string().default(''),
  endpoint: z.string().url().optional(),
  region: z.string().optional(),
  forcePathStyle: z.boolean().optional(),
  multipartThreshold: z.number().int().positive().default(64 * 1024 * 1024),
  partSize: z.number().int().min(5 * 1024 * 1024).default(16 * 1024 * 1024),
}).strict();

type S3Drill = NonNullable<S3PrefixSettings['drill']>;

/** The scratch prefix of a drill run: <drill.prefix><tag>/. */
function scratchPrefix(drill: S3Drill, tag: string): string {
  return `${normPrefix(drill.prefix)}${tag}/`;
}

/**
 * Restore options; a drill's ({"scratch": true, "tag": ...}) become the
 * component's drill bucket under the run's scratch prefix.
 */
function parseRestoreOptions(component: string, options: Record<string, unknown> | undefined, drill?: S3Drill) {
  if (options?.scratch === true) {
    const tag = options.tag;
    if (!drill) throw new UsageError(`restore options for ${component} (s3-prefix): scratch: the component has no drill setting (components.${component}.drill)`);
    if (typeof tag !== 'string' || !/^d[0-9a-f]{11}$/.test(tag)) throw new UsageError(`restore options for ${component} (s3-prefix): tag: expected the drill's tag, got ${JSON.stringify(tag)}`);
    return { ...restoreOptionsSchema.parse({ bucket: drill.bucket, prefix: scratchPrefix(drill, tag), endpoint: drill.endpoint, region: drill.region, forcePathStyle: drill.forcePathStyle }), scratch: true };
  }
  const r = restoreOptionsSchema.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(`restore options for ${component} (s3-prefix): ${r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}`);
  }
  return { ...r.data, scratch: false };
}

function joinKey(prefix: string, rel: string): string {
  return normPrefix(prefix) + rel;
}

async function putObject(client: S3Client, bucket: string, key: string, e: Entry, vault: DriverRestoreContext<unknown>['vault'], o: { multipartThreshold: number; partSize: number }): Promise<void> {
  const ContentType = typeof e.meta?.contentType === 'string' ? e.meta.contentType : undefined;
  const Metadata = (e.meta?.metadata ?? undefined) as Record<string, string> | undefined;
  if (e.size <= o.multipartThreshold) {
    // Small enough for one PUT: buffer it (an SDK streaming body needs a known length, which we have,
    // but a buffered body lets the SDK retry the request).
    const parts: Buffer[] = [];
    for await (const b of readEntry(vault, e)) parts.push(b);
    await client.send(new (await s3Sdk()).PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.concat(parts), ContentLength: e.size, ContentType, Metadata }));
    return;
  }
  const { UploadId } = await client.send(new (await s3Sdk()).CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType, Metadata }));
  const done: { ETag: string; PartNumber: number }[] = [];
  try {
    let buf: Buffer[] = [];
    let len = 0;
    const flush = async () => {
      const PartNumber = done.length + 1;
      const Body = Buffer.concat(buf);
      const r = await client.send(new (await s3Sdk()).UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber, Body, ContentLength: Body.length }));
      done.push({ ETag: r.ETag!, PartNumber });
      buf = [];
      len = 0;
    };
    for await (const b of readEntry(vault, e)) {
      buf.push(b);
      len += b.length;
      if (len >= o.partSize) await flush();
    }
    if (len > 0 || done.length === 0) await flush();
    await client.send(new (await s3Sdk()).CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: done } }));
  } catch (err) {
    await client.send(new (await s3Sdk()).AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw err;
  }
}

async function hashObject(client: S3Client, bucket: string, key: string): Promise<{ size: number; sha256: string }> {
  const res = await client.send(new (await s3Sdk()).GetObjectCommand({ Bucket: bucket, Key: key }));
  const h = createHash('sha256');
  let size = 0;
  for await (const b of (res.Body as AsyncIterable<Uint8Array>) ?? []) {
    h.update(b);
    size += b.length;
  }
  return { size, sha256: h.digest('hex') };
}

async function hashLocal(p: string): Promise<{ size: number; sha256: string }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const b of createReadStream(p, { highWaterMark: 1024 * 1024 })) {
    h.update(b as Buffer);
    size += (b as Buffer).length;
  }
  return { size, sha256: h.digest('hex') };
}

export function createS3PrefixDriver(deps: S3PrefixDeps = defaultDeps): Driver<S3PrefixSettings> & DrillTargets<S3PrefixSettings> & {
  planPartitions(settings: S3PrefixSettings): Promise<Partition[]>;
  backupPartition(settings: S3PrefixSettings, partition: Pick<Partition, 'startAfter' | 'endKey'>, ctx: PartitionContext): Promise<PartitionResult>;
} {
  return {
    kind: 's3-prefix',
    mode: 'stream',
    schema: s3PrefixSchema,
    networkTargetFields: 'bucket, prefix (and endpoint, region, forcePathStyle)',
    isNetworkTarget: (o) => !!o && (o.bucket !== undefined || o.scratch === true),

    drillTarget(ctx) {
      const d = ctx.settings.drill;
      if (!d) return undefined;
      const s = ctx.settings;
      // Never restore into (and delete under) the live objects: a scratch prefix inside the source is refused.
      if (d.bucket === s.bucket && (d.endpoint ?? '') === (s.endpoint ?? '') && scratchPrefix(d, ctx.tag).startsWith(normPrefix(s.prefix))) {
        throw new ConfigError(`components.${ctx.component}.drill.prefix: "${d.prefix}" in bucket ${d.bucket} lies inside the source prefix "${s.prefix}"; drill into another bucket or a prefix outside the source`);
      }
      return { scratch: true, tag: ctx.tag };
    },

    async cleanupTarget(ctx) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill);
      if (!o.scratch || !o.bucket) throw new UsageError(`${ctx.component}: drill cleanup: the target is not the component's drill target`);
      const client = await deps.clientFor({ region: o.region, endpoint: o.endpoint, forcePathStyle: o.forcePathStyle });
      const S3 = await s3Sdk();
      let deleted = 0;
      let batch: string[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        let r;
        try {
          r = await client.send(new S3.DeleteObjectsCommand({ Bucket: o.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
        } catch (err) {
          throw s3Error(err, 's3:DeleteObject', `s3://${o.bucket}/${o.prefix}`);
        }
        if (r.Errors?.length) throw new PermanentError(`s3:DeleteObject s3://${o.bucket}/${r.Errors[0].Key}: ${r.Errors[0].Code}: ${r.Errors[0].Message} (${r.Errors.length} objects not deleted)`);
        deleted += batch.length;
        batch = [];
      };
      // Lists again after each pass: keys deleted while listing do not hide others.
      for (;;) {
        for await (const obj of listRange(client, o.bucket, o.prefix)) {
          batch.push(obj.key);
          if (batch.length >= 1000) await flush();
        }
        if (batch.length === 0) break;
        await flush();
      }
      return `${deleted} objects under s3://${o.bucket}/${o.prefix} deleted`;
    },

    async planPartitions(settings: S3PrefixSettings) {
      return planPartitions(settings, await sourceClient(settings, deps), { maxObjectsPerPartition: settings.maxObjectsPerPartition });
    },

    /** One partition of a fanned-out backup (the backup-run state machine's Map over planPartitions()). */
    async backupPartition(settings: S3PrefixSettings, partition: Pick<Partition, 'startAfter' | 'endKey'>, ctx: PartitionContext) {
      return backupPartition(settings, await sourceClient(settings, deps), partition, ctx);
    },

    async backup(ctx: DriverBackupContext<S3PrefixSettings>): Promise<DriverBackupResult> {
      const s = ctx.settings;
      const client = await sourceClient(s, deps);
      const parts = await planPartitions(s, client, { maxObjectsPerPartition: s.maxObjectsPerPartition });
      // The parent's objects by key (an S3 listing is not in walk order; partitioned runs read them per partition).
      const parent = ctx.parent && ctx.type !== 'full' ? { ...ctx.parent, entries: await loadEntries(ctx.writer.vault, ctx.parent) } : undefined;
      const previous = previousEntries(parent, ctx.type);
      const entries: Entry[] = [];
      const warnings: string[] = [];
      let unchanged = 0;
      for (const p of parts) {
        const r = await backupPartition(s, client, p, { component: ctx.component, type: ctx.type, parent, writer: ctx.writer, log: ctx.log }, previous);
        appendAll(entries, r.entries);
        appendAll(warnings, r.warnings);
        unchanged += r.unchanged;
        ctx.log.info('s3-prefix partition done', { component: ctx.component, partition: p.index, objects: r.objects, unchanged: r.unchanged });
      }
      return {
        entries,
        meta: { source: `s3://${s.bucket}/${normPrefix(s.prefix)}`, partitions: parts.length, unchanged, ...figures(entries) },
        warnings,
      };
    },

    async restore(ctx: DriverRestoreContext<S3PrefixSettings>) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill);
      const files = (await loadEntries(ctx.vault, ctx.manifest)).filter((e) => e.type === 'file');
      let bytes = 0;
      if (o.bucket) {
        const client = await deps.clientFor({ region: o.region, endpoint: o.endpoint, forcePathStyle: o.forcePathStyle });
        for (const e of files) {
          const key = joinKey(o.prefix, e.path);
          try {
            await putObject(client, o.bucket, key, e, ctx.vault, o);
          } catch (err) {
            if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${e.path}: ${err.message}`, err.objectKey);
            throw s3Error(err, 's3:PutObject', `s3://${o.bucket}/${key}`);
          }
          bytes += e.size;
        }
        return { location: `s3://${o.bucket}/${normPrefix(o.prefix)}`, bytes, entries: files.length };
      }
      const dest = ctx.target.dir;
      await fs.mkdir(dest, { recursive: true });
      for (const e of files) bytes += await restoreEntryFile(ctx.vault, ctx.component, e, safeJoin(dest, e.path));
      return { location: dest, bytes, entries: files.length };
    },

    async validate(ctx: DriverValidateContext<S3PrefixSettings>) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill);
      const files = (await loadEntries(ctx.vault, ctx.manifest)).filter((e) => e.type === 'file');
      const problems: string[] = [];
      let ok = 0;
      let bytes = 0;
      const client = o.bucket ? await deps.clientFor({ region: o.region, endpoint: o.endpoint, forcePathStyle: o.forcePathStyle }) : undefined;
      for (const e of files) {
        let got: { size: number; sha256: string };
        try {
          got = client ? await hashObject(client, o.bucket!, joinKey(o.prefix, e.path)) : await hashLocal(safeJoin(ctx.location, e.path));
        } catch (err) {
          problems.push(`${e.path}: ${(err as SdkErrorLike).name === 'NoSuchKey' || (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`);
          continue;
        }
        if (got.size !== e.size) { problems.push(`${e.path}: size ${got.size}, expected ${e.size}`); continue; }
        if (got.sha256 !== e.sha256) { problems.push(`${e.path}: SHA-256 differs`); continue; }
        ok++;
        bytes += got.size;
      }
      const expected = figures(files);
      const checks: ValidationCheck[] = [
        { name: 'objects restored with matching size and SHA-256', ok: ok === expected.objects && problems.length === 0, expected: expected.objects, actual: ok },
        { name: 'bytes', ok: bytes === expected.bytes, expected: expected.bytes, actual: bytes },
        { name: 'object count recorded at backup', ok: ctx.manifest.driver.objects === undefined || ctx.manifest.driver.objects === files.length, expected: ctx.manifest.driver.objects, actual: files.length },
      ];
      if (client) {
        let present = 0;
        for await (const _ of listRange(client, o.bucket!, normPrefix(o.prefix))) present++;
        checks.push({ name: 'objects under the target prefix', ok: present === expected.objects, expected: expected.objects, actual: present });
      }
      if (problems.length > 0) checks.push({ name: 'problems', ok: false, actual: problems.slice(0, 20) });
      return report(checks);
    },
  };
}

export const s3PrefixDriver = createS3PrefixDriver();
