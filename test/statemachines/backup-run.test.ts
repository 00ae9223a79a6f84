// backup-run, locally, with the real handlers on file:// vaults: success with
// replication, a retryable error that succeeds on retry, a permanent error that
// alerts naming the component and fails the execution, and the snapshot path's
// Wait + poll loop.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { listManifestNames } from '../../functions/core/vault.ts';
import { openStorage, location, openVault } from '../../functions/services.ts';
import { TransientStorageError } from '../../functions/core/errors.ts';
import { filesDriver } from '../../functions/components/files.ts';
import { driverFor } from '../../functions/components/registry.ts';
import type { SnapshotDriver } from '../../functions/components/types.ts';
import { alerts, platformFixture, run } from './helpers.ts';

describe('backup-run', () => {
  it('backs up every component, replicates, and reports stats', async () => {
    const f = await platformFixture();
    const r = await run(f, 'backup-run', { type: 'full' });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    expect(out.ok).toBe(true);
    expect(out.components.map((c: any) => c.component).sort()).toEqual(['docs', 'memory-db']);
    expect(out.components.find((c: any) => c.component === 'docs').bytesTotal).toBe(6 + 70_000);
    const primary = (await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')))).map((x) => x.key).sort();
    const secondary = (await listManifestNames(openStorage(f.cfg, location(f.cfg, 'secondary')))).map((x) => x.key).sort();
    expect(primary).toHaveLength(2);
    expect(secondary).toEqual(primary);
    expect(out.replication.manifestsCopied).toBe(2);
    expect(await alerts(f)).toEqual([]);
  });

  it('runs the components of one schedule', async () => {
    const f = await platformFixture({ logs: { kind: 'files', path: 'data/docs', schedule: '30 3 * * *', scheduleType: 'full' } });
    const r = await run(f, 'backup-run', { schedule: '30 3 * * *', replicate: false });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect((r.output as any).components.map((c: any) => [c.component, c.type])).toEqual([['logs', 'full']]);
    expect((r.output as any).replication).toBeNull();
  });

  it('retries a retryable error and succeeds', async () => {
    const f = await platformFixture();
    let failures = 0;
    const r = await run(f, 'backup-run', { type: 'full', components: ['docs'] }, {
      wrap: (name, fn) => name !== 'ExportStream' ? fn : async (e) => {
        if (failures++ === 0) throw new TransientStorageError('connection reset by the storage backend');
        return fn(e);
      },
    });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(r.retried.Export).toBe(1);
    expect(r.invocations.ExportStream).toBe(2);
    expect((await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'docs'))).toHaveLength(1);
    expect(await alerts(f)).toEqual([]);
  });

  it('records one backup when the export runs again after writing its manifest (a retry)', async () => {
    const f = await platformFixture();
    let first: unknown;
    const r = await run(f, 'backup-run', { type: 'full', components: ['docs'], replicate: false }, {
      wrap: (name, fn) => name !== 'ExportStream' ? fn : async (e) => {
        if (first) return fn(e);
        first = await fn(e);
        throw new TransientStorageError('connection reset after the manifest was written');
      },
    });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(r.retried.Export).toBe(1);
    expect(await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'docs')).toHaveLength(1);
    expect((r.output as any).components[0]).toEqual(first);
  });

  it('alerts with the component, step and cause on a permanent error, backs up the rest, and fails', async () => {
    const f = await platformFixture({ graph: { kind: 'files', path: 'data/missing-graph' } });
    const r = await run(f, 'backup-run', { type: 'full' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('BackupRunFailed');
    // Marked as alerted: the EventBridge failure rule does not alert it again.
    expect(r.cause).toMatch(/^\[alerted\] .*graph at export: PermanentError: .*missing-graph is not a directory/);
    expect(r.retried.Export ?? 0).toBe(0);
    const a = await alerts(f);
    expect(a).toHaveLength(1);
    expect(a[0]).toMatchObject({ severity: 'error', component: 'graph', step: 'export', subject: 'backup failed: graph' });
    expect(a[0].cause).toMatch(/missing-graph is not a directory/);
    // the healthy components were backed up and replicated all the same
    const secondary = await listManifestNames(openStorage(f.cfg, location(f.cfg, 'secondary')));
    expect(secondary.map((x) => x.component).sort()).toEqual(['docs', 'memory-db']);
  });

  it('fails with the field named on bad input', async () => {
    const f = await platformFixture();
    const r = await run(f, 'backup-run', { type: 'weekly' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('UsageError');
    expect(r.cause).toMatch(/request\.type: .*"incremental"/);
    expect((await alerts(f))[0]).toMatchObject({ step: 'plan', subject: 'backup failed' });
  });

  it('takes a service snapshot with a Wait + poll loop and records it in a manifest', async () => {
    const f = await platformFixture();
    const polls: number[] = [];
    const snap: SnapshotDriver = {
      ...filesDriver, kind: 'fake-rds', mode: 'snapshot',
      async start() { return { snapshotId: 'snap-1', polls: 0 }; },
      async poll(_ctx, state) { const n = Number(state.polls) + 1; polls.push(n); return { ready: n >= 3, state: { ...state, polls: n } }; },
      async finish(_ctx, state) { return { entries: [], meta: { snapshotId: state.snapshotId, polls: state.polls }, warnings: [] }; },
    } as SnapshotDriver;
    f.cfg.components['rds-main'] = { kind: 'fake-rds', critical: false, timezone: 'UTC', scheduleType: 'incremental', retention: {}, checks: [] };
    const r = await run(f, 'backup-run', { type: 'full', components: ['rds-main'] }, { deps: { driverFor: (k) => (k === 'fake-rds' ? snap : driverFor(k)) } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(polls).toEqual([1, 2, 3]);
    expect(r.invocations).toMatchObject({ SnapshotStart: 1, SnapshotPoll: 3, WriteManifest: 1 });
    const vault = await openVault(f.cfg, 'primary');
    const [ref] = await listManifestNames(vault.storage, 'rds-main');
    expect((await vault.readManifest(ref)).driver).toEqual({ snapshotId: 'snap-1', polls: 3 });
    await fs.rm(f.dir, { recursive: true, force: true });
  });
});
