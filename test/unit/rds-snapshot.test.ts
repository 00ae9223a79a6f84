import { describe, it, expect, beforeEach } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import {
  RDSClient,
  CopyDBSnapshotCommand,
  CreateDBSnapshotCommand,
  DeleteDBSnapshotCommand,
  DescribeDBInstanceAutomatedBackupsCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  RestoreDBInstanceFromDBSnapshotCommand,
  RestoreDBInstanceToPointInTimeCommand,
  DBInstanceNotFoundFault,
  DBSnapshotAlreadyExistsFault,
  InvalidDBInstanceStateFault,
  InvalidDBSnapshotStateFault,
  KMSKeyNotAccessibleFault,
  SnapshotQuotaExceededFault,
  RDSServiceException,
} from '@aws-sdk/client-rds';
import type { DBSnapshot } from '@aws-sdk/client-rds';
import { makeRdsSnapshotDriver, pruneSnapshots, rdsSnapshotSchema } from '../../functions/components/rds-snapshot.ts';
import { KmsKeyError, SnapshotCopyLimitError, SnapshotFailedError, SnapshotQuotaError, SourceBusyError } from '../../functions/components/snapshot-common.ts';
import type { ServiceSnapshotState, SnapshotMeta } from '../../functions/components/snapshot-common.ts';
import { componentBaseSchema } from '../../functions/core/config.ts';
import { ConfigError, NotFoundError, PermanentError, ThrottledError, isRetryable } from '../../functions/core/errors.ts';
import type { Manifest } from '../../functions/core/manifest.ts';

const P = 'us-east-1';
const D = 'us-west-2';
const ACCT = '111122223333';
const SRC_KEY = `arn:aws:kms:${P}:${ACCT}:key/aaaaaaaa-1111-2222-3333-444444444444`;
const DR_KEY = `arn:aws:kms:${D}:${ACCT}:key/bbbbbbbb-1111-2222-3333-444444444444`;
const SNAP_ID = 'memvault-memory-db-20260301-030000';
const SNAP_ARN = `arn:aws:rds:${P}:${ACCT}:snapshot:${SNAP_ID}`;
const COPY_ARN = `arn:aws:rds:${D}:${ACCT}:snapshot:${SNAP_ID}`;
const meta400 = { $metadata: { httpStatusCode: 400 } };
const OURS = [{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'memory-db' }];
const silent = { info() {}, warn() {}, error() {} };

function settingsOf(over: Record<string, unknown> = {}) {
  return componentBaseSchema.extend(rdsSnapshotSchema.shape).strict().parse({
    kind: 'rds-snapshot', instanceId: 'memdb', region: P, drRegion: D, drKmsKeyId: DR_KEY, engine: 'postgres',
    restore: { instanceClass: 'db.r6g.large', subnetGroup: 'private-a', securityGroupIds: ['sg-1'], dr: { subnetGroup: 'dr-private' } },
    ...over,
  }) as never;
}

const instance = {
  DBInstanceIdentifier: 'memdb', DBInstanceArn: `arn:aws:rds:${P}:${ACCT}:db:memdb`, Engine: 'postgres', EngineVersion: '16.3',
  DBInstanceStatus: 'available', StorageEncrypted: true, KmsKeyId: SRC_KEY, AllocatedStorage: 100, StorageType: 'gp3', DBInstanceClass: 'db.r6g.large',
  LatestRestorableTime: new Date('2026-03-01T02:55:00Z'),
};

function snap(id: string, status: string, over: Partial<DBSnapshot> = {}): DBSnapshot {
  return {
    DBSnapshotIdentifier: id, DBSnapshotArn: `arn:aws:rds:${P}:${ACCT}:snapshot:${id}`, DBInstanceIdentifier: 'memdb', Status: status,
    Engine: 'postgres', EngineVersion: '16.3', Encrypted: true, KmsKeyId: SRC_KEY, AllocatedStorage: 100, StorageType: 'gp3',
    SnapshotType: 'manual', SnapshotCreateTime: new Date('2026-03-01T03:00:00Z'), TagList: OURS, ...over,
  };
}

