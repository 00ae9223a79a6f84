// Shared machinery of the service snapshot drivers (rds-snapshot for RDS
// instances, aurora-snapshot for Aurora and DocumentDB clusters). The service
// keeps the data; the vault keeps the record (snapshot ids and ARNs in both
// regions, engine, keys, sizes, times) in the manifest's `driver` field.
//
// A backup is a small state machine the backup-run state machine drives with a
// Wait + poll loop (the CLI's backup() runs the same steps with a sleep):
//   start    check the source and settings, create a manual snapshot tagged as
//            ours (memvault:managed=true, memvault:component, memvault:run) --
//            or reuse one of ours that is still being created (idempotent retry)
//   poll     'snapshot' until the snapshot is available; then 'copy': wait for a
//            free cross-region copy slot (max 5 in flight per destination region),
//            start the copy in the DR region under the DR KMS key (the SDK
//            pre-signs the source-region request from the source ARN); then
//            'copying' until the copy is available; then 'done'
//   finish   describe both snapshots and return the manifest content (no chunks)
// Retention (pruneSnapshots) lists the manual snapshots of each region page by
// page (Marker), keeps only those tagged as ours for the component, applies the
// component's policy to the available ones (core applyPolicy) and deletes what
// it forgets: never the newest available one, never one in progress, never one
// not tagged as ours.
//
// Every AWS error becomes a named memvault error: ThrottledError,
// SnapshotCopyLimitError and SourceBusyError are retryable (ASL Retry matches
// them); NotFoundError, KmsKeyError, SnapshotQuotaError, SnapshotFailedError
// and ConfigError are permanent and name the resource or setting to fix.
import type { RDSClient, Tag } from '@aws-sdk/client-rds';
import { z } from 'zod';
import type { DriverBackupContext, DriverBackupResult, DriverValidateContext, Logger, SnapshotDriver, SnapshotState, ValidationCheck, ValidationReport } from './types.ts';
import type { ComponentConfig, Retention } from '../core/config.ts';
import type { Manifest, ManifestHeader, ManifestRef } from '../core/manifest.ts';
import { applyPolicy } from '../core/retention.ts';
import type { Clock } from '../core/ports.ts';
import { systemClock } from '../core/ports.ts';
import {
  ConfigError,
  NotFoundError,
  NotReadyError,
  PermanentError,
  RetryableError,
  SnapshotCopyLimitError,
  SourceBusyError,
  ThrottledError,
  UsageError,
  errorMessage,
  isRetryable,
} from '../core/errors.ts';

// ---------------------------------------------------------------------------
// Errors

// SnapshotCopyLimitError and SourceBusyError live in core/errors.ts with every other
// retryable error, so the state machines' Retry lists (checked by test/statemachines/asl.test.ts)
// name them all.
export { SnapshotCopyLimitError, SourceBusyError };

/** The region's quota of manual snapshots is used up: prune or raise the quota. Permanent. */
export class SnapshotQuotaError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SnapshotQuotaError';
  }
}

/** A KMS key is missing, disabled, in the wrong region or not usable by this role. Permanent. */
export class KmsKeyError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KmsKeyError';
  }
}

/** A snapshot or copy failed or vanished while we waited for it. Permanent. */
export class SnapshotFailedError extends PermanentError {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotFailedError';
  }
}

/** Internal: a create/copy found a snapshot with that name already; callers decide whether to reuse it. */
export class SnapshotExistsError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SnapshotExistsError';
  }
}

/** Context used to name things in error messages. */
export interface ErrCtx {
  component: string;
  region: string;
  /** The call, e.g. CreateDBSnapshot. */
  op: string;
  /** What the call is about, e.g. 'DB instance "memdb"'. */
  subject?: string;
  /** Settings field naming the subject, e.g. components.memory-db.instanceId. */
  field?: string;
  /** The KMS key the call uses, and the setting naming it. */
  kmsKeyId?: string;
  kmsField?: string;
}

const THROTTLING = new Set(['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled', 'RequestThrottledException']);

/** The service's error code without the SDK's "Fault" suffix (DBInstanceNotFoundFault -> DBInstanceNotFound). */
export function errorCode(err: unknown): string {
  const e = err as { name?: string; Code?: string } | null;
  const n = e?.Code ?? e?.name ?? '';
  return n.endsWith('Fault') ? n.slice(0, -5) : n;
}

