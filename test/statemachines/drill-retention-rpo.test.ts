// verify-drill, retention and rpo-watch, locally, with the real handlers.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { listManifestNames } from '../../functions/core/vault.ts';
import { openStorage, location } from '../../functions/services.ts';
import { chunkFiles } from '../helpers/fixture.ts';
import { subsetFor } from '../../functions/handlers/plan-drill.ts';
import { inSubset } from '../../functions/core/verify.ts';
import { alerts, platformFixture, run } from './helpers.ts';

describe('verify-drill', () => {
  it('verifies all data and restores the newest backup of each component into a sandbox', async () => {
    const f = await platformFixture();
    expect((await run(f, 'backup-run', { type: 'full' })).status).toBe('SUCCEEDED');
    const r = await run(f, 'verify-drill', { from: 'secondary', readData: 'all' }, { name: 'drill-1' });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    expect(out).toMatchObject({ ok: true, from: 'secondary', manifests: 2, damagedBackups: [] });
    const { indexedChunks } = await import('../helpers/packs.ts');
    const { openVault } = await import('../../functions/services.ts');
    expect(out.chunksRead).toBe(await indexedChunks(await openVault(f.cfg, 'secondary')));
    expect(out.restores.map((x: any) => [x.component, x.validation.ok])).toEqual([['docs', true], ['memory-db', true]]);
    await expect(fs.stat(path.join(f.dir, 'sandbox', 'drill-drill-1'))).rejects.toThrow();
    expect(await alerts(f)).toEqual([]);
  });

  it('reads every chunk once over a cycle of subset windows', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => (i * 2654435761 >>> 0).toString(16).padStart(8, '0') + '0'.repeat(56));
    const days = Array.from({ length: 10 }, (_, d) => subsetFor(10, new Date(Date.UTC(2026, 0, 1 + d))));
    expect(new Set(days.map((d) => d.cycleIndex)).size).toBe(10);
    for (const id of ids) expect(days.filter((d) => inSubset(id, d.percent, d.cycleIndex))).toHaveLength(1);
  });

  it('alerts and fails on a damaged vault, naming the damaged backups and components', async () => {
    const f = await platformFixture();
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const chunks = await chunkFiles(path.join(f.dir, 'vault-primary'));
    for (const c of chunks) await fs.rm(c);
    const r = await run(f, 'verify-drill', { readData: 'all' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('DrillFailed');
    expect(r.cause).toMatch(/damaged backups .*docs\//);
    const a = await alerts(f);
    expect(a.find((x) => x.subject === 'vault verification found damage')).toBeDefined();
    expect(a.filter((x) => x.step === 'restore').map((x) => x.component).sort()).toEqual(['docs', 'memory-db']);
  });
});

describe('retention', () => {
  it('forgets and prunes by policy in both vaults, never the newest backup', async () => {
    const f = await platformFixture();
    expect((await run(f, 'backup-run', { type: 'full', components: ['docs'] })).status).toBe('SUCCEEDED');
    await fs.writeFile(path.join(f.docs, 'sub/b.bin'), Buffer.alloc(70_000, 9));
    expect((await run(f, 'backup-run', { type: 'full', components: ['docs'] })).status).toBe('SUCCEEDED');
    const r = await run(f, 'retention', {});
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const vaults = (r.output as any).vaults;
    expect(vaults.map((v: any) => [v.side, v.forgotten.length, v.kept])).toEqual([['primary', 1, 1], ['secondary', 1, 1]]);
    expect(vaults[0].chunksPruned).toBeGreaterThan(0);
    for (const side of ['primary', 'secondary'] as const) {
      expect(await listManifestNames(openStorage(f.cfg, location(f.cfg, side)), 'docs')).toHaveLength(1);
    }
  });

  it('skips the secondary when none is configured', async () => {
    const f = await platformFixture({}, { secondary: false });
    expect((await run(f, 'backup-run', { type: 'full' })).status).toBe('SUCCEEDED');
    const r = await run(f, 'retention', { dryRun: true });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect((r.output as any).vaults.map((v: any) => [v.side, v.skipped])).toEqual([['primary', false], ['secondary', true]]);
  });
});

describe('rpo-watch', () => {
  it('is quiet while every component is within its rpo', async () => {
    const f = await platformFixture();
    expect((await run(f, 'backup-run', { type: 'full' })).status).toBe('SUCCEEDED');
    const r = await run(f, 'rpo-watch', {});
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect((r.output as any).breached).toBe(false);
    expect(await alerts(f)).toEqual([]);
  });

  it('alerts for each component whose newest backup is older than its rpo, and fails', async () => {
    const f = await platformFixture({ never: { kind: 'files', path: 'data/docs', rpo: '90m' } });
    expect((await run(f, 'backup-run', { type: 'full', components: ['docs', 'memory-db'] })).status).toBe('SUCCEEDED');
    const later = new Date(Date.now() + 27 * 3_600_000);
    const r = await run(f, 'rpo-watch', {}, { deps: { clock: { now: () => later } } });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('RpoBreached');
    // Alerted already, once per component: the failure rule does not alert again.
    expect(r.cause).toBe('[alerted] rpo breached by docs, memory-db, never');
    const a = await alerts(f);
    expect(a.map((x) => x.subject).sort()).toEqual(['rpo breached: docs', 'rpo breached: memory-db', 'rpo breached: never']);
    expect(a.find((x) => x.component === 'docs')!.cause).toMatch(/is 27\.0 h old .*rpo is 26h/);
    expect(a.find((x) => x.component === 'never')!.cause).toMatch(/no backup at all/);
  });
});