describe('rds-snapshot driver', () => {
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
  const driver = makeRdsSnapshotDriver(deps);
  const ctx = (over: Record<string, unknown> = {}) =>
    ({ component: 'memory-db', settings: settingsOf(over), type: 'full', writer: undefined as never, resolve: (p: string) => p, log: silent }) as never;
  const json = <T>(v: T): T => JSON.parse(JSON.stringify(v));

  beforeEach(() => {
    pm.reset();
    dm.reset();
    now = new Date('2026-03-01T03:00:00.250Z');
    sleeps = [];
  });

  it('creates a tagged snapshot, waits, copies it to the DR region under the DR key, and records both', async () => {
    pm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [instance] });
    pm.on(DescribeDBSnapshotsCommand, { SnapshotType: 'manual' }).resolves({ DBSnapshots: [snap('manual-by-someone', 'creating', { TagList: [] })] });
    pm.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: SNAP_ID })
      .resolvesOnce({ DBSnapshots: [snap(SNAP_ID, 'creating', { PercentProgress: 40 })] })
      .resolves({ DBSnapshots: [snap(SNAP_ID, 'available')] });
    pm.on(CreateDBSnapshotCommand).resolves({ DBSnapshot: snap(SNAP_ID, 'creating') });
    dm.on(DescribeDBSnapshotsCommand, { SnapshotType: 'manual' }).resolves({
      DBSnapshots: [snap('other-copy', 'copying', { SourceRegion: 'eu-west-1', SourceDBSnapshotIdentifier: 'arn:aws:rds:eu-west-1:1:snapshot:x' })],
    });
    const copy = (status: string) => snap(SNAP_ID, status, { DBSnapshotArn: COPY_ARN, KmsKeyId: DR_KEY, SourceRegion: P, SourceDBSnapshotIdentifier: SNAP_ARN });
    dm.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: SNAP_ID }).resolvesOnce({ DBSnapshots: [copy('copying')] }).resolves({ DBSnapshots: [copy('available')] });
    dm.on(CopyDBSnapshotCommand).resolves({ DBSnapshot: copy('pending') });

    const s0 = json(await driver.start(ctx()));
    const create = pm.commandCalls(CreateDBSnapshotCommand);
    expect(create).toHaveLength(1);
    expect(create[0].args[0].input).toMatchObject({ DBInstanceIdentifier: 'memdb', DBSnapshotIdentifier: SNAP_ID });
    expect(create[0].args[0].input.Tags).toEqual(expect.arrayContaining([
      { Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'memory-db' }, { Key: 'memvault:type', Value: 'full' },
    ]));
    expect(s0).toMatchObject({ phase: 'snapshot', snapshotId: SNAP_ID, sourceId: 'memdb', engine: 'postgres', reused: false });

    const p1 = await driver.poll(ctx(), s0);
    expect(p1.ready).toBe(false);
    expect(p1.state.waitingFor).toBe('snapshot creating 40%');
    expect(dm.commandCalls(CopyDBSnapshotCommand)).toHaveLength(0);

    const p2 = await driver.poll(ctx(), json(p1.state));
    expect(p2.ready).toBe(false);
    expect((p2.state as ServiceSnapshotState).phase).toBe('copying');
    const copies = dm.commandCalls(CopyDBSnapshotCommand);
    expect(copies).toHaveLength(1);
    expect(copies[0].args[0].input).toMatchObject({ SourceDBSnapshotIdentifier: SNAP_ARN, TargetDBSnapshotIdentifier: SNAP_ID, KmsKeyId: DR_KEY });
    expect(copies[0].args[0].input.Tags).toEqual(expect.arrayContaining([{ Key: 'memvault:managed', Value: 'true' }]));

    const p3 = await driver.poll(ctx(), json(p2.state));
    expect(p3).toMatchObject({ ready: false, state: { waitingFor: `copy to ${D} copying` } });
    const p4 = await driver.poll(ctx(), json(p3.state));
    expect(p4.ready).toBe(true);

    const r = await driver.finish(ctx(), json(p4.state));
    expect(r.entries).toEqual([]);
    const m = r.meta as SnapshotMeta;
    expect(m).toMatchObject({ resource: 'instance', sourceId: 'memdb', engine: 'postgres', engineVersion: '16.3', region: P, instanceClass: 'db.r6g.large' });
    expect(m.snapshot).toMatchObject({ id: SNAP_ID, arn: SNAP_ARN, region: P, kmsKeyId: SRC_KEY, encrypted: true, allocatedGiB: 100 });
    expect(m.drCopy).toMatchObject({ id: SNAP_ID, arn: COPY_ARN, region: D, kmsKeyId: DR_KEY, status: 'available' });
  });

  it('backup() resumes our snapshot in progress and, with copyToDr false, never touches the DR region', async () => {
    pm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ ...instance, StorageEncrypted: false, KmsKeyId: undefined }] });
    pm.on(DescribeDBSnapshotsCommand, { SnapshotType: 'manual' }).resolves({ DBSnapshots: [snap('memvault-memory-db-20260301-020000', 'creating')] });
    pm.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: 'memvault-memory-db-20260301-020000' })
      .resolvesOnce({ DBSnapshots: [snap('memvault-memory-db-20260301-020000', 'creating')] })
      .resolves({ DBSnapshots: [snap('memvault-memory-db-20260301-020000', 'available', { Encrypted: false, KmsKeyId: undefined })] });
    const r = await driver.backup(ctx({ copyToDr: false, drRegion: undefined, drKmsKeyId: undefined, pollIntervalSeconds: 10 }));
    expect(pm.commandCalls(CreateDBSnapshotCommand)).toHaveLength(0);
    expect(dm.calls()).toHaveLength(0);
    expect(sleeps).toEqual([10_000, 10_000]);
    expect(r.meta).toMatchObject({ reused: true, drCopy: null, snapshot: { id: 'memvault-memory-db-20260301-020000', encrypted: false } });
    expect(r.warnings[0]).toContain('copyToDr is false');
  });

  it('backup() retries throttling and fails with NotReadyError after timeoutMinutes', async () => {
    pm.on(DescribeDBInstancesCommand)
      .rejectsOnce(new RDSServiceException({ name: 'Throttling', $fault: 'client', message: 'Rate exceeded', ...meta400 }))
      .resolves({ DBInstances: [instance] });
    // The retried start runs 30 s later, so its snapshot id is ...-030030.
    pm.on(DescribeDBSnapshotsCommand).callsFake((input) => ({ DBSnapshots: input.SnapshotType ? [] : [snap(input.DBSnapshotIdentifier, 'creating')] }));
    pm.on(CreateDBSnapshotCommand).callsFake((input) => ({ DBSnapshot: snap(input.DBSnapshotIdentifier, 'creating') }));
    await expect(driver.backup(ctx({ timeoutMinutes: 2, pollIntervalSeconds: 30 }))).rejects.toMatchObject({ name: 'NotReadyError', message: expect.stringContaining('not ready after 2 minutes') });
    expect(pm.commandCalls(DescribeDBInstancesCommand)).toHaveLength(2);
    expect(pm.commandCalls(CreateDBSnapshotCommand).map((c) => c.args[0].input.DBSnapshotIdentifier)).toEqual(['memvault-memory-db-20260301-030030']);
  });

  it('reuses a snapshot that already exists when it is ours, refuses one that is not', async () => {
    pm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [instance] });
    pm.on(DescribeDBSnapshotsCommand, { SnapshotType: 'manual' }).resolves({ DBSnapshots: [] });
    pm.on(CreateDBSnapshotCommand).rejects(new DBSnapshotAlreadyExistsFault({ message: 'Cannot create the snapshot because a snapshot with the identifier already exists.', ...meta400 }));
    pm.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: SNAP_ID }).resolvesOnce({ DBSnapshots: [snap(SNAP_ID, 'creating')] })
      .resolves({ DBSnapshots: [snap(SNAP_ID, 'creating', { TagList: [] })] });
    const st = await driver.start(ctx());
    expect(st).toMatchObject({ snapshotId: SNAP_ID, snapshotArn: SNAP_ARN, reused: true });
    await expect(driver.start(ctx())).rejects.toThrow(/already exists in us-east-1 but is not tagged as memvault's/);
  });

  it('maps errors of start: instance not found, throttling, invalid state', async () => {
    pm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [] });
    pm.on(DescribeDBInstancesCommand)
      .rejectsOnce(new DBInstanceNotFoundFault({ message: 'DBInstance memdb not found.', ...meta400 }))
      .rejectsOnce(new RDSServiceException({ name: 'ThrottlingException', $fault: 'client', message: 'Rate exceeded', ...meta400 }))
      .resolves({ DBInstances: [instance] });
    const e1 = await driver.start(ctx()).catch((e) => e);
    expect(e1).toBeInstanceOf(NotFoundError);
    expect(e1.message).toBe('DB instance "memdb" not found in us-east-1: check components.memory-db.instanceId and components.memory-db.region');

    const e2 = await driver.start(ctx()).catch((e) => e);
    expect(e2).toBeInstanceOf(ThrottledError);
    expect(isRetryable(e2)).toBe(true);

    pm.on(CreateDBSnapshotCommand).rejects(new InvalidDBInstanceStateFault({ message: 'Instance memdb is not currently in the available state.', ...meta400 }));
    const e3 = await driver.start(ctx()).catch((e) => e);
    expect(e3).toBeInstanceOf(SourceBusyError);
    expect(e3.name).toBe('SourceBusyError');
    expect(isRetryable(e3)).toBe(true);
  });

  it('refuses an encrypted source without drKmsKeyId before creating anything, and a DR key from another region', async () => {
    pm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [instance] });
    const e = await driver.start(ctx({ drKmsKeyId: undefined })).catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain('components.memory-db.drKmsKeyId');
    expect(e.message).toContain('aws/rds');
    expect(e.message).toContain(SRC_KEY);
    expect(pm.commandCalls(CreateDBSnapshotCommand)).toHaveLength(0);
    await expect(driver.start(ctx({ drKmsKeyId: SRC_KEY }))).rejects.toThrow(`components.memory-db.drKmsKeyId: key ${SRC_KEY} is in us-east-1, but the DR copy is made in us-west-2`);
  });

  const copyState = (): ServiceSnapshotState => ({
    phase: 'copy', resource: 'instance', sourceId: 'memdb', engine: 'postgres', region: P, drRegion: D, snapshotId: SNAP_ID, snapshotArn: SNAP_ARN,
    encrypted: true, sourceKmsKeyId: SRC_KEY, startedAt: '2026-03-01T03:00:00.000Z', reused: false,
  });

  it('maps copy errors: missing KMS key, the concurrent copy limit (retryable), the snapshot quota (permanent)', async () => {
    dm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [] });
    dm.on(CopyDBSnapshotCommand)
      .rejectsOnce(new KMSKeyNotAccessibleFault({ message: `The target KMS key [${DR_KEY}] does not exist, is not enabled or you do not have permissions to access it.`, ...meta400 }))
      .rejectsOnce(new SnapshotQuotaExceededFault({ message: 'Cannot copy more than 5 snapshots across regions', ...meta400 }))
      .rejectsOnce(new SnapshotQuotaExceededFault({ message: 'Cannot create more than 100 manual snapshots', ...meta400 }));
    const e1 = await driver.poll(ctx(), copyState()).catch((e) => e);
    expect(e1).toBeInstanceOf(KmsKeyError);
    expect(e1.message).toContain(DR_KEY);
    expect(e1.message).toContain('check components.memory-db.drKmsKeyId');
    expect(isRetryable(e1)).toBe(false);
    const e2 = await driver.poll(ctx(), copyState()).catch((e) => e);
    expect(e2).toBeInstanceOf(SnapshotCopyLimitError);
    expect(e2.name).toBe('SnapshotCopyLimitError');
    expect(isRetryable(e2)).toBe(true);
    const e3 = await driver.poll(ctx(), copyState()).catch((e) => e);
    expect(e3).toBeInstanceOf(SnapshotQuotaError);
    expect(isRetryable(e3)).toBe(false);
    expect(e3.message).toContain('manual snapshot quota of us-west-2');
  });

  it('waits for a copy slot when 5 copies are in progress in the DR region (counted across pages)', async () => {
    const inFlight = (i: number) => snap(`x${i}`, i % 2 ? 'pending' : 'copying', { SourceRegion: 'eu-west-1', SourceDBSnapshotIdentifier: `arn:aws:rds:eu-west-1:${ACCT}:snapshot:x${i}`, TagList: [] });
    dm.on(DescribeDBSnapshotsCommand, { SnapshotType: 'manual', Marker: undefined })
      .resolves({ DBSnapshots: [inFlight(1), inFlight(2), snap('done', 'available', { SourceRegion: 'eu-west-1' }), inFlight(3)], Marker: 'm2' });
    dm.on(DescribeDBSnapshotsCommand, { SnapshotType: 'manual', Marker: 'm2' }).resolves({ DBSnapshots: [inFlight(4), inFlight(5)] });
    const r = await driver.poll(ctx(), copyState());
    expect(r.ready).toBe(false);
    expect(r.state.phase).toBe('copy');
    expect(r.state.waitingFor).toBe('a copy slot in us-west-2: 5 cross-region copies in progress (limit 5)');
    expect(dm.commandCalls(CopyDBSnapshotCommand)).toHaveLength(0);
    expect(dm.commandCalls(DescribeDBSnapshotsCommand)[1].args[0].input).toMatchObject({ Marker: 'm2', MaxRecords: 100 });
  });

  it('fails permanently, naming the snapshot, when it fails or vanishes', async () => {
    pm.on(DescribeDBSnapshotsCommand).resolvesOnce({ DBSnapshots: [snap(SNAP_ID, 'failed')] }).resolvesOnce({ DBSnapshots: [] });
    const st = { ...copyState(), phase: 'snapshot' };
    await expect(driver.poll(ctx(), st)).rejects.toThrow(new SnapshotFailedError(`snapshot "${SNAP_ID}" of DB instance "memdb" in us-east-1 is failed`));
    await expect(driver.poll(ctx(), st)).rejects.toBeInstanceOf(SnapshotFailedError);
  });

  it('pruneSnapshots pages beyond 100, deletes only ours that the policy forgets, never the newest available one', async () => {
    const day = 86_400_000;
    const at = (d: number) => new Date(now.getTime() - d * day);
    const ours = (id: string, d: number, status = 'available') => snap(id, status, { SnapshotCreateTime: at(d), TagList: [...OURS, { Key: 'memvault:created', Value: at(d).toISOString() }] });
    const foreign = Array.from({ length: 97 }, (_, i) => snap(`someone-${i}`, 'available', { SnapshotCreateTime: at(400), TagList: [] }));
    const page1 = [...foreign, ours('p-new-creating', 0, 'creating'), snap('other-comp', 'available', { SnapshotCreateTime: at(50), TagList: [{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'other' }] }), ours('p-2d', 2)];
    pm.on(DescribeDBSnapshotsCommand, { Marker: undefined }).resolves({ DBSnapshots: page1, Marker: 'next' });
    pm.on(DescribeDBSnapshotsCommand, { Marker: 'next' }).resolves({ DBSnapshots: [ours('p-3d', 3), ours('p-9d', 9), snap('managed-tag-missing', 'available', { SnapshotCreateTime: at(60), TagList: [{ Key: 'memvault:component', Value: 'memory-db' }] })] });
    pm.on(DeleteDBSnapshotCommand).resolves({});
    dm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [ours('d-3d', 3), ours('d-9d', 9), ours('d-20d', 20)] });
    dm.on(DeleteDBSnapshotCommand, { DBSnapshotIdentifier: 'd-9d' }).rejects(new InvalidDBSnapshotStateFault({ message: 'snapshot is being copied', ...meta400 }));
    dm.on(DeleteDBSnapshotCommand, { DBSnapshotIdentifier: 'd-20d' }).resolves({});

    const rep = await pruneSnapshots({ component: 'memory-db', settings: settingsOf({ retention: { days: 1 } }) }, deps);
    expect(pm.commandCalls(DescribeDBSnapshotsCommand)).toHaveLength(2);
    expect(pm.commandCalls(DescribeDBSnapshotsCommand)[1].args[0].input).toEqual({ SnapshotType: 'manual', MaxRecords: 100, Marker: 'next' });
    expect(pm.commandCalls(DeleteDBSnapshotCommand).map((c) => c.args[0].input.DBSnapshotIdentifier).sort()).toEqual(['p-3d', 'p-9d']);
    expect(dm.commandCalls(DeleteDBSnapshotCommand).map((c) => c.args[0].input.DBSnapshotIdentifier).sort()).toEqual(['d-20d', 'd-9d']);
    const [pr, drr] = rep.regions;
    expect(pr.kept.map((k) => k.id)).toEqual(['p-2d']);
    expect(pr.skipped.map((k) => k.id)).toEqual(['p-new-creating']);
    expect(pr.ignored).toBe(99);
    expect(drr.kept.map((k) => k.id)).toEqual(['d-3d']);
    expect(drr.deleted.map((k) => k.id)).toEqual(['d-20d']);
    expect(drr.skipped).toMatchObject([{ id: 'd-9d', status: 'busy' }]);
  });

  const manifest = (): Manifest => ({
    format: 'memvault-manifest/1', id: '20260301-abcd1234', component: 'memory-db', kind: 'rds-snapshot', type: 'full',
    startedAt: '2026-03-01T03:00:00.000Z', finishedAt: '2026-03-01T03:40:00.000Z', host: 'h', entries: [], warnings: [],
    stats: { bytesRead: 0, bytesTotal: 0, bytesUnchanged: 0, newBytes: 0, bytesStored: 0, chunksTotal: 0, chunksNew: 0, entries: 0, durationMs: 0 },
    driver: {
      resource: 'instance', sourceId: 'memdb', engine: 'postgres', engineVersion: '16.3', region: P, startedAt: '2026-03-01T03:00:00.000Z', readyAt: '2026-03-01T03:40:00.000Z', reused: false,
      snapshot: { id: SNAP_ID, arn: SNAP_ARN, region: P, status: 'available', encrypted: true, kmsKeyId: SRC_KEY, allocatedGiB: 100, engineVersion: '16.3' },
      drCopy: { id: SNAP_ID, arn: COPY_ARN, region: D, status: 'available', encrypted: true, kmsKeyId: DR_KEY, allocatedGiB: 100, engineVersion: '16.3' },
    },
  });
  const rctx = (options: Record<string, unknown>) =>
    ({ component: 'memory-db', settings: settingsOf(), manifest: manifest(), vault: undefined as never, target: { dir: '/unused', options }, location: '', resolve: (p: string) => p, log: silent }) as never;

  it('restores a new instance from the primary snapshot or from the DR copy, never over the source', async () => {
    pm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [snap(SNAP_ID, 'available')] });
    pm.on(RestoreDBInstanceFromDBSnapshotCommand).resolves({ DBInstance: { DBInstanceArn: `arn:aws:rds:${P}:${ACCT}:db:memdb-restored` } });
    const r = await driver.restore(rctx({ instanceId: 'memdb-restored', instanceClass: 'db.t4g.medium' }));
    expect(r).toEqual({ location: `arn:aws:rds:${P}:${ACCT}:db:memdb-restored`, bytes: 100 * 2 ** 30, entries: 0 });
    expect(pm.commandCalls(RestoreDBInstanceFromDBSnapshotCommand)[0].args[0].input).toMatchObject({
      DBInstanceIdentifier: 'memdb-restored', DBSnapshotIdentifier: SNAP_ID, DBInstanceClass: 'db.t4g.medium',
      DBSubnetGroupName: 'private-a', VpcSecurityGroupIds: ['sg-1'], PubliclyAccessible: false,
    });

    dm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [snap(SNAP_ID, 'available', { DBSnapshotArn: COPY_ARN })] });
    dm.on(RestoreDBInstanceFromDBSnapshotCommand).resolves({ DBInstance: {} });
    await driver.restore(rctx({ instanceId: 'memdb', region: D }));
    expect(dm.commandCalls(RestoreDBInstanceFromDBSnapshotCommand)[0].args[0].input).toMatchObject({
      DBInstanceIdentifier: 'memdb', DBSnapshotIdentifier: SNAP_ID, DBSubnetGroupName: 'dr-private', DBInstanceClass: 'db.r6g.large',
    });

    await expect(driver.restore(rctx({ instanceId: 'memdb' }))).rejects.toThrow('target.options.instanceId: "memdb" is the live source instance');
    await expect(driver.restore(rctx({ instanceId: 'x', region: 'eu-west-1' }))).rejects.toThrow(/target.options.region: eu-west-1 is neither/);
    pm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [] });
    await expect(driver.restore(rctx({ instanceId: 'memdb-2' }))).rejects.toThrow(`snapshot "${SNAP_ID}" of backup 20260301-abcd1234 no longer exists in us-east-1`);
  });

  it('restores to a point in time inside the window, names the window otherwise', async () => {
    pm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [instance] });
    pm.on(DescribeDBInstanceAutomatedBackupsCommand).resolves({ DBInstanceAutomatedBackups: [{ DBInstanceIdentifier: 'memdb', Region: P, RestoreWindow: { EarliestTime: new Date('2026-02-22T03:00:00Z'), LatestTime: new Date('2026-03-01T02:55:00Z') } }] });
    pm.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceArn: 'arn:new' } });
    await driver.restore(rctx({ instanceId: 'memdb-pit', pointInTime: '2026-02-28T12:00:00Z' }));
    expect(pm.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input).toMatchObject({
      SourceDBInstanceIdentifier: 'memdb', TargetDBInstanceIdentifier: 'memdb-pit', RestoreTime: new Date('2026-02-28T12:00:00Z'), DBInstanceClass: 'db.r6g.large',
    });
    await expect(driver.restore(rctx({ instanceId: 'memdb-pit', pointInTime: '2026-02-01T00:00:00Z' }))).rejects.toThrow(
      'target.options.pointInTime 2026-02-01T00:00:00.000Z is outside the restorable window of DB instance "memdb" in us-east-1: 2026-02-22T03:00:00.000Z to 2026-03-01T02:55:00.000Z',
    );
    expect(pm.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(1);
    dm.on(DescribeDBInstanceAutomatedBackupsCommand).resolves({ DBInstanceAutomatedBackups: [] });
    const e = await driver.restore(rctx({ instanceId: 'memdb-pit', region: D, pointInTime: 'latest' })).catch((x) => x);
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toContain('no replicated automated backups of DB instance "memdb" in us-west-2');
  });

  it('validate() waits for the new instance and compares engine, encryption, key and storage with the snapshot', async () => {
    const restored = { ...instance, DBInstanceIdentifier: 'memdb-restored', KmsKeyId: DR_KEY };
    dm.on(DescribeDBInstancesCommand).resolvesOnce({ DBInstances: [{ ...restored, DBInstanceStatus: 'creating' }] }).resolves({ DBInstances: [restored] });
    const ok = await driver.validate(rctx({ instanceId: 'memdb-restored', region: D }));
    expect(ok.ok).toBe(true);
    expect(ok.checks.map((c) => c.name)).toEqual(['DB instance memdb-restored in us-west-2 is available', 'engine', 'storage encrypted', 'KMS key', 'engine version', "allocated storage (GiB) at least the snapshot's"]);
    expect(sleeps).toEqual([30_000]);

    dm.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ ...restored, StorageEncrypted: false, KmsKeyId: undefined }] });
    const bad = await driver.validate(rctx({ instanceId: 'memdb-restored', region: D }));
    expect(bad.ok).toBe(false);
    expect(bad.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['storage encrypted', 'KMS key']);
  });
});