export function mapRdsError(err: unknown, c: ErrCtx): Error {
  if (err instanceof RetryableError || err instanceof PermanentError) return err;
  const code = errorCode(err);
  const detail = errorMessage(err);
  const where = `${c.op} in ${c.region}${c.subject ? ` for ${c.subject}` : ''}`;
  if (THROTTLING.has(code)) return new ThrottledError(`${where} was throttled (${code}); retry later`, { cause: err });
  switch (code) {
    case 'DBInstanceNotFound':
    case 'DBClusterNotFound':
      return new NotFoundError(`${c.subject ?? 'the source'} not found in ${c.region}${c.field ? `: check ${c.field} and components.${c.component}.region` : ''}`);
    case 'DBSnapshotNotFound':
    case 'DBClusterSnapshotNotFound':
      return new NotFoundError(`${c.subject ?? 'snapshot'} not found in ${c.region} (${c.op}): it was deleted or never created`);
    case 'DBSnapshotAlreadyExists':
    case 'DBClusterSnapshotAlreadyExists':
      return new SnapshotExistsError(`${c.subject ?? 'snapshot'} already exists in ${c.region}`, { cause: err });
    case 'DBInstanceAlreadyExists':
    case 'DBClusterAlreadyExists':
      return new PermanentError(`${where}: ${c.subject ?? 'the target'} already exists; restore into a new name (target option ${c.field ?? 'instanceId/clusterId'}), memvault never restores over an existing database`, { cause: err });
    case 'SnapshotQuotaExceeded':
      if (/concurren|cross.?region|copies|in progress/i.test(detail)) {
        return new SnapshotCopyLimitError(`${where}: too many cross-region snapshot copies in progress in ${c.region} (${detail}); wait for one to finish and retry`, { cause: err });
      }
      return new SnapshotQuotaError(
        `${where}: the manual snapshot quota of ${c.region} is used up (${detail}); run retention (pruneSnapshots) for memvault's snapshots, delete other manual snapshots or request a higher quota`,
        { cause: err },
      );
    case 'KMSKeyNotAccessible':
      return new KmsKeyError(
        `${where}: KMS key ${c.kmsKeyId ?? '(the snapshot\'s key)'} does not exist in ${c.region}, is disabled, or this role may not use it (${detail})${c.kmsField ? `; check ${c.kmsField}` : ''}`,
        { cause: err },
      );
    case 'InvalidDBInstanceState':
    case 'InvalidDBClusterState':
    case 'InvalidDBSnapshotState':
    case 'InvalidDBClusterSnapshotState':
    case 'DBInstanceNotReady':
      return new SourceBusyError(`${where}: ${c.subject ?? 'the resource'} is not in a state that allows this now (${code}: ${detail}); retry when it is available`, { cause: err });
    case 'InvalidParameterValue':
    case 'InvalidParameterCombination':
      if (/kms|key/i.test(detail) && c.kmsKeyId !== undefined) {
        return new KmsKeyError(`${where}: KMS key ${c.kmsKeyId} cannot be used in ${c.region} (${detail})${c.kmsField ? `; check ${c.kmsField}` : ''}`, { cause: err });
      }
      return new PermanentError(`${where}: ${code}: ${detail}`, { cause: err });
    case 'AccessDenied':
    case 'AccessDeniedException':
    case 'UnauthorizedOperation':
      return new PermanentError(`${where}: access denied (${detail}); allow rds:${c.op} for this role`, { cause: err });
  }
  const fault = (err as { $fault?: string } | null)?.$fault;
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  if (status === 429) return new ThrottledError(`${where} was throttled; retry later`, { cause: err });
  if (fault === 'server' || (status !== undefined && status >= 500) || code === 'InternalFailure' || code === 'ServiceUnavailable') {
    return new RetryableError(`${where} failed on the service side: ${detail}`, { cause: err });
  }
  return new PermanentError(`${where} failed: ${code ? `${code}: ` : ''}${detail}`, { cause: err });
}

export async function call<T>(c: ErrCtx, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw mapRdsError(err, c);
  }
}

/** A call that answers "not there" (NotFoundError after mapping) with undefined. */
export async function callOrUndefined<T>(c: ErrCtx, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call(c, fn);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** Pages through an RDS Describe* call: 100 records a page, following Marker. */
export async function* pages<T>(c: ErrCtx, fetch: (marker: string | undefined) => Promise<{ items?: T[]; Marker?: string }>): AsyncGenerator<T> {
  let marker: string | undefined;
  do {
    const out = await call(c, () => fetch(marker));
    yield* out.items ?? [];
    marker = out.Marker;
  } while (marker);
}

// ---------------------------------------------------------------------------
// Settings

const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
const region = z.string().regex(REGION, 'expected an AWS region like us-east-1');
/** RDS identifiers: a letter, then letters, digits and single hyphens. */
export const RDS_IDENTIFIER = /^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$/;
export const identifier = z.string().regex(RDS_IDENTIFIER, 'expected an identifier: a letter, then letters, digits and single hyphens (max 63)');

/** Settings every service snapshot component has (memvault.yaml). */
export const snapshotCommonShape = {
  /** Region of the source instance/cluster and of its primary snapshots. */
  region,
  /** Region that receives the copy of every snapshot. Required unless copyToDr is false. */
  drRegion: region.optional(),
  /** KMS key (ARN, id or alias) in drRegion that encrypts the DR copy. Required when the source is encrypted. */
  drKmsKeyId: z.string().min(1).optional(),
  /** Expected engine (e.g. postgres, aurora-postgresql, docdb): a backup of anything else fails. */
  engine: z.string().optional(),
  /** Copy every snapshot to drRegion. @default true */
  copyToDr: z.boolean().default(true),
  /** Cross-region copies allowed in flight per destination region (the RDS quota). @default 5 */
  maxConcurrentCopies: z.number().int().positive().default(5),
  /** backup() (CLI): seconds between polls. @default 30 */
  pollIntervalSeconds: z.number().int().positive().default(30),
  /** backup() and validate(): give up waiting after this many minutes. @default 360 */
  timeoutMinutes: z.number().int().positive().default(360),
};

export interface SnapshotCommonSettings {
  region: string;
  drRegion?: string;
  drKmsKeyId?: string;
  engine?: string;
  copyToDr: boolean;
  maxConcurrentCopies: number;
  pollIntervalSeconds: number;
  timeoutMinutes: number;
}

/** Cross-field checks zod cannot express through the merged config schema. */
export function checkSettings(component: string, s: SnapshotCommonSettings): void {
  const f = (k: string) => `components.${component}.${k}`;
  const problems: string[] = [];
  if (s.copyToDr !== false && !s.drRegion) problems.push(`${f('drRegion')}: required while copyToDr is true (set the DR region, or copyToDr: false)`);
  if (s.drRegion && s.drRegion === s.region) problems.push(`${f('drRegion')}: must differ from region (${s.region})`);
  const keyRegion = s.drKmsKeyId ? regionOfArn(s.drKmsKeyId) : undefined;
  if (keyRegion && s.drRegion && keyRegion !== s.drRegion) {
    problems.push(`${f('drKmsKeyId')}: key ${s.drKmsKeyId} is in ${keyRegion}, but the DR copy is made in ${s.drRegion}; use a key of ${s.drRegion}`);
  }
  if (problems.length) throw new ConfigError(problems);
}

export function regionOfArn(arn: string): string | undefined {
  return /^arn:aws[a-z-]*:[a-z]+:([a-z0-9-]+):\d{12}:/.exec(arn)?.[1];
}

// ---------------------------------------------------------------------------
// Service API, normalised over instances and clusters

export interface SnapInfo {
  id: string;
  arn: string;
  region: string;
  /** creating, available, copying, pending, failed, deleted ... */
  status: string;
  sourceId: string;
  engine?: string;
  engineVersion?: string;
  encrypted: boolean;
  kmsKeyId?: string;
  allocatedGiB?: number;
  storageType?: string;
  createdAt?: Date;
  progress?: number;
  /** Set when the snapshot is a copy from another region (source ARN or region). */
  copiedFrom?: string;
  tags: Record<string, string>;
}

export interface SourceInfo {
  id: string;
  arn?: string;
  engine: string;
  engineVersion?: string;
  status: string;
  encrypted: boolean;
  kmsKeyId?: string;
  allocatedGiB?: number;
  storageType?: string;
  instanceClass?: string;
  /** Cluster members (clusters only). */
  instanceCount?: number;
  earliestRestorableTime?: Date;
  latestRestorableTime?: Date;
}

export interface SnapshotApi {
  readonly resource: 'instance' | 'cluster';
  /** 'DB instance' or 'DB cluster' */
  readonly label: string;
  /** Settings field of the source id: instanceId or clusterId. */
  readonly idField: 'instanceId' | 'clusterId';
  describeSource(c: ErrCtx, id: string): Promise<SourceInfo>;
  createSnapshot(c: ErrCtx, sourceId: string, snapshotId: string, tags: Tag[]): Promise<SnapInfo>;
  describeSnapshot(c: ErrCtx, snapshotId: string): Promise<SnapInfo | undefined>;
  /** Manual snapshots of the region (of one source when given), every page (Marker). */
  listSnapshots(c: ErrCtx, sourceId?: string): AsyncGenerator<SnapInfo>;
  /** Runs in the destination region (c.region); the SDK pre-signs the source-region request from sourceArn. */
  copySnapshot(c: ErrCtx, o: { sourceArn: string; sourceRegion: string; targetId: string; kmsKeyId?: string; encrypted: boolean; tags: Tag[] }): Promise<SnapInfo>;
  deleteSnapshot(c: ErrCtx, snapshotId: string): Promise<void>;
}

let rdsModule: Promise<typeof import('@aws-sdk/client-rds')> | undefined;
/** The RDS SDK (commands and client), loaded on first use so other configs never pay its memory. */
export const rdsSdk = () => (rdsModule ??= import('@aws-sdk/client-rds'));

export interface SnapshotDeps {
  /** An RDS client for a region (the RDS API also serves DocumentDB). */
  client(region: string): RDSClient | Promise<RDSClient>;
  sleep(ms: number): Promise<void>;
  clock: Clock;
}

export function defaultDeps(over: Partial<SnapshotDeps> = {}): SnapshotDeps {
  const clients = new Map<string, RDSClient>();
  return {
    client: async (r) => {
      const { RDSClient } = await rdsSdk();
      let c = clients.get(r);
      if (!c) clients.set(r, (c = new RDSClient({ region: r })));
      return c;
    },
    sleep: (ms) => new Promise((res) => setTimeout(res, ms)),
    clock: systemClock,
    ...over,
  };
}

export function tagsOf(list: Tag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of list ?? []) if (t.Key) out[t.Key] = t.Value ?? '';
  return out;
}

