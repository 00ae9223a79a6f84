// rds-snapshot: an RDS DB instance (PostgreSQL, MySQL, MariaDB, ...) backed up
// by the service's own manual snapshot, copied to the DR region under the DR
// KMS key; the vault keeps the record (see snapshot-common.ts for the steps,
// the error mapping and retention).
//
// Restore always creates a NEW instance: from the snapshot (or its DR copy,
// target option region = drRegion) with RestoreDBInstanceFromDBSnapshot, or,
// with target option pointInTime, with the service's own point-in-time restore
// (RestoreDBInstanceToPointInTime) when the time lies inside the restorable
// window (EarliestTime of the automated backups .. LatestRestorableTime); in the
// DR region that needs replicated automated backups. validate() waits for the
// new instance and checks status, engine, encryption, KMS key and storage
// against the snapshot.
import type { DBSnapshot, Tag } from '@aws-sdk/client-rds';
import { z } from 'zod';
import type { DriverRestoreContext, DriverValidateContext, ValidationCheck } from './types.ts';
import { report } from './types.ts';
import {
  type ErrCtx,
  type PruneSnapshotsOptions,
  restoreRegion,
  sharedSnapshotMembers,
  pruneWith,
  type ServiceSnapshotDriver,
  type PruneSnapshotsReport,
  type SnapInfo,
  type SnapshotApi,
  type SnapshotDeps,
  TAG_COMPONENT,
  TAG_MANAGED,
  call,
  callOrUndefined,
  pages,
  restorableSnapshot,
  validationWait,
  check,
  checkWindow,
  defaultDeps,
  identifier,
  parsePointInTime,
  parseTarget,
  rdsSdk,
  readMeta,
  restoreTargetShape,
  snapshotCommonShape,
  snapshotIn,
  tagsOf,
  waitForStatus,
} from './snapshot-common.ts';
import { NotFoundError, PermanentError } from '../core/errors.ts';

const restoreDefaults = {
  instanceClass: z.string().optional(),
  subnetGroup: z.string().optional(),
  securityGroupIds: z.array(z.string()).optional(),
  parameterGroup: z.string().optional(),
  optionGroup: z.string().optional(),
  multiAz: z.boolean().optional(),
  publiclyAccessible: z.boolean().optional(),
  storageType: z.string().optional(),
};

export const rdsSnapshotSchema = z.object({
  /** The source DB instance identifier. */
  instanceId: identifier,
  ...snapshotCommonShape,
  /** Defaults for restores (target options override them); `dr` overrides them for restores in drRegion. */
  restore: z.object({
    ...restoreDefaults,
    dr: z.object(restoreDefaults).strict().optional(),
  }).strict().default({}),
});
export type RdsSnapshotSettings = z.infer<typeof rdsSnapshotSchema>;

/** ctx.target.options of a restore / validate. */
export const rdsRestoreTargetSchema = z.object({
  /** Identifier of the NEW instance. */
  instanceId: identifier,
  ...restoreTargetShape,
  optionGroup: z.string().optional(),
  multiAz: z.boolean().optional(),
  publiclyAccessible: z.boolean().optional(),
  storageType: z.string().optional(),
}).strict();
export type RdsRestoreTarget = z.infer<typeof rdsRestoreTargetSchema>;

function snapInfo(s: DBSnapshot, region: string): SnapInfo {
  return {
    id: s.DBSnapshotIdentifier ?? '',
    arn: s.DBSnapshotArn ?? '',
    region,
    status: s.Status ?? 'unknown',
    sourceId: s.DBInstanceIdentifier ?? '',
    engine: s.Engine,
    engineVersion: s.EngineVersion,
    encrypted: s.Encrypted ?? false,
    kmsKeyId: s.KmsKeyId,
    allocatedGiB: s.AllocatedStorage,
    storageType: s.StorageType,
    createdAt: s.OriginalSnapshotCreateTime ?? s.SnapshotCreateTime,
    progress: s.PercentProgress,
    copiedFrom: s.SourceDBSnapshotIdentifier ?? (s.SourceRegion && s.SourceRegion !== region ? s.SourceRegion : undefined),
    tags: tagsOf(s.TagList),
  };
}

