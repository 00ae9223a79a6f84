import { describe, it, expect, beforeEach } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import {
  RDSClient,
  CopyDBClusterSnapshotCommand,
  CreateDBClusterSnapshotCommand,
  CreateDBInstanceCommand,
  DeleteDBClusterSnapshotCommand,
  DescribeDBClusterSnapshotsCommand,
  DescribeDBClustersCommand,
  DescribeDBInstancesCommand,
  RestoreDBClusterFromSnapshotCommand,
  RestoreDBClusterToPointInTimeCommand,
  DBClusterAlreadyExistsFault,
  DBClusterNotFoundFault,
  DBClusterSnapshotAlreadyExistsFault,
  DBInstanceAlreadyExistsFault,
  InvalidDBClusterStateFault,
  KMSKeyNotAccessibleFault,
  RDSServiceException,
} from '@aws-sdk/client-rds';
import type { DBClusterSnapshot } from '@aws-sdk/client-rds';
import { auroraSnapshotSchema, makeAuroraSnapshotDriver, pruneSnapshots } from '../../functions/components/aurora-snapshot.ts';
import { KmsKeyError, SourceBusyError } from '../../functions/components/snapshot-common.ts';
import type { ServiceSnapshotState, SnapshotMeta } from '../../functions/components/snapshot-common.ts';
import { componentBaseSchema } from '../../functions/core/config.ts';
import { NotFoundError, PermanentError, ThrottledError } from '../../functions/core/errors.ts';
import type { Manifest } from '../../functions/core/manifest.ts';

const P = 'eu-west-1';
const D = 'eu-central-1';
const ACCT = '111122223333';
const SRC_KEY = `arn:aws:kms:${P}:${ACCT}:key/aaaaaaaa-1111-2222-3333-444444444444`;
const DR_KEY = 'alias/memvault-dr';
const SNAP_ID = 'memvault-episodic-20260301-030000';
const SNAP_ARN = `arn:aws:rds:${P}:${ACCT}:cluster-snapshot:${SNAP_ID}`;
const COPY_ARN = `arn:aws:rds:${D}:${ACCT}:cluster-snapshot:${SNAP_ID}`;
const meta400 = { $metadata: { httpStatusCode: 400 } };
const OURS = [{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'episodic' }];
const silent = { info() {}, warn() {}, error() {} };

function settingsOf(over: Record<string, unknown> = {}) {
  return componentBaseSchema.extend(auroraSnapshotSchema.shape).strict().parse({
    kind: 'aurora-snapshot', clusterId: 'episodes', region: P, drRegion: D, drKmsKeyId: DR_KEY, engine: 'docdb',
    restore: { instances: 2, subnetGroup: 'docdb-private', securityGroupIds: ['sg-9'] }, ...over,
  }) as never;
}

const cluster = {
  DBClusterIdentifier: 'episodes', DBClusterArn: `arn:aws:rds:${P}:${ACCT}:cluster:episodes`, Engine: 'docdb', EngineVersion: '5.0.0', Status: 'available',
  StorageEncrypted: true, KmsKeyId: SRC_KEY, AllocatedStorage: 1, DBClusterMembers: [{ DBInstanceIdentifier: 'episodes-a', IsClusterWriter: true }, { DBInstanceIdentifier: 'episodes-b', IsClusterWriter: false }],
  EarliestRestorableTime: new Date('2026-02-24T00:00:00Z'), LatestRestorableTime: new Date('2026-03-01T02:55:00Z'),
};

function csnap(id: string, status: string, over: Partial<DBClusterSnapshot> = {}): DBClusterSnapshot {
  return {
    DBClusterSnapshotIdentifier: id, DBClusterSnapshotArn: `arn:aws:rds:${P}:${ACCT}:cluster-snapshot:${id}`, DBClusterIdentifier: 'episodes', Status: status,
    Engine: 'docdb', EngineVersion: '5.0.0', StorageEncrypted: true, KmsKeyId: SRC_KEY, SnapshotType: 'manual', SnapshotCreateTime: new Date('2026-03-01T03:00:00Z'),
    TagList: OURS, ...over,
  };
}