export const TAG_MANAGED = 'memvault:managed';
export const TAG_COMPONENT = 'memvault:component';
export const TAG_RUN = 'memvault:run';
export const TAG_TYPE = 'memvault:type';
export const TAG_CREATED = 'memvault:created';

export function isOurs(s: Pick<SnapInfo, 'tags'>, component: string): boolean {
  return s.tags[TAG_MANAGED] === 'true' && s.tags[TAG_COMPONENT] === component;
}

/** memvault-<component>-<YYYYMMDD>-<HHMMSS>: RDS identifiers are lowercase letters, digits and single hyphens. */
export function snapshotIdFor(component: string, now: Date): string {
  const c = component.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  const ts = now.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  return `memvault-${c}-${ts}`;
}

const DONE = 'available';
const FAILED = /^(failed|deleted|deleting|incompatible-.*|error)$/;

// ---------------------------------------------------------------------------
// Backup steps

/** Progress carried between start, poll and finish (JSON). */
export interface ServiceSnapshotState extends SnapshotState {
  phase: 'snapshot' | 'copy' | 'copying' | 'done';
  resource: 'instance' | 'cluster';
  sourceId: string;
  sourceArn?: string;
  engine: string;
  engineVersion?: string;
  instanceClass?: string;
  instanceCount?: number;
  region: string;
  drRegion?: string;
  snapshotId: string;
  snapshotArn?: string;
  encrypted: boolean;
  sourceKmsKeyId?: string;
  copyId?: string;
  copyArn?: string;
  copyRequestedAt?: string;
  startedAt: string;
  /** True when start found one of our snapshots already in progress and took it over. */
  reused: boolean;
  /** What the last poll waits for, for logs and the console. */
  waitingFor?: string;
}

/** Manifest `driver` content of a service snapshot backup. */
export interface SnapshotMeta {
  [k: string]: unknown;
  resource: 'instance' | 'cluster';
  sourceId: string;
  sourceArn?: string;
  engine: string;
  engineVersion?: string;
  /** Instance class of the source (the writer, for clusters): the restore default. */
  instanceClass?: string;
  /** Cluster members at backup time (clusters only). */
  instanceCount?: number;
  region: string;
  snapshot: SnapshotRecord;
  drCopy: SnapshotRecord | null;
  startedAt: string;
  readyAt: string;
  reused: boolean;
}

export interface SnapshotRecord {
  id: string;
  arn: string;
  region: string;
  status: string;
  encrypted: boolean;
  kmsKeyId?: string;
  allocatedGiB?: number;
  storageType?: string;
  engineVersion?: string;
  createdAt?: string;
}

function record(s: SnapInfo): SnapshotRecord {
  return {
    id: s.id, arn: s.arn, region: s.region, status: s.status, encrypted: s.encrypted, kmsKeyId: s.kmsKeyId,
    allocatedGiB: s.allocatedGiB, storageType: s.storageType, engineVersion: s.engineVersion, createdAt: s.createdAt?.toISOString(),
  };
}

type Ctx = DriverBackupContext<SnapshotCommonSettings & Record<string, unknown>> & { runId?: string };

export interface SnapshotSteps {
  start(ctx: Ctx): Promise<ServiceSnapshotState>;
  poll(ctx: Ctx, state: SnapshotState): Promise<{ ready: boolean; state: ServiceSnapshotState }>;
  finish(ctx: Ctx, state: SnapshotState): Promise<DriverBackupResult>;
  backup(ctx: Ctx): Promise<DriverBackupResult>;
}

