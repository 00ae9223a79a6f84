// The retention state machine prunes service snapshots too: for an
// rds-snapshot component, only snapshots tagged as memvault's for that
// component, in both regions, by the component's policy, never the newest
// available one (RDS mocked with aws-sdk-client-mock; the vaults are real).
import { describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { DeleteDBSnapshotCommand, DescribeDBSnapshotsCommand, RDSClient, type DBSnapshot } from '@aws-sdk/client-rds';
import { makeRdsSnapshotDriver } from '../../functions/components/rds-snapshot.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { platformFixture, run } from './helpers.ts';
import { cli } from '../helpers/cli.ts';

const NOW = Date.now();
const daysAgo = (d: number) => new Date(NOW - d * 86_400_000);
const ours = (id: string, d: number, region: string, status = 'available'): DBSnapshot => ({
  DBSnapshotIdentifier: id, DBSnapshotArn: `arn:aws:rds:${region}:111111111111:snapshot:${id}`, DBInstanceIdentifier: 'orders',
  Status: status, SnapshotType: 'manual', SnapshotCreateTime: daysAgo(d), Encrypted: true,
  TagList: [{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'orders-db' }, { Key: 'memvault:created', Value: daysAgo(d).toISOString() }],
});
const foreign = (id: string, d: number): DBSnapshot => ({ ...ours(id, d, 'eu-west-1'), TagList: [] });

describe('retention of service snapshots', () => {
  it('deletes our snapshots past the policy in both regions, keeps the newest and never touches others', async () => {
    const primary = new RDSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
    const dr = new RDSClient({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
    const pm = mockClient(primary);
    const dm = mockClient(dr);
    pm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [ours('p-1d', 1, 'eu-west-1'), ours('p-40d', 40, 'eu-west-1'), ours('p-2d-creating', 0, 'eu-west-1', 'creating'), foreign('someone-else', 90)] });
    // In the DR region every copy is old: the newest must still be kept.
    dm.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [ours('d-50d', 50, 'eu-central-1'), ours('d-70d', 70, 'eu-central-1')] });
    pm.on(DeleteDBSnapshotCommand).resolves({});
    dm.on(DeleteDBSnapshotCommand).resolves({});

    const f = await platformFixture({
      'orders-db': { kind: 'rds-snapshot', instanceId: 'orders', region: 'eu-west-1', drRegion: 'eu-central-1', drKmsKeyId: 'arn:aws:kms:eu-central-1:111111111111:key/k2', retention: { days: 30 } },
    });
    const driver = makeRdsSnapshotDriver({ client: (region) => (region === 'eu-west-1' ? primary : dr) });
    const r = await run(f, 'retention', {}, { deps: { driverFor: (k: string) => (k === 'rds-snapshot' ? driver : driverFor(k)) } });
    expect(r.status, r.cause).toBe('SUCCEEDED');

    expect(pm.commandCalls(DeleteDBSnapshotCommand).map((c) => c.args[0].input.DBSnapshotIdentifier)).toEqual(['p-40d']);
    expect(dm.commandCalls(DeleteDBSnapshotCommand).map((c) => c.args[0].input.DBSnapshotIdentifier)).toEqual(['d-70d']);
    const vaults = (r.output as any).vaults;
    const primarySide = vaults.find((v: any) => v.side === 'primary');
    expect(primarySide.snapshots[0].regions.map((g: any) => [g.region, g.deleted.map((d: any) => d.id), g.kept.map((k: any) => k.id)])).toEqual([
      ['eu-west-1', ['p-40d'], ['p-1d']],
      ['eu-central-1', ['d-70d'], ['d-50d']],
    ]);
    // Pruned once, with the primary vault, not again with the secondary.
    expect(vaults.find((v: any) => v.side === 'secondary').snapshots).toEqual([]);
  });

  it('memvault retention --dry-run lists what it would delete and deletes nothing', async () => {
    const f = await platformFixture({ logs: { kind: 'files', path: 'platform/logs' } });
    const r = await cli(['retention', '--config', f.cfgFile, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.vaults.map((v: any) => v.dryRun)).toEqual([true, true]);
    expect(out.snapshots).toEqual([]);
  });
});