export function instanceApi(deps: SnapshotDeps): SnapshotApi {
  const rds = async (c: ErrCtx) => deps.client(c.region);
  return {
    resource: 'instance',
    label: 'DB instance',
    idField: 'instanceId',
    async describeSource(c, id) {
      const R = await rdsSdk();
      const out = await call(c, async () => (await rds(c)).send(new R.DescribeDBInstancesCommand({ DBInstanceIdentifier: id })));
      const i = out.DBInstances?.[0];
      if (!i) throw new NotFoundError(`DB instance "${id}" not found in ${c.region}${c.field ? `: check ${c.field}` : ''}`);
      return {
        id, arn: i.DBInstanceArn, engine: i.Engine ?? 'unknown', engineVersion: i.EngineVersion, status: i.DBInstanceStatus ?? 'unknown',
        encrypted: i.StorageEncrypted ?? false, kmsKeyId: i.KmsKeyId, allocatedGiB: i.AllocatedStorage, storageType: i.StorageType,
        instanceClass: i.DBInstanceClass, latestRestorableTime: i.LatestRestorableTime,
      };
    },
    async createSnapshot(c, sourceId, snapshotId, tags) {
      const R = await rdsSdk();
      const out = await call(c, async () => (await rds(c)).send(new R.CreateDBSnapshotCommand({ DBInstanceIdentifier: sourceId, DBSnapshotIdentifier: snapshotId, Tags: tags })));
      return snapInfo(out.DBSnapshot ?? { DBSnapshotIdentifier: snapshotId }, c.region);
    },
    async describeSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      const out = await callOrUndefined(c, async () => (await rds(c)).send(new R.DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: snapshotId })));
      const s = out?.DBSnapshots?.[0];
      return s ? snapInfo(s, c.region) : undefined;
    },
    async *listSnapshots(c, sourceId) {
      const R = await rdsSdk();
      for await (const s of pages(c, async (marker) => {
        const out = await (await rds(c)).send(new R.DescribeDBSnapshotsCommand({
          SnapshotType: 'manual', ...(sourceId ? { DBInstanceIdentifier: sourceId } : {}), MaxRecords: 100, Marker: marker,
        }));
        return { items: out.DBSnapshots, Marker: out.Marker };
      })) yield snapInfo(s, c.region);
    },
    async copySnapshot(c, o) {
      const R = await rdsSdk();
      const out = await call(c, async () => (await rds(c)).send(new R.CopyDBSnapshotCommand({
        SourceDBSnapshotIdentifier: o.sourceArn,
        TargetDBSnapshotIdentifier: o.targetId,
        // An instance snapshot copy may also encrypt an unencrypted source: the DR copy is always under the DR key when one is set.
        KmsKeyId: o.kmsKeyId,
        // No SourceRegion/PreSignedUrl here: the SDK's RDS middleware sees a source ARN of another
        // region (o.sourceRegion) and adds the pre-signed URL (with DestinationRegion and KmsKeyId) itself.
        Tags: o.tags,
      })));
      return snapInfo(out.DBSnapshot ?? { DBSnapshotIdentifier: o.targetId }, c.region);
    },
    async deleteSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      await call(c, async () => (await rds(c)).send(new R.DeleteDBSnapshotCommand({ DBSnapshotIdentifier: snapshotId })));
    },
  };
}

export type RdsSnapshotDriver = ServiceSnapshotDriver<RdsSnapshotSettings>;