export function makeSnapshotSteps(api: SnapshotApi, deps: SnapshotDeps): SnapshotSteps {
  const sourceIdOf = (ctx: Ctx) => ctx.settings[api.idField] as string;
  const ec = (ctx: Ctx, region: string, op: string, extra: Partial<ErrCtx> = {}): ErrCtx => ({
    component: ctx.component, region, op,
    subject: `${api.label} "${sourceIdOf(ctx)}"`, field: `components.${ctx.component}.${api.idField}`, ...extra,
  });
  const snapCtx = (ctx: Ctx, region: string, op: string, id: string, extra: Partial<ErrCtx> = {}) =>
    ec(ctx, region, op, { subject: `snapshot "${id}" of ${api.label} "${sourceIdOf(ctx)}"`, field: undefined, ...extra });

  function needsKey(ctx: Ctx, encrypted: boolean, kmsKeyId: string | undefined): void {
    const s = ctx.settings;
    if (!s.copyToDr || !encrypted || s.drKmsKeyId) return;
    throw new ConfigError(
      `components.${ctx.component}.drKmsKeyId: ${api.label} "${sourceIdOf(ctx)}" is encrypted with KMS key ${kmsKeyId ?? '(unknown)'} ` +
      `in ${s.region}; KMS keys belong to one region, and the default aws/rds key cannot be used outside its region or shared, ` +
      `so the copy to ${s.drRegion} needs a key there: set drKmsKeyId to a KMS key ARN or alias in ${s.drRegion} (or copyToDr: false)`,
    );
  }

  async function start(ctx: Ctx): Promise<ServiceSnapshotState> {
    const s = ctx.settings;
    checkSettings(ctx.component, s);
    const sourceId = sourceIdOf(ctx);
    const src = await api.describeSource(ec(ctx, s.region, api.resource === 'instance' ? 'DescribeDBInstances' : 'DescribeDBClusters'), sourceId);
    if (s.engine && src.engine !== s.engine) {
      throw new ConfigError(`components.${ctx.component}.engine: expected "${s.engine}", but ${api.label} "${sourceId}" in ${s.region} runs "${src.engine}"`);
    }
    needsKey(ctx, src.encrypted, src.kmsKeyId);
    const now = deps.clock.now();
    const base = {
      phase: 'snapshot' as const, resource: api.resource, sourceId, sourceArn: src.arn, engine: src.engine, engineVersion: src.engineVersion,
      instanceClass: src.instanceClass, instanceCount: src.instanceCount, region: s.region, drRegion: s.copyToDr ? s.drRegion : undefined, encrypted: src.encrypted,
      sourceKmsKeyId: src.kmsKeyId, startedAt: now.toISOString(),
    };
    // A retried start (lost response, Lambda timeout) takes over our snapshot still in progress.
    const listOp = api.resource === 'instance' ? 'DescribeDBSnapshots' : 'DescribeDBClusterSnapshots';
    for await (const snap of api.listSnapshots(ec(ctx, s.region, listOp), sourceId)) {
      if (isOurs(snap, ctx.component) && snap.status !== DONE && !FAILED.test(snap.status)) {
        ctx.log.info('reusing snapshot in progress', { component: ctx.component, snapshotId: snap.id, status: snap.status });
        return { ...base, snapshotId: snap.id, snapshotArn: snap.arn, reused: true };
      }
    }
    const snapshotId = snapshotIdFor(ctx.component, now);
    const tags: Tag[] = [
      { Key: TAG_MANAGED, Value: 'true' },
      { Key: TAG_COMPONENT, Value: ctx.component },
      { Key: TAG_RUN, Value: ctx.runId ?? snapshotId },
      { Key: TAG_TYPE, Value: ctx.type },
      { Key: TAG_CREATED, Value: now.toISOString() },
    ];
    const createOp = api.resource === 'instance' ? 'CreateDBSnapshot' : 'CreateDBClusterSnapshot';
    try {
      const snap = await api.createSnapshot(ec(ctx, s.region, createOp), sourceId, snapshotId, tags);
      ctx.log.info('snapshot started', { component: ctx.component, snapshotId, region: s.region });
      return { ...base, snapshotId, snapshotArn: snap.arn, reused: false };
    } catch (err) {
      if (!(err instanceof SnapshotExistsError)) throw err;
      const existing = await api.describeSnapshot(snapCtx(ctx, s.region, listOp, snapshotId), snapshotId);
      if (!existing || !isOurs(existing, ctx.component)) {
        throw new PermanentError(`snapshot "${snapshotId}" already exists in ${s.region} but is not tagged as memvault's for ${ctx.component}; memvault will not adopt it`);
      }
      ctx.log.info('snapshot already exists, reusing it', { component: ctx.component, snapshotId });
      return { ...base, snapshotId, snapshotArn: existing.arn, reused: true };
    }
  }

  async function copiesInProgress(ctx: Ctx, drRegion: string, limit: number): Promise<number> {
    let n = 0;
    const op = api.resource === 'instance' ? 'DescribeDBSnapshots' : 'DescribeDBClusterSnapshots';
    for await (const snap of api.listSnapshots(ec(ctx, drRegion, op, { subject: undefined, field: undefined }))) {
      if (snap.copiedFrom && snap.status !== DONE && !FAILED.test(snap.status)) {
        if (++n >= limit) break;
      }
    }
    return n;
  }

  function parseState(raw: SnapshotState): ServiceSnapshotState {
    const st = raw as Partial<ServiceSnapshotState>;
    if (!st || typeof st.snapshotId !== 'string' || typeof st.region !== 'string' || !['snapshot', 'copy', 'copying', 'done'].includes(st.phase as string)) {
      throw new UsageError(`snapshot state: expected the object returned by start/poll (phase, snapshotId, region...), got ${JSON.stringify(raw).slice(0, 200)}`);
    }
    return { ...(st as ServiceSnapshotState) };
  }

  async function poll(ctx: Ctx, raw: SnapshotState): Promise<{ ready: boolean; state: ServiceSnapshotState }> {
    const st = parseState(raw);
    const s = ctx.settings;
    const descOp = api.resource === 'instance' ? 'DescribeDBSnapshots' : 'DescribeDBClusterSnapshots';
    if (st.phase === 'snapshot') {
      const snap = await api.describeSnapshot(snapCtx(ctx, st.region, descOp, st.snapshotId), st.snapshotId);
      if (!snap) throw new SnapshotFailedError(`snapshot "${st.snapshotId}" of ${api.label} "${st.sourceId}" vanished from ${st.region} while being created (deleted by someone?)`);
      if (FAILED.test(snap.status)) throw new SnapshotFailedError(`snapshot "${st.snapshotId}" of ${api.label} "${st.sourceId}" in ${st.region} is ${snap.status}`);
      if (snap.status !== DONE) {
        st.waitingFor = `snapshot ${snap.status}${snap.progress !== undefined ? ` ${snap.progress}%` : ''}`;
        return { ready: false, state: st };
      }
      st.snapshotArn = snap.arn;
      st.encrypted = snap.encrypted;
      st.sourceKmsKeyId = snap.kmsKeyId;
      if (!st.drRegion) {
        st.phase = 'done';
        st.waitingFor = undefined;
        return { ready: true, state: st };
      }
      st.phase = 'copy';
    }
    if (st.phase === 'copy') {
      const drRegion = st.drRegion!;
      needsKey(ctx, st.encrypted, st.sourceKmsKeyId);
      const limit = s.maxConcurrentCopies ?? 5;
      const inFlight = await copiesInProgress(ctx, drRegion, limit);
      if (inFlight >= limit) {
        st.waitingFor = `a copy slot in ${drRegion}: ${inFlight} cross-region copies in progress (limit ${limit})`;
        ctx.log.info('waiting for a cross-region copy slot', { component: ctx.component, drRegion, inFlight, limit });
        return { ready: false, state: st };
      }
      const copyOp = api.resource === 'instance' ? 'CopyDBSnapshot' : 'CopyDBClusterSnapshot';
      const kms = { kmsKeyId: s.drKmsKeyId, kmsField: `components.${ctx.component}.drKmsKeyId` };
      const copyId = st.snapshotId;
      const tags: Tag[] = [
        { Key: TAG_MANAGED, Value: 'true' },
        { Key: TAG_COMPONENT, Value: ctx.component },
        { Key: TAG_RUN, Value: ctx.runId ?? st.snapshotId },
        { Key: TAG_TYPE, Value: ctx.type },
        { Key: TAG_CREATED, Value: st.startedAt },
      ];
      let copy: SnapInfo | undefined;
      try {
        copy = await api.copySnapshot(snapCtx(ctx, drRegion, copyOp, copyId, kms), {
          sourceArn: st.snapshotArn!, sourceRegion: st.region, targetId: copyId, kmsKeyId: s.drKmsKeyId, encrypted: st.encrypted, tags,
        });
      } catch (err) {
        if (!(err instanceof SnapshotExistsError)) throw err;
        copy = await api.describeSnapshot(snapCtx(ctx, drRegion, descOp, copyId), copyId);
        if (!copy || !isOurs(copy, ctx.component)) {
          throw new PermanentError(`snapshot "${copyId}" already exists in ${drRegion} but is not tagged as memvault's for ${ctx.component}; memvault will not adopt it`);
        }
      }
      st.phase = 'copying';
      st.copyId = copyId;
      st.copyArn = copy.arn;
      st.copyRequestedAt = deps.clock.now().toISOString();
      st.waitingFor = `copy to ${drRegion}`;
      ctx.log.info('cross-region copy started', { component: ctx.component, snapshotId: st.snapshotId, drRegion });
      return { ready: false, state: st };
    }
    if (st.phase === 'copying') {
      const drRegion = st.drRegion!;
      const copy = await api.describeSnapshot(snapCtx(ctx, drRegion, descOp, st.copyId!), st.copyId!);
      if (!copy) {
        // Describe can lag just after the copy request.
        const age = deps.clock.now().getTime() - Date.parse(st.copyRequestedAt ?? st.startedAt);
        if (age < 10 * 60_000) return { ready: false, state: { ...st, waitingFor: `copy to ${drRegion} to appear` } };
        throw new SnapshotFailedError(`copy "${st.copyId}" of snapshot "${st.snapshotId}" vanished from ${drRegion} while copying`);
      }
      if (FAILED.test(copy.status)) throw new SnapshotFailedError(`copy "${st.copyId}" of snapshot "${st.snapshotId}" in ${drRegion} is ${copy.status}`);
      if (copy.status !== DONE) {
        st.waitingFor = `copy to ${drRegion} ${copy.status}${copy.progress !== undefined ? ` ${copy.progress}%` : ''}`;
        return { ready: false, state: st };
      }
      st.copyArn = copy.arn;
      st.phase = 'done';
      st.waitingFor = undefined;
    }
    return { ready: true, state: st };
  }

  async function finish(ctx: Ctx, raw: SnapshotState): Promise<DriverBackupResult> {
    const st = parseState(raw);
    if (st.phase !== 'done') throw new NotReadyError(`snapshot "${st.snapshotId}" is not ready (phase ${st.phase}${st.waitingFor ? `, waiting for ${st.waitingFor}` : ''}); poll until ready`);
    const descOp = api.resource === 'instance' ? 'DescribeDBSnapshots' : 'DescribeDBClusterSnapshots';
    const snap = await api.describeSnapshot(snapCtx(ctx, st.region, descOp, st.snapshotId), st.snapshotId);
    if (!snap || snap.status !== DONE) throw new SnapshotFailedError(`snapshot "${st.snapshotId}" in ${st.region} is ${snap?.status ?? 'gone'} at finish`);
    let copy: SnapInfo | undefined;
    if (st.copyId && st.drRegion) {
      copy = await api.describeSnapshot(snapCtx(ctx, st.drRegion, descOp, st.copyId), st.copyId);
      if (!copy || copy.status !== DONE) throw new SnapshotFailedError(`copy "${st.copyId}" in ${st.drRegion} is ${copy?.status ?? 'gone'} at finish`);
    }
    const meta: SnapshotMeta = {
      resource: api.resource, sourceId: st.sourceId, sourceArn: st.sourceArn, engine: snap.engine ?? st.engine,
      engineVersion: snap.engineVersion ?? st.engineVersion, instanceClass: st.instanceClass, instanceCount: st.instanceCount, region: st.region,
      snapshot: record(snap), drCopy: copy ? record(copy) : null, startedAt: st.startedAt, readyAt: deps.clock.now().toISOString(), reused: st.reused,
    };
    const warnings = ctx.settings.copyToDr ? [] : [`copyToDr is false: snapshot ${snap.id} exists only in ${st.region}`];
    return { entries: [], meta, warnings };
  }

  async function retrying<T>(ctx: Ctx, deadline: number, what: string, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetryable(err) || deps.clock.now().getTime() >= deadline) throw err;
        ctx.log.warn(`${what}: retrying`, { component: ctx.component, error: (err as Error).name, message: errorMessage(err) });
        await deps.sleep(ctx.settings.pollIntervalSeconds * 1000);
      }
    }
  }

  async function backup(ctx: Ctx): Promise<DriverBackupResult> {
    const deadline = deps.clock.now().getTime() + ctx.settings.timeoutMinutes * 60_000;
    let state = await retrying(ctx, deadline, 'start', () => start(ctx));
    for (;;) {
      await deps.sleep(ctx.settings.pollIntervalSeconds * 1000);
      const cur = state;
      const r = await retrying(ctx, deadline, 'poll', () => poll(ctx, cur));
      state = r.state;
      if (r.ready) break;
      if (deps.clock.now().getTime() >= deadline) {
        throw new NotReadyError(`snapshot "${state.snapshotId}" of ${ctx.component} not ready after ${ctx.settings.timeoutMinutes} minutes (waiting for ${state.waitingFor}); run the backup again to resume it`);
      }
      ctx.log.info('snapshot not ready', { component: ctx.component, snapshotId: state.snapshotId, waitingFor: state.waitingFor });
    }
    return retrying(ctx, deadline, 'finish', () => finish(ctx, state));
  }

  return { start, poll, finish, backup };
}

