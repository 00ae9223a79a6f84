// restore, locally, with the real handlers: from the secondary vault into a
// sandbox (bytes and rows equal the originals), point in time, bad input,
// an in-place restore (safety backup first, previous data kept), and damage
// in the vault (alert naming the component, execution fails).
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { listManifestNames } from '../../functions/core/vault.ts';
import { openStorage, location } from '../../functions/services.ts';
import { chunkFiles } from '../helpers/fixture.ts';
import { alerts, platformFixture, readTree, rows, run } from './helpers.ts';

async function backedUp() {
  const f = await platformFixture();
  const b = await run(f, 'backup-run', { type: 'full' });
  expect(b.status, b.cause).toBe('SUCCEEDED');
  return { f, original: await readTree(f.docs), originalRows: rows(f.db) };
}

describe('restore', () => {
  it('restores the latest backup from the secondary vault into a sandbox, validated, with the recovery time', async () => {
    const { f, original, originalRows } = await backedUp();
    await fs.rm(path.join(f.dir, 'vault-primary'), { recursive: true });
    await fs.rm(path.join(f.dir, 'data'), { recursive: true });
    const target = path.join(f.dir, 'restored');
    const r = await run(f, 'restore', { mode: 'latest', from: 'secondary', target: { dir: target, outsideSandbox: true } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    expect(out).toMatchObject({ ok: true, from: 'secondary', inPlace: false, target });
    expect(out.recoveryTimeMs).toBeGreaterThan(0);
    expect(out.components.map((c: any) => [c.component, c.validation.ok])).toEqual([['docs', true], ['memory-db', true]]);
    expect(await readTree(path.join(target, 'docs'))).toEqual(original);
    expect(rows(path.join(target, 'memory-db', 'memory.db'))).toEqual(originalRows);
    const a = await alerts(f);
    expect(a.map((x) => x.subject)).toEqual(['restore succeeded: docs, memory-db']);
  });

  it('restores a point in time, one component, into the default sandbox', async () => {
    const { f, original } = await backedUp();
    const first = (await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'docs'))[0];
    await fs.writeFile(path.join(f.docs, 'a.txt'), 'changed\n');
    expect((await run(f, 'backup-run', { type: 'incremental', components: ['docs'] })).status).toBe('SUCCEEDED');
    const r = await run(f, 'restore', { mode: 'point-in-time', at: new Date(first.time.getTime() + 1).toISOString(), components: ['docs'] }, { name: 'pit-1' });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    expect(out.target).toBe(path.join(f.dir, 'sandbox', 'restore-pit-1'));
    expect(out.components.map((c: any) => c.backupId)).toEqual([first.id]);
    expect(await readTree(path.join(out.target, 'docs'))).toEqual(original);
  });

  it.each([
    [{ mode: 'lastest' }, /mode: expected "latest", "backup" or "point-in-time", got "lastest"/],
    [{ mode: 'backup' }, /backupId: required when mode is "backup"/],
    [{ mode: 'point-in-time', at: 'yesterday' }, /at: expected an ISO time like 2026-01-01T14:30:00Z, got "yesterday"/],
    [{ mode: 'latest', from: 'dr' }, /from: expected "primary" or "secondary", got "dr"/],
    [{ mode: 'latest', target: { inPlace: 'yes' } }, /target\.inPlace/],
    ['latest', /expected a JSON object, got "latest"/],
  ])('rejects bad input %j with the field named and a valid example', async (input, message) => {
    const f = await platformFixture();
    const r = await run(f, 'restore', input);
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('UsageError');
    expect(r.cause).toMatch(message);
    expect(r.cause).toContain('a valid input looks like {"mode":"point-in-time","at":"2026-01-01T14:30:00Z"');
    expect(r.invocations.PlanRestore ?? 0).toBe(0);
    const a = await alerts(f);
    expect(a).toHaveLength(1);
    expect(a[0]).toMatchObject({ severity: 'error', step: 'validate-input', subject: 'restore failed' });
  });

  it('restores in place only after a safety backup, keeping the replaced data', async () => {
    const { f, original } = await backedUp();
    const first = (await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'docs'))[0];
    await fs.writeFile(path.join(f.docs, 'a.txt'), 'a bad change\n');
    const r = await run(f, 'restore', { mode: 'backup', backupId: first.id, target: { inPlace: true } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(await readTree(f.docs)).toEqual(original);
    const kept = (await fs.readdir(path.join(f.dir, 'data'))).filter((n) => n.startsWith('docs.memvault-replaced-'));
    expect(kept).toHaveLength(1);
    expect(await fs.readFile(path.join(f.dir, 'data', kept[0], 'a.txt'), 'utf8')).toBe('a bad change\n');
    const docs = await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'docs');
    expect(docs).toHaveLength(2);
    expect(docs[0].type).toBe('full');
    expect((r.output as any).safetyBackups).toHaveLength(1);
    expect((await fs.readdir(path.join(f.dir, 'data'))).filter((n) => n.startsWith('.memvault-staging'))).toEqual([]);
  });

  it('alerts with the component when the vault is damaged, and fails', async () => {
    const { f } = await backedUp();
    for (const c of await chunkFiles(path.join(f.dir, 'vault-primary'))) {
      const b = await fs.readFile(c);
      b[b.length - 1] ^= 0xff;
      await fs.writeFile(c, b);
    }
    const r = await run(f, 'restore', { mode: 'latest', components: ['memory-db'] });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('IntegrityError');
    const a = await alerts(f);
    expect(a).toHaveLength(1);
    expect(a[0]).toMatchObject({ severity: 'error', component: 'memory-db', step: 'restore', subject: 'restore failed: memory-db' });
    expect(a[0].cause).toMatch(/memory-db/);
  });
});
