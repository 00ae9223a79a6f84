// The dashboard's metrics, emitted by the real handlers while the state
// machines run locally: names, dimensions and values, captured from the
// handlers' metrics sink (EMF lines on stdout on Lambda).
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { captureMetrics, type MetricPoint } from '../../functions/handlers/metrics.ts';
import { platformFixture, run } from './helpers.ts';

const of = (points: MetricPoint[], name: string) => Object.fromEntries(points.filter((p) => p.name === name).map((p) => [p.dimension, p.value]));

describe('metrics of the state machines', () => {
  it('backup-run: new bytes, duration and failures per component; rpo-watch: last backup age; retention: bytes stored per vault', async () => {
    const f = await platformFixture({ graph: { kind: 'files', path: 'data/missing-graph' } });
    const m = captureMetrics();
    const start = Date.now();
    const r = await run(f, 'backup-run', { type: 'full' }, { deps: { metrics: m } });
    expect(r.status).toBe('FAILED');
    const out = r.output as any;
    expect(of(m.points, 'BackupFailures')).toEqual({ docs: 0, 'memory-db': 0, graph: 1 });
    const newBytes = of(m.points, 'NewBytes');
    expect(Object.keys(newBytes).sort()).toEqual(['docs', 'memory-db']);
    expect(newBytes.docs).toBeGreaterThanOrEqual(70_006); // the docs tree is new: every byte is new
    const dur = of(m.points, 'BackupDurationSeconds');
    expect(dur.docs).toBeGreaterThanOrEqual(0);
    expect(dur.docs).toBeLessThan((Date.now() - start) / 1000 + 1);
    expect(out).toBeUndefined(); // a failed run has no output; the figures above came from the handlers
    // A second backup of unchanged data adds no new bytes.
    const m2 = captureMetrics();
    expect((await run(f, 'backup-run', { type: 'incremental', components: ['docs'] }, { deps: { metrics: m2 } })).status).toBe('SUCCEEDED');
    expect(of(m2.points, 'NewBytes')).toEqual({ docs: 0 });
    expect(of(m2.points, 'BackupFailures')).toEqual({ docs: 0 });

    const m3 = captureMetrics();
    const later = new Date(Date.now() + 3_600_000);
    await run(f, 'rpo-watch', {}, { deps: { metrics: m3, clock: { now: () => later } } });
    const age = of(m3.points, 'LastBackupAgeSeconds');
    expect(Object.keys(age).sort()).toEqual(['docs', 'memory-db']); // graph has no backup: no age
    expect(age.docs).toBeGreaterThan(3590);
    expect(age.docs).toBeLessThan(3700);

    const m4 = captureMetrics();
    expect((await run(f, 'retention', {}, { deps: { metrics: m4 } })).status).toBe('SUCCEEDED');
    const stored = of(m4.points, 'BytesStored');
    let onDisk = 0;
    const walk = async (d: string): Promise<void> => {
      for (const e of await fs.readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(path.join(d, e.name));
        else onDisk += (await fs.stat(path.join(d, e.name))).size;
      }
    };
    await walk(path.join(f.dir, 'vault-primary'));
    expect(stored.primary).toBe(onDisk);
    expect(stored.secondary).toBeGreaterThan(0);
    // Every line is EMF in the Memvault namespace with the metric's dimension.
    for (const l of [...m.lines, ...m3.lines, ...m4.lines]) {
      const o = JSON.parse(l);
      expect(o._aws.CloudWatchMetrics[0].Namespace).toBe('Memvault');
      const dim = o._aws.CloudWatchMetrics[0].Dimensions[0][0];
      expect(dim).toBe(o.BytesStored !== undefined ? 'Vault' : 'Component');
    }
  });

  it('restore: the measured recovery time per component; verify-drill: 1 per passing component, 0 for a damaged one', async () => {
    const f = await platformFixture();
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const m = captureMetrics();
    const r = await run(f, 'restore', { mode: 'latest', target: { dir: path.join(f.dir, 'restored'), outsideSandbox: true } }, { deps: { metrics: m } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const rt = of(m.points, 'RestoreDurationSeconds');
    expect(rt).toEqual({ docs: (r.output as any).recoveryTimeMs / 1000, 'memory-db': (r.output as any).recoveryTimeMs / 1000 });

    const m2 = captureMetrics();
    expect((await run(f, 'verify-drill', { readData: 'all' }, { deps: { metrics: m2 } })).status).toBe('SUCCEEDED');
    expect(of(m2.points, 'DrillResult')).toEqual({ docs: 1, 'memory-db': 1 });

    // Damage the docs tree's big file chunks only: docs fails the drill, memory-db still passes.
    const { listManifestNames } = await import('../../functions/core/vault.ts');
    const { openVault } = await import('../../functions/services.ts');
    const vault = await openVault(f.cfg, 'primary');
    const docs = await vault.readManifest((await listManifestNames(vault.storage, 'docs'))[0]);
    const db = await vault.readManifest((await listManifestNames(vault.storage, 'memory-db'))[0]);
    const dbChunks = new Set(db.entries.flatMap((e) => (e.chunks ?? []).map((c) => c.id)));
    const victim = docs.entries.flatMap((e) => e.chunks ?? []).find((c) => !dbChunks.has(c.id))!;
    const { dropFromIndex } = await import('../helpers/packs.ts');
    await dropFromIndex(vault, victim.id); // the chunk is in no index object: missing
    const m3 = captureMetrics();
    const d = await run(f, 'verify-drill', { readData: 'all' }, { deps: { metrics: m3 } });
    expect(d.status).toBe('FAILED');
    expect(of(m3.points, 'DrillResult')).toEqual({ docs: 0, 'memory-db': 1 });
  });
});