// ---------------------------------------------------------------------------
// Retention

export interface PruneSnapshotsOptions {
  component: string;
  /** The component's settings (region, drRegion, retention, instanceId/clusterId ...). */
  settings: SnapshotCommonSettings & Pick<ComponentConfig, 'retention'> & Record<string, unknown>;
  /** Override the component's retention policy. */
  retention?: Retention;
  now?: Date;
  dryRun?: boolean;
  log?: Logger;
}

export interface PruneRegionReport {
  region: string;
  kept: { id: string; time: string; reasons: string[] }[];
  deleted: { id: string; time: string }[];
  /** Ours but not deleted: in progress, failed, or the service refused (e.g. a copy is reading it). */
  skipped: { id: string; status: string; why: string }[];
  /** Manual snapshots seen in the region that are not ours for this component (never touched). */
  ignored: number;
}

export interface PruneSnapshotsReport {
  component: string;
  dryRun: boolean;
  regions: PruneRegionReport[];
}

export async function pruneWith(api: SnapshotApi, deps: SnapshotDeps, o: PruneSnapshotsOptions): Promise<PruneSnapshotsReport> {
  const s = o.settings;
  const policy = o.retention ?? s.retention ?? {};
  const now = o.now ?? deps.clock.now();
  const regions = [s.region, ...(s.drRegion ? [s.drRegion] : [])];
  const listOp = api.resource === 'instance' ? 'DescribeDBSnapshots' : 'DescribeDBClusterSnapshots';
  const delOp = api.resource === 'instance' ? 'DeleteDBSnapshot' : 'DeleteDBClusterSnapshot';
  const out: PruneSnapshotsReport = { component: o.component, dryRun: o.dryRun ?? false, regions: [] };
  for (const region of regions) {
    const rep: PruneRegionReport = { region, kept: [], deleted: [], skipped: [], ignored: 0 };
    const good: SnapInfo[] = [];
    for await (const snap of api.listSnapshots({ component: o.component, region, op: listOp })) {
      if (!isOurs(snap, o.component)) { rep.ignored++; continue; }
      if (snap.status !== DONE) { rep.skipped.push({ id: snap.id, status: snap.status, why: 'not available (in progress or failed)' }); continue; }
      good.push(snap);
    }
    const timeOf = (x: SnapInfo) => {
      const t = Date.parse(x.tags[TAG_CREATED] ?? '');
      return new Date(Number.isNaN(t) ? (x.createdAt?.getTime() ?? 0) : t);
    };
    const refs: ManifestRef[] = good.map((x) => ({ key: x.id, component: o.component, id: x.id, type: 'full', time: timeOf(x) }));
    const d = applyPolicy(refs, policy, now);
    const newest = [...refs].sort((a, b) => b.time.getTime() - a.time.getTime())[0];
    for (const r of d.keep) rep.kept.push({ id: r.id, time: r.time.toISOString(), reasons: d.reasons.get(r.key) ?? [] });
    for (const r of d.forget) {
      if (r.key === newest?.key) continue; // belt and braces: applyPolicy keeps the newest already
      if (o.dryRun) { rep.deleted.push({ id: r.id, time: r.time.toISOString() }); continue; }
      try {
        await api.deleteSnapshot({ component: o.component, region, op: delOp, subject: `snapshot "${r.id}"` }, r.id);
        rep.deleted.push({ id: r.id, time: r.time.toISOString() });
        o.log?.info('snapshot deleted by retention', { component: o.component, region, snapshotId: r.id });
      } catch (err) {
        if (err instanceof NotFoundError) { rep.deleted.push({ id: r.id, time: r.time.toISOString() }); continue; }
        if (err instanceof SourceBusyError) { rep.skipped.push({ id: r.id, status: 'busy', why: errorMessage(err) }); continue; }
        throw err;
      }
    }
    out.regions.push(rep);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Restore helpers

export function readMeta(m: ManifestHeader, resource: 'instance' | 'cluster'): SnapshotMeta {
  const d = m.driver as Partial<SnapshotMeta>;
  if (!d || d.resource !== resource || typeof d.sourceId !== 'string' || !d.snapshot?.id) {
    throw new PermanentError(`backup ${m.id} of ${m.component} has no ${resource} snapshot record in its manifest (kind ${m.kind})`);
  }
  return d as SnapshotMeta;
}

/**
 * Where a restore of a snapshot backup goes: the target region (the source's, or
 * the DR region with its copy), never over the live source, and the component's
 * restore defaults for that region (`restore`, overlaid by `restore.dr` in the DR region).
 */
export function restoreRegion(
  settings: { drRegion?: string; restore?: Record<string, unknown> & { dr?: Record<string, unknown> } },
  meta: SnapshotMeta,
  target: { region?: string; name: string },
  field: 'instanceId' | 'clusterId',
): { region: string; isDr: boolean; defaults: Record<string, unknown> } {
  const region = target.region ?? meta.region;
  const isDr = region !== meta.region;
  const allowed = [meta.region, meta.drCopy?.region, settings.drRegion].filter((r): r is string => !!r);
  if (!allowed.includes(region)) {
    throw new UsageError(`target.options.region: ${region} is neither ${meta.region} nor the DR region ${meta.drCopy?.region ?? settings.drRegion ?? '(none configured)'}`);
  }
  const what = field === 'instanceId' ? 'instance' : 'cluster';
  if (!isDr && target.name.toLowerCase() === meta.sourceId.toLowerCase()) {
    throw new UsageError(`target.options.${field}: "${target.name}" is the live source ${what}; restore into a new ${what} name`);
  }
  const { dr, ...base } = settings.restore ?? {};
  return { region, isDr, defaults: { ...base, ...(isDr ? dr ?? {} : {}) } };
}

/**
 * The drill check of a snapshot backup: restoring a database for every drill
 * would create (and bill) an instance, so a drill checks instead that the
 * snapshot and its DR copy recorded in the manifest still exist, are available,
 * and are encrypted as they were.
 */
export async function checkSnapshots(api: SnapshotApi, component: string, m: ManifestHeader): Promise<ValidationReport> {
  const meta = readMeta(m, api.resource);
  const checks: ValidationCheck[] = [];
  for (const rec of [meta.snapshot, ...(meta.drCopy ? [meta.drCopy] : [])]) {
    const got = await api.describeSnapshot({ component, region: rec.region, op: api.resource === 'instance' ? 'DescribeDBSnapshots' : 'DescribeDBClusterSnapshots', subject: `snapshot "${rec.id}"` }, rec.id);
    checks.push({ name: `snapshot ${rec.id} in ${rec.region} is available`, ok: got?.status === 'available', expected: 'available', actual: got?.status ?? 'missing' });
    if (got) checks.push({ name: `snapshot ${rec.id} in ${rec.region} encrypted as recorded`, ok: got.encrypted === rec.encrypted, expected: rec.encrypted, actual: got.encrypted });
  }
  return { ok: checks.every((c) => c.ok), checks };
}

/** The snapshot to restore from in a region: the primary snapshot or its DR copy. */
export function snapshotIn(meta: SnapshotMeta, region: string, backupId: string): SnapshotRecord {
  if (region === meta.region) return meta.snapshot;
  if (meta.drCopy && meta.drCopy.region === region) return meta.drCopy;
  const have = [meta.region, meta.drCopy?.region].filter(Boolean).join(' and ');
  throw new NotFoundError(`backup ${backupId} has no snapshot in ${region}; it has snapshots in ${have}`);
}

/**
 * The snapshot a restore in `region` starts from (snapshotIn), checked to
 * still exist and be available there. `c` makes the error context of the
 * describe call for a subject.
 */
export async function restorableSnapshot(api: SnapshotApi, c: (subject: string) => ErrCtx, meta: SnapshotMeta, region: string, backupId: string): Promise<SnapshotRecord> {
  const rec = snapshotIn(meta, region, backupId);
  const cur = await api.describeSnapshot(c(`snapshot "${rec.id}"`), rec.id);
  if (!cur) throw new NotFoundError(`snapshot "${rec.id}" of backup ${backupId} no longer exists in ${region} (deleted by retention or by hand)`);
  if (cur.status !== 'available') throw new SourceBusyError(`snapshot "${rec.id}" in ${region} is ${cur.status}, not available; retry later`);
  return rec;
}

/** How long a validation waits for a restored instance/cluster, and how often it looks (target option, then settings). */
export function validationWait(o: { timeoutMinutes?: number }, settings: { timeoutMinutes?: number; pollIntervalSeconds?: number }): { timeoutMs: number; intervalMs: number } {
  return { timeoutMs: (o.timeoutMinutes ?? settings.timeoutMinutes ?? 360) * 60_000, intervalMs: (settings.pollIntervalSeconds ?? 30) * 1000 };
}

/** pointInTime option: an ISO time, or 'latest' for the latest restorable time. */
export function parsePointInTime(v: string | undefined): Date | 'latest' | undefined {
  if (v === undefined) return undefined;
  if (v === 'latest') return 'latest';
  const d = new Date(v);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(v)) {
    throw new UsageError(`target.options.pointInTime: expected an ISO time like 2026-01-01T14:30:00Z or "latest", got "${v}"`);
  }
  return d;
}

export function checkWindow(t: Date | 'latest', earliest: Date | undefined, latest: Date | undefined, what: string): void {
  if (!latest) throw new PermanentError(`${what} has no restorable window (automated backups disabled?); restore from a snapshot instead (omit pointInTime)`);
  if (t === 'latest') return;
  const tooEarly = earliest !== undefined && t.getTime() < earliest.getTime();
  if (tooEarly || t.getTime() > latest.getTime()) {
    throw new PermanentError(
      `target.options.pointInTime ${t.toISOString()} is outside the restorable window of ${what}: ` +
      `${earliest?.toISOString() ?? '(unknown)'} to ${latest.toISOString()}; choose a time inside it, or restore from a snapshot (omit pointInTime)`,
    );
  }
}

/** Parses target options with a zod schema; problems name target.options.<field>. */
export function parseTarget<T extends z.ZodType>(schema: T, options: Record<string, unknown> | undefined): z.infer<T> {
  const r = schema.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(r.error.issues.map((i) => `target.options${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`).join('; '));
  }
  return r.data;
}