export function makeRdsSnapshotDriver(over: Partial<SnapshotDeps> = {}): RdsSnapshotDriver {
  const deps = defaultDeps(over);
  const api = instanceApi(deps);

  function plan(ctx: DriverRestoreContext<RdsSnapshotSettings> | DriverValidateContext<RdsSnapshotSettings>) {
    const o = parseTarget(rdsRestoreTargetSchema, ctx.target.options);
    const meta = readMeta(ctx.manifest, 'instance');
    const { region, isDr, defaults: d } = restoreRegion(ctx.settings, meta, { region: o.region, name: o.instanceId }, 'instanceId');
    const pick = <K extends keyof RdsRestoreTarget>(k: K) => (o[k] ?? d[k]) as RdsRestoreTarget[K];
    const pit = parsePointInTime(o.pointInTime);
    return { o, meta, region, isDr, pick, pit };
  }

  const driver: RdsSnapshotDriver = {
    kind: 'rds-snapshot',
    schema: rdsSnapshotSchema,
    ...sharedSnapshotMembers<RdsSnapshotSettings>(api, deps, (ctx) => driver.validate(ctx)),

    async restore(ctx) {
      const R = await rdsSdk();
      const { o, meta, region, isDr, pick, pit } = plan(ctx);
      const client = await deps.client(region);
      const c = (op: string, subject: string): ErrCtx => ({ component: ctx.component, region, op, subject, field: 'instanceId' });
      const target = `DB instance "${o.instanceId}"`;
      const tags: Tag[] = [
        { Key: TAG_MANAGED, Value: 'true' },
        { Key: TAG_COMPONENT, Value: ctx.component },
        { Key: 'memvault:restored-from', Value: ctx.manifest.id },
      ];
      const common = {
        DBInstanceClass: pick('instanceClass'),
        DBSubnetGroupName: pick('subnetGroup'),
        VpcSecurityGroupIds: pick('securityGroupIds'),
        DBParameterGroupName: pick('parameterGroup'),
        OptionGroupName: pick('optionGroup'),
        MultiAZ: pick('multiAz'),
        PubliclyAccessible: pick('publiclyAccessible') ?? false,
        StorageType: pick('storageType'),
        Port: o.port,
        DeletionProtection: o.deletionProtection,
        Tags: tags,
      };
      if (pit) {
        const when = pit === 'latest' ? { UseLatestRestorableTime: true } : { RestoreTime: pit };
        if (!isDr) {
          const src = await api.describeSource(c('DescribeDBInstances', `DB instance "${meta.sourceId}"`), meta.sourceId);
          const ab = await call(c('DescribeDBInstanceAutomatedBackups', `DB instance "${meta.sourceId}"`), () =>
            client.send(new R.DescribeDBInstanceAutomatedBackupsCommand({ DBInstanceIdentifier: meta.sourceId })));
          const local = (ab.DBInstanceAutomatedBackups ?? []).find((b) => !b.Region || b.Region === region);
          checkWindow(pit, local?.RestoreWindow?.EarliestTime, src.latestRestorableTime, `DB instance "${meta.sourceId}" in ${region}`);
          const out = await call(c('RestoreDBInstanceToPointInTime', target), () => client.send(new R.RestoreDBInstanceToPointInTimeCommand({
            SourceDBInstanceIdentifier: meta.sourceId, TargetDBInstanceIdentifier: o.instanceId, ...when, ...common,
          })));
          ctx.log.info('point-in-time restore started', { component: ctx.component, region, instanceId: o.instanceId, at: String(o.pointInTime) });
          return { location: out.DBInstance?.DBInstanceArn ?? `${region}/${o.instanceId}`, bytes: (src.allocatedGiB ?? 0) * 2 ** 30, entries: 0 };
        }
        // DR region: the service's point-in-time restore needs replicated automated backups there.
        const ab = await call(c('DescribeDBInstanceAutomatedBackups', `DB instance "${meta.sourceId}"`), () =>
          client.send(new R.DescribeDBInstanceAutomatedBackupsCommand({ DBInstanceIdentifier: meta.sourceId })));
        const rep = (ab.DBInstanceAutomatedBackups ?? []).find((b) => b.DBInstanceAutomatedBackupsArn && b.RestoreWindow?.LatestTime);
        if (!rep) {
          throw new PermanentError(
            `no replicated automated backups of DB instance "${meta.sourceId}" in ${region}, so no point-in-time restore there: ` +
            `enable cross-Region automated backup replication to ${region}, or restore from the DR snapshot copy (omit pointInTime)`,
          );
        }
        checkWindow(pit, rep.RestoreWindow?.EarliestTime, rep.RestoreWindow?.LatestTime, `the replicated automated backups of "${meta.sourceId}" in ${region}`);
        const out = await call(c('RestoreDBInstanceToPointInTime', target), () => client.send(new R.RestoreDBInstanceToPointInTimeCommand({
          SourceDBInstanceAutomatedBackupsArn: rep.DBInstanceAutomatedBackupsArn, TargetDBInstanceIdentifier: o.instanceId, ...when, ...common,
        })));
        return { location: out.DBInstance?.DBInstanceArn ?? `${region}/${o.instanceId}`, bytes: (rep.AllocatedStorage ?? 0) * 2 ** 30, entries: 0 };
      }
      const rec = await restorableSnapshot(api, (subject) => c('DescribeDBSnapshots', subject), meta, region, ctx.manifest.id);
      const out = await call(c('RestoreDBInstanceFromDBSnapshot', target), () => client.send(new R.RestoreDBInstanceFromDBSnapshotCommand({
        DBInstanceIdentifier: o.instanceId, DBSnapshotIdentifier: rec.id, ...common,
      })));
      ctx.log.info('restore from snapshot started', { component: ctx.component, region, instanceId: o.instanceId, snapshotId: rec.id });
      return { location: out.DBInstance?.DBInstanceArn ?? `${region}/${o.instanceId}`, bytes: (rec.allocatedGiB ?? 0) * 2 ** 30, entries: 0 };
    },

    async validate(ctx) {
      const { o, meta, region, pit } = plan(ctx);
      const { timeoutMs, intervalMs } = validationWait(o, ctx.settings);
      let inst: Awaited<ReturnType<SnapshotApi['describeSource']>> | undefined;
      const status = await waitForStatus(deps, timeoutMs, intervalMs, async () => {
        inst = await api.describeSource({ component: ctx.component, region, op: 'DescribeDBInstances', subject: `DB instance "${o.instanceId}"` }, o.instanceId);
        return inst.status;
      });
      const checks: ValidationCheck[] = [check(`DB instance ${o.instanceId} in ${region} is available`, 'available', status)];
      if (inst && status === 'available') {
        const rec = pit ? meta.snapshot : snapshotIn(meta, region, ctx.manifest.id);
        checks.push(check('engine', meta.engine, inst.engine));
        checks.push(check('storage encrypted', rec.encrypted, inst.encrypted));
        if (!pit && rec.encrypted) checks.push(check('KMS key', rec.kmsKeyId, inst.kmsKeyId));
        if (!pit) checks.push(check('engine version', rec.engineVersion ?? meta.engineVersion, inst.engineVersion));
        if (rec.allocatedGiB !== undefined) {
          checks.push(check('allocated storage (GiB) at least the snapshot\'s', `>= ${rec.allocatedGiB}`, inst.allocatedGiB, (inst.allocatedGiB ?? 0) >= rec.allocatedGiB));
        }
      }
      return report(checks);
    },
  };
  return driver;
}

export const rdsSnapshotDriver = makeRdsSnapshotDriver();

/** Retention for rds-snapshot components: deletes only memvault's snapshots the policy forgets, in both regions. */
export function pruneSnapshots(o: PruneSnapshotsOptions, over: Partial<SnapshotDeps> = {}): Promise<PruneSnapshotsReport> {
  const deps = defaultDeps(over);
  return pruneWith(instanceApi(deps), deps, o);
}