describe('aurora-snapshot driver (Aurora and DocumentDB clusters)', () => {
  const primary = new RDSClient({ region: P });
  const dr = new RDSClient({ region: D });
  const pm = mockClient(primary);
  const dm = mockClient(dr);
  let now: Date;
  let sleeps: number[];
  const deps = {
    client: (r: string) => {
      if (r === P) return primary;
      if (r === D) return dr;
      throw new Error(`unexpected region ${r}`);
    },
    sleep: async (ms: number) => { sleeps.push(ms); now = new Date(now.getTime() + ms); },
    clock: { now: () => now },
  };
  const driver = makeAuroraSnapshotDriver(deps);
  const ctx = (over: Record<string, unknown> = {}) =>
    ({ component: 'episodic', settings: settingsOf(over), type: 'incremental', writer: undefined as never, resolve: (p: string) => p, log: silent }) as never;

  beforeEach(() => {
    pm.reset();
    dm.reset();
    now = new Date('2026-03-01T03:00:00Z');
    sleeps = [];
  });

  it('backup() snapshots a DocumentDB cluster, copies it to DR under the DR key, and records writer class and members', async () => {
    pm.on(DescribeDBClustersCommand).resolves({ DBClusters: [cluster] });
    pm.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'episodes-a' }).resolves({ DBInstances: [{ DBInstanceClass: 'db.r6g.large' }] });
    pm.on(DescribeDBClusterSnapshotsCommand, { SnapshotType: 'manual' }).resolves({ DBClusterSnapshots: [] });
    pm.on(CreateDBClusterSnapshotCommand).resolves({ DBClusterSnapshot: csnap(SNAP_ID, 'creating') });
    pm.on(DescribeDBClusterSnapshotsCommand, { DBClusterSnapshotIdentifier: SNAP_ID }).resolves({ DBClusterSnapshots: [csnap(SNAP_ID, 'available')] });
    dm.on(DescribeDBClusterSnapshotsCommand, { SnapshotType: 'manual' }).resolves({ DBClusterSnapshots: [] });
    const copy = (status: string) => csnap(SNAP_ID, status, { DBClusterSnapshotArn: COPY_ARN, KmsKeyId: `arn:aws:kms:${D}:${ACCT}:key/dr`, SourceDBClusterSnapshotArn: SNAP_ARN });
    dm.on(CopyDBClusterSnapshotCommand).resolves({ DBClusterSnapshot: copy('copying') });
    dm.on(DescribeDBClusterSnapshotsCommand, { DBClusterSnapshotIdentifier: SNAP_ID }).resolvesOnce({ DBClusterSnapshots: [copy('copying')] }).resolves({ DBClusterSnapshots: [copy('available')] });

    const r = await driver.backup(ctx());
    expect(pm.commandCalls(CreateDBClusterSnapshotCommand)[0].args[0].input).toMatchObject({
      DBClusterIdentifier: 'episodes', DBClusterSnapshotIdentifier: SNAP_ID,
      Tags: expect.arrayContaining([{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'episodic' }, { Key: 'memvault:type', Value: 'incremental' }]),
    });
    expect(dm.commandCalls(CopyDBClusterSnapshotCommand)[0].args[0].input).toMatchObject({
      SourceDBClusterSnapshotIdentifier: SNAP_ARN, TargetDBClusterSnapshotIdentifier: SNAP_ID, KmsKeyId: DR_KEY,
    });
    expect(sleeps).toEqual([30_000, 30_000, 30_000]);
    const m = r.meta as SnapshotMeta;
    expect(m).toMatchObject({ resource: 'cluster', sourceId: 'episodes', engine: 'docdb', engineVersion: '5.0.0', instanceClass: 'db.r6g.large', instanceCount: 2, region: P });
    expect(m.snapshot).toMatchObject({ id: SNAP_ID, arn: SNAP_ARN, kmsKeyId: SRC_KEY });
    expect(m.drCopy).toMatchObject({ id: SNAP_ID, arn: COPY_ARN, region: D, status: 'available' });
  });

  const copyState = (encrypted: boolean): ServiceSnapshotState => ({
    phase: 'copy', resource: 'cluster', sourceId: 'episodes', engine: 'aurora-postgresql', region: P, drRegion: D, snapshotId: SNAP_ID, snapshotArn: SNAP_ARN,
    encrypted, startedAt: '2026-03-01T03:00:00.000Z', reused: false,
  });

  it('copies an unencrypted cluster snapshot without a KMS key; a missing DR key is a KmsKeyError naming it', async () => {
    dm.on(DescribeDBClusterSnapshotsCommand).resolves({ DBClusterSnapshots: [] });
    dm.on(CopyDBClusterSnapshotCommand)
      .resolvesOnce({ DBClusterSnapshot: csnap(SNAP_ID, 'copying', { DBClusterSnapshotArn: COPY_ARN, StorageEncrypted: false }) })
      .rejects(new KMSKeyNotAccessibleFault({ message: 'The target KMS key does not exist, is not enabled or you do not have permissions to access it.', ...meta400 }));
    const r = await driver.poll(ctx({ drKmsKeyId: undefined }), copyState(false));
    expect(r).toMatchObject({ ready: false, state: { phase: 'copying', copyArn: COPY_ARN } });
    expect(dm.commandCalls(CopyDBClusterSnapshotCommand)[0].args[0].input).not.toHaveProperty('KmsKeyId');
    const e = await driver.poll(ctx(), copyState(true)).catch((x) => x);
    expect(e).toBeInstanceOf(KmsKeyError);
    expect(e.message).toContain(`KMS key ${DR_KEY} does not exist in ${D}`);
    expect(e.message).toContain('components.episodic.drKmsKeyId');
  });

  it('maps start errors: cluster not found, throttling, invalid cluster state; reuses an existing snapshot of ours', async () => {
    pm.on(DescribeDBClustersCommand)
      .rejectsOnce(new DBClusterNotFoundFault({ message: 'DBCluster episodes not found.', ...meta400 }))
      .rejectsOnce(new RDSServiceException({ name: 'Throttling', $fault: 'client', message: 'Rate exceeded', ...meta400 }))
      .resolves({ DBClusters: [{ ...cluster, DBClusterMembers: [] }] });
    pm.on(DescribeDBClusterSnapshotsCommand, { SnapshotType: 'manual' }).resolves({ DBClusterSnapshots: [] });
    pm.on(CreateDBClusterSnapshotCommand)
      .rejectsOnce(new InvalidDBClusterStateFault({ message: 'Cluster episodes is stopped.', ...meta400 }))
      .rejects(new DBClusterSnapshotAlreadyExistsFault({ message: 'exists', ...meta400 }));
    pm.on(DescribeDBClusterSnapshotsCommand, { DBClusterSnapshotIdentifier: SNAP_ID }).resolves({ DBClusterSnapshots: [csnap(SNAP_ID, 'creating')] });

    const e1 = await driver.start(ctx()).catch((x) => x);
    expect(e1).toBeInstanceOf(NotFoundError);
    expect(e1.message).toBe(`DB cluster "episodes" not found in ${P}: check components.episodic.clusterId and components.episodic.region`);
    await expect(driver.start(ctx())).rejects.toBeInstanceOf(ThrottledError);
    const e3 = await driver.start(ctx()).catch((x) => x);
    expect(e3).toBeInstanceOf(SourceBusyError);
    expect(e3.message).toContain('Cluster episodes is stopped.');
    expect(await driver.start(ctx())).toMatchObject({ snapshotId: SNAP_ID, reused: true, engine: 'docdb' });
  });

  it('pruneSnapshots pages with Marker and deletes only our cluster snapshots the policy forgets', async () => {
    const at = (d: number) => new Date(now.getTime() - d * 86_400_000);
    const ours = (id: string, d: number) => csnap(id, 'available', { SnapshotCreateTime: at(d) });
    pm.on(DescribeDBClusterSnapshotsCommand, { Marker: undefined }).resolves({
      DBClusterSnapshots: [...Array.from({ length: 100 }, (_, i) => csnap(`rds:auto-${i}`, 'available', { SnapshotCreateTime: at(200), TagList: [] })), ours('c-1', 1)],
      Marker: 'p2',
    });
    pm.on(DescribeDBClusterSnapshotsCommand, { Marker: 'p2' }).resolves({ DBClusterSnapshots: [ours('c-2', 2), ours('c-3', 3)] });
    pm.on(DeleteDBClusterSnapshotCommand).resolves({});
    dm.on(DescribeDBClusterSnapshotsCommand).resolves({ DBClusterSnapshots: [ours('c-3', 3)] });
    const rep = await pruneSnapshots({ component: 'episodic', settings: settingsOf({ retention: { keepLast: 2 } }) }, deps);
    expect(pm.commandCalls(DeleteDBClusterSnapshotCommand).map((c) => c.args[0].input)).toEqual([{ DBClusterSnapshotIdentifier: 'c-3' }]);
    expect(dm.commandCalls(DeleteDBClusterSnapshotCommand)).toHaveLength(0);
    expect(rep.regions.map((r) => [r.region, r.kept.map((k) => k.id), r.ignored])).toEqual([[P, ['c-1', 'c-2'], 100], [D, ['c-3'], 0]]);
  });

  const manifest = (): Manifest => ({
    format: 'memvault-manifest/1', id: '20260301-feed0001', component: 'episodic', kind: 'aurora-snapshot', type: 'full',
    startedAt: '2026-03-01T03:00:00.000Z', finishedAt: '2026-03-01T03:20:00.000Z', host: 'h', entries: [], warnings: [],
    stats: { bytesRead: 0, bytesTotal: 0, bytesUnchanged: 0, newBytes: 0, bytesStored: 0, chunksTotal: 0, chunksNew: 0, entries: 0, durationMs: 0 },
    driver: {
      resource: 'cluster', sourceId: 'episodes', engine: 'docdb', engineVersion: '5.0.0', instanceClass: 'db.r6g.large', instanceCount: 2, region: P,
      startedAt: '2026-03-01T03:00:00.000Z', readyAt: '2026-03-01T03:20:00.000Z', reused: false,
      snapshot: { id: SNAP_ID, arn: SNAP_ARN, region: P, status: 'available', encrypted: true, kmsKeyId: SRC_KEY, engineVersion: '5.0.0' },
      drCopy: { id: SNAP_ID, arn: COPY_ARN, region: D, status: 'available', encrypted: true, kmsKeyId: `arn:aws:kms:${D}:${ACCT}:key/dr`, engineVersion: '5.0.0' },
    },
  });
  const rctx = (options: Record<string, unknown>) =>
    ({ component: 'episodic', settings: settingsOf(), manifest: manifest(), vault: undefined as never, target: { dir: '/unused', options }, location: '', resolve: (p: string) => p, log: silent }) as never;

  it('restores a new cluster with its members from the snapshot, and continues its own half-done restore', async () => {
    pm.on(DescribeDBClusterSnapshotsCommand).resolves({ DBClusterSnapshots: [csnap(SNAP_ID, 'available')] });
    pm.on(RestoreDBClusterFromSnapshotCommand).resolvesOnce({}).rejects(new DBClusterAlreadyExistsFault({ message: 'DB Cluster already exists', ...meta400 }));
    pm.on(CreateDBInstanceCommand).resolvesOnce({}).resolvesOnce({}).rejectsOnce(new DBInstanceAlreadyExistsFault({ message: 'exists', ...meta400 })).resolves({});
    const r = await driver.restore(rctx({ clusterId: 'episodes-restored' }));
    expect(r).toMatchObject({ location: `${P}/episodes-restored`, entries: 0 });
    expect(pm.commandCalls(RestoreDBClusterFromSnapshotCommand)[0].args[0].input).toMatchObject({
      DBClusterIdentifier: 'episodes-restored', SnapshotIdentifier: SNAP_ID, Engine: 'docdb', EngineVersion: '5.0.0', DBSubnetGroupName: 'docdb-private', VpcSecurityGroupIds: ['sg-9'],
    });
    expect(pm.commandCalls(CreateDBInstanceCommand).map((c) => c.args[0].input)).toMatchObject([
      { DBInstanceIdentifier: 'episodes-restored-1', DBClusterIdentifier: 'episodes-restored', Engine: 'docdb', DBInstanceClass: 'db.r6g.large' },
      { DBInstanceIdentifier: 'episodes-restored-2', DBClusterIdentifier: 'episodes-restored', Engine: 'docdb', DBInstanceClass: 'db.r6g.large' },
    ]);

    // A retry after the cluster exists: ours for this backup -> continue; anyone else's -> refuse.
    pm.on(DescribeDBClustersCommand).resolvesOnce({ DBClusters: [{ ...cluster, TagList: [{ Key: 'memvault:restored-from', Value: '20260301-feed0001' }] }] })
      .resolves({ DBClusters: [{ ...cluster, TagList: [] }] });
    await driver.restore(rctx({ clusterId: 'episodes-restored' }));
    expect(pm.commandCalls(CreateDBInstanceCommand)).toHaveLength(4);
    const e = await driver.restore(rctx({ clusterId: 'episodes-restored' })).catch((x) => x);
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toContain('already exists; restore into a new name');
    await expect(driver.restore(rctx({ clusterId: 'episodes' }))).rejects.toThrow('"episodes" is the live source cluster');
  });

  it('restores to a point in time inside the cluster window, names the window otherwise, and refuses it in the DR region', async () => {
    pm.on(DescribeDBClustersCommand).resolves({ DBClusters: [cluster] });
    pm.on(RestoreDBClusterToPointInTimeCommand).resolves({});
    pm.on(CreateDBInstanceCommand).resolves({});
    await driver.restore(rctx({ clusterId: 'episodes-pit', pointInTime: '2026-02-28T10:00:00Z', instances: 1, instanceClass: 'db.t4g.medium' }));
    expect(pm.commandCalls(RestoreDBClusterToPointInTimeCommand)[0].args[0].input).toMatchObject({
      DBClusterIdentifier: 'episodes-pit', SourceDBClusterIdentifier: 'episodes', RestoreToTime: new Date('2026-02-28T10:00:00Z'), RestoreType: 'full-copy',
    });
    expect(pm.commandCalls(CreateDBInstanceCommand).map((c) => c.args[0].input.DBInstanceClass)).toEqual(['db.t4g.medium']);
    await expect(driver.restore(rctx({ clusterId: 'episodes-pit', pointInTime: '2026-03-01T03:00:00Z' }))).rejects.toThrow(
      'outside the restorable window of DB cluster "episodes" in eu-west-1: 2026-02-24T00:00:00.000Z to 2026-03-01T02:55:00.000Z',
    );
    await expect(driver.restore(rctx({ clusterId: 'episodes-pit', region: D, pointInTime: 'latest' }))).rejects.toThrow(/only possible in its own region eu-west-1/);
    expect(pm.commandCalls(RestoreDBClusterToPointInTimeCommand)).toHaveLength(1);
  });

  it('validate() waits for the cluster and its members and compares engine, encryption and key with the DR copy', async () => {
    const restored = { ...cluster, DBClusterIdentifier: 'episodes-dr', KmsKeyId: `arn:aws:kms:${D}:${ACCT}:key/dr` };
    dm.on(DescribeDBClustersCommand).resolvesOnce({ DBClusters: [{ ...restored, Status: 'creating' }] }).resolves({ DBClusters: [restored] });
    dm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: 'episodes-dr-1', DBInstanceStatus: 'available' }, { DBInstanceIdentifier: 'episodes-dr-2', DBInstanceStatus: 'available' }] });
    const ok = await driver.validate(rctx({ clusterId: 'episodes-dr', region: D }));
    expect(ok.ok).toBe(true);
    expect(ok.checks.map((c) => c.name)).toEqual([`DB cluster episodes-dr in ${D} and its instances are available`, 'available instances', 'engine', 'storage encrypted', 'KMS key', 'engine version']);
    expect(dm.commandCalls(DescribeDBInstancesCommand)[0].args[0].input).toEqual({ Filters: [{ Name: 'db-cluster-id', Values: ['episodes-dr'] }] });

    dm.on(DescribeDBClustersCommand).resolves({ DBClusters: [{ ...restored, Engine: 'aurora-postgresql' }] });
    const bad = await driver.validate(rctx({ clusterId: 'episodes-dr', region: D }));
    expect(bad.checks.filter((c) => !c.ok)).toEqual([{ name: 'engine', ok: false, expected: 'docdb', actual: 'aurora-postgresql' }]);
  });
});