/** Base restore target options shared by instances and clusters. */
export const restoreTargetShape = {
  /** Region to restore in: the component's region (primary snapshot) or drRegion (DR copy). @default region */
  region: region.optional(),
  /** ISO time or "latest": use the service's point-in-time restore instead of the snapshot. */
  pointInTime: z.string().optional(),
  instanceClass: z.string().optional(),
  subnetGroup: z.string().optional(),
  securityGroupIds: z.array(z.string()).optional(),
  parameterGroup: z.string().optional(),
  port: z.number().int().positive().optional(),
  deletionProtection: z.boolean().optional(),
  /** validate(): wait at most this long for the restored database. @default the component's timeoutMinutes */
  timeoutMinutes: z.number().int().positive().optional(),
};

export const TERMINAL_BAD = /^(failed|incompatible-.*|inaccessible-encryption-credentials.*|storage-full|deleting|stopped)$/;

/** Polls until get() reports available or a terminal bad status; returns the last status. */
export async function waitForStatus(deps: SnapshotDeps, timeoutMs: number, intervalMs: number, get: () => Promise<string>): Promise<string> {
  const deadline = deps.clock.now().getTime() + timeoutMs;
  for (;;) {
    let status: string;
    try {
      status = await get();
    } catch (err) {
      if (!isRetryable(err) && !(err instanceof NotFoundError)) throw err;
      status = err instanceof NotFoundError ? 'not-found' : 'unknown';
    }
    if (status === 'available' || TERMINAL_BAD.test(status)) return status;
    if (deps.clock.now().getTime() >= deadline) return status;
    await deps.sleep(intervalMs);
  }
}

