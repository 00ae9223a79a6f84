// restore of a service-snapshot component (rds-snapshot) through the restore
// state machine, locally, with the RDS API mocked (aws-sdk-client-mock): the
// new instance takes a while to become available, so validation is a Wait +
// poll loop of one non-blocking look per invocation (never a sleeping
// Lambda), and gives up with an alert after the component's timeout.
import { beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { DescribeDBInstancesCommand, DescribeDBSnapshotsCommand, RDSClient, RestoreDBInstanceFromDBSnapshotCommand } from '@aws-sdk/client-rds';
import { manifestKey, type Manifest } from '../../functions/core/manifest.ts';
import { openVault } from '../../functions/services.ts';
import { makeRdsSnapshotDriver } from '../../functions/components/rds-snapshot.ts';
import { driverFor } from '../../functions/components/registry.ts';
import type { RemoteEvent } from '../../functions/adapters/sfn.ts';
import { alerts, platformFixture, run } from './helpers.ts';
import { awsSchema } from '../../functions/core/aws-config.ts';

const rds = mockClient(RDSClient);
const KMS = 'arn:aws:kms:eu-west-1:111111111111:key/k1';
const SNAP = 'memvault-orders-db-20260101-020000';
const instance = (status: string) => ({
  DBInstances: [{
    DBInstanceIdentifier: 'orders-restored', DBInstanceArn: 'arn:aws:rds:eu-west-1:111111111111:db:orders-restored', DBInstanceStatus: status,
    Engine: 'postgres', EngineVersion: '16.3', StorageEncrypted: true, KmsKeyId: KMS, AllocatedStorage: 20,
  }],
});

async function snapshotBackedUp() {
  const f = await platformFixture({
    'orders-db': { kind: 'rds-snapshot', instanceId: 'orders', region: 'eu-west-1', drRegion: 'eu-central-1', drKmsKeyId: 'arn:aws:kms:eu-central-1:111111111111:key/k2' },
  });
  const vault = await openVault(f.cfg, 'primary');
  const t = new Date('2026-01-01T02:00:00Z');
  const m: Manifest = {
    format: 'memvault-manifest/1', id: '20260101-0rd3r5db', component: 'orders-db', kind: 'rds-snapshot', type: 'full',
    startedAt: t.toISOString(), finishedAt: t.toISOString(), host: 'test', entries: [], warnings: [],
    stats: { bytesRead: 0, bytesTotal: 0, bytesUnchanged: 0, newBytes: 0, bytesStored: 0, chunksTotal: 0, chunksNew: 0, entries: 0, durationMs: 0 },
    driver: {
      resource: 'instance', sourceId: 'orders', engine: 'postgres', engineVersion: '16.3', region: 'eu-west-1', startedAt: t.toISOString(), readyAt: t.toISOString(), reused: false, drCopy: null,
      snapshot: { id: SNAP, arn: `arn:aws:rds:eu-west-1:111111111111:snapshot:${SNAP}`, region: 'eu-west-1', status: 'available', encrypted: true, kmsKeyId: KMS, allocatedGiB: 20, engineVersion: '16.3' },
    },
  };
  await vault.writeManifest(manifestKey('orders-db', t, 'full', m.id), m);
  const sleeps: number[] = [];
  const driver = makeRdsSnapshotDriver({ client: (region) => new RDSClient({ region, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }), sleep: async (ms) => { sleeps.push(ms); } });
  return { f, sleeps, deps: { driverFor: (k: string) => (k === 'rds-snapshot' ? driver : driverFor(k)) } };
}

const input = (options: Record<string, unknown> = {}) => ({ mode: 'latest', components: ['orders-db'], target: { options: { 'orders-db': { instanceId: 'orders-restored', ...options } } } });

describe('restore of an rds-snapshot component', () => {
  beforeEach(() => {
    rds.reset();
    rds.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [{ DBSnapshotIdentifier: SNAP, Status: 'available', DBInstanceIdentifier: 'orders', Encrypted: true, KmsKeyId: KMS, AllocatedStorage: 20 }] });
    rds.on(RestoreDBInstanceFromDBSnapshotCommand).resolves({ DBInstance: { DBInstanceArn: 'arn:aws:rds:eu-west-1:111111111111:db:orders-restored' } });
  });

  it('starts the restore into a new instance, then waits and looks again until it is available, and validates it', async () => {
    const { f, sleeps, deps } = await snapshotBackedUp();
    rds.on(DescribeDBInstancesCommand)
      .rejectsOnce(Object.assign(new Error('DBInstance orders-restored not found.'), { name: 'DBInstanceNotFoundFault', $metadata: { httpStatusCode: 404 } }))
      .resolvesOnce(instance('creating'))
      .resolvesOnce(instance('backing-up'))
      .resolves(instance('available'));
    const events: RemoteEvent[] = [];
    const r = await run(f, 'restore', input(), { deps, onEvent: (e) => events.push(e) });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const restore = rds.commandCalls(RestoreDBInstanceFromDBSnapshotCommand);
    expect(restore).toHaveLength(1);
    expect(restore[0].args[0].input).toMatchObject({
      DBInstanceIdentifier: 'orders-restored', DBSnapshotIdentifier: SNAP,
      Tags: expect.arrayContaining([{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'orders-db' }]),
    });
    // One look per invocation: not found, creating, backing-up, available; three Waits in between; no sleeping driver.
    expect(r.invocations.ValidateRestore).toBe(4);
    expect(rds.commandCalls(DescribeDBInstancesCommand)).toHaveLength(4);
    expect(events.filter((e) => e.state === 'WaitForRestoredData' && e.type === 'entered')).toHaveLength(3);
    expect(sleeps).toEqual([]);
    const c = (r.output as any).components[0];
    expect(c).toMatchObject({ component: 'orders-db', ok: true, location: 'arn:aws:rds:eu-west-1:111111111111:db:orders-restored' });
    expect(c.validation).toMatchObject({ ok: true, ready: true, status: 'available' });
    expect(c.validation.checks.map((x: any) => x.name)).toEqual(expect.arrayContaining(['engine', 'storage encrypted', 'KMS key', 'engine version']));
    expect((await alerts(f)).map((a) => a.subject)).toEqual(['restore succeeded: orders-db']);
  });

  it('fails with an alert naming the component when the instance ends in a bad state', async () => {
    const { f, deps } = await snapshotBackedUp();
    rds.on(DescribeDBInstancesCommand).resolvesOnce(instance('creating')).resolves(instance('incompatible-parameters'));
    const r = await run(f, 'restore', input(), { deps });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('IntegrityError');
    expect(r.cause).toMatch(/restored orders-db .* failed validation .*available.*incompatible-parameters/);
    expect(r.invocations.ValidateRestore).toBe(2);
    expect((await alerts(f))[0]).toMatchObject({ component: 'orders-db', step: 'validate' });
  });

  it('gives up after the timeout while the instance never becomes available', async () => {
    const { f, deps } = await snapshotBackedUp();
    rds.on(DescribeDBInstancesCommand).resolves(instance('creating'));
    let t = Date.parse('2026-01-02T00:00:00Z');
    const clock = { now: () => new Date((t += 4 * 60_000)) }; // every look is 4 minutes later
    const r = await run(f, 'restore', input({ timeoutMinutes: 30 }), { deps: { ...deps, clock } });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('IntegrityError');
    expect(r.cause).toMatch(/orders-db .* is still creating after 30 minutes/);
    expect(r.invocations.ValidateRestore).toBeGreaterThanOrEqual(8);
    expect(r.invocations.ValidateRestore).toBeLessThan(20);
    expect((await alerts(f))[0]).toMatchObject({ component: 'orders-db', step: 'validate' });
  });

  it('rejects target options for a component that is not being restored', async () => {
    const { f, deps } = await snapshotBackedUp();
    const r = await run(f, 'restore', { mode: 'latest', components: ['docs'], target: { options: { 'orders-db': { instanceId: 'x' } } } }, { deps });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('UsageError');
    expect(r.cause).toMatch(/target\.options\.orders-db: "orders-db" is not among the components to restore/);
  });

  it('restores {"mode":"latest"} (the README\'s console input) on AWS into a new instance named after the source and the time, and says so', async () => {
    const { f, deps } = await snapshotBackedUp();
    rds.on(DescribeDBInstancesCommand).resolves(instance('available'));
    // The handler config of an AWS deploy with only the snapshot component: the console input as written.
    const cfg = { ...f.cfg, components: { 'orders-db': f.cfg.components['orders-db'] }, aws: awsSchema.parse({ account: '111111111111', region: 'eu-west-1', drRegion: 'eu-central-1' }) } as any;
    const clock = { now: () => new Date('2026-03-04T05:06:07Z') };
    const r = await run({ ...f, cfg }, 'restore', { mode: 'latest' }, { deps: { ...deps, clock } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const restore = rds.commandCalls(RestoreDBInstanceFromDBSnapshotCommand);
    expect(restore).toHaveLength(1);
    expect(restore[0].args[0].input).toMatchObject({ DBInstanceIdentifier: 'orders-restore-202603040506', DBSnapshotIdentifier: SNAP });
    expect(rds.commandCalls(DescribeDBInstancesCommand)[0].args[0].input).toEqual({ DBInstanceIdentifier: 'orders-restore-202603040506' });
    const c = (r.output as any).components[0];
    expect(c.note).toBe('no target.options.orders-db.instanceId given: restored into the new instance orders-restore-202603040506 (the source orders is not touched)');
  });

  it('never derives the source\'s id, and keeps the identifier within RDS\'s 63 characters', async () => {
    const { derivedRestoreId } = await import('../../functions/components/snapshot-common.ts');
    const { RDS_IDENTIFIER } = await import('../../functions/components/snapshot-common.ts');
    const t = new Date('2026-03-04T05:06:07Z');
    for (const src of ['orders', 'a'.repeat(63), `${'b'.repeat(40)}-${'c'.repeat(22)}`]) {
      const id = derivedRestoreId(src, t);
      expect(id).not.toBe(src);
      expect(id.length).toBeLessThanOrEqual(63);
      expect(id).toMatch(RDS_IDENTIFIER);
      expect(id.endsWith('-restore-202603040506')).toBe(true);
    }
  });

  it('refuses "inPlace": true for the AWS kinds up front, naming the kind and what to do instead', async () => {
    const { f, deps } = await snapshotBackedUp();
    const r = await run(f, 'restore', { mode: 'latest', components: ['orders-db'], target: { inPlace: true } }, { deps });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('UsageError');
    expect(r.cause).toMatch(/target\.inPlace: orders-db is a rds-snapshot component, never restored over its live data: restore into a new instance .* then rename and swap/);
    expect(r.invocations.PlanRestore ?? 0).toBe(0);
    expect(rds.commandCalls(RestoreDBInstanceFromDBSnapshotCommand)).toHaveLength(0);
    // Every component, in place: the snapshot component is named.
    const all = await run(f, 'restore', { mode: 'latest', target: { inPlace: true } }, { deps });
    expect(all.error).toBe('UsageError');
    expect(all.cause).toMatch(/orders-db is a rds-snapshot component.*name the components to restore in place/);
  });
});