export function check(name: string, expected: unknown, actual: unknown, ok = expected === actual): ValidationCheck {
  return { name, ok, expected, actual };
}

// ---------------------------------------------------------------------------
// What both snapshot drivers expose beyond the Driver interface

export type ServiceSnapshotDriver<S> = SnapshotDriver<S> & {
  pruneSnapshots(o: PruneSnapshotsOptions): Promise<PruneSnapshotsReport>;
  drillCheck(ctx: { component: string; manifest: ManifestHeader }): Promise<ValidationReport>;
  /**
   * One non-blocking look at the restored database (the restore state machine's
   * Wait+poll loop; validate() blocks up to timeoutMinutes, too long for a Lambda):
   * ready once it is available (with the same checks as validate()) or in a state
   * it will not leave.
   */
  validateOnce(ctx: DriverValidateContext<S>): Promise<{ ready: boolean; status: string; report: ValidationReport }>;
};

/**
 * The identifier of a new instance/cluster for a restore that names none:
 * <source>-restore-<yyyymmddhhmm> (UTC), shortened to RDS's 63 characters; a
 * restore never goes over the source (restoreRegion refuses its id).
 */
export function derivedRestoreId(sourceId: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 12);
  const head = sourceId.slice(0, 63 - `-restore-${stamp}`.length).replace(/-+$/, '');
  return `${head}-restore-${stamp}`;
}

/**
 * The members the instance and cluster drivers share: the backup steps,
 * retention of our snapshots, the drill check, and validateOnce built on the
 * driver's own validate().
 */
export function sharedSnapshotMembers<S>(api: SnapshotApi, deps: SnapshotDeps, validate: (ctx: DriverValidateContext<S>) => Promise<ValidationReport>) {
  const steps = makeSnapshotSteps(api, deps);
  return {
    mode: 'snapshot' as const,
    start: (ctx: DriverBackupContext<S>) => steps.start(ctx as never),
    poll: (ctx: DriverBackupContext<S>, st: SnapshotState) => steps.poll(ctx as never, st as never),
    finish: (ctx: DriverBackupContext<S>, st: SnapshotState) => steps.finish(ctx as never, st as never),
    backup: (ctx: DriverBackupContext<S>) => steps.backup(ctx as never),
    pruneSnapshots: (o: PruneSnapshotsOptions) => pruneWith(api, deps, o),
    drillCheck: (ctx: { component: string; manifest: ManifestHeader }) => checkSnapshots(api, ctx.component, ctx.manifest),
    // A snapshot restore always creates a new instance/cluster in the service: never a directory.
    isNetworkTarget: () => true,
    networkTargetFields: api.idField === 'instanceId'
      ? 'instanceId (the NEW instance; default <source>-restore-<yyyymmddhhmm>), region, pointInTime, instanceClass, subnetGroup, securityGroupIds, ...'
      : 'clusterId (the NEW cluster; default <source>-restore-<yyyymmddhhmm>), region, pointInTime, instances, instanceClass, subnetGroup, ...',
    defaultRestoreTarget(ctx: { component: string; settings: S; now: Date; from?: 'primary' | 'secondary' }) {
      const s = ctx.settings as Record<string, unknown>;
      const source = String(s[api.idField] ?? ctx.component);
      const id = derivedRestoreId(source, ctx.now);
      const what = api.idField === 'instanceId' ? 'instance' : 'cluster';
      // From the secondary vault (the DR region's restore, the primary region may be down):
      // from the DR copy, in the DR region.
      const dr = ctx.from === 'secondary' && typeof s.drRegion === 'string' && s.copyToDr !== false ? s.drRegion : undefined;
      return {
        options: { [api.idField]: id, ...(dr ? { region: dr } : {}) },
        note: `no target.options.${ctx.component}.${api.idField} given: restored into the new ${what} ${id}${dr ? ` in ${dr} from the DR copy` : ''} (the source ${source} is not touched)`,
      };
    },
    async validateOnce(ctx: DriverValidateContext<S>) {
      // validate() with a zero wait: one describe, no sleep.
      const options = { ...(ctx.target.options ?? {}), timeoutMinutes: undefined };
      const r = await validate({ ...ctx, settings: { ...ctx.settings, timeoutMinutes: 0 }, target: { ...ctx.target, options } });
      const status = String(r.checks[0]?.actual ?? 'unknown');
      return { ready: status === 'available' || TERMINAL_BAD.test(status), status, report: r };
    },
  };
}
